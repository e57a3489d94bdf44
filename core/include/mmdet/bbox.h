/* Box machinery of the dense and RoI heads: the interfaces of the
 * "prior_generators", "bbox_coders", "bbox_assigners", "bbox_samplers" and
 * "iou_calculators" registries (mmdet/core/anchor and mmdet/core/bbox).
 *
 * A head builds its parts by type name, like mmdet's build_assigner(cfg):
 *
 *     md_bbox_assigner *a = md_build_from_cfg(ctx, "bbox_assigners",
 *                                             md_cfg_get(train_cfg, "assigner"), NULL, err);
 *     md_assign_result ar;
 *     if (md_bbox_assign(ctx, a, anchors, gt, gt_ignore, gt_labels, &ar, err)) ...
 *     a->iface->destroy(a);
 *
 * Every built object starts with a header holding its iface, so the head
 * never links against the plugin. Results are step tensors (valid until
 * md_ctx_step_reset). Boxes are f32 [N, 4] xyxy, contiguous; indices i64.
 */
#ifndef MMDET_BBOX_H
#define MMDET_BBOX_H

#include "data.h"
#include "models.h"
#include "onnx.h"
#include "ops.h"
#include "registry.h"
#include "runner.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Interface codes (registry.h's MD_IFACE) of the box registries and of
 * dense heads. */
#define MD_IFACE_PRIOR_GENERATOR MD_IFACE_CODE('P', 'R', 'G', 1)  /* md_prior_generator_iface */
#define MD_IFACE_BBOX_CODER MD_IFACE_CODE('C', 'O', 'D', 1)       /* md_bbox_coder_iface */
#define MD_IFACE_BBOX_ASSIGNER MD_IFACE_CODE('A', 'S', 'G', 1)    /* md_bbox_assigner_iface */
#define MD_IFACE_BBOX_SAMPLER MD_IFACE_CODE('S', 'M', 'P', 1)     /* md_bbox_sampler_iface */
#define MD_IFACE_IOU_CALCULATOR MD_IFACE_CODE('I', 'O', 'U', 1)   /* md_iou_calculator_iface */
#define MD_IFACE_DENSE_HEAD MD_IFACE_CODE('D', 'H', 'D', 1)       /* md_dense_head_class */

/* ---- "prior_generators": AnchorGenerator ---- */
typedef struct md_prior_generator md_prior_generator;
typedef struct md_prior_generator_iface {
    int (*num_levels)(const md_prior_generator *g);
    /* Priors per location of `level` (mmdet's num_base_priors). */
    int (*num_base_priors)(const md_prior_generator *g, int level);
    /* Stride of `level` in pixels, (w, h). */
    void (*stride)(const md_prior_generator *g, int level, int *stride_w, int *stride_h);
    /* mmdet's single_level_grid_priors: [feat_h * feat_w * A, 4] f32, ordered
     * (y, x, base prior) with x fastest after the prior. */
    md_tensor *(*grid_priors)(md_ctx *ctx, const md_prior_generator *g, int level, int64_t feat_h,
                              int64_t feat_w);
    /* mmdet's single_level_valid_flags: u8 [feat_h * feat_w * A], 1 where the
     * location lies inside valid_h x valid_w (clamped to the feature map). */
    md_tensor *(*valid_flags)(md_ctx *ctx, const md_prior_generator *g, int level, int64_t feat_h,
                              int64_t feat_w, int64_t valid_h, int64_t valid_w);
    void (*destroy)(md_prior_generator *g);
} md_prior_generator_iface;
struct md_prior_generator { const md_prior_generator_iface *iface; const char *type; };

/* ---- "bbox_coders": DeltaXYWHBBoxCoder ---- */
typedef struct md_bbox_coder md_bbox_coder;
typedef struct md_bbox_coder_iface {
    /* bboxes [N, 4] (anchors / proposals), gt [N, 4] -> targets [N, 4]
     * (not differentiable). */
    md_tensor *(*encode)(md_ctx *ctx, const md_bbox_coder *c, md_tensor *bboxes, md_tensor *gt);
    /* bboxes [N, 4], pred [N, 4 * k] -> boxes [N, 4 * k], clipped to max_shape
     * (h, w) when not NULL and the coder clips; differentiable in pred. */
    md_tensor *(*decode)(md_ctx *ctx, const md_bbox_coder *c, md_tensor *bboxes, md_tensor *pred,
                         const int *max_shape);
    void (*destroy)(md_bbox_coder *c);
    /* Optional: decode's ONNX form while tracing (onnx.h): value names of
     * bboxes [N, K, 4] and pred [N, K, 4] -> the boxes' value [N, K, 4],
     * clipped to max_wh (a value f32 [2]: width, height;
     * md_onnx_image_max_wh) when not NULL and the coder clips. NULL: not
     * exportable. */
    const char *(*onnx_decode)(md_ctx *ctx, const md_bbox_coder *c, const char *bboxes, const char *pred,
                               const char *max_wh);
    /* Optional: encode with mmdet's per-call max_dis (DistancePointBBoxCoder:
     * bbox2distance's distances clamped to [0, max_dis - eps], as GFL-style
     * heads call it with reg_max). NULL: the coder takes no max_dis. */
    md_tensor *(*encode_max)(md_ctx *ctx, const md_bbox_coder *c, md_tensor *bboxes, md_tensor *gt, double max_dis,
                             double eps);
} md_bbox_coder_iface;
struct md_bbox_coder { const md_bbox_coder_iface *iface; const char *type; };

/* ---- "iou_calculators": BboxOverlaps2D ----
 * What an assigner measures boxes with (its `iou_calculator` key), as
 * mmdet's build_iou_calculator. */
typedef struct md_iou_calculator md_iou_calculator;
typedef struct md_iou_calculator_iface {
    /* mmdet's __call__(bboxes1, bboxes2, mode, is_aligned): overlaps of
     * boxes [N, 4] and [M, 4] (a fifth column, a score, is ignored) as f32
     * [N, M], or [N] when aligned (N == M). A step tensor; NULL with the
     * context's error. */
    md_tensor *(*overlaps)(md_ctx *ctx, const md_iou_calculator *c, md_tensor *bboxes1, md_tensor *bboxes2,
                           md_iou_mode mode, bool is_aligned);
    void (*destroy)(md_iou_calculator *c);
} md_iou_calculator_iface;
struct md_iou_calculator { const md_iou_calculator_iface *iface; const char *type; };

static inline md_tensor *md_iou_calculator_overlaps(md_ctx *ctx, const md_iou_calculator *c, md_tensor *bboxes1,
                                                    md_tensor *bboxes2, md_iou_mode mode, bool is_aligned) {
    return c->iface->overlaps(ctx, c, bboxes1, bboxes2, mode, is_aligned);
}

/* ---- "bbox_assigners": MaxIoUAssigner, ATSSAssigner ---- */
/* mmdet's AssignResult. gt_inds [N] i64: 0 negative, -1 ignored, k + 1
 * assigned to gt k; max_overlaps [N] f32; labels [N] i64 (-1 where not
 * positive), NULL when no gt_labels were given. */
typedef struct md_assign_result {
    int64_t num_gts;
    md_tensor *gt_inds, *max_overlaps, *labels;
} md_assign_result;

/* The boxes' levels, for an assigner that selects per pyramid level
 * (mmdet's ATSSAssigner.assign(bboxes, num_level_bboxes, ...)): the boxes
 * lie one level after the other, counts[l] of level l, summing to N.
 * Optionally the head's predictions for the same N boxes, for an assigner
 * with a prediction-based cost (ATSSAssigner with `alpha`, DDOD's; mmdet's
 * assign(..., cls_scores, bbox_preds)): cls_scores [N, C] logits and
 * bbox_preds [N, 4] decoded boxes, NULL when not given (an initialiser
 * { n, counts } leaves them NULL). */
typedef struct md_assign_levels {
    int n;                              /* levels (<= MD_MAX_LEVELS) */
    const int64_t *counts;
    md_tensor *cls_scores, *bbox_preds; /* optional, see above */
} md_assign_levels;

typedef struct md_bbox_assigner md_bbox_assigner;
typedef struct md_bbox_assigner_iface {
    /* bboxes [N, 4], gt_bboxes [K, 4] (K may be 0), gt_bboxes_ignore [M, 4]
     * or NULL, gt_labels i64 [K] or NULL. Returns 0 or -1 with err set.
     * Required (an assigner that needs levels refuses a call without them). */
    int (*assign)(md_ctx *ctx, const md_bbox_assigner *a, md_tensor *bboxes, md_tensor *gt_bboxes,
                  md_tensor *gt_bboxes_ignore, md_tensor *gt_labels, md_assign_result *out, md_error *err);
    void (*destroy)(md_bbox_assigner *a);
    /* Optional: assign knowing the boxes' levels (ATSSAssigner). Callers go
     * through md_bbox_assign_levels, which calls assign when this is NULL,
     * so an assigner that ignores levels (MaxIoUAssigner) leaves it out. */
    int (*assign_levels)(md_ctx *ctx, const md_bbox_assigner *a, md_tensor *bboxes, const md_assign_levels *levels,
                         md_tensor *gt_bboxes, md_tensor *gt_bboxes_ignore, md_tensor *gt_labels,
                         md_assign_result *out, md_error *err);
} md_bbox_assigner_iface;
struct md_bbox_assigner { const md_bbox_assigner_iface *iface; const char *type; };

/* ---- "bbox_samplers": PseudoSampler, RandomSampler ---- */
/* mmdet's SamplingResult. Indices ascending (i64); pos_assigned_gt_inds
 * 0-based; pos_gt_labels NULL when the assign result had no labels. */
typedef struct md_sampling_result {
    md_tensor *pos_inds, *neg_inds;
    md_tensor *pos_bboxes, *neg_bboxes, *pos_gt_bboxes;   /* [P|Q, 4] */
    md_tensor *pos_assigned_gt_inds, *pos_gt_labels;
    md_tensor *pos_is_gt;                                 /* u8 [P] */
    int64_t num_gts;
} md_sampling_result;

typedef struct md_bbox_sampler md_bbox_sampler;
typedef struct md_bbox_sampler_iface {
    /* bboxes are the boxes assigned (anchors, proposals); samplers that add
     * gts as proposals put them first (gt_flags). rng drives random ones. */
    int (*sample)(md_ctx *ctx, const md_bbox_sampler *s, const md_assign_result *ar, md_tensor *bboxes,
                  md_tensor *gt_bboxes, md_tensor *gt_labels, md_rng *rng, md_sampling_result *out,
                  md_error *err);
    void (*destroy)(md_bbox_sampler *s);
} md_bbox_sampler_iface;
struct md_bbox_sampler { const md_bbox_sampler_iface *iface; const char *type; };

/* ---- "heads": dense heads (mmdet's BaseDenseHead: AnchorHead, RetinaHead,
 * RPNHead, ...) ----
 * One interface serves a single-stage detector's bbox_head and a two-stage
 * detector's rpn_head, as in mmdet, where RPNHead is an AnchorHead like
 * RetinaHead. Built by md_build_from_cfg("heads", ...) as an md_module whose
 * class starts with md_dense_head_class (the md_class's iface points at it,
 * as for backbones). The detector passes train_cfg / test_cfg into the
 * head's config, as mmdet's build_head; the proposal settings of training
 * (train_cfg.rpn_proposal) are passed to forward_train, as in mmdet.
 *
 * A plugin fills forward, loss, get_bboxes and test_cfg; the rest are
 * optional (NULL: the core's default, mmdet's base-class method), and
 * callers go through the md_dense_head_* functions below, which apply the
 * defaults. Results are md_det_result arrays in the step arena: boxes
 * x1 y1 x2 y2 score, labels 0-based (an RPN's are all 0). */

/* Post-processing settings of get_bboxes: mmdet's test_cfg of a dense head
 * (the detector's test_cfg.rpn for an RPN) or train_cfg.rpn_proposal.
 * A head reads what it uses (RPNHead: nms_pre, min_bbox_size, nms,
 * max_per_img; RetinaHead: nms_pre, score_thr, nms, max_per_img). */
typedef struct md_dense_test_cfg {
    int64_t nms_pre;         /* best scores kept per level before NMS (<= 0: all) */
    double score_thr;        /* candidates must score above it */
    double min_bbox_size;    /* boxes must be wider and taller (< 0: no filter) */
    double nms_iou;          /* nms.iou_threshold */
    int64_t max_per_img;     /* kept after NMS (<= 0: all) */
} md_dense_test_cfg;

/* Reads cfg (keys nms_pre, score_thr, min_bbox_size, nms = { type = "nms";
 * iou_threshold }, max_per_img; unknown keys are errors naming `what`) over
 * `defaults` (NULL: every candidate, no size filter, NMS at 0.5, 100
 * kept); defaults->nms_iou < 0 makes `nms` required. 0 or -1. */
int md_dense_test_cfg_read(const md_cfg *cfg, const char *what, const md_dense_test_cfg *defaults,
                           md_dense_test_cfg *out, md_error *err);

/* md_dense_head_class.tag: tells a dense head from the other classes of the
 * "heads" registry (RoI heads, bbox heads), whose structs differ. */
#define MD_DENSE_HEAD_TAG 0x4d444448u

typedef struct md_dense_head_class {
    md_model_class model;         /* must be first */
    uint32_t tag;                 /* MD_DENSE_HEAD_TAG */
    /* mmdet's forward: feats[0 .. n) -> per level cls_scores [N, A*C, H, W]
     * and bbox_preds [N, A*4, H, W]; 0 or -1 (ctx error). Required. */
    int (*forward)(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, md_tensor **cls_scores,
                   md_tensor **bbox_preds);
    /* mmdet's loss: named losses from the forward outputs and the batch's
     * ground truth (gt_bboxes, labels, gt_bboxes_ignore, metas); samplers
     * draw from md_ctx_rng. The gt labels may be NULL (the RPN role, mmdet's
     * gt_labels=None): every positive is then class 0. Required. */
    int (*loss)(md_ctx *ctx, md_module *m, md_tensor *const *cls_scores, md_tensor *const *bbox_preds, int n,
                const md_batch *batch, md_losses *losses, md_error *err);
    /* mmdet's get_bboxes: results[i] for image i with cfg (NULL: the head's
     * test_cfg); rescale divides by the meta's scale_factor; with_nms false
     * gives the candidates before NMS (test-time augmentation). Required. */
    int (*get_bboxes)(md_ctx *ctx, md_module *m, md_tensor *const *cls_scores, md_tensor *const *bbox_preds,
                      int n, const md_batch *batch, const md_dense_test_cfg *cfg, bool rescale, bool with_nms,
                      md_det_result *results, md_error *err);
    /* The test_cfg read at build; NULL when the head has none. Required. */
    const md_dense_test_cfg *(*test_cfg)(const md_module *m);

    /* Optional (NULL: the default named). */
    /* forward_train: forward, loss and, when proposals is not NULL,
     * get_bboxes(proposal_cfg, rescale=False) (default:
     * md_dense_head_forward_train). */
    int (*forward_train)(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, const md_batch *batch,
                         const md_dense_test_cfg *proposal_cfg, md_losses *losses, md_det_result *proposals,
                         md_error *err);
    /* simple_test (simple_test_bboxes): forward then get_bboxes with the
     * test_cfg. */
    int (*simple_test)(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, const md_batch *batch,
                       bool rescale, md_det_result *results, md_error *err);
    /* aug_test (BBoxTestMixin.aug_test_bboxes): feats[k][0 .. n) are the
     * features of variant k (md_batch_aug(batch, k)); results[i] merged over
     * the variants (md_merge_aug_dets with the test_cfg's nms and
     * max_per_img), in the original image's pixels when rescale, else scaled
     * by variant 0's scale_factor. */
    int (*aug_test)(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n, md_batch *batch, bool rescale,
                    md_det_result *results, md_error *err);
    /* aug_test_rpn (RPNTestMixin): each variant's simple_test without
     * rescale, then per image md_merge_aug_proposals with the test_cfg's nms
     * and max_per_img; proposals[i] [P, 5] in the original image's pixels. */
    int (*aug_test_rpn)(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n, md_batch *batch,
                        md_tensor **proposals, md_error *err);
    /* mmdet's onnx_export while tracing (onnx.h): from the forward's
     * outputs (traced values) for the input img, the detections as values
     * (dets [N, K, 5], labels [N, K]; an RPN's proposals, labels 0).
     * NULL: not exportable. */
    int (*onnx_export)(md_ctx *ctx, md_module *m, md_tensor *const *cls_scores, md_tensor *const *bbox_preds,
                       int n, const md_onnx_image *img, md_onnx_dets *out, md_error *err);
} md_dense_head_class;

static inline const md_dense_head_class *md_dense_head_class_of(const md_module *m) {
    return (const md_dense_head_class *)m->cls;
}

/* md_build_from_cfg in "heads", then a check that the built module's class
 * is its registered interface, carries MD_DENSE_HEAD_TAG and has the
 * required entries. */
md_module *md_build_dense_head(md_ctx *ctx, const md_cfg *cfg, const md_cfg *default_args, md_error *err);

/* The calls, each the class's entry when set, else mmdet's base-class
 * behaviour written with forward / loss / get_bboxes. 0 or -1 (err set). */
int md_dense_head_forward_train(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, const md_batch *batch,
                                const md_dense_test_cfg *proposal_cfg, md_losses *losses, md_det_result *proposals,
                                md_error *err);
int md_dense_head_simple_test(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, const md_batch *batch,
                              bool rescale, md_det_result *results, md_error *err);
int md_dense_head_aug_test(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n, md_batch *batch,
                           bool rescale, md_det_result *results, md_error *err);
/* simple_test_rpn: simple_test without rescale, as proposals[i] [P, 5]
 * (step tensors, detached). */
int md_dense_head_simple_test_rpn(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n,
                                  const md_batch *batch, md_tensor **proposals, md_error *err);
int md_dense_head_aug_test_rpn(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n, md_batch *batch,
                               md_tensor **proposals, md_error *err);
/* Detections as proposals: [n, 5] step tensor (NULL, ctx error, on failure). */
md_tensor *md_det_result_proposals(md_ctx *ctx, const md_det_result *r);

/* ---- calls through the interfaces ---- */
static inline md_tensor *md_grid_priors(md_ctx *ctx, const md_prior_generator *g, int level, int64_t h,
                                        int64_t w) {
    return g->iface->grid_priors(ctx, g, level, h, w);
}
static inline md_tensor *md_bbox_encode(md_ctx *ctx, const md_bbox_coder *c, md_tensor *b, md_tensor *gt) {
    return c->iface->encode(ctx, c, b, gt);
}
/* encode(bboxes, gt, max_dis, eps) through the coder's encode_max; an op
 * error naming the coder when it has none. */
static inline md_tensor *md_bbox_encode_max(md_ctx *ctx, const md_bbox_coder *c, md_tensor *b, md_tensor *gt,
                                            double max_dis, double eps) {
    if (!c->iface->encode_max) return md_op_fail(ctx, "encode", "the box coder %s takes no max_dis", c->type);
    return c->iface->encode_max(ctx, c, b, gt, max_dis, eps);
}
static inline md_tensor *md_bbox_decode(md_ctx *ctx, const md_bbox_coder *c, md_tensor *b, md_tensor *pred,
                                        const int *max_shape) {
    return c->iface->decode(ctx, c, b, pred, max_shape);
}
static inline int md_bbox_assign(md_ctx *ctx, const md_bbox_assigner *a, md_tensor *bboxes, md_tensor *gt,
                            md_tensor *gt_ignore, md_tensor *gt_labels, md_assign_result *out, md_error *err) {
    return a->iface->assign(ctx, a, bboxes, gt, gt_ignore, gt_labels, out, err);
}
/* assign with the boxes' levels (levels may be NULL): the assigner's
 * assign_levels when it has one, else its assign. */
static inline int md_bbox_assign_levels(md_ctx *ctx, const md_bbox_assigner *a, md_tensor *bboxes,
                                        const md_assign_levels *levels, md_tensor *gt, md_tensor *gt_ignore,
                                        md_tensor *gt_labels, md_assign_result *out, md_error *err) {
    if (a->iface->assign_levels) return a->iface->assign_levels(ctx, a, bboxes, levels, gt, gt_ignore, gt_labels, out, err);
    return a->iface->assign(ctx, a, bboxes, gt, gt_ignore, gt_labels, out, err);
}
static inline int md_bbox_sample(md_ctx *ctx, const md_bbox_sampler *s, const md_assign_result *ar,
                            md_tensor *bboxes, md_tensor *gt, md_tensor *gt_labels, md_rng *rng,
                            md_sampling_result *out, md_error *err) {
    return s->iface->sample(ctx, s, ar, bboxes, gt, gt_labels, rng, out, err);
}
/* ---- test-time augmentation (mmdet/core/bbox/transforms.py and
 * mmdet/core/post_processing/merge_augs.py) ----
 * Boxes are n rows of `cols` floats, cols a multiple of 4 (one xyxy box,
 * or one per class), changed in place. img_shape is (h, w) of the image
 * the boxes lie in when flipped (the variant's img_shape); scale_factor
 * (w, h, w, h). A flip with MD_FLIP_NONE as its direction is horizontal
 * (mmdet's default). */
/* mmdet's bbox_flip: x -> w - x (horizontal), y -> h - y (vertical), both
 * (diagonal), swapping the corners. */
void md_bbox_flip(float *boxes, int64_t n, int cols, const int img_shape[2], md_flip_dir dir);
/* bbox_mapping: original image -> variant (scale, then flip). */
void md_bbox_mapping(float *boxes, int64_t n, int cols, const int img_shape[2], const float scale_factor[4],
                     bool flip, md_flip_dir dir);
/* bbox_mapping_back: variant -> original image (unflip, then unscale). */
void md_bbox_mapping_back(float *boxes, int64_t n, int cols, const int img_shape[2], const float scale_factor[4],
                          bool flip, md_flip_dir dir);
/* The same with a variant's meta (img_shape, scale_factor, flip, flip_direction). */
static inline void md_bbox_mapping_meta(float *boxes, int64_t n, int cols, const md_img_meta *m) {
    md_bbox_mapping(boxes, n, cols, m->img_shape, m->scale_factor, m->flip, m->flip_direction);
}
static inline void md_bbox_mapping_back_meta(float *boxes, int64_t n, int cols, const md_img_meta *m) {
    md_bbox_mapping_back(boxes, n, cols, m->img_shape, m->scale_factor, m->flip, m->flip_direction);
}

/* The merge of dense heads' BBoxTestMixin.aug_test_bboxes for one image:
 * cands[k] are variant k's detections before NMS (get_bboxes with
 * rescale=False, with_nms=False: rows x1 y1 x2 y2 score, labels), mapped
 * back to the original image with metas[k] and concatenated (the dense
 * merge_aug_bboxes), then class-wise batched NMS at iou_thr and the first
 * max_per_img (<= 0: all). *out holds step-arena arrays, boxes in the
 * original image's pixels. 0, or -1 (ctx error). */
int md_merge_aug_dets(md_ctx *ctx, const md_det_result *cands, const md_img_meta *const *metas, int n_aug,
                      double iou_thr, int64_t max_per_img, md_det_result *out);
/* merge_aug_proposals: each variant's proposals [P_k, 5] (x1 y1 x2 y2
 * score) mapped back to the original image, concatenated, NMS at iou_thr,
 * the max_per_img best (<= 0: all) by score. [P, 5] step tensor, NULL on
 * error (ctx). */
md_tensor *md_merge_aug_proposals(md_ctx *ctx, md_tensor *const *proposals, const md_img_meta *const *metas,
                                  int n_aug, double iou_thr, int64_t max_per_img);
/* merge_aug_bboxes of RoI heads: each variant's boxes [K, cols] mapped
 * back to the original image, then boxes and (when scores is not NULL)
 * scores [K, S] averaged over the variants (all of the same shape). Step
 * tensors; 0, or -1 (ctx error naming the shapes). */
int md_merge_aug_bboxes(md_ctx *ctx, md_tensor *const *bboxes, md_tensor *const *scores,
                        const md_img_meta *const *metas, int n_aug, md_tensor **merged_bboxes,
                        md_tensor **merged_scores);
/* mmdet's multiclass_nms: boxes [K, 4 * C] (or [K, 4] shared by the
 * classes), scores [K, C + 1] (background last); per class the scores
 * above score_thr, class-wise NMS at iou_thr, the max_per_img best (<= 0:
 * all). det_bboxes [D, 5], det_labels [D] i64 (step tensors). 0 or -1. */
int md_multiclass_nms(md_ctx *ctx, md_tensor *boxes, md_tensor *scores, int64_t num_classes, double score_thr,
                      double iou_thr, int64_t max_per_img, md_tensor **det_bboxes, md_tensor **det_labels);

/* destroy through the header; NULL is fine. */
#define MD_BBOX_DESTROY(obj) do { if (obj) (obj)->iface->destroy(obj); } while (0)

#ifdef __cplusplus
}
#endif
#endif
