/* CPU GEMM through OpenBLAS. */
#include <cblas.h>
#include <omp.h>
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

void md__sgemm_par(int nthreads, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    /* Below ~0.5 MFLOP a fork/join costs more than the second thread saves. */
    if (nthreads <= 1 || M * N * (K > 0 ? K : 1) < ((int64_t)1 << 18)) {
        int prev = md__blas_threads_set(1);
        md__sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        md__blas_threads_set(prev);
        return;
    }
    /* Split the longer side of C in blocks of 16 (one per thread); each block
     * is an independent single-threaded product over the whole K. A run
     * gives the same bits every time; another thread count may differ in
     * the last bits, where OpenBLAS takes another kernel for the smaller
     * block (its small-matrix path on some CPUs). */
    bool by_cols = N >= M;
    int64_t len = by_cols ? N : M, blk = (len + nthreads - 1) / nthreads;
    blk = (blk + 15) / 16 * 16;
    int nt = (int)((len + blk - 1) / blk);
    int prev = md__blas_threads_set(1);
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        int64_t i0 = t * blk, n = len - i0 < blk ? len - i0 : blk;
        if (by_cols)
            md__sgemm(ta, tb, M, n, K, alpha, A, lda, tb ? B + i0 * ldb : B + i0, ldb, beta, C + i0, ldc);
        else
            md__sgemm(ta, tb, n, N, K, alpha, ta ? A + i0 : A + i0 * lda, lda, B, ldb, beta, C + i0 * ldc, ldc);
    }
    md__blas_threads_set(prev);
}

void md__cpu_sgemm_batched(int nthreads, bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K,
                           const float *A, int64_t lda, int64_t sa, const float *B, int64_t ldb, int64_t sb,
                           float beta, float *C) {
    if (batch <= 0 || M <= 0 || N <= 0) return;
    if (batch == 1 || M * N * K >= ((int64_t)1 << 21) || nthreads == 1) {
        for (int64_t b = 0; b < batch; b++)
            md__sgemm_par(nthreads, ta, tb, M, N, K, 1.0f, A + b * sa, lda, B + b * sb, ldb, beta, C + b * M * N, N);
        return;
    }
    /* many small matrices: one per OpenMP thread, BLAS single-threaded */
    int prev = md__blas_threads_set(1);
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t b = 0; b < batch; b++)
        md__sgemm(ta, tb, M, N, K, 1.0f, A + b * sa, lda, B + b * sb, ldb, beta, C + b * M * N, N);
    md__blas_threads_set(prev);
}

void md__cpu_linear_forward(int nthreads, int64_t R, int64_t in, int64_t out, const float *x, const float *w,
                            const float *bias, float *y) {
    if (R <= 0 || out <= 0) return;
    if (bias)   /* y = bias, then y += x w^T */
        for (int64_t r = 0; r < R; r++) memcpy(y + r * out, bias, sizeof(float) * (size_t)out);
    md__sgemm_par(nthreads, false, true, R, out, in, 1.0f, x, in, w, in, bias ? 1.0f : 0.0f, y, out);
}

void md__cpu_sum_rows_f32(const float *g, int64_t R, int64_t out, float *gb) {
    #pragma omp parallel for if (R * out > 65536) schedule(static)
    for (int64_t o = 0; o < out; o++) {
        double acc = 0;
        for (int64_t r = 0; r < R; r++) acc += g[r * out + o];
        gb[o] = (float)acc;
    }
}
