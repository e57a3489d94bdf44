/* The "losses" registry's plugins (plugins/losses): each loss built from a
 * config through md_build_loss against mmdet 2.28's modules in PyTorch
 * (tests/golden/losses_registry_golden.py: values and gradients), finite
 * differences for the composed losses, bit-identity with the op calls the
 * heads make, and the errors of bad configs. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) { ctx = test_ctx(7, (const char *const[]){ "plugins/losses", NULL }); }
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(losses_registry, .init = setup, .fini = teardown);

/* Builds the loss whose config group body is `body`; NULL with *msg. */
static md_loss *try_build(const char *body, char *msg, size_t n) {
    char text[1024];
    snprintf(text, sizeof text, "loss = { %s };", body);
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(text, "losses_test.cfg", &err);
    cr_assert(root, "%s: %s", body, err.msg);
    md_loss *l = md_build_loss(ctx, md_cfg_get(root, "loss"), &err);
    md_cfg_free(root);   /* the registry keeps its own copy */
    if (msg) snprintf(msg, n, "%s", err.msg);
    return l;
}
static md_loss *build(const char *body) {
    char msg[1024];
    md_loss *l = try_build(body, msg, sizeof msg);
    cr_assert(l, "%s: %s", body, msg);
    return l;
}
static void expect_config_error(const char *body, const char *needle) {
    char msg[1024];
    md_loss *l = try_build(body, msg, sizeof msg);
    cr_assert_null(l, "%s: built, expected an error containing \"%s\"", body, needle);
    cr_assert(strstr(msg, needle), "%s: error \"%s\" lacks \"%s\"", body, msg, needle);
}

/* ---- against mmdet ---- */

static int reduction_of(const char *s) {
    if (!strcmp(s, "default")) return MD_REDUCE_DEFAULT;
    if (!strcmp(s, "mean")) return MD_REDUCE_MEAN;
    if (!strcmp(s, "sum")) return MD_REDUCE_SUM;
    cr_assert_str_eq(s, "none");
    return MD_REDUCE_NONE;
}

static const char *meta(md_st *st, const char *c, const char *field) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", c, field);
    const char *v = md_st_metadata(st, key);
    cr_assert(v, "fixture metadata %s missing", key);
    return v;
}
static md_tensor *entry(md_st *st, const char *c, const char *field, bool optional) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", c, field);
    return optional && md_st_find(st, key) < 0 ? NULL : golden_get(ctx, st, key);
}

/* Every case of the fixture: the value and d/d(pred) within 1e-5. */
Test(losses_registry, every_loss_matches_mmdet) {
    static const char *const types[] = { "FocalLoss", "CrossEntropyLoss", "L1Loss", "SmoothL1Loss", "IoULoss",
                                         "GIoULoss", "DIoULoss", "CIoULoss", "BalancedL1Loss" };
    int per_type[9] = { 0 };
    md_st *st = golden_open("losses_registry");
    const char *list = md_st_metadata(st, "cases");
    cr_assert(list, "fixture lists no cases");
    char *names = strdup(list), *save = NULL;
    int ncases = 0;
    for (char *c = strtok_r(names, ",", &save); c; c = strtok_r(NULL, ",", &save), ncases++) {
        const char *cfg = meta(st, c, "cfg");
        for (int k = 0; k < 9; k++) {
            char quoted[64];
            snprintf(quoted, sizeof quoted, "\"%s\"", types[k]);
            per_type[k] += strstr(cfg, quoted) != NULL;
        }
        md_loss *l = build(cfg);
        md_tensor *pred = entry(st, c, "pred", false), *target = entry(st, c, "target", false);
        md_tensor *weight = entry(st, c, "weight", true);
        pred->requires_grad = true;
        md_tensor *out = md_loss_forward(ctx, l, pred, target, weight, atof(meta(st, c, "avg_factor")),
                                         reduction_of(meta(st, c, "reduction")));
        cr_assert(out, "%s: %s", c, md_ctx_error(ctx)->msg);
        char what[160];
        snprintf(what, sizeof what, "%s (%s) value", c, cfg);
        assert_close(out, entry(st, c, "out", false), 1e-5, what);
        md_error err = { 0 };
        cr_assert_eq(md_backward_with(ctx, out, entry(st, c, "g", false), &err), 0, "%s: %s", c, err.msg);
        snprintf(what, sizeof what, "%s (%s) d/dpred", c, cfg);
        cr_assert(pred->grad, "%s: no gradient", c);
        assert_close(pred->grad, entry(st, c, "gpred", false), 1e-5, what);
        md_loss_free(l);
        md_ctx_step_reset(ctx);
    }
    free(names);
    cr_assert_gt(ncases, 40);
    for (int k = 0; k < 9; k++) cr_assert_geq(per_type[k], 4, "%s: %d cases", types[k], per_type[k]);
    md_st_close(st);
}

/* ---- registration, flags ---- */

Test(losses_registry, each_class_comes_from_its_plugin_with_its_flags) {
    static const struct { const char *type, *file; unsigned flags; } cs[] = {
        { "FocalLoss", "focal_loss.so", MD_LOSS_SIGMOID },
        { "CrossEntropyLoss", "cross_entropy_loss.so", 0 },
        { "L1Loss", "l1_loss.so", 0 },
        { "SmoothL1Loss", "smooth_l1_loss.so", 0 },
        { "IoULoss", "iou_loss.so", MD_LOSS_BOXES },
        { "GIoULoss", "giou_loss.so", MD_LOSS_BOXES },
        { "DIoULoss", "diou_loss.so", MD_LOSS_BOXES },
        { "CIoULoss", "ciou_loss.so", MD_LOSS_BOXES },
        { "BalancedL1Loss", "balanced_l1_loss.so", 0 },
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        const char *origin = md_registry_origin(ctx, "losses", cs[i].type);
        cr_assert(origin && strstr(origin, cs[i].file), "%s from %s", cs[i].type, origin ? origin : "nowhere");
        char body[128];
        snprintf(body, sizeof body, "type = \"%s\";", cs[i].type);
        md_loss *l = build(body);
        cr_assert_str_eq(l->type, cs[i].type);
        cr_assert_eq(l->flags, cs[i].flags, "%s flags %u", cs[i].type, l->flags);
        cr_assert_eq(l->loss_weight, 1.0);
        cr_assert_eq(l->reduction, MD_REDUCE_MEAN);
        md_loss_free(l);
    }
    md_loss *l = build("type = \"CrossEntropyLoss\"; use_sigmoid = true; loss_weight = 2.5; reduction = \"sum\";");
    cr_assert_eq(l->flags, MD_LOSS_SIGMOID);
    cr_assert_eq(l->loss_weight, 2.5);
    cr_assert_eq(l->reduction, MD_REDUCE_SUM);
    md_loss_free(l);
}

/* ---- the plugins the heads switch to give the op calls' bits ---- */

static md_tensor *persist(md_dtype dt, int ndim, const int64_t *shape, const void *data) {
    md_tensor *t = md_tensor_new_persistent(ctx, dt, ndim, shape, NULL);
    cr_assert(t);
    memcpy(t->data, data, (size_t)md_tensor_numel(t) * md_dtype_size(dt));
    return t;
}

static md_tensor *random_param(int64_t n, int64_t c, uint64_t seed, float scale, float shift) {
    md_tensor *t = randn_param(ctx, MD_DIMS(n, c), seed);
    for (int64_t i = 0; i < n * c; i++) md_f32(t)[i] = md_f32(t)[i] * scale + shift;
    return t;
}

/* Boxes [n, 4] with sizes 1..9 in a 10 x 10 field. */
static md_tensor *boxes_param(int64_t n, uint64_t seed) {
    md_tensor *t = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(n, 4), NULL);
    md_rng r;
    md_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) {
        float x = (float)md_rng_uniform(&r) * 10, y = (float)md_rng_uniform(&r) * 10;
        float w = 1 + (float)md_rng_uniform(&r) * 8, h = 1 + (float)md_rng_uniform(&r) * 8;
        float v[4] = { x, y, x + w, y + h };
        memcpy(md_f32(t) + 4 * i, v, sizeof v);
    }
    t->requires_grad = true;
    return t;
}

typedef enum direct_kind { D_FOCAL, D_GIOU, D_L1, D_SL1, D_CE, D_BCE } direct_kind;
typedef struct bits_case {
    const char *cfg;
    direct_kind k;
    double p1, p2;       /* gamma, alpha | eps | - | beta */
    int reduction;       /* the forward's argument */
    md_reduction red;    /* what it resolves to */
    double avg;
    bool weighted;
    double lw;
} bits_case;

static md_tensor *direct(const bits_case *c, md_tensor *pred, md_tensor *target, md_tensor *w) {
    md_tensor *v = NULL;
    switch (c->k) {
    case D_FOCAL: v = md_loss_sigmoid_focal(ctx, pred, target, w, c->p1, c->p2, c->red, c->avg); break;
    case D_GIOU: v = md_loss_giou(ctx, pred, target, w, c->p1, c->red, c->avg); break;
    case D_L1: v = md_loss_l1(ctx, pred, target, w, c->red, c->avg); break;
    case D_SL1: v = md_loss_smooth_l1(ctx, pred, target, w, c->p1, c->red, c->avg); break;
    case D_CE: v = md_loss_cross_entropy(ctx, pred, target, w, NULL, c->red, c->avg, -100); break;
    case D_BCE: v = md_loss_bce_with_logits(ctx, pred, target, w, c->red, c->avg); break;
    }
    return md_mul_scalar(ctx, v, c->lw);
}

/* Value and d/dpred of one run, copied out of the step arena. */
static float *run_once(const bits_case *c, md_loss *l, md_tensor *pred, md_tensor *target, md_tensor *w,
                       int64_t *nout) {
    md_ctx_step_reset(ctx);
    md_tensor_zero_grad(pred);
    md_tensor *out = l ? md_loss_forward(ctx, l, pred, target, w, c->avg, c->reduction) : direct(c, pred, target, w);
    cr_assert(out, "%s: %s", c->cfg, md_ctx_error(ctx)->msg);
    md_tensor *g = md_tensor_empty_like(ctx, out);
    for (int64_t i = 0; i < md_tensor_numel(g); i++) md_f32(g)[i] = 0.5f + 0.25f * (float)(i % 5);
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, out, g, &err), 0, "%s: %s", c->cfg, err.msg);
    int64_t no = md_tensor_numel(out), ng = md_tensor_numel(pred);
    float *r = malloc(sizeof(float) * (size_t)(no + ng));
    memcpy(r, md_f32(out), sizeof(float) * (size_t)no);
    memcpy(r + no, md_f32(pred->grad), sizeof(float) * (size_t)ng);
    *nout = no + ng;
    return r;
}

/* Also the calls of Shared2FCBBoxHead (softmax CE) and RPNHead (BCE on
 * float targets). */
Test(losses_registry, plugins_are_the_heads_op_calls_bit_for_bit) {
    const bits_case cs[] = {
        { "type = \"FocalLoss\"; loss_weight = 1.0;", D_FOCAL, 2.0, 0.25, MD_REDUCE_DEFAULT, MD_REDUCE_MEAN, 37.0, true, 1.0 },
        { "type = \"FocalLoss\"; gamma = 1.5; alpha = 0.4; loss_weight = 0.7;", D_FOCAL, 1.5, 0.4, MD_REDUCE_SUM,
          MD_REDUCE_SUM, MD_NO_AVG, false, 0.7 },
        { "type = \"FocalLoss\"; reduction = \"none\"; loss_weight = 3.0;", D_FOCAL, 2.0, 0.25, MD_REDUCE_DEFAULT,
          MD_REDUCE_NONE, MD_NO_AVG, true, 3.0 },
        { "type = \"GIoULoss\"; loss_weight = 2.0;", D_GIOU, 1e-6, 0, MD_REDUCE_DEFAULT, MD_REDUCE_MEAN, 11.0, false, 2.0 },
        { "type = \"GIoULoss\"; eps = 1e-7;", D_GIOU, 1e-7, 0, MD_REDUCE_NONE, MD_REDUCE_NONE, MD_NO_AVG, true, 1.0 },
        { "type = \"L1Loss\"; loss_weight = 1.3;", D_L1, 0, 0, MD_REDUCE_DEFAULT, MD_REDUCE_MEAN, 9.0, true, 1.3 },
        { "type = \"L1Loss\"; reduction = \"sum\";", D_L1, 0, 0, MD_REDUCE_DEFAULT, MD_REDUCE_SUM, MD_NO_AVG, false, 1.0 },
        { "type = \"SmoothL1Loss\"; beta = 0.1111111111111111; loss_weight = 1.0;", D_SL1, 0.1111111111111111, 0,
          MD_REDUCE_DEFAULT, MD_REDUCE_MEAN, 20.0, true, 1.0 },
        { "type = \"SmoothL1Loss\"; loss_weight = 0.5;", D_SL1, 1.0, 0, MD_REDUCE_NONE, MD_REDUCE_NONE, MD_NO_AVG,
          false, 0.5 },
        { "type = \"CrossEntropyLoss\"; loss_weight = 1.0;", D_CE, 0, 0, MD_REDUCE_DEFAULT, MD_REDUCE_MEAN, 21.0,
          true, 1.0 },
        { "type = \"CrossEntropyLoss\"; use_sigmoid = true; loss_weight = 2.0;", D_BCE, 0, 0, MD_REDUCE_DEFAULT,
          MD_REDUCE_MEAN, 17.0, true, 2.0 },
    };
    const int64_t n = 24, C = 5;
    int64_t lab[24];
    for (int i = 0; i < n; i++) lab[i] = (i * 7) % (C + 1);   /* C: background */
    md_tensor *labels = persist(MD_I64, MD_DIMS(n), lab);
    for (int i = 0; i < n; i++) lab[i] = i % 7 == 3 ? -100 : i % C;   /* softmax: ignored rows */
    md_tensor *ce_labels = persist(MD_I64, MD_DIMS(n), lab);
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        const bits_case *c = &cs[i];
        md_tensor *pred, *target, *w = NULL;
        if (c->k == D_FOCAL || c->k == D_CE) {
            pred = random_param(n, C, 100 + i, 2.0f, 0.0f);
            target = c->k == D_CE ? ce_labels : labels;
            if (c->weighted) w = random_param(n, 1, 200 + i, 0.3f, 1.0f);
        } else if (c->k == D_BCE) {   /* RPNHead: selected logits [M], targets 0/1 [M], weights [M] */
            pred = random_param(n, 1, 250 + i, 2.0f, 0.0f);
            pred->ndim = 1;
            target = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(n), NULL);
            for (int64_t e = 0; e < n; e++) md_f32(target)[e] = (float)(e % 3 == 0);
            if (c->weighted) w = random_param(n, 1, 260 + i, 0.3f, 1.0f);
        } else if (c->k == D_GIOU) {
            pred = boxes_param(n, 300 + i);
            target = boxes_param(n, 400 + i);
            target->requires_grad = false;
            if (c->weighted) w = random_param(n, 4, 500 + i, 0.3f, 1.0f);
        } else {
            pred = random_param(n, 4, 600 + i, 1.0f, 0.0f);
            target = random_param(n, 4, 700 + i, 1.0f, 0.0f);
            target->requires_grad = false;
            if (c->weighted) w = random_param(n, 4, 800 + i, 0.3f, 1.0f);
        }
        if (w) {
            w->requires_grad = false;
            if (c->k == D_FOCAL || c->k == D_CE || c->k == D_BCE) w->ndim = 1;   /* [N]: per row */
        }
        md_loss *l = build(c->cfg);
        int64_t na, nb;
        float *a = run_once(c, l, pred, target, w, &na), *b = run_once(c, NULL, pred, target, w, &nb);
        cr_assert_eq(na, nb);
        cr_assert(!memcmp(a, b, sizeof(float) * (size_t)na), "%s: not the op's bits", c->cfg);
        free(a);
        free(b);
        md_loss_free(l);
        md_tensor_free(pred);
        if (target != labels && target != ce_labels) md_tensor_free(target);
        if (w) md_tensor_free(w);
    }
    md_tensor_free(labels);
    md_tensor_free(ce_labels);
}

/* ---- finite differences of the composed losses ---- */

typedef struct gc_user { md_loss *l; md_tensor *weight; int reduction; double avg; } gc_user;
static md_tensor *gc_forward(md_ctx *c, md_tensor **in, void *user) {
    gc_user *u = user;
    return md_loss_forward(c, u->l, in[0], in[1], u->weight, u->avg, u->reduction);
}

static void check_gradient(const char *cfg, md_tensor *pred, md_tensor *target, md_tensor *weight, int reduction,
                           double avg, double tol) {
    gc_user u = { build(cfg), weight, reduction, avg };
    md_tensor *in[2] = { pred, target };
    double e = gradcheck(ctx, gc_forward, in, 2, &u, 1e-3);
    cr_assert_lt(e, tol, "%s (reduction %d): relative error %g", cfg, reduction, e);
    md_loss_free(u.l);
}

Test(losses_registry, diou_and_balanced_l1_gradients_are_finite_differences) {
    float w8[8] = { 0.5f, 1.0f, 2.0f, 0.3f, 0.0f, 1.5f, 0.7f, 1.1f };
    md_tensor *w = persist(MD_F32, MD_DIMS(8), w8);
    md_tensor *p = boxes_param(8, 1), *t = boxes_param(8, 2);
    check_gradient("type = \"DIoULoss\";", p, t, NULL, MD_REDUCE_NONE, MD_NO_AVG, 1e-2);
    check_gradient("type = \"DIoULoss\"; loss_weight = 2.0;", p, t, w, MD_REDUCE_DEFAULT, 5.0, 1e-2);
    md_tensor_free(p);
    md_tensor_free(t);
    /* differences on both sides of beta and below it */
    p = random_param(6, 4, 3, 1.0f, 0.0f);
    t = random_param(6, 4, 4, 1.0f, 0.0f);
    check_gradient("type = \"BalancedL1Loss\";", p, t, NULL, MD_REDUCE_NONE, MD_NO_AVG, 1e-2);
    check_gradient("type = \"BalancedL1Loss\"; alpha = 0.3; gamma = 2.0; beta = 0.6;", p, t, NULL, MD_REDUCE_SUM,
                   MD_NO_AVG, 1e-2);
    md_tensor_free(p);
    md_tensor_free(t);
    md_tensor_free(w);
}

/* CIoU's alpha is a constant of the step (mmdet's no_grad), so its
 * gradient is the derivative only where alpha is 0, IoU <= 0.5: boxes that
 * overlap less (mmdet's own gradient elsewhere is the golden test's). */
Test(losses_registry, ciou_gradient_is_finite_differences_where_alpha_is_0) {
    const float pb[6 * 4] = { 0, 0, 4, 3,  1, 1, 6, 9,  2, 5, 4, 6,  0, 0, 2, 2,  3, 3, 8, 5,  1, 2, 3, 8 };
    const float tb[6 * 4] = { 2, 1, 7, 5,  4, 0, 8, 4,  2.5f, 3, 6, 5.5f,  5, 5, 7, 9,  4, 1, 6, 7,  0, 0, 5, 3 };
    md_tensor *p = persist(MD_F32, MD_DIMS(6, 4), pb), *t = persist(MD_F32, MD_DIMS(6, 4), tb);
    p->requires_grad = t->requires_grad = true;
    md_tensor *iou = md_bbox_overlaps(ctx, p, t, MD_IOU, true, 1e-6);
    for (int i = 0; i < 6; i++) cr_assert_lt(md_f32(iou)[i], 0.45f, "row %d IoU %g", i, md_f32(iou)[i]);
    check_gradient("type = \"CIoULoss\";", p, t, NULL, MD_REDUCE_NONE, MD_NO_AVG, 1e-2);
    check_gradient("type = \"CIoULoss\"; eps = 1e-4; loss_weight = 0.5;", p, t, NULL, MD_REDUCE_DEFAULT, MD_NO_AVG,
                   1e-2);
    md_tensor_free(p);
    md_tensor_free(t);
}

/* ---- mmdet's special cases ---- */

Test(losses_registry, box_losses_without_positive_weight_are_zero_on_the_graph) {
    static const char *const types[] = { "IoULoss", "GIoULoss", "DIoULoss", "CIoULoss" };
    for (int k = 0; k < 4; k++) {
        char body[96];
        snprintf(body, sizeof body, "type = \"%s\"; loss_weight = 3.0;", types[k]);
        md_loss *l = build(body);
        /* no rows with an (empty) weight */
        md_tensor *p0 = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 4));
        p0->requires_grad = true;
        md_tensor *z = md_loss_forward(ctx, l, p0, md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 4)),
                                       md_tensor_zeros(ctx, MD_F32, MD_DIMS(0)), MD_NO_AVG, MD_REDUCE_DEFAULT);
        cr_assert(z, "%s: %s", types[k], md_ctx_error(ctx)->msg);
        cr_assert_eq(md_tensor_numel(z), 1);
        cr_assert_eq(md_tensor_item(z), 0.0, "%s", types[k]);
        cr_assert(z->requires_grad, "%s: the zero keeps pred on the graph", types[k]);
        /* zero weights on real boxes: 0 and a zero gradient */
        md_tensor *p = boxes_param(3, 9 + k);
        md_tensor *t = boxes_param(3, 19 + k);
        md_tensor *w0 = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4));
        z = md_loss_forward(ctx, l, p, t, w0, 2.0, MD_REDUCE_DEFAULT);
        cr_assert(z, "%s: %s", types[k], md_ctx_error(ctx)->msg);
        cr_assert_eq(md_tensor_item(z), 0.0);
        cr_assert_eq(md_backward(ctx, z, NULL), 0);
        for (int i = 0; i < 12; i++) cr_assert_eq(md_f32(p->grad)[i], 0.0f);
        md_tensor_free(p);
        md_tensor_free(t);
        md_loss_free(l);
        md_ctx_step_reset(ctx);
    }
}

Test(losses_registry, balanced_l1_of_nothing_is_zero) {
    md_loss *l = build("type = \"BalancedL1Loss\";");
    md_tensor *p = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 4));
    md_tensor *z = md_loss_forward(ctx, l, p, p, NULL, MD_NO_AVG, MD_REDUCE_DEFAULT);
    cr_assert(z, "%s", md_ctx_error(ctx)->msg);
    cr_assert_eq(md_tensor_item(z), 0.0);
    md_loss_free(l);
}

/* The flat RPN form gives what [N, 1] gives, reshaped; the labels' one-hot
 * equals a float target built by hand, bit for bit. */
Test(losses_registry, sigmoid_cross_entropy_label_forms_agree) {
    md_loss *l = build("type = \"CrossEntropyLoss\"; use_sigmoid = true;");
    float x[6] = { 0.3f, -1.2f, 2.0f, 0.1f, -0.4f, 1.7f }, wv[6] = { 1, 0.5f, 2, 1, 0, 1 };
    int64_t lab[6] = { 0, 1, 1, 0, 0, 1 };
    md_tensor *xf = md_tensor_from(ctx, MD_F32, MD_DIMS(6), x), *x1 = md_tensor_from(ctx, MD_F32, MD_DIMS(6, 1), x);
    md_tensor *labels = md_tensor_from(ctx, MD_I64, MD_DIMS(6), lab), *w = md_tensor_from(ctx, MD_F32, MD_DIMS(6), wv);
    md_tensor *a = md_loss_forward(ctx, l, xf, labels, w, MD_NO_AVG, MD_REDUCE_NONE);
    md_tensor *b = md_loss_forward(ctx, l, x1, labels, w, MD_NO_AVG, MD_REDUCE_NONE);
    cr_assert(a && b, "%s", md_ctx_error(ctx)->msg);
    cr_assert_eq(a->ndim, 1);
    cr_assert_eq(b->ndim, 2);
    cr_assert(!memcmp(md_f32(a), md_f32(b), sizeof x));
    float t[6];
    for (int i = 0; i < 6; i++) t[i] = lab[i] == 0 ? 1.0f : 0.0f;   /* label 0: the object */
    md_tensor *c = md_loss_forward(ctx, l, xf, md_tensor_from(ctx, MD_F32, MD_DIMS(6), t), w, 4.0, MD_REDUCE_MEAN);
    md_tensor *d = md_loss_forward(ctx, l, xf, labels, w, 4.0, MD_REDUCE_MEAN);
    cr_assert(c && d);
    cr_assert_eq(md_f32(c)[0], md_f32(d)[0]);
    md_loss_free(l);
}

/* ---- bad configs ---- */

/* use_mask (mmdet's mask_cross_entropy), worked by hand: the labels (in
 * the weight's place) pick channel 0 of RoI 0 (logit 0, target 1: ln 2)
 * and channel 1 of RoI 1 (logit -1, target 0: ln(1 + e^-1)); the mean of
 * the two, times loss_weight 2. The gradient reaches only those channels. */
Test(losses_registry, mask_cross_entropy_by_hand) {
    md_loss *l = build("type = \"CrossEntropyLoss\"; use_mask = true; loss_weight = 2.0;");
    cr_assert(l->flags & MD_LOSS_MASK);
    md_tensor *pred = randn_param(ctx, MD_DIMS(2, 2, 1, 1), 1);
    const float v[4] = { 0.0f, 5.0f, 3.0f, -1.0f };
    memcpy(md_f32(pred), v, sizeof v);
    md_tensor *target = md_tensor_from(ctx, MD_F32, MD_DIMS(2, 1, 1), (const float[]){ 1.0f, 0.0f });
    md_tensor *labels = md_tensor_from(ctx, MD_I64, MD_DIMS(2), (const int64_t[]){ 0, 1 });
    md_tensor *out = md_loss_forward(ctx, l, pred, target, labels, MD_NO_AVG, MD_REDUCE_DEFAULT);
    cr_assert_not_null(out, "%s", md_ctx_error(ctx)->msg);
    double want = 2.0 * (log(2.0) + log1p(exp(-1.0))) / 2.0;
    cr_assert_float_eq(md_f32(out)[0], want, 1e-6, "%g vs %g", md_f32(out)[0], want);
    md_error err = { 0 };
    cr_assert_eq(md_backward(ctx, out, &err), 0, "%s", err.msg);
    /* d/dx of w * mean BCE: w * (sigmoid(x) - t) / 2 */
    cr_assert_float_eq(md_f32(pred->grad)[0], 2.0 * (0.5 - 1.0) / 2.0, 1e-6);
    cr_assert_float_eq(md_f32(pred->grad)[1], 0.0, 0);
    cr_assert_float_eq(md_f32(pred->grad)[2], 0.0, 0);
    cr_assert_float_eq(md_f32(pred->grad)[3], 2.0 * (1.0 / (1.0 + exp(1.0))) / 2.0, 1e-6);
    cr_assert_null(md_loss_forward(ctx, l, pred, target, labels, MD_NO_AVG, MD_REDUCE_SUM), "sum is refused");
    md_tensor_free(pred);
    md_loss_free(l);
}

Test(losses_registry, bad_configs_say_what_is_wrong) {
    expect_config_error("type = \"FocalLoss\"; use_sigmoid = false;", "only the sigmoid focal loss is supported");
    expect_config_error("type = \"FocalLoss\"; activated = true;", "activated = true");
    expect_config_error("type = \"FocalLoss\"; alpha = 1.5;", "alpha in FocalLoss is 1.5; it must be at most 1");
    expect_config_error("type = \"IoULoss\"; mode = \"cubic\";", "mode in IoULoss is \"cubic\"; accepted: log|linear|square");
    expect_config_error("type = \"IoULoss\"; eps = 0.0;", "eps in IoULoss is 0; it must be > 0");
    expect_config_error("type = \"GIoULoss\"; eps = 0;", "eps in GIoULoss is 0; it must be > 0");
    expect_config_error("type = \"DIoULoss\"; eps = -1e-6;", "eps in DIoULoss is -1e-06; it must be at least 0");
    expect_config_error("type = \"CIoULoss\"; eps = 0.0;", "eps in CIoULoss is 0; it must be > 0");
    expect_config_error("type = \"SmoothL1Loss\"; beta = 0.0;", "beta in SmoothL1Loss is 0; it must be > 0");
    expect_config_error("type = \"BalancedL1Loss\"; beta = -1.0;", "beta in BalancedL1Loss is -1; it must be at least 0");
    expect_config_error("type = \"BalancedL1Loss\"; alpha = 0.0;", "alpha in BalancedL1Loss is 0; it must be > 0");
    expect_config_error("type = \"CrossEntropyLoss\"; use_mask = true; use_sigmoid = true;",
                        "use_mask = true goes with use_sigmoid = false");
    expect_config_error("type = \"CrossEntropyLoss\"; class_weight = [];", "class_weight is an empty list");
    expect_config_error("type = \"CrossEntropyLoss\"; class_weight = (1.0, \"a\");", "class_weight: expected numbers");
    expect_config_error("type = \"L1Loss\"; reduction = \"avg\";", "reduction in L1Loss is \"avg\"; accepted: mean|sum|none");
    expect_config_error("type = \"L1Loss\"; loss_wieght = 2.0;", "did you mean 'loss_weight'");
    /* the error names the file and line of the value */
    expect_config_error("type = \"IoULoss\";\n eps = 0.0;", "losses_test.cfg:2");
}

Test(losses_registry, bad_inputs_fail_as_op_errors) {
    md_loss *l = build("type = \"DIoULoss\";");
    md_tensor *p = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4));
    cr_assert_null(md_loss_forward(ctx, l, p, md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 5)), NULL, MD_NO_AVG,
                                   MD_REDUCE_DEFAULT));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "DIoULoss: pred and target must be f32 [N, 4]"), "%s",
              md_ctx_error(ctx)->msg);
    md_ctx_step_reset(ctx);
    p = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4));
    cr_assert_null(md_loss_forward(ctx, l, p, p, md_tensor_zeros(ctx, MD_F32, MD_DIMS(2)), MD_NO_AVG,
                                   MD_REDUCE_DEFAULT));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "weight [2] f32 must be f32 [N] or [N, 4]"), "%s", md_ctx_error(ctx)->msg);
    md_loss_free(l);
    md_ctx_step_reset(ctx);
    l = build("type = \"CrossEntropyLoss\"; use_sigmoid = true;");
    p = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 4));
    int64_t lab[2] = { 0, 1 };
    cr_assert_null(md_loss_forward(ctx, l, p, md_tensor_from(ctx, MD_I64, MD_DIMS(2), lab), NULL, MD_NO_AVG,
                                   MD_REDUCE_DEFAULT));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "labels [2] i64 must be i64 [N]"), "%s", md_ctx_error(ctx)->msg);
    md_loss_free(l);
}
