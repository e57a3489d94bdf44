/* Instance masks through the data path: CocoDataset's segmentations
 * (polygons, RLE with list and string counts, crowd), LoadAnnotations
 * (BitmapMasks / PolygonMasks), Resize, RandomFlip, Pad, RandomCrop,
 * FilterAnnotations, Collect and collate, on hand-worked cases; transforms
 * that cannot carry masks refuse them. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "testlib.h"

static md_ctx *ctx;
static char dir[64];

/* a.png 16x12: ann 1 a polygon (the rectangle x 2..10, y 3..9 -> pixels
 * 2..9 x 3..8... as frPoly rasterises), ann 2 an uncompressed RLE, ann 3
 * crowd (ignored box, no mask), ann 4 a compressed RLE string; b.png 8x8:
 * one box without segmentation. */
static const char *coco_json =
    "{\"images\": [{\"id\": 1, \"file_name\": \"a.png\", \"width\": 16, \"height\": 12},\n"
    "              {\"id\": 2, \"file_name\": \"b.png\", \"width\": 8, \"height\": 8}],\n"
    " \"annotations\": [\n"
    "  {\"segmentation\": [[2, 3, 10, 3, 10, 9, 2, 9]], \"id\": 1, \"image_id\": 1, \"category_id\": 1,\n"
    "   \"bbox\": [2, 3, 8, 6], \"area\": 48, \"iscrowd\": 0},\n"
    "  {\"id\": 2, \"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 1, 2], \"area\": 2, \"iscrowd\": 0,\n"
    "   \"segmentation\": {\"size\": [12, 16], \"counts\": [0, 2, 190]}},\n"
    "  {\"id\": 3, \"image_id\": 1, \"category_id\": 1, \"bbox\": [12, 0, 4, 4], \"area\": 16, \"iscrowd\": 1,\n"
    "   \"segmentation\": {\"size\": [12, 16], \"counts\": [1, 2, 3]}},\n"
    "  {\"id\": 4, \"image_id\": 1, \"category_id\": 1, \"bbox\": [15, 11, 1, 1], \"area\": 1, \"iscrowd\": 0,\n"
    "   \"segmentation\": {\"size\": [12, 16], \"counts\": \"%s\"}},\n"
    "  {\"id\": 5, \"image_id\": 2, \"category_id\": 1, \"bbox\": [1, 1, 4, 4], \"area\": 16, \"iscrowd\": 0}],\n"
    " \"categories\": [{\"id\": 1, \"name\": \"thing\"}]}\n";

static void setup(void) {
    ctx = test_ctx(0, (const char *const[]){ "plugins/datasets", NULL });
    test_tmpdir(dir, sizeof dir, "md_maskdata");
    md_error err = { 0 };
    const int sz[2][2] = { { 16, 12 }, { 8, 8 } };
    const char *names[2] = { "a.png", "b.png" };
    for (int i = 0; i < 2; i++) {
        md_image *img = md_image_new(sz[i][1], sz[i][0], 3, &err);
        memset(img->data, 100, (size_t)sz[i][0] * sz[i][1] * 3);
        char path[160];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        cr_assert_eq(md_image_write_png(img, path, &err), 0, "%s", err.msg);
        md_image_free(img);
    }
    /* ann 4: the last pixel (15, 11) of the 12 x 16 mask, compressed */
    uint8_t m[12 * 16] = { 0 };
    m[11 * 16 + 15] = 1;
    md_rle r;
    cr_assert_eq(md_rle_encode(m, 12, 16, &r, &err), 0);
    char *s = md_rle_to_string(&r);
    char json[4096];
    snprintf(json, sizeof json, coco_json, s);
    free(s);
    md_rle_free(&r);
    test_write_file(dir, "ann.json", json);
}

static void teardown(void) {
    md_ctx_free(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
}

TestSuite(mask_data, .init = setup, .fini = teardown);

static md_dataset *build(const char *pipeline, md_error *err) {
    char buf[4096];
    snprintf(buf, sizeof buf,
             "data = { type = \"CocoDataset\"; data_root = \"%s\"; ann_file = \"ann.json\"; classes = [\"thing\"];\n"
             "  filter_empty_gt = false; min_size = 0; pipeline = ( %s ); };", dir, pipeline);
    md_cfg *c = md_cfg_parse(buf, "inline.cfg", err);
    cr_assert(c, "%s", err->msg);
    md_dataset *ds = md_build_dataset(ctx, md_cfg_get(c, "data"), NULL, err);
    md_cfg_free(c);
    return ds;
}

static md_sample get(md_dataset *ds, int64_t i) {
    md_rng rng;
    md_sample_rng(&rng, 0, 0, i);
    md_sample s;
    md_error err = { 0 };
    cr_assert_eq(md_dataset_get(ds, i, &rng, &s, &err), 0, "%s", err.msg);
    return s;
}

static int px(const md_masks *m, int k, int x, int y) { return m->bitmaps[((size_t)k * m->h + y) * m->w + x]; }

#define LOAD "{ type = \"LoadImageFromFile\"; }, { type = \"LoadAnnotations\"; with_mask = true; }"

Test(mask_data, coco_segmentations_become_bitmap_masks_of_kept_boxes) {
    md_error err = { 0 };
    md_dataset *ds = build(LOAD, &err);
    cr_assert(ds, "%s", err.msg);
    md_ann_info a;
    cr_assert_eq(ds->iface->ann_info(ds, 0, &a), 0);
    cr_assert_eq(a.n, 3, "crowd annotation 3 is an ignored box");
    cr_assert_eq(a.n_ignore, 1);
    cr_assert(a.masks);
    /* where each segmentation lies in the file, read when needed */
    const int64_t ids[3] = { 1, 2, 4 };
    const md_mask_ann_kind kinds[3] = { MD_MASK_ANN_POLYGONS, MD_MASK_ANN_RLE, MD_MASK_ANN_RLE };
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(a.masks[k].kind, MD_MASK_ANN_FILE);
        cr_assert_eq(a.masks[k].id, ids[k]);
        md_mask_ann r;
        md_error e = { 0 };
        cr_assert_eq(md_mask_ann_read(&a.masks[k], &r, &e), 0, "%s", e.msg);
        cr_assert_eq(r.kind, kinds[k]);
        cr_assert_eq(r.id, ids[k]);
        md_mask_ann_free(&r);
    }
    md_sample s = get(ds, 0);
    cr_assert(s.have & MD_FIELD_GT_MASKS);
    const md_masks *m = &s.gt_masks;
    cr_assert_eq(m->kind, MD_MASKS_BITMAP);
    cr_assert_eq(m->n, 3);
    cr_assert(m->h == 12 && m->w == 16);
    /* mask 0: frPoly of the rectangle (2,3)-(10,9): columns whose centre
     * crossing lies inside, x 2..9, rows y 3..8 (ceil of the boundary) */
    int area0 = 0;
    for (int y = 0; y < 12; y++)
        for (int x = 0; x < 16; x++) area0 += px(m, 0, x, y);
    cr_expect_eq(area0, 8 * 6, "rectangle area %d", area0);
    cr_expect(px(m, 0, 2, 3) && px(m, 0, 9, 8) && !px(m, 0, 10, 8) && !px(m, 0, 9, 9) && !px(m, 0, 1, 3));
    /* mask 1: counts [0, 2, 190] column-major: pixels (0, 0) and (0, 1) */
    cr_expect(px(m, 1, 0, 0) && px(m, 1, 0, 1) && !px(m, 1, 1, 0) && !px(m, 1, 0, 2));
    /* mask 2: the compressed string of pixel (15, 11) */
    cr_expect(px(m, 2, 15, 11) && !px(m, 2, 14, 11));
    md_sample_clear(&s);
    /* image 2 has a box without a segmentation */
    md_rng rng;
    md_sample_rng(&rng, 0, 0, 1);
    cr_assert_eq(md_dataset_get(ds, 1, &rng, &s, &err), -1);
    cr_expect(strstr(err.msg, "no segmentation") && strstr(err.msg, "b.png"), "%s", err.msg);
    md_dataset_free(ds);
}

Test(mask_data, poly2mask_false_gives_polygons) {
    md_error err = { 0 };
    md_dataset *ds = build("{ type = \"LoadImageFromFile\"; }, { type = \"LoadAnnotations\"; with_mask = true; "
                           "poly2mask = false; }", &err);
    cr_assert(ds, "%s", err.msg);
    md_rng rng;
    md_sample_rng(&rng, 0, 0, 0);
    md_sample s;
    cr_assert_eq(md_dataset_get(ds, 0, &rng, &s, &err), -1, "annotation 2 is an RLE");
    cr_expect(strstr(err.msg, "annotation 2") && strstr(err.msg, "poly2mask"), "%s", err.msg);
    md_dataset_free(ds);
}

/* Resize (keep_ratio, x2), flip, pad to 32: masks follow the image. */
Test(mask_data, resize_flip_pad_collect_collate) {
    md_error err = { 0 };
    md_dataset *ds = build(LOAD ", { type = \"Resize\"; img_scale = [32, 24]; keep_ratio = true; },"
                           "{ type = \"RandomFlip\"; flip_ratio = 1.0; direction = \"horizontal\"; },"
                           "{ type = \"Normalize\"; mean = [0, 0, 0]; std = [1, 1, 1]; to_rgb = false; },"
                           "{ type = \"Pad\"; size_divisor = 20; }, { type = \"DefaultFormatBundle\"; },"
                           "{ type = \"Collect\"; keys = [\"img\", \"gt_bboxes\", \"gt_labels\", \"gt_masks\"]; }",
                           &err);
    cr_assert(ds, "%s", err.msg);
    md_sample s = get(ds, 0);
    const md_masks *m = &s.gt_masks;
    cr_assert(m->h == 40 && m->w == 40, "padded to 40x40, got %dx%d", m->w, m->h);
    cr_assert(s.h == 40 && s.w == 40);
    /* mask 1 was pixels (0, 0), (0, 1): x2 nearest -> x 0..1, y 0..3, then
     * flipped in the 32-wide image -> x 30..31 */
    for (int y = 0; y < 40; y++)
        for (int x = 0; x < 40; x++) {
            int want = x >= 30 && x <= 31 && y <= 3;
            cr_assert_eq(px(m, 1, x, y), want, "mask 1 (%d, %d)", x, y);
        }
    /* the box of mask 0, (2,3)-(10,9), is now x2 and flipped: (12,6)-(28,18);
     * the mask's pixels lie inside it */
    const float *b = s.gt_bboxes.xyxy;
    cr_expect(fabsf(b[0] - 12) < 1e-5 && fabsf(b[2] - 28) < 1e-5 && fabsf(b[1] - 6) < 1e-5 && fabsf(b[3] - 18) < 1e-5);
    for (int y = 0; y < 40; y++)
        for (int x = 0; x < 40; x++)
            if (px(m, 0, x, y)) cr_assert(x >= 12 && x < 28 && y >= 6 && y < 18, "mask 0 pixel (%d, %d)", x, y);
    md_sample t;
    cr_assert_eq(md_sample_copy(&t, &s, &err), 0);
    md_batch *batch = md_collate((md_sample[]){ s, t }, 2, 32, &err);
    cr_assert(batch, "%s", err.msg);
    cr_assert(batch->gt_masks);
    cr_assert_eq(batch->gt_masks[1].n, 3);
    cr_assert(!memcmp(batch->gt_masks[1].bitmaps, m->bitmaps, 3 * 40 * 40));
    md_batch_free(batch);
    md_sample_clear(&t);
    md_sample_clear(&s);
    md_dataset_free(ds);
    /* without gt_masks in Collect the batch has none */
    ds = build(LOAD ", { type = \"Normalize\"; mean = [0, 0, 0]; std = [1, 1, 1]; },"
               "{ type = \"Collect\"; keys = [\"img\", \"gt_bboxes\", \"gt_labels\"]; }", &err);
    cr_assert(ds, "%s", err.msg);
    s = get(ds, 0);
    cr_assert_null(s.gt_masks.bitmaps);
    batch = md_collate(&s, 1, 1, &err);
    cr_assert(batch);
    cr_assert_null(batch->gt_masks);
    md_batch_free(batch);
    md_sample_clear(&s);
    md_dataset_free(ds);
}

/* Plain resize (keep_ratio false) to 8x6 (half): nearest takes even pixels;
 * vertical flip of polygons: y -> h - y. */
Test(mask_data, plain_resize_and_polygon_flip) {
    md_error err = { 0 };
    md_dataset *ds = build(LOAD ", { type = \"Resize\"; img_scale = [8, 6]; keep_ratio = false; }", &err);
    cr_assert(ds, "%s", err.msg);
    md_sample s = get(ds, 0);
    cr_assert(s.gt_masks.h == 6 && s.gt_masks.w == 8);
    /* mask 2 (pixel (15, 11)): source index floor(7 * 2) = 14, floor(5 * 2) = 10: not sampled */
    for (int i = 0; i < 48; i++) cr_assert_eq(s.gt_masks.bitmaps[2 * 48 + i], 0);
    /* mask 1 (pixels (0, 0), (0, 1)): output (0, 0) only */
    cr_expect(px(&s.gt_masks, 1, 0, 0) && !px(&s.gt_masks, 1, 0, 1));
    md_sample_clear(&s);
    md_dataset_free(ds);
    md_masks p = { 0 };
    md_mask_ann ann = { .kind = MD_MASK_ANN_POLYGONS, .id = 1, .n_polys = 2 };
    int len[2] = { 6, 4 };
    double xy[10] = { 1, 2, 5, 2, 5, 7, 0, 0, 1, 1 };
    ann.poly_len = len;
    ann.coords = xy;
    cr_assert_eq(md_masks_from_anns(&p, &ann, 1, 10, 20, false, &err), 0, "%s", err.msg);
    cr_assert_eq(p.n_polys, 1, "the 4-number polygon is dropped (process_polygons)");
    md_masks_flip(&p, false, true);
    cr_expect(p.polys[0].xy[1] == 8 && p.polys[0].xy[5] == 3 && p.polys[0].xy[0] == 1);
    md_masks_flip(&p, true, false);
    cr_expect(p.polys[0].xy[0] == 19 && p.polys[0].xy[2] == 15);
    cr_assert_eq(md_masks_resize(&p, 5, 40, &err), 0);
    cr_expect(p.polys[0].xy[0] == 38 && p.polys[0].xy[1] == 4);
    double area;
    md_masks_areas(&p, &area);
    cr_expect_eq(area, 0.5 * 8 * 2.5, "triangle of base 8, height 2.5: %g", area);
    md_masks_free(&p);
}

/* RandomCrop keeps the masks of the boxes it keeps, cropped; recompute_bbox
 * takes the boxes from them. FilterAnnotations drops masks with boxes. */
Test(mask_data, crop_and_filter_keep_masks_in_step) {
    md_error err = { 0 };
    md_dataset *ds = build(LOAD ", { type = \"RandomCrop\"; crop_size = [12, 8]; recompute_bbox = true; }", &err);
    cr_assert(ds, "%s", err.msg);
    md_sample s = get(ds, 0);
    cr_assert_eq(s.gt_masks.n, s.gt_bboxes.n);
    cr_assert(s.gt_masks.w == 8 && s.gt_masks.h == 12 && s.w == 8 && s.h == 12);
    float boxes[16];
    md_masks_get_bboxes(&s.gt_masks, boxes);
    for (int i = 0; i < 4 * s.gt_bboxes.n; i++) cr_expect_eq(s.gt_bboxes.xyxy[i], boxes[i]);
    md_sample_clear(&s);
    md_dataset_free(ds);
    ds = build(LOAD ", { type = \"FilterAnnotations\"; min_gt_bbox_wh = [1.5, 1.5]; }", &err);
    cr_assert(ds, "%s", err.msg);
    s = get(ds, 0);
    cr_assert_eq(s.gt_bboxes.n, 1, "the 1x2 box and the 1x1 box go");
    cr_assert_eq(s.gt_masks.n, 1, "with their masks");
    cr_assert(px(&s.gt_masks, 0, 2, 3));
    md_sample_clear(&s);
    md_dataset_free(ds);
    ds = build(LOAD ", { type = \"FilterAnnotations\"; by_box = false; by_mask = true; min_gt_mask_area = 2; }", &err);
    cr_assert(ds, "%s", err.msg);
    s = get(ds, 0);
    cr_assert_eq(s.gt_masks.n, 2, "the 1-pixel mask goes");
    cr_assert_eq(s.gt_bboxes.n, 2);
    md_sample_clear(&s);
    md_dataset_free(ds);
}

Test(mask_data, transforms_without_masks_refuse_them) {
    md_error err = { 0 };
    md_dataset *ds = build(LOAD ", { type = \"RandomAffine\"; }", &err);
    cr_assert(ds, "%s", err.msg);
    md_rng rng;
    md_sample_rng(&rng, 0, 0, 0);
    md_sample s;
    cr_assert_eq(md_dataset_get(ds, 0, &rng, &s, &err), -1);
    cr_expect(strstr(err.msg, "RandomAffine") && strstr(err.msg, "gt_masks"), "%s", err.msg);
    md_dataset_free(ds);
}

Test(mask_data, malformed_segmentation_names_the_annotation) {
    test_write_file(dir, "bad.json", "{\"images\": [{\"id\": 1, \"file_name\": \"a.png\", \"width\": 16, \"height\": 12}],\n"
                           " \"annotations\": [{\"segmentation\": [[1, \"x\", 3]], \"id\": 77, \"image_id\": 1,\n"
                           "   \"category_id\": 1, \"bbox\": [0, 0, 2, 2], \"area\": 4}],\n"
                           " \"categories\": [{\"id\": 1, \"name\": \"thing\"}]}\n");
    char buf[1024];
    snprintf(buf, sizeof buf, "data = { type = \"CocoDataset\"; data_root = \"%s\"; ann_file = \"bad.json\"; "
             "classes = [\"thing\"]; };", dir);
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse(buf, "inline.cfg", &err);
    md_dataset *ds = md_build_dataset(ctx, md_cfg_get(c, "data"), NULL, &err);
    md_cfg_free(c);
    cr_assert(ds, "loads (boxes only need no mask): %s", err.msg);
    md_dataset_free(ds);
    snprintf(buf, sizeof buf, "data = { type = \"CocoDataset\"; data_root = \"%s\"; ann_file = \"bad.json\"; "
             "classes = [\"thing\"]; min_size = 0; pipeline = ( " LOAD " ); };", dir);
    c = md_cfg_parse(buf, "inline.cfg", &err);
    ds = md_build_dataset(ctx, md_cfg_get(c, "data"), NULL, &err);
    md_cfg_free(c);
    cr_assert(ds, "%s", err.msg);
    md_rng rng;
    md_sample_rng(&rng, 0, 0, 0);
    md_sample s;
    cr_assert_eq(md_dataset_get(ds, 0, &rng, &s, &err), -1);
    cr_expect(strstr(err.msg, "bad.json") && strstr(err.msg, "annotation 77") && strstr(err.msg, "segmentation"),
              "%s", err.msg);
    md_dataset_free(ds);
}
