/* torch.optim.Adam (PyTorch 1.13): betas, eps and L2 weight decay added to
 * the gradient; amsgrad is refused. The update is the core's
 * md_optimizer_adam_update, on the CPU or a device. */
#include <stdlib.h>
#include <mmdet/mmdet.h>

typedef struct adam {
    md_optimizer_hparams base;   /* base.momentum: betas[0] */
    double beta2, eps;
    bool amsgrad;
} adam;

static const md_key keys[] = {
    MD_OPTIMIZER_KEYS("0"),
    { "betas", MD_KEY_LIST, "[0.9, 0.999]", "the moving averages' coefficients", false },
    { "eps", MD_KEY_FLOAT, "1e-8", "added to the denominator", false, MD_AT(adam, eps), .min = "0" },
    { "amsgrad", MD_KEY_BOOL, "false", "not supported", false, MD_AT(adam, amsgrad) },
    { 0 } };

static int update(md_optimizer *o, const md_optimizer_hparams *hp, md_optimizer_param *ps, int n, md_error *err) {
    const adam *h = (const adam *)hp;
    return md_optimizer_adam_update(o, ps, n, h->base.momentum, h->beta2, h->eps, false, err);
}

static const md_optimizer_iface iface = { .state_names = { "exp_avg", "exp_avg_sq" }, .update = update };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    adam *h = (adam *)md_optimizer_hparams_new(sizeof *h, &iface, cfg, keys, err);
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

static const md_class cls = { .name = "Adam", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_OPTIMIZER),
                              .doc = "Adam with L2 weight decay (torch.optim.Adam)" };
MD_PLUGIN("adam", "1.0", "Apache-2.0");
MD_REGISTER("optimizers", cls)
