/* Softmax and reductions against PyTorch goldens and finite differences. */
#include "ops_basic_case.h"

static md_ctx *ctx;
static md_st *st;
static void setup(void) {
    ctx = md_ctx_new(NULL);
    cr_assert(ctx);
    st = golden_open("ops_basic_reduce");
}
static void teardown(void) {
    md_st_close(st);
    md_ctx_free(ctx);
}
TestSuite(ops_reduce, .init = setup, .fini = teardown);

typedef struct rarg { int dim; bool keep; } rarg;
static md_tensor *c_softmax(md_ctx *c, md_tensor **in, void *u) { return md_softmax(c, in[0], ((rarg *)u)->dim); }
static md_tensor *c_log_softmax(md_ctx *c, md_tensor **in, void *u) {
    return md_log_softmax(c, in[0], ((rarg *)u)->dim);
}
static md_tensor *c_sum(md_ctx *c, md_tensor **in, void *u) {
    return md_sum(c, in[0], ((rarg *)u)->dim, ((rarg *)u)->keep);
}
static md_tensor *c_mean(md_ctx *c, md_tensor **in, void *u) {
    return md_mean(c, in[0], ((rarg *)u)->dim, ((rarg *)u)->keep);
}
static md_tensor *c_max(md_ctx *c, md_tensor **in, void *u) {
    return md_max(c, in[0], ((rarg *)u)->dim, ((rarg *)u)->keep, NULL);
}
static md_tensor *c_argmax(md_ctx *c, md_tensor **in, void *u) {
    return md_argmax(c, in[0], ((rarg *)u)->dim, ((rarg *)u)->keep);
}

Test(ops_reduce, softmax_and_log_softmax) {
    static const struct { const char *tag; rarg a; } cases[] = {
        { "last", { -1, 0 } }, { "first", { 0, 0 } }, { "mid", { 1, 0 } }, { "odd", { 1, 0 } }, { "empty", { 1, 0 } },
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char name[64];
        bool gc = strcmp(cases[k].tag, "empty") != 0;
        snprintf(name, sizeof name, "softmax_%s", cases[k].tag);
        run_case(ctx, st, name, c_softmax, (void *)&cases[k].a, gc);
        snprintf(name, sizeof name, "log_softmax_%s", cases[k].tag);
        run_case(ctx, st, name, c_log_softmax, (void *)&cases[k].a, gc);
    }
    /* logits of +-300: exp would overflow without the max shift */
    rarg d1 = { 1, 0 };
    run_case(ctx, st, "log_softmax_large", c_log_softmax, &d1, false);
}

Test(ops_reduce, sum_and_mean) {
    static const struct { const char *tag; rarg a; bool mean; } cases[] = {
        { "d0", { 0, false }, true }, { "d1k", { 1, true }, true }, { "mid", { 1, false }, true },
        { "neg", { -1, true }, true }, { "empty", { 0, false }, false }, { "emptyk", { 1, true }, false },
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char name[64];
        snprintf(name, sizeof name, "sum_%s", cases[k].tag);
        run_case(ctx, st, name, c_sum, (void *)&cases[k].a, true);
        if (!cases[k].mean) continue;
        snprintf(name, sizeof name, "mean_%s", cases[k].tag);
        run_case(ctx, st, name, c_mean, (void *)&cases[k].a, true);
    }
    rarg all = { MD_DIM_ALL, false };
    run_case(ctx, st, "sum_all", c_sum, &all, true);
    run_case(ctx, st, "mean_all", c_mean, &all, true);
    run_case(ctx, st, "sum_all_big", c_sum, &all, false);   /* chunked partial sums */
    rarg d1 = { 1, false };
    run_case(ctx, st, "sum_i64", c_sum, &d1, false);
}

Test(ops_reduce, max_values_indices_and_argmax) {
    static const struct { const char *tag; rarg a; } cases[] = {
        { "d0", { 0, false } }, { "d1k", { 1, true } }, { "mid", { 1, false } }, { "odd", { -1, false } },
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char name[64];
        snprintf(name, sizeof name, "max_%s", cases[k].tag);
        md_ctx_step_reset(ctx);
        md_tensor *x = gkey(ctx, st, name, "in0");
        x->requires_grad = true;
        md_tensor *idx = NULL;
        md_tensor *v = md_max(ctx, x, cases[k].a.dim, cases[k].a.keep, &idx);
        check_out(v, gkey(ctx, st, name, "out0"), name);
        check_out(idx, gkey(ctx, st, name, "out1"), name);
        cr_assert_eq(md_backward_with(ctx, v, gkey(ctx, st, name, "g"), NULL), 0);
        assert_close(x->grad, gkey(ctx, st, name, "grad0"), GOLDEN_TOL, name);
        snprintf(name, sizeof name, "argmax_%s", cases[k].tag);
        run_case(ctx, st, name, c_argmax, (void *)&cases[k].a, false);
        /* distinct values: no kinks within eps */
        snprintf(name, sizeof name, "max_%s", cases[k].tag);
        md_ctx_step_reset(ctx);
        md_tensor *p = randn_param(ctx, x->ndim, x->shape, 11);
        memcpy(p->data, gkey(ctx, st, name, "in0")->data, sizeof(float) * (size_t)md_tensor_numel(p));
        double e = gradcheck(ctx, c_max, &p, 1, (void *)&cases[k].a, 1e-2);
        md_tensor_free(p);
        cr_assert_lt(e, GC_TOL, "%s: gradcheck %g", name, e);
    }
    /* ties: the first maximum wins and takes the whole gradient */
    md_ctx_step_reset(ctx);
    md_tensor *x = gkey(ctx, st, "max_ties", "in0");
    x->requires_grad = true;
    md_tensor *idx;
    md_tensor *v = md_max(ctx, x, 1, false, &idx);
    check_out(v, gkey(ctx, st, "max_ties", "out0"), "max_ties");
    check_out(idx, gkey(ctx, st, "max_ties", "out1"), "max_ties indices");
    cr_assert_eq(md_backward_with(ctx, v, gkey(ctx, st, "max_ties", "g"), NULL), 0);
    assert_close(x->grad, gkey(ctx, st, "max_ties", "grad0"), GOLDEN_TOL, "max_ties gradient");
    md_tensor *xi = gkey(ctx, st, "max_i64", "in0");
    v = md_max(ctx, xi, 0, false, &idx);
    check_out(v, gkey(ctx, st, "max_i64", "out0"), "max_i64");
    check_out(idx, gkey(ctx, st, "max_i64", "out1"), "max_i64 indices");
}

Test(ops_reduce, max_over_all_and_empty_dim) {
    md_tensor *x = md_tensor_arange(ctx, MD_F32, 10);
    md_f32(x)[3] = 100;
    md_tensor *idx;
    md_tensor *v = md_max(ctx, md_reshape(ctx, x, MD_DIMS(2, 5)), MD_DIM_ALL, false, &idx);
    cr_assert_eq(v->ndim, 0);
    cr_assert_eq(md_tensor_item(v), 100);
    cr_assert_eq(md_tensor_item(idx), 3);
    cr_assert_null(md_max(ctx, md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 0)), 1, false, NULL));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "[3, 0] f32"), "%s", md_ctx_error(ctx)->msg);
}

/* Large sizes: the parallel and blocked paths against double-precision loops. */
Test(ops_reduce, large_against_serial_reference) {
    int64_t a = 37, n = 201, b = 300;
    md_rng r;
    md_rng_seed(&r, 5);
    md_tensor *x = md_tensor_empty(ctx, MD_F32, MD_DIMS(a, n, b));
    md_tensor_normal_(x, &r, 0, 2);
    md_tensor *s = md_sum(ctx, x, 1, false), *sm = md_softmax(ctx, x, 1), *m = md_max(ctx, x, 1, false, NULL);
    cr_assert(s && sm && m);
    const float *p = md_f32(x);
    for (int64_t i = 0; i < a; i++)
        for (int64_t j = 0; j < b; j += 7) {
            double acc = 0, mx = -INFINITY, z = 0;
            for (int64_t k = 0; k < n; k++) {
                double v = p[(i * n + k) * b + j];
                acc += v;
                mx = v > mx ? v : mx;
            }
            for (int64_t k = 0; k < n; k++) z += exp(p[(i * n + k) * b + j] - mx);
            cr_assert(fabs(md_f32(s)[i * b + j] - acc) < 1e-4 * (1 + fabs(acc)));
            cr_assert_eq(md_f32(m)[i * b + j], (float)mx);
            double want = exp(p[(i * n + 5) * b + j] - mx) / z;
            cr_assert(fabs(md_f32(sm)[(i * n + 5) * b + j] - want) < 1e-5 * (1 + want));
        }
}

Test(ops_reduce, errors_and_null) {
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 3));
    cr_assert_null(md_sum(ctx, NULL, 0, false));
    cr_assert_null(md_softmax(ctx, NULL, 0));
    cr_assert_not(md_ctx_failed(ctx));
    md_scope_push(ctx, "rpn_head");
    cr_assert_null(md_softmax(ctx, x, 2));
    md_scope_pop(ctx);
    const char *msg = md_ctx_error(ctx)->msg;
    cr_assert(strstr(msg, "softmax at rpn_head") && strstr(msg, "[2, 3] f32"), "%s", msg);
}
