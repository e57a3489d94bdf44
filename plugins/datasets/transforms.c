/* mmdet's default detection transforms: LoadImageFromFile, LoadAnnotations,
 * Resize, RandomFlip, Normalize, Pad, DefaultFormatBundle, Collect and
 * MultiScaleFlipAug, with mmdet 2.x's keys and semantics. Randomness comes
 * only from the rng argument (numpy's draws, same distributions). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/data.h>

static void *oom(md_error *err) {
    md_failc(err, MD_ERR_NOMEM, "out of memory");
    return NULL;
}

/* Frees a transform that failed its build checks. */
static void *drop(void *t) {
    free(t);
    return NULL;
}

static void plain_destroy(md_transform *t) { free(t); }

/* ------------------------------------------------------- LoadImageFromFile */

enum { COLOR, GRAYSCALE, UNCHANGED, COLOR_IGNORE_ORIENTATION, GRAYSCALE_IGNORE_ORIENTATION };
typedef struct {
    md_transform base;
    md_image_flags flags;
    bool to_float32;
    int color_type, channel_order;   /* indices into the schema's choices */
} load_img_t;

static int load_img_apply(const md_transform *tt, md_sample *s, md_rng *rng, md_error *err) {
    (void)rng;
    const load_img_t *t = (const load_img_t *)tt;
    const char *name = s->img_info.filename;
    if (!name) return md_failc(err, MD_ERR_GENERIC, "the sample has no img_info.filename");
    char *path = md_path_join(s->img_prefix, name);
    if (!path) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    md_image *img = md_image_read_as(path, t->flags, err);
    snprintf(s->meta.filename, sizeof s->meta.filename, "%s", path);
    snprintf(s->meta.ori_filename, sizeof s->meta.ori_filename, "%s", name);
    free(path);
    if (!img) return -1;
    md_sample_set_u8(s, img->data, img->h, img->w, img->c);
    img->data = NULL;
    md_image_free(img);
    int shape[3] = { s->h, s->w, s->c };
    memcpy(s->meta.img_shape, shape, sizeof shape);
    memcpy(s->meta.ori_shape, shape, sizeof shape);
    s->meta.keys |= MD_META_FILENAME | MD_META_ORI_FILENAME | MD_META_ORI_SHAPE | MD_META_IMG_SHAPE;
    s->have |= MD_FIELD_IMG;
    return 0;
}

static const md_transform_iface load_img_iface = { load_img_apply, plain_destroy };

static const md_key load_img_keys[] = {
    { "to_float32", MD_KEY_BOOL, "false", "only false: images stay u8 until Normalize", false,
      MD_AT(load_img_t, to_float32) },
    { "color_type", MD_KEY_STRING, "\"color\"",
      "color, grayscale, unchanged, color_ignore_orientation or grayscale_ignore_orientation", false,
      MD_CHOICE_AT(load_img_t, color_type,
                   "color|grayscale|unchanged|color_ignore_orientation|grayscale_ignore_orientation") },
    { "channel_order", MD_KEY_STRING, "\"bgr\"", "bgr (mmcv's default) or rgb", false,
      MD_CHOICE_AT(load_img_t, channel_order, "bgr|rgb") },
    { "file_client_args", MD_KEY_GROUP, NULL, "accepted; local files only", false },
    { 0 } };

static void *load_img_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    load_img_t *t = md_transform_new(sizeof *t, &load_img_iface, "LoadImageFromFile", load_img_keys, cfg, err);
    if (!t) return NULL;
    if (t->to_float32) {
        md_failc(err, MD_ERR_CONFIG, "to_float32=true is not supported: Normalize makes the float image");
        return drop(t);
    }
    /* channel_order only matters for colour images */
    static const md_image_flags colour[] = { MD_IMAGE_BGR, MD_IMAGE_RGB };
    md_image_flags f = colour[t->channel_order];
    switch (t->color_type) {
    case GRAYSCALE: f = MD_IMAGE_GRAY; break;
    case UNCHANGED: f = MD_IMAGE_UNCHANGED; break;
    /* mmcv's "*_ignore_orientation" types: OpenCV's IMREAD_IGNORE_ORIENTATION */
    case COLOR_IGNORE_ORIENTATION: f = (md_image_flags)(f | MD_IMAGE_IGNORE_ORIENTATION); break;
    case GRAYSCALE_IGNORE_ORIENTATION: f = (md_image_flags)(MD_IMAGE_GRAY | MD_IMAGE_IGNORE_ORIENTATION); break;
    default: break;
    }
    t->flags = f;
    return t;
}

static const md_class load_img_class = { .name = "LoadImageFromFile", .keys = load_img_keys,
    .build = load_img_build, MD_IFACE(&load_img_iface, MD_IFACE_TRANSFORM), .doc = "read the image (JPEG/PNG), u8 HWC" };

/* --------------------------------------------------------- LoadAnnotations */

typedef struct { md_transform base; bool with_bbox, with_label, with_mask, with_seg, poly2mask, denorm_bbox; } load_ann_t;

/* _load_masks: the dataset's segmentations for an image of img_info's
 * height and width, as BitmapMasks (poly2mask) or PolygonMasks. */
static int load_masks(const load_ann_t *t, md_sample *s, md_error *err) {
    const md_ann_info *a = &s->ann;
    if (a->n > 0 && !a->masks)
        return md_failc(err, MD_ERR_CONFIG, "with_mask: the dataset has no segmentations for this image's %d boxes",
                        a->n);
    int h = s->img_info.height, w = s->img_info.width;
    if (h <= 0 || w <= 0) h = s->h, w = s->w;
    md_masks_free(&s->gt_masks);
    if (md_masks_from_anns(&s->gt_masks, a->masks, a->n, h, w, t->poly2mask, err)) return -1;
    s->have |= MD_FIELD_GT_MASKS;
    return 0;
}

static int load_ann_apply(const md_transform *tt, md_sample *s, md_rng *rng, md_error *err) {
    (void)rng;
    const load_ann_t *t = (const load_ann_t *)tt;
    const md_ann_info *a = &s->ann;
    if (t->with_mask && load_masks(t, s, err)) return -1;
    if (!t->with_bbox && !t->with_label) return 0;
    md_boxes_free(&s->gt_bboxes);
    md_boxes_free(&s->gt_bboxes_ignore);
    if (md_boxes_reserve(&s->gt_bboxes, a->n > 0 ? a->n : 1, t->with_label) ||
        md_boxes_reserve(&s->gt_bboxes_ignore, a->n_ignore > 0 ? a->n_ignore : 1, false))
        return md_failc(err, MD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < a->n; i++) md_boxes_push(&s->gt_bboxes, a->bboxes + 4 * i, a->labels ? a->labels[i] : 0);
    for (int i = 0; i < a->n_ignore; i++) md_boxes_push(&s->gt_bboxes_ignore, a->bboxes_ignore + 4 * i, 0);
    if (t->with_bbox) s->have |= MD_FIELD_GT_BBOXES | MD_FIELD_GT_BBOXES_IGNORE;
    if (t->with_label) s->have |= MD_FIELD_GT_LABELS;
    return 0;
}

static const md_transform_iface load_ann_iface = { load_ann_apply, plain_destroy };

static const md_key load_ann_keys[] = {
    { "with_bbox", MD_KEY_BOOL, "true", "load gt_bboxes and gt_bboxes_ignore", false, MD_AT(load_ann_t, with_bbox) },
    { "with_label", MD_KEY_BOOL, "true", "load gt_labels", false, MD_AT(load_ann_t, with_label) },
    { "with_mask", MD_KEY_BOOL, "false", "load gt_masks (instance segmentations)", false,
      MD_AT(load_ann_t, with_mask) },
    { "with_seg", MD_KEY_BOOL, "false", "semantic maps: not supported", false, MD_AT(load_ann_t, with_seg) },
    { "poly2mask", MD_KEY_BOOL, "true", "masks as bitmaps (true) or polygons", false, MD_AT(load_ann_t, poly2mask) },
    { "denorm_bbox", MD_KEY_BOOL, "false", "boxes are in pixels already", false, MD_AT(load_ann_t, denorm_bbox) },
    { "file_client_args", MD_KEY_GROUP, NULL, "accepted; local files only", false },
    { 0 } };

static void *load_ann_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    load_ann_t *t = md_transform_new(sizeof *t, &load_ann_iface, "LoadAnnotations", load_ann_keys, cfg, err);
    if (t && (t->with_seg || t->denorm_bbox)) {
        md_failc(err, MD_ERR_CONFIG, "with_seg and denorm_bbox are not supported");
        return drop(t);
    }
    return t;
}

static const md_class load_ann_class = { .name = "LoadAnnotations", .keys = load_ann_keys,
    .build = load_ann_build, MD_IFACE(&load_ann_iface, MD_IFACE_TRANSFORM), .doc = "copy the dataset's boxes, labels and masks" };

/* ------------------------------------------------------------------ Resize */

#define MAX_SCALES 32
typedef struct {
    md_transform base;
    int n_scales;
    int scales[MAX_SCALES][2];   /* (w, h) as written in the config */
    int multiscale_mode;         /* MODE_RANGE or MODE_VALUE */
    bool keep_ratio, clip, has_ratio;
    double ratio[2];
} resize_t;

enum { MODE_RANGE, MODE_VALUE };

/* mmcv.rescale_size: the largest factor that fits the long edge into
 * max(scale) and the short edge into min(scale); sizes rounded half up. */
static void rescale_size(int w, int h, const int scale[2], int *nw, int *nh) {
    double lng = scale[0] > scale[1] ? scale[0] : scale[1], sht = scale[0] > scale[1] ? scale[1] : scale[0];
    double f1 = lng / (w > h ? w : h), f2 = sht / (w > h ? h : w);
    double f = f1 < f2 ? f1 : f2;
    *nw = (int)(w * f + 0.5);
    *nh = (int)(h * f + 0.5);
}

static void scale_boxes(md_boxes *b, const float sf[4], int w, int h, bool clip) {
    for (int i = 0; i < b->n; i++)
        for (int k = 0; k < 4; k++) {
            float v = b->xyxy[4 * i + k] * sf[k];
            if (clip) {
                float lim = (float)(k % 2 ? h : w);
                v = v < 0 ? 0 : v > lim ? lim : v;
            }
            b->xyxy[4 * i + k] = v;
        }
}

static int resize_apply(const md_transform *tt, md_sample *s, md_rng *rng, md_error *err) {
    const resize_t *t = (const resize_t *)tt;
    if (!s->img_u8) return md_failc(err, MD_ERR_GENERIC, "Resize needs the u8 image (place it before Normalize)");
    if (!s->scale_set) {
        if (t->n_scales == 0) return md_failc(err, MD_ERR_CONFIG, "img_scale is None and no scale was chosen");
        if (t->has_ratio) {
            double r = md_rng_uniform(rng) * (t->ratio[1] - t->ratio[0]) + t->ratio[0];
            s->scale[0] = (int)(t->scales[0][0] * r);
            s->scale[1] = (int)(t->scales[0][1] * r);
        } else if (t->n_scales == 1) {
            s->scale[0] = t->scales[0][0];
            s->scale[1] = t->scales[0][1];
        } else if (t->multiscale_mode == MODE_RANGE) {
            int lmin = 1 << 30, lmax = 0, smin = 1 << 30, smax = 0;
            for (int i = 0; i < t->n_scales; i++) {
                int l = t->scales[i][0] > t->scales[i][1] ? t->scales[i][0] : t->scales[i][1];
                int sh = t->scales[i][0] > t->scales[i][1] ? t->scales[i][1] : t->scales[i][0];
                if (l < lmin) lmin = l;
                if (l > lmax) lmax = l;
                if (sh < smin) smin = sh;
                if (sh > smax) smax = sh;
            }
            s->scale[0] = lmin + (int)md_rng_int(rng, lmax - lmin + 1);
            s->scale[1] = smin + (int)md_rng_int(rng, smax - smin + 1);
        } else {
            int i = (int)md_rng_int(rng, t->n_scales);
            s->scale[0] = t->scales[i][0];
            s->scale[1] = t->scales[i][1];
        }
        s->scale_set = true;
    }
    int nw, nh;
    if (t->keep_ratio) rescale_size(s->w, s->h, s->scale, &nw, &nh);
    else nw = s->scale[0], nh = s->scale[1];
    if (nw < 1 || nh < 1)
        return md_failc(err, MD_ERR_GENERIC, "Resize: %dx%d image to scale (%d, %d) gives %dx%d", s->w, s->h,
                        s->scale[0], s->scale[1], nw, nh);
    float sf[4] = { (float)nw / s->w, (float)nh / s->h, (float)nw / s->w, (float)nh / s->h };
    if (nw != s->w || nh != s->h) {
        uint8_t *dst = malloc((size_t)nw * nh * s->c);
        if (!dst) return md_failc(err, MD_ERR_NOMEM, "out of memory resizing to %dx%d", nw, nh);
        if (md_image_resize_bilinear(s->img_u8, s->h, s->w, s->c, dst, nh, nw) != 0) {
            free(dst);
            return md_failc(err, MD_ERR_NOMEM, "out of memory resizing to %dx%d", nw, nh);
        }
        md_sample_set_u8(s, dst, nh, nw, s->c);
    }
    int shape[3] = { nh, nw, s->c };
    memcpy(s->meta.img_shape, shape, sizeof shape);
    memcpy(s->meta.pad_shape, shape, sizeof shape);
    memcpy(s->meta.scale_factor, sf, sizeof sf);
    s->keep_ratio = t->keep_ratio;
    s->meta.keys |= MD_META_IMG_SHAPE | MD_META_PAD_SHAPE | MD_META_SCALE_FACTOR;
    scale_boxes(&s->gt_bboxes, sf, nw, nh, t->clip);
    scale_boxes(&s->gt_bboxes_ignore, sf, nw, nh, t->clip);
    /* _resize_masks: rescale(scale) from the masks' own size, or resize to
     * img_shape */
    if (s->have & MD_FIELD_GT_MASKS) {
        md_masks *m = &s->gt_masks;
        int mw = nw, mh = nh;
        if (t->keep_ratio) rescale_size(m->w, m->h, s->scale, &mw, &mh);
        if (md_masks_resize(m, mh, mw, err)) return -1;
    }
    return 0;
}

static const md_transform_iface resize_iface = { resize_apply, plain_destroy };

static const md_key resize_keys[] = {
    { "img_scale", MD_KEY_ANY, NULL, "(w, h) or a list of them", false },
    { "multiscale_mode", MD_KEY_STRING, "\"range\"", "range or value", false,
      MD_CHOICE_AT(resize_t, multiscale_mode, "range|value") },
    { "ratio_range", MD_KEY_ANY, NULL, "(min, max) ratio applied to the single img_scale", false },
    { "keep_ratio", MD_KEY_BOOL, "true", "mmcv.imrescale (fit inside the scale) or exact size", false,
      MD_AT(resize_t, keep_ratio) },
    { "bbox_clip_border", MD_KEY_BOOL, "true", "clip boxes to the image", false, MD_AT(resize_t, clip) },
    { "backend", MD_KEY_STRING, "\"cv2\"", "cv2 (OpenCV-compatible bilinear)", false },
    { "interpolation", MD_KEY_STRING, "\"bilinear\"", "bilinear only", false, .choices = "bilinear" },
    { "override", MD_KEY_BOOL, "false", "accepted", false },
    { 0 } };

/* A scale list: (w, h) or [(w, h), ...]. Returns the count or -1. */
static int read_scales(const md_cfg *node, int out[][2], int max, const char *key, md_error *err) {
    if (!node || md_cfg_kind(node) == MD_CFG_NONE) return 0;
    if (md_cfg_kind(node) != MD_CFG_LIST || md_cfg_len(node) == 0) goto bad;
    if (md_cfg_kind(md_cfg_at(node, 0)) != MD_CFG_LIST) {
        if (md_cfg_len(node) != 2) goto bad;
        out[0][0] = (int)md_cfg_as_int(md_cfg_at(node, 0));
        out[0][1] = (int)md_cfg_as_int(md_cfg_at(node, 1));
        return 1;
    }
    int n = md_cfg_len(node);
    if (n > max) goto bad;
    for (int i = 0; i < n; i++) {
        const md_cfg *it = md_cfg_at(node, i);
        if (md_cfg_kind(it) != MD_CFG_LIST || md_cfg_len(it) != 2) goto bad;
        out[i][0] = (int)md_cfg_as_int(md_cfg_at(it, 0));
        out[i][1] = (int)md_cfg_as_int(md_cfg_at(it, 1));
    }
    return n;
bad:
    return md_failc(err, MD_ERR_CONFIG, "%s must be (w, h) or a list of at most %d (w, h) pairs (%s:%d)", key, max,
                    md_cfg_file(node) ? md_cfg_file(node) : "?", md_cfg_line(node));
}

static void *resize_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    resize_t *t = md_transform_new(sizeof *t, &resize_iface, "Resize", resize_keys, cfg, err);
    if (!t) return NULL;
    int n = t->n_scales = read_scales(md_cfg_get(cfg, "img_scale"), t->scales, MAX_SCALES, "img_scale", err);
    if (n < 0) return drop(t);
    const md_cfg *rr = md_cfg_get(cfg, "ratio_range");
    if (rr && md_cfg_kind(rr) != MD_CFG_NONE) {
        if (md_cfg_float_array(cfg, "ratio_range", t->ratio, 2, err) != 2 || n != 1) {
            if (!md_error_is_set(err))
                md_failc(err, MD_ERR_CONFIG, "ratio_range needs two numbers and exactly one img_scale");
            return drop(t);
        }
        t->has_ratio = true;
    }
    return t;
}

static const md_class resize_class = { .name = "Resize", .keys = resize_keys, .build = resize_build,
    MD_IFACE(&resize_iface, MD_IFACE_TRANSFORM), .doc = "resize image and boxes (mmdet's Resize)" };

/* -------------------------------------------------------------- RandomFlip */

typedef struct {
    md_transform base;
    int n;                         /* directions */
    md_flip_dir dirs[3];
    double p[4];                   /* probability of each direction, then of no flip */
    const md_cfg *flip_ratio, *direction;   /* NULL: None */
} flip_t;

static md_flip_dir parse_dir(const char *s) {
    return !s ? MD_FLIP_NONE : !strcmp(s, "horizontal") ? MD_FLIP_HORIZONTAL : !strcmp(s, "vertical") ? MD_FLIP_VERTICAL
         : !strcmp(s, "diagonal") ? MD_FLIP_DIAGONAL : MD_FLIP_NONE;
}

static void flip_boxes(md_boxes *b, md_flip_dir d, int w, int h) {
    for (int i = 0; i < b->n; i++) {
        float *x = b->xyxy + 4 * i;
        if (d == MD_FLIP_HORIZONTAL || d == MD_FLIP_DIAGONAL) {
            float x1 = x[0];
            x[0] = w - x[2];
            x[2] = w - x1;
        }
        if (d == MD_FLIP_VERTICAL || d == MD_FLIP_DIAGONAL) {
            float y1 = x[1];
            x[1] = h - x[3];
            x[3] = h - y1;
        }
    }
}

/* Flips an image of `n` planes of h x w pixels with `px` elements of `es`
 * bytes each (HWC: one plane, px = c; CHW: c planes, px = 1). */
static void flip_image(void *data, int planes, int h, int w, int px, size_t es, md_flip_dir d) {
    size_t pix = (size_t)px * es, row = (size_t)w * pix;
    char tmp[64];
    for (int p = 0; p < planes; p++) {
        char *base = (char *)data + (size_t)p * h * row;
        if (d == MD_FLIP_HORIZONTAL || d == MD_FLIP_DIAGONAL)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w / 2; x++) {
                    char *a = base + y * row + x * pix, *b = base + y * row + (size_t)(w - 1 - x) * pix;
                    memcpy(tmp, a, pix);
                    memcpy(a, b, pix);
                    memcpy(b, tmp, pix);
                }
        if (d == MD_FLIP_VERTICAL || d == MD_FLIP_DIAGONAL)
            for (int y = 0; y < h / 2; y++)
                for (size_t k = 0; k < row; k++) {
                    char *a = base + y * row + k, *b = base + (size_t)(h - 1 - y) * row + k, c = *a;
                    *a = *b;
                    *b = c;
                }
    }
}

static int flip_apply(const md_transform *tt, md_sample *s, md_rng *rng, md_error *err) {
    const flip_t *t = (const flip_t *)tt;
    (void)err;
    if (!s->flip_set) {
        /* np.random.choice(directions + [None], p=ratios + [1 - sum]). */
        double u = md_rng_uniform(rng), acc = 0;
        md_flip_dir d = MD_FLIP_NONE;
        for (int i = 0; i < t->n; i++) {
            acc += t->p[i];
            if (u < acc) {
                d = t->dirs[i];
                break;
            }
        }
        s->meta.flip = d != MD_FLIP_NONE;
        s->meta.flip_direction = d;
        s->flip_set = true;
    }
    s->meta.keys |= MD_META_FLIP | MD_META_FLIP_DIRECTION;
    if (!s->meta.flip) return 0;
    md_flip_dir d = s->meta.flip_direction;
    if (s->img_u8) flip_image(s->img_u8, 1, s->h, s->w, s->c, 1, d);
    else if (s->img_f32) flip_image(s->img_f32, s->c, s->h, s->w, 1, sizeof(float), d);
    flip_boxes(&s->gt_bboxes, d, s->meta.img_shape[1], s->meta.img_shape[0]);
    flip_boxes(&s->gt_bboxes_ignore, d, s->meta.img_shape[1], s->meta.img_shape[0]);
    if (s->have & MD_FIELD_GT_MASKS)
        md_masks_flip(&s->gt_masks, d == MD_FLIP_HORIZONTAL || d == MD_FLIP_DIAGONAL,
                      d == MD_FLIP_VERTICAL || d == MD_FLIP_DIAGONAL);
    return 0;
}

static const md_transform_iface flip_iface = { flip_apply, plain_destroy };

static const md_key flip_keys[] = {
    { "flip_ratio", MD_KEY_ANY, NULL, "probability (or one per direction); None: only as preset", false,
      MD_AT(flip_t, flip_ratio) },
    { "direction", MD_KEY_ANY, "\"horizontal\"", "horizontal, vertical, diagonal or a list", false,
      MD_AT(flip_t, direction) },
    { 0 } };

static void *flip_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    flip_t *t = md_transform_new(sizeof *t, &flip_iface, "RandomFlip", flip_keys, cfg, err);
    if (!t) return NULL;
    const md_cfg *dn = t->direction;   /* None (NULL) is no direction */
    bool dir_list = md_cfg_kind(dn) == MD_CFG_LIST;
    t->n = dir_list ? md_cfg_len(dn) : 1;
    if (t->n < 1 || t->n > 3) goto bad_dir;
    for (int i = 0; i < t->n; i++)
        if ((t->dirs[i] = parse_dir(md_cfg_as_str(dir_list ? md_cfg_at(dn, i) : dn))) == MD_FLIP_NONE) goto bad_dir;
    const md_cfg *fr = t->flip_ratio;
    double sum = 0;
    if (fr && md_cfg_kind(fr) == MD_CFG_LIST) {
        if (md_cfg_len(fr) != t->n) {
            md_failc(err, MD_ERR_CONFIG, "flip_ratio has %d values for %d directions", md_cfg_len(fr), t->n);
            free(t);
            return NULL;
        }
        for (int i = 0; i < t->n; i++) sum += (t->p[i] = md_cfg_as_float(md_cfg_at(fr, i)));
    } else if (fr && md_cfg_kind(fr) != MD_CFG_NONE) {
        double r = md_cfg_as_float(fr);
        for (int i = 0; i < t->n; i++) t->p[i] = r / t->n;
        sum = r;
    }
    for (int i = 0; i < t->n; i++)
        if (t->p[i] < 0 || t->p[i] > 1) sum = 2;
    if (sum < 0 || sum > 1) {
        md_failc(err, MD_ERR_CONFIG, "flip_ratio must be in [0, 1] (summing to at most 1), got %g", sum);
        free(t);
        return NULL;
    }
    return t;
bad_dir:
    md_failc(err, MD_ERR_CONFIG, "direction must be horizontal, vertical, diagonal or a list of them");
    free(t);
    return NULL;
}

static const md_class flip_class = { .name = "RandomFlip", .keys = flip_keys, .build = flip_build,
    MD_IFACE(&flip_iface, MD_IFACE_TRANSFORM), .doc = "flip image, boxes and masks with a probability" };

/* --------------------------------------------------------------- Normalize */

typedef struct { md_transform base; double mean[3], std[3]; bool to_rgb; } norm_t;

/* u8 HWC -> f32 CHW; channel order swapped when to_rgb (mmcv: BGR -> RGB). */
static int to_f32_chw(md_sample *s, const double *mean, const double *std, bool swap, md_error *err) {
    size_t hw = (size_t)s->h * s->w;
    float *f = malloc(hw * s->c * sizeof *f + 1);
    if (!f) return md_failc(err, MD_ERR_NOMEM, "out of memory for a %dx%d float image", s->w, s->h);
    for (int ch = 0; ch < s->c; ch++) {
        int src = swap && s->c == 3 ? 2 - ch : ch;
        double m = mean ? mean[ch < 3 ? ch : 2] : 0, inv = std ? 1.0 / std[ch < 3 ? ch : 2] : 1;
        float *o = f + ch * hw;
        const uint8_t *in = s->img_u8 + src;
        for (size_t i = 0; i < hw; i++) o[i] = (float)((in[i * s->c] - m) * inv);
    }
    free(s->img_u8);
    s->img_u8 = NULL;
    s->img_f32 = f;
    return 0;
}

static int norm_apply(const md_transform *tt, md_sample *s, md_rng *rng, md_error *err) {
    (void)rng;
    const norm_t *t = (const norm_t *)tt;
    if (!s->img_u8) return md_failc(err, MD_ERR_GENERIC, "Normalize needs the u8 image (is it applied twice?)");
    if (to_f32_chw(s, t->mean, t->std, t->to_rgb, err)) return -1;
    for (int i = 0; i < 3; i++) {
        s->meta.mean[i] = (float)t->mean[i];
        s->meta.std[i] = (float)t->std[i];
    }
    s->meta.to_rgb = t->to_rgb;
    s->meta.keys |= MD_META_IMG_NORM_CFG;
    return 0;
}

static const md_transform_iface norm_iface = { norm_apply, plain_destroy };

static const md_key norm_keys[] = {
    { "mean", MD_KEY_LIST, NULL, "per-channel mean (after to_rgb)", true },
    { "std", MD_KEY_LIST, NULL, "per-channel std", true },
    { "to_rgb", MD_KEY_BOOL, "true", "swap BGR to RGB first", false, MD_AT(norm_t, to_rgb) },
    { 0 } };

static void *norm_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    norm_t *t = md_transform_new(sizeof *t, &norm_iface, "Normalize", norm_keys, cfg, err);
    if (!t) return NULL;
    if (md_cfg_float_array(cfg, "mean", t->mean, 3, err) != 3 || md_cfg_float_array(cfg, "std", t->std, 3, err) != 3) {
        if (!md_error_is_set(err)) md_failc(err, MD_ERR_CONFIG, "mean and std need 3 values each");
        return drop(t);
    }
    for (int i = 0; i < 3; i++)
        if (t->std[i] == 0) {
            md_failc(err, MD_ERR_CONFIG, "std[%d] is 0", i);
            return drop(t);
        }
    return t;
}

static const md_class norm_class = { .name = "Normalize", .keys = norm_keys, .build = norm_build,
    MD_IFACE(&norm_iface, MD_IFACE_TRANSFORM), .doc = "(img - mean) / std, u8 HWC -> f32 CHW" };

/* --------------------------------------------------------------------- Pad */

typedef struct {
    md_transform base;
    int size[2];
    int divisor;
    bool square;
    double val, mask_val;
    const md_cfg *size_cfg, *divisor_cfg, *pad_val;   /* NULL: None */
} pad_t;

static int pad_apply(const md_transform *tt, md_sample *s, md_rng *rng, md_error *err) {
    (void)rng;
    const pad_t *t = (const pad_t *)tt;
    int ph = s->h, pw = s->w;
    if (t->square) ph = pw = s->h > s->w ? s->h : s->w;
    if (t->size[0] > 0) {
        ph = t->size[0];
        pw = t->size[1];
        if (ph < s->h || pw < s->w)
            return md_failc(err, MD_ERR_GENERIC, "Pad: size (%d, %d) is smaller than the %dx%d image", ph, pw,
                            s->h, s->w);
    } else if (t->divisor > 0) {
        ph = (ph + t->divisor - 1) / t->divisor * t->divisor;
        pw = (pw + t->divisor - 1) / t->divisor * t->divisor;
    }
    if (ph != s->h || pw != s->w) {
        size_t n = (size_t)ph * pw * s->c;
        if (s->img_u8) {
            uint8_t *d = malloc(n), v = (uint8_t)t->val;
            if (!d) return md_failc(err, MD_ERR_NOMEM, "out of memory padding to %dx%d", pw, ph);
            memset(d, v, n);
            for (int y = 0; y < s->h; y++)
                memcpy(d + (size_t)y * pw * s->c, s->img_u8 + (size_t)y * s->w * s->c, (size_t)s->w * s->c);
            free(s->img_u8);
            s->img_u8 = d;
        } else if (s->img_f32) {
            float *d = malloc(n * sizeof *d);
            if (!d) return md_failc(err, MD_ERR_NOMEM, "out of memory padding to %dx%d", pw, ph);
            for (size_t i = 0; i < n; i++) d[i] = (float)t->val;
            for (int ch = 0; ch < s->c; ch++)
                for (int y = 0; y < s->h; y++)
                    memcpy(d + ((size_t)ch * ph + y) * pw, s->img_f32 + ((size_t)ch * s->h + y) * s->w,
                           (size_t)s->w * sizeof *d);
            free(s->img_f32);
            s->img_f32 = d;
        } else {
            return md_failc(err, MD_ERR_GENERIC, "Pad: no image loaded");
        }
        s->h = ph;
        s->w = pw;
    }
    s->meta.pad_shape[0] = ph;
    s->meta.pad_shape[1] = pw;
    s->meta.pad_shape[2] = s->c;
    s->meta.keys |= MD_META_PAD_SHAPE;
    /* _pad_masks: to pad_shape with pad_val['masks'] */
    if ((s->have & MD_FIELD_GT_MASKS) && md_masks_pad(&s->gt_masks, ph, pw, (uint8_t)t->mask_val, err))
        return md_error_wrap(err, "Pad");
    return 0;
}

static const md_transform_iface pad_iface = { pad_apply, plain_destroy };

static const md_key pad_keys[] = {
    { "size", MD_KEY_ANY, NULL, "(h, w) to pad to", false, MD_AT(pad_t, size_cfg) },
    { "size_divisor", MD_KEY_ANY, NULL, "pad h and w up to multiples of this", false, MD_AT(pad_t, divisor_cfg) },
    { "pad_to_square", MD_KEY_BOOL, "false", "pad to max(h, w) squared", false, MD_AT(pad_t, square) },
    { "pad_val", MD_KEY_ANY, "{ img = 0; masks = 0; seg = 255; }", "a number or {img, masks, seg}", false,
      MD_AT(pad_t, pad_val) },
    { 0 } };

static void *pad_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    pad_t *t = md_transform_new(sizeof *t, &pad_iface, "Pad", pad_keys, cfg, err);
    if (!t) return NULL;
    int64_t size[2] = { 0, 0 };
    bool has_size = t->size_cfg != NULL, has_div = t->divisor_cfg != NULL;
    if (has_size && md_cfg_int_array(cfg, "size", size, 2, err) != 2) {
        if (!md_error_is_set(err)) md_failc(err, MD_ERR_CONFIG, "size must be (h, w)");
        return drop(t);
    }
    if (has_size && has_div) {
        md_failc(err, MD_ERR_CONFIG, "give size or size_divisor, not both");
        return drop(t);
    }
    if (!has_size && !has_div && !t->square) {
        md_failc(err, MD_ERR_CONFIG, "give size or size_divisor (or pad_to_square)");
        return drop(t);
    }
    t->size[0] = (int)size[0];
    t->size[1] = (int)size[1];
    t->divisor = has_div ? (int)md_cfg_as_int(t->divisor_cfg) : 0;
    const md_cfg *pv = t->pad_val;
    t->val = !pv ? 0 : md_cfg_kind(pv) == MD_CFG_GROUP ? md_cfg_float(pv, "img", 0) : md_cfg_as_float(pv);
    /* a number pads the image only: masks keep 0 (mmdet's dict(img=v, masks=0, seg=255)) */
    t->mask_val = pv && md_cfg_kind(pv) == MD_CFG_GROUP ? md_cfg_float(pv, "masks", 0) : 0;
    return t;
}

static const md_class pad_class = { .name = "Pad", .keys = pad_keys, .build = pad_build, MD_IFACE(&pad_iface, MD_IFACE_TRANSFORM),
    .doc = "pad image and masks right and bottom to a size or a multiple" };

/* ------------------------------------------------------------ ImageToTensor */
/* mmdet's ImageToTensor(keys=['img']): HWC -> CHW as a float tensor, values
 * unchanged; an image Normalize already made f32 CHW passes through. */
static int to_tensor_apply(const md_transform *tt, md_sample *s, md_rng *rng, md_error *err) {
    (void)tt;
    (void)rng;
    return s->img_u8 ? to_f32_chw(s, NULL, NULL, false, err) : 0;
}

static const md_transform_iface to_tensor_iface = { to_tensor_apply, plain_destroy };
static const md_key to_tensor_keys[] = { { "keys", MD_KEY_LIST, "[\"img\"]", "only img", false }, { 0 } };

static void *to_tensor_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    const md_cfg *keys = md_cfg_get(cfg, "keys");
    for (int i = 0; keys && i < md_cfg_len(keys); i++) {
        const char *k = md_cfg_as_str(md_cfg_at(keys, i));
        if (!k || strcmp(k, "img")) {
            md_failc(err, MD_ERR_CONFIG, "ImageToTensor: only the key \"img\" is supported, got %s", k ? k : "?");
            return NULL;
        }
    }
    md_transform *t = calloc(1, sizeof *t);
    if (!t) return oom(err);
    t->iface = &to_tensor_iface;
    t->type = "ImageToTensor";
    return t;
}

static const md_class to_tensor_class = { .name = "ImageToTensor", .keys = to_tensor_keys,
    .build = to_tensor_build, MD_IFACE(&to_tensor_iface, MD_IFACE_TRANSFORM), .doc = "image as an f32 CHW tensor (values unchanged)" };

/* ----------------------------------------------------- DefaultFormatBundle */

static int bundle_apply(const md_transform *tt, md_sample *s, md_rng *rng, md_error *err) {
    (void)tt;
    (void)rng;
    if (s->img_u8 && to_f32_chw(s, NULL, NULL, false, err)) return -1;
    /* mmdet's _add_default_meta_keys. */
    if (!(s->meta.keys & MD_META_PAD_SHAPE)) {
        s->meta.pad_shape[0] = s->h;
        s->meta.pad_shape[1] = s->w;
        s->meta.pad_shape[2] = s->c;
    }
    s->meta.keys |= MD_META_PAD_SHAPE | MD_META_SCALE_FACTOR | MD_META_IMG_NORM_CFG;
    return 0;
}

static const md_transform_iface bundle_iface = { bundle_apply, plain_destroy };
typedef struct { md_transform base; bool img_to_float; } bundle_t;
static const md_key bundle_keys[] = {
    { "img_to_float", MD_KEY_BOOL, "true", "images become f32 CHW", false, MD_AT(bundle_t, img_to_float) },
    { "pad_val", MD_KEY_ANY, NULL, "used by collate (0)", false },
    { 0 } };

static void *bundle_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    bundle_t *t = md_transform_new(sizeof *t, &bundle_iface, "DefaultFormatBundle", bundle_keys, cfg, err);
    if (t && !t->img_to_float) {
        md_failc(err, MD_ERR_CONFIG, "img_to_float=false is not supported: batches are f32");
        return drop(t);
    }
    return t;
}

static const md_class bundle_class = { .name = "DefaultFormatBundle", .keys = bundle_keys,
    .build = bundle_build, MD_IFACE(&bundle_iface, MD_IFACE_TRANSFORM), .doc = "f32 CHW image and default metas" };

/* ----------------------------------------------------------------- Collect */

typedef struct { md_transform base; unsigned keys, meta; } collect_t;

static const struct { const char *name; unsigned bit; } meta_names[] = {
    { "filename", MD_META_FILENAME }, { "ori_filename", MD_META_ORI_FILENAME }, { "ori_shape", MD_META_ORI_SHAPE },
    { "img_shape", MD_META_IMG_SHAPE }, { "pad_shape", MD_META_PAD_SHAPE },
    { "scale_factor", MD_META_SCALE_FACTOR }, { "flip", MD_META_FLIP }, { "flip_direction", MD_META_FLIP_DIRECTION },
    { "img_norm_cfg", MD_META_IMG_NORM_CFG },
};
static const struct { const char *name; unsigned bit; } key_names[] = {
    { "img", MD_FIELD_IMG }, { "gt_bboxes", MD_FIELD_GT_BBOXES }, { "gt_labels", MD_FIELD_GT_LABELS },
    { "gt_bboxes_ignore", MD_FIELD_GT_BBOXES_IGNORE }, { "gt_masks", MD_FIELD_GT_MASKS },
};

static int collect_apply(const md_transform *tt, md_sample *s, md_rng *rng, md_error *err) {
    (void)rng;
    const collect_t *t = (const collect_t *)tt;
    unsigned missing = t->keys & ~s->have;
    for (size_t i = 0; i < sizeof key_names / sizeof *key_names; i++)
        if (missing & key_names[i].bit)
            return md_failc(err, MD_ERR_GENERIC, "Collect: key '%s' is not in the results (load it first)",
                            key_names[i].name);
    s->collected = t->keys;
    s->meta.keys &= t->meta;
    if (!(t->keys & MD_FIELD_GT_BBOXES_IGNORE)) md_boxes_free(&s->gt_bboxes_ignore);
    if (!(t->keys & MD_FIELD_GT_LABELS)) {
        free(s->gt_bboxes.labels);
        s->gt_bboxes.labels = NULL;
    }
    if (!(t->keys & MD_FIELD_GT_BBOXES)) md_boxes_free(&s->gt_bboxes);
    if (!(t->keys & MD_FIELD_GT_MASKS)) md_masks_free(&s->gt_masks);
    return 0;
}

static const md_transform_iface collect_iface = { collect_apply, plain_destroy };
static const md_key collect_keys[] = {
    { "keys", MD_KEY_LIST, NULL, "img, gt_bboxes, gt_labels, gt_bboxes_ignore, gt_masks", true },
    { "meta_keys", MD_KEY_LIST,
      "[\"filename\", \"ori_filename\", \"ori_shape\", \"img_shape\", \"pad_shape\", \"scale_factor\", \"flip\", "
      "\"flip_direction\", \"img_norm_cfg\"]", "image metas kept", false },
    { 0 } };

static int name_bits(const md_cfg *list, const char *what, bool metas, unsigned *out, md_error *err) {
    *out = 0;
    for (int i = 0; list && i < md_cfg_len(list); i++) {
        const char *n = md_cfg_as_str(md_cfg_at(list, i));
        bool found = false;
        size_t cnt = metas ? sizeof meta_names / sizeof *meta_names : sizeof key_names / sizeof *key_names;
        for (size_t k = 0; n && k < cnt; k++)
            if (!strcmp(n, metas ? meta_names[k].name : key_names[k].name)) {
                *out |= metas ? meta_names[k].bit : key_names[k].bit;
                found = true;
            }
        if (!found)
            return md_failc(err, MD_ERR_CONFIG, "%s: '%s' is not supported (%s:%d)", what, n ? n : "(not a string)",
                            md_cfg_file(list) ? md_cfg_file(list) : "?", md_cfg_line(list));
    }
    return 0;
}

static void *collect_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    collect_t *t = md_transform_new(sizeof *t, &collect_iface, "Collect", collect_keys, cfg, err);
    if (t && (name_bits(md_cfg_get(cfg, "keys"), "keys", false, &t->keys, err) ||
              name_bits(md_cfg_get(cfg, "meta_keys"), "meta_keys", true, &t->meta, err)))
        return drop(t);
    return t;
}

static const md_class collect_class = { .name = "Collect", .keys = collect_keys, .build = collect_build,
    MD_IFACE(&collect_iface, MD_IFACE_TRANSFORM), .doc = "keep the listed keys and image metas" };

/* ------------------------------------------------------- MultiScaleFlipAug */

typedef struct {
    md_transform base;
    md_pipeline *inner;
    int n_scales;
    int scales[MAX_SCALES][2];
    bool flip;
    int n_dirs;
    md_flip_dir dirs[3];
    const md_cfg *scale_factor, *flip_direction;   /* NULL: None */
} msfa_t;

static int msfa_apply(const md_transform *tt, md_sample *s, md_rng *rng, md_error *err) {
    const msfa_t *t = (const msfa_t *)tt;
    int n_flip = 1 + (t->flip ? t->n_dirs : 0), total = t->n_scales * n_flip;
    md_sample *augs = calloc((size_t)total, sizeof *augs);
    if (!augs) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < t->n_scales; i++)
        for (int f = 0; f < n_flip; f++, k++) {
            if (md_sample_copy(&augs[k], s, err)) goto fail;
            augs[k].scale[0] = t->scales[i][0];
            augs[k].scale[1] = t->scales[i][1];
            augs[k].scale_set = true;
            augs[k].flip_set = true;
            augs[k].meta.flip = f > 0;
            augs[k].meta.flip_direction = f > 0 ? t->dirs[f - 1] : MD_FLIP_NONE;
            int rc = md_pipeline_apply(t->inner, &augs[k], rng, err);
            if (rc) {
                k++;
                if (rc > 0) md_failc(err, MD_ERR_GENERIC, "MultiScaleFlipAug: a transform dropped the sample");
                goto fail;
            }
        }
    free(s->img_u8);
    free(s->img_f32);
    s->img_u8 = NULL;
    s->img_f32 = NULL;
    s->augs = augs;
    s->n_augs = total;
    return 0;
fail:
    for (int i = 0; i < k; i++) md_sample_clear(&augs[i]);
    free(augs);
    return -1;
}

static void msfa_destroy(md_transform *tt) {
    msfa_t *t = (msfa_t *)tt;
    md_pipeline_free(t->inner);
    free(t);
}

static const md_transform_iface msfa_iface = { msfa_apply, msfa_destroy };
static const md_key msfa_keys[] = {
    { "transforms", MD_KEY_LIST, NULL, "the pipeline applied to each augmentation", true },
    { "img_scale", MD_KEY_ANY, NULL, "(w, h) or a list of them", false },
    { "scale_factor", MD_KEY_ANY, NULL, "not supported", false, MD_AT(msfa_t, scale_factor) },
    { "flip", MD_KEY_BOOL, "false", "add flipped copies", false, MD_AT(msfa_t, flip) },
    { "flip_direction", MD_KEY_ANY, "\"horizontal\"", "a direction or a list", false, MD_AT(msfa_t, flip_direction) },
    { 0 } };

static void *msfa_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    msfa_t *t = md_transform_new(sizeof *t, &msfa_iface, "MultiScaleFlipAug", msfa_keys, cfg, err);
    if (!t) return NULL;
    if (t->scale_factor) {
        md_failc(err, MD_ERR_CONFIG, "scale_factor is not supported; give img_scale");
        return drop(t);
    }
    int n = t->n_scales = read_scales(md_cfg_get(cfg, "img_scale"), t->scales, MAX_SCALES, "img_scale", err);
    if (n < 0) return drop(t);
    if (n == 0) {
        md_failc(err, MD_ERR_CONFIG, "img_scale is required");
        return drop(t);
    }
    const md_cfg *dn = t->flip_direction;   /* None (NULL) is no direction */
    bool list = md_cfg_kind(dn) == MD_CFG_LIST;
    t->n_dirs = list ? md_cfg_len(dn) : 1;
    for (int i = 0; i < t->n_dirs && i < 3; i++)
        if ((t->dirs[i] = parse_dir(md_cfg_as_str(list ? md_cfg_at(dn, i) : dn))) == MD_FLIP_NONE) {
            md_failc(err, MD_ERR_CONFIG, "flip_direction must be horizontal, vertical, diagonal or a list");
            return drop(t);
        }
    if (t->n_dirs > 3) t->n_dirs = 3;
    t->inner = md_pipeline_build(ctx, md_cfg_get(cfg, "transforms"), err);
    if (!t->inner) return drop(t);
    return t;
}

static const md_class msfa_class = { .name = "MultiScaleFlipAug", .keys = msfa_keys, .build = msfa_build,
    MD_IFACE(&msfa_iface, MD_IFACE_TRANSFORM), .doc = "test-time augmentation: scales x flips into sample.augs" };

MD_PLUGIN("transforms", "1.0", "Apache-2.0");
MD_REGISTER("pipelines", load_img_class)
MD_REGISTER("pipelines", load_ann_class)
MD_REGISTER("pipelines", resize_class)
MD_REGISTER("pipelines", flip_class)
MD_REGISTER("pipelines", norm_class)
MD_REGISTER("pipelines", pad_class)
MD_REGISTER("pipelines", bundle_class)
MD_REGISTER("pipelines", to_tensor_class)
MD_REGISTER("pipelines", collect_class)
MD_REGISTER("pipelines", msfa_class)
