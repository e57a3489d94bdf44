/* LR updater hooks: mmcv's <Policy>LrUpdaterHook, one plugin for every
 * policy (the formulas live in the core: md_lr_schedule). */
#include <stdlib.h>
#include <mmdet/mmdet.h>

typedef struct lr_hook { md_hook base; md_lr_schedule s; } lr_hook;

static void apply(md_runner *r, const md_lr_schedule *s) {
    md_optimizer *o = md_runner_optimizer(r);
    for (int i = 0; i < md_optimizer_group_count(o); i++)
        md_optimizer_set_group_lr(o, i, md_lr_schedule_at(s, md_optimizer_group_initial_lr(o, i), md_runner_epoch(r),
                                                          md_runner_iter(r), md_runner_epoch_len(r),
                                                          md_runner_max_epochs(r), md_runner_max_iters(r)));
}

static int before_train_epoch(md_hook *h, md_runner *r, md_error *err) {
    (void)err;
    apply(r, &((lr_hook *)h)->s);
    return 0;
}

static int before_train_iter(md_hook *h, md_runner *r, md_error *err) {
    (void)err;
    apply(r, &((lr_hook *)h)->s);
    return 0;
}

/* Cyclic and OneCycle need the run's length, known once the runner starts. */
static int before_run(md_hook *h, md_runner *r, md_error *err) {
    const md_lr_schedule *s = &((lr_hook *)h)->s;
    int64_t max_iters = md_runner_max_iters(r);
    if (s->policy == MD_LR_CYCLIC && max_iters < s->cyclic_times)
        return md_failc(err, MD_ERR_CONFIG, "CyclicLrUpdaterHook: %lld iterations cannot hold cyclic_times = %lld cycles",
                        (long long)max_iters, (long long)s->cyclic_times);
    if (s->policy == MD_LR_ONECYCLE && s->total_steps > 0 && s->total_steps < max_iters)
        return md_failc(err, MD_ERR_CONFIG,
                        "OneCycleLrUpdaterHook: total_steps (%lld) must be at least the runner's max iterations (%lld)",
                        (long long)s->total_steps, (long long)max_iters);
    return 0;
}

static const md_hook_iface lr_iface = {
    .before_run = before_run,
    .before_train_epoch = before_train_epoch,
    .before_train_iter = before_train_iter,
    .default_priority = MD_PRIORITY_VERY_HIGH,
};

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    lr_hook *h = calloc(1, sizeof *h);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    h->base.iface = &lr_iface;
    if (md_lr_schedule_parse(cfg, &h->s, err) != 0) {
        free(h);
        return NULL;
    }
    return h;
}

MD_PLUGIN("lr_updater", "1.0", "Apache-2.0");
#define LR_HOOK(var, type_name)                                                                   \
    static const md_class var = { .name = type_name, .build = build, MD_IFACE(&lr_iface, MD_IFACE_HOOK),        \
                                  .doc = "mmcv " type_name " (lr_config)" };                    \
    MD_REGISTER("hooks", var)
LR_HOOK(fixed_cls, "FixedLrUpdaterHook")
LR_HOOK(step_cls, "StepLrUpdaterHook")
LR_HOOK(exp_cls, "ExpLrUpdaterHook")
LR_HOOK(poly_cls, "PolyLrUpdaterHook")
LR_HOOK(inv_cls, "InvLrUpdaterHook")
LR_HOOK(cos_cls, "CosineAnnealingLrUpdaterHook")
LR_HOOK(cyclic_cls, "CyclicLrUpdaterHook")
LR_HOOK(onecycle_cls, "OneCycleLrUpdaterHook")
