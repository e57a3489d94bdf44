/* batch_norm2d and group_norm: checks, outputs, autograd; the kernels
 * (statistics, running-stat update, normalisation) are the backend's (on
 * the CPU backends/cpu/norm.c). */
#include <math.h>
#include <string.h>
#include "internal.h"
#include "onnx_trace.h"

typedef struct bn_saved {
    md_tensor *x;            /* contiguous input */
    float *mean, *invstd;    /* [C], the statistics the forward normalised with */
    bool batch_stats;
} bn_saved;

static int bn_backward(md_ctx *ctx, md_node *node, md_tensor *gy) {
    bn_saved *sv = md_node_saved(node);
    md_tensor *x = sv->x, *w = md_node_input(node, 1);
    int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
    md_tensor *gx = NULL, *gw = NULL, *gb = NULL;
    if (md_node_needs_grad(node, 0) && !(gx = md_tensor_empty_like(ctx, x))) return -1;
    if (md_node_needs_grad(node, 1) && !(gw = md__empty_like_on(ctx, x, MD_F32, MD_DIMS(C)))) return -1;
    if (md_node_needs_grad(node, 2) && !(gb = md__empty_like_on(ctx, x, MD_F32, MD_DIMS(C)))) return -1;
    md_tensor *wc = w ? md__contig(ctx, w) : NULL;
    if (w && !wc) return -1;
    const md_backend *be = md__be(ctx, "batch_norm2d", x);
    if (!be) return -1;
    md_tensor *gyc = md__contig(ctx, gy);
    if (!gyc) return -1;
    if (be->batch_norm_backward(md_f32(x), md_f32(gyc), N, C, HW, sv->mean, sv->invstd, wc ? md_f32(wc) : NULL,
                                sv->batch_stats, gx ? md_f32(gx) : NULL, gw ? md_f32(gw) : NULL,
                                gb ? md_f32(gb) : NULL) != 0)
        return md__be_failed(ctx, "batch_norm2d", be), -1;
    if (gx && md_node_accumulate(ctx, node, 0, gx) != 0) return -1;
    if (gw && md_node_accumulate(ctx, node, 1, gw) != 0) return -1;
    if (gb && md_node_accumulate(ctx, node, 2, gb) != 0) return -1;
    return 0;
}

/* A per-channel [C] f32 CPU tensor, or NULL allowed when optional. */
static int check_vec(md_ctx *ctx, const md_tensor *t, int64_t C, const char *what, bool need_contig) {
    char a[96];
    if (t->dtype != MD_F32 || t->ndim != 1 || t->shape[0] != C || (need_contig && !md_tensor_is_contiguous(t))) {
        md_op_fail(ctx, "batch_norm2d", "%s %s must be a%s f32 vector of %lld channels", what,
                   md_tensor_describe(t, a, sizeof a), need_contig ? " contiguous" : "", (long long)C);
        return -1;
    }
    return 0;
}

/* batch_norm2d's kernels; x, w, b already checked, xc/wc/bc contiguous. */
static md_tensor *batch_norm_run(md_ctx *ctx, md_tensor *x, md_tensor *xc, md_tensor *weight, md_tensor *wc,
                                 md_tensor *bias, md_tensor *bc, md_tensor *running_mean, md_tensor *running_var,
                                 bool training, double momentum, double eps) {
    static const char *op = "batch_norm2d";
    const md_backend *be = md__be(ctx, op, x);
    if (!be) return NULL;
    if (!be->batch_norm_train || !be->batch_norm_eval || !be->batch_norm_backward) return md__no_kernel(ctx, op, x);
    int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
    md_tensor *y = md_tensor_empty_like(ctx, x);
    float *mean = md__alloc_like(ctx, x, sizeof(float) * (size_t)(C ? C : 1));
    float *invstd = md__alloc_like(ctx, x, sizeof(float) * (size_t)(C ? C : 1));
    if (!y || !mean || !invstd) return NULL;
    const float *w = wc ? md_f32(wc) : NULL, *b = bc ? md_f32(bc) : NULL;
    int rc;
    if (N * HW == 0) {   /* empty batch: nothing to normalise, running stats kept */
        md_tensor mt = *y, it = *y;
        mt.ndim = it.ndim = 1;
        mt.shape[0] = it.shape[0] = C;
        mt.stride[0] = it.stride[0] = 1;
        mt.data = mean;
        it.data = invstd;
        rc = md_tensor_fill_(&mt, 0.0) || md_tensor_fill_(&it, 1.0);
    } else if (training) {
        rc = be->batch_norm_train(md_f32(xc), N, C, HW, w, b, eps, momentum,
                                  running_mean ? md_f32(running_mean) : NULL, running_var ? md_f32(running_var) : NULL,
                                  md_f32(y), mean, invstd);
    } else {
        rc = be->batch_norm_eval(md_f32(xc), N, C, HW, w, b, eps, md_f32(running_mean), md_f32(running_var),
                                 md_f32(y), mean, invstd);
    }
    if (rc != 0) return md__be_failed(ctx, op, be);
    md_tensor *ins[3] = { x, weight, bias };
    md_node *node = md_autograd_record(ctx, y, ins, 3, bn_backward, op);
    if (node) {
        bn_saved *sv = md_node_save(ctx, node, sizeof *sv);
        if (!sv) return NULL;
        *sv = (bn_saved){ .x = xc, .mean = mean, .invstd = invstd, .batch_stats = training };
        md_node_unsave(ctx, node, -1);
        if (md__hold_copy(ctx, node, xc, x)) return NULL;
    }
    return y;
}

static md_tensor *batch_norm2d(md_ctx *ctx, md_tensor *x, md_tensor *weight, md_tensor *bias,
                               md_tensor *running_mean, md_tensor *running_var, bool training,
                               double momentum, double eps) {
    if (!x) return NULL;
    char a[96];
    md_tensor_describe(x, a, sizeof a);
    if (x->dtype != MD_F32 || x->ndim != 4)
        return md_op_fail(ctx, "batch_norm2d", "input %s must be a 4-D f32 tensor (NCHW)", a);
    if (!md__same_device(ctx, "batch_norm2d", 5, (md_tensor *[]){ x, weight, bias, running_mean, running_var }))
        return NULL;
    int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3], count = N * HW;
    if ((weight && check_vec(ctx, weight, C, "weight", false)) || (bias && check_vec(ctx, bias, C, "bias", false)) ||
        (running_mean && check_vec(ctx, running_mean, C, "running_mean", true)) ||
        (running_var && check_vec(ctx, running_var, C, "running_var", true)))
        return NULL;
    if (!training && (!running_mean || !running_var))
        return md_op_fail(ctx, "batch_norm2d", "eval mode needs running_mean and running_var (input %s)", a);
    if (training && count == 1)   /* as PyTorch: the variance of one value is meaningless */
        return md_op_fail(ctx, "batch_norm2d", "expected more than 1 value per channel when training, got "
                          "input %s", a);
    md_tensor *xc = md__contig(ctx, x);
    md_tensor *wc = weight ? md__contig(ctx, weight) : NULL, *bc = bias ? md__contig(ctx, bias) : NULL;
    if (!xc || (weight && !wc) || (bias && !bc)) return NULL;
    return batch_norm_run(ctx, x, xc, weight, wc, bias, bc, running_mean, running_var, training, momentum, eps);
}

MD_API md_tensor *md_batch_norm2d(md_ctx *ctx, md_tensor *x, md_tensor *weight, md_tensor *bias,
                                  md_tensor *running_mean, md_tensor *running_var, bool training,
                                  double momentum, double eps) {
    md_tensor *y = batch_norm2d(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps);
    return MD__TRACING(ctx, y) ? md__onnx_batch_norm(ctx, y, x, weight, bias, running_mean, running_var, training, eps)
                               : y;
}

/* ------------------------------------------------------------ group_norm -- */

typedef struct gn_saved {
    md_tensor *x;            /* contiguous input */
    double *mean, *rstd;     /* [N * G] */
    int64_t groups;
} gn_saved;

/* N, C and the product of the remaining dims of x [N, C, *]. */
static void gn_dims(const md_tensor *x, int64_t *N, int64_t *C, int64_t *HW) {
    *N = x->shape[0];
    *C = x->shape[1];
    *HW = 1;
    for (int d = 2; d < x->ndim; d++) *HW *= x->shape[d];
}

/* gw and gb are zeroed, then the kernel adds into them. */
static int gn_backward(md_ctx *ctx, md_node *node, md_tensor *gy) {
    static const char *op = "group_norm";
    gn_saved *sv = md_node_saved(node);
    md_tensor *x = sv->x, *w = md_node_input(node, 1);
    int64_t N, C, HW;
    gn_dims(x, &N, &C, &HW);
    const md_backend *be = md__be(ctx, op, x);
    if (!be) return -1;
    if (!be->group_norm_backward) return md__no_kernel(ctx, op, x), -1;
    md_tensor *gx = NULL, *gw = NULL, *gb = NULL;
    if (md_node_needs_grad(node, 0) && !(gx = md__empty_like_on(ctx, x, MD_F32, x->ndim, x->shape))) return -1;
    if (md_node_needs_grad(node, 1) && (!(gw = md__empty_like_on(ctx, x, MD_F32, MD_DIMS(C))) ||
                                        md_tensor_fill_(gw, 0.0) != 0))
        return -1;
    if (md_node_needs_grad(node, 2) && (!(gb = md__empty_like_on(ctx, x, MD_F32, MD_DIMS(C))) ||
                                        md_tensor_fill_(gb, 0.0) != 0))
        return -1;
    md_tensor *wc = w ? md__contig(ctx, w) : NULL, *gyc = md__contig(ctx, gy);
    if ((w && !wc) || !gyc) return -1;
    if (be->group_norm_backward(md_f32(x), md_f32(gyc), N, C, HW, sv->groups, sv->mean, sv->rstd,
                                wc ? md_f32(wc) : NULL, gx ? md_f32(gx) : NULL, gw ? md_f32(gw) : NULL,
                                gb ? md_f32(gb) : NULL) != 0)
        return md__be_failed(ctx, op, be), -1;
    if (gx && md_node_accumulate(ctx, node, 0, gx) != 0) return -1;
    if (gw && md_node_accumulate(ctx, node, 1, gw) != 0) return -1;
    if (gb && md_node_accumulate(ctx, node, 2, gb) != 0) return -1;
    return 0;
}

static md_tensor *group_norm(md_ctx *ctx, md_tensor *x, int num_groups, md_tensor *weight, md_tensor *bias,
                             double eps) {
    static const char *op = "group_norm";
    if (!x) return NULL;
    char a[96], b[96];
    md_tensor_describe(x, a, sizeof a);
    if (x->dtype != MD_F32 || x->ndim < 2) return md_op_fail(ctx, op, "input %s must be an f32 tensor [N, C, *]", a);
    md_tensor *ins[3] = { x, weight, bias };
    if (!md__same_device(ctx, op, 3, ins)) return NULL;
    const md_backend *be = md__be(ctx, op, x);
    if (!be) return NULL;
    if (!be->group_norm_forward || !be->group_norm_backward) return md__no_kernel(ctx, op, x);
    int64_t N, C, HW;
    gn_dims(x, &N, &C, &HW);
    if (num_groups < 1 || C % num_groups)
        return md_op_fail(ctx, op, "num_groups %d must be positive and divide the %lld channels of input %s",
                          num_groups, (long long)C, a);
    const md_tensor *vec[2] = { weight, bias };
    static const char *const vname[2] = { "weight", "bias" };
    for (int i = 0; i < 2; i++)
        if (vec[i] && (vec[i]->dtype != MD_F32 || vec[i]->ndim != 1 || vec[i]->shape[0] != C))
            return md_op_fail(ctx, op, "%s %s must be an f32 vector of the %lld channels of input %s", vname[i],
                              md_tensor_describe(vec[i], b, sizeof b), (long long)C, a);
    md_tensor *xc = md__contig(ctx, x);
    md_tensor *wc = weight ? md__contig(ctx, weight) : NULL, *bc = bias ? md__contig(ctx, bias) : NULL;
    if (!xc || (weight && !wc) || (bias && !bc)) return NULL;
    md_tensor *y = md__empty_like_on(ctx, x, MD_F32, x->ndim, x->shape);
    size_t ng = N > 0 ? (size_t)(N * num_groups) : 1;
    /* statistics stay on x's device for backward */
    double *mean = md__alloc_like(ctx, x, sizeof(double) * ng), *rstd = md__alloc_like(ctx, x, sizeof(double) * ng);
    if (!y || !mean || !rstd) return NULL;
    if (be->group_norm_forward(md_f32(xc), N, C, HW, num_groups, wc ? md_f32(wc) : NULL, bc ? md_f32(bc) : NULL,
                               eps, md_f32(y), mean, rstd) != 0)
        return md__be_failed(ctx, op, be);
    md_node *node = md_autograd_record(ctx, y, ins, 3, gn_backward, op);
    if (node) {
        gn_saved *sv = md_node_save(ctx, node, sizeof *sv);
        if (!sv) return NULL;
        *sv = (gn_saved){ .x = xc, .mean = mean, .rstd = rstd, .groups = num_groups };
        if (md__hold_copy(ctx, node, xc, x)) return NULL;
    }
    return y;
}

MD_API md_tensor *md_group_norm(md_ctx *ctx, md_tensor *x, int num_groups, md_tensor *weight, md_tensor *bias,
                                double eps) {
    md_tensor *y = group_norm(ctx, x, num_groups, weight, bias, eps);
    return MD__TRACING(ctx, y) ? md__onnx_group_norm(ctx, y, x, num_groups, weight, bias, eps) : y;
}
