/* bf16 micro-kernels for the packed GEMM (conv_gemm.h) and a bf16 GEMM for
 * linear layers: operands rounded to bfloat16 (round to nearest even, as
 * PyTorch's `tensor.bfloat16()`), products accumulated in f32.
 *
 * The kernels read the same f32 panels as the f32 kernels of the same
 * register block (AVX2 6x16, AVX-512 14x32) and convert as they load, so
 * every packed path (im2col, the 7x7/2 stem, Winograd's 16 GEMMs, the
 * input and weight gradients) runs them unchanged:
 *   native     AVX512_BF16: pairs of k converted with vcvtneps2bf16 and
 *              multiplied with vdpbf16ps (two bf16 multiply-adds per lane);
 *   avx512cvt  AVX-512F: each value rounded to bf16 in integer lanes, then
 *              f32 FMA (any CPU with AVX-512);
 *   emulated   AVX2+FMA: the same rounding in ymm lanes (no AVX-512): slower
 *              than f32, for correctness checks.
 * All three compute sum_k bf16(a) * bf16(b) in f32: a product of two bf16
 * values is exact in f32, so they differ only in the order of the f32
 * additions (native adds the pair first) and in denormals, which the
 * native instructions flush to zero.
 *
 * The precision is a per-thread switch, set through the backend table's
 * set_compute_dtype (backends/backend.h; the op front-ends set it around
 * their kernel calls): md__convk() (conv_gemm.h) returns the bf16 kernel
 * while it is on. */
#ifndef MMDET_CPU_GEMM_BF16_H
#define MMDET_CPU_GEMM_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "backends/cpu/conv_gemm.h"
#include "backends/precision.h"

enum { MD_BF16K_EMULATED = 0, MD_BF16K_AVX512CVT, MD_BF16K_NATIVE, MD_BF16K_COUNT };

/* Nonzero while the calling thread's conv/linear kernels run in bf16
 * (set by the CPU table's set_compute_dtype). */
extern __thread int md__cpu_bf16;

/* The bf16 kernel for this CPU (native, else avx512cvt, else emulated), or
 * NULL when the CPU has none of them (no AVX2+FMA). */
const md__gemm_kernel *md__convk_bf16(void);
/* Which variant md__convk_bf16 returns (MD_BF16K_*), -1 for none. */
int md__bf16k_current(void);
/* Forces variant `id`, or the CPU's best for -1. Returns -1 (choice
 * unchanged) when this CPU cannot run it. For tests and benchmarks. */
int md__bf16k_set(int id);
int md__bf16k_supported(int id);
const char *md__bf16k_name(int id);

/* md__f32_to_bf16, md__bf16_to_f32 and md__bf16_round (round to nearest
 * even, as torch's .bfloat16()) are in backends/precision.h, shared with
 * the CUDA kernels. */

/* Scratch floats md__gemm_bf16 needs. */
size_t md__gemm_bf16_work_floats(int64_t M, int64_t N, int64_t K);
/* C[M,N] = op(A) op(B) (+ C when beta is 1; beta is 0 or 1), row-major as
 * md__sgemm, on the bf16 kernel over `nthreads` OpenMP threads. The kernel
 * must exist (md__convk_bf16() not NULL). */
void md__gemm_bf16(int nthreads, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                   const float *B, int64_t ldb, float beta, float *C, int64_t ldc, float *work);

#endif
