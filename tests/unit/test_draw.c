/* Drawing helpers: rectangle outlines and fills (clipped), glyph pixels of
 * the built-in font, and show_result's score threshold, colors and masks. */
#include <criterion/criterion.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/draw.h>

static const uint8_t red[3] = { 255, 0, 0 };

static bool is(const md_image *img, int x, int y, const uint8_t c[3]) {
    const uint8_t *p = img->data + ((size_t)y * img->w + x) * 3;
    return p[0] == c[0] && p[1] == c[1] && p[2] == c[2];
}
static int count(const md_image *img, const uint8_t c[3]) {
    int n = 0;
    for (int y = 0; y < img->h; y++)
        for (int x = 0; x < img->w; x++) n += is(img, x, y, c);
    return n;
}

Test(draw, rect_outline_thickness_and_clipping) {
    md_error err = { 0 };
    md_image *img = md_image_new(20, 30, 3, &err);
    md_draw_rect(img, 2, 3, 11, 8, red, 1);           /* 10 x 6 outline: 2 * 10 + 2 * 4 pixels */
    cr_expect_eq(count(img, red), 28);
    cr_expect(is(img, 2, 3, red) && is(img, 11, 8, red) && !is(img, 5, 5, red));
    memset(img->data, 0, 20 * 30 * 3);
    md_draw_rect(img, 2, 3, 11, 8, red, 2);           /* plus the inner ring 8 x 4: 2 * 8 + 2 * 2 */
    cr_expect_eq(count(img, red), 28 + 20);
    memset(img->data, 0, 20 * 30 * 3);
    md_draw_fill_rect(img, -5, -5, 3, 1, red);        /* clipped to 4 x 2 */
    cr_expect_eq(count(img, red), 8);
    md_draw_rect(img, -10, -10, 100, 100, red, 1);    /* entirely outside: nothing, no crash */
    cr_expect_eq(count(img, red), 8);
    md_image_free(img);
}

Test(draw, text_uses_the_5x7_glyphs) {
    md_error err = { 0 };
    md_image *img = md_image_new(10, 20, 3, &err);
    md_draw_text(img, 1, 1, "I", red, 1);
    /* I: .###. / ..#.. x5 / .###.  = 3 + 5 + 3 pixels */
    cr_expect_eq(count(img, red), 11);
    cr_expect(is(img, 2, 1, red) && is(img, 3, 4, red) && !is(img, 1, 4, red));
    cr_expect_eq(md_draw_text_width("ab|1", 1), 4 * 6 - 1);
    cr_expect_eq(md_draw_text_width("ab", 2), (2 * 6 - 1) * 2);
    /* lowercase is drawn as capitals */
    md_image *a = md_image_new(10, 10, 3, &err), *b = md_image_new(10, 10, 3, &err);
    md_draw_text(a, 0, 0, "q", red, 1);
    md_draw_text(b, 0, 0, "Q", red, 1);
    cr_expect_eq(memcmp(a->data, b->data, 300), 0);
    md_image_free(a);
    md_image_free(b);
    md_image_free(img);
}

Test(draw, detections_respect_the_score_threshold) {
    md_error err = { 0 };
    md_image *img = md_image_new(60, 80, 3, &err);
    float boxes[10] = { 10, 20, 40, 50, 0.8f, 5, 5, 30, 30, 0.2f };
    int64_t labels[2] = { 1, 0 };
    md_det_result det = { 2, boxes, labels };
    char *classes[] = { "ring", "cross" };
    uint8_t c0[3], c1[3];
    md_draw_palette(0, c0);
    md_draw_palette(1, c1);
    cr_assert(memcmp(c0, c1, 3));
    md_draw_detections(img, &det, classes, 2, 0.3f, 1);
    cr_expect(is(img, 40, 50, c1), "the box corner in class 1's color");
    cr_expect_eq(count(img, c0), 0, "the 0.2 detection is under the threshold");
    cr_expect(is(img, 10, 20 - MD_FONT_H - 2, c1), "the label strip above the box");
    md_image_free(img);
}

/* Masks as show_result blends them: img * 0.5 + color * 0.5 (truncated)
 * under each mask of a detection over the threshold; an RLE (column-major
 * runs from a run of 0s) worked by hand. */
Test(draw, masks_are_blended_with_the_class_color) {
    md_error err = { 0 };
    md_image *img = md_image_new(20, 30, 3, &err);
    memset(img->data, 101, 20 * 30 * 3);
    /* mask 0: 3 zeros, 2 ones, the rest zeros -> (x 0, y 3) and (x 0, y 4) */
    uint32_t c0[] = { 3, 2, 595 }, c1[] = { 0, 600 };
    md_rle masks[2] = { { 20, 30, 3, c0 }, { 20, 30, 2, c1 } };
    float boxes[10] = { 10, 12, 14, 16, 0.9f, 0, 0, 29, 19, 0.1f };
    int64_t labels[2] = { 2, 1 };
    md_det_result det = { 2, boxes, labels, masks };
    uint8_t col[3];
    md_draw_palette(2, col);
    md_draw_detections(img, &det, NULL, 0, 0.3f, 1);
    uint8_t want[3];
    for (int k = 0; k < 3; k++) want[k] = (uint8_t)(101 * 0.5 + col[k] * 0.5);
    cr_expect(is(img, 0, 3, want) && is(img, 0, 4, want), "the two mask pixels blended");
    static const uint8_t grey[3] = { 101, 101, 101 };
    cr_expect(is(img, 0, 5, grey) && is(img, 1, 3, grey), "pixels next to the mask stay");
    cr_expect(is(img, 29, 19, grey), "the 0.1 detection's mask (every pixel) is not drawn");
    cr_expect(is(img, 14, 16, col), "the box is drawn over its mask's color");
    md_image_free(img);
}

Test(draw, line_ends_slope_thickness_and_clipping) {
    md_error err = { 0 };
    md_image *img = md_image_new(20, 30, 3, &err);
    md_draw_line(img, 2, 2, 12, 2, red, 1);            /* horizontal: 11 pixels, ends included */
    cr_expect_eq(count(img, red), 11);
    cr_expect(is(img, 2, 2, red) && is(img, 12, 2, red) && !is(img, 13, 2, red));
    memset(img->data, 0, 20 * 30 * 3);
    md_draw_line(img, 10, 10, 4, 4, red, 1);           /* diagonal, drawn backwards: 7 pixels on y = x */
    cr_expect_eq(count(img, red), 7);
    for (int k = 4; k <= 10; k++) cr_expect(is(img, k, k, red), "(%d, %d)", k, k);
    memset(img->data, 0, 20 * 30 * 3);
    md_draw_line(img, 0, 5, 6, 8, red, 1);             /* shallow: one pixel per column, y rounded */
    cr_expect_eq(count(img, red), 7);
    for (int x = 0; x <= 6; x++) {                     /* exactly one pixel within half a pixel of y = 5 + x / 2 */
        int n = 0, y_at = -1;
        for (int y = 0; y < 20; y++)
            if (is(img, x, y, red)) n++, y_at = y;
        cr_expect_eq(n, 1, "column %d", x);
        cr_expect(y_at >= 5 + x / 2.0 - 0.5 && y_at <= 5 + x / 2.0 + 0.5, "column %d: y %d", x, y_at);
    }
    memset(img->data, 0, 20 * 30 * 3);
    md_draw_line(img, 5, 5, 5, 9, red, 3);             /* vertical, 3 x 3 squares: 3 wide, 5 + 2 tall */
    cr_expect_eq(count(img, red), 21);
    cr_expect(is(img, 4, 5, red) && is(img, 6, 9, red) && is(img, 5, 10, red) && !is(img, 7, 7, red));
    cr_expect(!is(img, 5, 11, red) && !is(img, 5, 3, red));
    memset(img->data, 0, 20 * 30 * 3);
    md_draw_line(img, -10, 3, 40, 3, red, 1);          /* clipped to the 30 columns */
    cr_expect_eq(count(img, red), 30);
    md_image_free(img);
}
