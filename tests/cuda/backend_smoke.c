/* Checks lib/libmmdet-cuda.so's table directly on a GPU against naive
 * double-precision references (sgemm in every transpose case, convolution in
 * all four directions with groups, stride, padding, dilation and an empty
 * batch, batch norm train/eval/backward including ResNet-sized channels),
 * and prints batch-norm timings. Not part of `make test` (it needs a GPU):
 *
 *   make lib/libmmdet-cuda.so
 *   cc -std=gnu11 -O1 -Icore -o build/cuda_backend_smoke tests/cuda/backend_smoke.c \
 *      -Llib -lmmdet-cuda -Wl,-rpath,"$PWD/lib" -lm
 *   build/cuda_backend_smoke          (MMDET_CUDA_BENCHMARK=1 to check timed algorithm choice)
 *
 * Exit status 0 when every comparison passes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "backends/backend.h"
const md_backend *md_backend_cuda(void);
static const md_backend *B;
static int fails = 0;
static unsigned long long rs = 88172645463325252ull;
static float rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (float)((rs >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1; }
static float *dev(const float *h, size_t n) { float *d = B->alloc(n * 4); if (!d) { printf("alloc: %s\n", B->error()); exit(1); } if (h && B->copy(d, h, n * 4, MD_COPY_H2D)) { printf("copy: %s\n", B->error()); exit(1);} return d; }
static float *host(const float *d, size_t n) { float *h = malloc(n * 4 + 4); if (B->copy(h, d, n * 4, MD_COPY_D2H)) { printf("d2h: %s\n", B->error()); exit(1);} return h; }
static void cmp(const char *what, const float *got, const double *ref, size_t n, double tol) {
    double worst = 0; size_t wi = 0;
    for (size_t i = 0; i < n; i++) { double e = fabs(got[i] - ref[i]) / (1 + fabs(ref[i])); if (!(e <= worst)) { worst = e; wi = i; } }
    int ok = worst <= tol;
    if (!ok) fails++;
    printf("%-40s n=%zu max rel err %.3g at %zu (%g vs %g) %s\n", what, n, worst, wi, n ? got[wi] : 0, n ? ref[wi] : 0, ok ? "OK" : "FAIL");
}
#define CK(x) do { if ((x)) { printf("FAIL %s: %s\n", #x, B->error()); fails++; } } while (0)

static void test_gemm(int ta, int tb, long M, long N, long K, float beta) {
    long lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 1;
    long ar = ta ? K : M, br = tb ? N : K;
    float *A = malloc(sizeof(float) * ar * lda), *Bm = malloc(sizeof(float) * br * ldb), *C = malloc(sizeof(float) * M * ldc);
    for (long i = 0; i < ar * lda; i++) A[i] = rnd();
    for (long i = 0; i < br * ldb; i++) Bm[i] = rnd();
    for (long i = 0; i < M * ldc; i++) C[i] = rnd();
    double *ref = malloc(sizeof(double) * M * ldc);
    for (long i = 0; i < M; i++) for (long j = 0; j < ldc; j++) {
        if (j >= N) { ref[i * ldc + j] = C[i * ldc + j]; continue; }
        double s = 0;
        for (long k = 0; k < K; k++) s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? Bm[j * ldb + k] : Bm[k * ldb + j]);
        ref[i * ldc + j] = 1.5 * s + (beta == 0 ? 0 : beta * C[i * ldc + j]);
    }
    float *dA = dev(A, ar * lda), *dB = dev(Bm, br * ldb), *dC = dev(C, M * ldc);
    CK(B->sgemm(ta, tb, M, N, K, 1.5f, dA, lda, dB, ldb, beta, dC, ldc));
    float *got = host(dC, M * ldc);
    char w[80]; snprintf(w, sizeof w, "sgemm ta=%d tb=%d %ldx%ldx%ld b=%g", ta, tb, M, N, K, beta);
    cmp(w, got, ref, M * ldc, 1e-5);
    B->free(dA); B->free(dB); B->free(dC); free(A); free(Bm); free(C); free(ref); free(got);
}

static void test_conv(md__conv_shape s, int bias) {
    long Cg = s.C / s.G, Og = s.O / s.G;
    size_t nx = s.N * s.C * s.H * s.W, nw = s.O * Cg * s.KH * s.KW, ny = s.N * s.O * s.OH * s.OW;
    float *x = malloc(4 * nx + 4), *w = malloc(4 * nw + 4), *b = malloc(4 * s.O + 4), *gy = malloc(4 * ny + 4);
    for (size_t i = 0; i < nx; i++) x[i] = rnd();
    for (size_t i = 0; i < nw; i++) w[i] = rnd();
    for (long i = 0; i < s.O; i++) b[i] = rnd();
    for (size_t i = 0; i < ny; i++) gy[i] = rnd();
    double *ry = calloc(ny + 1, 8), *rgx = calloc(nx + 1, 8), *rgw = calloc(nw + 1, 8), *rgb = calloc(s.O + 1, 8);
    for (long n = 0; n < s.N; n++) for (long o = 0; o < s.O; o++) for (long oh = 0; oh < s.OH; oh++) for (long ow = 0; ow < s.OW; ow++) {
        long g = o / Og; size_t yi = ((n * s.O + o) * s.OH + oh) * s.OW + ow;
        double acc = bias ? b[o] : 0;
        for (long c = 0; c < Cg; c++) for (long i = 0; i < s.KH; i++) for (long j = 0; j < s.KW; j++) {
            long ih = oh * s.sh - s.ph + i * s.dh, iw = ow * s.sw - s.pw + j * s.dw;
            if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
            size_t xi = ((n * s.C + g * Cg + c) * s.H + ih) * s.W + iw, wi = ((o * Cg + c) * s.KH + i) * s.KW + j;
            acc += (double)x[xi] * w[wi];
            rgx[xi] += (double)gy[yi] * w[wi];
            rgw[wi] += (double)gy[yi] * x[xi];
        }
        ry[yi] = acc; rgb[o] += gy[yi];
    }
    float *dx = dev(x, nx), *dw = dev(w, nw), *db = dev(b, s.O), *dgy = dev(gy, ny);
    float *dy = dev(NULL, ny), *dgx = dev(NULL, nx), *dgw = dev(NULL, nw), *dgb = dev(NULL, s.O);
    char t[120];
    snprintf(t, sizeof t, "N%ld C%ld %ldx%ld O%ld k%ldx%ld s%ld p%ld d%ld G%ld", (long)s.N, (long)s.C, (long)s.H, (long)s.W, (long)s.O, (long)s.KH, (long)s.KW, (long)s.sh, (long)s.ph, (long)s.dh, (long)s.G);
    char w2[200];
    for (int rep = 0; rep < 2; rep++) {   /* second time from the algorithm cache */
        CK(B->conv2d_forward(&s, dx, dw, bias ? db : NULL, dy));
        CK(B->conv2d_backward_input(&s, dgy, dw, dgx));
        CK(B->conv2d_backward_weight(&s, dx, dgy, dgw));
        CK(B->conv2d_backward_bias(&s, dgy, dgb));
    }
    float *h;
    snprintf(w2, sizeof w2, "conv fwd %s", t); h = host(dy, ny); cmp(w2, h, ry, ny, 1e-4); free(h);
    snprintf(w2, sizeof w2, "conv bwd_in %s", t); h = host(dgx, nx); cmp(w2, h, rgx, nx, 1e-4); free(h);
    snprintf(w2, sizeof w2, "conv bwd_w %s", t); h = host(dgw, nw); cmp(w2, h, rgw, nw, 1e-4); free(h);
    snprintf(w2, sizeof w2, "conv bwd_b %s", t); h = host(dgb, s.O); cmp(w2, h, rgb, s.O, 1e-4); free(h);
    B->free(dx); B->free(dw); B->free(db); B->free(dgy); B->free(dy); B->free(dgx); B->free(dgw); B->free(dgb);
    free(x); free(w); free(b); free(gy); free(ry); free(rgx); free(rgw); free(rgb);
}

static void test_bn(long N, long C, long HW, int affine, float offset) {
    size_t n = N * C * HW; long M = N * HW;
    float *x = malloc(4 * (size_t)n), *gy = malloc(4 * (size_t)n), *w = malloc(4 * (size_t)C), *b = malloc(4 * (size_t)C), *rm = malloc(4 * (size_t)C), *rv = malloc(4 * (size_t)C);
    for (size_t i = 0; i < n; i++) { x[i] = rnd() * 2 + offset; gy[i] = rnd(); }
    for (long c = 0; c < C; c++) { w[c] = rnd(); b[c] = rnd(); rm[c] = rnd(); rv[c] = 1 + rnd() * 0.5f; }
    double eps = 1e-5, mom = 0.1;
    double *mean = malloc(8 * (size_t)C), *var = malloc(8 * (size_t)C), *ry = malloc(8 * (size_t)n), *rgx = malloc(8 * (size_t)n), *rgw = malloc(8 * (size_t)C), *rgb = malloc(8 * (size_t)C), *rrm = malloc(8 * (size_t)C), *rrv = malloc(8 * (size_t)C), *rinv = malloc(8 * (size_t)C), *rmean = malloc(8 * (size_t)C);
    for (long c = 0; c < C; c++) {
        double s = 0, q = 0;
        for (long i = 0; i < N; i++) for (long j = 0; j < HW; j++) s += x[(i * C + c) * HW + j];
        mean[c] = s / M;
        for (long i = 0; i < N; i++) for (long j = 0; j < HW; j++) { double d = x[(i * C + c) * HW + j] - mean[c]; q += d * d; }
        var[c] = q / M;
        double is = 1 / sqrt(var[c] + eps), wc = affine ? w[c] : 1, bc = affine ? b[c] : 0;
        rinv[c] = is; rmean[c] = mean[c];
        rrm[c] = (1 - mom) * rm[c] + mom * mean[c]; rrv[c] = (1 - mom) * rv[c] + mom * var[c] * M / (M - 1);
        double sg = 0, sgx = 0;
        for (long i = 0; i < N; i++) for (long j = 0; j < HW; j++) { size_t k = (i * C + c) * HW + j; ry[k] = (x[k] - mean[c]) * is * wc + bc; sg += gy[k]; sgx += gy[k] * (x[k] - mean[c]); }
        rgw[c] = sgx * is; rgb[c] = sg;
        for (long i = 0; i < N; i++) for (long j = 0; j < HW; j++) { size_t k = (i * C + c) * HW + j; rgx[k] = wc * is * (gy[k] - sg / M - (x[k] - mean[c]) * is * is * sgx / M); }
    }
    float *dx = dev(x, n), *dgy = dev(gy, n), *dw = dev(w, C), *db = dev(b, C), *drm = dev(rm, C), *drv = dev(rv, C);
    float *dy = dev(NULL, n), *dm = dev(NULL, C), *di = dev(NULL, C), *dgx = dev(NULL, n), *dgw = dev(NULL, C), *dgb = dev(NULL, C);
    char t[200], w2[260]; snprintf(t, sizeof t, "N%ld C%ld HW%ld aff%d off%g", N, C, HW, affine, offset);
    struct timespec t0, t1;
    CK(B->sync());
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CK(B->batch_norm_train(dx, N, C, HW, affine ? dw : NULL, affine ? db : NULL, eps, mom, drm, drv, dy, dm, di));
    CK(B->sync());
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms_f = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) * 1e-6;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CK(B->batch_norm_backward(dx, dgy, N, C, HW, dm, di, affine ? dw : NULL, true, dgx, dgw, dgb));
    CK(B->sync());
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms_b = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) * 1e-6;
    printf("bn %s: train %.3f ms, backward %.3f ms (first calls)\n", t, ms_f, ms_b);
    float *h;
    snprintf(w2, sizeof w2, "bn y %s", t); h = host(dy, n); cmp(w2, h, ry, n, 1e-4); free(h);
    snprintf(w2, sizeof w2, "bn mean %s", t); h = host(dm, C); cmp(w2, h, rmean, C, 1e-5); free(h);
    snprintf(w2, sizeof w2, "bn invstd %s", t); h = host(di, C); cmp(w2, h, rinv, C, 1e-5); free(h);
    snprintf(w2, sizeof w2, "bn running_mean %s", t); h = host(drm, C); cmp(w2, h, rrm, C, 1e-5); free(h);
    snprintf(w2, sizeof w2, "bn running_var %s", t); h = host(drv, C); cmp(w2, h, rrv, C, 1e-5); free(h);
    snprintf(w2, sizeof w2, "bn gx %s", t); h = host(dgx, n); cmp(w2, h, rgx, n, 1e-4); free(h);
    snprintf(w2, sizeof w2, "bn gw %s", t); h = host(dgw, C); cmp(w2, h, rgw, C, 1e-4); free(h);
    snprintf(w2, sizeof w2, "bn gb %s", t); h = host(dgb, C); cmp(w2, h, rgb, C, 1e-4); free(h);
    /* eval with the updated running stats, backward with constants */
    CK(B->batch_norm_eval(dx, N, C, HW, affine ? dw : NULL, affine ? db : NULL, eps, drm, drv, dy, dm, di));
    CK(B->batch_norm_backward(dx, dgy, N, C, HW, dm, di, affine ? dw : NULL, false, dgx, NULL, NULL));
    for (long c = 0; c < C; c++) {
        double is = 1 / sqrt((double)(float)rrv[c] + eps), wc = affine ? w[c] : 1, bc = affine ? b[c] : 0;
        for (long i = 0; i < N; i++) for (long j = 0; j < HW; j++) { size_t k = (i * C + c) * HW + j; ry[k] = (x[k] - (float)rrm[c]) * is * wc + bc; rgx[k] = gy[k] * is * wc; }
    }
    snprintf(w2, sizeof w2, "bn eval y %s", t); h = host(dy, n); cmp(w2, h, ry, n, 1e-4); free(h);
    snprintf(w2, sizeof w2, "bn eval gx %s", t); h = host(dgx, n); cmp(w2, h, rgx, n, 1e-4); free(h);
    B->free(dx); B->free(dgy); B->free(dw); B->free(db); B->free(drm); B->free(drv); B->free(dy); B->free(dm); B->free(di); B->free(dgx); B->free(dgw); B->free(dgb);
    free(x); free(gy); free(w); free(b); free(rm); free(rv); free(mean); free(var); free(ry); free(rgx); free(rgw); free(rgb); free(rrm); free(rrv); free(rinv); free(rmean);
}

int main(void) {
    B = md_backend_cuda();
    printf("abi %d name %s\n", B->abi, B->name);
    if (B->init(5) == 0) { printf("init(5) should fail\n"); fails++; } else printf("init(5): %s\n", B->error());
    if (B->init(0)) { printf("init: %s\n", B->error()); return 1; }
    CK(B->init(0));
    printf("device: %s\n", B->describe());
    size_t f, t; CK(B->mem_info(&f, &t)); printf("mem %zu / %zu\n", f, t);
    void *z = B->alloc(0); printf("alloc(0) = %p\n", z); B->free(z);
    for (int ta = 0; ta < 2; ta++) for (int tb = 0; tb < 2; tb++) test_gemm(ta, tb, 37, 29, 53, 0.5f);
    test_gemm(0, 0, 5, 7, 0, 0.5f); test_gemm(1, 0, 5, 7, 0, 0.0f); test_gemm(0, 1, 300, 200, 700, 0.0f);
    md__conv_shape s1 = { .N = 2, .C = 6, .H = 11, .W = 13, .O = 8, .KH = 3, .KW = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1, .dh = 1, .dw = 1, .G = 2 };
    s1.OH = (s1.H + 2 * s1.ph - s1.dh * (s1.KH - 1) - 1) / s1.sh + 1; s1.OW = (s1.W + 2 * s1.pw - s1.dw * (s1.KW - 1) - 1) / s1.sw + 1;
    test_conv(s1, 1);
    md__conv_shape s2 = { .N = 3, .C = 5, .H = 9, .W = 10, .O = 7, .KH = 3, .KW = 2, .sh = 1, .sw = 1, .ph = 2, .pw = 1, .dh = 2, .dw = 1, .G = 1 };
    s2.OH = (s2.H + 2 * s2.ph - s2.dh * (s2.KH - 1) - 1) / s2.sh + 1; s2.OW = (s2.W + 2 * s2.pw - s2.dw * (s2.KW - 1) - 1) / s2.sw + 1;
    test_conv(s2, 0);
    md__conv_shape s3 = { .N = 2, .C = 64, .H = 28, .W = 28, .O = 128, .KH = 1, .KW = 1, .sh = 2, .sw = 2, .ph = 0, .pw = 0, .dh = 1, .dw = 1, .G = 1 };
    s3.OH = 14; s3.OW = 14;
    test_conv(s3, 1);
    md__conv_shape s4 = { .N = 1, .C = 3, .H = 64, .W = 48, .O = 16, .KH = 7, .KW = 7, .sh = 2, .sw = 2, .ph = 3, .pw = 3, .dh = 1, .dw = 1, .G = 1 };
    s4.OH = 32; s4.OW = 24;
    test_conv(s4, 0);
    md__conv_shape s5 = s1; s5.N = 0; test_conv(s5, 1);
    test_bn(3, 5, 37, 1, 0.0f);
    test_bn(2, 7, 300, 0, 100.0f);
    test_bn(2, 64, 65536, 1, 0.5f);
    test_bn(8, 2048, 64, 1, 0.0f);
    test_bn(16, 3, 1, 1, 0.0f);
    printf("%s: %d failure(s)\n", fails ? "FAILED" : "PASSED", fails);
    return fails != 0;
}
