/* The per-pixel math of the mask operations, shared by the CPU kernels
 * (backends/cpu/masks.c) and the CUDA kernels (backends/cuda/masks.cu):
 *
 *  - mask targets: mmdet's BitmapMasks.crop_and_resize, i.e. mmcv's
 *    RoIAlign (aligned = true, spatial_scale 1, sampling_ratio 0, "avg")
 *    of one u8 mask over one box, in mmcv's order of operations (sample
 *    coordinates, the four bilinear weights, the samples summed in order,
 *    the sum divided by their count), binarised at 0.5;
 *  - paste-back: mmdet's _do_paste_mask, torch's grid_sample (bilinear,
 *    zeros padding, align_corners false) of the box's mask at each pixel
 *    of the box's window (skip_empty: the box and one pixel around it),
 *    compared with the threshold;
 *  - RLE: pycocotools' column-major order of pixels.
 *
 * Every float operation goes through MD_FADD .. MD_FDIV (hostdev.h), so
 * both backends compute the same bits. */
#ifndef MMDET_BACKENDS_MASK_MATH_H
#define MMDET_BACKENDS_MASK_MATH_H

#include <math.h>
#include <stdint.h>
#include "backends/hostdev.h"

/* ---- mask targets ---- */

/* One sample coordinate of mmcv's RoIAlign grid: start + p * bin +
 * (i + .5) * bin / grid, then its bilinear taps along an axis of `size`:
 * *lo = -1 when the sample is outside [-1, size] (it adds nothing), else
 * the low and high indices and their weights (1 - d, d), the coordinate
 * clamped to 0 below and to the last index above. */
MD_HD static inline void md__mask_tap(float start, float bin, int p, int i, int grid, int size, int *lo, int *hi,
                                      float *wl, float *wh) {
    float v = MD_FADD(MD_FADD(start, MD_FMUL((float)p, bin)), MD_FDIV(MD_FMUL((float)i + .5f, bin), (float)grid));
    *lo = *hi = -1;
    *wl = *wh = 0.0f;
    if (v < -1.0f || v > (float)size) return;
    if (v <= 0) v = 0;
    int l = (int)v, h;
    if (l >= size - 1) {
        h = l = size - 1;
        v = (float)l;
    } else {
        h = l + 1;
    }
    float d = MD_FSUB(v, (float)l);
    *lo = l;
    *hi = h;
    *wl = MD_FSUB(1.0f, d);
    *wh = d;
}

/* The RoIAlign average at output cell (ph, pw) of an oh x ow grid over
 * box (x1, y1, x2, y2) of the h x w mask `plane` (0 or 1 values, nonzero
 * counts as 1). */
MD_HD static inline float md__mask_roi_value(const uint8_t *plane, int h, int w, const float *box, int oh, int ow,
                                             int ph, int pw) {
    float sw = MD_FSUB(box[0], 0.5f), sh = MD_FSUB(box[1], 0.5f);   /* aligned: the -0.5 pixel offset */
    float rw = MD_FSUB(MD_FSUB(box[2], 0.5f), sw), rh = MD_FSUB(MD_FSUB(box[3], 0.5f), sh);
    float bw = MD_FDIV(rw, (float)ow), bh = MD_FDIV(rh, (float)oh);
    int gh = (int)ceilf(MD_FDIV(rh, (float)oh)), gw = (int)ceilf(MD_FDIV(rw, (float)ow));
    if (gh < 0) gh = 0;
    if (gw < 0) gw = 0;
    int count = gh * gw > 1 ? gh * gw : 1;
    float sum = 0.0f;
    for (int iy = 0; iy < gh; iy++) {
        int yl, yh;
        float wyl, wyh;
        md__mask_tap(sh, bh, ph, iy, gh, h, &yl, &yh, &wyl, &wyh);
        if (yl < 0) continue;
        const uint8_t *rl = plane + (int64_t)yl * w, *rhp = plane + (int64_t)yh * w;
        for (int ix = 0; ix < gw; ix++) {
            int xl, xh;
            float wxl, wxh;
            md__mask_tap(sw, bw, pw, ix, gw, w, &xl, &xh, &wxl, &wxh);
            if (xl < 0) continue;
            float v1 = rl[xl] ? 1.0f : 0.0f, v2 = rl[xh] ? 1.0f : 0.0f;
            float v3 = rhp[xl] ? 1.0f : 0.0f, v4 = rhp[xh] ? 1.0f : 0.0f;
            /* mmcv: w1 v1 + w2 v2 + w3 v3 + w4 v4, w1 = hy hx, w2 = hy lx, w3 = ly hx, w4 = ly lx */
            float t = MD_FADD(MD_FADD(MD_FADD(MD_FMUL(MD_FMUL(wyl, wxl), v1), MD_FMUL(MD_FMUL(wyl, wxh), v2)),
                                      MD_FMUL(MD_FMUL(wyh, wxl), v3)),
                              MD_FMUL(MD_FMUL(wyh, wxh), v4));
            sum = MD_FADD(sum, t);
        }
    }
    return MD_FDIV(sum, (float)count);
}

/* The mask target at (ph, pw): 1 where the average is >= 0.5. */
MD_HD static inline float md__mask_target(const uint8_t *plane, int h, int w, const float *box, int oh, int ow, int ph,
                                          int pw) {
    return md__mask_roi_value(plane, h, w, box, oh, ow, ph, pw) >= 0.5f ? 1.0f : 0.0f;
}

/* ---- paste-back ---- */

/* The pixels _do_paste_mask computes for box (x1, y1, x2, y2) in an
 * img_h x img_w image (skip_empty): x in [win[0], win[2]), y in [win[1],
 * win[3]); the rest of the image is 0. */
MD_HD static inline void md__paste_window(const float *box, int img_h, int img_w, int *win) {
    float fx0 = floorf(box[0]) - 1, fy0 = floorf(box[1]) - 1, fx1 = ceilf(box[2]) + 1, fy1 = ceilf(box[3]) + 1;
    win[0] = fx0 < 0 ? 0 : (int)fx0;
    win[1] = fy0 < 0 ? 0 : (int)fy0;
    win[2] = fx1 > (float)img_w ? img_w : (int)fx1;
    win[3] = fy1 > (float)img_h ? img_h : (int)fy1;
}

/* grid_sample's normalised coordinate of pixel i over the box side [lo,
 * hi): ((i + 0.5 - lo) / (hi - lo)) * 2 - 1, infinities as 0. */
MD_HD static inline float md__paste_coord(int i, float lo, float hi) {
    float v = MD_FSUB(MD_FMUL(MD_FDIV(MD_FSUB(MD_FADD((float)i, 0.5f), lo), MD_FSUB(hi, lo)), 2.0f), 1.0f);
    return isinf(v) ? 0.0f : v;
}

/* torch's grid_sample (bilinear, zeros, align_corners false) of one h x w
 * channel at (x, y) in [-1, 1], in the order of its CPU kernel. */
MD_HD static inline float md__paste_sample(const float *src, int h, int w, float x, float y) {
    float ix = MD_FSUB(MD_FMUL(MD_FADD(x, 1.0f), MD_FMUL((float)w, 0.5f)), 0.5f);
    float iy = MD_FSUB(MD_FMUL(MD_FADD(y, 1.0f), MD_FMUL((float)h, 0.5f)), 0.5f);
    float x_w = floorf(ix), y_n = floorf(iy);
    float we = MD_FSUB(ix, x_w), e = MD_FSUB(1.0f, we), no = MD_FSUB(iy, y_n), s = MD_FSUB(1.0f, no);
    float wt[4] = { MD_FMUL(s, e), MD_FMUL(s, we), MD_FMUL(no, e), MD_FMUL(no, we) };   /* nw, ne, sw, se */
    int x0 = (int)x_w, y0 = (int)y_n;
    float acc = 0.0f;
    for (int k = 0; k < 4; k++) {
        int xx = x0 + (k & 1), yy = y0 + (k >> 1);
        float v = xx >= 0 && xx < w && yy >= 0 && yy < h ? src[(int64_t)yy * w + xx] : 0.0f;
        acc = k == 0 ? MD_FMUL(v, wt[0]) : MD_FADD(acc, MD_FMUL(v, wt[k]));
    }
    return acc;
}

/* The pasted mask at pixel (x, y) of the image, 0 outside the window:
 * 1 where the sample is >= thr; with thr < 0 (mmdet's soft masks) the
 * sample * 255 truncated to uint8, as its .to(torch.uint8). */
MD_HD static inline uint8_t md__paste_pixel(const float *src, int mh, int mw, const float *box, const int *win, int x,
                                            int y, float thr) {
    if (x < win[0] || x >= win[2] || y < win[1] || y >= win[3]) return 0;
    float v = md__paste_sample(src, mh, mw, md__paste_coord(x, box[0], box[2]), md__paste_coord(y, box[1], box[3]));
    return thr < 0 ? (uint8_t)(v * 255.0f) : v >= thr;
}

/* ---- RLE ---- */

/* The pixel at column-major position t (pycocotools' order: down each
 * column, columns left to right) of an h x w row-major mask, as 0 or 1;
 * position -1 is 0 (the counts start with a run of 0s). */
MD_HD static inline uint8_t md__rle_bit(const uint8_t *mask, int h, int w, int64_t t) {
    if (t < 0) return 0;
    int64_t x = t / h, y = t - x * h;
    return mask[y * w + x] != 0;
}

#endif
