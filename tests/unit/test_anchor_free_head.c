/* The AnchorFreeHead base (anchor_free_head.h) through the FCOS head that
 * derives from it (plugins/heads/fcos_head.c), with the stock losses
 * (FocalLoss, IoULoss, CrossEntropyLoss): the MlvlPointGenerator's points and the
 * DistancePointBBoxCoder against hand-worked values; the head built through
 * the "heads" registry with mmdet's state-dict names; points, labels,
 * distances and centerness of a hand-worked case (plain, center sampling,
 * norm_on_bbox, the smallest box); the loss on chosen outputs; get_bboxes
 * on chosen outputs; a few optimizer steps on a synthetic batch whose loss
 * falls, then detections; and classes the base refuses. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <mmdet/anchor_free_head.h>
#include <mmdet/mmdet.h>
#include "rect_batch.h"
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) {
    ctx = test_ctx(7, (const char *const[]){ "plugins/bbox/point_generator.so", "plugins/bbox/distance_point_coder.so",
                                             "plugins/losses/focal_loss.so", "plugins/losses/iou_loss.so",
                                             "plugins/losses/cross_entropy_loss.so", "plugins/heads/fcos_head.so",
                                             "plugins/optimizers/sgd.so", NULL });
    md_ctx_set_threads(ctx, 1);   /* small tensors: threads only spin on a shared machine */
}
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(afh, .init = setup, .fini = teardown, .timeout = 240);

static md_cfg *parse(const char *text) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(text, "test_afh.cfg", &err);
    cr_assert_not_null(root, "%s\n%s", err.msg, text);
    return root;
}

static void *build(const char *registry, const char *text) {
    md_cfg *root = parse(text);
    md_error err = { 0 };
    void *obj = md_build_from_cfg(ctx, registry, md_cfg_get(root, "x"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(obj, "%s", err.msg);
    return obj;
}

static void expect_rows(const md_tensor *t, const float *want, int64_t rows, int cols, const char *what) {
    cr_assert_not_null(t, "%s: %s", what, md_ctx_error(ctx)->msg);
    cr_assert_eq(t->shape[0], rows, "%s: %lld rows, want %lld", what, (long long)t->shape[0], (long long)rows);
    for (int64_t i = 0; i < rows * cols; i++)
        cr_assert_float_eq(md_f32(t)[i], want[i], 1e-5, "%s: row %lld col %lld: %g, want %g", what, (long long)(i / cols),
                           (long long)(i % cols), md_f32(t)[i], want[i]);
}

/* ---- MlvlPointGenerator ---- */
Test(afh, point_generator) {
    md_prior_generator *g = build("prior_generators", "x = { type = \"MlvlPointGenerator\"; strides = (8, [16, 8]); };");
    cr_assert_eq(g->iface->num_levels(g), 2);
    cr_assert_eq(g->iface->num_base_priors(g, 1), 1);
    int sw, sh;
    g->iface->stride(g, 1, &sw, &sh);
    cr_assert(sw == 16 && sh == 8);
    /* (x + 0.5) * stride_w, (y + 0.5) * stride_h, x fastest; then the strides */
    static const float l0[] = { 4, 4, 8, 8, 12, 4, 8, 8, 20, 4, 8, 8, 4, 12, 8, 8, 12, 12, 8, 8, 20, 12, 8, 8 };
    expect_rows(md_grid_priors(ctx, g, 0, 2, 3), l0, 6, 4, "level 0 (2x3)");
    static const float l1[] = { 8, 4, 16, 8, 24, 4, 16, 8 };
    expect_rows(md_grid_priors(ctx, g, 1, 1, 2), l1, 2, 4, "level 1 (1x2, stride [16, 8])");
    md_tensor *v = g->iface->valid_flags(ctx, g, 0, 2, 3, 1, 2);
    static const uint8_t want_v[] = { 1, 1, 0, 0, 0, 0 };
    cr_assert_arr_eq(md_u8(v), want_v, 6, "valid flags of a 1x2 valid region in 2x3");
    cr_assert_null(md_grid_priors(ctx, g, 2, 1, 1));
    cr_assert(strstr(md_ctx_error(ctx)->msg, "level 2 of 2"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_step_reset(ctx);
    MD_BBOX_DESTROY(g);

    g = build("prior_generators", "x = { type = \"MlvlPointGenerator\"; strides = [4]; offset = 0.0; };");
    static const float o0[] = { 0, 0, 4, 4, 4, 0, 4, 4 };
    expect_rows(md_grid_priors(ctx, g, 0, 1, 2), o0, 2, 4, "offset 0");
    MD_BBOX_DESTROY(g);

    md_cfg *root = parse("x = { type = \"MlvlPointGenerator\"; strides = [8, 0]; };");
    md_error err = { 0 };
    cr_assert_null(md_build_from_cfg(ctx, "prior_generators", md_cfg_get(root, "x"), NULL, &err));
    cr_assert(strstr(err.msg, "strides[1] must be positive"), "%s", err.msg);
    md_cfg_free(root);
}

/* ---- DistancePointBBoxCoder ---- */
Test(afh, distance_point_coder) {
    md_bbox_coder *c = build("bbox_coders", "x = { type = \"DistancePointBBoxCoder\"; };");
    /* points as the generator gives them: x, y, stride_w, stride_h */
    static const float pts[] = { 10, 20, 8, 8, 24, 8, 16, 16 }, gt[] = { 4, 6, 30, 40, 20, 2, 40, 30 };
    md_tensor *p = md_tensor_from(ctx, MD_F32, MD_DIMS(2, 4), pts), *g = md_tensor_from(ctx, MD_F32, MD_DIMS(2, 4), gt);
    static const float want_d[] = { 6, 14, 20, 20, 4, 6, 16, 22 };
    md_tensor *d = md_bbox_encode(ctx, c, p, g);
    expect_rows(d, want_d, 2, 4, "encode: (left, top, right, bottom)");
    expect_rows(md_bbox_decode(ctx, c, p, d, NULL), gt, 2, 4, "decode(encode)");
    /* mmdet's max_dis (GFL's reg_max): distances clamped to [0, max_dis - eps] */
    static const float gt_out[] = { 4, 6, 30, 40, 30, 2, 40, 30 };   /* the second point right of its box's x1 */
    static const float want_m[] = { 6, 14, 15.9f, 15.9f, 0, 6, 15.9f, 15.9f };
    expect_rows(md_bbox_encode_max(ctx, c, p, md_tensor_from(ctx, MD_F32, MD_DIMS(2, 4), gt_out), 16, 0.1), want_m,
                2, 4, "encode with max_dis 16, eps 0.1");
    /* clipped to max_shape (h, w) = (30, 25); the gradient stops where it clips */
    static const float want_clip[] = { 4, 6, 25, 30, 20, 2, 25, 30 };
    md_tensor *pred = md_tensor_from(ctx, MD_F32, MD_DIMS(2, 4), want_d);
    pred->requires_grad = true;
    md_tensor *b = md_bbox_decode(ctx, c, p, pred, (const int[]){ 30, 25 });
    expect_rows(b, want_clip, 2, 4, "decode clipped");
    md_error err = { 0 };
    cr_assert_eq(md_backward(ctx, md_sum(ctx, b, MD_DIM_ALL, false), &err), 0, "%s", err.msg);
    static const float want_g[] = { -1, -1, 0, 0, -1, -1, 0, 1 };   /* y2 = 30 lies on the bound */
    expect_rows(pred->grad, want_g, 2, 4, "d sum(boxes) / d distances");
    md_ctx_step_reset(ctx);
    MD_BBOX_DESTROY(c);
}

/* ---- the head ---- */
#define HEAD_KEYS                                                                                                 \
    "type = \"FCOSHead\"; num_classes = 2; in_channels = 4; feat_channels = 8; stacked_convs = 1;\n"         \
    "  strides = [8, 16]; norm_cfg = { type = \"GN\"; num_groups = 4; };\n"                                      \
    "  loss_cls = { type = \"FocalLoss\"; gamma = 2.0; alpha = 0.25; loss_weight = 1.0; };\n"               \
    "  loss_bbox = { type = \"IoULoss\"; loss_weight = 1.0; };\n"                                            \
    "  loss_centerness = { type = \"CrossEntropyLoss\"; use_sigmoid = true; loss_weight = 1.0; };\n"          \
    "  test_cfg = { nms_pre = 100; score_thr = 0.05; nms = { type = \"nms\"; iou_threshold = 0.5; }; max_per_img = 10; };\n"

static md_module *head_with(const char *extra) {
    char text[4096];
    snprintf(text, sizeof text, "x = { " HEAD_KEYS "%s };", extra);
    md_cfg *root = parse(text);
    md_error err = { 0 };
    md_module *m = md_build_dense_head(ctx, md_cfg_get(root, "x"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(m, "%s", err.msg);
    return m;
}

Test(afh, built_through_the_heads_registry) {
    md_module *m = head_with("regress_ranges = ((-1, 16), (16, 1e8));");
    md_anchor_free_head *h = md_anchor_free_head_of(m);
    cr_assert_str_eq(h->prior_generator->type, "MlvlPointGenerator");
    cr_assert_str_eq(h->bbox_coder->type, "DistancePointBBoxCoder");
    cr_assert_eq(h->cls_out_channels, 2, "sigmoid classification: no background channel");
    /* mmdet's state dict names; a conv before GN has no bias (conv_bias "auto") */
    static const char *names[] = { "cls_convs.0.conv.weight", "cls_convs.0.gn.weight", "reg_convs.0.conv.weight",
                                   "reg_convs.0.gn.bias", "conv_cls.weight", "conv_cls.bias", "conv_reg.weight",
                                   "conv_reg.bias", "conv_centerness.weight", "scales.0.scale", "scales.1.scale" };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) cr_assert_not_null(md_module_find(m, names[i]), "%s", names[i]);
    cr_assert_null(md_module_find(m, "cls_convs.0.conv.bias"));
    cr_assert_eq(md_module_find(m, "scales.0.scale")->ndim, 0, "Scale holds a 0-d parameter, as mmcv's");
    cr_assert_float_eq(md_f32(md_module_find(m, "conv_cls.bias"))[0], -log(0.99 / 0.01), 1e-5);
    cr_assert_eq(md_module_find(m, "conv_cls.weight")->shape[0], 2);
    cr_assert_eq(md_module_find(m, "conv_reg.weight")->shape[0], 4);
    /* forward: cls [N, 2, H, W], bbox_pred with the centerness as its fifth channel */
    md_tensor *feats[2] = { md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 4, 4, 4)), md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 4, 2, 2)) };
    md_tensor *cls[2], *reg[2];
    cr_assert_eq(md_dense_head_class_of(m)->forward(ctx, m, feats, 2, cls, reg), 0, "%s", md_ctx_error(ctx)->msg);
    cr_assert(cls[0]->shape[1] == 2 && cls[1]->shape[2] == 2 && reg[0]->shape[1] == 5 && reg[1]->shape[3] == 2);
    /* zero input: distances exp(bias 0 * scale 1) = 1 */
    cr_assert_float_eq(md_f32(md_contiguous(ctx, reg[0]))[0], 1.0f, 1e-6);
    md_ctx_step_reset(ctx);
    md_module_free(m);
}

/* One 32x32 image, strides 8 and 16 (4x4 and 2x2 points), gt boxes `gt`. */
typedef struct hand_case {
    md_batch b;
    md_img_meta meta;
    md_boxes gts;
    md_tensor *cls[2], *reg[2];
} hand_case;

static void hand_batch(hand_case *c, float *gt, int64_t *labels, int n) {
    memset(c, 0, sizeof *c);
    c->meta.img_shape[0] = c->meta.img_shape[1] = c->meta.pad_shape[0] = c->meta.pad_shape[1] = 32;
    c->meta.img_shape[2] = c->meta.pad_shape[2] = 3;
    for (int k = 0; k < 4; k++) c->meta.scale_factor[k] = 1.0f;
    c->gts = (md_boxes){ n, n, gt, labels };
    c->b = (md_batch){ .n = 1, .metas = &c->meta, .gt_bboxes = &c->gts };
    c->cls[0] = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 2, 4, 4));
    c->cls[1] = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 2, 2, 2));
    c->reg[0] = md_tensor_full(ctx, MD_F32, MD_DIMS(1, 5, 4, 4), 1.0);
    c->reg[1] = md_tensor_full(ctx, MD_F32, MD_DIMS(1, 5, 2, 2), 1.0);
}

static md_anchor_free_loss_inputs targets_of(md_module *m, hand_case *c) {
    md_anchor_free_loss_inputs in;
    md_error err = { 0 };
    cr_assert_eq(md_anchor_free_head_loss_inputs(ctx, md_anchor_free_head_of(m), c->cls, c->reg, 2, &c->b, &in, &err), 0,
                 "%s", err.msg);
    return in;
}

/* Point j's label, distances and centerness (bbox weight and score-factor
 * target alike). */
static void expect_target(const md_anchor_free_loss_inputs *in, int64_t j, int64_t label, const float *d, float ctr) {
    cr_assert_eq(md_i64(in->labels)[j], label, "point %lld: label %lld, want %lld", (long long)j,
                 (long long)md_i64(in->labels)[j], (long long)label);
    if (label == 2) return;
    for (int q = 0; q < 4; q++)
        cr_assert_float_eq(md_f32(in->bbox_targets)[j * 4 + q], d[q], 1e-5, "point %lld distance %d: %g, want %g",
                           (long long)j, q, md_f32(in->bbox_targets)[j * 4 + q], d[q]);
    cr_assert_float_eq(md_f32(in->bbox_weights)[j], ctr, 1e-5, "point %lld centerness %g, want %g", (long long)j,
                       md_f32(in->bbox_weights)[j], ctr);
    cr_assert_float_eq(md_f32(in->score_factor_targets)[j], ctr, 1e-5);
}

static float gt_a[] = { 2, 2, 18, 14 };
static int64_t lab_a[] = { 1 };

Test(afh, points_and_targets_by_hand) {
    md_module *m = head_with("regress_ranges = ((-1, 16), (16, 1e8));");
    hand_case c;
    hand_batch(&c, gt_a, lab_a, 1);
    md_anchor_free_loss_inputs in = targets_of(m, &c);
    cr_assert_eq(in.pts.n_levels, 2);
    cr_assert(in.pts.total == 20 && in.pts.counts[0] == 16 && in.pts.counts[1] == 4 && in.pts.begin[1] == 16);
    static const float p5[] = { 12, 12, 8, 8 }, p16[] = { 8, 8, 16, 16 }, p19[] = { 24, 24, 16, 16 };
    expect_rows(md_slice(ctx, in.pts.points, 0, 5, 6, 1), p5, 1, 4, "point 5 (level 0, y 1, x 1)");
    expect_rows(md_slice(ctx, in.pts.points, 0, 16, 17, 1), p16, 1, 4, "point 16 (level 1, y 0, x 0)");
    expect_rows(md_slice(ctx, in.pts.points, 0, 19, 20, 1), p19, 1, 4, "point 19");
    /* Box (2, 2, 18, 14): the level-0 points at x, y in {4, 12} lie inside
     * with their largest distance (14 or 10) in [-1, 16]; level 1's (8, 8)
     * lies inside but its largest distance 10 is below 16. Centerness
     * sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)). */
    static const float d0[] = { 2, 2, 14, 10 }, d1[] = { 10, 2, 6, 10 }, d4[] = { 2, 10, 14, 2 }, d5[] = { 10, 10, 6, 2 };
    const float c02 = sqrtf(2.0f / 14 * (2.0f / 10)), c12 = sqrtf(6.0f / 10 * (2.0f / 10));
    expect_target(&in, 0, 1, d0, c02);
    expect_target(&in, 1, 1, d1, c12);
    expect_target(&in, 4, 1, d4, c02);
    expect_target(&in, 5, 1, d5, c12);
    for (int64_t j = 0; j < 20; j++)
        if (j != 0 && j != 1 && j != 4 && j != 5) expect_target(&in, j, 2, NULL, 0);
    cr_assert_eq(in.num_pos, 4);
    static const int64_t want_pos[] = { 0, 1, 4, 5 };
    cr_assert_arr_eq(md_i64(in.pos_inds), want_pos, sizeof want_pos);
    cr_assert_float_eq(md_f32(in.pos_points)[4 * 3], 12.0f, 0, "the points of the positives");
    md_ctx_step_reset(ctx);
    md_module_free(m);

    /* center_sampling, radius 0.75: the box cut to 6 px around its centre
     * (10, 8), [4, 16] x [2, 14], keeps the points at x = 12 only */
    m = head_with("regress_ranges = ((-1, 16), (16, 1e8)); center_sampling = true; center_sample_radius = 0.75;");
    hand_batch(&c, gt_a, lab_a, 1);
    in = targets_of(m, &c);
    cr_assert_eq(in.num_pos, 2);
    expect_target(&in, 0, 2, NULL, 0);
    expect_target(&in, 1, 1, d1, c12);
    expect_target(&in, 5, 1, d5, c12);
    md_ctx_step_reset(ctx);
    md_module_free(m);

    /* norm_on_bbox: distances over the level's stride; centerness unchanged */
    m = head_with("regress_ranges = ((-1, 16), (16, 1e8)); norm_on_bbox = true;");
    hand_batch(&c, gt_a, lab_a, 1);
    in = targets_of(m, &c);
    static const float d1n[] = { 1.25f, 0.25f, 0.75f, 1.25f };
    expect_target(&in, 1, 1, d1n, c12);
    md_ctx_step_reset(ctx);
    md_module_free(m);

    /* two boxes holding the same points: the smaller wins; the larger one's
     * level-1 points are in its range; no labels (the RPN role): class 0 */
    m = head_with("regress_ranges = ((-1, 16), (16, 1e8));");
    float two[] = { 0, 0, 30, 30, 2, 2, 18, 14 };
    int64_t two_lab[] = { 0, 1 };
    hand_batch(&c, two, two_lab, 2);
    in = targets_of(m, &c);
    expect_target(&in, 5, 1, d5, c12);
    static const float d16[] = { 8, 8, 22, 22 }, d19[] = { 24, 24, 6, 6 };
    expect_target(&in, 16, 0, d16, 8.0f / 22);
    expect_target(&in, 19, 0, d19, 0.25f);
    c.gts.labels = NULL;
    in = targets_of(m, &c);
    expect_target(&in, 5, 0, d5, c12);
    md_ctx_step_reset(ctx);
    md_module_free(m);

    /* both ranges open: the point (4, 4) lies in both boxes, the smaller wins */
    m = head_with("regress_ranges = ((-1, 1e8), (-1, 1e8));");
    hand_batch(&c, two, two_lab, 2);
    in = targets_of(m, &c);
    expect_target(&in, 0, 1, d0, c02);
    static const float d10[] = { 20, 20, 10, 10 };   /* (20, 20): only the large box */
    expect_target(&in, 10, 0, d10, 0.5f);
    md_ctx_step_reset(ctx);
    md_module_free(m);
}

/* Sets bbox_pred (channels 0-3) of level 0's point (y, x) to d * k and its
 * centerness logit (channel 4) to s. */
static void set_point(md_tensor *reg, int64_t y, int64_t x, const float *d, float k, float s) {
    int64_t H = reg->shape[2], W = reg->shape[3];
    for (int q = 0; q < 4; q++) md_f32(reg)[(q * H + y) * W + x] = d[q] * k;
    md_f32(reg)[(4 * H + y) * W + x] = s;
}

Test(afh, loss_by_hand) {
    md_module *m = head_with("regress_ranges = ((-1, 16), (16, 1e8));");
    const md_dense_head_class *hc = md_dense_head_class_of(m);
    static const float d0[] = { 2, 2, 14, 10 }, d1[] = { 10, 2, 6, 10 }, d4[] = { 2, 10, 14, 2 }, d5[] = { 10, 10, 6, 2 };
    for (int k = 1; k <= 2; k++) {
        hand_case c;
        hand_batch(&c, gt_a, lab_a, 1);
        set_point(c.reg[0], 0, 0, d0, (float)k, 0);
        set_point(c.reg[0], 0, 1, d1, (float)k, 0);
        set_point(c.reg[0], 1, 0, d4, (float)k, 0);
        set_point(c.reg[0], 1, 1, d5, (float)k, 0);
        c.reg[0]->requires_grad = true;
        md_losses losses = { 0 };
        md_error err = { 0 };
        cr_assert_eq(hc->loss(ctx, m, c.cls, c.reg, 2, &c.b, &losses, &err), 0, "%s", err.msg);
        cr_assert_eq(losses.n, 3);
        cr_assert_str_eq(losses.names[0], "loss_cls");
        cr_assert_str_eq(losses.names[1], "loss_bbox");
        cr_assert_str_eq(losses.names[2], "loss_centerness");
        /* distances equal to the targets: IoU 1; twice them: each predicted
         * box scales its target by 2 about the point, IoU 1/4, and the
         * centerness-weighted mean of -log(1/4) is log 4 */
        double want_bbox = k == 1 ? 0.0 : log(4.0);
        cr_assert_float_eq(md_tensor_item(losses.values[1]), want_bbox, 1e-5, "k %d: loss_bbox %g, want %g", k,
                           md_tensor_item(losses.values[1]), want_bbox);
        /* centerness logits 0: BCE log 2 whatever the target, over 4 positives */
        cr_assert_float_eq(md_tensor_item(losses.values[2]), log(2.0), 1e-5, "loss_centerness %g",
                           md_tensor_item(losses.values[2]));
        /* focal loss of zero logits over 20 points x 2 classes, 4 positives of class 1, avg 4 */
        double p = 0.5, pos = 0.25 * pow(1 - p, 2) * -log(p), neg = 0.75 * pow(p, 2) * -log(1 - p);
        double want_cls = (4 * pos + (40 - 4) * neg) / 4;
        cr_assert_float_eq(md_tensor_item(losses.values[0]), want_cls, 1e-5, "loss_cls %g, want %g",
                           md_tensor_item(losses.values[0]), want_cls);
        cr_assert_eq(md_backward(ctx, md_losses_total(ctx, &losses), &err), 0, "%s", err.msg);
        cr_assert_not_null(c.reg[0]->grad);
        md_ctx_step_reset(ctx);
    }
    /* no gt: no positives; loss_bbox and loss_centerness are zeros in the graph */
    hand_case c;
    hand_batch(&c, gt_a, lab_a, 0);
    md_losses losses = { 0 };
    md_error err = { 0 };
    cr_assert_eq(hc->loss(ctx, m, c.cls, c.reg, 2, &c.b, &losses, &err), 0, "%s", err.msg);
    cr_assert_float_eq(md_tensor_item(losses.values[1]), 0.0, 0);
    cr_assert_float_eq(md_tensor_item(losses.values[2]), 0.0, 0);
    md_ctx_step_reset(ctx);
    /* outputs of the wrong shape are named */
    hand_batch(&c, gt_a, lab_a, 1);
    c.reg[1] = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 4, 2, 2));
    cr_assert_neq(hc->loss(ctx, m, c.cls, c.reg, 2, &c.b, &losses, &err), 0);
    cr_assert(strstr(err.msg, "level 1") && strstr(err.msg, "[1, 5, H, W]"), "%s", err.msg);
    md_ctx_step_reset(ctx);
    md_module_free(m);
}

Test(afh, get_bboxes_by_hand) {
    md_module *m = head_with("regress_ranges = ((-1, 16), (16, 1e8));");
    hand_case c;
    hand_batch(&c, gt_a, lab_a, 1);
    for (int l = 0; l < 2; l++) md_tensor_fill_(c.cls[l], -10.0);   /* sigmoid 4.5e-5: below score_thr */
    /* level 0, point (12, 4): class 1 logit 2, centerness logit 0, box (9, 2, 17, 10) */
    md_f32(c.cls[0])[(1 * 4 + 0) * 4 + 1] = 2.0f;
    static const float da[] = { 3, 2, 5, 6 };
    set_point(c.reg[0], 0, 1, da, 1, 0);
    /* level 1, point (8, 8): class 0 logit 1, centerness sigmoid 0.75, box
     * (0, 0, 16, 16), clipped to the image's height 12 */
    md_f32(c.cls[1])[0] = 1.0f;
    static const float db[] = { 8, 8, 8, 8 };
    set_point(c.reg[1], 0, 0, db, 1, logf(3.0f));
    c.meta.img_shape[0] = 12;
    for (int k = 0; k < 4; k++) c.meta.scale_factor[k] = 0.5f;
    md_det_result res[1];
    md_error err = { 0 };
    cr_assert_eq(md_dense_head_class_of(m)->get_bboxes(ctx, m, c.cls, c.reg, 2, &c.b, NULL, true, true, res, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(res[0].n, 2);
    /* scores are class score x centerness, best first; boxes rescaled by 1 / 0.5 */
    float sa = 1.0f / (1.0f + expf(-2.0f)) * 0.5f, sb = 1.0f / (1.0f + expf(-1.0f)) * 0.75f;
    const float want[] = { 0, 0, 32, 24, sb, 18, 4, 34, 20, sa };
    for (int i = 0; i < 10; i++)
        cr_assert_float_eq(res[0].bboxes[i], want[i], 1e-5, "value %d: %g, want %g", i, res[0].bboxes[i], want[i]);
    cr_assert(res[0].labels[0] == 0 && res[0].labels[1] == 1);
    md_ctx_step_reset(ctx);
    md_module_free(m);
}

/* ---- training on the rectangles batch ---- */
/* Fixed features of the images: average and max over each stride's cells. */
static md_tensor *cell_features(md_tensor *img, int s) {
    md_tensor *w = md_tensor_zeros(ctx, MD_F32, MD_DIMS(3, 3, s, s));
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < s * s; i++) md_f32(w)[(c * 3 + c) * s * s + i] = 1.0f / (float)(s * s);
    md_tensor *parts[2] = { md_conv2d(ctx, img, w, NULL, MD_CONV2D(s, 0)), md_max_pool2d(ctx, img, s, s, 0, false) };
    return md_cat(ctx, parts, 2, 1);
}

static double iou(const float *a, const float *b) {
    double iw = fmin(a[2], b[2]) - fmax(a[0], b[0]), ih = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    double inter = iw > 0 && ih > 0 ? iw * ih : 0;
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter);
}

Test(afh, trains_and_detects) {
    char text[4096];
    snprintf(text, sizeof text,
             "x = { type = \"FCOSHead\"; num_classes = 3; in_channels = 6; feat_channels = 16; stacked_convs = 2;\n"
             "  strides = [8, 16]; regress_ranges = ((-1, 24), (24, 1e8)); norm_cfg = { type = \"GN\"; num_groups = 4; };\n"
             "  center_sampling = true; norm_on_bbox = true; centerness_on_reg = true;\n"
             "  loss_cls = { type = \"FocalLoss\"; };\n  loss_bbox = { type = \"IoULoss\"; };\n"
             "  loss_centerness = { type = \"CrossEntropyLoss\"; use_sigmoid = true; };\n"
             "  test_cfg = { nms_pre = 1000; score_thr = 0.05; nms = { type = \"nms\"; iou_threshold = 0.5; }; max_per_img = 20; };\n"
             "};");
    md_cfg *root = parse(text);
    md_error err = { 0 };
    md_module *m = md_build_dense_head(ctx, md_cfg_get(root, "x"), NULL, &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_cfg *oc = parse("x = { type = \"SGD\"; lr = 0.01; momentum = 0.9; weight_decay = 0.0001; };");
    md_optimizer *opt = md_optimizer_build(ctx, m, md_cfg_get(oc, "x"), &err);
    cr_assert_not_null(opt, "%s", err.msg);
    md_batch *b = rect_batch_new(ctx);
    const int iters = 100;
    double first = 0, last = 0;
    for (int it = 0; it < iters; it++) {
        md_tensor *feats[2] = { cell_features(b->img, 8), cell_features(b->img, 16) };
        md_losses losses = { 0 };
        md_optimizer_zero_grad(opt);
        cr_assert_eq(md_dense_head_forward_train(ctx, m, feats, 2, b, NULL, &losses, NULL, &err), 0, "iter %d: %s", it,
                     err.msg);
        md_tensor *total = md_losses_total(ctx, &losses);
        double v = md_tensor_item(total);
        cr_assert(isfinite(v), "iter %d: loss %g", it, v);
        if (it < 5) first += v / 5;
        if (it >= iters - 5) last += v / 5;
        cr_assert_eq(md_backward(ctx, total, &err), 0, "%s", err.msg);
        if (it == 0)
            for (int k = 0; k < 2; k++) {
                /* every loss reaches the head: the centerness conv, the level scales */
                const char *p = k ? "scales.0.scale" : "conv_centerness.weight";
                md_tensor *g = md_module_find(m, p)->grad;
                cr_assert(g && fabs(md_tensor_get(g, 0)) > 0, "no gradient on %s", p);
            }
        md_optimizer_clip_grad_norm(opt, 35, 2);   /* FCOS's configs clip at 35 */
        cr_assert_eq(md_optimizer_step(opt, &err), 0, "%s", err.msg);
        md_ctx_step_reset(ctx);
    }
    cr_assert_lt(last, 0.7 * first, "mean loss of the first 5 iterations %.4f, of the last 5 %.4f", first, last);

    md_module_train(m, false);
    md_grad_set_enabled(ctx, false);
    md_tensor *feats[2] = { cell_features(b->img, 8), cell_features(b->img, 16) };
    md_det_result res[2];
    cr_assert_eq(md_dense_head_simple_test(ctx, m, feats, 2, b, true, res, &err), 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        cr_assert(res[i].n > 0 && res[i].n <= 20, "image %d: %d detections", i, res[i].n);
        for (int d = 0; d < res[i].n; d++) {
            const float *q = res[i].bboxes + 5 * d;
            cr_assert(res[i].labels[d] >= 0 && res[i].labels[d] < 3);
            cr_assert(q[0] >= 0 && q[1] >= 0 && q[2] <= 2 * RECT_IMG && q[3] <= 2 * RECT_IMG && q[0] <= q[2] && q[1] <= q[3],
                      "image %d detection %d: (%g, %g, %g, %g) outside the original image", i, d, q[0], q[1], q[2], q[3]);
        }
        /* every rectangle is found by a detection of its class (boxes in the
         * original image's pixels, twice the input's) */
        for (int k = 0; k < 2; k++) {
            const float *g = b->gt_bboxes[i].xyxy + 4 * k;
            float g2[4] = { 2 * g[0], 2 * g[1], 2 * g[2], 2 * g[3] };
            double best = 0;
            for (int d = 0; d < res[i].n; d++)
                if (res[i].labels[d] == b->gt_bboxes[i].labels[k]) best = fmax(best, iou(res[i].bboxes + 5 * d, g2));
            cr_assert_gt(best, 0.5, "image %d gt %d: best IoU of a detection of its class %.3f", i, k, best);
        }
    }
    md_grad_set_enabled(ctx, true);
    md_ctx_step_reset(ctx);
    rect_batch_free(b);
    md_optimizer_free(opt);
    md_cfg_free(oc);
    md_module_free(m);
    md_cfg_free(root);
}

/* ---- classes the base refuses ---- */
static int no_targets_stub(md_ctx *c, md_anchor_free_head *h, const md_anchor_free_points *p, const md_boxes *gt,
                           const int64_t *l, md_anchor_free_target *o, md_error *err) {
    (void)c, (void)h, (void)p, (void)gt, (void)l, (void)o, (void)err;
    return 0;
}
static const md_key bare_keys[] = { MD_ANCHOR_FREE_HEAD_KEYS("None"), { 0 } };
static const md_anchor_free_head_class no_targets = {
    .dense = MD_ANCHOR_FREE_HEAD_DENSE("AfhNoTargets", md_anchor_free_head_loss, md_anchor_free_head_get_bboxes),
    .size = sizeof(md_anchor_free_head), .keys = bare_keys };
MD_ANCHOR_FREE_HEAD_REGISTER(no_targets, "AfhNoTargets", bare_keys, "test: no get_targets")
static const md_anchor_free_head_class no_forward = {
    .dense = MD_ANCHOR_FREE_HEAD_DENSE("AfhScoreFactorNoForward", md_anchor_free_head_loss, md_anchor_free_head_get_bboxes),
    .size = sizeof(md_anchor_free_head), .keys = bare_keys, .get_targets = no_targets_stub, .with_score_factors = true };
MD_ANCHOR_FREE_HEAD_REGISTER(no_forward, "AfhScoreFactorNoForward", bare_keys, "test: a score factor, no forward_single")
static const md_anchor_free_head_class plain = {
    .dense = MD_ANCHOR_FREE_HEAD_DENSE("AfhPlain", md_anchor_free_head_loss, md_anchor_free_head_get_bboxes),
    .size = sizeof(md_anchor_free_head), .keys = bare_keys, .get_targets = no_targets_stub };
MD_ANCHOR_FREE_HEAD_REGISTER(plain, "AfhPlain", bare_keys, "test: the base's layers and forward")

/* The build error of a `type` head with `extra` keys ("" when it builds). */
static const char *refusal(const char *type, const char *extra) {
    static char msg[1024];
    char text[1024];
    snprintf(text, sizeof text, "x = { type = \"%s\"; num_classes = 2; in_channels = 4; feat_channels = 8;"
             " loss_cls = { type = \"FocalLoss\"; }; loss_bbox = { type = \"IoULoss\"; }; %s };", type, extra);
    md_cfg *root = parse(text);
    md_error err = { 0 };
    md_module *m = md_build_dense_head(ctx, md_cfg_get(root, "x"), NULL, &err);
    md_cfg_free(root);
    if (m) md_module_free(m);
    snprintf(msg, sizeof msg, "%s", m ? "" : err.msg);
    return msg;
}

Test(afh, incomplete_classes_are_refused) {
    const char *msg = refusal("AfhNoTargets", "");
    cr_assert(strstr(msg, "AfhNoTargets") && strstr(msg, "get_targets"), "%s", msg);
    msg = refusal("AfhScoreFactorNoForward", "");
    cr_assert(strstr(msg, "AfhScoreFactorNoForward") && strstr(msg, "forward_single"), "%s", msg);
    /* a class with only its target rule gets the base's layers and forward */
    cr_assert_str_eq(refusal("AfhPlain", ""), "");
    /* deformable convs: DCNv2 last (with a bias), DCN everywhere only with
     * a norm (mmcv's DeformConv2d has no bias) */
    cr_assert_str_eq(refusal("AfhPlain", "dcn_on_last_conv = true;"), "");
    cr_assert_str_eq(refusal("AfhPlain", "conv_cfg = { type = \"DCN\"; deform_groups = 2; };"
                                         " norm_cfg = { type = \"GN\"; num_groups = 2; };"), "");
    msg = refusal("AfhPlain", "conv_cfg = { type = \"DCN\"; };");
    cr_assert(strstr(msg, "bias"), "%s", msg);
    msg = refusal("AfhPlain", "conv_cfg = { type = \"DCN\"; fallback_on_stride = true; };");
    cr_assert(strstr(msg, "fallback_on_stride"), "%s", msg);
    msg = refusal("AfhPlain", "conv_cfg = { type = \"DCNv3\"; };");
    cr_assert(strstr(msg, "conv_cfg") && strstr(msg, "DCNv3"), "%s", msg);
    msg = refusal("AfhPlain", "conv_bias = \"yes\";");
    cr_assert(strstr(msg, "conv_bias"), "%s", msg);
    msg = refusal("AfhPlain", "strides = [8, 0];");
    cr_assert(strstr(msg, "strides") && strstr(msg, "positive"), "%s", msg);
    /* and a derived head checks its own keys */
    msg = refusal("FCOSHead", "strides = [8, 16]; norm_cfg = { type = \"BN\"; }; regress_ranges = ([-1, 64]);"
                  " loss_centerness = { type = \"CrossEntropyLoss\"; use_sigmoid = true; };");
    cr_assert(strstr(msg, "regress_ranges: 1 ranges for 2 strides"), "%s", msg);
}

/* ---- checkpoints of early mmdet: fcos_cls, fcos_reg, fcos_centerness ---- */
Test(afh, early_predictor_names_load) {
    md_module *m = head_with("regress_ranges = ((-1, 16), (16, 1e8));");
    md_error err = { 0 };
    md_st *st = md_pth_open_weights("tests/fixtures/fcos_old_names.pth", &err);
    cr_assert_not_null(st, "%s", err.msg);
    md_load_report rep;
    cr_assert_eq(md_module_load_state(ctx, m, st, NULL, true, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.missing + rep.unexpected + rep.mismatched, 0, "%s", rep.text);
    static const char *const pairs[][2] = { { "conv_cls.weight", "fcos_cls.weight" },
                                            { "conv_reg.bias", "fcos_reg.bias" },
                                            { "conv_centerness.weight", "fcos_centerness.weight" } };
    for (int i = 0; i < 3; i++) {
        int k = md_st_find(st, pairs[i][1]);
        cr_assert_geq(k, 0);
        md_tensor *t = md_module_find(m, pairs[i][0]);
        cr_assert_not_null(t, "%s", pairs[i][0]);
        cr_assert_eq(memcmp(md_f32(t), md_st_data(st, k), sizeof(float) * (size_t)md_tensor_numel(t)), 0, "%s",
                     pairs[i][0]);
    }
    md_st_close(st);
    md_module_free(m);
}

/* ---- dcn_on_last_conv: mmdet's layers and state-dict names ---- */
Test(afh, dcn_on_last_conv_layers) {
    md_module *m = head_with("regress_ranges = ((-1, 16), (16, 1e8)); dcn_on_last_conv = true;");
    /* the last (here the only) conv of each branch a DCNv2 (GN after it:
     * no bias), its conv_offset from mmdet's Normal(std 0.01) init */
    static const char *const names[] = { "cls_convs.0.conv.weight", "cls_convs.0.conv.conv_offset.weight",
                                         "cls_convs.0.conv.conv_offset.bias", "reg_convs.0.conv.conv_offset.weight",
                                         "cls_convs.0.gn.weight", NULL };
    for (int i = 0; names[i]; i++) cr_assert_not_null(md_module_find(m, names[i]), "%s", names[i]);
    cr_assert_null(md_module_find(m, "cls_convs.0.conv.bias"));
    md_tensor *off = md_module_find(m, "cls_convs.0.conv.conv_offset.weight");
    cr_assert_eq(off->shape[0], 27);   /* 3 * deform_groups * 3 * 3 */
    double ss = 0;
    for (int64_t i = 0; i < md_tensor_numel(off); i++) ss += md_f32(off)[i] * md_f32(off)[i];
    double sd = sqrt(ss / (double)md_tensor_numel(off));
    cr_assert(sd > 0.008 && sd < 0.012, "conv_offset std %g, want about 0.01", sd);
    /* DCNv2's own init: U(+-1/sqrt(in * 9)) */
    md_tensor *w = md_module_find(m, "cls_convs.0.conv.weight");
    double mx = 0;
    for (int64_t i = 0; i < md_tensor_numel(w); i++) mx = fmax(mx, fabs(md_f32(w)[i]));
    cr_assert(mx <= 1 / sqrt(36.0) && mx > 0.8 / sqrt(36.0), "max |w| %g", mx);
    /* the forward runs through the deformable conv and trains */
    md_tensor *feats[2] = { randn_param(ctx, MD_DIMS(1, 4, 8, 8), 1), randn_param(ctx, MD_DIMS(1, 4, 4, 4), 2) };
    md_tensor *cls[2], *reg[2];
    cr_assert_eq(md_dense_head_class_of(m)->forward(ctx, m, feats, 2, cls, reg), 0, "%s", md_ctx_error(ctx)->msg);
    md_error err = { 0 };
    md_tensor *loss = md_add(ctx, md_sum(ctx, cls[0], MD_DIM_ALL, false), md_sum(ctx, reg[1], MD_DIM_ALL, false));
    cr_assert_eq(md_backward(ctx, loss, &err), 0, "%s", err.msg);
    cr_assert_not_null(md_module_find(m, "cls_convs.0.conv.conv_offset.weight")->grad);
    cr_assert_not_null(md_module_find(m, "cls_convs.0.conv.weight")->grad);
    md_ctx_step_reset(ctx);
    md_module_free(m);
}
