/* Private to the model layer: mmdet 2.x's BaseDenseHead.get_bboxes
 * (_get_bboxes_single, _bbox_post_process), shared by the AnchorHead and
 * AnchorFreeHead bases, which describe their outputs with md__dense_post. */
#ifndef MMDET_MODELS_DENSE_BBOXES_H
#define MMDET_MODELS_DENSE_BBOXES_H

#include <mmdet/bbox.h>

/* How to read a dense head's per-level outputs cls_scores [N, A * Co, H, W]
 * and bbox_preds [N, A * reg_channels, H, W]. */
typedef struct md__dense_post {
    const md_prior_generator *prior_generator;
    const md_bbox_coder *bbox_coder;
    int64_t num_classes, cls_out_channels;   /* Co: num_classes (sigmoid) or num_classes + 1 (softmax) */
    int64_t num_base_priors;                 /* A */
    bool use_sigmoid;
    /* Channels of bbox_pred per prior: 4, or more when a head carries an
     * extra output there (AnchorFreeHead's score factor). */
    int64_t reg_channels;
    /* The channel (of a prior's reg_channels) holding a score-factor logit,
     * whose sigmoid multiplies the scores after the nms_pre selection
     * (mmdet's with_score_factors: FCOS's centerness); -1: none. */
    int64_t score_factor_channel;
} md__dense_post;

/* get_bboxes of a batch: per level the nms_pre best (prior, class) scores
 * above score_thr, decoded from their priors and clipped to img_shape,
 * scores times the score factors, rescaled; then class-wise NMS and
 * max_per_img (with_nms), or the candidates as they are. tc NULL: the
 * head's test_cfg `own` (an error naming `name` when that is NULL too). */
int md__dense_get_bboxes(md_ctx *ctx, const char *name, const md__dense_post *p, md_tensor *const *cls_scores,
                         md_tensor *const *bbox_preds, int n, const md_batch *batch, const md_dense_test_cfg *tc,
                         const md_dense_test_cfg *own, bool rescale, bool with_nms, md_det_result *results,
                         md_error *err);

#endif
