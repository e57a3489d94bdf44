/* CPU 2-D convolution kernels (NCHW, f32): im2col + GEMM, tiled over output
 * columns so that each OpenMP thread works on a cache-sized column block,
 * on the packed AVX-512/AVX2 GEMM of conv_gemm.h or with single-threaded
 * OpenBLAS calls (no nested BLAS threading); md__convk() says which. The
 * scratch size depends on that choice: take md__conv2d_work_floats and run
 * the kernel with the same choice in force. */
#ifndef MMDET_CPU_CONV_H
#define MMDET_CPU_CONV_H

#include <stddef.h>
#include <stdint.h>
#include "backends/backend.h"   /* md__conv_shape */

enum { MD_CONV_FWD = 0, MD_CONV_BWD_INPUT, MD_CONV_BWD_WEIGHT };

/* Scratch floats the kernel `which` needs with `nthreads` threads. */
size_t md__conv2d_work_floats(const md__conv_shape *s, int which, int nthreads);

/* y[N,O,OH,OW] = conv(x, w) + bias (bias may be NULL). */
void md__conv2d_forward(const md__conv_shape *s, const float *x, const float *w, const float *bias,
                        float *y, float *work, int nthreads);
/* y = relu?(conv(x, w) * scale[o] + shift[o]) per output channel o, applied
 * as each output tile is stored (scale, shift may be NULL: 1, 0; relu 0 or
 * 1). The same scratch as the forward. md__conv2d_forward is this with
 * shift = bias. */
void md__conv2d_forward_ep(const md__conv_shape *s, const float *x, const float *w, const float *scale,
                           const float *shift, int relu, float *y, float *work, int nthreads);
/* gx[N,C,H,W] = d/dx (overwritten). */
void md__conv2d_backward_input(const md__conv_shape *s, const float *gy, const float *w, float *gx,
                               float *work, int nthreads);
/* gw[O,C/G,KH,KW] = d/dw (overwritten). */
void md__conv2d_backward_weight(const md__conv_shape *s, const float *x, const float *gy, float *gw,
                                float *work, int nthreads);
/* gb[O] = sum of gy over N, OH, OW (overwritten). */
void md__conv2d_backward_bias(const md__conv_shape *s, const float *gy, float *gb, int nthreads);

#endif
