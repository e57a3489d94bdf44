/* LossRecorderHook (tests): writes every training iteration's named losses
 * as exact hex floats ("<iter> <name> <%a>" lines) to `out`, and asks the
 * runner to stop after `max_iters` iterations (0: never). The bit-identical
 * loss test (tests/unit/test_demo_losses.c) compares these files. */
#include <stdio.h>
#include <stdlib.h>
#include <mmdet/mmdet.h>

static const md_key keys[] = {
    { "out", MD_KEY_STRING, NULL, "file the losses are written to", true },
    { "max_iters", MD_KEY_INT, "0", "stop the run after this many iterations (0: never)", false },
    { "priority", MD_KEY_ANY, "\"VERY_LOW\"", "hook priority", false },
    { 0 } };

typedef struct recorder { md_hook base; FILE *f; int64_t max_iters; } recorder;

static int after_train_iter(md_hook *h, md_runner *r, md_error *err) {
    recorder *s = (recorder *)h;
    const md_losses *l = md_runner_losses(r);
    md_ctx *ctx = md_runner_ctx(r);
    for (int i = 0; l && i < l->n; i++) {
        md_tensor *v = md_tensor_to(ctx, l->values[i], MD_DEVICE_CPU);
        if (!v) return md_fail(err, "LossRecorderHook: %s", md_ctx_error(ctx)->msg);
        fprintf(s->f, "%lld %s %a\n", (long long)md_runner_iter(r), l->names[i], (double)md_f32(v)[0]);
    }
    fflush(s->f);
    if (s->max_iters > 0 && md_runner_iter(r) + 1 >= s->max_iters) md_runner_request_stop(r);
    return 0;
}

static void destroy(md_hook *h) {
    fclose(((recorder *)h)->f);
    free(h);
}

static const md_hook_iface iface = { .after_train_iter = after_train_iter, .destroy = destroy,
                                     .default_priority = MD_PRIORITY_VERY_LOW };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    recorder *s = calloc(1, sizeof *s);
    if (!s) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    const char *path = md_cfg_str(cfg, "out", "");
    if (!(s->f = fopen(path, "w"))) {
        md_fail(err, "out: cannot write %s", path);
        free(s);
        return NULL;
    }
    s->base.iface = &iface;
    s->max_iters = md_cfg_int(cfg, "max_iters", 0);
    return s;
}

static const md_class recorder_class = { .name = "LossRecorderHook", .keys = keys, .build = build,
                                         MD_IFACE(&iface, MD_IFACE_HOOK), .doc = "writes exact losses per iteration (tests)" };
MD_PLUGIN("loss_recorder", "1.0", "Apache-2.0");
MD_REGISTER("hooks", recorder_class)
