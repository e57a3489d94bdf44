/* Data parallelism as MMDistributedDataParallel (PyTorch's DDP reducer):
 * gradients averaged across ranks in buckets during backward.
 *
 * Parameters go into buckets in reverse registration order (backward meets
 * them roughly in that order). md_backward tells the wrapper when a
 * parameter's gradient is final (autograd.c's grad hook); the gradient is
 * copied into its bucket's flat buffer, and once every parameter of a
 * bucket is in, the bucket's all-reduce starts, buckets strictly in index
 * order so that every rank issues the same collectives in the same order
 * whatever its tape looked like. At the end of backward the parameters not
 * met (no gradient on this rank) are put in as zeros, the remaining buckets
 * start, and the results are copied back. Each bucket carries one flag per
 * parameter, 1 where this rank had a gradient, summed with the gradients:
 * a parameter no rank gave a gradient keeps none.
 *
 * With overlap switched off (md_ddp_set_overlap) the gradients are still
 * copied in as they become final, but no bucket starts before the end of
 * backward: all are started then, in the same order, and waited for (the
 * serial baseline the benchmark compares with; the results are the same
 * bits, the same collectives reducing the same buffers). */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "internal.h"
#include "mmdet/dist.h"
#include "mmdet/module.h"

typedef struct bucket {
    int first, count;            /* d->params[first .. first + count) */
    int64_t numel;               /* gradient elements (the flags follow) */
    md_tensor *flat;             /* persistent, numel + count f32 on the parameters' device */
    md_tensor *flags_host;       /* count f32 on the host (device buckets) */
    int pending;
    md_comm_work *work;
    bool done;                   /* work finished (tested), not yet waited for */
} bucket;

struct md_ddp {
    md_ctx *ctx;
    md_tensor **params;          /* reverse registration order */
    int n_params;
    int *bucket_of;
    int64_t *offset;             /* within the bucket */
    bool *ready;
    bucket *b;
    int n_buckets, next_launch;
    bool overlap;                /* start buckets during backward */
    md__grad_hook hook;
    /* parameter -> index */
    md_tensor **keys;
    int *vals;
    size_t cap;
    double wait_s, bytes, hidden_bytes;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static size_t slot_of(const md_ddp *d, const md_tensor *t) {
    size_t i = (((uintptr_t)t >> 4) * 0x9e3779b97f4a7c15ULL) & (d->cap - 1);
    while (d->keys[i] && d->keys[i] != t) i = (i + 1) & (d->cap - 1);
    return i;
}

/* A 1-D view of n elements of b's flat buffer at `off`. */
static md_tensor view(const bucket *b, int64_t off, int64_t n) {
    md_tensor v = *b->flat;
    v.ndim = 1;
    v.shape[0] = n;
    v.stride[0] = 1;
    v.data = (float *)b->flat->data + off;
    v.grad = NULL;
    v.requires_grad = false;
    return v;
}

static int fail_ctx(md_ctx *ctx, const md_error *e) {
    md_op_failc(ctx, e->code ? e->code : MD_ERR_DIST, "ddp", "%s", e->msg);
    return -1;
}

static int launch(md_ddp *d, bucket *b) {
    md_error e = { 0 };
    if (md_dist_all_reduce_start(d->ctx, b->flat, MD_DIST_MEAN, &b->work, &e) != 0) return fail_ctx(d->ctx, &e);
    d->bytes += (double)(b->numel + b->count) * 4;
    return 0;
}

/* Puts parameter i's gradient (or zeros) and flag into its bucket and
 * starts every bucket that is complete, in order. */
static int put(md_ddp *d, int i) {
    md_ctx *ctx = d->ctx;
    md_tensor *p = d->params[i];
    bucket *b = &d->b[d->bucket_of[i]];
    int64_t n = md_tensor_numel(p);
    md_tensor g = view(b, d->offset[i], n), f = view(b, b->numel + (i - b->first), 1);
    d->ready[i] = true;
    if (p->grad) {
        if (md_tensor_copy_(ctx, &g, p->grad) != 0 || md_tensor_fill_(&f, 1.0) != 0) return -1;
    } else if (md_tensor_fill_(&g, 0.0) != 0 || md_tensor_fill_(&f, 0.0) != 0) {
        return -1;
    }
    b->pending--;
    if (!d->overlap) return 0;
    while (d->next_launch < d->n_buckets && d->b[d->next_launch].pending == 0)
        if (launch(d, &d->b[d->next_launch++]) != 0) return -1;
    /* MPI moves a non-blocking collective on only inside its calls: test
     * the first bucket in flight (a finished one no longer moves the rest) */
    for (int k = 0; k < d->next_launch; k++) {
        if (!d->b[k].work || d->b[k].done) continue;
        md_error e = { 0 };
        if (md_dist_test(ctx, d->b[k].flat, d->b[k].work, &d->b[k].done, &e) != 0) return fail_ctx(ctx, &e);
        if (!d->b[k].done) break;
    }
    return 0;
}

static int on_ready(md_ctx *ctx, md_tensor *leaf, void *user) {
    (void)ctx;
    md_ddp *d = user;
    size_t s = slot_of(d, leaf);
    if (!d->keys[s] || d->ready[d->vals[s]]) return 0;   /* not trained (frozen) or already in */
    return put(d, d->vals[s]);
}

/* The end of backward: the rest in as zeros, then every result back. */
static int on_done(md_ctx *ctx, void *user) {
    md_ddp *d = user;
    int rc = 0;
    /* what was reduced under backward: the buckets finished by now */
    for (int k = 0; k < d->next_launch && rc == 0; k++) {
        bucket *b = &d->b[k];
        md_error e = { 0 };
        if (b->work && !b->done && md_dist_test(ctx, b->flat, b->work, &b->done, &e) != 0) rc = fail_ctx(ctx, &e);
        if (b->done) d->hidden_bytes += (double)(b->numel + b->count) * 4;
    }
    for (int i = 0; i < d->n_params && rc == 0; i++)
        if (!d->ready[i]) rc = put(d, i);
    double t0 = now_s();
    /* without overlap nothing has started yet (every bucket is complete) */
    while (rc == 0 && d->next_launch < d->n_buckets) rc = launch(d, &d->b[d->next_launch++]);
    for (int k = 0; k < d->n_buckets; k++) {
        bucket *b = &d->b[k];
        md_error e = { 0 };
        if (b->work && md_dist_wait(ctx, b->flat, b->work, &e) != 0 && rc == 0) rc = fail_ctx(ctx, &e);
        b->work = NULL;
        b->done = false;
        if (rc != 0) continue;
        const float *flags = md_f32(b->flat) + b->numel;
        if (b->flat->device != MD_CPU) {
            md_tensor f = view(b, b->numel, b->count);
            if (md_tensor_copy_(ctx, b->flags_host, &f) != 0) {
                rc = -1;
                continue;
            }
            flags = md_f32(b->flags_host);
        }
        for (int i = b->first; i < b->first + b->count && rc == 0; i++) {
            md_tensor *p = d->params[i];
            if (flags[i - b->first] <= 0) continue;   /* no rank had a gradient */
            if (!p->grad) {
                md_error e2 = { 0 };
                p->grad = md_tensor_new_persistent_on(ctx, md_tensor_device(p), MD_F32, p->ndim, p->shape, &e2);
                if (!p->grad) rc = fail_ctx(ctx, &e2);
            }
            md_tensor g = view(b, d->offset[i], md_tensor_numel(p));
            if (rc == 0 && md_tensor_copy_(ctx, p->grad, &g) != 0) rc = -1;
        }
    }
    d->wait_s += now_s() - t0;
    for (int k = 0; k < d->n_buckets; k++) d->b[k].pending = d->b[k].count;
    memset(d->ready, 0, sizeof *d->ready * (size_t)d->n_params);
    d->next_launch = 0;
    return rc;
}

typedef struct collect { md_ctx *ctx; md_tensor **params; int n; md_error *err; bool count_only; } collect;

static int collect_param(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)name;
    collect *c = user;
    if (is_param && t->requires_grad) {
        if (!c->count_only) c->params[c->n] = t;
        c->n++;
    }
    return 0;
}

/* Rank 0's parameters and buffers everywhere (DDP's _sync_params_and_buffers). */
static int broadcast_state(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)is_param;
    collect *c = user;
    int rc;
    if (!md_tensor_is_contiguous(t))
        return md_failc(c->err, MD_ERR_DIST, "broadcast of %s: not a contiguous tensor", name);
    if (t->device == MD_CPU)
        rc = md_dist_broadcast_buf(c->ctx, t->data, (size_t)md_tensor_numel(t) * md_dtype_size(t->dtype), 0, c->err);
    else
        rc = md_dist_broadcast(c->ctx, t, 0, c->err);
    return rc ? md_error_wrap(c->err, "broadcast of %s", name) : 0;
}

MD_API md_ddp *md_ddp_new(md_ctx *ctx, md_module *model, double bucket_mb, md_error *err) {
    md_ddp *d = calloc(1, sizeof *d);
    if (!d) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    d->ctx = ctx;
    d->overlap = true;
    if (md_dist_world_size(ctx) == 1) return d;
    collect c = { .ctx = ctx, .err = err };
    if (md_module_visit(model, "", broadcast_state, &c) != 0) goto fail;
    c.count_only = true;
    c.n = 0;
    md_module_visit(model, "", collect_param, &c);
    int n = c.n;
    md_tensor **order = calloc((size_t)(n ? n : 1), sizeof *order);
    d->params = calloc((size_t)(n ? n : 1), sizeof *d->params);
    d->bucket_of = calloc((size_t)(n ? n : 1), sizeof *d->bucket_of);
    d->offset = calloc((size_t)(n ? n : 1), sizeof *d->offset);
    d->ready = calloc((size_t)(n ? n : 1), sizeof *d->ready);
    d->b = calloc((size_t)(n ? n : 1), sizeof *d->b);
    for (d->cap = 16; d->cap < 2 * (size_t)n; d->cap *= 2) {}
    d->keys = calloc(d->cap, sizeof *d->keys);
    d->vals = calloc(d->cap, sizeof *d->vals);
    if (!order || !d->params || !d->bucket_of || !d->offset || !d->ready || !d->b || !d->keys || !d->vals) {
        free(order);
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    c = (collect){ .ctx = ctx, .params = order, .err = err };
    md_module_visit(model, "", collect_param, &c);
    for (int i = 0; i < n; i++) d->params[i] = order[n - 1 - i];
    free(order);
    d->n_params = n;
    /* buckets: the first of 1 MB, the others of bucket_mb, as PyTorch */
    double rest = (bucket_mb > 0 ? bucket_mb : 25) * 1024.0 * 1024.0;
    double cap_bytes = rest < 1024.0 * 1024.0 ? rest : 1024.0 * 1024.0;
    for (int i = 0; i < n; i++) {
        md_tensor *p = d->params[i];
        if (p->dtype != MD_F32 || !md_device_equal(md_tensor_device(p), md_tensor_device(d->params[0]))) {
            md_failc(err, MD_ERR_DIST, "parameter %s: every trained parameter must be f32 on one device",
                     p->name ? p->name : "?");
            goto fail;
        }
        bucket *b = &d->b[d->n_buckets ? d->n_buckets - 1 : 0];
        if (!d->n_buckets || (double)(b->numel + md_tensor_numel(p)) * 4 > cap_bytes) {
            if (d->n_buckets) cap_bytes = rest;
            b = &d->b[d->n_buckets++];
            b->first = i;
        }
        d->bucket_of[i] = d->n_buckets - 1;
        d->offset[i] = b->numel;
        b->numel += md_tensor_numel(p);
        b->count++;
        size_t s = slot_of(d, p);
        d->keys[s] = p;
        d->vals[s] = i;
    }
    for (int k = 0; k < d->n_buckets; k++) {
        bucket *b = &d->b[k];
        b->pending = b->count;
        b->flat = md_tensor_new_persistent_on(ctx, md_tensor_device(d->params[b->first]), MD_F32,
                                              MD_DIMS(b->numel + b->count), err);
        if (!b->flat) goto fail;
        if (b->flat->device != MD_CPU &&
            !(b->flags_host = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(b->count), err)))
            goto fail;
    }
    d->hook = (md__grad_hook){ .ready = on_ready, .done = on_done, .user = d };
    ctx->grad_hook = &d->hook;
    return d;
fail:
    md_ddp_free(d);
    return NULL;
}

MD_API void md_ddp_free(md_ddp *d) {
    if (!d) return;
    if (d->ctx->grad_hook == &d->hook) d->ctx->grad_hook = NULL;
    for (int k = 0; k < d->n_buckets; k++) {
        md_tensor_free(d->b[k].flat);
        md_tensor_free(d->b[k].flags_host);
    }
    free(d->params);
    free(d->bucket_of);
    free(d->offset);
    free(d->ready);
    free(d->b);
    free(d->keys);
    free(d->vals);
    free(d);
}

MD_API int md_ddp_bucket_count(const md_ddp *d) { return d->n_buckets; }

MD_API void md_ddp_set_overlap(md_ddp *d, bool on) { d->overlap = on; }

MD_API bool md_ddp_overlap(const md_ddp *d) { return d->overlap; }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One step's all-reduces on their own: the buckets (zeroed: their content
 * between steps is scratch) started in order and waited for, after a
 * barrier so that no rank's lag is counted; the median of `reps`. */
MD_API int md_ddp_time_all_reduce(md_ddp *d, int reps, double *seconds, md_error *err) {
    *seconds = 0;
    if (!d->n_buckets || reps < 1) return 0;
    double *t = calloc((size_t)reps, sizeof *t);
    if (!t) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    int rc = 0;
    for (int k = 0; k < d->n_buckets && rc == 0; k++) rc = md_tensor_fill_(d->b[k].flat, 0.0);
    if (rc != 0) md_failc(err, MD_ERR_DIST, "ddp: cannot clear the gradient buckets");
    for (int r = 0; r < reps && rc == 0; r++) {
        if ((rc = md_dist_barrier(d->ctx, err)) != 0) break;
        double t0 = now_s();
        for (int k = 0; k < d->n_buckets && rc == 0; k++)
            rc = md_dist_all_reduce_start(d->ctx, d->b[k].flat, MD_DIST_MEAN, &d->b[k].work, err);
        for (int k = 0; k < d->n_buckets; k++) {
            if (d->b[k].work && md_dist_wait(d->ctx, d->b[k].flat, d->b[k].work, err) != 0 && rc == 0) rc = -1;
            d->b[k].work = NULL;
        }
        t[r] = now_s() - t0;
    }
    if (rc == 0) {
        qsort(t, (size_t)reps, sizeof *t, cmp_double);
        *seconds = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    }
    free(t);
    return rc;
}

MD_API double md_ddp_take_wait_seconds(md_ddp *d, double *bytes) {
    double w = d->wait_s;
    if (bytes) *bytes = d->bytes;
    d->wait_s = d->bytes = 0;
    return w;
}

MD_API double md_ddp_take_hidden_bytes(md_ddp *d) {
    double h = d->hidden_bytes;
    d->hidden_bytes = 0;
    return h;
}
