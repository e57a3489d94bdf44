/* mmdet-run: the train command (mmdet's tools/train.py). */
#ifndef MMDET_RUN_H
#define MMDET_RUN_H

#include <stdio.h>
#include <mmdet/mmdet.h>

/* Trains what `cfg` describes. The command line has already been stored in
 * the config the way tools/train.py stores it: work_dir, resume_from,
 * auto_resume, gpu_ids, seed, auto_scale_lr.enable, plus validate (false
 * with --no-validate), deterministic, launcher and timestamp, which mmdet
 * passes as arguments. Returns 0, or -1 with err set. */
int run_training(md_ctx *ctx, md_cfg *cfg, md_error *err);

/* --list-modules: every registry with its entries and their files. */
void list_modules(md_ctx *ctx, FILE *out);

#endif
