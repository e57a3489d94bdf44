/* Faster R-CNN end to end in process: the tiny config builds through the
 * registries (mmdet state dict names), train_step gives mmdet's named
 * losses, the loss falls over a few dozen SGD steps on a generated batch of
 * rectangles, and simple_test returns rescaled detections that find them. */
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
    md_ctx_set_threads(ctx, 1);   /* small tensors: threads only spin on a shared machine */
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins", &err), 0, "%s", err.msg);
}
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(twostage, .init = setup, .fini = teardown, .timeout = 120);

#define IMG RECT_IMG

static md_module *build_model(md_cfg **root) {
    md_error err = { 0 };
    *root = md_cfg_load("tests/configs/faster_rcnn_tiny.cfg", &err);
    cr_assert_not_null(*root, "%s", err.msg);
    md_module *m = md_build_from_cfg(ctx, "detectors", md_cfg_get(*root, "model"), NULL, &err);
    cr_assert_not_null(m, "%s", err.msg);
    return m;
}

Test(twostage, builds_with_mmdet_names) {
    md_cfg *root;
    md_module *m = build_model(&root);
    static const char *names[] = { "backbone.layer1.0.conv1.weight", "neck.lateral_convs.0.conv.weight",
                                   "rpn_head.rpn_conv.weight", "rpn_head.rpn_cls.weight", "rpn_head.rpn_reg.bias",
                                   "roi_head.bbox_head.shared_fcs.0.weight", "roi_head.bbox_head.shared_fcs.1.bias",
                                   "roi_head.bbox_head.fc_cls.weight", "roi_head.bbox_head.fc_reg.weight" };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        cr_assert_not_null(md_module_find(m, names[i]), "no %s", names[i]);
    cr_assert_eq(md_module_find(m, "rpn_head.rpn_cls.weight")->shape[0], 3);
    cr_assert_eq(md_module_find(m, "roi_head.bbox_head.fc_reg.weight")->shape[0], 12);
    cr_assert_eq(md_module_find(m, "roi_head.bbox_head.fc_cls.weight")->shape[0], 4);
    md_module_free(m);
    md_cfg_free(root);

    /* a typo in a head's config is reported with the path */
    md_error err = { 0 };
    root = md_cfg_load("tests/configs/faster_rcnn_tiny.cfg", &err);
    cr_assert_eq(md_cfg_apply_option(root, "model.roi_head.bbox_head.num_clases=3", &err), 0, "%s", err.msg);
    cr_assert_null(md_build_from_cfg(ctx, "detectors", md_cfg_get(root, "model"), NULL, &err));
    cr_assert(strstr(err.msg, "num_classes"), "%s", err.msg);
    md_cfg_free(root);
}

Test(twostage, trains_and_detects) {
    md_cfg *root;
    md_module *m = build_model(&root);
    md_error err = { 0 };
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
        if (it == 0) {
            static const char *want[] = { "loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "acc", "loss_bbox" };
            cr_assert_eq(losses.n, 5);
            for (int k = 0; k < 5; k++) cr_assert_str_eq(losses.names[k], want[k]);
            /* untrained RPN: sigmoid CE near log 2 */
            cr_assert(fabs(md_tensor_item(losses.values[0]) - log(2.0)) < 0.05, "loss_rpn_cls %g",
                      md_tensor_item(losses.values[0]));
        }
        md_tensor *total = md_losses_total(ctx, &losses);
        cr_assert_not_null(total);
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
        cr_assert_leq(res[i].n, 100);
        /* the best detection of each gt's class overlaps it (in original pixels: x2) */
        for (int k = 0; k < 2; k++) {
            const float *g = b->gt_bboxes[i].xyxy + 4 * k;
            double best = 0;
            for (int d = 0; d < res[i].n; d++) {
                const float *q = res[i].bboxes + 5 * d;
                cr_assert(q[4] > 0.05 && q[4] <= 1, "score %g", q[4]);
                cr_assert(q[0] >= 0 && q[2] <= 2 * IMG && q[1] >= 0 && q[3] <= 2 * IMG, "box outside the image");
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
