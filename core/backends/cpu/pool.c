/* CPU max pooling and nearest resampling. */
#include <math.h>
#include <string.h>
#include "backends/cpu/pool.h"

#define PAR_MIN 32768

void md__maxpool2d_forward(const float *x, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                           int k, int stride, int pad, float *y, int32_t *idx, int nthreads) {
    #pragma omp parallel for num_threads(nthreads) if (planes * OH * OW * k * k > PAR_MIN) schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x + p * H * W;
        float *yp = y + p * OH * OW;
        int32_t *ip = idx + p * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = oh * stride - pad, h1 = h0 + k < H ? h0 + k : H;
            if (h0 < 0) h0 = 0;
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ow * stride - pad, w1 = w0 + k < W ? w0 + k : W;
                if (w0 < 0) w0 = 0;
                int64_t best = h0 * W + w0;
                float mv = -INFINITY;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) {
                        float v = xp[ih * W + iw];
                        if (v > mv || isnan(v)) {
                            mv = v;
                            best = ih * W + iw;
                        }
                    }
                yp[oh * OW + ow] = mv;
                ip[oh * OW + ow] = (int32_t)best;
            }
        }
    }
}

void md__maxpool2d_backward(const float *gy, const int32_t *idx, int64_t planes, int64_t H, int64_t W,
                            int64_t OH, int64_t OW, float *gx, int nthreads) {
    #pragma omp parallel for num_threads(nthreads) if (planes * H * W > PAR_MIN) schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        float *gp = gx + p * H * W;
        const float *g = gy + p * OH * OW;
        const int32_t *ip = idx + p * OH * OW;
        memset(gp, 0, sizeof(float) * (size_t)(H * W));
        for (int64_t o = 0; o < OH * OW; o++) gp[ip[o]] += g[o];
    }
}

void md__nearest_forward(const float *x, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                         const int64_t *ih, const int64_t *iw, float *y, int nthreads) {
    #pragma omp parallel for num_threads(nthreads) if (planes * OH * OW > PAR_MIN) schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x + p * H * W;
        float *yp = y + p * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *row = xp + ih[oh] * W;
            float *out = yp + oh * OW;
            for (int64_t ow = 0; ow < OW; ow++) out[ow] = row[iw[ow]];
        }
    }
}

void md__nearest_backward(const float *gy, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                          const int64_t *ih, const int64_t *iw, float *gx, int nthreads) {
    #pragma omp parallel for num_threads(nthreads) if (planes * OH * OW > PAR_MIN) schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        float *gp = gx + p * H * W;
        const float *g = gy + p * OH * OW;
        memset(gp, 0, sizeof(float) * (size_t)(H * W));
        for (int64_t oh = 0; oh < OH; oh++) {
            float *row = gp + ih[oh] * W;
            const float *in = g + oh * OW;
            for (int64_t ow = 0; ow < OW; ow++) row[iw[ow]] += in[ow];
        }
    }
}

void md__nearest_map(int64_t *map, int64_t in, int64_t out, float scale) {
    for (int64_t o = 0; o < out; o++) {
        if (out == in) map[o] = o;
        else if (out == 2 * in) map[o] = o >> 1;
        else {
            float f = (float)o * scale;
            int64_t s = (int64_t)floorf(f);
            map[o] = s < in - 1 ? s : in - 1;
        }
    }
}
