/* OptimizerHook (backward, grad clip, step) and
 * GradientCumulativeOptimizerHook (step every N iterations). A loss that is
 * not finite stops training before it can touch the weights.
 *
 * Fp16OptimizerHook and GradientCumulativeFp16OptimizerHook: mmcv 1.7's on
 * PyTorch >= 1.6 (GradScaler): mixed precision switched on before the run
 * (wrap_fp16_model; amp.h), the loss scaled before backward, the gradients
 * unscaled, a step with a gradient that is not finite skipped, the scale
 * updated and its state kept in the runner's meta['fp16']. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>

typedef struct opt_hook {
    md_hook base;
    const md_cfg *grad_clip;
    double max_norm, norm_type;   /* max_norm <= 0: no clipping */
    int64_t cumulative;
    bool fp16;
    const md_cfg *loss_scale;     /* read in build only (the config is not kept) */
    md_loss_scaler scaler;
} opt_hook;

#define BASE_KEYS                                                                                                \
    { "grad_clip", MD_KEY_ANY, NULL, "None, or {max_norm, norm_type}", false, MD_AT(opt_hook, grad_clip) },    \
    { "cumulative_iters", MD_KEY_INT, "1", "GradientCumulative*OptimizerHook: iterations per step", false,      \
      MD_AT(opt_hook, cumulative), .min = "1" },                                                                \
    { "detect_anomalous_params", MD_KEY_BOOL, "false", "accepted for mmcv compatibility", false,               \
      .field = MD_FIELD_NONE }

static const md_key keys[] = { BASE_KEYS, { 0 } };

/* mmcv's Fp16OptimizerHook arguments */
static const md_key fp16_keys[] = {
    BASE_KEYS,
    { "loss_scale", MD_KEY_ANY, "512.0", "a number (static), \"dynamic\" (GradScaler's defaults) or "
      "{init_scale, growth_factor, backoff_factor, growth_interval, enabled}", false, MD_AT(opt_hook, loss_scale) },
    { "coalesce", MD_KEY_BOOL, "true", "accepted (gradients are all-reduced in buckets during backward)", false,
      .field = MD_FIELD_NONE },
    { "bucket_size_mb", MD_KEY_INT, "-1", "accepted (see coalesce)", false, .field = MD_FIELD_NONE },
    { "distributed", MD_KEY_BOOL, "true", "accepted (the run's launcher decides)", false, .field = MD_FIELD_NONE },
    { 0 } };

/* mmcv's wrap_fp16_model, and the scaler's state from a resumed checkpoint */
static int fp16_before_run(md_hook *hk, md_runner *r, md_error *err) {
    opt_hook *h = (opt_hook *)hk;
    md_ctx *ctx = md_runner_ctx(r);
    if (md_ctx_autocast(ctx) == MD_F32 &&
        md_amp_enable(ctx, "fp16", true, md_module_device(md_runner_model(r)), h->base.type, err) != 0)
        return -1;
    const char *meta = md_runner_meta_fp16(r), *ls = meta ? strstr(meta, "\"loss_scaler\"") : NULL;
    if (ls) {
        if (md_loss_scaler_load_json(&h->scaler, ls + 13, err) != 0)
            return md_error_wrap(err, "%s: the checkpoint's meta fp16", h->base.type);
        md_info(ctx, "%s: loss scaler restored from the checkpoint: scale %g, %lld steps since the last change",
                h->base.type, h->scaler.scale, (long long)h->scaler.growth_tracker);
    }
    if (!h->scaler.enabled)
        md_info(ctx, "%s: loss scaling disabled (loss_scale.enabled = false)", h->base.type);
    else if (h->scaler.dynamic)
        md_info(ctx, "%s: dynamic loss scale %g, x%g after %lld steps without overflow, x%g on an overflow",
                h->base.type, h->scaler.scale, h->scaler.growth_factor, (long long)h->scaler.growth_interval,
                h->scaler.backoff_factor);
    else
        md_info(ctx, "%s: static loss scale %g (a step with an overflow is skipped)", h->base.type,
                h->scaler.static_scale);
    return 0;
}

static int after_train_iter(md_hook *hk, md_runner *r, md_error *err) {
    opt_hook *h = (opt_hook *)hk;
    md_ctx *ctx = md_runner_ctx(r);
    md_optimizer *o = md_runner_optimizer(r);
    md_tensor *loss = md_runner_loss(r);
    double v = md_tensor_item(loss);
    /* with loss scaling a non-finite loss gives non-finite gradients: a
     * skipped step (GradScaler), not a stop */
    if (!isfinite(v) && !(h->fp16 && h->scaler.enabled)) {
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
    /* d(scale * loss / divisor): GradScaler's f32 scale times the loss */
    double g0 = h->fp16 ? (double)(float)h->scaler.scale / (double)divisor : 1.0 / (double)divisor;
    md_tensor *seed = md_tensor_empty_like(ctx, loss);   /* on the loss's device */
    if (!seed || md_tensor_fill_(seed, g0) != 0)
        return md_error_from_ctx(ctx, err, "OptimizerHook: cannot make the loss gradient");
    if (md_backward_with(ctx, loss, seed, err) != 0) return -1;
    if ((it + 1) % n != 0 && it + 1 != max_iters) return 0;
    bool found_inf = false;
    double scale = h->scaler.scale;
    if (h->fp16 && h->scaler.enabled &&
        md_module_unscale_grads(md_runner_model(r), scale, &found_inf, err) != 0)
        return md_error_wrap(err, "%s", h->base.type);
    if (h->max_norm > 0) {
        double norm = md_optimizer_clip_grad_norm(o, h->max_norm, h->norm_type);
        md_runner_log_value(r, "grad_norm", norm, 1);
    }
    if (!found_inf && md_optimizer_step(o, err) != 0) return -1;
    if (!h->fp16) return 0;
    int change = md_loss_scaler_update(&h->scaler, found_inf);
    if (found_inf)
        md_warn(ctx, "%s: gradient overflow at iteration %lld: step skipped; loss scale %g -> %g", h->base.type,
                (long long)it + 1, scale, h->scaler.scale);
    else if (change > 0)
        md_info(ctx, "%s: %lld steps without overflow at iteration %lld: loss scale %g -> %g", h->base.type,
                (long long)h->scaler.growth_interval, (long long)it + 1, scale, h->scaler.scale);
    if (h->scaler.enabled) md_runner_log_value(r, "loss_scale", h->scaler.scale, 1);
    /* mmcv: runner.meta['fp16']['loss_scaler'] = loss_scaler.state_dict() */
    char state[512], meta[600];
    if (md_loss_scaler_state_json(&h->scaler, state, sizeof state) != 0) return md_fail(err, "loss scaler state");
    snprintf(meta, sizeof meta, "{\"loss_scaler\": %s}", state);
    if (md_runner_set_meta_fp16(r, meta) != 0) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    return 0;
}

static const md_hook_iface iface = { .after_train_iter = after_train_iter, .default_priority = MD_PRIORITY_ABOVE_NORMAL };
static const md_hook_iface fp16_iface = { .before_run = fp16_before_run, .after_train_iter = after_train_iter,
                                          .default_priority = MD_PRIORITY_ABOVE_NORMAL };

static void *build_as(const md_cfg *cfg, bool fp16, md_error *err) {
    opt_hook *h = calloc(1, sizeof *h);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    h->base.iface = fp16 ? &fp16_iface : &iface;
    h->fp16 = fp16;
    const char *what = md_cfg_str(cfg, "type", fp16 ? "Fp16OptimizerHook" : "OptimizerHook");
    if (md_cfg_read_struct(cfg, fp16 ? fp16_keys : keys, h, what, err) ||
        (fp16 && md_loss_scaler_init(&h->scaler, h->loss_scale, "loss_scale", err))) {
        free(h);
        return NULL;
    }
    h->loss_scale = NULL;
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

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    return build_as(cfg, false, err);
}
static void *build_fp16(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    return build_as(cfg, true, err);
}

MD_PLUGIN("optimizer_hook", "1.1", "Apache-2.0");
static const md_class opt_cls = { .name = "OptimizerHook", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_HOOK),
                                  .doc = "backward, grad_clip, optimizer step" };
MD_REGISTER("hooks", opt_cls)
static const md_class cum_cls = { .name = "GradientCumulativeOptimizerHook", .keys = keys, .build = build,
                                  MD_IFACE(&iface, MD_IFACE_HOOK), .doc = "OptimizerHook stepping every cumulative_iters" };
MD_REGISTER("hooks", cum_cls)
static const md_class fp16_cls = { .name = "Fp16OptimizerHook", .keys = fp16_keys, .build = build_fp16,
                                   MD_IFACE(&fp16_iface, MD_IFACE_HOOK),
                                   .doc = "mixed precision: loss scaling (GradScaler), overflow skips the step" };
MD_REGISTER("hooks", fp16_cls)
static const md_class cum_fp16_cls = { .name = "GradientCumulativeFp16OptimizerHook", .keys = fp16_keys,
                                       .build = build_fp16, MD_IFACE(&fp16_iface, MD_IFACE_HOOK),
                                       .doc = "Fp16OptimizerHook stepping every cumulative_iters" };
MD_REGISTER("hooks", cum_fp16_cls)
