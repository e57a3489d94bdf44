/* The ops' side of the ONNX trace (onnx.h): each traced op passes its result
 * through one of these. With no graph attached they return the result as
 * is (one pointer test); with one they record the op's ONNX form and return
 * the result, or NULL with the context's error when it has none. Composite
 * ops pause the trace around their parts (md__onnx_pause) so only their
 * own form is recorded. */
#ifndef MMDET_ONNX_TRACE_H
#define MMDET_ONNX_TRACE_H

#include <mmdet/onnx.h>
#include <mmdet/ops.h>

struct md_ctx;
md_tensor *md__onnx_conv(md_ctx *ctx, md_tensor *y, md_tensor *x, md_tensor *w, md_tensor *b, md_conv2d_params p,
                         md_tensor *scale, md_tensor *shift, bool relu);
md_tensor *md__onnx_batch_norm(md_ctx *ctx, md_tensor *y, md_tensor *x, md_tensor *w, md_tensor *b, md_tensor *mean,
                               md_tensor *var, bool training, double eps);
md_tensor *md__onnx_group_norm(md_ctx *ctx, md_tensor *y, md_tensor *x, int groups, md_tensor *w, md_tensor *b,
                               double eps);
md_tensor *md__onnx_unary(md_ctx *ctx, md_tensor *y, const char *op, md_tensor *a);
md_tensor *md__onnx_binary(md_ctx *ctx, md_tensor *y, const char *op, md_tensor *a, md_tensor *b);
md_tensor *md__onnx_scalar(md_ctx *ctx, md_tensor *y, const char *op, md_tensor *a, double s);
md_tensor *md__onnx_clamp(md_ctx *ctx, md_tensor *y, md_tensor *a, double lo, double hi);
md_tensor *md__onnx_max_pool(md_ctx *ctx, md_tensor *y, md_tensor *x, int kernel, int stride, int pad, bool ceil);
md_tensor *md__onnx_resize_nearest(md_ctx *ctx, md_tensor *y, md_tensor *x, md_tensor *ref, int scale);
md_tensor *md__onnx_reshape(md_ctx *ctx, md_tensor *y, md_tensor *a, int ndim, const int64_t *shape);
md_tensor *md__onnx_flatten(md_ctx *ctx, md_tensor *y, md_tensor *a, int start, int end);
md_tensor *md__onnx_linear(md_ctx *ctx, md_tensor *y, md_tensor *x, md_tensor *w, md_tensor *b);
md_tensor *md__onnx_softmax(md_ctx *ctx, md_tensor *y, md_tensor *a, int dim);
md_tensor *md__onnx_permute(md_ctx *ctx, md_tensor *y, md_tensor *a, const int *perm);
md_tensor *md__onnx_cat(md_ctx *ctx, md_tensor *y, md_tensor *const *ts, int n, int dim);
md_tensor *md__onnx_alias(md_ctx *ctx, md_tensor *y, md_tensor *a);

/* tracing on and a result to record */
#define MD__TRACING(ctx, y) (__builtin_expect((ctx)->onnx != NULL, 0) && (y))

static inline md_onnx_graph *md__onnx_pause(md_ctx *ctx) {
    md_onnx_graph *g = ctx->onnx;
    ctx->onnx = NULL;
    return g;
}
static inline void md__onnx_resume(md_ctx *ctx, md_onnx_graph *g) { ctx->onnx = g; }

static inline md_tensor *md__trace_unary(md_ctx *ctx, md_tensor *y, const char *op, md_tensor *a) {
    return MD__TRACING(ctx, y) ? md__onnx_unary(ctx, y, op, a) : y;
}
static inline md_tensor *md__trace_binary(md_ctx *ctx, md_tensor *y, const char *op, md_tensor *a, md_tensor *b) {
    return MD__TRACING(ctx, y) ? md__onnx_binary(ctx, y, op, a, b) : y;
}
static inline md_tensor *md__trace_scalar(md_ctx *ctx, md_tensor *y, const char *op, md_tensor *a, double s) {
    return MD__TRACING(ctx, y) ? md__onnx_scalar(ctx, y, op, a, s) : y;
}
static inline md_tensor *md__trace_reshape(md_ctx *ctx, md_tensor *y, md_tensor *a, int ndim, const int64_t *shape) {
    return MD__TRACING(ctx, y) ? md__onnx_reshape(ctx, y, a, ndim, shape) : y;
}
static inline md_tensor *md__trace_alias(md_ctx *ctx, md_tensor *y, md_tensor *a) {
    return MD__TRACING(ctx, y) ? md__onnx_alias(ctx, y, a) : y;
}

#endif
