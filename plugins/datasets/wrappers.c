/* Dataset wrappers: ConcatDataset, RepeatDataset, ClassBalancedDataset
 * (mmdet/datasets/dataset_wrappers.py). Each builds the datasets it wraps
 * with md_build_dataset, owns them and maps indices onto them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/data.h>

typedef struct wrap_ds {
    md_dataset base;
    md_dataset **children;
    int n_children;
    int64_t *cum;          /* Concat: cumulative sizes (n_children + 1) */
    int64_t *map;          /* Repeat / ClassBalanced: index -> child index */
    int64_t len;
    bool separate_eval;
} wrap_ds;

static void wrap_destroy(md_dataset *ds) {
    wrap_ds *w = (wrap_ds *)ds;
    for (int i = 0; i < w->n_children; i++) md_dataset_free(w->children[i]);
    free(w->children);
    free(w->cum);
    free(w->map);
    free(w->base.flag);
    md_classes_free(w->base.classes, w->base.n_classes);
    free(w);
}

static int64_t wrap_len(const md_dataset *ds) { return ((const wrap_ds *)ds)->len; }

/* The child and its index for a wrapper index. */
static const md_dataset *locate(const wrap_ds *w, int64_t idx, int64_t *sub) {
    if (idx < 0 || idx >= w->len) return NULL;
    if (w->map) {
        *sub = w->map[idx];
        return w->children[0];
    }
    int lo = 0, hi = w->n_children - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (w->cum[mid + 1] <= idx) lo = mid + 1;
        else hi = mid;
    }
    *sub = idx - w->cum[lo];
    return w->children[lo];
}

static int wrap_get(const md_dataset *ds, int64_t idx, md_rng *rng, md_sample *out, md_error *err) {
    int64_t sub;
    const md_dataset *c = locate((const wrap_ds *)ds, idx, &sub);
    if (!c)
        return md_failc(err, MD_ERR_GENERIC, "%s: index %lld out of range (%lld)", ds->type, (long long)idx,
                        (long long)((const wrap_ds *)ds)->len);
    int rc = c->iface->get(c, sub, rng, out, err);
    if (!rc) out->index = idx;
    return rc;
}

static int wrap_ann_info(const md_dataset *ds, int64_t idx, md_ann_info *out) {
    int64_t sub;
    const md_dataset *c = locate((const wrap_ds *)ds, idx, &sub);
    return c && c->iface->ann_info ? c->iface->ann_info(c, sub, out) : -1;
}

static int wrap_img_info(const md_dataset *ds, int64_t idx, md_img_info *out) {
    int64_t sub;
    const md_dataset *c = locate((const wrap_ds *)ds, idx, &sub);
    return c && c->iface->img_info ? c->iface->img_info(c, sub, out) : -1;
}

static const md_dataset_iface wrap_iface = {
    .len = wrap_len, .get = wrap_get, .ann_info = wrap_ann_info, .img_info = wrap_img_info,
    .evaluate = NULL, .destroy = wrap_destroy,
};

static wrap_ds *wrap_new(const char *type, md_error *err) {
    wrap_ds *w = calloc(1, sizeof *w);
    if (!w) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    w->base.iface = &wrap_iface;
    w->base.type = type;
    return w;
}

static int copy_classes(wrap_ds *w, const md_dataset *c, md_error *err) {
    w->base.n_classes = c->n_classes;
    w->base.test_mode = c->test_mode;
    w->base.palette = c->palette;   /* mmdet's wrappers take the (first) child's PALETTE */
    w->base.n_palette = c->n_palette;
    w->base.classes = calloc((size_t)(c->n_classes ? c->n_classes : 1), sizeof *w->base.classes);
    if (!w->base.classes) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < c->n_classes; i++)
        if (!(w->base.classes[i] = strdup(c->classes[i]))) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    return 0;
}

/* One child from `dataset` (Repeat, ClassBalanced). */
static wrap_ds *wrap_one(md_ctx *ctx, const md_cfg *cfg, const char *type, md_error *err) {
    wrap_ds *w = wrap_new(type, err);
    if (!w) return NULL;
    w->children = calloc(1, sizeof *w->children);
    if (!w->children) {
        free(w);
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    w->children[0] = md_build_dataset(ctx, md_cfg_get(cfg, "dataset"), NULL, err);
    if (!w->children[0]) {
        wrap_destroy(&w->base);
        return NULL;
    }
    w->n_children = 1;
    if (copy_classes(w, w->children[0], err)) {
        wrap_destroy(&w->base);
        return NULL;
    }
    return w;
}

/* ------------------------------------------------------------------ Concat */

static const md_key concat_keys[] = {
    { "datasets", MD_KEY_LIST, NULL, "dataset configs", true },
    { "separate_eval", MD_KEY_BOOL, "true", "evaluate each dataset on its own", false },
    { 0 } };

static void *concat_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    const md_cfg *list = md_cfg_get(cfg, "datasets");
    int n = md_cfg_len(list);
    if (n < 1) {
        md_failc(err, MD_ERR_CONFIG, "datasets is empty");
        return NULL;
    }
    wrap_ds *w = wrap_new("ConcatDataset", err);
    if (!w) return NULL;
    w->separate_eval = md_cfg_bool(cfg, "separate_eval", true);
    w->children = calloc((size_t)n, sizeof *w->children);
    w->cum = calloc((size_t)n + 1, sizeof *w->cum);
    if (!w->children || !w->cum) goto oom;
    for (int i = 0; i < n; i++) {
        w->children[i] = md_build_dataset(ctx, md_cfg_at(list, i), NULL, err);
        if (!w->children[i]) {
            md_error_wrap(err, "datasets[%d]", i);
            goto fail;
        }
        w->n_children++;
        w->cum[i + 1] = w->cum[i] + md_dataset_len(w->children[i]);
    }
    w->len = w->cum[n];
    if (copy_classes(w, w->children[0], err)) goto fail;
    w->base.flag = calloc((size_t)(w->len ? w->len : 1), 1);
    if (!w->base.flag) goto oom;
    for (int i = 0; i < n; i++)
        if (w->children[i]->flag)
            memcpy(w->base.flag + w->cum[i], w->children[i]->flag, (size_t)(w->cum[i + 1] - w->cum[i]));
    return w;
oom:
    md_failc(err, MD_ERR_NOMEM, "out of memory");
fail:
    wrap_destroy(&w->base);
    return NULL;
}

static const md_class concat_class = { .name = "ConcatDataset", .keys = concat_keys, .build = concat_build,
    MD_IFACE(&wrap_iface, MD_IFACE_DATASET), .doc = "datasets one after another" };

/* ------------------------------------------------------------------ Repeat */

static const md_key repeat_keys[] = {
    { "dataset", MD_KEY_GROUP, NULL, "the dataset to repeat", true },
    { "times", MD_KEY_INT, NULL, "repeat count", true },
    { 0 } };

static int set_map(wrap_ds *w, md_error *err) {
    const md_dataset *c = w->children[0];
    w->base.flag = calloc((size_t)(w->len ? w->len : 1), 1);
    if (!w->base.flag) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < w->len; i++) w->base.flag[i] = c->flag ? c->flag[w->map[i]] : 0;
    return 0;
}

static void *repeat_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    int64_t times = md_cfg_int(cfg, "times", 1);
    if (times < 1) {
        md_failc(err, MD_ERR_CONFIG, "times must be >= 1, got %lld", (long long)times);
        return NULL;
    }
    wrap_ds *w = wrap_one(ctx, cfg, "RepeatDataset", err);
    if (!w) return NULL;
    int64_t n = md_dataset_len(w->children[0]);
    w->len = n * times;
    w->map = malloc(sizeof *w->map * (size_t)(w->len ? w->len : 1));
    if (!w->map) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        wrap_destroy(&w->base);
        return NULL;
    }
    for (int64_t i = 0; i < w->len; i++) w->map[i] = i % n;
    if (set_map(w, err)) {
        wrap_destroy(&w->base);
        return NULL;
    }
    return w;
}

static const md_class repeat_class = { .name = "RepeatDataset", .keys = repeat_keys, .build = repeat_build,
    MD_IFACE(&wrap_iface, MD_IFACE_DATASET), .doc = "a dataset repeated `times` times" };

/* ----------------------------------------------------------- ClassBalanced */

static const md_key cb_keys[] = {
    { "dataset", MD_KEY_GROUP, NULL, "the dataset to resample", true },
    { "oversample_thr", MD_KEY_FLOAT, NULL, "frequency threshold t", true },
    { "filter_empty_gt", MD_KEY_BOOL, "true", "false: images without boxes form their own category", false },
    { 0 } };

/* mmdet's repeat factors: f(c) = fraction of images containing c,
 * r(c) = max(1, sqrt(t / f(c))), r(I) = max over I's categories; image I
 * appears ceil(r(I)) times. Categories come from the image's gt labels. */
static void *cb_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    double thr = md_cfg_float(cfg, "oversample_thr", 0);
    bool filter_empty = md_cfg_bool(cfg, "filter_empty_gt", true);
    wrap_ds *w = wrap_one(ctx, cfg, "ClassBalancedDataset", err);
    if (!w) return NULL;
    const md_dataset *c = w->children[0];
    int64_t n = md_dataset_len(c);
    int K = c->n_classes + 1;   /* + the "empty" category */
    int64_t *freq = calloc((size_t)K, sizeof *freq);
    uint8_t *has = calloc((size_t)K, 1);
    double *rf = calloc((size_t)(n ? n : 1), sizeof *rf);
    if (!freq || !has || !rf || !c->iface->ann_info) {
        if (!c->iface->ann_info) md_failc(err, MD_ERR_CONFIG, "%s has no annotations to balance", c->type);
        else md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t i = 0; i < n; i++) {
            md_ann_info a = { 0 };
            c->iface->ann_info(c, i, &a);
            memset(has, 0, (size_t)K);
            int cnt = 0;
            for (int k = 0; k < a.n; k++)
                if (a.labels && a.labels[k] >= 0 && a.labels[k] < K - 1 && !has[a.labels[k]]) has[a.labels[k]] = 1, cnt++;
            if (!cnt && !filter_empty) has[K - 1] = 1, cnt++;
            if (pass == 0) {
                for (int k = 0; k < K; k++) freq[k] += has[k];
            } else {
                double r = 1;
                for (int k = 0; k < K; k++)
                    if (has[k]) {
                        double rc = sqrt(thr / ((double)freq[k] / n));
                        if (rc > r) r = rc;
                    }
                rf[i] = r;
            }
        }
    }
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) total += (int64_t)ceil(rf[i]);
    w->len = total;
    w->map = malloc(sizeof *w->map * (size_t)(total ? total : 1));
    if (!w->map) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t r = 0; r < (int64_t)ceil(rf[i]); r++) w->map[k++] = i;
    if (set_map(w, err)) goto fail;
    free(freq);
    free(has);
    free(rf);
    return w;
fail:
    free(freq);
    free(has);
    free(rf);
    wrap_destroy(&w->base);
    return NULL;
}

static const md_class cb_class = { .name = "ClassBalancedDataset", .keys = cb_keys, .build = cb_build,
    MD_IFACE(&wrap_iface, MD_IFACE_DATASET), .doc = "repeat images of rare classes (LVIS-style repeat factors)" };

MD_PLUGIN("dataset_wrappers", "1.0", "Apache-2.0");
MD_REGISTER("datasets", concat_class)
MD_REGISTER("datasets", repeat_class)
MD_REGISTER("datasets", cb_class)
