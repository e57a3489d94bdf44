/* Testing a model over a dataset: mmdet's single_gpu_test and mmcv's
 * ProgressBar, shared by EvalHook and bin/mmdet-test.
 *
 *     md_results res;
 *     md_single_gpu_test(ctx, model, loader, ds, true, &res, err);   // eval mode, grad off
 *     ds->iface->evaluate(ds, res.r, res.n, "bbox", &metrics, err);
 *     md_results_free(&res);
 */
#ifndef MMDET_EVALUATION_H
#define MMDET_EVALUATION_H

#include <stdio.h>
#include "data.h"
#include "runner.h"

#ifdef __cplusplus
extern "C" {
#endif

/* mmcv's ProgressBar on a stream (stderr):
 *   [>>>>>>>>>>            ] 12/50, 3.1 task/s, elapsed: 4s, ETA:    12s */
typedef struct md_progress {
    FILE *f;
    int64_t total, done;
    int bar_width;
    double t0;
} md_progress;
void md_progress_start(md_progress *p, FILE *f, int64_t total);
void md_progress_update(md_progress *p, int64_t n);
/* Ends the line. */
void md_progress_finish(md_progress *p);
/* The line update() writes, without the leading '\r' (for tests). */
const char *md_progress_format(const md_progress *p, double elapsed, int terminal_width, char *buf, size_t n);

/* Detections for every image of a dataset, in dataset order, owned. */
typedef struct md_results {
    int64_t n;
    md_det_result *r;          /* r[i].bboxes / labels malloc'ed */
    md_img_meta *metas;        /* the meta each image was tested with (filename, ori_shape, ...) */
} md_results;
void md_results_free(md_results *res);

/* mmdet's single_gpu_test: the model in eval mode with grad off, its
 * md_model_iface.simple_test on every batch of `loader` (aug_test on a
 * batch of several MultiScaleFlipAug variants, as mmdet's forward_test;
 * an error naming the model when it has none; the loader must yield
 * each index of `ds` once: shuffle off), results copied out of the step
 * arena (released after each batch, so the caller's step tensors stay
 * valid), a progress bar on stderr when `progress`. The model's training
 * mode is restored. Errors name the batch and the image files. */
int md_single_gpu_test(md_ctx *ctx, md_module *model, md_loader *loader, const md_dataset *ds, bool progress,
                       md_results *out, md_error *err);

/* The model's simple_test, or NULL when its class has none. */
const md_model_iface *md_model_test_iface(const md_module *model);

#ifdef __cplusplus
}
#endif
#endif
