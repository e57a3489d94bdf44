/* Detection op benchmarks: RoIAlign forward+backward over an FPN pyramid and
 * NMS on 10k boxes. Inputs come from a small LCG shared with
 * bench/peer_det.py, so both sides see the same boxes.
 *   bench roi_align_fwd_bwd ours_ms=<median> ...
 *   bench nms_10k ours_ms=<median> ... */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <mmdet/mmdet.h>
#include "benchlib.h"

static uint32_t lcg_state = 12345u;
static double lcg(void) {   /* [0, 1) */
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return lcg_state / 4294967296.0;
}

#define REPS 5
#define NROI 512
#define IMG_H 800
#define IMG_W 1216

int main(void) {
    md_error err = { 0 };
    md_ctx *ctx = md_ctx_new(&err);
    if (!ctx) { fprintf(stderr, "bench_det: %s\n", err.msg); return 1; }

    /* ---- roi_align: 2 x 256 channels, strides 4..32 of an 800x1216 batch ---- */
    md_tensor *feats[4];
    int strides[4] = { 4, 8, 16, 32 };
    md_rng r;
    md_rng_seed(&r, 1);
    for (int l = 0; l < 4; l++) {
        int64_t h = IMG_H / strides[l], w = IMG_W / strides[l];
        feats[l] = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(2, 256, h, w), &err);
        if (!feats[l]) { fprintf(stderr, "bench_det: %s\n", err.msg); return 1; }
        md_tensor_uniform_(feats[l], &r, -1, 1);
        feats[l]->requires_grad = true;
    }
    /* mmdet's map_roi_levels: floor(log2(sqrt(wh) / 56)), clamped to [0, 3] */
    static float rois[4][NROI * 5];
    int64_t nl[4] = { 0 };
    for (int i = 0; i < NROI; i++) {
        double b = lcg() < 0.5 ? 0 : 1, s = exp(log(16.0) + lcg() * (log(512.0) - log(16.0)));
        double ar = exp((lcg() - 0.5) * 1.4), w = s * sqrt(ar), h = s / sqrt(ar);
        double x1 = lcg() * (IMG_W - w), y1 = lcg() * (IMG_H - h);
        int lvl = (int)floor(log2(sqrt(w * h) / 56.0 + 1e-6));
        lvl = lvl < 0 ? 0 : lvl > 3 ? 3 : lvl;
        float *q = rois[lvl] + 5 * nl[lvl]++;
        q[0] = (float)b; q[1] = (float)x1; q[2] = (float)y1; q[3] = (float)(x1 + w); q[4] = (float)(y1 + h);
    }
    double t[REPS + 1];
    for (int rep = 0; rep <= REPS; rep++) {
        double t0 = now_ms();
        md_tensor *outs[4], *gs[4];
        for (int l = 0; l < 4; l++) {
            md_tensor *rt = md_tensor_from(ctx, MD_F32, MD_DIMS(nl[l], 5), rois[l]);
            outs[l] = md_roi_align(ctx, feats[l], rt, 7, 7, 1.0 / strides[l], 0, true);
            gs[l] = md_tensor_full(ctx, MD_F32, outs[l]->ndim, outs[l]->shape, 1e-3);
        }
        for (int l = 0; l < 4; l++)
            if (md_tensor_numel(outs[l]) && md_backward_with(ctx, outs[l], gs[l], &err) != 0) {
                fprintf(stderr, "bench_det: %s\n", err.msg);
                return 1;
            }
        t[rep] = now_ms() - t0;
        md_ctx_step_reset(ctx);
    }
    printf("bench roi_align_fwd_bwd ours_ms=%.2f rois=%d per_level=%lld/%lld/%lld/%lld feat=2x256x%dx%d-fpn4 "
           "threads=%d\n", median(t + 1, REPS), NROI, (long long)nl[0], (long long)nl[1], (long long)nl[2],
           (long long)nl[3], IMG_H, IMG_W, md_ctx_threads(ctx));
    for (int l = 0; l < 4; l++) md_tensor_free(feats[l]);

    /* ---- nms: 10k boxes, IoU 0.5 ---- */
    enum { NB = 10000 };
    static float boxes[NB * 4], scores[NB];
    for (int i = 0; i < NB; i++) {
        double w = 16 + lcg() * 240, h = 16 + lcg() * 240;
        double x1 = lcg() * (IMG_W - w), y1 = lcg() * (IMG_H - h);
        boxes[4 * i] = (float)x1; boxes[4 * i + 1] = (float)y1;
        boxes[4 * i + 2] = (float)(x1 + w); boxes[4 * i + 3] = (float)(y1 + h);
        scores[i] = (float)lcg();
    }
    int64_t kept = 0;
    for (int rep = 0; rep <= REPS; rep++) {
        md_tensor *b = md_tensor_from(ctx, MD_F32, MD_DIMS(NB, 4), boxes);
        md_tensor *s = md_tensor_from(ctx, MD_F32, MD_DIMS(NB), scores);
        double t0 = now_ms();
        md_tensor *k = md_nms(ctx, b, s, 0.5, -1);
        t[rep] = now_ms() - t0;
        if (!k) { fprintf(stderr, "bench_det: %s\n", md_ctx_error(ctx)->msg); return 1; }
        kept = k->shape[0];
        md_ctx_step_reset(ctx);
    }
    printf("bench nms_10k ours_ms=%.2f boxes=%d kept=%lld\n", median(t + 1, REPS), NB, (long long)kept);
    md_ctx_free(ctx);
    return 0;
}
