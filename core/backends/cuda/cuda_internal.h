/* Private to the CUDA backend (the .cu files in core/backends/cuda): the process-wide
 * state every file shares and the functions each file provides for the
 * table in device.cu. Entries mirror backends/backend.h one for one. */
#ifndef MMDET_CUDA_INTERNAL_H
#define MMDET_CUDA_INTERNAL_H

#include <cuda_runtime.h>
#include "backends/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The backend's one stream (every kernel is launched on it) and its device. */
cudaStream_t md__cuda_stream(void);
int md__cuda_device(void);
/* Records "what: message" as the error `error` returns; always returns -1. */
int md__cuda_fail(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* -1 with the error set when a CUDA runtime call failed (err != cudaSuccess)
 * or, with err == cudaSuccess, when the last launch failed. */
int md__cuda_check(cudaError_t err, const char *what);
/* Device scratch of at least `bytes`, owned by the backend and reused by
 * every call (cuDNN workspaces, partial sums); valid until the next call
 * that asks for scratch. NULL on failure (error set). */
void *md__cuda_scratch(size_t bytes);

/* device.cu: device, memory, errors and the table */
int md__cuda_init(int index);
const char *md__cuda_describe(void);
const char *md__cuda_error(void);
void *md__cuda_alloc(size_t bytes);
void md__cuda_free(void *p);
int md__cuda_copy(void *dst, const void *src, size_t bytes, int kind);
int md__cuda_sync(void);
int md__cuda_mem_info(size_t *free_bytes, size_t *total_bytes);

/* elementwise.cu */
int md__cuda_fill(void *dst, int64_t n, size_t elem, uint64_t bits);
int md__cuda_copy_strided(const md__loop *L, size_t elem, const void *src, void *dst);
int md__cuda_binary_f32(md__binop op, const md__loop *L, const float *a, const float *b, void *out);
int md__cuda_unary_f32(md__unop op, int64_t n, const float *x, float p0, float p1, float *y);
int md__cuda_unary_f32_backward(md__unop op, int64_t n, const float *x, const float *y, const float *g, float p0, float p1, float *gx);
int md__cuda_add_inplace_f32(float *dst, const float *src, int64_t n);
int md__cuda_unary_int(md__unop op, int dtype, int64_t n, const void *x, double p0, double p1, void *y);

/* reduce.cu */
int md__cuda_sum_f32(const float *x, int64_t outer, int64_t n, int64_t inner, float scale, float *out);
int md__cuda_spread_f32(const float *g, int64_t outer, int64_t n, int64_t inner, float scale, float *out);

/* gemm.cu (cuBLAS) */
int md__cuda_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* conv.cu (cuDNN) */
int md__cuda_conv2d_forward(const md__conv_shape *s, const float *x, const float *w, const float *bias, float *y);
int md__cuda_conv2d_backward_input(const md__conv_shape *s, const float *gy, const float *w, float *gx);
int md__cuda_conv2d_backward_weight(const md__conv_shape *s, const float *x, const float *gy, float *gw);
int md__cuda_conv2d_backward_bias(const md__conv_shape *s, const float *gy, float *gb);
/* Drops the cached descriptors and algorithm choices of every shape. */
void md__cuda_conv_cache_clear(void);

/* norm.cu */
int md__cuda_batch_norm_train(const float *x, int64_t N, int64_t C, int64_t HW, const float *w, const float *b, double eps, double momentum, float *running_mean, float *running_var, float *y, float *mean, float *invstd);
int md__cuda_batch_norm_eval(const float *x, int64_t N, int64_t C, int64_t HW, const float *w, const float *b, double eps, const float *running_mean, const float *running_var, float *y, float *mean, float *invstd);
int md__cuda_batch_norm_backward(const float *x, const float *gy, int64_t N, int64_t C, int64_t HW, const float *mean, const float *invstd, const float *w, bool batch_stats, float *gx, float *gw, float *gb);

/* pool.cu */
int md__cuda_maxpool2d_forward(const float *x, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW, int k, int stride, int pad, float *y, int32_t *idx);
int md__cuda_maxpool2d_backward(const float *gy, const int32_t *idx, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW, float *gx);

/* optim.cu */
int md__cuda_sgd_step(int64_t n, float *w, const float *g, float *buf, float lr, float wd, float mom, float damp, bool nesterov, bool first);
int md__cuda_adam_step(int64_t n, float *w, const float *g, float *m, float *v, float lr, float wd, float b1, float b2, float eps, float step_size, float sbc2, bool decoupled);
int md__cuda_sgd_step_multi(int count, const md__mt_param *p, float mom, float damp, bool nesterov);
int md__cuda_adam_step_multi(int count, const md__mt_param *p, float b1, float b2, float eps, float sbc2, bool decoupled);
int md__cuda_zero_f32_multi(int count, float *const *dst, const int64_t *n);
int md__cuda_lerp_f32(float *dst, const float *src, int64_t n, float w);
int md__cuda_swap_f32(float *a, float *b, int64_t n);

/* amp.cu: mixed precision. The compute precisions as md_dtype numbers them. */
enum { MD__DT_F32 = 0, MD__DT_F16 = 4, MD__DT_BF16 = 5 };
/* The calling thread's compute precision for conv and GEMM (MD__DT_*). */
int md__cuda_compute_dtype(void);
const char *md__cuda_dtype_name(int dtype);
int md__cuda_set_compute_dtype(int dtype, int *prev);
/* dst (n 16-bit values) = src rounded to fp16 or bf16 (backends/precision.h). */
int md__cuda_to_lowp(int dtype, const float *src, int64_t n, void *dst);
/* dst = src (n fp16 or bf16 values) widened to f32, plus bias[i / HW % C]
 * when bias is given. */
int md__cuda_from_lowp(int dtype, const void *src, int64_t n, const float *bias, int64_t C, int64_t HW, float *dst);
/* One stream-ordered allocation (*block, for md__cuda_free) cut into
 * `count` (at most 8) 256-byte aligned buffers of n[i] 16-bit values. */
int md__cuda_lowp_bufs(const char *op, int count, const int64_t *n, void **out, void **block);
/* optim.cu: GradScaler.unscale_ over many buffers, one device flag read back. */
int md__cuda_unscale_f32_multi(int count, float *const *g, const int64_t *n, float inv, int *found);
/* device.cu: compute capability as 10 major + minor (0 before init). */
int md__cuda_cc(void);

/* profile.cu: with MMDET_CUDA_PROFILE=1, wraps the kernel entries with
 * event timing and prints per-entry totals at exit. */
void md__cuda_profile_wrap(md_backend *t);

/* Families that set their own table entries (each in its own files):
 * shape.cu and friends (index, sort-free shape ops, norms, softmax),
 * losses.cu, detection.cu (RoIAlign, NMS, IoU, sorting), amp.cu (mixed
 * precision: set_compute_dtype, unscale_f32_multi), masks.cu (mask targets,
 * paste-back, RLE). */
void md__cuda_table_shape(md_backend *t) __attribute__((weak));
void md__cuda_table_losses(md_backend *t) __attribute__((weak));
void md__cuda_table_detection(md_backend *t) __attribute__((weak));
void md__cuda_table_amp(md_backend *t) __attribute__((weak));
void md__cuda_table_masks(md_backend *t) __attribute__((weak));

#ifdef __cplusplus
}
#endif
#endif
