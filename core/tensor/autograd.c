/* Tape autograd: nodes appended in forward order, walked backwards. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"

MD_API bool md_grad_enabled(const md_ctx *ctx) { return ctx->grad_enabled; }

MD_API bool md_grad_set_enabled(md_ctx *ctx, bool on) {
    bool prev = ctx->grad_enabled;
    ctx->grad_enabled = on;
    return prev;
}

/* ---- tape holds on storage ----
 * A pool block stays while some node's backward may read it: md_tensor_release
 * of a block with holds only marks it, and the last hold to go (the node is
 * behind md_backward) hands it back. Holds count on the block, so views of a
 * tensor hold its storage. Bump memory (small tensors) is never handed back
 * early and needs no hold. */

static md_ref take_ref(md_ctx *ctx, md_device_type type, const void *p) {
    md_ref r = { .block = -1 };
    md_arena *a = p ? md__arena_of(ctx, type) : NULL;
    int i;
    md_pool_block *b = a ? md__pool_find_in(a, p, &i) : NULL;
    if (!b) return r;
    b->tape_refs++;
    return (md_ref){ .block = i, .dev = type != MD_CPU, .serial = b->serial };
}

/* The block r holds when it is still the same allocation; NULL when stale. */
static md_pool_block *ref_block(md_ctx *ctx, const md_ref *r, md_arena **arena) {
    if (r->block < 0) return NULL;
    md_arena *a = r->dev ? ctx->dev_arena : &ctx->arena;
    if (!a || r->block >= a->n_blocks) return NULL;
    md_pool_block *b = &a->blocks[r->block];
    if (!b->in_use || b->serial != r->serial) return NULL;
    if (arena) *arena = a;
    return b;
}

static void drop_ref(md_ctx *ctx, md_ref *r) {
    md_arena *a;
    md_pool_block *b = ref_block(ctx, r, &a);
    r->block = -1;
    if (!b || b->tape_refs <= 0) return;
    if (--b->tape_refs == 0 && b->released) md__pool_put(a, b);
}

static int add_ref(md_ctx *ctx, md_node *n, md_device_type type, const void *p) {
    if (n->n_refs == n->cap_refs) {
        int cap = n->cap_refs * 2;
        md_ref *r = md_ctx_alloc(ctx, sizeof *r * (size_t)cap);
        if (!r) return -1;
        memcpy(r, n->refs, sizeof *r * (size_t)n->n_refs);
        n->refs = r;
        n->cap_refs = cap;
    }
    n->refs[n->n_refs++] = take_ref(ctx, type, p);
    return 0;
}

MD_API int md_node_keep(md_ctx *ctx, md_node *node, const md_tensor *t) {
    if (!node || !t || t->persistent) return 0;
    return add_ref(ctx, node, t->device, t->data);
}

int md__node_keep_data(md_ctx *ctx, md_node *node, md_device_type type, const void *p) {
    return node && p ? add_ref(ctx, node, type, p) : 0;
}

MD_API void md_node_unsave(md_ctx *ctx, md_node *node, int i) {
    if (!node || i < -1 || i >= node->n_inputs) return;
    drop_ref(ctx, &node->refs[i < 0 ? node->n_inputs : i]);
}

/* After the node's place in a backward walk: its holds go. */
static void node_drop_refs(md_ctx *ctx, md_node *n) {
    if (n->refs_dropped) return;
    for (int i = 0; i < n->n_refs; i++) {
        md_ref r = n->refs[i];
        drop_ref(ctx, &r);   /* keeps n->refs for node_refs_stale */
    }
    n->refs_dropped = true;
}

/* A second backward through a node whose storage an earlier one handed back. */
static bool node_refs_stale(md_ctx *ctx, const md_node *n) {
    if (!n->refs_dropped) return false;
    for (int i = 0; i < n->n_refs; i++)
        if (n->refs[i].block >= 0 && !ref_block(ctx, &n->refs[i], NULL)) return true;
    return false;
}

MD_API md_node *md_autograd_record(md_ctx *ctx, md_tensor *out, md_tensor *const *inputs, int n_inputs,
                                   md_backward_fn backward, const char *op_name) {
    if (!out || !ctx->grad_enabled) return NULL;
    bool any = false;
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] && inputs[i]->requires_grad) any = true;
    if (!any) return NULL;
    md_node *n = md_ctx_alloc(ctx, sizeof *n);
    md_tensor **ins = md_ctx_alloc(ctx, sizeof *ins * (size_t)(n_inputs ? n_inputs : 1));
    int cap_refs = n_inputs + 3;
    md_ref *refs = md_ctx_alloc(ctx, sizeof *refs * (size_t)cap_refs);
    if (!n || !ins || !refs) return NULL;
    if (ctx->tape_len == ctx->tape_cap) {
        int cap = ctx->tape_cap ? ctx->tape_cap * 2 : 1024;
        md_node **t = realloc(ctx->tape, sizeof *t * (size_t)cap);
        if (!t) {
            md_op_failc(ctx, MD_ERR_NOMEM, op_name, "out of memory growing the autograd tape");
            return NULL;
        }
        ctx->tape = t;
        ctx->tape_cap = cap;
    }
    memcpy(ins, inputs, sizeof *ins * (size_t)n_inputs);
    *n = (struct md_node){ .op = op_name, .backward = backward, .n_inputs = n_inputs,
                           .inputs = ins, .output = out, .saved = NULL,
                           .refs = refs, .cap_refs = cap_refs };
    /* Every input and the output are held until the op says otherwise
     * (md_node_unsave): wrongly freeing is silent, wrongly keeping is not. */
    for (int i = 0; i < n_inputs; i++)
        refs[n->n_refs++] = inputs[i] && !inputs[i]->persistent ? take_ref(ctx, inputs[i]->device, inputs[i]->data)
                                                                : (md_ref){ .block = -1 };
    refs[n->n_refs++] = take_ref(ctx, out->device, out->data);
    out->requires_grad = true;
    out->grad_fn = n;
    ctx->tape[ctx->tape_len++] = n;
    return n;
}

MD_API void *md_node_save(md_ctx *ctx, md_node *node, size_t bytes) {
    if (!node) return NULL;
    node->saved = md_ctx_alloc(ctx, bytes);
    if (node->saved) memset(node->saved, 0, bytes);
    return node->saved;
}

MD_API void *md_node_saved(const md_node *node) { return node->saved; }
MD_API md_tensor *md_node_input(const md_node *node, int i) { return node->inputs[i]; }
MD_API md_tensor *md_node_output(const md_node *node) { return node->output; }
MD_API int md_node_input_count(const md_node *node) { return node->n_inputs; }
MD_API const char *md_node_op(const md_node *node) { return node->op; }

MD_API bool md_node_needs_grad(const md_node *node, int i) {
    return i >= 0 && i < node->n_inputs && node->inputs[i] && node->inputs[i]->requires_grad;
}

/* Sums g over the dimensions that broadcasting added or stretched, giving a
 * contiguous f32 tensor of `shape`. */
static md_tensor *reduce_to_shape(md_ctx *ctx, md_tensor *g, const md_tensor *like) {
    md_tensor *r = md_tensor_zeros(ctx, MD_F32, like->ndim, like->shape);
    if (!r) return NULL;
    int off = g->ndim - like->ndim;
    int64_t n = md_tensor_numel(g);
    float *dst = md_f32(r);
    const float *src = md_f32(g);
    int64_t idx[MD_MAX_DIMS] = { 0 };
    for (int64_t i = 0; i < n; i++) {
        int64_t so = 0, dof = 0;
        for (int d = 0; d < g->ndim; d++) {
            so += idx[d] * g->stride[d];
            int ld = d - off;
            if (ld >= 0 && like->shape[ld] != 1) dof += idx[d] * r->stride[ld];
        }
        dst[dof] += src[so];
        for (int d = g->ndim - 1; d >= 0; d--) {
            if (++idx[d] < g->shape[d]) break;
            idx[d] = 0;
        }
    }
    return r;
}

/* Makes g, when it is a fresh whole pool block of `a` made by the running
 * node (allocated after serial `after`) with t's shape, t's gradient
 * without a copy; false when it is not. */
static bool try_adopt(md_arena *a, uint64_t after, md_tensor *t, md_tensor *g) {
    md_pool_block *b = md__pool_find(a, g->data);
    if (!b || b->owned || b->serial <= after || !md_tensor_same_shape(g, t) || !md_tensor_is_contiguous(g))
        return false;
    b->owned = true;
    t->grad = g;
    return true;
}

/* Makes g t's gradient without a copy when g is the running node's output
 * gradient itself (same storage, whole block, t's shape): a gradient passed
 * through unchanged (add, sub, reshape, contiguous), whose storage the
 * backward loop would hand back right after the node. The loop then keeps
 * it. A later gradient for t adds into it in place; the node's own reads of
 * g come before that (its other inputs' gradients are copies). */
static bool take_pass_grad(md_ctx *ctx, md_tensor *t, md_tensor *g) {
    md_tensor *pg = ctx->pass_grad;
    /* Poison mode (debugging, sanitizer builds) hands every non-leaf
     * gradient back, poisoned, as soon as its node has run, so that a
     * wrongly freed read shows as NaN rather than as a live buffer. */
    if (ctx->arena.poison) return false;
    if (!pg || pg->data != g->data || !md_tensor_same_shape(g, t) || !md_tensor_is_contiguous(g) ||
        md_tensor_numel(pg) != md_tensor_numel(g))
        return false;
    /* the block is pg's (owned when pg was itself adopted): it moves to t */
    md_pool_block *b = md__pool_find(&ctx->arena, g->data);
    if (!b || b->tape_refs > 0) return false;
    b->owned = true;
    t->grad = g;
    ctx->pass_grad = NULL;
    return true;
}

/* reduce_to_shape on a device: one sum kernel per reduced dimension. */
static md_tensor *reduce_to_shape_device(md_ctx *ctx, const md_backend *be, md_tensor *g, const md_tensor *like) {
    g = md__contig(ctx, g);
    if (!g) return NULL;
    int nd = g->ndim, off = g->ndim - like->ndim;
    int64_t shape[MD_MAX_DIMS];
    for (int d = 0; d < nd; d++) shape[d] = g->shape[d];
    for (int d = nd - 1; d >= 0; d--) {
        int ld = d - off;
        if (shape[d] == 1 || (ld >= 0 && like->shape[ld] != 1)) continue;
        int64_t outer = 1, inner = 1;
        for (int k = 0; k < d; k++) outer *= shape[k];
        for (int k = d + 1; k < nd; k++) inner *= shape[k];
        int64_t n = shape[d];
        shape[d] = 1;
        md_tensor *r = md__empty_like_on(ctx, g, MD_F32, nd, shape);
        if (!r) return NULL;
        if (be->sum_f32(md_f32(g), outer, n, inner, 1.0f, md_f32(r)) != 0) return md__be_failed(ctx, "backward", be);
        g = r;
    }
    md_tensor *out = md__empty_like_on(ctx, g, MD_F32, like->ndim, like->shape);
    if (!out || be->copy(out->data, g->data, (size_t)md_tensor_numel(out) * 4, MD_COPY_D2D) != 0)
        return out ? md__be_failed(ctx, "backward", be) : NULL;
    return out;
}

/* md_node_accumulate for a tensor on a device (g already has its shape
 * checked against t's, up to broadcasting). */
static int accumulate_device(md_ctx *ctx, md_node *node, md_tensor *t, md_tensor *g) {
    const md_backend *be = md__be(ctx, node->op, t);
    if (!be) return -1;
    if (!md__same_device(ctx, node->op, 2, (md_tensor *[]){ t, g })) return -1;
    if (!be->sum_f32 || !be->add_inplace_f32) return md__no_kernel(ctx, node->op, t), -1;
    if (!md_tensor_same_shape(g, t) || !md_tensor_is_contiguous(g))
        if (!(g = reduce_to_shape_device(ctx, be, g, t))) return -1;
    int64_t n = md_tensor_numel(t);
    if (!t->grad && !t->persistent && ctx->in_backward && ctx->dev_arena &&
        try_adopt(ctx->dev_arena, ctx->dev_adopt_after, t, g))
        return 0;
    if (!t->grad) {
        if (t->persistent) {
            md_error err = { 0 };
            t->grad = md_tensor_new_persistent_on(ctx, md_tensor_device(t), MD_F32, t->ndim, t->shape, &err);
            if (!t->grad) return md_op_fail(ctx, node->op, "%s", err.msg), -1;
        } else {
            t->grad = md__empty_like_on(ctx, t, MD_F32, t->ndim, t->shape);
            if (!t->grad) return -1;
        }
        if (be->copy(t->grad->data, g->data, (size_t)n * 4, MD_COPY_D2D) != 0) return md__be_failed(ctx, node->op, be), -1;
        return 0;
    }
    if (be->add_inplace_f32(md_f32(t->grad), md_f32(g), n) != 0) return md__be_failed(ctx, node->op, be), -1;
    return 0;
}

MD_API int md_node_accumulate(md_ctx *ctx, md_node *node, int i, md_tensor *g) {
    if (!g) return -1;
    if (!md_node_needs_grad(node, i)) return 0;
    md_tensor *t = node->inputs[i];
    if (g->dtype != MD_F32) {
        md_op_fail(ctx, node->op, "backward produced a %s gradient", md_dtype_name(g->dtype));
        return -1;
    }
    if (!md__same_device(ctx, node->op, 2, (md_tensor *[]){ t, g })) return -1;
    if (!md_tensor_same_shape(g, t) || !md_tensor_is_contiguous(g)) {
        bool broadcastable = g->ndim >= t->ndim;
        for (int d = 0; broadcastable && d < t->ndim; d++) {
            int64_t gs = g->shape[g->ndim - t->ndim + d];
            if (t->shape[d] != gs && t->shape[d] != 1) broadcastable = false;
        }
        if (!broadcastable) {
            char a[96], b[96];
            md_op_fail(ctx, node->op, "backward gradient %s does not match input %d %s",
                       md_tensor_describe(g, a, sizeof a), i, md_tensor_describe(t, b, sizeof b));
            return -1;
        }
        if (t->device != MD_CPU) return accumulate_device(ctx, node, t, g);
        g = reduce_to_shape(ctx, g, t);
        if (!g) return -1;
    }
    if (t->device != MD_CPU) return accumulate_device(ctx, node, t, g);
    int64_t n = md_tensor_numel(t);
    if (!t->grad && !t->persistent && ctx->in_backward && g->data && try_adopt(&ctx->arena, ctx->adopt_after, t, g))
        return 0;
    if (!t->grad && !t->persistent && ctx->in_backward && take_pass_grad(ctx, t, g)) return 0;
    if (!t->grad) {
        if (t->persistent) {
            md_error err = { 0 };
            t->grad = md_tensor_new_persistent(ctx, MD_F32, t->ndim, t->shape, &err);
            if (!t->grad) {
                md_op_fail(ctx, node->op, "%s", err.msg);
                return -1;
            }
        } else {   /* the first gradient is copied, not added to zeros */
            t->grad = md_tensor_empty(ctx, MD_F32, t->ndim, t->shape);
            if (!t->grad) return -1;
            float *dst = md_f32(t->grad);
            const float *src = md_f32(g);
            #pragma omp parallel for if (n > 262144) schedule(static)
            for (int64_t k = 0; k < n; k++) dst[k] = src[k];
            return 0;
        }
    }
    float *dst = md_f32(t->grad);
    const float *src = md_f32(g);
    #pragma omp parallel for if (n > 65536) schedule(static)
    for (int64_t k = 0; k < n; k++) dst[k] += src[k];
    return 0;
}

/* For the grad hook: each leaf parameter's last node in backward order
 * (its first in the tape), in an open-addressing table in the arena. */
typedef struct leaf_slot { md_tensor *t; int k; } leaf_slot;
typedef struct leaf_map { leaf_slot *slots; size_t cap; } leaf_map;

static bool is_leaf_param(const md_tensor *t) { return t && t->persistent && t->requires_grad && !t->grad_fn; }

static leaf_slot *leaf_find(leaf_map *m, const md_tensor *t) {
    size_t h = ((uintptr_t)t >> 4) * 0x9e3779b97f4a7c15ULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1))
        if (m->slots[i].t == t || !m->slots[i].t) return &m->slots[i];
}

static int leaf_map_build(md_ctx *ctx, leaf_map *m) {
    size_t n = 0;
    for (int k = 0; k < ctx->tape_len; k++) n += (size_t)ctx->tape[k]->n_inputs;
    for (m->cap = 16; m->cap < 2 * n; m->cap *= 2) {}
    m->slots = md_ctx_alloc(ctx, sizeof *m->slots * m->cap);
    if (!m->slots) return -1;
    memset(m->slots, 0, sizeof *m->slots * m->cap);
    for (int k = 0; k < ctx->tape_len; k++)
        for (int i = 0; i < ctx->tape[k]->n_inputs; i++) {
            md_tensor *t = ctx->tape[k]->inputs[i];
            if (!is_leaf_param(t)) continue;
            leaf_slot *s = leaf_find(m, t);
            if (!s->t) *s = (leaf_slot){ t, k };
        }
    return 0;
}

/* After node k ran: the leaves it was the last user of are final. */
static int leaves_ready(md_ctx *ctx, leaf_map *m, md_node *n, int k) {
    for (int i = 0; i < n->n_inputs; i++) {
        md_tensor *t = n->inputs[i];
        if (!is_leaf_param(t)) continue;
        leaf_slot *s = leaf_find(m, t);
        if (s->t != t || s->k != k) continue;
        s->k = -1;   /* an input twice in one node is told once */
        if (ctx->grad_hook->ready(ctx, t, ctx->grad_hook->user) != 0) return -1;
    }
    return 0;
}

MD_API int md_backward_with(md_ctx *ctx, md_tensor *out, md_tensor *grad_out, md_error *err) {
    if (!out) return md_fail(err, "backward: no output tensor (an earlier op failed?)");
    if (!out->requires_grad || !out->grad_fn)
        return md_fail(err, "backward: the output does not require grad (no differentiable path "
                            "to a parameter, or grad mode was off)");
    md_tensor *seed = grad_out;
    if (!seed) {
        seed = md__empty_like_on(ctx, out, MD_F32, out->ndim, out->shape);
        if (!seed || md_tensor_fill_(seed, 1.0) != 0) goto fail;
    }
    /* Non-leaf gradients of an earlier backward in this step must not leak
     * into this one. */
    for (int k = 0; k < ctx->tape_len; k++) ctx->tape[k]->output->grad = NULL;
    out->grad = md_tensor_zeros_like(ctx, out);
    if (!out->grad) goto fail;
    md_node self = { .op = "backward", .n_inputs = 1, .inputs = &out, .output = NULL };
    if (md_node_accumulate(ctx, &self, 0, seed) != 0) goto fail;

    bool prev = md_grad_set_enabled(ctx, false);
    int rc = 0;
    leaf_map lm = { 0 };
    if (ctx->grad_hook && leaf_map_build(ctx, &lm) != 0) goto fail_enabled;
    ctx->in_backward = true;
    for (int k = ctx->tape_len - 1; k >= 0 && rc == 0; k--) {
        md_node *n = ctx->tape[k];
        md_tensor *g = n->output->grad;
        if (!g) {
            node_drop_refs(ctx, n);
            continue;
        }
        if (node_refs_stale(ctx, n)) {
            md_op_fail(ctx, n->op, "backward through this op a second time in one step, after an earlier "
                                   "backward handed back the tensors it needs");
            rc = -1;
            break;
        }
        md_scope_push(ctx, n->op);
        ctx->adopt_after = ctx->arena.serial;
        if (ctx->dev_arena) ctx->dev_adopt_after = ctx->dev_arena->serial;
        ctx->pass_grad = n->output != out && g->device == MD_CPU ? g : NULL;
        rc = n->backward(ctx, n, g);
        bool taken = ctx->pass_grad == NULL && n->output != out && g->device == MD_CPU;
        ctx->pass_grad = NULL;
        md_scope_pop(ctx);
        if (rc == 0 && md_ctx_failed(ctx)) rc = -1;
        /* As in PyTorch, a non-leaf's gradient is gone once its node has
         * run: its storage goes back to the pool for the next nodes (unless
         * an input took it as its own gradient). */
        if (n->output != out) {
            if (!taken) md__tensor_release(ctx, g);
            n->output->grad = NULL;
        }
        /* As in PyTorch, what only this node still read is gone too. */
        node_drop_refs(ctx, n);
        if (rc == 0 && lm.cap) rc = leaves_ready(ctx, &lm, n, k);
    }
    ctx->in_backward = false;
    /* the hook finishes (waits for its all-reduces) even after a failure,
     * so that no collective is left in flight */
    if (ctx->grad_hook && ctx->grad_hook->done(ctx, ctx->grad_hook->user) != 0) rc = -1;
    md_grad_set_enabled(ctx, prev);
    if (rc != 0) goto fail;
    return 0;
fail_enabled:
    md_grad_set_enabled(ctx, prev);
fail:
    if (err) {
        *err = ctx->op_error;
        if (!err->code) md_fail(err, "backward failed");
        md_error_wrap(err, "backward");
    }
    return -1;
}

MD_API int md_backward(md_ctx *ctx, md_tensor *out, md_error *err) {
    return md_backward_with(ctx, out, NULL, err);
}

MD_API void md_tensor_zero_grad(md_tensor *t) {
    if (t && t->grad) md_tensor_fill_(t->grad, 0.0);
}

int md__hold_copy(md_ctx *ctx, md_node *node, md_tensor *copy, const md_tensor *orig) {
    if (!copy || copy == orig) return 0;
    if (node && md_node_keep(ctx, node, copy) != 0) return -1;
    md_tensor_release(ctx, copy);   /* nobody else knows it: it goes after the node */
    return 0;
}
