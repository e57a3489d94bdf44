/* EvalHook end to end through bin/mmdet-run with OracleDetector
 * (tests/plugins/oracle_detector.c), whose bbox_mAP per epoch is scripted:
 * keep = [0, .5, .25, .5, 1] of the val images answered at epochs 1..4, so
 * mAP(1) == mAP(3), mAP(2) < mAP(1), mAP(4) == 1. */
#include <criterion/criterion.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testlib.h"

static char dir[64];

static void setup(void) {
    test_tmpdir(dir, sizeof dir, "mmdet_evalhook");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s/data --train 8 --val 4 --seed 3 >/dev/null", dir);
    cr_assert_eq(system(cmd), 0, "mmdet-shapes failed");
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(eval_hook, .init = setup, .fini = teardown, .timeout = 120);

static int train(const char *work, int epochs, const char *extra) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-run --plugin-dir plugins --plugin-dir tests/plugins tests/configs/eval/oracle_shapes.cfg "
             "--work-dir %s/%s --seed 0 %s --cfg-options data.train.data_root=%s/data/ data.val.data_root=%s/data/ "
             "model.ann_file=%s/data/annotations/instances_val.json runner.max_epochs=%d >>%s/%s.out 2>&1",
             dir, work, extra, dir, dir, dir, epochs, dir, work);
    return system(cmd);
}

/* Concatenation of every file matching <work>/<pattern>. */
static char *slurp(const char *work, const char *pattern) {
    char pat[256];
    snprintf(pat, sizeof pat, "%s/%s/%s", dir, work, pattern);
    glob_t g;
    static char text[1 << 18];
    text[0] = 0;
    size_t n = 0;
    if (glob(pat, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            FILE *f = fopen(g.gl_pathv[i], "r");
            if (f) {
                n += fread(text + n, 1, sizeof text - 1 - n, f);
                fclose(f);
            }
        }
        globfree(&g);
    }
    text[n] = 0;
    return text;
}

/* bbox_mAP of the val line of each epoch (-9 when absent); count returned. */
static int val_maps(const char *work, double *map, int max) {
    for (int i = 0; i < max; i++) map[i] = -9;
    int n = 0;
    char *text = slurp(work, "*.log.json");
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strstr(line, "\"mode\": \"val\"")) continue;
        char *e = strstr(line, "\"epoch\": "), *m = strstr(line, "\"bbox_mAP\": ");
        cr_assert(e && m && strstr(line, "\"lr\": ") && strstr(line, "\"bbox_mAP_l\": "), "%s", line);
        int epoch = atoi(e + 9);
        if (epoch >= 0 && epoch < max) map[epoch] = atof(m + 12);
        n++;
    }
    return n;
}

static bool exists(const char *work, const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s/%s", dir, work, name);
    return access(path, F_OK) == 0;
}

Test(eval_hook, save_best_auto_keeps_the_best_epoch) {
    cr_assert_eq(train("auto", 4, ""), 0, "see %s/auto.out", dir);
    double map[8];
    cr_assert_eq(val_maps("auto", map, 8), 4);
    cr_expect_gt(map[1], 0.0);
    cr_expect_lt(map[1], 1.0);
    cr_expect_eq(map[3], map[1]);
    cr_expect_lt(map[2], map[1]);
    cr_expect_eq(map[4], 1.0);
    cr_expect(exists("auto", "best_bbox_mAP_epoch_4.safetensors"));
    cr_expect(!exists("auto", "best_bbox_mAP_epoch_1.safetensors"), "the previous best is removed");
    char *log = slurp("auto", "*.log");
    cr_expect(strstr(log, "Epoch(val) [1][3], bbox_mAP: "), "console val line");
    cr_expect(strstr(log, "bbox_mAP_copypaste: 1.000 1.000 1.000"));
    cr_expect(strstr(log, "Best bbox_mAP is 1.0000 at 4 epoch."));
}

Test(eval_hook, rule_less_keeps_the_lowest) {
    cr_assert_eq(train("less2", 4, "--cfg-options evaluation.rule=less evaluation.save_best=bbox_mAP"), 0,
                 "see %s/less2.out", dir);
    cr_expect(exists("less2", "best_bbox_mAP_epoch_2.safetensors"));
    cr_expect(!exists("less2", "best_bbox_mAP_epoch_1.safetensors"));
    cr_expect(!exists("less2", "best_bbox_mAP_epoch_4.safetensors"));
}

/* best_score and best_ckpt live in the checkpoint's hook messages: after a
 * resume, epoch 3 (equal to epoch 1) is not a new best, and epoch 4's best
 * replaces the file of epoch 1, which the first run wrote. */
Test(eval_hook, best_survives_resume) {
    cr_assert_eq(train("resume", 2, ""), 0, "see %s/resume.out", dir);
    cr_assert(exists("resume", "best_bbox_mAP_epoch_1.safetensors"));
    cr_assert(!exists("resume", "best_bbox_mAP_epoch_2.safetensors"));
    cr_assert_eq(train("resume", 4, "--auto-resume"), 0, "see %s/resume.out", dir);
    char *out = slurp("resume", "../resume.out");
    cr_expect(!strstr(out, "saved as best_bbox_mAP_epoch_3"), "epoch 3 is not better than the restored best");
    cr_expect(exists("resume", "best_bbox_mAP_epoch_4.safetensors"));
    cr_expect(!exists("resume", "best_bbox_mAP_epoch_1.safetensors"), "the restored best path is removed");
    double map[8];
    val_maps("resume", map, 8);
    cr_expect_eq(map[3], map[1]);
    cr_expect_eq(map[4], 1.0);
}

Test(eval_hook, interval_start_and_no_validate) {
    cr_assert_eq(train("interval", 4, "--cfg-options evaluation.interval=2 evaluation.save_best=None"), 0);
    double map[8];
    cr_expect_eq(val_maps("interval", map, 8), 2);
    cr_expect(map[1] == -9 && map[3] == -9 && map[2] != -9 && map[4] == 1.0);
    cr_expect(!exists("interval", "best_bbox_mAP_epoch_4.safetensors"), "no save_best, no best checkpoint");
    /* start = 3: epochs 3 and 4 only (mmcv: (epoch + 1 - start) % interval) */
    cr_assert_eq(train("start", 4, "--cfg-options evaluation.start=3"), 0);
    cr_expect_eq(val_maps("start", map, 8), 2);
    cr_expect(map[2] == -9 && map[3] != -9 && map[4] == 1.0);
    cr_assert_eq(train("novalidate", 2, "--no-validate"), 0);
    cr_expect_eq(val_maps("novalidate", map, 8), 0);
    cr_expect(!exists("novalidate", "best_bbox_mAP_epoch_1.safetensors"));
}

Test(eval_hook, a_key_without_rule_is_an_error) {
    cr_assert_neq(train("badkey", 1, "--cfg-options evaluation.save_best=foo"), 0);
    char *out = slurp("badkey", "../badkey.out");
    cr_expect(strstr(out, "cannot infer the rule for key foo"), "%s", out);
}

/* mmcv saves a best checkpoint only for a truthy key score: a model that
 * never finds anything (bbox_mAP 0.0 at every evaluation) leaves none. */
Test(eval_hook, zero_score_is_never_best) {
    cr_assert_eq(train("zero", 2, "--cfg-options model.keep=[0.0]"), 0, "see %s/zero.out", dir);
    double map[8];
    cr_assert_eq(val_maps("zero", map, 8), 2);
    cr_expect_eq(map[1], 0.0);
    cr_expect_eq(map[2], 0.0);
    cr_expect(!exists("zero", "best_bbox_mAP_epoch_1.safetensors"), "a best checkpoint for mAP 0.0");
    cr_expect(!exists("zero", "best_bbox_mAP_epoch_2.safetensors"), "a best checkpoint for mAP 0.0");
}

Test(eval_hook, iter_based_runner_logs_and_saves_by_iteration) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-run --plugin-dir plugins --plugin-dir tests/plugins tests/configs/eval/oracle_shapes_iter.cfg "
             "--work-dir %s/iter --seed 0 --cfg-options data.train.data_root=%s/data/ data.val.data_root=%s/data/ "
             "model.ann_file=%s/data/annotations/instances_val.json >%s/iter.out 2>&1", dir, dir, dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "see %s/iter.out", dir);
    char *log = slurp("iter", "*.log");
    cr_expect(strstr(log, "Iter [1/4]") && strstr(log, "Iter [4/4]"), "%s", log);
    cr_expect(strstr(log, "Iter(val) [2]") && strstr(log, "Iter(val) [4]"), "%s", log);
    cr_expect(!strstr(log, "Epoch ["), "%s", log);
    cr_expect(exists("iter", "iter_2.safetensors") && exists("iter", "iter_4.safetensors"));
    cr_expect(!exists("iter", "epoch_1.safetensors"));
}

/* metric as a list (mmdet's metric=['bbox', 'segm']) reaches the dataset's
 * evaluate metric by metric: ['bbox'] gives the bbox metrics; 'segm' of a
 * model without masks is the dataset's error naming segm. */
Test(eval_hook, metric_list) {
    cr_assert_eq(train("mlist", 1, "--cfg-options 'evaluation.metric=[bbox]'"), 0, "see %s/mlist.out", dir);
    double map[4];
    cr_assert_eq(val_maps("mlist", map, 4), 1);
    cr_assert_neq(train("mlist2", 1, "--cfg-options 'evaluation.metric=[bbox,segm]'"), 0);
    char *out = slurp("mlist2", "../mlist2.out");
    cr_expect(strstr(out, "segm needs mask results"), "%s", out);
}
