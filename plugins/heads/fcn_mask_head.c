/* mmdet's FCNMaskHead (mmdet/models/roi_heads/mask_heads/fcn_mask_head.py)
 * on the library's mask-head base (roi_head.h), which owns loss_mask,
 * mask_target, the loss and get_seg_masks (the paste into the image).
 * This file is the difference: num_convs ConvModules (convs.N.conv, with
 * convs.N.bn / .gn under a norm_cfg), the upsampling (upsample: a
 * ConvTranspose2d of kernel and stride scale_factor followed by a ReLU;
 * mmcv's CARAFEPack (md_nn_carafe_pack: upsample.channel_compressor,
 * upsample.content_encoder); nearest or bilinear (align_corners false)
 * upsampling; or none) and
 * conv_logits (1x1, num_classes channels or one when class agnostic). Init as mmdet: ConvModule's
 * kaiming (fan_out, normal) on the convs, kaiming normal fan_out relu on
 * a deconv upsample and conv_logits, their biases 0; CARAFEPack's own init.
 */
#include <stdio.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/roi_head.h>

typedef enum { UP_NONE = 0, UP_DECONV, UP_NEAREST, UP_BILINEAR, UP_CARAFE } upsample_kind;

typedef struct fcn_mask_head {
    md_mask_head_base base;
    int num_convs, roi_feat_size, in_channels, conv_kernel_size, conv_out_channels;
    const md_cfg *upsample_cfg, *conv_cfg, *norm_cfg, *predictor_cfg;
    upsample_kind upsample;
    int scale_factor;
    md_carafe_pack_opts carafe;
} fcn_mask_head;

static const md_key keys[] = {
    { "num_convs", MD_KEY_INT, "4", "3x3 ConvModules before the upsampling", false, MD_AT(fcn_mask_head, num_convs),
      .min = "0" },
    { "roi_feat_size", MD_KEY_INT, "14", "side of the RoI features (reserved, unused as in mmdet)", false,
      MD_AT(fcn_mask_head, roi_feat_size), .min = "1" },
    { "in_channels", MD_KEY_INT, "256", "channels of the RoI features", false, MD_AT(fcn_mask_head, in_channels),
      .min = "1" },
    { "conv_kernel_size", MD_KEY_INT, "3", "kernel of the convs (padding (k - 1) / 2)", false,
      MD_AT(fcn_mask_head, conv_kernel_size), .min = "1" },
    { "conv_out_channels", MD_KEY_INT, "256", "channels of the convs and the deconv", false,
      MD_AT(fcn_mask_head, conv_out_channels), .min = "1" },
    { "upsample_cfg", MD_KEY_GROUP, "{ type = \"deconv\"; scale_factor = 2; }",
      "type deconv, carafe (with CARAFEPack's keys), nearest, bilinear or None, and an integer scale_factor", false, MD_AT(fcn_mask_head, upsample_cfg) },
    { "conv_cfg", MD_KEY_ANY, "None", "None or { type = \"Conv\"; }", false, MD_AT(fcn_mask_head, conv_cfg) },
    { "norm_cfg", MD_KEY_ANY, "None", "None, { type = \"BN\"; } or { type = \"GN\"; num_groups = 32; } for the convs",
      false, MD_AT(fcn_mask_head, norm_cfg) },
    { "predictor_cfg", MD_KEY_GROUP, "{ type = \"Conv\"; }", "conv_logits' layer: Conv", false,
      MD_AT(fcn_mask_head, predictor_cfg) },
    MD_MASK_HEAD_KEYS,
    { 0 } };

static md_tensor *forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    fcn_mask_head *h = (fcn_mask_head *)m;
    md_scope_push(ctx, "convs");
    md_module *convs = md_module_child(m, "convs");
    for (int i = 0; i < h->num_convs; i++) {
        char name[16];
        snprintf(name, sizeof name, "%d", i);
        x = md_module_call(ctx, convs, name, x);
    }
    md_scope_pop(ctx);
    if (h->upsample == UP_DECONV) {
        x = md_relu(ctx, md_module_call(ctx, m, "upsample", x));
        md_flops_relu(ctx, "relu", x);   /* mmdet's nn.ReLU `relu` after the deconv */
    } else if (h->upsample == UP_CARAFE) {
        x = md_module_call(ctx, m, "upsample", x);   /* no ReLU after CARAFE, as mmdet */
    } else if (h->upsample != UP_NONE && x) {
        x = h->upsample == UP_NEAREST ? md_upsample_nearest(ctx, x, h->scale_factor)
                                      : md_upsample_bilinear(ctx, x, h->scale_factor);
        /* mmdet's nn.Upsample `upsample`; mmcv counts the elements of the
         * batch's first output */
        if (x && x->shape[0] && md_flops_on(ctx))
            md_flops_add(ctx, "upsample", "Upsample", md_tensor_numel(x) / x->shape[0]);
    }
    return md_module_call(ctx, m, "conv_logits", x);
}

/* upsample_cfg of type carafe: mmcv's CARAFEPack arguments */
static const md_key carafe_keys[] = {
    { "scale_factor", MD_KEY_INT, NULL, "upsampling ratio", true, MD_AT(md_carafe_pack_opts, scale_factor),
      .min = "1" },
    { "up_kernel", MD_KEY_INT, "5", "reassembly kernel size (odd)", false, MD_AT(md_carafe_pack_opts, up_kernel),
      .min = "1" },
    { "up_group", MD_KEY_INT, "1", "reassembly groups", false, MD_AT(md_carafe_pack_opts, up_group), .min = "1" },
    { "encoder_kernel", MD_KEY_INT, "3", "content encoder's kernel", false,
      MD_AT(md_carafe_pack_opts, encoder_kernel), .min = "1" },
    { "encoder_dilation", MD_KEY_INT, "1", "content encoder's dilation", false,
      MD_AT(md_carafe_pack_opts, encoder_dilation), .min = "1" },
    { "compressed_channels", MD_KEY_INT, "64", "channel compressor's output channels", false,
      MD_AT(md_carafe_pack_opts, compressed_channels), .min = "1" },
    { 0 } };

/* upsample_cfg: its type and scale_factor, checked. */
static int read_upsample(fcn_mask_head *h, md_error *err) {
    const md_cfg *u = h->upsample_cfg, *t = md_cfg_get(u, "type");
    const char *type = md_cfg_is_none(t) ? NULL : md_cfg_str(u, "type", "");
    h->scale_factor = (int)md_cfg_int(u, "scale_factor", 0);
    if (!type) h->upsample = UP_NONE;
    else if (!strcmp(type, "deconv")) h->upsample = UP_DECONV;
    else if (!strcmp(type, "nearest")) h->upsample = UP_NEAREST;
    else if (!strcmp(type, "bilinear")) h->upsample = UP_BILINEAR;
    else if (!strcmp(type, "carafe")) {
        h->upsample = UP_CARAFE;
        return md_cfg_check_keys(u, carafe_keys, "upsample_cfg", err) ||
               md_cfg_read_struct(u, carafe_keys, &h->carafe, "upsample_cfg", err) ? -1 : 0;
    } else
        return md_failc(err, MD_ERR_CONFIG, "%s:%d: upsample_cfg.type '%s' is not supported (deconv, carafe, nearest, "
                        "bilinear or None)", md_cfg_file(u), md_cfg_line(u), type);
    if (h->upsample != UP_NONE && h->scale_factor < 1)
        return md_failc(err, MD_ERR_CONFIG, "%s:%d: upsample_cfg.scale_factor must be a positive integer",
                        md_cfg_file(u), md_cfg_line(u));
    return 0;
}

static const md_module_class list_class = { .name = "ModuleList" };

static int add_child(md_module *parent, const char *name, md_module *c, md_error *err) {
    if (!c) return -1;
    if (md_module_add_child(parent, name, c, err)) {
        md_module_free(c);
        return -1;
    }
    return 0;
}

/* kaiming normal (fan_out, relu) on the weight, bias 0 */
static void init_fan_out(md_ctx *ctx, md_module *l) {
    md_init_kaiming(md_nn_weight(l), md_ctx_rng(ctx), 0, true, "relu", false);
    if (md_nn_bias(l)) md_init_constant(md_nn_bias(l), 0);
}

static int init_layers(md_ctx *ctx, md_mask_head_base *b, md_error *err) {
    fcn_mask_head *h = (fcn_mask_head *)b;
    md_module *m = &b->base;
    if (h->conv_cfg && strcmp(md_cfg_str(h->conv_cfg, "type", ""), "Conv"))
        return md_failc(err, MD_ERR_CONFIG, "conv_cfg: only None or { type = \"Conv\"; } is supported");
    if (strcmp(md_cfg_str(h->predictor_cfg, "type", ""), "Conv"))
        return md_failc(err, MD_ERR_CONFIG, "predictor_cfg: only { type = \"Conv\"; } is supported");
    md_conv_module_opts o = { .kernel = h->conv_kernel_size, .padding = (h->conv_kernel_size - 1) / 2, .act = true,
                              .bias = -1, .out = h->conv_out_channels };
    if (read_upsample(h, err) || md_norm_cfg_read(h->norm_cfg, "norm_cfg", "BN,SyncBN,GN", &o, err)) return -1;
    md_module *list = md_module_new(sizeof(md_module), &list_class);
    if (!list) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    if (add_child(m, "convs", list, err)) return -1;
    for (int i = 0; i < h->num_convs; i++) {
        char name[16];
        snprintf(name, sizeof name, "%d", i);
        o.in = i ? h->conv_out_channels : h->in_channels;
        if (add_child(list, name, md_nn_conv_module(ctx, &o, err), err)) return -1;
    }
    int up_in = h->num_convs > 0 ? h->conv_out_channels : h->in_channels;
    int logits_in = h->upsample == UP_DECONV ? h->conv_out_channels : up_in;
    if (h->upsample == UP_DECONV &&
        add_child(m, "upsample", md_nn_conv_transpose2d(ctx, up_in, h->conv_out_channels, h->scale_factor,
                                                        h->scale_factor, 0, true, err), err))
        return -1;
    if (h->upsample == UP_CARAFE) {
        h->carafe.channels = up_in;
        if (add_child(m, "upsample", md_nn_carafe_pack(ctx, &h->carafe, err), err)) return -1;
    }
    if (add_child(m, "conv_logits", md_nn_conv2d(ctx, logits_in, b->class_agnostic ? 1 : b->num_classes, 1, 1,
                                                 MD_CONV2D(1, 0), true, err), err))
        return -1;
    if (h->upsample == UP_DECONV) init_fan_out(ctx, md_module_child(m, "upsample"));
    init_fan_out(ctx, md_module_child(m, "conv_logits"));
    return 0;
}

static const md_mask_head_base_class fcn_cls = {
    .head = MD_MASK_HEAD_BASE("FCNMaskHead", forward),
    .size = sizeof(fcn_mask_head),
    .keys = keys,
    .init_layers = init_layers,
};

MD_PLUGIN("fcn_mask_head", "1.0", "Apache-2.0");
MD_MASK_HEAD_REGISTER(fcn_cls, "FCNMaskHead", keys,
                      "convs, an upsampling and per-class mask logits (mmdet 2.x's Mask R-CNN mask head)")
