/* LR schedules with mmcv's LrUpdaterHook formulas: the shared part of
 * lr_config (progress, warmup), mmcv's eight policies registered built-in
 * in "lr_policies", and the momentum schedules. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
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

/* ---- the built-in policies' formulas (mmcv's get_lr) ---- */

static double fixed_lr(const md_lr_schedule *s, double base, const md_lr_progress *at) {
    (void)s;
    (void)at;
    return base;
}

static double step_lr(const md_lr_schedule *s, double base, const md_lr_progress *at) {
    int64_t exp;
    if (s->step_is_int) {
        exp = s->step[0] > 0 ? (int64_t)at->progress / s->step[0] : 0;
    } else {
        exp = s->n_step;
        for (int i = 0; i < s->n_step; i++)
            if (at->progress < (double)s->step[i]) {
                exp = i;
                break;
            }
    }
    double lr = base * pow(s->gamma, (double)exp);
    return s->has_min_lr && lr < s->min_lr ? s->min_lr : lr;
}

static double exp_lr(const md_lr_schedule *s, double base, const md_lr_progress *at) {
    return base * pow(s->gamma, at->progress);
}

static double poly_lr(const md_lr_schedule *s, double base, const md_lr_progress *at) {
    double coeff = pow(1 - at->progress / at->max_progress, s->power);
    double min_lr = s->has_min_lr ? s->min_lr : 0.0;
    return (base - min_lr) * coeff + min_lr;
}

static double inv_lr(const md_lr_schedule *s, double base, const md_lr_progress *at) {
    return base * pow(1 + s->gamma * at->progress, -s->power);
}

static double cosine_lr(const md_lr_schedule *s, double base, const md_lr_progress *at) {
    double target = s->has_min_lr_ratio ? base * s->min_lr_ratio : s->min_lr;
    return target + 0.5 * (base - target) * (cos(M_PI * at->progress / at->max_progress) + 1);
}

static double cyclic_lr(const md_lr_schedule *s, double base, const md_lr_progress *at) {
    return cyclic_value(base, s->target_ratio, s->cyclic_times, s->step_ratio_up, s->gamma, s->anneal_linear,
                        at->iter, at->max_iters);
}

static double onecycle_lr(const md_lr_schedule *s, double base_lr, const md_lr_progress *at) {
    (void)base_lr;   /* mmcv's OneCycle starts from max_lr / div_factor */
    double T = (double)(s->total_steps > 0 ? s->total_steps : at->max_iters), base = s->max_lr / s->div_factor;
    double d = s->div_factor, f = 1 / s->final_div_factor;
    if (s->three_phase) {
        double end[3] = { s->pct_start * T - 1, 2 * s->pct_start * T - 2, T - 1 };
        double from[3] = { base, base * d, base }, to[3] = { base * d, base, base * f };
        return phases_value(s->anneal_linear, 3, end, from, to, at->iter);
    }
    double end[2] = { s->pct_start * T - 1, T - 1 };
    double from[2] = { base, base * d }, to[2] = { base * d, base * f };
    return phases_value(s->anneal_linear, 2, end, from, to, at->iter);
}

typedef double (*lr_formula)(const md_lr_schedule *s, double base, const md_lr_progress *at);
static const lr_formula formulas[] = {
    [MD_LR_FIXED] = fixed_lr, [MD_LR_STEP] = step_lr, [MD_LR_EXP] = exp_lr, [MD_LR_POLY] = poly_lr,
    [MD_LR_INV] = inv_lr, [MD_LR_COSINE] = cosine_lr, [MD_LR_CYCLIC] = cyclic_lr, [MD_LR_ONECYCLE] = onecycle_lr,
};

/* ---- what every policy shares: progress and warmup (mmcv's LrUpdaterHook) ---- */

static md_lr_progress progress_at(bool by_epoch, int64_t epoch, int64_t iter, int64_t max_epochs, int64_t max_iters) {
    return (md_lr_progress){ .epoch = epoch, .iter = iter, .max_epochs = max_epochs, .max_iters = max_iters,
                             .progress = (double)(by_epoch ? epoch : iter),
                             .max_progress = (double)(by_epoch ? max_epochs : max_iters) };
}

/* mmcv's get_warmup_lr applied to the regular lr, from the shared keys of s. */
static double warmup_lr(const md_lr_schedule *s, double regular, int64_t iter, int64_t epoch_len) {
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

MD_API double md_lr_schedule_at(const md_lr_schedule *s, double base_lr, int64_t epoch, int64_t iter,
                                int64_t epoch_len, int64_t max_epochs, int64_t max_iters) {
    if ((unsigned)s->policy >= sizeof formulas / sizeof formulas[0]) return base_lr;
    md_lr_progress at = progress_at(s->by_epoch, epoch, iter, max_epochs, max_iters);
    return warmup_lr(s, formulas[s->policy](s, base_lr, &at), iter, epoch_len);
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

/* The shared keys of lr_config into s (by_epoch, warmup*); an
 * iteration-based policy (iter_based) defaults to and needs by_epoch false. */
static int parse_shared(const md_cfg *c, const char *policy, bool iter_based, md_lr_schedule *s, md_error *err) {
    s->by_epoch = md_cfg_bool(c, "by_epoch", !iter_based);
    if (iter_based && s->by_epoch)
        return md_failc(err, MD_ERR_CONFIG, "lr_config: policy %s supports only by_epoch = false", policy);
    if (parse_warmup(c, "lr_config", &s->warmup, err) != 0) return -1;
    s->warmup_iters = md_cfg_int(c, "warmup_iters", 0);
    s->warmup_ratio = md_cfg_float(c, "warmup_ratio", 0.1);
    s->warmup_by_epoch = md_cfg_bool(c, "warmup_by_epoch", false);
    if (s->warmup != MD_WARMUP_NONE && s->warmup_iters <= 0)
        return md_failc(err, MD_ERR_CONFIG, "lr_config: warmup_iters must be positive with warmup");
    if (s->warmup != MD_WARMUP_NONE && (s->warmup_ratio <= 0 || s->warmup_ratio > 1))
        return md_failc(err, MD_ERR_CONFIG, "lr_config: warmup_ratio must be in (0, 1]");
    return 0;
}

MD_API const char *md_lr_policy_name(const char *policy, char *buf, size_t n) {
    /* mmcv: `if policy == policy.lower(): policy = policy.title()` */
    snprintf(buf, n, "%s", policy ? policy : "");
    bool lower = true;
    for (char *p = buf; *p; p++)
        if (isupper((unsigned char)*p)) lower = false;
    bool in_word = false;
    for (char *p = buf; lower && *p; p++) {
        if (isalpha((unsigned char)*p) && !in_word) *p = (char)toupper((unsigned char)*p);
        in_word = isalpha((unsigned char)*p);
    }
    return buf;
}

MD_API md_lr_policy *md_lr_policy_new(size_t size, const md_lr_policy_iface *iface, const md_cfg *cfg,
                                      const md_key *keys, md_error *err) {
    const char *type = md_cfg_str(cfg, "type", "lr policy");
    if (size < sizeof(md_lr_policy)) {
        md_failc(err, MD_ERR_REGISTRY, "%s: the policy struct is smaller than md_lr_policy", type);
        return NULL;
    }
    md_lr_policy *p = calloc(1, size);
    if (!p) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    p->iface = iface;
    p->type = type;
    if (md_cfg_read_struct(cfg, keys, p, type, err)) {
        free(p);
        return NULL;
    }
    return p;
}

static void policy_free(md_lr_policy *p) {
    if (!p) return;
    if (p->iface->destroy) p->iface->destroy(p);
    free(p);
}

/* ---- the built-in policies: mmcv's eight, in "lr_policies" ---- */

/* A built-in policy's object: its parameters in an md_lr_schedule (the
 * formulas above read them), the anneal_strategy choice on the side. */
typedef struct builtin {
    md_lr_policy base;
    md_lr_schedule s;
    int anneal;   /* anneal_strategy: 0 cos, 1 linear */
} builtin;

#define ANNEAL_KEY \
    { "anneal_strategy", MD_KEY_STRING, "\"cos\"", "cos or linear", false, MD_CHOICE_AT(builtin, anneal, "cos|linear") }

static const md_key fixed_keys[] = { MD_LR_POLICY_KEYS, { 0 } };
static const md_key step_keys[] = {
    MD_LR_POLICY_KEYS,
    { "step", MD_KEY_LIST, NULL, "milestones, or one period (an int)", true },
    { "gamma", MD_KEY_FLOAT, "0.1", "decay factor at each step", false, MD_AT(builtin, s.gamma) },
    { "min_lr", MD_KEY_FLOAT, NULL, "lower bound (None: none)", false },
    { 0 } };
static const md_key exp_keys[] = {
    MD_LR_POLICY_KEYS, { "gamma", MD_KEY_FLOAT, NULL, "lr = base * gamma^progress", true, MD_AT(builtin, s.gamma) },
    { 0 } };
static const md_key poly_keys[] = {
    MD_LR_POLICY_KEYS,
    { "power", MD_KEY_FLOAT, "1.0", NULL, false, MD_AT(builtin, s.power) },
    { "min_lr", MD_KEY_FLOAT, "0.0", NULL, false, MD_AT(builtin, s.min_lr) },
    { 0 } };
static const md_key inv_keys[] = {
    MD_LR_POLICY_KEYS,
    { "gamma", MD_KEY_FLOAT, NULL, "lr = base * (1 + gamma * progress)^-power", true, MD_AT(builtin, s.gamma) },
    { "power", MD_KEY_FLOAT, "1.0", NULL, false, MD_AT(builtin, s.power) },
    { 0 } };
static const md_key cosine_keys[] = {
    MD_LR_POLICY_KEYS,
    { "min_lr", MD_KEY_FLOAT, NULL, "the last lr (or min_lr_ratio)", false },
    { "min_lr_ratio", MD_KEY_FLOAT, NULL, "the last lr over the initial one (or min_lr)", false },
    { 0 } };
static const md_key cyclic_keys[] = {
    MD_LR_POLICY_KEYS,
    { "target_ratio", MD_KEY_LIST, NULL, "(high, low) over the initial lr; default (10, 1e-4)", false },
    { "cyclic_times", MD_KEY_INT, "1", "cycles in the run", false, MD_AT(builtin, s.cyclic_times), .min = "1" },
    { "step_ratio_up", MD_KEY_FLOAT, "0.4", "rising part of a cycle, in [0, 1)", false,
      MD_AT(builtin, s.step_ratio_up) },
    { "gamma", MD_KEY_FLOAT, "1", "each later cycle's excursion shrinks by gamma, in (0, 1]", false,
      MD_AT(builtin, s.gamma) },
    ANNEAL_KEY,
    { 0 } };
static const md_key onecycle_keys[] = {
    MD_LR_POLICY_KEYS,
    { "max_lr", MD_KEY_FLOAT, NULL, "the peak lr", true, MD_AT(builtin, s.max_lr) },
    { "total_steps", MD_KEY_INT, NULL, "the cycle's length (None: the run's iterations)", false },
    { "pct_start", MD_KEY_FLOAT, "0.3", "rising part of the cycle", false, MD_AT(builtin, s.pct_start), .min = "0",
      .max = "1" },
    ANNEAL_KEY,
    { "div_factor", MD_KEY_FLOAT, "25", "the first lr is max_lr / div_factor", false, MD_AT(builtin, s.div_factor) },
    { "final_div_factor", MD_KEY_FLOAT, "1e4", "the last lr is the first / final_div_factor", false,
      MD_AT(builtin, s.final_div_factor) },
    { "three_phase", MD_KEY_BOOL, "false", "come back to the first lr before the last phase", false,
      MD_AT(builtin, s.three_phase) },
    { 0 } };

/* What each policy checks beyond its schema (NULL: nothing). */
static int step_check(builtin *b, const md_cfg *c, md_error *err) {
    if (has_value(c, "min_lr")) {
        b->s.has_min_lr = true;
        b->s.min_lr = md_cfg_float(c, "min_lr", 0);
    }
    return parse_step(c, "lr_config", b->s.step, &b->s.n_step, &b->s.step_is_int, err);
}

static int poly_check(builtin *b, const md_cfg *c, md_error *err) {
    (void)c;
    (void)err;
    b->s.has_min_lr = true;   /* min_lr defaults to 0 */
    return 0;
}

static int cosine_check(builtin *b, const md_cfg *c, md_error *err) {
    b->s.has_min_lr = has_value(c, "min_lr");
    b->s.has_min_lr_ratio = has_value(c, "min_lr_ratio");
    b->s.min_lr = md_cfg_float(c, "min_lr", 0);
    b->s.min_lr_ratio = md_cfg_float(c, "min_lr_ratio", 0);
    if (b->s.has_min_lr == b->s.has_min_lr_ratio)
        return md_failc(err, MD_ERR_CONFIG, "lr_config: CosineAnnealing needs exactly one of min_lr and min_lr_ratio");
    return 0;
}

static int cyclic_check(builtin *b, const md_cfg *c, md_error *err) {
    static const double dflt[2] = { 10, 1e-4 };
    if (parse_target_ratio(c, "lr_config", dflt, b->s.target_ratio, err) != 0) return -1;
    if (b->s.step_ratio_up < 0 || b->s.step_ratio_up >= 1)
        return md_failc(err, MD_ERR_CONFIG, "lr_config: step_ratio_up must be in [0, 1)");
    if (b->s.gamma <= 0 || b->s.gamma > 1) return md_failc(err, MD_ERR_CONFIG, "lr_config: gamma must be in (0, 1]");
    return 0;
}

static int onecycle_check(builtin *b, const md_cfg *c, md_error *err) {
    b->s.total_steps = md_cfg_int(c, "total_steps", 0);
    if (b->s.div_factor <= 0 || b->s.final_div_factor <= 0)
        return md_failc(err, MD_ERR_CONFIG, "lr_config: div_factor and final_div_factor must be positive");
    if (has_value(c, "total_steps") && b->s.total_steps <= 0)
        return md_failc(err, MD_ERR_CONFIG, "lr_config: total_steps must be positive");
    return 0;
}

/* Cyclic and OneCycle need the run's length, known once the runner starts. */
static int cyclic_run(const md_lr_policy *p, int64_t max_epochs, int64_t max_iters, md_error *err) {
    (void)max_epochs;
    const md_lr_schedule *s = &((const builtin *)p)->s;
    if (max_iters < s->cyclic_times)
        return md_failc(err, MD_ERR_CONFIG, "Cyclic: %lld iterations cannot hold cyclic_times = %lld cycles",
                        (long long)max_iters, (long long)s->cyclic_times);
    return 0;
}

static int onecycle_run(const md_lr_policy *p, int64_t max_epochs, int64_t max_iters, md_error *err) {
    (void)max_epochs;
    const md_lr_schedule *s = &((const builtin *)p)->s;
    if (s->total_steps > 0 && s->total_steps < max_iters)
        return md_failc(err, MD_ERR_CONFIG,
                        "OneCycle: total_steps (%lld) must be at least the runner's max iterations (%lld)",
                        (long long)s->total_steps, (long long)max_iters);
    return 0;
}

static double builtin_get_lr(const md_lr_policy *p, double base_lr, const md_lr_progress *at) {
    const md_lr_schedule *s = &((const builtin *)p)->s;
    return formulas[s->policy](s, base_lr, at);
}

/* The schema has filled b (md_cfg_read_struct); the policy's check reads
 * the rest. */
static void *builtin_build(const md_lr_policy_iface *iface, md_lr_policy_kind kind, const md_key *keys,
                           int (*check)(builtin *, const md_cfg *, md_error *), const md_cfg *cfg, md_error *err) {
    builtin *b = (builtin *)md_lr_policy_new(sizeof *b, iface, cfg, keys, err);
    if (!b) return NULL;
    b->s.policy = kind;
    b->s.anneal_linear = b->anneal == 1;
    if (check && check(b, cfg, err) != 0) {
        free(b);
        return NULL;
    }
    return b;
}

#define LR_POLICY(var_, name_, kind_, keys_, check_, iter_based_, check_run_, doc_)                                 \
    static const md_lr_policy_iface var_##_iface = { .get_lr = builtin_get_lr, .check_run = (check_run_),           \
                                                     .iter_based = (iter_based_) };                                \
    static void *var_##_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {                                     \
        (void)ctx;                                                                                                 \
        return builtin_build(&var_##_iface, (kind_), (keys_), (check_), cfg, err);                                 \
    }                                                                                                              \
    static const md_class var_ = { .name = (name_), .keys = (keys_), .build = var_##_build,                       \
                                   MD_IFACE(&var_##_iface, MD_IFACE_LR_POLICY), .doc = (doc_) };                   \
    MD_REGISTER("lr_policies", var_)

LR_POLICY(fixed_cls, "Fixed", MD_LR_FIXED, fixed_keys, NULL, false, NULL, "mmcv's fixed: the initial lr")
LR_POLICY(step_cls, "Step", MD_LR_STEP, step_keys, step_check, false, NULL,
          "mmcv's step: times gamma at each milestone, at least min_lr")
LR_POLICY(exp_cls, "Exp", MD_LR_EXP, exp_keys, NULL, false, NULL, "mmcv's exp: base * gamma^progress")
LR_POLICY(poly_cls, "Poly", MD_LR_POLY, poly_keys, poly_check, false, NULL,
          "mmcv's poly: (base - min_lr)(1 - progress / max)^power + min_lr")
LR_POLICY(inv_cls, "Inv", MD_LR_INV, inv_keys, NULL, false, NULL, "mmcv's inv: base (1 + gamma progress)^-power")
LR_POLICY(cosine_cls, "CosineAnnealing", MD_LR_COSINE, cosine_keys, cosine_check, false, NULL,
          "mmcv's CosineAnnealing: cos annealing to min_lr or base * min_lr_ratio")
LR_POLICY(cyclic_cls, "Cyclic", MD_LR_CYCLIC, cyclic_keys, cyclic_check, true, cyclic_run,
          "mmcv's cyclic: up to target_ratio[0] and down to target_ratio[1], cyclic_times (iterations)")
LR_POLICY(onecycle_cls, "OneCycle", MD_LR_ONECYCLE, onecycle_keys, onecycle_check, true, onecycle_run,
          "mmcv's OneCycle: max_lr / div_factor up to max_lr and down (iterations)")

/* The built-in classes by kind, for md_lr_schedule_parse (no context, so
 * no registry). */
static const md_class *const builtins[] = {
    [MD_LR_FIXED] = &fixed_cls, [MD_LR_STEP] = &step_cls, [MD_LR_EXP] = &exp_cls, [MD_LR_POLY] = &poly_cls,
    [MD_LR_INV] = &inv_cls, [MD_LR_COSINE] = &cosine_cls, [MD_LR_CYCLIC] = &cyclic_cls,
    [MD_LR_ONECYCLE] = &onecycle_cls,
};
#define N_BUILTINS ((int)(sizeof builtins / sizeof builtins[0]))

/* The class name of lr_config's `policy` into name[64]; NULL (err set)
 * when it has none. */
static const md_cfg *policy_of(const md_cfg *c, char *name, md_error *err) {
    const md_cfg *pn = md_cfg_get(c, "policy");
    if (!md_cfg_as_str(pn)) {
        md_failc(err, MD_ERR_CONFIG, "%s:%d: lr_config needs `policy`, a string (\"step\", \"CosineAnnealing\", ...)",
                 where(pn ? pn : c), md_cfg_line(pn ? pn : c));
        return NULL;
    }
    md_lr_policy_name(md_cfg_as_str(pn), name, 64);
    return pn;
}

MD_API int md_lr_schedule_parse(const md_cfg *c, md_lr_schedule *s, md_error *err) {
    memset(s, 0, sizeof *s);
    char name[64];
    const md_cfg *pn = policy_of(c, name, err);
    if (!pn) return -1;
    const md_class *cls = NULL;
    const char *names[N_BUILTINS];
    for (int i = 0; i < N_BUILTINS; i++) {
        names[i] = builtins[i]->name;
        if (!strcmp(names[i], name)) cls = builtins[i];
    }
    if (!cls) {
        const char *sug = md_suggest(name, names, N_BUILTINS);
        return md_failc(err, MD_ERR_CONFIG, "%s:%d: lr_config.policy '%s' is not a built-in policy%s%s%s", where(pn),
                        md_cfg_line(pn), name, sug ? " (did you mean '" : "", sug ? sug : "", sug ? "'?)" : "");
    }
    if (md_cfg_check_keys(c, cls->keys, cls->name, err) != 0) return -1;
    builtin *b = cls->build(NULL, c, err);
    if (!b) return -1;
    *s = b->s;
    free(b);
    return parse_shared(c, cls->name, ((const md_lr_policy_iface *)cls->iface)->iter_based, s, err);
}

/* ---- lr_config through the registry ---- */

struct md_lr_updater {
    md_lr_schedule shared;   /* by_epoch and warmup */
    md_lr_policy *policy;
};

MD_API md_lr_updater *md_lr_updater_build(md_ctx *ctx, const md_cfg *c, md_error *err) {
    char name[64];
    const md_cfg *pn = policy_of(c, name, err);
    if (!pn) return NULL;
    if (!md_registry_find(ctx, "lr_policies", name, err)) {
        md_error_wrap(err, "%s:%d: lr_config.policy", where(pn), md_cfg_line(pn));
        return NULL;
    }
    md_lr_updater *u = calloc(1, sizeof *u);
    md_cfg *pc = md_cfg_clone(c);
    if (!u || !pc || !md_cfg_set_str(pc, "type", name)) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!(u->policy = md_build_from_cfg(ctx, "lr_policies", pc, NULL, err))) goto fail;
    if (parse_shared(c, name, u->policy->iface->iter_based, &u->shared, err) != 0) goto fail;
    md_cfg_free(pc);
    return u;
fail:
    md_cfg_free(pc);
    md_lr_updater_free(u);
    return NULL;
}

MD_API void md_lr_updater_free(md_lr_updater *u) {
    if (!u) return;
    policy_free(u->policy);
    free(u);
}

MD_API const md_lr_policy *md_lr_updater_policy(const md_lr_updater *u) { return u->policy; }

MD_API int md_lr_updater_check_run(const md_lr_updater *u, int64_t max_epochs, int64_t max_iters, md_error *err) {
    const md_lr_policy_iface *it = u->policy->iface;
    return it->check_run ? it->check_run(u->policy, max_epochs, max_iters, err) : 0;
}

MD_API double md_lr_updater_at(const md_lr_updater *u, double base_lr, int64_t epoch, int64_t iter, int64_t epoch_len,
                               int64_t max_epochs, int64_t max_iters) {
    md_lr_progress at = progress_at(u->shared.by_epoch, epoch, iter, max_epochs, max_iters);
    return warmup_lr(&u->shared, u->policy->iface->get_lr(u->policy, base_lr, &at), iter, epoch_len);
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
