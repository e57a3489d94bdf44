/* Tensors: creation, the step arena, op errors and scopes, random numbers. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define ARENA_ALIGN 64
#define ARENA_DEFAULT_CHUNK ((size_t)64 << 20)

/* ---------------------------------------------------------------- arena -- */

/* Debug mode: storage handed back before the step ends is overwritten with
 * 0xff bytes (NaN as f32, -1 as integers), so that a read of a wrongly freed
 * tensor shows as NaN gradients instead of stale, plausible values. On with
 * MMDET_POISON_FREED=1 and in sanitizer builds; host memory only. */
static bool poison_default(void) {
    const char *env = getenv("MMDET_POISON_FREED");
    if (env && *env) return atoi(env) != 0;
#if defined(__SANITIZE_ADDRESS__)
    return true;
#else
    return false;
#endif
}

void md__arena_init(md_arena *a, const md_backend *dev) {
    memset(a, 0, sizeof *a);
    a->dev = dev;
    a->align = dev ? 256 : ARENA_ALIGN;
    a->default_chunk = ARENA_DEFAULT_CHUNK;
    a->poison = !dev && poison_default();
    /* $MMDET_ARENA_POOL_MIN lowers the threshold so that tests of tiny
     * models exercise the pool and early release */
    const char *env = getenv("MMDET_ARENA_POOL_MIN");
    a->pool_min = env && atol(env) > 0 ? (size_t)atol(env) : MD_POOL_MIN;
    a->free_block = -1;
}

/* Host or device memory for chunks and pool blocks (bytes a multiple of align). */
static char *mem_alloc(md_arena *a, size_t bytes) {
    return a->dev ? a->dev->alloc(bytes) : aligned_alloc(ARENA_ALIGN, bytes);
}

static void mem_free(md_arena *a, void *p) {
    if (a->dev) a->dev->free(p);
    else free(p);
}

void md__arena_free(md_arena *a) {
    for (int i = 0; i < a->n_chunks; i++) mem_free(a, a->chunks[i].base);
    free(a->chunks);
    if (a->dev)
        for (int i = 0; i < a->n_blocks; i++) mem_free(a, a->blocks[i].base);
    free(a->blocks);
    md__heap_free(&a->heap);
    memset(a, 0, sizeof *a);
}

static void note_peak(md_arena *a) {
    if (a->used > a->peak) a->peak = a->used;
    if (a->used + a->pool_used > a->peak_total) a->peak_total = a->used + a->pool_used;
}

/* An entry of a->blocks for a new block: a vacant one (host entries are
 * vacated when their range goes back to the heap), else one more. */
static md_pool_block *block_entry(md_arena *a) {
    for (int i = a->free_block < 0 ? a->n_blocks : a->free_block; i < a->n_blocks; i++)
        if (!a->blocks[i].in_use && !a->blocks[i].base) {
            a->free_block = i + 1;
            return &a->blocks[i];
        }
    a->free_block = -1;
    if (a->n_blocks == a->cap_blocks) {
        int cap = a->cap_blocks ? a->cap_blocks * 2 : 64;
        md_pool_block *nb = realloc(a->blocks, (size_t)cap * sizeof *nb);
        if (!nb) return NULL;
        a->blocks = nb;
        a->cap_blocks = cap;
    }
    md_pool_block *b = &a->blocks[a->n_blocks++];
    *b = (md_pool_block){ 0 };
    return b;
}

/* Device: the best fit among the free blocks (at most 1/8 larger than
 * asked, so that a small request does not pin a big block), else a fresh
 * block. */
static md_pool_block *device_block(md_arena *a, size_t bytes) {
    md_pool_block *best = NULL;
    for (int i = 0; i < a->n_blocks; i++) {
        md_pool_block *b = &a->blocks[i];
        if (!b->in_use && b->base && b->size >= bytes && b->size - bytes <= bytes / 8 &&
            (!best || b->size < best->size))
            best = b;
    }
    if (best) return best;
    char *base = mem_alloc(a, bytes);
    if (!base) return NULL;
    if (!(best = block_entry(a))) {
        mem_free(a, base);
        return NULL;
    }
    *best = (md_pool_block){ .base = base, .size = bytes };
    return best;
}

/* Host: a range of the heap, in an entry of its own. */
static md_pool_block *host_block(md_arena *a, size_t bytes) {
    char *base = md__heap_alloc(&a->heap, bytes);
    if (!base) return NULL;
    md_pool_block *b = block_entry(a);
    if (!b) {
        md__heap_put(&a->heap, base, bytes);
        return NULL;
    }
    *b = (md_pool_block){ .base = base, .size = bytes };
    return b;
}

void *md__pool_alloc(md_arena *a, size_t bytes) {
    bytes = (bytes + 4095) / 4096 * 4096;
    md_pool_block *b = a->dev ? device_block(a, bytes) : host_block(a, bytes);
    if (!b) return NULL;
    b->in_use = b->touched = true;
    b->owned = b->released = false;
    b->tape_refs = 0;
    b->serial = ++a->serial;
    b->bump = a->used;
    a->pool_used += b->size;
    note_peak(a);
    return b->base;
}

md_pool_block *md__pool_find(md_arena *a, const void *p) {
    if (!p) return NULL;
    for (int i = a->n_blocks - 1; i >= 0; i--)
        if (a->blocks[i].in_use && a->blocks[i].base == p) return &a->blocks[i];
    return NULL;
}

/* Blocks are few (one per large tensor of the step) and a tensor is most
 * often one made recently, so a backwards linear scan is enough. */
md_pool_block *md__pool_find_in(md_arena *a, const void *p, int *index) {
    if (!p) return NULL;
    const char *c = p;
    for (int i = a->n_blocks - 1; i >= 0; i--) {
        md_pool_block *b = &a->blocks[i];
        if (b->in_use && c >= b->base && c < b->base + b->size) {
            if (index) *index = i;
            return b;
        }
    }
    return NULL;
}

void md__pool_put(md_arena *a, md_pool_block *b) {
    b->in_use = b->owned = b->released = false;
    b->tape_refs = 0;
    a->pool_used -= b->size;
    if (a->poison) memset(b->base, 0xff, b->size);
    if (a->dev) return;
    /* host: the range goes back to the heap and the entry is vacant */
    int i = (int)(b - a->blocks);
    md__heap_put(&a->heap, b->base, b->size);
    b->base = NULL;
    if (a->free_block < 0 || i < a->free_block) a->free_block = i;
}

md_arena *md__arena_of(md_ctx *ctx, md_device_type type) {
    return type == MD_CPU ? &ctx->arena : md__dev_arena(ctx);
}

MD_API void md_tensor_release(md_ctx *ctx, md_tensor *t) {
    if (ctx && !ctx->keep_released) md__tensor_release(ctx, t);
}

void md__tensor_release(md_ctx *ctx, md_tensor *t) {
    if (!t || t->persistent) return;
    md_arena *a = md__arena_of(ctx, t->device);
    md_pool_block *b = a ? md__pool_find(a, t->data) : NULL;
    if (!b) return;
    if (b->tape_refs > 0) {   /* a backward still reads it: it goes after the last one */
        b->released = true;
        return;
    }
    md__pool_put(a, b);
    t->data = NULL;
}

static int arena_add_chunk(md_arena *a, size_t min_size) {
    if (a->n_chunks == a->cap_chunks) {
        int cap = a->cap_chunks ? a->cap_chunks * 2 : 8;
        md_arena_chunk *c = realloc(a->chunks, (size_t)cap * sizeof *c);
        if (!c) return -1;
        a->chunks = c;
        a->cap_chunks = cap;
    }
    size_t size = a->default_chunk;
    if (a->n_chunks) size = a->chunks[a->n_chunks - 1].size * 2;
    if (size < min_size) size = min_size;
    size = (size + a->align - 1) / a->align * a->align;
    char *base = mem_alloc(a, size);
    if (!base) return -1;
    a->chunks[a->n_chunks++] = (md_arena_chunk){ base, size, 0 };
    return 0;
}

void *md__arena_alloc(md_arena *a, size_t bytes) {
    bytes = (bytes + a->align - 1) / a->align * a->align;
    if (bytes == 0) bytes = a->align;
    md_arena_chunk *c = a->n_chunks ? &a->chunks[a->n_chunks - 1] : NULL;
    if (!c || c->size - c->used < bytes) {
        if (arena_add_chunk(a, bytes) != 0) return NULL;
        c = &a->chunks[a->n_chunks - 1];
    }
    void *p = c->base + c->used;
    c->used += bytes;
    a->used += bytes;
    note_peak(a);
    return p;
}

/* Keeps one chunk, sized to the last step's peak, so that a steady training
 * loop allocates from a single block after its first iteration. */
void md__arena_reset(md_arena *a) {
    if (a->n_chunks > 1) {
        size_t want = a->peak + a->peak / 8;
        for (int i = 0; i < a->n_chunks; i++) mem_free(a, a->chunks[i].base);
        a->n_chunks = 0;
        if (want < a->default_chunk) want = a->default_chunk;
        a->default_chunk = want;
    }
    for (int i = 0; i < a->n_chunks; i++) a->chunks[i].used = 0;
    a->used = 0;
    a->peak = 0;
    /* pool: every block is free again; device blocks this step never used
     * go, the host heap keeps what this step used */
    int k = 0;
    for (int i = 0; a->dev && i < a->n_blocks; i++) {
        md_pool_block b = a->blocks[i];
        if (!b.touched) {
            mem_free(a, b.base);
            continue;
        }
        b.in_use = b.touched = b.owned = b.released = false;
        b.tape_refs = 0;
        a->blocks[k++] = b;
    }
    a->n_blocks = k;
    a->free_block = -1;
    if (!a->dev) md__heap_reset(&a->heap);
    a->pool_used = 0;
    a->peak_total = 0;
    a->serial = 0;
}

MD_API void *md_ctx_alloc(md_ctx *ctx, size_t bytes) {
    void *p = md__arena_alloc(&ctx->arena, bytes);
    if (!p) md_op_failc(ctx, MD_ERR_NOMEM, "alloc", "out of memory allocating %zu bytes in the step arena", bytes);
    return p;
}

MD_API size_t md_ctx_arena_used(const md_ctx *ctx) { return ctx->arena.used + ctx->arena.pool_used; }
MD_API size_t md_ctx_arena_peak(const md_ctx *ctx) { return ctx->arena.peak_total; }

MD_API size_t md_ctx_arena_mark(md_ctx *ctx) { return ctx->arena.used; }

/* Pool blocks allocated after the mark go too: every pool tensor's header is
 * bump-allocated just before its data, so a block whose bump offset at
 * allocation exceeds the mark was allocated after it. */
MD_API void md_ctx_arena_release(md_ctx *ctx, size_t mark) {
    md_arena *a = &ctx->arena;
    for (int i = 0; i < a->n_blocks; i++)
        if (a->blocks[i].in_use && a->blocks[i].bump > mark) md__pool_put(a, &a->blocks[i]);
    while (a->n_chunks && a->used > mark) {
        md_arena_chunk *c = &a->chunks[a->n_chunks - 1];
        size_t below = a->used - c->used;   /* bytes in earlier chunks */
        if (mark >= below) {
            c->used = mark - below;
            a->used = mark;
            return;
        }
        a->used = below;
        c->used = 0;
        if (a->n_chunks > 1) {          /* drop the emptied chunk */
            mem_free(a, c->base);
            a->n_chunks--;
        } else {
            return;
        }
    }
}

MD_API void md_ctx_step_reset(md_ctx *ctx) {
    md__arena_reset(&ctx->arena);
    md__dev_arena_reset(ctx);
    ctx->tape_len = 0;
    md_error_clear(&ctx->op_error);
    ctx->scope_depth = 0;
    ctx->scope[0] = 0;
}

/* -------------------------------------------------------------- dtypes -- */

MD_API size_t md_dtype_size(md_dtype dt) {
    switch (dt) {
    case MD_F32: case MD_I32: return 4;
    case MD_I64: return 8;
    case MD_U8: return 1;
    case MD_F16: case MD_BF16: return 2;
    default: return 0;
    }
}

MD_API const char *md_dtype_name(md_dtype dt) {
    static const char *names[] = { "f32", "i64", "i32", "u8", "f16", "bf16" };
    return (unsigned)dt < MD_DTYPE_COUNT ? names[dt] : "?";
}

/* ------------------------------------------------------------- creation -- */

void md__set_contiguous_strides(md_tensor *t) {
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        t->stride[d] = s;
        s *= t->shape[d];
    }
}

static int check_shape(md_ctx *ctx, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > MD_MAX_DIMS) {
        md_op_fail(ctx, "tensor", "%d dimensions (at most %d)", ndim, MD_MAX_DIMS);
        return -1;
    }
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0) {
            md_op_fail(ctx, "tensor", "negative size %lld in dimension %d", (long long)shape[d], d);
            return -1;
        }
    return 0;
}

md_tensor *md__tensor_header(md_ctx *ctx, md_dtype dt, int ndim, const int64_t *shape) {
    if (check_shape(ctx, ndim, shape) != 0) return NULL;
    md_tensor *t = md__arena_alloc(&ctx->arena, sizeof *t);
    if (!t) return md_op_failc(ctx, MD_ERR_NOMEM, "tensor", "out of memory");
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    md__set_contiguous_strides(t);
    return t;
}

MD_API md_tensor *md_tensor_empty(md_ctx *ctx, md_dtype dt, int ndim, const int64_t *shape) {
    md_tensor *t = md__tensor_header(ctx, dt, ndim, shape);
    if (!t) return NULL;
    size_t bytes = (size_t)md_tensor_numel(t) * md_dtype_size(dt);
    /* until the step records its first differentiable op (all through
     * inference) the blocks it hands back are kept for its later requests:
     * fresh blocks cost a page fault and a cleared page per 4 KiB. Once
     * there is a tape, trimming keeps a training step's peak where it was. */
    t->data = bytes && bytes >= ctx->arena.pool_min ? md__pool_alloc(&ctx->arena, bytes)
                                                    : md__arena_alloc(&ctx->arena, bytes);
    if (!t->data) return md_op_failc(ctx, MD_ERR_NOMEM, "tensor", "out of memory for %lld elements",
                                    (long long)md_tensor_numel(t));
    return t;
}

MD_API md_tensor *md_tensor_zeros(md_ctx *ctx, md_dtype dt, int ndim, const int64_t *shape) {
    md_tensor *t = md_tensor_empty(ctx, dt, ndim, shape);
    if (t) memset(t->data, 0, (size_t)md_tensor_numel(t) * md_dtype_size(dt));
    return t;
}

MD_API md_tensor *md_tensor_full(md_ctx *ctx, md_dtype dt, int ndim, const int64_t *shape, double v) {
    md_tensor *t = md_tensor_empty(ctx, dt, ndim, shape);
    if (t) md_tensor_fill_(t, v);
    return t;
}

MD_API md_tensor *md_tensor_from(md_ctx *ctx, md_dtype dt, int ndim, const int64_t *shape, const void *data) {
    md_tensor *t = md_tensor_empty(ctx, dt, ndim, shape);
    if (t && md_tensor_numel(t)) memcpy(t->data, data, (size_t)md_tensor_numel(t) * md_dtype_size(dt));
    return t;
}

MD_API md_tensor *md_tensor_scalar(md_ctx *ctx, float v) {
    md_tensor *t = md_tensor_empty(ctx, MD_F32, 0, NULL);
    if (t) md_f32(t)[0] = v;
    return t;
}

MD_API md_tensor *md_tensor_arange(md_ctx *ctx, md_dtype dt, int64_t n) {
    md_tensor *t = md_tensor_empty(ctx, dt, MD_DIMS(n));
    if (!t) return NULL;
    for (int64_t i = 0; i < n; i++) {
        switch (dt) {
        case MD_F32: md_f32(t)[i] = (float)i; break;
        case MD_I64: md_i64(t)[i] = i; break;
        case MD_I32: md_i32(t)[i] = (int32_t)i; break;
        case MD_U8: md_u8(t)[i] = (uint8_t)i; break;
        default: return md_op_fail(ctx, "arange", "dtype %s unsupported", md_dtype_name(dt));
        }
    }
    return t;
}

MD_API md_tensor *md_tensor_empty_like(md_ctx *ctx, const md_tensor *t) {
    return t ? md__empty_like_on(ctx, t, t->dtype, t->ndim, t->shape) : NULL;
}

MD_API md_tensor *md_tensor_zeros_like(md_ctx *ctx, const md_tensor *t) {
    return t ? md_tensor_zeros_on(ctx, md_tensor_device(t), t->dtype, t->ndim, t->shape) : NULL;
}

MD_API md_tensor *md_tensor_new_persistent(md_ctx *ctx, md_dtype dt, int ndim, const int64_t *shape,
                                           md_error *err) {
    (void)ctx;
    if (ndim < 0 || ndim > MD_MAX_DIMS) {
        md_fail(err, "persistent tensor: %d dimensions (at most %d)", ndim, MD_MAX_DIMS);
        return NULL;
    }
    md_tensor *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    t->dtype = dt;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    md__set_contiguous_strides(t);
    size_t bytes = (size_t)md_tensor_numel(t) * md_dtype_size(dt);
    t->data = aligned_alloc(ARENA_ALIGN, (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN + ARENA_ALIGN);
    if (!t->data) goto oom;
    memset(t->data, 0, bytes);
    t->owner_ = t->data;
    t->persistent = true;
    return t;
oom:
    free(t);
    md_failc(err, MD_ERR_NOMEM, "out of memory for a persistent tensor");
    return NULL;
}

MD_API void md_tensor_free(md_tensor *t) {
    if (!t || !t->persistent) return;
    if (t->grad && t->grad->persistent) md_tensor_free(t->grad);
    if (t->device != MD_CPU) md__dev_free(t);
    else free(t->owner_);
    free(t);
}

/* ----------------------------------------------------------- inspection -- */

MD_API int64_t md_tensor_numel(const md_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

MD_API bool md_tensor_is_contiguous(const md_tensor *t) {
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != s) return false;
        s *= t->shape[d];
    }
    return true;
}

MD_API bool md_tensor_same_shape(const md_tensor *a, const md_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

MD_API const char *md_tensor_describe(const md_tensor *t, char *buf, size_t n) {
    if (!t) {
        snprintf(buf, n, "(null)");
        return buf;
    }
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (k < n) snprintf(buf + k, n - k, "] %s", md_dtype_name(t->dtype));
    return buf;
}

static double load_elem(const md_tensor *t, int64_t off) {
    switch (t->dtype) {
    case MD_F32: return ((const float *)t->data)[off];
    case MD_I64: return (double)((const int64_t *)t->data)[off];
    case MD_I32: return ((const int32_t *)t->data)[off];
    case MD_U8: return ((const uint8_t *)t->data)[off];
    default: return NAN;
    }
}

static void store_elem(md_tensor *t, int64_t off, double v) {
    switch (t->dtype) {
    case MD_F32: ((float *)t->data)[off] = (float)v; break;
    case MD_I64: ((int64_t *)t->data)[off] = (int64_t)v; break;
    case MD_I32: ((int32_t *)t->data)[off] = (int32_t)v; break;
    case MD_U8: ((uint8_t *)t->data)[off] = (uint8_t)v; break;
    default: break;
    }
}

MD_API double md_tensor_get(const md_tensor *t, int64_t i) {
    int64_t off = md__offset_of(t, i);
    return t->device != MD_CPU ? md__dev_get(t, off) : load_elem(t, off);
}

MD_API double md_tensor_item(const md_tensor *t) {
    if (!t || md_tensor_numel(t) != 1) return NAN;
    return t->device != MD_CPU ? md__dev_get(t, 0) : load_elem(t, 0);
}

MD_API int md_tensor_fill_(md_tensor *t, double v) {
    if (t->device != MD_CPU) return md__dev_fill(t, v);
    int64_t n = md_tensor_numel(t);
    if (t->dtype == MD_F32 && md_tensor_is_contiguous(t)) {
        float *p = md_f32(t), f = (float)v;
        for (int64_t i = 0; i < n; i++) p[i] = f;
        return 0;
    }
    for (int64_t i = 0; i < n; i++) store_elem(t, md__offset_of(t, i), v);
    return 0;
}

MD_API int md_tensor_copy_(md_ctx *ctx, md_tensor *dst, const md_tensor *src) {
    if (!dst || !src) return -1;
    if (md_tensor_numel(dst) != md_tensor_numel(src)) {
        char a[96], b[96];
        md_op_fail(ctx, "copy_", "destination %s and source %s differ in size",
                   md_tensor_describe(dst, a, sizeof a), md_tensor_describe(src, b, sizeof b));
        return -1;
    }
    if (dst->device != MD_CPU || src->device != MD_CPU) {
        if (dst->dtype != src->dtype) {
            md_op_fail(ctx, "copy_", "a copy to or on a CUDA device cannot change the dtype (%s to %s)",
                       md_dtype_name(src->dtype), md_dtype_name(dst->dtype));
            return -1;
        }
        return md__copy_any(ctx, dst, src);
    }
    int64_t n = md_tensor_numel(src);
    if (dst->dtype == src->dtype && md_tensor_is_contiguous(dst) && md_tensor_is_contiguous(src)) {
        memmove(dst->data, src->data, (size_t)n * md_dtype_size(src->dtype));
        return 0;
    }
    if (dst->dtype == MD_F32 && src->dtype == MD_F32) {
        for (int64_t i = 0; i < n; i++)
            md_f32(dst)[md__offset_of(dst, i)] = md_f32(src)[md__offset_of(src, i)];
        return 0;
    }
    for (int64_t i = 0; i < n; i++) store_elem(dst, md__offset_of(dst, i), load_elem(src, md__offset_of(src, i)));
    return 0;
}

md_tensor *md__contig(md_ctx *ctx, md_tensor *t) {
    if (!t || md_tensor_is_contiguous(t)) return t;
    md_tensor *c = md_tensor_empty_like(ctx, t);
    if (!c || md_tensor_copy_(ctx, c, t) != 0) return NULL;
    return c;
}

MD_API md_tensor *md_tensor_detach(md_ctx *ctx, md_tensor *t) {
    if (!t) return NULL;
    md_tensor *v = md__arena_alloc(&ctx->arena, sizeof *v);
    if (!v) return md_op_failc(ctx, MD_ERR_NOMEM, "detach", "out of memory");
    *v = *t;
    v->requires_grad = false;
    v->grad = NULL;
    v->grad_fn = NULL;
    v->persistent = false;
    v->owner_ = NULL;
    return v;
}

/* ------------------------------------------------------ errors, scopes -- */

MD_API md_error *md_ctx_error(md_ctx *ctx) { return &ctx->op_error; }
MD_API bool md_ctx_failed(const md_ctx *ctx) { return ctx->op_error.code != 0; }
MD_API void md_ctx_clear_error(md_ctx *ctx) { md_error_clear(&ctx->op_error); }

MD_API void md_scope_push(md_ctx *ctx, const char *name) {
    if (ctx->scope_depth >= (int)(sizeof ctx->scope_marks / sizeof ctx->scope_marks[0])) {
        ctx->scope_depth++;   /* too deep: keep the count balanced, drop the name */
        return;
    }
    size_t len = strlen(ctx->scope);
    ctx->scope_marks[ctx->scope_depth++] = (int)len;
    snprintf(ctx->scope + len, sizeof ctx->scope - len, "%s%s", len ? "." : "", name);
}

MD_API void md_scope_pop(md_ctx *ctx) {
    if (ctx->scope_depth <= 0) return;
    ctx->scope_depth--;
    if (ctx->scope_depth < (int)(sizeof ctx->scope_marks / sizeof ctx->scope_marks[0]))
        ctx->scope[ctx->scope_marks[ctx->scope_depth]] = 0;
}

MD_API const char *md_scope_path(md_ctx *ctx) { return ctx->scope; }

static md_tensor *op_failv(md_ctx *ctx, int code, const char *op, const char *fmt, va_list ap) {
    if (ctx->op_error.code) return NULL;    /* the first error is the cause */
    char msg[MD_ERROR_MSG_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (ctx->scope[0])
        md_failc(&ctx->op_error, code, "%s at %s: %s", op, ctx->scope, msg);
    else
        md_failc(&ctx->op_error, code, "%s: %s", op, msg);
    return NULL;
}

MD_API md_tensor *md_op_fail(md_ctx *ctx, const char *op, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    op_failv(ctx, MD_ERR_SHAPE, op, fmt, ap);
    va_end(ap);
    return NULL;
}

MD_API md_tensor *md_op_failc(md_ctx *ctx, int code, const char *op, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    op_failv(ctx, code, op, fmt, ap);
    va_end(ap);
    return NULL;
}

MD_API int md_error_from_ctx(md_ctx *ctx, md_error *err, const char *fmt, ...) {
    char where[512] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(where, sizeof where, fmt, ap);
        va_end(ap);
    }
    const md_error *e = &ctx->op_error;
    const char *sep = where[0] ? ": " : "";
    if (!e->code) return md_failc(err, MD_ERR_GENERIC, "%s%sfailed without an op error", where, sep);
    return md_failc(err, e->code, "%s%s%s", where, sep, e->msg);
}

/* --------------------------------------------------------------- random -- */

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

MD_API void md_rng_seed(md_rng *r, uint64_t seed) {
    /* splitmix64 expands the seed into the state */
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        r->s[i] = z ^ (z >> 31);
    }
}

MD_API uint64_t md_rng_u64(md_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

MD_API double md_rng_uniform(md_rng *r) { return (double)(md_rng_u64(r) >> 11) * 0x1.0p-53; }

MD_API double md_rng_normal(md_rng *r) {
    double u1 = md_rng_uniform(r), u2 = md_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

MD_API int64_t md_rng_int(md_rng *r, int64_t n) {
    return n <= 0 ? 0 : (int64_t)(md_rng_uniform(r) * (double)n) % n;
}

MD_API int md_tensor_uniform_(md_tensor *t, md_rng *r, double lo, double hi) {
    int64_t n = md_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) store_elem(t, md__offset_of(t, i), lo + (hi - lo) * md_rng_uniform(r));
    return 0;
}

MD_API int md_tensor_normal_(md_tensor *t, md_rng *r, double mean, double std) {
    int64_t n = md_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) store_elem(t, md__offset_of(t, i), mean + std * md_rng_normal(r));
    return 0;
}
