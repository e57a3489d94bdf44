/* PhotoMetricDistortion, RandomCrop, FilterAnnotations, RandomAffine,
 * Mosaic, MixUp and MultiImageMixDataset on hand-worked cases. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
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

TestSuite(aug, .init = setup, .fini = teardown);

static md_transform *make(const char *text) {
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse(text, "inline.cfg", &err);
    cr_assert(c, "%s", err.msg);
    md_transform *t = md_build_from_cfg(ctx, "pipelines", md_cfg_get(c, "t"), NULL, &err);
    md_cfg_free(c);
    cr_assert(t, "%s", err.msg);
    return t;
}

/* A w x h sample whose pixel (x, y) is (y * 16 + x, 7, 9) unless `fill`. */
static void sample(md_sample *s, int w, int h, int fill, const float *boxes, int n) {
    md_sample_init(s);
    uint8_t *d = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = d + 3 * (y * w + x);
            p[0] = fill >= 0 ? (uint8_t)fill : (uint8_t)(y * 16 + x);
            p[1] = fill >= 0 ? (uint8_t)fill : 7;
            p[2] = fill >= 0 ? (uint8_t)fill : 9;
        }
    md_sample_set_u8(s, d, h, w, 3);
    md_boxes_reserve(&s->gt_bboxes, n > 0 ? n : 1, true);
    md_boxes_reserve(&s->gt_bboxes_ignore, 1, false);
    for (int i = 0; i < n; i++) md_boxes_push(&s->gt_bboxes, boxes + 4 * i, i + 1);
    s->have = MD_FIELD_IMG | MD_FIELD_GT_BBOXES | MD_FIELD_GT_LABELS | MD_FIELD_GT_BBOXES_IGNORE;
}

static void assert_box(const md_boxes *b, int i, float x1, float y1, float x2, float y2) {
    const float *x = b->xyxy + 4 * i;
    cr_assert(fabsf(x[0] - x1) < 1e-4 && fabsf(x[1] - y1) < 1e-4 && fabsf(x[2] - x2) < 1e-4 && fabsf(x[3] - y2) < 1e-4,
              "box %d: (%g %g %g %g), expected (%g %g %g %g)", i, x[0], x[1], x[2], x[3], x1, y1, x2, y2);
}

/* crop_size (h 4, w 6) of a 10 x 8 image: the offset read back from the
 * pixels; box (2, 1, 9, 7) becomes (2 - ox, 1 - oy, 9 - ox, 7 - oy) clipped
 * to 6 x 4; a box left of the crop is dropped with its label. */
Test(aug, random_crop_absolute) {
    md_transform *t = make("t = { type = \"RandomCrop\"; crop_size = [4, 6]; };");
    for (int seed = 0; seed < 20; seed++) {
        float b[] = { 2, 1, 9, 7, 0, 0, 0.5f, 8 };
        md_sample s;
        sample(&s, 10, 8, -1, b, 2);
        md_rng r;
        md_rng_seed(&r, (uint64_t)seed);
        md_error err = { 0 };
        cr_assert_eq(t->iface->apply(t, &s, &r, &err), 0, "%s", err.msg);
        cr_assert_eq(s.w, 6);
        cr_assert_eq(s.h, 4);
        cr_assert_eq(s.meta.img_shape[1], 6);
        int ox = s.img_u8[0] % 16, oy = s.img_u8[0] / 16;
        cr_assert(ox <= 4 && oy <= 4);
        cr_assert_eq(s.img_u8[3 * (2 * 6 + 5)], (oy + 2) * 16 + ox + 5);
        float e[4] = { 2.f - ox, 1.f - oy, 9.f - ox, 7.f - oy };
        for (int k = 0; k < 4; k++) e[k] = fminf(fmaxf(e[k], 0), k % 2 ? 4 : 6);
        bool second = ox == 0;   /* (0, 0, 0.5, 8) keeps area only at offset 0 */
        cr_assert_eq(s.gt_bboxes.n, 1 + second, "seed %d ox %d", seed, ox);
        assert_box(&s.gt_bboxes, 0, e[0], e[1], e[2], e[3]);
        cr_assert_eq(s.gt_bboxes.labels[0], 1);
        md_sample_clear(&s);
    }
    md_transform *rel = make("t = { type = \"RandomCrop\"; crop_size = [0.5, 0.5]; crop_type = \"relative\"; };");
    md_sample s;
    float b[] = { 0, 0, 10, 8 };
    sample(&s, 10, 8, -1, b, 1);
    md_rng r;
    md_rng_seed(&r, 1);
    cr_assert_eq(rel->iface->apply(rel, &s, &r, NULL), 0);
    cr_assert_eq(s.w, 5);   /* int(10 * 0.5 + 0.5) */
    cr_assert_eq(s.h, 4);
    md_sample_clear(&s);
    rel->iface->destroy(rel);
    t->iface->destroy(t);
}

/* A crop without GT area drops the sample unless allow_negative_crop. */
Test(aug, random_crop_negative) {
    md_transform *t = make("t = { type = \"RandomCrop\"; crop_size = [8, 10]; };");
    md_transform *a = make("t = { type = \"RandomCrop\"; crop_size = [8, 10]; allow_negative_crop = true; };");
    float b[] = { 20, 20, 30, 30 };
    md_sample s;
    md_rng r;
    md_rng_seed(&r, 1);
    sample(&s, 10, 8, -1, b, 1);
    cr_assert_eq(t->iface->apply(t, &s, &r, NULL), 1);
    md_sample_clear(&s);
    sample(&s, 10, 8, -1, b, 1);
    cr_assert_eq(a->iface->apply(a, &s, &r, NULL), 0);
    cr_assert_eq(s.gt_bboxes.n, 0);
    md_sample_clear(&s);
    t->iface->destroy(t);
    a->iface->destroy(a);
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse("t = { type = \"RandomCrop\"; crop_size = [1.5, 0.5]; crop_type = \"relative\"; };",
                             "x.cfg", &err);
    cr_assert_null(md_build_from_cfg(ctx, "pipelines", md_cfg_get(c, "t"), NULL, &err));
    cr_assert(strstr(err.msg, "(0, 1]"), "%s", err.msg);
    md_cfg_free(c);
}

/* Width and height must exceed min_gt_bbox_wh strictly. */
Test(aug, filter_annotations) {
    md_transform *t = make("t = { type = \"FilterAnnotations\"; min_gt_bbox_wh = [1.0, 1.0]; };");
    float b[] = { 0, 0, 2, 2, 0, 0, 1, 5, 3, 3, 3.5f, 3.5f, 1, 1, 4, 2.5f };
    md_sample s;
    sample(&s, 10, 8, 0, b, 4);
    cr_assert_eq(t->iface->apply(t, &s, NULL, NULL), 0);
    cr_assert_eq(s.gt_bboxes.n, 2);
    assert_box(&s.gt_bboxes, 1, 1, 1, 4, 2.5f);
    cr_assert_eq(s.gt_bboxes.labels[0], 1);
    cr_assert_eq(s.gt_bboxes.labels[1], 4);
    md_sample_clear(&s);
    sample(&s, 10, 8, 0, b + 4, 1);
    cr_assert_eq(t->iface->apply(t, &s, NULL, NULL), 1);   /* keep_empty: dropped */
    md_sample_clear(&s);
    t->iface->destroy(t);
}

/* Neutral ranges except saturation 0: each pixel is either a permutation
 * of the input (saturation not drawn) or gray at max(b, g, r). */
Test(aug, photometric_saturation_and_permutation) {
    md_transform *t = make("t = { type = \"PhotoMetricDistortion\"; brightness_delta = 0; contrast_range = [1, 1];"
                           " saturation_range = [0, 0]; hue_delta = 0; };");
    int gray = 0, kept = 0;
    for (int seed = 0; seed < 32; seed++) {
        md_sample s;
        sample(&s, 5, 3, -1, NULL, 0);
        md_rng r;
        md_rng_seed(&r, (uint64_t)seed);
        cr_assert_eq(t->iface->apply(t, &s, &r, NULL), 0);
        int p0[3] = { s.img_u8[0], s.img_u8[1], s.img_u8[2] };
        bool is_gray = p0[0] == p0[1] && p0[1] == p0[2];
        for (int i = 0; i < 15; i++) {
            int x = i % 5, y = i / 5, in[3] = { y * 16 + x, 7, 9 }, *o = (int[3]){ s.img_u8[3 * i], s.img_u8[3 * i + 1],
                                                                                    s.img_u8[3 * i + 2] };
            int mx = in[0] > 9 ? in[0] : 9;
            if (is_gray) {
                cr_assert(o[0] == mx && o[1] == mx && o[2] == mx, "seed %d pixel %d", seed, i);
            } else {
                int sum = o[0] + o[1] + o[2], prod = o[0] * o[1] * o[2];
                cr_assert(sum == in[0] + 16 && prod == in[0] * 63, "seed %d pixel %d: %d %d %d", seed, i, o[0], o[1],
                          o[2]);
            }
        }
        gray += is_gray, kept += !is_gray;
        md_sample_clear(&s);
    }
    cr_assert(gray > 0 && kept > 0, "gray %d kept %d", gray, kept);
    t->iface->destroy(t);
}

/* Brightness only, on a gray image: one delta in [-32, 32] for every
 * pixel, clamped at 255. */
Test(aug, photometric_brightness) {
    md_transform *t = make("t = { type = \"PhotoMetricDistortion\"; contrast_range = [1, 1];"
                           " saturation_range = [1, 1]; hue_delta = 0; };");
    for (int seed = 0; seed < 16; seed++) {
        md_sample s;
        sample(&s, 2, 1, 100, NULL, 0);
        memset(s.img_u8 + 3, 250, 3);
        md_rng r;
        md_rng_seed(&r, (uint64_t)seed);
        cr_assert_eq(t->iface->apply(t, &s, &r, NULL), 0);
        int d = s.img_u8[0] - 100;
        cr_assert(d >= -32 && d <= 32);
        int want = 250 + d > 255 ? 255 : 250 + d;
        cr_assert(abs(s.img_u8[3] - want) <= 1, "seed %d: %d vs %d", seed, s.img_u8[3], want);
        md_sample_clear(&s);
    }
    t->iface->destroy(t);
}

/* Pure scaling by 2: out(x, y) = in(x / 2, y / 2), bilinear; boxes doubled,
 * a box pushed outside the image dropped. */
Test(aug, random_affine_scaling) {
    md_transform *t = make("t = { type = \"RandomAffine\"; max_rotate_degree = 0; max_translate_ratio = 0;"
                           " scaling_ratio_range = [2, 2]; max_shear_degree = 0; };");
    float b[] = { 1, 1, 3, 2, 6, 6, 9, 8 };
    md_sample s;
    sample(&s, 10, 8, -1, b, 2);
    md_rng r;
    md_rng_seed(&r, 5);
    cr_assert_eq(t->iface->apply(t, &s, &r, NULL), 0);
    cr_assert_eq(s.w, 10);
    cr_assert_eq(s.h, 8);
    cr_assert_eq(s.gt_bboxes.n, 1);
    assert_box(&s.gt_bboxes, 0, 2, 2, 6, 4);
    cr_assert_eq(s.img_u8[3 * (2 * 10 + 2)], 1 * 16 + 1);
    cr_assert_eq(s.img_u8[3 * (2 * 10 + 3)], 1 * 16 + 2);   /* (17 + 18) / 2 = 17.5 -> 18 */
    cr_assert_eq(s.img_u8[3 * (3 * 10 + 2)], 25);           /* (17 + 33) / 2 */
    md_sample_clear(&s);
    t->iface->destroy(t);
    /* border (-2, -3): the output is 4 rows and 6 columns smaller */
    t = make("t = { type = \"RandomAffine\"; border = [-2, -3]; border_val = [1, 2, 3]; };");
    sample(&s, 10, 8, -1, b, 2);
    cr_assert_eq(t->iface->apply(t, &s, &r, NULL), 0);
    cr_assert_eq(s.w, 4);
    cr_assert_eq(s.h, 4);
    md_sample_clear(&s);
    t->iface->destroy(t);
}

/* Four 4 x 4 images around centre (4, 4) of an 8 x 8 canvas; the top-right
 * one is 8 x 2, so it is halved to 4 x 1 and pasted at rows 3..4. */
Test(aug, mosaic) {
    md_transform *t = make("t = { type = \"Mosaic\"; img_scale = [4, 4]; center_ratio_range = [1, 1]; pad_val = 5.0; };");
    const md_transform_iface *m = t->iface;
    cr_assert(m->get_indexes && m->apply_mix, "Mosaic is a multi-image transform");
    float b[] = { 0, 0, 2, 2 }, bw[] = { 0, 0, 4, 2 };
    md_sample s, mix[3];
    sample(&s, 4, 4, 10, b, 1);
    sample(&mix[0], 8, 2, 20, bw, 1);
    sample(&mix[1], 4, 4, 30, b, 1);
    sample(&mix[2], 4, 4, 40, b, 1);
    md_rng r;
    md_rng_seed(&r, 2);
    md_error err = { 0 };
    cr_assert_eq(m->apply_mix(t, &s, mix, 3, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(s.w, 8);
    cr_assert_eq(s.h, 8);
    int at[][3] = { { 0, 0, 10 }, { 3, 3, 10 }, { 5, 3, 20 }, { 5, 2, 5 }, { 1, 5, 30 }, { 6, 6, 40 } };
    for (int i = 0; i < 6; i++)
        cr_assert_eq(s.img_u8[3 * (at[i][1] * 8 + at[i][0])], at[i][2], "pixel (%d, %d)", at[i][0], at[i][1]);
    cr_assert_eq(s.gt_bboxes.n, 4);
    assert_box(&s.gt_bboxes, 0, 0, 0, 2, 2);
    assert_box(&s.gt_bboxes, 1, 4, 3, 6, 4);
    assert_box(&s.gt_bboxes, 2, 0, 4, 2, 6);
    assert_box(&s.gt_bboxes, 3, 4, 4, 6, 6);
    md_sample_clear(&s);
    for (int i = 0; i < 3; i++) md_sample_clear(&mix[i]);
    /* outside MultiImageMixDataset it refuses */
    sample(&s, 4, 4, 10, b, 1);
    cr_assert_eq(t->iface->apply(t, &s, &r, &err), -1);
    cr_assert(strstr(err.msg, "MultiImageMixDataset"), "%s", err.msg);
    md_sample_clear(&s);
    t->iface->destroy(t);
}

/* Same-size images, no jitter: the blend is (100 + 200) / 2 and the other
 * box is appended; flip_ratio 0 flips it (a draw > 0), 1 never does. */
Test(aug, mixup) {
    for (int flip = 0; flip < 2; flip++) {
        md_transform *t = make(flip ? "t = { type = \"MixUp\"; img_scale = [4, 4]; ratio_range = [1, 1]; flip_ratio = 0.0; };"
                                    : "t = { type = \"MixUp\"; img_scale = [4, 4]; ratio_range = [1, 1]; flip_ratio = 1.0; };");
        const md_transform_iface *m = t->iface;
        cr_assert(m->get_indexes && m->apply_mix, "MixUp is a multi-image transform");
        float b0[] = { 1, 1, 3, 3 }, b1[] = { 0, 0, 1, 2 };
        md_sample s, o;
        sample(&s, 4, 4, 100, b0, 1);
        sample(&o, 4, 4, 200, b1, 1);
        o.gt_bboxes.labels[0] = 7;
        md_rng r;
        md_rng_seed(&r, 3);
        md_error err = { 0 };
        cr_assert_eq(m->apply_mix(t, &s, &o, 1, &r, &err), 0, "%s", err.msg);
        cr_assert_eq(s.img_u8[0], 150);
        cr_assert_eq(s.img_u8[3 * 15 + 2], 150);
        cr_assert_eq(s.gt_bboxes.n, 2);
        assert_box(&s.gt_bboxes, 0, 1, 1, 3, 3);
        if (flip) assert_box(&s.gt_bboxes, 1, 3, 0, 4, 2);
        else assert_box(&s.gt_bboxes, 1, 0, 0, 1, 2);
        cr_assert_eq(s.gt_bboxes.labels[1], 7);
        md_sample_clear(&s);
        md_sample_clear(&o);
        t->iface->destroy(t);
    }
}

/* The wrapper on a shapes dataset: Mosaic makes 2 * img_scale; skipping
 * it by type leaves the loaded image; the length and flags are the inner
 * dataset's. */
Test(aug, multi_image_mix_dataset) {
    char dir[64] = "/tmp/md_mix_XXXXXX", cmd[256];
    cr_assert(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s --train 4 --val 1 --classes 2 --seed 4 --format voc"
                              " > /dev/null", dir);
    cr_assert_eq(system(cmd), 0);
    for (int skip = 0; skip < 2; skip++) {
        char text[1024];
        snprintf(text, sizeof text,
                 "data = { type = \"MultiImageMixDataset\"; %s"
                 " pipeline = ({ type = \"Mosaic\"; img_scale = [64, 48]; }, { type = \"FilterAnnotations\";"
                 " min_gt_bbox_wh = [0.5, 0.5]; keep_empty = false; });"
                 " dataset = { type = \"XMLDataset\"; classes = [\"rectangle\", \"ellipse\"];"
                 " ann_file = \"%s/ImageSets/Main/train.txt\"; img_prefix = \"%s\";"
                 " pipeline = ({ type = \"LoadImageFromFile\"; }, { type = \"LoadAnnotations\"; }); }; };",
                 skip ? "skip_type_keys = [\"Mosaic\"];" : "", dir, dir);
        md_error err = { 0 };
        md_cfg *c = md_cfg_parse(text, "inline.cfg", &err);
        cr_assert(c, "%s", err.msg);
        md_dataset *ds = md_build_dataset(ctx, md_cfg_get(c, "data"), NULL, &err);
        md_cfg_free(c);
        cr_assert(ds, "%s", err.msg);
        cr_assert(md_dataset_len(ds) >= 1);
        cr_assert_eq(ds->n_classes, 2);
        md_sample s;
        md_rng r;
        md_sample_rng(&r, 1, 0, 0);
        cr_assert_eq(md_dataset_get(ds, 0, &r, &s, &err), 0, "%s", err.msg);
        md_img_info info;
        ds->iface->img_info(ds, 0, &info);
        if (skip) {
            cr_assert_eq(s.w, info.width);
            cr_assert_eq(s.h, info.height);
        } else {
            cr_assert_eq(s.w, 96);
            cr_assert_eq(s.h, 128);
            for (int k = 0; k < s.gt_bboxes.n; k++) {
                const float *b = s.gt_bboxes.xyxy + 4 * k;
                cr_assert(b[0] >= 0 && b[2] <= 96 && b[1] >= 0 && b[3] <= 128 && b[2] > b[0]);
            }
        }
        md_sample_clear(&s);
        md_dataset_free(ds);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
}

/* bin/mmdet-browse-dataset writes one PNG per sample, with the boxes drawn
 * as mmdet's imshow_det_bboxes: in VOCDataset's PALETTE colour of the
 * class (label 0: (106, 0, 228)) at alpha 0.8 through the pixel of the
 * box's integer top-left corner. */
Test(aug, browse_dataset_tool) {
    char dir[64] = "/tmp/md_browse_XXXXXX", cmd[1024];
    cr_assert(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s/VOC2007 --train 2 --val 1 --classes 1 --seed 5 --format voc"
                              " > /dev/null", dir);
    cr_assert_eq(system(cmd), 0);
    char cfgp[128];
    snprintf(cfgp, sizeof cfgp, "%s/b.cfg", dir);
    FILE *f = fopen(cfgp, "w");
    fprintf(f, "data = { train = { type = \"VOCDataset\"; classes = [\"rectangle\"];"
               " ann_file = \"%s/VOC2007/ImageSets/Main/train.txt\"; img_prefix = \"%s/VOC2007\";"
               " pipeline = ({ type = \"LoadImageFromFile\"; }, { type = \"LoadAnnotations\"; },"
               " { type = \"Normalize\"; mean = [0, 0, 0]; std = [1, 1, 1]; }, { type = \"Collect\"; keys = [\"img\"]; }); }; };\n",
            dir, dir);
    fclose(f);
    snprintf(cmd, sizeof cmd, "bin/mmdet-browse-dataset %s --out %s/out --plugin-dir plugins --not-show --max 1"
                              " > /dev/null", cfgp, dir);
    cr_assert_eq(system(cmd), 0);
    md_error err = { 0 };
    char p[256];
    snprintf(p, sizeof p, "%s/out/000000_000001.png", dir);
    md_image *img = md_image_read(p, &err);
    cr_assert(img, "%s", err.msg);
    md_cfg *c = md_cfg_load(cfgp, &err);
    md_dataset *ds = md_build_dataset(ctx, md_cfg_get(c, "data.train"), NULL, &err);
    cr_assert(ds, "%s", err.msg);
    md_ann_info a;
    ds->iface->ann_info(ds, 0, &a);
    md_img_info info;
    ds->iface->img_info(ds, 0, &info);
    cr_assert_eq(img->w, info.width);
    cr_assert_eq(img->h, info.height);
    cr_assert(a.n > 0);
    int x = (int)a.bboxes[0], y = (int)a.bboxes[1] + 4;   /* below the corner, clear of the label */
    char src[256];
    snprintf(src, sizeof src, "%s/VOC2007/%s", dir, info.filename);
    md_image *orig = md_image_read(src, &err);
    cr_assert(orig, "%s", err.msg);
    const uint8_t *px = img->data + 3 * ((size_t)y * img->w + x), *bg = orig->data + 3 * ((size_t)y * img->w + x);
    const uint8_t want[3] = { 106, 0, 228 };
    for (int k = 0; k < 3; k++)
        cr_expect(abs(px[k] - (int)(0.2 * bg[k] + 0.8 * want[k] + 0.5)) <= 1, "channel %d: %d over %d", k, px[k],
                  bg[k]);
    md_image_free(orig);
    md_dataset_free(ds);
    md_cfg_free(c);
    md_image_free(img);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
}
