/* CPU kernels of the mmdet losses: element-wise loss values, and gradients
 * scaled by a per-element coefficient (upstream gradient x reduction scale x
 * weight), so that the weight and the reduction never need a tensor of
 * their own. Raw pointers and sizes, no context. */
#ifndef MMDET_CPU_LOSSES_H
#define MMDET_CPU_LOSSES_H

#include <stdbool.h>
#include <stdint.h>

/* Gradient coefficient of element e: (g ? g[e] : scale) * (w ? w[e] : 1). */
typedef struct md__loss_coef { const float *g; float scale; const float *w; } md__loss_coef;
static inline float md__coef(const md__loss_coef *c, int64_t e) {
    return (c->g ? c->g[e] : c->scale) * (c->w ? c->w[e] : 1.0f);
}

/* Sum of x[0..n) in double over fixed chunks: the same bits for any thread
 * count. */
double md__cpu_sum(const float *x, int64_t n);

/* Cross entropy of logits [n,c] against labels [n] (ignore_index -> 0),
 * times class_w[label] when class_w is given. */
void md__cpu_ce_forward(const float *x, const int64_t *lab, const float *class_w, int64_t n, int64_t c,
                        int64_t ignore, float *loss);
void md__cpu_ce_backward(const float *x, const int64_t *lab, const float *class_w, int64_t n, int64_t c,
                         int64_t ignore, const md__loss_coef *k, float *gx);

/* Binary cross entropy with logits, element-wise. */
void md__cpu_bce_forward(const float *x, const float *t, int64_t n, float *loss);
void md__cpu_bce_backward(const float *x, const float *t, int64_t n, const md__loss_coef *k, float *gx);

/* Sigmoid focal loss of logits [n,c], labels [n] in [0, c] (c: background). */
void md__cpu_focal_forward(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma, float alpha,
                           float *loss);
/* The forward with, in d, each element's derivative before the upstream
 * coefficient (what md__cpu_focal_backward multiplies by md__coef): one
 * pass of exp/log1p for both. NULL d: md__cpu_focal_forward. */
void md__cpu_focal_forward_grad(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma, float alpha,
                                float *loss, float *d);
void md__cpu_focal_backward(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma, float alpha,
                            const md__loss_coef *k, float *gx);

/* Smooth L1 (beta > 0) and L1, element-wise; gp/gt may be NULL. */
void md__cpu_smooth_l1_forward(const float *p, const float *t, int64_t n, float beta, float *loss);
void md__cpu_smooth_l1_backward(const float *p, const float *t, int64_t n, float beta, const md__loss_coef *k,
                                float *gp, float *gt);
void md__cpu_l1_forward(const float *p, const float *t, int64_t n, float *loss);
void md__cpu_l1_backward(const float *p, const float *t, int64_t n, const md__loss_coef *k, float *gp, float *gt);

/* 1 - GIoU of aligned boxes [n,4]; gp/gt may be NULL. */
void md__cpu_giou_forward(const float *p, const float *t, int64_t n, float eps, float *loss);
void md__cpu_giou_backward(const float *p, const float *t, int64_t n, float eps, const md__loss_coef *k,
                           float *gp, float *gt);

/* Row of the first label outside [lo, hi) and != ignore into bad[0] (-1
 * when none), its label into bad[1]. */
void md__cpu_check_labels(const int64_t *lab, int64_t n, int64_t lo, int64_t hi, int64_t ignore, int64_t *bad);
/* Whether some x[e] > 0 (positive) or < 0 (negative). */
bool md__cpu_any_positive(const float *x, int64_t n);
bool md__cpu_any_negative(const float *x, int64_t n);
/* d[e] = l[e] * w[e] (d may be l). */
void md__cpu_weighted(const float *l, const float *w, int64_t n, float *d);
/* out[e] = coef(e) * (mul ? mul[e] : 1). */
void md__cpu_coef_fill(int64_t n, const md__loss_coef *k, const float *mul, float *out);
/* out[e] = (t[e] >= 0 ? 1 : 0) * (w ? w[e] : 1). */
void md__cpu_bce_mask_weight(const float *t, const float *w, int64_t n, float *out);
/* out[i] = mean of the 4 weights of box i, in float. */
void md__cpu_giou_weight_mean(const float *w, int64_t n, float *out);
/* gx[e] = (float)(coef(e) * (double)d[e]): focal backward from the
 * derivatives md__cpu_focal_forward_grad wrote. */
void md__cpu_focal_backward_saved(const float *d, int64_t n, const md__loss_coef *k, float *gx);

#endif
