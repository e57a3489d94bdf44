/* RetinaHead against mmdet's RetinaHead forward, loss and get_bboxes written
 * in PyTorch (tests/golden/retina_golden.py); the RetinaNet detector's
 * state dict names; and a tiny RetinaNet trained with bin/mmdet-run on a
 * generated shapes dataset, whose loss must fall. */
#include <criterion/criterion.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/bbox.h>
#include "testlib.h"

static md_ctx *ctx;
static md_st *gold;
static void setup(void) {
    ctx = test_ctx(5, (const char *const[]){ "plugins/bbox", "plugins/heads", "plugins/losses", NULL });
    gold = golden_open("retina");
}
static void teardown(void) {
    md_st_close(gold);
    md_ctx_free(ctx);
}
TestSuite(retina, .init = setup, .fini = teardown);

static const char *head_cfg =
    "h = { type = \"RetinaHead\"; num_classes = 3; in_channels = 4; stacked_convs = 2; feat_channels = 8;\n"
    "  anchor_generator = { type = \"AnchorGenerator\"; octave_base_scale = 4; scales_per_octave = 2;\n"
    "                       ratios = [0.5, 1.0, 2.0]; strides = [8, 16]; };\n"
    "  bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; };\n"
    "  loss_cls = { type = \"FocalLoss\"; use_sigmoid = true; gamma = 2.0; alpha = 0.25; loss_weight = 1.0; };\n"
    "  loss_bbox = { type = \"L1Loss\"; loss_weight = 1.0; };\n"
    "  train_cfg = { assigner = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.5; neg_iou_thr = 0.4;\n"
    "                             min_pos_iou = 0.0; ignore_iof_thr = 0.5; }; allowed_border = -1; pos_weight = -1; };\n"
    "  test_cfg = { nms_pre = 30; score_thr = 0.05; nms = { type = \"nms\"; iou_threshold = 0.5; }; max_per_img = 15; };\n"
    "};";

static md_module *build_head(void) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(head_cfg, "test_retina.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_module *m = md_build_from_cfg(ctx, "heads", md_cfg_get(root, "h"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(m, "%s", err.msg);
    return m;
}

/* The batch of retina_golden.py: metas and ground truth of two images. */
static float gt0[] = { 4, 6, 30, 40, 20, 2, 44, 20, 0, 30, 12, 48 }, gt1[] = { 10, 10, 60, 50, 30, 40, 46, 60 };
static int64_t lab0[] = { 0, 2, 1 }, lab1[] = { 1, 1 };
static float ign1[] = { 0, 0, 20, 20 };
static void make_batch(md_batch *b, md_img_meta *metas, md_boxes *gts, md_boxes *igns) {
    memset(b, 0, sizeof *b);
    memset(metas, 0, 2 * sizeof *metas);
    memset(gts, 0, 2 * sizeof *gts);
    memset(igns, 0, 2 * sizeof *igns);
    int pad[2][2] = { { 56, 48 }, { 64, 64 } }, img[2][2] = { { 50, 45 }, { 64, 60 } };
    float sf[2][4] = { { 0.5f, 0.5f, 0.5f, 0.5f }, { 0.8f, 0.75f, 0.8f, 0.75f } };
    for (int i = 0; i < 2; i++) {
        metas[i].pad_shape[0] = pad[i][0], metas[i].pad_shape[1] = pad[i][1], metas[i].pad_shape[2] = 3;
        metas[i].img_shape[0] = img[i][0], metas[i].img_shape[1] = img[i][1], metas[i].img_shape[2] = 3;
        memcpy(metas[i].scale_factor, sf[i], sizeof sf[i]);
    }
    gts[0] = (md_boxes){ 3, 3, gt0, lab0 };
    gts[1] = (md_boxes){ 2, 2, gt1, lab1 };
    igns[1] = (md_boxes){ 1, 1, ign1, NULL };
    b->n = 2;
    b->metas = metas;
    b->gt_bboxes = gts;
    b->gt_bboxes_ignore = igns;
}

Test(retina, forward_loss_and_grads) {
    md_module *m = build_head();
    md_load_report rep;
    md_error err = { 0 };
    cr_assert_eq(md_module_load_state(ctx, m, gold, "w.", false, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.missing, 0, "missing: %s", rep.text);
    cr_assert_eq(rep.loaded, 12, "%d weights loaded: %s", rep.loaded, rep.text);
    md_tensor *feats[2] = { golden_get(ctx, gold, "feat0"), golden_get(ctx, gold, "feat1") };
    feats[0]->requires_grad = feats[1]->requires_grad = true;
    md_tensor *cls[2], *reg[2];
    const md_dense_head_class *hc = md_dense_head_class_of(m);
    cr_assert_eq(hc->forward(ctx, m, feats, 2, cls, reg), 0, "%s", md_ctx_error(ctx)->msg);
    assert_close(cls[0], golden_get(ctx, gold, "cls0"), 1e-5, "cls_score level 0");
    assert_close(cls[1], golden_get(ctx, gold, "cls1"), 1e-5, "cls_score level 1");
    assert_close(reg[0], golden_get(ctx, gold, "reg0"), 1e-5, "bbox_pred level 0");
    assert_close(reg[1], golden_get(ctx, gold, "reg1"), 1e-5, "bbox_pred level 1");

    md_batch b;
    md_img_meta metas[2];
    md_boxes gts[2], igns[2];
    make_batch(&b, metas, gts, igns);
    md_losses losses = { 0 };
    cr_assert_eq(hc->loss(ctx, m, cls, reg, 2, &b, &losses, &err), 0, "%s", err.msg);
    cr_assert_eq(losses.n, 2);
    cr_assert_str_eq(losses.names[0], "loss_cls");
    cr_assert_str_eq(losses.names[1], "loss_bbox");
    assert_close(losses.values[0], golden_get(ctx, gold, "loss_cls"), 1e-5, "loss_cls");
    assert_close(losses.values[1], golden_get(ctx, gold, "loss_bbox"), 1e-5, "loss_bbox");
    md_tensor *total = md_losses_total(ctx, &losses);
    cr_assert_eq(md_backward(ctx, total, &err), 0, "%s", err.msg);
    assert_close(feats[0]->grad, golden_get(ctx, gold, "grad_feat0"), 1e-4, "d loss / d feat0");
    assert_close(feats[1]->grad, golden_get(ctx, gold, "grad_feat1"), 1e-4, "d loss / d feat1");
    static const char *params[] = { "retina_cls.weight", "retina_cls.bias", "retina_reg.weight",
                                    "cls_convs.0.conv.weight", "reg_convs.1.conv.bias" };
    for (int i = 0; i < 5; i++) {
        char key[96];
        snprintf(key, sizeof key, "grad.%s", params[i]);
        md_tensor *p = md_module_find(m, params[i]);
        cr_assert_not_null(p, "%s", params[i]);
        assert_close(p->grad, golden_get(ctx, gold, key), 1e-4, key);
    }
    md_module_free(m);
}

/* A norm_cfg and reg_decoded_bbox (retina_golden.py's norm_variant): the
 * head's outputs, losses and gradients against mmdet's semantics. */
static void norm_variant(const char *fixture, const char *norm, const char *loss, double loss_weight,
                         const char *mode) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(head_cfg, "test_retina.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_cfg *hc_cfg = md_cfg_get_mut(root, "h");
    md_cfg *nc = md_cfg_set_group(hc_cfg, "norm_cfg");
    md_cfg_set_str(nc, "type", norm);
    if (!strcmp(norm, "GN")) md_cfg_set_int(nc, "num_groups", 4);
    md_cfg_set_bool(nc, "requires_grad", true);
    md_cfg_set_bool(hc_cfg, "reg_decoded_bbox", true);
    md_cfg *lb = md_cfg_set_group(hc_cfg, "loss_bbox");
    md_cfg_set_str(lb, "type", loss);
    md_cfg_set_float(lb, "loss_weight", loss_weight);
    if (mode) md_cfg_set_str(lb, "mode", mode);
    md_module *m = md_build_from_cfg(ctx, "heads", hc_cfg, NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(m, "%s", err.msg);
    cr_assert_null(md_module_find(m, "cls_convs.0.conv.bias"), "a conv followed by a norm has no bias");

    md_st *g = golden_open(fixture);
    md_load_report rep;
    cr_assert_eq(md_module_load_state(ctx, m, g, "w.", false, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.missing, 0, "missing: %s", rep.text);
    int n_w = 0;
    for (int i = 0; i < md_st_count(g); i++) n_w += !strncmp(md_st_name(g, i), "w.", 2);
    cr_assert_eq(rep.loaded, n_w, "%d of %d weights loaded: %s", rep.loaded, n_w, rep.text);
    md_tensor *feats[2] = { golden_get(ctx, g, "feat0"), golden_get(ctx, g, "feat1") };
    feats[0]->requires_grad = feats[1]->requires_grad = true;
    md_tensor *cls[2], *reg[2];
    const md_dense_head_class *hc = md_dense_head_class_of(m);
    cr_assert_eq(hc->forward(ctx, m, feats, 2, cls, reg), 0, "%s", md_ctx_error(ctx)->msg);
    assert_close(cls[0], golden_get(ctx, g, "cls0"), 1e-5, "cls_score level 0");
    assert_close(cls[1], golden_get(ctx, g, "cls1"), 1e-5, "cls_score level 1");
    assert_close(reg[0], golden_get(ctx, g, "reg0"), 1e-5, "bbox_pred level 0");
    assert_close(reg[1], golden_get(ctx, g, "reg1"), 1e-5, "bbox_pred level 1");
    md_batch b;
    md_img_meta metas[2];
    md_boxes gts[2], igns[2];
    make_batch(&b, metas, gts, igns);
    md_losses losses = { 0 };
    cr_assert_eq(hc->loss(ctx, m, cls, reg, 2, &b, &losses, &err), 0, "%s", err.msg);
    assert_close(losses.values[0], golden_get(ctx, g, "loss_cls"), 1e-5, "loss_cls");
    assert_close(losses.values[1], golden_get(ctx, g, "loss_bbox"), 1e-5, "loss_bbox");
    cr_assert_eq(md_backward(ctx, md_losses_total(ctx, &losses), &err), 0, "%s", err.msg);
    assert_close(feats[0]->grad, golden_get(ctx, g, "grad_feat0"), 1e-4, "d loss / d feat0");
    assert_close(feats[1]->grad, golden_get(ctx, g, "grad_feat1"), 1e-4, "d loss / d feat1");
    /* every parameter's gradient */
    int n = 0;
    for (int i = 0; i < md_st_count(g); i++) {
        const char *k = md_st_name(g, i);
        if (strncmp(k, "grad.", 5)) continue;
        md_tensor *p = md_module_find(m, k + 5);
        cr_assert_not_null(p, "%s", k);
        cr_assert_not_null(p->grad, "%s: no gradient", k);
        assert_close(p->grad, golden_get(ctx, g, k), 1e-4, k);
        n++;
    }
    cr_assert_eq(n, 16, "%d parameter gradients in %s", n, fixture);
    md_st_close(g);
    md_module_free(m);
}

Test(retina, gn_head_giou_decoded) { norm_variant("retina_gn_giou", "GN", "GIoULoss", 2.0, NULL); }

Test(retina, bn_head_iou_linear_decoded) { norm_variant("retina_bn_iou", "BN", "IoULoss", 1.0, "linear"); }

Test(retina, get_bboxes) {
    md_module *m = build_head();
    md_error err = { 0 };
    cr_assert_eq(md_module_load_state(ctx, m, gold, "w.", false, NULL, &err), 0, "%s", err.msg);
    md_tensor *feats[2] = { golden_get(ctx, gold, "feat0"), golden_get(ctx, gold, "feat1") };
    md_tensor *cls[2], *reg[2];
    md_grad_set_enabled(ctx, false);
    const md_dense_head_class *hc = md_dense_head_class_of(m);
    cr_assert_eq(hc->forward(ctx, m, feats, 2, cls, reg), 0, "%s", md_ctx_error(ctx)->msg);
    md_batch b;
    md_img_meta metas[2];
    md_boxes gts[2], igns[2];
    make_batch(&b, metas, gts, igns);
    md_det_result res[2];
    cr_assert_eq(hc->get_bboxes(ctx, m, cls, reg, 2, &b, NULL, true, true, res, &err), 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        char key[32];
        snprintf(key, sizeof key, "det%d.bboxes", i);
        md_tensor *ref = golden_get(ctx, gold, key);
        cr_assert_eq(res[i].n, ref->shape[0], "image %d: %d detections, mmdet %lld", i, res[i].n, (long long)ref->shape[0]);
        md_tensor *got = md_tensor_from(ctx, MD_F32, MD_DIMS(res[i].n, 5), res[i].bboxes);
        assert_close(got, ref, 1e-5, key);
        snprintf(key, sizeof key, "det%d.labels", i);
        assert_equal(md_tensor_from(ctx, MD_I64, MD_DIMS(res[i].n), res[i].labels), golden_get(ctx, gold, key), key);
    }
    md_module_free(m);
}

Test(retina, config_errors) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(head_cfg, "test_retina.cfg", &err);
    /* losses come from the registry: their own keys are checked there */
    md_cfg_apply_option(root, "h.loss_cls.type=CrossEntropyLoss", &err);
    cr_assert_null(md_build_from_cfg(ctx, "heads", md_cfg_get(root, "h"), NULL, &err));
    cr_assert(strstr(err.msg, "loss_cls") && strstr(err.msg, "'gamma'") && strstr(err.msg, "CrossEntropyLoss"), "%s",
              err.msg);
    md_cfg_free(root);
    root = md_cfg_parse(head_cfg, "test_retina.cfg", &err);
    md_cfg_apply_option(root, "h.anchor_generator.type=AnchorGenrator", &err);
    md_error_clear(&err);
    cr_assert_null(md_build_from_cfg(ctx, "heads", md_cfg_get(root, "h"), NULL, &err));
    cr_assert(strstr(err.msg, "anchor_generator") && strstr(err.msg, "AnchorGenerator"), "%s", err.msg);
    md_cfg_free(root);
    /* a box-overlap loss needs decoded boxes; norm_cfg is checked */
    root = md_cfg_parse(head_cfg, "test_retina.cfg", &err);
    md_cfg_apply_option(root, "h.loss_bbox.type=GIoULoss", &err);
    md_error_clear(&err);
    cr_assert_null(md_build_from_cfg(ctx, "heads", md_cfg_get(root, "h"), NULL, &err));
    cr_assert(strstr(err.msg, "reg_decoded_bbox"), "%s", err.msg);
    md_cfg_free(root);
    root = md_cfg_parse(head_cfg, "test_retina.cfg", &err);
    md_cfg *nc = md_cfg_set_group(md_cfg_get_mut(root, "h"), "norm_cfg");
    md_cfg_set_str(nc, "type", "GN");
    md_cfg_set_int(nc, "num_groups", 3);
    md_error_clear(&err);
    cr_assert_null(md_build_from_cfg(ctx, "heads", md_cfg_get(root, "h"), NULL, &err));
    cr_assert(strstr(err.msg, "num_groups=3"), "%s", err.msg);
    md_cfg_free(root);
}

/* ---- the RetinaNet detector: mmdet's state dict names ---- */
static int collect(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)t;
    (void)is_param;
    char *buf = user;
    strncat(buf, name, 65536 - strlen(buf) - 2);
    strcat(buf, "\n");
    return 0;
}

Test(retina, detector_state_names) {
    md_error err = { 0 };
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/backbones", &err), 0, "%s", err.msg);
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/necks", &err), 0, "%s", err.msg);
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/detectors", &err), 0, "%s", err.msg);
    md_cfg *cfg = md_cfg_load("tests/configs/retinanet_tiny.cfg", &err);
    cr_assert_not_null(cfg, "%s", err.msg);
    md_module *m = md_build_from_cfg(ctx, "detectors", md_cfg_get(cfg, "model"), NULL, &err);
    cr_assert_not_null(m, "%s", err.msg);
    static char names[65536];
    names[0] = 0;
    md_module_visit(m, "", collect, names);
    static const char *want[] = { "backbone.conv1.weight\n", "backbone.layer1.0.conv1.weight\n",
                                  "neck.lateral_convs.0.conv.weight\n", "neck.fpn_convs.2.conv.bias\n",
                                  "bbox_head.cls_convs.0.conv.weight\n", "bbox_head.reg_convs.0.conv.bias\n",
                                  "bbox_head.retina_cls.weight\n", "bbox_head.retina_reg.bias\n" };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) cr_assert(strstr(names, want[i]), "no %s", want[i]);
    /* prior-probability bias init of retina_cls, normal(0, 0.01) weights */
    md_tensor *bias = md_module_find(m, "bbox_head.retina_cls.bias");
    cr_assert_float_eq(md_f32(bias)[0], -log(0.99 / 0.01), 1e-5);
    md_tensor *wt = md_module_find(m, "bbox_head.retina_cls.weight");
    double ss = 0;
    for (int64_t i = 0; i < md_tensor_numel(wt); i++) ss += md_f32(wt)[i] * (double)md_f32(wt)[i];
    double sd = sqrt(ss / (double)md_tensor_numel(wt));
    cr_assert(sd > 0.008 && sd < 0.012, "retina_cls weight std %g, want 0.01", sd);
    /* simple_test on a blank batch gives well-formed results */
    const md_model_iface *iface = m->cls->iface;
    md_batch b;
    md_img_meta metas[2];
    md_boxes gts[2], igns[2];
    make_batch(&b, metas, gts, igns);
    b.img = md_tensor_zeros(ctx, MD_F32, MD_DIMS(2, 3, 64, 64));
    md_module_train(m, false);
    md_grad_set_enabled(ctx, false);
    md_det_result res[2];
    cr_assert_eq(iface->simple_test(ctx, m, &b, res, &err), 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        cr_assert(res[i].n >= 0 && res[i].n <= 100);
        for (int j = 0; j < res[i].n; j++) cr_assert(res[i].labels[j] >= 0 && res[i].labels[j] < 3);
    }
    md_module_free(m);
    md_cfg_free(cfg);
}

/* ---- end to end ---- */
static char dir[64];
static void e2e_setup(void) {
    test_tmpdir(dir, sizeof dir, "mmdet_retina");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s/data --train 8 --val 8 --seed 1 --classes 3 >/dev/null", dir);
    cr_assert_eq(system(cmd), 0, "mmdet-shapes failed");
}
static void e2e_teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(retina_e2e, .init = e2e_setup, .fini = e2e_teardown, .timeout = 240);

Test(retina_e2e, loss_falls) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-run --plugin-dir plugins tests/configs/retinanet_tiny.cfg --work-dir %s/train --seed 0 "
             "--cfg-options data.train.data_root=%s/data/ runner.max_epochs=16 >%s/out.txt 2>&1", dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "mmdet-run failed (see %s/out.txt)", dir);
    char pattern[256];
    snprintf(pattern, sizeof pattern, "%s/train/*.log.json", dir);
    glob_t g;
    cr_assert_eq(glob(pattern, 0, NULL, &g), 0, "no JSON log");
    FILE *fp = fopen(g.gl_pathv[0], "r");
    globfree(&g);
    cr_assert_not_null(fp);
    double loss[64];
    int n = 0;
    char line[4096];
    while (n < 64 && fgets(line, sizeof line, fp)) {
        char *l = strstr(line, "\"loss\": ");
        if (strstr(line, "\"mode\": \"train\"") && l) loss[n++] = atof(l + 8);
    }
    fclose(fp);
    cr_assert(n >= 32 && n % 16 == 0, "%d training iterations logged, want 16 equal epochs", n);
    /* first epoch against the last: 8 images seen 16 times, so the loss
     * falls steadily rather than with the noise of new images */
    int per = n / 16;
    double first = 0, last = 0;
    for (int i = 0; i < per; i++) {
        cr_assert(isfinite(loss[i]) && isfinite(loss[n - 1 - i]));
        first += loss[i] / per;
        last += loss[n - 1 - i] / per;
    }
    cr_assert(last < 0.85 * first, "loss did not fall: first epoch %.4f, last %.4f", first, last);
}
