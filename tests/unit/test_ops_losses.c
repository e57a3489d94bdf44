/* Losses against mmdet's formulas in PyTorch (tests/golden/ops_det_golden.py),
 * finite differences, edge cases and error messages. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "testlib.h"

static md_ctx *ctx;
static md_st *st;
static void setup(void) {
    ctx = md_ctx_new(NULL);
    cr_assert(ctx);
    st = golden_open("ops_det_losses");
}
static void teardown(void) {
    md_st_close(st);
    md_ctx_free(ctx);
}
TestSuite(ops_losses, .init = setup, .fini = teardown);

static bool has(const char *name, const char *field) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", name, field);
    return md_st_find(st, key) >= 0;
}
static md_tensor *G(const char *name, const char *field) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", name, field);
    return golden_get(ctx, st, key);
}
/* The fixture writer stores 0-d tensors as [1] (numpy's ascontiguousarray);
 * read those back as scalars where our output is one. */
static md_tensor *Gout(const char *name, const char *field, const md_tensor *like) {
    md_tensor *t = G(name, field);
    if (like->ndim == 0 && t->ndim == 1 && t->shape[0] == 1) t->ndim = 0;
    return t;
}
static md_tensor *Gopt(const char *name, const char *field) { return has(name, field) ? G(name, field) : NULL; }

static void expect_error(md_tensor *out, const char *needle) {
    cr_assert_null(out, "expected an error containing \"%s\"", needle);
    cr_assert(strstr(md_ctx_error(ctx)->msg, needle), "error \"%s\" lacks \"%s\"", md_ctx_error(ctx)->msg, needle);
    md_ctx_step_reset(ctx);
}

typedef enum kind { WRL, CE, BCE, FOCAL, SL1, L1, GIOU } kind;
typedef struct lcase {
    const char *name;
    kind k;
    md_reduction red;
    double avg;                 /* MD_NO_AVG or the avg_factor */
    double p1, p2;              /* beta | gamma, alpha */
    int64_t ignore;
    bool class_weight;
} lcase;

static const float CLASS_W[5] = { 1.0f, 0.5f, 2.0f, 1.5f, 0.8f };

static void run_case(const lcase *c) {
    md_tensor *x, *y = NULL, *out = NULL;
    const char *xf = c->k == WRL ? "loss" : "pred";
    const char *yf = c->k == WRL ? "weight" : (c->k == CE || c->k == BCE || c->k == FOCAL) ? "label" : "target";
    x = G(c->name, xf);
    x->requires_grad = true;
    if (has(c->name, yf)) y = G(c->name, yf);
    char gy[32];
    snprintf(gy, sizeof gy, "g%s", yf);
    if (y && has(c->name, gy)) y->requires_grad = true;
    md_tensor *w = c->k == WRL ? NULL : Gopt(c->name, "weight");
    switch (c->k) {
    case WRL: out = md_weight_reduce_loss(ctx, x, y, c->red, c->avg); break;
    case CE: {
        md_tensor *cw = c->class_weight ? md_tensor_from(ctx, MD_F32, MD_DIMS(5), CLASS_W) : NULL;
        out = md_loss_cross_entropy(ctx, x, y, w, cw, c->red, c->avg, c->ignore);
        break;
    }
    case BCE: out = md_loss_bce_with_logits(ctx, x, y, w, c->red, c->avg); break;
    case FOCAL: out = md_loss_sigmoid_focal(ctx, x, y, w, c->p1, c->p2, c->red, c->avg); break;
    case SL1: out = md_loss_smooth_l1(ctx, x, y, w, c->p1, c->red, c->avg); break;
    case L1: out = md_loss_l1(ctx, x, y, w, c->red, c->avg); break;
    case GIOU: out = md_loss_giou(ctx, x, y, w, 1e-7, c->red, c->avg); break;
    }
    cr_assert(out, "%s: %s", c->name, md_ctx_error(ctx)->msg);
    char what[96];
    snprintf(what, sizeof what, "%s forward", c->name);
    assert_close(out, Gout(c->name, "out", out), 1e-5, what);
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, out, Gout(c->name, "g", out), &err), 0, "%s: %s", c->name, err.msg);
    char gx[32];
    snprintf(gx, sizeof gx, "g%s", xf);
    snprintf(what, sizeof what, "%s d/d%s", c->name, xf);
    assert_close(x->grad, G(c->name, gx), 1e-5, what);
    if (y && y->requires_grad) {
        snprintf(what, sizeof what, "%s d/d%s", c->name, yf);
        assert_close(y->grad, G(c->name, gy), 1e-5, what);
    }
    md_ctx_step_reset(ctx);
}

#define M MD_REDUCE_MEAN
#define S MD_REDUCE_SUM
#define N MD_REDUCE_NONE
#define NA MD_NO_AVG

Test(ops_losses, weight_reduce_loss_matches_mmdet) {
    const lcase cs[] = {
        { "wrl_mean", WRL, M, NA, 0, 0, 0, 0 }, { "wrl_sum", WRL, S, NA, 0, 0, 0, 0 },
        { "wrl_none", WRL, N, NA, 0, 0, 0, 0 }, { "wrl_avg", WRL, M, 4.0, 0, 0, 0, 0 },
        { "wrl_noweight", WRL, M, NA, 0, 0, 0, 0 },
        { "wrl_avg_none", WRL, N, 4.0, 0, 0, 0, 0 },   /* mmdet ignores avg_factor for 'none' */
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) run_case(&cs[i]);
}

Test(ops_losses, cross_entropy_matches_mmdet) {
    const lcase cs[] = {
        { "ce_mean", CE, M, NA, 0, 0, -100, true }, { "ce_sum", CE, S, NA, 0, 0, -100, true },
        { "ce_none", CE, N, NA, 0, 0, -100, true }, { "ce_avg", CE, M, 6.5, 0, 0, -100, false },
        /* mmdet's avg_non_ignore=True is avg_factor = number of valid labels
         * (7 of 9 here); the default mean (ce_mean) counts all rows. */
        { "ce_nonignore", CE, M, 7.0, 0, 0, -100, false },
        { "ce_ignore7", CE, M, NA, 0, 0, 7, false },
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) run_case(&cs[i]);
}

Test(ops_losses, bce_matches_mmdet) {
    const lcase cs[] = {
        { "bce_mean", BCE, M, NA, 0, 0, 0, 0 }, { "bce_sum", BCE, S, NA, 0, 0, 0, 0 },
        { "bce_none", BCE, N, NA, 0, 0, 0, 0 }, { "bce_avg_bcast", BCE, M, 10.0, 0, 0, 0, 0 },
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) run_case(&cs[i]);
}

Test(ops_losses, sigmoid_focal_matches_mmdet) {
    const lcase cs[] = {
        { "focal_mean", FOCAL, M, NA, 2.0, 0.25, 0, 0 }, { "focal_sum", FOCAL, S, NA, 2.0, 0.25, 0, 0 },
        { "focal_none", FOCAL, N, NA, 2.0, 0.25, 0, 0 }, { "focal_avg_nc", FOCAL, M, 3.0, 1.5, 0.4, 0, 0 },
        { "focal_flat", FOCAL, S, NA, 2.0, 0.25, 0, 0 }, { "focal_noweight", FOCAL, M, NA, 2.0, 0.25, 0, 0 },
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) run_case(&cs[i]);
}

Test(ops_losses, smooth_l1_and_l1_match_mmdet) {
    const lcase cs[] = {
        { "sl1_mean", SL1, M, NA, 1.0, 0, 0, 0 }, { "sl1_sum", SL1, S, NA, 1.0, 0, 0, 0 },
        { "sl1_none", SL1, N, NA, 1.0, 0, 0, 0 }, { "sl1_avg", SL1, M, 12.0, 0.5, 0, 0, 0 },
        { "l1_mean", L1, M, NA, 0, 0, 0, 0 },     { "l1_sum", L1, S, NA, 0, 0, 0, 0 },
        { "l1_none", L1, N, NA, 0, 0, 0, 0 },     { "l1_avg", L1, M, 12.0, 0, 0, 0, 0 },
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) run_case(&cs[i]);
}

Test(ops_losses, giou_matches_mmdet) {
    const lcase cs[] = {
        { "giou_mean", GIOU, M, NA, 0, 0, 0, 0 }, { "giou_sum", GIOU, S, NA, 0, 0, 0, 0 },
        { "giou_none", GIOU, N, NA, 0, 0, 0, 0 }, { "giou_avg_w4", GIOU, M, 5.0, 0, 0, 0, 0 },
        /* no positive weight: mmdet returns (pred * weight).sum() */
        { "giou_nopos", GIOU, M, NA, 0, 0, 0, 0 },
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) run_case(&cs[i]);
}

/* ---- finite differences ---- */
static md_tensor *persist(md_dtype dt, int ndim, const int64_t *shape, const void *data) {
    md_tensor *t = md_tensor_new_persistent(ctx, dt, ndim, shape, NULL);
    cr_assert(t);
    memcpy(t->data, data, (size_t)md_tensor_numel(t) * md_dtype_size(dt));
    return t;
}

typedef struct gc_args { kind k; md_tensor *lab, *w; md_reduction red; double avg; } gc_args;

static md_tensor *gc_loss(md_ctx *c, md_tensor **in, void *user) {
    gc_args *a = user;
    switch (a->k) {
    case WRL: return md_weight_reduce_loss(c, in[0], in[1], a->red, a->avg);
    case CE: return md_loss_cross_entropy(c, in[0], a->lab, a->w, NULL, a->red, a->avg, -100);
    case BCE: return md_loss_bce_with_logits(c, in[0], in[1], a->w, a->red, a->avg);
    case FOCAL: return md_loss_sigmoid_focal(c, in[0], a->lab, a->w, 2.0, 0.25, a->red, a->avg);
    case SL1: return md_loss_smooth_l1(c, in[0], in[1], a->w, 0.7, a->red, a->avg);
    case L1: return md_loss_l1(c, in[0], in[1], a->w, a->red, a->avg);
    case GIOU: return md_loss_giou(c, in[0], in[1], a->w, 1e-7, a->red, a->avg);
    }
    return NULL;
}

static md_tensor *boxes_param(int n, uint64_t seed) {
    md_tensor *t = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(n, 4), NULL);
    md_rng r;
    md_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        float x = (float)md_rng_uniform(&r) * 10, y = (float)md_rng_uniform(&r) * 10;
        float w = 1 + (float)md_rng_uniform(&r) * 8, h = 1 + (float)md_rng_uniform(&r) * 8;
        float v[4] = { x, y, x + w, y + h };
        memcpy(md_f32(t) + 4 * i, v, sizeof v);
    }
    t->requires_grad = true;
    return t;
}

Test(ops_losses, gradcheck_every_loss) {
    int64_t lab[4] = { 2, 0, -100, 1 }, flab[4] = { 2, 3, 0, 3 };
    float w4[4] = { 0.5f, 1.0f, 2.0f, 0.3f };
    md_tensor *labels = persist(MD_I64, MD_DIMS(4), lab), *flabels = persist(MD_I64, MD_DIMS(4), flab);
    md_tensor *wrow = persist(MD_F32, MD_DIMS(4), w4), *wcol = persist(MD_F32, MD_DIMS(4, 1), w4);
    struct { kind k; md_reduction red; double avg; md_tensor *lab, *w; bool two; } cs[] = {
        { WRL, M, NA, NULL, NULL, true }, { WRL, N, NA, NULL, NULL, true }, { CE, M, NA, labels, wrow, false },
        { CE, N, NA, labels, NULL, false }, { BCE, S, NA, NULL, wcol, false }, { FOCAL, M, 2.0, flabels, wrow, false },
        { FOCAL, N, NA, flabels, NULL, false }, { SL1, M, NA, NULL, wcol, true }, { L1, S, NA, NULL, NULL, true },
        { GIOU, M, 3.0, NULL, wrow, true }, { GIOU, N, NA, NULL, NULL, true },
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        md_tensor *in[2];
        if (cs[i].k == GIOU) {
            in[0] = boxes_param(4, 10 + i);
            in[1] = boxes_param(4, 20 + i);
        } else {
            in[0] = randn_param(ctx, MD_DIMS(4, 3), 30 + i);
            in[1] = cs[i].k == WRL ? randn_param(ctx, MD_DIMS(3), 40 + i) : randn_param(ctx, MD_DIMS(4, 3), 40 + i);
            if (cs[i].k == BCE)   /* targets in [0, 1], not differentiated */
                for (int e = 0; e < 12; e++) md_f32(in[1])[e] = (float)(e % 3) / 2.0f;
        }
        in[1]->requires_grad = cs[i].two;
        gc_args a = { cs[i].k, cs[i].lab, cs[i].w, cs[i].red, cs[i].avg };
        double e = gradcheck(ctx, gc_loss, in, 2, &a, 1e-3);
        cr_assert_lt(e, 1e-2, "case %zu (kind %d): relative error %g", i, cs[i].k, e);
        md_tensor_free(in[0]);
        md_tensor_free(in[1]);
    }
    md_tensor_free(labels);
    md_tensor_free(flabels);
    md_tensor_free(wrow);
    md_tensor_free(wcol);
}

/* ---- edge cases and errors ---- */
Test(ops_losses, empty_inputs_follow_mmdet) {
    md_tensor *x0 = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 4));
    md_tensor *l0 = md_tensor_zeros(ctx, MD_I64, MD_DIMS(0));
    /* torch's mean of nothing is NaN; sum is 0; with avg_factor 0 / eps = 0 */
    cr_assert(isnan(md_tensor_item(md_loss_cross_entropy(ctx, x0, l0, NULL, NULL, M, NA, -100))));
    cr_assert_eq(md_tensor_item(md_loss_cross_entropy(ctx, x0, l0, NULL, NULL, S, NA, -100)), 0.0);
    cr_assert_eq(md_tensor_item(md_loss_sigmoid_focal(ctx, x0, l0, NULL, 2, 0.25, M, 0.0)), 0.0);
    /* mmdet's l1/smooth_l1 return pred.sum() * 0 for empty targets: 0, not NaN */
    cr_assert_eq(md_tensor_item(md_loss_l1(ctx, x0, x0, NULL, M, NA)), 0.0);
    cr_assert_eq(md_tensor_item(md_loss_smooth_l1(ctx, x0, x0, NULL, 1.0, M, NA)), 0.0);
    md_tensor *none = md_loss_giou(ctx, x0, x0, NULL, 1e-7, N, NA);
    cr_assert(none);
    cr_assert_eq(none->ndim, 1);
    cr_assert_eq(none->shape[0], 0);
    /* GIoULoss with an empty weight: no positive weight -> 0 */
    cr_assert_eq(md_tensor_item(md_loss_giou(ctx, x0, x0, md_tensor_zeros(ctx, MD_F32, MD_DIMS(0)), 1e-7, M, NA)), 0.0);
    cr_assert_not(md_ctx_failed(ctx), "%s", md_ctx_error(ctx)->msg);
}

Test(ops_losses, focal_background_only_rows_are_all_negative) {
    /* label C: every class is a negative: (1 - alpha) p^gamma softplus(x) */
    float x[2] = { 0.3f, -1.2f };
    int64_t lab[1] = { 2 };
    md_tensor *out = md_loss_sigmoid_focal(ctx, md_tensor_from(ctx, MD_F32, MD_DIMS(1, 2), x),
                                           md_tensor_from(ctx, MD_I64, MD_DIMS(1), lab), NULL, 2.0, 0.25, S, NA);
    double ref = 0;
    for (int j = 0; j < 2; j++) {
        double p = 1 / (1 + exp(-x[j]));
        ref += 0.75 * p * p * log1p(exp(x[j]));
    }
    cr_assert_float_eq(md_tensor_item(out), ref, 1e-6);
}

/* The focal kernels take sigmoid and softplus from one exp(-|x|): the same
 * bits as the textbook forms with separate calls, over logits from -40 to
 * 40 (both signs of zero included), positives and background rows. */
static double ref_sigmoid(double v) { return v >= 0 ? 1.0 / (1.0 + exp(-v)) : exp(v) / (1.0 + exp(v)); }
static double ref_softplus(double v) { return v > 0 ? v + log1p(exp(-v)) : log1p(exp(v)); }

Test(ops_losses, focal_kernel_equals_separate_sigmoid_softplus) {
    enum { R = 64, C = 5 };
    float x[R * C];
    int64_t lab[R];
    for (int i = 0; i < R * C; i++) x[i] = (float)(-40.0 + 80.0 * i / (R * C - 1)) * (i % 3 == 0 ? 0.05f : 1.0f);
    x[7] = 0.0f;
    x[8] = -0.0f;
    for (int i = 0; i < R; i++) lab[i] = i % (C + 1);
    md_tensor *xt = md_tensor_from(ctx, MD_F32, MD_DIMS(R, C), x);
    xt->requires_grad = true;
    md_tensor *out = md_loss_sigmoid_focal(ctx, xt, md_tensor_from(ctx, MD_I64, MD_DIMS(R), lab), NULL, 2.0, 0.25,
                                           N, NA);
    cr_assert(out, "%s", md_ctx_error(ctx)->msg);
    md_tensor *g = md_tensor_empty_like(ctx, out);
    for (int i = 0; i < R * C; i++) md_f32(g)[i] = 1.0f;
    cr_assert_eq(md_backward_with(ctx, out, g, NULL), 0);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            double v = x[i * C + j], p = ref_sigmoid(v), q = ref_sigmoid(-v), l, d;
            if (lab[i] == j) {
                l = 0.25 * (1.0 - p) * (1.0 - p) * ref_softplus(-v);
                d = 0.25 * q * q * (-2.0 * p * ref_softplus(-v) - q);
            } else {
                l = 0.75 * p * p * ref_softplus(v);
                d = 0.75 * p * p * (2.0 * q * ref_softplus(v) + p);
            }
            cr_assert_eq(md_f32(out)[i * C + j], (float)l, "loss [%d, %d] x=%g: %.9g vs %.9g", i, j, v,
                         md_f32(out)[i * C + j], l);
            cr_assert_eq(md_f32(xt->grad)[i * C + j], (float)d, "grad [%d, %d] x=%g: %.9g vs %.9g", i, j, v,
                         md_f32(xt->grad)[i * C + j], d);
        }
}

Test(ops_losses, errors_name_the_problem) {
    md_tensor *p = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4));
    expect_error(md_loss_l1(ctx, p, p, NULL, S, 2.0), "avg_factor (2) can not be used with reduction=\"sum\"");
    p = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4));
    expect_error(md_weight_reduce_loss(ctx, p, NULL, S, 1.0), "can not be used with reduction=\"sum\"");
    p = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4));
    expect_error(md_loss_smooth_l1(ctx, p, p, NULL, 0.0, M, NA), "beta 0 must be > 0");
    p = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4));
    int64_t bad[3] = { 0, 4, 1 };
    expect_error(md_loss_cross_entropy(ctx, p, md_tensor_from(ctx, MD_I64, MD_DIMS(3), bad), NULL, NULL, M, NA, -100),
                 "label 4 of row 1 is out of range [0, 4)");
    p = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4));
    int64_t bad2[3] = { 0, 5, 4 };
    expect_error(md_loss_sigmoid_focal(ctx, p, md_tensor_from(ctx, MD_I64, MD_DIMS(3), bad2), NULL, 2, 0.25, M, NA),
                 "label 5 of row 1 is out of range [0, 4]");
    p = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4));
    expect_error(md_loss_l1(ctx, p, p, md_tensor_zeros(ctx, MD_F32, MD_DIMS(2)), M, NA),
                 "weight [2] f32 must be f32 and broadcast to the element-wise loss [3, 4]");
    p = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4));
    expect_error(md_loss_giou(ctx, p, md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 5)), NULL, 1e-7, M, NA),
                 "pred and target must be f32 [N, 4]");
    p = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4));
    expect_error(md_loss_l1(ctx, p, p, NULL, (md_reduction)7, NA), "unknown reduction 7");
    cr_assert_null(md_loss_l1(ctx, NULL, p, NULL, M, NA));
    cr_assert_not(md_ctx_failed(ctx));
}

/* Weighted sums are reduced over fixed chunks: the same bits whatever the
 * thread count. */
Test(ops_losses, reductions_are_reproducible) {
    md_tensor *x = md_tensor_empty(ctx, MD_F32, MD_DIMS(300000));
    md_rng r;
    md_rng_seed(&r, 9);
    md_tensor_normal_(x, &r, 0, 1);
    md_ctx_set_threads(ctx, 1);
    float a = md_f32(md_weight_reduce_loss(ctx, x, NULL, M, NA))[0];
    md_ctx_set_threads(ctx, 2);
    float b = md_f32(md_weight_reduce_loss(ctx, x, NULL, M, NA))[0];
    cr_assert_eq(a, b);
}
