/* Mixed precision on the GPU (skipped without one):
 *  - convolutions (forward, input and weight gradients) and linear layers
 *    with fp16 and bf16 operands on CUDA against f64 references computed
 *    from operands rounded by the CPU's functions (md_f16_round,
 *    md_bf16_round), with bounds argued from the rounding, and the bf16
 *    convolution against the CPU's bf16 path;
 *  - the fused unscale + overflow flag (unscale_f32_multi) on device
 *    buffers with inf and NaN planted, against the CPU backend's bits;
 *  - bf16 refused with a message naming the GPU where it has no bf16;
 *  - the tiny RetinaNet of tests/configs/retinanet_tiny_fp16.cfg trained
 *    with fp16 and dynamic loss scaling on CUDA: its first 10 losses within
 *    1% of the f32 run on the CPU. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "conv_ref.h"
#include "cudalib.h"
#include "internal.h"

TestSuite(cuda_amp, .init = cuda_setup, .fini = cuda_teardown, .timeout = 600);

static const double U = 1.0 / (1 << 23) / 2;   /* f32 unit roundoff, 2^-24 */

/* The GPU can compute in dt (bf16 needs compute capability 8.0). */
static bool can(md_dtype dt) {
    const md_backend *be = md__backend_table(MD_CUDA);
    int prev;
    if (!be || !be->set_compute_dtype || be->set_compute_dtype(dt, &prev) != 0) return false;
    be->set_compute_dtype(prev, NULL);
    return true;
}

static float round_to(md_dtype dt, float v) { return dt == MD_F16 ? md_f16_round(v) : md_bf16_round(v); }
/* unit roundoff of the 16-bit type's output rounding */
static double u_of(md_dtype dt) { return dt == MD_F16 ? 1.0 / 2048 : 1.0 / 256; }
/* its absolute error floor (fp16's subnormal spacing / 2) */
static double floor_of(md_dtype dt) { return dt == MD_F16 ? 0x1p-25 : 0; }
static const char *name_of(md_dtype dt) { return dt == MD_F16 ? "fp16" : "bf16"; }

/* ------------------------------------------------------ convolutions -- */

static const conv_case conv_cases[] = {
    { 2, 16, 12, 12, 8, 3, 1, 1, 1, 1 },
    { 1, 24, 11, 13, 12, 3, 1, 1, 1, 1 },
    { 1, 8, 10, 7, 6, 3, 1, 2, 2, 2 },      /* dilation and groups */
    { 2, 3, 23, 21, 8, 7, 2, 3, 1, 1 },     /* stem-like 7x7/2 */
    { 2, 17, 13, 11, 19, 1, 1, 0, 1, 1 },   /* 1x1 */
    { 2, 16, 15, 14, 32, 3, 2, 1, 1, 1 },   /* 3x3/2 */
    { 1, 64, 9, 9, 64, 3, 1, 1, 1, 1 },     /* Tensor Core friendly channel counts */
};

/* |got - (ref + bias)| <= f32 sums' error (4 (K + 2) u S: sums in a few
 * blocks), plus the 16-bit result's rounding (u_lp of the sum, and fp16's
 * subnormal floor). An unrounded operand path is off by ~u_lp S, a wrong
 * rounding by more: both far above the bound. Returns the worst ratio. */
static double check(md_dtype dt, const char *what, const conv_case *c, const float *got, const double *ref,
                    const double *s, const float *bias, int64_t per_c, int64_t C, int64_t n, int64_t K) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double add = bias ? bias[i / per_c % C] : 0.0, sums = 4.0 * (double)(K + 2) * U * s[i];
        double bound = sums + u_of(dt) * (fabs(ref[i]) + sums) + floor_of(dt) + 2 * U * fabs(ref[i] + add) + 1e-30;
        double err = fabs(got[i] - (ref[i] + add));
        if (err / bound > worst) worst = err / bound;
        cr_assert_leq(err, bound, "%s %s N%lld C%lld %lldx%lld O%lld k%lld s%d p%d d%d g%d: [%lld] = %.9g, f64 %.9g "
                      "(sum|p| %g, bound %g)", name_of(dt), what, (long long)c->N, (long long)c->C, (long long)c->H,
                      (long long)c->W, (long long)c->O, (long long)c->K, c->stride, c->pad, c->dil, c->groups,
                      (long long)i, got[i], ref[i] + add, s[i], bound);
    }
    cr_log_info("%s %s: worst error / bound %.3g", name_of(dt), what, worst);
    return worst;
}

/* conv on CUDA under autocast dt with bias, backward from a random gy;
 * outputs and the CPU gradients of x and w through md_tensor_to. */
static void conv_case_run(md_dtype dt, const conv_case *c) {
    md_conv2d_params p = { c->stride, c->stride, c->pad, c->pad, c->dil, c->dil, c->groups };
    md_tensor *x = randn_param(ctx, MD_DIMS(c->N, c->C, c->H, c->W), 11);
    md_tensor *w = randn_param(ctx, MD_DIMS(c->O, c->C / c->groups, c->K, c->K), 12);
    md_tensor *b = randn_param(ctx, MD_DIMS(c->O), 13);
    x->grad = w->grad = b->grad = NULL;
    md_ctx_set_autocast(ctx, dt);
    md_tensor *y = md_conv2d(ctx, md_tensor_to(ctx, x, gpu), md_tensor_to(ctx, w, gpu), md_tensor_to(ctx, b, gpu), p);
    cr_assert(y, "%s", md_ctx_error(ctx)->msg);
    cr_assert_eq(y->device, MD_CUDA);
    int64_t OH = y->shape[2], OW = y->shape[3], ny = md_tensor_numel(y), nx = md_tensor_numel(x);
    int64_t nw = md_tensor_numel(w);
    md_tensor *gy = randn_param(ctx, 4, y->shape, 14);
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, y, md_tensor_to(ctx, gy, gpu), &err), 0, "%s", err.msg);
    md_ctx_set_autocast(ctx, MD_F32);
    md_tensor *yc = to_cpu(y);
    cr_assert(x->grad && w->grad && b->grad);
    double *r = calloc((size_t)(2 * (ny + nx + nw)), sizeof(double));
    double *ry = r, *sy = r + ny, *rx = sy + ny, *sx = rx + nx, *rw = sx + nx, *sw = rw + nw;
    conv_ref(c, dt == MD_F16 ? md_f16_round : md_bf16_round, OH, OW, md_f32(x), md_f32(w), md_f32(gy), ry, sy, rx, sx,
             rw, sw);
    int64_t Kf = c->C / c->groups * c->K * c->K;
    check(dt, "forward", c, md_f32(yc), ry, sy, md_f32(b), OH * OW, c->O, ny, Kf);
    check(dt, "input gradient", c, md_f32(x->grad), rx, sx, NULL, 1, 1, nx, c->O / c->groups * c->K * c->K);
    check(dt, "weight gradient", c, md_f32(w->grad), rw, sw, NULL, 1, 1, nw, c->N * OH * OW);
    /* the bias gradient stays f32: the sum of gy over (n, h, w) */
    for (int64_t o = 0; o < c->O; o++) {
        double ref = 0, s = 0;
        for (int64_t n = 0; n < c->N; n++)
            for (int64_t k = 0; k < OH * OW; k++) {
                double v = md_f32(gy)[(n * c->O + o) * OH * OW + k];
                ref += v;
                s += fabs(v);
            }
        cr_assert_leq(fabs(md_f32(b->grad)[o] - ref), 4.0 * (double)(c->N * OH * OW + 2) * U * s + 1e-30);
    }
    /* bf16: the CPU's bf16 path approximates the same reference (f32 output
     * there, so only the GPU's output rounding separates the two) */
    if (dt == MD_BF16 && md_amp_cpu_kernel()) {
        md_ctx_set_autocast(ctx, MD_BF16);
        md_tensor *yh = md_conv2d(ctx, x, w, b, p);
        md_ctx_set_autocast(ctx, MD_F32);
        cr_assert(yh, "%s", md_ctx_error(ctx)->msg);
        for (int64_t i = 0; i < ny; i++) {
            double sums = 4.0 * (double)(Kf + 2) * U * sy[i], ref = ry[i] + md_f32(b)[i / (OH * OW) % c->O];
            double bound = 2 * sums + u_of(dt) * (fabs(ry[i]) + sums) + 4 * U * fabs(ref) + 1e-30;
            cr_assert_leq(fabs(md_f32(yc)[i] - md_f32(yh)[i]), bound, "bf16 forward [%lld]: cuda %.9g, cpu %.9g",
                          (long long)i, md_f32(yc)[i], md_f32(yh)[i]);
        }
    }
    free(r);
    md_tensor_free(x), md_tensor_free(w), md_tensor_free(b), md_tensor_free(gy);
    md_ctx_step_reset(ctx);
}

static void conv_all(md_dtype dt) {
    NEED_GPU();
    if (!can(dt)) cr_skip_test("%s: this GPU (%s) cannot compute in it", name_of(dt), md_device_describe(gpu));
    for (size_t i = 0; i < sizeof conv_cases / sizeof *conv_cases; i++) conv_case_run(dt, &conv_cases[i]);
    /* the same shapes again: the cached (shape, dtype) plans, and f32 after
     * them is exact f32 again (no stale 16-bit descriptors) */
    conv_case_run(dt, &conv_cases[0]);
    md_conv2d_params p = { 1, 1, 1, 1, 1, 1, 1 };
    const conv_case *c = &conv_cases[0];
    md_tensor *x = randn_param(ctx, MD_DIMS(c->N, c->C, c->H, c->W), 11);
    md_tensor *w = randn_param(ctx, MD_DIMS(c->O, c->C, c->K, c->K), 12);
    md_tensor *yg = to_cpu(md_conv2d(ctx, md_tensor_to(ctx, x, gpu), md_tensor_to(ctx, w, gpu), NULL, p));
    md_tensor *yc = md_conv2d(ctx, x, w, NULL, p);
    assert_close(yg, yc, 1e-4, "f32 conv after mixed precision");
    md_tensor_free(x), md_tensor_free(w);
    md_ctx_step_reset(ctx);
}

Test(cuda_amp, conv_fp16_forward_and_gradients) { conv_all(MD_F16); }
Test(cuda_amp, conv_bf16_forward_and_gradients) { conv_all(MD_BF16); }

/* ------------------------------------------------------------ linear -- */

/* y = x w^T + b through cublasGemmEx (f32 output: no output rounding):
 * against f64 of rounded operands within 4 (K + 2) u S; gradients too. */
static void linear_all(md_dtype dt) {
    NEED_GPU();
    if (!can(dt)) cr_skip_test("%s: this GPU (%s) cannot compute in it", name_of(dt), md_device_describe(gpu));
    const int64_t R = 37, IN = 70, OUT = 19;
    md_tensor *x = randn_param(ctx, MD_DIMS(R, IN), 21), *w = randn_param(ctx, MD_DIMS(OUT, IN), 22);
    md_tensor *b = randn_param(ctx, MD_DIMS(OUT), 23), *gy = randn_param(ctx, MD_DIMS(R, OUT), 24);
    x->grad = w->grad = NULL;
    md_ctx_set_autocast(ctx, dt);
    md_tensor *y = md_linear(ctx, md_tensor_to(ctx, x, gpu), md_tensor_to(ctx, w, gpu), md_tensor_to(ctx, b, gpu));
    cr_assert(y, "%s", md_ctx_error(ctx)->msg);
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, y, md_tensor_to(ctx, gy, gpu), &err), 0, "%s", err.msg);
    md_ctx_set_autocast(ctx, MD_F32);
    md_tensor *yc = to_cpu(y);
    const float *X = md_f32(x), *W = md_f32(w), *G = md_f32(gy);
    double worst = 0;
    for (int64_t r = 0; r < R; r++)
        for (int64_t o = 0; o < OUT; o++) {
            double ref = md_f32(b)[o], s = fabs(ref);
            for (int64_t k = 0; k < IN; k++) {
                double pr = (double)round_to(dt, X[r * IN + k]) * round_to(dt, W[o * IN + k]);
                ref += pr;
                s += fabs(pr);
            }
            double e = fabs(md_f32(yc)[r * OUT + o] - ref), bound = 4.0 * (IN + 2) * U * s + 1e-30;
            if (e / bound > worst) worst = e / bound;
            cr_assert_leq(e, bound, "%s y[%lld,%lld] = %.9g, f64 %.9g", name_of(dt), (long long)r, (long long)o,
                          md_f32(yc)[r * OUT + o], ref);
        }
    for (int64_t r = 0; r < R; r++)   /* gx = gy w */
        for (int64_t k = 0; k < IN; k++) {
            double ref = 0, s = 0;
            for (int64_t o = 0; o < OUT; o++) {
                double pr = (double)round_to(dt, G[r * OUT + o]) * round_to(dt, W[o * IN + k]);
                ref += pr;
                s += fabs(pr);
            }
            cr_assert_leq(fabs(md_f32(x->grad)[r * IN + k] - ref), 4.0 * (OUT + 2) * U * s + 1e-30, "%s gx", name_of(dt));
        }
    for (int64_t o = 0; o < OUT; o++)   /* gw = gy^T x */
        for (int64_t k = 0; k < IN; k++) {
            double ref = 0, s = 0;
            for (int64_t r = 0; r < R; r++) {
                double pr = (double)round_to(dt, G[r * OUT + o]) * round_to(dt, X[r * IN + k]);
                ref += pr;
                s += fabs(pr);
            }
            cr_assert_leq(fabs(md_f32(w->grad)[o * IN + k] - ref), 4.0 * (R + 2) * U * s + 1e-30, "%s gw", name_of(dt));
        }
    cr_log_info("%s linear: worst error / bound %.3g", name_of(dt), worst);
    md_tensor_free(x), md_tensor_free(w), md_tensor_free(b), md_tensor_free(gy);
    md_ctx_step_reset(ctx);
}

Test(cuda_amp, linear_fp16) { linear_all(MD_F16); }
Test(cuda_amp, linear_bf16) { linear_all(MD_BF16); }

/* bf16 where the GPU has none is one clear error naming the GPU. */
Test(cuda_amp, bf16_refused_without_support) {
    NEED_GPU();
    md_error err = { 0 };
    int rc = md_amp_enable(ctx, "bf16", false, gpu, "mixed_precision", &err);
    if (can(MD_BF16)) {
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(md_ctx_autocast(ctx), MD_BF16);
    } else {
        cr_assert_neq(rc, 0);
        cr_assert(strstr(err.msg, "compute capability 8.0") && strstr(err.msg, md_device_describe(gpu)), "%s",
                  err.msg);
    }
    md_ctx_set_autocast(ctx, MD_F32);
    cr_assert_eq(md_amp_enable(ctx, "fp16", true, gpu, "fp16", &err), 0, "%s", err.msg);
    cr_assert_eq(md_ctx_autocast(ctx), MD_F16);
    md_ctx_set_autocast(ctx, MD_F32);
}

/* ----------------------------------------------------------- unscale -- */

#define N_T 61   /* more tensors than one launch takes (48) */

/* unscale_f32_multi on device buffers (sizes around the launch chunk, an
 * empty one, one spanning many chunks) with an inf or NaN planted in
 * various buffers, or none: the flag as planted and the values the CPU
 * backend's bits. */
Test(cuda_amp, unscale_flags_planted_inf_and_nan) {
    NEED_GPU();
    const md_backend *be = md__backend_table(MD_CUDA), *cpu = md__backend_table(MD_CPU);
    static const int64_t sizes[] = { 1, 0, 255, 256, 257, 16383, 16384, 16385, 40000, 7, 100003 };
    int64_t n[N_T];
    float *h[N_T], *c[N_T], *d[N_T];
    const float inv = (float)(3.0 / 65536.0);
    static const struct { int t; int64_t k; float v; } plants[] = {
        { -1, 0, 0 }, { 0, 0, INFINITY }, { 60, 0, NAN }, { 10, 100002, -INFINITY }, { 8, 16384, NAN },
        { 50, 0, -NAN } };
    for (size_t pi = 0; pi < sizeof plants / sizeof *plants; pi++) {
        md_rng r;
        md_rng_seed(&r, 7 + pi);
        for (int t = 0; t < N_T; t++) {
            n[t] = sizes[t % 11] + (t >= 11 && sizes[t % 11] ? t : 0);
            size_t bytes = sizeof(float) * (size_t)(n[t] ? n[t] : 1);
            h[t] = malloc(bytes), c[t] = malloc(bytes);
            for (int64_t k = 0; k < n[t]; k++) h[t][k] = (float)(md_rng_normal(&r) * 3e4);
            if (plants[pi].t == t && plants[pi].k < n[t]) h[t][plants[pi].k] = plants[pi].v;
            memcpy(c[t], h[t], bytes);
            d[t] = be->alloc(bytes);
            cr_assert(d[t], "%s", be->error());
            cr_assert_eq(be->copy(d[t], h[t], bytes, MD_COPY_H2D), 0, "%s", be->error());
        }
        int fd = -1, fc = -1;
        cr_assert_eq(be->unscale_f32_multi(N_T, d, n, inv, &fd), 0, "%s", be->error());
        cr_assert_eq(cpu->unscale_f32_multi(N_T, c, n, inv, &fc), 0);
        cr_assert_eq(fd, plants[pi].t >= 0, "plant %zu: device flag %d", pi, fd);
        cr_assert_eq(fc, fd);
        for (int t = 0; t < N_T; t++) {
            if (n[t]) cr_assert_eq(be->copy(h[t], d[t], sizeof(float) * (size_t)n[t], MD_COPY_D2H), 0);
            for (int64_t k = 0; k < n[t]; k++)
                cr_assert(isnan(c[t][k]) ? isnan(h[t][k]) : !memcmp(&h[t][k], &c[t][k], 4),
                          "plant %zu tensor %d [%lld]: cuda %a, cpu %a", pi, t, (long long)k, h[t][k], c[t][k]);
            be->free(d[t]);
            free(h[t]), free(c[t]);
        }
    }
}

/* ------------------------------------------------------------ training -- */

static char dir[64];

static int train(const char *work, const char *extra) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-run --plugin-dir plugins tests/configs/retinanet_tiny_fp16.cfg --work-dir %s/%s --seed 0 "
             "--deterministic --cfg-options data.train.data_root=%s/data/ %s >%s/%s.out 2>&1",
             dir, work, dir, extra, dir, work);
    return system(cmd);
}

/* loss and loss_scale of <work>'s first `max` training iterations (5 an epoch) */
static int read_log(const char *work, double *loss, double *scale, int max) {
    char wd[512];
    snprintf(wd, sizeof wd, "%s/%s", dir, work);
    return test_read_train_log(wd, 5, loss, scale, max);
}

static char *slurp(const char *work) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s.out", dir, work);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "no %s", path);
    static char text[1 << 18];
    size_t k = fread(text, 1, sizeof text - 1, f);
    text[k] = 0;
    fclose(f);
    return text;
}

Test(cuda_amp, retinanet_fp16_dynamic_on_cuda_tracks_cpu_f32) {
    NEED_GPU();
    test_tmpdir(dir, sizeof dir, "mmdet_cudaamp");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s/data --train 16 --val 4 --seed 1 --classes 3 >/dev/null", dir);
    cr_assert_eq(system(cmd), 0, "mmdet-shapes failed");
    cr_assert_eq(train("f32", "fp16=None --device cpu"), 0, "%s", slurp("f32"));
    cr_assert_eq(train("fp16", "--device cuda"), 0, "%s", slurp("fp16"));
    char *out = slurp("fp16");
    cr_assert(strstr(out, "mixed precision: fp16 on cuda:0"), "%s", out);
    cr_assert(!strstr(out, "without a GPU"), "%s", out);
    double lf[10] = { 0 }, lm[10] = { 0 }, sf[10], sm[10];
    cr_assert_eq(read_log("f32", lf, sf, 10), 10);
    cr_assert_eq(read_log("fp16", lm, sm, 10), 10);
    for (int k = 0; k < 10; k++) {
        cr_log_info("iteration %d: cpu f32 %.6g, cuda fp16 %.6g (rel %.2g), loss_scale %g", k + 1, lf[k], lm[k],
                    fabs(lm[k] - lf[k]) / lf[k], sm[k]);
        cr_assert(sm[k] > 0, "iteration %d: no loss_scale logged", k + 1);
        cr_assert_leq(fabs(lm[k] - lf[k]), 1e-2 * lf[k], "iteration %d: cuda fp16 %.6g, cpu f32 %.6g (scale %g)",
                      k + 1, lm[k], lf[k], sm[k]);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
