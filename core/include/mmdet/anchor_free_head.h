/* AnchorFreeHead: mmdet 2.x's AnchorFreeHead (mmdet/models/dense_heads/
 * anchor_free_head.py) as a base class in the library, so an anchor-free
 * dense head (FCOS-style) is its difference.
 *
 * The base owns what every anchor-free head shares: the parts built by type
 * from the config (the MlvlPointGenerator of `strides`, bbox_coder, loss_cls,
 * loss_bbox and, for a head with a score factor, its loss), the layers
 * (cls_convs.N / reg_convs.N ConvModules with norm_cfg and conv_bias, then
 * conv_cls and conv_reg, mmdet's state-dict names and init), the forward over
 * levels, the points of every level, the targets over the batch (the head's
 * rule applied per image), a loss over all levels (loss_cls over every point,
 * loss_bbox over the positives, the score factor's loss over the positives)
 * and get_bboxes (mmdet's BaseDenseHead: nms_pre, score_thr, score factors,
 * class-wise NMS, max_per_img). A derived head supplies its target rule
 * (get_targets, mmdet's _get_target_single) and, where it differs, its
 * layers and per-level forward:
 *
 *     typedef struct my_head { md_anchor_free_head base; double radius; } my_head;
 *     static const md_key keys[] = {
 *         MD_ANCHOR_FREE_HEAD_KEYS("None"),
 *         { "radius", MD_KEY_FLOAT, "1.5", "...", false, MD_AT(my_head, radius) },
 *         { 0 } };
 *     static const md_anchor_free_head_class my_cls = {
 *         .dense = MD_ANCHOR_FREE_HEAD_DENSE("MyHead", md_anchor_free_head_loss, md_anchor_free_head_get_bboxes),
 *         .size = sizeof(my_head), .keys = keys, .get_targets = my_targets };
 *     MD_ANCHOR_FREE_HEAD_REGISTER(my_cls, "MyHead", keys, "a custom anchor-free head");
 *
 * Outputs. The dense-head interface (bbox.h) passes two lists between
 * forward, loss and get_bboxes; a head with a score factor (mmdet's
 * with_score_factors: FCOS's centerness) carries it as the fifth channel of
 * its bbox_preds: [N, 4 + 1, H, W], distances first. forward concatenates
 * what forward_single returns; loss and get_bboxes split it.
 *
 * Order. Points, targets and flattened outputs run image by image, then
 * level by level, then row-major over the level (mmdet concatenates the
 * levels first, the images within; the loss sums are the same).
 */
#ifndef MMDET_ANCHOR_FREE_HEAD_H
#define MMDET_ANCHOR_FREE_HEAD_H

#include "anchor_head.h"   /* md_anchor_head_add_conv: a head's plain convs, for both bases */
#include "bbox.h"
#include "losses.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_anchor_free_head md_anchor_free_head;

/* The points of levels 0 .. n_levels for the outputs' sizes, one level after
 * the other: rows (x, y, stride_w, stride_h) of the MlvlPointGenerator. */
typedef struct md_anchor_free_points {
    int n_levels;
    int64_t total;                      /* T: points of one image */
    int64_t begin[MD_MAX_LEVELS];       /* first row of level l */
    int64_t counts[MD_MAX_LEVELS];      /* rows of level l */
    md_tensor *points;                  /* f32 [T, 4], on the host */
} md_anchor_free_points;

/* One level's outputs of forward_single. */
typedef struct md_anchor_free_out {
    md_tensor *cls_score;               /* [N, cls_out_channels, H, W] */
    md_tensor *bbox_pred;               /* [N, 4, H, W]: what loss_bbox / the coder read */
    md_tensor *score_factor;            /* [N, 1, H, W] logits; with_score_factors only */
    /* The branches' features after the stacked convs (the default
     * forward_single's), for a derived head to reuse; the base's forward
     * hands them back after forward_single. */
    md_tensor *cls_feat, *reg_feat;
} md_anchor_free_out;

/* What get_targets writes for one image, over its T points (rows as in
 * md_anchor_free_points). On entry every label is background (num_classes),
 * bbox targets and score-factor targets are 0 and bbox weights 1. */
typedef struct md_anchor_free_target {
    int64_t *labels;                    /* [T]: the class of a positive point */
    float *bbox_targets;                /* [T * 4]: bbox_pred's target at a positive point */
    float *bbox_weights;                /* [T]: loss_bbox's weight of a positive (FCOS: its centerness) */
    float *score_factor_targets;        /* [T]: with_score_factors only, else NULL */
} md_anchor_free_target;

typedef struct md_anchor_free_head_class {
    /* First, so the class is a dense head; MD_ANCHOR_FREE_HEAD_DENSE fills it. */
    md_dense_head_class dense;
    size_t size;                        /* sizeof the derived struct (md_anchor_free_head first) */
    const md_key *keys;                 /* the derived head's whole schema (the md_class's keys) */
    /* mmdet's _init_layers: add the layers as children and initialise them.
     * Runs after the schema filled the struct and the parts were built.
     * NULL: md_anchor_free_head_init_layers (cls_convs, reg_convs, conv_cls,
     * conv_reg); a derived head adding layers calls it first. */
    int (*init_layers)(md_ctx *ctx, md_anchor_free_head *h, md_error *err);
    /* mmdet's forward_single for level `level`'s feature map x [N, C, H, W]
     * (the caller's: do not release it). 0, or -1 with the context's error.
     * NULL: md_anchor_free_head_forward_single. Required with
     * with_score_factors (the default gives none). */
    int (*forward_single)(md_ctx *ctx, md_anchor_free_head *h, md_tensor *x, int level, md_anchor_free_out *out);
    /* The head's target rule for one image (mmdet's _get_target_single; the
     * base runs it over the batch as mmdet's get_targets does): gt boxes
     * gt->xyxy [gt->n, 4] in the image's pixels and their labels (0 for
     * every box in the RPN role, which has none). 0, or -1 with err set.
     * Required. */
    int (*get_targets)(md_ctx *ctx, md_anchor_free_head *h, const md_anchor_free_points *pts, const md_boxes *gt,
                       const int64_t *gt_labels, md_anchor_free_target *out, md_error *err);
    /* Optional. */
    bool with_score_factors;            /* forward_single gives a score factor (the fifth bbox_pred channel) */
    /* The schema key of the score factor's loss ("loss_centerness"), built
     * from the "losses" registry and reported under that name; NULL: the
     * score factor is not trained by the base's loss. */
    const char *loss_score_factor_key;
    const char *loss_cls_name, *loss_bbox_name;   /* NULL: "loss_cls", "loss_bbox" */
    /* test_cfg values the config may leave out (NULL: nms_pre all,
     * score_thr 0, nms iou 0.5, max_per_img 100). */
    const md_dense_test_cfg *test_defaults;
} md_anchor_free_head_class;

struct md_anchor_free_head {
    md_module base;
    const md_anchor_free_head_class *cls;
    /* from the schema (MD_ANCHOR_FREE_HEAD_KEYS) */
    int num_classes, in_channels, feat_channels, stacked_convs;
    bool dcn_on_last_conv;
    const md_cfg *strides_cfg, *conv_bias_cfg, *conv_cfg, *norm_cfg;
    const md_cfg *bbox_coder_cfg, *loss_cls_cfg, *loss_bbox_cfg, *train_cfg, *test_cfg_cfg, *init_cfg;
    /* derived at build */
    int num_levels;
    int cls_out_channels;               /* num_classes with a sigmoid loss_cls, else num_classes + 1 */
    bool use_sigmoid_cls;
    md_conv_module_opts conv_opts;      /* the stacked convs' ConvModule: conv_cfg, norm_cfg, conv_bias */
    md_prior_generator *prior_generator;   /* MlvlPointGenerator(strides) */
    md_bbox_coder *bbox_coder;
    md_loss *loss_cls, *loss_bbox, *loss_score_factor;
    bool has_test_cfg;
    md_dense_test_cfg test_cfg;
};

static inline md_anchor_free_head *md_anchor_free_head_of(md_module *m) { return (md_anchor_free_head *)m; }

/* Every anchor-free head's keys, stored into md_anchor_free_head: mmdet's
 * AnchorFreeHead.__init__ arguments and defaults except norm_cfg's (the
 * argument, a libconfig value: "None", or FCOS's
 * "{ type = \"GN\"; num_groups = 32; requires_grad = true; }"). */
#define MD_ANCHOR_FREE_HEAD_KEYS(norm_cfg_)                                                                       \
    { "num_classes", MD_KEY_INT, NULL, "object classes (no background)", true,                                   \
      MD_AT(md_anchor_free_head, num_classes), .min = "1" },                                                      \
    { "in_channels", MD_KEY_INT, NULL, "channels of every input level", true,                                    \
      MD_AT(md_anchor_free_head, in_channels), .min = "1" },                                                      \
    { "feat_channels", MD_KEY_INT, "256", "channels of the hidden convs", false,                                 \
      MD_AT(md_anchor_free_head, feat_channels), .min = "1" },                                                    \
    { "stacked_convs", MD_KEY_INT, "4", "3x3 ConvModules per branch", false,                                     \
      MD_AT(md_anchor_free_head, stacked_convs), .min = "0" },                                                    \
    { "strides", MD_KEY_LIST, "[4, 8, 16, 32, 64]", "stride of each level (int or [w, h]): the points", false,  \
      MD_AT(md_anchor_free_head, strides_cfg) },                                                                  \
    { "dcn_on_last_conv", MD_KEY_BOOL, "false", "the last stacked conv of each branch a DCNv2", false,          \
      MD_AT(md_anchor_free_head, dcn_on_last_conv) },                                                             \
    { "conv_bias", MD_KEY_ANY, "\"auto\"", "\"auto\" (a bias unless a norm follows), true or false", false,      \
      MD_AT(md_anchor_free_head, conv_bias_cfg) },                                                                \
    { "conv_cfg", MD_KEY_ANY, "None", "None, or { type = \"Conv\" | \"DCN\" | \"DCNv2\"; deform_groups; }",  \
      false, MD_AT(md_anchor_free_head, conv_cfg) },                                                              \
    { "norm_cfg", MD_KEY_ANY, norm_cfg_, "None, { type = \"GN\"; num_groups = 32; } or { type = \"BN\"; }", false, \
      MD_AT(md_anchor_free_head, norm_cfg) },                                                                     \
    { "bbox_coder", MD_KEY_GROUP, "{ type = \"DistancePointBBoxCoder\"; }", "box coder (bbox_coders registry)",  \
      false, MD_AT(md_anchor_free_head, bbox_coder_cfg) },                                                        \
    { "loss_cls", MD_KEY_GROUP,                                                                                   \
      "{ type = \"FocalLoss\"; use_sigmoid = true; gamma = 2.0; alpha = 0.25; loss_weight = 1.0; }",            \
      "classification loss (losses registry)", false, MD_AT(md_anchor_free_head, loss_cls_cfg) },               \
    { "loss_bbox", MD_KEY_GROUP, "{ type = \"IoULoss\"; loss_weight = 1.0; }",                                   \
      "box loss (losses registry): on decoded boxes when it compares boxes, else on the distances", false,      \
      MD_AT(md_anchor_free_head, loss_bbox_cfg) },                                                                \
    { "train_cfg", MD_KEY_ANY, "None", "read by the derived head, if at all", false,                             \
      MD_AT(md_anchor_free_head, train_cfg) },                                                                    \
    { "test_cfg", MD_KEY_ANY, "None", "nms_pre, score_thr, nms, max_per_img", false,                             \
      MD_AT(md_anchor_free_head, test_cfg_cfg) },                                                                 \
    { "init_cfg", MD_KEY_ANY, "None", "Pretrained loads a checkpoint; the layers' own init otherwise", false,     \
      MD_AT(md_anchor_free_head, init_cfg) }

/* The dense-head part of a derived class: the base's forward, test_cfg and
 * the `loss_` and `get_bboxes_` given (md_anchor_free_head_loss,
 * md_anchor_free_head_get_bboxes, or the head's own). */
#define MD_ANCHOR_FREE_HEAD_DENSE(name_, loss_, get_bboxes_)                                                   \
    { .model = { .module = { .name = (name_), .destroy = md_anchor_free_head_destroy,                         \
                             .num_classes = md_anchor_free_head_num_classes,                                   \
                             .legacy_name = md_anchor_free_head_legacy_name },                                 \
                 .init_weights = md_anchor_free_head_init_weights },                                           \
      .tag = MD_DENSE_HEAD_TAG, .forward = md_anchor_free_head_forward, .loss = (loss_),                     \
      .get_bboxes = (get_bboxes_), .test_cfg = md_anchor_free_head_test_cfg }

/* mmdet's AnchorFreeHead._load_from_state_dict: checkpoints of early
 * versions name the predictors after the head ("fcos_cls", "fcos_reg",
 * "fcos_centerness"): a missing conv_cls.*, conv_reg.* or
 * conv_centerness.* is looked up under the head's child whose name ends in
 * "cls", "reg" or "centerness" (mmdet renames only when the checkpoint
 * carries no version for the head, whose names are then the old ones). The
 * module class's legacy_name (module.h). */
bool md_anchor_free_head_legacy_name(const md_module *m, const char *prefix, const char *rel, const md_st *st,
                                     const char *strip, char *buf, size_t n);

/* mmdet's AnchorFreeHead.__init__ for a derived class: checks the class
 * (get_targets, and forward_single with with_score_factors), allocates
 * cls->size bytes, fills the struct from cfg with cls->keys, builds the
 * point generator from strides and the parts by type, reads norm_cfg,
 * conv_bias and test_cfg, then runs init_layers. NULL with err set. */
md_module *md_anchor_free_head_build(md_ctx *ctx, const md_cfg *cfg, const md_anchor_free_head_class *cls,
                                     md_error *err);

/* Registers a derived class `cls_` as `name_` with its schema `keys_`,
 * built by md_anchor_free_head_build. */
#define MD_ANCHOR_FREE_HEAD_REGISTER(cls_, name_, keys_, doc_)                                            \
    static void *cls_##_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {                            \
        return md_anchor_free_head_build(ctx, cfg, &(cls_), err);                                          \
    }                                                                                                      \
    static const md_class cls_##_class = { .name = (name_), .keys = (keys_), .build = cls_##_build,        \
                                           MD_IFACE(&(cls_), MD_IFACE_DENSE_HEAD), .doc = (doc_) };        \
    MD_REGISTER("heads", cls_##_class)

/* ---- the base's methods: the defaults above, callable by a derived head ---- */
/* _init_layers: _init_cls_convs, _init_reg_convs, _init_predictor. */
int md_anchor_free_head_init_layers(md_ctx *ctx, md_anchor_free_head *h, md_error *err);
/* forward_single: the stacked convs of each branch, conv_cls and conv_reg;
 * keeps cls_feat and reg_feat in out. */
int md_anchor_free_head_forward_single(md_ctx *ctx, md_anchor_free_head *h, md_tensor *x, int level,
                                       md_anchor_free_out *out);
/* forward: forward_single per level; bbox_preds[l] [N, 4 (+ 1), H, W]. */
int md_anchor_free_head_forward(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, md_tensor **cls_scores,
                                md_tensor **bbox_preds);
/* loss (mmdet leaves it to the head; this is FCOS's, which is generic):
 * loss_cls over every point of the batch averaged over max(num_pos, 1);
 * loss_bbox over the positives, on boxes decoded from their points when the
 * loss compares boxes (MD_LOSS_BOXES), else on the distances, weighted by
 * the targets' bbox_weights and averaged over their sum; with a score
 * factor and its loss, that loss over the positives (sigmoid logits against
 * score_factor_targets) averaged over max(num_pos, 1). Without positives
 * the box and score-factor losses are the (zero) sums of the positives'
 * outputs, as mmdet. */
int md_anchor_free_head_loss(md_ctx *ctx, md_module *m, md_tensor *const *cls_scores, md_tensor *const *bbox_preds,
                             int n, const md_batch *batch, md_losses *losses, md_error *err);
/* get_bboxes: mmdet's BaseDenseHead.get_bboxes with the points as priors and
 * the score factors when the head has them. */
int md_anchor_free_head_get_bboxes(md_ctx *ctx, md_module *m, md_tensor *const *cls_scores,
                                   md_tensor *const *bbox_preds, int n, const md_batch *batch,
                                   const md_dense_test_cfg *cfg, bool rescale, bool with_nms,
                                   md_det_result *results, md_error *err);
const md_dense_test_cfg *md_anchor_free_head_test_cfg(const md_module *m);
int md_anchor_free_head_num_classes(const md_module *m);
int md_anchor_free_head_init_weights(md_ctx *ctx, md_module *m, md_error *err);
void md_anchor_free_head_destroy(md_module *m);

/* mmcv's Scale(1.0) per level, as the ModuleList "scales" (state dict
 * scales.N.scale, 0-d parameters): scales[l] for level l's forward
 * (md_mul(ctx, bbox_pred, scales[l])). For a derived head's init_layers
 * (FCOS); md_head_add_scales (anchor_head.h) for the head's num_levels. 0 or -1. */
int md_anchor_free_head_add_scales(md_ctx *ctx, md_anchor_free_head *h, md_tensor **scales, md_error *err);

/* ---- helpers: the pieces of the loss, for a head with its own ---- */
/* The points of levels 0 .. n for the outputs' sizes (cls_scores[l]
 * [N, *, H_l, W_l]). 0, or -1 with the context's error. */
int md_anchor_free_head_points(md_ctx *ctx, md_anchor_free_head *h, md_tensor *const *cls_scores, int n,
                               md_anchor_free_points *pts);
/* Per level x[l] [N, K, H, W] -> [N * T, K], rows in the points' order
 * within each image (differentiable). NULL with the context's error. */
md_tensor *md_anchor_free_head_flatten(md_ctx *ctx, md_tensor *const *x, int n, int64_t k);

/* Everything a loss over the batch starts from. */
typedef struct md_anchor_free_loss_inputs {
    md_anchor_free_points pts;
    int64_t num_imgs, num_pos;
    double avg_pos;                     /* max(num_pos, 1): mmdet's num_pos */
    md_tensor *cls;                     /* [N * T, cls_out_channels], the outputs' device */
    md_tensor *reg;                     /* [N * T, 4 (+ 1)], the outputs' device */
    /* targets over the batch, on the host (md_anchor_free_target's, one image after the other) */
    md_tensor *labels;                  /* i64 [N * T] */
    md_tensor *bbox_targets;            /* [N * T, 4] */
    md_tensor *bbox_weights;            /* [N * T] */
    md_tensor *score_factor_targets;    /* [N * T] or NULL */
    md_tensor *pos_inds;                /* i64 [P]: rows with a label in [0, num_classes) */
    md_tensor *pos_points;              /* [P, 4]: their points */
} md_anchor_free_loss_inputs;

/* The points, the flattened outputs and the targets of the batch (the
 * class's get_targets per image), and the positives. 0, or -1 with err set. */
int md_anchor_free_head_loss_inputs(md_ctx *ctx, md_anchor_free_head *h, md_tensor *const *cls_scores,
                                    md_tensor *const *bbox_preds, int n, const md_batch *batch,
                                    md_anchor_free_loss_inputs *in, md_error *err);

#ifdef __cplusplus
}
#endif
#endif
