/* The MPI transport: collectives on host buffers (OpenMPI from Debian).
 *
 * Every collective is the non-blocking MPI call polled until done or the
 * communicator's timeout, so that a rank that died or hangs ends in an
 * error (naming this rank and the operation) instead of a hang; errors are
 * returned (MPI_ERRORS_RETURN), never fatal inside MPI. Only the thread that
 * called md_dist_init calls MPI (MPI_THREAD_FUNNELED). */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "internal.h"
#include "mmdet/dist.h"

#ifdef MD_HAVE_MPI
#include <mpi.h>

typedef struct mpi_comm {
    md_comm base;
    MPI_Comm comm;
    bool finalize;           /* this transport initialised MPI */
} mpi_comm;

struct md_comm_work {
    MPI_Request req;
    void *buf;
    int64_t n;
    md_dtype dt;
    md_dist_op op;
    const char *what;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int mpi_fail(const md_comm *c, int rc, const char *what, md_error *err) {
    char s[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, s, &len);
    return md_failc(err, MD_ERR_DIST, "rank %d: %s failed: %s (another rank exited?)", c->rank, what, s);
}

/* Polls req until done: a short spin, then sleeps growing to 1 ms so that a
 * waiting rank leaves the cores to the others. */
static int poll_wait(const md_comm *c, MPI_Request *req, const char *what, md_error *err) {
    double start = now_s();
    long sleep_ns = 0;
    for (int k = 0;; k++) {
        int done = 0, rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(c, rc, what, err);
        if (done) return 0;
        if (k < 64) continue;
        if ((k & 63) == 0 && now_s() - start > c->timeout_s) {
            /* the request cannot be freed while in flight; the process is
             * expected to end (md_dist_abort) */
            return md_failc(err, MD_ERR_DIST,
                            "rank %d: %s did not complete within %.0f s: another of the %d ranks failed or stopped "
                            "(MMDET_DIST_TIMEOUT sets the limit)", c->rank, what, c->timeout_s, c->world_size);
        }
        sleep_ns = sleep_ns ? (sleep_ns * 2 > 1000000 ? 1000000 : sleep_ns * 2) : 1000;
        nanosleep(&(struct timespec){ 0, sleep_ns }, NULL);
    }
}

static MPI_Datatype mpi_type(md_dtype dt) { return dt == MD_I64 ? MPI_INT64_T : MPI_FLOAT; }

static int m_broadcast(md_comm *c, void *buf, size_t bytes, int root, md_error *err) {
    mpi_comm *m = (mpi_comm *)c;
    for (size_t off = 0; off < bytes;) {
        size_t chunk = bytes - off > (1u << 30) ? (1u << 30) : bytes - off;
        MPI_Request req;
        int rc = MPI_Ibcast((char *)buf + off, (int)chunk, MPI_BYTE, root, m->comm, &req);
        if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "broadcast", err);
        if (poll_wait(c, &req, "broadcast", err) != 0) return -1;
        off += chunk;
    }
    return 0;
}

static void finish_mean(md_comm_work *w, int world) {
    if (w->op != MD_DIST_MEAN) return;
    if (w->dt == MD_F32) {
        float *p = w->buf, s = 1.0f / (float)world;
        for (int64_t i = 0; i < w->n; i++) p[i] *= s;
    } else {
        int64_t *p = w->buf;
        for (int64_t i = 0; i < w->n; i++) p[i] /= world;
    }
}

static int m_all_reduce_start(md_comm *c, void *buf, int64_t n, md_dtype dt, md_dist_op op, md_comm_work **work,
                              md_error *err) {
    mpi_comm *m = (mpi_comm *)c;
    if (dt != MD_F32 && dt != MD_I64)
        return md_failc(err, MD_ERR_DIST, "rank %d: all_reduce: dtype %s is not supported", c->rank, md_dtype_name(dt));
    if (n > INT32_MAX) return md_failc(err, MD_ERR_DIST, "rank %d: all_reduce of %lld elements (at most 2^31 - 1)",
                                       c->rank, (long long)n);
    md_comm_work *w = calloc(1, sizeof *w);
    if (!w) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    *w = (md_comm_work){ .buf = buf, .n = n, .dt = dt, .op = op, .what = "all_reduce" };
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, mpi_type(dt), MPI_SUM, m->comm, &w->req);
    if (rc != MPI_SUCCESS) {
        free(w);
        return mpi_fail(c, rc, "all_reduce", err);
    }
    *work = w;
    return 0;
}

static int m_test(md_comm *c, md_comm_work *w, bool *done, md_error *err) {
    int d = 0, rc = MPI_Test(&w->req, &d, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_fail(c, rc, w->what, err);
    *done = d;
    return 0;
}

static int m_wait(md_comm *c, md_comm_work *w, md_error *err) {
    int rc = poll_wait(c, &w->req, w->what, err);
    if (rc == 0) finish_mean(w, c->world_size);
    free(w);
    return rc;
}

static int m_all_reduce_f64(md_comm *c, double *buf, int64_t n, md_dist_op op, md_error *err) {
    mpi_comm *m = (mpi_comm *)c;
    MPI_Request req;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, m->comm, &req);
    if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "all_reduce", err);
    if (poll_wait(c, &req, "all_reduce", err) != 0) return -1;
    if (op == MD_DIST_MEAN)
        for (int64_t i = 0; i < n; i++) buf[i] /= c->world_size;
    return 0;
}

static int m_all_gather_bytes(md_comm *c, const void *buf, size_t bytes, void **out, size_t *sizes, md_error *err) {
    mpi_comm *m = (mpi_comm *)c;
    int W = c->world_size;
    uint64_t mine = bytes, *all = calloc((size_t)W, sizeof *all);
    int *counts = calloc((size_t)W, sizeof *counts), *displs = calloc((size_t)W, sizeof *displs);
    char *res = NULL;
    int ret = -1;
    if (!all || !counts || !displs) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto out;
    }
    MPI_Request req;
    int rc = MPI_Iallgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, m->comm, &req);
    if (rc != MPI_SUCCESS) {
        mpi_fail(c, rc, "all_gather", err);
        goto out;
    }
    if (poll_wait(c, &req, "all_gather", err) != 0) goto out;
    uint64_t total = 0;
    for (int r = 0; r < W; r++) {
        if (all[r] > INT32_MAX || total + all[r] > INT32_MAX) {
            md_failc(err, MD_ERR_DIST, "rank %d: all_gather of more than 2 GiB", c->rank);
            goto out;
        }
        counts[r] = (int)all[r];
        displs[r] = (int)total;
        sizes[r] = (size_t)all[r];
        total += all[r];
    }
    res = malloc(total ? total : 1);
    if (!res) {
        md_failc(err, MD_ERR_NOMEM, "out of memory for %llu gathered bytes", (unsigned long long)total);
        goto out;
    }
    rc = MPI_Iallgatherv(buf, (int)bytes, MPI_BYTE, res, counts, displs, MPI_BYTE, m->comm, &req);
    if (rc != MPI_SUCCESS) {
        mpi_fail(c, rc, "all_gather", err);
        goto out;
    }
    if (poll_wait(c, &req, "all_gather", err) != 0) goto out;
    *out = res;
    res = NULL;
    ret = 0;
out:
    free(res);
    free(all);
    free(counts);
    free(displs);
    return ret;
}

static int m_barrier(md_comm *c, md_error *err) {
    MPI_Request req;
    int rc = MPI_Ibarrier(((mpi_comm *)c)->comm, &req);
    if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "barrier", err);
    return poll_wait(c, &req, "barrier", err);
}

static void m_abort(md_comm *c, int code) { MPI_Abort(((mpi_comm *)c)->comm, code ? code : 1); }

static void m_destroy(md_comm *c) {
    mpi_comm *m = (mpi_comm *)c;
    if (!m) return;
    MPI_Comm_free(&m->comm);
    if (m->finalize) MPI_Finalize();
    free(m);
}

static const md_comm_iface mpi_iface = {
    .name = "mpi", .broadcast = m_broadcast, .all_reduce_start = m_all_reduce_start, .test = m_test,
    .wait = m_wait, .all_reduce_f64 = m_all_reduce_f64, .all_gather_bytes = m_all_gather_bytes,
    .barrier = m_barrier, .abort = m_abort, .destroy = m_destroy,
};

md_comm *md__mpi_comm_new(double timeout_s, md_error *err) {
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        md_failc(err, MD_ERR_DIST, "MPI_Init failed (run the program under mpirun or srun)");
        return NULL;
    }
    mpi_comm *m = calloc(1, sizeof *m);
    if (!m) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->finalize = !inited;
    MPI_Comm_dup(MPI_COMM_WORLD, &m->comm);
    MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(m->comm, &m->base.rank);
    MPI_Comm_size(m->comm, &m->base.world_size);
    /* the local rank: this rank's place among those sharing its node */
    MPI_Comm node;
    if (MPI_Comm_split_type(m->comm, MPI_COMM_TYPE_SHARED, m->base.rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_rank(node, &m->base.local_rank);
        MPI_Comm_free(&node);
    }
    m->base.iface = &mpi_iface;
    m->base.timeout_s = timeout_s;
    return &m->base;
}

#else

md_comm *md__mpi_comm_new(double timeout_s, md_error *err) {
    (void)timeout_s;
    md_failc(err, MD_ERR_DIST, "this libmmdet was built without MPI (install libopenmpi-dev and rebuild: "
             "scripts/deps.sh build)");
    return NULL;
}

#endif
