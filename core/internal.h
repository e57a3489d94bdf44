/* Private to libmmdet: the context's layout and helpers shared by core files. */
#ifndef MMDET_INTERNAL_H
#define MMDET_INTERNAL_H

#include <stdio.h>
#include "mmdet/mmdet.h"
#include "mmdet/device.h"
#include "backends/backend.h"

#define MD_API __attribute__((visibility("default")))

/* Step arena: a list of chunks with bump allocation, plus a pool of large
 * blocks (tensor data of at least MD_POOL_MIN bytes) that can be handed back
 * before the step ends (gradients consumed by backward). On the host the
 * blocks are ranges of one reserved heap (tensor/heap.c), split and merged as
 * the step goes; on a device they are separate allocations, reused whole
 * (best fit). Both keep their memory across steps, so a steady loop neither
 * grows nor faults in fresh pages. */
typedef struct md_heap_range { size_t off, size; } md_heap_range;
typedef struct md_heap {
    char *base;                /* reserved address space, NULL until first used */
    size_t reserved, committed;   /* [0, committed) is writable */
    size_t top;                /* everything at and above is free */
    size_t high;               /* the top's high water this step */
    size_t touched;            /* pages below may be resident */
    md_heap_range *free;       /* free ranges below the top, by offset */
    int n_free, cap_free;
#define MD_HEAP_WINDOW 4
    size_t recent[MD_HEAP_WINDOW];   /* the high water of the last steps */
    unsigned n_steps;
} md_heap;
/* Address-sanitizer builds keep a poisoned page after every range, so that
 * an overrun into the next tensor shows. */
#if defined(__SANITIZE_ADDRESS__)
#define MD_HEAP_GUARD ((size_t)4096)
#else
#define MD_HEAP_GUARD ((size_t)0)
#endif
/* `bytes` a multiple of 4096; page-aligned; NULL when out of memory. */
void *md__heap_alloc(md_heap *h, size_t bytes);
/* SHA-256 of a file's bytes as 64 hex digits (framework/sha256.c). 0, or -1 when
 * it cannot be read. */
int md__sha256_file(const char *path, char hex[65]);
/* The start of every model-layer base's build (core/models/): refuses a
 * derived class whose struct is smaller than the base's (size < base_size)
 * or that lacks what the base needs (complete false), naming the class
 * and `needs`; then allocates the module. NULL with err set. */
void *md__base_module_new(const md_module_class *mc, size_t size, size_t base_size, bool complete, const char *needs,
                          md_error *err);
int md__heap_put(md_heap *h, void *p, size_t bytes);
void md__heap_reset(md_heap *h);
void md__heap_free(md_heap *h);

typedef struct md_arena_chunk { char *base; size_t size, used; } md_arena_chunk;
typedef struct md_pool_block {
    char *base;
    size_t size;
    uint64_t serial;          /* allocation order within the step */
    size_t bump;              /* the bump offset when it was allocated */
    bool in_use;
    bool touched;             /* device blocks: used during the current step */
    bool owned;               /* adopted as some tensor's gradient */
    bool released;            /* md_tensor_release'd while the tape still reads it */
    int32_t tape_refs;        /* tape nodes whose backward reads this block */
} md_pool_block;
#define MD_POOL_MIN ((size_t)256 << 10)
typedef struct md_arena {
    const struct md_backend *dev;   /* memory from this backend; NULL: host memory */
    size_t align;
    md_arena_chunk *chunks;
    int n_chunks, cap_chunks;
    size_t used, peak;       /* bytes over all chunks */
    size_t default_chunk;
    md_pool_block *blocks;
    int n_blocks, cap_blocks;
    size_t pool_used;        /* bytes of in-use pool blocks */
    size_t peak_total;       /* peak of used + pool_used */
    uint64_t serial;
    bool poison;             /* fill blocks with 0xff when handed back (debug) */
    size_t pool_min;         /* tensor data of at least this many bytes is pooled */
    md_heap heap;            /* host pool blocks: ranges of this heap */
    int free_block;          /* host: a vacant entry of blocks (-1: none known) */
} md_arena;

/* A tape node's hold on a pool block: the block's index in its arena and
 * its allocation serial, so that a hold on a block handed back (and maybe
 * reused) in the meantime is recognised as stale. block < 0: no block. */
typedef struct md_ref { int32_t block; bool dev; uint64_t serial; } md_ref;

struct md_node {
    const char *op;
    md_backward_fn backward;
    int n_inputs;
    md_tensor **inputs;
    md_tensor *output;
    void *saved;
    /* storage the backward reads: refs[i] input i, refs[n_inputs] the
     * output, then md_node_keep's; dropped once the node is behind backward */
    md_ref *refs;
    int n_refs, cap_refs;
    bool refs_dropped;
};

struct md_registries;   /* framework/registry.c */

struct md_ctx {
    int threads;
    /* logging (base/ctx.c) */
    int log_level;
    FILE *log_file;
    bool log_quiet;
    /* registries and plugin directories (framework/registry.c, plugin.c) */
    struct md_registries *reg;
    /* step arena, tape and op errors (tensor/tensor.c, autograd.c) */
    md_arena arena;
    md_arena *dev_arena;       /* device step memory (same scheme), made on first use */
    uint64_t dev_adopt_after;  /* adopt_after for dev_arena */
    md_node **tape;
    int tape_len, tape_cap;
    bool grad_enabled;
    /* during backward: pool blocks allocated after this serial are fresh
     * results of the running node, which md_node_accumulate may adopt */
    uint64_t adopt_after;
    bool in_backward;
    /* during backward: the running node's output gradient, handed back
     * after the node; an input with no gradient yet may take its storage
     * (a gradient passed through unchanged) instead of a copy. NULL once
     * taken, or when it is the root's (kept for the caller). */
    md_tensor *pass_grad;
    bool keep_released;  /* $MMDET_EARLY_RELEASE=0: md_tensor_release does nothing */
    md_rng init_rng;   /* weight init (nn/nn.c) */
    /* distributed (dist/dist.c): the host communicator (MPI) and the device one
     * (NCCL), NULL when not distributed; the data-parallel wrapper's hook
     * on backward (nn/ddp.c) */
    struct md_comm *comm, *dev_comm;
    struct md__grad_hook *grad_hook;
    md_error op_error;
    struct md_flops *flops;   /* FLOPs counting (flops.h); NULL: off */
    char scope[1024];
    int scope_marks[64];
    int scope_depth;
    struct md_onnx_graph *onnx;   /* the ONNX trace the ops report to (export/onnx.c); NULL: off */
    md_dtype autocast;            /* conv/linear input precision (amp.h); MD_F32: off */
};

/* Told by md_backward when a leaf's gradient is final (after the last
 * node, in backward order, that has it as an input) and when the walk is
 * over; either returns -1 with the ctx error set to fail the backward. */
typedef struct md__grad_hook {
    int (*ready)(md_ctx *ctx, md_tensor *leaf, void *user);
    int (*done)(md_ctx *ctx, void *user);
    void *user;
} md__grad_hook;
void md__dist_free(md_ctx *ctx);
/* The directory of libmmdet.so itself, where the backend and transport
 * libraries are installed (tensor/device.c). */
bool md__self_dir(char *out, size_t n);   /* the communicators, at md_ctx_free */

/* Subsystem set-up and tear-down, called by md_ctx_new/md_ctx_free. */
int md__registry_init(md_ctx *ctx, md_error *err);
void md__registry_free(md_ctx *ctx);
/* dev NULL: host memory (64-byte aligned); else the backend's memory. */
void md__arena_init(md_arena *a, const struct md_backend *dev);
void md__arena_free(md_arena *a);
void *md__arena_alloc(md_arena *a, size_t bytes);
void md__arena_reset(md_arena *a);
/* A pool block of at least `bytes`; NULL when out of memory. */
void *md__pool_alloc(md_arena *a, size_t bytes);
/* The pool block starting at p, or NULL (p from the bump chunks or a view). */
md_pool_block *md__pool_find(md_arena *a, const void *p);
/* The in-use pool block that contains p, or NULL; *index gets its index. */
md_pool_block *md__pool_find_in(md_arena *a, const void *p, int *index);
/* Hands a pool block back (poisoned in debug mode); its tape holds go. */
void md__pool_put(md_arena *a, md_pool_block *b);
/* Hands t's storage back when it is a whole pool block that no tape node
 * reads (t->data becomes NULL); when some node still reads it, the block
 * goes once the last such node is behind backward. */
void md__tensor_release(md_ctx *ctx, md_tensor *t);
/* The arena that holds step storage of a device type (NULL: none yet). */
md_arena *md__arena_of(md_ctx *ctx, md_device_type type);
/* md_node_keep for raw step memory at p (loss weights, labels). */
int md__node_keep_data(md_ctx *ctx, md_node *node, md_device_type type, const void *p);
/* For an op that saved `copy`, a contiguous copy of its input `orig` (or
 * orig itself): holds the copy for node and hands it back once the node is
 * behind backward (at once when node is NULL). 0, or -1 with the ctx error. */
int md__hold_copy(md_ctx *ctx, md_node *node, md_tensor *copy, const md_tensor *orig);

/* Logical offset (in elements) of flat row-major index i in a strided tensor. */
static inline int64_t md__offset_of(const md_tensor *t, int64_t i) {
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t s = t->shape[d];
        off += (i % s) * t->stride[d];
        i /= s;
    }
    return off;
}

/* Allocates a step tensor struct with contiguous strides (no data). */
md_tensor *md__tensor_header(md_ctx *ctx, md_dtype dt, int ndim, const int64_t *shape);
void md__set_contiguous_strides(md_tensor *t);
/* t itself when contiguous, else a contiguous step copy; not recorded on the
 * tape (op front-ends use it on inputs they already record). */
md_tensor *md__contig(md_ctx *ctx, md_tensor *t);

/* ---- devices (tensor/device.c) ---- */
/* The backend table of a device type: the CPU's (backends/cpu/table.c)
 * always, a device's once loaded (NULL before). */
const md_backend *md__backend_table(md_device_type t);
/* The backend running t's ops, bound to ctx (its `bind`); NULL after
 * md_op_fail when t's device was never initialised. Op front-ends reach
 * every kernel through it. */
const md_backend *md__be(md_ctx *ctx, const char *op, const md_tensor *t);
/* md_op_fail for an op whose entry is NULL in t's backend ("op X is not
 * implemented on cuda"), and for a kernel that failed (the backend's
 * message); both return NULL. */
md_tensor *md__no_kernel(md_ctx *ctx, const char *op, const md_tensor *t);
md_tensor *md__be_failed(md_ctx *ctx, const char *op, const md_backend *be);
/* Sets be's compute precision (set_compute_dtype: f32, or conv/matrix
 * operands rounded to dt) for the kernels that follow on this thread; *prev
 * receives the setting replaced, for md__be_compute_restore. False after
 * md_op_fail naming op when be cannot compute in dt. */
bool md__be_compute(md_ctx *ctx, const char *op, const md_backend *be, md_dtype dt, int *prev);
void md__be_compute_restore(const md_backend *be, int prev);
/* Step memory (no tensor) on like's device: the CPU step arena or the
 * device arena; NULL after md_op_fail. */
void *md__alloc_like(md_ctx *ctx, const md_tensor *like, size_t bytes);
/* False after md_op_fail unless the non-NULL tensors share one device. */
bool md__same_device(md_ctx *ctx, const char *op, int n, md_tensor *const *ts);
/* A step tensor on like's device. */
md_tensor *md__empty_like_on(md_ctx *ctx, const md_tensor *like, md_dtype dt, int ndim, const int64_t *shape);
/* Device step memory (256-byte aligned; the pool for large blocks), reset
 * with the CPU arena. md__dev_alloc is bump memory; md__dev_tensor_data
 * takes large tensors from the pool so that md__tensor_release can hand
 * them back early. NULL after md_op_fail. */
void *md__dev_alloc(md_ctx *ctx, md_device_type type, size_t bytes);
void *md__dev_tensor_data(md_ctx *ctx, md_device_type type, size_t bytes);
md_arena *md__dev_arena(md_ctx *ctx);   /* NULL before the first device tensor */
void md__dev_arena_reset(md_ctx *ctx);
void md__dev_arena_free(md_ctx *ctx);
/* Contiguous device fill; one element read back; persistent storage freed. */
int md__dev_fill(md_tensor *t, double v);
double md__dev_get(const md_tensor *t, int64_t off);
void md__dev_free(md_tensor *t);
/* dst = src (same dtype and shape), any devices and strides; -1 after md_op_fail. */
int md__copy_any(md_ctx *ctx, md_tensor *dst, const md_tensor *src);

/* An md_st held in memory, for weights converted from other formats
 * (PyTorch .pth): entries keep the order they are added in. add_owned takes
 * `data` (malloc'ed, contiguous, numel * dtype size bytes; freed on error). */
md_st *md__st_new_mem(const char *path, md_error *err);
int md__st_add_owned(md_st *st, const char *name, md_dtype dt, int ndim, const int64_t *shape, void *data,
                     md_error *err);
int md__st_add_meta(md_st *st, const char *key, const char *value, md_error *err);
const char *md__st_path(const md_st *st);
/* A state dict's load report (nn/module.c): drop the lines that start with
 * `head` (and end with `tail` when not NULL); mmcv's silence on missing
 * num_batches_tracked buffers, shared by checkpoints and init_cfg Pretrained. */
void md__load_report_drop(md_load_report *r, const char *head, const char *tail);
void md__report_ignore_bn_counters(md_module *m, const md_st *st, const char *strip, md_load_report *r);

/* ---- COCO segmentations (formats/masks.c): the builder the COCO file parsers
 * feed with yajl's events of one "segmentation" value. Each event returns
 * 1, or 0 with md_segm_why saying what is wrong; md_segm_done: the value is
 * complete (or failed); md_segm_finish moves it into out (0 or -1) and
 * readies the builder for the next value. */
typedef struct md_segm_builder md_segm_builder;
md_segm_builder *md_segm_builder_new(void);
void md_segm_builder_free(md_segm_builder *b);
int md_segm_on_start_array(md_segm_builder *b);
int md_segm_on_start_map(md_segm_builder *b);
int md_segm_on_end(md_segm_builder *b);
int md_segm_on_key(md_segm_builder *b, const unsigned char *k, size_t n);
int md_segm_on_number(md_segm_builder *b, const char *s, size_t n);
int md_segm_on_string(md_segm_builder *b, const unsigned char *s, size_t n);
int md_segm_on_scalar(md_segm_builder *b, bool is_null);
bool md_segm_done(const md_segm_builder *b);
const char *md_segm_why(const md_segm_builder *b);
int md_segm_finish(md_segm_builder *b, md_mask_ann *out, md_error *err);

#endif
