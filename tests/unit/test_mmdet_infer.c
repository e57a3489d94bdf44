/* bin/mmdet-infer end to end: with OracleDetector its JSON holds exactly
 * the ground truth of each image (hand-checkable: boxes from the COCO file,
 * score 0.9, class names); with the tiny RetinaNet of an mmdet .pth
 * checkpoint it agrees box for box with bin/mmdet-test --out on the same
 * images; drawings have the images' sizes; the progress bar goes to a
 * non-terminal stderr as lines; a missing image is an error naming it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include "testlib.h"
#include <mmdet/coco.h>
#include <mmdet/image.h>

static char dir[64];

static void setup(void) {
    test_tmpdir(dir, sizeof dir, "mmdet_infer");
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(mmdet_infer, .init = setup, .fini = teardown, .timeout = 120);

static char *slurp(const char *name) {
    static char text[1 << 17];
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = 0;
    return text;
}

typedef struct det { double b[4], score; long label; char cls[32]; } det;

/* Reads mmdet-infer's JSON list of detections. */
static int read_dets(const char *name, det *out, int max) {
    char *p = slurp(name);
    cr_assert(p[0] == '[', "%s: %s", name, p);
    int n = 0;
    while ((p = strstr(p, "{\"bbox\": [")) && n < max) {
        det *d = &out[n++];
        int k = sscanf(p, "{\"bbox\": [%lf, %lf, %lf, %lf], \"score\": %lf, \"label\": %ld, \"class\": \"%31[^\"]\"}",
                       &d->b[0], &d->b[1], &d->b[2], &d->b[3], &d->score, &d->label, d->cls);
        cr_assert_eq(k, 7, "%s: unreadable detection: %.200s", name, p);
        p++;
    }
    return n;
}

static void shapes(int val, int seed, int classes) {
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-shapes --out %s/data --train 1 --val %d --seed %d --classes %d --min-size 64 --max-size 128 "
             ">/dev/null",
             dir, val, seed, classes);
    cr_assert_eq(system(cmd), 0);
}

static md_coco *val_gt(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/data/annotations/instances_val.json", dir);
    md_error err = { 0 };
    md_coco *gt = md_coco_load(path, &err);
    cr_assert(gt, "%s", err.msg);
    return gt;
}

/* OracleDetector answers with the ground truth: each image's JSON is its
 * COCO boxes as xyxy, score 0.9, with their category names. */
Test(mmdet_infer, oracle_json_is_the_ground_truth) {
    shapes(3, 7, 5);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-run --plugin-dir plugins --plugin-dir tests/plugins tests/configs/eval/oracle_shapes.cfg "
             "--work-dir %s/w --seed 0 --no-validate --cfg-options data.train.data_root=%s/data/ "
             "model.ann_file=%s/data/annotations/instances_val.json runner.max_epochs=1 >%s/train.out 2>&1",
             dir, dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "training the oracle failed: %s", slurp("train.out"));
    md_coco *gt = val_gt();
    char images[1024] = "";
    for (size_t i = 0; i < gt->n_images; i++)
        snprintf(images + strlen(images), sizeof images - strlen(images), " %s/data/val/%s", dir,
                 gt->images[i].file_name);
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-infer tests/configs/eval/oracle_shapes.cfg %s/w/epoch_1.safetensors%s --plugin-dir plugins "
             "--plugin-dir tests/plugins --out-dir %s/out --score-thr 0.5 --cfg-options "
             "model.ann_file=%s/data/annotations/instances_val.json model.keep=[1.0] >%s/infer.out 2>&1",
             dir, images, dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "%s", slurp("infer.out"));
    /* stderr is a file: mmcv's progress text as whole lines, no redraws */
    const char *log = slurp("infer.out");
    cr_expect(strstr(log, "] 1/3, ") && strstr(log, "] 2/3, ") && strstr(log, "] 3/3, "), "%s", log);
    cr_expect(strstr(log, "task/s, elapsed: ") && !strchr(log, '\r'), "%s", log);
    int total = 0;
    for (size_t i = 0; i < gt->n_images; i++) {
        char stem[128], name[160];
        snprintf(stem, sizeof stem, "%s", gt->images[i].file_name);
        *strrchr(stem, '.') = 0;
        snprintf(name, sizeof name, "out/%s.json", stem);
        det d[64];
        int n = read_dets(name, d, 64), k = 0;
        for (size_t a = 0; a < gt->n_anns; a++) {
            const md_coco_ann *an = &gt->anns[a];
            if (an->image_index != (int32_t)i) continue;
            cr_assert_lt(k, n, "%s: %d detections, more ground truth", name, n);
            const double want[4] = { an->bbox[0], an->bbox[1], an->bbox[0] + an->bbox[2], an->bbox[1] + an->bbox[3] };
            for (int c = 0; c < 4; c++)
                cr_expect_float_eq(d[k].b[c], want[c], 1e-4, "%s box %d coord %d: %g, expected %g", name, k, c,
                                   d[k].b[c], want[c]);
            cr_expect_float_eq(d[k].score, 0.9, 1e-6);
            cr_expect_eq(d[k].label, an->category_index);
            cr_expect_str_eq(d[k].cls, gt->categories[an->category_index].name);
            k++;
        }
        cr_expect_eq(n, k, "%s: %d detections, %d ground-truth boxes", name, n, k);
        total += k;
        /* the drawing has the image's size */
        char png[256], src[256];
        snprintf(png, sizeof png, "%s/out/%s.png", dir, stem);
        snprintf(src, sizeof src, "%s/data/val/%s", dir, gt->images[i].file_name);
        int w1, h1, w2, h2;
        md_error err = { 0 };
        cr_assert_eq(md_image_read_size(png, &w1, &h1, &err), 0, "%s", err.msg);
        cr_assert_eq(md_image_read_size(src, &w2, &h2, &err), 0, "%s", err.msg);
        cr_expect(w1 == w2 && h1 == h2, "%s: %dx%d, the image is %dx%d", png, w1, h1, w2, h2);
    }
    cr_assert_gt(total, 0);
    md_coco_free(gt);
}

/* The tiny RetinaNet of an mmdet .pth checkpoint: every image's JSON (no
 * score threshold) lists, class by class in the detector's order, the
 * boxes mmdet-test --out writes for it; a threshold keeps a prefix. */
Test(mmdet_infer, retinanet_pth_agrees_with_mmdet_test) {
    shapes(3, 5, 3);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-test tests/configs/infer/retina_pth.cfg tests/fixtures/pth_mmdet_ckpt.pth --plugin-dir plugins "
             "--out %s/r.json --cfg-options data.test.data_root=%s/data/ >%s/test.out 2>&1",
             dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "%s", slurp("test.out"));
    md_coco *gt = val_gt();
    char images[1024] = "";
    for (size_t i = 0; i < gt->n_images; i++)
        snprintf(images + strlen(images), sizeof images - strlen(images), " %s/data/val/%s", dir,
                 gt->images[i].file_name);
    for (int pass = 0; pass < 2; pass++) {
        const char *thr = pass ? "0.59" : "0";
        snprintf(cmd, sizeof cmd,
                 "bin/mmdet-infer tests/configs/infer/retina_pth.cfg tests/fixtures/pth_mmdet_ckpt.pth%s "
                 "--plugin-dir plugins --out-dir %s/out%d --score-thr %s >%s/infer.out 2>&1",
                 images, dir, pass, thr, dir);
        cr_assert_eq(system(cmd), 0, "%s", slurp("infer.out"));
        /* r.json: [image][class][box] = [x1, y1, x2, y2, score] */
        char *text = strdup(slurp("r.json"));
        const char *cls[] = { "rectangle", "ellipse", "triangle" };   /* the checkpoint's CLASSES */
        char *p = text;
        int depth = 0, img = -1, c = -1;
        det want[8][128];
        int n_want[8] = { 0 };
        while (*p) {
            if (*p == '[') {
                depth++;
                if (depth == 2) img++, c = -1;
                if (depth == 3) c++;
                if (depth == 4) {
                    det *d = &want[img][n_want[img]];
                    cr_assert_eq(sscanf(p, "[%lf, %lf, %lf, %lf, %lf]", &d->b[0], &d->b[1], &d->b[2], &d->b[3],
                                        &d->score), 5);
                    d->label = c;
                    if (d->score >= atof(thr)) n_want[img]++;
                }
            } else if (*p == ']') depth--;
            p++;
        }
        free(text);
        cr_assert_eq(img + 1, (int)gt->n_images);
        for (size_t i = 0; i < gt->n_images; i++) {
            char name[160];
            snprintf(name, sizeof name, "out%d/%s", pass, gt->images[i].file_name);
            strcpy(strrchr(name, '.'), ".json");
            det got[128];
            int n = read_dets(name, got, 128);
            cr_assert_eq(n, n_want[i], "%s: %d detections, mmdet-test has %d", name, n, n_want[i]);
            if (!pass) cr_assert_gt(n, 0, "%s: no detections to compare", name);
            /* same boxes; mmdet-test groups them by class, keeping the order */
            int k = 0;
            for (int cl = 0; cl < 3; cl++)
                for (int j = 0; j < n; j++) {
                    if (got[j].label != cl) continue;
                    for (int q = 0; q < 4; q++) cr_expect_eq(got[j].b[q], want[i][k].b[q], "%s det %d", name, j);
                    cr_expect_eq(got[j].score, want[i][k].score);
                    cr_expect_eq(got[j].label, want[i][k].label);
                    cr_expect_str_eq(got[j].cls, cls[cl]);
                    k++;
                }
            cr_assert_eq(k, n);
            for (int j = 1; j < n; j++) cr_expect_geq(got[j - 1].score, got[j].score, "%s: not by score", name);
        }
    }
    md_coco_free(gt);
}

Test(mmdet_infer, missing_image_is_an_error_naming_it) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-infer tests/configs/infer/retina_pth.cfg tests/fixtures/pth_mmdet_ckpt.pth %s/nope.jpg "
             "--plugin-dir plugins --out-dir %s/out >%s/err.out 2>&1",
             dir, dir, dir);
    int rc = system(cmd);
    cr_assert_neq(rc, 0);
    char *text = slurp("err.out");
    cr_assert(strstr(text, "nope.jpg") && strstr(text, "error"), "%s", text);
    cr_assert_neq(access(strcat(strcpy(cmd, dir), "/out"), F_OK), 0, "nothing is written");
    /* a refused checkpoint fails the run too */
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-shapes --out %s/data --train 1 --val 1 --seed 1 --classes 3 --min-size 64 --max-size 64 "
             ">/dev/null && bin/mmdet-infer tests/configs/infer/retina_pth.cfg tests/fixtures/pth_evil.pth "
             "$(ls %s/data/val/* | head -n 1) --plugin-dir plugins --out-dir %s/out >%s/err.out 2>&1",
             dir, dir, dir, dir);
    cr_assert_neq(system(cmd), 0);
    text = slurp("err.out");
    cr_assert(strstr(text, "pth_evil.pth") && strstr(text, "refusing"), "%s", text);
}
