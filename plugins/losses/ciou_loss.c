/* mmdet 2.28's CIoULoss (mmdet/models/losses/iou_loss.py, ciou_loss): the
 * DIoU terms plus alpha * v, v = 4 / pi^2 (atan(w_t / h_t) - atan(w_p /
 * h_p))^2 the aspect-ratio term and alpha = [iou > 0.5] v / (1 - iou + v)
 * taken as a constant (mmdet computes it under no_grad); the loss is
 * 1 - clamp(ciou, -1, 1). Composed of differentiable ops. Weight [N] or
 * [N, 4] (mean over the last dim); with a weight and none of it positive,
 * mmdet's (pred * weight).sum(). */
#include <math.h>
#include <mmdet/mmdet.h>

typedef struct ciou_loss {
    md_loss base;
    double eps;
} ciou_loss;

static const md_key keys[] = {
    { "eps", MD_KEY_FLOAT, "1e-6", "added to the union, the squared diagonal and the heights (> 0)", false,
      MD_AT(ciou_loss, eps), .min = "0" },
    MD_LOSS_KEYS("1.0"),
    { 0 } };

static md_tensor *forward(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target, md_tensor *weight,
                          double avg, int reduction) {
    const ciou_loss *c = (const ciou_loss *)l;
    if (!pred || !target) return NULL;
    if (!md_loss_boxes_ok(ctx, "CIoULoss", pred, target)) return NULL;
    md_tensor *w, *zero;
    if (md_loss_box_weight(ctx, "CIoULoss", pred, weight, true, &w, &zero)) return zero;
    md_tensor *ious, *rho2, *c2;
    if (!md_loss_diou_terms(ctx, pred, target, c->eps, &ious, &rho2, &c2)) return NULL;
    /* aspect ratios; eps keeps a flat box's ratio finite */
    md_tensor *w1 = md_sub(ctx, md_loss_col(ctx, pred, 2), md_loss_col(ctx, pred, 0));
    md_tensor *h1 = md_add_scalar(ctx, md_sub(ctx, md_loss_col(ctx, pred, 3), md_loss_col(ctx, pred, 1)), c->eps);
    md_tensor *w2 = md_sub(ctx, md_loss_col(ctx, target, 2), md_loss_col(ctx, target, 0));
    md_tensor *h2 = md_add_scalar(ctx, md_sub(ctx, md_loss_col(ctx, target, 3), md_loss_col(ctx, target, 1)), c->eps);
    md_tensor *da = md_sub(ctx, md_atan(ctx, md_div(ctx, w2, h2)), md_atan(ctx, md_div(ctx, w1, h1)));
    md_tensor *v = md_mul_scalar(ctx, md_pow_scalar(ctx, da, 2.0), 4.0 / (M_PI * M_PI));
    /* alpha is a constant of the step: no gradient flows through it */
    bool was = md_grad_set_enabled(ctx, false);
    md_tensor *alpha = md_div(ctx, md_mul(ctx, md_cast(ctx, md_gt_scalar(ctx, ious, 0.5), MD_F32), v),
                              md_add(ctx, md_add_scalar(ctx, md_neg(ctx, ious), 1.0), v));
    md_grad_set_enabled(ctx, was);
    md_tensor *cious = md_sub(ctx, ious, md_add(ctx, md_div(ctx, rho2, c2), md_mul(ctx, alpha, v)));
    md_tensor *loss = md_add_scalar(ctx, md_neg(ctx, md_clamp(ctx, cious, -1.0, 1.0)), 1.0);
    return md_loss_scale(ctx, l, md_weight_reduce_loss(ctx, loss, w, md_loss_reduction(l, reduction), avg));
}

static const md_loss_iface iface = { .forward = forward };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    ciou_loss *c = (ciou_loss *)md_loss_new(sizeof *c, &iface, "CIoULoss", cfg, keys, err);
    if (!c) return NULL;
    if (md_loss_need_positive(cfg, "eps", c->eps, "CIoULoss", err)) {
        md_loss_free(&c->base);
        return NULL;
    }
    c->base.flags = MD_LOSS_BOXES;
    return c;
}

static const md_class cls = { .name = "CIoULoss", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_LOSS),
                              .doc = "complete-IoU loss of decoded boxes" };
MD_PLUGIN("ciou_loss", "1.0", "Apache-2.0");
MD_REGISTER("losses", cls)
