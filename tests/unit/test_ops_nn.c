/* batch_norm2d, max_pool2d, interpolate_nearest, upsample_nearest against
 * PyTorch goldens (tests/golden/ops_nn_golden.py) and finite differences. */
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
    st = golden_open("ops_nn_misc");
}
static void teardown(void) {
    md_st_close(st);
    md_ctx_free(ctx);
}
TestSuite(ops_nn, .init = setup, .fini = teardown);

static char key_buf[64];
static const char *key(const char *prefix, int i, const char *name) {
    snprintf(key_buf, sizeof key_buf, "%s%d_%s", prefix, i, name);
    return key_buf;
}
static bool has(const char *prefix, int i, const char *name) { return md_st_find(st, key(prefix, i, name)) >= 0; }
static md_tensor *get(const char *prefix, int i, const char *name) { return golden_get(ctx, st, key(prefix, i, name)); }

static void check(const md_tensor *a, const char *prefix, int i, const char *name, double tol) {
    char what[64];
    snprintf(what, sizeof what, "%s%d %s", prefix, i, name);
    assert_close(a, get(prefix, i, name), tol, what);
}

static void backward_with(md_tensor *y, md_tensor *gy) {
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, y, gy, &err), 0, "%s", err.msg);
}

/* ---------------------------------------------------------- batch norm -- */

/* Batch statistics of a channel whose mean is 1e5 times its spread (one
 * channel constant): the running variance matches a two-pass double
 * reference computed here from the same float values. */
Test(ops_nn, batch_norm_stats_with_large_offset) {
    const int N = 2, C = 3, HW = 35;
    md_tensor *x = md_tensor_empty(ctx, MD_F32, MD_DIMS(N, C, 5, 7));
    md_rng r;
    md_rng_seed(&r, 11);
    md_tensor_normal_(x, &r, 0, 1);
    float *p = md_f32(x);
    const double off[3] = { 1000, -3, 7 }, sd[3] = { 0.01, 2, 0 };
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < HW; k++) p[(i * C + c) * HW + k] = (float)(off[c] + sd[c] * p[(i * C + c) * HW + k]);
    md_tensor *rm = md_tensor_zeros(ctx, MD_F32, MD_DIMS(C)), *rv = md_tensor_zeros(ctx, MD_F32, MD_DIMS(C));
    cr_assert(md_batch_norm2d(ctx, x, NULL, NULL, rm, rv, true, 1.0, 1e-5));
    for (int c = 0; c < C; c++) {
        double m = 0, q = 0, n = N * HW;
        for (int i = 0; i < N; i++)
            for (int k = 0; k < HW; k++) m += p[(i * C + c) * HW + k];
        m /= n;
        for (int i = 0; i < N; i++)
            for (int k = 0; k < HW; k++) q += (p[(i * C + c) * HW + k] - m) * (p[(i * C + c) * HW + k] - m);
        double v = q / (n - 1);
        cr_assert(fabs(md_f32(rm)[c] - m) <= 1e-6 * fabs(m) + 1e-7, "channel %d mean %.9g want %.9g", c,
                  md_f32(rm)[c], m);
        cr_assert(fabs(md_f32(rv)[c] - v) <= 1e-5 * v + 1e-12, "channel %d var %.9g want %.9g", c, md_f32(rv)[c], v);
    }
}

Test(ops_nn, batch_norm_golden_training_eval_running_stats) {
    int n = 0;
    for (int i = 0; has("bn", i, "x"); i++, n++) {
        md_ctx_step_reset(ctx);
        md_tensor *x = get("bn", i, "x"), *p = get("bn", i, "p"), *f = get("bn", i, "f");
        bool training = md_i64(p)[0], affine = md_i64(p)[1];
        md_tensor *w = affine ? get("bn", i, "w") : NULL, *b = affine ? get("bn", i, "b") : NULL;
        md_tensor *rm = get("bn", i, "rm"), *rv = get("bn", i, "rv");
        x->requires_grad = true;
        if (affine) w->requires_grad = b->requires_grad = true;
        md_tensor *y = md_batch_norm2d(ctx, x, w, b, rm, rv, training, md_f32(f)[0], md_f32(f)[1]);
        cr_assert(y, "bn%d: %s", i, md_ctx_error(ctx)->msg);
        check(y, "bn", i, "y", 1e-5);
        check(rm, "bn", i, "rm_after", 1e-6);
        check(rv, "bn", i, "rv_after", 1e-6);
        backward_with(y, get("bn", i, "gy"));
        check(x->grad, "bn", i, "gx", 1e-5);
        if (affine) {
            check(w->grad, "bn", i, "gw", 1e-5);
            check(b->grad, "bn", i, "gb", 1e-5);
        }
    }
    cr_assert_geq(n, 4);
}

/* norm_eval + requires_grad=False: eval statistics, no parameter gradients,
 * the input gradient still flows. */
Test(ops_nn, batch_norm_frozen_affine_gives_input_grad_only) {
    md_tensor *x = get("bn", 2, "x"), *w = get("bn", 2, "w"), *b = get("bn", 2, "b");
    md_tensor *rm = get("bn", 2, "rm"), *rv = get("bn", 2, "rv");
    x->requires_grad = true;
    md_tensor *y = md_batch_norm2d(ctx, x, w, b, rm, rv, false, 0.1, 1e-5);
    cr_assert(y);
    backward_with(y, get("bn", 2, "gy"));
    check(x->grad, "bn", 2, "gx", 1e-5);
    cr_assert_null(w->grad);
    cr_assert_null(b->grad);
    /* fully frozen, input without grad: nothing recorded */
    md_tensor *x2 = get("bn", 2, "x");
    md_tensor *y2 = md_batch_norm2d(ctx, x2, w, b, rm, rv, false, 0.1, 1e-5);
    cr_assert(y2 && !y2->requires_grad);
}

static md_tensor *gc_bn_train(md_ctx *c, md_tensor **in, void *user) {
    (void)user;
    /* running stats left out: the update is not part of the function */
    return md_batch_norm2d(c, in[0], in[1], in[2], NULL, NULL, true, 0.1, 1e-5);
}

static md_tensor *gc_bn_eval(md_ctx *c, md_tensor **in, void *user) {
    md_tensor **rs = user;
    return md_batch_norm2d(c, in[0], in[1], in[2], rs[0], rs[1], false, 0.1, 1e-5);
}

Test(ops_nn, batch_norm_gradcheck) {
    md_tensor *in[3] = { randn_param(ctx, MD_DIMS(3, 2, 3, 4), 1), randn_param(ctx, MD_DIMS(2), 2),
                         randn_param(ctx, MD_DIMS(2), 3) };
    double e = gradcheck(ctx, gc_bn_train, in, 3, NULL, 1e-2);
    cr_assert_lt(e, 1e-2, "training: %g", e);
    md_tensor *rm = randn_param(ctx, MD_DIMS(2), 4), *rv = randn_param(ctx, MD_DIMS(2), 5);
    for (int c = 0; c < 2; c++) md_f32(rv)[c] = fabsf(md_f32(rv)[c]) + 0.5f;
    rm->requires_grad = rv->requires_grad = false;
    md_tensor *rs[2] = { rm, rv };
    e = gradcheck(ctx, gc_bn_eval, in, 3, rs, 1e-2);
    cr_assert_lt(e, 1e-2, "eval: %g", e);
    for (int i = 0; i < 3; i++) md_tensor_free(in[i]);
    md_tensor_free(rm);
    md_tensor_free(rv);
}

Test(ops_nn, batch_norm_errors_and_empty) {
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 3, 4, 4));
    md_tensor *w = md_tensor_zeros(ctx, MD_F32, MD_DIMS(4));
    cr_assert_null(md_batch_norm2d(ctx, x, w, NULL, NULL, NULL, true, 0.1, 1e-5));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "batch_norm2d") && strstr(md_ctx_error(ctx)->msg, "[4] f32"),
              "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
    cr_assert_null(md_batch_norm2d(ctx, x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "running_mean"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
    md_tensor *one = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 3, 1, 1));
    cr_assert_null(md_batch_norm2d(ctx, one, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
    md_ctx_clear_error(ctx);
    md_tensor *e = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 3, 4, 4));
    md_tensor *rm = md_tensor_full(ctx, MD_F32, MD_DIMS(3), 0.5), *rv = md_tensor_full(ctx, MD_F32, MD_DIMS(3), 2);
    md_tensor *y = md_batch_norm2d(ctx, e, NULL, NULL, rm, rv, true, 0.1, 1e-5);
    cr_assert(y && y->shape[0] == 0, "%s", md_ctx_error(ctx)->msg);
    cr_assert_eq(md_f32(rm)[0], 0.5f);
    cr_assert_eq(md_f32(rv)[2], 2.0f);
}

/* ------------------------------------------------------------ max pool -- */

Test(ops_nn, max_pool_golden_with_ties) {
    int n = 0;
    for (int i = 0; has("mp", i, "x"); i++, n++) {
        md_ctx_step_reset(ctx);
        md_tensor *x = get("mp", i, "x");
        const int64_t *p = md_i64(get("mp", i, "p"));
        x->requires_grad = true;
        md_tensor *y = md_max_pool2d(ctx, x, (int)p[0], (int)p[1], (int)p[2], p[3] != 0);
        cr_assert(y, "mp%d: %s", i, md_ctx_error(ctx)->msg);
        check(y, "mp", i, "y", 0);
        backward_with(y, get("mp", i, "gy"));
        /* sums of the same floats in the same order: exact, and ties route
         * the gradient to PyTorch's element */
        check(x->grad, "mp", i, "gx", 1e-6);
    }
    cr_assert_geq(n, 5);
}

static md_tensor *gc_pool(md_ctx *c, md_tensor **in, void *user) {
    (void)user;
    return md_max_pool2d(c, in[0], 3, 2, 1, true);
}

Test(ops_nn, max_pool_gradcheck) {
    /* distinct values spaced far beyond eps: no ties, no kinks */
    md_tensor *x = randn_param(ctx, MD_DIMS(2, 2, 5, 6), 1);
    for (int i = 0; i < 120; i++) md_f32(x)[i] = (float)((i * 37) % 120) * 0.05f;
    double e = gradcheck(ctx, gc_pool, &x, 1, NULL, 1e-2);
    cr_assert_lt(e, 1e-3, "%g", e);
    md_tensor_free(x);
}

Test(ops_nn, max_pool_errors) {
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 1, 2, 2));
    cr_assert_null(md_max_pool2d(ctx, x, 3, 1, 2, false));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "max_pool2d"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
    cr_assert_null(md_max_pool2d(ctx, x, 5, 1, 0, false));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "too small"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
    md_tensor *e = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 3, 8, 8));
    md_tensor *y = md_max_pool2d(ctx, e, 3, 2, 1, false);
    cr_assert(y && y->shape[0] == 0 && y->shape[2] == 4);
}

/* ------------------------------------------------------- nearest resize -- */

Test(ops_nn, interpolate_nearest_golden) {
    int n = 0;
    for (int i = 0; has("in", i, "x"); i++, n++) {
        md_ctx_step_reset(ctx);
        md_tensor *x = get("in", i, "x");
        const int64_t *p = md_i64(get("in", i, "p"));
        x->requires_grad = true;
        md_tensor *y = md_interpolate_nearest(ctx, x, p[0], p[1]);
        cr_assert(y, "in%d: %s", i, md_ctx_error(ctx)->msg);
        check(y, "in", i, "y", 0);
        backward_with(y, get("in", i, "gy"));
        check(x->grad, "in", i, "gx", 1e-6);
    }
    cr_assert_geq(n, 5);
}

Test(ops_nn, upsample_nearest_golden) {
    int n = 0;
    for (int i = 0; has("up", i, "x"); i++, n++) {
        md_ctx_step_reset(ctx);
        md_tensor *x = get("up", i, "x");
        x->requires_grad = true;
        md_tensor *y = md_upsample_nearest(ctx, x, (int)md_i64(get("up", i, "p"))[0]);
        cr_assert(y, "up%d: %s", i, md_ctx_error(ctx)->msg);
        check(y, "up", i, "y", 0);
        backward_with(y, get("up", i, "gy"));
        check(x->grad, "up", i, "gx", 1e-6);
    }
    cr_assert_geq(n, 2);
}

static md_tensor *gc_interp(md_ctx *c, md_tensor **in, void *user) {
    (void)user;
    return md_interpolate_nearest(c, in[0], 7, 4);
}

static md_tensor *gc_up(md_ctx *c, md_tensor **in, void *user) {
    (void)user;
    return md_upsample_nearest(c, in[0], 2);
}

Test(ops_nn, nearest_gradcheck) {
    md_tensor *x = randn_param(ctx, MD_DIMS(1, 2, 3, 5), 3);
    double e = gradcheck(ctx, gc_interp, &x, 1, NULL, 1e-2);
    cr_assert_lt(e, 1e-3, "interpolate: %g", e);
    e = gradcheck(ctx, gc_up, &x, 1, NULL, 1e-2);
    cr_assert_lt(e, 1e-3, "upsample: %g", e);
    md_tensor_free(x);
}

Test(ops_nn, nearest_strided_input_and_errors) {
    md_tensor *s = md_tensor_arange(ctx, MD_F32, 12);
    md_tensor *v = md_tensor_detach(ctx, s);   /* [1,1,3,4] viewed from [4,3] storage */
    v->ndim = 4;
    v->shape[0] = v->shape[1] = 1; v->shape[2] = 3; v->shape[3] = 4;
    v->stride[0] = v->stride[1] = 12; v->stride[2] = 1; v->stride[3] = 3;
    md_tensor *y = md_upsample_nearest(ctx, v, 2);
    cr_assert(y);
    /* y[0,0,oh,ow] = v[oh/2, ow/2] = storage[(ow/2)*3 + oh/2] */
    for (int oh = 0; oh < 6; oh++)
        for (int ow = 0; ow < 8; ow++) cr_assert_eq(md_f32(y)[oh * 8 + ow], (float)((ow / 2) * 3 + oh / 2));
    cr_assert_null(md_upsample_nearest(ctx, v, 0));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "upsample_nearest"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
    cr_assert_null(md_interpolate_nearest(ctx, v, -1, 3));
    md_ctx_clear_error(ctx);
    md_tensor *e = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 2, 3, 3));
    md_tensor *ye = md_interpolate_nearest(ctx, e, 5, 5);
    cr_assert(ye && ye->shape[0] == 0 && ye->shape[3] == 5);
}
