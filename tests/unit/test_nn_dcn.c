/* mmcv's DCN and DCNv2 layers (md_nn_dcn): state dicts with mmcv's names
 * loaded from a .pth written by torch, outputs and the input gradient
 * against the layers written on torchvision (tests/golden/
 * dcn_modules_golden.py); the names of mmcv before version 2
 * (conv2_offset); conv_cfg in ConvModule; FLOPs as mmcv counts them (the
 * deformable layer not at all, its conv_offset as a Conv2d); errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <mmdet/flops.h>
#include <mmdet/mmdet.h>
#include <mmdet/onnx.h>
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) {
    ctx = md_ctx_new(NULL);
    cr_assert(ctx);
}
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(nn_dcn, .init = setup, .fini = teardown);

static const md_module_class holder_class = { .name = "Holder" };

static md_module *layer(md_conv_type t, int in, int out, md_conv2d_params p, int dg, bool bias) {
    md_error err = { 0 };
    md_module *m = md_nn_dcn(ctx, t, in, out, 3, 3, p, dg, bias, &err);
    cr_assert_not_null(m, "%s", err.msg);
    return m;
}

static void add(md_module *parent, const char *name, md_module *child) {
    md_error err = { 0 };
    cr_assert_eq(md_module_add_child(parent, name, child, &err), 0, "%s", err.msg);
}

Test(nn_dcn, pth_with_mmcv_names_loads_and_matches) {
    md_module *root = md_module_new(sizeof(md_module), &holder_class), *old = md_module_new(sizeof(md_module), &holder_class);
    add(root, "dcn", layer(MD_CONV_DCN, 4, 6, (md_conv2d_params){ 1, 1, 1, 1, 1, 1, 1 }, 2, false));
    add(root, "dcnv2", layer(MD_CONV_DCNV2, 4, 6, (md_conv2d_params){ 2, 2, 2, 2, 2, 2, 1 }, 1, true));
    add(old, "conv2", layer(MD_CONV_DCN, 4, 4, (md_conv2d_params){ 1, 1, 1, 1, 1, 1, 1 }, 1, false));
    add(root, "old", old);
    md_error err = { 0 };
    md_st *st = md_pth_open_weights("tests/fixtures/dcn_modules.pth", &err);
    cr_assert_not_null(st, "%s", err.msg);
    md_load_report rep;
    /* strict: every name mmcv's layers have, and old.conv2_offset.* taken
     * for old.conv2.conv_offset.* (DeformConv2dPack's version < 2 rename) */
    cr_assert_eq(md_module_load_state(ctx, root, st, NULL, true, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.loaded, 3 + 4 + 3);
    md_st_close(st);

    md_st *g = golden_open("dcn_modules");
    md_tensor *x = golden_get(ctx, g, "x");
    x->requires_grad = true;
    md_tensor *y = md_module_call(ctx, root, "dcn", x);
    assert_close(y, golden_get(ctx, g, "y_dcn"), 1e-5, "DCN");
    y = md_module_call(ctx, old, "conv2", x);
    assert_close(y, golden_get(ctx, g, "y_old"), 1e-5, "DCN under the old names");
    y = md_module_call(ctx, root, "dcnv2", x);
    assert_close(y, golden_get(ctx, g, "y_dcnv2"), 1e-5, "DCNv2");
    cr_assert_eq(md_backward_with(ctx, y, golden_get(ctx, g, "gy_dcnv2"), &err), 0, "%s", err.msg);
    assert_close(x->grad, golden_get(ctx, g, "gx_dcnv2"), 1e-5, "DCNv2 input gradient (through conv_offset too)");
    md_st_close(g);
    md_module_free(root);
}

Test(nn_dcn, init_as_mmcv) {
    md_module *d = layer(MD_CONV_DCN, 16, 8, MD_CONV2D(1, 1), 1, false);
    md_module *d2 = layer(MD_CONV_DCNV2, 16, 8, MD_CONV2D(1, 1), 2, true);
    md_tensor *off = md_module_find(d2, "conv_offset.weight");
    cr_assert_eq(off->shape[0], 2 * 3 * 9);
    for (int64_t i = 0; i < md_tensor_numel(off); i++) cr_assert_eq(md_f32(off)[i], 0.0f);
    /* DCN: kaiming_uniform (relu, fan_in 144): bound sqrt(6 / 144); DCNv2: 1 / sqrt(144) */
    double b1 = sqrt(6.0 / 144), b2 = 1 / 12.0, m1 = 0, m2 = 0;
    md_tensor *w1 = md_nn_weight(d), *w2 = md_nn_weight(d2);
    for (int64_t i = 0; i < md_tensor_numel(w1); i++) m1 = fmax(m1, fabs(md_f32(w1)[i]));
    for (int64_t i = 0; i < md_tensor_numel(w2); i++) m2 = fmax(m2, fabs(md_f32(w2)[i]));
    cr_assert(m1 <= b1 && m1 > 0.9 * b1, "DCN max |w| %g, bound %g", m1, b1);
    cr_assert(m2 <= b2 && m2 > 0.9 * b2, "DCNv2 max |w| %g, bound %g", m2, b2);
    cr_assert_eq(md_f32(md_nn_bias(d2))[0], 0.0f);
    cr_assert_null(md_nn_bias(d));
    md_module_free(d);
    md_module_free(d2);
}

static md_module *conv_module(const char *conv_cfg, const char *norm_cfg, md_error *err) {
    char text[512];
    snprintf(text, sizeof text, "c = %s; n = %s;", conv_cfg, norm_cfg);
    md_cfg *root = md_cfg_parse(text, "test.cfg", err);
    cr_assert_not_null(root, "%s", err->msg);
    md_conv_module_opts o = { .in = 4, .out = 8, .kernel = 3, .stride = 1, .padding = 1, .act = true, .bias = -1 };
    md_module *m = NULL;
    if (!md_conv_cfg_read(md_cfg_get(root, "c"), "conv_cfg", NULL, &o, NULL, err) &&
        !md_norm_cfg_read(md_cfg_get(root, "n"), "norm_cfg", NULL, &o, err))
        m = md_nn_conv_module(ctx, &o, err);
    md_cfg_free(root);
    return m;
}

Test(nn_dcn, conv_module_conv_cfg_and_flops) {
    md_error err = { 0 };
    md_module *m = conv_module("{ type = \"DCNv2\"; deform_groups = 2; }", "\"None\"", &err);
    cr_assert_not_null(m, "%s", err.msg);
    cr_assert(md_nn_is_dcn(md_module_child(m, "conv")));
    cr_assert_eq(md_module_find(m, "conv.conv_offset.weight")->shape[0], 54);
    cr_assert_not_null(md_module_find(m, "conv.bias"), "DCNv2 without a norm: a bias (bias \"auto\")");
    /* mmcv's counter knows no deformable layer: only conv_offset (a Conv2d)
     * and the activation count */
    md_flops *f = md_flops_new(&err);
    md_flops_attach(ctx, f);
    md_tensor *y = md_module_forward(ctx, m, md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 4, 5, 5)));
    md_flops_attach(ctx, NULL);
    cr_assert_not_null(y, "%s", md_ctx_error(ctx)->msg);
    int64_t off_flops = 25 * 4 * 9 * 54 + 25 * 54;
    cr_assert_eq(md_flops_total(f, ""), off_flops + 25 * 8, "total %lld", (long long)md_flops_total(f, ""));
    md_flops_free(f);
    md_module_free(m);

    m = conv_module("{ type = \"DCN\"; }", "{ type = \"BN\"; }", &err);
    cr_assert_not_null(m, "%s", err.msg);
    cr_assert_null(md_module_find(m, "conv.bias"));
    cr_assert_not_null(md_module_find(m, "bn.running_mean"));
    md_module_free(m);
    m = conv_module("{ type = \"Conv\"; }", "\"None\"", &err);
    cr_assert_not_null(m, "%s", err.msg);
    cr_assert_not(md_nn_is_dcn(md_module_child(m, "conv")));
    md_module_free(m);

    /* errors name the key */
    cr_assert_null(conv_module("{ type = \"DCN\"; }", "\"None\"", &err));   /* DCN with a bias */
    cr_assert(strstr(err.msg, "bias"), "%s", err.msg);
    cr_assert_null(conv_module("{ type = \"DCN\"; deform_groups = 3; }", "{ type = \"BN\"; }", &err));
    cr_assert(strstr(err.msg, "deform_groups"), "%s", err.msg);
    cr_assert_null(conv_module("{ type = \"DCNv2\"; deform_group = 1; }", "\"None\"", &err));
    cr_assert(strstr(err.msg, "deform_group") && strstr(err.msg, "test.cfg"), "%s", err.msg);
    cr_assert_null(conv_module("{ type = \"Deform\"; }", "\"None\"", &err));
    cr_assert(strstr(err.msg, "conv_cfg.type 'Deform'"), "%s", err.msg);
}

Test(nn_dcn, onnx_export_is_refused) {
    md_module *m = layer(MD_CONV_DCNV2, 4, 4, MD_CONV2D(1, 1), 1, true);
    md_error err = { 0 };
    md_onnx_graph *g = md_onnx_graph_new(11, &err);
    cr_assert_not_null(g, "%s", err.msg);
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 4, 5, 5));
    md_onnx_trace_begin(ctx, g);
    cr_assert_eq(md_onnx_input(ctx, x, "input"), 0, "%s", md_ctx_error(ctx)->msg);
    md_tensor *y = md_module_forward(ctx, m, x);
    md_onnx_trace_end(ctx);
    cr_assert_null(y);
    cr_assert(strstr(md_ctx_error(ctx)->msg, "ONNX"), "%s", md_ctx_error(ctx)->msg);
    md_onnx_graph_free(g);
    md_module_free(m);
}
