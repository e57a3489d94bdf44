/* mmcv's CARAFEPack (mmcv/ops/carafe.py, registered as the upsample layer
 * "carafe"): channel_compressor (1x1 conv to compressed_channels),
 * content_encoder (a conv to up_kernel^2 * up_group * scale^2 channels), the
 * kernel normaliser (pixel_shuffle by scale, softmax over each group's
 * up_kernel^2 taps) and the CARAFE reassembly (md_carafe). */
#include <stdio.h>
#include "internal.h"
#include <mmdet/nn.h>

typedef struct carafe_pack {
    md_module base;
    int scale, up_kernel, up_group;
} carafe_pack;

/* F.pixel_shuffle(x, s) then softmax over each group's k*k taps:
 * [N, G*k*k*s*s, H, W] -> [N, G*k*k, H*s, W*s]. */
static md_tensor *kernel_normalizer(md_ctx *ctx, const carafe_pack *p, md_tensor *mask) {
    if (!mask) return NULL;
    int64_t N = mask->shape[0], C = mask->shape[1] / ((int64_t)p->scale * p->scale), H = mask->shape[2],
            W = mask->shape[3], s = p->scale, kk = (int64_t)p->up_kernel * p->up_kernel;
    static const int shuffle[6] = { 0, 1, 4, 2, 5, 3 };
    mask = md_reshape(ctx, mask, MD_DIMS(N, C, s, s, H, W));
    mask = md_reshape(ctx, md_permute(ctx, mask, shuffle), MD_DIMS(N, C / kk, kk, H * s, W * s));
    return md_reshape(ctx, md_softmax(ctx, mask, 2), MD_DIMS(N, C, H * s, W * s));
}

static md_tensor *carafe_pack_forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    const carafe_pack *p = (const carafe_pack *)m;
    md_tensor *mask = md_module_call(ctx, m, "content_encoder", md_module_call(ctx, m, "channel_compressor", x));
    return md_carafe(ctx, x, kernel_normalizer(ctx, p, mask), p->up_kernel, p->up_group, p->scale);
}

static const md_module_class carafe_pack_class = { .name = "CARAFEPack", .forward1 = carafe_pack_forward };

MD_API md_module *md_nn_carafe_pack(md_ctx *ctx, const md_carafe_pack_opts *o, md_error *err) {
    if (o->channels < 1 || o->scale_factor < 1 || o->up_kernel < 1 || o->up_kernel % 2 == 0 || o->up_group < 1 ||
        o->encoder_kernel < 1 || o->encoder_dilation < 1 || o->compressed_channels < 1 ||
        o->channels % o->up_group) {
        md_failc(err, MD_ERR_CONFIG, "CARAFEPack: channels %d, scale_factor %d, up_kernel %d, up_group %d, "
                 "encoder_kernel %d, encoder_dilation %d, compressed_channels %d: all must be positive, up_kernel "
                 "odd and channels a multiple of up_group", o->channels, o->scale_factor, o->up_kernel, o->up_group,
                 o->encoder_kernel, o->encoder_dilation, o->compressed_channels);
        return NULL;
    }
    carafe_pack *p = md_module_new(sizeof *p, &carafe_pack_class);
    if (!p) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    p->scale = o->scale_factor;
    p->up_kernel = o->up_kernel;
    p->up_group = o->up_group;
    int enc_out = o->up_kernel * o->up_kernel * o->up_group * o->scale_factor * o->scale_factor;
    int pad = (int)((double)(o->encoder_kernel - 1) * o->encoder_dilation / 2);   /* int() of a float, as mmcv */
    md_conv2d_params ep = { 1, 1, pad, pad, o->encoder_dilation, o->encoder_dilation, 1 };
    md_module *cc = md_nn_conv2d(ctx, o->channels, o->compressed_channels, 1, 1, MD_CONV2D(1, 0), true, err);
    if (!cc || md_module_add_child(&p->base, "channel_compressor", cc, err)) goto fail_cc;
    md_module *ce = md_nn_conv2d(ctx, o->compressed_channels, enc_out, o->encoder_kernel, o->encoder_kernel, ep, true,
                                 err);
    if (!ce || md_module_add_child(&p->base, "content_encoder", ce, err)) {
        md_module_free(ce);
        goto fail;
    }
    /* init_weights: xavier uniform (gain 1, bias 0) on both convs, then
     * normal(0, 0.001) (bias 0) on the content encoder */
    md_rng *r = md_ctx_rng(ctx);
    md_init_xavier(md_nn_weight(cc), r, 1.0, true);
    md_init_constant(md_nn_bias(cc), 0);
    md_init_xavier(md_nn_weight(ce), r, 1.0, true);
    md_init_constant(md_nn_bias(ce), 0);
    md_init_normal(md_nn_weight(ce), r, 0, 0.001);
    md_init_constant(md_nn_bias(ce), 0);
    return &p->base;
fail_cc:
    md_module_free(cc);
fail:
    md_module_free(&p->base);
    return NULL;
}
