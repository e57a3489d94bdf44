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

/* First entry of idx[0..n) outside [0, size) into *bad (-1 when none), its value into *val. */
void md__cpu_index_check(const int64_t *idx, int64_t n, int64_t size, int64_t *bad, int64_t *val);
/* Non-zero elements of contiguous x (f32 -0.0 is zero), in increasing
 * order: *count; with out also [count, ndim] coordinates (ndim <= 1:
 * [count] positions). */
void md__cpu_nonzero(int dtype, const void *x, int ndim, const int64_t *shape, int64_t *out, int64_t *count);

#endif
