/* Instance masks (masks.h): the bitmap subset the mask heads use,
 * bitmaps cropped and resized by RoIAlign (BitmapMasks.crop_and_resize)
 * and pycocotools' RLE encode/decode. Polygons are refused. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include <mmdet/masks.h>

MD_API void md_masks_init(md_masks *m) { memset(m, 0, sizeof *m); }

MD_API void md_masks_free(md_masks *m) {
    if (!m) return;
    free(m->bitmaps);
    for (int j = 0; m->polys && j < m->n_polys; j++) free(m->polys[j].xy);
    free(m->polys);
    free(m->poly_begin);
    free(m->poly_count);
    memset(m, 0, sizeof *m);
}

MD_API int md_masks_copy(md_masks *dst, const md_masks *src, md_error *err) {
    md_masks_init(dst);
    if (src->kind != MD_MASKS_BITMAP) return md_failc(err, MD_ERR_CONFIG, "polygon masks are not supported");
    size_t sz = (size_t)src->n * (size_t)src->h * (size_t)src->w;
    *dst = (md_masks){ .kind = MD_MASKS_BITMAP, .n = src->n, .h = src->h, .w = src->w };
    if (sz && !(dst->bitmaps = malloc(sz))) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    if (sz) memcpy(dst->bitmaps, src->bitmaps, sz);
    return 0;
}

MD_API int md_masks_bitmap(const md_masks *m, int k, uint8_t *out, md_error *err) {
    if (m->kind != MD_MASKS_BITMAP) return md_failc(err, MD_ERR_CONFIG, "polygon masks are not supported");
    if (k < 0 || k >= m->n) return md_failc(err, MD_ERR_SHAPE, "mask %d of %d", k, m->n);
    memcpy(out, m->bitmaps + (size_t)k * (size_t)m->h * (size_t)m->w, (size_t)m->h * (size_t)m->w);
    return 0;
}

MD_API md_tensor *md_masks_crop_and_resize(md_ctx *ctx, const md_masks *m, md_tensor *bboxes, md_tensor *inds,
                                           int out_h, int out_w) {
    if (m->kind != MD_MASKS_BITMAP) return md_op_fail(ctx, "crop_and_resize", "polygon masks are not supported");
    bboxes = md_contiguous(ctx, md_tensor_to(ctx, bboxes, MD_DEVICE_CPU));
    inds = inds ? md_contiguous(ctx, md_tensor_to(ctx, inds, MD_DEVICE_CPU)) : NULL;
    if (!bboxes) return NULL;
    int64_t P = bboxes->shape[0], hw = (int64_t)m->h * m->w;
    if (P == 0) return md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, out_h, out_w));
    /* the masks as a batch of one-channel images, RoI p on image inds[p] */
    md_tensor *src = md_tensor_empty(ctx, MD_F32, MD_DIMS(m->n, 1, m->h, m->w));
    md_tensor *rois = md_tensor_empty(ctx, MD_F32, MD_DIMS(P, 5));
    if (!src || !rois) return NULL;
    for (int64_t q = 0; q < (int64_t)m->n * hw; q++) md_f32(src)[q] = m->bitmaps[q];
    for (int64_t p = 0; p < P; p++) {
        int64_t k = inds ? md_i64(inds)[p] : p;
        if (k < 0 || k >= m->n) return md_op_fail(ctx, "crop_and_resize", "mask index %lld of %d", (long long)k, m->n);
        md_f32(rois)[5 * p] = (float)k;
        memcpy(md_f32(rois) + 5 * p + 1, md_f32(bboxes) + 4 * p, 4 * sizeof(float));
    }
    md_tensor *t = md_contiguous(ctx, md_roi_align(ctx, src, rois, out_h, out_w, 1.0, 0, true));
    if (!t) return NULL;
    md_tensor *out = md_tensor_empty(ctx, MD_F32, MD_DIMS(P, out_h, out_w));
    if (!out) return NULL;
    for (int64_t q = 0; q < P * out_h * out_w; q++) md_f32(out)[q] = md_f32(t)[q] >= 0.5f ? 1.0f : 0.0f;
    return out;
}

MD_API int md_rle_encode(const uint8_t *mask, int h, int w, md_rle *out, md_error *err) {
    memset(out, 0, sizeof *out);
    out->h = h;
    out->w = w;
    int64_t n = (int64_t)h * w;
    out->counts = malloc(sizeof *out->counts * (size_t)(n + 1));
    if (!out->counts) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    uint8_t cur = 0;
    uint32_t run = 0;
    for (int x = 0; x < w; x++)          /* column-major */
        for (int y = 0; y < h; y++) {
            uint8_t v = mask[(size_t)y * (size_t)w + (size_t)x] != 0;
            if (v != cur) {
                out->counts[out->m++] = run;
                run = 0;
                cur = v;
            }
            run++;
        }
    out->counts[out->m++] = run;
    return 0;
}

MD_API int md_rle_decode(const md_rle *r, uint8_t *mask, md_error *err) {
    int64_t n = (int64_t)r->h * r->w, pos = 0;
    uint8_t v = 0;
    for (int64_t j = 0; j < r->m; j++, v ^= 1) {
        if (pos + r->counts[j] > n) return md_failc(err, MD_ERR_SHAPE, "RLE counts exceed %d x %d", r->h, r->w);
        for (uint32_t c = 0; c < r->counts[j]; c++, pos++)
            mask[(size_t)(pos % r->h) * (size_t)r->w + (size_t)(pos / r->h)] = v;
    }
    if (pos != n) return md_failc(err, MD_ERR_SHAPE, "RLE counts cover %lld of %lld pixels", (long long)pos, (long long)n);
    return 0;
}

MD_API void md_rle_free(md_rle *r) {
    if (!r) return;
    free(r->counts);
    memset(r, 0, sizeof *r);
}

MD_API int md_rle_copy(md_rle *dst, const md_rle *src, md_error *err) {
    *dst = *src;
    dst->counts = malloc(sizeof *dst->counts * (size_t)(src->m + 1));
    if (!dst->counts) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    if (src->m) memcpy(dst->counts, src->counts, sizeof *dst->counts * (size_t)src->m);
    return 0;
}

MD_API uint64_t md_rle_area(const md_rle *r) {
    uint64_t a = 0;
    for (int64_t j = 1; j < r->m; j += 2) a += r->counts[j];
    return a;
}
