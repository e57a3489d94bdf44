/* The shape family's CUDA kernels against the CPU: casts, integer and scalar
 * comparisons, where, cat/stack, indexing (index_select, gather,
 * scatter_add, nonzero, masked_select), softmax, max/argmax, integer sums,
 * group norm and nearest resizing. Each case runs on both devices from the
 * same inputs (check_case); outputs and input gradients must agree. Integer
 * outputs must be equal; the scatter-adds and the nearest backward add in the
 * CPU's order, so their results are held to float rounding too.
 *
 * Without a GPU every test skips and says why. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "cudalib.h"

TestSuite(cuda_shape, .init = cuda_setup, .fini = cuda_teardown);

/* t moved to ref's device (fixtures built on the host inside a case). */
static md_tensor *like(md_tensor *t, const md_tensor *ref) {
    return ref->device == MD_CUDA ? md_tensor_to(ctx, t, gpu) : t;
}

static md_tensor *i64_from(const int64_t *v, int ndim, const int64_t *shape) {
    return md_tensor_from(ctx, MD_I64, ndim, shape, v);
}

/* ---------------------------------------------- casts and comparisons -- */

static md_tensor *f_cast(md_tensor **in, void *u) {
    int c = *(int *)u;
    md_tensor *x = in[0], *x3 = md_mul_scalar(ctx, x, 3.0);
    md_tensor *i64 = md_cast(ctx, x3, MD_I64), *i32 = md_cast(ctx, x3, MD_I32);
    md_tensor *row = md_cast(ctx, md_slice(ctx, x3, 0, 2, 3, 1), MD_I32);   /* [1, 7] */
    switch (c) {
    case 0: return i64;
    case 1: return i32;
    case 2: return md_cast(ctx, md_abs(ctx, x3), MD_U8);
    case 3: return md_cast(ctx, i64, MD_F32);
    case 4: return md_cast(ctx, md_gt_scalar(ctx, x, 0.1), MD_I64);
    case 5: return md_gt_scalar(ctx, x, 0.1);
    case 6: return md_le_scalar(ctx, i64, 1.0);
    case 7: return md_logical_not(ctx, i32);
    case 8: return md_eq_scalar(ctx, md_cast(ctx, md_abs(ctx, x3), MD_U8), 2.0);
    case 9: return md_lt(ctx, i64, row);              /* i64 vs i32, broadcast */
    case 10: return md_add(ctx, i64, row);            /* integer arithmetic */
    case 11: return md_mul(ctx, i32, md_sub(ctx, i32, row));
    case 12: return md_logical_and(ctx, md_gt_scalar(ctx, x, 0.0), i64);
    case 13: return md_logical_or(ctx, md_relu(ctx, x), md_lt_scalar(ctx, i32, -1.0));
    case 14: return md_ne(ctx, md_cast(ctx, md_abs(ctx, x3), MD_U8), md_cast(ctx, row, MD_U8));
    case 15: return md_ge(ctx, x, md_cast(ctx, row, MD_F32));   /* f32 vs a cast integer */
    default: {   /* true division (f32) by integers >= 1 */
        md_tensor *den = md_cast(ctx, md_add_scalar(ctx, md_abs(ctx, md_slice(ctx, x3, 0, 1, 2, 1)), 1.0), MD_I32);
        return md_div(ctx, i64, den);
    }
    }
}

Test(cuda_shape, casts_and_comparisons) {
    NEED_GPU();
    md_tensor *x = randn_param(ctx, MD_DIMS(5, 7), 1);
    x->requires_grad = false;
    md_f32(x)[3] = 0.0f;   /* an exact zero and a -0 for the logic ops */
    md_f32(x)[4] = -0.0f;
    for (int c = 0; c <= 16; c++) {
        char name[32];
        snprintf(name, sizeof name, "cast/compare %d", c);
        check_case(name, f_cast, 1, &x, &c, 1e-6);
    }
    md_tensor_free(x);
}

/* ------------------------------------------------- integer reductions -- */

static md_tensor *f_intred(md_tensor **in, void *u) {
    int c = *(int *)u;
    md_tensor *i64 = md_cast(ctx, md_mul_scalar(ctx, in[0], 3.0), MD_I64);
    switch (c) {
    case 0: return md_sum(ctx, i64, 1, false);
    case 1: return md_sum(ctx, md_cast(ctx, i64, MD_I32), 0, true);
    case 2: return md_sum(ctx, md_gt_scalar(ctx, in[0], 0.0), MD_DIM_ALL, false);
    case 3: return md_argmax(ctx, i64, 0, true);   /* ties: the first maximum */
    case 4: return md_argmax(ctx, in[0], 1, false);
    case 5: return md_argmax(ctx, md_cast(ctx, i64, MD_U8), -1, false);
    case 6: {
        md_tensor *idx;
        md_tensor *v = md_max(ctx, md_cast(ctx, i64, MD_I32), 1, false, &idx);
        md_tensor *t[2] = { md_cast(ctx, v, MD_I64), v ? idx : NULL };
        return md_stack(ctx, t, 2, 0);
    }
    default: return md_mean(ctx, md_cast(ctx, i64, MD_I32), 0, false);
    }
}

Test(cuda_shape, integer_sums_and_argmax) {
    NEED_GPU();
    md_tensor *x = randn_param(ctx, MD_DIMS(9, 13), 2);
    x->requires_grad = false;
    for (int c = 0; c <= 7; c++) {
        char name[32];
        snprintf(name, sizeof name, "integer reduction %d", c);
        check_case(name, f_intred, 1, &x, &c, 1e-6);
    }
    md_tensor_free(x);
}

/* NaN wins (and the first NaN); rows without one take their first maximum. */
Test(cuda_shape, argmax_nan_wins) {
    NEED_GPU();
    md_tensor *x = randn_param(ctx, MD_DIMS(4, 6), 3);
    x->requires_grad = false;
    md_f32(x)[2] = NAN;
    md_f32(x)[4] = NAN;
    md_f32(x)[13] = md_f32(x)[15] = 50.0f;   /* a tie in row 2 */
    int c = 4;
    check_case("argmax with NaN", f_intred, 1, &x, &c, 0);
    md_tensor_free(x);
}

/* ------------------------------------------------------------- where -- */

static md_tensor *f_where(md_tensor **in, void *u) {
    int c = *(int *)u;
    md_tensor *cond = c == 0 ? md_gt_scalar(ctx, in[2], 0.0) : md_relu(ctx, in[2]);   /* f32 cond: non-zero */
    return md_where(ctx, cond, in[0], in[1]);
}

Test(cuda_shape, where_broadcasts) {
    NEED_GPU();
    md_tensor *p[3] = { randn_param(ctx, MD_DIMS(4, 1, 6), 4), randn_param(ctx, MD_DIMS(5, 6), 5),
                        randn_param(ctx, MD_DIMS(4, 5, 1), 6) };
    p[2]->requires_grad = false;
    for (int c = 0; c < 2; c++) check_case("where", f_where, 3, p, &c, 1e-6);
    free_all(3, p);
}

/* --------------------------------------------------------- cat, stack -- */

static md_tensor *f_cat(md_tensor **in, void *u) {
    int c = *(int *)u;
    if (c == 0) return md_cat(ctx, in, 3, 1);
    if (c == 1) {   /* a permuted (strided) input */
        md_tensor *t[2] = { md_permute(ctx, in[3], (const int[]){ 1, 0, 2 }), in[0] };
        return md_cat(ctx, t, 2, 0);
    }
    if (c == 2) {
        md_tensor *t[3] = { in[0], md_mul_scalar(ctx, in[0], 2.0), md_permute(ctx, in[3], (const int[]){ 1, 0, 2 }) };
        return md_stack(ctx, t, 3, 2);
    }
    if (c == 3) {   /* integers, no gradient */
        md_tensor *t[2] = { md_cast(ctx, md_mul_scalar(ctx, in[1], 4.0), MD_I64), md_argmax(ctx, in[1], 1, true) };
        return md_cat(ctx, t, 2, 1);
    }
    md_tensor *t[2] = { in[0], md_slice(ctx, in[1], 1, 0, 0, 1) };   /* an empty piece */
    return md_cat(ctx, t, 2, 1);
}

Test(cuda_shape, cat_and_stack) {
    NEED_GPU();
    md_tensor *p[4] = { randn_param(ctx, MD_DIMS(2, 3, 4), 7), randn_param(ctx, MD_DIMS(2, 5, 4), 8),
                        randn_param(ctx, MD_DIMS(2, 1, 4), 9), randn_param(ctx, MD_DIMS(3, 2, 4), 10) };
    for (int c = 0; c < 5; c++) {
        char name[32];
        snprintf(name, sizeof name, "cat/stack %d", c);
        check_case(name, f_cat, 4, p, &c, 1e-6);
    }
    free_all(4, p);
}

/* ---------------------------------------------------------- indexing -- */

typedef struct isel_case { int dim; int64_t k; const int64_t *idx; bool i32; } isel_case;

static md_tensor *f_isel(md_tensor **in, void *u) {
    isel_case *c = u;
    md_tensor *idx = like(i64_from(c->idx, MD_DIMS(c->k)), in[0]);
    if (c->i32) idx = md_cast(ctx, idx, MD_I32);
    return md_index_select(ctx, in[0], c->dim, idx);
}

Test(cuda_shape, index_select_and_its_backward) {
    NEED_GPU();
    md_tensor *x = randn_param(ctx, MD_DIMS(6, 5, 3), 11);
    static const int64_t i0[] = { 4, 0, 4, 2, 4, 1, 0 }, i1[] = { 1, 1, 2 }, none[] = { 0 };
    isel_case cases[] = { { 0, 7, i0, false }, { 1, 3, i1, true }, { -1, 3, i1, false }, { 0, 0, none, false } };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case("index_select", f_isel, 1, &x, &cases[i], 1e-6);
    md_tensor_free(x);
    /* many repeats into few rows: the backward adds them in the CPU's order */
    md_tensor *y = randn_param(ctx, MD_DIMS(50, 8), 12);
    static int64_t many[3000];
    md_rng r;
    md_rng_seed(&r, 13);
    for (int i = 0; i < 3000; i++) many[i] = (int64_t)(md_rng_uniform(&r) * 50) % 50;
    isel_case big = { 0, 3000, many, false };
    check_case("index_select (3000 into 50)", f_isel, 1, &y, &big, 1e-7);
    md_tensor_free(y);
}

Test(cuda_shape, index_out_of_range_is_reported) {
    NEED_GPU();
    md_ctx_step_reset(ctx);
    md_tensor *x = md_tensor_to(ctx, md_tensor_arange(ctx, MD_F32, 6), gpu);
    md_tensor *idx = md_tensor_to(ctx, i64_from((const int64_t[]){ 1, 9, -1 }, MD_DIMS(3)), gpu);
    cr_assert_null(md_index_select(ctx, x, 0, idx));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "index 9 (entry 1) out of range"), "%s", md_ctx_error(ctx)->msg);
    md_tensor *gi = md_tensor_to(ctx, i64_from((const int64_t[]){ 0, 6 }, MD_DIMS(2)), gpu);
    cr_assert_null(md_gather(ctx, x, 0, gi));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "out of range"), "%s", md_ctx_error(ctx)->msg);
}

static const int64_t gidx[] = { 5, 0, 5, 2, 2, 2, 1, 4, 3, 0, 0, 0 };

static md_tensor *f_gather(md_tensor **in, void *u) {
    (void)u;
    return md_gather(ctx, in[0], 1, like(i64_from(gidx, MD_DIMS(4, 3)), in[0]));
}

static md_tensor *f_scatter(md_tensor **in, void *u) {
    int c = *(int *)u;
    md_tensor *idx = like(i64_from(gidx, MD_DIMS(4, 3)), in[0]);
    if (c == 0) return md_scatter_add(ctx, in[0], 1, idx, in[1]);
    /* integers (no gradient) */
    md_tensor *a = md_cast(ctx, md_mul_scalar(ctx, in[0], 5.0), MD_I64);
    md_tensor *s = md_cast(ctx, md_mul_scalar(ctx, in[1], 5.0), MD_I64);
    return md_scatter_add(ctx, a, 1, idx, s);
}

Test(cuda_shape, gather_and_scatter_add) {
    NEED_GPU();
    md_tensor *x = randn_param(ctx, MD_DIMS(4, 6), 14);
    check_case("gather", f_gather, 1, &x, NULL, 1e-6);
    md_tensor *p[2] = { x, randn_param(ctx, MD_DIMS(4, 5), 15) };   /* src larger than the index */
    for (int c = 0; c < 2; c++) check_case("scatter_add", f_scatter, 2, p, &c, 1e-6);
    free_all(2, p);
}

static md_tensor *f_nonzero(md_tensor **in, void *u) {
    int c = *(int *)u;
    switch (c) {
    case 0: return md_nonzero(ctx, md_gt_scalar(ctx, in[0], 0.3));
    case 1: return md_nonzero(ctx, md_reshape(ctx, md_relu(ctx, in[0]), MD_DIMS(-1)));   /* 1-D, f32 */
    case 2: return md_nonzero(ctx, md_gt_scalar(ctx, in[0], 100.0));                 /* nothing */
    case 3: return md_nonzero(ctx, md_cast(ctx, md_mul_scalar(ctx, in[0], 2.0), MD_I64));
    case 4: return md_masked_select(ctx, in[0], md_gt_scalar(ctx, in[0], 0.0));        /* elements */
    default: {                                                                          /* rows */
        md_tensor *mask = md_gt_scalar(ctx, md_sum(ctx, in[0], 2, false), 0.0);   /* [9, 4]: a's leading dims */
        return md_masked_select(ctx, in[0], mask);
    }
    }
}

Test(cuda_shape, nonzero_and_masked_select) {
    NEED_GPU();
    md_tensor *x = randn_param(ctx, MD_DIMS(9, 4, 3), 16);
    for (int c = 0; c <= 5; c++) {
        char name[32];
        snprintf(name, sizeof name, "nonzero/masked_select %d", c);
        check_case(name, f_nonzero, 1, &x, &c, 1e-6);
    }
    md_tensor_free(x);
}

/* ----------------------------------------------------- softmax, max -- */

typedef struct sm_case { int dim; bool log; } sm_case;

static md_tensor *f_softmax(md_tensor **in, void *u) {
    sm_case *c = u;
    return c->log ? md_log_softmax(ctx, in[0], c->dim) : md_softmax(ctx, in[0], c->dim);
}

Test(cuda_shape, softmax_and_log_softmax) {
    NEED_GPU();
    md_tensor *x = randn_param(ctx, MD_DIMS(7, 81), 17);
    md_tensor *y = randn_param(ctx, MD_DIMS(2, 5, 4, 3), 18);
    md_tensor *z = randn_param(ctx, MD_DIMS(3, 1000), 19);
    for (int log = 0; log < 2; log++) {
        sm_case rows = { 1, log }, cols = { 0, log }, mid = { 1, log }, last = { -1, log };
        check_case("softmax rows", f_softmax, 1, &x, &rows, 1e-5);
        check_case("softmax columns", f_softmax, 1, &x, &cols, 1e-5);
        check_case("softmax 4-D", f_softmax, 1, &y, &mid, 1e-5);
        check_case("softmax long rows", f_softmax, 1, &z, &last, 1e-5);
    }
    md_tensor_free(x);
    md_tensor_free(y);
    md_tensor_free(z);
}

typedef struct max_case { int dim; bool keepdim; } max_case;

static md_tensor *f_max(md_tensor **in, void *u) {
    max_case *c = u;
    md_tensor *idx;
    return md_max(ctx, in[0], c->dim, c->keepdim, &idx);
}

Test(cuda_shape, max_values_and_gradient) {
    NEED_GPU();
    md_tensor *x = randn_param(ctx, MD_DIMS(6, 11, 5), 20);
    max_case cases[] = { { 1, false }, { 0, true }, { -1, false }, { MD_DIM_ALL, false } };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case("max", f_max, 1, &x, &cases[i], 1e-6);
    md_tensor_free(x);
}

/* --------------------------------------------------------- group norm -- */

typedef struct gn_case { int groups; bool affine; double shift; } gn_case;

static md_tensor *f_gn(md_tensor **in, void *u) {
    gn_case *c = u;
    md_tensor *x = c->shift != 0 ? md_add_scalar(ctx, in[0], c->shift) : in[0];
    return md_group_norm(ctx, x, c->groups, c->affine ? in[1] : NULL, c->affine ? in[2] : NULL, 1e-5);
}

Test(cuda_shape, group_norm) {
    NEED_GPU();
    md_tensor *p[3] = { randn_param(ctx, MD_DIMS(2, 8, 5, 7), 21), uniform_param(MD_DIMS(8), 22, 0.5, 1.5),
                        randn_param(ctx, MD_DIMS(8), 23) };
    gn_case cases[] = { { 4, true, 0 }, { 8, false, 0 }, { 1, true, 0 }, { 2, true, 100.0 } };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case("group_norm", f_gn, 3, p, &cases[i], 1e-5);
    free_all(3, p);
    /* 1x1 maps (an FPN's top levels): the terms of the gradient nearly cancel */
    md_tensor *q[3] = { randn_param(ctx, MD_DIMS(2, 8, 1, 1), 24), uniform_param(MD_DIMS(8), 25, 0.5, 1.5),
                        randn_param(ctx, MD_DIMS(8), 26) };
    gn_case small = { 4, true, 0 };
    check_case("group_norm 1x1", f_gn, 3, q, &small, 1e-4);
    free_all(3, q);
}

/* ------------------------------------------------------------ nearest -- */

typedef struct nn_case { int scale; int64_t oh, ow; } nn_case;

static md_tensor *f_nearest(md_tensor **in, void *u) {
    nn_case *c = u;
    return c->scale ? md_upsample_nearest(ctx, in[0], c->scale) : md_interpolate_nearest(ctx, in[0], c->oh, c->ow);
}

Test(cuda_shape, nearest_resize) {
    NEED_GPU();
    md_tensor *x = randn_param(ctx, MD_DIMS(2, 3, 5, 4), 27);
    nn_case cases[] = { { 2, 0, 0 }, { 3, 0, 0 }, { 0, 7, 9 }, { 0, 3, 2 }, { 0, 5, 4 }, { 0, 10, 4 }, { 0, 0, 3 } };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[48];
        snprintf(name, sizeof name, "nearest x%d %lldx%lld", cases[i].scale, (long long)cases[i].oh,
                 (long long)cases[i].ow);
        check_case(name, f_nearest, 1, &x, &cases[i], 1e-6);
    }
    md_tensor_free(x);
}
