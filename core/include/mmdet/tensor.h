/* Tensors, the step arena and tape autograd.
 *
 * Memory has two lifetimes:
 *  - persistent: parameters, buffers, optimizer state (md_tensor_new_persistent,
 *    freed with md_tensor_free);
 *  - step: everything an iteration makes (activations, temporaries, the tape,
 *    gradients of activations) comes from the context's arena and is released
 *    at once by md_ctx_step_reset. No refcounts, no leaks by construction.
 *
 * Ops never abort. An op that fails (shape, dtype or device mismatch) returns
 * NULL and records a sticky error in the context naming the op, the shapes
 * and the module scope; an op given a NULL input returns NULL silently, so a
 * forward pass can be written straight and checked once:
 *
 *     md_tensor *y = md_relu(ctx, md_conv2d(ctx, x, w, b, p));
 *     if (!y) return md_error_wrap(err, ...) or read md_ctx_error(ctx);
 */
#ifndef MMDET_TENSOR_H
#define MMDET_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ctx.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_MAX_DIMS 6

typedef enum md_dtype {
    MD_F32 = 0, MD_I64, MD_I32, MD_U8,
    MD_F16, MD_BF16,          /* storage reserved for mixed precision */
    MD_DTYPE_COUNT
} md_dtype;

typedef enum md_device_type { MD_CPU = 0, MD_CUDA = 1 } md_device_type;

typedef struct md_node md_node;

/* Fields are public to read; change them only through the API. */
typedef struct md_tensor {
    md_dtype dtype;
    md_device_type device;
    int device_index;
    int ndim;
    int64_t shape[MD_MAX_DIMS];
    int64_t stride[MD_MAX_DIMS];   /* in elements */
    void *data;                    /* address of element [0, ..., 0] */
    bool requires_grad;
    bool persistent;               /* owns malloc'ed storage (or views one) */
    struct md_tensor *grad;        /* accumulated by md_backward */
    md_node *grad_fn;              /* tape node that made it; NULL for leaves */
    const char *name;              /* parameter name, for messages; may be NULL */
    void *owner_;                  /* private: persistent storage block */
} md_tensor;

/* ndim and a shape literal in one: md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 3)) */
#define MD_DIMS(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))), ((const int64_t[]){__VA_ARGS__})

size_t md_dtype_size(md_dtype dt);
const char *md_dtype_name(md_dtype dt);

/* ---- step tensors (arena) ---- */
md_tensor *md_tensor_empty(md_ctx *ctx, md_dtype dt, int ndim, const int64_t *shape);
md_tensor *md_tensor_zeros(md_ctx *ctx, md_dtype dt, int ndim, const int64_t *shape);
md_tensor *md_tensor_full(md_ctx *ctx, md_dtype dt, int ndim, const int64_t *shape, double v);
/* Copies `data` (contiguous, of dtype dt) into a new step tensor. */
md_tensor *md_tensor_from(md_ctx *ctx, md_dtype dt, int ndim, const int64_t *shape, const void *data);
md_tensor *md_tensor_scalar(md_ctx *ctx, float v);             /* f32, ndim 0 */
md_tensor *md_tensor_arange(md_ctx *ctx, md_dtype dt, int64_t n); /* 0..n-1 */
md_tensor *md_tensor_empty_like(md_ctx *ctx, const md_tensor *t);
/* Hands a large step tensor's storage back before the step ends; the caller
 * promises that neither t nor any view of it is read again (a view that
 * starts where its base does stands for the base). Storage that a tape node's
 * backward reads (md_node_keep) stays until the last such node is behind
 * md_backward, as PyTorch frees a tensor when its last reference goes; with
 * none it goes at once and t->data becomes NULL. Works with grad mode on or
 * off. A no-op for views inside a tensor, persistent and small tensors.
 * Debug: MMDET_POISON_FREED=1 (and sanitizer builds) fill handed-back host
 * storage with NaN bytes, so a wrongly freed tensor shows in gradients. */
void md_tensor_release(md_ctx *ctx, md_tensor *t);
md_tensor *md_tensor_zeros_like(md_ctx *ctx, const md_tensor *t);

/* ---- persistent tensors ---- */
md_tensor *md_tensor_new_persistent(md_ctx *ctx, md_dtype dt, int ndim, const int64_t *shape, md_error *err);
void md_tensor_free(md_tensor *t);    /* persistent only (and its .grad) */

/* ---- inspection ---- */
int64_t md_tensor_numel(const md_tensor *t);
bool md_tensor_is_contiguous(const md_tensor *t);
bool md_tensor_same_shape(const md_tensor *a, const md_tensor *b);
/* "[2, 3, 64, 64] f32" into buf. */
const char *md_tensor_describe(const md_tensor *t, char *buf, size_t n);
/* Element i (flat index in logical row-major order) as double. */
double md_tensor_get(const md_tensor *t, int64_t i);
/* The single value of a one-element tensor. */
double md_tensor_item(const md_tensor *t);
/* Typed data pointers; the tensor must be contiguous of that dtype. */
static inline float *md_f32(const md_tensor *t) { return (float *)t->data; }
static inline int64_t *md_i64(const md_tensor *t) { return (int64_t *)t->data; }
static inline int32_t *md_i32(const md_tensor *t) { return (int32_t *)t->data; }
static inline uint8_t *md_u8(const md_tensor *t) { return (uint8_t *)t->data; }

/* ---- in place, outside autograd (parameters, optimizer state) ---- */
int md_tensor_fill_(md_tensor *t, double v);
int md_tensor_copy_(md_ctx *ctx, md_tensor *dst, const md_tensor *src); /* same shape; casts dtype */
/* dst = (1 - w) * dst + w * src element-wise in float (the EMA update),
 * and the exchange of a's and b's values: contiguous f32 tensors of one
 * shape on one device (CPU or CUDA). 0, or -1 with the op error set. */
int md_tensor_lerp_(md_ctx *ctx, md_tensor *dst, const md_tensor *src, double w);
int md_tensor_swap_(md_ctx *ctx, md_tensor *a, md_tensor *b);
/* Detached view sharing data, no grad history (step tensor). */
md_tensor *md_tensor_detach(md_ctx *ctx, md_tensor *t);

/* ---- the context's step arena ---- */
/* Releases every step tensor and the tape; clears the op error and scopes. */
void md_ctx_step_reset(md_ctx *ctx);
/* Scratch memory for an op; lives until the next reset (64-byte aligned). */
void *md_ctx_alloc(md_ctx *ctx, size_t bytes);
/* Bytes in use now and the high-water mark since the last reset. */
size_t md_ctx_arena_used(const md_ctx *ctx);
size_t md_ctx_arena_peak(const md_ctx *ctx);
/* Mark/release: free everything allocated after a mark (only when no tensor
 * made after it is still referenced, e.g. an op's internal temporaries). */
size_t md_ctx_arena_mark(md_ctx *ctx);
void md_ctx_arena_release(md_ctx *ctx, size_t mark);

/* ---- op errors and module scopes ---- */
/* The sticky error of ops since the last reset (code 0 when none). */
md_error *md_ctx_error(md_ctx *ctx);
bool md_ctx_failed(const md_ctx *ctx);
void md_ctx_clear_error(md_ctx *ctx);
/* Module path for messages: push "backbone", "layer1.0", ... pop after. */
void md_scope_push(md_ctx *ctx, const char *name);
void md_scope_pop(md_ctx *ctx);
const char *md_scope_path(md_ctx *ctx);   /* "backbone.layer1.0" */
/* For op implementers: records "op at <scope>: <message>" (code
 * MD_ERR_SHAPE) and returns NULL. */
md_tensor *md_op_fail(md_ctx *ctx, const char *op, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same with another code (MD_ERR_NOMEM for a failed allocation). */
md_tensor *md_op_failc(md_ctx *ctx, int code, const char *op, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The context's op error as `err`: its code (out of memory stays
 * MD_ERR_NOMEM) and message, prefixed with the printf-style context
 * ("RetinaHead.loss"; NULL: none); returns -1. For a component turning a
 * failed forward into its own error. */
int md_error_from_ctx(md_ctx *ctx, md_error *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- autograd ---- */
bool md_grad_enabled(const md_ctx *ctx);
bool md_grad_set_enabled(md_ctx *ctx, bool on);     /* returns the previous mode */

/* A backward function: given d(loss)/d(output) (contiguous, same shape),
 * adds each input's gradient with md_node_accumulate. It runs with grad
 * mode off, so it may use ops freely. Returns 0, or -1 with the ctx error set. */
typedef int (*md_backward_fn)(md_ctx *ctx, md_node *node, md_tensor *grad_out);

/* Records `out = op(inputs)` on the tape when grad mode is on and some input
 * requires grad; sets out->requires_grad and out->grad_fn. Returns the node
 * (NULL when nothing was recorded: not an error). Plugins use this to add
 * their own differentiable op: compute the forward, then record it. */
md_node *md_autograd_record(md_ctx *ctx, md_tensor *out, md_tensor *const *inputs, int n_inputs,
                            md_backward_fn backward, const char *op_name);
/* Storage the backward reads. md_autograd_record holds the storage of every
 * input and of the output until the node is behind md_backward; an op whose
 * backward does not read input i's values (i = -1: the output's) drops that
 * hold with md_node_unsave, so md_tensor_release may free it early. A tensor
 * the backward reads that is none of the inputs and the output (a copy, an
 * index tensor kept in the saved bytes) must be held with md_node_keep.
 * md_node_keep returns 0, or -1 with the ctx error set. */
int md_node_keep(md_ctx *ctx, md_node *node, const md_tensor *t);
void md_node_unsave(md_ctx *ctx, md_node *node, int i);
/* Saved state for backward: `bytes` of arena memory tied to the node. */
void *md_node_save(md_ctx *ctx, md_node *node, size_t bytes);
void *md_node_saved(const md_node *node);
md_tensor *md_node_input(const md_node *node, int i);
md_tensor *md_node_output(const md_node *node);
int md_node_input_count(const md_node *node);
const char *md_node_op(const md_node *node);
bool md_node_needs_grad(const md_node *node, int i);
/* Adds g (broadcast-reduced to the input's shape if needed) into input i's
 * gradient. Ignored when input i does not require grad. */
int md_node_accumulate(md_ctx *ctx, md_node *node, int i, md_tensor *g);

/* d(out)/d(every leaf): seeds out's gradient with ones (or grad_out) and
 * walks the tape backwards, accumulating into .grad of tensors that require
 * grad (persistent leaves keep theirs across steps until zeroed). */
int md_backward(md_ctx *ctx, md_tensor *out, md_error *err);
int md_backward_with(md_ctx *ctx, md_tensor *out, md_tensor *grad_out, md_error *err);
/* Drops (persistent) t->grad values to zero without freeing. */
void md_tensor_zero_grad(md_tensor *t);

/* ---- random numbers: xoshiro256**, seeded, reproducible ---- */
typedef struct md_rng { uint64_t s[4]; } md_rng;
void md_rng_seed(md_rng *r, uint64_t seed);
uint64_t md_rng_u64(md_rng *r);
double md_rng_uniform(md_rng *r);            /* [0, 1) */
double md_rng_normal(md_rng *r);             /* N(0, 1) */
int64_t md_rng_int(md_rng *r, int64_t n);    /* [0, n) */
int md_tensor_uniform_(md_tensor *t, md_rng *r, double lo, double hi);
int md_tensor_normal_(md_tensor *t, md_rng *r, double mean, double std);

#ifdef __cplusplus
}
#endif
#endif
