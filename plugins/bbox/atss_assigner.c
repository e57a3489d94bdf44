/* mmdet's ATSSAssigner (mmdet/core/bbox/assigners/atss_assigner.py),
 * Adaptive Training Sample Selection: for each gt, on every pyramid level
 * the topk boxes whose centres are closest to the gt's centre are its
 * candidates; the candidates whose IoU with the gt reaches the mean plus the
 * (unbiased) standard deviation of the candidates' IoUs, and whose centre
 * lies inside the gt (every side more than 0.01 away), are positives; a box
 * that is positive for several gts goes to the one it overlaps most (the
 * first on a tie). The rest are negatives (0); boxes overlapping ignored gts
 * by more than ignore_iof_thr (IoF) are ignored (-1) unless chosen after
 * all, as in mmdet. max_overlaps holds the chosen gt's IoU, and mmdet's
 * -INF (-1e8) where a box is not positive.
 *
 * With `alpha` (DDOD's dynamic cost), the overlaps that select and rank
 * the candidates are the cost sigmoid(cls_scores[:, gt_labels])^(1 - alpha)
 * * IoU(bbox_preds, gt)^alpha, from the head's predictions for the boxes
 * (md_assign_levels' cls_scores and bbox_preds, required then, as are the
 * gt labels); the distances stay those of the boxes' centres, as in mmdet.
 *
 * It needs the boxes' levels (md_bbox_assign_levels; mmdet's
 * num_level_bboxes) and refuses a call without them. Distances, IoUs and
 * the threshold are f32 as in mmdet; among boxes at the same distance the
 * lower index is taken first (torch.topk leaves that order open). Overlaps
 * come from the iou_calculator built through its registry. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>

#define INF 100000000.0f   /* mmdet's INF */

typedef struct assigner {
    md_bbox_assigner base;
    md_iou_calculator *iou;
    int topk;
    double ignore_iof_thr;
    const md_cfg *alpha_cfg;
    bool use_alpha;
    float alpha;
} assigner;

static const md_key keys[] = {
    { "topk", MD_KEY_INT, NULL, "candidates per level and gt, nearest centres first", true, MD_AT(assigner, topk),
      .min = "1" },
    { "iou_calculator", MD_KEY_GROUP, "{ type = \"BboxOverlaps2D\"; }", "what measures overlaps (iou_calculators)",
      false },
    { "ignore_iof_thr", MD_KEY_FLOAT, "-1.0", "IoF with an ignored gt above which a box is ignored", false,
      MD_AT(assigner, ignore_iof_thr) },
    { "alpha", MD_KEY_ANY, "None", "None, or DDOD's cost exponent (0.8 in its configs): cls^(1 - alpha) * "
      "IoU^alpha of the predictions", false, MD_AT(assigner, alpha_cfg) },
    { 0 } };

/* Indices of the k smallest of d[0 .. n) (stride `stride`), ascending by
 * value, the lower index first among equal values, into out. */
static void k_nearest(const float *d, int64_t n, int64_t stride, int64_t k, int64_t *out) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = d[i * stride];
        if (m == k && !(v < d[out[m - 1] * stride])) continue;
        int64_t p = m < k ? m++ : k - 1;
        while (p > 0 && v < d[out[p - 1] * stride]) {
            out[p] = out[p - 1];
            p--;
        }
        out[p] = i;
    }
}

/* DDOD's cost [N, K]: sigmoid(cls_scores[:, gt_labels])^(1 - alpha) *
 * IoU(bbox_preds, gt)^alpha, in f32 as mmdet's. NULL with err set. */
static md_tensor *dynamic_cost(md_ctx *ctx, const assigner *a, const md_assign_levels *levels, md_tensor *gt,
                               md_tensor *gt_labels, int64_t n, md_error *err) {
    md_tensor *cls = levels->cls_scores, *pred = levels->bbox_preds;
    cls = md_contiguous(ctx, md_tensor_to(ctx, cls, MD_DEVICE_CPU));
    pred = md_contiguous(ctx, md_tensor_to(ctx, pred, MD_DEVICE_CPU));
    if (!cls || !pred) {
        md_error_from_ctx(ctx, err, "ATSSAssigner");
        return NULL;
    }
    int64_t k = gt->shape[0];
    if (cls->dtype != MD_F32 || cls->ndim != 2 || cls->shape[0] != n || pred->dtype != MD_F32 || pred->ndim != 2 ||
        pred->shape[0] != n || pred->shape[1] < 4) {
        char b1[64], b2[64];
        md_failc(err, MD_ERR_SHAPE, "ATSSAssigner: cls_scores %s and bbox_preds %s must be f32 [%lld, C] and [%lld, 4]",
                 md_tensor_describe(cls, b1, sizeof b1), md_tensor_describe(pred, b2, sizeof b2), (long long)n,
                 (long long)n);
        return NULL;
    }
    int64_t C = cls->shape[1];
    for (int64_t i = 0; i < k; i++)
        if (md_i64(gt_labels)[i] < 0 || md_i64(gt_labels)[i] >= C) {
            md_failc(err, MD_ERR_SHAPE, "ATSSAssigner: gt label %lld outside the %lld classes of cls_scores",
                     (long long)md_i64(gt_labels)[i], (long long)C);
            return NULL;
        }
    if (pred->shape[1] != 4) pred = md_contiguous(ctx, md_slice(ctx, pred, 1, 0, 4, 1));
    md_tensor *iou = md_contiguous(ctx, md_iou_calculator_overlaps(ctx, a->iou, pred, gt, MD_IOU, false));
    if (!iou) {
        md_error_from_ctx(ctx, err, "ATSSAssigner");
        return NULL;
    }
    float e_cls = (float)(1.0 - (double)a->alpha), e_iou = a->alpha;
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < k; i++) {
            float x = md_f32(cls)[j * C + md_i64(gt_labels)[i]], cost = 1.0f / (1.0f + expf(-x));
            float *o = md_f32(iou) + j * k + i;
            *o = powf(cost, e_cls) * powf(*o, e_iou);
        }
    return iou;
}

static int assign_levels(md_ctx *ctx, const md_bbox_assigner *ba, md_tensor *bboxes, const md_assign_levels *levels,
                         md_tensor *gt, md_tensor *gt_ignore, md_tensor *gt_labels, md_assign_result *out,
                         md_error *err) {
    const assigner *a = (const assigner *)ba;
    memset(out, 0, sizeof *out);
    /* host logic: device inputs are read from CPU copies */
    bboxes = md_contiguous(ctx, md_tensor_to(ctx, bboxes, MD_DEVICE_CPU));
    gt = md_contiguous(ctx, md_tensor_to(ctx, gt, MD_DEVICE_CPU));
    gt_ignore = md_tensor_to(ctx, gt_ignore, MD_DEVICE_CPU);
    gt_labels = md_contiguous(ctx, md_tensor_to(ctx, gt_labels, MD_DEVICE_CPU));
    if (!bboxes || !gt || bboxes->ndim != 2 || bboxes->shape[1] < 4 || gt->ndim != 2 || gt->shape[1] != 4 ||
        (gt_labels && (gt_labels->dtype != MD_I64 || md_tensor_numel(gt_labels) != gt->shape[0]))) {
        char b1[64], b2[64];
        return md_failc(err, MD_ERR_SHAPE, "ATSSAssigner: bboxes %s and gt_bboxes %s must be [N, 4] (labels i64 [K])",
                        bboxes ? md_tensor_describe(bboxes, b1, sizeof b1) : "NULL",
                        gt ? md_tensor_describe(gt, b2, sizeof b2) : "NULL");
    }
    int64_t n = bboxes->shape[0], k = gt->shape[0], total = 0;
    if (!levels || levels->n < 1 || levels->n > MD_MAX_LEVELS || !levels->counts)
        return md_failc(err, MD_ERR_CONFIG, "ATSSAssigner: needs the boxes' per-level counts (num_level_bboxes); "
                        "its head must assign with md_bbox_assign_levels");
    for (int l = 0; l < levels->n; l++) total += levels->counts[l] >= 0 ? levels->counts[l] : n + 1;
    if (total != n)
        return md_failc(err, MD_ERR_SHAPE, "ATSSAssigner: the per-level counts sum to %lld, there are %lld boxes",
                        (long long)total, (long long)n);
    if (a->use_alpha && (!levels->cls_scores || !levels->bbox_preds || !gt_labels))
        return md_failc(err, MD_ERR_CONFIG, "ATSSAssigner: alpha %g needs the head's cls_scores and bbox_preds (in "
                        "md_assign_levels) and the gt labels; got %s, %s and %s", (double)a->alpha,
                        levels->cls_scores ? "cls_scores" : "no cls_scores",
                        levels->bbox_preds ? "bbox_preds" : "no bbox_preds", gt_labels ? "labels" : "no labels");
    out->num_gts = k;
    out->gt_inds = md_tensor_zeros(ctx, MD_I64, MD_DIMS(n));
    out->max_overlaps = md_tensor_zeros(ctx, MD_F32, MD_DIMS(n));
    out->labels = gt_labels ? md_tensor_full(ctx, MD_I64, MD_DIMS(n), -1) : NULL;
    if (!out->gt_inds || !out->max_overlaps || (gt_labels && !out->labels)) goto op_failed;
    if (k == 0 || n == 0) return 0;   /* everything background */
    if (bboxes->shape[1] != 4 && !(bboxes = md_contiguous(ctx, md_slice(ctx, bboxes, 1, 0, 4, 1)))) goto op_failed;

    int64_t *inds = md_i64(out->gt_inds);
    float *maxo = md_f32(out->max_overlaps);
    bool was = md_grad_set_enabled(ctx, false);
    md_tensor *ov = a->use_alpha ? dynamic_cost(ctx, a, levels, gt, gt_labels, n, err)   /* [N, K] */
                                 : md_contiguous(ctx, md_iou_calculator_overlaps(ctx, a->iou, bboxes, gt, MD_IOU, false));
    if (a->use_alpha && !ov) {
        md_grad_set_enabled(ctx, was);
        return -1;
    }
    md_tensor *ign = NULL;
    bool use_ignore = a->ignore_iof_thr > 0 && gt_ignore && md_tensor_numel(gt_ignore) > 0;
    if (use_ignore)
        ign = md_contiguous(ctx, md_max(ctx, md_iou_calculator_overlaps(ctx, a->iou, bboxes, gt_ignore, MD_IOF, false),
                                        1, false, NULL));
    md_grad_set_enabled(ctx, was);
    if (!ov || (use_ignore && !ign)) goto op_failed;
    const float *o = md_f32(ov), *b = md_f32(bboxes), *g = md_f32(gt);

    /* centre distances [N, K], f32 as mmdet's */
    int64_t C = 0;
    for (int l = 0; l < levels->n; l++) C += levels->counts[l] < a->topk ? levels->counts[l] : a->topk;
    float *dist = md_ctx_alloc(ctx, sizeof(float) * (size_t)(n * k));
    float *bcx = md_ctx_alloc(ctx, sizeof(float) * (size_t)n), *bcy = md_ctx_alloc(ctx, sizeof(float) * (size_t)n);
    int64_t *cand = md_ctx_alloc(ctx, sizeof(int64_t) * (size_t)(C * k + 1));   /* [C, K] */
    float *best = md_ctx_alloc(ctx, sizeof(float) * (size_t)n);
    if (!dist || !bcx || !bcy || !cand || !best) return md_failc(err, MD_ERR_NOMEM, "ATSSAssigner: out of memory");
    for (int64_t j = 0; j < n; j++) {
        bcx[j] = (b[j * 4] + b[j * 4 + 2]) / 2.0f;
        bcy[j] = (b[j * 4 + 1] + b[j * 4 + 3]) / 2.0f;
    }
    for (int64_t i = 0; i < k; i++) {
        float gcx = (g[i * 4] + g[i * 4 + 2]) / 2.0f, gcy = (g[i * 4 + 1] + g[i * 4 + 3]) / 2.0f;
        for (int64_t j = 0; j < n; j++) {
            float dx = bcx[j] - gcx, dy = bcy[j] - gcy;
            dist[j * k + i] = sqrtf(dx * dx + dy * dy);
        }
    }
    if (ign) {
        for (int64_t j = 0; j < n; j++)
            if (md_f32(ign)[j] > (float)a->ignore_iof_thr) {
                for (int64_t i = 0; i < k; i++) dist[j * k + i] = INF;
                inds[j] = -1;
            }
    }
    /* candidates: per level and gt the topk nearest centres */
    for (int64_t i = 0; i < k; i++) {
        int64_t start = 0, row = 0;
        int64_t *tmp = md_ctx_alloc(ctx, sizeof(int64_t) * (size_t)a->topk);
        if (!tmp) return md_failc(err, MD_ERR_NOMEM, "ATSSAssigner: out of memory");
        for (int l = 0; l < levels->n; l++) {
            int64_t cnt = levels->counts[l], sel = cnt < a->topk ? cnt : a->topk;
            k_nearest(dist + start * k + i, cnt, k, sel, tmp);
            for (int64_t q = 0; q < sel; q++) cand[(row + q) * k + i] = start + tmp[q];
            row += sel;
            start += cnt;
        }
    }
    /* per gt: IoU threshold mean + std of its candidates; positives reach
     * it with their centre inside the gt */
    for (int64_t j = 0; j < n; j++) best[j] = -INF;
    for (int64_t i = 0; i < k; i++) {
        double sum = 0, sq = 0;
        for (int64_t c = 0; c < C; c++) sum += o[cand[c * k + i] * k + i];
        float mean = (float)(sum / (double)C);
        for (int64_t c = 0; c < C; c++) {
            double d = o[cand[c * k + i] * k + i] - sum / (double)C;
            sq += d * d;
        }
        /* torch's std is unbiased: NaN for one candidate, and then nothing passes */
        float thr = mean + (float)(C > 1 ? sqrt(sq / (double)(C - 1)) : NAN);
        const float *gi = g + i * 4;
        for (int64_t c = 0; c < C; c++) {
            int64_t j = cand[c * k + i];
            float v = o[j * k + i];
            float in = fminf(fminf(bcx[j] - gi[0], bcy[j] - gi[1]), fminf(gi[2] - bcx[j], gi[3] - bcy[j]));
            if (!(v >= thr) || !(in > 0.01f)) continue;
            /* several gts: the highest IoU, the first gt on a tie (gts in order) */
            if (v > best[j]) {
                best[j] = v;
                inds[j] = i + 1;
            }
        }
    }
    for (int64_t j = 0; j < n; j++) maxo[j] = best[j];
    if (gt_labels) {
        int64_t *lab = md_i64(out->labels);
        for (int64_t j = 0; j < n; j++)
            if (inds[j] > 0) lab[j] = md_i64(gt_labels)[inds[j] - 1];
    }
    return 0;
op_failed:
    return md_error_from_ctx(ctx, err, "ATSSAssigner");
}

static int assign(md_ctx *ctx, const md_bbox_assigner *ba, md_tensor *bboxes, md_tensor *gt, md_tensor *gt_ignore,
                  md_tensor *gt_labels, md_assign_result *out, md_error *err) {
    return assign_levels(ctx, ba, bboxes, NULL, gt, gt_ignore, gt_labels, out, err);
}

static void destroy(md_bbox_assigner *ba) {
    assigner *a = (assigner *)ba;
    MD_BBOX_DESTROY(a->iou);
    free(a);
}
static const md_bbox_assigner_iface iface = { .assign = assign, .assign_levels = assign_levels, .destroy = destroy };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    assigner *a = md_object_new(sizeof *a, &iface, "ATSSAssigner", cfg, keys, err);
    if (!a) return NULL;
    if (a->alpha_cfg) {
        md_cfg_type t = md_cfg_kind(a->alpha_cfg);
        double v = t == MD_CFG_INT || t == MD_CFG_FLOAT ? md_cfg_as_float(a->alpha_cfg) : NAN;
        if (!isfinite(v)) {
            md_failc(err, MD_ERR_CONFIG, "%s:%d: alpha must be None or a number", md_cfg_file(a->alpha_cfg),
                     md_cfg_line(a->alpha_cfg));
            free(a);
            return NULL;
        }
        a->use_alpha = true;
        a->alpha = (float)v;
    }
    if (!(a->iou = md_build_part(ctx, "iou_calculators", cfg, "iou_calculator", err))) {
        free(a);
        return NULL;
    }
    return a;
}

static const md_class cls = { .name = "ATSSAssigner", .keys = keys, .build = build,
                              MD_IFACE(&iface, MD_IFACE_BBOX_ASSIGNER),
                              .doc = "mmdet's adaptive training sample selection (per-level nearest centres, "
                                     "IoU above mean + std)" };
MD_PLUGIN("atss_assigner", "1.0", "Apache-2.0");
MD_REGISTER("bbox_assigners", cls)
