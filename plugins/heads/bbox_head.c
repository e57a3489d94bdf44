/* mmdet's Shared2FCBBoxHead (ConvFCBBoxHead with num_shared_fcs 2, mmdet/
 * models/roi_heads/bbox_heads/convfc_bbox_head.py and bbox_head.py):
 * flatten, shared_fcs.0/1 (Linear + ReLU), fc_cls (num_classes + 1, the
 * background last) and fc_reg (4, or 4 per class). get_targets, loss
 * (CrossEntropyLoss with label weights, L1/SmoothL1 on encoded targets,
 * accuracy) and get_bboxes (softmax, decode, rescale, multiclass NMS) as
 * mmdet 2.28. Init as mmdet's init_cfg: Normal(0.01) fc_cls, Normal(0.001)
 * fc_reg, Xavier uniform on the shared fcs, biases 0.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>
#include <mmdet/roi_head.h>

static const md_key keys[] = {
    { "in_channels", MD_KEY_INT, "256", "channels of the RoI features", false },
    { "fc_out_channels", MD_KEY_INT, "1024", "width of the shared fcs", false },
    { "roi_feat_size", MD_KEY_INT, "7", "side of the RoI features", false },
    { "num_classes", MD_KEY_INT, "80", "object classes (background excluded)", false },
    { "bbox_coder", MD_KEY_GROUP,
      "{ type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0]; target_stds = [0.1, 0.1, 0.2, 0.2]; }",
      "box coder (bbox_coders registry)", false },
    { "reg_class_agnostic", MD_KEY_BOOL, "false", "one box per RoI instead of one per class", false },
    { "reg_decoded_bbox", MD_KEY_BOOL, "false", "apply loss_bbox to boxes decoded against the RoIs", false },
    { "loss_cls", MD_KEY_GROUP, "{ type = \"CrossEntropyLoss\"; use_sigmoid = false; loss_weight = 1.0; }",
      "CrossEntropyLoss (softmax)", false },
    { "loss_bbox", MD_KEY_GROUP, "{ type = \"SmoothL1Loss\"; beta = 1.0; loss_weight = 1.0; }",
      "L1Loss, SmoothL1Loss, or with reg_decoded_bbox GIoULoss / IoULoss", false },
    { "conv_out_channels", MD_KEY_INT, "256", "unused (no convs)", false },
    { "init_cfg", MD_KEY_ANY, "None", "init config (default: mmdet's); Pretrained loads a checkpoint", false },
    { 0 } };

typedef struct bbox_head {
    md_module base;
    int in_channels, fc_out, roi_size, num_classes;
    bool agnostic, smooth_l1, reg_decoded_bbox;
    int box_loss, iou_mode;   /* BOX_* below; IoULoss mode */
    double cls_weight, bbox_weight, beta, bbox_eps;
    md_bbox_coder *coder;
    md_cfg *init_cfg;
} bbox_head;

enum { BOX_L1 = 0, BOX_SMOOTH_L1, BOX_GIOU, BOX_IOU };
enum { IOU_LOG = 0, IOU_LINEAR, IOU_SQUARE };   /* mmdet IoULoss modes */

static const md_module_class list_class = { .name = "ModuleList" };

static int head_forward(md_ctx *ctx, md_module *m, md_tensor *x, md_tensor **cls_score, md_tensor **bbox_pred) {
    *cls_score = *bbox_pred = NULL;
    if (!x) return -1;
    x = md_flatten(ctx, x, 1, -1);
    md_scope_push(ctx, "shared_fcs");
    md_module *fcs = md_module_child(m, "shared_fcs");
    x = md_relu_(ctx, md_module_call(ctx, fcs, "0", x));
    x = md_relu_(ctx, md_module_call(ctx, fcs, "1", x));
    md_scope_pop(ctx);
    *cls_score = md_module_call(ctx, m, "fc_cls", x);
    *bbox_pred = md_module_call(ctx, m, "fc_reg", x);
    return *cls_score && *bbox_pred ? 0 : -1;
}

static int head_get_targets(md_ctx *ctx, md_module *m, const md_sampling_result *sr, int n, double pos_weight,
                            md_bbox_targets *out) {
    bbox_head *h = (bbox_head *)m;
    memset(out, 0, sizeof *out);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += sr[i].pos_bboxes->shape[0] + sr[i].neg_bboxes->shape[0];
    out->labels = md_tensor_full(ctx, MD_I64, MD_DIMS(total), h->num_classes);
    out->label_weights = md_tensor_zeros(ctx, MD_F32, MD_DIMS(total));
    out->bbox_targets = md_tensor_zeros(ctx, MD_F32, MD_DIMS(total, 4));
    out->bbox_weights = md_tensor_zeros(ctx, MD_F32, MD_DIMS(total, 4));
    out->rois = md_tensor_zeros(ctx, MD_F32, MD_DIMS(total, 4));
    if (!out->labels || !out->label_weights || !out->bbox_targets || !out->bbox_weights || !out->rois) return -1;
    float pw = pos_weight <= 0 ? 1.0f : (float)pos_weight;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        int64_t np = sr[i].pos_bboxes->shape[0], nn = sr[i].neg_bboxes->shape[0];
        if (np > 0) {
            if (!sr[i].pos_gt_labels)
                return md_op_fail(ctx, "Shared2FCBBoxHead.get_targets", "image %d: sampling result without labels", i),
                       -1;
            md_tensor *lab = md_contiguous(ctx, sr[i].pos_gt_labels);
            /* reg_decoded_bbox: the targets are the gt boxes themselves */
            md_tensor *t = h->reg_decoded_bbox ? sr[i].pos_gt_bboxes
                                               : md_bbox_encode(ctx, h->coder, sr[i].pos_bboxes, sr[i].pos_gt_bboxes);
            if (!lab || !t) return -1;
            t = md_contiguous(ctx, t);
            for (int64_t k = 0; k < np; k++) {
                md_i64(out->labels)[off + k] = md_i64(lab)[k];
                md_f32(out->label_weights)[off + k] = pw;
                for (int j = 0; j < 4; j++) {
                    md_f32(out->bbox_targets)[(off + k) * 4 + j] = md_f32(t)[k * 4 + j];
                    md_f32(out->bbox_weights)[(off + k) * 4 + j] = 1.0f;
                }
            }
        }
        for (int64_t k = 0; k < nn; k++) md_f32(out->label_weights)[off + np + k] = 1.0f;
        md_tensor *pb = np ? md_contiguous(ctx, sr[i].pos_bboxes) : NULL, *nb = nn ? md_contiguous(ctx, sr[i].neg_bboxes) : NULL;
        if ((np && !pb) || (nn && !nb)) return -1;
        if (np) memcpy(md_f32(out->rois) + off * 4, md_f32(pb), sizeof(float) * (size_t)(np * 4));
        if (nn) memcpy(md_f32(out->rois) + (off + np) * 4, md_f32(nb), sizeof(float) * (size_t)(nn * 4));
        off += np + nn;
    }
    return 0;
}

static int head_loss(md_ctx *ctx, md_module *m, md_tensor *cls_score, md_tensor *bbox_pred, const md_bbox_targets *t,
                     md_losses *losses, md_error *err) {
    bbox_head *h = (bbox_head *)m;
    if (!cls_score || !bbox_pred || !t->labels) return md_fail(err, "%s", md_ctx_error(ctx)->msg);
    int64_t K = t->labels->shape[0], C = h->num_classes;
    if (cls_score->shape[0] != K || bbox_pred->shape[0] != K)
        return md_failc(err, MD_ERR_SHAPE, "Shared2FCBBoxHead.loss: %lld targets for %lld/%lld predictions",
                        (long long)K, (long long)cls_score->shape[0], (long long)bbox_pred->shape[0]);
    int64_t nw = 0, np = 0;
    for (int64_t i = 0; i < K; i++) {
        nw += md_f32(t->label_weights)[i] > 0;
        int64_t l = md_i64(t->labels)[i];
        np += l >= 0 && l < C;
    }
    double avg = nw > 1 ? (double)nw : 1.0;
    /* the targets are host tensors (get_targets); the losses run where the
     * predictions are */
    md_device dev = md_tensor_device(cls_score);
    if (K > 0) {
        md_tensor *lc = md_loss_cross_entropy(ctx, cls_score, md_tensor_to(ctx, t->labels, dev),
                                              md_tensor_to(ctx, t->label_weights, dev), NULL, MD_REDUCE_MEAN, avg, -100);
        lc = md_mul_scalar(ctx, lc, h->cls_weight);
        /* accuracy (top-1, percent), counted on the host */
        md_tensor *am = md_tensor_to(ctx, md_argmax(ctx, cls_score, 1, false), MD_DEVICE_CPU);
        if (!lc || !am) return md_fail(err, "Shared2FCBBoxHead.loss: %s", md_ctx_error(ctx)->msg);
        int64_t right = 0;
        for (int64_t i = 0; i < K; i++) right += md_i64(am)[i] == md_i64(t->labels)[i];
        if (md_losses_add(losses, "loss_cls", lc, err) ||
            md_losses_add(losses, "acc", md_tensor_scalar(ctx, (float)(100.0 * (double)right / (double)K)), err))
            return -1;
    }
    md_tensor *lb;
    if (np > 0) {
        md_tensor *sel = md_tensor_empty(ctx, MD_I64, MD_DIMS(np)), *pos = md_tensor_empty(ctx, MD_I64, MD_DIMS(np));
        if (!sel || !pos) return md_fail(err, "%s", md_ctx_error(ctx)->msg);
        for (int64_t i = 0, j = 0; i < K; i++) {
            int64_t l = md_i64(t->labels)[i];
            if (l >= 0 && l < C) {
                md_i64(pos)[j] = i;
                md_i64(sel)[j++] = h->agnostic ? i : i * C + l;
            }
        }
        md_tensor *pred = md_reshape(ctx, bbox_pred, MD_DIMS(-1, 4));
        pred = md_index_select(ctx, pred, 0, md_tensor_to(ctx, sel, dev));
        md_tensor *tg = md_tensor_to(ctx, md_index_select(ctx, t->bbox_targets, 0, pos), dev);
        md_tensor *wt = md_tensor_to(ctx, md_index_select(ctx, t->bbox_weights, 0, pos), dev);
        if (h->reg_decoded_bbox) {   /* mmdet: decode against rois[:, 1:] before selecting */
            if (!t->rois || t->rois->shape[0] != K)
                return md_failc(err, MD_ERR_SHAPE, "Shared2FCBBoxHead.loss: reg_decoded_bbox needs the targets' rois");
            pred = md_bbox_decode(ctx, h->coder, md_tensor_to(ctx, md_index_select(ctx, t->rois, 0, pos), dev), pred,
                                  NULL);
        }
        if (h->box_loss == BOX_GIOU) {
            lb = md_loss_giou(ctx, pred, tg, wt, h->bbox_eps, MD_REDUCE_MEAN, (double)K);
        } else if (h->box_loss == BOX_IOU) {   /* weight [P, 4] -> mean(-1); iou clamped at eps */
            md_tensor *iou = md_clamp(ctx, md_bbox_overlaps(ctx, pred, tg, MD_IOU, true, 1e-6), h->bbox_eps, INFINITY);
            md_tensor *l = h->iou_mode == IOU_LOG      ? md_neg(ctx, md_log(ctx, iou))
                           : h->iou_mode == IOU_LINEAR ? md_add_scalar(ctx, md_neg(ctx, iou), 1.0)
                                                       : md_add_scalar(ctx, md_neg(ctx, md_mul(ctx, iou, iou)), 1.0);
            lb = md_weight_reduce_loss(ctx, l, md_mean(ctx, wt, 1, false), MD_REDUCE_MEAN, (double)K);
        } else {
            lb = h->smooth_l1 ? md_loss_smooth_l1(ctx, pred, tg, wt, h->beta, MD_REDUCE_MEAN, (double)K)
                              : md_loss_l1(ctx, pred, tg, wt, MD_REDUCE_MEAN, (double)K);
        }
        lb = md_mul_scalar(ctx, lb, h->bbox_weight);
    } else {
        /* mmdet: bbox_pred[pos_inds].sum(), a zero still on the graph */
        lb = md_mul_scalar(ctx, md_sum(ctx, bbox_pred, MD_DIM_ALL, false), 0.0);
    }
    if (!lb) return md_fail(err, "Shared2FCBBoxHead.loss: %s", md_ctx_error(ctx)->msg);
    return md_losses_add(losses, "loss_bbox", lb, err);
}

/* get_bboxes with cfg=None: softmax scores, boxes decoded and clipped to
 * img_shape, divided by scale_factor when rescale; no NMS. */
static int head_get_raw_bboxes(md_ctx *ctx, md_module *m, md_tensor *rois, md_tensor *cls_score, md_tensor *bbox_pred,
                               const int img_shape[2], const float scale_factor[4], bool rescale, md_tensor **bboxes,
                               md_tensor **scores_out) {
    bbox_head *h = (bbox_head *)m;
    *bboxes = *scores_out = NULL;
    if (!rois || !cls_score || !bbox_pred) return -1;
    bool was = md_grad_set_enabled(ctx, false);
    /* post-processing is host logic: CPU copies of the (few) RoI outputs */
    rois = md_tensor_to(ctx, rois, MD_DEVICE_CPU);
    cls_score = md_tensor_to(ctx, cls_score, MD_DEVICE_CPU);
    bbox_pred = md_tensor_to(ctx, bbox_pred, MD_DEVICE_CPU);
    if (!rois || !cls_score || !bbox_pred) {
        md_grad_set_enabled(ctx, was);
        return -1;
    }
    md_tensor *scores = md_contiguous(ctx, md_softmax(ctx, cls_score, -1));
    md_tensor *b4 = rois->shape[1] == 5 ? md_contiguous(ctx, md_slice(ctx, rois, 1, 1, 5, 1)) : rois;
    md_tensor *boxes = md_contiguous(ctx, md_bbox_decode(ctx, h->coder, b4, bbox_pred, img_shape));
    md_grad_set_enabled(ctx, was);
    if (!scores || !boxes) return -1;
    if (rescale && boxes->shape[0] > 0) {
        float *p = md_f32(boxes);
        int64_t n = md_tensor_numel(boxes);
        for (int64_t i = 0; i < n; i++) p[i] /= scale_factor[i % 4];
    }
    *bboxes = boxes;
    *scores_out = scores;
    return 0;
}

static int head_get_bboxes(md_ctx *ctx, md_module *m, md_tensor *rois, md_tensor *cls_score, md_tensor *bbox_pred,
                           const int img_shape[2], const float scale_factor[4], bool rescale,
                           const md_rcnn_test_cfg *cfg, md_tensor **det_bboxes, md_tensor **det_labels) {
    bbox_head *h = (bbox_head *)m;
    *det_bboxes = *det_labels = NULL;
    md_tensor *boxes, *scores;
    if (head_get_raw_bboxes(ctx, m, rois, cls_score, bbox_pred, img_shape, scale_factor, rescale, &boxes, &scores))
        return -1;
    return md_multiclass_nms(ctx, boxes, scores, h->num_classes, cfg->score_thr, cfg->nms_iou, cfg->max_per_img,
                             det_bboxes, det_labels);
}

static int head_num_classes(const md_module *m) { return ((const bbox_head *)m)->num_classes; }

static int head_init_weights(md_ctx *ctx, md_module *m, md_error *err) {
    return md_init_cfg_pretrained(ctx, m, ((bbox_head *)m)->init_cfg, "Shared2FCBBoxHead", err) < 0 ? -1 : 0;
}

static void head_destroy(md_module *m) {
    bbox_head *h = (bbox_head *)m;
    MD_BBOX_DESTROY(h->coder);
    md_cfg_free(h->init_cfg);
}

static const md_bbox_head_class head_cls = {
    .model = { .module = { .name = "Shared2FCBBoxHead", .destroy = head_destroy }, .init_weights = head_init_weights },
    .forward = head_forward,
    .get_targets = head_get_targets,
    .loss = head_loss,
    .get_bboxes = head_get_bboxes,
    .num_classes = head_num_classes,
    .get_raw_bboxes = head_get_raw_bboxes,
};

static int add_linear(md_ctx *ctx, md_module *parent, const char *name, int in, int out, md_error *err) {
    md_module *l = md_nn_linear(ctx, in, out, true, err);
    if (!l) return -1;
    if (md_module_add_child(parent, name, l, err)) {
        md_module_free(l);
        return -1;
    }
    return 0;
}

/* loss_cls / loss_bbox groups: the supported types and their weights. */
static int read_losses(bbox_head *h, const md_cfg *cfg, md_error *err) {
    const md_cfg *lc = md_cfg_get(cfg, "loss_cls"), *lb = md_cfg_get(cfg, "loss_bbox");
    static const md_key cls_keys[] = {
        { "type", MD_KEY_STRING, NULL, NULL, false },
        { "use_sigmoid", MD_KEY_BOOL, "false", "only false", false },
        { "use_mask", MD_KEY_BOOL, "false", "only false", false },
        { "reduction", MD_KEY_STRING, "\"mean\"", "only mean", false },
        { "loss_weight", MD_KEY_FLOAT, "1.0", NULL, false },
        { "class_weight", MD_KEY_ANY, "None", "only None", false },
        { "avg_non_ignore", MD_KEY_BOOL, "false", "no ignored labels here: no effect", false },
        { 0 } };
    static const md_key box_keys[] = {
        { "type", MD_KEY_STRING, NULL, NULL, false },
        { "beta", MD_KEY_FLOAT, "1.0", "SmoothL1Loss beta", false },
        { "eps", MD_KEY_FLOAT, "1e-6", "GIoULoss / IoULoss eps", false },
        { "mode", MD_KEY_STRING, "\"log\"", "IoULoss mode: linear, square or log", false },
        { "linear", MD_KEY_BOOL, "false", "IoULoss: mode linear", false },
        { "reduction", MD_KEY_STRING, "\"mean\"", "only mean", false },
        { "loss_weight", MD_KEY_FLOAT, "1.0", NULL, false },
        { 0 } };
    if (md_cfg_check_keys(lc, cls_keys, "loss_cls", err) || md_cfg_check_keys(lb, box_keys, "loss_bbox", err))
        return -1;
    const md_cfg *cw = md_cfg_get(lc, "class_weight");
    if (strcmp(md_cfg_str(lc, "type", ""), "CrossEntropyLoss") || md_cfg_bool(lc, "use_sigmoid", false) ||
        md_cfg_bool(lc, "use_mask", false) || strcmp(md_cfg_str(lc, "reduction", "mean"), "mean") ||
        (cw && md_cfg_kind(cw) != MD_CFG_NONE))
        return md_failc(err, MD_ERR_CONFIG, "loss_cls: only CrossEntropyLoss (softmax, mean, no class_weight) is "
                        "supported, got type \"%s\"", md_cfg_str(lc, "type", ""));
    const char *bt = md_cfg_str(lb, "type", "");
    h->box_loss = !strcmp(bt, "L1Loss") ? BOX_L1 : !strcmp(bt, "SmoothL1Loss") ? BOX_SMOOTH_L1
                  : !strcmp(bt, "GIoULoss") ? BOX_GIOU : !strcmp(bt, "IoULoss") ? BOX_IOU : -1;
    if (h->box_loss < 0 || strcmp(md_cfg_str(lb, "reduction", "mean"), "mean"))
        return md_failc(err, MD_ERR_CONFIG, "loss_bbox: only L1Loss, SmoothL1Loss, GIoULoss and IoULoss (mean) are "
                        "supported, got \"%s\"", bt);
    if (h->box_loss >= BOX_GIOU && !h->reg_decoded_bbox)
        return md_failc(err, MD_ERR_CONFIG, "loss_bbox %s compares boxes: it needs reg_decoded_bbox = true (L1Loss or SmoothL1Loss regress the deltas)", bt);
    /* mmdet: GIoULoss(eps=1e-6), IoULoss(linear=False, eps=1e-6, mode='log') */
    const char *mode = md_cfg_str(lb, "mode", "log");
    h->iou_mode = md_cfg_bool(lb, "linear", false) ? IOU_LINEAR
                  : !strcmp(mode, "log") ? IOU_LOG : !strcmp(mode, "linear") ? IOU_LINEAR
                  : !strcmp(mode, "square") ? IOU_SQUARE : -1;
    if (h->iou_mode < 0)
        return md_failc(err, MD_ERR_CONFIG, "loss_bbox.mode \"%s\": IoULoss modes are linear, square and log", mode);
    h->bbox_eps = md_cfg_float(lb, "eps", 1e-6);
    h->smooth_l1 = h->box_loss == BOX_SMOOTH_L1;
    h->beta = md_cfg_float(lb, "beta", 1.0);
    h->cls_weight = md_cfg_float(lc, "loss_weight", 1.0);
    h->bbox_weight = md_cfg_float(lb, "loss_weight", 1.0);
    return 0;
}

static void *head_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    int in = (int)md_cfg_int(cfg, "in_channels", 256), fc = (int)md_cfg_int(cfg, "fc_out_channels", 1024);
    int rs = (int)md_cfg_int(cfg, "roi_feat_size", 7), nc = (int)md_cfg_int(cfg, "num_classes", 80);
    if (in < 1 || fc < 1 || rs < 1 || nc < 1) {
        md_failc(err, MD_ERR_CONFIG, "in_channels (%d), fc_out_channels (%d), roi_feat_size (%d) and num_classes "
                 "(%d) must be positive", in, fc, rs, nc);
        return NULL;
    }
    const md_cfg *init = md_cfg_get(cfg, "init_cfg");
    if (md_init_cfg_check(init, "init_cfg", err) != 0) return NULL;
    bbox_head *h = md_module_new(sizeof *h, &head_cls.model.module);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    md_module *m = &h->base;
    h->in_channels = in;
    h->fc_out = fc;
    h->roi_size = rs;
    h->num_classes = nc;
    h->agnostic = md_cfg_bool(cfg, "reg_class_agnostic", false);
    h->reg_decoded_bbox = md_cfg_bool(cfg, "reg_decoded_bbox", false);
    if (read_losses(h, cfg, err)) goto fail;
    if (init && md_cfg_kind(init) != MD_CFG_NONE && !(h->init_cfg = md_cfg_clone(init))) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!(h->coder = md_build_part(ctx, "bbox_coders", cfg, "bbox_coder", err))) goto fail;
    md_module *list = md_module_new(sizeof(md_module), &list_class);
    if (!list) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (md_module_add_child(m, "shared_fcs", list, err)) {
        md_module_free(list);
        goto fail;
    }
    if (add_linear(ctx, list, "0", in * rs * rs, fc, err) || add_linear(ctx, list, "1", fc, fc, err) ||
        add_linear(ctx, m, "fc_cls", fc, nc + 1, err) || add_linear(ctx, m, "fc_reg", fc, h->agnostic ? 4 : 4 * nc, err))
        goto fail;
    md_rng *r = md_ctx_rng(ctx);
    for (int i = 0; i < 2; i++) {
        md_module *l = md_module_child(list, i ? "1" : "0");
        md_init_xavier(md_nn_weight(l), r, 1.0, true);
        md_init_constant(md_nn_bias(l), 0);
    }
    md_init_normal(md_nn_weight(md_module_child(m, "fc_cls")), r, 0, 0.01);
    md_init_constant(md_nn_bias(md_module_child(m, "fc_cls")), 0);
    md_init_normal(md_nn_weight(md_module_child(m, "fc_reg")), r, 0, 0.001);
    md_init_constant(md_nn_bias(md_module_child(m, "fc_reg")), 0);
    md_module_train(m, true);
    return m;
fail:
    md_module_free(m);
    return NULL;
}

static const md_class head_class = {
    .name = "Shared2FCBBoxHead", .keys = keys, .build = head_build, MD_IFACE(&head_cls, MD_IFACE_BBOX_HEAD),
    .doc = "two shared fcs, then classification and box regression (mmdet 2.x)",
};

MD_PLUGIN("bbox_head", "1.0", "Apache-2.0");
MD_REGISTER("heads", head_class)
