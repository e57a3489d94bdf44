/* CUDA optimizer steps; mirror md_optimizer_step's loops (core/optim.c).
 * The _rn intrinsics spell out the CPU's expressions operation by operation:
 * nvcc would otherwise contract a * b + c into an FMA, which the CPU build
 * does not, and the weights would drift apart bit by bit over a run. */
#include <stdint.h>
#include "backends/cuda/kernel_util.cuh"




/* d = g + wd w; with buf: buf = first ? d : mom buf + (1 - damp) d,
 * d = nesterov ? d + mom buf : buf; w -= lr d. */
__global__ void sgd_kernel(int64_t n, float *w, const float *g, float *buf, float lr, float wd, float mom, float damp,
                           bool nesterov, bool first) {
    GRID_STRIDE(k, n) {
        float wk = w[k];
        float d = __fadd_rn(g[k], __fmul_rn(wd, wk));
        if (buf) {
            float b = first ? d : __fadd_rn(__fmul_rn(mom, buf[k]), __fmul_rn(__fsub_rn(1.0f, damp), d));
            buf[k] = b;
            d = nesterov ? __fadd_rn(d, __fmul_rn(mom, b)) : b;
        }
        w[k] = __fsub_rn(wk, __fmul_rn(lr, d));
    }
}

extern "C" int md__cuda_sgd_step(int64_t n, float *w, const float *g, float *buf, float lr, float wd, float mom,
                                 float damp, bool nesterov, bool first) {
    if (n <= 0) return 0;
    sgd_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(n, w, g, buf, lr, wd, mom, damp, nesterov, first);
    return md__cuda_check(cudaGetLastError(), "sgd_step") ? -1 : 0;
}

/* Adam (L2 decay into the gradient) or AdamW (decoupled: w *= 1 - lr wd);
 * m = b1 m + (1 - b1) d, v = b2 v + (1 - b2) d d,
 * w -= step_size m / (sqrt(v) / sbc2 + eps). */
__global__ void adam_kernel(int64_t n, float *w, const float *g, float *m, float *v, float lr, float wd, float b1,
                            float b2, float eps, float step_size, float sbc2, bool decoupled) {
    GRID_STRIDE(k, n) {
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
}

extern "C" int md__cuda_adam_step(int64_t n, float *w, const float *g, float *m, float *v, float lr, float wd,
                                  float b1, float b2, float eps, float step_size, float sbc2, bool decoupled) {
    if (n <= 0) return 0;
    adam_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(n, w, g, m, v, lr, wd, b1, b2, eps, step_size, sbc2,
                                                            decoupled);
    return md__cuda_check(cudaGetLastError(), "adam_step") ? -1 : 0;
}
