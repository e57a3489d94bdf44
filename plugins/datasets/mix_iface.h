/* The contract between multi-image transforms (Mosaic, MixUp in
 * transforms_aug.c) and MultiImageMixDataset (mix_dataset.c), header only
 * since plugins never link against each other: mmdet's get_indexes and
 * results['mix_results']. */
#ifndef MMDET_PLUGINS_MIX_IFACE_H
#define MMDET_PLUGINS_MIX_IFACE_H

#include <stdint.h>
#include <mmdet/data.h>

#define MIX_MAGIC 0x4d495831u   /* "MIX1" */

typedef struct mix_iface {
    uint32_t magic;
    /* get_indexes: writes up to 4 dataset indices into idx and returns
     * their count; ds is the wrapped dataset. */
    int (*get_indexes)(const md_transform *t, const md_dataset *ds, md_rng *rng, int64_t idx[4]);
    /* The transform with mix_results (the samples at those indices). */
    int (*apply_mix)(const md_transform *t, md_sample *s, md_sample *mix, int n_mix, md_rng *rng, md_error *err);
} mix_iface;

/* A mixing transform's struct begins with this. */
typedef struct mix_transform {
    md_transform base;
    const mix_iface *mix;
} mix_transform;

/* The mixing interface of t, or NULL for an ordinary transform. Registry
 * names are unique, so a transform built as "Mosaic" or "MixUp" is one of
 * ours; the magic guards against a mismatched build. */
#include <string.h>
static inline const mix_iface *mix_of(const md_transform *t) {
    if (!t->type || (strcmp(t->type, "Mosaic") && strcmp(t->type, "MixUp"))) return NULL;
    const mix_iface *m = ((const mix_transform *)t)->mix;
    return m && m->magic == MIX_MAGIC ? m : NULL;
}

#endif
