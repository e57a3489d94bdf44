/* A toy hook: schema with defaults, no behaviour beyond remembering them. */
#include <stdlib.h>
#include <mmdet/mmdet.h>

typedef struct toy_hook { md_hook base; int64_t interval; const char *priority; } toy_hook;

static const md_hook_iface iface = { .default_priority = MD_PRIORITY_NORMAL };

static const md_key keys[] = {
    { "interval", MD_KEY_INT, "50", "check every N iterations", false },
    { "priority", MD_KEY_STRING, "\"NORMAL\"", "hook priority", false },
    { 0 } };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    int64_t interval = md_cfg_int(cfg, "interval", 0);
    if (interval <= 0) {
        md_failc(err, MD_ERR_CONFIG, "interval must be positive, got %lld", (long long)interval);
        return NULL;
    }
    toy_hook *h = calloc(1, sizeof *h);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    h->base.iface = &iface;
    h->interval = interval;
    h->priority = md_cfg_str(cfg, "priority", "NORMAL");
    md_debug(ctx, "ToyHook: interval %lld", (long long)interval);
    return h;
}

static const md_class toy_hook_class = {
    .name = "ToyHook", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_HOOK), .doc = "a toy hook (tests)",
};

MD_PLUGIN("toy_hook", "1.0", "Apache-2.0");
MD_REGISTER("hooks", toy_hook_class)
