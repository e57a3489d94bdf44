/* Pipeline transforms against hand-worked cases. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/data.h>

static md_ctx *ctx;

static void setup(void) {
    md_error err = { 0 };
    ctx = md_ctx_new(&err);
    cr_assert(ctx, "%s", err.msg);
    md_log_set_quiet(ctx, true);
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/datasets", &err), 0, "%s", err.msg);
}
static void teardown(void) { md_ctx_free(ctx); }

TestSuite(transforms, .init = setup, .fini = teardown);

/* Builds the transform `t = {...};` from libconfig text. */
static md_transform *tf(const char *text) {
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse(text, "inline.cfg", &err);
    cr_assert(c, "%s", err.msg);
    md_transform *t = md_build_from_cfg(ctx, "pipelines", md_cfg_get(c, "t"), NULL, &err);
    cr_assert(t, "%s", err.msg);
    md_cfg_free(c);
    return t;
}

static void apply(md_transform *t, md_sample *s, md_rng *rng) {
    md_error err = { 0 };
    cr_assert_eq(t->iface->apply(t, s, rng, &err), 0, "%s: %s", t->type, err.msg);
}

/* A sample holding an h x w x c u8 image filled from `px` (or a ramp). */
static void make_sample(md_sample *s, int h, int w, int c, const uint8_t *px) {
    md_sample_init(s);
    uint8_t *d = malloc((size_t)h * w * c);
    for (int i = 0; i < h * w * c; i++) d[i] = px ? px[i] : (uint8_t)(i * 7);
    md_sample_set_u8(s, d, h, w, c);
    int shape[3] = { h, w, c };
    memcpy(s->meta.img_shape, shape, sizeof shape);
    memcpy(s->meta.ori_shape, shape, sizeof shape);
    s->have = MD_FIELD_IMG;
}

static void add_box(md_sample *s, float x1, float y1, float x2, float y2, int64_t label) {
    if (!s->gt_bboxes.labels) md_boxes_reserve(&s->gt_bboxes, 4, true);
    md_boxes_push(&s->gt_bboxes, (float[]){ x1, y1, x2, y2 }, label);
    s->have |= MD_FIELD_GT_BBOXES | MD_FIELD_GT_LABELS;
}

static void assert_box(const md_boxes *b, int i, float x1, float y1, float x2, float y2) {
    const float *x = b->xyxy + 4 * i;
    cr_assert(fabsf(x[0] - x1) < 1e-4 && fabsf(x[1] - y1) < 1e-4 && fabsf(x[2] - x2) < 1e-4 && fabsf(x[3] - y2) < 1e-4,
              "box %d is [%g %g %g %g], expected [%g %g %g %g]", i, x[0], x[1], x[2], x[3], x1, y1, x2, y2);
}

/* ------------------------------------------------------------------ Resize */

Test(transforms, bilinear_matches_opencv_hand_worked) {
    /* OpenCV INTER_LINEAR, half-pixel centres, edges clamped:
     * [0, 100] to width 4 is [0, 25, 75, 100]; [10, 20, 30, 40] to width 2
     * is [15, 35]. */
    md_transform *t = tf("t = { type = \"Resize\"; img_scale = [4, 1]; keep_ratio = false; };");
    md_sample s;
    make_sample(&s, 1, 2, 1, (const uint8_t[]){ 0, 100 });
    apply(t, &s, NULL);
    cr_assert_eq(s.w, 4);
    const uint8_t up[4] = { 0, 25, 75, 100 };
    for (int i = 0; i < 4; i++) cr_expect_eq(s.img_u8[i], up[i], "x=%d: %d != %d", i, s.img_u8[i], up[i]);
    md_sample_clear(&s);
    t->iface->destroy(t);

    t = tf("t = { type = \"Resize\"; img_scale = [2, 1]; keep_ratio = false; };");
    make_sample(&s, 1, 4, 1, (const uint8_t[]){ 10, 20, 30, 40 });
    apply(t, &s, NULL);
    cr_assert_eq(s.w, 2);
    cr_expect_eq(s.img_u8[0], 15);
    cr_expect_eq(s.img_u8[1], 35);
    md_sample_clear(&s);
    t->iface->destroy(t);
}

/* Independent double-precision bilinear with OpenCV's sampling grid. */
static double ref_bilinear(const uint8_t *src, int sh, int sw, int c, int ch, int dy, int dx, int dh, int dw) {
    double fy = (dy + 0.5) * sh / dh - 0.5, fx = (dx + 0.5) * sw / dw - 0.5;
    if (fy < 0) fy = 0;
    if (fx < 0) fx = 0;
    int y0 = (int)floor(fy), x0 = (int)floor(fx);
    double wy = fy - y0, wx = fx - x0;
    int y1 = y0 + 1 < sh ? y0 + 1 : sh - 1, x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
    if (y0 >= sh - 1) y0 = y1 = sh - 1, wy = 0;
    if (x0 >= sw - 1) x0 = x1 = sw - 1, wx = 0;
#define P(y, x) ((double)src[((size_t)(y) * sw + (x)) * c + ch])
    return (1 - wy) * ((1 - wx) * P(y0, x0) + wx * P(y0, x1)) + wy * ((1 - wx) * P(y1, x0) + wx * P(y1, x1));
#undef P
}

Test(transforms, bilinear_within_one_of_exact_on_random_images) {
    static const int sizes[][4] = { { 7, 11, 15, 23 }, { 30, 20, 13, 9 }, { 16, 16, 24, 40 }, { 5, 9, 5, 4 } };
    md_rng rng;
    md_rng_seed(&rng, 5);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int sh = sizes[k][0], sw = sizes[k][1], dh = sizes[k][2], dw = sizes[k][3];
        uint8_t *src = malloc((size_t)sh * sw * 3);
        for (int i = 0; i < sh * sw * 3; i++) src[i] = (uint8_t)md_rng_int(&rng, 256);
        char text[200];
        snprintf(text, sizeof text, "t = { type = \"Resize\"; img_scale = [%d, %d]; keep_ratio = false; };", dw, dh);
        md_transform *t = tf(text);
        md_sample s;
        make_sample(&s, sh, sw, 3, src);
        apply(t, &s, NULL);
        cr_assert(s.h == dh && s.w == dw);
        for (int y = 0; y < dh; y++)
            for (int x = 0; x < dw; x++)
                for (int ch = 0; ch < 3; ch++) {
                    double r = ref_bilinear(src, sh, sw, 3, ch, y, x, dh, dw);
                    int got = s.img_u8[((size_t)y * dw + x) * 3 + ch];
                    cr_assert(fabs(got - r) <= 1.0, "%dx%d->%dx%d at (%d,%d,%d): %d vs %.3f", sw, sh, dw, dh, x, y,
                              ch, got, r);
                }
        md_sample_clear(&s);
        free(src);
        t->iface->destroy(t);
    }
}

Test(transforms, resize_keep_ratio_rescales_and_clips_boxes) {
    /* 20x10 into (60, 20): factor min(60/20, 20/10) = 2 -> 40x20. */
    md_transform *t = tf("t = { type = \"Resize\"; img_scale = [60, 20]; keep_ratio = true; };");
    md_sample s;
    make_sample(&s, 10, 20, 3, NULL);
    add_box(&s, 2, 1, 25, 9, 3);
    apply(t, &s, NULL);
    cr_assert_eq(s.w, 40);
    cr_assert_eq(s.h, 20);
    cr_assert_eq(s.meta.img_shape[0], 20);
    cr_assert_eq(s.meta.img_shape[1], 40);
    cr_assert_eq(s.meta.pad_shape[1], 40);
    for (int i = 0; i < 4; i++) cr_expect_float_eq(s.meta.scale_factor[i], 2.0f, 1e-6);
    assert_box(&s.gt_bboxes, 0, 4, 2, 40, 18);   /* x2 = 50 clipped to 40 */
    cr_expect_eq(s.gt_bboxes.labels[0], 3);
    md_sample_clear(&s);
    t->iface->destroy(t);

    /* mmcv's rounding: 33x17 into (1333, 800): factor min(1333/33, 800/17)
     * = 40.3939..., w = int(33 f + 0.5) = 1333, h = int(17 f + 0.5) = 687. */
    t = tf("t = { type = \"Resize\"; img_scale = [1333, 800]; keep_ratio = true; };");
    make_sample(&s, 17, 33, 3, NULL);
    apply(t, &s, NULL);
    cr_expect_eq(s.w, 1333);
    cr_expect_eq(s.h, 687);
    cr_expect_float_eq(s.meta.scale_factor[0], 1333.0f / 33, 1e-6);
    cr_expect_float_eq(s.meta.scale_factor[1], 687.0f / 17, 1e-6);
    md_sample_clear(&s);
    t->iface->destroy(t);
}

Test(transforms, resize_exact_size_without_keep_ratio) {
    md_transform *t = tf("t = { type = \"Resize\"; img_scale = [30, 40]; keep_ratio = false; };");
    md_sample s;
    make_sample(&s, 10, 20, 3, NULL);
    add_box(&s, 2, 1, 10, 5, 0);
    apply(t, &s, NULL);
    cr_assert(s.w == 30 && s.h == 40);
    cr_expect_float_eq(s.meta.scale_factor[0], 1.5f, 1e-6);
    cr_expect_float_eq(s.meta.scale_factor[1], 4.0f, 1e-6);
    assert_box(&s.gt_bboxes, 0, 3, 4, 15, 20);
    md_sample_clear(&s);
    t->iface->destroy(t);
}

Test(transforms, resize_multiscale_range_and_value) {
    /* range: long edge from [100, 100], short edge uniform over [20, 40]. */
    md_transform *t = tf("t = { type = \"Resize\"; img_scale = ([100, 20], [100, 40]); multiscale_mode = \"range\"; };");
    md_rng rng;
    md_rng_seed(&rng, 1);
    bool seen_lo = false, seen_hi = false;
    for (int i = 0; i < 300; i++) {
        md_sample s;
        make_sample(&s, 4, 4, 1, NULL);
        apply(t, &s, &rng);
        cr_assert(s.scale[0] == 100 && s.scale[1] >= 20 && s.scale[1] <= 40, "scale (%d, %d)", s.scale[0], s.scale[1]);
        seen_lo |= s.scale[1] == 20;
        seen_hi |= s.scale[1] == 40;
        md_sample_clear(&s);
    }
    cr_expect(seen_lo && seen_hi, "both ends of the range are drawn");
    t->iface->destroy(t);
    t = tf("t = { type = \"Resize\"; img_scale = ([100, 20], [100, 40]); multiscale_mode = \"value\"; };");
    int counts[2] = { 0, 0 };
    for (int i = 0; i < 200; i++) {
        md_sample s;
        make_sample(&s, 4, 4, 1, NULL);
        apply(t, &s, &rng);
        cr_assert(s.scale[1] == 20 || s.scale[1] == 40);
        counts[s.scale[1] == 40]++;
        md_sample_clear(&s);
    }
    cr_expect(counts[0] > 50 && counts[1] > 50, "value mode picks both: %d %d", counts[0], counts[1]);
    t->iface->destroy(t);
}

/* -------------------------------------------------------------- RandomFlip */

Test(transforms, flip_directions_move_pixels_and_boxes) {
    static const char *const cfgs[] = {
        "t = { type = \"RandomFlip\"; flip_ratio = 1.0; direction = \"horizontal\"; };",
        "t = { type = \"RandomFlip\"; flip_ratio = 1.0; direction = \"vertical\"; };",
        "t = { type = \"RandomFlip\"; flip_ratio = 1.0; direction = \"diagonal\"; };",
    };
    /* 2x3 image, values = 10 y + x; box [0, 0, 1, 2] in a 3 wide, 2 high image. */
    const uint8_t px[6] = { 0, 1, 2, 10, 11, 12 };
    const uint8_t want[3][6] = { { 2, 1, 0, 12, 11, 10 }, { 10, 11, 12, 0, 1, 2 }, { 12, 11, 10, 2, 1, 0 } };
    const float boxes[3][4] = { { 2, 0, 3, 2 }, { 0, 0, 1, 2 }, { 2, 0, 3, 2 } };
    md_rng rng;
    md_rng_seed(&rng, 0);
    for (int k = 0; k < 3; k++) {
        md_transform *t = tf(cfgs[k]);
        md_sample s;
        make_sample(&s, 2, 3, 1, px);
        add_box(&s, 0, 0, 1, 2, 0);
        apply(t, &s, &rng);
        cr_assert(s.meta.flip);
        cr_assert_eq(s.meta.flip_direction, (md_flip_dir)(k + 1));
        for (int i = 0; i < 6; i++) cr_expect_eq(s.img_u8[i], want[k][i], "case %d px %d", k, i);
        assert_box(&s.gt_bboxes, 0, boxes[k][0], boxes[k][1], boxes[k][2], boxes[k][3]);
        md_sample_clear(&s);
        t->iface->destroy(t);
    }
}

Test(transforms, flip_ratio_is_a_probability) {
    md_transform *t = tf("t = { type = \"RandomFlip\"; flip_ratio = 0.3; };");
    md_transform *never = tf("t = { type = \"RandomFlip\"; flip_ratio = 0.0; };");
    md_rng rng;
    md_rng_seed(&rng, 7);
    int flips = 0;
    for (int i = 0; i < 2000; i++) {
        md_sample s;
        make_sample(&s, 1, 2, 1, NULL);
        apply(t, &s, &rng);
        flips += s.meta.flip;
        md_sample_clear(&s);
        make_sample(&s, 1, 2, 1, NULL);
        apply(never, &s, &rng);
        cr_assert(!s.meta.flip);
        md_sample_clear(&s);
    }
    /* Binomial(2000, 0.3): mean 600, sd 20.5. */
    cr_expect(flips > 500 && flips < 700, "%d flips in 2000", flips);
    t->iface->destroy(t);
    never->iface->destroy(never);
}

/* --------------------------------------------------- Normalize, Pad, Bundle */

Test(transforms, normalize_swaps_to_rgb_and_goes_chw) {
    md_transform *t = tf("t = { type = \"Normalize\"; mean = [1.0, 2.0, 3.0]; std = [2.0, 4.0, 6.0]; to_rgb = true; };");
    md_sample s;
    /* Two pixels in BGR: (10, 20, 30) and (40, 50, 60). */
    make_sample(&s, 1, 2, 3, (const uint8_t[]){ 10, 20, 30, 40, 50, 60 });
    apply(t, &s, NULL);
    cr_assert_null(s.img_u8);
    cr_assert_not_null(s.img_f32);
    /* R plane first: (30 - 1) / 2, (60 - 1) / 2; then G; then B. */
    const float want[6] = { 14.5f, 29.5f, 4.5f, 12.0f, 7.0f / 6, 37.0f / 6 };
    for (int i = 0; i < 6; i++) cr_expect_float_eq(s.img_f32[i], want[i], 1e-5, "element %d: %g", i, s.img_f32[i]);
    cr_expect(s.meta.to_rgb && s.meta.mean[2] == 3.0f && s.meta.std[1] == 4.0f);
    md_sample_clear(&s);
    t->iface->destroy(t);
}

Test(transforms, image_to_tensor_goes_chw_with_values_unchanged) {
    md_transform *t = tf("t = { type = \"ImageToTensor\"; keys = [\"img\"]; };");
    md_sample s;
    make_sample(&s, 1, 2, 3, (const uint8_t[]){ 10, 20, 30, 40, 50, 60 });
    apply(t, &s, NULL);
    cr_assert_null(s.img_u8);
    const float want[6] = { 10, 40, 20, 50, 30, 60 };   /* channel planes, BGR order kept */
    for (int i = 0; i < 6; i++) cr_expect_float_eq(s.img_f32[i], want[i], 0, "element %d", i);
    apply(t, &s, NULL);   /* already a tensor: unchanged */
    for (int i = 0; i < 6; i++) cr_expect_float_eq(s.img_f32[i], want[i], 0, "element %d", i);
    md_sample_clear(&s);
    t->iface->destroy(t);
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse("t = { type = \"ImageToTensor\"; keys = [\"gt_bboxes\"]; };", "t.cfg", &err);
    cr_assert_null(md_build_from_cfg(ctx, "pipelines", md_cfg_get(c, "t"), NULL, &err));
    cr_assert(strstr(err.msg, "only the key"), "%s", err.msg);
    md_cfg_free(c);
}

Test(transforms, pad_to_divisor_and_to_size) {
    md_transform *t = tf("t = { type = \"Pad\"; size_divisor = 32; };");
    md_sample s;
    make_sample(&s, 20, 40, 3, NULL);
    apply(t, &s, NULL);
    cr_assert(s.h == 32 && s.w == 64);
    cr_assert(s.meta.pad_shape[0] == 32 && s.meta.pad_shape[1] == 64 && s.meta.pad_shape[2] == 3);
    cr_assert(s.meta.img_shape[0] == 20 && s.meta.img_shape[1] == 40, "img_shape unchanged");
    cr_expect_eq(s.img_u8[(19 * 64 + 39) * 3], (uint8_t)((19 * 40 + 39) * 3 * 7), "content kept");
    cr_expect_eq(s.img_u8[(19 * 64 + 40) * 3], 0, "right padding is 0");
    cr_expect_eq(s.img_u8[(25 * 64 + 3) * 3 + 1], 0, "bottom padding is 0");
    md_sample_clear(&s);
    t->iface->destroy(t);

    t = tf("t = { type = \"Pad\"; size = [3, 4]; pad_val = 7; };");
    make_sample(&s, 2, 2, 1, (const uint8_t[]){ 1, 2, 3, 4 });
    apply(t, &s, NULL);
    const uint8_t want[12] = { 1, 2, 7, 7, 3, 4, 7, 7, 7, 7, 7, 7 };
    cr_assert(s.h == 3 && s.w == 4);
    for (int i = 0; i < 12; i++) cr_expect_eq(s.img_u8[i], want[i], "px %d", i);
    md_sample_clear(&s);
    t->iface->destroy(t);
}

Test(transforms, pad_after_normalize_pads_float_planes) {
    md_transform *n = tf("t = { type = \"Normalize\"; mean = [0.0, 0.0, 0.0]; std = [1.0, 1.0, 1.0]; to_rgb = false; };");
    md_transform *p = tf("t = { type = \"Pad\"; size_divisor = 4; };");
    md_sample s;
    make_sample(&s, 1, 2, 3, (const uint8_t[]){ 1, 2, 3, 4, 5, 6 });
    apply(n, &s, NULL);
    apply(p, &s, NULL);
    cr_assert(s.h == 4 && s.w == 4);
    /* plane 1 (G): row 0 = 2, 5, 0, 0 */
    cr_expect_float_eq(s.img_f32[16 + 0], 2.0f, 0);
    cr_expect_float_eq(s.img_f32[16 + 1], 5.0f, 0);
    cr_expect_float_eq(s.img_f32[16 + 2], 0.0f, 0);
    cr_expect_float_eq(s.img_f32[16 + 4], 0.0f, 0);
    md_sample_clear(&s);
    n->iface->destroy(n);
    p->iface->destroy(p);
}

Test(transforms, format_bundle_and_collect) {
    md_transform *b = tf("t = { type = \"DefaultFormatBundle\"; };");
    md_transform *c = tf("t = { type = \"Collect\"; keys = [\"img\", \"gt_bboxes\", \"gt_labels\"]; };");
    md_sample s;
    make_sample(&s, 2, 3, 3, NULL);
    add_box(&s, 0, 0, 1, 1, 2);
    md_boxes_push(&s.gt_bboxes_ignore, (float[]){ 0, 0, 2, 2 }, 0);
    apply(b, &s, NULL);
    cr_assert_not_null(s.img_f32);
    cr_expect_float_eq(s.img_f32[1], (float)(3 * 7), 0, "CHW: plane 0, pixel 1 = HWC index 3");
    cr_expect(s.meta.pad_shape[0] == 2 && s.meta.pad_shape[1] == 3, "default pad_shape");
    cr_expect(s.meta.std[0] == 1.0f && s.meta.mean[0] == 0.0f && !s.meta.to_rgb, "default img_norm_cfg");
    apply(c, &s, NULL);
    cr_expect_eq(s.collected, MD_FIELD_IMG | MD_FIELD_GT_BBOXES | MD_FIELD_GT_LABELS);
    cr_expect_eq(s.gt_bboxes_ignore.n, 0, "ignored boxes not collected");
    cr_expect_eq(s.gt_bboxes.labels[0], 2);
    md_sample_clear(&s);

    md_transform *c2 = tf("t = { type = \"Collect\"; keys = [\"img\", \"gt_bboxes\"]; meta_keys = [\"filename\", \"flip\"]; };");
    make_sample(&s, 2, 3, 3, NULL);
    s.have = MD_FIELD_IMG;
    md_error err = { 0 };
    cr_assert_eq(c2->iface->apply(c2, &s, NULL, &err), -1);
    cr_expect(strstr(err.msg, "gt_bboxes"), "%s", err.msg);
    md_sample_clear(&s);
    b->iface->destroy(b);
    c->iface->destroy(c);
    c2->iface->destroy(c2);
}

Test(transforms, bad_configs_are_reported) {
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse("a = { type = \"Collect\"; keys = [\"img\", \"gt_semantic_seg\"]; };\n"
                             "b = { type = \"Resize\"; img_scale = [1333, 800]; multiscale_mode = \"ranges\"; };\n"
                             "d = { type = \"Pad\"; };\n"
                             "e = { type = \"RandomFlip\"; flip_ratio = 1.5; };\n",
                             "bad.cfg", &err);
    cr_assert(c, "%s", err.msg);
    const char *keys[] = { "a", "b", "d", "e" };
    const char *want[] = { "gt_semantic_seg", "multiscale_mode", "size_divisor", "flip_ratio" };
    for (int i = 0; i < 4; i++) {
        md_error_clear(&err);
        cr_assert_null(md_build_from_cfg(ctx, "pipelines", md_cfg_get(c, keys[i]), NULL, &err));
        cr_expect(strstr(err.msg, want[i]), "case %s: %s", keys[i], err.msg);
    }
    md_cfg_free(c);
}

Test(transforms, multiscale_flip_aug_makes_scales_times_flips) {
    md_transform *t = tf("t = { type = \"MultiScaleFlipAug\"; img_scale = ([40, 20], [80, 40]); flip = true;\n"
                         "  transforms = ( { type = \"Resize\"; keep_ratio = true; }, { type = \"RandomFlip\"; },\n"
                         "                 { type = \"Normalize\"; mean = [0.0, 0.0, 0.0]; std = [1.0, 1.0, 1.0]; },\n"
                         "                 { type = \"Pad\"; size_divisor = 32; },\n"
                         "                 { type = \"Collect\"; keys = [\"img\"]; } ); };");
    md_sample s;
    make_sample(&s, 10, 20, 3, NULL);
    apply(t, &s, NULL);
    cr_assert_eq(s.n_augs, 4);
    const int widths[4] = { 40, 40, 80, 80 };
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(s.augs[i].meta.img_shape[1], widths[i], "aug %d", i);
        cr_expect_eq(s.augs[i].meta.flip, i % 2 == 1, "aug %d", i);
        cr_expect_eq(s.augs[i].meta.pad_shape[0], i < 2 ? 32 : 64, "aug %d: 20 or 40 high, padded to 32s", i);
        cr_expect_not_null(s.augs[i].img_f32);
    }
    md_sample_clear(&s);
    t->iface->destroy(t);
}
