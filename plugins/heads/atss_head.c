/* mmdet's ATSSHead (mmdet/models/dense_heads/atss_head.py) on the
 * library's AnchorHead (anchor_head.h), which owns the anchors, the
 * assignment (ATSSAssigner is told the anchors' levels), the targets and
 * get_bboxes. This file is ATSS's difference:
 * - its keys and mmdet's defaults: AnchorHead's, with reg_decoded_bbox
 *   true (loss_bbox on the decoded boxes: GIoULoss in mmdet's configs), a
 *   GN head (norm_cfg), pred_kernel_size, loss_centerness (sigmoid
 *   CrossEntropyLoss);
 * - the layers: cls_convs.N / reg_convs.N ConvModules, atss_cls, atss_reg,
 *   atss_centerness and a learnable Scale per level (scales.N.scale), init
 *   Normal(0, 0.01) with atss_cls's bias from prior probability 0.01;
 * - the per-level forward: scaled deltas (no exp) and the centerness logit
 *   from the reg branch, carried as bbox_pred's fifth channel per anchor,
 *   the score factor get_bboxes multiplies the class scores by;
 * - the loss: loss_cls over every anchor averaged over num_total_samples
 *   (the positives of the batch, at least 1 per image); over the
 *   positives, the centerness of each anchor's centre in its gt box as
 *   target, loss_bbox of the decoded boxes against the gt boxes weighted
 *   by it and averaged over its sum (at least 1), loss_centerness averaged
 *   over num_total_samples. Without positives both are zeros in the graph.
 * mmdet's ATSSHead always samples with a PseudoSampler; so does the base
 * when train_cfg names no sampler, as ATSS's configs do. */
#include <math.h>
#include <string.h>
#include <mmdet/anchor_head.h>
#include <mmdet/mmdet.h>

typedef struct atss_head {
    md_anchor_head base;
    int stacked_convs, pred_kernel_size;
    const md_cfg *conv_cfg, *norm_cfg;
    md_conv_module_opts norm;   /* the stacked convs' ConvModule settings */
    md_tensor *scale[MD_MAX_LEVELS];
} atss_head;

static const md_key keys[] = {
    MD_DENSE_HEAD_NUM_CLASSES_KEY,
    MD_ANCHOR_HEAD_KEYS_DECODED(MD_ANCHOR_HEAD_DEFAULT_ANCHORS, "true"),
    { "loss_centerness", MD_KEY_GROUP, "{ type = \"CrossEntropyLoss\"; use_sigmoid = true; loss_weight = 1.0; }",
      "centerness loss (losses registry)", false },
    { "stacked_convs", MD_KEY_INT, "4", "3x3 ConvModules per branch", false, MD_AT(atss_head, stacked_convs), .min = "0" },
    { "pred_kernel_size", MD_KEY_INT, "3", "kernel of atss_cls, atss_reg and atss_centerness (odd)", false,
      MD_AT(atss_head, pred_kernel_size), .min = "1" },
    { "conv_cfg", MD_KEY_ANY, "None", "only None", false, MD_AT(atss_head, conv_cfg) },
    { "norm_cfg", MD_KEY_ANY, "{ type = \"GN\"; num_groups = 32; requires_grad = true; }",
      "None, { type = \"GN\"; num_groups = 32; } or { type = \"BN\"; } for the stacked convs", false,
      MD_AT(atss_head, norm_cfg) },
    { 0 } };

/* mmdet's _init_layers; the keys mmdet asserts on are checked here, once
 * the schema has filled the struct. */
static int init_layers(md_ctx *ctx, md_anchor_head *ah, md_error *err) {
    atss_head *h = (atss_head *)ah;
    md_module *m = &ah->base;
    if (!ah->reg_decoded_bbox)
        return md_failc(err, MD_ERR_CONFIG, "reg_decoded_bbox: ATSSHead regresses decoded boxes (only true)");
    if (h->pred_kernel_size % 2 == 0)
        return md_failc(err, MD_ERR_CONFIG, "pred_kernel_size: %d is even (the predictors keep the size)",
                        h->pred_kernel_size);
    if (h->conv_cfg) return md_failc(err, MD_ERR_CONFIG, "conv_cfg: only None is supported");
    if (md_norm_cfg_read(h->norm_cfg, "norm_cfg", "BN,SyncBN,GN", &h->norm, err)) return -1;
    h->norm.bias = -1;   /* ConvModule's bias "auto": none before a norm */
    int S = h->stacked_convs, f = ah->feat_channels, A = ah->num_base_priors, k = h->pred_kernel_size;
    int in = S ? f : ah->in_channels;
    int nl = ah->prior_generator->iface->num_levels(ah->prior_generator);
    if (nl > MD_MAX_LEVELS) return md_failc(err, MD_ERR_CONFIG, "anchor_generator: %d levels, at most %d", nl, MD_MAX_LEVELS);
    return md_head_add_stacked_convs(ctx, m, "cls_convs", S, ah->in_channels, f, &h->norm, 0.01, err) ||
                   md_head_add_stacked_convs(ctx, m, "reg_convs", S, ah->in_channels, f, &h->norm, 0.01, err) ||
                   md_anchor_head_add_conv(ctx, m, "atss_cls", in, A * ah->cls_out_channels, k, 0.01,
                                           md_bias_init_with_prob(0.01), err) ||
                   md_anchor_head_add_conv(ctx, m, "atss_reg", in, A * 4, k, 0.01, 0.0, err) ||
                   md_anchor_head_add_conv(ctx, m, "atss_centerness", in, A, k, 0.01, 0.0, err) ||
                   md_head_add_scales(ctx, m, nl, h->scale, err)
               ? -1
               : 0;
}

static int forward_single(md_ctx *ctx, md_anchor_head *ah, md_tensor *x, int level, md_tensor **cls,
                          md_tensor **reg) {
    atss_head *h = (atss_head *)ah;
    md_module *m = &ah->base;
    md_tensor *c = md_head_stacked_forward(ctx, m, "cls_convs", h->stacked_convs, x);
    md_tensor *r = md_head_stacked_forward(ctx, m, "reg_convs", h->stacked_convs, x);
    *cls = md_module_call(ctx, m, "atss_cls", c);
    /* mmdet follows ATSS: the scaled deltas, no exp */
    md_tensor *b = md_mul(ctx, md_module_call(ctx, m, "atss_reg", r), h->scale[level]);
    md_tensor *ctr = md_module_call(ctx, m, "atss_centerness", r);
    if (c && c != x) md_tensor_release(ctx, c);
    if (r && r != x) md_tensor_release(ctx, r);
    *reg = md_anchor_head_add_score_factor(ctx, b, ctr);
    return *cls && *reg ? 0 : -1;
}

/* mmdet's centerness_target: how central each anchor's centre lies in its
 * gt box, sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)). */
static float centerness(const float *a, const float *g) {
    float cx = (a[2] + a[0]) / 2, cy = (a[3] + a[1]) / 2;
    float l = cx - g[0], t = cy - g[1], r = g[2] - cx, b = g[3] - cy;
    return sqrtf(fminf(l, r) / fmaxf(l, r) * (fminf(t, b) / fmaxf(t, b)));
}

static int loss(md_ctx *ctx, md_module *m, md_tensor *const *cls, md_tensor *const *reg, int n,
                const md_batch *batch, md_losses *losses, md_error *err) {
    md_anchor_head *h = md_anchor_head_of(m);
    const char *name = m->cls->name;
    md_anchor_loss_inputs in;
    if (md_anchor_head_loss_inputs(ctx, h, cls, reg, n, batch, &in, err)) return -1;
    md_device dev = md_tensor_device(cls[0]);
    double avg = in.num_total_samples > 1 ? in.num_total_samples : 1.0;
    md_tensor *lc = md_loss_forward(ctx, h->loss_cls, in.cls, md_tensor_to(ctx, in.labels, dev),
                                    md_tensor_to(ctx, in.label_weights, dev), avg, MD_REDUCE_DEFAULT);
    /* the positives, on the host */
    int64_t rows = md_tensor_numel(in.labels), T = in.anchors->shape[0], P = 0;
    int64_t *pos = md_ctx_alloc(ctx, sizeof *pos * (size_t)(rows + 1));
    if (!pos) return md_error_from_ctx(ctx, err, "%s: loss", name);
    for (int64_t r = 0; r < rows; r++)
        if (md_i64(in.labels)[r] >= 0 && md_i64(in.labels)[r] < h->num_classes) pos[P++] = r;
    md_tensor *lb, *ls;
    if (P == 0) {
        /* mmdet: bbox_pred.sum() * 0 and centerness.sum() * 0 */
        md_tensor *all = md_sum(ctx, in.reg, MD_DIM_ALL, false);
        lb = md_mul_scalar(ctx, all, 0.0);
        ls = md_mul_scalar(ctx, all, 0.0);
    } else {
        md_tensor *pidx = md_tensor_from(ctx, MD_I64, MD_DIMS(P), pos);
        md_tensor *anc = md_tensor_empty(ctx, MD_F32, MD_DIMS(P, 4)), *ctr = md_tensor_empty(ctx, MD_F32, MD_DIMS(P));
        md_tensor *gt = md_index_select(ctx, in.bbox_targets, 0, pidx);   /* the gt boxes (reg_decoded_bbox) */
        if (!pidx || !anc || !ctr || !gt) return md_error_from_ctx(ctx, err, "%s: loss", name);
        double ctr_sum = 0;
        for (int64_t p = 0; p < P; p++) {
            memcpy(md_f32(anc) + p * 4, md_f32(in.anchors) + (pos[p] % T) * 4, 4 * sizeof(float));
            md_f32(ctr)[p] = centerness(md_f32(anc) + p * 4, md_f32(gt) + p * 4);
            ctr_sum += md_f32(ctr)[p];
        }
        md_tensor *pos_reg = md_index_select(ctx, in.reg, 0, md_tensor_to(ctx, pidx, dev));
        md_tensor *pred = md_contiguous(ctx, md_slice(ctx, pos_reg, 1, 0, 4, 1));
        md_tensor *pctr = md_reshape(ctx, md_slice(ctx, pos_reg, 1, 4, 5, 1), MD_DIMS(-1));
        md_tensor *boxes = pred ? md_bbox_decode(ctx, h->bbox_coder, md_tensor_to(ctx, anc, dev), pred, NULL) : NULL;
        md_tensor *ctr_d = md_tensor_to(ctx, ctr, dev);
        /* mmdet: per level with avg_factor 1, the sum over the centerness
         * targets' sum (reduce_mean, clamped at 1) */
        lb = boxes ? md_loss_forward(ctx, h->loss_bbox, boxes, md_tensor_to(ctx, gt, dev), ctr_d,
                                     ctr_sum > 1 ? ctr_sum : 1.0, MD_REDUCE_DEFAULT)
                   : NULL;
        ls = pctr ? md_loss_forward(ctx, h->loss_score_factor, pctr, ctr_d, NULL, avg, MD_REDUCE_DEFAULT) : NULL;
    }
    if (!lc || !lb || !ls) return md_error_from_ctx(ctx, err, "%s: loss", name);
    if (md_losses_add(losses, "loss_cls", lc, err) || md_losses_add(losses, "loss_bbox", lb, err) ||
        md_losses_add(losses, "loss_centerness", ls, err))
        return -1;
    return 0;
}

static const md_anchor_head_class atss = {
    .dense = MD_ANCHOR_HEAD_DENSE_LOSS("ATSSHead", loss, md_anchor_head_get_bboxes),
    .size = sizeof(atss_head),
    .keys = keys,
    .init_layers = init_layers,
    .forward_single = forward_single,
    .with_score_factors = true,
    .loss_score_factor_key = "loss_centerness",
};

MD_PLUGIN("atss_head", "1.0", "Apache-2.0");
MD_ANCHOR_HEAD_REGISTER(atss, "ATSSHead", keys, "mmdet's ATSS head (an AnchorHead: GN convs, centerness, Scale per level)")
