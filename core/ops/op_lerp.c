/* In-place moving-average update and swap of whole f32 tensors (the EMA
 * hooks' shadow weights): checks here, kernels the backend's (on the CPU
 * backends/cpu/optim.c). */
#include "internal.h"

/* 0 when a and b are contiguous f32 tensors of one shape on one device;
 * else -1 with the op error set. */
static int check_pair(md_ctx *ctx, const char *op, const md_tensor *a, const md_tensor *b) {
    char da[96], db[96];
    if (!a || !b) {
        md_op_fail(ctx, op, "a tensor is missing (an earlier op failed?)");
        return -1;
    }
    if (a->dtype != MD_F32 || b->dtype != MD_F32 || !md_tensor_same_shape(a, b) || !md_tensor_is_contiguous(a) ||
        !md_tensor_is_contiguous(b)) {
        md_op_fail(ctx, op, "needs contiguous f32 tensors of one shape, got %s and %s",
                   md_tensor_describe(a, da, sizeof da), md_tensor_describe(b, db, sizeof db));
        return -1;
    }
    if (!md__same_device(ctx, op, 2, (md_tensor *[]){ (md_tensor *)a, (md_tensor *)b })) return -1;
    return 0;
}

MD_API int md_tensor_lerp_(md_ctx *ctx, md_tensor *dst, const md_tensor *src, double w) {
    if (check_pair(ctx, "lerp_", dst, src) != 0) return -1;
    int64_t n = md_tensor_numel(dst);
    const md_backend *be = md__be(ctx, "lerp_", dst);
    if (!be) return -1;
    if (!be->lerp_f32) return md__no_kernel(ctx, "lerp_", dst), -1;
    if (be->lerp_f32(md_f32(dst), md_f32(src), n, (float)w) != 0) return md__be_failed(ctx, "lerp_", be), -1;
    return 0;
}

MD_API int md_tensor_swap_(md_ctx *ctx, md_tensor *a, md_tensor *b) {
    if (check_pair(ctx, "swap_", a, b) != 0) return -1;
    int64_t n = md_tensor_numel(a);
    const md_backend *be = md__be(ctx, "swap_", a);
    if (!be) return -1;
    if (!be->swap_f32) return md__no_kernel(ctx, "swap_", a), -1;
    if (be->swap_f32(md_f32(a), md_f32(b), n) != 0) return md__be_failed(ctx, "swap_", be), -1;
    return 0;
}
