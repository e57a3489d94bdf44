/* CUDA max pooling over planes of H x W; mirrors md__maxpool2d_forward and
 * md__maxpool2d_backward (backends/cpu/pool.c).
 *
 * Forward: one thread per output, the CPU's scan of its window verbatim.
 * Backward: the entry gets no window geometry, so it is found from idx: a
 * first pass records, for every input row, the range of output rows whose
 * argmax lies in it (and likewise for columns) with integer atomicMin/Max,
 * which commute. Then one thread per input position scans exactly those
 * outputs in increasing output order and adds the gradients whose argmax is
 * its position, starting from 0: the CPU's order of additions, so the same
 * bits, and no float atomics. */
#include <stdint.h>
#include "backends/cuda/kernel_util.cuh"




__global__ void maxpool_fwd_kernel(const float *x, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                   int k, int stride, int pad, float *y, int32_t *idx) {
    GRID_STRIDE(e, planes * OH * OW) {
        int64_t ow = e % OW, oh = (e / OW) % OH, p = e / (OW * OH);
        const float *xp = x + p * H * W;
        int64_t h0 = oh * stride - pad, h1 = h0 + k < H ? h0 + k : H;
        if (h0 < 0) h0 = 0;
        int64_t w0 = ow * stride - pad, w1 = w0 + k < W ? w0 + k : W;
        if (w0 < 0) w0 = 0;
        int64_t best = h0 * W + w0;
        float mv = __int_as_float((int)0xff800000);   /* -inf: padding never wins */
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t iw = w0; iw < w1; iw++) {
                float v = xp[ih * W + iw];
                if (v > mv || v != v) {   /* NaN wins (the last NaN, as the CPU scan) */
                    mv = v;
                    best = ih * W + iw;
                }
            }
        y[e] = mv;
        idx[e] = (int32_t)best;
    }
}

extern "C" int md__cuda_maxpool2d_forward(const float *x, int64_t planes, int64_t H, int64_t W, int64_t OH,
                                          int64_t OW, int k, int stride, int pad, float *y, int32_t *idx) {
    int64_t total = planes * OH * OW;
    if (total <= 0) return 0;
    maxpool_fwd_kernel<<<grid_for(total), TPB, 0, md__cuda_stream()>>>(x, planes, H, W, OH, OW, k, stride, pad, y, idx);
    return md__cuda_check(cudaGetLastError(), "maxpool2d_forward") ? -1 : 0;
}

/* lo[0..n) = INT32_MAX, hi[0..n) = -1: empty ranges. */
__global__ void range_init_kernel(int32_t *lo, int32_t *hi, int64_t n) {
    GRID_STRIDE(i, n) {
        lo[i] = INT32_MAX;
        hi[i] = -1;
    }
}

/* For output (oh, ow) with argmax (th, tw): rlo/rhi[th] take oh, clo/chi[tw]
 * take ow. The plain read first skips most atomics: the stored minima only
 * fall (maxima only rise), so a stale read can only cost an extra atomic. */
__global__ void range_kernel(const int32_t *idx, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                             int32_t *rlo, int32_t *rhi, int32_t *clo, int32_t *chi) {
    GRID_STRIDE(e, planes * OH * OW) {
        int64_t t = idx[e];
        if (t < 0 || t >= H * W) continue;   /* no input position takes it */
        int32_t ow = (int32_t)(e % OW), oh = (int32_t)((e / OW) % OH);
        int64_t th = t / W, tw = t % W;
        if (oh < rlo[th]) atomicMin(&rlo[th], oh);
        if (oh > rhi[th]) atomicMax(&rhi[th], oh);
        if (ow < clo[tw]) atomicMin(&clo[tw], ow);
        if (ow > chi[tw]) atomicMax(&chi[tw], ow);
    }
}

/* gx at (p, th, tw) = sum, in increasing output order from 0, of gy over the
 * outputs in its row and column ranges whose argmax is th * W + tw. */
__global__ void maxpool_bwd_kernel(const float *gy, const int32_t *idx, int64_t planes, int64_t H, int64_t W,
                                   int64_t OH, int64_t OW, const int32_t *rlo, const int32_t *rhi,
                                   const int32_t *clo, const int32_t *chi, float *gx) {
    GRID_STRIDE(e, planes * H * W) {
        int64_t t = e % (H * W), p = e / (H * W), th = t / W, tw = t % W;
        const float *g = gy + p * OH * OW;
        const int32_t *ip = idx + p * OH * OW;
        int32_t r0 = rlo[th], r1 = rhi[th], c0 = clo[tw], c1 = chi[tw];
        float acc = 0.0f;
        for (int64_t oh = r0; oh <= r1; oh++)
            for (int64_t ow = c0; ow <= c1; ow++) {
                int64_t o = oh * OW + ow;
                if (ip[o] == t) acc += g[o];
            }
        gx[e] = acc;
    }
}

extern "C" int md__cuda_maxpool2d_backward(const float *gy, const int32_t *idx, int64_t planes, int64_t H, int64_t W,
                                           int64_t OH, int64_t OW, float *gx) {
    if (planes * H * W <= 0) return 0;
    if (OH > INT32_MAX || OW > INT32_MAX)
        return md__cuda_fail("maxpool2d_backward", "output %lldx%lld too large", (long long)OH, (long long)OW);
    cudaStream_t st = md__cuda_stream();
    int32_t *r = (int32_t *)md__cuda_scratch(sizeof(int32_t) * (size_t)(2 * (H + W)));
    if (!r) return -1;
    int32_t *rlo = r, *rhi = r + H, *clo = r + 2 * H, *chi = r + 2 * H + W;
    range_init_kernel<<<grid_for(H), TPB, 0, st>>>(rlo, rhi, H);
    if (md__cuda_check(cudaGetLastError(), "maxpool2d_backward (ranges)")) return -1;
    range_init_kernel<<<grid_for(W), TPB, 0, st>>>(clo, chi, W);
    if (md__cuda_check(cudaGetLastError(), "maxpool2d_backward (ranges)")) return -1;
    int64_t outs = planes * OH * OW;
    if (outs > 0) {
        range_kernel<<<grid_for(outs), TPB, 0, st>>>(idx, planes, H, W, OH, OW, rlo, rhi, clo, chi);
        if (md__cuda_check(cudaGetLastError(), "maxpool2d_backward (ranges)")) return -1;
    }
    maxpool_bwd_kernel<<<grid_for(planes * H * W), TPB, 0, st>>>(gy, idx, planes, H, W, OH, OW, rlo, rhi, clo, chi,
                                                                 gx);
    return md__cuda_check(cudaGetLastError(), "maxpool2d_backward") ? -1 : 0;
}
