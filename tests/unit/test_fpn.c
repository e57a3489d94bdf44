/* FPN neck plugin: outputs and gradients against mmdet's FPN written in
 * PyTorch (tests/golden/backbones_golden.py) for every extra-level mode,
 * init, config errors, and ResNet + FPN through the registry interfaces. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "testlib.h"

static md_ctx *ctx;
static md_st *gold;
static void setup(void) {
    ctx = test_ctx(11, (const char *const[]){ "plugins/necks/fpn.so", NULL });
    gold = golden_open("backbones_fpn");
}
static void teardown(void) {
    md_st_close(gold);
    md_ctx_free(ctx);
}
TestSuite(fpn, .init = setup, .fini = teardown);

static md_module *build(const char *text, md_error *err) {
    md_cfg *root = md_cfg_parse(text, "test_fpn.cfg", err);
    if (!root) return NULL;
    md_module *m = md_build_neck(ctx, md_cfg_get(root, "neck"), err);
    md_cfg_free(root);
    return m;
}

static md_module *build_ok(const char *text) {
    md_error err = { 0 };
    md_module *m = build(text, &err);
    cr_assert_not_null(m, "build failed: %s", err.msg);
    return m;
}

static md_tensor *fixture(const char *tag, const char *what) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", tag, what);
    return golden_get(ctx, gold, key);
}

/* One golden case: names, outputs, input and parameter gradients. */
static void check_case(const char *tag, const char *cfg_body, int n_outs) {
    char text[1024];
    snprintf(text, sizeof text, "neck = { type = \"FPN\"; in_channels = [8, 16, 32, 64]; out_channels = 8; %s };",
             cfg_body);
    md_module *m = build_ok(text);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s.w.", tag);
    md_load_report rep;
    md_error err = { 0 };
    cr_assert_eq(md_module_load_state(ctx, m, gold, prefix, false, &rep, &err), 0, "%s", err.msg);
    int n_fixture = 0;
    for (int i = 0; i < md_st_count(gold); i++) n_fixture += !strncmp(md_st_name(gold, i), prefix, strlen(prefix));
    cr_assert_eq(rep.missing, 0, "%s: missing names:\n%.1000s", tag, rep.text);
    cr_assert_eq(rep.loaded, n_fixture, "%s: %d of %d fixture weights loaded", tag, rep.loaded, n_fixture);

    md_tensor *ins[4];
    for (int i = 0; i < 4; i++) {
        char k[16];
        snprintf(k, sizeof k, "in%d", i);
        ins[i] = fixture(tag, k);
        ins[i]->requires_grad = true;
    }
    md_tensor *outs[MD_MAX_LEVELS];
    int n = md_neck_forward(ctx, m, ins, 4, outs, MD_MAX_LEVELS);
    cr_assert_eq(n, n_outs, "%s: forward gave %d: %s", tag, n, md_ctx_error(ctx)->msg);
    cr_assert_eq(md_neck_class_of(m)->num_outs(m), n_outs);
    md_tensor *loss = NULL;
    for (int i = 0; i < n; i++) {
        char k[16], what[64];
        snprintf(k, sizeof k, "out%d", i);
        snprintf(what, sizeof what, "%s output %d", tag, i);
        assert_close(outs[i], fixture(tag, k), 1e-4, what);
        snprintf(k, sizeof k, "gout%d", i);
        md_tensor *s = md_sum(ctx, md_mul(ctx, outs[i], fixture(tag, k)), MD_DIM_ALL, false);
        loss = loss ? md_add(ctx, loss, s) : s;
    }
    cr_assert_eq(md_backward(ctx, loss, &err), 0, "%s", err.msg);
    for (int i = 0; i < 4; i++) {
        char k[32], what[64];
        snprintf(k, sizeof k, "%s.grad.in%d", tag, i);
        snprintf(what, sizeof what, "%s input %d grad", tag, i);
        if (md_st_find(gold, k) < 0) {   /* input not used (start_level/end_level) */
            cr_assert(ins[i]->grad == NULL || rel_err(ins[i]->grad, md_tensor_zeros_like(ctx, ins[i])) == 0, "%s", what);
            continue;
        }
        cr_assert_not_null(ins[i]->grad, "%s", what);
        assert_close(ins[i]->grad, golden_get(ctx, gold, k), 1e-4, what);
    }
    /* parameter gradients named in the fixture */
    size_t pl = strlen(tag) + strlen(".grad.");
    for (int i = 0; i < md_st_count(gold); i++) {
        const char *k = md_st_name(gold, i);
        if (strncmp(k, tag, strlen(tag)) || strncmp(k + strlen(tag), ".grad.", 6) || !strncmp(k + pl, "in", 2))
            continue;
        md_tensor *p = md_module_find(m, k + pl);
        cr_assert_not_null(p, "%s", k);
        cr_assert_not_null(p->grad, "%s: no gradient", k);
        assert_close(p->grad, golden_get(ctx, gold, k), 1e-4, k);
    }
    /* buffers after the forward (BN running statistics), when the fixture has them */
    size_t al = strlen(tag) + strlen(".after.");
    for (int i = 0; i < md_st_count(gold); i++) {
        const char *k = md_st_name(gold, i);
        if (strncmp(k, tag, strlen(tag)) || strncmp(k + strlen(tag), ".after.", 7)) continue;
        md_tensor *b = md_module_find(m, k + al);
        cr_assert_not_null(b, "%s", k);
        assert_close(b, golden_get(ctx, gold, k), 1e-5, k);
    }
    md_module_free(m);
    md_ctx_step_reset(ctx);
}

Test(fpn, retinanet_on_input_five_outs) {
    check_case("retina", "num_outs = 5; start_level = 1; add_extra_convs = \"on_input\";", 5);
}

Test(fpn, true_means_on_input) {
    check_case("retina", "num_outs = 5; start_level = 1; add_extra_convs = true;", 5);
}

Test(fpn, faster_rcnn_max_pool_level) { check_case("faster", "num_outs = 5;", 5); }

Test(fpn, on_output_with_relu_before_extra_convs) {
    check_case("output", "num_outs = 6; add_extra_convs = \"on_output\"; relu_before_extra_convs = true;", 6);
}

Test(fpn, on_lateral) { check_case("lateral", "num_outs = 5; add_extra_convs = \"on_lateral\";", 5); }

Test(fpn, scale_factor_upsampling_and_end_level) {
    check_case("scale2", "num_outs = 3; end_level = 2; upsample_cfg = { mode = \"nearest\"; scale_factor = 2; };", 3);
}

/* norm_cfg (tests/golden/fpn_norm_golden.py): convs without bias, a "gn"
 * or "bn" child in every ConvModule, BN with per-call batch statistics. */
Test(fpn, group_norm) {
    md_st_close(gold);
    gold = golden_open("fpn_norm");
    check_case("gn", "num_outs = 5; start_level = 1; add_extra_convs = \"on_input\";"
               " norm_cfg = { type = \"GN\"; num_groups = 4; requires_grad = true; };", 5);
}

Test(fpn, batch_norm_training) {
    md_st_close(gold);
    gold = golden_open("fpn_norm");
    check_case("bn", "num_outs = 5; norm_cfg = { type = \"BN\"; requires_grad = true; };", 5);
}

Test(fpn, norm_cfg_errors) {
    md_error err = { 0 };
    cr_assert_null(build("neck = { type = \"FPN\"; in_channels = [8, 16]; out_channels = 8; num_outs = 2;"
                         " norm_cfg = { type = \"GN\"; num_groups = 3; }; };", &err));
    cr_assert(strstr(err.msg, "num_groups=3") && strstr(err.msg, "num_channels=8"), "%s", err.msg);
    md_error_clear(&err);
    cr_assert_null(build("neck = { type = \"FPN\"; in_channels = [8, 16]; out_channels = 8; num_outs = 2;"
                         " norm_cfg = { type = \"GN\"; }; };", &err));
    cr_assert(strstr(err.msg, "num_groups"), "%s", err.msg);
    md_error_clear(&err);
    cr_assert_null(build("neck = { type = \"FPN\"; in_channels = [8, 16]; out_channels = 8; num_outs = 2;"
                         " norm_cfg = { type = \"LN\"; }; };", &err));
    cr_assert(strstr(err.msg, "'LN' is not supported"), "%s", err.msg);
}

Test(fpn, xavier_uniform_init) {
    md_module *m = build_ok("neck = { type = \"FPN\"; in_channels = [64, 128, 256, 512]; out_channels = 64;"
                            " num_outs = 5; add_extra_convs = \"on_input\"; };");
    static const char *const names[] = { "lateral_convs.3.conv.weight", "fpn_convs.0.conv.weight",
                                         "fpn_convs.4.conv.weight", NULL };
    static const double fans[] = { 512 + 64, 64 * 9 + 64 * 9, 512 * 9 + 64 * 9 };
    for (int i = 0; names[i]; i++) {
        md_tensor *w = md_module_find(m, names[i]);
        cr_assert_not_null(w, "%s", names[i]);
        double bound = sqrt(6.0 / fans[i]), mx = 0, s2 = 0;
        int64_t n = md_tensor_numel(w);
        for (int64_t k = 0; k < n; k++) {
            double v = md_tensor_get(w, k);
            mx = fmax(mx, fabs(v));
            s2 += v * v;
        }
        /* U(-b, b): every value within b, variance b^2 / 3 */
        cr_assert(mx <= bound && mx > 0.95 * bound, "%s: max %g, bound %g", names[i], mx, bound);
        cr_assert(fabs(sqrt(s2 / n) / (bound / sqrt(3.0)) - 1) < 0.05, "%s: rms %g", names[i], sqrt(s2 / n));
    }
    md_tensor *b = md_module_find(m, "fpn_convs.2.conv.bias");
    for (int64_t k = 0; k < md_tensor_numel(b); k++) cr_assert_eq(md_tensor_get(b, k), 0.0);
    cr_assert_null(md_module_find(m, "fpn_convs.5.conv.weight"));
    cr_assert_eq(md_module_find(m, "fpn_convs.4.conv.weight")->shape[1], 512);   /* on_input: C5's channels */
    md_module_free(m);
}

static void expect_error(const char *text, const char *needle1, const char *needle2) {
    md_error err = { 0 };
    md_module *m = build(text, &err);
    cr_assert_null(m, "built despite: %s", text);
    cr_assert(strstr(err.msg, needle1), "message lacks '%s': %s", needle1, err.msg);
    if (needle2) cr_assert(strstr(err.msg, needle2), "message lacks '%s': %s", needle2, err.msg);
}

Test(fpn, config_errors_are_reported) {
    expect_error("neck = { type = \"FPN\"; in_channels = [8, 16]; out_channels = 8; num_outs = 2;"
                 " add_extra_conv = true; };", "add_extra_conv", "add_extra_convs");
    expect_error("neck = { type = \"FPN\"; in_channels = [8, 16]; out_channels = 8; num_outs = 3;"
                 " add_extra_convs = \"on_inputs\"; };", "on_inputs", "did you mean \"on_input\"");
    expect_error("neck = { type = \"FPN\"; in_channels = [8, 16, 32]; out_channels = 8; num_outs = 2; };",
                 "num_outs 2", NULL);
    expect_error("neck = { type = \"FPN\"; in_channels = [8, 16, 32]; out_channels = 8; num_outs = 3;"
                 " end_level = 1; };", "num_outs 3", "end_level");
    expect_error("neck = { type = \"FPN\"; in_channels = [8, 16]; num_outs = 2; };", "out_channels", NULL);
    expect_error("neck = { type = \"FPN\"; in_channels = [8, 16]; out_channels = 8; num_outs = 2;"
                 " upsample_cfg = { mode = \"bilinear\"; }; };", "bilinear", NULL);
}

Test(fpn, wrong_input_count_and_channels_fail_cleanly) {
    md_module *m = build_ok("neck = { type = \"FPN\"; in_channels = [8, 16]; out_channels = 8; num_outs = 2; };");
    md_tensor *a = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 8, 8, 8));
    md_tensor *b = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 12, 4, 4));
    md_tensor *ins[2] = { a, b }, *outs[MD_MAX_LEVELS];
    cr_assert_eq(md_neck_forward(ctx, m, ins, 1, outs, MD_MAX_LEVELS), -1);
    cr_assert(strstr(md_ctx_error(ctx)->msg, "inputs"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_step_reset(ctx);
    a = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 8, 8, 8));
    b = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 12, 4, 4));
    ins[0] = a, ins[1] = b;
    cr_assert_eq(md_neck_forward(ctx, m, ins, 2, outs, MD_MAX_LEVELS), -1);
    cr_assert(strstr(md_ctx_error(ctx)->msg, "lateral_convs.1"), "%s", md_ctx_error(ctx)->msg);
    md_module_free(m);
}

/* ResNet-18 + FPN as RetinaNet configures them, through the registries. */
Test(fpn, resnet_fpn_through_the_interfaces) {
    md_error err = { 0 };
    cr_assert_eq(md_plugin_load_file(ctx, "plugins/backbones/resnet.so", &err), 0, "%s", err.msg);
    md_cfg *root = md_cfg_parse("model = {"
                                " backbone = { type = \"ResNet\"; depth = 18; base_channels = 8; frozen_stages = 1; };"
                                " neck = { type = \"FPN\"; in_channels = [8, 16, 32, 64]; out_channels = 16;"
                                "   start_level = 1; add_extra_convs = \"on_input\"; num_outs = 5; }; };",
                                "retina.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_module *bb = md_build_backbone(ctx, md_cfg_get(root, "model.backbone"), &err);
    cr_assert_not_null(bb, "%s", err.msg);
    md_module *neck = md_build_neck(ctx, md_cfg_get(root, "model.neck"), &err);
    cr_assert_not_null(neck, "%s", err.msg);
    cr_assert_eq(md_model_init_weights(ctx, bb, &err), 0, "%s", err.msg);
    cr_assert_eq(md_model_init_weights(ctx, neck, &err), 0, "%s", err.msg);
    const md_backbone_class *bc = md_backbone_class_of(bb);
    for (int i = 0; i < bc->num_outs(bb); i++) cr_assert_eq(bc->out_channels(bb, i), 8 << i);

    md_tensor *img = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 3, 96, 128));
    md_tensor_normal_(img, md_ctx_rng(ctx), 0, 1);
    md_tensor *feats[MD_MAX_LEVELS], *outs[MD_MAX_LEVELS];
    int n = md_backbone_forward(ctx, bb, img, feats, MD_MAX_LEVELS);
    cr_assert_eq(n, 4, "%s", md_ctx_error(ctx)->msg);
    n = md_neck_forward(ctx, neck, feats, n, outs, MD_MAX_LEVELS);
    cr_assert_eq(n, 5, "%s", md_ctx_error(ctx)->msg);
    static const int64_t hw[5][2] = { { 12, 16 }, { 6, 8 }, { 3, 4 }, { 2, 2 }, { 1, 1 } };
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(outs[i]->shape[0], 2);
        cr_assert_eq(outs[i]->shape[1], 16);
        cr_assert_eq(outs[i]->shape[2], hw[i][0], "P%d height %lld", i + 3, (long long)outs[i]->shape[2]);
        cr_assert_eq(outs[i]->shape[3], hw[i][1], "P%d width %lld", i + 3, (long long)outs[i]->shape[3]);
    }
    /* state dict names with the detector's prefixes */
    md_st_writer *w = md_st_writer_new();
    cr_assert_eq(md_module_save_state(bb, w, "backbone", &err), 0, "%s", err.msg);
    cr_assert_eq(md_module_save_state(neck, w, "neck", &err), 0, "%s", err.msg);
    md_st_writer_free(w);
    cr_assert_not_null(md_module_find(neck, "lateral_convs.0.conv.weight"));
    cr_assert_eq(md_module_find(neck, "lateral_convs.0.conv.weight")->shape[1], 16);
    md_module_free(bb);
    md_module_free(neck);
    md_cfg_free(root);
}
