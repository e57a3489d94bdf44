/* Deformable convolution (md_deform_conv2d, md_modulated_deform_conv2d):
 * forward and every gradient against torchvision.ops.deform_conv2d
 * (tests/golden/deform_conv_golden.py) under each GEMM kernel variant and
 * two thread counts; finite differences; mmcv's border rule worked by hand;
 * zero offsets against md_conv2d on a shape of several column tiles; and
 * the argument errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "testlib.h"
#include "backends/cpu/conv_gemm.h"

static md_ctx *ctx;
static void setup(void) {
    ctx = md_ctx_new(NULL);
    cr_assert(ctx);
}
static void teardown(void) {
    md__convk_set(-1);
    md_ctx_free(ctx);
}
TestSuite(ops_deform_conv, .init = setup, .fini = teardown);

static md_tensor *get_opt(md_st *st, const char *key) {
    return md_st_find(st, key) >= 0 ? golden_get(ctx, st, key) : NULL;
}

static void golden_cases(int threads) {
    md_ctx_set_threads(ctx, threads);
    md_st *st = golden_open("deform_conv");
    int cases = 0;
    for (int i = 0;; i++, cases++) {
        char k[64], what[128];
#define KEY(s) (snprintf(k, sizeof k, "c%d_%s", i, s), k)
        if (md_st_find(st, KEY("x")) < 0) break;
        md_ctx_step_reset(ctx);
        md_tensor *x = golden_get(ctx, st, KEY("x")), *off = golden_get(ctx, st, KEY("off"));
        md_tensor *w = golden_get(ctx, st, KEY("w")), *mask = get_opt(st, KEY("mask")), *b = get_opt(st, KEY("b"));
        const int64_t *pv = md_i64(golden_get(ctx, st, KEY("p")));
        md_tensor *ins[5] = { x, off, mask, w, b };
        for (int j = 0; j < 5; j++)
            if (ins[j]) ins[j]->requires_grad = true;
        md_conv2d_params cp = { (int)pv[0], (int)pv[1], (int)pv[2], (int)pv[3], (int)pv[4], (int)pv[5], (int)pv[6] };
        md_tensor *y = pv[8] ? md_modulated_deform_conv2d(ctx, x, off, mask, w, b, cp, (int)pv[7])
                             : md_deform_conv2d(ctx, x, off, w, cp, (int)pv[7]);
        cr_assert(y, "case %d: %s", i, md_ctx_error(ctx)->msg);
        const md__gemm_kernel *kn = md__convk();
        const char *kname = md__convk_name(kn ? kn->id : MD_CONVK_BLAS);
        snprintf(what, sizeof what, "deform case %d threads %d %s: y", i, threads, kname);
        assert_close(y, golden_get(ctx, st, KEY("y")), 1e-5, what);
        md_error err = { 0 };
        cr_assert_eq(md_backward_with(ctx, y, golden_get(ctx, st, KEY("gy")), &err), 0, "%s", err.msg);
        static const char *names[5] = { "gx", "goff", "gmask", "gw", "gb" };
        for (int j = 0; j < 5; j++) {
            if (!ins[j]) continue;
            snprintf(what, sizeof what, "deform case %d threads %d %s: %s", i, threads, kname, names[j]);
            assert_close(ins[j]->grad, golden_get(ctx, st, KEY(names[j])), 1e-5, what);
        }
#undef KEY
    }
    cr_assert_geq(cases, 7, "only %d cases in the fixture", cases);
    md_st_close(st);
}

Test(ops_deform_conv, torchvision_goldens_every_variant) {
    int ran = 0;
    for (int id = 0; id < MD_CONVK_COUNT; id++) {
        if (!md__convk_supported(id)) continue;
        cr_assert_eq(md__convk_set(id), 0);
        golden_cases(1);
        golden_cases(3);
        ran++;
    }
    cr_assert_geq(ran, 1);
}

/* ---- finite differences ---- */

typedef struct fd_case { md_conv2d_params p; int dg; bool modulated; } fd_case;

static md_tensor *fd_fn(md_ctx *c, md_tensor **in, void *user) {
    const fd_case *f = user;
    return f->modulated ? md_modulated_deform_conv2d(c, in[0], in[1], in[2], in[3], in[4], f->p, f->dg)
                        : md_deform_conv2d(c, in[0], in[1], in[3], f->p, f->dg);
}

static void fd_check(fd_case f, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t k, uint64_t seed) {
    int64_t OH = (H + 2 * f.p.pad_h - f.p.dilation_h * (k - 1) - 1) / f.p.stride_h + 1;
    int64_t OW = (W + 2 * f.p.pad_w - f.p.dilation_w * (k - 1) - 1) / f.p.stride_w + 1;
    md_tensor *in[5];
    in[0] = randn_param(ctx, MD_DIMS(N, C, H, W), seed);
    in[1] = randn_param(ctx, MD_DIMS(N, 2 * f.dg * k * k, OH, OW), seed + 1);
    in[2] = randn_param(ctx, MD_DIMS(N, f.dg * k * k, OH, OW), seed + 2);
    in[3] = randn_param(ctx, MD_DIMS(O, C / f.p.groups, k, k), seed + 3);
    in[4] = randn_param(ctx, MD_DIMS(O), seed + 4);
    /* offsets of a few pixels, some taps outside the image; none within
     * the finite step of a grid line, where the bilinear blend has a kink */
    for (int64_t i = 0; i < md_tensor_numel(in[1]); i++) {
        float *v = &md_f32(in[1])[i];
        *v *= 1.7f;
        float fr = *v - floorf(*v);
        if (fr < 0.05f || fr > 0.95f) *v += 0.3f;
    }
    for (int64_t i = 0; i < md_tensor_numel(in[2]); i++) md_f32(in[2])[i] = 0.5f + 0.4f * tanhf(md_f32(in[2])[i]);
    if (!f.modulated) in[2]->requires_grad = in[4]->requires_grad = false;
    double e = gradcheck(ctx, fd_fn, in, 5, &f, 1e-3);
    cr_assert_lt(e, 2e-3, "finite differences: relative error %g", e);
}

Test(ops_deform_conv, finite_differences) {
    fd_check((fd_case){ { 1, 1, 1, 1, 1, 1, 1 }, 1, false }, 1, 2, 4, 5, 3, 3, 11);
    fd_check((fd_case){ { 2, 2, 1, 1, 1, 1, 2 }, 2, true }, 2, 4, 5, 5, 2, 3, 21);
    fd_check((fd_case){ { 1, 1, 2, 2, 2, 2, 1 }, 1, true }, 1, 2, 5, 4, 2, 3, 31);
}

/* ---- mmcv's border rule, by hand ---- */

/* x [[1, 2], [3, 4]], a 1x1 kernel of weight 1: the output at pixel (0, 0)
 * is the sample at (dy, dx). */
static void tap_case(float dy, float dx, float want_y, float want_gh, float want_gw) {
    md_ctx_step_reset(ctx);
    md_tensor *x = md_tensor_from(ctx, MD_F32, MD_DIMS(1, 1, 2, 2), (const float[]){ 1, 2, 3, 4 });
    float ov[8] = { 0 };
    ov[0] = dy;
    ov[4] = dx;
    md_tensor *off = md_tensor_from(ctx, MD_F32, MD_DIMS(1, 2, 2, 2), ov);
    md_tensor *w = md_tensor_from(ctx, MD_F32, MD_DIMS(1, 1, 1, 1), (const float[]){ 1 });
    off->requires_grad = true;
    md_tensor *y = md_deform_conv2d(ctx, x, off, w, MD_CONV2D(1, 0), 1);
    cr_assert(y, "%s", md_ctx_error(ctx)->msg);
    cr_assert_float_eq(md_f32(y)[0], want_y, 1e-6, "(%g, %g): y %g, want %g", dy, dx, md_f32(y)[0], want_y);
    md_tensor *gy = md_tensor_from(ctx, MD_F32, MD_DIMS(1, 1, 2, 2), (const float[]){ 1, 0, 0, 0 });
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, y, gy, &err), 0, "%s", err.msg);
    cr_assert_float_eq(md_f32(off->grad)[0], want_gh, 1e-6, "(%g, %g): d/dy %g, want %g", dy, dx,
                       md_f32(off->grad)[0], want_gh);
    cr_assert_float_eq(md_f32(off->grad)[4], want_gw, 1e-6, "(%g, %g): d/dx %g, want %g", dy, dx,
                       md_f32(off->grad)[4], want_gw);
}

Test(ops_deform_conv, border_rule_by_hand) {
    tap_case(0, 0, 1, 2, 1);           /* on a pixel: slopes to the next row and column */
    tap_case(-0.5f, 0, 0.5f, 1, 0.5f); /* half of row 0, row -1 missing */
    tap_case(-1, 0, 0, 0, 0);          /* on -1: outside (-1, H), value and slopes 0 (mmcv) */
    tap_case(0, -1, 0, 0, 0);
    tap_case(-1.5f, 0.5f, 0, 0, 0);    /* past -1 */
    tap_case(1.5f, 0, 1.5f, -3, 0.5f); /* half of row 1, row 2 missing */
    tap_case(2, 0, 0, 0, 0);           /* on H: outside */
    tap_case(0.25f, 0.5f, 2, 2, 1);    /* inside: the plain bilinear blend */
}

/* ---- zero offsets: a plain convolution (several column tiles) ---- */

static md_tensor *clone(const md_tensor *t) {
    md_tensor *c = md_tensor_zeros_like(ctx, t);
    cr_assert(c && md_tensor_copy_(ctx, c, t) == 0);
    return c;
}

Test(ops_deform_conv, zero_offsets_equal_conv2d) {
    md_ctx_set_threads(ctx, 3);
    const int64_t N = 2, C = 64, H = 40, W = 44, O = 32;
    md_conv2d_params p = { 1, 1, 1, 1, 1, 1, 2 };
    for (int id = 0; id < MD_CONVK_COUNT; id++) {
        if (!md__convk_supported(id)) continue;
        md__convk_set(id);
        for (int mod = 0; mod < 2; mod++) {
            md_ctx_step_reset(ctx);
            md_tensor *x = randn_param(ctx, MD_DIMS(N, C, H, W), 5), *w = randn_param(ctx, MD_DIMS(O, C / 2, 3, 3), 6);
            md_tensor *b = mod ? randn_param(ctx, MD_DIMS(O), 7) : NULL;
            md_tensor *off = md_tensor_zeros(ctx, MD_F32, MD_DIMS(N, 2 * 9, H, W));
            md_tensor *mask = mod ? md_tensor_full(ctx, MD_F32, MD_DIMS(N, 9, H, W), 1.0) : NULL;
            md_tensor *y = mod ? md_modulated_deform_conv2d(ctx, x, off, mask, w, b, p, 1)
                               : md_deform_conv2d(ctx, x, off, w, p, 1);
            md_tensor *gy = randn_param(ctx, MD_DIMS(N, O, H, W), 8);
            gy->requires_grad = false;
            md_error err = { 0 };
            cr_assert_eq(md_backward_with(ctx, y, gy, &err), 0, "%s", err.msg);
            md_tensor *gx = clone(x->grad), *gw = clone(w->grad), *gb = b ? clone(b->grad) : NULL;
            md_tensor_zero_grad(x);
            md_tensor_zero_grad(w);
            if (b) md_tensor_zero_grad(b);
            md_tensor *ry = md_conv2d(ctx, x, w, b, p);
            cr_assert_eq(md_backward_with(ctx, ry, gy, &err), 0, "%s", err.msg);
            char what[64];
            snprintf(what, sizeof what, "%s mod %d: y", md__convk_name(id), mod);
            assert_close(y, ry, 1e-5, what);
            snprintf(what, sizeof what, "%s mod %d: gx", md__convk_name(id), mod);
            assert_close(gx, x->grad, 1e-5, what);
            snprintf(what, sizeof what, "%s mod %d: gw", md__convk_name(id), mod);
            assert_close(gw, w->grad, 1e-5, what);
            if (b) assert_close(gb, b->grad, 1e-5, "gb");
        }
    }
}

/* ---- errors ---- */

Test(ops_deform_conv, bad_arguments_named) {
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 4, 5, 5)), *w = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 4, 3, 3));
    md_tensor *off = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 18, 5, 5));
    cr_assert(md_deform_conv2d(ctx, x, off, w, MD_CONV2D(1, 1), 1));
    cr_assert_null(md_deform_conv2d(ctx, x, off, w, MD_CONV2D(2, 1), 1));   /* offsets of the wrong size */
    cr_assert(strstr(md_ctx_error(ctx)->msg, "offset"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
    cr_assert_null(md_deform_conv2d(ctx, x, off, w, MD_CONV2D(1, 1), 3));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "deform_groups"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
    md_tensor *mask = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 8, 5, 5));
    cr_assert_null(md_modulated_deform_conv2d(ctx, x, off, mask, w, NULL, MD_CONV2D(1, 1), 1));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "mask"), "%s", md_ctx_error(ctx)->msg);
}
