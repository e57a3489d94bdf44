/* bin/mmdet-benchmark on the tiny RetinaNet of the detector golden test
 * (its weights fixture is the checkpoint) over a generated test set of 12
 * images: the lines mmdet's benchmark.py prints and their counts (no
 * timing thresholds), repeat-num's summary, --fuse-conv-bn, and the errors.
 * md_nn_fuse_conv_bn itself: outputs of a conv + BN block before and after
 * folding agree. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "testlib.h"
#include "detector_tiny.h"

static char dir[64];

static void setup(void) {
    test_tmpdir(dir, sizeof dir, "mmdet_benchmark");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s/data --train 0 --val 12 --classes 3 --seed 5 "
             "--min-size 64 --max-size 96 >/dev/null", dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    char text[8192];
    snprintf(text, sizeof text, "%s%s\n"
             "data = { test = { type = \"CocoDataset\"; ann_file = \"%s/data/annotations/instances_val.json\";\n"
             "  img_prefix = \"%s/data/val/\"; classes = [\"rectangle\", \"ellipse\", \"triangle\"];\n"
             "  pipeline = ( { type = \"LoadImageFromFile\"; },\n"
             "    { type = \"MultiScaleFlipAug\"; img_scale = [96, 96]; flip = false; transforms = (\n"
             "      { type = \"Resize\"; keep_ratio = true; }, { type = \"RandomFlip\"; },\n"
             "      { type = \"Normalize\"; mean = [123.675, 116.28, 103.53]; std = [58.395, 57.12, 57.375]; to_rgb = true; },\n"
             "      { type = \"Pad\"; size_divisor = 32; }, { type = \"ImageToTensor\"; keys = [\"img\"]; },\n"
             "      { type = \"Collect\"; keys = [\"img\"]; } ); } ); }; };\n",
             TINY_RETINA_MODEL, TINY_RETINA_TEST_CFG, dir, dir);
    test_write_file(dir, "retina.cfg", text);
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(benchmark, .init = setup, .fini = teardown, .timeout = 120);

/* Runs the tool with `args`; its stdout and stderr into out. */
static int run(const char *args, char *out, size_t n) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bin/mmdet-benchmark %s/retina.cfg tests/fixtures/detector_retina_weights.safetensors "
             "--plugin-dir plugins %s 2>&1", dir, args);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t k = fread(out, 1, n - 1, p);
    out[k] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count(const char *text, const char *what) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

/* Every "fps: X img / s, times per image: Y ms / img" line: X > 0 and Y
 * is 1000 / X up to the rounding of both to 0.1. */
static void check_figures(const char *text) {
    for (const char *p = text; (p = strstr(p, "fps: ")); p++) {
        double fps, ms;
        if (p[5] == '[') continue;   /* the repeat summary */
        cr_assert_eq(sscanf(p, "fps: %lf img / s, times per image: %lf ms / img", &fps, &ms), 2, "%.120s", p);
        cr_assert_gt(fps, 0.05, "%.120s", p);
        double d = ms - 1000 / fps, tol = 0.05 + 1000 * 0.05 / (fps * (fps - 0.05)) + 1e-9;
        cr_expect_leq(d < 0 ? -d : d, tol, "%.120s", p);
    }
}

Test(benchmark, lines_as_benchmark_py) {
    static char out[1 << 16];
    cr_assert_eq(run("--max-iter 10 --log-interval 3", out, sizeof out), 0, "%s", out);
    /* images 6, 9 are logged (the first 5 are warm-up; 3 and the rest are
     * multiples of 3 before it), then Overall at image 10 */
    cr_expect_eq(count(out, "Done image ["), 2, "%s", out);
    cr_expect(strstr(out, "Done image [6  / 10], fps: "), "%s", out);
    cr_expect(strstr(out, "Done image [9  / 10], fps: "), "%s", out);
    cr_expect_eq(count(out, "Overall fps: "), 1, "%s", out);
    check_figures(out);
    const char *o = strstr(out, "Overall fps: ");
    cr_assert(o);
    cr_expect(strstr(o, " img / s, times per image: ") && strstr(o, " ms / img\n"), "%s", o);
}

/* A test set shorter than max-iter: Overall over every image done. */
Test(benchmark, short_test_set_ends_with_overall) {
    static char out[1 << 16];
    cr_assert_eq(run("--log-interval 50", out, sizeof out), 0, "%s", out);
    cr_expect_eq(count(out, "Done image ["), 0, "%s", out);
    cr_expect_eq(count(out, "Overall fps: "), 1, "%s", out);
}

Test(benchmark, repeat_num_prints_each_run_and_the_mean) {
    static char out[1 << 16];
    cr_assert_eq(run("--max-iter 7 --log-interval 7 --repeat-num 2", out, sizeof out), 0, "%s", out);
    cr_expect_eq(count(out, "Done image [7  / 7], fps: "), 2, "%s", out);
    cr_expect_eq(count(out, "Overall fps: "), 3, "%s", out);
    const char *m = strstr(out, "Overall fps: [");
    cr_assert(m, "%s", out);
    double a, b, mean, ma, mb, mmean;
    cr_assert_eq(sscanf(m, "Overall fps: [%lf, %lf][%lf] img / s, times per image: [%lf, %lf][%lf] ms / img", &a, &b,
                        &mean, &ma, &mb, &mmean), 6, "%s", m);
    cr_expect_lt(mean - (a + b) / 2 < 0 ? (a + b) / 2 - mean : mean - (a + b) / 2, 0.051, "%s", m);
    cr_expect_lt(mmean - (ma + mb) / 2 < 0 ? (ma + mb) / 2 - mmean : mmean - (ma + mb) / 2, 0.051, "%s", m);
}

Test(benchmark, fuse_conv_bn_folds_the_resnet_norms) {
    static char out[1 << 16];
    cr_assert_eq(run("--max-iter 6 --fuse-conv-bn", out, sizeof out), 0, "%s", out);
    /* ResNet-18 at 3 stages: the stem, 2 blocks x 2 in each stage, and the
     * 2 downsample shortcuts */
    cr_expect(strstr(out, "fuse_conv_bn: 15 BatchNorm2d layers folded"), "%s", out);
    cr_expect_eq(count(out, "Overall fps: "), 1, "%s", out);
}

Test(benchmark, errors_are_clear) {
    static char out[1 << 16];
    cr_expect_neq(run("--max-iter 5", out, sizeof out), 0);
    cr_expect(strstr(out, "the first 5 are warm-up: nothing was timed"), "%s", out);
    cr_expect_neq(run("--max-iter 0", out, sizeof out), 0);
    cr_expect(strstr(out, "--max-iter: 0 is not a positive integer"), "%s", out);
    /* the CUDA path: without a GPU (or without the CUDA library) the device
     * cannot be opened, and the message says so */
    if (run("--max-iter 6 --device cuda", out, sizeof out) != 0)
        cr_expect(strstr(out, "mmdet-benchmark: error: ") && strstr(out, "cuda"), "%s", out);
    else
        cr_expect(strstr(out, "Overall fps: "), "%s", out);
}

/* ------------------------------------------------ md_nn_fuse_conv_bn -- */

Test(fuse_conv_bn, folded_block_computes_the_same) {
    md_ctx *ctx = test_ctx(3, NULL);
    md_error err = { 0 };
    md_conv_module_opts o = { .in = 3, .out = 6, .kernel = 3, .stride = 1, .padding = 1, .norm = true,
                              .norm_requires_grad = true, .act = true, .bias = -1 };
    md_module *cm = md_nn_conv_module(ctx, &o, &err);
    cr_assert(cm, "%s", err.msg);
    md_module *bn = md_module_child(cm, "bn");
    md_rng r;
    md_rng_seed(&r, 7);
    md_tensor_normal_(md_nn_weight(bn), &r, 1, 0.3);
    md_tensor_normal_(md_nn_bias(bn), &r, 0, 0.3);
    md_tensor_normal_(md_module_find(bn, "running_mean"), &r, 0, 0.5);
    md_tensor_uniform_(md_module_find(bn, "running_var"), &r, 0.5, 2);
    md_module_train(cm, false);
    md_grad_set_enabled(ctx, false);
    md_tensor *x = md_tensor_empty(ctx, MD_F32, MD_DIMS(2, 3, 7, 5));
    md_tensor_normal_(x, &r, 0, 1);
    md_tensor *before = md_contiguous(ctx, md_module_forward(ctx, cm, x));
    int n = 0;
    cr_assert_eq(md_nn_fuse_conv_bn(ctx, cm, &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 1);
    cr_expect_str_eq(md_module_child(cm, "bn")->cls->name, "Identity");
    cr_expect(md_nn_bias(md_module_child(cm, "conv")) != NULL, "the fused conv has a bias");
    md_tensor *after = md_module_forward(ctx, cm, x);
    cr_assert(!md_ctx_failed(ctx), "%s", md_ctx_error(ctx)->msg);
    cr_expect_lt(rel_err(after, before), 1e-6, "%g", rel_err(after, before));
    /* nothing left to fuse */
    n = 0;
    cr_expect_eq(md_nn_fuse_conv_bn(ctx, cm, &n, &err), 0);
    cr_expect_eq(n, 0);
    md_module_free(cm);
    md_ctx_free(ctx);
}
