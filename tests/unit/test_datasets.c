/* CocoDataset, build_dataset and the wrappers, on a tiny COCO file and PNG
 * images written by the test. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include "testlib.h"
#include <mmdet/data.h>

static md_ctx *ctx;
static char dir[64];

static const char *const files[] = { "a.png", "b.png", "c.png", "d.png", "e.png" };
static const int sizes[][2] = { { 64, 48 }, { 40, 60 }, { 50, 50 }, { 20, 100 }, { 64, 64 } };   /* w, h */

/* Categories in the file: circle (2), square (1), triangle (3); the tests
 * ask for classes ["square", "circle"], so labels follow the file's order:
 * circle -> 0, square -> 1 (pycocotools' getCatIds(catNms=...)). */
static const char *coco_json =
    "{\"info\": {\"year\": 2024}, \"licenses\": [{\"id\": 1, \"name\": \"x\"}],\n"
    " \"images\": [\n"
    "  {\"id\": 1, \"file_name\": \"a.png\", \"width\": 64, \"height\": 48},\n"
    "  {\"id\": 2, \"file_name\": \"b.png\", \"width\": 40, \"height\": 60},\n"
    "  {\"id\": 3, \"file_name\": \"c.png\", \"width\": 50, \"height\": 50},\n"
    "  {\"id\": 4, \"file_name\": \"d.png\", \"width\": 20, \"height\": 100},\n"
    "  {\"id\": 5, \"file_name\": \"e.png\", \"width\": 64, \"height\": 64}],\n"
    " \"annotations\": [\n"
    "  {\"id\": 10, \"image_id\": 1, \"category_id\": 1, \"bbox\": [4, 4, 20, 10], \"area\": 200, \"iscrowd\": 0,\n"
    "   \"segmentation\": [[4, 4, 24, 4, 24, 14, 4, 14]]},\n"
    "  {\"id\": 11, \"image_id\": 1, \"category_id\": 2, \"bbox\": [30, 5, 10, 10], \"area\": 100, \"iscrowd\": 1,\n"
    "   \"segmentation\": {\"counts\": [1, 2, 3], \"size\": [48, 64]}},\n"
    "  {\"id\": 12, \"image_id\": 1, \"category_id\": 1, \"bbox\": [5, 5, 0.5, 10], \"area\": 5, \"iscrowd\": 0},\n"
    "  {\"id\": 13, \"image_id\": 1, \"category_id\": 3, \"bbox\": [1, 1, 5, 5], \"area\": 25, \"iscrowd\": 0},\n"
    "  {\"id\": 14, \"image_id\": 1, \"category_id\": 1, \"bbox\": [70, 1, 5, 5], \"area\": 25, \"iscrowd\": 0},\n"
    "  {\"id\": 20, \"image_id\": 2, \"category_id\": 2, \"bbox\": [0.5, 0, 10, 20.25], \"area\": 200, \"iscrowd\": 0},\n"
    "  {\"id\": 40, \"image_id\": 4, \"category_id\": 1, \"bbox\": [1, 1, 5, 5], \"area\": 25, \"iscrowd\": 0},\n"
    "  {\"id\": 50, \"image_id\": 5, \"category_id\": 2, \"bbox\": [8, 8, 16, 16], \"area\": 256, \"iscrowd\": 0},\n"
    "  {\"id\": 51, \"image_id\": 5, \"category_id\": 2, \"bbox\": [30, 30, 16, 16], \"area\": 256, \"ignore\": 1}],\n"
    " \"categories\": [{\"id\": 2, \"name\": \"circle\"}, {\"id\": 1, \"name\": \"square\"},\n"
    "                {\"id\": 3, \"name\": \"triangle\"}]}\n";

static void setup(void) {
    md_error err = { 0 };
    ctx = md_ctx_new(&err);
    cr_assert(ctx, "%s", err.msg);
    md_log_set_quiet(ctx, true);
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/datasets", &err), 0, "%s", err.msg);
    test_tmpdir(dir, sizeof dir, "md_ds");
    for (int i = 0; i < 5; i++) {
        md_image *img = md_image_new(sizes[i][1], sizes[i][0], 3, &err);
        for (int p = 0; p < sizes[i][0] * sizes[i][1] * 3; p++) img->data[p] = (uint8_t)(p * 13 + i);
        char path[128];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        cr_assert_eq(md_image_write_png(img, path, &err), 0, "%s", err.msg);
        md_image_free(img);
    }
    test_write_file(dir, "ann.json", coco_json);
}

static void teardown(void) {
    md_ctx_free(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
}

TestSuite(datasets, .init = setup, .fini = teardown);

/* Builds a dataset from libconfig text with {DIR} replaced by the fixture dir. */
static md_dataset *build(const char *text, const char *defaults, md_error *err) {
    char buf[4096], *o = buf;
    for (const char *p = text; *p;)
        if (!strncmp(p, "{DIR}", 5)) o += sprintf(o, "%s", dir), p += 5;
        else *o++ = *p++;
    *o = 0;
    md_cfg *c = md_cfg_parse(buf, "inline.cfg", err);
    cr_assert(c, "%s", err->msg);
    md_cfg *d = defaults ? md_cfg_parse(defaults, "defaults.cfg", err) : NULL;
    md_dataset *ds = md_build_dataset(ctx, md_cfg_get(c, "data"), d, err);
    md_cfg_free(c);
    md_cfg_free(d);
    return ds;
}

#define COCO "type = \"CocoDataset\"; data_root = \"{DIR}\"; ann_file = \"ann.json\"; classes = [\"square\", \"circle\"];"

static void expect_box(const float *b, float x1, float y1, float x2, float y2) {
    cr_expect(fabsf(b[0] - x1) < 1e-5 && fabsf(b[1] - y1) < 1e-5 && fabsf(b[2] - x2) < 1e-5 && fabsf(b[3] - y2) < 1e-5,
              "box [%g %g %g %g], expected [%g %g %g %g]", b[0], b[1], b[2], b[3], x1, y1, x2, y2);
}

Test(datasets, coco_filters_images_and_parses_boxes) {
    md_error err = { 0 };
    md_dataset *ds = build("data = { " COCO " };", NULL, &err);
    cr_assert(ds, "%s", err.msg);
    /* c.png has no annotation, d.png is 20 px wide (< 32): both dropped. */
    cr_assert_eq(md_dataset_len(ds), 3);
    cr_assert_eq(ds->n_classes, 2);
    cr_expect_str_eq(ds->classes[0], "square");
    md_img_info info;
    const char *want[] = { "a.png", "b.png", "e.png" };
    for (int i = 0; i < 3; i++) {
        ds->iface->img_info(ds, i, &info);
        cr_expect_str_eq(info.filename, want[i]);
    }
    cr_expect_eq(ds->flag[0], 1, "64x48 is wide");
    cr_expect_eq(ds->flag[1], 0, "40x60 is tall");
    cr_expect_eq(ds->flag[2], 0, "64x64 is not wider than high");
    md_ann_info a;
    ds->iface->ann_info(ds, 0, &a);
    /* 10 kept (square -> label 1); 11 crowd -> ignored; 12 width 0.5 dropped;
     * 13 triangle not in classes; 14 outside the image dropped. */
    cr_assert_eq(a.n, 1);
    expect_box(a.bboxes, 4, 4, 24, 14);
    cr_expect_eq(a.labels[0], 1);
    cr_assert_eq(a.n_ignore, 1);
    expect_box(a.bboxes_ignore, 30, 5, 40, 15);
    ds->iface->ann_info(ds, 1, &a);
    cr_assert_eq(a.n, 1);
    expect_box(a.bboxes, 0.5f, 0, 10.5f, 20.25f);
    cr_expect_eq(a.labels[0], 0);
    ds->iface->ann_info(ds, 2, &a);
    cr_expect_eq(a.n, 1, "the `ignore` annotation is skipped");
    cr_expect_eq(a.n_ignore, 0);
    md_dataset_free(ds);
}

Test(datasets, coco_test_mode_keeps_every_image) {
    md_error err = { 0 };
    md_dataset *ds = build("data = { " COCO " };", "test_mode = true;", &err);
    cr_assert(ds, "%s", err.msg);
    cr_expect_eq(md_dataset_len(ds), 5);
    cr_expect(ds->test_mode);
    md_dataset_free(ds);
    ds = build("data = { " COCO " filter_empty_gt = false; };", NULL, &err);
    cr_assert(ds, "%s", err.msg);
    cr_expect_eq(md_dataset_len(ds), 4, "only the 20 px image goes");
    md_dataset_free(ds);
}

Test(datasets, coco_default_classes_are_coco_80) {
    md_error err = { 0 };
    md_dataset *ds = build("data = { type = \"CocoDataset\"; ann_file = \"{DIR}/ann.json\"; test_mode = true; };",
                           NULL, &err);
    cr_assert(ds, "%s", err.msg);
    cr_expect_eq(ds->n_classes, 80);
    cr_expect_str_eq(ds->classes[79], "toothbrush");
    md_dataset_free(ds);
}

Test(datasets, coco_unknown_category_names_the_annotation) {
    test_write_file(dir, "bad.json", "{\"images\": [{\"id\": 1, \"file_name\": \"a.png\", \"width\": 64, \"height\": 48}],\n"
                           " \"annotations\": [{\"id\": 77, \"image_id\": 1, \"category_id\": 99, \"bbox\": [1, 1, 5, 5],"
                           " \"area\": 25}], \"categories\": [{\"id\": 1, \"name\": \"square\"}]}");
    md_error err = { 0 };
    md_dataset *ds = build("data = { type = \"CocoDataset\"; data_root = \"{DIR}\"; ann_file = \"bad.json\"; };", NULL, &err);
    cr_assert_null(ds);
    cr_expect(strstr(err.msg, "annotation 77") && strstr(err.msg, "99") && strstr(err.msg, "bad.json"), "%s", err.msg);
}

Test(datasets, coco_syntax_error_names_file_and_line) {
    test_write_file(dir, "broken.json", "{\"images\": [\n  {\"id\": 1,, \"file_name\": \"a.png\"}]}");
    md_error err = { 0 };
    md_dataset *ds = build("data = { type = \"CocoDataset\"; data_root = \"{DIR}\"; ann_file = \"broken.json\"; };", NULL, &err);
    cr_assert_null(ds);
    cr_expect(strstr(err.msg, "broken.json:2:"), "%s", err.msg);
    cr_expect_eq(err.code, MD_ERR_PARSE);
    md_error_clear(&err);
    ds = build("data = { type = \"CocoDataset\"; data_root = \"{DIR}\"; ann_file = \"missing.json\"; };", NULL, &err);
    cr_assert_null(ds);
    cr_expect(strstr(err.msg, "missing.json"), "%s", err.msg);
}

#define TRAIN_PIPELINE                                                                           \
    "pipeline = ( { type = \"LoadImageFromFile\"; }, { type = \"LoadAnnotations\"; with_bbox = true; },\n" \
    "  { type = \"Resize\"; img_scale = [128, 96]; keep_ratio = true; },\n"                      \
    "  { type = \"RandomFlip\"; flip_ratio = 0.0; },\n"                                          \
    "  { type = \"Normalize\"; mean = [123.675, 116.28, 103.53]; std = [58.395, 57.12, 57.375]; to_rgb = true; },\n" \
    "  { type = \"Pad\"; size_divisor = 32; }, { type = \"DefaultFormatBundle\"; },\n"           \
    "  { type = \"Collect\"; keys = [\"img\", \"gt_bboxes\", \"gt_labels\"]; } );"

Test(datasets, default_train_pipeline_end_to_end) {
    md_error err = { 0 };
    md_dataset *ds = build("data = { " COCO TRAIN_PIPELINE " };", NULL, &err);
    cr_assert(ds, "%s", err.msg);
    md_rng rng;
    md_sample_rng(&rng, 0, 0, 0);
    md_sample s;
    cr_assert_eq(md_dataset_get(ds, 0, &rng, &s, &err), 0, "%s", err.msg);
    /* 64x48 into (128, 96): factor 2 -> 128x96, padded to 128x96 (already /32). */
    cr_expect(s.h == 96 && s.w == 128 && s.c == 3);
    cr_expect(s.meta.img_shape[0] == 96 && s.meta.img_shape[1] == 128);
    cr_expect(s.meta.ori_shape[0] == 48 && s.meta.ori_shape[1] == 64);
    cr_expect(strstr(s.meta.filename, "a.png") && !strcmp(s.meta.ori_filename, "a.png"));
    cr_assert_eq(s.gt_bboxes.n, 1);
    expect_box(s.gt_bboxes.xyxy, 8, 8, 48, 28);
    cr_expect_eq(s.gt_bboxes.labels[0], 1);
    cr_expect_eq(s.gt_bboxes_ignore.n, 0, "not collected");
    /* Pixel (0, 0) of a.png was written as R, G, B = 0, 13, 26; read as BGR
     * (mmcv's order) and swapped back by to_rgb, so plane 0 is R and plane 2 is B. */
    cr_expect_float_eq(s.img_f32[0], (float)((0 - 123.675) / 58.395), 1e-4);
    cr_expect_float_eq(s.img_f32[2 * 96 * 128], (float)((26 - 103.53) / 57.375), 1e-4);
    md_sample_clear(&s);
    /* b.png: 40x60 into (128, 96): factor min(128/60, 96/40) = 2.1333 -> 85x128 -> padded 96x128. */
    cr_assert_eq(md_dataset_get(ds, 1, &rng, &s, &err), 0, "%s", err.msg);
    cr_expect(s.meta.img_shape[0] == 128 && s.meta.img_shape[1] == 85, "%d %d", s.meta.img_shape[0], s.meta.img_shape[1]);
    cr_expect(s.meta.pad_shape[0] == 128 && s.meta.pad_shape[1] == 96);
    md_sample_clear(&s);
    md_dataset_free(ds);
}

Test(datasets, missing_image_names_the_file) {
    md_error err = { 0 };
    md_dataset *ds = build("data = { " COCO TRAIN_PIPELINE " };", NULL, &err);
    cr_assert(ds, "%s", err.msg);
    char path[128];
    snprintf(path, sizeof path, "%s/b.png", dir);
    unlink(path);
    md_rng rng;
    md_rng_seed(&rng, 1);
    md_sample s;
    cr_assert_eq(md_dataset_get(ds, 1, &rng, &s, &err), -1);
    cr_expect(strstr(err.msg, "b.png") && strstr(err.msg, "LoadImageFromFile"), "%s", err.msg);
    md_dataset_free(ds);
}

Test(datasets, ann_file_list_becomes_concat) {
    md_error err = { 0 };
    md_dataset *ds = build("data = { type = \"CocoDataset\"; data_root = \"{DIR}\"; ann_file = [\"ann.json\", \"ann.json\"];"
                           " classes = [\"square\", \"circle\"]; };", NULL, &err);
    cr_assert(ds, "%s", err.msg);
    cr_expect_str_eq(ds->type, "ConcatDataset");
    cr_expect_eq(md_dataset_len(ds), 6);
    md_img_info info;
    ds->iface->img_info(ds, 4, &info);
    cr_expect_str_eq(info.filename, "b.png", "index 4 is the second copy's index 1");
    cr_expect_eq(ds->flag[3], 1);
    md_dataset_free(ds);
    /* A list of configs, with default_args reaching each. */
    ds = build("data = ( { " COCO " }, { " COCO " } );", "test_mode = true;", &err);
    cr_assert(ds, "%s", err.msg);
    cr_expect_eq(md_dataset_len(ds), 10);
    md_dataset_free(ds);
}

Test(datasets, repeat_dataset_maps_indices) {
    md_error err = { 0 };
    md_dataset *ds = build("data = { type = \"RepeatDataset\"; times = 3; dataset = { " COCO " }; };", NULL, &err);
    cr_assert(ds, "%s", err.msg);
    cr_assert_eq(md_dataset_len(ds), 9);
    md_img_info info;
    ds->iface->img_info(ds, 7, &info);
    cr_expect_str_eq(info.filename, "b.png");
    cr_expect_eq(ds->flag[6], 1);
    md_dataset_free(ds);
    /* default_args go to the wrapped dataset, not the wrapper. */
    ds = build("data = { type = \"RepeatDataset\"; times = 2; dataset = { " COCO " }; };", "test_mode = true;", &err);
    cr_assert(ds, "%s", err.msg);
    cr_expect_eq(md_dataset_len(ds), 10);
    md_dataset_free(ds);
}

Test(datasets, class_balanced_repeat_factors) {
    /* Kept images: a {square}, b {circle}, e {circle}: f(square) = 1/3,
     * f(circle) = 2/3. t = 0.6: r(square) = sqrt(1.8) = 1.34 -> 2 copies;
     * r(circle) = max(1, sqrt(0.9)) = 1. */
    md_error err = { 0 };
    md_dataset *ds = build("data = { type = \"ClassBalancedDataset\"; oversample_thr = 0.6; dataset = { " COCO " }; };",
                           NULL, &err);
    cr_assert(ds, "%s", err.msg);
    cr_assert_eq(md_dataset_len(ds), 4);
    const char *want[] = { "a.png", "a.png", "b.png", "e.png" };
    for (int i = 0; i < 4; i++) {
        md_img_info info;
        ds->iface->img_info(ds, i, &info);
        cr_expect_str_eq(info.filename, want[i], "index %d", i);
    }
    md_dataset_free(ds);
    /* t = 3: r(square) = 3, r(circle) = sqrt(4.5) = 2.12 -> 3 copies each. */
    ds = build("data = { type = \"ClassBalancedDataset\"; oversample_thr = 3.0; dataset = { " COCO " }; };", NULL, &err);
    cr_assert(ds, "%s", err.msg);
    cr_expect_eq(md_dataset_len(ds), 9);
    md_dataset_free(ds);
}

Test(datasets, unknown_dataset_type_is_reported) {
    md_error err = { 0 };
    md_dataset *ds = build("data = { type = \"CocoDatset\"; ann_file = \"x.json\"; };", NULL, &err);
    cr_assert_null(ds);
    cr_expect(strstr(err.msg, "CocoDataset"), "a suggestion: %s", err.msg);
}

/* The generated shapes dataset through the default training pipeline and
 * the loader (skipped when bin/mmdet-shapes is not built). */
Test(datasets, shapes_dataset_through_the_loader) {
    if (access("bin/mmdet-shapes", X_OK)) cr_skip_test("bin/mmdet-shapes is not built");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s/shapes --train 6 --val 2 --classes 3 --seed 3 >/dev/null", dir);
    cr_assert_eq(system(cmd), 0);
    md_error err = { 0 };
    md_dataset *ds = build("data = { type = \"CocoDataset\"; data_root = \"{DIR}/shapes\";"
                           " ann_file = \"annotations/instances_train.json\"; img_prefix = \"train\";"
                           " classes = [\"rectangle\", \"ellipse\", \"triangle\"]; " TRAIN_PIPELINE " };", NULL, &err);
    cr_assert(ds, "%s", err.msg);
    cr_assert_gt(md_dataset_len(ds), 0);
    md_loader_cfg cfg = MD_LOADER_CFG_DEFAULT;
    cfg.size_divisor = 32;
    md_loader *l = md_loader_new(ds, &cfg, &err);
    cr_assert_eq(md_loader_start_epoch(l, 0, &err), 0, "%s", err.msg);
    md_batch *b;
    int64_t images = 0;
    while ((b = md_loader_next(l, &err))) {
        cr_expect(b->img->shape[1] == 3 && b->img->shape[2] % 32 == 0 && b->img->shape[3] % 32 == 0);
        for (int i = 0; i < b->n; i++) {
            int h = b->metas[i].img_shape[0], w = b->metas[i].img_shape[1];
            cr_expect((h > w ? h : w) <= 128 && (h > w ? w : h) <= 96, "%dx%d fits (128, 96)", w, h);
            for (int k = 0; k < b->gt_bboxes[i].n; k++) {
                const float *x = b->gt_bboxes[i].xyxy + 4 * k;
                cr_expect(x[0] >= 0 && x[2] <= b->metas[i].img_shape[1] && x[0] < x[2] && x[1] < x[3]);
                cr_expect(b->gt_bboxes[i].labels[k] >= 0 && b->gt_bboxes[i].labels[k] < 3);
            }
        }
        images += b->n;
        md_batch_free(b);
    }
    cr_assert(!md_error_is_set(&err), "%s", err.msg);
    cr_expect_eq(images, md_loader_len(l) * 2);
    md_loader_free(l);
    md_dataset_free(ds);
}
