/* RPNHead with reg_decoded_bbox and GIoULoss against mmdet's RPNHead loss
 * written in PyTorch (tests/golden/rpn_decoded_golden.py): losses and gradients of
 * the inputs and every weight; and the box-loss config checks. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/bbox.h>
#include <mmdet/roi_head.h>
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) { ctx = test_ctx(3, (const char *const[]){ "plugins/bbox", "plugins/heads", "plugins/losses", NULL }); }
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(rpn_head, .init = setup, .fini = teardown);

static const char *head_cfg =
    "h = { type = \"RPNHead\"; in_channels = 4; feat_channels = 8;\n"
    "  anchor_generator = { type = \"AnchorGenerator\"; scales = [4]; ratios = [0.5, 1.0, 2.0]; strides = [8, 16]; };\n"
    "  bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0];\n"
    "                 target_stds = [1.0, 1.0, 1.0, 1.0]; };\n"
    "  reg_decoded_bbox = true;\n"
    "  loss_cls = { type = \"CrossEntropyLoss\"; use_sigmoid = true; loss_weight = 1.0; };\n"
    "  loss_bbox = { type = \"GIoULoss\"; loss_weight = 2.0; };\n"
    "  train_cfg = { assigner = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.5; neg_iou_thr = 0.3;\n"
    "                             min_pos_iou = 0.3; match_low_quality = true; ignore_iof_thr = -1.0; };\n"
    "                sampler = { type = \"PseudoSampler\"; }; allowed_border = -1; pos_weight = -1.0; };\n"
    "};";

/* The two images of retina_golden.py / rpn_decoded_golden.py. */
static float gt0[] = { 4, 6, 30, 40, 20, 2, 44, 20, 0, 30, 12, 48 }, gt1[] = { 10, 10, 60, 50, 30, 40, 46, 60 };
static int64_t lab0[] = { 0, 2, 1 }, lab1[] = { 1, 1 };
static float ign1[] = { 0, 0, 20, 20 };
static void make_batch(md_batch *b, md_img_meta *metas, md_boxes *gts, md_boxes *igns) {
    memset(b, 0, sizeof *b);
    memset(metas, 0, 2 * sizeof *metas);
    memset(gts, 0, 2 * sizeof *gts);
    memset(igns, 0, 2 * sizeof *igns);
    int pad[2][2] = { { 56, 48 }, { 64, 64 } }, img[2][2] = { { 50, 45 }, { 64, 60 } };
    for (int i = 0; i < 2; i++) {
        metas[i].pad_shape[0] = pad[i][0], metas[i].pad_shape[1] = pad[i][1], metas[i].pad_shape[2] = 3;
        metas[i].img_shape[0] = img[i][0], metas[i].img_shape[1] = img[i][1], metas[i].img_shape[2] = 3;
        for (int k = 0; k < 4; k++) metas[i].scale_factor[k] = 1.0f;
    }
    gts[0] = (md_boxes){ 3, 3, gt0, lab0 };
    gts[1] = (md_boxes){ 2, 2, gt1, lab1 };
    igns[1] = (md_boxes){ 1, 1, ign1, NULL };
    b->n = 2;
    b->metas = metas;
    b->gt_bboxes = gts;
    b->gt_bboxes_ignore = igns;
}

static md_module *build(const char *option, md_error *err) {
    md_cfg *root = md_cfg_parse(head_cfg, "test_rpn_head.cfg", err);
    cr_assert_not_null(root, "%s", err->msg);
    if (option) cr_assert_eq(md_cfg_apply_option(root, option, err), 0, "%s", err->msg);
    md_module *m = md_build_from_cfg(ctx, "heads", md_cfg_get(root, "h"), NULL, err);
    md_cfg_free(root);
    return m;
}

Test(rpn_head, decoded_giou_loss_and_grads) {
    md_error err = { 0 };
    md_module *m = build(NULL, &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_st *g = golden_open("rpn_decoded");
    md_load_report rep;
    cr_assert_eq(md_module_load_state(ctx, m, g, "w.", false, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.missing, 0, "missing: %s", rep.text);
    cr_assert_eq(rep.loaded, 6, "%d weights loaded: %s", rep.loaded, rep.text);
    md_tensor *feats[2] = { golden_get(ctx, g, "feat0"), golden_get(ctx, g, "feat1") };
    feats[0]->requires_grad = feats[1]->requires_grad = true;
    md_batch b;
    md_img_meta metas[2];
    md_boxes gts[2], igns[2];
    make_batch(&b, metas, gts, igns);
    md_losses losses = { 0 };
    cr_assert_eq(md_dense_head_forward_train(ctx, m, feats, 2, &b, NULL, &losses, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(losses.n, 2);
    cr_assert_str_eq(losses.names[0], "loss_rpn_cls");
    cr_assert_str_eq(losses.names[1], "loss_rpn_bbox");
    assert_close(losses.values[0], golden_get(ctx, g, "loss_rpn_cls"), 1e-5, "loss_rpn_cls");
    assert_close(losses.values[1], golden_get(ctx, g, "loss_rpn_bbox"), 1e-5, "loss_rpn_bbox");
    cr_assert_eq(md_backward(ctx, md_losses_total(ctx, &losses), &err), 0, "%s", err.msg);
    assert_close(feats[0]->grad, golden_get(ctx, g, "grad_feat0"), 1e-4, "d loss / d feat0");
    assert_close(feats[1]->grad, golden_get(ctx, g, "grad_feat1"), 1e-4, "d loss / d feat1");
    int n = 0;
    for (int i = 0; i < md_st_count(g); i++) {
        const char *k = md_st_name(g, i);
        if (strncmp(k, "grad.", 5)) continue;
        md_tensor *p = md_module_find(m, k + 5);
        cr_assert_not_null(p, "%s", k);
        cr_assert_not_null(p->grad, "%s: no gradient", k);
        assert_close(p->grad, golden_get(ctx, g, k), 1e-4, k);
        n++;
    }
    cr_assert_eq(n, 6);
    md_st_close(g);
    md_module_free(m);
}

Test(rpn_head, box_loss_config_errors) {
    md_error err = { 0 };
    cr_assert_null(build("h.reg_decoded_bbox=false", &err));
    cr_assert(strstr(err.msg, "GIoULoss") && strstr(err.msg, "reg_decoded_bbox"), "%s", err.msg);
    md_error_clear(&err);
    cr_assert_null(build("h.loss_bbox.type=BoundedIoULoss", &err));
    cr_assert(strstr(err.msg, "BoundedIoULoss"), "%s", err.msg);
    md_error_clear(&err);
    md_module *m = build("h.loss_bbox.type=IoULoss", &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_module_free(m);
}
