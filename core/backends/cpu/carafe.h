/* CPU kernels of mmcv's CARAFE (content-aware reassembly of features):
 * features [N, C, H, W], masks [N, k * k * G, H * s, W * s], output
 * [N, C, H * s, W * s], all f32 and contiguous:
 *
 *   out[n, c, y, x] = sum over (i, j) in k x k of
 *       feat[n, c, y / s + i - (k - 1) / 2, x / s + j - (k - 1) / 2]
 *     * masks[n, (g * k + i) * k + j, y, x],      g = c / (C / G),
 *
 * taps outside the feature map skipped (mmcv's carafe_naive kernel; its
 * carafe kernel computes the same sum). i outer, j inner, summed in float.
 * Parallel over planes, each written by one thread: results do not depend on
 * the thread count. */
#ifndef MMDET_CPU_CARAFE_H
#define MMDET_CPU_CARAFE_H

#include <stdint.h>

void md__cpu_carafe_forward(const float *feat, const float *masks, int64_t N, int64_t C, int64_t H, int64_t W,
                            int k, int G, int s, float *out, int nthreads);
/* grad_feat [N, C, H, W] and grad_masks (either may be NULL) are
 * overwritten with the gradients of sum(out * grad_out). grad_feat sums,
 * for each feature, the outputs reading it in (y, x, i, j) order;
 * grad_masks sums over the group's channels in order. */
void md__cpu_carafe_backward(const float *grad_out, const float *feat, const float *masks, int64_t N, int64_t C,
                             int64_t H, int64_t W, int k, int G, int s, float *grad_feat, float *grad_masks,
                             int nthreads);

#endif
