/* Indexing: index_select, gather, scatter_add, masked_select, nonzero.
 * Index tensors are i64; values are checked against the indexed size. */
#include <string.h>
#include "op_basic.h"

static bool range_fail(md_ctx *ctx, const char *op, const md_tensor *a, int dim, int64_t v, int64_t i) {
    char s[96];
    md_op_fail(ctx, op, "index %lld (entry %lld) out of range [0, %lld) for dimension %d of %s", (long long)v,
               (long long)i, (long long)(a->ndim ? a->shape[dim] : 1), dim, md_tensor_describe(a, s, sizeof s));
    return false;
}

/* All of the contiguous i64 idx in [0, size); otherwise md_op_fail naming the
 * culprit. On a device the check runs there and reads back one entry
 * (a synchronisation: an index out of range would corrupt memory). */
static bool check_range(md_ctx *ctx, const char *op, const md_tensor *a, int dim, const md_tensor *index) {
    int64_t size = a->ndim ? a->shape[dim] : 1, n = md_tensor_numel(index);
    const md_backend *be = md__be(ctx, op, index);
    if (!be) return false;
    int64_t bad, val;
    if (be->index_check(md_i64(index), n, size, &bad, &val) != 0) return md__be_failed(ctx, op, be), false;
    return bad < 0 || range_fail(ctx, op, a, dim, val, bad);
}

/* The backend of a's op when it has the kernels the op needs (`ok`, read
 * from md__backend_table); NULL after md_op_fail. */
static const md_backend *index_be(md_ctx *ctx, const char *op, const md_tensor *a, bool ok) {
    const md_backend *be = md__be(ctx, op, a);
    if (be && !ok) {
        md__no_kernel(ctx, op, a);
        be = NULL;
    }
    return be;
}

static md_tensor *index_tensor(md_ctx *ctx, const char *op, md_tensor *index) {
    if (index->dtype != MD_I64 && index->dtype != MD_I32) {
        char s[96];
        return md_op_fail(ctx, op, "index %s must be i64", md_tensor_describe(index, s, sizeof s));
    }
    return md_contiguous(ctx, md_cast(ctx, index, MD_I64));
}

/* ------------------------------------------------------- index_select -- */

typedef struct isel_saved { int64_t outer, n, inner, k; const int64_t *idx; } isel_saved;

static int index_select_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    const isel_saved *s = md_node_saved(node);
    md_tensor *x = md_node_input(node, 0);
    md_tensor *gx = md_tensor_zeros_like(ctx, x);
    if (!gx) return -1;
    const md_backend *be = md__be(ctx, "index_select", x);
    md_tensor *gc = md__contig(ctx, g);
    if (!be || !gc) return -1;
    if (be->index_add_f32(md_f32(gc), s->outer, s->n, s->inner, s->idx, s->k, md_f32(gx)) != 0)
        return md__be_failed(ctx, "index_select", be), -1;
    return md_node_accumulate(ctx, node, 0, gx);
}

MD_API md_tensor *md_index_select(md_ctx *ctx, md_tensor *a, int dim, md_tensor *index) {
    if (!a || !index) return NULL;
    md_tensor *ins[2] = { a, index };
    if (!md__same_device(ctx, "index_select", 2, ins)) return NULL;
    const md_backend *t = md__backend_table(a->device);
    const md_backend *be = index_be(ctx, "index_select", a, t && t->index_check && t->index_select &&
                                    t->index_add_f32);
    if (!be) return NULL;
    int d = md__op_dim(ctx, "index_select", a, dim, a->ndim);
    if (d < 0) return NULL;
    if (index->ndim > 1) {
        char s[96];
        return md_op_fail(ctx, "index_select", "index %s must be 1-D", md_tensor_describe(index, s, sizeof s));
    }
    md_tensor *idx = index_tensor(ctx, "index_select", index);
    a = md_contiguous(ctx, a);
    if (!idx || !a) return NULL;
    int64_t k = md_tensor_numel(idx);
    if (!check_range(ctx, "index_select", a, d, idx)) return NULL;
    int64_t outer = md__prod(a->shape, 0, d), n = a->ndim ? a->shape[d] : 1;
    int64_t inner = a->ndim ? md__prod(a->shape, d + 1, a->ndim) : 1;
    int64_t sh[MD_MAX_DIMS];
    memcpy(sh, a->shape, sizeof sh);
    if (a->ndim) sh[d] = k;
    md_tensor *out = md__empty_like_on(ctx, a, a->dtype, a->ndim, sh);
    if (!out) return NULL;
    if (be->index_select(md_dtype_size(a->dtype), a->data, outer, n, inner, md_i64(idx), k, out->data) != 0)
        return md__be_failed(ctx, "index_select", be);
    if (a->dtype == MD_F32) {
        md_node *node = md_autograd_record(ctx, out, &a, 1, index_select_backward, "index_select");
        if (node) {
            isel_saved *s = md_node_save(ctx, node, sizeof *s);
            if (!s) return NULL;
            *s = (isel_saved){ outer, n, inner, k, md_i64(idx) };
            md_node_unsave(ctx, node, 0);   /* the gradient reads indices, not values */
            md_node_unsave(ctx, node, -1);
            if (md_node_keep(ctx, node, idx)) return NULL;
        }
    }
    return out;
}

/* ------------------------------------------------------ gather, scatter -- */

/* Offsets into a (contiguous) of every index position, after checks. */
static int64_t *index_offsets(md_ctx *ctx, const char *op, const md_tensor *a, int d, const md_tensor *idx) {
    char s[96], t[96];
    if (idx->ndim != a->ndim) {
        md_op_fail(ctx, op, "index %s and input %s differ in dimensions", md_tensor_describe(idx, t, sizeof t),
                   md_tensor_describe(a, s, sizeof s));
        return NULL;
    }
    for (int k = 0; k < a->ndim; k++)
        if (k != d && idx->shape[k] > a->shape[k]) {
            md_op_fail(ctx, op, "index %s larger than input %s in dimension %d",
                       md_tensor_describe(idx, t, sizeof t), md_tensor_describe(a, s, sizeof s), k);
            return NULL;
        }
    int64_t n = md_tensor_numel(idx);
    if (!check_range(ctx, op, a, d, idx)) return NULL;
    size_t bytes = sizeof(int64_t) * (size_t)(n ? n : 1);
    const md_backend *be = md__be(ctx, op, a);
    int64_t *off = be ? md__alloc_like(ctx, a, bytes) : NULL;   /* step memory that lives until backward */
    if (!off) return NULL;
    if (be->index_offsets(a->ndim, idx->shape, d, md_i64(idx), a->stride, off) != 0)
        return md__be_failed(ctx, op, be), NULL;
    return off;
}

typedef struct gather_saved { const int64_t *off; int64_t n; } gather_saved;

static int gather_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    const gather_saved *s = md_node_saved(node);
    md_tensor *x = md_node_input(node, 0);
    md_tensor *gx = md_tensor_zeros_like(ctx, x);
    if (!gx) return -1;
    const md_backend *be = md__be(ctx, "gather", x);
    md_tensor *gc = md__contig(ctx, g);
    if (!be || !gc) return -1;
    if (be->put_add(MD_F32, gx->data, s->off, s->n, md_tensor_numel(gx), gc->data) != 0)
        return md__be_failed(ctx, "gather", be), -1;
    return md_node_accumulate(ctx, node, 0, gx);
}

MD_API md_tensor *md_gather(md_ctx *ctx, md_tensor *a, int dim, md_tensor *index) {
    if (!a || !index) return NULL;
    md_tensor *ins[2] = { a, index };
    if (!md__same_device(ctx, "gather", 2, ins)) return NULL;
    const md_backend *t = md__backend_table(a->device);
    const md_backend *be = index_be(ctx, "gather", a, t && t->index_check && t->index_offsets && t->take && t->put_add);
    if (!be) return NULL;
    int d = md__op_dim(ctx, "gather", a, dim, a->ndim);
    if (d < 0) return NULL;
    md_tensor *idx = index_tensor(ctx, "gather", index);
    a = md_contiguous(ctx, a);
    if (!idx || !a) return NULL;
    int64_t *off = index_offsets(ctx, "gather", a, d, idx);
    md_tensor *out = off ? md__empty_like_on(ctx, a, a->dtype, idx->ndim, idx->shape) : NULL;
    if (!out) return NULL;
    int64_t n = md_tensor_numel(idx);
    if (be->take(md_dtype_size(a->dtype), a->data, off, n, out->data) != 0) return md__be_failed(ctx, "gather", be);
    if (a->dtype == MD_F32) {
        md_node *node = md_autograd_record(ctx, out, &a, 1, gather_backward, "gather");
        if (node) {
            gather_saved *s = md_node_save(ctx, node, sizeof *s);
            if (!s) return NULL;
            *s = (gather_saved){ off, n };
            md_node_unsave(ctx, node, 0);   /* the gradient reads offsets, not values */
            md_node_unsave(ctx, node, -1);
            if (md__node_keep_data(ctx, node, a->device, off)) return NULL;
        }
    }
    return out;
}

typedef struct scatter_saved { const int64_t *off; int64_t n; md_tensor *idx; } scatter_saved;

/* d/da = g; d/dsrc = g at the scattered positions (zero where src is
 * larger than the index). */
static int scatter_add_backward(md_ctx *ctx, md_node *node, md_tensor *g) {
    const scatter_saved *s = md_node_saved(node);
    if (md_node_accumulate(ctx, node, 0, g)) return -1;
    if (!md_node_needs_grad(node, 1)) return 0;
    md_tensor *src = md_node_input(node, 1);
    md_tensor *gs = md_tensor_zeros_like(ctx, src);
    md_tensor *part = md__empty_like_on(ctx, src, MD_F32, s->idx->ndim, s->idx->shape);
    if (!gs || !part) return -1;
    const md_backend *be = md__be(ctx, "scatter_add", src);
    md_tensor *gc = md__contig(ctx, g);
    if (!be || !gc) return -1;
    if (be->take(sizeof(float), gc->data, s->off, s->n, part->data) != 0)
        return md__be_failed(ctx, "scatter_add", be), -1;
    md_tensor *region = md__view(ctx, gs, part->ndim, part->shape, gs->stride, gs->data);
    if (!region || md__copy_any(ctx, region, part) != 0) return -1;
    return md_node_accumulate(ctx, node, 1, gs);
}

MD_API md_tensor *md_scatter_add(md_ctx *ctx, md_tensor *a, int dim, md_tensor *index, md_tensor *src) {
    if (!a || !index || !src) return NULL;
    md_tensor *ins3[3] = { a, index, src };
    if (!md__same_device(ctx, "scatter_add", 3, ins3)) return NULL;
    const md_backend *tb = md__backend_table(a->device);
    const md_backend *be = index_be(ctx, "scatter_add", a, tb && tb->index_check && tb->index_offsets && tb->take &&
                                    tb->put_add);
    if (!be) return NULL;
    char s[96], t[96];
    int d = md__op_dim(ctx, "scatter_add", a, dim, a->ndim);
    if (d < 0) return NULL;
    if (src->dtype != a->dtype || src->ndim != a->ndim)
        return md_op_fail(ctx, "scatter_add", "src %s does not match input %s in dtype or dimensions",
                          md_tensor_describe(src, t, sizeof t), md_tensor_describe(a, s, sizeof s));
    md_tensor *idx = index_tensor(ctx, "scatter_add", index);
    if (!idx) return NULL;
    for (int k = 0; k < idx->ndim && k < src->ndim; k++)
        if (idx->shape[k] > src->shape[k])
            return md_op_fail(ctx, "scatter_add", "index %s larger than src %s in dimension %d",
                              md_tensor_describe(idx, t, sizeof t), md_tensor_describe(src, s, sizeof s), k);
    md_tensor *out = md__empty_like_on(ctx, a, a->dtype, a->ndim, a->shape);
    if (!out) return NULL;
    if (md__copy_any(ctx, out, a) != 0) return NULL;
    int64_t *off = index_offsets(ctx, "scatter_add", out, d, idx);
    if (!off) return NULL;
    /* the part of src the index covers, contiguous */
    md_tensor *region = md__view(ctx, src, idx->ndim, idx->shape, src->stride, src->data);
    md_tensor *vals = region ? md__empty_like_on(ctx, src, src->dtype, idx->ndim, idx->shape) : NULL;
    if (!vals) return NULL;
    int64_t n = md_tensor_numel(idx);
    if (md__copy_any(ctx, vals, region) != 0) return NULL;
    if (a->dtype == MD_U8) return md_op_fail(ctx, "scatter_add", "dtype %s unsupported", md_dtype_name(a->dtype));
    if (be->put_add((int)a->dtype, out->data, off, n, md_tensor_numel(out), vals->data) != 0)
        return md__be_failed(ctx, "scatter_add", be);
    if (a->dtype == MD_F32) {
        md_tensor *ins[2] = { a, src };
        md_node *node = md_autograd_record(ctx, out, ins, 2, scatter_add_backward, "scatter_add");
        if (node) {
            scatter_saved *sv = md_node_save(ctx, node, sizeof *sv);
            if (!sv) return NULL;
            *sv = (scatter_saved){ off, n, idx };
            for (int i = -1; i < 2; i++) md_node_unsave(ctx, node, i);
            if (md_node_keep(ctx, node, idx) || md__node_keep_data(ctx, node, out->device, off)) return NULL;
        }
    }
    return out;
}

/* ------------------------------------------------- nonzero, masked_select -- */

/* ndim 1: positions [M]; otherwise [M, ndim] coordinates as PyTorch. */
MD_API md_tensor *md_nonzero(md_ctx *ctx, md_tensor *a) {
    if (!a) return NULL;
    md_tensor *m = md_contiguous(ctx, a);
    if (!m) return NULL;
    /* the count is read back: the output's size depends on the data */
    const md_backend *be = md__be(ctx, "nonzero", m);
    if (!be) return NULL;
    if (!be->nonzero) return md__no_kernel(ctx, "nonzero", m);
    int64_t cnt;
    if (be->nonzero((int)m->dtype, m->data, m->ndim, m->shape, NULL, &cnt) != 0)
        return md__be_failed(ctx, "nonzero", be);
    md_tensor *out = m->ndim == 1 ? md__empty_like_on(ctx, m, MD_I64, MD_DIMS(cnt))
                                  : md__empty_like_on(ctx, m, MD_I64, MD_DIMS(cnt, m->ndim ? m->ndim : 1));
    if (!out) return NULL;
    int64_t again;
    if (cnt > 0 && be->nonzero((int)m->dtype, m->data, m->ndim, m->shape, md_i64(out), &again) != 0)
        return md__be_failed(ctx, "nonzero", be);
    return out;
}

/* Whole rows when mask covers a's leading dims exactly (mask [N] on a [N, 4]
 * selects rows, even when N == 4); otherwise mask broadcasts to a's shape and
 * single elements are selected. Both go through index_select, which carries
 * the gradient. */
MD_API md_tensor *md_masked_select(md_ctx *ctx, md_tensor *a, md_tensor *mask) {
    if (!a || !mask) return NULL;
    md_tensor *ins[2] = { a, mask };
    if (!md__same_device(ctx, "masked_select", 2, ins)) return NULL;
    char s[96], t[96];
    bool rows = mask->ndim >= 1 && mask->ndim < a->ndim;
    for (int d = 0; rows && d < mask->ndim; d++)
        if (mask->shape[d] != a->shape[d]) rows = false;
    if (rows) {
        int64_t sh[2] = { md_tensor_numel(mask), md__prod(a->shape, mask->ndim, a->ndim) };
        md_tensor *pos = md_nonzero(ctx, md_reshape(ctx, mask, 1, sh));
        md_tensor *sel = md_index_select(ctx, md_reshape(ctx, a, 2, sh), 0, pos);
        if (!sel) return NULL;
        int64_t osh[MD_MAX_DIMS];
        osh[0] = sel->shape[0];
        int n = 1;
        for (int d = mask->ndim; d < a->ndim; d++) osh[n++] = a->shape[d];
        return md_reshape(ctx, sel, n, osh);
    }
    int ndim;
    int64_t shape[MD_MAX_DIMS];
    if (!md__broadcast2(ctx, "masked_select", a, mask, &ndim, shape)) return NULL;
    if (ndim != a->ndim || md__prod(shape, 0, ndim) != md_tensor_numel(a))
        return md_op_fail(ctx, "masked_select", "mask %s must broadcast to the input %s",
                          md_tensor_describe(mask, t, sizeof t), md_tensor_describe(a, s, sizeof s));
    md_tensor *m = md_contiguous(ctx, md_expand(ctx, mask, ndim, shape));
    int64_t n = md_tensor_numel(a);
    md_tensor *pos = md_nonzero(ctx, md_reshape(ctx, m, MD_DIMS(n)));
    md_tensor *sel = md_index_select(ctx, md_reshape(ctx, a, MD_DIMS(n)), 0, pos);
    return sel;
}
