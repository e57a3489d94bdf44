/* MultiImageMixDataset (mmdet/datasets/dataset_wrappers.py): the wrapped
 * dataset loads a sample (its own pipeline, usually just loading), then
 * this wrapper's pipeline runs on it; a transform with get_indexes (Mosaic,
 * MixUp) first receives the samples at the indices it asks for
 * (mix_results). Types in skip_type_keys are skipped; a transform that
 * drops the sample is retried on a fresh copy up to max_refetch times. */
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/data.h>

#define MAX_SKIP 16

typedef struct mix_ds {
    md_dataset base;
    md_dataset *inner;
    md_pipeline *pipeline;
    int max_refetch, n_skip;
    char *skip[MAX_SKIP];
} mix_ds;

static void mix_destroy(md_dataset *ds) {
    mix_ds *d = (mix_ds *)ds;
    if (!d) return;
    md_dataset_free(d->inner);
    md_pipeline_free(d->pipeline);
    for (int i = 0; i < d->n_skip; i++) free(d->skip[i]);
    md_classes_free(d->base.classes, d->base.n_classes);
    free(d->base.flag);
    free(d);
}

static int64_t mix_len(const md_dataset *ds) { return md_dataset_len(((const mix_ds *)ds)->inner); }

static int mix_get(const md_dataset *ds, int64_t idx, md_rng *rng, md_sample *out, md_error *err) {
    const mix_ds *d = (const mix_ds *)ds;
    if (md_dataset_get(d->inner, idx, rng, out, err)) return -1;
    out->index = idx;
    for (int k = 0; k < md_pipeline_len(d->pipeline); k++) {
        const md_transform *t = md_pipeline_at(d->pipeline, k);
        bool skip = false;
        for (int j = 0; j < d->n_skip; j++) skip |= !strcmp(d->skip[j], t->type);
        if (skip) continue;
        const md_transform_iface *m = t->iface->get_indexes && t->iface->apply_mix ? t->iface : NULL;
        md_sample mix[4];
        int n_mix = 0;
        if (m) {
            int64_t idx2[4];
            n_mix = m->get_indexes(t, d->inner, rng, idx2);
            for (int i = 0; i < n_mix; i++)
                if (md_dataset_get(d->inner, idx2[i], rng, &mix[i], err)) {
                    for (int q = 0; q < i; q++) md_sample_clear(&mix[q]);
                    md_sample_clear(out);
                    return md_error_wrap(err, "%s: loading mix image %lld", ds->type, (long long)idx2[i]);
                }
        }
        int rc = 1;
        for (int tries = 0; tries < d->max_refetch && rc == 1; tries++) {
            md_sample copy;
            if (md_sample_copy(&copy, out, err)) {
                rc = -1;
                break;
            }
            rc = m ? m->apply_mix(t, &copy, mix, n_mix, rng, err) : t->iface->apply(t, &copy, rng, err);
            if (rc == 0) {
                md_sample_clear(out);
                *out = copy;
            } else {
                md_sample_clear(&copy);
            }
        }
        for (int i = 0; i < n_mix; i++) md_sample_clear(&mix[i]);
        if (rc) {
            md_sample_clear(out);
            if (rc > 0)
                return md_failc(err, MD_ERR_GENERIC, "%s: %s (pipeline step %d) dropped sample %lld %d times in a "
                                "row; check the dataset and its pipeline", ds->type, t->type, k, (long long)idx,
                                d->max_refetch);
            return md_error_wrap(err, "%s: pipeline step %d (%s)", ds->type, k, t->type);
        }
    }
    return 0;
}

static int mix_ann_info(const md_dataset *ds, int64_t i, md_ann_info *out) {
    const md_dataset *in = ((const mix_ds *)ds)->inner;
    return in->iface->ann_info ? in->iface->ann_info(in, i, out) : -1;
}

static int mix_img_info(const md_dataset *ds, int64_t i, md_img_info *out) {
    const md_dataset *in = ((const mix_ds *)ds)->inner;
    return in->iface->img_info ? in->iface->img_info(in, i, out) : -1;
}

static int mix_evaluate(const md_dataset *ds, const md_det_result *r, int64_t n, const char *metric, md_metrics *out,
                        md_error *err) {
    const md_dataset *in = ((const mix_ds *)ds)->inner;
    if (!in->iface->evaluate) return md_failc(err, MD_ERR_GENERIC, "%s cannot evaluate", in->type);
    return in->iface->evaluate(in, r, n, metric, out, err);
}

static const md_dataset_iface mix_iface_ds = {
    .len = mix_len, .get = mix_get, .ann_info = mix_ann_info, .img_info = mix_img_info,
    .evaluate = mix_evaluate, .destroy = mix_destroy,
};

static const md_key mix_keys[] = {
    { "dataset", MD_KEY_GROUP, NULL, "the wrapped dataset (its pipeline loads images and boxes)", true },
    { "pipeline", MD_KEY_LIST, NULL, "transforms run after loading, Mosaic and MixUp included", true },
    { "dynamic_scale", MD_KEY_ANY, NULL, "deprecated in mmdet; must be None", false },
    { "skip_type_keys", MD_KEY_ANY, NULL, "transform types to skip (list of names)", false },
    { "max_refetch", MD_KEY_INT, "15", "retries of a transform that drops the sample", false },
    { 0 } };

static void *mix_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    mix_ds *d = calloc(1, sizeof *d);
    if (!d) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    d->base.iface = &mix_iface_ds;
    d->base.type = "MultiImageMixDataset";
    d->max_refetch = (int)md_cfg_int(cfg, "max_refetch", 15);
    const md_cfg *ds = md_cfg_get(cfg, "dynamic_scale");
    if (ds && md_cfg_kind(ds) != MD_CFG_NONE) {
        md_failc(err, MD_ERR_CONFIG, "dynamic_scale is deprecated: set img_scale in Mosaic / MixUp");
        goto fail;
    }
    if (d->max_refetch < 1) {
        md_failc(err, MD_ERR_CONFIG, "max_refetch must be >= 1, got %d", d->max_refetch);
        goto fail;
    }
    const md_cfg *sk = md_cfg_get(cfg, "skip_type_keys");
    if (sk && md_cfg_kind(sk) != MD_CFG_NONE) {
        int n = md_cfg_kind(sk) == MD_CFG_LIST ? md_cfg_len(sk) : 1;
        for (int i = 0; i < n; i++) {
            const char *s = md_cfg_as_str(md_cfg_kind(sk) == MD_CFG_LIST ? md_cfg_at(sk, i) : sk);
            if (!s || d->n_skip == MAX_SKIP) {
                md_failc(err, MD_ERR_CONFIG, "skip_type_keys: a list of at most %d type names", MAX_SKIP);
                goto fail;
            }
            if (!(d->skip[d->n_skip++] = strdup(s))) {
                md_failc(err, MD_ERR_NOMEM, "out of memory");
                goto fail;
            }
        }
    }
    if (!(d->pipeline = md_pipeline_build(ctx, md_cfg_get(cfg, "pipeline"), err))) goto fail;
    if (!(d->inner = md_build_dataset(ctx, md_cfg_get(cfg, "dataset"), NULL, err))) {
        md_error_wrap(err, "dataset");
        goto fail;
    }
    d->base.n_classes = d->inner->n_classes;
    d->base.test_mode = d->inner->test_mode;
    d->base.palette = d->inner->palette;
    d->base.n_palette = d->inner->n_palette;
    d->base.classes = calloc((size_t)(d->base.n_classes + 1), sizeof *d->base.classes);
    int64_t n = md_dataset_len(d->inner);
    d->base.flag = calloc((size_t)(n + 1), 1);
    if (!d->base.classes || !d->base.flag) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < d->base.n_classes; i++)
        if (!(d->base.classes[i] = strdup(d->inner->classes[i]))) {
            md_failc(err, MD_ERR_NOMEM, "out of memory");
            goto fail;
        }
    if (d->inner->flag) memcpy(d->base.flag, d->inner->flag, (size_t)n);
    return d;
fail:
    mix_destroy(&d->base);
    return NULL;
}

static const md_class mix_class = { .name = "MultiImageMixDataset", .keys = mix_keys, .build = mix_build,
    MD_IFACE(&mix_iface_ds, MD_IFACE_DATASET), .doc = "a dataset wrapper for Mosaic / MixUp pipelines" };

MD_PLUGIN("mix_dataset", "1.0", "Apache-2.0");
MD_REGISTER("datasets", mix_class)
