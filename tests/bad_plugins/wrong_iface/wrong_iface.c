/* A loss registered as a head: the heads registry accepts dense heads, RoI
 * heads and bbox heads, so the file is refused at load, naming the class;
 * its other, valid class leaves no trace either. */
#include <mmdet/mmdet.h>

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx, (void)cfg, (void)err;
    return NULL;
}
static md_tensor *forward(md_ctx *ctx, const md_loss *l, md_tensor *p, md_tensor *t, md_tensor *w, double a, int r) {
    (void)ctx, (void)l, (void)t, (void)w, (void)a, (void)r;
    return p;
}
static const md_loss_iface iface = { .forward = forward };
static const md_class fine = { .name = "WrongIfaceThing", .build = build };
static const md_class head = { .name = "LossAsHead", .build = build, MD_IFACE(&iface, MD_IFACE_LOSS) };

MD_PLUGIN("wrong_iface", "1.0", "Apache-2.0");
MD_REGISTER("models", fine)
MD_REGISTER("heads", head)
