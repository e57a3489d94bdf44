/* masks.h: pycocotools' RLE (encode, decode, area, toBbox, the string
 * form, frPoly + merge, iou with crowd) against tests/golden/masks_golden.py,
 * mmdet's crop_and_resize on hand-worked cases, and bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/roi_head.h>   /* md_mask_paste */
#include "testlib.h"

static md_st *st;
static void setup(void) { st = golden_open("masks"); }
static void teardown(void) { md_st_close(st); }

/* Entry `name` with its element count; NULL when absent. */
static const void *entry(const char *name, int64_t *numel, int64_t shape[4]) {
    int i = md_st_find(st, name);
    if (i < 0) return NULL;
    int64_t sh[8];
    int nd = md_st_shape(st, i, sh);
    int64_t n = 1;
    for (int k = 0; k < nd; k++) n *= sh[k];
    if (numel) *numel = n;
    if (shape) memcpy(shape, sh, sizeof(int64_t) * (size_t)(nd < 4 ? nd : 4));
    return golden_data(st, i);
}

static int n_of(const char *key) { return atoi(md_st_metadata(st, key)); }

Test(masks, encode_decode_area_bbox_string_match_pycocotools, .init = setup, .fini = teardown) {
    int n = n_of("n_enc");
    cr_assert(n >= 5);
    for (int i = 0; i < n; i++) {
        char k[64];
        int64_t hw[4], nm, nc, ns;
        snprintf(k, sizeof k, "enc%d_mask", i);
        const uint8_t *mask = entry(k, &nm, hw);
        snprintf(k, sizeof k, "enc%d_counts", i);
        const int64_t *counts = entry(k, &nc, NULL);
        snprintf(k, sizeof k, "enc%d_str", i);
        const uint8_t *str = entry(k, &ns, NULL);
        snprintf(k, sizeof k, "enc%d_area", i);
        const int64_t *area = entry(k, NULL, NULL);
        snprintf(k, sizeof k, "enc%d_bbox", i);
        const float *bbox = entry(k, NULL, NULL);
        cr_assert(mask && counts && str && area && bbox, "case %d", i);
        int h = (int)hw[0], w = (int)hw[1];
        md_error err = { 0 };
        md_rle r;
        cr_assert_eq(md_rle_encode(mask, h, w, &r, &err), 0, "%s", err.msg);
        cr_assert_eq(r.m, nc, "case %d: %lld counts, pycocotools %lld", i, (long long)r.m, (long long)nc);
        for (int64_t j = 0; j < nc; j++) cr_assert_eq(r.counts[j], (uint32_t)counts[j], "case %d count %lld", i, (long long)j);
        cr_assert_eq(md_rle_area(&r), (uint64_t)area[0], "case %d area", i);
        double bb[4];
        md_rle_to_bbox(&r, bb);
        for (int q = 0; q < 4; q++) cr_assert_eq(bb[q], (double)bbox[q], "case %d bbox[%d]", i, q);
        char *s = md_rle_to_string(&r);
        cr_assert_eq((int64_t)strlen(s), ns, "case %d string length", i);
        cr_assert(!memcmp(s, str, (size_t)ns), "case %d: string %s differs from pycocotools'", i, s);
        md_rle back;
        cr_assert_eq(md_rle_from_string(s, h, w, &back, &err), 0, "%s", err.msg);
        cr_assert_eq(back.m, r.m);
        cr_assert(!memcmp(back.counts, r.counts, sizeof(uint32_t) * (size_t)r.m));
        uint8_t *dec = malloc((size_t)h * w);
        cr_assert_eq(md_rle_decode(&back, dec, &err), 0, "%s", err.msg);
        cr_assert(!memcmp(dec, mask, (size_t)h * w), "case %d decode", i);
        free(dec);
        free(s);
        md_rle_free(&back);
        md_rle_free(&r);
    }
}

Test(masks, polygons_rasterise_as_frpyobjects_and_merge, .init = setup, .fini = teardown) {
    int n = n_of("n_poly");
    cr_assert(n >= 8);
    for (int i = 0; i < n; i++) {
        char k[64];
        int64_t nxy, nlen, shape[4];
        snprintf(k, sizeof k, "poly%d_xy", i);
        const float *xy = entry(k, &nxy, NULL);
        snprintf(k, sizeof k, "poly%d_len", i);
        const int64_t *len = entry(k, &nlen, NULL);
        snprintf(k, sizeof k, "poly%d_hw", i);
        const int64_t *hw = entry(k, NULL, NULL);
        snprintf(k, sizeof k, "poly%d_mask", i);
        const uint8_t *ref = entry(k, NULL, shape);
        cr_assert(xy && len && hw && ref);
        int h = (int)hw[0], w = (int)hw[1];
        /* md_mask_ann (the dataset's form, doubles) */
        md_mask_ann a = { .kind = MD_MASK_ANN_POLYGONS, .id = 100 + i, .n_polys = (int)nlen };
        a.poly_len = malloc(sizeof(int) * (size_t)nlen);
        a.coords = malloc(sizeof(double) * (size_t)nxy);
        for (int j = 0; j < nlen; j++) a.poly_len[j] = (int)len[j];
        for (int j = 0; j < nxy; j++) a.coords[j] = xy[j];
        md_error err = { 0 };
        md_rle r;
        cr_assert_eq(md_mask_ann_to_rle(&a, h, w, &r, &err), 0, "%s", err.msg);
        uint8_t *got = malloc((size_t)h * w);
        cr_assert_eq(md_rle_decode(&r, got, &err), 0, "%s", err.msg);
        for (int p = 0; p < h * w; p++)
            cr_assert_eq(got[p], ref[p], "case %d pixel (%d, %d): %d, pycocotools %d", i, p % w, p / w, got[p], ref[p]);
        md_rle_free(&r);
        /* the same polygons as PolygonMasks (md_masks_bitmap) */
        md_masks m = { .kind = MD_MASKS_POLYGON, .n = 1, .h = h, .w = w, .n_polys = (int)nlen };
        int b0 = 0, c0 = (int)nlen;
        m.poly_begin = &b0;
        m.poly_count = &c0;
        m.polys = calloc((size_t)nlen, sizeof *m.polys);
        const float *p = xy;
        for (int j = 0; j < nlen; p += len[j], j++) {
            m.polys[j].n_points = (int)(len[j] / 2);
            m.polys[j].xy = (float *)p;
        }
        memset(got, 7, (size_t)h * w);
        cr_assert_eq(md_masks_bitmap(&m, 0, got, &err), 0, "%s", err.msg);
        cr_assert(!memcmp(got, ref, (size_t)h * w), "case %d as PolygonMasks", i);
        free(m.polys);
        free(got);
        md_mask_ann_free(&a);
    }
}

Test(masks, iou_with_crowd_matches_pycocotools, .init = setup, .fini = teardown) {
    int64_t sd[4], sg[4];
    const uint8_t *dt = entry("iou_dt", NULL, sd), *gt = entry("iou_gt", NULL, sg), *crowd = entry("iou_crowd", NULL, NULL);
    const int64_t *num = entry("iou_num", NULL, NULL), *den = entry("iou_den", NULL, NULL);
    int m = (int)sd[0], n = (int)sg[0], h = (int)sd[1], w = (int)sd[2];
    md_rle D[8], G[8];
    md_error err = { 0 };
    for (int d = 0; d < m; d++) cr_assert_eq(md_rle_encode(dt + (size_t)d * h * w, h, w, &D[d], &err), 0);
    for (int g = 0; g < n; g++) cr_assert_eq(md_rle_encode(gt + (size_t)g * h * w, h, w, &G[g], &err), 0);
    double iou[64];
    md_rle_iou(D, m, G, n, crowd, iou);
    for (int d = 0; d < m; d++)
        for (int g = 0; g < n; g++)
            cr_assert_eq(iou[d * n + g], (double)num[d * n + g] / (double)den[d * n + g], "iou[%d][%d] = %.17g", d, g,
                         iou[d * n + g]);
    /* different sizes: -1 where the boxes overlap */
    md_rle small;
    uint8_t one[4] = { 1, 1, 1, 1 };
    cr_assert_eq(md_rle_encode(one, 2, 2, &small, &err), 0);
    double o;
    md_rle_iou(&small, 1, &G[0], 1, NULL, &o);
    cr_assert(o == -1 || o == 0);
    md_rle_free(&small);
    for (int d = 0; d < m; d++) md_rle_free(&D[d]);
    for (int g = 0; g < n; g++) md_rle_free(&G[g]);
}

/* A hand-worked RLE: the 3x2 mask [[0, 1], [1, 1], [0, 0]] (row-major) is,
 * column by column, 0 1 0 | 1 1 0: runs of 0:1, 1:1, 0:1, 1:2, 0:1. */
Test(masks, hand_worked_rle) {
    uint8_t m[6] = { 0, 1, 1, 1, 0, 0 };
    md_rle r;
    md_error err = { 0 };
    cr_assert_eq(md_rle_encode(m, 3, 2, &r, &err), 0);
    uint32_t want[5] = { 1, 1, 1, 2, 1 };
    cr_assert_eq(r.m, 5);
    cr_assert(!memcmp(r.counts, want, sizeof want));
    cr_assert_eq(md_rle_area(&r), 3);
    /* string: 1 -> '1', 1 -> '1', 1 -> '1', 2 - 1 = 1 -> '1', 1 - 1 = 0 -> '0' */
    char *s = md_rle_to_string(&r);
    cr_assert_str_eq(s, "11110");
    free(s);
    /* merge (union) with its complement covers everything */
    uint8_t c[6];
    for (int i = 0; i < 6; i++) c[i] = !m[i];
    md_rle rs[2], u;
    rs[0] = r;
    cr_assert_eq(md_rle_encode(c, 3, 2, &rs[1], &err), 0);
    cr_assert_eq(md_rle_merge(rs, 2, false, &u, &err), 0);
    cr_assert_eq(u.m, 2);
    cr_assert_eq(u.counts[0], 0);
    cr_assert_eq(u.counts[1], 6);
    md_rle_free(&u);
    cr_assert_eq(md_rle_merge(rs, 2, true, &u, &err), 0);
    cr_assert_eq(md_rle_area(&u), 0);
    md_rle_free(&u);
    md_rle_free(&rs[1]);
    md_rle_free(&r);
}

Test(masks, bad_strings_and_segmentations_are_refused) {
    md_rle r;
    md_error err = { 0 };
    cr_assert_eq(md_rle_from_string("1~", 2, 2, &r, &err), -1);
    cr_assert(strstr(err.msg, "bad character"), "%s", err.msg);
    cr_assert_eq(md_rle_from_string("14", 2, 2, &r, &err), 0);   /* 1 + 4 = 5 != 4: read, not decoded */
    uint8_t px[4];
    cr_assert_eq(md_rle_decode(&r, px, &err), -1);
    cr_assert(strstr(err.msg, "add up"), "%s", err.msg);
    md_rle_free(&r);
    cr_assert_eq(md_rle_from_string("13", 2, 2, &r, &err), 0);
    md_rle_free(&r);
    md_mask_ann a;
    static const char *bad[] = { "5", "\"x\"", "[1, 2, 3]", "[[1, \"a\"]]", "{\"counts\": [1, 2]}",
                                 "{\"counts\": [1, -2], \"size\": [1, 1]}", "{\"counts\": [1.5], \"size\": [2, 2]}",
                                 "{\"counts\": 5, \"size\": [1, 1]}", "[[1, 2, 3", NULL };
    for (int i = 0; bad[i]; i++) {
        err = (md_error){ 0 };
        cr_assert_eq(md_mask_ann_parse(bad[i], strlen(bad[i]), &a, &err), -1, "%s accepted", bad[i]);
        cr_assert(strstr(err.msg, "segmentation"), "%s: %s", bad[i], err.msg);
    }
    const char *ok = "{\"size\": [2, 3], \"extra\": {\"a\": [1]}, \"counts\": [0, 2, 4]}";
    cr_assert_eq(md_mask_ann_parse(ok, strlen(ok), &a, &err), 0, "%s", err.msg);
    cr_assert_eq(a.kind, MD_MASK_ANN_RLE);
    cr_assert_eq(a.rle.h, 2);
    cr_assert_eq(a.rle.w, 3);
    cr_assert_eq(md_rle_area(&a.rle), 2);
    md_mask_ann_free(&a);
    const char *str = "{\"size\": [3, 2], \"counts\": \"11110\"}";
    cr_assert_eq(md_mask_ann_parse(str, strlen(str), &a, &err), 0, "%s", err.msg);
    cr_assert_eq(a.rle.m, 5);
    md_mask_ann_free(&a);
    const char *poly = "[[1, 2.5, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12, 13, 14]]";
    cr_assert_eq(md_mask_ann_parse(poly, strlen(poly), &a, &err), 0, "%s", err.msg);
    cr_assert_eq(a.kind, MD_MASK_ANN_POLYGONS);
    cr_assert_eq(a.n_polys, 2);
    cr_assert_eq(a.poly_len[1], 8);
    cr_assert_eq(a.coords[1], 2.5);
    md_rle rr;
    a.id = 77;
    a.poly_len[0] = 4;
    cr_assert_eq(md_mask_ann_to_rle(&a, 10, 10, &rr, &err), -1);
    cr_assert(strstr(err.msg, "annotation 77"), "%s", err.msg);
    md_mask_ann_free(&a);
}

/* crop_and_resize of bitmaps: RoIAlign (aligned) then >= 0.5. A box on
 * pixel boundaries at the mask's own resolution samples pixel centres,
 * so the crop is exact. */
Test(masks, crop_and_resize_bitmaps_hand_worked) {
    md_ctx *ctx = test_ctx(1, NULL);
    md_masks m = { .kind = MD_MASKS_BITMAP, .n = 2, .h = 6, .w = 8 };
    m.bitmaps = calloc(2 * 6 * 8, 1);
    for (int y = 1; y < 4; y++)
        for (int x = 2; x < 6; x++) m.bitmaps[y * 8 + x] = 1;   /* mask 0: 4x3 block at (2, 1) */
    m.bitmaps[48 + 5 * 8 + 7] = 1;                             /* mask 1: pixel (7, 5) */
    md_tensor *boxes = md_tensor_from(ctx, MD_F32, MD_DIMS(2, 4), (const float[]){ 2, 1, 6, 4, 0, 0, 8, 6 });
    md_tensor *inds = md_tensor_from(ctx, MD_I64, MD_DIMS(2), (const int64_t[]){ 0, 0 });
    md_tensor *t = md_masks_crop_and_resize(ctx, &m, boxes, inds, 3, 4);
    cr_assert(t, "%s", md_ctx_error(ctx)->msg);
    const float *o = md_f32(t);
    for (int i = 0; i < 12; i++) cr_assert_eq(o[i], 1.0f, "inside the block: %d", i);
    /* whole mask 0 at half resolution (3 x 4): bins of 2x2 pixels, each
     * averaged over its 4 pixel centres (ceil(2/1) samples): the block
     * covers bins fully or half (0.5 counts as 1). */
    float want[12] = { 0, 0.5f, 0.5f, 0, 0, 1, 1, 0, 0, 0, 0, 0 };
    for (int i = 0; i < 12; i++) cr_assert_eq(o[12 + i], want[i] >= 0.5f ? 1.0f : 0.0f, "whole mask bin %d", i);
    /* inds NULL: box p takes mask p */
    md_tensor *b2 = md_tensor_from(ctx, MD_F32, MD_DIMS(2, 4), (const float[]){ 2, 1, 6, 4, 7, 5, 8, 6 });
    md_tensor *t2 = md_masks_crop_and_resize(ctx, &m, b2, NULL, 1, 1);
    cr_assert(t2);
    cr_assert_eq(md_f32(t2)[0], 1.0f);
    cr_assert_eq(md_f32(t2)[1], 1.0f);
    /* a bad index is an op error */
    md_tensor *bad = md_tensor_from(ctx, MD_I64, MD_DIMS(2), (const int64_t[]){ 0, 5 });
    cr_assert_null(md_masks_crop_and_resize(ctx, &m, boxes, bad, 2, 2));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "selects mask 5"), "%s", md_ctx_error(ctx)->msg);
    free(m.bitmaps);
    md_ctx_free(ctx);
}

/* crop_and_resize of polygons: moved to the box and scaled by out / side. */
Test(masks, crop_and_resize_polygons_hand_worked) {
    md_ctx *ctx = test_ctx(1, NULL);
    float sq[8] = { 10, 10, 30, 10, 30, 30, 10, 30 };   /* a 20 x 20 square */
    md_polygon poly = { 4, sq };
    int b0 = 0, c0 = 1;
    md_masks m = { .kind = MD_MASKS_POLYGON, .n = 1, .h = 50, .w = 50, .poly_begin = &b0, .poly_count = &c0,
                   .polys = &poly, .n_polys = 1 };
    /* box = the square's left half: the polygon becomes (0,0)-(2*w, h) in a
     * 4 x 4 output, i.e. the whole output is inside */
    md_tensor *boxes = md_tensor_from(ctx, MD_F32, MD_DIMS(2, 4), (const float[]){ 10, 10, 20, 30, 30, 10, 50, 30 });
    md_tensor *t;
    md_tensor *inds = md_tensor_from(ctx, MD_I64, MD_DIMS(2), (const int64_t[]){ 0, 0 });
    t = md_masks_crop_and_resize(ctx, &m, boxes, inds, 4, 4);
    cr_assert(t, "%s", md_ctx_error(ctx)->msg);
    /* reference: frPoly of the moved polygon, computed through the RLE API */
    for (int p = 0; p < 2; p++) {
        const float *b = md_f32(boxes) + 4 * p;
        double ws = 4.0 / (b[2] - b[0]), hs = 4.0 / (b[3] - b[1]);
        double xy[8];
        for (int i = 0; i < 4; i++) {
            xy[2 * i] = (sq[2 * i] - b[0]) * ws;
            xy[2 * i + 1] = (sq[2 * i + 1] - b[1]) * hs;
        }
        md_rle r;
        md_error err = { 0 };
        cr_assert_eq(md_rle_from_poly(xy, 4, 4, 4, &r, &err), 0);
        uint8_t ref[16];
        md_rle_decode(&r, ref, &err);
        md_rle_free(&r);
        for (int i = 0; i < 16; i++) cr_assert_eq(md_f32(t)[p * 16 + i], (float)ref[i], "box %d pixel %d", p, i);
    }
    /* the left half covers the whole output; the box right of the square
     * none of it */
    for (int i = 0; i < 16; i++) cr_assert_eq(md_f32(t)[i], 1.0f);
    for (int i = 0; i < 16; i++) cr_assert_eq(md_f32(t)[16 + i], 0.0f);
    md_ctx_free(ctx);
}

Test(masks, copy_is_deep) {
    md_masks m = { .kind = MD_MASKS_BITMAP, .n = 1, .h = 2, .w = 2 };
    m.bitmaps = malloc(4);
    memcpy(m.bitmaps, (uint8_t[]){ 1, 0, 0, 1 }, 4);
    md_masks c;
    md_error err = { 0 };
    cr_assert_eq(md_masks_copy(&c, &m, &err), 0);
    m.bitmaps[0] = 0;
    cr_assert_eq(c.bitmaps[0], 1);
    md_masks_free(&c);
    md_masks_free(&m);
    float xy[6] = { 0, 0, 1, 0, 1, 1 };
    md_polygon *ps = malloc(sizeof *ps);
    ps[0] = (md_polygon){ 3, malloc(sizeof xy) };
    memcpy(ps[0].xy, xy, sizeof xy);
    int *b = malloc(sizeof(int)), *n = malloc(sizeof(int));
    *b = 0;
    *n = 1;
    md_masks p = { .kind = MD_MASKS_POLYGON, .n = 1, .h = 2, .w = 2, .poly_begin = b, .poly_count = n, .polys = ps,
                   .n_polys = 1 };
    cr_assert_eq(md_masks_copy(&c, &p, &err), 0);
    ps[0].xy[2] = 9;
    cr_assert_eq(c.polys[0].xy[2], 1.0f);
    cr_assert_eq(c.poly_count[0], 1);
    md_masks_free(&c);
    md_masks_free(&p);
}

/* Random instance masks u8 [n, h, w]: a filled ellipse and a rectangle
 * each (a ring for every third), some pixels flipped; mask 0 a
 * checkerboard (a run per pixel: more counts than md_masks_encode first
 * makes room for). */
static uint8_t *random_masks(int n, int h, int w, uint64_t seed) {
    md_rng r;
    md_rng_seed(&r, seed);
    uint8_t *m = calloc((size_t)n * h * w, 1);
    for (int k = 0; k < n; k++) {
        uint8_t *p = m + (size_t)k * h * w;
        double cx = md_rng_uniform(&r) * w, cy = md_rng_uniform(&r) * h;
        double rx = 2 + md_rng_uniform(&r) * w / 2, ry = 2 + md_rng_uniform(&r) * h / 2;
        int x0 = (int)(md_rng_uniform(&r) * w), y0 = (int)(md_rng_uniform(&r) * h);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double e = ((x - cx) / rx) * ((x - cx) / rx) + ((y - cy) / ry) * ((y - cy) / ry);
                bool on = k % 3 == 2 ? e <= 1 && e >= 0.4 : e <= 1;
                on |= x >= x0 && x < x0 + w / 4 && y >= y0 && y < y0 + h / 5;
                if (md_rng_uniform(&r) < 0.02) on = !on;
                p[y * w + x] = k == 0 ? (uint8_t)((x + y) % 2) : (uint8_t)on;
            }
    }
    return m;
}

/* The mask kernels of the backend table (md_mask_targets, md_masks_paste,
 * md_masks_encode) against what they replace: RoIAlign (md_roi_align, which
 * test_ops_detection checks against mmcv) of the masks as floats, >= 0.5;
 * md_mask_paste and md_rle_encode one detection at a time; and decoding. */
Test(masks, mask_kernels_agree_with_roi_align_paste_and_encode) {
    md_ctx *ctx = test_ctx(2, NULL);
    enum { N = 6, H = 37, W = 53, P = 40 };
    uint8_t *bits = random_masks(N, H, W, 5);
    md_tensor *masks = md_tensor_from(ctx, MD_U8, MD_DIMS(N, H, W), bits);
    md_tensor *feat = md_tensor_empty(ctx, MD_F32, MD_DIMS(N, 1, H, W));
    for (int i = 0; i < N * H * W; i++) md_f32(feat)[i] = bits[i];
    /* boxes: random (fractional), on pixel boundaries, empty, the whole mask */
    md_rng r;
    md_rng_seed(&r, 6);
    float bx[P][4];
    int64_t ix[P];
    float rois[P][5];
    for (int p = 0; p < P; p++) {
        float x1 = (float)(md_rng_uniform(&r) * W), y1 = (float)(md_rng_uniform(&r) * H);
        float x2 = x1 + (float)(md_rng_uniform(&r) * (W - x1)), y2 = y1 + (float)(md_rng_uniform(&r) * (H - y1));
        if (p % 4 == 1) x1 = floorf(x1), y1 = floorf(y1), x2 = ceilf(x2), y2 = ceilf(y2);
        if (p == 2) x2 = x1, y2 = y1;
        if (p == 3) x1 = 0, y1 = 0, x2 = W, y2 = H;
        float b[4] = { x1, y1, x2, y2 };
        memcpy(bx[p], b, sizeof b);
        ix[p] = p % N;
        rois[p][0] = (float)ix[p];
        memcpy(rois[p] + 1, b, sizeof b);
    }
    md_tensor *boxes = md_tensor_from(ctx, MD_F32, MD_DIMS(P, 4), bx), *inds = md_tensor_from(ctx, MD_I64, MD_DIMS(P), ix);
    static const int sizes[][2] = { { 28, 28 }, { 7, 9 }, { 1, 1 } };
    for (int s = 0; s < 3; s++) {
        int oh = sizes[s][0], ow = sizes[s][1];
        md_tensor *t = md_mask_targets(ctx, masks, boxes, inds, oh, ow);
        md_tensor *ra = md_roi_align(ctx, feat, md_tensor_from(ctx, MD_F32, MD_DIMS(P, 5), rois), oh, ow, 1.0, 0, true);
        cr_assert(t && ra, "%s", md_ctx_error(ctx)->msg);
        int64_t ones = 0;
        for (int64_t i = 0; i < md_tensor_numel(t); i++) {
            cr_assert_eq(md_f32(t)[i], md_f32(ra)[i] >= 0.5f ? 1.0f : 0.0f, "%dx%d target %lld: %g, RoIAlign %.9g", oh,
                         ow, (long long)i, md_f32(t)[i], md_f32(ra)[i]);
            ones += md_f32(t)[i] != 0;
        }
        cr_assert(ones > 0 && ones < md_tensor_numel(t), "%dx%d: %lld ones", oh, ow, (long long)ones);
    }
    /* negative size, as RoIAlign, is an error */
    md_tensor *neg = md_tensor_from(ctx, MD_F32, MD_DIMS(1, 4), (const float[]){ 5, 5, 4, 6 });
    cr_assert_null(md_mask_targets(ctx, masks, neg, NULL, 2, 2));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "negative size"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);

    /* paste-back of D = 7 detections (channels of 3, boxes partly outside
     * the image, one of zero width) into a 45 x 61 image */
    enum { D = 7, C = 3, M = 14, IH = 45, IW = 61 };
    md_tensor *probs = md_tensor_empty(ctx, MD_F32, MD_DIMS(D, C, M, M));
    for (int64_t i = 0; i < md_tensor_numel(probs); i++) md_f32(probs)[i] = (float)md_rng_uniform(&r);
    float pb[D][4] = { { 3, 4, 30, 20 }, { -5, -3, 12, 50 }, { 40.5f, 10.25f, 70, 44.75f }, { 10, 10, 10, 30 },
                       { 0, 0, 61, 45 }, { 20.7f, 5.1f, 21.9f, 6.3f }, { 1, 2, 3, 4 } };
    int64_t ch[D] = { 0, 2, 1, 1, 0, 2, 2 };
    md_tensor *bits_img = md_masks_paste(ctx, probs, md_tensor_from(ctx, MD_I64, MD_DIMS(D), ch),
                                         md_tensor_from(ctx, MD_F32, MD_DIMS(D, 4), pb), IH, IW, 0.5f);
    cr_assert(bits_img, "%s", md_ctx_error(ctx)->msg);
    md_rle rle[D];
    cr_assert_eq(md_masks_paste_encode(ctx, probs, md_tensor_from(ctx, MD_I64, MD_DIMS(D), ch),
                                       md_tensor_from(ctx, MD_F32, MD_DIMS(D, 4), pb), IH, IW, 0.5f, rle), 0);
    uint8_t one[IH * IW], dec[IH * IW];
    md_error err = { 0 };
    for (int d = 0; d < D; d++) {
        md_mask_paste(md_f32(probs) + (d * C + ch[d]) * M * M, M, M, pb[d], IH, IW, 0.5f, one);
        cr_assert_eq(memcmp(one, md_u8(bits_img) + d * IH * IW, IH * IW), 0, "pasted mask %d", d);
        md_rle ref;
        cr_assert_eq(md_rle_encode(one, IH, IW, &ref, &err), 0);
        cr_assert_eq(rle[d].m, ref.m, "mask %d: %lld counts, md_rle_encode %lld", d, (long long)rle[d].m, (long long)ref.m);
        cr_assert_eq(memcmp(rle[d].counts, ref.counts, sizeof *ref.counts * (size_t)ref.m), 0, "mask %d counts", d);
        md_rle_free(&ref);
    }
    /* encode: the checkerboard needs more room than is first made */
    md_rle enc[N];
    cr_assert_eq(md_masks_encode(ctx, masks, enc), 0, "%s", md_ctx_error(ctx)->msg);
    for (int k = 0; k < N; k++) {
        cr_assert_eq(enc[k].h, H);
        cr_assert_eq(enc[k].w, W);
        cr_assert_eq(md_rle_decode(&enc[k], dec, &err), 0, "%s", err.msg);
        cr_assert_eq(memcmp(dec, bits + k * H * W, H * W), 0, "mask %d decodes to itself", k);
    }
    cr_assert_eq(enc[0].m, H * W, "checkerboard (H odd): a run per pixel, %lld counts", (long long)enc[0].m);
    free(bits);
    md_ctx_free(ctx);
}
