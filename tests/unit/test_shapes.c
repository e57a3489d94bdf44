/* bin/mmdet-shapes end to end: determinism, honest boxes (checked against
 * the instance masks it writes), COCO and VOC layouts, bad arguments. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <mmdet/coco.h>
#include <mmdet/image.h>
#include "testlib.h"

#define TOOL "bin/mmdet-shapes"

static char dir[64];
static void setup(void) {
    test_tmpdir(dir, sizeof dir, "md_test_shapes");
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(shapes, .init = setup, .fini = teardown);

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(shapes, same_seed_same_bytes_whatever_the_threads) {
    cr_assert_eq(run(TOOL " --out %s/a --train 12 --val 4 --seed 5 --png-frac 0.3 --crowd-frac 0.2 >/dev/null", dir), 0);
    cr_assert_eq(run("OMP_NUM_THREADS=1 " TOOL " --out %s/b --train 12 --val 4 --seed 5 --png-frac 0.3 --crowd-frac 0.2 >/dev/null", dir), 0);
    cr_assert_eq(run("diff -r %s/a %s/b >/dev/null", dir, dir), 0, "outputs differ for the same seed");
    cr_assert_eq(run(TOOL " --out %s/c --train 12 --val 4 --seed 6 --png-frac 0.3 --crowd-frac 0.2 >/dev/null", dir), 0);
    cr_assert_neq(run("cmp -s %s/a/annotations/instances_train.json %s/c/annotations/instances_train.json", dir, dir), 0,
                  "a different seed gave the same annotations");
}

/* Every annotation's box and area equal the tight box and pixel count of
 * its object in the instance mask; in lossless PNG images without noise,
 * every pixel of an object has the object's one colour. */
static void check_split(const char *split, int n_classes, int *n_png, int *n_crowd, int *n_small, int *n_large) {
    char p[512];
    snprintf(p, sizeof p, "%s/d/annotations/instances_%s.json", dir, split);
    md_error err = {0};
    md_coco *c = md_coco_load(p, &err);
    cr_assert(c, "%s", err.msg);
    cr_assert_eq(c->n_categories, (size_t)n_classes);
    cr_assert_str_eq(c->categories[0].name, "rectangle");
    cr_assert_eq(c->categories[0].id, 1);
    cr_assert_gt(c->n_images, 0u);
    size_t ai = 0;
    for (size_t i = 0; i < c->n_images; i++) {
        const md_coco_image *im = &c->images[i];
        snprintf(p, sizeof p, "%s/d/%s/%s", dir, split, im->file_name);
        md_image *img = md_image_read(p, &err);
        cr_assert(img, "%s", err.msg);
        cr_assert_eq(img->w, im->width);
        cr_assert_eq(img->h, im->height);
        cr_assert(img->w >= 100 && img->w <= 200 && img->h >= 100 && img->h <= 200);
        int png = strstr(im->file_name, ".png") != NULL;
        *n_png += png;
        snprintf(p, sizeof p, "%s/d/masks/%s/%06lld.png", dir, split, (long long)im->id);
        md_image *m = md_image_read_as(p, MD_IMAGE_UNCHANGED, &err);
        cr_assert(m, "%s", err.msg);
        cr_assert_eq(m->c, 1);
        int k = 0;
        for (; ai < c->n_anns && c->anns[ai].image_id == im->id; ai++, k++) {
            const md_coco_ann *a = &c->anns[ai];
            int x0 = img->w, y0 = img->h, x1 = 0, y1 = 0;
            long cnt = 0;
            const uint8_t *col = NULL;
            int one_colour = 1;
            for (int y = 0; y < m->h; y++)
                for (int x = 0; x < m->w; x++) {
                    if (m->data[y * m->w + x] != k + 1) continue;
                    cnt++;
                    if (x < x0) x0 = x;
                    if (y < y0) y0 = y;
                    if (x + 1 > x1) x1 = x + 1;
                    if (y + 1 > y1) y1 = y + 1;
                    const uint8_t *px = img->data + ((size_t)y * img->w + x) * 3;
                    if (!col) col = px;
                    else if (memcmp(col, px, 3)) one_colour = 0;
                }
            cr_assert_gt(cnt, 0, "image %lld object %d has no pixels", (long long)im->id, k);
            cr_assert_eq(a->bbox[0], x0);
            cr_assert_eq(a->bbox[1], y0);
            cr_assert_eq(a->bbox[2], x1 - x0, "image %lld object %d", (long long)im->id, k);
            cr_assert_eq(a->bbox[3], y1 - y0);
            cr_assert_eq(a->area, (double)cnt);
            cr_assert(a->category_id >= 1 && a->category_id <= n_classes);
            if (png) cr_assert(one_colour, "image %lld object %d: pixels of several colours", (long long)im->id, k);
            *n_crowd += a->iscrowd;
            *n_small += a->area < 32 * 32;
            *n_large += a->area > 96 * 96;
        }
        /* No mask pixel without an annotation. */
        for (int j = 0; j < m->w * m->h; j++) cr_assert_leq(m->data[j], k, "unannotated object in image %lld", (long long)im->id);
        md_image_free(m);
        md_image_free(img);
    }
    cr_assert_eq(ai, c->n_anns, "annotations not grouped by image in file order");
    md_coco_free(c);
}

Test(shapes, boxes_are_tight_boxes_of_visible_pixels) {
    cr_assert_eq(run(TOOL " --out %s/d --train 40 --val 8 --classes 10 --seed 11 --min-size 100 --max-size 200"
                     " --max-objs 8 --full-range --png-frac 0.5 --crowd-frac 0.2 --noise 0 --masks >/dev/null", dir), 0);
    int n_png = 0, n_crowd = 0, n_small = 0, n_large = 0;
    check_split("train", 10, &n_png, &n_crowd, &n_small, &n_large);
    check_split("val", 10, &n_png, &n_crowd, &n_small, &n_large);
    cr_assert_gt(n_png, 5);
    cr_assert_gt(n_crowd, 5);
    cr_assert_gt(n_small, 10);
    cr_assert_gt(n_large, 0);
}

Test(shapes, voc_layout) {
    cr_assert_eq(run(TOOL " --out %s/v --format voc --train 3 --val 2 --seed 1 >/dev/null", dir), 0);
    char p[512];
    const char *must[] = {"JPEGImages/000001.jpg", "JPEGImages/000005.jpg", "Annotations/000001.xml",
                          "Annotations/000005.xml", "ImageSets/Main/train.txt", "ImageSets/Main/val.txt"};
    struct stat st;
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/v/%s", dir, must[i]);
        cr_assert_eq(stat(p, &st), 0, "%s missing", p);
    }
    snprintf(p, sizeof p, "%s/v/ImageSets/Main/val.txt", dir);
    FILE *f = fopen(p, "r");
    char line[64], all[256] = "";
    while (fgets(line, sizeof line, f)) strcat(all, line);
    fclose(f);
    cr_assert_str_eq(all, "000004\n000005\n");
    snprintf(p, sizeof p, "%s/v/Annotations/000004.xml", dir);
    f = fopen(p, "r");
    char xml[8192];
    size_t n = fread(xml, 1, sizeof xml - 1, f);
    xml[n] = 0;
    fclose(f);
    cr_assert(strstr(xml, "<annotation>") && strstr(xml, "<bndbox>") && strstr(xml, "<difficult>0</difficult>"), "%s", xml);
    md_image *img;
    snprintf(p, sizeof p, "%s/v/JPEGImages/000004.jpg", dir);
    cr_assert((img = md_image_read(p, NULL)));
    char sz[64];
    snprintf(sz, sizeof sz, "<width>%d</width>", img->w);
    cr_assert(strstr(xml, sz));
    md_image_free(img);
}

Test(shapes, bad_arguments) {
    cr_assert_eq(run(TOOL " --out %s/x --classes 11 2>/dev/null", dir), 2);
    cr_assert_eq(run(TOOL " --train 3 2>/dev/null"), 2);
    cr_assert_eq(run(TOOL " --out %s/x --format yolo 2>/dev/null", dir), 2);
    cr_assert_eq(run(TOOL " --out %s/x --min-size 300 --max-size 200 2>/dev/null", dir), 2);
}

/* A rejected placement (it would hide too much of an earlier object) moves
 * the new shape; it must not also redraw its size, or every retry is a new
 * chance to come out small and the objects drawn late, which meet the most
 * rejections, are smaller than the early ones. In crowded images (8 objects
 * up to the image's size) the late objects of the old generator came out
 * 15 % smaller (geometric mean of the box's longer side); they are on top,
 * so if anything they show more of themselves than the early ones. */
Test(shapes, object_size_does_not_depend_on_drawing_order) {
    cr_assert_eq(run(TOOL " --out %s/o --train 300 --val 0 --min-size 128 --max-size 128 --min-objs 8 --max-objs 8"
                     " --obj-min 16 --obj-max 128 --seed 3 >/dev/null", dir), 0);
    char p[512];
    snprintf(p, sizeof p, "%s/o/annotations/instances_train.json", dir);
    md_error err = {0};
    md_coco *c = md_coco_load(p, &err);
    cr_assert(c, "%s", err.msg);
    double early = 0, late = 0;
    int n_early = 0, n_late = 0;
    for (size_t ai = 0, k = 0; ai < c->n_anns; ai++, k++) {
        if (ai > 0 && c->anns[ai].image_id != c->anns[ai - 1].image_id) k = 0;
        const md_coco_ann *a = &c->anns[ai];
        double side = log(a->bbox[2] > a->bbox[3] ? a->bbox[2] : a->bbox[3]);
        if (k < 3) { early += side; n_early++; }
        else if (k >= 5) { late += side; n_late++; }
    }
    md_coco_free(c);
    cr_assert_gt(n_early, 800);
    cr_assert_gt(n_late, 800);
    double ratio = exp(late / n_late - early / n_early);
    cr_assert_gt(ratio, 0.95, "objects drawn late are %.0f %% smaller than early ones", 100 * (1 - ratio));
}

/* --masks: each segmentation is the pixels its object shows. Hidden parts,
 * rings and crowd regions come as the RLE of the visible pixels (exact);
 * whole objects as their outline polygon, which pycocotools' rasterisation
 * (5x upsampled boundaries) turns into nearly the pixels drawn at pixel
 * centres: only boundary pixels may differ. */
Test(shapes, segmentations_are_the_visible_pixels) {
    cr_assert_eq(run(TOOL " --out %s/d --train 30 --val 0 --classes 10 --seed 3 --min-size 100 --max-size 160"
                     " --max-objs 8 --full-range --crowd-frac 0.1 --noise 0 --masks >/dev/null", dir), 0);
    char p[512];
    snprintf(p, sizeof p, "%s/d/annotations/instances_train.json", dir);
    md_error err = {0};
    md_coco *c = md_coco_load(p, &err);
    cr_assert(c, "%s", err.msg);
    size_t ai = 0;
    int n_poly = 0, n_rle = 0;
    double worst = 1;
    for (size_t i = 0; i < c->n_images; i++) {
        const md_coco_image *im = &c->images[i];
        snprintf(p, sizeof p, "%s/d/masks/train/%06lld.png", dir, (long long)im->id);
        md_image *m = md_image_read_as(p, MD_IMAGE_UNCHANGED, &err);
        cr_assert(m, "%s", err.msg);
        uint8_t *dec = malloc((size_t)m->w * m->h);
        for (int k = 1; ai < c->n_anns && c->anns[ai].image_id == im->id; ai++, k++) {
            const md_coco_ann *a = &c->anns[ai];
            md_rle r;
            cr_assert_eq(md_mask_ann_to_rle(&a->segmentation, im->height, im->width, &r, &err), 0, "%s", err.msg);
            cr_assert_eq(md_rle_decode(&r, dec, &err), 0, "%s", err.msg);
            md_rle_free(&r);
            long inter = 0, uni = 0, boundary_miss = 0;
            for (int y = 0; y < m->h; y++)
                for (int x = 0; x < m->w; x++) {
                    int want = m->data[y * m->w + x] == k, got = dec[y * m->w + x];
                    inter += want && got;
                    uni += want || got;
                    if (want != got) {   /* a differing pixel must touch the object's edge */
                        int edge = 0;
                        for (int dy = -1; dy <= 1; dy++)
                            for (int dx = -1; dx <= 1; dx++) {
                                int xx = x + dx, yy = y + dy;
                                if (xx < 0 || yy < 0 || xx >= m->w || yy >= m->h) continue;
                                edge |= (m->data[yy * m->w + xx] == k) != want;
                            }
                        boundary_miss += !edge;
                    }
                }
            if (a->segmentation.kind == MD_MASK_ANN_RLE) {
                n_rle++;
                cr_assert_eq(inter, uni, "image %lld object %d: the RLE is not the visible pixels", (long long)im->id, k);
            } else {
                n_poly++;
                cr_assert_eq(boundary_miss, 0, "image %lld object %d: a polygon pixel off the edge", (long long)im->id, k);
                double iou = (double)inter / (double)uni;
                if (iou < worst) worst = iou;
            }
        }
        free(dec);
        md_image_free(m);
    }
    cr_assert_gt(n_rle, 5);
    cr_assert_gt(n_poly, 20);
    cr_expect_gt(worst, 0.85, "worst polygon IoU %g", worst);
    md_coco_free(c);
}
