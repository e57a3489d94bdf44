/* CheckInvalidLossHook: stop when the loss is not finite (mmdet). */
#include <math.h>
#include <stdlib.h>
#include <mmdet/mmdet.h>

typedef struct check_hook { md_hook base; int64_t interval; } check_hook;

static const md_key keys[] = {
    { "interval", MD_KEY_INT, "50", "check every N iterations", false, MD_AT(check_hook, interval), .min = "1" },
    { 0 } };

static int after_train_iter(md_hook *hk, md_runner *r, md_error *err) {
    check_hook *h = (check_hook *)hk;
    if ((md_runner_iter(r) + 1) % h->interval != 0) return 0;
    double v = md_tensor_item(md_runner_loss(r));
    if (isfinite(v)) return 0;
    const char *last = md_runner_last_checkpoint(r);
    return md_failc(err, MD_ERR_NUMERIC, "loss is %g at iteration %lld; last good checkpoint: %s", v,
                    (long long)md_runner_iter(r) + 1, last ? last : "none yet");
}

static const md_hook_iface iface = { .after_train_iter = after_train_iter, .default_priority = MD_PRIORITY_VERY_LOW };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    check_hook *h = calloc(1, sizeof *h);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    h->base.iface = &iface;
    if (md_cfg_read_struct(cfg, keys, h, "CheckInvalidLossHook", err)) {
        free(h);
        return NULL;
    }
    return h;
}

MD_PLUGIN("check_invalid_loss", "1.0", "Apache-2.0");
static const md_class cls = { .name = "CheckInvalidLossHook", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_HOOK),
                              .doc = "stop on a NaN or infinite loss" };
MD_REGISTER("hooks", cls)
