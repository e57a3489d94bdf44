/* A hook class that does not say what it implements (no MD_IFACE): the
 * hooks registry refuses it, naming the interface it expects. */
#include <mmdet/mmdet.h>

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx, (void)cfg, (void)err;
    return NULL;
}
static const md_class fine = { .name = "NoIfaceThing", .build = build };
static const md_class hook = { .name = "UntypedHook", .build = build };

MD_PLUGIN("no_iface", "1.0", "Apache-2.0");
MD_REGISTER("models", fine)
MD_REGISTER("hooks", hook)
