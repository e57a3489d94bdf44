/* mmdet's BitmapMasks / PolygonMasks methods and LoadAnnotations' masks
 * against mmdet 2.28 itself (tests/golden/mask_ops_golden.py): rescale,
 * resize (nearest as cv2), flip, pad, crop, areas, get_bboxes,
 * crop_and_resize (RoIAlign for bitmaps, rasterised polygons), poly2mask. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "testlib.h"

static md_st *st;
static void setup(void) { st = golden_open("mask_ops"); }
static void teardown(void) { md_st_close(st); }
TestSuite(mask_ops, .init = setup, .fini = teardown);

static const void *entry(const char *name, int64_t shape[3]) {
    int i = md_st_find(st, name);
    cr_assert(i >= 0, "fixture entry %s missing", name);
    int64_t sh[8] = { 0 };
    int nd = md_st_shape(st, i, sh);
    for (int k = 0; k < 3; k++) shape[k] = k < nd ? sh[k] : 1;
    return golden_data(st, i);
}

static void ints(const char *meta, int *out, int n) {
    const char *s = md_st_metadata(st, meta);
    cr_assert(s, "meta %s", meta);
    for (int i = 0; i < n; i++) {
        while (*s && (*s < '0' || *s > '9') && *s != '-') s++;
        out[i] = (int)strtol(s, (char **)&s, 10);
    }
}

static md_masks bitmaps(void) {
    int64_t sh[3];
    const uint8_t *b = entry("bm_src", sh);
    md_masks m = { .kind = MD_MASKS_BITMAP, .n = (int)sh[0], .h = (int)sh[1], .w = (int)sh[2] };
    m.bitmaps = malloc((size_t)(sh[0] * sh[1] * sh[2]));
    memcpy(m.bitmaps, b, (size_t)(sh[0] * sh[1] * sh[2]));
    return m;
}

static md_masks polygons(void) {
    int64_t sx[3], sl[3], so[3], sb[3];
    const float *xy = entry("pm_xy", sx);
    const int64_t *len = entry("pm_len", sl), *obj = entry("pm_obj", so);
    entry("bm_src", sb);
    int np = (int)sl[0], n = (int)sb[0];
    md_masks m = { .kind = MD_MASKS_POLYGON, .n = n, .h = (int)sb[1], .w = (int)sb[2], .n_polys = np };
    m.poly_begin = calloc((size_t)n, sizeof(int));
    m.poly_count = calloc((size_t)n, sizeof(int));
    m.polys = calloc((size_t)np, sizeof *m.polys);
    for (int j = 0, off = 0; j < np; off += (int)len[j], j++) {
        if (m.poly_count[obj[j]]++ == 0) m.poly_begin[obj[j]] = j;
        m.polys[j].n_points = (int)len[j] / 2;
        m.polys[j].xy = malloc(sizeof(float) * (size_t)len[j]);
        memcpy(m.polys[j].xy, xy + off, sizeof(float) * (size_t)len[j]);
    }
    return m;
}

/* Every mask of m (rasterised when polygons) equals the fixture's. */
static void expect_masks(const md_masks *m, const char *name) {
    int64_t sh[3];
    const uint8_t *want = entry(name, sh);
    cr_assert(m->n == sh[0] && m->h == sh[1] && m->w == sh[2], "%s: %d masks of %dx%d, mmdet %lld of %lldx%lld", name,
              m->n, m->w, m->h, (long long)sh[0], (long long)sh[2], (long long)sh[1]);
    size_t plane = (size_t)m->h * m->w;
    uint8_t *got = malloc(plane + 1);
    md_error err = { 0 };
    for (int k = 0; k < m->n; k++) {
        cr_assert_eq(md_masks_bitmap(m, k, got, &err), 0, "%s", err.msg);
        for (size_t i = 0; i < plane; i++)
            cr_assert_eq(got[i] != 0, want[k * plane + i] != 0, "%s: mask %d pixel (%zu, %zu)", name, k, i % m->w,
                         i / m->w);
    }
    free(got);
}

Test(mask_ops, bitmap_methods_match_mmdet) {
    md_error err = { 0 };
    int64_t sh[3];
    md_masks m = bitmaps();
    entry("bm_rescale", sh);
    cr_assert_eq(md_masks_resize(&m, (int)sh[1], (int)sh[2], &err), 0);
    expect_masks(&m, "bm_rescale");
    md_masks_free(&m);
    int out[2], pad[2], box[4];
    ints("out_shape", out, 2);
    ints("pad_shape", pad, 2);
    ints("crop_box", box, 4);
    m = bitmaps();
    cr_assert_eq(md_masks_resize(&m, out[0], out[1], &err), 0);
    expect_masks(&m, "bm_resize");
    md_masks_free(&m);
    const char *dirs[3] = { "horizontal", "vertical", "diagonal" };
    for (int d = 0; d < 3; d++) {
        m = bitmaps();
        md_masks_flip(&m, d != 1, d != 0);
        char name[64];
        snprintf(name, sizeof name, "bm_flip_%s", dirs[d]);
        expect_masks(&m, name);
        md_masks_free(&m);
    }
    m = bitmaps();
    cr_assert_eq(md_masks_pad(&m, pad[0], pad[1], 0, &err), 0);
    expect_masks(&m, "bm_pad");
    md_masks_free(&m);
    m = bitmaps();
    cr_assert_eq(md_masks_crop(&m, box, &err), 0);
    expect_masks(&m, "bm_crop");
    md_masks_free(&m);
    m = bitmaps();
    double areas[16];
    float boxes[64];
    md_masks_areas(&m, areas);
    md_masks_get_bboxes(&m, boxes);
    const int64_t *wa = entry("bm_areas", sh);
    const float *wb = entry("bm_bboxes", sh);
    for (int k = 0; k < m.n; k++) {
        cr_expect_eq(areas[k], (double)wa[k]);
        for (int q = 0; q < 4; q++) cr_expect_eq(boxes[4 * k + q], wb[4 * k + q]);
    }
    md_masks_free(&m);
}

Test(mask_ops, polygon_methods_match_mmdet) {
    md_error err = { 0 };
    int64_t sh[3];
    md_masks m = polygons();
    expect_masks(&m, "pm_bitmap");
    md_masks_free(&m);
    m = polygons();
    entry("pm_rescale_bitmap", sh);
    cr_assert_eq(md_masks_resize(&m, (int)sh[1], (int)sh[2], &err), 0);
    expect_masks(&m, "pm_rescale_bitmap");
    md_masks_free(&m);
    int out[2], box[4];
    ints("out_shape", out, 2);
    ints("crop_box", box, 4);
    m = polygons();
    cr_assert_eq(md_masks_resize(&m, out[0], out[1], &err), 0);
    expect_masks(&m, "pm_resize_bitmap");
    md_masks_free(&m);
    const char *dirs[3] = { "horizontal", "vertical", "diagonal" };
    for (int d = 0; d < 3; d++) {
        m = polygons();
        md_masks_flip(&m, d != 1, d != 0);
        char name[64];
        snprintf(name, sizeof name, "pm_flip_%s_bitmap", dirs[d]);
        expect_masks(&m, name);
        md_masks_free(&m);
    }
    m = polygons();
    cr_assert_eq(md_masks_crop(&m, box, &err), 0);
    expect_masks(&m, "pm_crop_bitmap");
    double areas[16];
    float boxes[64];
    md_masks_free(&m);
    m = polygons();
    md_masks_areas(&m, areas);
    md_masks_get_bboxes(&m, boxes);
    const float *wa = entry("pm_areas", sh), *wb = entry("pm_bboxes", sh);
    for (int k = 0; k < m.n; k++) {
        cr_expect_eq((float)areas[k], wa[k], "area %d: %g vs %g", k, areas[k], wa[k]);
        for (int q = 0; q < 4; q++) cr_expect_eq(boxes[4 * k + q], wb[4 * k + q]);
    }
    md_masks_free(&m);
}

static void check_crop_and_resize(md_masks *m, const char *name) {
    md_ctx *ctx = test_ctx(0, NULL);
    int64_t sb[3], si[3], sw[3];
    const float *boxes = entry("cr_boxes", sb);
    const int64_t *inds = entry("cr_inds", si);
    const uint8_t *want = entry(name, sw);
    md_tensor *b = md_tensor_from(ctx, MD_F32, MD_DIMS(sb[0], 4), boxes);
    md_tensor *ix = md_tensor_from(ctx, MD_I64, MD_DIMS(si[0]), inds);
    md_tensor *t = md_masks_crop_and_resize(ctx, m, b, ix, (int)sw[1], (int)sw[2]);
    cr_assert(t, "%s", md_ctx_error(ctx)->msg);
    int64_t n = sw[0] * sw[1] * sw[2];
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(md_f32(t)[i], (float)want[i], "%s: box %lld pixel %lld", name, (long long)(i / (sw[1] * sw[2])),
                     (long long)(i % (sw[1] * sw[2])));
    md_ctx_free(ctx);
}

Test(mask_ops, crop_and_resize_matches_mmdet) {
    md_masks m = bitmaps();
    check_crop_and_resize(&m, "bm_cr");
    md_masks_free(&m);
    m = polygons();
    check_crop_and_resize(&m, "pm_cr");
    md_masks_free(&m);
}

Test(mask_ops, load_annotations_masks_match_mmdet) {
    int hw[2];
    ints("la_hw", hw, 2);
    md_mask_ann anns[3];
    md_error err = { 0 };
    for (int i = 0; i < 3; i++) {
        char key[16];
        snprintf(key, sizeof key, "la_ann%d", i);
        const char *js = md_st_metadata(st, key);
        cr_assert(js);
        cr_assert_eq(md_mask_ann_parse(js, strlen(js), &anns[i], &err), 0, "%s", err.msg);
    }
    md_masks m;
    cr_assert_eq(md_masks_from_anns(&m, anns, 3, hw[0], hw[1], true, &err), 0, "%s", err.msg);
    expect_masks(&m, "la_bitmap");
    md_masks_free(&m);
    cr_assert_eq(md_masks_from_anns(&m, anns, 1, hw[0], hw[1], false, &err), 0, "%s", err.msg);
    int64_t sh[3];
    const int64_t *len = entry("la_poly_len", sh);
    cr_assert_eq(m.poly_count[0], (int)sh[0]);
    for (int j = 0; j < m.poly_count[0]; j++) cr_expect_eq(2 * m.polys[j].n_points, (int)len[j]);
    md_masks_free(&m);
    for (int i = 0; i < 3; i++) md_mask_ann_free(&anns[i]);
}

/* CocoDataset and the training transforms with masks against mmdet's on
 * the same COCO file (tests/golden/mask_pipeline_golden.py): the kept
 * boxes, labels and masks after LoadAnnotations, Resize, RandomFlip, Pad. */
static const char *const pipelines[2] = {
    "{ type = \"LoadImageFromFile\"; }, { type = \"LoadAnnotations\"; with_bbox = true; with_mask = true; },"
    "{ type = \"Resize\"; img_scale = [50, 40]; keep_ratio = true; },"
    "{ type = \"RandomFlip\"; flip_ratio = 1.0; direction = \"diagonal\"; }, { type = \"Pad\"; size_divisor = 16; }",
    "{ type = \"LoadImageFromFile\"; }, { type = \"LoadAnnotations\"; with_bbox = true; with_mask = true; "
    "poly2mask = false; }, { type = \"Resize\"; img_scale = [30, 70]; keep_ratio = false; },"
    "{ type = \"RandomFlip\"; flip_ratio = 1.0; direction = \"horizontal\"; }, { type = \"Pad\"; size = [80, 40]; }",
};

Test(mask_ops, coco_pipeline_matches_mmdet) {
    md_st *ps = golden_open("mask_pipeline");
    md_ctx *ctx = test_ctx(0, (const char *const[]){ "plugins/datasets", NULL });
    int checked = 0;
    for (int p = 0; p < 2; p++) {
        char buf[2048];
        snprintf(buf, sizeof buf,
                 "data = { type = \"CocoDataset\"; data_root = \"tests/fixtures/mask_pipeline/\"; ann_file = \"ann.json\";"
                 " img_prefix = \"\"; classes = [\"a\", \"b\"]; filter_empty_gt = false; pipeline = ( %s ); };",
                 pipelines[p]);
        md_error err = { 0 };
        md_cfg *c = md_cfg_parse(buf, "inline.cfg", &err);
        cr_assert(c, "%s", err.msg);
        md_dataset *ds = md_build_dataset(ctx, md_cfg_get(c, "data"), NULL, &err);
        md_cfg_free(c);
        cr_assert(ds, "%s", err.msg);
        for (int64_t i = 0; i < md_dataset_len(ds); i++) {
            char key[64];
            snprintf(key, sizeof key, "p%d_i%lld_masks", p, (long long)i);
            int e = md_st_find(ps, key);
            md_rng rng;
            md_sample_rng(&rng, 0, 0, i);
            md_sample s;
            if (e < 0) {   /* an RLE object with poly2mask=false: mmdet fails there too */
                cr_assert_eq(md_dataset_get(ds, i, &rng, &s, &err), -1);
                cr_expect(strstr(err.msg, "poly2mask"), "%s", err.msg);
                continue;
            }
            cr_assert_eq(md_dataset_get(ds, i, &rng, &s, &err), 0, "%s", err.msg);
            int64_t sh[8];
            md_st_shape(ps, e, sh);
            const uint8_t *want = golden_data(ps, e);
            snprintf(key, sizeof key, "p%d_i%lld_bboxes", p, (long long)i);
            const float *wb = golden_data(ps, md_st_find(ps, key));
            snprintf(key, sizeof key, "p%d_i%lld_labels", p, (long long)i);
            const int64_t *wl = golden_data(ps, md_st_find(ps, key));
            snprintf(key, sizeof key, "p%d_i%lld_shape", p, (long long)i);
            const int64_t *ws = golden_data(ps, md_st_find(ps, key));
            const md_masks *m = &s.gt_masks;
            cr_assert(m->n == sh[0] && m->h == sh[1] && m->w == sh[2], "pipeline %d image %lld: %d masks %dx%d, mmdet "
                      "%lld %lldx%lld", p, (long long)i, m->n, m->w, m->h, (long long)sh[0], (long long)sh[2],
                      (long long)sh[1]);
            cr_assert_eq(s.gt_bboxes.n, m->n);
            cr_assert(s.meta.img_shape[0] == ws[0] && s.meta.img_shape[1] == ws[1] && s.meta.pad_shape[0] == ws[2] &&
                      s.meta.pad_shape[1] == ws[3]);
            for (int k = 0; k < m->n; k++) {
                cr_expect_eq(s.gt_bboxes.labels[k], wl[k]);
                for (int q = 0; q < 4; q++)
                    cr_expect(fabsf(s.gt_bboxes.xyxy[4 * k + q] - wb[4 * k + q]) < 1e-4f, "box %d: %g vs %g", k,
                              s.gt_bboxes.xyxy[4 * k + q], wb[4 * k + q]);
            }
            size_t plane = (size_t)m->h * m->w;
            uint8_t *got = malloc(plane);
            for (int k = 0; k < m->n; k++) {
                cr_assert_eq(md_masks_bitmap(m, k, got, &err), 0, "%s", err.msg);
                for (size_t q = 0; q < plane; q++)
                    cr_assert_eq(got[q], want[k * plane + q], "pipeline %d image %lld mask %d pixel (%zu, %zu)", p,
                                 (long long)i, k, q % m->w, q / m->w);
            }
            free(got);
            md_sample_clear(&s);
            checked++;
        }
        md_dataset_free(ds);
    }
    cr_assert_eq(checked, 5);
    md_ctx_free(ctx);
    md_st_close(ps);
}

/* Numbers of the JSON list after `key` in text, up to the list's end. */
static int json_numbers(const char *text, const char *key, double *out, int max) {
    const char *p = strstr(text, key);
    cr_assert(p, "%s not in %s", key, text);
    p = strchr(p, '[');
    int depth = 0, n = 0;
    for (; *p; p++) {
        if (*p == '[') depth++;
        else if (*p == ']') {
            if (--depth == 0) break;
        } else if ((*p >= '0' && *p <= '9') || *p == '-') {
            char *end;
            double v = strtod(p, &end);
            cr_assert(n < max);
            out[n++] = v;
            p = end - 1;
        }
    }
    return n;
}

/* RandomCrop keeps the masks of the boxes it keeps, cropped, and
 * recompute_bbox takes the boxes from them, as mmdet's for the same crop
 * offset (read from the gradient image the crop leaves). */
Test(mask_ops, random_crop_matches_mmdet) {
    md_st *ps = golden_open("mask_pipeline");
    md_ctx *ctx = test_ctx(0, (const char *const[]){ "plugins/datasets", NULL });
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse(
        "data = { type = \"CocoDataset\"; data_root = \"tests/fixtures/mask_pipeline/\"; ann_file = \"ann.json\";"
        " img_prefix = \"\"; classes = [\"a\", \"b\"]; filter_empty_gt = false; pipeline = ("
        " { type = \"LoadImageFromFile\"; }, { type = \"LoadAnnotations\"; with_bbox = true; with_mask = true; },"
        " { type = \"RandomCrop\"; crop_size = [30, 38]; allow_negative_crop = true; recompute_bbox = true; } ); };",
        "inline.cfg", &err);
    cr_assert(c, "%s", err.msg);
    md_dataset *ds = md_build_dataset(ctx, md_cfg_get(c, "data"), NULL, &err);
    md_cfg_free(c);
    cr_assert(ds, "%s", err.msg);
    int offsets_seen = 0, seen[64] = { 0 };
    for (uint64_t seed = 0; seed < 24; seed++) {
        md_rng rng;
        md_sample_rng(&rng, seed, 0, 0);
        md_sample s;
        cr_assert_eq(md_dataset_get(ds, 0, &rng, &s, &err), 0, "%s", err.msg);
        int ox = s.img_u8[0] / 5, oy = s.img_u8[1] / 5;
        offsets_seen += !seen[(oy * 8 + ox) & 63]++;
        char key[32];
        snprintf(key, sizeof key, "crop_%d_%d", oy, ox);
        const char *want = md_st_metadata(ps, key);
        cr_assert(want, "no golden for offset (%d, %d)", ox, oy);
        double boxes[64], labels[16];
        int nb = json_numbers(want, "\"bboxes\"", boxes, 64), nl = json_numbers(want, "\"labels\"", labels, 16);
        cr_assert_eq(nl, s.gt_bboxes.n, "offset (%d, %d): %d boxes, mmdet %d", ox, oy, s.gt_bboxes.n, nl);
        cr_assert_eq(nb, 4 * nl);
        cr_assert_eq(s.gt_masks.n, nl);
        for (int k = 0; k < nl; k++) {
            cr_expect_eq(s.gt_bboxes.labels[k], (int64_t)labels[k]);
            for (int q = 0; q < 4; q++) cr_expect_eq(s.gt_bboxes.xyxy[4 * k + q], (float)boxes[4 * k + q]);
        }
        /* masks: pycocotools' strings of mmdet's masks vs ours */
        const char *p = strstr(want, "\"masks\"");
        p = strchr(p, '[');
        size_t plane = (size_t)s.gt_masks.h * s.gt_masks.w;
        uint8_t *got = malloc(plane), *ref = malloc(plane);
        for (int k = 0; k < nl; k++) {
            p = strchr(p + 1, '"');
            char str[512];
            size_t n = 0;
            for (p++; *p != '"'; p++) {
                if (*p == '\\') p++;
                str[n++] = *p;
            }
            str[n] = 0;
            md_rle r;
            cr_assert_eq(md_rle_from_string(str, s.gt_masks.h, s.gt_masks.w, &r, &err), 0, "%s", err.msg);
            cr_assert_eq(md_rle_decode(&r, ref, &err), 0, "mask %d of offset (%d, %d): %s", k, ox, oy, err.msg);
            md_rle_free(&r);
            cr_assert_eq(md_masks_bitmap(&s.gt_masks, k, got, &err), 0);
            cr_assert(!memcmp(got, ref, plane), "offset (%d, %d) mask %d differs from mmdet's", ox, oy, k);
        }
        free(got);
        free(ref);
        md_sample_clear(&s);
    }
    cr_assert_geq(offsets_seen, 8, "the draws should visit several offsets");
    md_dataset_free(ds);
    md_ctx_free(ctx);
    md_st_close(ps);
}
