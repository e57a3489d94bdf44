/* my_loss.c: a third-party loss (docs/plugins.md), built like my_head.c.
 * MSELoss as mmdet's (mse_loss.py): (pred - target)^2 per element, times
 * weight, reduced (mean, sum, none; a mean over avg_factor when given),
 * times loss_weight. The schema fills md_loss (loss_weight, reduction);
 * autograd gives the backward, since forward composes core ops. */
#include <mmdet/mmdet.h>

static const md_key keys[] = { MD_LOSS_KEYS("1.0"), { 0 } };

static md_tensor *forward(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target, md_tensor *weight,
                          double avg_factor, int reduction) {
    md_tensor *d = md_sub(ctx, pred, target);
    return md_loss_scale(ctx, l, md_weight_reduce_loss(ctx, md_mul(ctx, d, d), weight,
                                                       md_loss_reduction(l, reduction), avg_factor));
}

static const md_loss_iface iface = { .forward = forward };
typedef struct my_loss { md_loss base; } my_loss;
MD_LOSS_CLASS(my_loss_class, "MyMSELoss", my_loss, keys, iface, "squared error (plugin guide example)");

MD_PLUGIN("my_loss", "1.0", "MIT");
MD_REGISTER("losses", my_loss_class)
