/* group_norm against PyTorch (tests/golden/group_norm_golden.py, computed in
 * float64), finite differences, reproducibility across thread counts, and
 * the GroupNorm layer, ConvModule's "gn" child and norm_cfg parsing. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "testlib.h"

static md_ctx *ctx;
static md_st *st;
static void setup(void) {
    ctx = md_ctx_new(NULL);
    cr_assert(ctx);
    md_ctx_seed(ctx, 7);
    st = golden_open("group_norm");
}
static void teardown(void) {
    md_st_close(st);
    md_ctx_free(ctx);
}
TestSuite(group_norm, .init = setup, .fini = teardown);

static char key_buf[64];
static const char *key(int i, const char *name) {
    snprintf(key_buf, sizeof key_buf, "gn%d_%s", i, name);
    return key_buf;
}
static bool has(int i, const char *name) { return md_st_find(st, key(i, name)) >= 0; }
static md_tensor *get(int i, const char *name) { return golden_get(ctx, st, key(i, name)); }
static void check(const md_tensor *a, int i, const char *name, double tol) {
    char what[64];
    snprintf(what, sizeof what, "gn%d %s", i, name);
    assert_close(a, get(i, name), tol, what);
}

Test(group_norm, golden_forward_and_grads) {
    int n = 0;
    for (int i = 0; has(i, "x"); i++, n++) {
        md_tensor *x = get(i, "x"), *p = get(i, "p");
        int groups = (int)md_i64(p)[0];
        bool affine = md_i64(p)[1] != 0;
        md_tensor *w = affine ? get(i, "w") : NULL, *b = affine ? get(i, "b") : NULL;
        x->requires_grad = true;
        if (affine) w->requires_grad = b->requires_grad = true;
        md_tensor *y = md_group_norm(ctx, x, groups, w, b, 1e-5);
        cr_assert(y, "gn%d: %s", i, md_ctx_error(ctx)->msg);
        check(y, i, "y", 1e-5);
        md_error err = { 0 };
        cr_assert_eq(md_backward_with(ctx, y, get(i, "gy"), &err), 0, "%s", err.msg);
        check(x->grad, i, "gx", 1e-5);
        if (affine) {
            check(w->grad, i, "gw", 1e-5);
            check(b->grad, i, "gb", 1e-5);
        }
        md_ctx_step_reset(ctx);
    }
    cr_assert_geq(n, 9, "only %d cases in the fixture", n);
}

/* A non-contiguous view (the transpose of a transposed copy) gives the
 * same output and input gradient. */
Test(group_norm, strided_input) {
    md_tensor *x = get(0, "x");
    md_tensor *xt = md_contiguous(ctx, md_transpose(ctx, x, 2, 3));
    md_tensor *v = md_transpose(ctx, xt, 2, 3);
    cr_assert(v && !md_tensor_is_contiguous(v));
    v->requires_grad = true;
    md_tensor *y = md_group_norm(ctx, v, 3, get(0, "w"), get(0, "b"), 1e-5);
    cr_assert(y, "%s", md_ctx_error(ctx)->msg);
    check(y, 0, "y", 1e-5);
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, y, get(0, "gy"), &err), 0, "%s", err.msg);
    check(v->grad, 0, "gx", 1e-5);
}

static md_tensor *gc_gn(md_ctx *c, md_tensor **in, void *user) {
    return md_group_norm(c, in[0], *(int *)user, in[1], in[2], 1e-5);
}

Test(group_norm, gradcheck) {
    static const int groups[] = { 1, 2, 6 };
    for (int k = 0; k < 3; k++) {
        md_tensor *in[3] = { randn_param(ctx, MD_DIMS(2, 6, 3, 2), 11 + k), randn_param(ctx, MD_DIMS(6), 21 + k),
                             randn_param(ctx, MD_DIMS(6), 31 + k) };
        int g = groups[k];
        double e = gradcheck(ctx, gc_gn, in, 3, &g, 1e-2);
        cr_assert_lt(e, 1e-2, "groups %d: %g", g, e);
        for (int i = 0; i < 3; i++) md_tensor_free(in[i]);
    }
}

/* Bit-identical outputs and gradients for 1 and 2 threads on an input big
 * enough to go parallel (the kernels split work by (n, group) only). */
Test(group_norm, same_bits_for_any_thread_count) {
    md_tensor *x = randn_param(ctx, MD_DIMS(2, 32, 40, 40), 5), *w = randn_param(ctx, MD_DIMS(32), 6),
              *b = randn_param(ctx, MD_DIMS(32), 7);
    float *res[2][4];
    int64_t nx = md_tensor_numel(x);
    for (int t = 0; t < 2; t++) {
        md_ctx_set_threads(ctx, t + 1);
        md_tensor_zero_grad(x);
        md_tensor_zero_grad(w);
        md_tensor_zero_grad(b);
        md_tensor *y = md_group_norm(ctx, x, 8, w, b, 1e-5);
        md_tensor *gy = md_tensor_empty_like(ctx, y);
        for (int64_t i = 0; i < nx; i++) md_f32(gy)[i] = sinf((float)i * 0.37f);
        md_error err = { 0 };
        cr_assert_eq(md_backward_with(ctx, y, gy, &err), 0, "%s", err.msg);
        md_tensor *outs[4] = { y, x->grad, w->grad, b->grad };
        for (int k = 0; k < 4; k++) {
            size_t bytes = sizeof(float) * (size_t)md_tensor_numel(outs[k]);
            res[t][k] = malloc(bytes);
            memcpy(res[t][k], md_f32(outs[k]), bytes);
        }
        md_ctx_step_reset(ctx);
    }
    size_t sizes[4] = { (size_t)nx, (size_t)nx, 32, 32 };
    for (int k = 0; k < 4; k++) {
        cr_expect(!memcmp(res[0][k], res[1][k], sizeof(float) * sizes[k]), "output %d differs between 1 and 2 threads", k);
        free(res[0][k]);
        free(res[1][k]);
    }
    md_tensor_free(x);
    md_tensor_free(w);
    md_tensor_free(b);
}

Test(group_norm, errors_and_null) {
    cr_assert_null(md_group_norm(ctx, NULL, 2, NULL, NULL, 1e-5));
    cr_assert(!md_ctx_failed(ctx), "a NULL input is not an error");
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 6, 4, 4));
    cr_assert_null(md_group_norm(ctx, x, 4, NULL, NULL, 1e-5));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "group_norm") && strstr(md_ctx_error(ctx)->msg, "num_groups 4") &&
              strstr(md_ctx_error(ctx)->msg, "[2, 6, 4, 4]"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
    md_tensor *w = md_tensor_zeros(ctx, MD_F32, MD_DIMS(4));
    cr_assert_null(md_group_norm(ctx, x, 3, w, NULL, 1e-5));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "weight [4]"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
    cr_assert_null(md_group_norm(ctx, md_tensor_zeros(ctx, MD_F32, MD_DIMS(6)), 3, NULL, NULL, 1e-5));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "[N, C, *]"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
    /* no positions: an empty output, zero weight and bias gradients */
    md_tensor *e = randn_param(ctx, MD_DIMS(2, 6, 0, 4), 9), *ew = randn_param(ctx, MD_DIMS(6), 10);
    md_tensor *ey = md_group_norm(ctx, e, 3, ew, NULL, 1e-5);
    cr_assert(ey && ey->ndim == 4 && ey->shape[2] == 0 && md_tensor_numel(ey) == 0, "%s", md_ctx_error(ctx)->msg);
    md_error err = { 0 };
    cr_assert_eq(md_backward(ctx, md_sum(ctx, ey, MD_DIM_ALL, false), &err), 0, "%s", err.msg);
    cr_assert(ew->grad);
    for (int i = 0; i < 6; i++) cr_assert(md_f32(ew->grad)[i] == 0.0f);
    md_tensor_free(e);
    md_tensor_free(ew);
    /* a constant input normalises to the bias (zero variance, eps keeps it finite) */
    md_tensor *c = md_tensor_full(ctx, MD_F32, MD_DIMS(1, 4, 2, 2), 3.0);
    md_tensor *b = md_tensor_full(ctx, MD_F32, MD_DIMS(4), 0.25);
    md_tensor *y = md_group_norm(ctx, c, 2, NULL, b, 1e-5);
    cr_assert(y);
    for (int i = 0; i < 16; i++) cr_assert_float_eq(md_f32(y)[i], 0.25f, 1e-6);
}

/* ---- layers ---- */
static int collect(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)t;
    (void)is_param;
    char *buf = user;
    strncat(buf, name, 1024 - strlen(buf) - 2);
    strcat(buf, " ");
    return 0;
}

Test(group_norm, layer_and_conv_module) {
    md_error err = { 0 };
    md_module *gn = md_nn_groupnorm(ctx, 2, 6, 1e-5, true, &err);
    cr_assert_not_null(gn, "%s", err.msg);
    cr_assert(gn->flags & MD_MODULE_NORM);
    md_tensor *w = md_nn_weight(gn), *b = md_nn_bias(gn);
    for (int c = 0; c < 6; c++) cr_assert(md_f32(w)[c] == 1.0f && md_f32(b)[c] == 0.0f);
    md_module_free(gn);
    cr_assert_null(md_nn_groupnorm(ctx, 4, 6, 1e-5, true, &err));
    cr_assert(strstr(err.msg, "GroupNorm(num_groups=4, num_channels=6)"), "%s", err.msg);

    md_cfg *root = md_cfg_parse("n = { type = \"GN\"; num_groups = 2; requires_grad = false; };", "t.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_conv_module_opts o = { .in = 3, .out = 4, .kernel = 3, .padding = 1, .act = true, .bias = -1 };
    cr_assert_eq(md_norm_cfg_read(md_cfg_get(root, "n"), "norm_cfg", NULL, &o, &err), 0, "%s", err.msg);
    cr_assert(o.norm && o.norm_groups == 2 && !o.norm_requires_grad);
    md_cfg_free(root);
    md_module *cm = md_nn_conv_module(ctx, &o, &err);
    cr_assert_not_null(cm, "%s", err.msg);
    char names[1024] = "";
    md_module_visit(cm, "", collect, names);
    cr_assert_str_eq(names, "conv.weight gn.weight gn.bias ", "%s", names);
    cr_assert(!md_module_find(cm, "gn.weight")->requires_grad);
    /* forward = relu(group_norm(conv(x))) with the module's own tensors */
    md_tensor *x = randn_param(ctx, MD_DIMS(2, 3, 5, 4), 3);
    md_tensor *y = md_module_forward(ctx, cm, x);
    md_tensor *conv = md_module_find(cm, "conv.weight");
    md_tensor *ref = md_relu(ctx, md_group_norm(ctx, md_conv2d(ctx, x, conv, NULL, MD_CONV2D(1, 1)), 2,
                                                md_module_find(cm, "gn.weight"), md_module_find(cm, "gn.bias"), 1e-5));
    cr_assert(y && ref, "%s", md_ctx_error(ctx)->msg);
    assert_close(y, ref, 0, "ConvModule with GN");
    md_module_free(cm);
    md_tensor_free(x);

    /* BN keeps its "bn" name; momentum and eps are read */
    root = md_cfg_parse("n = { type = \"BN\"; momentum = 0.03; eps = 1e-3; };", "t.cfg", &err);
    cr_assert_eq(md_norm_cfg_read(md_cfg_get(root, "n"), "norm_cfg", "BN,GN", &o, &err), 0, "%s", err.msg);
    cr_assert(o.norm && o.norm_groups == 0 && o.norm_requires_grad && o.norm_momentum == 0.03 && o.norm_eps == 1e-3);
    md_cfg_free(root);
    cm = md_nn_conv_module(ctx, &o, &err);
    cr_assert_not_null(cm, "%s", err.msg);
    cr_assert_not_null(md_module_find(cm, "bn.running_var"));
    cr_assert_null(md_module_find(cm, "conv.bias"));
    md_module_free(cm);
}

Test(group_norm, norm_cfg_errors) {
    static const char *bad[][2] = {
        { "n = { type = \"GN\"; };", "num_groups" },
        { "n = { type = \"GN\"; num_groups = 0; };", "num_groups 0" },
        { "n = { type = \"GN\"; num_groups = 4; momentum = 0.1; };", "momentum" },
        { "n = { type = \"LN\"; };", "'LN' is not supported" },
        { "n = { type = \"BN\"; requires_gard = true; };", "requires_grad" },
        { "n = { type = \"SyncBN\"; };", "'SyncBN' is not supported (BN,GN)" },
        { "n = 3;", "None or a group" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        md_error err = { 0 };
        md_cfg *root = md_cfg_parse(bad[i][0], "t.cfg", &err);
        cr_assert_not_null(root, "%s", err.msg);
        md_conv_module_opts o = { 0 };
        cr_assert_eq(md_norm_cfg_read(md_cfg_get(root, "n"), "norm_cfg", "BN,GN", &o, &err), -1, "%s", bad[i][0]);
        cr_assert(strstr(err.msg, bad[i][1]), "%s: %s", bad[i][0], err.msg);
        md_cfg_free(root);
    }
    md_error err = { 0 };
    md_conv_module_opts o = { .norm = true };
    cr_assert_eq(md_norm_cfg_read(NULL, "norm_cfg", NULL, &o, &err), 0);
    cr_assert(!o.norm);
}
