/* The CPU backend's md_backend table: each entry calls the CPU kernel that
 * backends/backend.h names for it. The adapters here only translate
 * arguments (thread count, scratch from the bound context's step arena,
 * loss coefficients); the loops are in the family files beside this one. */
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mmdet/ctx.h"
#include "mmdet/tensor.h"
#include "backends/cpu/table.h"
#include "backends/cpu/carafe.h"
#include "backends/cpu/conv.h"
#include "backends/cpu/deform_conv.h"
#include "backends/cpu/detection.h"
#include "backends/cpu/elementwise.h"
#include "backends/cpu/gemm.h"
#include "backends/cpu/index.h"
#include "backends/cpu/losses.h"
#include "backends/cpu/masks.h"
#include "backends/cpu/gemm_bf16.h"
#include "backends/cpu/norm.h"
#include "backends/cpu/optim.h"
#include "backends/cpu/pool.h"
#include "backends/cpu/reduce.h"
#include "backends/cpu/sort.h"

/* ------------------------------------------------- context and errors -- */

/* The context of the op running on this thread (set by `bind`, which md__be
 * calls before every front-end's kernels): threads and scratch come from it. */
static _Thread_local md_ctx *t_ctx;
static _Thread_local char t_err[512];

static void cpu_bind(struct md_ctx *ctx) { t_ctx = ctx; }

int md__cpu_threads(void) { return t_ctx ? md_ctx_threads(t_ctx) : omp_get_max_threads(); }

int md__cpu_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_err, sizeof t_err, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *cpu_error(void) { return t_err; }

/* `bytes` of the bound context's step arena (NULL for 0 bytes, *ok false
 * after md__cpu_fail when there is no memory or no bound context). */
static void *scratch(size_t bytes, bool *ok) {
    *ok = true;
    if (!bytes) return NULL;
    void *p = t_ctx ? md_ctx_alloc(t_ctx, bytes) : NULL;
    if (!p) {
        *ok = false;
        md__cpu_fail("out of memory allocating %zu bytes of kernel scratch in the step arena", bytes);
    }
    return p;
}

static size_t mark(void) { return t_ctx ? md_ctx_arena_mark(t_ctx) : 0; }
static void release(size_t m) {
    if (t_ctx) md_ctx_arena_release(t_ctx, m);
}

static const char *dtype_name(int dt) { return md_dtype_name((md_dtype)dt); }

/* -------------------------------------------------- device and memory -- */

static int cpu_init(int index) { return index == 0 ? 0 : md__cpu_fail("there is one CPU device (cpu:%d)", index); }
static const char *cpu_describe(void) { return "CPU"; }
static void *cpu_alloc(size_t bytes) {
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (!p) md__cpu_fail("out of memory allocating %zu bytes", bytes);
    return p;
}
static void cpu_free(void *p) { free(p); }
static int cpu_copy(void *dst, const void *src, size_t bytes, int kind) {
    (void)kind;
    memmove(dst, src, bytes);
    return 0;
}
static int cpu_sync(void) { return 0; }

/* ------------------------------------------------------- element-wise -- */

static int cpu_fill(void *dst, int64_t n, size_t elem, uint64_t bits) {
    md__cpu_fill(dst, n, elem, bits);
    return 0;
}
static int cpu_copy_strided(const md__loop *L, size_t elem, const void *src, void *dst) {
    md__cpu_copy(L, elem, src, dst);
    return 0;
}
static int cpu_binary_f32(md__binop op, const md__loop *L, const float *a, const float *b, void *out) {
    return md__cpu_binary(op, MD_F32, L, a, b, out) == 0 ? 0 : md__cpu_fail("dtype f32 unsupported");
}
static int cpu_binary_int(md__binop op, int dt, const md__loop *L, const void *a, const void *b, void *out) {
    return md__cpu_binary(op, (md_dtype)dt, L, a, b, out) == 0 ? 0 : md__cpu_fail("dtype %s unsupported", dtype_name(dt));
}
static int cpu_unary_f32(md__unop op, int64_t n, const float *x, float p0, float p1, float *y) {
    md__cpu_unary_f32(op, n, x, p0, p1, y);
    return 0;
}
static int cpu_unary_f32_backward(md__unop op, int64_t n, const float *x, const float *y, const float *g, float p0,
                                  float p1, float *gx) {
    md__cpu_unary_f32_backward(op, n, x, y, g, p0, p1, gx);
    return 0;
}
static int cpu_unary_int(md__unop op, int dt, int64_t n, const void *x, double p0, double p1, void *y) {
    return md__cpu_unary_int(op, (md_dtype)dt, n, x, p0, p1, y) == 0 ? 0 : md__cpu_fail("dtype %s unsupported", dtype_name(dt));
}
static int cpu_add_inplace_f32(float *dst, const float *src, int64_t n) {
    md__cpu_add_inplace_f32(dst, src, n);
    return 0;
}
static int cpu_cast(int from, int to, int64_t n, const void *src, void *dst) {
    return md__cpu_cast((md_dtype)from, (md_dtype)to, n, src, dst) == 0
               ? 0 : md__cpu_fail("from %s to %s unsupported", dtype_name(from), dtype_name(to));
}
static int cpu_compare_scalar(md__binop op, int dt, int64_t n, const void *x, double s, uint8_t *out) {
    return md__cpu_compare_scalar(op, (md_dtype)dt, n, x, s, out) == 0 ? 0 : md__cpu_fail("dtype %s unsupported", dtype_name(dt));
}
static int cpu_where(const md__loop *L, size_t elem, const uint8_t *cond, const void *a, const void *b, void *out) {
    md__cpu_where(L, elem, cond, a, b, out);
    return 0;
}

/* --------------------------------------------------------- reductions -- */

static int cpu_sum_f32(const float *x, int64_t outer, int64_t n, int64_t inner, float scale, float *out) {
    md__cpu_sum_f32(x, outer, n, inner, scale, out);
    return 0;
}
static int cpu_spread_f32(const float *g, int64_t outer, int64_t n, int64_t inner, float scale, float *out) {
    md__cpu_spread_f32(g, outer, n, inner, scale, out);
    return 0;
}
static int cpu_sum_int(int dt, const void *x, int64_t outer, int64_t n, int64_t inner, int64_t *out) {
    return md__cpu_sum_int((md_dtype)dt, x, outer, n, inner, out) == 0 ? 0 : md__cpu_fail("dtype %s unsupported", dtype_name(dt));
}
static int cpu_max(int dt, const void *x, int64_t outer, int64_t n, int64_t inner, void *vals, int64_t *idx) {
    return md__cpu_max((md_dtype)dt, x, outer, n, inner, vals, idx) == 0 ? 0 : md__cpu_fail("dtype %s unsupported", dtype_name(dt));
}
static int cpu_max_backward_f32(const float *g, const int64_t *idx, int64_t outer, int64_t n, int64_t inner,
                                float *gx) {
    md__cpu_max_backward_f32(g, idx, outer, n, inner, gx);
    return 0;
}
static int cpu_softmax_f32(const float *x, int64_t outer, int64_t n, int64_t inner, bool log, float *y) {
    md__cpu_softmax_f32(x, outer, n, inner, log, y);
    return 0;
}
static int cpu_softmax_backward_f32(const float *y, const float *g, int64_t outer, int64_t n, int64_t inner,
                                    bool log, float *gx) {
    md__cpu_softmax_backward_f32(y, g, outer, n, inner, log, gx);
    return 0;
}

/* ------------------------------------------------------ matrix products -- */

/* C = op(A) op(B) (+ C) on the bf16 kernel (mixed precision: the thread's
 * md__cpu_bf16 is set), its scratch from the bound context. */
static int sgemm_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    bool ok;
    size_t m = mark();
    float *work = scratch(md__gemm_bf16_work_floats(M, N, K) * sizeof(float), &ok);
    if (!ok) return -1;
    md__gemm_bf16(md__cpu_threads(), ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc, work);
    release(m);
    return 0;
}

static int cpu_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                     const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (md__cpu_bf16 && alpha == 1.0f && (beta == 0.0f || beta == 1.0f))
        return sgemm_bf16(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
    md__sgemm_par(md__cpu_threads(), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return 0;
}
static int cpu_sgemm_batched(bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K, const float *A,
                             int64_t lda, int64_t sa, const float *B, int64_t ldb, int64_t sb, float beta,
                             float *C) {
    md__cpu_sgemm_batched(md__cpu_threads(), ta, tb, batch, M, N, K, A, lda, sa, B, ldb, sb, beta, C);
    return 0;
}
static int cpu_linear_forward(int64_t R, int64_t in, int64_t out, const float *x, const float *w, const float *bias,
                              float *y) {
    if (md__cpu_bf16 && R > 0 && out > 0) {   /* y = bias, then y += x w^T in bf16 */
        if (bias)
            for (int64_t r = 0; r < R; r++) memcpy(y + r * out, bias, sizeof(float) * (size_t)out);
        return sgemm_bf16(false, true, R, out, in, x, in, w, in, bias ? 1.0f : 0.0f, y, out);
    }
    md__cpu_linear_forward(md__cpu_threads(), R, in, out, x, w, bias, y);
    return 0;
}
static int cpu_sum_rows_f32(const float *g, int64_t R, int64_t out, float *gb) {
    md__cpu_sum_rows_f32(g, R, out, gb);
    return 0;
}

/* -------------------------------------------------------- convolution -- */

/* The kernel's work buffer for `which`, from the step arena. */
#define CONV_WORK(which, nt)                                                         \
    size_t m_ = mark(), wf_ = md__conv2d_work_floats(s, which, nt);                  \
    bool ok_;                                                                        \
    float *work = scratch(wf_ * sizeof(float), &ok_);                                \
    if (!ok_) return -1

static int cpu_conv2d_forward(const md__conv_shape *s, const float *x, const float *w, const float *bias, float *y) {
    int nt = md__cpu_threads();
    CONV_WORK(MD_CONV_FWD, nt);
    md__conv2d_forward(s, x, w, bias, y, work, nt);
    release(m_);
    return 0;
}
static int cpu_conv2d_backward_input(const md__conv_shape *s, const float *gy, const float *w, float *gx) {
    int nt = md__cpu_threads();
    CONV_WORK(MD_CONV_BWD_INPUT, nt);
    md__conv2d_backward_input(s, gy, w, gx, work, nt);
    release(m_);
    return 0;
}
static int cpu_conv2d_backward_weight(const md__conv_shape *s, const float *x, const float *gy, float *gw) {
    int nt = md__cpu_threads();
    CONV_WORK(MD_CONV_BWD_WEIGHT, nt);
    md__conv2d_backward_weight(s, x, gy, gw, work, nt);
    release(m_);
    return 0;
}
static int cpu_conv2d_backward_bias(const md__conv_shape *s, const float *gy, float *gb) {
    md__conv2d_backward_bias(s, gy, gb, md__cpu_threads());
    return 0;
}
static int cpu_conv2d_forward_ep(const md__conv_shape *s, const float *x, const float *w, const float *bias,
                                 const float *scale, const float *shift, bool relu, float *y) {
    int nt = md__cpu_threads();
    size_t m = mark();
    const float *sh = shift;
    bool ok;
    if (bias) {   /* one shift per channel: scale*bias + shift, in double, rounded once */
        float *t = scratch(sizeof(float) * (size_t)(s->O ? s->O : 1), &ok);
        if (!ok) return -1;
        for (int64_t o = 0; o < s->O; o++)
            t[o] = (float)((double)bias[o] * (scale ? scale[o] : 1.0) + (shift ? shift[o] : 0.0));
        sh = t;
    }
    size_t wf = md__conv2d_work_floats(s, MD_CONV_FWD, nt);
    float *work = scratch(wf * sizeof(float), &ok);
    if (!ok) return -1;
    md__conv2d_forward_ep(s, x, w, scale, sh, relu, y, work, nt);
    release(m);
    return 0;
}

static int cpu_deform_conv2d_forward(const md__deform_shape *s, const float *x, const float *off, const float *mask,
                                     const float *w, const float *bias, float *y) {
    int nt = md__cpu_threads();
    size_t m = mark();
    bool ok;
    float *work = scratch(md__deform_conv2d_work_floats(s, MD_DCN_FWD, nt) * sizeof(float), &ok);
    if (!ok) return -1;
    md__cpu_deform_conv2d_forward(s, x, off, mask, w, bias, y, work, nt);
    release(m);
    return 0;
}
static int cpu_deform_conv2d_backward(const md__deform_shape *s, const float *x, const float *off, const float *mask,
                                      const float *w, const float *gy, float *gx, float *goff, float *gmask,
                                      float *gw) {
    int nt = md__cpu_threads();
    size_t m = mark();
    bool ok;
    float *work = scratch(md__deform_conv2d_work_floats(s, MD_DCN_BWD, nt) * sizeof(float), &ok);
    if (!ok) return -1;
    md__cpu_deform_conv2d_backward(s, x, off, mask, w, gy, gx, goff, gmask, gw, work, nt);
    release(m);
    return 0;
}

/* ---------------------------------------------------------- batch norm -- */

static int cpu_batch_norm_train(const float *x, int64_t N, int64_t C, int64_t HW, const float *w, const float *b,
                                double eps, double momentum, float *running_mean, float *running_var, float *y,
                                float *mean, float *invstd) {
    int nt = md__cpu_threads();
    size_t m = mark();
    bool ok1, ok2;
    double *bm = scratch(sizeof(double) * (size_t)C, &ok1), *bv = scratch(sizeof(double) * (size_t)C, &ok2);
    if (!ok1 || !ok2) return -1;
    md__bn_stats(x, N, C, HW, bm, bv, nt);
    md__bn_train_stats(bm, bv, C, N * HW, eps, momentum, running_mean, running_var, mean, invstd);
    release(m);
    md__bn_apply(x, N, C, HW, mean, invstd, w, b, y, nt);
    return 0;
}
static int cpu_batch_norm_eval(const float *x, int64_t N, int64_t C, int64_t HW, const float *w, const float *b,
                               double eps, const float *running_mean, const float *running_var, float *y, float *mean,
                               float *invstd) {
    md__bn_eval_stats(running_mean, running_var, C, eps, mean, invstd);
    md__bn_apply(x, N, C, HW, mean, invstd, w, b, y, md__cpu_threads());
    return 0;
}
static int cpu_batch_norm_backward(const float *x, const float *gy, int64_t N, int64_t C, int64_t HW,
                                   const float *mean, const float *invstd, const float *w, bool batch_stats,
                                   float *gx, float *gw, float *gb) {
    md__bn_backward(x, gy, N, C, HW, mean, invstd, w, batch_stats, gx, gw, gb, md__cpu_threads());
    return 0;
}

/* ---------------------------------------------------------- group norm -- */

static int cpu_group_norm_forward(const float *x, int64_t N, int64_t C, int64_t HW, int64_t G, const float *w,
                                  const float *b, double eps, float *y, double *mean, double *rstd) {
    if (N * C * HW > 0) md__gn_forward(x, N, C, HW, G, w, b, eps, y, mean, rstd, md__cpu_threads());
    return 0;
}
static int cpu_group_norm_backward(const float *x, const float *gy, int64_t N, int64_t C, int64_t HW, int64_t G,
                                   const double *mean, const double *rstd, const float *w, float *gx, float *gw,
                                   float *gb) {
    if (N * C * HW <= 0) return 0;
    bool ok;
    double *work = scratch(sizeof(double) * (size_t)(2 * N * C), &ok);
    if (!ok) return -1;
    md__gn_backward(x, gy, N, C, HW, G, mean, rstd, w, gx, gw, gb, work, md__cpu_threads());
    return 0;
}

/* ------------------------------------------------------------- pooling -- */

static int cpu_maxpool2d_forward(const float *x, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW, int k,
                                 int stride, int pad, float *y, int32_t *idx) {
    md__maxpool2d_forward(x, planes, H, W, OH, OW, k, stride, pad, y, idx, md__cpu_threads());
    return 0;
}
static int cpu_maxpool2d_backward(const float *gy, const int32_t *idx, int64_t planes, int64_t H, int64_t W,
                                  int64_t OH, int64_t OW, float *gx) {
    md__maxpool2d_backward(gy, idx, planes, H, W, OH, OW, gx, md__cpu_threads());
    return 0;
}

/* The row and column maps of a nearest resize, in scratch. */
static bool nearest_maps(int64_t H, int64_t W, int64_t OH, int64_t OW, float sh, float sw, int64_t **ih,
                         int64_t **iw) {
    bool ok1, ok2;
    *ih = scratch(sizeof(int64_t) * (size_t)(OH + 1), &ok1);
    *iw = scratch(sizeof(int64_t) * (size_t)(OW + 1), &ok2);
    if (!ok1 || !ok2) return false;
    md__nearest_map(*ih, H, OH, sh);
    md__nearest_map(*iw, W, OW, sw);
    return true;
}
static int cpu_nearest_forward(const float *x, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                               float sh, float sw, float *y) {
    size_t m = mark();
    int64_t *ih, *iw;
    if (!nearest_maps(H, W, OH, OW, sh, sw, &ih, &iw)) return -1;
    md__nearest_forward(x, planes, H, W, OH, OW, ih, iw, y, md__cpu_threads());
    release(m);
    return 0;
}
static int cpu_nearest_backward(const float *gy, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                float sh, float sw, float *gx) {
    size_t m = mark();
    int64_t *ih, *iw;
    if (!nearest_maps(H, W, OH, OW, sh, sw, &ih, &iw)) return -1;
    md__nearest_backward(gy, planes, H, W, OH, OW, ih, iw, gx, md__cpu_threads());
    release(m);
    return 0;
}

/* ---------------------------------------------------------- optimizers -- */

static int cpu_sgd_step(int64_t n, float *w, const float *g, float *buf, float lr, float wd, float mom, float damp,
                        bool nesterov, bool first) {
    md__cpu_sgd_step(n, w, g, buf, lr, wd, mom, damp, nesterov, first);
    return 0;
}
static int cpu_adam_step(int64_t n, float *w, const float *g, float *m, float *v, float lr, float wd, float b1,
                         float b2, float eps, float step_size, float sbc2, bool decoupled) {
    md__cpu_adam_step(n, w, g, m, v, lr, wd, b1, b2, eps, step_size, sbc2, decoupled);
    return 0;
}
static int cpu_lerp_f32(float *dst, const float *src, int64_t n, float w) {
    md__cpu_lerp_f32(dst, src, n, w);
    return 0;
}
static int cpu_swap_f32(float *a, float *b, int64_t n) {
    md__cpu_swap_f32(a, b, n);
    return 0;
}
static int cpu_pow_sum_f64(const float *x, int64_t n, double p, double *out) {
    *out = md__cpu_pow_sum(x, n, p);
    return 0;
}
static int cpu_scale_f64(float *x, int64_t n, double s) {
    md__cpu_scale_f64(x, n, s);
    return 0;
}

/* ------------------------------------------------------------ indexing -- */

static int cpu_index_check(const int64_t *idx, int64_t n, int64_t size, int64_t *bad, int64_t *val) {
    md__cpu_index_check(idx, n, size, bad, val);
    return 0;
}
static int cpu_index_select(size_t elem, const void *a, int64_t outer, int64_t n, int64_t inner, const int64_t *idx,
                            int64_t k, void *out) {
    md__cpu_index_select(elem, a, outer, n, inner, idx, k, out);
    return 0;
}
static int cpu_index_add_f32(const float *g, int64_t outer, int64_t n, int64_t inner, const int64_t *idx, int64_t k,
                             float *gx) {
    md__cpu_index_add_f32(g, outer, n, inner, idx, k, gx);
    return 0;
}
static int cpu_index_offsets(int ndim, const int64_t *ishape, int dim, const int64_t *idx, const int64_t *st,
                             int64_t *off) {
    md__cpu_index_offsets(ndim, ishape, dim, idx, st, off);
    return 0;
}
static int cpu_take(size_t elem, const void *a, const int64_t *off, int64_t n, void *out) {
    md__cpu_take(elem, a, off, n, out);
    return 0;
}
static int cpu_put_add(int dt, void *out, const int64_t *off, int64_t n, int64_t limit, const void *src) {
    (void)limit;
    return md__cpu_put_add(dt, out, off, n, src) == 0 ? 0 : md__cpu_fail("dtype %s unsupported", dtype_name(dt));
}
static int cpu_nonzero(int dt, const void *x, int ndim, const int64_t *shape, int64_t *out, int64_t *count) {
    md__cpu_nonzero(dt, x, ndim, shape, out, count);
    return 0;
}

/* -------------------------------------------------------------- losses -- */

/* The coefficients of backend.h's (g, g_each, scale, w) as the CPU kernels take them. */
static md__loss_coef coef(const float *g, bool g_each, float scale, const float *w) {
    return (md__loss_coef){ g_each ? g : NULL, g_each ? 0.0f : g[0] * scale, w };
}

static int cpu_loss_check_labels(const int64_t *lab, int64_t n, int64_t lo, int64_t hi, int64_t ignore, int64_t *bad) {
    md__cpu_check_labels(lab, n, lo, hi, ignore, bad);
    return 0;
}
static int cpu_loss_any_positive(const float *x, int64_t n, int *any) {
    *any = md__cpu_any_positive(x, n);
    return 0;
}
static int cpu_loss_any_negative(const float *x, int64_t n, int *any) {
    *any = md__cpu_any_negative(x, n);
    return 0;
}
static int cpu_loss_reduce(const float *l, const float *w, int64_t n, double div, float *wl, float *out) {
    size_t m = mark();
    const float *v = l;
    if (w && (wl || out)) {
        bool ok = true;
        float *d = wl ? wl : scratch(sizeof(float) * (size_t)(n ? n : 1), &ok);
        if (!wl && !ok) return -1;
        md__cpu_weighted(l, w, n, d);
        v = d;
    } else if (wl && wl != l) {
        memcpy(wl, l, sizeof(float) * (size_t)n);
    }
    if (out) *out = (float)(md__cpu_sum(v, n) / div);
    release(m);
    return 0;
}
static int cpu_loss_coef_fill(int64_t n, const float *g, bool g_each, float scale, const float *w, const float *mul,
                              float *out) {
    md__loss_coef k = coef(g, g_each, scale, w);
    md__cpu_coef_fill(n, &k, mul, out);
    return 0;
}
static int cpu_ce_forward(const float *x, const int64_t *lab, const float *class_w, int64_t n, int64_t c,
                          int64_t ignore, float *loss) {
    md__cpu_ce_forward(x, lab, class_w, n, c, ignore, loss);
    return 0;
}
static int cpu_ce_backward(const float *x, const int64_t *lab, const float *class_w, int64_t n, int64_t c,
                           int64_t ignore, const float *g, bool g_each, float scale, const float *w, float *gx) {
    md__loss_coef k = coef(g, g_each, scale, w);
    md__cpu_ce_backward(x, lab, class_w, n, c, ignore, &k, gx);
    return 0;
}
static int cpu_bce_forward(const float *x, const float *t, int64_t n, float *loss) {
    md__cpu_bce_forward(x, t, n, loss);
    return 0;
}
static int cpu_bce_backward(const float *x, const float *t, int64_t n, const float *g, bool g_each, float scale,
                            const float *w, float *gx) {
    md__loss_coef k = coef(g, g_each, scale, w);
    md__cpu_bce_backward(x, t, n, &k, gx);
    return 0;
}
static int cpu_bce_mask_weight(const float *t, const float *w, int64_t n, float *out) {
    md__cpu_bce_mask_weight(t, w, n, out);
    return 0;
}
static int cpu_focal_forward(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma, float alpha,
                             float *loss) {
    md__cpu_focal_forward(x, lab, n, c, gamma, alpha, loss);
    return 0;
}
static int cpu_focal_forward_grad(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma, float alpha,
                                  float *loss, float *d) {
    md__cpu_focal_forward_grad(x, lab, n, c, gamma, alpha, loss, d);
    return 0;
}
static int cpu_focal_backward(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma, float alpha,
                              const float *g, bool g_each, float scale, const float *w, float *gx) {
    md__loss_coef k = coef(g, g_each, scale, w);
    md__cpu_focal_backward(x, lab, n, c, gamma, alpha, &k, gx);
    return 0;
}
static int cpu_focal_backward_saved(const float *d, int64_t E, const float *g, bool g_each, float scale,
                                    const float *w, float *gx) {
    md__loss_coef k = coef(g, g_each, scale, w);
    md__cpu_focal_backward_saved(d, E, &k, gx);
    return 0;
}
static int cpu_smooth_l1_forward(const float *p, const float *t, int64_t n, float beta, float *loss) {
    md__cpu_smooth_l1_forward(p, t, n, beta, loss);
    return 0;
}
static int cpu_smooth_l1_backward(const float *p, const float *t, int64_t n, float beta, const float *g, bool g_each,
                                  float scale, const float *w, float *gp, float *gt) {
    md__loss_coef k = coef(g, g_each, scale, w);
    md__cpu_smooth_l1_backward(p, t, n, beta, &k, gp, gt);
    return 0;
}
static int cpu_l1_forward(const float *p, const float *t, int64_t n, float *loss) {
    md__cpu_l1_forward(p, t, n, loss);
    return 0;
}
static int cpu_l1_backward(const float *p, const float *t, int64_t n, const float *g, bool g_each, float scale,
                           const float *w, float *gp, float *gt) {
    md__loss_coef k = coef(g, g_each, scale, w);
    md__cpu_l1_backward(p, t, n, &k, gp, gt);
    return 0;
}
static int cpu_giou_forward(const float *p, const float *t, int64_t n, float eps, float *loss) {
    md__cpu_giou_forward(p, t, n, eps, loss);
    return 0;
}
static int cpu_giou_backward(const float *p, const float *t, int64_t n, float eps, const float *g, bool g_each,
                             float scale, const float *w, float *gp, float *gt) {
    md__loss_coef k = coef(g, g_each, scale, w);
    md__cpu_giou_backward(p, t, n, eps, &k, gp, gt);
    return 0;
}
static int cpu_giou_weight_mean(const float *w, int64_t n, float *out) {
    md__cpu_giou_weight_mean(w, n, out);
    return 0;
}

/* ------------------------------------------------ detection and sorting -- */

static int cpu_roi_align_forward(const float *feat, int64_t N, int64_t C, int64_t H, int64_t W, const float *rois,
                                 int64_t K, int oh, int ow, float spatial_scale, int sampling_ratio, bool aligned,
                                 float *out) {
    if (K * C * oh * ow > 0 &&
        md__cpu_roi_align_forward(feat, N, C, H, W, rois, K, oh, ow, spatial_scale, sampling_ratio, aligned, out) != 0)
        return md__cpu_fail("out of memory for the sampling grid of %lld RoIs", (long long)K);
    return 0;
}
static int cpu_roi_align_backward(const float *grad_out, int64_t N, int64_t C, int64_t H, int64_t W,
                                  const float *rois, int64_t K, int oh, int ow, float spatial_scale,
                                  int sampling_ratio, bool aligned, float *grad_feat) {
    memset(grad_feat, 0, sizeof(float) * (size_t)(N * C * H * W));   /* the kernel adds into zeros */
    if (md__cpu_roi_align_backward(grad_out, N, C, H, W, rois, K, oh, ow, spatial_scale, sampling_ratio, aligned,
                                   grad_feat) != 0)
        return md__cpu_fail("out of memory in backward");
    return 0;
}
static int cpu_nms_split(const float *boxes, const float *scores, const int64_t *group, int64_t n_groups, int64_t n,
                         float iou_thr, int64_t max_num, bool split, int64_t *keep, int64_t *count) {
    int64_t cnt = md__cpu_nms(boxes, scores, group, n_groups, n, iou_thr, max_num, split, keep);
    if (cnt < 0) return md__cpu_fail("out of memory for %lld boxes", (long long)n);
    *count = cnt;
    return 0;
}
static int cpu_nms(const float *boxes, const float *scores, const int64_t *group, int64_t n, float iou_thr,
                   int64_t max_num, int64_t *keep, int64_t *count) {
    int64_t n_groups = 0;
    for (int64_t i = 0; group && i < n; i++) n_groups = group[i] + 1 > n_groups ? group[i] + 1 : n_groups;
    return cpu_nms_split(boxes, scores, group, n_groups, n, iou_thr, max_num, false, keep, count);
}
static int cpu_bbox_overlaps_forward(const float *a, int64_t n, const float *b, int64_t m, int mode, bool aligned,
                                     float eps, float *out) {
    md__cpu_bbox_overlaps_forward(a, n, b, m, mode, aligned, eps, out);
    return 0;
}
static int cpu_bbox_overlaps_backward(const float *a, int64_t n, const float *b, int64_t m, int mode, bool aligned,
                                      float eps, const float *grad_out, float *grad_a, float *grad_b) {
    md__cpu_bbox_overlaps_backward(a, n, b, m, mode, aligned, eps, grad_out, grad_a, grad_b);
    return 0;
}
static int cpu_sort_lines(int dt, const void *x, int64_t outer, int64_t n, int64_t inner, int64_t k,
                          bool descending, void *vals, int64_t *idx) {
    return md__cpu_sort_lines((md_dtype)dt, x, outer, n, inner, k, descending, vals, idx) == 0
               ? 0 : md__cpu_fail("dtype %s unsupported (or out of memory)", dtype_name(dt));
}
static int cpu_unsort_add_f32(const float *g, const int64_t *idx, int64_t outer, int64_t n, int64_t inner, int64_t k,
                              float *gx) {
    md__cpu_unsort_add_f32(g, idx, outer, n, inner, k, gx);
    return 0;
}
static int cpu_carafe_forward(const float *feat, const float *masks, int64_t N, int64_t C, int64_t H, int64_t W,
                              int k, int G, int s, float *out) {
    md__cpu_carafe_forward(feat, masks, N, C, H, W, k, G, s, out, md__cpu_threads());
    return 0;
}
static int cpu_carafe_backward(const float *grad_out, const float *feat, const float *masks, int64_t N, int64_t C,
                               int64_t H, int64_t W, int k, int G, int s, float *grad_feat, float *grad_masks) {
    md__cpu_carafe_backward(grad_out, feat, masks, N, C, H, W, k, G, s, grad_feat, grad_masks, md__cpu_threads());
    return 0;
}

/* --------------------------------------------------------------- masks -- */

static int cpu_mask_targets(const uint8_t *masks, int64_t n, int64_t h, int64_t w, const float *boxes,
                            const int64_t *inds, int64_t P, int oh, int ow, float *out) {
    (void)n;
    md__cpu_mask_targets(masks, h, w, boxes, inds, P, oh, ow, out);
    return 0;
}
static int cpu_mask_paste(const float *probs, int64_t D, int64_t C, int mh, int mw, const int64_t *chan,
                          const float *boxes, int img_h, int img_w, float thr, uint8_t *out) {
    md__cpu_mask_paste(probs, D, C, mh, mw, chan, boxes, img_h, img_w, thr, out);
    return 0;
}
static int cpu_rle_encode(const uint8_t *masks, int64_t n, int h, int w, int64_t *m, uint32_t *counts, int64_t cap,
                          int64_t *total) {
    int64_t hw = (int64_t)h * w, sum = 0;
    for (int64_t i = 0; i < n; i++) {   /* counts written while they fit, then only counted */
        int64_t room = cap - sum > 0 ? cap - sum : 0;
        m[i] = md__cpu_rle_counts(masks + i * hw, h, w, room ? counts + sum : NULL, room);
        sum += m[i];
    }
    *total = sum;
    return 0;
}

/* ---------------------------------------------------------------- table -- */

/* The multi-tensor entries (sgd_step_multi, adam_step_multi,
 * zero_f32_multi) stay NULL: they save launches, which the CPU has none
 * of; the front-ends then run the per-tensor entries. mem_info too. */
/* ---------------------------------------------------- mixed precision -- */

/* f32, or bf16 on the CPU's bf16 kernel (gemm_bf16.h: the thread's switch). */
static int cpu_set_compute_dtype(int dtype, int *prev) {
    if (dtype == MD_F16)
        return md__cpu_fail("fp16: CPUs have no fp16 kernels (fp16 computes on a GPU; bf16 on the CPU)");
    if (dtype == MD_BF16 && !md__convk_bf16())
        return md__cpu_fail("bf16 needs a CPU with AVX2 and FMA (or AVX-512); this one has neither");
    if (dtype != MD_F32 && dtype != MD_BF16)
        return md__cpu_fail("compute dtype %s is not f32, fp16 or bf16", dtype_name(dtype));
    if (prev) *prev = md__cpu_bf16 ? MD_BF16 : MD_F32;
    md__cpu_bf16 = dtype == MD_BF16;
    return 0;
}
static int cpu_unscale_f32_multi(int count, float *const *g, const int64_t *n, float inv, int *found) {
    bool bad = false;
    for (int i = 0; i < count; i++) bad |= md__cpu_unscale_f32(g[i], n[i], inv);
    *found = bad;
    return 0;
}

const md_backend md__cpu_table = {
    .abi = MD_BACKEND_ABI,
    .name = "cpu",
    .init = cpu_init,
    .describe = cpu_describe,
    .error = cpu_error,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .copy = cpu_copy,
    .sync = cpu_sync,
    .fill = cpu_fill,
    .copy_strided = cpu_copy_strided,
    .binary_f32 = cpu_binary_f32,
    .unary_f32 = cpu_unary_f32,
    .unary_f32_backward = cpu_unary_f32_backward,
    .add_inplace_f32 = cpu_add_inplace_f32,
    .sum_f32 = cpu_sum_f32,
    .spread_f32 = cpu_spread_f32,
    .sgemm = cpu_sgemm,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward_input = cpu_conv2d_backward_input,
    .conv2d_backward_weight = cpu_conv2d_backward_weight,
    .conv2d_backward_bias = cpu_conv2d_backward_bias,
    .deform_conv2d_forward = cpu_deform_conv2d_forward,
    .deform_conv2d_backward = cpu_deform_conv2d_backward,
    .batch_norm_train = cpu_batch_norm_train,
    .batch_norm_eval = cpu_batch_norm_eval,
    .batch_norm_backward = cpu_batch_norm_backward,
    .maxpool2d_forward = cpu_maxpool2d_forward,
    .maxpool2d_backward = cpu_maxpool2d_backward,
    .sgd_step = cpu_sgd_step,
    .adam_step = cpu_adam_step,
    .cast = cpu_cast,
    .binary_int = cpu_binary_int,
    .compare_scalar = cpu_compare_scalar,
    .where = cpu_where,
    .index_check = cpu_index_check,
    .index_select = cpu_index_select,
    .index_add_f32 = cpu_index_add_f32,
    .index_offsets = cpu_index_offsets,
    .take = cpu_take,
    .put_add = cpu_put_add,
    .nonzero = cpu_nonzero,
    .sum_int = cpu_sum_int,
    .max = cpu_max,
    .max_backward_f32 = cpu_max_backward_f32,
    .softmax_f32 = cpu_softmax_f32,
    .softmax_backward_f32 = cpu_softmax_backward_f32,
    .group_norm_forward = cpu_group_norm_forward,
    .group_norm_backward = cpu_group_norm_backward,
    .nearest_forward = cpu_nearest_forward,
    .nearest_backward = cpu_nearest_backward,
    .loss_check_labels = cpu_loss_check_labels,
    .loss_any_positive = cpu_loss_any_positive,
    .loss_reduce = cpu_loss_reduce,
    .loss_coef_fill = cpu_loss_coef_fill,
    .ce_forward = cpu_ce_forward,
    .ce_backward = cpu_ce_backward,
    .bce_forward = cpu_bce_forward,
    .bce_backward = cpu_bce_backward,
    .bce_mask_weight = cpu_bce_mask_weight,
    .focal_forward = cpu_focal_forward,
    .focal_backward = cpu_focal_backward,
    .smooth_l1_forward = cpu_smooth_l1_forward,
    .smooth_l1_backward = cpu_smooth_l1_backward,
    .l1_forward = cpu_l1_forward,
    .l1_backward = cpu_l1_backward,
    .giou_forward = cpu_giou_forward,
    .giou_backward = cpu_giou_backward,
    .giou_weight_mean = cpu_giou_weight_mean,
    .roi_align_forward = cpu_roi_align_forward,
    .roi_align_backward = cpu_roi_align_backward,
    .nms = cpu_nms,
    .bbox_overlaps_forward = cpu_bbox_overlaps_forward,
    .bbox_overlaps_backward = cpu_bbox_overlaps_backward,
    .sort_lines = cpu_sort_lines,
    .unsort_add_f32 = cpu_unsort_add_f32,
    .carafe_forward = cpu_carafe_forward,
    .carafe_backward = cpu_carafe_backward,
    .mask_targets = cpu_mask_targets,
    .mask_paste = cpu_mask_paste,
    .rle_encode = cpu_rle_encode,
    .lerp_f32 = cpu_lerp_f32,
    .swap_f32 = cpu_swap_f32,
    .bind = cpu_bind,
    .unary_int = cpu_unary_int,
    .nms_split = cpu_nms_split,
    .conv2d_forward_ep = cpu_conv2d_forward_ep,
    .sgemm_batched = cpu_sgemm_batched,
    .linear_forward = cpu_linear_forward,
    .sum_rows_f32 = cpu_sum_rows_f32,
    .pow_sum_f64 = cpu_pow_sum_f64,
    .scale_f64 = cpu_scale_f64,
    .loss_any_negative = cpu_loss_any_negative,
    .focal_forward_grad = cpu_focal_forward_grad,
    .focal_backward_saved = cpu_focal_backward_saved,
    .set_compute_dtype = cpu_set_compute_dtype,
    .unscale_f32_multi = cpu_unscale_f32_multi,
};

