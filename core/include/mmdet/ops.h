/* The operators: PyTorch semantics unless noted (mmcv/mmdet semantics for the
 * detection ops and losses). Every op allocates its result in the step arena,
 * records itself on the tape when differentiable, and fails through the
 * context's sticky error (tensor.h). Index tensors are i64; masks are u8.
 * docs/ops.md lists each op with its semantics and tested tolerance.
 */
#ifndef MMDET_OPS_H
#define MMDET_OPS_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_DIM_ALL (-1000)   /* reduce over every dimension */

/* ---- elementwise, broadcasting (core/ops/op_elementwise.c) ---- */
md_tensor *md_add(md_ctx *ctx, md_tensor *a, md_tensor *b);
/* a + b written into a's storage (the result aliases a): same rules as
 * md_relu_ for a; b of a's shape. Otherwise md_add. */
md_tensor *md_add_(md_ctx *ctx, md_tensor *a, md_tensor *b);
md_tensor *md_sub(md_ctx *ctx, md_tensor *a, md_tensor *b);
md_tensor *md_mul(md_ctx *ctx, md_tensor *a, md_tensor *b);
md_tensor *md_div(md_ctx *ctx, md_tensor *a, md_tensor *b);
md_tensor *md_add_scalar(md_ctx *ctx, md_tensor *a, double s);
md_tensor *md_mul_scalar(md_ctx *ctx, md_tensor *a, double s);
md_tensor *md_neg(md_ctx *ctx, md_tensor *a);
md_tensor *md_relu(md_ctx *ctx, md_tensor *a);
/* relu writing into a's storage (the result aliases it). Only for a tensor
 * used nowhere else whose maker's backward does not read it (the output of
 * conv2d, linear, batch_norm2d or add, consumed only by this relu).
 * Parameters, leaves and views get md_relu. */
md_tensor *md_relu_(md_ctx *ctx, md_tensor *a);
md_tensor *md_sigmoid(md_ctx *ctx, md_tensor *a);
md_tensor *md_exp(md_ctx *ctx, md_tensor *a);
md_tensor *md_log(md_ctx *ctx, md_tensor *a);
md_tensor *md_sqrt(md_ctx *ctx, md_tensor *a);
md_tensor *md_abs(md_ctx *ctx, md_tensor *a);
md_tensor *md_atan(md_ctx *ctx, md_tensor *a);   /* gradient 1 / (1 + x^2) */
/* lo/hi may be -INFINITY/INFINITY for no bound; gradient 0 outside. */
md_tensor *md_clamp(md_ctx *ctx, md_tensor *a, double lo, double hi);
md_tensor *md_pow_scalar(md_ctx *ctx, md_tensor *a, double p);
md_tensor *md_cast(md_ctx *ctx, md_tensor *a, md_dtype dt);   /* not differentiable */

/* comparisons and logic (u8 results, never differentiable) */
md_tensor *md_gt(md_ctx *ctx, md_tensor *a, md_tensor *b);
md_tensor *md_ge(md_ctx *ctx, md_tensor *a, md_tensor *b);
md_tensor *md_lt(md_ctx *ctx, md_tensor *a, md_tensor *b);
md_tensor *md_le(md_ctx *ctx, md_tensor *a, md_tensor *b);
md_tensor *md_eq(md_ctx *ctx, md_tensor *a, md_tensor *b);
md_tensor *md_ne(md_ctx *ctx, md_tensor *a, md_tensor *b);
md_tensor *md_gt_scalar(md_ctx *ctx, md_tensor *a, double s);
md_tensor *md_ge_scalar(md_ctx *ctx, md_tensor *a, double s);
md_tensor *md_lt_scalar(md_ctx *ctx, md_tensor *a, double s);
md_tensor *md_le_scalar(md_ctx *ctx, md_tensor *a, double s);
md_tensor *md_eq_scalar(md_ctx *ctx, md_tensor *a, double s);
md_tensor *md_logical_and(md_ctx *ctx, md_tensor *a, md_tensor *b);
md_tensor *md_logical_or(md_ctx *ctx, md_tensor *a, md_tensor *b);
md_tensor *md_logical_not(md_ctx *ctx, md_tensor *a);
/* where(cond, a, b), broadcasting; differentiable in a and b. */
md_tensor *md_where(md_ctx *ctx, md_tensor *cond, md_tensor *a, md_tensor *b);

/* ---- softmax and reductions (core/ops/op_reduce.c) ---- */
md_tensor *md_softmax(md_ctx *ctx, md_tensor *a, int dim);
md_tensor *md_log_softmax(md_ctx *ctx, md_tensor *a, int dim);
/* dim may be negative, or MD_DIM_ALL (then keepdim is ignored: a scalar). */
md_tensor *md_sum(md_ctx *ctx, md_tensor *a, int dim, bool keepdim);
md_tensor *md_mean(md_ctx *ctx, md_tensor *a, int dim, bool keepdim);
/* Max over dim: values (differentiable, to the first maximum) and, when
 * `indices` is not NULL, the i64 argmax. */
md_tensor *md_max(md_ctx *ctx, md_tensor *a, int dim, bool keepdim, md_tensor **indices);
md_tensor *md_argmax(md_ctx *ctx, md_tensor *a, int dim, bool keepdim);

/* ---- shapes and views (core/ops/op_shape.c); views share data where
 * PyTorch's do ---- */
/* One entry of shape may be -1. A non-contiguous input is copied. */
md_tensor *md_reshape(md_ctx *ctx, md_tensor *a, int ndim, const int64_t *shape);
md_tensor *md_permute(md_ctx *ctx, md_tensor *a, const int *perm);
md_tensor *md_transpose(md_ctx *ctx, md_tensor *a, int d0, int d1);
md_tensor *md_flatten(md_ctx *ctx, md_tensor *a, int start_dim, int end_dim);
md_tensor *md_unsqueeze(md_ctx *ctx, md_tensor *a, int dim);
md_tensor *md_squeeze(md_ctx *ctx, md_tensor *a, int dim);
md_tensor *md_contiguous(md_ctx *ctx, md_tensor *a);   /* a itself if already */
md_tensor *md_expand(md_ctx *ctx, md_tensor *a, int ndim, const int64_t *shape);
md_tensor *md_cat(md_ctx *ctx, md_tensor *const *ts, int n, int dim);
md_tensor *md_stack(md_ctx *ctx, md_tensor *const *ts, int n, int dim);
/* Sections of `sizes[n]` along dim into out[n]; returns 0 or -1. */
int md_split(md_ctx *ctx, md_tensor *a, const int64_t *sizes, int n, int dim, md_tensor **out);
/* a[..., start:end:step, ...] along dim (negative and clamped like Python). */
md_tensor *md_slice(md_ctx *ctx, md_tensor *a, int dim, int64_t start, int64_t end, int64_t step);

/* ---- indexing (core/ops/op_index.c) ---- */
md_tensor *md_index_select(md_ctx *ctx, md_tensor *a, int dim, md_tensor *index);
md_tensor *md_gather(md_ctx *ctx, md_tensor *a, int dim, md_tensor *index);
/* Returns a copy of `a` with src scatter-added at index along dim. */
md_tensor *md_scatter_add(md_ctx *ctx, md_tensor *a, int dim, md_tensor *index, md_tensor *src);
/* Elements of a where mask (broadcast to a) is non-zero, as a 1-D tensor;
 * with a mask of a's leading dims, whole rows: mask [N] on a [N, 4] -> [M, 4]. */
md_tensor *md_masked_select(md_ctx *ctx, md_tensor *a, md_tensor *mask);
/* Indices (i64 [M]) of the non-zero elements of a 1-D tensor. */
md_tensor *md_nonzero(md_ctx *ctx, md_tensor *a);

/* ---- sorting (core/ops/op_sort.c); ties keep the lower index first
 * (stable) ---- */
md_tensor *md_sort(md_ctx *ctx, md_tensor *a, int dim, bool descending, md_tensor **indices);
md_tensor *md_argsort(md_ctx *ctx, md_tensor *a, int dim, bool descending);
/* Values (differentiable) and optional indices of the k largest/smallest. */
md_tensor *md_topk(md_ctx *ctx, md_tensor *a, int64_t k, int dim, bool largest, md_tensor **indices);
/* The order torch.sort(v, descending=True) gives on the CPU (PyTorch 1.13,
 * stable=False: libstdc++'s std::sort, an introsort, NaN first), which is
 * not stable: equal values come out as that algorithm leaves them. mmdet's
 * nms_pre cuts (sort, then the first k) and mmcv's nms inherit that order
 * for tied scores, which a trained model has plenty of (sigmoid and softmax
 * round to the same float near 1). idx[0..n) receives the indices of v in
 * that order. Host arrays; returns 0, or -1 when out of memory. */
int md_sort_order_torch(const float *v, int64_t n, int64_t *idx);

/* ---- linear algebra (core/ops/op_linear.c; OpenBLAS on the CPU) ---- */
/* [M,K]x[K,N], or batched [B,M,K]x[B,K,N]. */
md_tensor *md_matmul(md_ctx *ctx, md_tensor *a, md_tensor *b);
/* x [N, in] (or [..., in]), w [out, in], bias [out] or NULL. */
md_tensor *md_linear(md_ctx *ctx, md_tensor *x, md_tensor *w, md_tensor *bias);

/* ---- convolution, normalisation, pooling, resampling (core/ops/op_conv.c,
 * op_norm.c, op_pool.c) ---- */
typedef struct md_conv2d_params {
    int stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups;
} md_conv2d_params;
#define MD_CONV2D(stride, pad) ((md_conv2d_params){ (stride), (stride), (pad), (pad), 1, 1, 1 })
/* x [N,C,H,W], w [O, C/groups, kh, kw], bias [O] or NULL. */
md_tensor *md_conv2d(md_ctx *ctx, md_tensor *x, md_tensor *w, md_tensor *bias, md_conv2d_params p);

/* Deformable convolution, mmcv 1.x's deform_conv2d (DCNv1): each kernel
 * tap samples x bilinearly at its grid position plus its offset, with
 * mmcv's border rule (zero outside (-1, H) x (-1, W), missing neighbours
 * zero). x [N, C, H, W]; offset [N, 2 * deform_groups * kh * kw, OH, OW],
 * (dy, dx) per tap, taps row-major, deform group g taking input channels
 * [g C/dg, (g+1) C/dg); w [O, C/groups, kh, kw]; no bias (as mmcv's).
 * Differentiable in x, offset and w. Not exportable to ONNX (an error). */
md_tensor *md_deform_conv2d(md_ctx *ctx, md_tensor *x, md_tensor *offset, md_tensor *w, md_conv2d_params p,
                            int deform_groups);
/* mmcv's modulated_deform_conv2d (DCNv2): the same with each sample times
 * its mask value (mask [N, deform_groups * kh * kw, OH, OW]) and a bias
 * [O] (may be NULL). Differentiable in every input. */
md_tensor *md_modulated_deform_conv2d(md_ctx *ctx, md_tensor *x, md_tensor *offset, md_tensor *mask, md_tensor *w,
                                      md_tensor *bias, md_conv2d_params p, int deform_groups);

/* Inference convolution with its per-output-channel epilogue applied as
 * the output is stored (one pass over y instead of one per layer):
 *   y[n, o] = act(scale[o] * (conv(x, w)[n, o] + bias[o]) + shift[o])
 * bias, scale and shift ([O] f32, each may be NULL: 0, 1, 0), act ReLU when
 * `relu`. Eval-mode BatchNorm folds into scale/shift (md_batch_norm_fold).
 * When a gradient is needed (grad mode on and an input requires grad) or
 * x's backend has no fused kernel (CUDA today), it runs the unfused ops
 * (conv2d, mul, add, relu), so it is differentiable and device-safe. Fused results differ from the
 * unfused ops' only by rounding (< 1e-5 relative, docs/ops-nn.md). */
typedef struct md_conv_epilogue {
    md_tensor *scale, *shift;
    bool relu;
} md_conv_epilogue;
md_tensor *md_conv2d_fused(md_ctx *ctx, md_tensor *x, md_tensor *w, md_tensor *bias, md_conv2d_params p,
                           const md_conv_epilogue *e);
/* Eval-mode BatchNorm as a per-channel affine map, computed in double:
 * scale = weight / sqrt(running_var + eps), shift = bias - running_mean *
 * scale (weight/bias NULL: 1/0). New step tensors [C] in *scale, *shift;
 * CPU tensors only. Returns 0, or -1 after md_op_fail. */
int md_batch_norm_fold(md_ctx *ctx, md_tensor *weight, md_tensor *bias, md_tensor *running_mean,
                       md_tensor *running_var, double eps, md_tensor **scale, md_tensor **shift);

/* Training: batch statistics (biased variance to normalise, unbiased into
 * the running variance), running stats updated in place with `momentum`
 * (PyTorch's convention: new = (1-m)*old + m*batch). Eval: running stats.
 * weight/bias may be NULL (affine off) or not require grad (frozen). */
md_tensor *md_batch_norm2d(md_ctx *ctx, md_tensor *x, md_tensor *weight, md_tensor *bias,
                           md_tensor *running_mean, md_tensor *running_var,
                           bool training, double momentum, double eps);

/* torch.nn.functional.group_norm: x [N, C, *] (any trailing dims), the C
 * channels split into num_groups groups normalised over their channels and
 * positions per sample (biased variance, statistics in double), then the
 * per-channel affine weight/bias [C] (either may be NULL). Differentiable in
 * x, weight and bias. */
md_tensor *md_group_norm(md_ctx *ctx, md_tensor *x, int num_groups, md_tensor *weight, md_tensor *bias,
                         double eps);

md_tensor *md_max_pool2d(md_ctx *ctx, md_tensor *x, int kernel, int stride, int pad, bool ceil_mode);
/* Nearest (PyTorch 'nearest': src = floor(dst * in/out)) to out_h x out_w. */
md_tensor *md_interpolate_nearest(md_ctx *ctx, md_tensor *x, int64_t out_h, int64_t out_w);
/* Nearest to ref's height and width (F.interpolate(x, size=ref.shape[2:]));
 * an ONNX trace reads the size from ref, so the graph takes any size. */
md_tensor *md_interpolate_nearest_like(md_ctx *ctx, md_tensor *x, md_tensor *ref);
/* Same with an integer scale factor (FPN's scale_factor=2). */
md_tensor *md_upsample_nearest(md_ctx *ctx, md_tensor *x, int scale);
/* Bilinear upsampling by an integer scale (PyTorch's upsample with
 * align_corners false, scale_factor `scale`: source (dst + 0.5) / scale -
 * 0.5, clamped to the edges). Composed of slices, scalings and sums (so
 * differentiable, on any device); equal to PyTorch's up to float rounding. */
md_tensor *md_upsample_bilinear(md_ctx *ctx, md_tensor *x, int scale);
/* mmcv's carafe (CARAFE's reassembly, core/ops/op_carafe.c): features
 * [N, C, H, W] f32, masks [N, k*k*G, H*s, W*s] f32 (one k x k kernel per
 * group of C/G channels and output pixel, channel (g*k + i)*k + j) ->
 * [N, C, H*s, W*s]: out[n, c, y, x] = sum over i, j of
 * features[n, c, y/s + i - (k-1)/2, x/s + j - (k-1)/2] * masks[n, (g*k + i)*k + j, y, x]
 * with g = c / (C/G) and taps outside the map skipped. k odd. Differentiable
 * in both inputs. */
md_tensor *md_carafe(md_ctx *ctx, md_tensor *features, md_tensor *masks, int kernel_size, int group_size,
                     int scale_factor);

/* ---- detection ops, mmcv semantics (core/ops/op_detection.c) ---- */
/* feat [N,C,H,W], rois [K,5] (batch index, x1, y1, x2, y2) in image pixels.
 * aligned=true shifts by -0.5 px; sampling_ratio 0 = adaptive ceil(roi/out).
 * Returns [K, C, out_h, out_w]; differentiable in feat. */
md_tensor *md_roi_align(md_ctx *ctx, md_tensor *feat, md_tensor *rois, int out_h, int out_w,
                        double spatial_scale, int sampling_ratio, bool aligned);
/* boxes [N,4] xyxy, scores [N]: indices (i64) of kept boxes in descending
 * score order; IoU as mmcv's nms (offset 0). max_num <= 0: no limit. On the
 * CPU tied scores are visited and returned in the order torch.sort gives
 * them there (md_sort_order_torch), as mmcv's CPU nms does. */
md_tensor *md_nms(md_ctx *ctx, md_tensor *boxes, md_tensor *scores, double iou_thr, int64_t max_num);
/* mmcv batched_nms: per-class NMS via coordinate offsets (class_agnostic
 * ignores idxs). Returns kept indices sorted by score. From mmcv's
 * split_thr (10000) boxes on, as mmcv: one NMS per class, then the kept
 * boxes sorted again (ties fall differently from one global NMS). */
md_tensor *md_batched_nms(md_ctx *ctx, md_tensor *boxes, md_tensor *scores, md_tensor *idxs,
                          double iou_thr, bool class_agnostic, int64_t max_num);
typedef enum md_iou_mode { MD_IOU = 0, MD_IOF, MD_GIOU } md_iou_mode;
/* mmdet bbox_overlaps: a [N,4], b [M,4]; pairwise [N,M] or aligned [N]
 * (N == M). eps 1e-6 as mmdet. Differentiable (GIoU loss needs it). */
md_tensor *md_bbox_overlaps(md_ctx *ctx, md_tensor *a, md_tensor *b, md_iou_mode mode, bool aligned, double eps);

/* ---- losses, mmdet semantics (core/ops/op_losses.c) ----
 * Element-wise loss, times `weight` when given (broadcast), then reduced:
 * NONE keeps elements; SUM sums; MEAN averages, or, when avg_factor >= 0,
 * sums and divides by (avg_factor + FLT_EPSILON) as mmdet's weight_reduce_loss.
 * Pass MD_NO_AVG for no avg_factor. */
typedef enum md_reduction { MD_REDUCE_MEAN = 0, MD_REDUCE_SUM, MD_REDUCE_NONE } md_reduction;
#define MD_NO_AVG (-1.0)
md_tensor *md_weight_reduce_loss(md_ctx *ctx, md_tensor *loss, md_tensor *weight,
                                 md_reduction red, double avg_factor);
/* logits [N,C], labels i64 [N]; class_weight [C] or NULL; labels equal to
 * ignore_index (mmdet: -100) contribute 0. MEAN without avg_factor divides
 * by N, ignored rows included (mmdet 2.28's default avg_non_ignore=False);
 * for avg_non_ignore=True pass avg_factor = the number of valid labels,
 * which is exactly what mmdet computes. */
md_tensor *md_loss_cross_entropy(md_ctx *ctx, md_tensor *logits, md_tensor *labels, md_tensor *weight,
                                 md_tensor *class_weight, md_reduction red, double avg_factor,
                                 int64_t ignore_index);
/* pred, target same shape (target float). */
md_tensor *md_loss_bce_with_logits(md_ctx *ctx, md_tensor *pred, md_tensor *target, md_tensor *weight,
                                   md_reduction red, double avg_factor);
/* pred [N,C] logits; labels i64 [N] in [0, C] (C = background, all-negative);
 * mmcv sigmoid_focal_loss. weight [N] or [N,C] or NULL. */
md_tensor *md_loss_sigmoid_focal(md_ctx *ctx, md_tensor *pred, md_tensor *labels, md_tensor *weight,
                                 double gamma, double alpha, md_reduction red, double avg_factor);
md_tensor *md_loss_smooth_l1(md_ctx *ctx, md_tensor *pred, md_tensor *target, md_tensor *weight,
                             double beta, md_reduction red, double avg_factor);
md_tensor *md_loss_l1(md_ctx *ctx, md_tensor *pred, md_tensor *target, md_tensor *weight,
                      md_reduction red, double avg_factor);
/* pred, target [N,4] xyxy: 1 - GIoU (eps 1e-7 as mmdet's GIoULoss). */
md_tensor *md_loss_giou(md_ctx *ctx, md_tensor *pred, md_tensor *target, md_tensor *weight,
                        double eps, md_reduction red, double avg_factor);

#ifdef __cplusplus
}
#endif
#endif
