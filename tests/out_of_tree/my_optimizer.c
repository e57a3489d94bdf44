/* my_optimizer.c: a third-party optimizer (docs/plugins.md), built like
 * my_head.c. Lion (Chen et al. 2023, "Symbolic Discovery of Optimization
 * Algorithms"): the step is the sign of an interpolation of the moment and
 * the gradient, with decoupled weight decay:
 *     w -= lr * (sign(beta1 m + (1 - beta1) g) + weight_decay w)
 *     m  = beta2 m + (1 - beta2) g
 * The core keeps the parameter groups (paramwise_cfg, lr and momentum
 * schedules), gradient clipping and the state in checkpoints ("exp_avg"). */
#include <mmdet/mmdet.h>

typedef struct lion { md_optimizer_hparams base; double beta1, beta2; } lion;

static const md_key keys[] = {
    MD_OPTIMIZER_KEYS("0"),
    { "beta1", MD_KEY_FLOAT, "0.9", "interpolation of moment and gradient for the step", false, MD_AT(lion, beta1),
      .min = "0", .max = "1" },
    { "beta2", MD_KEY_FLOAT, "0.99", "decay of the moment", false, MD_AT(lion, beta2), .min = "0", .max = "1" },
    { 0 } };

static int update(md_optimizer *o, const md_optimizer_hparams *hp, md_optimizer_param *ps, int n, md_error *err) {
    const lion *h = (const lion *)hp;
    float b1 = (float)h->beta1, b2 = (float)h->beta2;
    for (int i = 0; i < n; i++) {
        md_tensor *p = ps[i].p;
        if (p->device != MD_CPU) return md_fail(err, "MyLion: %s is not on the CPU", ps[i].name);
        md_tensor *m = md_optimizer_state(o, &ps[i], 0, NULL, err);   /* zeros the first time */
        if (!m) return -1;
        float *w = md_f32(p), *g = md_f32(p->grad), *mv = md_f32(m);
        float lr = (float)ps[i].lr, wd = (float)ps[i].weight_decay;
        for (int64_t k = 0; k < md_tensor_numel(p); k++) {
            float c = b1 * mv[k] + (1 - b1) * g[k];
            w[k] -= lr * ((float)((c > 0) - (c < 0)) + wd * w[k]);
            mv[k] = b2 * mv[k] + (1 - b2) * g[k];
        }
    }
    return 0;
}

static const md_optimizer_iface iface = { .state_names = { "exp_avg" }, .update = update };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    return md_optimizer_hparams_new(sizeof(lion), &iface, cfg, keys, err);
}

static const md_class my_optimizer_class = { .name = "MyLion", .keys = keys, .build = build,
                                             MD_IFACE(&iface, MD_IFACE_OPTIMIZER),
                                             .doc = "the Lion optimizer (plugin guide example)" };
MD_PLUGIN("my_optimizer", "1.0", "MIT");
MD_REGISTER("optimizers", my_optimizer_class)
