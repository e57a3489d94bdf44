/* conv2d forward+backward at the ResNet-50 stage shapes (batch 2, 512x512
 * input), and the machine's sgemm rate for reference. Prints
 *   bench conv_<stage> ours_ms=<median> gflops=<achieved>
 *   bench sgemm_peak gflops=<measured> cpu_gflops=<at the best CPU time>
 * Repetitions: $MMDET_BENCH_REPS (default 5); threads: $MMDET_NUM_THREADS.
 *
 * MMDET_BENCH_CONV_PHASE=1 times the three kernels (fwd, input grad,
 * weight grad) apart instead, for each kernel variant in
 * $MMDET_BENCH_CONV_KERNELS (comma-separated blas,avx2,avx512; default the
 * active one), the variants interleaved repetition by repetition:
 *   bench conv_<stage>_<phase> kernel=<k> ours_ms=<median wall> cpu_ms=<best CPU time> gflops=<at cpu_ms>
 * MMDET_BENCH_CONV_WINOGRAD=both times each variant with the Winograd path
 * on and off (winograd=1/0 on the line; GFLOP/s are then the direct
 * convolution's FLOPs over the time, an effective rate).
 * CPU time is the process's (all threads): with MMDET_NUM_THREADS=1 it is
 * the kernel's cost, little disturbed by other jobs on the machine.
 * $MMDET_BENCH_CONV_STAGES (comma-separated stage names) limits either
 * timing to those stages, $MMDET_BENCH_CONV_PASSES (fwd, bwd_input,
 * bwd_weight) the phase timing to those passes (for profiling one). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <mmdet/mmdet.h>
#include "backends/cpu/conv.h"
#include "backends/cpu/conv_gemm.h"
#include "backends/cpu/winograd.h"
#include "benchlib.h"

typedef struct stage { const char *name; int C, O, H, K, stride, pad; } stage;

/* The 3x3 convs of each ResNet-50 stage at a 512x512 input, the 7x7 stem,
 * and the other kinds a bottleneck has: 1x1 reductions and expansions, the
 * strided 3x3 opening a stage and its strided 1x1 shortcut. */
static const stage STAGES[] = {
    { "stem", 3, 64, 512, 7, 2, 3 },
    { "res2_3x3", 64, 64, 128, 3, 1, 1 },
    { "res3_3x3", 128, 128, 64, 3, 1, 1 },
    { "res4_3x3", 256, 256, 32, 3, 1, 1 },
    { "res5_3x3", 512, 512, 16, 3, 1, 1 },
    { "res2_1x1", 256, 64, 128, 1, 1, 0 },
    { "res2_1x1_up", 64, 256, 128, 1, 1, 0 },
    { "res3_3x3_s2", 128, 128, 128, 3, 2, 1 },
    { "res3_down", 256, 512, 128, 1, 2, 0 },
    { "res4_1x1", 1024, 256, 32, 1, 1, 0 },
    { "res5_1x1_up", 512, 2048, 16, 1, 1, 0 },
};


static const char *const PHASES[3] = { "fwd", "bwd_input", "bwd_weight" };

/* Whether `name` is one of the comma-separated entries of `list` (an
 * empty or missing list takes everything). */
static int listed(const char *list, const char *name) {
    if (!list || !*list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        p += len + (e ? 1 : 0);
    }
    return 0;
}

static float *randv(size_t n, md_rng *r) {
    float *v = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) v[i] = (float)md_rng_normal(r);
    return v;
}

/* Per-phase timing of the raw kernels, variants interleaved. */
static int bench_phases(int reps, int threads) {
    int kernels[2 * MD_CONVK_COUNT], wino[2 * MD_CONVK_COUNT], nk = 0;
    const char *list = getenv("MMDET_BENCH_CONV_KERNELS");
    if (list && *list) {
        for (int id = 0; id < MD_CONVK_COUNT; id++)
            if (listed(list, md__convk_name(id)) && md__convk_supported(id)) kernels[nk++] = id;
    } else {
        const md__gemm_kernel *k = md__convk();
        kernels[nk++] = k ? k->id : MD_CONVK_BLAS;
    }
    const char *wmode = getenv("MMDET_BENCH_CONV_WINOGRAD");
    int both = wmode && !strcmp(wmode, "both"), n1 = nk;
    for (int ki = 0; ki < n1; ki++) {
        wino[ki] = -1;
        if (both) {
            wino[ki] = 1;
            kernels[nk] = kernels[ki];
            wino[nk++] = 0;
        }
    }
    md_rng r;
    md_rng_seed(&r, 1);
    const int N = 2;
    const char *stages = getenv("MMDET_BENCH_CONV_STAGES");   /* e.g. "stem,res2_1x1"; default all */
    const char *passes = getenv("MMDET_BENCH_CONV_PASSES");
    double *wall = malloc(sizeof(double) * (size_t)reps * (size_t)nk * 3);
    double *cpu = malloc(sizeof(double) * (size_t)reps * (size_t)nk * 3);
    for (size_t si = 0; si < sizeof STAGES / sizeof STAGES[0]; si++) {
        const stage *st = &STAGES[si];
        if (!listed(stages, st->name)) continue;
        int64_t OH = (st->H + 2 * st->pad - st->K) / st->stride + 1;
        md__conv_shape s = { .N = N, .C = st->C, .H = st->H, .W = st->H, .O = st->O, .KH = st->K, .KW = st->K,
                             .OH = OH, .OW = OH, .sh = st->stride, .sw = st->stride, .ph = st->pad,
                             .pw = st->pad, .dh = 1, .dw = 1, .G = 1 };
        size_t nx = (size_t)(N * st->C * st->H * st->H), nw = (size_t)(st->O * st->C * st->K * st->K);
        size_t ny = (size_t)(N * st->O * OH * OH);
        float *x = randv(nx, &r), *w = randv(nw, &r), *gy = randv(ny, &r);
        float *y = malloc(sizeof(float) * ny), *gx = malloc(sizeof(float) * nx), *gw = malloc(sizeof(float) * nw);
        double flops = 2.0 * N * st->O * OH * OH * (double)st->C * st->K * st->K;
        for (int i = -1; i < reps; i++)
            for (int ki = 0; ki < nk; ki++) {
                md__convk_set(kernels[ki]);
                md__winograd_set(wino[ki]);
                for (int ph = 0; ph < 3; ph++) {
                    if (!listed(passes, PHASES[ph])) continue;
                    size_t wf = md__conv2d_work_floats(&s, ph, threads);
                    float *work = malloc(sizeof(float) * (wf ? wf : 1));
                    memset(work, 0, sizeof(float) * (wf ? wf : 1));   /* fault the pages in outside the timing */
                    double t0 = now_ms(), c0 = cpu_ms();
                    if (ph == 0) md__conv2d_forward(&s, x, w, NULL, y, work, threads);
                    else if (ph == 1) md__conv2d_backward_input(&s, gy, w, gx, work, threads);
                    else md__conv2d_backward_weight(&s, x, gy, gw, work, threads);
                    double t1 = now_ms(), c1 = cpu_ms();
                    free(work);
                    if (i >= 0) {
                        size_t at = ((size_t)(ki * 3 + ph)) * (size_t)reps + (size_t)i;
                        wall[at] = t1 - t0;
                        cpu[at] = c1 - c0;
                    }
                }
            }
        for (int ki = 0; ki < nk; ki++)
            for (int ph = 0; ph < 3; ph++) {
                if (!listed(passes, PHASES[ph])) continue;
                double *wv = wall + ((size_t)(ki * 3 + ph)) * (size_t)reps, *cv = cpu + ((size_t)(ki * 3 + ph)) * (size_t)reps;
                double best = cv[0];
                for (int i = 1; i < reps; i++) best = cv[i] < best ? cv[i] : best;
                printf("bench conv_%s_%s kernel=%s%s ours_ms=%.2f cpu_ms=%.2f gflops=%.1f\n", st->name, PHASES[ph],
                       md__convk_name(kernels[ki]), wino[ki] < 0 ? "" : wino[ki] ? " winograd=1" : " winograd=0",
                       median(wv, reps), best, flops / best / 1e6);
            }
        fflush(stdout);
        free(x), free(w), free(gy), free(y), free(gx), free(gw);
    }
    md__convk_set(-1);
    md__winograd_set(-1);
    free(wall);
    free(cpu);
    return 0;
}

int main(void) {
    int reps = getenv("MMDET_BENCH_REPS") ? atoi(getenv("MMDET_BENCH_REPS")) : 5;
    if (reps < 1) reps = 1;
    md_error err = { 0 };
    md_ctx *ctx = md_ctx_new(&err);
    if (!ctx) {
        fprintf(stderr, "bench_conv: %s\n", err.msg);
        return 1;
    }
    const char *phase = getenv("MMDET_BENCH_CONV_PHASE");
    int phases = phase && atoi(phase) == 1;
    if (phases && bench_phases(reps, md_ctx_threads(ctx)) != 0) return 1;
    md_rng r;
    md_rng_seed(&r, 1);
    double *t = malloc(sizeof(double) * (size_t)reps);
    const int N = 2;
    const char *only = getenv("MMDET_BENCH_CONV_STAGES");
    for (size_t s = 0; !phases && s < sizeof STAGES / sizeof STAGES[0]; s++) {
        const stage *st = &STAGES[s];
        if (!listed(only, st->name)) continue;
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
    double best_cpu = 0;
    for (int i = -1; i < reps; i++) {
        double t0 = now_ms(), c0 = cpu_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double c1 = cpu_ms() - c0;
        if (i >= 0) t[i] = now_ms() - t0;
        if (i >= 0 && (i == 0 || c1 < best_cpu)) best_cpu = c1;
    }
    double ms = median(t, reps), fl = 2.0 * n * n * (double)n;
    /* cpu_gflops: at the best CPU time, the phase timing's measure */
    printf("bench sgemm_peak gflops=%.1f cpu_gflops=%.1f threads=%d\n", fl / ms / 1e6, fl / best_cpu / 1e6,
           md_ctx_threads(ctx));
    free(a);
    free(b);
    free(c);
    free(t);
    md_ctx_free(ctx);
    return 0;
}
