/* CustomDataset: mmdet's base class of detection datasets.
 *
 * A dataset plugin derives from it the way mmdet's coco.py and xml_style.py
 * subclass custom.py: its struct embeds md_custom_dataset first and its
 * md_custom_dataset_class supplies the difference, load_annotations, and
 * optionally overrides filter_img, get_ann_info, get_cat_ids, evaluate,
 * format_results (and destroy for what it adds). The library does the rest:
 *
 *   - the common keys (MD_CUSTOM_DATASET_KEYS) fill the base through the
 *     schema (md_cfg_read_struct); the class's own keys fill its fields;
 *   - ann_file and img_prefix joined with data_root, CLASSES from
 *     `classes` (a list, a file with a name per line, or None: the class's
 *     default names; a class without defaults requires it), the pipeline
 *     built, proposal_file refused (unsupported);
 *   - load_annotations appends images and their boxes with
 *     md_custom_dataset_add_img / _add_box (and _add_mask for a box's
 *     segmentation), asking md_custom_dataset_keep_img
 *     first (mmdet's _filter_imgs: in training an image needs a shorter side
 *     of at least min_size and, with filter_empty_gt, an object of CLASSES);
 *   - aspect-ratio group flags for the group sampler (_set_group_flag);
 *   - __getitem__: the pipeline on the image's info and annotations; a
 *     training sample the pipeline drops is replaced by a random one of its
 *     group, and with skip_bad_images so is an unreadable image (counted,
 *     reported when the dataset is freed);
 *   - evaluate: CustomDataset.evaluate (VOC-style mAP or recall);
 *   - the "datasets" registry's interface, md_custom_dataset_iface.
 *
 *     typedef struct my_ds { md_custom_dataset c; int64_t extra; } my_ds;   // c first
 *     static int my_load(md_custom_dataset *c, md_error *err);   // add_img / add_box per image
 *     static const md_key my_keys[] = {
 *         MD_CUSTOM_DATASET_KEYS,
 *         { "extra", MD_KEY_INT, "0", "...", false, MD_AT(my_ds, extra) },
 *         { 0 } };
 *     static const md_custom_dataset_class my_cls = {
 *         .name = "MyDataset", .size = sizeof(my_ds), .keys = my_keys, .load_annotations = my_load };
 *     static void *my_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
 *         return md_custom_dataset_build(ctx, &my_cls, cfg, err);
 *     }
 *     static const md_class my_class = { .name = "MyDataset", .keys = my_keys, .build = my_build,
 *                                        MD_IFACE(&md_custom_dataset_iface, MD_IFACE_DATASET) };
 *     MD_REGISTER("datasets", my_class)
 *
 * Threads: the loader's workers call get, ann_info and img_info
 * concurrently, so a get_ann_info override must not mutate the dataset;
 * the other entries run on the thread that builds, evaluates or frees it.
 */
#ifndef MMDET_CUSTOM_DATASET_H
#define MMDET_CUSTOM_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "ctx.h"
#include "data.h"
#include "error.h"
#include "registry.h"   /* MD_IFACE_DATASET's code; the md_class a dataset registers */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_custom_dataset md_custom_dataset;
typedef struct md_custom_skip md_custom_skip;   /* skip_bad_images bookkeeping (private) */

/* What a derived dataset supplies. Every entry but name, size and
 * load_annotations is optional: NULL is CustomDataset's behaviour. */
typedef struct md_custom_dataset_class {
    const char *name;              /* the registry type, for messages ("CocoDataset") */
    size_t size;                   /* sizeof the derived struct, md_custom_dataset first */
    const md_key *keys;            /* its schema: MD_CUSTOM_DATASET_KEYS, its own keys, { 0 } */
    /* CLASSES when the config's `classes` is None; NULL: `classes` is required. */
    const char *const *classes;
    int n_classes;
    /* mmdet's load_annotations: reads d->ann_file and appends the images
     * training keeps (md_custom_dataset_keep_img) with their boxes. The
     * schema has filled the class's fields; CLASSES and the pipeline are
     * built. 0, or -1 with err set. Required. */
    int (*load_annotations)(md_custom_dataset *d, md_error *err);
    /* _filter_imgs for one image, asked by md_custom_dataset_keep_img in
     * training only: whether to keep it; has_gt says it has an object of
     * CLASSES. NULL: shorter side >= min_size and, with filter_empty_gt,
     * has_gt. */
    bool (*filter_img)(const md_custom_dataset *d, const md_img_info *img, bool has_gt);
    /* The annotations of image idx (views valid while d lives). NULL: its
     * boxes as loaded. Not used by the default evaluate, which reads the
     * loaded boxes (with the labels of the ignored ones). */
    int (*get_ann_info)(const md_custom_dataset *d, int64_t idx, md_ann_info *out);
    /* The category ids of image idx into ids[cap]; returns how many there
     * are (may exceed cap), -1 for a bad index. NULL: the labels of its
     * boxes (mmdet's default get_cat_ids). */
    int (*get_cat_ids)(const md_custom_dataset *d, int64_t idx, int64_t *ids, int cap);
    /* mmdet's evaluate(results, metric); NULL: md_custom_dataset_evaluate. */
    int (*evaluate)(const md_custom_dataset *d, const md_det_result *results, int64_t n, const char *metric,
                    md_metrics *out, md_error *err);
    /* mmdet's format_results(results, jsonfile_prefix); NULL: the dataset
     * has no results format (its iface->format_results is NULL). */
    int (*format_results)(const md_custom_dataset *d, const md_det_result *results, int64_t n,
                          const char *prefix, md_error *err);
    /* Frees what the derived struct owns (also after a failed build, on a
     * zeroed or partly loaded struct); the library frees the rest. */
    void (*destroy)(md_custom_dataset *d);
    /* PALETTE by md_palette_table's name ("coco", "voc"); NULL: mmdet's
     * None (drawings use the random palette). */
    const char *palette;
} md_custom_dataset_class;

/* The base; a derived struct starts with it. Fields are read-only to the
 * derived class except through the functions below, and the tables that
 * load_annotations fills. */
struct md_custom_dataset {
    md_dataset base;               /* iface, type, CLASSES, group flags, test_mode */
    const md_custom_dataset_class *cls;
    md_ctx *ctx;                   /* for log lines (not from worker threads) */
    /* The constructor's arguments as the config gives them (the schema
     * fills them: MD_CUSTOM_DATASET_KEYS); strings and groups are borrowed
     * from the config, which outlives the dataset. */
    struct {
        const char *ann_file, *data_root, *img_prefix, *seg_prefix;
        const md_cfg *pipeline, *classes, *proposal_file, *file_client_args;
    } args;
    bool filter_empty_gt;          /* training drops images without an object of CLASSES */
    bool skip_bad_images;          /* training replaces an unreadable image */
    int64_t min_size;              /* _filter_imgs: shorter image side kept in training (32) */
    /* Made by the library before load_annotations. */
    char *ann_file;                /* joined with data_root */
    char *img_prefix;              /* joined with data_root; NULL when None */
    md_pipeline *pipeline;
    /* The loaded images: infos[0 .. n) (filenames owned), their boxes
     * gt.xyxy / gt.labels [off[i], off[i + 1]) and the ignored ones
     * (gt_bboxes_ignore, with labels) ign [ign_off[i], ign_off[i + 1]). */
    int64_t n, cap;
    md_img_info *infos;
    int64_t *off, *ign_off;
    md_boxes gt, ign;
    /* Segmentations of the gt boxes (masks[j] for gt box j; NULL until the
     * first md_custom_dataset_add_mask), n_masks == gt.n once there. */
    md_mask_ann *masks;
    int64_t n_masks, cap_masks;
    md_custom_skip *skip;
};

/* The keys every CustomDataset accepts (mmdet's constructor arguments),
 * stored into the base: a derived schema starts with them. `min_size` is
 * not among them (CocoDataset takes it for the image filter, into
 * min_size; XMLDataset for boxes). */
#define MD_CUSTOM_DATASET_KEYS                                                                                \
    { "ann_file", MD_KEY_STRING, NULL, "annotation file (relative to data_root)", true,                      \
      MD_AT(md_custom_dataset, args.ann_file) },                                                            \
    { "pipeline", MD_KEY_LIST, "[]", "transforms applied to each sample", false,                            \
      MD_AT(md_custom_dataset, args.pipeline) },                                                            \
    { "classes", MD_KEY_ANY, NULL, "class names (list), a file of names, or None: the default", false,      \
      MD_AT(md_custom_dataset, args.classes) },                                                             \
    { "data_root", MD_KEY_ANY, NULL, "joined before ann_file and img_prefix", false,                        \
      MD_AT(md_custom_dataset, args.data_root) },                                                           \
    { "img_prefix", MD_KEY_ANY, "\"\"", "image directory", false, MD_AT(md_custom_dataset, args.img_prefix) }, \
    { "seg_prefix", MD_KEY_ANY, NULL, "segmentation map directory (unused)", false,                         \
      MD_AT(md_custom_dataset, args.seg_prefix) },                                                          \
    { "proposal_file", MD_KEY_ANY, NULL, "precomputed proposals (unsupported)", false,                      \
      MD_AT(md_custom_dataset, args.proposal_file) },                                                       \
    { "test_mode", MD_KEY_BOOL, "false", "no filtering; samples come without annotations", false,           \
      MD_AT(md_custom_dataset, base.test_mode) },                                                           \
    { "filter_empty_gt", MD_KEY_BOOL, "true", "drop images without an object of CLASSES in training", false, \
      MD_AT(md_custom_dataset, filter_empty_gt) },                                                          \
    { "file_client_args", MD_KEY_GROUP, NULL, "accepted for mmdet configs; local files only", false,        \
      MD_AT(md_custom_dataset, args.file_client_args) },                                                    \
    { "skip_bad_images", MD_KEY_BOOL, "false", "training: replace a missing or corrupt image by another, counted", \
      false, MD_AT(md_custom_dataset, skip_bad_images) }

/* The "datasets" interface of every CustomDataset: the md_class's iface. */
extern const md_dataset_iface md_custom_dataset_iface;

/* mmdet's CustomDataset.__init__ for class `cls`: allocates cls->size
 * bytes, fills them through cls->keys, joins the paths, reads CLASSES,
 * builds the pipeline, calls load_annotations and sets the group flags.
 * The md_class's build calls it. NULL with err set on failure. */
md_dataset *md_custom_dataset_build(md_ctx *ctx, const md_custom_dataset_class *cls, const md_cfg *cfg,
                                    md_error *err);
/* ds as a CustomDataset, or NULL when it is another kind of dataset. */
const md_custom_dataset *md_custom_dataset_of(const md_dataset *ds);

/* ---- for load_annotations ---- */
/* Whether the dataset keeps an image: always in test_mode, else the
 * class's filter_img or the default (see filter_img). */
bool md_custom_dataset_keep_img(const md_custom_dataset *d, const md_img_info *img, bool has_gt);
/* Appends an image; filename (malloc'ed, relative to img_prefix) is taken
 * over, also on failure, and NULL (a failed strdup) is out of memory. Its
 * boxes follow. 0 or -1. */
int md_custom_dataset_add_img(md_custom_dataset *d, char *filename, int width, int height, int64_t id,
                              md_error *err);
/* Appends a box (x1, y1, x2, y2 in pixels, 0-based label) to the last
 * image: to gt_bboxes, or to gt_bboxes_ignore when `ignore`. 0 or -1. */
int md_custom_dataset_add_box(md_custom_dataset *d, const float xyxy[4], int64_t label, bool ignore,
                              md_error *err);

/* Gives the last box appended to gt_bboxes (not an ignored one) its
 * segmentation; *m is taken over (also on failure) and zeroed. 0 or -1. */
int md_custom_dataset_add_mask(md_custom_dataset *d, md_mask_ann *m, md_error *err);

/* ---- the methods, with the class's overrides applied ---- */
int md_custom_dataset_get_ann_info(const md_custom_dataset *d, int64_t idx, md_ann_info *out);
int md_custom_dataset_get_cat_ids(const md_custom_dataset *d, int64_t idx, int64_t *ids, int cap);

/* CustomDataset.evaluate: metric "mAP" (default) is eval_map at IoU 0.5
 * with area AP on the loaded boxes (ignored boxes neither TP nor FP),
 * giving AP50 (rounded to 3 places) then mAP; "recall" is eval_recalls over
 * each image's boxes as proposals: recall@100@0.5, @300, @1000. */
int md_custom_dataset_evaluate(const md_custom_dataset *d, const md_det_result *results, int64_t n,
                               const char *metric, md_metrics *out, md_error *err);

/* The variations of mmdet's evaluate on eval_map (VOCDataset's). */
typedef struct md_map_eval_opts {
    double iou_thr;                /* 0.5 */
    bool eleven_points;            /* '11points' AP (VOC2007) instead of 'area' */
    bool legacy_coordinates;       /* widths and heights + 1 (VOC's devkit) */
    bool map_first;                /* mAP before AP50 (VOCDataset) */
} md_map_eval_opts;
/* md_custom_dataset_evaluate with opts (NULL: CustomDataset's). */
int md_custom_dataset_evaluate_map(const md_custom_dataset *d, const md_det_result *results, int64_t n,
                                   const char *metric, const md_map_eval_opts *opts, md_metrics *out,
                                   md_error *err);

#ifdef __cplusplus
}
#endif
#endif
