/* mmdet's RetinaHead on AnchorHead (mmdet/models/dense_heads/retina_head.py,
 * anchor_head.py, base_dense_head.py):
 *   forward: stacked_convs 3x3 ConvModules (ReLU) per branch, then retina_cls
 *            (A * C sigmoid logits) and retina_reg (A * 4 deltas);
 *   loss:    anchors -> valid/inside flags -> assigner -> sampler -> targets,
 *            FocalLoss (or another loss_cls) and L1 / SmoothL1 on encoded
 *            deltas, or with reg_decoded_bbox GIoU / IoU / L1 on the decoded
 *            boxes against the gt boxes, averaged over num_total_pos
 *            (num_total_pos + neg with a real sampler); mmdet's per-level
 *            losses summed into one value each (what mmdet logs as
 *            loss_cls / loss_bbox);
 *   test:    per level top nms_pre of the sigmoid scores above score_thr,
 *            decode, rescale, class-wise batched NMS, max_per_img.
 * Parts (anchor generator, coder, assigner, sampler) are built by type
 * through their registries. State dict: cls_convs.N.conv.*, reg_convs.N.conv.*
 * (plus cls_convs.N.gn.* or .bn.* with a norm_cfg, the conv then without
 * bias), retina_cls.*, retina_reg.*. With BN, one BN per stacked conv is
 * shared by the levels, each call normalising with its own statistics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>

static const md_key keys[] = {
    { "num_classes", MD_KEY_INT, NULL, "object classes (no background)", true },
    { "in_channels", MD_KEY_INT, NULL, "channels of every input level", true },
    { "stacked_convs", MD_KEY_INT, "4", "3x3 convs per branch", false },
    { "feat_channels", MD_KEY_INT, "256", "channels of the branch convs", false },
    { "conv_cfg", MD_KEY_ANY, "None", "only None", false },
    { "norm_cfg", MD_KEY_ANY, "None", "None, { type = \"GN\"; num_groups = 32; } or { type = \"BN\"; } for the stacked convs", false },
    { "anchor_generator", MD_KEY_GROUP, NULL, "prior generator config", true },
    { "bbox_coder", MD_KEY_GROUP, NULL, "box coder config", true },
    { "reg_decoded_bbox", MD_KEY_BOOL, "false", "apply loss_bbox to decoded boxes against the gt boxes", false },
    { "loss_cls", MD_KEY_GROUP, NULL, "FocalLoss { use_sigmoid, gamma, alpha, loss_weight }", true },
    { "loss_bbox", MD_KEY_GROUP, NULL,
      "L1Loss, SmoothL1Loss { beta }, or with reg_decoded_bbox GIoULoss / IoULoss { eps, mode }; loss_weight", true },
    { "train_cfg", MD_KEY_ANY, "None", "assigner, sampler, allowed_border, pos_weight", false },
    { "test_cfg", MD_KEY_ANY, "None", "nms_pre, score_thr, nms.iou_threshold, max_per_img", false },
    { "init_cfg", MD_KEY_ANY, "None", "default: Normal std 0.01, retina_cls bias_prob 0.01", false },
    { 0 } };

enum { LOSS_FOCAL = 0, LOSS_L1, LOSS_SMOOTH_L1, LOSS_GIOU, LOSS_IOU };
enum { IOU_LOG = 0, IOU_LINEAR, IOU_SQUARE };   /* mmdet IoULoss modes */

typedef struct retina {
    md_module base;
    int num_classes, in_channels, feat_channels, stacked_convs, num_anchors;
    md_prior_generator *prior;
    md_bbox_coder *coder;
    md_bbox_assigner *assigner;
    md_bbox_sampler *sampler;
    bool sampling, has_train_cfg;
    double gamma, alpha, cls_weight, bbox_weight, beta, bbox_eps;
    int bbox_loss, iou_mode;
    bool reg_decoded_bbox;
    md_conv_module_opts norm;   /* norm_cfg of the stacked convs */
    int allowed_border;
    double pos_weight;
    /* test_cfg (min_bbox_size is read but unused, as in mmdet 2.28) */
    bool has_test_cfg;
    md_dense_test_cfg test;
} retina;

static const md_module_class list_class = { .name = "ModuleList" };

static md_tensor *call_item(md_ctx *ctx, md_module *m, const char *list, int i, md_tensor *x) {
    char name[16];
    snprintf(name, sizeof name, "%d", i);
    md_scope_push(ctx, list);
    x = md_module_call(ctx, md_module_child(m, list), name, x);
    md_scope_pop(ctx);
    return x;
}

/* Returns y, after handing back x (the input of the layer that made y)
 * unless x is the level's feature map, which belongs to the caller. */
static md_tensor *release_after(md_ctx *ctx, md_tensor *x, md_tensor *feat, md_tensor *y) {
    if (y && x != feat) md_tensor_release(ctx, x);
    return y;
}

static int head_forward(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, md_tensor **cls,
                        md_tensor **reg) {
    retina *h = (retina *)m;
    for (int l = 0; l < n; l++) {
        md_tensor *c = feats[l], *r = feats[l];
        /* each intermediate goes once read (the convs' backward keep theirs) */
        for (int i = 0; i < h->stacked_convs; i++) c = release_after(ctx, c, feats[l], call_item(ctx, m, "cls_convs", i, c));
        for (int i = 0; i < h->stacked_convs; i++) r = release_after(ctx, r, feats[l], call_item(ctx, m, "reg_convs", i, r));
        cls[l] = release_after(ctx, c, feats[l], md_module_call(ctx, m, "retina_cls", c));
        reg[l] = release_after(ctx, r, feats[l], md_module_call(ctx, m, "retina_reg", r));
    }
    return md_ctx_failed(ctx) ? -1 : 0;
}

/* Anchors of every level for the batch's feature sizes, concatenated, and
 * each level's anchor count. */
static md_tensor *all_anchors(md_ctx *ctx, retina *h, md_tensor *const *cls, int n, int64_t *counts) {
    md_tensor *lv[MD_MAX_LEVELS];
    if (n > h->prior->iface->num_levels(h->prior))
        return md_op_fail(ctx, "RetinaHead", "%d feature levels, the anchor generator has %d", n,
                          h->prior->iface->num_levels(h->prior));
    for (int l = 0; l < n; l++) {
        lv[l] = md_grid_priors(ctx, h->prior, l, cls[l]->shape[2], cls[l]->shape[3]);
        if (!lv[l]) return NULL;
        counts[l] = lv[l]->shape[0];
    }
    return md_cat(ctx, lv, n, 0);
}

/* [N, A*K, H, W] per level -> [N * T, K] in (image, level, y, x, anchor) order. */
static md_tensor *flatten_levels(md_ctx *ctx, md_tensor *const *x, int n, int64_t k) {
    md_tensor *parts[MD_MAX_LEVELS];
    static const int perm[4] = { 0, 2, 3, 1 };
    for (int l = 0; l < n; l++)
        parts[l] = md_reshape(ctx, md_permute(ctx, x[l], perm), MD_DIMS(x[l] ? x[l]->shape[0] : 0, -1, k));
    md_tensor *c = md_cat(ctx, parts, n, 1);
    return md_reshape(ctx, c, MD_DIMS(-1, k));
}

static md_tensor *boxes_tensor(md_ctx *ctx, const md_boxes *b) {
    return md_tensor_from(ctx, MD_F32, MD_DIMS(b ? b->n : 0, 4), b && b->n ? b->xyxy : NULL);
}

/* mmdet's loss_single with reg_decoded_bbox: the predicted deltas decoded
 * against their anchors (no max_shape in training), the loss taken against
 * the gt boxes in image coordinates. Only rows with a positive bbox weight
 * are decoded: the others carry weight 0 in mmdet (and GIoULoss/IoULoss
 * return 0 when no weight is positive), so the sum and the gradients are
 * the same; bbox_weights are 1 on the 4 coordinates of every positive, so
 * their mean(-1) is 1. Sums divide by `avg` as weight_reduce_loss does. */
static md_tensor *decoded_bbox_loss(md_ctx *ctx, retina *h, md_tensor *reg_all, md_tensor *anchors, md_tensor *bt,
                                    md_tensor *bw, int64_t N, int64_t T, double avg) {
    int64_t *rows = md_ctx_alloc(ctx, sizeof(int64_t) * (size_t)(N * T + 1)), *arows, P = 0;
    arows = md_ctx_alloc(ctx, sizeof(int64_t) * (size_t)(N * T + 1));
    if (!rows || !arows) return md_op_fail(ctx, "RetinaHead", "out of memory");
    for (int64_t r = 0; r < N * T; r++)
        if (md_f32(bw)[r * 4] > 0) {
            arows[P] = r % T;
            rows[P++] = r;
        }
    /* rows chosen on the host (bt, bw, anchors are CPU targets), gathered
     * where the predictions are */
    md_device dev = md_tensor_device(reg_all);
    md_tensor *ri = md_tensor_from(ctx, MD_I64, MD_DIMS(P), rows), *ai = md_tensor_from(ctx, MD_I64, MD_DIMS(P), arows);
    md_tensor *pred = md_index_select(ctx, reg_all, 0, md_tensor_to(ctx, ri, dev));
    md_tensor *target = md_tensor_to(ctx, md_index_select(ctx, bt, 0, ri), dev);
    md_tensor *anc = md_tensor_to(ctx, md_index_select(ctx, anchors, 0, ai), dev);
    md_tensor *boxes = md_bbox_decode(ctx, h->coder, anc, pred, NULL);
    if (!boxes || !target) return NULL;
    switch (h->bbox_loss) {
    case LOSS_GIOU: return md_loss_giou(ctx, boxes, target, NULL, h->bbox_eps, MD_REDUCE_MEAN, avg);
    case LOSS_L1: return md_loss_l1(ctx, boxes, target, NULL, MD_REDUCE_MEAN, avg);
    case LOSS_SMOOTH_L1: return md_loss_smooth_l1(ctx, boxes, target, NULL, h->beta, MD_REDUCE_MEAN, avg);
    default: break;
    }
    /* IoULoss: iou clamped below at eps, then -log, 1 - iou or 1 - iou^2 */
    if (P == 0) return md_mul_scalar(ctx, md_sum(ctx, pred, MD_DIM_ALL, false), 0.0);
    md_tensor *iou = md_clamp(ctx, md_bbox_overlaps(ctx, boxes, target, MD_IOU, true, 1e-6), h->bbox_eps, INFINITY);
    md_tensor *l = h->iou_mode == IOU_LOG      ? md_neg(ctx, md_log(ctx, iou))
                   : h->iou_mode == IOU_LINEAR ? md_add_scalar(ctx, md_neg(ctx, iou), 1.0)
                                               : md_add_scalar(ctx, md_neg(ctx, md_mul(ctx, iou, iou)), 1.0);
    return md_weight_reduce_loss(ctx, l, NULL, MD_REDUCE_MEAN, avg);
}

static int head_loss(md_ctx *ctx, md_module *m, md_tensor *const *cls, md_tensor *const *reg, int n,
                     const md_batch *batch, md_losses *losses, md_error *err) {
    retina *h = (retina *)m;
    if (!h->has_train_cfg) return md_failc(err, MD_ERR_CONFIG, "RetinaHead: loss needs a train_cfg with an assigner");
    int64_t counts[MD_MAX_LEVELS];
    bool was = md_grad_set_enabled(ctx, false);
    md_tensor *anchors = all_anchors(ctx, h, cls, n, counts);
    md_grad_set_enabled(ctx, was);
    if (!anchors) return md_failc(err, MD_ERR_SHAPE, "RetinaHead: %s", md_ctx_error(ctx)->msg);
    int64_t T = anchors->shape[0], N = batch->n, C = h->num_classes;
    md_tensor *labels = md_tensor_full(ctx, MD_I64, MD_DIMS(N * T), (double)C);
    md_tensor *lw = md_tensor_zeros(ctx, MD_F32, MD_DIMS(N * T));
    md_tensor *bt = md_tensor_zeros(ctx, MD_F32, MD_DIMS(N * T, 4));
    md_tensor *bw = md_tensor_zeros(ctx, MD_F32, MD_DIMS(N * T, 4));
    uint8_t *inside = md_ctx_alloc(ctx, (size_t)T);
    int64_t *inside_idx = md_ctx_alloc(ctx, sizeof(int64_t) * (size_t)T);
    if (!labels || !lw || !bt || !bw || !inside || !inside_idx)
        return md_failc(err, MD_ERR_NOMEM, "RetinaHead: %s", md_ctx_error(ctx)->msg);
    double num_pos = 0, num_neg = 0;
    const float *A = md_f32(anchors);
    for (int64_t i = 0; i < N; i++) {
        const md_img_meta *meta = &batch->metas[i];
        /* valid flags from pad_shape, inside flags from img_shape */
        int64_t off = 0, n_in = 0;
        for (int l = 0; l < n; l++) {
            int sw, sh;
            h->prior->iface->stride(h->prior, l, &sw, &sh);
            int64_t fh = cls[l]->shape[2], fw = cls[l]->shape[3];
            int64_t vh = (int64_t)ceil((double)meta->pad_shape[0] / sh), vw = (int64_t)ceil((double)meta->pad_shape[1] / sw);
            if (vh > fh) vh = fh;
            if (vw > fw) vw = fw;
            md_tensor *v = h->prior->iface->valid_flags(ctx, h->prior, l, fh, fw, vh, vw);
            if (!v) return md_failc(err, MD_ERR_SHAPE, "RetinaHead: %s", md_ctx_error(ctx)->msg);
            memcpy(inside + off, md_u8(v), (size_t)counts[l]);
            off += counts[l];
        }
        for (int64_t j = 0; j < T; j++) {
            if (inside[j] && h->allowed_border >= 0) {
                float b = (float)h->allowed_border;
                const float *a = A + j * 4;
                inside[j] = a[0] >= -b && a[1] >= -b && a[2] < (float)meta->img_shape[1] + b &&
                            a[3] < (float)meta->img_shape[0] + b;
            }
            if (inside[j]) inside_idx[n_in++] = j;
        }
        if (n_in == 0) {
            num_pos += 1;
            num_neg += 1;
            continue;
        }
        md_tensor *idx = md_tensor_from(ctx, MD_I64, MD_DIMS(n_in), inside_idx);
        md_tensor *anc = n_in == T ? anchors : md_index_select(ctx, anchors, 0, idx);
        md_tensor *gt = boxes_tensor(ctx, &batch->gt_bboxes[i]);
        /* no labels (the RPN role, mmdet's gt_labels=None): class 0 */
        const int64_t *glab = batch->gt_bboxes[i].labels;
        md_tensor *gl = glab ? md_tensor_from(ctx, MD_I64, MD_DIMS(batch->gt_bboxes[i].n), batch->gt_bboxes[i].n ? glab : NULL)
                             : md_tensor_zeros(ctx, MD_I64, MD_DIMS(batch->gt_bboxes[i].n));
        md_tensor *gi = batch->gt_bboxes_ignore && batch->gt_bboxes_ignore[i].n
                            ? boxes_tensor(ctx, &batch->gt_bboxes_ignore[i]) : NULL;
        if (!anc || !gt || !gl) return md_failc(err, MD_ERR_SHAPE, "RetinaHead: %s", md_ctx_error(ctx)->msg);
        md_assign_result ar;
        md_sampling_result sr;
        if (md_bbox_assign(ctx, h->assigner, anc, gt, gi, h->sampling ? NULL : gl, &ar, err) ||
            md_bbox_sample(ctx, h->sampler, &ar, anc, gt, gl, md_ctx_rng(ctx), &sr, err))
            return md_error_wrap(err, "RetinaHead: image %lld", (long long)i);
        int64_t np = md_tensor_numel(sr.pos_inds), nn = md_tensor_numel(sr.neg_inds);
        num_pos += np > 1 ? np : 1;
        num_neg += nn > 1 ? nn : 1;
        int64_t *lab = md_i64(labels) + i * T;
        float *lwp = md_f32(lw) + i * T, *btp = md_f32(bt) + i * T * 4, *bwp = md_f32(bw) + i * T * 4;
        if (np > 0) {
            /* reg_decoded_bbox: the targets are the gt boxes themselves */
            md_tensor *enc = h->reg_decoded_bbox ? md_contiguous(ctx, sr.pos_gt_bboxes)
                                                 : md_bbox_encode(ctx, h->coder, sr.pos_bboxes, sr.pos_gt_bboxes);
            if (!enc) return md_failc(err, MD_ERR_SHAPE, "RetinaHead: %s", md_ctx_error(ctx)->msg);
            for (int64_t p = 0; p < np; p++) {
                int64_t j = inside_idx[md_i64(sr.pos_inds)[p]];
                for (int k = 0; k < 4; k++) {
                    btp[j * 4 + k] = md_f32(enc)[p * 4 + k];
                    bwp[j * 4 + k] = 1.0f;
                }
                lab[j] = h->sampling ? 0 : md_i64(gl)[md_i64(sr.pos_assigned_gt_inds)[p]];
                lwp[j] = h->pos_weight <= 0 ? 1.0f : (float)h->pos_weight;
            }
        }
        for (int64_t q = 0; q < nn; q++) lwp[inside_idx[md_i64(sr.neg_inds)[q]]] = 1.0f;
    }
    double avg = h->sampling ? num_pos + num_neg : num_pos;
    md_tensor *cls_all = flatten_levels(ctx, cls, n, C);
    md_tensor *reg_all = flatten_levels(ctx, reg, n, 4);
    /* the targets were built on the host; the losses run where the outputs are */
    md_device dev = md_tensor_device(cls[0]);
    md_tensor *labels_d = md_tensor_to(ctx, labels, dev), *lw_d = md_tensor_to(ctx, lw, dev);
    md_tensor *lc = md_mul_scalar(ctx, md_loss_sigmoid_focal(ctx, cls_all, labels_d, lw_d, h->gamma, h->alpha,
                                                               MD_REDUCE_MEAN, avg), h->cls_weight);
    md_tensor *lb = h->reg_decoded_bbox ? decoded_bbox_loss(ctx, h, reg_all, anchors, bt, bw, N, T, avg)
                    : h->bbox_loss == LOSS_L1
                        ? md_loss_l1(ctx, reg_all, md_tensor_to(ctx, bt, dev), md_tensor_to(ctx, bw, dev), MD_REDUCE_MEAN, avg)
                        : md_loss_smooth_l1(ctx, reg_all, md_tensor_to(ctx, bt, dev), md_tensor_to(ctx, bw, dev), h->beta,
                                            MD_REDUCE_MEAN, avg);
    lb = md_mul_scalar(ctx, lb, h->bbox_weight);
    if (!lc || !lb) return md_failc(err, MD_ERR_SHAPE, "RetinaHead: loss: %s", md_ctx_error(ctx)->msg);
    if (md_losses_add(losses, "loss_cls", lc, err) || md_losses_add(losses, "loss_bbox", lb, err)) return -1;
    return 0;
}

typedef struct cand { float score; int64_t flat; } cand;
static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->flat < y->flat ? -1 : x->flat > y->flat;
}

static inline void cand_swap(cand *a, cand *b) {
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Moves the k first candidates in cand_cmp order into v[0..k), unordered
 * (quickselect, median-of-three pivots). */
static void select_top(cand *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (cand_cmp(&v[mid], &v[lo]) < 0) cand_swap(&v[mid], &v[lo]);
        if (cand_cmp(&v[hi], &v[lo]) < 0) cand_swap(&v[hi], &v[lo]);
        if (cand_cmp(&v[mid], &v[hi]) < 0) cand_swap(&v[mid], &v[hi]);
        cand piv = v[hi];
        int64_t at = lo;
        for (int64_t i = lo; i < hi; i++)
            if (cand_cmp(&v[i], &piv) < 0) cand_swap(&v[i], &v[at++]);
        cand_swap(&v[at], &v[hi]);
        if (at == want) return;
        if (at > want) hi = at - 1;
        else lo = at + 1;
    }
}

/* mmdet's get_bboxes with cfg (NULL: test_cfg); with_nms false: the
 * candidates before NMS (mmdet's with_nms=False). */
static int head_get_bboxes(md_ctx *ctx, md_module *m, md_tensor *const *cls, md_tensor *const *reg, int n,
                           const md_batch *batch, const md_dense_test_cfg *tc, bool rescale, bool with_nms,
                           md_det_result *results, md_error *err) {
    retina *h = (retina *)m;
    if (!tc && !h->has_test_cfg) return md_failc(err, MD_ERR_CONFIG, "RetinaHead: testing needs a test_cfg");
    if (!tc) tc = &h->test;
    int64_t C = h->num_classes, Anum = h->num_anchors;
    bool was = md_grad_set_enabled(ctx, false);
    /* post-processing is host logic (thresholds, sorting, NMS on a few
     * boxes): one CPU copy of each level's outputs */
    md_tensor *hcls[MD_MAX_LEVELS], *hreg[MD_MAX_LEVELS];
    for (int l = 0; l < n; l++) {
        hcls[l] = md_contiguous(ctx, md_tensor_to(ctx, cls[l], MD_DEVICE_CPU));
        hreg[l] = md_contiguous(ctx, md_tensor_to(ctx, reg[l], MD_DEVICE_CPU));
        if (!hcls[l] || !hreg[l]) goto op_failed;
    }
    cls = hcls;
    reg = hreg;
    for (int64_t i = 0; i < batch->n; i++) {
        const md_img_meta *meta = &batch->metas[i];
        md_tensor *lv_boxes[MD_MAX_LEVELS], *lv_scores[MD_MAX_LEVELS], *lv_labels[MD_MAX_LEVELS];
        for (int l = 0; l < n; l++) {
            int64_t H = cls[l]->shape[2], W = cls[l]->shape[3], HW = H * W, Ta = HW * Anum;
            md_tensor *cl = md_contiguous(ctx, cls[l]), *rg = md_contiguous(ctx, reg[l]);
            md_tensor *pri = md_grid_priors(ctx, h->prior, l, H, W);
            cand *cs = md_ctx_alloc(ctx, sizeof(cand) * (size_t)(Ta * C));
            if (!cl || !rg || !pri || !cs) goto op_failed;
            const float *cp = md_f32(cl) + i * Ta * C, *rp = md_f32(rg) + i * Ta * 4;
            int64_t nc = 0;
            /* A logit this far below logit(score_thr) has a sigmoid below the
             * threshold whatever the rounding: most scores skip expf. */
            double st = tc->score_thr;
            float lo = st <= 0 ? -INFINITY : st >= 1 ? INFINITY : (float)(log(st / (1 - st)) - 0.01);
            /* flat index (anchor * C + class), anchor = (y * W + x) * A + a, as
             * permute(1, 2, 0).reshape(-1, C) in mmdet */
            for (int64_t a = 0; a < Anum; a++)
                for (int64_t c = 0; c < C; c++) {
                    const float *plane = cp + (a * C + c) * HW;
                    for (int64_t p = 0; p < HW; p++) {
                        if (plane[p] < lo) continue;
                        float s = 1.0f / (1.0f + expf(-plane[p]));
                        if (s > (float)tc->score_thr) cs[nc++] = (cand){ s, (p * Anum + a) * C + c };
                    }
                }
            int64_t k = tc->nms_pre > 0 && tc->nms_pre < nc ? tc->nms_pre : nc;
            if (k < nc) select_top(cs, nc, k);   /* the nms_pre first, then only they are sorted */
            qsort(cs, (size_t)k, sizeof(cand), cand_cmp);
            md_tensor *sel_pri = md_tensor_empty(ctx, MD_F32, MD_DIMS(k, 4));
            md_tensor *sel_reg = md_tensor_empty(ctx, MD_F32, MD_DIMS(k, 4));
            lv_scores[l] = md_tensor_empty(ctx, MD_F32, MD_DIMS(k));
            lv_labels[l] = md_tensor_empty(ctx, MD_I64, MD_DIMS(k));
            if (!sel_pri || !sel_reg || !lv_scores[l] || !lv_labels[l]) goto op_failed;
            for (int64_t j = 0; j < k; j++) {
                int64_t anchor = cs[j].flat / C, c = cs[j].flat % C;
                int64_t p = anchor / Anum, a = anchor % Anum;
                memcpy(md_f32(sel_pri) + j * 4, md_f32(pri) + anchor * 4, 4 * sizeof(float));
                for (int q = 0; q < 4; q++) md_f32(sel_reg)[j * 4 + q] = rp[(a * 4 + q) * HW + p];
                md_f32(lv_scores[l])[j] = cs[j].score;
                md_i64(lv_labels[l])[j] = c;
            }
            int max_shape[2] = { meta->img_shape[0], meta->img_shape[1] };
            lv_boxes[l] = k ? md_bbox_decode(ctx, h->coder, sel_pri, sel_reg, max_shape) : sel_pri;
            if (!lv_boxes[l]) goto op_failed;
        }
        md_tensor *boxes = md_contiguous(ctx, md_cat(ctx, lv_boxes, n, 0));
        md_tensor *scores = md_cat(ctx, lv_scores, n, 0), *labels = md_cat(ctx, lv_labels, n, 0);
        if (!boxes || !scores || !labels) goto op_failed;
        int64_t nb = boxes->shape[0];
        if (rescale)
            for (int64_t j = 0; j < nb; j++)
                for (int q = 0; q < 4; q++) md_f32(boxes)[j * 4 + q] /= meta->scale_factor[q];
        if (!with_nms) {
            float *cb = md_ctx_alloc(ctx, sizeof(float) * (size_t)(nb * 5 + 1));
            if (!cb) goto op_failed;
            for (int64_t j = 0; j < nb; j++) {
                memcpy(cb + j * 5, md_f32(boxes) + j * 4, 4 * sizeof(float));
                cb[j * 5 + 4] = md_f32(scores)[j];
            }
            results[i] = (md_det_result){ (int)nb, cb, md_i64(labels) };
            continue;
        }
        md_tensor *keep = nb ? md_batched_nms(ctx, boxes, scores, labels, tc->nms_iou, false, -1)
                             : md_tensor_empty(ctx, MD_I64, MD_DIMS(0));
        if (!keep) goto op_failed;
        int64_t nk = md_tensor_numel(keep);
        if (tc->max_per_img > 0 && nk > tc->max_per_img) nk = tc->max_per_img;
        float *ob = md_ctx_alloc(ctx, sizeof(float) * (size_t)(nk * 5 + 1));
        int64_t *ol = md_ctx_alloc(ctx, sizeof(int64_t) * (size_t)(nk + 1));
        if (!ob || !ol) goto op_failed;
        for (int64_t j = 0; j < nk; j++) {
            int64_t s = md_i64(keep)[j];
            memcpy(ob + j * 5, md_f32(boxes) + s * 4, 4 * sizeof(float));
            ob[j * 5 + 4] = md_f32(scores)[s];
            ol[j] = md_i64(labels)[s];
        }
        results[i] = (md_det_result){ (int)nk, ob, ol };
    }
    md_grad_set_enabled(ctx, was);
    return 0;
op_failed:
    md_grad_set_enabled(ctx, was);
    return md_failc(err, MD_ERR_SHAPE, "RetinaHead.get_bboxes: %s", md_ctx_error(ctx)->msg);
}

static const md_dense_test_cfg *head_test_cfg(const md_module *m) {
    const retina *h = (const retina *)m;
    return h->has_test_cfg ? &h->test : NULL;
}

static void head_destroy(md_module *m) {
    retina *h = (retina *)m;
    MD_BBOX_DESTROY(h->prior);
    MD_BBOX_DESTROY(h->coder);
    MD_BBOX_DESTROY(h->assigner);
    MD_BBOX_DESTROY(h->sampler);
}

static int head_num_classes(const md_module *m) { return ((const retina *)m)->num_classes; }

static const md_dense_head_class head_cls = {
    .model = { .module = { .name = "RetinaHead", .destroy = head_destroy, .num_classes = head_num_classes } },
    .tag = MD_DENSE_HEAD_TAG,
    .forward = head_forward,
    .loss = head_loss,
    .get_bboxes = head_get_bboxes,
    .test_cfg = head_test_cfg,
};

/* A conv with mmdet RetinaHead's init: normal(0, 0.01), bias `bias`. */
static int add_conv(md_ctx *ctx, md_module *parent, const char *name, int in, int out,
                    const md_conv_module_opts *norm, double bias, md_error *err) {
    md_module *c;
    md_module *conv;
    if (norm) {   /* a ConvModule with the head's norm_cfg and ReLU */
        md_conv_module_opts o = *norm;
        o.in = in, o.out = out, o.kernel = 3, o.stride = 1, o.padding = 1, o.dilation = 1, o.groups = 1;
        o.act = true, o.bias = -1;
        c = md_nn_conv_module(ctx, &o, err);
        conv = c ? md_module_child(c, "conv") : NULL;
    } else {
        c = md_nn_conv2d(ctx, in, out, 3, 3, MD_CONV2D(1, 1), true, err);
        conv = c;
    }
    if (!c) return -1;
    if (md_module_add_child(parent, name, c, err) != 0) {
        md_module_free(c);
        return -1;
    }
    md_init_normal(md_nn_weight(conv), md_ctx_rng(ctx), 0.0, 0.01);
    if (md_nn_bias(conv)) md_init_constant(md_nn_bias(conv), bias);
    return 0;
}

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    retina *h = md_module_new(sizeof *h, &head_cls.model.module);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    md_module *m = &h->base;
    h->num_classes = (int)md_cfg_int(cfg, "num_classes", 0);
    h->in_channels = (int)md_cfg_int(cfg, "in_channels", 0);
    h->feat_channels = (int)md_cfg_int(cfg, "feat_channels", 256);
    h->stacked_convs = (int)md_cfg_int(cfg, "stacked_convs", 4);
    if (h->num_classes < 1 || h->in_channels < 1 || h->feat_channels < 1 || h->stacked_convs < 0) {
        md_failc(err, MD_ERR_CONFIG, "num_classes, in_channels, feat_channels must be positive, stacked_convs >= 0");
        goto fail;
    }
    if (!md_cfg_is_none(md_cfg_get(cfg, "conv_cfg"))) {
        md_failc(err, MD_ERR_CONFIG, "conv_cfg: only None is supported");
        goto fail;
    }
    if (md_norm_cfg_read(md_cfg_get(cfg, "norm_cfg"), "norm_cfg", "BN,SyncBN,GN", &h->norm, err) != 0) goto fail;
    h->reg_decoded_bbox = md_cfg_bool(cfg, "reg_decoded_bbox", false);
    /* losses */
    const md_cfg *lc = md_cfg_get(cfg, "loss_cls"), *lb = md_cfg_get(cfg, "loss_bbox");
    const char *lct = md_cfg_str(lc, "type", ""), *lbt = md_cfg_str(lb, "type", "");
    if (strcmp(lct, "FocalLoss") != 0 || !md_cfg_bool(lc, "use_sigmoid", true)) {
        md_failc(err, MD_ERR_CONFIG, "loss_cls: only FocalLoss with use_sigmoid = true is supported, got \"%s\"", lct);
        goto fail;
    }
    h->gamma = md_cfg_float(lc, "gamma", 2.0);
    h->alpha = md_cfg_float(lc, "alpha", 0.25);
    h->cls_weight = md_cfg_float(lc, "loss_weight", 1.0);
    if (!strcmp(lbt, "L1Loss")) {
        h->bbox_loss = LOSS_L1;
    } else if (!strcmp(lbt, "SmoothL1Loss")) {
        h->bbox_loss = LOSS_SMOOTH_L1;
        h->beta = md_cfg_float(lb, "beta", 1.0);
    } else if (!strcmp(lbt, "GIoULoss") || !strcmp(lbt, "IoULoss")) {
        /* mmdet: GIoULoss(eps=1e-6), IoULoss(linear=False, eps=1e-6, mode='log') */
        h->bbox_loss = lbt[0] == 'G' ? LOSS_GIOU : LOSS_IOU;
        h->bbox_eps = md_cfg_float(lb, "eps", 1e-6);
        const char *mode = md_cfg_str(lb, "mode", "log");
        h->iou_mode = md_cfg_bool(lb, "linear", false) ? IOU_LINEAR
                      : !strcmp(mode, "log") ? IOU_LOG : !strcmp(mode, "linear") ? IOU_LINEAR
                      : !strcmp(mode, "square") ? IOU_SQUARE : -1;
        if (h->iou_mode < 0) {
            md_failc(err, MD_ERR_CONFIG, "loss_bbox.mode \"%s\": IoULoss modes are linear, square and log", mode);
            goto fail;
        }
        if (!h->reg_decoded_bbox) {
            md_failc(err, MD_ERR_CONFIG, "loss_bbox %s compares boxes: it needs reg_decoded_bbox = true (L1Loss or SmoothL1Loss regress the deltas)", lbt);
            goto fail;
        }
    } else {
        md_failc(err, MD_ERR_CONFIG, "loss_bbox: L1Loss, SmoothL1Loss, GIoULoss or IoULoss, got \"%s\"", lbt);
        goto fail;
    }
    h->bbox_weight = md_cfg_float(lb, "loss_weight", 1.0);
    /* mmdet: no sampling for FocalLoss */
    h->sampling = false;
    /* parts */
    if (!(h->prior = md_build_part(ctx, "prior_generators", cfg, "anchor_generator", err))) goto fail;
    h->num_anchors = h->prior->iface->num_base_priors(h->prior, 0);
    if (!(h->coder = md_build_part(ctx, "bbox_coders", cfg, "bbox_coder", err))) goto fail;
    const md_cfg *tr = md_cfg_get(cfg, "train_cfg");
    if (!md_cfg_is_none(tr)) {
        h->has_train_cfg = true;
        if (!(h->assigner = md_build_part(ctx, "bbox_assigners", cfg, "train_cfg.assigner", err))) goto fail;
        md_cfg *pseudo = md_cfg_new_group();
        md_cfg_set_str(pseudo, "type", "PseudoSampler");
        const md_cfg *sc = h->sampling && md_cfg_get(tr, "sampler") ? md_cfg_get(tr, "sampler") : pseudo;
        h->sampler = md_build_from_cfg(ctx, "bbox_samplers", sc, NULL, err);
        md_cfg_free(pseudo);
        if (!h->sampler) {
            md_error_wrap(err, "train_cfg.sampler");
            goto fail;
        }
        h->allowed_border = (int)md_cfg_int(tr, "allowed_border", -1);
        h->pos_weight = md_cfg_float(tr, "pos_weight", -1);
    }
    const md_cfg *te = md_cfg_get(cfg, "test_cfg");
    if (!md_cfg_is_none(te)) {
        static const md_dense_test_cfg dflt = { .nms_pre = -1, .score_thr = 0.0, .min_bbox_size = -1,
                                                .nms_iou = 0.5, .max_per_img = 100 };
        h->has_test_cfg = true;
        if (md_dense_test_cfg_read(te, "test_cfg", &dflt, &h->test, err)) goto fail;
    }
    /* layers: mmdet's init_cfg Normal(std 0.01) on every Conv2d, retina_cls bias_prob 0.01 */
    const char *lists[2] = { "cls_convs", "reg_convs" };
    for (int b = 0; b < 2; b++) {
        md_module *list = md_module_new(sizeof(md_module), &list_class);
        if (!list || md_module_add_child(m, lists[b], list, err) != 0) {
            md_module_free(list);
            goto fail;
        }
        for (int i = 0; i < h->stacked_convs; i++) {
            char name[16];
            snprintf(name, sizeof name, "%d", i);
            if (add_conv(ctx, list, name, i == 0 ? h->in_channels : h->feat_channels, h->feat_channels, &h->norm, 0.0,
                         err))
                goto fail;
        }
    }
    int fin = h->stacked_convs ? h->feat_channels : h->in_channels;
    if (add_conv(ctx, m, "retina_cls", fin, h->num_anchors * h->num_classes, NULL, md_bias_init_with_prob(0.01), err) ||
        add_conv(ctx, m, "retina_reg", fin, h->num_anchors * 4, NULL, 0.0, err))
        goto fail;
    md_module_train(m, true);
    return m;
fail:
    md_module_free(m);
    return NULL;
}

static const md_class cls = { .name = "RetinaHead", .keys = keys, .build = build, MD_IFACE(&head_cls, MD_IFACE_DENSE_HEAD),
                              .doc = "mmdet's RetinaNet head (focal loss, anchors, delta coder)" };
MD_PLUGIN("retina_head", "1.0", "Apache-2.0");
MD_REGISTER("heads", cls)
