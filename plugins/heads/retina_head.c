/* mmdet's RetinaHead (mmdet/models/dense_heads/retina_head.py) on the
 * library's AnchorHead (anchor_head.h), which owns anchors, targets, the
 * loss over levels and get_bboxes. This file is the difference: the
 * stacked_convs 3x3 ConvModules (ReLU, optional norm_cfg) of each branch,
 * then retina_cls (A * C sigmoid logits) and retina_reg (A * 4 deltas).
 * State dict: cls_convs.N.conv.*, reg_convs.N.conv.* (plus .gn.* or .bn.*
 * with a norm_cfg, the conv then without bias), retina_cls.*, retina_reg.*.
 * With BN, one BN per stacked conv is shared by the levels, each call
 * normalising with its own statistics. Init as mmdet's init_cfg: Normal
 * std 0.01 on every conv, retina_cls's bias from prior probability 0.01. */
#include <mmdet/anchor_head.h>
#include <mmdet/mmdet.h>

typedef struct retina_head {
    md_anchor_head base;
    int stacked_convs;
    const md_cfg *conv_cfg, *norm_cfg;
    md_conv_module_opts norm;   /* the stacked convs' ConvModule settings (md_head_add_stacked_convs) */
} retina_head;

static const md_key keys[] = {
    MD_DENSE_HEAD_NUM_CLASSES_KEY,
    MD_ANCHOR_HEAD_KEYS("{ type = \"AnchorGenerator\"; octave_base_scale = 4; scales_per_octave = 3; "
                        "ratios = [0.5, 1.0, 2.0]; strides = [8, 16, 32, 64, 128]; }"),
    { "stacked_convs", MD_KEY_INT, "4", "3x3 convs per branch", false, MD_AT(retina_head, stacked_convs), .min = "0" },
    { "conv_cfg", MD_KEY_ANY, "None", "only None", false, MD_AT(retina_head, conv_cfg) },
    { "norm_cfg", MD_KEY_ANY, "None", "None, { type = \"GN\"; num_groups = 32; } or { type = \"BN\"; } for the stacked convs",
      false, MD_AT(retina_head, norm_cfg) },
    { 0 } };

/* Returns y, after handing back x (the input of the layer that made y)
 * unless x is the level's feature map, which belongs to the caller. */
static md_tensor *release_after(md_ctx *ctx, md_tensor *x, md_tensor *feat, md_tensor *y) {
    if (y && x != feat) md_tensor_release(ctx, x);
    return y;
}

static int forward_single(md_ctx *ctx, md_anchor_head *ah, md_tensor *x, int level, md_tensor **cls,
                          md_tensor **reg) {
    retina_head *h = (retina_head *)ah;
    md_module *m = &ah->base;
    (void)level;
    md_tensor *c = md_head_stacked_forward(ctx, m, "cls_convs", h->stacked_convs, x);
    md_tensor *r = md_head_stacked_forward(ctx, m, "reg_convs", h->stacked_convs, x);
    *cls = release_after(ctx, c, x, md_module_call(ctx, m, "retina_cls", c));
    *reg = release_after(ctx, r, x, md_module_call(ctx, m, "retina_reg", r));
    return *cls && *reg ? 0 : -1;
}

static int init_layers(md_ctx *ctx, md_anchor_head *ah, md_error *err) {
    retina_head *h = (retina_head *)ah;
    md_module *m = &ah->base;
    if (h->conv_cfg) return md_failc(err, MD_ERR_CONFIG, "conv_cfg: only None is supported");
    if (md_norm_cfg_read(h->norm_cfg, "norm_cfg", "BN,SyncBN,GN", &h->norm, err)) return -1;
    h->norm.bias = -1;   /* no bias before a norm */
    int S = h->stacked_convs, f = ah->feat_channels;
    if (md_head_add_stacked_convs(ctx, m, "cls_convs", S, ah->in_channels, f, &h->norm, 0.01, err) ||
        md_head_add_stacked_convs(ctx, m, "reg_convs", S, ah->in_channels, f, &h->norm, 0.01, err))
        return -1;
    int in = h->stacked_convs ? ah->feat_channels : ah->in_channels, A = ah->num_base_priors;
    return md_anchor_head_add_conv(ctx, m, "retina_cls", in, A * ah->cls_out_channels, 3, 0.01,
                                   md_bias_init_with_prob(0.01), err) ||
           md_anchor_head_add_conv(ctx, m, "retina_reg", in, A * 4, 3, 0.01, 0.0, err);
}

static const md_anchor_head_class retina = {
    .dense = MD_ANCHOR_HEAD_DENSE("RetinaHead", md_anchor_head_get_bboxes),
    .size = sizeof(retina_head),
    .keys = keys,
    .init_layers = init_layers,
    .forward_single = forward_single,
};

MD_PLUGIN("retina_head", "1.0", "Apache-2.0");
MD_ANCHOR_HEAD_REGISTER(retina, "RetinaHead", keys, "mmdet's RetinaNet head (an AnchorHead: stacked convs per branch)")
