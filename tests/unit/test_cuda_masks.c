/* The CUDA mask kernels and integer unary ops against the CPU backend
 * (whose mask kernels test_masks.c checks against RoIAlign and the
 * pycocotools walk, and test_mask_ops / test_mask_head against mmdet):
 * mask targets (md_mask_targets, md_masks_crop_and_resize with the boxes on
 * the GPU), paste-back (md_masks_paste) and RLE (md_masks_encode), on random
 * masks, boxes and probabilities.
 *
 * Both backends evaluate the same per-pixel functions
 * (backends/mask_math.h, single-rounded float operations), so targets,
 * pasted masks and counts must be identical; the integer ops are exact.
 * Every test skips without a GPU. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cudalib.h"

TestSuite(cuda_masks, .init = cuda_setup, .fini = cuda_teardown);

/* u8 [n, h, w] masks: an ellipse and a rectangle each, a few flipped
 * pixels; mask 0 a checkerboard (a run per pixel), mask 1 empty, mask 2
 * full (when n allows). */
static md_tensor *random_masks(int n, int h, int w, uint64_t seed) {
    md_rng r;
    md_rng_seed(&r, seed);
    md_tensor *t = md_tensor_empty(ctx, MD_U8, MD_DIMS(n, h, w));
    cr_assert_not_null(t);
    for (int k = 0; k < n; k++) {
        uint8_t *p = md_u8(t) + (size_t)k * h * w;
        double cx = md_rng_uniform(&r) * w, cy = md_rng_uniform(&r) * h;
        double rx = 2 + md_rng_uniform(&r) * w / 2, ry = 2 + md_rng_uniform(&r) * h / 2;
        int x0 = (int)(md_rng_uniform(&r) * w), y0 = (int)(md_rng_uniform(&r) * h);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double e = ((x - cx) / rx) * ((x - cx) / rx) + ((y - cy) / ry) * ((y - cy) / ry);
                bool on = e <= 1 || (x >= x0 && x < x0 + w / 4 && y >= y0 && y < y0 + h / 5);
                if (md_rng_uniform(&r) < 0.02) on = !on;
                p[y * w + x] = k == 0 ? (uint8_t)((x + y) % 2) : k == 1 ? 0 : k == 2 ? 1 : (uint8_t)on;
            }
    }
    return t;
}

/* P boxes over a w x h mask: random with fractional corners, on pixel
 * boundaries, empty, the whole mask, partly outside. */
static md_tensor *random_boxes(int P, int h, int w, uint64_t seed) {
    md_rng r;
    md_rng_seed(&r, seed);
    md_tensor *t = md_tensor_empty(ctx, MD_F32, MD_DIMS(P, 4));
    cr_assert_not_null(t);
    for (int p = 0; p < P; p++) {
        float x1 = (float)(md_rng_uniform(&r) * w), y1 = (float)(md_rng_uniform(&r) * h);
        float x2 = x1 + (float)(md_rng_uniform(&r) * (w - x1)), y2 = y1 + (float)(md_rng_uniform(&r) * (h - y1));
        if (p % 4 == 1) x1 = floorf(x1), y1 = floorf(y1), x2 = ceilf(x2), y2 = ceilf(y2);
        if (p % 7 == 3) x1 -= 4, y2 += 5;
        if (p == 2) x2 = x1, y2 = y1;
        if (p == 5) x1 = 0, y1 = 0, x2 = (float)w, y2 = (float)h;
        float *b = md_f32(t) + 4 * p;
        b[0] = x1, b[1] = y1, b[2] = x2, b[3] = y2;
    }
    return t;
}

static md_tensor *gpu_copy(md_tensor *t) {
    md_tensor *g = md_tensor_to(ctx, t, gpu);
    cr_assert_not_null(g, "copy to cuda: %s", md_ctx_error(ctx)->msg);
    return g;
}

/* ------------------------------------------------------- mask targets -- */

Test(cuda_masks, mask_targets_match_the_cpu) {
    NEED_GPU();
    static const struct { int n, h, w, P, oh, ow; } cs[] = {
        { 6, 37, 53, 40, 28, 28 }, { 9, 120, 96, 300, 28, 28 }, { 4, 64, 80, 50, 7, 9 }, { 3, 10, 12, 0, 28, 28 },
    };
    for (size_t c = 0; c < sizeof cs / sizeof *cs; c++) {
        md_ctx_step_reset(ctx);
        md_tensor *m = random_masks(cs[c].n, cs[c].h, cs[c].w, 10 + c);
        md_tensor *b = random_boxes(cs[c].P, cs[c].h, cs[c].w, 20 + c);
        md_tensor *ix = md_tensor_empty(ctx, MD_I64, MD_DIMS(cs[c].P));
        for (int p = 0; p < cs[c].P; p++) md_i64(ix)[p] = (p * 7 + 3) % cs[c].n;
        md_tensor *cpu = md_mask_targets(ctx, m, b, ix, cs[c].oh, cs[c].ow);
        cr_assert_not_null(cpu, "%s", md_ctx_error(ctx)->msg);
        md_tensor *dev = md_mask_targets(ctx, gpu_copy(m), gpu_copy(b), gpu_copy(ix), cs[c].oh, cs[c].ow);
        cr_assert_not_null(dev, "%s", md_ctx_error(ctx)->msg);
        cr_assert_eq(dev->device, MD_CUDA);
        char what[64];
        snprintf(what, sizeof what, "mask targets case %zu", c);
        assert_equal(to_cpu(dev), cpu, what);
    }
}

/* md_masks_crop_and_resize with the boxes on the GPU: the bitmaps go there
 * and the targets stay there (mask_target's device); polygons are
 * rasterised on the host and copied. */
Test(cuda_masks, crop_and_resize_follows_the_boxes_device) {
    NEED_GPU();
    md_ctx_step_reset(ctx);
    md_tensor *m = random_masks(5, 48, 40, 31);
    md_masks bm = { .kind = MD_MASKS_BITMAP, .n = 5, .h = 48, .w = 40, .bitmaps = md_u8(m) };
    md_tensor *b = random_boxes(30, 48, 40, 32);
    md_tensor *ix = md_tensor_empty(ctx, MD_I64, MD_DIMS(30));
    for (int p = 0; p < 30; p++) md_i64(ix)[p] = p % 5;
    md_tensor *cpu = md_masks_crop_and_resize(ctx, &bm, b, ix, 28, 28);
    md_tensor *dev = md_masks_crop_and_resize(ctx, &bm, gpu_copy(b), gpu_copy(ix), 28, 28);
    cr_assert(cpu && dev, "%s", md_ctx_error(ctx)->msg);
    cr_assert_eq(dev->device, MD_CUDA);
    assert_equal(to_cpu(dev), cpu, "bitmap crop_and_resize");
    /* polygons: one triangle per mask */
    float tri[5][6];
    md_polygon polys[5];
    int begin[5], count[5];
    for (int k = 0; k < 5; k++) {
        float t[6] = { 2.0f + k, 3, 35, 10.5f + k, 12, 44 };
        memcpy(tri[k], t, sizeof t);
        polys[k] = (md_polygon){ 3, tri[k] };
        begin[k] = k;
        count[k] = 1;
    }
    md_masks pm = { .kind = MD_MASKS_POLYGON, .n = 5, .h = 48, .w = 40, .poly_begin = begin, .poly_count = count,
                    .polys = polys, .n_polys = 5 };
    md_tensor *pc = md_masks_crop_and_resize(ctx, &pm, b, ix, 28, 28);
    md_tensor *pd = md_masks_crop_and_resize(ctx, &pm, gpu_copy(b), gpu_copy(ix), 28, 28);
    cr_assert(pc && pd, "%s", md_ctx_error(ctx)->msg);
    cr_assert_eq(pd->device, MD_CUDA);
    assert_equal(to_cpu(pd), pc, "polygon crop_and_resize");
}

/* ---------------------------------------------------------- paste-back -- */

Test(cuda_masks, paste_matches_the_cpu) {
    NEED_GPU();
    static const struct { int D, C, M, ih, iw; float thr; } cs[] = {
        { 7, 3, 14, 45, 61, 0.5f }, { 40, 5, 28, 200, 320, 0.5f }, { 12, 1, 28, 97, 131, 0.3f }, { 0, 2, 28, 10, 10, 0.5f },
    };
    for (size_t c = 0; c < sizeof cs / sizeof *cs; c++) {
        md_ctx_step_reset(ctx);
        md_rng r;
        md_rng_seed(&r, 40 + c);
        md_tensor *probs = md_tensor_empty(ctx, MD_F32, MD_DIMS(cs[c].D, cs[c].C, cs[c].M, cs[c].M));
        for (int64_t i = 0; i < md_tensor_numel(probs); i++) md_f32(probs)[i] = (float)md_rng_uniform(&r);
        md_tensor *ch = md_tensor_empty(ctx, MD_I64, MD_DIMS(cs[c].D));
        for (int d = 0; d < cs[c].D; d++) md_i64(ch)[d] = (d * 5 + 1) % cs[c].C;
        /* boxes of the image, some beyond it, one empty and one tiny */
        md_tensor *b = random_boxes(cs[c].D, cs[c].ih, cs[c].iw, 50 + c);
        md_tensor *cpu = md_masks_paste(ctx, probs, ch, b, cs[c].ih, cs[c].iw, cs[c].thr);
        md_tensor *dev = md_masks_paste(ctx, gpu_copy(probs), gpu_copy(ch), gpu_copy(b), cs[c].ih, cs[c].iw, cs[c].thr);
        cr_assert(cpu && dev, "%s", md_ctx_error(ctx)->msg);
        cr_assert_eq(dev->device, MD_CUDA);
        char what[64];
        snprintf(what, sizeof what, "pasted masks case %zu", c);
        assert_equal(to_cpu(dev), cpu, what);
    }
}

/* ----------------------------------------------------------------- RLE -- */

/* md_masks_encode of a CPU and a GPU copy: the same counts. */
static void check_encode(md_tensor *m, const char *what) {
    int64_t n = m->shape[0];
    md_rle *a = md_ctx_alloc(ctx, sizeof *a * (size_t)(n + 1)), *b = md_ctx_alloc(ctx, sizeof *b * (size_t)(n + 1));
    cr_assert(a && b);
    cr_assert_eq(md_masks_encode(ctx, m, a), 0, "%s on the CPU: %s", what, md_ctx_error(ctx)->msg);
    cr_assert_eq(md_masks_encode(ctx, gpu_copy(m), b), 0, "%s on CUDA: %s", what, md_ctx_error(ctx)->msg);
    for (int64_t k = 0; k < n; k++) {
        cr_assert(a[k].h == b[k].h && a[k].w == b[k].w, "%s mask %lld: size", what, (long long)k);
        cr_assert_eq(a[k].m, b[k].m, "%s mask %lld: %lld counts on the CPU, %lld on CUDA", what, (long long)k,
                     (long long)a[k].m, (long long)b[k].m);
        for (int64_t j = 0; j < a[k].m; j++)
            cr_assert_eq(a[k].counts[j], b[k].counts[j], "%s mask %lld count %lld: %u on the CPU, %u on CUDA", what,
                         (long long)k, (long long)j, a[k].counts[j], b[k].counts[j]);
    }
}

Test(cuda_masks, encode_matches_the_cpu) {
    NEED_GPU();
    md_ctx_step_reset(ctx);
    /* the checkerboard needs more room than is first made (a second call) */
    check_encode(random_masks(8, 37, 53, 60), "odd sizes");
    check_encode(random_masks(30, 200, 300, 61), "image-sized");
    check_encode(random_masks(3, 1, 1, 62), "1x1");
    check_encode(random_masks(0, 20, 20, 63), "no masks");
    /* the pasted masks of the paste test, encoded where they are */
    md_rng r;
    md_rng_seed(&r, 64);
    md_tensor *probs = md_tensor_empty(ctx, MD_F32, MD_DIMS(9, 2, 28, 28));
    for (int64_t i = 0; i < md_tensor_numel(probs); i++) md_f32(probs)[i] = (float)md_rng_uniform(&r);
    md_tensor *ch = md_tensor_zeros(ctx, MD_I64, MD_DIMS(9));
    md_tensor *b = random_boxes(9, 90, 120, 65);
    md_rle cpu[9], dev[9];
    cr_assert_eq(md_masks_paste_encode(ctx, probs, ch, b, 90, 120, 0.5f, cpu), 0, "%s", md_ctx_error(ctx)->msg);
    cr_assert_eq(md_masks_paste_encode(ctx, gpu_copy(probs), gpu_copy(ch), gpu_copy(b), 90, 120, 0.5f, dev), 0, "%s",
                 md_ctx_error(ctx)->msg);
    for (int k = 0; k < 9; k++) {
        cr_assert_eq(cpu[k].m, dev[k].m, "pasted mask %d: %lld counts, %lld on CUDA", k, (long long)cpu[k].m,
                     (long long)dev[k].m);
        cr_assert_eq(memcmp(cpu[k].counts, dev[k].counts, sizeof *cpu[k].counts * (size_t)cpu[k].m), 0,
                     "pasted mask %d counts", k);
    }
}

/* ----------------------------------------------------- integer unary -- */

typedef md_tensor *(*int_fn)(md_tensor *);
static md_tensor *f_neg(md_tensor *a) { return md_neg(ctx, a); }
static md_tensor *f_abs(md_tensor *a) { return md_abs(ctx, a); }
static md_tensor *f_relu(md_tensor *a) { return md_relu(ctx, a); }
static md_tensor *f_clamp(md_tensor *a) { return md_clamp(ctx, a, -3, 40); }
static md_tensor *f_add(md_tensor *a) { return md_add_scalar(ctx, a, 7); }
static md_tensor *f_mul(md_tensor *a) { return md_mul_scalar(ctx, a, -3); }

/* The integer forms of neg, abs, relu, clamp, add and mul by a scalar
 * (the CUDA entry unary_int) on i64, i32 and u8: exactly the CPU's. */
Test(cuda_masks, integer_unary_ops_match_the_cpu) {
    NEED_GPU();
    md_ctx_step_reset(ctx);
    static const struct { const char *name; int_fn f; } ops[] = {
        { "neg", f_neg }, { "abs", f_abs }, { "relu", f_relu }, { "clamp", f_clamp }, { "add_scalar", f_add },
        { "mul_scalar", f_mul },
    };
    static const md_dtype dts[] = { MD_I64, MD_I32, MD_U8 };
    md_rng r;
    md_rng_seed(&r, 70);
    for (size_t d = 0; d < 3; d++) {
        md_tensor *x = md_tensor_empty(ctx, dts[d], MD_DIMS(1000));
        for (int64_t i = 0; i < 1000; i++) {
            int64_t v = (int64_t)(md_rng_uniform(&r) * 200) - (dts[d] == MD_U8 ? 0 : 100);
            if (dts[d] == MD_I64) md_i64(x)[i] = v * 1000003;
            else if (dts[d] == MD_I32) ((int32_t *)x->data)[i] = (int32_t)v;
            else md_u8(x)[i] = (uint8_t)v;
        }
        md_tensor *g = gpu_copy(x);
        for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
            md_tensor *cpu = ops[o].f(x), *dev = ops[o].f(g);
            cr_assert(cpu && dev, "%s: %s", ops[o].name, md_ctx_error(ctx)->msg);
            cr_assert_eq(dev->device, MD_CUDA);
            cr_assert_eq(dev->dtype, dts[d]);
            char what[64];
            snprintf(what, sizeof what, "%s of %s", ops[o].name, md_dtype_name(dts[d]));
            assert_equal(to_cpu(dev), cpu, what);
        }
    }
}
