/* A plugin built against a core older than the last growth of the plugin
 * structs (minor below MD_ABI_MINOR_OLDEST). */
#include <mmdet/mmdet.h>

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx; (void)cfg; (void)err;
    return NULL;
}
static const md_class abi_old_thing = { .name = "AbiOldThing", .build = build };

__attribute__((visibility("default"))) const md_plugin_desc md_plugin_descriptor = {
    MD_ABI_MAJOR, MD_ABI_MINOR_OLDEST - 1, "abi_old", "1.0", "Apache-2.0" };
MD_REGISTER("models", abi_old_thing)
