/* A plugin whose init refuses it (as one needing a device or a library the
 * machine lacks would): its classes must not be registered. */
#include <mmdet/mmdet.h>

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx; (void)cfg; (void)err;
    return NULL;
}
static const md_class init_refused_thing = { .name = "InitRefusedThing", .build = build };

static int init(md_ctx *ctx, md_error *err) {
    (void)ctx;
    return md_failc(err, MD_ERR_PLUGIN, "the FPGA it drives is not present");
}

MD_PLUGIN_INIT("init_refuses", "1.0", "Apache-2.0", init);
MD_REGISTER("models", init_refused_thing)
