/* FCOSHead, ATSSHead and ATSSAssigner against the real mmdet 2.28.2 code
 * path (tests/golden/dense_mmdet_golden.py builds mmdet's own classes from
 * config dicts and calls their forward, loss, get_bboxes and assign):
 * - the heads with mmdet's weights loaded by state-dict name: the forward
 *   in train and eval mode, the losses, the gradients of the features and
 *   of the weights, and the detections of get_bboxes(rescale = true);
 * - ATSSAssigner on anchors of three levels: plain, with an ignored gt,
 *   without gts;
 * - tiny FCOS and ATSS detectors whose state dict mmdet saved with
 *   torch.save (.pth) loaded by name through the checkpoint loader, and
 *   their simple_test detections on the detector_batch images.
 * Tolerances: outputs of a few f32 convs and GN 1e-5; losses 1e-5; the
 * gradients 1e-4; detections: the same set in the same order (the script
 * keeps scores off score_thr), boxes and scores 1e-5 relative. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/anchor_head.h>
#include <mmdet/checkpoint.h>
#include "detector_tiny.h"
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) {
    ctx = test_ctx(3, (const char *const[]){ "plugins/backbones", "plugins/necks", "plugins/bbox", "plugins/heads",
                                             "plugins/losses", "plugins/detectors", NULL });
    md_ctx_set_threads(ctx, 1);
}
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(dense_mmdet, .init = setup, .fini = teardown, .timeout = 120);

/* ---- the batch of the head cases (METAS, GT, GT_LABELS of the script) ---- */
static float gt0[] = { 4.3f, 6.1f, 30.2f, 40.7f, 20.5f, 2.2f, 44.9f, 20.3f, 1.0f, 30.5f, 12.4f, 48.8f };
static float gt1[] = { 10.2f, 10.7f, 60.1f, 50.3f, 30.6f, 40.1f, 46.2f, 60.9f };
static int64_t lab0[] = { 0, 2, 1 }, lab1[] = { 1, 1 };

typedef struct head_batch {
    md_batch b;
    md_img_meta metas[2];
    md_boxes gts[2];
} head_batch;

static void make_batch(head_batch *hb) {
    memset(hb, 0, sizeof *hb);
    static const int ori[2][2] = { { 100, 90 }, { 85, 75 } }, img[2][2] = { { 50, 45 }, { 64, 60 } },
                     pad[2][2] = { { 56, 48 }, { 64, 64 } };
    static const float sf[2][4] = { { 0.5f, 0.5f, 0.5f, 0.5f }, { 0.8f, 0.75f, 0.8f, 0.75f } };
    for (int i = 0; i < 2; i++) {
        md_img_meta *m = &hb->metas[i];
        for (int k = 0; k < 2; k++) m->ori_shape[k] = ori[i][k], m->img_shape[k] = img[i][k], m->pad_shape[k] = pad[i][k];
        m->ori_shape[2] = m->img_shape[2] = m->pad_shape[2] = 3;
        memcpy(m->scale_factor, sf[i], sizeof sf[i]);
    }
    hb->gts[0] = (md_boxes){ 3, 3, gt0, lab0 };
    hb->gts[1] = (md_boxes){ 2, 2, gt1, lab1 };
    hb->b = (md_batch){ .n = 2, .metas = hb->metas, .gt_bboxes = hb->gts };
}

static md_module *build(const char *registry, const char *text) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(text, "test_dense_mmdet.cfg", &err);
    cr_assert_not_null(root, "%s\n%s", err.msg, text);
    md_module *m = md_build_from_cfg(ctx, registry, md_cfg_get(root, "x"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(m, "%s", err.msg);
    return m;
}

/* Channels [lo, hi) of each prior's `per` channels of x [N, A * per, H, W],
 * as [N, A * (hi - lo), H, W]. */
static md_tensor *prior_channels(md_tensor *x, int64_t per, int64_t lo, int64_t hi) {
    int64_t N = x->shape[0], A = x->shape[1] / per, H = x->shape[2], W = x->shape[3];
    md_tensor *v = md_reshape(ctx, md_contiguous(ctx, x), MD_DIMS(N, A, per, H, W));
    return md_reshape(ctx, md_contiguous(ctx, md_slice(ctx, v, 2, lo, hi, 1)), MD_DIMS(N, A * (hi - lo), H, W));
}

/* det{i}.bboxes / det{i}.labels of the fixture against results. */
static void expect_dets(md_st *gold, const md_det_result *res, int n_img, const char *what) {
    for (int i = 0; i < n_img; i++) {
        char key[64], msg[96];
        snprintf(key, sizeof key, "det%d.bboxes", i);
        md_tensor *want = golden_get(ctx, gold, key);
        snprintf(key, sizeof key, "det%d.labels", i);
        md_tensor *want_l = golden_get(ctx, gold, key);
        cr_assert_eq(res[i].n, want->shape[0], "%s image %d: %d detections, mmdet %lld", what, i, res[i].n,
                     (long long)want->shape[0]);
        md_tensor *got = md_tensor_from(ctx, MD_F32, MD_DIMS(res[i].n, 5), res[i].bboxes);
        md_tensor *got_l = md_tensor_from(ctx, MD_I64, MD_DIMS(res[i].n), res[i].labels);
        snprintf(msg, sizeof msg, "%s image %d labels", what, i);
        assert_equal(got_l, want_l, msg);
        snprintf(msg, sizeof msg, "%s image %d boxes and scores", what, i);
        assert_close(got, want, 1e-5, msg);
    }
}

/* A head case of the script: forward (train), losses, gradients, forward
 * (eval), get_bboxes. `per` is the bbox_pred channels per prior (5: the
 * distances or deltas, then the centerness). */
static void head_case(const char *fixture, const char *cfg, const char *const *grads, int n_grads) {
    md_st *gold = golden_open(fixture);
    char text[4096];
    snprintf(text, sizeof text, "x = { %s };", cfg);
    md_module *m = build("heads", text);
    md_load_report rep;
    md_error err = { 0 };
    cr_assert_eq(md_module_load_state(ctx, m, gold, "w.", false, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.missing, 0, "%s: missing: %s", fixture, rep.text);
    md_tensor *feats[2] = { golden_get(ctx, gold, "feat0"), golden_get(ctx, gold, "feat1") };
    feats[0]->requires_grad = feats[1]->requires_grad = true;
    const md_dense_head_class *hc = md_dense_head_class_of(m);
    md_tensor *cls[2], *reg[2];
    md_module_train(m, true);
    cr_assert_eq(hc->forward(ctx, m, feats, 2, cls, reg), 0, "%s", md_ctx_error(ctx)->msg);
    for (int l = 0; l < 2; l++) {
        char key[32], msg[64];
        snprintf(key, sizeof key, "cls%d", l);
        snprintf(msg, sizeof msg, "%s: cls_score level %d", fixture, l);
        assert_close(cls[l], golden_get(ctx, gold, key), 1e-5, msg);
        snprintf(key, sizeof key, "reg%d", l);
        snprintf(msg, sizeof msg, "%s: bbox_pred level %d", fixture, l);
        assert_close(prior_channels(reg[l], 5, 0, 4), golden_get(ctx, gold, key), 1e-5, msg);
        snprintf(key, sizeof key, "ctr%d", l);
        snprintf(msg, sizeof msg, "%s: centerness level %d", fixture, l);
        assert_close(prior_channels(reg[l], 5, 4, 5), golden_get(ctx, gold, key), 1e-5, msg);
    }
    head_batch hb;
    make_batch(&hb);
    md_losses losses = { 0 };
    cr_assert_eq(hc->loss(ctx, m, cls, reg, 2, &hb.b, &losses, &err), 0, "%s", err.msg);
    cr_assert_eq(losses.n, 3);
    for (int k = 0; k < 3; k++) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s: %s", fixture, losses.names[k]);
        assert_close(losses.values[k], golden_get(ctx, gold, losses.names[k]), 1e-5, msg);
    }
    cr_assert_eq(md_backward(ctx, md_losses_total(ctx, &losses), &err), 0, "%s", err.msg);
    assert_close(feats[0]->grad, golden_get(ctx, gold, "grad_feat0"), 1e-4, "d loss / d feat0");
    assert_close(feats[1]->grad, golden_get(ctx, gold, "grad_feat1"), 1e-4, "d loss / d feat1");
    for (int i = 0; i < n_grads; i++) {
        char key[96];
        snprintf(key, sizeof key, "grad.%s", grads[i]);
        md_tensor *p = md_module_find(m, grads[i]);
        cr_assert(p && p->grad, "%s: no gradient on %s", fixture, grads[i]);
        assert_close(p->grad, golden_get(ctx, gold, key), 1e-4, key);
    }
    md_ctx_step_reset(ctx);

    /* eval mode: norm_on_bbox multiplies by the stride; then get_bboxes */
    md_module_train(m, false);
    md_grad_set_enabled(ctx, false);
    feats[0] = golden_get(ctx, gold, "feat0"), feats[1] = golden_get(ctx, gold, "feat1");
    cr_assert_eq(hc->forward(ctx, m, feats, 2, cls, reg), 0, "%s", md_ctx_error(ctx)->msg);
    assert_close(prior_channels(reg[0], 5, 0, 4), golden_get(ctx, gold, "eval_reg0"), 1e-5, "eval bbox_pred level 0");
    assert_close(prior_channels(reg[1], 5, 0, 4), golden_get(ctx, gold, "eval_reg1"), 1e-5, "eval bbox_pred level 1");
    md_det_result res[2];
    cr_assert_eq(hc->get_bboxes(ctx, m, cls, reg, 2, &hb.b, NULL, true, true, res, &err), 0, "%s", err.msg);
    expect_dets(gold, res, 2, fixture);
    md_grad_set_enabled(ctx, true);
    md_ctx_step_reset(ctx);
    md_module_free(m);
    md_st_close(gold);
}

#define HEAD_COMMON                                                                                         \
    "num_classes = 3; in_channels = 4; feat_channels = 8; stacked_convs = 2;\n"                            \
    "  norm_cfg = { type = \"GN\"; num_groups = 4; requires_grad = true; };\n"
#define TEST_CFG(iou_)                                                                                     \
    "  test_cfg = { nms_pre = 30; min_bbox_size = 0; score_thr = 0.05;\n"                                  \
    "               nms = { type = \"nms\"; iou_threshold = " iou_ "; }; max_per_img = 15; };\n"
#define FCOS_CFG                                                                                           \
    "type = \"FCOSHead\"; " HEAD_COMMON "  strides = [8, 16]; regress_ranges = ((-1, 24), (24, 1e8));\n" TEST_CFG("0.5")

Test(dense_mmdet, fcos_head_mmdet_defaults) {
    static const char *grads[] = { "conv_cls.weight", "conv_reg.bias", "conv_centerness.weight", "scales.0.scale",
                                   "cls_convs.0.gn.weight" };
    head_case("fcos_mmdet_plain", FCOS_CFG, grads, 5);
}

Test(dense_mmdet, fcos_head_center_sampling_norm_on_bbox_centerness_on_reg) {
    static const char *grads[] = { "conv_cls.weight", "conv_reg.bias", "conv_centerness.bias", "scales.1.scale",
                                   "reg_convs.1.conv.bias" };
    head_case("fcos_mmdet_tricks",
              FCOS_CFG "  center_sampling = true; center_sample_radius = 1.5; norm_on_bbox = true;\n"
                       "  centerness_on_reg = true; conv_bias = true; loss_bbox = { type = \"GIoULoss\"; loss_weight = 1.0; };\n",
              grads, 5);
}

Test(dense_mmdet, atss_head_two_anchors_per_location) {
    static const char *grads[] = { "atss_cls.weight", "atss_reg.bias", "atss_centerness.weight", "scales.0.scale",
                                   "reg_convs.0.gn.bias" };
    head_case("atss_mmdet_head",
              "type = \"ATSSHead\"; " HEAD_COMMON
              "  anchor_generator = { type = \"AnchorGenerator\"; ratios = [1.0, 2.0]; octave_base_scale = 3;\n"
              "                       scales_per_octave = 1; strides = [8, 16]; };\n"
              "  bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0];\n"
              "                 target_stds = [0.1, 0.1, 0.2, 0.2]; };\n"
              "  loss_cls = { type = \"FocalLoss\"; use_sigmoid = true; gamma = 2.0; alpha = 0.25; loss_weight = 1.0; };\n"
              "  loss_bbox = { type = \"GIoULoss\"; loss_weight = 2.0; };\n"
              "  loss_centerness = { type = \"CrossEntropyLoss\"; use_sigmoid = true; loss_weight = 1.0; };\n"
              "  train_cfg = { assigner = { type = \"ATSSAssigner\"; topk = 8; }; allowed_border = -1; pos_weight = -1;\n"
              "                debug = false; };\n" TEST_CFG("0.6"),
              grads, 5);
}

/* ---- ATSSAssigner ---- */
static void *build_part(const char *registry, const char *text) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(text, "test_dense_mmdet.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    void *obj = md_build_from_cfg(ctx, registry, md_cfg_get(root, "x"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(obj, "%s", err.msg);
    return obj;
}

Test(dense_mmdet, atss_assigner) {
    md_st *gold = golden_open("atss_mmdet_assign");
    static const struct { const char *tag, *cfg; bool ignore, no_gt; } cases[] = {
        { "plain", "x = { type = \"ATSSAssigner\"; topk = 5; };", false, false },
        { "ignore", "x = { type = \"ATSSAssigner\"; topk = 5; ignore_iof_thr = 0.3; };", true, false },
        { "nogt", "x = { type = \"ATSSAssigner\"; topk = 5; };", false, true },
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        /* step tensors: read again after each case's step reset */
        md_tensor *anchors = golden_get(ctx, gold, "anchors"), *counts = golden_get(ctx, gold, "counts");
        md_tensor *gt = golden_get(ctx, gold, "gt"), *labels = golden_get(ctx, gold, "gt_labels");
        md_tensor *ignore = golden_get(ctx, gold, "gt_ignore");
        md_assign_levels levels = { (int)md_tensor_numel(counts), md_i64(counts) };
        md_bbox_assigner *a = build_part("bbox_assigners", cases[c].cfg);
        md_tensor *g = cases[c].no_gt ? md_slice(ctx, gt, 0, 0, 0, 1) : gt;
        md_tensor *l = cases[c].no_gt ? md_slice(ctx, labels, 0, 0, 0, 1) : labels;
        md_assign_result ar;
        md_error err = { 0 };
        cr_assert_eq(md_bbox_assign_levels(ctx, a, anchors, &levels, md_contiguous(ctx, g),
                                           cases[c].ignore ? ignore : NULL, md_contiguous(ctx, l), &ar, &err),
                     0, "%s: %s", cases[c].tag, err.msg);
        char key[64];
        snprintf(key, sizeof key, "%s.gt_inds", cases[c].tag);
        assert_equal(ar.gt_inds, golden_get(ctx, gold, key), key);
        snprintf(key, sizeof key, "%s.labels", cases[c].tag);
        assert_equal(ar.labels, golden_get(ctx, gold, key), key);
        snprintf(key, sizeof key, "%s.max_overlaps", cases[c].tag);
        assert_close(ar.max_overlaps, golden_get(ctx, gold, key), 1e-6, key);
        /* without the levels, ATSS refuses (mmdet's num_level_bboxes is required) */
        cr_assert_neq(md_bbox_assign(ctx, a, anchors, gt, NULL, labels, &ar, &err), 0);
        cr_assert(strstr(err.msg, "per-level counts"), "%s", err.msg);
        MD_BBOX_DESTROY(a);
        md_ctx_step_reset(ctx);
    }
    md_st_close(gold);
}

/* ---- tiny detectors saved by mmdet (torch.save of the state dict) ---- */
#define TINY_BODY(type_)                                                                                          \
    "x = { type = \"" type_ "\";\n"                                                                               \
    "  backbone = { type = \"ResNet\"; depth = 18; base_channels = 4; num_stages = 3; strides = [1, 2, 2];\n"     \
    "               dilations = [1, 1, 1]; out_indices = [0, 1, 2]; frozen_stages = -1;\n"                       \
    "               norm_cfg = { type = \"BN\"; requires_grad = true; }; norm_eval = true; style = \"pytorch\"; };\n" \
    "  neck = { type = \"FPN\"; in_channels = [4, 8, 16]; out_channels = 8; start_level = 1;\n"                 \
    "           add_extra_convs = \"on_output\"; num_outs = 3; };\n"

static void tiny_detector(const char *name, const char *text) {
    md_module *m = build("detectors", text);
    char path[128];
    snprintf(path, sizeof path, "tests/fixtures/%s.pth", name);
    md_ckpt_info info;
    md_error err = { 0 };
    cr_assert_eq(md_checkpoint_load(ctx, path, m, NULL, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(info.report.missing, 0, "%s missing: %s", name, info.report.text);
    cr_assert_eq(info.report.unexpected, 0, "%s unexpected: %s", name, info.report.text);
    cr_assert_gt(info.report.loaded, 50, "%s: %d loaded", name, info.report.loaded);
    md_st *batch_st = golden_open("detector_batch");
    md_batch b;
    md_img_meta metas[2];
    tiny_detector_batch(ctx, batch_st, &b, metas);
    md_module_train(m, false);
    md_grad_set_enabled(ctx, false);
    md_det_result res[2];
    const md_model_iface *iface = m->cls->iface;
    cr_assert_eq(iface->simple_test(ctx, m, &b, res, &err), 0, "%s", err.msg);
    md_st *gold = golden_open(name);
    expect_dets(gold, res, 2, name);
    md_grad_set_enabled(ctx, true);
    md_ctx_step_reset(ctx);
    md_tensor_free(b.img);
    md_st_close(gold);
    md_st_close(batch_st);
    md_module_free(m);
}

Test(dense_mmdet, fcos_detector_from_mmdet_pth) {
    tiny_detector("fcos_tiny_mmdet",
                  TINY_BODY("FCOS")
                  "  bbox_head = { type = \"FCOSHead\"; num_classes = 3; in_channels = 8; feat_channels = 8; stacked_convs = 2;\n"
                  "    strides = [8, 16, 32]; regress_ranges = ((-1, 32), (32, 64), (64, 1e8));\n"
                  "    norm_cfg = { type = \"GN\"; num_groups = 4; requires_grad = true; }; };\n"
                  "  test_cfg = { nms_pre = 40; min_bbox_size = 0; score_thr = 0.3;\n"
                  "               nms = { type = \"nms\"; iou_threshold = 0.5; }; max_per_img = 15; };\n};");
}

Test(dense_mmdet, atss_detector_from_mmdet_pth) {
    tiny_detector("atss_tiny_mmdet",
                  TINY_BODY("ATSS")
                  "  bbox_head = { type = \"ATSSHead\"; num_classes = 3; in_channels = 8; feat_channels = 8; stacked_convs = 2;\n"
                  "    norm_cfg = { type = \"GN\"; num_groups = 4; requires_grad = true; };\n"
                  "    anchor_generator = { type = \"AnchorGenerator\"; ratios = [1.0]; octave_base_scale = 4;\n"
                  "                         scales_per_octave = 1; strides = [8, 16, 32]; };\n"
                  "    bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0];\n"
                  "                   target_stds = [0.1, 0.1, 0.2, 0.2]; }; };\n"
                  "  test_cfg = { nms_pre = 40; min_bbox_size = 0; score_thr = 0.3;\n"
                  "               nms = { type = \"nms\"; iou_threshold = 0.6; }; max_per_img = 15; };\n};");
}
