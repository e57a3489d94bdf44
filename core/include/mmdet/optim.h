/* Optimizers (mmcv's OPTIMIZERS with its DefaultOptimizerConstructor's
 * paramwise_cfg), gradient clipping, and LR schedules with mmcv's exact
 * formulas (the "lr_policies" registry).
 *
 * An optimizer is two parts. The core holds what every optimizer shares:
 * one param group per parameter with mmcv's paramwise_cfg multipliers, the
 * step count, gradient zeroing and clipping, the lr and momentum setters
 * the schedules use, and the state tensors (made, saved and loaded by
 * name). A class of the "optimizers" registry adds its hyper-parameters
 * (its key schema fills a struct that starts with md_optimizer_hparams) and
 * its update rule; SGD, Adam and AdamW are plugins (plugins/optimizers/),
 * and so is any other:
 *
 *     typedef struct sign_sgd { md_optimizer_hparams base; } sign_sgd;
 *     static const md_key keys[] = { MD_OPTIMIZER_KEYS("0"), { 0 } };
 *     static int update(md_optimizer *o, const md_optimizer_hparams *hp, md_optimizer_param *ps, int n,
 *                       md_error *err) {
 *         for (int i = 0; i < n; i++) ... ps[i].p->grad, ps[i].lr, ps[i].weight_decay ...
 *         return 0;
 *     }
 *     static const md_optimizer_iface iface = { .update = update };
 *     static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
 *         (void)ctx;
 *         return md_optimizer_hparams_new(sizeof(sign_sgd), &iface, cfg, keys, err);
 *     }
 *     static const md_class cls = { .name = "SignSGD", .keys = keys, .build = build,
 *                                   MD_IFACE(&iface, MD_IFACE_OPTIMIZER), .doc = "..." };
 *     MD_PLUGIN("sign_sgd", "1.0", "Apache-2.0");
 *     MD_REGISTER("optimizers", cls)
 */
#ifndef MMDET_OPTIM_H
#define MMDET_OPTIM_H

#include "config.h"
#include "module.h"
#include "registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Interface codes (registry.h's MD_IFACE) of "optimizers" and "lr_policies". */
#define MD_IFACE_OPTIMIZER MD_IFACE_CODE('O', 'P', 'T', 1)   /* md_optimizer_iface */
#define MD_IFACE_LR_POLICY MD_IFACE_CODE('L', 'R', 'P', 1)   /* md_lr_policy_iface */

typedef struct md_optimizer md_optimizer;

/* ---- the "optimizers" registry ---- */
#define MD_OPTIMIZER_MAX_STATE 4

/* One parameter as an update sees it: the tensor (its gradient in p->grad),
 * its group's lr and weight decay (paramwise_cfg applied, the LR schedule's
 * value), and its state tensors, slot i named by the iface's
 * state_names[i]: NULL until made (md_optimizer_state) or loaded from a
 * checkpoint. */
typedef struct md_optimizer_param {
    const char *name;
    md_tensor *p;
    double lr, weight_decay;
    md_tensor **state;
} md_optimizer_param;

typedef struct md_optimizer_hparams md_optimizer_hparams;
typedef struct md_optimizer_iface {
    /* The state tensors' names, as checkpoints store them
     * ("optimizer.<param>.<name>", PyTorch's "momentum_buffer", "exp_avg",
     * ...); unused slots NULL. */
    const char *state_names[MD_OPTIMIZER_MAX_STATE];
    /* One step of the n parameters in ps, every one with a gradient and all
     * on the same device kind (the CPU, or a device backend's), so a device
     * update can be one multi-tensor launch. hp is what the class's build
     * returned. 0, or -1 with err set. Required. */
    int (*update)(md_optimizer *o, const md_optimizer_hparams *hp, md_optimizer_param *ps, int n, md_error *err);
    /* Frees what hp owns beyond itself (NULL: nothing). */
    void (*destroy)(md_optimizer_hparams *hp);
} md_optimizer_iface;

/* What an "optimizers" class builds: its hyper-parameters, in a struct that
 * starts with this header (md_optimizer_hparams_new fills it). */
struct md_optimizer_hparams {
    const md_optimizer_iface *iface;
    const char *type;              /* the registered name */
    double lr, weight_decay;       /* the base values each group's derive from */
    /* What momentum schedules move: SGD's momentum, Adam's beta1 (mmcv sets
     * a group's `momentum`, else its betas[0]). 0 for a class without one. */
    double momentum;
};

/* The keys every optimizer has: lr (required) and weight_decay (default
 * `weight_decay_`) stored into md_optimizer_hparams, and paramwise_cfg,
 * which the core reads (mmcv's build_optimizer pops it for the
 * constructor), and grad_clip, accepted (optimizer_config.grad_clip clips). */
#define MD_OPTIMIZER_KEYS(weight_decay_)                                                                 \
    { "lr", MD_KEY_FLOAT, NULL, "learning rate", true, MD_AT(md_optimizer_hparams, lr), .min = "0" },        \
    { "weight_decay", MD_KEY_FLOAT, weight_decay_, "weight decay", false,                                \
      MD_AT(md_optimizer_hparams, weight_decay), .min = "0" },                                           \
    { "paramwise_cfg", MD_KEY_GROUP, NULL, "per-parameter lr and decay multipliers (mmcv)", false,               \
      .field = MD_FIELD_NONE },                                                                                  \
    { "grad_clip", MD_KEY_ANY, NULL, "accepted; optimizer_config.grad_clip clips", false, .field = MD_FIELD_NONE }

/* Allocates a zeroed object of `size` (md_optimizer_hparams first), fills it
 * from cfg with `keys` (md_cfg_read_struct) and sets its iface and type.
 * NULL with err set. For a class's build. */
md_optimizer_hparams *md_optimizer_hparams_new(size_t size, const md_optimizer_iface *iface, const md_cfg *cfg,
                                               const md_key *keys, md_error *err);
/* `betas` of cfg (default (0.9, 0.999)), each in [0, 1), into betas[2]. 0,
 * or -1 with err naming the file and line. */
int md_optimizer_read_betas(const md_cfg *cfg, double betas[2], md_error *err);

/* State slot `slot` of a parameter: the existing tensor, else a new one
 * shaped like the parameter, on its device, zero-filled (*made then true).
 * NULL with err set. */
md_tensor *md_optimizer_state(md_optimizer *o, md_optimizer_param *p, int slot, bool *made, md_error *err);
/* Steps taken, this one included while an update runs (Adam's t). */
int64_t md_optimizer_step_count(const md_optimizer *o);

/* The update rules of PyTorch 1.13 that SGD, Adam and AdamW use, on the
 * CPU or, for device parameters, through the backend (one multi-tensor
 * launch where it has one): the same float operations, so the same bits,
 * everywhere. ps as the iface's update gets them. 0, or -1 with err set.
 *   SGD: d = g + wd w; with momentum, buf (state slot 0) = d on the first
 *   step, then momentum buf + (1 - dampening) d, and d = nesterov ?
 *   d + momentum buf : buf; w -= lr d.
 *   Adam (decoupled false) / AdamW (true): m, v (slots 0, 1) the moving
 *   averages of g (+ wd w for Adam; AdamW scales w by 1 - lr wd first);
 *   w -= lr / (1 - beta1^t) m / (sqrt(v) / sqrt(1 - beta2^t) + eps). */
int md_optimizer_sgd_update(md_optimizer *o, md_optimizer_param *ps, int n, double momentum, double dampening,
                            bool nesterov, md_error *err);
int md_optimizer_adam_update(md_optimizer *o, md_optimizer_param *ps, int n, double beta1, double beta2, double eps,
                             bool decoupled, md_error *err);

/* ---- building and using an optimizer ---- */
/* cfg is mmdet's `optimizer` dict: `type` names an "optimizers" class (SGD,
 * Adam, AdamW: plugins/optimizers), whose keys it gives, and paramwise_cfg
 * (custom_keys {key: {lr_mult, decay_mult}}, bias_lr_mult, bias_decay_mult,
 * norm_decay_mult, dwconv_decay_mult). Every parameter of `model` becomes
 * its own group as mmcv's DefaultOptimizerConstructor does. */
md_optimizer *md_optimizer_build(md_ctx *ctx, md_module *model, const md_cfg *cfg, md_error *err);
void md_optimizer_free(md_optimizer *opt);
/* One update of every parameter that has a gradient. */
int md_optimizer_step(md_optimizer *opt, md_error *err);
void md_optimizer_zero_grad(md_optimizer *opt);
const char *md_optimizer_type(const md_optimizer *opt);
double md_optimizer_base_lr(const md_optimizer *opt);

/* Groups: one per parameter, in state_dict order. */
int md_optimizer_group_count(const md_optimizer *opt);
const char *md_optimizer_group_name(const md_optimizer *opt, int i);
double md_optimizer_group_initial_lr(const md_optimizer *opt, int i);   /* base lr x lr_mult */
double md_optimizer_group_lr(const md_optimizer *opt, int i);
double md_optimizer_group_weight_decay(const md_optimizer *opt, int i);
void md_optimizer_set_group_lr(md_optimizer *opt, int i, double lr);
/* Scales every initial lr (auto_scale_lr), before training starts. */
void md_optimizer_scale_lr(md_optimizer *opt, double factor);
/* Momentum (SGD) or beta1 (Adam) for all groups, for momentum schedules. */
void md_optimizer_set_momentum(md_optimizer *opt, double momentum);
double md_optimizer_momentum(const md_optimizer *opt);

/* torch.nn.utils.clip_grad_norm_: returns the total norm of all gradients
 * (norm_type 2, 1 or INFINITY) and scales them by max_norm/(norm+1e-6) when
 * that is below 1. */
double md_optimizer_clip_grad_norm(md_optimizer *opt, double max_norm, double norm_type);

/* Optimizer state as tensors named "optimizer.<param>.<slot name>" plus
 * "optimizer.step"; loading checks every shape. */
int md_optimizer_save_state(const md_optimizer *opt, md_st_writer *w, md_error *err);
int md_optimizer_load_state(md_ctx *ctx, md_optimizer *opt, const md_st *st, md_error *err);

/* ---- LR schedules: mmcv's LrUpdaterHook and the "lr_policies" registry ----
 *
 *     lr_config = { policy = "step"; warmup = "linear"; warmup_iters = 500; step = [8, 11]; };
 *
 * `policy` names a class of "lr_policies" as mmcv resolves it: a name in
 * lower case is title-cased ("step" -> "Step", "cyclic" -> "Cyclic"), any
 * other is kept ("CosineAnnealing", "OneCycle"). The keys every policy
 * shares (mmcv's LrUpdaterHook: by_epoch, warmup, warmup_iters,
 * warmup_ratio, warmup_by_epoch) are read and applied once, by the core
 * (md_lr_updater); a policy gives the regular lr at a point of the run
 * (mmcv's get_lr). The core registers mmcv's eight (core/runner/schedule.c):
 * Fixed, Step, Exp, Poly, Inv, CosineAnnealing, Cyclic, OneCycle. A plugin
 * adds one:
 *
 *     typedef struct linear { md_lr_policy base; double end_ratio; } linear;
 *     static const md_key keys[] = {
 *         MD_LR_POLICY_KEYS,
 *         { "end_ratio", MD_KEY_FLOAT, "0", "the last lr over the first", false, MD_AT(linear, end_ratio) },
 *         { 0 } };
 *     static double get_lr(const md_lr_policy *p, double base_lr, const md_lr_progress *at) {
 *         double f = at->progress / at->max_progress;
 *         return base_lr * (1 - f + f * ((const linear *)p)->end_ratio);
 *     }
 *     static const md_lr_policy_iface iface = { .get_lr = get_lr };
 *     static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
 *         (void)ctx;
 *         return md_lr_policy_new(sizeof(linear), &iface, cfg, keys, err);
 *     }
 *     static const md_class cls = { .name = "Linear", .keys = keys, .build = build,
 *                                   MD_IFACE(&iface, MD_IFACE_LR_POLICY), .doc = "..." };
 *     MD_REGISTER("lr_policies", cls)      (lr_config = { policy = "linear"; ... })
 */

/* Where the run is when an lr is asked for. */
typedef struct md_lr_progress {
    int64_t epoch, iter;                 /* completed epochs; the training iteration, from 0 */
    int64_t max_epochs, max_iters;       /* the run's */
    /* mmcv's progress and max_progress: epoch and max_epochs when the
     * schedule is by_epoch, else iter and max_iters. */
    double progress, max_progress;
} md_lr_progress;

typedef struct md_lr_policy md_lr_policy;
typedef struct md_lr_policy_iface {
    /* The regular lr (warmup is the core's) at `at` for a param group whose
     * initial lr is base_lr. Required. */
    double (*get_lr)(const md_lr_policy *p, double base_lr, const md_lr_progress *at);
    /* Checks the policy against the run's length when it starts (NULL:
     * nothing to check). 0, or -1 with err set. */
    int (*check_run)(const md_lr_policy *p, int64_t max_epochs, int64_t max_iters, md_error *err);
    /* Frees what the policy owns beyond itself (NULL: nothing). */
    void (*destroy)(md_lr_policy *p);
    /* Counted in iterations only: by_epoch defaults to, and must be, false
     * (mmcv's Cyclic and OneCycle). */
    bool iter_based;
} md_lr_policy_iface;

/* What an "lr_policies" class builds starts with this header. */
struct md_lr_policy {
    const md_lr_policy_iface *iface;
    const char *type;                    /* the registered name */
};

/* The keys every policy shares, in each policy's schema; the core reads
 * them from lr_config (none is stored into the policy). */
#define MD_LR_POLICY_KEYS                                                                               \
    { "policy", MD_KEY_STRING, NULL, "the lr_policies class (\"step\" -> Step)", true,                           \
      .field = MD_FIELD_NONE },                                                                                  \
    { "by_epoch", MD_KEY_BOOL, NULL, "progress in epochs (default true; false for iteration policies)", false,   \
      .field = MD_FIELD_NONE },                                                                                  \
    { "warmup", MD_KEY_ANY, NULL, "constant, linear, exp or None", false,                                        \
      .field = MD_FIELD_NONE },                                                                                  \
    { "warmup_iters", MD_KEY_INT, "0", "warmup length in iterations (epochs with warmup_by_epoch)", false,       \
      .field = MD_FIELD_NONE },                                                                                  \
    { "warmup_ratio", MD_KEY_FLOAT, "0.1", "the first warmup lr over the regular lr", false,                     \
      .field = MD_FIELD_NONE },                                                                                  \
    { "warmup_by_epoch", MD_KEY_BOOL, "false", "warmup_iters counts epochs", false, .field = MD_FIELD_NONE }

/* Allocates a zeroed object of `size` (md_lr_policy first), fills it from
 * cfg with `keys` (md_cfg_read_struct) and sets its iface and type. NULL
 * with err set. For a policy's build. */
md_lr_policy *md_lr_policy_new(size_t size, const md_lr_policy_iface *iface, const md_cfg *cfg, const md_key *keys,
                               md_error *err);
/* The class name mmcv makes of a `policy` value, into buf ("step" -> "Step"). */
const char *md_lr_policy_name(const char *policy, char *buf, size_t n);

/* An lr_config built: its policy from "lr_policies" and the shared keys. */
typedef struct md_lr_updater md_lr_updater;
md_lr_updater *md_lr_updater_build(md_ctx *ctx, const md_cfg *lr_config, md_error *err);
void md_lr_updater_free(md_lr_updater *u);
const md_lr_policy *md_lr_updater_policy(const md_lr_updater *u);
/* The policy's check of the run (iface->check_run). */
int md_lr_updater_check_run(const md_lr_updater *u, int64_t max_epochs, int64_t max_iters, md_error *err);
/* The lr in effect during training iteration `iter` (global, from 0) of
 * epoch `epoch` for a group whose initial lr is base_lr: the policy's, then
 * warmup. epoch_len is the number of iterations per epoch (warmup_by_epoch). */
double md_lr_updater_at(const md_lr_updater *u, double base_lr, int64_t epoch, int64_t iter, int64_t epoch_len,
                        int64_t max_epochs, int64_t max_iters);

/* ---- the built-in policies' parameters, without a context ----
 * md_lr_schedule holds the shared keys and the parameters of the core's
 * policies; md_lr_schedule_parse reads an lr_config of one of them with
 * the same schemas, rules and messages as md_lr_updater_build, and
 * md_lr_schedule_at evaluates it with the same formulas. */
typedef enum md_lr_policy_kind {
    MD_LR_FIXED = 0, MD_LR_STEP, MD_LR_EXP, MD_LR_POLY, MD_LR_INV, MD_LR_COSINE,
    MD_LR_CYCLIC, MD_LR_ONECYCLE,  /* iteration-based only (by_epoch false), as in mmcv */
} md_lr_policy_kind;
typedef enum md_warmup { MD_WARMUP_NONE = 0, MD_WARMUP_CONSTANT, MD_WARMUP_LINEAR, MD_WARMUP_EXP } md_warmup;

#define MD_LR_MAX_STEPS 32
typedef struct md_lr_schedule {
    md_lr_policy_kind policy;
    bool by_epoch;                 /* progress counted in epochs (default true) */
    md_warmup warmup;
    int64_t warmup_iters;          /* in epochs when warmup_by_epoch */
    double warmup_ratio;           /* default 0.1 */
    bool warmup_by_epoch;
    int64_t step[MD_LR_MAX_STEPS]; /* Step: milestones, or one period when step_is_int */
    int n_step;
    bool step_is_int;
    double gamma;                  /* Step 0.1, Exp, Inv */
    double power;                  /* Poly 1.0, Inv */
    double min_lr;                 /* Step (if has_min_lr), Poly (0), Cosine */
    bool has_min_lr;
    double min_lr_ratio;           /* Cosine: target = base_lr * ratio */
    bool has_min_lr_ratio;
    /* Cyclic: target_ratio (high, low) relative to base_lr, cyclic_times,
     * step_ratio_up, and gamma (default 1) shrinking each later cycle. */
    double target_ratio[2];
    int64_t cyclic_times;
    double step_ratio_up;
    bool anneal_linear;            /* Cyclic, OneCycle: anneal_strategy "linear" (default "cos") */
    /* OneCycle: starts at max_lr / div_factor (whatever the optimizer's lr),
     * rises for pct_start of total_steps (0: the runner's max_iters), then
     * falls to start / final_div_factor; three_phase as in mmcv. */
    double max_lr, pct_start, div_factor, final_div_factor;
    int64_t total_steps;
    bool three_phase;
} md_lr_schedule;

/* From mmdet's lr_config dict of a built-in policy ("fixed", "step", "exp",
 * "poly", "inv", "CosineAnnealing", "cyclic", "OneCycle"; warmup
 * "constant"/"linear"/"exp"/None). */
int md_lr_schedule_parse(const md_cfg *lr_config, md_lr_schedule *s, md_error *err);
/* The lr in effect during training iteration `iter` (global, from 0) of
 * epoch `epoch`, for a group whose initial lr is base_lr. epoch_len is the
 * number of iterations per epoch (for warmup_by_epoch). */
double md_lr_schedule_at(const md_lr_schedule *s, double base_lr, int64_t epoch, int64_t iter,
                         int64_t epoch_len, int64_t max_epochs, int64_t max_iters);

/* ---- momentum schedules (mmcv MomentumUpdaterHook, momentum_config) ----
 * The schedule moves the optimizer's momentum (SGD) or beta1 (Adam). Warmup
 * divides the regular momentum as mmcv does: constant m / r, linear
 * m / (1 - (1 - k/W)(1 - r)), exp m / r^(1 - k/W), for iterations k < W
 * (warmup_ratio r defaults to 0.9). */
typedef enum md_momentum_policy {
    MD_MOM_STEP = 0, MD_MOM_COSINE, MD_MOM_CYCLIC, MD_MOM_ONECYCLE,
} md_momentum_policy;

typedef struct md_momentum_schedule {
    md_momentum_policy policy;
    bool by_epoch;                 /* Step, CosineAnnealing: default true; Cyclic, OneCycle: false only */
    md_warmup warmup;
    int64_t warmup_iters;
    double warmup_ratio;
    int64_t step[MD_LR_MAX_STEPS]; /* Step: milestones, or one period when step_is_int */
    int n_step;
    bool step_is_int;
    double gamma;                  /* Step: 0.5; Cyclic: cycle decay, 1 */
    double min_momentum;           /* Step (clip, if has_min_momentum), Cosine */
    bool has_min_momentum;
    double min_momentum_ratio;     /* Cosine */
    bool has_min_momentum_ratio;
    double target_ratio[2];        /* Cyclic: default (0.85/0.95, 1) */
    int64_t cyclic_times;
    double step_ratio_up;
    bool anneal_linear;            /* Cyclic, OneCycle */
    double base_momentum, max_momentum;  /* OneCycle: 0.85, 0.95 (the optimizer's own is not used) */
    double pct_start;              /* OneCycle: 0.3 */
    bool three_phase;
} md_momentum_schedule;

/* From mmdet's momentum_config dict (policy "step", "CosineAnnealing",
 * "cyclic", "OneCycle"). */
int md_momentum_schedule_parse(const md_cfg *momentum_config, md_momentum_schedule *s, md_error *err);
/* The momentum in effect during training iteration `iter` of `epoch` for a
 * group whose initial momentum is base_momentum. */
double md_momentum_schedule_at(const md_momentum_schedule *s, double base_momentum, int64_t epoch, int64_t iter,
                               int64_t max_epochs, int64_t max_iters);

#ifdef __cplusplus
}
#endif
#endif
