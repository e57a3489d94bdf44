/* A registration into a misspelled registry ("hook"): refused with the
 * registry it probably meant, instead of silently creating a new one. */
#include <mmdet/mmdet.h>

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx, (void)cfg, (void)err;
    return NULL;
}
static const md_hook_iface iface = { .default_priority = MD_PRIORITY_NORMAL };
static const md_class fine = { .name = "BadRegistryThing", .build = build };
static const md_class hook = { .name = "MisfiledHook", .build = build, MD_IFACE(&iface, MD_IFACE_HOOK) };

MD_PLUGIN("bad_registry", "1.0", "Apache-2.0");
MD_REGISTER("models", fine)
MD_REGISTER("hook", hook)
