/* Mask R-CNN's model half against mmdet 2.28.2 itself
 * (tests/golden/mask_rcnn_golden.py): FCNMaskHead forward, mask targets,
 * loss and its gradients, get_seg_masks with and without rescale (two
 * heads: per class with a deconv; class agnostic with GroupNorm and
 * nearest upsampling); a StandardRoIHead with a mask branch, its
 * forward_train on a hand-built batch and simple_test with masks; and a
 * MaskRCNN state dict saved by mmdet loaded by name. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/evaluation.h>
#include <mmdet/roi_head.h>
#include "testlib.h"

static md_ctx *ctx;
static md_st *gold;
static void setup(void) {
    ctx = test_ctx(5, (const char *const[]){ "plugins/backbones", "plugins/necks", "plugins/bbox", "plugins/heads",
                                             "plugins/losses", "plugins/detectors", NULL });
    gold = golden_open("mask_head");
}
static void teardown(void) {
    md_st_close(gold);
    md_ctx_free(ctx);
}
TestSuite(mask_head, .init = setup, .fini = teardown);

static md_module *build(const char *type, const char *body, md_error *err) {
    char text[4096];
    snprintf(text, sizeof text, "h = { type = \"%s\"; %s };", type, body);
    md_cfg *root = md_cfg_parse(text, "test_mask_head.cfg", err);
    if (!root) return NULL;
    md_module *m = md_build_from_cfg(ctx, "heads", md_cfg_get(root, "h"), NULL, err);
    md_cfg_free(root);
    return m;
}

static md_tensor *fx(md_st *st, const char *tag, const char *what) {
    char key[128];
    snprintf(key, sizeof key, "%s%s%s", tag, *tag ? "." : "", what);
    return golden_get(ctx, st, key);
}

/* Bitmap masks from a u8 [n, h, w] fixture entry (the caller frees them). */
static md_masks masks_of(md_st *st, const char *key) {
    md_tensor *t = golden_get(ctx, st, key);
    md_masks m;
    md_masks_init(&m);
    m.kind = MD_MASKS_BITMAP;
    m.n = (int)t->shape[0];
    m.h = (int)t->shape[1];
    m.w = (int)t->shape[2];
    size_t sz = (size_t)m.n * (size_t)m.h * (size_t)m.w;
    m.bitmaps = malloc(sz + 1);
    cr_assert_not_null(m.bitmaps);
    memcpy(m.bitmaps, md_u8(md_contiguous(ctx, t)), sz);
    return m;
}

/* Each RLE decoded equals the reference mask (u8 [D, h, w]) pixel for
 * pixel. */
static void assert_masks(const md_rle *rle, md_tensor *ref, const char *what) {
    ref = md_contiguous(ctx, ref);
    int64_t D = ref->shape[0], h = ref->shape[1], w = ref->shape[2];
    uint8_t *dec = malloc((size_t)(h * w));
    cr_assert_not_null(dec);
    int64_t ones = 0;
    for (int64_t i = 0; i < D; i++) {
        md_error err = { 0 };
        cr_assert_eq(rle[i].h, h, "%s %lld: height %d, want %lld", what, (long long)i, rle[i].h, (long long)h);
        cr_assert_eq(rle[i].w, w, "%s %lld: width %d, want %lld", what, (long long)i, rle[i].w, (long long)w);
        cr_assert_eq(md_rle_decode(&rle[i], dec, &err), 0, "%s", err.msg);
        int64_t diff = 0, area = 0;
        for (int64_t p = 0; p < h * w; p++) {
            diff += dec[p] != md_u8(ref)[i * h * w + p];
            ones += md_u8(ref)[i * h * w + p];
            area += dec[p];
        }
        cr_assert_eq(diff, 0, "%s %lld: %lld pixels differ", what, (long long)i, (long long)diff);
        cr_assert_eq(md_rle_area(&rle[i]), (uint64_t)area, "%s %lld: RLE area", what, (long long)i);
    }
    cr_assert_gt(ones, 0, "%s: the reference masks are empty", what);
    free(dec);
}

/* Detections grouped by class as mmdet's bbox2result returns them (score
 * order within a class), compared with the fixture's `dets`, `labels`
 * and `masks` entries. */
static void assert_by_class(md_st *st, const char *pre, int n, const float *bboxes, const int64_t *labels,
                            const md_rle *masks) {
    char k[64];
    snprintf(k, sizeof k, "%sdets", pre);
    md_tensor *ref = golden_get(ctx, st, k);
    cr_assert_gt(ref->shape[0], 1, "%s: the fixture should keep several detections", k);
    cr_assert_eq(n, ref->shape[0], "%s: %d detections, mmdet %lld", k, n, (long long)ref->shape[0]);
    md_tensor *bx = md_tensor_empty(ctx, MD_F32, MD_DIMS(n, 5)), *lb = md_tensor_empty(ctx, MD_I64, MD_DIMS(n));
    md_rle *mk = calloc((size_t)n, sizeof *mk);
    cr_assert_not_null(mk);
    int j = 0;
    for (int64_t c = 0; c < 3; c++)
        for (int i = 0; i < n; i++)
            if (labels[i] == c) {
                memcpy(md_f32(bx) + 5 * j, bboxes + 5 * i, 5 * sizeof(float));
                md_i64(lb)[j] = c;
                mk[j++] = masks[i];
            }
    cr_assert_eq(j, n);
    assert_close(bx, ref, 1e-4, k);
    snprintf(k, sizeof k, "%sdet_labels", pre);
    assert_equal(lb, golden_get(ctx, st, k), k);
    snprintf(k, sizeof k, "%sdet_masks", pre);
    assert_masks(mk, golden_get(ctx, st, k), k);
    free(mk);
}

static void check_fcn(const char *tag, const char *body, int n_params) {
    md_error err = { 0 };
    md_module *m = build("FCNMaskHead", body, &err);
    cr_assert_not_null(m, "%s", err.msg);
    const md_mask_head_class *c = md_mask_head_class_of(m);
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%s.w.", tag);
    md_load_report rep;
    cr_assert_eq(md_module_load_state(ctx, m, gold, prefix, false, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.missing, 0, "%s: missing %s", tag, rep.text);
    cr_assert_eq(rep.loaded, n_params, "%s: %d loaded (%s)", tag, rep.loaded, rep.text);

    md_tensor *pred = c->forward(ctx, m, golden_get(ctx, gold, "x"));
    cr_assert_not_null(pred, "%s", md_ctx_error(ctx)->msg);
    assert_close(pred, fx(gold, tag, "mask_pred"), 1e-5, "mask_pred");

    md_sampling_result sr[2];
    md_masks gm[2];
    memset(sr, 0, sizeof sr);
    for (int i = 0; i < 2; i++) {
        char k[32];
        snprintf(k, sizeof k, "s%d.pos", i);
        sr[i].pos_bboxes = golden_get(ctx, gold, k);
        snprintf(k, sizeof k, "s%d.inds", i);
        sr[i].pos_assigned_gt_inds = golden_get(ctx, gold, k);
        snprintf(k, sizeof k, "gt_masks%d", i);
        gm[i] = masks_of(gold, k);
        sr[i].num_gts = gm[i].n;
    }
    md_tensor *t = c->get_targets(ctx, m, sr, 2, gm, 12);
    cr_assert_not_null(t, "%s", md_ctx_error(ctx)->msg);
    assert_close(t, fx(gold, tag, "targets"), 0, "mask targets");

    md_losses losses = { 0 };
    cr_assert_eq(c->loss(ctx, m, pred, t, golden_get(ctx, gold, "labels"), &losses, &err), 0, "%s", err.msg);
    cr_assert_eq(losses.n, 1);
    cr_assert_str_eq(losses.names[0], "loss_mask");
    assert_close(losses.values[0], fx(gold, tag, "loss_mask"), 1e-5, "loss_mask");
    cr_assert_eq(md_backward(ctx, losses.values[0], &err), 0, "%s", err.msg);
    static const char *params[] = { "convs.0.conv.weight", "conv_logits.weight", "conv_logits.bias" };
    for (int i = 0; i < 3; i++) {
        char k[64];
        snprintf(k, sizeof k, "g.%s", params[i]);
        md_tensor *p = md_module_find(m, params[i]);
        cr_assert(p && p->grad, "%s: no gradient", params[i]);
        assert_close(p->grad, fx(gold, tag, k), 1e-4, params[i]);
    }

    /* get_seg_masks: rescale takes the test-scale boxes back to ori_shape
     * (30 x 40); without it the masks are ori_shape x scale_factor */
    md_tensor *logits = fx(gold, tag, "seg_logits"), *dets = golden_get(ctx, gold, "det_bboxes");
    md_tensor *labels = golden_get(ctx, gold, "det_labels");
    md_tensor *sft = md_contiguous(ctx, golden_get(ctx, gold, "scale_factor"));
    float sf[4];
    memcpy(sf, md_f32(sft), sizeof sf);
    int64_t D = dets->shape[0];
    md_tensor *scaled = md_tensor_empty(ctx, MD_F32, MD_DIMS(D, 4));
    for (int64_t i = 0; i < D; i++)
        for (int q = 0; q < 4; q++) md_f32(scaled)[4 * i + q] = md_f32(dets)[5 * i + q] * sf[q];
    md_rle rle[8];
    int ori[2] = { 30, 40 };
    cr_assert_eq(c->get_seg_masks(ctx, m, logits, false, scaled, labels, 0.5, ori, sf, true, rle, &err), 0, "%s", err.msg);
    assert_masks(rle, fx(gold, tag, "seg_rescale"), "rescaled masks");
    cr_assert_eq(c->get_seg_masks(ctx, m, logits, false, dets, labels, 0.5, ori, sf, false, rle, &err), 0, "%s", err.msg);
    assert_masks(rle, fx(gold, tag, "seg_test_scale"), "test-scale masks");
    for (int i = 0; i < 2; i++) md_masks_free(&gm[i]);
    md_module_free(m);
}

Test(mask_head, fcn_per_class_deconv) {
    check_fcn("cls", "num_convs = 2; roi_feat_size = 6; in_channels = 4; conv_out_channels = 5; num_classes = 3;",
              8);
}

Test(mask_head, fcn_class_agnostic_gn_nearest) {
    check_fcn("agn", "num_convs = 1; roi_feat_size = 6; in_channels = 4; conv_out_channels = 4; num_classes = 3;"
                     " class_agnostic = true; norm_cfg = { type = \"GN\"; num_groups = 2; };"
                     " upsample_cfg = { type = \"nearest\"; scale_factor = 2; };"
                     " loss_mask = { type = \"CrossEntropyLoss\"; use_mask = true; loss_weight = 2.0; };",
              5);
}

Test(mask_head, fcn_bilinear) {
    check_fcn("bil", "num_convs = 1; roi_feat_size = 6; in_channels = 4; conv_out_channels = 3; num_classes = 3;"
                     " upsample_cfg = { type = \"bilinear\"; scale_factor = 2; };",
              4);
}

/* md_upsample_bilinear's gradient by finite differences, scales 2 and 3. */
static md_tensor *up2(md_ctx *c, md_tensor **in, void *u) { (void)u; return md_upsample_bilinear(c, in[0], 2); }
static md_tensor *up3(md_ctx *c, md_tensor **in, void *u) { (void)u; return md_upsample_bilinear(c, in[0], 3); }
Test(mask_head, upsample_bilinear_gradient) {
    md_tensor *x = randn_param(ctx, MD_DIMS(2, 3, 4, 5), 11);
    cr_assert_lt(gradcheck(ctx, up2, &x, 1, NULL, 1e-2), 1e-2);
    cr_assert_lt(gradcheck(ctx, up3, &x, 1, NULL, 1e-2), 1e-2);
    md_tensor_free(x);
}

Test(mask_head, init_is_mmdets) {
    md_error err = { 0 };
    md_module *m = build("FCNMaskHead", "num_convs = 1; in_channels = 16; conv_out_channels = 32; num_classes = 4;",
                         &err);
    cr_assert_not_null(m, "%s", err.msg);
    /* kaiming normal, fan_out, relu: std sqrt(2 / fan_out); fan_out of a
     * ConvTranspose2d weight [in, out, 2, 2] is in * 4 (PyTorch's) */
    struct { const char *name; double fan_out; } w[] = {
        { "convs.0.conv.weight", 32 * 9 }, { "upsample.weight", 32 * 4 }, { "conv_logits.weight", 4 } };
    for (int k = 0; k < 3; k++) {
        md_tensor *p = md_module_find(m, w[k].name);
        cr_assert_not_null(p, "%s", w[k].name);
        double s = 0, s2 = 0;
        int64_t n = md_tensor_numel(p);
        for (int64_t i = 0; i < n; i++) {
            s += md_f32(p)[i];
            s2 += (double)md_f32(p)[i] * md_f32(p)[i];
        }
        double sd = sqrt(s2 / (double)n - (s / (double)n) * (s / (double)n)), want = sqrt(2.0 / w[k].fan_out);
        cr_assert(fabs(sd - want) < 0.25 * want, "%s: std %g, want %g", w[k].name, sd, want);
    }
    const char *biases[] = { "convs.0.conv.bias", "upsample.bias", "conv_logits.bias" };
    for (int k = 0; k < 3; k++) {
        md_tensor *b = md_module_find(m, biases[k]);
        cr_assert_not_null(b, "%s", biases[k]);
        for (int64_t i = 0; i < md_tensor_numel(b); i++) cr_assert_eq(md_f32(b)[i], 0.0f, "%s", biases[k]);
    }
    md_module_free(m);
}

Test(mask_head, bad_configs_name_the_key) {
    md_error err = { 0 };
    cr_assert_null(build("FCNMaskHead", "upsample_cfg = { type = \"transpose\"; scale_factor = 2; };", &err));
    cr_assert(strstr(err.msg, "upsample_cfg.type") && strstr(err.msg, "transpose"), "%s", err.msg);
    err = (md_error){ 0 };
    cr_assert_null(build("FCNMaskHead", "loss_mask = { type = \"CrossEntropyLoss\"; };", &err));
    cr_assert(strstr(err.msg, "loss_mask") && strstr(err.msg, "use_mask"), "%s", err.msg);
    err = (md_error){ 0 };
    cr_assert_null(build("FCNMaskHead", "init_cfg = { type = \"Normal\"; std = 0.01; };", &err));
    cr_assert(strstr(err.msg, "init_cfg"), "%s", err.msg);
}

/* ---- StandardRoIHead with a mask branch ---- */
#define ROI_HEAD_CFG(out_ch, strides)                                                                             \
    "bbox_roi_extractor = { type = \"SingleRoIExtractor\"; roi_layer = { type = \"RoIAlign\"; output_size = 3;"  \
    " sampling_ratio = 0; }; out_channels = " out_ch "; featmap_strides = " strides "; };"                        \
    " bbox_head = { type = \"Shared2FCBBoxHead\"; in_channels = " out_ch "; fc_out_channels = 8; roi_feat_size = 3;" \
    " num_classes = 3; loss_bbox = { type = \"L1Loss\"; loss_weight = 1.0; }; };"                                   \
    " mask_roi_extractor = { type = \"SingleRoIExtractor\"; roi_layer = { type = \"RoIAlign\"; output_size = 6;"  \
    " sampling_ratio = 0; }; out_channels = " out_ch "; featmap_strides = " strides "; };"                        \
    " mask_head = { type = \"FCNMaskHead\"; num_convs = 2; roi_feat_size = 6; in_channels = " out_ch ";"          \
    " conv_out_channels = 4; num_classes = 3; };"

static const char roi_head_text[] =
    ROI_HEAD_CFG("4", "[4, 8]")
    " train_cfg = { assigner = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.5; neg_iou_thr = 0.5; min_pos_iou = 0.5;"
    " match_low_quality = true; ignore_iof_thr = -1.0; };"
    " sampler = { type = \"RandomSampler\"; num = 64; pos_fraction = 0.5; neg_pos_ub = -1; add_gt_as_proposals = true; };"
    " mask_size = 12; pos_weight = -1; debug = false; };"
    " test_cfg = { score_thr = 0.05; nms = { type = \"nms\"; iou_threshold = 0.5; }; max_per_img = 8;"
    " mask_thr_binary = 0.5; };";

/* The fixture's two images as a batch: metas, gt boxes, labels and
 * bitmap masks (no image: the RoI head reads only these). */
static md_batch *roi_batch(md_st *st) {
    md_batch *b = calloc(1, sizeof *b);
    cr_assert_not_null(b);
    b->n = 2;
    b->metas = calloc(2, sizeof *b->metas);
    b->gt_bboxes = calloc(2, sizeof *b->gt_bboxes);
    b->gt_masks = calloc(2, sizeof *b->gt_masks);
    static const int ori[2][2] = { { 36, 50 }, { 40, 60 } }, img[2][2] = { { 45, 62 }, { 40, 60 } };
    for (int i = 0; i < 2; i++) {
        char k[32];
        md_img_meta *mt = &b->metas[i];
        mt->ori_shape[0] = ori[i][0], mt->ori_shape[1] = ori[i][1], mt->ori_shape[2] = 3;
        mt->img_shape[0] = img[i][0], mt->img_shape[1] = img[i][1], mt->img_shape[2] = 3;
        mt->pad_shape[0] = 48, mt->pad_shape[1] = 64, mt->pad_shape[2] = 3;
        snprintf(k, sizeof k, "scale_factor%d", i);
        memcpy(mt->scale_factor, md_f32(md_contiguous(ctx, golden_get(ctx, st, k))), sizeof mt->scale_factor);
        snprintf(k, sizeof k, "gt_bboxes%d", i);
        md_tensor *g = md_contiguous(ctx, golden_get(ctx, st, k));
        snprintf(k, sizeof k, "gt_labels%d", i);
        md_tensor *l = md_contiguous(ctx, golden_get(ctx, st, k));
        cr_assert_eq(md_boxes_reserve(&b->gt_bboxes[i], (int)g->shape[0], true), 0);
        for (int64_t j = 0; j < g->shape[0]; j++)
            cr_assert_eq(md_boxes_push(&b->gt_bboxes[i], md_f32(g) + 4 * j, md_i64(l)[j]), 0);
        snprintf(k, sizeof k, "gt_masks%d", i);
        b->gt_masks[i] = masks_of(st, k);
    }
    return b;
}

static void roi_batch_free(md_batch *b) {
    for (int i = 0; i < b->n; i++) {
        md_boxes_free(&b->gt_bboxes[i]);
        md_masks_free(&b->gt_masks[i]);
    }
    free(b->gt_bboxes);
    free(b->gt_masks);
    free(b->metas);
    free(b);
}

Test(mask_head, roi_head_forward_train_and_simple_test) {
    md_st *st = golden_open("mask_roi_head");
    md_error err = { 0 };
    md_module *m = build("StandardRoIHead", roi_head_text, &err);
    cr_assert_not_null(m, "%s", err.msg);
    const md_roi_head_class *c = md_roi_head_class_of(m);
    cr_assert(c->with_mask && c->with_mask(m));
    md_load_report rep;
    cr_assert_eq(md_module_load_state(ctx, m, st, "w.", false, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.missing, 0, "missing %s", rep.text);
    md_batch *b = roi_batch(st);
    md_tensor *feats[2] = { golden_get(ctx, st, "feat0"), golden_get(ctx, st, "feat1") };
    md_tensor *props[2] = { golden_get(ctx, st, "proposals0"), golden_get(ctx, st, "proposals1") };

    md_losses losses = { 0 };
    cr_assert_eq(c->forward_train(ctx, m, feats, 2, b, props, md_ctx_rng(ctx), &losses, &err), 0, "%s", err.msg);
    static const char *names[] = { "loss_cls", "acc", "loss_bbox", "loss_mask" };
    cr_assert_eq(losses.n, 4);
    for (int i = 0; i < 4; i++) {
        char k[32];
        snprintf(k, sizeof k, "loss.%s", names[i]);
        cr_assert_str_eq(losses.names[i], names[i]);
        assert_close(losses.values[i], golden_get(ctx, st, k), 1e-5, names[i]);
    }
    cr_assert_eq(md_backward(ctx, md_losses_total(ctx, &losses), &err), 0, "%s", err.msg);
    static const char *params[] = { "bbox_head.fc_cls.weight", "mask_head.convs.0.conv.weight",
                                    "mask_head.conv_logits.weight" };
    for (int i = 0; i < 3; i++) {
        char k[64];
        snprintf(k, sizeof k, "g.%s", params[i]);
        md_tensor *p = md_module_find(m, params[i]);
        cr_assert(p && p->grad, "%s: no gradient", params[i]);
        assert_close(p->grad, golden_get(ctx, st, k), 1e-4, params[i]);
    }

    md_module_train(m, false);
    bool was = md_grad_set_enabled(ctx, false);
    md_tensor *dets[2], *labels[2];
    md_rle *masks[2];
    cr_assert_eq(c->simple_test(ctx, m, feats, 2, b, props, true, dets, labels, &err), 0, "%s", err.msg);
    cr_assert_eq(c->simple_test_mask(ctx, m, feats, 2, b, dets, labels, true, masks, &err), 0, "%s", err.msg);
    md_grad_set_enabled(ctx, was);
    for (int i = 0; i < 2; i++) {
        char pre[8];
        snprintf(pre, sizeof pre, "i%d_", i);
        md_tensor *d = md_contiguous(ctx, dets[i]);
        assert_by_class(st, pre, (int)d->shape[0], md_f32(d), md_i64(labels[i]), masks[i]);
    }

    /* aug_test of image 0 and its horizontal flip (features of its own),
     * proposals in the original image */
    md_batch one = *b, flipped = *b;
    md_img_meta fm = b->metas[0];
    fm.flip = true;
    fm.flip_direction = MD_FLIP_HORIZONTAL;
    one.n = flipped.n = 1;
    flipped.metas = &fm;
    md_batch *augs[2] = { &one, &flipped };
    one.n_augs = 2;
    one.augs = augs;
    md_tensor *f0[2] = { md_slice(ctx, feats[0], 0, 0, 1, 1), md_slice(ctx, feats[1], 0, 0, 1, 1) };
    md_tensor *f1[2] = { golden_get(ctx, st, "aug_feat0"), golden_get(ctx, st, "aug_feat1") };
    md_tensor *const *af[2] = { f0, f1 };
    md_tensor *ap[1] = { golden_get(ctx, st, "aug_proposals") };
    md_grad_set_enabled(ctx, false);
    cr_assert_eq(c->aug_test(ctx, m, af, 2, &one, ap, true, dets, labels, &err), 0, "%s", err.msg);
    cr_assert_eq(c->aug_test_mask(ctx, m, af, 2, &one, dets, labels, masks, &err), 0, "%s", err.msg);
    md_tensor *d0 = md_contiguous(ctx, dets[0]);
    assert_by_class(st, "aug_", (int)d0->shape[0], md_f32(d0), md_i64(labels[0]), masks[0]);
    md_grad_set_enabled(ctx, was);
    roi_batch_free(b);
    md_module_free(m);
    md_st_close(st);
}

Test(mask_head, roi_head_needs_gt_masks) {
    md_st *st = golden_open("mask_roi_head");
    md_error err = { 0 };
    md_module *m = build("StandardRoIHead", roi_head_text, &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_batch *b = roi_batch(st);
    md_masks *gm = b->gt_masks;
    b->gt_masks = NULL;
    md_tensor *feats[2] = { golden_get(ctx, st, "feat0"), golden_get(ctx, st, "feat1") };
    md_tensor *props[2] = { golden_get(ctx, st, "proposals0"), golden_get(ctx, st, "proposals1") };
    md_losses losses = { 0 };
    cr_assert_eq(md_roi_head_class_of(m)->forward_train(ctx, m, feats, 2, b, props, md_ctx_rng(ctx), &losses, &err),
                 -1);
    cr_assert(strstr(err.msg, "gt_masks") && strstr(err.msg, "with_mask"), "%s", err.msg);
    b->gt_masks = gm;
    roi_batch_free(b);
    md_module_free(m);
    md_st_close(st);
}

/* share_roi_extractor: without a mask_roi_extractor mmdet takes the
 * positives' rows of the bbox features; the same loss as a head whose
 * mask_roi_extractor repeats the bbox one, with the same weights. */
static int copy_cb(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)is_param;
    md_tensor *d = md_module_find(user, name);
    cr_assert(d && md_tensor_numel(d) == md_tensor_numel(t) && t->dtype == MD_F32, "%s", name);
    memcpy(md_f32(d), md_f32(md_contiguous(ctx, t)), sizeof(float) * (size_t)md_tensor_numel(t));
    return 0;
}

Test(mask_head, shared_roi_extractor_is_the_bbox_one) {
    md_st *st = golden_open("mask_roi_head");
    static const char train[] =
        " train_cfg = { assigner = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.5; neg_iou_thr = 0.5; min_pos_iou = 0.5; };"
        " sampler = { type = \"RandomSampler\"; num = 64; pos_fraction = 0.5; }; mask_size = 6; };";
    static const char parts[] =
        "bbox_roi_extractor = { type = \"SingleRoIExtractor\"; roi_layer = { type = \"RoIAlign\"; output_size = 3;"
        " sampling_ratio = 0; }; out_channels = 4; featmap_strides = [4, 8]; };"
        " bbox_head = { type = \"Shared2FCBBoxHead\"; in_channels = 4; fc_out_channels = 8; roi_feat_size = 3;"
        " num_classes = 3; };"
        " mask_head = { type = \"FCNMaskHead\"; num_convs = 1; roi_feat_size = 3; in_channels = 4;"
        " conv_out_channels = 4; num_classes = 3; };";
    char a_text[2048], b_text[2048];
    snprintf(a_text, sizeof a_text, "%s%s", parts, train);
    snprintf(b_text, sizeof b_text, "%s mask_roi_extractor = { type = \"SingleRoIExtractor\"; roi_layer = {"
             " type = \"RoIAlign\"; output_size = 3; sampling_ratio = 0; }; out_channels = 4; featmap_strides = [4, 8]; };%s",
             parts, train);
    md_error err = { 0 };
    md_module *a = build("StandardRoIHead", a_text, &err), *b = a ? build("StandardRoIHead", b_text, &err) : NULL;
    cr_assert(a && b, "%s", err.msg);
    cr_assert(((md_roi_head_base *)a)->share_roi_extractor && !((md_roi_head_base *)b)->share_roi_extractor);
    cr_assert_null(md_module_child(a, "mask_roi_extractor"));
    cr_assert_not_null(md_module_child(b, "mask_roi_extractor"));
    cr_assert_eq(md_module_visit(a, "", copy_cb, b), 0);
    md_batch *bt = roi_batch(st);
    md_tensor *feats[2] = { golden_get(ctx, st, "feat0"), golden_get(ctx, st, "feat1") };
    md_tensor *props[2] = { golden_get(ctx, st, "proposals0"), golden_get(ctx, st, "proposals1") };
    md_losses la = { 0 }, lb = { 0 };
    cr_assert_eq(md_roi_head_class_of(a)->forward_train(ctx, a, feats, 2, bt, props, md_ctx_rng(ctx), &la, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(md_roi_head_class_of(b)->forward_train(ctx, b, feats, 2, bt, props, md_ctx_rng(ctx), &lb, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(la.n, 4);
    cr_assert_str_eq(la.names[3], "loss_mask");
    cr_assert_gt(md_f32(la.values[3])[0], 0.0f);
    for (int i = 0; i < 4; i++) assert_close(la.values[i], lb.values[i], 0, la.names[i]);
    roi_batch_free(bt);
    md_module_free(a);
    md_module_free(b);
    md_st_close(st);
}

/* Mask settings that cannot work are refused, naming the key. */
Test(mask_head, roi_head_bad_mask_settings_name_the_key) {
    md_st *st = golden_open("mask_roi_head");
    char text[4096];
    md_error err = { 0 };
    snprintf(text, sizeof text, "%s", roi_head_text);
    char *p = strstr(text, "mask_size = 12;");
    cr_assert_not_null(p);
    memcpy(p, "mask_size = 14;", 15);
    md_module *m = build("StandardRoIHead", text, &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_batch *b = roi_batch(st);
    md_tensor *feats[2] = { golden_get(ctx, st, "feat0"), golden_get(ctx, st, "feat1") };
    md_tensor *props[2] = { golden_get(ctx, st, "proposals0"), golden_get(ctx, st, "proposals1") };
    md_losses losses = { 0 };
    cr_assert_eq(md_roi_head_class_of(m)->forward_train(ctx, m, feats, 2, b, props, md_ctx_rng(ctx), &losses, &err),
                 -1);
    cr_assert(strstr(err.msg, "train_cfg.mask_size is 14") && strstr(err.msg, "12 x 12"), "%s", err.msg);
    roi_batch_free(b);
    md_module_free(m);
    err = (md_error){ 0 };
    cr_assert_null(build("StandardRoIHead", "bbox_roi_extractor = { type = \"SingleRoIExtractor\"; roi_layer = {"
                         " type = \"RoIAlign\"; output_size = 3; }; out_channels = 4; featmap_strides = [4]; };"
                         " bbox_head = { type = \"Shared2FCBBoxHead\"; in_channels = 4; roi_feat_size = 3; };"
                         " mask_head = { type = \"Shared2FCBBoxHead\"; };", &err));
    cr_assert(strstr(err.msg, "mask_head") && strstr(err.msg, "not a mask head"), "%s", err.msg);
    md_st_close(st);
}

/* ---- MaskRCNN: a state dict saved by mmdet, loaded by name ---- */
static int cmp_cb(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)is_param;
    md_st *want = user;
    if (strncmp(name, "roi_head.mask_head.", 19) != 0) return 0;
    cr_assert_geq(md_st_find(want, name), 0, "%s: not in the reference", name);
    assert_close(t, golden_get(ctx, want, name), 0, name);
    return 0;
}

/* A dataset of one ready image (f32 CHW and its meta), to run the model
 * through md_single_gpu_test. */
typedef struct one_image { md_dataset base; const float *chw; int c, h, w; md_img_meta meta; } one_image;
static int64_t one_len(const md_dataset *ds) { (void)ds; return 1; }
static int one_get(const md_dataset *ds, int64_t idx, md_rng *rng, md_sample *out, md_error *err) {
    const one_image *d = (const one_image *)ds;
    (void)rng;
    md_sample_init(out);
    size_t n = (size_t)d->c * (size_t)d->h * (size_t)d->w;
    if (!(out->img_f32 = malloc(sizeof(float) * n))) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    memcpy(out->img_f32, d->chw, sizeof(float) * n);
    out->c = d->c, out->h = d->h, out->w = d->w;
    out->meta = d->meta;
    out->index = idx;
    return 0;
}
static const md_dataset_iface one_iface = { .len = one_len, .get = one_get };

/* The tiny MaskRCNN of the fixture; `train` adds mmdet's train_cfg. */
static md_module *tiny_mask_rcnn(bool train) {
    char text[8192];
    snprintf(text, sizeof text,
             "model = { type = \"MaskRCNN\";"
             " backbone = { type = \"ResNet\"; depth = 18; base_channels = 1; num_stages = 4; out_indices = [0, 1, 2, 3];"
             " frozen_stages = 1; norm_cfg = { type = \"BN\"; requires_grad = true; }; norm_eval = true; style = \"pytorch\"; };"
             " neck = { type = \"FPN\"; in_channels = [1, 2, 4, 8]; out_channels = 8; num_outs = 5; };"
             " rpn_head = { type = \"RPNHead\"; in_channels = 8; feat_channels = 8;"
             " anchor_generator = { type = \"AnchorGenerator\"; scales = [8]; ratios = [0.5, 1.0, 2.0]; strides = [4, 8, 16, 32, 64]; };"
             " bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0]; target_stds = [1.0, 1.0, 1.0, 1.0]; };"
             " loss_cls = { type = \"CrossEntropyLoss\"; use_sigmoid = true; loss_weight = 1.0; };"
             " loss_bbox = { type = \"L1Loss\"; loss_weight = 1.0; }; };"
             " roi_head = { type = \"StandardRoIHead\"; %s };"
             " test_cfg = { rpn = { nms_pre = 200; max_per_img = 60; nms = { type = \"nms\"; iou_threshold = 0.7; };"
             " min_bbox_size = 0; }; rcnn = { score_thr = 0.05; nms = { type = \"nms\"; iou_threshold = 0.5; };"
             " max_per_img = 4; mask_thr_binary = 0.5; }; };"
             "%s };",
             ROI_HEAD_CFG("8", "[4, 8, 16, 32]"),
             !train ? "" :
             " train_cfg = { rpn = { assigner = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.7; neg_iou_thr = 0.3;"
             " min_pos_iou = 0.3; match_low_quality = true; ignore_iof_thr = -1.0; };"
             " sampler = { type = \"RandomSampler\"; num = 256; pos_fraction = 0.5; neg_pos_ub = -1;"
             " add_gt_as_proposals = false; }; allowed_border = -1; pos_weight = -1; debug = false; };"
             " rpn_proposal = { nms_pre = 200; max_per_img = 60; nms = { type = \"nms\"; iou_threshold = 0.7; };"
             " min_bbox_size = 0; };"
             " rcnn = { assigner = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.5; neg_iou_thr = 0.5; min_pos_iou = 0.5;"
             " match_low_quality = true; ignore_iof_thr = -1.0; };"
             " sampler = { type = \"RandomSampler\"; num = 64; pos_fraction = 0.25; neg_pos_ub = -1;"
             " add_gt_as_proposals = true; }; mask_size = 12; pos_weight = -1; debug = false; }; };");
    md_cfg *root = md_cfg_parse(text, "mask_rcnn_tiny.cfg", &(md_error){ 0 });
    cr_assert_not_null(root);
    md_error err = { 0 };
    md_module *m = md_build_from_cfg(ctx, "detectors", md_cfg_get(root, "model"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(m, "%s", err.msg);
    return m;
}

/* MaskRCNN's train_step hands the batch's gt_masks to the RoI head: a
 * loss_mask whose gradient reaches the mask head; a batch without masks is
 * refused naming them. */
Test(mask_head, mask_rcnn_train_step_uses_the_gt_masks) {
    md_module *m = tiny_mask_rcnn(true);
    md_st *st = golden_open("mask_roi_head");
    md_batch *b = roi_batch(st);
    md_error err = { 0 };
    b->img = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(2, 3, 48, 64), &err);
    cr_assert_not_null(b->img, "%s", err.msg);
    md_rng r;
    md_rng_seed(&r, 3);
    for (int64_t i = 0; i < md_tensor_numel(b->img); i++) md_f32(b->img)[i] = (float)md_rng_normal(&r);
    const md_model_iface *it = (const md_model_iface *)m->cls->iface;
    md_losses losses = { 0 };
    cr_assert_eq(it->train_step(ctx, m, b, &losses, &err), 0, "%s", err.msg);
    int k = -1;
    for (int i = 0; i < losses.n; i++)
        if (!strcmp(losses.names[i], "loss_mask")) k = i;
    cr_assert_geq(k, 0, "no loss_mask among %d losses", losses.n);
    cr_assert(isfinite(md_f32(losses.values[k])[0]) && md_f32(losses.values[k])[0] > 0);
    cr_assert_eq(md_backward(ctx, md_losses_total(ctx, &losses), &err), 0, "%s", err.msg);
    md_tensor *w = md_module_find(m, "roi_head.mask_head.conv_logits.weight");
    cr_assert(w && w->grad, "no gradient on the mask head");
    double g = 0;
    for (int64_t i = 0; i < md_tensor_numel(w); i++) g += fabs(md_f32(w->grad)[i]);
    cr_assert_gt(g, 0);
    md_masks *gm = b->gt_masks;
    b->gt_masks = NULL;
    md_losses l2 = { 0 };
    cr_assert_eq(it->train_step(ctx, m, b, &l2, &err), -1);
    cr_assert(strstr(err.msg, "roi_head") && strstr(err.msg, "gt_masks"), "%s", err.msg);
    b->gt_masks = gm;
    md_tensor_free(b->img);
    roi_batch_free(b);
    md_st_close(st);
    md_module_free(m);
}

Test(mask_head, mask_rcnn_loads_mmdets_state_dict) {
    md_module *m = tiny_mask_rcnn(false);
    md_error err = { 0 };
    md_ckpt_info info;
    cr_assert_eq(md_checkpoint_load(ctx, "tests/fixtures/mask_rcnn_tiny.pth", m, NULL, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(info.report.missing, 0, "%s", info.report.text);
    cr_assert_eq(info.report.unexpected, 0, "%s", info.report.text);
    md_st *want = golden_open("mask_rcnn_tiny");
    cr_assert_eq(md_module_visit(m, "", cmp_cb, want), 0);

    /* simple_test(rescale) of one image in eval mode: detections and masks
     * in the original image (60 x 80) */
    md_batch b;
    md_img_meta meta;
    memset(&b, 0, sizeof b);
    memset(&meta, 0, sizeof meta);
    md_tensor *img = golden_get(ctx, want, "img");
    b.img = md_tensor_new_persistent(ctx, MD_F32, img->ndim, img->shape, &err);
    cr_assert_not_null(b.img, "%s", err.msg);
    memcpy(md_f32(b.img), md_f32(md_contiguous(ctx, img)), sizeof(float) * (size_t)md_tensor_numel(img));
    meta = (md_img_meta){ .ori_shape = { 60, 80, 3 }, .img_shape = { 45, 60, 3 }, .pad_shape = { 48, 64, 3 },
                          .scale_factor = { 0.75f, 0.75f, 0.75f, 0.75f } };
    b.n = 1;
    b.metas = &meta;
    md_module_train(m, false);
    const md_model_iface *it = md_model_test_iface(m);
    md_det_result res;
    cr_assert_eq(it->simple_test(ctx, m, &b, &res, &err), 0, "%s", err.msg);
    cr_assert_not_null(res.masks, "MaskRCNN returned no masks");
    assert_by_class(want, "", res.n, res.bboxes, res.labels, res.masks);

    /* the same through single_gpu_test: the results own copies of the masks */
    one_image ds = { .base = { .iface = &one_iface, .type = "OneImage" }, .chw = md_f32(b.img), .c = 3, .h = 48,
                     .w = 64, .meta = meta };
    md_loader_cfg lc = MD_LOADER_CFG_DEFAULT;
    lc.samples_per_gpu = 1;
    lc.workers_per_gpu = 0;
    lc.shuffle = false;
    md_loader *loader = md_loader_new(&ds.base, &lc, &err);
    cr_assert_not_null(loader, "%s", err.msg);
    md_results rs;
    cr_assert_eq(md_single_gpu_test(ctx, m, loader, &ds.base, false, &rs, &err), 0, "%s", err.msg);
    cr_assert_eq(rs.n, 1);
    cr_assert_not_null(rs.r[0].masks);
    assert_by_class(want, "", rs.r[0].n, rs.r[0].bboxes, rs.r[0].labels, rs.r[0].masks);
    md_results_free(&rs);
    md_loader_free(loader);
    md_tensor_free(b.img);
    md_st_close(want);
    md_module_free(m);
}

/* Soft masks (mask_thr_binary < 0) against mmdet 2.28.2's get_seg_masks
 * (tests/golden/soft_masks_golden.py): md_mask_paste gives its u8 values
 * (probability * 255, truncated) pixel for pixel, and get_seg_masks' RLEs
 * hold their nonzero pixels, with rescale and without. */
static void check_soft(md_module *m, md_st *st, bool rescale, const char *key) {
    md_mask_head_base *h = (md_mask_head_base *)m;
    md_tensor *logits = md_contiguous(ctx, golden_get(ctx, st, "logits"));
    md_tensor *dets = md_contiguous(ctx, golden_get(ctx, st, "det_bboxes"));
    md_tensor *labels = md_contiguous(ctx, golden_get(ctx, st, "det_labels"));
    md_tensor *ref = md_contiguous(ctx, golden_get(ctx, st, key));
    float sf[4];
    memcpy(sf, md_f32(md_contiguous(ctx, golden_get(ctx, st, "scale_factor"))), sizeof sf);
    int64_t D = dets->shape[0], C = logits->shape[1], M = logits->shape[2], H = ref->shape[1], W = ref->shape[2];
    md_tensor *boxes = md_tensor_empty(ctx, MD_F32, MD_DIMS(D, 4));
    for (int64_t i = 0; i < D; i++)
        for (int q = 0; q < 4; q++) md_f32(boxes)[4 * i + q] = md_f32(dets)[5 * i + q] * (rescale ? sf[q] : 1.0f);
    md_tensor *prob = md_contiguous(ctx, md_sigmoid(ctx, logits));
    uint8_t *im = malloc((size_t)(H * W));
    cr_assert_not_null(im);
    int64_t grey = 0;
    for (int64_t i = 0; i < D; i++) {
        float box[4];
        for (int q = 0; q < 4; q++) box[q] = md_f32(boxes)[4 * i + q] / (rescale ? sf[q] : 1.0f);
        md_mask_paste(md_f32(prob) + (i * C + md_i64(labels)[i]) * M * M, (int)M, (int)M, box, (int)H, (int)W, -1.0f, im);
        int64_t diff = 0;
        for (int64_t p = 0; p < H * W; p++) {
            diff += im[p] != md_u8(ref)[i * H * W + p];
            grey += im[p] > 0 && im[p] < 255;
        }
        cr_assert_eq(diff, 0, "%s %lld: %lld soft values differ from mmdet's", key, (long long)i, (long long)diff);
    }
    cr_assert_gt(grey, 100, "%s: the soft masks should have values between 0 and 255", key);
    free(im);
    md_tensor *nonzero = md_tensor_empty(ctx, MD_U8, MD_DIMS(D, H, W));
    for (int64_t p = 0; p < D * H * W; p++) md_u8(nonzero)[p] = md_u8(ref)[p] != 0;
    md_rle rle[8];
    md_error err = { 0 };
    int ori[2] = { 30, 40 };
    cr_assert_eq(h->cls->head.get_seg_masks(ctx, m, logits, false, boxes, labels, -1.0, ori, sf, rescale, rle, &err), 0,
                 "%s", err.msg);
    assert_masks(rle, nonzero, key);
}

Test(mask_head, soft_masks_match_mmdet) {
    md_st *st = golden_open("soft_masks");
    md_error err = { 0 };
    md_module *m = build("FCNMaskHead", "num_convs = 1; in_channels = 4; conv_out_channels = 4; num_classes = 3;", &err);
    cr_assert_not_null(m, "%s", err.msg);
    check_soft(m, st, true, "soft_rescale");
    check_soft(m, st, false, "soft_test_scale");
    md_module_free(m);
    md_st_close(st);
}

/* The RoI head with mask_thr_binary -1: the same detections, and each
 * soft mask's RLE (its nonzero pixels: probability * 255 >= 1) contains
 * the mask mmdet binarises at 0.5 (the fixture's) and reaches further. */
Test(mask_head, roi_head_soft_masks_contain_the_binary_ones) {
    md_st *st = golden_open("mask_roi_head");
    char text[4096];
    snprintf(text, sizeof text, "%s", roi_head_text);
    char *p = strstr(text, "mask_thr_binary = 0.5;");
    cr_assert_not_null(p);
    memcpy(p, "mask_thr_binary =-1.0;", 22);
    md_error err = { 0 };
    md_module *m = build("StandardRoIHead", text, &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_load_report rep;
    cr_assert_eq(md_module_load_state(ctx, m, st, "w.", false, &rep, &err), 0, "%s", err.msg);
    const md_roi_head_class *c = md_roi_head_class_of(m);
    md_batch *b = roi_batch(st);
    md_tensor *feats[2] = { golden_get(ctx, st, "feat0"), golden_get(ctx, st, "feat1") };
    md_tensor *props[2] = { golden_get(ctx, st, "proposals0"), golden_get(ctx, st, "proposals1") };
    md_module_train(m, false);
    bool was = md_grad_set_enabled(ctx, false);
    md_tensor *dets[2], *labels[2];
    md_rle *masks[2];
    cr_assert_eq(c->simple_test(ctx, m, feats, 2, b, props, true, dets, labels, &err), 0, "%s", err.msg);
    cr_assert_eq(c->simple_test_mask(ctx, m, feats, 2, b, dets, labels, true, masks, &err), 0, "%s", err.msg);
    md_grad_set_enabled(ctx, was);
    int64_t extra = 0;
    for (int i = 0; i < 2; i++) {
        char k[32];
        snprintf(k, sizeof k, "i%d_det_masks", i);
        md_tensor *ref = md_contiguous(ctx, golden_get(ctx, st, k));   /* by class, as bbox2result */
        md_tensor *lab = md_contiguous(ctx, labels[i]);
        int64_t D = ref->shape[0], H = ref->shape[1], W = ref->shape[2];
        cr_assert_eq(dets[i]->shape[0], D);
        uint8_t *dec = malloc((size_t)(H * W));
        cr_assert_not_null(dec);
        int64_t j = 0;
        for (int64_t cl = 0; cl < 3; cl++)
            for (int64_t d = 0; d < D; d++) {
                if (md_i64(lab)[d] != cl) continue;
                cr_assert_eq(md_rle_decode(&masks[i][d], dec, &err), 0, "%s", err.msg);
                for (int64_t q = 0; q < H * W; q++) {
                    uint8_t r = md_u8(ref)[j * H * W + q];
                    cr_assert(!r || dec[q], "image %d detection %lld: pixel %lld in the 0.5 mask, not the soft one", i,
                              (long long)d, (long long)q);
                    extra += dec[q] && !r;
                }
                j++;
            }
        free(dec);
    }
    cr_assert_gt(extra, 0, "the soft masks should reach beyond the 0.5 ones");
    roi_batch_free(b);
    md_module_free(m);
    md_st_close(st);
}
