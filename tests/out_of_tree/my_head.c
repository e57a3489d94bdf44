/* my_head.c: a third-party dense head, compiled outside the tree against an
 * installed core (docs/plugins.md):
 *
 *   cc -shared -fPIC -o my_head.so my_head.c $(pkg-config --cflags --libs mmdet)
 *
 * A RetinaNet-style head with a different classification branch: the
 * library's AnchorHead owns anchors, targets, the losses and get_bboxes,
 * as mmdet's AnchorHead does for a subclass that overrides _init_layers
 * and forward_single. Here the classification branch is a 1x1 bottleneck
 * (cls_reduce, ReLU) before a 3x3 conv (cls_conv, ReLU) and conv_cls; the
 * regression branch one 3x3 conv (reg_conv, ReLU) and conv_reg. */
#include <mmdet/anchor_head.h>
#include <mmdet/mmdet.h>

typedef struct my_head { md_anchor_head base; int reduce_channels; } my_head;

static const md_key keys[] = {
    MD_DENSE_HEAD_NUM_CLASSES_KEY,
    MD_ANCHOR_HEAD_KEYS(MD_ANCHOR_HEAD_DEFAULT_ANCHORS),
    { "reduce_channels", MD_KEY_INT, "32", "width of the classification bottleneck", false,
      MD_AT(my_head, reduce_channels), .min = "1" },
    { 0 } };

static int init_layers(md_ctx *ctx, md_anchor_head *h, md_error *err) {
    md_module *m = &h->base;
    int r = ((my_head *)h)->reduce_channels, f = h->feat_channels, A = h->num_base_priors;
    return md_anchor_head_add_conv(ctx, m, "cls_reduce", h->in_channels, r, 1, 0.01, 0.0, err) ||
           md_anchor_head_add_conv(ctx, m, "cls_conv", r, f, 3, 0.01, 0.0, err) ||
           md_anchor_head_add_conv(ctx, m, "conv_cls", f, A * h->cls_out_channels, 3, 0.01,
                                   md_bias_init_with_prob(0.01), err) ||
           md_anchor_head_add_conv(ctx, m, "reg_conv", h->in_channels, f, 3, 0.01, 0.0, err) ||
           md_anchor_head_add_conv(ctx, m, "conv_reg", f, A * 4, 3, 0.01, 0.0, err);
}

static int forward_single(md_ctx *ctx, md_anchor_head *h, md_tensor *x, int level, md_tensor **cls,
                          md_tensor **reg) {
    md_module *m = &h->base;
    (void)level;
    md_tensor *c = md_relu(ctx, md_module_call(ctx, m, "cls_reduce", x));
    c = md_relu(ctx, md_module_call(ctx, m, "cls_conv", c));
    *cls = md_module_call(ctx, m, "conv_cls", c);
    *reg = md_module_call(ctx, m, "conv_reg", md_relu(ctx, md_module_call(ctx, m, "reg_conv", x)));
    return *cls && *reg ? 0 : -1;
}

static const md_anchor_head_class my_head_cls = {
    .dense = MD_ANCHOR_HEAD_DENSE("MyHead", md_anchor_head_get_bboxes),
    .size = sizeof(my_head),
    .keys = keys,
    .init_layers = init_layers,
    .forward_single = forward_single,
};

MD_PLUGIN("my_head", "1.0", "MIT");
MD_ANCHOR_HEAD_REGISTER(my_head_cls, "MyHead", keys, "an out-of-tree head (plugin guide example)")
