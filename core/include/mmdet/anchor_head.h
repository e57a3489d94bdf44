/* AnchorHead: mmdet 2.x's AnchorHead (mmdet/models/dense_heads/anchor_head.py)
 * as a base class in the library, so a dense head is its difference.
 *
 * The base owns what every anchor-based head shares: the parts built by
 * type from the config (anchor_generator, bbox_coder, loss_cls, loss_bbox,
 * train_cfg.assigner / sampler), priors per level, valid and inside flags,
 * assignment and sampling per image, the targets, the loss over all levels
 * with num_total_samples, get_bboxes (nms_pre, score_thr, class-wise NMS,
 * max_per_img) and, through the dense-head defaults (bbox.h), forward_train,
 * simple_test and aug_test. A derived head supplies its layers
 * (init_layers, mmdet's _init_layers) and its per-level forward
 * (forward_single), and may replace get_bboxes (RPNHead does), as
 * retina_head.py and rpn_head.py do:
 *
 *     typedef struct my_head { md_anchor_head base; int stacked_convs; } my_head;
 *     static const md_key keys[] = {
 *         MD_DENSE_HEAD_NUM_CLASSES_KEY,
 *         MD_ANCHOR_HEAD_KEYS(MD_ANCHOR_HEAD_DEFAULT_ANCHORS),
 *         { "stacked_convs", MD_KEY_INT, "4", "3x3 convs per branch", false, MD_AT(my_head, stacked_convs) },
 *         { 0 } };
 *     static const md_anchor_head_class my_cls = {
 *         .dense = MD_ANCHOR_HEAD_DENSE("MyHead", md_anchor_head_get_bboxes),
 *         .size = sizeof(my_head), .keys = keys,
 *         .init_layers = my_init_layers, .forward_single = my_forward_single };
 *     MD_ANCHOR_HEAD_REGISTER(my_cls, "MyHead", keys, "a custom anchor head");
 *
 * The schema fills the struct: md_anchor_head_build reads every key with a
 * field (MD_AT) into the derived struct before init_layers runs.
 *
 * A head with a score factor (mmdet's with_score_factors: ATSS's
 * centerness) sets with_score_factors and carries it in bbox_pred as a
 * fifth channel per prior ([N, A * 5, H, W], md_anchor_head_add_score_factor);
 * get_bboxes multiplies the scores by its sigmoid. A head with its own loss
 * (ATSSHead) names it in MD_ANCHOR_HEAD_DENSE_LOSS and builds it from
 * md_anchor_head_loss_inputs, the targets over the batch; the assigner is
 * told the anchors' levels (md_bbox_assign_levels), which ATSSAssigner needs.
 */
#ifndef MMDET_ANCHOR_HEAD_H
#define MMDET_ANCHOR_HEAD_H

#include "bbox.h"
#include "losses.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_anchor_head md_anchor_head;

typedef struct md_anchor_head_class {
    /* First, so the class is a dense head; MD_ANCHOR_HEAD_DENSE fills it
     * with the base's forward, loss and test_cfg and the get_bboxes given. */
    md_dense_head_class dense;
    size_t size;                   /* sizeof the derived struct (md_anchor_head first) */
    const md_key *keys;            /* the derived head's whole schema (the md_class's keys) */
    /* mmdet's _init_layers: add the layers as children under their state
     * dict names and initialise them. Runs after the schema filled the
     * struct and the parts were built. Required. */
    int (*init_layers)(md_ctx *ctx, md_anchor_head *h, md_error *err);
    /* mmdet's forward_single: level `level`'s feature map x [N, C, H, W] ->
     * cls_score [N, A * cls_out_channels, H, W], bbox_pred [N, A * 4, H, W].
     * x belongs to the caller (do not release it). 0, or -1 with the
     * context's error. Required. */
    int (*forward_single)(md_ctx *ctx, md_anchor_head *h, md_tensor *x, int level, md_tensor **cls_score,
                          md_tensor **bbox_pred);
    /* Optional. */
    const char *loss_cls_name, *loss_bbox_name;   /* NULL: "loss_cls", "loss_bbox" */
    bool ignore_gt_labels;         /* every positive is class 0 (RPNHead: gt_labels=None) */
    /* test_cfg values the config may leave out (NULL: nms_pre all,
     * score_thr 0, no min_bbox_size, nms iou 0.5, max_per_img 100);
     * nms_iou < 0 makes test_cfg.nms required. */
    const md_dense_test_cfg *test_defaults;
    /* forward_single's bbox_pred carries a score-factor logit as a fifth
     * channel per prior (see above). */
    bool with_score_factors;
    /* The schema key of the score factor's loss ("loss_centerness"), built
     * from the "losses" registry into loss_score_factor; NULL: none. */
    const char *loss_score_factor_key;
} md_anchor_head_class;

struct md_anchor_head {
    md_module base;
    const md_anchor_head_class *cls;
    /* from the schema (MD_ANCHOR_HEAD_KEYS) */
    int num_classes, in_channels, feat_channels;
    bool reg_decoded_bbox;
    const md_cfg *anchor_generator_cfg, *bbox_coder_cfg, *loss_cls_cfg, *loss_bbox_cfg;
    const md_cfg *train_cfg, *test_cfg_cfg, *init_cfg;
    /* derived at build */
    int num_base_priors;           /* anchors per location */
    int cls_out_channels;          /* num_classes with a sigmoid loss_cls, else num_classes + 1 */
    bool use_sigmoid_cls;
    bool sampling;                 /* a real sampler: num_total_samples counts the negatives */
    md_prior_generator *prior_generator;
    md_bbox_coder *bbox_coder;
    md_loss *loss_cls, *loss_bbox;
    md_bbox_assigner *assigner;    /* NULL without a train_cfg */
    md_bbox_sampler *sampler;
    int allowed_border;            /* train_cfg.allowed_border (-1: no border check) */
    double pos_weight;             /* train_cfg.pos_weight (<= 0: 1) */
    bool has_test_cfg;
    md_dense_test_cfg test_cfg;
    md_loss *loss_score_factor;    /* the class's loss_score_factor_key, else NULL */
};

static inline md_anchor_head *md_anchor_head_of(md_module *m) { return (md_anchor_head *)m; }

/* The keys every anchor head has, stored into md_anchor_head, mmdet's
 * AnchorHead.__init__ arguments and defaults except the anchor generator's
 * (the argument: a libconfig group literal). num_classes is separate
 * (MD_DENSE_HEAD_NUM_CLASSES_KEY) because an RPN fixes it to 1. */
#define MD_ANCHOR_HEAD_KEYS(anchor_generator_) MD_ANCHOR_HEAD_KEYS_DECODED(anchor_generator_, "false")
/* The same with reg_decoded_bbox's default (ATSSHead's is true). */
#define MD_ANCHOR_HEAD_KEYS_DECODED(anchor_generator_, reg_decoded_bbox_)                                        \
    { "in_channels", MD_KEY_INT, NULL, "channels of every input level", true, MD_AT(md_anchor_head, in_channels), \
      .min = "1" },                                                                                              \
    { "feat_channels", MD_KEY_INT, "256", "channels of the hidden convs", false,                                 \
      MD_AT(md_anchor_head, feat_channels), .min = "1" },                                                        \
    { "anchor_generator", MD_KEY_GROUP, anchor_generator_, "prior generator (prior_generators registry)", false, \
      MD_AT(md_anchor_head, anchor_generator_cfg) },                                                             \
    { "bbox_coder", MD_KEY_GROUP,                                                                                \
      "{ type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0]; target_stds = [1.0, 1.0, 1.0, 1.0]; }", \
      "box coder (bbox_coders registry)", false, MD_AT(md_anchor_head, bbox_coder_cfg) },                        \
    { "reg_decoded_bbox", MD_KEY_BOOL, reg_decoded_bbox_, "apply loss_bbox to decoded boxes against the gt boxes", false,  \
      MD_AT(md_anchor_head, reg_decoded_bbox) },                                                                 \
    { "loss_cls", MD_KEY_GROUP, "{ type = \"CrossEntropyLoss\"; use_sigmoid = true; loss_weight = 1.0; }",     \
      "classification loss (losses registry)", false, MD_AT(md_anchor_head, loss_cls_cfg) },                    \
    { "loss_bbox", MD_KEY_GROUP, "{ type = \"SmoothL1Loss\"; beta = 0.1111111111111111; loss_weight = 1.0; }", \
      "box loss (losses registry)", false, MD_AT(md_anchor_head, loss_bbox_cfg) },                              \
    { "train_cfg", MD_KEY_ANY, "None", "assigner, sampler, allowed_border, pos_weight", false,                   \
      MD_AT(md_anchor_head, train_cfg) },                                                                        \
    { "test_cfg", MD_KEY_ANY, "None", "nms_pre, score_thr, min_bbox_size, nms, max_per_img", false,              \
      MD_AT(md_anchor_head, test_cfg_cfg) },                                                                     \
    { "init_cfg", MD_KEY_ANY, "None", "Pretrained loads a checkpoint; the layers' own init otherwise", false,     \
      MD_AT(md_anchor_head, init_cfg) }

#define MD_DENSE_HEAD_NUM_CLASSES_KEY                                                                     \
    { "num_classes", MD_KEY_INT, NULL, "object classes (no background)", true,                           \
      MD_AT(md_anchor_head, num_classes), .min = "1" }

/* mmdet's AnchorHead default: scales [8, 16, 32], ratios [0.5, 1, 2], strides 4 to 64. */
#define MD_ANCHOR_HEAD_DEFAULT_ANCHORS                                                                  \
    "{ type = \"AnchorGenerator\"; scales = [8, 16, 32]; ratios = [0.5, 1.0, 2.0]; strides = [4, 8, 16, 32, 64]; }"

/* The dense-head part of a derived class: the base's forward (forward_single
 * over the levels), loss and test_cfg, and `get_bboxes_`
 * (md_anchor_head_get_bboxes or the head's own). */
#define MD_ANCHOR_HEAD_DENSE(name_, get_bboxes_) MD_ANCHOR_HEAD_DENSE_LOSS(name_, md_anchor_head_loss, get_bboxes_)
/* The same with the head's own loss `loss_` (ATSSHead's). */
#define MD_ANCHOR_HEAD_DENSE_LOSS(name_, loss_, get_bboxes_) \
    MD_ANCHOR_HEAD_DENSE_FULL(name_, loss_, get_bboxes_, md_anchor_head_onnx_export)
/* The same with the head's own ONNX export `onnx_export_` (RPNHead's). */
#define MD_ANCHOR_HEAD_DENSE_FULL(name_, loss_, get_bboxes_, onnx_export_)                                    \
    { .model = { .module = { .name = (name_), .destroy = md_anchor_head_destroy,                             \
                             .num_classes = md_anchor_head_num_classes },                                     \
                 .init_weights = md_anchor_head_init_weights },                                               \
      .tag = MD_DENSE_HEAD_TAG, .forward = md_anchor_head_forward, .loss = (loss_),                          \
      .get_bboxes = (get_bboxes_), .test_cfg = md_anchor_head_test_cfg, .onnx_export = (onnx_export_) }

/* mmdet's AnchorHead.__init__ for a derived class: allocates cls->size
 * bytes, fills the struct from cfg with cls->keys, builds the parts (the
 * assigner and sampler only with a train_cfg; mmdet's rule for sampling:
 * a sampler other than PseudoSampler, and a loss_cls other than the focal
 * family), reads test_cfg, then calls init_layers. NULL with err set. */
md_module *md_anchor_head_build(md_ctx *ctx, const md_cfg *cfg, const md_anchor_head_class *cls, md_error *err);

/* Registers a derived class `cls_` as `name_` (its module's name) with
 * its schema `keys_`, built by md_anchor_head_build. */
#define MD_ANCHOR_HEAD_REGISTER(cls_, name_, keys_, doc_)                                                 \
    static void *cls_##_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {                            \
        return md_anchor_head_build(ctx, cfg, &(cls_), err);                                               \
    }                                                                                                      \
    static const md_class cls_##_class = { .name = (name_), .keys = (keys_), .build = cls_##_build,        \
                                           MD_IFACE(&(cls_), MD_IFACE_DENSE_HEAD), .doc = (doc_) };        \
    MD_REGISTER("heads", cls_##_class)

/* ---- the base's methods: the defaults above, callable by a derived head ---- */
/* forward: forward_single per level. */
int md_anchor_head_forward(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, md_tensor **cls_scores,
                           md_tensor **bbox_preds);
/* loss: targets over the batch, then loss_cls over every anchor (label
 * weights: positives pos_weight, sampled negatives 1, the rest 0) and
 * loss_bbox over the positives (on decoded boxes with reg_decoded_bbox),
 * each averaged over num_total_samples. A score factor is not trained
 * here (a head with one has its own loss). */
int md_anchor_head_loss(md_ctx *ctx, md_module *m, md_tensor *const *cls_scores, md_tensor *const *bbox_preds,
                        int n, const md_batch *batch, md_losses *losses, md_error *err);
/* get_bboxes: per level the nms_pre best (anchor, class) scores above
 * score_thr (sigmoid, or softmax without the background), decoded and
 * clipped to img_shape; rescaled; class-wise NMS and max_per_img. */
int md_anchor_head_get_bboxes(md_ctx *ctx, md_module *m, md_tensor *const *cls_scores,
                              md_tensor *const *bbox_preds, int n, const md_batch *batch,
                              const md_dense_test_cfg *cfg, bool rescale, bool with_nms, md_det_result *results,
                              md_error *err);
/* mmdet's BaseDenseHead.onnx_export with_nms=False, the part every anchor
 * head's export shares (RPNHead's too): per level the sigmoid scores and
 * the deltas of the forward's outputs (traced values), the nms_pre
 * anchors of highest class score (TopK), the anchors (constants of the
 * traced size, or computed from the feature maps' Shape in a dynamic
 * graph), decoded by the coder's onnx_decode and clipped to the input.
 * *boxes [N, T, 4] and *scores [N, T, cls_out_channels] values; *T the
 * static candidate count (-1 in a dynamic graph). 0 or -1. */
int md_anchor_head_onnx_bboxes(md_ctx *ctx, md_module *m, md_tensor *const *cls_scores, md_tensor *const *bbox_preds,
                               int n, const md_onnx_image *img, const char **boxes, const char **scores,
                               int64_t *T, md_error *err);
/* onnx_export (mmdet's BaseDenseHead.onnx_export with mmcv's
 * add_dummy_nms_for_onnx): md_anchor_head_onnx_bboxes, then
 * NonMaxSuppression per class (score_thr, nms iou, max(200, max_per_img)
 * boxes per class) and the max_per_img best as dets [N, K, 5] (zero rows
 * past the detections) and labels [N, K]. For a sigmoid head with
 * md_anchor_head_get_bboxes; others are refused. */
int md_anchor_head_onnx_export(md_ctx *ctx, md_module *m, md_tensor *const *cls_scores, md_tensor *const *bbox_preds,
                               int n, const md_onnx_image *img, md_onnx_dets *out, md_error *err);
const md_dense_test_cfg *md_anchor_head_test_cfg(const md_module *m);
int md_anchor_head_num_classes(const md_module *m);
int md_anchor_head_init_weights(md_ctx *ctx, md_module *m, md_error *err);
void md_anchor_head_destroy(md_module *m);

/* Everything a loss over the batch starts from (mmdet's get_targets with
 * the images concatenated), for a head with its own loss. Rows run image
 * by image, then level by level, then (y, x, prior): row r is anchor
 * r % T of image r / T. */
typedef struct md_anchor_loss_inputs {
    int n_levels;
    int64_t counts[MD_MAX_LEVELS];      /* anchors of level l (one image) */
    md_tensor *anchors;                 /* [T, 4], on the host */
    int64_t num_imgs;
    double num_total_samples;           /* mmdet's avg factor: the positives (plus the negatives when sampling) */
    md_tensor *cls;                     /* [N * T, cls_out_channels], the outputs' device */
    md_tensor *reg;                     /* [N * T, 4 (+ 1 with a score factor)], the outputs' device */
    /* targets, on the host */
    md_tensor *labels;                  /* i64 [N * T]: num_classes for the background */
    md_tensor *label_weights;           /* [N * T] */
    md_tensor *bbox_targets;            /* [N * T, 4]: deltas, or the gt boxes with reg_decoded_bbox */
    md_tensor *bbox_weights;            /* [N * T, 4] */
} md_anchor_loss_inputs;

/* The anchors, the flattened outputs and the targets of the batch
 * (assignment with the anchors' levels, sampling). 0, or -1 with err set. */
int md_anchor_head_loss_inputs(md_ctx *ctx, md_anchor_head *h, md_tensor *const *cls_scores,
                               md_tensor *const *bbox_preds, int n, const md_batch *batch,
                               md_anchor_loss_inputs *in, md_error *err);

/* Helpers for a derived head's layers. */
/* The anchors of levels 0 .. n for the outputs' sizes (cls_scores[l]
 * [N, *, H_l, W_l]), concatenated; counts[l] the anchors of level l. NULL
 * with the context's error. */
md_tensor *md_anchor_head_anchors(md_ctx *ctx, md_anchor_head *h, md_tensor *const *cls_scores, int n,
                                  int64_t *counts);
/* A 3x3/1x1 Conv2d (kernel k, padding k / 2) with bias added as child
 * `name` of parent, init normal(0, std) and bias constant `bias` (mmdet's
 * Normal init of dense heads). 0 or -1. */
int md_anchor_head_add_conv(md_ctx *ctx, md_module *parent, const char *name, int in, int out, int k, double std,
                            double bias, md_error *err);

/* mmdet's stacked branch of dense heads (RetinaHead's and AnchorFreeHead's
 * cls_convs / reg_convs): the ModuleList `name` of n ConvModules (3x3,
 * stride 1, padding 1, ReLU; `opts`'s conv type, norm and bias), the first
 * from `in` channels, the rest from `feat`. mmdet's Normal(std) init on
 * every nn.Conv2d: each plain conv normal(0, std), bias 0; of a DCN or
 * DCNv2 conv its conv_offset (the deformable layer keeps its own init).
 * 0 or -1. */
int md_head_add_stacked_convs(md_ctx *ctx, md_module *parent, const char *name, int n, int in, int feat,
                              const md_conv_module_opts *opts, double std, md_error *err);
/* The same with the last ConvModule built from `last` instead (mmdet's
 * dcn_on_last_conv: its conv_cfg DCNv2). */
int md_head_add_stacked_convs_last(md_ctx *ctx, md_module *parent, const char *name, int n, int in, int feat,
                                   const md_conv_module_opts *opts, const md_conv_module_opts *last, double std,
                                   md_error *err);
/* The branch `name` of m run over x: each intermediate is handed back once
 * read (x stays the caller's). NULL with the context's error. */
md_tensor *md_head_stacked_forward(md_ctx *ctx, md_module *m, const char *name, int n, md_tensor *x);

/* mmcv's Scale(1.0) for each of n levels, as the ModuleList "scales" of
 * parent (state dict scales.N.scale, 0-d parameters): scales[l] for level
 * l's forward (md_mul(ctx, bbox_pred, scales[l])). 0 or -1. */
int md_head_add_scales(md_ctx *ctx, md_module *parent, int n, md_tensor **scales, md_error *err);

/* A with_score_factors head's bbox_pred: bbox_pred [N, A * 4, H, W] and
 * score_factor [N, A, H, W] -> [N, A * 5, H, W], each prior's four channels
 * then its score factor (differentiable; the inputs are handed back). NULL
 * with the context's error. */
md_tensor *md_anchor_head_add_score_factor(md_ctx *ctx, md_tensor *bbox_pred, md_tensor *score_factor);

#ifdef __cplusplus
}
#endif
#endif
