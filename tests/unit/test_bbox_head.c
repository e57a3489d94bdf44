/* Shared2FCBBoxHead plugin against mmdet's head written in PyTorch
 * (tests/golden/twostage_golden.py): forward, get_targets from fixed
 * sampling results, losses and their weight gradients, get_bboxes with
 * rescale and multiclass NMS; per-class and class-agnostic regression;
 * mmdet's init; state dict names. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/roi_head.h>
#include "testlib.h"

static md_ctx *ctx;
static md_st *gold;
static void setup(void) {
    ctx = test_ctx(5, (const char *const[]){ "plugins/bbox/delta_xywh_coder.so", "plugins/heads/bbox_head.so", "plugins/losses", NULL });
    gold = golden_open("twostage_bbox_head");
}
static void teardown(void) {
    md_st_close(gold);
    md_ctx_free(ctx);
}
TestSuite(bbox_head, .init = setup, .fini = teardown);

static md_module *build(const char *body, md_error *err) {
    char text[1024];
    snprintf(text, sizeof text, "h = { type = \"Shared2FCBBoxHead\"; %s };", body);
    md_cfg *root = md_cfg_parse(text, "test_bbox_head.cfg", err);
    if (!root) return NULL;
    md_module *m = md_build_from_cfg(ctx, "heads", md_cfg_get(root, "h"), NULL, err);
    md_cfg_free(root);
    return m;
}

static md_tensor *fx(const char *tag, const char *what) {
    char key[128];
    snprintf(key, sizeof key, "%s%s%s", tag, *tag ? "." : "", what);
    return golden_get(ctx, gold, key);
}

static void check_case(const char *tag, const char *body) {
    md_error err = { 0 };
    md_module *m = build(body, &err);
    cr_assert_not_null(m, "%s", err.msg);
    const md_bbox_head_class *c = md_bbox_head_class_of(m);
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%s.w.", tag);
    md_load_report rep;
    cr_assert_eq(md_module_load_state(ctx, m, gold, prefix, false, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.missing, 0, "%s: missing %s", tag, rep.text);
    cr_assert_eq(rep.loaded, 8, "%s: %d loaded", tag, rep.loaded);

    md_tensor *cls, *reg;
    cr_assert_eq(c->forward(ctx, m, golden_get(ctx, gold, "x"), &cls, &reg), 0, "%s", md_ctx_error(ctx)->msg);
    assert_close(cls, fx(tag, "cls_score"), 1e-5, "cls_score");
    assert_close(reg, fx(tag, "bbox_pred"), 1e-5, "bbox_pred");

    md_sampling_result sr[2];
    memset(sr, 0, sizeof sr);
    for (int i = 0; i < 2; i++) {
        char k[32];
        snprintf(k, sizeof k, "s%d.pos", i);
        sr[i].pos_bboxes = golden_get(ctx, gold, k);
        snprintf(k, sizeof k, "s%d.neg", i);
        sr[i].neg_bboxes = golden_get(ctx, gold, k);
        snprintf(k, sizeof k, "s%d.pos_gt", i);
        sr[i].pos_gt_bboxes = golden_get(ctx, gold, k);
        snprintf(k, sizeof k, "s%d.pos_lab", i);
        sr[i].pos_gt_labels = golden_get(ctx, gold, k);
    }
    md_bbox_targets t;
    cr_assert_eq(c->get_targets(ctx, m, sr, 2, -1, &t), 0, "%s", md_ctx_error(ctx)->msg);
    assert_equal(t.labels, fx(tag, "labels"), "labels");
    assert_close(t.label_weights, fx(tag, "label_weights"), 0, "label weights");
    assert_close(t.bbox_targets, fx(tag, "bbox_targets"), 1e-5, "bbox targets");
    assert_close(t.bbox_weights, fx(tag, "bbox_weights"), 0, "bbox weights");

    md_losses losses = { 0 };
    cr_assert_eq(c->loss(ctx, m, cls, reg, &t, &losses, &err), 0, "%s", err.msg);
    cr_assert_eq(losses.n, 3);
    cr_assert_str_eq(losses.names[0], "loss_cls");
    cr_assert_str_eq(losses.names[1], "acc");
    cr_assert_str_eq(losses.names[2], "loss_bbox");
    assert_close(losses.values[0], fx(tag, "loss_cls"), 1e-5, "loss_cls");
    assert_close(losses.values[1], fx(tag, "acc"), 1e-6, "acc");
    assert_close(losses.values[2], fx(tag, "loss_bbox"), 1e-5, "loss_bbox");
    md_tensor *total = md_losses_total(ctx, &losses);
    cr_assert_eq(md_backward(ctx, total, &err), 0, "%s", err.msg);
    static const char *params[] = { "shared_fcs.0.weight", "shared_fcs.1.bias", "fc_cls.weight", "fc_reg.weight",
                                    "fc_reg.bias" };
    for (int i = 0; i < 5; i++) {
        char k[64];
        snprintf(k, sizeof k, "g.%s", params[i]);
        md_tensor *p = md_module_find(m, params[i]);
        cr_assert(p && p->grad, "%s: no gradient", params[i]);
        assert_close(p->grad, fx(tag, k), 1e-4, params[i]);
    }

    md_rcnn_test_cfg tc = { .score_thr = 0.2, .nms_iou = 0.5, .max_per_img = 6 };
    int img_shape[2] = { 70, 90 };
    float sf[4] = { 0.5f, 0.8f, 0.5f, 0.8f };
    md_tensor *dets, *labels;
    cr_assert_eq(c->get_bboxes(ctx, m, fx(tag, "gb.rois"), fx(tag, "gb.cls_score"), fx(tag, "gb.bbox_pred"),
                               img_shape, sf, true, &tc, &dets, &labels), 0, "%s", md_ctx_error(ctx)->msg);
    md_tensor *ref = fx(tag, "gb.dets");
    cr_assert_gt(ref->shape[0], 1, "the fixture should keep several detections");
    assert_close(dets, ref, 1e-5, "detections");
    assert_equal(labels, fx(tag, "gb.labels"), "detection labels");
    md_module_free(m);
}

Test(bbox_head, per_class_regression_l1) {
    check_case("cls", "in_channels = 4; roi_feat_size = 3; fc_out_channels = 16; num_classes = 3;"
                      " loss_bbox = { type = \"L1Loss\"; loss_weight = 1.0; };");
}

Test(bbox_head, class_agnostic_smooth_l1) {
    check_case("agn", "in_channels = 4; roi_feat_size = 3; fc_out_channels = 16; num_classes = 3;"
                      " reg_class_agnostic = true;");
}

Test(bbox_head, no_positives_gives_zero_box_loss_on_the_graph) {
    md_error err = { 0 };
    md_module *m = build("in_channels = 4; roi_feat_size = 3; fc_out_channels = 16; num_classes = 3;", &err);
    cr_assert_not_null(m, "%s", err.msg);
    const md_bbox_head_class *c = md_bbox_head_class_of(m);
    md_sampling_result sr;
    memset(&sr, 0, sizeof sr);
    sr.pos_bboxes = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 4));
    sr.pos_gt_bboxes = sr.pos_bboxes;
    sr.pos_gt_labels = md_tensor_zeros(ctx, MD_I64, MD_DIMS(0));
    sr.neg_bboxes = golden_get(ctx, gold, "s0.neg");
    md_bbox_targets t;
    cr_assert_eq(c->get_targets(ctx, m, &sr, 1, -1, &t), 0);
    md_tensor *x = md_slice(ctx, golden_get(ctx, gold, "x"), 0, 0, 5, 1);
    md_tensor *cls, *reg;
    cr_assert_eq(c->forward(ctx, m, x, &cls, &reg), 0);
    md_losses losses = { 0 };
    cr_assert_eq(c->loss(ctx, m, cls, reg, &t, &losses, &err), 0, "%s", err.msg);
    cr_assert_eq(losses.n, 3);
    cr_assert_float_eq(md_tensor_item(losses.values[2]), 0.0, 0);
    /* every label is background: CE is the mean of -log p(bg) */
    double ref = 0;
    md_tensor *ls = md_log_softmax(ctx, cls, 1);
    for (int k = 0; k < 5; k++) ref -= md_tensor_get(ls, k * 4 + 3);
    cr_assert_float_eq(md_tensor_item(losses.values[0]), ref / 5, 1e-5);
    md_module_free(m);
}

Test(bbox_head, init_names_and_errors) {
    md_error err = { 0 };
    md_module *m = build("num_classes = 80;", &err);
    cr_assert_not_null(m, "%s", err.msg);
    static const char *names[] = { "shared_fcs.0.weight", "shared_fcs.0.bias", "shared_fcs.1.weight",
                                   "shared_fcs.1.bias", "fc_cls.weight", "fc_cls.bias", "fc_reg.weight",
                                   "fc_reg.bias" };
    for (int i = 0; i < 8; i++) cr_assert_not_null(md_module_find(m, names[i]), "%s", names[i]);
    md_tensor *w0 = md_module_find(m, "shared_fcs.0.weight"), *wc = md_module_find(m, "fc_cls.weight"),
              *wr = md_module_find(m, "fc_reg.weight");
    cr_assert(w0->shape[0] == 1024 && w0->shape[1] == 256 * 49);
    cr_assert(wc->shape[0] == 81 && wr->shape[0] == 320);
    /* std of each init: Xavier uniform bound sqrt(6 / (fan_in + fan_out)) -> std bound / sqrt(3) */
    double sd[3] = { 0 };
    md_tensor *ws[3] = { w0, wc, wr };
    for (int j = 0; j < 3; j++) {
        int64_t n = md_tensor_numel(ws[j]);
        for (int64_t i = 0; i < n; i++) sd[j] += md_f32(ws[j])[i] * (double)md_f32(ws[j])[i];
        sd[j] = sqrt(sd[j] / (double)n);
    }
    double xav = sqrt(6.0 / (1024 + 256 * 49)) / sqrt(3.0);
    cr_assert(fabs(sd[0] / xav - 1) < 0.02, "shared_fcs.0 std %g, Xavier %g", sd[0], xav);
    cr_assert(fabs(sd[1] / 0.01 - 1) < 0.05, "fc_cls std %g", sd[1]);
    cr_assert(fabs(sd[2] / 0.001 - 1) < 0.05, "fc_reg std %g", sd[2]);
    cr_assert_float_eq(md_tensor_get(md_module_find(m, "fc_cls.bias"), 3), 0.0, 0);
    md_module_free(m);

    /* losses come from the registry, by type */
    cr_assert_null(build("loss_cls = { type = \"CrossEntropyLos\"; };", &err));
    cr_assert(strstr(err.msg, "loss_cls") && strstr(err.msg, "did you mean 'CrossEntropyLoss'"), "%s", err.msg);
    cr_assert_null(build("loss_bbox = { type = \"GIoULoss\"; };", &err));
    cr_assert(strstr(err.msg, "reg_decoded_bbox"), "%s", err.msg);
    cr_assert_null(build("num_clases = 3;", &err));
    cr_assert(strstr(err.msg, "num_classes"), "%s", err.msg);
    cr_assert_null(build("bbox_coder = { type = \"NoSuchCoder\"; };", &err));
    cr_assert(strstr(err.msg, "NoSuchCoder"), "%s", err.msg);
}
