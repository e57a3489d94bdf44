/* The micro-kernels' store phases (AVX2 6x16, AVX-512 14x32), shared by the f32 kernel
 * (conv_gemm.c) and the bf16 one (gemm_bf16.c): accumulate into C when
 * `acc`, apply the epilogue (per-row scale and shift, ReLU), store, masked
 * for a partial column block. Included after <immintrin.h> on x86. */
#ifndef MD_BACKENDS_CPU_GEMM_STORE_H
#define MD_BACKENDS_CPU_GEMM_STORE_H
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include "backends/cpu/conv_gemm.h"

static inline __attribute__((always_inline, target("avx2,fma"))) void
md__store256(const int R, __m256 *c0, __m256 *c1, float *c, int64_t ldc, __m256i m0, __m256i m1, int full,
             int acc, const md__epilogue *ep) {
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) {
        float *ci = c + i * ldc;
        if (acc) {
            c0[i] = _mm256_add_ps(c0[i], full ? _mm256_loadu_ps(ci) : _mm256_maskload_ps(ci, m0));
            c1[i] = _mm256_add_ps(c1[i], full ? _mm256_loadu_ps(ci + 8) : _mm256_maskload_ps(ci + 8, m1));
        }
        if (ep) {
            if (ep->scale) {
                __m256 sc = _mm256_set1_ps(ep->scale[i]), sh = _mm256_set1_ps(ep->shift ? ep->shift[i] : 0.0f);
                c0[i] = _mm256_fmadd_ps(c0[i], sc, sh);
                c1[i] = _mm256_fmadd_ps(c1[i], sc, sh);
            } else if (ep->shift) {
                __m256 sh = _mm256_set1_ps(ep->shift[i]);
                c0[i] = _mm256_add_ps(c0[i], sh);
                c1[i] = _mm256_add_ps(c1[i], sh);
            }
            if (ep->relu) {
                c0[i] = _mm256_max_ps(c0[i], _mm256_setzero_ps());
                c1[i] = _mm256_max_ps(c1[i], _mm256_setzero_ps());
            }
        }
        if (full) {
            _mm256_storeu_ps(ci, c0[i]);
            _mm256_storeu_ps(ci + 8, c1[i]);
        } else {
            _mm256_maskstore_ps(ci, m0, c0[i]);
            _mm256_maskstore_ps(ci + 8, m1, c1[i]);
        }
    }
}

static inline __attribute__((always_inline, target("avx512f,avx2,fma"))) void
md__store512(const int R, __m512 *c0, __m512 *c1, float *c, int64_t ldc, __mmask16 m0, __mmask16 m1, int acc,
             const md__epilogue *ep) {
#pragma GCC unroll 14
    for (int i = 0; i < R; i++) {
        float *ci = c + i * ldc;
        if (acc) {
            c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, ci));
            c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, ci + 16));
        }
        if (ep) {
            if (ep->scale) {
                __m512 sc = _mm512_set1_ps(ep->scale[i]), sh = _mm512_set1_ps(ep->shift ? ep->shift[i] : 0.0f);
                c0[i] = _mm512_fmadd_ps(c0[i], sc, sh);
                c1[i] = _mm512_fmadd_ps(c1[i], sc, sh);
            } else if (ep->shift) {
                __m512 sh = _mm512_set1_ps(ep->shift[i]);
                c0[i] = _mm512_add_ps(c0[i], sh);
                c1[i] = _mm512_add_ps(c1[i], sh);
            }
            if (ep->relu) {
                c0[i] = _mm512_max_ps(c0[i], _mm512_setzero_ps());
                c1[i] = _mm512_max_ps(c1[i], _mm512_setzero_ps());
            }
        }
        _mm512_mask_storeu_ps(ci, m0, c0[i]);
        _mm512_mask_storeu_ps(ci + 16, m1, c1[i]);
    }
}
#endif
#endif
