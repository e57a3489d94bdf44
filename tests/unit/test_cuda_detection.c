/* The CUDA detection and sorting kernels against the CPU ones (whose
 * semantics test_ops_detection.c and test_ops_sort.c check against mmcv and
 * PyTorch): RoIAlign forward and backward over several FPN levels, box
 * overlaps in every mode, NMS and batched NMS (the same kept indices in the
 * same order), sort / argsort / top-k with ties (the same tie order).
 *
 * The CUDA kernels compute the CPU's float operations in the CPU's order, so
 * outputs and gradients are expected to agree to rounding (the tolerances
 * leave room only for that); indices must be identical. Every test skips
 * without a GPU. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cudalib.h"

TestSuite(cuda_detection, .init = cuda_setup, .fini = cuda_teardown);

/* A persistent CPU tensor holding `data`. */
static md_tensor *param_from(md_dtype dt, int ndim, const int64_t *shape, const void *data, bool grad) {
    md_tensor *t = md_tensor_new_persistent(ctx, dt, ndim, shape, NULL);
    cr_assert_not_null(t);
    size_t es = dt == MD_F32 || dt == MD_I32 ? 4 : dt == MD_I64 ? 8 : 1;
    if (md_tensor_numel(t) > 0) memcpy(t->data, data, es * (size_t)md_tensor_numel(t));
    t->requires_grad = grad;
    return t;
}

/* Boxes [n, 4] with the awkward cases first: zero boxes, degenerate
 * (x2 < x1 or zero width), identical pairs, boxes partly or wholly outside
 * [0, W] x [0, H]; then random boxes of random size, some clustered. */
static void make_boxes(float *b, int64_t n, float W, float H, uint64_t seed, bool allow_negative_size) {
    md_rng r;
    md_rng_seed(&r, seed);
    static const float special[][4] = {
        { 0, 0, 0, 0 },        { 5, 5, 5, 5 },       { 3, 4, 3, 9 },         { -20, -10, -5, -2 },
        { -6, -6, 12, 10 },    { 2, 3, 400, 300 },   { 100, 80, 140, 120 },  { 100, 80, 140, 120 },
        { 0, 0, 1, 1 },        { 7.5f, 2.25f, 7.75f, 2.5f },
    };
    static const float flipped[][4] = { { 10, 10, 4, 6 }, { 8, 3, 2, 3 } };
    int64_t i = 0;
    for (size_t s = 0; s < sizeof special / sizeof *special && i < n; s++, i++) memcpy(b + 4 * i, special[s], 16);
    for (size_t s = 0; allow_negative_size && s < sizeof flipped / sizeof *flipped && i < n; s++, i++)
        memcpy(b + 4 * i, flipped[s], 16);
    for (; i < n; i++) {
        float cx = (float)md_rng_uniform(&r) * W * 1.2f - 0.1f * W, cy = (float)md_rng_uniform(&r) * H * 1.2f - 0.1f * H;
        if (i % 3 == 0 && i >= 3) {   /* near an earlier box: overlaps */
            cx = 0.5f * (b[4 * (i - 3)] + b[4 * (i - 3) + 2]) + (float)md_rng_normal(&r) * 2.0f;
            cy = 0.5f * (b[4 * (i - 3) + 1] + b[4 * (i - 3) + 3]) + (float)md_rng_normal(&r) * 2.0f;
        }
        float w = 1.0f + (float)md_rng_uniform(&r) * W * 0.5f, h = 1.0f + (float)md_rng_uniform(&r) * H * 0.5f;
        b[4 * i] = cx - w / 2;
        b[4 * i + 1] = cy - h / 2;
        b[4 * i + 2] = cx + w / 2;
        b[4 * i + 3] = cy + h / 2;
    }
}

/* ------------------------------------------------------------ RoIAlign -- */

typedef struct roi_case { int oh, ow, sr; double scale; bool aligned; } roi_case;

static md_tensor *f_roi_align(md_tensor **in, void *u) {
    roi_case *c = u;
    return md_roi_align(ctx, in[0], in[1], c->oh, c->ow, c->scale, c->sr, c->aligned);
}

/* rois [K, 5] over an image of W x H, batch indices cycling over N. */
static md_tensor *make_rois(int64_t K, int64_t N, float W, float H, uint64_t seed, bool aligned) {
    float *b = malloc(sizeof(float) * 4 * (size_t)(K ? K : 1)), *r = malloc(sizeof(float) * 5 * (size_t)(K ? K : 1));
    make_boxes(b, K, W, H, seed, !aligned);   /* aligned mode rejects x2 < x1 */
    for (int64_t k = 0; k < K; k++) {
        r[5 * k] = (float)(k % N);
        memcpy(r + 5 * k + 1, b + 4 * k, 16);
    }
    md_tensor *t = param_from(MD_F32, MD_DIMS(K, 5), r, false);
    free(b);
    free(r);
    return t;
}

/* Three FPN levels of one 2-image batch (image 64 x 48), 60 RoIs each, with
 * RoIs outside the image, degenerate and zero ones; both mmcv modes,
 * adaptive and fixed sampling. */
Test(cuda_detection, roi_align_fpn_levels) {
    NEED_GPU();
    static const struct { int64_t h, w; double scale; } lv[] = { { 12, 16, 0.25 }, { 6, 8, 0.125 }, { 3, 4, 0.0625 } };
    static const roi_case modes[] = {
        { 7, 7, 0, 0, true }, { 7, 7, 2, 0, true }, { 7, 7, 0, 0, false }, { 3, 5, 1, 0, false },
    };
    for (size_t l = 0; l < sizeof lv / sizeof *lv; l++)
        for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
            roi_case c = modes[m];
            c.scale = lv[l].scale;
            md_tensor *p[2] = { randn_param(ctx, MD_DIMS(2, 3, lv[l].h, lv[l].w), 10 + l),
                                make_rois(60, 2, 64, 48, 20 + l, c.aligned) };
            char name[64];
            snprintf(name, sizeof name, "roi_align level %zu mode %zu", l, m);
            check_case(name, f_roi_align, 2, p, &c, 1e-5);
            free_all(2, p);
        }
}

/* Many RoIs on a larger map (several share each position: the backward's
 * per-position order matters), and no RoIs at all. */
Test(cuda_detection, roi_align_many_rois_and_none) {
    NEED_GPU();
    roi_case c = { 7, 7, 0, 0.25, true };
    md_tensor *p[2] = { randn_param(ctx, MD_DIMS(2, 4, 40, 56), 31), make_rois(500, 2, 224, 160, 32, true) };
    check_case("roi_align 500 RoIs", f_roi_align, 2, p, &c, 1e-5);
    free_all(2, p);
    md_tensor *q[2] = { randn_param(ctx, MD_DIMS(1, 2, 5, 6), 33), make_rois(0, 1, 20, 20, 34, true) };
    check_case("roi_align no RoIs", f_roi_align, 2, q, &c, 0);
    free_all(2, q);
}

/* ------------------------------------------------------- bbox overlaps -- */

typedef struct ov_case { md_iou_mode mode; bool aligned; } ov_case;

static md_tensor *f_overlaps(md_tensor **in, void *u) {
    ov_case *c = u;
    return md_bbox_overlaps(ctx, in[0], in[1], c->mode, c->aligned, 1e-6);
}

Test(cuda_detection, bbox_overlaps_all_modes) {
    NEED_GPU();
    float a[4 * 23], b[4 * 23];
    make_boxes(a, 23, 50, 40, 41, true);
    make_boxes(b, 23, 50, 40, 42, true);
    memcpy(b + 4 * 12, a + 4 * 12, 16);   /* equal coordinates: gradient ties */
    memcpy(b + 4 * 13, a + 4 * 14, 16);
    b[4 * 15] = a[4 * 15];
    static const md_iou_mode modes[] = { MD_IOU, MD_IOF, MD_GIOU };
    for (int m = 0; m < 3; m++)
        for (int al = 0; al < 2; al++) {
            ov_case c = { modes[m], al == 1 };
            int64_t nb = al ? 23 : 17;
            md_tensor *p[2] = { param_from(MD_F32, MD_DIMS(23, 4), a, true), param_from(MD_F32, MD_DIMS(nb, 4), b, true) };
            char name[64];
            snprintf(name, sizeof name, "bbox_overlaps mode %d aligned %d", m, al);
            check_case(name, f_overlaps, 2, p, &c, 1e-5);
            free_all(2, p);
        }
    /* one side empty */
    ov_case c = { MD_IOU, false };
    md_tensor *p[2] = { param_from(MD_F32, MD_DIMS(5, 4), a, true), param_from(MD_F32, MD_DIMS(0, 4), b, true) };
    check_case("bbox_overlaps empty", f_overlaps, 2, p, &c, 0);
    free_all(2, p);
}

/* ----------------------------------------------------------------- NMS -- */

typedef struct nms_case { double thr; int64_t max_num; bool agnostic; } nms_case;

static md_tensor *f_nms(md_tensor **in, void *u) {
    nms_case *c = u;
    return md_nms(ctx, in[0], in[1], c->thr, c->max_num);
}
static md_tensor *f_batched_nms(md_tensor **in, void *u) {
    nms_case *c = u;
    return md_batched_nms(ctx, in[0], in[1], in[2], c->thr, c->agnostic, c->max_num);
}

/* Scores on a coarse grid (many ties), one NaN, one -0 next to a +0. */
static void make_scores(float *s, int64_t n, uint64_t seed) {
    md_rng r;
    md_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) s[i] = (float)floor(md_rng_uniform(&r) * 20) / 20.0f;
    if (n > 7) {
        s[3] = NAN;
        s[5] = -0.0f;
        s[6] = 0.0f;
    }
}

Test(cuda_detection, nms_same_indices) {
    NEED_GPU();
    enum { N = 300 };
    static float b[4 * N], s[N];
    make_boxes(b, N, 100, 80, 51, true);
    make_scores(s, N, 52);
    static const nms_case cases[] = { { 0.5, 0, false }, { 0.3, 17, false }, { 0.0, 0, false }, { 0.9, 1, false },
                                      { -0.1, 0, false } };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        for (int64_t n = 0; n <= N; n += N) {   /* no boxes, then all */
            md_tensor *p[2] = { param_from(MD_F32, MD_DIMS(n, 4), b, false), param_from(MD_F32, MD_DIMS(n), s, false) };
            nms_case c = cases[i];
            check_case("nms", f_nms, 2, p, &c, 0);
            free_all(2, p);
        }
    }
    /* 65 to 130 boxes: a partial last mask word */
    md_tensor *p[2] = { param_from(MD_F32, MD_DIMS(97, 4), b, false), param_from(MD_F32, MD_DIMS(97), s, false) };
    nms_case c = { 0.4, 0, false };
    check_case("nms 97 boxes", f_nms, 2, p, &c, 0);
    free_all(2, p);
}

Test(cuda_detection, batched_nms_same_indices) {
    NEED_GPU();
    enum { N = 257 };
    static float b[4 * N], bneg[4 * N], s[N];
    static int64_t ix[N];
    make_boxes(b, N, 120, 90, 61, true);
    make_scores(s, N, 62);
    for (int64_t i = 0; i < N; i++) {
        ix[i] = (i * 7) % 5 + 2;   /* classes 2..6, neighbours differ */
        /* non-negative copies for the separable (per-class) path */
        for (int k = 0; k < 4; k++) bneg[4 * i + k] = b[4 * i + k];
        for (int k = 0; k < 4; k++) b[4 * i + k] = fabsf(b[4 * i + k]);
    }
    static const nms_case cases[] = { { 0.5, 0, false }, { 0.5, 0, true }, { 0.3, 25, false }, { 0.7, 9, true } };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int neg = 0; neg < 2; neg++) {
            md_tensor *p[3] = { param_from(MD_F32, MD_DIMS(N, 4), neg ? bneg : b, false),
                                param_from(MD_F32, MD_DIMS(N), s, false), param_from(MD_I64, MD_DIMS(N), ix, false) };
            nms_case c = cases[i];
            check_case(neg ? "batched_nms (negative coordinates)" : "batched_nms", f_batched_nms, 3, p, &c, 0);
            free_all(3, p);
        }
    md_tensor *p[3] = { param_from(MD_F32, MD_DIMS(0, 4), b, false), param_from(MD_F32, MD_DIMS(0), s, false),
                        param_from(MD_I64, MD_DIMS(0), ix, false) };
    nms_case c = { 0.5, 0, false };
    check_case("batched_nms empty", f_batched_nms, 3, p, &c, 0);
    free_all(3, p);
}

/* ---------------------------------------------------------------- sort -- */

typedef struct sort_case { int kind; int dim; bool desc; int64_t k; } sort_case;   /* 0 sort 1 argsort 2 topk */

static md_tensor *f_sort_vals(md_tensor **in, void *u) {
    sort_case *c = u;
    md_tensor *idx = NULL;
    if (c->kind == 2) return md_topk(ctx, in[0], c->k, c->dim, c->desc, &idx);
    return md_sort(ctx, in[0], c->dim, c->desc, &idx);
}
static md_tensor *f_sort_idx(md_tensor **in, void *u) {
    sort_case *c = u;
    md_tensor *idx = NULL;
    if (c->kind == 1) return md_argsort(ctx, in[0], c->dim, c->desc);
    md_tensor *v = c->kind == 2 ? md_topk(ctx, in[0], c->k, c->dim, c->desc, &idx)
                                : md_sort(ctx, in[0], c->dim, c->desc, &idx);
    return v ? idx : NULL;
}

/* f32 [4, 37, 3] on a grid of 7 values with +0 and -0 among them: every
 * line has many ties. */
static md_tensor *tied_f32(int ndim, const int64_t *shape, uint64_t seed, bool with_nan) {
    md_tensor *t = randn_param(ctx, ndim, shape, seed);
    float *v = md_f32(t);
    for (int64_t i = 0; i < md_tensor_numel(t); i++) {
        v[i] = (float)floor(v[i] * 2.0) / 2.0f;
        if (v[i] == 0.0f && i % 2) v[i] = -0.0f;
        if (with_nan && i % 11 == 4) v[i] = NAN;
    }
    return t;
}

Test(cuda_detection, sort_argsort_topk_ties) {
    NEED_GPU();
    static const sort_case cases[] = {
        { 0, 1, false, 0 }, { 0, 1, true, 0 }, { 0, -1, true, 0 }, { 0, 0, false, 0 },
        { 1, 1, true, 0 },  { 1, 2, false, 0 }, { 2, 1, true, 5 }, { 2, 1, false, 5 },
        { 2, 0, true, 4 },  { 2, -1, false, 0 }, { 2, 1, true, 37 },
    };
    md_tensor *x = tied_f32(MD_DIMS(4, 37, 3), 71, false);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sort_case c = cases[i];
        char name[64];
        snprintf(name, sizeof name, "sort case %zu values", i);
        if (c.kind != 1) check_case(name, f_sort_vals, 1, &x, &c, 0);
        snprintf(name, sizeof name, "sort case %zu indices", i);
        check_case(name, f_sort_idx, 1, &x, &c, 0);
    }
    md_tensor_free(x);
    /* NaN (largest) among ties: indices only */
    md_tensor *y = tied_f32(MD_DIMS(3, 50), 72, true);
    for (int d = 0; d < 2; d++) {
        sort_case c = { 1, 1, d == 1, 0 };
        check_case("argsort with NaN", f_sort_idx, 1, &y, &c, 0);
    }
    md_tensor_free(y);
    /* one long line (the single-line path) and a 0-d-like single element */
    md_tensor *z = tied_f32(MD_DIMS(5000), 73, false);
    sort_case c1 = { 2, 0, true, 1000 }, c2 = { 0, 0, false, 0 };
    check_case("topk 1000 of 5000", f_sort_vals, 1, &z, &c1, 0);
    check_case("topk 1000 of 5000 indices", f_sort_idx, 1, &z, &c1, 0);
    check_case("sort 5000 indices", f_sort_idx, 1, &z, &c2, 0);
    md_tensor_free(z);
}

Test(cuda_detection, sort_integer_dtypes) {
    NEED_GPU();
    enum { N = 40 };
    int64_t a64[2 * N];
    int32_t a32[2 * N];
    uint8_t a8[2 * N];
    for (int i = 0; i < 2 * N; i++) {
        /* beyond 2^53 neighbours tie as doubles, as on the CPU */
        a64[i] = (i % 4 == 0) ? ((int64_t)1 << 60) + (i % 3) : (int64_t)((i * 37) % 9) - 4;
        a32[i] = (i * 53) % 7 - 3 + (i % 5 == 0 ? INT32_MIN / 2 : 0);
        a8[i] = (uint8_t)((i * 29) % 6 * 50);
    }
    md_tensor *p[3] = { param_from(MD_I64, MD_DIMS(2, N), a64, false), param_from(MD_I32, MD_DIMS(2, N), a32, false),
                        param_from(MD_U8, MD_DIMS(2, N), a8, false) };
    for (int t = 0; t < 3; t++)
        for (int d = 0; d < 2; d++) {
            sort_case cs = { 0, 1, d == 1, 0 }, ck = { 2, 1, d == 1, 7 };
            check_case("integer sort values", f_sort_vals, 1, &p[t], &cs, 0);
            check_case("integer sort indices", f_sort_idx, 1, &p[t], &cs, 0);
            check_case("integer topk indices", f_sort_idx, 1, &p[t], &ck, 0);
        }
    free_all(3, p);
}
