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

/* C[b] = op(A + b sa) op(B + b sb) + beta C[b], C contiguous [batch, M, N]:
 * large products split over threads, many small ones one per thread. */
void md__cpu_sgemm_batched(int nthreads, bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K,
                           const float *A, int64_t lda, int64_t sa, const float *B, int64_t ldb, int64_t sb,
                           float beta, float *C);
/* y[R, out] = bias (rows) + x[R, in] w[out, in]^T. */
void md__cpu_linear_forward(int nthreads, int64_t R, int64_t in, int64_t out, const float *x, const float *w,
                            const float *bias, float *y);
/* gb[o] = sum over r of g[r, o] in double, rows in order. */
void md__cpu_sum_rows_f32(const float *g, int64_t R, int64_t out, float *gb);

#endif
