/* The NCCL transport on one GPU (scripts/cuda-check.sh runs it; skipped
 * without a GPU): MPI as a singleton bootstraps a 1-rank communicator, whose
 * all-reduce and broadcast of a device tensor must leave it unchanged (the
 * sum and the mean over one rank are the identity), through the same
 * start/test/wait calls the data-parallel buckets use. Several ranks need a
 * GPU each: `mpirun -np N bin/mmdet-run ... --launcher mpi --device cuda`
 * (docs/distributed.md). */
#include <ltdl.h>
#include "cudalib.h"
#include "mmdet/dist.h"

typedef int (*nccl_entry)(md_comm *host, int device_index, md_comm **out, md_error *err);

TestSuite(cuda_nccl, .init = cuda_setup, .fini = cuda_teardown, .timeout = 120);

Test(cuda_nccl, one_rank_all_reduce_and_broadcast_of_a_device_tensor) {
    NEED_GPU();
    md_error err = {0};
    cr_assert_eq(md_dist_init(ctx, "mpi", &err), 0, "%s", err.msg);
    cr_assert_eq(md_dist_world_size(ctx), 1, "run without mpirun: a singleton");
    cr_assert_eq(lt_dlinit(), 0);
    lt_dlhandle h = lt_dlopen("lib/libmmdet-nccl.so");
    cr_assert(h, "lib/libmmdet-nccl.so: %s (built when nvcc and nccl.h are found)", lt_dlerror());
    nccl_entry entry = (nccl_entry)lt_dlsym(h, "md_nccl_comm_new");
    cr_assert(entry);
    md_comm *nc = NULL;
    cr_assert_eq(entry(md_ctx_comm(ctx), gpu.index, &nc, &err), 0, "%s", err.msg);

    enum { N = 3000 };   /* not a multiple of anything NCCL chunks by */
    float host[N];
    for (int i = 0; i < N; i++) host[i] = (float)(i % 97) * 0.25f - 7.0f;
    int64_t shape[1] = { N };
    md_tensor *x = md_tensor_from(ctx, MD_F32, 1, shape, host);
    md_tensor *d = md_tensor_to(ctx, x, gpu);
    cr_assert(d && d->device != MD_CPU);
    const md_dist_op ops[2] = { MD_DIST_SUM, MD_DIST_MEAN };
    for (int k = 0; k < 2; k++) {
        md_comm_work *w = NULL;
        cr_assert_eq(nc->iface->all_reduce_start(nc, d->data, N, MD_F32, ops[k], &w, &err), 0, "%s", err.msg);
        bool done = false;   /* polled as the buckets are, then finished (wait frees the work) */
        for (int spin = 0; spin < 1000 && !done; spin++)
            cr_assert_eq(nc->iface->test(nc, w, &done, &err), 0, "%s", err.msg);
        cr_assert_eq(nc->iface->wait(nc, w, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(nc->iface->broadcast(nc, d->data, N * sizeof(float), 0, &err), 0, "%s", err.msg);
    cr_assert_eq(nc->iface->barrier(nc, &err), 0, "%s", err.msg);
    const float *back = md_f32(to_cpu(d));
    for (int i = 0; i < N; i++) cr_assert_eq(back[i], host[i], "element %d: %g, want %g", i, back[i], host[i]);
    nc->iface->destroy(nc);
}
