/* conv2d: PyTorch goldens (tests/golden/ops_nn_golden.py), a direct-loop
 * reference on shapes that span several GEMM column tiles, finite
 * differences, views, errors and empty inputs. The goldens and the
 * direct-loop comparisons run under every kernel variant this CPU supports
 * (OpenBLAS, and the packed GEMM's AVX2 and AVX-512 micro-kernels). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "testlib.h"
#include "backends/cpu/conv.h"
#include "backends/cpu/conv_gemm.h"
#include "backends/cpu/winograd.h"

static md_ctx *ctx;
static void setup(void) {
    ctx = md_ctx_new(NULL);
    cr_assert(ctx);
}
static void teardown_variant(void) {
    md__convk_set(-1);
    md__winograd_set(-1);
    md_ctx_free(ctx);
}
TestSuite(ops_conv, .init = setup, .fini = teardown_variant);

/* Runs fn under each supported kernel variant; returns how many ran. */
static int each_variant(void (*fn)(int variant)) {
    int ran = 0;
    for (int id = 0; id < MD_CONVK_COUNT; id++) {
        if (!md__convk_supported(id)) continue;
        cr_assert_eq(md__convk_set(id), 0, "variant %s", md__convk_name(id));
        fn(id);
        ran++;
    }
    md__convk_set(-1);
    return ran;
}

static md_tensor *get_opt(md_st *st, const char *key) {
    return md_st_find(st, key) >= 0 ? golden_get(ctx, st, key) : NULL;
}

static void golden_conv_all(int threads) {
    md_ctx_set_threads(ctx, threads);
    md_st *st = golden_open("ops_nn_conv");
    int cases = 0;
    for (int i = 0;; i++, cases++) {
        char k[64], what[96];
#define KEY(s) (snprintf(k, sizeof k, "c%d_%s", i, s), k)
        if (md_st_find(st, KEY("x")) < 0) break;
        md_ctx_step_reset(ctx);
        md_tensor *x = golden_get(ctx, st, KEY("x")), *w = golden_get(ctx, st, KEY("w"));
        md_tensor *b = get_opt(st, KEY("b")), *p = golden_get(ctx, st, KEY("p"));
        x->requires_grad = w->requires_grad = true;
        if (b) b->requires_grad = true;
        const int64_t *pv = md_i64(p);
        md_conv2d_params cp = { (int)pv[0], (int)pv[1], (int)pv[2], (int)pv[3], (int)pv[4], (int)pv[5], (int)pv[6] };
        md_tensor *y = md_conv2d(ctx, x, w, b, cp);
        cr_assert(y, "case %d: %s", i, md_ctx_error(ctx)->msg);
        const md__gemm_kernel *kn = md__convk();
        const char *kname = md__convk_name(kn ? kn->id : MD_CONVK_BLAS);
        snprintf(what, sizeof what, "conv case %d threads %d %s: y", i, threads, kname);
        assert_close(y, golden_get(ctx, st, KEY("y")), 1e-5, what);
        md_error err = { 0 };
        cr_assert_eq(md_backward_with(ctx, y, golden_get(ctx, st, KEY("gy")), &err), 0, "%s", err.msg);
        snprintf(what, sizeof what, "conv case %d threads %d %s: gx", i, threads, kname);
        assert_close(x->grad, golden_get(ctx, st, KEY("gx")), 1e-5, what);
        snprintf(what, sizeof what, "conv case %d threads %d %s: gw", i, threads, kname);
        assert_close(w->grad, golden_get(ctx, st, KEY("gw")), 1e-5, what);
        if (b) {
            snprintf(what, sizeof what, "conv case %d threads %d %s: gb", i, threads, kname);
            assert_close(b->grad, golden_get(ctx, st, KEY("gb")), 1e-5, what);
        }
#undef KEY
    }
    cr_assert_geq(cases, 9, "only %d conv cases in the fixture", cases);
    md_st_close(st);
}

static void golden_variant(int id) {
    (void)id;
    golden_conv_all(2);
    golden_conv_all(1);
}

Test(ops_conv, golden_every_kernel_variant) { cr_assert_geq(each_variant(golden_variant), 1); }

/* ---- direct-loop reference, double accumulation ---- */

typedef struct ref_case { int N, C, H, W, O, K, s, pad, dil, G; } ref_case;

static int64_t out_size(int in, int k, int s, int p, int d) { return (in + 2 * p - d * (k - 1) - 1) / s + 1; }

static void ref_conv(const ref_case *c, const float *x, const float *w, const float *b, const float *gy,
                     double *y, double *gx, double *gw, double *gb) {
    int64_t OH = out_size(c->H, c->K, c->s, c->pad, c->dil), OW = out_size(c->W, c->K, c->s, c->pad, c->dil);
    int Cg = c->C / c->G, Og = c->O / c->G;
    memset(gx, 0, sizeof(double) * (size_t)(c->N * c->C * c->H * c->W));
    memset(gw, 0, sizeof(double) * (size_t)(c->O * Cg * c->K * c->K));
    memset(gb, 0, sizeof(double) * (size_t)c->O);
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->O; o++) {
            int g = o / Og;
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    int64_t yi = ((n * (int64_t)c->O + o) * OH + oh) * OW + ow;
                    double acc = b[o], gv = gy[yi];
                    gb[o] += gv;
                    for (int ci = 0; ci < Cg; ci++)
                        for (int ki = 0; ki < c->K; ki++)
                            for (int kj = 0; kj < c->K; kj++) {
                                int64_t ih = oh * c->s - c->pad + ki * c->dil, iw = ow * c->s - c->pad + kj * c->dil;
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                                int64_t xi = ((n * (int64_t)c->C + g * Cg + ci) * c->H + ih) * c->W + iw;
                                int64_t wi = ((o * (int64_t)Cg + ci) * c->K + ki) * c->K + kj;
                                acc += (double)x[xi] * w[wi];
                                gx[xi] += gv * w[wi];
                                gw[wi] += gv * x[xi];
                            }
                    y[yi] = acc;
                }
        }
}

static double rel_d(const float *a, const double *r, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += (a[i] - r[i]) * (a[i] - r[i]);
        den += r[i] * r[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void check_against_reference(ref_case c) {
    md_ctx_step_reset(ctx);
    md_rng r;
    md_rng_seed(&r, 99);
    md_tensor *x = md_tensor_empty(ctx, MD_F32, MD_DIMS(c.N, c.C, c.H, c.W));
    md_tensor *w = md_tensor_empty(ctx, MD_F32, MD_DIMS(c.O, c.C / c.G, c.K, c.K));
    md_tensor *b = md_tensor_empty(ctx, MD_F32, MD_DIMS(c.O));
    md_tensor_normal_(x, &r, 0, 1);
    md_tensor_normal_(w, &r, 0, 0.1);
    md_tensor_normal_(b, &r, 0, 1);
    x->requires_grad = w->requires_grad = b->requires_grad = true;
    md_conv2d_params p = { c.s, c.s, c.pad, c.pad, c.dil, c.dil, c.G };
    md_tensor *y = md_conv2d(ctx, x, w, b, p);
    cr_assert(y, "%s", md_ctx_error(ctx)->msg);
    md_tensor *gy = md_tensor_empty(ctx, MD_F32, y->ndim, y->shape);
    md_tensor_normal_(gy, &r, 0, 1);
    int64_t ny = md_tensor_numel(y), nx = md_tensor_numel(x), nw = md_tensor_numel(w);
    double *ry = malloc(sizeof(double) * (size_t)ny), *rgx = malloc(sizeof(double) * (size_t)nx);
    double *rgw = malloc(sizeof(double) * (size_t)nw), *rgb = malloc(sizeof(double) * (size_t)c.O);
    ref_conv(&c, md_f32(x), md_f32(w), md_f32(b), md_f32(gy), ry, rgx, rgw, rgb);
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, y, gy, &err), 0, "%s", err.msg);
    double e[4] = { rel_d(md_f32(y), ry, ny), rel_d(md_f32(x->grad), rgx, nx), rel_d(md_f32(w->grad), rgw, nw),
                    rel_d(md_f32(b->grad), rgb, c.O) };
    for (int i = 0; i < 4; i++)
        cr_assert_lt(e[i], 1e-5, "N%d C%d %dx%d O%d k%d s%d p%d d%d g%d, %s, %d threads: %s rel err %g", c.N, c.C, c.H,
                     c.W, c.O, c.K, c.s, c.pad, c.dil, c.G, md__convk_name(md__convk() ? md__convk()->id : 0),
                     md_ctx_threads(ctx), (const char *[]){ "y", "gx", "gw", "gb" }[i], e[i]);
    free(ry);
    free(rgx);
    free(rgw);
    free(rgb);
}

/* BLAS path: column tiles of 448 pixels for Kg = 576, so 24x24 outputs end
 * a tile mid-row. Packed path: B blocks of <= 256 rows (Kg 576 -> 3 x 192,
 * 1152 -> 5 blocks), column tiles ending mid-panel and mid-row. */
static void column_tile_cases(int id) {
    (void)id;
    for (int t = 1; t <= 2; t++) {
        md_ctx_set_threads(ctx, t);
        check_against_reference((ref_case){ 2, 64, 24, 24, 16, 3, 1, 1, 1, 1 });
        check_against_reference((ref_case){ 1, 128, 23, 25, 8, 3, 1, 1, 1, 2 });
        check_against_reference((ref_case){ 1, 256, 13, 12, 6, 3, 1, 1, 1, 1 });
        check_against_reference((ref_case){ 3, 32, 40, 20, 8, 1, 1, 0, 1, 1 });   /* 1x1, 800 columns */
        check_against_reference((ref_case){ 1, 16, 33, 35, 5, 3, 2, 2, 2, 1 });
    }
}

Test(ops_conv, matches_direct_loops_across_column_tiles) { cr_assert_geq(each_variant(column_tile_cases), 1); }

/* Stride-1 input gradients run as a forward convolution of gy with the
 * flipped weight (padding d*(K-1)-p); larger paddings fall back to col2im.
 * Strided im2col gathers clip at both borders. */
static void input_gradient_cases(int id) {
    (void)id;
    for (int t = 1; t <= 2; t++) {
        md_ctx_set_threads(ctx, t);
        check_against_reference((ref_case){ 2, 6, 9, 11, 5, 3, 1, 0, 1, 1 });    /* padding 2 in the flipped conv */
        check_against_reference((ref_case){ 1, 8, 10, 7, 6, 3, 1, 2, 2, 2 });    /* dilation and groups */
        check_against_reference((ref_case){ 1, 4, 8, 9, 3, 5, 1, 3, 1, 1 });     /* 5x5 with pad 3: padding 1 */
        check_against_reference((ref_case){ 1, 3, 8, 9, 4, 3, 1, 4, 1, 1 });     /* pad past the kernel: col2im */
        check_against_reference((ref_case){ 2, 3, 23, 21, 8, 7, 2, 3, 1, 1 });   /* stem-like 7x7/2 */
        check_against_reference((ref_case){ 1, 5, 17, 19, 4, 3, 3, 1, 1, 1 });   /* stride 3 */
        check_against_reference((ref_case){ 1, 4, 9, 13, 6, 1, 2, 0, 1, 2 });    /* 1x1/2 */
        check_against_reference((ref_case){ 1, 64, 30, 26, 40, 3, 2, 1, 1, 1 }); /* 3x3/2: 128-pixel tiles, mid-row */
        check_against_reference((ref_case){ 1, 2048, 40, 38, 16, 1, 2, 0, 1, 1 }); /* 1x1/2: written, not added */
    }
}

Test(ops_conv, input_gradient_paths_and_strided_gather) { cr_assert_geq(each_variant(input_gradient_cases), 1); }

/* The packed GEMM's edges: output channels (M) not a multiple of the 14- or
 * 6-row register block, pixels (N) not a multiple of the 32- or 16-column
 * panel, depths (K) not a multiple of 16 (the transposes) nor of the 256
 * block, partial last panels on both sides, groups, dilation, stride 2,
 * padding, 1x1, the Cin=3 stem, batch 1 and 2, and a batch-1 map with fewer
 * column tiles than threads (split over output-channel blocks). */
static void packed_edge_cases(int id) {
    (void)id;
    for (int t = 1; t <= 2; t++) {
        md_ctx_set_threads(ctx, t);
        check_against_reference((ref_case){ 1, 5, 7, 9, 15, 3, 1, 1, 1, 1 });    /* M 15, N 63, K 45 */
        check_against_reference((ref_case){ 2, 3, 21, 19, 29, 7, 2, 3, 1, 1 });  /* stem: K 147, M 29 */
        check_against_reference((ref_case){ 1, 3, 20, 80, 32, 7, 2, 3, 1, 1 });  /* stem: 16-pixel blocks, rows across chunks */
        check_against_reference((ref_case){ 1, 40, 6, 5, 33, 3, 1, 1, 1, 1 });   /* K 360: two blocks; N 30 */
        check_against_reference((ref_case){ 2, 30, 20, 20, 17, 3, 1, 1, 1, 1 }); /* 400 pixels: two weight chunks */
        check_against_reference((ref_case){ 1, 12, 11, 13, 12, 3, 1, 2, 2, 4 }); /* groups 4, dilation 2 */
        check_against_reference((ref_case){ 2, 17, 13, 11, 19, 1, 1, 0, 1, 1 }); /* 1x1: K 17, M 19 */
        check_against_reference((ref_case){ 1, 24, 9, 10, 20, 1, 1, 0, 1, 2 });  /* 1x1 with groups */
        check_against_reference((ref_case){ 2, 16, 15, 14, 30, 3, 2, 1, 1, 1 }); /* 3x3/2 */
        check_against_reference((ref_case){ 1, 16, 5, 5, 40, 3, 1, 1, 1, 1 });   /* 25 pixels: channel blocks */
        check_against_reference((ref_case){ 1, 300, 4, 4, 16, 3, 1, 1, 1, 1 });  /* K 2700, 16 pixels */
        check_against_reference((ref_case){ 1, 8, 1, 1, 9, 1, 1, 0, 1, 1 });     /* one pixel */
        check_against_reference((ref_case){ 2, 4, 6, 64, 7, 3, 1, 1, 1, 1 });    /* rows of 64: padding at panel ends */
        check_against_reference((ref_case){ 1, 3, 9, 32, 5, 3, 1, 2, 2, 1 });    /* rows of 32, dilation 2 */
        check_against_reference((ref_case){ 2, 6, 5, 7, 460, 3, 1, 1, 1, 1 });   /* gw^T: O 460 on the GEMM's N */
        /* the weight gradient's two layouts with two blocks each: gw (O 462
         * fills 14-row panels) and gw^T (Kg 500 in 14-row panels, O 544 on N) */
        check_against_reference((ref_case){ 1, 64, 5, 7, 462, 1, 1, 0, 1, 1 });
        check_against_reference((ref_case){ 1, 20, 9, 10, 64, 5, 1, 2, 1, 1 });
        check_against_reference((ref_case){ 1, 2, 5, 5, 544, 3, 1, 1, 1, 1 });
    }
}

Test(ops_conv, packed_gemm_edges_match_direct_loops) { cr_assert_geq(each_variant(packed_edge_cases), 1); }

/* Winograd F(2x2, 3x3), on the packed kernels: partial tiles at odd output
 * sizes, paddings 0-2, tile blocks ending mid-row (several blocks per
 * image), output channels not a multiple of the register or channel
 * blocks, depths over one K block, the smallest maps taken (4x4: four
 * tiles) and batch 1 with fewer blocks than threads (output channels
 * shared out); smaller maps stay on im2col. For the weight
 * gradient: chunks of 128 tiles ending mid-row (900 tiles an image, and
 * rows of 265 tiles: more than a chunk), one chunk spanning both images
 * (56 tiles each), input channels over one gw
 * block (530 > 512) and output channels over one (460 > 448). The same
 * cases with the path turned off go through im2col. Each case asserts that
 * Winograd takes its forward, its input gradient and its weight gradient
 * (the forward's shape). */
static void winograd_cases(int id) {
    if (id == MD_CONVK_BLAS) return;
    static const ref_case cases[] = {
        { 1, 8, 5, 7, 8, 3, 1, 1, 1, 1 },       { 2, 19, 17, 15, 23, 3, 1, 0, 1, 1 },
        { 1, 9, 12, 9, 57, 3, 1, 2, 1, 1 },     { 1, 300, 6, 7, 70, 3, 1, 1, 1, 1 },
        { 2, 16, 40, 90, 12, 3, 1, 1, 1, 1 },   { 1, 64, 4, 5, 64, 3, 1, 1, 1, 1 },
        { 1, 33, 4, 130, 29, 3, 1, 1, 1, 1 },   { 1, 9, 4, 4, 10, 3, 1, 1, 1, 1 },
        { 1, 530, 4, 5, 9, 3, 1, 1, 1, 1 },     { 1, 8, 5, 4, 460, 3, 1, 2, 1, 1 },
        { 1, 8, 4, 530, 9, 3, 1, 1, 1, 1 },
    };
    for (int on = 1; on >= 0; on--) {
        md__winograd_set(on);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const ref_case *c = &cases[i];
            int64_t oh = out_size(c->H, 3, 1, c->pad, 1), ow = out_size(c->W, 3, 1, c->pad, 1);
            md__conv_shape fw = { .N = c->N, .C = c->C, .H = c->H, .W = c->W, .O = c->O, .KH = 3, .KW = 3, .OH = oh,
                                  .OW = ow, .sh = 1, .sw = 1, .ph = c->pad, .pw = c->pad, .dh = 1, .dw = 1, .G = 1 };
            md__conv_shape bw = { .N = c->N, .C = c->O, .H = oh, .W = ow, .O = c->C, .KH = 3, .KW = 3, .OH = c->H,
                                  .OW = c->W, .sh = 1, .sw = 1, .ph = 2 - c->pad, .pw = 2 - c->pad, .dh = 1,
                                  .dw = 1, .G = 1 };
            cr_assert_eq(md__winograd_applies(&fw), on, "case %zu forward", i);
            cr_assert_eq(md__winograd_applies(&bw), on, "case %zu input gradient", i);
            for (int t = 1; t <= 2; t++) {
                md_ctx_set_threads(ctx, t);
                check_against_reference(*c);
            }
        }
    }
    /* maps under 4x4 (here 3 rows; its input gradient's output is 3 rows
     * too) stay on im2col */
    md__winograd_set(1);
    const ref_case tiny = { 1, 16, 3, 9, 16, 3, 1, 1, 1, 1 };
    md__conv_shape ts = { .N = 1, .C = 16, .H = 3, .W = 9, .O = 16, .KH = 3, .KW = 3, .OH = 3, .OW = 9, .sh = 1,
                          .sw = 1, .ph = 1, .pw = 1, .dh = 1, .dw = 1, .G = 1 };
    cr_assert(!md__winograd_applies(&ts), "a 3-row map takes Winograd");
    check_against_reference(tiny);
    md__winograd_set(-1);
}

Test(ops_conv, winograd_matches_direct_loops) { cr_assert_geq(each_variant(winograd_cases), 1); }

/* The Winograd weight gradient's blocks of gw depend on the thread count
 * (1 thread: one block; 2: output channels split; 4: input channels too),
 * its chunks of tiles do not: gw must be the same bits for 1, 2 and 4
 * threads. 57 x 70 channels: partial register blocks on both sides. */
static void wino_grad_threads(int id) {
    if (id == MD_CONVK_BLAS) return;
    const md__conv_shape s = { .N = 2, .C = 70, .H = 19, .W = 13, .O = 57, .KH = 3, .KW = 3, .OH = 19, .OW = 13,
                               .sh = 1, .sw = 1, .ph = 1, .pw = 1, .dh = 1, .dw = 1, .G = 1 };
    md__winograd_set(1);
    cr_assert(md__winograd_applies(&s));
    const size_t nx = 2 * 70 * 19 * 13, ny = 2 * 57 * 19 * 13, nw = 57 * 70 * 9;
    float *x = malloc(sizeof(float) * nx), *gy = malloc(sizeof(float) * ny), *gw[3];
    md_rng r;
    md_rng_seed(&r, 7);
    for (size_t i = 0; i < nx; i++) x[i] = (float)md_rng_normal(&r);
    for (size_t i = 0; i < ny; i++) gy[i] = (float)md_rng_normal(&r);
    const int threads[3] = { 1, 2, 4 };
    for (int k = 0; k < 3; k++) {
        size_t wf = md__conv2d_work_floats(&s, MD_CONV_BWD_WEIGHT, threads[k]);
        float *work = malloc(sizeof(float) * (wf ? wf : 1));
        gw[k] = malloc(sizeof(float) * nw);
        md__conv2d_backward_weight(&s, x, gy, gw[k], work, threads[k]);
        free(work);
    }
    for (int k = 1; k < 3; k++)
        cr_assert_eq(memcmp(gw[0], gw[k], sizeof(float) * nw), 0, "%s: 1 and %d threads differ",
                     md__convk_name(id), threads[k]);
    /* and the bits are not trivially equal: the path off gives the same values, other rounding */
    md__winograd_set(0);
    size_t wf = md__conv2d_work_floats(&s, MD_CONV_BWD_WEIGHT, 1);
    float *work = malloc(sizeof(float) * (wf ? wf : 1)), *ref = malloc(sizeof(float) * nw);
    md__conv2d_backward_weight(&s, x, gy, ref, work, 1);
    double num = 0, den = 0;
    for (size_t i = 0; i < nw; i++) {
        num += (double)(gw[0][i] - ref[i]) * (gw[0][i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    cr_assert_lt(sqrt(num / den), 1e-5, "%s: Winograd against im2col", md__convk_name(id));
    md__winograd_set(-1);
    for (int k = 0; k < 3; k++) free(gw[k]);
    free(work);
    free(ref);
    free(x);
    free(gy);
}

Test(ops_conv, winograd_weight_gradient_does_not_depend_on_thread_count) {
    cr_assert_geq(each_variant(wino_grad_threads), 1);
}

/* The packed kernels sum every output element in an order fixed by the
 * shape alone (K blocks of the forward, pixel chunks of the weight
 * gradient), so results do not depend on the thread count at all. */
/* The thread-count cases' input [1, 24, 13, 15] and weight [20, 24, 3, 3],
 * drawn from r seeded with `seed`, in a fresh step run on `threads`. */
static void thread_case_inputs(int threads, uint64_t seed, md_rng *r, md_tensor **x, md_tensor **w) {
    md_ctx_set_threads(ctx, threads);
    md_ctx_step_reset(ctx);
    md_rng_seed(r, seed);
    *x = md_tensor_empty(ctx, MD_F32, MD_DIMS(1, 24, 13, 15));
    *w = md_tensor_empty(ctx, MD_F32, MD_DIMS(20, 24, 3, 3));
    md_tensor_normal_(*x, r, 0, 1);
    md_tensor_normal_(*w, r, 0, 0.1);
}

static void run_conv_grads(int threads, int stride, float *out, size_t ny, size_t nx, size_t nw) {
    md_rng r;
    md_tensor *x, *w;
    thread_case_inputs(threads, 31, &r, &x, &w);
    x->requires_grad = w->requires_grad = true;
    md_tensor *y = md_conv2d(ctx, x, w, NULL, MD_CONV2D(stride, 1));
    cr_assert(y && (size_t)md_tensor_numel(y) == ny, "%s", md_ctx_error(ctx)->msg);
    cr_assert_eq(md_backward(ctx, y, NULL), 0);
    memcpy(out, md_f32(y), sizeof(float) * ny);
    memcpy(out + ny, md_f32(x->grad), sizeof(float) * nx);
    memcpy(out + ny + nx, md_f32(w->grad), sizeof(float) * nw);
}

Test(ops_conv, packed_results_do_not_depend_on_thread_count) {
    const size_t nx = 24 * 13 * 15, nw = 20 * 24 * 9, n = 20 * 13 * 15 + nx + nw;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    int ran = 0;
    for (int id = MD_CONVK_AVX2; id < MD_CONVK_COUNT; id++) {
        if (md__convk_set(id) != 0) continue;
        /* stride 1 runs through Winograd (forward and both gradients) */
        const md__conv_shape s1 = { .N = 1, .C = 24, .H = 13, .W = 15, .O = 20, .KH = 3, .KW = 3, .OH = 13,
                                    .OW = 15, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .dh = 1, .dw = 1, .G = 1 };
        cr_assert(md__winograd_applies(&s1));
        for (int stride = 1; stride <= 2; stride++) {   /* stride 2: the packed col2im input gradient */
            size_t ny = stride == 1 ? 20 * 13 * 15 : 20 * 7 * 8, m = ny + nx + nw;
            run_conv_grads(1, stride, a, ny, nx, nw);
            run_conv_grads(2, stride, b, ny, nx, nw);
            cr_assert_eq(memcmp(a, b, sizeof(float) * m), 0, "%s stride %d: 1 and 2 threads differ",
                         md__convk_name(id), stride);
        }
        ran++;
    }
    if (!ran) cr_skip_test("no packed kernel variant on this CPU");
    free(a);
    free(b);
}

Test(ops_conv, kernel_switch_rejects_unknown_variants) {
    cr_assert_eq(md__convk_set(MD_CONVK_COUNT), -1);
    cr_assert_eq(md__convk_set(MD_CONVK_BLAS), 0);
    cr_assert_null(md__convk());
    cr_assert_eq(md__convk_set(-1), 0);
    cr_assert_str_eq(md__convk_name(MD_CONVK_AVX512), "avx512");
}

/* ---- finite differences ---- */

typedef struct gc_conf { md_conv2d_params p; } gc_conf;

static md_tensor *gc_conv(md_ctx *c, md_tensor **in, void *user) {
    gc_conf *g = user;
    return md_conv2d(c, in[0], in[1], in[2], g->p);
}

static void gradcheck_conv(int N, int C, int H, int W, int O, int kh, int kw, md_conv2d_params p, bool bias) {
    md_tensor *in[3] = { randn_param(ctx, MD_DIMS(N, C, H, W), 1), randn_param(ctx, MD_DIMS(O, C / p.groups, kh, kw), 2),
                         bias ? randn_param(ctx, MD_DIMS(O), 3) : NULL };
    gc_conf g = { p };
    double e = gradcheck(ctx, gc_conv, in, bias ? 3 : 2, &g, 1e-2);
    cr_assert_lt(e, 1e-2, "conv2d gradcheck relative error %g", e);
    for (int i = 0; i < 3; i++) md_tensor_free(in[i]);
}

static void gc_stride_pad_bias(int id) {
    (void)id;
    gradcheck_conv(2, 3, 6, 5, 4, 3, 3, MD_CONV2D(2, 1), true);
}
static void gc_groups_dilation(int id) {
    (void)id;
    gradcheck_conv(1, 4, 7, 6, 6, 3, 2, (md_conv2d_params){ 1, 2, 2, 1, 2, 1, 2 }, false);
}
static void gc_pointwise(int id) {
    (void)id;
    gradcheck_conv(2, 5, 3, 4, 3, 1, 1, MD_CONV2D(1, 0), true);
}

Test(ops_conv, gradcheck_stride_pad_bias) { cr_assert_geq(each_variant(gc_stride_pad_bias), 1); }
Test(ops_conv, gradcheck_groups_dilation) { cr_assert_geq(each_variant(gc_groups_dilation), 1); }
Test(ops_conv, gradcheck_pointwise) { cr_assert_geq(each_variant(gc_pointwise), 1); }

/* ---- layouts, errors, empties, determinism ---- */

Test(ops_conv, strided_input_view_matches_contiguous) {
    md_rng r;
    md_rng_seed(&r, 5);
    /* storage [N, C, W, H]; the view swaps the last two dims */
    md_tensor *s = md_tensor_empty(ctx, MD_F32, MD_DIMS(2, 3, 7, 6));
    md_tensor_normal_(s, &r, 0, 1);
    md_tensor *v = md_tensor_detach(ctx, s);
    v->shape[2] = 6; v->shape[3] = 7;
    v->stride[2] = 1; v->stride[3] = 6;
    cr_assert_not(md_tensor_is_contiguous(v));
    md_tensor *c = md_tensor_empty(ctx, MD_F32, MD_DIMS(2, 3, 6, 7));
    cr_assert_eq(md_tensor_copy_(ctx, c, v), 0);
    md_tensor *w = md_tensor_empty(ctx, MD_F32, MD_DIMS(4, 3, 3, 3));
    md_tensor_normal_(w, &r, 0, 1);
    md_tensor *y1 = md_conv2d(ctx, v, w, NULL, MD_CONV2D(1, 1)), *y2 = md_conv2d(ctx, c, w, NULL, MD_CONV2D(1, 1));
    cr_assert(y1 && y2);
    cr_assert_eq(rel_err(y1, y2), 0.0);
}

Test(ops_conv, errors_name_the_op_and_shapes) {
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 3, 8, 8));
    md_tensor *w = md_tensor_zeros(ctx, MD_F32, MD_DIMS(4, 2, 3, 3));
    md_scope_push(ctx, "backbone");
    cr_assert_null(md_conv2d(ctx, x, w, NULL, MD_CONV2D(1, 1)));
    md_scope_pop(ctx);
    const char *msg = md_ctx_error(ctx)->msg;
    cr_assert(strstr(msg, "conv2d at backbone") && strstr(msg, "[1, 3, 8, 8]") && strstr(msg, "[4, 2, 3, 3]"), "%s", msg);
    md_ctx_clear_error(ctx);
    md_tensor *w2 = md_tensor_zeros(ctx, MD_F32, MD_DIMS(4, 3, 9, 9));
    cr_assert_null(md_conv2d(ctx, x, w2, NULL, MD_CONV2D(1, 0)));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "larger than the padded input"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
    md_tensor *xi = md_tensor_zeros(ctx, MD_I64, MD_DIMS(1, 3, 8, 8));
    cr_assert_null(md_conv2d(ctx, xi, w2, NULL, MD_CONV2D(1, 0)));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "i64"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
    cr_assert_null(md_conv2d(ctx, NULL, w, NULL, MD_CONV2D(1, 1)));
    cr_assert_not(md_ctx_failed(ctx));
}

Test(ops_conv, empty_batch_gives_empty_output_and_zero_weight_grad) {
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 3, 8, 8));
    md_tensor *w = randn_param(ctx, MD_DIMS(4, 3, 3, 3), 1);
    md_tensor *y = md_conv2d(ctx, x, w, NULL, MD_CONV2D(2, 1));
    cr_assert(y, "%s", md_ctx_error(ctx)->msg);
    cr_assert(y->ndim == 4 && y->shape[0] == 0 && y->shape[1] == 4 && y->shape[2] == 4 && y->shape[3] == 4);
    cr_assert_eq(md_backward(ctx, y, NULL), 0);
    for (int i = 0; i < 108; i++) cr_assert_eq(md_f32(w->grad)[i], 0.0f);
    md_tensor_free(w);
}

Test(ops_conv, repeated_runs_are_bitwise_identical) {
    md_tensor *w = randn_param(ctx, MD_DIMS(16, 32, 3, 3), 2);
    float first[16 * 32 * 9];
    for (int rep = 0; rep < 2; rep++) {
        md_rng r;
        md_rng_seed(&r, 8);
        md_tensor *x = md_tensor_empty(ctx, MD_F32, MD_DIMS(2, 32, 20, 20));
        md_tensor_normal_(x, &r, 0, 1);
        md_tensor_zero_grad(w);
        md_tensor *y = md_conv2d(ctx, x, w, NULL, MD_CONV2D(1, 1));
        cr_assert_eq(md_backward(ctx, y, NULL), 0);
        if (rep == 0) memcpy(first, md_f32(w->grad), sizeof first);
        else cr_assert_eq(memcmp(first, md_f32(w->grad), sizeof first), 0);
        md_ctx_step_reset(ctx);
    }
    md_tensor_free(w);
}

/* ---- the fused inference convolution (md_conv2d_fused) ----
 * Tolerance 1e-5 relative (vector norm): the fused path folds BN into one
 * multiply-add per element (scale = w/sqrt(var+eps), shift = b - mean*scale)
 * where the unfused ops compute ((y - mean)*invstd)*w + b, so the two round
 * differently by a few ulps; the double-precision reference bounds both. */

static md_tensor *vec_param(md_rng *r, int64_t n, double mean, double std, bool positive) {
    md_tensor *t = md_tensor_empty(ctx, MD_F32, MD_DIMS(n));
    md_tensor_normal_(t, r, mean, std);
    if (positive)
        for (int64_t i = 0; i < n; i++) md_f32(t)[i] = fabsf(md_f32(t)[i]) + 0.1f;
    return t;
}

/* Every combination of bias, scale, shift and relu on one shape: fused vs
 * the double direct loop (computed once, the epilogue applied in double),
 * and, with scale and shift, vs conv2d -> batch_norm2d(eval) -> relu with
 * the BN folded by md_batch_norm_fold. */
static void check_fused(ref_case c) {
    md_ctx_step_reset(ctx);
    md_rng r;
    md_rng_seed(&r, 41);
    md_tensor *x = md_tensor_empty(ctx, MD_F32, MD_DIMS(c.N, c.C, c.H, c.W));
    md_tensor *w = md_tensor_empty(ctx, MD_F32, MD_DIMS(c.O, c.C / c.G, c.K, c.K));
    md_tensor_normal_(x, &r, 0, 1);
    md_tensor_normal_(w, &r, 0, 0.1);
    md_tensor *b = vec_param(&r, c.O, 0, 1, false), *sc = vec_param(&r, c.O, 0, 1, false);
    md_tensor *sh = vec_param(&r, c.O, 0, 1, false);
    md_tensor *bw = vec_param(&r, c.O, 1, 0.5, false), *bb = vec_param(&r, c.O, 0, 1, false);
    md_tensor *mean = vec_param(&r, c.O, 0, 1, false), *var = vec_param(&r, c.O, 1, 0.5, true);
    md_conv2d_params p = { c.s, c.s, c.pad, c.pad, c.dil, c.dil, c.G };
    int64_t OH = out_size(c.H, c.K, c.s, c.pad, c.dil), OW = out_size(c.W, c.K, c.s, c.pad, c.dil);
    int64_t OHW = OH * OW, ny = c.N * c.O * OHW, nx = md_tensor_numel(x), nw = md_tensor_numel(w);
    double *r0 = malloc(sizeof(double) * (size_t)ny), *ry = malloc(sizeof(double) * (size_t)ny);
    double *gx = malloc(sizeof(double) * (size_t)nx), *gw = malloc(sizeof(double) * (size_t)nw);
    double *gb = malloc(sizeof(double) * (size_t)c.O);
    float *zb = calloc((size_t)c.O, sizeof(float)), *gy = calloc((size_t)ny, sizeof(float));
    ref_conv(&c, md_f32(x), md_f32(w), zb, gy, r0, gx, gw, gb);
    const char *kname = md__convk_name(md__convk() ? md__convk()->id : 0);
    for (int m = 0; m < 16; m++) {
        bool hb = m & 1, hs = m & 2, hh = m & 4, relu = m & 8;
        md_conv_epilogue e = { hs ? sc : NULL, hh ? sh : NULL, relu };
        md_tensor *y = md_conv2d_fused(ctx, x, w, hb ? b : NULL, p, &e);
        cr_assert(y, "%s", md_ctx_error(ctx)->msg);
        cr_assert_null(y->grad_fn);
        for (int64_t i = 0; i < ny; i++) {
            int64_t o = i / OHW % c.O;
            double v = (r0[i] + (hb ? md_f32(b)[o] : 0.0)) * (hs ? md_f32(sc)[o] : 1.0) + (hh ? md_f32(sh)[o] : 0.0);
            ry[i] = relu && v < 0 ? 0 : v;
        }
        double e1 = rel_d(md_f32(y), ry, ny);
        cr_assert_lt(e1, 1e-5, "fused N%d C%d %dx%d O%d k%d s%d p%d d%d g%d bias%d scale%d shift%d relu%d, %s, "
                     "%d threads: rel err %g", c.N, c.C, c.H, c.W, c.O, c.K, c.s, c.pad, c.dil, c.G, hb, hs, hh, relu,
                     kname, md_ctx_threads(ctx), e1);
        if (hs && hh) {   /* the same numbers as an eval-mode BN */
            md_tensor *s2, *h2;
            cr_assert_eq(md_batch_norm_fold(ctx, bw, bb, mean, var, 1e-5, &s2, &h2), 0, "%s", md_ctx_error(ctx)->msg);
            md_conv_epilogue e2 = { s2, h2, relu };
            md_tensor *yf = md_conv2d_fused(ctx, x, w, hb ? b : NULL, p, &e2);
            md_tensor *yu = md_batch_norm2d(ctx, md_conv2d(ctx, x, w, hb ? b : NULL, p), bw, bb, mean, var, false, 0.1,
                                            1e-5);
            if (relu) yu = md_relu(ctx, yu);
            cr_assert(yf && yu, "%s", md_ctx_error(ctx)->msg);
            char what[160];
            snprintf(what, sizeof what, "fused vs conv+bn%s%s, N%d C%d O%d k%d s%d g%d, %s, %d threads",
                     hb ? " (bias)" : "", relu ? "+relu" : "", c.N, c.C, c.O, c.K, c.s, c.G, kname, md_ctx_threads(ctx));
            assert_close(yf, yu, 1e-5, what);
        }
    }
    free(r0);
    free(ry);
    free(gx);
    free(gw);
    free(gb);
    free(zb);
    free(gy);
}

static void fused_cases(int id) {
    (void)id;
    static const ref_case shapes[] = {
        { 1, 5, 7, 9, 15, 3, 1, 1, 1, 1 },     /* M 15, N 63: partial register blocks */
        { 2, 3, 21, 19, 29, 7, 2, 3, 1, 1 },   /* the Cin=3 7x7/2 stem */
        { 1, 40, 6, 5, 33, 3, 1, 1, 1, 1 },    /* K 360: the epilogue only on the last K block */
        { 2, 17, 13, 11, 19, 1, 1, 0, 1, 1 },  /* 1x1 */
        { 1, 12, 11, 13, 12, 3, 1, 2, 2, 4 },  /* groups 4, dilation 2 */
        { 2, 16, 15, 14, 30, 3, 2, 1, 1, 1 },  /* 3x3/2 */
        { 1, 16, 5, 5, 40, 3, 1, 1, 1, 1 },    /* 25 pixels: output channels split over threads */
        { 1, 300, 4, 4, 16, 3, 1, 1, 1, 1 },   /* K 2700 */
        { 2, 24, 9, 10, 20, 1, 1, 0, 1, 2 },   /* 1x1 with groups */
    };
    for (int t = 1; t <= 2; t++) {
        md_ctx_set_threads(ctx, t);
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) check_fused(shapes[i]);
    }
}

Test(ops_conv, fused_matches_direct_loops_and_unfused_bn) { cr_assert_geq(each_variant(fused_cases), 1); }

static void run_fused(int threads, float *out, size_t n) {
    md_rng r;
    md_tensor *x, *w;
    thread_case_inputs(threads, 77, &r, &x, &w);
    md_conv_epilogue e = { vec_param(&r, 20, 0, 1, false), vec_param(&r, 20, 0, 1, false), true };
    md_tensor *y = md_conv2d_fused(ctx, x, w, vec_param(&r, 20, 0, 1, false), MD_CONV2D(1, 1), &e);
    cr_assert(y && (size_t)md_tensor_numel(y) == n, "%s", md_ctx_error(ctx)->msg);
    memcpy(out, md_f32(y), sizeof(float) * n);
}

Test(ops_conv, fused_results_do_not_depend_on_thread_count) {
    const size_t n = 20 * 13 * 15;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    int ran = 0;
    for (int id = MD_CONVK_AVX2; id < MD_CONVK_COUNT; id++) {
        if (md__convk_set(id) != 0) continue;
        run_fused(1, a, n);
        run_fused(2, b, n);
        cr_assert_eq(memcmp(a, b, sizeof(float) * n), 0, "%s: 1 and 2 threads differ", md__convk_name(id));
        ran++;
    }
    if (!ran) cr_skip_test("no packed kernel variant on this CPU");
    free(a);
    free(b);
}

/* With a gradient needed the fused op is the unfused ops: finite differences
 * through conv, scale, shift and relu. */
static md_tensor *gc_fused(md_ctx *c, md_tensor **in, void *user) {
    (void)user;
    md_conv_epilogue e = { in[3], in[4], true };
    return md_conv2d_fused(c, in[0], in[1], in[2], MD_CONV2D(2, 1), &e);
}

Test(ops_conv, fused_with_grad_runs_the_differentiable_ops) {
    md_tensor *in[5] = { randn_param(ctx, MD_DIMS(2, 3, 6, 5), 1), randn_param(ctx, MD_DIMS(4, 3, 3, 3), 2),
                         randn_param(ctx, MD_DIMS(4), 3), randn_param(ctx, MD_DIMS(4), 4), randn_param(ctx, MD_DIMS(4), 5) };
    md_tensor *y = gc_fused(ctx, in, NULL);
    cr_assert(y && y->grad_fn, "%s", md_ctx_error(ctx)->msg);
    double e = gradcheck(ctx, gc_fused, in, 5, NULL, 1e-2);
    cr_assert_lt(e, 1e-2, "conv2d_fused gradcheck relative error %g", e);
    for (int i = 0; i < 5; i++) md_tensor_free(in[i]);
}

/* ConvModule(conv, BN, ReLU) in eval mode: grad off takes the fused pass,
 * grad on runs conv, batch_norm2d and relu; the two agree. */
Test(ops_conv, conv_module_fused_in_inference_matches_layers) {
    md_error err = { 0 };
    md_conv_module_opts o = { .in = 6, .out = 10, .kernel = 3, .stride = 1, .padding = 1, .dilation = 1, .groups = 1,
                              .norm = true, .norm_requires_grad = true, .act = true, .bias = -1 };
    md_module *m = md_nn_conv_module(ctx, &o, &err);
    cr_assert(m, "%s", err.msg);
    md_rng r;
    md_rng_seed(&r, 12);
    md_tensor_normal_(md_module_find(m, "bn.running_mean"), &r, 0, 1);
    md_tensor_normal_(md_module_find(m, "bn.weight"), &r, 1, 0.5);
    md_tensor_normal_(md_module_find(m, "bn.bias"), &r, 0, 1);
    md_tensor *var = md_module_find(m, "bn.running_var");
    for (int i = 0; i < 10; i++) md_f32(var)[i] = 0.5f + (float)i / 10;
    md_module_train(m, false);
    md_tensor *x = md_tensor_empty(ctx, MD_F32, MD_DIMS(2, 6, 9, 7));
    md_tensor_normal_(x, &r, 0, 1);
    bool prev = md_grad_set_enabled(ctx, false);
    md_tensor *yf = md_module_forward(ctx, m, x);
    md_grad_set_enabled(ctx, true);
    md_tensor *yu = md_module_forward(ctx, m, x);
    md_grad_set_enabled(ctx, prev);
    cr_assert(yf && yu, "%s", md_ctx_error(ctx)->msg);
    cr_assert_null(yf->grad_fn);
    cr_assert(yu->grad_fn, "with grad on the layers run one by one, on the tape");
    assert_close(yf, yu, 1e-5, "ConvModule fused vs layers");
    md_module_free(m);
}

Test(ops_conv, fused_errors_name_the_op_and_shapes) {
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 3, 8, 8));
    md_tensor *w = md_tensor_zeros(ctx, MD_F32, MD_DIMS(4, 3, 3, 3));
    md_tensor *bad = md_tensor_zeros(ctx, MD_F32, MD_DIMS(5));
    md_conv_epilogue e = { bad, NULL, false };
    cr_assert_null(md_conv2d_fused(ctx, x, w, NULL, MD_CONV2D(1, 1), &e));
    const char *msg = md_ctx_error(ctx)->msg;
    cr_assert(strstr(msg, "conv2d_fused") && strstr(msg, "scale") && strstr(msg, "[5]") && strstr(msg, "[4, 3, 3, 3]"),
              "%s", msg);
    md_ctx_clear_error(ctx);
    md_tensor *s, *h;
    cr_assert_eq(md_batch_norm_fold(ctx, NULL, NULL, bad, md_tensor_zeros(ctx, MD_F32, MD_DIMS(4)), 1e-5, &s, &h), -1);
    cr_assert(strstr(md_ctx_error(ctx)->msg, "running_var"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
}
