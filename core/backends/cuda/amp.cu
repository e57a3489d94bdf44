/* Mixed precision on the GPU: the calling thread's compute precision
 * (set_compute_dtype), which conv.cu and gemm.cu read, and the casts
 * between the f32 tensors and the fp16 / bf16 operands those files hand to
 * cuDNN and cuBLAS. The per-element rounding is backends/precision.h's,
 * the functions the CPU tests check bit for bit against PyTorch, so a value
 * rounds on the GPU exactly as on the CPU. The loss scaler's unscale is in
 * optim.cu (multi-tensor launches). */
#include <stdint.h>
#include <stdio.h>
#include "backends/cuda/kernel_util.cuh"
#include "backends/precision.h"

/* MD__DT_F32 (f32 throughout), MD__DT_F16 or MD__DT_BF16; per thread as
 * the CPU's switch, set by the op front-ends around their kernel calls. */
static thread_local int t_dtype = MD__DT_F32;

extern "C" int md__cuda_compute_dtype(void) { return t_dtype; }

extern "C" const char *md__cuda_dtype_name(int dtype) {
    return dtype == MD__DT_F16 ? "fp16" : dtype == MD__DT_BF16 ? "bf16" : "f32";
}

extern "C" int md__cuda_set_compute_dtype(int dtype, int *prev) {
    if (dtype != MD__DT_F32 && dtype != MD__DT_F16 && dtype != MD__DT_BF16)
        return md__cuda_fail("set_compute_dtype", "dtype %d is not f32 (0), fp16 (4) or bf16 (5)", dtype);
    if (dtype != MD__DT_F32) {
        int cc = md__cuda_cc();
        if (cc <= 0) return md__cuda_fail("set_compute_dtype", "backend not initialised");
        /* bf16 tensor cores (and cuDNN's bf16 convolutions) start with Ampere */
        if (dtype == MD__DT_BF16 && cc < 80)
            return md__cuda_fail("set_compute_dtype", "bf16 needs a GPU of compute capability 8.0 or newer "
                                 "(Ampere); this one is %s, compute capability %d.%d: use fp16", md__cuda_describe(),
                                 cc / 10, cc % 10);
    }
    if (prev) *prev = t_dtype;
    t_dtype = dtype;
    return 0;
}

/* ------------------------------------------------------------- casts -- */

template <int DT>
__global__ void to_lowp_kernel(const float *src, int64_t n, uint16_t *dst) {
    GRID_STRIDE(i, n) dst[i] = DT == MD__DT_F16 ? md__f32_to_f16(src[i]) : md__f32_to_bf16(src[i]);
}

/* dst = src widened, plus bias[channel] when given (channel = i / HW % C). */
template <int DT>
__global__ void from_lowp_kernel(const uint16_t *src, int64_t n, const float *bias, int64_t C, int64_t HW,
                                 float *dst) {
    GRID_STRIDE(i, n) {
        float v = DT == MD__DT_F16 ? md__f16_to_f32(src[i]) : md__bf16_to_f32(src[i]);
        dst[i] = bias ? __fadd_rn(v, bias[i / HW % C]) : v;
    }
}

extern "C" int md__cuda_to_lowp(int dtype, const float *src, int64_t n, void *dst) {
    if (n <= 0) return 0;
    if (dtype == MD__DT_F16)
        to_lowp_kernel<MD__DT_F16><<<grid_for(n), TPB, 0, md__cuda_stream()>>>(src, n, (uint16_t *)dst);
    else if (dtype == MD__DT_BF16)
        to_lowp_kernel<MD__DT_BF16><<<grid_for(n), TPB, 0, md__cuda_stream()>>>(src, n, (uint16_t *)dst);
    else
        return md__cuda_fail("cast to a 16-bit float", "dtype %d is not fp16 (4) or bf16 (5)", dtype);
    return check(dtype == MD__DT_F16 ? "cast f32 -> fp16" : "cast f32 -> bf16");
}

extern "C" int md__cuda_from_lowp(int dtype, const void *src, int64_t n, const float *bias, int64_t C, int64_t HW,
                                  float *dst) {
    if (n <= 0) return 0;
    if (bias && (C <= 0 || HW <= 0))
        return md__cuda_fail("cast from a 16-bit float", "bias with C %lld, HW %lld", (long long)C, (long long)HW);
    const uint16_t *s = (const uint16_t *)src;
    if (dtype == MD__DT_F16)
        from_lowp_kernel<MD__DT_F16><<<grid_for(n), TPB, 0, md__cuda_stream()>>>(s, n, bias, C, HW, dst);
    else if (dtype == MD__DT_BF16)
        from_lowp_kernel<MD__DT_BF16><<<grid_for(n), TPB, 0, md__cuda_stream()>>>(s, n, bias, C, HW, dst);
    else
        return md__cuda_fail("cast from a 16-bit float", "dtype %d is not fp16 (4) or bf16 (5)", dtype);
    return check(dtype == MD__DT_F16 ? "cast fp16 -> f32" : "cast bf16 -> f32");
}

/* --------------------------------------------------------- operands -- */

/* 256-byte aligned pieces of one stream-ordered allocation. */
extern "C" int md__cuda_lowp_bufs(const char *op, int count, const int64_t *n, void **out, void **block) {
    size_t off[8], total = 0;
    if (count > 8) return md__cuda_fail(op, "too many operand buffers (%d)", count);
    for (int i = 0; i < count; i++) {
        off[i] = total;
        total += ((size_t)(n[i] > 0 ? n[i] : 0) * 2 + 255) & ~(size_t)255;
    }
    void *p = md__cuda_alloc(total ? total : 256);
    if (!p) {
        char msg[512];
        snprintf(msg, sizeof msg, "%.450s", md__cuda_error());
        return md__cuda_fail(op, "no memory for %zu bytes of 16-bit operands: %s", total, msg);
    }
    for (int i = 0; i < count; i++) out[i] = (char *)p + off[i];
    *block = p;
    return 0;
}

/* The mixed-precision entries of the table. */
extern "C" void md__cuda_table_amp(md_backend *t) {
    t->set_compute_dtype = md__cuda_set_compute_dtype;
    t->unscale_f32_multi = md__cuda_unscale_f32_multi;
}
