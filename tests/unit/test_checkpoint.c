/* Checkpoints: save/load with optimizer and metadata, latest link,
 * find_latest_checkpoint rules, and an interrupted write. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "testlib.h"

static md_ctx *ctx;
static char dir[64];
static void setup(void) {
    ctx = test_ctx(0, (const char *const[]){ "plugins/optimizers", NULL });
    test_tmpdir(dir, sizeof dir, "mmdet_ckpt");
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    md_ctx_free(ctx);
}
TestSuite(checkpoint, .init = setup, .fini = teardown);

static const md_module_class plain = { .name = "Plain" };

static md_module *model(float v) {
    md_module *m = md_module_new(sizeof(md_module), &plain);
    md_tensor *w = md_module_add_param(ctx, m, "w", MD_DIMS(4), NULL);
    md_tensor_fill_(w, v);
    return m;
}

static void touch(const char *name) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    cr_assert(f);
    fclose(f);
}

Test(checkpoint, save_and_resume_with_metadata) {
    md_module *m = model(1.5f);
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse("optimizer = { type = \"SGD\"; lr = 0.1; momentum = 0.9; };", "t.cfg", &err);
    md_optimizer *o = md_optimizer_build(ctx, m, md_cfg_get(cfg, "optimizer"), &err);
    cr_assert(o, "%s", err.msg);
    md_tensor *w = md_module_find(m, "w");
    w->grad = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(4), NULL);
    md_tensor_fill_(w->grad, 1.0);
    md_optimizer_step(o, NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/epoch_3.safetensors", dir);
    md_ckpt_meta meta = { .epoch = 3, .iter = 120, .config = "a = 1;", .classes = "[\"cat\", \"dog\"]",
                          .hook_msgs = "{\"best_score\": 0.5}" };
    cr_assert_eq(md_checkpoint_save(path, m, o, &meta, &err), 0, "%s", err.msg);
    cr_assert_eq(md_checkpoint_link_latest(dir, "epoch_3.safetensors", &err), 0, "%s", err.msg);

    md_module *m2 = model(0.0f);
    md_optimizer *o2 = md_optimizer_build(ctx, m2, md_cfg_get(cfg, "optimizer"), &err);
    char *latest = md_checkpoint_find_latest(dir);
    cr_assert(latest && strstr(latest, "latest.safetensors"));
    md_ckpt_info info;
    cr_assert_eq(md_checkpoint_load(ctx, latest, m2, o2, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(info.epoch, 3);
    cr_assert_eq(info.iter, 120);
    cr_assert_str_eq(info.classes, "[\"cat\", \"dog\"]");
    cr_assert_str_eq(info.hook_msgs, "{\"best_score\": 0.5}");
    cr_assert_eq(info.report.unexpected, 0, "%s", info.report.text);
    cr_assert_eq(info.report.missing, 0);
    assert_close(md_module_find(m2, "w"), w, 0, "weights");
    /* the momentum buffer came back: one more identical step agrees */
    md_tensor *w2 = md_module_find(m2, "w");
    w2->grad = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(4), NULL);
    md_tensor_fill_(w2->grad, 1.0);
    md_optimizer_step(o, NULL);
    md_optimizer_step(o2, NULL);
    assert_close(w2, w, 0, "after a resumed step");
    free(latest);
    md_optimizer_free(o);
    md_optimizer_free(o2);
    md_cfg_free(cfg);
    md_module_free(m);
    md_module_free(m2);
}

Test(checkpoint, find_latest_picks_the_highest_number) {
    cr_assert_null(md_checkpoint_find_latest(dir));
    touch("epoch_2.safetensors");
    touch("epoch_10.safetensors");
    touch("epoch_9.safetensors");
    touch("best_bbox_mAP_epoch_4.safetensors");
    touch("epoch_x.safetensors");
    touch("epoch_11.pth");
    char *p = md_checkpoint_find_latest(dir);
    cr_assert(p && strstr(p, "/epoch_10.safetensors"), "%s", p ? p : "(null)");
    free(p);
}

Test(checkpoint, interrupted_write_leaves_the_previous_file_intact) {
    md_module *m = model(2.0f);
    md_error err = { 0 };
    char path[128], tmp[160];
    snprintf(path, sizeof path, "%s/iter_5.safetensors", dir);
    md_ckpt_meta meta = { .epoch = 0, .iter = 5 };
    cr_assert_eq(md_checkpoint_save(path, m, NULL, &meta, &err), 0, "%s", err.msg);
    /* a writer killed mid-way leaves only a partial temporary file */
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    fputs("partial", f);
    fclose(f);
    md_module *m2 = model(0.0f);
    cr_assert_eq(md_checkpoint_load(ctx, path, m2, NULL, NULL, &err), 0, "%s", err.msg);
    cr_assert_float_eq(md_f32(md_module_find(m2, "w"))[3], 2.0f, 0);
    /* and the next save replaces the stale temporary file */
    md_tensor_fill_(md_module_find(m, "w"), 3.0);
    cr_assert_eq(md_checkpoint_save(path, m, NULL, &meta, &err), 0, "%s", err.msg);
    cr_assert_eq(access(tmp, F_OK), -1);
    cr_assert_eq(md_checkpoint_load(ctx, path, m2, NULL, NULL, &err), 0);
    cr_assert_float_eq(md_f32(md_module_find(m2, "w"))[0], 3.0f, 0);
    md_module_free(m);
    md_module_free(m2);
}

Test(checkpoint, corrupt_checkpoint_names_the_file) {
    touch("epoch_1.safetensors");
    md_module *m = model(0.0f);
    md_error err = { 0 };
    char path[128];
    snprintf(path, sizeof path, "%s/epoch_1.safetensors", dir);
    cr_assert_eq(md_checkpoint_load(ctx, path, m, NULL, NULL, &err), -1);
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    md_module_free(m);
}

Test(fs, mkdirs_makes_parents_and_names_what_fails) {
    char dir[64], path[256];
    test_tmpdir(dir, sizeof dir, "mmdet_mkdirs");
    md_error err;
    md_error_clear(&err);
    snprintf(path, sizeof path, "%s/a/b/c", dir);
    cr_assert_eq(md_fs_mkdirs(path, &err), 0, "%s", err.msg);
    struct stat st;
    cr_assert(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
    cr_assert_eq(md_fs_mkdirs(path, &err), 0, "an existing directory is fine");
    /* A regular file in the way: the error names the component. */
    snprintf(path, sizeof path, "%s/file", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fclose(f);
    cr_assert_neq(md_fs_mkdirs(path, &err), 0);
    cr_assert(strstr(err.msg, "not a directory"), "%s", err.msg);
    snprintf(path, sizeof path, "%s/file/sub", dir);
    cr_assert_neq(md_fs_mkdirs(path, &err), 0);
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
