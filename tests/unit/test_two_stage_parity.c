/* Two-stage inference against mmdet 2.28.2 + mmcv-full 1.7.2 themselves
 * (tests/golden/two_stage_parity_golden.py):
 *
 * - md_sort_order_torch against torch.sort(descending=True) on the CPU on
 *   vectors full of ties (its order for equal values is libstdc++'s
 *   std::sort's, not stable), and md_batched_nms against mmcv's batched_nms
 *   on boxes with few distinct scores, below and above split_thr (10000);
 * - a tiny FasterRCNN saved by mmdet (.pth), loaded by name, fed two PNG
 *   files through the test pipeline of its config (Resize upscales them
 *   with OpenCV's bilinear): the pipeline's image, the RPN proposals and the
 *   detections equal mmdet's, in the same order. Its rpn_cls and fc_cls are
 *   scaled so that most scores round to exactly 1.0, so every nms_pre cut and
 *   NMS is decided by the sort's order of ties.
 *
 * The script keeps every other decision clear of its boundary (logits vs
 * the saturation points and each other, softmax scores apart, NMS IoUs,
 * FPN levels, RoIAlign grids), so counts, order and labels are compared
 * exactly; boxes within 1e-4 px and scores within 1e-5 (float32 sums in
 * another order: measured 2e-6 px and no score difference here), the image
 * within 1e-6 (the same bytes normalised). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/checkpoint.h>
#include <mmdet/roi_head.h>
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) {
    ctx = test_ctx(1, (const char *const[]){ "plugins/backbones", "plugins/necks", "plugins/bbox", "plugins/heads",
                                             "plugins/losses", "plugins/detectors", "plugins/datasets", NULL });
    md_ctx_set_threads(ctx, 1);
}
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(two_stage_parity, .init = setup, .fini = teardown, .timeout = 60);

static const md_tensor *get(md_st *st, const char *fmt, int i) {
    char key[64];
    snprintf(key, sizeof key, fmt, i);
    return golden_get(ctx, st, key);
}

Test(two_stage_parity, sort_order_is_torch_cpu_sort) {
    md_st *st = golden_open("two_stage_parity_sort");
    for (int k = 0; k < 4; k++) {
        const md_tensor *q = get(st, "sort%d.q", k), *ref = get(st, "sort%d.idx", k);
        float levels = (float)md_i64(get(st, "sort%d.levels", k))[0];
        int64_t n = q->shape[0];
        float *v = md_ctx_alloc(ctx, sizeof *v * (size_t)n);
        int64_t *idx = md_ctx_alloc(ctx, sizeof *idx * (size_t)n);
        for (int64_t i = 0; i < n; i++) v[i] = (float)md_u8(q)[i] / levels;
        cr_assert_eq(md_sort_order_torch(v, n, idx), 0);
        for (int64_t i = 0; i < n; i++)
            cr_assert_eq(idx[i], md_i32(ref)[i], "sort%d: position %lld holds %lld, torch %d", k, (long long)i,
                         (long long)idx[i], md_i32(ref)[i]);
    }
    md_st_close(st);
}

Test(two_stage_parity, batched_nms_ties_as_mmcv) {
    md_st *st = golden_open("two_stage_parity_sort");
    for (int k = 0; k < 2; k++) {
        const md_tensor *bq = get(st, "nms%d.boxes", k), *q = get(st, "nms%d.q", k), *lq = get(st, "nms%d.labels", k);
        const md_tensor *ref = get(st, "nms%d.keep", k);
        int64_t n = q->shape[0];
        md_tensor *boxes = md_tensor_empty(ctx, MD_F32, MD_DIMS(n, 4)), *scores = md_tensor_empty(ctx, MD_F32, MD_DIMS(n));
        md_tensor *labels = md_tensor_empty(ctx, MD_I64, MD_DIMS(n));
        for (int64_t i = 0; i < n; i++) {
            for (int j = 0; j < 4; j++) md_f32(boxes)[4 * i + j] = md_u8(bq)[4 * i + j];
            md_f32(scores)[i] = (float)md_u8(q)[i] / 8.0f;
            md_i64(labels)[i] = md_u8(lq)[i];
        }
        md_tensor *keep = md_batched_nms(ctx, boxes, scores, labels, 0.5, false, -1);
        cr_assert_not_null(keep, "%s", md_ctx_error(ctx)->msg);
        cr_assert_eq(keep->shape[0], ref->shape[0], "nms%d: %lld kept, mmcv %lld", k, (long long)keep->shape[0],
                     (long long)ref->shape[0]);
        for (int64_t i = 0; i < ref->shape[0]; i++)
            cr_assert_eq(md_i64(keep)[i], md_i32(ref)[i], "nms%d (%lld boxes): keep[%lld] = %lld, mmcv %d", k,
                         (long long)n, (long long)i, (long long)md_i64(keep)[i], md_i32(ref)[i]);
    }
    md_ctx_step_reset(ctx);
    md_st_close(st);
}

/* The golden script's detector and test pipeline. */
static const char *cfg_text =
    "model = {\n"
    "  type = \"FasterRCNN\";\n"
    "  backbone = { type = \"ResNet\"; depth = 18; base_channels = 4; num_stages = 3; strides = [1, 2, 2];\n"
    "               dilations = [1, 1, 1]; out_indices = [0, 1, 2]; frozen_stages = -1;\n"
    "               norm_cfg = { type = \"BN\"; requires_grad = true; }; norm_eval = true; style = \"pytorch\"; };\n"
    "  neck = { type = \"FPN\"; in_channels = [4, 8, 16]; out_channels = 8; num_outs = 4; };\n"
    "  rpn_head = { type = \"RPNHead\"; in_channels = 8; feat_channels = 8;\n"
    "    anchor_generator = { type = \"AnchorGenerator\"; scales = [8]; ratios = [0.5, 1.0, 2.0]; strides = [4, 8, 16, 32]; };\n"
    "    bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0]; target_stds = [1.0, 1.0, 1.0, 1.0]; };\n"
    "    loss_cls = { type = \"CrossEntropyLoss\"; use_sigmoid = true; loss_weight = 1.0; };\n"
    "    loss_bbox = { type = \"L1Loss\"; loss_weight = 1.0; }; };\n"
    "  roi_head = { type = \"StandardRoIHead\";\n"
    "    bbox_roi_extractor = { type = \"SingleRoIExtractor\"; roi_layer = { type = \"RoIAlign\"; output_size = 7; sampling_ratio = 0; };\n"
    "                           out_channels = 8; featmap_strides = [4, 8, 16]; };\n"
    "    bbox_head = { type = \"Shared2FCBBoxHead\"; in_channels = 8; fc_out_channels = 16; roi_feat_size = 7; num_classes = 3;\n"
    "      bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0]; target_stds = [0.1, 0.1, 0.2, 0.2]; };\n"
    "      reg_class_agnostic = false;\n"
    "      loss_cls = { type = \"CrossEntropyLoss\"; use_sigmoid = false; loss_weight = 1.0; };\n"
    "      loss_bbox = { type = \"L1Loss\"; loss_weight = 1.0; }; }; };\n"
    "  test_cfg = {\n"
    "    rpn = { nms_pre = 100; max_per_img = 60; nms = { type = \"nms\"; iou_threshold = 0.7; }; min_bbox_size = 0; };\n"
    "    rcnn = { score_thr = 0.05; nms = { type = \"nms\"; iou_threshold = 0.5; }; max_per_img = 40; }; };\n"
    "};\n"
    "pipeline = (\n"
    "  { type = \"LoadImageFromFile\"; },\n"
    "  { type = \"MultiScaleFlipAug\"; img_scale = [64, 64]; flip = false;\n"
    "    transforms = (\n"
    "      { type = \"Resize\"; keep_ratio = true; },\n"
    "      { type = \"RandomFlip\"; },\n"
    "      { type = \"Normalize\"; mean = [123.675, 116.28, 103.53]; std = [58.395, 57.12, 57.375]; to_rgb = true; },\n"
    "      { type = \"Pad\"; size_divisor = 32; },\n"
    "      { type = \"ImageToTensor\"; keys = [\"img\"]; },\n"
    "      { type = \"Collect\"; keys = [\"img\"]; }\n"
    "    );\n"
    "  }\n"
    ");\n";

static void compare_rows(const float *got, int64_t n, int cols, const md_tensor *ref, const char *what, int img) {
    cr_assert_eq(n, ref->shape[0], "image %d %s: %lld rows, mmdet %lld", img, what, (long long)n,
                 (long long)ref->shape[0]);
    for (int64_t k = 0; k < n; k++)
        for (int j = 0; j < cols; j++) {
            double d = fabs((double)got[cols * k + j] - md_f32(ref)[cols * k + j]);
            cr_assert(d <= (j < 4 ? 1e-4 : 1e-5), "image %d %s row %lld value %d: %.7g, mmdet %.7g", img, what,
                      (long long)k, j, got[cols * k + j], md_f32(ref)[cols * k + j]);
        }
}

Test(two_stage_parity, faster_rcnn_from_files_as_mmdet) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(cfg_text, "two_stage_parity.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_module *m = md_build_from_cfg(ctx, "detectors", md_cfg_get(root, "model"), NULL, &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_pipeline *pipe = md_pipeline_build(ctx, md_cfg_get(root, "pipeline"), &err);
    cr_assert_not_null(pipe, "%s", err.msg);
    md_ckpt_info info;
    cr_assert_eq(md_checkpoint_load(ctx, "tests/fixtures/two_stage_parity_rcnn.pth", m, NULL, &info, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(info.report.missing, 0, "missing: %s", info.report.text);
    cr_assert_eq(info.report.unexpected, 0, "unexpected: %s", info.report.text);
    md_module_train(m, false);
    md_grad_set_enabled(ctx, false);
    md_st *gold = golden_open("two_stage_parity_rcnn");
    for (int i = 0; i < 2; i++) {
        md_sample s;
        md_sample_init(&s);
        char name[32];
        snprintf(name, sizeof name, "img%d.png", i);
        s.img_info = (md_img_info){ name, 0, 0, i };
        s.img_prefix = "tests/fixtures/two_stage_parity";
        cr_assert_eq(md_pipeline_apply(pipe, &s, NULL, &err), 0, "%s", err.msg);
        md_batch *b = md_collate(&s, 1, 1, &err);
        cr_assert_not_null(b, "%s", err.msg);
        /* the test pipeline: the same resized, normalised, padded image */
        const md_tensor *ref_img = get(gold, "img%d", i);
        cr_assert_eq(md_tensor_numel(b->img), md_tensor_numel(ref_img), "image %d: pipeline output size", i);
        md_tensor *got_img = md_reshape(ctx, md_contiguous(ctx, b->img), ref_img->ndim, ref_img->shape);
        assert_close(got_img, ref_img, 1e-6, "pipeline image");
        for (int64_t k = 0; k < md_tensor_numel(ref_img); k++)
            cr_assert(fabsf(md_f32(got_img)[k] - md_f32(ref_img)[k]) <= 1e-5f, "image %d pixel value %lld: %g, mmdet %g",
                      i, (long long)k, md_f32(got_img)[k], md_f32(ref_img)[k]);
        const md_tensor *shape = get(gold, "img%d.img_shape", i), *sf = get(gold, "img%d.scale_factor", i);
        cr_assert(b->metas[0].img_shape[0] == md_i64(shape)[0] && b->metas[0].img_shape[1] == md_i64(shape)[1]);
        for (int k = 0; k < 4; k++) cr_assert_eq(b->metas[0].scale_factor[k], md_f32(sf)[k]);

        /* the proposals (test_cfg.rpn), in order */
        md_tensor *feats[MD_MAX_LEVELS], *props[1];
        int n = md_backbone_forward(ctx, md_module_child(m, "backbone"), b->img, feats, MD_MAX_LEVELS);
        n = md_neck_forward(ctx, md_module_child(m, "neck"), feats, n, feats, MD_MAX_LEVELS);
        cr_assert_eq(n, 4, "%s", md_ctx_error(ctx)->msg);
        cr_assert_eq(md_dense_head_simple_test_rpn(ctx, md_module_child(m, "rpn_head"), feats, n, b, props, &err), 0,
                     "%s", err.msg);
        compare_rows(md_f32(md_contiguous(ctx, props[0])), props[0]->shape[0], 5, get(gold, "props%d", i),
                     "proposals", i);

        /* the detections, rescaled to the file's pixels, in order */
        md_det_result res[1];
        cr_assert_eq(((const md_model_iface *)m->cls->iface)->simple_test(ctx, m, b, res, &err), 0, "%s", err.msg);
        compare_rows(res[0].bboxes, res[0].n, 5, get(gold, "det%d.bboxes", i), "detections", i);
        const md_tensor *lab = get(gold, "det%d.labels", i);
        for (int k = 0; k < res[0].n; k++)
            cr_assert_eq(res[0].labels[k], md_i64(lab)[k], "image %d detection %d: label %lld, mmdet %lld", i, k,
                         (long long)res[0].labels[k], (long long)md_i64(lab)[k]);
        md_ctx_step_reset(ctx);
        md_batch_free(b);
        md_sample_clear(&s);
    }
    md_st_close(gold);
    md_pipeline_free(pipe);
    md_cfg_free(root);
    md_module_free(m);
}
