/* bin/mmdet-test end to end with OracleDetector: a checkpoint after one
 * epoch answers the first half of the val images exactly (keep[1] = 0.5);
 * --eval agrees with bin/mmdet-coco-eval on the --format-only file, --out
 * holds the ground truth of the answered images, --show-dir draws them. */
#define _GNU_SOURCE   /* memmem */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include <mmdet/draw.h>
#include "testlib.h"
#include <mmdet/coco.h>
#include <mmdet/image.h>

static char dir[64];

static void setup(void) {
    test_tmpdir(dir, sizeof dir, "mmdet_test");
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-shapes --out %s/data --train 8 --val 4 --seed 3 >/dev/null && "
             "bin/mmdet-run --plugin-dir plugins --plugin-dir tests/plugins tests/configs/eval/oracle_shapes.cfg "
             "--work-dir %s/w --seed 0 --no-validate --cfg-options data.train.data_root=%s/data/ "
             "model.ann_file=%s/data/annotations/instances_val.json runner.max_epochs=1 >%s/train.out 2>&1",
             dir, dir, dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "training the oracle failed: see %s/train.out", dir);
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(mmdet_test, .init = setup, .fini = teardown, .timeout = 120);

static int run_test(const char *args, const char *log) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-test tests/configs/eval/oracle_shapes.cfg %s/w/epoch_1.safetensors --plugin-dir plugins "
             "--plugin-dir tests/plugins %s --cfg-options data.test.data_root=%s/data/ "
             "model.ann_file=%s/data/annotations/instances_val.json >%s/%s 2>&1",
             dir, args, dir, dir, dir, log);
    return system(cmd);
}

static char *slurp(const char *name) {
    static char text[1 << 16];
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = 0;
    return text;
}

Test(mmdet_test, eval_matches_coco_eval_on_the_formatted_results) {
    char args[512];
    snprintf(args, sizeof args, "--format-only --eval-options jsonfile_prefix=%s/res", dir);
    cr_assert_eq(run_test(args, "fmt.out"), 0, "%s", slurp("fmt.out"));
    cr_assert_eq(run_test("--eval bbox", "eval.out"), 0, "%s", slurp("eval.out"));
    char *text = slurp("eval.out");
    char *p = strstr(text, "{'bbox_mAP': ");
    cr_assert(p, "%s", text);
    double map = atof(p + 13);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "bin/mmdet-coco-eval %s/data/annotations/instances_val.json %s/res.bbox.json --json > %s/cli.out",
             dir, dir, dir);
    cr_assert_eq(system(cmd), 0);
    char *cli = slurp("cli.out");
    char *s = strchr(cli, '[');
    cr_assert(s, "%s", cli);
    double stat0 = atof(s + 1);
    char buf[32];
    snprintf(buf, sizeof buf, "%.3f", stat0);
    cr_expect_eq(map, atof(buf), "mmdet-test %g, mmdet-coco-eval %g", map, stat0);
    cr_expect(map > 0 && map < 1, "half the images answered: %g", map);
}

/* --out: per image, per class, the boxes; the first half of the images (in
 * the file's order) carry their ground truth, the rest nothing. */
Test(mmdet_test, out_holds_the_detections) {
    char args[512];
    snprintf(args, sizeof args, "--out %s/r.json", dir);
    cr_assert_eq(run_test(args, "out.out"), 0, "%s", slurp("out.out"));
    md_error err = { 0 };
    char path[256];
    snprintf(path, sizeof path, "%s/data/annotations/instances_val.json", dir);
    md_coco *gt = md_coco_load(path, &err);
    cr_assert(gt, "%s", err.msg);
    char *text = slurp("r.json");
    /* count boxes per image: an image is a top-level element "[[...], ...]" */
    int depth = 0, img = -1, boxes[8] = { 0 };
    for (char *c = text; *c; c++) {
        if (*c == '[') {
            depth++;
            if (depth == 2) img++;
            if (depth == 4 && img >= 0 && img < 8) boxes[img]++;
        } else if (*c == ']') depth--;
    }
    cr_assert_eq(img, 3, "%s", text);
    for (int i = 0; i < 4; i++) {
        int n = 0;
        for (size_t a = 0; a < gt->n_anns; a++) n += gt->anns[a].image_index == i;
        cr_expect_eq(boxes[i], i < 2 ? n : 0, "image %d: %d boxes, ground truth %d", i, boxes[i], n);
    }
    /* the first box of image 0, as xyxy */
    for (size_t a = 0; a < gt->n_anns; a++)
        if (gt->anns[a].image_index == 0) {
            char want[128];
            snprintf(want, sizeof want, "[%.9g, %.9g, %.9g, %.9g, 0.899999976]", gt->anns[a].bbox[0],
                     gt->anns[a].bbox[1], gt->anns[a].bbox[0] + gt->anns[a].bbox[2],
                     gt->anns[a].bbox[1] + gt->anns[a].bbox[3]);
            cr_expect(strstr(text, want), "%s not in %s", want, text);
            break;
        }
    md_coco_free(gt);
}

/* --out with a mask model (the oracle's with_mask): per image
 * [bbox_results, segm_results], each segm an RLE dict of the image's size
 * whose counts decode to the ground truth's mask; the pickle (.pkl) holds
 * the same list for mmcv.load (tests/golden/results_pkl_check.py reads it
 * with Python's pickle and compares it with the JSON). */
Test(mmdet_test, out_with_masks) {
    char args[512];
    snprintf(args, sizeof args, "--out %s/m.json --cfg-options model.with_mask=true", dir);
    cr_assert_eq(run_test(args, "mj.out"), 0, "%s", slurp("mj.out"));
    snprintf(args, sizeof args, "--out %s/m.pkl --cfg-options model.with_mask=true", dir);
    cr_assert_eq(run_test(args, "mp.out"), 0, "%s", slurp("mp.out"));
    md_error err = { 0 };
    char path[256];
    snprintf(path, sizeof path, "%s/data/annotations/instances_val.json", dir);
    md_coco *gt = md_coco_load(path, &err);
    cr_assert(gt, "%s", err.msg);
    char *text = slurp("m.json");
    /* image 0's entry: "[[" bbox lists "], [" segm lists "]]" */
    cr_assert(!strncmp(text, "[[[[", 4), "%.80s", text);
    int checked = 0;
    for (size_t a = 0; a < gt->n_anns; a++) {
        const md_coco_ann *an = &gt->anns[a];
        if (an->image_index != 0) continue;
        md_rle want, got;
        const md_coco_image *im = &gt->images[0];
        cr_assert_eq(md_mask_ann_to_rle(&an->segmentation, im->height, im->width, &want, &err), 0, "%s", err.msg);
        char *counts = md_rle_to_string(&want);
        char needle[4096];
        snprintf(needle, sizeof needle, "{\"size\": [%d, %d], \"counts\": \"%s\"}", im->height, im->width, counts);
        char *p = strstr(text, needle);
        cr_assert(p, "image 0, annotation %lld: %s not in the results", (long long)an->id, needle);
        cr_assert_eq(md_rle_from_string(counts, im->height, im->width, &got, &err), 0, "%s", err.msg);
        cr_assert_eq(md_rle_area(&got), md_rle_area(&want));
        cr_assert_gt(md_rle_area(&want), 0);
        md_rle_free(&got);
        md_rle_free(&want);
        free(counts);
        checked++;
    }
    cr_assert_gt(checked, 0);
    /* images without detections are ([[] x 5], [[] x 5]) */
    cr_assert(strstr(text, "[[[], [], [], [], []], [[], [], [], [], []]]"), "%s", text);
    md_coco_free(gt);
    /* the pickle: protocol 3, numpy arrays, bytes counts, one STOP at the end */
    snprintf(path, sizeof path, "%s/m.pkl", dir);
    FILE *f = fopen(path, "rb");
    cr_assert(f);
    static char pk[1 << 16];
    size_t n = fread(pk, 1, sizeof pk, f);
    fclose(f);
    cr_assert(n > 100 && (uint8_t)pk[0] == 0x80 && pk[1] == 3 && pk[n - 1] == '.', "%zu bytes", n);
    cr_assert(memmem(pk, n, "cnumpy.core.multiarray\n_reconstruct\n", 36) && memmem(pk, n, "counts", 6));
}

Test(mmdet_test, show_dir_draws_boxes) {
    char args[512];
    snprintf(args, sizeof args, "--show-dir %s/show --show-score-thr 0.5", dir);
    cr_assert_eq(run_test(args, "show.out"), 0, "%s", slurp("show.out"));
    md_error err = { 0 };
    char path[256];
    snprintf(path, sizeof path, "%s/data/annotations/instances_val.json", dir);
    md_coco *gt = md_coco_load(path, &err);
    cr_assert(gt);
    for (int i = 0; i < 4; i++) {
        const char *fn = gt->images[i].file_name;
        char png[512], orig[512];
        snprintf(png, sizeof png, "%s/show/%.*s.png", dir, (int)(strrchr(fn, '.') - fn), fn);
        snprintf(orig, sizeof orig, "%s/data/val/%s", dir, fn);
        md_image *a = md_image_read(png, &err), *b = md_image_read(orig, &err);
        cr_assert(a && b, "%s: %s", png, err.msg);
        cr_assert(a->w == b->w && a->h == b->h);
        size_t diff = 0;
        for (size_t k = 0; k < (size_t)a->w * a->h * 3; k++) diff += a->data[k] != b->data[k];
        if (i < 2) cr_expect_gt(diff, 100, "image %d has boxes drawn", i);
        else cr_expect_eq(diff, 0, "image %d has no detections: unchanged", i);
        /* image 0's first box: its left edge, half way down, in CocoDataset's
         * PALETTE colour of its class at mmdet's alpha 0.8 */
        for (size_t k = 0; i == 0 && k < gt->n_anns; k++) {
            const md_coco_ann *an = &gt->anns[k];
            if (an->image_index != 0) continue;
            int n = 0, x = (int)an->bbox[0], y = (int)(an->bbox[1] + an->bbox[3] * 0.75);
            const uint8_t *pal = md_palette_table("coco", &n), *c = pal + 3 * an->category_index;
            const uint8_t *pa = a->data + 3 * ((size_t)y * a->w + x), *pb = b->data + 3 * ((size_t)y * b->w + x);
            for (int ch = 0; ch < 3; ch++)
                cr_expect(abs(pa[ch] - (int)(0.2 * pb[ch] + 0.8 * c[ch] + 0.5)) <= 1,
                          "(%d, %d) channel %d: %d over %d, class %d", x, y, ch, pa[ch], pb[ch], an->category_index);
            break;
        }
        md_image_free(a);
        md_image_free(b);
    }
    md_coco_free(gt);
    /* a threshold above every score draws nothing */
    snprintf(args, sizeof args, "--show-dir %s/show2 --show-score-thr 0.95", dir);
    cr_assert_eq(run_test(args, "show2.out"), 0);
}

Test(mmdet_test, arguments_are_checked) {
    cr_expect_neq(run_test("", "none.out"), 0);
    cr_expect(strstr(slurp("none.out"), "Please specify at least one operation"), "%s", slurp("none.out"));
    cr_expect_neq(run_test("--eval bbox --format-only", "both.out"), 0);
    cr_expect(strstr(slurp("both.out"), "cannot be both specified"));
    cr_expect_neq(run_test("--out r.txt", "txt.out"), 0);
    cr_expect(strstr(slurp("txt.out"), ".pkl") && strstr(slurp("txt.out"), ".json"), "%s", slurp("txt.out"));
    cr_expect_neq(run_test("--eval segm", "segm.out"), 0);
    cr_expect(strstr(slurp("segm.out"), "segm"));
}
