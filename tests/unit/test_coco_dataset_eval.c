/* CocoDataset.evaluate and format_results on hand-made results: perfect
 * detections give 1, none give 0, a hand-worked IoU case, and results
 * cross-checked with bin/mmdet-coco-eval on the same files (including a
 * class subset, which restricts the ground truth as pycocotools' catIds). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include "testlib.h"
#include <mmdet/data.h>
#include <mmdet/coco.h>

static md_ctx *ctx;
static char dir[64];

/* Categories in file order: circle (7), square (3), star (5). Boxes small
 * (area < 32^2), medium and large so every area range has ground truth. */
static const char *gt_json =
    "{\"images\": [\n"
    "  {\"id\": 11, \"file_name\": \"a.png\", \"width\": 200, \"height\": 150},\n"
    "  {\"id\": 12, \"file_name\": \"b.png\", \"width\": 120, \"height\": 160},\n"
    "  {\"id\": 13, \"file_name\": \"c.png\", \"width\": 100, \"height\": 100}],\n"
    " \"annotations\": [\n"
    "  {\"id\": 1, \"image_id\": 11, \"category_id\": 7, \"bbox\": [10, 10, 20, 20], \"area\": 400, \"iscrowd\": 0},\n"
    "  {\"id\": 2, \"image_id\": 11, \"category_id\": 3, \"bbox\": [50, 20, 60, 50], \"area\": 3000, \"iscrowd\": 0},\n"
    "  {\"id\": 3, \"image_id\": 11, \"category_id\": 5, \"bbox\": [120, 30, 40, 40], \"area\": 1600, \"iscrowd\": 0},\n"
    "  {\"id\": 4, \"image_id\": 12, \"category_id\": 7, \"bbox\": [5, 5, 100, 120], \"area\": 12000, \"iscrowd\": 0},\n"
    "  {\"id\": 5, \"image_id\": 12, \"category_id\": 3, \"bbox\": [60, 130, 12, 12], \"area\": 144, \"iscrowd\": 0},\n"
    "  {\"id\": 6, \"image_id\": 12, \"category_id\": 3, \"bbox\": [0, 0, 40, 40], \"area\": 1600, \"iscrowd\": 1},\n"
    "  {\"id\": 7, \"image_id\": 13, \"category_id\": 5, \"bbox\": [0, 0, 99, 99], \"area\": 9801, \"iscrowd\": 0}],\n"
    " \"categories\": [{\"id\": 7, \"name\": \"circle\"}, {\"id\": 3, \"name\": \"square\"},\n"
    "                {\"id\": 5, \"name\": \"star\"}]}\n";

/* The same file restricted to circle, for the class-subset cross-check. */
static const char *gt_circle_json =
    "{\"images\": [\n"
    "  {\"id\": 11, \"file_name\": \"a.png\", \"width\": 200, \"height\": 150},\n"
    "  {\"id\": 12, \"file_name\": \"b.png\", \"width\": 120, \"height\": 160},\n"
    "  {\"id\": 13, \"file_name\": \"c.png\", \"width\": 100, \"height\": 100}],\n"
    " \"annotations\": [\n"
    "  {\"id\": 1, \"image_id\": 11, \"category_id\": 7, \"bbox\": [10, 10, 20, 20], \"area\": 400, \"iscrowd\": 0},\n"
    "  {\"id\": 4, \"image_id\": 12, \"category_id\": 7, \"bbox\": [5, 5, 100, 120], \"area\": 12000, \"iscrowd\": 0}],\n"
    " \"categories\": [{\"id\": 7, \"name\": \"circle\"}]}\n";

static const char *one_json =
    "{\"images\": [{\"id\": 1, \"file_name\": \"a.png\", \"width\": 200, \"height\": 200}],\n"
    " \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 100, 100], \"area\": 10000}],\n"
    " \"categories\": [{\"id\": 1, \"name\": \"box\"}]}\n";

static void setup(void) {
    md_error err = { 0 };
    ctx = md_ctx_new(&err);
    cr_assert(ctx, "%s", err.msg);
    md_log_set_quiet(ctx, true);
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/datasets", &err), 0, "%s", err.msg);
    test_tmpdir(dir, sizeof dir, "md_cde");
    test_write_file(dir, "gt.json", gt_json);
    test_write_file(dir, "gt_circle.json", gt_circle_json);
    test_write_file(dir, "one.json", one_json);
}

static void teardown(void) {
    md_ctx_free(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
}

TestSuite(coco_dataset_eval, .init = setup, .fini = teardown, .timeout = 60);

#define ALL "classes = [\"circle\", \"square\", \"star\"];"

static md_dataset *build(const char *ann, const char *classes) {
    char buf[1024];
    snprintf(buf, sizeof buf,
             "data = { type = \"CocoDataset\"; data_root = \"%s/\"; ann_file = \"%s\"; test_mode = true; %s };", dir,
             ann, classes);
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse(buf, "inline.cfg", &err);
    cr_assert(c, "%s", err.msg);
    md_dataset *ds = md_build_dataset(ctx, md_cfg_get(c, "data"), NULL, &err);
    md_cfg_free(c);
    cr_assert(ds, "%s", err.msg);
    return ds;
}

/* Results holding every image's ground truth with score 1 (perfect). */
typedef struct results { md_det_result r[8]; float boxes[8][64 * 5]; int64_t labels[8][64]; } results;

static void perfect(const md_dataset *ds, results *res) {
    for (int64_t i = 0; i < md_dataset_len(ds); i++) {
        md_ann_info a;
        cr_assert_eq(ds->iface->ann_info(ds, i, &a), 0);
        for (int k = 0; k < a.n; k++) {
            memcpy(res->boxes[i] + 5 * k, a.bboxes + 4 * k, 4 * sizeof(float));
            res->boxes[i][5 * k + 4] = 1.0f;
            res->labels[i][k] = a.labels[k];
        }
        res->r[i] = (md_det_result){ a.n, res->boxes[i], res->labels[i] };
    }
}

static double metric(const md_metrics *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->m[i].name, name)) return m->m[i].value;
    cr_assert_fail("metric %s missing", name);
    return NAN;
}

static const char *names[] = { "bbox_mAP", "bbox_mAP_50", "bbox_mAP_75", "bbox_mAP_s", "bbox_mAP_m", "bbox_mAP_l" };

Test(coco_dataset_eval, perfect_detections_score_one) {
    md_dataset *ds = build("gt.json", ALL);
    cr_assert_eq(md_dataset_len(ds), 3);
    results *res = calloc(1, sizeof *res);
    perfect(ds, res);
    md_metrics m = { 0 };
    md_error err = { 0 };
    cr_assert_eq(ds->iface->evaluate(ds, res->r, 3, "bbox", &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 6);
    for (int i = 0; i < 6; i++) {
        cr_expect_str_eq(m.m[i].name, names[i]);
        cr_expect_eq(m.m[i].value, 1.0, "%s = %g", names[i], m.m[i].value);
    }
    free(res);
    md_dataset_free(ds);
}

Test(coco_dataset_eval, empty_results_score_zero) {
    md_dataset *ds = build("gt.json", ALL);
    md_det_result r[3] = { { 0 } };
    md_metrics m = { 0 };
    md_error err = { 0 };
    cr_assert_eq(ds->iface->evaluate(ds, r, 3, "bbox", &m, &err), 0, "%s", err.msg);
    for (int i = 0; i < 6; i++) cr_expect_eq(metric(&m, names[i]), 0.0, "%s", names[i]);
    md_dataset_free(ds);
}

/* One 100x100 GT (large) and one detection [0, 0, 100, 62]: IoU 0.62 passes
 * the thresholds .50, .55, .60 only, so AP = 3/10; no small/medium GT. */
Test(coco_dataset_eval, hand_worked_iou_case) {
    md_dataset *ds = build("one.json", "classes = [\"box\"];");
    float box[5] = { 0, 0, 100, 62, 0.7f };
    int64_t label = 0;
    md_det_result r = { 1, box, &label };
    md_metrics m = { 0 };
    md_error err = { 0 };
    cr_assert_eq(ds->iface->evaluate(ds, &r, 1, "bbox", &m, &err), 0, "%s", err.msg);
    cr_expect_eq(metric(&m, "bbox_mAP"), 0.3);
    cr_expect_eq(metric(&m, "bbox_mAP_50"), 1.0);
    cr_expect_eq(metric(&m, "bbox_mAP_75"), 0.0);
    cr_expect_eq(metric(&m, "bbox_mAP_s"), -1.0);
    cr_expect_eq(metric(&m, "bbox_mAP_m"), -1.0);
    cr_expect_eq(metric(&m, "bbox_mAP_l"), 0.3);
    md_dataset_free(ds);
}

Test(coco_dataset_eval, bad_inputs_are_named) {
    md_dataset *ds = build("gt.json", ALL);
    md_det_result r[3] = { { 0 } };
    md_metrics m = { 0 };
    md_error err = { 0 };
    cr_expect_eq(ds->iface->evaluate(ds, r, 2, "bbox", &m, &err), -1);
    cr_expect(strstr(err.msg, "2 results") && strstr(err.msg, "3 images"), "%s", err.msg);
    md_error_clear(&err);
    cr_expect_eq(ds->iface->evaluate(ds, r, 3, "segm", &m, &err), -1);
    cr_expect(strstr(err.msg, "segm"), "%s", err.msg);
    md_error_clear(&err);
    float box[5] = { 1, 1, 5, 5, 0.5f };
    int64_t label = 3;
    r[1] = (md_det_result){ 1, box, &label };
    cr_expect_eq(ds->iface->evaluate(ds, r, 3, "bbox", &m, &err), -1);
    cr_expect(strstr(err.msg, "b.png") && strstr(err.msg, "label 3"), "%s", err.msg);
    md_dataset_free(ds);
}

/* Deterministic imperfect results: GT jittered, plus false positives. */
static void noisy(const md_dataset *ds, results *res, int n_classes) {
    perfect(ds, res);
    for (int64_t i = 0; i < md_dataset_len(ds); i++) {
        int n = res->r[i].n;
        for (int k = 0; k < n; k++) {
            float *b = res->boxes[i] + 5 * k;
            b[0] += (float)(k % 3) * 2.5f;
            b[3] -= (float)((k + (int)i) % 4) * 3.0f;
            b[4] = 0.9f - 0.1f * (float)k;
        }
        for (int k = 0; k < 5; k++) {
            float *b = res->boxes[i] + 5 * (n + k);
            b[0] = 3.0f * (float)k;
            b[1] = 4.0f * (float)k + 1;
            b[2] = b[0] + 20 + 7.0f * (float)k;
            b[3] = b[1] + 15 + 5.0f * (float)k;
            b[4] = 0.05f + 0.17f * (float)k;
            res->labels[i][n + k] = (k + i) % n_classes;
        }
        res->r[i].n = n + 5;
    }
}

/* format_results writes <prefix>.bbox.json; bin/mmdet-coco-eval on the
 * ground truth and that file gives the stats evaluate reported. */
static void cross_check(const char *ann, const char *classes, const char *gt_for_cli, int n_classes) {
    md_dataset *ds = build(ann, classes);
    results *res = calloc(1, sizeof *res);
    noisy(ds, res, n_classes);
    md_metrics m = { 0 };
    md_error err = { 0 };
    int64_t n = md_dataset_len(ds);
    cr_assert_eq(ds->iface->evaluate(ds, res->r, n, "bbox", &m, &err), 0, "%s", err.msg);
    char prefix[128], cmd[512], out[128];
    snprintf(prefix, sizeof prefix, "%s/results", dir);
    cr_assert(ds->iface->format_results);
    cr_assert_eq(ds->iface->format_results(ds, res->r, n, prefix, &err), 0, "%s", err.msg);
    snprintf(out, sizeof out, "%s/cli.json", dir);
    snprintf(cmd, sizeof cmd, "bin/mmdet-coco-eval %s/%s %s.bbox.json --json > %s", dir, gt_for_cli, prefix, out);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    FILE *f = fopen(out, "r");
    char line[4096] = "";
    cr_assert(f && fgets(line, sizeof line, f));
    fclose(f);
    char *p = strchr(line, '[');
    cr_assert(p, "%s", line);
    double stats[12];
    for (int i = 0; i < 12; i++) {
        stats[i] = strtod(p + 1, &p);
        cr_assert(p && (*p == ',' || *p == ']'), "%s", line);
    }
    int nonzero = 0;
    for (int i = 0; i < 6; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.3f", stats[i]);
        cr_expect_eq(metric(&m, names[i]), strtod(buf, NULL), "%s: evaluate %g, mmdet-coco-eval %.6f", names[i],
                     metric(&m, names[i]), stats[i]);
        nonzero += stats[i] > 0 && stats[i] < 1;
    }
    cr_expect_geq(nonzero, 2, "the case should be neither perfect nor empty: %g %g %g %g %g %g", stats[0], stats[1],
                 stats[2], stats[3], stats[4], stats[5]);
    free(res);
    md_dataset_free(ds);
}

Test(coco_dataset_eval, matches_mmdet_coco_eval_all_classes) { cross_check("gt.json", ALL, "gt.json", 3); }

Test(coco_dataset_eval, class_subset_restricts_ground_truth) {
    cross_check("gt.json", "classes = [\"circle\"];", "gt_circle.json", 1);
}

/* The results file maps labels back to category ids and boxes to xywh. */
Test(coco_dataset_eval, format_results_writes_coco_results) {
    md_dataset *ds = build("gt.json", "classes = [\"star\", \"square\"];");
    /* labels follow the file's category order: square (3) -> 0, star (5) -> 1 */
    float boxes[10] = { 1.5f, 2, 11.5f, 22, 0.25f, 3, 4, 5, 6, 0.5f };
    int64_t labels[2] = { 1, 0 };
    md_det_result r[3] = { { 0 }, { 2, boxes, labels }, { 0 } };
    md_error err = { 0 };
    char prefix[128], path[160];
    snprintf(prefix, sizeof prefix, "%s/fmt", dir);
    cr_assert_eq(ds->iface->format_results(ds, r, 3, prefix, &err), 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s.bbox.json", prefix);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    char text[4096] = "";
    size_t k = fread(text, 1, sizeof text - 1, f);
    text[k] = 0;
    fclose(f);
    /* label 0 (square, id 3) comes first, as mmdet's per-class loop */
    char *sq = strstr(text, "\"category_id\":3"), *st = strstr(text, "\"category_id\":5");
    cr_assert(sq && st && sq < st, "%s", text);
    cr_expect(strstr(text, "\"image_id\":12"), "%s", text);
    cr_expect(strstr(text, "[1.5,2,10,20]"), "%s", text);
    cr_expect(strstr(text, "[3,4,2,2]"), "%s", text);
    md_dataset_free(ds);
}

/* segm: the results of tests/golden/coco_segm_golden.py's case segm_a given
 * to the dataset as mask results (RLEs) give pycocotools' segm stats
 * (rounded as mmdet's), the bbox ones alongside with metric "bbox, segm";
 * format_results writes <prefix>.segm.json, which evaluates the same. */
Test(coco_dataset_eval, segm_matches_pycocotools) {
    char buf[1024];
    snprintf(buf, sizeof buf,
             "data = { type = \"CocoDataset\"; ann_file = \"tests/fixtures/coco_eval/segm_a_gt.json\"; "
             "test_mode = true; classes = [\"class_1\", \"class_2\", \"class_4\"]; };");
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse(buf, "inline.cfg", &err);
    md_dataset *ds = md_build_dataset(ctx, md_cfg_get(c, "data"), NULL, &err);
    md_cfg_free(c);
    cr_assert(ds, "%s", err.msg);
    md_coco_det *dets;
    size_t nd;
    cr_assert_eq(md_coco_load_dets("tests/fixtures/coco_eval/segm_a_dt.json", &dets, &nd, &err), 0, "%s", err.msg);
    int64_t n = md_dataset_len(ds);
    md_det_result *r = calloc((size_t)n, sizeof *r);
    float *boxes = calloc(nd * 5 + 1, sizeof *boxes);
    int64_t *labels = calloc(nd + 1, sizeof *labels);
    md_rle *masks = calloc(nd + 1, sizeof *masks);
    const int64_t cat_ids[3] = { 1, 2, 4 };
    size_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        md_img_info info;
        ds->iface->img_info(ds, i, &info);
        r[i] = (md_det_result){ 0, boxes + 5 * k, labels + k, masks + k };
        for (size_t j = 0; j < nd; j++) {   /* file order within the image */
            if (dets[j].image_id != info.id) continue;
            const double *b = dets[j].bbox;
            float *o = boxes + 5 * k;
            o[0] = (float)b[0], o[1] = (float)b[1], o[2] = (float)(b[0] + b[2]), o[3] = (float)(b[1] + b[3]);
            o[4] = (float)dets[j].score;
            for (int q = 0; q < 3; q++)
                if (cat_ids[q] == dets[j].category_id) labels[k] = q;
            masks[k] = dets[j].segmentation.rle;
            k++;
            r[i].n++;
        }
    }
    cr_assert_eq(k, nd);
    md_metrics m = { 0 };
    cr_assert_eq(ds->iface->evaluate(ds, r, n, "bbox, segm", &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 12);
    FILE *f = fopen("tests/fixtures/coco_eval/segm_a_expected.txt", "r");
    cr_assert(f);
    double want[12];
    for (int i = 0; i < 12; i++) cr_assert_eq(fscanf(f, "%lf", &want[i]), 1);
    fclose(f);
    static const char *segm_names[] = { "segm_mAP", "segm_mAP_50", "segm_mAP_75", "segm_mAP_s", "segm_mAP_m",
                                        "segm_mAP_l" };
    for (int i = 0; i < 6; i++) {
        char s[32];
        snprintf(s, sizeof s, "%.3f", want[i]);
        cr_expect_eq(metric(&m, segm_names[i]), strtod(s, NULL), "%s: %g vs pycocotools %s", segm_names[i],
                     metric(&m, segm_names[i]), s);
        cr_expect(!strcmp(m.m[i].name, names[i]), "bbox metrics first: %s", m.m[i].name);
    }
    /* results2json: <prefix>.segm.json evaluates to the same stats */
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s/res", dir);
    cr_assert_eq(ds->iface->format_results(ds, r, n, prefix, &err), 0, "%s", err.msg);
    char path[160];
    snprintf(path, sizeof path, "%s.segm.json", prefix);
    md_coco_det *back;
    size_t nb;
    cr_assert_eq(md_coco_load_dets(path, &back, &nb, &err), 0, "%s", err.msg);
    cr_assert_eq(nb, nd);
    md_coco *gt = md_coco_load("tests/fixtures/coco_eval/segm_a_gt.json", &err);
    cr_assert(gt, "%s", err.msg);
    md_coco_eval ev;
    cr_assert_eq(md_coco_evaluate_as(gt, back, nb, MD_COCO_IOU_SEGM, &ev, &err), 0, "%s", err.msg);
    for (int i = 0; i < 12; i++)
        cr_expect(fabs(ev.stats[i] - want[i]) < 1e-6, "stat %d: %.17g vs %.17g", i, ev.stats[i], want[i]);
    md_coco_eval_free(&ev);
    md_coco_free(gt);
    md_coco_dets_free(back, nb);
    /* the same through the tool */
    char cmd[512], out[160], line[4096] = "";
    snprintf(out, sizeof out, "%s/cli_segm.json", dir);
    snprintf(cmd, sizeof cmd, "bin/mmdet-coco-eval tests/fixtures/coco_eval/segm_a_gt.json %s.segm.json "
             "--iou-type segm --json > %s", prefix, out);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    f = fopen(out, "r");
    cr_assert(f && fgets(line, sizeof line, f));
    fclose(f);
    char *q = strchr(line, '[');
    cr_assert(q, "%s", line);
    for (int i = 0; i < 12; i++) {
        double v = strtod(q + 1, &q);
        cr_expect(fabs(v - want[i]) < 1e-6, "mmdet-coco-eval --iou-type segm stat %d: %.17g vs %.17g", i, v, want[i]);
    }
    snprintf(path, sizeof path, "%s.bbox.json", prefix);
    cr_assert_eq(access(path, R_OK), 0, "bbox results written too");
    free(r);
    free(boxes);
    free(labels);
    free(masks);
    md_coco_dets_free(dets, nd);
    md_dataset_free(ds);
}
