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
#include "losses.h"
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

#define MD_ROI_EXTRACTOR_BASE(name_, forward_)                                                       \
    { .model = { .module = { .name = (name_) } }, .forward = (forward_),                           \
      .num_inputs = md_roi_extractor_num_inputs, .out_size = md_roi_extractor_out_size }

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
      .get_raw_bboxes = md_bbox_head_get_raw_bboxes, .regress_by_class = md_bbox_head_regress_by_class }

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

/* ---- StandardRoIHead's parts (mmdet's base_roi_head.py,
 * standard_roi_head.py, test_mixins.py) ----
 * The base builds bbox_roi_extractor and bbox_head by type (children, so
 * state dict names are roi_head.bbox_head.*), the train_cfg's assigner and
 * sampler, and test_cfg; its methods are the bbox branch of mmdet's
 * StandardRoIHead, each also callable by a derived head (a cascade runs
 * md_roi_head_bbox_forward per stage). */
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

#define MD_ROI_HEAD_BASE(name_)                                                                           \
    { .model = { .module = { .name = (name_), .destroy = md_roi_head_destroy },                          \
                 .init_weights = md_roi_head_init_weights },                                              \
      .forward_train = md_roi_head_forward_train, .simple_test = md_roi_head_simple_test,               \
      .aug_test = md_roi_head_aug_test }

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
