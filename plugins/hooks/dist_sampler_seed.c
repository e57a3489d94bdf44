/* DistSamplerSeedHook: mmcv's hook calls sampler.set_epoch(epoch) before
 * each training epoch so that every rank's DistributedGroupSampler draws
 * the same permutation. Here the runner already starts each loader's epoch
 * with the epoch number (md_loader_start_epoch), so what is left for the
 * hook is to make sure the ranks agree on it: a rank that resumed from
 * another checkpoint than the others would shuffle differently, train on
 * overlapping shards and still run. It stops the run instead. */
#include <stdlib.h>
#include <mmdet/mmdet.h>

static int before_train_epoch(md_hook *h, md_runner *r, md_error *err) {
    (void)h;
    md_ctx *ctx = md_runner_ctx(r);
    if (md_dist_world_size(ctx) == 1) return 0;
    double mine = (double)md_runner_epoch(r), v[2] = { mine, mine * mine };
    if (md_dist_all_reduce_f64(ctx, v, 2, MD_DIST_MEAN, err) != 0) return -1;
    /* equal everywhere exactly when the mean of squares is the square of the mean */
    if (v[0] != mine || v[1] != v[0] * v[0])
        return md_failc(err, MD_ERR_DIST, "rank %d starts epoch %lld but the ranks disagree (mean %g): they must "
                        "resume from the same checkpoint", md_dist_rank(ctx), (long long)mine + 1, v[0] + 1);
    return 0;
}

static const md_hook_iface iface = { .before_train_epoch = before_train_epoch,
                                     .default_priority = MD_PRIORITY_NORMAL };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    (void)cfg;
    md_hook *h = calloc(1, sizeof *h);
    if (!h) md_failc(err, MD_ERR_NOMEM, "out of memory");
    else h->iface = &iface;
    return h;
}

MD_PLUGIN("dist_sampler_seed", "1.0", "Apache-2.0");
static const md_class cls = { .name = "DistSamplerSeedHook", .build = build, MD_IFACE(&iface, MD_IFACE_HOOK),
                              .doc = "every rank starts the same epoch (its samplers' seed)" };
MD_REGISTER("hooks", cls)
