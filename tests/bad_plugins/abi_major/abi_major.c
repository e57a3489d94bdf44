/* A plugin built for an incompatible core: ABI major 2. */
#include <mmdet/mmdet.h>

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx; (void)cfg; (void)err;
    return NULL;
}
static const md_class abi_major_thing = { .name = "AbiMajorThing", .build = build };

/* The descriptor by hand, as an older or newer MD_PLUGIN would write it. */
__attribute__((visibility("default"))) const md_plugin_desc md_plugin_descriptor = {
    MD_ABI_MAJOR + 1, 0, "abi_major", "1.0", "Apache-2.0" };
MD_REGISTER("models", abi_major_thing)
