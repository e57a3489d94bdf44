/* CPU kernels of the mask operations (mask targets, paste-back, RLE):
 * raw pointers and sizes in, no context; the per-pixel math is
 * backends/mask_math.h, which the CUDA kernels share. */
#ifndef MMDET_CPU_MASKS_H
#define MMDET_CPU_MASKS_H

#include <stdint.h>

/* out [P, oh, ow] = md__mask_target of mask inds[p] (NULL: p) of masks
 * [n, h, w] over boxes[p] (x1, y1, x2, y2). */
void md__cpu_mask_targets(const uint8_t *masks, int64_t h, int64_t w, const float *boxes, const int64_t *inds,
                          int64_t P, int oh, int ow, float *out);
/* out [D, img_h, img_w] = md__paste_pixel of plane probs + (d * C +
 * chan[d]) * mh * mw over boxes[d], 0 outside each box's window. */
void md__cpu_mask_paste(const float *probs, int64_t D, int64_t C, int mh, int mw, const int64_t *chan,
                        const float *boxes, int img_h, int img_w, float thr, uint8_t *out);
/* pycocotools' RLE counts of one h x w mask (nonzero = 1): returns their
 * number k and writes the first min(k, cap) into counts (NULL with cap 0:
 * only counts them). k <= h * w + 1. */
int64_t md__cpu_rle_counts(const uint8_t *mask, int h, int w, uint32_t *counts, int64_t cap);

#endif
