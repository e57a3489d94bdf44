/* Optimizers (SGD, Adam, AdamW with mmcv's paramwise_cfg), gradient
 * clipping, and LR schedules with mmcv's exact formulas. */
#ifndef MMDET_OPTIM_H
#define MMDET_OPTIM_H

#include "config.h"
#include "module.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_optimizer md_optimizer;

/* cfg is mmdet's `optimizer` dict: type ("SGD", "Adam", "AdamW"), lr,
 * momentum, dampening, nesterov, weight_decay, betas, eps, amsgrad (refused),
 * and paramwise_cfg (custom_keys {key: {lr_mult, decay_mult}}, bias_lr_mult,
 * bias_decay_mult, norm_decay_mult, dwconv_decay_mult). Every parameter of
 * `model` becomes its own group as mmcv's DefaultOptimizerConstructor does. */
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

/* Optimizer state as tensors named "optimizer.<param>.<slot>" plus
 * "optimizer.step"; loading checks every shape. */
int md_optimizer_save_state(const md_optimizer *opt, md_st_writer *w, md_error *err);
int md_optimizer_load_state(md_ctx *ctx, md_optimizer *opt, const md_st *st, md_error *err);

/* ---- LR schedules (mmcv LrUpdaterHook) ---- */
typedef enum md_lr_policy {
    MD_LR_FIXED = 0, MD_LR_STEP, MD_LR_EXP, MD_LR_POLY, MD_LR_INV, MD_LR_COSINE,
    MD_LR_CYCLIC, MD_LR_ONECYCLE,  /* iteration-based only (by_epoch false), as in mmcv */
} md_lr_policy;
typedef enum md_warmup { MD_WARMUP_NONE = 0, MD_WARMUP_CONSTANT, MD_WARMUP_LINEAR, MD_WARMUP_EXP } md_warmup;

#define MD_LR_MAX_STEPS 32
typedef struct md_lr_schedule {
    md_lr_policy policy;
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

/* From mmdet's lr_config dict (policy "fixed", "step", "exp", "poly", "inv",
 * "CosineAnnealing", "cyclic", "OneCycle"; warmup "constant"/"linear"/"exp"/None). */
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
