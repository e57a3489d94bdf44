/* Samples, pipelines (mmdet's Compose), build_dataset and collate. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "mmdet/data.h"

MD_API const char *md_flip_dir_name(md_flip_dir d) {
    switch (d) {
    case MD_FLIP_HORIZONTAL: return "horizontal";
    case MD_FLIP_VERTICAL: return "vertical";
    case MD_FLIP_DIAGONAL: return "diagonal";
    default: return "None";
    }
}

/* ------------------------------------------------------------------ boxes */

MD_API int md_boxes_reserve(md_boxes *b, int n, bool with_labels) {
    bool lab = with_labels || b->labels;
    if (n <= b->cap && (!lab || b->labels)) return 0;
    int cap = b->cap > n ? b->cap : n;
    if (cap < 4) cap = 4;
    float *x = realloc(b->xyxy, (size_t)cap * 4 * sizeof *x);
    if (!x) return -1;
    b->xyxy = x;
    if (lab) {
        bool fresh = !b->labels;
        int64_t *l = realloc(b->labels, (size_t)cap * sizeof *l);
        if (!l) return -1;
        if (fresh && b->n) memset(l, 0, (size_t)b->n * sizeof *l);
        b->labels = l;
    }
    b->cap = cap;
    return 0;
}

MD_API int md_boxes_push(md_boxes *b, const float xyxy[4], int64_t label) {
    if (b->n == b->cap && md_boxes_reserve(b, b->cap ? b->cap * 2 : 8, b->labels != NULL)) return -1;
    memcpy(b->xyxy + 4 * b->n, xyxy, 4 * sizeof(float));
    if (b->labels) b->labels[b->n] = label;
    b->n++;
    return 0;
}

MD_API void md_boxes_free(md_boxes *b) {
    free(b->xyxy);
    free(b->labels);
    memset(b, 0, sizeof *b);
}

static int boxes_copy(md_boxes *dst, const md_boxes *src) {
    memset(dst, 0, sizeof *dst);
    if (!src->xyxy && !src->labels) return 0;
    if (md_boxes_reserve(dst, src->n > 0 ? src->n : 1, src->labels != NULL)) return -1;
    if (src->n) memcpy(dst->xyxy, src->xyxy, (size_t)src->n * 4 * sizeof(float));
    if (src->labels && src->n) memcpy(dst->labels, src->labels, (size_t)src->n * sizeof(int64_t));
    dst->n = src->n;
    return 0;
}

/* ----------------------------------------------------------------- sample */

MD_API void md_sample_init(md_sample *s) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < 4; i++) s->meta.scale_factor[i] = 1.0f;
    for (int i = 0; i < 3; i++) s->meta.std[i] = 1.0f;
}

MD_API void md_sample_clear(md_sample *s) {
    free(s->img_u8);
    free(s->img_f32);
    md_boxes_free(&s->gt_bboxes);
    md_boxes_free(&s->gt_bboxes_ignore);
    md_masks_free(&s->gt_masks);
    for (int i = 0; i < s->n_augs; i++) md_sample_clear(&s->augs[i]);
    free(s->augs);
    md_sample_init(s);
}

MD_API int md_sample_copy(md_sample *dst, const md_sample *src, md_error *err) {
    *dst = *src;
    dst->img_u8 = NULL;
    dst->img_f32 = NULL;
    dst->augs = NULL;
    dst->n_augs = 0;
    memset(&dst->gt_bboxes, 0, sizeof dst->gt_bboxes);
    memset(&dst->gt_bboxes_ignore, 0, sizeof dst->gt_bboxes_ignore);
    md_masks_init(&dst->gt_masks);
    size_t px = (size_t)src->h * src->w * src->c;
    if (src->img_u8 && !(dst->img_u8 = malloc(px ? px : 1))) goto oom;
    if (src->img_u8) memcpy(dst->img_u8, src->img_u8, px);
    if (src->img_f32 && !(dst->img_f32 = malloc(px ? px * sizeof(float) : 1))) goto oom;
    if (src->img_f32) memcpy(dst->img_f32, src->img_f32, px * sizeof(float));
    if (boxes_copy(&dst->gt_bboxes, &src->gt_bboxes) || boxes_copy(&dst->gt_bboxes_ignore, &src->gt_bboxes_ignore))
        goto oom;
    if (md_masks_copy(&dst->gt_masks, &src->gt_masks, err)) goto oom;
    if (src->n_augs) {
        dst->augs = calloc((size_t)src->n_augs, sizeof *dst->augs);
        if (!dst->augs) goto oom;
        for (int i = 0; i < src->n_augs; i++) {
            if (md_sample_copy(&dst->augs[i], &src->augs[i], err)) {
                dst->n_augs = i;
                md_sample_clear(dst);
                return -1;
            }
        }
        dst->n_augs = src->n_augs;
    }
    return 0;
oom:
    md_sample_clear(dst);
    return md_failc(err, MD_ERR_NOMEM, "out of memory copying sample %lld (%s)", (long long)src->index,
                    src->meta.filename);
}

MD_API void md_sample_set_u8(md_sample *s, uint8_t *data, int h, int w, int c) {
    free(s->img_u8);
    free(s->img_f32);
    s->img_f32 = NULL;
    s->img_u8 = data;
    s->h = h;
    s->w = w;
    s->c = c;
}

MD_API void md_sample_prepare(md_sample *s, const md_dataset *ds, int64_t idx, const char *img_prefix) {
    s->index = idx;
    s->img_prefix = img_prefix;
    if (ds->iface->img_info) ds->iface->img_info(ds, idx, &s->img_info);
    if (ds->iface->ann_info && !ds->test_mode) ds->iface->ann_info(ds, idx, &s->ann);
}

/* --------------------------------------------------------------- pipeline */

struct md_pipeline {
    int n;
    md_transform **t;
};

MD_API md_pipeline *md_pipeline_build(md_ctx *ctx, const md_cfg *list, md_error *err) {
    md_pipeline *p = calloc(1, sizeof *p);
    if (!p) {
        md_failc(err, MD_ERR_NOMEM, "out of memory building a pipeline");
        return NULL;
    }
    if (!list) return p;   /* mmdet allows an empty pipeline */
    if (md_cfg_kind(list) != MD_CFG_LIST) {
        char path[512];
        md_failc(err, MD_ERR_CONFIG, "%s: pipeline must be a list of transforms (%s:%d)",
                 md_cfg_path(list, path, sizeof path), md_cfg_file(list) ? md_cfg_file(list) : "?",
                 md_cfg_line(list));
        free(p);
        return NULL;
    }
    int n = md_cfg_len(list);
    p->t = calloc((size_t)(n ? n : 1), sizeof *p->t);
    if (!p->t) {
        free(p);
        md_failc(err, MD_ERR_NOMEM, "out of memory building a pipeline");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        md_transform *t = md_build_from_cfg(ctx, "pipelines", md_cfg_at(list, i), NULL, err);
        if (!t) {
            md_pipeline_free(p);
            return NULL;
        }
        if (!t->type) t->type = md_cfg_str(md_cfg_at(list, i), "type", "?");
        p->t[p->n++] = t;
    }
    return p;
}

MD_API int md_pipeline_apply(const md_pipeline *p, md_sample *s, md_rng *rng, md_error *err) {
    for (int i = 0; p && i < p->n; i++) {
        int rc = p->t[i]->iface->apply(p->t[i], s, rng, err);
        if (rc < 0)
            return md_error_wrap(err, "pipeline[%d] %s (sample %lld, %s)", i, p->t[i]->type,
                                 (long long)s->index, s->img_info.filename ? s->img_info.filename : "?");
        if (rc > 0) return 1;
    }
    return 0;
}

MD_API int md_pipeline_len(const md_pipeline *p) { return p ? p->n : 0; }
MD_API const md_transform *md_pipeline_at(const md_pipeline *p, int i) {
    return p && i >= 0 && i < p->n ? p->t[i] : NULL;
}

MD_API void md_pipeline_free(md_pipeline *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++)
        if (p->t[i]->iface->destroy) p->t[i]->iface->destroy(p->t[i]);
    free(p->t);
    free(p);
}

/* ---------------------------------------------------------------- datasets */

MD_API void md_dataset_free(md_dataset *ds) {
    if (ds && ds->iface->destroy) ds->iface->destroy(ds);
}

MD_API char *md_path_join(const char *root, const char *path) {
    if (!path) return NULL;
    if (!root || !*root || path[0] == '/') return strdup(path);
    size_t a = strlen(root), b = strlen(path);
    char *s = malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, root, a);
    size_t k = a;
    if (root[a - 1] != '/') s[k++] = '/';
    memcpy(s + k, path, b + 1);
    return s;
}

MD_API void md_classes_free(char **classes, int n) {
    for (int i = 0; classes && i < n; i++) free(classes[i]);
    free(classes);
}

MD_API int md_classes_from_cfg(const md_cfg *cfg, const char *key, const char *const *dflt, int n_dflt,
                               char ***out, md_error *err) {
    const md_cfg *node = cfg ? md_cfg_get(cfg, key) : NULL;
    char **names = NULL;
    int n = 0, cap = 0;
    char where[600];
    snprintf(where, sizeof where, "%s (%s:%d)", key, node && md_cfg_file(node) ? md_cfg_file(node) : "?",
             node ? md_cfg_line(node) : 0);
    if (!node || md_cfg_kind(node) == MD_CFG_NONE) {
        names = calloc((size_t)(n_dflt ? n_dflt : 1), sizeof *names);
        if (!names) goto oom;
        for (n = 0; n < n_dflt; n++)
            if (!(names[n] = strdup(dflt[n]))) goto oom;
    } else if (md_cfg_kind(node) == MD_CFG_STRING) {
        /* mmcv.list_from_file: one class per line, trailing newline stripped. */
        const char *path = md_cfg_as_str(node);
        FILE *f = fopen(path, "r");
        if (!f) {
            md_failc(err, MD_ERR_IO, "%s: cannot open class file %s: %s", where, path, strerror(errno));
            return -1;
        }
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            size_t l = strlen(line);
            while (l && (line[l - 1] == '\n' || line[l - 1] == '\r')) line[--l] = 0;
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                char **nn = realloc(names, (size_t)cap * sizeof *nn);
                if (!nn) {
                    fclose(f);
                    goto oom;
                }
                names = nn;
            }
            if (!(names[n] = strdup(line))) {
                fclose(f);
                goto oom;
            }
            n++;
        }
        fclose(f);
    } else if (md_cfg_kind(node) == MD_CFG_LIST) {
        int len = md_cfg_len(node);
        names = calloc((size_t)(len ? len : 1), sizeof *names);
        if (!names) goto oom;
        for (n = 0; n < len; n++) {
            const char *s = md_cfg_as_str(md_cfg_at(node, n));
            if (!s) {
                md_classes_free(names, n);
                md_failc(err, MD_ERR_CONFIG, "%s: item %d is not a string", where, n);
                return -1;
            }
            if (!(names[n] = strdup(s))) goto oom;
        }
    } else {
        md_failc(err, MD_ERR_CONFIG, "%s: expected a list of class names, a file name or None, got %s", where,
                 md_cfg_type_name(md_cfg_kind(node)));
        return -1;
    }
    *out = names;
    return n;
oom:
    md_classes_free(names, n);
    return md_failc(err, MD_ERR_NOMEM, "out of memory reading %s", where);
}

/* A registered dataset class whose schema has `dataset` or `datasets` is a
 * wrapper: default_args go to the datasets it wraps (mmdet's build_dataset
 * passes them down), not to the wrapper itself. */
static bool is_wrapper(md_ctx *ctx, const char *type) {
    const md_class *cls = type ? md_registry_find(ctx, "datasets", type, NULL) : NULL;
    for (const md_key *k = cls ? cls->keys : NULL; k && k->name; k++)
        if (!strcmp(k->name, "dataset") || !strcmp(k->name, "datasets")) return true;
    return false;
}

static int push_defaults(md_ctx *ctx, md_cfg *cfg, const md_cfg *defaults) {
    if (md_cfg_kind(cfg) == MD_CFG_LIST) {
        for (int i = 0; i < md_cfg_len(cfg); i++)
            if (push_defaults(ctx, (md_cfg *)md_cfg_at(cfg, i), defaults)) return -1;
        return 0;
    }
    if (md_cfg_kind(cfg) != MD_CFG_GROUP) return 0;
    const char *type = md_cfg_str(cfg, "type", NULL);
    if (!type) type = md_cfg_str(defaults, "type", NULL);
    if (is_wrapper(ctx, type)) {
        md_cfg *child = md_cfg_get_mut(cfg, "dataset");
        if (!child) child = md_cfg_get_mut(cfg, "datasets");
        return child ? push_defaults(ctx, child, defaults) : 0;
    }
    for (int i = 0; i < md_cfg_len(defaults); i++) {
        const md_cfg *d = md_cfg_at(defaults, i);
        if (!md_cfg_get(cfg, md_cfg_name(d)) && !md_cfg_set_copy(cfg, md_cfg_name(d), d)) return -1;
    }
    return 0;
}

static md_dataset *build_concat_of(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    /* mmdet's _concat_dataset: one copy of cfg per ann_file, prefixes zipped. */
    md_cfg *root = md_cfg_new_group();
    if (!root) goto oom;
    md_cfg_set_str(root, "type", "ConcatDataset");
    if (md_cfg_get(cfg, "separate_eval")) md_cfg_set_copy(root, "separate_eval", md_cfg_get(cfg, "separate_eval"));
    md_cfg *list = md_cfg_set_list(root, "datasets");
    const md_cfg *anns = md_cfg_get(cfg, "ann_file");
    static const char *const zipped[] = { "img_prefix", "seg_prefix", "proposal_file" };
    for (int i = 0; list && i < md_cfg_len(anns); i++) {
        md_cfg *c = md_cfg_append_copy(list, cfg);
        if (!c) goto oom;
        md_cfg_remove(c, "separate_eval");
        md_cfg_set_copy(c, "ann_file", md_cfg_at(anns, i));
        for (int z = 0; z < 3; z++) {
            const md_cfg *v = md_cfg_get(cfg, zipped[z]);
            if (v && md_cfg_kind(v) == MD_CFG_LIST) {
                if (md_cfg_len(v) != md_cfg_len(anns)) {
                    md_failc(err, MD_ERR_CONFIG, "%s has %d entries but ann_file has %d (%s:%d)", zipped[z],
                             md_cfg_len(v), md_cfg_len(anns), md_cfg_file(v) ? md_cfg_file(v) : "?",
                             md_cfg_line(v));
                    md_cfg_free(root);
                    return NULL;
                }
                md_cfg_set_copy(c, zipped[z], md_cfg_at(v, i));
            }
        }
    }
    md_dataset *ds = md_build_from_cfg(ctx, "datasets", root, NULL, err);
    md_cfg_free(root);
    return ds;
oom:
    md_cfg_free(root);
    md_failc(err, MD_ERR_NOMEM, "out of memory building a ConcatDataset");
    return NULL;
}

MD_API md_dataset *md_build_dataset(md_ctx *ctx, const md_cfg *cfg, const md_cfg *default_args, md_error *err) {
    if (!cfg) {
        md_failc(err, MD_ERR_CONFIG, "build_dataset: no config given");
        return NULL;
    }
    md_cfg *work = NULL;
    if (md_cfg_kind(cfg) == MD_CFG_LIST) {
        work = md_cfg_new_group();
        if (!work || !md_cfg_set_str(work, "type", "ConcatDataset") || !md_cfg_set_copy(work, "datasets", cfg))
            goto oom;
    }
    const md_cfg *src = work ? work : cfg;
    const char *type = md_cfg_kind(src) == MD_CFG_GROUP ? md_cfg_str(src, "type", NULL) : NULL;
    if (!type && default_args) type = md_cfg_str(default_args, "type", NULL);
    const md_cfg *anns = md_cfg_kind(src) == MD_CFG_GROUP ? md_cfg_get(src, "ann_file") : NULL;
    bool wrapper = is_wrapper(ctx, type);
    bool ann_list = !wrapper && anns && md_cfg_kind(anns) == MD_CFG_LIST;
    if (default_args) {
        if (!work && !wrapper && !ann_list) return md_build_from_cfg(ctx, "datasets", cfg, default_args, err);
        if (!work && !(work = md_cfg_clone(cfg))) goto oom;
        if (push_defaults(ctx, work, default_args)) goto oom;
        src = work;
    }
    md_dataset *ds = ann_list ? build_concat_of(ctx, src, err) : md_build_from_cfg(ctx, "datasets", src, NULL, err);
    md_cfg_free(work);
    return ds;
oom:
    md_cfg_free(work);
    md_failc(err, MD_ERR_NOMEM, "out of memory building a dataset");
    return NULL;
}

/* ----------------------------------------------------------------- collate */

MD_API void md_batch_free(md_batch *b) {
    if (!b) return;
    for (int k = 0; b->augs && k < b->n_augs; k++)
        if (b->augs[k] != b) md_batch_free(b->augs[k]);
    free(b->augs);
    md_tensor_free(b->img);
    for (int i = 0; i < b->n; i++) {
        if (b->gt_bboxes) md_boxes_free(&b->gt_bboxes[i]);
        if (b->gt_bboxes_ignore) md_boxes_free(&b->gt_bboxes_ignore[i]);
        if (b->gt_masks) md_masks_free(&b->gt_masks[i]);
    }
    free(b->gt_masks);
    free(b->gt_bboxes);
    free(b->gt_bboxes_ignore);
    free(b->metas);
    free(b->indices);
    free(b);
}

/* The sample's masks go into the batch: Collect kept them, or there was no
 * Collect and they were loaded. */
static bool sample_masks(const md_sample *s) {
    return ((s->collected ? s->collected : s->have) & MD_FIELD_GT_MASKS) != 0;
}

static md_batch *collate_images(const md_sample *samples, int n, int size_divisor, md_error *err) {
    if (size_divisor < 1) size_divisor = 1;
    int c = samples[0].c, H = 0, W = 0;
    for (int i = 0; i < n; i++) {
        const md_sample *s = &samples[i];
        if (!s->img_f32) {
            md_failc(err, MD_ERR_SHAPE,
                     "collate: sample %lld (%s) has no f32 CHW image; end the pipeline with Normalize or "
                     "DefaultFormatBundle", (long long)s->index, s->meta.filename);
            return NULL;
        }
        if (s->c != c) {
            md_failc(err, MD_ERR_SHAPE, "collate: sample %lld (%s) has %d channels, sample %lld has %d",
                     (long long)s->index, s->meta.filename, s->c, (long long)samples[0].index, c);
            return NULL;
        }
        if (s->h > H) H = s->h;
        if (s->w > W) W = s->w;
    }
    H = (H + size_divisor - 1) / size_divisor * size_divisor;
    W = (W + size_divisor - 1) / size_divisor * size_divisor;
    md_batch *b = calloc(1, sizeof *b);
    if (!b) goto oom;
    b->metas = calloc((size_t)n, sizeof *b->metas);
    b->gt_bboxes = calloc((size_t)n, sizeof *b->gt_bboxes);
    b->gt_bboxes_ignore = calloc((size_t)n, sizeof *b->gt_bboxes_ignore);
    b->indices = calloc((size_t)n, sizeof *b->indices);
    if (!b->metas || !b->gt_bboxes || !b->gt_bboxes_ignore || !b->indices) goto oom;
    /* Masks travel as they are (mmdet's cpu_only DataContainer): each
     * image's at its own size, Pad's pad_shape, in the pixels the padded
     * batch image shares (padding is right and bottom). */
    bool masks = false;
    for (int i = 0; i < n; i++) masks |= sample_masks(&samples[i]);
    if (masks && !(b->gt_masks = calloc((size_t)n, sizeof *b->gt_masks))) goto oom;
    /* Persistent tensors do not touch the context, so workers may collate. */
    b->img = md_tensor_new_persistent(NULL, MD_F32, 4, (const int64_t[]){ n, c, H, W }, err);
    if (!b->img) {
        md_batch_free(b);
        return NULL;
    }
    b->n = n;
    float *dst = md_f32(b->img);   /* zero-filled: the padding value */
    for (int i = 0; i < n; i++) {
        const md_sample *s = &samples[i];
        for (int ch = 0; ch < c; ch++)
            for (int y = 0; y < s->h; y++)
                memcpy(dst + (((size_t)i * c + ch) * H + y) * W, s->img_f32 + ((size_t)ch * s->h + y) * s->w,
                       (size_t)s->w * sizeof(float));
        b->metas[i] = s->meta;
        b->indices[i] = s->index;
        if (boxes_copy(&b->gt_bboxes[i], &s->gt_bboxes) || boxes_copy(&b->gt_bboxes_ignore[i], &s->gt_bboxes_ignore))
            goto oom;
        if (b->gt_masks && sample_masks(s) && md_masks_copy(&b->gt_masks[i], &s->gt_masks, err))
            goto oom;
    }
    return b;
oom:
    md_batch_free(b);
    md_failc(err, MD_ERR_NOMEM, "collate: out of memory for %d images of up to %dx%d", n, H, W);
    return NULL;
}

/* A sample whose image MultiScaleFlipAug turned into variants. */
static bool has_variants(const md_sample *s) { return !s->img_f32 && !s->img_u8 && s->n_augs > 0; }

MD_API md_batch *md_collate(const md_sample *samples, int n, int size_divisor, md_error *err) {
    if (n <= 0) {
        md_failc(err, MD_ERR_GENERIC, "collate: empty batch");
        return NULL;
    }
    int na = has_variants(&samples[0]) ? samples[0].n_augs : 0;
    for (int i = 0; i < n; i++) {
        int ni = has_variants(&samples[i]) ? samples[i].n_augs : 0;
        if (ni != na) {
            md_failc(err, MD_ERR_SHAPE,
                     "collate: sample %lld (%s) has %d MultiScaleFlipAug variants, sample %lld (%s) has %d; "
                     "every image of a batch needs the same number", (long long)samples[i].index,
                     samples[i].meta.filename, ni, (long long)samples[0].index, samples[0].meta.filename, na);
            return NULL;
        }
    }
    if (na == 0) return collate_images(samples, n, size_divisor, err);
    /* One sub-batch per variant, as mmdet collates each list entry. */
    md_sample *view = malloc(sizeof *view * (size_t)n);
    md_batch **subs = calloc((size_t)na, sizeof *subs);
    if (!view || !subs) {
        free(view);
        free(subs);
        md_failc(err, MD_ERR_NOMEM, "collate: out of memory for %d variants", na);
        return NULL;
    }
    for (int k = 0; k < na; k++) {
        for (int i = 0; i < n; i++) view[i] = samples[i].augs[k];   /* shallow: collate only reads */
        if (!(subs[k] = collate_images(view, n, size_divisor, err))) {
            md_error_wrap(err, "test-time variant %d of %d", k, na);
            for (int j = 0; j < k; j++) md_batch_free(subs[j]);
            free(subs);
            free(view);
            return NULL;
        }
    }
    free(view);
    md_batch *b = subs[0];
    if (na == 1) {
        free(subs);
        return b;
    }
    b->n_augs = na;
    b->augs = subs;
    return b;
}

MD_API void *md_transform_new(size_t size, const md_transform_iface *iface, const char *type, const md_key *keys,
                              const md_cfg *cfg, md_error *err) {
    return md_object_new(size, iface, type, cfg, keys, err);
}
