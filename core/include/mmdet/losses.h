/* The "losses" registry: mmdet's losses (mmdet/models/losses) as parts a
 * head builds by type, like mmdet's build_loss(cfg):
 *
 *     md_loss *l = md_build_loss(ctx, md_cfg_get(cfg, "loss_cls"), err);
 *     md_tensor *v = md_loss_forward(ctx, l, cls_scores, labels, label_weights, num_total_pos, MD_REDUCE_DEFAULT);
 *     md_loss_free(l);
 *
 * A loss plugin is its schema and its forward: the object starts with
 * md_loss (built by md_loss_new, which reads the schema's fields into the
 * struct, loss_weight and reduction included with MD_LOSS_KEYS), and forward
 * returns the reduced loss times loss_weight, as mmdet's loss modules do:
 *
 *     typedef struct l1 { md_loss base; } l1;
 *     static const md_key keys[] = { MD_LOSS_KEYS("1.0"), { 0 } };
 *     static md_tensor *forward(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target,
 *                               md_tensor *weight, double avg_factor, int reduction) {
 *         return md_loss_scale(ctx, l, md_loss_l1(ctx, pred, target, weight,
 *                                                 md_loss_reduction(l, reduction), avg_factor));
 *     }
 *     static const md_loss_iface iface = { .forward = forward };
 *     MD_LOSS_CLASS(l1_class, "L1Loss", l1, keys, iface, "mean absolute error");
 *     MD_PLUGIN("l1_loss", "1.0", "Apache-2.0");
 *     MD_REGISTER("losses", l1_class)
 */
#ifndef MMDET_LOSSES_H
#define MMDET_LOSSES_H

#include "ops.h"
#include "registry.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_IFACE_LOSS MD_IFACE_CODE('L', 'O', 'S', 1)   /* md_loss_iface */

/* The configured reduction (the `reduction` key), for a forward's
 * reduction argument. */
#define MD_REDUCE_DEFAULT (-1)

typedef struct md_loss md_loss;
typedef struct md_loss_iface {
    /* mmdet's forward(pred, target, weight, avg_factor, reduction_override):
     * the loss of pred against target (f32 of pred's shape for regression
     * losses, i64 labels [N] for classification losses, num_classes meaning
     * background), times weight (NULL: 1; per element, or per row where the
     * loss says so), reduced (MD_REDUCE_DEFAULT: the configured reduction;
     * with avg_factor >= 0 a mean is the sum over avg_factor, MD_NO_AVG:
     * none), times loss_weight. A step tensor differentiable in pred; NULL
     * with the context's error. Required. */
    md_tensor *(*forward)(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target, md_tensor *weight,
                          double avg_factor, int reduction);
    /* Frees what the loss owns beyond itself (NULL: nothing). */
    void (*destroy)(md_loss *l);
} md_loss_iface;

/* What a head may ask of a loss (md_loss.flags). */
enum {
    MD_LOSS_SIGMOID = 1u << 0,   /* classification over sigmoids: no background channel (use_sigmoid) */
    MD_LOSS_BOXES = 1u << 1,     /* compares boxes, not deltas: the head decodes first (reg_decoded_bbox) */
    MD_LOSS_MASK = 1u << 2,      /* mask logits [N, C, H, W] against targets [N, H, W], the labels i64 [N]
                                    in the weight's place (CrossEntropyLoss use_mask) */
};

struct md_loss {
    const md_loss_iface *iface;
    const char *type;            /* the registered name */
    double loss_weight;
    int reduction;               /* md_reduction */
    unsigned flags;              /* MD_LOSS_*: set by the loss's build */
};

/* The keys every loss has, stored into md_loss (which must be first in the
 * plugin's struct): loss_weight (default `weight_`) and reduction. */
#define MD_LOSS_KEYS(weight_)                                                                       \
    { "loss_weight", MD_KEY_FLOAT, weight_, "factor of the loss", false, MD_AT(md_loss, loss_weight) }, \
    { "reduction", MD_KEY_STRING, "\"mean\"", "mean, sum or none", false,                            \
      MD_CHOICE_AT(md_loss, reduction, "mean|sum|none") }

/* Allocates a zeroed object of `size` (md_loss first), fills it from cfg
 * with `keys` (md_cfg_read_struct) and sets its iface and type. NULL with
 * err set. For a loss's build. */
md_loss *md_loss_new(size_t size, const md_loss_iface *iface, const char *type, const md_cfg *cfg,
                     const md_key *keys, md_error *err);

/* The class of a loss whose build is md_loss_new alone. */
#define MD_LOSS_CLASS(var_, name_, struct_, keys_, iface_, doc_)                                   \
    static void *var_##_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {                     \
        (void)ctx;                                                                                 \
        return md_loss_new(sizeof(struct_), &(iface_), (name_), cfg, (keys_), err);                \
    }                                                                                              \
    static const md_class var_ = { .name = (name_), .keys = (keys_), .build = var_##_build,       \
                                   MD_IFACE(&(iface_), MD_IFACE_LOSS), .doc = (doc_) }

/* md_build_from_cfg in "losses". */
md_loss *md_build_loss(md_ctx *ctx, const md_cfg *cfg, md_error *err);
void md_loss_free(md_loss *l);

static inline md_tensor *md_loss_forward(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target,
                                         md_tensor *weight, double avg_factor, int reduction) {
    return l->iface->forward(ctx, l, pred, target, weight, avg_factor, reduction);
}
/* The reduction a forward applies: `reduction` unless MD_REDUCE_DEFAULT. */
static inline md_reduction md_loss_reduction(const md_loss *l, int reduction) {
    return (md_reduction)(reduction == MD_REDUCE_DEFAULT ? l->reduction : reduction);
}
/* x times loss_weight (NULL stays NULL). */
static inline md_tensor *md_loss_scale(md_ctx *ctx, const md_loss *l, md_tensor *x) {
    return md_mul_scalar(ctx, x, l->loss_weight);
}

/* ---- rules several losses share ---- */
/* A key the schema bounds at >= 0 that must not be 0 either (mmdet divides
 * by it or asserts it): the error names the file and line, like the
 * schema's own bound errors. 0 or -1. */
int md_loss_need_positive(const md_cfg *cfg, const char *key, double v, const char *type,
                          md_error *err);
/* pred and target: f32 [N, 4] boxes (x1, y1, x2, y2) of one shape. */
bool md_loss_boxes_ok(md_ctx *ctx, const char *op, const md_tensor *pred, const md_tensor *target);
/* mmdet's IoU-family weight rules (IoULoss, GIoULoss, DIoULoss, CIoULoss
 * forward): a weight is [N] or [N, 4], the latter averaged over the last
 * dim; and when a weight is given and no value of it is positive (no rows
 * included), the loss is (pred * weight).sum(), a zero for zero weights that
 * keeps pred on the graph, whatever the reduction and not times loss_weight.
 * `nopos_rule` false skips that rule (IoULoss with reduction "none").
 * Returns true when the rule decided the loss: *out (NULL after an op
 * error). Otherwise *w is the per-box weight [N] or NULL. The positivity
 * test reads the weight on the host (a device weight is copied). */
bool md_loss_box_weight(md_ctx *ctx, const char *op, md_tensor *pred, md_tensor *weight,
                        bool nopos_rule, md_tensor **w, md_tensor **out);
/* max(a, b) and min(a, b) element-wise (torch.max / torch.min of two
 * tensors) as where(a >= b, a, b): the values exactly; at a tie the
 * gradient goes to a (PyTorch splits it in halves). */
md_tensor *md_loss_maximum(md_ctx *ctx, md_tensor *a, md_tensor *b);
md_tensor *md_loss_minimum(md_ctx *ctx, md_tensor *a, md_tensor *b);
/* Column k of boxes [N, 4], as [N]. */
md_tensor *md_loss_col(md_ctx *ctx, md_tensor *boxes, int k);
/* The terms of mmdet's diou_loss and ciou_loss, in its order of operations:
 * ious = overlap / (area_p + area_t - overlap + eps), the squared distance
 * of the centres rho2 and the squared diagonal of the enclosing box
 * c2 (+ eps), each [N]. False after an op error. */
bool md_loss_diou_terms(md_ctx *ctx, md_tensor *pred, md_tensor *target, double eps, md_tensor **ious,
                        md_tensor **rho2, md_tensor **c2);

#ifdef __cplusplus
}
#endif
#endif
