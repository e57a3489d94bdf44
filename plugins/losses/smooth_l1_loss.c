/* mmdet's SmoothL1Loss (mmdet/models/losses/smooth_l1_loss.py): 0.5 d^2 /
 * beta below beta, d - 0.5 beta above, d = |pred - target|. */
#include <mmdet/mmdet.h>

typedef struct smooth_l1_loss {
    md_loss base;
    double beta;
} smooth_l1_loss;

static const md_key keys[] = {
    { "beta", MD_KEY_FLOAT, "1.0", "where the quadratic part ends (> 0)", false, MD_AT(smooth_l1_loss, beta),
      .min = "0" },
    MD_LOSS_KEYS("1.0"),
    { 0 } };

/* The heads call this op the same way: the plugin must stay bit-identical. */
static md_tensor *forward(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target, md_tensor *weight,
                          double avg, int red) {
    const smooth_l1_loss *s = (const smooth_l1_loss *)l;
    return md_loss_scale(ctx, l, md_loss_smooth_l1(ctx, pred, target, weight, s->beta, md_loss_reduction(l, red),
                                                   avg));
}

static const md_loss_iface iface = { .forward = forward };

/* mmdet asserts beta > 0 at every call; here once, at build. */
static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    smooth_l1_loss *s = (smooth_l1_loss *)md_loss_new(sizeof *s, &iface, "SmoothL1Loss", cfg, keys, err);
    if (s && md_loss_need_positive(cfg, "beta", s->beta, "SmoothL1Loss", err)) {
        md_loss_free(&s->base);
        return NULL;
    }
    return s;
}

static const md_class cls = { .name = "SmoothL1Loss", .keys = keys, .build = build,
                              MD_IFACE(&iface, MD_IFACE_LOSS), .doc = "smooth L1 (Huber-like) regression loss" };
MD_PLUGIN("smooth_l1_loss", "1.0", "Apache-2.0");
MD_REGISTER("losses", cls)
