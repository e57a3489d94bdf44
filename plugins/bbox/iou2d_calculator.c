/* mmdet's BboxOverlaps2D (mmdet/core/bbox/iou_calculators/iou2d_calculator.py):
 * IoU, IoF or GIoU of two sets of boxes, a fifth column (a score) ignored,
 * by the core's md_bbox_overlaps (eps 1e-6). `scale` and `dtype` are
 * mmdet's keys; dtype "fp16" (overlaps computed in half precision after
 * dividing by scale, to save memory) is refused: overlaps are f32 here. */
#include <stdlib.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>

typedef struct overlaps2d {
    md_iou_calculator base;
    double scale;
    const char *dtype;
} overlaps2d;

static const md_key keys[] = {
    { "scale", MD_KEY_FLOAT, "1.0", "boxes are divided by it before an fp16 cast", false, MD_AT(overlaps2d, scale) },
    { "dtype", MD_KEY_STRING, "None", "None (f32); fp16 is not supported", false, MD_AT(overlaps2d, dtype),
      .choices = "fp16" },
    { 0 } };

/* The box columns of [N, 4] or [N, 5] (mmdet drops the score). */
static md_tensor *boxes_of(md_ctx *ctx, md_tensor *b) {
    if (b && b->ndim == 2 && b->shape[1] == 5) return md_contiguous(ctx, md_slice(ctx, b, 1, 0, 4, 1));
    return b;
}

static md_tensor *overlaps(md_ctx *ctx, const md_iou_calculator *c, md_tensor *bboxes1, md_tensor *bboxes2,
                           md_iou_mode mode, bool is_aligned) {
    (void)c;
    return md_bbox_overlaps(ctx, boxes_of(ctx, bboxes1), boxes_of(ctx, bboxes2), mode, is_aligned, 1e-6);
}

static void destroy(md_iou_calculator *c) { free(c); }
static const md_iou_calculator_iface iface = { .overlaps = overlaps, .destroy = destroy };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    overlaps2d *o = md_object_new(sizeof *o, &iface, "BboxOverlaps2D", cfg, keys, err);
    if (!o) return NULL;
    if (o->dtype) {
        md_failc(err, MD_ERR_CONFIG, "dtype \"%s\" is not supported: overlaps are computed in f32 (dtype None)",
                 o->dtype);
        free(o);
        return NULL;
    }
    return o;
}

static const md_class cls = { .name = "BboxOverlaps2D", .keys = keys, .build = build,
                              MD_IFACE(&iface, MD_IFACE_IOU_CALCULATOR),
                              .doc = "mmdet's 2-D IoU / IoF / GIoU of boxes (bbox_overlaps)" };
MD_PLUGIN("iou2d_calculator", "1.0", "Apache-2.0");
MD_REGISTER("iou_calculators", cls)
