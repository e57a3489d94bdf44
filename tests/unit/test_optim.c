/* Optimizers against torch.optim, paramwise_cfg multipliers, grad clipping,
 * state round trip; LR schedule parsing from configs. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) { ctx = test_ctx(0, (const char *const[]){ "plugins/optimizers", NULL }); }
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(optim, .init = setup, .fini = teardown);

static const md_module_class plain = { .name = "Plain" };
static const md_module_class norm = { .name = "Norm" };

/* root { fc: weight [3, 2], bias [3] } */
static md_module *two_params(md_st *st) {
    md_error err = { 0 };
    md_module *root = md_module_new(sizeof(md_module), &plain);
    md_module *fc = md_module_new(sizeof(md_module), &plain);
    md_tensor *w = md_module_add_param(ctx, fc, "weight", MD_DIMS(3, 2), &err);
    md_tensor *b = md_module_add_param(ctx, fc, "bias", MD_DIMS(3), &err);
    md_module_add_child(root, "fc", fc, &err);
    md_tensor_copy_(ctx, w, golden_get(ctx, st, "w0"));
    md_tensor_copy_(ctx, b, golden_get(ctx, st, "b0"));
    return root;
}

static md_optimizer *build(md_module *m, const char *text) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse(text, "optim_test.cfg", &err);
    cr_assert(cfg, "%s", err.msg);
    md_optimizer *o = md_optimizer_build(ctx, m, md_cfg_get(cfg, "optimizer"), &err);
    cr_assert(o, "%s", err.msg);
    md_cfg_free(cfg);
    return o;
}

static void run_case(const char *name, const char *cfg) {
    md_st *st = golden_open("optim");
    md_module *m = two_params(st);
    md_optimizer *o = build(m, cfg);
    md_tensor *w = md_module_find(m, "fc.weight"), *b = md_module_find(m, "fc.bias");
    char key[64];
    for (int s = 0; s < 3; s++) {
        md_optimizer_zero_grad(o);
        snprintf(key, sizeof key, "gw%d", s);
        md_tensor *gw = golden_get(ctx, st, key);
        snprintf(key, sizeof key, "gb%d", s);
        md_tensor *gb = golden_get(ctx, st, key);
        if (!w->grad) w->grad = md_tensor_new_persistent(ctx, MD_F32, w->ndim, w->shape, NULL);
        if (!b->grad) b->grad = md_tensor_new_persistent(ctx, MD_F32, b->ndim, b->shape, NULL);
        md_tensor_copy_(ctx, w->grad, gw);
        md_tensor_copy_(ctx, b->grad, gb);
        cr_assert_eq(md_optimizer_step(o, NULL), 0);
        snprintf(key, sizeof key, "%s_w%d", name, s);
        assert_close(w, golden_get(ctx, st, key), 1e-6, key);
        snprintf(key, sizeof key, "%s_b%d", name, s);
        assert_close(b, golden_get(ctx, st, key), 1e-6, key);
    }
    md_optimizer_free(o);
    md_module_free(m);
    md_st_close(st);
}

#define PW "paramwise_cfg = { bias_lr_mult = 2.0; bias_decay_mult = 0.0; };"
Test(optim, sgd_momentum_matches_torch) {
    run_case("sgd", "optimizer = { type = \"SGD\"; lr = 0.1; momentum = 0.9; weight_decay = 0.01; " PW " };");
}
Test(optim, sgd_nesterov_matches_torch) {
    run_case("nesterov", "optimizer = { type = \"SGD\"; lr = 0.1; momentum = 0.9; nesterov = true; "
                         "weight_decay = 0.01; " PW " };");
}
Test(optim, adam_matches_torch) {
    run_case("adam", "optimizer = { type = \"Adam\"; lr = 0.01; betas = [0.8, 0.99]; eps = 1e-6; "
                     "weight_decay = 0.01; " PW " };");
}
Test(optim, adamw_matches_torch) {
    run_case("adamw", "optimizer = { type = \"AdamW\"; lr = 0.01; weight_decay = 0.1; " PW " };");
}

Test(optim, paramwise_multipliers_follow_mmcv) {
    md_error err = { 0 };
    md_module *root = md_module_new(sizeof(md_module), &plain);
    md_module *conv = md_module_new(sizeof(md_module), &plain);
    md_module *bn = md_module_new(sizeof(md_module), &norm);
    bn->flags |= MD_MODULE_NORM;
    md_module *head = md_module_new(sizeof(md_module), &plain);
    md_module_add_param(ctx, conv, "weight", MD_DIMS(2), &err);
    md_module_add_param(ctx, conv, "bias", MD_DIMS(2), &err);
    md_module_add_param(ctx, bn, "weight", MD_DIMS(2), &err);
    md_module_add_param(ctx, bn, "bias", MD_DIMS(2), &err);
    md_module_add_param(ctx, head, "weight", MD_DIMS(2), &err);
    md_module_add_child(root, "conv", conv, &err);
    md_module_add_child(root, "bn", bn, &err);
    md_module_add_child(root, "roi_head", head, &err);
    md_optimizer *o = build(root, "optimizer = { type = \"SGD\"; lr = 0.1; weight_decay = 0.5; paramwise_cfg = {"
                                  " bias_lr_mult = 2.0; bias_decay_mult = 0.0; norm_decay_mult = 0.2;"
                                  " custom_keys = { head = { lr_mult = 0.5; }; roi_head = { lr_mult = 3.0; decay_mult = 4.0; }; }; }; };");
    struct { const char *name; double lr, wd; } want[] = {
        { "conv.weight", 0.1, 0.5 }, { "conv.bias", 0.2, 0.0 }, { "bn.weight", 0.1, 0.1 },
        { "bn.bias", 0.1, 0.1 },   /* norm bias: no bias_lr_mult, norm decay */
        { "roi_head.weight", 0.3, 2.0 },   /* the longest matching custom key wins */
    };
    cr_assert_eq(md_optimizer_group_count(o), 5);
    for (int i = 0; i < 5; i++) {
        cr_assert_str_eq(md_optimizer_group_name(o, i), want[i].name);
        cr_assert_float_eq(md_optimizer_group_initial_lr(o, i), want[i].lr, 1e-12, "%s", want[i].name);
        cr_assert_float_eq(md_optimizer_group_weight_decay(o, i), want[i].wd, 1e-12, "%s", want[i].name);
    }
    md_optimizer_free(o);
    md_module_free(root);
}

Test(optim, grad_clip_scales_to_max_norm) {
    md_error err = { 0 };
    md_module *root = md_module_new(sizeof(md_module), &plain);
    md_tensor *p = md_module_add_param(ctx, root, "p", MD_DIMS(2), &err);
    p->grad = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(2), NULL);
    md_f32(p->grad)[0] = 3;
    md_f32(p->grad)[1] = 4;
    md_optimizer *o = build(root, "optimizer = { type = \"SGD\"; lr = 0.1; };");
    double n = md_optimizer_clip_grad_norm(o, 1.0, 2.0);
    cr_assert_float_eq(n, 5.0, 1e-9);
    cr_assert_float_eq(md_f32(p->grad)[0], 3.0 / (5 + 1e-6), 1e-6);
    cr_assert_float_eq(md_f32(p->grad)[1], 4.0 / (5 + 1e-6), 1e-6);
    /* under the limit: untouched */
    cr_assert_float_eq(md_optimizer_clip_grad_norm(o, 10.0, 2.0), 1.0, 1e-5);
    cr_assert_float_eq(md_f32(p->grad)[0], 3.0 / (5 + 1e-6), 1e-6);
    md_optimizer_free(o);
    md_module_free(root);
}

/* The 2-norm (squares) and other p-norms (pow) over many elements, against
 * sums computed here. */
Test(optim, grad_clip_norms_over_many_elements) {
    md_error err = { 0 };
    md_module *root = md_module_new(sizeof(md_module), &plain);
    md_tensor *p = md_module_add_param(ctx, root, "p", MD_DIMS(1001), &err);
    p->grad = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(1001), NULL);
    double s1 = 0, s2 = 0, s3 = 0;
    for (int k = 0; k < 1001; k++) {
        float v = (float)((k % 13) - 6) * 0.25f;
        md_f32(p->grad)[k] = v;
        s1 += fabs(v), s2 += (double)v * v, s3 += fabs((double)v * v * v);
    }
    md_optimizer *o = build(root, "optimizer = { type = \"SGD\"; lr = 0.1; };");
    cr_assert_float_eq(md_optimizer_clip_grad_norm(o, 1e9, 2.0), sqrt(s2), 1e-9 * sqrt(s2));
    cr_assert_float_eq(md_optimizer_clip_grad_norm(o, 1e9, 1.0), s1, 1e-9 * s1);
    cr_assert_float_eq(md_optimizer_clip_grad_norm(o, 1e9, 3.0), cbrt(s3), 1e-9 * cbrt(s3));
    md_optimizer_free(o);
    md_module_free(root);
}

Test(optim, state_round_trip_continues_identically) {
    md_st *st = golden_open("optim");
    const char *cfg = "optimizer = { type = \"Adam\"; lr = 0.01; betas = [0.8, 0.99]; eps = 1e-6; "
                      "weight_decay = 0.01; " PW " };";
    md_module *a = two_params(st), *b = two_params(st);
    md_optimizer *oa = build(a, cfg), *ob = build(b, cfg);
    md_tensor *wa = md_module_find(a, "fc.weight");
    wa->grad = md_tensor_new_persistent(ctx, MD_F32, wa->ndim, wa->shape, NULL);
    md_tensor_copy_(ctx, wa->grad, golden_get(ctx, st, "gw0"));
    md_optimizer_step(oa, NULL);
    /* b takes a's weights and optimizer state, then both step again */
    char path[] = "/tmp/mmdet_opt_XXXXXX";
    close(mkstemp(path));
    md_st_writer *w = md_st_writer_new();
    md_error err = { 0 };
    cr_assert_eq(md_module_save_state(a, w, "", &err), 0);
    cr_assert_eq(md_optimizer_save_state(oa, w, &err), 0);
    cr_assert_eq(md_st_writer_save(w, path, &err), 0);
    md_st_writer_free(w);
    md_st *ck = md_st_open(path, &err);
    cr_assert_eq(md_module_load_state(ctx, b, ck, NULL, false, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(md_optimizer_load_state(ctx, ob, ck, &err), 0, "%s", err.msg);
    md_tensor *wb = md_module_find(b, "fc.weight");
    wb->grad = md_tensor_new_persistent(ctx, MD_F32, wb->ndim, wb->shape, NULL);
    md_tensor_copy_(ctx, wb->grad, golden_get(ctx, st, "gw1"));
    md_tensor_copy_(ctx, wa->grad, golden_get(ctx, st, "gw1"));
    md_optimizer_step(oa, NULL);
    md_optimizer_step(ob, NULL);
    assert_close(wb, wa, 0, "weights after resumed step");
    md_st_close(ck);
    unlink(path);
    md_optimizer_free(oa);
    md_optimizer_free(ob);
    md_module_free(a);
    md_module_free(b);
    md_st_close(st);
}

Test(optim, unknown_type_and_key_are_explained) {
    md_error err = { 0 };
    md_module *root = md_module_new(sizeof(md_module), &plain);
    md_cfg *cfg = md_cfg_parse("optimizer = { type = \"SDG\"; lr = 0.1; };", "t.cfg", &err);
    cr_assert_null(md_optimizer_build(ctx, root, md_cfg_get(cfg, "optimizer"), &err));
    cr_assert(strstr(err.msg, "did you mean 'SGD'"), "%s", err.msg);
    md_cfg_free(cfg);
    cfg = md_cfg_parse("optimizer = { type = \"SGD\"; lr = 0.1; momentun = 0.9; };", "t.cfg", &err);
    cr_assert_null(md_optimizer_build(ctx, root, md_cfg_get(cfg, "optimizer"), &err));
    cr_assert(strstr(err.msg, "momentum"), "%s", err.msg);
    md_cfg_free(cfg);
    md_module_free(root);
}

Test(optim, lr_config_parses_mmdet_1x) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse("lr_config = { policy = \"step\"; warmup = \"linear\"; warmup_iters = 500;"
                               " warmup_ratio = 0.001; step = [8, 11]; };", "t.cfg", &err);
    cr_assert(cfg, "%s", err.msg);
    md_lr_schedule s;
    cr_assert_eq(md_lr_schedule_parse(md_cfg_get(cfg, "lr_config"), &s, &err), 0, "%s", err.msg);
    cr_assert_eq(s.policy, MD_LR_STEP);
    cr_assert_eq(s.n_step, 2);
    cr_assert_float_eq(md_lr_schedule_at(&s, 0.02, 9, 1000, 100, 12, 1200), 0.002, 1e-12);
    md_cfg_free(cfg);
    cfg = md_cfg_parse("lr_config = { policy = \"CosineAnealing\"; min_lr = 0.0; };", "t.cfg", &err);
    cr_assert_eq(md_lr_schedule_parse(md_cfg_get(cfg, "lr_config"), &s, &err), -1);
    cr_assert(strstr(err.msg, "CosineAnnealing"), "%s", err.msg);
    md_cfg_free(cfg);
}
