/* Drawing through cairo and pango (mmdet/draw.h): text is anti-aliased and
 * lands where asked, shapes cover the pixels their geometry says, palettes
 * and the mask blend equal mmdet's own (tests/golden/draw_golden.py), and
 * md_draw_detections puts each box in its class colour at mmdet's alpha
 * with a "class|score" label scaled by the box area. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/draw.h>
#include <mmdet/masks.h>
#include "testlib.h"

#define PT (100.0 / 72.0)   /* matplotlib's 100 dpi */

static md_st *st;
static void setup(void) { st = golden_open("draw"); }
static void teardown(void) { md_st_close(st); }

static const uint8_t *entry(const char *name, int64_t *numel) {
    int i = md_st_find(st, name);
    cr_assert_geq(i, 0, "draw.safetensors has no %s", name);
    int64_t sh[8], n = 1;
    int nd = md_st_shape(st, i, sh);
    for (int k = 0; k < nd; k++) n *= sh[k];
    if (numel) *numel = n;
    return golden_data(st, i);
}

static md_image *white(int h, int w) {
    md_error err = { 0 };
    md_image *img = md_image_new(h, w, 3, &err);
    cr_assert(img, "%s", err.msg);
    memset(img->data, 255, (size_t)h * w * 3);
    return img;
}
static const uint8_t *at(const md_image *img, int x, int y) { return img->data + ((size_t)y * img->w + x) * img->c; }
static bool is_white(const md_image *img, int x, int y) {
    const uint8_t *p = at(img, x, y);
    return p[0] == 255 && p[1] == 255 && p[2] == 255;
}
/* The bounding box of the pixels that are not white; false when none. */
static bool ink_box(const md_image *img, int box[4]) {
    box[0] = img->w, box[1] = img->h, box[2] = -1, box[3] = -1;
    for (int y = 0; y < img->h; y++)
        for (int x = 0; x < img->w; x++)
            if (!is_white(img, x, y)) {
                if (x < box[0]) box[0] = x;
                if (y < box[1]) box[1] = y;
                if (x > box[2]) box[2] = x;
                if (y > box[3]) box[3] = y;
            }
    return box[2] >= 0;
}
static void finish(md_canvas *cv) {
    md_error err = { 0 };
    cr_assert_eq(md_canvas_finish(cv, &err), 0, "%s", err.msg);
}

/* ---- text ---- */

Test(draw, text_is_antialiased_and_lands_in_its_box) {
    md_image *img = white(80, 200);
    md_error err = { 0 };
    md_canvas *cv = md_canvas_on_image(img, &err);
    cr_assert(cv, "%s", err.msg);
    double w, h;
    md_draw_text_size("loss_cls", 20, &w, &h);
    cr_assert(w > 40 && w < 120 && h > 18 && h < 30, "measured %g x %g", w, h);
    md_draw_text(cv, 30, 20, "loss_cls", 20, MD_RGB(0, 0, 0), 0, 0);
    finish(cv);
    int b[4], partial = 0, full = 0;
    cr_assert(ink_box(img, b));
    /* the ink stays inside the logical box at (30, 20) and spans most of it */
    cr_expect(b[0] >= 30 && b[0] <= 33, "left %d", b[0]);
    cr_expect(b[1] >= 20 && b[3] <= 20 + h, "rows %d..%d, box %g high", b[1], b[3], h);
    cr_expect(b[2] <= 30 + w && b[2] >= 30 + w - 4, "right %d, box ends at %g", b[2], 30 + w);
    for (int y = 0; y < img->h; y++)
        for (int x = 0; x < img->w; x++) {
            int v = at(img, x, y)[0];
            partial += v > 30 && v < 225;
            full += v <= 30;
        }
    /* anti-aliased: a large share of the glyph edge pixels are in between */
    cr_expect_gt(partial, 60, "%d intermediate pixels", partial);
    cr_expect_gt(full, 40, "%d solid pixels", full);
    cr_expect_gt(partial * 5, full, "%d intermediate, %d solid", partial, full);
    /* the same text anchored at its right-middle */
    memset(img->data, 255, (size_t)img->h * img->w * 3);
    cv = md_canvas_on_image(img, &err);
    md_draw_text(cv, 170, 40, "loss_cls", 20, MD_RGB(0, 0, 0), 1, 0.5);
    finish(cv);
    cr_assert(ink_box(img, b));
    cr_expect(b[2] <= 170 && b[2] >= 166, "right %d", b[2]);
    cr_expect(b[0] >= 170 - w - 1 && b[0] <= 170 - w + 4, "left %d for width %g", b[0], w);
    cr_expect(b[1] >= 40 - h / 2 - 1 && b[3] <= 40 + h / 2 + 1, "rows %d..%d", b[1], b[3]);
    md_image_free(img);
}

Test(draw, text_width_grows_with_the_text_and_the_size) {
    double a, b, c, h1, h2;
    md_draw_text_size("loss_cls", 10, &a, &h1);
    md_draw_text_size("loss_cls_x", 10, &b, NULL);
    md_draw_text_size("loss_cls", 20, &c, &h2);
    cr_expect_gt(b, a);
    cr_expect_float_eq(c, 2 * a, 0.02 * a, "no hinting: width scales with the size (%g, %g)", a, c);
    cr_expect_float_eq(h2, 2 * h1, 0.05 * h1);
    md_draw_text_size("", 10, &a, NULL);
    cr_expect_eq(a, 0);
    md_draw_text_size("bad \xff utf-8", 10, &a, NULL);   /* replaced, still measured */
    cr_expect_gt(a, 10);
}

/* ---- shapes ---- */

Test(draw, fill_rect_on_whole_pixels_is_exact_and_clipped) {
    md_image *img = white(20, 30);
    md_error err = { 0 };
    md_canvas *cv = md_canvas_on_image(img, &err);
    md_draw_fill_rect(cv, 2, 3, 7, 9, MD_RGB(255, 0, 0));      /* pixels x 2..6, y 3..8 */
    md_draw_fill_rect(cv, -50, 15, 2, 100, MD_RGB(0, 0, 255));  /* clipped: x 0..1, y 15..19 */
    md_draw_fill_rect(cv, 100, 100, 200, 200, MD_RGB(0, 0, 255));   /* outside: nothing */
    finish(cv);
    int red = 0, blue = 0;
    for (int y = 0; y < 20; y++)
        for (int x = 0; x < 30; x++) {
            const uint8_t *p = at(img, x, y);
            bool in_red = x >= 2 && x < 7 && y >= 3 && y < 9, in_blue = x < 2 && y >= 15;
            red += p[0] == 255 && p[1] == 0 && p[2] == 0;
            blue += p[0] == 0 && p[1] == 0 && p[2] == 255;
            if (!in_red && !in_blue) cr_expect(is_white(img, x, y), "(%d, %d) changed", x, y);
        }
    cr_expect_eq(red, 5 * 6);
    cr_expect_eq(blue, 2 * 5);
    md_image_free(img);
}

Test(draw, rect_outline_is_centred_on_its_edges) {
    md_image *img = white(60, 80);
    md_error err = { 0 };
    md_canvas *cv = md_canvas_on_image(img, &err);
    md_draw_rect(cv, 10.5, 20.5, 50.5, 40.5, MD_RGB(0, 0, 0), 3);   /* through pixel centres, 3 wide */
    finish(cv);
    int b[4];
    cr_assert(ink_box(img, b));
    cr_expect(b[0] == 9 && b[1] == 19 && b[2] == 51 && b[3] == 41, "ink %d %d %d %d", b[0], b[1], b[2], b[3]);
    cr_expect_eq(at(img, 10, 30)[0], 0, "the left edge is solid");
    cr_expect(is_white(img, 30, 30), "the inside stays");
    md_image_free(img);
}

Test(draw, lines_are_antialiased_and_markers_round) {
    md_image *img = white(40, 40);
    md_error err = { 0 };
    md_canvas *cv = md_canvas_on_image(img, &err);
    md_draw_line(cv, 2, 3, 37, 30, MD_RGB(0, 0, 0), 1.5);
    finish(cv);
    int partial = 0;
    for (int i = 0; i < 40 * 40; i++) partial += img->data[3 * i] > 20 && img->data[3 * i] < 235;
    cr_expect_gt(partial, 20, "a slanted line has partly covered pixels (%d)", partial);
    memset(img->data, 255, 40 * 40 * 3);
    cv = md_canvas_on_image(img, &err);
    md_draw_circle(cv, 20, 20, 6, MD_RGB(0, 0, 0));
    finish(cv);
    int b[4];
    cr_assert(ink_box(img, b));
    cr_expect(b[0] == 14 && b[1] == 14 && b[2] == 25 && b[3] == 25, "ink %d %d %d %d", b[0], b[1], b[2], b[3]);
    cr_expect(!is_white(img, 20, 20) && is_white(img, 14, 14), "round, not square");
    md_image_free(img);
}

Test(draw, gray_image_gets_the_luma) {
    md_error err = { 0 };
    md_image *img = md_image_new(4, 4, 1, &err);
    memset(img->data, 10, 16);
    md_canvas *cv = md_canvas_on_image(img, &err);
    cr_assert(cv, "%s", err.msg);
    md_draw_fill_rect(cv, 0, 0, 2, 4, MD_RGB(255, 0, 0));
    finish(cv);
    cr_expect_eq(img->data[0], 76);   /* 0.299 x 255 */
    cr_expect_eq(img->data[3], 10);
    md_image_free(img);
}

Test(draw, file_canvases_write_png_pdf_svg) {
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir, "mmdet_draw");
    const char *ext[] = { "png", "pdf", "svg" }, *magic[] = { "\x89PNG\r\n\x1a\n", "%PDF-", "<?xml" };
    for (int k = 0; k < 3; k++) {
        md_error err = { 0 };
        snprintf(path, sizeof path, "%s/x.%s", dir, ext[k]);
        md_canvas *cv = md_canvas_new_file(path, 120, 80, &err);
        cr_assert(cv, "%s", err.msg);
        md_draw_text(cv, 10, 10, "loss_cls", 12, MD_RGB(0, 0, 0), 0, 0);
        md_draw_line(cv, 0, 0, 120, 80, MD_RGB(255, 0, 0), 2);
        finish(cv);
        FILE *f = fopen(path, "rb");
        cr_assert(f);
        char head[16] = { 0 };
        cr_assert_gt(fread(head, 1, sizeof head, f), 8);
        fclose(f);
        cr_expect(!memcmp(head, magic[k], strlen(magic[k])), "%s starts with %.8s", path, head);
    }
    md_error err = { 0 };
    md_image *img = md_image_read(strcat(strcpy(path, dir), "/x.png"), &err);
    cr_assert(img, "%s", err.msg);
    cr_expect(img->w == 120 && img->h == 80 && is_white(img, 119, 0));
    md_image_free(img);
    snprintf(path, sizeof path, "%s/x.gif", dir);
    cr_expect_null(md_canvas_new_file(path, 10, 10, &err));
    cr_expect(strstr(err.msg, "x.gif") && strstr(err.msg, ".svg"), "%s", err.msg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* ---- palettes ---- */

Test(draw, palettes_are_mmdets, .init = setup, .fini = teardown) {
    const struct { const char *name, *key; int n; } cases[] = {
        { "random", "palette_random", 100 }, { NULL, "palette_random", 100 }, { "coco", "palette_coco", 80 },
        { "voc", "palette_voc", 20 },        { "citys", "palette_citys", 8 }, { "red", "palette_red", 4 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t n;
        const uint8_t *want = entry(cases[c].key, &n);
        cr_assert_eq(n, 3 * cases[c].n);
        uint8_t got[300];
        md_error err = { 0 };
        cr_assert_eq(md_palette_get(cases[c].name, cases[c].n, got, &err), 0, "%s", err.msg);
        for (int i = 0; i < 3 * cases[c].n; i++)
            cr_expect_eq(got[i], want[i], "%s: class %d channel %d: %d, mmdet %d", cases[c].key, i / 3, i % 3,
                         got[i], want[i]);
    }
    uint8_t buf[300];
    md_error err = { 0 };
    cr_expect_neq(md_palette_get("coco", 81, buf, &err), 0);
    cr_expect(strstr(err.msg, "coco") && strstr(err.msg, "80"), "%s", err.msg);
    cr_expect_neq(md_palette_get("rainbow", 3, buf, &err), 0);
    cr_expect(strstr(err.msg, "rainbow"), "%s", err.msg);
    int n = 0;
    cr_expect(md_palette_table("voc", &n) && n == 20);
    cr_expect_null(md_palette_table("random", &n));
}

/* ---- detections ---- */

/* A box edge pixel fully covered by the 0.8-opaque stroke over white. */
static void expect_edge(const md_image *img, int x, int y, const uint8_t c[3], const char *what) {
    const uint8_t *p = at(img, x, y);
    for (int k = 0; k < 3; k++)
        cr_expect(abs(p[k] - (int)lround(0.2 * 255 + 0.8 * c[k])) <= 1, "%s: (%d, %d) channel %d is %d, want %ld",
                  what, x, y, k, p[k], lround(0.2 * 255 + 0.8 * c[k]));
}

Test(draw, boxes_take_the_class_colour_of_the_palette, .init = setup, .fini = teardown) {
    const uint8_t *rnd = entry("palette_random", NULL), *coco = entry("palette_coco", NULL);
    const float boxes[] = { 20.7f, 30.2f, 120.9f, 184.6f, 0.93f, 150, 20, 250, 120, 0.5f, 10, 10, 30, 30, 0.3f };
    const int64_t labels[] = { 0, 7, 1 };
    md_det_result det = { .n = 3, .bboxes = boxes, .labels = labels };
    for (int pass = 0; pass < 2; pass++) {
        md_image *img = white(200, 300);
        md_det_style style = MD_DET_STYLE(pass ? coco : NULL, pass ? 80 : 0);
        md_error err = { 0 };
        cr_assert_eq(md_draw_detections(img, &det, NULL, 0, &style, &err), 0, "%s", err.msg);
        const uint8_t *pal = pass ? coco : rnd;
        /* the left edges at x = 20 and 150 (integer corners), half way down */
        expect_edge(img, 20, 150, pal + 3 * 0, pass ? "coco label 0" : "random label 0");
        expect_edge(img, 150, 100, pal + 3 * 7, pass ? "coco label 7" : "random label 7");
        /* the third has score 0.3, not above the threshold: nothing drawn there */
        cr_expect(is_white(img, 10, 20), "a score equal to score_thr is not drawn");
        /* the strokes reach thickness / 2 = 1.39 px out of the pixel centres
         * of the integer corners: x from 20.5 - 1.39 (box 1) to 250.5 + 1.39
         * (box 2), y from 20.5 - 1.39 (box 2) to 184.5 + 1.39 (box 1) */
        int b[4];
        ink_box(img, b);
        cr_expect(b[0] == 19 && b[1] == 19 && b[2] == 251 && b[3] == 185, "ink %d %d %d %d", b[0], b[1], b[2], b[3]);
        md_image_free(img);
    }
    /* a palette too short for a label is an error */
    md_image *img = white(200, 300);
    md_det_style style = MD_DET_STYLE(coco, 5);
    md_error err = { 0 };
    cr_expect_neq(md_draw_detections(img, &det, NULL, 0, &style, &err), 0);
    cr_expect(strstr(err.msg, "label 7"), "%s", err.msg);
    md_image_free(img);
}

/* The label: "name|0.93" at font 13 pt x mmdet's scale of the box area, on
 * a black box at 0.8 padded by 0.7 pt, thickness px inside the box corner.
 * With black text the strip is dark end to end, so its right end shows the
 * width of the text that was laid out. */
Test(draw, label_text_size_and_place_follow_mmdet, .init = setup, .fini = teardown) {
    int64_t n_areas;
    const float *areas = (const float *)entry("scale_areas", &n_areas), *scales = (const float *)entry("scale_values", NULL);
    for (int k = 0; k < n_areas; k++) {   /* the scale mmdet gives each area, as the drawing sizes text */
        double want = fmin(fmax(0.5 + (areas[k] - 800) / 29200.0, 0.5), 1.0);
        cr_expect_float_eq(want, scales[k], 1e-6, "area %g", areas[k]);
    }
    char *classes[] = { "person", "bicycle" };
    const struct { float box[5]; int64_t label; const char *text; double scale; } cases[] = {
        { { 40, 30, 240, 180, 0.925f }, 1, "bicycle|0.93", 1.0 },            /* area 30000: full size */
        { { 40.9f, 30.2f, 194.9f, 130.2f, 0.5f }, 0, "person|0.50", 0.5 + (15400 - 800) / 29200.0 },
        { { 60, 40, 80, 70, 0.75f }, 5, "class 5|0.75", 0.5 },             /* no name for label 5 */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        md_image *img = white(220, 320);
        md_det_result det = { .n = 1, .bboxes = cases[c].box, .labels = &cases[c].label };
        static const uint8_t black[3] = { 0, 0, 0 };
        md_det_style style = MD_DET_STYLE(NULL, 0);
        style.text_color = black;
        md_error err = { 0 };
        cr_assert_eq(md_draw_detections(img, &det, classes, 2, &style, &err), 0, "%s", err.msg);
        double w, h, size = 13 * PT * cases[c].scale, pad = 0.7 * PT;
        md_draw_text_size(cases[c].text, size, &w, &h);
        double x = (int)cases[c].box[0] + 2 + 0.5, y = (int)cases[c].box[1] + 2 + 0.5;
        int row = (int)(y + h / 2), right = -1, bottom = -1;
        for (int px = (int)x; px < img->w; px++)
            if (at(img, px, row)[0] < 128 && at(img, px, row)[1] < 128) right = px;
        for (int py = row; py < img->h && at(img, (int)(x + w / 2), py)[0] < 128; py++) bottom = py;
        cr_expect(fabs(right + 1 - (x + w + pad)) <= 1.0, "%s: the strip ends at %d, the text box at %.2f",
                  cases[c].text, right + 1, x + w + pad);
        cr_expect(fabs(bottom + 1 - (y + h + pad)) <= 1.0, "%s: the strip ends at row %d, want %.2f", cases[c].text,
                  bottom + 1, y + h + pad);
        md_image_free(img);
    }
}

/* mmdet's draw_masks on the fixture's image: every pixel that is not on a
 * mask border equals mmdet's u8 result exactly; border pixels are whitened
 * (the edge mmdet strokes in white at 0.8). */
Test(draw, masks_blend_as_mmdet, .init = setup, .fini = teardown) {
    int64_t n;
    const uint8_t *src = entry("mask_img", &n), *masks = entry("mask_masks", NULL), *want = entry("mask_out", NULL);
    const uint8_t *cols = entry("mask_colors", NULL);
    int h = 12, w = 16;
    cr_assert_eq(n, h * w * 3);
    md_error err = { 0 };
    md_image *img = md_image_new(h, w, 3, &err);
    memcpy(img->data, src, (size_t)n);
    md_rle rle[2];
    for (int k = 0; k < 2; k++) cr_assert_eq(md_rle_encode(masks + k * h * w, h, w, &rle[k], &err), 0, "%s", err.msg);
    /* the fixture's colours are COCO's labels 0 and 3; boxes off the image */
    int lc = 0;
    const uint8_t *coco = md_palette_table("coco", &lc);
    cr_assert(!memcmp(coco, cols, 3) && !memcmp(coco + 9, cols + 3, 3));
    const float boxes[] = { -100, -100, -90, -90, 0.9f, -100, -100, -90, -90, 0.8f };
    const int64_t labels[] = { 0, 3 };
    md_det_result det = { .n = 2, .bboxes = boxes, .labels = labels, .masks = rle };
    md_det_style style = MD_DET_STYLE(coco, 80);
    cr_assert_eq(md_draw_detections(img, &det, NULL, 0, &style, &err), 0, "%s", err.msg);
    int inner = 0, border = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            bool edge = false;
            for (int k = 0; k < 2; k++) {
                const uint8_t *m = masks + k * h * w;
                if (!m[y * w + x]) continue;
                edge |= x == 0 || y == 0 || x == w - 1 || y == h - 1 || !m[y * w + x - 1] || !m[y * w + x + 1] ||
                        !m[(y - 1) * w + x] || !m[(y + 1) * w + x];
            }
            for (int c = 0; c < 3; c++) {
                int got = img->data[(y * w + x) * 3 + c], ref = want[(y * w + x) * 3 + c];
                if (edge) cr_expect_eq(got, (int)lround(ref * 0.2 + 255 * 0.8), "edge (%d, %d) channel %d", x, y, c);
                else cr_expect_eq(got, ref, "(%d, %d) channel %d: %d, mmdet %d", x, y, c, got, ref);
            }
            inner += !edge && (masks[y * w + x] || masks[h * w + y * w + x]);
            border += edge;
        }
    cr_expect_gt(inner, 20);
    cr_expect_gt(border, 20);
    for (int k = 0; k < 2; k++) md_rle_free(&rle[k]);
    md_image_free(img);
}
