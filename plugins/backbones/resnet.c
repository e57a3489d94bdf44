/* mmdet's ResNet backbone (mmdet/models/backbones/resnet.py): BasicBlock and
 * Bottleneck, styles pytorch/caffe, dilations, frozen_stages, norm_eval,
 * zero_init_residual, init_cfg Pretrained, dcn with stage_with_dcn (the
 * Bottleneck's conv2 an mmcv DCN or DCNv2). State dict names are mmdet's,
 * which are torchvision's without fc: conv1.weight, bn1.*, layer1.0.conv1.weight,
 * layer1.0.downsample.0.weight, ...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/models.h>

#define MAX_STAGES 4

typedef struct resnet {
    md_module base;
    /* from the schema */
    int depth, in_channels, base_channels, num_stages, style, frozen_stages;
    const md_cfg *stem_channels;   /* None: base_channels */
    bool deep_stem, avg_down, norm_eval, zero_init_residual;
    const md_cfg *conv_cfg, *dcn, *plugins, *init;
    const char *pretrained;
    const md_cfg *norm_cfg;
    /* derived at build */
    md_conv_module_opts norm;  /* the norm_cfg's layer */
    md_conv_module_opts dcn_opts;   /* dcn: its conv type and deform_groups (none: MD_CONV_PLAIN) */
    bool fallback_on_stride;   /* dcn's: a plain conv2 after all, in the first dcn block (below) */
    bool stage_dcn[MAX_STAGES];
    char stem_norm[8];         /* its name after the stem's conv1: bn1 or gn1 */
    bool out_mask[MAX_STAGES];
    int n_outs, out_ch[MAX_STAGES], out_stride[MAX_STAGES];
    md_cfg *init_cfg;          /* owned: init, or made from pretrained; NULL for none */
} resnet;

enum { STYLE_PYTORCH, STYLE_CAFFE };

static const md_key keys[] = {
    { "depth", MD_KEY_INT, NULL, "18, 34, 50, 101 or 152", true, MD_AT(resnet, depth) },
    { "in_channels", MD_KEY_INT, "3", "input image channels", false, MD_AT(resnet, in_channels), .min = "1" },
    { "stem_channels", MD_KEY_INT, "None", "stem width (None: base_channels)", false, MD_AT(resnet, stem_channels),
      .min = "1" },
    { "base_channels", MD_KEY_INT, "64", "width of the first stage", false, MD_AT(resnet, base_channels), .min = "1" },
    { "num_stages", MD_KEY_INT, "4", "residual stages, 1 to 4", false, MD_AT(resnet, num_stages), .min = "1",
      .max = "4" },
    { "strides", MD_KEY_LIST, "[1, 2, 2, 2]", "stride of the first block of each stage", false },
    { "dilations", MD_KEY_LIST, "[1, 1, 1, 1]", "dilation of each stage", false },
    { "out_indices", MD_KEY_LIST, "[0, 1, 2, 3]", "stages whose outputs are returned", false },
    { "style", MD_KEY_STRING, "\"pytorch\"", "pytorch: stride on the 3x3 conv; caffe: on the first 1x1", false,
      MD_CHOICE_AT(resnet, style, "pytorch|caffe") },
    { "deep_stem", MD_KEY_BOOL, "false", "three 3x3 stem convs (only false is supported)", false,
      MD_AT(resnet, deep_stem) },
    { "avg_down", MD_KEY_BOOL, "false", "avg-pool in the shortcut (only false is supported)", false,
      MD_AT(resnet, avg_down) },
    { "frozen_stages", MD_KEY_INT, "-1", "stages frozen (eval, no grad): -1 none, 0 the stem, k stem and layer1..k", false,
      MD_AT(resnet, frozen_stages) },
    { "conv_cfg", MD_KEY_ANY, "None", "only None (plain Conv2d) is supported", false, MD_AT(resnet, conv_cfg) },
    { "norm_cfg", MD_KEY_GROUP, "{ type = \"BN\"; requires_grad = true; }",
      "BN / SyncBN (eps, momentum) or GN (num_groups, eps), requires_grad", false, MD_AT(resnet, norm_cfg) },
    { "norm_eval", MD_KEY_BOOL, "true", "keep BN layers in eval mode while training", false, MD_AT(resnet, norm_eval) },
    { "dcn", MD_KEY_ANY, "None",
      "None, or { type = \"DCN\" | \"DCNv2\"; deform_groups = 1; fallback_on_stride = false; }: the Bottleneck's "
      "conv2 in the stages of stage_with_dcn", false, MD_AT(resnet, dcn) },
    { "stage_with_dcn", MD_KEY_LIST, "[false, false, false, false]", "per stage: dcn on its blocks (with dcn, "
      "num_stages entries)", false },
    { "plugins", MD_KEY_ANY, "None", "only None is supported", false, MD_AT(resnet, plugins) },
    { "with_cp", MD_KEY_BOOL, "false", "gradient checkpointing (memory only; accepted, no effect)", false },
    { "zero_init_residual", MD_KEY_BOOL, "true", "zero the last BN weight of each block", false,
      MD_AT(resnet, zero_init_residual) },
    { "pretrained", MD_KEY_STRING, "None", "deprecated: same as init_cfg = { type = \"Pretrained\"; checkpoint = ...; }",
      false, MD_AT(resnet, pretrained) },
    { "init_cfg", MD_KEY_ANY, "None", "init config; Pretrained loads a checkpoint in init_weights", false,
      MD_AT(resnet, init) },
    { 0 } };

/* ------------------------------------------------------------ containers -- */

static md_tensor *then_release(md_ctx *ctx, md_tensor *y, md_tensor *t);

/* nn.Sequential: children "0", "1", ... run in order; what one child made and
 * the next consumed is released (with grad mode on it stays while a node's
 * backward reads it: md_tensor_release). */
static md_tensor *seq_forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    for (int i = 0; i < m->n_children && x; i++) {
        md_tensor *in = x;
        x = md_module_call(ctx, m, m->children[i].name, x);
        if (i > 0) then_release(ctx, x, in);
    }
    return x;
}
static const md_module_class seq_class = { .name = "ResLayer", .forward1 = seq_forward };   /* mmdet's ResLayer, an nn.Sequential */

typedef struct block { md_module base; bool bottleneck, down; char norm[3][8]; } block;

/* y = f(t), then t's storage goes back once no backward reads it (at once in
 * inference and in frozen stages, after the reading node's backward in
 * training); never when y shares it. */
static md_tensor *then_release(md_ctx *ctx, md_tensor *y, md_tensor *t) {
    if (t && (!y || y->data != t->data)) md_tensor_release(ctx, t);
    return y;
}

/* conv + bn (+ relu): one fused pass in inference with eval-mode BN
 * (md_nn_conv_bn_act), the layers one by one when a gradient is needed. */
static md_tensor *conv_bn(md_ctx *ctx, md_module *m, const char *conv, const char *bn, bool relu, md_tensor *x) {
    md_tensor *y = md_nn_conv_bn_act(ctx, m, conv, bn, relu, x);
    if (relu) md_flops_relu(ctx, "relu", y);   /* mmdet's nn.ReLU `relu` of the block or the stem */
    return y;
}

/* The shortcut's Sequential(conv "0", bn "1"). */
static md_tensor *downsample_forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    return conv_bn(ctx, m, "0", "1", false, x);
}
static const md_module_class downsample_class = { .name = "Sequential", .forward1 = downsample_forward };

static md_tensor *block_forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    block *b = (block *)m;
    md_tensor *id = b->down ? md_module_call(ctx, m, "downsample", x) : x;
    md_tensor *y = conv_bn(ctx, m, "conv1", b->norm[0], true, x);   /* x: the caller's */
    y = then_release(ctx, conv_bn(ctx, m, "conv2", b->norm[1], b->bottleneck, y), y);
    if (b->bottleneck) y = then_release(ctx, conv_bn(ctx, m, "conv3", b->norm[2], false, y), y);
    md_tensor *s = then_release(ctx, md_add_(ctx, y, id), y);   /* y (bn3) feeds nothing else */
    if (b->down) then_release(ctx, s, id);
    md_tensor *out = md_relu_(ctx, s);
    md_flops_relu(ctx, "relu", out);
    return then_release(ctx, out, s);
}
static const md_module_class basic_class = { .name = "BasicBlock", .forward1 = block_forward };
static const md_module_class bottleneck_class = { .name = "Bottleneck", .forward1 = block_forward };

/* ------------------------------------------------------------- building -- */


static int add(md_module *m, const char *name, md_module *child, md_error *err) {
    if (!child) return -1;
    if (md_module_add_child(m, name, child, err) != 0) {
        md_module_free(child);
        return -1;
    }
    return 0;
}

/* mmdet's Bottleneck conv2 with a dcn: build_conv_layer(dcn, planes,
 * planes, 3, stride, padding=dilation, dilation, bias=False). mmdet's
 * Kaiming init (no init_cfg) takes every nn.Conv2d, so conv_offset too (the
 * DCN keeps its own init); under init_cfg Pretrained conv_offset stays at
 * zero where the checkpoint has none. */
static int add_dcn(md_ctx *ctx, md_module *m, int planes, int stride, int dil, const md_conv_module_opts *dcn,
                   bool kaiming_offset, md_error *err) {
    md_conv2d_params p = { stride, stride, dil, dil, dil, dil, 1 };
    md_module *c = md_nn_dcn(ctx, dcn->conv_type, planes, planes, 3, 3, p, dcn->deform_groups, false, err);
    if (add(m, "conv2", c, err) != 0) return -1;
    if (kaiming_offset)
        md_init_kaiming(md_nn_weight(md_module_child(c, "conv_offset")), md_ctx_rng(ctx), 0, true, "relu", false);
    return 0;
}

/* A bias-free conv with mmdet's default init (kaiming normal, fan_out, relu). */
static int add_conv(md_ctx *ctx, md_module *m, const char *name, int in, int out, int k, int stride, int dil,
                    md_error *err) {
    int pad = k == 1 ? 0 : k == 7 ? 3 : dil;
    md_conv2d_params p = { stride, stride, pad, pad, dil, dil, 1 };
    md_module *c = md_nn_conv2d(ctx, in, out, k, k, p, false, err);
    if (add(m, name, c, err) != 0) return -1;
    md_init_kaiming(md_nn_weight(c), md_ctx_rng(ctx), 0, true, "relu", false);
    return 0;
}

/* The norm_cfg's layer "<bn|gn><postfix>" (build_norm_layer's name; postfix
 * 0: the bare index of a Sequential) with weight 1 and bias 0 (mmdet's
 * Constant init), or 0 and 0 (zero_init_residual). */
static int add_norm(md_ctx *ctx, md_module *m, int postfix, int c, const md_conv_module_opts *n, double w,
                    md_error *err) {
    char name[16];
    if (postfix) snprintf(name, sizeof name, "%s%d", md_norm_abbr(n), postfix);
    else snprintf(name, sizeof name, "1");
    md_module *nm = md_nn_norm_layer(ctx, n, c, err);
    if (add(m, name, nm, err) != 0) return -1;
    md_init_constant(md_nn_weight(nm), w);
    md_init_constant(md_nn_bias(nm), 0);
    return 0;
}

/* dcn: the Bottleneck's conv2 (NULL: a plain conv); kaiming_offset as add_dcn. */
static md_module *make_block(md_ctx *ctx, bool bottleneck, int inplanes, int planes, int stride, int dil,
                             bool caffe, bool zero_init, const md_conv_module_opts *n, const md_conv_module_opts *dcn,
                             bool kaiming_offset, md_error *err) {
    block *b = md_module_new(sizeof *b, bottleneck ? &bottleneck_class : &basic_class);
    if (!b) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    b->bottleneck = bottleneck;
    for (int k = 0; k < 3; k++) snprintf(b->norm[k], sizeof b->norm[k], "%s%d", md_norm_abbr(n), k + 1);
    int exp = bottleneck ? 4 : 1, rc;
    double last_w = zero_init ? 0 : 1;
    md_module *m = &b->base;
    if (bottleneck) {
        int s1 = caffe ? stride : 1, s2 = caffe ? 1 : stride;
        rc = add_conv(ctx, m, "conv1", inplanes, planes, 1, s1, 1, err) || add_norm(ctx, m, 1, planes, n, 1, err) ||
             (dcn ? add_dcn(ctx, m, planes, s2, dil, dcn, kaiming_offset, err)
                  : add_conv(ctx, m, "conv2", planes, planes, 3, s2, dil, err)) ||
             add_norm(ctx, m, 2, planes, n, 1, err) ||
             add_conv(ctx, m, "conv3", planes, planes * 4, 1, 1, 1, err) ||
             add_norm(ctx, m, 3, planes * 4, n, last_w, err);
    } else {
        /* mmdet's BasicBlock: dilation on conv1 only; conv2 is a plain 3x3. */
        rc = add_conv(ctx, m, "conv1", inplanes, planes, 3, stride, dil, err) ||
             add_norm(ctx, m, 1, planes, n, 1, err) || add_conv(ctx, m, "conv2", planes, planes, 3, 1, 1, err) ||
             add_norm(ctx, m, 2, planes, n, last_w, err);
    }
    if (!rc && (stride != 1 || inplanes != planes * exp)) {
        b->down = true;
        md_module *d = md_module_new(sizeof *d, &downsample_class);
        if (!d) rc = md_failc(err, MD_ERR_NOMEM, "out of memory");
        else if (add(m, "downsample", d, err) != 0) rc = -1;
        else rc = add_conv(ctx, d, "0", inplanes, planes * exp, 1, stride, 1, err) ||
                  add_norm(ctx, d, 0, planes * exp, n, 1, err);
    }
    if (rc) {
        md_module_free(m);
        return NULL;
    }
    return m;
}

static void set_eval(md_module *m) {
    m->training = false;
    for (int i = 0; i < m->n_children; i++) set_eval(m->children[i].m);
}

static int freeze_cb(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)name, (void)user;
    if (is_param) t->requires_grad = false;
    return 0;
}

static void freeze(md_module *m) { md_module_visit(m, "", freeze_cb, NULL); }

static void norm_eval_all(md_module *m) {
    if (m->flags & MD_MODULE_NORM) m->training = false;
    for (int i = 0; i < m->n_children; i++) norm_eval_all(m->children[i].m);
}

/* mmdet ResNet.train(): frozen stages stay in eval; with norm_eval every BN. */
static void resnet_on_train(md_module *m, bool training) {
    resnet *r = (resnet *)m;
    if (!training) return;
    if (r->frozen_stages >= 0) {
        set_eval(md_module_child(m, "conv1"));
        set_eval(md_module_child(m, r->stem_norm));
    }
    char name[16];
    for (int i = 1; i <= r->frozen_stages && i <= r->num_stages; i++) {
        snprintf(name, sizeof name, "layer%d", i);
        set_eval(md_module_child(m, name));
    }
    if (r->norm_eval) norm_eval_all(m);
}

static void resnet_destroy(md_module *m) { md_cfg_free(((resnet *)m)->init_cfg); }

static int resnet_forward(md_ctx *ctx, md_module *m, md_tensor *img, md_tensor **outs, int max_outs) {
    resnet *r = (resnet *)m;
    if (max_outs < r->n_outs) {
        md_op_fail(ctx, "ResNet", "room for %d outputs, %d needed", max_outs, r->n_outs);
        return -1;
    }
    md_tensor *x = conv_bn(ctx, m, "conv1", r->stem_norm, true, img);
    md_flops_pool(ctx, "maxpool", "MaxPool2d", x);
    x = then_release(ctx, md_max_pool2d(ctx, x, 3, 2, 1, false), x);
    int n = 0;
    char name[16];
    for (int i = 0; i < r->num_stages && x; i++) {
        snprintf(name, sizeof name, "layer%d", i + 1);
        md_tensor *in = x;
        x = md_module_call(ctx, m, name, x);
        if (i == 0 || !r->out_mask[i - 1]) then_release(ctx, x, in);   /* not returned to the caller */
        if (r->out_mask[i]) outs[n++] = x;
    }
    return x && !md_ctx_failed(ctx) ? n : -1;
}

static int resnet_num_outs(const md_module *m) { return ((const resnet *)m)->n_outs; }
static int resnet_out_channels(const md_module *m, int i) {
    const resnet *r = (const resnet *)m;
    return i >= 0 && i < r->n_outs ? r->out_ch[i] : -1;
}
static int resnet_out_stride(const md_module *m, int i) {
    const resnet *r = (const resnet *)m;
    return i >= 0 && i < r->n_outs ? r->out_stride[i] : -1;
}

static int resnet_init_weights(md_ctx *ctx, md_module *m, md_error *err) {
    int rc = md_init_cfg_pretrained(ctx, m, ((resnet *)m)->init_cfg, "ResNet", err);
    if (rc < 0) return -1;
    /* Loading may have replaced frozen tensors' values, never their flags. */
    return 0;
}

static const md_backbone_class resnet_cls = {
    .model = { .module = { .name = "ResNet", .destroy = resnet_destroy, .on_train = resnet_on_train },
               .init_weights = resnet_init_weights },
    .forward = resnet_forward,
    .num_outs = resnet_num_outs,
    .out_channels = resnet_out_channels,
    .out_stride = resnet_out_stride,
};

static int read_list(const md_cfg *cfg, const char *key, int64_t *out, int need, md_error *err) {
    int n = md_cfg_int_array(cfg, key, out, MAX_STAGES, err);
    if (n < 0) return -1;
    if (n < need)
        return md_failc(err, MD_ERR_CONFIG, "%s has %d entries; num_stages %d needs at least that many", key, n,
                        need);
    return 0;
}


static void *resnet_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    resnet *r = md_module_new(sizeof *r, &resnet_cls.model.module);
    if (!r) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    md_module *m = &r->base;
    if (md_cfg_read_struct(cfg, keys, r, "ResNet", err)) goto fail;
    int depth = r->depth, num_stages = r->num_stages;
    int blocks18[] = { 2, 2, 2, 2 }, blocks34[] = { 3, 4, 6, 3 }, blocks101[] = { 3, 4, 23, 3 },
        blocks152[] = { 3, 8, 36, 3 };
    const int *blocks = depth == 18 ? blocks18 : depth == 34 || depth == 50 ? blocks34 : depth == 101 ? blocks101
                        : depth == 152 ? blocks152 : NULL;
    if (!blocks) {
        md_failc(err, MD_ERR_CONFIG, "invalid depth %d for resnet (18, 34, 50, 101, 152)", depth);
        goto fail;
    }
    bool bottleneck = depth >= 50;
    int64_t strides[MAX_STAGES], dils[MAX_STAGES], outi[MAX_STAGES];
    if (read_list(cfg, "strides", strides, num_stages, err) || read_list(cfg, "dilations", dils, num_stages, err))
        goto fail;
    int n_outi = md_cfg_int_array(cfg, "out_indices", outi, MAX_STAGES, err);
    if (n_outi < 0) goto fail;
    if (r->deep_stem || r->avg_down) {
        md_failc(err, MD_ERR_CONFIG, "deep_stem and avg_down are not supported (ResNetV1d)");
        goto fail;
    }
    if (r->conv_cfg || r->plugins) {
        md_failc(err, MD_ERR_CONFIG, "conv_cfg and plugins must be None (not supported)");
        goto fail;
    }
    if (md_conv_cfg_read(r->dcn, "dcn", "DCN,DCNv2", &r->dcn_opts, &r->fallback_on_stride, err) != 0) goto fail;
    if (r->dcn_opts.conv_type != MD_CONV_PLAIN) {
        /* mmdet: assert len(stage_with_dcn) == num_stages; BasicBlock asserts dcn is None */
        const md_cfg *swd = md_cfg_get(cfg, "stage_with_dcn");
        int n = swd ? md_cfg_len(swd) : MAX_STAGES;
        if (n != num_stages) {
            md_failc(err, MD_ERR_CONFIG, "stage_with_dcn has %d entries; with dcn it needs num_stages (%d)", n,
                     num_stages);
            goto fail;
        }
        for (int i = 0; i < n && swd; i++) {
            const md_cfg *e = md_cfg_at(swd, i);
            if (md_cfg_kind(e) != MD_CFG_BOOL) {
                md_failc(err, MD_ERR_CONFIG, "%s:%d: stage_with_dcn entries must be true or false", md_cfg_file(e),
                         md_cfg_line(e));
                goto fail;
            }
            r->stage_dcn[i] = md_cfg_as_bool(e);
            if (md_cfg_as_bool(e) && !bottleneck) {
                md_failc(err, MD_ERR_CONFIG, "dcn: ResNet-%d's BasicBlock does not support dcn (mmdet: \"Not "
                         "implemented yet\"); stage %d has stage_with_dcn true", depth, i);
                goto fail;
            }
        }
    }
    if (md_cfg_is_none(r->norm_cfg)) {
        md_failc(err, MD_ERR_CONFIG, "norm_cfg None is not supported (ResNet needs a norm layer)");
        goto fail;
    }
    if (md_norm_cfg_read(r->norm_cfg, "norm_cfg", "BN,BN2d,SyncBN,GN", &r->norm, err) != 0) goto fail;
    if (!strcmp(md_cfg_str(r->norm_cfg, "type", ""), "SyncBN") && md_dist_world_size(ctx) == 1)
        md_warn(ctx, "ResNet: norm_cfg SyncBN in a single process is BatchNorm (statistics of this process only)");
    snprintf(r->stem_norm, sizeof r->stem_norm, "%s1", md_norm_abbr(&r->norm));
    const md_conv_module_opts *norm = &r->norm;
    int base = r->base_channels, in_ch = r->in_channels;
    int stem = r->stem_channels ? (int)md_cfg_as_int(r->stem_channels) : base;
    const char *pretrained = r->pretrained;
    if (pretrained && r->init) {
        md_failc(err, MD_ERR_CONFIG, "init_cfg and pretrained cannot be set at the same time");
        goto fail;
    }
    if (md_init_cfg_check(r->init, "init_cfg", err) != 0) goto fail;
    if (pretrained) {
        md_warn(ctx, "ResNet: `pretrained` is deprecated, use init_cfg = { type = \"Pretrained\"; ... }");
        r->init_cfg = md_cfg_new_group();
        if (r->init_cfg) {
            md_cfg_set_str(r->init_cfg, "type", "Pretrained");
            md_cfg_set_str(r->init_cfg, "checkpoint", pretrained);
        }
    } else if (r->init) {
        r->init_cfg = md_cfg_clone(r->init);
    }
    if ((pretrained || r->init) && !r->init_cfg) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int k = 0; k < n_outi; k++) {
        if (outi[k] < 0 || outi[k] >= num_stages) {
            md_failc(err, MD_ERR_CONFIG, "out_indices entry %lld is outside the %d stages", (long long)outi[k],
                     num_stages);
            goto fail;
        }
        r->out_mask[outi[k]] = true;
    }

    if (add_conv(ctx, m, "conv1", in_ch, stem, 7, 2, 1, err) || add_norm(ctx, m, 1, stem, norm, 1, err))
        goto fail;
    int inplanes = stem, stride = 4, exp = bottleneck ? 4 : 1;
    bool fallback = r->fallback_on_stride;
    for (int i = 0; i < num_stages; i++) {
        int planes = base << i, s = (int)strides[i], d = (int)dils[i];
        if (s < 1 || d < 1) {
            md_failc(err, MD_ERR_CONFIG, "stage %d: stride %d and dilation %d must be positive", i, s, d);
            goto fail;
        }
        md_module *layer = md_module_new(sizeof *layer, &seq_class);
        char name[16];
        snprintf(name, sizeof name, "layer%d", i + 1);
        if (!layer) {
            md_failc(err, MD_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if (add(m, name, layer, err) != 0) goto fail;
        for (int j = 0; j < blocks[i]; j++) {
            /* mmdet's Bottleneck pops fallback_on_stride from the dcn dict
             * all its blocks share: only the first dcn block sees it */
            bool with_dcn = r->stage_dcn[i] && !fallback;
            if (r->stage_dcn[i]) fallback = false;
            md_module *b = make_block(ctx, bottleneck, inplanes, planes, j ? 1 : s, d, r->style == STYLE_CAFFE,
                                      r->zero_init_residual, norm, with_dcn ? &r->dcn_opts : NULL, !r->init_cfg,
                                      err);
            snprintf(name, sizeof name, "%d", j);
            if (add(layer, name, b, err) != 0) goto fail;
            inplanes = planes * exp;
        }
        stride *= s;
        if (r->out_mask[i]) {
            r->out_ch[r->n_outs] = planes * exp;
            r->out_stride[r->n_outs++] = stride;
        }
    }
    /* mmdet _freeze_stages at construction: frozen parameters get no grad. */
    if (r->frozen_stages >= 0) {
        freeze(md_module_child(m, "conv1"));
        freeze(md_module_child(m, r->stem_norm));
    }
    for (int i = 1; i <= r->frozen_stages && i <= num_stages; i++) {
        char name[16];
        snprintf(name, sizeof name, "layer%d", i);
        freeze(md_module_child(m, name));
    }
    md_module_train(m, true);
    return m;
fail:
    md_module_free(m);
    return NULL;
}

static const md_class resnet_class = {
    .name = "ResNet", .keys = keys, .build = resnet_build, MD_IFACE(&resnet_cls, MD_IFACE_BACKBONE),
    .doc = "ResNet backbone (mmdet 2.x): depth 18/34/50/101/152, BasicBlock/Bottleneck",
};

MD_PLUGIN("resnet", "1.0", "Apache-2.0");
MD_REGISTER("backbones", resnet_class)
