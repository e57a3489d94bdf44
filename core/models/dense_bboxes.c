/* mmdet 2.x's BaseDenseHead.get_bboxes (base_dense_head.py: _get_bboxes_single,
 * filter_scores_and_topk, _bbox_post_process) on the host, shared by the
 * AnchorHead and AnchorFreeHead bases (dense_bboxes.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "dense_bboxes.h"

typedef struct cand { float score; int64_t flat; } cand;
static int flat_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    return (x->flat > y->flat) - (x->flat < y->flat);
}

/* filter_scores_and_topk's cut: mmdet sorts the candidates (taken in flat
 * order, as nonzero yields them) with torch.sort and keeps the first k, so
 * tied scores fall in that unstable sort's order (md_sort_order_torch).
 * Moves those k, in that order, to cs[0..k). */
static int top_candidates(md_ctx *ctx, cand *cs, int64_t nc, int64_t k) {
    if (nc == 0) return 0;
    qsort(cs, (size_t)nc, sizeof(cand), flat_cmp);
    float *sc = md_ctx_alloc(ctx, sizeof(float) * (size_t)nc);
    int64_t *ord = md_ctx_alloc(ctx, sizeof(int64_t) * (size_t)nc);
    cand *tmp = md_ctx_alloc(ctx, sizeof(cand) * (size_t)k + 1);
    if (!sc || !ord || !tmp) return -1;
    for (int64_t j = 0; j < nc; j++) sc[j] = cs[j].score;
    if (md_sort_order_torch(sc, nc, ord)) {
        md_op_failc(ctx, MD_ERR_NOMEM, "get_bboxes", "out of memory sorting %lld scores", (long long)nc);
        return -1;
    }
    for (int64_t j = 0; j < k; j++) tmp[j] = cs[ord[j]];
    memcpy(cs, tmp, sizeof(cand) * (size_t)k);
    return 0;
}

/* The (prior, class) candidates of one level's scores cp [A * C', HW]
 * (planes of the output) above score_thr: flat index prior * C + class,
 * prior = (y * W + x) * A + a, as mmdet's permute(1, 2, 0).reshape(-1, C). */
static int64_t level_candidates(const md__dense_post *h, const float *cp, int64_t HW, double score_thr, cand *cs) {
    int64_t A = h->num_base_priors, C = h->num_classes, Co = h->cls_out_channels, nc = 0;
    if (h->use_sigmoid) {
        /* A logit this far below logit(score_thr) has a sigmoid below the
         * threshold whatever the rounding: most scores skip expf. */
        float lo = score_thr <= 0 ? -INFINITY : score_thr >= 1 ? INFINITY : (float)(log(score_thr / (1 - score_thr)) - 0.01);
        for (int64_t a = 0; a < A; a++)
            for (int64_t c = 0; c < C; c++) {
                const float *plane = cp + (a * Co + c) * HW;
                for (int64_t p = 0; p < HW; p++) {
                    if (plane[p] < lo) continue;
                    float s = 1.0f / (1.0f + expf(-plane[p]));
                    if (s > (float)score_thr) cs[nc++] = (cand){ s, (p * A + a) * C + c };
                }
            }
        return nc;
    }
    /* softmax over the C + 1 channels of each prior; the last is background */
    for (int64_t a = 0; a < A; a++)
        for (int64_t p = 0; p < HW; p++) {
            float mx = -INFINITY, sum = 0;
            for (int64_t c = 0; c < Co; c++) mx = fmaxf(mx, cp[(a * Co + c) * HW + p]);
            for (int64_t c = 0; c < Co; c++) sum += expf(cp[(a * Co + c) * HW + p] - mx);
            for (int64_t c = 0; c < C; c++) {
                float s = expf(cp[(a * Co + c) * HW + p] - mx) / sum;
                if (s > (float)score_thr) cs[nc++] = (cand){ s, (p * A + a) * C + c };
            }
        }
    return nc;
}

/* One image's detections from the levels' host outputs. */
static int image_bboxes(md_ctx *ctx, const md__dense_post *h, md_tensor *const *cls, md_tensor *const *reg, int n,
                        int64_t i, const md_img_meta *meta, const md_dense_test_cfg *tc, bool rescale,
                        bool with_nms, md_det_result *out) {
    int64_t C = h->num_classes, A = h->num_base_priors, R = h->reg_channels, sf = h->score_factor_channel;
    md_tensor *lv_boxes[MD_MAX_LEVELS], *lv_scores[MD_MAX_LEVELS], *lv_labels[MD_MAX_LEVELS];
    for (int l = 0; l < n; l++) {
        int64_t H = cls[l]->shape[2], W = cls[l]->shape[3], HW = H * W, Ta = HW * A;
        md_tensor *pri = md_grid_priors(ctx, h->prior_generator, l, H, W);
        cand *cs = md_ctx_alloc(ctx, sizeof(cand) * (size_t)(Ta * C + 1));
        if (!pri || !cs) return -1;
        const float *cp = md_f32(cls[l]) + i * Ta * h->cls_out_channels, *rp = md_f32(reg[l]) + i * Ta * R;
        int64_t nc = level_candidates(h, cp, HW, tc->score_thr, cs);
        int64_t k = tc->nms_pre > 0 && tc->nms_pre < nc ? tc->nms_pre : nc;
        if (top_candidates(ctx, cs, nc, k)) return -1;
        md_tensor *sel_pri = md_tensor_empty(ctx, MD_F32, MD_DIMS(k, 4));
        md_tensor *sel_reg = md_tensor_empty(ctx, MD_F32, MD_DIMS(k, 4));
        lv_scores[l] = md_tensor_empty(ctx, MD_F32, MD_DIMS(k));
        lv_labels[l] = md_tensor_empty(ctx, MD_I64, MD_DIMS(k));
        if (!sel_pri || !sel_reg || !lv_scores[l] || !lv_labels[l]) return -1;
        for (int64_t j = 0; j < k; j++) {
            int64_t prior = cs[j].flat / C, c = cs[j].flat % C;
            int64_t p = prior / A, a = prior % A;
            memcpy(md_f32(sel_pri) + j * 4, md_f32(pri) + prior * 4, 4 * sizeof(float));
            for (int q = 0; q < 4; q++) md_f32(sel_reg)[j * 4 + q] = rp[(a * R + q) * HW + p];
            float s = cs[j].score;
            /* mmdet selects on the class scores, then multiplies */
            if (sf >= 0) s *= 1.0f / (1.0f + expf(-rp[(a * R + sf) * HW + p]));
            md_f32(lv_scores[l])[j] = s;
            md_i64(lv_labels[l])[j] = c;
        }
        int max_shape[2] = { meta->img_shape[0], meta->img_shape[1] };
        lv_boxes[l] = k ? md_bbox_decode(ctx, h->bbox_coder, sel_pri, sel_reg, max_shape) : sel_pri;
        if (!lv_boxes[l]) return -1;
    }
    md_tensor *boxes = md_contiguous(ctx, md_cat(ctx, lv_boxes, n, 0));
    md_tensor *scores = md_cat(ctx, lv_scores, n, 0), *labels = md_cat(ctx, lv_labels, n, 0);
    if (!boxes || !scores || !labels) return -1;
    int64_t nb = boxes->shape[0];
    if (rescale)
        for (int64_t j = 0; j < nb; j++)
            for (int q = 0; q < 4; q++) md_f32(boxes)[j * 4 + q] /= meta->scale_factor[q];
    if (!with_nms) {
        float *cb = md_ctx_alloc(ctx, sizeof(float) * (size_t)(nb * 5 + 1));
        if (!cb) return -1;
        for (int64_t j = 0; j < nb; j++) {
            memcpy(cb + j * 5, md_f32(boxes) + j * 4, 4 * sizeof(float));
            cb[j * 5 + 4] = md_f32(scores)[j];
        }
        *out = (md_det_result){ (int)nb, cb, md_i64(labels) };
        return 0;
    }
    md_tensor *keep = nb ? md_batched_nms(ctx, boxes, scores, labels, tc->nms_iou, false, -1)
                         : md_tensor_empty(ctx, MD_I64, MD_DIMS(0));
    if (!keep) return -1;
    int64_t nk = md_tensor_numel(keep);
    if (tc->max_per_img > 0 && nk > tc->max_per_img) nk = tc->max_per_img;
    float *ob = md_ctx_alloc(ctx, sizeof(float) * (size_t)(nk * 5 + 1));
    int64_t *ol = md_ctx_alloc(ctx, sizeof(int64_t) * (size_t)(nk + 1));
    if (!ob || !ol) return -1;
    for (int64_t j = 0; j < nk; j++) {
        int64_t s = md_i64(keep)[j];
        memcpy(ob + j * 5, md_f32(boxes) + s * 4, 4 * sizeof(float));
        ob[j * 5 + 4] = md_f32(scores)[s];
        ol[j] = md_i64(labels)[s];
    }
    *out = (md_det_result){ (int)nk, ob, ol };
    return 0;
}

int md__dense_get_bboxes(md_ctx *ctx, const char *name, const md__dense_post *p, md_tensor *const *cls,
                         md_tensor *const *reg, int n, const md_batch *batch, const md_dense_test_cfg *tc,
                         const md_dense_test_cfg *own, bool rescale, bool with_nms, md_det_result *results,
                         md_error *err) {
    if (!tc && !own) return md_failc(err, MD_ERR_CONFIG, "%s: testing needs a test_cfg", name);
    if (!tc) tc = own;
    if (n > MD_MAX_LEVELS) return md_failc(err, MD_ERR_SHAPE, "%s: %d levels (at most %d)", name, n, MD_MAX_LEVELS);
    bool was = md_grad_set_enabled(ctx, false);
    /* post-processing is host logic (thresholds, sorting, NMS on a few
     * boxes): one CPU copy of each level's outputs */
    md_tensor *hcls[MD_MAX_LEVELS], *hreg[MD_MAX_LEVELS];
    int rc = 0;
    for (int l = 0; l < n; l++) {
        const md_tensor *c = cls[l], *r = reg[l];
        if (!c || !r || c->ndim != 4 || r->ndim != 4 || c->shape[0] < batch->n || r->shape[0] != c->shape[0] ||
            c->shape[1] != p->num_base_priors * p->cls_out_channels || r->shape[1] != p->num_base_priors * p->reg_channels ||
            r->shape[2] != c->shape[2] || r->shape[3] != c->shape[3]) {
            char b1[64], b2[64];
            md_grad_set_enabled(ctx, was);
            return md_failc(err, MD_ERR_SHAPE, "%s.get_bboxes: level %d: cls_score %s and bbox_pred %s, want [N, %lld, H, W] "
                            "and [N, %lld, H, W]", name, l, md_tensor_describe(c, b1, sizeof b1),
                            md_tensor_describe(r, b2, sizeof b2), (long long)(p->num_base_priors * p->cls_out_channels),
                            (long long)(p->num_base_priors * p->reg_channels));
        }
    }
    for (int l = 0; l < n && !rc; l++) {
        hcls[l] = md_contiguous(ctx, md_tensor_to(ctx, cls[l], MD_DEVICE_CPU));
        hreg[l] = md_contiguous(ctx, md_tensor_to(ctx, reg[l], MD_DEVICE_CPU));
        rc = !hcls[l] || !hreg[l];
    }
    for (int64_t i = 0; i < batch->n && !rc; i++)
        rc = image_bboxes(ctx, p, hcls, hreg, n, i, &batch->metas[i], tc, rescale, with_nms, &results[i]);
    md_grad_set_enabled(ctx, was);
    return rc ? md_error_from_ctx(ctx, err, "%s.get_bboxes", name) : 0;
}
