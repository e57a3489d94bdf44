/* Losses with mmdet 2.28 semantics. Each loss is one fused op: element-wise
 * values, mmdet's weight_reduce_loss (weight, reduction, avg_factor), and a
 * backward that folds the upstream gradient, the reduction scale and the
 * weight into one coefficient per element. Kernels: backends/cpu/losses.c. */
#include <float.h>
#include <math.h>
#include <string.h>
#include "internal.h"
#include "backends/cpu/losses.h"

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
static const float *expand_weight(md_ctx *ctx, const char *op, const md_tensor *w, int ndim,
                                  const int64_t *shape, bool *ok) {
    *ok = true;
    if (!w) return NULL;
    *ok = false;
    char sw[96];
    int64_t E = 1;
    for (int d = 0; d < ndim; d++) E *= shape[d];
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
        return NULL;
    }
    if (w->ndim == ndim && md_tensor_is_contiguous(w)) {
        bool same = true;
        for (int d = 0; d < ndim; d++) same = same && w->shape[d] == shape[d];
        if (same) { *ok = true; return md_f32(w); }
    }
    float *out = md_ctx_alloc(ctx, sizeof(float) * (size_t)(E ? E : 1));
    if (!out) return NULL;
    int64_t bstride[MD_MAX_DIMS] = { 0 }, idx[MD_MAX_DIMS] = { 0 };
    for (int d = 0; d < w->ndim; d++) {
        int od = ndim - w->ndim + d;
        bstride[od] = w->shape[d] == 1 ? 0 : w->stride[d];
    }
    const float *src = md_f32(w);
    int64_t off = 0;
    for (int64_t e = 0; e < E; e++) {
        out[e] = src[off];
        for (int d = ndim - 1; d >= 0; d--) {
            off += bstride[d];
            if (++idx[d] < shape[d]) break;
            off -= bstride[d] * idx[d];
            idx[d] = 0;
        }
    }
    *ok = true;
    return out;
}

typedef enum loss_kind { K_REDUCE, K_CE, K_BCE, K_FOCAL, K_SL1, K_L1, K_GIOU, K_GIOU_NOPOS } loss_kind;

typedef struct loss_saved {
    loss_kind kind;
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

static int loss_backward(md_ctx *ctx, md_node *node, md_tensor *gout) {
    const loss_saved *s = md_node_saved(node);
    bool none = s->red == MD_REDUCE_NONE && s->kind != K_GIOU_NOPOS;
    md__loss_coef k = { none ? md_f32(gout) : NULL, none ? 0.0f : md_f32(gout)[0] * s->scale, s->w };
    bool g0 = md_node_needs_grad(node, 0), g1 = md_node_needs_grad(node, 1);
    md_tensor *a = g0 ? md_tensor_empty(ctx, MD_F32, s->x->ndim, s->x->shape) : NULL;
    md_tensor *b = NULL;
    if (g0 && !a) return -1;
    if (g1 && (s->kind == K_SL1 || s->kind == K_L1 || s->kind == K_GIOU)) {
        b = md_tensor_empty(ctx, MD_F32, s->y->ndim, s->y->shape);
        if (!b) return -1;
    }
    float *ga = a ? md_f32(a) : NULL, *gb = b ? md_f32(b) : NULL;
    switch (s->kind) {
    case K_REDUCE:   /* inputs: loss, weight */
        if (ga) for (int64_t e = 0; e < s->E; e++) ga[e] = md__coef(&k, e);
        if (g1) {
            /* d/d(weight) is per element of the loss; accumulate sums it
             * over the broadcast dimensions. */
            md__loss_coef k2 = { k.g, k.scale, NULL };
            b = md_tensor_empty(ctx, MD_F32, s->x->ndim, s->x->shape);
            if (!b) return -1;
            for (int64_t e = 0; e < s->E; e++) md_f32(b)[e] = md__coef(&k2, e) * s->aux[e];
        }
        break;
    case K_CE:
        if (ga) md__cpu_ce_backward(md_f32(s->x), s->lab, s->aux, s->n, s->c, s->ignore, &k, ga);
        break;
    case K_BCE:
        if (ga) md__cpu_bce_backward(md_f32(s->x), md_f32(s->y), s->E, &k, ga);
        break;
    case K_FOCAL:
        if (ga) md__cpu_focal_backward(md_f32(s->x), s->lab, s->n, s->c, s->p1, s->p2, &k, ga);
        break;
    case K_SL1:
        md__cpu_smooth_l1_backward(md_f32(s->x), md_f32(s->y), s->E, s->p1, &k, ga, gb);
        break;
    case K_L1:
        md__cpu_l1_backward(md_f32(s->x), md_f32(s->y), s->E, &k, ga, gb);
        break;
    case K_GIOU:
        md__cpu_giou_backward(md_f32(s->x), md_f32(s->y), s->n, s->p2, &k, ga, gb);
        break;
    case K_GIOU_NOPOS:   /* out = sum(pred * weight): d/d(pred) = g * weight */
        if (ga) for (int64_t e = 0; e < s->E; e++) ga[e] = k.scale * s->aux[e];
        break;
    }
    if (a && md_node_accumulate(ctx, node, 0, a) != 0) return -1;
    if (b && md_node_accumulate(ctx, node, 1, b) != 0) return -1;
    return 0;
}

/* Weights and reduces the element-wise loss L (a step tensor of the
 * element-wise shape that this op owns, unless `s->kind` is K_REDUCE), then
 * records the node. `empty_is_zero`: mmdet's l1/smooth_l1 return 0, not NaN,
 * for empty inputs. */
static md_tensor *finish(md_ctx *ctx, const char *op, loss_saved *s, md_tensor *L, double avg_factor,
                         bool empty_is_zero, md_tensor *const *ins, int nin) {
    int64_t E = md_tensor_numel(L);
    s->E = E;
    md_tensor *wl = L;
    if (s->kind == K_REDUCE) {   /* never hand back (or scale) the input itself */
        s->aux = md_f32(L);
        wl = md_tensor_empty(ctx, MD_F32, L->ndim, L->shape);
        if (!wl) return NULL;
        if (!s->w) memcpy(md_f32(wl), md_f32(L), sizeof(float) * (size_t)E);
    }
    if (s->w) {
        float *d = md_f32(wl);
        const float *l = md_f32(L), *w = s->w;
        #pragma omp parallel for if (E > 65536) schedule(static)
        for (int64_t e = 0; e < E; e++) d[e] = l[e] * w[e];
    }
    md_tensor *out = wl;
    if (s->red != MD_REDUCE_NONE) {
        double sum = md__cpu_sum(md_f32(wl), E), v;
        if (s->red == MD_REDUCE_SUM) {
            s->scale = 1.0f;
            v = sum;
        } else if (avg_factor >= 0) {
            s->scale = (float)(1.0 / (avg_factor + FLT_EPSILON));
            v = sum / (avg_factor + FLT_EPSILON);
        } else {
            s->scale = E ? (float)(1.0 / (double)E) : NAN;
            v = E ? sum / (double)E : NAN;
        }
        if (E == 0 && empty_is_zero) v = 0.0;
        out = md_tensor_scalar(ctx, (float)v);
        if (!out) return NULL;
    }
    md_node *node = md_autograd_record(ctx, out, ins, nin, loss_backward, op);
    if (node) {
        loss_saved *sv = md_node_save(ctx, node, sizeof *sv);
        if (!sv) return NULL;
        *sv = *s;
    }
    return out;
}

MD_API md_tensor *md_weight_reduce_loss(md_ctx *ctx, md_tensor *loss, md_tensor *weight, md_reduction red,
                                        double avg_factor) {
    static const char *op = "weight_reduce_loss";
    if (!loss) return NULL;
    char sl[96];
    if (!md__on_cpu(ctx, op, loss, "loss") || !md__on_cpu(ctx, op, weight, "weight")) return NULL;
    if (!check_reduction(ctx, op, red, avg_factor)) return NULL;
    if (loss->dtype != MD_F32)
        return md_op_fail(ctx, op, "loss must be f32, got %s", md_tensor_describe(loss, sl, sizeof sl));
    md_tensor *L = md__contig(ctx, loss);
    if (!L) return NULL;
    bool ok;
    loss_saved s = { .kind = K_REDUCE, .red = red, .x = L };
    s.w = expand_weight(ctx, op, weight, L->ndim, L->shape, &ok);
    if (!ok) return NULL;
    s.y = weight;
    md_tensor *ins[2] = { loss, weight };
    return finish(ctx, op, &s, L, avg_factor, false, ins, weight ? 2 : 1);
}

static bool check_labels(md_ctx *ctx, const char *op, md_tensor *labels, int64_t n, const char *need) {
    char sl[96];
    if (!md__on_cpu(ctx, op, labels, "labels")) return false;
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
    if (!md__on_cpu(ctx, op, logits, "logits") || !md__on_cpu(ctx, op, weight, "weight") ||
        !md__on_cpu(ctx, op, class_weight, "class_weight"))
        return NULL;
    if (!check_reduction(ctx, op, red, avg_factor)) return NULL;
    if (logits->dtype != MD_F32 || logits->ndim != 2)
        return md_op_fail(ctx, op, "logits must be f32 [N, C], got %s", md_tensor_describe(logits, sx, sizeof sx));
    int64_t n = logits->shape[0], c = logits->shape[1];
    if (!check_labels(ctx, op, labels, n, "one class index per row")) return NULL;
    if (class_weight && (class_weight->dtype != MD_F32 || class_weight->ndim != 1 || class_weight->shape[0] != c))
        return md_op_fail(ctx, op, "class_weight must be f32 [%lld] for logits %s, got %s", (long long)c,
                          md_tensor_describe(logits, sx, sizeof sx),
                          md_tensor_describe(class_weight, sc, sizeof sc));
    md_tensor *x = md__contig(ctx, logits), *lb = md__contig(ctx, labels);
    md_tensor *cw = class_weight ? md__contig(ctx, class_weight) : NULL;
    if (!x || !lb || (class_weight && !cw)) return NULL;
    const int64_t *lp = md_i64(lb);
    for (int64_t i = 0; i < n; i++)
        if (lp[i] != ignore_index && (lp[i] < 0 || lp[i] >= c))
            return md_op_fail(ctx, op, "label %lld of row %lld is out of range [0, %lld) for logits %s "
                              "(ignore_index %lld)", (long long)lp[i], (long long)i, (long long)c,
                              md_tensor_describe(logits, sx, sizeof sx), (long long)ignore_index);
    md_tensor *L = md_tensor_empty(ctx, MD_F32, MD_DIMS(n));
    if (!L) return NULL;
    const float *cwp = cw ? md_f32(cw) : NULL;
    md__cpu_ce_forward(md_f32(x), lp, cwp, n, c, ignore_index, md_f32(L));
    bool ok;
    loss_saved s = { .kind = K_CE, .red = red, .x = x, .aux = cwp, .lab = lp, .n = n, .c = c,
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
    if (!md__on_cpu(ctx, op, pred, "pred") || !md__on_cpu(ctx, op, target, "target") || !md__on_cpu(ctx, op, weight, "weight"))
        return NULL;
    if (!check_reduction(ctx, op, red, avg_factor)) return NULL;
    if (pred->dtype != MD_F32 || target->dtype != MD_F32 || !md_tensor_same_shape(pred, target))
        return md_op_fail(ctx, op, "pred and target must be f32 of the same shape, got %s and %s",
                          md_tensor_describe(pred, sp, sizeof sp), md_tensor_describe(target, st, sizeof st));
    md_tensor *x = md__contig(ctx, pred), *t = md__contig(ctx, target);
    if (!x || !t) return NULL;
    int64_t E = md_tensor_numel(x);
    bool ok;
    const float *w = expand_weight(ctx, op, weight, x->ndim, x->shape, &ok);
    if (!ok) return NULL;
    /* mmdet masks out elements whose label is negative (ignore_index -100):
     * weight = weight * (label >= 0). */
    const float *tp = md_f32(t);
    bool any_neg = false;
    for (int64_t e = 0; e < E && !any_neg; e++) any_neg = tp[e] < 0;
    if (any_neg) {
        float *m = md_ctx_alloc(ctx, sizeof(float) * (size_t)E);
        if (!m) return NULL;
        for (int64_t e = 0; e < E; e++) m[e] = (tp[e] >= 0 ? 1.0f : 0.0f) * (w ? w[e] : 1.0f);
        w = m;
    }
    md_tensor *L = md_tensor_empty(ctx, MD_F32, x->ndim, x->shape);
    if (!L) return NULL;
    md__cpu_bce_forward(md_f32(x), tp, E, md_f32(L));
    loss_saved s = { .kind = K_BCE, .red = red, .x = x, .y = t, .w = w };
    md_tensor *ins[1] = { pred };
    return finish(ctx, op, &s, L, avg_factor, false, ins, 1);
}

MD_API md_tensor *md_loss_sigmoid_focal(md_ctx *ctx, md_tensor *pred, md_tensor *labels, md_tensor *weight,
                                        double gamma, double alpha, md_reduction red, double avg_factor) {
    static const char *op = "sigmoid_focal_loss";
    if (!pred || !labels) return NULL;
    char sp[96], sw[96];
    if (!md__on_cpu(ctx, op, pred, "pred") || !md__on_cpu(ctx, op, weight, "weight")) return NULL;
    if (!check_reduction(ctx, op, red, avg_factor)) return NULL;
    if (pred->dtype != MD_F32 || pred->ndim != 2)
        return md_op_fail(ctx, op, "pred must be f32 [N, C] logits, got %s", md_tensor_describe(pred, sp, sizeof sp));
    int64_t n = pred->shape[0], c = pred->shape[1];
    if (!check_labels(ctx, op, labels, n, "in [0, C], C = background")) return NULL;
    md_tensor *x = md__contig(ctx, pred), *lb = md__contig(ctx, labels);
    if (!x || !lb) return NULL;
    const int64_t *lp = md_i64(lb);
    for (int64_t i = 0; i < n; i++)
        if (lp[i] < 0 || lp[i] > c)
            return md_op_fail(ctx, op, "label %lld of row %lld is out of range [0, %lld] for pred %s "
                              "(%lld = background)", (long long)lp[i], (long long)i, (long long)c,
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
    bool ok;
    const float *w = expand_weight(ctx, op, wp, 2, x->shape, &ok);
    if (!ok) return NULL;
    md_tensor *L = md_tensor_empty(ctx, MD_F32, MD_DIMS(n, c));
    if (!L) return NULL;
    md__cpu_focal_forward(md_f32(x), lp, n, c, (float)gamma, (float)alpha, md_f32(L));
    loss_saved s = { .kind = K_FOCAL, .red = red, .x = x, .w = w, .lab = lp, .n = n, .c = c,
                     .p1 = (float)gamma, .p2 = (float)alpha };
    md_tensor *ins[1] = { pred };
    return finish(ctx, op, &s, L, avg_factor, false, ins, 1);
}

static md_tensor *regression_loss(md_ctx *ctx, const char *op, loss_kind kind, md_tensor *pred, md_tensor *target,
                                  md_tensor *weight, double beta, md_reduction red, double avg_factor) {
    if (!pred || !target) return NULL;
    char sp[96], st[96];
    if (!md__on_cpu(ctx, op, pred, "pred") || !md__on_cpu(ctx, op, target, "target") || !md__on_cpu(ctx, op, weight, "weight"))
        return NULL;
    if (!check_reduction(ctx, op, red, avg_factor)) return NULL;
    if (kind == K_SL1 && !(beta > 0))
        return md_op_fail(ctx, op, "beta %g must be > 0 (mmdet asserts it)", beta);
    if (pred->dtype != MD_F32 || target->dtype != MD_F32 || !md_tensor_same_shape(pred, target))
        return md_op_fail(ctx, op, "pred and target must be f32 of the same shape, got %s and %s",
                          md_tensor_describe(pred, sp, sizeof sp), md_tensor_describe(target, st, sizeof st));
    md_tensor *x = md__contig(ctx, pred), *t = md__contig(ctx, target);
    if (!x || !t) return NULL;
    bool ok;
    const float *w = expand_weight(ctx, op, weight, x->ndim, x->shape, &ok);
    if (!ok) return NULL;
    md_tensor *L = md_tensor_empty(ctx, MD_F32, x->ndim, x->shape);
    if (!L) return NULL;
    int64_t E = md_tensor_numel(x);
    if (kind == K_SL1) md__cpu_smooth_l1_forward(md_f32(x), md_f32(t), E, (float)beta, md_f32(L));
    else md__cpu_l1_forward(md_f32(x), md_f32(t), E, md_f32(L));
    loss_saved s = { .kind = kind, .red = red, .x = x, .y = t, .w = w, .p1 = (float)beta };
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

MD_API md_tensor *md_loss_giou(md_ctx *ctx, md_tensor *pred, md_tensor *target, md_tensor *weight, double eps,
                               md_reduction red, double avg_factor) {
    static const char *op = "giou_loss";
    if (!pred || !target) return NULL;
    char sp[96], st[96];
    if (!md__on_cpu(ctx, op, pred, "pred") || !md__on_cpu(ctx, op, target, "target") || !md__on_cpu(ctx, op, weight, "weight"))
        return NULL;
    if (!check_reduction(ctx, op, red, avg_factor)) return NULL;
    if (pred->dtype != MD_F32 || pred->ndim != 2 || pred->shape[1] != 4 || !md_tensor_same_shape(pred, target) ||
        target->dtype != MD_F32)
        return md_op_fail(ctx, op, "pred and target must be f32 [N, 4] boxes of the same shape, got %s and %s",
                          md_tensor_describe(pred, sp, sizeof sp), md_tensor_describe(target, st, sizeof st));
    int64_t n = pred->shape[0];
    md_tensor *x = md__contig(ctx, pred), *t = md__contig(ctx, target);
    if (!x || !t) return NULL;
    const float *w = NULL;
    if (weight) {
        char sw[96];
        bool per_box = weight->ndim == 1 && weight->shape[0] == n;
        bool per_coord = md_tensor_same_shape(weight, pred);
        if (weight->dtype != MD_F32 || (!per_box && !per_coord))
            return md_op_fail(ctx, op, "weight %s must be f32 [N] or [N, 4] for pred %s",
                              md_tensor_describe(weight, sw, sizeof sw), md_tensor_describe(pred, sp, sizeof sp));
        md_tensor *wc = md__contig(ctx, weight);
        if (!wc) return NULL;
        const float *wp = md_f32(wc);
        bool any_pos = false;
        for (int64_t i = 0; i < md_tensor_numel(wc) && !any_pos; i++) any_pos = wp[i] > 0;
        if (!any_pos) {
            /* mmdet's GIoULoss: no positive weight returns (pred * weight).sum()
             * (a scalar whatever the reduction), keeping garbage boxes out of
             * the graph. */
            float *wb = md_ctx_alloc(ctx, sizeof(float) * (size_t)(n ? 4 * n : 1));
            if (!wb) return NULL;
            for (int64_t e = 0; e < 4 * n; e++) wb[e] = per_coord ? wp[e] : wp[e / 4];
            md_tensor *prod = md_tensor_empty(ctx, MD_F32, MD_DIMS(n, 4));
            if (!prod) return NULL;
            for (int64_t e = 0; e < 4 * n; e++) md_f32(prod)[e] = md_f32(x)[e] * wb[e];
            loss_saved s = { .kind = K_GIOU_NOPOS, .red = MD_REDUCE_SUM, .x = x, .y = t, .aux = wb, .n = n };
            md_tensor *ins[1] = { pred };
            return finish(ctx, op, &s, prod, MD_NO_AVG, false, ins, 1);
        }
        if (per_coord) {   /* mmdet: weight.mean(-1) */
            float *wm = md_ctx_alloc(ctx, sizeof(float) * (size_t)(n ? n : 1));
            if (!wm) return NULL;
            for (int64_t i = 0; i < n; i++)
                wm[i] = (wp[4 * i] + wp[4 * i + 1] + wp[4 * i + 2] + wp[4 * i + 3]) / 4.0f;
            wp = wm;
        }
        w = wp;
    }
    md_tensor *L = md_tensor_empty(ctx, MD_F32, MD_DIMS(n));
    if (!L) return NULL;
    md__cpu_giou_forward(md_f32(x), md_f32(t), n, (float)eps, md_f32(L));
    loss_saved s = { .kind = K_GIOU, .red = red, .x = x, .y = t, .w = w, .n = n, .p2 = (float)eps };
    md_tensor *ins[2] = { pred, target };
    return finish(ctx, op, &s, L, avg_factor, false, ins, 2);
}
