/* Test-time augmentation (mmdet 2.x's aug_test with MultiScaleFlipAug):
 * bbox_flip / bbox_mapping / bbox_mapping_back against hand-worked boxes
 * and round trips; the merges of merge_augs.py on hand-worked cases;
 * RetinaHead's aug_test against mmdet's aug_test_bboxes written in PyTorch
 * (tests/golden/aug_test_golden.py); Faster R-CNN's (the RPN's
 * aug_test_rpn and the RoI head's aug_test) against mmdet's
 * TwoStageDetector.aug_test (tests/golden/aug_test_twostage_golden.py);
 * the loader's collate of variants; and
 * end to end, tiny RetinaNet and Faster R-CNN models trained in process on
 * generated rectangles, tested through md_single_gpu_test (the path of
 * bin/mmdet-test and EvalHook) with 2 scales x flip, and with flip only on
 * a horizontally symmetric image against simple_test. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/bbox.h>
#include <mmdet/evaluation.h>
#include <mmdet/image.h>
#include <mmdet/roi_head.h>
#include "testlib.h"

/* ------------------------------------------------------------- mapping */

static void assert_boxes(const float *got, const float *want, int n, const char *what) {
    for (int i = 0; i < n; i++)
        cr_assert(fabsf(got[i] - want[i]) < 1e-4f, "%s: value %d is %g, want %g", what, i, got[i], want[i]);
}

Test(bbox_mapping, flips_by_hand) {
    int shape[2] = { 100, 200 };   /* h, w */
    /* two boxes per row (the per-class layout [K, 4 * C]) */
    const float box[8] = { 10, 20, 30, 60, 0, 0, 200, 100 };
    float b[8];
    memcpy(b, box, sizeof b);
    md_bbox_flip(b, 1, 8, shape, MD_FLIP_HORIZONTAL);
    assert_boxes(b, (const float[]){ 170, 20, 190, 60, 0, 0, 200, 100 }, 8, "horizontal");
    memcpy(b, box, sizeof b);
    md_bbox_flip(b, 1, 8, shape, MD_FLIP_VERTICAL);
    assert_boxes(b, (const float[]){ 10, 40, 30, 80, 0, 0, 200, 100 }, 8, "vertical");
    memcpy(b, box, sizeof b);
    md_bbox_flip(b, 2, 4, shape, MD_FLIP_DIAGONAL);
    assert_boxes(b, (const float[]){ 170, 40, 190, 80, 0, 0, 200, 100 }, 8, "diagonal");
    /* a flip without a direction is mmdet's default, horizontal */
    memcpy(b, box, sizeof b);
    md_bbox_flip(b, 1, 4, shape, MD_FLIP_NONE);
    assert_boxes(b, (const float[]){ 170, 20, 190, 60 }, 4, "no direction");
}

Test(bbox_mapping, scale_then_flip_by_hand) {
    /* original (10, 20, 30, 60); variant: scale (w 0.5, h 0.25), flipped in
     * its 25 x 100 image */
    const float sf[4] = { 0.5f, 0.25f, 0.5f, 0.25f };
    int shape[2] = { 25, 100 };
    float b[4] = { 10, 20, 30, 60 };
    md_bbox_mapping(b, 1, 4, shape, sf, true, MD_FLIP_HORIZONTAL);
    assert_boxes(b, (const float[]){ 85, 5, 95, 15 }, 4, "mapping");
    md_bbox_mapping_back(b, 1, 4, shape, sf, true, MD_FLIP_HORIZONTAL);
    assert_boxes(b, (const float[]){ 10, 20, 30, 60 }, 4, "mapping back");
    float v[4] = { 85, 5, 95, 15 };
    md_bbox_mapping_back(v, 1, 4, shape, sf, true, MD_FLIP_VERTICAL);
    /* unflip vertically (y -> 25 - y), then unscale */
    assert_boxes(v, (const float[]){ 170, 40, 190, 80 }, 4, "vertical back");
    float d[4] = { 85, 5, 95, 15 };
    md_bbox_mapping_back(d, 1, 4, shape, sf, true, MD_FLIP_DIAGONAL);
    assert_boxes(d, (const float[]){ 10, 40, 30, 80 }, 4, "diagonal back");
    float n[4] = { 85, 5, 95, 15 };
    md_bbox_mapping_back(n, 1, 4, shape, sf, false, MD_FLIP_HORIZONTAL);
    assert_boxes(n, (const float[]){ 170, 20, 190, 60 }, 4, "no flip: unscale only");
}

Test(bbox_mapping, round_trips) {
    md_rng rng;
    md_rng_seed(&rng, 7);
    const md_flip_dir dirs[4] = { MD_FLIP_NONE, MD_FLIP_HORIZONTAL, MD_FLIP_VERTICAL, MD_FLIP_DIAGONAL };
    for (int t = 0; t < 200; t++) {
        float sf[4];
        sf[0] = sf[2] = 0.3f + (float)md_rng_int(&rng, 200) / 100.0f;
        sf[1] = sf[3] = 0.3f + (float)md_rng_int(&rng, 200) / 100.0f;
        int shape[2] = { 50 + (int)md_rng_int(&rng, 500), 50 + (int)md_rng_int(&rng, 500) };
        float b[8], o[8];
        for (int i = 0; i < 8; i += 4) {
            o[i] = (float)md_rng_int(&rng, 300), o[i + 1] = (float)md_rng_int(&rng, 300);
            o[i + 2] = o[i] + 1 + (float)md_rng_int(&rng, 100), o[i + 3] = o[i + 1] + 1 + (float)md_rng_int(&rng, 100);
        }
        md_flip_dir dir = dirs[t % 4];
        bool flip = t % 5 != 0;
        memcpy(b, o, sizeof b);
        md_bbox_mapping(b, 1, 8, shape, sf, flip, dir);
        for (int i = 0; i < 8; i += 4) cr_assert(b[i] < b[i + 2] && b[i + 1] < b[i + 3], "mapped box not x1 < x2, y1 < y2");
        md_bbox_mapping_back(b, 1, 8, shape, sf, flip, dir);
        for (int i = 0; i < 8; i++)
            cr_assert(fabsf(b[i] - o[i]) < 1e-3f * (1 + fabsf(o[i])), "trial %d: %g back as %g", t, o[i], b[i]);
        /* flipping twice is the identity */
        memcpy(b, o, sizeof b);
        md_bbox_flip(b, 2, 4, shape, dir);
        md_bbox_flip(b, 2, 4, shape, dir);
        assert_boxes(b, o, 8, "double flip");
    }
}

/* ------------------------------------------------------------- merges */

static md_ctx *mctx;
static void mctx_setup(void) { mctx = test_ctx(1, (const char *const[]){ NULL }); }
static void mctx_teardown(void) { md_ctx_free(mctx); }
TestSuite(merge_augs, .init = mctx_setup, .fini = mctx_teardown);

static md_img_meta meta_of(int h, int w, float s, bool flip) {
    md_img_meta m;
    memset(&m, 0, sizeof m);
    m.img_shape[0] = h, m.img_shape[1] = w, m.img_shape[2] = 3;
    for (int k = 0; k < 4; k++) m.scale_factor[k] = s;
    m.flip = flip;
    m.flip_direction = flip ? MD_FLIP_HORIZONTAL : MD_FLIP_NONE;
    return m;
}

Test(merge_augs, rcnn_boxes_and_scores_are_averaged) {
    md_img_meta m0 = meta_of(50, 50, 0.5f, false), m1 = meta_of(100, 100, 1.0f, true);
    const md_img_meta *metas[2] = { &m0, &m1 };
    md_tensor *b[2] = { md_tensor_from(mctx, MD_F32, MD_DIMS(1, 4), (const float[]){ 5, 5, 15, 15 }),
                        md_tensor_from(mctx, MD_F32, MD_DIMS(1, 4), (const float[]){ 68, 12, 88, 32 }) };
    md_tensor *s[2] = { md_tensor_from(mctx, MD_F32, MD_DIMS(1, 2), (const float[]){ 0.2f, 0.8f }),
                        md_tensor_from(mctx, MD_F32, MD_DIMS(1, 2), (const float[]){ 0.4f, 0.6f }) };
    md_tensor *mb, *ms;
    cr_assert_eq(md_merge_aug_bboxes(mctx, b, s, metas, 2, &mb, &ms), 0, "%s", md_ctx_error(mctx)->msg);
    /* (10, 10, 30, 30) and unflipped (12, 12, 32, 32) */
    assert_boxes(md_f32(mb), (const float[]){ 11, 11, 31, 31 }, 4, "merged box");
    assert_boxes(md_f32(ms), (const float[]){ 0.3f, 0.7f }, 2, "merged scores");
    /* variants of different sizes are an error, not a silent mix */
    md_tensor *bad[2] = { b[0], md_tensor_zeros(mctx, MD_F32, MD_DIMS(2, 4)) };
    cr_assert_neq(md_merge_aug_bboxes(mctx, bad, NULL, metas, 2, &mb, NULL), 0);
    cr_assert(strstr(md_ctx_error(mctx)->msg, "variant 1"), "%s", md_ctx_error(mctx)->msg);
}

Test(merge_augs, proposals_mapped_back_nms_and_cut) {
    md_img_meta m0 = meta_of(50, 50, 0.5f, false), m1 = meta_of(100, 100, 1.0f, true);
    const md_img_meta *metas[2] = { &m0, &m1 };
    md_tensor *p[2] = {
        md_tensor_from(mctx, MD_F32, MD_DIMS(2, 5), (const float[]){ 5, 5, 15, 15, 0.9f, 30, 30, 40, 40, 0.5f }),
        md_tensor_from(mctx, MD_F32, MD_DIMS(2, 5), (const float[]){ 70, 10, 90, 30, 0.8f, 0, 0, 10, 10, 0.95f }) };
    md_tensor *r = md_merge_aug_proposals(mctx, p, metas, 2, 0.7, 1000);
    cr_assert_not_null(r, "%s", md_ctx_error(mctx)->msg);
    /* (70..90) flipped back is (10..30): a duplicate of (10, 10, 30, 30, 0.9) */
    cr_assert_eq(r->shape[0], 3);
    assert_boxes(md_f32(r), (const float[]){ 90, 0, 100, 10, 0.95f, 10, 10, 30, 30, 0.9f, 60, 60, 80, 80, 0.5f }, 15,
                 "merged proposals");
    r = md_merge_aug_proposals(mctx, p, metas, 2, 0.7, 2);
    cr_assert_eq(r->shape[0], 2, "max_per_img");
}

Test(merge_augs, dense_candidates_are_concatenated_then_nms) {
    md_img_meta m0 = meta_of(50, 50, 0.5f, false), m1 = meta_of(100, 100, 1.0f, true);
    const md_img_meta *metas[2] = { &m0, &m1 };
    const float c0[] = { 5, 5, 15, 15, 0.6f, 5, 5, 15, 15, 0.7f };
    const float c1[] = { 70, 10, 90, 30, 0.8f, 0, 0, 10, 10, 0.3f };
    const int64_t l0[] = { 0, 1 }, l1[] = { 0, 0 };
    md_det_result cands[2] = { { 2, c0, l0 }, { 2, c1, l1 } }, out;
    cr_assert_eq(md_merge_aug_dets(mctx, cands, metas, 2, 0.5, 100, &out), 0, "%s", md_ctx_error(mctx)->msg);
    /* class 0: the flipped 0.8 box suppresses the 0.6 one; class 1 keeps its box */
    cr_assert_eq(out.n, 3);
    assert_boxes(out.bboxes, (const float[]){ 10, 10, 30, 30, 0.8f, 10, 10, 30, 30, 0.7f, 90, 0, 100, 10, 0.3f }, 15,
                 "dense merge");
    cr_assert(out.labels[0] == 0 && out.labels[1] == 1 && out.labels[2] == 0);
    cr_assert_eq(md_merge_aug_dets(mctx, cands, metas, 2, 0.5, 2, &out), 0);
    cr_assert_eq(out.n, 2, "max_per_img");
}

/* ------------------------------------------------------- RetinaHead golden */

static md_ctx *hctx;
static md_st *gold;
static void head_setup(void) {
    hctx = test_ctx(5, (const char *const[]){ "plugins/bbox", "plugins/heads", "plugins/losses", NULL });
    gold = golden_open("aug_test");
}
static void head_teardown(void) {
    md_st_close(gold);
    md_ctx_free(hctx);
}
TestSuite(retina_aug, .init = head_setup, .fini = head_teardown);

static const char *head_cfg =
    "h = { type = \"RetinaHead\"; num_classes = 3; in_channels = 4; stacked_convs = 1; feat_channels = 8;\n"
    "  anchor_generator = { type = \"AnchorGenerator\"; octave_base_scale = 4; scales_per_octave = 2;\n"
    "                       ratios = [0.5, 1.0, 2.0]; strides = [8, 16]; };\n"
    "  bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; };\n"
    "  loss_cls = { type = \"FocalLoss\"; use_sigmoid = true; gamma = 2.0; alpha = 0.25; loss_weight = 1.0; };\n"
    "  loss_bbox = { type = \"L1Loss\"; loss_weight = 1.0; };\n"
    "  test_cfg = { nms_pre = 30; score_thr = 0.05; nms = { type = \"nms\"; iou_threshold = 0.5; }; max_per_img = 15; };\n"
    "};";

Test(retina_aug, aug_test_matches_mmdet) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(head_cfg, "test_aug_test.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_module *m = md_build_from_cfg(hctx, "heads", md_cfg_get(root, "h"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(m, "%s", err.msg);
    md_load_report rep;
    cr_assert_eq(md_module_load_state(hctx, m, gold, "w.", false, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.missing, 0, "missing: %s", rep.text);
    md_module_train(m, false);
    md_grad_set_enabled(hctx, false);

    /* the golden's two variants of two images */
    static const int shapes[2][2][2] = { { { 50, 60 }, { 45, 55 } }, { { 80, 96 }, { 72, 88 } } };
    static const float scales[2] = { 0.5f, 0.8f };
    md_batch v[2];
    md_img_meta metas[2][2];
    md_batch *augs[2] = { &v[0], &v[1] };
    md_tensor *f0[2], *f1[2];
    md_tensor *const *feats[2] = { f0, f1 };
    for (int k = 0; k < 2; k++) {
        memset(&v[k], 0, sizeof v[k]);
        v[k].n = 2;
        v[k].metas = metas[k];
        for (int i = 0; i < 2; i++) {
            metas[k][i] = meta_of(shapes[k][i][0], shapes[k][i][1], scales[k], k == 1);
            metas[k][i].ori_shape[0] = i ? 90 : 100, metas[k][i].ori_shape[1] = i ? 110 : 120;
        }
        for (int l = 0; l < 2; l++) {
            char key[32];
            snprintf(key, sizeof key, "v%d.feat%d", k, l);
            (k ? f1 : f0)[l] = golden_get(hctx, gold, key);
        }
    }
    v[0].n_augs = 2;
    v[0].augs = augs;
    cr_assert_eq(md_batch_n_augs(&v[0]), 2);
    const md_dense_head_class *hc = md_dense_head_class_of(m);
    /* RetinaHead leaves aug_test to the core's BBoxTestMixin default */
    cr_assert_null(hc->aug_test);
    md_det_result res[2];
    cr_assert_eq(md_dense_head_aug_test(hctx, m, feats, 2, &v[0], true, res, &err), 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        char key[32];
        snprintf(key, sizeof key, "det%d.from_flipped", i);
        md_tensor *ff = golden_get(hctx, gold, key);
        int nf = 0;
        for (int64_t j = 0; j < ff->shape[0]; j++) nf += md_u8(ff)[j];
        /* the fixture exercises both variants */
        cr_assert(nf > 0 && nf < ff->shape[0], "image %d: %d of %lld detections from the flipped variant", i, nf,
                  (long long)ff->shape[0]);
        snprintf(key, sizeof key, "det%d.bboxes", i);
        md_tensor *ref = golden_get(hctx, gold, key);
        cr_assert_eq(res[i].n, ref->shape[0], "image %d: %d detections, mmdet %lld", i, res[i].n,
                     (long long)ref->shape[0]);
        assert_close(md_tensor_from(hctx, MD_F32, MD_DIMS(res[i].n, 5), res[i].bboxes), ref, 1e-5, key);
        snprintf(key, sizeof key, "det%d.labels", i);
        assert_equal(md_tensor_from(hctx, MD_I64, MD_DIMS(res[i].n), res[i].labels), golden_get(hctx, gold, key), key);
    }
    md_module_free(m);
}

/* ------------------------------------------------- Faster R-CNN golden */

static md_ctx *tctx;
static md_st *tgold;
static void twostage_setup(void) {
    tctx = test_ctx(5, (const char *const[]){ "plugins/bbox", "plugins/heads", "plugins/losses", NULL });
    tgold = golden_open("aug_test_twostage");
}
static void twostage_teardown(void) {
    md_st_close(tgold);
    md_ctx_free(tctx);
}
TestSuite(twostage_aug, .init = twostage_setup, .fini = twostage_teardown);

static const char *rpn_cfg =
    "h = { type = \"RPNHead\"; in_channels = 4; feat_channels = 8;\n"
    "  anchor_generator = { type = \"AnchorGenerator\"; scales = [4]; ratios = [0.5, 1.0, 2.0]; strides = [8, 16]; };\n"
    "  test_cfg = { nms_pre = 30; max_per_img = 20; nms = { type = \"nms\"; iou_threshold = 0.7; }; min_bbox_size = 0; };\n"
    "};";
static const char *roi_cfg =
    "h = { type = \"StandardRoIHead\";\n"
    "  bbox_roi_extractor = { type = \"SingleRoIExtractor\";\n"
    "    roi_layer = { type = \"RoIAlign\"; output_size = 7; sampling_ratio = 0; aligned = true; };\n"
    "    out_channels = 4; featmap_strides = [8, 16]; };\n"
    "  bbox_head = { type = \"Shared2FCBBoxHead\"; in_channels = 4; fc_out_channels = 16; roi_feat_size = 7;\n"
    "    num_classes = 3; reg_class_agnostic = false;\n"
    "    bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0];\n"
    "                   target_stds = [0.1, 0.1, 0.2, 0.2]; }; };\n"
    "  test_cfg = { score_thr = 0.05; nms = { type = \"nms\"; iou_threshold = 0.5; }; max_per_img = 25; };\n"
    "};";

/* A head of `text` with the fixture's weights under `prefix`, in eval mode. */
static md_module *golden_head(const char *text, const char *prefix) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(text, "test_aug_test.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_module *m = md_build_from_cfg(tctx, "heads", md_cfg_get(root, "h"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(m, "%s", err.msg);
    md_load_report rep;
    cr_assert_eq(md_module_load_state(tctx, m, tgold, prefix, false, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.missing, 0, "%s: missing %s", prefix, rep.text);
    cr_assert_gt(rep.loaded, 0, "%s: nothing loaded", prefix);
    md_module_train(m, false);
    return m;
}

/* The golden's two variants (scale 0.5; scale 0.8 flipped) of two images
 * (100 x 120 and 90 x 110), as MultiScaleFlipAug and collate make them:
 * v[0] is the batch, its augs the variants. */
typedef struct golden_variants {
    md_batch v[2];
    md_batch *augs[2];
    md_img_meta metas[2][2];
    md_tensor *f[2][2];
    md_tensor *const *feats[2];
} golden_variants;

static void golden_variants_init(golden_variants *g, md_ctx *c, md_st *st) {
    static const int shapes[2][2][2] = { { { 50, 60 }, { 45, 55 } }, { { 80, 96 }, { 72, 88 } } };
    static const int pad[2] = { 64, 96 };
    static const float scales[2] = { 0.5f, 0.8f };
    memset(g, 0, sizeof *g);
    for (int k = 0; k < 2; k++) {
        g->v[k].n = 2;
        g->v[k].metas = g->metas[k];
        g->augs[k] = &g->v[k];
        g->feats[k] = g->f[k];
        for (int i = 0; i < 2; i++) {
            md_img_meta *mt = &g->metas[k][i];
            *mt = meta_of(shapes[k][i][0], shapes[k][i][1], scales[k], k == 1);
            mt->ori_shape[0] = i ? 90 : 100, mt->ori_shape[1] = i ? 110 : 120, mt->ori_shape[2] = 3;
            mt->pad_shape[0] = mt->pad_shape[1] = pad[k], mt->pad_shape[2] = 3;
        }
        for (int l = 0; l < 2; l++) {
            char key[32];
            snprintf(key, sizeof key, "v%d.feat%d", k, l);
            g->f[k][l] = golden_get(c, st, key);
        }
    }
    g->v[0].n_augs = 2;
    g->v[0].augs = g->augs;
}

/* Proposals [P, 5] against the fixture's entry `key`, rows in order. */
static void assert_proposals(md_tensor *got, const char *key) {
    md_tensor *ref = golden_get(tctx, tgold, key);
    cr_assert_not_null(got, "%s: no proposals", key);
    cr_assert(got->ndim == 2 && got->shape[1] == 5, "%s: proposals of %d dims", key, got->ndim);
    cr_assert_eq(got->shape[0], ref->shape[0], "%s: %lld proposals, mmdet %lld", key, (long long)got->shape[0],
                 (long long)ref->shape[0]);
    assert_close(md_contiguous(tctx, got), ref, 1e-5, key);
}

/* mmdet's TwoStageDetector.aug_test on fixed features: the RPN's
 * aug_test_rpn (each variant's proposals, then merge_aug_proposals) and
 * StandardRoIHead.aug_test (aug_test_bboxes + multiclass_nms), chained as
 * the detector chains them. */
Test(twostage_aug, aug_test_matches_mmdet) {
    md_error err = { 0 };
    md_module *rpn = golden_head(rpn_cfg, "w.rpn_head."), *roi = golden_head(roi_cfg, "w.roi_head.");
    md_grad_set_enabled(tctx, false);
    golden_variants g;
    golden_variants_init(&g, tctx, tgold);
    cr_assert_eq(md_batch_n_augs(&g.v[0]), 2);

    /* each variant's proposals alone (simple_test_rpn) */
    for (int k = 0; k < 2; k++) {
        md_tensor *p[2];
        cr_assert_eq(md_dense_head_simple_test_rpn(tctx, rpn, g.feats[k], 2, &g.v[k], p, &err), 0, "%s", err.msg);
        for (int i = 0; i < 2; i++) {
            char key[32];
            snprintf(key, sizeof key, "v%d.props%d", k, i);
            assert_proposals(p[i], key);
        }
    }
    /* merged in the original images */
    md_tensor *props[2];
    cr_assert_eq(md_dense_head_aug_test_rpn(tctx, rpn, g.feats, 2, &g.v[0], props, &err), 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        char key[32];
        snprintf(key, sizeof key, "props%d.from_flipped", i);
        md_tensor *ff = golden_get(tctx, tgold, key);
        int nf = 0;
        for (int64_t j = 0; j < ff->shape[0]; j++) nf += md_u8(ff)[j];
        /* the fixture exercises both variants */
        cr_assert(nf > 0 && nf < ff->shape[0], "image %d: %d of %lld proposals from the flipped variant", i, nf,
                  (long long)ff->shape[0]);
        snprintf(key, sizeof key, "props%d", i);
        assert_proposals(props[i], key);
    }

    /* the RoI head on the merged proposals, detections in the original images */
    const md_roi_head_class *hc = md_roi_head_class_of(roi);
    cr_assert_not_null(hc->aug_test);
    md_tensor *dets[2], *labels[2];
    cr_assert_eq(hc->aug_test(tctx, roi, g.feats, 2, &g.v[0], props, true, dets, labels, &err), 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        char key[32];
        snprintf(key, sizeof key, "det%d.bboxes", i);
        md_tensor *ref = golden_get(tctx, tgold, key);
        cr_assert_eq(dets[i]->shape[0], ref->shape[0], "image %d: %lld detections, mmdet %lld", i,
                     (long long)dets[i]->shape[0], (long long)ref->shape[0]);
        assert_close(dets[i], ref, 1e-5, key);
        snprintf(key, sizeof key, "det%d.labels", i);
        assert_equal(labels[i], golden_get(tctx, tgold, key), key);
    }
    /* rescale=False: mmdet scales the merged detections by the first
     * variant's scale_factor */
    md_tensor *dn[2], *ln[2];
    cr_assert_eq(hc->aug_test(tctx, roi, g.feats, 2, &g.v[0], props, false, dn, ln, &err), 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(dn[i]->shape[0], dets[i]->shape[0]);
        for (int64_t j = 0; j < dn[i]->shape[0] * 5; j++) {
            float want = md_f32(dets[i])[j] * (j % 5 == 4 ? 1.0f : 0.5f);
            cr_assert(fabsf(md_f32(dn[i])[j] - want) <= 1e-5f * (1 + fabsf(want)), "image %d value %lld: %g, want %g",
                      i, (long long)j, md_f32(dn[i])[j], want);
        }
    }
    md_module_free(rpn);
    md_module_free(roi);
}

/* ------------------------------------------------------------ end to end */

#define IMG 64
static md_ctx *ctx;
static char dir[] = "/tmp/md_augtest_XXXXXX";

/* Filled rectangles (x1, y1, x2, y2, class) on a gray background; image 0 is
 * mirror-symmetric about its vertical centre line. */
static const int rects[2][3][5] = { { { 16, 4, 48, 30, 0 }, { 2, 36, 22, 60, 1 }, { 42, 36, 62, 60, 1 } },
                                    { { 4, 6, 30, 40, 2 }, { 34, 30, 60, 58, 0 }, { 0, 0, 0, 0, -1 } } };
static const uint8_t colour[3][3] = { { 30, 30, 220 }, { 30, 200, 30 }, { 220, 40, 40 } };   /* BGR */

static void write_data(void) {
    cr_assert_not_null(mkdtemp(dir));
    md_error err = { 0 };
    char path[256];
    snprintf(path, sizeof path, "%s/ann.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "{\"images\": [");
    for (int i = 0; i < 2; i++)
        fprintf(f, "%s{\"id\": %d, \"file_name\": \"%d.png\", \"width\": %d, \"height\": %d}", i ? ", " : "", i + 1, i,
                IMG, IMG);
    fprintf(f, "], \"annotations\": [");
    int id = 0;
    for (int i = 0; i < 2; i++) {
        md_image *im = md_image_new(IMG, IMG, 3, &err);
        cr_assert_not_null(im, "%s", err.msg);
        memset(im->data, 128, IMG * IMG * 3);
        for (int k = 0; k < 3 && rects[i][k][4] >= 0; k++) {
            const int *r = rects[i][k];
            for (int y = r[1]; y < r[3]; y++)
                for (int x = r[0]; x < r[2]; x++) memcpy(im->data + (y * IMG + x) * 3, colour[r[4]], 3);
            fprintf(f, "%s{\"id\": %d, \"image_id\": %d, \"category_id\": %d, \"bbox\": [%d, %d, %d, %d], "
                    "\"area\": %d, \"iscrowd\": 0}", id ? ", " : "", id + 1, i + 1, r[4] + 1, r[0], r[1], r[2] - r[0],
                    r[3] - r[1], (r[2] - r[0]) * (r[3] - r[1]));
            id++;
        }
        snprintf(path, sizeof path, "%s/%d.png", dir, i);
        cr_assert_eq(md_image_write_png(im, path, &err), 0, "%s", err.msg);
        md_image_free(im);
    }
    fprintf(f, "], \"categories\": [{\"id\": 1, \"name\": \"a\"}, {\"id\": 2, \"name\": \"b\"}, "
               "{\"id\": 3, \"name\": \"c\"}]}\n");
    fclose(f);
}

static void e2e_setup(void) {
    md_error err = { 0 };
    ctx = md_ctx_new(NULL);
    md_log_set_quiet(ctx, true);
    md_ctx_seed(ctx, 3);
    md_ctx_set_threads(ctx, 1);
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins", &err), 0, "%s", err.msg);
    write_data();
}
static void e2e_teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
    md_ctx_free(ctx);
}
TestSuite(aug_e2e, .init = e2e_setup, .fini = e2e_teardown, .timeout = 120);

#define NORM "{ type = \"Normalize\"; mean = [123.675, 116.28, 103.53]; std = [58.395, 57.12, 57.375]; to_rgb = true; }"

/* A CocoDataset over the generated images: `pipeline` is a config list. */
static md_dataset *dataset(const char *pipeline, bool test_mode) {
    char text[4096];
    snprintf(text, sizeof text,
             "d = { type = \"CocoDataset\"; ann_file = \"%s/ann.json\"; img_prefix = \"%s/\"; classes = [\"a\", \"b\", \"c\"];"
             " test_mode = %s; filter_empty_gt = false; pipeline = %s; };",
             dir, dir, test_mode ? "true" : "false", pipeline);
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse(text, "dataset.cfg", &err);
    cr_assert_not_null(c, "%s\n%s", err.msg, text);
    md_dataset *ds = md_build_dataset(ctx, md_cfg_get(c, "d"), NULL, &err);
    md_cfg_free(c);
    cr_assert_not_null(ds, "%s", err.msg);
    return ds;
}

static md_dataset *test_dataset(const char *scales, bool flip) {
    char p[2048];
    snprintf(p, sizeof p,
             "( { type = \"LoadImageFromFile\"; },"
             "  { type = \"MultiScaleFlipAug\"; img_scale = %s; flip = %s;"
             "    transforms = ( { type = \"Resize\"; keep_ratio = true; }, { type = \"RandomFlip\"; }, " NORM ","
             "                   { type = \"Pad\"; size_divisor = 32; }, { type = \"ImageToTensor\"; keys = [\"img\"]; },"
             "                   { type = \"Collect\"; keys = [\"img\"]; } ); } )",
             scales, flip ? "true" : "false");
    return dataset(p, true);
}

static md_loader *test_loader(const md_dataset *ds) {
    md_loader_cfg lc = MD_LOADER_CFG_DEFAULT;
    lc.samples_per_gpu = 2;
    lc.workers_per_gpu = 0;
    lc.shuffle = false;
    md_error err = { 0 };
    md_loader *l = md_loader_new(ds, &lc, &err);
    cr_assert_not_null(l, "%s", err.msg);
    return l;
}

/* The model of `config`, trained `iters` SGD steps on the two images
 * (random horizontal flips, as a training pipeline does). */
static md_module *trained(const char *config, int iters, double lr) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_load(config, &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_module *m = md_build_from_cfg(ctx, "detectors", md_cfg_get(root, "model"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(m, "%s", err.msg);
    char oc_text[160];
    snprintf(oc_text, sizeof oc_text, "o = { type = \"SGD\"; lr = %g; momentum = 0.9; weight_decay = 0.0001; };", lr);
    md_cfg *oc = md_cfg_parse(oc_text, "opt.cfg", &err);
    md_optimizer *opt = md_optimizer_build(ctx, m, md_cfg_get(oc, "o"), &err);
    cr_assert_not_null(opt, "%s", err.msg);
    md_dataset *ds = dataset("( { type = \"LoadImageFromFile\"; }, { type = \"LoadAnnotations\"; with_bbox = true; },"
                             "  { type = \"Resize\"; img_scale = [64, 64]; keep_ratio = true; },"
                             "  { type = \"RandomFlip\"; flip_ratio = 0.5; }, " NORM ","
                             "  { type = \"Pad\"; size_divisor = 32; }, { type = \"DefaultFormatBundle\"; },"
                             "  { type = \"Collect\"; keys = [\"img\", \"gt_bboxes\", \"gt_labels\"]; } )",
                             false);
    md_loader_cfg lc = MD_LOADER_CFG_DEFAULT;
    lc.samples_per_gpu = 2;
    lc.workers_per_gpu = 0;
    md_loader *l = md_loader_new(ds, &lc, &err);
    cr_assert_not_null(l, "%s", err.msg);
    const md_model_iface *mi = m->cls->iface;
    md_module_train(m, true);
    for (int it = 0; it < iters; it++) {
        cr_assert_eq(md_loader_start_epoch(l, it, &err), 0, "%s", err.msg);
        md_batch *b = md_loader_next(l, &err);
        cr_assert_not_null(b, "%s", err.msg);
        md_losses losses = { 0 };
        md_optimizer_zero_grad(opt);
        cr_assert_eq(mi->train_step(ctx, m, b, &losses, &err), 0, "iter %d: %s", it, err.msg);
        md_tensor *total = md_losses_total(ctx, &losses);
        cr_assert_not_null(total);
        cr_assert(isfinite(md_tensor_item(total)), "iter %d: loss %g", it, md_tensor_item(total));
        cr_assert_eq(md_backward(ctx, total, &err), 0, "%s", err.msg);
        md_optimizer_clip_grad_norm(opt, 35, 2);
        cr_assert_eq(md_optimizer_step(opt, &err), 0, "%s", err.msg);
        md_ctx_step_reset(ctx);
        md_batch_free(b);
    }
    md_loader_free(l);
    md_dataset_free(ds);
    md_optimizer_free(opt);
    md_cfg_free(oc);
    return m;
}

static md_results run_test(md_module *m, md_dataset *ds) {
    md_loader *l = test_loader(ds);
    md_results res;
    md_error err = { 0 };
    cr_assert_eq(md_single_gpu_test(ctx, m, l, ds, false, &res, &err), 0, "%s", err.msg);
    md_loader_free(l);
    return res;
}

static double iou(const float *a, const float *b) {
    double iw = fmin(a[2], b[2]) - fmax(a[0], b[0]), ih = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    double inter = iw > 0 && ih > 0 ? iw * ih : 0;
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter);
}

/* Every ground-truth rectangle has a detection of its class with IoU > 0.5;
 * every confident detection (score >= 0.5) is centred on a rectangle (a
 * variant mapped back wrongly lands on background); boxes lie in the
 * original image, scores in (score_thr, 1]. */
static void assert_sane(const md_results *res, const char *what) {
    for (int i = 0; i < 2; i++) {
        const md_det_result *r = &res->r[i];
        cr_assert_gt(r->n, 0, "%s: image %d has no detections", what, i);
        cr_assert_eq(res->metas[i].ori_shape[0], IMG);
        for (int d = 0; d < r->n; d++) {
            const float *q = r->bboxes + 5 * d;
            cr_assert(q[4] > 0.05f && q[4] <= 1.0f, "%s: score %g", what, q[4]);
            cr_assert(q[0] >= -0.01f && q[1] >= -0.01f && q[2] <= IMG + 0.01f && q[3] <= IMG + 0.01f,
                      "%s: image %d box (%g, %g, %g, %g) outside the %dx%d image", what, i, q[0], q[1], q[2], q[3], IMG,
                      IMG);
            if (q[4] < 0.5f) continue;
            float cx = (q[0] + q[2]) / 2, cy = (q[1] + q[3]) / 2;
            bool on = false;
            for (int k = 0; k < 3 && rects[i][k][4] >= 0; k++) {
                const int *g = rects[i][k];
                on |= cx > g[0] - 1 && cx < g[2] + 1 && cy > g[1] - 1 && cy < g[3] + 1;
            }
            cr_assert(on, "%s: image %d: detection (%g, %g, %g, %g) score %g is centred on no rectangle", what, i,
                      q[0], q[1], q[2], q[3], q[4]);
        }
        for (int k = 0; k < 3 && rects[i][k][4] >= 0; k++) {
            const int *g = rects[i][k];
            float gb[4] = { (float)g[0], (float)g[1], (float)g[2], (float)g[3] };
            double best = 0;
            for (int d = 0; d < r->n; d++)
                if (r->labels[d] == g[4] && iou(r->bboxes + 5 * d, gb) > best) best = iou(r->bboxes + 5 * d, gb);
            cr_assert_gt(best, 0.5, "%s: image %d rectangle %d (class %d): best IoU %.3f", what, i, k, g[4], best);
        }
    }
}

/* Flip-only TTA on the symmetric image 0: both variants see the same pixels,
 * so per class the best detection is simple_test's best or its mirror image,
 * with the same score (dense heads: exactly, to box_tol pixels). Faster
 * R-CNN's RoI head averages each proposal's box with the mirrored box of its
 * mirror proposal, two refinements by a head that is not
 * mirror-equivariant, and may pick another proposal of the same object:
 * there (average) the best must be the same object as simple_test's best,
 * its mirror or their average, by the detection criterion (IoU >= 0.5); a
 * box not mapped back from the flipped variant lands a mirror away, on no
 * object of the class. */
static void assert_flip_matches(const md_results *simple, const md_results *tta, double box_tol, bool average) {
    const md_det_result *s = &simple->r[0], *t = &tta->r[0];
    int checked = 0;
    for (int c = 0; c < 3; c++) {
        int bs = -1, bt = -1;
        for (int d = 0; d < s->n; d++)
            if (s->labels[d] == c && (bs < 0 || s->bboxes[5 * d + 4] > s->bboxes[5 * bs + 4])) bs = d;
        for (int d = 0; d < t->n; d++)
            if (t->labels[d] == c && (bt < 0 || t->bboxes[5 * d + 4] > t->bboxes[5 * bt + 4])) bt = d;
        /* A class is compared where one side finds it clearly: a score of
         * 0.3 or more. Averaging over the two variants can at most halve a
         * score, so such a class stays above the 0.05 threshold on the
         * other side; weaker ones sit on the threshold's edge, where
         * rounding alone (another convolution kernel, a sanitizer build)
         * decides whether they survive. */
        float ss = bs < 0 ? 0 : s->bboxes[5 * bs + 4], st = bt < 0 ? 0 : t->bboxes[5 * bt + 4];
        if (fmaxf(ss, st) < 0.3f) continue;
        cr_assert(bs >= 0 && bt >= 0, "class %d (best score %g) found by only one of simple_test and flip TTA", c,
                  fmaxf(ss, st));
        const float *a = s->bboxes + 5 * bs, *b = t->bboxes + 5 * bt;
        float mirror[4] = { IMG - a[2], a[1], IMG - a[0], a[3] };
        double same = fmax(fmax(fabs(a[0] - b[0]), fabs(a[1] - b[1])), fmax(fabs(a[2] - b[2]), fabs(a[3] - b[3])));
        double mir = fmax(fmax(fabs(mirror[0] - b[0]), fabs(mirror[1] - b[1])),
                          fmax(fabs(mirror[2] - b[2]), fabs(mirror[3] - b[3])));
        if (average) {
            float mid[4];
            for (int k = 0; k < 4; k++) mid[k] = (a[k] + mirror[k]) / 2;
            double best = fmax(fmax(iou(b, a), iou(b, mirror)), iou(b, mid));
            cr_assert(best >= 0.5,
                      "class %d: flip TTA best (%g, %g, %g, %g) overlaps simple_test's (%g, %g, %g, %g), its mirror "
                      "and their average by IoU %.3f at most", c, b[0], b[1], b[2], b[3], a[0], a[1], a[2], a[3], best);
        } else {
            cr_assert(fmin(same, mir) <= box_tol,
                      "class %d: flip TTA best (%g, %g, %g, %g) is neither simple_test's (%g, %g, %g, %g) nor its mirror",
                      c, b[0], b[1], b[2], b[3], a[0], a[1], a[2], a[3]);
            if (box_tol < 0.01) cr_assert(fabsf(a[4] - b[4]) < 1e-5f, "class %d: score %g vs %g", c, b[4], a[4]);
        }
        checked++;
    }
    cr_assert_gt(checked, 0);
}

static void e2e(const char *config, int iters, double lr, double flip_box_tol, bool average) {
    md_module *m = trained(config, iters, lr);
    md_dataset *single = test_dataset("[64, 64]", false);
    md_dataset *multi = test_dataset("([64, 64], [96, 96])", true);
    md_dataset *flip = test_dataset("[64, 64]", true);
    md_results rs = run_test(m, single), rm = run_test(m, multi), rf = run_test(m, flip);
    assert_sane(&rs, "simple_test");
    assert_sane(&rm, "2 scales x flip");
    /* the variants really went through the merge: results differ from simple_test's */
    bool differ = rs.r[1].n != rm.r[1].n;
    for (int d = 0; !differ && d < rs.r[1].n * 5; d++) differ = fabsf(rs.r[1].bboxes[d] - rm.r[1].bboxes[d]) > 1e-4f;
    cr_assert(differ, "2 scales x flip gave exactly simple_test's detections");
    assert_flip_matches(&rs, &rf, flip_box_tol, average);
    md_results_free(&rs);
    md_results_free(&rm);
    md_results_free(&rf);
    md_dataset_free(single);
    md_dataset_free(multi);
    md_dataset_free(flip);
    md_module_free(m);
}

Test(aug_e2e, retinanet) { e2e("tests/configs/retinanet_tiny.cfg", 120, 0.01, 1e-3, false); }

/* Faster R-CNN averages each box with its mirrored twin's, two refinements
 * of the same object by a head that is not mirror-equivariant, so the flip
 * check is the detection criterion (assert_flip_matches), not a pixel
 * distance: which proposal wins for a barely trained model depends on the
 * convolution kernel's rounding. */
Test(aug_e2e, faster_rcnn) { e2e("tests/configs/faster_rcnn_tiny.cfg", 120, 0.02, 0, true); }

Test(aug_e2e, variants_are_collated_per_variant_and_checked) {
    md_dataset *ds = test_dataset("([64, 64], [96, 96])", true);
    md_loader *l = test_loader(ds);
    md_error err = { 0 };
    cr_assert_eq(md_loader_start_epoch(l, 0, &err), 0, "%s", err.msg);
    md_batch *b = md_loader_next(l, &err);
    cr_assert_not_null(b, "%s", err.msg);
    cr_assert_eq(b->n, 2);
    cr_assert_eq(md_batch_n_augs(b), 4);
    cr_assert_eq(md_batch_aug(b, 0), b);
    /* mmdet's order: scales outer, [no flip, flip] inner */
    static const int side[4] = { 64, 64, 96, 96 };
    for (int k = 0; k < 4; k++) {
        md_batch *v = md_batch_aug(b, k);
        cr_assert_eq(v->n, 2);
        cr_assert_eq(v->img->shape[2], side[k], "variant %d: padded height %lld", k, (long long)v->img->shape[2]);
        cr_assert_eq(v->img->shape[3], side[k]);
        for (int i = 0; i < 2; i++) {
            const md_img_meta *mt = &v->metas[i];
            cr_assert_eq(v->indices[i], i);
            cr_assert_eq(mt->flip, k % 2 == 1, "variant %d flip", k);
            cr_assert_eq(mt->flip_direction, k % 2 ? MD_FLIP_HORIZONTAL : MD_FLIP_NONE);
            cr_assert_eq(mt->img_shape[0], side[k]);
            cr_assert_eq(mt->pad_shape[1], side[k]);
            cr_assert_eq(mt->ori_shape[0], IMG);
            cr_assert(fabsf(mt->scale_factor[0] - side[k] / (float)IMG) < 1e-6f, "variant %d scale %g", k,
                      mt->scale_factor[0]);
        }
    }
    /* the flipped variant holds the mirrored pixels of image 1 */
    const float *a = md_f32(md_batch_aug(b, 0)->img), *f = md_f32(md_batch_aug(b, 1)->img);
    size_t plane = (size_t)IMG * IMG;
    for (int y = 0; y < IMG; y += 7)
        for (int x = 0; x < IMG; x += 5)
            cr_assert_eq(a[3 * plane + (size_t)y * IMG + x], f[3 * plane + (size_t)y * IMG + (IMG - 1 - x)]);
    md_batch_free(b);
    md_loader_free(l);

    /* samples with different numbers of variants cannot share a batch */
    md_sample s[2];
    md_sample_init(&s[0]);
    md_sample_init(&s[1]);
    s[0].augs = calloc(2, sizeof *s[0].augs);
    s[0].n_augs = 2;
    s[1].augs = calloc(1, sizeof *s[1].augs);
    s[1].n_augs = 1;
    md_sample_init(&s[0].augs[0]);
    md_sample_init(&s[0].augs[1]);
    md_sample_init(&s[1].augs[0]);
    cr_assert_null(md_collate(s, 2, 32, &err));
    cr_assert(strstr(err.msg, "MultiScaleFlipAug variants"), "%s", err.msg);
    md_sample_clear(&s[0]);
    md_sample_clear(&s[1]);
    md_dataset_free(ds);
}

/* A model without aug_test: a clear error naming it, not a silent simple_test. */
static int no_train(md_ctx *c, md_module *m, void *b, md_losses *l, md_error *e) {
    (void)c, (void)m, (void)b, (void)l, (void)e;
    return 0;
}
static int zero_dets(md_ctx *c, md_module *m, void *b, md_det_result *r, md_error *e) {
    (void)c, (void)m, (void)e;
    for (int i = 0; i < ((md_batch *)b)->n; i++) r[i] = (md_det_result){ 0, NULL, NULL };
    return 0;
}
static const md_model_iface plain_iface = { .train_step = no_train, .simple_test = zero_dets };
static const md_module_class plain_cls = { .name = "PlainDetector", .iface = &plain_iface };

Test(aug_e2e, model_without_aug_test_is_named) {
    md_module *m = md_module_new(sizeof(md_module), &plain_cls);
    cr_assert_not_null(m);
    md_dataset *one = test_dataset("[64, 64]", false), *multi = test_dataset("[64, 64]", true);
    md_results r = run_test(m, one);
    cr_assert_eq(r.n, 2);
    md_results_free(&r);
    md_loader *l = test_loader(multi);
    md_error err = { 0 };
    cr_assert_neq(md_single_gpu_test(ctx, m, l, multi, false, &r, &err), 0);
    cr_assert(strstr(err.msg, "PlainDetector") && strstr(err.msg, "aug_test"), "%s", err.msg);
    md_loader_free(l);
    md_dataset_free(one);
    md_dataset_free(multi);
    md_module_free(m);
}
