/* Shared2FCBBoxHead with reg_decoded_bbox against mmdet's BBoxHead loss
 * written in PyTorch (tests/golden/bbox_head_decoded_golden.py): targets are
 * the gt boxes, boxes are decoded against the RoIs, GIoULoss (per class)
 * and IoULoss mode square (class agnostic); losses and weight gradients. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/roi_head.h>
#include "testlib.h"

static md_ctx *ctx;
static md_st *gold;
static void setup(void) {
    ctx = test_ctx(5, (const char *const[]){ "plugins/bbox/delta_xywh_coder.so", "plugins/heads/bbox_head.so", "plugins/losses", NULL });
    gold = golden_open("bbox_head_decoded");
}
static void teardown(void) {
    md_st_close(gold);
    md_ctx_free(ctx);
}
TestSuite(bbox_head_decoded, .init = setup, .fini = teardown);

static void check_case(const char *tag, const char *body) {
    char text[1024];
    snprintf(text, sizeof text,
             "h = { type = \"Shared2FCBBoxHead\"; in_channels = 4; roi_feat_size = 3; fc_out_channels = 16;"
             " num_classes = 3; reg_decoded_bbox = true; %s };", body);
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(text, "test_bbox_head_decoded.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_module *m = md_build_from_cfg(ctx, "heads", md_cfg_get(root, "h"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(m, "%s", err.msg);
    const md_bbox_head_class *c = md_bbox_head_class_of(m);
    char key[96];
    snprintf(key, sizeof key, "%s.w.", tag);
    md_load_report rep;
    cr_assert_eq(md_module_load_state(ctx, m, gold, key, false, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.missing, 0, "%s: missing %s", tag, rep.text);
    cr_assert_eq(rep.loaded, 8, "%s: %d loaded", tag, rep.loaded);
    md_tensor *cls, *reg;
    cr_assert_eq(c->forward(ctx, m, golden_get(ctx, gold, "x"), &cls, &reg), 0, "%s", md_ctx_error(ctx)->msg);
    md_sampling_result sr[2];
    memset(sr, 0, sizeof sr);
    for (int i = 0; i < 2; i++) {
        snprintf(key, sizeof key, "s%d.pos", i);
        sr[i].pos_bboxes = golden_get(ctx, gold, key);
        snprintf(key, sizeof key, "s%d.neg", i);
        sr[i].neg_bboxes = golden_get(ctx, gold, key);
        snprintf(key, sizeof key, "s%d.pos_gt", i);
        sr[i].pos_gt_bboxes = golden_get(ctx, gold, key);
        snprintf(key, sizeof key, "s%d.pos_lab", i);
        sr[i].pos_gt_labels = golden_get(ctx, gold, key);
    }
    md_bbox_targets t;
    cr_assert_eq(c->get_targets(ctx, m, sr, 2, -1, &t), 0, "%s", md_ctx_error(ctx)->msg);
    snprintf(key, sizeof key, "%s.bbox_targets", tag);
    assert_close(t.bbox_targets, golden_get(ctx, gold, key), 0, "targets are the gt boxes");
    md_losses losses = { 0 };
    cr_assert_eq(c->loss(ctx, m, cls, reg, &t, &losses, &err), 0, "%s", err.msg);
    cr_assert_eq(losses.n, 3);
    snprintf(key, sizeof key, "%s.loss_cls", tag);
    assert_close(losses.values[0], golden_get(ctx, gold, key), 1e-5, key);
    snprintf(key, sizeof key, "%s.loss_bbox", tag);
    assert_close(losses.values[2], golden_get(ctx, gold, key), 1e-5, key);
    cr_assert_eq(md_backward(ctx, md_losses_total(ctx, &losses), &err), 0, "%s", err.msg);
    static const char *params[] = { "shared_fcs.0.weight", "shared_fcs.0.bias", "shared_fcs.1.weight",
                                    "fc_cls.weight", "fc_reg.weight", "fc_reg.bias" };
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof key, "%s.g.%s", tag, params[i]);
        md_tensor *p = md_module_find(m, params[i]);
        cr_assert(p && p->grad, "%s: no gradient", params[i]);
        assert_close(p->grad, golden_get(ctx, gold, key), 1e-4, key);
    }
    md_module_free(m);
}

Test(bbox_head_decoded, per_class_giou) {
    check_case("giou", "loss_bbox = { type = \"GIoULoss\"; loss_weight = 10.0; };");
}

Test(bbox_head_decoded, class_agnostic_iou_square) {
    check_case("iou", "reg_class_agnostic = true; loss_bbox = { type = \"IoULoss\"; mode = \"square\"; };");
}

/* configs/faster_rcnn/faster_rcnn_r50_fpn_giou_1x_coco.cfg (mmdet's) builds. */
Test(bbox_head_decoded, giou_faster_rcnn_config_builds) {
    md_error err = { 0 };
    static const char *const dirs[] = { "plugins/bbox", "plugins/backbones", "plugins/necks", "plugins/heads",
                                        "plugins/losses", "plugins/detectors" };
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++)
        cr_assert_eq(md_plugin_load_dir(ctx, dirs[i], &err), 0, "%s", err.msg);
    md_cfg *cfg = md_cfg_load("configs/faster_rcnn/faster_rcnn_r50_fpn_giou_1x_coco.cfg", &err);
    cr_assert_not_null(cfg, "%s", err.msg);
    cr_assert_str_eq(md_cfg_str(cfg, "model.roi_head.bbox_head.loss_bbox.type", ""), "GIoULoss");
    cr_assert(md_cfg_bool(cfg, "model.roi_head.bbox_head.reg_decoded_bbox", false));
    /* smaller widths: only the build matters here */
    static const char *const opts[] = { "model.backbone.init_cfg=None", "model.backbone.depth=18",
                                        "model.neck.in_channels=[64,128,256,512]", "model.neck.out_channels=32",
                                        "model.rpn_head.in_channels=32", "model.rpn_head.feat_channels=32",
                                        "model.roi_head.bbox_roi_extractor.out_channels=32",
                                        "model.roi_head.bbox_head.in_channels=32",
                                        "model.roi_head.bbox_head.fc_out_channels=64" };
    cr_assert_eq(md_cfg_apply_options(cfg, opts, 9, &err), 0, "%s", err.msg);
    md_module *m = md_build_from_cfg(ctx, "detectors", md_cfg_get(cfg, "model"), NULL, &err);
    cr_assert_not_null(m, "%s", err.msg);
    cr_assert_not_null(md_module_find(m, "roi_head.bbox_head.fc_reg.weight"));
    md_module_free(m);
    md_cfg_free(cfg);
}
