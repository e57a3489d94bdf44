/* sort, argsort, topk along a dimension: stable (ties keep the lower index
 * first). Keys are compared as doubles, so i64 values beyond 2^53 may tie.
 * On a device the backend's sort_lines gives the same order. */
#include <string.h>
#include "op_basic.h"
#include "backends/cpu/sort.h"   /* md_sort_order_torch: a host-array helper */

typedef struct sort_saved { int64_t outer, n, inner, k; md_tensor *idx; } sort_saved;

/* The gradient of the selected values goes back to where they came from. */
static int sort_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    const sort_saved *s = md_node_saved(node);
    md_tensor *x = md_node_input(node, 0);
    md_tensor *gx = md_tensor_zeros_like(ctx, x);
    if (!gx) return -1;
    const md_backend *be = md__be(ctx, "sort", x);
    if (!be) return -1;
    if (be->unsort_add_f32(md_f32(g), md_i64(s->idx), s->outer, s->n, s->inner, s->k, md_f32(gx)) != 0)
        return md__be_failed(ctx, "sort", be), -1;
    return md_node_accumulate(ctx, node, 0, gx);
}

static md_tensor *sort_impl(md_ctx *ctx, const char *op, md_tensor *a, int64_t k, int dim, bool descending,
                            bool want_vals, md_tensor **indices) {
    if (indices) *indices = NULL;
    if (!a) return NULL;
    const md_backend *be = md__be(ctx, op, a);
    if (!be) return NULL;
    if (!be->sort_lines || !be->unsort_add_f32) return md__no_kernel(ctx, op, a);
    int d = md__op_dim(ctx, op, a, dim, a->ndim);
    if (d < 0) return NULL;
    a = md_contiguous(ctx, a);
    if (!a) return NULL;
    int64_t n = a->ndim ? a->shape[d] : 1;
    if (k < 0) k = n;
    if (k > n) {
        char s[96];
        return md_op_fail(ctx, op, "k = %lld exceeds dimension %d of %s", (long long)k, d,
                          md_tensor_describe(a, s, sizeof s));
    }
    int64_t outer = a->ndim ? md__prod(a->shape, 0, d) : 1, inner = a->ndim ? md__prod(a->shape, d + 1, a->ndim) : 1;
    int64_t sh[MD_MAX_DIMS];
    memcpy(sh, a->shape, sizeof sh);
    if (a->ndim) sh[d] = k;
    md_tensor *idx = md__empty_like_on(ctx, a, MD_I64, a->ndim, sh);
    md_tensor *vals = want_vals ? md__empty_like_on(ctx, a, a->dtype, a->ndim, sh) : NULL;
    if (!idx || (want_vals && !vals)) return NULL;
    if (a->dtype != MD_F32 && a->dtype != MD_I64 && a->dtype != MD_I32 && a->dtype != MD_U8)
        return md_op_fail(ctx, op, "dtype %s unsupported", md_dtype_name(a->dtype));
    if (be->sort_lines((int)a->dtype, a->data, outer, n, inner, k, descending, vals ? vals->data : NULL,
                       md_i64(idx)) != 0)
        return md__be_failed(ctx, op, be);
    if (indices) *indices = idx;
    if (!want_vals) return idx;
    if (a->dtype == MD_F32) {
        md_node *node = md_autograd_record(ctx, vals, &a, 1, sort_backward, op);
        if (node) {
            sort_saved *s = md_node_save(ctx, node, sizeof *s);
            if (!s) return NULL;
            *s = (sort_saved){ outer, n, inner, k, idx };
            if (md_node_keep(ctx, node, idx)) return NULL;
        }
    }
    return vals;
}

MD_API md_tensor *md_sort(md_ctx *ctx, md_tensor *a, int dim, bool descending, md_tensor **indices) {
    return sort_impl(ctx, "sort", a, -1, dim, descending, true, indices);
}

MD_API md_tensor *md_argsort(md_ctx *ctx, md_tensor *a, int dim, bool descending) {
    return sort_impl(ctx, "argsort", a, -1, dim, descending, false, NULL);
}

MD_API md_tensor *md_topk(md_ctx *ctx, md_tensor *a, int64_t k, int dim, bool largest, md_tensor **indices) {
    if (a && k < 0) return md_op_fail(ctx, "topk", "negative k = %lld", (long long)k);
    return sort_impl(ctx, "topk", a, k, dim, largest, true, indices);
}

MD_API int md_sort_order_torch(const float *v, int64_t n, int64_t *idx) { return md__cpu_torch_sort_desc(v, n, idx); }
