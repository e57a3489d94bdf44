/* mmdet's IoULoss (mmdet/models/losses/iou_loss.py): the IoU of aligned
 * boxes pred, target [N, 4] (x1, y1, x2, y2), floored at eps, as -log(iou),
 * 1 - iou or 1 - iou^2 (mode; the deprecated linear = true means "linear"),
 * then weighted and reduced. Weight [N] or [N, 4] (mean over the last dim);
 * with a weight and none of it positive (reduction other than none),
 * mmdet's (pred * weight).sum(). */
#include <math.h>
#include <mmdet/mmdet.h>

enum { MODE_LOG, MODE_LINEAR, MODE_SQUARE };   /* the order of the choices below */

typedef struct iou_loss {
    md_loss base;
    bool linear;
    double eps;
    int mode;
} iou_loss;

static const md_key keys[] = {
    { "linear", MD_KEY_BOOL, "false", "deprecated: true means mode = \"linear\"", false, MD_AT(iou_loss, linear) },
    { "eps", MD_KEY_FLOAT, "1e-6", "floor of the IoU before the log (> 0)", false, MD_AT(iou_loss, eps), .min = "0" },
    MD_LOSS_KEYS("1.0"),
    { "mode", MD_KEY_STRING, "\"log\"", "log: -log(iou), linear: 1 - iou, square: 1 - iou^2", false,
      MD_CHOICE_AT(iou_loss, mode, "log|linear|square") },
    { 0 } };

static md_tensor *forward(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target, md_tensor *weight,
                          double avg, int reduction) {
    const iou_loss *c = (const iou_loss *)l;
    if (!pred || !target) return NULL;
    if (!md_loss_boxes_ok(ctx, "IoULoss", pred, target)) return NULL;
    md_reduction red = md_loss_reduction(l, reduction);
    md_tensor *w, *zero;
    if (md_loss_box_weight(ctx, "IoULoss", pred, weight, red != MD_REDUCE_NONE, &w, &zero)) return zero;
    /* bbox_overlaps keeps its own eps (1e-6) for the union; the loss's eps
     * floors the IoU */
    md_tensor *iou = md_clamp(ctx, md_bbox_overlaps(ctx, pred, target, MD_IOU, true, 1e-6), c->eps, INFINITY);
    md_tensor *loss = c->mode == MODE_LOG      ? md_neg(ctx, md_log(ctx, iou))
                      : c->mode == MODE_LINEAR ? md_add_scalar(ctx, md_neg(ctx, iou), 1.0)
                                               : md_add_scalar(ctx, md_neg(ctx, md_mul(ctx, iou, iou)), 1.0);
    return md_loss_scale(ctx, l, md_weight_reduce_loss(ctx, loss, w, red, avg));
}

static const md_loss_iface iface = { .forward = forward };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    iou_loss *c = (iou_loss *)md_loss_new(sizeof *c, &iface, "IoULoss", cfg, keys, err);
    if (!c) return NULL;
    if (md_loss_need_positive(cfg, "eps", c->eps, "IoULoss", err)) {
        md_loss_free(&c->base);
        return NULL;
    }
    if (c->linear) {
        md_warn(ctx, "IoULoss: linear = true is deprecated, use mode = \"linear\"");
        c->mode = MODE_LINEAR;
    }
    c->base.flags = MD_LOSS_BOXES;
    return c;
}

static const md_class cls = { .name = "IoULoss", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_LOSS),
                              .doc = "-log(IoU), 1 - IoU or 1 - IoU^2 of decoded boxes" };
MD_PLUGIN("iou_loss", "1.0", "Apache-2.0");
MD_REGISTER("losses", cls)
