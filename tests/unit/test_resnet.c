/* ResNet backbone plugin: outputs and gradients against PyTorch (mmdet's
 * ResNet semantics, tests/golden/backbones_golden.py), state dict names,
 * frozen_stages and norm_eval, init, Pretrained, config errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "testlib.h"

static md_ctx *ctx;
static md_st *gold;
static void setup(void) {
    ctx = test_ctx(7, (const char *const[]){ "plugins/backbones/resnet.so", NULL });
    gold = golden_open("backbones_resnet");
}
static void teardown(void) {
    md_st_close(gold);
    md_ctx_free(ctx);
}
TestSuite(resnet, .init = setup, .fini = teardown);

/* Builds `backbone = {...}` from config text; NULL with err set on failure. */
static md_module *build(const char *text, md_error *err) {
    md_cfg *root = md_cfg_parse(text, "test_resnet.cfg", err);
    if (!root) return NULL;
    md_module *m = md_build_backbone(ctx, md_cfg_get(root, "backbone"), err);
    md_cfg_free(root);
    return m;
}

static md_module *build_ok(const char *text) {
    md_error err = { 0 };
    md_module *m = build(text, &err);
    cr_assert_not_null(m, "build failed: %s", err.msg);
    return m;
}

static int count_cb(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)name, (void)t, (void)is_param;
    ++*(int *)user;
    return 0;
}

/* Loads fixture entries "<tag>.w.*": every module tensor must be present and
 * every fixture entry of the tag used (the names are exactly mmdet's). */
static void load_weights(md_module *m, const char *tag) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s.w.", tag);
    md_load_report rep;
    md_error err = { 0 };
    cr_assert_eq(md_module_load_state(ctx, m, gold, prefix, false, &rep, &err), 0, "%s", err.msg);
    int n_module = 0, n_fixture = 0;
    md_module_visit(m, "", count_cb, &n_module);
    for (int i = 0; i < md_st_count(gold); i++) n_fixture += !strncmp(md_st_name(gold, i), prefix, strlen(prefix));
    cr_assert_eq(rep.missing, 0, "missing names:\n%.1000s", rep.text);
    cr_assert_eq(rep.loaded, n_module);
    cr_assert_eq(rep.loaded, n_fixture, "the fixture has %d %s entries, %d loaded", n_fixture, tag, rep.loaded);
}

static void expect_error(const char *text, const char *needle1, const char *needle2);

static md_tensor *fixture(const char *fmt, const char *tag, const char *what) {
    char key[160];
    snprintf(key, sizeof key, fmt, tag, what);
    return golden_get(ctx, gold, key);
}

/* Forward, compare outputs, backward of sum(out_i * gout_i), compare grads. */
static void check_case(md_module *m, const char *tag, int n_expected, const char *const *grads, bool input_grad) {
    md_tensor *img = fixture("%s.%s", tag[1] == '1' ? "r18" : "r50", "input");   /* r18, r18f; r50, r50c */
    img->requires_grad = input_grad;
    md_tensor *outs[MD_MAX_LEVELS];
    int n = md_backbone_forward(ctx, m, img, outs, MD_MAX_LEVELS);
    cr_assert_eq(n, n_expected, "forward: %s", md_ctx_error(ctx)->msg);
    md_tensor *loss = NULL;
    for (int i = 0; i < n; i++) {
        char k[16];
        snprintf(k, sizeof k, "out%d", i);
        char what[64];
        snprintf(what, sizeof what, "%s output %d", tag, i);
        assert_close(outs[i], fixture("%s.%s", tag, k), 1e-4, what);
        snprintf(k, sizeof k, "gout%d", i);
        md_tensor *s = md_sum(ctx, md_mul(ctx, outs[i], fixture("%s.%s", tag, k)), MD_DIM_ALL, false);
        loss = loss ? md_add(ctx, loss, s) : s;
    }
    md_error err = { 0 };
    cr_assert_eq(md_backward(ctx, loss, &err), 0, "%s", err.msg);
    for (int i = 0; grads[i]; i++) {
        md_tensor *p = md_module_find(m, grads[i]);
        cr_assert_not_null(p, "%s", grads[i]);
        cr_assert_not_null(p->grad, "%s: no gradient", grads[i]);
        char what[96], key[96];
        snprintf(what, sizeof what, "%s grad %s", tag, grads[i]);
        snprintf(key, sizeof key, "grad.%s", grads[i]);
        assert_close(p->grad, fixture("%s.%s", tag, key), 1e-4, what);
    }
    if (input_grad) {
        cr_assert_not_null(img->grad);
        assert_close(img->grad, fixture("%s.%s", tag, "grad.input"), 1e-4, "input grad");
    }
}

Test(resnet, r18_matches_pytorch_with_norm_eval) {
    md_module *m = build_ok("backbone = { type = \"ResNet\"; depth = 18; base_channels = 4; };");
    load_weights(m, "r18");
    md_module_train(m, true);
    /* norm_eval: every BN in eval, convs still training */
    cr_assert_not(md_module_child(md_module_child(md_module_child(m, "layer2"), "0"), "bn1")->training);
    cr_assert(md_module_child(md_module_child(md_module_child(m, "layer2"), "0"), "conv1")->training);
    static const char *const grads[] = { "conv1.weight", "bn1.weight", "layer1.0.conv1.weight",
                                         "layer2.0.downsample.0.weight", "layer3.1.conv2.weight",
                                         "layer4.1.bn2.bias", NULL };
    check_case(m, "r18", 4, grads, true);
    /* running statistics untouched in train mode with norm_eval */
    assert_close(md_module_find(m, "layer2.0.bn1.running_mean"), fixture("%s.%s", "r18.w", "layer2.0.bn1.running_mean"),
                 0, "running_mean");
    cr_assert_eq(md_i64(md_module_find(m, "layer2.0.bn1.num_batches_tracked"))[0], 3);
    md_module_free(m);
}

Test(resnet, frozen_stages_and_batch_statistics) {
    md_module *m = build_ok("backbone = { type = \"ResNet\"; depth = 18; base_channels = 4; frozen_stages = 1;"
                            " norm_eval = false; };");
    load_weights(m, "r18");
    md_module_train(m, true);
    cr_assert_not(md_module_child(m, "conv1")->training);
    cr_assert_not(md_module_child(md_module_child(md_module_child(m, "layer1"), "1"), "bn2")->training);
    cr_assert(md_module_child(md_module_child(md_module_child(m, "layer2"), "0"), "bn1")->training);
    static const char *const frozen[] = { "conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight",
                                          "layer1.1.bn2.bias", NULL };
    for (int i = 0; frozen[i]; i++) cr_assert_not(md_module_find(m, frozen[i])->requires_grad, "%s", frozen[i]);
    cr_assert(md_module_find(m, "layer2.0.conv1.weight")->requires_grad);
    /* trainable parameters: everything outside the stem and layer1 */
    int64_t stem_l1 = md_module_num_params(md_module_child(m, "conv1"), false) +
                      md_module_num_params(md_module_child(m, "bn1"), false) +
                      md_module_num_params(md_module_child(m, "layer1"), false);
    cr_assert_eq(md_module_num_params(m, true), md_module_num_params(m, false) - stem_l1);

    static const char *const grads[] = { "layer2.0.conv1.weight", "layer2.0.bn1.weight", "layer3.1.conv2.weight", NULL };
    check_case(m, "r18f", 4, grads, false);
    for (int i = 0; frozen[i]; i++) {
        md_tensor *g = md_module_find(m, frozen[i])->grad;
        for (int64_t k = 0; g && k < md_tensor_numel(g); k++)
            cr_assert_eq(md_tensor_get(g, k), 0.0, "frozen %s got a gradient", frozen[i]);
    }
    static const char *const after[] = { "layer1.0.bn1.running_mean", "layer2.0.bn1.running_mean",
                                         "layer2.0.bn1.running_var", "layer4.1.bn2.running_var", NULL };
    for (int i = 0; after[i]; i++) {
        char key[96];
        snprintf(key, sizeof key, "after.%s", after[i]);
        assert_close(md_module_find(m, after[i]), fixture("%s.%s", "r18f", key), 1e-5, after[i]);
    }
    cr_assert_eq(md_i64(md_module_find(m, "layer2.0.bn1.num_batches_tracked"))[0], 4);
    cr_assert_eq(md_i64(md_module_find(m, "layer1.0.bn1.num_batches_tracked"))[0], 3);
    md_module_free(m);
}

Test(resnet, r50_pytorch_style_matches_pytorch) {
    md_module *m = build_ok("backbone = { type = \"ResNet\"; depth = 50; base_channels = 4; out_indices = [1, 2, 3]; };");
    load_weights(m, "r50");
    md_module_train(m, false);
    const md_backbone_class *bc = md_backbone_class_of(m);
    cr_assert_eq(bc->num_outs(m), 3);
    int ch[] = { 32, 64, 128 }, st[] = { 8, 16, 32 };
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(bc->out_channels(m, i), ch[i]);
        cr_assert_eq(bc->out_stride(m, i), st[i]);
    }
    static const char *const grads[] = { "conv1.weight", "layer1.0.conv2.weight", "layer3.0.downsample.1.weight",
                                         "layer4.2.conv3.weight", NULL };
    check_case(m, "r50", 3, grads, true);
    md_module_free(m);
}

static int zero_offsets_cb(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)is_param;
    if (strstr(name, "conv_offset.")) {
        md_tensor_fill_(t, 0);
        ++*(int *)user;
    }
    return 0;
}

/* dcn in stages 2-4 (mmdet's dconv_c3-c5): the Bottleneck's conv2 a DCN
 * with mmdet's names; with its offsets at zero it is the plain conv, so the
 * plain ResNet-50's outputs and gradients (PyTorch) hold, the input's
 * through every DCN included. */
Test(resnet, r50_dcn_zero_offsets_match_the_plain_network) {
    md_module *m = build_ok("backbone = { type = \"ResNet\"; depth = 50; base_channels = 4; out_indices = [1, 2, 3];"
                            " dcn = { type = \"DCN\"; deform_groups = 1; fallback_on_stride = false; };"
                            " stage_with_dcn = [false, true, true, true]; };");
    cr_assert_null(md_module_find(m, "layer1.0.conv2.conv_offset.weight"));
    md_tensor *off = md_module_find(m, "layer2.0.conv2.conv_offset.weight");
    cr_assert_not_null(off);
    cr_assert(off->shape[0] == 18 && off->shape[1] == 8 && off->shape[2] == 3);
    /* no init_cfg: mmdet's Kaiming init of every nn.Conv2d reaches conv_offset */
    double ss = 0;
    for (int64_t i = 0; i < md_tensor_numel(off); i++) ss += md_f32(off)[i] * md_f32(off)[i];
    double want = sqrt(2.0 / (18 * 9)), sd = sqrt(ss / (double)md_tensor_numel(off));
    cr_assert(sd > 0.8 * want && sd < 1.2 * want, "conv_offset std %g, want about %g", sd, want);
    md_load_report rep;
    md_error err = { 0 };
    cr_assert_eq(md_module_load_state(ctx, m, gold, "r50.w.", false, &rep, &err), 0, "%s", err.msg);
    int n_off = 0;
    md_module_visit(m, "", zero_offsets_cb, &n_off);
    cr_assert_eq(rep.missing, n_off, "%s", rep.text);   /* only the offsets are new */
    cr_assert_eq(n_off, 2 * (4 + 6 + 3));
    md_module_train(m, false);
    static const char *const grads[] = { "conv1.weight", "layer1.0.conv2.weight", "layer3.0.downsample.1.weight",
                                         "layer4.2.conv3.weight", NULL };
    check_case(m, "r50", 3, grads, true);
    md_tensor *g = md_module_find(m, "layer3.1.conv2.conv_offset.weight")->grad;
    cr_assert_not_null(g, "the offsets train");
    md_module_free(m);
}

Test(resnet, dcn_options_and_errors) {
    /* fallback_on_stride: mmdet's Bottleneck pops it from the dcn dict all
     * blocks share, so only the first dcn block keeps a plain conv2 */
    md_module *m = build_ok("backbone = { type = \"ResNet\"; depth = 50; base_channels = 4; num_stages = 2;"
                            " out_indices = [1]; dcn = { type = \"DCNv2\"; fallback_on_stride = true; };"
                            " stage_with_dcn = [false, true]; };");
    cr_assert_null(md_module_find(m, "layer2.0.conv2.conv_offset.weight"));
    cr_assert_eq(md_module_find(m, "layer2.1.conv2.conv_offset.weight")->shape[0], 27);
    md_module_free(m);
    /* stage_with_dcn without dcn: ignored */
    m = build_ok("backbone = { type = \"ResNet\"; depth = 18; base_channels = 4; stage_with_dcn = [true]; };");
    md_module_free(m);
    expect_error("backbone = { type = \"ResNet\"; depth = 18; dcn = { type = \"DCN\"; };"
                 " stage_with_dcn = [false, true, false, false]; };", "BasicBlock", "stage 1");
    expect_error("backbone = { type = \"ResNet\"; depth = 50; dcn = { type = \"DCN\"; };"
                 " stage_with_dcn = [false, true]; };", "stage_with_dcn", "num_stages");
    expect_error("backbone = { type = \"ResNet\"; depth = 50; dcn = { type = \"Conv\"; }; };", "dcn.type", "DCN");
    expect_error("backbone = { type = \"ResNet\"; depth = 50; dcn = { type = \"DCN\"; groups = 2; }; };",
                 "groups", NULL);
}

Test(resnet, r50_caffe_style_with_dilation_matches_pytorch) {
    md_module *m = build_ok("backbone = { type = \"ResNet\"; depth = 50; base_channels = 4; style = \"caffe\";"
                            " strides = [1, 2, 2, 1]; dilations = [1, 1, 1, 2]; };");
    load_weights(m, "r50");
    md_module_train(m, false);
    cr_assert_eq(md_backbone_class_of(m)->out_stride(m, 3), 16);
    static const char *const grads[] = { "layer2.0.conv1.weight", "layer4.1.conv2.weight", NULL };
    check_case(m, "r50c", 4, grads, false);
    md_module_free(m);
}

static double stddev(const md_tensor *t) {
    double s = 0, s2 = 0;
    int64_t n = md_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = md_tensor_get(t, i);
        s += v;
        s2 += v * v;
    }
    return sqrt(s2 / n - (s / n) * (s / n));
}

static bool all_equal(const md_tensor *t, double v) {
    for (int64_t i = 0; i < md_tensor_numel(t); i++)
        if (md_tensor_get(t, i) != v) return false;
    return true;
}

Test(resnet, init_as_mmdet) {
    md_module *m = build_ok("backbone = { type = \"ResNet\"; depth = 50; base_channels = 16; };");
    /* kaiming normal, fan_out, relu: std sqrt(2 / (out * k * k)) */
    md_tensor *w = md_module_find(m, "layer3.0.conv2.weight");   /* [64, 64, 3, 3] */
    double want = sqrt(2.0 / (64 * 9));
    cr_assert(fabs(stddev(w) / want - 1) < 0.05, "std %g, want %g", stddev(w), want);
    cr_assert(all_equal(md_module_find(m, "layer3.0.bn1.weight"), 1));
    cr_assert(all_equal(md_module_find(m, "layer3.0.bn1.bias"), 0));
    cr_assert(all_equal(md_module_find(m, "layer3.0.downsample.1.weight"), 1));
    /* zero_init_residual: the last BN of each block */
    cr_assert(all_equal(md_module_find(m, "layer3.0.bn3.weight"), 0));
    cr_assert(all_equal(md_module_find(m, "layer1.2.bn3.weight"), 0));
    cr_assert(all_equal(md_module_find(m, "bn1.weight"), 1));
    cr_assert_null(md_module_find(m, "fc.weight"));
    md_module_free(m);
    m = build_ok("backbone = { type = \"ResNet\"; depth = 18; base_channels = 4; zero_init_residual = false; };");
    cr_assert(all_equal(md_module_find(m, "layer1.0.bn2.weight"), 1));
    md_module_free(m);
    m = build_ok("backbone = { type = \"ResNet\"; depth = 18; base_channels = 4; };");
    cr_assert(all_equal(md_module_find(m, "layer1.0.bn2.weight"), 0));
    cr_assert(all_equal(md_module_find(m, "layer1.0.bn1.weight"), 1));
    md_module_free(m);
}

Test(resnet, norm_cfg_requires_grad_false_freezes_every_bn) {
    md_module *m = build_ok("backbone = { type = \"ResNet\"; depth = 18; base_channels = 4;"
                            " norm_cfg = { type = \"BN\"; requires_grad = false; }; };");
    cr_assert_not(md_module_find(m, "layer3.1.bn2.weight")->requires_grad);
    cr_assert_not(md_module_find(m, "bn1.bias")->requires_grad);
    cr_assert(md_module_find(m, "layer3.1.conv2.weight")->requires_grad);
    md_module_free(m);
}

Test(resnet, pretrained_init_cfg_loads_with_prefix) {
    md_module *src = build_ok("backbone = { type = \"ResNet\"; depth = 18; base_channels = 4; };");
    load_weights(src, "r18");
    char path[] = "/tmp/resnet_pretrainedXXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    md_error err = { 0 };
    md_st_writer *w = md_st_writer_new();
    cr_assert_eq(md_module_save_state(src, w, "backbone", &err), 0, "%s", err.msg);
    cr_assert_eq(md_st_writer_save(w, path, &err), 0, "%s", err.msg);
    md_st_writer_free(w);

    char text[512];
    snprintf(text, sizeof text,
             "backbone = { type = \"ResNet\"; depth = 18; base_channels = 4;"
             " init_cfg = { type = \"Pretrained\"; checkpoint = \"%s\"; prefix = \"backbone.\"; }; };", path);
    md_module *m = build_ok(text);
    cr_assert(all_equal(md_module_find(m, "layer1.0.bn2.weight"), 0));   /* not loaded yet */
    cr_assert_eq(md_model_init_weights(ctx, m, &err), 0, "%s", err.msg);
    static const char *const names[] = { "conv1.weight", "layer1.0.bn2.weight", "layer4.1.bn2.running_var",
                                         "layer3.0.downsample.0.weight", NULL };
    for (int i = 0; names[i]; i++)
        assert_close(md_module_find(m, names[i]), md_module_find(src, names[i]), 0, names[i]);
    md_module_free(m);

    /* a prefix that matches nothing is an error, as in mmcv */
    snprintf(text, sizeof text,
             "backbone = { type = \"ResNet\"; depth = 18; base_channels = 4;"
             " init_cfg = { type = \"Pretrained\"; checkpoint = \"%s\"; prefix = \"neck.\"; }; };", path);
    m = build_ok(text);
    cr_assert_neq(md_model_init_weights(ctx, m, &err), 0);
    cr_assert(strstr(err.msg, "neck."), "%s", err.msg);
    md_module_free(m);

    /* mmdet's `pretrained` shorthand, no prefix: names "backbone.*" do not match */
    snprintf(text, sizeof text, "backbone = { type = \"ResNet\"; depth = 18; base_channels = 4; pretrained = \"%s\"; };",
             path);
    m = build_ok(text);
    cr_assert_eq(md_model_init_weights(ctx, m, &err), 0, "%s", err.msg);
    cr_assert(all_equal(md_module_find(m, "layer1.0.bn2.weight"), 0));
    md_module_free(m);
    md_module_free(src);
    unlink(path);

    m = build_ok("backbone = { type = \"ResNet\"; depth = 18; base_channels = 4;"
                 " init_cfg = { type = \"Pretrained\"; checkpoint = \"torchvision://resnet18\"; }; };");
    cr_assert_neq(md_model_init_weights(ctx, m, &err), 0);
    cr_assert(strstr(err.msg, "torchvision://resnet18") && strstr(err.msg, "ResNet"), "%s", err.msg);
    md_module_free(m);
}

static void expect_error(const char *text, const char *needle1, const char *needle2) {
    md_error err = { 0 };
    md_module *m = build(text, &err);
    cr_assert_null(m, "built despite: %s", text);
    cr_assert(strstr(err.msg, needle1), "message lacks '%s': %s", needle1, err.msg);
    if (needle2) cr_assert(strstr(err.msg, needle2), "message lacks '%s': %s", needle2, err.msg);
}

Test(resnet, config_errors_are_reported) {
    expect_error("backbone = { type = \"ResNet\"; depth = 18; frozen_stage = 1; };", "frozen_stage", "frozen_stages");
    expect_error("backbone = { type = \"ResNet\"; depth = 18; norm_evl = true; };", "did you mean", "norm_eval");
    expect_error("backbone = { type = \"ResNet\"; depth = 19; };", "depth 19", "ResNet");
    expect_error("backbone = { type = \"ResNet\"; depth = 18; out_indices = [0, 4]; };", "out_indices", "4");
    expect_error("backbone = { type = \"ResNet\"; depth = 18; style = \"tf\"; };", "style", "tf");
    expect_error("backbone = { type = \"ResNet\"; depth = 18; norm_cfg = { type = \"GN\"; }; };", "num_groups", NULL);
    expect_error("backbone = { type = \"ResNet\"; depth = 18; norm_cfg = { type = \"LN\"; }; };", "'LN'", "GN");
    expect_error("backbone = { type = \"ResNet\"; depth = 18; norm_cfg = { type = \"GN\"; num_groups = 3; }; };",
                 "num_groups must be positive and divide the channels", NULL);
    expect_error("backbone = { type = \"ResNet\"; depth = 18; norm_cfg = { type = \"BN\"; requires_gard = true; }; };",
                 "requires_gard", "requires_grad");
    expect_error("backbone = { type = \"ResNet\"; depth = 18; init_cfg = { type = \"Pretrain\"; }; };", "Pretrain",
                 "Pretrained");
    expect_error("backbone = { type = \"ResNet\"; };", "depth", NULL);
    expect_error("backbone = { type = \"ResNett\"; depth = 18; };", "ResNett", "ResNet");
}

Test(resnet, forward_reports_shape_errors_with_the_module_path) {
    md_module *m = build_ok("backbone = { type = \"ResNet\"; depth = 18; base_channels = 4; };");
    md_tensor *img = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 4, 32, 32));   /* 4 channels, conv1 wants 3 */
    md_tensor *outs[MD_MAX_LEVELS];
    cr_assert_eq(md_backbone_forward(ctx, m, img, outs, MD_MAX_LEVELS), -1);
    cr_assert(strstr(md_ctx_error(ctx)->msg, "conv1"), "%s", md_ctx_error(ctx)->msg);
    md_module_free(m);
}

/* Inference (grad mode off) hands back activations as soon as they are
 * consumed; the outputs must be exactly those of the same forward with grad
 * mode on, where nothing is released. Large enough that the activations are
 * pooled tensors. */
Test(resnet, inference_release_keeps_outputs_exact) {
    md_module *m = build_ok("backbone = { type = \"ResNet\"; depth = 50; base_channels = 4; out_indices = [1, 3]; };");
    md_module_train(m, false);
    md_tensor *img = randn_param(ctx, MD_DIMS(1, 3, 480, 448), 5);
    img->requires_grad = false;
    md_tensor *ref[MD_MAX_LEVELS], *outs[MD_MAX_LEVELS];
    cr_assert_eq(md_backbone_forward(ctx, m, img, ref, MD_MAX_LEVELS), 2, "%s", md_ctx_error(ctx)->msg);
    bool prev = md_grad_set_enabled(ctx, false);
    size_t before = md_ctx_arena_used(ctx);
    cr_assert_eq(md_backbone_forward(ctx, m, img, outs, MD_MAX_LEVELS), 2, "%s", md_ctx_error(ctx)->msg);
    size_t grew = md_ctx_arena_used(ctx) - before;
    md_grad_set_enabled(ctx, prev);
    cr_assert_lt(grew, before / 2, "no-grad forward kept %zu bytes, the recorded one %zu", grew, before);
    for (int i = 0; i < 2; i++) assert_equal(outs[i], ref[i], "output");
    md_tensor_free(img);
    md_module_free(m);
}

/* norm_cfg GroupNorm, against mmdet 2.28's own ResNet
 * (tests/golden/resnet_gn_golden.py): the state dict names build_norm_layer
 * gives (gn1, layer1.0.gn2, downsample.1) load strictly, and the outputs
 * and gradients in training mode match. */
Test(resnet, group_norm_matches_mmdet) {
    md_st *gn = golden_open("resnet_gn");
    md_module *m = build_ok("backbone = { type = \"ResNet\"; depth = 18; base_channels = 4; num_stages = 3;\n"
                            "  strides = [1, 2, 2]; dilations = [1, 1, 1]; out_indices = [0, 1, 2];\n"
                            "  frozen_stages = -1; norm_eval = false;\n"
                            "  norm_cfg = { type = \"GN\"; num_groups = 2; requires_grad = true; }; };");
    md_load_report rep;
    md_error err = { 0 };
    cr_assert_eq(md_module_load_state(ctx, m, gn, "w.", false, &rep, &err), 0, "%s", err.msg);
    int n_module = 0;
    md_module_visit(m, "", count_cb, &n_module);
    cr_assert_eq(rep.missing, 0, "%s", rep.text);
    cr_assert_eq(rep.loaded, n_module, "%s", rep.text);
    md_module_train(m, true);
    md_tensor *img = golden_get(ctx, gn, "input");
    img->requires_grad = true;
    md_tensor *outs[MD_MAX_LEVELS];
    int n = md_backbone_forward(ctx, m, img, outs, MD_MAX_LEVELS);
    cr_assert_eq(n, 3, "forward: %s", md_ctx_error(ctx)->msg);
    md_tensor *loss = NULL;
    for (int i = 0; i < n; i++) {
        char k[16], what[32];
        snprintf(k, sizeof k, "out%d", i);
        snprintf(what, sizeof what, "GN output %d", i);
        assert_close(outs[i], golden_get(ctx, gn, k), 1e-4, what);
        snprintf(k, sizeof k, "gout%d", i);
        md_tensor *s = md_sum(ctx, md_mul(ctx, outs[i], golden_get(ctx, gn, k)), MD_DIM_ALL, false);
        loss = loss ? md_add(ctx, loss, s) : s;
    }
    cr_assert_eq(md_backward(ctx, loss, &err), 0, "%s", err.msg);
    const char *grads[] = { "conv1.weight", "gn1.weight", "layer1.0.gn2.bias", "layer2.0.downsample.1.weight",
                            "layer3.1.conv2.weight" };
    for (int i = 0; i < 5; i++) {
        md_tensor *p = md_module_find(m, grads[i]);
        cr_assert(p && p->grad, "%s: no gradient", grads[i]);
        char key[96];
        snprintf(key, sizeof key, "grad.%s", grads[i]);
        assert_close(p->grad, golden_get(ctx, gn, key), 1e-4, grads[i]);
    }
    assert_close(img->grad, golden_get(ctx, gn, "grad.input"), 1e-4, "input grad");
    md_module_free(m);
    md_st_close(gn);
}
