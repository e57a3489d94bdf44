/* LR schedules with mmcv's LrUpdaterHook formulas. */
#include <math.h>
#include <string.h>
#include <strings.h>
#include "internal.h"

static double regular_lr(const md_lr_schedule *s, double base, int64_t epoch, int64_t iter, int64_t max_epochs,
                         int64_t max_iters) {
    double progress = (double)(s->by_epoch ? epoch : iter);
    double max_progress = (double)(s->by_epoch ? max_epochs : max_iters);
    switch (s->policy) {
    case MD_LR_FIXED:
        return base;
    case MD_LR_STEP: {
        int64_t exp;
        if (s->step_is_int) {
            exp = s->step[0] > 0 ? (int64_t)progress / s->step[0] : 0;
        } else {
            exp = s->n_step;
            for (int i = 0; i < s->n_step; i++)
                if (progress < (double)s->step[i]) {
                    exp = i;
                    break;
                }
        }
        double lr = base * pow(s->gamma, (double)exp);
        return s->has_min_lr && lr < s->min_lr ? s->min_lr : lr;
    }
    case MD_LR_EXP:
        return base * pow(s->gamma, progress);
    case MD_LR_POLY: {
        double coeff = pow(1 - progress / max_progress, s->power);
        double min_lr = s->has_min_lr ? s->min_lr : 0.0;
        return (base - min_lr) * coeff + min_lr;
    }
    case MD_LR_INV:
        return base * pow(1 + s->gamma * progress, -s->power);
    case MD_LR_COSINE: {
        double target = s->has_min_lr_ratio ? base * s->min_lr_ratio : s->min_lr;
        return target + 0.5 * (base - target) * (cos(M_PI * progress / max_progress) + 1);
    }
    }
    return base;
}

MD_API double md_lr_schedule_at(const md_lr_schedule *s, double base_lr, int64_t epoch, int64_t iter,
                                int64_t epoch_len, int64_t max_epochs, int64_t max_iters) {
    double regular = regular_lr(s, base_lr, epoch, iter, max_epochs, max_iters);
    int64_t w = s->warmup_by_epoch ? s->warmup_iters * epoch_len : s->warmup_iters;
    if (s->warmup == MD_WARMUP_NONE || iter >= w) return regular;
    double r = s->warmup_ratio, f = (double)iter / (double)w;
    switch (s->warmup) {
    case MD_WARMUP_CONSTANT: return regular * r;
    case MD_WARMUP_LINEAR: return regular * (1 - (1 - f) * (1 - r));
    case MD_WARMUP_EXP: return regular * pow(r, 1 - f);
    default: return regular;
    }
}

MD_API int md_lr_schedule_parse(const md_cfg *c, md_lr_schedule *s, md_error *err) {
    static const md_key keys[] = {
        { "policy", MD_KEY_STRING, NULL, "fixed, step, exp, poly, inv, CosineAnnealing", true },
        { "by_epoch", MD_KEY_BOOL, "true", NULL, false },
        { "warmup", MD_KEY_ANY, NULL, "constant, linear, exp or None", false },
        { "warmup_iters", MD_KEY_INT, "0", NULL, false },
        { "warmup_ratio", MD_KEY_FLOAT, "0.1", NULL, false },
        { "warmup_by_epoch", MD_KEY_BOOL, "false", NULL, false },
        { "step", MD_KEY_LIST, NULL, NULL, false },
        { "gamma", MD_KEY_FLOAT, NULL, NULL, false },
        { "power", MD_KEY_FLOAT, NULL, NULL, false },
        { "min_lr", MD_KEY_FLOAT, NULL, NULL, false },
        { "min_lr_ratio", MD_KEY_FLOAT, NULL, NULL, false },
        { 0 } };
    memset(s, 0, sizeof *s);
    if (md_cfg_check_keys(c, keys, "lr_config", err) != 0) return -1;
    const char *policy = md_cfg_str(c, "policy", "fixed");
    static const struct { const char *n; md_lr_policy p; } policies[] = {
        { "fixed", MD_LR_FIXED }, { "step", MD_LR_STEP }, { "exp", MD_LR_EXP }, { "poly", MD_LR_POLY },
        { "inv", MD_LR_INV }, { "cosineannealing", MD_LR_COSINE } };
    int found = -1;
    for (int i = 0; i < 6; i++)
        if (!strcasecmp(policy, policies[i].n)) found = i;
    if (found < 0) {
        const char *names[] = { "fixed", "step", "exp", "poly", "inv", "CosineAnnealing" };
        const char *sug = md_suggest(policy, names, 6);
        return md_failc(err, MD_ERR_CONFIG, "%s:%d: lr_config.policy '%s' is unknown%s%s%s",
                        md_cfg_file(c) ? md_cfg_file(c) : "<config>", md_cfg_line(c), policy,
                        sug ? " (did you mean '" : "", sug ? sug : "", sug ? "'?)" : "");
    }
    s->policy = policies[found].p;
    s->by_epoch = md_cfg_bool(c, "by_epoch", true);
    const md_cfg *w = md_cfg_get(c, "warmup");
    const char *ws = w ? md_cfg_as_str(w) : NULL;
    if (!w || md_cfg_kind(w) == MD_CFG_NONE) s->warmup = MD_WARMUP_NONE;
    else if (ws && !strcmp(ws, "constant")) s->warmup = MD_WARMUP_CONSTANT;
    else if (ws && !strcmp(ws, "linear")) s->warmup = MD_WARMUP_LINEAR;
    else if (ws && !strcmp(ws, "exp")) s->warmup = MD_WARMUP_EXP;
    else
        return md_failc(err, MD_ERR_CONFIG, "%s:%d: lr_config.warmup must be \"constant\", \"linear\", \"exp\" or None",
                        md_cfg_file(w) ? md_cfg_file(w) : "<config>", md_cfg_line(w));
    s->warmup_iters = md_cfg_int(c, "warmup_iters", 0);
    s->warmup_ratio = md_cfg_float(c, "warmup_ratio", 0.1);
    s->warmup_by_epoch = md_cfg_bool(c, "warmup_by_epoch", false);
    if (s->warmup != MD_WARMUP_NONE && s->warmup_iters <= 0)
        return md_failc(err, MD_ERR_CONFIG, "lr_config: warmup_iters must be positive with warmup");
    if (s->warmup != MD_WARMUP_NONE && (s->warmup_ratio <= 0 || s->warmup_ratio > 1))
        return md_failc(err, MD_ERR_CONFIG, "lr_config: warmup_ratio must be in (0, 1]");
    s->gamma = md_cfg_float(c, "gamma", 0.1);
    s->power = md_cfg_float(c, "power", 1.0);
    if (md_cfg_has(c, "min_lr") && md_cfg_kind(md_cfg_get(c, "min_lr")) != MD_CFG_NONE) {
        s->has_min_lr = true;
        s->min_lr = md_cfg_float(c, "min_lr", 0);
    }
    if (md_cfg_has(c, "min_lr_ratio") && md_cfg_kind(md_cfg_get(c, "min_lr_ratio")) != MD_CFG_NONE) {
        s->has_min_lr_ratio = true;
        s->min_lr_ratio = md_cfg_float(c, "min_lr_ratio", 0);
    }
    if (s->policy == MD_LR_STEP) {
        const md_cfg *st = md_cfg_get(c, "step");
        if (!st) return md_failc(err, MD_ERR_CONFIG, "lr_config: policy step needs `step`");
        if (md_cfg_kind(st) == MD_CFG_INT) {
            s->step_is_int = true;
            s->n_step = 1;
            s->step[0] = md_cfg_as_int(st);
            if (s->step[0] <= 0) return md_failc(err, MD_ERR_CONFIG, "lr_config: step must be positive");
        } else {
            int64_t v[MD_LR_MAX_STEPS];
            int n = md_cfg_int_array(c, "step", v, MD_LR_MAX_STEPS, err);
            if (n < 0) return -1;
            for (int i = 0; i < n; i++) {
                if (i && v[i] <= v[i - 1])
                    return md_failc(err, MD_ERR_CONFIG, "lr_config: step milestones must increase");
                s->step[i] = v[i];
            }
            s->n_step = n;
        }
    }
    if (s->policy == MD_LR_COSINE && s->has_min_lr == s->has_min_lr_ratio)
        return md_failc(err, MD_ERR_CONFIG, "lr_config: CosineAnnealing needs exactly one of min_lr and min_lr_ratio");
    return 0;
}
