/* Row-major SGEMM on cuBLAS (column-major): C = alpha op(A) op(B) + beta C
 * is computed as C^T = alpha op(B)^T op(A)^T + beta C^T, since a row-major
 * matrix with leading dimension ld is its transpose in column-major. */
#include <stdio.h>
#include "backends/cuda/cuda_libs.h"

/* C[i, j] *= beta (beta == 0 writes zeros, so NaN/Inf in C do not survive,
 * as BLAS does for beta == 0). */
__global__ static void scale_rows(float *C, int64_t M, int64_t N, int64_t ldc, float beta) {
    int64_t total = M * N;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = t / N, j = t % N;
        float *c = C + i * ldc + j;
        *c = beta == 0.0f ? 0.0f : *c * beta;
    }
}

extern "C" int md__cuda_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0) {   /* cuBLAS leaves C alone for K == 0: apply beta ourselves */
        if (beta == 1.0f) return 0;
        int64_t blocks = (M * N + 255) / 256;
        if (blocks > 65536) blocks = 65536;
        scale_rows<<<(unsigned)blocks, 256, 0, md__cuda_stream()>>>(C, M, N, ldc, beta);
        char what[128];
        snprintf(what, sizeof what, "sgemm: scale kernel for K=0 M=%lld N=%lld ldc=%lld", (long long)M,
                 (long long)N, (long long)ldc);
        return md__cuda_check(cudaSuccess, what);
    }
    cublasHandle_t h = md__cuda_cublas();
    if (!h) return md__cuda_fail("sgemm", "backend not initialised (M=%lld N=%lld K=%lld)", (long long)M,
                                 (long long)N, (long long)K);
    cublasStatus_t st = cublasSgemm_64(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                                       &alpha, B, ldb, A, lda, &beta, C, ldc);
    if (st != CUBLAS_STATUS_SUCCESS)
        return md__cuda_fail("sgemm", "cublasSgemm_64 failed for ta=%d tb=%d M=%lld N=%lld K=%lld lda=%lld "
                             "ldb=%lld ldc=%lld: %s", (int)ta, (int)tb, (long long)M, (long long)N, (long long)K,
                             (long long)lda, (long long)ldb, (long long)ldc, cublasGetStatusString(st));
    return 0;
}
