/* Indexing ops against PyTorch goldens, finite differences and errors. */
#include "ops_basic_case.h"

static md_ctx *ctx;
static md_st *st;
static void setup(void) {
    ctx = md_ctx_new(NULL);
    cr_assert(ctx);
    st = golden_open("ops_basic_index");
}
static void teardown(void) {
    md_st_close(st);
    md_ctx_free(ctx);
}
TestSuite(ops_index, .init = setup, .fini = teardown);

static int dim_of(void *u) { return (int)(intptr_t)u; }
static md_tensor *c_isel(md_ctx *c, md_tensor **in, void *u) { return md_index_select(c, in[0], dim_of(u), in[1]); }
static md_tensor *c_gather(md_ctx *c, md_tensor **in, void *u) { return md_gather(c, in[0], dim_of(u), in[1]); }
static md_tensor *c_scatter(md_ctx *c, md_tensor **in, void *u) {
    return md_scatter_add(c, in[0], dim_of(u), in[1], in[2]);
}
static md_tensor *c_masked(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_masked_select(c, in[0], in[1]);
}
static md_tensor *c_nonzero(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    return md_nonzero(c, in[0]);
}
#define D(d) ((void *)(intptr_t)(d))

Test(ops_index, index_select) {
    run_case(ctx, st, "index_select0", c_isel, D(0), true);
    run_case(ctx, st, "index_select1", c_isel, D(1), true);
    run_case(ctx, st, "index_select_empty", c_isel, D(0), false);
    run_case(ctx, st, "index_select_i64", c_isel, D(0), false);
}

Test(ops_index, gather_and_scatter_add) {
    run_case(ctx, st, "gather1", c_gather, D(1), true);
    run_case(ctx, st, "gather0", c_gather, D(0), true);
    run_case(ctx, st, "scatter_add0", c_scatter, D(0), true);
    run_case(ctx, st, "scatter_add1", c_scatter, D(1), true);
    run_case(ctx, st, "scatter_add_i64", c_scatter, D(0), false);
}

/* src larger than the index: only the covered part of src contributes
 * (PyTorch's own backward rejects this case, so finite differences only). */
static md_tensor *c_scatter_wide(md_ctx *c, md_tensor **in, void *u) {
    (void)u;
    md_tensor *idx = md_tensor_from(c, MD_I64, MD_DIMS(2, 2), (const int64_t[]){ 2, 0, 1, 2 });
    return md_scatter_add(c, in[0], 1, idx, in[1]);
}

Test(ops_index, scatter_add_src_larger_than_index) {
    md_tensor *in[2] = { randn_param(ctx, MD_DIMS(2, 3), 1), randn_param(ctx, MD_DIMS(3, 4), 2) };
    md_tensor *y = c_scatter_wide(ctx, in, NULL);
    cr_assert(y, "%s", md_ctx_error(ctx)->msg);
    const float *a = md_f32(in[0]), *s = md_f32(in[1]);
    float want[6] = { a[0] + s[1], a[1], a[2] + s[0], a[3], a[4] + s[4], a[5] + s[5] };
    for (int i = 0; i < 6; i++) cr_assert_float_eq(md_f32(y)[i], want[i], 1e-6);
    double e = gradcheck(ctx, c_scatter_wide, in, 2, NULL, 1e-2);
    cr_assert_lt(e, GC_TOL, "gradcheck %g", e);
    md_tensor_free(in[0]);
    md_tensor_free(in[1]);
}

Test(ops_index, masked_select) {
    run_case(ctx, st, "masked_rows", c_masked, NULL, true);
    run_case(ctx, st, "masked_rows_square", c_masked, NULL, true);   /* rows win when ambiguous */
    run_case(ctx, st, "masked_elems", c_masked, NULL, true);
    run_case(ctx, st, "masked_bcast", c_masked, NULL, true);
    run_case(ctx, st, "masked_none", c_masked, NULL, false);
}

Test(ops_index, nonzero) {
    run_case(ctx, st, "nonzero", c_nonzero, NULL, false);
    run_case(ctx, st, "nonzero_u8", c_nonzero, NULL, false);
    run_case(ctx, st, "nonzero_2d", c_nonzero, NULL, false);
    run_case(ctx, st, "nonzero_empty", c_nonzero, NULL, false);
}

Test(ops_index, large_index_select) {
    int64_t n = 5000, c = 40;
    md_tensor *a = md_tensor_empty(ctx, MD_F32, MD_DIMS(n, c));
    for (int64_t i = 0; i < n * c; i++) md_f32(a)[i] = (float)i;
    md_tensor *idx = md_tensor_empty(ctx, MD_I64, MD_DIMS(n));
    for (int64_t i = 0; i < n; i++) md_i64(idx)[i] = (i * 7919) % n;
    md_tensor *y = md_index_select(ctx, a, 0, idx);
    cr_assert(y);
    for (int64_t i = 0; i < n; i += 13)
        for (int64_t j = 0; j < c; j++) cr_assert_eq(md_f32(y)[i * c + j], (float)(((i * 7919) % n) * c + j));
}

Test(ops_index, errors) {
    md_tensor *a = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 2));
    md_tensor *bad = md_tensor_from(ctx, MD_I64, MD_DIMS(2), (const int64_t[]){ 1, 3 });
    md_scope_push(ctx, "roi_head");
    cr_assert_null(md_index_select(ctx, a, 0, bad));
    md_scope_pop(ctx);
    const char *msg = md_ctx_error(ctx)->msg;
    cr_assert(strstr(msg, "index_select at roi_head") && strstr(msg, "index 3") && strstr(msg, "[3, 2] f32"),
              "%s", msg);
    md_ctx_clear_error(ctx);
    cr_assert_null(md_index_select(ctx, a, 0, md_tensor_zeros(ctx, MD_F32, MD_DIMS(2))));
    md_ctx_clear_error(ctx);
    cr_assert_null(md_gather(ctx, a, 1, md_tensor_zeros(ctx, MD_I64, MD_DIMS(3))));   /* ndim mismatch */
    md_ctx_clear_error(ctx);
    cr_assert_null(md_masked_select(ctx, a, md_tensor_zeros(ctx, MD_U8, MD_DIMS(4))));
    md_ctx_clear_error(ctx);
    cr_assert_null(md_index_select(ctx, NULL, 0, bad));
    cr_assert_null(md_gather(ctx, a, 0, NULL));
    cr_assert_null(md_scatter_add(ctx, a, 0, bad, NULL));
    cr_assert_null(md_masked_select(ctx, NULL, bad));
    cr_assert_null(md_nonzero(ctx, NULL));
    cr_assert_not(md_ctx_failed(ctx));
}
