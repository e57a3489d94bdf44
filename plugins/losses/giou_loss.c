/* mmdet's GIoULoss (mmdet/models/losses/iou_loss.py): 1 - GIoU of aligned
 * boxes pred, target [N, 4] (x1, y1, x2, y2), weight [N] or [N, 4] (mean
 * over the last dim); with a weight and none of it positive, mmdet's
 * (pred * weight).sum(). All inside md_loss_giou. */
#include <mmdet/mmdet.h>

typedef struct giou_loss {
    md_loss base;
    double eps;
} giou_loss;

static const md_key keys[] = {
    { "eps", MD_KEY_FLOAT, "1e-6", "floor of the union and enclosing areas (> 0)", false, MD_AT(giou_loss, eps),
      .min = "0" },
    MD_LOSS_KEYS("1.0"),
    { 0 } };

/* The heads call this op the same way: the plugin must stay bit-identical. */
static md_tensor *forward(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target, md_tensor *weight,
                          double avg, int red) {
    const giou_loss *g = (const giou_loss *)l;
    return md_loss_scale(ctx, l, md_loss_giou(ctx, pred, target, weight, g->eps, md_loss_reduction(l, red), avg));
}

static const md_loss_iface iface = { .forward = forward };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    giou_loss *g = (giou_loss *)md_loss_new(sizeof *g, &iface, "GIoULoss", cfg, keys, err);
    if (!g) return NULL;
    if (md_loss_need_positive(cfg, "eps", g->eps, "GIoULoss", err)) {
        md_loss_free(&g->base);
        return NULL;
    }
    g->base.flags = MD_LOSS_BOXES;
    return g;
}

static const md_class cls = { .name = "GIoULoss", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_LOSS),
                              .doc = "1 - generalised IoU of decoded boxes" };
MD_PLUGIN("giou_loss", "1.0", "Apache-2.0");
MD_REGISTER("losses", cls)
