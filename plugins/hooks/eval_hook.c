/* EvalHook and DistEvalHook: mmdet's (mmcv's rules). DistEvalHook tests
 * each rank's shard of the val set and gathers the results on rank 0
 * (md_multi_gpu_test), which evaluates, logs and keeps the best; before
 * testing rank 0's BN running statistics go to every rank.
 *
 * EvalHook: Every `interval` epochs (or
 * iterations), from `start`, the model's simple_test runs over its own val
 * loader (samples_per_gpu 1, no shuffle) with a progress bar on stderr; the
 * dataset's evaluate gives the metrics, which go into the runner's log
 * buffer (TextLoggerHook writes them as a "val" line); with save_best the
 * best checkpoint is kept as best_<key>_epoch_<N>.safetensors and the best
 * score and path are hook messages, so a resumed run continues from them.
 *
 * The val data arrive as a dataset config under `dataset` (what mmdet's
 * train_detector builds from data.val with test_mode=True); the hook builds
 * the dataset and its loader itself. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include <mmdet/data.h>
#include <mmdet/evaluation.h>

enum { RULE_NONE, RULE_GREATER, RULE_LESS };
#define MAX_KEYS 16

typedef struct eval_hook {
    md_hook base;
    md_ctx *ctx;
    md_dataset *ds;
    md_loader *loader;
    int64_t interval, start;       /* start -1: None */
    const md_cfg *start_cfg;
    int samples_per_gpu, workers_per_gpu;
    bool by_epoch, initial, progress;
    char save_best[64], key[64], metric[64], out_dir[2048];
    int rule;
    char greater[MAX_KEYS][32], less[MAX_KEYS][32];
    int n_greater, n_less;
    char best_path[4096];
    bool dist, broadcast_bn;       /* DistEvalHook */
} eval_hook;

#define EVAL_KEYS \
    { "dataset", MD_KEY_GROUP, NULL, "the val dataset config (test_mode defaults to true)", true }, \
    { "interval", MD_KEY_INT, "1", "evaluate every N epochs (or iterations)", false, \
      MD_AT(eval_hook, interval), .min = "1" }, \
    { "start", MD_KEY_ANY, NULL, "first epoch (iteration) to evaluate at; None: interval rule only", false, \
      MD_AT(eval_hook, start_cfg) }, \
    { "by_epoch", MD_KEY_BOOL, "true", "epochs (true) or iterations", false, MD_AT(eval_hook, by_epoch) }, \
    { "save_best", MD_KEY_ANY, NULL, "metric whose best value keeps a checkpoint; 'auto': the first", false }, \
    { "rule", MD_KEY_ANY, NULL, "'greater' or 'less'; None: inferred from the metric name", false }, \
    { "metric", MD_KEY_ANY, "\"bbox\"", "passed to the dataset's evaluate (a name or a list)", false }, \
    { "greater_keys", MD_KEY_ANY, NULL, "names whose larger value is better (mmcv's defaults)", false }, \
    { "less_keys", MD_KEY_ANY, NULL, "names whose smaller value is better (mmcv's defaults)", false }, \
    { "out_dir", MD_KEY_ANY, NULL, "folder for the best checkpoint (default: the work dir)", false }, \
    { "samples_per_gpu", MD_KEY_INT, "1", "val batch size (mmdet: 1)", false, MD_AT(eval_hook, samples_per_gpu) }, \
    { "workers_per_gpu", MD_KEY_INT, "0", "val loader threads", false, MD_AT(eval_hook, workers_per_gpu) }, \
    { "progress", MD_KEY_BOOL, "true", "progress bar on stderr", false, MD_AT(eval_hook, progress) },
static const md_key keys[] = { EVAL_KEYS { 0 } };
/* DistEvalHook's: gpu_collect and tmpdir choose how mmcv gathers results;
 * here they always go through the communicator. */
static const md_key dist_keys[] = {
    EVAL_KEYS
    { "gpu_collect", MD_KEY_BOOL, "false", "accepted: results are gathered through the communicator", false },
    { "tmpdir", MD_KEY_ANY, NULL, "accepted: results are gathered through the communicator", false },
    { "broadcast_bn_buffer", MD_KEY_BOOL, "true", "rank 0's BN running statistics everywhere before testing", false,
      MD_AT(eval_hook, broadcast_bn) },
    { 0 } };

static bool has_sub(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (!strncasecmp(hay, needle, n)) return true;
    return !*needle;
}

/* mmcv's _init_rule: an exact (case-insensitive) name first, then a part. */
static int infer_rule(eval_hook *h, const char *key, md_error *err) {
    for (int i = 0; i < h->n_greater; i++)
        if (!strcasecmp(key, h->greater[i])) return RULE_GREATER;
    for (int i = 0; i < h->n_less; i++)
        if (!strcasecmp(key, h->less[i])) return RULE_LESS;
    for (int i = 0; i < h->n_greater; i++)
        if (has_sub(key, h->greater[i])) return RULE_GREATER;
    for (int i = 0; i < h->n_less; i++)
        if (has_sub(key, h->less[i])) return RULE_LESS;
    md_failc(err, MD_ERR_CONFIG, "EvalHook: cannot infer the rule for key %s; set rule = \"greater\" or \"less\"",
             key);
    return -1;
}

static bool should_evaluate(eval_hook *h, md_runner *r) {
    int64_t current = h->by_epoch ? md_runner_epoch(r) : md_runner_iter(r);
    if (h->start < 0) return (current + 1) % h->interval == 0;
    if (current + 1 < h->start) return false;
    return (current + 1 - h->start) % h->interval == 0;
}

static int save_best(eval_hook *h, md_runner *r, double score, md_error *err) {
    md_ctx *ctx = md_runner_ctx(r);
    if (!isfinite(score)) {
        md_warn(ctx, "EvalHook: %s is %g; no best checkpoint", h->key, score);
        return 0;
    }
    if (score == 0) return 0;   /* mmcv saves the best only for a truthy key score */
    int64_t cur = (h->by_epoch ? md_runner_epoch(r) : md_runner_iter(r)) + 1;
    const char *unit = h->by_epoch ? "epoch" : "iter";
    const char *prev = md_runner_get_msg(r, "best_score");
    double best = prev ? strtod(prev, NULL) : (h->rule == RULE_GREATER ? -INFINITY : INFINITY);
    if (!(h->rule == RULE_GREATER ? score > best : score < best)) return 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%.17g", score);
    if (md_runner_set_msg(r, "best_score", buf) != 0) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    if (h->best_path[0] && access(h->best_path, F_OK) == 0) {
        unlink(h->best_path);
        md_info(ctx, "The previous best checkpoint %s was removed", h->best_path);
    }
    const char *dir = h->out_dir[0] ? h->out_dir : md_runner_work_dir(r);
    char name[256];
    snprintf(name, sizeof name, "best_%s_%s_%lld" MD_CKPT_EXT, h->key, unit, (long long)cur);
    snprintf(h->best_path, sizeof h->best_path, "%s/%s", dir, name);
    if (md_runner_set_msg(r, "best_ckpt", h->best_path) != 0) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    if (md_runner_save_checkpoint(r, dir, name, true, false, err) != 0) return -1;
    md_info(ctx, "Now best checkpoint is saved as %s.", name);
    md_info(ctx, "Best %s is %0.4f at %lld %s.", h->key, score, (long long)cur, unit);
    return 0;
}

/* mmdet's DistEvalHook: BN statistics of ranks that trained apart differ;
 * rank 0's go everywhere (module buffers named running_mean/var). */
static int broadcast_bn(const char *name, md_tensor *t, bool is_param, void *user) {
    md_runner *r = user;
    size_t n = strlen(name);
    if (is_param || !((n >= 12 && !strcmp(name + n - 12, "running_mean")) ||
                      (n >= 11 && !strcmp(name + n - 11, "running_var"))))
        return 0;
    md_error e = { 0 };
    if (md_dist_broadcast(md_runner_ctx(r), t, 0, &e) != 0) {
        md_op_failc(md_runner_ctx(r), e.code, "DistEvalHook", "%s: %s", name, e.msg);
        return -1;
    }
    return 0;
}

static int do_evaluate(eval_hook *h, md_runner *r, md_error *err) {
    md_ctx *ctx = md_runner_ctx(r);
    md_results res;
    if (h->dist) {
        if (h->broadcast_bn && md_module_visit(md_runner_model(r), "", broadcast_bn, r) != 0)
            return md_error_from_ctx(ctx, err, "DistEvalHook");
        if (md_multi_gpu_test(ctx, md_runner_model(r), h->loader, h->ds, h->progress, &res, err) != 0) return -1;
        if (md_dist_rank(ctx) != 0) {   /* rank 0 evaluates, logs and keeps the best */
            md_results_free(&res);
            return 0;
        }
    } else if (md_single_gpu_test(ctx, md_runner_model(r), h->loader, h->ds, h->progress, &res, err) != 0) {
        return -1;
    }
    md_metrics m = { 0 };
    int rc = h->ds->iface->evaluate(h->ds, res.r, res.n, h->metric, &m, err);
    md_results_free(&res);
    if (rc != 0) return -1;
    for (int i = 0; i < m.n; i++) md_runner_log_value(r, m.m[i].name, m.m[i].value, 1);
    if (!h->save_best[0] || !m.n) return 0;
    if (!h->key[0]) {   /* 'auto': the first metric, its rule inferred unless given */
        snprintf(h->key, sizeof h->key, "%s", m.m[0].name);
        if (h->rule == RULE_NONE && (h->rule = infer_rule(h, h->key, err)) < 0) return -1;
    }
    for (int i = 0; i < m.n; i++)
        if (!strcmp(m.m[i].name, h->key)) return save_best(h, r, m.m[i].value, err);
    return md_failc(err, MD_ERR_CONFIG, "EvalHook: save_best key %s is not among the metrics the dataset returned "
                    "(first: %s)", h->key, m.m[0].name);
}

static int before_run(md_hook *hk, md_runner *r, md_error *err) {
    eval_hook *h = (eval_hook *)hk;
    if (!md_model_test_iface(md_runner_model(r)))
        return md_failc(err, MD_ERR_CONFIG, "EvalHook: the model has no simple_test");
    /* a resumed run keeps the previous best checkpoint's path */
    const char *best = md_runner_get_msg(r, "best_ckpt");
    if (h->save_best[0] && best) snprintf(h->best_path, sizeof h->best_path, "%s", best);
    return 0;
}

static int before_train_epoch(md_hook *hk, md_runner *r, md_error *err) {
    eval_hook *h = (eval_hook *)hk;
    if (!h->by_epoch || !h->initial) return 0;
    h->initial = false;
    /* mmcv: with start <= the current epoch, evaluate before training */
    if (h->start >= 0 && md_runner_epoch(r) >= h->start) {
        md_runner_log_clear(r);
        return do_evaluate(h, r, err);
    }
    return 0;
}

static int after_train_epoch(md_hook *hk, md_runner *r, md_error *err) {
    eval_hook *h = (eval_hook *)hk;
    if (!h->by_epoch || !should_evaluate(h, r)) return 0;
    md_runner_log_clear(r);   /* the partial interval the logger discards anyway */
    return do_evaluate(h, r, err);
}

static int before_train_iter(md_hook *hk, md_runner *r, md_error *err) {
    eval_hook *h = (eval_hook *)hk;
    if (h->by_epoch || !h->initial) return 0;
    h->initial = false;
    if (h->start >= 0 && md_runner_iter(r) >= h->start) {
        md_runner_log_clear(r);
        return do_evaluate(h, r, err);
    }
    return 0;
}

static int after_train_iter(md_hook *hk, md_runner *r, md_error *err) {
    eval_hook *h = (eval_hook *)hk;
    if (h->by_epoch || !should_evaluate(h, r)) return 0;
    /* mmcv: the loggers write the training values first, then the buffer
     * is cleared so the metrics form a val line of their own */
    for (int i = 0; i < md_runner_hook_count(r); i++) {
        md_hook *o = md_runner_hook(r, i);
        if (strstr(o->type, "LoggerHook") && o->iface->after_train_iter && o->iface->after_train_iter(o, r, err))
            return -1;
    }
    md_runner_log_clear(r);
    return do_evaluate(h, r, err);
}

static void destroy(md_hook *hk) {
    eval_hook *h = (eval_hook *)hk;
    md_loader_free(h->loader);
    md_dataset_free(h->ds);
    free(h);
}

static const md_hook_iface iface = {
    .before_run = before_run, .before_train_epoch = before_train_epoch, .after_train_epoch = after_train_epoch,
    .before_train_iter = before_train_iter, .after_train_iter = after_train_iter, .destroy = destroy,
    .default_priority = MD_PRIORITY_LOW,
};

/* A string or None (absent) option; -1 when it is something else. */
static int opt_str(const md_cfg *cfg, const char *key, char *out, size_t n, md_error *err) {
    const md_cfg *v = md_cfg_get(cfg, key);
    out[0] = 0;
    if (!v || md_cfg_kind(v) == MD_CFG_NONE) return 0;
    if (md_cfg_kind(v) == MD_CFG_STRING && strlen(md_cfg_as_str(v)) < n) {
        snprintf(out, n, "%s", md_cfg_as_str(v));
        if (!strcmp(out, "None")) out[0] = 0;
        return 0;
    }
    return md_failc(err, MD_ERR_CONFIG, "%s:%d: EvalHook: %s must be a string or None",
                    md_cfg_file(v) ? md_cfg_file(v) : "<config>", md_cfg_line(v), key);
}

/* metric: a name or a list of names (mmdet's ['bbox', 'segm']), passed to
 * the dataset's evaluate joined with commas. */
static int opt_metric(const md_cfg *cfg, char *out, size_t n, md_error *err) {
    const md_cfg *v = md_cfg_get(cfg, "metric");
    if (!v || md_cfg_kind(v) != MD_CFG_LIST) return opt_str(cfg, "metric", out, n, err);
    out[0] = 0;
    for (int i = 0; i < md_cfg_len(v); i++) {
        const char *m = md_cfg_as_str(md_cfg_at(v, i));
        size_t l = strlen(out);
        if (!m || l + strlen(m) + 2 > n)
            return md_failc(err, MD_ERR_CONFIG, "%s:%d: EvalHook: metric must be a string or a list of strings",
                            md_cfg_file(v) ? md_cfg_file(v) : "<config>", md_cfg_line(v));
        snprintf(out + l, n - l, "%s%s", l ? "," : "", m);
    }
    return 0;
}

static int opt_keys(const md_cfg *cfg, const char *key, char out[][32], int *n, const char *const *dflt,
                    int n_dflt, md_error *err) {
    const md_cfg *v = md_cfg_get(cfg, key);
    *n = 0;
    if (!v || md_cfg_kind(v) == MD_CFG_NONE) {
        for (int i = 0; i < n_dflt; i++) snprintf(out[(*n)++], 32, "%s", dflt[i]);
        return 0;
    }
    if (md_cfg_kind(v) == MD_CFG_STRING) {
        snprintf(out[(*n)++], 32, "%s", md_cfg_as_str(v));
        return 0;
    }
    for (int i = 0; i < md_cfg_len(v) && *n < MAX_KEYS; i++) {
        const char *s = md_cfg_as_str(md_cfg_at(v, i));
        if (!s) return md_failc(err, MD_ERR_CONFIG, "EvalHook: %s must list strings", key);
        snprintf(out[(*n)++], 32, "%s", s);
    }
    return 0;
}

static void *build_hook(md_ctx *ctx, const md_cfg *cfg, bool dist, md_error *err) {
    static const char *const greater[] = { "acc", "top", "AR@", "auc", "precision", "mAP", "mDice", "mIoU",
                                           "mAcc", "aAcc" };
    static const char *const less[] = { "loss" };
    eval_hook *h = calloc(1, sizeof *h);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    h->base.iface = &iface;
    h->ctx = ctx;
    h->initial = true;
    h->start = -1;
    h->dist = dist;
    char rule[32];
    if (md_cfg_read_struct(cfg, dist ? dist_keys : keys, h, dist ? "DistEvalHook" : "EvalHook", err)) goto fail;
    const md_cfg *st = h->start_cfg;
    if (st && md_cfg_kind(st) == MD_CFG_INT) {
        h->start = md_cfg_as_int(st);
        if (h->start < 0) {
            md_warn(ctx, "EvalHook: the evaluation start epoch %lld is smaller than 0; use 0 instead",
                    (long long)h->start);
            h->start = 0;
        }
    } else if (st && md_cfg_kind(st) != MD_CFG_NONE && !(md_cfg_as_str(st) && !strcmp(md_cfg_as_str(st), "None"))) {
        md_failc(err, MD_ERR_CONFIG, "EvalHook: start must be an integer or None");
        goto fail;
    }
    if (opt_str(cfg, "save_best", h->save_best, sizeof h->save_best, err) ||
        opt_metric(cfg, h->metric, sizeof h->metric, err) || opt_str(cfg, "rule", rule, sizeof rule, err) ||
        opt_str(cfg, "out_dir", h->out_dir, sizeof h->out_dir, err) ||
        opt_keys(cfg, "greater_keys", h->greater, &h->n_greater, greater, 10, err) ||
        opt_keys(cfg, "less_keys", h->less, &h->n_less, less, 1, err))
        goto fail;
    if (!h->metric[0]) snprintf(h->metric, sizeof h->metric, "bbox");
    if (rule[0] && strcmp(rule, "greater") && strcmp(rule, "less")) {
        md_failc(err, MD_ERR_CONFIG, "EvalHook: rule must be \"greater\", \"less\" or None, but got \"%s\"", rule);
        goto fail;
    }
    h->rule = !rule[0] ? RULE_NONE : !strcmp(rule, "greater") ? RULE_GREATER : RULE_LESS;
    if (h->save_best[0] && strcmp(h->save_best, "auto")) {
        snprintf(h->key, sizeof h->key, "%s", h->save_best);
        if (h->rule == RULE_NONE && (h->rule = infer_rule(h, h->key, err)) < 0) goto fail;
    }
    md_cfg *dflt = md_cfg_new_group();
    if (!dflt) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    md_cfg_set_bool(dflt, "test_mode", true);
    h->ds = md_build_dataset(ctx, md_cfg_get(cfg, "dataset"), dflt, err);
    md_cfg_free(dflt);
    if (!h->ds) goto fail;
    if (!h->ds->iface->evaluate) {
        md_failc(err, MD_ERR_CONFIG, "EvalHook: dataset %s cannot evaluate", h->ds->type);
        goto fail;
    }
    md_loader_cfg lc = MD_LOADER_CFG_DEFAULT;
    lc.samples_per_gpu = h->samples_per_gpu;
    lc.workers_per_gpu = h->workers_per_gpu;
    lc.shuffle = false;
    if (dist) {   /* DistributedSampler(shuffle=False): this rank's shard */
        lc.rank = md_dist_rank(ctx);
        lc.world_size = md_dist_world_size(ctx);
    }
    h->loader = md_loader_new(h->ds, &lc, err);
    if (!h->loader) goto fail;
    return h;
fail:
    destroy(&h->base);
    return NULL;
}

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) { return build_hook(ctx, cfg, false, err); }
static void *build_dist(md_ctx *ctx, const md_cfg *cfg, md_error *err) { return build_hook(ctx, cfg, true, err); }

MD_PLUGIN("eval_hook", "1.0", "Apache-2.0");
static const md_class cls = { .name = "EvalHook", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_HOOK),
                              .doc = "evaluate on the val set every interval; keep the best checkpoint" };
MD_REGISTER("hooks", cls)
static const md_class dist_cls = { .name = "DistEvalHook", .keys = dist_keys, .build = build_dist,
                                   MD_IFACE(&iface, MD_IFACE_HOOK),
                                   .doc = "EvalHook over every rank's shard, results gathered on rank 0" };
MD_REGISTER("hooks", dist_cls)
