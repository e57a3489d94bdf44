/* CPU batch-norm kernels. */
#include <math.h>
#include <stdbool.h>
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
        float is = invstd[c], wc = w ? w[c] : 1.0f;
        /* With running statistics gx needs no sums: it is written in the
         * same pass that reads x and gy for them (the same expression as
         * below with mg = k2 = 0), one pass over memory instead of two. */
        bool fused = gx && !batch_stats;
        for (int64_t i = 0; i < N; i++) {
            const float *p = x + (i * C + c) * HW, *g = gy + (i * C + c) * HW;
            float a = 0, bb = 0;   /* per-plane partials in float, planes summed in double */
            if (fused) {
                float *q = gx + (i * C + c) * HW, k1 = is * wc, z = 0.0f;
                #pragma omp simd reduction(+ : a, bb)
                for (int64_t k = 0; k < HW; k++) {
                    float d = p[k] - m;
                    a += g[k];
                    bb += g[k] * d;
                    q[k] = (g[k] - z - d * z) * k1;
                }
            } else {
                #pragma omp simd reduction(+ : a, bb)
                for (int64_t k = 0; k < HW; k++) {
                    a += g[k];
                    bb += g[k] * (p[k] - m);
                }
            }
            sg += a;
            sgx += bb;
        }
        if (gw) gw[c] = (float)(sgx * is);
        if (gb) gb[c] = (float)sg;
        if (!gx || fused) continue;
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

/* Float partial sums over chunks of GN_CHUNK elements (vectorised), added
 * in double: close to double accuracy at float speed. */
#define GN_CHUNK 512
/* Groups with fewer elements run in double throughout (they are cheap and
 * ill-conditioned: with 2 elements the output hardly depends on the input). */
#define GN_SMALL 256

/* sum(p) */
static double gn_sum(const float *p, int64_t M) {
    double s = 0;
    for (int64_t k0 = 0; k0 < M; k0 += GN_CHUNK) {
        int64_t k1 = k0 + GN_CHUNK < M ? k0 + GN_CHUNK : M;
        float a = 0;
        #pragma omp simd reduction(+ : a)
        for (int64_t k = k0; k < k1; k++) a += p[k];
        s += a;
    }
    return s;
}

/* sum(p - m) and sum((p - m)^2) about an estimate m of the mean */
static void gn_dev(const float *p, int64_t M, float m, double *sd, double *sq) {
    double s1 = 0, s2 = 0;
    for (int64_t k0 = 0; k0 < M; k0 += GN_CHUNK) {
        int64_t k1 = k0 + GN_CHUNK < M ? k0 + GN_CHUNK : M;
        float a = 0, b = 0;
        #pragma omp simd reduction(+ : a, b)
        for (int64_t k = k0; k < k1; k++) {
            float d = p[k] - m;
            a += d;
            b += d * d;
        }
        s1 += a;
        s2 += b;
    }
    *sd = s1;
    *sq = s2;
}

void md__gn_forward(const float *x, int64_t N, int64_t C, int64_t HW, int64_t G, const float *w, const float *b,
                    double eps, float *y, double *mean, double *rstd, int nthreads) {
    int64_t D = C / G, M = D * HW;
    #pragma omp parallel for num_threads(nthreads) if (N * C * HW > PAR_MIN) schedule(static)
    for (int64_t ng = 0; ng < N * G; ng++) {
        const float *p = x + ng * M;   /* the (n, g) block is contiguous */
        double m, var;
        float mf;
        if (M < GN_SMALL) {
            double s = 0, q = 0;
            for (int64_t k = 0; k < M; k++) s += p[k];
            m = M > 0 ? s / (double)M : 0;
            for (int64_t k = 0; k < M; k++) q += ((double)p[k] - m) * ((double)p[k] - m);
            var = M > 0 ? q / (double)M : 0;
        } else {
            double sd, sq;
            /* second pass about the (float) mean: no cancellation; the
             * small sum(x - mf) corrects for mf's rounding */
            mf = (float)(gn_sum(p, M) / (double)M);
            gn_dev(p, M, mf, &sd, &sq);
            double dm = sd / (double)M;
            m = (double)mf + dm;
            var = sq / (double)M - dm * dm;
        }
        double r = 1.0 / sqrt((var > 0 ? var : 0) + eps);
        mean[ng] = m;
        rstd[ng] = r;
        int64_t g = ng % G, n = ng / G;
        mf = (float)m;
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
            if (M < GN_SMALL) {   /* few elements: exact double products (see below) */
                for (int64_t k = 0; k < HW; k++) {
                    a += q[k];
                    bb += (double)q[k] * ((double)p[k] - mean[ng]);
                }
                bb += a * (mean[ng] - (double)m);   /* undone below */
            } else
            for (int64_t k0 = 0; k0 < HW; k0 += GN_CHUNK) {
                int64_t k1 = k0 + GN_CHUNK < HW ? k0 + GN_CHUNK : HW;
                float fa = 0, fb = 0;
                #pragma omp simd reduction(+ : fa, fb)
                for (int64_t k = k0; k < k1; k++) {
                    fa += q[k];
                    fb += q[k] * (p[k] - m);
                }
                a += fa;
                bb += fb;
            }
            bb -= a * (mean[ng] - (double)m);   /* about the exact mean */
            sg[n * C + c] = a;
            sdx[n * C + c] = bb;
            double wc = w ? w[c] : 1.0;
            A += wc * a;
            B += wc * bb;
        }
        if (!gx) continue;
        /* gx = rstd * (w gy - A / M - (x - mean) rstd^2 B / M) */
        double r = rstd[ng], md = mean[ng];
        double c2 = M > 0 ? -r * r * r * B / (double)M : 0.0;
        double c3 = M > 0 ? -r * A / (double)M : 0.0;
        for (int64_t d = 0; d < D; d++) {
            int64_t c = g * D + d;
            double k1 = r * (w ? w[c] : 1.0);
            const float *p = x + (n * C + c) * HW, *q = gy + (n * C + c) * HW;
            float *o = gx + (n * C + c) * HW;
            if (M < GN_SMALL) {
                /* in double: the three terms nearly cancel when a group has
                 * few elements (GN on the 1x1 top levels of an FPN), so B
                 * above and this sum need double products */
                #pragma omp simd
                for (int64_t k = 0; k < HW; k++) o[k] = (float)(k1 * q[k] + c2 * (p[k] - md) + c3);
            } else {
                float k1f = (float)k1, c2f = (float)c2, c3f = (float)(c3 - c2 * (md - (double)m));
                #pragma omp simd
                for (int64_t k = 0; k < HW; k++) o[k] = k1f * q[k] + c2f * (p[k] - m) + c3f;
            }
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

void md__bn_train_stats(const double *m, const double *v, int64_t C, int64_t count, double eps, double momentum,
                        float *running_mean, float *running_var, float *mean, float *invstd) {
    for (int64_t c = 0; c < C; c++) {
        mean[c] = (float)m[c];
        invstd[c] = (float)(1.0 / sqrt(v[c] + eps));
        if (running_mean) running_mean[c] = (float)((1 - momentum) * running_mean[c] + momentum * m[c]);
        if (running_var)
            running_var[c] = (float)((1 - momentum) * running_var[c] +
                                     momentum * v[c] * (double)count / (double)(count - 1));
    }
}

void md__bn_eval_stats(const float *running_mean, const float *running_var, int64_t C, double eps, float *mean,
                       float *invstd) {
    for (int64_t c = 0; c < C; c++) {
        mean[c] = running_mean[c];
        invstd[c] = (float)(1.0 / sqrt((double)running_var[c] + eps));
    }
}
