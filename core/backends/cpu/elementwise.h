/* CPU kernels for element-wise ops: raw pointers and sizes, no context.
 * A CUDA backend mirrors this file. */
#ifndef MMDET_CPU_ELEMENTWISE_H
#define MMDET_CPU_ELEMENTWISE_H

#include <stdint.h>
#include "mmdet/tensor.h"
#include "backends/backend.h"   /* md__loop, md__binop, md__unop */

/* Work below this many elements runs on one thread (OpenMP start-up costs
 * more than the loop). */
#define MD_CPU_PAR_MIN 32768

void md__loop_init(md__loop *L, int ndim, const int64_t *shape, int nops, const int64_t *const *strides);

/* out = a op b over the loop; a and b of dtype dt; out of dt for arithmetic,
 * u8 for comparisons and logic. Returns -1 for an unsupported dtype/op pair. */
int md__cpu_binary(md__binop op, md_dtype dt, const md__loop *L, const void *a, const void *b, void *out);
/* Comparison with a scalar (or logic with it): contiguous a of n elements. */
int md__cpu_compare_scalar(md__binop op, md_dtype dt, int64_t n, const void *a, double s, uint8_t *out);

/* Contiguous f32 unary op with parameters p0, p1 (scalar, clamp bounds, power). */
void md__cpu_unary_f32(md__unop op, int64_t n, const float *x, float p0, float p1, float *y);
/* The same for integer dtypes (i64, i32, u8) through double arithmetic. */
int md__cpu_unary_int(md__unop op, md_dtype dt, int64_t n, const void *x, double p0, double p1, void *y);
/* gx = g * d(op)/dx given the input x and the output y (contiguous). */
void md__cpu_unary_f32_backward(md__unop op, int64_t n, const float *x, const float *y, const float *g,
                                float p0, float p1, float *gx);

/* out = cond ? a : b over the loop (operands: out, cond (u8), a, b), any
 * element size. */
void md__cpu_where(const md__loop *L, size_t elem, const uint8_t *cond, const void *a, const void *b, void *out);
/* dst = src over the loop (operands: dst, src), any element size. */
void md__cpu_copy(const md__loop *L, size_t elem, const void *src, void *dst);
/* Contiguous dtype conversion (float to integer truncates toward zero). */
int md__cpu_cast(md_dtype from, md_dtype to, int64_t n, const void *src, void *dst);

/* dst[i] = the element whose bits are the low `elem` bytes of `bits` (elem 1, 4 or 8). */
void md__cpu_fill(void *dst, int64_t n, size_t elem, uint64_t bits);
/* dst[i] += src[i], contiguous f32 (gradient accumulation). */
void md__cpu_add_inplace_f32(float *dst, const float *src, int64_t n);

#endif
