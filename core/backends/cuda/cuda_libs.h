/* Private to conv.cu, gemm.cu and device.cu: the cuBLAS and cuDNN handles
 * device.cu creates in init (bound to the backend's stream) and the math
 * mode. Kept apart from cuda_internal.h so that files launching only their
 * own kernels need no library headers. */
#ifndef MMDET_CUDA_LIBS_H
#define MMDET_CUDA_LIBS_H

#include <cublas_v2.h>
#include <cudnn.h>
#include "backends/cuda/cuda_internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NULL before a successful init. */
cublasHandle_t md__cuda_cublas(void);
cudnnHandle_t md__cuda_cudnn(void);
/* MMDET_CUDA_TF32=1 at init: TF32 tensor-core math allowed in GEMM and
 * convolution; otherwise exact float32 (FMA) math. */
bool md__cuda_tf32(void);

#ifdef __cplusplus
}
#endif
#endif
