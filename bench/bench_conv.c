/* conv2d forward+backward at the ResNet-50 stage shapes (batch 2, 512x512
 * input), and the machine's sgemm rate for reference. Prints
 *   bench conv_<stage> ours_ms=<median> gflops=<achieved>
 *   bench sgemm_peak gflops=<measured>
 * Repetitions: $MMDET_BENCH_REPS (default 5); threads: $MMDET_NUM_THREADS. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <mmdet/mmdet.h>
#include "benchlib.h"

typedef struct stage { const char *name; int C, O, H, K, stride, pad; } stage;

/* The 3x3 convs of each ResNet-50 stage at a 512x512 input, the 7x7 stem,
 * and a bottleneck's 1x1 reduction in the first stage. */
static const stage STAGES[] = {
    { "stem", 3, 64, 512, 7, 2, 3 },
    { "res2_3x3", 64, 64, 128, 3, 1, 1 },
    { "res3_3x3", 128, 128, 64, 3, 1, 1 },
    { "res4_3x3", 256, 256, 32, 3, 1, 1 },
    { "res5_3x3", 512, 512, 16, 3, 1, 1 },
    { "res2_1x1", 256, 64, 128, 1, 1, 0 },
};

int main(void) {
    int reps = getenv("MMDET_BENCH_REPS") ? atoi(getenv("MMDET_BENCH_REPS")) : 5;
    if (reps < 1) reps = 1;
    md_error err = { 0 };
    md_ctx *ctx = md_ctx_new(&err);
    if (!ctx) {
        fprintf(stderr, "bench_conv: %s\n", err.msg);
        return 1;
    }
    md_rng r;
    md_rng_seed(&r, 1);
    double *t = malloc(sizeof(double) * (size_t)reps);
    const int N = 2;
    for (size_t s = 0; s < sizeof STAGES / sizeof STAGES[0]; s++) {
        const stage *st = &STAGES[s];
        md_tensor *x = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(N, st->C, st->H, st->H), &err);
        md_tensor *w = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(st->O, st->C, st->K, st->K), &err);
        if (!x || !w) {
            fprintf(stderr, "bench_conv: %s\n", err.msg);
            return 1;
        }
        md_tensor_normal_(x, &r, 0, 1);
        md_tensor_normal_(w, &r, 0, 0.05);
        x->requires_grad = w->requires_grad = true;
        md_conv2d_params p = MD_CONV2D(st->stride, st->pad);
        int64_t OH = (st->H + 2 * st->pad - st->K) / st->stride + 1;
        double flops = 3.0 * 2.0 * N * st->O * OH * OH * (double)st->C * st->K * st->K;
        for (int i = -1; i < reps; i++) {   /* one warm-up */
            md_ctx_step_reset(ctx);
            md_tensor_zero_grad(x);
            md_tensor_zero_grad(w);
            double t0 = now_ms();
            md_tensor *y = md_conv2d(ctx, x, w, NULL, p);
            if (!y || md_backward(ctx, y, &err) != 0) {
                fprintf(stderr, "bench_conv: %s %s\n", st->name, y ? err.msg : md_ctx_error(ctx)->msg);
                return 1;
            }
            if (i >= 0) t[i] = now_ms() - t0;
        }
        double ms = median(t, reps);
        printf("bench conv_%s ours_ms=%.2f gflops=%.1f\n", st->name, ms, flops / ms / 1e6);
        fflush(stdout);
        md_tensor_free(x);
        md_tensor_free(w);
        md_ctx_step_reset(ctx);
    }
    /* sgemm rate: one large square product with the same thread count */
    const int n = 2048;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 17) * 0.01f;
    for (int i = -1; i < reps; i++) {
        double t0 = now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        if (i >= 0) t[i] = now_ms() - t0;
    }
    double ms = median(t, reps);
    printf("bench sgemm_peak gflops=%.1f threads=%d\n", 2.0 * n * n * (double)n / ms / 1e6, md_ctx_threads(ctx));
    free(a);
    free(b);
    free(c);
    free(t);
    md_ctx_free(ctx);
    return 0;
}
