/* Distributed training: the communicator, and data parallelism on it.
 *
 * One process per device, launched by mpirun or srun (docs/distributed.md).
 * A communicator is a struct of function pointers over buffers of one kind
 * of memory: MPI serves host buffers (CPU training, and the small host
 * values every run exchanges: losses, seeds, results), NCCL serves device
 * buffers (its unique id broadcast over MPI). md_dist_init puts the host
 * one in the context; md_dist_init_device adds the device one. Everything
 * else (runner, hooks, samplers, DDP, SyncBN) calls md_dist_* below, which
 * pick the transport by where a tensor lives: nothing above this header
 * knows which one runs.
 *
 * A context without a communicator is one process: rank 0 of a world of 1,
 * and every collective is a no-op (an all-gather returns the own buffer).
 *
 * Every collective waits at most the communicator's timeout (MMDET_DIST_TIMEOUT
 * seconds, default 1800 as PyTorch's): a rank that died or hangs turns into
 * an error naming this rank and the operation instead of a hang.
 */
#ifndef MMDET_DIST_H
#define MMDET_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ctx.h"
#include "error.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum md_dist_op { MD_DIST_SUM = 0, MD_DIST_MEAN } md_dist_op;

typedef struct md_comm md_comm;
typedef struct md_comm_work md_comm_work;   /* a collective in flight (the transport's) */

/* A transport. Buffers live in the memory the transport serves; counts are
 * elements of dtype MD_F32 or MD_I64 (f64 sums use MD_I64's 8 bytes only
 * where said). Each returns 0, or -1 with err naming the rank and the op. */
typedef struct md_comm_iface {
    const char *name;                                   /* "mpi", "nccl" */
    int (*broadcast)(md_comm *c, void *buf, size_t bytes, int root, md_error *err);
    /* Starts an in-place all-reduce; *work is finished by wait. */
    int (*all_reduce_start)(md_comm *c, void *buf, int64_t n, md_dtype dt, md_dist_op op, md_comm_work **work,
                            md_error *err);
    /* Moves the work on (MPI progresses non-blocking collectives only inside
     * its calls); *done true once finished. May be NULL. */
    int (*test)(md_comm *c, md_comm_work *work, bool *done, md_error *err);
    /* Waits for and frees the work (also on error). */
    int (*wait)(md_comm *c, md_comm_work *work, md_error *err);
    /* In-place all-reduce of n doubles (host transports; NULL otherwise). */
    int (*all_reduce_f64)(md_comm *c, double *buf, int64_t n, md_dist_op op, md_error *err);
    /* Every rank's `bytes` bytes, concatenated in rank order into *out
     * (malloc'ed) with sizes[r] (world_size entries) (host transports). */
    int (*all_gather_bytes)(md_comm *c, const void *buf, size_t bytes, void **out, size_t *sizes, md_error *err);
    int (*barrier)(md_comm *c, md_error *err);
    /* Tells the others this rank fails (ends the job: MPI_Abort); may be NULL. */
    void (*abort)(md_comm *c, int code);
    void (*destroy)(md_comm *c);
} md_comm_iface;

/* The common head of every communicator (a transport embeds it first). */
struct md_comm {
    const md_comm_iface *iface;
    int rank, world_size, local_rank;
    double timeout_s;                 /* per collective */
};

/* ---- set-up ---- */
/* mmcv's init_dist: launcher "none" (nothing), "mpi" (mpirun: rank, world
 * size and local rank from MPI), "slurm" (srun: SLURM_PROCID, SLURM_NTASKS,
 * SLURM_LOCALID, bootstrapped through MPI, which must agree), "pytorch"
 * (refused: torchrun's TCP rendezvous is not a transport this build has;
 * the message says what to run instead). */
int md_dist_init(md_ctx *ctx, const char *launcher, md_error *err);
/* Adds the device transport (NCCL) for tensors on `device_index`, loading
 * lib/libmmdet-nccl.so; its unique id comes from rank 0 over the host
 * communicator. A world of 1 needs none. */
int md_dist_init_device(md_ctx *ctx, int device_index, md_error *err);
/* Installs a communicator (host, or device with `device` true) the context
 * then owns; for transports built outside this library and for tests. */
void md_ctx_set_comm(md_ctx *ctx, md_comm *comm, bool device);
/* The host communicator (NULL: not distributed). */
md_comm *md_ctx_comm(const md_ctx *ctx);

int md_dist_rank(const md_ctx *ctx);          /* 0 when not distributed */
int md_dist_world_size(const md_ctx *ctx);    /* 1 when not distributed */
int md_dist_local_rank(const md_ctx *ctx);
/* Ends the whole job after a fatal error on this rank, so no other rank
 * waits for it (MPI_Abort); nothing when not distributed. */
void md_dist_abort(md_ctx *ctx, int code);

/* ---- collectives: every rank calls them in the same order ---- */
int md_dist_broadcast(md_ctx *ctx, md_tensor *t, int root, md_error *err);          /* contiguous */
int md_dist_broadcast_buf(md_ctx *ctx, void *buf, size_t bytes, int root, md_error *err);   /* host */
int md_dist_all_reduce(md_ctx *ctx, md_tensor *t, md_dist_op op, md_error *err);  /* f32, contiguous */
int md_dist_all_reduce_f64(md_ctx *ctx, double *buf, int64_t n, md_dist_op op, md_error *err); /* host */
/* Non-blocking all-reduce of t (f32, contiguous), finished by md_dist_wait;
 * *work stays NULL when not distributed. */
int md_dist_all_reduce_start(md_ctx *ctx, md_tensor *t, md_dist_op op, md_comm_work **work, md_error *err);
int md_dist_test(md_ctx *ctx, const md_tensor *t, md_comm_work *work, bool *done, md_error *err);
int md_dist_wait(md_ctx *ctx, const md_tensor *t, md_comm_work *work, md_error *err);
/* Host bytes of every rank in rank order: *out (malloc'ed, caller frees)
 * and sizes[world_size] (malloc'ed into *sizes). */
int md_dist_all_gather_bytes(md_ctx *ctx, const void *buf, size_t bytes, void **out, size_t **sizes, md_error *err);
int md_dist_barrier(md_ctx *ctx, md_error *err);

/* ---- SyncBN ---- */
/* md_batch_norm2d with the batch statistics of every rank's batch (mmcv's
 * SyncBatchNorm): in training with a world of more than 1 process the
 * per-channel sums go through an all-reduce, forward and backward (so every
 * rank calls it for the same layers in the same order); otherwise it is
 * md_batch_norm2d. */
md_tensor *md_sync_batch_norm2d(md_ctx *ctx, md_tensor *x, md_tensor *weight, md_tensor *bias,
                                md_tensor *running_mean, md_tensor *running_var, bool training, double momentum,
                                double eps);

/* ---- data parallelism (MMDistributedDataParallel) ---- */
typedef struct md_ddp md_ddp;
struct md_module;
/* Wraps `model` for a distributed run: broadcasts its parameters and buffers
 * from rank 0, groups the parameters that require grad into buckets of
 * about bucket_mb MB (25 as PyTorch; the first of 1 MB so communication
 * starts early) in reverse registration order, and from then on averages
 * their gradients across ranks during every md_backward: a bucket's
 * all-reduce starts as soon as its last gradient is final, and backward
 * returns once all have finished. A parameter that got no gradient on this
 * rank counts as zeros; one no rank gave a gradient keeps none. NULL with
 * err set. Not distributed: a no-op wrapper. */
md_ddp *md_ddp_new(md_ctx *ctx, struct md_module *model, double bucket_mb, md_error *err);
void md_ddp_free(md_ddp *d);   /* detaches from the context */
int md_ddp_bucket_count(const md_ddp *d);
/* Overlap of communication with backward, on by default. Off, no bucket
 * starts during backward: all are started at its end, in the same order,
 * and waited for (the same collectives on the same buffers, so the same
 * results bit for bit); the baseline that shows what overlapping gains.
 * mmdet-run switches it off with MMDET_DDP_OVERLAP=0. */
void md_ddp_set_overlap(md_ddp *d, bool on);
bool md_ddp_overlap(const md_ddp *d);
/* Seconds this rank spent waiting for all-reduces after backward's own
 * work (the part communication did not overlap, plus the other ranks'
 * lag; without overlap, all of the communication), summed since the last
 * call, and the bytes reduced; for benchmarks. */
double md_ddp_take_wait_seconds(md_ddp *d, double *bytes);
/* The bytes whose all-reduce had finished when backward's own work ended
 * (the buckets done under backward), summed since the last call. On the
 * host transport the fraction of the bytes reduced this says how much of
 * the communication overlap hid; on a device the host reaches the end of
 * backward before the kernels do, so it counts little there. */
double md_ddp_take_hidden_bytes(md_ddp *d);
/* One step's gradient all-reduces on their own, outside backward: every
 * bucket (its content cleared) started in order and waited for, after a
 * barrier; *seconds the median of `reps` rounds. A collective: every rank
 * calls it at the same point. 0 (and *seconds 0 when not distributed), or
 * -1 with err set. */
int md_ddp_time_all_reduce(md_ddp *d, int reps, double *seconds, md_error *err);

#ifdef __cplusplus
}
#endif
#endif
