/* mmdet's FCOSHead (mmdet/models/dense_heads/fcos_head.py) on the
 * library's AnchorFreeHead (anchor_free_head.h), which owns the layers
 * (cls_convs, reg_convs, conv_cls, conv_reg), the points, the targets over
 * the batch, the loss and get_bboxes. This file is FCOS's difference:
 * - its keys: regress_ranges, center_sampling, center_sample_radius,
 *   norm_on_bbox, centerness_on_reg, loss_centerness, and mmdet's defaults
 *   (GN head, FocalLoss, IoULoss, sigmoid CrossEntropyLoss for the
 *   centerness, strides 4 to 64 as AnchorFreeHead's);
 * - the layers: conv_centerness and a learnable Scale per level
 *   (scales.N.scale);
 * - the per-level forward: the distances scaled, then exp, or with
 *   norm_on_bbox clamped at 0 and, in eval mode only, times the stride;
 *   the centerness logit from the cls branch or, with centerness_on_reg,
 *   from the reg branch (the fifth channel of bbox_pred);
 * - the target rule (_get_target_single): a point is positive for the
 *   smallest gt box it lies in (with center_sampling: within
 *   center_sample_radius strides of the box centre, cut to the box) whose
 *   largest distance falls in its level's regress range; the targets are
 *   its distances (over the stride with norm_on_bbox) and its centerness,
 *   which weighs loss_bbox (averaged over the centerness sum) and is the
 *   target of loss_centerness (averaged over the positives).
 * mmdet's train_cfg (an unused MaxIoUAssigner in its configs) is accepted
 * and not read, as mmdet's FCOSHead. */
#include <math.h>
#include <stdio.h>
#include <mmdet/anchor_free_head.h>
#include <mmdet/mmdet.h>

#define INF 1e8f   /* mmdet's INF: the open end of the last regress range */

typedef struct fcos {
    md_anchor_free_head base;
    const md_cfg *regress_ranges_cfg;
    bool center_sampling, norm_on_bbox, centerness_on_reg;
    double radius;
    float ranges[MD_MAX_LEVELS][2];
    md_tensor *scale[MD_MAX_LEVELS];
} fcos;

static const md_key keys[] = {
    MD_ANCHOR_FREE_HEAD_KEYS("{ type = \"GN\"; num_groups = 32; requires_grad = true; }"),
    { "regress_ranges", MD_KEY_LIST, "((-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8))",
      "[lo, hi] of the largest distance a point of each level regresses", false, MD_AT(fcos, regress_ranges_cfg) },
    { "center_sampling", MD_KEY_BOOL, "false", "positives only near the box centre", false, MD_AT(fcos, center_sampling) },
    { "center_sample_radius", MD_KEY_FLOAT, "1.5", "that radius, in strides", false, MD_AT(fcos, radius), .min = "0.0" },
    { "norm_on_bbox", MD_KEY_BOOL, "false", "regress distances over the stride", false, MD_AT(fcos, norm_on_bbox) },
    { "centerness_on_reg", MD_KEY_BOOL, "false", "centerness from the reg branch", false, MD_AT(fcos, centerness_on_reg) },
    { "loss_centerness", MD_KEY_GROUP, "{ type = \"CrossEntropyLoss\"; use_sigmoid = true; loss_weight = 1.0; }",
      "centerness loss (losses registry)", false },
    { 0 } };

static bool is_number(const md_cfg *c) { return md_cfg_kind(c) == MD_CFG_INT || md_cfg_kind(c) == MD_CFG_FLOAT; }

/* mmdet's _init_layers: the base's, then conv_centerness and a Scale(1.0)
 * per level (scales.N.scale); regress_ranges is checked here, once the
 * schema has filled the struct. */
static int init_layers(md_ctx *ctx, md_anchor_free_head *ah, md_error *err) {
    fcos *h = (fcos *)ah;
    const md_cfg *rr = h->regress_ranges_cfg;
    if (md_cfg_len(rr) != ah->num_levels)
        return md_failc(err, MD_ERR_CONFIG, "regress_ranges: %d ranges for %d strides", md_cfg_len(rr), ah->num_levels);
    for (int l = 0; l < ah->num_levels; l++) {
        const md_cfg *r = md_cfg_at(rr, l);
        if (md_cfg_kind(r) != MD_CFG_LIST || md_cfg_len(r) != 2 || !is_number(md_cfg_at(r, 0)) || !is_number(md_cfg_at(r, 1)))
            return md_failc(err, MD_ERR_CONFIG, "regress_ranges[%d]: expected [lo, hi]", l);
        h->ranges[l][0] = (float)md_cfg_as_float(md_cfg_at(r, 0));
        h->ranges[l][1] = (float)md_cfg_as_float(md_cfg_at(r, 1));
    }
    int in = ah->stacked_convs ? ah->feat_channels : ah->in_channels;
    return md_anchor_free_head_init_layers(ctx, ah, err) ||
                   md_anchor_head_add_conv(ctx, &ah->base, "conv_centerness", in, 1, 3, 0.01, 0.0, err) ||
                   md_anchor_free_head_add_scales(ctx, ah, h->scale, err)
               ? -1
               : 0;
}

static int forward_single(md_ctx *ctx, md_anchor_free_head *ah, md_tensor *x, int level, md_anchor_free_out *out) {
    fcos *h = (fcos *)ah;
    if (md_anchor_free_head_forward_single(ctx, ah, x, level, out)) return -1;
    out->score_factor = md_module_call(ctx, &ah->base, "conv_centerness", h->centerness_on_reg ? out->reg_feat : out->cls_feat);
    md_tensor *b = md_mul(ctx, out->bbox_pred, h->scale[level]);
    if (h->norm_on_bbox) {
        int sw, sh;
        ah->prior_generator->iface->stride(ah->prior_generator, level, &sw, &sh);
        b = md_clamp(ctx, b, 0.0, INFINITY);
        if (!ah->base.training) b = md_mul_scalar(ctx, b, sw);
    } else {
        b = md_exp(ctx, b);
    }
    out->bbox_pred = b;
    return out->score_factor && b ? 0 : -1;
}

/* mmdet's _get_target_single and centerness_target for one image. */
static int get_targets(md_ctx *ctx, md_anchor_free_head *ah, const md_anchor_free_points *pts, const md_boxes *gt,
                       const int64_t *gt_labels, md_anchor_free_target *out, md_error *err) {
    const fcos *h = (const fcos *)ah;
    (void)ctx, (void)err;
    for (int lv = 0; lv < pts->n_levels; lv++)
        for (int64_t j = pts->begin[lv]; j < pts->begin[lv] + pts->counts[lv]; j++) {
            const float *p = md_f32(pts->points) + j * 4;   /* x, y, stride_w, stride_h */
            float best = INF, d[4] = { 0 };
            int64_t k_best = -1;
            for (int64_t k = 0; k < gt->n; k++) {
                const float *g = gt->xyxy + k * 4;
                float dk[4] = { p[0] - g[0], p[1] - g[1], g[2] - p[0], g[3] - p[1] };
                float in = fminf(fminf(dk[0], dk[1]), fminf(dk[2], dk[3]));
                if (h->center_sampling) {
                    /* inside the box cut to radius strides around its centre */
                    float cx = (g[0] + g[2]) / 2, cy = (g[1] + g[3]) / 2;
                    float rx = (float)(p[2] * h->radius), ry = (float)(p[3] * h->radius);
                    float c[4] = { fmaxf(cx - rx, g[0]), fmaxf(cy - ry, g[1]), fminf(cx + rx, g[2]), fminf(cy + ry, g[3]) };
                    in = fminf(fminf(p[0] - c[0], p[1] - c[1]), fminf(c[2] - p[0], c[3] - p[1]));
                }
                float far = fmaxf(fmaxf(dk[0], dk[1]), fmaxf(dk[2], dk[3]));
                float area = (g[2] - g[0]) * (g[3] - g[1]);
                /* the smallest qualifying box; the first on a tie, as torch's min */
                if (in > 0 && far >= h->ranges[lv][0] && far <= h->ranges[lv][1] && area < best) {
                    best = area, k_best = k;
                    for (int q = 0; q < 4; q++) d[q] = dk[q];
                }
            }
            if (k_best < 0) continue;
            out->labels[j] = gt_labels[k_best];
            for (int q = 0; q < 4; q++) out->bbox_targets[j * 4 + q] = h->norm_on_bbox ? d[q] / p[2 + q % 2] : d[q];
            const float *t = out->bbox_targets + j * 4;
            float ctr = sqrtf(fminf(t[0], t[2]) / fmaxf(t[0], t[2]) * (fminf(t[1], t[3]) / fmaxf(t[1], t[3])));
            out->bbox_weights[j] = out->score_factor_targets[j] = ctr;
        }
    return 0;
}

static const md_anchor_free_head_class fcos_head = {
    .dense = MD_ANCHOR_FREE_HEAD_DENSE("FCOSHead", md_anchor_free_head_loss, md_anchor_free_head_get_bboxes),
    .size = sizeof(fcos),
    .keys = keys,
    .init_layers = init_layers,
    .forward_single = forward_single,
    .get_targets = get_targets,
    .with_score_factors = true,
    .loss_score_factor_key = "loss_centerness",
};

MD_PLUGIN("fcos_head", "1.0", "Apache-2.0");
MD_ANCHOR_FREE_HEAD_REGISTER(fcos_head, "FCOSHead", keys, "mmdet's FCOS head (an AnchorFreeHead: centerness, Scale per level)")
