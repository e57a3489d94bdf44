/* mmdet's DIoULoss (mmdet/models/losses/iou_loss.py, diou_loss): 1 - IoU +
 * (squared distance of the centres) / (squared diagonal of the enclosing
 * box), for aligned boxes pred, target [N, 4] (x1, y1, x2, y2). Composed of
 * differentiable ops, so autograd gives the backward. Weight [N] or [N, 4]
 * (mean over the last dim); with a weight and none of it positive, mmdet's
 * (pred * weight).sum(). */
#include <mmdet/mmdet.h>

typedef struct diou_loss {
    md_loss base;
    double eps;
} diou_loss;

static const md_key keys[] = {
    { "eps", MD_KEY_FLOAT, "1e-6", "added to the union and the squared diagonal (> 0)", false,
      MD_AT(diou_loss, eps), .min = "0" },
    MD_LOSS_KEYS("1.0"),
    { 0 } };

static md_tensor *forward(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target, md_tensor *weight,
                          double avg, int reduction) {
    const diou_loss *d = (const diou_loss *)l;
    if (!pred || !target) return NULL;
    if (!md_loss_boxes_ok(ctx, "DIoULoss", pred, target)) return NULL;
    md_tensor *w, *zero;
    if (md_loss_box_weight(ctx, "DIoULoss", pred, weight, true, &w, &zero)) return zero;
    md_tensor *ious, *rho2, *c2;
    if (!md_loss_diou_terms(ctx, pred, target, d->eps, &ious, &rho2, &c2)) return NULL;
    md_tensor *dious = md_sub(ctx, ious, md_div(ctx, rho2, c2));
    md_tensor *loss = md_add_scalar(ctx, md_neg(ctx, dious), 1.0);
    return md_loss_scale(ctx, l, md_weight_reduce_loss(ctx, loss, w, md_loss_reduction(l, reduction), avg));
}

static const md_loss_iface iface = { .forward = forward };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    diou_loss *d = (diou_loss *)md_loss_new(sizeof *d, &iface, "DIoULoss", cfg, keys, err);
    if (!d) return NULL;
    if (md_loss_need_positive(cfg, "eps", d->eps, "DIoULoss", err)) {
        md_loss_free(&d->base);
        return NULL;
    }
    d->base.flags = MD_LOSS_BOXES;
    return d;
}

static const md_class cls = { .name = "DIoULoss", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_LOSS),
                              .doc = "distance-IoU loss of decoded boxes" };
MD_PLUGIN("diou_loss", "1.0", "Apache-2.0");
MD_REGISTER("losses", cls)
