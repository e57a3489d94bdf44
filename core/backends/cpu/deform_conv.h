/* CPU deformable convolution (mmcv's DeformConv2d and ModulatedDeformConv2d,
 * NCHW f32): columns sampled bilinearly at the offset taps
 * (backends/deform_sample.h), then the convolution's GEMM. The scratch size
 * depends on the GEMM kernel in force (conv_gemm.h's md__convk): take
 * md__deform_conv2d_work_floats and run the kernel with the same choice. */
#ifndef MMDET_CPU_DEFORM_CONV_H
#define MMDET_CPU_DEFORM_CONV_H

#include <stddef.h>
#include "backends/backend.h"   /* md__deform_shape */

enum { MD_DCN_FWD = 0, MD_DCN_BWD };

/* Scratch floats the kernel `which` needs. */
size_t md__deform_conv2d_work_floats(const md__deform_shape *s, int which, int nthreads);

/* y[N,O,OH,OW] = sum over the taps of w times the sampled input (times the
 * mask; mask NULL: 1), plus bias (NULL: none). */
void md__cpu_deform_conv2d_forward(const md__deform_shape *s, const float *x, const float *off, const float *mask,
                                   const float *w, const float *bias, float *y, float *work, int nthreads);
/* The gradients of that with respect to x, the offsets, the mask and w
 * given gy; each output may be NULL (not wanted) and is overwritten. */
void md__cpu_deform_conv2d_backward(const md__deform_shape *s, const float *x, const float *off, const float *mask,
                                    const float *w, const float *gy, float *gx, float *goff, float *gmask, float *gw,
                                    float *work, int nthreads);

#endif
