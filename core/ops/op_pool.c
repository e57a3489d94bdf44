/* max_pool2d and nearest resampling: checks, autograd; the kernels are
 * the backend's (on the CPU backends/cpu/pool.c). */
#include <math.h>
#include <string.h>
#include "internal.h"
#include "onnx_trace.h"

static int check_nchw(md_ctx *ctx, const char *op, const md_tensor *x) {
    char a[96];
    if (x->dtype != MD_F32 || x->ndim != 4) {
        md_op_fail(ctx, op, "input %s must be a 4-D f32 tensor (NCHW)", md_tensor_describe(x, a, sizeof a));
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------- max_pool2d -- */

typedef struct pool_saved { int32_t *idx; } pool_saved;

static int maxpool_backward(md_ctx *ctx, md_node *node, md_tensor *gy) {
    pool_saved *sv = md_node_saved(node);
    md_tensor *x = md_node_input(node, 0);
    md_tensor *gx = md_tensor_empty_like(ctx, x);
    if (!gx) return -1;
    const md_backend *be = md__be(ctx, "max_pool2d", x);
    if (!be) return -1;
    if (be->maxpool2d_backward(md_f32(gy), sv->idx, x->shape[0] * x->shape[1], x->shape[2], x->shape[3],
                               gy->shape[2], gy->shape[3], md_f32(gx)) != 0)
        return md__be_failed(ctx, "max_pool2d", be), -1;
    return md_node_accumulate(ctx, node, 0, gx);
}

/* PyTorch's pooling_output_shape (dilation 1). */
static int64_t pool_out(int64_t in, int k, int s, int pad, bool ceil_mode) {
    int64_t num = in + 2 * pad - (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
    int64_t o = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
    if (ceil_mode && (o - 1) * s >= in + pad) o--;
    return o;
}

static md_tensor *max_pool2d(md_ctx *ctx, md_tensor *x, int kernel, int stride, int pad, bool ceil_mode) {
    if (!x) return NULL;
    if (check_nchw(ctx, "max_pool2d", x)) return NULL;
    char a[96];
    md_tensor_describe(x, a, sizeof a);
    if (stride <= 0) stride = kernel;   /* PyTorch's default stride */
    if (kernel < 1 || pad < 0 || pad > kernel / 2)
        return md_op_fail(ctx, "max_pool2d", "kernel %d, pad %d on %s: need kernel >= 1 and 0 <= pad <= kernel/2",
                          kernel, pad, a);
    int64_t OH = pool_out(x->shape[2], kernel, stride, pad, ceil_mode);
    int64_t OW = pool_out(x->shape[3], kernel, stride, pad, ceil_mode);
    if (OH < 1 || OW < 1)
        return md_op_fail(ctx, "max_pool2d", "input %s too small for kernel %d stride %d pad %d (output %lldx%lld)",
                          a, kernel, stride, pad, (long long)OH, (long long)OW);
    md_tensor *xc = md__contig(ctx, x);
    if (!xc) return NULL;
    int64_t planes = x->shape[0] * x->shape[1];
    md_tensor *y = md__empty_like_on(ctx, x, MD_F32, MD_DIMS(x->shape[0], x->shape[1], OH, OW));
    if (!y) return NULL;
    size_t mark = md_ctx_arena_mark(ctx);
    size_t idx_bytes = sizeof(int32_t) * (size_t)(planes * OH * OW + 1);
    const md_backend *be = md__be(ctx, "max_pool2d", x);
    if (!be) return NULL;
    if (!be->maxpool2d_forward || !be->maxpool2d_backward) return md__no_kernel(ctx, "max_pool2d", x);
    int32_t *idx = md__alloc_like(ctx, x, idx_bytes);   /* on x's device, for backward */
    if (!idx) return NULL;
    if (be->maxpool2d_forward(md_f32(xc), planes, x->shape[2], x->shape[3], OH, OW, kernel, stride, pad, md_f32(y),
                              idx) != 0)
        return md__be_failed(ctx, "max_pool2d", be);
    md_node *node = md_autograd_record(ctx, y, &x, 1, maxpool_backward, "max_pool2d");
    if (node) {
        pool_saved *sv = md_node_save(ctx, node, sizeof *sv);
        if (!sv) return NULL;
        sv->idx = idx;
    } else {
        md_ctx_arena_release(ctx, mark);   /* indices only serve backward (on the CPU: in the step arena) */
    }
    return y;
}

/* ------------------------------------------------------------- nearest -- */

typedef struct nearest_saved { float sh, sw; } nearest_saved;

/* The kernels map rows and columns themselves (PyTorch's nearest_idx, see
 * backend.h). */
static int nearest_backward(md_ctx *ctx, md_node *node, md_tensor *gy) {
    nearest_saved *sv = md_node_saved(node);
    md_tensor *x = md_node_input(node, 0);
    md_tensor *gx = md__empty_like_on(ctx, x, MD_F32, 4, x->shape);
    if (!gx) return -1;
    const md_backend *be = md__be(ctx, md_node_op(node), x);
    md_tensor *gc = md__contig(ctx, gy);
    if (!be || !gc) return -1;
    if (!be->nearest_backward) return md__no_kernel(ctx, md_node_op(node), x), -1;
    if (be->nearest_backward(md_f32(gc), x->shape[0] * x->shape[1], x->shape[2], x->shape[3], gy->shape[2],
                             gy->shape[3], sv->sh, sv->sw, md_f32(gx)) != 0)
        return md__be_failed(ctx, md_node_op(node), be), -1;
    return md_node_accumulate(ctx, node, 0, gx);
}

MD_API md_tensor *md_max_pool2d(md_ctx *ctx, md_tensor *x, int kernel, int stride, int pad, bool ceil_mode) {
    md_tensor *y = max_pool2d(ctx, x, kernel, stride, pad, ceil_mode);
    return MD__TRACING(ctx, y) ? md__onnx_max_pool(ctx, y, x, kernel, stride > 0 ? stride : kernel, pad, ceil_mode) : y;
}

static md_tensor *nearest_impl(md_ctx *ctx, const char *op, md_tensor *x, int64_t OH, int64_t OW, float sh, float sw) {
    md_tensor *xc = md__contig(ctx, x);
    if (!xc) return NULL;
    int64_t H = x->shape[2], W = x->shape[3];
    const md_backend *be = md__be(ctx, op, x);
    if (!be) return NULL;
    if (!be->nearest_forward || !be->nearest_backward) return md__no_kernel(ctx, op, x);
    md_tensor *y = md__empty_like_on(ctx, x, MD_F32, MD_DIMS(x->shape[0], x->shape[1], OH, OW));
    if (!y) return NULL;
    if (be->nearest_forward(md_f32(xc), x->shape[0] * x->shape[1], H, W, OH, OW, sh, sw, md_f32(y)) != 0)
        return md__be_failed(ctx, op, be);
    md_node *node = md_autograd_record(ctx, y, &x, 1, nearest_backward, op);
    if (node) {
        nearest_saved *sv = md_node_save(ctx, node, sizeof *sv);
        if (!sv) return NULL;
        *sv = (nearest_saved){ sh, sw };
    }
    return y;
}

/* ref / scale: what the trace reads the size from (md__onnx_resize_nearest) */
static md_tensor *nearest(md_ctx *ctx, const char *op, md_tensor *x, int64_t OH, int64_t OW, float sh, float sw,
                          md_tensor *ref, int scale) {
    md_tensor *y = nearest_impl(ctx, op, x, OH, OW, sh, sw);
    return MD__TRACING(ctx, y) ? md__onnx_resize_nearest(ctx, y, x, ref, scale) : y;
}

static md_tensor *interpolate_nearest(md_ctx *ctx, md_tensor *x, int64_t out_h, int64_t out_w, md_tensor *ref) {
    if (!x) return NULL;
    if (check_nchw(ctx, "interpolate_nearest", x)) return NULL;
    char a[96];
    md_tensor_describe(x, a, sizeof a);
    int64_t H = x->shape[2], W = x->shape[3];
    bool empty_src = (H == 0 || W == 0) && out_h * out_w > 0 && x->shape[0] * x->shape[1] > 0;
    if (out_h < 0 || out_w < 0 || empty_src)
        return md_op_fail(ctx, "interpolate_nearest", "cannot resize %s to %lldx%lld", a, (long long)out_h,
                          (long long)out_w);
    float sh = out_h > 0 ? (float)H / (float)out_h : 0.0f, sw = out_w > 0 ? (float)W / (float)out_w : 0.0f;
    return nearest(ctx, "interpolate_nearest", x, out_h, out_w, sh, sw, ref, 0);
}

MD_API md_tensor *md_interpolate_nearest(md_ctx *ctx, md_tensor *x, int64_t out_h, int64_t out_w) {
    return interpolate_nearest(ctx, x, out_h, out_w, NULL);
}

MD_API md_tensor *md_interpolate_nearest_like(md_ctx *ctx, md_tensor *x, md_tensor *ref) {
    if (!x || !ref) return NULL;
    if (check_nchw(ctx, "interpolate_nearest_like", ref)) return NULL;
    return interpolate_nearest(ctx, x, ref->shape[2], ref->shape[3], ref);
}

MD_API md_tensor *md_upsample_nearest(md_ctx *ctx, md_tensor *x, int scale) {
    if (!x) return NULL;
    if (check_nchw(ctx, "upsample_nearest", x)) return NULL;
    if (scale < 1) {
        char a[96];
        return md_op_fail(ctx, "upsample_nearest", "scale %d on %s: must be >= 1", scale,
                          md_tensor_describe(x, a, sizeof a));
    }
    float s = (float)(1.0 / scale);   /* PyTorch: 1 / scale_factor, as float */
    return nearest(ctx, "upsample_nearest", x, x->shape[2] * scale, x->shape[3] * scale, s, s, NULL, scale);
}

/* One axis of md_upsample_bilinear: the edge rows repeated on both sides,
 * then for each phase p of the scale the two source rows weighted, the
 * phases interleaved. */
static md_tensor *bilinear_axis(md_ctx *ctx, md_tensor *x, int dim, int s) {
    if (!x) return NULL;
    int64_t n = x->shape[dim];
    md_tensor *xp = md_cat(ctx, (md_tensor *[]){ md_slice(ctx, x, dim, 0, 1, 1), x, md_slice(ctx, x, dim, n - 1, n, 1) },
                           3, dim);
    md_tensor **ph = md_ctx_alloc(ctx, sizeof *ph * (size_t)s);
    if (!xp || !ph) return NULL;
    float scale = (float)(1.0 / s);
    for (int p = 0; p < s; p++) {
        /* source of row i * s + p: i + d, as PyTorch computes it in float */
        float d = scale * ((float)p + 0.5f) - 0.5f;
        int off = d < 0 ? 0 : 1;                /* xp row of floor(source) for i */
        float lam = d < 0 ? 1.0f + d : d;
        md_tensor *a = md_slice(ctx, xp, dim, off, off + n, 1), *b = md_slice(ctx, xp, dim, off + 1, off + 1 + n, 1);
        ph[p] = md_add(ctx, md_mul_scalar(ctx, a, 1.0 - lam), md_mul_scalar(ctx, b, lam));
    }
    md_tensor *y = md_stack(ctx, ph, s, dim + 1);
    if (!y) return NULL;
    int64_t shape[4] = { x->shape[0], x->shape[1], x->shape[2], x->shape[3] };
    shape[dim] *= s;
    return md_reshape(ctx, y, 4, shape);
}

MD_API md_tensor *md_upsample_bilinear(md_ctx *ctx, md_tensor *x, int scale) {
    if (!x) return NULL;
    if (check_nchw(ctx, "upsample_bilinear", x)) return NULL;
    char a[96];
    if (scale < 1 || x->shape[2] == 0 || x->shape[3] == 0)
        return md_op_fail(ctx, "upsample_bilinear", "scale %d on %s: must be >= 1, of a non-empty map", scale,
                          md_tensor_describe(x, a, sizeof a));
    if (scale == 1) return x;
    return bilinear_axis(ctx, bilinear_axis(ctx, x, 2, scale), 3, scale);
}
