/* Devices: where a tensor's storage lives and which backend runs its ops.
 *
 * The CPU backend is built into libmmdet. A CUDA backend is a separate
 * library (libmmdet-cuda.so next to libmmdet.so, or in $MMDET_BACKEND_PATH)
 * loaded by md_device_init, so programs and plugins that never ask for a GPU
 * do not depend on the CUDA libraries.
 *
 * Ops run on the device of their inputs and put their outputs there; inputs
 * on different devices are an error naming the op. Move data explicitly:
 *
 *     md_device gpu;
 *     if (md_device_parse("cuda:0", &gpu, &err) || md_device_init(ctx, gpu, &err)) ...
 *     md_module_to(ctx, model, gpu, &err);          // parameters and buffers
 *     md_tensor *x = md_tensor_to(ctx, batch_img, gpu);  // a step copy
 *
 * CUDA ops are queued on one stream: reading a CUDA tensor's values
 * (md_tensor_item, md_tensor_get, a copy to the CPU) waits for them.
 * md_device_synchronize waits explicitly (for timing). Not every op has a
 * CUDA kernel yet; one without reports "no CUDA kernel" naming the op
 * (docs/cuda.md lists those that have). */
#ifndef MMDET_DEVICE_H
#define MMDET_DEVICE_H

#include <stddef.h>
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_device {
    md_device_type type;
    int index;
} md_device;

#define MD_DEVICE_CPU ((md_device){ MD_CPU, 0 })

/* "cpu", "cuda" (= "cuda:0") or "cuda:N". */
int md_device_parse(const char *s, md_device *out, md_error *err);
/* "cpu" or "cuda:N" into buf. */
const char *md_device_name(md_device d, char *buf, size_t n);
/* Loads the backend library and opens the device (idempotent). Fails with
 * the reason (library not found, no driver, no such device). */
int md_device_init(md_ctx *ctx, md_device d, md_error *err);
/* The device in words ("NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)"), once
 * initialised; "CPU" for the CPU. */
const char *md_device_describe(md_device d);
/* Waits until every op queued on the device has finished. */
int md_device_synchronize(md_device d, md_error *err);
md_device md_tensor_device(const md_tensor *t);
bool md_device_equal(md_device a, md_device b);

/* Step tensors on a device (uninitialised / zero-filled). */
md_tensor *md_tensor_empty_on(md_ctx *ctx, md_device d, md_dtype dt, int ndim, const int64_t *shape);
md_tensor *md_tensor_zeros_on(md_ctx *ctx, md_device d, md_dtype dt, int ndim, const int64_t *shape);
/* A step copy of t on device d (t itself when already there); gradients
 * flow back to t's device. */
md_tensor *md_tensor_to(md_ctx *ctx, md_tensor *t, md_device d);
/* A zero-filled persistent tensor on device d. */
md_tensor *md_tensor_new_persistent_on(md_ctx *ctx, md_device d, md_dtype dt, int ndim, const int64_t *shape,
                                       md_error *err);
/* Moves a persistent tensor's storage (and its gradient) to device d in
 * place: the md_tensor stays the same object, so optimizers and modules that
 * hold it keep working. */
int md_tensor_move_(md_ctx *ctx, md_tensor *t, md_device d, md_error *err);

/* Bytes of device memory the context's step arena holds for d, and the peak
 * in use since the last step reset (CPU: md_ctx_arena_used/peak). */
size_t md_ctx_device_arena_peak(const md_ctx *ctx, md_device d);

#ifdef __cplusplus
}
#endif
#endif
