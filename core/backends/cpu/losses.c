/* CPU kernels of the mmdet losses (see losses.h). */
#include <math.h>
#include <stddef.h>
#include "backends/cpu/detection.h"
#include "backends/cpu/losses.h"

#define PAR_MIN 32768   /* elements below which threads cost more than they give */

double md__cpu_sum(const float *x, int64_t n) {
    enum { MAX_CHUNKS = 4096 };
    double part[MAX_CHUNKS];
    int64_t ch = (int64_t)1 << 15;
    if ((n + ch - 1) / ch > MAX_CHUNKS) ch = (n + MAX_CHUNKS - 1) / MAX_CHUNKS;
    int64_t nch = (n + ch - 1) / ch;
    #pragma omp parallel for if (nch > 1) schedule(static)
    for (int64_t k = 0; k < nch; k++) {
        int64_t lo = k * ch, hi = lo + ch < n ? lo + ch : n;
        double s = 0;
        for (int64_t i = lo; i < hi; i++) s += x[i];
        part[k] = s;
    }
    double s = 0;
    for (int64_t k = 0; k < nch; k++) s += part[k];
    return s;
}

/* log(1 + exp(v)) without overflow. */
static inline double softplus(double v) { return v > 0 ? v + log1p(exp(-v)) : log1p(exp(v)); }
static inline double sigmoid(double v) {
    if (v >= 0) return 1.0 / (1.0 + exp(-v));
    double e = exp(v);
    return e / (1.0 + e);
}

void md__cpu_ce_forward(const float *x, const int64_t *lab, const float *class_w, int64_t n, int64_t c,
                        int64_t ignore, float *loss) {
    #pragma omp parallel for if (n * c > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float *r = x + i * c;
        int64_t y = lab[i];
        if (y == ignore) { loss[i] = 0.0f; continue; }
        float m = r[0];
        for (int64_t j = 1; j < c; j++) m = r[j] > m ? r[j] : m;
        double s = 0;
        for (int64_t j = 0; j < c; j++) s += exp((double)r[j] - m);
        double l = (double)m + log(s) - (double)r[y];
        loss[i] = (float)(class_w ? class_w[y] * l : l);
    }
}

void md__cpu_ce_backward(const float *x, const int64_t *lab, const float *class_w, int64_t n, int64_t c,
                         int64_t ignore, const md__loss_coef *k, float *gx) {
    #pragma omp parallel for if (n * c > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float *r = x + i * c;
        float *g = gx + i * c;
        int64_t y = lab[i];
        if (y == ignore) {
            for (int64_t j = 0; j < c; j++) g[j] = 0.0f;
            continue;
        }
        double cf = md__coef(k, i) * (class_w ? class_w[y] : 1.0f);
        float m = r[0];
        for (int64_t j = 1; j < c; j++) m = r[j] > m ? r[j] : m;
        double s = 0;
        for (int64_t j = 0; j < c; j++) s += exp((double)r[j] - m);
        double inv = 1.0 / s;
        for (int64_t j = 0; j < c; j++) g[j] = (float)(cf * (exp((double)r[j] - m) * inv - (j == y)));
    }
}

void md__cpu_bce_forward(const float *x, const float *t, int64_t n, float *loss) {
    #pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        loss[i] = (float)((v > 0 ? v : 0) - v * t[i] + log1p(exp(-fabs(v))));
    }
}

void md__cpu_bce_backward(const float *x, const float *t, int64_t n, const md__loss_coef *k, float *gx) {
    #pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) gx[i] = (float)(md__coef(k, i) * (sigmoid(x[i]) - t[i]));
}

/* b^g with the usual gamma = 2 (and 1) as products: pow() was a large part
 * of a RetinaNet step. b*b is the correctly rounded square, as pow gives. */
static inline double pow_gamma(double b, double g) {
    return g == 2.0 ? b * b : g == 1.0 ? b : pow(b, g);
}

/* The logistic pieces of v from one exp: e = exp(-|v|), p = sigmoid(v),
 * q = sigmoid(-v) = 1 - p, sp = softplus(v) = -log(1-p), sn = softplus(-v)
 * = -log p. The same values, bit for bit, as sigmoid() and softplus() above
 * (which take exp of -|v| too), at a quarter of their exp calls. */
typedef struct logistic { double p, q, sp, sn; } logistic;
static inline logistic logistic_of(double v) {
    double e = exp(-fabs(v)), l = log1p(e), r = 1.0 / (1.0 + e), s = e / (1.0 + e);
    logistic o;
    if (v >= 0) {
        o.p = r;
        o.sp = v + l;
        o.sn = l;
    } else {
        o.p = s;
        o.sp = l;
        o.sn = -v + l;
    }
    /* sigmoid(-v): 1/(1+exp(v)) for v <= 0, exp(-v)/(1+exp(-v)) for v > 0 */
    o.q = v > 0 ? s : r;
    return o;
}

/* Positive: alpha (1-p)^gamma * -log p; negative: (1-alpha) p^gamma * -log(1-p),
 * with -log p = softplus(-x) and -log(1-p) = softplus(x). */
void md__cpu_focal_forward(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma, float alpha,
                           float *loss) {
    md__cpu_focal_forward_grad(x, lab, n, c, gamma, alpha, loss, NULL);
}

void md__cpu_focal_forward_grad(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma, float alpha,
                                float *loss, float *d) {
    #pragma omp parallel for if (n * c > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) {
            double v = x[i * c + j], l;
            logistic o = logistic_of(v);
            double p = o.p, q = o.q;
            if (lab[i] == j) {
                l = alpha * pow_gamma(1.0 - p, gamma) * o.sn;
                if (d) d[i * c + j] = (float)(alpha * pow_gamma(q, gamma) * (-gamma * p * o.sn - q));
            } else {
                l = (1.0 - alpha) * pow_gamma(p, gamma) * o.sp;
                if (d) d[i * c + j] = (float)((1.0 - alpha) * pow_gamma(p, gamma) * (gamma * q * o.sp + p));
            }
            loss[i * c + j] = (float)l;
        }
}

void md__cpu_focal_backward(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma, float alpha,
                            const md__loss_coef *k, float *gx) {
    #pragma omp parallel for if (n * c > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) {
            int64_t e = i * c + j;
            logistic o = logistic_of(x[e]);
            double p = o.p, q = o.q, d;
            if (lab[i] == j) d = alpha * pow_gamma(q, gamma) * (-gamma * p * o.sn - q);
            else d = (1.0 - alpha) * pow_gamma(p, gamma) * (gamma * q * o.sp + p);
            gx[e] = (float)(md__coef(k, e) * d);
        }
}

void md__cpu_smooth_l1_forward(const float *p, const float *t, int64_t n, float beta, float *loss) {
    #pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float d = fabsf(p[i] - t[i]);
        loss[i] = d < beta ? 0.5f * d * d / beta : d - 0.5f * beta;
    }
}

void md__cpu_smooth_l1_backward(const float *p, const float *t, int64_t n, float beta, const md__loss_coef *k,
                                float *gp, float *gt) {
    #pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float diff = p[i] - t[i], d = fabsf(diff);
        float sgn = (diff > 0) - (diff < 0);
        float g = md__coef(k, i) * (d < beta ? d / beta : 1.0f) * sgn;
        if (gp) gp[i] = g;
        if (gt) gt[i] = -g;
    }
}

void md__cpu_l1_forward(const float *p, const float *t, int64_t n, float *loss) {
    #pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) loss[i] = fabsf(p[i] - t[i]);
}

void md__cpu_l1_backward(const float *p, const float *t, int64_t n, const md__loss_coef *k, float *gp, float *gt) {
    #pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float diff = p[i] - t[i];
        float g = md__coef(k, i) * (float)((diff > 0) - (diff < 0));
        if (gp) gp[i] = g;
        if (gt) gt[i] = -g;
    }
}

void md__cpu_giou_forward(const float *p, const float *t, int64_t n, float eps, float *loss) {
    #pragma omp parallel for if (n > PAR_MIN / 8) schedule(static)
    for (int64_t i = 0; i < n; i++) loss[i] = 1.0f - md__iou_pair(p + 4 * i, t + 4 * i, 2, eps);
}

void md__cpu_giou_backward(const float *p, const float *t, int64_t n, float eps, const md__loss_coef *k,
                           float *gp, float *gt) {
    #pragma omp parallel for if (n > PAR_MIN / 8) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float ga[4], gb[4];
        md__iou_pair_backward(p + 4 * i, t + 4 * i, 2, eps, -md__coef(k, i), ga, gb);
        for (int j = 0; j < 4; j++) {
            if (gp) gp[4 * i + j] = ga[j];
            if (gt) gt[4 * i + j] = gb[j];
        }
    }
}

void md__cpu_check_labels(const int64_t *lab, int64_t n, int64_t lo, int64_t hi, int64_t ignore, int64_t *bad) {
    bad[0] = -1;
    bad[1] = 0;
    for (int64_t i = 0; i < n && bad[0] < 0; i++)
        if (lab[i] != ignore && (lab[i] < lo || lab[i] >= hi)) bad[0] = i, bad[1] = lab[i];
}

bool md__cpu_any_positive(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (x[i] > 0) return true;
    return false;
}

bool md__cpu_any_negative(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (x[i] < 0) return true;
    return false;
}

void md__cpu_weighted(const float *l, const float *w, int64_t n, float *d) {
    #pragma omp parallel for if (n > 65536) schedule(static)
    for (int64_t e = 0; e < n; e++) d[e] = l[e] * w[e];
}

void md__cpu_coef_fill(int64_t n, const md__loss_coef *k, const float *mul, float *out) {
    if (mul) for (int64_t e = 0; e < n; e++) out[e] = md__coef(k, e) * mul[e];
    else for (int64_t e = 0; e < n; e++) out[e] = md__coef(k, e);
}

void md__cpu_bce_mask_weight(const float *t, const float *w, int64_t n, float *out) {
    for (int64_t e = 0; e < n; e++) out[e] = (t[e] >= 0 ? 1.0f : 0.0f) * (w ? w[e] : 1.0f);
}

void md__cpu_giou_weight_mean(const float *w, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = (w[4 * i] + w[4 * i + 1] + w[4 * i + 2] + w[4 * i + 3]) / 4.0f;
}

void md__cpu_focal_backward_saved(const float *d, int64_t n, const md__loss_coef *k, float *gx) {
    #pragma omp parallel for if (n > 65536) schedule(static)
    for (int64_t e = 0; e < n; e++) gx[e] = (float)(md__coef(k, e) * (double)d[e]);
}
