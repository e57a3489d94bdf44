/* Shapes and views. A view shares its base's storage (data pointer and
 * strides, like PyTorch); its backward routes the gradient to the base. */
#include <string.h>
#include "op_basic.h"
#include "onnx_trace.h"

static md_tensor *copy_of(md_ctx *ctx, md_tensor *a) {
    md_tensor *out = md_tensor_empty_like(ctx, a);
    return out && md__copy_any(ctx, out, a) == 0 ? out : NULL;
}

/* ---------------------------------------------------------- contiguous -- */

static int identity_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    return md_node_accumulate(ctx, node, 0, g);
}

MD_API md_tensor *md_contiguous(md_ctx *ctx, md_tensor *a) {
    if (!a) return NULL;
    if (md_tensor_is_contiguous(a)) return a;
    md_tensor *out = copy_of(ctx, a);
    if (out && a->dtype == MD_F32) md_autograd_record(ctx, out, &a, 1, identity_backward, "contiguous");
    return md__trace_alias(ctx, out, a);
}

/* ------------------------------------------------------------- reshape -- */

/* Gradient of a view whose elements are a's in the same order: reshape back. */
static int reshape_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    md_tensor *x = md_node_input(node, 0);
    return md_node_accumulate(ctx, node, 0, md_reshape(ctx, g, x->ndim, x->shape));
}

static md_tensor *record_view(md_ctx *ctx, md_tensor *base, md_tensor *v, md_backward_fn bw, const char *op) {
    md_node *n = v && base->dtype == MD_F32 ? md_autograd_record(ctx, v, &base, 1, bw, op) : NULL;
    if (n) {   /* the gradient of a view never reads values */
        md_node_unsave(ctx, n, 0);
        md_node_unsave(ctx, n, -1);
    }
    return v;
}

static md_tensor *reshape(md_ctx *ctx, md_tensor *a, int ndim, const int64_t *shape) {
    if (!a) return NULL;
    char s[96];
    if (ndim < 0 || ndim > MD_MAX_DIMS)
        return md_op_fail(ctx, "reshape", "%d dimensions for %s (at most %d)", ndim,
                          md_tensor_describe(a, s, sizeof s), MD_MAX_DIMS);
    int64_t sh[MD_MAX_DIMS], known = 1;
    int infer = -1;
    for (int d = 0; d < ndim; d++) {
        sh[d] = shape[d];
        if (shape[d] == -1) {
            if (infer >= 0) return md_op_fail(ctx, "reshape", "more than one -1 in the new shape of %s",
                                              md_tensor_describe(a, s, sizeof s));
            infer = d;
        } else if (shape[d] < 0) {
            return md_op_fail(ctx, "reshape", "negative size %lld for %s", (long long)shape[d],
                              md_tensor_describe(a, s, sizeof s));
        } else {
            known *= shape[d];
        }
    }
    int64_t numel = md_tensor_numel(a);
    if (infer >= 0) {
        if (known == 0 || numel % known)
            return md_op_fail(ctx, "reshape", "cannot infer -1 in dimension %d for %s", infer,
                              md_tensor_describe(a, s, sizeof s));
        sh[infer] = numel / known;
        known *= sh[infer];
    }
    if (known != numel) {
        md_tensor tmp = { .ndim = ndim, .dtype = a->dtype };
        memcpy(tmp.shape, sh, sizeof(int64_t) * (size_t)ndim);
        char t[96];
        return md_op_fail(ctx, "reshape", "%s cannot be viewed as %s (%lld elements)",
                          md_tensor_describe(a, s, sizeof s), md_tensor_describe(&tmp, t, sizeof t),
                          (long long)numel);
    }
    a = md_contiguous(ctx, a);   /* a view only of contiguous data */
    if (!a) return NULL;
    int64_t st[MD_MAX_DIMS], acc = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        st[d] = acc;
        acc *= sh[d];
    }
    return record_view(ctx, a, md__view(ctx, a, ndim, sh, st, a->data), reshape_backward, "reshape");
}

MD_API md_tensor *md_reshape(md_ctx *ctx, md_tensor *a, int ndim, const int64_t *shape) {
    if (!ctx->onnx) return reshape(ctx, a, ndim, shape);
    md_onnx_graph *g = md__onnx_pause(ctx);
    md_tensor *y = reshape(ctx, a, ndim, shape);
    md__onnx_resume(ctx, g);
    return md__trace_reshape(ctx, y, a, ndim, shape);
}

MD_API md_tensor *md_flatten(md_ctx *ctx, md_tensor *a, int start_dim, int end_dim) {
    if (!a) return NULL;
    int s = md__op_dim(ctx, "flatten", a, start_dim, a->ndim), e = md__op_dim(ctx, "flatten", a, end_dim, a->ndim);
    if (s < 0 || e < 0) return NULL;
    if (a->ndim == 0) return md_reshape(ctx, a, 1, (const int64_t[]){ 1 });
    if (s > e) return md_op_fail(ctx, "flatten", "start_dim %d after end_dim %d", start_dim, end_dim);
    int64_t sh[MD_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < s; d++) sh[n++] = a->shape[d];
    sh[n++] = md__prod(a->shape, s, e + 1);
    for (int d = e + 1; d < a->ndim; d++) sh[n++] = a->shape[d];
    if (!ctx->onnx) return md_reshape(ctx, a, n, sh);
    md_onnx_graph *g = md__onnx_pause(ctx);
    md_tensor *y = md_reshape(ctx, a, n, sh);
    md__onnx_resume(ctx, g);
    return MD__TRACING(ctx, y) ? md__onnx_flatten(ctx, y, a, s, e) : y;
}

MD_API md_tensor *md_unsqueeze(md_ctx *ctx, md_tensor *a, int dim) {
    if (!a) return NULL;
    char s[96];
    if (a->ndim >= MD_MAX_DIMS)
        return md_op_fail(ctx, "unsqueeze", "%s already has %d dimensions", md_tensor_describe(a, s, sizeof s),
                          MD_MAX_DIMS);
    int d = md__op_dim(ctx, "unsqueeze", a, dim, a->ndim + 1);
    if (d < 0) return NULL;
    int64_t sh[MD_MAX_DIMS], st[MD_MAX_DIMS];
    for (int k = 0, j = 0; k <= a->ndim; k++) {
        if (k == d) {
            sh[k] = 1;
            st[k] = d < a->ndim ? a->stride[d] * a->shape[d] : 1;
            continue;
        }
        sh[k] = a->shape[j];
        st[k] = a->stride[j];
        j++;
    }
    return record_view(ctx, a, md__view(ctx, a, a->ndim + 1, sh, st, a->data), reshape_backward, "unsqueeze");
}

/* dim MD_DIM_ALL drops every size-1 dimension; a dim of another size is kept
 * (the input itself is returned, as PyTorch). */
MD_API md_tensor *md_squeeze(md_ctx *ctx, md_tensor *a, int dim) {
    if (!a) return NULL;
    int d = -1;
    if (dim != MD_DIM_ALL) {
        d = md__op_dim(ctx, "squeeze", a, dim, a->ndim);
        if (d < 0) return NULL;
        if (a->ndim == 0 || a->shape[d] != 1) return a;
    }
    int64_t sh[MD_MAX_DIMS], st[MD_MAX_DIMS];
    int n = 0;
    for (int k = 0; k < a->ndim; k++) {
        if ((d < 0 && a->shape[k] == 1) || k == d) continue;
        sh[n] = a->shape[k];
        st[n++] = a->stride[k];
    }
    if (n == a->ndim) return a;
    return record_view(ctx, a, md__view(ctx, a, n, sh, st, a->data), reshape_backward, "squeeze");
}

/* ------------------------------------------------------------- permute -- */

static int permute_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    const int *perm = md_node_saved(node);
    int inv[MD_MAX_DIMS];
    for (int d = 0; d < g->ndim; d++) inv[perm[d]] = d;
    return md_node_accumulate(ctx, node, 0, md_contiguous(ctx, md_permute(ctx, g, inv)));
}

static md_tensor *permute(md_ctx *ctx, md_tensor *a, const int *perm) {
    if (!a) return NULL;
    int p[MD_MAX_DIMS];
    bool seen[MD_MAX_DIMS] = { false };
    char s[96];
    for (int d = 0; d < a->ndim; d++) {
        int k = perm[d] < 0 ? perm[d] + a->ndim : perm[d];
        if (k < 0 || k >= a->ndim || seen[k])
            return md_op_fail(ctx, "permute", "entry %d (%d) of the permutation is invalid for %s", d, perm[d],
                              md_tensor_describe(a, s, sizeof s));
        seen[k] = true;
        p[d] = k;
    }
    int64_t sh[MD_MAX_DIMS], st[MD_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) {
        sh[d] = a->shape[p[d]];
        st[d] = a->stride[p[d]];
    }
    md_tensor *v = record_view(ctx, a, md__view(ctx, a, a->ndim, sh, st, a->data), permute_backward, "permute");
    if (v && v->grad_fn) {
        int *saved = md_node_save(ctx, v->grad_fn, sizeof(int) * MD_MAX_DIMS);
        if (!saved) return NULL;
        memcpy(saved, p, sizeof p);
    }
    return v;
}

MD_API md_tensor *md_permute(md_ctx *ctx, md_tensor *a, const int *perm) {
    md_tensor *y = permute(ctx, a, perm);
    return MD__TRACING(ctx, y) ? md__onnx_permute(ctx, y, a, perm) : y;
}

MD_API md_tensor *md_transpose(md_ctx *ctx, md_tensor *a, int d0, int d1) {
    if (!a) return NULL;
    int x = md__op_dim(ctx, "transpose", a, d0, a->ndim), y = md__op_dim(ctx, "transpose", a, d1, a->ndim);
    if (x < 0 || y < 0) return NULL;
    if (a->ndim == 0) return a;
    int p[MD_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) p[d] = d;
    p[x] = y;
    p[y] = x;
    return md_permute(ctx, a, p);
}

/* -------------------------------------------------------------- expand -- */

static int expand_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    return md__accumulate_reduced(ctx, node, 0, g);
}

MD_API md_tensor *md_expand(md_ctx *ctx, md_tensor *a, int ndim, const int64_t *shape) {
    if (!a) return NULL;
    char s[96];
    if (ndim < a->ndim || ndim > MD_MAX_DIMS)
        return md_op_fail(ctx, "expand", "cannot expand %s to %d dimensions", md_tensor_describe(a, s, sizeof s),
                          ndim);
    int64_t sh[MD_MAX_DIMS], st[MD_MAX_DIMS];
    int lead = ndim - a->ndim;
    for (int d = 0; d < ndim; d++) {
        int k = d - lead;
        int64_t want = shape[d];
        if (k < 0) {
            if (want < 0) return md_op_fail(ctx, "expand", "size %lld for new dimension %d of %s",
                                            (long long)want, d, md_tensor_describe(a, s, sizeof s));
            sh[d] = want;
            st[d] = 0;
        } else if (want == -1 || want == a->shape[k]) {
            sh[d] = a->shape[k];
            st[d] = a->stride[k];
        } else if (a->shape[k] == 1 && want >= 0) {
            sh[d] = want;
            st[d] = 0;
        } else {
            return md_op_fail(ctx, "expand", "dimension %d of %s has size %lld, cannot expand to %lld", k,
                              md_tensor_describe(a, s, sizeof s), (long long)a->shape[k], (long long)want);
        }
    }
    return record_view(ctx, a, md__view(ctx, a, ndim, sh, st, a->data), expand_backward, "expand");
}

/* --------------------------------------------------------------- slice -- */

typedef struct slice_saved { int dim; int64_t start, step; } slice_saved;

/* The gradient lands in the sliced positions of a zero tensor of a's shape. */
static int slice_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    const slice_saved *s = md_node_saved(node);
    md_tensor *x = md_node_input(node, 0);
    md_tensor *gx = md_tensor_zeros_like(ctx, x);
    if (!gx) return -1;
    md_tensor *dst = md__view(ctx, gx, g->ndim, g->shape, gx->stride,
                              md_f32(gx) + s->start * gx->stride[s->dim]);
    if (!dst) return -1;
    dst->stride[s->dim] *= s->step;
    if (md__copy_any(ctx, dst, g) != 0) return -1;
    return md_node_accumulate(ctx, node, 0, gx);
}

MD_API md_tensor *md_slice(md_ctx *ctx, md_tensor *a, int dim, int64_t start, int64_t end, int64_t step) {
    if (!a) return NULL;
    char s[96];
    if (a->ndim == 0) return md_op_fail(ctx, "slice", "cannot slice a 0-d tensor");
    int d = md__op_dim(ctx, "slice", a, dim, a->ndim);
    if (d < 0) return NULL;
    if (step <= 0)
        return md_op_fail(ctx, "slice", "step %lld must be positive (%s)", (long long)step,
                          md_tensor_describe(a, s, sizeof s));
    int64_t len = a->shape[d];
    if (start < 0) start += len;
    if (end < 0) end += len;
    start = start < 0 ? 0 : (start > len ? len : start);
    end = end < 0 ? 0 : (end > len ? len : end);
    int64_t count = end > start ? (end - start + step - 1) / step : 0;
    int64_t sh[MD_MAX_DIMS], st[MD_MAX_DIMS];
    memcpy(sh, a->shape, sizeof sh);
    memcpy(st, a->stride, sizeof st);
    sh[d] = count;
    st[d] = a->stride[d] * step;
    void *data = (char *)a->data + (size_t)(start * a->stride[d]) * md_dtype_size(a->dtype);
    md_tensor *v = record_view(ctx, a, md__view(ctx, a, a->ndim, sh, st, data), slice_backward, "slice");
    if (v && v->grad_fn) {
        slice_saved *sv = md_node_save(ctx, v->grad_fn, sizeof *sv);
        if (!sv) return NULL;
        *sv = (slice_saved){ d, start, step };
    }
    return v;
}

MD_API int md_split(md_ctx *ctx, md_tensor *a, const int64_t *sizes, int n, int dim, md_tensor **out) {
    for (int k = 0; k < n; k++) out[k] = NULL;
    if (!a) return -1;
    char s[96];
    int d = md__op_dim(ctx, "split", a, dim, a->ndim);
    if (d < 0) return -1;
    if (a->ndim == 0) {
        md_op_fail(ctx, "split", "cannot split a 0-d tensor");
        return -1;
    }
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        if (sizes[k] < 0) {
            md_op_fail(ctx, "split", "negative section size %lld", (long long)sizes[k]);
            return -1;
        }
        total += sizes[k];
    }
    if (total != a->shape[d]) {
        md_op_fail(ctx, "split", "sections sum to %lld but dimension %d of %s has %lld", (long long)total, d,
                   md_tensor_describe(a, s, sizeof s), (long long)a->shape[d]);
        return -1;
    }
    int64_t at = 0;
    for (int k = 0; k < n; k++) {
        out[k] = md_slice(ctx, a, d, at, at + sizes[k], 1);
        if (!out[k]) return -1;
        at += sizes[k];
    }
    return 0;
}

/* ----------------------------------------------------------- cat, stack -- */

static int cat_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    int dim = *(int *)md_node_saved(node);
    int64_t at = 0;
    for (int i = 0; i < md_node_input_count(node); i++) {
        md_tensor *x = md_node_input(node, i);
        int64_t len = x->shape[dim];
        if (md_node_needs_grad(node, i) &&
            md_node_accumulate(ctx, node, i, md_contiguous(ctx, md_slice(ctx, g, dim, at, at + len, 1))))
            return -1;
        at += len;
    }
    return 0;
}

static md_tensor *cat(md_ctx *ctx, md_tensor *const *ts, int n, int dim) {
    if (n <= 0) return md_op_fail(ctx, "cat", "no tensors to concatenate");
    for (int i = 0; i < n; i++)
        if (!ts[i]) return NULL;
    const md_tensor *a = ts[0];
    char s[96], t[96];
    int d = md__op_dim(ctx, "cat", a, dim, a->ndim);
    if (d < 0) return NULL;
    if (a->ndim == 0) return md_op_fail(ctx, "cat", "cannot concatenate 0-d tensors");
    int64_t sh[MD_MAX_DIMS];
    memcpy(sh, a->shape, sizeof sh);
    sh[d] = 0;
    for (int i = 0; i < n; i++) {
        const md_tensor *b = ts[i];
        bool ok = b->ndim == a->ndim && b->dtype == a->dtype;
        for (int k = 0; ok && k < a->ndim; k++)
            if (k != d && b->shape[k] != a->shape[k]) ok = false;
        if (!ok)
            return md_op_fail(ctx, "cat", "tensor %d %s does not match tensor 0 %s outside dimension %d", i,
                              md_tensor_describe(b, t, sizeof t), md_tensor_describe(a, s, sizeof s), d);
        sh[d] += b->shape[d];
    }
    if (!md__same_device(ctx, "cat", n, ts)) return NULL;
    md_tensor *out = md__empty_like_on(ctx, a, a->dtype, a->ndim, sh);
    if (!out) return NULL;
    size_t es = md_dtype_size(a->dtype);
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        md_tensor *dst = md__view(ctx, out, out->ndim, ts[i]->shape, out->stride,
                                  (char *)out->data + (size_t)(at * out->stride[d]) * es);
        if (!dst) return NULL;
        if (md__copy_any(ctx, dst, ts[i]) != 0) return NULL;
        at += ts[i]->shape[d];
    }
    if (a->dtype == MD_F32) {
        md_node *node = md_autograd_record(ctx, out, ts, n, cat_backward, "cat");
        if (node) {
            int *sd = md_node_save(ctx, node, sizeof *sd);
            if (!sd) return NULL;
            *sd = d;
        }
    }
    return out;
}

MD_API md_tensor *md_cat(md_ctx *ctx, md_tensor *const *ts, int n, int dim) {
    md_tensor *y = cat(ctx, ts, n, dim);
    return MD__TRACING(ctx, y) ? md__onnx_cat(ctx, y, ts, n, dim) : y;
}

MD_API md_tensor *md_stack(md_ctx *ctx, md_tensor *const *ts, int n, int dim) {
    if (n <= 0) return md_op_fail(ctx, "stack", "no tensors to stack");
    md_tensor **u = md_ctx_alloc(ctx, sizeof *u * (size_t)n);
    if (!u) return NULL;
    for (int i = 0; i < n; i++) {
        if (!ts[i]) return NULL;
        if (!md_tensor_same_shape(ts[i], ts[0])) {
            char s[96], t[96];
            return md_op_fail(ctx, "stack", "tensor %d %s differs in shape from tensor 0 %s", i,
                              md_tensor_describe(ts[i], t, sizeof t), md_tensor_describe(ts[0], s, sizeof s));
        }
        u[i] = md_unsqueeze(ctx, ts[i], dim);
        if (!u[i]) return NULL;
    }
    return md_cat(ctx, u, n, dim);
}
