/* CustomDataset as a base class: MyDataset (tests/plugins/my_dataset.c, the
 * plugin guide's example) supplies only load_annotations; filtering, flags,
 * the pipeline, CLASSES, get_cat_ids and evaluate are the library's. The
 * shipped datasets derive from the same base. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "testlib.h"
#include <mmdet/custom_dataset.h>
#include <mmdet/data.h>

static md_ctx *ctx;
static char dir[64];

/* a: 64 x 48, two boxes; b: 20 px wide (under min_size 32); c: no boxes. */
static const char *ann_txt =
    "#\na.png\n64 48\n2\n4 4 24 14 1\n30 5 40 15 3\n"
    "#\nb.png\n20 100\n1\n1 1 6 6 0\n"
    "#\nc.png\n50 40\n0\n";

static void setup(void) {
    md_error err = { 0 };
    ctx = md_ctx_new(&err);
    cr_assert(ctx, "%s", err.msg);
    md_log_set_quiet(ctx, true);
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/datasets", &err), 0, "%s", err.msg);
    cr_assert_eq(md_plugin_load_file(ctx, "tests/plugins/my_dataset.so", &err), 0, "%s", err.msg);
    test_tmpdir(dir, sizeof dir, "md_custom");
    test_write_file(dir, "ann.txt", ann_txt);
    md_image *img = md_image_new(48, 64, 3, &err);
    cr_assert(img, "%s", err.msg);
    char path[128];
    snprintf(path, sizeof path, "%s/a.png", dir);
    cr_assert_eq(md_image_write_png(img, path, &err), 0, "%s", err.msg);
    md_image_free(img);
}

static void teardown(void) {
    md_ctx_free(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
}

TestSuite(custom_dataset, .init = setup, .fini = teardown);

/* `extra` is put inside the dataset's group. */
static md_dataset *build_ann(const char *ann, const char *extra, md_error *err) {
    char text[1024];
    snprintf(text, sizeof text,
             "data = { type = \"MyDataset\"; ann_file = \"%s\"; data_root = \"%s\"; %s };", ann, dir, extra);
    md_cfg *c = md_cfg_parse(text, "inline.cfg", err);
    cr_assert(c, "%s", err->msg);
    md_dataset *ds = md_build_dataset(ctx, md_cfg_get(c, "data"), NULL, err);
    md_cfg_free(c);
    return ds;
}

static md_dataset *build(const char *extra, md_error *err) { return build_ann("ann.txt", extra, err); }

Test(custom_dataset, filters_flags_and_boxes) {
    md_error err = { 0 };
    md_dataset *ds = build("", &err);
    cr_assert(ds, "%s", err.msg);
    const md_custom_dataset *d = md_custom_dataset_of(ds);
    cr_assert(d);
    cr_assert_eq(md_dataset_len(ds), 1);   /* b too narrow, c without boxes */
    cr_assert_eq(ds->n_classes, 4);
    cr_assert_str_eq(ds->classes[3], "motorcycle");
    cr_assert_eq(ds->flag[0], 1);
    char want_prefix[80];
    snprintf(want_prefix, sizeof want_prefix, "%s/", dir);
    cr_assert_str_eq(d->img_prefix, want_prefix);   /* img_prefix "" joined with data_root */
    md_ann_info a;
    cr_assert_eq(ds->iface->ann_info(ds, 0, &a), 0);
    cr_assert_eq(a.n, 2);
    cr_assert_eq(a.labels[0], 1);
    cr_assert_eq(a.labels[1], 3);
    cr_assert_float_eq(a.bboxes[6], 40.0f, 1e-6);
    cr_assert_eq(a.n_ignore, 0);
    int64_t ids[4];
    cr_assert_eq(md_custom_dataset_get_cat_ids(d, 0, ids, 4), 2);
    cr_assert_eq(ids[1], 3);
    cr_assert_null(ds->iface->format_results, "no results format: the iface says so");
    md_dataset_free(ds);

    ds = build("filter_empty_gt = false;", &err);
    cr_assert(ds, "%s", err.msg);
    cr_assert_eq(md_dataset_len(ds), 2);   /* c kept, b still too narrow */
    cr_assert_eq(ds->flag[1], 1);
    md_dataset_free(ds);
    ds = build("test_mode = true; classes = [\"x\", \"y\", \"z\", \"w\"];", &err);
    cr_assert(ds, "%s", err.msg);
    cr_assert_eq(md_dataset_len(ds), 3);
    cr_assert_eq(ds->flag[1], 0);
    cr_assert_str_eq(ds->classes[0], "x");
    md_dataset_free(ds);
}

Test(custom_dataset, pipeline_and_default_evaluate) {
    md_error err = { 0 };
    md_dataset *ds = build("pipeline = ({ type = \"LoadImageFromFile\"; }, { type = \"LoadAnnotations\"; });", &err);
    cr_assert(ds, "%s", err.msg);
    md_sample s;
    md_rng rng;
    md_sample_rng(&rng, 0, 0, 0);
    cr_assert_eq(md_dataset_get(ds, 0, &rng, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(s.w, 64);
    cr_assert_eq(s.h, 48);
    cr_assert_eq(s.gt_bboxes.n, 2);
    md_sample_clear(&s);
    /* CustomDataset.evaluate: the GT as detections, AP50 then mAP */
    float b[] = { 4, 4, 24, 14, 0.9f, 30, 5, 40, 15, 0.8f };
    int64_t l[] = { 1, 3 };
    md_det_result r = { 2, b, l };
    md_metrics m;
    cr_assert_eq(ds->iface->evaluate(ds, &r, 1, NULL, &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 2);
    cr_assert_str_eq(m.m[0].name, "AP50");
    cr_assert_str_eq(m.m[1].name, "mAP");
    cr_assert_float_eq(m.m[1].value, 1.0, 1e-9);
    r.n = 1;   /* the class-3 box missed: AP 1 and 0 */
    cr_assert_eq(ds->iface->evaluate(ds, &r, 1, "mAP", &m, &err), 0, "%s", err.msg);
    cr_assert_float_eq(m.m[1].value, 0.5, 1e-9);
    cr_assert_eq(ds->iface->evaluate(ds, &r, 1, "recall", &m, &err), 0, "%s", err.msg);
    cr_assert_str_eq(m.m[0].name, "recall@100@0.5");
    cr_assert_float_eq(m.m[0].value, 0.5, 1e-9);
    cr_assert_eq(ds->iface->evaluate(ds, &r, 1, "bbox", &m, &err), -1);
    cr_assert(strstr(err.msg, "MyDataset: metric bbox is not supported"), "%s", err.msg);
    md_dataset_free(ds);
}

Test(custom_dataset, schema_and_load_errors) {
    md_error err = { 0 };
    cr_assert_null(build("label_base = -1;", &err));
    cr_assert(strstr(err.msg, "label_base") && strstr(err.msg, "at least 0"), "%s", err.msg);
    cr_assert_null(build("img_prefx = \"x\";", &err));
    cr_assert(strstr(err.msg, "did you mean 'img_prefix'"), "%s", err.msg);
    cr_assert_null(build("proposal_file = \"p.pkl\";", &err));
    cr_assert(strstr(err.msg, "proposal_file is not supported"), "%s", err.msg);
    test_write_file(dir, "bad.txt", "#\na.png\n64 48\n1\n4 4 24 x 1\n");
    cr_assert_null(build_ann("bad.txt", "", &err));
    cr_assert(strstr(err.msg, "bad.txt:5: expected 'x1 y1 x2 y2 label'"), "%s", err.msg);
    /* label_base 1: the file's label 0 (line 11) is out of range */
    cr_assert_null(build("label_base = 1;", &err));
    cr_assert(strstr(err.msg, "ann.txt:11:"), "%s", err.msg);
}

/* The shipped datasets are CustomDatasets too; CocoDataset's get_cat_ids
 * gives category ids, crowd boxes included. */
Test(custom_dataset, coco_is_one) {
    test_write_file(dir, "coco.json",
               "{\"images\": [{\"id\": 7, \"file_name\": \"a.png\", \"width\": 64, \"height\": 48}],\n"
               " \"annotations\": [{\"id\": 1, \"image_id\": 7, \"category_id\": 5, \"bbox\": [4, 4, 20, 10],"
               " \"area\": 200, \"iscrowd\": 0},\n"
               "  {\"id\": 2, \"image_id\": 7, \"category_id\": 9, \"bbox\": [30, 5, 10, 10], \"area\": 100,"
               " \"iscrowd\": 1}],\n"
               " \"categories\": [{\"id\": 9, \"name\": \"b\"}, {\"id\": 5, \"name\": \"a\"}]}\n");
    char text[512];
    snprintf(text, sizeof text, "data = { type = \"CocoDataset\"; ann_file = \"coco.json\"; data_root = \"%s\";"
             " classes = [\"a\", \"b\"]; };", dir);
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse(text, "inline.cfg", &err);
    cr_assert(c, "%s", err.msg);
    md_dataset *ds = md_build_dataset(ctx, md_cfg_get(c, "data"), NULL, &err);
    md_cfg_free(c);
    cr_assert(ds, "%s", err.msg);
    const md_custom_dataset *d = md_custom_dataset_of(ds);
    cr_assert(d);
    cr_assert_eq(d->infos[0].id, 7);
    int64_t ids[4];
    cr_assert_eq(md_custom_dataset_get_cat_ids(d, 0, ids, 4), 2);
    cr_assert_eq(ids[0], 5);
    cr_assert_eq(ids[1], 9);
    cr_assert(ds->iface->format_results);
    md_dataset_free(ds);
}
