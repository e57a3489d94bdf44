/* Box machinery plugins (AnchorGenerator, DeltaXYWHBBoxCoder, MaxIoUAssigner,
 * PseudoSampler) against mmdet's code written in PyTorch
 * (tests/golden/bbox_golden.py), plus hand-worked edge cases. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/bbox.h>
#include "testlib.h"

static md_ctx *ctx;
static md_st *gold;
static void setup(void) {
    ctx = test_ctx(0, (const char *const[]){ "plugins/bbox", NULL });
    gold = golden_open("bbox");
}
static void teardown(void) {
    md_st_close(gold);
    md_ctx_free(ctx);
}
TestSuite(bbox, .init = setup, .fini = teardown);

static void *build(const char *reg, const char *text) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(text, "test_bbox.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    void *obj = md_build_from_cfg(ctx, reg, md_cfg_get(root, "c"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(obj, "%s: %s", text, err.msg);
    return obj;
}

static const char *retina_ag =
    "c = { type = \"AnchorGenerator\"; octave_base_scale = 4; scales_per_octave = 3;"
    " ratios = [0.5, 1.0, 2.0]; strides = [8, 16]; };";

Test(bbox, anchors_retina) {
    md_prior_generator *g = build("prior_generators", retina_ag);
    cr_assert_eq(g->iface->num_levels(g), 2);
    cr_assert_eq(g->iface->num_base_priors(g, 0), 9);
    md_tensor *a0 = md_grid_priors(ctx, g, 0, 5, 7), *a1 = md_grid_priors(ctx, g, 1, 3, 4);
    cr_assert_not_null(a0);
    assert_close(a0, golden_get(ctx, gold, "retina.anchors0"), 1e-7, "level 0 anchors");
    assert_close(a1, golden_get(ctx, gold, "retina.anchors1"), 1e-7, "level 1 anchors");
    md_tensor *v = g->iface->valid_flags(ctx, g, 0, 5, 7, 4, 6);
    assert_equal(v, golden_get(ctx, gold, "retina.valid0"), "valid flags");
    cr_assert_null(md_grid_priors(ctx, g, 2, 3, 3), "level out of range must fail");
    md_ctx_clear_error(ctx);
    g->iface->destroy(g);
}

Test(bbox, anchors_custom) {
    md_prior_generator *g = build("prior_generators",
                                  "c = { type = \"AnchorGenerator\"; strides = [4]; ratios = [0.5, 2.0];"
                                  " scales = [1.0, 3.0]; base_sizes = [12]; center_offset = 0.5; scale_major = false; };");
    assert_close(md_grid_priors(ctx, g, 0, 3, 2), golden_get(ctx, gold, "custom.anchors0"), 1e-7, "custom anchors");
    g->iface->destroy(g);
}

Test(bbox, anchors_config_errors) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse("c = { type = \"AnchorGenerator\"; strides = [8]; ratios = [1.0]; };", "x.cfg", &err);
    cr_assert_null(md_build_from_cfg(ctx, "prior_generators", md_cfg_get(root, "c"), NULL, &err));
    cr_assert(strstr(err.msg, "octave_base_scale"), "%s", err.msg);
    md_cfg_free(root);
}

static void coder_case(const char *tag, const char *cfg) {
    md_bbox_coder *c = build("bbox_coders", cfg);
    char key[96];
    md_tensor *anchors = golden_get(ctx, gold, "coder.anchors"), *gts = golden_get(ctx, gold, "coder.gts");
    snprintf(key, sizeof key, "coder.%s.enc", tag);
    md_tensor *enc = md_bbox_encode(ctx, c, anchors, gts);
    if (md_tensor_numel(golden_get(ctx, gold, "coder.anchors")) && strcmp(tag, "ctr") != 0)
        assert_close(enc, golden_get(ctx, gold, key), 1e-6, key);
    /* round trip: decode(encode(gt)) = gt, unclipped */
    md_tensor *back = md_bbox_decode(ctx, c, anchors, enc, NULL);
    if (strcmp(tag, "ctr") != 0) assert_close(back, gts, 1e-5, "round trip");
    md_tensor *d = md_tensor_detach(ctx, golden_get(ctx, gold, "coder.deltas"));
    d = md_contiguous(ctx, md_mul_scalar(ctx, d, 1.0));
    d->requires_grad = true;
    int max_shape[2] = { 50, 60 };
    md_tensor *dec = md_bbox_decode(ctx, c, anchors, d, max_shape);
    snprintf(key, sizeof key, "coder.%s.dec", tag);
    assert_close(dec, golden_get(ctx, gold, key), 1e-6, key);
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, dec, golden_get(ctx, gold, "coder.gout"), &err), 0, "%s", err.msg);
    snprintf(key, sizeof key, "coder.%s.dec_grad", tag);
    cr_assert_not_null(d->grad);
    assert_close(d->grad, golden_get(ctx, gold, key), 1e-5, key);
    snprintf(key, sizeof key, "coder.%s.dec_noclip", tag);
    assert_close(md_bbox_decode(ctx, c, anchors, golden_get(ctx, gold, "coder.deltas"), NULL),
                 golden_get(ctx, gold, key), 1e-6, key);
    c->iface->destroy(c);
}

Test(bbox, coder_unit) { coder_case("unit", "c = { type = \"DeltaXYWHBBoxCoder\"; };"); }
Test(bbox, coder_rcnn) {
    coder_case("rcnn", "c = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.1, -0.1, 0.0];"
                       " target_stds = [0.1, 0.1, 0.2, 0.2]; };");
}
Test(bbox, coder_ctr_clamp) { coder_case("ctr", "c = { type = \"DeltaXYWHBBoxCoder\"; add_ctr_clamp = true; };"); }

Test(bbox, coder_hand) {
    /* anchor (0,0,10,20), gt (5,5,25,25): centre (5,10) -> (15,15), wh (10,20) -> (20,20) */
    md_bbox_coder *c = build("bbox_coders", "c = { type = \"DeltaXYWHBBoxCoder\"; };");
    md_tensor *a = md_tensor_from(ctx, MD_F32, MD_DIMS(1, 4), (float[]){ 0, 0, 10, 20 });
    md_tensor *g = md_tensor_from(ctx, MD_F32, MD_DIMS(1, 4), (float[]){ 5, 5, 25, 25 });
    md_tensor *e = md_bbox_encode(ctx, c, a, g);
    float want[4] = { 1.0f, 0.25f, logf(2.0f), 0.0f };
    for (int i = 0; i < 4; i++) cr_assert_float_eq(md_f32(e)[i], want[i], 1e-6);
    /* a huge dw is clipped at |log(16/1000)| */
    md_tensor *p = md_tensor_from(ctx, MD_F32, MD_DIMS(1, 4), (float[]){ 0, 0, 100, 0 });
    md_tensor *b = md_bbox_decode(ctx, c, a, p, NULL);
    double w = 10.0 * exp(fabs(log(0.016)));
    cr_assert_float_eq(md_f32(b)[2] - md_f32(b)[0], w, 1e-3);
    c->iface->destroy(c);
}

static void assign_case(const char *tag, const char *cfg) {
    md_bbox_assigner *a = build("bbox_assigners", cfg);
    md_assign_result ar;
    md_error err = { 0 };
    md_tensor *boxes = golden_get(ctx, gold, "assign.boxes"), *gt = golden_get(ctx, gold, "assign.gt");
    md_tensor *ign = golden_get(ctx, gold, "assign.gt_ignore"), *lab = golden_get(ctx, gold, "assign.gt_labels");
    cr_assert_eq(md_bbox_assign(ctx, a, boxes, gt, ign, lab, &ar, &err), 0, "%s", err.msg);
    char key[96];
    snprintf(key, sizeof key, "assign.%s.gt_inds", tag);
    assert_equal(ar.gt_inds, golden_get(ctx, gold, key), key);
    snprintf(key, sizeof key, "assign.%s.max_overlaps", tag);
    assert_close(ar.max_overlaps, golden_get(ctx, gold, key), 1e-6, key);
    snprintf(key, sizeof key, "assign.%s.labels", tag);
    assert_equal(ar.labels, golden_get(ctx, gold, key), key);
    cr_assert_eq(ar.num_gts, 6);

    /* PseudoSampler over the same assignment */
    md_bbox_sampler *s = build("bbox_samplers", "c = { type = \"PseudoSampler\"; };");
    md_sampling_result sr;
    cr_assert_eq(md_bbox_sample(ctx, s, &ar, boxes, gt, lab, NULL, &sr, &err), 0, "%s", err.msg);
    int64_t n = boxes->shape[0], np = 0, nn = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t v = md_i64(ar.gt_inds)[i];
        if (v > 0) {
            cr_assert_eq(md_i64(sr.pos_inds)[np], i);
            cr_assert_eq(md_i64(sr.pos_assigned_gt_inds)[np], v - 1);
            cr_assert_eq(md_i64(sr.pos_gt_labels)[np], md_i64(lab)[v - 1]);
            for (int k = 0; k < 4; k++) {
                cr_assert_eq(md_f32(sr.pos_gt_bboxes)[np * 4 + k], md_f32(gt)[(v - 1) * 4 + k]);
                cr_assert_eq(md_f32(sr.pos_bboxes)[np * 4 + k], md_f32(boxes)[i * 4 + k]);
            }
            np++;
        } else if (v == 0) {
            cr_assert_eq(md_i64(sr.neg_inds)[nn++], i);
        }
    }
    cr_assert_eq(md_tensor_numel(sr.pos_inds), np);
    cr_assert_eq(md_tensor_numel(sr.neg_inds), nn);
    cr_assert(np > 0 && nn > 0, "%s: %lld positives, %lld negatives", tag, (long long)np, (long long)nn);
    s->iface->destroy(s);
    a->iface->destroy(a);
}

Test(bbox, assign_retina) {
    assign_case("retina", "c = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.5; neg_iou_thr = 0.4; min_pos_iou = 0.0;"
                          " ignore_iof_thr = -1.0; };");
}
Test(bbox, assign_ignore) {
    assign_case("ignore", "c = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.5; neg_iou_thr = 0.4; ignore_iof_thr = 0.5; };");
}
Test(bbox, assign_ignore_wrt_gt) {
    assign_case("ignore_gt", "c = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.5; neg_iou_thr = 0.4;"
                             " ignore_iof_thr = 0.3; ignore_wrt_candidates = false; };");
}
Test(bbox, assign_neg_pair) {
    assign_case("pair", "c = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.6; neg_iou_thr = [0.1, 0.5];"
                        " min_pos_iou = 0.3; gt_max_assign_all = false; };");
}
Test(bbox, assign_no_low_quality) {
    assign_case("nolow", "c = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.5; neg_iou_thr = 0.5;"
                         " match_low_quality = false; };");
}

Test(bbox, assign_no_gt) {
    md_bbox_assigner *a = build("bbox_assigners", "c = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.5; neg_iou_thr = 0.4; };");
    md_assign_result ar;
    md_error err = { 0 };
    md_tensor *boxes = golden_get(ctx, gold, "assign.boxes");
    md_tensor *gt = md_tensor_empty(ctx, MD_F32, MD_DIMS(0, 4));
    md_tensor *lab = md_tensor_empty(ctx, MD_I64, MD_DIMS(0));
    cr_assert_eq(md_bbox_assign(ctx, a, boxes, gt, NULL, lab, &ar, &err), 0, "%s", err.msg);
    for (int64_t i = 0; i < boxes->shape[0]; i++) {
        cr_assert_eq(md_i64(ar.gt_inds)[i], 0);
        cr_assert_eq(md_i64(ar.labels)[i], -1);
        cr_assert_eq(md_f32(ar.max_overlaps)[i], 0.0f);
    }
    md_bbox_sampler *s = build("bbox_samplers", "c = { type = \"PseudoSampler\"; };");
    md_sampling_result sr;
    cr_assert_eq(md_bbox_sample(ctx, s, &ar, boxes, gt, lab, NULL, &sr, &err), 0, "%s", err.msg);
    cr_assert_eq(md_tensor_numel(sr.pos_inds), 0);
    cr_assert_eq(md_tensor_numel(sr.neg_inds), boxes->shape[0]);
    cr_assert_eq(sr.pos_gt_bboxes->shape[1], 4);
    s->iface->destroy(s);
    a->iface->destroy(a);
}

Test(bbox, assign_bad_neg_thr) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse("c = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.5; neg_iou_thr = \"x\"; };", "x.cfg", &err);
    cr_assert_null(md_build_from_cfg(ctx, "bbox_assigners", md_cfg_get(root, "c"), NULL, &err));
    cr_assert(strstr(err.msg, "neg_iou_thr"), "%s", err.msg);
    md_cfg_free(root);
}

/* ---- "iou_calculators": BboxOverlaps2D is md_bbox_overlaps, scores dropped ---- */
Test(bbox, iou_calculator_bbox_overlaps_2d) {
    md_iou_calculator *c = build("iou_calculators", "c = { type = \"BboxOverlaps2D\"; scale = 1.0; };");
    cr_assert_str_eq(c->type, "BboxOverlaps2D");
    static const float a5[] = { 0, 0, 10, 10, 0.9f, 5, 5, 15, 20, 0.1f, 2, 3, 4, 8, 0.5f };
    static const float a4[] = { 0, 0, 10, 10, 5, 5, 15, 20, 2, 3, 4, 8 };
    static const float b4[] = { 1, 1, 9, 12, 4, 6, 16, 18, 0, 0, 3, 3 };
    md_tensor *scored = md_tensor_from(ctx, MD_F32, MD_DIMS(3, 5), a5), *a = md_tensor_from(ctx, MD_F32, MD_DIMS(3, 4), a4);
    md_tensor *b = md_tensor_from(ctx, MD_F32, MD_DIMS(3, 4), b4);
    const md_iou_mode modes[] = { MD_IOU, MD_IOF, MD_GIOU };
    for (int i = 0; i < 3; i++)
        for (int aligned = 0; aligned < 2; aligned++) {
            md_tensor *got = md_iou_calculator_overlaps(ctx, c, scored, b, modes[i], aligned);
            md_tensor *want = md_bbox_overlaps(ctx, a, b, modes[i], aligned, 1e-6);
            cr_assert(got && want, "%s", md_ctx_error(ctx)->msg);
            assert_equal(got, want, aligned ? "aligned overlaps" : "pairwise overlaps");
        }
    c->iface->destroy(c);
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse("c = { type = \"BboxOverlaps2D\"; dtype = \"fp16\"; };\n"
                                "d = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.5; neg_iou_thr = 0.4;\n"
                                "      iou_calculator = { type = \"BboxOverlap2D\"; }; };", "iou.cfg", &err);
    cr_assert_null(md_build_from_cfg(ctx, "iou_calculators", md_cfg_get(root, "c"), NULL, &err));
    cr_assert(strstr(err.msg, "fp16"), "%s", err.msg);
    cr_assert_null(md_build_from_cfg(ctx, "bbox_assigners", md_cfg_get(root, "d"), NULL, &err));
    cr_assert(strstr(err.msg, "d.iou_calculator") && strstr(err.msg, "iou.cfg:3") &&
              strstr(err.msg, "did you mean 'BboxOverlaps2D'"), "%s", err.msg);
    md_cfg_free(root);
}
