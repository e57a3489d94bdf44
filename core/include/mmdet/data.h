/* Data: samples, datasets, transforms, collate and the threaded loader.
 *
 * mmdet's data flow, in C:
 *
 *   dataset (registry "datasets")   get(idx, rng) -> md_sample, through its pipeline
 *   transforms (registry "pipelines") apply(sample, rng) in order (md_pipeline)
 *   md_collate                       samples -> md_batch (NCHW f32, padded)
 *   md_loader                        sampler + worker threads + bounded queue
 *
 * A sample is plain malloc'ed memory, never the context's arena, so worker
 * threads can build it while the main thread trains. The image is u8 HWC
 * (BGR unless a transform says otherwise, like mmcv) until Normalize turns
 * it into f32 CHW. Boxes are xyxy in pixels of the current image.
 *
 * Threads: dataset `get` and transform `apply` run concurrently on worker
 * threads. They must not touch the md_ctx (it is single-threaded) nor
 * mutate the dataset or transform; randomness comes only from the md_rng
 * argument, which the loader derives from (seed, epoch, index) so results
 * do not depend on the number of workers.
 */
#ifndef MMDET_DATA_H
#define MMDET_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "ctx.h"
#include "error.h"
#include "image.h"
#include "masks.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ sample */

typedef enum md_flip_dir { MD_FLIP_NONE = 0, MD_FLIP_HORIZONTAL, MD_FLIP_VERTICAL, MD_FLIP_DIAGONAL } md_flip_dir;
/* "horizontal", "vertical", "diagonal", or "None". */
const char *md_flip_dir_name(md_flip_dir d);

/* Collect's keys and meta_keys, as bits. */
enum {
    MD_FIELD_IMG = 1 << 0, MD_FIELD_GT_BBOXES = 1 << 1, MD_FIELD_GT_LABELS = 1 << 2,
    MD_FIELD_GT_BBOXES_IGNORE = 1 << 3, MD_FIELD_GT_MASKS = 1 << 4,
};
enum {
    MD_META_FILENAME = 1 << 0, MD_META_ORI_FILENAME = 1 << 1, MD_META_ORI_SHAPE = 1 << 2,
    MD_META_IMG_SHAPE = 1 << 3, MD_META_PAD_SHAPE = 1 << 4, MD_META_SCALE_FACTOR = 1 << 5,
    MD_META_FLIP = 1 << 6, MD_META_FLIP_DIRECTION = 1 << 7, MD_META_IMG_NORM_CFG = 1 << 8,
    MD_META_DEFAULT = (1 << 9) - 1,
};

/* What a model sees about one image (mmdet's img_metas entry). Shapes are
 * (h, w, c). */
typedef struct md_img_meta {
    char filename[512], ori_filename[256];
    int ori_shape[3], img_shape[3], pad_shape[3];
    float scale_factor[4];          /* w, h, w, h */
    bool flip;
    md_flip_dir flip_direction;
    float mean[3], std[3];          /* img_norm_cfg */
    bool to_rgb;
    unsigned keys;                  /* MD_META_* present (Collect's meta_keys) */
} md_img_meta;

/* Boxes: n x 4 floats (x1, y1, x2, y2), plus labels where they apply. */
typedef struct md_boxes {
    int n, cap;
    float *xyxy;
    int64_t *labels;                /* NULL for ignored boxes */
} md_boxes;

/* Annotations of one image, as the dataset parsed them (labels 0-based). */
typedef struct md_ann_info {
    int n;  const float *bboxes;  const int64_t *labels;
    int n_ignore;  const float *bboxes_ignore;
    /* mmdet's gt_masks_ann: the segmentation of each of the n boxes (kind
     * MD_MASK_ANN_NONE where the annotation has none); NULL when the
     * dataset has no segmentations. */
    const md_mask_ann *masks;
} md_ann_info;

/* What a dataset knows about one image before loading it. */
typedef struct md_img_info {
    const char *filename;           /* relative to img_prefix */
    int width, height;
    int64_t id;                     /* COCO image id, or the index */
} md_img_info;

typedef struct md_sample {
    /* image: u8 HWC (img_u8) until Normalize / DefaultFormatBundle, then f32
     * CHW (img_f32); exactly one is non-NULL once loaded. */
    int h, w, c;
    uint8_t *img_u8;
    float *img_f32;
    md_img_meta meta;
    /* The chosen resize scale (w, h), set by Resize or MultiScaleFlipAug;
     * scale_set 0 means "not chosen yet" (mmdet: 'scale' not in results). */
    int scale[2];
    bool scale_set, flip_set, keep_ratio;
    /* ground truth (LoadAnnotations copies it from ann) */
    md_boxes gt_bboxes, gt_bboxes_ignore;   /* gt_bboxes.labels = gt_labels */
    md_masks gt_masks;              /* one per gt box, with MD_FIELD_GT_MASKS */
    unsigned have;                  /* MD_FIELD_* loaded */
    unsigned collected;             /* MD_FIELD_* kept by Collect (0: no Collect yet) */
    /* Where it came from (set by the dataset's pre_pipeline). */
    md_img_info img_info;
    md_ann_info ann;                /* a view into the dataset, valid while it lives */
    const char *img_prefix;         /* may be NULL */
    int64_t index;                  /* dataset index */
    /* MultiScaleFlipAug: the augmented copies (the sample itself holds none). */
    struct md_sample *augs;
    int n_augs;
} md_sample;

void md_sample_init(md_sample *s);
/* Frees what the sample owns (image, boxes, augs) and zeroes it. */
void md_sample_clear(md_sample *s);
/* Deep copy of `src` into uninitialised `dst`. */
int md_sample_copy(md_sample *dst, const md_sample *src, md_error *err);
/* Replaces the u8 image (takes ownership of data, h*w*c bytes). */
void md_sample_set_u8(md_sample *s, uint8_t *data, int h, int w, int c);

int md_boxes_reserve(md_boxes *b, int n, bool with_labels);
int md_boxes_push(md_boxes *b, const float xyxy[4], int64_t label);
void md_boxes_free(md_boxes *b);

/* -------------------------------------------------------------- transforms */

/* Interface codes (registry.h's MD_IFACE) of "pipelines" and "datasets". */
#define MD_IFACE_TRANSFORM MD_IFACE_CODE('T', 'R', 'F', 1)   /* md_transform_iface */
#define MD_IFACE_DATASET MD_IFACE_CODE('D', 'S', 'T', 1)     /* md_dataset_iface */

typedef struct md_transform md_transform;
typedef struct md_dataset md_dataset;

/* The "pipelines" registry's interface. apply returns 0, 1 when the sample
 * is dropped (mmdet's transform returning None), or -1 with err set. */
typedef struct md_transform_iface {
    int (*apply)(const md_transform *t, md_sample *s, md_rng *rng, md_error *err);
    void (*destroy)(md_transform *t);
    /* Multi-image transforms (mmdet's Mosaic, MixUp), run by
     * MultiImageMixDataset; NULL for a single-image transform. mmdet's
     * get_indexes: writes up to 4 indices of `ds` (the wrapped dataset)
     * into idx, returns their count; apply_mix: the transform with
     * results['mix_results'], the samples at those indices. */
    int (*get_indexes)(const md_transform *t, const md_dataset *ds, md_rng *rng, int64_t idx[4]);
    int (*apply_mix)(const md_transform *t, md_sample *s, md_sample *mix, int n_mix, md_rng *rng, md_error *err);
} md_transform_iface;

/* Every built transform starts with this header. */
struct md_transform {
    const md_transform_iface *iface;
    const char *type;
};

/* For a transform's build: a zeroed struct of `size` bytes (md_transform
 * first) with its iface and type set and its config fields filled from the
 * schema `keys` (md_cfg_read_struct); NULL with err set. */
void *md_transform_new(size_t size, const md_transform_iface *iface, const char *type, const md_key *keys,
                       const md_cfg *cfg, md_error *err);

/* mmdet's Compose: a list of transform configs built in order. */
typedef struct md_pipeline md_pipeline;
md_pipeline *md_pipeline_build(md_ctx *ctx, const md_cfg *list, md_error *err);
/* 0, 1 (dropped) or -1; the error names the transform's type and position. */
int md_pipeline_apply(const md_pipeline *p, md_sample *s, md_rng *rng, md_error *err);
int md_pipeline_len(const md_pipeline *p);
const md_transform *md_pipeline_at(const md_pipeline *p, int i);
void md_pipeline_free(md_pipeline *p);

/* ---------------------------------------------------------------- datasets */


/* Detections for one image: n boxes (x1, y1, x2, y2, score) and labels. */
typedef struct md_det_result {
    int n;
    const float *bboxes;            /* n x 5 */
    const int64_t *labels;
    /* Instance masks of a mask head: n RLEs of the original image
     * (ori_shape h x w), or NULL. */
    const md_rle *masks;
} md_det_result;

/* A metric name and value ("bbox_mAP", 0.374). */
typedef struct md_metric { char name[64]; double value; } md_metric;
#define MD_MAX_METRICS 64
typedef struct md_metrics { int n; md_metric m[MD_MAX_METRICS]; } md_metrics;

/* The "datasets" registry's interface. */
typedef struct md_dataset_iface {
    int64_t (*len)(const md_dataset *ds);
    /* mmdet's __getitem__: the sample at idx through the dataset's pipeline
     * (training: a dropped sample is replaced by a random one of the same
     * group, drawn from rng). `out` is initialised by the callee. */
    int (*get)(const md_dataset *ds, int64_t idx, md_rng *rng, md_sample *out, md_error *err);
    /* Annotations and image info at idx (views valid while ds lives). */
    int (*ann_info)(const md_dataset *ds, int64_t idx, md_ann_info *out);
    int (*img_info)(const md_dataset *ds, int64_t idx, md_img_info *out);
    /* mmdet's evaluate(results, metric): one result per index. NULL: the
     * dataset cannot evaluate. */
    int (*evaluate)(const md_dataset *ds, const md_det_result *results, int64_t n,
                    const char *metric, md_metrics *out, md_error *err);
    void (*destroy)(md_dataset *ds);
    /* mmdet's format_results(results, jsonfile_prefix): writes the results
     * in the dataset's results format (COCO: <prefix>.bbox.json). NULL:
     * the dataset has none. */
    int (*format_results)(const md_dataset *ds, const md_det_result *results, int64_t n, const char *prefix,
                          md_error *err);
} md_dataset_iface;

/* Every built dataset starts with this header; `flag` (length len) is
 * mmdet's aspect-ratio group flag: 1 when w / h > 1. */
struct md_dataset {
    const md_dataset_iface *iface;
    const char *type;
    int n_classes;
    char **classes;                 /* CLASSES, owned by the dataset */
    uint8_t *flag;
    bool test_mode;
    /* PALETTE: an RGB triple per class (static, not owned), n_palette of
     * them; NULL is mmdet's None (drawings use the random palette). */
    const uint8_t *palette;
    int n_palette;
};

static inline int64_t md_dataset_len(const md_dataset *ds) { return ds->iface->len(ds); }
static inline int md_dataset_get(const md_dataset *ds, int64_t i, md_rng *rng, md_sample *s, md_error *err) {
    return ds->iface->get(ds, i, rng, s, err);
}
void md_dataset_free(md_dataset *ds);

/* mmdet's build_dataset: a list of configs -> ConcatDataset; a config whose
 * ann_file is a list -> ConcatDataset of copies (img_prefix and friends
 * zipped when they are lists too); otherwise built by `type` through the
 * "datasets" registry (wrappers included). default_args as mmcv's. */
md_dataset *md_build_dataset(md_ctx *ctx, const md_cfg *cfg, const md_cfg *default_args, md_error *err);

/* Helpers for dataset plugins. */
/* mmdet's get_classes: a list of names, a string naming a file with one
 * class per line, or absent/None (then dflt, n_dflt). Returns the count,
 * or -1; *out is malloc'ed (free with md_classes_free). */
int md_classes_from_cfg(const md_cfg *cfg, const char *key, const char *const *dflt, int n_dflt,
                        char ***out, md_error *err);
void md_classes_free(char **classes, int n);
/* os.path.join(root, path) unless path is absolute or root is NULL/empty. */
char *md_path_join(const char *root, const char *path);
/* Fills the sample's pre-pipeline fields (mmdet's pre_pipeline). */
void md_sample_prepare(md_sample *s, const md_dataset *ds, int64_t idx, const char *img_prefix);

/* ---------------------------------------------------------------- collate */

/* A batch: images padded (with 0) to the largest H and W of the batch,
 * rounded up to size_divisor, as one persistent NCHW f32 tensor, plus
 * per-image metas and ground truth. Everything is owned by the batch and
 * freed by md_batch_free; it is independent of the loader and its threads,
 * and lives until freed (a training step may keep it as long as it likes). */
typedef struct md_batch {
    int n;
    md_tensor *img;                 /* [n, C, H, W] f32, persistent */
    md_img_meta *metas;             /* n */
    md_boxes *gt_bboxes;            /* n (labels in .labels) */
    md_boxes *gt_bboxes_ignore;     /* n */
    md_masks *gt_masks;             /* n, in the padded image's pixels; NULL when none were collected.
                                     * Each at its sample's own size (Pad's pad_shape), not padded to
                                     * the batch's H x W (mmdet's cpu_only DataContainer). */
    int64_t *indices;               /* dataset index of each image */
    /* Test-time augmentation (a test pipeline's MultiScaleFlipAug with
     * several variants, mmdet's lists of imgs and img_metas): n_augs
     * sub-batches, augs[k] holding variant k of every image, collated on
     * its own (img padded for that variant; metas with its scale_factor,
     * flip, flip_direction, img_shape, pad_shape). augs[0] is the batch
     * itself, so code that reads only the top level sees variant 0 as an
     * ordinary batch; augs[1 ..] are owned and freed with it. An ordinary
     * batch (one variant) has n_augs 0 and augs NULL. */
    int n_augs;
    struct md_batch **augs;
} md_batch;

/* Variants of a batch: 1 for an ordinary batch. */
static inline int md_batch_n_augs(const md_batch *b) { return b->n_augs > 1 ? b->n_augs : 1; }
/* Variant k (0 <= k < md_batch_n_augs(b)); the batch itself for k 0. */
static inline md_batch *md_batch_aug(md_batch *b, int k) { return b->n_augs > 1 ? b->augs[k] : b; }

/* Samples must hold f32 CHW images with equal channel counts. The samples
 * are left untouched. Samples whose image went into MultiScaleFlipAug's
 * variants (augs, n_augs, no image of their own) are collated variant by
 * variant: one variant gives an ordinary batch of it, several a batch with
 * n_augs sub-batches; every sample of the batch must have the same number
 * of variants (mmdet's collate of lists). */
md_batch *md_collate(const md_sample *samples, int n, int size_divisor, md_error *err);
void md_batch_free(md_batch *b);

/* ----------------------------------------------------------------- sampler */

/* mmdet's GroupSampler / DistributedGroupSampler: for an epoch, the order
 * of dataset indices. `flag` NULL: one group. Deterministic for
 * (seed, epoch). shuffle false: 0..len-1 (world_size 1) or a rank's slice.
 * Returns the count written to *out (malloc'ed), or -1. */
typedef struct md_sampler_cfg {
    int samples_per_gpu;
    bool shuffle;
    int rank, world_size;           /* 0, 1 when not distributed */
    uint64_t seed;
} md_sampler_cfg;
int64_t md_sampler_indices(const md_sampler_cfg *cfg, const uint8_t *flag, int64_t len, int epoch,
                           int64_t **out, md_error *err);

/* ------------------------------------------------------------------ loader */

typedef struct md_loader md_loader;

typedef struct md_loader_cfg {
    int samples_per_gpu;            /* default 2 */
    int workers_per_gpu;            /* threads; 0: load in the calling thread */
    int prefetch;                   /* batches queued ahead (default 2 x workers) */
    bool shuffle;                   /* training: true */
    bool drop_last;
    int size_divisor;               /* collate's rounding; default 1 */
    int rank, world_size;
    uint64_t seed;
} md_loader_cfg;
#define MD_LOADER_CFG_DEFAULT ((md_loader_cfg){ 2, 2, 0, true, false, 1, 0, 1, 0 })

/* The loader borrows the dataset (it must outlive the loader). */
md_loader *md_loader_new(const md_dataset *ds, const md_loader_cfg *cfg, md_error *err);
/* Batches per epoch. */
int64_t md_loader_len(const md_loader *l);
/* Starts epoch `epoch` (mmdet's sampler.set_epoch); stops any epoch running. */
int md_loader_start_epoch(md_loader *l, int epoch, md_error *err);
/* The next batch in order (caller owns it: md_batch_free), NULL at the end
 * of the epoch (err untouched) or on error (err set: the sample's index and
 * the dataset's message). */
md_batch *md_loader_next(md_loader *l, md_error *err);
void md_loader_free(md_loader *l);

/* The RNG used for sample `index` of `epoch` (also for loading without a
 * loader, e.g. tests and tools). */
void md_sample_rng(md_rng *r, uint64_t seed, int epoch, int64_t index);

#ifdef __cplusplus
}
#endif
#endif
