/* JPEG EXIF Orientation applied as OpenCV's imdecode(IMREAD_COLOR) does,
 * against arrays rotated and flipped in numpy by tests/golden/exif_golden.py
 * (tests/fixtures/exif: orient_<k>.jpg and expected_<k>.png). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <mmdet/mmdet.h>
#include <mmdet/image.h>

#define DIR "tests/fixtures/exif/"

static int max_diff(const md_image *a, const md_image *b, int swap_rb) {
    int m = 0;
    for (int y = 0; y < a->h; y++)
        for (int x = 0; x < a->w; x++)
            for (int c = 0; c < 3; c++) {
                int ca = swap_rb ? 2 - c : c;
                int d = abs((int)a->data[((size_t)y * a->w + x) * 3 + ca] - (int)b->data[((size_t)y * b->w + x) * 3 + c]);
                if (d > m) m = d;
            }
    return m;
}

static md_image *read(const char *name, md_image_flags f) {
    char path[256];
    md_error err = { 0 };
    snprintf(path, sizeof path, DIR "%s", name);
    md_image *img = md_image_read_as(path, f, &err);
    cr_assert(img, "%s", err.msg);
    return img;
}

Test(image_exif, orientations_1_to_8_match_numpy) {
    for (int k = 1; k <= 8; k++) {
        char jpg[64], png[64];
        snprintf(jpg, sizeof jpg, "orient_%d.jpg", k);
        snprintf(png, sizeof png, "expected_%d.png", k);
        md_image *got = read(jpg, MD_IMAGE_RGB), *want = read(png, MD_IMAGE_RGB);
        cr_assert_eq(got->h, want->h, "orientation %d: height %d, want %d", k, got->h, want->h);
        cr_assert_eq(got->w, want->w, "orientation %d: width %d, want %d", k, got->w, want->w);
        cr_expect_leq(max_diff(got, want, 0), 2, "orientation %d", k);
        md_image_free(got);
        /* BGR is the same picture with the channels swapped */
        got = read(jpg, MD_IMAGE_BGR);
        cr_expect_leq(max_diff(got, want, 1), 2, "orientation %d (BGR)", k);
        md_image_free(got);
        md_image_free(want);
    }
}

Test(image_exif, ignore_orientation_and_unchanged_keep_the_stored_layout) {
    md_image *stored = read("expected_1.png", MD_IMAGE_RGB);
    for (int k = 2; k <= 8; k++) {
        char jpg[64];
        snprintf(jpg, sizeof jpg, "orient_%d.jpg", k);
        md_image *a = read(jpg, (md_image_flags)(MD_IMAGE_RGB | MD_IMAGE_IGNORE_ORIENTATION));
        cr_assert_eq(a->h, 32);
        cr_assert_eq(a->w, 48);
        cr_expect_leq(max_diff(a, stored, 0), 2, "orientation %d ignored", k);
        md_image_free(a);
        md_image *u = read(jpg, MD_IMAGE_UNCHANGED);
        cr_expect(u->h == 32 && u->w == 48 && u->c == 3, "UNCHANGED %d: %dx%d", k, u->h, u->w);
        md_image_free(u);
        md_image *g = read(jpg, MD_IMAGE_GRAY);   /* grayscale reads are oriented too */
        cr_expect_eq(g->h, k >= 5 ? 48 : 32, "GRAY %d", k);
        md_image_free(g);
    }
    md_image_free(stored);
}

Test(image_exif, big_endian_tiff_header) {
    md_image *got = read("orient_8_be.jpg", MD_IMAGE_RGB), *want = read("expected_8.png", MD_IMAGE_RGB);
    cr_assert(got->h == want->h && got->w == want->w);
    cr_expect_leq(max_diff(got, want, 0), 2);
    md_image_free(got);
    md_image_free(want);
}

Test(image_exif, a_damaged_exif_segment_is_ignored) {
    /* orientation 6 with the IFD offset pointing past the segment: read as stored */
    FILE *f = fopen(DIR "orient_6.jpg", "rb");
    cr_assert(f);
    uint8_t buf[16384];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    /* SOI, APP1 marker and length, "Exif\0\0", "II", 42, then the IFD offset at byte 16 */
    cr_assert(buf[2] == 0xFF && buf[3] == 0xE1 && buf[10] == 0 && buf[12] == 'I');
    buf[16] = 0xF0;
    md_error err = { 0 };
    md_image *img = md_image_decode(buf, n, MD_IMAGE_RGB, "damaged", &err);
    cr_assert(img, "%s", err.msg);
    cr_expect(img->h == 32 && img->w == 48);
    md_image_free(img);
}
