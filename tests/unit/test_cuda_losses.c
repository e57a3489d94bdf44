/* The CUDA loss kernels against the CPU ones (themselves checked against
 * PyTorch in test_ops_losses.c): every loss with and without weights (of
 * each accepted shape), reductions none / mean / sum, avg_factor, ignored
 * labels, empty inputs, and the gradients of each input. Error messages
 * for bad labels must name the same row and label on both devices.
 *
 * Without a GPU every test skips and says why. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include "cudalib.h"

TestSuite(cuda_losses, .init = cuda_setup, .fini = cuda_teardown);

#define TOL 2e-6

/* A persistent CPU tensor without gradient (targets, weights). */
static md_tensor *fixed(int ndim, const int64_t *shape, uint64_t seed, double lo, double hi) {
    md_tensor *t = uniform_param(ndim, shape, seed, lo, hi);
    t->requires_grad = false;
    return t;
}

static md_tensor *labels_of(int64_t n, const int64_t *v) {
    md_error err = { 0 };
    md_tensor *t = md_tensor_new_persistent_on(ctx, MD_DEVICE_CPU, MD_I64, MD_DIMS(n), &err);
    cr_assert_not_null(t, "%s", err.msg);
    for (int64_t i = 0; i < n; i++) md_i64(t)[i] = v[i];
    return t;
}

/* Labels i in [0, top) spread over the rows, with `special` at every
 * `every`-th row (ignore index, background). */
static md_tensor *labels_spread(int64_t n, int64_t top, int64_t special, int64_t every) {
    int64_t v[256];
    cr_assert(n <= 256);
    for (int64_t i = 0; i < n; i++) v[i] = every && i % every == every - 1 ? special : (i * 7 + 3) % top;
    return labels_of(n, v);
}

static const md_reduction REDS[3] = { MD_REDUCE_NONE, MD_REDUCE_MEAN, MD_REDUCE_SUM };
static const char *red_name(md_reduction r) { return r == MD_REDUCE_NONE ? "none" : r == MD_REDUCE_SUM ? "sum" : "mean"; }

/* One call: in[0] prediction, in[1] labels or target, in[wi] weight when
 * wi > 0, in[cwi] class weight when cwi > 0. */
typedef struct loss_case {
    int kind;   /* 0 ce, 1 bce, 2 focal, 3 smooth_l1, 4 l1, 5 giou, 6 weight_reduce_loss */
    md_reduction red;
    double avg;
    int wi, cwi;
    double p1, p2;   /* beta | gamma, alpha | eps | ignore_index */
    bool transpose;  /* pred (and target) given transposed: a strided input */
} loss_case;

static md_tensor *f_loss(md_tensor **in, void *u) {
    const loss_case *c = u;
    md_tensor *w = c->wi ? in[c->wi] : NULL, *cw = c->cwi ? in[c->cwi] : NULL;
    md_tensor *x = in[0], *y = c->kind == 6 ? NULL : in[1];
    if (c->transpose) {
        x = md_transpose(ctx, x, 0, 1);
        y = md_transpose(ctx, y, 0, 1);
    }
    switch (c->kind) {
    case 0: return md_loss_cross_entropy(ctx, x, y, w, cw, c->red, c->avg, (int64_t)c->p1);
    case 1: return md_loss_bce_with_logits(ctx, x, y, w, c->red, c->avg);
    case 2: return md_loss_sigmoid_focal(ctx, x, y, w, c->p1, c->p2, c->red, c->avg);
    case 3: return md_loss_smooth_l1(ctx, x, y, w, c->p1, c->red, c->avg);
    case 4: return md_loss_l1(ctx, x, y, w, c->red, c->avg);
    case 5: return md_loss_giou(ctx, x, y, w, c->p1, c->red, c->avg);
    default: return md_weight_reduce_loss(ctx, x, c->wi ? in[1] : NULL, c->red, c->avg);
    }
}

/* Every reduction, with and without avg_factor (not with sum). */
static void all_reductions(const char *name, loss_case c, int n, md_tensor **p) {
    char what[128];
    for (int r = 0; r < 3; r++) {
        for (int a = 0; a < 2; a++) {
            c.red = REDS[r];
            c.avg = a ? 7.5 : MD_NO_AVG;
            if (a && c.red == MD_REDUCE_SUM) continue;
            snprintf(what, sizeof what, "%s (%s%s)", name, red_name(c.red), a ? ", avg_factor" : "");
            check_case(what, f_loss, n, p, &c, TOL);
        }
    }
}

/* ------------------------------------------------------ cross entropy -- */

Test(cuda_losses, cross_entropy) {
    NEED_GPU();
    /* 37 rows, 81 classes (more than a warp, not a multiple), ignored rows */
    md_tensor *p[4] = { randn_param(ctx, MD_DIMS(37, 81), 1), labels_spread(37, 81, -100, 5),
                        fixed(MD_DIMS(37), 2, 0.0, 2.0), fixed(MD_DIMS(81), 3, 0.5, 1.5) };
    p[0]->requires_grad = true;
    all_reductions("cross_entropy", (loss_case){ .kind = 0, .p1 = -100 }, 2, p);
    all_reductions("cross_entropy weight", (loss_case){ .kind = 0, .wi = 2, .p1 = -100 }, 3, p);
    all_reductions("cross_entropy class_weight", (loss_case){ .kind = 0, .wi = 2, .cwi = 3, .p1 = -100 }, 4, p);
    /* another ignore index, and few classes (one lane per class and idle lanes) */
    md_tensor *q[2] = { randn_param(ctx, MD_DIMS(9, 3), 4), labels_of(9, (const int64_t[]){ 0, 2, 1, 7, 2, 0, 7, 1, 1 }) };
    all_reductions("cross_entropy ignore 7", (loss_case){ .kind = 0, .p1 = 7 }, 2, q);
    free_all(4, p);
    free_all(2, q);
}

Test(cuda_losses, cross_entropy_bad_label_says_where) {
    NEED_GPU();
    md_ctx_step_reset(ctx);
    md_tensor *x = randn_param(ctx, MD_DIMS(6, 4), 5);
    md_tensor *lab = labels_of(6, (const int64_t[]){ 0, 1, -100, 9, 4, 2 });
    cr_assert_null(md_loss_cross_entropy(ctx, x, lab, NULL, NULL, MD_REDUCE_MEAN, MD_NO_AVG, -100));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "label 9 of row 3"), "%s", md_ctx_error(ctx)->msg);
    md_tensor *xg = md_tensor_to(ctx, x, gpu), *lg = md_tensor_to(ctx, lab, gpu);
    cr_assert_null(md_loss_cross_entropy(ctx, xg, lg, NULL, NULL, MD_REDUCE_MEAN, MD_NO_AVG, -100));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "label 9 of row 3"), "%s", md_ctx_error(ctx)->msg);
    md_tensor_free(x);
    md_tensor_free(lab);
}

/* --------------------------------------------------------------- BCE -- */

Test(cuda_losses, binary_cross_entropy) {
    NEED_GPU();
    md_tensor *p[4] = { randn_param(ctx, MD_DIMS(13, 6), 6), fixed(MD_DIMS(13, 6), 7, 0.0, 1.0),
                        fixed(MD_DIMS(13, 6), 8, 0.0, 2.0), fixed(MD_DIMS(6), 9, 0.0, 2.0) };
    all_reductions("bce", (loss_case){ .kind = 1 }, 2, p);
    all_reductions("bce weight [N, C]", (loss_case){ .kind = 1, .wi = 2 }, 3, p);
    md_tensor *pb[3] = { p[0], p[1], p[3] };
    all_reductions("bce weight [C] broadcast", (loss_case){ .kind = 1, .wi = 2 }, 3, pb);
    /* negative targets are ignored (mmdet's ignore_index -100 mask) */
    for (int i = 0; i < 78; i += 5) md_f32(p[1])[i] = -100.0f;
    all_reductions("bce ignored targets", (loss_case){ .kind = 1 }, 2, p);
    all_reductions("bce ignored targets, weight", (loss_case){ .kind = 1, .wi = 2 }, 3, p);
    free_all(4, p);
}

/* -------------------------------------------------------------- focal -- */

Test(cuda_losses, sigmoid_focal) {
    NEED_GPU();
    int64_t n = 23, c = 5;
    md_tensor *p[5] = { randn_param(ctx, MD_DIMS(n, c), 10), labels_spread(n, c, c, 4),
                        fixed(MD_DIMS(n), 11, 0.0, 2.0), fixed(MD_DIMS(n, c), 12, 0.0, 2.0),
                        fixed(MD_DIMS(n * c), 13, 0.0, 2.0) };
    /* gamma 2 (the fast path), and a general gamma */
    all_reductions("focal gamma 2", (loss_case){ .kind = 2, .p1 = 2.0, .p2 = 0.25 }, 2, p);
    all_reductions("focal gamma 1.5", (loss_case){ .kind = 2, .p1 = 1.5, .p2 = 0.4 }, 2, p);
    all_reductions("focal weight [N]", (loss_case){ .kind = 2, .wi = 2, .p1 = 2.0, .p2 = 0.25 }, 3, p);
    md_tensor *q[3] = { p[0], p[1], p[3] }, *r[3] = { p[0], p[1], p[4] };
    all_reductions("focal weight [N, C]", (loss_case){ .kind = 2, .wi = 2, .p1 = 2.0, .p2 = 0.25 }, 3, q);
    all_reductions("focal weight [N * C]", (loss_case){ .kind = 2, .wi = 2, .p1 = 1.5, .p2 = 0.25 }, 3, r);
    free_all(5, p);
}

Test(cuda_losses, sigmoid_focal_bad_label_says_where) {
    NEED_GPU();
    md_ctx_step_reset(ctx);
    md_tensor *x = randn_param(ctx, MD_DIMS(4, 3), 14);
    md_tensor *lab = labels_of(4, (const int64_t[]){ 3, 0, 2, -1 });   /* 3 = background is fine */
    md_tensor *xg = md_tensor_to(ctx, x, gpu), *lg = md_tensor_to(ctx, lab, gpu);
    cr_assert_null(md_loss_sigmoid_focal(ctx, xg, lg, NULL, 2.0, 0.25, MD_REDUCE_SUM, MD_NO_AVG));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "label -1 of row 3"), "%s", md_ctx_error(ctx)->msg);
    md_tensor_free(x);
    md_tensor_free(lab);
}

/* ------------------------------------------------------ L1, smooth L1 -- */

Test(cuda_losses, smooth_l1_and_l1) {
    NEED_GPU();
    md_tensor *p[4] = { randn_param(ctx, MD_DIMS(17, 4), 15), fixed(MD_DIMS(17, 4), 16, -1.0, 1.0),
                        fixed(MD_DIMS(17, 4), 17, 0.0, 1.0), fixed(MD_DIMS(17, 1), 18, 0.0, 2.0) };
    p[1]->requires_grad = true;   /* the target's gradient too */
    all_reductions("smooth_l1", (loss_case){ .kind = 3, .p1 = 1.0 / 9 }, 2, p);
    all_reductions("smooth_l1 weight", (loss_case){ .kind = 3, .wi = 2, .p1 = 0.5 }, 3, p);
    all_reductions("l1", (loss_case){ .kind = 4 }, 2, p);
    all_reductions("l1 weight", (loss_case){ .kind = 4, .wi = 2 }, 3, p);
    md_tensor *q[3] = { p[0], p[1], p[3] };
    all_reductions("l1 weight [N, 1] broadcast", (loss_case){ .kind = 4, .wi = 2 }, 3, q);
    /* strided inputs: [4, 17] given transposed */
    md_tensor *t[2] = { randn_param(ctx, MD_DIMS(4, 17), 19), fixed(MD_DIMS(4, 17), 20, -1.0, 1.0) };
    all_reductions("smooth_l1 transposed", (loss_case){ .kind = 3, .p1 = 1.0, .transpose = true }, 2, t);
    free_all(4, p);
    free_all(2, t);
}

/* --------------------------------------------------------------- GIoU -- */

/* n valid boxes (x1 < x2, y1 < y2), with exact ties among them: row 0 of
 * pred equals row 0 of target; row 1 is disjoint; row 2 shares edges. */
static md_tensor *boxes(int64_t n, uint64_t seed, bool grad, const md_tensor *like) {
    md_tensor *t = uniform_param(MD_DIMS(n, 4), seed, 0.0, 1.0);
    float *b = md_f32(t);
    for (int64_t i = 0; i < n; i++) {
        float x = 10 * b[4 * i], y = 10 * b[4 * i + 1], w = 1 + 4 * b[4 * i + 2], h = 1 + 4 * b[4 * i + 3];
        b[4 * i] = x; b[4 * i + 1] = y; b[4 * i + 2] = x + w; b[4 * i + 3] = y + h;
    }
    if (like && n >= 3) {
        const float *o = md_f32(like);
        memcpy(b, o, 4 * sizeof(float));
        b[4] = o[6] + 3; b[5] = o[7] + 3; b[6] = o[6] + 5; b[7] = o[7] + 6;
        b[8] = o[8]; b[9] = o[9] + 0.5f; b[10] = o[10]; b[11] = o[11] + 1.0f;
    }
    t->requires_grad = grad;
    return t;
}

Test(cuda_losses, giou) {
    NEED_GPU();
    int64_t n = 29;
    md_tensor *tg = boxes(n, 21, true, NULL);
    md_tensor *p[4] = { boxes(n, 22, true, tg), tg, fixed(MD_DIMS(n), 23, 0.0, 2.0),
                        fixed(MD_DIMS(n, 4), 24, 0.0, 2.0) };
    all_reductions("giou", (loss_case){ .kind = 5, .p1 = 1e-7 }, 2, p);
    all_reductions("giou weight [N]", (loss_case){ .kind = 5, .wi = 2, .p1 = 1e-7 }, 3, p);
    md_tensor *q[3] = { p[0], p[1], p[3] };
    all_reductions("giou weight [N, 4]", (loss_case){ .kind = 5, .wi = 2, .p1 = 1e-6 }, 3, q);
    /* no positive weight: (pred * weight).sum(), a scalar whatever the reduction */
    for (int64_t i = 0; i < n; i++) md_f32(p[2])[i] = i % 3 ? 0.0f : -1.0f;
    for (int64_t i = 0; i < 4 * n; i++) md_f32(p[3])[i] = i % 5 ? 0.0f : -0.5f;
    all_reductions("giou no positive [N]", (loss_case){ .kind = 5, .wi = 2, .p1 = 1e-7 }, 3, p);
    all_reductions("giou no positive [N, 4]", (loss_case){ .kind = 5, .wi = 2, .p1 = 1e-7 }, 3, q);
    free_all(4, p);
}

/* ------------------------------------------------- weight_reduce_loss -- */

Test(cuda_losses, weight_reduce_loss) {
    NEED_GPU();
    md_tensor *p[3] = { uniform_param(MD_DIMS(11, 7), 25, 0.0, 3.0), randn_param(ctx, MD_DIMS(11, 1), 26),
                        randn_param(ctx, MD_DIMS(11, 7), 27) };
    all_reductions("weight_reduce_loss", (loss_case){ .kind = 6 }, 1, p);
    /* the weight's gradient is summed over its broadcast dimension */
    all_reductions("weight_reduce_loss weight [N, 1]", (loss_case){ .kind = 6, .wi = 1 }, 2, p);
    md_tensor *q[2] = { p[0], p[2] };
    all_reductions("weight_reduce_loss weight [N, C]", (loss_case){ .kind = 6, .wi = 1 }, 2, q);
    free_all(3, p);
}

/* ------------------------------------------------- large and empty -- */

/* Long enough for several reduction blocks and the second pass. */
Test(cuda_losses, long_reduction) {
    NEED_GPU();
    md_tensor *p[3] = { randn_param(ctx, MD_DIMS(300, 333), 28), fixed(MD_DIMS(300, 333), 29, -1.0, 1.0),
                        fixed(MD_DIMS(300, 333), 30, 0.0, 1.0) };
    loss_case c = { .kind = 3, .wi = 2, .p1 = 0.3, .red = MD_REDUCE_MEAN, .avg = MD_NO_AVG };
    check_case("smooth_l1 of 100k", f_loss, 3, p, &c, 1e-6);
    c.red = MD_REDUCE_SUM;
    check_case("smooth_l1 of 100k (sum)", f_loss, 3, p, &c, 1e-6);
    /* the same input gives the same bits (fixed-order sums) */
    md_ctx_step_reset(ctx);
    md_tensor *in[3];
    for (int i = 0; i < 3; i++) in[i] = md_tensor_to(ctx, p[i], gpu);
    double a = md_tensor_item(f_loss(in, &c)), b = md_tensor_item(f_loss(in, &c));
    cr_assert(a == b, "two runs differ: %.17g and %.17g", a, b);
    free_all(3, p);
}

Test(cuda_losses, empty_inputs) {
    NEED_GPU();
    md_tensor *p[4] = { randn_param(ctx, MD_DIMS(0, 5), 31), labels_of(0, NULL), fixed(MD_DIMS(0), 32, 0, 1),
                        fixed(MD_DIMS(0, 5), 33, 0, 1) };
    /* mean without avg_factor is NaN (0 / 0) for these, as in mmdet: checked below */
    static const md_reduction reds[2] = { MD_REDUCE_NONE, MD_REDUCE_SUM };
    for (int r = 0; r < 2; r++) {
        check_case("ce empty", f_loss, 3, p, &(loss_case){ .kind = 0, .wi = 2, .red = reds[r], .avg = MD_NO_AVG, .p1 = -100 }, 0);
        check_case("focal empty", f_loss, 2, p, &(loss_case){ .kind = 2, .red = reds[r], .avg = MD_NO_AVG, .p1 = 2, .p2 = 0.25 }, 0);
        md_tensor *b[3] = { p[0], p[3], p[3] };
        check_case("bce empty", f_loss, 3, b, &(loss_case){ .kind = 1, .wi = 2, .red = reds[r], .avg = MD_NO_AVG }, 0);
    }
    check_case("ce empty (avg_factor)", f_loss, 2, p, &(loss_case){ .kind = 0, .red = MD_REDUCE_MEAN, .avg = 4, .p1 = -100 }, 0);
    /* L1 and smooth L1 give 0 for an empty mean (mmdet's early return) */
    md_tensor *q[2] = { p[0], p[3] };
    check_case("l1 empty mean", f_loss, 2, q, &(loss_case){ .kind = 4, .red = MD_REDUCE_MEAN, .avg = MD_NO_AVG }, 0);
    check_case("smooth_l1 empty mean", f_loss, 2, q, &(loss_case){ .kind = 3, .red = MD_REDUCE_MEAN, .avg = MD_NO_AVG, .p1 = 1 }, 0);
    md_tensor *g[2] = { randn_param(ctx, MD_DIMS(0, 4), 34), fixed(MD_DIMS(0, 4), 35, 0, 1) };
    check_case("giou empty sum", f_loss, 2, g, &(loss_case){ .kind = 5, .red = MD_REDUCE_SUM, .avg = MD_NO_AVG, .p1 = 1e-7 }, 0);
    /* empty weight: no positive weight, the (pred * weight).sum() path */
    md_tensor *gw[3] = { g[0], g[1], p[2] };
    check_case("giou empty weight", f_loss, 3, gw, &(loss_case){ .kind = 5, .wi = 2, .red = MD_REDUCE_MEAN, .avg = MD_NO_AVG, .p1 = 1e-7 }, 0);
    /* the NaN mean on both devices */
    md_ctx_step_reset(ctx);
    md_tensor *x = md_tensor_to(ctx, p[0], gpu), *lab = md_tensor_to(ctx, p[1], gpu);
    md_tensor *m = md_loss_cross_entropy(ctx, x, lab, NULL, NULL, MD_REDUCE_MEAN, MD_NO_AVG, -100);
    cr_assert_not_null(m, "%s", md_ctx_error(ctx)->msg);
    cr_assert(isnan(md_tensor_item(m)));
    cr_assert(isnan(md_tensor_item(md_loss_cross_entropy(ctx, p[0], p[1], NULL, NULL, MD_REDUCE_MEAN, MD_NO_AVG, -100))));
    free_all(4, p);
    free_all(2, g);
}
