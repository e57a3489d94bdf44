/* Shapes and views against PyTorch goldens; view aliasing; errors. */
#include "ops_basic_case.h"

static md_ctx *ctx;
static md_st *st;
static void setup(void) {
    ctx = md_ctx_new(NULL);
    cr_assert(ctx);
    st = golden_open("ops_basic_shape");
}
static void teardown(void) {
    md_st_close(st);
    md_ctx_free(ctx);
}
TestSuite(ops_shape, .init = setup, .fini = teardown);

static md_tensor *c_reshape(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_reshape(c, in[0], MD_DIMS(4, -1));
}
static md_tensor *c_reshape_perm(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_reshape(c, md_permute(c, in[0], (const int[]){ 2, 0, 1 }), MD_DIMS(-1, 6));
}
static md_tensor *c_permute(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_permute(c, in[0], (const int[]){ 1, 2, 0 });
}
static md_tensor *c_transpose(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_contiguous(c, md_transpose(c, in[0], 0, 2));
}
static md_tensor *c_flatten(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_flatten(c, in[0], 1, 2);
}
static md_tensor *c_unsqueeze(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_unsqueeze(c, in[0], -1);
}
static md_tensor *c_squeeze(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_squeeze(c, in[0], 1);
}
static md_tensor *c_expand(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_expand(c, in[0], MD_DIMS(2, 4, 3));
}
static md_tensor *c_cat0(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_cat(c, in, 3, 0);
}
static md_tensor *c_cat1(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_cat(c, in, 2, 1);
}
static md_tensor *c_cat_perm(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    md_tensor *ts[2] = { md_transpose(c, in[0], 0, 1), in[1] };
    return md_cat(c, ts, 2, 0);
}
static md_tensor *c_cat_i64(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    md_tensor *ts[2] = { in[0], md_slice(c, in[0], 0, 0, 1, 1) };
    return md_cat(c, ts, 2, 0);
}
static md_tensor *c_stack(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_stack(c, in, 2, 1);
}
typedef struct sl { int dim; int64_t s, e, step; } sl;
static md_tensor *c_slice(md_ctx *c, md_tensor **in, void *u) {
    const sl *a = u;
    return md_slice(c, in[0], a->dim, a->s, a->e, a->step);
}
static md_tensor *c_slice_of_slice(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_slice(c, md_slice(c, md_slice(c, in[0], 1, 1, 6, 1), 0, 1, 3, 1), 1, 0, INT64_MAX, 2);
}

Test(ops_shape, views_and_copies) {
    static const struct { const char *name; gradcheck_fn f; } cases[] = {
        { "reshape", c_reshape }, { "reshape_perm", c_reshape_perm }, { "permute", c_permute },
        { "transpose", c_transpose }, { "flatten", c_flatten }, { "unsqueeze", c_unsqueeze },
        { "squeeze", c_squeeze }, { "expand", c_expand },
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
        run_case(ctx, st, cases[k].name, cases[k].f, NULL, true);
}

Test(ops_shape, cat_and_stack) {
    run_case(ctx, st, "cat0", c_cat0, NULL, true);
    run_case(ctx, st, "cat1", c_cat1, NULL, true);
    run_case(ctx, st, "cat_perm", c_cat_perm, NULL, true);
    run_case(ctx, st, "cat_i64", c_cat_i64, NULL, false);
    run_case(ctx, st, "stack", c_stack, NULL, true);
}

Test(ops_shape, slice) {
    static const struct { const char *tag; sl a; } cases[] = {
        { "basic", { 1, 1, 4, 1 } }, { "neg", { 0, -3, -1, 1 } }, { "step", { 1, 0, 7, 2 } },
        { "clamp", { 1, -100, 100, 3 } }, { "empty", { 0, 3, 1, 1 } }, { "last", { -1, 1, 5, 2 } },
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char name[64];
        snprintf(name, sizeof name, "slice_%s", cases[k].tag);
        run_case(ctx, st, name, c_slice, (void *)&cases[k].a, true);
    }
    run_case(ctx, st, "slice_of_slice", c_slice_of_slice, NULL, true);
}

Test(ops_shape, split) {
    md_tensor *x = gkey(ctx, st, "split", "in0");
    x->requires_grad = true;
    md_tensor *parts[3];
    cr_assert_eq(md_split(ctx, x, (const int64_t[]){ 2, 0, 3 }, 3, 1, parts), 0, "%s", md_ctx_error(ctx)->msg);
    md_tensor *sum = NULL;
    for (int k = 0; k < 3; k++) {
        char o[16], g[16];
        snprintf(o, sizeof o, "out%d", k);
        snprintf(g, sizeof g, "g%d", k);
        check_out(parts[k], gkey(ctx, st, "split", o), o);
        /* loss = sum_k sum(g_k * part_k) gives the fixture's gradient */
        md_tensor *t = md_sum(ctx, md_mul(ctx, parts[k], gkey(ctx, st, "split", g)), MD_DIM_ALL, false);
        sum = sum ? md_add(ctx, sum, t) : t;
    }
    cr_assert_eq(md_backward(ctx, sum, NULL), 0);
    assert_close(x->grad, gkey(ctx, st, "split", "grad0"), GOLDEN_TOL, "split gradient");
    cr_assert_eq(md_split(ctx, x, (const int64_t[]){ 2, 2 }, 2, 1, parts), -1);
    cr_assert(strstr(md_ctx_error(ctx)->msg, "split"), "%s", md_ctx_error(ctx)->msg);
}

Test(ops_shape, views_share_storage) {
    md_tensor *x = md_tensor_arange(ctx, MD_F32, 24);
    md_tensor *r = md_reshape(ctx, x, MD_DIMS(2, 3, 4));
    md_tensor *p = md_permute(ctx, r, (const int[]){ 2, 0, 1 });
    md_tensor *s = md_slice(ctx, r, 2, 1, 4, 2);
    md_tensor *e = md_expand(ctx, md_unsqueeze(ctx, x, 0), MD_DIMS(5, 24));
    cr_assert_eq(r->data, x->data);
    cr_assert_eq(p->data, x->data);
    cr_assert_eq(p->stride[0], 1);
    cr_assert_eq((float *)s->data, md_f32(x) + 1);
    cr_assert_eq(e->stride[0], 0);
    md_f32(x)[13] = -7;   /* element [1, 0, 1] */
    cr_assert_eq(md_tensor_get(s, 3 * 0 + 0 + 2 * 3), -7);   /* s[1, 0, 0] */
    cr_assert_eq(md_tensor_get(p, 1 * 6 + 1 * 3 + 0), -7);   /* p[1, 1, 0] */
    cr_assert_eq(md_tensor_get(e, 4 * 24 + 13), -7);
    /* reshape of a non-contiguous tensor copies */
    md_tensor *c = md_reshape(ctx, p, MD_DIMS(24));
    cr_assert_neq(c->data, x->data);
    cr_assert_eq(md_contiguous(ctx, r), r);
}

/* Permutes made contiguous take a tiled transpose where the source's unit
 * stride is not the last dimension: every element against its index
 * arithmetic, for sizes off the tile (16), f32 and i64, the stride-1
 * dimension at either end or in the middle, large enough to run threaded. */
Test(ops_shape, permute_copies_match_index_arithmetic) {
    static const struct { int64_t shape[4]; int perm[4]; } cases[] = {
        { { 2, 37, 50, 41 }, { 0, 2, 3, 1 } },   /* NCHW -> NHWC */
        { { 2, 50, 41, 37 }, { 0, 3, 1, 2 } },   /* NHWC -> NCHW */
        { { 3, 17, 200, 19 }, { 3, 1, 0, 2 } },
        { { 1, 16, 16, 1 }, { 0, 2, 1, 3 } },
        { { 5, 15, 33, 2 }, { 1, 3, 0, 2 } },    /* a side below the tile */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int dt = 0; dt < 2; dt++) {
            md_ctx_step_reset(ctx);
            const int64_t *sh = cases[c].shape;
            const int *pm = cases[c].perm;
            int64_t n = sh[0] * sh[1] * sh[2] * sh[3];
            md_tensor *x = md_tensor_arange(ctx, dt ? MD_I64 : MD_F32, n);
            x = md_reshape(ctx, x, 4, sh);
            md_tensor *y = md_contiguous(ctx, md_permute(ctx, x, pm));
            cr_assert(y, "%s", md_ctx_error(ctx)->msg);
            int64_t ysh[4], xst[4] = { sh[1] * sh[2] * sh[3], sh[2] * sh[3], sh[3], 1 };
            for (int d = 0; d < 4; d++) ysh[d] = sh[pm[d]];
            int64_t e = 0;
            for (int64_t a = 0; a < ysh[0]; a++)
                for (int64_t b = 0; b < ysh[1]; b++)
                    for (int64_t k = 0; k < ysh[2]; k++)
                        for (int64_t l = 0; l < ysh[3]; l++, e++) {
                            int64_t src = a * xst[pm[0]] + b * xst[pm[1]] + k * xst[pm[2]] + l * xst[pm[3]];
                            double got = dt ? (double)md_i64(y)[e] : (double)md_f32(y)[e];
                            if (got != (double)src)
                                cr_assert_fail("case %zu dtype %d element %lld: %g, expected %lld", c, dt,
                                               (long long)e, got, (long long)src);
                        }
        }
}

Test(ops_shape, squeeze_variants_and_flatten_all) {
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 3, 1, 2));
    md_tensor *a = md_squeeze(ctx, x, MD_DIM_ALL);
    cr_assert_eq(a->ndim, 2);
    cr_assert_eq(a->shape[0], 3);
    cr_assert_eq(md_squeeze(ctx, x, 1), x);   /* size 3: unchanged */
    md_tensor *f = md_flatten(ctx, x, 0, -1);
    cr_assert_eq(f->ndim, 1);
    cr_assert_eq(f->shape[0], 6);
}

Test(ops_shape, errors) {
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 3));
    md_scope_push(ctx, "neck");
    cr_assert_null(md_reshape(ctx, x, MD_DIMS(4, 2)));
    md_scope_pop(ctx);
    cr_assert(strstr(md_ctx_error(ctx)->msg, "reshape at neck") && strstr(md_ctx_error(ctx)->msg, "[2, 3] f32"),
              "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
    cr_assert_null(md_expand(ctx, x, MD_DIMS(4, 3)));
    md_ctx_clear_error(ctx);
    md_tensor *y = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 4));
    md_tensor *ts[2] = { x, y };
    cr_assert_null(md_cat(ctx, ts, 2, 0));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "[2, 4] f32"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
    cr_assert_null(md_permute(ctx, x, (const int[]){ 0, 0 }));
    md_ctx_clear_error(ctx);
    cr_assert_null(md_slice(ctx, x, 0, 0, 1, 0));
    md_ctx_clear_error(ctx);
    ts[1] = NULL;
    cr_assert_null(md_cat(ctx, ts, 2, 0));
    cr_assert_null(md_reshape(ctx, NULL, MD_DIMS(1)));
    cr_assert_null(md_slice(ctx, NULL, 0, 0, 1, 1));
    cr_assert_not(md_ctx_failed(ctx));
}
