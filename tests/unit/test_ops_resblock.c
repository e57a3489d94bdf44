/* A ResNet bottleneck block (conv1x1-bn-relu, conv3x3/2-bn-relu, conv1x1-bn,
 * downsample conv1x1/2-bn, add, relu) forward and backward against PyTorch
 * with the same weights, in training mode (batch statistics, running-stat
 * update) and eval mode (running statistics). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "testlib.h"

static md_ctx *ctx;
static md_st *st;
static void setup(void) {
    ctx = md_ctx_new(NULL);
    cr_assert(ctx);
    st = golden_open("ops_nn_resblock");
}
static void teardown(void) {
    md_st_close(st);
    md_ctx_free(ctx);
}
TestSuite(ops_resblock, .init = setup, .fini = teardown);

static const char *const CONVS[] = { "conv1", "conv2", "conv3", "downsample.0" };
static const char *const BNS[] = { "bn1", "bn2", "bn3", "downsample.1" };

typedef struct block {
    md_tensor *conv[4];
    md_tensor *bn_w[4], *bn_b[4], *bn_rm[4], *bn_rv[4];
} block;

static md_tensor *param(const char *mode, const char *mod, const char *name, bool grad) {
    char k[128];
    snprintf(k, sizeof k, "%s.init.%s.%s", mode, mod, name);
    md_tensor *s = golden_get(ctx, st, k);
    md_tensor *p = md_tensor_new_persistent(ctx, MD_F32, s->ndim, s->shape, NULL);
    cr_assert(p);
    cr_assert_eq(md_tensor_copy_(ctx, p, s), 0);
    p->requires_grad = grad;
    return p;
}

static void block_load(block *b, const char *mode) {
    for (int i = 0; i < 4; i++) {
        b->conv[i] = param(mode, CONVS[i], "weight", true);
        b->bn_w[i] = param(mode, BNS[i], "weight", true);
        b->bn_b[i] = param(mode, BNS[i], "bias", true);
        b->bn_rm[i] = param(mode, BNS[i], "running_mean", false);
        b->bn_rv[i] = param(mode, BNS[i], "running_var", false);
    }
}

static void block_free(block *b) {
    for (int i = 0; i < 4; i++) {
        md_tensor_free(b->conv[i]);
        md_tensor_free(b->bn_w[i]);
        md_tensor_free(b->bn_b[i]);
        md_tensor_free(b->bn_rm[i]);
        md_tensor_free(b->bn_rv[i]);
    }
}

static md_tensor *bn(block *b, int i, md_tensor *x, bool training) {
    return md_batch_norm2d(ctx, x, b->bn_w[i], b->bn_b[i], b->bn_rm[i], b->bn_rv[i], training, 0.1, 1e-5);
}

static md_tensor *block_forward(block *b, md_tensor *x, bool training) {
    md_tensor *out = md_relu(ctx, bn(b, 0, md_conv2d(ctx, x, b->conv[0], NULL, MD_CONV2D(1, 0)), training));
    out = md_relu(ctx, bn(b, 1, md_conv2d(ctx, out, b->conv[1], NULL, MD_CONV2D(2, 1)), training));
    out = bn(b, 2, md_conv2d(ctx, out, b->conv[2], NULL, MD_CONV2D(1, 0)), training);
    md_tensor *idn = bn(b, 3, md_conv2d(ctx, x, b->conv[3], NULL, MD_CONV2D(2, 0)), training);
    return md_relu(ctx, md_add(ctx, out, idn));
}

static void expect(const md_tensor *t, const char *mode, const char *what, const char *mod, const char *name,
                   double tol) {
    char k[128];
    if (mod) snprintf(k, sizeof k, "%s.%s.%s.%s", mode, what, mod, name);
    else snprintf(k, sizeof k, "%s.%s", mode, what);
    assert_close(t, golden_get(ctx, st, k), tol, k);
}

static void run(const char *mode, bool training) {
    block b;
    block_load(&b, mode);
    char k[64];
    snprintf(k, sizeof k, "%s.x", mode);
    md_tensor *x = golden_get(ctx, st, k);
    x->requires_grad = true;
    md_tensor *y = block_forward(&b, x, training);
    cr_assert(y, "%s", md_ctx_error(ctx)->msg);
    expect(y, mode, "y", NULL, NULL, 1e-5);
    snprintf(k, sizeof k, "%s.gy", mode);
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, y, golden_get(ctx, st, k), &err), 0, "%s", err.msg);
    expect(x->grad, mode, "gx", NULL, NULL, 1e-5);
    for (int i = 0; i < 4; i++) {
        expect(b.conv[i]->grad, mode, "grad", CONVS[i], "weight", 1e-5);
        expect(b.bn_w[i]->grad, mode, "grad", BNS[i], "weight", 1e-5);
        expect(b.bn_b[i]->grad, mode, "grad", BNS[i], "bias", 1e-5);
        if (training) {
            expect(b.bn_rm[i], mode, "after", BNS[i], "running_mean", 1e-5);
            expect(b.bn_rv[i], mode, "after", BNS[i], "running_var", 1e-5);
        }
    }
    block_free(&b);
}

Test(ops_resblock, training_forward_backward_matches_pytorch) { run("train", true); }
Test(ops_resblock, eval_forward_backward_matches_pytorch) { run("eval", false); }
