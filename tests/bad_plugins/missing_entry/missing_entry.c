/* A loss without forward: refused at load ("has no forward"), not when a
 * head first calls it. */
#include <mmdet/mmdet.h>

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx, (void)cfg, (void)err;
    return NULL;
}
static const md_loss_iface iface = { .destroy = NULL };
static const md_class fine = { .name = "MissingEntryThing", .build = build };
static const md_class loss = { .name = "ForwardlessLoss", .build = build, MD_IFACE(&iface, MD_IFACE_LOSS) };

MD_PLUGIN("missing_entry", "1.0", "Apache-2.0");
MD_REGISTER("models", fine)
MD_REGISTER("losses", loss)
