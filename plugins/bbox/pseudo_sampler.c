/* mmdet's PseudoSampler (mmdet/core/bbox/samplers/pseudo_sampler.py): every
 * positive and every negative of the assignment, no gt added as proposal;
 * the result is mmdet's SamplingResult. */
#include <stdlib.h>
#include <string.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>

static const md_key keys[] = { { 0 } };

static int sample(md_ctx *ctx, const md_bbox_sampler *s, const md_assign_result *ar, md_tensor *bboxes,
                  md_tensor *gt_bboxes, md_tensor *gt_labels, md_rng *rng, md_sampling_result *out, md_error *err) {
    (void)s;
    (void)rng;
    (void)gt_labels;
    memset(out, 0, sizeof *out);
    /* sampling is host logic on CPU copies; the results are CPU tensors */
    bboxes = md_tensor_to(ctx, bboxes, MD_DEVICE_CPU);
    gt_bboxes = md_tensor_to(ctx, gt_bboxes, MD_DEVICE_CPU);
    if (!ar || !ar->gt_inds || !bboxes || !gt_bboxes || bboxes->ndim != 2 || bboxes->shape[1] != 4 ||
        bboxes->shape[0] != md_tensor_numel(ar->gt_inds))
        return md_failc(err, MD_ERR_SHAPE, "PseudoSampler: bboxes must be [N, 4] with N the assigned count");
    int64_t n = bboxes->shape[0], np = 0, nn = 0;
    const int64_t *inds = md_i64(ar->gt_inds);
    for (int64_t i = 0; i < n; i++) {
        np += inds[i] > 0;
        nn += inds[i] == 0;
    }
    out->num_gts = ar->num_gts;
    out->pos_inds = md_tensor_empty(ctx, MD_I64, MD_DIMS(np));
    out->neg_inds = md_tensor_empty(ctx, MD_I64, MD_DIMS(nn));
    out->pos_assigned_gt_inds = md_tensor_empty(ctx, MD_I64, MD_DIMS(np));
    out->pos_is_gt = md_tensor_zeros(ctx, MD_U8, MD_DIMS(np));
    if (ar->labels) out->pos_gt_labels = md_tensor_empty(ctx, MD_I64, MD_DIMS(np));
    if (!out->pos_inds || !out->neg_inds || !out->pos_assigned_gt_inds || !out->pos_is_gt ||
        (ar->labels && !out->pos_gt_labels))
        goto op_failed;
    int64_t *pi = md_i64(out->pos_inds), *ni = md_i64(out->neg_inds), *pa = md_i64(out->pos_assigned_gt_inds);
    for (int64_t i = 0, p = 0, q = 0; i < n; i++) {
        if (inds[i] > 0) {
            if (out->pos_gt_labels) md_i64(out->pos_gt_labels)[p] = md_i64(ar->labels)[i];
            pa[p] = inds[i] - 1;
            pi[p++] = i;
        } else if (inds[i] == 0) {
            ni[q++] = i;
        }
    }
    bool was = md_grad_set_enabled(ctx, false);
    out->pos_bboxes = md_index_select(ctx, bboxes, 0, out->pos_inds);
    out->neg_bboxes = md_index_select(ctx, bboxes, 0, out->neg_inds);
    if (md_tensor_numel(gt_bboxes) == 0)
        out->pos_gt_bboxes = md_tensor_empty(ctx, MD_F32, MD_DIMS(0, 4));
    else
        out->pos_gt_bboxes = md_index_select(ctx, gt_bboxes, 0, out->pos_assigned_gt_inds);
    md_grad_set_enabled(ctx, was);
    if (!out->pos_bboxes || !out->neg_bboxes || !out->pos_gt_bboxes) goto op_failed;
    return 0;
op_failed:
    return md_error_from_ctx(ctx, err, "PseudoSampler");
}

static void destroy(md_bbox_sampler *s) { free(s); }
static const md_bbox_sampler_iface iface = { .sample = sample, .destroy = destroy };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    (void)cfg;
    md_bbox_sampler *s = calloc(1, sizeof *s);
    if (!s) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->iface = &iface;
    s->type = "PseudoSampler";
    return s;
}

static const md_class cls = { .name = "PseudoSampler", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_BBOX_SAMPLER),
                              .doc = "takes every positive and negative of the assignment" };
MD_PLUGIN("pseudo_sampler", "1.0", "Apache-2.0");
MD_REGISTER("bbox_samplers", cls)
