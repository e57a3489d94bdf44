/* matmul and linear against PyTorch goldens, transposed views, finite
 * differences, errors and empty inputs. */
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
    st = golden_open("ops_nn_linear");
}
static void teardown(void) {
    md_st_close(st);
    md_ctx_free(ctx);
}
TestSuite(ops_linear, .init = setup, .fini = teardown);

static char kbuf[64];
static const char *key(const char *prefix, int i, const char *name) {
    snprintf(kbuf, sizeof kbuf, "%s%d_%s", prefix, i, name);
    return kbuf;
}
static md_tensor *get(const char *prefix, int i, const char *name) { return golden_get(ctx, st, key(prefix, i, name)); }
static void check(const md_tensor *a, const char *prefix, int i, const char *name) {
    char what[64];
    snprintf(what, sizeof what, "%s%d %s", prefix, i, name);
    assert_close(a, get(prefix, i, name), 1e-5, what);
}

/* A view of a swapping its last two dims over storage laid out that way
 * (what transpose(contiguous(a^T)) gives): same values, column-major. */
static md_tensor *transposed_copy(md_tensor *a) {
    int d = a->ndim;
    int64_t shape[3];
    memcpy(shape, a->shape, sizeof(int64_t) * (size_t)d);
    shape[d - 2] = a->shape[d - 1];
    shape[d - 1] = a->shape[d - 2];
    md_tensor *s = md_tensor_empty(ctx, MD_F32, d, shape);
    md_tensor *v = md_tensor_detach(ctx, s);
    v->shape[d - 2] = a->shape[d - 2];
    v->shape[d - 1] = a->shape[d - 1];
    v->stride[d - 2] = 1;
    v->stride[d - 1] = s->stride[d - 2];
    cr_assert_eq(md_tensor_copy_(ctx, v, a), 0);
    return v;
}

Test(ops_linear, matmul_golden) {
    int n = 0;
    for (int i = 0; md_st_find(st, key("mm", i, "a")) >= 0; i++, n++) {
        for (int layout = 0; layout < 2; layout++) {   /* contiguous, then transposed views */
            md_ctx_step_reset(ctx);
            md_tensor *a = get("mm", i, "a"), *b = get("mm", i, "b");
            if (layout) {
                a = transposed_copy(a);
                b = transposed_copy(b);
            }
            a->requires_grad = b->requires_grad = true;
            md_tensor *y = md_matmul(ctx, a, b);
            cr_assert(y, "mm%d: %s", i, md_ctx_error(ctx)->msg);
            check(y, "mm", i, "y");
            md_error err = { 0 };
            cr_assert_eq(md_backward_with(ctx, y, get("mm", i, "gy"), &err), 0, "%s", err.msg);
            check(a->grad, "mm", i, "ga");
            check(b->grad, "mm", i, "gb");
        }
    }
    cr_assert_geq(n, 4);
}

Test(ops_linear, linear_golden) {
    int n = 0;
    for (int i = 0; md_st_find(st, key("lin", i, "x")) >= 0; i++, n++) {
        md_ctx_step_reset(ctx);
        md_tensor *x = get("lin", i, "x"), *w = get("lin", i, "w");
        md_tensor *b = md_st_find(st, key("lin", i, "b")) >= 0 ? get("lin", i, "b") : NULL;
        x->requires_grad = w->requires_grad = true;
        if (b) b->requires_grad = true;
        md_tensor *y = md_linear(ctx, x, w, b);
        cr_assert(y, "lin%d: %s", i, md_ctx_error(ctx)->msg);
        check(y, "lin", i, "y");
        md_error err = { 0 };
        cr_assert_eq(md_backward_with(ctx, y, get("lin", i, "gy"), &err), 0, "%s", err.msg);
        check(x->grad, "lin", i, "gx");
        check(w->grad, "lin", i, "gw");
        if (b) check(b->grad, "lin", i, "gb");
    }
    cr_assert_geq(n, 3);
}

static md_tensor *gc_matmul(md_ctx *c, md_tensor **in, void *user) {
    (void)user;
    return md_matmul(c, in[0], in[1]);
}

static md_tensor *gc_linear(md_ctx *c, md_tensor **in, void *user) {
    (void)user;
    return md_linear(c, in[0], in[1], in[2]);
}

Test(ops_linear, gradcheck) {
    md_tensor *m[2] = { randn_param(ctx, MD_DIMS(2, 3, 4), 1), randn_param(ctx, MD_DIMS(2, 4, 5), 2) };
    double e = gradcheck(ctx, gc_matmul, m, 2, NULL, 1e-2);
    cr_assert_lt(e, 1e-2, "matmul: %g", e);
    md_tensor *l[3] = { randn_param(ctx, MD_DIMS(2, 3, 4), 3), randn_param(ctx, MD_DIMS(5, 4), 4),
                        randn_param(ctx, MD_DIMS(5), 5) };
    e = gradcheck(ctx, gc_linear, l, 3, NULL, 1e-2);
    cr_assert_lt(e, 1e-2, "linear: %g", e);
    for (int i = 0; i < 2; i++) md_tensor_free(m[i]);
    for (int i = 0; i < 3; i++) md_tensor_free(l[i]);
}

Test(ops_linear, errors_and_empty) {
    md_tensor *a = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4)), *b = md_tensor_zeros(ctx, MD_F32, MD_DIMS(5, 2));
    cr_assert_null(md_matmul(ctx, a, b));
    const char *msg = md_ctx_error(ctx)->msg;
    cr_assert(strstr(msg, "matmul") && strstr(msg, "[3, 4]") && strstr(msg, "[5, 2]"), "%s", msg);
    md_ctx_clear_error(ctx);
    cr_assert_null(md_linear(ctx, a, b, NULL));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "linear"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
    cr_assert_null(md_matmul(ctx, NULL, b));
    cr_assert_not(md_ctx_failed(ctx));
    /* zero rows: empty output; zero inner size: zeros (plus bias) */
    md_tensor *x0 = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 4)), *w = randn_param(ctx, MD_DIMS(6, 4), 1);
    md_tensor *y0 = md_linear(ctx, x0, w, NULL);
    cr_assert(y0 && y0->shape[0] == 0 && y0->shape[1] == 6);
    cr_assert_eq(md_backward(ctx, y0, NULL), 0);
    for (int i = 0; i < 24; i++) cr_assert_eq(md_f32(w->grad)[i], 0.0f);
    md_tensor *ak = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 0)), *bk = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 3));
    md_tensor *yk = md_matmul(ctx, ak, bk);
    cr_assert(yk && yk->shape[0] == 2 && yk->shape[1] == 3);
    for (int i = 0; i < 6; i++) cr_assert_eq(md_f32(yk)[i], 0.0f);
    md_tensor_free(w);
}

/* Products large enough to be split over threads (by rows and by columns of
 * the result): forward and both gradients against a double reference, the
 * same bits on every run with a given thread count, and between 1 and 2
 * threads equal to float rounding: each thread's block is one product over
 * the whole K, but OpenBLAS may take another kernel for a smaller block
 * (its small-matrix path on some CPUs), which sums in another order. */
static void linear_rows(int R, int in, int out, int threads, md_tensor **res) {
    md_ctx_set_threads(ctx, threads);
    md_ctx_step_reset(ctx);
    md_rng r;
    md_rng_seed(&r, 21);
    md_tensor *x = md_tensor_empty(ctx, MD_F32, MD_DIMS(R, in)), *w = md_tensor_empty(ctx, MD_F32, MD_DIMS(out, in));
    md_tensor *g = md_tensor_empty(ctx, MD_F32, MD_DIMS(R, out));
    md_tensor_normal_(x, &r, 0, 1);
    md_tensor_normal_(w, &r, 0, 1);
    md_tensor_normal_(g, &r, 0, 1);
    x->requires_grad = w->requires_grad = true;
    md_tensor *y = md_linear(ctx, x, w, NULL);
    cr_assert(y, "%s", md_ctx_error(ctx)->msg);
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, y, g, &err), 0, "%s", err.msg);
    const float *X = md_f32(x), *W = md_f32(w), *G = md_f32(g);
    double e = 0;
    for (int i = 0; i < R; i++)
        for (int o = 0; o < out; o++) {
            double acc = 0;
            for (int k = 0; k < in; k++) acc += (double)X[i * in + k] * W[o * in + k];
            e = fmax(e, fabs(md_f32(y)[i * out + o] - acc) / (1 + fabs(acc)));
        }
    for (int o = 0; o < out; o++)
        for (int k = 0; k < in; k++) {
            double acc = 0;
            for (int i = 0; i < R; i++) acc += (double)G[i * out + o] * X[i * in + k];
            e = fmax(e, fabs(md_f32(w->grad)[o * in + k] - acc) / (1 + fabs(acc)));
        }
    for (int i = 0; i < R; i++)
        for (int k = 0; k < in; k++) {
            double acc = 0;
            for (int o = 0; o < out; o++) acc += (double)G[i * out + o] * W[o * in + k];
            e = fmax(e, fabs(md_f32(x->grad)[i * in + k] - acc) / (1 + fabs(acc)));
        }
    cr_assert_lt(e, 1e-4, "linear %dx%d -> %d, %d threads: error %g", R, in, out, threads, e);
    md_tensor *src[3] = { y, x->grad, w->grad };
    for (int k = 0; k < 3; k++) {   /* persistent copies: outlive the step */
        res[k] = md_tensor_new_persistent(ctx, MD_F32, src[k]->ndim, src[k]->shape, &err);
        cr_assert(res[k], "%s", err.msg);
        memcpy(md_f32(res[k]), md_f32(src[k]), sizeof(float) * (size_t)md_tensor_numel(src[k]));
    }
}

Test(ops_linear, threaded_products_match_reference_and_one_thread) {
    static const int shapes[][3] = { { 150, 90, 40 }, { 37, 200, 130 } };
    for (int s = 0; s < 2; s++) {
        md_tensor *one[3], *two[3], *again[3];
        linear_rows(shapes[s][0], shapes[s][1], shapes[s][2], 1, one);
        linear_rows(shapes[s][0], shapes[s][1], shapes[s][2], 2, two);
        linear_rows(shapes[s][0], shapes[s][1], shapes[s][2], 2, again);
        for (int k = 0; k < 3; k++) {
            int64_t n = md_tensor_numel(two[k]);
            cr_assert_eq(memcmp(md_f32(again[k]), md_f32(two[k]), sizeof(float) * (size_t)n), 0,
                         "shape %d output %d differs between two runs on 2 threads", s, k);
            for (int64_t i = 0; i < n; i++) {
                float a = md_f32(one[k])[i], b = md_f32(two[k])[i];
                cr_assert_leq(fabsf(a - b), 1e-5f * (1 + fabsf(a)), "shape %d output %d [%lld]: %g on 1 thread, %g on 2",
                              s, k, (long long)i, a, b);
            }
            md_tensor_free(one[k]);
            md_tensor_free(two[k]);
            md_tensor_free(again[k]);
        }
    }
    md_ctx_set_threads(ctx, 1);
}
