/* ATSSAssigner and ATSSHead on hand-worked cases (the mmdet goldens are in
 * test_dense_mmdet.c): the assigner's candidates, IoU threshold (mean plus
 * unbiased std) and centre-in-gt rule on one level; its refusal without
 * the boxes' levels; MaxIoUAssigner through md_bbox_assign_levels (levels
 * ignored); the head's state-dict names and init, the score factor as the
 * fifth channel of each anchor; and its loss on chosen outputs. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <mmdet/anchor_head.h>
#include <mmdet/mmdet.h>
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) {
    ctx = test_ctx(9, (const char *const[]){ "plugins/bbox", "plugins/heads", "plugins/losses", NULL });
    md_ctx_set_threads(ctx, 1);
}
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(atss, .init = setup, .fini = teardown, .timeout = 60);

static void *build(const char *registry, const char *text) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(text, "test_atss.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    void *obj = md_build_from_cfg(ctx, registry, md_cfg_get(root, "x"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(obj, "%s", err.msg);
    return obj;
}

static double iou(const float *a, const float *b) {
    double iw = fmin(a[2], b[2]) - fmax(a[0], b[0]), ih = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    double inter = iw > 0 && ih > 0 ? iw * ih : 0;
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter);
}

/* 16 px anchors centred on a 4x4 grid of stride 8 (centres 0, 8, 16, 24:
 * mmdet's AnchorGenerator with center_offset 0), row-major. */
static void grid_anchors(float *a) {
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            float *r = a + (y * 4 + x) * 4;
            r[0] = 8.0f * x - 8, r[1] = 8.0f * y - 8, r[2] = 8.0f * x + 8, r[3] = 8.0f * y + 8;
        }
}

/* The gt (2, 1, 18, 17), centre (10, 9). Its three nearest anchor centres:
 * (8, 8) at sqrt 5, (16, 8) at sqrt 37, (8, 16) at sqrt 53 (then sqrt 85
 * twice: no tie at the cut). Their IoUs 210/302, 150/362, 126/386 have
 * mean m and unbiased std s; only the first reaches m + s (0.695 against
 * 0.671), and its centre lies inside the gt. */
static float hand_gt[] = { 2, 1, 18, 17 };
enum { A1 = 1 * 4 + 1, A2 = 1 * 4 + 2, A3 = 2 * 4 + 1 };

Test(atss, assigner_by_hand) {
    float anc[16 * 4];
    grid_anchors(anc);
    double v[3] = { 210.0 / 302, 150.0 / 362, 126.0 / 386 }, m = (v[0] + v[1] + v[2]) / 3, s = 0;
    for (int i = 0; i < 3; i++) s += (v[i] - m) * (v[i] - m);
    s = sqrt(s / 2);
    cr_assert(v[0] >= m + s && v[1] < m + s, "the hand case: %g %g against %g", v[0], v[1], m + s);
    cr_assert_float_eq(iou(anc + A1 * 4, hand_gt), v[0], 1e-9);
    cr_assert_float_eq(iou(anc + A2 * 4, hand_gt), v[1], 1e-9);
    cr_assert_float_eq(iou(anc + A3 * 4, hand_gt), v[2], 1e-9);

    md_bbox_assigner *a = build("bbox_assigners", "x = { type = \"ATSSAssigner\"; topk = 3; };");
    md_tensor *boxes = md_tensor_from(ctx, MD_F32, MD_DIMS(16, 4), anc);
    md_tensor *gt = md_tensor_from(ctx, MD_F32, MD_DIMS(1, 4), hand_gt);
    int64_t lab = 4, one_level = 16;
    md_tensor *labels = md_tensor_from(ctx, MD_I64, MD_DIMS(1), &lab);
    md_assign_levels levels = { 1, &one_level };
    md_assign_result ar;
    md_error err = { 0 };
    cr_assert_eq(md_bbox_assign_levels(ctx, a, boxes, &levels, gt, NULL, labels, &ar, &err), 0, "%s", err.msg);
    for (int j = 0; j < 16; j++) {
        cr_assert_eq(md_i64(ar.gt_inds)[j], j == A1 ? 1 : 0, "anchor %d: gt_inds %lld", j, (long long)md_i64(ar.gt_inds)[j]);
        cr_assert_eq(md_i64(ar.labels)[j], j == A1 ? 4 : -1);
        /* mmdet: the chosen gt's IoU, -INF (-1e8) where not positive */
        cr_assert_float_eq(md_f32(ar.max_overlaps)[j], j == A1 ? v[0] : -1e8, 1e-6);
    }
    /* topk 1: one candidate, whose std is NaN in torch: nothing passes */
    MD_BBOX_DESTROY(a);
    a = build("bbox_assigners", "x = { type = \"ATSSAssigner\"; topk = 1; };");
    cr_assert_eq(md_bbox_assign_levels(ctx, a, boxes, &levels, gt, NULL, labels, &ar, &err), 0, "%s", err.msg);
    for (int j = 0; j < 16; j++) cr_assert_eq(md_i64(ar.gt_inds)[j], 0);
    /* two levels of 8 anchors each: the three nearest of each level are
     * candidates, six in all */
    int64_t two[2] = { 8, 8 };
    md_assign_levels lv2 = { 2, two };
    cr_assert_eq(md_bbox_assign_levels(ctx, a, boxes, &lv2, gt, NULL, labels, &ar, &err), 0, "%s", err.msg);
    /* the levels must cover the boxes; without levels ATSS refuses */
    int64_t short_levels[2] = { 8, 4 };
    md_assign_levels bad = { 2, short_levels };
    cr_assert_neq(md_bbox_assign_levels(ctx, a, boxes, &bad, gt, NULL, labels, &ar, &err), 0);
    cr_assert(strstr(err.msg, "sum to 12") && strstr(err.msg, "16 boxes"), "%s", err.msg);
    cr_assert_neq(md_bbox_assign(ctx, a, boxes, gt, NULL, labels, &ar, &err), 0);
    cr_assert(strstr(err.msg, "ATSSAssigner") && strstr(err.msg, "per-level counts"), "%s", err.msg);
    MD_BBOX_DESTROY(a);

    /* MaxIoUAssigner has no assign_levels: md_bbox_assign_levels calls its
     * assign, the levels unread (A1 is the only box over 0.5) */
    a = build("bbox_assigners", "x = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.5; neg_iou_thr = 0.4; "
                                "min_pos_iou = 0.0; match_low_quality = false; };");
    cr_assert_null(a->iface->assign_levels);
    cr_assert_eq(md_bbox_assign_levels(ctx, a, boxes, &bad, gt, NULL, labels, &ar, &err), 0, "%s", err.msg);
    for (int j = 0; j < 16; j++) cr_assert_eq(md_i64(ar.gt_inds)[j], j == A1 ? 1 : (iou(anc + j * 4, hand_gt) < 0.4 ? 0 : -1));
    MD_BBOX_DESTROY(a);

    md_cfg *root = md_cfg_parse("x = { type = \"ATSSAssigner\"; topk = 9; alpha = \"high\"; };", "t.cfg", &err);
    cr_assert_null(md_build_from_cfg(ctx, "bbox_assigners", md_cfg_get(root, "x"), NULL, &err));
    cr_assert(strstr(err.msg, "alpha") && strstr(err.msg, "a number"), "%s", err.msg);
    md_cfg_free(root);
    md_ctx_step_reset(ctx);
}

static double sigmoid(double x) { return 1 / (1 + exp(-x)); }

/* DDOD's dynamic cost (alpha 0.5) on the hand case: the candidates are
 * still the three nearest anchor centres (A1, A2, A3), but they are ranked
 * by sqrt(sigmoid(cls) * IoU(pred, gt)). With class-4 logits -4, 0 and 4
 * and A3's predicted box on the gt (IoU 1; the others predict their
 * anchors) the costs are 0.112, 0.455 and 0.991: mean 0.519, std 0.443,
 * and only A3 reaches 0.962 (its centre (8, 16) is inside the gt), though
 * its anchor overlaps the gt least. */
Test(atss, assigner_alpha_by_hand) {
    float anc[16 * 4], pred[16 * 4], cls[16 * 5] = { 0 };
    grid_anchors(anc);
    memcpy(pred, anc, sizeof pred);
    memcpy(pred + A3 * 4, hand_gt, sizeof hand_gt);
    cls[A1 * 5 + 4] = -4, cls[A2 * 5 + 4] = 0, cls[A3 * 5 + 4] = 4;
    for (int j = 0; j < 16; j++)
        if (j != A1 && j != A2 && j != A3) cls[j * 5 + 4] = -9;
    double c[3] = { sqrt(sigmoid(-4) * iou(anc + A1 * 4, hand_gt)), sqrt(sigmoid(0) * iou(anc + A2 * 4, hand_gt)),
                    sqrt(sigmoid(4) * 1.0) }, m = (c[0] + c[1] + c[2]) / 3, s = 0;
    for (int i = 0; i < 3; i++) s += (c[i] - m) * (c[i] - m);
    s = sqrt(s / 2);
    cr_assert(c[2] >= m + s && c[1] < m + s && c[0] < m + s, "the hand case: %g %g %g against %g", c[0], c[1], c[2],
              m + s);

    md_bbox_assigner *a = build("bbox_assigners", "x = { type = \"ATSSAssigner\"; topk = 3; alpha = 0.5; };");
    md_tensor *boxes = md_tensor_from(ctx, MD_F32, MD_DIMS(16, 4), anc);
    md_tensor *gt = md_tensor_from(ctx, MD_F32, MD_DIMS(1, 4), hand_gt);
    int64_t lab = 4, one_level = 16;
    md_tensor *labels = md_tensor_from(ctx, MD_I64, MD_DIMS(1), &lab);
    md_assign_levels levels = { 1, &one_level, md_tensor_from(ctx, MD_F32, MD_DIMS(16, 5), cls),
                                md_tensor_from(ctx, MD_F32, MD_DIMS(16, 4), pred) };
    md_assign_result ar;
    md_error err = { 0 };
    cr_assert_eq(md_bbox_assign_levels(ctx, a, boxes, &levels, gt, NULL, labels, &ar, &err), 0, "%s", err.msg);
    for (int j = 0; j < 16; j++) {
        cr_assert_eq(md_i64(ar.gt_inds)[j], j == A3 ? 1 : 0, "anchor %d: gt_inds %lld", j,
                     (long long)md_i64(ar.gt_inds)[j]);
        cr_assert_eq(md_i64(ar.labels)[j], j == A3 ? 4 : -1);
        cr_assert_float_eq(md_f32(ar.max_overlaps)[j], j == A3 ? c[2] : -1e8, 1e-6);
    }
    /* without the predictions (or the labels) the cost cannot be formed */
    md_assign_levels bare = { 1, &one_level };
    cr_assert_neq(md_bbox_assign_levels(ctx, a, boxes, &bare, gt, NULL, labels, &ar, &err), 0);
    cr_assert(strstr(err.msg, "alpha") && strstr(err.msg, "cls_scores"), "%s", err.msg);
    cr_assert_neq(md_bbox_assign_levels(ctx, a, boxes, &levels, gt, NULL, NULL, &ar, &err), 0);
    cr_assert(strstr(err.msg, "no labels"), "%s", err.msg);
    MD_BBOX_DESTROY(a);
    /* alpha 1 with the anchors as predictions is plain ATSS (cls^0 * IoU) */
    a = build("bbox_assigners", "x = { type = \"ATSSAssigner\"; topk = 3; alpha = 1; };");
    levels.bbox_preds = boxes;
    cr_assert_eq(md_bbox_assign_levels(ctx, a, boxes, &levels, gt, NULL, labels, &ar, &err), 0, "%s", err.msg);
    for (int j = 0; j < 16; j++) cr_assert_eq(md_i64(ar.gt_inds)[j], j == A1 ? 1 : 0, "anchor %d", j);
    MD_BBOX_DESTROY(a);
    md_ctx_step_reset(ctx);
}

/* ---- the head ---- */
static md_module *head(int ratios) {
    char text[2048];
    snprintf(text, sizeof text,
             "x = { type = \"ATSSHead\"; num_classes = 2; in_channels = 4; feat_channels = 8; stacked_convs = 1;\n"
             "  norm_cfg = { type = \"GN\"; num_groups = 4; requires_grad = true; };\n"
             "  anchor_generator = { type = \"AnchorGenerator\"; ratios = %s; octave_base_scale = 2;\n"
             "                       scales_per_octave = 1; strides = [8]; };\n"
             "  loss_cls = { type = \"FocalLoss\"; use_sigmoid = true; gamma = 2.0; alpha = 0.25; loss_weight = 1.0; };\n"
             "  loss_bbox = { type = \"GIoULoss\"; loss_weight = 2.0; };\n"
             "  train_cfg = { assigner = { type = \"ATSSAssigner\"; topk = 3; }; allowed_border = -1; pos_weight = -1; };\n"
             "  test_cfg = { nms_pre = 100; score_thr = 0.05; nms = { type = \"nms\"; iou_threshold = 0.6; }; max_per_img = 10; };\n"
             "};", ratios == 2 ? "[1.0, 2.0]" : "[1.0]");
    return build("heads", text);
}

Test(atss, head_layers_and_score_factor_layout) {
    md_module *m = head(2);
    static const char *names[] = { "cls_convs.0.conv.weight", "cls_convs.0.gn.weight", "reg_convs.0.gn.bias",
                                   "atss_cls.weight", "atss_cls.bias", "atss_reg.weight", "atss_reg.bias",
                                   "atss_centerness.weight", "atss_centerness.bias", "scales.0.scale" };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) cr_assert_not_null(md_module_find(m, names[i]), "%s", names[i]);
    cr_assert_null(md_module_find(m, "cls_convs.0.conv.bias"), "no conv bias before GN (ConvModule's bias auto)");
    cr_assert_eq(md_module_find(m, "atss_cls.weight")->shape[0], 2 * 2);
    cr_assert_eq(md_module_find(m, "atss_reg.weight")->shape[0], 2 * 4);
    cr_assert_eq(md_module_find(m, "atss_centerness.weight")->shape[0], 2);
    cr_assert_float_eq(md_f32(md_module_find(m, "atss_cls.bias"))[0], -log(0.99 / 0.01), 1e-5);
    cr_assert_eq(md_anchor_head_of(m)->reg_decoded_bbox, true, "mmdet's ATSSHead default");
    /* the centerness conv gives bias b_a per anchor (weights 0); the reg conv
     * 0: bbox_pred's channels are anchor 0's four deltas, its centerness,
     * then anchor 1's */
    md_tensor *w = md_module_find(m, "atss_centerness.weight"), *b = md_module_find(m, "atss_centerness.bias");
    md_tensor_fill_(w, 0.0);
    md_f32(b)[0] = 0.25f, md_f32(b)[1] = -0.5f;
    md_tensor_fill_(md_module_find(m, "atss_reg.weight"), 0.0);
    md_tensor_fill_(md_module_find(m, "atss_reg.bias"), 0.0);
    md_tensor *feat = md_tensor_full(ctx, MD_F32, MD_DIMS(1, 4, 3, 2), 0.3);
    md_tensor *cls, *reg;
    cr_assert_eq(md_dense_head_class_of(m)->forward(ctx, m, &feat, 1, &cls, &reg), 0, "%s", md_ctx_error(ctx)->msg);
    cr_assert(reg->shape[0] == 1 && reg->shape[1] == 10 && reg->shape[2] == 3 && reg->shape[3] == 2);
    reg = md_contiguous(ctx, reg);
    for (int c = 0; c < 10; c++)
        for (int p = 0; p < 6; p++)
            cr_assert_float_eq(md_f32(reg)[c * 6 + p], c == 4 ? 0.25f : c == 9 ? -0.5f : 0.0f, 1e-6, "channel %d", c);
    md_ctx_step_reset(ctx);
    md_module_free(m);

    md_error err = { 0 };
    md_cfg *root = md_cfg_parse("x = { type = \"ATSSHead\"; num_classes = 2; in_channels = 4; reg_decoded_bbox = false; };",
                                "t.cfg", &err);
    cr_assert_null(md_build_from_cfg(ctx, "heads", md_cfg_get(root, "x"), NULL, &err));
    cr_assert(strstr(err.msg, "reg_decoded_bbox"), "%s", err.msg);
    md_cfg_free(root);
}

/* One 32x32 image, one level of 4x4 anchors (16 px, stride 8: the grid of
 * the assigner's hand case), the gt of that case with label 1. With zero
 * predictors every anchor's logits are 0, its deltas 0 (the decoded box is
 * the anchor) and its centerness logit 0; the only positive is A1. */
Test(atss, loss_by_hand) {
    md_module *m = head(1);
    for (int k = 0; k < 3; k++) {
        static const char *p[] = { "atss_cls", "atss_reg", "atss_centerness" };
        char n[64];
        snprintf(n, sizeof n, "%s.weight", p[k]);
        md_tensor_fill_(md_module_find(m, n), 0.0);
        snprintf(n, sizeof n, "%s.bias", p[k]);
        md_tensor_fill_(md_module_find(m, n), 0.0);
    }
    md_img_meta meta = { 0 };
    meta.img_shape[0] = meta.img_shape[1] = meta.pad_shape[0] = meta.pad_shape[1] = 32;
    meta.img_shape[2] = meta.pad_shape[2] = 3;
    for (int k = 0; k < 4; k++) meta.scale_factor[k] = 1.0f;
    int64_t lab = 1;
    md_boxes gts = { 1, 1, hand_gt, &lab };
    md_batch b = { .n = 1, .metas = &meta, .gt_bboxes = &gts };
    md_tensor *feat = md_tensor_full(ctx, MD_F32, MD_DIMS(1, 4, 4, 4), 0.5);
    md_tensor *cls, *reg;
    const md_dense_head_class *hc = md_dense_head_class_of(m);
    cr_assert_eq(hc->forward(ctx, m, &feat, 1, &cls, &reg), 0, "%s", md_ctx_error(ctx)->msg);
    md_losses losses = { 0 };
    md_error err = { 0 };
    cr_assert_eq(hc->loss(ctx, m, &cls, &reg, 1, &b, &losses, &err), 0, "%s", err.msg);
    cr_assert_eq(losses.n, 3);
    cr_assert_str_eq(losses.names[2], "loss_centerness");
    /* focal loss of zero logits: 16 anchors x 2 classes, one positive,
     * averaged over num_total_samples = 1 */
    double p = 0.5, pos = 0.25 * pow(1 - p, 2) * -log(p), neg = 0.75 * pow(p, 2) * -log(1 - p);
    cr_assert_float_eq(md_tensor_item(losses.values[0]), pos + 31 * neg, 1e-5, "loss_cls %g", md_tensor_item(losses.values[0]));
    /* A1 = (0, 0, 16, 16) against (2, 1, 18, 17): IoU 210/302, enclosing
     * 18 x 17; centerness of (8, 8): sqrt(6/10 * 7/9); loss_bbox
     * 2 * ctr * (1 - GIoU) over max(ctr, 1) = 1 */
    double giou = 210.0 / 302 - (18.0 * 17 - 302) / (18.0 * 17), ctr = sqrt(6.0 / 10 * (7.0 / 9));
    cr_assert_float_eq(md_tensor_item(losses.values[1]), 2 * ctr * (1 - giou), 1e-5, "loss_bbox %g",
                       md_tensor_item(losses.values[1]));
    /* BCE of logit 0: log 2 whatever the target, over num_total_samples 1 */
    cr_assert_float_eq(md_tensor_item(losses.values[2]), log(2.0), 1e-5);
    cr_assert_eq(md_backward(ctx, md_losses_total(ctx, &losses), &err), 0, "%s", err.msg);
    cr_assert(fabs(md_tensor_get(md_module_find(m, "atss_reg.bias")->grad, 0)) > 0, "loss_bbox reaches atss_reg");
    md_ctx_step_reset(ctx);

    /* no gt: loss_bbox and loss_centerness are zeros in the graph */
    gts.n = 0;
    feat = md_tensor_full(ctx, MD_F32, MD_DIMS(1, 4, 4, 4), 0.5);
    cr_assert_eq(hc->forward(ctx, m, &feat, 1, &cls, &reg), 0, "%s", md_ctx_error(ctx)->msg);
    md_losses l2 = { 0 };
    cr_assert_eq(hc->loss(ctx, m, &cls, &reg, 1, &b, &l2, &err), 0, "%s", err.msg);
    cr_assert_float_eq(md_tensor_item(l2.values[1]), 0.0, 0);
    cr_assert_float_eq(md_tensor_item(l2.values[2]), 0.0, 0);
    cr_assert_float_eq(md_tensor_item(l2.values[0]), 32 * neg, 1e-5, "no positives: averaged over 1");
    md_ctx_step_reset(ctx);
    md_module_free(m);
}

/* ATSSAssigner with alpha against mmdet 2.28.2's (tests/golden/atss_alpha_golden.py):
 * two levels, five gts with labels, the head's logits and box predictions;
 * alpha 0.8 (DDOD's), 0.5 with topk 5, and 0.3 with an ignored gt. */
Test(atss, assigner_alpha_matches_mmdet) {
    md_st *st = golden_open("atss_alpha");
    static const struct { const char *tag, *cfg; } cases[] = {
        { "a08", "x = { type = \"ATSSAssigner\"; topk = 9; alpha = 0.8; };" },
        { "a05", "x = { type = \"ATSSAssigner\"; topk = 5; alpha = 0.5; };" },
        { "a03i", "x = { type = \"ATSSAssigner\"; topk = 9; alpha = 0.3; ignore_iof_thr = 0.5; };" },
    };
    md_tensor *counts = md_contiguous(ctx, golden_get(ctx, st, "counts"));
    md_assign_levels levels = { (int)md_tensor_numel(counts), md_i64(counts), golden_get(ctx, st, "cls_scores"),
                                golden_get(ctx, st, "bbox_preds") };
    for (int c = 0; c < 3; c++) {
        md_bbox_assigner *a = build("bbox_assigners", cases[c].cfg);
        md_assign_result ar;
        md_error err = { 0 };
        cr_assert_eq(md_bbox_assign_levels(ctx, a, golden_get(ctx, st, "anchors"), &levels, golden_get(ctx, st, "gt"),
                                           c == 2 ? golden_get(ctx, st, "ignore") : NULL,
                                           golden_get(ctx, st, "gt_labels"), &ar, &err), 0, "%s", err.msg);
        char k[64];
        snprintf(k, sizeof k, "%s.gt_inds", cases[c].tag);
        md_tensor *ref = golden_get(ctx, st, k);
        int64_t pos = 0;
        for (int64_t j = 0; j < md_tensor_numel(ref); j++) pos += md_i64(md_contiguous(ctx, ref))[j] > 0;
        cr_assert_gt(pos, 3, "%s: mmdet should assign several positives", k);
        assert_equal(ar.gt_inds, ref, k);
        snprintf(k, sizeof k, "%s.labels", cases[c].tag);
        assert_equal(ar.labels, golden_get(ctx, st, k), k);
        /* the chosen gt's cost (mmdet's -INF elsewhere), element by element */
        snprintf(k, sizeof k, "%s.max_overlaps", cases[c].tag);
        md_tensor *mo = md_contiguous(ctx, golden_get(ctx, st, k));
        for (int64_t j = 0; j < md_tensor_numel(mo); j++)
            cr_assert(fabsf(md_f32(ar.max_overlaps)[j] - md_f32(mo)[j]) <= 1e-6f * fmaxf(1.0f, fabsf(md_f32(mo)[j])),
                      "%s[%lld]: %.9g, mmdet %.9g", k, (long long)j, md_f32(ar.max_overlaps)[j], md_f32(mo)[j]);
        MD_BBOX_DESTROY(a);
    }
    md_st_close(st);
    md_ctx_step_reset(ctx);
}
