/* VOCDataset / XMLDataset on hand-written annotations and on a dataset
 * written by bin/mmdet-shapes --format voc; VOC mAP and recall against
 * hand-worked cases. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include "testlib.h"
#include <mmdet/data.h>
#include <mmdet/evaluation.h>

/* ------------------------------------------------- eval_map, hand-worked */

static md_det_result det(int n, const float *b, const int64_t *l) { return (md_det_result){ n, b, l }; }

/* 3 GT over 2 images; detections in score order: TP, FP (no GT there),
 * FP (duplicate), TP, FP. recall 1/3,1/3,1/3,2/3,2/3; precision 1, 1/2,
 * 1/3, 1/2, 2/5. area: 1/3 * 1 + 1/3 * 1/2 = 0.5; 11 points: 4 thresholds
 * (0 .. 0.3) at precision 1, 3 (0.4 .. 0.6) at 1/2: 5.5 / 11 = 0.5. */
Test(voc_eval, two_images_area_and_11points) {
    float g0[] = { 0, 0, 10, 10, 20, 20, 30, 30 }, g1[] = { 0, 0, 10, 10 };
    int64_t gl0[] = { 0, 0 }, gl1[] = { 0 };
    md_voc_gt gts[2] = { { 2, g0, gl0, 0, NULL, NULL }, { 1, g1, gl1, 0, NULL, NULL } };
    float d0[] = { 0, 0, 10, 10, 0.9f, 0, 0, 10, 10, 0.7f, 40, 40, 45, 45, 0.5f };
    float d1[] = { 50, 50, 60, 60, 0.8f, 0, 0, 10, 10, 0.6f };
    int64_t l0[] = { 0, 0, 0 }, l1[] = { 0, 0 };
    md_det_result r[2] = { det(3, d0, l0), det(2, d1, l1) };
    double map, ap[1];
    int64_t ngt[1];
    md_error err = { 0 };
    cr_assert_eq(md_voc_eval_map(r, gts, 2, 1, 0.5, false, false, &map, ap, ngt, &err), 0, "%s", err.msg);
    cr_assert_eq(ngt[0], 3);
    cr_assert_float_eq(map, 0.5, 1e-6);
    cr_assert_eq(md_voc_eval_map(r, gts, 2, 1, 0.5, true, false, &map, ap, ngt, &err), 0, "%s", err.msg);
    cr_assert_float_eq(map, 0.5, 1e-6);
    /* The 20..30 GT is never found: drop the duplicate to see the area
     * curve change: tp 1,1,2,2 fp 0,1,1,2: precisions 1, 1/2, 2/3, 1/2:
     * area = 1/3 * 1 + 1/3 * 2/3 = 5/9. */
    r[0].n = 1;
    float d0b[] = { 0, 0, 10, 10, 0.9f, 40, 40, 45, 45, 0.5f };
    r[0] = det(2, d0b, l0);
    cr_assert_eq(md_voc_eval_map(r, gts, 2, 1, 0.5, false, false, &map, ap, ngt, &err), 0, "%s", err.msg);
    cr_assert_float_eq(map, 5.0 / 9.0, 1e-6);
    /* 11 points: t = 0 .. 0.3: 1; t = 0.4 .. 0.6: 2/3 -> (4 + 2) / 11 */
    cr_assert_eq(md_voc_eval_map(r, gts, 2, 1, 0.5, true, false, &map, ap, ngt, &err), 0, "%s", err.msg);
    cr_assert_float_eq(map, 6.0 / 11.0, 1e-6);
}

/* Recall exactly 0.3 (3 of 10) does not reach numpy's arange threshold
 * 0.30000000000000004: 11-point AP 3/11, not 4/11. Area: 0.3. */
Test(voc_eval, eleven_points_uses_arange_thresholds) {
    float g[40], d[15];
    int64_t gl[10] = { 0 }, dl[3] = { 0 };
    for (int i = 0; i < 10; i++) {
        float b[4] = { 20.0f * i, 0, 20.0f * i + 10, 10 };
        memcpy(g + 4 * i, b, sizeof b);
    }
    for (int i = 0; i < 3; i++) {
        float b[5] = { 20.0f * i, 0, 20.0f * i + 10, 10, 0.9f - 0.1f * i };
        memcpy(d + 5 * i, b, sizeof b);
    }
    md_voc_gt gt = { 10, g, gl, 0, NULL, NULL };
    md_det_result r = det(3, d, dl);
    double map;
    md_error err = { 0 };
    cr_assert_eq(md_voc_eval_map(&r, &gt, 1, 1, 0.5, true, false, &map, NULL, NULL, &err), 0);
    cr_assert_float_eq(map, 3.0 / 11.0, 1e-6);
    cr_assert_eq(md_voc_eval_map(&r, &gt, 1, 1, 0.5, false, false, &map, NULL, NULL, &err), 0);
    cr_assert_float_eq(map, 0.3, 1e-6);
}

/* Legacy coordinates: det (0,0,9,9) vs GT (0,0,4,9): IoU 36/81 without,
 * 50/100 = 0.5 with the +1: FP -> TP. */
Test(voc_eval, legacy_coordinates) {
    float g[] = { 0, 0, 4, 9 }, d[] = { 0, 0, 9, 9, 0.5f };
    int64_t gl[] = { 0 }, dl[] = { 0 };
    md_voc_gt gt = { 1, g, gl, 0, NULL, NULL };
    md_det_result r = det(1, d, dl);
    double map;
    cr_assert_eq(md_voc_eval_map(&r, &gt, 1, 1, 0.5, false, false, &map, NULL, NULL, NULL), 0);
    cr_assert_float_eq(map, 0.0, 1e-9);
    cr_assert_eq(md_voc_eval_map(&r, &gt, 1, 1, 0.5, false, true, &map, NULL, NULL, NULL), 0);
    cr_assert_float_eq(map, 1.0, 1e-9);
}

/* A detection on a difficult (ignored) GT counts neither way; that GT is
 * not counted; a class without GT is left out of the mean; detections in
 * an image without GT of their class are FP. Class 0: AP 1; class 1: no
 * GT; class 2: GT in image 0, its only detection in image 1 -> AP 0.
 * mAP = (1 + 0) / 2. */
Test(voc_eval, ignored_gt_and_classes_without_gt) {
    float g[] = { 0, 0, 10, 10, 50, 50, 70, 70 }, gi[] = { 20, 20, 30, 30 };
    int64_t gl[] = { 0, 2 }, gil[] = { 0 };
    md_voc_gt gts[2] = { { 2, g, gl, 1, gi, gil }, { 0, NULL, NULL, 0, NULL, NULL } };
    float d0[] = { 20, 20, 30, 30, 0.9f, 0, 0, 10, 10, 0.8f, 0, 0, 5, 5, 0.3f };
    int64_t l0[] = { 0, 0, 1 };
    float d1[] = { 50, 50, 70, 70, 0.9f };
    int64_t l1[] = { 2 };
    md_det_result r[2] = { det(3, d0, l0), det(1, d1, l1) };
    double map, ap[3];
    int64_t ngt[3];
    cr_assert_eq(md_voc_eval_map(r, gts, 2, 3, 0.5, false, true, &map, ap, ngt, NULL), 0);
    cr_assert_eq(ngt[0], 1);
    cr_assert_eq(ngt[1], 0);
    cr_assert_eq(ngt[2], 1);
    cr_assert_float_eq(ap[0], 1.0, 1e-9);
    cr_assert_float_eq(ap[2], 0.0, 1e-9);
    cr_assert_float_eq(map, 0.5, 1e-9);
    int64_t bad[] = { 3 };
    r[1] = det(1, d1, bad);
    md_error err = { 0 };
    cr_assert_eq(md_voc_eval_map(r, gts, 2, 3, 0.5, false, true, &map, NULL, NULL, &err), -1);
    cr_assert(strstr(err.msg, "results[1]"), "%s", err.msg);
}

/* Recall: with the best-scored proposal only, 1 of 2 GT; with both, 2 of 2;
 * a third GT in another image with no proposal: 1/3 and 2/3. */
Test(voc_eval, recalls) {
    float g0[] = { 0, 0, 10, 10, 20, 20, 30, 30 }, g1[] = { 5, 5, 9, 9 };
    int64_t gl[] = { 0, 0 };
    md_voc_gt gts[2] = { { 2, g0, gl, 0, NULL, NULL }, { 1, g1, gl, 0, NULL, NULL } };
    float p0[] = { 20, 20, 30, 30, 0.1f, 0, 0, 10, 10, 0.5f };
    int64_t l[] = { 0, 0 };
    md_det_result r[2] = { det(2, p0, l), det(0, NULL, NULL) };
    int nums[] = { 1, 2 };
    double rec[2];
    cr_assert_eq(md_voc_eval_recalls(r, gts, 2, nums, 2, 0.5, true, rec, NULL), 0);
    cr_assert_float_eq(rec[0], 1.0 / 3.0, 1e-12);
    cr_assert_float_eq(rec[1], 2.0 / 3.0, 1e-12);
}

/* ---------------------------------------------------------- the dataset */

static md_ctx *ctx;
static char dir[64];

#define OBJ(name, dif, x1, y1, x2, y2)                                                                       \
    "  <object><name>" name "</name><difficult>" #dif "</difficult>\n"                                  \
    "    <bndbox><xmin>" #x1 "</xmin><ymin>" #y1 "</ymin><xmax>" #x2 "</xmax><ymax>" #y2 "</ymax></bndbox>\n" \
    "  </object>\n"

static void setup(void) {
    md_error err = { 0 };
    ctx = md_ctx_new(&err);
    cr_assert(ctx, "%s", err.msg);
    md_log_set_quiet(ctx, true);
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/datasets", &err), 0, "%s", err.msg);
    test_tmpdir(dir, sizeof dir, "md_voc");
    char p[128];
    const char *sub[] = { "VOC2007", "VOC2007/Annotations", "VOC2007/JPEGImages", "VOC2007/ImageSets",
                          "VOC2007/ImageSets/Main" };
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, sub[i]);
        cr_assert_eq(mkdir(p, 0755), 0);
    }
    /* a: two cats (one difficult), a dog, a bird (not in classes);
     * b: only a bird -> filtered when training; c: 20 px high -> filtered;
     * d: no <size>: read from the image (48 x 40). */
    test_write_file(dir, "VOC2007/Annotations/a.xml",
               "<annotation>\n <size><width>100</width><height>80</height><depth>3</depth></size>\n"
               OBJ("cat", 0, 11, 21, 40, 50) OBJ("cat", 1, 1, 1, 5, 5) OBJ("dog", 0, 50.7, 10, 90, 70)
               OBJ("bird", 0, 2, 2, 8, 8) "</annotation>\n");
    test_write_file(dir, "VOC2007/Annotations/b.xml",
               "<annotation>\n <size><width>100</width><height>80</height></size>\n" OBJ("bird", 0, 2, 2, 8, 8)
               "</annotation>\n");
    test_write_file(dir, "VOC2007/Annotations/c.xml",
               "<annotation>\n <size><width>100</width><height>20</height></size>\n" OBJ("dog", 0, 2, 2, 8, 8)
               "</annotation>\n");
    test_write_file(dir, "VOC2007/Annotations/d.xml", "<annotation>\n" OBJ("dog", 0, 3, 4, 30, 35) "</annotation>\n");
    test_write_file(dir, "VOC2007/ImageSets/Main/all.txt", "a\nb\nc\r\nd\n");
    md_image *img = md_image_new(40, 48, 3, &err);
    snprintf(p, sizeof p, "%s/VOC2007/JPEGImages/d.jpg", dir);
    cr_assert_eq(md_image_write_jpeg(img, p, 90, &err), 0, "%s", err.msg);
    md_image_free(img);
}

static void teardown(void) {
    md_ctx_free(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
}

TestSuite(voc, .init = setup, .fini = teardown);

static md_dataset *build(const char *fmt, md_error *err) {
    char text[2048];
    snprintf(text, sizeof text, fmt, dir, dir);
    md_cfg *c = md_cfg_parse(text, "inline.cfg", err);
    cr_assert(c, "%s", err->msg);
    md_dataset *ds = md_build_dataset(ctx, md_cfg_get(c, "data"), NULL, err);
    md_cfg_free(c);
    return ds;
}

Test(voc, training_filters_and_boxes) {
    md_error err = { 0 };
    md_dataset *ds = build("data = { type = \"VOCDataset\"; classes = [\"dog\", \"cat\"];"
                           " ann_file = \"%s/VOC2007/ImageSets/Main/all.txt\"; img_prefix = \"%s/VOC2007\"; };",
                           &err);
    cr_assert(ds, "%s", err.msg);
    cr_assert_eq(md_dataset_len(ds), 2);   /* a and d */
    md_img_info info;
    ds->iface->img_info(ds, 0, &info);
    cr_assert_str_eq(info.filename, "JPEGImages/a.jpg");
    cr_assert_eq(info.width, 100);
    cr_assert_eq(info.height, 80);
    cr_assert_eq(ds->flag[0], 1);
    md_ann_info a;
    ds->iface->ann_info(ds, 0, &a);
    cr_assert_eq(a.n, 2);
    float want[] = { 10, 20, 39, 49, 49, 9, 89, 69 };   /* int(float('50.7')) = 50, minus 1 */
    for (int k = 0; k < 8; k++) cr_assert_float_eq(a.bboxes[k], want[k], 1e-6, "box coord %d", k);
    cr_assert_eq(a.labels[0], 1);
    cr_assert_eq(a.labels[1], 0);
    cr_assert_eq(a.n_ignore, 1);
    float wi[] = { 0, 0, 4, 4 };
    for (int k = 0; k < 4; k++) cr_assert_float_eq(a.bboxes_ignore[k], wi[k], 1e-6);
    ds->iface->img_info(ds, 1, &info);
    cr_assert_eq(info.width, 48);    /* from the JPEG header */
    cr_assert_eq(info.height, 40);
    cr_assert_eq(ds->flag[1], 1);
    md_dataset_free(ds);
}

Test(voc, min_size_and_test_mode) {
    md_error err = { 0 };
    md_dataset *ds = build("data = { type = \"VOCDataset\"; classes = [\"dog\", \"cat\"]; min_size = 35;"
                           " ann_file = \"%s/VOC2007/ImageSets/Main/all.txt\"; img_prefix = \"%s/VOC2007\"; };",
                           &err);
    cr_assert(ds, "%s", err.msg);
    md_ann_info a;
    ds->iface->ann_info(ds, 0, &a);
    /* cat 11..40 (29 px) is under 35 -> ignored; dog 50..90 x 10..70 stays */
    cr_assert_eq(a.n, 1);
    cr_assert_eq(a.labels[0], 0);
    cr_assert_eq(a.n_ignore, 2);
    md_dataset_free(ds);
    ds = build("data = { type = \"VOCDataset\"; classes = [\"dog\", \"cat\"]; test_mode = true;"
               " ann_file = \"%s/VOC2007/ImageSets/Main/all.txt\"; img_prefix = \"%s/VOC2007\"; };", &err);
    cr_assert(ds, "%s", err.msg);
    cr_assert_eq(md_dataset_len(ds), 4);
    md_dataset_free(ds);
}

/* The dataset's own GT as detections: mAP 1; metric order as mmdet's
 * VOCDataset (mAP first); dropping one of the three GT: 11-point AP of
 * that class 6/11 (recall 0.5, precision 1), the other 1. */
Test(voc, evaluate_gt_as_detections) {
    md_error err = { 0 };
    md_dataset *ds = build("data = { type = \"VOCDataset\"; classes = [\"dog\", \"cat\"];"
                           " ann_file = \"%s/VOC2007/ImageSets/Main/all.txt\"; img_prefix = \"%s/VOC2007\"; };",
                           &err);
    cr_assert(ds, "%s", err.msg);
    md_det_result r[2];
    float boxes[2][20];
    int64_t labels[2][4];
    for (int i = 0; i < 2; i++) {
        md_ann_info a;
        ds->iface->ann_info(ds, i, &a);
        for (int k = 0; k < a.n; k++) {
            memcpy(boxes[i] + 5 * k, a.bboxes + 4 * k, 4 * sizeof(float));
            boxes[i][5 * k + 4] = 0.5f + 0.1f * k;
            labels[i][k] = a.labels[k];
        }
        r[i] = det(a.n, boxes[i], labels[i]);
    }
    md_metrics m;
    cr_assert_eq(ds->iface->evaluate(ds, r, 2, "mAP", &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 2);
    cr_assert_str_eq(m.m[0].name, "mAP");
    cr_assert_str_eq(m.m[1].name, "AP50");
    cr_assert_float_eq(m.m[0].value, 1.0, 1e-9);
    r[1].n = 0;   /* the dog of d is missed */
    cr_assert_eq(ds->iface->evaluate(ds, r, 2, "mAP", &m, &err), 0, "%s", err.msg);
    cr_assert_float_eq(m.m[0].value, (6.0 / 11.0 + 1.0) / 2, 1e-6);
    cr_assert_float_eq(m.m[1].value, 0.773, 1e-9);   /* rounded to 3 places */
    cr_assert_eq(ds->iface->evaluate(ds, r, 2, "recall", &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 3);
    cr_assert_str_eq(m.m[0].name, "recall@100@0.5");
    cr_assert_float_eq(m.m[0].value, 2.0 / 3.0, 1e-9);
    cr_assert_eq(ds->iface->evaluate(ds, r, 1, "mAP", &m, &err), -1);
    cr_assert_eq(ds->iface->evaluate(ds, r, 2, "bbox", &m, &err), -1);
    cr_assert(strstr(err.msg, "bbox"), "%s", err.msg);
    md_dataset_free(ds);
}

Test(voc, xml_errors_name_file_and_line) {
    md_error err = { 0 };
    test_write_file(dir, "VOC2007/Annotations/e.xml", "<annotation>\n <size><width>100</width>\n</annotation>\n");
    test_write_file(dir, "VOC2007/Annotations/f.xml",
               "<annotation>\n <size><width>100</width><height>80</height></size>\n"
               " <object><name>dog</name>\n </object>\n</annotation>\n");
    test_write_file(dir, "VOC2007/Annotations/g.xml",
               "<annotation>\n <size><width>1x0</width><height>80</height></size>\n</annotation>\n");
    test_write_file(dir, "VOC2007/ImageSets/Main/e.txt", "a\ne\n");
    test_write_file(dir, "VOC2007/ImageSets/Main/f.txt", "f\n");
    test_write_file(dir, "VOC2007/ImageSets/Main/g.txt", "g\n");
    test_write_file(dir, "VOC2007/ImageSets/Main/h.txt", "nothere\n");
    const char *fmt = "data = { type = \"VOCDataset\"; classes = [\"dog\"];"
                      " ann_file = \"%%s/VOC2007/ImageSets/Main/%s.txt\"; img_prefix = \"%%s/VOC2007\"; };";
    char cfg[512];
    snprintf(cfg, sizeof cfg, fmt, "e");
    cr_assert_null(build(cfg, &err));
    cr_assert(strstr(err.msg, "e.xml:3:") && strstr(err.msg, "XML syntax error"), "%s", err.msg);
    cr_assert_eq(err.code, MD_ERR_PARSE);
    snprintf(cfg, sizeof cfg, fmt, "f");
    cr_assert_null(build(cfg, &err));
    cr_assert(strstr(err.msg, "f.xml:3: <object> 'dog' has no <bndbox>"), "%s", err.msg);
    snprintf(cfg, sizeof cfg, fmt, "g");
    cr_assert_null(build(cfg, &err));
    cr_assert(strstr(err.msg, "g.xml:2: <width> is '1x0'"), "%s", err.msg);
    snprintf(cfg, sizeof cfg, fmt, "h");
    cr_assert_null(build(cfg, &err));
    cr_assert(strstr(err.msg, "nothere.xml"), "%s", err.msg);
    cr_assert_eq(err.code, MD_ERR_IO);
}

Test(voc, year_and_classes_required) {
    md_error err = { 0 };
    char cfg[512];
    snprintf(cfg, sizeof cfg, "data = { type = \"VOCDataset\"; ann_file = \"%%s/VOC2007/ImageSets/Main/all.txt\";"
                              " img_prefix = \"%%s\"; };");
    cr_assert_null(build(cfg, &err));
    cr_assert(strstr(err.msg, "Cannot infer dataset year"), "%s", err.msg);
    snprintf(cfg, sizeof cfg, "data = { type = \"XMLDataset\"; ann_file = \"%%s/VOC2007/ImageSets/Main/all.txt\";"
                              " img_prefix = \"%%s/VOC2007\"; };");
    cr_assert_null(build(cfg, &err));
    cr_assert(strstr(err.msg, "classes"), "%s", err.msg);
    /* XMLDataset: CustomDataset's evaluate (AP50 first, no +1 coordinates) */
    snprintf(cfg, sizeof cfg, "data = { type = \"XMLDataset\"; classes = [\"cat\"]; ann_file ="
                              " \"%%s/VOC2007/ImageSets/Main/all.txt\"; img_prefix = \"%%s/VOC2007\"; };");
    md_dataset *ds = build(cfg, &err);
    cr_assert(ds, "%s", err.msg);
    cr_assert_eq(md_dataset_len(ds), 1);
    float b[] = { 10, 20, 39, 49, 1.0f };
    int64_t l[] = { 0 };
    md_det_result r = det(1, b, l);
    md_metrics m;
    cr_assert_eq(ds->iface->evaluate(ds, &r, 1, "mAP", &m, &err), 0, "%s", err.msg);
    cr_assert_str_eq(m.m[0].name, "AP50");
    cr_assert_str_eq(m.m[1].name, "mAP");
    cr_assert_float_eq(m.m[1].value, 1.0, 1e-9);
    md_dataset_free(ds);
}

/* A dataset written by the shapes generator loads through the standard
 * pipeline: the image matches <size>, and GT-as-detections scores mAP 1. */
Test(voc, shapes_dataset) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s/shapes/VOC2007 --train 4 --val 2 --classes 3 --seed 3"
                              " --format voc > /dev/null", dir);
    cr_assert_eq(system(cmd), 0);
    char text[1024];
    snprintf(text, sizeof text,
             "data = { type = \"VOCDataset\"; classes = [\"rectangle\", \"ellipse\", \"triangle\"];"
             " ann_file = \"%s/shapes/VOC2007/ImageSets/Main/train.txt\"; img_prefix = \"%s/shapes/VOC2007\";"
             " pipeline = ({ type = \"LoadImageFromFile\"; }, { type = \"LoadAnnotations\"; }); };", dir, dir);
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse(text, "inline.cfg", &err);
    cr_assert(c, "%s", err.msg);
    md_dataset *ds = md_build_dataset(ctx, md_cfg_get(c, "data"), NULL, &err);
    md_cfg_free(c);
    cr_assert(ds, "%s", err.msg);
    int64_t n = md_dataset_len(ds);
    cr_assert(n >= 1 && n <= 4);
    md_det_result *r = calloc((size_t)n, sizeof *r);
    float *boxes = calloc(5 * 300 * (size_t)n, sizeof *boxes);
    int64_t *labels = calloc(300 * (size_t)n, sizeof *labels);
    for (int64_t i = 0; i < n; i++) {
        md_sample s;
        md_rng rng;
        md_sample_rng(&rng, 0, 0, i);
        cr_assert_eq(md_dataset_get(ds, i, &rng, &s, &err), 0, "%s", err.msg);
        cr_assert_eq(s.w, s.img_info.width);
        cr_assert_eq(s.h, s.img_info.height);
        cr_assert(s.gt_bboxes.n + s.gt_bboxes_ignore.n > 0);
        for (int k = 0; k < s.gt_bboxes.n; k++) {
            memcpy(boxes + 5 * (300 * i + k), s.gt_bboxes.xyxy + 4 * k, 4 * sizeof(float));
            boxes[5 * (300 * i + k) + 4] = 1.0f;
            labels[300 * i + k] = s.gt_bboxes.labels[k];
            cr_assert(s.gt_bboxes.xyxy[4 * k] >= 0 && s.gt_bboxes.xyxy[4 * k + 2] < s.w);
        }
        r[i] = det(s.gt_bboxes.n, boxes + 5 * 300 * i, labels + 300 * i);
        md_sample_clear(&s);
    }
    md_metrics m;
    cr_assert_eq(ds->iface->evaluate(ds, r, n, "mAP", &m, &err), 0, "%s", err.msg);
    cr_assert_float_eq(m.m[0].value, 1.0, 1e-9);
    free(r), free(boxes), free(labels);
    md_dataset_free(ds);
}
