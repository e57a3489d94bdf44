/* CPU GEMM through OpenBLAS. */
#include <cblas.h>
#include <string.h>
#include "backends/cpu/gemm.h"

void md__sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {   /* BLAS may not touch C for K == 0: apply beta ourselves */
        for (int64_t i = 0; i < M; i++) {
            float *c = C + i * ldc;
            if (beta == 0.0f) memset(c, 0, sizeof(float) * (size_t)N);
            else for (int64_t j = 0; j < N; j++) c[j] *= beta;
        }
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C,
                (blasint)ldc);
}

int md__blas_threads_set(int n) {
    int prev = openblas_get_num_threads();
    if (n != prev) openblas_set_num_threads(n);
    return prev;
}
