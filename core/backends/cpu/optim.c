/* CPU optimizer steps, EMA updates, gradient-norm sums and the loss
 * scaler's unscale. */
#include <math.h>
#include "backends/cpu/optim.h"
#include "backends/precision.h"

void md__cpu_sgd_step(int64_t n, float *w, const float *g, float *b, float lr, float wd, float mom, float damp,
                      bool nesterov, bool first) {
    #pragma omp parallel for if (n > 65536) schedule(static)
    for (int64_t k = 0; k < n; k++) {
        float d = g[k] + wd * w[k];
        if (b) {
            b[k] = first ? d : mom * b[k] + (1 - damp) * d;
            d = nesterov ? d + mom * b[k] : b[k];
        }
        w[k] -= lr * d;
    }
}

void md__cpu_adam_step(int64_t n, float *w, const float *g, float *m, float *v, float lr, float wd, float b1,
                       float b2, float eps, float step_size, float sbc2, bool decoupled) {
    #pragma omp parallel for if (n > 65536) schedule(static)
    for (int64_t k = 0; k < n; k++) {
        float d = g[k];
        if (decoupled) w[k] *= 1 - lr * wd;
        else d += wd * w[k];
        m[k] = b1 * m[k] + (1 - b1) * d;
        v[k] = b2 * v[k] + (1 - b2) * d * d;
        w[k] -= step_size * m[k] / (sqrtf(v[k]) / sbc2 + eps);
    }
}

void md__cpu_lerp_f32(float *e, const float *v, int64_t n, float m) {
    for (int64_t k = 0; k < n; k++) e[k] = (1 - m) * e[k] + m * v[k];
}

void md__cpu_swap_f32(float *x, float *y, int64_t n) {
    for (int64_t k = 0; k < n; k++) {
        float t = x[k];
        x[k] = y[k];
        y[k] = t;
    }
}

double md__cpu_pow_sum(const float *x, int64_t n, double p) {
    double s = 0;
    if (p == 2.0) {   /* the usual case: squares, not pow() per element */
        #pragma omp simd reduction(+ : s)
        for (int64_t k = 0; k < n; k++) s += (double)x[k] * x[k];
        return s;
    }
    bool inf = isinf(p);
    for (int64_t k = 0; k < n; k++) {
        double a = fabs((double)x[k]);
        if (inf) s = a > s ? a : s;
        else s += pow(a, p);
    }
    return s;
}

void md__cpu_scale_f64(float *x, int64_t n, double s) {
    for (int64_t k = 0; k < n; k++) x[k] = (float)(x[k] * s);
}

bool md__cpu_unscale_f32(float *g, int64_t n, float inv) {
    int bad = 0;
    #pragma omp simd reduction(| : bad)
    for (int64_t k = 0; k < n; k++) bad |= md__unscale_elem(&g[k], inv);
    return bad != 0;
}
