/* Registers a name tests/plugins/toy_models.so already holds. */
#include <mmdet/mmdet.h>

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx; (void)cfg; (void)err;
    return NULL;
}
static const md_class dup_other = { .name = "DupOnlyHere", .build = build };
static const md_class dup_linear = { .name = "ToyLinear", .build = build };

MD_PLUGIN("dup_toy", "1.0", "Apache-2.0");
MD_REGISTER("models", dup_other)
MD_REGISTER("models", dup_linear)
