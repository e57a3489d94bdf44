/* mmdet's RPNHead (mmdet/models/dense_heads/rpn_head.py, 2.28) on the
 * library's AnchorHead (anchor_head.h), which owns the parts, the targets
 * and the loss (loss_rpn_cls, loss_rpn_bbox; every positive is class 0, as
 * mmdet's gt_labels=None). This file is the difference: rpn_conv (3x3 +
 * ReLU), rpn_cls (one sigmoid score per anchor) and rpn_reg per level, and
 * the proposals (get_bboxes): per level the nms_pre best scores (ties in
 * torch.sort's order, md_sort_order_torch), decode and
 * clip, drop boxes not wider and taller than min_bbox_size, batched NMS
 * with the level as the class, then max_per_img; labels 0. As in mmdet
 * 2.28, with_nms is ignored; unlike it (as mmdet 3), rescale divides by the
 * scale_factor, so the head also serves a single-stage detector. Init:
 * Normal(0, 0.01) on the convs. */
#include <math.h>
#include <string.h>
#include <mmdet/anchor_head.h>
#include <mmdet/mmdet.h>

static const md_key keys[] = {
    { "num_classes", MD_KEY_INT, "1", "only 1", false, MD_AT(md_anchor_head, num_classes), .min = "1", .max = "1" },
    { "num_convs", MD_KEY_INT, "1", "only 1", false, .min = "1", .max = "1" },
    MD_ANCHOR_HEAD_KEYS("{ type = \"AnchorGenerator\"; scales = [8]; ratios = [0.5, 1.0, 2.0]; strides = [4, 8, 16, 32, 64]; }"),
    { 0 } };

/* RPNHead.forward_single: rpn_conv + ReLU, rpn_cls [N, A, H, W], rpn_reg
 * [N, 4A, H, W]. */
static int forward_single(md_ctx *ctx, md_anchor_head *h, md_tensor *x, int level, md_tensor **cls, md_tensor **reg) {
    md_module *m = &h->base;
    (void)level;
    /* conv + ReLU: one fused pass in inference */
    md_tensor *y = md_nn_conv_bn_act(ctx, m, "rpn_conv", NULL, true, x);
    *cls = md_module_call(ctx, m, "rpn_cls", y);
    *reg = md_module_call(ctx, m, "rpn_reg", y);
    if (!*cls || !*reg) return -1;
    md_tensor_release(ctx, y);   /* the two convs' backward keep what they read */
    return 0;
}

static int init_layers(md_ctx *ctx, md_anchor_head *h, md_error *err) {
    if (!h->use_sigmoid_cls)
        return md_failc(err, MD_ERR_CONFIG, "loss_cls: RPNHead scores anchors with a sigmoid loss (use_sigmoid = true)");
    md_module *m = &h->base;
    int A = h->num_base_priors;
    return md_anchor_head_add_conv(ctx, m, "rpn_conv", h->in_channels, h->feat_channels, 3, 0.01, 0.0, err) ||
           md_anchor_head_add_conv(ctx, m, "rpn_cls", h->feat_channels, A * h->cls_out_channels, 1, 0.01, 0.0, err) ||
           md_anchor_head_add_conv(ctx, m, "rpn_reg", h->feat_channels, A * 4, 1, 0.01, 0.0, err);
}

#define FAIL_OP(err, what) md_error_from_ctx(ctx, (err), "RPNHead.%s", (what))

/* The outputs permuted to mmdet's (y, x, anchor) order and concatenated
 * over levels: cls [N, T], reg [N, T, 4]; the anchors of each level's size
 * level_sizes[l]. */
static int flatten_outputs(md_ctx *ctx, md_anchor_head *h, md_tensor *const *cls_l, md_tensor *const *reg_l, int n,
                           md_tensor **cls, md_tensor **reg, int64_t *level_sizes) {
    md_tensor *cs[MD_MAX_LEVELS], *rs[MD_MAX_LEVELS];
    for (int l = 0; l < n; l++) {
        md_tensor *c = cls_l[l], *r = reg_l[l];
        if (!c || !r) return -1;
        int64_t N = c->shape[0];
        level_sizes[l] = c->shape[2] * c->shape[3] * h->num_base_priors;
        cs[l] = md_reshape(ctx, md_permute(ctx, c, (const int[]){ 0, 2, 3, 1 }), MD_DIMS(N, -1));
        rs[l] = md_reshape(ctx, md_permute(ctx, r, (const int[]){ 0, 2, 3, 1 }), MD_DIMS(N, -1, 4));
    }
    *cls = n == 1 ? cs[0] : md_cat(ctx, cs, n, 1);
    *reg = n == 1 ? rs[0] : md_cat(ctx, rs, n, 1);
    return *cls && *reg ? 0 : -1;
}

static int check_levels(md_anchor_head *h, int n, md_error *err) {
    int nl = h->prior_generator->iface->num_levels(h->prior_generator);
    if (n < 1 || n > nl || n > MD_MAX_LEVELS)
        return md_failc(err, MD_ERR_SHAPE, "RPNHead: %d feature maps, the anchor generator has %d levels", n, nl);
    return 0;
}

/* Row i of a batch-first tensor, without the batch dimension. */
static md_tensor *row(md_ctx *ctx, md_tensor *t, int64_t i) { return md_squeeze(ctx, md_slice(ctx, t, 0, i, i + 1, 1), 0); }

/* _get_bboxes_single of one image (grad off). */
static md_tensor *proposals_one(md_ctx *ctx, md_anchor_head *h, md_tensor *cls, md_tensor *reg, md_tensor *anchors,
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
            /* mmdet sorts the level with torch.sort and keeps the first
             * nms_pre: tied scores (many, once the model is trained) fall
             * in that unstable sort's order, which NMS then inherits */
            s = md_contiguous(ctx, s);
            md_tensor *idx = s ? md_tensor_empty(ctx, MD_I64, MD_DIMS(T)) : NULL;
            if (!idx) return NULL;
            if (md_sort_order_torch(md_f32(s), T, md_i64(idx)))
                return md_op_failc(ctx, MD_ERR_NOMEM, "RPNHead.get_bboxes", "out of memory sorting %lld scores",
                                   (long long)T);
            idx = md_slice(ctx, idx, 0, 0, pc->nms_pre, 1);
            s = md_index_select(ctx, s, 0, idx);
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
    md_tensor *props = md_contiguous(ctx, md_bbox_decode(ctx, h->bbox_coder, anc, deltas, shape));
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
    md_anchor_head *h = md_anchor_head_of(m);
    (void)with_nms;   /* mmdet 2.28's RPNHead ignores it */
    if (!pc && !h->has_test_cfg) return md_failc(err, MD_ERR_CONFIG, "RPNHead: get_bboxes needs test_cfg");
    if (!pc) pc = &h->test_cfg;
    if (check_levels(h, n, err)) return -1;
    bool was = md_grad_set_enabled(ctx, false);
    int64_t level_sizes[MD_MAX_LEVELS];
    md_tensor *cls = NULL, *reg = NULL;
    md_tensor *anchors = flatten_outputs(ctx, h, cls_l, reg_l, n, &cls, &reg, level_sizes) ? NULL
                         : md_contiguous(ctx, md_anchor_head_anchors(ctx, h, cls_l, n, NULL));
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

/* mmdet 2.28's RPNHead.onnx_export: the anchor heads' shared part
 * (md_anchor_head_onnx_bboxes: per level the nms_pre best, decoded and
 * clipped), then one NMS across the levels (not per level as get_bboxes),
 * max_per_img boxes, score threshold nms.score_thr (0); no min_bbox_size
 * filter. Proposals dets [N, max_per_img, 5] (zero rows past them). */
static int rpn_onnx_export(md_ctx *ctx, md_module *m, md_tensor *const *cls_l, md_tensor *const *reg_l, int n,
                           const md_onnx_image *img, md_onnx_dets *out, md_error *err) {
    md_anchor_head *h = md_anchor_head_of(m);
    if (check_levels(h, n, err)) return -1;
    const char *boxes, *scores;
    int64_t T;
    if (md_anchor_head_onnx_bboxes(ctx, m, cls_l, reg_l, n, img, &boxes, &scores, &T, err)) return -1;
    const md_dense_test_cfg *pc = &h->test_cfg;
    int64_t K = pc->max_per_img > 0 ? pc->max_per_img : T;
    md_onnx_nms_opts o = { .max_per_class = K, .iou_thr = pc->nms_iou, .score_thr = 0, .max_per_img = K };
    if (md_onnx_nms(ctx, boxes, scores, T, 1, &o, out)) return FAIL_OP(err, "onnx_export");
    out->n = cls_l[0]->shape[0];
    return 0;
}

/* mmdet's rpn test_cfg: nms required, 1000 proposals. */
static const md_dense_test_cfg test_defaults = { .nms_pre = -1, .score_thr = 0, .min_bbox_size = 0, .nms_iou = -1,
                                                 .max_per_img = 1000 };

static const md_anchor_head_class rpn = {
    .dense = MD_ANCHOR_HEAD_DENSE_FULL("RPNHead", md_anchor_head_loss, rpn_get_bboxes, rpn_onnx_export),
    .size = sizeof(md_anchor_head),
    .keys = keys,
    .init_layers = init_layers,
    .forward_single = forward_single,
    .loss_cls_name = "loss_rpn_cls",
    .loss_bbox_name = "loss_rpn_bbox",
    .ignore_gt_labels = true,
    .test_defaults = &test_defaults,
};

MD_PLUGIN("rpn_head", "1.0", "Apache-2.0");
MD_ANCHOR_HEAD_REGISTER(rpn, "RPNHead", keys, "region proposal network head (mmdet 2.x, an AnchorHead)")
