/* CPU batch-norm and group-norm kernels over x [N, C, HW] (NCHW with H*W
 * flattened), f32 data with double accumulation. Batch norm is parallel over
 * channels, group norm over (n, group): results do not depend on the thread
 * count. */
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

/* Group norm over x [N, C, HW] with G groups of D = C / G channels, each
 * (n, g) block contiguous: per-block mean and 1/sqrt(var + eps) (two passes
 * in double) into mean/rstd [N * G], and y = (x - mean) * rstd * w[c] + b[c]
 * (w, b may be NULL). Parallel over (n, g) only, so results do not depend on
 * the thread count. */
void md__gn_forward(const float *x, int64_t N, int64_t C, int64_t HW, int64_t G, const float *w, const float *b,
                    double eps, float *y, double *mean, double *rstd, int nthreads);
/* Gradients given gy; any of gx, gw, gb may be NULL. `scratch` holds
 * 2 * N * C doubles (per-(n, c) sums, reduced over n in a fixed order). */
void md__gn_backward(const float *x, const float *gy, int64_t N, int64_t C, int64_t HW, int64_t G,
                     const double *mean, const double *rstd, const float *w, float *gx, float *gw, float *gb,
                     double *scratch, int nthreads);

/* Training batch norm's per-channel results from the batch statistics m,
 * v (md__bn_stats): mean, invstd = 1/sqrt(v + eps), and the running stats
 * (either may be NULL) moved by momentum with the unbiased variance. */
void md__bn_train_stats(const double *m, const double *v, int64_t C, int64_t count, double eps, double momentum,
                        float *running_mean, float *running_var, float *mean, float *invstd);
/* Eval mode: mean = running_mean, invstd from running_var. */
void md__bn_eval_stats(const float *running_mean, const float *running_var, int64_t C, double eps, float *mean,
                       float *invstd);

#endif
