/* Layers every model is made of (PyTorch names and defaults), mmcv's
 * ConvModule, and weight initialisers (mmcv.cnn's init functions).
 *
 * Layers are md_modules with a one-tensor forward; a component calls a child
 * by name so errors carry the module path:
 *     x = md_module_call(ctx, &self->base, "conv1", x);
 */
#ifndef MMDET_NN_H
#define MMDET_NN_H

#include "config.h"
#include "module.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs child `name` of `parent` (its class's forward1) inside the scope
 * "<name>"; NULL + ctx error when the child is missing or fails. */
md_tensor *md_module_call(md_ctx *ctx, md_module *parent, const char *name, md_tensor *x);
/* Runs m's forward1 directly (no scope). */
md_tensor *md_module_forward(md_ctx *ctx, md_module *m, md_tensor *x);

/* nn.Conv2d(in, out, k, stride, padding, dilation, groups, bias):
 * params "weight" [out, in/groups, kh, kw] and "bias" [out]; PyTorch's
 * default init (kaiming_uniform a=sqrt(5), bias U(+-1/sqrt(fan_in))). */
md_module *md_nn_conv2d(md_ctx *ctx, int in, int out, int kh, int kw, md_conv2d_params p, bool bias,
                        md_error *err);
/* The convolution layer a conv_cfg names (mmcv's CONV_LAYERS): Conv2d,
 * DCN (DeformConv2dPack) or DCNv2 (ModulatedDeformConv2dPack). */
typedef enum md_conv_type { MD_CONV_PLAIN = 0, MD_CONV_DCN, MD_CONV_DCNV2 } md_conv_type;
/* mmcv's DCN / DCNv2 layer (type MD_CONV_DCN or MD_CONV_DCNV2) with its
 * state-dict names: param "weight" [out, in/groups, kh, kw], for DCNv2
 * with `bias` also "bias" [out] (DCN refuses a bias, as mmcv), and child
 * "conv_offset", a Conv2d(in, dg*2*kh*kw (DCN) or dg*3*kh*kw (DCNv2), same
 * kernel, stride, padding, dilation, bias) started at zero. The forward
 * runs conv_offset on x; DCN takes its output as the offsets
 * (md_deform_conv2d), DCNv2 the first two thirds as the offsets and the
 * sigmoid of the last third as the mask (md_modulated_deform_conv2d).
 * Init as mmcv: DCN's weight kaiming_uniform (relu), DCNv2's U(+-1/sqrt(in
 * kh kw)) and bias 0. */
md_module *md_nn_dcn(md_ctx *ctx, md_conv_type type, int in, int out, int kh, int kw, md_conv2d_params p,
                     int deform_groups, bool bias, md_error *err);
/* Whether m is a DCN or DCNv2 layer. */
bool md_nn_is_dcn(const md_module *m);
/* nn.ConvTranspose2d(in, out, kernel, stride, padding, bias) for
 * kernel == stride and padding 0 (mmcv's deconv upsampling): params
 * "weight" [in, out, k, k] and "bias" [out]; PyTorch's default init.
 * Other settings are refused. */
md_module *md_nn_conv_transpose2d(md_ctx *ctx, int in, int out, int kernel, int stride, int padding, bool bias,
                                  md_error *err);
/* nn.BatchNorm2d(c, eps, momentum): "weight", "bias", buffers "running_mean",
 * "running_var", "num_batches_tracked". requires_grad=false freezes the
 * affine parameters (mmdet norm_cfg requires_grad). In eval mode (training
 * false, e.g. norm_eval) it uses the running statistics. */
md_module *md_nn_batchnorm2d(md_ctx *ctx, int c, double eps, double momentum, bool requires_grad, md_error *err);
/* The same layer as SyncBN (mmcv's SyncBatchNorm, same state dict): in
 * training the statistics are those of every rank's batch. */
md_module *md_nn_sync_batchnorm2d(md_ctx *ctx, int c, double eps, double momentum, bool requires_grad,
                                  md_error *err);
/* nn.GroupNorm(num_groups, c, eps): "weight" (1) and "bias" (0) [c];
 * requires_grad=false freezes them. Same in train and eval mode. */
md_module *md_nn_groupnorm(md_ctx *ctx, int num_groups, int c, double eps, bool requires_grad, md_error *err);
/* nn.Linear(in, out, bias): "weight" [out, in], "bias" [out]. */
md_module *md_nn_linear(md_ctx *ctx, int in, int out, bool bias, md_error *err);
/* nn.ReLU (no parameters), nn.MaxPool2d. */
md_module *md_nn_relu(md_error *err);
md_module *md_nn_maxpool2d(int kernel, int stride, int pad, md_error *err);
/* Accessors for a conv layer's weight/bias (NULL if none). */
md_tensor *md_nn_weight(md_module *layer);
md_tensor *md_nn_bias(md_module *layer);

/* Whether m is one of the layers above (the layers mmcv's FLOPs counter
 * knows); buf receives PyTorch's extra_repr of it ("3, 64,
 * kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False"), ""
 * for anything else. */
bool md_nn_describe(const md_module *m, char *buf, size_t n);
/* mmcv's fuse_conv_bn: in every module, a BatchNorm2d child that follows
 * a Conv2d child (children in order, other children searched
 * recursively) is folded into that conv (its weight scaled, a bias added
 * or updated with the running statistics) and replaced by an Identity, so
 * inference does the same arithmetic in one layer. Host tensors only: fuse
 * before moving the model to a device. *n_fused (may be NULL) counts the
 * pairs. 0, or -1 with err naming the pair. */
int md_nn_fuse_conv_bn(md_ctx *ctx, md_module *m, int *n_fused, md_error *err);

/* mmcv ConvModule: children "conv" and, with a norm, "bn" (BatchNorm2d) or
 * "gn" (GroupNorm), mmcv's build_norm_layer names; activation ReLU when
 * `act` is true. With a norm, the conv has no bias unless bias is forced
 * (mmcv's bias='auto'). Init as mmcv: kaiming (fan_out, relu, normal) for
 * the conv, norm weight 1 and bias 0. */
typedef struct md_conv_module_opts {
    int in, out, kernel, stride, padding, dilation, groups;
    bool norm;            /* a norm after the conv: BN, or GN with norm_groups */
    bool norm_requires_grad;
    bool act;             /* ReLU after */
    int bias;             /* -1 auto (no bias with norm), 0 no, 1 yes */
    int norm_groups;      /* > 0: GroupNorm with this many groups instead of BN */
    double norm_eps;      /* <= 0: 1e-5 */
    double norm_momentum; /* BN only; <= 0: 0.1 */
    bool norm_sync;       /* BN: SyncBN, statistics over every rank (md_sync_batch_norm2d) */
    md_conv_type conv_type; /* conv_cfg: Conv2d (0), DCN or DCNv2 (md_nn_dcn; DCNv2 keeps its own init) */
    int deform_groups;      /* DCN / DCNv2; <= 0: 1 */
} md_conv_module_opts;
md_module *md_nn_conv_module(md_ctx *ctx, const md_conv_module_opts *o, md_error *err);

/* Child `conv` (Conv2d) of parent, then child `bn` (BatchNorm2d; NULL for
 * none), then ReLU when `relu`, each in the scope of its name. When no
 * gradient is needed (grad mode off, or nothing involved requires grad),
 * the BN (if any) is in eval mode and the tensors are on the CPU, this is
 * one md_conv2d_fused pass with the BN folded (md_batch_norm_fold);
 * otherwise the layers run one by one, each intermediate released once
 * consumed (md_tensor_release). ConvModule's forward runs through here. */
md_tensor *md_nn_conv_bn_act(md_ctx *ctx, md_module *parent, const char *conv, const char *bn, bool relu,
                             md_tensor *x);

/* Reads an mmcv norm_cfg into o's norm fields: None (or NULL) for no norm;
 * { type = "BN" | "SyncBN"; requires_grad; eps; momentum; } or
 * { type = "GN"; num_groups; requires_grad; eps; } (num_groups required).
 * `what` names the key in messages; `allow` lists the accepted types
 * ("BN,SyncBN,GN"; NULL for all). Returns 0, or -1 with err set. */
int md_norm_cfg_read(const md_cfg *norm_cfg, const char *what, const char *allow, md_conv_module_opts *o,
                     md_error *err);
/* Reads an mmcv conv_cfg into o's conv fields: None (or NULL) or
 * { type = "Conv"; } for Conv2d; { type = "DCN" | "DCNv2"; deform_groups
 * (1); } for mmcv's deformable layers. `allow` lists the accepted types
 * ("Conv,DCN,DCNv2"; NULL for all). fallback_on_stride: NULL refuses that
 * key (mmcv's layers take no such argument); else it receives the key's
 * value (false when absent), as mmdet's ResNet reads it from its `dcn`.
 * Returns 0, or -1 with err naming the file, line and key. */
int md_conv_cfg_read(const md_cfg *conv_cfg, const char *what, const char *allow, md_conv_module_opts *o,
                     bool *fallback_on_stride, md_error *err);
/* The norm layer o's norm fields describe (mmcv's build_norm_layer) over
 * `channels`: BatchNorm2d, or GroupNorm with o->norm_groups; weight 1,
 * bias 0. NULL with err set (or when o has no norm). */
md_module *md_nn_norm_layer(md_ctx *ctx, const md_conv_module_opts *o, int channels, md_error *err);
/* build_norm_layer's name abbreviation of that layer: "bn" or "gn" (NULL
 * without a norm); a layer's state-dict name is it plus a postfix. */
const char *md_norm_abbr(const md_conv_module_opts *o);

/* mmcv's CARAFEPack (upsample layer "carafe", core/nn/carafe.c): children
 * channel_compressor (Conv2d channels -> compressed_channels, 1x1) and
 * content_encoder (Conv2d compressed_channels -> up_kernel^2 * up_group *
 * scale_factor^2, encoder_kernel, padding int((encoder_kernel - 1) *
 * encoder_dilation / 2), dilation encoder_dilation); forward: the encoder's
 * kernels pixel-shuffled by scale_factor and softmax-normalised over each
 * group's up_kernel^2 taps, then md_carafe of the input. [N, channels, H,
 * W] -> [N, channels, H * scale, W * scale]. Init as mmcv's init_weights:
 * xavier uniform on both convs, then normal(0, 0.001) on content_encoder,
 * biases 0. mmcv's defaults: up_kernel 5, up_group 1, encoder_kernel 3,
 * encoder_dilation 1, compressed_channels 64. NULL with err set. */
typedef struct md_carafe_pack_opts {
    int channels, scale_factor, up_kernel, up_group, encoder_kernel, encoder_dilation, compressed_channels;
} md_carafe_pack_opts;
md_module *md_nn_carafe_pack(md_ctx *ctx, const md_carafe_pack_opts *o, md_error *err);

/* ---- initialisers (mmcv.cnn.utils.weight_init) ---- */
/* The context's RNG for weight init; md_ctx_seed sets it (and is what
 * --seed drives). */
md_rng *md_ctx_rng(md_ctx *ctx);
void md_ctx_seed(md_ctx *ctx, uint64_t seed);
int md_init_constant(md_tensor *t, double v);
int md_init_normal(md_tensor *t, md_rng *r, double mean, double std);
int md_init_uniform(md_tensor *t, md_rng *r, double a, double b);
/* mode_fan_out: fan_out instead of fan_in; nonlinearity "relu" or
 * "leaky_relu" (with a); distribution normal or uniform. */
int md_init_kaiming(md_tensor *t, md_rng *r, double a, bool mode_fan_out, const char *nonlinearity, bool uniform);
int md_init_xavier(md_tensor *t, md_rng *r, double gain, bool uniform);
/* mmcv bias_init_with_prob: -log((1 - p) / p). */
double md_bias_init_with_prob(double prior_prob);

#ifdef __cplusplus
}
#endif
#endif
