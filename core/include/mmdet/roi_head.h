/* Two-stage parts: the interfaces of RoI extractors ("roi_extractors"),
 * bbox heads, mask heads and RoI heads ("heads"), as mmdet 2.x's
 * SingleRoIExtractor, BBoxHead, FCNMaskHead and StandardRoIHead use each
 * other. (The RPN is a dense head,
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
#include "losses.h"
#include "data.h"
#include "masks.h"
#include "models.h"
#include "runner.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Interface codes (registry.h's MD_IFACE). */
#define MD_IFACE_ROI_EXTRACTOR MD_IFACE_CODE('R', 'O', 'E', 1)  /* md_roi_extractor_class */
#define MD_IFACE_BBOX_HEAD MD_IFACE_CODE('B', 'H', 'D', 1)      /* md_bbox_head_class */
#define MD_IFACE_ROI_HEAD MD_IFACE_CODE('R', 'H', 'D', 1)       /* md_roi_head_class */
#define MD_IFACE_MASK_HEAD MD_IFACE_CODE('M', 'H', 'D', 1)      /* md_mask_head_class */

/* ---- RoI extractors ("roi_extractors") ---- */
typedef struct md_roi_extractor_class {
    md_model_class model;         /* must be first */
    /* feats[0 .. n) finest first (n >= num_inputs; extra levels unused),
     * rois [K, 5] -> [K, out_channels, out_size, out_size]. */
    md_tensor *(*forward)(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, md_tensor *rois);
    int (*num_inputs)(const md_module *m);   /* len(featmap_strides) */
    int (*out_size)(const md_module *m);     /* roi_layer output_size */
    /* Optional: forward's ONNX form while tracing (onnx.h): feats (traced
     * tensors, as forward's), rois the value of [R, 5] -> the value of the
     * RoI features [R, out_channels, S, S] in the RoIs' order; NULL with
     * the context's error. NULL: not exportable. */
    const char *(*onnx_forward)(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, const char *rois);
} md_roi_extractor_class;

static inline const md_roi_extractor_class *md_roi_extractor_class_of(const md_module *m) {
    return (const md_roi_extractor_class *)m->cls;
}

/* ---- BaseRoIExtractor: the base of RoI extractors (mmdet's
 * base_roi_extractor.py): roi_layer (RoIAlign output_size, sampling_ratio,
 * aligned), out_channels, featmap_strides; num_inputs and out_size. A
 * derived extractor supplies forward (SingleRoIExtractor: one level per
 * RoI) and its own keys. */
typedef struct md_roi_extractor_base {
    md_module base;
    const md_cfg *roi_layer, *featmap_strides_cfg, *init_cfg;
    int out_channels, out_size, sampling_ratio, num_levels;
    bool aligned;
    double strides[MD_MAX_LEVELS];
} md_roi_extractor_base;

typedef struct md_roi_extractor_base_class {
    md_roi_extractor_class ext;   /* first: MD_ROI_EXTRACTOR_BASE fills it */
    size_t size;                  /* sizeof the derived struct (md_roi_extractor_base first) */
    const md_key *keys;
} md_roi_extractor_base_class;

#define MD_ROI_EXTRACTOR_KEYS                                                                                     \
    { "roi_layer", MD_KEY_GROUP, NULL, "{ type = \"RoIAlign\"; output_size = 7; sampling_ratio = 0; aligned = true; }", \
      true, MD_AT(md_roi_extractor_base, roi_layer) },                                                            \
    { "out_channels", MD_KEY_INT, NULL, "channels of the feature maps", true,                                     \
      MD_AT(md_roi_extractor_base, out_channels), .min = "1" },                                                   \
    { "featmap_strides", MD_KEY_LIST, NULL, "stride of each level used, finest first", true,                      \
      MD_AT(md_roi_extractor_base, featmap_strides_cfg) },                                                        \
    { "init_cfg", MD_KEY_ANY, "None", "unused (no parameters)", false, MD_AT(md_roi_extractor_base, init_cfg) }

#define MD_ROI_EXTRACTOR_BASE(name_, forward_) MD_ROI_EXTRACTOR_BASE_ONNX(name_, forward_, NULL)
/* The same with forward's ONNX form. */
#define MD_ROI_EXTRACTOR_BASE_ONNX(name_, forward_, onnx_forward_)                                   \
    { .model = { .module = { .name = (name_) } }, .forward = (forward_),                           \
      .num_inputs = md_roi_extractor_num_inputs, .out_size = md_roi_extractor_out_size,            \
      .onnx_forward = (onnx_forward_) }

/* Allocates cls->size bytes, fills the struct from cfg with cls->keys and
 * reads roi_layer and featmap_strides. NULL with err set. */
md_module *md_roi_extractor_build(md_ctx *ctx, const md_cfg *cfg, const md_roi_extractor_base_class *cls,
                                  md_error *err);
#define MD_ROI_EXTRACTOR_REGISTER(cls_, name_, keys_, doc_)                                                  \
    static void *cls_##_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {                               \
        return md_roi_extractor_build(ctx, cfg, &(cls_), err);                                                \
    }                                                                                                         \
    static const md_class cls_##_class = { .name = (name_), .keys = (keys_), .build = cls_##_build,           \
                                           MD_IFACE(&(cls_), MD_IFACE_ROI_EXTRACTOR), .doc = (doc_) };        \
    MD_REGISTER("roi_extractors", cls_##_class)

int md_roi_extractor_num_inputs(const md_module *m);
int md_roi_extractor_out_size(const md_module *m);
/* RoIAlign of rois [K, 5] from level l's feature map with the roi_layer's
 * settings (spatial scale 1 / stride). */
md_tensor *md_roi_extractor_align(md_ctx *ctx, const md_roi_extractor_base *e, md_tensor *feat, md_tensor *rois, int l);
/* Its ONNX form: values feat [N, C, H, W] and rois [K, 5] -> RoiAlign
 * [K, C, S, S] (avg, sampling_ratio; 0 is adaptive, ceil(roi / S) samples
 * per bin, in ONNX as in mmcv). aligned: from opset 16
 * coordinate_transformation_mode half_pixel; before it, mmcv's export: the
 * boxes moved by -0.5 / spatial_scale for RoiAlign-10, which also makes
 * every RoI at least one feature cell wide and high (mmcv does not). */
const char *md_roi_extractor_onnx_align(md_ctx *ctx, const md_roi_extractor_base *e, const char *feat,
                                        const char *rois, int l);

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
/* Reads test_cfg.rcnn (mmdet's defaults: score_thr 0.05, NMS at 0.5, 100 kept). */
void md_rcnn_test_cfg_read(const md_cfg *cfg, md_rcnn_test_cfg *out);

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
    /* mmdet's regress_by_class: rois [K, 4] or [K, 5] (image index
     * first) moved by bbox_pred's deltas of class labels[k] (i64 [K];
     * every class's column when class agnostic), decoded and clipped to
     * img_shape (h, w); a host step tensor shaped like rois, grad off.
     * NULL: the head cannot refine boxes (no cascade stage). */
    md_tensor *(*regress_by_class)(md_ctx *ctx, md_module *m, md_tensor *rois, md_tensor *labels,
                                   md_tensor *bbox_pred, const int img_shape[2]);
    /* mmdet's BBoxHead.onnx_export while tracing (onnx.h): rois the value of
     * [N, P, 5] (image index first), cls_score [N * P, num_classes + 1] and
     * bbox_pred (forward's traced outputs) -> the detections with cfg's
     * score_thr, NMS and max_per_img, boxes clipped to the input. 0, or -1
     * with the context's error. NULL: not exportable. */
    int (*onnx_export)(md_ctx *ctx, md_module *m, const char *rois, int64_t N, int64_t P, md_tensor *cls_score,
                       md_tensor *bbox_pred, const md_onnx_image *img, const md_rcnn_test_cfg *cfg,
                       md_onnx_dets *out);
} md_bbox_head_class;

static inline const md_bbox_head_class *md_bbox_head_class_of(const md_module *m) {
    return (const md_bbox_head_class *)m->cls;
}

/* ---- BBoxHead: the base of bbox heads (mmdet's bbox_head.py) ----
 * The base owns the parts built by type (bbox_coder, loss_cls, loss_bbox),
 * get_targets, the loss (loss_cls over the sampled RoIs averaged over
 * those with a positive label weight, acc, loss_bbox over the positives
 * averaged over all RoIs), get_bboxes and get_raw_bboxes (softmax,
 * decode, clip, rescale, multiclass NMS). A derived head (ConvFCBBoxHead's
 * Shared2FCBBoxHead) supplies its layers and its forward, ending in
 * children fc_cls (num_classes + 1 outputs, background last) and fc_reg
 * (4, or 4 per class). */
typedef struct md_bbox_head_base md_bbox_head_base;
typedef struct md_bbox_head_base_class {
    md_bbox_head_class head;      /* first: MD_BBOX_HEAD_BASE fills it */
    size_t size;                  /* sizeof the derived struct (md_bbox_head_base first) */
    const md_key *keys;           /* the derived head's whole schema */
    /* Adds and initialises the layers (the schema filled the struct and
     * the parts are built). Required. */
    int (*init_layers)(md_ctx *ctx, md_bbox_head_base *h, md_error *err);
} md_bbox_head_base_class;

struct md_bbox_head_base {
    md_module base;
    const md_bbox_head_base_class *cls;
    int in_channels, roi_feat_size, num_classes;
    bool reg_class_agnostic, reg_decoded_bbox;
    const md_cfg *bbox_coder_cfg, *loss_cls_cfg, *loss_bbox_cfg, *init_cfg;
    md_bbox_coder *bbox_coder;
    md_loss *loss_cls, *loss_bbox;
};

/* mmdet BBoxHead.__init__'s keys and defaults, stored into md_bbox_head_base. */
#define MD_BBOX_HEAD_KEYS                                                                                          \
    { "in_channels", MD_KEY_INT, "256", "channels of the RoI features", false, MD_AT(md_bbox_head_base, in_channels), \
      .min = "1" },                                                                                                \
    { "roi_feat_size", MD_KEY_INT, "7", "side of the RoI features", false, MD_AT(md_bbox_head_base, roi_feat_size), \
      .min = "1" },                                                                                                \
    { "num_classes", MD_KEY_INT, "80", "object classes (background excluded)", false,                             \
      MD_AT(md_bbox_head_base, num_classes), .min = "1" },                                                         \
    { "bbox_coder", MD_KEY_GROUP,                                                                                  \
      "{ type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0]; target_stds = [0.1, 0.1, 0.2, 0.2]; }", \
      "box coder (bbox_coders registry)", false, MD_AT(md_bbox_head_base, bbox_coder_cfg) },                       \
    { "reg_class_agnostic", MD_KEY_BOOL, "false", "one box per RoI instead of one per class", false,               \
      MD_AT(md_bbox_head_base, reg_class_agnostic) },                                                              \
    { "reg_decoded_bbox", MD_KEY_BOOL, "false", "apply loss_bbox to boxes decoded against the RoIs", false,       \
      MD_AT(md_bbox_head_base, reg_decoded_bbox) },                                                                \
    { "loss_cls", MD_KEY_GROUP, "{ type = \"CrossEntropyLoss\"; use_sigmoid = false; loss_weight = 1.0; }",     \
      "classification loss (losses registry)", false, MD_AT(md_bbox_head_base, loss_cls_cfg) },                    \
    { "loss_bbox", MD_KEY_GROUP, "{ type = \"SmoothL1Loss\"; beta = 1.0; loss_weight = 1.0; }",                 \
      "box loss (losses registry)", false, MD_AT(md_bbox_head_base, loss_bbox_cfg) },                              \
    { "init_cfg", MD_KEY_ANY, "None", "Pretrained loads a checkpoint; mmdet's init otherwise", false,             \
      MD_AT(md_bbox_head_base, init_cfg) }

/* The md_bbox_head_class of a derived head: its forward, the base's rest. */
#define MD_BBOX_HEAD_BASE(name_, forward_)                                                                       \
    { .model = { .module = { .name = (name_), .destroy = md_bbox_head_destroy },                                \
                 .init_weights = md_bbox_head_init_weights },                                                    \
      .forward = (forward_), .get_targets = md_bbox_head_get_targets, .loss = md_bbox_head_loss,                \
      .get_bboxes = md_bbox_head_get_bboxes, .num_classes = md_bbox_head_num_classes,                           \
      .get_raw_bboxes = md_bbox_head_get_raw_bboxes, .regress_by_class = md_bbox_head_regress_by_class,     \
      .onnx_export = md_bbox_head_onnx_export }

/* Allocates cls->size bytes, fills the struct from cfg with cls->keys,
 * builds the parts, then init_layers. NULL with err set. */
md_module *md_bbox_head_build(md_ctx *ctx, const md_cfg *cfg, const md_bbox_head_base_class *cls, md_error *err);

#define MD_BBOX_HEAD_REGISTER(cls_, name_, keys_, doc_)                                                      \
    static void *cls_##_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {                               \
        return md_bbox_head_build(ctx, cfg, &(cls_), err);                                                    \
    }                                                                                                         \
    static const md_class cls_##_class = { .name = (name_), .keys = (keys_), .build = cls_##_build,           \
                                           MD_IFACE(&(cls_), MD_IFACE_BBOX_HEAD), .doc = (doc_) };            \
    MD_REGISTER("heads", cls_##_class)

int md_bbox_head_get_targets(md_ctx *ctx, md_module *m, const md_sampling_result *samples, int n, double pos_weight,
                             md_bbox_targets *out);
int md_bbox_head_loss(md_ctx *ctx, md_module *m, md_tensor *cls_score, md_tensor *bbox_pred, const md_bbox_targets *t,
                      md_losses *losses, md_error *err);
int md_bbox_head_get_bboxes(md_ctx *ctx, md_module *m, md_tensor *rois, md_tensor *cls_score, md_tensor *bbox_pred,
                            const int img_shape[2], const float scale_factor[4], bool rescale,
                            const md_rcnn_test_cfg *cfg, md_tensor **det_bboxes, md_tensor **det_labels);
int md_bbox_head_get_raw_bboxes(md_ctx *ctx, md_module *m, md_tensor *rois, md_tensor *cls_score,
                                md_tensor *bbox_pred, const int img_shape[2], const float scale_factor[4],
                                bool rescale, md_tensor **bboxes, md_tensor **scores);
md_tensor *md_bbox_head_regress_by_class(md_ctx *ctx, md_module *m, md_tensor *rois, md_tensor *labels,
                                         md_tensor *bbox_pred, const int img_shape[2]);
/* onnx_export: softmax scores without the background; boxes decoded by the
 * coder's onnx_decode per class (each RoI's deltas of every class) and
 * clipped to the input; NMS as md_onnx_nms, per class through mmdet's
 * offsets (each class's boxes moved by label * max(h, w) + 1, so classes
 * never overlap) at most max_per_img per class, then the max_per_img
 * best. The rows keep the boxes before the offsets (mmdet subtracts them
 * again, which also moves its padding rows off zero). */
int md_bbox_head_onnx_export(md_ctx *ctx, md_module *m, const char *rois, int64_t N, int64_t P, md_tensor *cls_score,
                             md_tensor *bbox_pred, const md_onnx_image *img, const md_rcnn_test_cfg *cfg,
                             md_onnx_dets *out);
/* mmdet's BBoxHead.refine_bboxes (a cascade's training between stages):
 * the sampled rois [K, 5] of n images (each image's positives, then its
 * negatives, as sr[i]) moved by the head's regress_by_class with labels
 * [K] (i64) and clipped to each image's metas[i].img_shape; the gts the
 * sampler added as proposals (sr[i].pos_is_gt) are dropped. proposals[i]
 * [P_i, 4] host step tensors. 0, or -1 with the context's error. */
int md_bbox_head_refine_bboxes(md_ctx *ctx, md_module *m, md_tensor *rois, md_tensor *labels, md_tensor *bbox_pred,
                               const md_sampling_result *sr, int n, const md_img_meta *metas,
                               md_tensor **proposals);
/* The bbox head's get_raw_bboxes of each image of batch `bk` (counts[i]
 * rows of rois, cls and reg; NULLs where counts[i] is 0), in its metas'
 * img_shape, not rescaled: a variant's boxes and scores. 0 or -1. */
int md_bbox_head_raw_bboxes_per_image(md_ctx *ctx, md_module *bbox_head, md_tensor *rois, md_tensor *cls,
                                      md_tensor *reg, const int64_t *counts, const md_batch *bk, md_tensor **boxes,
                                      md_tensor **scores);
int md_bbox_head_num_classes(const md_module *m);
int md_bbox_head_init_weights(md_ctx *ctx, md_module *m, md_error *err);
void md_bbox_head_destroy(md_module *m);

/* ---- mask heads ("heads") ---- */
typedef struct md_mask_head_class {
    md_model_class model;         /* must be first */
    /* roi feats [K, C, S, S] -> mask logits [K, num_classes, M, M] (one
     * channel when class agnostic); NULL with the context's error. */
    md_tensor *(*forward)(md_ctx *ctx, md_module *m, md_tensor *x);
    /* mmdet's mask_target over n images: each positive's box
     * (sr[i].pos_bboxes, clipped to the mask's image) crops its gt mask
     * gt_masks[i] (pos_assigned_gt_inds), resized to mask_size x
     * mask_size and binarised. f32 [sum P_i, mask_size, mask_size] on the
     * head's device (the base makes them there); NULL with the context's
     * error. */
    md_tensor *(*get_targets)(md_ctx *ctx, md_module *m, const md_sampling_result *sr, int n,
                              const md_masks *gt_masks, int mask_size);
    /* loss: adds loss_mask of mask_pred [K, C, M, M] against targets
     * [K, M, M] at the positives' labels (i64 [K]). */
    int (*loss)(md_ctx *ctx, md_module *m, md_tensor *mask_pred, md_tensor *targets, md_tensor *labels,
                md_losses *losses, md_error *err);
    /* get_seg_masks for one image: mask logits [D, C, M, M] of the boxes
     * det_bboxes [D, >= 4] (the RoIs pooled) with labels [D], sigmoid (not
     * when `probs`: mask_pred holds probabilities already, as after
     * merge_aug_masks), the label's channel pasted into the image (divided
     * by scale_factor and pasted at ori_shape when rescale, else at
     * ori_shape times scale_factor, rounded) and binarised at
     * mask_thr_binary. mask_thr_binary < 0 asks for mmdet's soft masks
     * (md_mask_paste's u8 probability times 255), whose RLE holds their
     * nonzero pixels (see md_mask_paste). masks[0 .. D) receive the RLEs,
     * their counts in the step arena (not to be md_rle_free'd). */
    int (*get_seg_masks)(md_ctx *ctx, md_module *m, md_tensor *mask_pred, bool probs, md_tensor *det_bboxes,
                         md_tensor *det_labels, double mask_thr_binary, const int ori_shape[2],
                         const float scale_factor[4], bool rescale, md_rle *masks, md_error *err);
    int (*num_classes)(const md_module *m);
} md_mask_head_class;

static inline const md_mask_head_class *md_mask_head_class_of(const md_module *m) {
    return (const md_mask_head_class *)m->cls;
}

/* ---- the base of mask heads: FCNMaskHead's targets, loss and paste ----
 * (mmdet's fcn_mask_head.py, mask_target.py.) The base owns num_classes,
 * class_agnostic and loss_mask (built by type: CrossEntropyLoss with
 * use_mask), get_targets (md_masks_crop_and_resize), the loss (labels 0
 * when class agnostic; no positives: a zero on the graph) and
 * get_seg_masks (mmdet 2.28's _do_paste_mask one box at a time, as on
 * the CPU: grid_sample with align_corners false over the box's pixels and
 * one more on each side, zero elsewhere). A derived head (FCNMaskHead)
 * supplies its layers and forward. */
typedef struct md_mask_head_base md_mask_head_base;
typedef struct md_mask_head_base_class {
    md_mask_head_class head;      /* first: MD_MASK_HEAD_BASE fills it */
    size_t size;                  /* sizeof the derived struct (md_mask_head_base first) */
    const md_key *keys;           /* the derived head's whole schema */
    /* Adds and initialises the layers. Required. */
    int (*init_layers)(md_ctx *ctx, md_mask_head_base *h, md_error *err);
} md_mask_head_base_class;

struct md_mask_head_base {
    md_module base;
    const md_mask_head_base_class *cls;
    int num_classes;
    bool class_agnostic;
    const md_cfg *loss_mask_cfg, *init_cfg;
    md_loss *loss_mask;
};

#define MD_MASK_HEAD_KEYS                                                                                         \
    { "num_classes", MD_KEY_INT, "80", "object classes (background excluded)", false,                            \
      MD_AT(md_mask_head_base, num_classes), .min = "1" },                                                        \
    { "class_agnostic", MD_KEY_BOOL, "false", "one mask per RoI instead of one per class", false,                \
      MD_AT(md_mask_head_base, class_agnostic) },                                                                 \
    { "loss_mask", MD_KEY_GROUP, "{ type = \"CrossEntropyLoss\"; use_mask = true; loss_weight = 1.0; }",       \
      "mask loss (losses registry)", false, MD_AT(md_mask_head_base, loss_mask_cfg) },                            \
    { "init_cfg", MD_KEY_ANY, "None", "only None (mmdet refuses it)", false, MD_AT(md_mask_head_base, init_cfg) }

#define MD_MASK_HEAD_BASE(name_, forward_)                                                                      \
    { .model = { .module = { .name = (name_), .destroy = md_mask_head_destroy } },                             \
      .forward = (forward_), .get_targets = md_mask_head_get_targets, .loss = md_mask_head_loss,               \
      .get_seg_masks = md_mask_head_get_seg_masks, .num_classes = md_mask_head_num_classes }

/* Allocates cls->size bytes, fills the struct from cfg with cls->keys,
 * builds loss_mask, then init_layers. NULL with err set. */
md_module *md_mask_head_build(md_ctx *ctx, const md_cfg *cfg, const md_mask_head_base_class *cls, md_error *err);

#define MD_MASK_HEAD_REGISTER(cls_, name_, keys_, doc_)                                                      \
    static void *cls_##_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {                               \
        return md_mask_head_build(ctx, cfg, &(cls_), err);                                                    \
    }                                                                                                         \
    static const md_class cls_##_class = { .name = (name_), .keys = (keys_), .build = cls_##_build,           \
                                           MD_IFACE(&(cls_), MD_IFACE_MASK_HEAD), .doc = (doc_) };            \
    MD_REGISTER("heads", cls_##_class)

md_tensor *md_mask_head_get_targets(md_ctx *ctx, md_module *m, const md_sampling_result *sr, int n,
                                    const md_masks *gt_masks, int mask_size);
int md_mask_head_loss(md_ctx *ctx, md_module *m, md_tensor *mask_pred, md_tensor *targets, md_tensor *labels,
                      md_losses *losses, md_error *err);
int md_mask_head_get_seg_masks(md_ctx *ctx, md_module *m, md_tensor *mask_pred, bool probs, md_tensor *det_bboxes,
                               md_tensor *det_labels, double mask_thr_binary, const int ori_shape[2],
                               const float scale_factor[4], bool rescale, md_rle *masks, md_error *err);
int md_mask_head_num_classes(const md_module *m);
void md_mask_head_destroy(md_module *m);
/* mmdet's _do_paste_mask for one mask: probabilities mask [M_h, M_w]
 * (row-major) of the box (x0, y0, x1, y1) sampled (bilinear, zeros
 * outside, align_corners false) at the centres of the pixels from
 * floor(x0) - 1 to ceil(x1) + 1 (likewise in y, clipped to the image),
 * and 0 elsewhere; out [img_h, img_w] receives value >= thr, or with thr
 * < 0 mmdet's soft mask, (uint8)(value * 255) (0 to 255). mmdet's
 * single_gpu_test hands those 0-255 values to pycocotools' encode, whose
 * runs end at every change of value, so its RLE of a soft mask decodes to
 * stripes of 0 and 1; md_rle_encode (nonzero = 1) keeps the nonzero pixels
 * instead: the region mmdet's show_result draws (mask.astype(bool)), the
 * pixels of probability * 255 >= 1. */
void md_mask_paste(const float *mask, int mh, int mw, const float box[4], int img_h, int img_w, float thr,
                   uint8_t *out);

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
    /* mmdet's with_mask: true when the head has a mask branch (then
     * forward_train needs the batch's gt_masks and simple_test_mask
     * gives masks). NULL: no mask branch. */
    bool (*with_mask)(const md_module *m);
    /* mmdet's simple_test_mask: for the detections det_bboxes[i] [D_i, 5]
     * (simple_test's, with the same rescale) and det_labels[i], masks[i]
     * receives D_i RLEs (an array in the step arena, NULL when D_i is 0)
     * of the original image (rescale) or of ori_shape times scale_factor. */
    int (*simple_test_mask)(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats, const md_batch *batch,
                            md_tensor *const *det_bboxes, md_tensor *const *det_labels, bool rescale,
                            md_rle **masks, md_error *err);
    /* mmdet's aug_test_mask: the detections of aug_test (det_bboxes[i] in
     * the original image's pixels) mapped into every variant k (feats[k],
     * md_batch_aug(batch, k)), their mask probabilities flipped back and
     * averaged over the variants (merge_aug_masks), then pasted at the
     * original image's size; masks[i] as simple_test_mask's. NULL: not
     * supported. */
    int (*aug_test_mask)(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n_feats, md_batch *batch,
                         md_tensor *const *det_bboxes, md_tensor *const *det_labels, md_rle **masks, md_error *err);
    /* mmdet's forward_dummy: the branches' raw outputs for proposals
     * [P, 4] of image 0 (the bbox branch on all, the mask branch on the
     * first 100), dropped; for counting FLOPs. NULL: not supported. */
    int (*forward_dummy)(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats, md_tensor *proposals,
                         md_error *err);
    /* mmdet's onnx_export while tracing (onnx.h): feats (traced tensors),
     * the RPN's proposals (values, [N, P, 5]) of the input img -> the
     * detections. NULL: not exportable. */
    int (*onnx_export)(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats,
                       const md_onnx_dets *proposals, const md_onnx_image *img, md_onnx_dets *out, md_error *err);
} md_roi_head_class;

static inline const md_roi_head_class *md_roi_head_class_of(const md_module *m) {
    return (const md_roi_head_class *)m->cls;
}

/* ---- StandardRoIHead's parts (mmdet's base_roi_head.py,
 * standard_roi_head.py, test_mixins.py) ----
 * The base builds bbox_roi_extractor and bbox_head by type (children, so
 * state dict names are roi_head.bbox_head.*), the train_cfg's assigner and
 * sampler, and test_cfg; its methods are the bbox branch of mmdet's
 * StandardRoIHead, each also callable by a derived head (a cascade runs
 * md_roi_head_bbox_forward per stage). A head whose schema adds
 * MD_ROI_HEAD_MASK_KEYS gets the mask branch: mask_roi_extractor (None:
 * the bbox one, share_roi_extractor) and mask_head built as children,
 * trained on the positive RoIs after the bbox branch
 * (train_cfg.mask_size, default 28) and tested on the detections
 * (test_cfg.mask_thr_binary, default 0.5). */
typedef struct md_roi_head_base md_roi_head_base;
typedef struct md_roi_head_base_class {
    md_roi_head_class head;       /* first: MD_ROI_HEAD_BASE fills it */
    size_t size;                  /* sizeof the derived struct (md_roi_head_base first) */
    const md_key *keys;
    /* Optional: runs after the base built its parts (extra branches, checks). */
    int (*init_layers)(md_ctx *ctx, md_roi_head_base *h, md_error *err);
} md_roi_head_base_class;

struct md_roi_head_base {
    md_module base;
    const md_roi_head_base_class *cls;
    const md_cfg *bbox_roi_extractor_cfg, *bbox_head_cfg, *train_cfg, *test_cfg_cfg, *init_cfg;
    md_module *bbox_roi_extractor, *bbox_head;
    md_bbox_assigner *assigner;   /* NULL without a train_cfg */
    md_bbox_sampler *sampler;
    double pos_weight;            /* train_cfg.pos_weight (<= 0: 1) */
    bool has_test_cfg;
    md_rcnn_test_cfg test_cfg;
    /* the mask branch (MD_ROI_HEAD_MASK_KEYS; mask_head NULL: none) */
    const md_cfg *mask_roi_extractor_cfg, *mask_head_cfg;
    md_module *mask_roi_extractor, *mask_head;
    bool share_roi_extractor;     /* mask_roi_extractor is bbox_roi_extractor */
    int mask_size;                /* train_cfg.mask_size */
    double mask_thr_binary;       /* test_cfg.mask_thr_binary */
};

#define MD_ROI_HEAD_KEYS                                                                                         \
    { "bbox_roi_extractor", MD_KEY_GROUP, NULL, "RoI extractor (roi_extractors registry)", true,                \
      MD_AT(md_roi_head_base, bbox_roi_extractor_cfg) },                                                         \
    { "bbox_head", MD_KEY_GROUP, NULL, "bbox head (heads registry)", true, MD_AT(md_roi_head_base, bbox_head_cfg) }, \
    { "train_cfg", MD_KEY_ANY, "None", "assigner, sampler, pos_weight (train_cfg.rcnn)", false,                  \
      MD_AT(md_roi_head_base, train_cfg) },                                                                      \
    { "test_cfg", MD_KEY_ANY, "None", "score_thr, nms, max_per_img (test_cfg.rcnn)", false,                     \
      MD_AT(md_roi_head_base, test_cfg_cfg) },                                                                   \
    { "pretrained", MD_KEY_ANY, "None", "unused", false,                                                         \
      .field = MD_FIELD_NONE },                                                                                  \
    { "init_cfg", MD_KEY_ANY, "None", "Pretrained loads a checkpoint", false, MD_AT(md_roi_head_base, init_cfg) }

/* BaseRoIHead's mask keys, for a head with a mask branch. */
#define MD_ROI_HEAD_MASK_KEYS                                                                                    \
    { "mask_roi_extractor", MD_KEY_ANY, "None", "RoI extractor of the mask branch (None: the bbox one)", false,  \
      MD_AT(md_roi_head_base, mask_roi_extractor_cfg) },                                                         \
    { "mask_head", MD_KEY_ANY, "None", "mask head (heads registry) or None", false,                              \
      MD_AT(md_roi_head_base, mask_head_cfg) }

#define MD_ROI_HEAD_BASE(name_)                                                                           \
    { .model = { .module = { .name = (name_), .destroy = md_roi_head_destroy },                          \
                 .init_weights = md_roi_head_init_weights },                                              \
      .forward_train = md_roi_head_forward_train, .simple_test = md_roi_head_simple_test,               \
      .aug_test = md_roi_head_aug_test, .with_mask = md_roi_head_with_mask,                              \
      .simple_test_mask = md_roi_head_simple_test_mask, .aug_test_mask = md_roi_head_aug_test_mask,       \
      .forward_dummy = md_roi_head_forward_dummy, .onnx_export = md_roi_head_onnx_export }

md_module *md_roi_head_build(md_ctx *ctx, const md_cfg *cfg, const md_roi_head_base_class *cls, md_error *err);
#define MD_ROI_HEAD_REGISTER(cls_, name_, keys_, doc_)                                                       \
    static void *cls_##_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {                               \
        return md_roi_head_build(ctx, cfg, &(cls_), err);                                                     \
    }                                                                                                         \
    static const md_class cls_##_class = { .name = (name_), .keys = (keys_), .build = cls_##_build,           \
                                           MD_IFACE(&(cls_), MD_IFACE_ROI_HEAD), .doc = (doc_) };             \
    MD_REGISTER("heads", cls_##_class)

/* bbox2roi: boxes[i] [K_i, >= 4] -> [sum K_i, 5] with the image index first. */
md_tensor *md_bbox2roi(md_ctx *ctx, md_tensor *const *boxes, int n);
/* _bbox_forward: pool rois with `extractor`, run `bbox_head`; *cls, *reg
 * NULL on failure (context error). */
int md_roi_head_bbox_forward(md_ctx *ctx, md_module *extractor, md_module *bbox_head, md_tensor *const *feats,
                             int n_feats, md_tensor *rois, md_tensor **cls, md_tensor **reg);
/* Assigns and samples each image's proposals (the first four columns)
 * against its gt with `assigner` and `sampler` (grad off); sr[i] per image. */
int md_roi_head_assign_sample(md_ctx *ctx, md_bbox_assigner *assigner, md_bbox_sampler *sampler, const md_batch *batch,
                              md_tensor *const *proposals, md_rng *rng, md_sampling_result *sr, md_error *err);
int md_roi_head_forward_train(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats, const md_batch *batch,
                              md_tensor *const *proposals, md_rng *rng, md_losses *losses, md_error *err);
int md_roi_head_simple_test(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats, const md_batch *batch,
                            md_tensor *const *proposals, bool rescale, md_tensor **det_bboxes, md_tensor **det_labels,
                            md_error *err);
int md_roi_head_aug_test(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n_feats, md_batch *batch,
                         md_tensor *const *proposals, bool rescale, md_tensor **det_bboxes, md_tensor **det_labels,
                         md_error *err);
bool md_roi_head_with_mask(const md_module *m);
/* onnx_export (mmdet's StandardRoIHead.bbox_onnx_export): the proposals
 * as rois with their image index, pooled by the bbox_roi_extractor's
 * onnx_forward, bbox_head's forward traced on them, then bbox_head's
 * onnx_export. A mask branch is refused. */
int md_roi_head_onnx_export(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats,
                            const md_onnx_dets *proposals, const md_onnx_image *img, md_onnx_dets *out, md_error *err);
/* _mask_forward: pool rois with `extractor`, run `mask_head`; NULL with
 * the context's error. */
md_tensor *md_roi_head_mask_forward(md_ctx *ctx, md_module *extractor, md_module *mask_head, md_tensor *const *feats,
                                    int n_feats, md_tensor *rois);
/* _mask_forward_train: the positives of sr[0 .. batch->n) pooled, their
 * targets from the batch's gt_masks, adds loss_mask. */
int md_roi_head_mask_forward_train(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats,
                                   const md_batch *batch, const md_sampling_result *sr, md_losses *losses,
                                   md_error *err);
int md_roi_head_simple_test_mask(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats,
                                 const md_batch *batch, md_tensor *const *det_bboxes, md_tensor *const *det_labels,
                                 bool rescale, md_rle **masks, md_error *err);
int md_roi_head_aug_test_mask(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n_feats,
                              md_batch *batch, md_tensor *const *det_bboxes, md_tensor *const *det_labels,
                              md_rle **masks, md_error *err);
int md_roi_head_forward_dummy(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats, md_tensor *proposals,
                              md_error *err);
int md_roi_head_init_weights(md_ctx *ctx, md_module *m, md_error *err);
void md_roi_head_destroy(md_module *m);

/* Test-time augmentation around a RoI head's bbox branch (BBoxTestMixin.
 * aug_test_bboxes): for every variant k the proposals (original image's
 * pixels) are mapped into it (bbox_mapping) and `variant` runs the branch
 * on rois [K, 5] (counts[i] rows of image i) with variant k's features and
 * batch (its metas), writing per image boxes[i] [P_i, 4 * C or 4] and
 * softmax scores[i] [P_i, C + 1] without NMS in the variant's pixels
 * (get_bboxes with cfg None, rescale False; NULL where P_i is 0); these
 * are mapped back and averaged (merge_aug_bboxes), then multiclass NMS
 * with cfg. rescale false scales the detections by variant 0's
 * scale_factor. md_roi_head_aug_test is this with StandardRoIHead's
 * branch; a cascade passes its stages. */
typedef int (*md_roi_head_aug_variant_fn)(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats,
                                          const md_batch *variant, md_tensor *rois, const int64_t *counts,
                                          md_tensor **boxes, md_tensor **scores);
int md_roi_head_aug_test_bboxes(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n_feats,
                                md_batch *batch, md_tensor *const *proposals, bool rescale, int64_t num_classes,
                                const md_rcnn_test_cfg *cfg, md_roi_head_aug_variant_fn variant,
                                md_tensor **det_bboxes, md_tensor **det_labels, md_error *err);

#ifdef __cplusplus
}
#endif
#endif
