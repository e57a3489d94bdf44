/* CPU batch-norm kernels over x [N, C, HW] (NCHW with H*W flattened), f32
 * data with double accumulation; parallel over channels, so results do not
 * depend on the thread count. */
#ifndef MMDET_CPU_NORM_H
#define MMDET_CPU_NORM_H

#include <stdint.h>

/* Per-channel mean and biased variance. */
void md__bn_stats(const float *x, int64_t N, int64_t C, int64_t HW, double *mean, double *var, int nthreads);
/* y = (x - mean[c]) * invstd[c] * w[c] + b[c]; w, b may be NULL (1, 0). */
void md__bn_apply(const float *x, int64_t N, int64_t C, int64_t HW, const float *mean, const float *invstd,
                  const float *w, const float *b, float *y, int nthreads);
/* Gradients given gy; any of gx, gw, gb may be NULL (not wanted). With
 * `batch_stats` the mean and invstd were computed from x itself (training),
 * so gx carries the terms through them. */
void md__bn_backward(const float *x, const float *gy, int64_t N, int64_t C, int64_t HW, const float *mean,
                     const float *invstd, const float *w, int batch_stats, float *gx, float *gw, float *gb,
                     int nthreads);

#endif
