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
#include "testlib.h"
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
    test_tmpdir(dir, sizeof dir, "md_parse");
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

/* A shape whose element count wraps around 2^64 matched an empty byte range
 * and was accepted; reading it as a tensor then went far past the file. */
Test(parser_inputs, safetensors_shape_product_overflow_is_an_error) {
    const char *hdr = "{\"t\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 0]}}";
    size_t hl = strlen(hdr);
    unsigned char buf[256];
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    const char *path = write_file("wrap.safetensors", buf, 8 + hl);
    md_error err = { 0 };
    md_st *st = md_st_open(path, &err);
    cr_expect_null(st);
    md_st_close(st);
    cr_expect(strstr(err.msg, "wrap.safetensors") && strstr(err.msg, "'t'"), "%s", err.msg);
}

/* A JPEG header of a few bytes declaring 30000 x 30000 pixels made the
 * decoder allocate 2.7 GB before it found the data missing. */
Test(parser_inputs, jpeg_declaring_a_huge_image_is_refused_before_allocating) {
    md_error err = { 0 };
    md_image *img = md_image_new(8, 8, 3, &err);
    cr_assert(img, "%s", err.msg);
    uint8_t *jpg;
    size_t n;
    cr_assert_eq(md_image_encode_jpeg(img, 90, &jpg, &n, &err), 0, "%s", err.msg);
    md_image_free(img);
    size_t sof = 0;
    for (size_t i = 2; i + 9 < n && !sof; i++)
        if (jpg[i] == 0xFF && jpg[i + 1] == 0xC0) sof = i;
    cr_assert(sof, "no SOF0 marker");
    jpg[sof + 5] = 30000 >> 8, jpg[sof + 6] = 30000 & 255;   /* height */
    jpg[sof + 7] = 30000 >> 8, jpg[sof + 8] = 30000 & 255;   /* width */
    md_image *big = md_image_decode(jpg, n, MD_IMAGE_RGB, "big.jpg", &err);
    cr_expect_null(big);
    md_image_free(big);
    cr_expect(strstr(err.msg, "big.jpg") && strstr(err.msg, "30000x30000"), "%s", err.msg);
    /* 4000 x 4000 is allowed, but this file ends (no EOI) after 8 x 8 pixels:
     * truncated, reported as soon as the data runs out. */
    jpg[sof + 5] = 4000 >> 8, jpg[sof + 6] = 4000 & 255, jpg[sof + 7] = 4000 >> 8, jpg[sof + 8] = 4000 & 255;
    md_error_clear(&err);
    big = md_image_decode(jpg, n - 2, MD_IMAGE_RGB, "trunc.jpg", &err);
    cr_expect_null(big);
    md_image_free(big);
    cr_expect(strstr(err.msg, "trunc.jpg") && strstr(err.msg, "truncated"), "%s", err.msg);
    /* With its end marker in place the data ends just as early (libjpeg's
     * "premature end of data segment"): refused the same way, not filled
     * with gray to 4000 x 4000. */
    md_error_clear(&err);
    big = md_image_decode(jpg, n, MD_IMAGE_RGB, "short.jpg", &err);
    cr_expect_null(big);
    md_image_free(big);
    cr_expect(strstr(err.msg, "short.jpg") && strstr(err.msg, "truncated"), "%s", err.msg);
    free(jpg);
}

/* CocoDataset checks an annotation's segmentation with its own scanner and
 * hands yajl `null` in its place: every JSON form is still accepted... */
Test(parser_inputs, coco_segmentations_of_every_json_form_are_accepted) {
    static const char *const segs[] = {
        "[[1, 2.5, 3e2, -0.5, 1E-3, 0]]", "[]", "{}", "[[], [1]]",
        "{\"counts\": \"a\\\"b\\\\c\\u00e9\\n\", \"size\": [2, 3]}",
        "{\"x\": [true, false, null, -1.5e-3, 0, {\"y\": {}}], \"z\": \"]}\"}",
        " \n [ 1 , 2 ] ", "null", "5",
    };
    for (size_t k = 0; k < sizeof segs / sizeof segs[0]; k++) {
        char json[1024];
        snprintf(json, sizeof json,
                 "{\"images\": [{\"id\": 1, \"file_name\": \"segmentation\", \"width\": 64, \"height\": 48,"
                 " \"segmentation\": [1, 2]}], \"annotations\": [{\"id\": 3, \"image_id\": 1, \"category_id\": 4,"
                 " \"segmentation\" :%s, \"bbox\": [1, 2, 10, 10], \"area\": 100}],"
                 " \"categories\": [{\"id\": 4, \"name\": \"square\"}]}", segs[k]);
        md_error err = { 0 };
        md_dataset *ds = coco(json, &err);
        cr_assert(ds, "segmentation %s: %s", segs[k], err.msg);
        md_ann_info a;
        ds->iface->ann_info(ds, 0, &a);
        cr_expect_eq(a.n, 1, "segmentation %s", segs[k]);
        md_dataset_free(ds);
    }
}

/* ...and every syntax error inside one is still an error naming the file
 * and the line. */
Test(parser_inputs, coco_syntax_errors_inside_segmentations_are_reported) {
    static const char *const segs[] = {
        "[1,,2]", "[1 2]", "[01]", "[1.]", "[-]", "[1e]", "{\"a\" 1}", "[tru]", "[\"a\\x\"]", "[1}", "[1,]",
        "{\"a\": 1,}", "{1: 2}", "[\"\\u12g4\"]", "[[1]", "[\"a\tb\"]", "[1]]",
    };
    for (size_t k = 0; k < sizeof segs / sizeof segs[0]; k++) {
        char json[1024];
        snprintf(json, sizeof json,
                 "{\"images\": [{\"id\": 1, \"file_name\": \"a.png\", \"width\": 64, \"height\": 48}],\n"
                 "\"annotations\": [{\"id\": 3, \"image_id\": 1, \"category_id\": 4,\n"
                 " \"segmentation\": %s, \"bbox\": [1, 2, 10, 10], \"area\": 100}],"
                 " \"categories\": [{\"id\": 4, \"name\": \"square\"}]}", segs[k]);
        md_error err = { 0 };
        md_dataset *ds = coco(json, &err);
        cr_expect_null(ds, "segmentation %s was accepted", segs[k]);
        md_dataset_free(ds);
        cr_expect(strstr(err.msg, "ann.json:3:") && strstr(err.msg, "JSON syntax error"), "segmentation %s: %s",
                  segs[k], err.msg);
    }
}

/* The file is read in 256 KiB pieces: a "segmentation" key, its colon or
 * its value cut by a piece boundary reads the same. */
Test(parser_inputs, coco_segmentation_split_across_reads) {
    enum { PIECE = 1 << 18 };
    const char *head = "{\"info\": {\"pad\": \"";
    const char *mid = "\"}, \"images\": [{\"id\": 1, \"file_name\": \"a.png\", \"width\": 64, \"height\": 48}],"
                      " \"annotations\": [{\"id\": 3, \"image_id\": 1, \"category_id\": 4, \"segmentation\" : "
                      "[[1, 2, 3]], \"bbox\": [1, 2, 10, 10], \"area\": 100}], \"categories\": [{\"id\": 4,"
                      " \"name\": \"square\"}]}";
    const char *key = strstr(mid, "\"segmentation\"");
    size_t key_at = strlen(head) + (size_t)(key - mid);   /* without padding */
    char *json = malloc(PIECE + 4096);
    cr_assert(json);
    for (int shift = -24; shift <= 4; shift++) {
        size_t pad = PIECE - key_at + (size_t)(shift + 24) - 24;   /* key starts at PIECE + shift */
        size_t n = 0;
        n += (size_t)sprintf(json + n, "%s", head);
        memset(json + n, 'x', pad);
        n += pad;
        n += (size_t)sprintf(json + n, "%s", mid);
        md_error err = { 0 };
        md_dataset *ds = coco(json, &err);
        cr_assert(ds, "key at piece boundary %+d: %s", shift, err.msg);
        md_ann_info a;
        ds->iface->ann_info(ds, 0, &a);
        cr_expect_eq(a.n, 1, "key at piece boundary %+d", shift);
        md_dataset_free(ds);
    }
    free(json);
}

static md_st *st_from_header(const char *name, const char *hdr, size_t data_bytes, md_error *err) {
    size_t hl = strlen(hdr);
    unsigned char buf[1024] = { 0 };
    cr_assert(8 + hl + data_bytes <= sizeof buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    return md_st_open(write_file(name, buf, 8 + hl + data_bytes), err);
}

/* A second __metadata__ object was written into the first one's arrays,
 * sized for the second (heap overflow, found by the safetensors target). */
Test(parser_inputs, safetensors_repeated_keys_are_errors) {
    md_error err = { 0 };
    md_st *st = st_from_header("meta2.safetensors",
                               "{\"__metadata__\": {\"a\": \"1\", \"b\": \"2\"}, \"__metadata__\": {\"c\": \"3\"}}", 0,
                               &err);
    cr_expect_null(st);
    md_st_close(st);
    cr_expect(strstr(err.msg, "meta2.safetensors") && strstr(err.msg, "__metadata__"), "%s", err.msg);
    md_error_clear(&err);
    st = st_from_header("dup.safetensors",
                        "{\"w\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0, 2]},"
                        " \"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 2, &err);
    cr_expect_null(st);
    md_st_close(st);
    cr_expect(strstr(err.msg, "dup.safetensors") && strstr(err.msg, "'w'"), "%s", err.msg);
    /* One of each reads fine. */
    md_error_clear(&err);
    st = st_from_header("ok.safetensors",
                        "{\"__metadata__\": {\"a\": \"1\"}, \"w\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0, 2]}}",
                        2, &err);
    cr_assert(st, "%s", err.msg);
    cr_expect_eq(md_st_count(st), 1);
    cr_expect_str_eq(md_st_metadata(st, "a"), "1");
    md_st_close(st);
}
