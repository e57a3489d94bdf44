/* A shared object without a plugin descriptor: registrations must not stick. */
#include <mmdet/mmdet.h>

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx; (void)cfg; (void)err;
    return NULL;
}
static const md_class not_plugin_thing = { .name = "NotPluginThing", .build = build };
MD_REGISTER("models", not_plugin_thing)

int not_plugin_answer(void) { return 42; }
