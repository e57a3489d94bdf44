/* mmdet's BalancedL1Loss (mmdet/models/losses/balanced_l1_loss.py, Libra
 * R-CNN): with d = |pred - target| and b = e^(gamma / alpha) - 1,
 *   d < beta:  alpha / b (b d + 1) log(b d / beta + 1) - alpha d
 *   else:      gamma d + gamma / b - alpha beta
 * element-wise (pred, target f32 of one shape, weight broadcast to it).
 * Composed of differentiable ops, so autograd gives the backward. */
#include <math.h>
#include <mmdet/mmdet.h>

typedef struct balanced_l1_loss {
    md_loss base;
    double alpha, gamma, beta;
} balanced_l1_loss;

static const md_key keys[] = {
    { "alpha", MD_KEY_FLOAT, "0.5", "the denominator alpha (> 0)", false, MD_AT(balanced_l1_loss, alpha), .min = "0" },
    { "gamma", MD_KEY_FLOAT, "1.5", "the slope gamma of the linear part", false, MD_AT(balanced_l1_loss, gamma) },
    { "beta", MD_KEY_FLOAT, "1.0", "where the logarithmic part ends (> 0)", false, MD_AT(balanced_l1_loss, beta),
      .min = "0" },
    MD_LOSS_KEYS("1.0"),
    { 0 } };

static md_tensor *forward(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target, md_tensor *weight,
                          double avg, int reduction) {
    const balanced_l1_loss *c = (const balanced_l1_loss *)l;
    if (!pred || !target) return NULL;
    md_reduction red = md_loss_reduction(l, reduction);
    /* mmdet: an empty target gives pred.sum() * 0, a zero on the graph */
    if (md_tensor_numel(target) == 0)
        return md_loss_scale(ctx, l, md_mul_scalar(ctx, md_sum(ctx, pred, MD_DIM_ALL, false), 0.0));
    if (pred->dtype != MD_F32 || target->dtype != MD_F32 || !md_tensor_same_shape(pred, target)) {
        char sp[96], st[96];
        return md_op_fail(ctx, "BalancedL1Loss", "pred and target must be f32 of the same shape, got %s and %s",
                          md_tensor_describe(pred, sp, sizeof sp), md_tensor_describe(target, st, sizeof st));
    }
    double a = c->alpha, g = c->gamma, beta = c->beta, b = exp(g / a) - 1.0;
    md_tensor *diff = md_abs(ctx, md_sub(ctx, pred, target));
    md_tensor *bd = md_mul_scalar(ctx, diff, b);
    md_tensor *inner = md_sub(ctx, md_mul(ctx, md_mul_scalar(ctx, md_add_scalar(ctx, bd, 1.0), a / b),
                                          md_log(ctx, md_add_scalar(ctx, md_mul_scalar(ctx, bd, 1.0 / beta), 1.0))),
                              md_mul_scalar(ctx, diff, a));
    md_tensor *outer = md_add_scalar(ctx, md_add_scalar(ctx, md_mul_scalar(ctx, diff, g), g / b), -(a * beta));
    md_tensor *loss = md_where(ctx, md_lt_scalar(ctx, diff, beta), inner, outer);
    return md_loss_scale(ctx, l, md_weight_reduce_loss(ctx, loss, weight, red, avg));
}

static const md_loss_iface iface = { .forward = forward };

/* mmdet asserts beta > 0 at every call, and alpha divides gamma: both
 * checked once, at build. */
static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    balanced_l1_loss *c = (balanced_l1_loss *)md_loss_new(sizeof *c, &iface, "BalancedL1Loss", cfg, keys, err);
    if (c && (md_loss_need_positive(cfg, "alpha", c->alpha, "BalancedL1Loss", err) ||
              md_loss_need_positive(cfg, "beta", c->beta, "BalancedL1Loss", err))) {
        md_loss_free(&c->base);
        return NULL;
    }
    return c;
}

static const md_class cls = { .name = "BalancedL1Loss", .keys = keys, .build = build,
                              MD_IFACE(&iface, MD_IFACE_LOSS), .doc = "balanced L1 loss (Libra R-CNN)" };
MD_PLUGIN("balanced_l1_loss", "1.0", "Apache-2.0");
MD_REGISTER("losses", cls)
