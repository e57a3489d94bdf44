/* CheckpointHook: mmcv's interval, by_epoch, save_optimizer, out_dir,
 * max_keep_ckpts and save_last; files epoch_N / iter_N with a latest link. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/mmdet.h>

typedef struct ckpt_hook {
    md_hook base;
    int64_t interval, max_keep;
    bool by_epoch, save_optimizer, save_last;
    const char *out_dir;   /* NULL: the work dir */
} ckpt_hook;

static const md_key keys[] = {
    { "interval", MD_KEY_INT, "-1", "save every N epochs (or iterations); -1: only the last", false,
      MD_AT(ckpt_hook, interval) },
    { "by_epoch", MD_KEY_BOOL, "true", NULL, false, MD_AT(ckpt_hook, by_epoch) },
    { "save_optimizer", MD_KEY_BOOL, "true", NULL, false, MD_AT(ckpt_hook, save_optimizer) },
    { "out_dir", MD_KEY_STRING, NULL, "folder for checkpoints (default: the work dir)", false,
      MD_AT(ckpt_hook, out_dir) },
    { "max_keep_ckpts", MD_KEY_INT, "-1", "keep only the newest N; -1 keeps all", false, MD_AT(ckpt_hook, max_keep) },
    { "save_last", MD_KEY_BOOL, "true", NULL, false, MD_AT(ckpt_hook, save_last) },
    { 0 } };

static int save(ckpt_hook *h, md_runner *r, int64_t n, md_error *err) {
    if (md_dist_rank(md_runner_ctx(r)) != 0) return 0;   /* mmcv's master_only */
    const char *dir = h->out_dir && h->out_dir[0] ? h->out_dir : md_runner_work_dir(r);
    char name[64];
    snprintf(name, sizeof name, "%s_%lld" MD_CKPT_EXT, h->by_epoch ? "epoch" : "iter", (long long)n);
    if (md_runner_save_checkpoint(r, dir, name, h->save_optimizer, true, err) != 0) return -1;
    md_log_write(md_runner_ctx(r), MD_LOG_INFO, "Saving checkpoint at %lld %s", (long long)n,
                 h->by_epoch ? "epochs" : "iterations");
    if (h->max_keep > 0) {   /* mmcv removes the one max_keep intervals back */
        int64_t step = h->interval > 0 ? h->interval : 1;
        for (int64_t old = n - h->max_keep * step; old > 0; old -= step) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s_%lld" MD_CKPT_EXT, dir, h->by_epoch ? "epoch" : "iter",
                     (long long)old);
            if (unlink(path) != 0) break;
        }
    }
    return 0;
}

static bool due(ckpt_hook *h, int64_t n, bool last) {
    return (h->interval > 0 && n % h->interval == 0) || (h->save_last && last);
}

static int after_train_epoch(md_hook *hk, md_runner *r, md_error *err) {
    ckpt_hook *h = (ckpt_hook *)hk;
    if (!h->by_epoch) return 0;
    int64_t e = md_runner_epoch(r) + 1;   /* the epoch just finished */
    return due(h, e, e == md_runner_max_epochs(r)) ? save(h, r, e, err) : 0;
}

static int after_train_iter(md_hook *hk, md_runner *r, md_error *err) {
    ckpt_hook *h = (ckpt_hook *)hk;
    if (h->by_epoch) return 0;
    int64_t i = md_runner_iter(r) + 1;
    return due(h, i, i == md_runner_max_iters(r)) ? save(h, r, i, err) : 0;
}

static const md_hook_iface iface = { .after_train_epoch = after_train_epoch, .after_train_iter = after_train_iter,
                                     .default_priority = MD_PRIORITY_NORMAL };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    ckpt_hook *h = calloc(1, sizeof *h);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    h->base.iface = &iface;
    if (md_cfg_read_struct(cfg, keys, h, "CheckpointHook", err)) {
        free(h);
        return NULL;
    }
    return h;
}

MD_PLUGIN("checkpoint_hook", "1.0", "Apache-2.0");
static const md_class cls = { .name = "CheckpointHook", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_HOOK),
                              .doc = "save checkpoints every interval" };
MD_REGISTER("hooks", cls)
