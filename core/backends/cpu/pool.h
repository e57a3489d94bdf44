/* CPU pooling and nearest resampling over planes (N*C planes of H x W, f32,
 * contiguous). Parallel over planes: results do not depend on the thread
 * count. */
#ifndef MMDET_CPU_POOL_H
#define MMDET_CPU_POOL_H

#include <stdint.h>

/* Square max pooling; idx gets each output's argmax as h * W + w within its
 * plane (the first maximum in scan order; NaN wins, as PyTorch). */
void md__maxpool2d_forward(const float *x, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                           int k, int stride, int pad, float *y, int32_t *idx, int nthreads);
/* gx (overwritten) gets gy routed to the argmax positions, summed. */
void md__maxpool2d_backward(const float *gy, const int32_t *idx, int64_t planes, int64_t H, int64_t W,
                            int64_t OH, int64_t OW, float *gx, int nthreads);

/* y[p, oh, ow] = x[p, ih[oh], iw[ow]]. */
void md__nearest_forward(const float *x, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                         const int64_t *ih, const int64_t *iw, float *y, int nthreads);
/* gx (overwritten) = sum of gy over the outputs that read each input. */
void md__nearest_backward(const float *gy, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                          const int64_t *ih, const int64_t *iw, float *gx, int nthreads);

/* PyTorch's nearest_idx: the source row (or column) of each of `out`
 * outputs, exact for equal and doubled sizes, otherwise floor(o * scale)
 * in float (scale = in/out or 1/scale_factor). */
void md__nearest_map(int64_t *map, int64_t in, int64_t out, float scale);

#endif
