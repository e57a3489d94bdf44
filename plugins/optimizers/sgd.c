/* torch.optim.SGD (PyTorch 1.13), mmcv's default optimizer: momentum,
 * dampening, nesterov and L2 weight decay. The update is the core's
 * md_optimizer_sgd_update, on the CPU or a device. */
#include <stdlib.h>
#include <mmdet/mmdet.h>

typedef struct sgd {
    md_optimizer_hparams base;   /* base.momentum: `momentum` */
    double dampening;
    bool nesterov;
} sgd;

static const md_key keys[] = {
    MD_OPTIMIZER_KEYS("0"),
    { "momentum", MD_KEY_FLOAT, "0", "momentum factor", false, MD_AT(sgd, base.momentum), .min = "0" },
    { "dampening", MD_KEY_FLOAT, "0", "dampening of the momentum", false, MD_AT(sgd, dampening) },
    { "nesterov", MD_KEY_BOOL, "false", "Nesterov momentum", false, MD_AT(sgd, nesterov) },
    { 0 } };

static int update(md_optimizer *o, const md_optimizer_hparams *hp, md_optimizer_param *ps, int n, md_error *err) {
    const sgd *h = (const sgd *)hp;
    return md_optimizer_sgd_update(o, ps, n, h->base.momentum, h->dampening, h->nesterov, err);
}

static const md_optimizer_iface iface = { .state_names = { "momentum_buffer" }, .update = update };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    sgd *h = (sgd *)md_optimizer_hparams_new(sizeof *h, &iface, cfg, keys, err);
    if (h && h->nesterov && (h->base.momentum <= 0 || h->dampening != 0)) {
        md_failc(err, MD_ERR_CONFIG, "nesterov needs momentum > 0 and dampening 0");
        free(h);
        return NULL;
    }
    return h;
}

static const md_class cls = { .name = "SGD", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_OPTIMIZER),
                              .doc = "stochastic gradient descent with momentum (torch.optim.SGD)" };
MD_PLUGIN("sgd", "1.0", "Apache-2.0");
MD_REGISTER("optimizers", cls)
