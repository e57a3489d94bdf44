/* mmdet's FocalLoss (mmdet/models/losses/focal_loss.py): the sigmoid focal
 * loss of logits [N, C] against labels [N] in [0, C] (C: background, a row
 * of negatives), mmcv's sigmoid_focal_loss. Only the sigmoid form on logits
 * exists, as in mmdet (use_sigmoid must be true, activated false). */
#include <mmdet/mmdet.h>

typedef struct focal_loss {
    md_loss base;
    bool use_sigmoid, activated;
    double gamma, alpha;
} focal_loss;

static const md_key keys[] = {
    { "use_sigmoid", MD_KEY_BOOL, "true", "sigmoid per class (the only form mmdet has)", false,
      MD_AT(focal_loss, use_sigmoid) },
    { "gamma", MD_KEY_FLOAT, "2.0", "focusing exponent of (1 - p_t)", false, MD_AT(focal_loss, gamma), .min = "0" },
    { "alpha", MD_KEY_FLOAT, "0.25", "weight of the positives (1 - alpha: negatives)", false,
      MD_AT(focal_loss, alpha), .min = "0", .max = "1" },
    MD_LOSS_KEYS("1.0"),
    { "activated", MD_KEY_BOOL, "false", "pred holds probabilities (not supported: logits only)", false,
      MD_AT(focal_loss, activated) },
    { 0 } };

/* The heads call this op the same way: the plugin must stay bit-identical. */
static md_tensor *forward(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target, md_tensor *weight,
                          double avg, int red) {
    const focal_loss *f = (const focal_loss *)l;
    return md_loss_scale(ctx, l, md_loss_sigmoid_focal(ctx, pred, target, weight, f->gamma, f->alpha,
                                                       md_loss_reduction(l, red), avg));
}

static const md_loss_iface iface = { .forward = forward };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    focal_loss *f = (focal_loss *)md_loss_new(sizeof *f, &iface, "FocalLoss", cfg, keys, err);
    if (!f) return NULL;
    if (!f->use_sigmoid || f->activated) {
        md_failc(err, MD_ERR_CONFIG, "%s", !f->use_sigmoid
                     ? "use_sigmoid = false: only the sigmoid focal loss is supported (as in mmdet)"
                     : "activated = true (probabilities as pred) is not supported: pred must be logits");
        md_loss_free(&f->base);
        return NULL;
    }
    f->base.flags = MD_LOSS_SIGMOID;
    return f;
}

static const md_class cls = { .name = "FocalLoss", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_LOSS),
                              .doc = "sigmoid focal loss over labels with a background index" };
MD_PLUGIN("focal_loss", "1.0", "Apache-2.0");
MD_REGISTER("losses", cls)
