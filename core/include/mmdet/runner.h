/* The runner: mmcv's BaseRunner with hooks, and the "runners" registry
 * (mmcv's RUNNERS) of the classes that run the workflow: EpochBasedRunner
 * and IterBasedRunner, registered by the core.
 *
 * The runner drives a model (an md_module whose class implements
 * md_model_iface) over batch sources (md_batch_source: a data loader, or
 * anything that yields batches), calling hooks at mmcv's points in priority
 * order. Hooks are plugins in the "hooks" registry: the built object is an
 * md_hook whose iface says which points it serves. A runner class says how
 * one phase of the workflow runs (md_runner_iface), from the core's blocks
 * (md_runner_run_epoch, md_runner_run_iters); the core keeps the rest:
 * hooks, the iterations, checkpoints, resume, logging.
 */
#ifndef MMDET_RUNNER_H
#define MMDET_RUNNER_H

#include "data.h"
#include "module.h"
#include "optim.h"
#include "registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- named losses a model returns (mmdet's dict of losses) ---- */
#define MD_MAX_LOSSES 32
typedef struct md_losses {
    int n;
    char names[MD_MAX_LOSSES][48];
    md_tensor *values[MD_MAX_LOSSES];   /* scalar f32 step tensors */
} md_losses;
/* Adds (or, for a repeated name, replaces) one named value. */
int md_losses_add(md_losses *l, const char *name, md_tensor *value, md_error *err);
/* mmdet's _parse_losses: every entry whose name contains "loss" summed into
 * one differentiable scalar; NULL (ctx error) when there is none. */
md_tensor *md_losses_total(md_ctx *ctx, const md_losses *l);

/* Interface codes (registry.h's MD_IFACE) of "detectors" (a trainable
 * model's md_model_iface) and "hooks". */
#define MD_IFACE_MODEL MD_IFACE_CODE('M', 'D', 'L', 1)   /* md_model_iface */
#define MD_IFACE_HOOK MD_IFACE_CODE('H', 'O', 'K', 1)    /* md_hook_iface */
#define MD_IFACE_RUNNER MD_IFACE_CODE('R', 'U', 'N', 1)  /* md_runner_iface */

/* ---- what the runner trains ---- */
typedef struct md_model_iface {
    /* forward_train on one batch (an md_batch from the loader): fill
     * `losses` (step tensors). */
    int (*train_step)(md_ctx *ctx, md_module *model, void *batch, md_losses *losses, md_error *err);
    /* simple_test on one batch, in eval mode with grad off: results[i] for
     * image i of the batch, boxes in the original image's pixels (rescaled
     * by the meta's scale_factor, as mmdet's rescale=True). The arrays may
     * live in the step arena: valid until the next md_ctx_step_reset, so a
     * caller keeping them copies. NULL when the model cannot test. */
    int (*simple_test)(md_ctx *ctx, md_module *model, void *batch, md_det_result *results, md_error *err);
    /* mmdet's aug_test on a batch of several test-time variants (an
     * md_batch with n_augs > 1, variant k in augs[k]): results[i] merged
     * over the variants of image i, boxes in the original image's pixels.
     * Same lifetime rules as simple_test. NULL when the model has no
     * test-time augmentation. */
    int (*aug_test)(md_ctx *ctx, md_module *model, void *batch, md_det_result *results, md_error *err);
    /* mmdet's onnx_export while an ONNX trace is on (onnx.h), in eval mode
     * with grad off: the forward on img [N, 3, H, W] (already the graph
     * input "input"), then the graph outputs: with postprocess "dets"
     * [N, K, 5] and "labels" [N, K], else the heads' raw outputs. NULL
     * when the model cannot be exported. */
    int (*onnx_export)(md_ctx *ctx, md_module *model, md_tensor *img, bool postprocess, md_error *err);
    /* mmdet's forward_dummy (what its get_flops.py runs): the network
     * without post-processing on img [N, 3, H, W] in host memory: backbone,
     * neck and the heads' raw outputs (a two-stage detector's RoI head on
     * 1000 proposals), each part in the scope of its module name, outputs
     * dropped. The caller sets eval mode and grad off. NULL: not
     * supported. */
    int (*forward_dummy)(md_ctx *ctx, md_module *model, md_tensor *img, md_error *err);
} md_model_iface;

/* ---- where batches come from ---- */
typedef struct md_batch_source {
    void *self;
    int64_t (*len)(void *self);                                 /* batches per epoch */
    int (*begin_epoch)(void *self, int64_t epoch, md_error *err);/* reshuffle for that epoch */
    /* The next batch of the epoch, NULL at its end (err untouched) or on error (err set). */
    void *(*next)(void *self, md_error *err);
    void (*release)(void *self, void *batch);                   /* may be NULL */
    int64_t (*batch_size)(void *self);                          /* images per batch (logging) */
} md_batch_source;

/* ---- hooks ---- */
typedef struct md_runner md_runner;
typedef struct md_hook md_hook;
typedef int (*md_hook_fn)(md_hook *h, md_runner *r, md_error *err);

/* mmcv's priorities. */
enum {
    MD_PRIORITY_HIGHEST = 0, MD_PRIORITY_VERY_HIGH = 10, MD_PRIORITY_HIGH = 30, MD_PRIORITY_ABOVE_NORMAL = 40,
    MD_PRIORITY_NORMAL = 50, MD_PRIORITY_BELOW_NORMAL = 60, MD_PRIORITY_LOW = 70, MD_PRIORITY_VERY_LOW = 90,
    MD_PRIORITY_LOWEST = 100,
};
/* A priority from a config value: an int, or a name ("VERY_HIGH"); -1 if bad. */
int md_priority_parse(const char *name);

typedef struct md_hook_iface {
    md_hook_fn before_run, after_run;
    md_hook_fn before_train_epoch, after_train_epoch, before_val_epoch, after_val_epoch;
    md_hook_fn before_train_iter, after_train_iter, before_val_iter, after_val_iter;
    void (*destroy)(md_hook *h);       /* frees the hook (NULL: free()) */
    int default_priority;              /* used when the config gives none */
} md_hook_iface;

struct md_hook {
    const md_hook_iface *iface;
    int priority;
    char type[64];                     /* registered name, for messages */
};

/* ---- "runners": how the workflow runs ---- */
typedef struct md_runner_iface {
    /* Training counted in epochs (max_epochs given, max_iters = max_epochs x
     * the train source's length) or in iterations (max_iters given; every
     * source's first epoch is begun before the first phase, as mmcv's
     * IterLoader does); hooks read it (md_runner_by_epoch). */
    bool by_epoch;
    /* One phase of the workflow (mmcv's train / val): `count` epochs of
     * src, or iterations for an iteration-based runner, training when
     * `train`. The core calls it for each phase in turn until training
     * ends. 0, or -1 with err set. Required. */
    int (*run_phase)(md_runner *r, md_batch_source *src, bool train, int count, md_error *err);
} md_runner_iface;

/* What a "runners" class builds: its interface and the run's length, which
 * its schema fills (MD_AT(md_runner_spec, max_epochs)); malloc'ed. */
typedef struct md_runner_spec {
    const md_runner_iface *iface;
    int64_t max_epochs, max_iters;
} md_runner_spec;
/* A spec of `iface` filled from cfg with `keys`; NULL with err set. For a
 * runner class's build. */
md_runner_spec *md_runner_spec_new(const md_runner_iface *iface, const md_cfg *cfg, const md_key *keys, md_error *err);

/* The blocks of a run_phase: one epoch of src (mmcv's EpochBasedRunner
 * train / val: before_*_epoch hooks, every batch, after_*_epoch), and
 * `count` iterations, a source that runs dry starting its next epoch
 * (mmcv's IterBasedRunner with its IterLoader; training stops at
 * max_iters). 0, or -1 with err set. */
int md_runner_run_epoch(md_runner *r, md_batch_source *src, bool train, md_error *err);
int md_runner_run_iters(md_runner *r, md_batch_source *src, bool train, int count, md_error *err);

/* ---- the runner ---- */
typedef struct md_runner_opts {
    bool by_epoch;                     /* EpochBasedRunner (true) or IterBasedRunner (when iface is NULL) */
    int64_t max_epochs, max_iters;     /* the one that applies; the other is derived */
    const char *work_dir;
    const char *timestamp;             /* "YYYYmmdd_HHMMSS" for log names */
    const char *config_text;           /* stored in checkpoints */
    const char *classes_json;          /* CLASSES, stored in checkpoints */
    uint64_t seed;
    const md_runner_iface *iface;      /* a runner class's; NULL: the built-in one by by_epoch */
} md_runner_opts;

md_runner *md_runner_new(md_ctx *ctx, md_module *model, md_optimizer *opt, const md_runner_opts *o, md_error *err);
/* mmcv's build_runner: the class named by cfg's `type` (mmdet's `runner`
 * dict; NULL, None or no type: EpochBasedRunner) from the "runners"
 * registry, which gives the interface and the run's length; the other
 * options come from `o`. */
md_runner *md_runner_build(md_ctx *ctx, const md_cfg *cfg, md_module *model, md_optimizer *opt,
                           const md_runner_opts *o, md_error *err);
void md_runner_free(md_runner *r);     /* frees hooks; not the model or optimizer */

/* Adds a hook (the runner owns it) at its priority; equal priorities keep
 * registration order. */
int md_runner_register_hook(md_runner *r, md_hook *h, md_error *err);
/* Builds a hook from a config dict through the "hooks" registry; the
 * optional `priority` key (int or name) overrides the default. */
int md_runner_register_hook_cfg(md_runner *r, const md_cfg *cfg, int default_priority, md_error *err);
/* mmcv's register_training_hooks: LR updater (lr_config), momentum
 * (momentum_config), optimizer (optimizer_config), checkpoint
 * (checkpoint_config), IterTimerHook, loggers (log_config.hooks), then
 * custom_hooks; any of the configs may be NULL. */
int md_runner_register_training_hooks(md_runner *r, const md_cfg *lr_config, const md_cfg *optimizer_config,
                                      const md_cfg *checkpoint_config, const md_cfg *log_config,
                                      const md_cfg *momentum_config, const md_cfg *custom_hooks, md_error *err);
int md_runner_hook_count(const md_runner *r);
md_hook *md_runner_hook(const md_runner *r, int i);
/* The last registered logger hook (type containing "LoggerHook"), or NULL:
 * the one that clears the log buffer after logging, as mmcv's
 * LoggerHook.before_run sets its reset_flag, so loggers before it read the
 * same values. */
md_hook *md_runner_last_logger(const md_runner *r);

/* workflow: modes[i] is "train" or "val", counts[i] epochs (or iterations
 * for the iteration-based runner); sources[i] feeds phase i. */
int md_runner_run(md_runner *r, md_batch_source *const *sources, const char *const *modes, const int *counts,
                  int n_phases, md_error *err);

/* Resume: model, optimizer, epoch, iter and hook messages; load_from: weights only. */
int md_runner_resume(md_runner *r, const char *path, md_error *err);
int md_runner_load_checkpoint(md_runner *r, const char *path, md_error *err);
/* Saves <dir>/<name> (model, optimizer unless NULL-ed by save_optimizer
 * false, meta), then links latest when `link_latest`. */
int md_runner_save_checkpoint(md_runner *r, const char *dir, const char *name, bool save_optimizer,
                              bool link_latest, md_error *err);
/* Asks the runner to stop after the current iteration (signal handlers). */
void md_runner_request_stop(md_runner *r);

/* ---- state hooks read ---- */
md_ctx *md_runner_ctx(md_runner *r);
md_module *md_runner_model(md_runner *r);
md_optimizer *md_runner_optimizer(md_runner *r);
const char *md_runner_work_dir(const md_runner *r);
const char *md_runner_timestamp(const md_runner *r);
const char *md_runner_mode(const md_runner *r);       /* "train" or "val" */
int64_t md_runner_epoch(const md_runner *r);          /* completed epochs */
int64_t md_runner_iter(const md_runner *r);           /* completed training iterations */
int64_t md_runner_inner_iter(const md_runner *r);     /* index within the epoch */
int64_t md_runner_max_epochs(const md_runner *r);
int64_t md_runner_max_iters(const md_runner *r);
int64_t md_runner_epoch_len(const md_runner *r);      /* batches in the current phase's epoch */
bool md_runner_by_epoch(const md_runner *r);
const md_losses *md_runner_losses(const md_runner *r); /* of the current iteration */
md_tensor *md_runner_loss(const md_runner *r);         /* their total (NULL if none) */
const char *md_runner_last_checkpoint(const md_runner *r);
uint64_t md_runner_seed(const md_runner *r);
/* The config as text (md_runner_opts.config_text), or NULL. */
const char *md_runner_config_text(const md_runner *r);
/* The training dataset's CLASSES as a JSON list of strings (NULL if unknown). */
const char *md_runner_classes(const md_runner *r);

/* mmcv's log_buffer: values averaged (count-weighted) until cleared. */
void md_runner_log_value(md_runner *r, const char *key, double value, double count);
int md_runner_log_count(const md_runner *r);
const char *md_runner_log_key(const md_runner *r, int i);
double md_runner_log_average(const md_runner *r, const char *key);  /* NAN if absent */
void md_runner_log_clear(md_runner *r);

/* hook_msgs: small named values kept in checkpoints (best score, ...). */
int md_runner_set_msg(md_runner *r, const char *key, const char *value);
const char *md_runner_get_msg(const md_runner *r, const char *key);
/* mmcv's runner.meta['fp16'] (a JSON object; the Fp16OptimizerHook keeps
 * its loss scaler's state there): saved in checkpoints, restored on
 * resume; NULL when not set. */
int md_runner_set_meta_fp16(md_runner *r, const char *json);
const char *md_runner_meta_fp16(const md_runner *r);

#ifdef __cplusplus
}
#endif
#endif
