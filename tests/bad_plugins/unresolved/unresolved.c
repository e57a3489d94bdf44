/* A plugin calling a function the core does not have: refused at load,
 * naming the symbol, rather than failing when first called. */
#include <mmdet/mmdet.h>

void md_function_the_core_lacks(void);

MD_PLUGIN("unresolved", "1.0", "Apache-2.0");

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    (void)cfg;
    (void)err;
    md_function_the_core_lacks();
    return NULL;
}
static const md_class cls = { .name = "Unresolved", .build = build };
MD_REGISTER("models", cls)
