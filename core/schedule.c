/* LR schedules with mmcv's LrUpdaterHook formulas. */
#include <math.h>
#include <string.h>
#include <strings.h>
#include "internal.h"

/* mmcv's annealing_cos / annealing_linear: from start (factor 0) to end (1). */
static double anneal(bool linear, double start, double end, double factor) {
    if (linear) return start + (end - start) * factor;
    return end + 0.5 * (start - end) * (cos(M_PI * factor) + 1);
}

/* mmcv's Cyclic{Lr,Momentum}UpdaterHook: each of `times` cycles rises (or
 * falls) from base to base * ratio[0] over the first step_ratio_up of the
 * cycle, then goes to base * ratio[1]; gamma^cycle shrinks the excursion. */
static double cyclic_value(double base, const double ratio[2], int64_t times, double step_ratio_up, double gamma,
                           bool linear, int64_t iter, int64_t max_iters) {
    int64_t per = times > 0 ? max_iters / times : 0;
    if (per <= 0) return base;
    int64_t up = (int64_t)(step_ratio_up * (double)per);
    int64_t cur = iter % per, cycle = iter / per;
    double scale = pow(gamma, (double)cycle);
    if (cur < up) return anneal(linear, base, base * (1 - scale + ratio[0] * scale), (double)cur / (double)up);
    return anneal(linear, base * (1 - scale + ratio[0] * scale), base * ratio[1],
                  (double)(cur - up) / (double)(per - up));
}

/* Piecewise annealing through phases that end (inclusive) at end[i], going
 * from from[i] to to[i]; the first phase starts at 0 and each later one at
 * the previous end. Past the last end the last phase continues (mmcv's
 * OneCycle momentum does so; its lr would fail there). */
static double phases_value(bool linear, int n, const double *end, const double *from, const double *to,
                           int64_t iter) {
    double start = 0, it = (double)iter;
    for (int i = 0; i < n; i++) {
        if (it <= end[i] || i == n - 1) return anneal(linear, from[i], to[i], (it - start) / (end[i] - start));
        start = end[i];
    }
    return from[0];
}

static double onecycle_lr(const md_lr_schedule *s, int64_t iter, int64_t max_iters) {
    double T = (double)(s->total_steps > 0 ? s->total_steps : max_iters), base = s->max_lr / s->div_factor;
    double d = s->div_factor, f = 1 / s->final_div_factor;
    if (s->three_phase) {
        double end[3] = { s->pct_start * T - 1, 2 * s->pct_start * T - 2, T - 1 };
        double from[3] = { base, base * d, base }, to[3] = { base * d, base, base * f };
        return phases_value(s->anneal_linear, 3, end, from, to, iter);
    }
    double end[2] = { s->pct_start * T - 1, T - 1 };
    double from[2] = { base, base * d }, to[2] = { base * d, base * f };
    return phases_value(s->anneal_linear, 2, end, from, to, iter);
}

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
    case MD_LR_CYCLIC:
        return cyclic_value(base, s->target_ratio, s->cyclic_times, s->step_ratio_up, s->gamma, s->anneal_linear,
                            iter, max_iters);
    case MD_LR_ONECYCLE:
        return onecycle_lr(s, iter, max_iters);
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

static const char *where(const md_cfg *c) { return c && md_cfg_file(c) ? md_cfg_file(c) : "<config>"; }

static int parse_warmup(const md_cfg *c, const char *what, md_warmup *out, md_error *err) {
    const md_cfg *w = md_cfg_get(c, "warmup");
    const char *ws = w ? md_cfg_as_str(w) : NULL;
    if (!w || md_cfg_kind(w) == MD_CFG_NONE) *out = MD_WARMUP_NONE;
    else if (ws && !strcmp(ws, "constant")) *out = MD_WARMUP_CONSTANT;
    else if (ws && !strcmp(ws, "linear")) *out = MD_WARMUP_LINEAR;
    else if (ws && !strcmp(ws, "exp")) *out = MD_WARMUP_EXP;
    else
        return md_failc(err, MD_ERR_CONFIG, "%s:%d: %s.warmup must be \"constant\", \"linear\", \"exp\" or None",
                        where(w), md_cfg_line(w), what);
    return 0;
}

static bool has_value(const md_cfg *c, const char *key) {
    return md_cfg_has(c, key) && md_cfg_kind(md_cfg_get(c, key)) != MD_CFG_NONE;
}

/* `step`: an int period or increasing milestones. */
static int parse_step(const md_cfg *c, const char *what, int64_t *step, int *n_step, bool *is_int, md_error *err) {
    const md_cfg *st = md_cfg_get(c, "step");
    if (!st) return md_failc(err, MD_ERR_CONFIG, "%s: policy step needs `step`", what);
    if (md_cfg_kind(st) == MD_CFG_INT) {
        *is_int = true;
        *n_step = 1;
        step[0] = md_cfg_as_int(st);
        if (step[0] <= 0) return md_failc(err, MD_ERR_CONFIG, "%s:%d: %s.step must be positive", where(st),
                                          md_cfg_line(st), what);
        return 0;
    }
    int64_t v[MD_LR_MAX_STEPS];
    int n = md_cfg_int_array(c, "step", v, MD_LR_MAX_STEPS, err);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) {
        if (i && v[i] <= v[i - 1])
            return md_failc(err, MD_ERR_CONFIG, "%s:%d: %s.step milestones must increase", where(st),
                            md_cfg_line(st), what);
        step[i] = v[i];
    }
    *n_step = n;
    return 0;
}

/* Cyclic's target_ratio: a number t means (t, t / 1e5), as a 1-tuple does. */
static int parse_target_ratio(const md_cfg *c, const char *what, const double dflt[2], double out[2], md_error *err) {
    out[0] = dflt[0];
    out[1] = dflt[1];
    if (!has_value(c, "target_ratio")) return 0;
    double v[3];
    int n = md_cfg_float_array(c, "target_ratio", v, 3, err);
    if (n < 0) return -1;
    if (n < 1 || n > 2)
        return md_failc(err, MD_ERR_CONFIG, "%s:%d: %s.target_ratio must be a number or two numbers",
                        where(md_cfg_get(c, "target_ratio")), md_cfg_line(md_cfg_get(c, "target_ratio")), what);
    out[0] = v[0];
    out[1] = n == 2 ? v[1] : v[0] / 1e5;
    return 0;
}

static int parse_anneal(const md_cfg *c, const char *what, bool *linear, md_error *err) {
    const char *a = md_cfg_str(c, "anneal_strategy", "cos");
    if (!strcmp(a, "cos")) *linear = false;
    else if (!strcmp(a, "linear")) *linear = true;
    else
        return md_failc(err, MD_ERR_CONFIG, "%s: anneal_strategy must be \"cos\" or \"linear\", got '%s'", what, a);
    return 0;
}

static int parse_policy(const md_cfg *c, const char *what, const char *const *names, int n, md_error *err) {
    const char *policy = md_cfg_str(c, "policy", names[0]);
    for (int i = 0; i < n; i++)
        if (!strcasecmp(policy, names[i])) return i;
    const char *sug = md_suggest(policy, names, n);
    char list[256];
    size_t len = 0;
    list[0] = 0;
    for (int i = 0; i < n; i++) len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", names[i]);
    md_failc(err, MD_ERR_CONFIG, "%s:%d: %s.policy '%s' is unknown%s%s%s (known: %s)", where(c), md_cfg_line(c), what,
             policy, sug ? " (did you mean '" : "", sug ? sug : "", sug ? "'?)" : "", list);
    return -1;
}

MD_API int md_lr_schedule_parse(const md_cfg *c, md_lr_schedule *s, md_error *err) {
    static const md_key keys[] = {
        { "policy", MD_KEY_STRING, NULL, "fixed, step, exp, poly, inv, CosineAnnealing, cyclic, OneCycle", true },
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
        { "target_ratio", MD_KEY_LIST, NULL, "cyclic: (10, 1e-4)", false },
        { "cyclic_times", MD_KEY_INT, "1", "cyclic", false },
        { "step_ratio_up", MD_KEY_FLOAT, "0.4", "cyclic", false },
        { "anneal_strategy", MD_KEY_STRING, "cos", "cyclic, OneCycle", false },
        { "max_lr", MD_KEY_FLOAT, NULL, "OneCycle", false },
        { "total_steps", MD_KEY_INT, NULL, "OneCycle", false },
        { "pct_start", MD_KEY_FLOAT, "0.3", "OneCycle", false },
        { "div_factor", MD_KEY_FLOAT, "25", "OneCycle", false },
        { "final_div_factor", MD_KEY_FLOAT, "1e4", "OneCycle", false },
        { "three_phase", MD_KEY_BOOL, "false", "OneCycle", false },
        { 0 } };
    memset(s, 0, sizeof *s);
    if (md_cfg_check_keys(c, keys, "lr_config", err) != 0) return -1;
    static const char *const names[] = { "fixed", "step", "exp", "poly", "inv", "CosineAnnealing", "cyclic",
                                         "OneCycle" };
    static const md_lr_policy policies[] = { MD_LR_FIXED, MD_LR_STEP, MD_LR_EXP, MD_LR_POLY,
                                             MD_LR_INV, MD_LR_COSINE, MD_LR_CYCLIC, MD_LR_ONECYCLE };
    int found = parse_policy(c, "lr_config", names, 8, err);
    if (found < 0) return -1;
    s->policy = policies[found];
    bool iter_only = s->policy == MD_LR_CYCLIC || s->policy == MD_LR_ONECYCLE;
    s->by_epoch = md_cfg_bool(c, "by_epoch", !iter_only);
    if (iter_only && s->by_epoch)
        return md_failc(err, MD_ERR_CONFIG, "lr_config: policy %s supports only by_epoch = false", names[found]);
    if (parse_warmup(c, "lr_config", &s->warmup, err) != 0) return -1;
    s->warmup_iters = md_cfg_int(c, "warmup_iters", 0);
    s->warmup_ratio = md_cfg_float(c, "warmup_ratio", 0.1);
    s->warmup_by_epoch = md_cfg_bool(c, "warmup_by_epoch", false);
    if (s->warmup != MD_WARMUP_NONE && s->warmup_iters <= 0)
        return md_failc(err, MD_ERR_CONFIG, "lr_config: warmup_iters must be positive with warmup");
    if (s->warmup != MD_WARMUP_NONE && (s->warmup_ratio <= 0 || s->warmup_ratio > 1))
        return md_failc(err, MD_ERR_CONFIG, "lr_config: warmup_ratio must be in (0, 1]");
    s->gamma = md_cfg_float(c, "gamma", s->policy == MD_LR_CYCLIC ? 1.0 : 0.1);
    s->power = md_cfg_float(c, "power", 1.0);
    if (has_value(c, "min_lr")) {
        s->has_min_lr = true;
        s->min_lr = md_cfg_float(c, "min_lr", 0);
    }
    if (has_value(c, "min_lr_ratio")) {
        s->has_min_lr_ratio = true;
        s->min_lr_ratio = md_cfg_float(c, "min_lr_ratio", 0);
    }
    if (s->policy == MD_LR_STEP && parse_step(c, "lr_config", s->step, &s->n_step, &s->step_is_int, err) != 0)
        return -1;
    if (s->policy == MD_LR_COSINE && s->has_min_lr == s->has_min_lr_ratio)
        return md_failc(err, MD_ERR_CONFIG, "lr_config: CosineAnnealing needs exactly one of min_lr and min_lr_ratio");
    if (parse_anneal(c, "lr_config", &s->anneal_linear, err) != 0) return -1;
    if (s->policy == MD_LR_CYCLIC) {
        static const double dflt[2] = { 10, 1e-4 };
        if (parse_target_ratio(c, "lr_config", dflt, s->target_ratio, err) != 0) return -1;
        s->cyclic_times = md_cfg_int(c, "cyclic_times", 1);
        s->step_ratio_up = md_cfg_float(c, "step_ratio_up", 0.4);
        if (s->cyclic_times <= 0) return md_failc(err, MD_ERR_CONFIG, "lr_config: cyclic_times must be positive");
        if (s->step_ratio_up < 0 || s->step_ratio_up >= 1)
            return md_failc(err, MD_ERR_CONFIG, "lr_config: step_ratio_up must be in [0, 1)");
        if (s->gamma <= 0 || s->gamma > 1) return md_failc(err, MD_ERR_CONFIG, "lr_config: gamma must be in (0, 1]");
    }
    if (s->policy == MD_LR_ONECYCLE) {
        if (!has_value(c, "max_lr")) return md_failc(err, MD_ERR_CONFIG, "lr_config: policy OneCycle needs max_lr");
        s->max_lr = md_cfg_float(c, "max_lr", 0);
        s->total_steps = md_cfg_int(c, "total_steps", 0);
        s->pct_start = md_cfg_float(c, "pct_start", 0.3);
        s->div_factor = md_cfg_float(c, "div_factor", 25);
        s->final_div_factor = md_cfg_float(c, "final_div_factor", 1e4);
        s->three_phase = md_cfg_bool(c, "three_phase", false);
        if (s->pct_start < 0 || s->pct_start > 1)
            return md_failc(err, MD_ERR_CONFIG, "lr_config: pct_start must be in [0, 1], got %g", s->pct_start);
        if (s->div_factor <= 0 || s->final_div_factor <= 0)
            return md_failc(err, MD_ERR_CONFIG, "lr_config: div_factor and final_div_factor must be positive");
        if (has_value(c, "total_steps") && s->total_steps <= 0)
            return md_failc(err, MD_ERR_CONFIG, "lr_config: total_steps must be positive");
    }
    return 0;
}

/* ---- momentum ---- */

static double momentum_regular(const md_momentum_schedule *s, double base, int64_t epoch, int64_t iter,
                               int64_t max_epochs, int64_t max_iters) {
    double progress = (double)(s->by_epoch ? epoch : iter);
    double max_progress = (double)(s->by_epoch ? max_epochs : max_iters);
    switch (s->policy) {
    case MD_MOM_STEP: {
        int64_t exp = s->n_step;
        if (s->step_is_int) exp = (int64_t)progress / s->step[0];
        else
            for (int i = 0; i < s->n_step; i++)
                if (progress < (double)s->step[i]) {
                    exp = i;
                    break;
                }
        double m = base * pow(s->gamma, (double)exp);
        return s->has_min_momentum && m < s->min_momentum ? s->min_momentum : m;
    }
    case MD_MOM_COSINE: {
        double target = s->has_min_momentum_ratio ? base * s->min_momentum_ratio : s->min_momentum;
        return anneal(false, base, target, progress / max_progress);
    }
    case MD_MOM_CYCLIC:
        return cyclic_value(base, s->target_ratio, s->cyclic_times, s->step_ratio_up, s->gamma, s->anneal_linear,
                            iter, max_iters);
    case MD_MOM_ONECYCLE: {
        double T = (double)max_iters, lo = s->base_momentum, hi = s->max_momentum;
        if (s->three_phase) {
            double end[3] = { s->pct_start * T - 1, 2 * s->pct_start * T - 2, T - 1 };
            double from[3] = { hi, lo, hi }, to[3] = { lo, hi, hi };
            return phases_value(s->anneal_linear, 3, end, from, to, iter);
        }
        double end[2] = { s->pct_start * T - 1, T - 1 };
        double from[2] = { hi, lo }, to[2] = { lo, hi };
        return phases_value(s->anneal_linear, 2, end, from, to, iter);
    }
    }
    return base;
}

MD_API double md_momentum_schedule_at(const md_momentum_schedule *s, double base_momentum, int64_t epoch,
                                      int64_t iter, int64_t max_epochs, int64_t max_iters) {
    double m = momentum_regular(s, base_momentum, epoch, iter, max_epochs, max_iters);
    if (s->warmup == MD_WARMUP_NONE || iter >= s->warmup_iters) return m;
    double r = s->warmup_ratio, f = (double)iter / (double)s->warmup_iters;
    switch (s->warmup) {
    case MD_WARMUP_CONSTANT: return m / r;
    case MD_WARMUP_LINEAR: return m / (1 - (1 - f) * (1 - r));
    case MD_WARMUP_EXP: return m / pow(r, 1 - f);
    default: return m;
    }
}

MD_API int md_momentum_schedule_parse(const md_cfg *c, md_momentum_schedule *s, md_error *err) {
    static const md_key keys[] = {
        { "policy", MD_KEY_STRING, NULL, "step, CosineAnnealing, cyclic, OneCycle", true },
        { "by_epoch", MD_KEY_BOOL, NULL, NULL, false },
        { "warmup", MD_KEY_ANY, NULL, "constant, linear, exp or None", false },
        { "warmup_iters", MD_KEY_INT, "0", NULL, false },
        { "warmup_ratio", MD_KEY_FLOAT, "0.9", NULL, false },
        { "step", MD_KEY_LIST, NULL, "step", false },
        { "gamma", MD_KEY_FLOAT, NULL, "step (0.5), cyclic (1)", false },
        { "min_momentum", MD_KEY_FLOAT, NULL, NULL, false },
        { "min_momentum_ratio", MD_KEY_FLOAT, NULL, NULL, false },
        { "target_ratio", MD_KEY_LIST, NULL, "cyclic", false },
        { "cyclic_times", MD_KEY_INT, "1", "cyclic", false },
        { "step_ratio_up", MD_KEY_FLOAT, "0.4", "cyclic", false },
        { "anneal_strategy", MD_KEY_STRING, "cos", "cyclic, OneCycle", false },
        { "base_momentum", MD_KEY_FLOAT, "0.85", "OneCycle", false },
        { "max_momentum", MD_KEY_FLOAT, "0.95", "OneCycle", false },
        { "pct_start", MD_KEY_FLOAT, "0.3", "OneCycle", false },
        { "three_phase", MD_KEY_BOOL, "false", "OneCycle", false },
        { 0 } };
    memset(s, 0, sizeof *s);
    if (md_cfg_check_keys(c, keys, "momentum_config", err) != 0) return -1;
    static const char *const names[] = { "step", "CosineAnnealing", "cyclic", "OneCycle" };
    static const md_momentum_policy policies[] = { MD_MOM_STEP, MD_MOM_COSINE, MD_MOM_CYCLIC, MD_MOM_ONECYCLE };
    int found = parse_policy(c, "momentum_config", names, 4, err);
    if (found < 0) return -1;
    s->policy = policies[found];
    bool iter_only = s->policy == MD_MOM_CYCLIC || s->policy == MD_MOM_ONECYCLE;
    s->by_epoch = md_cfg_bool(c, "by_epoch", !iter_only);
    if (iter_only && s->by_epoch)
        return md_failc(err, MD_ERR_CONFIG, "momentum_config: policy %s supports only by_epoch = false",
                        names[found]);
    if (parse_warmup(c, "momentum_config", &s->warmup, err) != 0) return -1;
    s->warmup_iters = md_cfg_int(c, "warmup_iters", 0);
    s->warmup_ratio = md_cfg_float(c, "warmup_ratio", 0.9);
    if (s->warmup != MD_WARMUP_NONE && s->warmup_iters <= 0)
        return md_failc(err, MD_ERR_CONFIG, "momentum_config: warmup_iters must be positive with warmup");
    if (s->warmup != MD_WARMUP_NONE && (s->warmup_ratio <= 0 || s->warmup_ratio > 1))
        return md_failc(err, MD_ERR_CONFIG, "momentum_config: warmup_ratio must be in (0, 1]");
    s->gamma = md_cfg_float(c, "gamma", s->policy == MD_MOM_STEP ? 0.5 : 1.0);
    if (has_value(c, "min_momentum")) {
        s->has_min_momentum = true;
        s->min_momentum = md_cfg_float(c, "min_momentum", 0);
    }
    if (has_value(c, "min_momentum_ratio")) {
        s->has_min_momentum_ratio = true;
        s->min_momentum_ratio = md_cfg_float(c, "min_momentum_ratio", 0);
    }
    if (s->policy == MD_MOM_STEP &&
        parse_step(c, "momentum_config", s->step, &s->n_step, &s->step_is_int, err) != 0)
        return -1;
    if (s->policy == MD_MOM_COSINE && s->has_min_momentum == s->has_min_momentum_ratio)
        return md_failc(err, MD_ERR_CONFIG,
                        "momentum_config: CosineAnnealing needs exactly one of min_momentum and min_momentum_ratio");
    if (parse_anneal(c, "momentum_config", &s->anneal_linear, err) != 0) return -1;
    if (s->policy == MD_MOM_CYCLIC) {
        static const double dflt[2] = { 0.85 / 0.95, 1 };
        if (parse_target_ratio(c, "momentum_config", dflt, s->target_ratio, err) != 0) return -1;
        s->cyclic_times = md_cfg_int(c, "cyclic_times", 1);
        s->step_ratio_up = md_cfg_float(c, "step_ratio_up", 0.4);
        if (s->cyclic_times <= 0)
            return md_failc(err, MD_ERR_CONFIG, "momentum_config: cyclic_times must be positive");
        if (s->step_ratio_up < 0 || s->step_ratio_up >= 1)
            return md_failc(err, MD_ERR_CONFIG, "momentum_config: step_ratio_up must be in [0, 1)");
        if (s->gamma <= 0 || s->gamma > 1)
            return md_failc(err, MD_ERR_CONFIG, "momentum_config: gamma must be in (0, 1]");
    }
    if (s->policy == MD_MOM_ONECYCLE) {
        s->base_momentum = md_cfg_float(c, "base_momentum", 0.85);
        s->max_momentum = md_cfg_float(c, "max_momentum", 0.95);
        s->pct_start = md_cfg_float(c, "pct_start", 0.3);
        s->three_phase = md_cfg_bool(c, "three_phase", false);
        if (s->pct_start < 0 || s->pct_start > 1)
            return md_failc(err, MD_ERR_CONFIG, "momentum_config: pct_start must be in [0, 1], got %g", s->pct_start);
    }
    return 0;
}
