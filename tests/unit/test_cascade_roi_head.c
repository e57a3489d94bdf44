/* Cascade R-CNN (plugins/heads/cascade_roi_head.c, the CascadeRCNN name of
 * plugins/detectors/two_stage.c): the tiny config builds with mmdet's
 * ModuleList state dict names and refuses malformed stage lists naming the
 * key; the BBoxHead base's regress_by_class and refine_bboxes against
 * hand-worked decodes; stage_loss_weights scale the stage losses and not
 * the accuracies (two runs from the same seed); and the detector learns
 * the rectangles batch. The numbers of mmdet's own CascadeRoIHead are
 * compared in test_cascade_golden.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/roi_head.h>
#include "rect_batch.h"
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) {
    md_error err = { 0 };
    ctx = md_ctx_new(NULL);
    md_log_set_quiet(ctx, true);
    md_ctx_seed(ctx, 3);
    md_ctx_set_threads(ctx, 1);
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins", &err), 0, "%s", err.msg);
}
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(cascade, .init = setup, .fini = teardown, .timeout = 120);

#define CFG "tests/configs/cascade_rcnn_tiny.cfg"

static md_cfg *load(void) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_load(CFG, &err);
    cr_assert_not_null(root, "%s", err.msg);
    return root;
}

static md_module *build(md_cfg *root, md_error *err) {
    return md_build_from_cfg(ctx, "detectors", md_cfg_get(root, "model"), NULL, err);
}

Test(cascade, builds_with_mmdet_names) {
    md_cfg *root = load();
    md_error err = { 0 };
    md_module *m = build(root, &err);
    cr_assert_not_null(m, "%s", err.msg);
    cr_assert_str_eq(m->cls->name, "CascadeRCNN");
    char name[96];
    for (int s = 0; s < 3; s++) {
        static const char *parts[] = { "shared_fcs.0.weight", "shared_fcs.1.bias", "fc_cls.weight", "fc_reg.weight" };
        for (int k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "roi_head.bbox_head.%d.%s", s, parts[k]);
            cr_assert_not_null(md_module_find(m, name), "no %s", name);
        }
        snprintf(name, sizeof name, "roi_head.bbox_head.%d.fc_reg.weight", s);
        cr_assert_eq(md_module_find(m, name)->shape[0], 4, "class-agnostic regression");
        snprintf(name, sizeof name, "roi_head.bbox_head.%d.fc_cls.weight", s);
        cr_assert_eq(md_module_find(m, name)->shape[0], 4);
    }
    cr_assert_null(md_module_find(m, "roi_head.bbox_head.3.fc_cls.weight"));
    md_module_free(m);
    md_cfg_free(root);
}

/* A config error must name the key. */
static void refused(const char *option, const char *key) {
    md_cfg *root = load();
    md_error err = { 0 };
    char opts[256];
    snprintf(opts, sizeof opts, "%s", option);
    for (char *save = NULL, *o = strtok_r(opts, " ", &save); o; o = strtok_r(NULL, " ", &save))
        cr_assert_eq(md_cfg_apply_option(root, o, &err), 0, "%s", err.msg);
    cr_assert_null(build(root, &err), "%s accepted", option);
    cr_assert(strstr(err.msg, key), "%s: %s", option, err.msg);
    md_cfg_free(root);
}

Test(cascade, refuses_malformed_stages) {
    refused("model.roi_head.stage_loss_weights=[1.0,0.5]", "stage_loss_weights");
    /* 3 heads for 2 stages */
    refused("model.roi_head.num_stages=2 model.roi_head.stage_loss_weights=[1.0,0.5]", "bbox_head");
    refused("model.roi_head.bbox_head.1.num_clases=3", "num_classes");
    refused("model.roi_head.bbox_head.2.type=SingleRoIExtractor", "bbox_head.2");
    refused("model.roi_head.mask_head.type=FCNMaskHead", "mask_head");
    /* train_cfg.rcnn must be one group per stage */
    md_cfg *root = load();
    md_cfg *one = md_cfg_clone(md_cfg_get(root, "model.train_cfg.rcnn.0"));
    md_cfg_set_copy(md_cfg_get_mut(root, "model.train_cfg"), "rcnn", one);
    md_cfg_free(one);
    md_error err = { 0 };
    cr_assert_null(build(root, &err));
    cr_assert(strstr(err.msg, "train_cfg"), "%s", err.msg);
    md_cfg_free(root);
}

/* DeltaXYWHBBoxCoder.decode by hand: means 0, stds s, dw/dh clamped to
 * |log(16/1000)|, clipped to (h, w). */
static void decode(const float *roi, const float *d, const double *s, int h, int w, double *out) {
    double px = (roi[0] + roi[2]) * 0.5, py = (roi[1] + roi[3]) * 0.5, pw = roi[2] - roi[0], ph = roi[3] - roi[1];
    double cx = px + pw * d[0] * s[0], cy = py + ph * d[1] * s[1];
    double gw = pw * exp(d[2] * s[2]), gh = ph * exp(d[3] * s[3]);
    double b[4] = { cx - gw / 2, cy - gh / 2, cx + gw / 2, cy + gh / 2 };
    for (int j = 0; j < 4; j++) out[j] = fmin(fmax(b[j], 0), j % 2 ? h : w);
}

static md_module *bbox_head(bool agnostic) {
    md_error err = { 0 };
    char text[512];
    snprintf(text, sizeof text,
             "h = { type = \"Shared2FCBBoxHead\"; in_channels = 2; fc_out_channels = 4; roi_feat_size = 2; "
             "num_classes = 2; reg_class_agnostic = %s; };", agnostic ? "true" : "false");
    md_cfg *c = md_cfg_parse(text, "head.cfg", &err);
    md_module *h = md_build_from_cfg(ctx, "heads", md_cfg_get(c, "h"), NULL, &err);
    md_cfg_free(c);
    cr_assert_not_null(h, "%s", err.msg);
    return h;
}

Test(cascade, regress_by_class_by_hand) {
    static const double stds[4] = { 0.1, 0.1, 0.2, 0.2 };
    md_module *h = bbox_head(false);
    /* class-specific deltas: row 0 uses class 1's columns, row 1 class 0's;
     * the other class's columns hold 9s that must not be read */
    float rois[2][5] = { { 0, 10, 10, 30, 50 }, { 1, 0, 0, 20, 20 } };
    float pred[2][8] = { { 9, 9, 9, 9, 0.1f, -0.2f, 0.3f, 0.0f }, { -1.0f, 0.0f, 0.0f, 0.5f, 9, 9, 9, 9 } };
    int64_t labels[2] = { 1, 0 };
    const int shape[2] = { 40, 100 };   /* h, w: row 0 clipped at y = 40, row 1 at 0 */
    md_tensor *r = md_tensor_from(ctx, MD_F32, MD_DIMS(2, 5), rois), *p = md_tensor_from(ctx, MD_F32, MD_DIMS(2, 8), pred);
    md_tensor *l = md_tensor_from(ctx, MD_I64, MD_DIMS(2), labels);
    md_tensor *out = md_bbox_head_class_of(h)->regress_by_class(ctx, h, r, l, p, shape);
    cr_assert_not_null(out, "%s", md_ctx_error(ctx)->msg);
    cr_assert_eq(out->shape[0], 2);
    cr_assert_eq(out->shape[1], 5);
    for (int k = 0; k < 2; k++) {
        double want[4];
        decode(rois[k] + 1, pred[k] + 4 * labels[k], stds, shape[0], shape[1], want);
        cr_assert_eq(md_f32(out)[5 * k], rois[k][0], "image index kept");
        for (int j = 0; j < 4; j++)
            cr_assert(fabs(md_f32(out)[5 * k + 1 + j] - want[j]) < 1e-4, "row %d col %d: %g, want %g", k, j,
                      md_f32(out)[5 * k + 1 + j], want[j]);
    }
    cr_assert_eq(md_f32(out)[5 * 0 + 4], 40.0f, "clipped to the height");
    cr_assert_eq(md_f32(out)[5 * 1 + 1], 0.0f, "clipped at 0");

    /* refine_bboxes: image 0 has positives [gt, proposal] and one
     * negative, image 1 one positive proposal; the gt row is dropped and
     * the rest are regressed by their labels, in order */
    float rois3[4][5] = { { 0, 10, 10, 30, 50 }, { 0, 5, 5, 25, 25 }, { 0, 50, 0, 90, 30 }, { 1, 0, 0, 20, 20 } };
    float pred3[4][8];
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 8; j++) pred3[k][j] = 0.1f * (float)(k + 1) * (j % 2 ? -1.0f : 1.0f) + 0.05f * (float)j;
    int64_t labels3[4] = { 0, 1, 1, 0 };
    md_sampling_result sr[2];
    memset(sr, 0, sizeof sr);
    sr[0].pos_bboxes = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 4));
    sr[0].neg_bboxes = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 4));
    sr[0].pos_is_gt = md_tensor_from(ctx, MD_U8, MD_DIMS(2), (uint8_t[]){ 1, 0 });
    sr[1].pos_bboxes = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 4));
    sr[1].neg_bboxes = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 4));
    sr[1].pos_is_gt = md_tensor_from(ctx, MD_U8, MD_DIMS(1), (uint8_t[]){ 0 });
    md_img_meta metas[2];
    memset(metas, 0, sizeof metas);
    metas[0].img_shape[0] = 40, metas[0].img_shape[1] = 100;
    metas[1].img_shape[0] = 16, metas[1].img_shape[1] = 16;
    md_tensor *props[2];
    cr_assert_eq(md_bbox_head_refine_bboxes(ctx, h, md_tensor_from(ctx, MD_F32, MD_DIMS(4, 5), rois3),
                                            md_tensor_from(ctx, MD_I64, MD_DIMS(4), labels3),
                                            md_tensor_from(ctx, MD_F32, MD_DIMS(4, 8), pred3), sr, 2, metas, props),
                 0, "%s", md_ctx_error(ctx)->msg);
    cr_assert_eq(props[0]->shape[0], 2, "the gt added as a proposal is dropped");
    cr_assert_eq(props[1]->shape[0], 1);
    static const int src[3] = { 1, 2, 3 };   /* the rows of rois3 kept */
    for (int q = 0; q < 3; q++) {
        int k = src[q], img = (int)rois3[k][0];
        double want[4];
        decode(rois3[k] + 1, pred3[k] + 4 * labels3[k], stds, metas[img].img_shape[0], metas[img].img_shape[1], want);
        const float *got = md_f32(props[img]) + 4 * (q < 2 ? q : 0);
        for (int j = 0; j < 4; j++)
            cr_assert(fabs(got[j] - want[j]) < 1e-4, "kept row %d col %d: %g, want %g", q, j, got[j], want[j]);
    }
    md_module_free(h);

    /* class agnostic: the one column group whatever the label */
    h = bbox_head(true);
    float pa[1][4] = { { 0.5f, 0.25f, -0.1f, 0.2f } };
    int64_t la[1] = { 1 };
    out = md_bbox_head_class_of(h)->regress_by_class(ctx, h, md_tensor_from(ctx, MD_F32, MD_DIMS(1, 4), rois[0] + 1),
                                                     md_tensor_from(ctx, MD_I64, MD_DIMS(1), la),
                                                     md_tensor_from(ctx, MD_F32, MD_DIMS(1, 4), pa), (const int[]){ 100, 100 });
    cr_assert_not_null(out);
    cr_assert_eq(out->shape[1], 4);
    double want[4];
    decode(rois[0] + 1, pa[0], stds, 100, 100, want);
    for (int j = 0; j < 4; j++) cr_assert(fabs(md_f32(out)[j] - want[j]) < 1e-4);
    md_module_free(h);
    md_ctx_step_reset(ctx);
}

/* One training step's losses from seed 5. */
static void step_losses(const char *weights, md_losses *out, double *vals) {
    md_cfg *root = load();
    md_error err = { 0 };
    cr_assert_eq(md_cfg_apply_option(root, weights, &err), 0, "%s", err.msg);
    md_ctx_seed(ctx, 5);
    md_module *m = build(root, &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_batch *b = rect_batch_new(ctx);
    md_ctx_seed(ctx, 5);
    memset(out, 0, sizeof *out);
    cr_assert_eq(((const md_model_iface *)m->cls->iface)->train_step(ctx, m, b, out, &err), 0, "%s", err.msg);
    for (int k = 0; k < out->n; k++) vals[k] = md_tensor_item(out->values[k]);
    md_ctx_step_reset(ctx);
    rect_batch_free(b);
    md_module_free(m);
    md_cfg_free(root);
}

Test(cascade, stage_loss_weights_scale_the_losses) {
    md_losses a, b;
    double va[MD_MAX_LOSSES], vb[MD_MAX_LOSSES];
    step_losses("model.roi_head.stage_loss_weights=[1.0,0.5,0.25]", &a, va);
    step_losses("model.roi_head.stage_loss_weights=[1.0,1.0,1.0]", &b, vb);
    static const char *want[] = { "loss_rpn_cls", "loss_rpn_bbox", "s0.loss_cls", "s0.acc", "s0.loss_bbox",
                                  "s1.loss_cls", "s1.acc", "s1.loss_bbox", "s2.loss_cls", "s2.acc", "s2.loss_bbox" };
    cr_assert_eq(a.n, 11);
    for (int k = 0; k < 11; k++) cr_assert_str_eq(a.names[k], want[k]);
    for (int k = 0; k < 11; k++) {
        double w = k < 5 ? 1 : k < 8 ? 0.5 : 0.25;
        if (strstr(want[k], "acc")) w = 1;
        cr_assert(fabs(va[k] - w * vb[k]) <= 1e-6 * fabs(vb[k]) + 1e-9, "%s: %g against %g x %g", want[k], va[k], w,
                  vb[k]);
    }
    /* a stage has positives to regress: later stages see refined boxes */
    cr_assert_gt(vb[4], 0);
    cr_assert_gt(vb[7], 0);
}

Test(cascade, trains_and_detects) {
    md_cfg *root = load();
    md_error err = { 0 };
    md_module *m = build(root, &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_cfg *oc = md_cfg_parse("optimizer = { type = \"SGD\"; lr = 0.02; momentum = 0.9; weight_decay = 0.0001; };",
                              "opt.cfg", &err);
    md_optimizer *opt = md_optimizer_build(ctx, m, md_cfg_get(oc, "optimizer"), &err);
    cr_assert_not_null(opt, "%s", err.msg);
    md_batch *b = rect_batch_new(ctx);
    const md_model_iface *mi = m->cls->iface;
    double first = 0, last = 0;
    const int iters = 100;
    for (int it = 0; it < iters; it++) {
        md_losses losses = { 0 };
        md_optimizer_zero_grad(opt);
        cr_assert_eq(mi->train_step(ctx, m, b, &losses, &err), 0, "iter %d: %s", it, err.msg);
        md_tensor *total = md_losses_total(ctx, &losses);
        double v = md_tensor_item(total);
        cr_assert(isfinite(v), "iter %d: loss %g", it, v);
        if (it < 5) first += v / 5;
        if (it >= iters - 5) last += v / 5;
        cr_assert_eq(md_backward(ctx, total, &err), 0, "%s", err.msg);
        md_optimizer_clip_grad_norm(opt, 35, 2);
        cr_assert_eq(md_optimizer_step(opt, &err), 0, "%s", err.msg);
        md_ctx_step_reset(ctx);
    }
    cr_assert_lt(last, first * 0.6, "mean loss of the first 5 iterations %.4f, of the last 5 %.4f", first, last);

    md_module_train(m, false);
    md_det_result res[2];
    cr_assert_eq(mi->simple_test(ctx, m, b, res, &err), 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        cr_assert_gt(res[i].n, 0, "image %d: no detections", i);
        for (int k = 0; k < 2; k++) {
            const float *g = b->gt_bboxes[i].xyxy + 4 * k;
            double best = 0;
            for (int d = 0; d < res[i].n; d++) {
                const float *q = res[i].bboxes + 5 * d;
                cr_assert(q[0] >= 0 && q[2] <= 2 * RECT_IMG && q[1] >= 0 && q[3] <= 2 * RECT_IMG, "box outside the image");
                if (res[i].labels[d] != b->gt_bboxes[i].labels[k]) continue;
                double iw = fmin(q[2], 2 * g[2]) - fmax(q[0], 2 * g[0]), ih = fmin(q[3], 2 * g[3]) - fmax(q[1], 2 * g[1]);
                double inter = iw > 0 && ih > 0 ? iw * ih : 0;
                double u = (q[2] - q[0]) * (q[3] - q[1]) + 4.0 * (g[2] - g[0]) * (g[3] - g[1]) - inter;
                if (inter / u > best) best = inter / u;
            }
            cr_assert_gt(best, 0.5, "image %d gt %d: best IoU of its class %.3f", i, k, best);
        }
    }
    md_ctx_step_reset(ctx);
    rect_batch_free(b);
    md_optimizer_free(opt);
    md_cfg_free(oc);
    md_module_free(m);
    md_cfg_free(root);
}

/* aug_test with one variant is simple_test in the original image's pixels:
 * proposals given there are mapped into the variant (times scale_factor),
 * run through the stages, and the merge of one variant maps the boxes
 * back (divided by it) without averaging anything. */
Test(cascade, aug_test_of_one_variant_is_simple_test) {
    md_cfg *root = load();
    md_error err = { 0 };
    md_module *m = build(root, &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_batch *b = rect_batch_new(ctx);
    md_module_train(m, false);
    bool was = md_grad_set_enabled(ctx, false);
    md_tensor *feats[MD_MAX_LEVELS], *props[2], *orig[2];
    int n = md_extract_feat(ctx, m, md_module_child(m, "backbone"), md_module_child(m, "neck"), b->img, feats);
    cr_assert_gt(n, 0);
    cr_assert_eq(md_dense_head_simple_test_rpn(ctx, md_module_child(m, "rpn_head"), feats, n, b, props, &err), 0, "%s",
                 err.msg);
    for (int i = 0; i < 2; i++) {
        cr_assert_gt(props[i]->shape[0], 0);
        orig[i] = md_contiguous(ctx, md_mul_scalar(ctx, props[i], 1.0 / b->metas[i].scale_factor[0]));
    }
    md_module *roi = md_module_child(m, "roi_head");
    const md_roi_head_class *hc = md_roi_head_class_of(roi);
    cr_assert_not_null(hc->aug_test);
    md_tensor *db[2], *dl[2], *ab[2], *al[2];
    cr_assert_eq(hc->simple_test(ctx, roi, feats, n, b, props, true, db, dl, &err), 0, "%s", err.msg);
    md_tensor *const *vf[1] = { feats };
    cr_assert_eq(hc->aug_test(ctx, roi, vf, n, b, orig, true, ab, al, &err), 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        cr_assert_gt(db[i]->shape[0], 0, "image %d: no detections", i);
        cr_assert_eq(ab[i]->shape[0], db[i]->shape[0], "image %d: %lld against %lld", i, (long long)ab[i]->shape[0],
                     (long long)db[i]->shape[0]);
        assert_equal(al[i], dl[i], "labels");
        assert_close(ab[i], db[i], 1e-5, "detections");
    }
    md_grad_set_enabled(ctx, was);
    md_ctx_step_reset(ctx);
    rect_batch_free(b);
    md_module_free(m);
    md_cfg_free(root);
}
