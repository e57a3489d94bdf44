/* CUDA element-wise kernels: fill, strided copy, f32 binary and unary ops
 * (forward and backward), in-place add. Each mirrors its CPU kernel in
 * backends/cpu/elementwise.c expression for expression; grid-stride loops
 * with 64-bit indices, everything on the backend's stream. */
#include <stdint.h>
#include <type_traits>
#include "backends/cuda/kernel_util.cuh"
#include "backends/cpu/elementwise_math.h"   /* md__unary_int_value, shared with the CPU */


/* Blocks for n elements of grid-stride work (at least one; capped, the loop covers the rest). */




/* ------------------------------------------------------------------ fill -- */

template <typename T>
__global__ void fill_kernel(T *dst, int64_t n, T v) {
    GRID_STRIDE(i, n) dst[i] = v;
}

template <typename T>
static int fill_t(void *dst, int64_t n, uint64_t bits) {
    fill_kernel<T><<<grid_for(n), TPB, 0, md__cuda_stream()>>>((T *)dst, n, (T)bits);   /* low bytes */
    return md__cuda_check(cudaGetLastError(), "fill") ? -1 : 0;
}

extern "C" int md__cuda_fill(void *dst, int64_t n, size_t elem, uint64_t bits) {
    if (n <= 0) return 0;
    if (elem != 1 && elem != 2 && elem != 4 && elem != 8)
        return md__cuda_fail("fill", "element size %zu is not 1, 2, 4 or 8", elem);
    uint64_t mask = elem == 8 ? ~(uint64_t)0 : (((uint64_t)1 << (8 * elem)) - 1);
    if ((bits & mask) == 0 || elem == 1)   /* every byte alike: a memset */
        return md__cuda_check(cudaMemsetAsync(dst, (int)(bits & 0xff), (size_t)n * elem, md__cuda_stream()),
                              "fill") ? -1 : 0;
    switch (elem) {
    case 2: return fill_t<uint16_t>(dst, n, bits);
    case 4: return fill_t<uint32_t>(dst, n, bits);
    default: return fill_t<uint64_t>(dst, n, bits);
    }
}

/* ---------------------------------------------------------- strided copy -- */

template <typename T>
__global__ void copy_kernel(md__loop L, const T *src, T *dst) {
    GRID_STRIDE(e, L.numel) {
        int64_t off[2];
        loop_offsets<2>(L, e, off);
        dst[off[0]] = src[off[1]];
    }
}

template <typename T>
static int copy_t(const md__loop *L, const void *src, void *dst) {
    copy_kernel<T><<<grid_for(L->numel), TPB, 0, md__cuda_stream()>>>(*L, (const T *)src, (T *)dst);
    return md__cuda_check(cudaGetLastError(), "copy_strided") ? -1 : 0;
}

extern "C" int md__cuda_copy_strided(const md__loop *L, size_t elem, const void *src, void *dst) {
    if (L->numel <= 0) return 0;
    if (L->ndim < 1 || L->ndim > MD_BE_MAX_DIMS || L->nops != 2)
        return md__cuda_fail("copy_strided", "malformed loop (ndim %d, %d operands; want 1..%d and 2)", L->ndim,
                             L->nops, MD_BE_MAX_DIMS);
    if (L->ndim == 1 && L->st[0][0] == 1 && L->st[1][0] == 1)   /* contiguous: one memcpy */
        return md__cuda_check(cudaMemcpyAsync(dst, src, (size_t)L->numel * elem, cudaMemcpyDeviceToDevice,
                                              md__cuda_stream()), "copy_strided") ? -1 : 0;
    switch (elem) {
    case 1: return copy_t<uint8_t>(L, src, dst);
    case 2: return copy_t<uint16_t>(L, src, dst);
    case 4: return copy_t<uint32_t>(L, src, dst);
    case 8: return copy_t<uint64_t>(L, src, dst);
    default: return md__cuda_fail("copy_strided", "element size %zu is not 1, 2, 4 or 8", elem);
    }
}

/* ---------------------------------------------------------------- binary -- */

/* Arithmetic gives f32; comparisons and logic give u8 0/1 (logic on floats:
 * nonzero, NaN included, is true, as C's && and ||). */
template <md__binop OP>
using bin_out_t = typename std::conditional<(OP <= MD_BIN_DIV), float, uint8_t>::type;

template <md__binop OP>
__device__ __forceinline__ bin_out_t<OP> bin_apply(float x, float y) {
    if constexpr (OP == MD_BIN_ADD) return x + y;
    else if constexpr (OP == MD_BIN_SUB) return x - y;
    else if constexpr (OP == MD_BIN_MUL) return x * y;
    else if constexpr (OP == MD_BIN_DIV) return x / y;
    else if constexpr (OP == MD_BIN_GT) return x > y;
    else if constexpr (OP == MD_BIN_GE) return x >= y;
    else if constexpr (OP == MD_BIN_LT) return x < y;
    else if constexpr (OP == MD_BIN_LE) return x <= y;
    else if constexpr (OP == MD_BIN_EQ) return x == y;
    else if constexpr (OP == MD_BIN_NE) return x != y;
    else if constexpr (OP == MD_BIN_AND) return x != 0.0f && y != 0.0f;
    else return x != 0.0f || y != 0.0f;
}

template <md__binop OP>
__global__ void binary_kernel(md__loop L, const float *a, const float *b, bin_out_t<OP> *out) {
    GRID_STRIDE(e, L.numel) {
        int64_t off[3];
        loop_offsets<3>(L, e, off);
        out[off[0]] = bin_apply<OP>(a[off[1]], b[off[2]]);
    }
}

/* Same-shape contiguous f32 operands and output (the residual add, the
 * losses' products): four elements per thread, 16-byte loads and stores. */
template <md__binop OP>
__global__ void binary_vec4_kernel(int64_t n4, const float4 *a, const float4 *b, float4 *out) {
    GRID_STRIDE(i, n4) {
        float4 x = a[i], y = b[i];
        out[i] = make_float4(bin_apply<OP>(x.x, y.x), bin_apply<OP>(x.y, y.y), bin_apply<OP>(x.z, y.z),
                             bin_apply<OP>(x.w, y.w));
    }
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

template <md__binop OP>
static int binary_t(const md__loop *L, const float *a, const float *b, void *out) {
    if constexpr (OP <= MD_BIN_DIV) {
        if (L->ndim == 1 && L->st[0][0] == 1 && L->st[1][0] == 1 && L->st[2][0] == 1 && L->numel % 4 == 0 &&
            aligned16(a) && aligned16(b) && aligned16(out)) {
            int64_t n4 = L->numel / 4;
            binary_vec4_kernel<OP><<<grid_for(n4), TPB, 0, md__cuda_stream()>>>(n4, (const float4 *)a,
                                                                                  (const float4 *)b, (float4 *)out);
            return md__cuda_check(cudaGetLastError(), "binary_f32") ? -1 : 0;
        }
    }
    binary_kernel<OP><<<grid_for(L->numel), TPB, 0, md__cuda_stream()>>>(*L, a, b, (bin_out_t<OP> *)out);
    return md__cuda_check(cudaGetLastError(), "binary_f32") ? -1 : 0;
}

extern "C" int md__cuda_binary_f32(md__binop op, const md__loop *L, const float *a, const float *b, void *out) {
    if (L->numel <= 0) return 0;
    if (L->ndim < 1 || L->ndim > MD_BE_MAX_DIMS || L->nops != 3)
        return md__cuda_fail("binary_f32", "malformed loop (ndim %d, %d operands; want 1..%d and 3)", L->ndim,
                             L->nops, MD_BE_MAX_DIMS);
    switch (op) {
    case MD_BIN_ADD: return binary_t<MD_BIN_ADD>(L, a, b, out);
    case MD_BIN_SUB: return binary_t<MD_BIN_SUB>(L, a, b, out);
    case MD_BIN_MUL: return binary_t<MD_BIN_MUL>(L, a, b, out);
    case MD_BIN_DIV: return binary_t<MD_BIN_DIV>(L, a, b, out);
    case MD_BIN_GT: return binary_t<MD_BIN_GT>(L, a, b, out);
    case MD_BIN_GE: return binary_t<MD_BIN_GE>(L, a, b, out);
    case MD_BIN_LT: return binary_t<MD_BIN_LT>(L, a, b, out);
    case MD_BIN_LE: return binary_t<MD_BIN_LE>(L, a, b, out);
    case MD_BIN_EQ: return binary_t<MD_BIN_EQ>(L, a, b, out);
    case MD_BIN_NE: return binary_t<MD_BIN_NE>(L, a, b, out);
    case MD_BIN_AND: return binary_t<MD_BIN_AND>(L, a, b, out);
    case MD_BIN_OR: return binary_t<MD_BIN_OR>(L, a, b, out);
    default: return md__cuda_fail("binary_f32", "unknown binary op %d", (int)op);
    }
}

/* ----------------------------------------------------------------- unary -- */

/* md__cpu_unary_f32's expressions (p0: scalar, lower bound or exponent; p1: upper bound). */
template <md__unop OP>
__device__ __forceinline__ float un_apply(float v, float p0, float p1) {
    if constexpr (OP == MD_UN_NEG) return -v;
    else if constexpr (OP == MD_UN_RELU) return v > 0.0f || v != v ? v : 0.0f;   /* NaN passes */
    else if constexpr (OP == MD_UN_SIGMOID) return 1.0f / (1.0f + cpu_expf(-v));
    else if constexpr (OP == MD_UN_EXP) return cpu_expf(v);
    else if constexpr (OP == MD_UN_LOG) return logf(v);
    else if constexpr (OP == MD_UN_SQRT) return sqrtf(v);
    else if constexpr (OP == MD_UN_ABS) return fabsf(v);
    else if constexpr (OP == MD_UN_CLAMP) return v != v ? v : (v < p0 ? p0 : (v > p1 ? p1 : v));
    else if constexpr (OP == MD_UN_POW) return p0 == 2.0f ? v * v : (p0 == 0.5f ? sqrtf(v) : powf(v, p0));
    else if constexpr (OP == MD_UN_ADD_SCALAR) return v + p0;
    else if constexpr (OP == MD_UN_MUL_SCALAR) return v * p0;
    else if constexpr (OP == MD_UN_ATAN) return atanf(v);
    else return v == 0.0f ? 1.0f : 0.0f;   /* MD_UN_NOT */
}

template <md__unop OP>
__global__ void unary_kernel(int64_t n, const float *x, float p0, float p1, float *y) {
    GRID_STRIDE(i, n) y[i] = un_apply<OP>(x[i], p0, p1);
}

template <md__unop OP>
__global__ void unary_vec4_kernel(int64_t n4, const float4 *x, float p0, float p1, float4 *y) {
    GRID_STRIDE(i, n4) {
        float4 v = x[i];
        y[i] = make_float4(un_apply<OP>(v.x, p0, p1), un_apply<OP>(v.y, p0, p1), un_apply<OP>(v.z, p0, p1),
                           un_apply<OP>(v.w, p0, p1));
    }
}

template <md__unop OP>
static int unary_t(int64_t n, const float *x, float p0, float p1, float *y) {
    if (n % 4 == 0 && aligned16(x) && aligned16(y)) {   /* 16-byte loads and stores */
        unary_vec4_kernel<OP><<<grid_for(n / 4), TPB, 0, md__cuda_stream()>>>(n / 4, (const float4 *)x, p0, p1,
                                                                              (float4 *)y);
    } else {
        unary_kernel<OP><<<grid_for(n), TPB, 0, md__cuda_stream()>>>(n, x, p0, p1, y);
    }
    return md__cuda_check(cudaGetLastError(), "unary_f32") ? -1 : 0;
}

extern "C" int md__cuda_unary_f32(md__unop op, int64_t n, const float *x, float p0, float p1, float *y) {
    if (n <= 0) return 0;
    switch (op) {
    case MD_UN_NEG: return unary_t<MD_UN_NEG>(n, x, p0, p1, y);
    case MD_UN_RELU: return unary_t<MD_UN_RELU>(n, x, p0, p1, y);
    case MD_UN_SIGMOID: return unary_t<MD_UN_SIGMOID>(n, x, p0, p1, y);
    case MD_UN_EXP: return unary_t<MD_UN_EXP>(n, x, p0, p1, y);
    case MD_UN_LOG: return unary_t<MD_UN_LOG>(n, x, p0, p1, y);
    case MD_UN_SQRT: return unary_t<MD_UN_SQRT>(n, x, p0, p1, y);
    case MD_UN_ABS: return unary_t<MD_UN_ABS>(n, x, p0, p1, y);
    case MD_UN_CLAMP: return unary_t<MD_UN_CLAMP>(n, x, p0, p1, y);
    case MD_UN_POW: return unary_t<MD_UN_POW>(n, x, p0, p1, y);
    case MD_UN_ADD_SCALAR: return unary_t<MD_UN_ADD_SCALAR>(n, x, p0, p1, y);
    case MD_UN_MUL_SCALAR: return unary_t<MD_UN_MUL_SCALAR>(n, x, p0, p1, y);
    case MD_UN_NOT: return unary_t<MD_UN_NOT>(n, x, p0, p1, y);
    case MD_UN_ATAN: return unary_t<MD_UN_ATAN>(n, x, p0, p1, y);
    default: return md__cuda_fail("unary_f32", "unknown unary op %d", (int)op);
    }
}

/* md__cpu_unary_int: the shared md__unary_int_value per element, in double. */
template <typename T>
__global__ void unary_int_kernel(md__unop op, int64_t n, const T *x, double p0, double p1, T *y) {
    GRID_STRIDE(i, n) y[i] = (T)md__unary_int_value(op, (double)x[i], p0, p1);
}

template <typename T>
static int unary_int_t(md__unop op, int64_t n, const void *x, double p0, double p1, void *y) {
    unary_int_kernel<T><<<grid_for(n), TPB, 0, md__cuda_stream()>>>(op, n, (const T *)x, p0, p1, (T *)y);
    return check("unary_int");
}

extern "C" int md__cuda_unary_int(md__unop op, int dtype, int64_t n, const void *x, double p0, double p1, void *y) {
    if (!md__unary_int_ok(op)) return md__cuda_fail("unary_int", "unary op %d has no integer form", (int)op);
    if (n <= 0) return 0;
    switch (dtype) {
    case 1: return unary_int_t<int64_t>(op, n, x, p0, p1, y);
    case 2: return unary_int_t<int32_t>(op, n, x, p0, p1, y);
    case 3: return unary_int_t<uint8_t>(op, n, x, p0, p1, y);
    default: return md__cuda_fail("unary_int", "dtype %d is not i64, i32 or u8", dtype);
    }
}

/* md__cpu_unary_f32_backward's expressions: gx from g, the input x and the output y. */
template <md__unop OP>
__device__ __forceinline__ float un_grad(float gi, float x, float y, float p0, float p1) {
    (void)p1;
    if constexpr (OP == MD_UN_NEG) return -gi;
    else if constexpr (OP == MD_UN_RELU) return y > 0.0f ? gi : 0.0f;
    else if constexpr (OP == MD_UN_SIGMOID) return gi * y * (1.0f - y);
    else if constexpr (OP == MD_UN_EXP) return gi * y;
    else if constexpr (OP == MD_UN_LOG) return gi / x;
    else if constexpr (OP == MD_UN_SQRT) return gi * 0.5f / y;
    else if constexpr (OP == MD_UN_ABS) return x > 0.0f ? gi : (x < 0.0f ? -gi : 0.0f);   /* sign(0) = 0 */
    else if constexpr (OP == MD_UN_CLAMP) return x >= p0 && x <= p1 ? gi : 0.0f;          /* bounds pass */
    else if constexpr (OP == MD_UN_POW)
        return p0 == 0.0f ? 0.0f : (p0 == 2.0f ? 2.0f * gi * x : gi * p0 * powf(x, p0 - 1.0f));
    else if constexpr (OP == MD_UN_ADD_SCALAR) return gi;
    else if constexpr (OP == MD_UN_MUL_SCALAR) return gi * p0;
    else if constexpr (OP == MD_UN_ATAN) return gi / (1.0f + x * x);
    else return 0.0f;   /* MD_UN_NOT */
}

/* x or y may be NULL where the op's gradient does not read it. */
template <md__unop OP>
__global__ void unary_bw_kernel(int64_t n, const float *x, const float *y, const float *g, float p0, float p1,
                                float *gx) {
    GRID_STRIDE(i, n) {
        constexpr bool needx = OP == MD_UN_LOG || OP == MD_UN_ABS || OP == MD_UN_CLAMP || OP == MD_UN_POW ||
                               OP == MD_UN_ATAN;
        constexpr bool needy = OP == MD_UN_RELU || OP == MD_UN_SIGMOID || OP == MD_UN_EXP || OP == MD_UN_SQRT;
        float xi = needx ? x[i] : 0.0f, yi = needy ? y[i] : 0.0f;
        gx[i] = un_grad<OP>(g[i], xi, yi, p0, p1);
    }
}

template <md__unop OP>
static int unary_bw_t(int64_t n, const float *x, const float *y, const float *g, float p0, float p1, float *gx) {
    unary_bw_kernel<OP><<<grid_for(n), TPB, 0, md__cuda_stream()>>>(n, x, y, g, p0, p1, gx);
    return md__cuda_check(cudaGetLastError(), "unary_f32_backward") ? -1 : 0;
}

extern "C" int md__cuda_unary_f32_backward(md__unop op, int64_t n, const float *x, const float *y, const float *g,
                                           float p0, float p1, float *gx) {
    if (n <= 0) return 0;
    switch (op) {
    case MD_UN_NEG: return unary_bw_t<MD_UN_NEG>(n, x, y, g, p0, p1, gx);
    case MD_UN_RELU: return unary_bw_t<MD_UN_RELU>(n, x, y, g, p0, p1, gx);
    case MD_UN_SIGMOID: return unary_bw_t<MD_UN_SIGMOID>(n, x, y, g, p0, p1, gx);
    case MD_UN_EXP: return unary_bw_t<MD_UN_EXP>(n, x, y, g, p0, p1, gx);
    case MD_UN_LOG: return unary_bw_t<MD_UN_LOG>(n, x, y, g, p0, p1, gx);
    case MD_UN_SQRT: return unary_bw_t<MD_UN_SQRT>(n, x, y, g, p0, p1, gx);
    case MD_UN_ABS: return unary_bw_t<MD_UN_ABS>(n, x, y, g, p0, p1, gx);
    case MD_UN_CLAMP: return unary_bw_t<MD_UN_CLAMP>(n, x, y, g, p0, p1, gx);
    case MD_UN_POW: return unary_bw_t<MD_UN_POW>(n, x, y, g, p0, p1, gx);
    case MD_UN_ADD_SCALAR: return unary_bw_t<MD_UN_ADD_SCALAR>(n, x, y, g, p0, p1, gx);
    case MD_UN_MUL_SCALAR: return unary_bw_t<MD_UN_MUL_SCALAR>(n, x, y, g, p0, p1, gx);
    case MD_UN_NOT: return unary_bw_t<MD_UN_NOT>(n, x, y, g, p0, p1, gx);
    case MD_UN_ATAN: return unary_bw_t<MD_UN_ATAN>(n, x, y, g, p0, p1, gx);
    default: return md__cuda_fail("unary_f32_backward", "unknown unary op %d", (int)op);
    }
}

/* ------------------------------------------------------------ in-place add -- */

/* float4 where both pointers are 16-byte aligned (cudaMalloc's are), the tail scalar. */
__global__ void add_inplace_vec_kernel(float4 *dst, const float4 *src, int64_t n4) {
    GRID_STRIDE(i, n4) {
        float4 d = dst[i], s = src[i];
        d.x += s.x;
        d.y += s.y;
        d.z += s.z;
        d.w += s.w;
        dst[i] = d;
    }
}

__global__ void add_inplace_kernel(float *dst, const float *src, int64_t n) {
    GRID_STRIDE(i, n) dst[i] += src[i];
}

extern "C" int md__cuda_add_inplace_f32(float *dst, const float *src, int64_t n) {
    if (n <= 0) return 0;
    int64_t done = 0;
    if (((uintptr_t)dst % 16) == 0 && ((uintptr_t)src % 16) == 0 && n >= 4) {
        int64_t n4 = n / 4;
        add_inplace_vec_kernel<<<grid_for(n4), TPB, 0, md__cuda_stream()>>>((float4 *)dst, (const float4 *)src, n4);
        if (md__cuda_check(cudaGetLastError(), "add_inplace_f32")) return -1;
        done = n4 * 4;
    }
    if (done < n) {
        add_inplace_kernel<<<grid_for(n - done), TPB, 0, md__cuda_stream()>>>(dst + done, src + done, n - done);
        if (md__cuda_check(cudaGetLastError(), "add_inplace_f32")) return -1;
    }
    return 0;
}
