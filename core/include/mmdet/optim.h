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
} md_lr_schedule;

/* From mmdet's lr_config dict (policy "fixed", "step", "exp", "poly", "inv",
 * "CosineAnnealing"; warmup "constant"/"linear"/"exp"/None). */
int md_lr_schedule_parse(const md_cfg *lr_config, md_lr_schedule *s, md_error *err);
/* The lr in effect during training iteration `iter` (global, from 0) of
 * epoch `epoch`, for a group whose initial lr is base_lr. epoch_len is the
 * number of iterations per epoch (for warmup_by_epoch). */
double md_lr_schedule_at(const md_lr_schedule *s, double base_lr, int64_t epoch, int64_t iter,
                         int64_t epoch_len, int64_t max_epochs, int64_t max_iters);

#ifdef __cplusplus
}
#endif
#endif
