/* CPU kernels for indexing: index_select, gather/scatter through precomputed
 * element offsets. Serial where the order of additions matters. */
#ifndef MMDET_CPU_INDEX_H
#define MMDET_CPU_INDEX_H

#include <stddef.h>
#include <stdint.h>

/* out[o, j, :] = a[o, idx[j], :] for a [outer, n, inner] (any element size). */
void md__cpu_index_select(size_t elem, const void *a, int64_t outer, int64_t n, int64_t inner,
                          const int64_t *idx, int64_t k, void *out);
/* gx[o, idx[j], :] += g[o, j, :] (f32; serial per o, so reproducible). */
void md__cpu_index_add_f32(const float *g, int64_t outer, int64_t n, int64_t inner, const int64_t *idx,
                           int64_t k, float *gx);
/* For each element p of an index tensor (shape ishape, contiguous values idx),
 * the element offset, in a tensor with strides st, of p with p[dim] replaced
 * by idx[p]. */
void md__cpu_index_offsets(int ndim, const int64_t *ishape, int dim, const int64_t *idx, const int64_t *st,
                           int64_t *off);
/* out[p] = a[off[p]] (any element size). */
void md__cpu_take(size_t elem, const void *a, const int64_t *off, int64_t n, void *out);
/* out[off[p]] += src[p] for f32, i64, i32 (dtype codes of tensor.h); serial. */
int md__cpu_put_add(int dtype, void *out, const int64_t *off, int64_t n, const void *src);

#endif
