/* Whole detectors against mmdet 2.28's simple_test written in PyTorch
 * (tests/golden/detector_golden.py): a tiny RetinaNet and a tiny Faster
 * R-CNN built from configs, their random weights loaded by
 * md_checkpoint_load (load_from) under mmdet's state dict names, a batch of
 * two images of different img_shape and scale_factor, and the final
 * detections (boxes rescaled to the original images, scores, labels).
 *
 * Tolerance: the golden script makes sure no decision (score_thr, top-k
 * cuts, NMS IoUs and ties, RoIAlign sampling grids, FPN level of a RoI) is
 * within its margin (final scores 1e-4 and RPN scores 2e-5 apart where their
 * order decides, scores 1e-4 (RetinaNet) or 1e-3 (RoI head) from score_thr,
 * IoUs 1e-3 from the NMS threshold), so the detections must be the same set
 * in the same order: counts and labels are compared exactly. Boxes and
 * scores come out of ~20 float32 conv layers, BN, RoIAlign and fcs summed in
 * another order than PyTorch's (measured: boxes within 6e-5 px, scores
 * within 6e-7, relative error ~3e-7), so they are compared with a relative
 * error (||got - ref|| / ||ref||) of 1e-5 and per value within 1e-3 px
 * (boxes of up to 180 px) and 1e-5 (scores), well inside those margins.
 * Faster R-CNN's proposals (test_cfg.rpn, before the RoI head) are compared
 * too. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/checkpoint.h>
#include <mmdet/roi_head.h>
#include "testlib.h"
#include "detector_tiny.h"

static md_ctx *ctx;
static md_st *batch_st;
static void setup(void) {
    ctx = test_ctx(1, (const char *const[]){ "plugins/backbones", "plugins/necks", "plugins/bbox", "plugins/heads", "plugins/losses",
                                             "plugins/detectors", NULL });
    md_ctx_set_threads(ctx, 1);
    batch_st = golden_open("detector_batch");
}
static void teardown(void) {
    md_st_close(batch_st);
    md_ctx_free(ctx);
}
TestSuite(detector_golden, .init = setup, .fini = teardown, .timeout = 60);

static const char *retina_cfg = TINY_RETINA_MODEL TINY_RETINA_TEST_CFG;

static const char *faster_cfg = TINY_FASTER_MODEL TINY_FASTER_TEST_CFG;

static void make_batch(md_batch *b, md_img_meta *metas) { tiny_detector_batch(ctx, batch_st, b, metas); }

static void run(const char *cfg_text, const char *name) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(cfg_text, name, &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_module *m = md_build_from_cfg(ctx, "detectors", md_cfg_get(root, "model"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(m, "%s: %s", name, err.msg);
    char path[128];
    snprintf(path, sizeof path, "tests/fixtures/detector_%s_weights.safetensors", name);
    md_ckpt_info info;
    cr_assert_eq(md_checkpoint_load(ctx, path, m, NULL, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(info.report.missing, 0, "%s missing: %s", name, info.report.text);
    cr_assert_eq(info.report.unexpected, 0, "%s unexpected: %s", name, info.report.text);
    cr_assert_gt(info.report.loaded, 50, "%s: %d loaded", name, info.report.loaded);

    md_batch b;
    md_img_meta metas[2];
    make_batch(&b, metas);
    md_module_train(m, false);
    md_grad_set_enabled(ctx, false);
    md_det_result res[2];
    const md_model_iface *iface = m->cls->iface;
    cr_assert_eq(iface->simple_test(ctx, m, &b, res, &err), 0, "%s", err.msg);

    snprintf(path, sizeof path, "detector_%s", name);
    md_st *gold = golden_open(path);
    md_module *rpn = md_module_child(m, "rpn_head");
    if (rpn) {
        /* the intermediate proposals of test_cfg.rpn, through the parts */
        md_tensor *feats[MD_MAX_LEVELS], *props[2];
        int n = md_backbone_forward(ctx, md_module_child(m, "backbone"), b.img, feats, MD_MAX_LEVELS);
        n = md_neck_forward(ctx, md_module_child(m, "neck"), feats, n, feats, MD_MAX_LEVELS);
        cr_assert_eq(n, 5, "%s", md_ctx_error(ctx)->msg);
        cr_assert_eq(md_dense_head_simple_test_rpn(ctx, rpn, feats, n, &b, props, &err), 0, "%s", err.msg);
        for (int i = 0; i < 2; i++) {
            char key[16];
            snprintf(key, sizeof key, "props%d", i);
            md_tensor *ref = golden_get(ctx, gold, key);
            cr_assert_eq(props[i]->shape[0], ref->shape[0], "%s: %lld proposals, mmdet %lld", key,
                         (long long)props[i]->shape[0], (long long)ref->shape[0]);
            assert_close(props[i], ref, 1e-5, key);
        }
    }
    for (int i = 0; i < 2; i++) {
        char key[32];
        snprintf(key, sizeof key, "det%d.bboxes", i);
        md_tensor *ref = golden_get(ctx, gold, key);
        cr_assert_eq(res[i].n, ref->shape[0], "%s image %d: %d detections, mmdet %lld", name, i, res[i].n,
                     (long long)ref->shape[0]);
        cr_assert_gt(res[i].n, 0, "%s image %d: no detections to compare", name, i);
        md_tensor *got = md_tensor_from(ctx, MD_F32, MD_DIMS(res[i].n, 5), res[i].bboxes);
        assert_close(got, ref, 1e-5, key);
        for (int k = 0; k < res[i].n; k++)
            for (int j = 0; j < 5; j++) {
                double d = fabs((double)res[i].bboxes[5 * k + j] - md_f32(ref)[5 * k + j]);
                cr_assert(d <= (j < 4 ? 1e-3 : 1e-5), "%s image %d detection %d value %d: %g, mmdet %g", name, i, k,
                          j, res[i].bboxes[5 * k + j], md_f32(ref)[5 * k + j]);
            }
        snprintf(key, sizeof key, "det%d.labels", i);
        assert_equal(md_tensor_from(ctx, MD_I64, MD_DIMS(res[i].n), res[i].labels), golden_get(ctx, gold, key), key);
    }
    md_st_close(gold);
    md_tensor_free(b.img);
    md_module_free(m);
}

Test(detector_golden, retinanet_simple_test) { run(retina_cfg, "retina"); }

Test(detector_golden, faster_rcnn_simple_test) { run(faster_cfg, "faster"); }
