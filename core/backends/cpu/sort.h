/* CPU kernels for sorting along one dimension of a contiguous tensor seen as
 * [outer, n, inner]. Order: by value, ties by the lower index (stable); NaN
 * above every number, as PyTorch. */
#ifndef MMDET_CPU_SORT_H
#define MMDET_CPU_SORT_H

#include <stdbool.h>
#include <stdint.h>
#include "mmdet/tensor.h"

/* The first k of each line in sorted order (descending: largest first):
 * values (dtype dt, may be NULL) and i64 indices into [outer, k, inner].
 * Returns -1 on an unsupported dtype or no memory. */
int md__cpu_sort_lines(md_dtype dt, const void *x, int64_t outer, int64_t n, int64_t inner, int64_t k,
                       bool descending, void *vals, int64_t *idx);
/* gx[o, idx[o, t, j], j] += g[o, t, j] for t < k. */
void md__cpu_unsort_add_f32(const float *g, const int64_t *idx, int64_t outer, int64_t n, int64_t inner,
                            int64_t k, float *gx);
/* The permutation torch.sort(v, descending=True) gives on the CPU
 * (PyTorch 1.13: libstdc++'s std::sort, not stable), into idx[0..n).
 * Returns -1 when out of memory. */
int md__cpu_torch_sort_desc(const float *v, int64_t n, int64_t *idx);

#endif
