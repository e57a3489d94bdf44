/* PyTorch .pth reader (core/formats/pth.c) against files written by torch.save
 * (tests/golden/pth_golden.py): values of every storage type, views with
 * offsets and strides, the legacy and protocol-4 formats, a torchvision
 * ResNet through init_cfg Pretrained (outputs against torch's), an mmdet
 * checkpoint through load_from, and refusals: a pickle calling os.system,
 * truncated and corrupted files. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/evaluation.h>
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) {
    ctx = test_ctx(3, (const char *const[]){ "plugins/backbones", "plugins/necks", "plugins/bbox", "plugins/heads",
                                             "plugins/losses", "plugins/detectors", "plugins/optimizers", NULL });
}
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(pth, .init = setup, .fini = teardown, .timeout = 60);

static md_st *open_ok(const char *path) {
    md_error err = { 0 };
    md_st *st = md_pth_open(path, &err);
    cr_assert(st, "%s", err.msg);
    return st;
}

/* Every entry of the expected file equals the .pth's, exactly (same count,
 * element values read as double whatever the dtype). */
static void expect_same_entries(md_st *got, md_st *want, const char *what) {
    cr_assert_eq(md_st_count(got), md_st_count(want), "%s: %d entries, expected %d", what, md_st_count(got),
                 md_st_count(want));
    for (int i = 0; i < md_st_count(want); i++) {
        const char *name = md_st_name(want, i);
        cr_assert_eq(md_st_find(got, name), i, "%s: entry %s missing or out of order", what, name);
        md_tensor *a = md_st_tensor(ctx, got, name), *b = md_st_tensor(ctx, want, name);
        cr_assert(a && b, "%s: %s", what, name);
        cr_assert_eq(a->ndim, b->ndim, "%s: %s rank", what, name);
        for (int d = 0; d < a->ndim; d++) cr_assert_eq(a->shape[d], b->shape[d], "%s: %s shape", what, name);
        for (int64_t j = 0; j < md_tensor_numel(b); j++)
            cr_assert_eq(md_tensor_get(a, j), md_tensor_get(b, j), "%s: %s[%lld] = %.9g, expected %.9g", what, name,
                         (long long)j, md_tensor_get(a, j), md_tensor_get(b, j));
    }
}

Test(pth, plain_state_dict_in_all_three_formats) {
    md_st *want = golden_open("pth_plain");
    const char *files[] = { "tests/fixtures/pth_plain.pth", "tests/fixtures/pth_plain_legacy.pth",
                            "tests/fixtures/pth_plain_p4.pth" };
    for (int f = 0; f < 3; f++) {
        cr_assert(md_pth_sniff(files[f]), "%s", files[f]);
        md_st *st = open_ok(files[f]);
        expect_same_entries(st, want, files[f]);
        /* dtypes: floats as f32, int64 kept, narrower ints as i32, u8/bool as u8 */
        cr_assert_eq(md_st_dtype(st, md_st_find(st, "f64")), MD_F32);
        cr_assert_eq(md_st_dtype(st, md_st_find(st, "bf16")), MD_F32);
        cr_assert_eq(md_st_dtype(st, md_st_find(st, "i64")), MD_I64);
        cr_assert_eq(md_st_dtype(st, md_st_find(st, "i16")), MD_I32);
        cr_assert_eq(md_st_dtype(st, md_st_find(st, "bool")), MD_U8);
        cr_assert_eq(md_st_find(st, "note"), -1, "a non-tensor value is skipped");
        md_st_close(st);
        md_ctx_step_reset(ctx);
    }
    md_st_close(want);
}

Test(pth, sniffing_picks_the_format_by_content) {
    md_error err = { 0 };
    cr_assert_not(md_pth_sniff("tests/fixtures/pth_plain.safetensors"));
    cr_assert_not(md_pth_sniff("tests/fixtures/no_such_file.pth"));
    md_st *st = md_pth_open_weights("tests/fixtures/pth_plain.safetensors", &err);
    cr_assert(st, "%s", err.msg);
    md_st_close(st);
    st = md_pth_open_weights("tests/fixtures/pth_plain_legacy.pth", &err);
    cr_assert(st, "%s", err.msg);
    cr_assert_geq(md_st_find(st, "sliced"), 0);
    md_st_close(st);
    /* a safetensors file is not a .pth, whatever its name */
    cr_assert_null(md_pth_open("tests/fixtures/pth_plain.safetensors", &err));
    cr_assert(strstr(err.msg, "pth_plain.safetensors") && strstr(err.msg, "not a torch.save file"), "%s", err.msg);
}

Test(pth, os_system_is_refused_without_running_it) {
    const char *files[] = { "tests/fixtures/pth_evil.pth", "tests/fixtures/pth_evil_legacy.pth" };
    unlink("pth_evil_ran");
    for (int f = 0; f < 2; f++) {
        md_error err = { 0 };
        cr_assert_null(md_pth_open(files[f], &err), "%s was accepted", files[f]);
        cr_assert(strstr(err.msg, files[f]), "%s", err.msg);
        /* pickle names os.system by its home module, posix on Linux */
        cr_assert(strstr(err.msg, "system'") && strstr(err.msg, "refusing"), "%s", err.msg);
        /* the same through every by-name loader */
        cr_assert_null(md_pth_open_weights(files[f], &err));
    }
    cr_assert_neq(access("pth_evil_ran", F_OK), 0, "the payload ran");
}

static char *slurp_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(*n);
    cr_assert_eq(fread(buf, 1, *n, f), *n);
    fclose(f);
    return buf;
}

static void write_file(const char *path, const char *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
}

/* Every prefix of a file (in steps) is refused with a message naming it. */
Test(pth, truncated_files_are_refused) {
    const char *files[] = { "tests/fixtures/pth_plain.pth", "tests/fixtures/pth_plain_legacy.pth" };
    char tmp[] = "/tmp/pth_truncXXXXXX";
    int fd = mkstemp(tmp);
    cr_assert(fd >= 0);
    close(fd);
    for (int f = 0; f < 2; f++) {
        size_t n;
        char *buf = slurp_file(files[f], &n);
        for (size_t len = 0; len < n; len += (len < 64 ? 1 : 37)) {
            write_file(tmp, buf, len);
            md_error err = { 0 };
            md_st *st = md_pth_open(tmp, &err);
            cr_assert_null(st, "%s cut at %zu bytes (of %zu) was accepted", files[f], len, n);
            cr_assert(strstr(err.msg, tmp), "cut at %zu: %s", len, err.msg);
        }
        free(buf);
    }
    /* a zip cut inside a storage says so */
    size_t n;
    char *buf = slurp_file("tests/fixtures/pth_plain.pth", &n);
    write_file(tmp, buf, n - 400);
    md_error err = { 0 };
    cr_assert_null(md_pth_open(tmp, &err));
    cr_assert(strstr(err.msg, "truncated"), "%s", err.msg);
    free(buf);
    unlink(tmp);
}

/* Random byte flips: either a clean error or a result, never a crash (run
 * under SANITIZE=1 for the memory checks). */
Test(pth, corrupted_files_never_crash) {
    const char *files[] = { "tests/fixtures/pth_plain.pth", "tests/fixtures/pth_plain_legacy.pth",
                            "tests/fixtures/pth_plain_p4.pth" };
    char tmp[] = "/tmp/pth_fuzzXXXXXX";
    int fd = mkstemp(tmp);
    cr_assert(fd >= 0);
    close(fd);
    uint64_t s = 12345;
    int refused = 0, total = 0;
    for (int f = 0; f < 3; f++) {
        size_t n;
        char *orig = slurp_file(files[f], &n);
        char *buf = malloc(n);
        for (int trial = 0; trial < 150; trial++) {
            memcpy(buf, orig, n);
            for (int k = 0; k < 1 + trial % 4; k++) {
                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                size_t at = (size_t)(s >> 33) % n;
                buf[at] = (char)(s >> 13);
            }
            write_file(tmp, buf, n);
            md_error err = { 0 };
            md_st *st = md_pth_open(tmp, &err);
            if (!st) cr_assert(err.msg[0], "refused without a message");
            refused += !st;
            total++;
            md_st_close(st);
        }
        free(buf);
        free(orig);
    }
    cr_assert(refused > 0 && refused < total, "%d of %d refused", refused, total);
    unlink(tmp);
}

static md_module *build(const char *registry, const char *key, const char *text) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(text, "test_pth.cfg", &err);
    cr_assert(root, "%s", err.msg);
    md_module *m = md_build_from_cfg(ctx, registry, md_cfg_get(root, key), NULL, &err);
    cr_assert(m, "%s", err.msg);
    md_cfg_free(root);
    return m;
}

/* torchvision's resnet18 names at width 2: the state dict loads into mmdet's
 * ResNet (fc.* unexpected, nothing missing) and the stage outputs match
 * torch's on the same weights. */
Test(pth, torchvision_resnet_loads_into_the_backbone) {
    md_error err = { 0 };
    md_module *m = build("backbones", "backbone", "backbone = { type = \"ResNet\"; depth = 18; base_channels = 2; };");
    md_st *st = open_ok("tests/fixtures/pth_resnet_tv.pth");
    md_load_report rep;
    cr_assert_eq(md_module_load_state(ctx, m, st, NULL, false, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.missing, 0, "%s", rep.text);
    cr_assert_eq(rep.unexpected, 2, "%s", rep.text);
    cr_assert(strstr(rep.text, "unexpected: fc.weight") && strstr(rep.text, "unexpected: fc.bias"), "%s", rep.text);
    md_st_close(st);
    md_module_free(m);

    /* the same through init_cfg Pretrained, then the forward pass */
    m = build("backbones", "backbone",
              "backbone = { type = \"ResNet\"; depth = 18; base_channels = 2; init_cfg = { type = \"Pretrained\";"
              " checkpoint = \"tests/fixtures/pth_resnet_tv.pth\"; }; };");
    cr_assert_eq(md_model_init_weights(ctx, m, &err), 0, "%s", err.msg);
    md_module_train(m, false);
    md_st *gold = golden_open("pth_resnet_tv");
    md_tensor *x = golden_get(ctx, gold, "x");
    md_tensor *outs[4] = { 0 };
    bool prev = md_grad_set_enabled(ctx, false);
    cr_assert_eq(md_backbone_forward(ctx, m, x, outs, 4), 4, "%s", md_ctx_error(ctx)->msg);
    md_grad_set_enabled(ctx, prev);
    const char *names[] = { "c2", "c3", "c4", "c5" };
    for (int i = 0; i < 4; i++) assert_close(outs[i], golden_get(ctx, gold, names[i]), 1e-5, names[i]);
    md_st_close(gold);
    md_module_free(m);
}

static const char *const retina_cfg =
    "model = { type = \"RetinaNet\";"
    "  backbone = { type = \"ResNet\"; depth = 18; base_channels = 2; out_indices = [1, 2, 3]; };"
    "  neck = { type = \"FPN\"; in_channels = [4, 8, 16]; out_channels = 8; num_outs = 3; };"
    "  bbox_head = { type = \"RetinaHead\"; num_classes = 3; in_channels = 8; stacked_convs = 1; feat_channels = 8;"
    "    anchor_generator = { type = \"AnchorGenerator\"; octave_base_scale = 4; scales_per_octave = 2;"
    "                         ratios = [0.5, 1.0, 2.0]; strides = [8, 16, 32]; };"
    "    bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0];"
    "                   target_stds = [1.0, 1.0, 1.0, 1.0]; };"
    "    loss_cls = { type = \"FocalLoss\"; use_sigmoid = true; gamma = 2.0; alpha = 0.25; loss_weight = 1.0; };"
    "    loss_bbox = { type = \"L1Loss\"; loss_weight = 1.0; }; };"
    "  test_cfg = { nms_pre = 100; min_bbox_size = 0; score_thr = 0.05; nms = { type = \"nms\"; iou_threshold = 0.5; };"
    "               max_per_img = 20; }; };";

static int cmp_cb(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)is_param;
    md_st *want = user;
    char key[512];
    snprintf(key, sizeof key, "%s", name);
    md_tensor *w = md_st_tensor(ctx, want, key);
    cr_assert(w, "no expected value for %s", key);
    assert_close(t, w, 0, key);
    return 0;
}

/* An mmdet 2.x checkpoint {meta, state_dict, optimizer}: load_from fills
 * the whole detector, the meta comes through, resuming is refused. */
Test(pth, mmdet_checkpoint_loads_into_the_detector) {
    md_module *m = build("detectors", "model", retina_cfg);
    md_ckpt_info info;
    md_error err = { 0 };
    cr_assert_eq(md_checkpoint_load(ctx, "tests/fixtures/pth_mmdet_ckpt.pth", m, NULL, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(info.report.missing, 0, "%s", info.report.text);
    cr_assert_eq(info.report.unexpected, 0, "%s", info.report.text);
    cr_assert_eq(info.epoch, 12);
    cr_assert_eq(info.iter, 3000);
    cr_assert_str_eq(info.classes, "[\"rectangle\", \"ellipse\", \"triangle\"]");
    cr_assert(strstr(info.hook_msgs, "\"best_score\": 0.25"), "%s", info.hook_msgs);
    md_st *want = golden_open("pth_mmdet_ckpt");
    cr_assert_eq(md_module_visit(m, "", cmp_cb, want), 0);
    md_st_close(want);

    md_st *st = open_ok("tests/fixtures/pth_mmdet_ckpt.pth");
    cr_assert_str_eq(md_st_metadata(st, "mmdet_version"), "2.25.0");
    cr_assert_str_eq(md_st_metadata(st, "config"), "model = dict(type='RetinaNet')\n");
    cr_assert_str_eq(md_st_metadata(st, "seed"), "null");
    cr_assert_eq(md_st_find(st, "optimizer.state"), -1);
    md_st_close(st);

    /* resume_from a PyTorch checkpoint: its optimizer state is not ours */
    md_cfg *ocfg = md_cfg_parse("optimizer = { type = \"SGD\"; lr = 0.01; momentum = 0.9; };", "o.cfg", &err);
    md_optimizer *opt = md_optimizer_build(ctx, m, md_cfg_get(ocfg, "optimizer"), &err);
    cr_assert(opt, "%s", err.msg);
    cr_assert_eq(md_checkpoint_load(ctx, "tests/fixtures/pth_mmdet_ckpt.pth", m, opt, &info, &err), -1);
    cr_assert(strstr(err.msg, "load_from") && strstr(err.msg, "pth_mmdet_ckpt.pth"), "%s", err.msg);
    md_optimizer_free(opt);
    md_cfg_free(ocfg);
    md_module_free(m);
}

/* A state dict without num_batches_tracked (torch < 0.4.1) loads without
 * reporting them missing, as mmcv's load_state_dict. */
Test(pth, missing_bn_counters_are_not_reported) {
    char path[] = "/tmp/pth_nbtXXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    md_st *st = open_ok("tests/fixtures/pth_resnet_tv.pth");
    md_st_writer *w = md_st_writer_new();
    md_error err = { 0 };
    for (int i = 0; i < md_st_count(st); i++) {
        const char *name = md_st_name(st, i);
        if (strstr(name, "num_batches_tracked") || !strncmp(name, "fc.", 3)) continue;
        cr_assert_eq(md_st_writer_add(w, name, md_st_tensor(ctx, st, name), &err), 0, "%s", err.msg);
    }
    cr_assert_eq(md_st_writer_save(w, path, &err), 0, "%s", err.msg);
    md_st_writer_free(w);
    md_st_close(st);
    char text[512];
    snprintf(text, sizeof text,
             "backbone = { type = \"ResNet\"; depth = 18; base_channels = 2; init_cfg = { type = \"Pretrained\";"
             " checkpoint = \"%s\"; }; };", path);
    md_module *m = build("backbones", "backbone", text);
    cr_assert_eq(md_model_init_weights(ctx, m, &err), 0, "%s", err.msg);
    md_module_free(m);
    /* through md_checkpoint_load the report is exact */
    m = build("backbones", "backbone", "backbone = { type = \"ResNet\"; depth = 18; base_channels = 2; };");
    md_ckpt_info info;
    cr_assert_eq(md_checkpoint_load(ctx, path, m, NULL, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(info.report.missing, 0, "%s", info.report.text);
    cr_assert_eq(info.report.unexpected, 0, "%s", info.report.text);
    md_module_free(m);
    unlink(path);
}

/* pickle.dump of a dict (here {} at protocol 2, as Python writes it) is no
 * torch.save file and no safetensors: refused as what it is, whatever its
 * name, instead of being read as a safetensors header. */
Test(pth, plain_pickle_is_named_as_such) {
    char path[] = "/tmp/plain_pickle_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "\x80\x02}q\x00.", 6), 6);
    close(fd);
    md_error err = { 0 };
    cr_assert_null(md_pth_open_weights(path, &err));
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "a plain Python pickle, not a torch.save checkpoint"), "%s",
              err.msg);
    unlink(path);
}
