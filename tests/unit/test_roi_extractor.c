/* SingleRoIExtractor plugin: level mapping, pooled features and gradients
 * against mmdet's extractor written with torchvision's roi_align
 * (tests/golden/twostage_golden.py), the single-level path and config errors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/roi_head.h>
#include "testlib.h"

static md_ctx *ctx;
static md_st *gold;
static void setup(void) {
    ctx = test_ctx(0, (const char *const[]){ "plugins/heads/roi_extractor.so", NULL });
    gold = golden_open("twostage_extractor");
}
static void teardown(void) {
    md_st_close(gold);
    md_ctx_free(ctx);
}
TestSuite(roi_extractor, .init = setup, .fini = teardown);

static md_module *build(const char *text, md_error *err) {
    md_cfg *root = md_cfg_parse(text, "test_roi_extractor.cfg", err);
    if (!root) return NULL;
    md_module *m = md_build_from_cfg(ctx, "roi_extractors", md_cfg_get(root, "e"), NULL, err);
    md_cfg_free(root);
    return m;
}

static const char *mmdet_cfg =
    "e = { type = \"SingleRoIExtractor\"; roi_layer = { type = \"RoIAlign\"; output_size = 7; sampling_ratio = 0; };"
    " out_channels = 2; featmap_strides = [4, 8, 16, 32]; };";

Test(roi_extractor, matches_mmdet_levels_outputs_and_gradients) {
    md_error err = { 0 };
    md_module *m = build(mmdet_cfg, &err);
    cr_assert_not_null(m, "%s", err.msg);
    const md_roi_extractor_class *c = md_roi_extractor_class_of(m);
    cr_assert_eq(c->num_inputs(m), 4);
    cr_assert_eq(c->out_size(m), 7);
    md_tensor *feats[4];
    for (int i = 0; i < 4; i++) {
        char k[32];
        snprintf(k, sizeof k, "ext.feat%d", i);
        feats[i] = golden_get(ctx, gold, k);
        feats[i]->requires_grad = true;
    }
    md_tensor *rois = golden_get(ctx, gold, "ext.rois");
    md_tensor *y = c->forward(ctx, m, feats, 4, rois);
    cr_assert_not_null(y, "%s", md_ctx_error(ctx)->msg);
    assert_close(y, golden_get(ctx, gold, "ext.out"), 1e-5, "pooled features");
    md_tensor *loss = md_sum(ctx, md_mul(ctx, y, golden_get(ctx, gold, "ext.gout")), MD_DIM_ALL, false);
    cr_assert_eq(md_backward(ctx, loss, &err), 0, "%s", err.msg);
    for (int i = 0; i < 4; i++) {
        char k[32], what[48];
        snprintf(k, sizeof k, "ext.gfeat%d", i);
        snprintf(what, sizeof what, "gradient of level %d", i);
        cr_assert_not_null(feats[i]->grad, "%s: none", what);
        assert_close(feats[i]->grad, golden_get(ctx, gold, k), 1e-5, what);
    }
    md_module_free(m);
}

/* The level of each RoI, seen through which level's features it pools: a
 * RoI alone, pooled by the extractor, equals RoIAlign on mmdet's level. */
Test(roi_extractor, each_roi_pools_from_mmdets_level) {
    md_error err = { 0 };
    md_module *m = build(mmdet_cfg, &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_tensor *feats[4];
    for (int i = 0; i < 4; i++) {
        char k[32];
        snprintf(k, sizeof k, "ext.feat%d", i);
        feats[i] = golden_get(ctx, gold, k);
    }
    md_tensor *rois = golden_get(ctx, gold, "ext.rois");
    md_tensor *levels = golden_get(ctx, gold, "ext.levels");
    int seen[4] = { 0 };
    for (int64_t k = 0; k < rois->shape[0]; k++) {
        md_tensor *r = md_slice(ctx, rois, 0, k, k + 1, 1);
        int l = (int)md_i64(levels)[k];
        seen[l]++;
        md_tensor *y = md_roi_extractor_class_of(m)->forward(ctx, m, feats, 4, r);
        md_tensor *ref = md_roi_align(ctx, feats[l], r, 7, 7, 1.0 / (4 << l), 0, true);
        char what[48];
        snprintf(what, sizeof what, "RoI %lld on level %d", (long long)k, l);
        assert_close(y, ref, 1e-6, what);
    }
    for (int l = 0; l < 4; l++) cr_assert_gt(seen[l], 0, "the fixture has no RoI on level %d", l);
    md_module_free(m);
}

Test(roi_extractor, single_level_and_empty) {
    md_error err = { 0 };
    md_module *m = build("e = { type = \"SingleRoIExtractor\"; roi_layer = { type = \"RoIAlign\"; output_size = [7, 7]; };"
                         " out_channels = 2; featmap_strides = [4]; };", &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_tensor *f0 = golden_get(ctx, gold, "ext.feat0");
    md_tensor *y = md_roi_extractor_class_of(m)->forward(ctx, m, &f0, 1, golden_get(ctx, gold, "ext.rois"));
    assert_close(y, golden_get(ctx, gold, "ext.out_single"), 1e-5, "single level");
    md_module_free(m);

    m = build(mmdet_cfg, &err);
    md_tensor *feats[4];
    for (int i = 0; i < 4; i++) feats[i] = f0;
    y = md_roi_extractor_class_of(m)->forward(ctx, m, feats, 4, md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 5)));
    cr_assert_not_null(y, "%s", md_ctx_error(ctx)->msg);
    cr_assert(y->ndim == 4 && y->shape[0] == 0 && y->shape[1] == 2 && y->shape[2] == 7);
    /* too few levels, wrong channels: op errors naming the extractor */
    y = md_roi_extractor_class_of(m)->forward(ctx, m, feats, 3, golden_get(ctx, gold, "ext.rois"));
    cr_assert_null(y);
    cr_assert(strstr(md_ctx_error(ctx)->msg, "SingleRoIExtractor"), "%s", md_ctx_error(ctx)->msg);
    md_module_free(m);
}

Test(roi_extractor, config_errors) {
    md_error err = { 0 };
    cr_assert_null(build("e = { type = \"SingleRoIExtractor\"; roi_layer = { type = \"RoIPool\"; };"
                         " out_channels = 2; featmap_strides = [4]; };", &err));
    cr_assert(strstr(err.msg, "RoIPool"), "%s", err.msg);
    cr_assert_null(build("e = { type = \"SingleRoIExtractor\"; roi_layer = { type = \"RoIAlign\"; outputsize = 7; };"
                         " out_channels = 2; featmap_strides = [4]; };", &err));
    cr_assert(strstr(err.msg, "output_size"), "%s", err.msg);
    cr_assert_null(build("e = { type = \"SingleRoIExtractor\"; roi_layer = { type = \"RoIAlign\"; };"
                         " out_channels = 2; featmap_strides = [4, 0]; };", &err));
    cr_assert(strstr(err.msg, "featmap_strides[1]"), "%s", err.msg);
}
