/* mmdet's CrossEntropyLoss (mmdet/models/losses/cross_entropy_loss.py).
 *
 * Softmax (use_sigmoid = false): logits [N, C] against labels i64 [N];
 * labels equal to ignore_index (None: -100) count 0, and with
 * avg_non_ignore a mean divides by the number of the other labels.
 *
 * Sigmoid (use_sigmoid = true): mmdet's binary_cross_entropy. Labels i64
 * [N] for pred [N, C] become one-hot targets [N, C] (label C, background,
 * or any label outside [0, C): all zeros), the weight [N] spreads over the
 * classes and rows whose label is negative or ignore_index weigh 0; for an
 * RPN pred may be [N] (C = 1: label 0 is the object, label 1 background).
 * A float target of pred's shape is taken as is (elements below 0 or equal
 * to ignore_index weigh 0). class_weight is BCE's pos_weight there.
 *
 * Mask (use_mask = true): mmdet's mask_cross_entropy. pred [N, C, H, W]
 * logits, target f32 [N, H, W] and, in the weight's place (where mmdet's
 * mask heads pass them), the labels i64 [N]: the BCE with logits of
 * channel labels[i] of each RoI against its target, averaged over every
 * element (reduction mean, no avg_factor, as mmdet asserts). */
#include <math.h>
#include <stdlib.h>
#include <mmdet/mmdet.h>

typedef struct ce_loss {
    md_loss base;
    bool use_sigmoid, use_mask, avg_non_ignore;
    const md_cfg *class_weight_cfg, *ignore_cfg;   /* None: NULL */
    int64_t ignore_index;                          /* ignore_cfg, or mmdet's -100 for None */
    int n_class_weight;
    float *class_weight;
} ce_loss;

static const md_key keys[] = {
    { "use_sigmoid", MD_KEY_BOOL, "false", "binary cross-entropy per class instead of a softmax", false,
      MD_AT(ce_loss, use_sigmoid) },
    { "use_mask", MD_KEY_BOOL, "false", "mask cross-entropy: the BCE of each RoI's label channel (mask heads)", false, MD_AT(ce_loss, use_mask) },
    MD_LOSS_KEYS("1.0"),
    { "class_weight", MD_KEY_LIST, "None", "weight of each class (sigmoid: BCE's pos_weight)", false,
      MD_AT(ce_loss, class_weight_cfg) },
    { "ignore_index", MD_KEY_INT, "None", "label that counts 0 (None: -100)", false, MD_AT(ce_loss, ignore_cfg) },
    { "avg_non_ignore", MD_KEY_BOOL, "false", "a mean counts only the labels not ignored", false,
      MD_AT(ce_loss, avg_non_ignore) },
    { 0 } };

/* A CPU copy of t's values (labels or targets may live on a device). */
static md_tensor *host(md_ctx *ctx, md_tensor *t) {
    return md_contiguous(ctx, md_tensor_to(ctx, md_tensor_detach(ctx, t), MD_DEVICE_CPU));
}

/* Non-zeros of a u8 mask, counted on the host; -1 after an op error. */
static double count_nonzero(md_ctx *ctx, md_tensor *mask) {
    md_tensor *h = host(ctx, mask);
    if (!h) return -1;
    int64_t k = 0;
    for (int64_t i = 0; i < md_tensor_numel(h); i++) k += md_u8(h)[i] != 0;
    return (double)k;
}

static md_tensor *softmax_ce(md_ctx *ctx, const ce_loss *c, md_tensor *pred, md_tensor *labels, md_tensor *weight,
                             md_tensor *cw, md_reduction red, double avg) {
    if (avg < 0 && c->avg_non_ignore && red == MD_REDUCE_MEAN && labels->dtype == MD_I64) {
        avg = count_nonzero(ctx, md_logical_not(ctx, md_eq_scalar(ctx, labels, (double)c->ignore_index)));
        if (avg < 0) return NULL;
    }
    return md_loss_cross_entropy(ctx, pred, labels, weight, cw, red, avg, c->ignore_index);
}

/* torch's binary_cross_entropy_with_logits with pos_weight p, element-wise:
 * (1 - t) x + (1 + (p - 1) t) (log(e^-m + e^(-x - m)) + m), m = max(-x, 0),
 * in its order of operations; then weighted and reduced. */
static md_tensor *bce_pos_weight(md_ctx *ctx, md_tensor *x, md_tensor *t, md_tensor *w, md_tensor *p,
                                 md_reduction red, double avg) {
    md_tensor *m = md_clamp(ctx, md_neg(ctx, x), 0, INFINITY);
    md_tensor *sp = md_add(ctx, md_log(ctx, md_add(ctx, md_exp(ctx, md_neg(ctx, m)),
                                                   md_exp(ctx, md_sub(ctx, md_neg(ctx, x), m)))), m);
    md_tensor *lw = md_add_scalar(ctx, md_mul(ctx, md_add_scalar(ctx, p, -1.0), t), 1.0);
    md_tensor *loss = md_add(ctx, md_mul(ctx, md_add_scalar(ctx, md_neg(ctx, t), 1.0), x), md_mul(ctx, lw, sp));
    return md_weight_reduce_loss(ctx, loss, w, red, avg);
}

static md_tensor *sigmoid_ce(md_ctx *ctx, const ce_loss *c, md_tensor *pred, md_tensor *target, md_tensor *weight,
                             md_tensor *cw, md_reduction red, double avg) {
    char sp[96], st[96], sw[96];
    md_tensor *x = pred, *t = target, *w = weight;
    bool made_w = target->dtype == MD_I64;   /* w computed here (NULL: an op failed) */
    bool count = avg < 0 && c->avg_non_ignore && red == MD_REDUCE_MEAN;
    double ignore = (double)c->ignore_index;
    if (target->dtype == MD_I64) {
        if (target->ndim != 1 || pred->ndim < 1 || pred->ndim > 2 || pred->shape[0] != target->shape[0])
            return md_op_fail(ctx, "CrossEntropyLoss", "labels %s must be i64 [N] for pred %s ([N, C], or [N] with C = 1)",
                              md_tensor_describe(target, st, sizeof st), md_tensor_describe(pred, sp, sizeof sp));
        int64_t n = target->shape[0];
        if (weight && md_tensor_numel(weight) != n)
            return md_op_fail(ctx, "CrossEntropyLoss", "weight %s must have one value per label (%lld) for pred %s",
                              md_tensor_describe(weight, sw, sizeof sw), (long long)n,
                              md_tensor_describe(pred, sp, sizeof sp));
        if (pred->ndim == 1) x = md_unsqueeze(ctx, pred, 1);
        if (!x) return NULL;
        int64_t nc = x->shape[1];
        /* one-hot by comparing with the class indices where the labels are */
        md_tensor *classes = md_tensor_to(ctx, md_tensor_arange(ctx, MD_I64, nc), md_tensor_device(target));
        t = md_cast(ctx, md_eq(ctx, md_unsqueeze(ctx, target, 1), classes), MD_F32);
        md_tensor *valid = md_logical_and(ctx, md_ge_scalar(ctx, target, 0),
                                          md_logical_not(ctx, md_eq_scalar(ctx, target, ignore)));
        md_tensor *vf = md_cast(ctx, valid, MD_F32);
        w = weight ? md_mul(ctx, md_reshape(ctx, weight, MD_DIMS(n)), vf) : vf;
        w = md_unsqueeze(ctx, w, 1);   /* [N, 1]: the same for every class */
        if (count) {
            avg = count_nonzero(ctx, valid);
            if (avg < 0) return NULL;
            avg *= (double)nc;   /* mmdet counts the expanded [N, C] mask */
        }
    } else {
        if (target->dtype != MD_F32 || !md_tensor_same_shape(target, pred))
            return md_op_fail(ctx, "CrossEntropyLoss", "target %s must be i64 labels [N] or f32 of pred's shape %s",
                              md_tensor_describe(target, st, sizeof st), md_tensor_describe(pred, sp, sizeof sp));
        /* md_loss_bce_with_logits weighs targets below 0 by 0 itself (-100
         * among them); other masks are made here */
        if (cw || c->ignore_index >= 0 || count) {
            md_tensor *valid = md_logical_and(ctx, md_ge_scalar(ctx, target, 0),
                                              md_logical_not(ctx, md_eq_scalar(ctx, target, ignore)));
            md_tensor *vf = md_cast(ctx, valid, MD_F32);
            if (cw || c->ignore_index >= 0) {
                w = weight ? md_mul(ctx, weight, vf) : vf;
                made_w = true;
            }
            if (count && (avg = count_nonzero(ctx, valid)) < 0) return NULL;
        }
    }
    if (!x || !t || (!w && made_w)) return NULL;
    md_tensor *loss = cw ? bce_pos_weight(ctx, x, t, w, cw, red, avg) : md_loss_bce_with_logits(ctx, x, t, w, red, avg);
    /* pred [N]: the element-wise loss back to [N] */
    if (loss && red == MD_REDUCE_NONE && x != pred) loss = md_reshape(ctx, loss, pred->ndim, pred->shape);
    return loss;
}

static md_tensor *mask_ce(md_ctx *ctx, md_tensor *pred, md_tensor *target, md_tensor *labels, md_reduction red,
                          double avg) {
    char sp[96], st[96], sl[96];
    if (!labels || labels->dtype != MD_I64 || labels->ndim != 1 || pred->ndim != 4 || target->ndim != 3 ||
        labels->shape[0] != pred->shape[0] || target->shape[0] != pred->shape[0] ||
        target->shape[1] != pred->shape[2] || target->shape[2] != pred->shape[3])
        return md_op_fail(ctx, "CrossEntropyLoss(use_mask)", "pred %s, target %s and labels %s must be [N, C, H, W], "
                          "[N, H, W] and i64 [N]", md_tensor_describe(pred, sp, sizeof sp),
                          md_tensor_describe(target, st, sizeof st),
                          labels ? md_tensor_describe(labels, sl, sizeof sl) : "None");
    if (red != MD_REDUCE_MEAN || avg >= 0)
        return md_op_fail(ctx, "CrossEntropyLoss(use_mask)", "only reduction mean without avg_factor (mmdet asserts it)");
    int64_t n = pred->shape[0], nc = pred->shape[1];
    /* pred[i, labels[i]] as rows of pred viewed [N * C, H, W] */
    md_tensor *lab = host(ctx, labels), *sel = md_tensor_empty(ctx, MD_I64, MD_DIMS(n));
    if (!lab || !sel) return NULL;
    for (int64_t i = 0; i < n; i++) {
        int64_t l = md_i64(lab)[i];
        if (l < 0 || l >= nc)
            return md_op_fail(ctx, "CrossEntropyLoss(use_mask)", "label %lld of RoI %lld outside [0, %lld)",
                              (long long)l, (long long)i, (long long)nc);
        md_i64(sel)[i] = i * nc + l;
    }
    md_tensor *x = md_reshape(ctx, pred, MD_DIMS(n * nc, pred->shape[2], pred->shape[3]));
    x = md_index_select(ctx, x, 0, md_tensor_to(ctx, sel, md_tensor_device(pred)));
    return x ? md_loss_bce_with_logits(ctx, x, target, NULL, MD_REDUCE_MEAN, MD_NO_AVG) : NULL;
}

static md_tensor *forward(md_ctx *ctx, const md_loss *l, md_tensor *pred, md_tensor *target, md_tensor *weight,
                          double avg, int reduction) {
    const ce_loss *c = (const ce_loss *)l;
    if (!pred || !target) return NULL;
    md_reduction red = md_loss_reduction(l, reduction);
    if (c->use_mask) return md_loss_scale(ctx, l, mask_ce(ctx, pred, target, weight, red, avg));
    md_tensor *cw = NULL;
    if (c->class_weight) {
        cw = md_tensor_to(ctx, md_tensor_from(ctx, MD_F32, MD_DIMS(c->n_class_weight), c->class_weight),
                          md_tensor_device(pred));
        if (!cw) return NULL;
    }
    md_tensor *loss = c->use_sigmoid ? sigmoid_ce(ctx, c, pred, target, weight, cw, red, avg)
                                     : softmax_ce(ctx, c, pred, target, weight, cw, red, avg);
    return md_loss_scale(ctx, l, loss);
}

static void destroy(md_loss *l) { free(((ce_loss *)l)->class_weight); }

static const md_loss_iface iface = { .forward = forward, .destroy = destroy };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    ce_loss *c = (ce_loss *)md_loss_new(sizeof *c, &iface, "CrossEntropyLoss", cfg, keys, err);
    if (!c) return NULL;
    if (c->use_mask && (c->use_sigmoid || c->class_weight_cfg)) {
        md_failc(err, MD_ERR_CONFIG, "use_mask = true goes with use_sigmoid = false and class_weight = None");
        goto fail;
    }
    c->ignore_index = c->ignore_cfg ? md_cfg_as_int(c->ignore_cfg) : -100;
    if (c->class_weight_cfg) {
        int n = md_cfg_kind(c->class_weight_cfg) == MD_CFG_LIST ? md_cfg_len(c->class_weight_cfg) : 1;
        double *v = n > 0 ? malloc(sizeof *v * (size_t)n) : NULL;
        c->class_weight = n > 0 ? malloc(sizeof *c->class_weight * (size_t)n) : NULL;
        if (n == 0) {
            free(v);
            md_failc(err, MD_ERR_CONFIG, "class_weight is an empty list (None for no class weights)");
            goto fail;
        }
        if (!v || !c->class_weight) {
            free(v);
            md_failc(err, MD_ERR_NOMEM, "out of memory");
            goto fail;
        }
        int got = md_cfg_float_array(cfg, "class_weight", v, n, err);
        for (int i = 0; i < got; i++) c->class_weight[i] = (float)v[i];
        free(v);
        if (got != n) goto fail;
        c->n_class_weight = n;
    }
    if (c->ignore_cfg && !c->avg_non_ignore && c->base.reduction == MD_REDUCE_MEAN)
        md_warn(ctx, "CrossEntropyLoss: with ignore_index and avg_non_ignore = false a mean counts the ignored "
                     "labels too; set avg_non_ignore = true to average over the others (as PyTorch)");
    if (c->use_sigmoid) c->base.flags = MD_LOSS_SIGMOID;
    if (c->use_mask) c->base.flags = MD_LOSS_MASK;
    return c;
fail:
    md_loss_free(&c->base);
    return NULL;
}

static const md_class cls = { .name = "CrossEntropyLoss", .keys = keys, .build = build,
                              MD_IFACE(&iface, MD_IFACE_LOSS),
                              .doc = "softmax cross-entropy, binary cross-entropy per class (use_sigmoid) or per mask (use_mask)" };
MD_PLUGIN("cross_entropy_loss", "1.0", "Apache-2.0");
MD_REGISTER("losses", cls)
