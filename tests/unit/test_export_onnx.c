/* bin/mmdet-export-onnx against ONNX Runtime (tests/golden/onnx_golden.py):
 * the tiny RetinaNet of tests/configs/export/retinanet_tiny.cfg exported
 * here must be byte for byte the model the golden script ran (its SHA-256
 * is in the fixture; the writer is deterministic: initializers and nodes in
 * trace order, no version or time in the file), and ONNX Runtime's outputs
 * on the two fixture images must be the library's: simple_test's boxes,
 * scores and labels (dets/labels; rows past the detections zero) and the
 * head's raw outputs (--no-postprocess), to 1e-4. ONNX Runtime runs the same
 * float32 convolutions in another order (measured differences ~1e-6), and
 * the golden script checks that every candidate score of the configs
 * stays 1e-4 (RetinaNet) or 1e-3 (Faster R-CNN) away from score_thr, so
 * the sets must agree exactly.
 *
 * The same for the tiny Faster R-CNN (opsets 11 and 16) and for one
 * --dynamic-export RetinaNet run at two sizes with a batch of 2.
 *
 * Also: opsets outside 11..17 and a two-stage --no-postprocess are refused
 * with their reason; two traces of different sizes that differ are
 * refused; an op reading a tensor the trace did not make is an error
 * naming it (no silent constant). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/bbox.h>
#include <mmdet/checkpoint.h>
#include "detector_tiny.h"
#include "testlib.h"

#define CONFIG "tests/configs/export/retinanet_tiny.cfg"
#define WEIGHTS "tests/fixtures/detector_retina_weights.safetensors"
#define FASTER_CONFIG "tests/configs/export/faster_rcnn_tiny.cfg"
#define FASTER_WEIGHTS "tests/fixtures/detector_faster_weights.safetensors"

static char dir[64];
static md_ctx *ctx;

static void setup(void) {
    test_tmpdir(dir, sizeof dir, "export_onnx");
    ctx = test_ctx(1, (const char *const[]){ "plugins/backbones", "plugins/necks", "plugins/bbox", "plugins/heads",
                                             "plugins/losses", "plugins/detectors", NULL });
}
static void teardown(void) {
    md_ctx_free(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(export_onnx, .init = setup, .fini = teardown, .timeout = 120);

/* Runs the exporter on config and weights with `extra` options into
 * <dir>/<name>; its exit code, stdout and stderr in <dir>/<name>.err. */
static int export_with(const char *config, const char *weights, const char *name, const char *extra) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-export-onnx %s %s --plugin-dir plugins --no-default-plugins --out %s/%s "
             "--shape 64 96 %s >%s/%s.err 2>&1",
             config, weights, dir, name, extra, dir, name);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int export_model(const char *name, const char *extra) { return export_with(CONFIG, WEIGHTS, name, extra); }

static const char *stderr_of(const char *name) {
    static char text[4096];
    char path[256];
    snprintf(path, sizeof path, "%s/%s.err", dir, name);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = 0;
    return text;
}

/* The file's SHA-256 (sha256sum, coreutils) against the fixture's bytes. */
static void assert_sha256(const char *name, md_tensor *want) {
    char cmd[256], hex[65] = { 0 }, exp[65];
    snprintf(cmd, sizeof cmd, "sha256sum %s/%s", dir, name);
    FILE *p = popen(cmd, "r");
    cr_assert(p && fscanf(p, "%64s", hex) == 1, "sha256sum %s", name);
    pclose(p);
    cr_assert_eq(md_tensor_numel(want), 32);
    for (int i = 0; i < 32; i++) snprintf(exp + 2 * i, 3, "%02x", md_u8(want)[i]);
    cr_assert_str_eq(hex, exp,
                     "%s is not the model tests/golden/onnx_golden.py ran (sha256 %s, fixture %s): the export "
                     "changed; rerun the script if the change is meant",
                     name, hex, exp);
}

/* The detector of config with weights, in eval mode. */
static md_module *tiny_model(const char *config, const char *weights) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_load(config, &err);
    cr_assert_not_null(cfg, "%s", err.msg);
    md_module *m = md_build_from_cfg(ctx, "detectors", md_cfg_get(cfg, "model"), NULL, &err);
    md_cfg_free(cfg);
    cr_assert_not_null(m, "%s", err.msg);
    md_ckpt_info info;
    cr_assert_eq(md_checkpoint_load(ctx, weights, m, NULL, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(info.report.missing, 0, "%s", info.report.text);
    md_module_train(m, false);
    md_grad_set_enabled(ctx, false);
    return m;
}

static md_module *tiny_retina(void) { return tiny_model(CONFIG, WEIGHTS); }

/* The fixture's two images, each a whole H x W input, zero-padded past
 * its 64x96 (as ONNX Runtime got them: no rescale, boxes clipped to the
 * input). */
static void batch_sized(md_st *batch_st, md_batch *b, md_img_meta *metas, int64_t H, int64_t W) {
    tiny_detector_batch(ctx, batch_st, b, metas);
    int64_t h0 = b->img->shape[2], w0 = b->img->shape[3];
    if (H != h0 || W != w0) {
        md_error err = { 0 };
        md_tensor *big = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(2, 3, H, W), &err);
        cr_assert_not_null(big, "%s", err.msg);
        md_tensor_fill_(big, 0.0);
        for (int64_t p = 0; p < 2 * 3; p++)
            for (int64_t y = 0; y < h0; y++)
                memcpy(md_f32(big) + (p * H + y) * W, md_f32(b->img) + (p * h0 + y) * w0, sizeof(float) * (size_t)w0);
        md_tensor_free(b->img);
        b->img = big;
    }
    for (int i = 0; i < 2; i++) {
        metas[i].img_shape[0] = metas[i].ori_shape[0] = metas[i].pad_shape[0] = (int)H;
        metas[i].img_shape[1] = metas[i].ori_shape[1] = metas[i].pad_shape[1] = (int)W;
        for (int k = 0; k < 4; k++) metas[i].scale_factor[k] = 1.0f;
    }
}

static void batch(md_st *batch_st, md_batch *b, md_img_meta *metas) { batch_sized(batch_st, b, metas, 64, 96); }

/* simple_test's detections of image i are ONNX Runtime's rows of dets
 * [2, K, 5] / labels [2, K] (boxes and scores to 1e-4, labels exactly),
 * the rows after them zero. Returns the count. */
static int assert_dets(const md_det_result *res, int i, md_tensor *dets, md_tensor *labels, const char *what) {
    int64_t K = dets->shape[1];
    const float *d = md_f32(dets) + i * K * 5;
    const int64_t *l = md_i64(labels) + i * K;
    int n = 0;
    while (n < K && d[5 * n + 4] > 0) n++;
    cr_assert_eq(res[i].n, n, "%s image %d: simple_test %d detections, ONNX Runtime %d", what, i, res[i].n, n);
    cr_assert_gt(n, 0);
    for (int k = 0; k < n; k++) {
        for (int j = 0; j < 5; j++)
            cr_assert(fabs((double)res[i].bboxes[5 * k + j] - d[5 * k + j]) <= 1e-4,
                      "%s image %d detection %d value %d: simple_test %.7g, ONNX Runtime %.7g", what, i, k, j,
                      res[i].bboxes[5 * k + j], d[5 * k + j]);
        cr_assert_eq(res[i].labels[k], l[k], "%s image %d detection %d: label %lld, ONNX Runtime %lld", what, i, k,
                     (long long)res[i].labels[k], (long long)l[k]);
    }
    for (int64_t k = n; k < K; k++)
        for (int j = 0; j < 5; j++)
            cr_assert_eq(d[5 * k + j], 0.0f, "%s image %d row %lld is not zero", what, i, (long long)k);
    return n;
}

Test(export_onnx, dets_and_labels_are_simple_test_s) {
    cr_assert_eq(export_model("post.onnx", ""), 0, "%s", stderr_of("post.onnx"));
    md_st *gold = golden_open("onnx_retina"), *batch_st = golden_open("detector_batch");
    assert_sha256("post.onnx", golden_get(ctx, gold, "sha256_post"));

    md_module *m = tiny_retina();
    md_batch b;
    md_img_meta metas[2];
    batch(batch_st, &b, metas);
    md_det_result res[2];
    md_error err = { 0 };
    const md_model_iface *iface = m->cls->iface;
    cr_assert_eq(iface->simple_test(ctx, m, &b, res, &err), 0, "%s", err.msg);

    md_tensor *dets = golden_get(ctx, gold, "dets"), *labels = golden_get(ctx, gold, "labels");
    int64_t K = dets->shape[1];
    cr_assert_eq(dets->ndim, 3);
    cr_assert_eq(K, 9, "max_per_img rows: %lld", (long long)K);
    for (int i = 0; i < 2; i++) assert_dets(res, i, dets, labels, "retina");
    /* one image fills every row, the other leaves one: the cut and the padding */
    cr_assert(res[0].n < K && res[1].n == K, "%d and %d detections", res[0].n, res[1].n);
    md_tensor_free(b.img);
    md_module_free(m);
    md_st_close(batch_st);
    md_st_close(gold);
}

Test(export_onnx, raw_outputs_are_the_head_s) {
    cr_assert_eq(export_model("raw.onnx", "--no-postprocess"), 0, "%s", stderr_of("raw.onnx"));
    md_st *gold = golden_open("onnx_retina"), *batch_st = golden_open("detector_batch");
    assert_sha256("raw.onnx", golden_get(ctx, gold, "sha256_raw"));

    md_module *m = tiny_retina();
    md_batch b;
    md_img_meta metas[2];
    batch(batch_st, &b, metas);
    md_tensor *feats[MD_MAX_LEVELS], *cls[MD_MAX_LEVELS], *reg[MD_MAX_LEVELS];
    int n = md_extract_feat(ctx, m, md_module_child(m, "backbone"), md_module_child(m, "neck"), b.img, feats);
    cr_assert_eq(n, 4, "%s", md_ctx_error(ctx)->msg);
    md_module *head = md_module_child(m, "bbox_head");
    cr_assert_eq(md_dense_head_class_of(head)->forward(ctx, head, feats, n, cls, reg), 0, "%s", md_ctx_error(ctx)->msg);
    for (int l = 0; l < n; l++) {
        char key[32];
        snprintf(key, sizeof key, "cls_score_%d", l);
        md_tensor *ref = golden_get(ctx, gold, key);
        cr_assert(md_tensor_same_shape(cls[l], ref), "%s", key);
        for (int64_t i = 0; i < md_tensor_numel(ref); i++)
            cr_assert(fabs(md_tensor_get(cls[l], i) - md_f32(ref)[i]) <= 1e-4, "%s[%lld]: %g, ONNX Runtime %g", key,
                      (long long)i, md_tensor_get(cls[l], i), md_f32(ref)[i]);
        snprintf(key, sizeof key, "bbox_pred_%d", l);
        ref = golden_get(ctx, gold, key);
        cr_assert(md_tensor_same_shape(reg[l], ref), "%s", key);
        for (int64_t i = 0; i < md_tensor_numel(ref); i++)
            cr_assert(fabs(md_tensor_get(reg[l], i) - md_f32(ref)[i]) <= 1e-4, "%s[%lld]: %g, ONNX Runtime %g", key,
                      (long long)i, md_tensor_get(reg[l], i), md_f32(ref)[i]);
    }
    md_tensor_free(b.img);
    md_module_free(m);
    md_st_close(batch_st);
    md_st_close(gold);
}

/* The tiny Faster R-CNN: RPN proposals (per-level top-k, decode, NMS across
 * the levels), RoI levels and RoiAlign in the graph, the bbox head traced
 * (Flatten, Gemm, Relu, Softmax), class-wise NMS. ONNX Runtime ran the
 * opset-11 model (RoiAlign-10 on boxes moved by mmcv's -0.5 offset), the
 * opset-16 one (half_pixel) and a --dynamic-export one at two sizes with
 * a batch of 2; each must be simple_test's detections. */
Test(export_onnx, faster_rcnn_dets_are_simple_test_s) {
    md_st *gold = golden_open("onnx_faster"), *batch_st = golden_open("detector_batch");
    cr_assert_eq(export_with(FASTER_CONFIG, FASTER_WEIGHTS, "f11.onnx", "--opset 11"), 0, "%s", stderr_of("f11.onnx"));
    assert_sha256("f11.onnx", golden_get(ctx, gold, "sha256_11"));
    cr_assert_eq(export_with(FASTER_CONFIG, FASTER_WEIGHTS, "f16.onnx", "--opset 16"), 0, "%s", stderr_of("f16.onnx"));
    assert_sha256("f16.onnx", golden_get(ctx, gold, "sha256_16"));

    md_module *m = tiny_model(FASTER_CONFIG, FASTER_WEIGHTS);
    md_batch b;
    md_img_meta metas[2];
    batch(batch_st, &b, metas);
    md_det_result res[2];
    md_error err = { 0 };
    const md_model_iface *iface = m->cls->iface;
    cr_assert_eq(iface->simple_test(ctx, m, &b, res, &err), 0, "%s", err.msg);
    const char *opsets[2] = { "11", "16" };
    for (int o = 0; o < 2; o++) {
        char kd[16], kl[16], what[32];
        snprintf(kd, sizeof kd, "dets_%s", opsets[o]);
        snprintf(kl, sizeof kl, "labels_%s", opsets[o]);
        snprintf(what, sizeof what, "faster (opset %s)", opsets[o]);
        md_tensor *dets = golden_get(ctx, gold, kd), *labels = golden_get(ctx, gold, kl);
        /* min(max_per_img 100, 30 proposals x 3 classes) rows */
        cr_assert_eq(dets->shape[1], 90, "rows: %lld", (long long)dets->shape[1]);
        for (int i = 0; i < 2; i++) assert_dets(res, i, dets, labels, what);
    }
    md_tensor_free(b.img);
    /* --dynamic-export (opset 16): a batch of 2 at 64x96 and at 96x160 */
    cr_assert_eq(export_with(FASTER_CONFIG, FASTER_WEIGHTS, "fd.onnx", "--opset 16 --dynamic-export"), 0, "%s",
                 stderr_of("fd.onnx"));
    assert_sha256("fd.onnx", golden_get(ctx, gold, "sha256_dyn"));
    const int64_t sizes[2][2] = { { 64, 96 }, { 96, 160 } };
    const char *keys[2][2] = { { "dets_dyn_a", "labels_dyn_a" }, { "dets_dyn_b", "labels_dyn_b" } };
    for (int s = 0; s < 2; s++) {
        batch_sized(batch_st, &b, metas, sizes[s][0], sizes[s][1]);
        cr_assert_eq(iface->simple_test(ctx, m, &b, res, &err), 0, "%s", err.msg);
        md_tensor *dets = golden_get(ctx, gold, keys[s][0]), *labels = golden_get(ctx, gold, keys[s][1]);
        char what[48];
        snprintf(what, sizeof what, "faster dynamic %lldx%lld", (long long)sizes[s][0], (long long)sizes[s][1]);
        for (int i = 0; i < 2; i++) assert_dets(res, i, dets, labels, what);
        md_tensor_free(b.img);
    }
    md_module_free(m);
    md_st_close(batch_st);
    md_st_close(gold);
}

/* --dynamic-export: one model (byte for byte the golden script's) that ONNX
 * Runtime ran on both images as a batch of 2 at the traced 64x96 and at
 * 96x160; each must be simple_test's detections at that size. */
Test(export_onnx, dynamic_export_runs_at_two_sizes_and_batch_2) {
    md_st *gold = golden_open("onnx_retina_dynamic"), *batch_st = golden_open("detector_batch");
    cr_assert_eq(export_model("dyn.onnx", "--dynamic-export"), 0, "%s", stderr_of("dyn.onnx"));
    cr_assert(strstr(stderr_of("dyn.onnx"), "input [batch, 3, height, width], outputs dets [batch, num_dets, 5]"),
              "%s", stderr_of("dyn.onnx"));
    assert_sha256("dyn.onnx", golden_get(ctx, gold, "sha256"));
    md_module *m = tiny_retina();
    const md_model_iface *iface = m->cls->iface;
    const int64_t sizes[2][2] = { { 64, 96 }, { 96, 160 } };
    const char *keys[2][2] = { { "dets_a", "labels_a" }, { "dets_b", "labels_b" } };
    for (int s = 0; s < 2; s++) {
        md_batch b;
        md_img_meta metas[2];
        batch_sized(batch_st, &b, metas, sizes[s][0], sizes[s][1]);
        md_det_result res[2];
        md_error err = { 0 };
        cr_assert_eq(iface->simple_test(ctx, m, &b, res, &err), 0, "%s", err.msg);
        md_tensor *dets = golden_get(ctx, gold, keys[s][0]), *labels = golden_get(ctx, gold, keys[s][1]);
        cr_assert_eq(dets->shape[0], 2);
        char what[32];
        snprintf(what, sizeof what, "%lldx%lld", (long long)sizes[s][0], (long long)sizes[s][1]);
        for (int i = 0; i < 2; i++) assert_dets(res, i, dets, labels, what);
        md_tensor_free(b.img);
    }
    md_module_free(m);
    md_st_close(batch_st);
    md_st_close(gold);
}

/* A dynamic graph must not hold a constant of the traced size: two traces
 * that differ are refused, naming the constant and its node. */
Test(export_onnx, graphs_of_two_sizes_must_match) {
    md_error err = { 0 };
    md_onnx_graph *g[2];
    for (int k = 0; k < 2; k++) {
        g[k] = md_onnx_graph_new(11, &err);
        cr_assert_not_null(g[k], "%s", err.msg);
        md_onnx_graph_set_dynamic(g[k], true);
        md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1 + k, 2, 4 + k, 4));
        md_onnx_trace_begin(ctx, g[k]);
        cr_assert_eq(md_onnx_input(ctx, x, "input"), 0);
        /* the first dimension follows the input; the second is baked */
        md_tensor *y = md_reshape(ctx, md_relu(ctx, x), MD_DIMS(x->shape[0], 2 * (4 + k), 4));
        cr_assert_not_null(y, "%s", md_ctx_error(ctx)->msg);
        cr_assert_eq(md_onnx_output(ctx, y, "out"), 0);
        md_onnx_trace_end(ctx);
    }
    cr_assert_neq(md_onnx_graph_compare(g[0], g[1], &err), 0);
    cr_assert(strstr(err.msg, "depends on the input size") && strstr(err.msg, "Reshape"), "%s", err.msg);
    /* Relu, Reshape, Identity: the Reshape's shape keeps the batch (0) */
    md_onnx_graph_view v = md_onnx_graph_view_of(g[0]);
    cr_assert_str_eq(v.nodes[1].op_type, "Reshape");
    const int64_t *shape = NULL;
    for (int i = 0; i < v.n_initializers; i++)
        if (!strcmp(v.initializers[i].name, v.nodes[1].inputs[1])) shape = v.initializers[i].data;
    cr_assert(shape && shape[0] == 0 && shape[1] == 8 && shape[2] == 4, "Reshape shape");
    cr_assert_eq(md_onnx_graph_compare(g[0], g[0], &err), 0, "%s", err.msg);
    md_onnx_graph_free(g[0]);
    md_onnx_graph_free(g[1]);
}

Test(export_onnx, every_validated_opset_exports_and_others_are_refused) {
    for (int opset = MD_ONNX_OPSET_MIN; opset <= MD_ONNX_OPSET_MAX; opset++) {
        char opt[32];
        snprintf(opt, sizeof opt, "--opset %d", opset);
        cr_assert_eq(export_model("m.onnx", opt), 0, "opset %d: %s", opset, stderr_of("m.onnx"));
    }
    const char *bad[] = { "--opset 10", "--opset 18" };
    for (int i = 0; i < 2; i++) {
        cr_assert_neq(export_model("bad.onnx", bad[i]), 0, "%s accepted", bad[i]);
        cr_assert(strstr(stderr_of("bad.onnx"), "validated for opsets 11 to 17"), "%s", stderr_of("bad.onnx"));
    }
    /* a two-stage detector exports with its post-processing only */
    cr_assert_neq(export_with(FASTER_CONFIG, FASTER_WEIGHTS, "raw2.onnx", "--no-postprocess"), 0);
    cr_assert(strstr(stderr_of("raw2.onnx"), "exports with its post-processing only"), "%s", stderr_of("raw2.onnx"));
    md_error err = { 0 };
    cr_assert_null(md_onnx_graph_new(18, &err));
    cr_assert(strstr(err.msg, "opset 18 is not supported"), "%s", err.msg);
}

/* The trace records each op with its attributes and refuses a tensor it
 * did not make; with no graph attached nothing is recorded. */
Test(export_onnx, trace_records_ops_and_refuses_untraced_inputs) {
    md_error err = { 0 };
    md_onnx_graph *g = md_onnx_graph_new(13, &err);
    cr_assert_not_null(g, "%s", err.msg);
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 2, 4, 4));
    md_tensor *w = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(3, 2, 3, 3), &err);
    cr_assert_not_null(w, "%s", err.msg);
    md_tensor_fill_(w, 0.5);
    md_relu(ctx, x);   /* off: not recorded */
    md_onnx_trace_begin(ctx, g);
    cr_assert_eq(md_onnx_input(ctx, x, "input"), 0);
    md_tensor *y = md_max_pool2d(ctx, md_relu(ctx, md_conv2d(ctx, x, w, NULL, MD_CONV2D(2, 1))), 2, 2, 0, false);
    cr_assert_not_null(y, "%s", md_ctx_error(ctx)->msg);
    cr_assert_eq(md_onnx_output(ctx, y, "out"), 0);
    md_onnx_graph_view v = md_onnx_graph_view_of(g);
    cr_assert_eq(v.n_nodes, 4, "%d nodes", v.n_nodes);   /* Conv, Relu, MaxPool, Identity */
    cr_assert_str_eq(v.nodes[0].op_type, "Conv");
    cr_assert_str_eq(v.nodes[0].inputs[0], "input");
    cr_assert_str_eq(v.nodes[0].attrs[4].name, "strides");
    cr_assert_eq(v.nodes[0].attrs[4].ints[0], 2);
    cr_assert_str_eq(v.nodes[1].op_type, "Relu");
    cr_assert_str_eq(v.nodes[2].op_type, "MaxPool");
    cr_assert_eq(v.n_initializers, 1);
    cr_assert_eq(v.initializers[0].bytes, 3 * 2 * 3 * 3 * sizeof(float));
    cr_assert_eq(v.n_outputs, 1);
    cr_assert_str_eq(v.outputs[0].name, "out");

    md_tensor *stray = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 3, 2, 2));
    cr_assert_null(md_add(ctx, y, stray));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "was not made by a traced op"), "%s", md_ctx_error(ctx)->msg);
    md_onnx_trace_end(ctx);
    md_onnx_graph_free(g);
    md_tensor_free(w);
}
