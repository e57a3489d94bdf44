/* The f64 reference convolution the mixed-precision tests share. */
#ifndef MMDET_TESTS_CONV_REF_H
#define MMDET_TESTS_CONV_REF_H

#include <stdint.h>

typedef struct conv_case { int64_t N, C, H, W, O, K; int stride, pad, dil, groups; } conv_case;

/* Direct convolution and its two gradients in f64, of the operands x, w
 * and gy each passed through `round` (bf16 or fp16 rounding); y, gx and gw
 * accumulate the results and sy, sgx, sgw the sums of |products| per
 * output, for error bounds (all zeroed by the caller). */
void conv_ref(const conv_case *c, float (*round)(float), int64_t OH, int64_t OW, const float *x, const float *w,
              const float *gy, double *y, double *sy, double *gx, double *sgx, double *gw, double *sgw);

#endif
