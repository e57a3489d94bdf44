/* mmdet's MaxIoUAssigner (mmdet/core/bbox/assigners/max_iou_assigner.py):
 * each box goes to the gt it overlaps most when the IoU reaches pos_iou_thr,
 * is negative below neg_iou_thr (a float or a [lo, hi) pair), and is
 * otherwise ignored (-1); with match_low_quality each gt also takes the
 * boxes of its highest IoU (all of them with gt_max_assign_all) when that
 * IoU reaches min_pos_iou. Boxes overlapping ignored gts by more than
 * ignore_iof_thr (IoF) are ignored. Overlaps come from the iou_calculator
 * it builds through the "iou_calculators" registry (BboxOverlaps2D). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>

typedef struct assigner {
    md_bbox_assigner base;
    md_iou_calculator *iou;
    double pos_iou_thr, neg_lo, neg_hi, min_pos_iou, ignore_iof_thr;
    bool neg_pair, gt_max_assign_all, ignore_wrt_candidates, match_low_quality;
} assigner;

static const md_key keys[] = {
    { "pos_iou_thr", MD_KEY_FLOAT, NULL, "IoU for a positive", true, MD_AT(assigner, pos_iou_thr) },
    { "neg_iou_thr", MD_KEY_ANY, NULL, "IoU below which a box is negative, or [lo, hi)", true, .field = MD_FIELD_NONE },
    { "min_pos_iou", MD_KEY_FLOAT, "0.0", "least IoU for a low-quality match", false, MD_AT(assigner, min_pos_iou) },
    { "gt_max_assign_all", MD_KEY_BOOL, "true", "a gt takes every box of its highest IoU", false,
      MD_AT(assigner, gt_max_assign_all) },
    { "ignore_iof_thr", MD_KEY_FLOAT, "-1.0", "IoF with an ignored gt above which a box is ignored", false,
      MD_AT(assigner, ignore_iof_thr) },
    { "ignore_wrt_candidates", MD_KEY_BOOL, "true", "IoF relative to the boxes (else to the ignored gts)", false,
      MD_AT(assigner, ignore_wrt_candidates) },
    { "match_low_quality", MD_KEY_BOOL, "true", "allow low-quality matches", false, MD_AT(assigner, match_low_quality) },
    { "gpu_assign_thr", MD_KEY_INT, "-1", "accepted for compatibility (no effect)", false },
    { "iou_calculator", MD_KEY_GROUP, "{ type = \"BboxOverlaps2D\"; }", "what measures overlaps (iou_calculators)",
      false },
    { 0 } };

static int assign(md_ctx *ctx, const md_bbox_assigner *ba, md_tensor *bboxes, md_tensor *gt, md_tensor *gt_ignore,
                  md_tensor *gt_labels, md_assign_result *out, md_error *err) {
    const assigner *a = (const assigner *)ba;
    memset(out, 0, sizeof *out);
    /* assignment is host logic: device inputs are read from CPU copies, the
     * results are CPU tensors */
    bboxes = md_tensor_to(ctx, bboxes, MD_DEVICE_CPU);
    gt = md_tensor_to(ctx, gt, MD_DEVICE_CPU);
    gt_ignore = md_tensor_to(ctx, gt_ignore, MD_DEVICE_CPU);
    gt_labels = md_tensor_to(ctx, gt_labels, MD_DEVICE_CPU);
    if (!bboxes || !gt || bboxes->ndim != 2 || bboxes->shape[1] != 4 || gt->ndim != 2 || gt->shape[1] != 4 ||
        (gt_labels && (gt_labels->dtype != MD_I64 || md_tensor_numel(gt_labels) != gt->shape[0]))) {
        char b1[64], b2[64];
        return md_failc(err, MD_ERR_SHAPE, "MaxIoUAssigner: bboxes %s and gt_bboxes %s must be [N, 4] (labels i64 [K])",
                        bboxes ? md_tensor_describe(bboxes, b1, sizeof b1) : "NULL",
                        gt ? md_tensor_describe(gt, b2, sizeof b2) : "NULL");
    }
    int64_t n = bboxes->shape[0], k = gt->shape[0];
    out->num_gts = k;
    out->gt_inds = md_tensor_full(ctx, MD_I64, MD_DIMS(n), -1);
    out->max_overlaps = md_tensor_zeros(ctx, MD_F32, MD_DIMS(n));
    out->labels = gt_labels ? md_tensor_full(ctx, MD_I64, MD_DIMS(n), -1) : NULL;
    if (!out->gt_inds || !out->max_overlaps || (gt_labels && !out->labels)) goto op_failed;
    int64_t *inds = md_i64(out->gt_inds);
    float *maxo = md_f32(out->max_overlaps);
    if (k == 0 || n == 0) {
        if (k == 0)
            for (int64_t i = 0; i < n; i++) inds[i] = 0;
        return 0;
    }
    bool was = md_grad_set_enabled(ctx, false);
    md_tensor *ov = md_contiguous(ctx, md_iou_calculator_overlaps(ctx, a->iou, gt, bboxes, MD_IOU, false)); /* [K, N] */
    md_tensor *ign = NULL;
    bool use_ignore = a->ignore_iof_thr > 0 && gt_ignore && md_tensor_numel(gt_ignore) > 0;
    if (use_ignore) {
        /* IoF of each box with the ignored gts, relative to the boxes or to the gts */
        bool wrt = a->ignore_wrt_candidates;
        md_tensor *iof = md_iou_calculator_overlaps(ctx, a->iou, wrt ? bboxes : gt_ignore, wrt ? gt_ignore : bboxes,
                                                    MD_IOF, false);
        ign = md_contiguous(ctx, md_max(ctx, iof, wrt ? 1 : 0, false, NULL));
    }
    md_grad_set_enabled(ctx, was);
    if (!ov || (use_ignore && !ign)) goto op_failed;
    float *o = md_f32(ov);
    if (ign) {
        const float *im = md_f32(ign);
        for (int64_t j = 0; j < n; j++)
            if (im[j] > (float)a->ignore_iof_thr)
                for (int64_t i = 0; i < k; i++) o[i * n + j] = -1.0f;
    }
    /* max over gts per box (first maximum wins, as torch's CPU max) */
    int64_t *argmax = md_ctx_alloc(ctx, sizeof(int64_t) * (size_t)n);
    float *gt_max = md_ctx_alloc(ctx, sizeof(float) * (size_t)k);
    if (!argmax || !gt_max) return md_failc(err, MD_ERR_NOMEM, "MaxIoUAssigner: out of memory");
    for (int64_t j = 0; j < n; j++) {
        float best = o[j];
        int64_t bi = 0;
        for (int64_t i = 1; i < k; i++)
            if (o[i * n + j] > best) {
                best = o[i * n + j];
                bi = i;
            }
        maxo[j] = best;
        argmax[j] = bi;
    }
    for (int64_t i = 0; i < k; i++) {
        float best = o[i * n];
        for (int64_t j = 1; j < n; j++)
            if (o[i * n + j] > best) best = o[i * n + j];
        gt_max[i] = best;
    }
    /* negatives, then positives, then low-quality matches (later wins) */
    for (int64_t j = 0; j < n; j++) {
        float m = maxo[j];
        bool neg = a->neg_pair ? (m >= (float)a->neg_lo && m < (float)a->neg_hi) : (m >= 0.0f && m < (float)a->neg_hi);
        if (neg) inds[j] = 0;
        if (m >= (float)a->pos_iou_thr) inds[j] = argmax[j] + 1;
    }
    if (a->match_low_quality) {
        for (int64_t i = 0; i < k; i++) {
            if (!(gt_max[i] >= (float)a->min_pos_iou)) continue;
            if (a->gt_max_assign_all) {
                for (int64_t j = 0; j < n; j++)
                    if (o[i * n + j] == gt_max[i]) inds[j] = i + 1;
            } else {
                int64_t bj = 0;   /* first argmax */
                for (int64_t j = 1; j < n; j++)
                    if (o[i * n + j] > o[i * n + bj]) bj = j;
                inds[bj] = i + 1;
            }
        }
    }
    if (gt_labels) {
        md_tensor *gl = md_contiguous(ctx, gt_labels);
        if (!gl) goto op_failed;
        int64_t *lab = md_i64(out->labels);
        for (int64_t j = 0; j < n; j++)
            if (inds[j] > 0) lab[j] = md_i64(gl)[inds[j] - 1];
    }
    return 0;
op_failed:
    return md_error_from_ctx(ctx, err, "MaxIoUAssigner");
}

static void destroy(md_bbox_assigner *ba) {
    assigner *a = (assigner *)ba;
    if (a->iou) a->iou->iface->destroy(a->iou);
    free(a);
}
static const md_bbox_assigner_iface iface = { .assign = assign, .destroy = destroy };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    assigner *a = md_object_new(sizeof *a, &iface, "MaxIoUAssigner", cfg, keys, err);
    if (!a) return NULL;
    const md_cfg *neg = md_cfg_get(cfg, "neg_iou_thr");
    if (md_cfg_kind(neg) == MD_CFG_LIST) {
        double v[2];
        if (md_cfg_float_array(cfg, "neg_iou_thr", v, 2, err) != 2) {
            if (!md_error_is_set(err)) md_failc(err, MD_ERR_CONFIG, "neg_iou_thr: a number or a [lo, hi) pair");
            free(a);
            return NULL;
        }
        a->neg_pair = true;
        a->neg_lo = v[0];
        a->neg_hi = v[1];
    } else if (md_cfg_kind(neg) == MD_CFG_FLOAT || md_cfg_kind(neg) == MD_CFG_INT) {
        a->neg_hi = md_cfg_as_float(neg);
    } else {
        md_failc(err, MD_ERR_CONFIG, "neg_iou_thr: a number or a [lo, hi) pair");
        free(a);
        return NULL;
    }
    if (!(a->iou = md_build_part(ctx, "iou_calculators", cfg, "iou_calculator", err))) {
        free(a);
        return NULL;
    }
    return a;
}

static const md_class cls = { .name = "MaxIoUAssigner", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_BBOX_ASSIGNER),
                              .doc = "mmdet's max-IoU assigner" };
MD_PLUGIN("max_iou_assigner", "1.0", "Apache-2.0");
MD_REGISTER("bbox_assigners", cls)
