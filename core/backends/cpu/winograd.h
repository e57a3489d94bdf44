/* Winograd F(2x2, 3x3) convolutions on the packed GEMM (conv_gemm.h).
 *
 * A 3x3 stride-1 convolution computes each 2x2 block of outputs from a
 * 4x4 block of inputs with 16 products per (output, input) channel pair
 * instead of 36 (Lavin & Gray, 2016): inputs and weights are transformed
 * into 16 "frequency" planes, the planes are multiplied as 16 independent
 * GEMMs [O, C] x [C, tiles] on the micro-kernel, and the products are
 * transformed back. 2.25x fewer multiply-adds for the transforms' cost;
 * the transforms only add and halve, so the rounding stays that of a
 * direct sum of a few more terms (the tests bound it at the golden
 * tolerances).
 *
 * Taken for groups 1, 3x3, stride 1, dilation 1, enough channels and maps of
 * at least 4x4 (see
 * md__winograd_applies) when a packed kernel is in force, by the forward
 * pass, by the stride-1 input gradient (itself such a convolution of gy
 * with the flipped, transposed weight) and by the weight gradient (16
 * GEMMs over tiles of the transformed gy and x). $MMDET_CPU_WINOGRAD=0
 * turns it off.
 * Every output element is summed in an order fixed by the shape, so results
 * do not depend on the thread count. */
#ifndef MMDET_CPU_WINOGRAD_H
#define MMDET_CPU_WINOGRAD_H

#include <stddef.h>
#include "backends/backend.h"   /* md__conv_shape */
#include "backends/cpu/conv_gemm.h"

/* Whether shape s runs through Winograd (with the switch's current value). */
int md__winograd_applies(const md__conv_shape *s);
/* Turns the path on (1), off (0) or back to $MMDET_CPU_WINOGRAD (-1). Not
 * thread-safe: for tests and benchmarks, between convolutions. */
void md__winograd_set(int on);

/* Scratch floats md__winograd_forward needs. */
size_t md__winograd_work_floats(const md__gemm_kernel *kn, const md__conv_shape *s, int nthreads);

/* y = ep(conv(x, w)) for a shape that applies (ep as the micro-kernels'
 * store phase: per output channel scale, shift, ReLU; NULL for none). With
 * `flip` set, s is the transposed convolution of flip's input gradient
 * (s->C = flip->O, s->O = flip->C) and w is flip's weight, read flipped in
 * space and with its channels swapped. */
void md__winograd_forward(const md__gemm_kernel *kn, const md__conv_shape *s, const float *x, const float *w,
                          const md__conv_shape *flip, const md__epilogue *ep, float *y, float *work, int nthreads);

/* Scratch floats md__winograd_backward_weight needs. */
size_t md__winograd_weight_work_floats(const md__gemm_kernel *kn, const md__conv_shape *s, int nthreads);

/* gw = dL/dw of conv(x, w) for a shape that applies, from gy (written, not
 * accumulated). Bitwise the same for any thread count. */
void md__winograd_backward_weight(const md__gemm_kernel *kn, const md__conv_shape *s, const float *x,
                                  const float *gy, float *gw, float *work, int nthreads);

#endif
