/* mmdet's RPNHead (mmdet/models/dense_heads/rpn_head.py on AnchorHead,
 * 2.28): rpn_conv (3x3 + ReLU), rpn_cls (sigmoid, one score per anchor) and
 * rpn_reg per level. Training: anchors inside each image's padded shape,
 * the assigner and sampler of train_cfg, sigmoid cross entropy and the
 * box loss with avg_factor = sum over images of max(#pos, 1) + max(#neg, 1);
 * with the PseudoSampler (or no sampler: mmdet 2.28 then builds one) there
 * is no sampling and avg_factor is the positives' sum alone. The box loss
 * is on the encoded deltas, or with reg_decoded_bbox on the deltas decoded
 * against the anchors, compared with the gt boxes (GIoU, IoU, L1).
 * Proposals (get_bboxes): per level the nms_pre best scores, decode and
 * clip, drop boxes not wider and taller than min_bbox_size, batched NMS with
 * the level as the class, then max_per_img; labels 0. As in mmdet 2.28,
 * with_nms is ignored; unlike it (as mmdet 3), rescale divides by the
 * scale_factor, so the head also serves a single-stage detector. A dense
 * head (bbox.h): forward_train, simple_test and the test-time
 * augmentations are the core's defaults. Init: Normal(0, 0.01) on the convs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>
#include <mmdet/roi_head.h>

static const md_key keys[] = {
    { "in_channels", MD_KEY_INT, NULL, "channels of the feature maps", true },
    { "feat_channels", MD_KEY_INT, "256", "channels of rpn_conv", false },
    { "num_classes", MD_KEY_INT, "1", "only 1", false },
    { "num_convs", MD_KEY_INT, "1", "only 1", false },
    { "anchor_generator", MD_KEY_GROUP,
      "{ type = \"AnchorGenerator\"; scales = [8]; ratios = [0.5, 1.0, 2.0]; strides = [4, 8, 16, 32, 64]; }",
      "prior generator (prior_generators registry)", false },
    { "bbox_coder", MD_KEY_GROUP,
      "{ type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0]; target_stds = [1.0, 1.0, 1.0, 1.0]; }",
      "box coder (bbox_coders registry)", false },
    { "reg_decoded_bbox", MD_KEY_BOOL, "false", "apply loss_bbox to decoded boxes against the gt boxes", false },
    { "loss_cls", MD_KEY_GROUP, "{ type = \"CrossEntropyLoss\"; use_sigmoid = true; loss_weight = 1.0; }",
      "CrossEntropyLoss with use_sigmoid", false },
    { "loss_bbox", MD_KEY_GROUP, "{ type = \"SmoothL1Loss\"; beta = 0.1111111111111111; loss_weight = 1.0; }",
      "L1Loss or SmoothL1Loss", false },
    { "train_cfg", MD_KEY_ANY, "None", "assigner, sampler, allowed_border, pos_weight (train_cfg.rpn)", false },
    { "test_cfg", MD_KEY_ANY, "None", "nms_pre, max_per_img, nms, min_bbox_size (test_cfg.rpn)", false },
    { "init_cfg", MD_KEY_ANY, "None", "init config (default Normal std 0.01); Pretrained loads a checkpoint", false },
    { 0 } };

typedef struct rpn_head {
    md_module base;
    int in_channels, feat_channels, num_anchors;
    bool smooth_l1, reg_decoded_bbox, sampling;
    int box_loss, iou_mode;   /* BOX_* below; IoULoss mode */
    double beta, cls_weight, bbox_weight, pos_weight, bbox_eps;
    int allowed_border;
    md_prior_generator *anchors;
    md_bbox_coder *coder;
    md_bbox_assigner *assigner;
    md_bbox_sampler *sampler;
    bool has_test_cfg;
    md_dense_test_cfg test_cfg;
    md_cfg *init_cfg;
} rpn_head;

enum { BOX_L1 = 0, BOX_SMOOTH_L1, BOX_GIOU, BOX_IOU };
enum { IOU_LOG = 0, IOU_LINEAR, IOU_SQUARE };   /* mmdet IoULoss modes */

#define FAIL_OP(err, what) md_fail((err), "RPNHead.%s: %s", (what), md_ctx_error(ctx)->msg)

/* RPNHead.forward_single per level: rpn_conv + ReLU, rpn_cls [N, A, H, W],
 * rpn_reg [N, 4A, H, W]. */
static int rpn_forward(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, md_tensor **cls,
                       md_tensor **reg) {
    for (int l = 0; l < n; l++) {
        /* conv + ReLU: one fused pass in inference */
        md_tensor *x = md_nn_conv_bn_act(ctx, m, "rpn_conv", NULL, true, feats[l]);
        cls[l] = md_module_call(ctx, m, "rpn_cls", x);
        reg[l] = md_module_call(ctx, m, "rpn_reg", x);
        if (!cls[l] || !reg[l]) return -1;
        md_tensor_release(ctx, x);   /* the two convs' backward keep what they read */
    }
    return 0;
}

/* The outputs permuted to mmdet's (y, x, anchor) order and concatenated
 * over levels: cls [N, T], reg [N, T, 4]; the anchors of each level's size
 * level_sizes[l]. */
static int flatten_outputs(md_ctx *ctx, rpn_head *h, md_tensor *const *cls_l, md_tensor *const *reg_l, int n,
                           md_tensor **cls, md_tensor **reg, int64_t *level_sizes) {
    md_tensor *cs[MD_MAX_LEVELS], *rs[MD_MAX_LEVELS];
    for (int l = 0; l < n; l++) {
        md_tensor *c = cls_l[l], *r = reg_l[l];
        if (!c || !r) return -1;
        int64_t N = c->shape[0];
        level_sizes[l] = c->shape[2] * c->shape[3] * h->num_anchors;
        cs[l] = md_reshape(ctx, md_permute(ctx, c, (const int[]){ 0, 2, 3, 1 }), MD_DIMS(N, -1));
        rs[l] = md_reshape(ctx, md_permute(ctx, r, (const int[]){ 0, 2, 3, 1 }), MD_DIMS(N, -1, 4));
    }
    *cls = n == 1 ? cs[0] : md_cat(ctx, cs, n, 1);
    *reg = n == 1 ? rs[0] : md_cat(ctx, rs, n, 1);
    return *cls && *reg ? 0 : -1;
}

/* Anchors of every level for the output sizes, [T, 4]. */
static md_tensor *all_anchors(md_ctx *ctx, rpn_head *h, md_tensor *const *cls, int n) {
    md_tensor *a[MD_MAX_LEVELS];
    for (int l = 0; l < n; l++) a[l] = md_grid_priors(ctx, h->anchors, l, cls[l]->shape[2], cls[l]->shape[3]);
    return n == 1 ? a[0] : md_cat(ctx, a, n, 0);
}

static int check_levels(rpn_head *h, int n, md_error *err) {
    int nl = h->anchors->iface->num_levels(h->anchors);
    if (n < 1 || n > nl || n > MD_MAX_LEVELS)
        return md_failc(err, MD_ERR_SHAPE, "RPNHead: %d feature maps, the anchor generator has %d levels", n, nl);
    return 0;
}

/* Row i of a batch-first tensor, without the batch dimension. */
static md_tensor *row(md_ctx *ctx, md_tensor *t, int64_t i) { return md_squeeze(ctx, md_slice(ctx, t, 0, i, i + 1, 1), 0); }

static md_tensor *boxes_tensor(md_ctx *ctx, const md_boxes *b) {
    if (!b || b->n == 0) return md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 4));
    return md_tensor_from(ctx, MD_F32, MD_DIMS(b->n, 4), b->xyxy);
}

/* _get_bboxes_single of one image (grad off). */
static md_tensor *proposals_one(md_ctx *ctx, rpn_head *h, md_tensor *cls, md_tensor *reg, md_tensor *anchors,
                                const int64_t *level_sizes, int n_levels, const md_img_meta *meta,
                                const md_dense_test_cfg *pc) {
    md_tensor *sc[MD_MAX_LEVELS], *rg[MD_MAX_LEVELS], *an[MD_MAX_LEVELS], *ids[MD_MAX_LEVELS];
    int64_t off = 0;
    for (int l = 0; l < n_levels; l++) {
        int64_t T = level_sizes[l];
        md_tensor *s = md_sigmoid(ctx, md_slice(ctx, cls, 0, off, off + T, 1));
        md_tensor *r = md_slice(ctx, reg, 0, off, off + T, 1), *a = md_slice(ctx, anchors, 0, off, off + T, 1);
        off += T;
        if (pc->nms_pre > 0 && pc->nms_pre < T) {
            /* mmdet sorts the level and keeps the first nms_pre: the same
             * items in the same order (ties by index) as a top-k, which
             * sorts only the winners */
            md_tensor *idx = NULL;
            s = md_topk(ctx, s, pc->nms_pre, 0, true, &idx);
            r = md_index_select(ctx, r, 0, idx);
            a = md_index_select(ctx, a, 0, idx);
        }
        if (!s) return NULL;
        sc[l] = s;
        rg[l] = r;
        an[l] = a;
        ids[l] = md_tensor_full(ctx, MD_I64, MD_DIMS(s->shape[0]), l);
    }
    md_tensor *scores = md_contiguous(ctx, md_cat(ctx, sc, n_levels, 0));
    md_tensor *deltas = md_cat(ctx, rg, n_levels, 0), *anc = md_cat(ctx, an, n_levels, 0);
    md_tensor *lv = md_cat(ctx, ids, n_levels, 0);
    int shape[2] = { meta->img_shape[0], meta->img_shape[1] };
    md_tensor *props = md_contiguous(ctx, md_bbox_decode(ctx, h->coder, anc, deltas, shape));
    if (!props || !scores || !lv) return NULL;
    if (pc->min_bbox_size >= 0) {
        int64_t P = props->shape[0], nv = 0;
        md_tensor *mask = md_tensor_empty(ctx, MD_U8, MD_DIMS(P));
        if (!mask) return NULL;
        for (int64_t i = 0; i < P; i++) {
            const float *b = md_f32(props) + 4 * i;
            nv += md_u8(mask)[i] = (b[2] - b[0] > pc->min_bbox_size) && (b[3] - b[1] > pc->min_bbox_size);
        }
        if (nv < P) {
            md_tensor *keep = md_nonzero(ctx, mask);
            props = md_index_select(ctx, props, 0, keep);
            scores = md_index_select(ctx, scores, 0, keep);
            lv = md_index_select(ctx, lv, 0, keep);
        }
    }
    if (!props) return NULL;
    if (props->shape[0] == 0) return md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 5));
    md_tensor *keep = md_batched_nms(ctx, props, scores, lv, pc->nms_iou, false, pc->max_per_img);
    if (!keep) return NULL;
    int64_t K = keep->shape[0];
    if (pc->max_per_img > 0 && K > pc->max_per_img) K = pc->max_per_img;
    md_tensor *out = md_tensor_empty(ctx, MD_F32, MD_DIMS(K, 5));
    if (!out) return NULL;
    for (int64_t k = 0; k < K; k++) {
        int64_t i = md_i64(keep)[k];
        memcpy(md_f32(out) + 5 * k, md_f32(props) + 4 * i, 4 * sizeof(float));
        md_f32(out)[5 * k + 4] = md_f32(scores)[i];
    }
    return out;
}

/* get_bboxes: results[i] the proposals of image i, labels 0. */
static int rpn_get_bboxes(md_ctx *ctx, md_module *m, md_tensor *const *cls_l, md_tensor *const *reg_l, int n,
                          const md_batch *batch, const md_dense_test_cfg *pc, bool rescale, bool with_nms,
                          md_det_result *results, md_error *err) {
    rpn_head *h = (rpn_head *)m;
    (void)with_nms;   /* mmdet 2.28's RPNHead ignores it */
    if (!pc && !h->has_test_cfg) return md_failc(err, MD_ERR_CONFIG, "RPNHead: get_bboxes needs test_cfg");
    if (!pc) pc = &h->test_cfg;
    if (check_levels(h, n, err)) return -1;
    bool was = md_grad_set_enabled(ctx, false);
    int64_t level_sizes[MD_MAX_LEVELS];
    md_tensor *cls = NULL, *reg = NULL;
    md_tensor *anchors = flatten_outputs(ctx, h, cls_l, reg_l, n, &cls, &reg, level_sizes) ? NULL
                         : md_contiguous(ctx, all_anchors(ctx, h, cls_l, n));
    if (!anchors) {
        md_grad_set_enabled(ctx, was);
        return FAIL_OP(err, "get_bboxes");
    }
    /* proposals are host logic (top-k, decode, NMS): one CPU copy of the
     * outputs (the model's own device when that is the CPU) */
    cls = md_tensor_to(ctx, md_tensor_detach(ctx, cls), MD_DEVICE_CPU);
    reg = md_tensor_to(ctx, md_tensor_detach(ctx, reg), MD_DEVICE_CPU);
    if (!cls || !reg) {
        md_grad_set_enabled(ctx, was);
        return FAIL_OP(err, "get_bboxes");
    }
    for (int i = 0; i < batch->n; i++) {
        md_tensor *ci = row(ctx, cls, i), *ri = row(ctx, reg, i);
        md_tensor *p = proposals_one(ctx, h, md_tensor_detach(ctx, ci), md_tensor_detach(ctx, ri), anchors,
                                     level_sizes, n, &batch->metas[i], pc);
        int64_t *labels = p ? md_ctx_alloc(ctx, sizeof *labels * (size_t)(p->shape[0] + 1)) : NULL;
        float *b = p && rescale ? md_ctx_alloc(ctx, sizeof *b * (size_t)(5 * p->shape[0] + 1)) : NULL;
        if (!labels || (rescale && !b)) {
            md_grad_set_enabled(ctx, was);
            return FAIL_OP(err, "get_bboxes");
        }
        memset(labels, 0, sizeof *labels * (size_t)p->shape[0]);
        if (rescale) {
            for (int64_t j = 0; j < 5 * p->shape[0]; j++)
                b[j] = j % 5 == 4 ? md_f32(p)[j] : md_f32(p)[j] / batch->metas[i].scale_factor[j % 5];
        }
        results[i] = (md_det_result){ (int)p->shape[0], rescale ? b : md_f32(p), labels };
    }
    md_grad_set_enabled(ctx, was);
    return 0;
}

/* Anchors an image may train on: inside its padded shape (valid_flags) and,
 * with allowed_border >= 0, within the image plus that border. */
static md_tensor *inside_flags(md_ctx *ctx, rpn_head *h, md_tensor *const *feats, int n, md_tensor *anchors,
                               const md_img_meta *meta) {
    md_tensor *f[MD_MAX_LEVELS];
    for (int l = 0; l < n; l++) {
        int sw, sh;
        h->anchors->iface->stride(h->anchors, l, &sw, &sh);
        int64_t fh = feats[l]->shape[2], fw = feats[l]->shape[3];
        int64_t vh = (int64_t)ceil((double)meta->pad_shape[0] / sh), vw = (int64_t)ceil((double)meta->pad_shape[1] / sw);
        f[l] = h->anchors->iface->valid_flags(ctx, h->anchors, l, fh, fw, vh < fh ? vh : fh, vw < fw ? vw : fw);
    }
    md_tensor *v = n == 1 ? f[0] : md_cat(ctx, f, n, 0);
    if (!v || h->allowed_border < 0) return v;
    const float *a = md_f32(anchors);
    float ab = (float)h->allowed_border;
    for (int64_t i = 0; i < v->shape[0]; i++)
        md_u8(v)[i] = md_u8(v)[i] && a[4 * i] >= -ab && a[4 * i + 1] >= -ab && a[4 * i + 2] < meta->img_shape[1] + ab &&
                      a[4 * i + 3] < meta->img_shape[0] + ab;
    return v;
}

/* AnchorHead.loss with RPN's labels: loss_rpn_cls and loss_rpn_bbox. */
static int rpn_loss(md_ctx *ctx, md_module *m, md_tensor *const *cls_l, md_tensor *const *reg_l, int n,
                    const md_batch *batch, md_losses *losses, md_error *err) {
    rpn_head *h = (rpn_head *)m;
    md_rng *rng = md_ctx_rng(ctx);
    md_tensor *const *feats = cls_l;   /* only their sizes are read */
    if (!h->assigner || !h->sampler)
        return md_failc(err, MD_ERR_CONFIG, "RPNHead: training needs train_cfg with an assigner");
    if (n != h->anchors->iface->num_levels(h->anchors))
        return md_failc(err, MD_ERR_SHAPE, "RPNHead: %d feature maps, the anchor generator has %d levels", n,
                        h->anchors->iface->num_levels(h->anchors));
    int64_t level_sizes[MD_MAX_LEVELS];
    md_tensor *cls, *reg;
    if (flatten_outputs(ctx, h, cls_l, reg_l, n, &cls, &reg, level_sizes)) return FAIL_OP(err, "forward");
    md_tensor *anchors = md_contiguous(ctx, all_anchors(ctx, h, cls_l, n));
    if (!anchors) return FAIL_OP(err, "anchors");
    int64_t T = anchors->shape[0], N = batch->n;
    if (cls->shape[1] != T) return md_failc(err, MD_ERR_SHAPE, "RPNHead: %lld scores for %lld anchors",
                                            (long long)cls->shape[1], (long long)T);
    /* targets of the sampled anchors, all images together */
    int64_t cap = 0;
    md_sampling_result *sr = md_ctx_alloc(ctx, sizeof *sr * (size_t)N);
    md_tensor **vis = md_ctx_alloc(ctx, sizeof *vis * (size_t)N);
    double n_pos = 0, n_neg = 0;
    bool was = md_grad_set_enabled(ctx, false);
    for (int i = 0; i < N; i++) {
        md_tensor *flags = inside_flags(ctx, h, feats, n, anchors, &batch->metas[i]);
        vis[i] = flags ? md_nonzero(ctx, flags) : NULL;
        md_tensor *va = vis[i] ? md_index_select(ctx, anchors, 0, vis[i]) : NULL;
        md_tensor *gt = boxes_tensor(ctx, &batch->gt_bboxes[i]);
        md_tensor *ign = batch->gt_bboxes_ignore && batch->gt_bboxes_ignore[i].n
                             ? boxes_tensor(ctx, &batch->gt_bboxes_ignore[i]) : NULL;
        md_assign_result ar;
        if (!va || !gt) {
            md_grad_set_enabled(ctx, was);
            return FAIL_OP(err, "get_targets");
        }
        if (md_bbox_assign(ctx, h->assigner, va, gt, ign, NULL, &ar, err) ||
            md_bbox_sample(ctx, h->sampler, &ar, va, gt, NULL, rng, &sr[i], err)) {
            md_grad_set_enabled(ctx, was);
            return md_error_wrap(err, "RPNHead image %d", i);
        }
        int64_t np = sr[i].pos_inds->shape[0], nn = sr[i].neg_inds->shape[0];
        n_pos += np > 1 ? np : 1;
        n_neg += nn > 1 ? nn : 1;
        cap += np + nn;
    }
    md_tensor *cidx = md_tensor_empty(ctx, MD_I64, MD_DIMS(cap)), *ctgt = md_tensor_empty(ctx, MD_F32, MD_DIMS(cap));
    md_tensor *cw = md_tensor_empty(ctx, MD_F32, MD_DIMS(cap));
    int64_t P = 0;
    for (int i = 0; i < N; i++) P += sr[i].pos_inds->shape[0];
    md_tensor *ridx = md_tensor_empty(ctx, MD_I64, MD_DIMS(P)), *rtgt[64];
    if (!cidx || !ctgt || !cw || !ridx) {
        md_grad_set_enabled(ctx, was);
        return FAIL_OP(err, "get_targets");
    }
    if (N > 64) {
        md_grad_set_enabled(ctx, was);
        return md_failc(err, MD_ERR_SHAPE, "RPNHead: at most 64 images per batch (got %lld)", (long long)N);
    }
    int64_t c = 0, p = 0;
    float pw = h->pos_weight <= 0 ? 1.0f : (float)h->pos_weight;
    for (int i = 0; i < N; i++) {
        const int64_t *vi = md_i64(vis[i]);
        for (int64_t k = 0; k < sr[i].pos_inds->shape[0]; k++, c++, p++) {
            int64_t a = vi[md_i64(sr[i].pos_inds)[k]];
            md_i64(cidx)[c] = i * T + a;
            md_f32(ctgt)[c] = 1.0f;
            md_f32(cw)[c] = pw;
            md_i64(ridx)[p] = i * T + a;
        }
        for (int64_t k = 0; k < sr[i].neg_inds->shape[0]; k++, c++) {
            md_i64(cidx)[c] = i * T + vi[md_i64(sr[i].neg_inds)[k]];
            md_f32(ctgt)[c] = 0.0f;
            md_f32(cw)[c] = 1.0f;
        }
        /* reg_decoded_bbox: the targets are the gt boxes themselves */
        rtgt[i] = h->reg_decoded_bbox ? sr[i].pos_gt_bboxes
                                      : md_bbox_encode(ctx, h->coder, sr[i].pos_bboxes, sr[i].pos_gt_bboxes);
    }
    md_tensor *tgt = md_cat(ctx, rtgt, (int)N, 0);
    md_grad_set_enabled(ctx, was);
    /* the targets were built on the host; the losses run where the outputs are */
    md_device dev = md_tensor_device(cls);
    md_tensor *ridx_h = ridx;
    cidx = md_tensor_to(ctx, cidx, dev);
    ctgt = md_tensor_to(ctx, ctgt, dev);
    cw = md_tensor_to(ctx, cw, dev);
    ridx = md_tensor_to(ctx, ridx, dev);
    tgt = md_tensor_to(ctx, tgt, dev);
    double avg = h->sampling ? n_pos + n_neg : n_pos;
    md_tensor *cs = md_index_select(ctx, md_reshape(ctx, cls, MD_DIMS(-1)), 0, cidx);
    md_tensor *lc = md_mul_scalar(ctx, md_loss_bce_with_logits(ctx, cs, ctgt, cw, MD_REDUCE_MEAN, avg), h->cls_weight);
    md_tensor *lb;
    if (P > 0) {
        md_tensor *rs = md_index_select(ctx, md_reshape(ctx, reg, MD_DIMS(-1, 4)), 0, ridx);
        if (h->reg_decoded_bbox) {   /* mmdet's loss_single: decode (no max_shape) before the loss */
            md_tensor *ai = md_tensor_empty(ctx, MD_I64, MD_DIMS(P));
            if (!ai) return FAIL_OP(err, "loss");
            for (int64_t k = 0; k < P; k++) md_i64(ai)[k] = md_i64(ridx_h)[k] % T;
            rs = md_bbox_decode(ctx, h->coder, md_tensor_to(ctx, md_index_select(ctx, anchors, 0, ai), dev), rs, NULL);
        }
        if (h->box_loss == BOX_GIOU) {
            lb = md_loss_giou(ctx, rs, tgt, NULL, h->bbox_eps, MD_REDUCE_MEAN, avg);
        } else if (h->box_loss == BOX_IOU) {   /* iou clamped at eps, then -log, 1 - iou or 1 - iou^2 */
            md_tensor *iou = md_clamp(ctx, md_bbox_overlaps(ctx, rs, tgt, MD_IOU, true, 1e-6), h->bbox_eps, INFINITY);
            md_tensor *l = h->iou_mode == IOU_LOG      ? md_neg(ctx, md_log(ctx, iou))
                           : h->iou_mode == IOU_LINEAR ? md_add_scalar(ctx, md_neg(ctx, iou), 1.0)
                                                       : md_add_scalar(ctx, md_neg(ctx, md_mul(ctx, iou, iou)), 1.0);
            lb = md_weight_reduce_loss(ctx, l, NULL, MD_REDUCE_MEAN, avg);
        } else {
            lb = h->smooth_l1 ? md_loss_smooth_l1(ctx, rs, tgt, NULL, h->beta, MD_REDUCE_MEAN, avg)
                              : md_loss_l1(ctx, rs, tgt, NULL, MD_REDUCE_MEAN, avg);
        }
        lb = md_mul_scalar(ctx, lb, h->bbox_weight);
    } else {
        lb = md_mul_scalar(ctx, md_sum(ctx, reg, MD_DIM_ALL, false), 0.0);
    }
    if (!lc || !lb) return FAIL_OP(err, "loss");
    if (md_losses_add(losses, "loss_rpn_cls", lc, err) || md_losses_add(losses, "loss_rpn_bbox", lb, err)) return -1;
    return 0;
}

static const md_dense_test_cfg *rpn_test_cfg(const md_module *m) {
    const rpn_head *h = (const rpn_head *)m;
    return h->has_test_cfg ? &h->test_cfg : NULL;
}

static int rpn_init_weights(md_ctx *ctx, md_module *m, md_error *err) {
    return md_init_cfg_pretrained(ctx, m, ((rpn_head *)m)->init_cfg, "RPNHead", err) < 0 ? -1 : 0;
}

static void rpn_destroy(md_module *m) {
    rpn_head *h = (rpn_head *)m;
    MD_BBOX_DESTROY(h->anchors);
    MD_BBOX_DESTROY(h->coder);
    MD_BBOX_DESTROY(h->assigner);
    MD_BBOX_DESTROY(h->sampler);
    md_cfg_free(h->init_cfg);
}

static int rpn_num_classes(const md_module *m) {
    (void)m;
    return 1;
}

static const md_dense_head_class rpn_cls = {
    .model = { .module = { .name = "RPNHead", .destroy = rpn_destroy, .num_classes = rpn_num_classes },
               .init_weights = rpn_init_weights },
    .tag = MD_DENSE_HEAD_TAG,
    .forward = rpn_forward,
    .loss = rpn_loss,
    .get_bboxes = rpn_get_bboxes,
    .test_cfg = rpn_test_cfg,
};

static int add_conv(md_ctx *ctx, md_module *m, const char *name, int in, int out, int k, md_error *err) {
    md_module *c = md_nn_conv2d(ctx, in, out, k, k, MD_CONV2D(1, k / 2), true, err);
    if (!c) return -1;
    if (md_module_add_child(m, name, c, err)) {
        md_module_free(c);
        return -1;
    }
    md_init_normal(md_nn_weight(c), md_ctx_rng(ctx), 0, 0.01);
    md_init_constant(md_nn_bias(c), 0);
    return 0;
}

static void *rpn_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    int in = (int)md_cfg_int(cfg, "in_channels", 0), fc = (int)md_cfg_int(cfg, "feat_channels", 256);
    if (in < 1 || fc < 1 || md_cfg_int(cfg, "num_classes", 1) != 1 || md_cfg_int(cfg, "num_convs", 1) != 1) {
        md_failc(err, MD_ERR_CONFIG, "in_channels (%d) and feat_channels (%d) must be positive; num_classes and "
                 "num_convs must be 1", in, fc);
        return NULL;
    }
    bool decoded = md_cfg_bool(cfg, "reg_decoded_bbox", false);
    const md_cfg *lc = md_cfg_get(cfg, "loss_cls"), *lb = md_cfg_get(cfg, "loss_bbox");
    if (strcmp(md_cfg_str(lc, "type", ""), "CrossEntropyLoss") || !md_cfg_bool(lc, "use_sigmoid", false)) {
        md_failc(err, MD_ERR_CONFIG, "loss_cls: only CrossEntropyLoss with use_sigmoid = true is supported");
        return NULL;
    }
    const char *bt = md_cfg_str(lb, "type", "");
    int box_loss = !strcmp(bt, "L1Loss") ? BOX_L1 : !strcmp(bt, "SmoothL1Loss") ? BOX_SMOOTH_L1
                   : !strcmp(bt, "GIoULoss") ? BOX_GIOU : !strcmp(bt, "IoULoss") ? BOX_IOU : -1;
    /* mmdet: GIoULoss(eps=1e-6), IoULoss(linear=False, eps=1e-6, mode='log') */
    const char *mode = md_cfg_str(lb, "mode", "log");
    int iou_mode = md_cfg_bool(lb, "linear", false) ? IOU_LINEAR
                   : !strcmp(mode, "log") ? IOU_LOG : !strcmp(mode, "linear") ? IOU_LINEAR
                   : !strcmp(mode, "square") ? IOU_SQUARE : -1;
    if (box_loss < 0 || iou_mode < 0) {
        md_failc(err, MD_ERR_CONFIG, "loss_bbox: L1Loss, SmoothL1Loss, GIoULoss or IoULoss (mode linear, square or "
                 "log), got \"%s\" (mode \"%s\")", bt, mode);
        return NULL;
    }
    if (box_loss >= BOX_GIOU && !decoded) {
        md_failc(err, MD_ERR_CONFIG, "loss_bbox %s compares boxes: it needs reg_decoded_bbox = true (L1Loss or SmoothL1Loss regress the deltas)", bt);
        return NULL;
    }
    const md_cfg *init = md_cfg_get(cfg, "init_cfg");
    if (md_init_cfg_check(init, "init_cfg", err) != 0) return NULL;
    rpn_head *h = md_module_new(sizeof *h, &rpn_cls.model.module);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    md_module *m = &h->base;
    h->in_channels = in;
    h->feat_channels = fc;
    h->smooth_l1 = box_loss == BOX_SMOOTH_L1;
    h->box_loss = box_loss;
    h->iou_mode = iou_mode;
    h->reg_decoded_bbox = decoded;
    h->bbox_eps = md_cfg_float(lb, "eps", 1e-6);
    h->beta = md_cfg_float(lb, "beta", 1.0 / 9.0);
    h->cls_weight = md_cfg_float(lc, "loss_weight", 1.0);
    h->bbox_weight = md_cfg_float(lb, "loss_weight", 1.0);
    h->allowed_border = -1;
    if (!md_cfg_is_none(init) && !(h->init_cfg = md_cfg_clone(init))) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!(h->anchors = md_build_part(ctx, "prior_generators", cfg, "anchor_generator", err))) goto fail;
    h->num_anchors = h->anchors->iface->num_base_priors(h->anchors, 0);
    if (!(h->coder = md_build_part(ctx, "bbox_coders", cfg, "bbox_coder", err))) goto fail;
    const md_cfg *tc = md_cfg_get(cfg, "train_cfg");
    if (!md_cfg_is_none(tc)) {
        if (!(h->assigner = md_build_part(ctx, "bbox_assigners", cfg, "train_cfg.assigner", err))) goto fail;
        /* mmdet 2.28 AnchorHead: sampling unless the sampler is absent or
         * a PseudoSampler (which it builds when absent) */
        const md_cfg *sc = md_cfg_get(tc, "sampler");
        const char *st = md_cfg_is_none(sc) ? "" : md_cfg_str(sc, "type", ""), *dot = strrchr(st, '.');
        h->sampling = !md_cfg_is_none(sc) && strcmp(dot ? dot + 1 : st, "PseudoSampler") != 0;
        if (!md_cfg_is_none(sc)) {
            if (!(h->sampler = md_build_part(ctx, "bbox_samplers", cfg, "train_cfg.sampler", err))) goto fail;
        } else {
            md_cfg *pseudo = md_cfg_new_group();
            if (!pseudo || !md_cfg_set_str(pseudo, "type", "PseudoSampler")) {
                md_cfg_free(pseudo);
                goto nomem;
            }
            h->sampler = md_build_from_cfg(ctx, "bbox_samplers", pseudo, NULL, err);
            md_cfg_free(pseudo);
            if (!h->sampler) {
                md_error_wrap(err, "train_cfg.sampler (PseudoSampler)");
                goto fail;
            }
        }
        h->allowed_border = (int)md_cfg_int(tc, "allowed_border", -1);
        h->pos_weight = md_cfg_float(tc, "pos_weight", -1);
    }
    const md_cfg *te = md_cfg_get(cfg, "test_cfg");
    if (!md_cfg_is_none(te)) {
        /* nms required; the rest as mmdet's rpn test_cfg reads */
        static const md_dense_test_cfg dflt = { .nms_pre = -1, .score_thr = 0, .min_bbox_size = 0, .nms_iou = -1,
                                                .max_per_img = 1000 };
        h->has_test_cfg = true;
        if (md_dense_test_cfg_read(te, "test_cfg", &dflt, &h->test_cfg, err)) goto fail;
    }
    if (add_conv(ctx, m, "rpn_conv", in, fc, 3, err) || add_conv(ctx, m, "rpn_cls", fc, h->num_anchors, 1, err) ||
        add_conv(ctx, m, "rpn_reg", fc, h->num_anchors * 4, 1, err))
        goto fail;
    md_module_train(m, true);
    return m;
nomem:
    md_failc(err, MD_ERR_NOMEM, "out of memory");
fail:
    md_module_free(m);
    return NULL;
}

static const md_class rpn_class = {
    .name = "RPNHead", .keys = keys, .build = rpn_build, MD_IFACE(&rpn_cls, MD_IFACE_DENSE_HEAD),
    .doc = "region proposal network head (mmdet 2.x)",
};

MD_PLUGIN("rpn_head", "1.0", "Apache-2.0");
MD_REGISTER("heads", rpn_class)
