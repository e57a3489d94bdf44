/* mmcv's LrUpdaterHook: lr_config's policy, a class of the "lr_policies"
 * registry (the core's eight or a plugin's), with the keys every policy
 * shares (warmup, by_epoch), read and applied by the core (md_lr_updater).
 * The hook names itself after its policy as mmcv's classes are named:
 * policy "step" -> StepLrUpdaterHook. */
#include <stdlib.h>
#include <mmdet/mmdet.h>

typedef struct lr_hook { md_hook base; md_lr_updater *u; } lr_hook;

static void apply(md_runner *r, const md_lr_updater *u) {
    md_optimizer *o = md_runner_optimizer(r);
    for (int i = 0; i < md_optimizer_group_count(o); i++)
        md_optimizer_set_group_lr(o, i, md_lr_updater_at(u, md_optimizer_group_initial_lr(o, i), md_runner_epoch(r),
                                                         md_runner_iter(r), md_runner_epoch_len(r),
                                                         md_runner_max_epochs(r), md_runner_max_iters(r)));
}

static int before_train_epoch(md_hook *h, md_runner *r, md_error *err) {
    (void)err;
    apply(r, ((lr_hook *)h)->u);
    return 0;
}

static int before_train_iter(md_hook *h, md_runner *r, md_error *err) {
    (void)err;
    apply(r, ((lr_hook *)h)->u);
    return 0;
}

/* Some policies need the run's length, known once the runner starts. */
static int before_run(md_hook *h, md_runner *r, md_error *err) {
    return md_lr_updater_check_run(((lr_hook *)h)->u, md_runner_max_epochs(r), md_runner_max_iters(r), err);
}

static void destroy(md_hook *h) {
    md_lr_updater_free(((lr_hook *)h)->u);
    free(h);
}

static const md_hook_iface lr_iface = {
    .before_run = before_run,
    .before_train_epoch = before_train_epoch,
    .before_train_iter = before_train_iter,
    .destroy = destroy,
    .default_priority = MD_PRIORITY_VERY_HIGH,
};

/* The keys are the policy's schema's (MD_LR_POLICY_KEYS and its own),
 * checked when the policy is built. */
static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    lr_hook *h = calloc(1, sizeof *h);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    h->base.iface = &lr_iface;
    if (!(h->u = md_lr_updater_build(ctx, cfg, err))) {
        free(h);
        return NULL;
    }
    snprintf(h->base.type, sizeof h->base.type, "%sLrUpdaterHook", md_lr_updater_policy(h->u)->type);
    return h;
}

static const md_class lr_cls = { .name = "LrUpdaterHook", .build = build, MD_IFACE(&lr_iface, MD_IFACE_HOOK),
                                 .doc = "mmcv's LrUpdaterHook (lr_config; its policy from lr_policies)" };
MD_PLUGIN("lr_updater", "1.0", "Apache-2.0");
MD_REGISTER("hooks", lr_cls)
