/* Detection ops against torchvision / mmdet-in-PyTorch goldens
 * (tests/golden/ops_det_golden.py), finite differences and hand cases. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "testlib.h"

static md_ctx *ctx;
static md_st *st;
static void setup(void) {
    ctx = md_ctx_new(NULL);
    cr_assert(ctx);
    st = golden_open("ops_det_detection");
}
static void teardown(void) {
    md_st_close(st);
    md_ctx_free(ctx);
}
TestSuite(ops_detection, .init = setup, .fini = teardown);

static md_tensor *G(const char *name, const char *field) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", name, field);
    return golden_get(ctx, st, key);
}

static void expect_error(md_tensor *out, const char *needle) {
    cr_assert_null(out, "expected an error containing \"%s\"", needle);
    cr_assert(strstr(md_ctx_error(ctx)->msg, needle), "error \"%s\" lacks \"%s\"", md_ctx_error(ctx)->msg, needle);
    md_ctx_step_reset(ctx);
}

/* ---- roi_align ---- */
static void roi_golden(const char *name, int oh, int ow, double scale, int sr, bool aligned) {
    md_tensor *feat = G(name, "feat"), *rois = G(name, "rois");
    feat->requires_grad = true;
    md_tensor *y = md_roi_align(ctx, feat, rois, oh, ow, scale, sr, aligned);
    cr_assert(y, "%s: %s", name, md_ctx_error(ctx)->msg);
    char what[64];
    snprintf(what, sizeof what, "%s forward", name);
    assert_close(y, G(name, "out"), 1e-5, what);
    if (md_tensor_numel(y) == 0) {
        cr_assert_eq(y->shape[0], 0);
        return;
    }
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, y, G(name, "g"), &err), 0, "%s", err.msg);
    snprintf(what, sizeof what, "%s d/dfeat", name);
    assert_close(feat->grad, G(name, "gfeat"), 1e-5, what);
}

Test(ops_detection, roi_align_matches_torchvision_edges) { roi_golden("roi_a", 3, 4, 0.5, 0, true); }
Test(ops_detection, roi_align_matches_torchvision_fixed_ratio) { roi_golden("roi_b", 7, 7, 0.25, 2, true); }
Test(ops_detection, roi_align_legacy_unaligned) { roi_golden("roi_c", 2, 3, 0.5, 0, false); }
Test(ops_detection, roi_align_zero_rois) { roi_golden("roi_empty", 7, 7, 1.0, 0, true); }

/* A hand case on the ramp f(y, x) = 10 y + x: the RoI (0.5, 0.5, 2.5, 2.5)
 * shifted by -0.5 is (0, 0, 2, 2); one bin, ceil(2 / 1) = 2 samples per axis
 * at 0.5 and 1.5; bilinear sampling of a ramp is exact, so the average is
 * f(1, 1) = 11. */
Test(ops_detection, roi_align_hand_case_on_a_ramp) {
    float f[16];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) f[y * 4 + x] = (float)(10 * y + x);
    md_tensor *feat = md_tensor_from(ctx, MD_F32, MD_DIMS(1, 1, 4, 4), f);
    float r[5] = { 0, 0.5f, 0.5f, 2.5f, 2.5f };
    md_tensor *rois = md_tensor_from(ctx, MD_F32, MD_DIMS(1, 5), r);
    md_tensor *y = md_roi_align(ctx, feat, rois, 1, 1, 1.0, 0, true);
    cr_assert(y);
    cr_assert_float_eq(md_f32(y)[0], 11.0f, 1e-5, "got %g", md_f32(y)[0]);
}

static md_tensor *rois_small;
static md_tensor *gc_roi(md_ctx *c, md_tensor **in, void *user) {
    (void)user;
    return md_roi_align(c, in[0], rois_small, 3, 2, 0.5, 0, true);
}

Test(ops_detection, roi_align_gradcheck) {
    md_tensor *feat = randn_param(ctx, MD_DIMS(2, 2, 6, 7), 11);
    float r[15] = { 0, 1.2f, 0.7f, 9.4f, 10.1f, 1, -3.0f, 2.0f, 6.5f, 14.0f, 1, 5.0f, 5.0f, 13.9f, 12.6f };
    md_ctx_step_reset(ctx);
    /* the rois live in a persistent tensor: gradcheck resets the arena */
    md_tensor *rp = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(3, 5), NULL);
    memcpy(md_f32(rp), r, sizeof r);
    rois_small = rp;
    double e = gradcheck(ctx, gc_roi, &feat, 1, NULL, 1e-2);
    cr_assert_lt(e, 1e-2, "relative error %g", e);
    md_tensor_free(rp);
    md_tensor_free(feat);
}

/* The backward splits channels over threads without atomics: identical
 * bits for 1 and 2 threads (and for repeated runs). */
Test(ops_detection, roi_align_backward_is_reproducible) {
    int threads[3] = { 1, 2, 2 };
    md_tensor *keep[3];
    md_rng r;
    for (int t = 0; t < 3; t++) {
        md_ctx_set_threads(ctx, threads[t]);
        /* large enough (12 RoIs x 64 channels x 49 bins) to run threaded */
        md_tensor *feat = md_tensor_empty(ctx, MD_F32, MD_DIMS(2, 64, 16, 20));
        md_rng_seed(&r, 5);
        md_tensor_normal_(feat, &r, 0, 1);
        feat->requires_grad = true;
        md_tensor *y = md_roi_align(ctx, feat, G("roi_b", "rois"), 7, 7, 0.25, 0, true);
        md_tensor *g = md_tensor_empty_like(ctx, y);
        md_tensor_normal_(g, &r, 0, 1);
        cr_assert_eq(md_backward_with(ctx, y, g, NULL), 0);
        keep[t] = feat->grad;
    }
    assert_equal(keep[0], keep[1], "1 vs 2 threads");
    assert_equal(keep[1], keep[2], "two runs with 2 threads");
}

Test(ops_detection, roi_align_non_contiguous_feat) {
    md_tensor *feat = G("roi_a", "feat");   /* [2, 3, 11, 13] */
    /* The same values seen through a permuted view of a [2, 3, 13, 11] copy. */
    md_tensor *tr = md_tensor_empty(ctx, MD_F32, MD_DIMS(2, 3, 13, 11));
    for (int64_t p = 0; p < 6; p++)
        for (int64_t y = 0; y < 11; y++)
            for (int64_t x = 0; x < 13; x++) md_f32(tr)[(p * 13 + x) * 11 + y] = md_f32(feat)[(p * 11 + y) * 13 + x];
    md_tensor view = *tr;
    view.shape[2] = 11; view.shape[3] = 13;
    view.stride[2] = 1; view.stride[3] = 11;
    cr_assert_not(md_tensor_is_contiguous(&view));
    md_tensor *y = md_roi_align(ctx, &view, G("roi_a", "rois"), 3, 4, 0.5, 0, true);
    assert_close(y, G("roi_a", "out"), 1e-5, "view forward");
}

/* mmcv's RoIAlign written sample by sample (roi_align_forward_cpu with its
 * bilinear_interpolate, and the transposed scatter of its backward), the
 * reference for the kernels' folded per-axis bands. */
static void ref_tap(float v, int64_t size, int *lo, int *hi, float *wl, float *wh) {
    *lo = *hi = -1;
    *wl = *wh = 0.0f;
    if (v < -1.0f || v > (float)size) return;
    if (v <= 0) v = 0;
    *lo = (int)v;
    if (*lo >= size - 1) {
        *lo = *hi = (int)size - 1;
        v = (float)*lo;
    } else {
        *hi = *lo + 1;
    }
    *wh = v - (float)*lo;
    *wl = 1.0f - *wh;
}

static void ref_roi_align(const float *f, int64_t C, int64_t H, int64_t W, const float *rois, int64_t K, int oh,
                          int ow, float scale, int sr, bool aligned, const float *go, float *out, float *gf) {
    for (int64_t k = 0; k < K; k++) {
        const float *q = rois + 5 * k;
        float off = aligned ? 0.5f : 0.0f;
        float sw = q[1] * scale - off, sh = q[2] * scale - off;
        float rw = q[3] * scale - off - sw, rh = q[4] * scale - off - sh;
        if (!aligned) {
            rw = rw > 1 ? rw : 1;
            rh = rh > 1 ? rh : 1;
        }
        float bh = rh / (float)oh, bw = rw / (float)ow;
        int gh = sr > 0 ? sr : (int)ceilf(rh / (float)oh), gw = sr > 0 ? sr : (int)ceilf(rw / (float)ow);
        float cnt = (float)(gh * gw > 1 ? gh * gw : 1);
        for (int64_t c = 0; c < C; c++) {
            const float *p = f + ((int64_t)q[0] * C + c) * H * W;
            float *gp = gf + ((int64_t)q[0] * C + c) * H * W;
            for (int ph = 0; ph < oh; ph++)
                for (int pw = 0; pw < ow; pw++) {
                    double sum = 0;
                    float g = go[((k * C + c) * oh + ph) * ow + pw] / cnt;
                    for (int iy = 0; iy < gh; iy++)
                        for (int ix = 0; ix < gw; ix++) {
                            int y0, y1, x0, x1;
                            float wy0, wy1, wx0, wx1;
                            ref_tap(sh + (float)ph * bh + (float)(iy + .5f) * bh / (float)gh, H, &y0, &y1, &wy0, &wy1);
                            ref_tap(sw + (float)pw * bw + (float)(ix + .5f) * bw / (float)gw, W, &x0, &x1, &wx0, &wx1);
                            if (y0 < 0 || x0 < 0) continue;
                            sum += (double)wy0 * wx0 * p[y0 * W + x0] + (double)wy0 * wx1 * p[y0 * W + x1] +
                                   (double)wy1 * wx0 * p[y1 * W + x0] + (double)wy1 * wx1 * p[y1 * W + x1];
                            gp[y0 * W + x0] += g * wy0 * wx0;
                            gp[y0 * W + x1] += g * wy0 * wx1;
                            gp[y1 * W + x0] += g * wy1 * wx0;
                            gp[y1 * W + x1] += g * wy1 * wx1;
                        }
                    out[((k * C + c) * oh + ph) * ow + pw] = (float)(sum / cnt);
                }
        }
    }
}

/* Random RoIs of many sizes, some partly or wholly outside the map, some
 * degenerate, both sampling modes and both alignments, threaded: forward
 * and d/dfeat against the sample-by-sample definition. */
Test(ops_detection, roi_align_matches_sample_by_sample_definition) {
    const int64_t N = 2, C = 24, H = 23, W = 31, K = 40;
    md_rng r;
    md_rng_seed(&r, 17);
    static const struct { int oh, ow, sr; bool aligned; float scale; } cases[] = {
        { 7, 7, 0, true, 0.25f }, { 7, 7, 2, true, 0.125f }, { 3, 5, 0, false, 0.5f }, { 2, 4, 3, false, 0.25f },
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        md_ctx_step_reset(ctx);
        md_tensor *feat = md_tensor_empty(ctx, MD_F32, MD_DIMS(N, C, H, W));
        md_tensor_normal_(feat, &r, 0, 1);
        feat->requires_grad = true;
        md_tensor *rois = md_tensor_empty(ctx, MD_F32, MD_DIMS(K, 5));
        float *q = md_f32(rois), s = cases[t].scale;
        for (int64_t k = 0; k < K; k++) {
            float x = (float)(md_rng_uniform(&r) * 1.4 - 0.2) * (float)W / s;
            float y = (float)(md_rng_uniform(&r) * 1.4 - 0.2) * (float)H / s;
            float w = (float)md_rng_uniform(&r) * (float)W / s * (k % 5 == 0 ? 0.05f : 0.8f);
            float h = (float)md_rng_uniform(&r) * (float)H / s * (k % 7 == 0 ? 0.0f : 0.8f);
            q[5 * k] = (float)(k % N);
            q[5 * k + 1] = x;
            q[5 * k + 2] = y;
            q[5 * k + 3] = x + w;
            q[5 * k + 4] = y + h;
        }
        const int oh = cases[t].oh, ow = cases[t].ow;
        md_tensor *y = md_roi_align(ctx, feat, rois, oh, ow, s, cases[t].sr, cases[t].aligned);
        cr_assert(y, "%s", md_ctx_error(ctx)->msg);
        md_tensor *g = md_tensor_empty_like(ctx, y);
        md_tensor_normal_(g, &r, 0, 1);
        cr_assert_eq(md_backward_with(ctx, y, g, NULL), 0);
        md_tensor *ry = md_tensor_empty_like(ctx, y), *rg = md_tensor_zeros_like(ctx, feat);
        ref_roi_align(md_f32(feat), C, H, W, q, K, oh, ow, s, cases[t].sr, cases[t].aligned, md_f32(g), md_f32(ry),
                      md_f32(rg));
        char what[64];
        snprintf(what, sizeof what, "case %zu forward", t);
        assert_close(y, ry, 1e-5, what);
        snprintf(what, sizeof what, "case %zu d/dfeat", t);
        assert_close(feat->grad, rg, 1e-5, what);
    }
}

Test(ops_detection, roi_align_errors) {
    md_tensor *feat = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 1, 4, 4));
    float bad_batch[5] = { 2, 0, 0, 1, 1 };
    expect_error(md_roi_align(ctx, feat, md_tensor_from(ctx, MD_F32, MD_DIMS(1, 5), bad_batch), 7, 7, 1, 0, true),
                 "batch index 2");
    feat = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 1, 4, 4));
    float neg[5] = { 0, 3, 0, 1, 1 };
    expect_error(md_roi_align(ctx, feat, md_tensor_from(ctx, MD_F32, MD_DIMS(1, 5), neg), 7, 7, 1, 0, true),
                 "negative size");
    feat = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 1, 4, 4));
    expect_error(md_roi_align(ctx, feat, md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4)), 7, 7, 1, 0, true),
                 "rois must be f32 [K, 5]");
    feat = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 4, 4));
    expect_error(md_roi_align(ctx, feat, md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 5)), 7, 7, 1, 0, true),
                 "[1, 4, 4] f32");
    /* the legacy mode accepts inverted RoIs (sizes clamp to 1 px) */
    feat = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 1, 4, 4));
    cr_assert(md_roi_align(ctx, feat, md_tensor_from(ctx, MD_F32, MD_DIMS(1, 5), neg), 2, 2, 1, 0, false));
    cr_assert_null(md_roi_align(ctx, NULL, feat, 7, 7, 1, 0, true));
    cr_assert_not(md_ctx_failed(ctx), "a NULL input is not an error of its own");
}

/* ---- nms ---- */
static void nms_golden(const char *name, double thr) {
    md_tensor *keep = md_nms(ctx, G(name, "boxes"), G(name, "scores"), thr, -1);
    cr_assert(keep, "%s: %s", name, md_ctx_error(ctx)->msg);
    assert_equal(keep, G(name, "keep"), name);
}

Test(ops_detection, nms_matches_torchvision) {
    nms_golden("nms_a", 0.5);
    nms_golden("nms_b", 0.2);
    nms_golden("nms_empty", 0.5);
}

Test(ops_detection, nms_max_num_is_a_prefix) {
    md_tensor *ref = G("nms_a", "keep");
    md_tensor *keep = md_nms(ctx, G("nms_a", "boxes"), G("nms_a", "scores"), 0.5, 17);
    cr_assert_eq(keep->shape[0], 17);
    for (int i = 0; i < 17; i++) cr_assert_eq(md_i64(keep)[i], md_i64(ref)[i]);
}

Test(ops_detection, nms_hand_case) {
    /* IoU(0, 1) = 50 / 150 = 1/3; box 2 is disjoint; zero-area box 3 is never
     * suppressed (0/0 is not > thr) */
    float b[16] = { 0, 0, 10, 10, 5, 0, 15, 10, 20, 20, 30, 30, 1, 1, 1, 5 };
    float s[4] = { 0.9f, 0.8f, 0.7f, 0.95f };
    md_tensor *boxes = md_tensor_from(ctx, MD_F32, MD_DIMS(4, 4), b);
    md_tensor *scores = md_tensor_from(ctx, MD_F32, MD_DIMS(4), s);
    md_tensor *k = md_nms(ctx, boxes, scores, 0.3, 0);
    int64_t e1[3] = { 3, 0, 2 };
    assert_equal(k, md_tensor_from(ctx, MD_I64, MD_DIMS(3), e1), "thr 0.3");
    k = md_nms(ctx, boxes, scores, 1.0 / 3.0 + 1e-6, 0);
    int64_t e2[4] = { 3, 0, 1, 2 };
    assert_equal(k, md_tensor_from(ctx, MD_I64, MD_DIMS(4), e2), "thr just above 1/3");
}

Test(ops_detection, nms_errors) {
    expect_error(md_nms(ctx, md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 5)), md_tensor_zeros(ctx, MD_F32, MD_DIMS(3)),
                        0.5, 0), "boxes must be f32 [N, 4]");
    expect_error(md_nms(ctx, md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4)), md_tensor_zeros(ctx, MD_F32, MD_DIMS(2)),
                        0.5, 0), "scores must be f32 [N] matching boxes [3, 4] f32");
    expect_error(md_batched_nms(ctx, md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4)),
                                md_tensor_zeros(ctx, MD_F32, MD_DIMS(3)), md_tensor_zeros(ctx, MD_I32, MD_DIMS(3)),
                                0.5, false, 0), "idxs must be i64 [N]");
}

static void bnms_golden(const char *name, double thr, bool agnostic) {
    md_tensor *keep = md_batched_nms(ctx, G(name, "boxes"), G(name, "scores"), G(name, "idxs"), thr, agnostic, -1);
    cr_assert(keep, "%s: %s", name, md_ctx_error(ctx)->msg);
    assert_equal(keep, G(name, "keep"), name);
}

Test(ops_detection, batched_nms_matches_mmcv) {
    bnms_golden("bnms_a", 0.5, false);
    bnms_golden("bnms_agnostic", 0.5, true);
    bnms_golden("bnms_neg", 0.4, false);
}

Test(ops_detection, batched_nms_max_num_and_empty) {
    md_tensor *ref = G("bnms_a", "keep");
    md_tensor *keep = md_batched_nms(ctx, G("bnms_a", "boxes"), G("bnms_a", "scores"), G("bnms_a", "idxs"), 0.5,
                                     false, 9);
    cr_assert_eq(keep->shape[0], 9);
    for (int i = 0; i < 9; i++) cr_assert_eq(md_i64(keep)[i], md_i64(ref)[i]);
    keep = md_batched_nms(ctx, md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 4)), md_tensor_zeros(ctx, MD_F32, MD_DIMS(0)),
                          md_tensor_zeros(ctx, MD_I64, MD_DIMS(0)), 0.5, false, 100);
    cr_assert(keep);
    cr_assert_eq(keep->ndim, 1);
    cr_assert_eq(keep->shape[0], 0);
}

/* The same box in two classes survives twice; in one class, once. */
Test(ops_detection, batched_nms_separates_classes) {
    float b[8] = { 0, 0, 10, 10, 0, 0, 10, 10 };
    float s[2] = { 0.5f, 0.6f };
    int64_t two[2] = { 0, 1 }, one[2] = { 3, 3 };
    md_tensor *boxes = md_tensor_from(ctx, MD_F32, MD_DIMS(2, 4), b);
    md_tensor *scores = md_tensor_from(ctx, MD_F32, MD_DIMS(2), s);
    md_tensor *k = md_batched_nms(ctx, boxes, scores, md_tensor_from(ctx, MD_I64, MD_DIMS(2), two), 0.5, false, 0);
    cr_assert_eq(k->shape[0], 2);
    cr_assert_eq(md_i64(k)[0], 1);
    k = md_batched_nms(ctx, boxes, scores, md_tensor_from(ctx, MD_I64, MD_DIMS(2), one), 0.5, false, 0);
    cr_assert_eq(k->shape[0], 1);
    k = md_batched_nms(ctx, boxes, scores, md_tensor_from(ctx, MD_I64, MD_DIMS(2), two), 0.5, true, 0);
    cr_assert_eq(k->shape[0], 1);
}

/* ---- bbox_overlaps ---- */
static void ov_golden(const char *name, md_iou_mode mode, bool aligned) {
    md_tensor *a = G(name, "a"), *b = G(name, "b");
    a->requires_grad = b->requires_grad = true;
    md_tensor *y = md_bbox_overlaps(ctx, a, b, mode, aligned, 1e-6);
    cr_assert(y, "%s: %s", name, md_ctx_error(ctx)->msg);
    char what[64];
    snprintf(what, sizeof what, "%s forward", name);
    assert_close(y, G(name, "out"), 1e-5, what);
    if (md_tensor_numel(y) == 0) return;
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, y, G(name, "g"), &err), 0, "%s", err.msg);
    snprintf(what, sizeof what, "%s d/da", name);
    assert_close(a->grad, G(name, "ga"), 1e-5, what);
    snprintf(what, sizeof what, "%s d/db", name);
    assert_close(b->grad, G(name, "gb"), 1e-5, what);
}

Test(ops_detection, bbox_overlaps_matches_mmdet) {
    ov_golden("ov_pair_iou", MD_IOU, false);
    ov_golden("ov_pair_iof", MD_IOF, false);
    ov_golden("ov_pair_giou", MD_GIOU, false);
    ov_golden("ov_al_iou", MD_IOU, true);
    ov_golden("ov_al_iof", MD_IOF, true);
    ov_golden("ov_al_giou", MD_GIOU, true);
    ov_golden("ov_empty", MD_IOU, false);
}

Test(ops_detection, bbox_overlaps_hand_case_and_errors) {
    float a[4] = { 0, 0, 10, 10 }, b[4] = { 5, 5, 15, 15 };
    md_tensor *ta = md_tensor_from(ctx, MD_F32, MD_DIMS(1, 4), a), *tb = md_tensor_from(ctx, MD_F32, MD_DIMS(1, 4), b);
    /* overlap 25, union 175, enclosing 225 */
    cr_assert_float_eq(md_f32(md_bbox_overlaps(ctx, ta, tb, MD_IOU, false, 1e-6))[0], 25.0f / 175, 1e-6);
    cr_assert_float_eq(md_f32(md_bbox_overlaps(ctx, ta, tb, MD_IOF, true, 1e-6))[0], 0.25f, 1e-6);
    cr_assert_float_eq(md_f32(md_bbox_overlaps(ctx, ta, tb, MD_GIOU, true, 1e-6))[0],
                       25.0f / 175 - 50.0f / 225, 1e-6);
    expect_error(md_bbox_overlaps(ctx, ta, md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 4)), MD_IOU, true, 1e-6),
                 "aligned mode needs as many boxes");
    ta = md_tensor_from(ctx, MD_F32, MD_DIMS(1, 4), a);
    expect_error(md_bbox_overlaps(ctx, ta, md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 3)), MD_IOU, false, 1e-6),
                 "[2, 3] f32");
}

static md_tensor *boxes_param(int n, uint64_t seed) {
    md_tensor *t = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(n, 4), NULL);
    md_rng r;
    md_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        float x = (float)md_rng_uniform(&r) * 10, y = (float)md_rng_uniform(&r) * 10;
        float w = 1 + (float)md_rng_uniform(&r) * 8, h = 1 + (float)md_rng_uniform(&r) * 8;
        float v[4] = { x, y, x + w, y + h };
        memcpy(md_f32(t) + 4 * i, v, sizeof v);
    }
    t->requires_grad = true;
    return t;
}

static md_tensor *gc_ov(md_ctx *c, md_tensor **in, void *user) {
    int m = *(int *)user;
    return md_bbox_overlaps(c, in[0], in[1], (md_iou_mode)(m % 3), m >= 3, 1e-6);
}

Test(ops_detection, bbox_overlaps_gradcheck) {
    for (int m = 0; m < 6; m++) {
        md_tensor *in[2] = { boxes_param(4, 3 + m), boxes_param(m >= 3 ? 4 : 3, 40 + m) };
        double e = gradcheck(ctx, gc_ov, in, 2, &m, 1e-2);
        cr_assert_lt(e, 1e-2, "mode %d aligned %d: relative error %g", m % 3, m >= 3, e);
        md_tensor_free(in[0]);
        md_tensor_free(in[1]);
    }
}
