/* Rules the loss plugins share (mmdet's IoU-family weight rules, the
 * DIoU/CIoU terms, box checks), once in the library (losses.h). */
#include <math.h>
#include <stdio.h>
#include "internal.h"
#include <mmdet/losses.h>

/* A key the schema bounds at >= 0 that must not be 0 either (mmdet divides
 * by it or asserts it): the error names the file and line, like the
 * schema's own bound errors. 0 or -1. */
MD_API int md_loss_need_positive(const md_cfg *cfg, const char *key, double v, const char *type,
                          md_error *err) {
    if (v > 0) return 0;
    const md_cfg *n = md_cfg_get(cfg, key);
    const char *file = md_cfg_file(n);
    char where[512] = "<config>";
    if (file && md_cfg_line(n) > 0) snprintf(where, sizeof where, "%s:%d", file, md_cfg_line(n));
    else if (file) snprintf(where, sizeof where, "%s", file);
    return md_failc(err, MD_ERR_CONFIG, "%s: %s in %s is %g; it must be > 0", where, key, type, v);
}

/* pred and target: f32 [N, 4] boxes (x1, y1, x2, y2) of one shape. */
MD_API bool md_loss_boxes_ok(md_ctx *ctx, const char *op, const md_tensor *pred, const md_tensor *target) {
    if (pred->dtype == MD_F32 && target->dtype == MD_F32 && pred->ndim == 2 && pred->shape[1] == 4 &&
        md_tensor_same_shape(pred, target))
        return true;
    char sp[96], st[96];
    md_op_fail(ctx, op, "pred and target must be f32 [N, 4] boxes of the same shape, got %s and %s",
               md_tensor_describe(pred, sp, sizeof sp), md_tensor_describe(target, st, sizeof st));
    return false;
}

/* mmdet's IoU-family weight rules (IoULoss, GIoULoss, DIoULoss, CIoULoss
 * forward): a weight is [N] or [N, 4], the latter averaged over the last
 * dim; and when a weight is given and no value of it is positive (no rows
 * included), the loss is (pred * weight).sum(), a zero for zero weights that
 * keeps pred on the graph, whatever the reduction and not times loss_weight.
 * `nopos_rule` false skips that rule (IoULoss with reduction "none").
 * Returns true when the rule decided the loss: *out (NULL after an op
 * error). Otherwise *w is the per-box weight [N] or NULL. The positivity
 * test reads the weight on the host (a device weight is copied). */
MD_API bool md_loss_box_weight(md_ctx *ctx, const char *op, md_tensor *pred, md_tensor *weight,
                        bool nopos_rule, md_tensor **w, md_tensor **out) {
    *w = NULL;
    *out = NULL;
    if (!weight) return false;
    int64_t n = pred->shape[0];
    bool per_box = weight->ndim == 1 && weight->shape[0] == n;
    if (weight->dtype != MD_F32 || (!per_box && !md_tensor_same_shape(weight, pred))) {
        char sw[96], sp[96];
        md_op_fail(ctx, op, "weight %s must be f32 [N] or [N, 4] for pred %s", md_tensor_describe(weight, sw, sizeof sw),
                   md_tensor_describe(pred, sp, sizeof sp));
        return true;
    }
    if (nopos_rule) {
        md_tensor *h = md_contiguous(ctx, md_tensor_to(ctx, md_tensor_detach(ctx, weight), MD_DEVICE_CPU));
        if (!h) return true;
        bool any_pos = false;
        for (int64_t i = 0; i < md_tensor_numel(h) && !any_pos; i++) any_pos = md_f32(h)[i] > 0;
        if (!any_pos) {
            md_tensor *wv = per_box ? md_unsqueeze(ctx, weight, 1) : weight;
            *out = md_sum(ctx, md_mul(ctx, pred, wv), MD_DIM_ALL, false);
            return true;
        }
    }
    *w = per_box ? weight : md_mean(ctx, weight, -1, false);
    return *w == NULL;
}

/* max(a, b) and min(a, b) element-wise (torch.max / torch.min of two
 * tensors) as where(a >= b, a, b): the values exactly; at a tie the
 * gradient goes to a (PyTorch splits it in halves). */
MD_API md_tensor *md_loss_maximum(md_ctx *ctx, md_tensor *a, md_tensor *b) {
    return md_where(ctx, md_ge(ctx, a, b), a, b);
}
MD_API md_tensor *md_loss_minimum(md_ctx *ctx, md_tensor *a, md_tensor *b) {
    return md_where(ctx, md_le(ctx, a, b), a, b);
}

/* Column k of boxes [N, 4], as [N]. */
MD_API md_tensor *md_loss_col(md_ctx *ctx, md_tensor *boxes, int k) {
    return md_squeeze(ctx, md_slice(ctx, boxes, 1, k, k + 1, 1), 1);
}

/* The terms of mmdet's diou_loss and ciou_loss, in its order of operations:
 * ious = overlap / (area_p + area_t - overlap + eps), the squared distance
 * of the centres rho2 and the squared diagonal of the enclosing box
 * c2 (+ eps), each [N]. False after an op error. */
MD_API bool md_loss_diou_terms(md_ctx *ctx, md_tensor *pred, md_tensor *target, double eps, md_tensor **ious,
                        md_tensor **rho2, md_tensor **c2) {
    md_tensor *p[4], *t[4];
    for (int k = 0; k < 4; k++) {
        p[k] = md_loss_col(ctx, pred, k);
        t[k] = md_loss_col(ctx, target, k);
    }
    /* overlap */
    md_tensor *iw = md_clamp(ctx, md_sub(ctx, md_loss_minimum(ctx, p[2], t[2]), md_loss_maximum(ctx, p[0], t[0])), 0, INFINITY);
    md_tensor *ih = md_clamp(ctx, md_sub(ctx, md_loss_minimum(ctx, p[3], t[3]), md_loss_maximum(ctx, p[1], t[1])), 0, INFINITY);
    md_tensor *overlap = md_mul(ctx, iw, ih);
    /* union */
    md_tensor *ap = md_mul(ctx, md_sub(ctx, p[2], p[0]), md_sub(ctx, p[3], p[1]));
    md_tensor *ag = md_mul(ctx, md_sub(ctx, t[2], t[0]), md_sub(ctx, t[3], t[1]));
    md_tensor *uni = md_add_scalar(ctx, md_sub(ctx, md_add(ctx, ap, ag), overlap), eps);
    *ious = md_div(ctx, overlap, uni);
    /* enclosing box */
    md_tensor *cw = md_clamp(ctx, md_sub(ctx, md_loss_maximum(ctx, p[2], t[2]), md_loss_minimum(ctx, p[0], t[0])), 0, INFINITY);
    md_tensor *ch = md_clamp(ctx, md_sub(ctx, md_loss_maximum(ctx, p[3], t[3]), md_loss_minimum(ctx, p[1], t[1])), 0, INFINITY);
    *c2 = md_add_scalar(ctx, md_add(ctx, md_pow_scalar(ctx, cw, 2.0), md_pow_scalar(ctx, ch, 2.0)), eps);
    /* centre distance: ((t1 + t2) - (p1 + p2))^2 / 4 per axis */
    md_tensor *dx = md_sub(ctx, md_add(ctx, t[0], t[2]), md_add(ctx, p[0], p[2]));
    md_tensor *dy = md_sub(ctx, md_add(ctx, t[1], t[3]), md_add(ctx, p[1], p[3]));
    *rho2 = md_add(ctx, md_mul_scalar(ctx, md_pow_scalar(ctx, dx, 2.0), 0.25),
                   md_mul_scalar(ctx, md_pow_scalar(ctx, dy, 2.0), 0.25));
    return *ious && *c2 && *rho2;
}
