/* Cascade R-CNN against mmdet 2.28.2's own code (tests/golden/
 * cascade_golden.py runs mmdet's CascadeRoIHead and CascadeRCNN, built by
 * build_head / build_detector from config dicts):
 *
 * - the RoI head's forward_train losses (s0.loss_cls, s0.acc, ... with the
 *   stage weights; the samplers keep every RoI, so sampling is
 *   deterministic; stages 1 and 2 train on the boxes refine_bboxes moved)
 *   and its simple_test detections (stages' scores averaged, RoIs refined
 *   by argmax class), on the fixture's features, proposals and gts, with
 *   mmdet's weights loaded by their state dict names; and its aug_test of
 *   one image with two variants (the second a horizontal flip);
 * - a tiny CascadeRCNN's .pth checkpoint saved by torch.save from mmdet,
 *   loaded by name (nothing missing, nothing unexpected), and its
 *   simple_test detections on the batch of test_detector_golden.c.
 *
 * The script keeps every decision (assignment IoUs against the stage
 * thresholds, argmax classes, scores against score_thr, NMS IoUs) clear
 * of its boundary, so counts and labels must match exactly; boxes within
 * 1e-3 px, scores within 5e-5 and losses to a relative 1e-5 (float32
 * summed in another order; the order depends on the CPU's GEMM kernels,
 * and three stages' heads compound it: AVX-512 puts a score 1.1e-5 from
 * mmdet's, AVX2 within 1e-5). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/checkpoint.h>
#include <mmdet/roi_head.h>
#include "detector_tiny.h"
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) {
    ctx = test_ctx(1, (const char *const[]){ "plugins/backbones", "plugins/necks", "plugins/bbox", "plugins/heads",
                                             "plugins/losses", "plugins/detectors", NULL });
    md_ctx_set_threads(ctx, 1);
}
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(cascade_golden, .init = setup, .fini = teardown, .timeout = 60);

/* cascade_golden.py's bbox_head_cfg / roi_head_cfg */
#define STAGE(stds_, agnostic_, in_, fc_)                                                                        \
    "{ type = \"Shared2FCBBoxHead\"; in_channels = " in_ "; fc_out_channels = " fc_ "; roi_feat_size = 7;"      \
    " num_classes = 3; bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0];"      \
    " target_stds = [" stds_ "]; }; reg_class_agnostic = " agnostic_ ";"                                         \
    " loss_cls = { type = \"CrossEntropyLoss\"; use_sigmoid = false; loss_weight = 1.0; };"                     \
    " loss_bbox = { type = \"SmoothL1Loss\"; beta = 1.0; loss_weight = 1.0; }; }"
#define ROI_HEAD(in_, fc_, strides_)                                                                             \
    "type = \"CascadeRoIHead\"; num_stages = 3; stage_loss_weights = [1.0, 0.5, 0.25];"                        \
    " bbox_roi_extractor = { type = \"SingleRoIExtractor\";"                                                    \
    " roi_layer = { type = \"RoIAlign\"; output_size = 7; sampling_ratio = 0; }; out_channels = " in_ ";"        \
    " featmap_strides = " strides_ "; };"                                                                       \
    " bbox_head = (" STAGE("0.1, 0.1, 0.2, 0.2", "true", in_, fc_) ", "                                         \
    STAGE("0.05, 0.05, 0.1, 0.1", "false", in_, fc_) ", " STAGE("0.033, 0.033, 0.067, 0.067", "true", in_, fc_) ");"
#define RCNN_TRAIN(t_)                                                                                           \
    "{ assigner = { type = \"MaxIoUAssigner\"; pos_iou_thr = " t_ "; neg_iou_thr = " t_ "; min_pos_iou = " t_ ";" \
    " match_low_quality = false; ignore_iof_thr = -1.0; };"                                                      \
    " sampler = { type = \"RandomSampler\"; num = 512; pos_fraction = 0.25; neg_pos_ub = -1;"                   \
    " add_gt_as_proposals = true; }; pos_weight = -1; debug = false; }"
#define RCNN_TEST "{ score_thr = 0.05; nms = { type = \"nms\"; iou_threshold = 0.5; }; max_per_img = 100; }"

static const char *head_cfg =
    "head = { " ROI_HEAD("4", "16", "[4, 8]") " train_cfg = (" RCNN_TRAIN("0.5") ", " RCNN_TRAIN("0.6") ", "
    RCNN_TRAIN("0.7") "); test_cfg = " RCNN_TEST "; };";

static const char *detector_cfg =
    "model = { type = \"CascadeRCNN\";\n"
    "  backbone = { type = \"ResNet\"; depth = 18; base_channels = 4; num_stages = 3; strides = [1, 2, 2];\n"
    "               dilations = [1, 1, 1]; out_indices = [0, 1, 2]; frozen_stages = -1;\n"
    "               norm_cfg = { type = \"BN\"; requires_grad = true; }; norm_eval = true; style = \"pytorch\"; };\n"
    "  neck = { type = \"FPN\"; in_channels = [4, 8, 16]; out_channels = 8; num_outs = 4; };\n"
    "  rpn_head = { type = \"RPNHead\"; in_channels = 8; feat_channels = 8;\n"
    "    anchor_generator = { type = \"AnchorGenerator\"; scales = [2]; ratios = [0.5, 1.0, 2.0]; strides = [4, 8, 16, 32]; };\n"
    "    bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0];\n"
    "                   target_stds = [1.0, 1.0, 1.0, 1.0]; };\n"
    "    loss_cls = { type = \"CrossEntropyLoss\"; use_sigmoid = true; loss_weight = 1.0; };\n"
    "    loss_bbox = { type = \"SmoothL1Loss\"; beta = 0.1111111111111111; loss_weight = 1.0; }; };\n"
    "  roi_head = { " ROI_HEAD("8", "8", "[4, 8, 16]") " };\n"
    "  test_cfg = {\n"
    "    rpn = { nms_pre = 50; max_per_img = 30; nms = { type = \"nms\"; iou_threshold = 0.7; }; min_bbox_size = 0; };\n"
    "    rcnn = " RCNN_TEST "; };\n"
    "};";

/* Detections of image i against det<i>.bboxes / det<i>.labels, which
 * mmdet's bbox2result grouped by class (each class in mmdet's order). */
static void compare_dets_key(md_st *gold, const char *prefix, const float *boxes, const int64_t *labels, int n) {
    char key[48];
    snprintf(key, sizeof key, "%s.bboxes", prefix);
    md_tensor *gb = golden_get(ctx, gold, key);
    snprintf(key, sizeof key, "%s.labels", prefix);
    md_tensor *gl = golden_get(ctx, gold, key);
    const char *i = prefix;
    cr_assert_eq(n, gl->shape[0], "%s: %d detections, mmdet %lld", i, n, (long long)gl->shape[0]);
    int64_t g = 0;
    double worst_box = 0, worst_score = 0;
    for (int64_t c = 0; c < 3; c++)
        for (int d = 0; d < n; d++) {
            if (labels[d] != c) continue;
            cr_assert_eq(md_i64(gl)[g], c, "%s: class %lld has more detections than mmdet's", i, (long long)c);
            for (int j = 0; j < 4; j++) worst_box = fmax(worst_box, fabs(boxes[5 * d + j] - md_f32(gb)[5 * g + j]));
            worst_score = fmax(worst_score, fabs(boxes[5 * d + 4] - md_f32(gb)[5 * g + 4]));
            g++;
        }
    cr_assert_eq(g, n);
    cr_assert_lt(worst_box, 1e-3, "%s: a box %g px from mmdet's", i, worst_box);
    cr_assert_lt(worst_score, 5e-5, "%s: a score %g from mmdet's", i, worst_score);
}

static void compare_dets(md_st *gold, int i, const float *boxes, const int64_t *labels, int n) {
    char prefix[16];
    snprintf(prefix, sizeof prefix, "det%d", i);
    compare_dets_key(gold, prefix, boxes, labels, n);
}

static md_tensor *shape_of(md_st *gold, const char *fmt, int i, int64_t *out) {
    char key[48];
    snprintf(key, sizeof key, fmt, i);
    md_tensor *t = golden_get(ctx, gold, key);
    if (out)
        for (int64_t k = 0; k < t->shape[0]; k++) out[k] = md_i64(t)[k];
    return t;
}

Test(cascade_golden, roi_head_losses_and_detections) {
    md_st *gold = golden_open("cascade_roi_head");
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(head_cfg, "cascade_head.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_module *head = md_build_from_cfg(ctx, "heads", md_cfg_get(root, "head"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(head, "%s", err.msg);
    md_load_report rep;
    cr_assert_eq(md_module_load_state(ctx, head, gold, "weights.", false, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.missing, 0, "%s", rep.text);
    cr_assert_eq(rep.loaded, 3 * 8, "%d loaded", rep.loaded);

    md_img_meta metas[2];
    md_boxes gts[2];
    memset(metas, 0, sizeof metas);
    memset(gts, 0, sizeof gts);
    md_tensor *props[2], *feats[2] = { golden_get(ctx, gold, "feat0"), golden_get(ctx, gold, "feat1") };
    for (int i = 0; i < 2; i++) {
        int64_t hw[2];
        shape_of(gold, "img%d.img_shape", i, hw);
        metas[i].img_shape[0] = (int)hw[0], metas[i].img_shape[1] = (int)hw[1], metas[i].img_shape[2] = 3;
        metas[i].pad_shape[0] = metas[i].pad_shape[1] = 64, metas[i].pad_shape[2] = 3;
        char key[48];
        snprintf(key, sizeof key, "img%d.scale_factor", i);
        memcpy(metas[i].scale_factor, md_f32(golden_get(ctx, gold, key)), 4 * sizeof(float));
        snprintf(key, sizeof key, "img%d.gt_bboxes", i);
        md_tensor *gb = golden_get(ctx, gold, key);
        md_tensor *gl = shape_of(gold, "img%d.gt_labels", i, NULL);
        gts[i].n = (int)gb->shape[0];
        gts[i].xyxy = md_f32(gb);
        gts[i].labels = md_i64(gl);
        snprintf(key, sizeof key, "img%d.proposals", i);
        props[i] = golden_get(ctx, gold, key);
    }
    md_batch b = { .n = 2, .metas = metas, .gt_bboxes = gts };
    const md_roi_head_class *hc = md_roi_head_class_of(head);

    md_losses losses = { 0 };
    cr_assert_eq(hc->forward_train(ctx, head, feats, 2, &b, props, md_ctx_rng(ctx), &losses, &err), 0, "%s", err.msg);
    static const char *names[] = { "s0.loss_cls", "s0.acc", "s0.loss_bbox", "s1.loss_cls", "s1.acc",
                                   "s1.loss_bbox", "s2.loss_cls", "s2.acc", "s2.loss_bbox" };
    cr_assert_eq(losses.n, 9);
    for (int k = 0; k < 9; k++) {
        cr_assert_str_eq(losses.names[k], names[k]);
        char key[48];
        snprintf(key, sizeof key, "loss.%s", names[k]);
        double want = md_tensor_item(golden_get(ctx, gold, key)), got = md_tensor_item(losses.values[k]);
        cr_assert(fabs(got - want) <= 1e-5 * fabs(want) + 1e-7, "%s: %.7g, mmdet %.7g", names[k], got, want);
    }

    md_module_train(head, false);
    bool was = md_grad_set_enabled(ctx, false);
    md_tensor *db[2], *dl[2];
    cr_assert_eq(hc->simple_test(ctx, head, feats, 2, &b, props, true, db, dl, &err), 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) compare_dets(gold, i, md_f32(db[i]), md_i64(dl[i]), (int)db[i]->shape[0]);

    /* aug_test of image 0: its features, then other features as a
     * horizontal flip; proposals in the original image's pixels */
    md_img_meta am[2] = { metas[0], metas[0] };
    am[1].flip = true;
    am[1].flip_direction = MD_FLIP_HORIZONTAL;
    md_batch v1 = { .n = 1, .metas = &am[1] }, *variants[2];
    md_batch ab = { .n = 1, .metas = &am[0], .n_augs = 2, .augs = variants };
    variants[0] = &ab, variants[1] = &v1;
    md_tensor *f0[2] = { md_slice(ctx, feats[0], 0, 0, 1, 1), md_slice(ctx, feats[1], 0, 0, 1, 1) };
    md_tensor *f1[2] = { golden_get(ctx, gold, "aug.feat0"), golden_get(ctx, gold, "aug.feat1") };
    md_tensor *const *vf[2] = { f0, f1 }, *aprop = golden_get(ctx, gold, "aug.proposals");
    cr_assert_eq(hc->aug_test(ctx, head, vf, 2, &ab, &aprop, true, db, dl, &err), 0, "%s", err.msg);
    compare_dets_key(gold, "aug.det0", md_f32(db[0]), md_i64(dl[0]), (int)db[0]->shape[0]);
    md_grad_set_enabled(ctx, was);
    md_ctx_step_reset(ctx);
    md_module_free(head);
    md_st_close(gold);
}

Test(cascade_golden, mmdet_pth_loads_by_name_and_detects) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(detector_cfg, "cascade_tiny.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_module *m = md_build_from_cfg(ctx, "detectors", md_cfg_get(root, "model"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(m, "%s", err.msg);
    md_ckpt_info info;
    cr_assert_eq(md_checkpoint_load(ctx, "tests/fixtures/cascade_rcnn_tiny.pth", m, NULL, &info, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(info.report.missing, 0, "missing: %s", info.report.text);
    cr_assert_eq(info.report.unexpected, 0, "unexpected: %s", info.report.text);
    cr_assert_not_null(md_module_find(m, "roi_head.bbox_head.2.fc_reg.weight"));

    md_st *batch_st = golden_open("detector_batch"), *gold = golden_open("cascade_rcnn_tiny");
    md_batch b;
    md_img_meta metas[2];
    tiny_detector_batch(ctx, batch_st, &b, metas);
    md_module_train(m, false);
    md_grad_set_enabled(ctx, false);
    md_det_result res[2];
    cr_assert_eq(((const md_model_iface *)m->cls->iface)->simple_test(ctx, m, &b, res, &err), 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) compare_dets(gold, i, res[i].bboxes, res[i].labels, res[i].n);
    md_ctx_step_reset(ctx);
    md_tensor_free(b.img);
    md_st_close(gold);
    md_st_close(batch_st);
    md_module_free(m);
}
