/* bf16 micro-kernels (AVX512_BF16, AVX-512F converting, AVX2 emulated) on
 * the f32 panels of the packed GEMM, and a bf16 GEMM for linear layers.
 * Each kernel carries its own target attribute, so the library builds for
 * any x86-64 and picks what the CPU runs at run time (gemm_bf16.h). */
#include <pthread.h>
#include <string.h>
#include "backends/cpu/gemm_bf16.h"
#include "backends/cpu/gemm_store.h"

#if defined(__x86_64__) || defined(__i386__)
#define MD_HAVE_X86 1
#include <immintrin.h>
#else
#define MD_HAVE_X86 0
#endif

__thread int md__cpu_bf16;

#if MD_HAVE_X86
#define T256 __attribute__((target("avx2,fma")))
#define T512 __attribute__((target("avx512f,avx2,fma")))
#define T512BF __attribute__((target("avx512f,avx512bf16,avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------- AVX2 -- */

/* x rounded to bf16 (nearest even) and widened back: integer lanes, with
 * NaNs kept (the carry would turn a NaN with a low payload into inf). */
INLINE T256 __m256 round256(__m256 x) {
    __m256i u = _mm256_castps_si256(x);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF)));
    r = _mm256_and_si256(r, _mm256_set1_epi32((int)0xFFFF0000u));
    return _mm256_blendv_ps(_mm256_castsi256_ps(r), x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}


/* 6x16 as the f32 AVX2 kernel, each A and B value rounded to bf16 as it
 * is loaded: the six A values of a k with one masked load and one
 * rounding, broadcast from a small buffer. */
INLINE T256 void kemu(const int R, int64_t kc, const float *a, const float *b, float *c, int64_t ldc, __m256i m0,
                      __m256i m1, int full, int acc, const md__epilogue *ep) {
    __m256 c0[6], c1[6];
    float at[8] __attribute__((aligned(32)));
    const __m256i am = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) c0[i] = c1[i] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = round256(_mm256_loadu_ps(b)), b1 = round256(_mm256_loadu_ps(b + 8));
        _mm256_store_ps(at, round256(_mm256_maskload_ps(a, am)));
#pragma GCC unroll 6
        for (int i = 0; i < R; i++) {
            __m256 av = _mm256_broadcast_ss(at + i);
            c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
        }
        a += 6;
        b += 16;
    }
    md__store256(R, c0, c1, c, ldc, m0, m1, full, acc, ep);
}

static T256 void ukernel_emulated(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int rows,
                                  int cols, int acc, const md__epilogue *ep) {
    static const int32_t lanes[24] = { -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                       0,  0,  0,  0,  0,  0,  0,  0 };
    int s0 = cols >= 8 ? 8 : cols, s1 = cols >= 16 ? 8 : cols > 8 ? cols - 8 : 0;
    __m256i m0 = _mm256_loadu_si256((const __m256i *)(lanes + 16 - s0));
    __m256i m1 = _mm256_loadu_si256((const __m256i *)(lanes + 16 - s1));
    int full = cols >= 16;
    switch (rows) {
#define RE(n) case n: kemu(n, kc, a, b, c, ldc, m0, m1, full, acc, ep); break;
    RE(1) RE(2) RE(3) RE(4) RE(5) RE(6)
#undef RE
    default: break;
    }
}

/* ------------------------------------------------------------- AVX-512 -- */

INLINE T512 __m512 round512(__m512 x) {
    __m512i u = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
    r = _mm512_and_si512(r, _mm512_set1_epi32((int)0xFFFF0000u));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_castsi512_ps(r), x);
}


/* 14x32 as the f32 AVX-512 kernel, values rounded as they are loaded. */
INLINE T512 void kcvt(const int R, int64_t kc, const float *a, const float *b, float *c, int64_t ldc, __mmask16 m0,
                      __mmask16 m1, int acc, const md__epilogue *ep) {
    __m512 c0[14], c1[14];
    float at[16] __attribute__((aligned(64)));
#pragma GCC unroll 14
    for (int i = 0; i < R; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = round512(_mm512_loadu_ps(b)), b1 = round512(_mm512_loadu_ps(b + 16));
        _mm512_store_ps(at, round512(_mm512_maskz_loadu_ps(0x3FFF, a)));
#pragma GCC unroll 14
        for (int i = 0; i < R; i++) {
            __m512 av = _mm512_set1_ps(at[i]);
            c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
        }
        a += 14;
        b += 32;
    }
    md__store512(R, c0, c1, c, ldc, m0, m1, acc, ep);
}

static T512 void ukernel_avx512cvt(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int rows,
                                   int cols, int acc, const md__epilogue *ep) {
    __mmask16 m0 = cols >= 16 ? 0xFFFF : (__mmask16)((1u << cols) - 1);
    __mmask16 m1 = cols >= 32 ? 0xFFFF : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0;
    switch (rows) {
#define RC(n) case n: kcvt(n, kc, a, b, c, ldc, m0, m1, acc, ep); break;
    RC(1) RC(2) RC(3) RC(4) RC(5) RC(6) RC(7) RC(8) RC(9) RC(10) RC(11) RC(12) RC(13) RC(14)
#undef RC
    default: break;
    }
}

/* Lane i: bf16(lo[i]) in the low half, bf16(hi[i]) in the high half, the
 * pair layout vdpbf16ps multiplies. */
INLINE T512BF __m512i pair512(__m512 lo, __m512 hi) {
    __m512i l = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(lo));
    __m512i h = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(hi));
    return _mm512_or_si512(l, _mm512_slli_epi32(h, 16));
}

/* 14x32 with vdpbf16ps: two k per instruction, the pairs of B rows and of
 * A values formed from the f32 panels as they are loaded; an odd last k
 * pairs with zero. */
INLINE T512BF void knat(const int R, int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                        __mmask16 m0, __mmask16 m1, int acc, const md__epilogue *ep) {
    __m512 c0[14], c1[14];
    int32_t at[16] __attribute__((aligned(64)));
#pragma GCC unroll 14
    for (int i = 0; i < R; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k += 2) {
        int two = k + 1 < kc;
        __m512 z = _mm512_setzero_ps();
        __m512i p0 = pair512(_mm512_loadu_ps(b), two ? _mm512_loadu_ps(b + 32) : z);
        __m512i p1 = pair512(_mm512_loadu_ps(b + 16), two ? _mm512_loadu_ps(b + 48) : z);
        _mm512_store_si512(at, pair512(_mm512_maskz_loadu_ps(0x3FFF, a),
                                       two ? _mm512_maskz_loadu_ps(0x3FFF, a + 14) : z));
#pragma GCC unroll 14
        for (int i = 0; i < R; i++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32(at[i]);
            c0[i] = _mm512_dpbf16_ps(c0[i], av, (__m512bh)p0);
            c1[i] = _mm512_dpbf16_ps(c1[i], av, (__m512bh)p1);
        }
        a += 28;
        b += 64;
    }
    md__store512(R, c0, c1, c, ldc, m0, m1, acc, ep);
}

static T512BF void ukernel_native(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int rows,
                                  int cols, int acc, const md__epilogue *ep) {
    __mmask16 m0 = cols >= 16 ? 0xFFFF : (__mmask16)((1u << cols) - 1);
    __mmask16 m1 = cols >= 32 ? 0xFFFF : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0;
    switch (rows) {
#define RN(n) case n: knat(n, kc, a, b, c, ldc, m0, m1, acc, ep); break;
    RN(1) RN(2) RN(3) RN(4) RN(5) RN(6) RN(7) RN(8) RN(9) RN(10) RN(11) RN(12) RN(13) RN(14)
#undef RN
    default: break;
    }
}
#endif

/* Same ids and register blocks as the f32 kernels, so the packing code's
 * per-layout paths apply unchanged. */
static const md__gemm_kernel KERNELS[MD_BF16K_COUNT] = {
#if MD_HAVE_X86
    [MD_BF16K_EMULATED] = { MD_CONVK_AVX2, 6, 16, ukernel_emulated },
    [MD_BF16K_AVX512CVT] = { MD_CONVK_AVX512, 14, 32, ukernel_avx512cvt },
    [MD_BF16K_NATIVE] = { MD_CONVK_AVX512, 14, 32, ukernel_native },
#endif
};
static const char *const NAMES[MD_BF16K_COUNT] = { "emulated", "avx512cvt", "native" };

const char *md__bf16k_name(int id) { return id >= 0 && id < MD_BF16K_COUNT ? NAMES[id] : "none"; }

int md__bf16k_supported(int id) {
#if MD_HAVE_X86
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f");
    if (id == MD_BF16K_EMULATED) return avx2;
    if (id == MD_BF16K_AVX512CVT) return avx512;
    if (id == MD_BF16K_NATIVE) return avx512 && __builtin_cpu_supports("avx512bf16");
#else
    (void)id;
#endif
    return 0;
}

static int g_best = -1, g_forced = -1;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    for (int id = MD_BF16K_COUNT - 1; id >= 0; id--)
        if (md__bf16k_supported(id)) {
            g_best = id;
            return;
        }
}

int md__bf16k_current(void) {
    pthread_once(&g_once, choose);
    return g_forced >= 0 ? g_forced : g_best;
}

const md__gemm_kernel *md__convk_bf16(void) {
    int id = md__bf16k_current();
    return id >= 0 ? &KERNELS[id] : NULL;
}

int md__bf16k_set(int id) {
    if (id < 0) {
        g_forced = -1;
        return 0;
    }
    if (id >= MD_BF16K_COUNT || !md__bf16k_supported(id)) return -1;
    g_forced = id;
    return 0;
}

/* ------------------------------------------------------------ the GEMM -- */

size_t md__gemm_bf16_work_floats(int64_t M, int64_t N, int64_t K) {
    const md__gemm_kernel *k = md__convk_bf16();
    if (!k || M <= 0 || N <= 0 || K <= 0) return 0;
    return md__pack_a_floats(k, M, K) + md__pack_b_floats(k, N, K);
}

void md__gemm_bf16(int nthreads, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                   const float *B, int64_t ldb, float beta, float *C, int64_t ldc, float *work) {
    const md__gemm_kernel *k = md__convk_bf16();
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (beta == 0.0f)
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, sizeof(float) * (size_t)N);
        return;
    }
    const int64_t mr = k->mr, nr = k->nr, mp = (M + mr - 1) / mr, np = (N + nr - 1) / nr;
    const int64_t pbs = md__pb_stride(k, K);
    float *pa = work, *pb = work + md__pack_a_floats(k, M, K);
    /* A(i, kk) and B(kk, j) through the operands' strides */
    const int64_t ars = ta ? 1 : lda, acs = ta ? lda : 1, brs = tb ? 1 : ldb, bcs = tb ? ldb : 1;
    if (nthreads < 1) nthreads = 1;
    #pragma omp parallel num_threads(nthreads)
    {
        #pragma omp for schedule(static)
        for (int64_t p = 0; p < mp; p++) md__pack_a(k, A, ars, acs, M, K, p, p + 1, pa);
        /* each thread packs and multiplies its own column panels */
        #pragma omp for schedule(static)
        for (int64_t jp = 0; jp < np; jp++) {
            int64_t j0 = jp * nr, cols = N - j0 < nr ? N - j0 : nr;
            float *pbj = pb + jp * pbs;
            md__pack_b(k, B + j0 * bcs, brs, bcs, K, cols, pbj);
            md__gemm_packed(k, M, cols, K, pa, K, pbj, C + j0, ldc, beta != 0.0f);
        }
    }
}
