/* CUDA optimizer steps; mirror md_optimizer_step's loops (core/runner/optim.c).
 * The _rn intrinsics spell out the CPU's expressions operation by operation:
 * nvcc would otherwise contract a * b + c into an FMA, which the CPU build
 * does not, and the weights would drift apart bit by bit over a run.
 *
 * The multi-tensor entries (sgd_step_multi, adam_step_multi, zero_f32_multi)
 * update many tensors per launch as PyTorch's multi_tensor_apply does: the
 * tensors' pointers, sizes and hyper-parameters travel in the kernel's
 * parameters (mt_args, under the 4 KiB limit), at most MT_MAX tensors per
 * launch; each block takes one MT_CHUNK-element chunk of one tensor, found by
 * a binary search over the tensors' first blocks. The per-element functions
 * are shared with the single-tensor kernels, so both give the same bits.
 *
 * Also the EMA hooks' element-wise update (lerp_f32) and swap (swap_f32),
 * and the loss scaler's unscale (unscale_f32_multi: md__unscale_elem of
 * backends/precision.h, the CPU's per-element function, over the same
 * multi-tensor launches, each block raising a device flag when it met an
 * inf or NaN; one read-back per call). */
#include <stdint.h>
#include "backends/cuda/kernel_util.cuh"
#include "backends/precision.h"

/* d = g + wd w; with buf: buf = first ? d : mom buf + (1 - damp) d,
 * d = nesterov ? d + mom buf : buf; w -= lr d. */
__device__ __forceinline__ void sgd_elem(int64_t k, float *w, const float *g, float *buf, float lr, float wd,
                                         float mom, float damp, bool nesterov, bool first) {
    float wk = w[k];
    float d = __fadd_rn(g[k], __fmul_rn(wd, wk));
    if (buf) {
        float b = first ? d : __fadd_rn(__fmul_rn(mom, buf[k]), __fmul_rn(__fsub_rn(1.0f, damp), d));
        buf[k] = b;
        d = nesterov ? __fadd_rn(d, __fmul_rn(mom, b)) : b;
    }
    w[k] = __fsub_rn(wk, __fmul_rn(lr, d));
}

/* Adam (L2 decay into the gradient) or AdamW (decoupled: w *= 1 - lr wd);
 * m = b1 m + (1 - b1) d, v = b2 v + (1 - b2) d d,
 * w -= step_size m / (sqrt(v) / sbc2 + eps). */
__device__ __forceinline__ void adam_elem(int64_t k, float *w, const float *g, float *m, float *v, float lr,
                                          float wd, float b1, float b2, float eps, float step_size, float sbc2,
                                          bool decoupled) {
    float d = g[k], wk = w[k];
    if (decoupled) wk = __fmul_rn(wk, __fsub_rn(1.0f, __fmul_rn(lr, wd)));
    else d = __fadd_rn(d, __fmul_rn(wd, wk));
    float mk = __fadd_rn(__fmul_rn(b1, m[k]), __fmul_rn(__fsub_rn(1.0f, b1), d));
    float vk = __fadd_rn(__fmul_rn(b2, v[k]), __fmul_rn(__fmul_rn(__fsub_rn(1.0f, b2), d), d));
    m[k] = mk;
    v[k] = vk;
    float den = __fadd_rn(__fdiv_rn(__fsqrt_rn(vk), sbc2), eps);
    w[k] = __fsub_rn(wk, __fdiv_rn(__fmul_rn(step_size, mk), den));
}

__global__ void sgd_kernel(int64_t n, float *w, const float *g, float *buf, float lr, float wd, float mom, float damp,
                           bool nesterov, bool first) {
    GRID_STRIDE(k, n) sgd_elem(k, w, g, buf, lr, wd, mom, damp, nesterov, first);
}

extern "C" int md__cuda_sgd_step(int64_t n, float *w, const float *g, float *buf, float lr, float wd, float mom,
                                 float damp, bool nesterov, bool first) {
    if (n <= 0) return 0;
    sgd_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(n, w, g, buf, lr, wd, mom, damp, nesterov, first);
    return md__cuda_check(cudaGetLastError(), "sgd_step") ? -1 : 0;
}

__global__ void adam_kernel(int64_t n, float *w, const float *g, float *m, float *v, float lr, float wd, float b1,
                            float b2, float eps, float step_size, float sbc2, bool decoupled) {
    GRID_STRIDE(k, n) adam_elem(k, w, g, m, v, lr, wd, b1, b2, eps, step_size, sbc2, decoupled);
}

extern "C" int md__cuda_adam_step(int64_t n, float *w, const float *g, float *m, float *v, float lr, float wd,
                                  float b1, float b2, float eps, float step_size, float sbc2, bool decoupled) {
    if (n <= 0) return 0;
    adam_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(n, w, g, m, v, lr, wd, b1, b2, eps, step_size, sbc2,
                                                            decoupled);
    return md__cuda_check(cudaGetLastError(), "adam_step") ? -1 : 0;
}

/* ------------------------------------------------------ multi-tensor -- */

#define MT_MAX 48                    /* tensors per launch (mt_args under 4 KiB) */
#define MT_CHUNK 16384               /* elements per block */
#define MT_MAX_BLOCKS (1 << 22)      /* blocks per launch; a larger tensor takes the single-tensor kernel */

struct mt_args {
    float *w[MT_MAX];
    const float *g[MT_MAX];
    float *s0[MT_MAX], *s1[MT_MAX];
    int64_t n[MT_MAX];
    float lr[MT_MAX], wd[MT_MAX], ss[MT_MAX];
    int block0[MT_MAX + 1];          /* tensor t owns blocks [block0[t], block0[t + 1]) */
    unsigned char first[MT_MAX];
    int count;
};
static_assert(sizeof(mt_args) <= 4000, "mt_args must fit the 4 KiB kernel parameter limit");

/* The tensor of block b: the last t with block0[t] <= b (every tensor in
 * the launch has at least one block, so block0 increases strictly). */
__device__ __forceinline__ int mt_tensor(const mt_args &a, int b) {
    int lo = 0, hi = a.count - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (a.block0[mid] <= b) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* This block's tensor t and element range [*k0, *k1). */
__device__ __forceinline__ int mt_range(const mt_args &a, int64_t *k0, int64_t *k1) {
    int t = mt_tensor(a, (int)blockIdx.x);
    int64_t start = (int64_t)((int)blockIdx.x - a.block0[t]) * MT_CHUNK;
    int64_t end = start + MT_CHUNK;
    *k0 = start + threadIdx.x;
    *k1 = end < a.n[t] ? end : a.n[t];
    return t;
}

__global__ void sgd_multi_kernel(const mt_args a, float mom, float damp, bool nesterov) {
    int64_t k, k1;
    int t = mt_range(a, &k, &k1);
    float *w = a.w[t], *buf = a.s0[t];
    const float *g = a.g[t];
    float lr = a.lr[t], wd = a.wd[t];
    bool first = a.first[t] != 0;
    for (; k < k1; k += blockDim.x) sgd_elem(k, w, g, buf, lr, wd, mom, damp, nesterov, first);
}

__global__ void adam_multi_kernel(const mt_args a, float b1, float b2, float eps, float sbc2, bool decoupled) {
    int64_t k, k1;
    int t = mt_range(a, &k, &k1);
    float *w = a.w[t], *m = a.s0[t], *v = a.s1[t];
    const float *g = a.g[t];
    float lr = a.lr[t], wd = a.wd[t], ss = a.ss[t];
    for (; k < k1; k += blockDim.x) adam_elem(k, w, g, m, v, lr, wd, b1, b2, eps, ss, sbc2, decoupled);
}

__global__ void zero_multi_kernel(const mt_args a) {
    int64_t k, k1;
    int t = mt_range(a, &k, &k1);
    float *w = a.w[t];
    for (; k < k1; k += blockDim.x) w[k] = 0.0f;
}

/* GradScaler.unscale_: g *= inv; *flag = 1 when a value was not finite
 * (every writer writes 1: no atomics needed). */
__global__ void unscale_multi_kernel(const mt_args a, float inv, int *flag) {
    int64_t k, k1;
    int t = mt_range(a, &k, &k1);
    float *g = a.w[t];
    bool bad = false;
    for (; k < k1; k += blockDim.x) bad |= md__unscale_elem(&g[k], inv);
    if (bad) *flag = 1;
}

__global__ void unscale_kernel(float *g, int64_t n, float inv, int *flag) {
    bool bad = false;
    GRID_STRIDE(k, n) bad |= md__unscale_elem(&g[k], inv);
    if (bad) *flag = 1;
}

/* Packs tensors 0..count-1 into launches of at most MT_MAX tensors and
 * MT_MAX_BLOCKS blocks: size(i) is tensor i's element count (empty ones are
 * skipped), fill(a, t, i) stores its pointers and parameters in slot t,
 * launch(a, blocks) queues a pack's kernel, single(i) handles a tensor too
 * large for one pack. */
template <typename Size, typename Fill, typename Launch, typename Single>
static int mt_pack(int count, const char *what, Size size, Fill fill, Launch launch, Single single) {
    mt_args a{};
    int blocks = 0;
    auto flush = [&]() -> int {
        if (a.count == 0) return 0;
        a.block0[a.count] = blocks;
        launch(a, (unsigned)blocks);
        a.count = 0;
        blocks = 0;
        return md__cuda_check(cudaGetLastError(), what) ? -1 : 0;
    };
    for (int i = 0; i < count; i++) {
        int64_t n = size(i);
        if (n <= 0) continue;
        int64_t nb = (n + MT_CHUNK - 1) / MT_CHUNK;
        if (nb > MT_MAX_BLOCKS) {
            if (single(i) != 0) return -1;
            continue;
        }
        if ((a.count == MT_MAX || blocks + nb > MT_MAX_BLOCKS) && flush() != 0) return -1;
        int t = a.count++;
        a.block0[t] = blocks;
        blocks += (int)nb;
        a.n[t] = n;
        fill(a, t, i);
    }
    return flush();
}

static void fill_param(mt_args &a, int t, const md__mt_param &p) {
    a.w[t] = p.w;
    a.g[t] = p.g;
    a.s0[t] = p.s0;
    a.s1[t] = p.s1;
    a.lr[t] = p.lr;
    a.wd[t] = p.wd;
    a.ss[t] = p.step_size;
    a.first[t] = p.first ? 1 : 0;
}

extern "C" int md__cuda_sgd_step_multi(int count, const md__mt_param *p, float mom, float damp, bool nesterov) {
    if (count < 0 || (count > 0 && !p)) return md__cuda_fail("sgd_step_multi", "bad tensor list (%d)", count);
    cudaStream_t st = md__cuda_stream();
    return mt_pack(
        count, "sgd_step_multi", [&](int i) { return p[i].n; },
        [&](mt_args &a, int t, int i) { fill_param(a, t, p[i]); },
        [&](const mt_args &a, unsigned blocks) { sgd_multi_kernel<<<blocks, TPB, 0, st>>>(a, mom, damp, nesterov); },
        [&](int i) {
            return md__cuda_sgd_step(p[i].n, p[i].w, p[i].g, p[i].s0, p[i].lr, p[i].wd, mom, damp, nesterov,
                                     p[i].first);
        });
}

extern "C" int md__cuda_adam_step_multi(int count, const md__mt_param *p, float b1, float b2, float eps, float sbc2,
                                        bool decoupled) {
    if (count < 0 || (count > 0 && !p)) return md__cuda_fail("adam_step_multi", "bad tensor list (%d)", count);
    cudaStream_t st = md__cuda_stream();
    return mt_pack(
        count, "adam_step_multi", [&](int i) { return p[i].n; },
        [&](mt_args &a, int t, int i) { fill_param(a, t, p[i]); },
        [&](const mt_args &a, unsigned blocks) {
            adam_multi_kernel<<<blocks, TPB, 0, st>>>(a, b1, b2, eps, sbc2, decoupled);
        },
        [&](int i) {
            return md__cuda_adam_step(p[i].n, p[i].w, p[i].g, p[i].s0, p[i].s1, p[i].lr, p[i].wd, b1, b2, eps,
                                      p[i].step_size, sbc2, decoupled);
        });
}

extern "C" int md__cuda_zero_f32_multi(int count, float *const *dst, const int64_t *n) {
    if (count < 0 || (count > 0 && (!dst || !n))) return md__cuda_fail("zero_f32_multi", "bad tensor list (%d)", count);
    cudaStream_t st = md__cuda_stream();
    return mt_pack(
        count, "zero_f32_multi", [&](int i) { return n[i]; }, [&](mt_args &a, int t, int i) { a.w[t] = dst[i]; },
        [&](const mt_args &a, unsigned blocks) { zero_multi_kernel<<<blocks, TPB, 0, st>>>(a); },
        [&](int i) {
            return md__cuda_check(cudaMemsetAsync(dst[i], 0, sizeof(float) * (size_t)n[i], st),
                                  "zero_f32_multi: cudaMemsetAsync") ? -1 : 0;
        });
}

extern "C" int md__cuda_unscale_f32_multi(int count, float *const *g, const int64_t *n, float inv, int *found) {
    if (count < 0 || (count > 0 && (!g || !n)) || !found)
        return md__cuda_fail("unscale_f32_multi", "bad tensor list (%d)", count);
    *found = 0;
    if (count == 0) return 0;
    cudaStream_t st = md__cuda_stream();
    int *flag = (int *)md__cuda_scratch(sizeof(int));
    if (!flag) return -1;
    if (md__cuda_check(cudaMemsetAsync(flag, 0, sizeof(int), st), "unscale_f32_multi: cudaMemsetAsync")) return -1;
    int rc = mt_pack(
        count, "unscale_f32_multi", [&](int i) { return n[i]; }, [&](mt_args &a, int t, int i) { a.w[t] = g[i]; },
        [&](const mt_args &a, unsigned blocks) { unscale_multi_kernel<<<blocks, TPB, 0, st>>>(a, inv, flag); },
        [&](int i) {
            unscale_kernel<<<grid_for(n[i]), TPB, 0, st>>>(g[i], n[i], inv, flag);
            return check("unscale_f32_multi");
        });
    if (rc != 0) return -1;
    int h = 0;   /* the step's one read-back */
    if (md__cuda_copy(&h, flag, sizeof(int), MD_COPY_D2H) != 0) return -1;
    *found = h != 0;
    return 0;
}

/* --------------------------------------------------------------- EMA -- */

/* The EMA hooks' ema = (1 - m) * ema + m * value, operation for operation. */
__global__ void lerp_kernel(float *dst, const float *src, int64_t n, float w) {
    GRID_STRIDE(k, n) dst[k] = __fadd_rn(__fmul_rn(__fsub_rn(1.0f, w), dst[k]), __fmul_rn(w, src[k]));
}

extern "C" int md__cuda_lerp_f32(float *dst, const float *src, int64_t n, float w) {
    if (n <= 0) return 0;
    lerp_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(dst, src, n, w);
    return check("lerp_f32");
}

__global__ void swap_kernel(float *a, float *b, int64_t n) {
    GRID_STRIDE(k, n) {
        float t = a[k];
        a[k] = b[k];
        b[k] = t;
    }
}

extern "C" int md__cuda_swap_f32(float *a, float *b, int64_t n) {
    if (n <= 0 || a == b) return 0;
    swap_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(a, b, n);
    return check("swap_f32");
}
