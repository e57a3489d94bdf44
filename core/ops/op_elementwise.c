/* Element-wise ops with NumPy broadcasting: argument checks, output
 * allocation, autograd; the kernels are the backend's (on the CPU
 * backends/cpu/elementwise.c). */
#include <math.h>
#include <string.h>
#include "op_basic.h"
#include "backends/cpu/elementwise.h"
#include "onnx_trace.h"

/* ------------------------------------------------- gradient reduction -- */

int md__accumulate_reduced(md_ctx *ctx, md_node *node, int i, md_tensor *g) {
    if (!g) return -1;
    if (!md_node_needs_grad(node, i)) return 0;
    md_tensor *t = md_node_input(node, i);
    if (md_tensor_same_shape(g, t)) return md_node_accumulate(ctx, node, i, g);
    if (g->ndim < t->ndim) return md_node_accumulate(ctx, node, i, g);   /* reports the mismatch */
    g = md_contiguous(ctx, g);
    int lead = g->ndim - t->ndim;
    if (lead > 0) {   /* leading dims broadcasting added: fold them into one and sum it */
        int64_t shape[MD_MAX_DIMS + 1];
        shape[0] = md__prod(g->shape, 0, lead);
        for (int d = 0; d < t->ndim; d++) shape[d + 1] = g->shape[lead + d];
        g = md_sum(ctx, md_reshape(ctx, g, t->ndim + 1, shape), 0, false);
    }
    for (int d = 0; g && d < t->ndim; d++)
        if (t->shape[d] == 1 && g->shape[d] != 1) g = md_sum(ctx, g, d, true);
    if (!g) return -1;
    return md_node_accumulate(ctx, node, i, g);
}

/* ---------------------------------------------------------------- cast -- */

MD_API md_tensor *md_cast(md_ctx *ctx, md_tensor *a, md_dtype dt) {
    if (!a) return NULL;
    if (a->dtype == dt) return a;
    if (md_dtype_size(dt) == 0 || (unsigned)dt > MD_U8 || (unsigned)a->dtype > MD_U8)
        return md_op_fail(ctx, "cast", "from %s to %s unsupported", md_dtype_name(a->dtype), md_dtype_name(dt));
    const md_backend *be = md__be(ctx, "cast", a);
    if (!be) return NULL;
    if (!be->cast) return md__no_kernel(ctx, "cast", a);
    md_tensor *c = md_contiguous(ctx, a);
    md_tensor *out = c ? md__empty_like_on(ctx, a, dt, a->ndim, a->shape) : NULL;
    if (!out) return NULL;
    if (be->cast((int)a->dtype, (int)dt, md_tensor_numel(a), c->data, out->data) != 0)
        return md__be_failed(ctx, "cast", be);
    return out;
}

static md_tensor *compare_scalar(md_ctx *ctx, md__binop op, md_tensor *a, double s);

/* Non-zero as u8 (logic ops take any dtype). */
static md_tensor *to_bool(md_ctx *ctx, md_tensor *a) {
    if (!a || a->dtype == MD_U8) return a;
    return compare_scalar(ctx, MD_BIN_NE, a, 0.0);
}

/* -------------------------------------------------------------- binary -- */

static const char *bin_names[] = {
    [MD_BIN_ADD] = "add", [MD_BIN_SUB] = "sub", [MD_BIN_MUL] = "mul", [MD_BIN_DIV] = "div",
    [MD_BIN_GT] = "gt", [MD_BIN_GE] = "ge", [MD_BIN_LT] = "lt", [MD_BIN_LE] = "le",
    [MD_BIN_EQ] = "eq", [MD_BIN_NE] = "ne", [MD_BIN_AND] = "logical_and", [MD_BIN_OR] = "logical_or",
};

static int add_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    if (md__accumulate_reduced(ctx, node, 0, g)) return -1;
    return md__accumulate_reduced(ctx, node, 1, g);
}

static int sub_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    if (md__accumulate_reduced(ctx, node, 0, g)) return -1;
    if (!md_node_needs_grad(node, 1)) return 0;
    return md__accumulate_reduced(ctx, node, 1, md_neg(ctx, g));
}

static int mul_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    md_tensor *a = md_node_input(node, 0), *b = md_node_input(node, 1);
    if (md_node_needs_grad(node, 0) && md__accumulate_reduced(ctx, node, 0, md_mul(ctx, g, b))) return -1;
    if (md_node_needs_grad(node, 1) && md__accumulate_reduced(ctx, node, 1, md_mul(ctx, g, a))) return -1;
    return 0;
}

/* d(a/b)/da = 1/b; d(a/b)/db = -a/b^2, so gb = -(g/b) * out. */
static int div_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    md_tensor *b = md_node_input(node, 1);
    md_tensor *ga = md_div(ctx, g, b);
    if (md__accumulate_reduced(ctx, node, 0, ga)) return -1;
    if (!md_node_needs_grad(node, 1)) return 0;
    return md__accumulate_reduced(ctx, node, 1, md_neg(ctx, md_mul(ctx, ga, md_node_output(node))));
}

static int record_binary(md_ctx *ctx, md__binop op, md_tensor *out, md_tensor *a, md_tensor *b) {
    static const md_backward_fn bw[] = { add_backward, sub_backward, mul_backward, div_backward };
    md_tensor *ins[2] = { a, b };
    md_node *n = md_autograd_record(ctx, out, ins, 2, bw[op], bin_names[op]);
    if (n && (op == MD_BIN_ADD || op == MD_BIN_SUB))   /* the gradient is g itself */
        for (int i = -1; i < 2; i++) md_node_unsave(ctx, n, i);
    if (n && op == MD_BIN_MUL) md_node_unsave(ctx, n, -1);
    return 0;
}

/* The loop over out, a and b broadcast to (ndim, shape). */
static void binary_loop(md__loop *L, const md_tensor *out, const md_tensor *a, const md_tensor *b, int ndim,
                        const int64_t *shape) {
    int64_t sa[MD_MAX_DIMS], sb[MD_MAX_DIMS];
    md__broadcast_strides(a, ndim, shape, sa);
    md__broadcast_strides(b, ndim, shape, sb);
    const int64_t *st[3] = { out->stride, sa, sb };
    md__loop_init(L, ndim, shape, 3, st);
}

/* The kernel of binary_ on a's device: f32 through binary_f32, integer
 * dtypes through binary_int (operands already cast to dt). */
static bool binary_kernel(md_ctx *ctx, md__binop op, md_dtype dt, const md__loop *L, const md_tensor *a,
                          const md_tensor *b, md_tensor *out) {
    const char *name = bin_names[op];
    const md_backend *be = md__be(ctx, name, a);
    if (!be) return false;
    int rc;
    if (dt == MD_F32) {
        if (!be->binary_f32) return md__no_kernel(ctx, name, a), false;
        rc = be->binary_f32(op, L, md_f32(a), md_f32(b), out->data);
    } else {
        if (!be->binary_int) return md__no_kernel(ctx, name, a), false;
        rc = be->binary_int(op, (int)dt, L, a->data, b->data, out->data);
    }
    if (rc != 0) return md__be_failed(ctx, name, be), false;
    return true;
}

static md_tensor *binary_(md_ctx *ctx, md__binop op, md_tensor *a, md_tensor *b, bool inplace) {
    if (!a || !b) return NULL;
    const char *name = bin_names[op];
    md_tensor *ins[2] = { a, b };
    if (!md__same_device(ctx, name, 2, ins)) return NULL;
    md_dtype dt = md__promote(a->dtype, b->dtype), odt = dt;
    if (op <= MD_BIN_DIV) {
        if (op == MD_BIN_DIV) dt = odt = MD_F32;   /* true division, as PyTorch */
        if (dt == MD_U8) {
            char x[96], y[96];
            return md_op_fail(ctx, name, "u8 arithmetic unsupported (%s, %s); cast first",
                              md_tensor_describe(a, x, sizeof x), md_tensor_describe(b, y, sizeof y));
        }
    } else if (op >= MD_BIN_AND) {
        a = to_bool(ctx, a);
        b = to_bool(ctx, b);
        dt = odt = MD_U8;
    } else {
        odt = MD_U8;
    }
    a = md_cast(ctx, a, dt);
    b = md_cast(ctx, b, dt);
    if (!a || !b) return NULL;
    int ndim;
    int64_t shape[MD_MAX_DIMS];
    if (!md__broadcast2(ctx, name, a, b, &ndim, shape)) return NULL;
    md_tensor *out = inplace ? md_tensor_detach(ctx, a) : md__empty_like_on(ctx, a, odt, ndim, shape);
    if (!out) return NULL;
    md__loop L;
    binary_loop(&L, out, a, b, ndim, shape);
    if (!binary_kernel(ctx, op, dt, &L, a, b, out)) return NULL;
    if (dt == MD_F32 && op <= MD_BIN_DIV) record_binary(ctx, op, out, a, b);
    return out;
}

static md_tensor *binary(md_ctx *ctx, md__binop op, md_tensor *a, md_tensor *b) {
    return binary_(ctx, op, a, b, false);
}

MD_API md_tensor *md_add(md_ctx *ctx, md_tensor *a, md_tensor *b) {
    return md__trace_binary(ctx, binary(ctx, MD_BIN_ADD, a, b), "Add", a, b);
}

/* In place into a (the result aliases it): add's backward reads neither
 * input. Only same-shape contiguous f32 operands of which a is a step
 * tensor made by an op; anything else gets md_add. */
MD_API md_tensor *md_add_(md_ctx *ctx, md_tensor *a, md_tensor *b) {
    if (!a || !b) return NULL;
    if (a->dtype != MD_F32 || b->dtype != MD_F32 || a->device != b->device || a->persistent ||
        (a->requires_grad && !a->grad_fn) || !md_tensor_same_shape(a, b) || !md_tensor_is_contiguous(a) ||
        !md_tensor_is_contiguous(b))
        return md_add(ctx, a, b);
    return md__trace_binary(ctx, binary_(ctx, MD_BIN_ADD, a, b, true), "Add", a, b);
}
MD_API md_tensor *md_sub(md_ctx *ctx, md_tensor *a, md_tensor *b) {
    return md__trace_binary(ctx, binary(ctx, MD_BIN_SUB, a, b), "Sub", a, b);
}
MD_API md_tensor *md_mul(md_ctx *ctx, md_tensor *a, md_tensor *b) {
    return md__trace_binary(ctx, binary(ctx, MD_BIN_MUL, a, b), "Mul", a, b);
}
MD_API md_tensor *md_div(md_ctx *ctx, md_tensor *a, md_tensor *b) {
    return md__trace_binary(ctx, binary(ctx, MD_BIN_DIV, a, b), "Div", a, b);
}
MD_API md_tensor *md_gt(md_ctx *ctx, md_tensor *a, md_tensor *b) { return binary(ctx, MD_BIN_GT, a, b); }
MD_API md_tensor *md_ge(md_ctx *ctx, md_tensor *a, md_tensor *b) { return binary(ctx, MD_BIN_GE, a, b); }
MD_API md_tensor *md_lt(md_ctx *ctx, md_tensor *a, md_tensor *b) { return binary(ctx, MD_BIN_LT, a, b); }
MD_API md_tensor *md_le(md_ctx *ctx, md_tensor *a, md_tensor *b) { return binary(ctx, MD_BIN_LE, a, b); }
MD_API md_tensor *md_eq(md_ctx *ctx, md_tensor *a, md_tensor *b) { return binary(ctx, MD_BIN_EQ, a, b); }
MD_API md_tensor *md_ne(md_ctx *ctx, md_tensor *a, md_tensor *b) { return binary(ctx, MD_BIN_NE, a, b); }
MD_API md_tensor *md_logical_and(md_ctx *ctx, md_tensor *a, md_tensor *b) { return binary(ctx, MD_BIN_AND, a, b); }
MD_API md_tensor *md_logical_or(md_ctx *ctx, md_tensor *a, md_tensor *b) { return binary(ctx, MD_BIN_OR, a, b); }

static md_tensor *compare_scalar(md_ctx *ctx, md__binop op, md_tensor *a, double s) {
    if (!a) return NULL;
    md_tensor *c = md_contiguous(ctx, a);
    md_tensor *out = c ? md__empty_like_on(ctx, a, MD_U8, a->ndim, a->shape) : NULL;
    if (!out) return NULL;
    const md_backend *be = md__be(ctx, bin_names[op], a);
    if (!be) return NULL;
    if (!be->compare_scalar) return md__no_kernel(ctx, bin_names[op], a);
    if (be->compare_scalar(op, (int)c->dtype, md_tensor_numel(c), c->data, s, md_u8(out)) != 0)
        return md__be_failed(ctx, bin_names[op], be);
    return out;
}

MD_API md_tensor *md_gt_scalar(md_ctx *ctx, md_tensor *a, double s) { return compare_scalar(ctx, MD_BIN_GT, a, s); }
MD_API md_tensor *md_ge_scalar(md_ctx *ctx, md_tensor *a, double s) { return compare_scalar(ctx, MD_BIN_GE, a, s); }
MD_API md_tensor *md_lt_scalar(md_ctx *ctx, md_tensor *a, double s) { return compare_scalar(ctx, MD_BIN_LT, a, s); }
MD_API md_tensor *md_le_scalar(md_ctx *ctx, md_tensor *a, double s) { return compare_scalar(ctx, MD_BIN_LE, a, s); }
MD_API md_tensor *md_eq_scalar(md_ctx *ctx, md_tensor *a, double s) { return compare_scalar(ctx, MD_BIN_EQ, a, s); }
MD_API md_tensor *md_logical_not(md_ctx *ctx, md_tensor *a) { return compare_scalar(ctx, MD_BIN_EQ, a, 0.0); }

/* --------------------------------------------------------------- unary -- */

typedef struct unary_saved { md__unop op; float p0, p1; } unary_saved;

static const char *un_names[] = {
    [MD_UN_NEG] = "neg", [MD_UN_RELU] = "relu", [MD_UN_SIGMOID] = "sigmoid", [MD_UN_EXP] = "exp",
    [MD_UN_LOG] = "log", [MD_UN_SQRT] = "sqrt", [MD_UN_ABS] = "abs", [MD_UN_CLAMP] = "clamp",
    [MD_UN_POW] = "pow", [MD_UN_ADD_SCALAR] = "add_scalar", [MD_UN_MUL_SCALAR] = "mul_scalar",
    [MD_UN_NOT] = "logical_not", [MD_UN_ATAN] = "atan",
};

static int unary_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    const unary_saved *s = md_node_saved(node);
    md_tensor *x = md_node_input(node, 0), *y = md_node_output(node);
    md_tensor *gx = md_tensor_empty_like(ctx, x);
    if (!gx) return -1;
    const md_backend *be = md__be(ctx, un_names[s->op], x);
    if (!be) return -1;
    if (!be->unary_f32_backward) return md__no_kernel(ctx, un_names[s->op], x), -1;
    if (be->unary_f32_backward(s->op, md_tensor_numel(x), md_f32(x), md_f32(y), md_f32(g), s->p0, s->p1,
                               md_f32(gx)) != 0)
        return md__be_failed(ctx, un_names[s->op], be), -1;
    return md_node_accumulate(ctx, node, 0, gx);
}

/* Drops the holds on what op's gradient does not read: x for the ops whose
 * gradient is a function of y, y for those of x, both for the linear ones
 * (as the backends' unary_f32_backward kernels). */
static void unary_unsave(md_ctx *ctx, md_node *n, md__unop op) {
    bool needx = op == MD_UN_LOG || op == MD_UN_ABS || op == MD_UN_CLAMP || op == MD_UN_POW || op == MD_UN_ATAN;
    bool needy = op == MD_UN_RELU || op == MD_UN_SIGMOID || op == MD_UN_EXP || op == MD_UN_SQRT;
    if (!needx) md_node_unsave(ctx, n, 0);
    if (!needy) md_node_unsave(ctx, n, -1);
}

/* y = op(a) on a's device (a contiguous f32); false after md_op_fail. */
static bool unary_kernel(md_ctx *ctx, const char *name, md__unop op, const md_tensor *a, float p0, float p1,
                         md_tensor *y) {
    const md_backend *be = md__be(ctx, name, a);
    if (!be) return false;
    if (!be->unary_f32) return md__no_kernel(ctx, name, a), false;
    if (be->unary_f32(op, md_tensor_numel(a), md_f32(a), p0, p1, md_f32(y)) != 0)
        return md__be_failed(ctx, name, be), false;
    return true;
}

static md_tensor *unary(md_ctx *ctx, md__unop op, md_tensor *a, double p0, double p1) {
    if (!a) return NULL;
    const char *name = un_names[op];
    if (a->dtype != MD_F32) {
        bool keeps_int = op == MD_UN_NEG || op == MD_UN_RELU || op == MD_UN_ABS || op == MD_UN_CLAMP ||
                         op == MD_UN_ADD_SCALAR || op == MD_UN_MUL_SCALAR;
        if (!keeps_int) return unary(ctx, op, md_cast(ctx, a, MD_F32), p0, p1);
        const md_backend *be = md__be(ctx, name, a);
        if (!be) return NULL;
        if (!be->unary_int) return md__no_kernel(ctx, name, a);
        md_tensor *c = md_contiguous(ctx, a);
        md_tensor *out = c ? md_tensor_empty_like(ctx, c) : NULL;
        if (!out) return NULL;
        if (be->unary_int(op, (int)c->dtype, md_tensor_numel(c), c->data, p0, p1, out->data) != 0)
            return md__be_failed(ctx, name, be);
        return out;
    }
    a = md_contiguous(ctx, a);
    md_tensor *out = a ? md_tensor_empty_like(ctx, a) : NULL;
    if (!out || !unary_kernel(ctx, name, op, a, (float)p0, (float)p1, out)) return NULL;
    md_node *n = md_autograd_record(ctx, out, &a, 1, unary_backward, name);
    if (n) {
        unary_saved *s = md_node_save(ctx, n, sizeof *s);
        if (!s) return NULL;
        *s = (unary_saved){ op, (float)p0, (float)p1 };
        unary_unsave(ctx, n, op);
    }
    return out;
}

MD_API md_tensor *md_add_scalar(md_ctx *ctx, md_tensor *a, double s) {
    return md__trace_scalar(ctx, unary(ctx, MD_UN_ADD_SCALAR, a, s, 0), "Add", a, s);
}
MD_API md_tensor *md_mul_scalar(md_ctx *ctx, md_tensor *a, double s) {
    return md__trace_scalar(ctx, unary(ctx, MD_UN_MUL_SCALAR, a, s, 0), "Mul", a, s);
}
MD_API md_tensor *md_neg(md_ctx *ctx, md_tensor *a) { return unary(ctx, MD_UN_NEG, a, 0, 0); }
MD_API md_tensor *md_relu(md_ctx *ctx, md_tensor *a) { return md__trace_unary(ctx, unary(ctx, MD_UN_RELU, a, 0, 0), "Relu", a); }

/* In place: the result aliases a's storage. Its backward reads only the
 * output (y > 0), so a's own value is never needed again; falls back to
 * md_relu for leaves, parameters, views and non-f32 tensors. */
MD_API md_tensor *md_relu_(md_ctx *ctx, md_tensor *a) {
    if (!a) return NULL;
    if (a->dtype != MD_F32 || a->persistent || !md_tensor_is_contiguous(a) || (a->requires_grad && !a->grad_fn))
        return md_relu(ctx, a);
    md_tensor *out = md_tensor_detach(ctx, a);
    if (!out || !unary_kernel(ctx, "relu_", MD_UN_RELU, a, 0, 0, out)) return NULL;
    md_node *n = md_autograd_record(ctx, out, &a, 1, unary_backward, "relu_");
    if (n) {
        unary_saved *s = md_node_save(ctx, n, sizeof *s);
        if (!s) return NULL;
        *s = (unary_saved){ MD_UN_RELU, 0, 0 };
        unary_unsave(ctx, n, MD_UN_RELU);
    }
    return md__trace_unary(ctx, out, "Relu", a);
}
MD_API md_tensor *md_sigmoid(md_ctx *ctx, md_tensor *a) {
    return md__trace_unary(ctx, unary(ctx, MD_UN_SIGMOID, a, 0, 0), "Sigmoid", a);
}
MD_API md_tensor *md_exp(md_ctx *ctx, md_tensor *a) { return md__trace_unary(ctx, unary(ctx, MD_UN_EXP, a, 0, 0), "Exp", a); }
MD_API md_tensor *md_log(md_ctx *ctx, md_tensor *a) { return unary(ctx, MD_UN_LOG, a, 0, 0); }
MD_API md_tensor *md_sqrt(md_ctx *ctx, md_tensor *a) { return unary(ctx, MD_UN_SQRT, a, 0, 0); }
MD_API md_tensor *md_abs(md_ctx *ctx, md_tensor *a) { return unary(ctx, MD_UN_ABS, a, 0, 0); }
MD_API md_tensor *md_atan(md_ctx *ctx, md_tensor *a) { return unary(ctx, MD_UN_ATAN, a, 0, 0); }
MD_API md_tensor *md_pow_scalar(md_ctx *ctx, md_tensor *a, double p) { return unary(ctx, MD_UN_POW, a, p, 0); }

MD_API md_tensor *md_clamp(md_ctx *ctx, md_tensor *a, double lo, double hi) {
    if (a && lo > hi)
        return md_op_fail(ctx, "clamp", "lower bound %g above upper bound %g", lo, hi);
    md_tensor *y = unary(ctx, MD_UN_CLAMP, a, lo, hi);
    return MD__TRACING(ctx, y) ? md__onnx_clamp(ctx, y, a, lo, hi) : y;
}

/* --------------------------------------------------------------- where -- */

static int where_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    md_tensor *cond = *(md_tensor **)md_node_saved(node);
    md_tensor *zero = md__empty_like_on(ctx, g, MD_F32, 0, NULL);   /* a zero on the gradient's device */
    if (!zero || md_tensor_fill_(zero, 0.0) != 0) return -1;
    if (md_node_needs_grad(node, 0) &&
        md__accumulate_reduced(ctx, node, 0, md_where(ctx, cond, g, zero))) return -1;
    if (md_node_needs_grad(node, 1) &&
        md__accumulate_reduced(ctx, node, 1, md_where(ctx, cond, zero, g))) return -1;
    return 0;
}

MD_API md_tensor *md_where(md_ctx *ctx, md_tensor *cond, md_tensor *a, md_tensor *b) {
    if (!cond || !a || !b) return NULL;
    md_tensor *ins3[3] = { cond, a, b };
    if (!md__same_device(ctx, "where", 3, ins3)) return NULL;
    const md_backend *be = md__be(ctx, "where", a);
    if (!be) return NULL;
    if (!be->where) return md__no_kernel(ctx, "where", a);
    md_dtype dt = md__promote(a->dtype, b->dtype);
    cond = to_bool(ctx, cond);
    a = md_cast(ctx, a, dt);
    b = md_cast(ctx, b, dt);
    if (!cond || !a || !b) return NULL;
    int n1, ndim;
    int64_t s1[MD_MAX_DIMS], shape[MD_MAX_DIMS], sc[MD_MAX_DIMS], sa[MD_MAX_DIMS], sb[MD_MAX_DIMS];
    if (!md__broadcast2(ctx, "where", a, b, &n1, s1)) return NULL;
    md_tensor ab = { .ndim = n1, .dtype = dt };   /* shape holder for the second broadcast */
    memcpy(ab.shape, s1, sizeof(int64_t) * (size_t)n1);
    if (!md__broadcast2(ctx, "where", cond, &ab, &ndim, shape)) return NULL;
    md_tensor *out = md__empty_like_on(ctx, a, dt, ndim, shape);
    if (!out) return NULL;
    md__broadcast_strides(cond, ndim, shape, sc);
    md__broadcast_strides(a, ndim, shape, sa);
    md__broadcast_strides(b, ndim, shape, sb);
    const int64_t *st[4] = { out->stride, sc, sa, sb };
    md__loop L;
    md__loop_init(&L, ndim, shape, 4, st);
    if (be->where(&L, md_dtype_size(dt), md_u8(cond), a->data, b->data, out->data) != 0)
        return md__be_failed(ctx, "where", be);
    if (dt == MD_F32) {
        md_tensor *ins[2] = { a, b };
        md_node *n = md_autograd_record(ctx, out, ins, 2, where_backward, "where");
        if (n) {
            md_tensor **s = md_node_save(ctx, n, sizeof *s);
            if (!s) return NULL;
            *s = cond;
            for (int i = -1; i < 2; i++) md_node_unsave(ctx, n, i);
            if (md_node_keep(ctx, n, cond)) return NULL;
        }
    }
    return out;
}
