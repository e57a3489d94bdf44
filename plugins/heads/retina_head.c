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
#include <stdio.h>
#include <mmdet/anchor_head.h>
#include <mmdet/mmdet.h>

typedef struct retina_head {
    md_anchor_head base;
    int stacked_convs;
    const md_cfg *conv_cfg, *norm_cfg;
    md_conv_module_opts norm;   /* the stacked convs' ConvModule settings */
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

/* Runs item i of the ModuleList `list`. */
static md_tensor *call_item(md_ctx *ctx, md_module *m, const char *list, int i, md_tensor *x) {
    char name[16];
    snprintf(name, sizeof name, "%d", i);
    md_scope_push(ctx, list);
    x = md_module_call(ctx, md_module_child(m, list), name, x);
    md_scope_pop(ctx);
    return x;
}

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
    md_tensor *c = x, *r = x;
    /* each intermediate goes once read (the convs' backward keep theirs) */
    for (int i = 0; i < h->stacked_convs; i++) c = release_after(ctx, c, x, call_item(ctx, m, "cls_convs", i, c));
    for (int i = 0; i < h->stacked_convs; i++) r = release_after(ctx, r, x, call_item(ctx, m, "reg_convs", i, r));
    *cls = release_after(ctx, c, x, md_module_call(ctx, m, "retina_cls", c));
    *reg = release_after(ctx, r, x, md_module_call(ctx, m, "retina_reg", r));
    return *cls && *reg ? 0 : -1;
}

static const md_module_class list_class = { .name = "ModuleList" };

/* A stacked conv: ConvModule(3x3, the head's norm_cfg, ReLU), conv init normal(0, 0.01). */
static int add_stacked(md_ctx *ctx, retina_head *h, md_module *list, int i, int in, md_error *err) {
    char name[16];
    snprintf(name, sizeof name, "%d", i);
    md_conv_module_opts o = h->norm;
    o.in = in, o.out = h->base.feat_channels, o.kernel = 3, o.stride = 1, o.padding = 1, o.dilation = 1, o.groups = 1;
    o.act = true, o.bias = -1;
    md_module *c = md_nn_conv_module(ctx, &o, err);
    if (!c) return -1;
    if (md_module_add_child(list, name, c, err)) {
        md_module_free(c);
        return -1;
    }
    md_module *conv = md_module_child(c, "conv");
    md_init_normal(md_nn_weight(conv), md_ctx_rng(ctx), 0.0, 0.01);
    if (md_nn_bias(conv)) md_init_constant(md_nn_bias(conv), 0.0);
    return 0;
}

static int init_layers(md_ctx *ctx, md_anchor_head *ah, md_error *err) {
    retina_head *h = (retina_head *)ah;
    md_module *m = &ah->base;
    if (h->conv_cfg) return md_failc(err, MD_ERR_CONFIG, "conv_cfg: only None is supported");
    if (md_norm_cfg_read(h->norm_cfg, "norm_cfg", "BN,SyncBN,GN", &h->norm, err)) return -1;
    const char *lists[2] = { "cls_convs", "reg_convs" };
    for (int b = 0; b < 2; b++) {
        md_module *list = md_module_new(sizeof(md_module), &list_class);
        if (!list || md_module_add_child(m, lists[b], list, err)) {
            md_module_free(list);
            return list ? -1 : md_failc(err, MD_ERR_NOMEM, "out of memory");
        }
        for (int i = 0; i < h->stacked_convs; i++)
            if (add_stacked(ctx, h, list, i, i == 0 ? ah->in_channels : ah->feat_channels, err)) return -1;
    }
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
