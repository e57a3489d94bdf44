/* The CUDA backend against the CPU backend: every op that has a CUDA kernel
 * runs on both devices from the same inputs, and its outputs and input
 * gradients (through md_tensor_to, so the copy's backward is covered too)
 * must agree. A ResNet-18 training step (forward, backward, SGD) and the
 * device plumbing (copies, fills, module moves, error messages) likewise.
 *
 * Without a GPU (or without lib/libmmdet-cuda.so) every test skips and says
 * why; tests that need no GPU (device parsing, the load failure message)
 * always run. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "cudalib.h"

TestSuite(cuda, .init = cuda_setup, .fini = cuda_teardown);

/* ------------------------------------------------------- no GPU needed -- */

Test(cuda, device_names_parse) {
    md_device d;
    md_error err = { 0 };
    char buf[16];
    cr_assert_eq(md_device_parse("cpu", &d, &err), 0);
    cr_assert_eq(d.type, MD_CPU);
    cr_assert_eq(md_device_parse("cuda", &d, &err), 0);
    cr_assert(d.type == MD_CUDA && d.index == 0);
    cr_assert_eq(md_device_parse("cuda:3", &d, &err), 0);
    cr_assert_str_eq(md_device_name(d, buf, sizeof buf), "cuda:3");
    cr_assert_neq(md_device_parse("gpu", &d, &err), 0);
    cr_assert(strstr(err.msg, "\"gpu\""), "%s", err.msg);
    cr_assert_neq(md_device_parse("cuda:x", &d, &err), 0);
}

/* Without a device the reason is said (and nothing crashes): either the
 * library was not found, or the driver/device is missing. */
Test(cuda, init_failure_says_why) {
    if (have_gpu) cr_skip_test("a CUDA device is present");
    cr_assert(strstr(why, "CUDA") || strstr(why, "cuda"), "unhelpful message: %s", why);
    md_tensor *t = md_tensor_empty_on(ctx, gpu, MD_F32, MD_DIMS(2));
    cr_assert_null(t);
    cr_assert(strstr(md_ctx_error(ctx)->msg, "not initialised"), "%s", md_ctx_error(ctx)->msg);
}

/* ------------------------------------------------------------ plumbing -- */

Test(cuda, copies_fill_and_item) {
    NEED_GPU();
    md_ctx_step_reset(ctx);
    md_tensor *a = md_tensor_arange(ctx, MD_F32, 24);
    md_tensor *v = md_reshape(ctx, a, MD_DIMS(2, 3, 4));
    md_tensor *g = md_tensor_to(ctx, v, gpu);
    cr_assert_not_null(g, "%s", md_ctx_error(ctx)->msg);
    assert_equal(to_cpu(g), v, "round trip");
    cr_assert_float_eq(md_tensor_item(md_slice(ctx, md_reshape(ctx, g, MD_DIMS(24)), 0, 7, 8, 1)), 7.0, 0);
    /* a strided view made contiguous on the device */
    md_tensor *p = md_contiguous(ctx, md_permute(ctx, g, (const int[]){ 2, 0, 1 }));
    cr_assert_not_null(p, "%s", md_ctx_error(ctx)->msg);
    assert_equal(to_cpu(p), md_contiguous(ctx, md_permute(ctx, v, (const int[]){ 2, 0, 1 })), "permuted copy");
    /* fills of each dtype */
    md_tensor *f = md_tensor_empty_on(ctx, gpu, MD_F32, MD_DIMS(1000));
    cr_assert_eq(md_tensor_fill_(f, 2.5), 0);
    cr_assert_float_eq(md_tensor_get(f, 999), 2.5, 0);
    md_tensor *z = md_tensor_zeros_on(ctx, gpu, MD_I64, MD_DIMS(5));
    cr_assert_not_null(z);
    cr_assert_float_eq(md_tensor_get(z, 4), 0.0, 0);
    /* integer tensors travel too */
    md_tensor *idx = md_tensor_arange(ctx, MD_I64, 9);
    assert_equal(to_cpu(md_tensor_to(ctx, idx, gpu)), idx, "i64 round trip");
}

Test(cuda, persistent_tensors_and_modules_move) {
    NEED_GPU();
    md_error err = { 0 };
    md_tensor *t = randn_param(ctx, MD_DIMS(3, 5), 4);
    md_tensor *before = snapshot(t);
    cr_assert_eq(md_tensor_move_(ctx, t, gpu, &err), 0, "%s", err.msg);
    cr_assert_eq(t->device, MD_CUDA);
    cr_assert_eq(md_tensor_move_(ctx, t, MD_DEVICE_CPU, &err), 0, "%s", err.msg);
    cr_assert_eq(t->device, MD_CPU);
    assert_equal(t, before, "values after cpu -> cuda -> cpu");
    md_tensor_free(t);
    md_tensor *d = md_tensor_new_persistent_on(ctx, gpu, MD_F32, MD_DIMS(4), &err);
    cr_assert_not_null(d, "%s", err.msg);
    cr_assert_float_eq(md_tensor_get(d, 3), 0.0, 0);
    md_tensor_free(d);
}

Test(cuda, mixed_devices_are_errors) {
    NEED_GPU();
    md_ctx_step_reset(ctx);
    md_tensor *a = md_tensor_full(ctx, MD_F32, MD_DIMS(2, 3), 1.0);
    md_tensor *g = md_tensor_to(ctx, a, gpu);
    cr_assert_null(md_add(ctx, a, g));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "different devices"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
}

/* ------------------------------------------------------- element-wise -- */

static md_tensor *f_add(md_tensor **in, void *u) { (void)u; return md_add(ctx, in[0], in[1]); }
static md_tensor *f_sub(md_tensor **in, void *u) { (void)u; return md_sub(ctx, in[0], in[1]); }
static md_tensor *f_mul(md_tensor **in, void *u) { (void)u; return md_mul(ctx, in[0], in[1]); }
static md_tensor *f_div(md_tensor **in, void *u) { (void)u; return md_div(ctx, in[0], in[1]); }
static md_tensor *f_gt(md_tensor **in, void *u) { (void)u; return md_gt(ctx, in[0], in[1]); }

Test(cuda, binary_ops_broadcast) {
    NEED_GPU();
    md_tensor *p[2] = { randn_param(ctx, MD_DIMS(2, 3, 5, 7), 1), randn_param(ctx, MD_DIMS(3, 1, 7), 2) };
    check_case("add", f_add, 2, p, NULL, 1e-6);
    check_case("sub", f_sub, 2, p, NULL, 1e-6);
    check_case("mul", f_mul, 2, p, NULL, 1e-6);
    check_case("gt", f_gt, 2, p, NULL, 0);
    free_all(2, p);
    md_tensor *q[2] = { randn_param(ctx, MD_DIMS(4, 9), 3), uniform_param(MD_DIMS(9), 4, 0.5, 2.0) };
    check_case("div", f_div, 2, q, NULL, 1e-6);
    free_all(2, q);
}

typedef struct unary_case { const char *name; md_tensor *(*fn)(md_ctx *, md_tensor *); } unary_case;
static md_tensor *clamp_(md_ctx *c, md_tensor *x) { return md_clamp(c, x, -0.5, 0.7); }
static md_tensor *pow_(md_ctx *c, md_tensor *x) { return md_pow_scalar(c, x, 2.5); }
static md_tensor *adds_(md_ctx *c, md_tensor *x) { return md_add_scalar(c, x, 0.25); }
static md_tensor *muls_(md_ctx *c, md_tensor *x) { return md_mul_scalar(c, x, -3.0); }
static md_tensor *f_unary(md_tensor **in, void *u) { return ((unary_case *)u)->fn(ctx, in[0]); }

Test(cuda, unary_ops) {
    NEED_GPU();
    /* values away from relu's and clamp's kinks: |x| in [0.05, 2] */
    md_tensor *x = uniform_param(MD_DIMS(3, 1001), 5, 0.05, 2.0);
    md_rng r;
    md_rng_seed(&r, 6);
    for (int64_t i = 0; i < md_tensor_numel(x); i++)
        if (md_rng_uniform(&r) < 0.5) md_f32(x)[i] = -md_f32(x)[i];
    md_tensor *pos = uniform_param(MD_DIMS(3, 1001), 7, 0.1, 3.0);
    unary_case any[] = { { "neg", md_neg }, { "relu", md_relu }, { "sigmoid", md_sigmoid }, { "exp", md_exp },
                         { "abs", md_abs }, { "clamp", clamp_ }, { "add_scalar", adds_ }, { "mul_scalar", muls_ },
                         { "atan", md_atan } };
    unary_case positive[] = { { "log", md_log }, { "sqrt", md_sqrt }, { "pow", pow_ } };
    for (size_t i = 0; i < sizeof any / sizeof *any; i++) check_case(any[i].name, f_unary, 1, &x, &any[i], 1e-6);
    for (size_t i = 0; i < sizeof positive / sizeof *positive; i++)
        check_case(positive[i].name, f_unary, 1, &pos, &positive[i], 1e-6);
    md_tensor_free(x);
    md_tensor_free(pos);
}

/* relu_ and add_ write into their (op-made) input on the device too. */
static md_tensor *f_inplace(md_tensor **in, void *u) {
    (void)u;
    md_tensor *a = md_mul_scalar(ctx, in[0], 1.0), *b = md_mul(ctx, in[1], in[1]);
    return md_relu_(ctx, md_add_(ctx, a, b));
}

Test(cuda, inplace_relu_and_add) {
    NEED_GPU();
    md_tensor *p[2] = { randn_param(ctx, MD_DIMS(2, 8, 9, 9), 8), randn_param(ctx, MD_DIMS(2, 8, 9, 9), 9) };
    check_case("relu_(add_)", f_inplace, 2, p, NULL, 1e-6);
    free_all(2, p);
}

/* ---------------------------------------------------------- reductions -- */

typedef struct red_case { int dim; bool keepdim, mean; } red_case;
static md_tensor *f_red(md_tensor **in, void *u) {
    red_case *c = u;
    return c->mean ? md_mean(ctx, in[0], c->dim, c->keepdim) : md_sum(ctx, in[0], c->dim, c->keepdim);
}

Test(cuda, sum_and_mean) {
    NEED_GPU();
    md_tensor *x = randn_param(ctx, MD_DIMS(3, 70, 33), 10);
    red_case cases[] = { { MD_DIM_ALL, false, false }, { 0, false, false }, { 1, true, false }, { 2, false, true },
                         { -1, true, true }, { MD_DIM_ALL, false, true } };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case("sum/mean", f_red, 1, &x, &cases[i], 1e-5);
    md_tensor_free(x);
    /* a long row: a million elements into one */
    md_tensor *big = randn_param(ctx, MD_DIMS(2, 512, 1024), 11);
    check_case("sum of 1M", f_red, 1, &big, &cases[0], 1e-5);
    md_tensor_free(big);
}

/* --------------------------------------------------------------- conv -- */

typedef struct conv_case { md_conv2d_params p; bool bias; } conv_case;
static md_tensor *f_conv(md_tensor **in, void *u) {
    conv_case *c = u;
    return md_conv2d(ctx, in[0], in[1], c->bias ? in[2] : NULL, c->p);
}

static void conv_check(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int k, conv_case c, uint64_t seed) {
    int64_t cg = C / c.p.groups;
    md_tensor *p[3] = { randn_param(ctx, MD_DIMS(N, C, H, W), seed), randn_param(ctx, MD_DIMS(O, cg, k, k), seed + 1),
                        randn_param(ctx, MD_DIMS(O), seed + 2) };
    char name[96];
    snprintf(name, sizeof name, "conv2d %lldx%lld k%d s%d p%d d%d g%d", (long long)C, (long long)O, k, c.p.stride_h,
             c.p.pad_h, c.p.dilation_h, c.p.groups);
    check_case(name, f_conv, c.bias ? 3 : 2, p, &c, 2e-5);
    free_all(3, p);
}

static md_conv2d_params cp(int s, int pad, int d, int g) {
    return (md_conv2d_params){ .stride_h = s, .stride_w = s, .pad_h = pad, .pad_w = pad, .dilation_h = d,
                               .dilation_w = d, .groups = g };
}

Test(cuda, conv2d) {
    NEED_GPU();
    conv_check(2, 3, 33, 31, 16, 7, (conv_case){ cp(2, 3, 1, 1), false }, 20);   /* the ResNet stem */
    conv_check(2, 16, 17, 17, 24, 3, (conv_case){ cp(1, 1, 1, 1), true }, 30);
    conv_check(1, 24, 16, 20, 8, 1, (conv_case){ cp(2, 0, 1, 1), false }, 40);
    conv_check(2, 8, 15, 15, 8, 3, (conv_case){ cp(1, 2, 2, 1), true }, 50);   /* dilation */
    conv_check(2, 8, 14, 14, 12, 3, (conv_case){ cp(2, 1, 1, 4), true }, 60);  /* groups */
}

/* ---------------------------------------------------------- batch norm -- */

typedef struct bn_case { md_tensor *rm[2], *rv[2]; bool training; } bn_case;
static md_tensor *f_bn(md_tensor **in, void *u) {
    bn_case *c = u;
    int d = in[0]->device == MD_CUDA;
    return md_batch_norm2d(ctx, in[0], in[1], in[2], c->rm[d], c->rv[d], c->training, 0.1, 1e-5);
}

static void bn_check(bool training) {
    md_error err = { 0 };
    md_tensor *p[3] = { uniform_param(MD_DIMS(3, 6, 9, 11), 70, -1.0, 3.0), uniform_param(MD_DIMS(6), 71, 0.5, 1.5),
                        randn_param(ctx, MD_DIMS(6), 72) };
    bn_case c = { .training = training };
    for (int d = 0; d < 2; d++) {
        c.rm[d] = uniform_param(MD_DIMS(6), 73, -0.5, 0.5);
        c.rv[d] = uniform_param(MD_DIMS(6), 74, 0.5, 2.0);
        c.rm[d]->requires_grad = c.rv[d]->requires_grad = false;
        if (d) {
            cr_assert_eq(md_tensor_move_(ctx, c.rm[d], gpu, &err), 0, "%s", err.msg);
            cr_assert_eq(md_tensor_move_(ctx, c.rv[d], gpu, &err), 0, "%s", err.msg);
        }
    }
    check_case(training ? "batch_norm2d train" : "batch_norm2d eval", f_bn, 3, p, &c, 1e-5);
    assert_close(to_cpu(c.rm[1]), c.rm[0], 1e-6, "running_mean");
    assert_close(to_cpu(c.rv[1]), c.rv[0], 1e-6, "running_var");
    free_all(3, p);
    free_all(2, c.rm);
    free_all(2, c.rv);
}

Test(cuda, batch_norm_train) { NEED_GPU(); bn_check(true); }
Test(cuda, batch_norm_eval) { NEED_GPU(); bn_check(false); }

/* ------------------------------------------------------------- pooling -- */

typedef struct pool_case { int k, s, pad; bool ceil; } pool_case;
static md_tensor *f_pool(md_tensor **in, void *u) {
    pool_case *c = u;
    return md_max_pool2d(ctx, in[0], c->k, c->s, c->pad, c->ceil);
}

Test(cuda, max_pool2d) {
    NEED_GPU();
    md_tensor *x = randn_param(ctx, MD_DIMS(2, 5, 17, 14), 80);
    pool_case cases[] = { { 3, 2, 1, false }, { 2, 2, 0, true }, { 3, 1, 1, false } };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case("max_pool2d", f_pool, 1, &x, &cases[i], 1e-6);
    md_tensor_free(x);
}

/* -------------------------------------------------------- linear algebra -- */

static md_tensor *f_linear(md_tensor **in, void *u) { (void)u; return md_linear(ctx, in[0], in[1], in[2]); }
static md_tensor *f_matmul(md_tensor **in, void *u) {
    (void)u;
    return md_matmul(ctx, in[0], md_transpose(ctx, in[1], 1, 2));   /* a transposed operand, no copy */
}

Test(cuda, linear_and_matmul) {
    NEED_GPU();
    md_tensor *p[3] = { randn_param(ctx, MD_DIMS(37, 65), 90), randn_param(ctx, MD_DIMS(19, 65), 91),
                        randn_param(ctx, MD_DIMS(19), 92) };
    check_case("linear", f_linear, 3, p, NULL, 1e-5);
    free_all(3, p);
    md_tensor *q[2] = { randn_param(ctx, MD_DIMS(3, 10, 12), 93), randn_param(ctx, MD_DIMS(3, 7, 12), 94) };
    check_case("matmul", f_matmul, 2, q, NULL, 1e-5);
    free_all(2, q);
}

/* ------------------------------------------- a ResNet-18 training step -- */

static const char *RESNET = "backbone = { type = \"ResNet\"; depth = 18; num_stages = 4; out_indices = [0, 1, 2, 3];\n"
                            "  frozen_stages = -1; norm_eval = false; style = \"pytorch\"; init_cfg = \"None\"; };\n"
                            "sgd = { type = \"SGD\"; lr = 0.1; momentum = 0.9; weight_decay = 0.0001; };\n"
                            "adamw = { type = \"AdamW\"; lr = 0.01; weight_decay = 0.05; };\n";

typedef struct net { md_module *m; md_optimizer *opt; } net;

static net build_net(md_cfg *cfg, const char *opt, bool on_gpu) {
    md_error err = { 0 };
    md_ctx_seed(ctx, 5);   /* both copies get the same initial weights */
    net n = { md_build_backbone(ctx, md_cfg_get(cfg, "backbone"), &err), NULL };
    cr_assert_not_null(n.m, "%s", err.msg);
    if (on_gpu) cr_assert_eq(md_module_to(ctx, n.m, gpu, &err), 0, "%s", err.msg);
    n.opt = md_optimizer_build(ctx, n.m, md_cfg_get(cfg, opt), &err);
    cr_assert_not_null(n.opt, "%s", err.msg);
    md_module_train(n.m, true);
    return n;
}

/* Forward (train mode), loss = sum of w_k * out_k, backward, one step. */
static md_tensor **train_step(net *n, md_tensor *img, md_tensor **w) {
    static md_tensor *outs[2][4];
    int side = img->device == MD_CUDA;
    md_error err = { 0 };
    md_optimizer_zero_grad(n->opt);
    int k = md_backbone_forward(ctx, n->m, img, outs[side], 4);
    cr_assert_eq(k, 4, "%s", md_ctx_error(ctx)->msg);
    md_tensor *loss = NULL;
    for (int i = 0; i < 4; i++) {
        md_tensor *wi = side ? md_tensor_to(ctx, w[i], gpu) : w[i];
        md_tensor *s = md_sum(ctx, md_mul(ctx, outs[side][i], wi), MD_DIM_ALL, false);
        loss = loss ? md_add(ctx, loss, s) : s;
    }
    cr_assert_eq(md_backward(ctx, loss, &err), 0, "%s", err.msg);
    cr_assert_eq(md_optimizer_step(n->opt, &err), 0, "%s", err.msg);
    return outs[side];
}

static void resnet_step(const char *opt) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse(RESNET, "test_cuda.cfg", &err);
    cr_assert_not_null(cfg, "%s", err.msg);
    net c = build_net(cfg, opt, false), g = build_net(cfg, opt, true);
    for (int step = 0; step < 2; step++) {
        md_ctx_step_reset(ctx);
        md_tensor *img = md_tensor_empty(ctx, MD_F32, MD_DIMS(2, 3, 64, 80));
        md_rng r;
        md_rng_seed(&r, 200 + (uint64_t)step);
        for (int64_t i = 0; i < md_tensor_numel(img); i++) md_f32(img)[i] = (float)md_rng_normal(&r);
        md_tensor *w[4];
        int64_t hw[4][2] = { { 16, 20 }, { 8, 10 }, { 4, 5 }, { 2, 3 } };
        int64_t ch[4] = { 64, 128, 256, 512 };
        for (int i = 0; i < 4; i++) {
            w[i] = md_tensor_empty(ctx, MD_F32, MD_DIMS(2, ch[i], hw[i][0], hw[i][1]));
            for (int64_t j = 0; j < md_tensor_numel(w[i]); j++) md_f32(w[i])[j] = (float)md_rng_normal(&r);
        }
        md_tensor **oc = train_step(&c, img, w);
        md_tensor **og = train_step(&g, md_tensor_to(ctx, img, gpu), w);
        for (int i = 0; i < 4; i++) {
            char what[64];
            snprintf(what, sizeof what, "step %d output %d", step, i);
            assert_close(to_cpu(og[i]), oc[i], 1e-4, what);
        }
    }
    /* weights and buffers after two steps (gradients through the whole net) */
    const char *names[] = { "conv1.weight", "bn1.weight", "bn1.running_mean", "bn1.running_var",
                            "layer1.0.conv1.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.bias",
                            "layer4.1.conv2.weight" };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        md_tensor *tc = md_module_find(c.m, names[i]), *tg = md_module_find(g.m, names[i]);
        cr_assert(tc && tg, "%s missing", names[i]);
        cr_assert_eq(tg->device, MD_CUDA, "%s not on CUDA", names[i]);
        /* AdamW divides by sqrt(v): for weights whose gradients are tiny the
         * step's size is lr whatever the gradient's rounding, so the two
         * backends' summation orders show more there than with SGD */
        assert_close(to_cpu(tg), tc, strcmp(opt, "adamw") ? 2e-4 : 1e-3, names[i]);
    }
    md_optimizer_free(c.opt);
    md_optimizer_free(g.opt);
    md_module_free(c.m);
    md_module_free(g.m);
    md_cfg_free(cfg);
}

Test(cuda, resnet18_sgd_steps_match_cpu, .timeout = 120) { NEED_GPU(); resnet_step("sgd"); }
Test(cuda, resnet18_adamw_steps_match_cpu, .timeout = 120) { NEED_GPU(); resnet_step("adamw"); }
