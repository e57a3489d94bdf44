/* Row-major SGEMM on cuBLAS (column-major): C = alpha op(A) op(B) + beta C
 * is computed as C^T = alpha op(B)^T op(A)^T + beta C^T, since a row-major
 * matrix with leading dimension ld is its transpose in column-major.
 *
 * Mixed precision (the thread's compute dtype fp16 or bf16, amp.cu): A and
 * B are rounded into 16-bit copies (the span each occupies, same leading
 * dimension) and multiplied by cublasGemmEx with f32 accumulation
 * (CUBLAS_COMPUTE_32F; Tensor Cores) into the f32 C, so C, alpha and beta
 * stay f32 as on the CPU's bf16 path. */
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

/* Elements from a row-major matrix's first to its last of `rows` rows of
 * `cols` with leading dimension ld. */
static int64_t span(int64_t rows, int64_t cols, int64_t ld) { return (rows - 1) * ld + cols; }

static int gemm_lowp(cublasHandle_t h, int dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const char *op = dt == MD__DT_F16 ? "sgemm (fp16)" : "sgemm (bf16)";
    int64_t n[2] = { ta ? span(K, M, lda) : span(M, K, lda), tb ? span(N, K, ldb) : span(K, N, ldb) };
    void *buf[2], *block;
    if (md__cuda_lowp_bufs(op, 2, n, buf, &block) != 0) return -1;
    int rc = 0;
    if (md__cuda_to_lowp(dt, A, n[0], buf[0]) != 0 || md__cuda_to_lowp(dt, B, n[1], buf[1]) != 0) {
        rc = -1;
    } else {
        cudaDataType_t ty = dt == MD__DT_F16 ? CUDA_R_16F : CUDA_R_16BF;
        cublasStatus_t st = cublasGemmEx_64(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M,
                                            K, &alpha, buf[1], ty, ldb, buf[0], ty, lda, &beta, C, CUDA_R_32F, ldc,
                                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (st != CUBLAS_STATUS_SUCCESS)
            rc = md__cuda_fail(op, "cublasGemmEx_64 (%s operands, f32 output, CUBLAS_COMPUTE_32F) failed for ta=%d "
                               "tb=%d M=%lld N=%lld K=%lld lda=%lld ldb=%lld ldc=%lld: %s", md__cuda_dtype_name(dt),
                               (int)ta, (int)tb, (long long)M, (long long)N, (long long)K, (long long)lda,
                               (long long)ldb, (long long)ldc, cublasGetStatusString(st));
    }
    md__cuda_free(block);   /* stream-ordered: after the product */
    return rc;
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
    int dt = md__cuda_compute_dtype();
    if (dt != MD__DT_F32) return gemm_lowp(h, dt, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    cublasStatus_t st = cublasSgemm_64(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                                       &alpha, B, ldb, A, lda, &beta, C, ldc);
    if (st != CUBLAS_STATUS_SUCCESS)
        return md__cuda_fail("sgemm", "cublasSgemm_64 failed for ta=%d tb=%d M=%lld N=%lld K=%lld lda=%lld "
                             "ldb=%lld ldc=%lld: %s", (int)ta, (int)tb, (long long)M, (long long)N, (long long)K,
                             (long long)lda, (long long)ldb, (long long)ldc, cublasGetStatusString(st));
    return 0;
}
