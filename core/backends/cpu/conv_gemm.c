/* Packed GEMM for the convolutions: panel packing, the K/M-blocked driver
 * and the AVX-512 (14x32) and AVX2+FMA (6x16) micro-kernels. The kernels
 * carry their own target attributes, so the library still builds for and
 * runs on any x86-64; the variant is picked at run time. */
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "backends/cpu/conv_gemm.h"
#include "backends/cpu/gemm_store.h"
#include "backends/cpu/gemm_bf16.h"
#include "backends/backend.h"

#if defined(__x86_64__) || defined(__i386__)
#define MD_HAVE_X86 1
#include <immintrin.h>
#else
#define MD_HAVE_X86 0
#endif

/* K block: callers keep a B block (KC x N) within L2. */
#define KC MD_GEMM_KC

#if MD_HAVE_X86
#define T512 __attribute__((target("avx512f,avx2,fma")))
#define T256 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/* 14 rows x 32 columns: 28 zmm accumulators, two B loads and 14 broadcasts
 * per k. R is a constant in every instantiation, so the accumulator arrays
 * live in registers. Columns past `cols` are masked off. */
INLINE T512 void ker512(const int R, int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                        __mmask16 m0, __mmask16 m1, int acc, const md__epilogue *ep) {
    __m512 c0[14], c1[14];
#pragma GCC unroll 14
    for (int i = 0; i < R; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 14
        for (int i = 0; i < R; i++) {
            __m512 av = _mm512_set1_ps(a[i]);
            c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
        }
        a += 14;
        b += 32;
    }
    md__store512(R, c0, c1, c, ldc, m0, m1, acc, ep);
}

static T512 void ukernel_avx512(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int rows,
                                int cols, int acc, const md__epilogue *ep) {
    __mmask16 m0 = cols >= 16 ? 0xFFFF : (__mmask16)((1u << cols) - 1);
    __mmask16 m1 = cols >= 32 ? 0xFFFF : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0;
    switch (rows) {
#define R512(n) case n: ker512(n, kc, a, b, c, ldc, m0, m1, acc, ep); break;
    R512(1) R512(2) R512(3) R512(4) R512(5) R512(6) R512(7)
    R512(8) R512(9) R512(10) R512(11) R512(12) R512(13) R512(14)
#undef R512
    default: break;
    }
}


/* 16x16 transpose: rows i < `rows` of src (lds apart, 16 floats each, the
 * rest read as zeros) become dst[c*ldd + i], c < 16, i < rows. Inlined with
 * a constant row count and fully unrolled, so everything stays in zmm
 * registers. */
INLINE T512 void tr16_body(const int rows, const float *src, int64_t lds, float *dst, int64_t ldd) {
    __m512 r[16], t[16], u[16], v[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) r[i] = i < rows ? _mm512_loadu_ps(src + i * lds) : _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 4) {   /* u[i + c]: column 4L + c of rows i..i+3, per 128-bit lane L */
        u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
#pragma GCC unroll 16
    for (int c = 0; c < 4; c++) {
        v[c] = _mm512_shuffle_f32x4(u[c], u[c + 4], 0x88);
        v[c + 4] = _mm512_shuffle_f32x4(u[c], u[c + 4], 0xDD);
        v[c + 8] = _mm512_shuffle_f32x4(u[c + 8], u[c + 12], 0x88);
        v[c + 12] = _mm512_shuffle_f32x4(u[c + 8], u[c + 12], 0xDD);
    }
    const __mmask16 m = (__mmask16)((1u << rows) - 1);
#pragma GCC unroll 16
    for (int c = 0; c < 8; c++) {
        __m512 lo = _mm512_shuffle_f32x4(v[c], v[c + 8], 0x88), hi = _mm512_shuffle_f32x4(v[c], v[c + 8], 0xDD);
        if (rows == 16) {
            _mm512_storeu_ps(dst + c * ldd, lo);
            _mm512_storeu_ps(dst + (c + 8) * ldd, hi);
        } else {
            _mm512_mask_storeu_ps(dst + c * ldd, m, lo);
            _mm512_mask_storeu_ps(dst + (c + 8) * ldd, m, hi);
        }
    }
}

/* A [kn x 16] block of 16 rows (B^T) or 14 rows (A) transposed, k blocks of 16. */
static T512 void tr_rows16(const float *src, int64_t lds, int64_t K, float *dst, int64_t ldd) {
    for (int64_t kk = 0; kk + 16 <= K; kk += 16) tr16_body(16, src + kk, lds, dst + kk * ldd, ldd);
}
static T512 void tr_rows14(const float *src, int64_t lds, int64_t K, float *dst, int64_t ldd) {
    for (int64_t kk = 0; kk + 16 <= K; kk += 16) tr16_body(14, src + kk, lds, dst + kk * ldd, ldd);
}

/* Positions [0, n) of a panel row from position `off` on (see
 * md__pack_row_run): src[t] for t in [lo, hi), zeros elsewhere, with masked
 * loads, so src is never read outside [lo, hi). */
static T512 void row_run_avx512(float *row, int64_t pstride, int64_t off, const float *src, int64_t n, int64_t lo,
                                int64_t hi) {
    const int64_t nr = 32;   /* a constant: no divisions per run */
    int64_t p = off / nr, q = off % nr;
    for (int64_t t = 0; t < n;) {
        int64_t cnt = nr - q < n - t ? nr - q : n - t;
        float *d = row + p * pstride + q;
        if (cnt == 32 && t >= lo && t + 32 <= hi) {   /* a whole panel row inside the data */
            _mm512_storeu_ps(d, _mm512_loadu_ps(src + t));
            _mm512_storeu_ps(d + 16, _mm512_loadu_ps(src + t + 16));
        } else {
            for (int64_t v = 0; v < cnt; v += 16) {
                int64_t m = cnt - v < 16 ? cnt - v : 16, a = lo - (t + v), b = hi - (t + v);
                if (a < 0) a = 0;
                if (b > m) b = m;
                __mmask16 lm = b > a ? (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1)) : 0;
                __m512 val = _mm512_maskz_loadu_ps(lm, src + t + v);
                _mm512_mask_storeu_ps(d + v, (__mmask16)((1u << m) - 1), val);
            }
        }
        t += cnt;
        q = 0;
        p++;
    }
}

/* The same for src[2t] (stride-2 convolutions): two loads and one
 * permute per 16 values inside the data, element by element at its ends. */
static T512 void row_run2_avx512(float *row, int64_t pstride, int64_t off, const float *src, int64_t n, int64_t lo,
                                 int64_t hi) {
    const int64_t nr = 32;
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    int64_t p = off / nr, q = off % nr;
    for (int64_t t = 0; t < n;) {
        int64_t cnt = nr - q < n - t ? nr - q : n - t;
        float *d = row + p * pstride + q;
        for (int64_t v = 0; v < cnt; v += 16) {
            int64_t m = cnt - v < 16 ? cnt - v : 16, a = t + v;
            /* the pair of loads reads src[2a .. 2a + 31]: all inside [2lo, 2hi - 1) */
            if (m == 16 && a >= lo && a + 16 <= hi && 2 * a + 32 <= 2 * hi - 1) {
                __m512 v0 = _mm512_loadu_ps(src + 2 * a), v1 = _mm512_loadu_ps(src + 2 * a + 16);
                _mm512_storeu_ps(d + v, _mm512_permutex2var_ps(v0, even, v1));
            } else {
                /* lanes i in [ia, ib) are data; load only their even source positions 2i */
                int64_t ia = lo - a > 0 ? lo - a : 0, ib = hi - a < m ? hi - a : m;
                uint64_t lanes = ib > ia ? ((1ull << (2 * ib)) - 1) & ~((1ull << (2 * ia)) - 1) & 0x55555555ull : 0;
                __m512 v0 = _mm512_maskz_loadu_ps((__mmask16)(lanes & 0xFFFF), src + 2 * a);
                __m512 v1 = _mm512_maskz_loadu_ps((__mmask16)(lanes >> 16), src + 2 * a + 16);
                _mm512_mask_storeu_ps(d + v, (__mmask16)((1u << m) - 1), _mm512_permutex2var_ps(v0, even, v1));
            }
        }
        t += cnt;
        q = 0;
        p++;
    }
}

/* dst[2t] += src[t], t < n: one load, two permutes and two even-lane
 * masked read-modify-writes per 16 values. */
static T512 void add_run2_avx512(float *dst, const float *src, int64_t n) {
    const __m512i lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i hi = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    const __mmask16 even = 0x5555;
    int64_t t = 0;
    for (; t + 16 <= n; t += 16) {
        __m512 v = _mm512_loadu_ps(src + t);
        float *d = dst + 2 * t;
        __m512 d0 = _mm512_maskz_loadu_ps(even, d), d1 = _mm512_maskz_loadu_ps(even, d + 16);
        _mm512_mask_storeu_ps(d, even, _mm512_add_ps(d0, _mm512_permutexvar_ps(lo, v)));
        _mm512_mask_storeu_ps(d + 16, even, _mm512_add_ps(d1, _mm512_permutexvar_ps(hi, v)));
    }
    for (; t < n; t++) dst[2 * t] += src[t];
}

/* dst[j] = src[j / 2] at even j, 0 at odd j, for j < span: whole lines
 * written once, nothing read back. */
static T512 void put_run2_avx512(float *dst, const float *src, int64_t span) {
    const __m512i lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i hi = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    const __mmask16 even = 0x5555;
    int64_t j = 0;
    for (; j + 32 <= span; j += 32) {
        __m512 v = _mm512_loadu_ps(src + j / 2);
        _mm512_storeu_ps(dst + j, _mm512_maskz_permutexvar_ps(even, lo, v));
        _mm512_storeu_ps(dst + j + 16, _mm512_maskz_permutexvar_ps(even, hi, v));
    }
    for (; j < span; j++) dst[j] = j % 2 ? 0.0f : src[j / 2];
}

/* A panels of a 7-wide, column-stride-2 im2col (md__pack_a_k7s2): a panel
 * row (one pixel) is two 7-tap runs, x1[2t .. 2t+6] and x2[2t .. 2t+6], so
 * 16 pixels' rows, 224 floats, are 14 vectors, each one permute of a
 * 9-float window of x1 and one of x2. The pattern repeats every 16 pixels;
 * k7s2_tables builds it: lane l of vector m is element e = 16m + l, pixel
 * t = e / 14 (base[m] = the first of them), tap i = e % 14. */
static T512 void k7s2_tables(__m512i idx[14], int base[14]) {
    for (int m = 0; m < 14; m++) {
        int v[16];
        base[m] = 16 * m / 14;
        for (int l = 0; l < 16; l++) {
            int e = 16 * m + l, t = e / 14, i = e % 14, off = 2 * (t - base[m]);
            v[l] = i < 7 ? off + i : 16 + off + i - 7;
        }
        idx[m] = _mm512_loadu_si512(v);
    }
}

/* Panel row t of pixel (oh, ow) for runs (x1, x2), element by element with
 * bounds (the image's edges); a NULL run is a row outside the image. */
static void k7s2_row(const float *x1, const float *x2, int64_t iw0, int64_t W, float *d) {
    for (int h = 0; h < 2; h++) {
        const float *xr = h ? x2 : x1;
        for (int i = 0; i < 7; i++) d[7 * h + i] = xr && iw0 + i >= 0 && iw0 + i < W ? xr[iw0 + i] : 0.0f;
    }
}

static T512 void k7s2_avx512(const md__conv_shape *s, const float *x, int64_t r0, int64_t r1, int64_t j0,
                             int64_t kp, float *pa) {
    const int64_t H = s->H, W = s->W, HW = H * W, OW = s->OW, KK = s->KH * 7, np = (r1 - r0 + 13) / 14;
    __m512i idx[14];
    int base[14];
    k7s2_tables(idx, base);
    const __mmask16 win = 0x1FF;   /* the 9 floats a window uses */
    for (int64_t t = 0; t < kp;) {
        /* the pixels [t, te) of one output row */
        int64_t j = j0 + t, oh = j / OW, ow0 = j % OW, te = t + (OW - ow0);
        if (te > kp) te = kp;
        /* pixels whose 7 columns 2*ow - pw .. + 6 are all inside the image */
        int64_t fa = (s->pw + 1) / 2, fb = W - 7 + s->pw >= 0 ? (W - 7 + s->pw) / 2 + 1 : 0;   /* ow in [fa, fb) */
        for (int64_t p = 0; p < np; p++) {
            const float *xr[2] = { NULL, NULL };
            for (int h = 0; h < 2; h++) {
                int64_t r = r0 + 14 * p + 7 * h;
                if (r >= r1) continue;
                int64_t c = r / KK, ki = r / 7 % s->KH, ih = oh * s->sh - s->ph + ki * s->dh;
                if (ih >= 0 && ih < H) xr[h] = x + c * HW + ih * W;
            }
            float *dp = pa + p * 14 * kp;
            for (int64_t u = t; u < te;) {
                int64_t ow = ow0 + (u - t);
                /* a last block short of 16 pixels starts earlier, rewriting some */
                if (ow >= fa && ow < fb && te - t >= 16 && (ow + 16 > fb || u + 16 > te)) {
                    int64_t back = ow + 16 - fb > u + 16 - te ? ow + 16 - fb : u + 16 - te;
                    if (ow - back >= fa && u - back >= t) {
                        u -= back;
                        ow -= back;
                    }
                }
                if (ow >= fa && ow + 16 <= fb && u + 16 <= te) {
                    const int64_t iw = 2 * ow - s->pw;
                    float *d = dp + u * 14;
                    for (int m = 0; m < 14; m++) {
                        __m512 a = xr[0] ? _mm512_maskz_loadu_ps(win, xr[0] + iw + 2 * base[m]) : _mm512_setzero_ps();
                        __m512 b = xr[1] ? _mm512_maskz_loadu_ps(win, xr[1] + iw + 2 * base[m]) : _mm512_setzero_ps();
                        _mm512_storeu_ps(d + 16 * m, _mm512_permutex2var_ps(a, idx[m], b));
                    }
                    u += 16;
                } else {
                    k7s2_row(xr[0], xr[1], 2 * ow - s->pw, W, dp + u * 14);
                    u++;
                }
            }
        }
        t = te;
    }
}

/* 6 rows x 16 columns: 12 ymm accumulators. Partial column blocks go
 * through maskload/maskstore. */
INLINE T256 void ker256(const int R, int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                        __m256i m0, __m256i m1, int full, int acc, const md__epilogue *ep) {
    __m256 c0[6], c1[6];
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) c0[i] = c1[i] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < R; i++) {
            __m256 av = _mm256_broadcast_ss(a + i);
            c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
        }
        a += 6;
        b += 16;
    }
    md__store256(R, c0, c1, c, ldc, m0, m1, full, acc, ep);
}

static T256 void ukernel_avx2(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int rows, int cols,
                              int acc, const md__epilogue *ep) {
    static const int32_t lanes[24] = { -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                       0,  0,  0,  0,  0,  0,  0,  0 };
    /* lane l of a block starting at column s is on when s + l < cols */
    int s0 = cols >= 8 ? 8 : cols, s1 = cols >= 16 ? 8 : cols > 8 ? cols - 8 : 0;
    __m256i m0 = _mm256_loadu_si256((const __m256i *)(lanes + 16 - s0));
    __m256i m1 = _mm256_loadu_si256((const __m256i *)(lanes + 16 - s1));
    int full = cols >= 16;
    switch (rows) {
#define R256(n) case n: ker256(n, kc, a, b, c, ldc, m0, m1, full, acc, ep); break;
    R256(1) R256(2) R256(3) R256(4) R256(5) R256(6)
#undef R256
    default: break;
    }
}
#endif

static const md__gemm_kernel KERNELS[MD_CONVK_COUNT] = {
    [MD_CONVK_BLAS] = { MD_CONVK_BLAS, 0, 0, NULL },
#if MD_HAVE_X86
    [MD_CONVK_AVX2] = { MD_CONVK_AVX2, 6, 16, ukernel_avx2 },
    [MD_CONVK_AVX512] = { MD_CONVK_AVX512, 14, 32, ukernel_avx512 },
#endif
};

static const char *const NAMES[MD_CONVK_COUNT] = { "blas", "avx2", "avx512" };

const char *md__convk_name(int id) { return id >= 0 && id < MD_CONVK_COUNT ? NAMES[id] : "?"; }

int md__convk_supported(int id) {
    if (id == MD_CONVK_BLAS) return 1;
#if MD_HAVE_X86
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (id == MD_CONVK_AVX2) return avx2;
    if (id == MD_CONVK_AVX512) return avx2 && __builtin_cpu_supports("avx512f");
#endif
    return 0;
}

static int g_default = MD_CONVK_BLAS, g_forced = -1;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* The default is AVX-512 where the CPU has it, else OpenBLAS: the AVX2
 * kernel measured slower than OpenBLAS's own AVX2 kernels, so it runs only
 * when asked for. */
static void choose_default(void) {
    g_default = md__convk_supported(MD_CONVK_AVX512) ? MD_CONVK_AVX512 : MD_CONVK_BLAS;
    const char *env = getenv("MMDET_CPU_CONV");
    if (!env || !*env) return;
    for (int id = 0; id < MD_CONVK_COUNT; id++)
        if (!strcmp(env, NAMES[id])) {
            if (md__convk_supported(id)) g_default = id;
            else fprintf(stderr, "mmdet: MMDET_CPU_CONV=%s: this CPU lacks it; using %s\n", env, NAMES[g_default]);
            return;
        }
    fprintf(stderr, "mmdet: MMDET_CPU_CONV=%s is none of blas, avx2, avx512; using %s\n", env, NAMES[g_default]);
}

const md__gemm_kernel *md__convk(void) {
    if (md__cpu_bf16) return md__convk_bf16();   /* mixed precision: gemm_bf16.h */
    pthread_once(&g_once, choose_default);
    int id = g_forced >= 0 ? g_forced : g_default;
    return id == MD_CONVK_BLAS ? NULL : &KERNELS[id];
}

int md__convk_set(int id) {
    if (id < 0) {
        g_forced = -1;
        return 0;
    }
    if (id >= MD_CONVK_COUNT || !md__convk_supported(id)) return -1;
    g_forced = id;
    return 0;
}

void md__pack_row_run(const md__gemm_kernel *k, float *row, int64_t pstride, int64_t off, const float *src,
                      int64_t sw, int64_t n, int64_t lo, int64_t hi) {
    if (lo < 0) lo = 0;
    if (hi > n) hi = n;
    if (hi < lo) hi = lo;
#if MD_HAVE_X86
    if (k->id == MD_CONVK_AVX512 && sw == 1) {
        row_run_avx512(row, pstride, off, src, n, lo, hi);
        return;
    }
    if (k->id == MD_CONVK_AVX512 && sw == 2) {
        row_run2_avx512(row, pstride, off, src, n, lo, hi);
        return;
    }
#endif
    const int64_t nr = k->nr;
    int64_t p = nr == 16 ? off >> 4 : off / nr, q = nr == 16 ? off & 15 : off % nr;
    for (int64_t t = 0; t < n;) {
        int64_t cnt = nr - q < n - t ? nr - q : n - t;
        float *d = row + p * pstride + q;
        for (int64_t i = 0; i < cnt; i++) d[i] = t + i >= lo && t + i < hi ? src[(t + i) * sw] : 0.0f;
        t += cnt;
        q = 0;
        p++;
    }
}

void md__add_run(const md__gemm_kernel *k, float *dst, int64_t sw, const float *src, int64_t n) {
#if MD_HAVE_X86
    if (k && k->id == MD_CONVK_AVX512 && sw == 2) {
        add_run2_avx512(dst, src, n);
        return;
    }
#endif
    for (int64_t t = 0; t < n; t++) dst[t * sw] += src[t];
}

void md__put_run(const md__gemm_kernel *k, float *dst, int64_t sw, const float *src, int64_t span) {
#if MD_HAVE_X86
    if (k && k->id == MD_CONVK_AVX512 && sw == 2) {
        put_run2_avx512(dst, src, span);
        return;
    }
#endif
    for (int64_t j = 0; j < span; j++) dst[j] = j % sw ? 0.0f : src[j / sw];
}

int md__pack_a_k7s2_applies(const md__gemm_kernel *k, const md__conv_shape *s) {
    return MD_HAVE_X86 && k->id == MD_CONVK_AVX512 && k->mr == 14 && s->KW == 7 && s->sw == 2 && s->dw == 1;
}

void md__pack_a_k7s2(const md__gemm_kernel *k, const md__conv_shape *s, const float *x, int64_t r0, int64_t r1,
                     int64_t j0, int64_t kp, float *pa) {
    (void)k;
#if MD_HAVE_X86
    k7s2_avx512(s, x, r0, r1, j0, kp, pa);
#else
    (void)s, (void)x, (void)r0, (void)r1, (void)j0, (void)kp, (void)pa;
#endif
}

void md__pack_a(const md__gemm_kernel *k, const float *src, int64_t rs, int64_t cs, int64_t M, int64_t K,
                int64_t p0, int64_t p1, float *pa) {
    const int64_t mr = k->mr;
    for (int64_t p = p0; p < p1; p++) {
        float *dst = pa + p * mr * K;
#if MD_HAVE_X86
        int64_t rows = M - p * mr < mr ? M - p * mr : mr;
        if (k->id == MD_CONVK_AVX512 && mr == 14 && cs == 1 && rows == mr && K >= 16) {
            tr_rows14(src + p * mr * rs, rs, K, dst, mr);
            for (int64_t kk = K / 16 * 16; kk < K; kk++)
                for (int64_t i = 0; i < mr; i++) dst[kk * mr + i] = src[(p * mr + i) * rs + kk];
            continue;
        }
#endif
        for (int64_t i = 0; i < mr; i++) {
            int64_t row = p * mr + i;
            if (row >= M) {
                for (int64_t kk = 0; kk < K; kk++) dst[kk * mr + i] = 0.0f;
                continue;
            }
            const float *s = src + row * rs;
            if (cs == 1)
                for (int64_t kk = 0; kk < K; kk++) dst[kk * mr + i] = s[kk];
            else
                for (int64_t kk = 0; kk < K; kk++) dst[kk * mr + i] = s[kk * cs];
        }
    }
}

void md__pack_b(const md__gemm_kernel *k, const float *src, int64_t rs, int64_t cs, int64_t K, int64_t N,
                float *pb) {
    const int64_t nr = k->nr;
    if (cs == 1) {
        /* row by row across the panels; rows rs apart (often a whole map)
         * come from memory, so the one 8 ahead is prefetched */
        const int64_t pstride = md__pb_stride(k, K);
        for (int64_t kk = 0; kk < K; kk++) {
            if (kk + 8 < K)
                for (int64_t j = 0; j < N; j += 16) __builtin_prefetch(src + (kk + 8) * rs + j, 0, 3);
            float *rowp = pb + kk * nr;
            md__pack_row_run(k, rowp, pstride, 0, src + kk * rs, 1, N, 0, N);
            if (N % nr) memset(rowp + N / nr * pstride + N % nr, 0, sizeof(float) * (size_t)(nr - N % nr));
        }
        return;
    }
    for (int64_t j0 = 0; j0 < N; j0 += nr) {
        float *dst = pb + j0 / nr * md__pb_stride(k, K);
        int64_t cols = N - j0 < nr ? N - j0 : nr;
        int64_t q0 = 0;
#if MD_HAVE_X86
        /* B^T row-major (rs == 1): 16x16 transposes of 16 columns at a time */
        if (k->id == MD_CONVK_AVX512 && rs == 1 && K >= 16) {
            for (; q0 + 16 <= cols; q0 += 16) {
                const float *s = src + (j0 + q0) * cs;
                tr_rows16(s, cs, K, dst + q0, nr);
                for (int64_t kk = K / 16 * 16; kk < K; kk++)
                    for (int64_t q = 0; q < 16; q++) dst[kk * nr + q0 + q] = s[q * cs + kk];
            }
        }
#endif
        /* column j of B is contiguous in k when rs == 1: one column at a time */
        for (int64_t q = q0; q < nr; q++) {
            if (q >= cols) {
                for (int64_t kk = 0; kk < K; kk++) dst[kk * nr + q] = 0.0f;
                continue;
            }
            const float *s = src + (j0 + q) * cs;
            for (int64_t kk = 0; kk < K; kk++) dst[kk * nr + q] = s[kk * rs];
        }
    }
}

void md__epilogue_apply(const md__epilogue *ep, float *C, int64_t ldc, int64_t M, int64_t N) {
    if (!ep || (!ep->scale && !ep->shift && !ep->relu)) return;
    for (int64_t i = 0; i < M; i++) {
        float sc = ep->scale ? ep->scale[i] : 1.0f, sh = ep->shift ? ep->shift[i] : 0.0f, *row = C + i * ldc;
        if (ep->scale)
            for (int64_t j = 0; j < N; j++) row[j] = row[j] * sc + sh;
        else if (ep->shift)
            for (int64_t j = 0; j < N; j++) row[j] += sh;
        if (ep->relu)
            for (int64_t j = 0; j < N; j++) row[j] = row[j] > 0.0f ? row[j] : 0.0f;
    }
}

void md__gemm_packed(const md__gemm_kernel *k, int64_t M, int64_t N, int64_t K, const float *pa, int64_t a_depth,
                     const float *pb, float *C, int64_t ldc, int acc) {
    md__gemm_packed_ep(k, M, N, K, pa, a_depth, pb, C, ldc, acc, NULL);
}

void md__gemm_packed_ep(const md__gemm_kernel *k, int64_t M, int64_t N, int64_t K, const float *pa,
                        int64_t a_depth, const float *pb, float *C, int64_t ldc, int acc, const md__epilogue *ep) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!acc)
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, sizeof(float) * (size_t)N);
        md__epilogue_apply(ep, C, ldc, M, N);
        return;
    }
    const int64_t mr = k->mr, nr = k->nr, mp = (M + mr - 1) / mr, np = (N + nr - 1) / nr;
    const int64_t pbs = md__pb_stride(k, K);
    /* equal K blocks of at most KC */
    const int64_t nkb = (K + KC - 1) / KC, kcb = (K + nkb - 1) / nkb;
    for (int64_t k0 = 0; k0 < K; k0 += kcb) {
        int64_t kc = K - k0 < kcb ? K - k0 : kcb;
        int a_acc = acc || k0 > 0, last = k0 + kc >= K;
        /* row panel by row panel: the A panel (mr x kc) stays in L1 while
         * the B block passes under it, and C is written along its rows.
         * Column panel outermost wrote mr-row strips down all of C: with a
         * power-of-two ldc (a 128x128 map) every row of the strip fell in
         * the same cache set, and a 64-deep 1x1 input gradient ran at half
         * the rate. */
        for (int64_t ip = 0; ip < mp; ip++) {
            int rows = (int)(M - ip * mr < mr ? M - ip * mr : mr);
            md__epilogue te, *tep = NULL;
            if (ep && last) {   /* the tile's rows of the per-row vectors */
                te = (md__epilogue){ ep->scale ? ep->scale + ip * mr : NULL,
                                     ep->shift ? ep->shift + ip * mr : NULL, ep->relu };
                tep = &te;
            }
            const float *ap = pa + ip * mr * a_depth + k0 * mr;
            float *crow = C + ip * mr * ldc;
            for (int64_t jp = 0; jp < np; jp++) {
                int cols = (int)(N - jp * nr < nr ? N - jp * nr : nr);
                k->fn(kc, ap, pb + jp * pbs + k0 * nr, crow + jp * nr, ldc, rows, cols, a_acc, tep);
            }
        }
    }
}
