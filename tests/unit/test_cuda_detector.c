/* Whole detectors on a CUDA device against the same detectors on the CPU:
 * the tiny RetinaNet and Faster R-CNN of test_detector_golden.c (with
 * train_cfgs added), their weights loaded from the golden fixtures, built
 * twice and one copy moved to the GPU (md_module_to).
 *
 * - forward_train: every named loss within a relative 1e-4, the parameter
 *   gradients after backward within a relative 1e-3 of each tensor's norm
 *   (plus 1e-5 of the largest gradient norm, for near-zero gradients), and
 *   the parameters after one SGD step (state on the device) likewise;
 * - simple_test: the same detections (count and labels exactly, boxes
 *   within 1e-3 px, scores within 1e-4). The fixtures' batch and weights
 *   keep every decision (score_thr, top-k, NMS) far from its margin (see
 *   test_detector_golden.c), and the device's float32 results differ from
 *   the CPU's only in summation order;
 * - checkpoints: a device model and its optimizer saved (md_checkpoint_save
 *   copies device tensors to the host) load on the CPU and on the device
 *   with every tensor identical;
 * - bin/mmdet-run --device cuda trains the tiny shapes RetinaNet for a few
 *   iterations with finite losses and writes a checkpoint that loads on
 *   the CPU.
 *
 * Faster R-CNN's RoI sampling is random: both runs seed the context's rng
 * the same way, and the proposals (rpn_proposal as test_cfg.rpn of the
 * fixtures) are the same boxes, so the same RoIs are drawn.
 *
 * Without a GPU every test skips, saying why. */
#include <criterion/criterion.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/checkpoint.h>
#include "cudalib.h"
#include "detector_tiny.h"

static md_st *batch_st;

static void det_setup(void) {
    ctx = test_ctx(11, (const char *const[]){ "plugins/backbones", "plugins/necks", "plugins/bbox", "plugins/heads",
                                              "plugins/losses", "plugins/detectors", "plugins/optimizers", NULL });
    md_error err = { 0 };
    cr_assert_eq(md_device_parse("cuda:0", &gpu, &err), 0, "%s", err.msg);
    have_gpu = md_device_init(ctx, gpu, &err) == 0;
    if (!have_gpu) snprintf(why, sizeof why, "%s", err.msg);
    batch_st = have_gpu ? golden_open("detector_batch") : NULL;
}
static void det_teardown(void) {
    if (batch_st) md_st_close(batch_st);
    cuda_teardown();
}
TestSuite(cuda_detector, .init = det_setup, .fini = det_teardown, .timeout = 300);

static const char *retina_cfg = TINY_RETINA_MODEL TINY_RETINA_TRAIN_CFG TINY_RETINA_TEST_CFG;
static const char *faster_cfg = TINY_FASTER_MODEL TINY_FASTER_TRAIN_CFG TINY_FASTER_TEST_CFG;

/* The detector from cfg_text (seeded) with the fixture's weights, on the CPU. */
static md_module *build(const char *cfg_text, const char *name) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(cfg_text, name, &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_ctx_seed(ctx, 3);
    md_module *m = md_build_from_cfg(ctx, "detectors", md_cfg_get(root, "model"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(m, "%s: %s", name, err.msg);
    char path[128];
    snprintf(path, sizeof path, "tests/fixtures/detector_%s_weights.safetensors", name);
    md_ckpt_info info;
    cr_assert_eq(md_checkpoint_load(ctx, path, m, NULL, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(info.report.missing, 0, "%s missing: %s", name, info.report.text);
    return m;
}

static md_module *build_on_gpu(const char *cfg_text, const char *name) {
    md_module *m = build(cfg_text, name);
    md_error err = { 0 };
    cr_assert_eq(md_module_to(ctx, m, gpu, &err), 0, "%s: %s", name, err.msg);
    cr_assert_eq(md_module_device(m).type, gpu.type);
    return m;
}

/* The fixtures' batch (tiny_detector_batch) with a few ground-truth boxes
 * per image; the images stay on the CPU (the detector moves them). */
static float gt_xyxy[2][3 * 4];
static int64_t gt_labels[2][3];
static void make_batch(md_batch *b, md_img_meta *metas, md_boxes *gts) {
    tiny_detector_batch(ctx, batch_st, b, metas);
    memset(gts, 0, 2 * sizeof *gts);
    for (int i = 0; i < 2; i++) {
        const md_img_meta *m = &metas[i];
        /* boxes at fixed fractions of the image, whole pixels */
        static const float frac[3][4] = { { 0.10f, 0.15f, 0.45f, 0.60f }, { 0.40f, 0.30f, 0.90f, 0.85f },
                                          { 0.05f, 0.55f, 0.35f, 0.95f } };
        int n = i == 0 ? 3 : 2;
        for (int k = 0; k < n; k++) {
            for (int q = 0; q < 4; q++)
                gt_xyxy[i][4 * k + q] = floorf(frac[(k + i) % 3][q] * (float)m->img_shape[q % 2 == 0 ? 1 : 0]);
            gt_labels[i][k] = (k + 2 * i) % 3;
        }
        gts[i].n = gts[i].cap = n;
        gts[i].xyxy = gt_xyxy[i];
        gts[i].labels = gt_labels[i];
    }
    b->gt_bboxes = gts;
}

/* A module's parameters and buffers in md_module_visit order. */
typedef struct tlist { int n; char names[256][160]; md_tensor *t[256]; bool param[256]; } tlist;
static int collect(const char *name, md_tensor *t, bool is_param, void *user) {
    tlist *l = user;
    cr_assert_lt(l->n, 256);
    snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
    l->t[l->n] = t;
    l->param[l->n++] = is_param;
    return 0;
}

/* ||got - ref|| <= rel ||ref|| + abs, with got's values copied to the host. */
static void assert_near(md_tensor *got, md_tensor *ref, double rel, double abs_tol, const char *what) {
    md_tensor *g = got->device == MD_CPU ? got : to_cpu(got);
    cr_assert_eq(md_tensor_numel(g), md_tensor_numel(ref), "%s: sizes differ", what);
    double d = 0, r = 0;
    for (int64_t i = 0; i < md_tensor_numel(ref); i++) {
        double a = md_tensor_get(g, i), b = md_tensor_get(ref, i);
        d += (a - b) * (a - b);
        r += b * b;
    }
    d = sqrt(d), r = sqrt(r);
    cr_assert(d <= rel * r + abs_tol, "%s: ||cuda - cpu|| = %g, ||cpu|| = %g (allowed %g)", what, d, r,
              rel * r + abs_tol);
}

static double norm_of(md_tensor *t) {
    double s = 0;
    for (int64_t i = 0; i < md_tensor_numel(t); i++) s += md_tensor_get(t, i) * md_tensor_get(t, i);
    return sqrt(s);
}

/* forward_train + backward on both devices; losses and gradients compared,
 * then one SGD step (momentum: state on the device) and the parameters. */
static void train_matches(const char *cfg_text, const char *name) {
    md_error err = { 0 };
    md_ctx_step_reset(ctx);
    md_module *mc = build(cfg_text, name), *mg = build_on_gpu(cfg_text, name);
    md_batch b;
    md_img_meta metas[2];
    md_boxes gts[2];
    make_batch(&b, metas, gts);
    const md_model_iface *it = mc->cls->iface;
    md_losses lc = { 0 }, lg = { 0 };
    md_module *ms[2] = { mc, mg };
    md_losses *ls[2] = { &lc, &lg };
    md_grad_set_enabled(ctx, true);
    for (int d = 0; d < 2; d++) {
        md_module_train(ms[d], true);
        md_ctx_seed(ctx, 5);   /* the same random RoI sampling */
        cr_assert_eq(it->train_step(ctx, ms[d], &b, ls[d], &err), 0, "%s on %s: %s", name, d ? "cuda" : "cpu",
                     err.msg);
        md_tensor *total = md_losses_total(ctx, ls[d]);
        cr_assert_not_null(total, "%s: %s", name, md_ctx_error(ctx)->msg);
        cr_assert_eq(total->device, d ? gpu.type : MD_CPU, "%s: the loss is not where the model is", name);
        cr_assert_eq(md_backward(ctx, total, &err), 0, "%s backward on %s: %s", name, d ? "cuda" : "cpu", err.msg);
    }
    cr_assert_eq(lc.n, lg.n, "%s: %d losses on the CPU, %d on cuda", name, lc.n, lg.n);
    int compared = 0;
    for (int i = 0; i < lc.n; i++) {
        cr_assert_str_eq(lc.names[i], lg.names[i]);
        if (!strstr(lc.names[i], "loss")) continue;   /* acc counts argmax ties: not a float to compare */
        double a = md_tensor_item(lc.values[i]), g = md_tensor_item(lg.values[i]);
        cr_assert(isfinite(a) && a > 0, "%s %s = %g on the CPU", name, lc.names[i], a);
        cr_assert(fabs(g - a) <= 1e-4 * fabs(a), "%s %s: cuda %.9g, cpu %.9g", name, lc.names[i], g, a);
        compared++;
    }
    cr_assert_geq(compared, 2, "%s: %d losses", name, compared);

    static tlist pc, pg;
    pc.n = pg.n = 0;
    md_module_visit(mc, "", collect, &pc);
    md_module_visit(mg, "", collect, &pg);
    cr_assert_eq(pc.n, pg.n);
    double gmax = 0;
    for (int i = 0; i < pc.n; i++)
        if (pc.param[i] && pc.t[i]->grad) gmax = fmax(gmax, norm_of(pc.t[i]->grad));
    cr_assert_gt(gmax, 0, "%s: no gradients", name);
    int n_grads = 0;
    for (int i = 0; i < pc.n; i++) {
        if (!pc.param[i]) continue;
        char what[256];
        snprintf(what, sizeof what, "%s: gradient of %s", name, pc.names[i]);
        cr_assert_eq(pc.t[i]->grad != NULL, pg.t[i]->grad != NULL, "%s: on one device only", what);
        if (!pc.t[i]->grad) continue;
        cr_assert_eq(pg.t[i]->grad->device, gpu.type, "%s: not on the device", what);
        assert_near(pg.t[i]->grad, pc.t[i]->grad, 1e-3, 1e-5 * gmax, what);
        n_grads++;
    }
    cr_assert_gt(n_grads, 20, "%s: %d gradients", name, n_grads);

    /* one SGD step each: the device optimizer's state lives on the device */
    md_cfg *oc = md_cfg_parse("optimizer = { type = \"SGD\"; lr = 0.01; momentum = 0.9; weight_decay = 0.0001; };",
                              "optimizer", &err);
    cr_assert_not_null(oc, "%s", err.msg);
    for (int d = 0; d < 2; d++) {
        md_optimizer *opt = md_optimizer_build(ctx, ms[d], md_cfg_get(oc, "optimizer"), &err);
        cr_assert_not_null(opt, "%s", err.msg);
        cr_assert_eq(md_optimizer_step(opt, &err), 0, "%s step on %s: %s", name, d ? "cuda" : "cpu", err.msg);
        md_optimizer_free(opt);
    }
    md_cfg_free(oc);
    for (int i = 0; i < pc.n; i++) {
        char what[256];
        snprintf(what, sizeof what, "%s: %s after the step", name, pc.names[i]);
        cr_assert_eq(pg.t[i]->device, gpu.type, "%s: not on the device", what);
        assert_near(pg.t[i], pc.t[i], 1e-5, 1e-7 * sqrt((double)md_tensor_numel(pc.t[i])), what);
    }
    md_tensor_free(b.img);
    md_module_free(mc);
    md_module_free(mg);
}

Test(cuda_detector, retinanet_forward_train_matches_the_cpu) {
    NEED_GPU();
    train_matches(retina_cfg, "retina");
}

Test(cuda_detector, faster_rcnn_forward_train_matches_the_cpu) {
    NEED_GPU();
    train_matches(faster_cfg, "faster");
}

static void test_matches(const char *cfg_text, const char *name) {
    md_error err = { 0 };
    md_ctx_step_reset(ctx);
    md_module *mc = build(cfg_text, name), *mg = build_on_gpu(cfg_text, name);
    md_batch b;
    md_img_meta metas[2];
    md_boxes gts[2];
    make_batch(&b, metas, gts);
    const md_model_iface *it = mc->cls->iface;
    md_det_result rc[2], rg[2];
    md_module_train(mc, false);
    md_module_train(mg, false);
    md_grad_set_enabled(ctx, false);
    cr_assert_eq(it->simple_test(ctx, mc, &b, rc, &err), 0, "%s on the CPU: %s", name, err.msg);
    cr_assert_eq(it->simple_test(ctx, mg, &b, rg, &err), 0, "%s on cuda: %s", name, err.msg);
    md_grad_set_enabled(ctx, true);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(rg[i].n, rc[i].n, "%s image %d: %d detections on cuda, %d on the CPU", name, i, rg[i].n,
                     rc[i].n);
        cr_assert_gt(rc[i].n, 0, "%s image %d: no detections to compare", name, i);
        for (int k = 0; k < rc[i].n; k++) {
            cr_assert_eq(rg[i].labels[k], rc[i].labels[k], "%s image %d detection %d: label %lld, CPU %lld", name, i,
                         k, (long long)rg[i].labels[k], (long long)rc[i].labels[k]);
            for (int j = 0; j < 5; j++) {
                double d = fabs((double)rg[i].bboxes[5 * k + j] - rc[i].bboxes[5 * k + j]);
                cr_assert(d <= (j < 4 ? 1e-3 : 1e-4), "%s image %d detection %d value %d: cuda %g, CPU %g", name, i,
                          k, j, rg[i].bboxes[5 * k + j], rc[i].bboxes[5 * k + j]);
            }
        }
    }
    md_tensor_free(b.img);
    md_module_free(mc);
    md_module_free(mg);
}

Test(cuda_detector, retinanet_simple_test_matches_the_cpu) {
    NEED_GPU();
    test_matches(retina_cfg, "retina");
}

Test(cuda_detector, faster_rcnn_simple_test_matches_the_cpu) {
    NEED_GPU();
    test_matches(faster_cfg, "faster");
}

/* Every entry of two safetensors files equal, byte for byte. */
static void assert_same_files(const char *a, const char *b) {
    md_error err = { 0 };
    md_st *x = md_st_open(a, &err), *y = x ? md_st_open(b, &err) : NULL;
    cr_assert_not_null(y, "%s", err.msg);
    cr_assert_eq(md_st_count(x), md_st_count(y), "%s and %s differ in entries", a, b);
    for (int i = 0; i < md_st_count(x); i++) {
        const char *n = md_st_name(x, i);
        int j = md_st_find(y, n);
        cr_assert_geq(j, 0, "%s: %s is missing", b, n);
        int64_t sx[MD_MAX_DIMS], sy[MD_MAX_DIMS];
        int nx = md_st_shape(x, i, sx), ny = md_st_shape(y, j, sy);
        cr_assert_eq(nx, ny, "%s: ndim", n);
        int64_t numel = 1;
        for (int d = 0; d < nx; d++) {
            cr_assert_eq(sx[d], sy[d], "%s: shape", n);
            numel *= sx[d];
        }
        cr_assert_eq(md_st_dtype(x, i), md_st_dtype(y, j), "%s: dtype", n);
        cr_assert_eq(memcmp(md_st_data(x, i), md_st_data(y, j), (size_t)numel * md_dtype_size(md_st_dtype(x, i))),
                     0, "%s differs between %s and %s", n, a, b);
    }
    md_st_close(x);
    md_st_close(y);
}

/* A device model and optimizer after a step, saved; loaded into a CPU model
 * and optimizer and into device ones, saved again: the same files. */
Test(cuda_detector, device_checkpoints_round_trip) {
    NEED_GPU();
    md_error err = { 0 };
    md_ctx_step_reset(ctx);
    char dir[64];
    test_tmpdir(dir, sizeof dir, "mmdet_cudadet");
    char p0[128], p1[128], p2[128];
    snprintf(p0, sizeof p0, "%s/gpu.safetensors", dir);
    snprintf(p1, sizeof p1, "%s/cpu.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/gpu2.safetensors", dir);
    md_cfg *oc = md_cfg_parse("optimizer = { type = \"SGD\"; lr = 0.01; momentum = 0.9; weight_decay = 0.0001; };",
                              "optimizer", &err);
    cr_assert_not_null(oc, "%s", err.msg);
    const md_cfg *ocfg = md_cfg_get(oc, "optimizer");

    md_module *mg = build_on_gpu(retina_cfg, "retina");
    md_optimizer *og = md_optimizer_build(ctx, mg, ocfg, &err);
    cr_assert_not_null(og, "%s", err.msg);
    md_batch b;
    md_img_meta metas[2];
    md_boxes gts[2];
    make_batch(&b, metas, gts);
    md_losses l = { 0 };
    md_module_train(mg, true);
    const md_model_iface *it = mg->cls->iface;
    cr_assert_eq(it->train_step(ctx, mg, &b, &l, &err), 0, "%s", err.msg);
    cr_assert_eq(md_backward(ctx, md_losses_total(ctx, &l), &err), 0, "%s", err.msg);
    cr_assert_eq(md_optimizer_step(og, &err), 0, "%s", err.msg);
    md_ckpt_meta meta = { .epoch = 1, .iter = 1 };
    cr_assert_eq(md_checkpoint_save(p0, mg, og, &meta, &err), 0, "%s", err.msg);

    /* on the CPU */
    md_module *mc = build(retina_cfg, "retina");
    md_optimizer *oc_cpu = md_optimizer_build(ctx, mc, ocfg, &err);
    cr_assert_not_null(oc_cpu, "%s", err.msg);
    md_ckpt_info info;
    cr_assert_eq(md_checkpoint_load(ctx, p0, mc, oc_cpu, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(info.report.missing + info.report.unexpected, 0, "%s", info.report.text);
    cr_assert_eq(md_checkpoint_save(p1, mc, oc_cpu, &meta, &err), 0, "%s", err.msg);
    assert_same_files(p0, p1);
    /* tensor by tensor too, against the device model's values */
    static tlist tc, tg;
    tc.n = tg.n = 0;
    md_module_visit(mc, "", collect, &tc);
    md_module_visit(mg, "", collect, &tg);
    cr_assert_eq(tc.n, tg.n);
    for (int i = 0; i < tc.n; i++) assert_equal(to_cpu(tg.t[i]), tc.t[i], tc.names[i]);

    /* into a fresh device model and optimizer (loading writes device tensors) */
    md_module *mg2 = build_on_gpu(retina_cfg, "retina");
    md_optimizer *og2 = md_optimizer_build(ctx, mg2, ocfg, &err);
    cr_assert_not_null(og2, "%s", err.msg);
    cr_assert_eq(md_checkpoint_load(ctx, p0, mg2, og2, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(md_checkpoint_save(p2, mg2, og2, &meta, &err), 0, "%s", err.msg);
    assert_same_files(p0, p2);

    md_optimizer_free(og);
    md_optimizer_free(oc_cpu);
    md_optimizer_free(og2);
    md_module_free(mg);
    md_module_free(mc);
    md_module_free(mg2);
    md_tensor_free(b.img);
    md_cfg_free(oc);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* bin/mmdet-run with --device cuda: a few iterations of the tiny shapes
 * RetinaNet; the log names the device, the losses are finite, and the
 * checkpoint loads into the config's model on the CPU. */
Test(cuda_detector, mmdet_run_trains_on_the_device) {
    NEED_GPU();
    char dir[64], cmd[1024];
    test_tmpdir(dir, sizeof dir, "mmdet_cudarun");
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s/data --train 12 --val 4 --seed 1 --classes 3 >/dev/null",
             dir);
    cr_assert_eq(system(cmd), 0, "mmdet-shapes failed");
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-run --plugin-dir plugins tests/configs/retinanet_tiny.cfg --work-dir %s/run --seed 0 "
             "--no-validate --device cuda --cfg-options data.train.data_root=%s/data/ runner.max_epochs=1 "
             "checkpoint_config.interval=1 >%s/run.out 2>&1",
             dir, dir, dir);
    int rc = system(cmd);
    char out[256];
    snprintf(out, sizeof out, "%s/run.out", dir);
    FILE *f = fopen(out, "r");
    cr_assert_not_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    cr_assert_eq(rc, 0, "mmdet-run failed:\n%s", text);
    cr_assert(strstr(text, "device cuda:0"), "the log does not name the device:\n%s", text);

    char pattern[256];
    snprintf(pattern, sizeof pattern, "%s/run/*.log.json", dir);
    glob_t g;
    cr_assert_eq(glob(pattern, 0, NULL, &g), 0, "no JSON log");
    int losses = 0;
    for (size_t k = 0; k < g.gl_pathc; k++) {
        FILE *fp = fopen(g.gl_pathv[k], "r");
        char line[4096];
        while (fp && fgets(line, sizeof line, fp)) {
            char *l = strstr(line, "\"loss\": ");
            if (!strstr(line, "\"mode\": \"train\"") || !l) continue;
            double v = atof(l + 8);
            cr_assert(isfinite(v) && v > 0, "loss %g in %s", v, line);
            losses++;
        }
        if (fp) fclose(fp);
    }
    globfree(&g);
    cr_assert_geq(losses, 3, "%d logged losses", losses);

    char wd[128];
    snprintf(wd, sizeof wd, "%s/run", dir);
    char *ck = md_checkpoint_find_latest(wd);
    cr_assert_not_null(ck, "no checkpoint in %s", wd);
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_load("tests/configs/retinanet_tiny.cfg", &err);
    cr_assert_not_null(cfg, "%s", err.msg);
    md_module *m = md_build_from_cfg(ctx, "detectors", md_cfg_get(cfg, "model"), NULL, &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_ckpt_info info;
    cr_assert_eq(md_checkpoint_load(ctx, ck, m, NULL, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(info.report.missing + info.report.unexpected, 0, "%s", info.report.text);
    cr_assert_eq(info.epoch, 1);
    /* trained on the device, loaded on the CPU: finite values throughout */
    static tlist t;
    t.n = 0;
    md_module_visit(m, "", collect, &t);
    for (int i = 0; i < t.n; i++) {
        cr_assert_eq(t.t[i]->device, MD_CPU);
        if (t.t[i]->dtype == MD_F32) cr_assert(isfinite(norm_of(t.t[i])), "%s is not finite", t.names[i]);
    }
    md_module_free(m);
    md_cfg_free(cfg);
    free(ck);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
