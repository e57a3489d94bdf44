/* CPU batch-norm kernels. */
#include <math.h>
#include "backends/cpu/norm.h"

#define PAR_MIN 32768   /* elements below which threads cost more than they save */

void md__bn_stats(const float *x, int64_t N, int64_t C, int64_t HW, double *mean, double *var, int nthreads) {
    #pragma omp parallel for num_threads(nthreads) if (N * C * HW > PAR_MIN) schedule(static)
    for (int64_t c = 0; c < C; c++) {
        double s = 0, n = (double)(N * HW);
        for (int64_t i = 0; i < N; i++) {
            const float *p = x + (i * C + c) * HW;
            #pragma omp simd reduction(+ : s)
            for (int64_t k = 0; k < HW; k++) s += p[k];
        }
        double m = n > 0 ? s / n : 0, q = 0;
        for (int64_t i = 0; i < N; i++) {   /* two passes: no cancellation */
            const float *p = x + (i * C + c) * HW;
            #pragma omp simd reduction(+ : q)
            for (int64_t k = 0; k < HW; k++) {
                double d = p[k] - m;
                q += d * d;
            }
        }
        mean[c] = m;
        var[c] = n > 0 ? q / n : 0;
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

/* ---------------------------------------------------------- group norm -- */

void md__gn_forward(const float *x, int64_t N, int64_t C, int64_t HW, int64_t G, const float *w, const float *b,
                    double eps, float *y, double *mean, double *rstd, int nthreads) {
    int64_t D = C / G, M = D * HW;
    #pragma omp parallel for num_threads(nthreads) if (N * C * HW > PAR_MIN) schedule(static)
    for (int64_t ng = 0; ng < N * G; ng++) {
        const float *p = x + ng * M;   /* the (n, g) block is contiguous */
        double s = 0;
        #pragma omp simd reduction(+ : s)
        for (int64_t k = 0; k < M; k++) s += p[k];
        double m = M > 0 ? s / (double)M : 0, q = 0;
        #pragma omp simd reduction(+ : q)
        for (int64_t k = 0; k < M; k++) {   /* second pass: no cancellation */
            double d = p[k] - m;
            q += d * d;
        }
        double r = 1.0 / sqrt((M > 0 ? q / (double)M : 0) + eps);
        mean[ng] = m;
        rstd[ng] = r;
        int64_t g = ng % G, n = ng / G;
        float mf = (float)m;
        for (int64_t d = 0; d < D; d++) {
            int64_t c = g * D + d;
            /* (x - mean) first: no cancellation against a large mean */
            float scale = (float)(r * (w ? w[c] : 1.0)), shift = b ? b[c] : 0.0f;
            const float *pc = x + (n * C + c) * HW;
            float *qc = y + (n * C + c) * HW;
            #pragma omp simd
            for (int64_t k = 0; k < HW; k++) qc[k] = (pc[k] - mf) * scale + shift;
        }
    }
}

void md__gn_backward(const float *x, const float *gy, int64_t N, int64_t C, int64_t HW, int64_t G,
                     const double *mean, const double *rstd, const float *w, float *gx, float *gw, float *gb,
                     double *scratch, int nthreads) {
    int64_t D = C / G, M = D * HW;
    double *sdx = scratch, *sg = scratch + N * C;   /* sum gy * (x - mean), sum gy per (n, c) */
    #pragma omp parallel for num_threads(nthreads) if (N * C * HW > PAR_MIN) schedule(static)
    for (int64_t ng = 0; ng < N * G; ng++) {
        int64_t g = ng % G, n = ng / G;
        float m = (float)mean[ng];
        double A = 0, B = 0;   /* sum w * gy, sum w * gy * (x - mean) over the group */
        for (int64_t d = 0; d < D; d++) {
            int64_t c = g * D + d;
            const float *p = x + (n * C + c) * HW, *q = gy + (n * C + c) * HW;
            double a = 0, bb = 0;
            #pragma omp simd reduction(+ : a, bb)
            for (int64_t k = 0; k < HW; k++) {
                a += q[k];
                bb += (double)q[k] * (double)(p[k] - m);
            }
            sg[n * C + c] = a;
            sdx[n * C + c] = bb;
            double wc = w ? w[c] : 1.0;
            A += wc * a;
            B += wc * bb;
        }
        if (!gx) continue;
        /* gx = rstd * (w gy - A / M - (x - mean) rstd^2 B / M) */
        double r = rstd[ng];
        float c2 = M > 0 ? (float)(-r * r * r * B / (double)M) : 0.0f;
        float c3 = M > 0 ? (float)(-r * A / (double)M) : 0.0f;
        for (int64_t d = 0; d < D; d++) {
            int64_t c = g * D + d;
            float k1 = (float)(r * (w ? w[c] : 1.0));
            const float *p = x + (n * C + c) * HW, *q = gy + (n * C + c) * HW;
            float *o = gx + (n * C + c) * HW;
            #pragma omp simd
            for (int64_t k = 0; k < HW; k++) o[k] = k1 * q[k] + c2 * (p[k] - m) + c3;
        }
    }
    if (!gw && !gb) return;
    for (int64_t c = 0; c < C; c++) {   /* over n in order: reproducible */
        double sw = 0, sb = 0;
        for (int64_t n = 0; n < N; n++) {
            sw += sdx[n * C + c] * rstd[n * G + c / D];
            sb += sg[n * C + c];
        }
        if (gw) gw[c] = (float)sw;
        if (gb) gb[c] = (float)sb;
    }
}
