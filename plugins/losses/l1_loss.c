/* mmdet's L1Loss (mmdet/models/losses/smooth_l1_loss.py): |pred - target|
 * element-wise, pred and target f32 of one shape, weight broadcast to it. */
#include <mmdet/mmdet.h>

typedef struct l1_loss { md_loss base; } l1_loss;

static const md_key keys[] = { MD_LOSS_KEYS("1.0"), { 0 } };

/* The heads call this op the same way: the plugin must stay bit-identical. */
static md_tensor *forward(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target, md_tensor *weight,
                          double avg, int red) {
    return md_loss_scale(ctx, l, md_loss_l1(ctx, pred, target, weight, md_loss_reduction(l, red), avg));
}

static const md_loss_iface iface = { .forward = forward };
MD_LOSS_CLASS(cls, "L1Loss", l1_loss, keys, iface, "mean absolute error");
MD_PLUGIN("l1_loss", "1.0", "Apache-2.0");
MD_REGISTER("losses", cls)
