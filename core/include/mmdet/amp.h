/* Mixed precision: mmdet's `fp16 = { loss_scale = ...; }` (mmcv's
 * Fp16OptimizerHook on PyTorch's GradScaler) and `mixed_precision = {
 * dtype = "bf16"; }`.
 *
 * While a context's autocast dtype is bf16, convolutions and linear layers
 * (forward, input and weight gradients) round their inputs to bfloat16 and
 * accumulate in f32; everything else (norms, losses, activations, box
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

/* The precision of conv and linear inputs: MD_F32 (off) or MD_BF16.
 * md_ctx_set_autocast sets it unchecked (tests); md_amp_enable checks. */
void md_ctx_set_autocast(md_ctx *ctx, md_dtype dtype);
md_dtype md_ctx_autocast(const md_ctx *ctx);

/* Turns mixed precision on for a model on `dev`. `dtype` is "bf16" or
 * "fp16"; `from_fp16_key` says it came from mmdet's `fp16` (loss scaling)
 * rather than mixed_precision.dtype: fp16 on the CPU then computes in
 * bf16, saying so. An error (naming `where`) for an unknown dtype, fp16
 * asked for explicitly on the CPU (no fp16 kernels), a CUDA device (no
 * low-precision kernels there yet) or a CPU without a bf16 kernel (one
 * needs AVX2 and FMA). Logs the dtype and the CPU kernel. */
int md_amp_enable(md_ctx *ctx, const char *dtype, bool from_fp16_key, md_device dev, const char *where,
                  md_error *err);
/* The CPU's bf16 kernel in words ("native AVX512_BF16 (vdpbf16ps)", ...);
 * NULL when there is none. */
const char *md_amp_cpu_kernel(void);

/* bf16 rounding (to nearest even; NaN stays NaN), as torch's .bfloat16(). */
float md_bf16_round(float x);

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
 * *found_inf when any value was not finite. CPU tensors only. */
int md_module_unscale_grads(md_module *m, double scale, bool *found_inf, md_error *err);

#ifdef __cplusplus
}
#endif
#endif
