/* mmdet's CustomDataset (mmdet/datasets/custom.py) as a base class: what
 * every detection dataset shares, with the derived class's overrides
 * (custom_dataset.h). */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "mmdet/custom_dataset.h"
#include "mmdet/draw.h"
#include "mmdet/evaluation.h"

/* skip_bad_images: the loader's workers call get concurrently, hence the
 * atomics. */
struct md_custom_skip {
    atomic_llong n_skipped;        /* samples replaced */
    atomic_uchar *bad;             /* per image: seen unreadable */
    char first_bad[768];           /* the first failure's message (file: reason) */
};

static const md_custom_dataset *cd(const md_dataset *ds) { return (const md_custom_dataset *)ds; }

/* ------------------------------------------------------------ life cycle */

static void custom_free(md_custom_dataset *d) {
    if (!d) return;
    md_custom_skip *s = d->skip;
    long long skipped = s ? atomic_load(&s->n_skipped) : 0;
    if (skipped && d->ctx) {
        int64_t images = 0;
        for (int64_t i = 0; s->bad && i < d->n; i++) images += atomic_load(&s->bad[i]) != 0;
        md_warn(d->ctx, "%s: skipped %lld unreadable images (%lld samples replaced): first %s", d->base.type,
                (long long)images, skipped, s->first_bad);
    }
    if (d->cls && d->cls->destroy) d->cls->destroy(d);
    if (s) free(s->bad);
    free(s);
    free(d->ann_file);
    free(d->img_prefix);
    md_pipeline_free(d->pipeline);
    for (int64_t i = 0; d->infos && i < d->n; i++) free((char *)d->infos[i].filename);
    free(d->infos);
    free(d->off);
    free(d->ign_off);
    md_boxes_free(&d->gt);
    md_boxes_free(&d->ign);
    for (int64_t j = 0; d->masks && j < d->n_masks; j++) md_mask_ann_free(&d->masks[j]);
    free(d->masks);
    md_classes_free(d->base.classes, d->base.n_classes);
    free(d->base.flag);
    free(d);
}

/* The paths, CLASSES and the pipeline, from the keys the schema stored
 * (mmdet's __init__ before load_annotations). */
static int custom_init(md_ctx *ctx, md_custom_dataset *d, md_error *err) {
    const char *root = d->args.data_root, *prefix = d->args.img_prefix;
    if (!d->args.ann_file) return md_failc(err, MD_ERR_CONFIG, "ann_file must be a string");
    d->ann_file = md_path_join(root, d->args.ann_file);
    d->img_prefix = prefix ? md_path_join(root, prefix) : NULL;
    if (!d->ann_file || (prefix && !d->img_prefix)) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    /* get_classes: read through the node's group so messages name its file and line */
    const md_cfg *cl = d->args.classes;
    int nc = md_classes_from_cfg(cl ? md_cfg_parent(cl) : NULL, cl ? md_cfg_name(cl) : "classes", d->cls->classes,
                                 d->cls->n_classes, &d->base.classes, err);
    if (nc < 0) return -1;
    d->base.n_classes = nc;
    d->base.palette = md_palette_table(d->cls->palette, &d->base.n_palette);
    if (d->args.proposal_file) return md_failc(err, MD_ERR_CONFIG, "proposal_file is not supported");
    d->pipeline = md_pipeline_build(ctx, d->args.pipeline, err);
    if (!d->pipeline) return -1;
    if (!d->cls->classes && d->base.n_classes == 0)
        return md_failc(err, MD_ERR_CONFIG, "%s needs `classes` (it has no default class names)", d->cls->name);
    d->cap = 64;
    d->infos = calloc((size_t)d->cap, sizeof *d->infos);
    d->off = calloc((size_t)d->cap + 1, sizeof *d->off);
    d->ign_off = calloc((size_t)d->cap + 1, sizeof *d->ign_off);
    if (!d->infos || !d->off || !d->ign_off || md_boxes_reserve(&d->gt, 16, true) ||
        md_boxes_reserve(&d->ign, 16, true))
        return md_failc(err, MD_ERR_NOMEM, "out of memory");
    return 0;
}

/* Group flags: 1 when w / h > 1 (mmdet's _set_group_flag). */
static int set_group_flags(md_custom_dataset *d, md_error *err) {
    d->base.flag = calloc((size_t)(d->n ? d->n : 1), 1);
    if (!d->base.flag) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < d->n; i++)
        d->base.flag[i] = d->infos[i].height > 0 && (double)d->infos[i].width / d->infos[i].height > 1.0;
    if (d->skip_bad_images) {
        if (!(d->skip = calloc(1, sizeof *d->skip)) ||
            !(d->skip->bad = calloc((size_t)(d->n ? d->n : 1), sizeof *d->skip->bad)))
            return md_failc(err, MD_ERR_NOMEM, "out of memory");
        atomic_init(&d->skip->n_skipped, 0);
    }
    return 0;
}

/* A dataset without a results format has format_results NULL in its iface
 * (what mmdet-test checks); otherwise the two are the same. */
static const md_dataset_iface custom_iface_no_format;

MD_API md_dataset *md_custom_dataset_build(md_ctx *ctx, const md_custom_dataset_class *cls, const md_cfg *cfg,
                                           md_error *err) {
    if (!cls || !cls->name || cls->size < sizeof(md_custom_dataset) || !cls->load_annotations) {
        md_failc(err, MD_ERR_GENERIC, "%s: not a complete CustomDataset class (name, size, load_annotations)",
                 cls && cls->name ? cls->name : "?");
        return NULL;
    }
    md_custom_dataset *d = calloc(1, cls->size);
    if (!d) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    d->base.iface = cls->format_results ? &md_custom_dataset_iface : &custom_iface_no_format;
    d->base.type = cls->name;
    d->cls = cls;
    d->ctx = ctx;
    d->filter_empty_gt = true;
    d->min_size = 32;
    if (md_cfg_read_struct(cfg, cls->keys, d, cls->name, err) || custom_init(ctx, d, err) ||
        cls->load_annotations(d, err) || set_group_flags(d, err)) {
        custom_free(d);
        return NULL;
    }
    return &d->base;
}

MD_API const md_custom_dataset *md_custom_dataset_of(const md_dataset *ds) {
    return ds && (ds->iface == &md_custom_dataset_iface || ds->iface == &custom_iface_no_format) ? cd(ds) : NULL;
}

/* ------------------------------------------------------- load_annotations */

MD_API bool md_custom_dataset_keep_img(const md_custom_dataset *d, const md_img_info *img, bool has_gt) {
    if (d->base.test_mode) return true;
    if (d->cls->filter_img) return d->cls->filter_img(d, img, has_gt);
    int shorter = img->width < img->height ? img->width : img->height;
    return shorter >= d->min_size && (!d->filter_empty_gt || has_gt);
}

MD_API int md_custom_dataset_add_img(md_custom_dataset *d, char *filename, int width, int height, int64_t id,
                                     md_error *err) {
    if (!filename) return md_failc(err, MD_ERR_NOMEM, "%s: out of memory", d->ann_file);   /* a failed strdup */
    if (d->n + 1 >= d->cap) {
        int64_t cap = d->cap ? 2 * d->cap : 64;
        md_img_info *infos = realloc(d->infos, sizeof *infos * (size_t)cap);
        if (infos) d->infos = infos;
        int64_t *off = infos ? realloc(d->off, sizeof *off * (size_t)(cap + 1)) : NULL;
        if (off) d->off = off;
        int64_t *ign_off = off ? realloc(d->ign_off, sizeof *ign_off * (size_t)(cap + 1)) : NULL;
        if (!ign_off) {
            free(filename);
            return md_failc(err, MD_ERR_NOMEM, "%s: out of memory", d->ann_file);
        }
        d->ign_off = ign_off;
        d->cap = cap;
    }
    d->infos[d->n] = (md_img_info){ filename, width, height, id };
    d->off[d->n] = d->gt.n;
    d->ign_off[d->n] = d->ign.n;
    d->n++;
    d->off[d->n] = d->gt.n;
    d->ign_off[d->n] = d->ign.n;
    return 0;
}

/* The mask table grown to one entry per gt box (empty entries for boxes
 * without a segmentation). */
static int masks_fill(md_custom_dataset *d, md_error *err) {
    if (d->gt.n > d->cap_masks) {
        int64_t cap = d->cap_masks ? d->cap_masks : 64;
        while (cap < d->gt.n) cap *= 2;
        md_mask_ann *p = realloc(d->masks, sizeof *p * (size_t)cap);
        if (!p) return md_failc(err, MD_ERR_NOMEM, "%s: out of memory", d->ann_file);
        d->masks = p;
        d->cap_masks = cap;
    }
    for (; d->n_masks < d->gt.n; d->n_masks++) memset(&d->masks[d->n_masks], 0, sizeof *d->masks);
    return 0;
}

MD_API int md_custom_dataset_add_box(md_custom_dataset *d, const float xyxy[4], int64_t label, bool ignore,
                                     md_error *err) {
    if (d->n == 0) return md_failc(err, MD_ERR_GENERIC, "%s: a box before any image", d->base.type);
    md_boxes *b = ignore ? &d->ign : &d->gt;
    if (md_boxes_push(b, xyxy, label)) return md_failc(err, MD_ERR_NOMEM, "%s: out of memory", d->ann_file);
    d->off[d->n] = d->gt.n;
    d->ign_off[d->n] = d->ign.n;
    if (d->masks && !ignore && masks_fill(d, err)) return -1;
    return 0;
}

MD_API int md_custom_dataset_add_mask(md_custom_dataset *d, md_mask_ann *m, md_error *err) {
    if (d->gt.n == 0) {
        md_mask_ann_free(m);
        return md_failc(err, MD_ERR_GENERIC, "%s: a mask before any box", d->base.type);
    }
    if (masks_fill(d, err)) {
        md_mask_ann_free(m);
        return -1;
    }
    md_mask_ann_free(&d->masks[d->gt.n - 1]);
    d->masks[d->gt.n - 1] = *m;
    memset(m, 0, sizeof *m);
    return 0;
}

/* ---------------------------------------------------------------- methods */

static int default_ann_info(const md_custom_dataset *d, int64_t i, md_ann_info *out) {
    if (i < 0 || i >= d->n) return -1;
    out->n = (int)(d->off[i + 1] - d->off[i]);
    out->bboxes = d->gt.xyxy ? d->gt.xyxy + 4 * d->off[i] : NULL;
    out->labels = d->gt.labels ? d->gt.labels + d->off[i] : NULL;
    out->n_ignore = (int)(d->ign_off[i + 1] - d->ign_off[i]);
    out->bboxes_ignore = d->ign.xyxy ? d->ign.xyxy + 4 * d->ign_off[i] : NULL;
    out->masks = d->masks ? d->masks + d->off[i] : NULL;
    return 0;
}

MD_API int md_custom_dataset_get_ann_info(const md_custom_dataset *d, int64_t idx, md_ann_info *out) {
    return d->cls->get_ann_info ? d->cls->get_ann_info(d, idx, out) : default_ann_info(d, idx, out);
}

MD_API int md_custom_dataset_get_cat_ids(const md_custom_dataset *d, int64_t idx, int64_t *ids, int cap) {
    if (d->cls->get_cat_ids) return d->cls->get_cat_ids(d, idx, ids, cap);
    md_ann_info a;
    if (md_custom_dataset_get_ann_info(d, idx, &a)) return -1;
    for (int k = 0; a.labels && k < a.n && k < cap; k++) ids[k] = a.labels[k];
    return a.n;
}

/* mmdet's _rand_another: a random index of the same aspect-ratio group. */
static int64_t rand_another(const md_custom_dataset *d, int64_t idx, md_rng *rng) {
    uint8_t f = d->base.flag[idx];
    int64_t count = 0;
    for (int64_t i = 0; i < d->n; i++) count += d->base.flag[i] == f;
    int64_t k = md_rng_int(rng, count);
    for (int64_t i = 0; i < d->n; i++)
        if (d->base.flag[i] == f && k-- == 0) return i;
    return idx;
}

/* mmdet's __getitem__: prepare_train_img / prepare_test_img, retried on
 * another index while the training pipeline drops the sample. */
static int custom_get(const md_dataset *ds, int64_t idx, md_rng *rng, md_sample *out, md_error *err) {
    const md_custom_dataset *d = cd(ds);
    md_custom_skip *skip = d->skip;
    if (idx < 0 || idx >= d->n)
        return md_failc(err, MD_ERR_GENERIC, "%s: index %lld out of range (%lld images)", ds->type,
                        (long long)idx, (long long)d->n);
    for (int tries = 0; tries < 1000; tries++) {
        md_sample_init(out);
        md_sample_prepare(out, ds, idx, d->img_prefix);
        int rc = md_pipeline_apply(d->pipeline, out, rng, err);
        if (rc == 0) return 0;
        md_sample_clear(out);
        if (rc < 0 && skip && !ds->test_mode && err && (err->code == MD_ERR_IO || err->code == MD_ERR_PARSE)) {
            /* mmdet's __getitem__ retries with another index; the image is counted once */
            if (atomic_fetch_add(&skip->n_skipped, 1) == 0) {
                snprintf(skip->first_bad, sizeof skip->first_bad, "%s", err->msg);
                md_warn(d->ctx, "%s: skipping unreadable image: %s (skip_bad_images; later ones are counted)",
                        ds->type, err->msg);
            }
            atomic_store(&skip->bad[idx], 1);
            md_error_clear(err);
            idx = rand_another(d, idx, rng);
            continue;
        }
        if (rc < 0) return -1;
        if (ds->test_mode)
            return md_failc(err, MD_ERR_GENERIC, "%s: the test pipeline dropped sample %lld (%s)", ds->type,
                            (long long)idx, d->infos[idx].filename);
        idx = rand_another(d, idx, rng);
    }
    bool bad = skip && skip->first_bad[0];
    return md_failc(err, MD_ERR_GENERIC, "%s: the pipeline dropped 1000 samples in a row%s%s", ds->type,
                    bad ? "; first unreadable image: " : "", bad ? skip->first_bad : "");
}

/* mmdet rounds a metric to 3 places: round(mean_ap, 3). */
static double round3(double v) { return round(v * 1000) / 1000; }

MD_API int md_custom_dataset_evaluate_map(const md_custom_dataset *d, const md_det_result *results, int64_t n,
                                          const char *metric, const md_map_eval_opts *opts, md_metrics *out,
                                          md_error *err) {
    static const md_map_eval_opts custom = { .iou_thr = 0.5 };
    const char *type = d->base.type;
    if (!opts) opts = &custom;
    if (n != d->n)
        return md_failc(err, MD_ERR_GENERIC, "%s: %lld results for %lld images", type, (long long)n,
                        (long long)d->n);
    if (!metric) metric = "mAP";
    if (strcmp(metric, "mAP") && strcmp(metric, "recall"))
        return md_failc(err, MD_ERR_CONFIG, "%s: metric %s is not supported (mAP, recall)", type, metric);
    md_voc_gt *gts = calloc((size_t)(n ? n : 1), sizeof *gts);
    if (!gts) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        gts[i].n = (int)(d->off[i + 1] - d->off[i]);
        gts[i].bboxes = d->gt.xyxy + 4 * d->off[i];
        gts[i].labels = d->gt.labels + d->off[i];
        gts[i].n_ignore = (int)(d->ign_off[i + 1] - d->ign_off[i]);
        gts[i].bboxes_ignore = d->ign.xyxy + 4 * d->ign_off[i];
        gts[i].labels_ignore = d->ign.labels + d->ign_off[i];
    }
    int rc;
    out->n = 0;
    if (!strcmp(metric, "mAP")) {
        double map = 0;
        rc = md_voc_eval_map(results, gts, n, d->base.n_classes, opts->iou_thr, opts->eleven_points,
                             opts->legacy_coordinates, &map, NULL, NULL, err);
        if (!rc) {
            md_metric ap = { "", round3(map) }, m = { "mAP", map };
            snprintf(ap.name, sizeof ap.name, "AP%02d", (int)(opts->iou_thr * 100));
            out->m[out->n++] = opts->map_first ? m : ap;
            out->m[out->n++] = opts->map_first ? ap : m;
        }
    } else {
        static const int nums[] = { 100, 300, 1000 };
        double rec[3];
        rc = md_voc_eval_recalls(results, gts, n, nums, 3, opts->iou_thr, opts->legacy_coordinates, rec, err);
        for (int k = 0; !rc && k < 3; k++) {
            snprintf(out->m[out->n].name, sizeof out->m[0].name, "recall@%d@%g", nums[k], opts->iou_thr);
            out->m[out->n++].value = rec[k];
        }
    }
    free(gts);
    if (rc) md_error_wrap(err, "%s", type);
    return rc;
}

MD_API int md_custom_dataset_evaluate(const md_custom_dataset *d, const md_det_result *results, int64_t n,
                                      const char *metric, md_metrics *out, md_error *err) {
    return md_custom_dataset_evaluate_map(d, results, n, metric, NULL, out, err);
}

/* ------------------------------------------------------- the iface glue */

static int64_t custom_len(const md_dataset *ds) { return cd(ds)->n; }

static int custom_ann_info(const md_dataset *ds, int64_t i, md_ann_info *out) {
    return md_custom_dataset_get_ann_info(cd(ds), i, out);
}

static int custom_img_info(const md_dataset *ds, int64_t i, md_img_info *out) {
    const md_custom_dataset *d = cd(ds);
    if (i < 0 || i >= d->n) return -1;
    *out = d->infos[i];
    return 0;
}

static int custom_evaluate(const md_dataset *ds, const md_det_result *results, int64_t n, const char *metric,
                           md_metrics *out, md_error *err) {
    const md_custom_dataset *d = cd(ds);
    return d->cls->evaluate ? d->cls->evaluate(d, results, n, metric, out, err)
                            : md_custom_dataset_evaluate(d, results, n, metric, out, err);
}

static int custom_format_results(const md_dataset *ds, const md_det_result *results, int64_t n, const char *prefix,
                                 md_error *err) {
    const md_custom_dataset *d = cd(ds);
    if (!d->cls->format_results)
        return md_failc(err, MD_ERR_CONFIG, "dataset %s has no results format", ds->type);
    return d->cls->format_results(d, results, n, prefix, err);
}

static void custom_destroy(md_dataset *ds) { custom_free((md_custom_dataset *)ds); }

MD_API const md_dataset_iface md_custom_dataset_iface = {
    .len = custom_len, .get = custom_get, .ann_info = custom_ann_info, .img_info = custom_img_info,
    .evaluate = custom_evaluate, .destroy = custom_destroy, .format_results = custom_format_results,
};

static const md_dataset_iface custom_iface_no_format = {
    .len = custom_len, .get = custom_get, .ann_info = custom_ann_info, .img_info = custom_img_info,
    .evaluate = custom_evaluate, .destroy = custom_destroy,
};
