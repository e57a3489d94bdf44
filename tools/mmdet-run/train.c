/* run_training: mmdet's train_detector — build the model, datasets,
 * loaders and optimizer from the config, register the hooks, resume or
 * load weights, and run the workflow. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <mmdet/data.h>
#include <mmdet/evaluation.h>
#include "mmdet_run.h"

/* The runner to stop on SIGINT/SIGTERM (the command runs one at a time). */
static md_runner *volatile running;

static void on_signal(int sig) {
    (void)sig;
    if (running) md_runner_request_stop(running);
}

/* ---- the loader as the runner's batch source ---- */
typedef struct loader_source { md_loader *loader; int samples_per_gpu; } loader_source;

static int64_t src_len(void *s) { return md_loader_len(((loader_source *)s)->loader); }
static int src_begin(void *s, int64_t epoch, md_error *err) {
    return md_loader_start_epoch(((loader_source *)s)->loader, (int)epoch, err);
}
static void *src_next(void *s, md_error *err) { return md_loader_next(((loader_source *)s)->loader, err); }
static void src_release(void *s, void *batch) {
    (void)s;
    md_batch_free(batch);
}
static int64_t src_batch_size(void *s) { return ((loader_source *)s)->samples_per_gpu; }

/* CLASSES as a JSON list, for checkpoint metadata. */
static char *classes_json(const md_dataset *ds) {
    size_t cap = 4;
    for (int i = 0; i < ds->n_classes; i++) cap += strlen(ds->classes[i]) * 2 + 4;
    char *s = malloc(cap), *p = s;
    if (!s) return NULL;
    *p++ = '[';
    for (int i = 0; i < ds->n_classes; i++) {
        if (i) *p++ = ',';
        *p++ = '"';
        for (const char *c = ds->classes[i]; *c; c++) {
            if (*c == '"' || *c == '\\') *p++ = '\\';
            *p++ = *c;
        }
        *p++ = '"';
    }
    *p++ = ']';
    *p = 0;
    return s;
}

/* mmdet's train_detector: unless --no-validate, an EvalHook (the
 * `evaluation` dict, priority LOW) over data.val built with test_mode;
 * data.val's samples_per_gpu (default 1) and data.workers_per_gpu go to
 * the hook's loader. Skipped, with a log line, for a model without
 * simple_test or a config without data.val. */
static int register_eval_hook(md_ctx *ctx, const md_cfg *cfg, md_runner *runner, md_module *model, bool by_epoch,
                              int workers, md_error *err) {
    if (!md_cfg_bool(cfg, "validate", true)) return 0;
    const md_cfg *val = md_cfg_get(cfg, "data.val");
    if (!md_model_test_iface(model)) {
        md_info(ctx, "model %s has no simple_test: no evaluation during training",
                model->cls ? model->cls->name : "?");
        return 0;
    }
    if (md_cfg_is_none(val)) {
        md_info(ctx, "the config has no data.val: no evaluation during training");
        return 0;
    }
    const md_cfg *ev = md_cfg_get(cfg, "evaluation");
    md_cfg *ec = !md_cfg_is_none(ev) ? md_cfg_clone(ev) : md_cfg_new_group();
    md_cfg *ds = md_cfg_clone(val);
    if (!ec || !ds) {
        md_cfg_free(ec);
        md_cfg_free(ds);
        return md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    /* mmdet: DistEvalHook in a distributed run */
    if (!md_cfg_has(ec, "type")) md_cfg_set_str(ec, "type", md_dist_world_size(ctx) > 1 ? "DistEvalHook" : "EvalHook");
    md_cfg_set_bool(ec, "by_epoch", by_epoch);
    if (!md_cfg_has(ec, "samples_per_gpu")) md_cfg_set_int(ec, "samples_per_gpu", md_cfg_int(ds, "samples_per_gpu", 1));
    if (!md_cfg_has(ec, "workers_per_gpu")) md_cfg_set_int(ec, "workers_per_gpu", workers);
    md_cfg_remove(ds, "samples_per_gpu");
    md_cfg_set_copy(ec, "dataset", ds);
    md_cfg_free(ds);
    int rc = md_runner_register_hook_cfg(runner, ec, MD_PRIORITY_LOW, err);
    md_cfg_free(ec);
    return rc;
}

/* The groups of the top level that the training command reads itself:
 * their keys are checked like a component's (a typo names the file, line
 * and the closest key), since nothing else would notice them. */
static const md_key data_keys[] = {
    { "samples_per_gpu", MD_KEY_INT, "2", "images per batch", false, .min = "1", .field = MD_FIELD_NONE },
    { "workers_per_gpu", MD_KEY_INT, "2", "loader threads", false, .min = "0", .field = MD_FIELD_NONE },
    { "persistent_workers", MD_KEY_BOOL, "false", "accepted: the loader's threads live as long as it does", false,
      .field = MD_FIELD_NONE },
    { "train", MD_KEY_ANY, NULL, "the training dataset", false, .field = MD_FIELD_NONE },
    { "val", MD_KEY_ANY, NULL, "the validation dataset", false, .field = MD_FIELD_NONE },
    { "test", MD_KEY_ANY, NULL, "the test dataset", false, .field = MD_FIELD_NONE },
    { 0 } };
static const md_key log_config_keys[] = {
    { "interval", MD_KEY_INT, "50", "the logger hooks' default interval", false, .min = "1", .field = MD_FIELD_NONE },
    { "hooks", MD_KEY_LIST, NULL, "logger hooks (TextLoggerHook, ...)", false, .field = MD_FIELD_NONE },
    { 0 } };
static const md_key auto_scale_lr_keys[] = {
    { "enable", MD_KEY_BOOL, "false", "scale the LR by the batch size", false, .field = MD_FIELD_NONE },
    { "base_batch_size", MD_KEY_INT, "16", "the batch size the LR was tuned for", false, .min = "1",
      .field = MD_FIELD_NONE },
    { 0 } };

static const md_key mixed_precision_keys[] = {
    { "dtype", MD_KEY_STRING, NULL, "\"bf16\" (CPU or GPU) or \"fp16\" (GPU): conv and linear inputs", true,
      .field = MD_FIELD_NONE, .choices = "bf16|fp16" },
    { 0 } };

static int check_group(const md_cfg *cfg, const char *key, const md_key *keys, md_error *err) {
    const md_cfg *g = md_cfg_get(cfg, key);
    char w[1024];
    if (md_cfg_is_none(g)) return 0;
    if (md_cfg_kind(g) != MD_CFG_GROUP)
        return md_failc(err, MD_ERR_CONFIG, "%s: %s must be a group { ... }", md_cfg_where(g, w, sizeof w), key);
    return md_cfg_check_keys(g, keys, key, err) || md_cfg_read_struct(g, keys, NULL, key, err) ? -1 : 0;
}

/* mmdet's train.py and mmcv's build_runner on the top level: no `runner`
 * but a `total_epochs` is an EpochBasedRunner of that many epochs (with a
 * warning); both must agree; max_epochs and max_iters exclude each other;
 * `fp16` is a group (Fp16OptimizerHook's arguments); the groups read here
 * have their keys checked. */
static int check_config(md_ctx *ctx, md_cfg *cfg, md_error *err) {
    char w[1024];
    if (check_group(cfg, "data", data_keys, err) || check_group(cfg, "log_config", log_config_keys, err) ||
        check_group(cfg, "auto_scale_lr", auto_scale_lr_keys, err) ||
        check_group(cfg, "mixed_precision", mixed_precision_keys, err))
        return -1;
    const md_cfg *fp16 = md_cfg_get(cfg, "fp16");
    if (!md_cfg_is_none(fp16) && md_cfg_kind(fp16) != MD_CFG_GROUP)
        return md_failc(err, MD_ERR_CONFIG, "%s: fp16 must be a group such as { loss_scale = 512.0; }",
                        md_cfg_where(fp16, w, sizeof w));
    const md_cfg *runner = md_cfg_get(cfg, "runner"), *total = md_cfg_get(cfg, "total_epochs");
    if (!md_cfg_is_none(total) && md_cfg_kind(total) != MD_CFG_INT)
        return md_failc(err, MD_ERR_CONFIG, "%s: total_epochs must be an integer", md_cfg_where(total, w, sizeof w));
    if (md_cfg_is_none(runner)) {
        if (md_cfg_is_none(total)) return 0;
        md_cfg *r = md_cfg_set_group(cfg, "runner");
        if (!r || !md_cfg_set_str(r, "type", "EpochBasedRunner") ||
            !md_cfg_set_int(r, "max_epochs", md_cfg_as_int(total)))
            return md_failc(err, MD_ERR_NOMEM, "out of memory");
        md_warn(ctx, "config is missing the runner: setting runner = { type = \"EpochBasedRunner\"; "
                "max_epochs = %lld; } from total_epochs", (long long)md_cfg_as_int(total));
        return 0;
    }
    if (md_cfg_kind(runner) != MD_CFG_GROUP) return 0;   /* the runners registry says what is wrong */
    const md_cfg *me = md_cfg_get(runner, "max_epochs"), *mi = md_cfg_get(runner, "max_iters");
    if (!md_cfg_is_none(me) && !md_cfg_is_none(mi))
        return md_failc(err, MD_ERR_CONFIG, "%s: runner: only one of max_epochs and max_iters can be set",
                        md_cfg_where(mi, w, sizeof w));
    if (!md_cfg_is_none(total) && md_cfg_kind(me) == MD_CFG_INT && md_cfg_as_int(me) != md_cfg_as_int(total))
        return md_failc(err, MD_ERR_CONFIG, "%s: total_epochs = %lld but runner.max_epochs = %lld: they must agree",
                        md_cfg_where(total, w, sizeof w), (long long)md_cfg_as_int(total),
                        (long long)md_cfg_as_int(me));
    return 0;
}

/* Mixed precision, after the model is on its device: mixed_precision.dtype
 * when given, else "fp16" for mmdet's `fp16` key (bf16 on the CPU). */
static int enable_mixed_precision(md_ctx *ctx, const md_cfg *cfg, md_module *model, md_error *err) {
    const md_cfg *mp = md_cfg_get(cfg, "mixed_precision");
    bool fp16 = !md_cfg_is_none(md_cfg_get(cfg, "fp16")), explicit = !md_cfg_is_none(mp);
    if (!fp16 && !explicit) return 0;
    const char *dtype = explicit ? md_cfg_str(mp, "dtype", NULL) : "fp16";
    return md_amp_enable(ctx, dtype, !explicit, md_module_device(model), explicit ? "mixed_precision" : "fp16", err);
}

/* mmdet's train_detector: with `fp16`, the optimizer hook is
 * Fp16OptimizerHook(**optimizer_config, **fp16) (a key in both, or a
 * `type` in optimizer_config, is an error as in Python); else
 * optimizer_config as it is. *out is NULL or a new group. */
static int fp16_optimizer_config(const md_cfg *cfg, md_cfg **out, md_error *err) {
    const md_cfg *fp16 = md_cfg_get(cfg, "fp16"), *oc = md_cfg_get(cfg, "optimizer_config");
    char w[1024];
    *out = NULL;
    if (md_cfg_is_none(fp16)) return 0;
    if (md_cfg_kind(oc) == MD_CFG_GROUP && md_cfg_has(oc, "type"))
        return md_failc(err, MD_ERR_CONFIG, "%s: optimizer_config.type = \"%s\" with fp16: mmdet builds "
                        "Fp16OptimizerHook(**optimizer_config, **fp16), which takes no type; remove one of them",
                        md_cfg_where(md_cfg_get(oc, "type"), w, sizeof w), md_cfg_str(oc, "type", "?"));
    md_cfg *c = md_cfg_kind(oc) == MD_CFG_GROUP ? md_cfg_clone(oc) : md_cfg_new_group();
    if (!c) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < md_cfg_len(fp16); i++) {
        const md_cfg *v = md_cfg_at(fp16, i);
        const char *k = md_cfg_name(v);
        if (md_cfg_has(c, k)) {
            md_cfg_free(c);
            return md_failc(err, MD_ERR_CONFIG, "%s: fp16.%s is also in optimizer_config: Fp16OptimizerHook got two "
                            "values for it", md_cfg_where(v, w, sizeof w), k);
        }
        if (!md_cfg_set_copy(c, k, v)) {
            md_cfg_free(c);
            return md_failc(err, MD_ERR_NOMEM, "out of memory");
        }
    }
    if (!md_cfg_set_str(c, "type", "Fp16OptimizerHook")) {
        md_cfg_free(c);
        return md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    *out = c;
    return 0;
}

int run_training(md_ctx *ctx, md_cfg *cfg, md_error *err) {
    int rc = -1;
    md_module *model = NULL;
    md_dataset *datasets[4] = { 0 };
    md_loader *loaders[4] = { 0 };
    loader_source lsrc[4];
    md_batch_source sources[4];
    md_batch_source *src_ptrs[4];
    const char *modes[4];
    int counts[4];
    md_optimizer *opt = NULL;
    md_runner *runner = NULL;
    char *config_text = NULL, *classes = NULL, *resume = NULL;
    md_cfg *val_cfg = NULL, *fp16_oc = NULL;
    md_ddp *ddp = NULL;
    int rank = md_dist_rank(ctx), world = md_dist_world_size(ctx);

    if (check_config(ctx, cfg, err)) goto out;
    uint64_t seed = (uint64_t)md_cfg_int(cfg, "seed", 0);
    md_ctx_seed(ctx, seed);
    /* mmdet's sync_random_seed: the samplers shuffle with rank 0's seed
     * (--diff-seed changes only the others) */
    uint64_t sampler_seed = seed;
    if (md_dist_broadcast_buf(ctx, &sampler_seed, sizeof sampler_seed, 0, err) != 0) goto out;

    /* model (build_detector with train_cfg/test_cfg as default args) */
    const md_cfg *model_cfg = md_cfg_get(cfg, "model");
    if (!model_cfg) {
        md_failc(err, MD_ERR_CONFIG, "the config has no `model`");
        goto out;
    }
    md_cfg *defaults = md_cfg_new_group();
    if (!md_cfg_is_none(md_cfg_get(cfg, "train_cfg"))) md_cfg_set_copy(defaults, "train_cfg", md_cfg_get(cfg, "train_cfg"));
    if (!md_cfg_is_none(md_cfg_get(cfg, "test_cfg"))) md_cfg_set_copy(defaults, "test_cfg", md_cfg_get(cfg, "test_cfg"));
    model = md_build_from_cfg(ctx, "detectors", model_cfg, defaults, err);
    md_cfg_free(defaults);
    if (!model) goto out;
    md_info(ctx, "model %s: %lld parameters (%lld trainable)", model->cls ? model->cls->name : "?",
            (long long)md_module_num_params(model, false), (long long)md_module_num_params(model, true));

    /* workflow and datasets: a val phase uses data.val with the training
     * pipeline (that of the wrapped dataset for a wrapper), as mmdet's
     * train.py does */
    const md_cfg *wf = md_cfg_get(cfg, "workflow");
    int n_phases = wf ? md_cfg_len(wf) : 0;
    if (n_phases < 1 || n_phases > 4) {
        md_failc(err, MD_ERR_CONFIG, "workflow must list 1 to 4 phases, e.g. ((\"train\", 1))");
        goto out;
    }
    const md_cfg *data = md_cfg_get(cfg, "data");
    int spg = (int)md_cfg_int(data, "samples_per_gpu", 2), wpg = (int)md_cfg_int(data, "workers_per_gpu", 2);
    for (int i = 0; i < n_phases; i++) {
        const md_cfg *ph = md_cfg_at(wf, i);
        modes[i] = md_cfg_len(ph) == 2 ? md_cfg_as_str(md_cfg_at(ph, 0)) : NULL;
        counts[i] = md_cfg_len(ph) == 2 ? (int)md_cfg_as_int(md_cfg_at(ph, 1)) : 0;
        if (!modes[i] || counts[i] < 1) {
            md_failc(err, MD_ERR_CONFIG, "workflow entry %d must be (\"train\"|\"val\", count)", i);
            goto out;
        }
        bool train = !strcmp(modes[i], "train");
        const md_cfg *dcfg = md_cfg_get(data, train ? "train" : "val");
        if (!train && dcfg) {
            val_cfg = md_cfg_clone(dcfg);
            /* mmdet 2.25+: a wrapped training set (Repeat, ClassBalanced)
             * keeps its pipeline in train.dataset */
            const md_cfg *tp = md_cfg_get(data, "train.pipeline");
            if (!tp) tp = md_cfg_get(data, "train.dataset.pipeline");
            if (tp) md_cfg_set_copy(val_cfg, "pipeline", tp);
            dcfg = val_cfg;
        }
        if (!dcfg) {
            md_failc(err, MD_ERR_CONFIG, "the workflow has a %s phase but the config has no data.%s", modes[i],
                     train ? "train" : "val");
            goto out;
        }
        datasets[i] = md_build_dataset(ctx, dcfg, NULL, err);
        md_cfg_free(val_cfg);
        val_cfg = NULL;
        if (!datasets[i]) goto out;
        if (md_dataset_len(datasets[i]) == 0) {
            /* stop before the runner writes anything (an untrained epoch_1
             * would replace a real checkpoint and move `latest`) */
            const md_cfg *ann = md_cfg_get(dcfg, "ann_file");
            if (!ann) ann = md_cfg_get(dcfg, "dataset.ann_file");
            md_failc(err, MD_ERR_CONFIG,
                     "data.%s (%s%s%s): no images to %s: the annotation file lists none, or every one was "
                     "filtered out (filter_empty_gt drops images without a box of `classes`, min_size those "
                     "smaller)", train ? "train" : "val", datasets[i]->type, ann ? ", " : "",
                     ann ? md_cfg_as_str(ann) : "", train ? "train on" : "validate on");
            goto out;
        }
        md_loader_cfg lc = MD_LOADER_CFG_DEFAULT;
        lc.samples_per_gpu = spg;
        lc.workers_per_gpu = wpg;
        lc.seed = sampler_seed;
        lc.rank = rank;          /* DistributedGroupSampler when world > 1 */
        lc.world_size = world;
        loaders[i] = md_loader_new(datasets[i], &lc, err);
        if (!loaders[i]) goto out;
        lsrc[i] = (loader_source){ loaders[i], spg };
        sources[i] = (md_batch_source){ .self = &lsrc[i], .len = src_len, .begin_epoch = src_begin,
                                        .next = src_next, .release = src_release, .batch_size = src_batch_size };
        src_ptrs[i] = &sources[i];
    }

    /* the config's device: the model moves before the optimizer is built, so
     * that the optimizer's state is made on the device too */
    if (md_module_to_config_device(ctx, model, cfg, err) != 0) goto out;
    if (enable_mixed_precision(ctx, cfg, model, err) != 0 || fp16_optimizer_config(cfg, &fp16_oc, err) != 0) goto out;

    /* MMDistributedDataParallel: rank 0's weights everywhere, gradients
     * averaged in buckets during backward; device tensors over NCCL */
    if (world > 1) {
        md_device dev = md_module_device(model);
        if (dev.type != MD_CPU && md_dist_init_device(ctx, dev.index, err) != 0) goto out;
        /* PyTorch's bucket_cap_mb, 25; MMDET_DDP_BUCKET_MB overrides it */
        const char *bm = getenv("MMDET_DDP_BUCKET_MB");
        double bucket_mb = bm && atof(bm) > 0 ? atof(bm) : 25;
        ddp = md_ddp_new(ctx, model, bucket_mb, err);
        if (!ddp) goto out;
        /* MMDET_DDP_OVERLAP=0: every bucket reduced after backward (the
         * baseline of the overlap the benchmark measures) */
        const char *ov = getenv("MMDET_DDP_OVERLAP");
        md_ddp_set_overlap(ddp, !(ov && !strcmp(ov, "0")));
        md_info(ctx, "data parallel over %d ranks: %d gradient buckets, all-reduced %s", world,
                md_ddp_bucket_count(ddp), md_ddp_overlap(ddp) ? "during backward" : "after backward (no overlap)");
    }

    /* optimizer, with --auto-scale-lr as mmdet's auto_scale_lr */
    opt = md_optimizer_build(ctx, model, md_cfg_get(cfg, "optimizer"), err);
    if (!opt) goto out;
    const md_cfg *asl = md_cfg_get(cfg, "auto_scale_lr");
    if (asl && md_cfg_bool(asl, "enable", false)) {
        double base = md_cfg_float(asl, "base_batch_size", 16), gpus = world;
        double factor = gpus * spg / base;
        md_optimizer_scale_lr(opt, factor);
        md_info(ctx, "LR has been automatically scaled from %g to %g", md_optimizer_base_lr(opt) / factor,
                md_optimizer_base_lr(opt));
    }

    /* runner: mmcv's build_runner through the "runners" registry */
    config_text = md_cfg_dump_string(cfg);
    classes = datasets[0]->n_classes ? classes_json(datasets[0]) : NULL;
    md_runner_opts ro = {
        .work_dir = md_cfg_str(cfg, "work_dir", "."),
        .timestamp = md_cfg_str(cfg, "timestamp", NULL),
        .config_text = config_text, .classes_json = classes, .seed = seed,
    };
    runner = md_runner_build(ctx, md_cfg_get(cfg, "runner"), model, opt, &ro, err);
    if (!runner) goto out;
    if (md_runner_register_training_hooks(runner, md_cfg_get(cfg, "lr_config"),
                                          fp16_oc ? fp16_oc : md_cfg_get(cfg, "optimizer_config"),
                                          md_cfg_get(cfg, "checkpoint_config"), md_cfg_get(cfg, "log_config"),
                                          md_cfg_get(cfg, "momentum_config"), md_cfg_get(cfg, "custom_hooks"),
                                          err) != 0)
        goto out;

    /* mmdet: DistSamplerSeedHook in a distributed epoch-based run */
    if (world > 1 && md_runner_by_epoch(runner)) {
        md_cfg *hc = md_cfg_new_group();
        int hrc = hc && md_cfg_set_str(hc, "type", "DistSamplerSeedHook")
                      ? md_runner_register_hook_cfg(runner, hc, MD_PRIORITY_NORMAL, err)
                      : md_failc(err, MD_ERR_NOMEM, "out of memory");
        md_cfg_free(hc);
        if (hrc != 0) goto out;
    }
    if (register_eval_hook(ctx, cfg, runner, model, md_runner_by_epoch(runner), wpg, err) != 0) goto out;

    /* resume_from wins over load_from; --auto-resume finds the latest */
    const char *resume_from = md_cfg_str(cfg, "resume_from", NULL);
    if (!resume_from && md_cfg_bool(cfg, "auto_resume", false)) {
        resume = md_checkpoint_find_latest(ro.work_dir);
        if (!resume) md_warn(ctx, "no checkpoint found in %s to resume from; training from scratch", ro.work_dir);
        resume_from = resume;
    }
    const char *load_from = md_cfg_str(cfg, "load_from", NULL);
    if (resume_from) {
        if (md_runner_resume(runner, resume_from, err) != 0) goto out;
    } else if (load_from && md_runner_load_checkpoint(runner, load_from, err) != 0) {
        goto out;
    }

    running = runner;
    struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int64_t iter0 = md_runner_iter(runner);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = md_runner_run(runner, src_ptrs, modes, counts, n_phases, err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (ddp && rc == 0 && md_runner_iter(runner) > iter0) {
        /* what communication cost: the wait after backward's own work, and
         * one step's all-reduces on their own (every rank gets here after
         * the same number of steps) */
        double bytes, wait = md_ddp_take_wait_seconds(ddp, &bytes), comm = 0;
        double hidden = md_ddp_take_hidden_bytes(ddp);
        double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
        int64_t steps = md_runner_iter(runner) - iter0;
        /* MMDET_DDP_TIME_ALLREDUCE=N (the benchmark's): N more rounds of
         * every bucket's all-reduce, timed alone; off by default, so a
         * training run pays no extra communication */
        const char *tr = getenv("MMDET_DDP_TIME_ALLREDUCE");
        int rounds = tr ? atoi(tr) : 0;
        char alone[64] = "";
        md_error cerr = { 0 };
        if (rounds > 0) {
            if (md_ddp_time_all_reduce(ddp, rounds, &comm, &cerr) != 0)
                md_warn(ctx, "timing the all-reduces: %s", cerr.msg);
            else
                snprintf(alone, sizeof alone, "; the all-reduces alone take %.2f ms per step", comm * 1e3);
        }
        md_info(ctx, "data parallel: %lld steps, %.2f MB all-reduced per step, %.3f s waiting for all-reduces "
                "after backward (%.1f%% of %.2f s; overlap %s, %.0f%% of the bytes reduced under backward)%s",
                (long long)steps, bytes / (double)steps / 1e6, wait, 100.0 * wait / wall, wall,
                md_ddp_overlap(ddp) ? "on" : "off", bytes > 0 ? 100.0 * hidden / bytes : 0, alone);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    running = NULL;
    if (rc == 0) md_info(ctx, "training finished: %lld epochs, %lld iterations; last checkpoint %s",
                         (long long)md_runner_epoch(runner), (long long)md_runner_iter(runner),
                         md_runner_last_checkpoint(runner) ? md_runner_last_checkpoint(runner) : "none");
out:
    md_runner_free(runner);
    md_ddp_free(ddp);
    md_optimizer_free(opt);
    for (int i = 0; i < 4; i++) {
        md_loader_free(loaders[i]);
        md_dataset_free(datasets[i]);
    }
    md_module_free(model);
    md_cfg_free(fp16_oc);
    free(config_text);
    free(classes);
    free(resume);
    return rc;
}
