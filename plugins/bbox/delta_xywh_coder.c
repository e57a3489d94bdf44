/* mmdet's DeltaXYWHBBoxCoder (mmdet/core/bbox/coder/delta_xywh_bbox_coder.py):
 * bbox2delta and delta2bbox (the non-legacy variants) with target_means /
 * target_stds, wh_ratio_clip, add_ctr_clamp and clip_border. Decode is an
 * op with its own backward (gradient in the deltas) so heads that regress
 * decoded boxes (GIoU) train through it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>

typedef struct coder {
    md_bbox_coder base;
    float means[4], stds[4];
    bool clip_border, add_ctr_clamp;
    double ctr_clamp, wh_ratio_clip;
} coder;

static const md_key keys[] = {
    { "target_means", MD_KEY_LIST, "[0.0, 0.0, 0.0, 0.0]", "means of the deltas", false },
    { "target_stds", MD_KEY_LIST, "[1.0, 1.0, 1.0, 1.0]", "standard deviations of the deltas", false },
    { "clip_border", MD_KEY_BOOL, "true", "clip decoded boxes to the image", false, MD_AT(coder, clip_border) },
    { "add_ctr_clamp", MD_KEY_BOOL, "false", "clamp the centre shift to ctr_clamp pixels", false,
      MD_AT(coder, add_ctr_clamp) },
    { "ctr_clamp", MD_KEY_INT, "32", "centre shift clamp (with add_ctr_clamp)", false, MD_AT(coder, ctr_clamp) },
    { "wh_ratio_clip", MD_KEY_FLOAT, "0.016", "smallest width/height ratio (positive)", false,
      MD_AT(coder, wh_ratio_clip) },
    { 0 } };

static md_tensor *encode(md_ctx *ctx, const md_bbox_coder *bc, md_tensor *bboxes, md_tensor *gt);

/* Device inputs: the coder is a small per-box loop, run on the CPU from
 * copies (md_tensor_to, whose backward carries gradients back), the result
 * copied to the inputs' device: the same numbers as on the CPU. */
static md_device coder_device(md_tensor *a, md_tensor *b) {
    return a && a->device != MD_CPU ? md_tensor_device(a) : b && b->device != MD_CPU ? md_tensor_device(b) : MD_DEVICE_CPU;
}

static md_tensor *encode(md_ctx *ctx, const md_bbox_coder *bc, md_tensor *bboxes, md_tensor *gt) {
    const coder *c = (const coder *)bc;
    if (!bboxes || !gt) return NULL;
    md_device dev = coder_device(bboxes, gt);
    if (dev.type != MD_CPU)
        return md_tensor_to(ctx, encode(ctx, bc, md_tensor_to(ctx, bboxes, MD_DEVICE_CPU), md_tensor_to(ctx, gt, MD_DEVICE_CPU)),
                            dev);
    if (bboxes->ndim != 2 || bboxes->shape[1] != 4 || !md_tensor_same_shape(bboxes, gt) ||
        bboxes->dtype != MD_F32 || gt->dtype != MD_F32) {
        char b1[64], b2[64];
        return md_op_fail(ctx, "DeltaXYWHBBoxCoder.encode", "bboxes %s and gt %s must both be f32 [N, 4]",
                          md_tensor_describe(bboxes, b1, sizeof b1), md_tensor_describe(gt, b2, sizeof b2));
    }
    bboxes = md_contiguous(ctx, bboxes);
    gt = md_contiguous(ctx, gt);
    int64_t n = bboxes->shape[0];
    md_tensor *out = md_tensor_empty(ctx, MD_F32, MD_DIMS(n, 4));
    if (!out || !bboxes || !gt) return NULL;
    const float *p = md_f32(bboxes), *g = md_f32(gt);
    float *o = md_f32(out);
    for (int64_t i = 0; i < n; i++, p += 4, g += 4, o += 4) {
        float px = (p[0] + p[2]) * 0.5f, py = (p[1] + p[3]) * 0.5f, pw = p[2] - p[0], ph = p[3] - p[1];
        float gx = (g[0] + g[2]) * 0.5f, gy = (g[1] + g[3]) * 0.5f, gw = g[2] - g[0], gh = g[3] - g[1];
        float d[4] = { (gx - px) / pw, (gy - py) / ph, logf(gw / pw), logf(gh / ph) };
        for (int k = 0; k < 4; k++) o[k] = (d[k] - c->means[k]) / c->stds[k];
    }
    return out;
}

/* What backward needs: d(box)/d(delta) is diagonal per coordinate pair. */
typedef struct dec_saved { const coder *c; } dec_saved;

static int decode_backward(md_ctx *ctx, md_node *node, md_tensor *gout) {
    const coder *c = ((dec_saved *)md_node_saved(node))->c;
    md_tensor *rois = md_node_input(node, 0), *pred = md_node_input(node, 1), *out = md_node_output(node);
    (void)out;
    int64_t n = pred->shape[0], k4 = pred->shape[1];
    md_tensor *g = md_tensor_zeros(ctx, MD_F32, MD_DIMS(n, k4));
    const float *saved = (const float *)((char *)md_node_saved(node) + sizeof(dec_saved));
    if (!g) return -1;
    const float *r = md_f32(rois), *d = md_f32(pred), *go = md_f32(gout);
    float *gd = md_f32(g);
    double max_ratio = fabs(log(c->wh_ratio_clip));
    for (int64_t i = 0; i < n; i++) {
        float px = (r[i * 4] + r[i * 4 + 2]) * 0.5f, py = (r[i * 4 + 1] + r[i * 4 + 3]) * 0.5f;
        float pw = r[i * 4 + 2] - r[i * 4], ph = r[i * 4 + 3] - r[i * 4 + 1];
        (void)px; (void)py;
        for (int64_t j = 0; j < k4; j += 4) {
            const float *dd = d + i * k4 + j;
            const float *go4 = go + i * k4 + j;
            const float *mask = saved + (i * k4 + j);   /* 1 where the clip let the coordinate through */
            float den[4];
            for (int q = 0; q < 4; q++) den[q] = dd[q] * c->stds[q] + c->means[q];
            /* x1 = gx - gw/2, x2 = gx + gw/2 */
            float g1 = go4[0] * mask[0], g2 = go4[1] * mask[1], g3 = go4[2] * mask[2], g4 = go4[3] * mask[3];
            float dgx = g1 + g3, dgy = g2 + g4, dgw = 0.5f * (g3 - g1), dgh = 0.5f * (g4 - g2);
            float dxw = pw * den[0], dyh = ph * den[1];
            float cx = 1.0f, cy = 1.0f, cw = 1.0f, ch = 1.0f;
            if (c->add_ctr_clamp) {
                if (dxw < -c->ctr_clamp || dxw > c->ctr_clamp) cx = 0.0f;
                if (dyh < -c->ctr_clamp || dyh > c->ctr_clamp) cy = 0.0f;
                if (den[2] > max_ratio) cw = 0.0f;
                if (den[3] > max_ratio) ch = 0.0f;
            } else {
                if (den[2] < -max_ratio || den[2] > max_ratio) cw = 0.0f;
                if (den[3] < -max_ratio || den[3] > max_ratio) ch = 0.0f;
            }
            float dw = c->add_ctr_clamp ? fminf(den[2], (float)max_ratio)
                                        : fminf(fmaxf(den[2], (float)-max_ratio), (float)max_ratio);
            float dh = c->add_ctr_clamp ? fminf(den[3], (float)max_ratio)
                                        : fminf(fmaxf(den[3], (float)-max_ratio), (float)max_ratio);
            float gw = pw * expf(dw), gh = ph * expf(dh);
            float *o = gd + i * k4 + j;
            o[0] = dgx * pw * cx * c->stds[0];
            o[1] = dgy * ph * cy * c->stds[1];
            o[2] = dgw * gw * cw * c->stds[2];
            o[3] = dgh * gh * ch * c->stds[3];
        }
    }
    return md_node_accumulate(ctx, node, 1, g);
}

static md_tensor *decode(md_ctx *ctx, const md_bbox_coder *bc, md_tensor *rois, md_tensor *pred,
                         const int *max_shape) {
    const coder *c = (const coder *)bc;
    if (!rois || !pred) return NULL;
    md_device dev = coder_device(rois, pred);
    if (dev.type != MD_CPU)
        return md_tensor_to(ctx, decode(ctx, bc, md_tensor_to(ctx, rois, MD_DEVICE_CPU), md_tensor_to(ctx, pred, MD_DEVICE_CPU),
                                        max_shape), dev);
    if (rois->ndim != 2 || rois->shape[1] != 4 || pred->ndim != 2 || pred->shape[0] != rois->shape[0] ||
        pred->shape[1] % 4 != 0 || pred->shape[1] == 0 || rois->dtype != MD_F32 || pred->dtype != MD_F32) {
        char b1[64], b2[64];
        return md_op_fail(ctx, "DeltaXYWHBBoxCoder.decode", "bboxes %s must be f32 [N, 4] and pred %s f32 [N, 4k]",
                          md_tensor_describe(rois, b1, sizeof b1), md_tensor_describe(pred, b2, sizeof b2));
    }
    rois = md_contiguous(ctx, rois);
    md_tensor *predc = md_contiguous(ctx, pred);
    int64_t n = pred->shape[0], k4 = pred->shape[1];
    md_tensor *out = md_tensor_empty(ctx, MD_F32, MD_DIMS(n, k4));
    if (!out || !rois || !predc) return NULL;
    bool clip = c->clip_border && max_shape;
    bool grad = md_grad_enabled(ctx) && pred->requires_grad;
    float *mask = grad ? md_ctx_alloc(ctx, sizeof(float) * (size_t)(n * k4)) : NULL;
    if (grad && !mask) return md_op_failc(ctx, MD_ERR_NOMEM, "DeltaXYWHBBoxCoder.decode", "out of memory");
    const float *r = md_f32(rois), *d = md_f32(predc);
    float *o = md_f32(out);
    double max_ratio = fabs(log(c->wh_ratio_clip));
    float mr = (float)max_ratio;
    for (int64_t i = 0; i < n; i++) {
        float px = (r[i * 4] + r[i * 4 + 2]) * 0.5f, py = (r[i * 4 + 1] + r[i * 4 + 3]) * 0.5f;
        float pw = r[i * 4 + 2] - r[i * 4], ph = r[i * 4 + 3] - r[i * 4 + 1];
        for (int64_t j = 0; j < k4; j += 4) {
            const float *dd = d + i * k4 + j;
            float den[4];
            for (int q = 0; q < 4; q++) den[q] = dd[q] * c->stds[q] + c->means[q];
            float dxw = pw * den[0], dyh = ph * den[1], dw, dh;
            if (c->add_ctr_clamp) {
                float cc = (float)c->ctr_clamp;
                dxw = fminf(fmaxf(dxw, -cc), cc);
                dyh = fminf(fmaxf(dyh, -cc), cc);
                dw = fminf(den[2], mr);
                dh = fminf(den[3], mr);
            } else {
                dw = fminf(fmaxf(den[2], -mr), mr);
                dh = fminf(fmaxf(den[3], -mr), mr);
            }
            float gx = px + dxw, gy = py + dyh, gw = pw * expf(dw), gh = ph * expf(dh);
            float b[4] = { gx - gw * 0.5f, gy - gh * 0.5f, gx + gw * 0.5f, gy + gh * 0.5f };
            float *ob = o + i * k4 + j;
            for (int q = 0; q < 4; q++) {
                float v = b[q], m = 1.0f;
                if (clip) {
                    float hi = (float)(q % 2 == 0 ? max_shape[1] : max_shape[0]);
                    if (v < 0.0f || v > hi) m = 0.0f;   /* torch clamp passes gradient on [lo, hi] */
                    v = fminf(fmaxf(v, 0.0f), hi);
                }
                ob[q] = v;
                if (mask) mask[i * k4 + j + q] = m;
            }
        }
    }
    if (grad) {
        md_tensor *ins[2] = { rois, pred };
        md_node *node = md_autograd_record(ctx, out, ins, 2, decode_backward, "bbox_decode");
        if (node) {
            char *s = md_node_save(ctx, node, sizeof(dec_saved) + sizeof(float) * (size_t)(n * k4));
            if (!s) return md_op_failc(ctx, MD_ERR_NOMEM, "DeltaXYWHBBoxCoder.decode", "out of memory");
            ((dec_saved *)s)->c = c;
            memcpy(s + sizeof(dec_saved), mask, sizeof(float) * (size_t)(n * k4));
        }
    }
    return out;
}

static void destroy(md_bbox_coder *c) { free(c); }
/* decode's ONNX form: the same arithmetic on [N, K, 4] values, the x/y
 * pairs as slices [..., 0:2] and [..., 2:4]; clipped to max_wh (w, h). */
static const char *onnx_decode(md_ctx *ctx, const md_bbox_coder *bc, const char *rois, const char *pred,
                               const char *max_wh) {
    const coder *c = (const coder *)bc;
    if (c->add_ctr_clamp) {
        md_op_fail(ctx, "DeltaXYWHBBoxCoder", "ONNX export with add_ctr_clamp is not supported");
        return NULL;
    }
    float half = 0.5f, mr = (float)fabs(log(c->wh_ratio_clip)), lo = -mr;
    const char *den = md_onnx_op2(ctx, "Add", md_onnx_op2(ctx, "Mul", pred, md_onnx_f32s(ctx, "stds", 4, c->stds)),
                                  md_onnx_f32s(ctx, "means", 4, c->means));
    const char *dxy = md_onnx_slice(ctx, den, 2, 0, 2), *dwh = md_onnx_slice(ctx, den, 2, 2, 4);
    dwh = dwh ? md_onnx_node1(ctx, "Clip", (const char *[]){ dwh, md_onnx_const_f32(ctx, "min", 0, NULL, &lo),
                                                             md_onnx_const_f32(ctx, "max", 0, NULL, &mr) }, 3, NULL, 0)
              : NULL;
    const char *p1 = md_onnx_slice(ctx, rois, 2, 0, 2), *p2 = md_onnx_slice(ctx, rois, 2, 2, 4);
    const char *h = md_onnx_f32s(ctx, "half", 1, &half);
    const char *pc = md_onnx_op2(ctx, "Mul", md_onnx_op2(ctx, "Add", p1, p2), h), *pwh = md_onnx_op2(ctx, "Sub", p2, p1);
    const char *gc = md_onnx_op2(ctx, "Add", pc, md_onnx_op2(ctx, "Mul", pwh, dxy));
    const char *gwh = md_onnx_op2(ctx, "Mul",
                                  md_onnx_op2(ctx, "Mul", pwh, dwh ? md_onnx_node1(ctx, "Exp", &dwh, 1, NULL, 0) : NULL), h);
    const char *b1 = md_onnx_op2(ctx, "Sub", gc, gwh), *b2 = md_onnx_op2(ctx, "Add", gc, gwh);
    if (c->clip_border && max_wh) {
        float zero[2] = { 0.0f, 0.0f };
        const char *z = md_onnx_f32s(ctx, "zero", 2, zero);
        b1 = md_onnx_op2(ctx, "Min", md_onnx_op2(ctx, "Max", b1, z), max_wh);
        b2 = md_onnx_op2(ctx, "Min", md_onnx_op2(ctx, "Max", b2, z), max_wh);
    }
    return md_onnx_concat(ctx, (const char *[]){ b1, b2 }, 2, 2);
}

static const md_bbox_coder_iface iface = { .encode = encode, .decode = decode, .destroy = destroy,
                                           .onnx_decode = onnx_decode };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    coder *c = md_object_new(sizeof *c, &iface, "DeltaXYWHBBoxCoder", cfg, keys, err);
    if (!c) return NULL;
    double m[4], s[4];
    int nm = md_cfg_float_array(cfg, "target_means", m, 4, err);
    int ns = nm == 4 ? md_cfg_float_array(cfg, "target_stds", s, 4, err) : -1;
    if (nm != 4 || ns != 4) {
        if (!md_error_is_set(err)) md_failc(err, MD_ERR_CONFIG, "target_means and target_stds need 4 values each");
        free(c);
        return NULL;
    }
    for (int i = 0; i < 4; i++) {
        c->means[i] = (float)m[i];
        c->stds[i] = (float)s[i];
    }
    if (c->wh_ratio_clip <= 0) {   /* strictly positive: an inclusive .min cannot say it */
        md_failc(err, MD_ERR_CONFIG, "wh_ratio_clip must be positive, got %g", c->wh_ratio_clip);
        free(c);
        return NULL;
    }
    return c;
}

static const md_class cls = { .name = "DeltaXYWHBBoxCoder", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_BBOX_CODER),
                              .doc = "mmdet's (dx, dy, dw, dh) box coder" };
MD_PLUGIN("delta_xywh_coder", "1.0", "Apache-2.0");
MD_REGISTER("bbox_coders", cls)
