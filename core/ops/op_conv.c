/* conv2d: checks, output allocation, autograd; the kernels are the
 * backend's (on the CPU backends/cpu/conv.c). */
#include <math.h>
#include <string.h>
#include "internal.h"
#include "onnx_trace.h"
#include "op_conv.h"

typedef struct conv_saved {
    md__conv_shape s;
    md_tensor *x, *w;   /* contiguous copies used by the forward */
    md_dtype compute;   /* mixed precision (amp.h): the backward in the forward's precision */
} conv_saved;

/* The backend's three gradient kernels. */
static int conv_backward_kernels(md_ctx *ctx, md_node *node, md_tensor *gy) {
    conv_saved *sv = md_node_saved(node);
    const md__conv_shape *s = &sv->s;
    const md_backend *be = md__be(ctx, "conv2d", sv->x);
    if (!be) return -1;
    md_tensor *g[3] = { NULL, NULL, NULL };
    if (md_node_needs_grad(node, 0)) {
        if (!(g[0] = md_tensor_empty_like(ctx, sv->x))) return -1;
        if (be->conv2d_backward_input(s, md_f32(gy), md_f32(sv->w), md_f32(g[0])) != 0)
            return md__be_failed(ctx, "conv2d", be), -1;
        if (md_node_accumulate(ctx, node, 0, g[0]) != 0) return -1;
    }
    if (md_node_needs_grad(node, 1)) {
        if (!(g[1] = md_tensor_empty_like(ctx, sv->w))) return -1;
        if (be->conv2d_backward_weight(s, md_f32(sv->x), md_f32(gy), md_f32(g[1])) != 0)
            return md__be_failed(ctx, "conv2d", be), -1;
        if (md_node_accumulate(ctx, node, 1, g[1]) != 0) return -1;
    }
    if (md_node_needs_grad(node, 2)) {
        if (!(g[2] = md__empty_like_on(ctx, sv->x, MD_F32, MD_DIMS(s->O)))) return -1;
        if (be->conv2d_backward_bias(s, md_f32(gy), md_f32(g[2])) != 0) return md__be_failed(ctx, "conv2d", be), -1;
        if (md_node_accumulate(ctx, node, 2, g[2]) != 0) return -1;
    }
    return 0;
}

/* Mixed precision: the backend's kernels run in the compute precision set
 * around them (set_compute_dtype); the backward in that of its forward. */
static int conv_backward(md_ctx *ctx, md_node *node, md_tensor *gy) {
    conv_saved *sv = md_node_saved(node);
    const md_backend *be = md__be(ctx, "conv2d", sv->x);
    int prev;
    if (!be || !md__be_compute(ctx, "conv2d", be, sv->compute, &prev)) return -1;
    int rc = conv_backward_kernels(ctx, node, gy);
    md__be_compute_restore(be, prev);
    return rc;
}

int md__conv_check(md_ctx *ctx, const char *op, md_tensor *x, md_tensor *w, md_tensor *bias, md_conv2d_params p,
                   md__conv_shape *out) {
    char a[96], b[96], c[96];
    md_tensor *ins[3] = { x, w, bias };
    for (int i = 0; i < 3; i++) {
        if (!ins[i]) continue;
        if (ins[i]->dtype != MD_F32)
            return md_op_fail(ctx, op, "%s is %s; only f32 is supported",
                              i == 0 ? "input" : i == 1 ? "weight" : "bias", md_dtype_name(ins[i]->dtype)), -1;
    }
    if (!md__same_device(ctx, op, 3, ins)) return -1;
    md_tensor_describe(x, a, sizeof a);
    md_tensor_describe(w, b, sizeof b);
    md_tensor_describe(bias, c, sizeof c);
    if (x->ndim != 4 || w->ndim != 4)
        return md_op_fail(ctx, op, "input %s and weight %s must be 4-D (NCHW, OIHW)", a, b), -1;
    if (p.groups < 1 || p.stride_h < 1 || p.stride_w < 1 || p.dilation_h < 1 || p.dilation_w < 1 ||
        p.pad_h < 0 || p.pad_w < 0)
        return md_op_fail(ctx, op, "bad parameters stride %dx%d pad %dx%d dilation %dx%d groups %d",
                          p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w, p.groups), -1;
    int64_t G = p.groups;
    if (x->shape[1] % G || w->shape[0] % G || w->shape[1] * G != x->shape[1])
        return md_op_fail(ctx, op, "input %s, weight %s and groups %d disagree on channels", a, b, p.groups), -1;
    if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))
        return md_op_fail(ctx, op, "bias %s does not match weight %s", c, b), -1;
    md__conv_shape s = { .N = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3],
                         .O = w->shape[0], .KH = w->shape[2], .KW = w->shape[3],
                         .sh = p.stride_h, .sw = p.stride_w, .ph = p.pad_h, .pw = p.pad_w,
                         .dh = p.dilation_h, .dw = p.dilation_w, .G = G };
    int64_t eh = s.H + 2 * s.ph - s.dh * (s.KH - 1) - 1, ew = s.W + 2 * s.pw - s.dw * (s.KW - 1) - 1;
    if (eh < 0 || ew < 0 || s.KH < 1 || s.KW < 1)
        return md_op_fail(ctx, op, "kernel %lldx%lld (dilation %dx%d) larger than the padded input %s "
                          "(pad %dx%d)", (long long)s.KH, (long long)s.KW, p.dilation_h, p.dilation_w, a,
                          p.pad_h, p.pad_w), -1;
    s.OH = eh / s.sh + 1;
    s.OW = ew / s.sw + 1;
    *out = s;
    return 0;
}

static md_tensor *conv2d(md_ctx *ctx, md_tensor *x, md_tensor *w, md_tensor *bias, md_conv2d_params p) {
    if (!x || !w) return NULL;
    md_tensor *ins[3] = { x, w, bias };
    md__conv_shape s;
    if (md__conv_check(ctx, "conv2d", x, w, bias, p, &s) != 0) return NULL;

    md_tensor *xc = md__contig(ctx, x), *wc = md__contig(ctx, w), *bc = bias ? md__contig(ctx, bias) : NULL;
    if (!xc || !wc || (bias && !bc)) return NULL;
    md_tensor *y = md__empty_like_on(ctx, x, MD_F32, MD_DIMS(s.N, s.O, s.OH, s.OW));
    if (!y) return NULL;
    const md_backend *be = md__be(ctx, "conv2d", x);
    if (!be) return NULL;
    if (!be->conv2d_forward || !be->conv2d_backward_input || !be->conv2d_backward_weight ||
        !be->conv2d_backward_bias)
        return md__no_kernel(ctx, "conv2d", x);
    int prev;
    if (!md__be_compute(ctx, "conv2d", be, ctx->autocast, &prev)) return NULL;
    int frc = be->conv2d_forward(&s, md_f32(xc), md_f32(wc), bc ? md_f32(bc) : NULL, md_f32(y));
    md__be_compute_restore(be, prev);
    if (frc != 0) return md__be_failed(ctx, "conv2d", be);
    md_node *node = md_autograd_record(ctx, y, ins, 3, conv_backward, "conv2d");
    if (node) {
        conv_saved *sv = md_node_save(ctx, node, sizeof *sv);
        if (!sv) return NULL;
        *sv = (conv_saved){ .s = s, .x = xc, .w = wc, .compute = ctx->autocast };
        md_node_unsave(ctx, node, -1);   /* the backward never reads y */
        if (md__hold_copy(ctx, node, xc, x) || md__hold_copy(ctx, node, wc, w)) return NULL;
    }
    return y;
}

MD_API md_tensor *md_conv2d(md_ctx *ctx, md_tensor *x, md_tensor *w, md_tensor *bias, md_conv2d_params p) {
    md_tensor *y = conv2d(ctx, x, w, bias, p);
    return MD__TRACING(ctx, y) ? md__onnx_conv(ctx, y, x, w, bias, p, NULL, NULL, false) : y;
}

/* ---------------------------------------------------- fused (inference) -- */

static bool needs_grad(const md_tensor *t) { return t && t->requires_grad; }

/* The same result from the differentiable ops: conv2d, then the per-channel
 * scale and shift as broadcasting mul/add over [1, O, 1, 1], then relu. */
static md_tensor *fused_unfused(md_ctx *ctx, md_tensor *x, md_tensor *w, md_tensor *bias, md_conv2d_params p,
                                md_tensor *scale, md_tensor *shift, bool relu) {
    md_tensor *y = md_conv2d(ctx, x, w, bias, p);
    int64_t O = w->shape[0];
    bool fresh = true;   /* y made by conv2d or add: relu may overwrite it */
    if (y && scale) {
        y = md_mul(ctx, y, md_reshape(ctx, scale, MD_DIMS(1, O, 1, 1)));
        fresh = false;
    }
    if (y && shift) {
        y = md_add(ctx, y, md_reshape(ctx, shift, MD_DIMS(1, O, 1, 1)));
        fresh = true;
    }
    if (y && relu) y = fresh ? md_relu_(ctx, y) : md_relu(ctx, y);
    return y;
}

static int check_channel_vec(md_ctx *ctx, md_tensor *v, const char *what, md_tensor *w) {
    if (!v) return 0;
    char a[96], b[96];
    md_tensor_describe(v, a, sizeof a);
    md_tensor_describe(w, b, sizeof b);
    if (v->dtype != MD_F32 || v->ndim != 1 || v->shape[0] != w->shape[0])
        return md_op_fail(ctx, "conv2d_fused", "%s %s must be f32 [O] for weight %s", what, a, b), -1;
    return 0;
}

static md_tensor *conv2d_fused(md_ctx *ctx, md_tensor *x, md_tensor *w, md_tensor *bias, md_conv2d_params p,
                               const md_conv_epilogue *e) {
    if (!x || !w) return NULL;
    md_tensor *scale = e ? e->scale : NULL, *shift = e ? e->shift : NULL;
    bool relu = e && e->relu;
    md__conv_shape s;
    if (md__conv_check(ctx, "conv2d_fused", x, w, bias, p, &s) != 0) return NULL;
    if (check_channel_vec(ctx, scale, "scale", w) || check_channel_vec(ctx, shift, "shift", w)) return NULL;
    if (!md__same_device(ctx, "conv2d_fused", 5, (md_tensor *[]){ x, w, bias, scale, shift })) return NULL;
    bool grad = md_grad_enabled(ctx) &&
                (needs_grad(x) || needs_grad(w) || needs_grad(bias) || needs_grad(scale) || needs_grad(shift));
    const md_backend *be = md__be(ctx, "conv2d_fused", x);
    if (!be) return NULL;
    if (grad || !be->conv2d_forward_ep) return fused_unfused(ctx, x, w, bias, p, scale, shift, relu);

    md_tensor *xc = md__contig(ctx, x), *wc = md__contig(ctx, w);
    md_tensor *bc = bias ? md__contig(ctx, bias) : NULL, *sc = scale ? md__contig(ctx, scale) : NULL;
    md_tensor *hc = shift ? md__contig(ctx, shift) : NULL;
    if (!xc || !wc || (bias && !bc) || (scale && !sc) || (shift && !hc)) return NULL;
    md_tensor *y = md__empty_like_on(ctx, x, MD_F32, MD_DIMS(s.N, s.O, s.OH, s.OW));
    if (!y) return NULL;
    int prev;
    if (!md__be_compute(ctx, "conv2d_fused", be, ctx->autocast, &prev)) return NULL;
    int frc = be->conv2d_forward_ep(&s, md_f32(xc), md_f32(wc), bc ? md_f32(bc) : NULL, sc ? md_f32(sc) : NULL,
                                    hc ? md_f32(hc) : NULL, relu, md_f32(y));
    md__be_compute_restore(be, prev);
    if (frc != 0) return md__be_failed(ctx, "conv2d_fused", be);
    return y;
}

/* Traced as one Conv (the epilogue folded into its weights) and a Relu;
 * the unfused path's own ops are not recorded. */
MD_API md_tensor *md_conv2d_fused(md_ctx *ctx, md_tensor *x, md_tensor *w, md_tensor *bias, md_conv2d_params p,
                                  const md_conv_epilogue *e) {
    if (!ctx->onnx) return conv2d_fused(ctx, x, w, bias, p, e);
    md_onnx_graph *g = md__onnx_pause(ctx);
    md_tensor *y = conv2d_fused(ctx, x, w, bias, p, e);
    md__onnx_resume(ctx, g);
    return y ? md__onnx_conv(ctx, y, x, w, bias, p, e ? e->scale : NULL, e ? e->shift : NULL, e && e->relu) : NULL;
}

MD_API int md_batch_norm_fold(md_ctx *ctx, md_tensor *weight, md_tensor *bias, md_tensor *running_mean,
                              md_tensor *running_var, double eps, md_tensor **scale, md_tensor **shift) {
    if (!running_mean || !running_var)
        return md_op_fail(ctx, "batch_norm_fold", "running_mean and running_var are needed"), -1;
    md_tensor *ts[4] = { running_mean, running_var, weight, bias };
    const char *names[4] = { "running_mean", "running_var", "weight", "bias" };
    int64_t C = running_mean->ndim == 1 ? running_mean->shape[0] : -1;
    for (int i = 0; i < 4; i++) {
        if (!ts[i]) continue;
        char a[96];
        md_tensor_describe(ts[i], a, sizeof a);
        if (ts[i]->device != MD_CPU)
            return md_op_fail(ctx, "batch_norm_fold", "%s %s: CPU tensors only", names[i], a), -1;
        if (ts[i]->dtype != MD_F32 || ts[i]->ndim != 1 || ts[i]->shape[0] != C)
            return md_op_fail(ctx, "batch_norm_fold", "%s %s must be f32 [%lld]", names[i], a, (long long)C), -1;
    }
    md_tensor *s = md_tensor_empty(ctx, MD_F32, MD_DIMS(C)), *h = md_tensor_empty(ctx, MD_F32, MD_DIMS(C));
    md_tensor *mc = md__contig(ctx, running_mean), *vc = md__contig(ctx, running_var);
    md_tensor *wc = weight ? md__contig(ctx, weight) : NULL, *bc = bias ? md__contig(ctx, bias) : NULL;
    if (!s || !h || !mc || !vc || (weight && !wc) || (bias && !bc)) return -1;
    for (int64_t c = 0; c < C; c++) {
        double sv = (wc ? (double)md_f32(wc)[c] : 1.0) / sqrt((double)md_f32(vc)[c] + eps);
        md_f32(s)[c] = (float)sv;
        md_f32(h)[c] = (float)((bc ? (double)md_f32(bc)[c] : 0.0) - (double)md_f32(mc)[c] * sv);
    }
    *scale = s;
    *shift = h;
    return 0;
}
