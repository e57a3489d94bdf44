/* mmcv's CARAFE op (mmcv/ops/carafe.py, content-aware reassembly of
 * features): checks, output allocation and autograd for the features and
 * the reassembly kernels (masks); the kernels are the backend's (on the CPU
 * backends/cpu/carafe.c). */
#include "internal.h"

typedef struct carafe_saved { int k, G, s; } carafe_saved;

static int carafe_backward(md_ctx *ctx, md_node *node, md_tensor *grad_out) {
    static const char *op = "carafe";
    const carafe_saved *sv = md_node_saved(node);
    md_tensor *f = md_node_input(node, 0), *m = md_node_input(node, 1);
    bool need_f = md_node_needs_grad(node, 0), need_m = md_node_needs_grad(node, 1);
    if (!need_f && !need_m) return 0;
    const md_backend *be = md__be(ctx, op, f);
    md_tensor *fc = md__contig(ctx, f), *mc = md__contig(ctx, m), *gc = md__contig(ctx, grad_out);
    if (!be || !fc || !mc || !gc) return -1;
    md_tensor *gf = need_f ? md__empty_like_on(ctx, f, MD_F32, 4, f->shape) : NULL;   /* overwritten */
    md_tensor *gm = need_m ? md__empty_like_on(ctx, m, MD_F32, 4, m->shape) : NULL;
    if ((need_f && !gf) || (need_m && !gm)) return -1;
    if (be->carafe_backward(md_f32(gc), md_f32(fc), md_f32(mc), f->shape[0], f->shape[1], f->shape[2], f->shape[3],
                            sv->k, sv->G, sv->s, gf ? md_f32(gf) : NULL, gm ? md_f32(gm) : NULL) != 0)
        return md__be_failed(ctx, op, be), -1;
    if (gf && md_node_accumulate(ctx, node, 0, gf)) return -1;
    if (gm && md_node_accumulate(ctx, node, 1, gm)) return -1;
    return 0;
}

MD_API md_tensor *md_carafe(md_ctx *ctx, md_tensor *features, md_tensor *masks, int kernel_size, int group_size,
                            int scale_factor) {
    static const char *op = "carafe";
    if (!features || !masks) return NULL;
    char sf[96], sm[96];
    md_tensor *both[2] = { features, masks };
    if (!md__same_device(ctx, op, 2, both)) return NULL;
    const md_backend *be = md__be(ctx, op, features);
    if (!be) return NULL;
    if (!be->carafe_forward || !be->carafe_backward) return md__no_kernel(ctx, op, features);
    md_tensor_describe(features, sf, sizeof sf);
    md_tensor_describe(masks, sm, sizeof sm);
    if (features->dtype != MD_F32 || features->ndim != 4)
        return md_op_fail(ctx, op, "features must be f32 [N, C, H, W], got %s", sf);
    if (kernel_size < 1 || kernel_size % 2 == 0)
        return md_op_fail(ctx, op, "kernel_size %d must be odd and positive", kernel_size);
    if (group_size < 1 || scale_factor < 1)
        return md_op_fail(ctx, op, "group_size %d and scale_factor %d must be positive", group_size, scale_factor);
    int64_t N = features->shape[0], C = features->shape[1], H = features->shape[2], W = features->shape[3];
    if (C % group_size)
        return md_op_fail(ctx, op, "features %s: %lld channels are not a multiple of group_size %d", sf, (long long)C,
                          group_size);
    int64_t mc = (int64_t)kernel_size * kernel_size * group_size;
    if (masks->dtype != MD_F32 || masks->ndim != 4 || masks->shape[0] != N || masks->shape[1] != mc ||
        masks->shape[2] != H * scale_factor || masks->shape[3] != W * scale_factor)
        return md_op_fail(ctx, op, "masks %s must be f32 [%lld, %lld, %lld, %lld] (kernel_size^2 * group_size "
                          "channels, the features' size times scale_factor) for features %s", sm, (long long)N,
                          (long long)mc, (long long)(H * scale_factor), (long long)(W * scale_factor), sf);
    md_tensor *fc = md__contig(ctx, features), *mk = md__contig(ctx, masks);
    md_tensor *out = fc && mk ? md__empty_like_on(ctx, fc, MD_F32, MD_DIMS(N, C, H * scale_factor, W * scale_factor))
                              : NULL;
    if (!out) return NULL;
    if (N * C * H * W > 0 &&
        be->carafe_forward(md_f32(fc), md_f32(mk), N, C, H, W, kernel_size, group_size, scale_factor, md_f32(out)) != 0)
        return md__be_failed(ctx, op, be);
    md_node *node = md_autograd_record(ctx, out, both, 2, carafe_backward, op);
    if (node) {
        carafe_saved *sv = md_node_save(ctx, node, sizeof *sv);
        if (!sv) return NULL;
        *sv = (carafe_saved){ kernel_size, group_size, scale_factor };
    }
    return out;
}
