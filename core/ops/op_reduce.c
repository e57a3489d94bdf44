/* Softmax and reductions over one dimension (or all): checks, outputs,
 * autograd; the kernels are the backend's (on the CPU backends/cpu/reduce.c). */
#include <math.h>
#include <string.h>
#include "op_basic.h"
#include "onnx_trace.h"

/* Geometry of a reduction of `a` over `dim` (MD_DIM_ALL allowed when `all`). */
typedef struct rgeom {
    int dim;                 /* normalised; -1 for all */
    int64_t outer, n, inner;
    int out_ndim;
    int64_t out_shape[MD_MAX_DIMS];
} rgeom;

static bool reduce_geom(md_ctx *ctx, const char *op, const md_tensor *a, int dim, bool keepdim, bool all,
                        rgeom *g) {
    memset(g, 0, sizeof *g);
    if (dim == MD_DIM_ALL && all) {
        g->dim = -1;
        g->outer = g->inner = 1;
        g->n = md_tensor_numel(a);
        g->out_ndim = 0;
        return true;
    }
    int d = md__op_dim(ctx, op, a, dim, a->ndim);
    if (d < 0) return false;
    g->dim = d;
    if (a->ndim == 0) {   /* a scalar reduces to itself */
        g->outer = g->n = g->inner = 1;
        return true;
    }
    g->outer = md__prod(a->shape, 0, d);
    g->n = a->shape[d];
    g->inner = md__prod(a->shape, d + 1, a->ndim);
    for (int k = 0; k < a->ndim; k++) {
        if (k == d && !keepdim) continue;
        g->out_shape[g->out_ndim++] = k == d ? 1 : a->shape[k];
    }
    return true;
}

/* ---------------------------------------------------------- sum, mean -- */

typedef struct sum_saved { int64_t outer, n, inner; float scale; } sum_saved;

static int sum_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    const sum_saved *s = md_node_saved(node);
    md_tensor *x = md_node_input(node, 0);
    md_tensor *gx = md_tensor_empty_like(ctx, x);
    if (!gx) return -1;
    const md_backend *be = md__be(ctx, md_node_op(node), x);
    if (!be) return -1;
    if (!be->spread_f32) return md__no_kernel(ctx, md_node_op(node), x), -1;
    if (be->spread_f32(md_f32(g), s->outer, s->n, s->inner, s->scale, md_f32(gx)) != 0)
        return md__be_failed(ctx, md_node_op(node), be), -1;
    return md_node_accumulate(ctx, node, 0, gx);
}

static md_tensor *sum_mean(md_ctx *ctx, const char *op, md_tensor *a, int dim, bool keepdim, bool mean) {
    if (!a) return NULL;
    rgeom G;
    if (!reduce_geom(ctx, op, a, dim, keepdim, true, &G)) return NULL;
    a = md_contiguous(ctx, a);
    if (!a) return NULL;
    if (a->dtype != MD_F32) {
        if (mean) return sum_mean(ctx, op, md_cast(ctx, a, MD_F32), dim, keepdim, true);
        md_tensor *out = md__empty_like_on(ctx, a, MD_I64, G.out_ndim, G.out_shape);
        if (!out) return NULL;
        const md_backend *be = md__be(ctx, op, a);
        if (!be) return NULL;
        if (!be->sum_int) return md__no_kernel(ctx, op, a);
        if (be->sum_int((int)a->dtype, a->data, G.outer, G.n, G.inner, md_i64(out)) != 0)
            return md__be_failed(ctx, op, be);
        return out;
    }
    md_tensor *out = md__empty_like_on(ctx, a, MD_F32, G.out_ndim, G.out_shape);
    if (!out) return NULL;
    /* mean of nothing is NaN, as PyTorch */
    float scale = mean ? (G.n ? (float)(1.0 / (double)G.n) : NAN) : 1.0f;
    if (G.n == 0) {
        md_tensor_fill_(out, mean ? NAN : 0.0);
    } else {
        const md_backend *be = md__be(ctx, op, a);
        if (!be) return NULL;
        if (!be->sum_f32) return md__no_kernel(ctx, op, a);
        if (be->sum_f32(md_f32(a), G.outer, G.n, G.inner, scale, md_f32(out)) != 0) return md__be_failed(ctx, op, be);
    }
    md_node *n = md_autograd_record(ctx, out, &a, 1, sum_backward, op);
    if (n) {
        sum_saved *s = md_node_save(ctx, n, sizeof *s);
        if (!s) return NULL;
        *s = (sum_saved){ G.outer, G.n, G.inner, scale };
    }
    return out;
}

MD_API md_tensor *md_sum(md_ctx *ctx, md_tensor *a, int dim, bool keepdim) {
    return sum_mean(ctx, "sum", a, dim, keepdim, false);
}

MD_API md_tensor *md_mean(md_ctx *ctx, md_tensor *a, int dim, bool keepdim) {
    return sum_mean(ctx, "mean", a, dim, keepdim, true);
}

/* ------------------------------------------------------------- softmax -- */

typedef struct softmax_saved { int64_t outer, n, inner; bool log; } softmax_saved;

static int softmax_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    const softmax_saved *s = md_node_saved(node);
    md_tensor *y = md_node_output(node);
    md_tensor *gx = md_tensor_empty_like(ctx, y);
    if (!gx) return -1;
    const md_backend *be = md__be(ctx, md_node_op(node), y);
    md_tensor *gc = md__contig(ctx, g);
    if (!be || !gc) return -1;
    if (!be->softmax_backward_f32) return md__no_kernel(ctx, md_node_op(node), y), -1;
    if (be->softmax_backward_f32(md_f32(y), md_f32(gc), s->outer, s->n, s->inner, s->log, md_f32(gx)) != 0)
        return md__be_failed(ctx, md_node_op(node), be), -1;
    return md_node_accumulate(ctx, node, 0, gx);
}

static md_tensor *softmax(md_ctx *ctx, const char *op, md_tensor *a, int dim, bool log) {
    if (!a) return NULL;
    const md_backend *be = md__be(ctx, op, a);
    if (!be) return NULL;
    if (!be->softmax_f32 || !be->softmax_backward_f32) return md__no_kernel(ctx, op, a);
    rgeom G;
    if (!reduce_geom(ctx, op, a, dim, true, false, &G)) return NULL;
    a = md_contiguous(ctx, md_cast(ctx, a, MD_F32));
    md_tensor *out = a ? md_tensor_empty_like(ctx, a) : NULL;
    if (!out) return NULL;
    if (be->softmax_f32(md_f32(a), G.outer, G.n, G.inner, log, md_f32(out)) != 0) return md__be_failed(ctx, op, be);
    md_node *n = md_autograd_record(ctx, out, &a, 1, softmax_backward, op);
    if (n) {
        softmax_saved *s = md_node_save(ctx, n, sizeof *s);
        if (!s) return NULL;
        *s = (softmax_saved){ G.outer, G.n, G.inner, log };
    }
    return out;
}

MD_API md_tensor *md_softmax(md_ctx *ctx, md_tensor *a, int dim) {
    if (!ctx->onnx) return softmax(ctx, "softmax", a, dim, false);
    md_onnx_graph *g = md__onnx_pause(ctx);
    md_tensor *y = softmax(ctx, "softmax", a, dim, false);
    md__onnx_resume(ctx, g);
    return MD__TRACING(ctx, y) ? md__onnx_softmax(ctx, y, a, dim) : y;
}
MD_API md_tensor *md_log_softmax(md_ctx *ctx, md_tensor *a, int dim) {
    return softmax(ctx, "log_softmax", a, dim, true);
}

/* ------------------------------------------------------------- max, argmax -- */

typedef struct max_saved { int64_t outer, n, inner; md_tensor *idx; } max_saved;

/* The gradient goes to the first maximum of each reduced line. */
static int max_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    const max_saved *s = md_node_saved(node);
    md_tensor *x = md_node_input(node, 0);
    md_tensor *gx = md_tensor_zeros_like(ctx, x);
    if (!gx) return -1;
    const md_backend *be = md__be(ctx, md_node_op(node), x);
    md_tensor *gc = md__contig(ctx, g);
    if (!be || !gc) return -1;
    if (!be->max_backward_f32) return md__no_kernel(ctx, md_node_op(node), x), -1;
    if (be->max_backward_f32(md_f32(gc), md_i64(s->idx), s->outer, s->n, s->inner, md_f32(gx)) != 0)
        return md__be_failed(ctx, md_node_op(node), be), -1;
    return md_node_accumulate(ctx, node, 0, gx);
}

static md_tensor *max_impl(md_ctx *ctx, const char *op, md_tensor *a, int dim, bool keepdim, bool want_vals,
                           md_tensor **indices) {
    if (indices) *indices = NULL;
    if (!a) return NULL;
    const md_backend *be = md__be(ctx, op, a);
    if (!be) return NULL;
    if (!be->max || !be->max_backward_f32) return md__no_kernel(ctx, op, a);
    rgeom G;
    if (!reduce_geom(ctx, op, a, dim, keepdim, true, &G)) return NULL;
    if (G.n == 0) {   /* no maximum of nothing (PyTorch raises too) */
        char s[96];
        return md_op_fail(ctx, op, "cannot reduce %s over an empty dimension %d",
                          md_tensor_describe(a, s, sizeof s), dim);
    }
    a = md_contiguous(ctx, a);
    if (!a) return NULL;
    md_tensor *idx = md__empty_like_on(ctx, a, MD_I64, G.out_ndim, G.out_shape);
    md_tensor *vals = want_vals ? md__empty_like_on(ctx, a, a->dtype, G.out_ndim, G.out_shape) : NULL;
    if (!idx || (want_vals && !vals)) return NULL;
    if (be->max((int)a->dtype, a->data, G.outer, G.n, G.inner, vals ? vals->data : NULL, md_i64(idx)) != 0)
        return md__be_failed(ctx, op, be);
    if (indices) *indices = idx;
    if (!want_vals) return idx;
    if (a->dtype == MD_F32) {
        md_node *n = md_autograd_record(ctx, vals, &a, 1, max_backward, op);
        if (n) {
            max_saved *s = md_node_save(ctx, n, sizeof *s);
            if (!s) return NULL;
            *s = (max_saved){ G.outer, G.n, G.inner, idx };
            if (md_node_keep(ctx, n, idx)) return NULL;
        }
    }
    return vals;
}

MD_API md_tensor *md_max(md_ctx *ctx, md_tensor *a, int dim, bool keepdim, md_tensor **indices) {
    return max_impl(ctx, "max", a, dim, keepdim, true, indices);
}

MD_API md_tensor *md_argmax(md_ctx *ctx, md_tensor *a, int dim, bool keepdim) {
    return max_impl(ctx, "argmax", a, dim, keepdim, false, NULL);
}
