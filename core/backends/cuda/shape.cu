/* CUDA kernels of the shape family: casts, integer binary ops, scalar
 * comparisons and where (backends/cpu/elementwise.c); integer sums, max /
 * argmax, softmax (backends/cpu/reduce.c); group norm (backends/cpu/norm.c);
 * nearest resize (backends/cpu/pool.c). Indexing is in index.cu.
 *
 * Everything is deterministic: sums run in an order fixed by the shape alone
 * (no atomics), so the same input gives the same bits on every run. Where
 * the CPU adds serially (nearest backward, max backward, integer sums) the
 * GPU adds the same terms in the same order and so gives the CPU's bits;
 * softmax and group-norm statistics accumulate in double (as the CPU) in a
 * different but fixed order. Grid-stride loops with 64-bit indices, all on
 * the backend's stream. */
#include <math.h>
#include <stdint.h>
#include <type_traits>
#include "backends/cuda/kernel_util.cuh"



static unsigned blocks_for(int64_t n) { return (unsigned)(n < 1 ? 1 : (n > (1 << 20) ? (1 << 20) : n)); }





/* ------------------------------------------------------------------ cast -- */

template <typename TS, typename TD>
__global__ void cast_kernel(int64_t n, const TS *s, TD *d) {
    GRID_STRIDE(i, n) {
        TS v = s[i];
        if constexpr (sizeof(TD) == 1 && !std::is_same<TS, uint8_t>::value) d[i] = (TD)(int64_t)v;   /* as the CPU */
        else d[i] = (TD)v;
    }
}

template <typename TS>
static int cast_from(int to, int64_t n, const void *src, void *dst) {
    cudaStream_t st = md__cuda_stream();
    const TS *s = (const TS *)src;
    switch (to) {
    case 0: cast_kernel<TS, float><<<grid_for(n), TPB, 0, st>>>(n, s, (float *)dst); break;
    case 1: cast_kernel<TS, int64_t><<<grid_for(n), TPB, 0, st>>>(n, s, (int64_t *)dst); break;
    case 2: cast_kernel<TS, int32_t><<<grid_for(n), TPB, 0, st>>>(n, s, (int32_t *)dst); break;
    case 3: cast_kernel<TS, uint8_t><<<grid_for(n), TPB, 0, st>>>(n, s, (uint8_t *)dst); break;
    default: return md__cuda_fail("cast", "unknown target dtype %d", to);
    }
    return check("cast");
}

extern "C" int md__cuda_cast(int from, int to, int64_t n, const void *src, void *dst) {
    if (n <= 0) return 0;
    switch (from) {
    case 0: return cast_from<float>(to, n, src, dst);
    case 1: return cast_from<int64_t>(to, n, src, dst);
    case 2: return cast_from<int32_t>(to, n, src, dst);
    case 3: return cast_from<uint8_t>(to, n, src, dst);
    default: return md__cuda_fail("cast", "unknown source dtype %d", from);
    }
}

/* ---------------------------------------------------- integer binary ops -- */

template <typename T, int OP>
__global__ void binary_int_kernel(md__loop L, const T *a, const T *b, void *out) {
    GRID_STRIDE(e, L.numel) {
        int64_t off[3];
        loop_offsets<3>(L, e, off);
        T x = a[off[1]], y = b[off[2]];
        if constexpr (OP == MD_BIN_ADD) ((T *)out)[off[0]] = (T)(x + y);
        else if constexpr (OP == MD_BIN_SUB) ((T *)out)[off[0]] = (T)(x - y);
        else if constexpr (OP == MD_BIN_MUL) ((T *)out)[off[0]] = (T)(x * y);
        else {
            uint8_t r;
            if constexpr (OP == MD_BIN_GT) r = x > y;
            else if constexpr (OP == MD_BIN_GE) r = x >= y;
            else if constexpr (OP == MD_BIN_LT) r = x < y;
            else if constexpr (OP == MD_BIN_LE) r = x <= y;
            else if constexpr (OP == MD_BIN_EQ) r = x == y;
            else if constexpr (OP == MD_BIN_NE) r = x != y;
            else if constexpr (OP == MD_BIN_AND) r = x && y;
            else r = x || y;
            ((uint8_t *)out)[off[0]] = r;
        }
    }
}

template <typename T, int OP>
static int bin_int_t(const md__loop *L, const void *a, const void *b, void *out) {
    binary_int_kernel<T, OP><<<grid_for(L->numel), TPB, 0, md__cuda_stream()>>>(*L, (const T *)a, (const T *)b, out);
    return check("binary_int");
}

template <typename T>
static int bin_int_cmp(md__binop op, const md__loop *L, const void *a, const void *b, void *out) {
    switch (op) {
    case MD_BIN_GT: return bin_int_t<T, MD_BIN_GT>(L, a, b, out);
    case MD_BIN_GE: return bin_int_t<T, MD_BIN_GE>(L, a, b, out);
    case MD_BIN_LT: return bin_int_t<T, MD_BIN_LT>(L, a, b, out);
    case MD_BIN_LE: return bin_int_t<T, MD_BIN_LE>(L, a, b, out);
    case MD_BIN_EQ: return bin_int_t<T, MD_BIN_EQ>(L, a, b, out);
    case MD_BIN_NE: return bin_int_t<T, MD_BIN_NE>(L, a, b, out);
    default: return 1;   /* not a comparison */
    }
}

template <typename T>
static int bin_int_arith(md__binop op, const md__loop *L, const void *a, const void *b, void *out) {
    switch (op) {
    case MD_BIN_ADD: return bin_int_t<T, MD_BIN_ADD>(L, a, b, out);
    case MD_BIN_SUB: return bin_int_t<T, MD_BIN_SUB>(L, a, b, out);
    case MD_BIN_MUL: return bin_int_t<T, MD_BIN_MUL>(L, a, b, out);
    default: return bin_int_cmp<T>(op, L, a, b, out);
    }
}

extern "C" int md__cuda_binary_int(md__binop op, int dtype, const md__loop *L, const void *a, const void *b,
                                   void *out) {
    if (L->numel <= 0) return 0;
    if (L->ndim < 1 || L->ndim > MD_BE_MAX_DIMS || L->nops != 3)
        return md__cuda_fail("binary_int", "malformed loop (ndim %d, %d operands)", L->ndim, L->nops);
    int r = 1;
    switch (dtype) {
    case 1: r = bin_int_arith<int64_t>(op, L, a, b, out); break;
    case 2: r = bin_int_arith<int32_t>(op, L, a, b, out); break;
    case 3:
        if (op == MD_BIN_AND) r = bin_int_t<uint8_t, MD_BIN_AND>(L, a, b, out);
        else if (op == MD_BIN_OR) r = bin_int_t<uint8_t, MD_BIN_OR>(L, a, b, out);
        else r = bin_int_cmp<uint8_t>(op, L, a, b, out);
        break;
    default: break;
    }
    if (r == 1) return md__cuda_fail("binary_int", "op %d unsupported for dtype %d", (int)op, dtype);
    return r;
}

/* ---------------------------------------------------- scalar comparisons -- */

template <typename T, typename S>
__global__ void cmp_scalar_kernel(md__binop op, int64_t n, const T *x, S s, uint8_t *out) {
    GRID_STRIDE(i, n) {
        S v = (S)x[i];
        uint8_t r;
        switch (op) {
        case MD_BIN_GT: r = v > s; break;
        case MD_BIN_GE: r = v >= s; break;
        case MD_BIN_LT: r = v < s; break;
        case MD_BIN_LE: r = v <= s; break;
        case MD_BIN_EQ: r = v == s; break;
        default: r = v != s; break;
        }
        out[i] = r;
    }
}

extern "C" int md__cuda_compare_scalar(md__binop op, int dtype, int64_t n, const void *x, double s, uint8_t *out) {
    if (op < MD_BIN_GT || op > MD_BIN_NE) return md__cuda_fail("compare_scalar", "op %d is not a comparison", (int)op);
    if (n <= 0) return 0;
    cudaStream_t st = md__cuda_stream();
    switch (dtype) {
    case 0: cmp_scalar_kernel<float, float><<<grid_for(n), TPB, 0, st>>>(op, n, (const float *)x, (float)s, out); break;
    case 1: cmp_scalar_kernel<int64_t, double><<<grid_for(n), TPB, 0, st>>>(op, n, (const int64_t *)x, s, out); break;
    case 2: cmp_scalar_kernel<int32_t, double><<<grid_for(n), TPB, 0, st>>>(op, n, (const int32_t *)x, s, out); break;
    case 3: cmp_scalar_kernel<uint8_t, double><<<grid_for(n), TPB, 0, st>>>(op, n, (const uint8_t *)x, s, out); break;
    default: return md__cuda_fail("compare_scalar", "unknown dtype %d", dtype);
    }
    return check("compare_scalar");
}

/* ------------------------------------------------------------------ where -- */

template <typename T>
__global__ void where_kernel(md__loop L, const uint8_t *c, const T *a, const T *b, T *out) {
    GRID_STRIDE(e, L.numel) {
        int64_t off[4];
        loop_offsets<4>(L, e, off);
        out[off[0]] = c[off[1]] ? a[off[2]] : b[off[3]];
    }
}

template <typename T>
static int where_t(const md__loop *L, const uint8_t *c, const void *a, const void *b, void *out) {
    where_kernel<T><<<grid_for(L->numel), TPB, 0, md__cuda_stream()>>>(*L, c, (const T *)a, (const T *)b, (T *)out);
    return check("where");
}

extern "C" int md__cuda_where(const md__loop *L, size_t elem, const uint8_t *cond, const void *a, const void *b,
                              void *out) {
    if (L->numel <= 0) return 0;
    if (L->ndim < 1 || L->ndim > MD_BE_MAX_DIMS || L->nops != 4)
        return md__cuda_fail("where", "malformed loop (ndim %d, %d operands)", L->ndim, L->nops);
    switch (elem) {
    case 1: return where_t<uint8_t>(L, cond, a, b, out);
    case 2: return where_t<uint16_t>(L, cond, a, b, out);
    case 4: return where_t<uint32_t>(L, cond, a, b, out);
    case 8: return where_t<uint64_t>(L, cond, a, b, out);
    default: return md__cuda_fail("where", "element size %zu is not 1, 2, 4 or 8", elem);
    }
}

/* ------------------------------------------------------------ reductions -- */

/* One thread per output, i in order: the CPU's additions. */
template <typename T>
__global__ void sum_int_kernel(const T *x, int64_t outer, int64_t n, int64_t inner, int64_t *out) {
    GRID_STRIDE(r, outer * inner) {
        int64_t o = r / inner, j = r % inner, s = 0;
        const T *p = x + o * n * inner + j;
        for (int64_t i = 0; i < n; i++) s += (int64_t)p[i * inner];
        out[r] = s;
    }
}

extern "C" int md__cuda_sum_int(int dtype, const void *x, int64_t outer, int64_t n, int64_t inner, int64_t *out) {
    int64_t m = outer * inner;
    if (m <= 0) return 0;
    cudaStream_t st = md__cuda_stream();
    switch (dtype) {
    case 1: sum_int_kernel<<<grid_for(m), TPB, 0, st>>>((const int64_t *)x, outer, n, inner, out); break;
    case 2: sum_int_kernel<<<grid_for(m), TPB, 0, st>>>((const int32_t *)x, outer, n, inner, out); break;
    case 3: sum_int_kernel<<<grid_for(m), TPB, 0, st>>>((const uint8_t *)x, outer, n, inner, out); break;
    default: return md__cuda_fail("sum_int", "dtype %d is not an integer type", dtype);
    }
    return check("sum_int");
}

template <typename T>
__device__ __forceinline__ bool is_nan(T v) {
    if constexpr (std::is_same<T, float>::value) return v != v;
    else return false;
}

/* MAX_T of backends/cpu/reduce.c: first maximum, a NaN wins and stops. */
template <typename T>
__global__ void max_kernel(const T *x, int64_t outer, int64_t n, int64_t inner, T *vals, int64_t *idx) {
    GRID_STRIDE(r, outer * inner) {
        int64_t o = r / inner, j = r % inner;
        const T *q = x + o * n * inner + j;
        T best = q[0];
        int64_t bi = 0;
        for (int64_t i = 1; i < n && !is_nan(best); i++) {
            T c = q[i * inner];
            if (c > best || is_nan(c)) {
                best = c;
                bi = i;
            }
        }
        if (vals) vals[r] = best;
        if (idx) idx[r] = bi;
    }
}

template <typename T>
static int max_t(const void *x, int64_t outer, int64_t n, int64_t inner, void *vals, int64_t *idx) {
    max_kernel<T><<<grid_for(outer * inner), TPB, 0, md__cuda_stream()>>>((const T *)x, outer, n, inner, (T *)vals,
                                                                            idx);
    return check("max");
}

extern "C" int md__cuda_max(int dtype, const void *x, int64_t outer, int64_t n, int64_t inner, void *vals,
                            int64_t *idx) {
    if (outer * inner <= 0) return 0;
    if (n < 1) return md__cuda_fail("max", "empty reduced dimension");
    switch (dtype) {
    case 0: return max_t<float>(x, outer, n, inner, vals, idx);
    case 1: return max_t<int64_t>(x, outer, n, inner, vals, idx);
    case 2: return max_t<int32_t>(x, outer, n, inner, vals, idx);
    case 3: return max_t<uint8_t>(x, outer, n, inner, vals, idx);
    default: return md__cuda_fail("max", "unknown dtype %d", dtype);
    }
}

/* Every (o, j) has its own target: no two threads write one element. */
__global__ void max_bw_kernel(const float *g, const int64_t *idx, int64_t outer, int64_t n, int64_t inner, float *gx) {
    GRID_STRIDE(r, outer * inner) {
        int64_t o = r / inner, j = r % inner;
        gx[(o * n + idx[r]) * inner + j] += g[r];
    }
}

extern "C" int md__cuda_max_backward_f32(const float *g, const int64_t *idx, int64_t outer, int64_t n,
                                         int64_t inner, float *gx) {
    if (outer * inner <= 0) return 0;
    max_bw_kernel<<<grid_for(outer * inner), TPB, 0, md__cuda_stream()>>>(g, idx, outer, n, inner, gx);
    return check("max_backward_f32");
}

/* --------------------------------------------------------------- softmax -- */

__device__ __forceinline__ double warp_sum(double v) {
    for (int s = 16; s > 0; s >>= 1) v += __shfl_xor_sync(0xffffffffu, v, s);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int s = 16; s > 0; s >>= 1) {
        float o = __shfl_xor_sync(0xffffffffu, v, s);
        v = o > v ? o : v;
    }
    return v;
}

/* inner == 1: one warp per row (rows are short: class scores), lanes take
 * every 32nd element; the max ignores NaN as the CPU's `p > m ? p : m`. */
__global__ void softmax_rows_kernel(const float *x, int64_t outer, int64_t n, bool log, float *y) {
    int lane = threadIdx.x & 31;
    int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    for (int64_t o = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; o < outer; o += warps) {
        const float *p = x + o * n;
        float *q = y + o * n;
        float m = -INFINITY;
        for (int64_t i = lane; i < n; i += 32) m = p[i] > m ? p[i] : m;
        m = warp_max(m);
        double s = 0;
        for (int64_t i = lane; i < n; i += 32) {
            float e = cpu_expf(__fsub_rn(p[i], m));
            if (!log) q[i] = e;
            s += e;
        }
        s = warp_sum(s);
        if (log) {
            float ls = __fadd_rn(logf((float)s), m);
            for (int64_t i = lane; i < n; i += 32) q[i] = __fsub_rn(p[i], ls);
        } else {
            float inv = (float)(1.0 / s);
            for (int64_t i = lane; i < n; i += 32) q[i] = __fmul_rn(q[i], inv);
        }
    }
}

/* inner > 1: one thread per (o, j), the CPU's loop as written. */
__global__ void softmax_cols_kernel(const float *x, int64_t outer, int64_t n, int64_t inner, bool log, float *y) {
    GRID_STRIDE(r, outer * inner) {
        int64_t o = r / inner, j = r % inner;
        const float *p = x + o * n * inner + j;
        float *q = y + o * n * inner + j;
        float m = -INFINITY;
        for (int64_t i = 0; i < n; i++) m = p[i * inner] > m ? p[i * inner] : m;
        double s = 0;
        if (log) {
            for (int64_t i = 0; i < n; i++) s += cpu_expf(__fsub_rn(p[i * inner], m));
            float ls = __fadd_rn(logf((float)s), m);
            for (int64_t i = 0; i < n; i++) q[i * inner] = __fsub_rn(p[i * inner], ls);
        } else {
            for (int64_t i = 0; i < n; i++) {
                q[i * inner] = cpu_expf(__fsub_rn(p[i * inner], m));
                s += q[i * inner];
            }
            float inv = (float)(1.0 / s);
            for (int64_t i = 0; i < n; i++) q[i * inner] = __fmul_rn(q[i * inner], inv);
        }
    }
}

extern "C" int md__cuda_softmax_f32(const float *x, int64_t outer, int64_t n, int64_t inner, bool log, float *y) {
    if (outer * n * inner <= 0) return 0;
    if (inner == 1) {
        softmax_rows_kernel<<<blocks_for((outer + TPB / 32 - 1) / (TPB / 32)), TPB, 0, md__cuda_stream()>>>(x, outer, n,
                                                                                                         log, y);
        return check("softmax_f32 (rows)");
    }
    softmax_cols_kernel<<<grid_for(outer * inner), TPB, 0, md__cuda_stream()>>>(x, outer, n, inner, log, y);
    return check("softmax_f32 (columns)");
}

/* gx = y (g - sum g y) or, for log-softmax, g - exp(y) sum g. */
__global__ void softmax_bw_rows_kernel(const float *y, const float *g, int64_t outer, int64_t n, bool log, float *gx) {
    int lane = threadIdx.x & 31;
    int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    for (int64_t o = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; o < outer; o += warps) {
        const float *yp = y + o * n, *gp = g + o * n;
        float *out = gx + o * n;
        double s = 0;
        for (int64_t i = lane; i < n; i += 32) s += log ? (double)gp[i] : (double)gp[i] * yp[i];
        float sf = (float)warp_sum(s);
        for (int64_t i = lane; i < n; i += 32)
            out[i] = log ? __fsub_rn(gp[i], __fmul_rn(cpu_expf(yp[i]), sf)) : __fmul_rn(yp[i], __fsub_rn(gp[i], sf));
    }
}

__global__ void softmax_bw_cols_kernel(const float *y, const float *g, int64_t outer, int64_t n, int64_t inner,
                                       bool log, float *gx) {
    GRID_STRIDE(r, outer * inner) {
        int64_t o = r / inner, j = r % inner, base = o * n * inner + j;
        double s = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t k = base + i * inner;
            s += log ? (double)g[k] : (double)g[k] * y[k];
        }
        float sf = (float)s;
        for (int64_t i = 0; i < n; i++) {
            int64_t k = base + i * inner;
            gx[k] = log ? __fsub_rn(g[k], __fmul_rn(cpu_expf(y[k]), sf)) : __fmul_rn(y[k], __fsub_rn(g[k], sf));
        }
    }
}

extern "C" int md__cuda_softmax_backward_f32(const float *y, const float *g, int64_t outer, int64_t n, int64_t inner,
                                             bool log, float *gx) {
    if (outer * n * inner <= 0) return 0;
    if (inner == 1) {
        softmax_bw_rows_kernel<<<blocks_for((outer + TPB / 32 - 1) / (TPB / 32)), TPB, 0, md__cuda_stream()>>>(
            y, g, outer, n, log, gx);
        return check("softmax_backward_f32 (rows)");
    }
    softmax_bw_cols_kernel<<<grid_for(outer * inner), TPB, 0, md__cuda_stream()>>>(y, g, outer, n, inner, log, gx);
    return check("softmax_backward_f32 (columns)");
}

/* ------------------------------------------------------------ group norm -- */

/* Sum over the block's TPB threads (fixed tree), every thread gets it. */
__device__ __forceinline__ double block_sum(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = TPB / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

/* One block per (n, g): its D * HW elements are contiguous. Mean, then the
 * variance about it, both in double (two passes: no cancellation); y as the
 * CPU: (x - (float)mean) * (float)(rstd w) + b, no fused multiply-add. */
__global__ void gn_forward_kernel(const float *x, int64_t C, int64_t HW, int64_t G, const float *w, const float *b,
                                  double eps, float *y, double *mean, double *rstd) {
    __shared__ double sh[TPB];
    int64_t ng = blockIdx.x, D = C / G, M = D * HW;
    const float *p = x + ng * M;
    double s = 0;
    for (int64_t k = threadIdx.x; k < M; k += TPB) s += (double)p[k];
    double m = block_sum(s, sh) / (double)M;
    double q = 0;
    for (int64_t k = threadIdx.x; k < M; k += TPB) {
        double d = (double)p[k] - m;
        q += d * d;
    }
    double var = block_sum(q, sh) / (double)M;
    double r = 1.0 / sqrt((var > 0 ? var : 0) + eps);
    if (threadIdx.x == 0) {
        mean[ng] = m;
        rstd[ng] = r;
    }
    float mf = (float)m;
    int64_t g = ng % G;
    float *out = y + ng * M;
    for (int64_t k = threadIdx.x; k < M; k += TPB) {
        int64_t c = g * D + k / HW;
        float scale = (float)(r * (w ? (double)w[c] : 1.0)), shift = b ? b[c] : 0.0f;
        out[k] = __fadd_rn(__fmul_rn(__fsub_rn(p[k], mf), scale), shift);
    }
}

extern "C" int md__cuda_group_norm_forward(const float *x, int64_t N, int64_t C, int64_t HW, int64_t G,
                                           const float *w, const float *b, double eps, float *y, double *mean,
                                           double *rstd) {
    if (N * C * HW <= 0) return 0;
    if (G < 1 || C % G) return md__cuda_fail("group_norm_forward", "%lld groups for %lld channels", (long long)G,
                                             (long long)C);
    if (N * G > (int64_t)INT32_MAX) return md__cuda_fail("group_norm_forward", "too many groups");
    gn_forward_kernel<<<(unsigned)(N * G), TPB, 0, md__cuda_stream()>>>(x, C, HW, G, w, b, eps, y, mean, rstd);
    return check("group_norm_forward");
}

/* One block per (n, c): a = sum gy, bb = sum gy (x - mean) in double. */
__global__ void gn_channel_sums_kernel(const float *x, const float *gy, int64_t C, int64_t HW, int64_t G,
                                       const double *mean, double *sg, double *sdx) {
    __shared__ double sh[TPB];
    int64_t nc = blockIdx.x, n = nc / C, c = nc % C, D = C / G;
    double md = mean[n * G + c / D];
    const float *p = x + nc * HW, *q = gy + nc * HW;
    double a = 0, bb = 0;
    for (int64_t k = threadIdx.x; k < HW; k += TPB) {
        a += (double)q[k];
        bb += (double)q[k] * ((double)p[k] - md);
    }
    a = block_sum(a, sh);
    bb = block_sum(bb, sh);
    if (threadIdx.x == 0) {
        sg[nc] = a;
        sdx[nc] = bb;
    }
}

/* Per (n, g), channels in order: c2 = -rstd^3 B / M, c3 = -rstd A / M. */
__global__ void gn_group_coef_kernel(const double *sg, const double *sdx, const float *w, int64_t N, int64_t C,
                                     int64_t HW, int64_t G, const double *rstd, double *coef) {
    GRID_STRIDE(ng, N * G) {
        int64_t n = ng / G, g = ng % G, D = C / G;
        double A = 0, B = 0;
        for (int64_t d = 0; d < D; d++) {
            int64_t c = g * D + d;
            double wc = w ? (double)w[c] : 1.0;
            A += wc * sg[n * C + c];
            B += wc * sdx[n * C + c];
        }
        double r = rstd[ng], M = (double)(D * HW);
        coef[2 * ng] = -r * r * r * B / M;
        coef[2 * ng + 1] = -r * A / M;
    }
}

/* gx = rstd w gy + c2 (x - mean) + c3, in double. */
__global__ void gn_gx_kernel(const float *x, const float *gy, int64_t N, int64_t C, int64_t HW, int64_t G,
                             const double *mean, const double *rstd, const float *w, const double *coef, float *gx) {
    GRID_STRIDE(e, N * C * HW) {
        int64_t nc = e / HW, n = nc / C, c = nc % C, ng = n * G + c / (C / G);
        double k1 = rstd[ng] * (w ? (double)w[c] : 1.0);
        gx[e] = (float)(k1 * (double)gy[e] + coef[2 * ng] * ((double)x[e] - mean[ng]) + coef[2 * ng + 1]);
    }
}

/* gw[c] = sum_n sdx rstd, gb[c] = sum_n sg, over n in order as the CPU. */
__global__ void gn_affine_kernel(const double *sg, const double *sdx, int64_t N, int64_t C, int64_t G,
                                 const double *rstd, float *gw, float *gb) {
    GRID_STRIDE(c, C) {
        double sw = 0, sb = 0;
        for (int64_t n = 0; n < N; n++) {
            sw += sdx[n * C + c] * rstd[n * G + c / (C / G)];
            sb += sg[n * C + c];
        }
        if (gw) gw[c] = (float)sw;
        if (gb) gb[c] = (float)sb;
    }
}

extern "C" int md__cuda_group_norm_backward(const float *x, const float *gy, int64_t N, int64_t C, int64_t HW,
                                            int64_t G, const double *mean, const double *rstd, const float *w,
                                            float *gx, float *gw, float *gb) {
    if (N * C * HW <= 0) return 0;
    if (G < 1 || C % G) return md__cuda_fail("group_norm_backward", "%lld groups for %lld channels", (long long)G,
                                             (long long)C);
    if (N * C > (int64_t)INT32_MAX) return md__cuda_fail("group_norm_backward", "too many channels");
    double *sg = (double *)md__cuda_scratch(sizeof(double) * (size_t)(2 * N * C + 2 * N * G));
    if (!sg) return -1;
    double *sdx = sg + N * C, *coef = sdx + N * C;
    cudaStream_t st = md__cuda_stream();
    gn_channel_sums_kernel<<<(unsigned)(N * C), TPB, 0, st>>>(x, gy, C, HW, G, mean, sg, sdx);
    if (check("group_norm_backward (channel sums)")) return -1;
    if (gx) {
        gn_group_coef_kernel<<<grid_for(N * G), TPB, 0, st>>>(sg, sdx, w, N, C, HW, G, rstd, coef);
        if (check("group_norm_backward (coefficients)")) return -1;
        gn_gx_kernel<<<grid_for(N * C * HW), TPB, 0, st>>>(x, gy, N, C, HW, G, mean, rstd, w, coef, gx);
        if (check("group_norm_backward (gx)")) return -1;
    }
    if (gw || gb) {
        gn_affine_kernel<<<grid_for(C), TPB, 0, st>>>(sg, sdx, N, C, G, rstd, gw, gb);
        if (check("group_norm_backward (weight, bias)")) return -1;
    }
    return 0;
}

/* --------------------------------------------------------------- nearest -- */

/* core/ops/op_pool.c's nearest_map for output o (non-decreasing in o). */
__device__ __forceinline__ int64_t nearest_src(int64_t o, int64_t in, int64_t out, float scale) {
    if (out == in) return o;
    if (out == 2 * in) return o >> 1;
    int64_t s = (int64_t)floorf(__fmul_rn((float)o, scale));
    return s < in - 1 ? s : in - 1;
}

/* The first output whose source is >= v (out when none): the outputs read
 * from v are [first(v), first(v + 1)). */
__device__ __forceinline__ int64_t nearest_first(int64_t v, int64_t in, int64_t out, float scale) {
    int64_t lo = 0, hi = out;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (nearest_src(mid, in, out, scale) >= v) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

__global__ void nearest_fw_kernel(const float *x, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                  float sh, float sw, float *y) {
    GRID_STRIDE(e, planes * OH * OW) {
        int64_t ow = e % OW, t = e / OW, oh = t % OH, p = t / OH;
        y[e] = x[(p * H + nearest_src(oh, H, OH, sh)) * W + nearest_src(ow, W, OW, sw)];
    }
}

/* One thread per input element, its outputs in (oh, ow) order: the CPU's
 * sequence of additions into it. */
__global__ void nearest_bw_kernel(const float *gy, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                  float sh, float sw, float *gx) {
    GRID_STRIDE(e, planes * H * W) {
        int64_t w = e % W, t = e / W, h = t % H, p = t / H;
        int64_t h0 = nearest_first(h, H, OH, sh), h1 = nearest_first(h + 1, H, OH, sh);
        int64_t w0 = nearest_first(w, W, OW, sw), w1 = nearest_first(w + 1, W, OW, sw);
        float acc = 0.0f;
        for (int64_t oh = h0; oh < h1; oh++) {
            const float *row = gy + (p * OH + oh) * OW;
            for (int64_t ow = w0; ow < w1; ow++) acc = __fadd_rn(acc, row[ow]);
        }
        gx[e] = acc;
    }
}

extern "C" int md__cuda_nearest_forward(const float *x, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                        float sh, float sw, float *y) {
    if (planes * OH * OW <= 0) return 0;
    if (H <= 0 || W <= 0) return md__cuda_fail("nearest_forward", "empty %lldx%lld source", (long long)H, (long long)W);
    nearest_fw_kernel<<<grid_for(planes * OH * OW), TPB, 0, md__cuda_stream()>>>(x, planes, H, W, OH, OW, sh, sw, y);
    return check("nearest_forward");
}

extern "C" int md__cuda_nearest_backward(const float *gy, int64_t planes, int64_t H, int64_t W, int64_t OH,
                                         int64_t OW, float sh, float sw, float *gx) {
    if (planes * H * W <= 0) return 0;
    nearest_bw_kernel<<<grid_for(planes * H * W), TPB, 0, md__cuda_stream()>>>(gy, planes, H, W, OH, OW, sh, sw, gx);
    return check("nearest_backward");
}

/* ----------------------------------------------------------------- table -- */

/* index.cu */
extern "C" int md__cuda_index_check(const int64_t *idx, int64_t n, int64_t size, int64_t *bad, int64_t *val);
extern "C" int md__cuda_index_select(size_t elem, const void *a, int64_t outer, int64_t n, int64_t inner,
                                     const int64_t *idx, int64_t k, void *out);
extern "C" int md__cuda_index_add_f32(const float *g, int64_t outer, int64_t n, int64_t inner, const int64_t *idx,
                                      int64_t k, float *gx);
extern "C" int md__cuda_index_offsets(int ndim, const int64_t *ishape, int dim, const int64_t *idx,
                                      const int64_t *st, int64_t *off);
extern "C" int md__cuda_take(size_t elem, const void *a, const int64_t *off, int64_t n, void *out);
extern "C" int md__cuda_put_add(int dtype, void *out, const int64_t *off, int64_t n, int64_t limit, const void *src);
extern "C" int md__cuda_nonzero(int dtype, const void *x, int ndim, const int64_t *shape, int64_t *out,
                                int64_t *count);

extern "C" void md__cuda_table_shape(md_backend *t) {
    t->cast = md__cuda_cast;
    t->binary_int = md__cuda_binary_int;
    t->compare_scalar = md__cuda_compare_scalar;
    t->where = md__cuda_where;
    t->index_check = md__cuda_index_check;
    t->index_select = md__cuda_index_select;
    t->index_add_f32 = md__cuda_index_add_f32;
    t->index_offsets = md__cuda_index_offsets;
    t->take = md__cuda_take;
    t->put_add = md__cuda_put_add;
    t->nonzero = md__cuda_nonzero;
    t->sum_int = md__cuda_sum_int;
    t->max = md__cuda_max;
    t->max_backward_f32 = md__cuda_max_backward_f32;
    t->softmax_f32 = md__cuda_softmax_f32;
    t->softmax_backward_f32 = md__cuda_softmax_backward_f32;
    t->group_norm_forward = md__cuda_group_norm_forward;
    t->group_norm_backward = md__cuda_group_norm_backward;
    t->nearest_forward = md__cuda_nearest_forward;
    t->nearest_backward = md__cuda_nearest_backward;
}
