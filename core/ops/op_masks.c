/* Mask operations on tensors: mmdet's mask targets (BitmapMasks.
 * crop_and_resize), the paste-back of predicted masks into the image
 * (_do_paste_mask, thresholded) and pycocotools' RLE of binary masks.
 * Checks and allocation here; the kernels are the backend's mask entries
 * (on the CPU backends/cpu/masks.c; the per-pixel math, shared with the
 * CUDA kernels, in backends/mask_math.h). None records autograd: targets
 * and results carry no gradient. The checks read the boxes and indices on
 * the host (one synchronisation on a device). */
#include <math.h>
#include <string.h>
#include "internal.h"
#include "mmdet/masks.h"

/* A CPU step copy of t, not recorded (t itself on the CPU). */
static md_tensor *host_of(md_ctx *ctx, md_tensor *t) {
    bool prev = md_grad_set_enabled(ctx, false);
    md_tensor *h = md_contiguous(ctx, md_tensor_to(ctx, t, MD_DEVICE_CPU));
    md_grad_set_enabled(ctx, prev);
    return h;
}

static bool is_boxes(const md_tensor *t, int64_t n) {
    return t->dtype == MD_F32 && t->ndim == 2 && t->shape[1] == 4 && (n < 0 || t->shape[0] == n);
}

MD_API md_tensor *md_mask_targets(md_ctx *ctx, md_tensor *masks, md_tensor *boxes, md_tensor *inds, int out_h,
                                  int out_w) {
    static const char *op = "mask_targets";
    if (!masks || !boxes || md_ctx_failed(ctx)) return NULL;
    char s1[96], s2[96];
    md_tensor *all[3] = { masks, boxes, inds };
    if (!md__same_device(ctx, op, inds ? 3 : 2, all)) return NULL;
    const md_backend *be = md__be(ctx, op, masks);
    if (!be) return NULL;
    if (!be->mask_targets) return md__no_kernel(ctx, op, masks);
    if (masks->dtype != MD_U8 || masks->ndim != 3)
        return md_op_fail(ctx, op, "masks must be u8 [n, h, w], got %s", md_tensor_describe(masks, s1, sizeof s1));
    if (!is_boxes(boxes, -1))
        return md_op_fail(ctx, op, "boxes must be f32 [P, 4] (x1, y1, x2, y2), got %s",
                          md_tensor_describe(boxes, s2, sizeof s2));
    int64_t P = boxes->shape[0], n = masks->shape[0];
    if (inds && (inds->dtype != MD_I64 || inds->ndim != 1 || inds->shape[0] != P))
        return md_op_fail(ctx, op, "inds must be i64 [%lld] matching boxes, got %s", (long long)P,
                          md_tensor_describe(inds, s1, sizeof s1));
    if (out_h < 1 || out_w < 1) return md_op_fail(ctx, op, "output size %dx%d must be positive", out_h, out_w);
    md_tensor *hb = host_of(ctx, boxes), *hi = inds ? host_of(ctx, inds) : NULL;
    if (!hb || (inds && !hi)) return NULL;
    for (int64_t p = 0; p < P; p++) {
        int64_t k = hi ? md_i64(hi)[p] : p;
        const float *b = md_f32(hb) + 4 * p;
        if (k < 0 || k >= n)
            return md_op_fail(ctx, op, "box %lld selects mask %lld of %s", (long long)p, (long long)k,
                              md_tensor_describe(masks, s1, sizeof s1));
        if (!isfinite(b[0]) || !isfinite(b[1]) || !isfinite(b[2]) || !isfinite(b[3]))
            return md_op_fail(ctx, op, "box %lld has a non-finite coordinate (%g, %g, %g, %g)", (long long)p, b[0],
                              b[1], b[2], b[3]);
        /* mmcv's RoIAlign asserts this in aligned mode */
        if (b[2] - b[0] < 0 || b[3] - b[1] < 0)
            return md_op_fail(ctx, op, "box %lld (%g, %g, %g, %g) has negative size (x2 < x1 or y2 < y1)",
                              (long long)p, b[0], b[1], b[2], b[3]);
    }
    md_tensor *m = md__contig(ctx, masks), *b = md__contig(ctx, boxes), *ix = inds ? md__contig(ctx, inds) : NULL;
    md_tensor *out = m && b && (!inds || ix) ? md__empty_like_on(ctx, m, MD_F32, MD_DIMS(P, out_h, out_w)) : NULL;
    if (!out) return NULL;
    if (P > 0 && be->mask_targets(md_u8(m), n, m->shape[1], m->shape[2], md_f32(b), ix ? md_i64(ix) : NULL, P, out_h,
                                  out_w, md_f32(out)) != 0)
        return md__be_failed(ctx, op, be);
    return out;
}

MD_API md_tensor *md_masks_paste(md_ctx *ctx, md_tensor *probs, md_tensor *chan, md_tensor *boxes, int img_h,
                                 int img_w, float thr) {
    static const char *op = "masks_paste";
    if (!probs || !chan || !boxes || md_ctx_failed(ctx)) return NULL;
    char s1[96], s2[96];
    md_tensor *all[3] = { probs, chan, boxes };
    if (!md__same_device(ctx, op, 3, all)) return NULL;
    const md_backend *be = md__be(ctx, op, probs);
    if (!be) return NULL;
    if (!be->mask_paste) return md__no_kernel(ctx, op, probs);
    if (probs->dtype != MD_F32 || probs->ndim != 4)
        return md_op_fail(ctx, op, "probs must be f32 [D, C, mh, mw], got %s", md_tensor_describe(probs, s1, sizeof s1));
    int64_t D = probs->shape[0], C = probs->shape[1];
    if (!is_boxes(boxes, D) || chan->dtype != MD_I64 || chan->ndim != 1 || chan->shape[0] != D)
        return md_op_fail(ctx, op, "boxes must be f32 [%lld, 4] and chan i64 [%lld], got %s and %s", (long long)D,
                          (long long)D, md_tensor_describe(boxes, s1, sizeof s1), md_tensor_describe(chan, s2, sizeof s2));
    if (img_h < 0 || img_w < 0 || probs->shape[2] < 1 || probs->shape[3] < 1 || probs->shape[2] > INT32_MAX ||
        probs->shape[3] > INT32_MAX)
        return md_op_fail(ctx, op, "image %dx%d or masks %s", img_w, img_h, md_tensor_describe(probs, s1, sizeof s1));
    md_tensor *hc = host_of(ctx, chan);
    if (!hc) return NULL;
    for (int64_t d = 0; d < D; d++)
        if (md_i64(hc)[d] < 0 || md_i64(hc)[d] >= C)
            return md_op_fail(ctx, op, "channel %lld of mask %lld outside the %lld channels", (long long)md_i64(hc)[d],
                              (long long)d, (long long)C);
    md_tensor *p = md__contig(ctx, probs), *c = md__contig(ctx, chan), *b = md__contig(ctx, boxes);
    md_tensor *out = p && c && b ? md__empty_like_on(ctx, p, MD_U8, MD_DIMS(D, img_h, img_w)) : NULL;
    if (!out) return NULL;
    if (D > 0 && (int64_t)img_h * img_w > 0 &&
        be->mask_paste(md_f32(p), D, C, (int)p->shape[2], (int)p->shape[3], md_i64(c), md_f32(b), img_h, img_w, thr,
                       md_u8(out)) != 0)
        return md__be_failed(ctx, op, be);
    return out;
}

MD_API int md_masks_encode(md_ctx *ctx, md_tensor *masks, md_rle *out) {
    static const char *op = "masks_encode";
    if (!masks || md_ctx_failed(ctx)) return -1;
    char s1[96];
    const md_backend *be = md__be(ctx, op, masks);
    if (!be) return -1;
    if (!be->rle_encode) return md__no_kernel(ctx, op, masks), -1;
    if (masks->dtype != MD_U8 || masks->ndim != 3 || masks->shape[1] > INT32_MAX || masks->shape[2] > INT32_MAX ||
        masks->shape[1] * masks->shape[2] > UINT32_MAX)
        return md_op_fail(ctx, op, "masks must be u8 [n, h, w] of at most 2^32 pixels, got %s",
                          md_tensor_describe(masks, s1, sizeof s1)), -1;
    md_tensor *m = md__contig(ctx, masks);
    if (!m) return -1;
    int64_t n = m->shape[0], total = 0;
    int h = (int)m->shape[1], w = (int)m->shape[2];
    int64_t *cnt = md_ctx_alloc(ctx, sizeof *cnt * (size_t)(n + 1));
    /* room for a few runs a column (an object's mask enters and leaves
     * each column once or twice); more only when the masks need it */
    int64_t cap = n * (4 * (int64_t)w + 2);
    uint32_t *counts = cnt ? md_ctx_alloc(ctx, sizeof *counts * (size_t)(cap + 1)) : NULL;
    if (!counts) return -1;
    if (n > 0 && be->rle_encode(md_u8(m), n, h, w, cnt, counts, cap, &total) != 0)
        return md__be_failed(ctx, op, be), -1;
    if (total > cap) {
        cap = total;
        if (!(counts = md_ctx_alloc(ctx, sizeof *counts * (size_t)(cap + 1)))) return -1;
        if (be->rle_encode(md_u8(m), n, h, w, cnt, counts, cap, &total) != 0 || total > cap)
            return md__be_failed(ctx, op, be), -1;
    }
    for (int64_t i = 0, off = 0; i < n; off += cnt[i], i++) out[i] = (md_rle){ h, w, cnt[i], counts + off };
    return 0;
}

MD_API int md_masks_paste_encode(md_ctx *ctx, md_tensor *probs, md_tensor *chan, md_tensor *boxes, int img_h,
                                 int img_w, float thr, md_rle *out) {
    if (!probs || !chan || !boxes || md_ctx_failed(ctx)) return -1;
    int64_t D = probs->shape[0], plane = (int64_t)img_h * img_w;
    /* the pasted masks of at most 64 MiB at a time (one mask at least) */
    int64_t chunk = plane > 0 ? (64 << 20) / plane : D;
    if (chunk < 1) chunk = 1;
    for (int64_t d = 0; d < D; d += chunk) {
        int64_t e = d + chunk < D ? d + chunk : D;
        md_tensor *bits = md_masks_paste(ctx, md_slice(ctx, probs, 0, d, e, 1), md_slice(ctx, chan, 0, d, e, 1),
                                         md_slice(ctx, boxes, 0, d, e, 1), img_h, img_w, thr);
        if (!bits || md_masks_encode(ctx, bits, out + d)) return -1;
        md_tensor_release(ctx, bits);
    }
    return 0;
}
