/* CPU batch-norm kernels. */
#include "backends/cpu/norm.h"

#define PAR_MIN 32768   /* elements below which threads cost more than they save */

void md__bn_stats(const float *x, int64_t N, int64_t C, int64_t HW, double *mean, double *var, int nthreads) {
    #pragma omp parallel for num_threads(nthreads) if (N * C * HW > PAR_MIN) schedule(static)
    for (int64_t c = 0; c < C; c++) {
        /* One pass: sums of (x - k) and (x - k)^2 about the channel's first
         * value k, in double. The shift keeps E[d^2] - E[d]^2 free of
         * cancellation unless the spread is ~1e-8 of |mean - k|. */
        double s = 0, q = 0, n = (double)(N * HW);
        float k = n > 0 ? x[c * HW] : 0.0f;
        for (int64_t i = 0; i < N; i++) {
            const float *p = x + (i * C + c) * HW;
            #pragma omp simd reduction(+ : s, q)
            for (int64_t j = 0; j < HW; j++) {
                double d = (double)p[j] - k;
                s += d;
                q += d * d;
            }
        }
        double m = n > 0 ? s / n : 0, v = n > 0 ? q / n - m * m : 0;
        mean[c] = m + k;
        var[c] = v > 0 ? v : 0;
    }
}

void md__bn_apply(const float *x, int64_t N, int64_t C, int64_t HW, const float *mean, const float *invstd,
                  const float *w, const float *b, float *y, int nthreads) {
    #pragma omp parallel for collapse(2) num_threads(nthreads) if (N * C * HW > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < N; i++)
        for (int64_t c = 0; c < C; c++) {
            float scale = invstd[c] * (w ? w[c] : 1.0f);
            float shift = (b ? b[c] : 0.0f) - mean[c] * scale;
            const float *p = x + (i * C + c) * HW;
            float *q = y + (i * C + c) * HW;
            for (int64_t k = 0; k < HW; k++) q[k] = p[k] * scale + shift;
        }
}

void md__bn_backward(const float *x, const float *gy, int64_t N, int64_t C, int64_t HW, const float *mean,
                     const float *invstd, const float *w, int batch_stats, float *gx, float *gw, float *gb,
                     int nthreads) {
    #pragma omp parallel for num_threads(nthreads) if (N * C * HW > PAR_MIN) schedule(static)
    for (int64_t c = 0; c < C; c++) {
        double sg = 0, sgx = 0;   /* sum(gy), sum(gy * (x - mean)) */
        float m = mean[c];
        for (int64_t i = 0; i < N; i++) {
            const float *p = x + (i * C + c) * HW, *g = gy + (i * C + c) * HW;
            float a = 0, bb = 0;   /* per-plane partials in float, planes summed in double */
            #pragma omp simd reduction(+ : a, bb)
            for (int64_t k = 0; k < HW; k++) {
                a += g[k];
                bb += g[k] * (p[k] - m);
            }
            sg += a;
            sgx += bb;
        }
        float is = invstd[c], wc = w ? w[c] : 1.0f;
        if (gw) gw[c] = (float)(sgx * is);
        if (gb) gb[c] = (float)sg;
        if (!gx) continue;
        double n = (double)(N * HW);
        float k1 = is * wc;
        float mg = batch_stats && n > 0 ? (float)(sg / n) : 0.0f;
        float k2 = batch_stats && n > 0 ? (float)(sgx / n * is * is) : 0.0f;
        for (int64_t i = 0; i < N; i++) {
            const float *p = x + (i * C + c) * HW, *g = gy + (i * C + c) * HW;
            float *q = gx + (i * C + c) * HW;
            for (int64_t k = 0; k < HW; k++) q[k] = (g[k] - mg - (p[k] - m) * k2) * k1;
        }
    }
}
