/* One dense-head interface (bbox.h) for both detectors: a Faster R-CNN
 * whose rpn_head is a RetinaHead (num_classes set to 1, its losses renamed
 * rpn_*) trains and finds generated rectangles; its proposals are exactly
 * the detections of a RetinaNet holding the same weights; an RPNHead serves
 * as a SingleStageDetector's bbox_head; and a module that is not a dense
 * head is refused by name. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>
#include <mmdet/roi_head.h>
#include "rect_batch.h"
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) {
    md_error err = { 0 };
    ctx = md_ctx_new(NULL);
    md_log_set_quiet(ctx, true);
    md_ctx_seed(ctx, 5);
    md_ctx_set_threads(ctx, 1);   /* small tensors: threads only spin on a shared machine */
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins", &err), 0, "%s", err.msg);
}
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(dense_head, .init = setup, .fini = teardown, .timeout = 120);


/* A RetinaHead for the tiny Faster R-CNN's 16-channel FPN levels. */
#define RETINA_HEAD                                                                                               \
    "{ type = \"RetinaHead\"; num_classes = %d; in_channels = 16; stacked_convs = 1; feat_channels = 16;\n"     \
    "  anchor_generator = { type = \"AnchorGenerator\"; octave_base_scale = 4; scales_per_octave = 2;\n"         \
    "                       ratios = [0.5, 1.0, 2.0]; strides = [4, 8, 16, 32, 64]; };\n"                        \
    "  bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0];\n"                     \
    "                 target_stds = [1.0, 1.0, 1.0, 1.0]; };\n"                                                    \
    "  loss_cls = { type = \"FocalLoss\"; use_sigmoid = true; gamma = 2.0; alpha = 0.25; loss_weight = 1.0; };\n" \
    "  loss_bbox = { type = \"L1Loss\"; loss_weight = 1.0; }; }"

/* tests/configs/faster_rcnn_tiny.cfg's model with model.`key` replaced by
 * the group `text` (in "h = ...;"). */
static md_cfg *tiny_with(const char *key, const char *text) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_load("tests/configs/faster_rcnn_tiny.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_cfg *h = md_cfg_parse(text, "head.cfg", &err);
    cr_assert_not_null(h, "%s\n%s", err.msg, text);
    md_cfg *model = (md_cfg *)md_cfg_get(root, "model");
    cr_assert_not_null(md_cfg_set_copy(model, key, md_cfg_get(h, "h")));
    md_cfg_free(h);
    return root;
}

static md_module *build_detector(const md_cfg *root) {
    md_error err = { 0 };
    md_module *m = md_build_from_cfg(ctx, "detectors", md_cfg_get(root, "model"), NULL, &err);
    cr_assert_not_null(m, "%s", err.msg);
    return m;
}

/* Features of the batch through the detector's own backbone and neck. */
static int features(md_module *det, md_batch *b, md_tensor **feats) {
    int n = md_backbone_forward(ctx, md_module_child(det, "backbone"), b->img, feats, MD_MAX_LEVELS);
    cr_assert_gt(n, 0, "%s", md_ctx_error(ctx)->msg);
    n = md_neck_forward(ctx, md_module_child(det, "neck"), feats, n, feats, MD_MAX_LEVELS);
    cr_assert_gt(n, 0, "%s", md_ctx_error(ctx)->msg);
    return n;
}

/* The best IoU of a detection of `label` with gt box g (given in the input
 * image's pixels; detections in the original image's, twice as large). */
static double best_iou(const md_det_result *r, const float *g, int64_t label) {
    double best = 0;
    for (int d = 0; d < r->n; d++) {
        const float *q = r->bboxes + 5 * d;
        if (r->labels[d] != label) continue;
        double iw = fmin(q[2], 2 * g[2]) - fmax(q[0], 2 * g[0]), ih = fmin(q[3], 2 * g[3]) - fmax(q[1], 2 * g[1]);
        double inter = iw > 0 && ih > 0 ? iw * ih : 0;
        double u = (q[2] - q[0]) * (q[3] - q[1]) + 4.0 * (g[2] - g[0]) * (g[3] - g[1]) - inter;
        if (inter / u > best) best = inter / u;
    }
    return best;
}

Test(dense_head, retina_head_as_rpn_trains_and_detects) {
    char text[2048];
    snprintf(text, sizeof text, "h = " RETINA_HEAD ";", 3);
    md_cfg *root = tiny_with("rpn_head", text);
    md_module *m = build_detector(root);
    md_module *rpn = md_module_child(m, "rpn_head");
    cr_assert_str_eq(rpn->cls->name, "RetinaHead");
    /* num_classes 3 in its config, 1 as an RPN: 6 anchors x 1 class */
    cr_assert_eq(md_module_find(m, "rpn_head.retina_cls.weight")->shape[0], 6);
    cr_assert_not_null(md_module_find(m, "rpn_head.cls_convs.0.conv.weight"));

    md_error err = { 0 };
    md_cfg *oc = md_cfg_parse("optimizer = { type = \"SGD\"; lr = 0.01; momentum = 0.9; weight_decay = 0.0001; };",
                              "opt.cfg", &err);
    md_optimizer *opt = md_optimizer_build(ctx, m, md_cfg_get(oc, "optimizer"), &err);
    cr_assert_not_null(opt, "%s", err.msg);
    md_batch *b = rect_batch_new(ctx);
    const md_model_iface *mi = m->cls->iface;
    double first = 0, last = 0;
    const int iters = 100;
    md_tensor *w = md_module_find(m, "rpn_head.retina_cls.weight");
    for (int it = 0; it < iters; it++) {
        md_losses losses = { 0 };
        md_optimizer_zero_grad(opt);
        cr_assert_eq(mi->train_step(ctx, m, b, &losses, &err), 0, "iter %d: %s", it, err.msg);
        if (it == 0) {
            /* RetinaHead's loss_cls / loss_bbox renamed: no clash with the RoI head's */
            static const char *want[] = { "rpn_loss_cls", "rpn_loss_bbox", "loss_cls", "acc", "loss_bbox" };
            cr_assert_eq(losses.n, 5);
            for (int k = 0; k < 5; k++) cr_assert_str_eq(losses.names[k], want[k]);
        }
        md_tensor *total = md_losses_total(ctx, &losses);
        cr_assert_not_null(total);
        double v = md_tensor_item(total);
        cr_assert(isfinite(v), "iter %d: loss %g", it, v);
        if (it < 5) first += v / 5;
        if (it >= iters - 5) last += v / 5;
        cr_assert_eq(md_backward(ctx, total, &err), 0, "%s", err.msg);
        if (it == 0) {
            /* the RPN's loss reaches the head's weights */
            double g = 0;
            cr_assert_not_null(w->grad);
            for (int64_t i = 0; i < md_tensor_numel(w->grad); i++) g += fabs(md_f32(w->grad)[i]);
            cr_assert_gt(g, 0, "no gradient on rpn_head.retina_cls.weight");
        }
        md_optimizer_clip_grad_norm(opt, 35, 2);
        cr_assert_eq(md_optimizer_step(opt, &err), 0, "%s", err.msg);
        md_ctx_step_reset(ctx);
    }
    cr_assert_lt(last, first * 0.6, "mean loss of the first 5 iterations %.4f, of the last 5 %.4f", first, last);

    md_module_train(m, false);
    md_det_result res[2];
    cr_assert_eq(mi->simple_test(ctx, m, b, res, &err), 0, "%s", err.msg);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++) {
            double iou = best_iou(&res[i], b->gt_bboxes[i].xyxy + 4 * k, b->gt_bboxes[i].labels[k]);
            cr_assert_gt(iou, 0.5, "image %d gt %d: best IoU of its class %.3f", i, k, iou);
        }
    md_ctx_step_reset(ctx);
    rect_batch_free(b);
    md_optimizer_free(opt);
    md_cfg_free(oc);
    md_module_free(m);
    md_cfg_free(root);
}

/* Copies every parameter and buffer of `dst` from `src`'s entry named with
 * `from` in place of `to` at the front ("bbox_head." <- "rpn_head."). */
struct copy_ctx { md_module *src; const char *to, *from; int n; };
static int copy_one(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)is_param;
    struct copy_ctx *c = user;
    char sname[256];
    size_t tl = strlen(c->to);
    snprintf(sname, sizeof sname, "%s%s", strncmp(name, c->to, tl) ? "" : c->from, strncmp(name, c->to, tl) ? name : name + tl);
    md_tensor *s = md_module_find(c->src, sname);
    cr_assert_not_null(s, "%s (from %s) not in the source", name, sname);
    cr_assert_eq(md_tensor_numel(s), md_tensor_numel(t), "%s: sizes differ", name);
    memcpy(t->data, s->data, (size_t)md_tensor_numel(t) * md_dtype_size(t->dtype));
    c->n++;
    return 0;
}

/* The RPN role goes through the same interface calls as the single-stage
 * role: the proposals of simple_test_rpn are the detections of a RetinaNet
 * with the same weights and test_cfg.rpn as its test_cfg, before rescale. */
Test(dense_head, proposals_are_the_single_stage_detections) {
    char text[2048];
    snprintf(text, sizeof text, "h = " RETINA_HEAD ";", 1);
    md_cfg *root = tiny_with("rpn_head", text);
    md_module *two = build_detector(root);

    /* RetinaNet: the same backbone and neck, the head as bbox_head */
    md_error err = { 0 };
    md_cfg *one_root = md_cfg_clone(root);
    md_cfg *model = (md_cfg *)md_cfg_get(one_root, "model");
    md_cfg_set_str(model, "type", "RetinaNet");
    md_cfg *head = md_cfg_clone(md_cfg_get(model, "rpn_head"));
    md_cfg_set_copy(model, "bbox_head", head);
    md_cfg_free(head);
    md_cfg_remove(model, "rpn_head");
    md_cfg_remove(model, "roi_head");
    md_cfg_set_copy(model, "train_cfg", md_cfg_get(root, "model.train_cfg.rpn"));
    md_cfg_set_copy(model, "test_cfg", md_cfg_get(root, "model.test_cfg.rpn"));
    md_module *one = md_build_from_cfg(ctx, "detectors", model, NULL, &err);
    cr_assert_not_null(one, "%s", err.msg);
    struct copy_ctx cc = { two, "bbox_head.", "rpn_head.", 0 };
    cr_assert_eq(md_module_visit(one, "", copy_one, &cc), 0);
    cr_assert_gt(cc.n, 20);
    md_module_train(two, false);
    md_module_train(one, false);
    md_grad_set_enabled(ctx, false);

    md_batch *b = rect_batch_new(ctx);
    md_tensor *feats[MD_MAX_LEVELS], *props[2];
    int n = features(two, b, feats);
    cr_assert_eq(md_dense_head_simple_test_rpn(ctx, md_module_child(two, "rpn_head"), feats, n, b, props, &err), 0,
                 "%s", err.msg);
    md_det_result res[2];
    const md_model_iface *mi = one->cls->iface;
    cr_assert_eq(mi->simple_test(ctx, one, b, res, &err), 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        cr_assert_gt(props[i]->shape[0], 10, "image %d: %lld proposals", i, (long long)props[i]->shape[0]);
        cr_assert_eq(res[i].n, props[i]->shape[0], "image %d: %d detections, %lld proposals", i, res[i].n,
                     (long long)props[i]->shape[0]);
        for (int d = 0; d < res[i].n; d++) {
            cr_assert_eq(res[i].labels[d], 0);
            for (int q = 0; q < 5; q++) {
                float want = md_f32(props[i])[5 * d + q] / (q < 4 ? 0.5f : 1.0f);
                cr_assert(fabsf(res[i].bboxes[5 * d + q] - want) <= 1e-5f * (1 + fabsf(want)),
                          "image %d detection %d value %d: %g, proposal %g", i, d, q, res[i].bboxes[5 * d + q], want);
            }
        }
    }
    md_ctx_step_reset(ctx);
    rect_batch_free(b);
    md_module_free(one);
    md_module_free(two);
    md_cfg_free(one_root);
    md_cfg_free(root);
}

/* And the other way: RPNHead as a SingleStageDetector's bbox_head (mmdet's
 * RPN detector): its losses, and rescaled proposals with label 0. */
Test(dense_head, rpn_head_as_bbox_head) {
    md_cfg *root = tiny_with("rpn_head", "h = { type = \"RPNHead\"; in_channels = 16; feat_channels = 16;\n"
                                         "  anchor_generator = { type = \"AnchorGenerator\"; scales = [4];\n"
                                         "    ratios = [0.5, 1.0, 2.0]; strides = [4, 8, 16, 32, 64]; }; };");
    md_cfg *model = (md_cfg *)md_cfg_get(root, "model");
    md_cfg_set_str(model, "type", "SingleStageDetector");
    md_cfg *head = md_cfg_clone(md_cfg_get(model, "rpn_head"));
    md_cfg_set_copy(model, "bbox_head", head);
    md_cfg_free(head);
    md_cfg_remove(model, "rpn_head");
    md_cfg_remove(model, "roi_head");
    md_cfg *tr = md_cfg_clone(md_cfg_get(model, "train_cfg.rpn")), *te = md_cfg_clone(md_cfg_get(model, "test_cfg.rpn"));
    md_cfg_set_copy(model, "train_cfg", tr);
    md_cfg_set_copy(model, "test_cfg", te);
    md_cfg_free(tr);
    md_cfg_free(te);
    md_module *m = build_detector(root);
    cr_assert_not_null(md_module_find(m, "bbox_head.rpn_conv.weight"));
    md_error err = { 0 };
    md_batch *b = rect_batch_new(ctx);
    const md_model_iface *mi = m->cls->iface;
    md_losses losses = { 0 };
    cr_assert_eq(mi->train_step(ctx, m, b, &losses, &err), 0, "%s", err.msg);
    cr_assert_eq(losses.n, 2);
    cr_assert_str_eq(losses.names[0], "loss_rpn_cls");
    cr_assert_str_eq(losses.names[1], "loss_rpn_bbox");
    md_ctx_step_reset(ctx);

    md_module_train(m, false);
    md_grad_set_enabled(ctx, false);
    md_det_result res[2];
    cr_assert_eq(mi->simple_test(ctx, m, b, res, &err), 0, "%s", err.msg);
    md_tensor *feats[MD_MAX_LEVELS], *props[2];
    int n = features(m, b, feats);
    cr_assert_eq(md_dense_head_simple_test_rpn(ctx, md_module_child(m, "bbox_head"), feats, n, b, props, &err), 0,
                 "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        cr_assert_gt(res[i].n, 0);
        cr_assert_eq(res[i].n, props[i]->shape[0]);
        for (int d = 0; d < res[i].n; d++) {
            cr_assert_eq(res[i].labels[d], 0);
            for (int q = 0; q < 5; q++) {
                float want = md_f32(props[i])[5 * d + q] / (q < 4 ? 0.5f : 1.0f);
                cr_assert(fabsf(res[i].bboxes[5 * d + q] - want) <= 1e-5f * (1 + fabsf(want)), "image %d value %d", i, q);
            }
        }
    }
    md_ctx_step_reset(ctx);
    rect_batch_free(b);
    md_module_free(m);
    md_cfg_free(root);
}

/* A head that is not a dense head (a bbox head) is refused as rpn_head. */
Test(dense_head, not_a_dense_head_is_named) {
    md_cfg *root = tiny_with("rpn_head", "h = { type = \"Shared2FCBBoxHead\"; in_channels = 16; num_classes = 1; };");
    md_cfg *model = (md_cfg *)md_cfg_get(root, "model");
    md_cfg_remove(model, "train_cfg");   /* a bbox head takes no train_cfg / test_cfg */
    md_cfg_remove(model, "test_cfg");
    md_error err = { 0 };
    cr_assert_null(md_build_from_cfg(ctx, "detectors", md_cfg_get(root, "model"), NULL, &err));
    cr_assert(strstr(err.msg, "Shared2FCBBoxHead") && strstr(err.msg, "dense head"), "%s", err.msg);
    md_cfg_free(root);
}
