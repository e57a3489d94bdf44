/* Launch helpers and device functions shared by the kernel files of the
 * CUDA backend: grid-stride loops with 64-bit indices over blocks of TPB
 * threads, the md__loop offset walk, the CPU's exp written so that nvcc
 * cannot contract it, and the launch check. */
#ifndef MMDET_CUDA_KERNEL_UTIL_CUH
#define MMDET_CUDA_KERNEL_UTIL_CUH

#include <stdint.h>
#include "backends/cuda/cuda_internal.h"

#define TPB 256   /* threads per block (a power of two: the block-wide trees rely on it) */

/* Blocks for n elements of grid-stride work (at least one; capped, the loop covers the rest). */
static inline unsigned grid_for(int64_t n) {
    int64_t b = (n + TPB - 1) / TPB;
    return (unsigned)(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

#define GRID_STRIDE(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* 0, or -1 with the error set when the last launch failed. */
static inline int check(const char *what) { return md__cuda_check(cudaGetLastError(), what) ? -1 : 0; }

/* Element offsets of operands 0..NOPS-1 for linear index e of the loop
 * (row-major over L.shape, the last dimension innermost). */
template <int NOPS>
__device__ __forceinline__ void loop_offsets(const md__loop &L, int64_t e, int64_t *off) {
    if (L.ndim == 1) {
        for (int k = 0; k < NOPS; k++) off[k] = e * L.st[k][0];
        return;
    }
    for (int k = 0; k < NOPS; k++) off[k] = 0;
    for (int d = L.ndim - 1; d >= 0; d--) {
        int64_t s = L.shape[d], i = e % s;
        e /= s;
        for (int k = 0; k < NOPS; k++) off[k] += i * L.st[k][d];
    }
}

/* md__expf of backends/cpu/elementwise_math.h, operation for operation, with
 * the _rn intrinsics so that nothing is contracted into an FMA: the same
 * bits as the CPU kernels' exp. */
__device__ __forceinline__ float cpu_expf(float x) {
    float xs = x != x ? 0.0f : x;
    xs = xs > 89.0f ? 89.0f : (xs < -104.0f ? -104.0f : xs);
    float fn = __fsub_rn(__fadd_rn(__fmul_rn(xs, 1.44269504088896341f), 12582912.0f), 12582912.0f);
    float r = __fsub_rn(__fsub_rn(xs, __fmul_rn(fn, 0.693359375f)), __fmul_rn(fn, -2.12194440e-4f));
    float p = 1.9875691500e-4f;
    p = __fadd_rn(__fmul_rn(p, r), 1.3981999507e-3f);
    p = __fadd_rn(__fmul_rn(p, r), 8.3334519073e-3f);
    p = __fadd_rn(__fmul_rn(p, r), 4.1665795894e-2f);
    p = __fadd_rn(__fmul_rn(p, r), 1.6666665459e-1f);
    p = __fadd_rn(__fmul_rn(p, r), 5.0000001201e-1f);
    p = __fadd_rn(__fadd_rn(__fmul_rn(__fmul_rn(p, r), r), r), 1.0f);
    int32_t n = (int32_t)fn, h = n >> 1;
    uint32_t b1 = (uint32_t)(h + 127) << 23, b2 = (uint32_t)(n - h + 127) << 23;
    float y = __fmul_rn(__fmul_rn(p, __uint_as_float(b1)), __uint_as_float(b2));
    return x != x ? x : y;
}

#endif
