/* Two-stage parts: the interfaces of RoI extractors ("roi_extractors"),
 * bbox heads and RoI heads ("heads"), as mmdet 2.x's SingleRoIExtractor,
 * BBoxHead and StandardRoIHead use each other. (The RPN is a dense head,
 * bbox.h.)
 *
 * Like backbones (models.h), a plugin's md_class `iface` points at its class
 * struct, which starts with md_model_class, and `build` returns an md_module*
 * of that class; a caller reaches the interface through the module:
 *
 *     md_module *ext = md_build_from_cfg(ctx, "roi_extractors", cfg, NULL, err);
 *     md_tensor *x = md_roi_extractor_class_of(ext)->forward(ctx, ext, feats, 4, rois);
 *
 * Forward calls allocate in the step arena and fail through the context's
 * sticky error. RoIs are [K, 5] f32: batch index, x1, y1, x2, y2 in the
 * (padded) input image's pixels, mmdet's bbox2roi layout.
 */
#ifndef MMDET_ROI_HEAD_H
#define MMDET_ROI_HEAD_H

#include "bbox.h"
#include "data.h"
#include "models.h"
#include "runner.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Interface codes (registry.h's MD_IFACE). */
#define MD_IFACE_ROI_EXTRACTOR MD_IFACE_CODE('R', 'O', 'E', 1)  /* md_roi_extractor_class */
#define MD_IFACE_BBOX_HEAD MD_IFACE_CODE('B', 'H', 'D', 1)      /* md_bbox_head_class */
#define MD_IFACE_ROI_HEAD MD_IFACE_CODE('R', 'H', 'D', 1)       /* md_roi_head_class */

/* ---- RoI extractors ("roi_extractors") ---- */
typedef struct md_roi_extractor_class {
    md_model_class model;         /* must be first */
    /* feats[0 .. n) finest first (n >= num_inputs; extra levels unused),
     * rois [K, 5] -> [K, out_channels, out_size, out_size]. */
    md_tensor *(*forward)(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, md_tensor *rois);
    int (*num_inputs)(const md_module *m);   /* len(featmap_strides) */
    int (*out_size)(const md_module *m);     /* roi_layer output_size */
} md_roi_extractor_class;

static inline const md_roi_extractor_class *md_roi_extractor_class_of(const md_module *m) {
    return (const md_roi_extractor_class *)m->cls;
}

/* ---- bbox heads ("heads") ---- */
/* mmdet's BBoxHead.get_targets result, concatenated over images. */
typedef struct md_bbox_targets {
    md_tensor *labels;            /* [N] i64, num_classes = background */
    md_tensor *label_weights;     /* [N] f32 */
    md_tensor *bbox_targets;      /* [N, 4] f32 (encoded unless reg_decoded_bbox) */
    md_tensor *bbox_weights;      /* [N, 4] f32 */
    md_tensor *rois;              /* [N, 4] the sampled boxes (reg_decoded_bbox decodes against them) */
} md_bbox_targets;

/* test_cfg.rcnn: score_thr, nms.iou_threshold, max_per_img. */
typedef struct md_rcnn_test_cfg {
    double score_thr, nms_iou;
    int64_t max_per_img;
} md_rcnn_test_cfg;

typedef struct md_bbox_head_class {
    md_model_class model;         /* must be first */
    /* roi feats [K, C, S, S] -> cls_score [K, num_classes + 1] and
     * bbox_pred [K, 4] (class agnostic) or [K, 4 * num_classes]. 0 or -1. */
    int (*forward)(md_ctx *ctx, md_module *m, md_tensor *x, md_tensor **cls_score, md_tensor **bbox_pred);
    /* get_targets(concat=True) over n images' sampling results (RoIs are
     * each image's positives then negatives); pos_weight <= 0 means 1. */
    int (*get_targets)(md_ctx *ctx, md_module *m, const md_sampling_result *samples, int n, double pos_weight,
                       md_bbox_targets *out);
    /* loss: adds loss_cls, acc and loss_bbox. */
    int (*loss)(md_ctx *ctx, md_module *m, md_tensor *cls_score, md_tensor *bbox_pred,
                const md_bbox_targets *t, md_losses *losses, md_error *err);
    /* get_bboxes for one image: rois [K, 5] (or [K, 4]), softmax scores,
     * decode, clip to img_shape (h, w), divide by scale_factor (w, h, w, h)
     * when rescale, then multiclass NMS. det_bboxes [D, 5] (x1 y1 x2 y2
     * score) and det_labels [D] i64 (step tensors). */
    int (*get_bboxes)(md_ctx *ctx, md_module *m, md_tensor *rois, md_tensor *cls_score, md_tensor *bbox_pred,
                      const int img_shape[2], const float scale_factor[4], bool rescale,
                      const md_rcnn_test_cfg *cfg, md_tensor **det_bboxes, md_tensor **det_labels);
    int (*num_classes)(const md_module *m);
    /* mmdet's get_bboxes with cfg=None (test-time augmentation): boxes
     * [K, 4 * num_classes] (or [K, 4]) decoded and clipped to img_shape,
     * divided by scale_factor when rescale, and softmax scores
     * [K, num_classes + 1]; no NMS. NULL: not supported. */
    int (*get_raw_bboxes)(md_ctx *ctx, md_module *m, md_tensor *rois, md_tensor *cls_score, md_tensor *bbox_pred,
                          const int img_shape[2], const float scale_factor[4], bool rescale, md_tensor **bboxes,
                          md_tensor **scores);
} md_bbox_head_class;

static inline const md_bbox_head_class *md_bbox_head_class_of(const md_module *m) {
    return (const md_bbox_head_class *)m->cls;
}

/* The RPN of a two-stage detector is a dense head (md_dense_head_class,
 * bbox.h): proposals from md_dense_head_forward_train /
 * md_dense_head_simple_test_rpn / md_dense_head_aug_test_rpn. */

/* ---- RoI heads ("heads"), StandardRoIHead ---- */
typedef struct md_roi_head_class {
    md_model_class model;         /* must be first */
    /* feats finest first; proposals[i] [P_i, 4 or 5] per image; gt boxes and
     * labels from the batch; rng drives the sampler. Adds named losses. */
    int (*forward_train)(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats, const md_batch *batch,
                         md_tensor *const *proposals, md_rng *rng, md_losses *losses, md_error *err);
    /* Detections per image (det_bboxes[i] [D, 5], det_labels[i] [D]). */
    int (*simple_test)(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats, const md_batch *batch,
                       md_tensor *const *proposals, bool rescale, md_tensor **det_bboxes,
                       md_tensor **det_labels, md_error *err);
    /* mmdet's aug_test (BBoxTestMixin.aug_test_bboxes): proposals[i] of
     * image i in the original image's pixels (from the RPN's aug_test),
     * mapped into each variant k (feats[k], md_batch_aug(batch, k)), boxes
     * and scores without NMS mapped back and averaged over the variants,
     * then multiclass NMS with test_cfg. Detections in the original
     * image's pixels when rescale, else scaled by variant 0's
     * scale_factor. NULL: not supported. */
    int (*aug_test)(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n_feats, md_batch *batch,
                    md_tensor *const *proposals, bool rescale, md_tensor **det_bboxes, md_tensor **det_labels,
                    md_error *err);
} md_roi_head_class;

static inline const md_roi_head_class *md_roi_head_class_of(const md_module *m) {
    return (const md_roi_head_class *)m->cls;
}

#ifdef __cplusplus
}
#endif
#endif
