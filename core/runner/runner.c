/* mmcv's BaseRunner (hooks, iterations, checkpoints, logging) and the
 * "runners" classes EpochBasedRunner and IterBasedRunner, built in. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include "internal.h"

typedef struct log_entry { char key[48]; double sum, count; } log_entry;
typedef struct msg_entry { char key[64]; char *value; } msg_entry;

struct md_runner {
    md_ctx *ctx;
    md_module *model;
    const md_model_iface *model_iface;
    md_optimizer *opt;
    md_runner_opts o;
    const md_runner_iface *iface;           /* the runner class's */
    char *work_dir, *timestamp, *config_text, *classes_json;
    md_hook **hooks;
    int n_hooks, cap_hooks;
    const char *mode;
    int64_t epoch, iter, inner_iter, epoch_len;
    md_losses losses;
    md_tensor *loss;
    char last_ckpt[4096];
    log_entry *log;
    int n_log, cap_log;
    msg_entry *msgs;
    int n_msgs, cap_msgs;
    volatile sig_atomic_t stop;
    bool finishing_iter, finishing_epoch;   /* inside after_train_iter/epoch hooks */
    int64_t skip_batches;                   /* resuming inside an epoch */
    bool mid_epoch;                         /* stopped inside an epoch */
    char *fp16_meta;                        /* mmcv's meta['fp16'] (Fp16OptimizerHook), JSON */
};

/* ------------------------------------------------------------- losses -- */

MD_API int md_losses_add(md_losses *l, const char *name, md_tensor *value, md_error *err) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->names[i], name)) {
            l->values[i] = value;
            return 0;
        }
    if (l->n == MD_MAX_LOSSES) return md_fail(err, "more than %d named losses", MD_MAX_LOSSES);
    snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
    l->values[l->n++] = value;
    return 0;
}

MD_API md_tensor *md_losses_total(md_ctx *ctx, const md_losses *l) {
    md_tensor *total = NULL;
    for (int i = 0; i < l->n; i++) {
        if (!strstr(l->names[i], "loss")) continue;
        md_tensor *v = l->values[i];
        if (md_tensor_numel(v) != 1) v = md_sum(ctx, v, MD_DIM_ALL, false);
        total = total ? md_add(ctx, total, v) : v;
    }
    if (!total) return md_op_fail(ctx, "parse_losses", "the model returned no value named *loss*");
    return total;
}

/* ------------------------------------------------ "runners": built in -- */

/* mmcv's EpochBasedRunner: each phase runs whole epochs. */
static int epoch_phase(md_runner *r, md_batch_source *src, bool train, int count, md_error *err) {
    for (int k = 0; k < count; k++)
        if (md_runner_run_epoch(r, src, train, err) != 0) return -1;
    return 0;
}

/* mmcv's IterBasedRunner: each phase runs its count of iterations. */
static int iter_phase(md_runner *r, md_batch_source *src, bool train, int count, md_error *err) {
    return md_runner_run_iters(r, src, train, count, err);
}

static const md_runner_iface epoch_iface = { .by_epoch = true, .run_phase = epoch_phase };
static const md_runner_iface iter_iface = { .by_epoch = false, .run_phase = iter_phase };

static const md_key epoch_keys[] = {
    { "max_epochs", MD_KEY_INT, "12", "epochs to train", false, MD_AT(md_runner_spec, max_epochs), .min = "1" },
    { 0 } };
static const md_key iter_keys[] = {
    { "max_iters", MD_KEY_INT, NULL, "iterations to train", true, MD_AT(md_runner_spec, max_iters), .min = "1" },
    { 0 } };

MD_API md_runner_spec *md_runner_spec_new(const md_runner_iface *iface, const md_cfg *cfg, const md_key *keys,
                                          md_error *err) {
    md_runner_spec *s = calloc(1, sizeof *s);
    if (!s) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->iface = iface;
    if (md_cfg_read_struct(cfg, keys, s, md_cfg_str(cfg, "type", "runner"), err)) {
        free(s);
        return NULL;
    }
    return s;
}

static void *epoch_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    return md_runner_spec_new(&epoch_iface, cfg, epoch_keys, err);
}
static void *iter_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    return md_runner_spec_new(&iter_iface, cfg, iter_keys, err);
}

static const md_class epoch_cls = { .name = "EpochBasedRunner", .keys = epoch_keys, .build = epoch_build,
                                    MD_IFACE(&epoch_iface, MD_IFACE_RUNNER),
                                    .doc = "mmcv's: the workflow in epochs, max_epochs" };
static const md_class iter_cls = { .name = "IterBasedRunner", .keys = iter_keys, .build = iter_build,
                                   MD_IFACE(&iter_iface, MD_IFACE_RUNNER),
                                   .doc = "mmcv's: the workflow in iterations, max_iters" };
MD_REGISTER("runners", epoch_cls)
MD_REGISTER("runners", iter_cls)

/* ------------------------------------------------------------ creation -- */

MD_API md_runner *md_runner_new(md_ctx *ctx, md_module *model, md_optimizer *opt, const md_runner_opts *o,
                                md_error *err) {
    md_runner *r = calloc(1, sizeof *r);
    if (!r) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    r->ctx = ctx;
    r->model = model;
    r->opt = opt;
    r->o = *o;
    r->iface = o->iface ? o->iface : o->by_epoch ? &epoch_iface : &iter_iface;
    r->o.by_epoch = r->iface->by_epoch;
    r->work_dir = strdup(o->work_dir ? o->work_dir : ".");
    char ts[32];
    if (!o->timestamp) {
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(ts, sizeof ts, "%Y%m%d_%H%M%S", &tm);
    }
    r->timestamp = strdup(o->timestamp ? o->timestamp : ts);
    r->config_text = o->config_text ? strdup(o->config_text) : NULL;
    r->classes_json = o->classes_json ? strdup(o->classes_json) : NULL;
    r->mode = "train";
    if (!r->work_dir || !r->timestamp) {
        md_runner_free(r);
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (r->o.by_epoch ? o->max_epochs <= 0 : o->max_iters <= 0) {
        bool by_epoch = r->o.by_epoch;
        md_runner_free(r);
        md_failc(err, MD_ERR_CONFIG, "runner: %s must be positive", by_epoch ? "max_epochs" : "max_iters");
        return NULL;
    }
    return r;
}

MD_API md_runner *md_runner_build(md_ctx *ctx, const md_cfg *cfg, md_module *model, md_optimizer *opt,
                                  const md_runner_opts *o, md_error *err) {
    /* mmdet: no runner, or one without a type, is an EpochBasedRunner */
    md_cfg *dflt = md_cfg_new_group(), *empty = md_cfg_is_none(cfg) ? md_cfg_new_group() : NULL;
    md_runner_spec *spec = NULL;
    if (!dflt || !md_cfg_set_str(dflt, "type", "EpochBasedRunner") || (md_cfg_is_none(cfg) && !empty))
        md_failc(err, MD_ERR_NOMEM, "out of memory");
    else
        spec = md_build_from_cfg(ctx, "runners", empty ? empty : cfg, dflt, err);
    md_cfg_free(dflt);
    md_cfg_free(empty);
    if (!spec) return NULL;
    md_runner_opts ro = *o;
    ro.iface = spec->iface;
    ro.by_epoch = spec->iface->by_epoch;
    ro.max_epochs = spec->max_epochs;
    ro.max_iters = spec->max_iters;
    free(spec);
    return md_runner_new(ctx, model, opt, &ro, err);
}

MD_API void md_runner_free(md_runner *r) {
    if (!r) return;
    for (int i = 0; i < r->n_hooks; i++) {
        md_hook *h = r->hooks[i];
        if (h->iface && h->iface->destroy) h->iface->destroy(h);
        else free(h);
    }
    for (int i = 0; i < r->n_msgs; i++) free(r->msgs[i].value);
    free(r->msgs);
    free(r->hooks);
    free(r->log);
    free(r->work_dir);
    free(r->timestamp);
    free(r->config_text);
    free(r->classes_json);
    free(r->fp16_meta);
    free(r);
}

/* --------------------------------------------------------------- hooks -- */

MD_API int md_priority_parse(const char *name) {
    static const struct { const char *n; int v; } names[] = {
        { "HIGHEST", 0 }, { "VERY_HIGH", 10 }, { "HIGH", 30 }, { "ABOVE_NORMAL", 40 }, { "NORMAL", 50 },
        { "BELOW_NORMAL", 60 }, { "LOW", 70 }, { "VERY_LOW", 90 }, { "LOWEST", 100 } };
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(name, names[i].n)) return names[i].v;
    return -1;
}

MD_API int md_runner_register_hook(md_runner *r, md_hook *h, md_error *err) {
    if (!h) return md_fail(err, "register_hook: no hook");
    if (r->n_hooks == r->cap_hooks) {
        int cap = r->cap_hooks ? r->cap_hooks * 2 : 16;
        md_hook **hs = realloc(r->hooks, sizeof *hs * (size_t)cap);
        if (!hs) return md_failc(err, MD_ERR_NOMEM, "out of memory");
        r->hooks = hs;
        r->cap_hooks = cap;
    }
    /* after every hook of lower or equal priority: mmcv's insertion rule */
    int pos = r->n_hooks;
    while (pos > 0 && r->hooks[pos - 1]->priority > h->priority) pos--;
    memmove(r->hooks + pos + 1, r->hooks + pos, sizeof *r->hooks * (size_t)(r->n_hooks - pos));
    r->hooks[pos] = h;
    r->n_hooks++;
    return 0;
}

MD_API int md_runner_register_hook_cfg(md_runner *r, const md_cfg *cfg, int default_priority, md_error *err) {
    md_cfg *c = md_cfg_clone(cfg);
    if (!c) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    int priority = default_priority;
    const md_cfg *p = md_cfg_get(c, "priority");
    if (p) {
        if (md_cfg_kind(p) == MD_CFG_INT) priority = (int)md_cfg_as_int(p);
        else if (md_cfg_kind(p) == MD_CFG_STRING) priority = md_priority_parse(md_cfg_as_str(p));
        else priority = -1;
        if (priority < 0 || priority > 100) {
            md_cfg_free(c);
            return md_failc(err, MD_ERR_CONFIG, "%s:%d: priority must be 0..100 or a name such as VERY_LOW",
                            md_cfg_file(p) ? md_cfg_file(p) : "<config>", md_cfg_line(p));
        }
        md_cfg_remove(c, "priority");
    }
    md_hook *h = md_build_from_cfg(r->ctx, "hooks", c, NULL, err);
    const char *type = md_cfg_str(c, "type", "?");
    if (h) {
        /* a hook may name itself more precisely (LrUpdaterHook: StepLrUpdaterHook) */
        if (!h->type[0]) snprintf(h->type, sizeof h->type, "%s", type);
        if (priority < 0) priority = h->iface && h->iface->default_priority ? h->iface->default_priority
                                                                           : MD_PRIORITY_NORMAL;
        h->priority = priority;
    }
    md_cfg_free(c);
    if (!h) return -1;
    return md_runner_register_hook(r, h, err);
}

/* mmcv's IterBasedRunner.register_training_hooks: the lr, checkpoint and
 * logger hooks count iterations unless their config says by_epoch. */
static void iter_default(const md_runner *r, md_cfg *c) {
    if (!r->o.by_epoch && !md_cfg_has(c, "by_epoch")) md_cfg_set_bool(c, "by_epoch", false);
}

static int register_typed(md_runner *r, const md_cfg *cfg, const char *type, bool by_iter, int priority,
                          md_error *err) {
    md_cfg *c = cfg ? md_cfg_clone(cfg) : md_cfg_new_group();
    if (!c) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    if (type) md_cfg_set_str(c, "type", type);
    if (by_iter) iter_default(r, c);
    int rc = md_runner_register_hook_cfg(r, c, priority, err);
    md_cfg_free(c);
    return rc;
}

MD_API int md_runner_register_training_hooks(md_runner *r, const md_cfg *lr_config, const md_cfg *optimizer_config,
                                             const md_cfg *checkpoint_config, const md_cfg *log_config,
                                             const md_cfg *momentum_config, const md_cfg *custom_hooks,
                                             md_error *err) {
    /* mmcv's register_lr_hook: the policy, resolved in "lr_policies", drives
     * one LrUpdaterHook (named after it: policy "step" -> StepLrUpdaterHook) */
    if (lr_config && md_cfg_kind(lr_config) == MD_CFG_GROUP &&
        register_typed(r, lr_config, "LrUpdaterHook", true, MD_PRIORITY_VERY_HIGH, err) != 0)
        return -1;
    if (momentum_config && md_cfg_kind(momentum_config) == MD_CFG_GROUP) {
        /* as for lr_config: "cyclic" -> CyclicMomentumUpdaterHook */
        char type[96];
        snprintf(type, sizeof type, "%s", md_cfg_str(momentum_config, "policy", "Fixed"));
        bool lower = true;
        for (char *p = type; *p; p++)
            if (*p >= 'A' && *p <= 'Z') lower = false;
        if (lower && type[0]) type[0] = (char)(type[0] - 'a' + 'A');
        strncat(type, "MomentumUpdaterHook", sizeof type - strlen(type) - 1);
        if (register_typed(r, momentum_config, type, false, MD_PRIORITY_HIGH, err) != 0) return -1;
    }
    if (optimizer_config && md_cfg_kind(optimizer_config) == MD_CFG_GROUP) {
        const char *t = md_cfg_str(optimizer_config, "type", "OptimizerHook");
        if (register_typed(r, optimizer_config, t, false, MD_PRIORITY_ABOVE_NORMAL, err) != 0) return -1;
    }
    if (checkpoint_config && md_cfg_kind(checkpoint_config) == MD_CFG_GROUP) {
        const char *t = md_cfg_str(checkpoint_config, "type", "CheckpointHook");
        if (register_typed(r, checkpoint_config, t, true, MD_PRIORITY_NORMAL, err) != 0) return -1;
    }
    if (register_typed(r, NULL, "IterTimerHook", false, MD_PRIORITY_LOW, err) != 0) return -1;
    const md_cfg *loggers = log_config ? md_cfg_get(log_config, "hooks") : NULL;
    for (int i = 0; loggers && i < md_cfg_len(loggers); i++) {
        md_cfg *c = md_cfg_clone(md_cfg_at(loggers, i));
        if (!md_cfg_has(c, "interval")) md_cfg_set_int(c, "interval", md_cfg_int(log_config, "interval", 50));
        iter_default(r, c);
        int rc = md_runner_register_hook_cfg(r, c, MD_PRIORITY_VERY_LOW, err);
        md_cfg_free(c);
        if (rc != 0) return -1;
    }
    for (int i = 0; custom_hooks && i < md_cfg_len(custom_hooks); i++)
        if (md_runner_register_hook_cfg(r, md_cfg_at(custom_hooks, i), MD_PRIORITY_NORMAL, err) != 0) return -1;
    return 0;
}

MD_API int md_runner_hook_count(const md_runner *r) { return r->n_hooks; }
MD_API md_hook *md_runner_hook(const md_runner *r, int i) { return r->hooks[i]; }
MD_API md_hook *md_runner_last_logger(const md_runner *r) {
    for (int i = r->n_hooks - 1; i >= 0; i--)
        if (strstr(r->hooks[i]->type, "LoggerHook")) return r->hooks[i];
    return NULL;
}

enum { P_BEFORE_RUN, P_AFTER_RUN, P_BEFORE_TRAIN_EPOCH, P_AFTER_TRAIN_EPOCH, P_BEFORE_VAL_EPOCH,
       P_AFTER_VAL_EPOCH, P_BEFORE_TRAIN_ITER, P_AFTER_TRAIN_ITER, P_BEFORE_VAL_ITER, P_AFTER_VAL_ITER };
static const char *point_names[] = { "before_run", "after_run", "before_train_epoch", "after_train_epoch",
                                     "before_val_epoch", "after_val_epoch", "before_train_iter",
                                     "after_train_iter", "before_val_iter", "after_val_iter" };

static int call_hooks(md_runner *r, int point, md_error *err) {
    /* A checkpoint saved by an after_train_* hook records the state as of
     * the end of that iteration or epoch (mmcv's epoch + 1 / iter + 1). */
    r->finishing_iter = point == P_AFTER_TRAIN_ITER;
    r->finishing_epoch = point == P_AFTER_TRAIN_EPOCH;
    int rc = 0;
    for (int i = 0; i < r->n_hooks && rc == 0; i++) {
        md_hook *h = r->hooks[i];
        md_hook_fn fns[] = { h->iface->before_run, h->iface->after_run, h->iface->before_train_epoch,
                             h->iface->after_train_epoch, h->iface->before_val_epoch, h->iface->after_val_epoch,
                             h->iface->before_train_iter, h->iface->after_train_iter, h->iface->before_val_iter,
                             h->iface->after_val_iter };
        if (!fns[point]) continue;
        if (fns[point](h, r, err) != 0) {
            if (!err || !err->code) md_fail(err, "failed");
            rc = md_error_wrap(err, "%s.%s", h->type, point_names[point]);
        }
    }
    r->finishing_iter = r->finishing_epoch = false;
    return rc;
}

/* ----------------------------------------------------------------- run -- */

static int run_iter(md_runner *r, md_batch_source *src, void *batch, bool train, md_error *err) {
    int point_before = train ? P_BEFORE_TRAIN_ITER : P_BEFORE_VAL_ITER;
    int point_after = train ? P_AFTER_TRAIN_ITER : P_AFTER_VAL_ITER;
    memset(&r->losses, 0, sizeof r->losses);
    r->loss = NULL;
    int rc = call_hooks(r, point_before, err);
    bool prev = md_grad_set_enabled(r->ctx, train);
    if (rc == 0) {
        rc = r->model_iface->train_step(r->ctx, r->model, batch, &r->losses, err);
        if (rc == 0) {
            r->loss = md_losses_total(r->ctx, &r->losses);
            if (!r->loss) rc = md_failc(err, MD_ERR_SHAPE, "%s", md_ctx_error(r->ctx)->msg);
        } else if (err && !err->code && md_ctx_failed(r->ctx)) {
            *err = *md_ctx_error(r->ctx);
        }
        if (rc == 0) {
            /* log the named values (mmdet's log_vars), averaged over the
             * ranks as mmdet's _parse_losses; the count goes along so that
             * a rank with other names fails here instead of hanging */
            int64_t bs = src->batch_size ? src->batch_size(src->self) : 1;
            double v[MD_MAX_LOSSES + 2];
            for (int i = 0; i < r->losses.n; i++) v[i] = md_tensor_item(r->losses.values[i]);
            v[r->losses.n] = md_tensor_item(r->loss);
            v[r->losses.n + 1] = r->losses.n;
            int W = md_dist_world_size(r->ctx);
            if (W > 1) {
                double n_mine = r->losses.n;
                if (md_dist_all_reduce_f64(r->ctx, v, r->losses.n + 2, MD_DIST_MEAN, err) != 0)
                    rc = md_error_wrap(err, "averaging the losses over the ranks");
                else if (v[r->losses.n + 1] != n_mine)
                    rc = md_failc(err, MD_ERR_DIST, "rank %d: loss log variables differ in number between ranks "
                                  "(%g here, %g on average)", md_dist_rank(r->ctx), n_mine, v[r->losses.n + 1]);
            }
            for (int i = 0; rc == 0 && i < r->losses.n; i++)
                md_runner_log_value(r, r->losses.names[i], v[i], (double)bs);
            if (rc == 0) md_runner_log_value(r, "loss", v[r->losses.n], (double)bs);
        }
    }
    md_grad_set_enabled(r->ctx, prev);
    if (rc == 0) rc = call_hooks(r, point_after, err);
    if (src->release) src->release(src->self, batch);
    return rc;
}

MD_API int md_runner_run_epoch(md_runner *r, md_batch_source *src, bool train, md_error *err) {
    r->mode = train ? "train" : "val";
    md_module_train(r->model, train);
    r->epoch_len = src->len(src->self);
    if (src->begin_epoch && src->begin_epoch(src->self, r->epoch, err) != 0) return -1;
    if (call_hooks(r, train ? P_BEFORE_TRAIN_EPOCH : P_BEFORE_VAL_EPOCH, err) != 0) return -1;
    r->inner_iter = 0;
    /* A checkpoint written inside an epoch resumes at the next batch of the
     * same (seeded) epoch order. */
    for (; train && r->skip_batches > 0; r->skip_batches--, r->inner_iter++) {
        void *batch = src->next(src->self, err);
        if (!batch) return md_error_wrap(err, "skipping to batch %lld of epoch %lld", (long long)r->inner_iter + 1,
                                         (long long)r->epoch + 1);
        if (src->release) src->release(src->self, batch);
    }
    for (;; r->inner_iter++) {
        md_ctx_step_reset(r->ctx);
        md_error_clear(err);
        void *batch = src->next(src->self, err);
        if (!batch) {
            if (err && err->code) return md_error_wrap(err, "loading batch %lld of epoch %lld",
                                                       (long long)r->inner_iter + 1, (long long)r->epoch + 1);
            break;
        }
        if (run_iter(r, src, batch, train, err) != 0)
            return md_error_wrap(err, "%s iteration %lld (epoch %lld)", r->mode, (long long)r->iter + 1,
                                 (long long)r->epoch + 1);
        if (train) r->iter++;
        if (r->stop) {
            r->mid_epoch = train && r->inner_iter + 1 < r->epoch_len;
            r->inner_iter++;
            return md_failc(err, MD_ERR_INTERRUPTED, "stop requested");
        }
    }
    md_ctx_step_reset(r->ctx);
    if (call_hooks(r, train ? P_AFTER_TRAIN_EPOCH : P_AFTER_VAL_EPOCH, err) != 0) return -1;
    if (train) r->epoch++;
    return 0;
}

/* Iteration-based: one phase runs `count` iterations, restarting its
 * source (a new epoch) whenever it runs dry, as mmcv's IterLoader. */
MD_API int md_runner_run_iters(md_runner *r, md_batch_source *src, bool train, int count, md_error *err) {
    r->mode = train ? "train" : "val";
    md_module_train(r->model, train);
    r->epoch_len = src->len(src->self);
    if (call_hooks(r, train ? P_BEFORE_TRAIN_EPOCH : P_BEFORE_VAL_EPOCH, err) != 0) return -1;
    for (int k = 0; k < count && (!train || r->iter < r->o.max_iters); k++) {
        md_ctx_step_reset(r->ctx);
        md_error_clear(err);
        void *batch = src->next(src->self, err);
        if (!batch && !(err && err->code)) {
            if (train) r->epoch++;
            if (src->begin_epoch && src->begin_epoch(src->self, r->epoch, err) != 0) return -1;
            batch = src->next(src->self, err);
            if (!batch && !(err && err->code)) return md_fail(err, "the data source yields no batch");
        }
        if (!batch) return md_error_wrap(err, "loading a batch");
        r->inner_iter = r->iter;
        if (run_iter(r, src, batch, train, err) != 0)
            return md_error_wrap(err, "%s iteration %lld", r->mode, (long long)r->iter + 1);
        if (train) r->iter++;
        if (r->stop) return md_failc(err, MD_ERR_INTERRUPTED, "stop requested");
    }
    md_ctx_step_reset(r->ctx);
    return call_hooks(r, train ? P_AFTER_TRAIN_EPOCH : P_AFTER_VAL_EPOCH, err);
}

/* After a stop request: the state after the last finished iteration, as
 * iter_N linked as latest, so --auto-resume continues exactly there. */
static int save_on_stop(md_runner *r, md_error *err) {
    md_error e2 = { 0 };
    char name[64];
    snprintf(name, sizeof name, "iter_%lld" MD_CKPT_EXT, (long long)r->iter);
    if (md_runner_save_checkpoint(r, r->work_dir, name, true, true, &e2) != 0)
        return md_failc(err, MD_ERR_INTERRUPTED, "interrupted at iteration %lld; saving a checkpoint failed: %s",
                        (long long)r->iter, e2.msg);
    return md_failc(err, MD_ERR_INTERRUPTED, "interrupted at iteration %lld (epoch %lld); state saved to %s",
                    (long long)r->iter, (long long)r->epoch + 1, r->last_ckpt);
}

MD_API int md_runner_run(md_runner *r, md_batch_source *const *sources, const char *const *modes, const int *counts,
                         int n_phases, md_error *err) {
    /* A trainable model's module class carries its md_model_iface. */
    if (!r->model_iface) r->model_iface = r->model->cls ? (const md_model_iface *)r->model->cls->iface : NULL;
    if (!r->model_iface || !r->model_iface->train_step)
        return md_fail(err, "runner: model %s has no train_step", r->model->cls ? r->model->cls->name : "?");
    int64_t train_len = -1;
    for (int i = 0; i < n_phases; i++) {
        if (strcmp(modes[i], "train") && strcmp(modes[i], "val"))
            return md_failc(err, MD_ERR_CONFIG, "workflow: mode '%s' is neither train nor val", modes[i]);
        if (!strcmp(modes[i], "train") && train_len < 0) train_len = sources[i]->len(sources[i]->self);
    }
    if (r->o.by_epoch && train_len >= 0) r->o.max_iters = r->o.max_epochs * train_len;
    if (!r->o.by_epoch && train_len > 0) r->o.max_epochs = (r->o.max_iters + train_len - 1) / train_len;
    md_fs_mkdirs(r->work_dir, NULL);
    int rc = call_hooks(r, P_BEFORE_RUN, err);
    if (!r->o.by_epoch && rc == 0)
        for (int i = 0; i < n_phases && rc == 0; i++)
            if (sources[i]->begin_epoch) rc = sources[i]->begin_epoch(sources[i]->self, r->epoch, err);
    while (rc == 0 && (r->o.by_epoch ? r->epoch < r->o.max_epochs : r->iter < r->o.max_iters)) {
        for (int i = 0; i < n_phases && rc == 0; i++) {
            bool train = !strcmp(modes[i], "train");
            if (train && (r->o.by_epoch ? r->epoch >= r->o.max_epochs : r->iter >= r->o.max_iters)) break;
            rc = r->iface->run_phase(r, sources[i], train, counts[i], err);
        }
    }
    if (rc != 0 && err && err->code == MD_ERR_INTERRUPTED) return save_on_stop(r, err);
    if (rc == 0) rc = call_hooks(r, P_AFTER_RUN, err);
    return rc;
}

MD_API void md_runner_request_stop(md_runner *r) { r->stop = 1; }

/* --------------------------------------------------------- checkpoints -- */

static char *hook_msgs_json(const md_runner *r) {
    size_t cap = 64;
    for (int i = 0; i < r->n_msgs; i++) cap += strlen(r->msgs[i].key) + strlen(r->msgs[i].value) * 2 + 8;
    char *s = malloc(cap), *p = s;
    if (!s) return NULL;
    p += sprintf(p, "{");
    for (int i = 0; i < r->n_msgs; i++) {
        p += sprintf(p, "%s\"%s\": \"", i ? ", " : "", r->msgs[i].key);
        for (const char *c = r->msgs[i].value; *c; c++) {
            if (*c == '"' || *c == '\\') *p++ = '\\';
            *p++ = *c;
        }
        *p++ = '"';
    }
    sprintf(p, "}");
    return s;
}

/* Reads back the flat {"k": "v", ...} object hook_msgs_json writes. */
static void parse_hook_msgs(md_runner *r, const char *s) {
    while (s && (s = strchr(s, '"'))) {
        char key[64] = "", val[4096] = "";
        size_t k = 0;
        for (s++; *s && *s != '"' && k < sizeof key - 1; s++) key[k++] = *s;
        s = strchr(s + 1, '"');
        if (!s) return;
        k = 0;
        for (s++; *s && *s != '"' && k < sizeof val - 1; s++) {
            if (*s == '\\' && s[1]) s++;
            val[k++] = *s;
        }
        if (*s) s++;
        md_runner_set_msg(r, key, val);
    }
}

MD_API int md_runner_save_checkpoint(md_runner *r, const char *dir, const char *name, bool save_optimizer,
                                     bool link_latest, md_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (md_dist_rank(r->ctx) != 0) {   /* mmcv's master_only: one writer */
        snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", path);
        return 0;
    }
    md_fs_mkdirs(dir, NULL);
    char *msgs = hook_msgs_json(r), *plugins = md_plugin_set_text(r->ctx);
    md_ckpt_meta meta = { .plugins = plugins, .epoch = r->epoch + (r->finishing_epoch && r->o.by_epoch),
                          .iter = r->iter + r->finishing_iter,
                          .inner_iter = r->o.by_epoch && r->mid_epoch ? r->inner_iter : 0, .config = r->config_text,
                          .classes = r->classes_json, .hook_msgs = msgs, .fp16 = r->fp16_meta };
    int rc = md_checkpoint_save(path, r->model, save_optimizer ? r->opt : NULL, &meta, err);
    free(msgs);
    free(plugins);
    if (rc != 0) return -1;
    snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", path);
    if (link_latest && md_checkpoint_link_latest(dir, name, err) != 0) return -1;
    return 0;
}

MD_API int md_runner_resume(md_runner *r, const char *path, md_error *err) {
    md_ckpt_info info;
    if (md_checkpoint_load(r->ctx, path, r->model, r->opt, &info, err) != 0) return -1;
    r->epoch = info.epoch;
    r->iter = info.iter;
    r->skip_batches = r->o.by_epoch ? info.inner_iter : 0;
    parse_hook_msgs(r, info.hook_msgs);
    if (info.fp16[0] && md_runner_set_meta_fp16(r, info.fp16) != 0) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    /* the file itself, not the `latest` link that may point at it (a later
     * save moves the link) */
    char real[4096];
    snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", realpath(path, real) ? real : path);
    md_log_write(r->ctx, MD_LOG_INFO, "resumed epoch %lld, iter %lld from %s", (long long)r->epoch,
                 (long long)r->iter, path);
    return 0;
}

MD_API int md_runner_load_checkpoint(md_runner *r, const char *path, md_error *err) {
    md_ckpt_info info;
    if (md_checkpoint_load(r->ctx, path, r->model, NULL, &info, err) != 0) return -1;
    md_log_write(r->ctx, MD_LOG_INFO, "load checkpoint from %s", path);
    if (md_load_report_any(&info.report)) md_checkpoint_warn_report(r->ctx, path, &info.report);
    return 0;
}

/* ------------------------------------------------------------ accessors -- */

MD_API md_ctx *md_runner_ctx(md_runner *r) { return r->ctx; }
MD_API md_module *md_runner_model(md_runner *r) { return r->model; }
MD_API md_optimizer *md_runner_optimizer(md_runner *r) { return r->opt; }
MD_API const char *md_runner_work_dir(const md_runner *r) { return r->work_dir; }
MD_API const char *md_runner_timestamp(const md_runner *r) { return r->timestamp; }
MD_API const char *md_runner_mode(const md_runner *r) { return r->mode; }
MD_API int64_t md_runner_epoch(const md_runner *r) { return r->epoch; }
MD_API int64_t md_runner_iter(const md_runner *r) { return r->iter; }
MD_API int64_t md_runner_inner_iter(const md_runner *r) { return r->inner_iter; }
MD_API int64_t md_runner_max_epochs(const md_runner *r) { return r->o.max_epochs; }
MD_API int64_t md_runner_max_iters(const md_runner *r) { return r->o.max_iters; }
MD_API int64_t md_runner_epoch_len(const md_runner *r) { return r->epoch_len; }
MD_API bool md_runner_by_epoch(const md_runner *r) { return r->o.by_epoch; }
MD_API const md_losses *md_runner_losses(const md_runner *r) { return &r->losses; }
MD_API md_tensor *md_runner_loss(const md_runner *r) { return r->loss; }
MD_API const char *md_runner_last_checkpoint(const md_runner *r) { return r->last_ckpt[0] ? r->last_ckpt : NULL; }
MD_API uint64_t md_runner_seed(const md_runner *r) { return r->o.seed; }
MD_API const char *md_runner_config_text(const md_runner *r) { return r->config_text; }
MD_API const char *md_runner_classes(const md_runner *r) { return r->classes_json; }

MD_API void md_runner_log_value(md_runner *r, const char *key, double value, double count) {
    for (int i = 0; i < r->n_log; i++)
        if (!strcmp(r->log[i].key, key)) {
            r->log[i].sum += value * count;
            r->log[i].count += count;
            return;
        }
    if (r->n_log == r->cap_log) {
        int cap = r->cap_log ? r->cap_log * 2 : 16;
        log_entry *l = realloc(r->log, sizeof *l * (size_t)cap);
        if (!l) return;
        r->log = l;
        r->cap_log = cap;
    }
    log_entry *e = &r->log[r->n_log++];
    snprintf(e->key, sizeof e->key, "%s", key);
    e->sum = value * count;
    e->count = count;
}

MD_API int md_runner_log_count(const md_runner *r) { return r->n_log; }
MD_API const char *md_runner_log_key(const md_runner *r, int i) { return r->log[i].key; }

MD_API double md_runner_log_average(const md_runner *r, const char *key) {
    for (int i = 0; i < r->n_log; i++)
        if (!strcmp(r->log[i].key, key)) return r->log[i].count > 0 ? r->log[i].sum / r->log[i].count : NAN;
    return NAN;
}

MD_API void md_runner_log_clear(md_runner *r) { r->n_log = 0; }

MD_API int md_runner_set_msg(md_runner *r, const char *key, const char *value) {
    for (int i = 0; i < r->n_msgs; i++)
        if (!strcmp(r->msgs[i].key, key)) {
            char *v = strdup(value);
            if (!v) return -1;
            free(r->msgs[i].value);
            r->msgs[i].value = v;
            return 0;
        }
    if (r->n_msgs == r->cap_msgs) {
        int cap = r->cap_msgs ? r->cap_msgs * 2 : 8;
        msg_entry *m = realloc(r->msgs, sizeof *m * (size_t)cap);
        if (!m) return -1;
        r->msgs = m;
        r->cap_msgs = cap;
    }
    msg_entry *m = &r->msgs[r->n_msgs];
    snprintf(m->key, sizeof m->key, "%s", key);
    m->value = strdup(value);
    if (!m->value) return -1;
    r->n_msgs++;
    return 0;
}

MD_API int md_runner_set_meta_fp16(md_runner *r, const char *json) {
    char *v = json ? strdup(json) : NULL;
    if (json && !v) return -1;
    free(r->fp16_meta);
    r->fp16_meta = v;
    return 0;
}

MD_API const char *md_runner_meta_fp16(const md_runner *r) { return r->fp16_meta; }

MD_API const char *md_runner_get_msg(const md_runner *r, const char *key) {
    for (int i = 0; i < r->n_msgs; i++)
        if (!strcmp(r->msgs[i].key, key)) return r->msgs[i].value;
    return NULL;
}
