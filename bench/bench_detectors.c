/* RetinaNet and Faster R-CNN (ResNet-50 + FPN, 80 classes), built through the
 * registry from configs/retinanet/retinanet_r50_fpn_1x_coco.cfg and
 * configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.cfg, against
 * bench/peer_detectors.py (torchvision's models of the same structure):
 *   <det>_train_step  train_step + backward of the summed losses + one SGD
 *                     step (the config's optimizer) on 2 images 800x1216 with
 *                     three ground-truth boxes each
 *   <det>_infer       simple_test on 1 image 800x1216, eval mode, grad off
 *   <det>_train_step_bf16  the train step in mixed precision (amp.h:
 *                     conv and linear inputs in bf16, f32 accumulation), next
 *                     to the f32 line so the ratio is read from one run;
 *                     `kernel=` names the CPU's bf16 kernel
 * The configs' backbone settings hold: frozen_stages 1 and norm_eval (BN uses
 * its running statistics). Weights are the build's own init (no Pretrained
 * checkpoint is loaded). Each benchmark runs in its own child process so that
 * its peak resident memory (ru_maxrss) is its own. Prints
 *   bench <name> ours_ms=<median> ours_mb=<peak RSS>
 * Repetitions: $MMDET_BENCH_DET_REPS (default 1, after one warm-up);
 * threads: $MMDET_NUM_THREADS. Run from the repository root. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include "benchlib.h"

#define IMG_H 800
#define IMG_W 1216
#define N_GT 3

static int fail(const char *name, const char *what, const char *msg) {
    fprintf(stderr, "bench_detectors: %s: %s: %s\n", name, what, msg);
    return 1;
}

typedef struct det_bench { const char *name, *config; bool train; const char *amp; } det_bench;

static const det_bench BENCHES[] = {
    { "retinanet_r50_fpn_train_step", "configs/retinanet/retinanet_r50_fpn_1x_coco.cfg", true, NULL },
    { "retinanet_r50_fpn_train_step_bf16", "configs/retinanet/retinanet_r50_fpn_1x_coco.cfg", true, "bf16" },
    { "retinanet_r50_fpn_infer", "configs/retinanet/retinanet_r50_fpn_1x_coco.cfg", false, NULL },
    { "faster_rcnn_r50_fpn_train_step", "configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.cfg", true, NULL },
    { "faster_rcnn_r50_fpn_train_step_bf16", "configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.cfg", true, "bf16" },
    { "faster_rcnn_r50_fpn_infer", "configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.cfg", false, NULL },
};

/* n normalised-noise images with N_GT boxes each (the same boxes and labels
 * as the peer's). */
static md_batch *make_batch(md_ctx *ctx, int n, md_error *err) {
    static const float boxes[N_GT][4] = { { 100, 120, 420, 500 }, { 600, 80, 900, 300 }, { 300, 450, 1100, 780 } };
    static const int64_t labels[2][N_GT] = { { 0, 17, 56 }, { 2, 41, 79 } };
    md_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->n = n;
    b->img = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(n, 3, IMG_H, IMG_W), err);
    b->metas = calloc((size_t)n, sizeof *b->metas);
    b->gt_bboxes = calloc((size_t)n, sizeof *b->gt_bboxes);
    b->gt_bboxes_ignore = calloc((size_t)n, sizeof *b->gt_bboxes_ignore);
    if (!b->img || !b->metas || !b->gt_bboxes || !b->gt_bboxes_ignore) return NULL;
    md_rng r;
    md_rng_seed(&r, 1);
    md_tensor_normal_(b->img, &r, 0, 1);
    for (int i = 0; i < n; i++) {
        md_img_meta *m = &b->metas[i];
        m->ori_shape[0] = m->img_shape[0] = m->pad_shape[0] = IMG_H;
        m->ori_shape[1] = m->img_shape[1] = m->pad_shape[1] = IMG_W;
        m->ori_shape[2] = m->img_shape[2] = m->pad_shape[2] = 3;
        for (int k = 0; k < 4; k++) m->scale_factor[k] = 1.0f;
        md_boxes *g = &b->gt_bboxes[i];
        g->n = g->cap = N_GT;
        g->xyxy = malloc(sizeof(float) * 4 * N_GT);
        g->labels = malloc(sizeof(int64_t) * N_GT);
        if (!g->xyxy || !g->labels) return NULL;
        memcpy(g->xyxy, boxes, sizeof boxes);
        memcpy(g->labels, labels[i % 2], sizeof labels[0]);
    }
    return b;
}

static void free_batch(md_batch *b) {
    if (!b) return;
    for (int i = 0; i < b->n && b->gt_bboxes; i++) {
        free(b->gt_bboxes[i].xyxy);
        free(b->gt_bboxes[i].labels);
    }
    free(b->gt_bboxes);
    free(b->gt_bboxes_ignore);
    free(b->metas);
    md_tensor_free(b->img);
    free(b);
}

static int run(const det_bench *bn, int reps) {
    const char *name = bn->name;
    md_error err = { 0 };
    if (bn->amp && !md_amp_cpu_kernel()) {
        printf("bench %s skipped=\"no bf16 kernel on this CPU\"\n", name);
        return 0;
    }
    md_ctx *ctx = md_ctx_new(&err);
    if (!ctx) return fail(name, "context", err.msg);
    md_log_set_quiet(ctx, true);
    md_ctx_seed(ctx, 1);
    if (md_plugin_load_dir(ctx, "plugins", &err) != 0) return fail(name, "plugins", err.msg);
    md_cfg *cfg = md_cfg_load(bn->config, &err);
    if (!cfg) return fail(name, "config", err.msg);
    /* random init: the config's ImageNet checkpoint is not fetched */
    if (md_cfg_apply_option(cfg, "model.backbone.init_cfg=None", &err) != 0) return fail(name, "config", err.msg);
    md_module *m = md_build_from_cfg(ctx, "detectors", md_cfg_get(cfg, "model"), NULL, &err);
    if (!m) return fail(name, "build", err.msg);
    const md_model_iface *mi = m->cls->iface;
    if (!mi || !mi->train_step || !mi->simple_test) return fail(name, "build", "not a detector");
    md_optimizer *opt = NULL;
    if (bn->train) {
        opt = md_optimizer_build(ctx, m, md_cfg_get(cfg, "optimizer"), &err);
        if (!opt) return fail(name, "optimizer", err.msg);
    }
    md_module_train(m, bn->train);
    if (bn->amp && md_amp_enable(ctx, bn->amp, false, MD_DEVICE_CPU, "bench", &err) != 0)
        return fail(name, "mixed precision", err.msg);
    md_batch *b = make_batch(ctx, bn->train ? 2 : 1, &err);
    if (!b) return fail(name, "input", err.msg[0] ? err.msg : "out of memory");
    double *t = malloc(sizeof(double) * (size_t)reps);
    md_grad_set_enabled(ctx, bn->train);
    for (int i = -1; i < reps; i++) {   /* one warm-up */
        md_ctx_step_reset(ctx);
        double t0 = now_ms(), c0 = cpu_ms();
        if (bn->train) {
            md_losses losses = { 0 };
            md_optimizer_zero_grad(opt);
            if (mi->train_step(ctx, m, b, &losses, &err) != 0) return fail(name, "train_step", err.msg);
            md_tensor *total = md_losses_total(ctx, &losses);
            if (!total) return fail(name, "losses", md_ctx_error(ctx)->msg);
            if (md_backward(ctx, total, &err) != 0) return fail(name, "backward", err.msg);
            if (md_optimizer_step(opt, &err) != 0) return fail(name, "step", err.msg);
        } else {
            md_det_result res[1];
            if (mi->simple_test(ctx, m, b, res, &err) != 0) return fail(name, "simple_test", err.msg);
        }
        if (i >= 0) t[i] = now_ms() - t0;
        if (getenv("MMDET_BENCH_VERBOSE"))   /* CPU time too: steadier than wall time on a shared machine */
            fprintf(stderr, "%s rep %d: %.1f ms, cpu %.1f ms\n", name, i, now_ms() - t0, cpu_ms() - c0);
    }
    printf("bench %s ours_ms=%.1f ours_mb=%.0f batch=%dx3x%dx%d threads=%d%s\n", name, median(t, reps), peak_mb(),
           b->n, IMG_H, IMG_W, md_ctx_threads(ctx),
           !bn->amp ? "" : strstr(md_amp_cpu_kernel(), "emulated") ? " kernel=emulated"
                         : strstr(md_amp_cpu_kernel(), "converted") ? " kernel=avx512cvt" : " kernel=native");
    fflush(stdout);
    free(t);
    md_ctx_step_reset(ctx);
    free_batch(b);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
    return 0;
}

int main(int argc, char **argv) {
    int reps = getenv("MMDET_BENCH_DET_REPS") ? atoi(getenv("MMDET_BENCH_DET_REPS")) : 1;
    if (reps < 1) reps = 1;
    const char *only = argc > 1 ? argv[1] : NULL;   /* one benchmark by name, in-process */
    int rc = 0;
    for (size_t k = 0; k < sizeof BENCHES / sizeof BENCHES[0]; k++) {
        if (only) {
            if (!strcmp(only, BENCHES[k].name)) return run(&BENCHES[k], reps);
            continue;
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) return fail(BENCHES[k].name, "fork", "failed");
        if (pid == 0) _exit(run(&BENCHES[k], reps));
        int st = 0;
        if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) rc = 1;
    }
    if (only) return fail(only, "name", "no such benchmark");
    return rc;
}
