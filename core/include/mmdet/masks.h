/* Instance masks: mmdet 2.x's BitmapMasks and PolygonMasks
 * (mmdet/core/mask/structures.py) and pycocotools' run-length encoding
 * (maskApi.c), which the data path, the mask heads and the segm
 * evaluation share.
 *
 * md_masks holds the n masks of one image, in the pixels of the current
 * image (h x w), in the order of its gt boxes. Either bitmaps or polygons:
 *
 *   bitmaps   u8 [n, h, w] row-major, 0 or 1 (BitmapMasks)
 *   polygons  mask k has poly_count[k] polygons, polys[poly_begin[k] ..];
 *             polygon j has n_points[j] points xy[2 * n_points[j]] (x, y),
 *             pixel coordinates as COCO stores them (PolygonMasks)
 *
 * Masks are plain malloc'ed memory (they travel with samples through the
 * worker threads); md_masks_free releases what one owns.
 *
 * md_rle is pycocotools' RLE: counts of alternating runs of 0 and 1 in
 * column-major (Fortran) order over an h x w mask, starting with a run of
 * 0s (possibly empty).
 */
#ifndef MMDET_MASKS_H
#define MMDET_MASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ctx.h"
#include "error.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum md_masks_kind { MD_MASKS_BITMAP = 0, MD_MASKS_POLYGON } md_masks_kind;

typedef struct md_polygon {
    int n_points;
    float *xy;                      /* 2 * n_points: x0 y0 x1 y1 ... */
} md_polygon;

typedef struct md_masks {
    md_masks_kind kind;
    int n, h, w;
    uint8_t *bitmaps;               /* BITMAP: n * h * w */
    int *poly_begin, *poly_count;   /* POLYGON: n each */
    md_polygon *polys;              /* POLYGON: n_polys */
    int n_polys;
} md_masks;

/* pycocotools' RLE of one h x w mask. */
typedef struct md_rle {
    int h, w;
    int64_t m;                      /* number of counts */
    uint32_t *counts;
} md_rle;

void md_masks_init(md_masks *m);
void md_masks_free(md_masks *m);
int md_masks_copy(md_masks *dst, const md_masks *src, md_error *err);

/* Mask k as a u8 bitmap h x w row-major into out (polygons rasterised as
 * pycocotools' frPyObjects + decode, which mmdet's poly2mask uses). */
int md_masks_bitmap(const md_masks *m, int k, uint8_t *out, md_error *err);

/* mmdet's crop_and_resize for mask targets: for each of the P boxes
 * bboxes f32 [P, 4] (xyxy, pixels of the masks' image) the mask inds[p]
 * (i64 [P]; NULL: p) cropped to the box and resized to out_h x out_w
 * (bitmaps: RoIAlign with aligned = true, sampling_ratio 0, as
 * BitmapMasks, through md_mask_targets; polygons: the polygon shifted and
 * scaled into the box and rasterised, as PolygonMasks), then binarised at
 * 0.5. f32 [P, out_h, out_w] of 0 and 1, a step tensor on the device of
 * bboxes (inds on the same device; mmdet's `device` argument): bitmaps go
 * there and are cropped there, polygons are rasterised on the host and
 * copied. NULL with the context's error. */
md_tensor *md_masks_crop_and_resize(md_ctx *ctx, const md_masks *m, md_tensor *bboxes, md_tensor *inds, int out_h,
                                    int out_w);

/* ---- on tensors, on any device (core/ops/op_masks.c): the backend's mask
 * kernels, so that a model on a GPU makes its targets and pastes its
 * results there. No autograd; NULL (or -1) with the context's error. ---- */
/* BitmapMasks.crop_and_resize of bitmaps: masks u8 [n, h, w], boxes f32
 * [P, 4] (x1, y1, x2, y2, not negative in size) and inds i64 [P] (NULL: p)
 * on one device; f32 [P, out_h, out_w] of 0 and 1 there: mmcv's RoIAlign
 * (aligned, sampling_ratio 0) of mask inds[p] over box p, >= 0.5. */
md_tensor *md_mask_targets(md_ctx *ctx, md_tensor *masks, md_tensor *boxes, md_tensor *inds, int out_h, int out_w);
/* mmdet's _do_paste_mask (skip_empty, bilinear grid_sample) of channel
 * chan[d] of probs f32 [D, C, mh, mw] over boxes[d] (f32 [D, 4], image
 * pixels), >= thr: u8 [D, img_h, img_w] of 0 and 1 on probs' device (chan,
 * boxes there too). */
md_tensor *md_masks_paste(md_ctx *ctx, md_tensor *probs, md_tensor *chan, md_tensor *boxes, int img_h, int img_w,
                          float thr);
/* md_rle_encode of each of masks u8 [n, h, w] (any device) into out[0 ..
 * n), their counts in the step arena. 0 or -1. */
int md_masks_encode(md_ctx *ctx, md_tensor *masks, md_rle *out);
/* md_masks_paste then md_masks_encode, at most 64 MiB of pasted masks at a
 * time: a mask head's results as RLEs (counts in the step arena). */
int md_masks_paste_encode(md_ctx *ctx, md_tensor *probs, md_tensor *chan, md_tensor *boxes, int img_h, int img_w,
                          float thr, md_rle *out);

/* ---- BitmapMasks / PolygonMasks methods (mmdet/core/mask/structures.py);
 * in place, 0 or -1 with err set (out of memory) ---- */
/* resize(out_shape): bitmaps by nearest neighbour (cv2 INTER_NEAREST:
 * source index floor(dst * (1 / (out / in))), clamped), polygons scaled by
 * out_w / w and out_h / h. rescale(scale) is resize to mmcv's
 * rescale_size of (w, h). */
int md_masks_resize(md_masks *m, int out_h, int out_w, md_error *err);
/* flip: horizontal (x -> w - x for polygons), vertical, or both (diagonal). */
void md_masks_flip(md_masks *m, bool horizontal, bool vertical);
/* pad(out_shape, pad_val): bitmaps padded right and bottom with val;
 * polygons only change their h and w. out_h >= h, out_w >= w. */
int md_masks_pad(md_masks *m, int out_h, int out_w, uint8_t val, md_error *err);
/* crop(bbox): bbox (x1, y1, x2, y2) integers clipped to the masks, size
 * max(x2 - x1, 1) x max(y2 - y1, 1); polygons moved by (-x1, -y1). */
int md_masks_crop(md_masks *m, const int bbox[4], md_error *err);
/* masks[keep]: keeps mask k where keep[k], in order. */
int md_masks_select(md_masks *m, const bool *keep, md_error *err);
/* areas: pixels of each bitmap; the polygons' shoelace areas summed. */
void md_masks_areas(const md_masks *m, double *out);
/* get_bboxes: the tight box (x1, y1, x2 + 1, y2 + 1) of each bitmap (0s
 * when empty); of polygons the min and max of their points. out f32 [n, 4]. */
void md_masks_get_bboxes(const md_masks *m, float *out);

/* ---- RLE (pycocotools' maskApi) ---- */
/* Encodes a u8 h x w row-major mask (nonzero = 1). */
int md_rle_encode(const uint8_t *mask, int h, int w, md_rle *out, md_error *err);
/* Decodes into a u8 h x w row-major mask. */
int md_rle_decode(const md_rle *r, uint8_t *mask, md_error *err);
void md_rle_free(md_rle *r);
int md_rle_copy(md_rle *dst, const md_rle *src, md_error *err);
/* Number of 1 pixels (pycocotools' area). */
uint64_t md_rle_area(const md_rle *r);
/* The compressed string form of the counts (rleToString: 6 bits a
 * character, ASCII 48-111, deltas from the count two back), as COCO JSON
 * stores "counts"; malloc'ed, NULL when out of memory. */
char *md_rle_to_string(const md_rle *r);
/* rleFrString: counts from the string form, of an h x w mask. 0, or -1
 * with err set (a character outside 48-111, a count outside 32 bits).
 * Counts that do not add up to h * w are refused by md_rle_decode. */
int md_rle_from_string(const char *s, int h, int w, md_rle *out, md_error *err);
/* rleFrPoly: the polygon of k points xy[2k] (x, y) rasterised into an
 * h x w mask (pycocotools' frPoly: 5x upsampling, column boundaries). */
int md_rle_from_poly(const double *xy, int k, int h, int w, md_rle *out, md_error *err);
/* rleFrBbox: the box (x, y, w, h) as the polygon of its corners. */
int md_rle_from_bbox(const double bb[4], int h, int w, md_rle *out, md_error *err);
/* rleMerge: union (or intersection) of n RLEs of one size; n 0 gives an
 * empty 0 x 0 RLE, sizes that differ a 0 x 0 one, as pycocotools. */
int md_rle_merge(const md_rle *rs, int n, bool intersect, md_rle *out, md_error *err);
/* rleToBbox: the tight box (x, y, w, h). */
void md_rle_to_bbox(const md_rle *r, double bb[4]);
/* rleIou: iou[d * n + g] of m detections and n ground truths (pycocotools
 * returns the same [m, n]); a crowd ground truth (iscrowd[g] nonzero;
 * iscrowd may be NULL) divides by the detection's area; -1 where the sizes
 * differ. */
void md_rle_iou(const md_rle *dt, int m, const md_rle *gt, int n, const uint8_t *iscrowd, double *iou);

/* ---- a COCO "segmentation" (mmdet's gt_masks_ann entry) ---- */
typedef enum md_mask_ann_kind {
    MD_MASK_ANN_NONE = 0, MD_MASK_ANN_POLYGONS, MD_MASK_ANN_RLE,
    MD_MASK_ANN_INVALID,            /* malformed: `invalid` says why, reported when the mask is used */
    MD_MASK_ANN_FILE                /* not read yet: bytes [offset, offset + length) of `file` hold its JSON */
} md_mask_ann_kind;

/* As the JSON gives it: a list of polygons ([[x0, y0, x1, y1, ...], ...],
 * numbers as doubles), or an RLE {counts, size} whose counts were a list
 * (uncompressed) or a string (decoded here). id names the annotation in
 * messages. */
typedef struct md_mask_ann {
    md_mask_ann_kind kind;
    int64_t id;
    int n_polys;
    int *poly_len;                  /* numbers in each polygon */
    double *coords;                 /* all polygons' numbers, in order */
    md_rle rle;                     /* RLE: its own size as the JSON gives it */
    char *invalid;                  /* INVALID: the message (file, annotation, what is wrong) */
    const char *file;               /* FILE: the annotation file (borrowed: its owner outlives this) */
    int64_t offset, length;
} md_mask_ann;

void md_mask_ann_free(md_mask_ann *a);
/* A FILE segmentation read and parsed into out (other kinds copied);
 * errors name the file and the annotation. Safe from several threads. */
int md_mask_ann_read(const md_mask_ann *a, md_mask_ann *out, md_error *err);
int md_mask_ann_copy(md_mask_ann *dst, const md_mask_ann *src, md_error *err);
/* pycocotools' annToRLE (mmdet's _poly2mask) for an h x w image (a FILE
 * segmentation read first): polygons
 * through frPyObjects and merge (a first polygon of fewer than 6 numbers is
 * an error, as it is there), an RLE as it is. Errors name the annotation. */
int md_mask_ann_to_rle(const md_mask_ann *a, int h, int w, md_rle *out, md_error *err);
/* LoadAnnotations' masks of n annotations for an h x w image: poly2mask
 * gives BitmapMasks (md_mask_ann_to_rle, decoded; an RLE must be h x w),
 * otherwise PolygonMasks of the polygons with an even count of at least 6
 * numbers (process_polygons; an RLE is an error). An annotation without a
 * segmentation is an error naming its position. out is initialised here. */
int md_masks_from_anns(md_masks *out, const md_mask_ann *anns, int n, int h, int w, bool poly2mask, md_error *err);
/* Parses a segmentation's JSON text (the value of "segmentation"). 0, or
 * -1 with err saying what is wrong in it (the caller names the file and
 * the annotation). */
int md_mask_ann_parse(const char *json, size_t n, md_mask_ann *out, md_error *err);

#ifdef __cplusplus
}
#endif
#endif
