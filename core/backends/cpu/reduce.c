/* CPU reduction and softmax kernels. */
/* FP traps are never enabled here; without this GCC will not if-convert the
 * clamps and selects of the float loops, and so not vectorise them. */
#pragma GCC optimize("no-trapping-math")
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "backends/cpu/elementwise.h"
#include "backends/cpu/elementwise_math.h"
#include "backends/cpu/reduce.h"

#define CHUNK 16384   /* fixed partial-sum chunk: same result on any thread count */
#define IBLK 256      /* inner block for strided reductions */

/* Sum of a contiguous run in double, split into fixed chunks. */
static double sum_run(const float *x, int64_t n) {
    if (n <= CHUNK) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += x[i];
        return s;
    }
    int64_t nc = (n + CHUNK - 1) / CHUNK;
    double *part = malloc(sizeof(double) * (size_t)nc);
    if (!part) {   /* no memory for partials: a serial sum is still exact enough */
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += x[i];
        return s;
    }
    #pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nc; c++) {
        int64_t lo = c * CHUNK, hi = lo + CHUNK < n ? lo + CHUNK : n;
        double s = 0;
        for (int64_t i = lo; i < hi; i++) s += x[i];
        part[c] = s;
    }
    double s = 0;
    for (int64_t c = 0; c < nc; c++) s += part[c];
    free(part);
    return s;
}

void md__cpu_sum_f32(const float *x, int64_t outer, int64_t n, int64_t inner, float scale, float *out) {
    int64_t total = outer * n * inner;
    if (outer * inner == 0) return;
    if (inner == 1) {
        if (outer == 1) {
            out[0] = (float)(sum_run(x, n) * scale);
            return;
        }
        #pragma omp parallel for if (total > MD_CPU_PAR_MIN) schedule(static)
        for (int64_t o = 0; o < outer; o++) {
            const float *p = x + o * n;
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += p[i];
            out[o] = (float)(s * scale);
        }
        return;
    }
    int64_t nb = (inner + IBLK - 1) / IBLK;
    #pragma omp parallel for if (total > MD_CPU_PAR_MIN) schedule(static)
    for (int64_t t = 0; t < outer * nb; t++) {
        int64_t o = t / nb, j0 = (t % nb) * IBLK, j1 = j0 + IBLK < inner ? j0 + IBLK : inner;
        double acc[IBLK];
        for (int64_t j = j0; j < j1; j++) acc[j - j0] = 0;
        for (int64_t i = 0; i < n; i++) {
            const float *p = x + (o * n + i) * inner;
            for (int64_t j = j0; j < j1; j++) acc[j - j0] += p[j];
        }
        for (int64_t j = j0; j < j1; j++) out[o * inner + j] = (float)(acc[j - j0] * scale);
    }
}

#define SUM_INT(T)                                                            \
    do {                                                                      \
        const T *p = (const T *)x;                                            \
        for (int64_t o = 0; o < outer; o++)                                   \
            for (int64_t j = 0; j < inner; j++) {                             \
                int64_t s = 0;                                                \
                for (int64_t i = 0; i < n; i++) s += (int64_t)p[(o * n + i) * inner + j]; \
                out[o * inner + j] = s;                                       \
            }                                                                 \
    } while (0)

int md__cpu_sum_int(md_dtype dt, const void *x, int64_t outer, int64_t n, int64_t inner, int64_t *out) {
    switch (dt) {
    case MD_I64: SUM_INT(int64_t); return 0;
    case MD_I32: SUM_INT(int32_t); return 0;
    case MD_U8: SUM_INT(uint8_t); return 0;
    default: return -1;
    }
}

void md__cpu_spread_f32(const float *g, int64_t outer, int64_t n, int64_t inner, float scale, float *out) {
    int64_t total = outer * n * inner;
    #pragma omp parallel for if (total > MD_CPU_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < outer * n; r++) {
        const float *s = g + (r / n) * inner;
        float *d = out + r * inner;
        for (int64_t j = 0; j < inner; j++) d[j] = s[j] * scale;
    }
}

/* Greater, with NaN above everything (PyTorch's max propagates NaN). */
#define MAX_T(T, ISNAN)                                                                   \
    do {                                                                                  \
        const T *p = (const T *)x;                                                        \
        T *v = (T *)vals;                                                                 \
        _Pragma("omp parallel for if (outer * n * inner > MD_CPU_PAR_MIN) schedule(static)") \
        for (int64_t r = 0; r < outer * inner; r++) {                                     \
            int64_t o = r / inner, j = r % inner;                                         \
            const T *q = p + o * n * inner + j;                                           \
            T best = q[0];                                                                \
            int64_t bi = 0;                                                               \
            for (int64_t i = 1; i < n && !ISNAN(best); i++) {                             \
                T c = q[i * inner];                                                       \
                if (c > best || ISNAN(c)) { best = c; bi = i; }                           \
            }                                                                             \
            if (v) v[r] = best;                                                           \
            if (idx) idx[r] = bi;                                                         \
        }                                                                                 \
    } while (0)

#define NOT_NAN(v) 0
int md__cpu_max(md_dtype dt, const void *x, int64_t outer, int64_t n, int64_t inner, void *vals, int64_t *idx) {
    switch (dt) {
    case MD_F32: MAX_T(float, isnan); return 0;
    case MD_I64: MAX_T(int64_t, NOT_NAN); return 0;
    case MD_I32: MAX_T(int32_t, NOT_NAN); return 0;
    case MD_U8: MAX_T(uint8_t, NOT_NAN); return 0;
    default: return -1;
    }
}

void md__cpu_softmax_f32(const float *x, int64_t outer, int64_t n, int64_t inner, bool log, float *y) {
    int64_t total = outer * n * inner;
    if (inner == 1) {   /* the common case: split into vectorisable passes */
        #pragma omp parallel for if (total > MD_CPU_PAR_MIN) schedule(static)
        for (int64_t o = 0; o < outer; o++) {
            const float *p = x + o * n;
            float *q = y + o * n;
            float m = -INFINITY;
            #pragma omp simd reduction(max : m)
            for (int64_t i = 0; i < n; i++) m = p[i] > m ? p[i] : m;
            #pragma omp simd
            for (int64_t i = 0; i < n; i++) q[i] = md__expf(p[i] - m);
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += q[i];
            if (log) {
                float ls = logf((float)s) + m;
                #pragma omp simd
                for (int64_t i = 0; i < n; i++) q[i] = p[i] - ls;
            } else {
                float inv = (float)(1.0 / s);
                #pragma omp simd
                for (int64_t i = 0; i < n; i++) q[i] *= inv;
            }
        }
        return;
    }
    #pragma omp parallel for if (total > MD_CPU_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < outer * inner; r++) {
        int64_t o = r / inner, j = r % inner;
        const float *p = x + o * n * inner + j;
        float *q = y + o * n * inner + j;
        float m = -INFINITY;
        for (int64_t i = 0; i < n; i++) m = p[i * inner] > m ? p[i * inner] : m;
        double s = 0;
        if (log) {
            for (int64_t i = 0; i < n; i++) s += md__expf(p[i * inner] - m);
            float ls = logf((float)s) + m;
            for (int64_t i = 0; i < n; i++) q[i * inner] = p[i * inner] - ls;
        } else {
            for (int64_t i = 0; i < n; i++) { q[i * inner] = md__expf(p[i * inner] - m); s += q[i * inner]; }
            float inv = (float)(1.0 / s);
            for (int64_t i = 0; i < n; i++) q[i * inner] *= inv;
        }
    }
}

void md__cpu_softmax_backward_f32(const float *y, const float *g, int64_t outer, int64_t n, int64_t inner,
                                  bool log, float *gx) {
    int64_t total = outer * n * inner;
    #pragma omp parallel for if (total > MD_CPU_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < outer * inner; r++) {
        int64_t o = r / inner, j = r % inner, base = o * n * inner + j;
        double s = 0;
        if (log) {
            for (int64_t i = 0; i < n; i++) s += g[base + i * inner];
            for (int64_t i = 0; i < n; i++) {
                int64_t k = base + i * inner;
                gx[k] = g[k] - md__expf(y[k]) * (float)s;
            }
        } else {
            for (int64_t i = 0; i < n; i++) s += (double)g[base + i * inner] * y[base + i * inner];
            for (int64_t i = 0; i < n; i++) {
                int64_t k = base + i * inner;
                gx[k] = y[k] * (g[k] - (float)s);
            }
        }
    }
}

void md__cpu_max_backward_f32(const float *g, const int64_t *idx, int64_t outer, int64_t n, int64_t inner,
                              float *gx) {
    for (int64_t r = 0; r < outer * inner; r++) {
        int64_t o = r / inner, j = r % inner;
        gx[(o * n + idx[r]) * inner + j] += g[r];
    }
}
