/* FLOPs counting (flops.h) and bin/mmdet-get-flops against mmcv's
 * get_model_complexity_info: tests/golden/flops_golden.py ran mmdet 2.28's
 * get_flops path on the models of the shapes RetinaNet, Faster R-CNN and
 * Mask R-CNN configs (and the Faster R-CNN with stage 1 frozen) at
 * --shape 100 130;
 * the tool must give every module mmcv counts the same FLOPs and
 * parameters, as integers. The layer counts are also checked by hand. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "testlib.h"

/* ------------------------------------------------ the counter by hand -- */

Test(flops, layers_count_as_mmcv_hooks_by_hand) {
    md_ctx *ctx = test_ctx(0, NULL);
    md_error err = { 0 };
    md_flops *f = md_flops_new(&err);
    cr_assert(f);
    md_module *conv = md_nn_conv2d(ctx, 4, 8, 3, 3, MD_CONV2D(1, 1), true, &err);
    md_module *grouped = md_nn_conv2d(ctx, 4, 8, 3, 3, (md_conv2d_params){ 2, 2, 1, 1, 1, 1, 2 }, false, &err);
    md_module *bn = md_nn_batchnorm2d(ctx, 8, 1e-5, 0.1, true, &err);
    md_module *fc = md_nn_linear(ctx, 10, 5, true, &err);
    cr_assert(conv && grouped && bn && fc, "%s", err.msg);
    md_module_train(bn, false);
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 4, 5, 6));
    md_tensor *v = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 10));

    md_module_forward(ctx, conv, x);   /* off: nothing recorded */
    cr_expect_eq(md_flops_count(f), 0);
    md_flops_attach(ctx, f);
    cr_expect(md_flops_on(ctx));
    md_scope_push(ctx, "a");
    md_tensor *y = md_module_forward(ctx, conv, x);
    md_module_forward(ctx, conv, x);                  /* a second call adds */
    md_scope_pop(ctx);
    md_scope_push(ctx, "g");
    md_module_forward(ctx, grouped, x);
    md_scope_pop(ctx);
    md_scope_push(ctx, "bn");
    md_module_forward(ctx, bn, y);
    md_scope_pop(ctx);
    md_scope_push(ctx, "fc");
    md_module_forward(ctx, fc, v);
    md_flops_relu(ctx, "relu", v);                    /* a layer that is no module */
    md_scope_pop(ctx);
    md_flops_attach(ctx, NULL);
    md_module_forward(ctx, fc, v);
    cr_assert(!md_ctx_failed(ctx), "%s", md_ctx_error(ctx)->msg);

    /* conv: 30 positions x 3 x 3 x 4 x 8, + 30 x 8 for the bias, twice;
     * grouped (stride 2: 3 x 3 positions): 9 x 9 x 4 x 8 / 2, no bias;
     * BN: 240 elements x 2; Linear: 30 inputs x 5; ReLU: 30 outputs */
    const struct { const char *path, *type; int64_t flops; } want[] = {
        { "a", "Conv2d", 2 * (30 * 9 * 4 * 8 + 30 * 8) }, { "g", "Conv2d", 9 * 9 * 4 * 8 / 2 },
        { "bn", "BatchNorm2d", 480 }, { "fc", "Linear", 150 }, { "fc.relu", "ReLU", 30 } };
    cr_assert_eq(md_flops_count(f), 5);
    for (int i = 0; i < 5; i++) {
        const md_flops_entry *e = md_flops_get(f, i);
        cr_expect_str_eq(e->path, want[i].path);
        cr_expect_str_eq(e->type, want[i].type);
        cr_expect_eq(e->flops, want[i].flops, "%s: %lld, want %lld", e->path, (long long)e->flops,
                     (long long)want[i].flops);
    }
    cr_expect_eq(md_flops_total(f, "fc"), 180);
    cr_expect_eq(md_flops_total(f, ""), 2 * 8880 + 1296 + 480 + 180);
    md_flops_free(f);
    md_module_free(conv);
    md_module_free(grouped);
    md_module_free(bn);
    md_module_free(fc);
    md_ctx_free(ctx);
}

/* ConvModule with BN and ReLU, in eval mode: the fused pass counts the
 * conv, the norm and mmcv's `activate` as the layers would. */
Test(flops, fused_conv_module_counts_its_layers) {
    md_ctx *ctx = test_ctx(0, NULL);
    md_error err = { 0 };
    md_conv_module_opts o = { .in = 3, .out = 4, .kernel = 3, .stride = 1, .padding = 1, .norm = true,
                              .norm_requires_grad = true, .act = true, .bias = -1 };
    md_module *cm = md_nn_conv_module(ctx, &o, &err);
    cr_assert(cm, "%s", err.msg);
    md_module_train(cm, false);
    md_grad_set_enabled(ctx, false);
    md_flops *f = md_flops_new(&err);
    md_flops_attach(ctx, f);
    md_scope_push(ctx, "m");
    md_module_forward(ctx, cm, md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 3, 4, 4)));
    md_scope_pop(ctx);
    md_flops_attach(ctx, NULL);
    cr_assert_eq(md_flops_count(f), 3);
    cr_expect_str_eq(md_flops_get(f, 0)->path, "m.conv");
    cr_expect_eq(md_flops_get(f, 0)->flops, 16 * 9 * 3 * 4);   /* no bias with a norm */
    cr_expect_str_eq(md_flops_get(f, 1)->path, "m.bn");
    cr_expect_eq(md_flops_get(f, 1)->flops, 2 * 64);
    cr_expect_str_eq(md_flops_get(f, 2)->path, "m.activate");
    cr_expect_eq(md_flops_get(f, 2)->flops, 64);
    char extra[256];
    cr_expect(md_nn_describe(md_module_child(cm, "conv"), extra, sizeof extra));
    cr_expect_str_eq(extra, "3, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False");
    cr_expect(md_nn_describe(md_module_child(cm, "bn"), extra, sizeof extra));
    cr_expect_str_eq(extra, "4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True");
    cr_expect(!md_nn_describe(cm, extra, sizeof extra));
    md_flops_free(f);
    md_module_free(cm);
    md_ctx_free(ctx);
}

/* ------------------------------------------ the tool against the golden -- */

typedef struct row { char path[160]; long long flops, params; } row;

static char *run(const char *config, const char *extra, char *out, size_t n) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bin/mmdet-get-flops %s --plugin-dir plugins --shape 100 130 --exact %s 2>&1", config,
             extra);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run %s", cmd);
    size_t k = fread(out, 1, n - 1, p);
    out[k] = 0;
    int rc = pclose(p);
    cr_assert_eq(rc, 0, "%s failed:\n%s", cmd, out);
    return out;
}

/* The "path flops params" lines after "exact counts". */
static int parse_exact(char *text, row *rows, int max) {
    char *p = strstr(text, "exact counts (path flops params):\n");
    cr_assert(p, "no exact counts in:\n%s", text);
    p = strchr(p, '\n') + 1;
    int n = 0;
    while (*p && n < max) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        cr_assert_eq(sscanf(p, "%159s %lld %lld", rows[n].path, &rows[n].flops, &rows[n].params), 3, "line: %s", p);
        n++;
        if (!nl) break;
        p = nl + 1;
    }
    return n;
}

/* The i-th string of a JSON array of plain strings (no escapes). */
static bool json_string_at(const char *json, int i, char *out, size_t n) {
    const char *p = json;
    for (int k = 0; (p = strchr(p, '"')); k++) {
        const char *e = strchr(p + 1, '"');
        if (!e) return false;
        if (k == i) {
            snprintf(out, n, "%.*s", (int)(e - p - 1), p + 1);
            return true;
        }
        p = e + 1;
    }
    return false;
}

static void check_case(const char *name, const char *config, const char *extra) {
    static char out[1 << 20];
    static row rows[1024];
    run(config, extra, out, sizeof out);
    char summary[4096];
    snprintf(summary, sizeof summary, "%s", strstr(out, "==============================") ?
             strstr(out, "==============================") : "");
    int n = parse_exact(out, rows, 1024);
    md_st *st = golden_open("flops_golden");
    char key[128];
    snprintf(key, sizeof key, "%s.paths", name);
    const char *paths = md_st_metadata(st, key);
    snprintf(key, sizeof key, "%s.strings", name);
    const char *strings = md_st_metadata(st, key);
    cr_assert(paths && strings);
    snprintf(key, sizeof key, "%s.flops", name);
    const int64_t *flops = golden_data(st, md_st_find(st, key));
    snprintf(key, sizeof key, "%s.params", name);
    int ip = md_st_find(st, key);
    const int64_t *params = golden_data(st, ip);
    int64_t shape[4];
    md_st_shape(st, ip, shape);
    int checked = 0;
    for (int i = 0; i < shape[0]; i++) {
        char path[160];
        cr_assert(json_string_at(paths, i, path, sizeof path));
        int j = 0;
        while (j < n && strcmp(rows[j].path, path)) j++;
        if (j == n) {   /* only a layer that never runs and has no parameters (RetinaHead's relu) */
            cr_expect(flops[i] == 0 && params[i] == 0, "%s: mmcv counts %s, the tool lists no such module", name,
                      path);
            continue;
        }
        cr_expect_eq(rows[j].flops, flops[i], "%s: %s FLOPs %lld, mmcv %lld", name, path, rows[j].flops,
                     (long long)flops[i]);
        cr_expect_eq(rows[j].params, params[i], "%s: %s params %lld, mmcv %lld", name, path, rows[j].params,
                     (long long)params[i]);
        checked++;
    }
    cr_expect_gt(checked, 50, "%s: %d modules compared", name, checked);
    /* get_flops' summary: the padded shape and mmcv's strings */
    char fs[64], ps[64], line[160];
    cr_assert(json_string_at(strings, 0, fs, sizeof fs) && json_string_at(strings, 1, ps, sizeof ps));
    cr_expect(strstr(summary, "Use size divisor set input shape from (3, 100, 130) to (3, 128, 160)\n"), "%s", summary);
    snprintf(line, sizeof line, "Input shape: (3, 128, 160)\nFlops: %s\nParams: %s\n", fs, ps);
    cr_expect(strstr(summary, line), "want\n%s\nin\n%s", line, summary);
    md_st_close(st);
}

TestSuite(get_flops, .timeout = 120);

Test(get_flops, retinanet_matches_mmcv) {
    check_case("retinanet", "configs/retinanet/retinanet_r18_fpn_shapes.cfg", "");
}

Test(get_flops, faster_rcnn_matches_mmcv) {
    check_case("faster_rcnn", "configs/faster_rcnn/faster_rcnn_r18_fpn_shapes.cfg", "");
}

/* The mask branch: FCNMaskHead's convs, deconv and its `relu` on the first
 * 100 of the 1000 proposals. */
Test(get_flops, mask_rcnn_matches_mmcv) {
    check_case("mask_rcnn", "configs/mask_rcnn/mask_rcnn_r18_fpn_shapes.cfg", "");
}

/* Frozen parameters are not counted, per module and in all. */
Test(get_flops, frozen_stage_params_are_not_counted) {
    check_case("faster_rcnn_frozen1", "configs/faster_rcnn/faster_rcnn_r18_fpn_shapes.cfg",
               "--cfg-options model.backbone.frozen_stages=1");
}

/* The tree: PyTorch's repr with mmcv's figures on every module, the
 * counted parameterless layers in it too. */
Test(get_flops, tree_lines_as_mmcv_prints_them) {
    static char out[1 << 20];
    run("configs/retinanet/retinanet_r18_fpn_shapes.cfg", "", out, sizeof out);
    cr_expect(!strncmp(out, "RetinaNet(\n  3.318 M, 100.000% Params, 0.301 GFLOPs, 100.000% FLOPs, \n  (backbone): ResNet(\n",
                       strlen("RetinaNet(\n  3.318 M, 100.000% Params, 0.301 GFLOPs, 100.000% FLOPs, \n  (backbone): ResNet(\n")),
              "%.300s", out);
    cr_expect(strstr(out, "\n    (conv1): Conv2d(0.005 M, 0.142% Params, 0.024 GFLOPs, 8.001% FLOPs, 3, 32, "
                          "kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)\n"), "%.2000s", out);
    cr_expect(strstr(out, "\n    (relu): ReLU(0.0 M, 0.000% Params, 0.0 GFLOPs, 0.054% FLOPs, inplace=True)\n"
                          "    (maxpool): MaxPool2d("), "%.2000s", out);
    cr_expect(strstr(out, "(activate): ReLU("));
}

Test(get_flops, square_shape_and_bad_arguments) {
    static char out[1 << 20];
    FILE *p = popen("bin/mmdet-get-flops configs/retinanet/retinanet_r18_fpn_shapes.cfg --plugin-dir plugins "
                    "--shape 64 2>&1", "r");
    size_t k = fread(out, 1, sizeof out - 1, p);
    out[k] = 0;
    cr_assert_eq(pclose(p), 0, "%s", out);
    cr_expect(strstr(out, "\nInput shape: (3, 64, 64)\n"), "%s", out);
    cr_expect(!strstr(out, "Use size divisor"));
    cr_expect_neq(system("bin/mmdet-get-flops configs/retinanet/retinanet_r18_fpn_shapes.cfg --plugin-dir plugins "
                         "--shape 1 2 3 >/dev/null 2>&1"), 0);
    cr_expect_neq(system("bin/mmdet-get-flops tests/configs/no_such.cfg >/dev/null 2>&1"), 0);
}
