/* torch.optim.Adam and torch.optim.AdamW (PyTorch 1.13): betas, eps, and
 * weight decay either added to the gradient (Adam, L2) or decoupled (AdamW:
 * the weights shrink by lr x weight_decay first, default 0.01); amsgrad is
 * refused. The update is the core's md_optimizer_adam_update, on the CPU
 * or a device; the two classes differ in that flag and the default decay. */
#include <stdlib.h>
#include <mmdet/mmdet.h>

typedef struct adam {
    md_optimizer_hparams base;   /* base.momentum: betas[0] */
    double beta2, eps;
    bool amsgrad;
} adam;

#define ADAM_KEYS(weight_decay_)                                                                         \
    MD_OPTIMIZER_KEYS(weight_decay_),                                                                    \
    { "betas", MD_KEY_LIST, "[0.9, 0.999]", "the moving averages' coefficients", false, .field = MD_FIELD_NONE }, \
    { "eps", MD_KEY_FLOAT, "1e-8", "added to the denominator", false, MD_AT(adam, eps), .min = "0" },       \
    { "amsgrad", MD_KEY_BOOL, "false", "not supported", false, MD_AT(adam, amsgrad) },                      \
    { 0 }

static const md_key adam_keys[] = { ADAM_KEYS("0") };
static const md_key adamw_keys[] = { ADAM_KEYS("0.01") };

static int update_adam(md_optimizer *o, const md_optimizer_hparams *hp, md_optimizer_param *ps, int n, md_error *err) {
    const adam *h = (const adam *)hp;
    return md_optimizer_adam_update(o, ps, n, h->base.momentum, h->beta2, h->eps, false, err);
}

static int update_adamw(md_optimizer *o, const md_optimizer_hparams *hp, md_optimizer_param *ps, int n,
                        md_error *err) {
    const adam *h = (const adam *)hp;
    return md_optimizer_adam_update(o, ps, n, h->base.momentum, h->beta2, h->eps, true, err);
}

static const md_optimizer_iface adam_iface = { .state_names = { "exp_avg", "exp_avg_sq" }, .update = update_adam };
static const md_optimizer_iface adamw_iface = { .state_names = { "exp_avg", "exp_avg_sq" }, .update = update_adamw };

static void *build(const md_optimizer_iface *iface, const md_key *keys, const md_cfg *cfg, md_error *err) {
    adam *h = (adam *)md_optimizer_hparams_new(sizeof *h, iface, cfg, keys, err);
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

static void *build_adam(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    return build(&adam_iface, adam_keys, cfg, err);
}

static void *build_adamw(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    return build(&adamw_iface, adamw_keys, cfg, err);
}

static const md_class adam_cls = { .name = "Adam", .keys = adam_keys, .build = build_adam,
                                   MD_IFACE(&adam_iface, MD_IFACE_OPTIMIZER),
                                   .doc = "Adam with L2 weight decay (torch.optim.Adam)" };
static const md_class adamw_cls = { .name = "AdamW", .keys = adamw_keys, .build = build_adamw,
                                    MD_IFACE(&adamw_iface, MD_IFACE_OPTIMIZER),
                                    .doc = "Adam with decoupled weight decay (torch.optim.AdamW)" };
MD_PLUGIN("adam", "1.0", "Apache-2.0");
MD_REGISTER("optimizers", adam_cls)
MD_REGISTER("optimizers", adamw_cls)
