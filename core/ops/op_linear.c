/* matmul and linear through the backend's sgemm (on the CPU OpenBLAS,
 * backends/cpu/gemm.c). Transposed views go to it as transposed operands
 * (no copy); other layouts are copied once. */
#include <string.h>
#include "internal.h"
#include "onnx_trace.h"

/* A batch of row-major matrices as BLAS sees them: op(M) is rows x cols. */
typedef struct mat {
    const float *p;
    bool trans;
    int64_t ld, bstride, rows, cols;
} mat;

static mat mat_flip(mat m) {
    m.trans = !m.trans;
    int64_t r = m.rows;
    m.rows = m.cols;
    m.cols = r;
    return m;
}

/* The last two dims of t as a BLAS operand, or false when they need a copy. */
static bool mat_of(const md_tensor *t, mat *m) {
    int d = t->ndim;
    int64_t r = t->shape[d - 2], c = t->shape[d - 1], sr = t->stride[d - 2], sc = t->stride[d - 1];
    *m = (mat){ .p = md_f32(t), .rows = r, .cols = c, .bstride = d == 3 ? t->stride[0] : 0 };
    if (sc == 1 || c == 1) {
        m->trans = false;
        m->ld = (r == 1 || sr < c) ? c : sr;
        return r == 1 || sr >= c;
    }
    if (sr == 1 || r == 1) {
        m->trans = true;
        m->ld = (c == 1 || sc < r) ? r : sc;
        return c == 1 || sc >= r;
    }
    return false;
}

/* C[b] = op(A[b]) op(B[b]) (+ beta C), C contiguous [batch, M, N], on
 * like's device: the backend's batched product, or one sgemm per matrix
 * where it has none; false after md_op_fail. */
static bool batched_gemm(md_ctx *ctx, const md_tensor *like, int64_t batch, mat A, mat B, float beta, float *C) {
    int64_t M = A.rows, N = B.cols, K = A.cols;
    const md_backend *be = md__be(ctx, "matmul", like);
    if (!be) return false;
    if (be->sgemm_batched) {
        if (be->sgemm_batched(A.trans, B.trans, batch, M, N, K, A.p, A.ld, A.bstride, B.p, B.ld, B.bstride, beta,
                              C) != 0)
            return md__be_failed(ctx, "matmul", be), false;
        return true;
    }
    if (!be->sgemm) return md__no_kernel(ctx, "matmul", like), false;
    for (int64_t b = 0; b < batch && M > 0 && N > 0; b++)
        if (be->sgemm(A.trans, B.trans, M, N, K, 1.0f, A.p + b * A.bstride, A.ld, B.p + b * B.bstride, B.ld, beta,
                      C + b * M * N, N) != 0)
            return md__be_failed(ctx, "matmul", be), false;
    return true;
}

static int check_f32(md_ctx *ctx, const char *op, const char *what, const md_tensor *t) {
    if (t->dtype != MD_F32) {
        md_op_fail(ctx, op, "%s is %s; only f32 is supported", what, md_dtype_name(t->dtype));
        return -1;
    }
    return 0;
}

/* y = op(A) op(B) (+ beta y) for one matrix on like's device. */
static bool gemm_on(md_ctx *ctx, const md_tensor *like, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const md_backend *be = md__be(ctx, "matmul", like);
    if (!be) return false;
    if (!be->sgemm) return md__no_kernel(ctx, "matmul", like), false;
    if (M > 0 && N > 0 && be->sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc) != 0)
        return md__be_failed(ctx, "matmul", be), false;
    return true;
}

/* ------------------------------------------------------------- matmul -- */

typedef struct matmul_saved { md_tensor *a, *b; } matmul_saved;

static int matmul_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    matmul_saved *sv = md_node_saved(node);
    mat A, B, Gm;
    mat_of(sv->a, &A);
    mat_of(sv->b, &B);
    mat_of(g, &Gm);
    int64_t batch = g->ndim == 3 ? g->shape[0] : 1;
    if (md_node_needs_grad(node, 0)) {   /* gA = g B^T */
        md_tensor *ga = md_tensor_empty_like(ctx, sv->a);
        if (!ga) return -1;
        if (!batched_gemm(ctx, g, batch, Gm, mat_flip(B), 0.0f, md_f32(ga))) return -1;
        if (md_node_accumulate(ctx, node, 0, ga) != 0) return -1;
    }
    if (md_node_needs_grad(node, 1)) {   /* gB = A^T g */
        md_tensor *gb = md_tensor_empty_like(ctx, sv->b);
        if (!gb) return -1;
        if (!batched_gemm(ctx, g, batch, mat_flip(A), Gm, 0.0f, md_f32(gb))) return -1;
        if (md_node_accumulate(ctx, node, 1, gb) != 0) return -1;
    }
    return 0;
}

MD_API md_tensor *md_matmul(md_ctx *ctx, md_tensor *a, md_tensor *b) {
    if (!a || !b) return NULL;
    if (check_f32(ctx, "matmul", "a", a) || check_f32(ctx, "matmul", "b", b) ||
        !md__same_device(ctx, "matmul", 2, (md_tensor *[]){ a, b }))
        return NULL;
    char sa[96], sb[96];
    md_tensor_describe(a, sa, sizeof sa);
    md_tensor_describe(b, sb, sizeof sb);
    if (!((a->ndim == 2 && b->ndim == 2) || (a->ndim == 3 && b->ndim == 3 && a->shape[0] == b->shape[0])))
        return md_op_fail(ctx, "matmul", "a %s and b %s must be [M,K]x[K,N] or [B,M,K]x[B,K,N]", sa, sb);
    int d = a->ndim;
    if (a->shape[d - 1] != b->shape[d - 2])
        return md_op_fail(ctx, "matmul", "inner dimensions of a %s and b %s differ", sa, sb);
    md_tensor *a0 = a, *b0 = b;   /* gradients go to the tensors given */
    mat A, B;
    if (!mat_of(a, &A) && !(a = md__contig(ctx, a), a && mat_of(a, &A))) return NULL;
    if (!mat_of(b, &B) && !(b = md__contig(ctx, b), b && mat_of(b, &B))) return NULL;
    int64_t batch = d == 3 ? a->shape[0] : 1;
    if (d == 3 && batch > 1 && (A.bstride == 0 || B.bstride == 0)) {
        /* a broadcast batch stride: materialise */
        if (!(a = md__contig(ctx, a)) || !(b = md__contig(ctx, b))) return NULL;
        mat_of(a, &A);
        mat_of(b, &B);
    }
    int64_t shape[3] = { batch, A.rows, B.cols };
    md_tensor *y = md__empty_like_on(ctx, a, MD_F32, d, d == 3 ? shape : shape + 1);
    if (!y) return NULL;
    if (A.cols == 0) {
        if (md_tensor_fill_(y, 0.0) != 0) return md_op_fail(ctx, "matmul", "cannot zero the output");
    } else if (!batched_gemm(ctx, y, batch, A, B, 0.0f, md_f32(y))) {
        return NULL;
    }
    md_tensor *ins[2] = { a0, b0 };
    md_node *node = md_autograd_record(ctx, y, ins, 2, matmul_backward, "matmul");
    if (node) {
        matmul_saved *sv = md_node_save(ctx, node, sizeof *sv);
        if (!sv) return NULL;
        sv->a = a;
        sv->b = b;
        md_node_unsave(ctx, node, -1);
        if (md_node_keep(ctx, node, a) || md_node_keep(ctx, node, b)) return NULL;
    }
    return y;
}

/* ------------------------------------------------------------- linear -- */

typedef struct linear_saved {
    md_tensor *x, *w;
    int64_t rows;
    md_dtype compute;   /* mixed precision (amp.h): the backward in the forward's precision */
} linear_saved;

static int linear_backward_kernels(md_ctx *ctx, md_node *node, md_tensor *g) {
    linear_saved *sv = md_node_saved(node);
    int64_t R = sv->rows, in = sv->w->shape[1], out = sv->w->shape[0];
    const float *gp = md_f32(g);
    if (md_node_needs_grad(node, 0)) {   /* gx[R,in] = g[R,out] w[out,in] */
        md_tensor *gx = md_tensor_empty_like(ctx, md_node_input(node, 0));
        if (!gx) return -1;
        if (out == 0 ? md_tensor_fill_(gx, 0.0) != 0
                     : !gemm_on(ctx, g, false, false, R, in, out, gp, out, md_f32(sv->w), in, 0.0f, md_f32(gx), in))
            return -1;
        if (md_node_accumulate(ctx, node, 0, gx) != 0) return -1;
    }
    if (md_node_needs_grad(node, 1)) {   /* gw[out,in] = g^T x */
        md_tensor *gw = md_tensor_empty_like(ctx, sv->w);
        if (!gw) return -1;
        if (!gemm_on(ctx, g, true, false, out, in, R, gp, out, md_f32(sv->x), in, 0.0f, md_f32(gw), in)) return -1;
        if (md_node_accumulate(ctx, node, 1, gw) != 0) return -1;
    }
    if (md_node_needs_grad(node, 2)) {   /* gb = sum of g over rows */
        const md_backend *be = md__be(ctx, "linear", g);
        if (!be) return -1;
        if (!be->sum_rows_f32) {
            md_tensor *gb = md_sum(ctx, md_reshape(ctx, g, MD_DIMS(R, out)), 0, false);
            return gb ? md_node_accumulate(ctx, node, 2, gb) : -1;
        }
        md_tensor *gb = md__empty_like_on(ctx, g, MD_F32, MD_DIMS(out));
        if (!gb) return -1;
        if (be->sum_rows_f32(gp, R, out, md_f32(gb)) != 0) return md__be_failed(ctx, "linear", be), -1;
        if (md_node_accumulate(ctx, node, 2, gb) != 0) return -1;
    }
    return 0;
}

/* Mixed precision: the backend's matrix products run in the compute
 * precision set around them (set_compute_dtype); the backward as its
 * forward. */
static int linear_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    const md_backend *be = md__be(ctx, "linear", g);
    int prev;
    if (!be || !md__be_compute(ctx, "linear", be, ((linear_saved *)md_node_saved(node))->compute, &prev)) return -1;
    int rc = linear_backward_kernels(ctx, node, g);
    md__be_compute_restore(be, prev);
    return rc;
}

/* y = x w^T + bias on be: its linear entry, or y = x w^T, then y += bias
 * (broadcast over rows); false after md_op_fail. */
static bool linear_forward_kernels(md_ctx *ctx, const md_backend *be, md_tensor *y, int64_t R, int64_t in,
                                   int64_t out, md_tensor *xc, md_tensor *wc, md_tensor *bc) {
    float *yp = md_f32(y);
    if (be->linear_forward) {   /* y = bias, then y += x w^T */
        if (be->linear_forward(R, in, out, md_f32(xc), md_f32(wc), bc ? md_f32(bc) : NULL, yp) != 0)
            return md__be_failed(ctx, "linear", be), false;
    } else if (R > 0 && out > 0) {
        if (!gemm_on(ctx, y, false, true, R, out, in, md_f32(xc), in, md_f32(wc), in, 0.0f, yp, out)) return false;
        if (bc) {
            if (!be->binary_f32) return md__no_kernel(ctx, "linear", y), false;
            md__loop L = { .ndim = 2, .nops = 3, .numel = R * out, .shape = { R, out },
                           .st = { { out, 1 }, { out, 1 }, { 0, 1 } } };
            if (be->binary_f32(MD_BIN_ADD, &L, yp, md_f32(bc), yp) != 0)
                return md__be_failed(ctx, "linear", be), false;
        }
    }
    return true;
}

static md_tensor *linear(md_ctx *ctx, md_tensor *x, md_tensor *w, md_tensor *bias) {
    if (!x || !w) return NULL;
    if (check_f32(ctx, "linear", "input", x) || check_f32(ctx, "linear", "weight", w) ||
        (bias && check_f32(ctx, "linear", "bias", bias)) ||
        !md__same_device(ctx, "linear", 3, (md_tensor *[]){ x, w, bias }))
        return NULL;
    char sx[96], sw[96], sb[96];
    md_tensor_describe(x, sx, sizeof sx);
    md_tensor_describe(w, sw, sizeof sw);
    md_tensor_describe(bias, sb, sizeof sb);
    if (x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[1])
        return md_op_fail(ctx, "linear", "input %s does not match weight %s ([..., in] and [out, in])", sx, sw);
    if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))
        return md_op_fail(ctx, "linear", "bias %s does not match weight %s", sb, sw);
    md_tensor *xc = md__contig(ctx, x), *wc = md__contig(ctx, w), *bc = bias ? md__contig(ctx, bias) : NULL;
    if (!xc || !wc || (bias && !bc)) return NULL;
    int64_t in = w->shape[1], out = w->shape[0], R = in ? md_tensor_numel(x) / in : 1;
    if (!in) {
        R = 1;
        for (int d = 0; d < x->ndim - 1; d++) R *= x->shape[d];
    }
    int64_t shape[MD_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = out;
    md_tensor *y = md__empty_like_on(ctx, x, MD_F32, x->ndim, shape);
    if (!y) return NULL;
    const md_backend *be = md__be(ctx, "linear", y);
    int prev;
    if (!be || !md__be_compute(ctx, "linear", be, ctx->autocast, &prev)) return NULL;
    bool ok = linear_forward_kernels(ctx, be, y, R, in, out, xc, wc, bc);
    md__be_compute_restore(be, prev);
    if (!ok) return NULL;
    md_tensor *ins[3] = { x, w, bias };
    md_node *node = md_autograd_record(ctx, y, ins, 3, linear_backward, "linear");
    if (node) {
        linear_saved *sv = md_node_save(ctx, node, sizeof *sv);
        if (!sv) return NULL;
        *sv = (linear_saved){ .x = xc, .w = wc, .rows = R, .compute = ctx->autocast };
        md_node_unsave(ctx, node, -1);
        if (md__hold_copy(ctx, node, xc, x) || md__hold_copy(ctx, node, wc, w)) return NULL;
    }
    return y;
}

MD_API md_tensor *md_linear(md_ctx *ctx, md_tensor *x, md_tensor *w, md_tensor *bias) {
    if (!ctx->onnx) return linear(ctx, x, w, bias);
    md_onnx_graph *g = md__onnx_pause(ctx);
    md_tensor *y = linear(ctx, x, w, bias);
    md__onnx_resume(ctx, g);
    return MD__TRACING(ctx, y) ? md__onnx_linear(ctx, y, x, w, bias) : y;
}
