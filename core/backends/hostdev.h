/* What a header of per-element math needs to be compiled into both
 * backends: MD_HD marks a function for the host and the device under nvcc
 * (nothing under gcc), and MD_FADD .. MD_FDIV are single float operations
 * rounded once, so that nvcc cannot contract a product and a sum into an
 * FMA on the device (gcc for x86-64 without -mfma never does): the same
 * expression gives the same bits in the CPU and the CUDA kernels. */
#ifndef MMDET_BACKENDS_HOSTDEV_H
#define MMDET_BACKENDS_HOSTDEV_H

#ifdef __CUDACC__
#define MD_HD __host__ __device__
#else
#define MD_HD
#endif

#ifdef __CUDA_ARCH__
#define MD_FADD(a, b) __fadd_rn((a), (b))
#define MD_FSUB(a, b) __fsub_rn((a), (b))
#define MD_FMUL(a, b) __fmul_rn((a), (b))
#define MD_FDIV(a, b) __fdiv_rn((a), (b))
#else
#define MD_FADD(a, b) ((a) + (b))
#define MD_FSUB(a, b) ((a) - (b))
#define MD_FMUL(a, b) ((a) * (b))
#define MD_FDIV(a, b) ((a) / (b))
#endif

#endif
