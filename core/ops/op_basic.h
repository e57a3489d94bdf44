/* Private helpers shared by the basic op families (element-wise, reduce,
 * shape, index, sort): argument checks with messages and view building. */
#ifndef MMDET_OP_BASIC_H
#define MMDET_OP_BASIC_H

#include <string.h>
#include "internal.h"

/* Normalises a possibly negative dim against ndim (ndim 0 accepts 0 and -1
 * like PyTorch); -1 after md_op_fail when out of range. */
static inline int md__op_dim(md_ctx *ctx, const char *op, const md_tensor *t, int dim, int ndim) {
    int n = ndim ? ndim : 1;
    if (dim < -n || dim >= n) {
        char s[96];
        md_op_fail(ctx, op, "dim %d out of range for %s (expected [%d, %d])", dim,
                   md_tensor_describe(t, s, sizeof s), -n, n - 1);
        return -1;
    }
    return dim < 0 ? dim + n : dim;
}

/* NumPy broadcasting of a and b into (ndim, shape); false after md_op_fail. */
static inline bool md__broadcast2(md_ctx *ctx, const char *op, const md_tensor *a, const md_tensor *b,
                                  int *ndim, int64_t *shape) {
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int d = 0; d < n; d++) {
        int da = d - (n - a->ndim), db = d - (n - b->ndim);
        int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char x[96], y[96];
            md_op_fail(ctx, op, "shapes %s and %s cannot be broadcast (dimension %d: %lld vs %lld)",
                       md_tensor_describe(a, x, sizeof x), md_tensor_describe(b, y, sizeof y), d,
                       (long long)sa, (long long)sb);
            return false;
        }
        shape[d] = sa == 1 ? sb : sa;
    }
    *ndim = n;
    return true;
}

/* Strides that read t as if broadcast to (ndim, shape): 0 on stretched dims. */
static inline void md__broadcast_strides(const md_tensor *t, int ndim, const int64_t *shape, int64_t *st) {
    for (int d = 0; d < ndim; d++) {
        int dt = d - (ndim - t->ndim);
        st[d] = (dt < 0 || (t->shape[dt] == 1 && shape[d] != 1)) ? 0 : t->stride[dt];
    }
}

static inline int64_t md__prod(const int64_t *s, int from, int to) {
    int64_t p = 1;
    for (int d = from; d < to; d++) p *= s[d];
    return p;
}

/* A view of base's storage (no grad history; callers record their node). */
static inline md_tensor *md__view(md_ctx *ctx, const md_tensor *base, int ndim, const int64_t *shape,
                                  const int64_t *stride, void *data) {
    md_tensor *v = md_ctx_alloc(ctx, sizeof *v);
    if (!v) return NULL;
    memset(v, 0, sizeof *v);
    v->dtype = base->dtype;
    v->device = base->device;
    v->device_index = base->device_index;
    v->ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        v->shape[d] = shape[d];
        v->stride[d] = stride[d];
    }
    v->data = data;
    return v;
}

/* Adds g (the output-shaped gradient of a broadcasting op) into input i,
 * summing over the broadcast dimensions with the fast reduction kernels. */
int md__accumulate_reduced(md_ctx *ctx, md_node *node, int i, md_tensor *g);

/* Common dtype of a binary op: f32 > i64 > i32 > u8. */
static inline md_dtype md__promote(md_dtype a, md_dtype b) {
    if (a == MD_F32 || b == MD_F32) return MD_F32;
    if (a == MD_I64 || b == MD_I64) return MD_I64;
    if (a == MD_I32 || b == MD_I32) return MD_I32;
    return MD_U8;
}

#endif
