/* mmdet's DistancePointBBoxCoder (mmdet/core/bbox/coder/
 * distance_point_bbox_coder.py), the default coder of anchor-free heads:
 * a box is its distances (left, top, right, bottom) from a point.
 * encode is bbox2distance (encode_max with mmdet's per-call max_dis and
 * eps: the distances clamped to [0, max_dis - eps], what GFL-style heads
 * ask with reg_max; FCOS never encodes), decode distance2bbox, clipped to max_shape with
 * clip_border. Points are rows of at least two columns (x, y first: the
 * MlvlPointGenerator's (x, y, stride_w, stride_h) rows as they are). Decode
 * is an op with its own backward (gradient in the distances), so a head
 * regressing decoded boxes (IoU losses) trains through it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>

typedef struct coder {
    md_bbox_coder base;
    bool clip_border;
} coder;

static const md_key keys[] = {
    { "clip_border", MD_KEY_BOOL, "true", "clip decoded boxes to the image", false, MD_AT(coder, clip_border) },
    { 0 } };

/* Device inputs: a small per-box loop, run on the CPU from copies
 * (md_tensor_to carries gradients back), the result copied back. */
static md_device coder_device(md_tensor *a, md_tensor *b) {
    return a && a->device != MD_CPU ? md_tensor_device(a) : b && b->device != MD_CPU ? md_tensor_device(b) : MD_DEVICE_CPU;
}

static bool points_ok(const md_tensor *p) { return p->ndim == 2 && p->shape[1] >= 2 && p->dtype == MD_F32; }

/* bbox2distance; with max_dis (not NaN) each distance clamped to
 * [0, max_dis - eps] as torch's clamp(min=0, max=max_dis - eps). */
static md_tensor *encode_clamped(md_ctx *ctx, const md_bbox_coder *bc, md_tensor *points, md_tensor *gt,
                                 double max_dis, double eps) {
    if (!points || !gt) return NULL;
    md_device dev = coder_device(points, gt);
    if (dev.type != MD_CPU)
        return md_tensor_to(ctx, encode_clamped(ctx, bc, md_tensor_to(ctx, points, MD_DEVICE_CPU),
                                                md_tensor_to(ctx, gt, MD_DEVICE_CPU), max_dis, eps),
                            dev);
    if (!points_ok(points) || gt->ndim != 2 || gt->shape[1] != 4 || gt->shape[0] != points->shape[0] ||
        gt->dtype != MD_F32) {
        char b1[64], b2[64];
        return md_op_fail(ctx, "DistancePointBBoxCoder.encode", "points %s must be f32 [N, >= 2] and gt %s f32 [N, 4]",
                          md_tensor_describe(points, b1, sizeof b1), md_tensor_describe(gt, b2, sizeof b2));
    }
    points = md_contiguous(ctx, points);
    gt = md_contiguous(ctx, gt);
    int64_t n = gt->shape[0];
    md_tensor *out = md_tensor_empty(ctx, MD_F32, MD_DIMS(n, 4));
    if (!out || !points || !gt) return NULL;
    int64_t pc = points->shape[1];
    const float *p = md_f32(points), *g = md_f32(gt);
    float *o = md_f32(out);
    for (int64_t i = 0; i < n; i++, p += pc, g += 4, o += 4) {
        o[0] = p[0] - g[0];
        o[1] = p[1] - g[1];
        o[2] = g[2] - p[0];
        o[3] = g[3] - p[1];
        if (!isnan(max_dis)) {
            float hi = (float)(max_dis - eps);
            for (int k = 0; k < 4; k++) o[k] = fminf(fmaxf(o[k], 0.0f), hi);
        }
    }
    return out;
}

static md_tensor *encode(md_ctx *ctx, const md_bbox_coder *bc, md_tensor *points, md_tensor *gt) {
    return encode_clamped(ctx, bc, points, gt, NAN, 0);
}

static md_tensor *encode_max(md_ctx *ctx, const md_bbox_coder *bc, md_tensor *points, md_tensor *gt, double max_dis,
                             double eps) {
    if (isnan(max_dis) || isnan(eps))
        return md_op_fail(ctx, "DistancePointBBoxCoder.encode", "max_dis %g and eps %g must be numbers", max_dis, eps);
    return encode_clamped(ctx, bc, points, gt, max_dis, eps);
}

/* d(box)/d(distance) is -1 for x1, y1 and +1 for x2, y2, times the clip
 * mask saved by the forward (1 where the clamp let the coordinate through). */
static int decode_backward(md_ctx *ctx, md_node *node, md_tensor *gout) {
    md_tensor *pred = md_node_input(node, 1);
    const float *mask = md_node_saved(node), *go = md_f32(gout);
    int64_t n = md_tensor_numel(pred);
    md_tensor *g = md_tensor_empty(ctx, MD_F32, pred->ndim, pred->shape);
    if (!g) return -1;
    float *gd = md_f32(g);
    for (int64_t i = 0; i < n; i++) gd[i] = (i % 4 < 2 ? -go[i] : go[i]) * (mask ? mask[i] : 1.0f);
    return md_node_accumulate(ctx, node, 1, g);
}

static md_tensor *decode(md_ctx *ctx, const md_bbox_coder *bc, md_tensor *points, md_tensor *pred,
                         const int *max_shape) {
    const coder *c = (const coder *)bc;
    if (!points || !pred) return NULL;
    md_device dev = coder_device(points, pred);
    if (dev.type != MD_CPU)
        return md_tensor_to(ctx, decode(ctx, bc, md_tensor_to(ctx, points, MD_DEVICE_CPU), md_tensor_to(ctx, pred, MD_DEVICE_CPU),
                                        max_shape), dev);
    if (!points_ok(points) || pred->ndim != 2 || pred->shape[0] != points->shape[0] || pred->shape[1] % 4 != 0 ||
        pred->shape[1] == 0 || pred->dtype != MD_F32) {
        char b1[64], b2[64];
        return md_op_fail(ctx, "DistancePointBBoxCoder.decode", "points %s must be f32 [N, >= 2] and pred %s f32 [N, 4k]",
                          md_tensor_describe(points, b1, sizeof b1), md_tensor_describe(pred, b2, sizeof b2));
    }
    points = md_contiguous(ctx, points);
    md_tensor *predc = md_contiguous(ctx, pred);
    int64_t n = pred->shape[0], k4 = pred->shape[1], pc = points ? points->shape[1] : 0;
    md_tensor *out = md_tensor_empty(ctx, MD_F32, MD_DIMS(n, k4));
    if (!out || !points || !predc) return NULL;
    bool clip = c->clip_border && max_shape;
    bool grad = md_grad_enabled(ctx) && pred->requires_grad;
    float *mask = grad && clip ? md_ctx_alloc(ctx, sizeof(float) * (size_t)(n * k4)) : NULL;
    if (grad && clip && !mask) return md_op_failc(ctx, MD_ERR_NOMEM, "DistancePointBBoxCoder.decode", "out of memory");
    const float *p = md_f32(points), *d = md_f32(predc);
    float *o = md_f32(out);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k4; j += 4) {
            const float *pt = p + i * pc, *dd = d + i * k4 + j;
            float b[4] = { pt[0] - dd[0], pt[1] - dd[1], pt[0] + dd[2], pt[1] + dd[3] };
            for (int q = 0; q < 4; q++) {
                float v = b[q], m = 1.0f;
                if (clip) {
                    float hi = (float)(q % 2 == 0 ? max_shape[1] : max_shape[0]);
                    if (v < 0.0f || v > hi) m = 0.0f;   /* torch clamp passes gradient on [lo, hi] */
                    v = v < 0.0f ? 0.0f : v > hi ? hi : v;
                }
                o[i * k4 + j + q] = v;
                if (mask) mask[i * k4 + j + q] = m;
            }
        }
    if (grad) {
        md_tensor *ins[2] = { points, pred };
        md_node *node = md_autograd_record(ctx, out, ins, 2, decode_backward, "distance2bbox");
        if (node) {
            /* the backward reads neither the inputs' values nor the output */
            md_node_unsave(ctx, node, 0);
            md_node_unsave(ctx, node, 1);
            md_node_unsave(ctx, node, -1);
            if (mask) {
                float *s = md_node_save(ctx, node, sizeof(float) * (size_t)(n * k4));
                if (!s) return md_op_failc(ctx, MD_ERR_NOMEM, "DistancePointBBoxCoder.decode", "out of memory");
                memcpy(s, mask, sizeof(float) * (size_t)(n * k4));
            }
        }
    }
    return out;
}

static void destroy(md_bbox_coder *c) { free(c); }
static const md_bbox_coder_iface iface = { .encode = encode, .decode = decode, .destroy = destroy,
                                           .encode_max = encode_max };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    coder *c = md_object_new(sizeof *c, &iface, "DistancePointBBoxCoder", cfg, keys, err);
    if (!c) return NULL;
    return c;
}

static const md_class cls = { .name = "DistancePointBBoxCoder", .keys = keys, .build = build,
                              MD_IFACE(&iface, MD_IFACE_BBOX_CODER),
                              .doc = "mmdet's point-to-box coder: (left, top, right, bottom) distances from a point" };
MD_PLUGIN("distance_point_coder", "1.0", "Apache-2.0");
MD_REGISTER("bbox_coders", cls)
