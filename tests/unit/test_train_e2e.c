/* mmdet-run end to end: a small classifier (tests/plugins/toy_classifier.c)
 * trains on a generated shapes dataset through the real data pipeline, the
 * runner and the hook plugins; the loss falls; a run of 6 epochs and a run
 * of 3 epochs resumed with --auto-resume to 6 log identical losses. */
#include <criterion/criterion.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testlib.h"

static char dir[64];

static void setup(void) {
    test_tmpdir(dir, sizeof dir, "mmdet_e2e");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s/data --train 64 --val 8 --seed 1 --classes 5 >/dev/null", dir);
    cr_assert_eq(system(cmd), 0, "mmdet-shapes failed");
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(train_e2e, .init = setup, .fini = teardown, .timeout = 300);

static int train(const char *work, int epochs, const char *extra) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-run --plugin-dir plugins --plugin-dir tests/plugins tests/configs/runner/toy_shapes.cfg "
             "--work-dir %s/%s --seed 0 --deterministic %s --cfg-options data.train.data_root=%s/data/ "
             "runner.max_epochs=%d >%s/%s.out 2>&1",
             dir, work, extra, dir, epochs, dir, work);
    return system(cmd);
}

/* Losses in the JSON logs of <work>, indexed by (epoch - 1) * 100 + iter. */
static int read_losses(const char *work, double *loss, int max) {
    char pattern[256];
    snprintf(pattern, sizeof pattern, "%s/%s/*.log.json", dir, work);
    glob_t g;
    cr_assert_eq(glob(pattern, 0, NULL, &g), 0, "no JSON log in %s", work);
    int n = 0;
    for (size_t f = 0; f < g.gl_pathc; f++) {
        FILE *fp = fopen(g.gl_pathv[f], "r");
        char line[4096];
        while (fp && fgets(line, sizeof line, fp)) {
            char *e = strstr(line, "\"epoch\": "), *i = strstr(line, "\"iter\": "), *l = strstr(line, "\"loss\": ");
            if (!strstr(line, "\"mode\": \"train\"") || !e || !i || !l) continue;
            int k = (atoi(e + 9) - 1) * 100 + atoi(i + 8);
            if (k >= 0 && k < max) {
                loss[k] = atof(l + 8);
                n++;
            }
        }
        if (fp) fclose(fp);
    }
    globfree(&g);
    return n;
}

static double epoch_mean(const double *loss, int epoch) {
    double s = 0;
    int n = 0;
    for (int i = 0; i < 100; i++)
        if (loss[(epoch - 1) * 100 + i] > 0) {
            s += loss[(epoch - 1) * 100 + i];
            n++;
        }
    return n ? s / n : 0;
}

Test(train_e2e, loss_falls_and_resume_is_exact) {
    static double full[700], resumed[700];
    cr_assert_eq(train("full", 6, ""), 0, "training failed; see %s/full.out", dir);
    int n = read_losses("full", full, 700);
    cr_assert_gt(n, 20);
    double first = epoch_mean(full, 1), last = epoch_mean(full, 6);
    cr_assert_lt(last, first - 0.04, "mean loss epoch 1 %.4f, epoch 6 %.4f", first, last);

    char path[256];
    snprintf(path, sizeof path, "%s/full/epoch_6.safetensors", dir);
    cr_assert_eq(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/full/latest.safetensors", dir);
    cr_assert_eq(access(path, F_OK), 0);

    cr_assert_eq(train("resumed", 3, ""), 0, "see %s/resumed.out", dir);
    cr_assert_eq(train("resumed", 6, "--auto-resume"), 0, "see %s/resumed.out", dir);
    read_losses("resumed", resumed, 700);
    int compared = 0;
    for (int k = 0; k < 700; k++) {
        if (full[k] == 0) continue;
        cr_assert_eq(resumed[k], full[k], "epoch %d iter %d: %.6g after resume, %.6g in one run", k / 100 + 1,
                     k % 100, resumed[k], full[k]);
        compared++;
    }
    cr_assert_eq(compared, n);
}

Test(train_e2e, bad_config_is_one_clear_error) {
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-run --plugin-dir plugins --plugin-dir tests/plugins tests/configs/runner/toy_shapes.cfg "
             "--work-dir %s/bad --cfg-options model.num_clases=5 >%s/bad.out 2>&1", dir, dir);
    cr_assert_neq(system(cmd), 0);
    static char text[1 << 16];
    char path[128];
    snprintf(path, sizeof path, "%s/bad.out", dir);
    FILE *f = fopen(path, "r");
    size_t k = fread(text, 1, sizeof text - 1, f);
    text[k] = 0;
    fclose(f);
    cr_assert(strstr(text, "num_clases") && strstr(text, "did you mean 'num_classes'"), "%s", text);
}

Test(train_e2e, auto_scale_lr_scales_by_the_batch_size) {
    /* mmdet: lr x (gpus x samples_per_gpu) / base_batch_size = 0.01 x 8 / 16 */
    cr_assert_eq(train("scaled", 1, "--auto-scale-lr"), 0,
                 "see %s/scaled.out", dir);
    char path[128], text[1 << 16] = "";
    snprintf(path, sizeof path, "%s/scaled.out", dir);
    FILE *f = fopen(path, "r");
    size_t k = fread(text, 1, sizeof text - 1, f);
    text[k] = 0;
    fclose(f);
    cr_assert(strstr(text, "LR has been automatically scaled from 0.01 to 0.005"), "%s", text);
}

Test(train_e2e, num_classes_must_match_the_dataset) {
    cr_assert_neq(train("wrong", 1, "--cfg-options model.num_classes=4"), 0);
    char path[128], text[1 << 16] = "";
    snprintf(path, sizeof path, "%s/wrong.out", dir);
    FILE *f = fopen(path, "r");
    size_t k = fread(text, 1, sizeof text - 1, f);
    text[k] = 0;
    fclose(f);
    cr_assert(strstr(text, "has num_classes = 4 but the dataset has 5 classes (rectangle, ellipse, triangle, ...)"),
              "%s", text);
}

static void read_out(const char *work, char *text, size_t cap) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s.out", dir, work);
    FILE *f = fopen(path, "r");
    cr_assert(f, "no %s", path);
    size_t k = fread(text, 1, cap - 1, f);
    text[k] = 0;
    fclose(f);
}

/* The groups the training command reads itself are checked like a
 * component's keys, and mmdet's rules on the runner hold: each case stops
 * before training with the message mmdet/mmcv would give, and writes no
 * checkpoint. */
Test(train_e2e, top_level_groups_and_runner_rules_are_checked) {
    static const struct { const char *opts, *want; } cases[] = {
        { "--cfg-options log_config.intervl=1", "unknown key 'intervl' in log_config (did you mean 'interval'?)" },
        { "--cfg-options data.samples_per_gp=1", "unknown key 'samples_per_gp' in data (did you mean 'samples_per_gpu'?)" },
        { "--cfg-options auto_scale_lr.base_batch=16", "unknown key 'base_batch' in auto_scale_lr" },
        { "--cfg-options data.workers_per_gpu=-1", "workers_per_gpu" },
        { "--cfg-options fp16=512.0", "fp16 must be a group such as { loss_scale = 512.0; }" },
        { "--cfg-options total_epochs=2", "total_epochs = 2 but runner.max_epochs = 1: they must agree" },
        { "--cfg-options runner.max_iters=2", "runner: only one of max_epochs and max_iters can be set" },
        /* a word that is not KEY=VALUE is named, also next to a valid pair */
        { "--cfg-options seed=1 foo", "--cfg-options 'foo': expected key=value" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char work[32];
        snprintf(work, sizeof work, "groups%zu", i);
        cr_assert_neq(train(work, 1, cases[i].opts), 0, "%s trained", cases[i].opts);
        static char text[1 << 16];
        read_out(work, text, sizeof text);
        cr_assert(strstr(text, cases[i].want), "%s: expected \"%s\" in:\n%s", cases[i].opts, cases[i].want, text);
        char path[256];
        snprintf(path, sizeof path, "%s/%s/latest.safetensors", dir, work);
        cr_assert_neq(access(path, F_OK), 0, "%s wrote a checkpoint", cases[i].opts);
    }
}

/* mmdet's train.py: a config without a runner but with total_epochs trains
 * an EpochBasedRunner of total_epochs epochs (not the default 12), with a
 * warning. */
Test(train_e2e, total_epochs_without_runner_sets_max_epochs) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-run --plugin-dir plugins --plugin-dir tests/plugins tests/configs/runner/toy_shapes.cfg "
             "--work-dir %s/total --seed 0 --cfg-options data.train.data_root=%s/data/ runner=None total_epochs=2 "
             ">%s/total.out 2>&1", dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "see %s/total.out", dir);
    static char text[1 << 16];
    read_out("total", text, sizeof text);
    cr_assert(strstr(text, "config is missing the runner: setting runner = { type = \"EpochBasedRunner\"; max_epochs = 2; }"),
              "%s", text);
    char path[256];
    snprintf(path, sizeof path, "%s/total/epoch_2.safetensors", dir);
    cr_assert_eq(access(path, F_OK), 0, "no epoch_2");
    snprintf(path, sizeof path, "%s/total/epoch_3.safetensors", dir);
    cr_assert_neq(access(path, F_OK), 0, "trained past total_epochs");
    /* mmdet's environment block in the log, and the runner's meta (env_info,
     * config, seed) as the JSON log's first line */
    cr_assert(strstr(text, "Environment info:\n-----") && strstr(text, "\nlibmmdet: ") &&
              strstr(text, "toy_classifier 1.0 Apache-2.0 "), "%s", text);
    char pattern[256];
    snprintf(pattern, sizeof pattern, "%s/total/*.log.json", dir);
    glob_t g;
    cr_assert_eq(glob(pattern, 0, NULL, &g), 0);
    FILE *f = fopen(g.gl_pathv[0], "r");
    static char first[1 << 16];
    cr_assert(f && fgets(first, sizeof first, f));
    fclose(f);
    globfree(&g);
    static const char head[] = "{\"env_info\": \"sys.platform: ";
    cr_assert(!strncmp(first, head, sizeof head - 1) && strstr(first, "\"config\": \"") &&
              strstr(first, "total_epochs = 2") && strstr(first, "\"seed\": 0}"), "%.300s", first);
}

/* mmdet 2.25+'s train.py: the val phase of a workflow uses the training
 * pipeline, from data.train.dataset when data.train is a wrapper
 * (tests/configs/runner/toy_shapes_wrapped_val.cfg: data.val's own pipeline
 * cannot be collated). The val line logs the classifier's loss. */
Test(train_e2e, val_phase_uses_the_wrapped_training_pipeline) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-run --plugin-dir plugins --plugin-dir tests/plugins tests/configs/runner/toy_shapes_wrapped_val.cfg "
             "--work-dir %s/wval --seed 0 --cfg-options data.train.dataset.data_root=%s/data/ data.val.data_root=%s/data/ "
             "runner.max_epochs=1 >%s/wval.out 2>&1", dir, dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "see %s/wval.out", dir);
    static char text[1 << 16];
    read_out("wval", text, sizeof text);
    cr_assert(strstr(text, "Epoch(val) [1]") && strstr(strstr(text, "Epoch(val) [1]"), "loss_cls: "), "%s", text);
}

/* A training set left empty by its filters stops the run before anything
 * is written: a work dir with a real checkpoint keeps it and its `latest`. */
Test(train_e2e, empty_training_set_stops_before_writing) {
    cr_assert_eq(train("empty", 1, ""), 0, "see %s/empty.out", dir);
    char latest[256], target[512] = "", after[512] = "";
    snprintf(latest, sizeof latest, "%s/empty/latest.safetensors", dir);
    cr_assert_gt(readlink(latest, target, sizeof target - 1), 0);
    cr_assert_neq(train("empty", 2, "--cfg-options data.train.min_size=100000"), 0);
    static char text[1 << 16];
    read_out("empty", text, sizeof text);
    cr_assert(strstr(text, "data.train (CocoDataset, annotations/instances_train.json): no images to train on"), "%s",
              text);
    cr_assert_gt(readlink(latest, after, sizeof after - 1), 0);
    cr_assert_str_eq(after, target, "latest moved");
    snprintf(latest, sizeof latest, "%s/empty/epoch_2.safetensors", dir);
    cr_assert_neq(access(latest, F_OK), 0, "an untrained epoch_2 was written");
}

/* load_from is mmcv's non-strict load: tensors of another shape keep their
 * initial values and are listed, the rest loads and training goes on (how a
 * model is fine-tuned with another head); resume_from continues a run and
 * refuses them. */
Test(train_e2e, load_from_is_lenient_and_resume_from_strict) {
    cr_assert_eq(train("ftsrc", 1, ""), 0, "see %s/ftsrc.out", dir);
    char opts[512];
    snprintf(opts, sizeof opts, "--cfg-options model.width=8 load_from=%s/ftsrc/epoch_1.safetensors", dir);
    cr_assert_eq(train("ft", 1, opts), 0, "see %s/ft.out", dir);
    static char text[1 << 16];
    read_out("ft", text, sizeof text);
    cr_assert(strstr(text, "of another shape (left as they were)") && strstr(text, "size mismatch for ") &&
              strstr(text, "the checkpoint has [16, "), "%s", text);
    snprintf(opts, sizeof opts, "--cfg-options model.width=8 resume_from=%s/ftsrc/epoch_1.safetensors", dir);
    cr_assert_neq(train("rs", 2, opts), 0);
    read_out("rs", text, sizeof text);
    cr_assert(strstr(text, "cannot resume: ") && strstr(text, "use load_from to fine-tune"), "%s", text);
}
