/* Losses with mmdet 2.28 semantics. Each loss is one fused op: element-wise
 * values, mmdet's weight_reduce_loss (weight, reduction, avg_factor), and a
 * backward that folds the upstream gradient, the reduction scale and the
 * weight into one coefficient per element. The checks, the weight shapes
 * and the reduction rules stay here; the per-element kernels and the
 * weighted sums are the backend's loss entries (backends/cpu/losses.c,
 * backends/cuda/losses.cu). */
#include <float.h>
#include <math.h>
#include <string.h>
#include "internal.h"

/* mmdet's weight_reduce_loss rules on the arguments. */
static bool check_reduction(md_ctx *ctx, const char *op, md_reduction red, double avg_factor) {
    if (red != MD_REDUCE_MEAN && red != MD_REDUCE_SUM && red != MD_REDUCE_NONE) {
        md_op_fail(ctx, op, "unknown reduction %d (mean, sum or none)", (int)red);
        return false;
    }
    if (avg_factor >= 0 && red == MD_REDUCE_SUM) {
        md_op_fail(ctx, op, "avg_factor (%g) can not be used with reduction=\"sum\" (as in mmdet)", avg_factor);
        return false;
    }
    if (isnan(avg_factor)) {
        md_op_fail(ctx, op, "avg_factor is NaN");
        return false;
    }
    return true;
}

/* `w` broadcast (numpy rules, right-aligned, never growing the shape) to
 * `shape`, as a contiguous array; NULL with *ok for no weight. */
static bool weight_fits(md_ctx *ctx, const char *op, const md_tensor *w, int ndim, const int64_t *shape) {
    char sw[96];
    bool fits = w->dtype == MD_F32 && w->ndim <= ndim;
    for (int d = 0; fits && d < w->ndim; d++) {
        int64_t ws = w->shape[w->ndim - 1 - d], s = shape[ndim - 1 - d];
        if (ws != s && ws != 1) fits = false;
    }
    if (!fits) {
        char buf[128] = "[";
        for (int d = 0; d < ndim; d++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%lld", d ? ", " : "", (long long)shape[d]);
        strncat(buf, "]", sizeof buf - strlen(buf) - 1);
        md_op_fail(ctx, op, "weight %s must be f32 and broadcast to the element-wise loss %s",
                   md_tensor_describe(w, sw, sizeof sw), buf);
        return false;
    }
    return true;
}

/* The view of w broadcast to `shape` (stride 0 along the broadcast dims). */
static md_tensor broadcast_view(const md_tensor *w, int ndim, const int64_t *shape) {
    md_tensor v = *w;
    v.ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        int wd = d - (ndim - w->ndim);
        v.shape[d] = shape[d];
        v.stride[d] = wd < 0 || w->shape[wd] == 1 ? 0 : w->stride[wd];
    }
    return v;
}

static const float *expand_weight(md_ctx *ctx, const char *op, const md_tensor *w, int ndim,
                                  const int64_t *shape, bool *ok) {
    *ok = true;
    if (!w) return NULL;
    *ok = false;
    if (!weight_fits(ctx, op, w, ndim, shape)) return NULL;
    if (w->ndim == ndim && md_tensor_is_contiguous(w)) {
        bool same = true;
        for (int d = 0; d < ndim; d++) same = same && w->shape[d] == shape[d];
        if (same) { *ok = true; return md_f32(w); }
    }
    /* a contiguous copy of the broadcast view, on w's device */
    md_tensor v = broadcast_view(w, ndim, shape);
    md_tensor *out = md__empty_like_on(ctx, w, MD_F32, ndim, shape);
    if (!out || md__copy_any(ctx, out, &v) != 0) return NULL;
    *ok = true;
    return md_f32(out);
}

typedef enum loss_kind { K_REDUCE, K_CE, K_BCE, K_FOCAL, K_SL1, K_L1, K_GIOU, K_GIOU_NOPOS } loss_kind;

typedef struct loss_saved {
    loss_kind kind;
    const md_backend *be;  /* the kernels of the inputs' device */
    md_reduction red;
    float scale;           /* d(out)/d(weighted element) for sum/mean */
    int64_t E;             /* elements of the element-wise loss */
    const float *w;        /* weight expanded to the element-wise shape, or NULL */
    md_tensor *x, *y;      /* contiguous inputs (pred/logits, target) */
    const float *aux;      /* CE class weights; reduce: the unweighted loss */
    const int64_t *lab;    /* labels */
    int64_t n, c, ignore;
    float p1, p2;          /* beta | gamma, alpha | eps */
} loss_saved;

/* A missing loss entry of the backend, reported naming the op. */
#define NEED(be, entry, ctx, op, t) \
    do { if (!(be)->entry) return md__no_kernel(ctx, op, t); } while (0)

/* The coefficients of the forward's reduction, with the upstream gradient
 * left on its device (g[0] * scale is formed by the kernels). */
static int loss_backward(md_ctx *ctx, md_node *node, md_tensor *gout) {
    const loss_saved *s = md_node_saved(node);
    const md_backend *be = s->be;
    const char *op = md_node_op(node);
    bool none = s->red == MD_REDUCE_NONE && s->kind != K_GIOU_NOPOS;
    md_tensor *gc = md__contig(ctx, gout);
    if (!gc) return -1;
    const float *g = md_f32(gc);
    float scale = none ? 0.0f : s->scale;
    bool g0 = md_node_needs_grad(node, 0), g1 = md_node_needs_grad(node, 1);
    md_tensor *a = g0 ? md__empty_like_on(ctx, s->x, MD_F32, s->x->ndim, s->x->shape) : NULL;
    md_tensor *b = NULL;
    if (g0 && !a) return -1;
    if (g1 && (s->kind == K_SL1 || s->kind == K_L1 || s->kind == K_GIOU || s->kind == K_REDUCE)) {
        /* weight_reduce_loss: d/d(weight) per element of the loss; accumulate
         * sums it over the broadcast dimensions */
        const md_tensor *like = s->kind == K_REDUCE ? s->x : s->y;
        b = md__empty_like_on(ctx, s->x, MD_F32, like->ndim, like->shape);
        if (!b) return -1;
    }
    float *ga = a ? md_f32(a) : NULL, *gb = b ? md_f32(b) : NULL;
    int rc = 0;
#define BNEED(entry) \
    do { if (!be->entry) return md__no_kernel(ctx, op, s->x), -1; } while (0)
    switch (s->kind) {
    case K_REDUCE:
        BNEED(loss_coef_fill);
        if (ga) rc = be->loss_coef_fill(s->E, g, none, scale, s->w, NULL, ga);
        if (!rc && gb) rc = be->loss_coef_fill(s->E, g, none, scale, NULL, s->aux, gb);
        break;
    case K_CE:
        BNEED(ce_backward);
        if (ga) rc = be->ce_backward(md_f32(s->x), s->lab, s->aux, s->n, s->c, s->ignore, g, none, scale, s->w, ga);
        break;
    case K_BCE:
        BNEED(bce_backward);
        if (ga) rc = be->bce_backward(md_f32(s->x), md_f32(s->y), s->E, g, none, scale, s->w, ga);
        break;
    case K_FOCAL:
        if (ga && s->aux) {   /* the derivatives focal_forward_grad wrote */
            BNEED(focal_backward_saved);
            rc = be->focal_backward_saved(s->aux, s->E, g, none, scale, s->w, ga);
        } else if (ga) {
            BNEED(focal_backward);
            rc = be->focal_backward(md_f32(s->x), s->lab, s->n, s->c, s->p1, s->p2, g, none, scale, s->w, ga);
        }
        break;
    case K_SL1:
        BNEED(smooth_l1_backward);
        rc = be->smooth_l1_backward(md_f32(s->x), md_f32(s->y), s->E, s->p1, g, none, scale, s->w, ga, gb);
        break;
    case K_L1:
        BNEED(l1_backward);
        rc = be->l1_backward(md_f32(s->x), md_f32(s->y), s->E, g, none, scale, s->w, ga, gb);
        break;
    case K_GIOU:
        BNEED(giou_backward);
        rc = be->giou_backward(md_f32(s->x), md_f32(s->y), s->n, s->p2, g, none, scale, s->w, ga, gb);
        break;
    case K_GIOU_NOPOS:   /* out = sum(pred * weight): d/d(pred) = g * weight */
        BNEED(loss_coef_fill);
        if (ga) rc = be->loss_coef_fill(s->E, g, false, s->scale, NULL, s->aux, ga);
        break;
    }
#undef BNEED
    if (rc != 0) return md__be_failed(ctx, op, be), -1;
    if (a && md_node_accumulate(ctx, node, 0, a) != 0) return -1;
    if (b && md_node_accumulate(ctx, node, 1, b) != 0) return -1;
    return 0;
}

/* Holds what the backward reads beside the inputs (copies, weights, labels). */
static int keep_loss_saved(md_ctx *ctx, md_node *node, const loss_saved *s) {
    md_device_type dev = md_node_input(node, 0) ? md_node_input(node, 0)->device : MD_CPU;
    return md_node_keep(ctx, node, s->x) || md_node_keep(ctx, node, s->y) ||
           md__node_keep_data(ctx, node, dev, s->w) || md__node_keep_data(ctx, node, dev, s->aux) ||
           md__node_keep_data(ctx, node, dev, s->lab);
}

/* Weights and reduces the element-wise loss L (a step tensor of the
 * element-wise shape that this op owns, unless `s->kind` is K_REDUCE), then
 * records the node. `empty_is_zero`: mmdet's l1/smooth_l1 return 0, not NaN,
 * for empty inputs. */
static md_tensor *record(md_ctx *ctx, const char *op, const loss_saved *s, md_tensor *out, md_tensor *const *ins,
                         int nin) {
    md_node *node = md_autograd_record(ctx, out, ins, nin, loss_backward, op);
    if (node) {
        loss_saved *sv = md_node_save(ctx, node, sizeof *sv);
        if (!sv || keep_loss_saved(ctx, node, s)) return NULL;
        *sv = *s;
    }
    return out;
}

/* Weights and reduces L by mmdet's rules; the weighted element-wise loss is
 * only formed when it is the output. */
static md_tensor *finish(md_ctx *ctx, const char *op, loss_saved *s, md_tensor *L, double avg_factor,
                         bool empty_is_zero, md_tensor *const *ins, int nin) {
    const md_backend *be = s->be;
    NEED(be, loss_reduce, ctx, op, L);
    int64_t E = md_tensor_numel(L);
    s->E = E;
    if (s->kind == K_REDUCE) s->aux = md_f32(L);
    md_tensor *out;
    if (s->red == MD_REDUCE_NONE) {
        out = L;
        if (s->kind == K_REDUCE) {   /* never hand back (or scale) the input itself */
            out = md__empty_like_on(ctx, L, MD_F32, L->ndim, L->shape);
            if (!out) return NULL;
        }
        if ((s->w || out != L) && E > 0 && be->loss_reduce(md_f32(L), s->w, E, 1.0, md_f32(out), NULL) != 0)
            return md__be_failed(ctx, op, be);
        return record(ctx, op, s, out, ins, nin);
    }
    double div, empty;
    if (s->red == MD_REDUCE_SUM) {
        s->scale = 1.0f;
        div = 1.0;
        empty = 0.0;
    } else if (avg_factor >= 0) {
        s->scale = (float)(1.0 / (avg_factor + FLT_EPSILON));
        div = avg_factor + FLT_EPSILON;
        empty = 0.0;
    } else {
        s->scale = E ? (float)(1.0 / (double)E) : NAN;
        div = (double)E;
        empty = NAN;
    }
    if (empty_is_zero) empty = 0.0;
    int64_t one = 1;
    out = md__empty_like_on(ctx, L, MD_F32, 0, &one);
    if (!out) return NULL;
    if (E == 0) {
        if (md_tensor_fill_(out, empty) != 0) return md__be_failed(ctx, op, be);
    } else if (be->loss_reduce(md_f32(L), s->w, E, div, NULL, md_f32(out)) != 0) {
        return md__be_failed(ctx, op, be);
    }
    return record(ctx, op, s, out, ins, nin);
}

MD_API md_tensor *md_weight_reduce_loss(md_ctx *ctx, md_tensor *loss, md_tensor *weight, md_reduction red,
                                        double avg_factor) {
    static const char *op = "weight_reduce_loss";
    if (!loss) return NULL;
    char sl[96];
    if (!md__same_device(ctx, op, 2, (md_tensor *[]){ loss, weight })) return NULL;
    if (!check_reduction(ctx, op, red, avg_factor)) return NULL;
    if (loss->dtype != MD_F32)
        return md_op_fail(ctx, op, "loss must be f32, got %s", md_tensor_describe(loss, sl, sizeof sl));
    const md_backend *be = md__be(ctx, op, loss);
    if (!be) return NULL;
    bool ok;
    md_tensor *L = md__contig(ctx, loss);
    if (!L) return NULL;
    loss_saved s = { .kind = K_REDUCE, .be = be, .red = red, .x = L };
    s.w = expand_weight(ctx, op, weight, L->ndim, L->shape, &ok);
    if (!ok) return NULL;
    s.y = weight;
    md_tensor *ins[2] = { loss, weight };
    return finish(ctx, op, &s, L, avg_factor, false, ins, weight ? 2 : 1);
}

static bool check_labels(md_ctx *ctx, const char *op, md_tensor *labels, int64_t n, const char *need) {
    char sl[96];
    if (labels->dtype != MD_I64 || labels->ndim != 1 || labels->shape[0] != n) {
        md_op_fail(ctx, op, "labels must be i64 [%lld] (%s), got %s", (long long)n, need,
                   md_tensor_describe(labels, sl, sizeof sl));
        return false;
    }
    return true;
}

MD_API md_tensor *md_loss_cross_entropy(md_ctx *ctx, md_tensor *logits, md_tensor *labels, md_tensor *weight,
                                        md_tensor *class_weight, md_reduction red, double avg_factor,
                                        int64_t ignore_index) {
    static const char *op = "cross_entropy";
    if (!logits || !labels) return NULL;
    char sx[96], sc[96];
    if (!md__same_device(ctx, op, 4, (md_tensor *[]){ logits, labels, weight, class_weight })) return NULL;
    if (!check_reduction(ctx, op, red, avg_factor)) return NULL;
    if (logits->dtype != MD_F32 || logits->ndim != 2)
        return md_op_fail(ctx, op, "logits must be f32 [N, C], got %s", md_tensor_describe(logits, sx, sizeof sx));
    int64_t n = logits->shape[0], c = logits->shape[1];
    if (!check_labels(ctx, op, labels, n, "one class index per row")) return NULL;
    if (class_weight && (class_weight->dtype != MD_F32 || class_weight->ndim != 1 || class_weight->shape[0] != c))
        return md_op_fail(ctx, op, "class_weight must be f32 [%lld] for logits %s, got %s", (long long)c,
                          md_tensor_describe(logits, sx, sizeof sx),
                          md_tensor_describe(class_weight, sc, sizeof sc));
    const md_backend *be = md__be(ctx, op, logits);
    if (!be) return NULL;
    NEED(be, loss_check_labels, ctx, op, logits);
    NEED(be, ce_forward, ctx, op, logits);
    bool ok;
    md_tensor *x = md__contig(ctx, logits), *lb = md__contig(ctx, labels);
    md_tensor *cw = class_weight ? md__contig(ctx, class_weight) : NULL;
    if (!x || !lb || (class_weight && !cw)) return NULL;
    const int64_t *lp = md_i64(lb);
    int64_t bad[2] = { -1, 0 };   /* row, label */
    if (be->loss_check_labels(lp, n, 0, c, ignore_index, bad) != 0) return md__be_failed(ctx, op, be);
    if (bad[0] >= 0)
        return md_op_fail(ctx, op, "label %lld of row %lld is out of range [0, %lld) for logits %s "
                          "(ignore_index %lld)", (long long)bad[1], (long long)bad[0], (long long)c,
                          md_tensor_describe(logits, sx, sizeof sx), (long long)ignore_index);
    md_tensor *L = md__empty_like_on(ctx, x, MD_F32, MD_DIMS(n));
    if (!L) return NULL;
    const float *cwp = cw ? md_f32(cw) : NULL;
    if (be->ce_forward(md_f32(x), lp, cwp, n, c, ignore_index, md_f32(L)) != 0) return md__be_failed(ctx, op, be);
    loss_saved s = { .kind = K_CE, .be = be, .red = red, .x = x, .aux = cwp, .lab = lp, .n = n, .c = c,
                     .ignore = ignore_index };
    s.w = expand_weight(ctx, op, weight, 1, &n, &ok);
    if (!ok) return NULL;
    md_tensor *ins[1] = { logits };
    return finish(ctx, op, &s, L, avg_factor, false, ins, 1);
}

MD_API md_tensor *md_loss_bce_with_logits(md_ctx *ctx, md_tensor *pred, md_tensor *target, md_tensor *weight,
                                          md_reduction red, double avg_factor) {
    static const char *op = "binary_cross_entropy";
    if (!pred || !target) return NULL;
    char sp[96], st[96];
    if (!md__same_device(ctx, op, 3, (md_tensor *[]){ pred, target, weight })) return NULL;
    if (!check_reduction(ctx, op, red, avg_factor)) return NULL;
    if (pred->dtype != MD_F32 || target->dtype != MD_F32 || !md_tensor_same_shape(pred, target))
        return md_op_fail(ctx, op, "pred and target must be f32 of the same shape, got %s and %s",
                          md_tensor_describe(pred, sp, sizeof sp), md_tensor_describe(target, st, sizeof st));
    const md_backend *be = md__be(ctx, op, pred);
    if (!be) return NULL;
    NEED(be, bce_mask_weight, ctx, op, pred);
    NEED(be, bce_forward, ctx, op, pred);
    bool ok;
    md_tensor *x = md__contig(ctx, pred), *t = md__contig(ctx, target);
    if (!x || !t) return NULL;
    int64_t E = md_tensor_numel(x);
    const float *w = expand_weight(ctx, op, weight, x->ndim, x->shape, &ok);
    if (!ok) return NULL;
    /* mmdet masks out elements whose label is negative (ignore_index -100):
     * weight = weight * (label >= 0). Without loss_any_negative the mask is
     * always applied: (t >= 0) * w is w itself (and 1 for no weight) when no
     * target is negative, the same values. */
    int any_neg = 1;
    if (be->loss_any_negative && be->loss_any_negative(md_f32(t), E, &any_neg) != 0) return md__be_failed(ctx, op, be);
    if (any_neg) {
        float *m = md__alloc_like(ctx, x, sizeof(float) * (size_t)(E ? E : 1));
        if (!m) return NULL;
        if (be->bce_mask_weight(md_f32(t), w, E, m) != 0) return md__be_failed(ctx, op, be);
        w = m;
    }
    md_tensor *L = md__empty_like_on(ctx, x, MD_F32, x->ndim, x->shape);
    if (!L) return NULL;
    if (be->bce_forward(md_f32(x), md_f32(t), E, md_f32(L)) != 0) return md__be_failed(ctx, op, be);
    loss_saved s = { .kind = K_BCE, .be = be, .red = red, .x = x, .y = t, .w = w };
    md_tensor *ins[1] = { pred };
    return finish(ctx, op, &s, L, avg_factor, false, ins, 1);
}

MD_API md_tensor *md_loss_sigmoid_focal(md_ctx *ctx, md_tensor *pred, md_tensor *labels, md_tensor *weight,
                                        double gamma, double alpha, md_reduction red, double avg_factor) {
    static const char *op = "sigmoid_focal_loss";
    if (!pred || !labels) return NULL;
    char sp[96], sw[96];
    if (!md__same_device(ctx, op, 3, (md_tensor *[]){ pred, labels, weight })) return NULL;
    if (!check_reduction(ctx, op, red, avg_factor)) return NULL;
    if (pred->dtype != MD_F32 || pred->ndim != 2)
        return md_op_fail(ctx, op, "pred must be f32 [N, C] logits, got %s", md_tensor_describe(pred, sp, sizeof sp));
    int64_t n = pred->shape[0], c = pred->shape[1];
    if (!check_labels(ctx, op, labels, n, "in [0, C], C = background")) return NULL;
    const md_backend *be = md__be(ctx, op, pred);
    if (!be) return NULL;
    NEED(be, loss_check_labels, ctx, op, pred);
    NEED(be, focal_forward, ctx, op, pred);
    bool ok;
    md_tensor *x = md__contig(ctx, pred), *lb = md__contig(ctx, labels);
    if (!x || !lb) return NULL;
    const int64_t *lp = md_i64(lb);
    int64_t bad[2] = { -1, 0 };   /* row, label */
    /* nothing is ignored: an ignore value inside the range changes nothing */
    if (be->loss_check_labels(lp, n, 0, c + 1, 0, bad) != 0) return md__be_failed(ctx, op, be);
    if (bad[0] >= 0)
        return md_op_fail(ctx, op, "label %lld of row %lld is out of range [0, %lld] for pred %s "
                          "(%lld = background)", (long long)bad[1], (long long)bad[0], (long long)c,
                          md_tensor_describe(pred, sp, sizeof sp), (long long)c);
    /* mmdet's weight shapes: [N] (per prior, viewed as [N, 1]), [N, C], or
     * [N * C] flattened. */
    md_tensor wv;
    md_tensor *wp = weight;
    if (weight && !md_tensor_same_shape(weight, x)) {
        if (weight->ndim >= 1 && weight->shape[0] == n && md_tensor_numel(weight) == n) {
            wv = *weight;
            wv.ndim = 2;
            wv.shape[0] = n; wv.shape[1] = 1;
            wv.stride[0] = weight->ndim >= 1 ? weight->stride[0] : 1; wv.stride[1] = 1;
            wp = &wv;
        } else if (md_tensor_numel(weight) == n * c) {
            md_tensor *wc = md__contig(ctx, weight);
            if (!wc) return NULL;
            wv = *wc;
            wv.ndim = 2;
            wv.shape[0] = n; wv.shape[1] = c;
            wv.stride[0] = c; wv.stride[1] = 1;
            wp = &wv;
        } else {
            return md_op_fail(ctx, op, "weight %s must be [N], [N, C] or [N * C] for pred %s",
                              md_tensor_describe(weight, sw, sizeof sw), md_tensor_describe(pred, sp, sizeof sp));
        }
    }
    const float *w = expand_weight(ctx, op, wp, 2, x->shape, &ok);
    if (!ok) return NULL;
    md_tensor *L = md__empty_like_on(ctx, x, MD_F32, MD_DIMS(n, c));
    if (!L) return NULL;
    /* Where the backend can (the CPU), a forward that backward will follow
     * also writes each element's derivative (the same exp and log1p serve
     * both); backward then only scales it. */
    md_tensor *D = NULL;
    if (be->focal_forward_grad && be->focal_backward_saved && md_grad_enabled(ctx) && pred->requires_grad &&
        !(D = md__empty_like_on(ctx, x, MD_F32, MD_DIMS(n, c))))
        return NULL;
    int rc = D ? be->focal_forward_grad(md_f32(x), lp, n, c, (float)gamma, (float)alpha, md_f32(L), md_f32(D))
               : be->focal_forward(md_f32(x), lp, n, c, (float)gamma, (float)alpha, md_f32(L));
    if (rc != 0) return md__be_failed(ctx, op, be);
    loss_saved s = { .kind = K_FOCAL, .be = be, .red = red, .x = x, .w = w, .lab = lp, .n = n, .c = c,
                     .p1 = (float)gamma, .p2 = (float)alpha, .aux = D ? md_f32(D) : NULL };
    md_tensor *ins[1] = { pred };
    return finish(ctx, op, &s, L, avg_factor, false, ins, 1);
}

static md_tensor *regression_loss(md_ctx *ctx, const char *op, loss_kind kind, md_tensor *pred, md_tensor *target,
                                  md_tensor *weight, double beta, md_reduction red, double avg_factor) {
    if (!pred || !target) return NULL;
    char sp[96], st[96];
    if (!md__same_device(ctx, op, 3, (md_tensor *[]){ pred, target, weight })) return NULL;
    if (!check_reduction(ctx, op, red, avg_factor)) return NULL;
    if (kind == K_SL1 && !(beta > 0))
        return md_op_fail(ctx, op, "beta %g must be > 0 (mmdet asserts it)", beta);
    if (pred->dtype != MD_F32 || target->dtype != MD_F32 || !md_tensor_same_shape(pred, target))
        return md_op_fail(ctx, op, "pred and target must be f32 of the same shape, got %s and %s",
                          md_tensor_describe(pred, sp, sizeof sp), md_tensor_describe(target, st, sizeof st));
    const md_backend *be = md__be(ctx, op, pred);
    if (!be) return NULL;
    if (kind == K_SL1) NEED(be, smooth_l1_forward, ctx, op, pred);
    if (kind == K_L1) NEED(be, l1_forward, ctx, op, pred);
    bool ok;
    md_tensor *x = md__contig(ctx, pred), *t = md__contig(ctx, target);
    if (!x || !t) return NULL;
    const float *w = expand_weight(ctx, op, weight, x->ndim, x->shape, &ok);
    if (!ok) return NULL;
    md_tensor *L = md__empty_like_on(ctx, x, MD_F32, x->ndim, x->shape);
    if (!L) return NULL;
    int64_t E = md_tensor_numel(x);
    int rc = kind == K_SL1 ? be->smooth_l1_forward(md_f32(x), md_f32(t), E, (float)beta, md_f32(L))
                           : be->l1_forward(md_f32(x), md_f32(t), E, md_f32(L));
    if (rc != 0) return md__be_failed(ctx, op, be);
    loss_saved s = { .kind = kind, .be = be, .red = red, .x = x, .y = t, .w = w, .p1 = (float)beta };
    md_tensor *ins[2] = { pred, target };
    return finish(ctx, op, &s, L, avg_factor, true, ins, 2);
}

MD_API md_tensor *md_loss_smooth_l1(md_ctx *ctx, md_tensor *pred, md_tensor *target, md_tensor *weight,
                                    double beta, md_reduction red, double avg_factor) {
    return regression_loss(ctx, "smooth_l1_loss", K_SL1, pred, target, weight, beta, red, avg_factor);
}

MD_API md_tensor *md_loss_l1(md_ctx *ctx, md_tensor *pred, md_tensor *target, md_tensor *weight,
                             md_reduction red, double avg_factor) {
    return regression_loss(ctx, "l1_loss", K_L1, pred, target, weight, 1.0, red, avg_factor);
}

/* giou_loss's weight rules and kernels (on a device the positive-weight
 * test reads one flag back: the output's shape hangs on it). */
static md_tensor *giou_run(md_ctx *ctx, const char *op, const md_backend *be, md_tensor *pred, md_tensor *target,
                           md_tensor *x, md_tensor *t, md_tensor *weight, double eps, md_reduction red,
                           double avg_factor) {
    int64_t n = pred->shape[0];
    NEED(be, giou_forward, ctx, op, pred);
    const float *w = NULL;
    if (weight) {
        char sw[96], sp[96];
        bool per_box = weight->ndim == 1 && weight->shape[0] == n;
        bool per_coord = md_tensor_same_shape(weight, pred);
        if (weight->dtype != MD_F32 || (!per_box && !per_coord))
            return md_op_fail(ctx, op, "weight %s must be f32 [N] or [N, 4] for pred %s",
                              md_tensor_describe(weight, sw, sizeof sw), md_tensor_describe(pred, sp, sizeof sp));
        NEED(be, loss_any_positive, ctx, op, pred);
        NEED(be, loss_reduce, ctx, op, pred);
        md_tensor *wc = md__contig(ctx, weight);
        if (!wc) return NULL;
        int any_pos = 0;
        if (be->loss_any_positive(md_f32(wc), md_tensor_numel(wc), &any_pos) != 0) return md__be_failed(ctx, op, be);
        if (!any_pos) {
            /* mmdet's GIoULoss: no positive weight returns (pred * weight).sum()
             * (a scalar whatever the reduction), keeping garbage boxes out of
             * the graph. */
            md_tensor *wb = md__empty_like_on(ctx, x, MD_F32, MD_DIMS(n, 4));
            md_tensor *prod = md__empty_like_on(ctx, x, MD_F32, MD_DIMS(n, 4));
            if (!wb || !prod) return NULL;
            md_tensor v = *wc;
            if (per_box) {   /* [N] viewed as [N, 4] with stride 0 */
                v.ndim = 2;
                v.shape[0] = n; v.shape[1] = 4;
                v.stride[0] = wc->stride[0]; v.stride[1] = 0;
            }
            if (md__copy_any(ctx, wb, &v) != 0) return NULL;
            if (n > 0 && be->loss_reduce(md_f32(x), md_f32(wb), 4 * n, 1.0, md_f32(prod), NULL) != 0)
                return md__be_failed(ctx, op, be);
            loss_saved s = { .kind = K_GIOU_NOPOS, .be = be, .red = MD_REDUCE_SUM, .x = x, .y = t,
                             .aux = md_f32(wb), .n = n };
            md_tensor *ins[1] = { pred };
            return finish(ctx, op, &s, prod, MD_NO_AVG, false, ins, 1);
        }
        if (per_coord) {   /* mmdet: weight.mean(-1) */
            NEED(be, giou_weight_mean, ctx, op, pred);
            float *wm = md__alloc_like(ctx, x, sizeof(float) * (size_t)(n ? n : 1));
            if (!wm) return NULL;
            if (be->giou_weight_mean(md_f32(wc), n, wm) != 0) return md__be_failed(ctx, op, be);
            w = wm;
        } else {
            w = md_f32(wc);
        }
    }
    md_tensor *L = md__empty_like_on(ctx, x, MD_F32, MD_DIMS(n));
    if (!L) return NULL;
    if (be->giou_forward(md_f32(x), md_f32(t), n, (float)eps, md_f32(L)) != 0) return md__be_failed(ctx, op, be);
    loss_saved s = { .kind = K_GIOU, .be = be, .red = red, .x = x, .y = t, .w = w, .n = n, .p2 = (float)eps };
    md_tensor *ins[2] = { pred, target };
    return finish(ctx, op, &s, L, avg_factor, false, ins, 2);
}

MD_API md_tensor *md_loss_giou(md_ctx *ctx, md_tensor *pred, md_tensor *target, md_tensor *weight, double eps,
                               md_reduction red, double avg_factor) {
    static const char *op = "giou_loss";
    if (!pred || !target) return NULL;
    char sp[96], st[96];
    if (!md__same_device(ctx, op, 3, (md_tensor *[]){ pred, target, weight })) return NULL;
    if (!check_reduction(ctx, op, red, avg_factor)) return NULL;
    if (pred->dtype != MD_F32 || pred->ndim != 2 || pred->shape[1] != 4 || !md_tensor_same_shape(pred, target) ||
        target->dtype != MD_F32)
        return md_op_fail(ctx, op, "pred and target must be f32 [N, 4] boxes of the same shape, got %s and %s",
                          md_tensor_describe(pred, sp, sizeof sp), md_tensor_describe(target, st, sizeof st));
    const md_backend *be = md__be(ctx, op, pred);
    if (!be) return NULL;
    md_tensor *x = md__contig(ctx, pred), *t = md__contig(ctx, target);
    if (!x || !t) return NULL;
    return giou_run(ctx, op, be, pred, target, x, t, weight, eps, red, avg_factor);
}
