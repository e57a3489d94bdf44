/* Mixed precision: mmdet's `fp16 = { loss_scale = ...; }` (mmcv's
 * Fp16OptimizerHook on PyTorch's GradScaler) and `mixed_precision = {
 * dtype = "bf16"; }`.
 *
 * While a context's autocast dtype is bf16 (or fp16, on a GPU), convolutions
 * and linear layers (forward, input and weight gradients) round their inputs
 * to bfloat16 (fp16) and accumulate in f32; everything else (norms, losses, activations, box
 * decoding, NMS) and the parameters, gradients and optimizer state stay
 * f32, as mmcv's wrap_fp16_model keeps norms in f32 and its optimizer
 * master weights in f32. Checkpoints hold f32 weights either way.
 *
 * Loss scaling is GradScaler's: the loss is multiplied by `scale` before
 * backward, the gradients by float(1/scale) after; a gradient that is not
 * finite skips the step and multiplies the scale by backoff_factor; after
 * growth_interval steps without one it is multiplied by growth_factor. */
#ifndef MMDET_AMP_H
#define MMDET_AMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "ctx.h"
#include "device.h"
#include "module.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The precision of conv and linear inputs: MD_F32 (off), MD_BF16 or
 * MD_F16 (a GPU only). md_ctx_set_autocast sets it unchecked (tests; a
 * device that cannot compute in it fails the op); md_amp_enable checks. */
void md_ctx_set_autocast(md_ctx *ctx, md_dtype dtype);
md_dtype md_ctx_autocast(const md_ctx *ctx);

/* Turns mixed precision on for a model on `dev`. `dtype` is "bf16" or
 * "fp16"; `from_fp16_key` says it came from mmdet's `fp16` (loss scaling)
 * rather than mixed_precision.dtype: fp16 on the CPU then computes in
 * bf16, saying so. On a CUDA device (opened here if it is not yet) fp16 and
 * bf16 run on cuDNN and cuBLAS Tensor Core paths. An error (naming `where`)
 * for an unknown dtype, fp16 asked for explicitly on the CPU (no fp16
 * kernels), a CPU without a bf16 kernel (one needs AVX2 and FMA), a GPU that
 * cannot open or cannot compute in dtype (bf16 needs compute capability
 * 8.0; the message names the GPU). Logs the dtype and the kernel. */
int md_amp_enable(md_ctx *ctx, const char *dtype, bool from_fp16_key, md_device dev, const char *where,
                  md_error *err);
/* The CPU's bf16 kernel in words ("native AVX512_BF16 (vdpbf16ps)", ...);
 * NULL when there is none. */
const char *md_amp_cpu_kernel(void);

/* bf16 rounding (to nearest even; NaN stays NaN), as torch's .bfloat16(). */
float md_bf16_round(float x);
/* IEEE fp16 rounding (to nearest even; beyond 65504 by half an ulp inf,
 * subnormals below 2^-14, NaN stays NaN), as torch's .half(): the rounding
 * of the GPU's fp16 casts. */
float md_f16_round(float x);

/* ---- loss scaling: torch.cuda.amp.GradScaler as mmcv 1.7 builds it ---- */
typedef struct md_loss_scaler {
    bool enabled;              /* false: GradScaler(enabled=False): no scaling, no skipped steps */
    bool dynamic;              /* false: a float loss_scale, set back after every step (mmcv) */
    double scale;              /* the current scale */
    double static_scale;       /* the float loss_scale (static only) */
    double growth_factor, backoff_factor;
    int64_t growth_interval, growth_tracker;
} md_loss_scaler;

/* From mmcv's `loss_scale`: a number (static), "dynamic" (GradScaler's
 * defaults: 2^16, x2 every 2000 clean steps, x0.5 on overflow) or a group
 * of GradScaler's arguments (init_scale, growth_factor, backoff_factor,
 * growth_interval, enabled). `where` names it in errors. */
int md_loss_scaler_init(md_loss_scaler *s, const md_cfg *loss_scale, const char *where, md_error *err);
/* GradScaler.update after a step whose gradients were (not) all finite:
 * -1 the scale backed off, +1 it grew, 0 it stayed. */
int md_loss_scaler_update(md_loss_scaler *s, bool found_inf);
/* GradScaler.state_dict as a JSON object (scale, growth_factor,
 * backoff_factor, growth_interval, _growth_tracker); -1 if n is short. */
int md_loss_scaler_state_json(const md_loss_scaler *s, char *buf, size_t n);
/* GradScaler.load_state_dict from that object (the checkpoint's values
 * replace the config's, as in PyTorch). */
int md_loss_scaler_load_json(md_loss_scaler *s, const char *json, md_error *err);
/* GradScaler.unscale_: every parameter gradient of m times float(1/scale);
 * *found_inf when any value was not finite. CPU and CUDA gradients: one
 * pass over a device's gradients (on a GPU one kernel pass that also sets
 * a device flag) and one read-back. */
int md_module_unscale_grads(md_module *m, double scale, bool *found_inf, md_error *err);

#ifdef __cplusplus
}
#endif
#endif
