/* run_training: where the runner plugs in. Until it lands, the command
 * stops after set-up and says what it would train. */
#include "mmdet_run.h"

static const char *type_of(const md_cfg *cfg, const char *path) {
    const md_cfg *g = md_cfg_get(cfg, path);
    const char *t = g ? md_cfg_str(g, "type", NULL) : NULL;
    return t ? t : "(not set)";
}

int run_training(md_ctx *ctx, md_cfg *cfg, md_error *err) {
    (void)err;
    md_info(ctx, "model: %s", type_of(cfg, "model"));
    const char *parts[] = { "backbone", "neck", "rpn_head", "roi_head", "bbox_head" };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "model.%s", parts[i]);
        if (md_cfg_get(cfg, path)) md_info(ctx, "  %s: %s", parts[i], type_of(cfg, path));
    }
    const char *splits[] = { "train", "val", "test" };
    for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "data.%s", splits[i]);
        if (md_cfg_get(cfg, path)) md_info(ctx, "data.%s: %s", splits[i], type_of(cfg, path));
    }
    if (md_cfg_get(cfg, "optimizer")) md_info(ctx, "optimizer: %s", type_of(cfg, "optimizer"));
    const md_cfg *runner = md_cfg_get(cfg, "runner");
    if (runner) {
        long long max_epochs = md_cfg_int(runner, "max_epochs", -1), max_iters = md_cfg_int(runner, "max_iters", -1);
        md_info(ctx, "runner: %s%s%lld", type_of(cfg, "runner"),
                max_epochs >= 0 ? ", max_epochs " : max_iters >= 0 ? ", max_iters " : "",
                max_epochs >= 0 ? max_epochs : max_iters >= 0 ? max_iters : 0);
    }
    md_info(ctx, "validate: %s", md_cfg_bool(cfg, "validate", true) ? "yes" : "no");
    md_info(ctx, "training is not available yet: it arrives with the runner; set-up finished");
    return 0;
}
