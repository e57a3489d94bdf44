/* Deformable convolution, mmcv's deform_conv2d (DCNv1) and
 * modulated_deform_conv2d (DCNv2): checks, output allocation, autograd;
 * the kernels are the backend's (on the CPU backends/cpu/deform_conv.c,
 * the sampling rule backends/deform_sample.h). */
#include <string.h>
#include "internal.h"
#include "op_conv.h"

typedef struct deform_saved {
    md__deform_shape s;
    md_tensor *x, *off, *mask, *w;   /* contiguous copies used by the forward */
} deform_saved;

static const char *op_name(bool modulated) { return modulated ? "modulated_deform_conv2d" : "deform_conv2d"; }

/* Inputs: x, offset, mask, weight, bias (mask and bias may be NULL). */
static int deform_backward(md_ctx *ctx, md_node *node, md_tensor *gy) {
    deform_saved *sv = md_node_saved(node);
    const char *op = op_name(sv->mask != NULL);
    const md_backend *be = md__be(ctx, op, sv->x);
    if (!be) return -1;
    md_tensor *g[4] = { NULL, NULL, NULL, NULL };
    md_tensor *like[4] = { sv->x, sv->off, sv->mask, sv->w };
    for (int i = 0; i < 4; i++)
        if (like[i] && md_node_needs_grad(node, i) && !(g[i] = md_tensor_empty_like(ctx, like[i])))
            return -1;
    if ((g[0] || g[1] || g[2] || g[3]) &&
        be->deform_conv2d_backward(&sv->s, md_f32(sv->x), md_f32(sv->off), sv->mask ? md_f32(sv->mask) : NULL,
                                   md_f32(sv->w), md_f32(gy), g[0] ? md_f32(g[0]) : NULL,
                                   g[1] ? md_f32(g[1]) : NULL, g[2] ? md_f32(g[2]) : NULL,
                                   g[3] ? md_f32(g[3]) : NULL) != 0)
        return md__be_failed(ctx, op, be), -1;
    for (int i = 0; i < 4; i++)
        if (g[i] && md_node_accumulate(ctx, node, i, g[i]) != 0) return -1;
    if (md_node_needs_grad(node, 4)) {
        md_tensor *gb = md__empty_like_on(ctx, sv->x, MD_F32, MD_DIMS(sv->s.c.O));
        if (!gb) return -1;
        if (be->conv2d_backward_bias(&sv->s.c, md_f32(gy), md_f32(gb)) != 0) return md__be_failed(ctx, op, be), -1;
        if (md_node_accumulate(ctx, node, 4, gb) != 0) return -1;
    }
    return 0;
}

static int check_map(md_ctx *ctx, const char *op, const char *what, md_tensor *t, const md__conv_shape *s,
                     int64_t ch) {
    char a[96];
    if (t->dtype != MD_F32 || t->ndim != 4 || t->shape[0] != s->N || t->shape[1] != ch || t->shape[2] != s->OH ||
        t->shape[3] != s->OW)
        return md_op_fail(ctx, op, "%s %s must be f32 [%lld, %lld, %lld, %lld] (N, %s, output height and width)",
                          what, md_tensor_describe(t, a, sizeof a), (long long)s->N, (long long)ch,
                          (long long)s->OH, (long long)s->OW,
                          !strcmp(what, "offset") ? "2 * deform_groups * kh * kw" : "deform_groups * kh * kw"),
               -1;
    return 0;
}

static md_tensor *deform_conv(md_ctx *ctx, md_tensor *x, md_tensor *off, md_tensor *mask, md_tensor *w,
                              md_tensor *bias, md_conv2d_params p, int deform_groups, bool modulated) {
    const char *op = op_name(modulated);
    if (!x || !off || !w || (modulated && !mask)) return NULL;
    if (ctx->onnx)   /* mmcv exports these as its own custom ops, which no ONNX runtime knows */
        return md_op_fail(ctx, op, "has no ONNX form (mmcv exports it as the custom op mmcv::MMCV%s, "
                          "which standard ONNX runtimes do not run)", modulated ? "ModulatedDeformConv2d" :
                                                                                 "DeformConv2d");
    md__conv_shape s;
    if (md__conv_check(ctx, op, x, w, bias, p, &s) != 0) return NULL;
    md_tensor *ins[5] = { x, off, mask, w, bias };
    if (!md__same_device(ctx, op, 5, ins)) return NULL;
    if (deform_groups < 1 || s.C % deform_groups)
        return md_op_fail(ctx, op, "deform_groups %d must be positive and divide the %lld input channels",
                          deform_groups, (long long)s.C);
    int64_t kk = s.KH * s.KW;
    if (check_map(ctx, op, "offset", off, &s, 2 * deform_groups * kk) != 0) return NULL;
    if (mask && check_map(ctx, op, "mask", mask, &s, deform_groups * kk) != 0) return NULL;
    if (s.H * s.W > INT32_MAX)
        return md_op_fail(ctx, op, "input planes of %lld x %lld pixels are too large", (long long)s.H,
                          (long long)s.W);
    const md_backend *be = md__be(ctx, op, x);
    if (!be) return NULL;
    if (!be->deform_conv2d_forward || !be->deform_conv2d_backward || !be->conv2d_backward_bias)
        return md__no_kernel(ctx, op, x);
    md_tensor *xc = md__contig(ctx, x), *oc = md__contig(ctx, off), *wc = md__contig(ctx, w);
    md_tensor *mc = mask ? md__contig(ctx, mask) : NULL, *bc = bias ? md__contig(ctx, bias) : NULL;
    if (!xc || !oc || !wc || (mask && !mc) || (bias && !bc)) return NULL;
    md_tensor *y = md__empty_like_on(ctx, x, MD_F32, MD_DIMS(s.N, s.O, s.OH, s.OW));
    if (!y) return NULL;
    md__deform_shape ds = { s, deform_groups };
    if (be->deform_conv2d_forward(&ds, md_f32(xc), md_f32(oc), mc ? md_f32(mc) : NULL, md_f32(wc),
                                  bc ? md_f32(bc) : NULL, md_f32(y)) != 0)
        return md__be_failed(ctx, op, be);
    md_node *node = md_autograd_record(ctx, y, ins, 5, deform_backward, op);
    if (node) {
        deform_saved *sv = md_node_save(ctx, node, sizeof *sv);
        if (!sv) return NULL;
        *sv = (deform_saved){ .s = ds, .x = xc, .off = oc, .mask = mc, .w = wc };
        md_node_unsave(ctx, node, -1);   /* the backward never reads y */
        md_node_unsave(ctx, node, 4);    /* nor the bias */
        if (md__hold_copy(ctx, node, xc, x) || md__hold_copy(ctx, node, oc, off) || md__hold_copy(ctx, node, wc, w) ||
            (mc && md__hold_copy(ctx, node, mc, mask)))
            return NULL;
    }
    return y;
}

MD_API md_tensor *md_deform_conv2d(md_ctx *ctx, md_tensor *x, md_tensor *offset, md_tensor *w, md_conv2d_params p,
                                   int deform_groups) {
    return deform_conv(ctx, x, offset, NULL, w, NULL, p, deform_groups, false);
}

MD_API md_tensor *md_modulated_deform_conv2d(md_ctx *ctx, md_tensor *x, md_tensor *offset, md_tensor *mask,
                                             md_tensor *w, md_tensor *bias, md_conv2d_params p, int deform_groups) {
    if (!mask && x && offset && w) return md_op_fail(ctx, "modulated_deform_conv2d", "mask is NULL");
    return deform_conv(ctx, x, offset, mask, w, bias, p, deform_groups, true);
}
