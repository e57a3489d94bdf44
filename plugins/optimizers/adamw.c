/* torch.optim.AdamW (PyTorch 1.13): betas, eps and decoupled weight decay
 * (the weights shrink by lr x weight_decay first, default 0.01); amsgrad
 * is refused. The update is the core's md_optimizer_adam_update, on the
 * CPU or a device. */
#include <stdlib.h>
#include <mmdet/mmdet.h>

typedef struct adamw {
    md_optimizer_hparams base;   /* base.momentum: betas[0] */
    double beta2, eps;
    bool amsgrad;
} adamw;

static const md_key keys[] = {
    MD_OPTIMIZER_KEYS("0.01"),
    { "betas", MD_KEY_LIST, "[0.9, 0.999]", "the moving averages' coefficients", false },
    { "eps", MD_KEY_FLOAT, "1e-8", "added to the denominator", false, MD_AT(adamw, eps), .min = "0" },
    { "amsgrad", MD_KEY_BOOL, "false", "not supported", false, MD_AT(adamw, amsgrad) },
    { 0 } };

static int update(md_optimizer *o, const md_optimizer_hparams *hp, md_optimizer_param *ps, int n, md_error *err) {
    const adamw *h = (const adamw *)hp;
    return md_optimizer_adam_update(o, ps, n, h->base.momentum, h->beta2, h->eps, true, err);
}

static const md_optimizer_iface iface = { .state_names = { "exp_avg", "exp_avg_sq" }, .update = update };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    adamw *h = (adamw *)md_optimizer_hparams_new(sizeof *h, &iface, cfg, keys, err);
    double betas[2];
    if (!h) return NULL;
    if (h->amsgrad || md_optimizer_read_betas(cfg, betas, err) != 0) {
        if (h->amsgrad) md_failc(err, MD_ERR_CONFIG, "amsgrad is not supported");
        free(h);
        return NULL;
    }
    h->base.momentum = betas[0];
    h->beta2 = betas[1];
    return h;
}

static const md_class cls = { .name = "AdamW", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_OPTIMIZER),
                              .doc = "Adam with decoupled weight decay (torch.optim.AdamW)" };
MD_PLUGIN("adamw", "1.0", "Apache-2.0");
MD_REGISTER("optimizers", cls)
