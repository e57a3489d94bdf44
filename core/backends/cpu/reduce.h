/* CPU kernels for reductions and softmax over one dimension of a contiguous
 * tensor seen as [outer, n, inner]. Results do not depend on the thread
 * count: every sum has a fixed order. */
#ifndef MMDET_CPU_REDUCE_H
#define MMDET_CPU_REDUCE_H

#include <stdbool.h>
#include <stdint.h>
#include "mmdet/tensor.h"

/* out[o, j] = scale * sum_i x[o, i, j] (f32). */
void md__cpu_sum_f32(const float *x, int64_t outer, int64_t n, int64_t inner, float scale, float *out);
/* Integer sums into i64 (PyTorch's result dtype for integer sums). */
int md__cpu_sum_int(md_dtype dt, const void *x, int64_t outer, int64_t n, int64_t inner, int64_t *out);
/* out[o, i, j] = scale * g[o, j]: the gradient of sum/mean. */
void md__cpu_spread_f32(const float *g, int64_t outer, int64_t n, int64_t inner, float scale, float *out);
/* Max over i (first maximum; NaN wins like PyTorch): values (may be NULL) and
 * i64 indices (may be NULL). n >= 1. */
int md__cpu_max(md_dtype dt, const void *x, int64_t outer, int64_t n, int64_t inner, void *vals, int64_t *idx);
/* Softmax or log-softmax over i, max-subtracted. */
void md__cpu_softmax_f32(const float *x, int64_t outer, int64_t n, int64_t inner, bool log, float *y);
/* Gradients from the output y: softmax gx = y (g - sum g y); log-softmax
 * gx = g - exp(y) sum g. */
void md__cpu_softmax_backward_f32(const float *y, const float *g, int64_t outer, int64_t n, int64_t inner,
                                  bool log, float *gx);

/* gx[o, idx[o, j], j] += g[o, j] (max's backward; gx zeroed by the caller). */
void md__cpu_max_backward_f32(const float *g, const int64_t *idx, int64_t outer, int64_t n, int64_t inner, float *gx);

#endif
