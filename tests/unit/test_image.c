/* Image codecs: PNG round trips exactly, JPEG round trips within codec
 * error, corrupt or truncated files fail with the file's name. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/image.h>
#include "testlib.h"

static char dir[64];
static void setup(void) {
    test_tmpdir(dir, sizeof dir, "md_test_image");
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(image, .init = setup, .fini = teardown);

/* A smooth gradient with a sharp square: JPEG-friendly yet not trivial. */
static md_image *pattern(int h, int w, int c) {
    md_image *img = md_image_new(h, w, c, NULL);
    cr_assert(img);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) {
                int v = x * 120 / w + y * 60 / h + k * 30;   /* < 256 */
                if (x > w / 4 && x < w / 2 && y > h / 4 && y < h / 2) v = k == 0 ? 230 : 20;
                img->data[((size_t)y * w + x) * c + k] = (uint8_t)v;
            }
    return img;
}

static void path(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", dir, name); }

Test(image, png_round_trip_exact) {
    for (int c = 1; c <= 4; c++) {
        if (c == 2) continue;
        md_image *img = pattern(37, 53, c);
        char p[128];
        path(p, sizeof p, "a.png");
        md_error err = {0};
        cr_assert_eq(md_image_write_png(img, p, &err), 0, "%s", err.msg);
        md_image *back = md_image_read_as(p, MD_IMAGE_UNCHANGED, &err);
        cr_assert(back, "%s", err.msg);
        cr_assert_eq(back->h, 37);
        cr_assert_eq(back->w, 53);
        cr_assert_eq(back->c, c);
        cr_assert_eq(memcmp(back->data, img->data, (size_t)37 * 53 * c), 0);
        int w, h;
        cr_assert_eq(md_image_read_size(p, &w, &h, &err), 0);
        cr_assert_eq(w, 53);
        cr_assert_eq(h, 37);
        md_image_free(back);
        md_image_free(img);
    }
}

Test(image, png_channel_conversions) {
    md_image *img = pattern(8, 9, 4);
    char p[128];
    path(p, sizeof p, "rgba.png");
    cr_assert_eq(md_image_write_png(img, p, NULL), 0);
    md_image *rgb = md_image_read(p, NULL);
    md_image *bgr = md_image_read_as(p, MD_IMAGE_BGR, NULL);
    cr_assert(rgb && bgr);
    cr_assert_eq(rgb->c, 3);
    for (int i = 0; i < 8 * 9; i++)
        for (int k = 0; k < 3; k++) {
            cr_assert_eq(rgb->data[3 * i + k], img->data[4 * i + k]);   /* alpha dropped */
            cr_assert_eq(bgr->data[3 * i + k], img->data[4 * i + 2 - k]);
        }
    md_image *g = pattern(8, 9, 1);
    cr_assert_eq(md_image_write_png(g, p, NULL), 0);
    md_image *g3 = md_image_read(p, NULL);
    cr_assert(g3);
    for (int i = 0; i < 8 * 9; i++)
        for (int k = 0; k < 3; k++) cr_assert_eq(g3->data[3 * i + k], g->data[i]);
    md_image_free(g3); md_image_free(g); md_image_free(rgb); md_image_free(bgr); md_image_free(img);
}

Test(image, jpeg_round_trip_close) {
    md_image *img = pattern(64, 80, 3);
    char p[128];
    path(p, sizeof p, "a.jpg");
    md_error err = {0};
    cr_assert_eq(md_image_write_jpeg(img, p, 95, &err), 0, "%s", err.msg);
    md_image *back = md_image_read(p, &err);
    cr_assert(back, "%s", err.msg);
    cr_assert_eq(back->h, 64);
    cr_assert_eq(back->w, 80);
    cr_assert_eq(back->c, 3);
    double se = 0;
    size_t n = (size_t)64 * 80 * 3;
    for (size_t i = 0; i < n; i++) se += (back->data[i] - img->data[i]) * (double)(back->data[i] - img->data[i]);
    /* 4:2:0 chroma subsampling smears the red square's edges; away from
     * edges pixels come back within a few levels. */
    cr_assert_lt(se / n, 60.0, "JPEG q95 mean squared error %g", se / n);
    const uint8_t *mid = back->data + ((size_t)24 * 80 + 30) * 3;
    cr_assert(abs(mid[0] - 230) <= 6 && abs(mid[1] - 20) <= 6 && abs(mid[2] - 20) <= 6, "%d %d %d", mid[0], mid[1], mid[2]);
    const uint8_t *o = img->data + ((size_t)56 * 80 + 70) * 3, *b = back->data + ((size_t)56 * 80 + 70) * 3;
    for (int k = 0; k < 3; k++) cr_assert_leq(abs(o[k] - b[k]), 4, "channel %d: %d vs %d", k, o[k], b[k]);
    md_image *bgr = md_image_read_as(p, MD_IMAGE_BGR, &err);
    cr_assert(bgr);
    for (size_t i = 0; i < (size_t)64 * 80; i++) {
        cr_assert_eq(bgr->data[3 * i], back->data[3 * i + 2]);
        cr_assert_eq(bgr->data[3 * i + 2], back->data[3 * i]);
    }
    /* Same input, same bytes. */
    uint8_t *b1, *b2;
    size_t n1, n2;
    cr_assert_eq(md_image_encode_jpeg(img, 90, &b1, &n1, NULL), 0);
    cr_assert_eq(md_image_encode_jpeg(img, 90, &b2, &n2, NULL), 0);
    cr_assert_eq(n1, n2);
    cr_assert_eq(memcmp(b1, b2, n1), 0);
    cr_assert_eq(md_image_sniff(b1, n1), MD_IMAGE_JPEG);
    free(b1); free(b2);
    md_image_free(bgr); md_image_free(back); md_image_free(img);
}

Test(image, jpeg_gray) {
    md_image *img = pattern(16, 24, 1);
    uint8_t *b;
    size_t n;
    cr_assert_eq(md_image_encode_jpeg(img, 100, &b, &n, NULL), 0);
    md_image *g = md_image_decode(b, n, MD_IMAGE_UNCHANGED, "g.jpg", NULL);
    md_image *c3 = md_image_decode(b, n, MD_IMAGE_RGB, "g.jpg", NULL);
    cr_assert(g && c3);
    cr_assert_eq(g->c, 1);
    cr_assert_eq(c3->c, 3);
    for (int i = 0; i < 16 * 24; i++) cr_assert_eq(c3->data[3 * i + 1], g->data[i]);
    free(b);
    md_image_free(g); md_image_free(c3); md_image_free(img);
}

static void write_bytes(const char *p, const void *b, size_t n) {
    FILE *f = fopen(p, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

Test(image, missing_and_unknown_files_name_the_file) {
    char p[128];
    path(p, sizeof p, "nope.jpg");
    md_error err = {0};
    cr_assert_null(md_image_read(p, &err));
    cr_assert_eq(err.code, MD_ERR_IO);
    cr_assert(strstr(err.msg, p), "%s", err.msg);
    path(p, sizeof p, "text.jpg");
    write_bytes(p, "hello, not an image", 19);
    md_error_clear(&err);
    cr_assert_null(md_image_read(p, &err));
    cr_assert_eq(err.code, MD_ERR_PARSE);
    cr_assert(strstr(err.msg, p) && strstr(err.msg, "not a JPEG or PNG"), "%s", err.msg);
}

Test(image, truncated_jpeg_is_an_error) {
    md_image *img = pattern(64, 64, 3);
    uint8_t *b;
    size_t n;
    cr_assert_eq(md_image_encode_jpeg(img, 90, &b, &n, NULL), 0);
    char p[128];
    path(p, sizeof p, "trunc.jpg");
    size_t cuts[] = {n / 2, n - 3, 200};
    for (int i = 0; i < 3; i++) {
        write_bytes(p, b, cuts[i]);
        md_error err = {0};
        cr_assert_null(md_image_read(p, &err), "cut at %zu decoded", cuts[i]);
        cr_assert_eq(err.code, MD_ERR_PARSE);
        cr_assert(strstr(err.msg, p), "%s", err.msg);
    }
    /* Header only: fails inside libjpeg's own checks. */
    write_bytes(p, b, 4);
    md_error err = {0};
    cr_assert_null(md_image_read(p, &err));
    cr_assert(strstr(err.msg, "corrupt JPEG"), "%s", err.msg);
    free(b);
    md_image_free(img);
}

Test(image, corrupt_png_is_an_error) {
    md_image *img = pattern(32, 32, 3);
    uint8_t *b;
    size_t n;
    cr_assert_eq(md_image_encode_png(img, &b, &n, NULL), 0);
    char p[128];
    path(p, sizeof p, "bad.png");
    write_bytes(p, b, n / 2);                 /* truncated */
    md_error err = {0};
    cr_assert_null(md_image_read(p, &err));
    cr_assert(strstr(err.msg, p) && strstr(err.msg, "PNG"), "%s", err.msg);
    b[40] ^= 0x55;                            /* CRC or zlib damage in the data */
    b[41] ^= 0x55;
    write_bytes(p, b, n);
    md_error_clear(&err);
    cr_assert_null(md_image_read(p, &err));
    cr_assert(strstr(err.msg, p), "%s", err.msg);
    free(b);
    md_image_free(img);
}

Test(image, bad_shapes_rejected) {
    md_error err = {0};
    cr_assert_null(md_image_new(0, 5, 3, &err));
    cr_assert_eq(err.code, MD_ERR_SHAPE);
    md_image im = {.h = 4, .w = 4, .c = 2, .data = (uint8_t[32]){0}};
    uint8_t *b;
    size_t n;
    cr_assert_eq(md_image_encode_jpeg(&im, 90, &b, &n, &err), -1);
    cr_assert_eq(md_image_encode_png(&im, &b, &n, &err), -1);
}
