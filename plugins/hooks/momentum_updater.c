/* Momentum updater hooks: mmcv's <Policy>MomentumUpdaterHook (momentum_config),
 * moving SGD's momentum or Adam's beta1 every iteration. The formulas live in
 * the core (md_momentum_schedule). */
#include <stdlib.h>
#include <mmdet/mmdet.h>

typedef struct mom_hook {
    md_hook base;
    md_momentum_schedule s;
    double base_momentum;   /* the optimizer's momentum when the run starts */
} mom_hook;

static void apply(md_runner *r, mom_hook *h) {
    md_optimizer_set_momentum(md_runner_optimizer(r),
                              md_momentum_schedule_at(&h->s, h->base_momentum, md_runner_epoch(r), md_runner_iter(r),
                                                      md_runner_max_epochs(r), md_runner_max_iters(r)));
}

static int before_run(md_hook *hk, md_runner *r, md_error *err) {
    mom_hook *h = (mom_hook *)hk;
    md_optimizer *o = md_runner_optimizer(r);
    if (!o) return md_fail(err, "%s: the runner has no optimizer", hk->type);
    h->base_momentum = md_optimizer_momentum(o);
    if (h->s.policy == MD_MOM_CYCLIC && md_runner_max_iters(r) < h->s.cyclic_times)
        return md_failc(err, MD_ERR_CONFIG, "%s: %lld iterations cannot hold cyclic_times = %lld cycles", hk->type,
                        (long long)md_runner_max_iters(r), (long long)h->s.cyclic_times);
    /* mmcv's OneCycle starts the optimizer at max_momentum */
    if (h->s.policy == MD_MOM_ONECYCLE) md_optimizer_set_momentum(o, h->s.max_momentum);
    return 0;
}

static int before_train_epoch(md_hook *h, md_runner *r, md_error *err) {
    (void)err;
    if (((mom_hook *)h)->s.by_epoch) apply(r, (mom_hook *)h);
    return 0;
}

static int before_train_iter(md_hook *h, md_runner *r, md_error *err) {
    (void)err;
    apply(r, (mom_hook *)h);
    return 0;
}

static const md_hook_iface mom_iface = {
    .before_run = before_run,
    .before_train_epoch = before_train_epoch,
    .before_train_iter = before_train_iter,
    .default_priority = MD_PRIORITY_HIGH,
};

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    mom_hook *h = calloc(1, sizeof *h);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    h->base.iface = &mom_iface;
    if (md_momentum_schedule_parse(cfg, &h->s, err) != 0) {
        free(h);
        return NULL;
    }
    return h;
}

MD_PLUGIN("momentum_updater", "1.0", "Apache-2.0");
#define MOM_HOOK(var, type_name)                                                                  \
    static const md_class var = { .name = type_name, .build = build, MD_IFACE(&mom_iface, MD_IFACE_HOOK),       \
                                  .doc = "mmcv " type_name " (momentum_config)" };              \
    MD_REGISTER("hooks", var)
MOM_HOOK(step_cls, "StepMomentumUpdaterHook")
MOM_HOOK(cos_cls, "CosineAnnealingMomentumUpdaterHook")
MOM_HOOK(cyclic_cls, "CyclicMomentumUpdaterHook")
MOM_HOOK(onecycle_cls, "OneCycleMomentumUpdaterHook")
