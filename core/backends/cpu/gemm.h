/* CPU GEMM: a thin layer over OpenBLAS so that kernels do not depend on the
 * BLAS flavour, and a switch for BLAS threading around OpenMP regions. */
#ifndef MMDET_CPU_GEMM_H
#define MMDET_CPU_GEMM_H

#include <stdbool.h>
#include <stdint.h>

/* C[M,N] = alpha * op(A) op(B) + beta * C, row-major; op transposes when
 * ta/tb. Leading dimensions in elements. Empty sizes are a no-op (beta
 * still applies when K == 0). */
void md__sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* md__sgemm spread over `nthreads` OpenMP threads (blocks of C's longer
 * side), BLAS single-threaded: OpenBLAS's own thread pool is never woken
 * next to OpenMP's, so the two never spin against each other. */
void md__sgemm_par(int nthreads, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* OpenBLAS (pthread build) must run single-threaded while OpenMP threads call
 * it concurrently: set 1 before such a region, restore after. Returns the
 * previous count. */
int md__blas_threads_set(int n);

#endif
