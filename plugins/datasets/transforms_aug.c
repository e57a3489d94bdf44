/* mmdet 2.x's augmentation transforms: PhotoMetricDistortion, RandomCrop,
 * FilterAnnotations, RandomAffine, and the multi-image Mosaic and MixUp
 * (which need MultiImageMixDataset). Keys and semantics as mmdet's; the
 * image stays u8 HWC, so where mmdet keeps float pixels (photometric
 * distortion) the result is rounded and clamped to 0..255 at the end of
 * the transform. Randomness comes only from the rng argument. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/data.h>

static void plain_destroy(md_transform *t) { free(t); }

static double uniform(md_rng *r, double a, double b) { return a + (b - a) * md_rng_uniform(r); }

static int need_u8(const md_sample *s, const char *who, md_error *err) {
    if (!s->img_u8)
        return md_failc(err, MD_ERR_GENERIC, "%s: needs the u8 image (put it before Normalize), sample %lld (%s)",
                        who, (long long)s->index, s->meta.ori_filename);
    return 0;
}

/* A transform that moves boxes but not masks refuses a sample with masks
 * rather than let them fall out of step. */
static int no_masks(const md_sample *s, const char *who, md_error *err) {
    if (s->have & MD_FIELD_GT_MASKS)
        return md_failc(err, MD_ERR_CONFIG, "%s does not transform gt_masks (as mmdet's); remove with_mask from "
                        "LoadAnnotations or the transform from the pipeline", who);
    return 0;
}

/* Keeps boxes i with keep[i] (labels follow). */
static void keep_boxes(md_boxes *b, const bool *keep) {
    int j = 0;
    for (int i = 0; i < b->n; i++) {
        if (!keep[i]) continue;
        if (j != i) {
            memcpy(b->xyxy + 4 * j, b->xyxy + 4 * i, 4 * sizeof *b->xyxy);
            if (b->labels) b->labels[j] = b->labels[i];
        }
        j++;
    }
    b->n = j;
}

/* mmdet's find_inside_bboxes. */
static bool inside(const float *b, double h, double w) { return b[0] < w && b[2] > 0 && b[1] < h && b[3] > 0; }

static void set_shape(md_sample *s) {
    s->meta.img_shape[0] = s->h, s->meta.img_shape[1] = s->w, s->meta.img_shape[2] = s->c;
    s->meta.keys |= MD_META_IMG_SHAPE;
}

/* -------------------------------------------------- PhotoMetricDistortion */

typedef struct {
    md_transform base;
    double brightness, contrast[2], saturation[2], hue;
} pmd_t;

/* OpenCV's float BGR <-> HSV (H in degrees). */
static void bgr2hsv(float *p) {
    float b = p[0], g = p[1], r = p[2];
    float v = fmaxf(fmaxf(r, g), b), mn = fminf(fminf(r, g), b), diff = v - mn;
    float s = diff / (fabsf(v) + FLT_EPSILON), h;
    diff = (float)(60. / (diff + FLT_EPSILON));
    if (v == r) h = (g - b) * diff;
    else if (v == g) h = (b - r) * diff + 120.f;
    else h = (r - g) * diff + 240.f;
    if (h < 0) h += 360.f;
    p[0] = h, p[1] = s, p[2] = v;
}

static void hsv2bgr(float *p) {
    float h = p[0], s = p[1], v = p[2], b, g, r;
    if (s == 0) {
        b = g = r = v;
    } else {
        static const int sector_data[][3] = { { 1, 3, 0 }, { 1, 0, 2 }, { 3, 0, 1 },
                                              { 0, 2, 1 }, { 0, 1, 3 }, { 2, 1, 0 } };
        h *= 6.f / 360.f;
        while (h < 0) h += 6;
        while (h >= 6) h -= 6;
        int sector = (int)floorf(h);
        h -= sector;
        if ((unsigned)sector >= 6u) sector = 0, h = 0;
        float tab[4] = { v, v * (1.f - s), v * (1.f - s * h), v * (1.f - s * (1.f - h)) };
        b = tab[sector_data[sector][0]], g = tab[sector_data[sector][1]], r = tab[sector_data[sector][2]];
    }
    p[0] = b, p[1] = g, p[2] = r;
}

static int pmd_apply(const md_transform *tt, md_sample *s, md_rng *rng, md_error *err) {
    const pmd_t *t = (const pmd_t *)tt;
    if (need_u8(s, "PhotoMetricDistortion", err)) return -1;
    if (s->c != 3) return md_failc(err, MD_ERR_GENERIC, "PhotoMetricDistortion: needs 3 channels, got %d", s->c);
    /* The draws, in mmdet's order. */
    double delta = 0, alpha = 1, sat = 1, hue = 0;
    bool do_b = md_rng_int(rng, 2), do_c = false, do_s, do_h;
    if (do_b) delta = uniform(rng, -t->brightness, t->brightness);
    int mode = (int)md_rng_int(rng, 2);
    if (mode == 1 && (do_c = md_rng_int(rng, 2))) alpha = uniform(rng, t->contrast[0], t->contrast[1]);
    if ((do_s = md_rng_int(rng, 2))) sat = uniform(rng, t->saturation[0], t->saturation[1]);
    if ((do_h = md_rng_int(rng, 2))) hue = uniform(rng, -t->hue, t->hue);
    if (mode == 0 && (do_c = md_rng_int(rng, 2))) alpha = uniform(rng, t->contrast[0], t->contrast[1]);
    int perm[3] = { 0, 1, 2 };
    bool do_p = md_rng_int(rng, 2);
    if (do_p)
        for (int i = 2; i > 0; i--) {
            int j = (int)md_rng_int(rng, i + 1), x = perm[i];
            perm[i] = perm[j], perm[j] = x;
        }
    size_t n = (size_t)s->h * s->w;
    for (size_t i = 0; i < n; i++) {
        uint8_t *px = s->img_u8 + 3 * i;
        float p[3] = { px[0], px[1], px[2] };
        for (int k = 0; k < 3; k++) {
            if (do_b) p[k] += (float)delta;
            if (mode == 1 && do_c) p[k] *= (float)alpha;
        }
        if (do_s || do_h) {
            bgr2hsv(p);
            if (do_s) p[1] *= (float)sat;
            if (do_h) {
                p[0] += (float)hue;
                if (p[0] > 360) p[0] -= 360;
                if (p[0] < 0) p[0] += 360;
            }
            hsv2bgr(p);
        }
        if (mode == 0 && do_c)
            for (int k = 0; k < 3; k++) p[k] *= (float)alpha;
        for (int k = 0; k < 3; k++) {
            float v = rintf(p[perm[k]]);
            px[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    return 0;
}

static const md_transform_iface pmd_iface = { pmd_apply, plain_destroy };
static const md_key pmd_keys[] = {
    { "brightness_delta", MD_KEY_FLOAT, "32", "brightness shift drawn from [-delta, delta]", false,
      MD_AT(pmd_t, brightness) },
    { "contrast_range", MD_KEY_LIST, "[0.5, 1.5]", "contrast factor range", false },
    { "saturation_range", MD_KEY_LIST, "[0.5, 1.5]", "saturation factor range", false },
    { "hue_delta", MD_KEY_FLOAT, "18", "hue shift (degrees) from [-delta, delta]", false, MD_AT(pmd_t, hue) },
    { 0 } };

static void *pmd_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    pmd_t *t = md_transform_new(sizeof *t, &pmd_iface, "PhotoMetricDistortion", pmd_keys, cfg, err);
    if (!t) return NULL;
    if (md_cfg_float_array(cfg, "contrast_range", t->contrast, 2, err) != 2 ||
        md_cfg_float_array(cfg, "saturation_range", t->saturation, 2, err) != 2) {
        if (!md_error_is_set(err)) md_failc(err, MD_ERR_CONFIG, "contrast_range and saturation_range take 2 numbers");
        free(t);
        return NULL;
    }
    return t;
}

static const md_class pmd_class = { .name = "PhotoMetricDistortion", .keys = pmd_keys, .build = pmd_build,
    MD_IFACE(&pmd_iface, MD_IFACE_TRANSFORM), .doc = "random brightness, contrast, saturation, hue, channel swap" };

/* ------------------------------------------------------------- RandomCrop */

enum { CROP_ABS, CROP_ABS_RANGE, CROP_REL, CROP_REL_RANGE };
typedef struct {
    md_transform base;
    int type;
    double size[2];              /* (h, w) */
    bool allow_negative, clip, recompute_bbox;
} crop_t;

/* Crops the u8 image to rows [y0, y0 + h) and columns [x0, x0 + w). */
static int crop_image(md_sample *s, int x0, int y0, int w, int h, md_error *err) {
    uint8_t *d = malloc((size_t)w * h * s->c + 1);
    if (!d) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    for (int y = 0; y < h; y++)
        memcpy(d + (size_t)y * w * s->c, s->img_u8 + ((size_t)(y0 + y) * s->w + x0) * s->c, (size_t)w * s->c);
    md_sample_set_u8(s, d, h, w, s->c);
    set_shape(s);
    return 0;
}

static int crop_apply(const md_transform *tt, md_sample *s, md_rng *rng, md_error *err) {
    const crop_t *t = (const crop_t *)tt;
    if (need_u8(s, "RandomCrop", err)) return -1;
    int h = s->h, w = s->w, ch, cw;
    switch (t->type) {
    case CROP_ABS:
        ch = (int)fmin(t->size[0], h), cw = (int)fmin(t->size[1], w);
        break;
    case CROP_ABS_RANGE: {
        int lo_h = (int)fmin(h, t->size[0]), hi_h = (int)fmin(h, t->size[1]);
        int lo_w = (int)fmin(w, t->size[0]), hi_w = (int)fmin(w, t->size[1]);
        ch = lo_h + (int)md_rng_int(rng, hi_h - lo_h + 1);
        cw = lo_w + (int)md_rng_int(rng, hi_w - lo_w + 1);
        break;
    }
    case CROP_REL:
        ch = (int)(h * t->size[0] + 0.5), cw = (int)(w * t->size[1] + 0.5);
        break;
    default: {
        float rh = (float)t->size[0], rw = (float)t->size[1];
        double a = rh + md_rng_uniform(rng) * (1 - rh), b = rw + md_rng_uniform(rng) * (1 - rw);
        ch = (int)(h * a + 0.5), cw = (int)(w * b + 0.5);
    }
    }
    if (ch <= 0 || cw <= 0)
        return md_failc(err, MD_ERR_GENERIC, "RandomCrop: crop size %dx%d of a %dx%d image", cw, ch, w, h);
    int mh = h - ch > 0 ? h - ch : 0, mw = w - cw > 0 ? w - cw : 0;
    int oy = (int)md_rng_int(rng, mh + 1), ox = (int)md_rng_int(rng, mw + 1);
    int nh = oy + ch < h ? ch : h - oy, nw = ox + cw < w ? cw : w - ox;   /* numpy slices stop at the edge */
    /* Boxes first: a crop without any GT box area drops the sample. */
    md_boxes *fields[2] = { &s->gt_bboxes, &s->gt_bboxes_ignore };
    for (int f = 0; f < 2; f++) {
        md_boxes *b = fields[f];
        if (!(s->have & (f ? MD_FIELD_GT_BBOXES_IGNORE : MD_FIELD_GT_BBOXES))) continue;
        bool keep[b->n > 0 ? b->n : 1];
        bool any = false;
        for (int i = 0; i < b->n; i++) {
            float *x = b->xyxy + 4 * i;
            x[0] -= (float)ox, x[2] -= (float)ox, x[1] -= (float)oy, x[3] -= (float)oy;
            if (t->clip)
                for (int k = 0; k < 4; k++) x[k] = fminf(fmaxf(x[k], 0.f), (float)(k % 2 ? nh : nw));
            keep[i] = x[2] > x[0] && x[3] > x[1];
            any |= keep[i];
        }
        if (f == 0 && !any && !t->allow_negative) return 1;
        int n0 = b->n;
        keep_boxes(b, keep);
        /* bbox2mask: the masks of the kept gt boxes, cropped */
        if (f == 0 && (s->have & MD_FIELD_GT_MASKS)) {
            if (s->gt_masks.n != n0)
                return md_failc(err, MD_ERR_GENERIC, "RandomCrop: %d gt_masks for %d gt_bboxes", s->gt_masks.n, n0);
            int crop_box[4] = { ox, oy, ox + cw, oy + ch };
            if (md_masks_select(&s->gt_masks, keep, err) || md_masks_crop(&s->gt_masks, crop_box, err)) return -1;
            if (t->recompute_bbox) md_masks_get_bboxes(&s->gt_masks, b->xyxy);
        }
    }
    return crop_image(s, ox, oy, nw, nh, err);
}

static const md_transform_iface crop_iface = { crop_apply, plain_destroy };
static const md_key crop_keys[] = {
    { "crop_size", MD_KEY_LIST, NULL, "(h, w): pixels or ratios per crop_type", true },
    { "crop_type", MD_KEY_STRING, "\"absolute\"", "absolute, absolute_range, relative or relative_range", false,
      MD_CHOICE_AT(crop_t, type, "absolute|absolute_range|relative|relative_range") },   /* CROP_* order */
    { "allow_negative_crop", MD_KEY_BOOL, "false", "keep crops without any GT box", false,
      MD_AT(crop_t, allow_negative) },
    { "recompute_bbox", MD_KEY_BOOL, "false", "gt_bboxes from the cropped masks (when there are masks)", false,
      MD_AT(crop_t, recompute_bbox) },
    { "bbox_clip_border", MD_KEY_BOOL, "true", "clip boxes to the crop", false, MD_AT(crop_t, clip) },
    { 0 } };

static void *crop_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    crop_t *t = md_transform_new(sizeof *t, &crop_iface, "RandomCrop", crop_keys, cfg, err);
    if (!t) return NULL;
    const char *bad = NULL;
    if (md_cfg_float_array(cfg, "crop_size", t->size, 2, err) != 2) bad = "crop_size takes 2 numbers (h, w)";
    else if (t->type >= CROP_REL && !(t->size[0] > 0 && t->size[0] <= 1 && t->size[1] > 0 && t->size[1] <= 1))
        bad = "relative crop sizes must be in (0, 1]";
    else if (t->type < CROP_REL && !(t->size[0] > 0 && t->size[1] > 0 && t->size[0] == floor(t->size[0]) &&
                                     t->size[1] == floor(t->size[1])))
        bad = "absolute crop sizes must be positive integers";
    else if (t->type == CROP_ABS_RANGE && t->size[0] > t->size[1]) bad = "absolute_range needs crop_size[0] <= [1]";
    if (bad) {
        md_failc(err, MD_ERR_CONFIG, "%s", bad);
        free(t);
        return NULL;
    }
    return t;
}

static const md_class crop_class = { .name = "RandomCrop", .keys = crop_keys, .build = crop_build,
    MD_IFACE(&crop_iface, MD_IFACE_TRANSFORM), .doc = "random crop; boxes shifted, clipped, emptied ones dropped with their masks" };

/* ------------------------------------------------------ FilterAnnotations */

typedef struct { md_transform base; double min_wh[2]; bool keep_empty, by_box, by_mask; int64_t min_area; } filt_t;

static int filt_apply(const md_transform *tt, md_sample *s, md_rng *rng, md_error *err) {
    (void)rng;
    const filt_t *t = (const filt_t *)tt;
    if (t->by_box && !(s->have & MD_FIELD_GT_BBOXES))
        return md_failc(err, MD_ERR_GENERIC, "FilterAnnotations: the sample has no gt_bboxes (LoadAnnotations first)");
    if (t->by_mask && !(s->have & MD_FIELD_GT_MASKS))
        return md_failc(err, MD_ERR_GENERIC, "FilterAnnotations: by_mask needs gt_masks (LoadAnnotations with_mask)");
    md_boxes *b = &s->gt_bboxes;
    md_masks *m = &s->gt_masks;
    bool boxes = (s->have & MD_FIELD_GT_BBOXES) != 0, masks = (s->have & MD_FIELD_GT_MASKS) != 0;
    int n = t->by_mask ? m->n : b->n;
    if (n == 0) return 0;
    if ((boxes && b->n != n) || (masks && m->n != n))
        return md_failc(err, MD_ERR_GENERIC, "FilterAnnotations: %d gt_bboxes and %d gt_masks", b->n, m->n);
    bool keep[n];
    double areas[n];
    if (t->by_mask) md_masks_areas(m, areas);
    int k = 0;
    for (int i = 0; i < n; i++) {
        keep[i] = true;
        if (t->by_box) {
            const float *x = b->xyxy + 4 * i;
            keep[i] = x[2] - x[0] > t->min_wh[0] && x[3] - x[1] > t->min_wh[1];
        }
        if (t->by_mask) keep[i] = keep[i] && areas[i] >= (double)t->min_area;
        k += keep[i];
    }
    if (boxes) keep_boxes(b, keep);
    if (masks && md_masks_select(m, keep, err)) return -1;
    /* mmdet: keep_empty=True returns None when nothing is left */
    return k == 0 && t->keep_empty ? 1 : 0;
}

static const md_transform_iface filt_iface = { filt_apply, plain_destroy };
static const md_key filt_keys[] = {
    { "min_gt_bbox_wh", MD_KEY_LIST, "[1.0, 1.0]", "boxes need width and height above these", false },
    { "keep_empty", MD_KEY_BOOL, "true", "true: drop the sample when no box is left (mmdet's naming)", false,
      MD_AT(filt_t, keep_empty) },
    { "by_box", MD_KEY_BOOL, "true", "filter by box size", false, MD_AT(filt_t, by_box) },
    { "by_mask", MD_KEY_BOOL, "false", "filter by mask area", false, MD_AT(filt_t, by_mask) },
    { "min_gt_mask_area", MD_KEY_INT, "1", "masks need at least this area (by_mask)", false,
      MD_AT(filt_t, min_area) },
    { 0 } };

static void *filt_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    filt_t *t = md_transform_new(sizeof *t, &filt_iface, "FilterAnnotations", filt_keys, cfg, err);
    if (!t) return NULL;
    if (!t->by_mask && !t->by_box) {
        md_failc(err, MD_ERR_CONFIG, "FilterAnnotations: by_box or by_mask must be true");
        free(t);
        return NULL;
    }
    if (md_cfg_float_array(cfg, "min_gt_bbox_wh", t->min_wh, 2, err) != 2) {
        if (!md_error_is_set(err)) md_failc(err, MD_ERR_CONFIG, "min_gt_bbox_wh takes 2 numbers (w, h)");
        free(t);
        return NULL;
    }
    return t;
}

static const md_class filt_class = { .name = "FilterAnnotations", .keys = filt_keys, .build = filt_build,
    MD_IFACE(&filt_iface, MD_IFACE_TRANSFORM), .doc = "drop GT boxes not larger than min_gt_bbox_wh" };

/* ----------------------------------------------------------- RandomAffine */

typedef struct {
    md_transform base;
    double max_rot, max_trans, scale[2], max_shear, min_bbox, min_area_ratio, max_aspect;
    int border[2];               /* (h, w) */
    uint8_t border_val[4];
    bool clip, skip_filter;
} affine_t;

static void matmul3(const double *a, const double *b, double *o) {
    double r[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) r[3 * i + j] = a[3 * i] * b[j] + a[3 * i + 1] * b[3 + j] + a[3 * i + 2] * b[6 + j];
    memcpy(o, r, sizeof r);
}

static bool inv3(const double *m, double *o) {
    double d = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) + m[2] * (m[3] * m[7] - m[4] * m[6]);
    if (fabs(d) < 1e-12) return false;
    o[0] = (m[4] * m[8] - m[5] * m[7]) / d, o[1] = (m[2] * m[7] - m[1] * m[8]) / d, o[2] = (m[1] * m[5] - m[2] * m[4]) / d;
    o[3] = (m[5] * m[6] - m[3] * m[8]) / d, o[4] = (m[0] * m[8] - m[2] * m[6]) / d, o[5] = (m[2] * m[3] - m[0] * m[5]) / d;
    o[6] = (m[3] * m[7] - m[4] * m[6]) / d, o[7] = (m[1] * m[6] - m[0] * m[7]) / d, o[8] = (m[0] * m[4] - m[1] * m[3]) / d;
    return true;
}

/* cv2.warpPerspective (bilinear, constant border): each output pixel
 * samples the input at M^-1 (x, y). Float interpolation; OpenCV's fixed
 * point may differ by 1. */
static int warp(md_sample *s, const double *M, int oh, int ow, const uint8_t *bv, md_error *err) {
    double Mi[9];
    if (!inv3(M, Mi)) return md_failc(err, MD_ERR_NUMERIC, "RandomAffine: singular warp matrix");
    int c = s->c;
    uint8_t *d = malloc((size_t)oh * ow * c + 1);
    if (!d) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            double w = Mi[6] * x + Mi[7] * y + Mi[8];
            double sx = (Mi[0] * x + Mi[1] * y + Mi[2]) / w, sy = (Mi[3] * x + Mi[4] * y + Mi[5]) / w;
            uint8_t *o = d + ((size_t)y * ow + x) * c;
            int x0 = (int)floor(sx), y0 = (int)floor(sy);
            double fx = sx - x0, fy = sy - y0;
            for (int k = 0; k < c; k++) {
                double acc = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        int xx = x0 + dx, yy = y0 + dy;
                        double wt = (dx ? fx : 1 - fx) * (dy ? fy : 1 - fy);
                        double v = xx >= 0 && yy >= 0 && xx < s->w && yy < s->h
                                       ? s->img_u8[((size_t)yy * s->w + xx) * c + k] : bv[k < 4 ? k : 3];
                        acc += wt * v;
                    }
                long v = lround(acc);
                o[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    md_sample_set_u8(s, d, oh, ow, c);
    set_shape(s);
    return 0;
}

static int affine_apply(const md_transform *tt, md_sample *s, md_rng *rng, md_error *err) {
    const affine_t *t = (const affine_t *)tt;
    if (need_u8(s, "RandomAffine", err) || no_masks(s, "RandomAffine", err)) return -1;
    int height = s->h + 2 * t->border[0], width = s->w + 2 * t->border[1];
    if (height <= 0 || width <= 0)
        return md_failc(err, MD_ERR_GENERIC, "RandomAffine: border (%d, %d) leaves no image of %dx%d", t->border[0],
                        t->border[1], s->w, s->h);
    double rot = uniform(rng, -t->max_rot, t->max_rot) * M_PI / 180;
    double sc = uniform(rng, t->scale[0], t->scale[1]);
    double shx = uniform(rng, -t->max_shear, t->max_shear) * M_PI / 180;
    double shy = uniform(rng, -t->max_shear, t->max_shear) * M_PI / 180;
    double tx = uniform(rng, -t->max_trans, t->max_trans) * width;
    double ty = uniform(rng, -t->max_trans, t->max_trans) * height;
    /* mmdet builds each matrix in float32 */
    double R[9] = { (float)cos(rot), (float)-sin(rot), 0, (float)sin(rot), (float)cos(rot), 0, 0, 0, 1 };
    double S[9] = { (float)sc, 0, 0, 0, (float)sc, 0, 0, 0, 1 };
    double H[9] = { 1, (float)tan(shx), 0, (float)tan(shy), 1, 0, 0, 0, 1 };
    double T[9] = { 1, 0, (float)tx, 0, 1, (float)ty, 0, 0, 1 };
    double M[9];
    matmul3(T, H, M);
    matmul3(M, R, M);
    matmul3(M, S, M);
    md_boxes *fields[2] = { &s->gt_bboxes, &s->gt_bboxes_ignore };
    for (int f = 0; f < 2; f++) {
        md_boxes *b = fields[f];
        if (b->n == 0) continue;
        bool keep[b->n];
        for (int i = 0; i < b->n; i++) {
            float *x = b->xyxy + 4 * i;
            double px[4] = { x[0], x[0], x[2], x[2] }, py[4] = { x[1], x[3], x[3], x[1] };
            double lo[2] = { INFINITY, INFINITY }, hi[2] = { -INFINITY, -INFINITY };
            for (int k = 0; k < 4; k++) {
                double w = M[6] * px[k] + M[7] * py[k] + M[8];
                double u = (M[0] * px[k] + M[1] * py[k] + M[2]) / w, v = (M[3] * px[k] + M[4] * py[k] + M[5]) / w;
                lo[0] = fmin(lo[0], u), hi[0] = fmax(hi[0], u), lo[1] = fmin(lo[1], v), hi[1] = fmax(hi[1], v);
            }
            float wb[4] = { (float)lo[0], (float)lo[1], (float)hi[0], (float)hi[1] };
            if (t->clip) {
                wb[0] = fminf(fmaxf(wb[0], 0), (float)width), wb[2] = fminf(fmaxf(wb[2], 0), (float)width);
                wb[1] = fminf(fmaxf(wb[1], 0), (float)height), wb[3] = fminf(fmaxf(wb[3], 0), (float)height);
            }
            keep[i] = inside(wb, height, width);
            if (!t->skip_filter) {
                double ow = (x[2] - x[0]) * sc, oh = (x[3] - x[1]) * sc;
                double ww = wb[2] - wb[0], wh = wb[3] - wb[1];
                double ar = fmax(ww / (wh + 1e-16), wh / (ww + 1e-16));
                keep[i] = keep[i] && ww > t->min_bbox && wh > t->min_bbox &&
                          ww * wh / (ow * oh + 1e-16) > t->min_area_ratio && ar < t->max_aspect;
            }
            memcpy(x, wb, sizeof wb);
        }
        keep_boxes(b, keep);
    }
    return warp(s, M, height, width, t->border_val, err);
}

static const md_transform_iface affine_iface = { affine_apply, plain_destroy };
static const md_key affine_keys[] = {
    { "max_rotate_degree", MD_KEY_FLOAT, "10.0", "rotation from [-d, d] degrees", false, MD_AT(affine_t, max_rot) },
    { "max_translate_ratio", MD_KEY_FLOAT, "0.1", "translation from [-r, r] of the output size", false,
      MD_AT(affine_t, max_trans), .min = "0", .max = "1" },
    { "scaling_ratio_range", MD_KEY_LIST, "[0.5, 1.5]", "scale factor range", false },
    { "max_shear_degree", MD_KEY_FLOAT, "2.0", "shear from [-d, d] degrees, x and y", false,
      MD_AT(affine_t, max_shear) },
    { "border", MD_KEY_LIST, "[0, 0]", "(h, w) added on each side of the output (negative after Mosaic)", false },
    { "border_val", MD_KEY_LIST, "[114, 114, 114]", "fill value", false },
    { "min_bbox_size", MD_KEY_FLOAT, "2", "filter: minimum warped side", false, MD_AT(affine_t, min_bbox) },
    { "min_area_ratio", MD_KEY_FLOAT, "0.2", "filter: warped / scaled original area", false,
      MD_AT(affine_t, min_area_ratio) },
    { "max_aspect_ratio", MD_KEY_FLOAT, "20", "filter: maximum aspect ratio", false, MD_AT(affine_t, max_aspect) },
    { "bbox_clip_border", MD_KEY_BOOL, "true", "clip boxes to the output", false, MD_AT(affine_t, clip) },
    { "skip_filter", MD_KEY_BOOL, "true", "skip the three filters above", false, MD_AT(affine_t, skip_filter) },
    { 0 } };

static void *affine_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    affine_t *t = md_transform_new(sizeof *t, &affine_iface, "RandomAffine", affine_keys, cfg, err);
    if (!t) return NULL;
    int64_t border[2], bv[4] = { 114, 114, 114, 114 };
    int nbv;
    if (md_cfg_float_array(cfg, "scaling_ratio_range", t->scale, 2, err) != 2 ||
        md_cfg_int_array(cfg, "border", border, 2, err) != 2 ||
        (nbv = md_cfg_int_array(cfg, "border_val", bv, 4, err)) < 1 ||
        !(t->scale[0] > 0 && t->scale[0] <= t->scale[1])) {
        if (!md_error_is_set(err))
            md_failc(err, MD_ERR_CONFIG, "RandomAffine: scaling_ratio_range (0 < lo <= hi), border (h, w) and "
                     "border_val are required as mmdet's");
        free(t);
        return NULL;
    }
    t->border[0] = (int)border[0], t->border[1] = (int)border[1];
    for (int k = 0; k < 4; k++) t->border_val[k] = (uint8_t)(k < nbv ? bv[k] : bv[nbv - 1]);
    return t;
}

static const md_class affine_class = { .name = "RandomAffine", .keys = affine_keys, .build = affine_build,
    MD_IFACE(&affine_iface, MD_IFACE_TRANSFORM), .doc = "random rotation, scale, shear and translation (YOLOX)" };

/* ----------------------------------------------------------------- Mosaic */

typedef struct {
    md_transform base;
    int scale[2];                /* (h, w) */
    double center[2], prob;
    double min_bbox;
    double pad;                  /* the canvas fill, 0..255 (mmdet's configs write 114.0) */
    bool clip, skip_filter;
} mosaic_t;

static int mosaic_apply_plain(const md_transform *t, md_sample *s, md_rng *rng, md_error *err) {
    (void)s, (void)rng;
    return md_failc(err, MD_ERR_CONFIG, "%s needs the other images: use it in a MultiImageMixDataset pipeline",
                    t->type);
}

static int mosaic_indexes(const md_transform *t, const md_dataset *ds, md_rng *rng, int64_t idx[4]) {
    (void)t;
    int64_t n = md_dataset_len(ds);
    for (int i = 0; i < 3; i++) idx[i] = md_rng_int(rng, n);
    return 3;
}

/* Resizes the sample's u8 image by ratio (mmcv.imresize to int sizes). */
static uint8_t *resized(const md_sample *s, double ratio, int *nw, int *nh) {
    *nw = (int)(s->w * ratio), *nh = (int)(s->h * ratio);
    if (*nw < 1) *nw = 1;
    if (*nh < 1) *nh = 1;
    uint8_t *d = malloc((size_t)*nw * *nh * s->c + 1);
    if (d && md_image_resize_bilinear(s->img_u8, s->h, s->w, s->c, d, *nh, *nw) != 0) {
        free(d);
        return NULL;
    }
    return d;
}

static int mosaic_mix(const md_transform *tt, md_sample *s, md_sample *mix, int n_mix, md_rng *rng, md_error *err) {
    const mosaic_t *t = (const mosaic_t *)tt;
    if (n_mix != 3) return md_failc(err, MD_ERR_GENERIC, "Mosaic: needs 3 other images, got %d", n_mix);
    if (md_rng_uniform(rng) > t->prob) return 0;
    const md_sample *parts[4] = { s, &mix[0], &mix[1], &mix[2] };
    for (int i = 0; i < 4; i++) {
        if (need_u8(parts[i], "Mosaic", err) || no_masks(parts[i], "Mosaic", err)) return -1;
        if (parts[i]->c != s->c) return md_failc(err, MD_ERR_GENERIC, "Mosaic: images with %d and %d channels",
                                                 s->c, parts[i]->c);
    }
    int H = 2 * t->scale[0], W = 2 * t->scale[1], c = s->c;
    uint8_t *canvas = malloc((size_t)H * W * c);
    md_boxes boxes = { 0 };
    if (!canvas || md_boxes_reserve(&boxes, 16, true)) {
        free(canvas);
        return md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    memset(canvas, (int)t->pad, (size_t)H * W * c);   /* np.full(..., pad_val, uint8): truncated */
    int cx = (int)(uniform(rng, t->center[0], t->center[1]) * t->scale[1]);
    int cy = (int)(uniform(rng, t->center[0], t->center[1]) * t->scale[0]);
    for (int i = 0; i < 4; i++) {
        const md_sample *p = parts[i];
        double r = fmin((double)t->scale[0] / p->h, (double)t->scale[1] / p->w);
        int w, h;
        uint8_t *img = resized(p, r, &w, &h);
        if (!img) {
            free(canvas), md_boxes_free(&boxes);
            return md_failc(err, MD_ERR_NOMEM, "out of memory");
        }
        int x1, y1, x2, y2, cx1, cy1;   /* paste box; crop origin */
        if (i == 0) {
            x1 = cx - w > 0 ? cx - w : 0, y1 = cy - h > 0 ? cy - h : 0, x2 = cx, y2 = cy;
            cx1 = w - (x2 - x1), cy1 = h - (y2 - y1);
        } else if (i == 1) {
            x1 = cx, y1 = cy - h > 0 ? cy - h : 0, x2 = cx + w < W ? cx + w : W, y2 = cy;
            cx1 = 0, cy1 = h - (y2 - y1);
        } else if (i == 2) {
            x1 = cx - w > 0 ? cx - w : 0, y1 = cy, x2 = cx, y2 = H < cy + h ? H : cy + h;
            cx1 = w - (x2 - x1), cy1 = 0;
        } else {
            x1 = cx, y1 = cy, x2 = cx + w < W ? cx + w : W, y2 = H < cy + h ? H : cy + h;
            cx1 = 0, cy1 = 0;
        }
        for (int y = y1; y < y2; y++)
            memcpy(canvas + ((size_t)y * W + x1) * c, img + ((size_t)(cy1 + y - y1) * w + cx1) * c,
                   (size_t)(x2 - x1) * c);
        free(img);
        double padw = x1 - cx1, padh = y1 - cy1;
        for (int k = 0; k < p->gt_bboxes.n; k++) {
            const float *b = p->gt_bboxes.xyxy + 4 * k;
            float nb[4] = { (float)(r * b[0] + padw), (float)(r * b[1] + padh), (float)(r * b[2] + padw),
                            (float)(r * b[3] + padh) };
            if (t->clip)
                for (int q = 0; q < 4; q++) nb[q] = fminf(fmaxf(nb[q], 0), (float)(q % 2 ? H : W));
            if (md_boxes_push(&boxes, nb, p->gt_bboxes.labels ? p->gt_bboxes.labels[k] : 0)) {
                free(canvas), md_boxes_free(&boxes);
                return md_failc(err, MD_ERR_NOMEM, "out of memory");
            }
        }
    }
    bool keep[boxes.n > 0 ? boxes.n : 1];
    for (int k = 0; k < boxes.n; k++) {
        const float *b = boxes.xyxy + 4 * k;
        keep[k] = inside(b, H, W);
        if (!t->skip_filter) keep[k] = keep[k] && b[2] - b[0] > t->min_bbox && b[3] - b[1] > t->min_bbox;
    }
    keep_boxes(&boxes, keep);
    md_boxes_free(&s->gt_bboxes);
    s->gt_bboxes = boxes;
    s->gt_bboxes_ignore.n = 0;   /* mmdet leaves the first image's unmoved; they would be wrong here */
    md_sample_set_u8(s, canvas, H, W, c);
    set_shape(s);
    return 0;
}

static const md_transform_iface mosaic_iface = { .apply = mosaic_apply_plain, .destroy = plain_destroy,
                                                 .get_indexes = mosaic_indexes, .apply_mix = mosaic_mix };
static const md_key mosaic_keys[] = {
    { "img_scale", MD_KEY_LIST, "[640, 640]", "(h, w) of one image; the mosaic is twice as large", false },
    { "center_ratio_range", MD_KEY_LIST, "[0.5, 1.5]", "mosaic centre, as a ratio of img_scale", false },
    { "min_bbox_size", MD_KEY_FLOAT, "0", "filter (skip_filter false): minimum side", false,
      MD_AT(mosaic_t, min_bbox) },
    { "bbox_clip_border", MD_KEY_BOOL, "true", "clip boxes to the mosaic", false, MD_AT(mosaic_t, clip) },
    { "skip_filter", MD_KEY_BOOL, "true", "skip the min_bbox_size filter", false, MD_AT(mosaic_t, skip_filter) },
    { "pad_val", MD_KEY_FLOAT, "114.0", "canvas fill", false, MD_AT(mosaic_t, pad), .min = "0.0", .max = "255.0" },
    { "prob", MD_KEY_FLOAT, "1.0", "probability of applying", false, MD_AT(mosaic_t, prob), .min = "0", .max = "1" },
    { 0 } };

static void *mosaic_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    mosaic_t *t = md_transform_new(sizeof *t, &mosaic_iface, "Mosaic", mosaic_keys, cfg, err);
    if (!t) return NULL;
    int64_t sc[2];
    if (md_cfg_int_array(cfg, "img_scale", sc, 2, err) != 2 || sc[0] <= 0 || sc[1] <= 0 ||
        md_cfg_float_array(cfg, "center_ratio_range", t->center, 2, err) != 2) {
        if (!md_error_is_set(err))
            md_failc(err, MD_ERR_CONFIG,
                     "Mosaic: img_scale (h, w) > 0 and center_ratio_range (2 numbers) are required");
        free(t);
        return NULL;
    }
    t->scale[0] = (int)sc[0], t->scale[1] = (int)sc[1];
    return t;
}

static const md_class mosaic_class = { .name = "Mosaic", .keys = mosaic_keys, .build = mosaic_build,
    MD_IFACE(&mosaic_iface, MD_IFACE_TRANSFORM), .doc = "4-image mosaic (MultiImageMixDataset)" };

/* ------------------------------------------------------------------ MixUp */

typedef struct {
    md_transform base;
    int scale[2];                /* (h, w) */
    double ratio[2], flip_ratio, min_bbox, min_area_ratio, max_aspect;
    int max_iters;
    double pad;                  /* the canvas fill, 0..255 */
    bool clip, skip_filter;
} mixup_t;

static int mixup_indexes(const md_transform *tt, const md_dataset *ds, md_rng *rng, int64_t idx[4]) {
    const mixup_t *t = (const mixup_t *)tt;
    int64_t n = md_dataset_len(ds);
    for (int i = 0; i < t->max_iters; i++) {
        idx[0] = md_rng_int(rng, n);
        md_ann_info a = { 0 };
        if (!ds->iface->ann_info || ds->iface->ann_info(ds, idx[0], &a) || a.n != 0) break;
    }
    return 1;
}

static int mixup_mix(const md_transform *tt, md_sample *s, md_sample *mix, int n_mix, md_rng *rng, md_error *err) {
    const mixup_t *t = (const mixup_t *)tt;
    if (n_mix != 1) return md_failc(err, MD_ERR_GENERIC, "MixUp: needs 1 other image, got %d", n_mix);
    md_sample *o = &mix[0];
    if (no_masks(s, "MixUp", err) || no_masks(o, "MixUp", err)) return -1;
    if (o->gt_bboxes.n == 0) return 0;
    if (need_u8(s, "MixUp", err) || need_u8(o, "MixUp", err)) return -1;
    if (o->c != s->c) return md_failc(err, MD_ERR_GENERIC, "MixUp: images with %d and %d channels", s->c, o->c);
    double jit = uniform(rng, t->ratio[0], t->ratio[1]);
    bool flip = md_rng_uniform(rng) > t->flip_ratio;   /* mmdet's comparison */
    int c = s->c, SH = t->scale[0], SW = t->scale[1];
    double r = fmin((double)SH / o->h, (double)SW / o->w);
    int rw, rh;
    uint8_t *ri = resized(o, r, &rw, &rh);
    uint8_t *canvas = malloc((size_t)SH * SW * c);
    if (!ri || !canvas) {
        free(ri), free(canvas);
        return md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    memset(canvas, (int)t->pad, (size_t)SH * SW * c);
    for (int y = 0; y < rh && y < SH; y++)
        memcpy(canvas + (size_t)y * SW * c, ri + (size_t)y * rw * c, (size_t)(rw < SW ? rw : SW) * c);
    free(ri);
    r *= jit;
    int ow = (int)(SW * jit), oh = (int)(SH * jit);
    if (ow < 1) ow = 1;
    if (oh < 1) oh = 1;
    uint8_t *out = malloc((size_t)ow * oh * c);
    if (!out) {
        free(canvas);
        return md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    int rc = md_image_resize_bilinear(canvas, SH, SW, c, out, oh, ow);
    free(canvas);
    if (rc != 0) {
        free(out);
        return md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    if (flip)
        for (int y = 0; y < oh; y++)
            for (int a = 0, b = ow - 1; a < b; a++, b--)
                for (int k = 0; k < c; k++) {
                    uint8_t *p = out + ((size_t)y * ow + a) * c + k, *q = out + ((size_t)y * ow + b) * c + k, x = *p;
                    *p = *q, *q = x;
                }
    int th = s->h, tw = s->w, ph = oh > th ? oh : th, pw = ow > tw ? ow : tw;
    int yo = ph > th ? (int)md_rng_int(rng, ph - th) : 0, xo = pw > tw ? (int)md_rng_int(rng, pw - tw) : 0;
    /* mix: 0.5 a + 0.5 b, truncated like astype(uint8); the padding is 0 */
    for (int y = 0; y < th; y++)
        for (int x = 0; x < tw; x++)
            for (int k = 0; k < c; k++) {
                int py = y + yo, px = x + xo;
                float b = py < oh && px < ow ? out[((size_t)py * ow + px) * c + k] : 0;
                uint8_t *a = s->img_u8 + ((size_t)y * tw + x) * c + k;
                *a = (uint8_t)(0.5f * *a + 0.5f * b);
            }
    free(out);
    int n0 = s->gt_bboxes.n;
    if (md_boxes_reserve(&s->gt_bboxes, n0 + o->gt_bboxes.n, true)) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < o->gt_bboxes.n; i++) {
        const float *b = o->gt_bboxes.xyxy + 4 * i;
        double rb[4];
        for (int k = 0; k < 4; k++) {
            rb[k] = (float)(b[k] * r);
            if (t->clip) rb[k] = fmin(fmax(rb[k], 0), k % 2 ? oh : ow);
        }
        if (flip) {
            double x1 = ow - rb[2], x2 = ow - rb[0];
            rb[0] = x1, rb[2] = x2;
        }
        float cb[4];
        for (int k = 0; k < 4; k++) {
            double v = rb[k] - (k % 2 ? yo : xo);
            if (t->clip) v = fmin(fmax(v, 0), k % 2 ? th : tw);
            cb[k] = (float)v;
        }
        if (!t->skip_filter) {
            double w1 = rb[2] - rb[0], h1 = rb[3] - rb[1], w2 = cb[2] - cb[0], h2 = cb[3] - cb[1];
            double ar = fmax(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16));
            if (!(w2 > t->min_bbox && h2 > t->min_bbox && w2 * h2 / (w1 * h1 + 1e-16) > t->min_area_ratio &&
                  ar < t->max_aspect))
                continue;
        }
        md_boxes_push(&s->gt_bboxes, cb, o->gt_bboxes.labels ? o->gt_bboxes.labels[i] : 0);
    }
    bool keep[s->gt_bboxes.n > 0 ? s->gt_bboxes.n : 1];
    for (int i = 0; i < s->gt_bboxes.n; i++) keep[i] = inside(s->gt_bboxes.xyxy + 4 * i, th, tw);
    keep_boxes(&s->gt_bboxes, keep);
    return 0;
}

static const md_transform_iface mixup_iface = { .apply = mosaic_apply_plain, .destroy = plain_destroy,
                                                .get_indexes = mixup_indexes, .apply_mix = mixup_mix };
static const md_key mixup_keys[] = {
    { "img_scale", MD_KEY_LIST, "[640, 640]", "(h, w) the other image is fitted into", false },
    { "ratio_range", MD_KEY_LIST, "[0.5, 1.5]", "scale jitter", false },
    { "flip_ratio", MD_KEY_FLOAT, "0.5", "the other image flips when a draw exceeds this", false,
      MD_AT(mixup_t, flip_ratio) },
    { "pad_val", MD_KEY_FLOAT, "114.0", "fill", false, MD_AT(mixup_t, pad), .min = "0.0", .max = "255.0" },
    { "max_iters", MD_KEY_INT, "15", "tries to find an image with boxes", false, MD_AT(mixup_t, max_iters),
      .min = "1" },
    { "min_bbox_size", MD_KEY_FLOAT, "5", "filter: minimum side", false, MD_AT(mixup_t, min_bbox) },
    { "min_area_ratio", MD_KEY_FLOAT, "0.2", "filter: area ratio", false, MD_AT(mixup_t, min_area_ratio) },
    { "max_aspect_ratio", MD_KEY_FLOAT, "20", "filter: aspect ratio", false, MD_AT(mixup_t, max_aspect) },
    { "bbox_clip_border", MD_KEY_BOOL, "true", "clip boxes", false, MD_AT(mixup_t, clip) },
    { "skip_filter", MD_KEY_BOOL, "true", "skip the filters", false, MD_AT(mixup_t, skip_filter) },
    { 0 } };

static void *mixup_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    mixup_t *t = md_transform_new(sizeof *t, &mixup_iface, "MixUp", mixup_keys, cfg, err);
    if (!t) return NULL;
    int64_t sc[2];
    if (md_cfg_int_array(cfg, "img_scale", sc, 2, err) != 2 || sc[0] <= 0 || sc[1] <= 0 ||
        md_cfg_float_array(cfg, "ratio_range", t->ratio, 2, err) != 2 || t->ratio[0] <= 0) {
        if (!md_error_is_set(err))
            md_failc(err, MD_ERR_CONFIG,
                     "MixUp: img_scale (h, w) > 0 and ratio_range (2 positive numbers) are required");
        free(t);
        return NULL;
    }
    t->scale[0] = (int)sc[0], t->scale[1] = (int)sc[1];
    return t;
}

static const md_class mixup_class = { .name = "MixUp", .keys = mixup_keys, .build = mixup_build,
    MD_IFACE(&mixup_iface, MD_IFACE_TRANSFORM), .doc = "blend with another image (MultiImageMixDataset)" };

MD_PLUGIN("transforms_aug", "1.0", "Apache-2.0");
MD_REGISTER("pipelines", pmd_class)
MD_REGISTER("pipelines", crop_class)
MD_REGISTER("pipelines", filt_class)
MD_REGISTER("pipelines", affine_class)
MD_REGISTER("pipelines", mosaic_class)
MD_REGISTER("pipelines", mixup_class)
