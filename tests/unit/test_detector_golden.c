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
    ctx = test_ctx(1, (const char *const[]){ "plugins/backbones", "plugins/necks", "plugins/bbox", "plugins/heads",
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

/* The batch of detector_golden.py: uint8 images normalised as mmdet's
 * Normalize (mean/std of ImageNet, float32), zero beyond img_shape. */
static const float MEAN[3] = { 123.675f, 116.28f, 103.53f }, STD[3] = { 58.395f, 57.12f, 57.375f };
static void make_batch(md_batch *b, md_img_meta *metas) {
    memset(b, 0, sizeof *b);
    memset(metas, 0, 2 * sizeof *metas);
    md_tensor *u8 = golden_get(ctx, batch_st, "img_u8");
    cr_assert_eq(u8->dtype, MD_U8);
    cr_assert_eq(u8->ndim, 4);
    int64_t H = u8->shape[2], W = u8->shape[3];
    md_error err = { 0 };
    b->img = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(2, 3, H, W), &err);
    cr_assert_not_null(b->img, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        char key[32];
        snprintf(key, sizeof key, "meta%d.img_shape", i);
        md_tensor *shape = golden_get(ctx, batch_st, key);
        snprintf(key, sizeof key, "meta%d.scale_factor", i);
        md_tensor *sf = golden_get(ctx, batch_st, key);
        md_img_meta *m = &metas[i];
        m->img_shape[0] = (int)md_i64(shape)[0], m->img_shape[1] = (int)md_i64(shape)[1], m->img_shape[2] = 3;
        m->pad_shape[0] = (int)H, m->pad_shape[1] = (int)W, m->pad_shape[2] = 3;
        memcpy(m->scale_factor, md_f32(sf), 4 * sizeof(float));
        for (int k = 0; k < 2; k++) m->ori_shape[k] = (int)lroundf((float)m->img_shape[k] / m->scale_factor[k]);
        m->ori_shape[2] = 3;
        for (int c = 0; c < 3; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++) {
                    int64_t o = ((i * 3 + c) * H + y) * W + x;
                    md_f32(b->img)[o] = y < m->img_shape[0] && x < m->img_shape[1]
                                            ? ((float)md_u8(u8)[o] - MEAN[c]) / STD[c] : 0.0f;
                }
    }
    b->n = 2;
    b->metas = metas;
}

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
        cr_assert_eq(md_rpn_head_class_of(rpn)->simple_test(ctx, rpn, feats, n, &b, props, &err), 0, "%s", err.msg);
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
