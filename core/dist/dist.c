/* Distributed set-up (mmcv's init_dist) and the collectives' dispatch: host
 * buffers to the host communicator (MPI), device tensors to the device one
 * (NCCL, lib/libmmdet-nccl.so). */
#include <limits.h>
#include <ltdl.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "mmdet/dist.h"
#include "mmdet/device.h"

md_comm *md__mpi_comm_new(double timeout_s, md_error *err);

/* The NCCL transport's entry (transports/nccl.c): a communicator of the
 * host one's ranks for device `device_index`; 0, or -1 with err set. */
typedef int (*md_nccl_entry_fn)(md_comm *host, int device_index, md_comm **out, md_error *err);

static double env_timeout(void) {
    const char *s = getenv("MMDET_DIST_TIMEOUT");
    char *end;
    double v = s && *s ? strtod(s, &end) : 0;
    return s && *s && !*end && v > 0 ? v : 1800.0;
}

/* SLURM_* as an integer, -1 when unset or not one. */
static int env_int(const char *name) {
    const char *s = getenv(name);
    char *end;
    long v = s && *s ? strtol(s, &end, 10) : -1;
    return s && *s && !*end && v >= 0 && v <= INT_MAX ? (int)v : -1;
}

MD_API int md_dist_init(md_ctx *ctx, const char *launcher, md_error *err) {
    if (!launcher || !strcmp(launcher, "none")) return 0;
    if (ctx->comm) return 0;
    if (!strcmp(launcher, "pytorch"))
        return md_failc(err, MD_ERR_CONFIG,
                        "--launcher pytorch: torch.distributed's launchers (torchrun, RANK/WORLD_SIZE/MASTER_ADDR) "
                        "rendezvous over a TCP store this framework does not have; launch with "
                        "`mpirun -np N mmdet-run CONFIG --launcher mpi` or `srun ... --launcher slurm` "
                        "(docs/distributed.md)");
    bool slurm = !strcmp(launcher, "slurm");
    if (!slurm && strcmp(launcher, "mpi"))
        return md_failc(err, MD_ERR_CONFIG, "--launcher: unknown launcher '%s' (none, mpi, slurm)", launcher);
    int procid = -1, ntasks = -1, localid = -1;
    if (slurm) {
        procid = env_int("SLURM_PROCID");
        ntasks = env_int("SLURM_NTASKS");
        localid = env_int("SLURM_LOCALID");
        if (procid < 0 || ntasks < 1 || localid < 0)
            return md_failc(err, MD_ERR_CONFIG, "--launcher slurm: SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID must be "
                            "set (run the command under srun)");
    }
    md_comm *c = md__mpi_comm_new(env_timeout(), err);
    if (!c) return md_error_wrap(err, "--launcher %s", launcher);
    if (slurm && (procid != c->rank || ntasks != c->world_size)) {
        int r = c->rank, w = c->world_size;
        c->iface->destroy(c);
        return md_failc(err, MD_ERR_CONFIG, "--launcher slurm: Slurm says rank %d of %d, MPI says rank %d of %d: run "
                        "srun with --mpi=pmix (or pmi2) so that MPI joins the Slurm job step", procid, ntasks, r, w);
    }
    if (slurm) c->local_rank = localid;
    ctx->comm = c;
    return 0;
}

MD_API int md_dist_init_device(md_ctx *ctx, int device_index, md_error *err) {
    if (!ctx->comm || ctx->dev_comm || ctx->comm->world_size == 1) return 0;
    static const char *lib = "libmmdet-nccl.so", *sym = "md_nccl_comm_new";
    if (lt_dlinit() != 0) return md_failc(err, MD_ERR_PLUGIN, "cannot initialise libltdl: %s", lt_dlerror());
    char dir[PATH_MAX], path[PATH_MAX + 32];
    const char *env = getenv("MMDET_BACKEND_PATH");
    lt_dlhandle h = NULL;
    if (env && *env) {
        snprintf(path, sizeof path, "%s/%s", env, lib);
        h = lt_dlopen(path);
    }
    if (!h && md__self_dir(dir, sizeof dir)) {
        snprintf(path, sizeof path, "%s/%s", dir, lib);
        h = lt_dlopen(path);
    }
    if (!h) h = lt_dlopen(lib);
    if (!h) {
        const char *e = lt_dlerror();
        lt_dlexit();
        return md_failc(err, MD_ERR_PLUGIN, "rank %d: cannot load the NCCL transport lib/%s (built when nvcc and "
                        "nccl.h are installed): %s", ctx->comm->rank, lib, e ? e : "not found");
    }
    md_nccl_entry_fn entry = (md_nccl_entry_fn)lt_dlsym(h, sym);
    md_comm *c = NULL;
    if (!entry) {
        lt_dlclose(h);
        lt_dlexit();
        return md_failc(err, MD_ERR_PLUGIN, "%s does not export %s", lib, sym);
    }
    if (entry(ctx->comm, device_index, &c, err) != 0) return -1;   /* the library stays loaded */
    ctx->dev_comm = c;
    return 0;
}

MD_API void md_ctx_set_comm(md_ctx *ctx, md_comm *comm, bool device) {
    md_comm **slot = device ? &ctx->dev_comm : &ctx->comm;
    if (*slot && *slot != comm) (*slot)->iface->destroy(*slot);
    *slot = comm;
}

MD_API md_comm *md_ctx_comm(const md_ctx *ctx) { return ctx->comm; }

void md__dist_free(md_ctx *ctx) {
    /* NCCL before MPI: its communicator was made over MPI */
    if (ctx->dev_comm) ctx->dev_comm->iface->destroy(ctx->dev_comm);
    if (ctx->comm) ctx->comm->iface->destroy(ctx->comm);
    ctx->dev_comm = ctx->comm = NULL;
}

MD_API int md_dist_rank(const md_ctx *ctx) { return ctx->comm ? ctx->comm->rank : 0; }
MD_API int md_dist_world_size(const md_ctx *ctx) { return ctx->comm ? ctx->comm->world_size : 1; }
MD_API int md_dist_local_rank(const md_ctx *ctx) { return ctx->comm ? ctx->comm->local_rank : 0; }

MD_API void md_dist_abort(md_ctx *ctx, int code) {
    if (ctx->comm && ctx->comm->world_size > 1 && ctx->comm->iface->abort) ctx->comm->iface->abort(ctx->comm, code);
}

/* ------------------------------------------------------------ dispatch -- */

static bool active(const md_ctx *ctx) { return ctx->comm && ctx->comm->world_size > 1; }

/* The transport for t's memory; NULL with err set when there is none. */
static md_comm *comm_for(md_ctx *ctx, const md_tensor *t, const char *what, md_error *err) {
    if (t->device == MD_CPU) return ctx->comm;
    if (ctx->dev_comm) return ctx->dev_comm;
    md_failc(err, MD_ERR_DIST, "rank %d: %s of a device tensor needs the device transport (md_dist_init_device)",
             ctx->comm->rank, what);
    return NULL;
}

static int check_tensor(const md_comm *c, const md_tensor *t, const char *what, md_error *err) {
    if (!md_tensor_is_contiguous(t))
        return md_failc(err, MD_ERR_SHAPE, "rank %d: %s needs a contiguous tensor", c->rank, what);
    if (t->dtype != MD_F32 && t->dtype != MD_I64)
        return md_failc(err, MD_ERR_SHAPE, "rank %d: %s of a %s tensor (f32 or i64)", c->rank, what,
                        md_dtype_name(t->dtype));
    return 0;
}

MD_API int md_dist_broadcast_buf(md_ctx *ctx, void *buf, size_t bytes, int root, md_error *err) {
    if (!active(ctx) || !bytes) return 0;
    return ctx->comm->iface->broadcast(ctx->comm, buf, bytes, root, err);
}

MD_API int md_dist_broadcast(md_ctx *ctx, md_tensor *t, int root, md_error *err) {
    if (!active(ctx)) return 0;
    md_comm *c = comm_for(ctx, t, "broadcast", err);
    if (!c || check_tensor(c, t, "broadcast", err)) return -1;
    size_t bytes = (size_t)md_tensor_numel(t) * md_dtype_size(t->dtype);
    return bytes ? c->iface->broadcast(c, t->data, bytes, root, err) : 0;
}

MD_API int md_dist_all_reduce_start(md_ctx *ctx, md_tensor *t, md_dist_op op, md_comm_work **work, md_error *err) {
    *work = NULL;
    if (!active(ctx)) return 0;
    md_comm *c = comm_for(ctx, t, "all_reduce", err);
    if (!c || check_tensor(c, t, "all_reduce", err)) return -1;
    return c->iface->all_reduce_start(c, t->data, md_tensor_numel(t), t->dtype, op, work, err);
}

MD_API int md_dist_test(md_ctx *ctx, const md_tensor *t, md_comm_work *work, bool *done, md_error *err) {
    *done = true;
    if (!work) return 0;
    md_comm *c = comm_for(ctx, t, "all_reduce", err);
    if (!c) return -1;
    if (!c->iface->test) {
        *done = false;
        return 0;
    }
    return c->iface->test(c, work, done, err);
}

MD_API int md_dist_wait(md_ctx *ctx, const md_tensor *t, md_comm_work *work, md_error *err) {
    if (!work) return 0;
    md_comm *c = comm_for(ctx, t, "all_reduce", err);
    return c ? c->iface->wait(c, work, err) : -1;
}

MD_API int md_dist_all_reduce(md_ctx *ctx, md_tensor *t, md_dist_op op, md_error *err) {
    md_comm_work *w = NULL;
    if (md_dist_all_reduce_start(ctx, t, op, &w, err) != 0) return -1;
    return md_dist_wait(ctx, t, w, err);
}

MD_API int md_dist_all_reduce_f64(md_ctx *ctx, double *buf, int64_t n, md_dist_op op, md_error *err) {
    if (!active(ctx) || n <= 0) return 0;
    return ctx->comm->iface->all_reduce_f64(ctx->comm, buf, n, op, err);
}

MD_API int md_dist_all_gather_bytes(md_ctx *ctx, const void *buf, size_t bytes, void **out, size_t **sizes,
                                    md_error *err) {
    int W = md_dist_world_size(ctx);
    *out = NULL;
    *sizes = calloc((size_t)W, sizeof **sizes);
    if (!*sizes) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    if (!active(ctx)) {
        *out = malloc(bytes ? bytes : 1);
        if (!*out) {
            free(*sizes);
            *sizes = NULL;
            return md_failc(err, MD_ERR_NOMEM, "out of memory");
        }
        if (bytes) memcpy(*out, buf, bytes);
        (*sizes)[0] = bytes;
        return 0;
    }
    if (ctx->comm->iface->all_gather_bytes(ctx->comm, buf, bytes, out, *sizes, err) != 0) {
        free(*sizes);
        *sizes = NULL;
        return -1;
    }
    return 0;
}

MD_API int md_dist_barrier(md_ctx *ctx, md_error *err) {
    return active(ctx) ? ctx->comm->iface->barrier(ctx->comm, err) : 0;
}
