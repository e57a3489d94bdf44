/* CPU kernels of the detection ops (RoIAlign, NMS, box overlaps): raw
 * pointers and sizes in, no context, so a CUDA backend can mirror them. */
#ifndef MMDET_CPU_DETECTION_H
#define MMDET_CPU_DETECTION_H

#include <stdbool.h>
#include <stdint.h>

/* feat [N,C,H,W], rois [K,5], out [K,C,oh,ow]. Returns 0, or -1 on out of
 * memory. */
int md__cpu_roi_align_forward(const float *feat, int64_t N, int64_t C, int64_t H, int64_t W,
                              const float *rois, int64_t K, int oh, int ow, float spatial_scale,
                              int sampling_ratio, bool aligned, float *out);
/* Adds d(out)/d(feat) * grad_out into grad_feat [N,C,H,W]. Channels are split
 * over threads, each thread visiting RoIs in order: the result does not
 * depend on the thread count. */
int md__cpu_roi_align_backward(const float *grad_out, int64_t N, int64_t C, int64_t H, int64_t W,
                               const float *rois, int64_t K, int oh, int ow, float spatial_scale,
                               int sampling_ratio, bool aligned, float *grad_feat);

/* Greedy NMS over boxes [n,4] (already offset per class by the caller when
 * needed), as mmcv's nms: candidates in torch.sort(descending)'s order on
 * the CPU (ties as that unstable sort leaves them, md__cpu_torch_sort_desc).
 * group[i] in [0, n_groups) restricts suppression to boxes of the same
 * group (NULL: one group). keep receives the kept indices in that score
 * order, at most max_num when max_num > 0. split (with groups): mmcv's
 * batched_nms at split_thr boxes or more, one nms per group over its
 * members taken in index order, the kept boxes then sorted by score again.
 * Returns the count, or -1 on out of memory. */
int64_t md__cpu_nms(const float *boxes, const float *scores, const int64_t *group, int64_t n_groups,
                    int64_t n, float iou_thr, int64_t max_num, bool split, int64_t *keep);

/* mmdet bbox_overlaps on one pair of boxes; mode 0 iou, 1 iof, 2 giou. */
static inline float md__iou_pair(const float *a, const float *b, int mode, float eps) {
    float area1 = (a[2] - a[0]) * (a[3] - a[1]);
    float area2 = (b[2] - b[0]) * (b[3] - b[1]);
    float ltx = a[0] > b[0] ? a[0] : b[0], lty = a[1] > b[1] ? a[1] : b[1];
    float rbx = a[2] < b[2] ? a[2] : b[2], rby = a[3] < b[3] ? a[3] : b[3];
    float w = rbx - ltx, h = rby - lty;
    w = w < 0 ? 0 : w;
    h = h < 0 ? 0 : h;
    float overlap = w * h;
    float uni = mode == 1 ? area1 : area1 + area2 - overlap;
    uni = uni > eps ? uni : eps;
    float iou = overlap / uni;
    if (mode != 2) return iou;
    float elx = a[0] < b[0] ? a[0] : b[0], ely = a[1] < b[1] ? a[1] : b[1];
    float erx = a[2] > b[2] ? a[2] : b[2], ery = a[3] > b[3] ? a[3] : b[3];
    float ew = erx - elx, eh = ery - ely;
    ew = ew < 0 ? 0 : ew;
    eh = eh < 0 ? 0 : eh;
    float ea = ew * eh;
    ea = ea > eps ? ea : eps;
    return iou - (ea - uni) / ea;
}

/* Gradient of md__iou_pair times g into ga[4], gb[4] (overwritten), with
 * PyTorch's conventions at kinks: max/min ties split the gradient in half,
 * clamp(min=0) passes it at exactly 0. */
void md__iou_pair_backward(const float *a, const float *b, int mode, float eps, float g, float *ga, float *gb);

/* out [n,m] pairwise or [n] aligned. */
void md__cpu_bbox_overlaps_forward(const float *a, int64_t n, const float *b, int64_t m, int mode,
                                   bool aligned, float eps, float *out);
/* grad_a [n,4], grad_b [m,4] (either may be NULL), overwritten. */
void md__cpu_bbox_overlaps_backward(const float *a, int64_t n, const float *b, int64_t m, int mode,
                                    bool aligned, float eps, const float *grad_out, float *grad_a,
                                    float *grad_b);

#endif
