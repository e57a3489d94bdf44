/* The NCCL transport: collectives on device buffers, lib/libmmdet-nccl.so.
 *
 * Built when nvcc and nccl.h are found, loaded by md_dist_init_device. Like
 * the CUDA backend it calls nothing in libmmdet: the unique id travels over
 * the host communicator through its function table, and errors are written
 * into the caller's md_error directly.
 *
 * Ordering with the compute stream: the CUDA backend's stream is a blocking
 * stream, so an event recorded on the legacy default stream completes only
 * after every kernel queued before it there; NCCL's own stream waits for
 * that event, so a bucket's all-reduce overlaps the backward kernels queued
 * after it. `wait` blocks the host until the all-reduce is done (polling,
 * with the timeout, then aborting the NCCL communicator on expiry so that
 * no kernel waits forever for a dead peer). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <cuda_runtime_api.h>
#include <nccl.h>
#include "mmdet/dist.h"

typedef struct nccl_comm {
    md_comm base;
    md_comm *host;
    ncclComm_t comm;
    cudaStream_t stream;
    int device;
} nccl_comm;

struct md_comm_work {
    cudaEvent_t done;
    const char *what;
};

static int fail(md_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(md_error *err, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = MD_ERR_DIST;
    return -1;
}

static int check_nccl(const nccl_comm *c, ncclResult_t r, const char *what, md_error *err) {
    if (r == ncclSuccess) return 0;
    return fail(err, "rank %d: %s (nccl): %s", c->base.rank, what, ncclGetErrorString(r));
}

static int check_cuda(const nccl_comm *c, cudaError_t e, const char *what, md_error *err) {
    if (e == cudaSuccess) return 0;
    return fail(err, "rank %d: %s (cuda): %s", c->base.rank, what, cudaGetErrorString(e));
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* NCCL's stream after everything queued so far on the compute stream. */
static int after_compute(nccl_comm *c, md_error *err) {
    cudaEvent_t ev;
    if (check_cuda(c, cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "event", err)) return -1;
    int rc = check_cuda(c, cudaEventRecord(ev, 0), "event record", err) ||
             check_cuda(c, cudaStreamWaitEvent(c->stream, ev, 0), "stream wait", err) ? -1 : 0;
    cudaEventDestroy(ev);
    return rc;
}

static int poll_done(nccl_comm *c, cudaEvent_t ev, const char *what, md_error *err) {
    double start = now_s();
    for (;;) {
        cudaError_t e = cudaEventQuery(ev);
        if (e == cudaSuccess) return 0;
        if (e != cudaErrorNotReady) return check_cuda(c, e, what, err);
        ncclResult_t async = ncclSuccess;
        ncclCommGetAsyncError(c->comm, &async);
        if (async != ncclSuccess && async != ncclInProgress) {
            ncclCommAbort(c->comm);
            c->comm = NULL;
            return check_nccl(c, async, what, err);
        }
        if (now_s() - start > c->base.timeout_s) {
            ncclCommAbort(c->comm);
            c->comm = NULL;
            return fail(err, "rank %d: %s (nccl) did not complete within %.0f s: another of the %d ranks failed or "
                        "stopped (MMDET_DIST_TIMEOUT sets the limit)", c->base.rank, what, c->base.timeout_s,
                        c->base.world_size);
        }
        nanosleep(&(struct timespec){ 0, 20000 }, NULL);
    }
}

static int n_broadcast(md_comm *mc, void *buf, size_t bytes, int root, md_error *err) {
    nccl_comm *c = (nccl_comm *)mc;
    if (!c->comm) return fail(err, "rank %d: broadcast: the NCCL communicator was aborted", mc->rank);
    if (after_compute(c, err)) return -1;
    cudaEvent_t ev;
    if (check_cuda(c, cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "event", err)) return -1;
    int rc = check_nccl(c, ncclBroadcast(buf, buf, bytes, ncclUint8, root, c->comm, c->stream), "broadcast", err) ||
             check_cuda(c, cudaEventRecord(ev, c->stream), "event record", err) ||
             poll_done(c, ev, "broadcast", err) ? -1 : 0;
    cudaEventDestroy(ev);
    return rc;
}

static int n_all_reduce_start(md_comm *mc, void *buf, int64_t n, md_dtype dt, md_dist_op op, md_comm_work **work,
                              md_error *err) {
    nccl_comm *c = (nccl_comm *)mc;
    if (!c->comm) return fail(err, "rank %d: all_reduce: the NCCL communicator was aborted", mc->rank);
    md_comm_work *w = calloc(1, sizeof *w);
    if (!w) return fail(err, "out of memory");
    w->what = "all_reduce";
    if (after_compute(c, err) ||
        check_cuda(c, cudaEventCreateWithFlags(&w->done, cudaEventDisableTiming), "event", err)) {
        free(w);
        return -1;
    }
    ncclResult_t r = ncclAllReduce(buf, buf, (size_t)n, dt == MD_I64 ? ncclInt64 : ncclFloat32,
                                   op == MD_DIST_MEAN ? ncclAvg : ncclSum, c->comm, c->stream);
    if (check_nccl(c, r, "all_reduce", err) || check_cuda(c, cudaEventRecord(w->done, c->stream), "event", err)) {
        cudaEventDestroy(w->done);
        free(w);
        return -1;
    }
    *work = w;
    return 0;
}

static int n_test(md_comm *mc, md_comm_work *w, bool *done, md_error *err) {
    cudaError_t e = cudaEventQuery(w->done);
    *done = e == cudaSuccess;
    return e == cudaSuccess || e == cudaErrorNotReady ? 0 : check_cuda((nccl_comm *)mc, e, w->what, err);
}

static int n_wait(md_comm *mc, md_comm_work *w, md_error *err) {
    int rc = poll_done((nccl_comm *)mc, w->done, w->what, err);
    cudaEventDestroy(w->done);
    free(w);
    return rc;
}

static int n_barrier(md_comm *mc, md_error *err) {
    nccl_comm *c = (nccl_comm *)mc;
    return c->host->iface->barrier(c->host, err);
}

static void n_abort(md_comm *mc, int code) {
    nccl_comm *c = (nccl_comm *)mc;
    if (c->comm) ncclCommAbort(c->comm);
    c->comm = NULL;
    if (c->host->iface->abort) c->host->iface->abort(c->host, code);
}

static void n_destroy(md_comm *mc) {
    nccl_comm *c = (nccl_comm *)mc;
    if (!c) return;
    if (c->comm) ncclCommDestroy(c->comm);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

static const md_comm_iface nccl_iface = {
    .name = "nccl", .broadcast = n_broadcast, .all_reduce_start = n_all_reduce_start, .test = n_test,
    .wait = n_wait, .barrier = n_barrier, .abort = n_abort, .destroy = n_destroy,
};

__attribute__((visibility("default"))) int md_nccl_comm_new(md_comm *host, int device_index, md_comm **out,
                                                            md_error *err) {
    nccl_comm *c = calloc(1, sizeof *c);
    if (!c) return fail(err, "out of memory");
    c->base = (md_comm){ .iface = &nccl_iface, .rank = host->rank, .world_size = host->world_size,
                         .local_rank = host->local_rank, .timeout_s = host->timeout_s };
    c->host = host;
    c->device = device_index;
    ncclUniqueId id;
    if (check_cuda(c, cudaSetDevice(device_index), "cudaSetDevice", err)) goto fail;
    if (host->rank == 0 && check_nccl(c, ncclGetUniqueId(&id), "ncclGetUniqueId", err)) goto fail;
    if (host->iface->broadcast(host, &id, sizeof id, 0, err) != 0) goto fail;
    if (check_nccl(c, ncclCommInitRank(&c->comm, host->world_size, id, host->rank), "ncclCommInitRank", err) ||
        check_cuda(c, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "stream", err))
        goto fail;
    *out = &c->base;
    return 0;
fail:
    n_destroy(&c->base);
    return -1;
}
