/* Instance masks (mmdet's BitmapMasks and PolygonMasks) and pycocotools'
 * run-length encoding (maskApi.c), written from their definitions:
 *
 *  - an RLE counts alternating runs of 0s and 1s over the mask in column-
 *    major order, starting with 0s; the string form stores each count (or
 *    its difference from the count two back, after the third) in 5-bit
 *    groups, low first, one character each (48 + the group, + 32 when more
 *    follow), the last group's bit 4 the sign;
 *  - a polygon is rasterised as frPoly does: vertices scaled by 5 and
 *    rounded, edges walked one upsampled step at a time, the points where
 *    the walk crosses a pixel column's centre kept (rounded up in y) and
 *    turned into the run boundaries of that column;
 *  - IoU as rleIou: the boxes first (no box overlap, IoU 0), then the
 *    runs of both masks walked together; a crowd ground truth divides by
 *    the detection's area.
 *
 * Everything here is plain malloc'ed memory except crop_and_resize, which
 * returns a step tensor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>
#include "internal.h"
#include "mmdet/masks.h"
#include "mmdet/ops.h"
#include "backends/cpu/masks.h"   /* md__cpu_rle_counts: the one RLE walk on the host */

/* ------------------------------------------------------------------ masks */

MD_API void md_masks_init(md_masks *m) { memset(m, 0, sizeof *m); }

MD_API void md_masks_free(md_masks *m) {
    if (!m) return;
    free(m->bitmaps);
    free(m->poly_begin);
    free(m->poly_count);
    for (int i = 0; m->polys && i < m->n_polys; i++) free(m->polys[i].xy);
    free(m->polys);
    md_masks_init(m);
}

MD_API int md_masks_copy(md_masks *dst, const md_masks *src, md_error *err) {
    md_masks_init(dst);
    dst->kind = src->kind;
    dst->n = src->n;
    dst->h = src->h;
    dst->w = src->w;
    if (src->bitmaps) {
        size_t bytes = (size_t)src->n * src->h * src->w;
        if (!(dst->bitmaps = malloc(bytes ? bytes : 1))) goto oom;
        memcpy(dst->bitmaps, src->bitmaps, bytes);
    }
    if (src->poly_begin || src->poly_count) {
        size_t n = (size_t)(src->n > 0 ? src->n : 1);
        dst->poly_begin = malloc(n * sizeof(int));
        dst->poly_count = malloc(n * sizeof(int));
        if (!dst->poly_begin || !dst->poly_count) goto oom;
        if (src->n > 0) {
            memcpy(dst->poly_begin, src->poly_begin, (size_t)src->n * sizeof(int));
            memcpy(dst->poly_count, src->poly_count, (size_t)src->n * sizeof(int));
        }
    }
    if (src->polys) {
        if (!(dst->polys = calloc((size_t)(src->n_polys > 0 ? src->n_polys : 1), sizeof *dst->polys))) goto oom;
        for (int i = 0; i < src->n_polys; i++) {
            const md_polygon *p = &src->polys[i];
            size_t bytes = (size_t)2 * (p->n_points > 0 ? p->n_points : 0) * sizeof(float);
            dst->n_polys = i + 1;
            dst->polys[i].n_points = p->n_points;
            if (!(dst->polys[i].xy = malloc(bytes ? bytes : 1))) goto oom;
            if (bytes) memcpy(dst->polys[i].xy, p->xy, bytes);
        }
        dst->n_polys = src->n_polys;
    }
    return 0;
oom:
    md_masks_free(dst);
    return md_failc(err, MD_ERR_NOMEM, "out of memory copying %d masks of %dx%d", src->n, src->w, src->h);
}

/* The polygons of mask k, moved by (-x0, -y0) and scaled by (sx, sy) in
 * double as mmdet's float64 arrays, rasterised at h x w and merged into
 * one RLE: frPyObjects + merge, as PolygonMasks.to_ndarray. */
static int polys_to_rle_at(const md_masks *m, int k, int h, int w, double x0, double y0, double sx, double sy,
                           md_rle *out, md_error *err) {
    int b = m->poly_begin[k], c = m->poly_count[k];
    memset(out, 0, sizeof *out);
    if (c <= 0) {   /* no valid polygon: an empty mask */
        out->h = h;
        out->w = w;
        out->m = 1;
        if (!(out->counts = malloc(sizeof *out->counts))) return md_failc(err, MD_ERR_NOMEM, "out of memory");
        out->counts[0] = (uint32_t)((uint64_t)h * (uint64_t)w);
        return 0;
    }
    md_rle *rs = calloc((size_t)c, sizeof *rs);
    double *xy = NULL;
    int rc = -1;
    if (!rs) goto oom;
    for (int j = 0; j < c; j++) {
        const md_polygon *p = &m->polys[b + j];
        free(xy);
        if (!(xy = malloc(sizeof *xy * (size_t)(2 * p->n_points + 8)))) goto oom;
        for (int i = 0; i < p->n_points; i++) {
            xy[2 * i] = ((double)p->xy[2 * i] - x0) * sx;
            xy[2 * i + 1] = ((double)p->xy[2 * i + 1] - y0) * sy;
        }
        if (md_rle_from_poly(xy, p->n_points, h, w, &rs[j], err)) goto done;
    }
    rc = md_rle_merge(rs, c, false, out, err);
    goto done;
oom:
    rc = md_failc(err, MD_ERR_NOMEM, "out of memory rasterising a polygon mask");
done:
    for (int j = 0; rs && j < c; j++) md_rle_free(&rs[j]);
    free(rs);
    free(xy);
    return rc;
}

MD_API int md_masks_bitmap(const md_masks *m, int k, uint8_t *out, md_error *err) {
    if (k < 0 || k >= m->n) return md_failc(err, MD_ERR_GENERIC, "mask %d of %d", k, m->n);
    size_t hw = (size_t)m->h * m->w;
    if (m->kind == MD_MASKS_BITMAP) {
        memcpy(out, m->bitmaps + (size_t)k * hw, hw);
        return 0;
    }
    md_rle r;
    if (polys_to_rle_at(m, k, m->h, m->w, 0, 0, 1, 1, &r, err)) return -1;
    int rc = md_rle_decode(&r, out, err);
    md_rle_free(&r);
    return rc;
}

MD_API md_tensor *md_masks_crop_and_resize(md_ctx *ctx, const md_masks *m, md_tensor *bboxes, md_tensor *inds,
                                           int out_h, int out_w) {
    static const char *op = "masks_crop_and_resize";
    if (!bboxes || md_ctx_failed(ctx)) return NULL;
    md_device dev = md_tensor_device(bboxes);
    if (bboxes->ndim != 2 || bboxes->shape[1] != 4 || bboxes->dtype != MD_F32)
        return md_op_fail(ctx, op, "bboxes must be f32 [P, 4]");
    int64_t P = bboxes->shape[0];
    if (inds && (inds->ndim != 1 || inds->shape[0] != P || inds->dtype != MD_I64 || inds->device != bboxes->device ||
                 inds->device_index != bboxes->device_index))
        return md_op_fail(ctx, op, "inds must be i64 [%lld] on the device of bboxes", (long long)P);
    if (out_h < 1 || out_w < 1) return md_op_fail(ctx, op, "output size %dx%d", out_h, out_w);
    if (m->kind == MD_MASKS_BITMAP) {
        /* BitmapMasks: the masks go to the boxes' device as they are (u8),
         * the RoIAlign of each box over its mask runs there */
        md_tensor bm = { .dtype = MD_U8, .device = MD_CPU, .ndim = 3, .shape = { m->n, m->h, m->w },
                         .stride = { (int64_t)m->h * m->w, m->w, 1 }, .data = m->bitmaps };
        md_tensor *masks = md_tensor_to(ctx, &bm, dev);
        return masks ? md_mask_targets(ctx, masks, bboxes, inds, out_h, out_w) : NULL;
    }
    md_tensor *hb = md_contiguous(ctx, md_tensor_to(ctx, bboxes, MD_DEVICE_CPU));
    md_tensor *hi = inds ? md_contiguous(ctx, md_tensor_to(ctx, inds, MD_DEVICE_CPU)) : NULL;
    if (!hb || (inds && !hi)) return NULL;
    const float *bb = md_f32(hb);
    for (int64_t p = 0; p < P; p++) {
        int64_t k = hi ? md_i64(hi)[p] : p;
        if (k < 0 || k >= m->n)
            return md_op_fail(ctx, op, "box %lld selects mask %lld of %d", (long long)p, (long long)k, m->n);
    }
    md_tensor *out = md_tensor_zeros(ctx, MD_F32, MD_DIMS(P, out_h, out_w));
    if (!out || P == 0) return md_tensor_to(ctx, out, dev);
    float *o = md_f32(out);
    size_t plane = (size_t)out_h * out_w;
    /* PolygonMasks: each polygon moved to the box's corner and scaled by
     * out / max(side, 0.1) (side at least 1, the difference in f32 as
     * numpy's), then rasterised at out_h x out_w (polygon_to_bitmap). */
    uint8_t *tmp = malloc(plane);
    if (!tmp) return md_op_failc(ctx, MD_ERR_NOMEM, op, "out of memory");
    for (int64_t p = 0; p < P; p++) {
        int64_t k = hi ? md_i64(hi)[p] : p;
        const float *b = bb + 4 * p;
        float dw = b[2] - b[0], dh = b[3] - b[1];
        double w = dw > 1.0f ? dw : 1.0, h = dh > 1.0f ? dh : 1.0;
        md_rle r;
        md_error e = { 0 };
        int rc = polys_to_rle_at(m, (int)k, out_h, out_w, b[0], b[1], out_w / (w > 0.1 ? w : 0.1),
                                 out_h / (h > 0.1 ? h : 0.1), &r, &e);
        if (!rc) rc = md_rle_decode(&r, tmp, &e);
        md_rle_free(&r);
        if (rc) {
            free(tmp);
            return md_op_failc(ctx, e.code ? e.code : MD_ERR_NOMEM, op, "mask %lld: %s", (long long)k, e.msg);
        }
        for (size_t i = 0; i < plane; i++) o[(size_t)p * plane + i] = tmp[i] ? 1.0f : 0.0f;
    }
    free(tmp);
    return md_tensor_to(ctx, out, dev);
}

/* ------------------------------------------------ BitmapMasks methods */

static int oom_masks(md_error *err, const md_masks *m) {
    return md_failc(err, MD_ERR_NOMEM, "out of memory for %d masks of %dx%d", m->n, m->w, m->h);
}

MD_API int md_masks_resize(md_masks *m, int out_h, int out_w, md_error *err) {
    if (m->kind == MD_MASKS_POLYGON) {
        double hs = (double)out_h / m->h, ws = (double)out_w / m->w;
        for (int j = 0; j < m->n_polys; j++)
            for (int i = 0; i < m->polys[j].n_points; i++) {
                m->polys[j].xy[2 * i] = (float)(m->polys[j].xy[2 * i] * ws);
                m->polys[j].xy[2 * i + 1] = (float)(m->polys[j].xy[2 * i + 1] * hs);
            }
        m->h = out_h;
        m->w = out_w;
        return 0;
    }
    if (out_h == m->h && out_w == m->w) return 0;
    size_t plane = (size_t)out_h * out_w;
    uint8_t *d = malloc(plane * (size_t)m->n + 1);
    int *xo = malloc(sizeof(int) * (size_t)(out_w > 0 ? out_w : 1));
    if (!d || !xo) {
        free(d);
        free(xo);
        return oom_masks(err, m);
    }
    /* cv::resize INTER_NEAREST: the scale's inverse in double, floor */
    double ifx = 1. / ((double)out_w / m->w), ify = 1. / ((double)out_h / m->h);
    for (int x = 0; x < out_w; x++) {
        int sx = (int)floor(x * ifx);
        xo[x] = sx < m->w - 1 ? sx : m->w - 1;
    }
    for (int k = 0; k < m->n; k++) {
        const uint8_t *src = m->bitmaps + (size_t)k * m->h * m->w;
        for (int y = 0; y < out_h; y++) {
            int sy = (int)floor(y * ify);
            if (sy > m->h - 1) sy = m->h - 1;
            const uint8_t *row = src + (size_t)sy * m->w;
            uint8_t *o = d + (size_t)k * plane + (size_t)y * out_w;
            for (int x = 0; x < out_w; x++) o[x] = row[xo[x]];
        }
    }
    free(xo);
    free(m->bitmaps);
    m->bitmaps = d;
    m->h = out_h;
    m->w = out_w;
    return 0;
}

MD_API void md_masks_flip(md_masks *m, bool horizontal, bool vertical) {
    if (m->kind == MD_MASKS_POLYGON) {
        for (int j = 0; j < m->n_polys; j++)
            for (int i = 0; i < m->polys[j].n_points; i++) {
                float *p = m->polys[j].xy + 2 * i;
                if (horizontal) p[0] = (float)m->w - p[0];
                if (vertical) p[1] = (float)m->h - p[1];
            }
        return;
    }
    for (int k = 0; k < m->n; k++) {
        uint8_t *b = m->bitmaps + (size_t)k * m->h * m->w;
        if (horizontal)
            for (int y = 0; y < m->h; y++) {
                uint8_t *r = b + (size_t)y * m->w;
                for (int x = 0; x < m->w / 2; x++) {
                    uint8_t t = r[x];
                    r[x] = r[m->w - 1 - x];
                    r[m->w - 1 - x] = t;
                }
            }
        if (vertical)
            for (int y = 0; y < m->h / 2; y++) {
                uint8_t *a = b + (size_t)y * m->w, *c = b + (size_t)(m->h - 1 - y) * m->w;
                for (int x = 0; x < m->w; x++) {
                    uint8_t t = a[x];
                    a[x] = c[x];
                    c[x] = t;
                }
            }
    }
}

/* The bitmaps' window [y0, y0 + h) x [x0, x0 + w), zeros outside them. */
static int bitmaps_window(md_masks *m, int x0, int y0, int h, int w, uint8_t fill, md_error *err) {
    size_t plane = (size_t)h * w;
    uint8_t *d = malloc(plane * (size_t)m->n + 1);
    if (!d) return oom_masks(err, m);
    memset(d, fill, plane * (size_t)m->n);
    int cw = m->w - x0 < w ? m->w - x0 : w, ch = m->h - y0 < h ? m->h - y0 : h;
    for (int k = 0; k < m->n && cw > 0; k++)
        for (int y = 0; y < ch; y++)
            memcpy(d + (size_t)k * plane + (size_t)y * w, m->bitmaps + ((size_t)k * m->h + y0 + y) * m->w + x0,
                   (size_t)cw);
    free(m->bitmaps);
    m->bitmaps = d;
    m->h = h;
    m->w = w;
    return 0;
}

MD_API int md_masks_pad(md_masks *m, int out_h, int out_w, uint8_t val, md_error *err) {
    if (out_h < m->h || out_w < m->w)
        return md_failc(err, MD_ERR_GENERIC, "pad: masks of %dx%d do not fit %dx%d", m->w, m->h, out_w, out_h);
    if (m->kind == MD_MASKS_BITMAP && (out_h != m->h || out_w != m->w))
        return bitmaps_window(m, 0, 0, out_h, out_w, val, err);
    m->h = out_h;
    m->w = out_w;
    return 0;
}

MD_API int md_masks_crop(md_masks *m, const int bbox[4], md_error *err) {
    int b[4];
    for (int k = 0; k < 4; k++) {
        int lim = k % 2 ? m->h : m->w;
        b[k] = bbox[k] < 0 ? 0 : bbox[k] > lim ? lim : bbox[k];
    }
    int w = b[2] - b[0] > 1 ? b[2] - b[0] : 1, h = b[3] - b[1] > 1 ? b[3] - b[1] : 1;
    if (m->kind == MD_MASKS_BITMAP) return bitmaps_window(m, b[0], b[1], h, w, 0, err);
    for (int j = 0; j < m->n_polys; j++)
        for (int i = 0; i < m->polys[j].n_points; i++) {
            m->polys[j].xy[2 * i] -= (float)b[0];
            m->polys[j].xy[2 * i + 1] -= (float)b[1];
        }
    m->h = h;
    m->w = w;
    return 0;
}

MD_API int md_masks_select(md_masks *m, const bool *keep, md_error *err) {
    (void)err;
    int k = 0;
    if (m->kind == MD_MASKS_BITMAP) {
        size_t plane = (size_t)m->h * m->w;
        for (int i = 0; i < m->n; i++)
            if (keep[i]) {
                if (k != i) memmove(m->bitmaps + (size_t)k * plane, m->bitmaps + (size_t)i * plane, plane);
                k++;
            }
        m->n = k;
        return 0;
    }
    /* Polygons: the kept masks' polygons moved down in order, the others freed. */
    int np = 0;
    for (int i = 0; i < m->n; i++) {
        int b = m->poly_begin[i], c = m->poly_count[i];
        if (!keep[i]) {
            for (int j = 0; j < c; j++) {
                free(m->polys[b + j].xy);
                m->polys[b + j].xy = NULL;
            }
            continue;
        }
        for (int j = 0; j < c; j++) m->polys[np + j] = m->polys[b + j];
        m->poly_begin[k] = np;
        m->poly_count[k] = c;
        np += c;
        k++;
    }
    m->n = k;
    m->n_polys = np;
    return 0;
}

MD_API void md_masks_areas(const md_masks *m, double *out) {
    for (int k = 0; k < m->n; k++) {
        double a = 0;
        if (m->kind == MD_MASKS_BITMAP) {
            const uint8_t *b = m->bitmaps + (size_t)k * m->h * m->w;
            for (size_t i = 0; i < (size_t)m->h * m->w; i++) a += b[i] != 0;
        } else {
            for (int j = 0; j < m->poly_count[k]; j++) {
                const md_polygon *p = &m->polys[m->poly_begin[k] + j];
                double s1 = 0, s2 = 0;   /* 0.5 |x . roll(y, 1) - y . roll(x, 1)| */
                for (int i = 0; i < p->n_points; i++) {
                    int r = (i + p->n_points - 1) % p->n_points;
                    s1 += (double)p->xy[2 * i] * p->xy[2 * r + 1];
                    s2 += (double)p->xy[2 * i + 1] * p->xy[2 * r];
                }
                a += 0.5 * fabs(s1 - s2);
            }
        }
        out[k] = a;
    }
}

MD_API void md_masks_get_bboxes(const md_masks *m, float *out) {
    for (int k = 0; k < m->n; k++) {
        float *o = out + 4 * k;
        o[0] = o[1] = o[2] = o[3] = 0;
        if (m->kind == MD_MASKS_BITMAP) {
            const uint8_t *b = m->bitmaps + (size_t)k * m->h * m->w;
            int x0 = m->w, x1 = -1, y0 = m->h, y1 = -1;
            for (int y = 0; y < m->h; y++)
                for (int x = 0; x < m->w; x++)
                    if (b[(size_t)y * m->w + x]) {
                        if (x < x0) x0 = x;
                        if (x > x1) x1 = x;
                        if (y < y0) y0 = y;
                        if (y > y1) y1 = y;
                    }
            if (x1 >= 0) {
                o[0] = (float)x0;
                o[1] = (float)y0;
                o[2] = (float)(x1 + 1);
                o[3] = (float)(y1 + 1);
            }
            continue;
        }
        /* PolygonMasks.get_bboxes: min from (2w, 2h), max from (0, 0) */
        o[0] = (float)(2 * m->w);
        o[1] = (float)(2 * m->h);
        for (int j = 0; j < m->poly_count[k]; j++) {
            const md_polygon *p = &m->polys[m->poly_begin[k] + j];
            for (int i = 0; i < p->n_points; i++) {
                float x = p->xy[2 * i], y = p->xy[2 * i + 1];
                o[0] = fminf(o[0], x);
                o[1] = fminf(o[1], y);
                o[2] = fmaxf(o[2], x);
                o[3] = fmaxf(o[3], y);
            }
        }
    }
}

MD_API int md_masks_from_anns(md_masks *out, const md_mask_ann *anns, int n, int h, int w, bool poly2mask,
                              md_error *err) {
    md_masks_init(out);
    for (int k = 0; anns && k < n; k++)
        if (anns[k].kind == MD_MASK_ANN_FILE) {   /* read them, then build from the copies */
            md_mask_ann *read = calloc((size_t)n, sizeof *read);
            if (!read) return md_failc(err, MD_ERR_NOMEM, "out of memory");
            int rc = 0;
            for (int j = 0; j < n && !rc; j++) rc = md_mask_ann_read(&anns[j], &read[j], err);
            if (!rc) rc = md_masks_from_anns(out, read, n, h, w, poly2mask, err);
            for (int j = 0; j < n; j++) md_mask_ann_free(&read[j]);
            free(read);
            return rc;
        }
    out->n = n;
    out->h = h;
    out->w = w;
    for (int k = 0; k < n; k++) {
        if (!anns || anns[k].kind == MD_MASK_ANN_NONE)
            return md_failc(err, MD_ERR_CONFIG, "with_mask: gt box %d has no segmentation in the annotation file", k);
        if (anns[k].kind == MD_MASK_ANN_INVALID)
            return md_failc(err, MD_ERR_PARSE, "%s", anns[k].invalid ? anns[k].invalid : "malformed segmentation");
    }
    if (poly2mask) {
        out->kind = MD_MASKS_BITMAP;
        size_t plane = (size_t)h * w;
        if (!(out->bitmaps = malloc(plane * (size_t)n + 1))) return oom_masks(err, out);
        for (int k = 0; k < n; k++) {
            md_rle r;
            if (md_mask_ann_to_rle(&anns[k], h, w, &r, err)) goto fail;
            if (r.h != h || r.w != w) {
                md_rle_free(&r);
                md_failc(err, MD_ERR_CONFIG, "annotation %lld: its RLE is %dx%d (size [%d, %d]) but the image is %dx%d",
                         (long long)anns[k].id, r.w, r.h, r.h, r.w, w, h);
                goto fail;
            }
            int rc = md_rle_decode(&r, out->bitmaps + (size_t)k * plane, err);
            md_rle_free(&r);
            if (rc) goto fail;
        }
        return 0;
    }
    out->kind = MD_MASKS_POLYGON;
    int total = 0;
    for (int k = 0; k < n; k++) {
        if (anns[k].kind != MD_MASK_ANN_POLYGONS)
            return md_failc(err, MD_ERR_CONFIG, "annotation %lld: poly2mask=false needs polygons, its segmentation is an RLE",
                            (long long)anns[k].id);
        total += anns[k].n_polys;
    }
    out->poly_begin = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    out->poly_count = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    out->polys = calloc((size_t)(total > 0 ? total : 1), sizeof *out->polys);
    if (!out->poly_begin || !out->poly_count || !out->polys) goto oom;
    for (int k = 0; k < n; k++) {
        const md_mask_ann *a = &anns[k];
        const double *xy = a->coords;
        out->poly_begin[k] = out->n_polys;
        out->poly_count[k] = 0;
        for (int j = 0; j < a->n_polys; xy += a->poly_len[j], j++) {
            int len = a->poly_len[j];
            if (len % 2 || len < 6) continue;   /* process_polygons drops it */
            md_polygon *p = &out->polys[out->n_polys];
            if (!(p->xy = malloc(sizeof(float) * (size_t)len))) goto oom;
            p->n_points = len / 2;
            for (int i = 0; i < len; i++) p->xy[i] = (float)xy[i];
            out->n_polys++;
            out->poly_count[k]++;
        }
    }
    return 0;
oom:
    oom_masks(err, out);
fail:
    md_masks_free(out);
    return -1;
}

/* -------------------------------------------------------------------- RLE */

static int rle_alloc(md_rle *r, int h, int w, int64_t m, md_error *err) {
    r->h = h;
    r->w = w;
    r->m = m;
    r->counts = malloc(sizeof *r->counts * (size_t)(m > 0 ? m : 1));
    if (!r->counts) return md_failc(err, MD_ERR_NOMEM, "out of memory for an RLE of %lld counts", (long long)m);
    return 0;
}

MD_API void md_rle_free(md_rle *r) {
    if (!r) return;
    free(r->counts);
    memset(r, 0, sizeof *r);
}

MD_API int md_rle_copy(md_rle *dst, const md_rle *src, md_error *err) {
    memset(dst, 0, sizeof *dst);
    if (rle_alloc(dst, src->h, src->w, src->m, err)) return -1;
    if (src->m) memcpy(dst->counts, src->counts, sizeof *dst->counts * (size_t)src->m);
    return 0;
}

MD_API int md_rle_encode(const uint8_t *mask, int h, int w, md_rle *out, md_error *err) {
    memset(out, 0, sizeof *out);
    size_t a = (size_t)h * w;
    uint32_t *cnts = malloc(sizeof *cnts * (a + 1));
    if (!cnts) return md_failc(err, MD_ERR_NOMEM, "out of memory encoding a %dx%d mask", w, h);
    int64_t k = md__cpu_rle_counts(mask, h, w, cnts, (int64_t)a + 1);   /* the CPU backend's walk */
    uint32_t *shrunk = realloc(cnts, sizeof *cnts * (size_t)k);
    *out = (md_rle){ h, w, k, shrunk ? shrunk : cnts };
    return 0;
}

MD_API int md_rle_decode(const md_rle *r, uint8_t *mask, md_error *err) {
    uint64_t total = 0, hw = (uint64_t)r->h * (uint64_t)r->w;
    for (int64_t j = 0; j < r->m; j++) total += r->counts[j];
    if (total != hw)
        return md_failc(err, MD_ERR_GENERIC, "RLE counts add up to %llu, not %dx%d = %llu", (unsigned long long)total,
                        r->h, r->w, (unsigned long long)hw);
    uint64_t t = 0;
    uint8_t v = 0;
    for (int64_t j = 0; j < r->m; j++, v = !v)
        for (uint32_t k = 0; k < r->counts[j]; k++, t++) mask[(t % (uint64_t)r->h) * (uint64_t)r->w + t / (uint64_t)r->h] = v;
    return 0;
}

MD_API uint64_t md_rle_area(const md_rle *r) {
    uint64_t a = 0;
    for (int64_t j = 1; j < r->m; j += 2) a += r->counts[j];
    return a;
}

MD_API char *md_rle_to_string(const md_rle *r) {
    char *s = malloc((size_t)r->m * 7 + 1);
    if (!s) return NULL;
    size_t p = 0;
    for (int64_t i = 0; i < r->m; i++) {
        int64_t x = (int64_t)r->counts[i];
        if (i > 2) x -= (int64_t)r->counts[i - 2];
        int more = 1;
        while (more) {
            char c = (char)(x & 0x1f);
            x >>= 5;   /* arithmetic: the sign carries */
            more = (c & 0x10) ? x != -1 : x != 0;
            if (more) c |= 0x20;
            s[p++] = (char)(c + 48);
        }
    }
    s[p] = 0;
    return s;
}

MD_API int md_rle_from_string(const char *s, int h, int w, md_rle *out, md_error *err) {
    memset(out, 0, sizeof *out);
    if (h < 0 || w < 0) return md_failc(err, MD_ERR_PARSE, "RLE size [%d, %d] is negative", h, w);
    size_t n = strlen(s), p = 0;
    if (rle_alloc(out, h, w, 0, err)) return -1;
    uint32_t *cnts = realloc(out->counts, sizeof *cnts * (n ? n : 1));
    if (!cnts) {
        md_rle_free(out);
        return md_failc(err, MD_ERR_NOMEM, "out of memory decoding an RLE string");
    }
    out->counts = cnts;
    int64_t m = 0;
    uint64_t total = 0;
    while (p < n) {
        int64_t x = 0;
        int k = 0, more = 1;
        while (more) {
            if (p >= n) {
                md_rle_free(out);
                return md_failc(err, MD_ERR_PARSE, "RLE string ends inside a count");
            }
            int c = (unsigned char)s[p] - 48;
            if (c < 0 || c > 63 || k >= 8) {   /* a 32-bit count takes at most 7 characters */
                md_rle_free(out);
                return md_failc(err, MD_ERR_PARSE, "RLE string: bad character '%c' at %zu", s[p], p);
            }
            x |= (int64_t)(c & 0x1f) << (5 * k);
            more = c & 0x20;
            p++;
            k++;
            if (!more && (c & 0x10)) x |= (int64_t)-1 * ((int64_t)1 << (5 * k));
        }
        if (m > 2) x += (int64_t)cnts[m - 2];
        if (x < 0 || x > (int64_t)UINT32_MAX) {
            md_rle_free(out);
            return md_failc(err, MD_ERR_PARSE, "RLE string: count %lld of %lld is out of range", (long long)m,
                            (long long)x);
        }
        cnts[m++] = (uint32_t)x;
        total += (uint64_t)x;
    }
    out->m = m;
    (void)total;   /* checked where decoded, as pycocotools leaves it */
    return 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t c = *(const uint32_t *)a, d = *(const uint32_t *)b;
    return c > d ? 1 : c < d ? -1 : 0;
}

MD_API int md_rle_from_poly(const double *xy, int k, int h, int w, md_rle *out, md_error *err) {
    memset(out, 0, sizeof *out);
    const double scale = 5;
    int *x = NULL, *y = NULL, *u = NULL, *v = NULL;
    uint32_t *a = NULL, *b = NULL;
    int rc = -1;
    for (int j = 0; j < 2 * k; j++)   /* (int)(5 * x + .5) must fit, and the walk stay finite */
        if (!(fabs(xy[j]) <= 1e6))
            return md_failc(err, MD_ERR_CONFIG, "polygon coordinate %g is out of range (at most 1e6 in size)", xy[j]);
    if (k < 1) {   /* no boundary: every pixel 0 */
        if (rle_alloc(out, h, w, 1, err)) return -1;
        out->counts[0] = (uint32_t)((uint64_t)h * (uint64_t)w);
        return 0;
    }
    x = malloc(sizeof(int) * (size_t)(k + 1));
    y = malloc(sizeof(int) * (size_t)(k + 1));
    if (!x || !y) goto oom;
    for (int j = 0; j < k; j++) x[j] = (int)(scale * xy[2 * j] + .5);
    x[k] = x[0];
    for (int j = 0; j < k; j++) y[j] = (int)(scale * xy[2 * j + 1] + .5);
    y[k] = y[0];
    size_t m = 0;
    for (int j = 0; j < k; j++) {
        unsigned dx = (unsigned)abs(x[j] - x[j + 1]), dy = (unsigned)abs(y[j] - y[j + 1]);
        m += (dx > dy ? dx : dy) + 1;
    }
    u = malloc(sizeof(int) * (m ? m : 1));
    v = malloc(sizeof(int) * (m ? m : 1));
    if (!u || !v) goto oom;
    m = 0;
    for (int j = 0; j < k; j++) {
        int xs = x[j], xe = x[j + 1], ys = y[j], ye = y[j + 1], dx = abs(xe - xs), dy = abs(ys - ye), t;
        int flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
        if (flip) {
            t = xs; xs = xe; xe = t;
            t = ys; ys = ye; ye = t;
        }
        double s = dx >= dy ? (double)(ye - ys) / dx : (double)(xe - xs) / dy;
        if (dx >= dy)
            for (int d = 0; d <= dx; d++) {
                t = flip ? dx - d : d;
                u[m] = t + xs;
                v[m] = (int)(ys + s * t + .5);
                m++;
            }
        else
            for (int d = 0; d <= dy; d++) {
                t = flip ? dy - d : d;
                v[m] = t + ys;
                u[m] = (int)(xs + s * t + .5);
                m++;
            }
    }
    /* Points where the boundary crosses a column centre, y rounded up. */
    size_t kk = m;
    m = 0;
    free(x);
    free(y);
    x = malloc(sizeof(int) * (kk ? kk : 1));
    y = malloc(sizeof(int) * (kk ? kk : 1));
    if (!x || !y) goto oom;
    for (size_t j = 1; j < kk; j++)
        if (u[j] != u[j - 1]) {
            double xd = (double)(u[j] < u[j - 1] ? u[j] : u[j] - 1);
            xd = (xd + .5) / scale - .5;
            if (floor(xd) != xd || xd < 0 || xd > w - 1) continue;
            double yd = (double)(v[j] < v[j - 1] ? v[j] : v[j - 1]);
            yd = (yd + .5) / scale - .5;
            if (yd < 0) yd = 0;
            else if (yd > h) yd = h;
            yd = ceil(yd);
            x[m] = (int)xd;
            y[m] = (int)yd;
            m++;
        }
    /* The boundaries as column-major positions, sorted, as run lengths;
     * an empty run merges its neighbours. */
    kk = m;
    a = malloc(sizeof *a * (kk + 1));
    if (!a) goto oom;
    for (size_t j = 0; j < kk; j++) a[j] = (uint32_t)((int64_t)x[j] * h + y[j]);
    a[kk++] = (uint32_t)((unsigned)h * (unsigned)w);
    qsort(a, kk, sizeof *a, cmp_u32);
    uint32_t prev = 0;
    for (size_t j = 0; j < kk; j++) {
        uint32_t t = a[j];
        a[j] -= prev;
        prev = t;
    }
    b = malloc(sizeof *b * kk);
    if (!b) goto oom;
    size_t j = 0;
    m = 0;
    b[m++] = a[j++];
    while (j < kk) {
        if (a[j] > 0) b[m++] = a[j++];
        else {
            j++;
            if (j < kk) b[m - 1] += a[j++];
        }
    }
    if (rle_alloc(out, h, w, (int64_t)m, err)) goto done;
    memcpy(out->counts, b, sizeof *b * m);
    rc = 0;
    goto done;
oom:
    rc = md_failc(err, MD_ERR_NOMEM, "out of memory rasterising a polygon of %d points", k);
done:
    free(x); free(y); free(u); free(v); free(a); free(b);
    return rc;
}

MD_API int md_rle_from_bbox(const double bb[4], int h, int w, md_rle *out, md_error *err) {
    double xs = bb[0], xe = xs + bb[2], ys = bb[1], ye = ys + bb[3];
    double xy[8] = { xs, ys, xs, ye, xe, ye, xe, ys };
    return md_rle_from_poly(xy, 4, h, w, out, err);
}

MD_API int md_rle_merge(const md_rle *rs, int n, bool intersect, md_rle *out, md_error *err) {
    memset(out, 0, sizeof *out);
    if (n == 0) return rle_alloc(out, 0, 0, 0, err);
    if (n == 1) return md_rle_copy(out, &rs[0], err);
    int h = rs[0].h, w = rs[0].w;
    int64_t m = rs[0].m;
    uint32_t *cnts = malloc(sizeof *cnts * ((size_t)h * w + 1)), *acnt = NULL;
    if (!cnts) return md_failc(err, MD_ERR_NOMEM, "out of memory merging RLEs");
    memcpy(cnts, rs[0].counts, sizeof *cnts * (size_t)m);
    for (int i = 1; i < n; i++) {
        const md_rle *B = &rs[i];
        if (B->h != h || B->w != w) {
            h = w = 0;
            m = 0;
            break;
        }
        acnt = malloc(sizeof *acnt * (size_t)(m ? m : 1));
        if (!acnt) {
            free(cnts);
            return md_failc(err, MD_ERR_NOMEM, "out of memory merging RLEs");
        }
        memcpy(acnt, cnts, sizeof *acnt * (size_t)m);
        int64_t am = m, a = 1, b = 1;
        uint32_t ca = acnt[0], cb = B->counts[0], cc = 0, ct = 1, c;
        int v = 0, va = 0, vb = 0, vp;
        m = 0;
        while (ct > 0) {
            c = ca < cb ? ca : cb;
            cc += c;
            ct = 0;
            ca -= c;
            if (!ca && a < am) { ca = acnt[a++]; va = !va; }
            ct += ca;
            cb -= c;
            if (!cb && b < B->m) { cb = B->counts[b++]; vb = !vb; }
            ct += cb;
            vp = v;
            v = intersect ? (va && vb) : (va || vb);
            if (v != vp || ct == 0) {
                cnts[m++] = cc;
                cc = 0;
            }
        }
        free(acnt);
    }
    int rc = rle_alloc(out, h, w, m, err);
    if (!rc && m) memcpy(out->counts, cnts, sizeof *cnts * (size_t)m);
    free(cnts);
    return rc;
}

MD_API void md_rle_to_bbox(const md_rle *r, double bb[4]) {
    uint32_t h = (uint32_t)r->h, w = (uint32_t)r->w, xs = w, ys = h, xe = 0, ye = 0, cc = 0, xp = 0;
    int64_t m = r->m / 2 * 2;
    if (m == 0 || h == 0) {
        bb[0] = bb[1] = bb[2] = bb[3] = 0;
        return;
    }
    for (int64_t j = 0; j < m; j++) {
        cc += r->counts[j];
        uint32_t t = cc - (uint32_t)(j % 2), y = t % h, x = (t - y) / h;
        if (j % 2 == 0) xp = x;
        else if (xp < x) {
            ys = 0;
            ye = h - 1;
        }
        if (x < xs) xs = x;
        if (x > xe) xe = x;
        if (y < ys) ys = y;
        if (y > ye) ye = y;
    }
    bb[0] = xs;
    bb[2] = xe - xs + 1;
    bb[1] = ys;
    bb[3] = ye - ys + 1;
}

MD_API void md_rle_iou(const md_rle *dt, int m, const md_rle *gt, int n, const uint8_t *iscrowd, double *o) {
    for (int d = 0; d < m; d++) {
        double db[4];
        md_rle_to_bbox(&dt[d], db);
        double da = db[2] * db[3];
        for (int g = 0; g < n; g++) {
            double gb[4];
            md_rle_to_bbox(&gt[g], gb);
            int crowd = iscrowd && iscrowd[g];
            double *dst = &o[(size_t)d * n + g], ga = gb[2] * gb[3];
            *dst = 0;
            /* bbIou first: boxes that do not overlap give 0 */
            double bw = fmin(db[2] + db[0], gb[2] + gb[0]) - fmax(db[0], gb[0]);
            if (bw <= 0) continue;
            double bh = fmin(db[3] + db[1], gb[3] + gb[1]) - fmax(db[1], gb[1]);
            if (bh <= 0) continue;
            double bi = bw * bh, bu = crowd ? da : da + ga - bi;
            if (!(bi / bu > 0)) continue;
            if (dt[d].h != gt[g].h || dt[d].w != gt[g].w) {
                *dst = -1;
                continue;
            }
            const md_rle *A = &dt[d], *B = &gt[g];
            uint32_t ca = A->counts[0], cb = B->counts[0], c, ct = 1, i = 0, u = 0;
            int64_t a = 1, b = 1;
            int va = 0, vb = 0;
            while (ct > 0) {
                c = ca < cb ? ca : cb;
                if (va || vb) {
                    u += c;
                    if (va && vb) i += c;
                }
                ct = 0;
                ca -= c;
                if (!ca && a < A->m) { ca = A->counts[a++]; va = !va; }
                ct += ca;
                cb -= c;
                if (!cb && b < B->m) { cb = B->counts[b++]; vb = !vb; }
                ct += cb;
            }
            if (i == 0) u = 1;
            else if (crowd) u = (uint32_t)md_rle_area(A);
            *dst = (double)i / (double)u;
        }
    }
}

/* --------------------------------------------------- COCO segmentations */

MD_API void md_mask_ann_free(md_mask_ann *a) {
    if (!a) return;
    free(a->poly_len);
    free(a->coords);
    free(a->invalid);
    md_rle_free(&a->rle);
    memset(a, 0, sizeof *a);
}

MD_API int md_mask_ann_copy(md_mask_ann *dst, const md_mask_ann *src, md_error *err) {
    *dst = *src;
    dst->poly_len = NULL;
    dst->coords = NULL;
    dst->invalid = NULL;
    memset(&dst->rle, 0, sizeof dst->rle);
    if (src->invalid && !(dst->invalid = strdup(src->invalid))) goto oom;
    size_t total = 0;
    for (int i = 0; i < src->n_polys; i++) total += (size_t)src->poly_len[i];
    if (src->poly_len) {
        dst->poly_len = malloc(sizeof(int) * (size_t)(src->n_polys > 0 ? src->n_polys : 1));
        dst->coords = malloc(sizeof(double) * (total ? total : 1));
        if (!dst->poly_len || !dst->coords) goto oom;
        memcpy(dst->poly_len, src->poly_len, sizeof(int) * (size_t)src->n_polys);
        if (total) memcpy(dst->coords, src->coords, sizeof(double) * total);
    }
    if (src->rle.counts && md_rle_copy(&dst->rle, &src->rle, err)) goto oom;
    return 0;
oom:
    md_mask_ann_free(dst);
    return md_failc(err, MD_ERR_NOMEM, "out of memory copying the segmentation of annotation %lld",
                    (long long)src->id);
}

MD_API int md_mask_ann_read(const md_mask_ann *a, md_mask_ann *out, md_error *err) {
    if (a->kind != MD_MASK_ANN_FILE) return md_mask_ann_copy(out, a, err);
    memset(out, 0, sizeof *out);
    if (a->length <= 0 || a->length > ((int64_t)1 << 31))
        return md_failc(err, MD_ERR_PARSE, "%s: annotation %lld: bad segmentation extent", a->file, (long long)a->id);
    char *buf = malloc((size_t)a->length + 1);
    if (!buf) return md_failc(err, MD_ERR_NOMEM, "out of memory reading a segmentation");
    FILE *f = fopen(a->file, "rb");
    size_t got = 0;
    if (f && fseeko(f, (off_t)a->offset, SEEK_SET) == 0) got = fread(buf, 1, (size_t)a->length, f);
    if (f) fclose(f);
    int rc;
    if (got != (size_t)a->length || (buf[0] != '[' && buf[0] != '{'))
        rc = md_failc(err, MD_ERR_IO, "%s: annotation %lld: cannot read its segmentation again (bytes %lld..%lld; "
                      "did the file change?)", a->file, (long long)a->id, (long long)a->offset,
                      (long long)(a->offset + a->length));
    else if ((rc = md_mask_ann_parse(buf, (size_t)a->length, out, err)) != 0)
        md_error_wrap(err, "%s: annotation %lld", a->file, (long long)a->id);
    free(buf);
    out->id = a->id;
    return rc;
}

MD_API int md_mask_ann_to_rle(const md_mask_ann *a, int h, int w, md_rle *out, md_error *err) {
    memset(out, 0, sizeof *out);
    if (a->kind == MD_MASK_ANN_FILE) {
        md_mask_ann r;
        if (md_mask_ann_read(a, &r, err)) return -1;
        int rc = md_mask_ann_to_rle(&r, h, w, out, err);
        md_mask_ann_free(&r);
        return rc;
    }
    if (a->kind == MD_MASK_ANN_RLE) return md_rle_copy(out, &a->rle, err);
    if (a->kind == MD_MASK_ANN_INVALID)
        return md_failc(err, MD_ERR_PARSE, "%s", a->invalid ? a->invalid : "malformed segmentation");
    if (a->kind != MD_MASK_ANN_POLYGONS)
        return md_failc(err, MD_ERR_CONFIG, "annotation %lld has no segmentation", (long long)a->id);
    if (a->n_polys == 0)
        return md_failc(err, MD_ERR_CONFIG, "annotation %lld: the segmentation is an empty list of polygons",
                        (long long)a->id);
    md_rle *rs = calloc((size_t)a->n_polys, sizeof *rs);
    if (!rs) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    /* frPyObjects takes a list whose first entry has 4 numbers for boxes
     * (and then fails on a list); fewer is no polygon at all. */
    if (a->poly_len[0] <= 4) {
        free(rs);
        return md_failc(err, MD_ERR_CONFIG, "annotation %lld: polygon 0 has %d numbers (at least 6 needed)",
                        (long long)a->id, a->poly_len[0]);
    }
    const double *xy = a->coords;
    int rc = 0;
    for (int i = 0; i < a->n_polys && !rc; xy += a->poly_len[i], i++)
        rc = md_rle_from_poly(xy, a->poly_len[i] / 2, h, w, &rs[i], err);
    if (!rc) rc = md_rle_merge(rs, a->n_polys, false, out, err);
    for (int i = 0; i < a->n_polys; i++) md_rle_free(&rs[i]);
    free(rs);
    return rc;
}

/* The segmentation builder: yajl's events of one "segmentation" value. */
enum { SB_POLY_OUT = 1, SB_OBJ };
enum { SK_OTHER, SK_COUNTS, SK_SIZE };

struct md_segm_builder {
    int top, depth, key, skip;
    int n_polys, cap_polys;
    int *poly_len;
    size_t n_coords, cap_coords;
    double *coords;
    int64_t n_counts, cap_counts;
    uint32_t *counts;
    char *str;
    bool have_counts, have_size, null_value;
    int64_t size[2];
    int n_size;
    char why[160];
};
typedef struct md_segm_builder sbuilder;

static int sb_fail(sbuilder *b, const char *what) {
    snprintf(b->why, sizeof b->why, "%s", what);
    return 0;
}

static int sb_value_start(sbuilder *b, int is_array, int is_map) {
    if (b->skip) {
        if (is_array || is_map) b->skip++;
        return 1;
    }
    if (b->depth == 0) {
        if (is_array) b->top = SB_POLY_OUT;
        else if (is_map) b->top = SB_OBJ;
        else return sb_fail(b, "must be a list of polygons or an RLE object {counts, size}");
        b->depth = 1;
        return 1;
    }
    if (b->top == SB_POLY_OUT) {
        if (b->depth == 1 && is_array) {
            if (b->n_polys == b->cap_polys) {
                int cap = b->cap_polys ? 2 * b->cap_polys : 4;
                int *p = realloc(b->poly_len, sizeof *p * (size_t)cap);
                if (!p) return sb_fail(b, "out of memory");
                b->poly_len = p;
                b->cap_polys = cap;
            }
            b->poly_len[b->n_polys++] = 0;
            b->depth = 2;
            return 1;
        }
        return sb_fail(b, b->depth == 1 ? "each polygon must be a list of numbers" : "a polygon must hold numbers only");
    }
    /* RLE object */
    if (b->depth == 1) {
        if (b->key == SK_OTHER) {
            if (is_array || is_map) b->skip = 1;
            return 1;
        }
        if (!is_array) return sb_fail(b, b->key == SK_COUNTS ? "'counts' must be a list of integers or a string"
                                                            : "'size' must be [height, width]");
        if (b->key == SK_COUNTS) b->have_counts = true;
        else b->have_size = true;
        b->depth = 2;
        return 1;
    }
    return sb_fail(b, b->key == SK_COUNTS ? "'counts' must hold integers" : "'size' must hold integers");
}

static int sb_end(sbuilder *b) {
    if (b->skip) {
        b->skip--;
        return 1;
    }
    b->depth--;
    if (b->top == SB_OBJ && b->depth == 1 && b->key == SK_SIZE && b->n_size != 2)
        return sb_fail(b, "'size' must be [height, width]");
    return 1;
}

static int sb_number(sbuilder *b, const char *s, size_t n) {
    if (b->skip || (b->top == SB_OBJ && b->depth == 1 && b->key == SK_OTHER)) return 1;
    char buf[64], *end;
    if (n >= sizeof buf) return sb_fail(b, "number too long");
    memcpy(buf, s, n);
    buf[n] = 0;
    double v = strtod(buf, &end);
    if (b->top == SB_POLY_OUT && b->depth == 2) {
        if (b->n_coords == b->cap_coords) {
            size_t cap = b->cap_coords ? 2 * b->cap_coords : 64;
            double *p = realloc(b->coords, sizeof *p * cap);
            if (!p) return sb_fail(b, "out of memory");
            b->coords = p;
            b->cap_coords = cap;
        }
        b->coords[b->n_coords++] = v;
        b->poly_len[b->n_polys - 1]++;
        return 1;
    }
    if (b->top == SB_OBJ && b->depth == 2) {
        if (!(v >= 0 && v <= 4294967295.0) || v != floor(v))
            return sb_fail(b, b->key == SK_COUNTS ? "'counts' must hold integers in 0 .. 2^32-1"
                                                  : "'size' must hold non-negative integers");
        if (b->key == SK_SIZE) {
            if (b->n_size >= 2 || v > 2147483647.0) return sb_fail(b, "'size' must be [height, width]");
            b->size[b->n_size++] = (int64_t)v;
            return 1;
        }
        if (b->n_counts == b->cap_counts) {
            int64_t cap = b->cap_counts ? 2 * b->cap_counts : 64;
            uint32_t *p = realloc(b->counts, sizeof *p * (size_t)cap);
            if (!p) return sb_fail(b, "out of memory");
            b->counts = p;
            b->cap_counts = cap;
        }
        b->counts[b->n_counts++] = (uint32_t)v;
        return 1;
    }
    return sb_fail(b, b->depth == 0 ? "must be a list of polygons or an RLE object {counts, size}"
                                    : b->top == SB_POLY_OUT ? "each polygon must be a list of numbers"
                                                            : "'counts' and 'size' need lists");
}

static int sb_string(sbuilder *b, const unsigned char *s, size_t n) {
    if (b->skip || (b->top == SB_OBJ && b->depth == 1 && b->key == SK_OTHER)) return 1;
    if (b->top == SB_OBJ && b->depth == 1 && b->key == SK_COUNTS) {
        free(b->str);
        if (!(b->str = malloc(n + 1))) return sb_fail(b, "out of memory");
        memcpy(b->str, s, n);
        b->str[n] = 0;
        if (strlen(b->str) != n) return sb_fail(b, "'counts' string holds a NUL character");
        b->have_counts = true;
        return 1;
    }
    return sb_fail(b, b->depth == 0 ? "must be a list of polygons or an RLE object {counts, size}, not a string"
                                    : "unexpected string");
}

static int sb_other_scalar(sbuilder *b, bool is_null) {
    if (b->skip || (b->top == SB_OBJ && b->depth == 1 && b->key == SK_OTHER)) return 1;
    if (b->depth == 0 && is_null) {
        b->null_value = true;
        return 1;
    }
    return sb_fail(b, "unexpected true, false or null");
}

static int sb_key(sbuilder *b, const unsigned char *k, size_t n) {
    if (b->skip) return 1;
    if (b->top == SB_OBJ && b->depth == 1)
        b->key = n == 6 && !memcmp(k, "counts", 6) ? SK_COUNTS : n == 4 && !memcmp(k, "size", 4) ? SK_SIZE : SK_OTHER;
    return 1;
}

static void sb_free(sbuilder *b) {
    free(b->poly_len);
    free(b->coords);
    free(b->counts);
    free(b->str);
    memset(b, 0, sizeof *b);
}

/* Moves what the builder read into out; 0 or -1 with b->why. */
static int sb_finish(sbuilder *b, md_mask_ann *out, md_error *err) {
    memset(out, 0, sizeof *out);
    if (b->why[0]) return md_failc(err, MD_ERR_PARSE, "segmentation %s", b->why);
    if (b->null_value) return 0;
    if (b->top == SB_POLY_OUT) {
        out->kind = MD_MASK_ANN_POLYGONS;
        out->n_polys = b->n_polys;
        out->poly_len = b->poly_len ? b->poly_len : malloc(sizeof(int));
        out->coords = b->coords ? b->coords : malloc(sizeof(double));
        b->poly_len = NULL;
        b->coords = NULL;
        if (!out->poly_len || !out->coords) {
            md_mask_ann_free(out);
            return md_failc(err, MD_ERR_NOMEM, "out of memory");
        }
        return 0;
    }
    if (b->top != SB_OBJ) return md_failc(err, MD_ERR_PARSE, "segmentation is empty");
    if (!b->have_counts || !b->have_size || b->n_size != 2)
        return md_failc(err, MD_ERR_PARSE, "segmentation: an RLE needs 'counts' and 'size' [height, width]");
    int h = (int)b->size[0], w = (int)b->size[1];
    out->kind = MD_MASK_ANN_RLE;
    if (b->str) {
        if (md_rle_from_string(b->str, h, w, &out->rle, err)) {
            memset(out, 0, sizeof *out);
            return md_error_wrap(err, "segmentation");
        }
        return 0;
    }
    out->rle = (md_rle){ h, w, b->n_counts, b->counts ? b->counts : malloc(sizeof(uint32_t)) };
    b->counts = NULL;
    if (!out->rle.counts) {
        memset(out, 0, sizeof *out);
        return md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    return 0;
}

/* The builder behind an opaque handle, for the COCO file parsers. */
md_segm_builder *md_segm_builder_new(void) { return calloc(1, sizeof(sbuilder)); }
void md_segm_builder_free(md_segm_builder *b) {
    if (!b) return;
    sb_free((sbuilder *)b);
    free(b);
}
/* After a failure the rest of the value is ignored. */
#define SB_LIVE(b) (!((sbuilder *)(b))->why[0])
int md_segm_on_start_array(md_segm_builder *b) { return SB_LIVE(b) && sb_value_start((sbuilder *)b, 1, 0); }
int md_segm_on_start_map(md_segm_builder *b) { return SB_LIVE(b) && sb_value_start((sbuilder *)b, 0, 1); }
int md_segm_on_end(md_segm_builder *b) { return SB_LIVE(b) && sb_end((sbuilder *)b); }
int md_segm_on_key(md_segm_builder *b, const unsigned char *k, size_t n) { return SB_LIVE(b) && sb_key((sbuilder *)b, k, n); }
int md_segm_on_number(md_segm_builder *b, const char *s, size_t n) { return SB_LIVE(b) && sb_number((sbuilder *)b, s, n); }
int md_segm_on_string(md_segm_builder *b, const unsigned char *s, size_t n) {
    return SB_LIVE(b) && sb_string((sbuilder *)b, s, n);
}
int md_segm_on_scalar(md_segm_builder *b, bool is_null) { return SB_LIVE(b) && sb_other_scalar((sbuilder *)b, is_null); }
bool md_segm_done(const md_segm_builder *b) {
    const sbuilder *sb = (const sbuilder *)b;
    return sb->why[0] || (sb->depth == 0 && !sb->skip && (sb->top || sb->null_value));
}
const char *md_segm_why(const md_segm_builder *b) { return ((const sbuilder *)b)->why; }
int md_segm_finish(md_segm_builder *b, md_mask_ann *out, md_error *err) {
    sbuilder *sb = (sbuilder *)b;
    int rc = sb_finish(sb, out, err);
    sb_free(sb);
    return rc;
}

static int y_null(void *c) { return md_segm_on_scalar(c, true); }
static int y_bool(void *c, int v) { (void)v; return md_segm_on_scalar(c, false); }
static int y_number(void *c, const char *s, size_t n) { return md_segm_on_number(c, s, n); }
static int y_string(void *c, const unsigned char *s, size_t n) { return md_segm_on_string(c, s, n); }
static int y_start_map(void *c) { return md_segm_on_start_map(c); }
static int y_key(void *c, const unsigned char *k, size_t n) { return md_segm_on_key(c, k, n); }
static int y_end(void *c) { return md_segm_on_end(c); }
static int y_start_array(void *c) { return md_segm_on_start_array(c); }
static const yajl_callbacks seg_callbacks = {
    y_null, y_bool, NULL, NULL, y_number, y_string, y_start_map, y_key, y_end, y_start_array, y_end,
};

MD_API int md_mask_ann_parse(const char *json, size_t n, md_mask_ann *out, md_error *err) {
    memset(out, 0, sizeof *out);
    md_segm_builder *b = md_segm_builder_new();
    if (!b) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    yajl_handle h = yajl_alloc(&seg_callbacks, NULL, b);
    if (!h) {
        md_segm_builder_free(b);
        return md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    yajl_status st = yajl_parse(h, (const unsigned char *)json, n);
    if (st == yajl_status_ok) st = yajl_complete_parse(h);
    int rc;
    if (st != yajl_status_ok && !md_segm_why(b)[0]) {
        unsigned char *msg = yajl_get_error(h, 0, NULL, 0);
        rc = md_failc(err, MD_ERR_PARSE, "segmentation: JSON syntax error: %s", msg ? (char *)msg : "?");
        if (msg) yajl_free_error(h, msg);
        md_segm_builder_free(b);
    } else {
        rc = md_segm_finish(b, out, err);
        md_segm_builder_free(b);
    }
    yajl_free(h);
    return rc;
}
