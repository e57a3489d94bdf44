/* COCO loading and bbox evaluation: hand-worked cases, pycocotools goldens
 * (tests/golden/coco_eval_golden.py), and bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/coco.h>

#define FIX "tests/fixtures/coco_eval/"

typedef struct G { int img, cat; double x, y, w, h, area; int crowd; } G;   /* area < 0: omitted */
typedef struct D { int img, cat; double x, y, w, h, score; } D;

static char *gt_json(const G *g, int ng, int n_img, const int *cats, int ncat) {
    size_t cap = 4096 + (size_t)ng * 200 + (size_t)n_img * 80;
    char *s = malloc(cap);
    size_t n = 0;
    n += snprintf(s + n, cap - n, "{\"info\": {\"bbox\": [1, 2]},\n \"images\": [");
    for (int i = 0; i < n_img; i++)
        n += snprintf(s + n, cap - n, "%s{\"id\": %d, \"file_name\": \"%d.jpg\", \"width\": 640, \"height\": 480}",
                      i ? ", " : "", i + 1, i + 1);
    n += snprintf(s + n, cap - n, "],\n \"annotations\": [");
    for (int i = 0; i < ng; i++) {
        n += snprintf(s + n, cap - n,
                      "%s{\"id\": %d, \"image_id\": %d, \"category_id\": %d, \"bbox\": [%.17g, %.17g, %.17g, %.17g],"
                      " \"iscrowd\": %d, \"segmentation\": [[1, 2, 3, 4, 5, 6]]",
                      i ? ",\n" : "", i + 1, g[i].img, g[i].cat, g[i].x, g[i].y, g[i].w, g[i].h, g[i].crowd);
        if (g[i].area >= 0) n += snprintf(s + n, cap - n, ", \"area\": %.17g", g[i].area);
        n += snprintf(s + n, cap - n, "}");
    }
    n += snprintf(s + n, cap - n, "],\n \"categories\": [");
    for (int i = 0; i < ncat; i++)
        n += snprintf(s + n, cap - n, "%s{\"id\": %d, \"name\": \"c%d\"}", i ? ", " : "", cats[i], cats[i]);
    snprintf(s + n, cap - n, "]}\n");
    return s;
}

static char *dt_json(const D *d, int nd) {
    size_t cap = 64 + (size_t)nd * 160;
    char *s = malloc(cap);
    size_t n = snprintf(s, cap, "[");
    for (int i = 0; i < nd; i++)
        n += snprintf(s + n, cap - n,
                      "%s{\"image_id\": %d, \"category_id\": %d, \"bbox\": [%.17g, %.17g, %.17g, %.17g], \"score\": %.17g}",
                      i ? ",\n" : "", d[i].img, d[i].cat, d[i].x, d[i].y, d[i].w, d[i].h, d[i].score);
    snprintf(s + n, cap - n, "]");
    return s;
}

static int one_cat[] = {1};

/* Builds the JSON texts, parses them and evaluates. */
static void eval_case(const G *g, int ng, const D *d, int nd, int n_img, const int *cats, int ncat, md_coco_eval *ev) {
    char *gs = gt_json(g, ng, n_img, cats, ncat), *ds = dt_json(d, nd);
    md_error err = {0};
    md_coco *gt = md_coco_parse(gs, strlen(gs), "gt.json", &err);
    cr_assert(gt, "%s", err.msg);
    cr_assert_eq(gt->n_anns, (size_t)ng);
    md_coco_det *dets;
    size_t n;
    cr_assert_eq(md_coco_parse_dets(ds, strlen(ds), "dt.json", &dets, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, (size_t)nd);
    cr_assert_eq(md_coco_evaluate(gt, dets, n, ev, &err), 0, "%s", err.msg);
    free(dets);
    md_coco_free(gt);
    free(gs);
    free(ds);
}

#define EQ(a, b) cr_assert(fabs((a) - (b)) < 1e-12, "%s = %.17g, expected %.17g", #a, (double)(a), (double)(b))

Test(coco_eval, thresholds_match_numpy_linspace) {
    /* np.linspace(.5, .95, 10): [2] == 0.6, [5] == 0.75, [8] == 0.8999999999999999 */
    cr_assert_eq(md_coco_iou_threshold(0), 0.5);
    cr_assert_eq(md_coco_iou_threshold(5), 0.75);
    cr_assert_eq(md_coco_iou_threshold(2), 0.6);
    cr_assert_eq(md_coco_iou_threshold(8), 0.8999999999999999);
    cr_assert_eq(md_coco_iou_threshold(9), 0.95);
    cr_assert_eq(md_coco_recall_point(100), 1.0);
    cr_assert_eq(md_coco_recall_point(7), 0.07);
}

Test(coco_eval, single_perfect_detection) {
    G g[] = {{1, 1, 10, 10, 40, 40, -1, 0}};   /* area 1600: medium */
    D d[] = {{1, 1, 10, 10, 40, 40, 0.9}};
    md_coco_eval ev;
    eval_case(g, 1, d, 1, 1, one_cat, 1, &ev);
    double want[12] = {1, 1, 1, -1, 1, -1, 1, 1, 1, -1, 1, -1};
    for (int i = 0; i < 12; i++) EQ(ev.stats[i], want[i]);
    EQ(ev.category_ap[0], 1);
    char line[160];
    cr_assert_str_eq(md_coco_stat_line(&ev, 0, line, sizeof line),
                     " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000");
    cr_assert_str_eq(md_coco_stat_line(&ev, 3, line, sizeof line),
                     " Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = -1.000");
    cr_assert_str_eq(md_coco_stat_line(&ev, 6, line, sizeof line),
                     " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 1.000");
    cr_assert_str_eq(md_coco_stat_line(&ev, 1, line, sizeof line),
                     " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 1.000");
    md_coco_eval_free(&ev);
}

Test(coco_eval, false_positive_ranked_above_true_positive) {
    /* Order FP, TP: precision [0, 1/2] enveloped to [1/2, 1/2] at every
     * recall point -> AP 0.5. The top-1 detection is the FP -> AR@1 = 0. */
    G g[] = {{1, 1, 10, 10, 40, 40, -1, 0}};
    D d[] = {{1, 1, 300, 300, 40, 40, 0.9}, {1, 1, 10, 10, 40, 40, 0.8}};
    md_coco_eval ev;
    eval_case(g, 1, d, 2, 1, one_cat, 1, &ev);
    EQ(ev.stats[0], 0.5);
    EQ(ev.stats[1], 0.5);
    EQ(ev.stats[6], 0);
    EQ(ev.stats[7], 1);
    md_coco_eval_free(&ev);
    /* Scores swapped: AP 1. */
    d[0].score = 0.7;
    eval_case(g, 1, d, 2, 1, one_cat, 1, &ev);
    EQ(ev.stats[0], 1);
    md_coco_eval_free(&ev);
}

Test(coco_eval, equal_scores_keep_file_order) {
    /* A stable sort: with equal scores the detection listed first ranks first. */
    G g[] = {{1, 1, 10, 10, 40, 40, -1, 0}};
    D d[] = {{1, 1, 300, 300, 40, 40, 0.5}, {1, 1, 10, 10, 40, 40, 0.5}};
    md_coco_eval ev;
    eval_case(g, 1, d, 2, 1, one_cat, 1, &ev);
    EQ(ev.stats[0], 0.5);
    md_coco_eval_free(&ev);
    D d2[] = {d[1], d[0]};
    eval_case(g, 1, d2, 2, 1, one_cat, 1, &ev);
    EQ(ev.stats[0], 1);
    md_coco_eval_free(&ev);
}

Test(coco_eval, crowd_gt_absorbs_detections) {
    /* Two detections inside a crowd region: IoU = intersection / det area
     * = 1, matched to the crowd box (several times) and not counted. */
    G g[] = {{1, 1, 0, 0, 50, 50, -1, 0}, {1, 1, 100, 100, 100, 100, -1, 1}};
    D d[] = {{1, 1, 110, 110, 20, 20, 0.95}, {1, 1, 0, 0, 50, 50, 0.9}, {1, 1, 120, 120, 20, 20, 0.7}};
    md_coco_eval ev;
    eval_case(g, 2, d, 3, 1, one_cat, 1, &ev);
    EQ(ev.stats[0], 1);
    EQ(ev.stats[8], 1);
    EQ(ev.stats[5], -1);   /* the only large GT is the crowd one: ignored */
    md_coco_eval_free(&ev);
    /* The same box as a plain GT: IoU 400/10000 -> both are FPs.
     * Order FP, TP, FP: recall [0, 1/2, 1/2], precision enveloped to
     * [1/2, 1/2, 1/3]; recall points 0..0.50 (51 of 101) get 1/2. */
    g[1].crowd = 0;
    eval_case(g, 2, d, 3, 1, one_cat, 1, &ev);
    EQ(ev.stats[0], 51 * 0.5 / 101);
    EQ(ev.stats[8], 0.5);
    EQ(ev.stats[5], 0);    /* large GT present, never found */
    md_coco_eval_free(&ev);
}

Test(coco_eval, area_ranges) {
    /* small (100), medium (1600), large (12000); the medium one is missed. */
    G g[] = {{1, 1, 0, 0, 10, 10, -1, 0}, {1, 1, 50, 50, 40, 40, -1, 0}, {1, 1, 200, 200, 120, 100, -1, 0}};
    D d[] = {{1, 1, 0, 0, 10, 10, 0.9}, {1, 1, 200, 200, 120, 100, 0.8}};
    md_coco_eval ev;
    eval_case(g, 3, d, 2, 1, one_cat, 1, &ev);
    /* all: recall reaches 2/3 at precision 1 -> recall points 0..0.66 = 67. */
    EQ(ev.stats[0], 67.0 / 101);
    EQ(ev.stats[3], 1);
    EQ(ev.stats[4], 0);
    EQ(ev.stats[5], 1);
    EQ(ev.stats[8], 2.0 / 3);
    EQ(ev.stats[9], 1);
    EQ(ev.stats[10], 0);
    EQ(ev.stats[11], 1);
    md_coco_eval_free(&ev);
}

Test(coco_eval, area_range_uses_the_area_field) {
    /* Box 40x40 (medium by box) but segment area 500: small. */
    G g[] = {{1, 1, 10, 10, 40, 40, 500, 0}};
    D d[] = {{1, 1, 10, 10, 40, 40, 0.9}};
    md_coco_eval ev;
    eval_case(g, 1, d, 1, 1, one_cat, 1, &ev);
    EQ(ev.stats[3], 1);
    EQ(ev.stats[4], -1);
    md_coco_eval_free(&ev);
    /* An unmatched detection outside the range is ignored there: a small
     * FP does not hurt AP(medium). */
    G g2[] = {{1, 1, 10, 10, 40, 40, -1, 0}};
    D d2[] = {{1, 1, 300, 300, 10, 10, 0.95}, {1, 1, 10, 10, 40, 40, 0.9}};
    eval_case(g2, 1, d2, 2, 1, one_cat, 1, &ev);
    EQ(ev.stats[4], 1);
    EQ(ev.stats[0], 0.5);
    md_coco_eval_free(&ev);
}

Test(coco_eval, max_dets_cut) {
    /* Ten higher-scored FPs, then the TP: AR@1 = AR@10 = 0, AR@100 = 1,
     * AP = 1/11 (precision 1/11 at every recall point). */
    G g[] = {{1, 1, 10, 10, 40, 40, -1, 0}};
    D d[11];
    for (int i = 0; i < 10; i++) d[i] = (D){1, 1, 300 + i, 300, 30, 30, 0.9 - 0.01 * i};
    d[10] = (D){1, 1, 10, 10, 40, 40, 0.1};
    md_coco_eval ev;
    eval_case(g, 1, d, 11, 1, one_cat, 1, &ev);
    EQ(ev.stats[6], 0);
    EQ(ev.stats[7], 0);
    EQ(ev.stats[8], 1);
    EQ(ev.stats[0], 1.0 / 11);
    md_coco_eval_free(&ev);
    /* 100 FPs above the TP: it is the 101st detection of the image, cut. */
    D *many = malloc(sizeof(D) * 101);
    for (int i = 0; i < 100; i++) many[i] = (D){1, 1, 300 + i, 300, 30, 30, 0.5};
    many[100] = (D){1, 1, 10, 10, 40, 40, 0.4};
    eval_case(g, 1, many, 101, 1, one_cat, 1, &ev);
    EQ(ev.stats[8], 0);
    EQ(ev.stats[0], 0);
    md_coco_eval_free(&ev);
    /* The cut is per image: on a second image the TP still counts. */
    many[100].img = 2;
    G g2[] = {{2, 1, 10, 10, 40, 40, -1, 0}};
    eval_case(g2, 1, many, 101, 2, one_cat, 1, &ev);
    EQ(ev.stats[8], 1);
    free(many);
    md_coco_eval_free(&ev);
}

Test(coco_eval, category_without_gt_is_minus_one) {
    int cats[] = {1, 7};
    G g[] = {{1, 1, 10, 10, 40, 40, -1, 0}};
    D d[] = {{1, 1, 10, 10, 40, 40, 0.9}, {1, 7, 100, 100, 40, 40, 0.99}};
    md_coco_eval ev;
    eval_case(g, 1, d, 2, 1, cats, 2, &ev);
    cr_assert_eq(ev.n_categories, 2u);
    cr_assert_eq(ev.category_ids[1], 7);
    EQ(ev.category_ap[0], 1);
    EQ(ev.category_ap[1], -1);
    EQ(ev.stats[0], 1);    /* the class without GT does not enter the mean */
    md_coco_eval_free(&ev);
}

Test(coco_eval, images_without_anything_and_unknown_categories) {
    G g[] = {{2, 1, 10, 10, 40, 40, -1, 0}};
    D d[] = {{2, 1, 10, 10, 40, 40, 0.9}, {2, 5, 10, 10, 40, 40, 0.9}};
    md_coco_eval ev;
    eval_case(g, 1, d, 2, 3, one_cat, 1, &ev);
    EQ(ev.stats[0], 1);
    cr_assert_eq(ev.n_dets_unmatched_category, 1u);
    md_coco_eval_free(&ev);
}

static void check_golden_as(const char *name, md_coco_iou_type type) {
    char p[256];
    md_error err = {0};
    snprintf(p, sizeof p, FIX "%s_gt.json", name);
    md_coco *gt = md_coco_load(p, &err);
    cr_assert(gt, "%s", err.msg);
    md_coco_det *dets;
    size_t n;
    snprintf(p, sizeof p, FIX "%s_dt.json", name);
    cr_assert_eq(md_coco_load_dets(p, &dets, &n, &err), 0, "%s", err.msg);
    md_coco_eval ev;
    cr_assert_eq(md_coco_evaluate_as(gt, dets, n, type, &ev, &err), 0, "%s", err.msg);
    snprintf(p, sizeof p, FIX "%s_expected.txt", name);
    FILE *f = fopen(p, "r");
    cr_assert(f, "%s missing", p);
    for (int i = 0; i < 12; i++) {
        double want;
        cr_assert_eq(fscanf(f, "%lf", &want), 1);
        cr_assert(fabs(ev.stats[i] - want) < 1e-6, "%s stat %d: %.17g vs pycocotools %.17g", name, i, ev.stats[i], want);
    }
    for (size_t k = 0; k < ev.n_categories; k++) {
        long long id;
        double want;
        cr_assert_eq(fscanf(f, "%lld %lf", &id, &want), 2);
        cr_assert_eq(ev.category_ids[k], id);
        cr_assert(fabs(ev.category_ap[k] - want) < 1e-6, "%s class %lld: %.17g vs %.17g", name, id, ev.category_ap[k], want);
    }
    long long extra;
    cr_assert_eq(fscanf(f, "%lld", &extra), EOF, "more categories in %s", p);
    fclose(f);
    /* Same numbers on one thread as on several. */
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    md_coco_eval ev1;
    cr_assert_eq(md_coco_evaluate_as(gt, dets, n, type, &ev1, &err), 0);
    omp_set_num_threads(nt);
    cr_assert_eq(memcmp(ev1.stats, ev.stats, sizeof ev.stats), 0);
    cr_assert_eq(memcmp(ev1.precision, ev.precision, sizeof(double) * MD_COCO_T * MD_COCO_R * ev.n_categories * MD_COCO_A * MD_COCO_M), 0);
    md_coco_eval_free(&ev1);
    md_coco_eval_free(&ev);
    md_coco_dets_free(dets, n);
    md_coco_free(gt);
}

static void check_golden(const char *name) { check_golden_as(name, MD_COCO_IOU_BBOX); }

Test(coco_eval, pycocotools_random_a) { check_golden("random_a"); }
Test(coco_eval, pycocotools_random_b) { check_golden("random_b"); }
Test(coco_eval, pycocotools_random_c) { check_golden("random_c"); }
/* iouType 'segm' (tests/golden/coco_segm_golden.py): polygons, crowd
 * uncompressed RLE and compressed RLE ground truth, RLE string results */
Test(coco_eval, pycocotools_segm_a) { check_golden_as("segm_a", MD_COCO_IOU_SEGM); }
Test(coco_eval, pycocotools_segm_b) { check_golden_as("segm_b", MD_COCO_IOU_SEGM); }

/* segm results written by md_coco_write_dets read back with the same masks */
Test(coco_eval, segm_results_round_trip_through_a_file) {
    md_coco_det *dets;
    size_t n;
    md_error err = {0};
    cr_assert_eq(md_coco_load_dets(FIX "segm_a_dt.json", &dets, &n, &err), 0, "%s", err.msg);
    cr_assert(n > 10);
    char p[] = "/tmp/md_coco_segm_XXXXXX";
    int fd = mkstemp(p);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(md_coco_write_dets(p, dets, n, &err), 0, "%s", err.msg);
    md_coco_det *back;
    size_t m;
    cr_assert_eq(md_coco_load_dets(p, &back, &m, &err), 0, "%s", err.msg);
    remove(p);
    cr_assert_eq(m, n);
    for (size_t i = 0; i < n; i++) {
        const md_rle *a = &dets[i].segmentation.rle, *b = &back[i].segmentation.rle;
        cr_assert_eq(back[i].segmentation.kind, MD_MASK_ANN_RLE);
        cr_assert(a->h == b->h && a->w == b->w && a->m == b->m);
        cr_assert(!memcmp(a->counts, b->counts, sizeof(uint32_t) * (size_t)a->m), "detection %zu", i);
        cr_assert_eq(back[i].score, dets[i].score);
    }
    md_coco_dets_free(back, m);
    md_coco_dets_free(dets, n);
}

/* segm needs every GT's segmentation: a missing or malformed one is named */
Test(coco_eval, segm_names_the_annotation_without_a_mask) {
    const char *gt_text = "{\"images\": [{\"id\": 1, \"width\": 4, \"height\": 4}],"
                          " \"annotations\": [{\"id\": 5, \"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 2, 2],"
                          " \"area\": 4, \"segmentation\": [[0, 0, 2, 0, 2, 2, 0, 2]]},"
                          " {\"id\": 6, \"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 2, 2], \"area\": 4,"
                          " \"segmentation\": {\"counts\": 3}}],"
                          " \"categories\": [{\"id\": 1}]}";
    md_error err = {0};
    md_coco *gt = md_coco_parse(gt_text, strlen(gt_text), "gt.json", &err);
    cr_assert(gt, "loads: a bad segmentation only matters to segm: %s", err.msg);
    cr_assert_eq(gt->anns[0].segmentation.kind, MD_MASK_ANN_POLYGONS);
    cr_assert_eq(gt->anns[1].segmentation.kind, MD_MASK_ANN_INVALID);
    const char *dt_text = "[{\"image_id\": 1, \"category_id\": 1, \"score\": 0.5,"
                          " \"segmentation\": {\"size\": [4, 4], \"counts\": \"02h0\"}}]";
    md_coco_det *dets;
    size_t n;
    cr_assert_eq(md_coco_parse_dets(dt_text, strlen(dt_text), "dt.json", &dets, &n, &err), 0, "%s", err.msg);
    /* no bbox: toBbox of the mask (pixels (2, 0), (3, 0)... as the string says) */
    double bb[4];
    md_rle_to_bbox(&dets[0].segmentation.rle, bb);
    cr_assert(dets[0].bbox[2] == bb[2] && dets[0].bbox[3] == bb[3]);
    md_coco_eval ev;
    cr_assert_eq(md_coco_evaluate_as(gt, dets, n, MD_COCO_IOU_SEGM, &ev, &err), -1);
    cr_assert(strstr(err.msg, "annotation 6") && strstr(err.msg, "counts"), "%s", err.msg);
    /* bbox evaluation does not need masks */
    cr_assert_eq(md_coco_evaluate_as(gt, dets, n, MD_COCO_IOU_BBOX, &ev, &err), 0, "%s", err.msg);
    md_coco_eval_free(&ev);
    md_coco_dets_free(dets, n);
    md_coco_free(gt);
}

Test(coco_eval, results_round_trip_through_a_file) {
    md_coco_det d[2] = {{3, 1, {0.1, 0.2, 10.123456789012345, 4}, 0.987654321}, {4, 2, {1, 2, 3, 4}, 1e-9}};
    char p[] = "/tmp/md_coco_dets_XXXXXX";
    int fd = mkstemp(p);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(md_coco_write_dets(p, d, 2, NULL), 0);
    md_coco_det *back;
    size_t n;
    md_error err = {0};
    cr_assert_eq(md_coco_load_dets(p, &back, &n, &err), 0, "%s", err.msg);
    remove(p);
    cr_assert_eq(n, 2u);
    for (int i = 0; i < 2; i++) {
        cr_assert(back[i].image_id == d[i].image_id && back[i].category_id == d[i].category_id);
        cr_assert(!memcmp(back[i].bbox, d[i].bbox, sizeof d[i].bbox) && back[i].score == d[i].score);
        cr_assert_eq(back[i].segmentation.kind, MD_MASK_ANN_NONE);
    }
    md_coco_dets_free(back, n);
}

/* ---- loading and bad input ---- */

static md_coco *parse(const char *s, md_error *err) { return md_coco_parse(s, strlen(s), "bad.json", err); }

Test(coco_load, fields_and_lookups) {
    const char *s = "{\"images\": [{\"id\": 42, \"file_name\": \"a b.jpg\", \"width\": 7, \"height\": 9, \"x\": {\"id\": 1}},"
                    " {\"id\": 3}], \"licenses\": [{\"id\": 99}],"
                    " \"annotations\": [{\"id\": 5, \"image_id\": 3, \"category_id\": 2, \"bbox\": [1.5, 2, 3, 4e0],"
                    " \"iscrowd\": true, \"ignore\": 1, \"segmentation\": {\"counts\": [1, 2], \"size\": [3, 4]}}],"
                    " \"categories\": [{\"id\": 2, \"name\": \"dog\", \"supercategory\": \"animal\"}]}";
    md_error err = {0};
    md_coco *c = parse(s, &err);
    cr_assert(c, "%s", err.msg);
    cr_assert_eq(c->n_images, 2u);
    cr_assert_eq(c->images[0].id, 42);
    cr_assert_str_eq(c->images[0].file_name, "a b.jpg");
    cr_assert_eq(c->images[0].width, 7);
    cr_assert_eq(c->images[0].height, 9);
    cr_assert_str_eq(c->images[1].file_name, "");
    cr_assert_eq(c->n_anns, 1u);
    const md_coco_ann *a = &c->anns[0];
    cr_assert_eq(a->bbox[0], 1.5);
    cr_assert_eq(a->bbox[3], 4.0);
    cr_assert_eq(a->area, 12.0);          /* absent: w * h */
    cr_assert_eq(a->iscrowd, 1);
    cr_assert_eq(a->ignore, 1);
    cr_assert_eq(a->image_index, 1);
    cr_assert_eq(a->category_index, 0);
    cr_assert_str_eq(c->categories[0].name, "dog");
    cr_assert_str_eq(c->categories[0].supercategory, "animal");
    cr_assert_eq(md_coco_image_index(c, 42), 0);
    cr_assert_eq(md_coco_image_index(c, 43), -1);
    cr_assert_eq(md_coco_category_index(c, 2), 0);
    md_coco_free(c);
}

Test(coco_load, syntax_error_names_file_and_position) {
    md_error err = {0};
    cr_assert_null(parse("{\"images\": [\n  {\"id\": 1},\n  {\"id\": 2,, }\n]}", &err));
    cr_assert_eq(err.code, MD_ERR_PARSE);
    cr_assert(strstr(err.msg, "bad.json") && strstr(err.msg, "line 3") && strstr(err.msg, "byte"), "%s", err.msg);
    md_error_clear(&err);
    cr_assert_null(parse("{\"images\": [{\"id\": 1}", &err));
    cr_assert(strstr(err.msg, "bad.json") && strstr(err.msg, "end of input"), "%s", err.msg);
}

Test(coco_load, bad_records_name_the_element) {
    md_error err = {0};
    cr_assert_null(parse("{\"images\": [{\"id\": 1}], \"categories\": [{\"id\": 1}],"
                         " \"annotations\": [{\"id\": 5, \"image_id\": 1, \"category_id\": 1}]}", &err));
    cr_assert(strstr(err.msg, "annotations[0] (id 5): missing 'bbox'"), "%s", err.msg);
    md_error_clear(&err);
    cr_assert_null(parse("{\"images\": [{\"id\": 1}], \"categories\": [{\"id\": 1}],"
                         " \"annotations\": [{\"id\": 5, \"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 2, 3]}]}", &err));
    cr_assert(strstr(err.msg, "4 numbers"), "%s", err.msg);
    md_error_clear(&err);
    cr_assert_null(parse("{\"images\": [{\"id\": 1}], \"categories\": [{\"id\": 1}],"
                         " \"annotations\": [{\"id\": 5, \"image_id\": 1, \"category_id\": 8, \"bbox\": [1, 2, 3, 4]}]}", &err));
    cr_assert(strstr(err.msg, "annotations[0] (id 5): unknown category_id 8"), "%s", err.msg);
    md_error_clear(&err);
    cr_assert_null(parse("{\"images\": [{\"id\": 1}, {\"id\": 1}], \"categories\": []}", &err));
    cr_assert(strstr(err.msg, "duplicate image id 1"), "%s", err.msg);
    md_error_clear(&err);
    cr_assert_null(parse("{\"images\": [{\"id\": \"one\"}]}", &err));
    cr_assert(strstr(err.msg, "images[0]") && strstr(err.msg, "'id'"), "%s", err.msg);
    md_error_clear(&err);
    cr_assert_null(parse("{\"images\": {\"id\": 1}}", &err));
    cr_assert(strstr(err.msg, "'images' must be an array"), "%s", err.msg);
    md_error_clear(&err);
    cr_assert_null(parse("[1, 2]", &err));
    cr_assert(strstr(err.msg, "must be a JSON object"), "%s", err.msg);
}

Test(coco_load, results_errors) {
    md_coco_det *d;
    size_t n;
    md_error err = {0};
    const char *s = "{\"image_id\": 1}";
    cr_assert_eq(md_coco_parse_dets(s, strlen(s), "dt.json", &d, &n, &err), -1);
    cr_assert(strstr(err.msg, "dt.json") && strstr(err.msg, "JSON array"), "%s", err.msg);
    s = "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 2, 3, 4]}]";
    md_error_clear(&err);
    cr_assert_eq(md_coco_parse_dets(s, strlen(s), "dt.json", &d, &n, &err), -1);
    cr_assert(strstr(err.msg, "results[0]: missing 'score'"), "%s", err.msg);
    s = "[]";
    cr_assert_eq(md_coco_parse_dets(s, strlen(s), "dt.json", &d, &n, &err), 0);
    cr_assert_eq(n, 0u);
    free(d);
    /* A detection on an image the GT does not have. */
    md_coco *gt = parse("{\"images\": [{\"id\": 1}], \"categories\": [{\"id\": 1}], \"annotations\": []}", &err);
    cr_assert(gt);
    md_coco_det bad = {9, 1, {0, 0, 1, 1}, 0.5};
    md_coco_eval ev;
    md_error_clear(&err);
    cr_assert_eq(md_coco_evaluate(gt, &bad, 1, &ev, &err), -1);
    cr_assert(strstr(err.msg, "image_id 9"), "%s", err.msg);
    md_coco_free(gt);
    md_error_clear(&err);
    cr_assert_null(md_coco_load("no/such/file.json", &err));
    cr_assert_eq(err.code, MD_ERR_IO);
    cr_assert(strstr(err.msg, "no/such/file.json"), "%s", err.msg);
}

/* A ground truth that is a JSON object but not COCO is refused before any
 * evaluation, naming the file and the field (pycocotools would fail on the
 * missing images, or print -1 for every stat without categories). */
Test(coco_eval, ground_truth_structure_is_checked) {
    static const struct { const char *json, *want; } cases[] = {
        { "{\"foo\": [1]}", "gt.json: not a COCO annotation file: no 'images' array" },
        { "{\"images\": [], \"annotations\": []}", "gt.json: not a COCO annotation file: no 'categories' array" },
        { "{\"images\": 3, \"annotations\": \"x\", \"categories\": null}", "gt.json: 'images' must be an array, got a number" },
        { "{\"images\": [], \"annotations\": \"x\", \"categories\": []}", "gt.json: 'annotations' must be an array, got a string" },
        { "{\"images\": [], \"categories\": null}", "gt.json: 'categories' must be an array, got null" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        md_error err = { 0 };
        md_coco *c = md_coco_parse(cases[i].json, strlen(cases[i].json), "gt.json", &err);
        cr_assert_null(c, "%s parsed", cases[i].json);
        cr_assert(strstr(err.msg, cases[i].want), "%s: %s", cases[i].json, err.msg);
    }
    /* an image list without annotations (COCO test-dev) is a valid ground truth */
    md_error err = { 0 };
    const char *ok = "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\", \"width\": 4, \"height\": 4}], \"categories\": []}";
    md_coco *c = md_coco_parse(ok, strlen(ok), "gt.json", &err);
    cr_assert_not_null(c, "%s", err.msg);
    md_coco_free(c);
}
