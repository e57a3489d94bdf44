/* Test-only losses for the AnchorFreeHead tests, under names of their own so
 * they never meet the real loss plugins: TestFocalLoss (mmdet's FocalLoss,
 * sigmoid), TestIoULoss (mmdet's IoULoss on boxes: -log(IoU) or 1 - IoU)
 * and TestSigmoidBCELoss (mmdet's CrossEntropyLoss with use_sigmoid on
 * float targets, FCOS's centerness loss). */
#include <math.h>
#include <string.h>
#include <mmdet/losses.h>
#include <mmdet/mmdet.h>

typedef struct focal { md_loss base; bool use_sigmoid; double gamma, alpha; } focal;
static const md_key focal_keys[] = {
    MD_LOSS_KEYS("1.0"),
    { "use_sigmoid", MD_KEY_BOOL, "true", "only true", false, MD_AT(focal, use_sigmoid) },
    { "gamma", MD_KEY_FLOAT, "2.0", "focusing parameter", false, MD_AT(focal, gamma) },
    { "alpha", MD_KEY_FLOAT, "0.25", "positive weight", false, MD_AT(focal, alpha) },
    { 0 } };
static md_tensor *focal_forward(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target, md_tensor *weight,
                                double avg, int red) {
    const focal *f = (const focal *)l;
    return md_loss_scale(ctx, l, md_loss_sigmoid_focal(ctx, pred, target, weight, f->gamma, f->alpha,
                                                       md_loss_reduction(l, red), avg));
}
static const md_loss_iface focal_iface = { .forward = focal_forward };
static void *focal_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    md_loss *l = md_loss_new(sizeof(focal), &focal_iface, "TestFocalLoss", cfg, focal_keys, err);
    if (l) l->flags |= MD_LOSS_SIGMOID;
    return l;
}
static const md_class focal_class = { .name = "TestFocalLoss", .keys = focal_keys, .build = focal_build,
                                      MD_IFACE(&focal_iface, MD_IFACE_LOSS), .doc = "test-only sigmoid focal loss" };

typedef struct iou { md_loss base; int mode; double eps; } iou;
static const md_key iou_keys[] = {
    MD_LOSS_KEYS("1.0"),
    { "mode", MD_KEY_STRING, "\"log\"", "log: -log(IoU); linear: 1 - IoU", false, MD_CHOICE_AT(iou, mode, "log|linear") },
    { "eps", MD_KEY_FLOAT, "1e-6", "IoU floor", false, MD_AT(iou, eps) },
    { 0 } };
static md_tensor *iou_forward(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target, md_tensor *weight,
                              double avg, int red) {
    const iou *c = (const iou *)l;
    md_tensor *v = md_clamp(ctx, md_bbox_overlaps(ctx, pred, target, MD_IOU, true, 1e-6), c->eps, INFINITY);
    md_tensor *loss = c->mode == 0 ? md_neg(ctx, md_log(ctx, v)) : md_add_scalar(ctx, md_neg(ctx, v), 1.0);
    /* mmdet: a per-coordinate weight is averaged over the box */
    if (weight && weight->ndim > 1) weight = md_mean(ctx, weight, -1, false);
    return md_loss_scale(ctx, l, md_weight_reduce_loss(ctx, loss, weight, md_loss_reduction(l, red), avg));
}
static const md_loss_iface iou_iface = { .forward = iou_forward };
static void *iou_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    md_loss *l = md_loss_new(sizeof(iou), &iou_iface, "TestIoULoss", cfg, iou_keys, err);
    if (l) l->flags |= MD_LOSS_BOXES;
    return l;
}
static const md_class iou_class = { .name = "TestIoULoss", .keys = iou_keys, .build = iou_build,
                                    MD_IFACE(&iou_iface, MD_IFACE_LOSS), .doc = "test-only IoU loss on boxes" };

typedef struct bce { md_loss base; bool use_sigmoid; } bce;
static const md_key bce_keys[] = {
    MD_LOSS_KEYS("1.0"),
    { "use_sigmoid", MD_KEY_BOOL, "true", "only true", false, MD_AT(bce, use_sigmoid) },
    { 0 } };
static md_tensor *bce_forward(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target, md_tensor *weight,
                              double avg, int red) {
    return md_loss_scale(ctx, l, md_loss_bce_with_logits(ctx, pred, target, weight, md_loss_reduction(l, red), avg));
}
static const md_loss_iface bce_iface = { .forward = bce_forward };
static void *bce_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    md_loss *l = md_loss_new(sizeof(bce), &bce_iface, "TestSigmoidBCELoss", cfg, bce_keys, err);
    if (l) l->flags |= MD_LOSS_SIGMOID;
    return l;
}
static const md_class bce_class = { .name = "TestSigmoidBCELoss", .keys = bce_keys, .build = bce_build,
                                    MD_IFACE(&bce_iface, MD_IFACE_LOSS), .doc = "test-only sigmoid BCE on float targets" };

MD_PLUGIN("afh_test_losses", "1.0", "Apache-2.0");
MD_REGISTER("losses", focal_class)
MD_REGISTER("losses", iou_class)
MD_REGISTER("losses", bce_class)
