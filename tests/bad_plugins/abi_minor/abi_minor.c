/* A plugin built against a newer core (minor version ahead). */
#include <mmdet/mmdet.h>

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx; (void)cfg; (void)err;
    return NULL;
}
static const md_class abi_minor_thing = { .name = "AbiMinorThing", .build = build };

__attribute__((visibility("default"))) const md_plugin_desc md_plugin_descriptor = {
    MD_ABI_MAJOR, MD_ABI_MINOR + 1, "abi_minor", "1.0", "Apache-2.0" };
MD_REGISTER("models", abi_minor_thing)
