/* Mixed precision: bf16 rounding against torch's .bfloat16(), the loss
 * scaler against mmcv's LossScaler (tests/golden/amp_golden.py), the bf16
 * GEMM and convolutions against f64 references under every bf16 kernel
 * this CPU runs, and the loss scaler's configuration forms. The training
 * runs are in test_amp_train.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "conv_ref.h"
#include "testlib.h"
#include "backends/cpu/gemm_bf16.h"
#include "backends/cpu/winograd.h"
#include "internal.h"

static md_ctx *ctx;
static void setup(void) {
    ctx = md_ctx_new(NULL);
    cr_assert(ctx);
    md_log_set_quiet(ctx, true);
}
static void teardown(void) {
    md__bf16k_set(-1);
    md__winograd_set(-1);
    md_ctx_free(ctx);
}
TestSuite(amp, .init = setup, .fini = teardown);

static const double U = 1.0 / (1 << 23) / 2;   /* f32 unit roundoff, 2^-24 */
static float *rand_floats(int64_t n, uint64_t seed);

/* Runs fn under each bf16 kernel this CPU supports; the others are named
 * as skipped (they compile everywhere, run only where the CPU has them). */
static int each_kernel(void (*fn)(int id)) {
    int ran = 0;
    for (int id = 0; id < MD_BF16K_COUNT; id++) {
        if (!md__bf16k_supported(id)) {
            cr_log_info("bf16 kernel %s: not supported by this CPU, skipped", md__bf16k_name(id));
            continue;
        }
        cr_assert_eq(md__bf16k_set(id), 0);
        fn(id);
        ran++;
    }
    md__bf16k_set(-1);
    return ran;
}

Test(amp, bf16_rounding_matches_torch) {
    md_st *st = golden_open("amp_bf16_round");
    md_tensor *x = golden_get(ctx, st, "x"), *y = golden_get(ctx, st, "y");
    int64_t n = md_tensor_numel(x);
    cr_assert_gt(n, 8000);
    for (int64_t i = 0; i < n; i++) {
        float r = md_bf16_round(md_f32(x)[i]), t = md_f32(y)[i];
        if (isnan(t)) {
            cr_assert(isnan(r), "x[%lld] = %a: torch NaN, ours %a", (long long)i, md_f32(x)[i], r);
            continue;
        }
        cr_assert(!memcmp(&r, &t, 4), "x[%lld] = %a (%.9g): torch %a, ours %a", (long long)i, md_f32(x)[i],
                  md_f32(x)[i], t, r);
    }
    md_st_close(st);
}

/* fp16: the rounding of the GPU's casts (backends/precision.h), bit for
 * bit torch's .half() on the CPU, NaNs as NaNs */
Test(amp, f16_rounding_matches_torch) {
    md_st *st = golden_open("amp_f16_round");
    md_tensor *x = golden_get(ctx, st, "x"), *y = golden_get(ctx, st, "y");
    int64_t n = md_tensor_numel(x), subnormal = 0, inf = 0;
    cr_assert_gt(n, 8000);
    for (int64_t i = 0; i < n; i++) {
        float r = md_f16_round(md_f32(x)[i]), t = md_f32(y)[i];
        if (isnan(t)) {
            cr_assert(isnan(r), "x[%lld] = %a: torch NaN, ours %a", (long long)i, md_f32(x)[i], r);
            continue;
        }
        cr_assert(!memcmp(&r, &t, 4), "x[%lld] = %a (%.9g): torch %a, ours %a", (long long)i, md_f32(x)[i],
                  md_f32(x)[i], t, r);
        subnormal += t != 0 && fabsf(t) < 0x1p-14f;
        inf += isinf(t) && !isinf(md_f32(x)[i]);
        /* the 16-bit encoding goes back to the same value */
        uint16_t h = md__f32_to_f16(md_f32(x)[i]);
        cr_assert(!memcmp(&(float){ md__f16_to_f32(h) }, &r, 4));
    }
    cr_assert(subnormal > 100 && inf > 100, "the fixture covers subnormals (%lld) and overflows (%lld)",
              (long long)subnormal, (long long)inf);
    md_st_close(st);
}

/* every fp16 encoding converts to f32 and back to itself (NaNs to NaNs) */
Test(amp, f16_encodings_round_trip) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = md__f16_to_f32((uint16_t)h);
        if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) {
            cr_assert(isnan(f), "%04x", h);
            continue;
        }
        cr_assert_eq(md__f32_to_f16(f), h, "%04x -> %a -> %04x", h, f, md__f32_to_f16(f));
        if ((h & 0x7C00) == 0 && (h & 0x3FF))   /* subnormals: fr 2^-24 */
            cr_assert_eq(fabsf(f), (float)(h & 0x3FF) * 0x1p-24f, "%04x", h);
    }
}

/* The CPU table's compute precision switch: f32 and bf16 only. */
Test(amp, cpu_compute_dtype) {
    const md_backend *be = md__backend_table(MD_CPU);
    int prev = -1;
    cr_assert_neq(be->set_compute_dtype(MD_F16, &prev), 0);
    cr_assert(strstr(be->error(), "no fp16 kernels"), "%s", be->error());
    cr_assert_eq(prev, -1);
    if (!md_amp_cpu_kernel()) return;
    cr_assert_eq(be->set_compute_dtype(MD_BF16, &prev), 0, "%s", be->error());
    cr_assert_eq(prev, MD_F32);
    cr_assert_eq(md__cpu_bf16, 1);
    cr_assert_eq(be->set_compute_dtype(MD_F32, &prev), 0);
    cr_assert_eq(prev, MD_BF16);
    cr_assert_eq(md__cpu_bf16, 0);
    /* an op whose device cannot compute in the context's precision fails, naming it */
    md_tensor *x = randn_param(ctx, MD_DIMS(1, 2, 3, 3), 1), *w = randn_param(ctx, MD_DIMS(2, 2, 1, 1), 2);
    md_ctx_set_autocast(ctx, MD_F16);
    md_tensor *y = md_conv2d(ctx, x, w, NULL, (md_conv2d_params){ 1, 1, 0, 0, 1, 1, 1 });
    md_ctx_set_autocast(ctx, MD_F32);
    cr_assert_null(y);
    cr_assert(strstr(md_ctx_error(ctx)->msg, "no fp16 kernels"), "%s", md_ctx_error(ctx)->msg);
    md_tensor_free(x), md_tensor_free(w);
    md_ctx_step_reset(ctx);
}

/* GradScaler.unscale_ on the CPU backend (the per-element function the
 * CUDA kernel runs): values times float(1/scale), inf and NaN found
 * wherever they are planted, among several buffers of odd sizes. */
Test(amp, unscale_finds_planted_inf_and_nan) {
    const md_backend *be = md__backend_table(MD_CPU);
    enum { T = 5 };
    static const int64_t sizes[T] = { 1, 7, 0, 1000, 33 };
    float *g[T], *ref[T];
    int64_t n[T];
    const float inv = (float)(1.0 / 65536.0 * 3.0);   /* not a power of two: products round */
    for (int plant = -1; plant < 6; plant++) {   /* -1: nothing planted */
        for (int t = 0; t < T; t++) {
            n[t] = sizes[t];
            g[t] = rand_floats(n[t], 40 + (uint64_t)t);
            ref[t] = malloc(sizeof(float) * (size_t)(n[t] ? n[t] : 1));
            for (int64_t k = 0; k < n[t]; k++) g[t][k] *= 1e4f;
        }
        static const int where[6][2] = { { 0, 0 }, { 1, 6 }, { 3, 999 }, { 3, 500 }, { 4, 0 }, { 4, 32 } };
        static const float what[6] = { INFINITY, -INFINITY, NAN, INFINITY, -NAN, NAN };
        if (plant >= 0) g[where[plant][0]][where[plant][1]] = what[plant];
        for (int t = 0; t < T; t++)
            for (int64_t k = 0; k < n[t]; k++) ref[t][k] = (float)((double)g[t][k] * inv);   /* one rounding */
        int found = -1;
        cr_assert_eq(be->unscale_f32_multi(T, g, n, inv, &found), 0);
        cr_assert_eq(found, plant >= 0, "planted %d: found %d", plant, found);
        for (int t = 0; t < T; t++) {
            for (int64_t k = 0; k < n[t]; k++)
                cr_assert(isnan(ref[t][k]) ? isnan(g[t][k]) : g[t][k] == ref[t][k], "plant %d buffer %d [%lld]",
                          plant, t, (long long)k);
            free(g[t]), free(ref[t]);
        }
    }
}

static md_loss_scaler scaler_from(const char *text) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(text, "<test>", &err);
    cr_assert(root, "%s", err.msg);
    md_loss_scaler s;
    cr_assert_eq(md_loss_scaler_init(&s, md_cfg_get(root, "loss_scale"), "loss_scale", &err), 0, "%s", err.msg);
    md_cfg_free(root);
    return s;
}

Test(amp, loss_scaler_matches_mmcv) {
    md_st *st = golden_open("amp_loss_scaler");
    const char *names[] = { "a", "b" };
    for (int p = 0; p < 2; p++) {
        char key[32], text[128];
        snprintf(key, sizeof key, "%s_window", names[p]);
        md_tensor *win = golden_get(ctx, st, key);
        snprintf(key, sizeof key, "%s_overflow", names[p]);
        md_tensor *ov = golden_get(ctx, st, key);
        snprintf(key, sizeof key, "%s_scale", names[p]);
        md_tensor *sc = golden_get(ctx, st, key);
        snprintf(text, sizeof text, "loss_scale = { init_scale = 65536.0; growth_interval = %lld; };",
                 (long long)md_i64(win)[0]);
        md_loss_scaler s = scaler_from(text);
        int64_t n = md_tensor_numel(ov);
        int grew = 0, backed = 0;
        for (int64_t i = 0; i < n; i++) {
            int ch = md_loss_scaler_update(&s, md_i64(ov)[i] != 0);
            grew += ch > 0;
            backed += ch < 0;
            cr_assert_eq(s.scale, md_f32(sc)[i], "pattern %s step %lld: scale %g, mmcv %g", names[p], (long long)i,
                         s.scale, md_f32(sc)[i]);
        }
        cr_assert(grew > 0 && backed > 0, "pattern %s exercises both directions", names[p]);
    }
    md_st_close(st);
}

Test(amp, loss_scale_config_forms) {
    md_loss_scaler s = scaler_from("loss_scale = \"dynamic\";");
    cr_assert(s.enabled && s.dynamic && s.scale == 65536.0 && s.growth_factor == 2.0 && s.backoff_factor == 0.5 &&
              s.growth_interval == 2000);
    s = scaler_from("loss_scale = 512.0;");
    cr_assert(!s.dynamic && s.scale == 512.0);
    cr_assert_eq(md_loss_scaler_update(&s, true), 0);   /* static: the scale is set back */
    cr_assert_eq(s.scale, 512.0);
    s = scaler_from("loss_scale = { init_scale = 1024.0; growth_factor = 4.0; backoff_factor = 0.25; "
                    "growth_interval = 2; };");
    cr_assert_eq(md_loss_scaler_update(&s, false), 0);
    cr_assert_eq(md_loss_scaler_update(&s, false), 1);
    cr_assert_eq(s.scale, 4096.0);
    cr_assert_eq(md_loss_scaler_update(&s, true), -1);
    cr_assert_eq(s.scale, 1024.0);
    /* growth stops short of inf */
    s = scaler_from("loss_scale = { init_scale = 3e38; growth_interval = 1; };");
    cr_assert_eq(md_loss_scaler_update(&s, false), 0);
    cr_assert_eq(s.scale, (float)3e38);
    /* the state as GradScaler.state_dict, and back */
    s = scaler_from("loss_scale = { init_scale = 256.0; growth_interval = 7; };");
    md_loss_scaler_update(&s, false);
    char json[256];
    cr_assert_eq(md_loss_scaler_state_json(&s, json, sizeof json), 0);
    cr_assert(strstr(json, "\"scale\": 256") && strstr(json, "\"_growth_tracker\": 1") &&
              strstr(json, "\"growth_interval\": 7"), "%s", json);
    md_loss_scaler t = scaler_from("loss_scale = \"dynamic\";");
    md_error err = { 0 };
    cr_assert_eq(md_loss_scaler_load_json(&t, json, &err), 0, "%s", err.msg);
    cr_assert(t.scale == 256 && t.growth_tracker == 1 && t.growth_interval == 7);

    static const struct { const char *text, *want; } bad[] = {
        { "loss_scale = \"dynamc\";", "\"dynamic\"" },
        { "loss_scale = -1.0;", "must be positive" },
        { "loss_scale = { growth_factor = 0.5; };", "growth_factor must be > 1" },
        { "loss_scale = { init_scal = 2.0; };", "did you mean 'init_scale'" },
        { "loss_scale = { scale_window = 1000; };", "unknown key 'scale_window'" },
        { "loss_scale = [1, 2];", "a number, \"dynamic\" or a group" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        md_cfg *root = md_cfg_parse(bad[i].text, "<test>", &err);
        cr_assert(root);
        md_error e = { 0 };
        cr_assert_neq(md_loss_scaler_init(&s, md_cfg_get(root, "loss_scale"), "loss_scale", &e), 0, "%s", bad[i].text);
        cr_assert(strstr(e.msg, bad[i].want), "%s: %s", bad[i].text, e.msg);
        md_cfg_free(root);
    }
}

Test(amp, enable_refuses_what_cannot_run) {
    md_error err = { 0 };
    md_device cpu = { .type = MD_CPU }, gpu = { .type = MD_CUDA };
    cr_assert_neq(md_amp_enable(ctx, "fp8", false, cpu, "mixed_precision", &err), 0);
    cr_assert(strstr(err.msg, "neither \"bf16\" nor \"fp16\""), "%s", err.msg);
    cr_assert_neq(md_amp_enable(ctx, "fp16", false, cpu, "mixed_precision", &err), 0);
    cr_assert(strstr(err.msg, "needs a GPU"), "%s", err.msg);
    /* a GPU: bf16 runs where the GPU computes it (compute capability 8.0);
     * without one (or with an older one) an error naming the device */
    if (md_amp_enable(ctx, "bf16", false, gpu, "mixed_precision", &err) != 0) {
        cr_assert(strstr(err.msg, "mixed_precision: bf16 mixed precision on cuda:0"), "%s", err.msg);
        cr_assert_eq(md_ctx_autocast(ctx), MD_F32);
    } else {
        cr_assert_eq(md_ctx_autocast(ctx), MD_BF16);
        md_ctx_set_autocast(ctx, MD_F32);
    }
    if (!md_amp_cpu_kernel()) return;
    cr_assert_eq(md_amp_enable(ctx, "fp16", true, cpu, "fp16", &err), 0, "%s", err.msg);   /* mmdet's fp16 key */
    cr_assert_eq(md_ctx_autocast(ctx), MD_BF16);
}

/* ---------------------------------------------------------------- GEMM -- */

static float *rand_floats(int64_t n, uint64_t seed) {
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    uint64_t s = seed * 2654435761u + 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((double)(s >> 11) / (double)(1ull << 53) * 4.0 - 2.0);
    }
    return p;
}

/* The bound on a bf16 product sum: the products of bf16 values are exact
 * in f32, so the result differs from the f64 sum of the rounded products
 * only by the f32 additions: at most (K + 1) u sum|a_r b_r| (+1 for the
 * accumulate into C). Against the unrounded operands each factor is off
 * by at most 2^-8 relatively (8 significant bits, half an ulp): (2^-7 +
 * 2^-16) sum|a b| more. */
static void gemm_case(int id, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float beta) {
    int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    float *A = rand_floats((ta ? K : M) * lda, 1), *B = rand_floats((tb ? N : K) * ldb, 2);
    float *C = rand_floats(M * ldc, 3), *C0 = malloc(sizeof(float) * (size_t)(M * ldc));
    memcpy(C0, C, sizeof(float) * (size_t)(M * ldc));
    float *work = malloc(sizeof(float) * (md__gemm_bf16_work_floats(M, N, K) + 1));
    md__gemm_bf16(2, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc, work);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double r = beta ? C0[i * ldc + j] : 0, rr = r, s = fabs(r), s0 = s;
            for (int64_t k = 0; k < K; k++) {
                float a = ta ? A[k * lda + i] : A[i * lda + k], b = tb ? B[j * ldb + k] : B[k * ldb + j];
                double p = (double)md_bf16_round(a) * md_bf16_round(b);
                r += p;
                rr += (double)a * b;
                s += fabs(p);
                s0 += fabs((double)a * b);
            }
            double got = C[i * ldc + j];
            cr_assert_leq(fabs(got - r), (double)(K + 2) * U * s + 1e-30,
                          "%s ta %d tb %d %lldx%lldx%lld: C[%lld,%lld] = %.9g, f64 of bf16 operands %.9g",
                          md__bf16k_name(id), ta, tb, (long long)M, (long long)N, (long long)K, (long long)i,
                          (long long)j, got, r);
            cr_assert_leq(fabs(got - rr), (double)(K + 2) * U * s + (1.0 / 128 + 1.0 / 65536) * s0 + 1e-30,
                          "%s ta %d tb %d %lldx%lldx%lld: C[%lld,%lld] = %.9g, f64 of f32 operands %.9g (%g)",
                          md__bf16k_name(id), ta, tb, (long long)M, (long long)N, (long long)K, (long long)i,
                          (long long)j, got, rr, s0);
        }
    free(A), free(B), free(C), free(C0), free(work);
}

static void gemm_all(int id) {
    static const int64_t shapes[][3] = { { 1, 1, 1 }, { 7, 17, 3 }, { 6, 16, 256 }, { 14, 32, 257 },
                                         { 15, 33, 300 }, { 29, 63, 513 }, { 3, 70, 1 }, { 40, 5, 129 } };
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int t = 0; t < 4; t++)
            gemm_case(id, t & 1, t & 2, shapes[s][0], shapes[s][1], shapes[s][2], (s + t) % 2 ? 1.0f : 0.0f);
}

Test(amp, gemm_bf16_against_f64) {
    if (!each_kernel(gemm_all)) cr_skip_test("no bf16 kernel on this CPU (needs AVX2+FMA)");
}

/* -------------------------------------------------------- convolutions -- */

/* Per element |got - ref| <= bound * S (S the sum of |products|): for
 * im2col, bound = (K + 2) u as for the GEMM (the operands are x, w, gy
 * themselves). Winograd multiplies transformed operands, each rounded to
 * bf16 (2^-8 relative), so its products are off by up to ~2^-7 of the
 * transformed terms, whose magnitude the transforms (coefficients of at
 * most 1 over 4x4 tiles) keep within a few times S: bound 2^-5 covers it
 * with margin while still catching an unrounded or wrongly rounded path
 * (those are off by 1e-3 of S, or by O(1)). */
static void check_elems(const char *what, const conv_case *c, const float *got, const double *ref, const double *s,
                        int64_t n, double bound) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(got[i] - ref[i]) / (s[i] + 1e-30);
        if (e > worst) worst = e;
        cr_assert_leq(fabs(got[i] - ref[i]), bound * s[i] + 1e-30,
                      "%s (%s) N%lld C%lld %lldx%lld O%lld k%lld s%d p%d d%d g%d: [%lld] = %.9g, f64 %.9g (sum|p| %g)",
                      what, md__bf16k_name(md__bf16k_current()), (long long)c->N, (long long)c->C, (long long)c->H,
                      (long long)c->W, (long long)c->O, (long long)c->K, c->stride, c->pad, c->dil, c->groups,
                      (long long)i, got[i], ref[i], s[i]);
    }
    cr_log_info("%s: worst |err| / sum|p| %.3g (bound %.3g)", what, worst, bound);
}

static void conv_check_case(const conv_case *c) {
    md_conv2d_params p = { c->stride, c->stride, c->pad, c->pad, c->dil, c->dil, c->groups };
    md_tensor *x = randn_param(ctx, MD_DIMS(c->N, c->C, c->H, c->W), 11);
    md_tensor *w = randn_param(ctx, MD_DIMS(c->O, c->C / c->groups, c->K, c->K), 12);
    md_ctx_set_autocast(ctx, MD_BF16);
    md_tensor *y = md_conv2d(ctx, x, w, NULL, p);
    cr_assert(y, "%s", md_ctx_error(ctx)->msg);
    int64_t OH = y->shape[2], OW = y->shape[3], ny = md_tensor_numel(y), nx = md_tensor_numel(x), nw = md_tensor_numel(w);
    float *gyv = rand_floats(ny, 13);
    md_tensor *gy = md_tensor_from(ctx, MD_F32, 4, y->shape, gyv);
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, y, gy, &err), 0, "%s", err.msg);
    md_ctx_set_autocast(ctx, MD_F32);
    double *r = calloc((size_t)(2 * (ny + nx + nw)), sizeof(double));
    double *ry = r, *sy = r + ny, *rx = sy + ny, *sx = rx + nx, *rw = sx + nx, *sw = rw + nw;
    conv_ref(c, md_bf16_round, OH, OW, md_f32(x), md_f32(w), gyv, ry, sy, rx, sx, rw, sw);
    md__conv_shape s = { .N = c->N, .C = c->C, .H = c->H, .W = c->W, .O = c->O, .KH = c->K, .KW = c->K,
                         .sh = c->stride, .sw = c->stride, .ph = c->pad, .pw = c->pad, .dh = c->dil, .dw = c->dil,
                         .G = c->groups, .OH = OH, .OW = OW };
    bool wino = md__winograd_applies(&s);
    int64_t kdepth = c->C / c->groups * c->K * c->K;
    double b_im2col = (double)(kdepth + 2) * U * 4;   /* K blocks and the thread split add a few additions */
    check_elems("forward", c, md_f32(y), ry, sy, ny, wino ? 1.0 / 32 : b_im2col);
    check_elems("input gradient", c, md_f32(x->grad), rx, sx, nx,
                wino || (c->stride == 1 && c->K == 3) ? 1.0 / 32 : (double)(c->O * c->K * c->K + 2) * U * 4);
    check_elems("weight gradient", c, md_f32(w->grad), rw, sw, nw,
                wino ? 1.0 / 32 : (double)(c->N * OH * OW + 2) * U * 4);
    free(r);
    free(gyv);
    md_tensor_free(x);
    md_tensor_free(w);
    md_ctx_step_reset(ctx);
}

static const conv_case conv_cases[] = {
    { 2, 16, 12, 12, 8, 3, 1, 1, 1, 1 },    /* Winograd */
    { 1, 24, 11, 13, 12, 3, 1, 1, 1, 1 },   /* Winograd, odd maps */
    { 2, 6, 9, 11, 5, 3, 1, 0, 1, 1 },
    { 1, 8, 10, 7, 6, 3, 1, 2, 2, 2 },      /* dilation and groups */
    { 1, 4, 8, 9, 3, 5, 1, 3, 1, 1 },       /* 5x5, pad past the kernel */
    { 2, 3, 23, 21, 8, 7, 2, 3, 1, 1 },     /* stem-like 7x7/2 */
    { 1, 5, 17, 19, 4, 3, 3, 1, 1, 1 },     /* stride 3 */
    { 1, 4, 9, 13, 6, 1, 2, 0, 1, 2 },      /* 1x1/2, groups */
    { 1, 40, 6, 5, 33, 3, 1, 1, 1, 1 },     /* K 360: two K blocks */
    { 2, 17, 13, 11, 19, 1, 1, 0, 1, 1 },   /* 1x1 */
    { 1, 8, 1, 1, 9, 1, 1, 0, 1, 1 },       /* one pixel */
    { 2, 16, 15, 14, 30, 3, 2, 1, 1, 1 },   /* 3x3/2 */
};

static void conv_all(int id) {
    (void)id;
    for (int wino = 1; wino >= 0; wino--) {
        md__winograd_set(wino);
        for (size_t i = 0; i < sizeof conv_cases / sizeof *conv_cases; i++) conv_check_case(&conv_cases[i]);
    }
    md__winograd_set(-1);
}

Test(amp, conv_bf16_forward_and_gradients_against_f64) {
    if (!each_kernel(conv_all)) cr_skip_test("no bf16 kernel on this CPU (needs AVX2+FMA)");
}

static void linear_all(int id) {
    (void)id;
    md_tensor *x = randn_param(ctx, MD_DIMS(37, 70), 21), *w = randn_param(ctx, MD_DIMS(19, 70), 22);
    md_tensor *b = randn_param(ctx, MD_DIMS(19), 23);
    md_ctx_set_autocast(ctx, MD_BF16);
    md_tensor *y = md_linear(ctx, x, w, b);
    cr_assert(y);
    md_error err = { 0 };
    float *gyv = rand_floats(37 * 19, 24);
    cr_assert_eq(md_backward_with(ctx, y, md_tensor_from(ctx, MD_F32, 2, y->shape, gyv), &err), 0, "%s", err.msg);
    md_ctx_set_autocast(ctx, MD_F32);
    for (int64_t r = 0; r < 37; r++)
        for (int64_t o = 0; o < 19; o++) {
            double ref = md_f32(b)[o], s = fabs(ref);
            for (int64_t k = 0; k < 70; k++) {
                double pr = (double)md_bf16_round(md_f32(x)[r * 70 + k]) * md_bf16_round(md_f32(w)[o * 70 + k]);
                ref += pr;
                s += fabs(pr);
            }
            cr_assert_leq(fabs(md_f32(y)[r * 19 + o] - ref), 72 * U * s, "y[%lld,%lld]", (long long)r, (long long)o);
        }
    for (int64_t o = 0; o < 19; o++)   /* gw = gy^T x on rounded operands */
        for (int64_t k = 0; k < 70; k++) {
            double ref = 0, s = 0;
            for (int64_t r = 0; r < 37; r++) {
                double pr = (double)md_bf16_round(gyv[r * 19 + o]) * md_bf16_round(md_f32(x)[r * 70 + k]);
                ref += pr;
                s += fabs(pr);
            }
            cr_assert_leq(fabs(md_f32(w->grad)[o * 70 + k] - ref), 40 * U * s);
        }
    free(gyv);
    md_tensor_free(x), md_tensor_free(w), md_tensor_free(b);
    md_ctx_step_reset(ctx);
}

Test(amp, linear_bf16_against_f64) {
    if (!each_kernel(linear_all)) cr_skip_test("no bf16 kernel on this CPU (needs AVX2+FMA)");
}
