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
 *   [>>>>>>>>>>            ] 12/50, 3.1 task/s, elapsed: 4s, ETA:    12s
 * redrawn in place on a terminal. On anything else (a log file, a pipe)
 * the same text goes out as whole lines, one each time another tenth of
 * the total is done (and at least every 30 s), the last at the end. */
typedef struct md_progress {
    FILE *f;
    int64_t total, done;
    int bar_width;
    double t0;
    bool tty;
    int64_t printed;      /* done at the last line (not a terminal) */
    double printed_t;
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
    md_det_result *r;          /* r[i].bboxes / labels malloc'ed; r[i].masks (and their counts) too, or NULL */
    md_img_meta *metas;        /* the meta each image was tested with (filename, ori_shape, ...) */
} md_results;
void md_results_free(md_results *res);
/* mmdet's tools/test.py --out (mmcv.dump of the results list), chosen by
 * the file's extension: .pkl or .pickle a Python pickle that pickle.load /
 * mmcv.load read back as mmdet's list, .json the same layout as JSON. Per
 * image the detections by class (label order, each class's rows in the
 * result's order): a list of n_classes float32 arrays [k, 5] (x1, y1, x2,
 * y2, score); when any image has masks, every image is the tuple
 * (bbox_results, segm_results), segm_results[class] the list of
 * pycocotools RLE dicts {"size": [h, w], "counts": compressed string (bytes
 * in the pickle)} of that class's detections, as single_gpu_test's
 * encode_mask_results. In JSON the arrays are lists and tuples lists.
 * 0, or -1 with err set (another extension, a write error). */
int md_results_dump(const md_results *res, int n_classes, const char *path, md_error *err);

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
/* mmdet's multi_gpu_test with collect_results: `loader` yields this rank's
 * shard (a DistributedSampler's: rank r has r, r + W, ..., padded by
 * repeating the head); each rank tests its shard, the results of every
 * rank are gathered and put back in dataset order, the padding's repeats
 * dropped, so *out is what md_single_gpu_test gives over the whole set.
 * Every rank calls it; in a world of 1 it is md_single_gpu_test. */
int md_multi_gpu_test(md_ctx *ctx, md_module *model, md_loader *loader, const md_dataset *ds, bool progress,
                      md_results *out, md_error *err);

/* The model's simple_test, or NULL when its class has none. */
const md_model_iface *md_model_test_iface(const md_module *model);

/* ---- VOC-style evaluation: mmdet.core.evaluation's eval_map and eval_recalls ----
 *
 * md_voc_eval_map is eval_map with scale_ranges=None and tpfp_default:
 *  - per class and image, detections are matched in descending score order
 *    to the GT of highest IoU (ignored GT stacked after the others, first
 *    maximum wins); IoU >= iou_thr with a free GT: TP; with a GT already
 *    covered: FP; with an ignored GT: neither; below: FP; an image without
 *    GT of the class: every detection FP;
 *  - all images' detections of a class sorted by score (ties keep image,
 *    then detection order), cumulated, recall = tp / max(num_gts, eps),
 *    precision = tp / max(tp + fp, eps) in float32 as numpy does;
 *  - AP by '11points' (VOC2007: mean over recall thresholds 0, 0.1, ... 1.0
 *    of the highest precision at recall >= t, thresholds as numpy's arange)
 *    or 'area' (the precision envelope integrated over recall steps);
 *  - mAP: the mean AP (float32) of the classes that have GT (ignored GT not
 *    counted);
 *  - legacy (use_legacy_coordinate) adds 1 to widths and heights.
 * md_voc_eval_recalls is eval_recalls: per image the proposals sorted by
 * score (numpy's argsort reversed, so ties come last-first), the top N
 * matched greedily to GT by highest IoU, recall = share of GT with IoU >=
 * iou_thr. */

/* One image's ground truth: boxes (x1, y1, x2, y2) with 0-based labels, and
 * ignored ones (VOC's difficult) with labels too. */
typedef struct md_voc_gt {
    int n;
    const float *bboxes;
    const int64_t *labels;
    int n_ignore;
    const float *bboxes_ignore;
    const int64_t *labels_ignore;
} md_voc_gt;

/* eval_map over n_imgs images (res[i] the detections of gts[i]): the mean
 * AP into *mean_ap; per-class AP and GT counts into cls_ap[n_classes] /
 * cls_ngt[n_classes] when not NULL. A label outside [0, n_classes) is an
 * error naming the image. 0 or -1. */
int md_voc_eval_map(const md_det_result *res, const md_voc_gt *gts, int64_t n_imgs, int n_classes,
                    double iou_thr, bool eleven_points, bool legacy, double *mean_ap, double *cls_ap,
                    int64_t *cls_ngt, md_error *err);
/* eval_recalls over proposals (every box of a result; labels unused) for
 * the proposal counts nums[n_nums] at one IoU threshold: out[n_nums] (NaN
 * without GT). 0 or -1. */
int md_voc_eval_recalls(const md_det_result *res, const md_voc_gt *gts, int64_t n_imgs, const int *nums,
                        int n_nums, double iou_thr, bool legacy, double *out, md_error *err);

#ifdef __cplusplus
}
#endif
#endif
