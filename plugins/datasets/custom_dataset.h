/* mmdet's CustomDataset, shared by the COCO and VOC plugins (header only:
 * plugins never link against each other). A loader fills the per-image
 * tables; this file provides the dataset interface over them. */
#ifndef MMDET_PLUGINS_CUSTOM_DATASET_H
#define MMDET_PLUGINS_CUSTOM_DATASET_H

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/data.h>

typedef struct custom_ds {
    md_dataset base;
    char *ann_file, *img_prefix;
    md_pipeline *pipeline;
    int64_t n;
    md_img_info *infos;        /* filenames owned */
    int64_t *off, *ign_off;    /* n + 1 offsets into gt and ignore boxes */
    md_boxes gt, ign;          /* all images' boxes, gt with labels */
    int64_t dropped;           /* boxes of non-positive size */
    /* skip_bad_images: unreadable images replaced (training), counted; the
     * loader's workers call get concurrently, hence the atomics */
    md_ctx *ctx;
    bool skip_bad;
    atomic_llong n_skipped;    /* samples replaced */
    atomic_uchar *bad;         /* per image: seen unreadable */
    char first_bad[768];       /* the first failure's message (file: reason) */
} custom_ds;

/* The keys every CustomDataset accepts (mmdet's constructor arguments). */
#define CUSTOM_DATASET_KEYS                                                                       \
    { "ann_file", MD_KEY_ANY, NULL, "annotation file (relative to data_root)", true },            \
    { "pipeline", MD_KEY_LIST, "[]", "transforms applied to each sample", false },                \
    { "classes", MD_KEY_ANY, NULL, "class names (list), a file of names, or None: the default", false }, \
    { "data_root", MD_KEY_ANY, NULL, "joined before ann_file and img_prefix", false },            \
    { "img_prefix", MD_KEY_ANY, "\"\"", "image directory", false },                                \
    { "seg_prefix", MD_KEY_ANY, NULL, "segmentation map directory (unused)", false },             \
    { "proposal_file", MD_KEY_ANY, NULL, "precomputed proposals (unsupported)", false },          \
    { "test_mode", MD_KEY_BOOL, "false", "no filtering; samples come without annotations", false }, \
    { "filter_empty_gt", MD_KEY_BOOL, "true", "drop images without ground truth in training", false }, \
    { "min_size", MD_KEY_INT, "32", "drop images whose shorter side is smaller (training)", false }, \
    { "file_client_args", MD_KEY_GROUP, NULL, "accepted for mmdet configs; local files only", false }, \
    { "skip_bad_images", MD_KEY_BOOL, "false", "training: replace a missing or corrupt image by another, counted", false }

static inline void custom_free(custom_ds *d) {
    if (!d) return;
    long long skipped = atomic_load(&d->n_skipped);
    if (skipped && d->ctx) {
        int64_t images = 0;
        for (int64_t i = 0; d->bad && i < d->n; i++) images += atomic_load(&d->bad[i]) != 0;
        md_warn(d->ctx, "%s: skipped %lld unreadable images (%lld samples replaced): first %s", d->base.type,
                (long long)images, skipped, d->first_bad);
    }
    free(d->bad);
    free(d->ann_file);
    free(d->img_prefix);
    md_pipeline_free(d->pipeline);
    for (int64_t i = 0; d->infos && i < d->n; i++) free((char *)d->infos[i].filename);
    free(d->infos);
    free(d->off);
    free(d->ign_off);
    md_boxes_free(&d->gt);
    md_boxes_free(&d->ign);
    md_classes_free(d->base.classes, d->base.n_classes);
    free(d->base.flag);
    free(d);
}

static inline void custom_destroy(md_dataset *ds) { custom_free((custom_ds *)ds); }

static inline int64_t custom_len(const md_dataset *ds) { return ((const custom_ds *)ds)->n; }

static inline int custom_ann_info(const md_dataset *ds, int64_t i, md_ann_info *out) {
    const custom_ds *d = (const custom_ds *)ds;
    if (i < 0 || i >= d->n) return -1;
    out->n = (int)(d->off[i + 1] - d->off[i]);
    out->bboxes = d->gt.xyxy ? d->gt.xyxy + 4 * d->off[i] : NULL;
    out->labels = d->gt.labels ? d->gt.labels + d->off[i] : NULL;
    out->n_ignore = (int)(d->ign_off[i + 1] - d->ign_off[i]);
    out->bboxes_ignore = d->ign.xyxy ? d->ign.xyxy + 4 * d->ign_off[i] : NULL;
    return 0;
}

static inline int custom_img_info(const md_dataset *ds, int64_t i, md_img_info *out) {
    const custom_ds *d = (const custom_ds *)ds;
    if (i < 0 || i >= d->n) return -1;
    *out = d->infos[i];
    return 0;
}

/* mmdet's _rand_another: a random index of the same aspect-ratio group. */
static inline int64_t custom_rand_another(const custom_ds *d, int64_t idx, md_rng *rng) {
    uint8_t f = d->base.flag[idx];
    int64_t count = 0;
    for (int64_t i = 0; i < d->n; i++) count += d->base.flag[i] == f;
    int64_t k = md_rng_int(rng, count);
    for (int64_t i = 0; i < d->n; i++)
        if (d->base.flag[i] == f && k-- == 0) return i;
    return idx;
}

static inline int custom_get(const md_dataset *ds, int64_t idx, md_rng *rng, md_sample *out, md_error *err) {
    const custom_ds *d = (const custom_ds *)ds;
    if (idx < 0 || idx >= d->n)
        return md_failc(err, MD_ERR_GENERIC, "%s: index %lld out of range (%lld images)", ds->type,
                        (long long)idx, (long long)d->n);
    for (int tries = 0; tries < 1000; tries++) {
        md_sample_init(out);
        md_sample_prepare(out, ds, idx, d->img_prefix);
        int rc = md_pipeline_apply(d->pipeline, out, rng, err);
        if (rc == 0) return 0;
        md_sample_clear(out);
        if (rc < 0 && d->skip_bad && !ds->test_mode && err && (err->code == MD_ERR_IO || err->code == MD_ERR_PARSE)) {
            /* mmdet's __getitem__ retries with another index; the image is counted once */
            custom_ds *m = (custom_ds *)d;
            if (atomic_fetch_add(&m->n_skipped, 1) == 0) {
                snprintf(m->first_bad, sizeof m->first_bad, "%s", err->msg);
                md_warn(d->ctx, "%s: skipping unreadable image: %s (skip_bad_images; later ones are counted)",
                        ds->type, err->msg);
            }
            if (m->bad) atomic_store(&m->bad[idx], 1);
            md_error_clear(err);
            idx = custom_rand_another(d, idx, rng);
            continue;
        }
        if (rc < 0) return -1;
        if (ds->test_mode)
            return md_failc(err, MD_ERR_GENERIC, "%s: the test pipeline dropped sample %lld (%s)", ds->type,
                            (long long)idx, d->infos[idx].filename);
        idx = custom_rand_another(d, idx, rng);
    }
    return md_failc(err, MD_ERR_GENERIC, "%s: the pipeline dropped 1000 samples in a row%s%s", ds->type,
                    d->first_bad[0] ? "; first unreadable image: " : "", d->first_bad);
}

/* Reads the common options; paths joined with data_root as mmdet does. */
static inline int custom_init(md_ctx *ctx, custom_ds *d, const md_cfg *cfg, const char *type,
                              const char *const *dflt_classes, int n_dflt, md_error *err) {
    d->base.type = type;
    d->base.test_mode = md_cfg_bool(cfg, "test_mode", false);
    d->ctx = ctx;
    d->skip_bad = md_cfg_bool(cfg, "skip_bad_images", false);
    atomic_init(&d->n_skipped, 0);
    const char *root = md_cfg_str(cfg, "data_root", NULL);
    const char *ann = md_cfg_str(cfg, "ann_file", NULL);
    if (!ann) return md_failc(err, MD_ERR_CONFIG, "ann_file must be a string");
    const char *prefix = md_cfg_str(cfg, "img_prefix", NULL);
    d->ann_file = md_path_join(root, ann);
    d->img_prefix = prefix ? md_path_join(root, prefix) : NULL;
    if (!d->ann_file || (prefix && !d->img_prefix)) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    int nc = md_classes_from_cfg(cfg, "classes", dflt_classes, n_dflt, &d->base.classes, err);
    if (nc < 0) return -1;
    d->base.n_classes = nc;
    if (md_cfg_get(cfg, "proposal_file") && md_cfg_kind(md_cfg_get(cfg, "proposal_file")) != MD_CFG_NONE)
        return md_failc(err, MD_ERR_CONFIG, "proposal_file is not supported");
    d->pipeline = md_pipeline_build(ctx, md_cfg_get(cfg, "pipeline"), err);
    return d->pipeline ? 0 : -1;
}

/* Group flags: 1 when w / h > 1 (mmdet's _set_group_flag). */
static inline int custom_set_flags(custom_ds *d, md_error *err) {
    d->base.flag = calloc((size_t)(d->n ? d->n : 1), 1);
    if (!d->base.flag) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < d->n; i++)
        d->base.flag[i] = d->infos[i].height > 0 && (double)d->infos[i].width / d->infos[i].height > 1.0;
    if (d->skip_bad && !(d->bad = calloc((size_t)(d->n ? d->n : 1), sizeof *d->bad)))
        return md_failc(err, MD_ERR_NOMEM, "out of memory");
    return 0;
}

/* mmdet's box checks shared by the loaders: true when the box (x, y, w, h)
 * inside an image of iw x ih is usable. */
static inline bool custom_box_ok(double x, double y, double w, double h, double area, int iw, int ih) {
    double iw_ = (x + w < iw ? x + w : iw) - (x > 0 ? x : 0);
    double ih_ = (y + h < ih ? y + h : ih) - (y > 0 ? y : 0);
    if (iw_ < 0) iw_ = 0;
    if (ih_ < 0) ih_ = 0;
    if (iw_ * ih_ == 0) return false;
    if (area <= 0 || w < 1 || h < 1) return false;
    return true;
}

#endif
