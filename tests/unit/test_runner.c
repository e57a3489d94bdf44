/* The runner with the hook plugins on a small real task: a linear model
 * learning y = 2 x0 - 3 x1 + 0.5 from seeded batches. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testlib.h"
#include "toy_regression.h"

static md_ctx *ctx;
static char dir[64];
static void setup(void) {
    ctx = md_ctx_new(NULL);
    md_log_set_quiet(ctx, true);
    md_error err = { 0 };
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/hooks", &err), 0, "%s", err.msg);
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/optimizers", &err), 0, "%s", err.msg);
    test_tmpdir(dir, sizeof dir, "mmdet_runner");
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    md_ctx_free(ctx);
}
TestSuite(runner, .init = setup, .fini = teardown);

/* ---- the toy regression (toy_regression.h): 8 batches of 16 per epoch ---- */
static md_module *toy_model(void) {
    md_error err = { 0 };
    md_module *m = toy_regressor(ctx, 5, &err);
    cr_assert_not_null(m, "%s", err.msg);
    return m;
}

/* ---- a hook recording the loss of every iteration ---- */
typedef struct rec_hook { md_hook base; double losses[256]; int n; char order[512]; } rec_hook;
static int rec_after_iter(md_hook *h, md_runner *r, md_error *err) {
    (void)err;
    rec_hook *k = (rec_hook *)h;
    if (k->n < 256) k->losses[k->n++] = md_tensor_item(md_runner_loss(r));
    return 0;
}
static void rec_destroy(md_hook *h) { (void)h; }   /* owned by the test */
static const md_hook_iface rec_iface = { .after_train_iter = rec_after_iter, .destroy = rec_destroy };

static const char *TRAIN_CFG =
    "optimizer = { type = \"SGD\"; lr = 0.05; momentum = 0.9; weight_decay = 0.0; };\n"
    "optimizer_config = { grad_clip = { max_norm = 10.0; norm_type = 2.0; }; };\n"
    "lr_config = { policy = \"step\"; warmup = \"linear\"; warmup_iters = 4; warmup_ratio = 0.1; step = [3]; };\n"
    "checkpoint_config = { interval = 1; max_keep_ckpts = 3; };\n"
    "log_config = { interval = 4; hooks = ( { type = \"TextLoggerHook\"; } ); };\n";

static md_runner *make_runner(md_module *m, md_cfg *cfg, md_optimizer **opt, rec_hook *rec, int64_t epochs) {
    md_error err = { 0 };
    *opt = md_optimizer_build(ctx, m, md_cfg_get(cfg, "optimizer"), &err);
    cr_assert(*opt, "%s", err.msg);
    md_runner_opts o = { .by_epoch = true, .max_epochs = epochs, .work_dir = dir, .timestamp = "20260101_000000" };
    md_runner *r = md_runner_new(ctx, m, *opt, &o, &err);
    cr_assert(r, "%s", err.msg);
    cr_assert_eq(md_runner_register_training_hooks(r, md_cfg_get(cfg, "lr_config"), md_cfg_get(cfg, "optimizer_config"),
                                                   md_cfg_get(cfg, "checkpoint_config"), md_cfg_get(cfg, "log_config"),
                                                   NULL, NULL, &err), 0, "%s", err.msg);
    rec->base.iface = &rec_iface;
    rec->base.priority = MD_PRIORITY_LOWEST;
    snprintf(rec->base.type, sizeof rec->base.type, "Recorder");
    cr_assert_eq(md_runner_register_hook(r, &rec->base, &err), 0);
    return r;
}

static int run(md_runner *r, toy_src *s, md_error *err) {
    md_batch_source src = toy_source(s);
    md_batch_source *srcs[1] = { &src };
    const char *modes[1] = { "train" };
    int counts[1] = { 1 };
    return md_runner_run(r, srcs, modes, counts, 1, err);
}

Test(runner, trains_logs_and_checkpoints) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse(TRAIN_CFG, "runner_test.cfg", &err);
    cr_assert(cfg, "%s", err.msg);
    md_module *m = toy_model();
    md_optimizer *opt;
    rec_hook rec = { 0 };
    md_runner *r = make_runner(m, cfg, &opt, &rec, 4);
    /* mmcv order: LrUpdater 10, Optimizer 40, Checkpoint 50, IterTimer 70, TextLogger 90, ours 100 */
    const char *want[] = { "StepLrUpdaterHook", "OptimizerHook", "CheckpointHook", "IterTimerHook", "TextLoggerHook",
                           "Recorder" };
    cr_assert_eq(md_runner_hook_count(r), 6);
    for (int i = 0; i < 6; i++) cr_assert_str_eq(md_runner_hook(r, i)->type, want[i]);
    toy_src s = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(rec.n, 32);
    cr_assert_lt(rec.losses[31], 0.05 * rec.losses[0], "loss %g -> %g", rec.losses[0], rec.losses[31]);
    float *wt = md_f32(md_nn_weight(md_module_child(m, "fc")));
    cr_assert_float_eq(wt[1], -3.0, 0.25, "w1 = %g", wt[1]);
    cr_assert_float_eq(wt[0], 2.0, 0.25, "w = [%g, %g], loss %g -> %g", wt[0], wt[1], rec.losses[0], rec.losses[31]);
    /* lr after step at epoch 3: 0.005 */
    cr_assert_float_eq(md_optimizer_group_lr(opt, 0), 0.005, 1e-9);
    char path[256];
    for (int e = 1; e <= 4; e++) {
        snprintf(path, sizeof path, "%s/epoch_%d.safetensors", dir, e);
        cr_assert_eq(access(path, F_OK), e == 1 ? -1 : 0, "epoch_%d (max_keep_ckpts 3)", e);
    }
    char *latest = md_checkpoint_find_latest(dir);
    char target[256] = "";
    cr_assert(latest);
    cr_assert_gt(readlink(latest, target, sizeof target - 1), 0);
    cr_assert_str_eq(target, "epoch_4.safetensors");
    free(latest);
    /* JSON log: a header line, then 2 lines per epoch (interval 4 of 8) */
    snprintf(path, sizeof path, "%s/20260101_000000.log.json", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    char *line = NULL;   /* getline: the header (env_info, config) is a long line */
    size_t cap = 0;
    int n = 0, train_lines = 0;
    while (getline(&line, &cap, f) > 0) {
        n++;
        if (strstr(line, "\"mode\": \"train\"") && strstr(line, "\"loss_mse\"") && strstr(line, "\"lr\"")) train_lines++;
    }
    free(line);
    fclose(f);
    cr_assert_eq(n, 9);
    cr_assert_eq(train_lines, 8);
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(cfg);
}

Test(runner, resume_reproduces_the_same_losses) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse(TRAIN_CFG, "runner_test.cfg", &err);
    /* one run of 4 epochs */
    md_module *m = toy_model();
    md_optimizer *opt;
    rec_hook full = { 0 };
    md_runner *r = make_runner(m, cfg, &opt, &full, 4);
    toy_src s = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s, &err), 0, "%s", err.msg);
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -f %s/*.safetensors", dir);
    cr_assert_eq(system(cmd), 0);
    /* 2 epochs, then a fresh process state resumes to 4 */
    m = toy_model();
    rec_hook first = { 0 }, second = { 0 };
    r = make_runner(m, cfg, &opt, &first, 2);
    toy_src s2 = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s2, &err), 0, "%s", err.msg);
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    m = toy_model();
    r = make_runner(m, cfg, &opt, &second, 4);
    char *latest = md_checkpoint_find_latest(dir);
    cr_assert_eq(md_runner_resume(r, latest, &err), 0, "%s", err.msg);
    free(latest);
    cr_assert_eq(md_runner_epoch(r), 2);
    cr_assert_eq(md_runner_iter(r), 16);
    toy_src s3 = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s3, &err), 0, "%s", err.msg);
    cr_assert_eq(first.n, 16);
    cr_assert_eq(second.n, 16);
    for (int i = 0; i < 16; i++) {
        cr_assert_eq(first.losses[i], full.losses[i], "iteration %d", i + 1);
        cr_assert_eq(second.losses[i], full.losses[16 + i], "iteration %d", 17 + i);
    }
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(cfg);
}

Test(runner, nan_loss_stops_with_weights_intact) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse(TRAIN_CFG, "runner_test.cfg", &err);
    md_module *m = toy_model();
    md_optimizer *opt;
    rec_hook rec = { 0 };
    md_runner *r = make_runner(m, cfg, &opt, &rec, 4);
    toy_src s = toy_src_make(ctx, 8, 11);   /* the 12th iteration, in epoch 2 */
    cr_assert_eq(run(r, &s, &err), -1);
    cr_assert_eq(err.code, MD_ERR_NUMERIC, "%s", err.msg);
    cr_assert(strstr(err.msg, "at iteration 12"), "%s", err.msg);
    cr_assert(strstr(err.msg, "epoch_1.safetensors"), "%s", err.msg);
    md_tensor *w = md_nn_weight(md_module_child(m, "fc"));
    cr_assert(isfinite(md_f32(w)[0]) && isfinite(md_f32(w)[1]));
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(cfg);
}

/* After --auto-resume from the `latest` link, a NaN before the next save
 * names the checkpoint file the run resumed from, not the link (which a
 * later save would move). */
Test(runner, nan_after_resume_names_the_checkpoint_file) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse(TRAIN_CFG, "runner_test.cfg", &err);
    md_module *m = toy_model();
    md_optimizer *opt;
    rec_hook rec = { 0 };
    md_runner *r = make_runner(m, cfg, &opt, &rec, 1);
    toy_src s = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s, &err), 0, "%s", err.msg);
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    m = toy_model();
    r = make_runner(m, cfg, &opt, &rec, 3);
    char *latest = md_checkpoint_find_latest(dir);
    cr_assert(latest && strstr(latest, "latest"), "%s", latest ? latest : "none");
    cr_assert_eq(md_runner_resume(r, latest, &err), 0, "%s", err.msg);
    free(latest);
    toy_src s2 = toy_src_make(ctx, 8, 9);   /* epoch 2, its second iteration */
    cr_assert_eq(run(r, &s2, &err), -1);
    cr_assert_eq(err.code, MD_ERR_NUMERIC, "%s", err.msg);
    cr_assert(strstr(err.msg, "at iteration 10") && strstr(err.msg, "epoch_1.safetensors") &&
              !strstr(err.msg, "latest"), "%s", err.msg);
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(cfg);
}

Test(runner, hook_priorities_and_names) {
    md_error err = { 0 };
    md_module *m = toy_model();
    md_runner_opts o = { .by_epoch = false, .max_iters = 5, .work_dir = dir };
    md_runner *r = md_runner_new(ctx, m, NULL, &o, &err);
    static const md_hook_iface none = { .destroy = rec_destroy };
    md_hook hs[4] = { { &none, 50, "a" }, { &none, 10, "b" }, { &none, 50, "c" }, { &none, 90, "d" } };
    for (int i = 0; i < 4; i++) md_runner_register_hook(r, &hs[i], &err);
    const char *want = "bacd";
    for (int i = 0; i < 4; i++) cr_assert_eq(md_runner_hook(r, i)->type[0], want[i]);
    md_cfg *c = md_cfg_parse("h = { type = \"CheckInvalidLossHook\"; priority = \"HIGHEST\"; };", "t.cfg", &err);
    cr_assert_eq(md_runner_register_hook_cfg(r, md_cfg_get(c, "h"), MD_PRIORITY_NORMAL, &err), 0, "%s", err.msg);
    cr_assert_str_eq(md_runner_hook(r, 0)->type, "CheckInvalidLossHook");
    md_cfg_free(c);
    c = md_cfg_parse("h = { type = \"CheckInvalidLosHook\"; };", "t.cfg", &err);
    cr_assert_eq(md_runner_register_hook_cfg(r, md_cfg_get(c, "h"), MD_PRIORITY_NORMAL, &err), -1);
    cr_assert(strstr(err.msg, "CheckInvalidLossHook"), "%s", err.msg);
    md_cfg_free(c);
    cr_assert_eq(md_priority_parse("VERY_LOW"), 90);
    md_runner_free(r);
    md_module_free(m);
}

Test(runner, iteration_based_runner_wraps_epochs) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse("optimizer = { type = \"SGD\"; lr = 0.05; };\n"
                               "optimizer_config = { grad_clip = \"None\"; };\n"
                               "lr_config = { policy = \"fixed\"; by_epoch = false; };\n"
                               "checkpoint_config = { interval = 10; by_epoch = false; };\n", "t.cfg", &err);
    md_module *m = toy_model();
    md_optimizer *opt = md_optimizer_build(ctx, m, md_cfg_get(cfg, "optimizer"), &err);
    md_runner_opts o = { .by_epoch = false, .max_iters = 20, .work_dir = dir };
    md_runner *r = md_runner_new(ctx, m, opt, &o, &err);
    cr_assert_eq(md_runner_register_training_hooks(r, md_cfg_get(cfg, "lr_config"), md_cfg_get(cfg, "optimizer_config"),
                                                   md_cfg_get(cfg, "checkpoint_config"), NULL, NULL, NULL, &err), 0,
                 "%s", err.msg);
    toy_src s = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(md_runner_iter(r), 20);
    cr_assert_eq(md_runner_epoch(r), 2);   /* 8 batches per epoch: wrapped twice */
    char path[256];
    snprintf(path, sizeof path, "%s/iter_20.safetensors", dir);
    cr_assert_eq(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/iter_10.safetensors", dir);
    cr_assert_eq(access(path, F_OK), 0);
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(cfg);
}

/* A hook asking the runner to stop after iteration 5 (what a SIGINT
 * handler does). */
static int stop_after_5(md_hook *h, md_runner *r, md_error *err) {
    (void)h;
    (void)err;
    if (md_runner_iter(r) + 1 == 5) md_runner_request_stop(r);
    return 0;
}
static const md_hook_iface stop_iface = { .after_train_iter = stop_after_5, .destroy = rec_destroy };

Test(runner, stop_request_saves_and_reports_where) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse(TRAIN_CFG, "runner_test.cfg", &err);
    /* the uninterrupted reference first */
    rec_hook full = { 0 }, rest = { 0 };
    md_module *m = toy_model();
    md_optimizer *opt;
    md_runner *r = make_runner(m, cfg, &opt, &full, 4);
    toy_src s_full = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s_full, &err), 0, "%s", err.msg);
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    m = toy_model();
    rec_hook rec = { 0 };
    r = make_runner(m, cfg, &opt, &rec, 4);
    md_hook stop = { &stop_iface, MD_PRIORITY_LOWEST, "Stopper" };
    md_runner_register_hook(r, &stop, &err);
    toy_src s = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s, &err), -1);
    cr_assert_eq(err.code, MD_ERR_INTERRUPTED, "%s", err.msg);
    cr_assert(strstr(err.msg, "interrupted at iteration 5"), "%s", err.msg);
    cr_assert_eq(md_runner_iter(r), 5);
    const char *saved = md_runner_last_checkpoint(r);
    cr_assert(saved && access(saved, F_OK) == 0, "%s", err.msg);
    md_module *m2 = toy_model();
    md_ckpt_info info;
    cr_assert_eq(md_checkpoint_load(ctx, saved, m2, NULL, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(info.iter, 5);
    cr_assert_eq(info.inner_iter, 5);
    assert_close(md_nn_weight(md_module_child(m2, "fc")), md_nn_weight(md_module_child(m, "fc")), 0, "saved weights");
    md_module_free(m2);
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    /* --auto-resume continues inside the epoch exactly where it stopped */
    m = toy_model();
    r = make_runner(m, cfg, &opt, &rest, 4);
    char *latest = md_checkpoint_find_latest(dir);
    cr_assert(latest);
    char target[128] = "";
    cr_assert_gt(readlink(latest, target, sizeof target - 1), 0);
    cr_assert_str_eq(target, "iter_5.safetensors");
    cr_assert_eq(md_runner_resume(r, latest, &err), 0, "%s", err.msg);
    free(latest);
    toy_src s_rest = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s_rest, &err), 0, "%s", err.msg);
    cr_assert_eq(full.n, 32);
    cr_assert_eq(rest.n, 27);
    for (int i = 0; i < 27; i++) cr_assert_eq(rest.losses[i], full.losses[5 + i], "iteration %d", 6 + i);
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(cfg);
}

Test(runner, cumulative_optimizer_hook_steps_on_the_mean_gradient) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse("optimizer = { type = \"SGD\"; lr = 0.1; };\n"
                               "optimizer_config = { type = \"GradientCumulativeOptimizerHook\"; cumulative_iters = 2; };\n",
                               "t.cfg", &err);
    cr_assert(cfg, "%s", err.msg);
    /* reference: gradients of batches 0 and 1 at the initial weights, averaged */
    md_module *ref = toy_model();
    toy_src s = toy_src_make(ctx, 8, -1);
    md_losses l;
    for (int b = 0; b < 2; b++) {
        md_ctx_step_reset(ctx);
        memset(&l, 0, sizeof l);
        cr_assert_eq(toy_train_step(ctx, ref, toy_src_next(&s, &err), &l, &err), 0);
        cr_assert_eq(md_backward(ctx, l.values[0], &err), 0, "%s", err.msg);
    }
    md_tensor *rw = md_nn_weight(md_module_child(ref, "fc"));
    float want[2];
    for (int i = 0; i < 2; i++) want[i] = md_f32(rw)[i] - 0.1f * md_f32(rw->grad)[i] / 2;
    /* the runner: two iterations, one step */
    md_module *m = toy_model();
    md_optimizer *opt = md_optimizer_build(ctx, m, md_cfg_get(cfg, "optimizer"), &err);
    md_runner_opts o = { .by_epoch = false, .max_iters = 2, .work_dir = dir };
    md_runner *r = md_runner_new(ctx, m, opt, &o, &err);
    cr_assert_eq(md_runner_register_training_hooks(r, NULL, md_cfg_get(cfg, "optimizer_config"), NULL, NULL, NULL,
                                                   NULL, &err), 0, "%s", err.msg);
    toy_src s2 = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s2, &err), 0, "%s", err.msg);
    md_tensor *w = md_nn_weight(md_module_child(m, "fc"));
    for (int i = 0; i < 2; i++) cr_assert_float_eq(md_f32(w)[i], want[i], 1e-6, "weight %d", i);
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    md_module_free(ref);
    md_cfg_free(cfg);
}

/* Records the fc weight after every iteration's optimizer step. */
typedef struct w_hook { md_hook base; float w[64][2]; float w0[2]; int n; } w_hook;
static int w_before_run(md_hook *h, md_runner *r, md_error *err) {
    (void)err;
    w_hook *k = (w_hook *)h;
    memcpy(k->w0, md_f32(md_nn_weight(md_module_child(md_runner_model(r), "fc"))), sizeof k->w0);
    return 0;
}
static int w_after_iter(md_hook *h, md_runner *r, md_error *err) {
    (void)err;
    w_hook *k = (w_hook *)h;
    memcpy(k->w[k->n++], md_f32(md_nn_weight(md_module_child(md_runner_model(r), "fc"))), sizeof k->w[0]);
    return 0;
}
static const md_hook_iface w_iface = { .before_run = w_before_run, .after_train_iter = w_after_iter,
                                       .destroy = rec_destroy };

Test(runner, ema_hook_follows_mmdet_exp_momentum) {
    md_error err = { 0 };
    char text[2048];
    snprintf(text, sizeof text, "%scustom_hooks = ( { type = \"ExpMomentumEMAHook\"; momentum = 0.1; "
             "total_iter = 10; priority = 49; } );\n", TRAIN_CFG);
    md_cfg *cfg = md_cfg_parse(text, "t.cfg", &err);
    cr_assert(cfg, "%s", err.msg);
    md_module *m = toy_model();
    md_optimizer *opt = md_optimizer_build(ctx, m, md_cfg_get(cfg, "optimizer"), &err);
    md_runner_opts o = { .by_epoch = true, .max_epochs = 1, .work_dir = dir, .timestamp = "20260101_000001" };
    md_runner *r = md_runner_new(ctx, m, opt, &o, &err);
    cr_assert_eq(md_runner_register_training_hooks(r, md_cfg_get(cfg, "lr_config"), md_cfg_get(cfg, "optimizer_config"),
                                                   NULL, NULL, NULL, md_cfg_get(cfg, "custom_hooks"), &err), 0,
                 "%s", err.msg);
    w_hook wh = { .base = { &w_iface, MD_PRIORITY_ABOVE_NORMAL + 1, "WeightRecorder" } };
    md_runner_register_hook(r, &wh.base, &err);
    toy_src s = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(wh.n, 8);
    double ema[2] = { wh.w0[0], wh.w0[1] };
    for (int k = 0; k < 8; k++) {
        double mom = (1 - 0.1) * exp(-(1.0 + k) / 10) + 0.1;
        for (int j = 0; j < 2; j++) ema[j] = (1 - mom) * ema[j] + mom * wh.w[k][j];
    }
    /* after the epoch the averaged weights are in the model, the raw ones in the buffer */
    float *w = md_f32(md_nn_weight(md_module_child(m, "fc")));
    md_tensor *buf = md_module_find(m, "ema_fc_weight");
    cr_assert(buf);
    for (int j = 0; j < 2; j++) {
        cr_assert_float_eq(w[j], ema[j], 1e-5, "ema weight %d", j);
        cr_assert_float_eq(md_f32(buf)[j], wh.w[7][j], 0, "raw weight %d", j);
    }
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(cfg);
}

/* ---- momentum_config with lr_config, iteration by iteration ---- */
typedef struct mom_rec { md_hook base; double mom[16], lr[16]; int n; } mom_rec;
static int mom_before_iter(md_hook *h, md_runner *r, md_error *err) {
    (void)err;
    mom_rec *k = (mom_rec *)h;
    if (k->n < 16) {
        k->mom[k->n] = md_optimizer_momentum(md_runner_optimizer(r));
        k->lr[k->n++] = md_optimizer_group_lr(md_runner_optimizer(r), 0);
    }
    return 0;
}
static const md_hook_iface mom_rec_iface = { .before_train_iter = mom_before_iter, .destroy = rec_destroy };

Test(runner, onecycle_momentum_and_lr_move_the_optimizer) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse("optimizer = { type = \"SGD\"; lr = 0.05; momentum = 0.9; };\n"
                               "optimizer_config = { grad_clip = \"None\"; };\n"
                               "lr_config = { policy = \"OneCycle\"; max_lr = 0.1; anneal_strategy = \"linear\"; };\n"
                               "momentum_config = { policy = \"OneCycle\"; anneal_strategy = \"linear\"; };\n",
                               "t.cfg", &err);
    cr_assert(cfg, "%s", err.msg);
    md_module *m = toy_model();
    md_optimizer *opt = md_optimizer_build(ctx, m, md_cfg_get(cfg, "optimizer"), &err);
    md_runner_opts o = { .by_epoch = false, .max_iters = 10, .work_dir = dir };
    md_runner *r = md_runner_new(ctx, m, opt, &o, &err);
    cr_assert_eq(md_runner_register_training_hooks(r, md_cfg_get(cfg, "lr_config"), md_cfg_get(cfg, "optimizer_config"),
                                                   NULL, NULL, md_cfg_get(cfg, "momentum_config"), NULL, &err), 0,
                 "%s", err.msg);
    mom_rec rec = { .base = { &mom_rec_iface, MD_PRIORITY_HIGH + 5, "MomentumRecorder" } };
    cr_assert_eq(md_runner_register_hook(r, &rec.base, &err), 0);
    toy_src s = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(rec.n, 10);
    /* phases end at steps 2 (0.3 * 10 - 1) and 9: momentum 0.95 -> 0.85 -> 0.95,
     * lr 0.004 -> 0.1 -> 4e-7, linearly */
    for (int i = 0; i < 10; i++) {
        double f = i <= 2 ? i / 2.0 : (i - 2) / 7.0;
        double mom = i <= 2 ? 0.95 - 0.1 * f : 0.85 + 0.1 * f;
        double lr = i <= 2 ? 0.004 + (0.1 - 0.004) * f : 0.1 + (4e-7 - 0.1) * f;
        cr_assert_float_eq(rec.mom[i], mom, 1e-12, "momentum at iter %d: %g", i, rec.mom[i]);
        cr_assert_float_eq(rec.lr[i], lr, 1e-12, "lr at iter %d: %g", i, rec.lr[i]);
    }
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(cfg);
}

Test(runner, step_momentum_from_lowercase_policy) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse("optimizer = { type = \"Adam\"; lr = 0.01; betas = [0.8, 0.999]; };\n"
                               "optimizer_config = { grad_clip = \"None\"; };\n"
                               "lr_config = { policy = \"fixed\"; };\n"
                               "momentum_config = { policy = \"step\"; step = [1]; gamma = 0.5; };\n", "t.cfg", &err);
    cr_assert(cfg, "%s", err.msg);
    md_module *m = toy_model();
    md_optimizer *opt = md_optimizer_build(ctx, m, md_cfg_get(cfg, "optimizer"), &err);
    cr_assert(opt, "%s", err.msg);
    md_runner_opts o = { .by_epoch = true, .max_epochs = 2, .work_dir = dir };
    md_runner *r = md_runner_new(ctx, m, opt, &o, &err);
    cr_assert_eq(md_runner_register_training_hooks(r, md_cfg_get(cfg, "lr_config"), md_cfg_get(cfg, "optimizer_config"),
                                                   NULL, NULL, md_cfg_get(cfg, "momentum_config"), NULL, &err), 0,
                 "%s", err.msg);
    mom_rec rec = { .base = { &mom_rec_iface, MD_PRIORITY_HIGH + 5, "MomentumRecorder" } };
    cr_assert_eq(md_runner_register_hook(r, &rec.base, &err), 0);
    toy_src s = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(rec.n, 16);
    cr_assert_float_eq(rec.mom[7], 0.8, 1e-12);    /* beta1, epoch 0 */
    cr_assert_float_eq(rec.mom[8], 0.4, 1e-12);    /* epoch 1: after the milestone */
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(cfg);
}

/* ---- a third-party optimizer (tests/plugins/sign_sgd.c) trains the toy
 * regression; each update is checked against the rule worked by hand ---- */
typedef struct sign_check {
    md_hook base;
    float before[3], m[3];   /* fc.weight (2), fc.bias, as the groups order them */
    int steps, wrong;
    char why[256];
} sign_check;

static float *toy_param(md_runner *r, int i) {
    md_module *fc = md_module_child(md_runner_model(r), "fc");
    return md_f32(i == 0 ? md_nn_weight(fc) : md_nn_bias(fc));
}

static int sign_before(md_hook *h, md_runner *r, md_error *err) {
    (void)err;
    sign_check *k = (sign_check *)h;
    memcpy(k->before, toy_param(r, 0), 2 * sizeof(float));
    k->before[2] = toy_param(r, 1)[0];
    return 0;
}

/* After the OptimizerHook: m = 0.5 m + 0.5 g, w -= lr (sign(m) + wd w),
 * with each group's lr (this iteration's schedule) and weight decay. */
static int sign_after(md_hook *h, md_runner *r, md_error *err) {
    (void)err;
    sign_check *k = (sign_check *)h;
    md_optimizer *o = md_runner_optimizer(r);
    md_module *fc = md_module_child(md_runner_model(r), "fc");
    const float *g[2] = { md_f32(md_nn_weight(fc)->grad), md_f32(md_nn_bias(fc)->grad) };
    for (int e = 0; e < 3; e++) {
        int grp = e < 2 ? 0 : 1;
        float beta = 0.5f, lr = (float)md_optimizer_group_lr(o, grp);
        float wd = (float)md_optimizer_group_weight_decay(o, grp), w = k->before[e];
        k->m[e] = beta * k->m[e] + (1 - beta) * g[grp][e < 2 ? e : 0];
        float s = (float)((k->m[e] > 0) - (k->m[e] < 0));
        w -= lr * (s + wd * w);
        float got = toy_param(r, grp)[e < 2 ? e : 0];
        if (got != w && !k->wrong++)
            snprintf(k->why, sizeof k->why, "step %d, element %d: %a, by hand %a", k->steps, e, got, w);
    }
    k->steps++;
    return 0;
}
static const md_hook_iface sign_iface = { .before_train_iter = sign_before, .after_train_iter = sign_after,
                                          .destroy = rec_destroy };

Test(runner, third_party_optimizer_trains_the_toy_regression) {
    md_error err = { 0 };
    cr_assert_eq(md_plugin_load_file(ctx, "tests/plugins/sign_sgd.so", &err), 0, "%s", err.msg);
    md_cfg *cfg = md_cfg_parse(
        "optimizer = { type = \"SignSGD\"; lr = 0.2; momentum = 0.5; weight_decay = 0.1;\n"
        "              paramwise_cfg = { bias_lr_mult = 2.0; bias_decay_mult = 0.0; }; };\n"
        "optimizer_config = { grad_clip = \"None\"; };\n"
        "lr_config = { policy = \"step\"; step = [1]; gamma = 0.5; warmup = \"linear\"; warmup_iters = 3;\n"
        "              warmup_ratio = 0.5; };\n",
        "t.cfg", &err);
    cr_assert(cfg, "%s", err.msg);
    md_module *m = toy_model();
    md_optimizer *opt;
    rec_hook rec = { 0 };
    md_runner *r = make_runner(m, cfg, &opt, &rec, 2);
    cr_assert_str_eq(md_optimizer_type(opt), "SignSGD");
    cr_assert_float_eq(md_optimizer_momentum(opt), 0.5, 0);
    cr_assert_float_eq(md_optimizer_group_initial_lr(opt, 1), 0.4, 1e-15);   /* bias_lr_mult */
    cr_assert_float_eq(md_optimizer_group_weight_decay(opt, 1), 0.0, 0);    /* bias_decay_mult */
    sign_check chk = { .base = { &sign_iface, MD_PRIORITY_LOWEST, "SignCheck" } };
    cr_assert_eq(md_runner_register_hook(r, &chk.base, &err), 0);
    toy_src s = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(chk.steps, 16);
    cr_assert_eq(chk.wrong, 0, "%d updates differ from the rule; first: %s", chk.wrong, chk.why);
    cr_assert_lt(rec.losses[15], rec.losses[0], "loss %g -> %g", rec.losses[0], rec.losses[15]);
    /* its state is saved under the name it declares */
    cr_assert_eq(md_runner_save_checkpoint(r, dir, "sign.safetensors", true, false, &err), 0, "%s", err.msg);
    char path[128];
    snprintf(path, sizeof path, "%s/sign.safetensors", dir);
    md_st *st = md_st_open(path, &err);
    cr_assert(st, "%s", err.msg);
    int j = md_st_find(st, "optimizer.fc.weight.sign_momentum");
    cr_assert_geq(j, 0);
    float saved[2];
    memcpy(saved, md_st_data(st, j), sizeof saved);
    cr_assert(saved[0] == chk.m[0] && saved[1] == chk.m[1]);
    md_st_close(st);
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(cfg);
}

/* ---- a third-party LR policy (tests/plugins/linear_lr.c) with the core's
 * warmup and progress ---- */
Test(runner, third_party_lr_policy_with_shared_warmup) {
    md_error err = { 0 };
    cr_assert_eq(md_plugin_load_file(ctx, "tests/plugins/linear_lr.so", &err), 0, "%s", err.msg);
    md_cfg *cfg = md_cfg_parse("optimizer = { type = \"SGD\"; lr = 0.1; };\n"
                               "optimizer_config = { grad_clip = \"None\"; };\n"
                               "lr_config = { policy = \"linear\"; by_epoch = false; end_ratio = 0.2;\n"
                               "              warmup = \"constant\"; warmup_iters = 3; warmup_ratio = 0.5; };\n"
                               "typo = { policy = \"linaer\"; };\n"
                               "bad_key = { policy = \"linear\"; end_ration = 0.2; };\n", "t.cfg", &err);
    cr_assert(cfg, "%s", err.msg);
    md_module *m = toy_model();
    md_optimizer *opt = md_optimizer_build(ctx, m, md_cfg_get(cfg, "optimizer"), &err);
    cr_assert(opt, "%s", err.msg);
    md_runner_opts o = { .by_epoch = false, .max_iters = 10, .work_dir = dir };
    md_runner *r = md_runner_new(ctx, m, opt, &o, &err);
    cr_assert_eq(md_runner_register_training_hooks(r, md_cfg_get(cfg, "typo"), NULL, NULL, NULL, NULL, NULL, &err), -1);
    cr_assert(strstr(err.msg, "t.cfg:5") && strstr(err.msg, "did you mean 'Linear'"), "%s", err.msg);
    cr_assert_eq(md_runner_register_training_hooks(r, md_cfg_get(cfg, "bad_key"), NULL, NULL, NULL, NULL, NULL, &err),
                 -1);
    cr_assert(strstr(err.msg, "did you mean 'end_ratio'"), "%s", err.msg);
    cr_assert_eq(md_runner_register_training_hooks(r, md_cfg_get(cfg, "lr_config"), md_cfg_get(cfg, "optimizer_config"),
                                                   NULL, NULL, NULL, NULL, &err), 0, "%s", err.msg);
    cr_assert_str_eq(md_runner_hook(r, 0)->type, "LinearLrUpdaterHook");
    mom_rec rec = { .base = { &mom_rec_iface, MD_PRIORITY_HIGH, "LrRecorder" } };
    cr_assert_eq(md_runner_register_hook(r, &rec.base, &err), 0);
    toy_src s = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(rec.n, 10);
    for (int i = 0; i < 10; i++) {
        double f = i / 10.0, lr = 0.1 * (1 - f + f * 0.2) * (i < 3 ? 0.5 : 1);
        cr_assert_float_eq(rec.lr[i], lr, 1e-15, "lr at iter %d: %g, want %g", i, rec.lr[i], lr);
    }
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(cfg);
}

/* ---- "runners": mmcv's build_runner, and a class registered by this
 * binary (built in to every context) that counts its phases ---- */
static int counted_phases;
static int counting_phase(md_runner *r, md_batch_source *src, bool train, int count, md_error *err) {
    counted_phases++;
    for (int k = 0; k < count; k++)
        if (md_runner_run_epoch(r, src, train, err) != 0) return -1;
    return 0;
}
static const md_runner_iface counting_iface = { .by_epoch = true, .run_phase = counting_phase };
static const md_key counting_keys[] = {
    { "max_epochs", MD_KEY_INT, NULL, "epochs", true, MD_AT(md_runner_spec, max_epochs), .min = "1" }, { 0 } };
static void *counting_build(md_ctx *c, const md_cfg *cfg, md_error *err) {
    (void)c;
    return md_runner_spec_new(&counting_iface, cfg, counting_keys, err);
}
static const md_class counting_cls = { .name = "CountingRunner", .keys = counting_keys, .build = counting_build,
                                       MD_IFACE(&counting_iface, MD_IFACE_RUNNER) };
MD_REGISTER("runners", counting_cls)

Test(runner, runners_are_built_by_type) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse("iter = { type = \"IterBasedRunner\"; max_iters = 7; };\n"
                               "typo = { type = \"EpochBasedRuner\"; max_epochs = 2; };\n"
                               "key = { type = \"IterBasedRunner\"; max_epochs = 2; };\n"
                               "mine = { type = \"CountingRunner\"; max_epochs = 3; };\n"
                               "untyped = { max_epochs = 2; };\n", "runner_cfg.cfg", &err);
    cr_assert(cfg, "%s", err.msg);
    md_module *m = toy_model();
    md_runner_opts o = { .work_dir = dir };
    md_runner *r = md_runner_build(ctx, md_cfg_get(cfg, "iter"), m, NULL, &o, &err);
    cr_assert(r, "%s", err.msg);
    cr_assert_not(md_runner_by_epoch(r));
    cr_assert_eq(md_runner_max_iters(r), 7);
    md_runner_free(r);
    cr_assert_null(md_runner_build(ctx, md_cfg_get(cfg, "typo"), m, NULL, &o, &err));
    cr_assert(strstr(err.msg, "runner_cfg.cfg:2") && strstr(err.msg, "did you mean 'EpochBasedRunner'") &&
              strstr(err.msg, "IterBasedRunner"), "%s", err.msg);
    cr_assert_null(md_runner_build(ctx, md_cfg_get(cfg, "key"), m, NULL, &o, &err));
    cr_assert(strstr(err.msg, "max_epochs") && strstr(err.msg, "runner_cfg.cfg:3"), "%s", err.msg);
    r = md_runner_build(ctx, md_cfg_get(cfg, "untyped"), m, NULL, &o, &err);   /* mmdet's default */
    cr_assert(r, "%s", err.msg);
    cr_assert(md_runner_by_epoch(r));
    cr_assert_eq(md_runner_max_epochs(r), 2);
    md_runner_free(r);
    r = md_runner_build(ctx, NULL, m, NULL, &o, &err);
    cr_assert(r, "%s", err.msg);
    cr_assert_eq(md_runner_max_epochs(r), 12);
    md_runner_free(r);
    /* the workflow goes through the class's run_phase */
    md_cfg *tc = md_cfg_parse("optimizer = { type = \"SGD\"; lr = 0.05; };\n"
                              "optimizer_config = { grad_clip = \"None\"; };\n", "t.cfg", &err);
    md_optimizer *opt = md_optimizer_build(ctx, m, md_cfg_get(tc, "optimizer"), &err);
    cr_assert(opt, "%s", err.msg);
    r = md_runner_build(ctx, md_cfg_get(cfg, "mine"), m, opt, &o, &err);
    cr_assert(r, "%s", err.msg);
    cr_assert_eq(md_runner_register_training_hooks(r, NULL, md_cfg_get(tc, "optimizer_config"), NULL, NULL, NULL, NULL,
                                                   &err), 0, "%s", err.msg);
    counted_phases = 0;
    toy_src s = toy_src_make(ctx, 8, -1);
    cr_assert_eq(run(r, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(counted_phases, 3);
    cr_assert_eq(md_runner_epoch(r), 3);
    cr_assert_eq(md_runner_iter(r), 24);
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(tc);
    md_cfg_free(cfg);
}
