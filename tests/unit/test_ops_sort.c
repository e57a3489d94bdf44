/* sort, argsort and topk against PyTorch (stable sort; tie-free top-k). */
#include "ops_basic_case.h"

static md_ctx *ctx;
static md_st *st;
static void setup(void) {
    ctx = md_ctx_new(NULL);
    cr_assert(ctx);
    st = golden_open("ops_basic_sort");
}
static void teardown(void) {
    md_st_close(st);
    md_ctx_free(ctx);
}
TestSuite(ops_sort, .init = setup, .fini = teardown);

typedef struct sarg { bool topk; int64_t k; int dim; bool flag; } sarg;

static md_tensor *c_values(md_ctx *c, md_tensor **in, void *u) {
    const sarg *a = u;
    return a->topk ? md_topk(c, in[0], a->k, a->dim, a->flag, NULL) : md_sort(c, in[0], a->dim, a->flag, NULL);
}

/* values and indices against out0/out1, gradient against grad0, and
 * finite differences when `gc` (tie-free inputs only). */
static void check_sorted(const char *name, sarg a, bool gc) {
    md_ctx_step_reset(ctx);
    md_tensor *x = gkey(ctx, st, name, "in0");
    char key[96];
    snprintf(key, sizeof key, "%s/g", name);
    bool grad = md_st_find(st, key) >= 0;
    x->requires_grad = grad;
    md_tensor *idx = NULL;
    md_tensor *v = a.topk ? md_topk(ctx, x, a.k, a.dim, a.flag, &idx) : md_sort(ctx, x, a.dim, a.flag, &idx);
    cr_assert(v, "%s: %s", name, md_ctx_error(ctx)->msg);
    char what[128];
    snprintf(what, sizeof what, "%s values", name);
    check_out(v, gkey(ctx, st, name, "out0"), what);
    snprintf(what, sizeof what, "%s indices", name);
    check_out(idx, gkey(ctx, st, name, "out1"), what);
    if (!grad) return;
    cr_assert_eq(md_backward_with(ctx, v, gkey(ctx, st, name, "g"), NULL), 0);
    snprintf(what, sizeof what, "%s gradient", name);
    md_tensor *gx = x->grad ? x->grad : md_tensor_zeros(ctx, MD_F32, x->ndim, x->shape);
    assert_close(gx, gkey(ctx, st, name, "grad0"), GOLDEN_TOL, what);
    if (!gc) return;
    md_tensor *p = md_tensor_new_persistent(ctx, MD_F32, x->ndim, x->shape, NULL);
    memcpy(p->data, x->data, sizeof(float) * (size_t)md_tensor_numel(x));
    p->requires_grad = true;
    double e = gradcheck(ctx, c_values, &p, 1, &a, 1e-2);
    md_tensor_free(p);
    cr_assert_lt(e, GC_TOL, "%s: gradcheck %g", name, e);
}

Test(ops_sort, sort) {
    for (int desc = 0; desc < 2; desc++) {
        const char *tag = desc ? "desc" : "asc";
        char name[64];
        snprintf(name, sizeof name, "sort_%s", tag);
        check_sorted(name, (sarg){ false, 0, 1, desc }, true);
        snprintf(name, sizeof name, "sort_dim0_%s", tag);
        check_sorted(name, (sarg){ false, 0, 0, desc }, true);
        snprintf(name, sizeof name, "sort_ties_%s", tag);   /* stable: ties by lower index */
        check_sorted(name, (sarg){ false, 0, 1, desc }, false);
        snprintf(name, sizeof name, "sort_i64_%s", tag);
        check_sorted(name, (sarg){ false, 0, 0, desc }, false);
        snprintf(name, sizeof name, "argsort_ties_%s", tag);
        md_ctx_step_reset(ctx);
        md_tensor *i = md_argsort(ctx, gkey(ctx, st, name, "in0"), 1, desc);
        check_out(i, gkey(ctx, st, name, "out"), name);
    }
    check_sorted("sort_empty", (sarg){ false, 0, 1, false }, false);
}

Test(ops_sort, topk) {
    for (int largest = 1; largest >= 0; largest--) {
        const char *tag = largest ? "largest" : "smallest";
        char name[64];
        snprintf(name, sizeof name, "topk_%s", tag);
        check_sorted(name, (sarg){ true, 3, 1, largest }, true);
        snprintf(name, sizeof name, "topk_dim0_%s", tag);
        check_sorted(name, (sarg){ true, 2, 0, largest }, true);
        snprintf(name, sizeof name, "topk_big_%s", tag);   /* quickselect path */
        check_sorted(name, (sarg){ true, 50, 0, largest }, false);
    }
    check_sorted("topk_all", (sarg){ true, 5, 0, true }, true);
    check_sorted("topk_zero", (sarg){ true, 0, 1, true }, false);
}

/* Ties in top-k: ours keeps the lower index first (PyTorch leaves the
 * order of tied values unspecified). */
Test(ops_sort, topk_ties_keep_lower_index_first) {
    md_tensor *x = md_tensor_from(ctx, MD_F32, MD_DIMS(8), (const float[]){ 1, 5, 3, 5, 2, 5, 0, 3 });
    md_tensor *idx;
    md_tensor *v = md_topk(ctx, x, 4, 0, true, &idx);
    const int64_t want[4] = { 1, 3, 5, 2 };
    for (int i = 0; i < 4; i++) cr_assert_eq(md_i64(idx)[i], want[i]);
    cr_assert_eq(md_f32(v)[3], 3.0f);
    v = md_topk(ctx, x, 3, 0, false, &idx);
    const int64_t want_s[3] = { 6, 0, 4 };
    for (int i = 0; i < 3; i++) cr_assert_eq(md_i64(idx)[i], want_s[i]);
}

/* NaN sorts above every number, as PyTorch. */
Test(ops_sort, nan_is_largest) {
    md_tensor *x = md_tensor_from(ctx, MD_F32, MD_DIMS(4), (const float[]){ 1, NAN, -2, 3 });
    md_tensor *idx;
    md_sort(ctx, x, 0, false, &idx);
    const int64_t asc[4] = { 2, 0, 3, 1 };
    for (int i = 0; i < 4; i++) cr_assert_eq(md_i64(idx)[i], asc[i]);
    md_topk(ctx, x, 1, 0, true, &idx);
    cr_assert_eq(md_i64(idx)[0], 1);
}

/* Many lines in parallel against a serial insertion sort. */
Test(ops_sort, many_lines_against_reference) {
    int64_t rows = 500, n = 64;
    md_rng r;
    md_rng_seed(&r, 21);
    md_tensor *x = md_tensor_empty(ctx, MD_F32, MD_DIMS(rows, n));
    for (int64_t i = 0; i < rows * n; i++) md_f32(x)[i] = (float)md_rng_int(&r, 20);   /* many ties */
    md_tensor *idx = md_argsort(ctx, x, 1, true);
    cr_assert(idx);
    int64_t ref[64];
    for (int64_t i = 0; i < rows; i++) {
        const float *p = md_f32(x) + i * n;
        for (int64_t j = 0; j < n; j++) {   /* stable insertion sort, descending */
            int64_t k = j;
            while (k > 0 && p[ref[k - 1]] < p[j]) { ref[k] = ref[k - 1]; k--; }
            ref[k] = j;
        }
        for (int64_t j = 0; j < n; j++) cr_assert_eq(md_i64(idx)[i * n + j], ref[j], "row %lld", (long long)i);
    }
}

Test(ops_sort, errors) {
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 3));
    md_scope_push(ctx, "rpn_head");
    cr_assert_null(md_topk(ctx, x, 4, 1, true, NULL));
    md_scope_pop(ctx);
    const char *msg = md_ctx_error(ctx)->msg;
    cr_assert(strstr(msg, "topk at rpn_head") && strstr(msg, "[2, 3] f32"), "%s", msg);
    md_ctx_clear_error(ctx);
    md_tensor *idx = (md_tensor *)1;
    cr_assert_null(md_sort(ctx, NULL, 0, false, &idx));
    cr_assert_null(idx);
    cr_assert_null(md_argsort(ctx, NULL, 0, false));
    cr_assert_not(md_ctx_failed(ctx));
}
