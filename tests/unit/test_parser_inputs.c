/* Regression cases for the parsers of outside input, each one an input the
 * fuzz targets (fuzz/) once found mishandled: the parser must refuse it with
 * a message naming the file, or read it as the cases below say. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include <mmdet/data.h>

static md_ctx *ctx;
static char dir[64];

static const char *write_file(const char *name, const void *data, size_t n) {
    static char path[4][160];
    static int slot;
    char *p = path[slot++ & 3];
    snprintf(p, 160, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    cr_assert(f, "cannot write %s", p);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
    return p;
}

static void setup(void) {
    md_error err = { 0 };
    ctx = md_ctx_new(&err);
    cr_assert(ctx, "%s", err.msg);
    md_log_set_quiet(ctx, true);
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/datasets", &err), 0, "%s", err.msg);
    snprintf(dir, sizeof dir, "/tmp/md_parse_XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void teardown(void) {
    md_ctx_free(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
}

TestSuite(parser_inputs, .init = setup, .fini = teardown);

/* CocoDataset in test mode (no filtering) on JSON text. */
static md_dataset *coco(const char *json, md_error *err) {
    const char *path = write_file("ann.json", json, strlen(json));
    md_cfg *cfg = md_cfg_new_group();
    md_cfg_set_str(cfg, "type", "CocoDataset");
    md_cfg_set_str(cfg, "ann_file", path);
    md_cfg_set_bool(cfg, "test_mode", true);
    md_cfg_append_str(md_cfg_set_list(cfg, "classes"), "square");
    md_dataset *ds = md_build_dataset(ctx, cfg, NULL, err);
    md_cfg_free(cfg);
    return ds;
}

/* Arrays where records belong were read as records (the first one before
 * any record wrote through index -1). They are not records: skipped. */
Test(parser_inputs, coco_arrays_in_place_of_records_are_not_records) {
    md_error err = { 0 };
    md_dataset *ds = coco("{\"images\": [[5], {\"id\": 1, \"file_name\": \"a.png\", \"width\": 64, \"height\": 48},"
                          " [7, \"x\"]],"
                          " \"annotations\": [[1, 2], {\"id\": 3, \"image_id\": 1, \"category_id\": 4,"
                          " \"bbox\": [1, 2, 10, 10], \"area\": 100}, [9, 9, 9]],"
                          " \"categories\": [[4], {\"id\": 4, \"name\": \"square\"}, [4]]}", &err);
    cr_assert(ds, "%s", err.msg);
    cr_assert_eq(md_dataset_len(ds), 1);
    md_img_info info;
    md_ann_info a;
    ds->iface->img_info(ds, 0, &info);
    cr_expect_eq(info.id, 1);
    cr_expect_eq(info.width, 64);
    ds->iface->ann_info(ds, 0, &a);
    cr_assert_eq(a.n, 1);
    cr_expect(a.bboxes[0] == 1 && a.bboxes[1] == 2 && a.bboxes[2] == 11 && a.bboxes[3] == 12);
    md_dataset_free(ds);
    /* The same with the section's value an object: nothing in it is a record. */
    ds = coco("{\"images\": {\"a\": {\"id\": 1, \"file_name\": \"a.png\", \"width\": 64, \"height\": 48}},"
              " \"annotations\": [], \"categories\": []}", &err);
    cr_assert(ds, "%s", err.msg);
    cr_expect_eq(md_dataset_len(ds), 0);
    md_dataset_free(ds);
}

/* 1e300 as an id was converted to int64 (undefined behaviour). */
Test(parser_inputs, coco_id_out_of_integer_range_is_an_error) {
    md_error err = { 0 };
    md_dataset *ds = coco("{\"images\": [{\"id\": 1e300, \"file_name\": \"a.png\", \"width\": 64, \"height\": 48}]}", &err);
    cr_assert_null(ds);
    cr_expect(strstr(err.msg, "ann.json:1:") && strstr(err.msg, "1e300"), "%s", err.msg);
    cr_expect_eq(err.code, MD_ERR_PARSE);
    md_error_clear(&err);
    ds = coco("{\"images\": [{\"id\": 1, \"file_name\": \"a.png\", \"width\": 99999999999, \"height\": 48}]}", &err);
    cr_assert_null(ds);
    cr_expect(strstr(err.msg, "ann.json") && strstr(err.msg, "99999999999"), "%s", err.msg);
}

/* Numbers are converted without strtod when they are short decimals; the
 * result must be strtod's, rounding included. */
Test(parser_inputs, coco_numbers_read_as_strtod_reads_them) {
    static const char *const xs[] = { "0.1", "123.45", "7.000000000000001", "1e1", "-0.0", "33.3333333333333333",
                                      "0.30000000000000004", "5", "2.675", "1.5E+2" };
    for (size_t k = 0; k < sizeof xs / sizeof xs[0]; k++) {
        char json[512];
        snprintf(json, sizeof json,
                 "{\"images\": [{\"id\": 1, \"file_name\": \"a.png\", \"width\": 640, \"height\": 480}],"
                 " \"annotations\": [{\"id\": 3, \"image_id\": 1, \"category_id\": 4,"
                 " \"bbox\": [%s, 2, 100.25, 50], \"area\": 100}], \"categories\": [{\"id\": 4, \"name\": \"square\"}]}",
                 xs[k]);
        md_error err = { 0 };
        md_dataset *ds = coco(json, &err);
        cr_assert(ds, "%s", err.msg);
        md_ann_info a;
        ds->iface->ann_info(ds, 0, &a);
        float x = (float)strtod(xs[k], NULL);
        if (x + 100.25f > 1 && x < 639) {   /* kept */
            cr_assert_eq(a.n, 1, "%s", xs[k]);
            cr_expect_eq(a.bboxes[0], x, "bbox x %s: %.9g, strtod gives %.9g", xs[k], a.bboxes[0], x);
            cr_expect_eq(a.bboxes[2], x + 100.25f, "%s", xs[k]);
        }
        md_dataset_free(ds);
    }
}
