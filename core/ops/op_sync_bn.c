/* SyncBN (mmcv's SyncBatchNorm, PyTorch's): batch statistics over the
 * batches of every rank, forward and backward.
 *
 * Built from differentiable ops around one differentiable all-reduce: each
 * rank sums x and x^2 per channel, the sums (and the element count) are
 * added over the ranks, and mean and variance follow from the totals. The
 * all-reduce's backward is an all-reduce of the gradients, so the gradient
 * reaching each rank's x is that of the sum of every rank's loss, which
 * the data-parallel average then makes the one-process gradient (PyTorch
 * all-reduces sum_dy and sum_dy_xmu to the same effect). Any device whose
 * ops and transport exist runs it. */
#include <math.h>
#include <string.h>
#include "internal.h"

static int all_reduce_backward(md_ctx *ctx, md_node *node, md_tensor *gy) {
    md_tensor *g = md_tensor_empty_like(ctx, gy);
    if (!g || md_tensor_copy_(ctx, g, gy) != 0) return -1;
    md_error e = { 0 };
    if (md_dist_all_reduce(ctx, g, MD_DIST_SUM, &e) != 0) {
        md_op_failc(ctx, e.code, "sync_batch_norm", "%s", e.msg);
        return -1;
    }
    return md_node_accumulate(ctx, node, 0, g);
}

/* The sum over the ranks of x (contiguous f32), differentiable. */
static md_tensor *all_reduce_sum(md_ctx *ctx, md_tensor *x) {
    md_tensor *y = md_tensor_empty_like(ctx, x);
    if (!y || md_tensor_copy_(ctx, y, x) != 0) return NULL;
    md_error e = { 0 };
    if (md_dist_all_reduce(ctx, y, MD_DIST_SUM, &e) != 0) return md_op_failc(ctx, e.code, "sync_batch_norm", "%s", e.msg);
    md_autograd_record(ctx, y, &x, 1, all_reduce_backward, "all_reduce");
    return y;
}

/* Per-channel sum of an NCHW tensor: [C]. */
static md_tensor *channel_sum(md_ctx *ctx, md_tensor *x) {
    return md_sum(ctx, md_sum(ctx, md_sum(ctx, x, 3, false), 2, false), 0, false);
}

MD_API md_tensor *md_sync_batch_norm2d(md_ctx *ctx, md_tensor *x, md_tensor *weight, md_tensor *bias,
                                       md_tensor *running_mean, md_tensor *running_var, bool training,
                                       double momentum, double eps) {
    if (!x) return NULL;
    if (!training || md_dist_world_size(ctx) == 1)
        return md_batch_norm2d(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps);
    if (x->dtype != MD_F32 || x->ndim != 4) {
        char a[96];
        return md_op_fail(ctx, "sync_batch_norm", "input %s must be a 4-D f32 tensor (NCHW)",
                          md_tensor_describe(x, a, sizeof a));
    }
    int64_t C = x->shape[1], count = x->shape[0] * x->shape[2] * x->shape[3];
    md_tensor *cnt = md_tensor_empty_on(ctx, md_tensor_device(x), MD_F32, MD_DIMS(1));
    if (!cnt || md_tensor_fill_(cnt, (double)count) != 0) return NULL;
    md_tensor *parts[3] = { channel_sum(ctx, x), channel_sum(ctx, md_mul(ctx, x, x)), cnt };
    if (!parts[0] || !parts[1]) return NULL;
    md_tensor *tot = all_reduce_sum(ctx, md_cat(ctx, parts, 3, 0));
    if (!tot) return NULL;
    double n = md_tensor_item(md_slice(ctx, tot, 0, 2 * C, 2 * C + 1, 1));
    if (!(n > 1))
        return md_op_fail(ctx, "sync_batch_norm", "expected more than 1 value per channel over the ranks, got %g", n);
    md_tensor *mean = md_mul_scalar(ctx, md_slice(ctx, tot, 0, 0, C, 1), 1.0 / n);
    md_tensor *ex2 = md_mul_scalar(ctx, md_slice(ctx, tot, 0, C, 2 * C, 1), 1.0 / n);
    md_tensor *var = md_sub(ctx, ex2, md_mul(ctx, mean, mean));
    md_tensor *invstd = md_pow_scalar(ctx, md_add_scalar(ctx, var, eps), -0.5);
    if (!invstd) return NULL;
    /* running statistics as BatchNorm's: momentum, unbiased variance */
    if (running_mean && running_var) {
        bool prev = md_grad_set_enabled(ctx, false);
        md_tensor *rm = md_add(ctx, md_mul_scalar(ctx, running_mean, 1 - momentum), md_mul_scalar(ctx, mean, momentum));
        md_tensor *rv = md_add(ctx, md_mul_scalar(ctx, running_var, 1 - momentum),
                               md_mul_scalar(ctx, var, momentum * n / (n - 1)));
        md_grad_set_enabled(ctx, prev);
        if (!rm || !rv || md_tensor_copy_(ctx, running_mean, rm) != 0 || md_tensor_copy_(ctx, running_var, rv) != 0)
            return NULL;
    }
    const int64_t bshape[4] = { 1, C, 1, 1 };
    md_tensor *scale = weight ? md_mul(ctx, invstd, weight) : invstd;
    md_tensor *y = md_mul(ctx, md_sub(ctx, x, md_reshape(ctx, mean, 4, bshape)), md_reshape(ctx, scale, 4, bshape));
    if (bias) y = md_add(ctx, y, md_reshape(ctx, bias, 4, bshape));
    return y;
}
