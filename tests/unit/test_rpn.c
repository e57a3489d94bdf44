/* RPNHead against mmdet 2.28's RPNHead written in PyTorch
 * (tests/golden/rpn_golden.py): its layers, the losses with a RandomSampler
 * that samples every candidate (so the draw does not matter), with the
 * PseudoSampler (avg_factor = #positives) and with allowed_border 0, the
 * gradients of the weights and the input features, and the proposals of
 * simple_test (nms_pre, decode, min_bbox_size, NMS across levels,
 * max_per_img). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/roi_head.h>
#include "testlib.h"

static md_ctx *ctx;
static md_st *gold;
static void setup(void) {
    ctx = test_ctx(7, (const char *const[]){ "plugins/bbox", "plugins/heads", "plugins/losses", NULL });
    md_ctx_set_threads(ctx, 1);
    gold = golden_open("rpn");
}
static void teardown(void) {
    md_st_close(gold);
    md_ctx_free(ctx);
}
TestSuite(rpn, .init = setup, .fini = teardown, .timeout = 60);

#define HEAD                                                                                                      \
    "h = { type = \"RPNHead\"; in_channels = 4; feat_channels = 8;\n"                                             \
    "  anchor_generator = { type = \"AnchorGenerator\"; scales = [4]; ratios = [0.5, 1.0, 2.0]; strides = [8, 16]; };\n" \
    "  bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0];\n"                     \
    "                 target_stds = [1.0, 1.0, 1.0, 1.0]; };\n"                                                     \
    "  loss_cls = { type = \"CrossEntropyLoss\"; use_sigmoid = true; loss_weight = 1.0; };\n"                     \
    "  loss_bbox = { type = \"L1Loss\"; loss_weight = 1.0; };\n"
#define ASSIGNER                                                                                                  \
    "assigner = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.7; neg_iou_thr = 0.3; min_pos_iou = 0.3;\n"          \
    "             match_low_quality = true; ignore_iof_thr = -1.0; };"
#define RANDOM                                                                                                    \
    "sampler = { type = \"RandomSampler\"; num = 256; pos_fraction = 0.5; neg_pos_ub = -1;\n"                     \
    "            add_gt_as_proposals = false; };"

static md_module *build(const char *text) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(text, "test_rpn.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_module *m = md_build_from_cfg(ctx, "heads", md_cfg_get(root, "h"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(m, "%s", err.msg);
    md_load_report rep;
    cr_assert_eq(md_module_load_state(ctx, m, gold, "w.", false, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.missing, 0, "missing: %s", rep.text);
    cr_assert_eq(rep.loaded, 6, "%d weights loaded: %s", rep.loaded, rep.text);
    return m;
}

/* The batch of rpn_golden.py: metas and ground truth of two images. */
static float gt0[] = { 4, 6, 31, 40, 20, 12, 50, 36, 2, 30, 23, 57 }, gt1[] = { 10, 4, 57, 41, 30, 20, 46, 44 };
static int64_t lab0[] = { 0, 0, 0 }, lab1[] = { 0, 0 };
static void make_batch(md_batch *b, md_img_meta *metas, md_boxes *gts) {
    memset(b, 0, sizeof *b);
    memset(metas, 0, 2 * sizeof *metas);
    int pad[2][2] = { { 64, 56 }, { 48, 64 } }, img[2][2] = { { 60, 50 }, { 44, 62 } };
    for (int i = 0; i < 2; i++) {
        metas[i].pad_shape[0] = pad[i][0], metas[i].pad_shape[1] = pad[i][1], metas[i].pad_shape[2] = 3;
        metas[i].img_shape[0] = img[i][0], metas[i].img_shape[1] = img[i][1], metas[i].img_shape[2] = 3;
        metas[i].ori_shape[0] = img[i][0], metas[i].ori_shape[1] = img[i][1], metas[i].ori_shape[2] = 3;
        for (int k = 0; k < 4; k++) metas[i].scale_factor[k] = 1.0f;
    }
    gts[0] = (md_boxes){ 3, 3, gt0, lab0 };
    gts[1] = (md_boxes){ 2, 2, gt1, lab1 };
    b->n = 2;
    b->metas = metas;
    b->gt_bboxes = gts;
}

static void feats(md_tensor **f, bool grad) {
    f[0] = golden_get(ctx, gold, "feat0");
    f[1] = golden_get(ctx, gold, "feat1");
    f[0]->requires_grad = f[1]->requires_grad = grad;
}

/* The head's layers under mmdet's names: rpn_conv (3x3, padding 1) + ReLU,
 * rpn_cls and rpn_reg (1x1). The class has no raw-output entry point;
 * losses and proposals below check what the head computes from them. */
Test(rpn, layers) {
    md_module *m = build(HEAD "};");
    md_tensor *f[2];
    feats(f, false);
    md_grad_set_enabled(ctx, false);
    for (int l = 0; l < 2; l++) {
        md_tensor *x = md_relu(ctx, md_module_call(ctx, m, "rpn_conv", f[l]));
        char key[16];
        snprintf(key, sizeof key, "cls%d", l);
        assert_close(md_module_call(ctx, m, "rpn_cls", x), golden_get(ctx, gold, key), 1e-5, key);
        snprintf(key, sizeof key, "reg%d", l);
        assert_close(md_module_call(ctx, m, "rpn_reg", x), golden_get(ctx, gold, key), 1e-5, key);
    }
    md_module_free(m);
}

static void losses_of(md_module *m, md_tensor **f, md_losses *losses) {
    md_batch b;
    md_img_meta metas[2];
    md_boxes gts[2];
    make_batch(&b, metas, gts);
    md_error err = { 0 };
    memset(losses, 0, sizeof *losses);
    cr_assert_eq(md_dense_head_forward_train(ctx, m, f, 2, &b, NULL, losses, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(losses->n, 2);
    cr_assert_str_eq(losses->names[0], "loss_rpn_cls");
    cr_assert_str_eq(losses->names[1], "loss_rpn_bbox");
}

Test(rpn, loss_and_grads) {
    md_module *m = build(HEAD "train_cfg = { " ASSIGNER RANDOM " allowed_border = -1; pos_weight = -1; }; };");
    md_tensor *f[2];
    feats(f, true);
    md_losses losses;
    losses_of(m, f, &losses);
    assert_close(losses.values[0], golden_get(ctx, gold, "loss_cls"), 1e-5, "loss_rpn_cls");
    assert_close(losses.values[1], golden_get(ctx, gold, "loss_bbox"), 1e-5, "loss_rpn_bbox");
    md_error err = { 0 };
    cr_assert_eq(md_backward(ctx, md_losses_total(ctx, &losses), &err), 0, "%s", err.msg);
    assert_close(f[0]->grad, golden_get(ctx, gold, "grad_feat0"), 1e-4, "d loss / d feat0");
    assert_close(f[1]->grad, golden_get(ctx, gold, "grad_feat1"), 1e-4, "d loss / d feat1");
    static const char *params[] = { "rpn_conv.weight", "rpn_conv.bias", "rpn_cls.weight",
                                    "rpn_cls.bias",    "rpn_reg.weight", "rpn_reg.bias" };
    for (int i = 0; i < 6; i++) {
        char key[64];
        snprintf(key, sizeof key, "grad.%s", params[i]);
        md_tensor *p = md_module_find(m, params[i]);
        cr_assert_not_null(p, "%s", params[i]);
        assert_close(p->grad, golden_get(ctx, gold, key), 1e-4, key);
    }
    md_module_free(m);
}

/* mmdet 2.28's AnchorHead: with the PseudoSampler (or no sampler) it does
 * not sample and averages over the positives only. */
Test(rpn, loss_pseudo_sampler) {
    const char *cfgs[2] = {
        HEAD "train_cfg = { " ASSIGNER " sampler = { type = \"PseudoSampler\"; }; allowed_border = -1; }; };",
        HEAD "train_cfg = { " ASSIGNER " allowed_border = -1; }; };" };
    for (int c = 0; c < 2; c++) {
        md_module *m = build(cfgs[c]);
        md_tensor *f[2];
        feats(f, false);
        md_losses losses;
        losses_of(m, f, &losses);
        assert_close(losses.values[0], golden_get(ctx, gold, "pseudo.loss_cls"), 1e-5, "loss_rpn_cls");
        assert_close(losses.values[1], golden_get(ctx, gold, "pseudo.loss_bbox"), 1e-5, "loss_rpn_bbox");
        md_module_free(m);
    }
}

Test(rpn, loss_allowed_border) {
    md_module *m = build(HEAD "train_cfg = { " ASSIGNER RANDOM " allowed_border = 0; pos_weight = -1; }; };");
    md_tensor *f[2];
    feats(f, false);
    md_losses losses;
    losses_of(m, f, &losses);
    assert_close(losses.values[0], golden_get(ctx, gold, "border0.loss_cls"), 1e-5, "loss_rpn_cls");
    assert_close(losses.values[1], golden_get(ctx, gold, "border0.loss_bbox"), 1e-5, "loss_rpn_bbox");
    md_module_free(m);
}

static void check_proposals(md_tensor *got, const char *key) {
    md_tensor *ref = golden_get(ctx, gold, key);
    cr_assert_eq(got->ndim, 2);
    cr_assert_eq(got->shape[0], ref->shape[0], "%s: %lld proposals, mmdet %lld", key, (long long)got->shape[0],
                 (long long)ref->shape[0]);
    assert_close(got, ref, 1e-5, key);
}

Test(rpn, proposals) {
    md_module *m = build(HEAD "test_cfg = { nms_pre = 20; max_per_img = 12; nms = { type = \"nms\"; iou_threshold = 0.7; };\n"
                              "             min_bbox_size = 2.0; }; };");
    md_tensor *f[2];
    feats(f, false);
    md_grad_set_enabled(ctx, false);
    md_batch b;
    md_img_meta metas[2];
    md_boxes gts[2];
    make_batch(&b, metas, gts);
    md_tensor *props[2];
    md_error err = { 0 };
    cr_assert_eq(md_dense_head_simple_test_rpn(ctx, m, f, 2, &b, props, &err), 0, "%s", err.msg);
    check_proposals(props[0], "props0");
    check_proposals(props[1], "props1");
    md_module_free(m);

    /* every anchor a candidate (no nms_pre), min_bbox_size 0 */
    m = build(HEAD "test_cfg = { nms_pre = -1; max_per_img = 1000; nms = { type = \"nms\"; iou_threshold = 0.4; };\n"
                   "             min_bbox_size = 0; }; };");
    cr_assert_eq(md_dense_head_simple_test_rpn(ctx, m, f, 2, &b, props, &err), 0, "%s", err.msg);
    check_proposals(props[0], "props_all0");
    md_module_free(m);
}

/* Proposals during training come from the proposal_cfg given to
 * forward_train (the detector's train_cfg.rpn_proposal). */
Test(rpn, train_proposals) {
    md_module *m = build(HEAD "train_cfg = { " ASSIGNER RANDOM " allowed_border = -1; }; };");
    md_error err = { 0 };
    md_cfg *pcfg = md_cfg_parse("p = { nms_pre = 20; max_per_img = 12; nms = { type = \"nms\"; iou_threshold = 0.7; };\n"
                                "      min_bbox_size = 2.0; };", "rpn_proposal.cfg", &err);
    cr_assert_not_null(pcfg, "%s", err.msg);
    md_dense_test_cfg pc, dflt = { .nms_pre = -1, .min_bbox_size = 0, .nms_iou = -1, .max_per_img = 1000 };
    cr_assert_eq(md_dense_test_cfg_read(md_cfg_get(pcfg, "p"), "rpn_proposal", &dflt, &pc, &err), 0, "%s", err.msg);
    md_cfg_free(pcfg);
    md_tensor *f[2];
    feats(f, true);
    md_batch b;
    md_img_meta metas[2];
    md_boxes gts[2];
    make_batch(&b, metas, gts);
    md_losses losses = { 0 };
    md_det_result res[2];
    cr_assert_eq(md_dense_head_forward_train(ctx, m, f, 2, &b, &pc, &losses, res, &err), 0, "%s", err.msg);
    cr_assert_eq(losses.n, 2);
    md_tensor *props[2] = { md_det_result_proposals(ctx, &res[0]), md_det_result_proposals(ctx, &res[1]) };
    check_proposals(props[0], "props0");
    check_proposals(props[1], "props1");
    cr_assert(!props[0]->requires_grad, "proposals are detached");
    /* without a proposal_cfg, proposals are an error naming it */
    cr_assert_neq(md_dense_head_forward_train(ctx, m, f, 2, &b, NULL, &losses, res, &err), 0);
    cr_assert(strstr(err.msg, "proposal_cfg"), "%s", err.msg);
    md_module_free(m);
}
