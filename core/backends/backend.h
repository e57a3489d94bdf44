/* The interface between libmmdet's op front-ends and a device backend. Private
 * to this source tree, not part of the plugin API. Two backends fill it:
 *
 *   - the CPU backend (backends/cpu/table.c), a static table inside
 *     libmmdet, always present;
 *   - the CUDA backend, lib/libmmdet-cuda.so, which libmmdet loads with
 *     libltdl on md_device_init: it calls the library's one exported symbol
 *     `md_backend_cuda` (a function returning the table) and checks `abi`.
 *
 * Each tensor's device selects its table (md__be in device.c). The
 * front-ends (core/ops/op_*.c, core/runner/optim.c) do every check (shapes, dtypes,
 * devices), allocate outputs, record autograd and trace ONNX/FLOPs once,
 * then call the table: they never branch on the device for compute. The
 * backend works on raw pointers and sizes; the CPU kernel each entry names
 * (backends/cpu/) defines its semantics, which the CUDA kernels mirror.
 *
 * Every kernel returns 0, or -1 with a message readable through `error`.
 * Device kernels run asynchronously on the backend's stream in issue order;
 * only `copy` to the host and `sync` wait. A NULL entry means "not
 * implemented on this device": the front-end reports it naming the op and
 * the device (md__no_kernel), except for the optional entries at the end,
 * which the front-end composes from the other entries when NULL.
 *
 * The CUDA runtime keeps one context per process, so the CUDA backend's
 * state (device, stream, cuBLAS/cuDNN handles, workspace) is process-wide
 * too. The CPU backend's kernels need a thread count and scratch memory from
 * the md_ctx whose op runs: `bind` hands it over (md__be calls it). */
#ifndef MMDET_BACKEND_H
#define MMDET_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct md_ctx;   /* libmmdet's context, opaque here */

#define MD_BACKEND_ABI 6
#define MD_BE_MAX_DIMS 6   /* = MD_MAX_DIMS */

/* Shape of a 2-D convolution (NCHW input, OIHW weight). */
typedef struct md__conv_shape {
    int64_t N, C, H, W;      /* input */
    int64_t O, KH, KW;       /* weight [O, C/G, KH, KW] */
    int64_t OH, OW;          /* output */
    int64_t sh, sw, ph, pw, dh, dw, G;
} md__conv_shape;

/* Shape of a deformable convolution (mmcv's deform_conv2d and
 * modulated_deform_conv2d): the convolution's, and DG deform groups, each
 * with its own offsets ([N, DG*2*KH*KW, OH, OW], (dy, dx) per kernel tap,
 * taps row-major) and, modulated, its own mask ([N, DG*KH*KW, OH, OW]). */
typedef struct md__deform_shape {
    md__conv_shape c;
    int64_t DG;
} md__deform_shape;

/* A strided loop over up to 4 operands (operand 0 is the output): dimensions
 * of size 1 dropped and adjacent dimensions merged where every operand allows
 * (md__loop_init in backends/cpu/elementwise.c builds it). Strides are in
 * elements of each operand's own dtype. */
typedef struct md__loop {
    int ndim, nops;
    int64_t numel;
    int64_t shape[MD_BE_MAX_DIMS];
    int64_t st[4][MD_BE_MAX_DIMS];
} md__loop;

typedef enum md__binop {
    MD_BIN_ADD, MD_BIN_SUB, MD_BIN_MUL, MD_BIN_DIV,
    MD_BIN_GT, MD_BIN_GE, MD_BIN_LT, MD_BIN_LE, MD_BIN_EQ, MD_BIN_NE,
    MD_BIN_AND, MD_BIN_OR,
} md__binop;

typedef enum md__unop {
    MD_UN_NEG, MD_UN_RELU, MD_UN_SIGMOID, MD_UN_EXP, MD_UN_LOG, MD_UN_SQRT, MD_UN_ABS,
    MD_UN_CLAMP, MD_UN_POW, MD_UN_ADD_SCALAR, MD_UN_MUL_SCALAR, MD_UN_NOT,
    MD_UN_ATAN,   /* appended: the codes above keep their values */
} md__unop;

enum md__copy_kind { MD_COPY_H2D = 0, MD_COPY_D2H = 1, MD_COPY_D2D = 2 };

/* One tensor of a multi-tensor optimizer step (sgd_step_multi,
 * adam_step_multi): n contiguous f32 elements of weight w and gradient g;
 * state s0 (SGD momentum buffer, NULL without momentum; Adam's exp_avg) and
 * s1 (Adam's exp_avg_sq); the tensor's own lr, weight decay and, for Adam,
 * step size; `first`: the SGD buffer was just made (buf = d). */
typedef struct md__mt_param {
    float *w;
    const float *g;
    float *s0, *s1;
    int64_t n;
    float lr, wd, step_size;
    bool first;
} md__mt_param;

/* Element types as libmmdet numbers them (md_dtype): 0 f32, 1 i64, 2 i32, 3 u8,
 * 4 f16, 5 bf16 (the last two only as compute precisions: set_compute_dtype). */

typedef struct md_backend {
    int abi;                 /* MD_BACKEND_ABI */
    const char *name;        /* "cpu", "cuda": error messages name the device by it */

    /* ---- device and memory ---- */
    /* Selects device `index` and creates the stream and library handles; a
     * second call with the same index is a no-op. Fails with a message when
     * no such device (or no driver) exists. */
    int (*init)(int index);
    /* "NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)" for messages and logs. */
    const char *(*describe)(void);
    /* The message of the last failed call (thread-local). */
    const char *(*error)(void);
    void *(*alloc)(size_t bytes);        /* NULL when out of memory (error set) */
    void (*free)(void *p);
    /* Copies `bytes`; D2H waits for the stream, H2D and D2D are ordered on it. */
    int (*copy)(void *dst, const void *src, size_t bytes, int kind);
    int (*sync)(void);                   /* waits for every queued kernel */
    /* Free and total device memory in bytes. */
    int (*mem_info)(size_t *free_bytes, size_t *total_bytes);

    /* ---- element-wise (backends/cpu/elementwise.h) ---- */
    /* dst[i] = v for n elements of `elem` bytes (1, 4 or 8); v's bits are
     * given as the element's own representation in the low bytes of `bits`. */
    int (*fill)(void *dst, int64_t n, size_t elem, uint64_t bits);
    /* dst = src over the loop (operands: dst, src), any element size: md__cpu_copy. */
    int (*copy_strided)(const md__loop *L, size_t elem, const void *src, void *dst);
    /* out = a op b over the loop (operands: out, a, b), f32 inputs; f32 out
     * for arithmetic, u8 (0/1) for comparisons and logic: md__cpu_binary. */
    int (*binary_f32)(md__binop op, const md__loop *L, const float *a, const float *b, void *out);
    /* Contiguous unary ops with parameters p0, p1: md__cpu_unary_f32 (not MD_UN_NOT). */
    int (*unary_f32)(md__unop op, int64_t n, const float *x, float p0, float p1, float *y);
    /* gx = g * d(op)/dx given x and y = op(x): md__cpu_unary_f32_backward. */
    int (*unary_f32_backward)(md__unop op, int64_t n, const float *x, const float *y, const float *g, float p0,
                              float p1, float *gx);
    /* dst[i] += src[i], contiguous f32 (gradient accumulation, in-place add). */
    int (*add_inplace_f32)(float *dst, const float *src, int64_t n);

    /* ---- reductions (backends/cpu/reduce.h), x seen as [outer, n, inner] ---- */
    /* out[o, j] = scale * sum_i x[o, i, j]: md__cpu_sum_f32. */
    int (*sum_f32)(const float *x, int64_t outer, int64_t n, int64_t inner, float scale, float *out);
    /* out[o, i, j] = scale * g[o, j]: md__cpu_spread_f32. */
    int (*spread_f32)(const float *g, int64_t outer, int64_t n, int64_t inner, float scale, float *out);

    /* ---- matrix product (backends/cpu/gemm.h) ---- */
    /* C[M,N] = alpha op(A) op(B) + beta C, row-major, leading dims in elements. */
    int (*sgemm)(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

    /* ---- convolution (backends/cpu/conv.h); outputs are overwritten ---- */
    int (*conv2d_forward)(const md__conv_shape *s, const float *x, const float *w, const float *bias, float *y);
    int (*conv2d_backward_input)(const md__conv_shape *s, const float *gy, const float *w, float *gx);
    int (*conv2d_backward_weight)(const md__conv_shape *s, const float *x, const float *gy, float *gw);
    int (*conv2d_backward_bias)(const md__conv_shape *s, const float *gy, float *gb);
    /* Deformable convolution (backends/cpu/deform_conv.h, sampling as
     * backends/deform_sample.h): y = conv of the input sampled bilinearly
     * at the offset taps, times the mask (NULL: DCNv1, mask 1), plus bias
     * (may be NULL): md__cpu_deform_conv2d_forward. The backward writes
     * whichever of gx, goff, gmask, gw is not NULL (overwritten); the bias
     * gradient is conv2d_backward_bias's: md__cpu_deform_conv2d_backward. */
    int (*deform_conv2d_forward)(const md__deform_shape *s, const float *x, const float *off, const float *mask,
                                 const float *w, const float *bias, float *y);
    int (*deform_conv2d_backward)(const md__deform_shape *s, const float *x, const float *off, const float *mask,
                                  const float *w, const float *gy, float *gx, float *goff, float *gmask, float *gw);

    /* ---- batch norm over x [N, C, HW] (backends/cpu/norm.h) ---- */
    /* Training: batch mean and biased variance per channel; mean[c] and
     * invstd[c] = 1/sqrt(var + eps) written (f32, device); running stats,
     * when not NULL, become (1-m) r + m stat with the unbiased variance
     * (var * count / (count - 1)); y = (x - mean) invstd w + b (w, b may be
     * NULL). N * HW >= 2. Statistics accumulate in double. */
    int (*batch_norm_train)(const float *x, int64_t N, int64_t C, int64_t HW, const float *w, const float *b,
                            double eps, double momentum, float *running_mean, float *running_var, float *y,
                            float *mean, float *invstd);
    /* Eval: mean = running_mean, invstd from running_var (both written out
     * for backward), then y as above. */
    int (*batch_norm_eval)(const float *x, int64_t N, int64_t C, int64_t HW, const float *w, const float *b,
                           double eps, const float *running_mean, const float *running_var, float *y,
                           float *mean, float *invstd);
    /* md__bn_backward: any of gx, gw, gb may be NULL. */
    int (*batch_norm_backward)(const float *x, const float *gy, int64_t N, int64_t C, int64_t HW,
                               const float *mean, const float *invstd, const float *w, bool batch_stats,
                               float *gx, float *gw, float *gb);

    /* ---- pooling (backends/cpu/pool.h), planes of H x W ---- */
    int (*maxpool2d_forward)(const float *x, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW, int k,
                             int stride, int pad, float *y, int32_t *idx);
    int (*maxpool2d_backward)(const float *gy, const int32_t *idx, int64_t planes, int64_t H, int64_t W,
                              int64_t OH, int64_t OW, float *gx);

    /* ---- optimizers (core/runner/optim.c), n contiguous f32 elements ---- */
    /* d = g + wd w; with momentum: buf = first ? d : mom buf + (1 - damp) d,
     * d = nesterov ? d + mom buf : buf (buf NULL when mom == 0); w -= lr d. */
    int (*sgd_step)(int64_t n, float *w, const float *g, float *buf, float lr, float wd, float mom, float damp,
                    bool nesterov, bool first);
    /* Adam (decoupled false) / AdamW (true), as core/runner/optim.c:
     * step_size = lr / (1 - b1^t), sbc2 = sqrt(1 - b2^t). */
    int (*adam_step)(int64_t n, float *w, const float *g, float *m, float *v, float lr, float wd, float b1,
                     float b2, float eps, float step_size, float sbc2, bool decoupled);

    /* ---- shape, index, norm and softmax family ---- */
    /* Element-wise (backends/cpu/elementwise.c); dtypes as md_dtype numbers them. */
    /* dst = (to) src for n contiguous elements, C conversions (u8 via i64): md__cpu_cast. */
    int (*cast)(int from, int to, int64_t n, const void *src, void *dst);
    /* out = a op b over the loop for i64, i32 or u8 operands of one dtype
     * (no DIV; ADD/SUB/MUL not for u8; AND/OR only u8): md__cpu_binary. */
    int (*binary_int)(md__binop op, int dtype, const md__loop *L, const void *a, const void *b, void *out);
    /* out[i] = x[i] op s (GT..NE), x contiguous of dtype; f32 compares against
     * (float)s, integers against the double: md__cpu_compare_scalar. */
    int (*compare_scalar)(md__binop op, int dtype, int64_t n, const void *x, double s, uint8_t *out);
    /* out = cond ? a : b over the loop (operands: out, cond u8, a, b): md__cpu_where. */
    int (*where)(const md__loop *L, size_t elem, const uint8_t *cond, const void *a, const void *b, void *out);

    /* Indexing (backends/cpu/index.c); index arrays are i64 on the device. */
    /* Range check of idx[0..n) against [0, size): *bad is the first entry out
     * of range (-1 when none) and *val its value. Synchronises (reads back). */
    int (*index_check)(const int64_t *idx, int64_t n, int64_t size, int64_t *bad, int64_t *val);
    /* md__cpu_index_select: out[o, j, :] = a[o, idx[j], :]. */
    int (*index_select)(size_t elem, const void *a, int64_t outer, int64_t n, int64_t inner, const int64_t *idx,
                        int64_t k, void *out);
    /* md__cpu_index_add_f32: gx[o, idx[j], :] += g[o, j, :], the additions into
     * each element in increasing j as the CPU (deterministic, same bits). */
    int (*index_add_f32)(const float *g, int64_t outer, int64_t n, int64_t inner, const int64_t *idx, int64_t k,
                         float *gx);
    /* md__cpu_index_offsets with the index shape and the strides (ndim of
     * them, host arrays) passed by value. */
    int (*index_offsets)(int ndim, const int64_t *ishape, int dim, const int64_t *idx, const int64_t *st,
                         int64_t *off);
    /* md__cpu_take: out[p] = a[off[p]]. */
    int (*take)(size_t elem, const void *a, const int64_t *off, int64_t n, void *out);
    /* md__cpu_put_add: out[off[p]] += src[p] (f32, i64, i32), each element's
     * additions in increasing p as the CPU's serial loop. off[p] < limit. */
    int (*put_add)(int dtype, void *out, const int64_t *off, int64_t n, int64_t limit, const void *src);
    /* Non-zero elements of contiguous x of `ndim` dims `shape` (host array;
     * f32 -0.0 is zero, NaN counts), in increasing order: *count (reads back,
     * synchronises); with out given also out [count, ndim] i64 coordinates
     * (ndim <= 1: out [count] linear positions), as the CPU's md_nonzero. */
    int (*nonzero)(int dtype, const void *x, int ndim, const int64_t *shape, int64_t *out, int64_t *count);

    /* Reductions over x seen as [outer, n, inner] (backends/cpu/reduce.c). */
    /* md__cpu_sum_int: i64 sums of i64, i32 or u8. */
    int (*sum_int)(int dtype, const void *x, int64_t outer, int64_t n, int64_t inner, int64_t *out);
    /* md__cpu_max: first maximum, NaN wins; vals or idx may be NULL; n >= 1. */
    int (*max)(int dtype, const void *x, int64_t outer, int64_t n, int64_t inner, void *vals, int64_t *idx);
    /* max's backward: gx[o, idx[o, j], j] += g[o, j] (gx zeroed by the caller). */
    int (*max_backward_f32)(const float *g, const int64_t *idx, int64_t outer, int64_t n, int64_t inner, float *gx);
    /* md__cpu_softmax_f32 and md__cpu_softmax_backward_f32. */
    int (*softmax_f32)(const float *x, int64_t outer, int64_t n, int64_t inner, bool log, float *y);
    int (*softmax_backward_f32)(const float *y, const float *g, int64_t outer, int64_t n, int64_t inner, bool log,
                                float *gx);

    /* Group norm over x [N, C, HW] in G groups (backends/cpu/norm.c
     * md__gn_forward / md__gn_backward; statistics in double): mean and rstd
     * [N * G] doubles on the device; w, b may be NULL; gx, gw, gb may be NULL. */
    int (*group_norm_forward)(const float *x, int64_t N, int64_t C, int64_t HW, int64_t G, const float *w,
                              const float *b, double eps, float *y, double *mean, double *rstd);
    int (*group_norm_backward)(const float *x, const float *gy, int64_t N, int64_t C, int64_t HW, int64_t G,
                               const double *mean, const double *rstd, const float *w, float *gx, float *gw,
                               float *gb);

    /* Nearest resize of planes H x W to OH x OW (backends/cpu/pool.c), the
     * source row of output row o as core/ops/op_pool.c's nearest_map: o when
     * OH == H, o / 2 when OH == 2 H, else min(floor(o * sh), H - 1) in float
     * (columns likewise with sw). Backward overwrites gx; each input element
     * sums its outputs in the CPU's order (deterministic, same bits). */
    int (*nearest_forward)(const float *x, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW, float sh,
                           float sw, float *y);
    int (*nearest_backward)(const float *gy, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW, float sh,
                            float sw, float *gx);

    /* (end of the shape family) */

    /* ---- losses (backends/cpu/losses.h) ---- */
    /* Gradient coefficients (md__loss_coef) come as (g, g_each, scale, w):
     * coef(e) = (g_each ? g[e] : g[0] * scale) * (w ? w[e] : 1), g and w on
     * the device, so the upstream scalar is never read on the host.
     * Checks that need an answer on the host synchronise (said below). */
    /* Row of the first label outside [lo, hi) and != ignore into bad[0]
     * (-1 when none) and its label into bad[1]; bad is HOST memory (waits
     * for the stream): the front-ends' label range loops. */
    int (*loss_check_labels)(const int64_t *lab, int64_t n, int64_t lo, int64_t hi, int64_t ignore, int64_t *bad);
    /* *any (HOST, waits) = whether some x[e] > 0: giou_loss's positive weight test. */
    int (*loss_any_positive)(const float *x, int64_t n, int *any);
    /* finish() in op_losses.c: wl[e] = w ? l[e] * w[e] : l[e] when wl is
     * given; *out (device scalar) = (float)(sum_e (w ? l[e] w[e] : l[e]) / div),
     * the sum in double in an order fixed by n (n > 0), when out is given. */
    int (*loss_reduce)(const float *l, const float *w, int64_t n, double div, float *wl, float *out);
    /* out[e] = coef(e) * (mul ? mul[e] : 1): weight_reduce_loss's and
     * giou_loss's no-positive backward (loss_backward K_REDUCE, K_GIOU_NOPOS). */
    int (*loss_coef_fill)(int64_t n, const float *g, bool g_each, float scale, const float *w, const float *mul,
                          float *out);
    /* md__cpu_ce_forward / md__cpu_ce_backward (class_w may be NULL). */
    int (*ce_forward)(const float *x, const int64_t *lab, const float *class_w, int64_t n, int64_t c, int64_t ignore,
                      float *loss);
    int (*ce_backward)(const float *x, const int64_t *lab, const float *class_w, int64_t n, int64_t c, int64_t ignore,
                       const float *g, bool g_each, float scale, const float *w, float *gx);
    /* md__cpu_bce_forward / md__cpu_bce_backward. */
    int (*bce_forward)(const float *x, const float *t, int64_t n, float *loss);
    int (*bce_backward)(const float *x, const float *t, int64_t n, const float *g, bool g_each, float scale,
                        const float *w, float *gx);
    /* out[e] = (t[e] >= 0 ? 1 : 0) * (w ? w[e] : 1): binary_cross_entropy's
     * mask of negative (ignored) targets. */
    int (*bce_mask_weight)(const float *t, const float *w, int64_t n, float *out);
    /* md__cpu_focal_forward / md__cpu_focal_backward. */
    int (*focal_forward)(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma, float alpha,
                         float *loss);
    int (*focal_backward)(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma, float alpha,
                          const float *g, bool g_each, float scale, const float *w, float *gx);
    /* md__cpu_smooth_l1_* and md__cpu_l1_* (gp, gt may be NULL). */
    int (*smooth_l1_forward)(const float *p, const float *t, int64_t n, float beta, float *loss);
    int (*smooth_l1_backward)(const float *p, const float *t, int64_t n, float beta, const float *g, bool g_each,
                              float scale, const float *w, float *gp, float *gt);
    int (*l1_forward)(const float *p, const float *t, int64_t n, float *loss);
    int (*l1_backward)(const float *p, const float *t, int64_t n, const float *g, bool g_each, float scale,
                       const float *w, float *gp, float *gt);
    /* md__cpu_giou_forward / md__cpu_giou_backward (boxes [n, 4]). */
    int (*giou_forward)(const float *p, const float *t, int64_t n, float eps, float *loss);
    int (*giou_backward)(const float *p, const float *t, int64_t n, float eps, const float *g, bool g_each,
                         float scale, const float *w, float *gp, float *gt);
    /* out[i] = (w[4i] + w[4i+1] + w[4i+2] + w[4i+3]) / 4 in float: giou_loss's
     * weight.mean(-1) for [n, 4] weights. */
    int (*giou_weight_mean)(const float *w, int64_t n, float *out);

    /* (end of the losses) */

    /* ---- detection and sorting (backends/cpu/detection.h, sort.h, carafe.h) ---- */
    /* RoIAlign forward: feat [N,C,H,W], rois [K,5] (device; batch indices
     * already checked by the front-end), out [K,C,oh,ow] overwritten:
     * md__cpu_roi_align_forward. */
    int (*roi_align_forward)(const float *feat, int64_t N, int64_t C, int64_t H, int64_t W, const float *rois,
                             int64_t K, int oh, int ow, float spatial_scale, int sampling_ratio, bool aligned,
                             float *out);
    /* RoIAlign backward: grad_feat [N,C,H,W] is OVERWRITTEN with
     * d(out)/d(feat) * grad_out (the CPU kernel adds into zeros; same sums,
     * same order): md__cpu_roi_align_backward. Reads the RoIs back to the
     * host (one synchronisation). */
    int (*roi_align_backward)(const float *grad_out, int64_t N, int64_t C, int64_t H, int64_t W,
                              const float *rois, int64_t K, int oh, int ow, float spatial_scale,
                              int sampling_ratio, bool aligned, float *grad_feat);
    /* Greedy NMS: boxes [n,4], scores [n], group [n] (i64 in [0, n), NULL:
     * one group) on the device; keep (HOST memory, n entries) receives the
     * kept indices in descending score order, *count their number (at most
     * max_num when max_num > 0): md__cpu_nms. Waits for the device. */
    int (*nms)(const float *boxes, const float *scores, const int64_t *group, int64_t n, float iou_thr,
               int64_t max_num, int64_t *keep, int64_t *count);
    /* mode 0 iou, 1 iof, 2 giou; out [n,m] or [n] (aligned):
     * md__cpu_bbox_overlaps_forward. */
    int (*bbox_overlaps_forward)(const float *a, int64_t n, const float *b, int64_t m, int mode, bool aligned,
                                 float eps, float *out);
    /* grad_a [n,4], grad_b [m,4] (either NULL) overwritten:
     * md__cpu_bbox_overlaps_backward. */
    int (*bbox_overlaps_backward)(const float *a, int64_t n, const float *b, int64_t m, int mode, bool aligned,
                                  float eps, const float *grad_out, float *grad_a, float *grad_b);
    /* Stable sort of the lines of x seen as [outer, n, inner] (dtype as
     * md_dtype: f32, i64, i32, u8): the first k of each line, values (may be
     * NULL) and i64 indices into [outer, k, inner]: md__cpu_sort_lines (keys
     * compared as doubles, NaN largest, ties by lower index). */
    int (*sort_lines)(int dtype, const void *x, int64_t outer, int64_t n, int64_t inner, int64_t k,
                      bool descending, void *vals, int64_t *idx);
    /* gx[o, idx[o,t,j], j] += g[o,t,j]: md__cpu_unsort_add_f32. */
    int (*unsort_add_f32)(const float *g, const int64_t *idx, int64_t outer, int64_t n, int64_t inner,
                          int64_t k, float *gx);
    /* mmcv's CARAFE: feat [N,C,H,W], masks [N, k*k*G, H*s, W*s], out
     * [N, C, H*s, W*s] overwritten: md__cpu_carafe_forward. */
    int (*carafe_forward)(const float *feat, const float *masks, int64_t N, int64_t C, int64_t H, int64_t W, int k,
                          int G, int s, float *out);
    /* grad_feat and grad_masks (either NULL) OVERWRITTEN with their
     * gradients: md__cpu_carafe_backward. */
    int (*carafe_backward)(const float *grad_out, const float *feat, const float *masks, int64_t N, int64_t C,
                           int64_t H, int64_t W, int k, int G, int s, float *grad_feat, float *grad_masks);
    /* Masks (backends/cpu/masks.h; per-pixel math in backends/mask_math.h,
     * shared by the CPU and CUDA kernels). mask_targets: out [P, oh, ow]
     * (f32 0/1, overwritten) = mmdet's BitmapMasks.crop_and_resize of mask
     * inds[p] (NULL: p) of masks u8 [n, h, w] over boxes [P, 4] (RoIAlign
     * aligned, sampling 0, binarised at 0.5): md__cpu_mask_targets. */
    int (*mask_targets)(const uint8_t *masks, int64_t n, int64_t h, int64_t w, const float *boxes,
                        const int64_t *inds, int64_t P, int oh, int ow, float *out);
    /* mask_paste: out u8 [D, img_h, img_w] (overwritten) = _do_paste_mask of
     * channel chan[d] of probs f32 [D, C, mh, mw] over boxes [D, 4], >= thr:
     * md__cpu_mask_paste. */
    int (*mask_paste)(const float *probs, int64_t D, int64_t C, int mh, int mw, const int64_t *chan,
                      const float *boxes, int img_h, int img_w, float thr, uint8_t *out);
    /* rle_encode: pycocotools' RLE of n masks u8 [n, h, w] (nonzero = 1):
     * m (HOST, n entries) = each mask's number of counts, *total (HOST) their
     * sum; when *total <= cap, counts (HOST) = every mask's counts back to
     * back, else counts is left alone (the caller asks again with room).
     * md__cpu_rle_counts per mask. Waits for the device. */
    int (*rle_encode)(const uint8_t *masks, int64_t n, int h, int w, int64_t *m, uint32_t *counts, int64_t cap,
                      int64_t *total);

    /* (end of detection and sorting) */

    /* ---- multi-tensor optimizer steps, gradient zeroing, EMA ---- */
    /* sgd_step for each of the `count` tensors, with the same per-element
     * float operations (so the same bits), in one or a few launches. */
    int (*sgd_step_multi)(int count, const md__mt_param *p, float mom, float damp, bool nesterov);
    /* adam_step for each tensor (p[i].step_size its lr / (1 - b1^t); sbc2
     * shared), same bits as adam_step. */
    int (*adam_step_multi)(int count, const md__mt_param *p, float b1, float b2, float eps, float sbc2,
                           bool decoupled);
    /* dst[i][0..n[i]) = 0.0f for `count` f32 buffers (md_optimizer_zero_grad). */
    int (*zero_f32_multi)(int count, float *const *dst, const int64_t *n);
    /* dst[k] = (1 - w) * dst[k] + w * src[k], contiguous f32, the float
     * expression of the EMA hooks (md_tensor_lerp_). */
    int (*lerp_f32)(float *dst, const float *src, int64_t n, float w);
    /* Exchanges n contiguous f32 elements of a and b (md_tensor_swap_). */
    int (*swap_f32)(float *a, float *b, int64_t n);

    /* (end of multi-tensor steps) */

    /* ---- ABI 5: context binding, CPU-first kernels ---- */
    /* Called by md__be before the front-end's kernels with the md_ctx whose
     * op runs next on the calling thread; NULL when the backend keeps no
     * per-context state (CUDA). The CPU backend takes its thread count
     * (md_ctx_threads) and kernel scratch (the step arena) from it. */
    void (*bind)(struct md_ctx *ctx);
    /* y = op(x) for n contiguous i64, i32 or u8 elements of `dtype`, the
     * result of the same dtype (NEG, RELU, ABS, CLAMP, ADD_SCALAR,
     * MUL_SCALAR): md__cpu_unary_int. */
    int (*unary_int)(md__unop op, int dtype, int64_t n, const void *x, double p0, double p1, void *y);
    /* RoIAlign, NMS: see the detection section. nms with the CPU's
     * batched_nms modes: groups [0, n_groups), and `split` (mmcv's
     * split_thr path: one NMS per group, the kept boxes merged by score):
     * md__cpu_nms. */
    int (*nms_split)(const float *boxes, const float *scores, const int64_t *group, int64_t n_groups, int64_t n,
                     float iou_thr, int64_t max_num, bool split, int64_t *keep, int64_t *count);

    /* ---- optional entries: NULL means the front-end composes the op from
     * the entries above (the composition named with each) ---- */
    /* Inference convolution with a per-channel epilogue, y = relu?((conv +
     * bias) * scale + shift) (bias, scale, shift may be NULL), the bias
     * folded into the shift in double and rounded once: md__conv2d_forward_ep.
     * NULL: conv2d_forward, then binary_f32 mul, add and unary_f32 relu. */
    int (*conv2d_forward_ep)(const md__conv_shape *s, const float *x, const float *w, const float *bias,
                             const float *scale, const float *shift, bool relu, float *y);
    /* C[b] = op(A[b]) op(B[b]) + beta C[b] for b < batch, A[b] = A + b * sa
     * (B likewise), C contiguous [batch, M, N]. NULL: sgemm per matrix. */
    int (*sgemm_batched)(bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K, const float *A,
                         int64_t lda, int64_t sa, const float *B, int64_t ldb, int64_t sb, float beta, float *C);
    /* y[R, out] = x[R, in] w[out, in]^T + bias (bias may be NULL; rows
     * start from the bias, then the product is added). NULL: sgemm, then
     * binary_f32 add of the bias broadcast over rows. */
    int (*linear_forward)(int64_t R, int64_t in, int64_t out, const float *x, const float *w, const float *bias,
                          float *y);
    /* gb[o] = (float)(sum over r of g[r, o]), summed in double, rows in
     * order. NULL: sum_f32 over [1, R, out]. */
    int (*sum_rows_f32)(const float *g, int64_t R, int64_t out, float *gb);
    /* *out (HOST, waits) = sum of |x|^p in double (p = 2: squares; p =
     * infinity: the maximum of |x|). NULL: p = 2 through binary_f32 mul,
     * sum_f32 and a copy back; other p give NaN. */
    int (*pow_sum_f64)(const float *x, int64_t n, double p, double *out);
    /* x[k] = (float)((double)x[k] * s). NULL: unary_f32 MUL_SCALAR by (float)s. */
    int (*scale_f64)(float *x, int64_t n, double s);
    /* *any (HOST, waits) = whether some x[e] < 0: binary_cross_entropy masks
     * the weight only then. NULL: the mask is always applied (bce_mask_weight
     * gives the same values when no target is negative). */
    int (*loss_any_negative)(const float *x, int64_t n, int *any);
    /* focal_forward that also writes d[e] = d(loss[e])/dx[e] (the same exp
     * and log1p serve both), and the backward from it: gx[e] = (float)(coef(e)
     * * (double)d[e]): md__cpu_focal_forward_grad. NULL: focal_forward, and
     * focal_backward recomputes. */
    int (*focal_forward_grad)(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma, float alpha,
                              float *loss, float *d);
    int (*focal_backward_saved)(const float *d, int64_t E, const float *g, bool g_each, float scale, const float *w,
                                float *gx);

    /* (end of ABI 5) */

    /* ---- ABI 6: mixed precision (core/runner/amp.c, include/mmdet/amp.h) ---- */
    /* Sets the calling thread's compute precision for the entries that
     * convolve or multiply matrices: conv2d_forward, conv2d_backward_input,
     * conv2d_backward_weight, conv2d_forward_ep, sgemm and linear_forward
     * (not sgemm_batched, not the bias gradient). 0 (f32): f32 throughout;
     * 4 (f16) or 5 (bf16): the operands are rounded to that type
     * (backends/precision.h: round to nearest even) and the products
     * accumulated in f32; tensors stay f32 in memory. *prev (may be NULL)
     * receives the setting replaced. -1 with the error set, the setting
     * unchanged, when this device cannot compute in `dtype` (the CPU: no
     * fp16 kernels, bf16 needs AVX2+FMA; CUDA: bf16 needs compute
     * capability 8.0). The op front-ends set it around their kernel calls
     * from the context's autocast dtype, and back after. */
    int (*set_compute_dtype)(int dtype, int *prev);
    /* GradScaler.unscale_ over `count` f32 buffers: g[i][k] *= inv, each
     * value checked before the multiply (md__unscale_elem); *found (HOST,
     * waits: one read-back for all the buffers) = 1 when some value was
     * inf or NaN, else 0. */
    int (*unscale_f32_multi)(int count, float *const *g, const int64_t *n, float inv, int *found);

    /* (end of ABI 6) */
} md_backend;

/* The symbol a backend library exports. */
typedef const md_backend *(*md_backend_entry_fn)(void);

#ifdef __cplusplus
}
#endif
#endif
