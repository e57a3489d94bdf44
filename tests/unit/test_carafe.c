/* CARAFE: the op (md_carafe) against an independent PyTorch formulation of
 * mmcv's formula and by finite differences, and FCNMaskHead with
 * upsample_cfg type carafe (mmcv's CARAFEPack) against mmdet 2.28.2's head
 * (tests/golden/carafe_golden.py). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/roi_head.h>
#include "testlib.h"

static md_ctx *ctx;
static md_st *gold;
static void setup(void) {
    ctx = test_ctx(7, (const char *const[]){ "plugins/heads", "plugins/losses", NULL });
    gold = golden_open("carafe");
}
static void teardown(void) {
    md_st_close(gold);
    md_ctx_free(ctx);
}
TestSuite(carafe, .init = setup, .fini = teardown);

static md_tensor *get(const char *pre, const char *what) {
    char k[128];
    snprintf(k, sizeof k, "%s%s", pre, what);
    return golden_get(ctx, gold, k);
}

/* A persistent copy of a fixture tensor that requires grad. */
static md_tensor *leaf(md_tensor *t) {
    md_tensor *p = md_tensor_new_persistent(ctx, MD_F32, t->ndim, t->shape, NULL);
    cr_assert_not_null(p);
    memcpy(md_f32(p), md_f32(md_contiguous(ctx, t)), sizeof(float) * (size_t)md_tensor_numel(t));
    p->requires_grad = true;
    return p;
}

Test(carafe, op_matches_the_formula_and_its_gradients) {
    for (int i = 0; i < 4; i++) {
        char pre[8];
        snprintf(pre, sizeof pre, "op%d.", i);
        md_tensor *cfg = md_contiguous(ctx, get(pre, "cfg"));
        int k = (int)md_i64(cfg)[0], G = (int)md_i64(cfg)[1], s = (int)md_i64(cfg)[2];
        md_tensor *x = leaf(get(pre, "x")), *m = leaf(get(pre, "masks"));
        md_tensor *y = md_carafe(ctx, x, m, k, G, s);
        cr_assert_not_null(y, "%s", md_ctx_error(ctx)->msg);
        assert_close(y, get(pre, "out"), 1e-6, "carafe out");
        md_error err = { 0 };
        md_tensor *l = md_sum(ctx, md_mul(ctx, y, get(pre, "g")), MD_DIM_ALL, false);
        cr_assert_eq(md_backward(ctx, l, &err), 0, "%s", err.msg);
        assert_close(x->grad, get(pre, "gx"), 1e-6, "carafe grad features");
        assert_close(m->grad, get(pre, "gmasks"), 1e-6, "carafe grad masks");
        md_tensor_free(x);
        md_tensor_free(m);
    }
}

typedef struct { int k, G, s; } carafe_args;
static md_tensor *carafe_fn(md_ctx *c, md_tensor **in, void *u) {
    const carafe_args *a = u;
    return md_carafe(c, in[0], in[1], a->k, a->G, a->s);
}
Test(carafe, op_gradient_by_finite_differences) {
    carafe_args a[] = { { 3, 2, 2 }, { 5, 1, 3 }, { 1, 2, 1 } };
    for (int i = 0; i < 3; i++) {
        md_tensor *in[2] = { randn_param(ctx, MD_DIMS(2, 4, 3, 4), 3 + (uint64_t)i),
                             randn_param(ctx, MD_DIMS(2, a[i].k * a[i].k * a[i].G, 3 * a[i].s, 4 * a[i].s),
                                         13 + (uint64_t)i) };
        double e = gradcheck(ctx, carafe_fn, in, 2, &a[i], 1e-2);
        cr_assert_lt(e, 1e-2, "k %d G %d s %d: relative error %g", a[i].k, a[i].G, a[i].s, e);
        md_tensor_free(in[0]);
        md_tensor_free(in[1]);
    }
}

Test(carafe, op_refuses_bad_shapes) {
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 4, 3, 3));
    struct { md_tensor *m; int k, G, s; const char *msg; } bad[] = {
        { md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 9, 6, 6)), 2, 1, 2, "odd" },
        { md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 27, 6, 6)), 3, 3, 2, "multiple of group_size" },
        { md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 9, 6, 5)), 3, 1, 2, "masks" },
        { md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 8, 6, 6)), 3, 1, 2, "masks" },
    };
    for (int i = 0; i < 4; i++) {
        md_ctx_clear_error(ctx);
        cr_assert_null(md_carafe(ctx, x, bad[i].m, bad[i].k, bad[i].G, bad[i].s));
        const char *msg = md_ctx_error(ctx)->msg;
        cr_assert(strstr(msg, "carafe") && strstr(msg, bad[i].msg), "case %d: %s", i, msg);
    }
    md_ctx_clear_error(ctx);
}

/* ---- FCNMaskHead with CARAFE upsampling ---- */
#define HEAD_CFG                                                                                                  \
    "h = { type = \"FCNMaskHead\"; num_convs = 1; roi_feat_size = 5; in_channels = 4; conv_out_channels = 6;"   \
    " num_classes = 3; upsample_cfg = { type = \"carafe\"; scale_factor = 2; up_kernel = 3; up_group = 2;"       \
    " encoder_kernel = 3; encoder_dilation = 2; compressed_channels = 5; }; };"

static md_module *build_head(const char *text, md_error *err) {
    md_cfg *root = md_cfg_parse(text, "test_carafe.cfg", err);
    if (!root) return NULL;
    md_module *m = md_build_from_cfg(ctx, "heads", md_cfg_get(root, "h"), NULL, err);
    md_cfg_free(root);
    return m;
}

Test(carafe, fcn_mask_head_matches_mmdet) {
    md_error err = { 0 };
    md_module *m = build_head(HEAD_CFG, &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_load_report rep;
    cr_assert_eq(md_module_load_state(ctx, m, gold, "head.w.", false, &rep, &err), 0, "%s", err.msg);
    /* convs.0.conv (2), upsample.channel_compressor (2), upsample.content_encoder (2), conv_logits (2) */
    cr_assert_eq(rep.missing, 0, "missing %s", rep.text);
    cr_assert_eq(rep.loaded, 8, "%d loaded (%s)", rep.loaded, rep.text);
    const md_mask_head_class *c = md_mask_head_class_of(m);
    md_tensor *pred = c->forward(ctx, m, get("head.", "x"));
    cr_assert_not_null(pred, "%s", md_ctx_error(ctx)->msg);
    assert_close(pred, get("head.", "mask_pred"), 1e-5, "mask_pred");
    md_losses losses = { 0 };
    cr_assert_eq(c->loss(ctx, m, pred, get("head.", "targets"), get("head.", "labels"), &losses, &err), 0, "%s",
                 err.msg);
    assert_close(losses.values[0], get("head.", "loss_mask"), 1e-5, "loss_mask");
    cr_assert_eq(md_backward(ctx, losses.values[0], &err), 0, "%s", err.msg);
    static const char *params[] = { "convs.0.conv.weight", "upsample.channel_compressor.weight",
                                    "upsample.content_encoder.weight", "upsample.content_encoder.bias",
                                    "conv_logits.weight" };
    for (int i = 0; i < 5; i++) {
        char k[96];
        snprintf(k, sizeof k, "head.g.%s", params[i]);
        md_tensor *p = md_module_find(m, params[i]);
        cr_assert(p && p->grad, "%s: no gradient", params[i]);
        assert_close(p->grad, golden_get(ctx, gold, k), 1e-4, params[i]);
    }
    md_module_free(m);
}

static void moments(const md_tensor *p, double *mean, double *sd, double *maxabs) {
    double s = 0, s2 = 0, mx = 0;
    int64_t n = md_tensor_numel(p);
    for (int64_t i = 0; i < n; i++) {
        double v = md_f32(p)[i];
        s += v;
        s2 += v * v;
        mx = fabs(v) > mx ? fabs(v) : mx;
    }
    *mean = s / (double)n;
    *sd = sqrt(s2 / (double)n - *mean * *mean);
    *maxabs = mx;
}

/* mmcv's CARAFEPack.init_weights: xavier uniform (gain 1) on
 * channel_compressor, normal(0, 0.001) on content_encoder, biases 0; the
 * sizes of mmcv's defaults (up_kernel 5, up_group 1, encoder_kernel 3,
 * compressed_channels 64). */
Test(carafe, pack_defaults_and_init_are_mmcvs) {
    md_error err = { 0 };
    md_module *m = build_head("h = { type = \"FCNMaskHead\"; num_convs = 2; in_channels = 32; conv_out_channels = 48;"
                              " num_classes = 4; upsample_cfg = { type = \"carafe\"; scale_factor = 2; }; };",
                              &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_tensor *cw = md_module_find(m, "upsample.channel_compressor.weight");
    md_tensor *ew = md_module_find(m, "upsample.content_encoder.weight");
    md_tensor *lw = md_module_find(m, "conv_logits.weight");
    cr_assert(cw && ew && lw);
    cr_assert(cw->ndim == 4 && cw->shape[0] == 64 && cw->shape[1] == 48 && cw->shape[2] == 1);
    cr_assert(ew->shape[0] == 5 * 5 * 1 * 2 * 2 && ew->shape[1] == 64 && ew->shape[2] == 3 && ew->shape[3] == 3);
    cr_assert(lw->shape[0] == 4 && lw->shape[1] == 48, "conv_logits reads the CARAFE output's channels");
    double mean, sd, mx;
    moments(cw, &mean, &sd, &mx);
    double a = sqrt(6.0 / (48 + 64));   /* xavier uniform bound, fan_in 48, fan_out 64 */
    cr_assert(mx <= a && mx > 0.9 * a && fabs(sd - a / sqrt(3.0)) < 0.1 * a, "compressor: max %g sd %g, bound %g",
              mx, sd, a);
    moments(ew, &mean, &sd, &mx);
    cr_assert(fabs(sd - 0.001) < 0.0001 && fabs(mean) < 0.0001, "content_encoder: sd %g mean %g", sd, mean);
    const char *biases[] = { "upsample.channel_compressor.bias", "upsample.content_encoder.bias" };
    for (int k = 0; k < 2; k++) {
        md_tensor *b = md_module_find(m, biases[k]);
        cr_assert_not_null(b, "%s", biases[k]);
        for (int64_t i = 0; i < md_tensor_numel(b); i++) cr_assert_eq(md_f32(b)[i], 0.0f, "%s", biases[k]);
    }
    md_tensor *x = md_tensor_full(ctx, MD_F32, MD_DIMS(2, 32, 7, 7), 0.5);
    md_tensor *y = md_mask_head_class_of(m)->forward(ctx, m, x);
    cr_assert_not_null(y, "%s", md_ctx_error(ctx)->msg);
    cr_assert(y->shape[0] == 2 && y->shape[1] == 4 && y->shape[2] == 14 && y->shape[3] == 14);
    md_module_free(m);
}

Test(carafe, bad_upsample_cfg_names_the_key) {
    md_error err = { 0 };
    cr_assert_null(build_head("h = { type = \"FCNMaskHead\"; upsample_cfg = { type = \"carafe\"; scale_factor = 2;"
                              " up_kernal = 3; }; };", &err));
    cr_assert(strstr(err.msg, "up_kernal") && strstr(err.msg, "up_kernel"), "%s", err.msg);
    err = (md_error){ 0 };
    cr_assert_null(build_head("h = { type = \"FCNMaskHead\"; upsample_cfg = { type = \"carafe\"; scale_factor = 2;"
                              " up_kernel = 4; }; };", &err));
    cr_assert(strstr(err.msg, "up_kernel"), "%s", err.msg);
    err = (md_error){ 0 };
    cr_assert_null(build_head("h = { type = \"FCNMaskHead\"; upsample_cfg = { type = \"pixel_shuffle\";"
                              " scale_factor = 2; }; };", &err));
    cr_assert(strstr(err.msg, "upsample_cfg.type") && strstr(err.msg, "carafe"), "%s", err.msg);
}
