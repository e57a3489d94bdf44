/* Batch norm over x [N, C, HW] with own kernels, mirroring
 * backends/cpu/norm.c and the statistics step of core/ops/op_norm.c.
 *
 * Per-channel sums run in two fixed-order steps, so results are
 * reproducible run to run (no atomics): `partial_sums` gives each block one
 * (channel, chunk of the channel's M = N * HW elements) and reduces its
 * threads' double sums by a shared-memory tree; a per-channel `finish`
 * kernel adds the chunks in order. Element-wise steps work on one
 * (n, c) plane per block row so that the channel is known per block. The
 * float arithmetic of the element-wise steps uses round-to-nearest
 * intrinsics without fused multiply-add, as the CPU kernels compute. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include "backends/cuda/cuda_internal.h"

#define RB 256                 /* threads per reduction block (power of two) */
#define CHUNK_TARGET 4096      /* elements per reduction block */
#define MAX_CHUNKS 1024
#define EW_THREADS 256
#define EW_PER_THREAD 4

typedef struct geom {
    int64_t chunks, per;       /* chunks per channel, elements per chunk */
} geom;

static geom geom_of(int64_t C, int64_t M) {
    int64_t chunks = (M + CHUNK_TARGET - 1) / CHUNK_TARGET;
    if (chunks > MAX_CHUNKS) chunks = MAX_CHUNKS;
    if (C > 0 && chunks > INT_MAX / C) chunks = INT_MAX / C;
    if (chunks < 1) chunks = 1;
    geom g = { chunks, (M + chunks - 1) / chunks };
    return g;
}

/* MODE 0 (statistics): s = sum(x - k), q = sum((x - k)^2) about the
 * channel's first value k (as the CPU, against cancellation).
 * MODE 1 (backward): s = sum(gy), q = sum(gy * (x - mean[c])).
 * part[(c * chunks + chunk) * 2 + {0, 1}] = {s, q} of the chunk. */
template <int MODE>
__global__ static void partial_sums(const float *a, const float *x, const float *mean, int64_t C, int64_t HW,
                                    int64_t M, int64_t chunks, int64_t per, double *part) {
    __shared__ double ss[RB], qq[RB];
    const int t = threadIdx.x;
    const int64_t c = blockIdx.x / chunks, ch = blockIdx.x % chunks;
    const int64_t i1 = (ch + 1) * per < M ? (ch + 1) * per : M;
    const double k = MODE == 0 ? (double)a[c * HW] : (double)mean[c];
    double s = 0, q = 0;
    int64_t i = ch * per + t;
    if (i < i1) {
        /* walk (n, j) with i = n * HW + j without a division per element */
        int64_t n = i / HW, j = i - n * HW;
        const int64_t dn = RB / HW, dj = RB % HW;
        for (; i < i1; i += RB) {
            int64_t off = (n * C + c) * HW + j;
            if (MODE == 0) {
                double d = (double)a[off] - k;
                s += d;
                q += d * d;
            } else {
                double g = (double)a[off];
                s += g;
                q += g * ((double)x[off] - k);
            }
            n += dn;
            j += dj;
            if (j >= HW) {
                j -= HW;
                n++;
            }
        }
    }
    ss[t] = s;
    qq[t] = q;
    __syncthreads();
    for (int w = RB / 2; w > 0; w >>= 1) {
        if (t < w) {
            ss[t] += ss[t + w];
            qq[t] += qq[t + w];
        }
        __syncthreads();
    }
    if (t == 0) {
        part[(c * chunks + ch) * 2] = ss[0];
        part[(c * chunks + ch) * 2 + 1] = qq[0];
    }
}

/* Training statistics per channel (core/ops/op_norm.c): mean, invstd and the
 * running statistics with the unbiased variance. */
__global__ static void finish_train(const double *part, const float *x, int64_t C, int64_t HW, int64_t M,
                                    int64_t chunks, double eps, double mom, float *rm, float *rv, float *mean,
                                    float *invstd) {
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    if (M <= 0) {   /* empty batch: nothing to normalise, running stats kept */
        mean[c] = 0.0f;
        invstd[c] = 1.0f;
        return;
    }
    double s = 0, q = 0, n = (double)M;
    for (int64_t k = 0; k < chunks; k++) {
        s += part[(c * chunks + k) * 2];
        q += part[(c * chunks + k) * 2 + 1];
    }
    double m = s / n, v = q / n - m * m;
    double mu = m + (double)x[c * HW], var = v > 0 ? v : 0;
    mean[c] = (float)mu;
    invstd[c] = (float)(1.0 / sqrt(var + eps));
    if (rm) rm[c] = (float)((1 - mom) * (double)rm[c] + mom * mu);
    if (rv && M > 1) rv[c] = (float)((1 - mom) * (double)rv[c] + mom * var * n / (n - 1));
}

__global__ static void finish_eval(const float *rm, const float *rv, int64_t C, double eps, float *mean,
                                   float *invstd) {
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    mean[c] = rm[c];
    invstd[c] = (float)(1.0 / sqrt((double)rv[c] + eps));
}

/* Backward per channel (md__bn_backward): gw, gb and the coefficients of gx
 * (k1, mg, k2) into coef[3 c ..]. part NULL: sums not needed (zero). */
__global__ static void finish_backward(const double *part, int64_t C, int64_t M, int64_t chunks, const float *invstd,
                                       const float *w, bool batch_stats, float *gw, float *gb, float *coef) {
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double sg = 0, sgx = 0, n = (double)M;
    if (part)
        for (int64_t k = 0; k < chunks; k++) {
            sg += part[(c * chunks + k) * 2];
            sgx += part[(c * chunks + k) * 2 + 1];
        }
    float is = invstd[c], wc = w ? w[c] : 1.0f;
    if (gw) gw[c] = (float)(sgx * is);
    if (gb) gb[c] = (float)sg;
    if (coef) {
        coef[3 * c] = __fmul_rn(is, wc);
        coef[3 * c + 1] = batch_stats && n > 0 ? (float)(sg / n) : 0.0f;
        coef[3 * c + 2] = batch_stats && n > 0 ? (float)(sgx / n * is * is) : 0.0f;
    }
}

/* y = x * scale + shift, scale = invstd w, shift = b - mean scale. */
__device__ static inline void affine_of(int64_t c, const float *mean, const float *invstd, const float *w,
                                        const float *b, float *scale, float *shift) {
    float sc = __fmul_rn(invstd[c], w ? w[c] : 1.0f);
    *scale = sc;
    *shift = __fsub_rn(b ? b[c] : 0.0f, __fmul_rn(mean[c], sc));
}

/* Planes of HW elements: blockIdx.x the plane (n * C + c), blockIdx.y a
 * stripe of it. */
__global__ static void apply_planes(const float *x, int64_t C, int64_t HW, const float *mean, const float *invstd,
                                    const float *w, const float *b, float *y) {
    int64_t plane = blockIdx.x;
    float scale, shift;
    affine_of(plane % C, mean, invstd, w, b, &scale, &shift);
    const float *p = x + plane * HW;
    float *q = y + plane * HW;
    for (int64_t j = (int64_t)blockIdx.y * blockDim.x + threadIdx.x; j < HW; j += (int64_t)gridDim.y * blockDim.x)
        q[j] = __fadd_rn(__fmul_rn(p[j], scale), shift);
}

/* The same over a flat index, for small planes. */
__global__ static void apply_flat(const float *x, int64_t total, int64_t C, int64_t HW, const float *mean,
                                  const float *invstd, const float *w, const float *b, float *y) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        float scale, shift;
        affine_of(i / HW % C, mean, invstd, w, b, &scale, &shift);
        y[i] = __fadd_rn(__fmul_rn(x[i], scale), shift);
    }
}

/* gx = (gy - mg - (x - mean) k2) k1 with coef = {k1, mg, k2} per channel. */
__device__ static inline float gx_of(float g, float p, float m, const float *cf) {
    float t = __fsub_rn(__fsub_rn(g, cf[1]), __fmul_rn(__fsub_rn(p, m), cf[2]));
    return __fmul_rn(t, cf[0]);
}

__global__ static void gx_planes(const float *x, const float *gy, int64_t C, int64_t HW, const float *mean,
                                 const float *coef, float *gx) {
    int64_t plane = blockIdx.x, c = plane % C;
    const float *cf = coef + 3 * c;
    float m = mean[c];
    const float *p = x + plane * HW, *g = gy + plane * HW;
    float *q = gx + plane * HW;
    for (int64_t j = (int64_t)blockIdx.y * blockDim.x + threadIdx.x; j < HW; j += (int64_t)gridDim.y * blockDim.x)
        q[j] = gx_of(g[j], p[j], m, cf);
}

__global__ static void gx_flat(const float *x, const float *gy, int64_t total, int64_t C, int64_t HW,
                               const float *mean, const float *coef, float *gx) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = i / HW % C;
        gx[i] = gx_of(gy[i], x[i], mean[c], coef + 3 * c);
    }
}

static unsigned blocks_for(int64_t n, int64_t per_block, int64_t cap) {
    int64_t b = (n + per_block - 1) / per_block;
    if (b < 1) b = 1;
    return (unsigned)(b < cap ? b : cap);
}

/* Planes kernels need a plane per block row; small planes go flat. */
static bool use_planes(int64_t N, int64_t C, int64_t HW) { return HW >= 128 && N * C <= INT_MAX; }

static int launched(const char *op, const char *kernel, int64_t N, int64_t C, int64_t HW) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return 0;
    return md__cuda_fail(op, "%s launch failed for x [%lld, %lld, %lld]: %s", kernel, (long long)N, (long long)C,
                         (long long)HW, cudaGetErrorString(e));
}

static int apply(const char *op, const float *x, int64_t N, int64_t C, int64_t HW, const float *mean,
                 const float *invstd, const float *w, const float *b, float *y) {
    int64_t total = N * C * HW;
    if (total <= 0) return 0;
    cudaStream_t st = md__cuda_stream();
    if (use_planes(N, C, HW)) {
        dim3 grid((unsigned)(N * C), blocks_for(HW, EW_THREADS * EW_PER_THREAD, 65535));
        apply_planes<<<grid, EW_THREADS, 0, st>>>(x, C, HW, mean, invstd, w, b, y);
    } else {
        apply_flat<<<blocks_for(total, EW_THREADS * EW_PER_THREAD, 1 << 20), EW_THREADS, 0, st>>>(
            x, total, C, HW, mean, invstd, w, b, y);
    }
    return launched(op, "apply", N, C, HW);
}

extern "C" int md__cuda_batch_norm_train(const float *x, int64_t N, int64_t C, int64_t HW, const float *w,
                                         const float *b, double eps, double momentum, float *running_mean,
                                         float *running_var, float *y, float *mean, float *invstd) {
    const char *op = "batch_norm_train";
    if (C <= 0) return 0;
    int64_t M = N * HW;
    geom g = geom_of(C, M);
    cudaStream_t st = md__cuda_stream();
    double *part = NULL;
    if (M > 0) {
        part = (double *)md__cuda_scratch(sizeof(double) * 2 * (size_t)(C * g.chunks));
        if (!part) return -1;
        partial_sums<0><<<(unsigned)(C * g.chunks), RB, 0, st>>>(x, NULL, NULL, C, HW, M, g.chunks, g.per, part);
        if (launched(op, "partial_sums", N, C, HW)) return -1;
    }
    finish_train<<<blocks_for(C, 256, INT_MAX), 256, 0, st>>>(part, x, C, HW, M, g.chunks, eps, momentum,
                                                              running_mean, running_var, mean, invstd);
    if (launched(op, "finish_train", N, C, HW)) return -1;
    return apply(op, x, N, C, HW, mean, invstd, w, b, y);
}

extern "C" int md__cuda_batch_norm_eval(const float *x, int64_t N, int64_t C, int64_t HW, const float *w,
                                        const float *b, double eps, const float *running_mean,
                                        const float *running_var, float *y, float *mean, float *invstd) {
    const char *op = "batch_norm_eval";
    if (C <= 0) return 0;
    finish_eval<<<blocks_for(C, 256, INT_MAX), 256, 0, md__cuda_stream()>>>(running_mean, running_var, C, eps, mean,
                                                                           invstd);
    if (launched(op, "finish_eval", N, C, HW)) return -1;
    return apply(op, x, N, C, HW, mean, invstd, w, b, y);
}

extern "C" int md__cuda_batch_norm_backward(const float *x, const float *gy, int64_t N, int64_t C, int64_t HW,
                                            const float *mean, const float *invstd, const float *w,
                                            bool batch_stats, float *gx, float *gw, float *gb) {
    const char *op = "batch_norm_backward";
    int64_t M = N * HW, total = N * C * HW;
    if (C <= 0 || (!gx && !gw && !gb)) return 0;
    if (total <= 0) gx = NULL;   /* nothing to write; gw, gb become zeros */
    geom g = geom_of(C, M);
    bool sums = M > 0 && (gw || gb || batch_stats);
    size_t part_bytes = sums ? sizeof(double) * 2 * (size_t)(C * g.chunks) : 0;
    size_t bytes = part_bytes + (gx ? sizeof(float) * 3 * (size_t)C : 0);
    char *scr = NULL;
    if (bytes && !(scr = (char *)md__cuda_scratch(bytes))) return -1;
    double *part = sums ? (double *)scr : NULL;
    float *coef = gx ? (float *)(scr + part_bytes) : NULL;
    cudaStream_t st = md__cuda_stream();
    if (sums) {
        partial_sums<1><<<(unsigned)(C * g.chunks), RB, 0, st>>>(gy, x, mean, C, HW, M, g.chunks, g.per, part);
        if (launched(op, "partial_sums", N, C, HW)) return -1;
    }
    finish_backward<<<blocks_for(C, 256, INT_MAX), 256, 0, st>>>(part, C, M, g.chunks, invstd, w, batch_stats, gw,
                                                                 gb, coef);
    if (launched(op, "finish_backward", N, C, HW)) return -1;
    if (!gx) return 0;
    if (use_planes(N, C, HW)) {
        dim3 grid((unsigned)(N * C), blocks_for(HW, EW_THREADS * EW_PER_THREAD, 65535));
        gx_planes<<<grid, EW_THREADS, 0, st>>>(x, gy, C, HW, mean, coef, gx);
    } else {
        gx_flat<<<blocks_for(total, EW_THREADS * EW_PER_THREAD, 1 << 20), EW_THREADS, 0, st>>>(x, gy, total, C, HW,
                                                                                             mean, coef, gx);
    }
    return launched(op, "gx", N, C, HW);
}
