/* CPU CARAFE: mmcv's carafe op (mmcv/ops/carafe.py) forward and backward. */
#include <stdbool.h>
#include <string.h>
#include "backends/cpu/carafe.h"

#define PAR_MIN 32768

void md__cpu_carafe_forward(const float *feat, const float *masks, int64_t N, int64_t C, int64_t H, int64_t W,
                            int k, int G, int s, float *out, int nthreads) {
    int64_t OH = H * s, OW = W * s, plane = OH * OW, kk = (int64_t)k * k, cpg = C / G;
    int r = (k - 1) / 2;
    #pragma omp parallel for num_threads(nthreads) if (N * C * plane * kk > PAR_MIN) schedule(static)
    for (int64_t p = 0; p < N * C; p++) {
        int64_t n = p / C, c = p % C, g = c / cpg;
        const float *f = feat + p * H * W;
        const float *m = masks + (n * G * kk + g * kk) * plane;
        float *o = out + p * plane;
        for (int64_t y = 0; y < OH; y++) {
            int64_t dy = y / s;
            for (int64_t x = 0; x < OW; x++) {
                int64_t dx = x / s;
                float v = 0.0f;
                for (int i = 0; i < k; i++) {
                    int64_t iy = dy + i - r;
                    if (iy < 0 || iy >= H) continue;
                    for (int j = 0; j < k; j++) {
                        int64_t ix = dx + j - r;
                        if (ix < 0 || ix >= W) continue;
                        v += f[iy * W + ix] * m[(i * k + j) * plane + y * OW + x];
                    }
                }
                o[y * OW + x] = v;
            }
        }
    }
}

void md__cpu_carafe_backward(const float *grad_out, const float *feat, const float *masks, int64_t N, int64_t C,
                             int64_t H, int64_t W, int k, int G, int s, float *grad_feat, float *grad_masks,
                             int nthreads) {
    int64_t OH = H * s, OW = W * s, plane = OH * OW, kk = (int64_t)k * k, cpg = C / G;
    int r = (k - 1) / 2;
    bool par = N * C * plane * kk > PAR_MIN;
    if (grad_feat) {
        /* one feature plane per thread: it adds what each of its outputs read */
        #pragma omp parallel for num_threads(nthreads) if (par) schedule(static)
        for (int64_t p = 0; p < N * C; p++) {
            int64_t n = p / C, c = p % C, g = c / cpg;
            const float *m = masks + (n * G * kk + g * kk) * plane, *go = grad_out + p * plane;
            float *gf = grad_feat + p * H * W;
            memset(gf, 0, sizeof(float) * (size_t)(H * W));
            for (int64_t y = 0; y < OH; y++) {
                int64_t dy = y / s;
                for (int64_t x = 0; x < OW; x++) {
                    int64_t dx = x / s;
                    float gv = go[y * OW + x];
                    for (int i = 0; i < k; i++) {
                        int64_t iy = dy + i - r;
                        if (iy < 0 || iy >= H) continue;
                        for (int j = 0; j < k; j++) {
                            int64_t ix = dx + j - r;
                            if (ix < 0 || ix >= W) continue;
                            gf[iy * W + ix] += m[(i * k + j) * plane + y * OW + x] * gv;
                        }
                    }
                }
            }
        }
    }
    if (grad_masks) {
        /* one mask plane (n, g, i, j) per thread, summing its group's channels */
        #pragma omp parallel for num_threads(nthreads) if (par) schedule(static)
        for (int64_t q = 0; q < N * G * kk; q++) {
            int64_t n = q / (G * kk), g = (q / kk) % G, t = q % kk;
            int i = (int)(t / k), j = (int)(t % k);
            float *gm = grad_masks + q * plane;
            for (int64_t y = 0; y < OH; y++) {
                int64_t iy = y / s + i - r;
                for (int64_t x = 0; x < OW; x++) {
                    int64_t ix = x / s + j - r;
                    float v = 0.0f;
                    if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                        for (int64_t c = g * cpg; c < (g + 1) * cpg; c++)
                            v += feat[((n * C + c) * H + iy) * W + ix] * grad_out[(n * C + c) * plane + y * OW + x];
                    gm[y * OW + x] = v;
                }
            }
        }
    }
}
