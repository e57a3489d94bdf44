/* COCO annotations, detection results and bbox evaluation.
 *
 * Loading streams the JSON through yajl's callback parser into compact
 * arrays (no document tree), so a file the size of instances_train2017.json
 * stays small in memory. Segmentations are kept as md_mask_ann (polygons,
 * or RLE with the counts as a list or a string); a malformed one is kept
 * as MD_MASK_ANN_INVALID and only an error for segm evaluation.
 *
 * Evaluation follows pycocotools' COCOeval (iouType 'bbox' or 'segm') exactly:
 * IoU thresholds .50:.05:.95, 101 recall points, area ranges all / small /
 * medium / large on the GT 'area' field and on w*h for detections, maxDets
 * 1/10/100, crowd GT (IoU = intersection / detection area, matched any
 * number of times, never counted), per image and category greedy matching in
 * descending score order with stable ties, interpolated precision, and -1
 * where a category has no GT. As in pycocotools, a GT's 'ignore' field is
 * overridden by 'iscrowd'. For 'segm' the IoU is of the RLEs (rleIou; GT
 * polygons rasterised at their image's size, annToRLE), crowd GT dividing
 * by the detection's mask area, a GT's area range tested on its 'area'
 * field and a detection's on its mask area (loadRes).
 */
#ifndef MMDET_COCO_H
#define MMDET_COCO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "error.h"
#include "masks.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_coco_image {
    int64_t id;
    const char *file_name;       /* "" when absent */
    int32_t width, height;       /* 0 when absent */
} md_coco_image;

typedef struct md_coco_category {
    int64_t id;
    const char *name;            /* "" when absent */
    const char *supercategory;   /* "" when absent */
} md_coco_category;

typedef struct md_coco_ann {
    int64_t id, image_id, category_id;
    double bbox[4];              /* x, y, w, h as in the file */
    double area;                 /* the 'area' field; w * h when absent */
    int32_t iscrowd;             /* 0 when absent */
    int32_t ignore;              /* the 'ignore' field, 0 when absent */
    int32_t image_index;         /* index into images[] */
    int32_t category_index;      /* index into categories[] */
    md_mask_ann segmentation;    /* kind NONE when absent */
} md_coco_ann;

/* Arrays in file order. */
typedef struct md_coco {
    md_coco_image *images;
    size_t n_images;
    md_coco_category *categories;
    size_t n_categories;
    md_coco_ann *anns;
    size_t n_anns;
    /* private */
    char *strings_;
    size_t *image_by_id_, *category_by_id_;   /* indices sorted by id */
} md_coco;

/* Loads a COCO annotation file. Errors name the file and, for syntax errors,
 * the byte offset, line and column; for bad records the array element
 * ("annotations[12] (id 13): ..."). Duplicate image, category or annotation
 * ids and annotations of unknown images or categories are errors. */
md_coco *md_coco_load(const char *path, md_error *err);
/* Same from memory; `name` stands for the file in messages. */
md_coco *md_coco_parse(const char *buf, size_t n, const char *name, md_error *err);
void md_coco_free(md_coco *c);
/* Index of an image or category by id; -1 when absent. */
long md_coco_image_index(const md_coco *c, int64_t id);
long md_coco_category_index(const md_coco *c, int64_t id);

/* One detection, as in the COCO results format. */
typedef struct md_coco_det {
    int64_t image_id, category_id;
    double bbox[4];              /* x, y, w, h */
    double score;
    md_mask_ann segmentation;    /* segm results: an RLE; kind NONE when absent */
} md_coco_det;

/* Loads a results file: a JSON array of {image_id, category_id, bbox,
 * score} (segm results: and segmentation, an RLE; bbox may then be
 * absent). *dets is malloc'ed (free it with md_coco_dets_free); *n may be 0. */
int md_coco_load_dets(const char *path, md_coco_det **dets, size_t *n, md_error *err);
int md_coco_parse_dets(const char *buf, size_t len, const char *name, md_coco_det **dets, size_t *n, md_error *err);
void md_coco_dets_free(md_coco_det *dets, size_t n);
/* Writes detections in the results format (deterministic, %.17g numbers);
 * a detection with an RLE segmentation gets "segmentation": {"size": [h,
 * w], "counts": "<compressed string>"}, as mmdet's results2json. */
int md_coco_write_dets(const char *path, const md_coco_det *dets, size_t n, md_error *err);

#define MD_COCO_T 10   /* IoU thresholds */
#define MD_COCO_R 101  /* recall points */
#define MD_COCO_A 4    /* area ranges: all, small, medium, large */
#define MD_COCO_M 3    /* maxDets: 1, 10, 100 */

typedef struct md_coco_eval {
    double stats[12];            /* pycocotools' summarize() order */
    size_t n_categories;         /* K: GT categories sorted by id */
    int64_t *category_ids;       /* [K] */
    double *category_ap;         /* [K] AP@[.5:.95], area all, maxDets 100; -1: no GT */
    double *precision;           /* [T][R][K][A][M] as COCOeval.eval['precision'] */
    double *recall;              /* [T][K][A][M] as COCOeval.eval['recall'] */
    size_t n_dets_unmatched_category;  /* detections of categories not in GT (dropped) */
} md_coco_eval;

/* Evaluates `dets` against `gt`. Detections of images not in gt are an
 * error (as pycocotools' loadRes); those of unknown categories are dropped
 * and counted. Runs categories in parallel (OpenMP); results do not depend on
 * the thread count. Free `out` with md_coco_eval_free. */
int md_coco_evaluate(const md_coco *gt, const md_coco_det *dets, size_t n, md_coco_eval *out, md_error *err);
typedef enum md_coco_iou_type { MD_COCO_IOU_BBOX = 0, MD_COCO_IOU_SEGM } md_coco_iou_type;
/* The same with COCOeval's iouType: segm needs every GT annotation's and
 * every detection's segmentation (an error names the one that has none or
 * a malformed one). */
int md_coco_evaluate_as(const md_coco *gt, const md_coco_det *dets, size_t n, md_coco_iou_type type,
                        md_coco_eval *out, md_error *err);
void md_coco_eval_free(md_coco_eval *e);
/* Prints pycocotools' 12 summary lines. */
void md_coco_eval_print(const md_coco_eval *e, FILE *f);
/* The summary line of stat i (0..11) into buf, without the newline. */
const char *md_coco_stat_line(const md_coco_eval *e, int i, char *buf, size_t n);
/* The IoU thresholds and recall points, bit-identical to numpy's linspace. */
double md_coco_iou_threshold(int t);
double md_coco_recall_point(int r);

#ifdef __cplusplus
}
#endif
#endif
