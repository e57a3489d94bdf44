/* A third-party LR policy for the tests: "Linear" (lr_config policy
 * "linear"), from the initial lr straight down to end_ratio times it over
 * the run; warmup and by_epoch are the core's. */
#include <mmdet/mmdet.h>

typedef struct linear { md_lr_policy base; double end_ratio; } linear;

static const md_key keys[] = {
    MD_LR_POLICY_KEYS,
    { "end_ratio", MD_KEY_FLOAT, "0", "the last lr over the initial one", false, MD_AT(linear, end_ratio),
      .min = "0" },
    { 0 } };

static double get_lr(const md_lr_policy *p, double base_lr, const md_lr_progress *at) {
    double f = at->progress / at->max_progress;
    return base_lr * (1 - f + f * ((const linear *)p)->end_ratio);
}

static const md_lr_policy_iface iface = { .get_lr = get_lr };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    return md_lr_policy_new(sizeof(linear), &iface, cfg, keys, err);
}

static const md_class cls = { .name = "Linear", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_LR_POLICY),
                              .doc = "linear decay to end_ratio (tests)" };
MD_PLUGIN("linear_lr", "1.0", "Apache-2.0");
MD_REGISTER("lr_policies", cls)
