/* OptimizerHook (backward, grad clip, step) and
 * GradientCumulativeOptimizerHook (step every N iterations). A loss that is
 * not finite stops training before it can touch the weights. */
#include <math.h>
#include <stdlib.h>
#include <mmdet/mmdet.h>

typedef struct opt_hook {
    md_hook base;
    const md_cfg *grad_clip;
    double max_norm, norm_type;   /* max_norm <= 0: no clipping */
    int64_t cumulative;
} opt_hook;

static const md_key keys[] = {
    { "grad_clip", MD_KEY_ANY, NULL, "None, or {max_norm, norm_type}", false, MD_AT(opt_hook, grad_clip) },
    { "cumulative_iters", MD_KEY_INT, "1", "GradientCumulativeOptimizerHook: iterations per step", false,
      MD_AT(opt_hook, cumulative), .min = "1" },
    { "detect_anomalous_params", MD_KEY_BOOL, "false", "accepted for mmcv compatibility", false },
    { 0 } };

static int after_train_iter(md_hook *hk, md_runner *r, md_error *err) {
    opt_hook *h = (opt_hook *)hk;
    md_ctx *ctx = md_runner_ctx(r);
    md_optimizer *o = md_runner_optimizer(r);
    md_tensor *loss = md_runner_loss(r);
    double v = md_tensor_item(loss);
    if (!isfinite(v)) {
        const char *last = md_runner_last_checkpoint(r);
        return md_failc(err, MD_ERR_NUMERIC, "loss is %g at iteration %lld; weights left as they were; "
                        "last good checkpoint: %s", v, (long long)md_runner_iter(r) + 1, last ? last : "none yet");
    }
    int64_t it = md_runner_iter(r), n = h->cumulative;
    /* mmcv divides by the remainder for the trailing iterations of a run */
    int64_t max_iters = md_runner_max_iters(r), divisor = n;
    int64_t remainder_start = max_iters - max_iters % n;
    if (n > 1 && it >= remainder_start && max_iters % n) divisor = max_iters % n;
    if (it % n == 0) md_optimizer_zero_grad(o);
    md_tensor *seed = md_tensor_empty_like(ctx, loss);   /* on the loss's device */
    if (!seed || md_tensor_fill_(seed, 1.0 / (double)divisor) != 0)
        return md_error_from_ctx(ctx, err, "OptimizerHook: cannot make the loss gradient");
    if (md_backward_with(ctx, loss, seed, err) != 0) return -1;
    if ((it + 1) % n != 0 && it + 1 != max_iters) return 0;
    if (h->max_norm > 0) {
        double norm = md_optimizer_clip_grad_norm(o, h->max_norm, h->norm_type);
        md_runner_log_value(r, "grad_norm", norm, 1);
    }
    return md_optimizer_step(o, err);
}

static const md_hook_iface iface = { .after_train_iter = after_train_iter, .default_priority = MD_PRIORITY_ABOVE_NORMAL };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    opt_hook *h = calloc(1, sizeof *h);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    h->base.iface = &iface;
    if (md_cfg_read_struct(cfg, keys, h, "OptimizerHook", err)) {
        free(h);
        return NULL;
    }
    const md_cfg *gc = h->grad_clip;
    if (md_cfg_kind(gc) == MD_CFG_GROUP) {
        h->max_norm = md_cfg_float(gc, "max_norm", 0);
        h->norm_type = md_cfg_float(gc, "norm_type", 2.0);
        if (h->max_norm <= 0 || h->norm_type <= 0) {
            free(h);
            md_failc(err, MD_ERR_CONFIG, "grad_clip: max_norm and norm_type must be positive");
            return NULL;
        }
    }
    return h;
}

MD_PLUGIN("optimizer_hook", "1.0", "Apache-2.0");
static const md_class opt_cls = { .name = "OptimizerHook", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_HOOK),
                                  .doc = "backward, grad_clip, optimizer step" };
MD_REGISTER("hooks", opt_cls)
static const md_class cum_cls = { .name = "GradientCumulativeOptimizerHook", .keys = keys, .build = build,
                                  MD_IFACE(&iface, MD_IFACE_HOOK), .doc = "OptimizerHook stepping every cumulative_iters" };
MD_REGISTER("hooks", cum_cls)
