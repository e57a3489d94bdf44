/* CPU kernels of the optimizers and of the EMA hooks' in-place updates
 * (the update rules' front-end is core/runner/optim.c). n contiguous f32 elements;
 * the per-element float expressions are the CUDA kernels' too (optim.cu). */
#ifndef MMDET_CPU_OPTIM_H
#define MMDET_CPU_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

/* d = g + wd w; with a buffer: buf = first ? d : mom buf + (1 - damp) d,
 * d = nesterov ? d + mom buf : buf; w -= lr d. */
void md__cpu_sgd_step(int64_t n, float *w, const float *g, float *buf, float lr, float wd, float mom, float damp,
                      bool nesterov, bool first);
/* Adam (decoupled false) / AdamW (true) with the step's corrections
 * step_size = lr / (1 - b1^t) and sbc2 = sqrt(1 - b2^t). */
void md__cpu_adam_step(int64_t n, float *w, const float *g, float *m, float *v, float lr, float wd, float b1,
                       float b2, float eps, float step_size, float sbc2, bool decoupled);
/* dst = (1 - w) dst + w src, the float expression of mmdet's EMA hooks. */
void md__cpu_lerp_f32(float *dst, const float *src, int64_t n, float w);
void md__cpu_swap_f32(float *a, float *b, int64_t n);
/* Sum of |x|^p in double: p = 2 squares, p = infinity the maximum. */
double md__cpu_pow_sum(const float *x, int64_t n, double p);
/* x = (float)(x * s) in double (gradient clipping). */
void md__cpu_scale_f64(float *x, int64_t n, double s);
/* GradScaler.unscale_ of one buffer: g *= inv, each value checked before
 * its multiply (md__unscale_elem, backends/precision.h, which the CUDA
 * kernel runs too); true when some value was inf or NaN. */
bool md__cpu_unscale_f32(float *g, int64_t n, float inv);

#endif
