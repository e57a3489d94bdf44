/* A third-party optimizer for the tests: SignSGD with momentum (signum).
 * m = momentum m + (1 - momentum) g, from zeros (state "sign_momentum"),
 * then w -= lr (sign(m) + weight_decay w). CPU only. */
#include <mmdet/mmdet.h>

typedef struct sign_sgd { md_optimizer_hparams base; } sign_sgd;

static const md_key keys[] = {
    MD_OPTIMIZER_KEYS("0"),
    { "momentum", MD_KEY_FLOAT, "0", "averaging of the gradients whose sign is taken", false,
      MD_AT(sign_sgd, base.momentum), .min = "0", .max = "1" },
    { 0 } };

static int update(md_optimizer *o, const md_optimizer_hparams *hp, md_optimizer_param *ps, int n, md_error *err) {
    float beta = (float)hp->momentum;
    for (int i = 0; i < n; i++) {
        md_tensor *p = ps[i].p;
        if (p->device != MD_CPU) return md_fail(err, "SignSGD: %s is not on the CPU", ps[i].name);
        md_tensor *m = md_optimizer_state(o, &ps[i], 0, NULL, err);
        if (!m) return -1;
        float *w = md_f32(p), *g = md_f32(p->grad), *mv = md_f32(m);
        float lr = (float)ps[i].lr, wd = (float)ps[i].weight_decay;
        for (int64_t k = 0; k < md_tensor_numel(p); k++) {
            mv[k] = beta * mv[k] + (1 - beta) * g[k];
            float s = (float)((mv[k] > 0) - (mv[k] < 0));
            w[k] -= lr * (s + wd * w[k]);
        }
    }
    return 0;
}

static const md_optimizer_iface iface = { .state_names = { "sign_momentum" }, .update = update };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    return md_optimizer_hparams_new(sizeof(sign_sgd), &iface, cfg, keys, err);
}

static const md_class cls = { .name = "SignSGD", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_OPTIMIZER),
                              .doc = "sign of the averaged gradient (tests)" };
MD_PLUGIN("sign_sgd", "1.0", "Apache-2.0");
MD_REGISTER("optimizers", cls)
