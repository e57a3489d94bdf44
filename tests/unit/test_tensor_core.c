/* Tensor core: arena lifetimes, views, errors, and tape autograd through a
 * custom op defined the way a plugin would define one. */
#include <criterion/criterion.h>
#include <string.h>
#include <math.h>
#include <mmdet/mmdet.h>
#include "internal.h"
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) { ctx = md_ctx_new(NULL); cr_assert(ctx); }
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(tensor_core, .init = setup, .fini = teardown);

/* y = x^2 * c, a plugin-style differentiable op. */
static int square_scale_backward(md_ctx *c, md_node *node, md_tensor *g) {
    md_tensor *x = md_node_input(node, 0);
    float scale = *(float *)md_node_saved(node);
    md_tensor *gx = md_tensor_empty_like(c, x);
    if (!gx) return -1;
    for (int64_t i = 0; i < md_tensor_numel(x); i++)
        md_f32(gx)[i] = 2.0f * scale * md_f32(x)[i] * md_f32(g)[i];
    return md_node_accumulate(c, node, 0, gx);
}

static md_tensor *square_scale(md_ctx *c, md_tensor *x, float scale) {
    if (!x) return NULL;
    md_tensor *y = md_tensor_empty_like(c, x);
    if (!y) return NULL;
    for (int64_t i = 0; i < md_tensor_numel(x); i++) md_f32(y)[i] = scale * md_f32(x)[i] * md_f32(x)[i];
    md_node *n = md_autograd_record(c, y, &x, 1, square_scale_backward, "square_scale");
    if (n) *(float *)md_node_save(c, n, sizeof(float)) = scale;
    return y;
}

Test(tensor_core, zeros_full_and_describe) {
    md_tensor *t = md_tensor_full(ctx, MD_F32, MD_DIMS(2, 3), 1.5);
    cr_assert_eq(md_tensor_numel(t), 6);
    cr_assert(md_tensor_is_contiguous(t));
    cr_assert_float_eq(md_tensor_get(t, 5), 1.5, 1e-7);
    char buf[64];
    cr_assert_str_eq(md_tensor_describe(t, buf, sizeof buf), "[2, 3] f32");
    md_tensor *z = md_tensor_zeros(ctx, MD_I64, MD_DIMS(4));
    cr_assert_eq(md_i64(z)[3], 0);
}

Test(tensor_core, arena_reset_reuses_memory) {
    md_tensor_empty(ctx, MD_F32, MD_DIMS(1000, 1000));
    size_t used = md_ctx_arena_used(ctx);
    cr_assert_geq(used, 4000000u);
    md_ctx_step_reset(ctx);
    cr_assert_eq(md_ctx_arena_used(ctx), 0u);
    size_t mark = md_ctx_arena_mark(ctx);
    md_tensor_empty(ctx, MD_F32, MD_DIMS(100));
    md_ctx_arena_release(ctx, mark);
    cr_assert_eq(md_ctx_arena_used(ctx), mark);
}

Test(tensor_core, arena_grows_past_one_chunk) {
    for (int i = 0; i < 5; i++) cr_assert(md_tensor_zeros(ctx, MD_F32, MD_DIMS(8 << 20)));
    cr_assert_geq(md_ctx_arena_peak(ctx), (size_t)5 * (32u << 20));
    md_ctx_step_reset(ctx);
    md_tensor *t = md_tensor_zeros(ctx, MD_F32, MD_DIMS(8 << 20));
    cr_assert(t);
    cr_assert_eq(md_f32(t)[(8 << 20) - 1], 0.0f);
}

Test(tensor_core, custom_op_backward_accumulates_into_persistent_leaf) {
    md_tensor *x = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(3), NULL);
    cr_assert(x);
    float v[3] = { 1, -2, 3 };
    for (int i = 0; i < 3; i++) md_f32(x)[i] = v[i];
    x->requires_grad = true;
    for (int step = 0; step < 2; step++) {
        md_tensor *y = square_scale(ctx, x, 0.5f);
        /* sum through a second custom op application: loss = sum(3 * y^2)? keep
         * it simple: seed with ones, d/dx (0.5 x^2) = x */
        md_error err = { 0 };
        cr_assert_eq(md_backward(ctx, y, &err), 0, "%s", err.msg);
        md_ctx_step_reset(ctx);
    }
    for (int i = 0; i < 3; i++) cr_assert_float_eq(md_f32(x->grad)[i], 2 * v[i], 1e-6);
    md_tensor_zero_grad(x);
    cr_assert_float_eq(md_f32(x->grad)[1], 0.0f, 0);
    md_tensor_free(x);
}

Test(tensor_core, chain_rule_through_two_nodes) {
    md_tensor *x = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(2), NULL);
    md_f32(x)[0] = 2; md_f32(x)[1] = -1;
    x->requires_grad = true;
    md_tensor *y = square_scale(ctx, square_scale(ctx, x, 1.0f), 1.0f);   /* x^4 */
    cr_assert_eq(md_backward(ctx, y, NULL), 0);
    cr_assert_float_eq(md_f32(x->grad)[0], 32.0f, 1e-5);   /* 4 x^3 */
    cr_assert_float_eq(md_f32(x->grad)[1], -4.0f, 1e-5);
    md_tensor_free(x);
}

Test(tensor_core, no_grad_mode_records_nothing) {
    md_tensor *x = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(2), NULL);
    x->requires_grad = true;
    bool prev = md_grad_set_enabled(ctx, false);
    md_tensor *y = square_scale(ctx, x, 1.0f);
    md_grad_set_enabled(ctx, prev);
    cr_assert_not(y->requires_grad);
    md_error err = { 0 };
    cr_assert_eq(md_backward(ctx, y, &err), -1);
    cr_assert(strstr(err.msg, "does not require grad"), "%s", err.msg);
    md_tensor_free(x);
}

Test(tensor_core, op_errors_are_sticky_and_scoped) {
    md_scope_push(ctx, "backbone");
    md_scope_push(ctx, "layer1.0");
    cr_assert_null(md_op_fail(ctx, "conv2d", "bad channels %d", 3));
    md_op_fail(ctx, "relu", "second error is not the cause");
    md_scope_pop(ctx);
    md_scope_pop(ctx);
    cr_assert_str_eq(md_ctx_error(ctx)->msg, "conv2d at backbone.layer1.0: bad channels 3");
    md_ctx_step_reset(ctx);
    cr_assert_not(md_ctx_failed(ctx));
}

Test(tensor_core, rng_is_reproducible) {
    md_rng a, b;
    md_rng_seed(&a, 42);
    md_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) cr_assert_eq(md_rng_u64(&a), md_rng_u64(&b));
    double s = 0, s2 = 0;
    for (int i = 0; i < 20000; i++) { double z = md_rng_normal(&a); s += z; s2 += z * z; }
    cr_assert(fabs(s / 20000) < 0.05);
    cr_assert(fabs(s2 / 20000 - 1) < 0.05);
}

static md_tensor *gc_square(md_ctx *c, md_tensor **in, void *user) {
    (void)user;
    return square_scale(c, square_scale(c, in[0], 0.5f), 2.0f);
}

Test(tensor_core, gradcheck_agrees_with_custom_backward) {
    md_tensor *x = randn_param(ctx, MD_DIMS(5), 7);
    double e = gradcheck(ctx, gc_square, &x, 1, NULL, 1e-2);
    cr_assert_lt(e, 1e-3, "relative error %g", e);
    md_tensor_free(x);
}

/* Large step tensors come from a pool: a released block is reused by the next
 * request of its size, a mark's release hands back the blocks allocated after
 * it (and only those), and the counters follow. */
Test(tensor_core, pool_release_and_mark) {
    const int64_t n = 1 << 20;   /* 4 MiB */
    md_tensor *a = md_tensor_zeros(ctx, MD_F32, MD_DIMS(n));
    cr_assert(a);
    void *pa = a->data;
    size_t used = md_ctx_arena_used(ctx);
    cr_assert_geq(used, (size_t)n * 4);
    md_grad_set_enabled(ctx, false);
    md_tensor_release(ctx, a);
    cr_assert_null(a->data);
    cr_assert_lt(md_ctx_arena_used(ctx), used - (size_t)n * 3);
    md_tensor *b = md_tensor_empty(ctx, MD_F32, MD_DIMS(n));
    cr_assert_eq(b->data, pa, "the freed block is reused");
    size_t mark = md_ctx_arena_mark(ctx);
    md_tensor *c = md_tensor_full(ctx, MD_F32, MD_DIMS(n), 2.0);
    cr_assert(c && c->data != b->data);
    md_ctx_arena_release(ctx, mark);
    cr_assert_eq(md_ctx_arena_used(ctx), mark + (size_t)n * 4, "only the block after the mark went back");
    md_f32(b)[n - 1] = 3.0f;
    md_tensor *d = md_tensor_full(ctx, MD_F32, MD_DIMS(n), 1.0);
    cr_assert_eq(md_f32(b)[n - 1], 3.0f, "a live block is never handed out again");
    cr_assert_eq(md_f32(d)[0], 1.0f);
    /* a view inside a tensor and a small tensor are left alone */
    md_tensor *v = md_reshape(ctx, d, MD_DIMS(2, n / 2));
    md_tensor_release(ctx, md_slice(ctx, v, 0, 1, 2, 1));
    cr_assert_eq(md_f32(d)[n - 1], 1.0f);
    md_tensor *s = md_tensor_full(ctx, MD_F32, MD_DIMS(16), 5.0);
    md_tensor_release(ctx, s);
    cr_assert_eq(md_f32(s)[15], 5.0f);
    md_grad_set_enabled(ctx, true);
}

/* With grad mode on too, a tensor no tape node reads goes at once
 * (tests/unit/test_memory.c has the tensors nodes read). */
Test(tensor_core, release_with_grad_on_frees_an_unread_tensor) {
    md_tensor *a = md_tensor_full(ctx, MD_F32, MD_DIMS(1 << 20), 1.0);
    size_t used = md_ctx_arena_used(ctx);
    md_tensor_release(ctx, a);
    cr_assert_null(a->data);
    cr_assert_eq(md_ctx_arena_used(ctx), used - ((size_t)4 << 20));
}

/* Large intermediate gradients are pooled, adopted and handed back during
 * backward; the leaf gradient must be what the chain rule gives whatever the
 * reuse: d/dx sum(c2 * (c1 * x^2)^2) = 4 c1^2 c2 x^3. */
Test(tensor_core, backward_through_pooled_gradients) {
    const int64_t n = 1 << 18;
    md_tensor *x = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(n), NULL);
    for (int64_t i = 0; i < n; i++) md_f32(x)[i] = (float)((i % 7) - 3) * 0.5f;
    x->requires_grad = true;
    for (int step = 0; step < 2; step++) {
        md_tensor_zero_grad(x);
        md_tensor *y = square_scale(ctx, square_scale(ctx, x, 1.5f), 0.5f);
        md_tensor *z = md_add(ctx, y, md_mul_scalar(ctx, y, 1.0));   /* 2 y: y's grad gets two terms */
        md_error err = { 0 };
        cr_assert_eq(md_backward(ctx, md_sum(ctx, z, MD_DIM_ALL, false), &err), 0, "%s", err.msg);
        for (int64_t i = 0; i < n; i += 997) {
            double xv = md_f32(x)[i], want = 2.0 * 4.0 * 1.5 * 1.5 * 0.5 * xv * xv * xv;
            cr_assert_float_eq(md_f32(x->grad)[i], want, 1e-5 * (1 + fabs(want)), "step %d element %lld", step,
                               (long long)i);
        }
        md_ctx_step_reset(ctx);
    }
    md_tensor_free(x);
}

/* A gradient passed through unchanged (add, sub, reshape, contiguous) is
 * taken by the first input without a gradient instead of copied; the
 * other inputs get copies, so gradients added into the taker later do not
 * leak into them, and a tensor that is both inputs gets the sum. Large
 * (pooled) tensors, hand-derived values. */
Test(tensor_core, passed_through_gradients_stay_separate) {
    const int64_t n = 1 << 17;
    ctx->arena.poison = false;   /* sanitizer builds turn it on; it disables the pass-through */
    md_tensor *p = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(n), NULL);
    for (int64_t i = 0; i < n; i++) md_f32(p)[i] = (float)(i % 5) - 2.0f;
    p->requires_grad = true;
    for (int step = 0; step < 2; step++) {
        md_tensor_zero_grad(p);
        md_tensor *a = md_mul_scalar(ctx, p, 2.0), *b = md_mul_scalar(ctx, p, -1.0);   /* non-leaves */
        /* recorded before s, so their backward runs after s's */
        md_tensor *t = md_mul_scalar(ctx, a, 3.0);        /* a's gradient grows by 3 in place */
        md_tensor *d = md_sub(ctx, b, b);                 /* the same tensor twice: 1 - 1 */
        md_tensor *x2 = md_add(ctx, a, a);                /* and 1 + 1 */
        md_tensor *s = md_add(ctx, a, b);                 /* a takes s's gradient, b copies it */
        md_tensor *r = md_reshape(ctx, md_contiguous(ctx, md_permute(ctx, md_reshape(ctx, s, MD_DIMS(256, 512)),
                                                                    (const int[]){ 1, 0 })), MD_DIMS(-1));
        /* loss = sum(r) + sum(t) + 5 sum(d) + sum(x2 * 0.5): d/da = 1 + 3 + 1, d/db = 1 + 0 */
        md_tensor *loss = md_add(ctx, md_add(ctx, md_sum(ctx, r, MD_DIM_ALL, false), md_sum(ctx, t, MD_DIM_ALL, false)),
                                 md_add(ctx, md_mul_scalar(ctx, md_sum(ctx, d, MD_DIM_ALL, false), 5.0),
                                        md_sum(ctx, md_mul_scalar(ctx, x2, 0.5), MD_DIM_ALL, false)));
        md_error err = { 0 };
        cr_assert_eq(md_backward(ctx, loss, &err), 0, "%s", err.msg);
        /* dp = 2 * 5 - 1 * 1 = 9 everywhere */
        for (int64_t i = 0; i < n; i += 101)
            cr_assert_float_eq(md_f32(p->grad)[i], 9.0f, 1e-6, "step %d element %lld: %g", step, (long long)i,
                               md_f32(p->grad)[i]);
        cr_assert_float_eq(md_f32(loss->grad)[0], 1.0f, 0, "the root keeps its gradient");
        md_ctx_step_reset(ctx);
    }
    md_tensor_free(p);
}

/* A failed allocation is reported as out of memory, not a shape error, and
 * md_error_from_ctx keeps that code and prefixes the component. */
Test(tensor_core, out_of_memory_keeps_its_code) {
    md_ctx_clear_error(ctx);
    cr_assert_null(md_tensor_empty(ctx, MD_F32, MD_DIMS((int64_t)1 << 42)));   /* 16 TiB */
    md_error err = { 0 };
    cr_assert_eq(md_error_from_ctx(ctx, &err, "MyHead.%s", "loss"), -1);
    cr_assert_eq(err.code, MD_ERR_NOMEM, "%d: %s", err.code, err.msg);
    cr_assert(!strncmp(err.msg, "MyHead.loss: ", 13) && strstr(err.msg, "out of memory"), "%s", err.msg);
    md_ctx_clear_error(ctx);
    /* a shape error stays one */
    cr_assert_null(md_add(ctx, md_tensor_zeros(ctx, MD_F32, MD_DIMS(2)), md_tensor_zeros(ctx, MD_F32, MD_DIMS(3))));
    cr_assert_eq(md_error_from_ctx(ctx, &err, NULL), -1);
    cr_assert_eq(err.code, MD_ERR_SHAPE, "%s", err.msg);
    cr_assert(strncmp(err.msg, ": ", 2), "no empty prefix: %s", err.msg);
    md_ctx_clear_error(ctx);
}
