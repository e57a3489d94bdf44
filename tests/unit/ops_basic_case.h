/* Golden-case runner shared by the basic op tests (test_ops_*.c): a case
 * <name> in a fixture written by tests/golden/ops_basic_golden.py holds
 * <name>/in0.., <name>/out, <name>/g and <name>/grad0... */
#ifndef OPS_BASIC_CASE_H
#define OPS_BASIC_CASE_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "testlib.h"

#define GOLDEN_TOL 1e-4   /* f32 relative error, as for every op of this family */
#define GC_TOL 1e-2       /* finite differences in f32 with eps 1e-2 */

static inline bool st_has(md_st *st, const char *key) { return md_st_find(st, key) >= 0; }

static inline md_tensor *gkey(md_ctx *ctx, md_st *st, const char *name, const char *suffix) {
    char key[160];
    snprintf(key, sizeof key, "%s/%s", name, suffix);
    return golden_get(ctx, st, key);
}

static inline int case_inputs(md_ctx *ctx, md_st *st, const char *name, md_tensor **in) {
    int n = 0;
    for (;; n++) {
        char key[160];
        snprintf(key, sizeof key, "%s/in%d", name, n);
        if (!st_has(st, key)) break;
        in[n] = golden_get(ctx, st, key);
    }
    return n;
}

static inline void check_out(md_tensor *out, md_tensor *ref, const char *what) {
    if (ref->dtype == MD_F32) {
        cr_assert(out, "%s: no output", what);
        cr_assert_eq(out->dtype, MD_F32, "%s: dtype %s", what, md_dtype_name(out->dtype));
        assert_close(out, ref, GOLDEN_TOL, what);
    } else {
        cr_assert(out, "%s: no output", what);
        cr_assert_eq(out->dtype, ref->dtype, "%s: dtype %s, expected %s", what, md_dtype_name(out->dtype),
                     md_dtype_name(ref->dtype));
        assert_equal(out, ref, what);
    }
}

/* Forward against <name>/out, backward against <name>/grad*, then (when
 * `gc`) a finite-difference check on the same inputs. */
static inline void run_case(md_ctx *ctx, md_st *st, const char *name, gradcheck_fn fn, void *user, bool gc) {
    md_ctx_step_reset(ctx);
    md_tensor *in[8];
    int n = case_inputs(ctx, st, name, in);
    cr_assert_gt(n, 0, "%s: no inputs in the fixture", name);
    char key[160];
    snprintf(key, sizeof key, "%s/g", name);
    bool has_grad = st_has(st, key);
    for (int i = 0; i < n; i++) in[i]->requires_grad = has_grad && in[i]->dtype == MD_F32;
    md_tensor *out = fn(ctx, in, user);
    cr_assert(out, "%s: %s", name, md_ctx_error(ctx)->msg);
    char what[200];
    snprintf(what, sizeof what, "%s output", name);
    check_out(out, gkey(ctx, st, name, "out"), what);
    if (!has_grad) return;
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, out, gkey(ctx, st, name, "g"), &err), 0, "%s: %s", name, err.msg);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%s/grad%d", name, i);
        if (!st_has(st, key)) continue;
        md_tensor *ref = golden_get(ctx, st, key);
        snprintf(what, sizeof what, "%s gradient of input %d", name, i);
        md_tensor *gx = in[i]->grad ? in[i]->grad : md_tensor_zeros(ctx, MD_F32, in[i]->ndim, in[i]->shape);
        assert_close(gx, ref, GOLDEN_TOL, what);
    }
    if (!gc) return;
    /* gradcheck resets the arena: persistent copies of the inputs */
    md_tensor *p[8];
    for (int i = 0; i < n; i++) {
        p[i] = md_tensor_new_persistent(ctx, in[i]->dtype, in[i]->ndim, in[i]->shape, NULL);
        cr_assert(p[i]);
        memcpy(p[i]->data, in[i]->data, (size_t)md_tensor_numel(in[i]) * md_dtype_size(in[i]->dtype));
        p[i]->requires_grad = in[i]->dtype == MD_F32;
    }
    double e = gradcheck(ctx, fn, p, n, user, 1e-2);
    for (int i = 0; i < n; i++) md_tensor_free(p[i]);
    cr_assert_lt(e, GC_TOL, "%s: finite-difference gradient relative error %g", name, e);
}

#endif
