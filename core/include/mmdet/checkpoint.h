/* Checkpoints: model state, optional optimizer state and metadata in one
 * safetensors file, written atomically, with a `latest.safetensors` link,
 * as mmcv's save_checkpoint / load_checkpoint / find_latest_checkpoint. */
#ifndef MMDET_CHECKPOINT_H
#define MMDET_CHECKPOINT_H

#include "module.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_CKPT_EXT ".safetensors"

typedef struct md_ckpt_meta {
    int64_t epoch, iter;        /* completed epochs and iterations */
    int64_t inner_iter;         /* batches done in the unfinished epoch (0 at an epoch's end) */
    const char *config;         /* the merged config text (may be NULL) */
    const char *classes;        /* CLASSES as a JSON list (may be NULL) */
    const char *hook_msgs;      /* JSON object: best score, best checkpoint (may be NULL) */
    const char *plugins;        /* the plugin set, md_plugin_set_text's form (may be NULL) */
    const char *fp16;           /* mmcv's meta['fp16']: {"loss_scaler": GradScaler state} (may be NULL) */
} md_ckpt_meta;

/* Writes path atomically (temporary file, fsync, rename). opt may be NULL
 * (save_optimizer false). */
int md_checkpoint_save(const char *path, md_module *model, const md_optimizer *opt, const md_ckpt_meta *meta,
                       md_error *err);
/* Points <dir>/latest.safetensors at `filename` (a name inside dir), atomically. */
int md_checkpoint_link_latest(const char *dir, const char *filename, md_error *err);
/* mmdet's find_latest_checkpoint: latest.safetensors if present, else the
 * file with the largest N in *_N.safetensors; NULL if none (malloc'ed). */
char *md_checkpoint_find_latest(const char *dir);

typedef struct md_ckpt_info {
    int64_t epoch, iter, inner_iter;
    char classes[4096];
    char hook_msgs[4096];
    char plugins[16384];        /* the plugin set it was trained with ("" when not recorded) */
    md_load_report report;
    char fp16[1024];            /* meta['fp16'] of a mixed-precision run ("" when none) */
} md_ckpt_info;
/* Loads model weights (strip "module." prefixes; non-strict as mmcv's
 * load_checkpoint: the report lists missing and unexpected keys and the
 * tensors of another shape, which keep their values) and, when opt is not
 * NULL, the optimizer state (resume, where a tensor of another shape is an
 * error). info may be NULL. */
int md_checkpoint_load(md_ctx *ctx, const char *path, md_module *model, md_optimizer *opt, md_ckpt_info *info,
                       md_error *err);
/* Logs a load report as a warning: the counts, then every key's line. */
void md_checkpoint_warn_report(md_ctx *ctx, const char *path, const md_load_report *r);
/* mmdet's init_detector: the detector of cfg.model built for testing
 * (test_cfg from the config's top level passed down, train_cfg left out)
 * with the weights of `checkpoint` (safetensors or .pth) loaded and the
 * load logged; missing or unexpected keys are a warning. The model is then
 * on the config's `device` (md_module_to_config_device). */
md_module *md_detector_init(md_ctx *ctx, const md_cfg *cfg, const char *config_name, const char *checkpoint,
                            md_ckpt_info *info, md_error *err);
/* Moves `model` to the device the config's top-level `device` key names
 * ("cpu", the default, "cuda" or "cuda:N"), initialising it and logging its
 * description; nothing to do for the CPU. md_detector_init calls it after
 * loading the weights; training calls it before building the optimizer. */
int md_module_to_config_device(md_ctx *ctx, md_module *model, const md_cfg *cfg, md_error *err);

#ifdef __cplusplus
}
#endif
#endif
