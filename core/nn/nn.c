/* Layers (Conv2d, mmcv's DCN and DCNv2, BatchNorm2d, Linear, ReLU, MaxPool2d), mmcv's ConvModule
 * and weight initialisers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

MD_API md_rng *md_ctx_rng(md_ctx *ctx) { return &ctx->init_rng; }
MD_API void md_ctx_seed(md_ctx *ctx, uint64_t seed) { md_rng_seed(&ctx->init_rng, seed); }

MD_API md_tensor *md_module_forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    if (!x) return NULL;
    if (!m || !m->cls || !m->cls->forward1)
        return md_op_fail(ctx, "forward", "module %s has no single-tensor forward",
                          m && m->cls ? m->cls->name : "(null)");
    md_tensor *y = m->cls->forward1(ctx, m, x);
    if (ctx->flops) md_flops_layer(ctx, NULL, m, x, y);
    return y;
}

MD_API md_tensor *md_module_call(md_ctx *ctx, md_module *parent, const char *name, md_tensor *x) {
    if (!x) return NULL;
    md_module *m = md_module_child(parent, name);
    if (!m) return md_op_fail(ctx, "forward", "no child module '%s'", name);
    md_scope_push(ctx, name);
    md_tensor *y = md_module_forward(ctx, m, x);
    md_scope_pop(ctx);
    return y;
}

/* ---------------------------------------------------------------- init -- */

static void fans(const md_tensor *t, double *fan_in, double *fan_out) {
    double rf = 1;
    for (int d = 2; d < t->ndim; d++) rf *= (double)t->shape[d];
    *fan_in = t->ndim >= 2 ? (double)t->shape[1] * rf : (double)(t->ndim ? t->shape[0] : 1);
    *fan_out = t->ndim >= 2 ? (double)t->shape[0] * rf : (double)(t->ndim ? t->shape[0] : 1);
}

MD_API int md_init_constant(md_tensor *t, double v) { return t ? md_tensor_fill_(t, v) : -1; }
MD_API int md_init_normal(md_tensor *t, md_rng *r, double mean, double std) {
    return t ? md_tensor_normal_(t, r, mean, std) : -1;
}
MD_API int md_init_uniform(md_tensor *t, md_rng *r, double a, double b) {
    return t ? md_tensor_uniform_(t, r, a, b) : -1;
}

MD_API int md_init_kaiming(md_tensor *t, md_rng *r, double a, bool mode_fan_out, const char *nonlinearity,
                           bool uniform) {
    if (!t) return -1;
    double fi, fo;
    fans(t, &fi, &fo);
    double gain = (nonlinearity && !strcmp(nonlinearity, "leaky_relu")) ? sqrt(2.0 / (1 + a * a)) : sqrt(2.0);
    double std = gain / sqrt(mode_fan_out ? fo : fi);
    if (uniform) return md_tensor_uniform_(t, r, -sqrt(3.0) * std, sqrt(3.0) * std);
    return md_tensor_normal_(t, r, 0, std);
}

MD_API int md_init_xavier(md_tensor *t, md_rng *r, double gain, bool uniform) {
    if (!t) return -1;
    double fi, fo;
    fans(t, &fi, &fo);
    double std = gain * sqrt(2.0 / (fi + fo));
    if (uniform) return md_tensor_uniform_(t, r, -sqrt(3.0) * std, sqrt(3.0) * std);
    return md_tensor_normal_(t, r, 0, std);
}

MD_API double md_bias_init_with_prob(double p) { return -log((1 - p) / p); }

/* PyTorch's reset_parameters for Conv2d/Linear. */
static void torch_default_init(md_ctx *ctx, md_tensor *w, md_tensor *b) {
    md_init_kaiming(w, &ctx->init_rng, sqrt(5.0), false, "leaky_relu", true);
    if (b) {
        double fi, fo;
        fans(w, &fi, &fo);
        double bound = fi > 0 ? 1 / sqrt(fi) : 0;
        md_tensor_uniform_(b, &ctx->init_rng, -bound, bound);
    }
}

/* --------------------------------------------------------------- layers -- */

typedef struct conv_layer { md_module base; md_tensor *w, *b; md_conv2d_params p; } conv_layer;

static md_tensor *conv_forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    conv_layer *c = (conv_layer *)m;
    return md_conv2d(ctx, x, c->w, c->b, c->p);
}
static const md_module_class conv_class = { .name = "Conv2d", .forward1 = conv_forward };

MD_API md_module *md_nn_conv2d(md_ctx *ctx, int in, int out, int kh, int kw, md_conv2d_params p, bool bias,
                               md_error *err) {
    if (p.groups < 1) p.groups = 1;
    if (p.dilation_h < 1) p.dilation_h = 1;
    if (p.dilation_w < 1) p.dilation_w = 1;
    if (in <= 0 || out <= 0 || in % p.groups || out % p.groups) {
        md_failc(err, MD_ERR_CONFIG, "Conv2d(%d, %d, groups=%d): channels must be positive multiples of groups",
                 in, out, p.groups);
        return NULL;
    }
    conv_layer *c = md_module_new(sizeof *c, &conv_class);
    if (!c) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->p = p;
    if (p.groups == in && in == out && in > 1) c->base.flags |= MD_MODULE_DWCONV;
    c->w = md_module_add_param(ctx, &c->base, "weight", MD_DIMS(out, in / p.groups, kh, kw), err);
    if (c->w && bias) c->b = md_module_add_param(ctx, &c->base, "bias", MD_DIMS(out), err);
    if (!c->w || (bias && !c->b)) {
        md_module_free(&c->base);
        return NULL;
    }
    torch_default_init(ctx, c->w, c->b);
    return &c->base;
}

/* mmcv's DeformConv2dPack ("DCN") and ModulatedDeformConv2dPack ("DCNv2"):
 * the weight (and DCNv2's bias) and a child Conv2d "conv_offset" giving the
 * offsets (and DCNv2's mask logits) from the input. */
typedef struct dcn_layer {
    md_module base;
    md_tensor *w, *b;
    md_conv2d_params p;
    int dg;
    bool modulated;
} dcn_layer;

static md_tensor *dcn_forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    dcn_layer *d = (dcn_layer *)m;
    md_tensor *o = md_module_call(ctx, m, "conv_offset", x);
    if (!o) return NULL;
    if (!d->modulated) return md_deform_conv2d(ctx, x, o, d->w, d->p, d->dg);
    /* torch.chunk(out, 3, dim=1): o1, o2 are the offsets (cat'ed back in
     * their order, a slice), the third part the mask logits */
    int64_t n = o->shape[1] / 3;
    md_tensor *off = md_slice(ctx, o, 1, 0, 2 * n, 1), *mask = md_sigmoid(ctx, md_slice(ctx, o, 1, 2 * n, 3 * n, 1));
    return md_modulated_deform_conv2d(ctx, x, off, mask, d->w, d->b, d->p, d->dg);
}
/* mmcv's DeformConv2dPack._load_from_state_dict (version < 2, the same in
 * ModulatedDeformConv2dPack): conv_offset.{weight,bias} of the layer at
 * "a.conv2." were "a.conv2_offset.{weight,bias}". */
static bool dcn_legacy_name(const md_module *m, const char *prefix, const char *rel, const md_st *st,
                            const char *strip, char *buf, size_t n) {
    (void)m, (void)st, (void)strip;
    size_t pl = strlen(prefix);
    if (!pl || (strcmp(rel, "conv_offset.weight") && strcmp(rel, "conv_offset.bias"))) return false;
    return snprintf(buf, n, "%.*s_offset.%s", (int)(pl - 1), prefix, rel + strlen("conv_offset.")) < (int)n;
}
static const md_module_class dcn_class = { .name = "DeformConv2dPack", .forward1 = dcn_forward,
                                           .legacy_name = dcn_legacy_name };
static const md_module_class mdcn_class = { .name = "ModulatedDeformConv2dPack", .forward1 = dcn_forward,
                                            .legacy_name = dcn_legacy_name };

MD_API md_module *md_nn_dcn(md_ctx *ctx, md_conv_type type, int in, int out, int kh, int kw, md_conv2d_params p,
                            int deform_groups, bool bias, md_error *err) {
    bool mod = type == MD_CONV_DCNV2;
    const char *name = mod ? "DCNv2" : "DCN";
    if (p.groups < 1) p.groups = 1;
    if (p.dilation_h < 1) p.dilation_h = 1;
    if (p.dilation_w < 1) p.dilation_w = 1;
    if (type != MD_CONV_DCN && type != MD_CONV_DCNV2) {
        md_failc(err, MD_ERR_CONFIG, "md_nn_dcn: type %d is not DCN or DCNv2", (int)type);
        return NULL;
    }
    if (in <= 0 || out <= 0 || in % p.groups || out % p.groups || kh < 1 || kw < 1) {
        md_failc(err, MD_ERR_CONFIG, "%s(%d, %d, kernel_size=(%d, %d), groups=%d): channels must be positive "
                 "multiples of groups", name, in, out, kh, kw, p.groups);
        return NULL;
    }
    if (deform_groups < 1 || in % deform_groups) {
        md_failc(err, MD_ERR_CONFIG, "%s(%d, %d): deform_groups %d must be positive and divide the input channels",
                 name, in, out, deform_groups);
        return NULL;
    }
    if (bias && !mod) {   /* mmcv's DeformConv2d asserts it */
        md_failc(err, MD_ERR_CONFIG, "DCN(%d, %d): bias=True is not supported in DeformConv2d (mmcv); use a norm "
                 "after it (ConvModule's bias \"auto\") or DCNv2", in, out);
        return NULL;
    }
    dcn_layer *d = md_module_new(sizeof *d, mod ? &mdcn_class : &dcn_class);
    if (!d) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    d->p = p;
    d->dg = deform_groups;
    d->modulated = mod;
    d->w = md_module_add_param(ctx, &d->base, "weight", MD_DIMS(out, in / p.groups, kh, kw), err);
    if (d->w && bias) d->b = md_module_add_param(ctx, &d->base, "bias", MD_DIMS(out), err);
    md_conv2d_params po = p;
    po.groups = 1;
    md_module *co = d->w && (d->b || !bias)
                        ? md_nn_conv2d(ctx, in, (mod ? 3 : 2) * deform_groups * kh * kw, kh, kw, po, true, err)
                        : NULL;
    if (!co || md_module_add_child(&d->base, "conv_offset", co, err) != 0) {
        md_module_free(co);
        md_module_free(&d->base);
        return NULL;
    }
    if (mod) {   /* ModulatedDeformConv2d.init_weights: U(-1/sqrt(in*kh*kw), ..), bias 0 */
        double stdv = 1.0 / sqrt((double)in * kh * kw);
        md_init_uniform(d->w, &ctx->init_rng, -stdv, stdv);
        if (d->b) md_init_constant(d->b, 0);
    } else {     /* DeformConv2d.reset_parameters: kaiming_uniform_(nonlinearity='relu') */
        md_init_kaiming(d->w, &ctx->init_rng, 0, false, "relu", true);
    }
    /* init_offset / init_weights: the offsets start at zero */
    md_init_constant(md_nn_weight(co), 0);
    md_init_constant(md_nn_bias(co), 0);
    return &d->base;
}

MD_API bool md_nn_is_dcn(const md_module *m) { return m && (m->cls == &dcn_class || m->cls == &mdcn_class); }

/* ConvTranspose2d with kernel == stride and no padding: the kernels do
 * not overlap, so it is one GEMM of every input pixel with the weight
 * [in, out * k * k], its k x k blocks laid side by side. */
typedef struct deconv_layer { md_module base; md_tensor *w, *b; int k; } deconv_layer;

static md_tensor *deconv_forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    deconv_layer *d = (deconv_layer *)m;
    if (!x) return NULL;
    char sx[96];
    int64_t C = d->w->shape[0], O = d->w->shape[1], k = d->k;
    if (x->ndim != 4 || x->shape[1] != C)
        return md_op_fail(ctx, "ConvTranspose2d", "input %s must be [N, %lld, H, W]", md_tensor_describe(x, sx, sizeof sx),
                          (long long)C);
    int64_t N = x->shape[0], H = x->shape[2], W = x->shape[3];
    md_tensor *y = md_reshape(ctx, md_permute(ctx, x, (const int[]){ 0, 2, 3, 1 }), MD_DIMS(N * H * W, C));
    y = md_matmul(ctx, y, md_reshape(ctx, d->w, MD_DIMS(C, O * k * k)));
    y = md_reshape(ctx, y, MD_DIMS(N, H, W, O, k, k));
    y = md_reshape(ctx, md_permute(ctx, y, (const int[]){ 0, 3, 1, 4, 2, 5 }), MD_DIMS(N, O, H * k, W * k));
    if (d->b) y = md_add(ctx, y, md_reshape(ctx, d->b, MD_DIMS(1, O, 1, 1)));
    return y;
}
static const md_module_class deconv_class = { .name = "ConvTranspose2d", .forward1 = deconv_forward };

MD_API md_module *md_nn_conv_transpose2d(md_ctx *ctx, int in, int out, int kernel, int stride, int padding, bool bias,
                                         md_error *err) {
    if (in <= 0 || out <= 0 || kernel < 1 || kernel != stride || padding != 0) {
        md_failc(err, MD_ERR_CONFIG, "ConvTranspose2d(%d, %d, kernel_size=%d, stride=%d, padding=%d): only positive "
                 "channels, kernel_size == stride and padding 0 are supported", in, out, kernel, stride, padding);
        return NULL;
    }
    deconv_layer *d = md_module_new(sizeof *d, &deconv_class);
    if (!d) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    d->k = kernel;
    d->w = md_module_add_param(ctx, &d->base, "weight", MD_DIMS(in, out, kernel, kernel), err);
    if (d->w && bias) d->b = md_module_add_param(ctx, &d->base, "bias", MD_DIMS(out), err);
    if (!d->w || (bias && !d->b)) {
        md_module_free(&d->base);
        return NULL;
    }
    torch_default_init(ctx, d->w, d->b);
    return &d->base;
}

typedef struct bn_layer {
    md_module base;
    md_tensor *w, *b, *mean, *var, *count;
    double eps, momentum;
    int64_t count_mirror;   /* the device counter's value, read once (-1: not yet) */
    bool sync;              /* SyncBN */
} bn_layer;

/* num_batches_tracked += 1. On a device the value is mirrored on the host
 * and written with a fill, so a training step never waits for the GPU. */
static void bn_count(bn_layer *n) {
    md_tensor *c = n->count;
    if (c->device == MD_CPU) {
        md_i64(c)[0]++;
        n->count_mirror = -1;
        return;
    }
    if (n->count_mirror < 0) n->count_mirror = (int64_t)md_tensor_item(c);
    md_tensor_fill_(c, (double)++n->count_mirror);
}

static md_tensor *bn_forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    bn_layer *n = (bn_layer *)m;
    if (m->training && x && n->count) bn_count(n);
    if (n->sync) return md_sync_batch_norm2d(ctx, x, n->w, n->b, n->mean, n->var, m->training, n->momentum, n->eps);
    return md_batch_norm2d(ctx, x, n->w, n->b, n->mean, n->var, m->training, n->momentum, n->eps);
}
static const md_module_class bn_class = { .name = "BatchNorm2d", .forward1 = bn_forward };

MD_API md_module *md_nn_batchnorm2d(md_ctx *ctx, int c, double eps, double momentum, bool requires_grad,
                                    md_error *err) {
    bn_layer *n = md_module_new(sizeof *n, &bn_class);
    if (!n) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    n->base.flags |= MD_MODULE_NORM;
    n->eps = eps;
    n->momentum = momentum;
    n->count_mirror = -1;
    n->w = md_module_add_param(ctx, &n->base, "weight", MD_DIMS(c), err);
    n->b = n->w ? md_module_add_param(ctx, &n->base, "bias", MD_DIMS(c), err) : NULL;
    n->mean = n->b ? md_module_add_buffer(ctx, &n->base, "running_mean", MD_F32, MD_DIMS(c), err) : NULL;
    n->var = n->mean ? md_module_add_buffer(ctx, &n->base, "running_var", MD_F32, MD_DIMS(c), err) : NULL;
    n->count = n->var ? md_module_add_buffer(ctx, &n->base, "num_batches_tracked", MD_I64, 0, NULL, err) : NULL;
    if (!n->count) {
        md_module_free(&n->base);
        return NULL;
    }
    md_tensor_fill_(n->w, 1.0);
    md_tensor_fill_(n->var, 1.0);
    n->w->requires_grad = n->b->requires_grad = requires_grad;
    return &n->base;
}

MD_API md_module *md_nn_sync_batchnorm2d(md_ctx *ctx, int c, double eps, double momentum, bool requires_grad,
                                         md_error *err) {
    md_module *m = md_nn_batchnorm2d(ctx, c, eps, momentum, requires_grad, err);
    if (m) ((bn_layer *)m)->sync = true;
    return m;
}

typedef struct gn_layer { md_module base; md_tensor *w, *b; int groups; double eps; } gn_layer;

static md_tensor *gn_forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    gn_layer *n = (gn_layer *)m;
    return md_group_norm(ctx, x, n->groups, n->w, n->b, n->eps);
}
static const md_module_class gn_class = { .name = "GroupNorm", .forward1 = gn_forward };

MD_API md_module *md_nn_groupnorm(md_ctx *ctx, int num_groups, int c, double eps, bool requires_grad,
                                  md_error *err) {
    if (num_groups < 1 || c < 1 || c % num_groups) {
        md_failc(err, MD_ERR_CONFIG, "GroupNorm(num_groups=%d, num_channels=%d): num_groups must be positive and "
                 "divide the channels", num_groups, c);
        return NULL;
    }
    gn_layer *n = md_module_new(sizeof *n, &gn_class);
    if (!n) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    n->base.flags |= MD_MODULE_NORM;
    n->groups = num_groups;
    n->eps = eps;
    n->w = md_module_add_param(ctx, &n->base, "weight", MD_DIMS(c), err);
    n->b = n->w ? md_module_add_param(ctx, &n->base, "bias", MD_DIMS(c), err) : NULL;
    if (!n->b) {
        md_module_free(&n->base);
        return NULL;
    }
    md_tensor_fill_(n->w, 1.0);
    n->w->requires_grad = n->b->requires_grad = requires_grad;
    return &n->base;
}

typedef struct linear_layer { md_module base; md_tensor *w, *b; } linear_layer;

static md_tensor *linear_forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    linear_layer *l = (linear_layer *)m;
    return md_linear(ctx, x, l->w, l->b);
}
static const md_module_class linear_class = { .name = "Linear", .forward1 = linear_forward };

MD_API md_module *md_nn_linear(md_ctx *ctx, int in, int out, bool bias, md_error *err) {
    linear_layer *l = md_module_new(sizeof *l, &linear_class);
    if (!l) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    l->w = md_module_add_param(ctx, &l->base, "weight", MD_DIMS(out, in), err);
    if (l->w && bias) l->b = md_module_add_param(ctx, &l->base, "bias", MD_DIMS(out), err);
    if (!l->w || (bias && !l->b)) {
        md_module_free(&l->base);
        return NULL;
    }
    torch_default_init(ctx, l->w, l->b);
    return &l->base;
}

static md_tensor *relu_forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    (void)m;
    return md_relu(ctx, x);
}
static const md_module_class relu_class = { .name = "ReLU", .forward1 = relu_forward };

MD_API md_module *md_nn_relu(md_error *err) {
    md_module *m = md_module_new(sizeof *m, &relu_class);
    if (!m) md_failc(err, MD_ERR_NOMEM, "out of memory");
    return m;
}

typedef struct pool_layer { md_module base; int k, s, p; } pool_layer;

static md_tensor *pool_forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    pool_layer *p = (pool_layer *)m;
    return md_max_pool2d(ctx, x, p->k, p->s, p->p, false);
}
static const md_module_class pool_class = { .name = "MaxPool2d", .forward1 = pool_forward };

MD_API md_module *md_nn_maxpool2d(int kernel, int stride, int pad, md_error *err) {
    pool_layer *p = md_module_new(sizeof *p, &pool_class);
    if (!p) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    p->k = kernel;
    p->s = stride;
    p->p = pad;
    return &p->base;
}

/* nn.Identity: what md_nn_fuse_conv_bn leaves where a BatchNorm2d was. */
static md_tensor *identity_forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    (void)ctx;
    (void)m;
    return x;
}
static const md_module_class identity_class = { .name = "Identity", .forward1 = identity_forward };

/* ---------------------------------------------------------------- FLOPs -- */

MD_API void md_flops_layer(md_ctx *ctx, const char *name, const md_module *m, const md_tensor *x,
                           const md_tensor *y) {
    if (!ctx->flops || !m || !x || !y) return;
    const md_module_class *c = m->cls;
    int64_t f;
    if (c == &conv_class && y->ndim == 4) {
        const conv_layer *l = (const conv_layer *)m;
        /* mmcv: output positions x kh x kw x in_channels x out / groups;
         * in_channels x out / groups is the weight's C/groups x out */
        int64_t pos = y->shape[0] * y->shape[2] * y->shape[3], out = l->w->shape[0];
        f = pos * l->w->shape[1] * l->w->shape[2] * l->w->shape[3] * out + (l->b ? pos * out : 0);
    } else if (c == &deconv_class && x->ndim == 4 && y->ndim == 4) {
        const deconv_layer *l = (const deconv_layer *)m;
        int64_t in = l->w->shape[0], out = l->w->shape[1];
        f = x->shape[0] * x->shape[2] * x->shape[3] * (int64_t)l->k * l->k * in * out +
            (l->b ? out * y->shape[0] * y->shape[2] * y->shape[3] : 0);
    } else if (c == &bn_class || c == &gn_class) {
        f = md_tensor_numel(x) * 2;   /* affine: both have weight and bias */
    } else if (c == &linear_class && y->ndim >= 1) {
        f = md_tensor_numel(x) * y->shape[y->ndim - 1];
    } else if (c == &relu_class) {
        f = md_tensor_numel(y);
    } else if (c == &pool_class) {
        f = md_tensor_numel(x);
    } else {
        return;
    }
    md_flops_add(ctx, name, c->name, f);
}

/* Python's repr of a float such as eps and momentum ("1e-05", "0.1"). */
static void float_repr(double v, char *buf, size_t n) {
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".en")) strncat(buf, ".0", n - strlen(buf) - 1);
}

MD_API bool md_nn_describe(const md_module *m, char *buf, size_t n) {
    const md_module_class *c = m ? m->cls : NULL;
    char a[32], b[32];
    if (n) buf[0] = 0;
    if (c == &conv_class) {
        const conv_layer *l = (const conv_layer *)m;
        const md_conv2d_params *p = &l->p;
        int len = snprintf(buf, n, "%lld, %lld, kernel_size=(%lld, %lld), stride=(%d, %d)",
                           (long long)(l->w->shape[1] * p->groups), (long long)l->w->shape[0],
                           (long long)l->w->shape[2], (long long)l->w->shape[3], p->stride_h, p->stride_w);
        if ((p->pad_h || p->pad_w) && len < (int)n)
            len += snprintf(buf + len, n - (size_t)len, ", padding=(%d, %d)", p->pad_h, p->pad_w);
        if ((p->dilation_h != 1 || p->dilation_w != 1) && len < (int)n)
            len += snprintf(buf + len, n - (size_t)len, ", dilation=(%d, %d)", p->dilation_h, p->dilation_w);
        if (p->groups != 1 && len < (int)n) len += snprintf(buf + len, n - (size_t)len, ", groups=%d", p->groups);
        if (!l->b && len < (int)n) snprintf(buf + len, n - (size_t)len, ", bias=False");
    } else if (c == &deconv_class) {
        const deconv_layer *l = (const deconv_layer *)m;
        snprintf(buf, n, "%lld, %lld, kernel_size=(%d, %d), stride=(%d, %d)%s", (long long)l->w->shape[0],
                 (long long)l->w->shape[1], l->k, l->k, l->k, l->k, l->b ? "" : ", bias=False");
    } else if (c == &bn_class) {
        const bn_layer *l = (const bn_layer *)m;
        float_repr(l->eps, a, sizeof a);
        float_repr(l->momentum, b, sizeof b);
        snprintf(buf, n, "%lld, eps=%s, momentum=%s, affine=True, track_running_stats=True",
                 (long long)l->w->shape[0], a, b);
    } else if (c == &gn_class) {
        const gn_layer *l = (const gn_layer *)m;
        float_repr(l->eps, a, sizeof a);
        snprintf(buf, n, "%d, %lld, eps=%s, affine=True", l->groups, (long long)l->w->shape[0], a);
    } else if (c == &linear_class) {
        const linear_layer *l = (const linear_layer *)m;
        snprintf(buf, n, "in_features=%lld, out_features=%lld, bias=%s", (long long)l->w->shape[1],
                 (long long)l->w->shape[0], l->b ? "True" : "False");
    } else if (c == &pool_class) {
        const pool_layer *l = (const pool_layer *)m;
        snprintf(buf, n, "kernel_size=%d, stride=%d, padding=%d, dilation=1, ceil_mode=False", l->k, l->s, l->p);
    } else if (c != &relu_class) {
        return false;
    }
    return true;
}

/* ------------------------------------------------------- fuse conv + bn -- */

/* mmcv's _fuse_conv_bn in float: w' = w * f, b' = (b - mean) * f + beta,
 * f = gamma / sqrt(var + eps). */
static int fold(md_ctx *ctx, conv_layer *c, const bn_layer *n, md_error *err) {
    const md_tensor *ts[] = { c->w, c->b, n->w, n->b, n->mean, n->var };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        if (ts[i] && ts[i]->device != MD_CPU)
            return md_failc(err, MD_ERR_CONFIG, "fuse_conv_bn: the model must be on the CPU (fuse before moving it)");
    int64_t O = c->w->shape[0], per = md_tensor_numel(c->w) / (O ? O : 1);
    if (n->w->shape[0] != O)
        return md_failc(err, MD_ERR_SHAPE, "fuse_conv_bn: a conv of %lld channels followed by a BatchNorm2d of %lld",
                        (long long)O, (long long)n->w->shape[0]);
    if (!c->b && !(c->b = md_module_add_param(ctx, &c->base, "bias", MD_DIMS(O), err))) return -1;
    float *w = md_f32(c->w), *b = md_f32(c->b);
    const float *g = md_f32(n->w), *beta = md_f32(n->b), *mean = md_f32(n->mean), *var = md_f32(n->var);
    for (int64_t o = 0; o < O; o++) {
        float f = g[o] / sqrtf(var[o] + (float)n->eps);
        for (int64_t k = 0; k < per; k++) w[o * per + k] *= f;
        b[o] = (b[o] - mean[o]) * f + beta[o];
    }
    return 0;
}

MD_API int md_nn_fuse_conv_bn(md_ctx *ctx, md_module *m, int *n_fused, md_error *err) {
    md_module_link *conv = NULL;
    for (int i = 0; i < m->n_children; i++) {
        md_module_link *ch = &m->children[i];
        if (ch->m->cls == &bn_class) {
            if (!conv) continue;
            md_module *id = md_module_new(sizeof *id, &identity_class);
            if (!id) return md_failc(err, MD_ERR_NOMEM, "out of memory");
            if (fold(ctx, (conv_layer *)conv->m, (bn_layer *)ch->m, err) != 0) {
                md_module_free(id);
                return md_error_wrap(err, "%s and %s", conv->name, ch->name);
            }
            id->training = ch->m->training;
            md_module_free(ch->m);
            ch->m = id;
            conv = NULL;
            if (n_fused) (*n_fused)++;
        } else if (ch->m->cls == &conv_class) {
            conv = ch;
        } else if (md_nn_fuse_conv_bn(ctx, ch->m, n_fused, err) != 0) {
            return md_error_wrap(err, "%s", ch->name);
        }
    }
    return 0;
}

MD_API md_tensor *md_nn_weight(md_module *layer) {
    if (layer->cls == &conv_class) return ((conv_layer *)layer)->w;
    if (md_nn_is_dcn(layer)) return ((dcn_layer *)layer)->w;
    if (layer->cls == &linear_class) return ((linear_layer *)layer)->w;
    if (layer->cls == &deconv_class) return ((deconv_layer *)layer)->w;
    if (layer->cls == &bn_class) return ((bn_layer *)layer)->w;
    if (layer->cls == &gn_class) return ((gn_layer *)layer)->w;
    return NULL;
}

MD_API md_tensor *md_nn_bias(md_module *layer) {
    if (layer->cls == &conv_class) return ((conv_layer *)layer)->b;
    if (md_nn_is_dcn(layer)) return ((dcn_layer *)layer)->b;
    if (layer->cls == &linear_class) return ((linear_layer *)layer)->b;
    if (layer->cls == &deconv_class) return ((deconv_layer *)layer)->b;
    if (layer->cls == &bn_class) return ((bn_layer *)layer)->b;
    if (layer->cls == &gn_class) return ((gn_layer *)layer)->b;
    return NULL;
}

/* ---------------------------------------------------------- ConvModule -- */

/* t's storage goes back once y (made from it) no longer needs it. */
static md_tensor *then_release(md_ctx *ctx, md_tensor *y, md_tensor *t) {
    if (t && (!y || y->data != t->data)) md_tensor_release(ctx, t);
    return y;
}

static bool wants_grad(const md_tensor *t) { return t && t->requires_grad; }

MD_API md_tensor *md_nn_conv_bn_act(md_ctx *ctx, md_module *parent, const char *conv, const char *bn, bool relu,
                                    md_tensor *x) {
    if (!x) return NULL;
    md_module *cm = md_module_child(parent, conv), *nm = bn ? md_module_child(parent, bn) : NULL;
    if (!cm || (bn && !nm))
        return md_op_fail(ctx, "forward", "no child module '%s'", !cm ? conv : bn);
    if (nm && nm->cls == &identity_class) nm = NULL, bn = NULL;   /* folded by md_nn_fuse_conv_bn */
    conv_layer *c = cm->cls == &conv_class ? (conv_layer *)cm : NULL;
    bn_layer *n = nm && nm->cls == &bn_class && !nm->training ? (bn_layer *)nm : NULL;
    bool grad = md_grad_enabled(ctx) && (wants_grad(x) || (c && (wants_grad(c->w) || wants_grad(c->b))) ||
                                         (n && (wants_grad(n->w) || wants_grad(n->b))));
    /* the fused pass where x's backend has the fused kernel (the CPU's) */
    const md_backend *be = md__backend_table(x->device);
    if (c && (!nm || n) && !grad && be && be->conv2d_forward_ep &&
        md_device_equal(md_tensor_device(x), md_tensor_device(c->w))) {
        md_conv_epilogue e = { NULL, NULL, relu };
        md_scope_push(ctx, conv);
        if (n && md_batch_norm_fold(ctx, n->w, n->b, n->mean, n->var, n->eps, &e.scale, &e.shift) != 0) {
            md_scope_pop(ctx);
            return NULL;
        }
        md_tensor *y = md_conv2d_fused(ctx, x, c->w, c->b, c->p, &e);
        md_scope_pop(ctx);
        if (ctx->flops) {   /* the fused pass skipped the layers' own counts */
            md_flops_layer(ctx, conv, cm, x, y);
            if (n) md_flops_layer(ctx, bn, nm, y, y);
        }
        return y;
    }
    md_tensor *y = md_module_call(ctx, parent, conv, x);
    if (bn) y = then_release(ctx, md_module_call(ctx, parent, bn, y), y);
    /* in place: the conv / norm output feeds nothing else */
    if (relu) y = then_release(ctx, md_relu_(ctx, y), y);
    return y;
}

typedef struct conv_module { md_module base; const char *norm; bool act; } conv_module;

/* One fused pass in inference (md_nn_conv_bn_act); a GroupNorm runs apart. */
static md_tensor *conv_module_forward(md_ctx *ctx, md_module *m, md_tensor *x) {
    conv_module *c = (conv_module *)m;
    if (!c->norm || !strcmp(c->norm, "bn")) x = md_nn_conv_bn_act(ctx, m, "conv", c->norm, c->act, x);
    else {
        x = md_module_call(ctx, m, "conv", x);
        x = md_module_call(ctx, m, c->norm, x);
        /* in place: the conv / bn / gn output feeds nothing else, and their
         * backward reads only their inputs */
        if (c->act) x = md_relu_(ctx, x);
    }
    /* mmcv's ConvModule runs its activation as the layer `activate` */
    if (c->act) md_flops_relu(ctx, "activate", x);
    return x;
}
static const md_module_class conv_module_class = { .name = "ConvModule", .forward1 = conv_module_forward };

/* mmcv build_norm_layer's abbreviations: BatchNorm -> "bn", GroupNorm -> "gn" */
MD_API const char *md_norm_abbr(const md_conv_module_opts *o) {
    return !o->norm ? NULL : o->norm_groups > 0 ? "gn" : "bn";
}

MD_API md_module *md_nn_norm_layer(md_ctx *ctx, const md_conv_module_opts *o, int channels, md_error *err) {
    if (!o->norm) {
        md_failc(err, MD_ERR_CONFIG, "no norm layer configured");
        return NULL;
    }
    double eps = o->norm_eps > 0 ? o->norm_eps : 1e-5;
    return o->norm_groups > 0
               ? md_nn_groupnorm(ctx, o->norm_groups, channels, eps, o->norm_requires_grad, err)
               : (o->norm_sync ? md_nn_sync_batchnorm2d : md_nn_batchnorm2d)(
                     ctx, channels, eps, o->norm_momentum > 0 ? o->norm_momentum : 0.1, o->norm_requires_grad, err);
}

MD_API md_module *md_nn_conv_module(md_ctx *ctx, const md_conv_module_opts *o, md_error *err) {
    conv_module *c = md_module_new(sizeof *c, &conv_module_class);
    if (!c) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->norm = md_norm_abbr(o);
    c->act = o->act;
    bool bias = o->bias < 0 ? !o->norm : o->bias > 0;
    md_conv2d_params p = { o->stride ? o->stride : 1, o->stride ? o->stride : 1, o->padding, o->padding,
                           o->dilation ? o->dilation : 1, o->dilation ? o->dilation : 1, o->groups ? o->groups : 1 };
    md_module *conv = o->conv_type == MD_CONV_PLAIN
                          ? md_nn_conv2d(ctx, o->in, o->out, o->kernel, o->kernel, p, bias, err)
                          : md_nn_dcn(ctx, o->conv_type, o->in, o->out, o->kernel, o->kernel, p,
                                      o->deform_groups > 0 ? o->deform_groups : 1, bias, err);
    if (!conv || md_module_add_child(&c->base, "conv", conv, err) != 0) {
        md_module_free(conv);
        md_module_free(&c->base);
        return NULL;
    }
    /* mmcv ConvModule.init_weights: kaiming normal, fan_out, relu; bias 0,
     * for a conv without its own init_weights (DCNv2 has one) */
    if (o->conv_type != MD_CONV_DCNV2) {
        md_init_kaiming(md_nn_weight(conv), &ctx->init_rng, 0, true, "relu", false);
        if (md_nn_bias(conv)) md_init_constant(md_nn_bias(conv), 0);
    }
    if (o->norm) {
        md_module *nm = md_nn_norm_layer(ctx, o, o->out, err);
        if (!nm || md_module_add_child(&c->base, c->norm, nm, err) != 0) {
            md_module_free(nm);
            md_module_free(&c->base);
            return NULL;
        }
    }
    return &c->base;
}

/* True when `type` is one of the comma-separated names in `list`. */
static bool in_list(const char *type, const char *list) {
    size_t n = strlen(type);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, type, n)) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

MD_API int md_norm_cfg_read(const md_cfg *nc, const char *what, const char *allow, md_conv_module_opts *o,
                            md_error *err) {
    o->norm = false;
    o->norm_requires_grad = true;
    o->norm_groups = 0;
    o->norm_eps = 0;
    o->norm_momentum = 0;
    o->norm_sync = false;
    if (!nc || md_cfg_kind(nc) == MD_CFG_NONE) return 0;
    if (!allow) allow = "BN,SyncBN,GN";
    if (md_cfg_kind(nc) != MD_CFG_GROUP)
        return md_failc(err, MD_ERR_CONFIG, "%s:%d: %s must be None or a group { type = ...; }", md_cfg_file(nc),
                        md_cfg_line(nc), what);
    const char *type = md_cfg_str(nc, "type", "");
    if (!in_list(type, allow))
        return md_failc(err, MD_ERR_CONFIG, "%s:%d: %s.type '%s' is not supported (%s)", md_cfg_file(nc),
                        md_cfg_line(nc), what, type, allow);
    bool gn = !strcmp(type, "GN");
    o->norm_sync = !strcmp(type, "SyncBN");
    static const md_key bn_keys[] = {
        { "requires_grad", MD_KEY_BOOL, "true", "train the affine parameters", false },
        { "eps", MD_KEY_FLOAT, "1e-5", "added to the variance", false },
        { "momentum", MD_KEY_FLOAT, "0.1", "running statistics momentum", false },
        { 0 } };
    static const md_key gn_keys[] = {
        { "num_groups", MD_KEY_INT, NULL, "groups of channels", true },
        { "requires_grad", MD_KEY_BOOL, "true", "train the affine parameters", false },
        { "eps", MD_KEY_FLOAT, "1e-5", "added to the variance", false },
        { 0 } };
    if (md_cfg_check_keys(nc, gn ? gn_keys : bn_keys, what, err) != 0) return -1;
    o->norm = true;
    o->norm_requires_grad = md_cfg_bool(nc, "requires_grad", true);
    o->norm_eps = md_cfg_float(nc, "eps", 1e-5);
    if (!(o->norm_eps > 0))
        return md_failc(err, MD_ERR_CONFIG, "%s:%d: %s.eps %g must be positive", md_cfg_file(nc), md_cfg_line(nc),
                        what, o->norm_eps);
    if (gn) {
        int64_t g = md_cfg_int(nc, "num_groups", 0);
        if (g < 1 || g > INT32_MAX)
            return md_failc(err, MD_ERR_CONFIG, "%s:%d: %s.num_groups %lld must be positive", md_cfg_file(nc),
                            md_cfg_line(nc), what, (long long)g);
        o->norm_groups = (int)g;
    } else {
        o->norm_momentum = md_cfg_float(nc, "momentum", 0.1);
        if (!(o->norm_momentum > 0 && o->norm_momentum <= 1))
            return md_failc(err, MD_ERR_CONFIG, "%s:%d: %s.momentum %g must be in (0, 1] (a cumulative average, "
                            "momentum None, is not supported)", md_cfg_file(nc), md_cfg_line(nc), what,
                            o->norm_momentum);
    }
    return 0;
}

MD_API int md_conv_cfg_read(const md_cfg *cc, const char *what, const char *allow, md_conv_module_opts *o,
                            bool *fallback_on_stride, md_error *err) {
    o->conv_type = MD_CONV_PLAIN;
    o->deform_groups = 0;
    if (fallback_on_stride) *fallback_on_stride = false;
    if (!cc || md_cfg_kind(cc) == MD_CFG_NONE) return 0;
    if (!allow) allow = "Conv,DCN,DCNv2";
    if (md_cfg_kind(cc) != MD_CFG_GROUP)
        return md_failc(err, MD_ERR_CONFIG, "%s:%d: %s must be None or a group { type = ...; }", md_cfg_file(cc),
                        md_cfg_line(cc), what);
    const char *type = md_cfg_str(cc, "type", "");
    if (!in_list(type, allow))
        return md_failc(err, MD_ERR_CONFIG, "%s:%d: %s.type '%s' is not supported (%s)", md_cfg_file(cc),
                        md_cfg_line(cc), what, type, allow);
    bool plain = !strcmp(type, "Conv");
    static const md_key conv_keys[] = { { 0 } };
    static const md_key dcn_keys[] = {
        { "deform_groups", MD_KEY_INT, "1", "groups of input channels with their own offsets", false },
        { 0 } };
    static const md_key dcn_keys_fb[] = {
        { "deform_groups", MD_KEY_INT, "1", "groups of input channels with their own offsets", false },
        { "fallback_on_stride", MD_KEY_BOOL, "false", "a plain conv instead (mmdet's Bottleneck)", false },
        { 0 } };
    if (md_cfg_check_keys(cc, plain ? conv_keys : fallback_on_stride ? dcn_keys_fb : dcn_keys, what, err) != 0)
        return -1;
    if (plain) return 0;
    int64_t dg = md_cfg_int(cc, "deform_groups", 1);
    if (dg < 1 || dg > INT32_MAX)
        return md_failc(err, MD_ERR_CONFIG, "%s:%d: %s.deform_groups %lld must be positive", md_cfg_file(cc),
                        md_cfg_line(cc), what, (long long)dg);
    o->conv_type = !strcmp(type, "DCN") ? MD_CONV_DCN : MD_CONV_DCNV2;
    o->deform_groups = (int)dg;
    if (fallback_on_stride) *fallback_on_stride = md_cfg_bool(cc, "fallback_on_stride", false);
    return 0;
}
