/* The sampling rule of deformable convolution, mmcv's (deform_conv and
 * modulated_deform_conv, CPU and CUDA alike), one tap at a time, for every
 * backend: plain C that nvcc compiles for host and device.
 *
 * Tap (i, j) of output pixel (oh, ow) reads the input plane at
 *     h = oh*sh - ph + i*dh + dy,   w = ow*sw - pw + j*dw + dx
 * (dy, dx its offsets). Inside (-1, H) x (-1, W) the value is the bilinear
 * blend of the four neighbours (h_lo, w_lo) .. (h_lo+1, w_lo+1), h_lo =
 * floor(h), a neighbour outside the plane counting 0; outside that open
 * box the value is 0, and so is every gradient of the tap. The gradient
 * of the value with respect to (h, w) is mmcv's coordinate weight: the
 * bilinear blend differentiated, with the same zero neighbours. */
#ifndef MMDET_DEFORM_SAMPLE_H
#define MMDET_DEFORM_SAMPLE_H

#include <stdint.h>
#ifndef __CUDACC__
#include <math.h>
#endif

#include "hostdev.h"

/* One tap resolved: the four neighbours' offsets in the plane (0 where a
 * neighbour is missing, its weights then 0), the forward weights (value =
 * w[0] v[0] + w[1] v[1] + w[2] v[2] + w[3] v[3], mmcv's order), and the
 * weights of d(value)/dh (gh) and d(value)/dw (gw). All weights are 0 for
 * a tap outside (-1, H) x (-1, W). */
typedef struct md__dcn_tap {
    int32_t idx[4];
    float w[4], gh[4], gw[4];
} md__dcn_tap;

MD_HD static inline void md__dcn_tap_at(float h, float w, int64_t H, int64_t W, md__dcn_tap *t) {
    for (int q = 0; q < 4; q++) {
        t->idx[q] = 0;
        t->w[q] = t->gh[q] = t->gw[q] = 0.0f;
    }
    if (!(h > -1 && w > -1 && h < (float)H && w < (float)W)) return;
    int hl = (int)floorf(h), wl = (int)floorf(w), hh_ = hl + 1, wh_ = wl + 1;
    float lh = h - (float)hl, lw = w - (float)wl, hh = 1 - lh, hw = 1 - lw;
    /* the coordinate weights' factors as mmcv writes them */
    float ah = (float)(hl + 1) - h, bh = h - (float)hl, aw = (float)(wl + 1) - w, bw = w - (float)wl;
    const int ok[4] = { hl >= 0 && wl >= 0, hl >= 0 && wh_ <= W - 1, hh_ <= H - 1 && wl >= 0,
                        hh_ <= H - 1 && wh_ <= W - 1 };
    const int64_t at[4] = { hl * W + wl, hl * W + wh_, hh_ * W + wl, hh_ * W + wh_ };
    const float fw[4] = { hh * hw, hh * lw, lh * hw, lh * lw };
    const float fh[4] = { -1 * aw, -1 * bw, aw, bw };   /* d/dh: rows differ */
    const float fx[4] = { -1 * ah, ah, -1 * bh, bh };   /* d/dw: columns differ */
    for (int q = 0; q < 4; q++) {
        if (!ok[q]) continue;
        t->idx[q] = (int32_t)at[q];
        t->w[q] = fw[q];
        t->gh[q] = fh[q];
        t->gw[q] = fx[q];
    }
}

/* The tap's value in plane p. */
MD_HD static inline float md__dcn_value(const md__dcn_tap *t, const float *p) {
    return t->w[0] * p[t->idx[0]] + t->w[1] * p[t->idx[1]] + t->w[2] * p[t->idx[2]] + t->w[3] * p[t->idx[3]];
}

/* The sampling position of tap (i, j) of output pixel (oh, ow) given its
 * offsets: mmcv adds the integer grid position (as float) and the offset. */
MD_HD static inline float md__dcn_pos(int64_t o, int64_t s, int64_t p, int64_t k, int64_t d, float off) {
    return (float)(o * s - p + k * d) + off;
}

#endif
