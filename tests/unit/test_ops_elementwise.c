/* Element-wise ops against PyTorch goldens, finite differences, hand-worked
 * large cases (parallel paths) and error reporting. */
#include "ops_basic_case.h"

static md_ctx *ctx;
static md_st *st;
static void setup(void) {
    ctx = md_ctx_new(NULL);
    cr_assert(ctx);
    st = golden_open("ops_basic_elementwise");
}
static void teardown(void) {
    md_st_close(st);
    md_ctx_free(ctx);
}
TestSuite(ops_elementwise, .init = setup, .fini = teardown);

typedef md_tensor *(*bin_fn)(md_ctx *, md_tensor *, md_tensor *);
typedef md_tensor *(*un_fn)(md_ctx *, md_tensor *);
static md_tensor *call_bin(md_ctx *c, md_tensor **in, void *u) { return ((bin_fn)u)(c, in[0], in[1]); }
static md_tensor *call_un(md_ctx *c, md_tensor **in, void *u) { return ((un_fn)u)(c, in[0]); }

static const char *bin_tags[] = { "same", "row", "outer", "mid", "scalar", "empty", "odd" };

static void bin_cases(const char *op, bin_fn f) {
    for (size_t k = 0; k < sizeof bin_tags / sizeof *bin_tags; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s_%s", op, bin_tags[k]);
        run_case(ctx, st, name, call_bin, (void *)f, true);
    }
}

Test(ops_elementwise, add) { bin_cases("add", md_add); }
Test(ops_elementwise, sub) { bin_cases("sub", md_sub); }
Test(ops_elementwise, mul) { bin_cases("mul", md_mul); }
Test(ops_elementwise, div) { bin_cases("div", md_div); }

Test(ops_elementwise, integer_arithmetic) {
    run_case(ctx, st, "add_i64", call_bin, (void *)md_add, false);
    run_case(ctx, st, "sub_i64", call_bin, (void *)md_sub, false);
    run_case(ctx, st, "mul_i64", call_bin, (void *)md_mul, false);
    run_case(ctx, st, "add_i32", call_bin, (void *)md_add, false);
    run_case(ctx, st, "sub_i32", call_bin, (void *)md_sub, false);
    run_case(ctx, st, "mul_i32", call_bin, (void *)md_mul, false);
    run_case(ctx, st, "add_mixed", call_bin, (void *)md_add, true);
}

static md_tensor *un_clamp(md_ctx *c, md_tensor *a) { return md_clamp(c, a, -0.5, 0.7); }
static md_tensor *un_clamp_lo(md_ctx *c, md_tensor *a) { return md_clamp(c, a, 0.1, INFINITY); }
static md_tensor *un_pow(md_ctx *c, md_tensor *a) { return md_pow_scalar(c, a, 1.7); }
static md_tensor *un_pow2(md_ctx *c, md_tensor *a) { return md_pow_scalar(c, a, 2.0); }
static md_tensor *un_add_scalar(md_ctx *c, md_tensor *a) { return md_add_scalar(c, a, 2.5); }
static md_tensor *un_mul_scalar(md_ctx *c, md_tensor *a) { return md_mul_scalar(c, a, -1.5); }

Test(ops_elementwise, unary) {
    static const struct { const char *name; un_fn f; } ops[] = {
        { "neg", md_neg }, { "relu", md_relu }, { "sigmoid", md_sigmoid }, { "exp", md_exp },
        { "log", md_log }, { "sqrt", md_sqrt }, { "abs", md_abs }, { "clamp", un_clamp },
        { "clamp_lo", un_clamp_lo }, { "pow", un_pow }, { "pow2", un_pow2 },
        { "add_scalar", un_add_scalar }, { "mul_scalar", un_mul_scalar },
    };
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        char name[64];
        snprintf(name, sizeof name, "un_%s", ops[k].name);
        run_case(ctx, st, name, call_un, (void *)ops[k].f, true);
        snprintf(name, sizeof name, "un_%s_empty", ops[k].name);
        run_case(ctx, st, name, call_un, (void *)ops[k].f, false);
    }
    run_case(ctx, st, "un_relu_odd", call_un, (void *)md_relu, false);
}

typedef md_tensor *(*cmps_fn)(md_ctx *, md_tensor *, double);
static md_tensor *call_cmps(md_ctx *c, md_tensor **in, void *u) { return ((cmps_fn)u)(c, in[0], 1.0); }
static md_tensor *ne_scalar(md_ctx *c, md_tensor *a, double s) {
    return md_logical_not(c, md_eq_scalar(c, a, s));
}

Test(ops_elementwise, comparisons) {
    static const struct { const char *name; bin_fn f; cmps_fn s; } ops[] = {
        { "gt", md_gt, md_gt_scalar }, { "ge", md_ge, md_ge_scalar }, { "lt", md_lt, md_lt_scalar },
        { "le", md_le, md_le_scalar }, { "eq", md_eq, md_eq_scalar }, { "ne", md_ne, ne_scalar },
    };
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        char name[64];
        snprintf(name, sizeof name, "cmp_%s", ops[k].name);
        run_case(ctx, st, name, call_bin, (void *)ops[k].f, false);
        snprintf(name, sizeof name, "cmp_%s_i64", ops[k].name);
        run_case(ctx, st, name, call_bin, (void *)ops[k].f, false);
        snprintf(name, sizeof name, "cmps_%s", ops[k].name);
        run_case(ctx, st, name, call_cmps, (void *)ops[k].s, false);
    }
}

Test(ops_elementwise, logic) {
    run_case(ctx, st, "logical_and", call_bin, (void *)md_logical_and, false);
    run_case(ctx, st, "logical_or", call_bin, (void *)md_logical_or, false);
    run_case(ctx, st, "logical_and_f32", call_bin, (void *)md_logical_and, false);
    run_case(ctx, st, "logical_not", call_un, (void *)md_logical_not, false);
}

static md_tensor *call_where(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_where(c, in[0], in[1], in[2]);
}

Test(ops_elementwise, where) {
    run_case(ctx, st, "where", call_where, NULL, true);
    run_case(ctx, st, "where_bcast", call_where, NULL, true);
}

static md_tensor *to_i64(md_ctx *c, md_tensor *a) { return md_cast(c, a, MD_I64); }
static md_tensor *to_f32(md_ctx *c, md_tensor *a) { return md_cast(c, a, MD_F32); }

Test(ops_elementwise, cast) {
    run_case(ctx, st, "cast_f32_i64", call_un, (void *)to_i64, false);
    run_case(ctx, st, "cast_i64_f32", call_un, (void *)to_f32, false);
    run_case(ctx, st, "cast_u8_f32", call_un, (void *)to_f32, false);
}

/* Views as inputs: a transposed and a sliced operand give the same result
 * as their contiguous copies. */
Test(ops_elementwise, strided_inputs) {
    md_rng r;
    md_rng_seed(&r, 3);
    md_tensor *a = md_tensor_empty(ctx, MD_F32, MD_DIMS(5, 6));
    md_tensor *b = md_tensor_empty(ctx, MD_F32, MD_DIMS(6, 10));
    md_tensor_normal_(a, &r, 0, 1);
    md_tensor_normal_(b, &r, 0, 1);
    md_tensor *at = md_transpose(ctx, a, 0, 1);                /* [6, 5], strided */
    md_tensor *bs = md_slice(ctx, b, 1, 1, 10, 2);             /* [6, 5], step 2 */
    cr_assert_not(md_tensor_is_contiguous(at));
    cr_assert_not(md_tensor_is_contiguous(bs));
    md_tensor *y = md_mul(ctx, at, bs);
    md_tensor *ref = md_mul(ctx, md_contiguous(ctx, at), md_contiguous(ctx, bs));
    assert_equal(y, ref, "mul of views");
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 5; j++)
            cr_assert_eq(md_f32(ref)[i * 5 + j], md_f32(a)[j * 6 + i] * md_f32(b)[i * 10 + 1 + 2 * j]);
    assert_equal(md_exp(ctx, at), md_exp(ctx, md_contiguous(ctx, at)), "exp of a view");
}

/* Sizes above the parallel threshold, against a serial loop. */
Test(ops_elementwise, large_broadcast_and_unary) {
    int64_t n = 300, m = 517;
    md_rng r;
    md_rng_seed(&r, 9);
    md_tensor *a = md_tensor_empty(ctx, MD_F32, MD_DIMS(n, m));
    md_tensor *b = md_tensor_empty(ctx, MD_F32, MD_DIMS(n, 1));
    md_tensor_normal_(a, &r, 0, 1);
    md_tensor_normal_(b, &r, 0, 1);
    md_tensor *y = md_sub(ctx, a, b);
    md_tensor *s = md_sigmoid(ctx, a);
    md_tensor *c = md_gt(ctx, a, b);
    cr_assert(y && s && c);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m; j++) {
            float x = md_f32(a)[i * m + j], z = md_f32(b)[i];
            cr_assert_eq(md_f32(y)[i * m + j], x - z);
            cr_assert_float_eq(md_f32(s)[i * m + j], 1.0f / (1.0f + expf(-x)), 1e-6);
            cr_assert_eq(md_u8(c)[i * m + j], x > z);
        }
}

Test(ops_elementwise, broadcast_mismatch_names_op_shapes_and_scope) {
    md_tensor *a = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 3));
    md_tensor *b = md_tensor_zeros(ctx, MD_F32, MD_DIMS(4));
    md_scope_push(ctx, "bbox_head");
    md_scope_push(ctx, "loss_cls");
    cr_assert_null(md_add(ctx, a, b));
    md_scope_pop(ctx);
    md_scope_pop(ctx);
    const char *msg = md_ctx_error(ctx)->msg;
    cr_assert(strstr(msg, "add at bbox_head.loss_cls"), "%s", msg);
    cr_assert(strstr(msg, "[2, 3] f32") && strstr(msg, "[4] f32"), "%s", msg);
    cr_assert_eq(md_ctx_error(ctx)->code, MD_ERR_SHAPE);
    /* the failure propagates as NULL through the next ops */
    cr_assert_null(md_relu(ctx, md_add(ctx, a, b)));
}

Test(ops_elementwise, null_inputs_propagate_silently) {
    md_tensor *a = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2));
    cr_assert_null(md_add(ctx, NULL, a));
    cr_assert_null(md_mul(ctx, a, NULL));
    cr_assert_null(md_exp(ctx, NULL));
    cr_assert_null(md_clamp(ctx, NULL, 0, 1));
    cr_assert_null(md_where(ctx, NULL, a, a));
    cr_assert_null(md_gt_scalar(ctx, NULL, 0));
    cr_assert_null(md_cast(ctx, NULL, MD_I64));
    cr_assert_not(md_ctx_failed(ctx));
}

Test(ops_elementwise, u8_arithmetic_is_rejected) {
    md_tensor *a = md_tensor_zeros(ctx, MD_U8, MD_DIMS(2));
    cr_assert_null(md_add(ctx, a, a));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "add"), "%s", md_ctx_error(ctx)->msg);
}

/* exp (and so sigmoid and softmax) uses a vectorised polynomial: compare it
 * with libm over the whole float range, including overflow, underflow,
 * infinities and NaN. */
Test(ops_elementwise, exp_matches_libm_everywhere) {
    int64_t n = 200001;
    md_tensor *x = md_tensor_empty(ctx, MD_F32, MD_DIMS(n + 5));
    for (int64_t i = 0; i < n; i++) md_f32(x)[i] = -110.0f + 200.0f * (float)i / (float)(n - 1);
    const float special[5] = { INFINITY, -INFINITY, NAN, 88.7f, -87.5f };
    for (int i = 0; i < 5; i++) md_f32(x)[n + i] = special[i];
    md_tensor *y = md_exp(ctx, x);
    cr_assert(y);
    double worst = 0;
    for (int64_t i = 0; i < n + 5; i++) {
        float v = md_f32(x)[i], got = md_f32(y)[i], want = expf(v);
        if (isnan(want)) {
            cr_assert(isnan(got), "exp(%g) = %g", v, got);
            continue;
        }
        if (isinf(want) || want < 1e-37f) {   /* overflow, or subnormal: absolute */
            cr_assert(got == want || fabsf(got - want) < 1e-37f, "exp(%g) = %g, libm %g", v, got, want);
            continue;
        }
        double e = fabs((double)got - want) / want;
        if (e > worst) worst = e;
    }
    cr_assert_lt(worst, 1e-6, "relative error %g", worst);
}

/* atan (CIoULoss's aspect-ratio term): libm's atanf bit for bit over a
 * range with infinities, NaN and -0, integers cast to f32, and the gradient
 * 1 / (1 + x^2) against finite differences. */
static md_tensor *gc_atan(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_atan(c, in[0]);
}

Test(ops_elementwise, atan_is_libm_and_differentiable) {
    int64_t n = 2001;
    md_tensor *x = md_tensor_empty(ctx, MD_F32, MD_DIMS(n + 4));
    for (int64_t i = 0; i < n; i++) md_f32(x)[i] = -50.0f + 100.0f * (float)i / (float)(n - 1);
    const float special[4] = { INFINITY, -INFINITY, NAN, -0.0f };
    for (int i = 0; i < 4; i++) md_f32(x)[n + i] = special[i];
    md_tensor *y = md_atan(ctx, x);
    cr_assert(y, "%s", md_ctx_error(ctx)->msg);
    for (int64_t i = 0; i < n + 4; i++) {
        float v = md_f32(x)[i], got = md_f32(y)[i], want = atanf(v);
        if (isnan(want)) cr_assert(isnan(got), "atan(%g) = %g", v, got);
        else cr_assert(!memcmp(&got, &want, sizeof got), "atan(%g) = %.9g, libm %.9g", v, got, want);
    }
    int64_t iv[3] = { -2, 0, 7 };
    md_tensor *yi = md_atan(ctx, md_tensor_from(ctx, MD_I64, MD_DIMS(3), iv));
    cr_assert(yi && yi->dtype == MD_F32);
    cr_assert_eq(md_f32(yi)[2], atanf(7.0f));
    md_tensor *p = randn_param(ctx, MD_DIMS(4, 5), 11);
    for (int i = 0; i < 20; i++) md_f32(p)[i] *= 3.0f;
    double e = gradcheck(ctx, gc_atan, &p, 1, NULL, 1e-3);
    cr_assert_lt(e, 1e-3, "relative error %g", e);
    md_tensor_free(p);
}

/* add_ and relu_ after conv2d + batch_norm2d (a ResNet block's tail): the
 * result aliases the BN output, and values and every gradient equal those
 * of md_add + md_relu bit for bit; a leaf that requires grad falls back to
 * a fresh tensor and is left untouched. */
static void conv_bn_relu(bool inplace, md_tensor **keep) {
    md_ctx_step_reset(ctx);
    md_rng r;
    md_rng_seed(&r, 4);
    md_error err = { 0 };
    md_tensor *x = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(2, 3, 6, 5), &err);
    md_tensor *w = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(4, 3, 3, 3), &err);
    cr_assert(x && w, "%s", err.msg);
    md_tensor_normal_(x, &r, 0, 1);
    md_tensor_normal_(w, &r, 0, 1);
    md_tensor *id = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(2, 4, 6, 5), &err);
    cr_assert(id, "%s", err.msg);
    md_tensor_normal_(id, &r, 0, 1);
    x->requires_grad = w->requires_grad = id->requires_grad = true;
    md_tensor *b = md_batch_norm2d(ctx, md_conv2d(ctx, x, w, NULL, MD_CONV2D(1, 1)), NULL, NULL, NULL, NULL, true,
                                   0.1, 1e-5);
    cr_assert(b, "%s", md_ctx_error(ctx)->msg);
    md_tensor *s = inplace ? md_add_(ctx, b, id) : md_add(ctx, b, id);
    cr_assert(s, "%s", md_ctx_error(ctx)->msg);
    md_tensor *y = inplace ? md_relu_(ctx, s) : md_relu(ctx, s);
    cr_assert(y, "%s", md_ctx_error(ctx)->msg);
    cr_assert_eq(y->data == b->data, inplace);
    md_tensor *g = md_tensor_empty(ctx, MD_F32, y->ndim, y->shape);
    md_tensor_normal_(g, &r, 0, 1);
    cr_assert_eq(md_backward_with(ctx, y, g, &err), 0, "%s", err.msg);
    md_tensor *src[4] = { y, x->grad, w->grad, id->grad };
    for (int k = 0; k < 4; k++) {
        keep[k] = md_tensor_new_persistent(ctx, MD_F32, src[k]->ndim, src[k]->shape, &err);
        memcpy(md_f32(keep[k]), md_f32(src[k]), sizeof(float) * (size_t)md_tensor_numel(src[k]));
    }
    md_tensor_free(x);
    md_tensor_free(w);
    md_tensor_free(id);
}

Test(ops_elementwise, add_relu_inplace_match_out_of_place) {
    md_tensor *a[4], *b[4];
    conv_bn_relu(false, a);
    conv_bn_relu(true, b);
    for (int k = 0; k < 4; k++) {
        cr_assert_eq(memcmp(md_f32(a[k]), md_f32(b[k]), sizeof(float) * (size_t)md_tensor_numel(a[k])), 0,
                     "tensor %d differs", k);
        md_tensor_free(a[k]);
        md_tensor_free(b[k]);
    }
    md_ctx_step_reset(ctx);
    md_error err = { 0 };
    md_tensor *leaf = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(3), &err);
    md_f32(leaf)[0] = -1, md_f32(leaf)[1] = 2, md_f32(leaf)[2] = -3;
    leaf->requires_grad = true;
    md_tensor *y = md_relu_(ctx, leaf);
    cr_assert(y && y->data != leaf->data);
    cr_assert_eq(md_f32(leaf)[0], -1.0f);
    cr_assert_eq(md_f32(y)[0], 0.0f);
    cr_assert_eq(md_f32(y)[1], 2.0f);
    md_tensor_free(leaf);
}
