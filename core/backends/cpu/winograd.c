/* Winograd F(2x2, 3x3) convolutions (winograd.h).
 *
 * With G, B^T and A^T the F(2, 3) matrices
 *   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  A^T = [1 1 1 0; 0 1 -1 -1],
 * a 2x2 output block is Y = A^T [sum_c (G g_oc G^T) .* (B^T d_c B)] A for the
 * 4x4 input block d_c at stride 2. Element xi of the 4x4 products is a GEMM
 * U_xi [O, C] . V_xi [C, tiles].
 *
 * Work items are (image, block of T tiles[, share of the output channels]);
 * an item transforms its T input tiles of every channel straight into the
 * 16 GEMMs' B panels, then, per block of output channels, runs the 16 GEMMs
 * into a small buffer (in L2) and transforms that block back into y. The
 * weights' transforms are packed once per call as 16 A operands shared by
 * all threads. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "backends/cpu/winograd.h"

#if defined(__x86_64__) || defined(__i386__)
#define MD_HAVE_X86 1
#include <immintrin.h>
#define T512 __attribute__((target("avx512f")))
#else
#define MD_HAVE_X86 0
#endif

/* The 16 B operands of a tile block: 2 MB, so that one plane's share (C x T)
 * stays in L2 while its GEMM runs and the weights are re-read once per T
 * tiles; measured best of 0.5, 1, 2, 4 and 8 MB on ResNet and RetinaNet shapes. */
#define V_FLOATS ((int64_t)512 * 1024)
#define T_MAX_PANELS 8                   /* tiles per block: at most 8 B panels */
#define OB_PANELS 4                      /* output channels per GEMM block, in A panels */
#define MIN_CHANNELS 8                   /* below this the transforms cost more than they save */
/* Output maps under 4 x 4 are mostly padding in their 4x4 input tiles, so
 * the path saves nothing there; and their few tiles leave the weight
 * gradient's transform-domain sums much larger than the (tiny) result, so
 * its rounding shows (a ResNet-18's 2x3 layer4 at a 64x80 input moved by
 * 0.8 % against im2col after two AdamW steps). */
#define MIN_SIDE 4
#define SLACK 16                         /* floats: the work area's start moved to a cache line */

static int forced = -1, from_env = -1;

void md__winograd_set(int on) { forced = on < 0 ? -1 : !!on; }

static int enabled(void) {
    if (forced >= 0) return forced;
    int v = __atomic_load_n(&from_env, __ATOMIC_RELAXED);
    if (v < 0) {
        const char *e = getenv("MMDET_CPU_WINOGRAD");
        v = !(e && !strcmp(e, "0"));
        __atomic_store_n(&from_env, v, __ATOMIC_RELAXED);
    }
    return v;
}

int md__winograd_applies(const md__conv_shape *s) {
    return enabled() && s->G == 1 && s->KH == 3 && s->KW == 3 && s->sh == 1 && s->sw == 1 && s->dh == 1 &&
           s->dw == 1 && s->C >= MIN_CHANNELS && s->O >= MIN_CHANNELS && s->OH >= MIN_SIDE && s->OW >= MIN_SIDE &&
           s->ph >= 0 && s->pw >= 0 && s->ph <= 2 && s->pw <= 2;
}

static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }
/* buffer sizes in whole cache lines, so that every buffer after an aligned start is aligned */
static size_t lines(size_t floats) { return (floats + 15) / 16 * 16; }

/* Where transformed inputs go: plane xi, column col (tile), at depth c of
 * the B panels: at + xi*plane + (col / nr)*ps + col % nr, at = pb + c*nr. */
typedef struct vdst { float *at; size_t plane; int64_t ps, nr; } vdst;

static inline float *vdst_at(const vdst *d, int xi, int64_t col) {
    return d->at + xi * d->plane + (col / d->nr) * d->ps + col % d->nr;
}

typedef struct wplan {
    int64_t tw, tiles, T, tblocks, mp, ob, oblocks, osplit, obper, items;
    size_t asz, vsz, msz, tmp, per_thread;
} wplan;

static wplan plan(const md__gemm_kernel *kn, const md__conv_shape *s, int nthreads) {
    wplan p = { 0 };
    const int64_t nr = kn->nr;
    p.tw = (s->OW + 1) / 2;
    p.tiles = (s->OH + 1) / 2 * p.tw;
    int64_t t = V_FLOATS / (16 * s->C) / nr * nr;
    if (t < nr) t = nr;
    if (t > T_MAX_PANELS * nr) t = T_MAX_PANELS * nr;
    if (t > p.tiles) t = p.tiles;
    p.T = t > 0 ? t : 1;
    p.tblocks = (p.tiles + p.T - 1) / p.T;
    p.mp = (s->O + kn->mr - 1) / kn->mr;
    p.ob = OB_PANELS < p.mp ? OB_PANELS : p.mp;
    p.oblocks = (p.mp + p.ob - 1) / p.ob;
    /* fewer (image, tile block) items than threads: share out the output channels too */
    int64_t items = s->N * p.tblocks;
    p.osplit = 1;
    if (items > 0 && items < nthreads) {
        p.osplit = (nthreads + items - 1) / items;
        if (p.osplit > p.oblocks) p.osplit = p.oblocks;
    }
    p.obper = (p.oblocks + p.osplit - 1) / p.osplit;
    p.items = items * p.osplit;
    p.asz = lines(md__pack_a_floats(kn, s->O, s->C));
    p.vsz = lines(md__pack_b_floats(kn, p.T, s->C));
    p.msz = lines((size_t)(p.ob * kn->mr * p.T));
    /* 4 padded input rows, or 2 output rows */
    p.tmp = lines((size_t)(4 * (2 * p.T + 2)));
    p.per_thread = 16 * (p.vsz + p.msz) + p.tmp;
    return p;
}

size_t md__winograd_work_floats(const md__gemm_kernel *kn, const md__conv_shape *s, int nthreads) {
    wplan p = plan(kn, s, nthreads);
    int64_t nt = p.items < nthreads ? p.items : nthreads;
    return 16 * p.asz + (size_t)(nt > 0 ? nt : 1) * p.per_thread + SLACK;
}

/* U = G g G^T of output channel o (row of A) against input channel c,
 * written into the 16 packed A operands; rows past O are zero. */
static void transform_weight(const md__gemm_kernel *kn, const md__conv_shape *s, const float *w,
                             const md__conv_shape *flip, int64_t o, float *pa, size_t asz) {
    const int64_t C = s->C, mr = kn->mr;
    float *base = pa + (o / mr) * mr * C + o % mr;
    for (int64_t c = 0; c < C; c++) {
        float g[3][3];
        if (o >= s->O) {
            for (int xi = 0; xi < 16; xi++) base[xi * asz + c * mr] = 0.0f;
            continue;
        }
        if (flip) {   /* w[c][o][2 - i][2 - j] of flip's [flip->O = C][flip->C = O][3][3] */
            const float *k = w + (c * flip->C + o) * 9;
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) g[i][j] = k[(2 - i) * 3 + (2 - j)];
        } else {
            const float *k = w + (o * C + c) * 9;
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) g[i][j] = k[i * 3 + j];
        }
        float t[4][3], u[4][4];
        for (int j = 0; j < 3; j++) {
            t[0][j] = g[0][j];
            t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
            t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
            t[3][j] = g[2][j];
        }
        for (int a = 0; a < 4; a++) {
            u[a][0] = t[a][0];
            u[a][1] = 0.5f * (t[a][0] + t[a][1] + t[a][2]);
            u[a][2] = 0.5f * (t[a][0] - t[a][1] + t[a][2]);
            u[a][3] = t[a][2];
        }
        for (int xi = 0; xi < 16; xi++) base[xi * asz + c * mr] = u[xi / 4][xi % 4];
    }
}

/* Row r of plane xc from column c0 on, n values, zero outside the plane:
 * the plane itself where the run lies inside it, else a copy in buf. */
static const float *padded_row(const md__conv_shape *s, const float *xc, int64_t r, int64_t c0, int64_t n,
                               float *buf) {
    if (r >= 0 && r < s->H && c0 >= 0 && c0 + n <= s->W) return xc + r * s->W + c0;
    if (r < 0 || r >= s->H) {
        memset(buf, 0, sizeof(float) * (size_t)n);
        return buf;
    }
    int64_t lo = c0 < 0 ? -c0 : 0, hi = s->W - c0 < n ? s->W - c0 : n;
    if (hi < lo) hi = lo;
    if (lo > 0) memset(buf, 0, sizeof(float) * (size_t)lo);
    if (hi > lo) memcpy(buf + lo, xc + r * s->W + c0 + lo, sizeof(float) * (size_t)(hi - lo));
    if (n > hi) memset(buf + hi, 0, sizeof(float) * (size_t)(n - hi));
    return buf;
}

/* V = B^T d B for tiles [q0, q1) of four padded input rows (tile q reads
 * columns 2q .. 2q + 3), tile q into column col0 + q of dst. */
static void input_tiles(const float *r0, const float *r1, const float *r2, const float *r3, int64_t q0, int64_t q1,
                        int64_t col0, const vdst *dst) {
    for (int64_t q = q0; q < q1; q++) {
        float d[4][4], t[4][4];
        for (int j = 0; j < 4; j++) {
            d[0][j] = r0[2 * q + j];
            d[1][j] = r1[2 * q + j];
            d[2][j] = r2[2 * q + j];
            d[3][j] = r3[2 * q + j];
        }
        for (int j = 0; j < 4; j++) {
            t[0][j] = d[0][j] - d[2][j];
            t[1][j] = d[1][j] + d[2][j];
            t[2][j] = d[2][j] - d[1][j];
            t[3][j] = d[1][j] - d[3][j];
        }
        for (int a = 0; a < 4; a++) {
            *vdst_at(dst, a * 4 + 0, col0 + q) = t[a][0] - t[a][2];
            *vdst_at(dst, a * 4 + 1, col0 + q) = t[a][1] + t[a][2];
            *vdst_at(dst, a * 4 + 2, col0 + q) = t[a][2] - t[a][1];
            *vdst_at(dst, a * 4 + 3, col0 + q) = t[a][1] - t[a][3];
        }
    }
}

/* The epilogue of one output channel: y * sc + sh (mul set), else y + sh,
 * then ReLU (relu set); as the micro-kernels' store phase. */
typedef struct chan_ep { float sc, sh; int mul, relu; } chan_ep;

static inline float ep_apply(const chan_ep *e, float y) {
    y = e->mul ? y * e->sc + e->sh : y + e->sh;
    return e->relu && !(y > 0.0f) ? 0.0f : y;
}

/* Y = A^T m A, then the epilogue, for tiles [q0, q1): plane xi of tile q at
 * m[xi*z + q]; the 2x2 block goes to y0[2q], y0[2q+1], y1[2q], y1[2q+1]. */
static void output_tiles(const float *m, size_t z, int64_t q0, int64_t q1, const chan_ep *e, float *y0, float *y1) {
    for (int64_t q = q0; q < q1; q++) {
        float v[16], r[2][4];
        for (int xi = 0; xi < 16; xi++) v[xi] = m[xi * z + q];
        for (int b = 0; b < 4; b++) {
            r[0][b] = v[b] + v[4 + b] + v[8 + b];
            r[1][b] = v[4 + b] - v[8 + b] - v[12 + b];
        }
        y0[2 * q] = ep_apply(e, r[0][0] + r[0][1] + r[0][2]);
        y0[2 * q + 1] = ep_apply(e, r[0][1] - r[0][2] - r[0][3]);
        y1[2 * q] = ep_apply(e, r[1][0] + r[1][1] + r[1][2]);
        y1[2 * q + 1] = ep_apply(e, r[1][1] - r[1][2] - r[1][3]);
    }
}

#if MD_HAVE_X86
/* The same, 16 tiles at a time, the same arithmetic in the same order;
 * return how many tiles they did (a multiple of 16). */
/* 16 columns from col on into one plane of dst (split at a panel's end) */
T512 static inline void store16(const vdst *dst, int xi, int64_t col, __m512 v) {
    int64_t off = col % dst->nr, room = dst->nr - off;
    float *p = vdst_at(dst, xi, col);
    if (room >= 16) {
        _mm512_storeu_ps(p, v);
        return;
    }
    __mmask16 first = (__mmask16)((1u << room) - 1);
    _mm512_mask_storeu_ps(p, first, v);
    /* lanes room.. land at the next panel's start */
    _mm512_mask_storeu_ps(p + dst->ps - dst->nr, (__mmask16)~first, v);
}

/* V = B^T d B of the 16 tiles from q on (tile q + l reads columns
 * 2(q + l) .. 2(q + l) + 3 of the four rows; the loads masked by ma, mb at
 * 2q, 2q + 16 and ma2, mb2 at 2q + 2, 2q + 18): plane xi into v[xi]. The
 * arithmetic of input_tiles in the same order. */
T512 static inline void bdb16(const float *const rows[4], int64_t q, __mmask16 ma, __mmask16 mb, __mmask16 ma2,
                              __mmask16 mb2, __m512 v[16]) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    __m512 d[4][4], t[4][4];
    for (int i = 0; i < 4; i++) {
        const float *r = rows[i] + 2 * q;
        __m512 a = _mm512_maskz_loadu_ps(ma, r), b = _mm512_maskz_loadu_ps(mb, r + 16);
        __m512 a2 = _mm512_maskz_loadu_ps(ma2, r + 2), b2 = _mm512_maskz_loadu_ps(mb2, r + 18);
        d[i][0] = _mm512_permutex2var_ps(a, even, b);
        d[i][1] = _mm512_permutex2var_ps(a, odd, b);
        d[i][2] = _mm512_permutex2var_ps(a2, even, b2);
        d[i][3] = _mm512_permutex2var_ps(a2, odd, b2);
    }
    for (int j = 0; j < 4; j++) {
        t[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
        t[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
        t[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
        t[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
    }
    for (int a = 0; a < 4; a++) {
        v[a * 4 + 0] = _mm512_sub_ps(t[a][0], t[a][2]);
        v[a * 4 + 1] = _mm512_add_ps(t[a][1], t[a][2]);
        v[a * 4 + 2] = _mm512_sub_ps(t[a][2], t[a][1]);
        v[a * 4 + 3] = _mm512_sub_ps(t[a][1], t[a][3]);
    }
}

/* input_tiles for whole groups of 16 tiles; returns how many it did. */
T512 static int64_t input_tiles_avx512(const float *r0, const float *r1, const float *r2, const float *r3,
                                       int64_t len, int64_t col0, const vdst *dst) {
    const float *const rows[4] = { r0, r1, r2, r3 };
    int64_t q = 0;
    for (; q + 16 <= len; q += 16) {
        __m512 v[16];
        bdb16(rows, q, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, v);
        for (int xi = 0; xi < 16; xi++) store16(dst, xi, col0 + q, v[xi]);
    }
    return q;
}

T512 static inline __m512 ep_apply512(const chan_ep *e, __m512 y) {
    y = e->mul ? _mm512_fmadd_ps(y, _mm512_set1_ps(e->sc), _mm512_set1_ps(e->sh))
               : _mm512_add_ps(y, _mm512_set1_ps(e->sh));
    return e->relu ? _mm512_max_ps(y, _mm512_setzero_ps()) : y;
}

T512 static int64_t output_tiles_avx512(const float *m, size_t z, int64_t len, const chan_ep *ep, float *y0,
                                        float *y1) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    int64_t q = 0;
    for (; q + 16 <= len; q += 16) {
        __m512 v[16], r[2][4];
        for (int xi = 0; xi < 16; xi++) v[xi] = _mm512_loadu_ps(m + xi * z + q);
        for (int k = 0; k < 4; k++) {
            r[0][k] = _mm512_add_ps(_mm512_add_ps(v[k], v[4 + k]), v[8 + k]);
            r[1][k] = _mm512_sub_ps(_mm512_sub_ps(v[4 + k], v[8 + k]), v[12 + k]);
        }
        for (int i = 0; i < 2; i++) {
            __m512 e = ep_apply512(ep, _mm512_add_ps(_mm512_add_ps(r[i][0], r[i][1]), r[i][2]));
            __m512 o = ep_apply512(ep, _mm512_sub_ps(_mm512_sub_ps(r[i][1], r[i][2]), r[i][3]));
            float *y = i ? y1 : y0;
            _mm512_storeu_ps(y + 2 * q, _mm512_permutex2var_ps(e, lo, o));
            _mm512_storeu_ps(y + 2 * q + 16, _mm512_permutex2var_ps(e, hi, o));
        }
    }
    return q;
}

/* transform_weight for the rows of A panel `panel` (mr <= 16 output
 * channels, gathered into lanes; lanes past O stay zero), every input
 * channel. */
T512 static void weight_panel_avx512(const md__gemm_kernel *kn, const md__conv_shape *s, const float *w,
                                     const md__conv_shape *flip, int64_t panel, float *pa, size_t asz) {
    const int64_t C = s->C, mr = kn->mr, o0 = panel * mr;
    const int rows = (int)(s->O - o0 < mr ? s->O - o0 : mr);
    const __mmask16 live = (__mmask16)((1u << rows) - 1), lanes = (__mmask16)((1u << mr) - 1);
    /* lane r reads output channel o0 + r: w[o][c] is 9*C floats after w[o - 1][c], or 9 in flip's layout */
    const int step = flip ? 9 : (int)(9 * C);
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(step));
    const __m512 half = _mm512_set1_ps(0.5f), zero = _mm512_setzero_ps();
    float *dst = pa + o0 * C;
    for (int64_t c = 0; c < C; c++) {
        const float *k = flip ? w + (c * flip->C + o0) * 9 : w + (o0 * C + c) * 9;
        __m512 g[3][3], t[4][3];
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                int tap = flip ? (2 - i) * 3 + (2 - j) : i * 3 + j;
                g[i][j] = _mm512_mask_i32gather_ps(zero, live, idx, k + tap, 4);
            }
        for (int j = 0; j < 3; j++) {
            t[0][j] = g[0][j];
            t[1][j] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(g[0][j], g[1][j]), g[2][j]));
            t[2][j] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(g[0][j], g[1][j]), g[2][j]));
            t[3][j] = g[2][j];
        }
        for (int a = 0; a < 4; a++) {
            __m512 u[4] = { t[a][0],
                            _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(t[a][0], t[a][1]), t[a][2])),
                            _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(t[a][0], t[a][1]), t[a][2])),
                            t[a][2] };
            for (int b = 0; b < 4; b++) _mm512_mask_storeu_ps(dst + (a * 4 + b) * asz + c * mr, lanes, u[b]);
        }
    }
}
#else
static int64_t input_tiles_avx512(const float *r0, const float *r1, const float *r2, const float *r3, int64_t len,
                                  int64_t col0, const vdst *dst) {
    (void)r0, (void)r1, (void)r2, (void)r3, (void)len, (void)col0, (void)dst;
    return 0;
}
static int64_t output_tiles_avx512(const float *m, size_t z, int64_t len, const chan_ep *ep, float *y0,
                                   float *y1) {
    (void)m, (void)z, (void)len, (void)ep, (void)y0, (void)y1;
    return 0;
}
static void weight_panel_avx512(const md__gemm_kernel *kn, const md__conv_shape *s, const float *w,
                                const md__conv_shape *flip, int64_t panel, float *pa, size_t asz) {
    (void)kn, (void)s, (void)w, (void)flip, (void)panel, (void)pa, (void)asz;
}
#endif

/* V = B^T d B of tiles [t0, t1) of image xn, every channel, into the 16 B
 * operands (column t - t0, depth c). */
static void transform_input(const md__gemm_kernel *kn, const md__conv_shape *s, const wplan *p, const float *xn,
                            int64_t t0, int64_t t1, float *pb, float *tmp) {
    const int64_t C = s->C, HW = s->H * s->W, nr = kn->nr, ps = md__pb_stride(kn, C);
    const int avx512 = kn->id == MD_CONVK_AVX512;
    for (int64_t ta = t0; ta < t1;) {
        int64_t ty = ta / p->tw, tx = ta % p->tw;
        int64_t len = p->tw - tx < t1 - ta ? p->tw - tx : t1 - ta, rl = 2 * len + 2, col0 = ta - t0;
        for (int64_t c = 0; c < C; c++) {
            const float *xc = xn + c * HW;
            int64_t rb = 2 * ty - s->ph, cb = 2 * tx - s->pw;
            const float *r0 = padded_row(s, xc, rb, cb, rl, tmp), *r1 = padded_row(s, xc, rb + 1, cb, rl, tmp + rl);
            const float *r2 = padded_row(s, xc, rb + 2, cb, rl, tmp + 2 * rl);
            const float *r3 = padded_row(s, xc, rb + 3, cb, rl, tmp + 3 * rl);
            const vdst dst = { pb + c * nr, p->vsz, ps, nr };
            int64_t q = avx512 ? input_tiles_avx512(r0, r1, r2, r3, len, col0, &dst) : 0;
            input_tiles(r0, r1, r2, r3, q, len, col0, &dst);
        }
        ta += len;
    }
}

/* y[o] for o in [m0, m1) over tiles [t0, t1) from the 16 GEMM products
 * (row o - m0 of product xi at mb + xi*msz + (o - m0)*T), plus bias. */
static void transform_output(const md__gemm_kernel *kn, const md__conv_shape *s, const wplan *p, float *yn, int64_t t0, int64_t t1, int64_t m0,
                             int64_t m1, const float *mb, const md__epilogue *ep, float *tmp) {
    const int64_t OHW = s->OH * s->OW;
    const int avx512 = kn->id == MD_CONVK_AVX512;
    for (int64_t ta = t0; ta < t1;) {
        int64_t ty = ta / p->tw, tx = ta % p->tw;
        int64_t len = p->tw - tx < t1 - ta ? p->tw - tx : t1 - ta, col0 = ta - t0;
        int64_t oy = 2 * ty, ox = 2 * tx, ncols = 2 * len < s->OW - ox ? 2 * len : s->OW - ox;
        /* whole 2x2 blocks are written in place; a block cut by the map's edge goes through tmp */
        const int direct = ncols == 2 * len && oy + 1 < s->OH;
        for (int64_t o = m0; o < m1; o++) {
            const float *m = mb + (o - m0) * p->T + col0;
            const size_t z = p->msz;
            const chan_ep e = { ep && ep->scale ? ep->scale[o] : 1.0f, ep && ep->shift ? ep->shift[o] : 0.0f,
                                ep && ep->scale, ep && ep->relu };
            float *dst = yn + o * OHW + oy * s->OW + ox;
            float *y0 = direct ? dst : tmp, *y1 = direct ? dst + s->OW : tmp + 2 * len;
            int64_t q = avx512 ? output_tiles_avx512(m, z, len, &e, y0, y1) : 0;
            output_tiles(m, z, q, len, &e, y0, y1);
            if (direct) continue;
            memcpy(dst, y0, sizeof(float) * (size_t)ncols);
            if (oy + 1 < s->OH) memcpy(dst + s->OW, y1, sizeof(float) * (size_t)ncols);
        }
        ta += len;
    }
}

void md__winograd_forward(const md__gemm_kernel *kn, const md__conv_shape *s, const float *x, const float *w,
                          const md__conv_shape *flip, const md__epilogue *ep, float *y, float *work, int nthreads) {
    const wplan p = plan(kn, s, nthreads);
    if (p.items <= 0) return;
    const int64_t mr = kn->mr, HW = s->H * s->W, OHW = s->OH * s->OW;
    int nt = p.items < nthreads ? (int)p.items : nthreads;
    float *pa = align64(work), *bufs = pa + 16 * p.asz;
    #pragma omp parallel num_threads(nt)
    {
        if (kn->id == MD_CONVK_AVX512 && mr <= 16) {
            #pragma omp for schedule(static)
            for (int64_t i = 0; i < p.mp; i++) weight_panel_avx512(kn, s, w, flip, i, pa, p.asz);
        } else {
            #pragma omp for schedule(static)
            for (int64_t o = 0; o < p.mp * mr; o++) transform_weight(kn, s, w, flip, o, pa, p.asz);
        }
        float *pb = bufs + (size_t)omp_get_thread_num() * p.per_thread, *mb = pb + 16 * p.vsz;
        float *tmp = mb + 16 * p.msz;
        #pragma omp for schedule(static)
        for (int64_t it = 0; it < p.items; it++) {
            int64_t os = it % p.osplit, rest = it / p.osplit, tb = rest % p.tblocks, n = rest / p.tblocks;
            int64_t t0 = tb * p.T, t1 = t0 + p.T < p.tiles ? t0 + p.T : p.tiles;
            int64_t b0 = os * p.obper, b1 = b0 + p.obper < p.oblocks ? b0 + p.obper : p.oblocks;
            if (b0 >= b1) continue;
            transform_input(kn, s, &p, x + n * s->C * HW, t0, t1, pb, tmp);
            for (int64_t bk = b0; bk < b1; bk++) {
                int64_t p0 = bk * p.ob, m0 = p0 * mr, m1 = (p0 + p.ob) * mr < s->O ? (p0 + p.ob) * mr : s->O;
                for (int xi = 0; xi < 16; xi++)
                    md__gemm_packed(kn, m1 - m0, t1 - t0, s->C, pa + xi * p.asz + p0 * mr * s->C, s->C,
                                    pb + xi * p.vsz, mb + xi * p.msz, p.T, 0);
                transform_output(kn, s, &p, y + n * s->O * OHW, t0, t1, m0, m1, mb, ep, tmp);
            }
        }
    }
}

/* ---- the weight gradient ----
 * With U = G g G^T and V = B^T d B the forward's transforms and
 * M = sum_c U .* V, Y = A^T M A gives dL/dM = A dY A^T (4x4 from the 2x2
 * block dY of gy), so dL/dU[o][c] = sum over tiles (A dY_o A^T) .* V_c and
 * gw[o][c] = G^T (dL/dU[o][c]) G. Element xi of the sum over tiles is a
 * GEMM Uhat_xi [O, C] = Ghat_xi [O, tiles] . V_xi [tiles, C].
 *
 * Work units are blocks of gw (output channels x input channels). A unit
 * runs over chunks of tiles (all images, in order): one A (B) panel's
 * channels at a time, it transforms their gy blocks (x tiles) of the
 * chunk into plane-major rows in a small buffer that stays in L2 and packs
 * them into the 16 GEMMs' A (B) panels with the packers' AVX-512
 * transposes (on AVX-512 the gy blocks are gathered, a panel's channels
 * in lanes, straight into the A panels); then it accumulates the 16
 * products into
 * its own [16][mc][nc] buffer; then G^T . G writes its block of gw. Every
 * element of gw is summed over the same chunks in the same order, and the
 * chunk length depends on the shape only, so the bits do not depend on
 * the thread count. */
/* Blocks of gw are wide so that each transform is repeated for few
 * blocks (x's once per block of output channels, gy's once per block of
 * input channels); the unit's accumulators are then 16 x mc x nc floats
 * (up to 15 MB, in L3), so the chunk of tiles -- the GEMMs' depth -- is
 * long enough (>= 128) to amortise their loads and stores. Measured on the
 * ResNet 3x3 shapes against 224 x 256 blocks and chunks of 16 to 256 tiles
 * sized to keep the packed chunk in L2: shorter chunks lost up to 25% at
 * 512 channels, and 48 tiles won under 10% at 64 channels. */
#define WG_MC 448             /* gw block: output channels, at most (32 AVX-512 A panels) */
#define WG_NC 512             /* and input channels */
#define WG_FLOATS ((int64_t)128 * 1024)   /* packed A + B chunk budget (512 KB) for narrow blocks */
#define WG_TMIN 128
#define WG_TMAX 256

typedef struct gplan {
    int64_t tw, tpi, tiles, T, nchunks, mc, nc, mblk, nblk, units, ldt;
    size_t tr, pa, pb, acc, tmp, per_thread;
} gplan;

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

static gplan plan_weight_grad(const md__gemm_kernel *kn, const md__conv_shape *s, int nthreads) {
    gplan p = { 0 };
    const int64_t mr = kn->mr, nr = kn->nr;
    p.tw = (s->OW + 1) / 2;
    p.tpi = (s->OH + 1) / 2 * p.tw;
    p.tiles = s->N * p.tpi;
    /* the chunk from the shape alone (not from the thread-dependent blocks) */
    int64_t mcap = s->O < WG_MC ? s->O : WG_MC, ncap = s->C < WG_NC ? s->C : WG_NC;
    int64_t t = WG_FLOATS / (16 * (round_up(mcap, mr) + round_up(ncap, nr))) / 16 * 16;
    if (t < WG_TMIN) t = WG_TMIN;
    if (t > WG_TMAX) t = WG_TMAX;
    if (t > p.tiles) t = p.tiles;
    p.T = t > 0 ? t : 1;
    p.nchunks = (p.tiles + p.T - 1) / p.T;
    p.mblk = (s->O + WG_MC - 1) / WG_MC;
    p.nblk = (s->C + WG_NC - 1) / WG_NC;
    if (p.mblk < 1) p.mblk = 1;
    if (p.nblk < 1) p.nblk = 1;
    /* idle threads: split the side with more register blocks per block further */
    const int64_t mm = (s->O + mr - 1) / mr, nn = (s->C + nr - 1) / nr;
    if (p.mblk > mm) p.mblk = mm;
    if (p.nblk > nn) p.nblk = nn;
    while (p.mblk * p.nblk < nthreads) {
        int64_t pm = (mm + p.mblk - 1) / p.mblk, pn = (nn + p.nblk - 1) / p.nblk;
        if (pm >= pn && pm > 1) p.mblk++;
        else if (pn > 1) p.nblk++;
        else break;
    }
    p.mc = (mm + p.mblk - 1) / p.mblk * mr;
    p.nc = (nn + p.nblk - 1) / p.nblk * nr;
    p.mblk = (s->O + p.mc - 1) / p.mc;
    p.nblk = (s->C + p.nc - 1) / p.nc;
    p.units = p.mblk * p.nblk;
    p.ldt = round_up(p.T, 16);
    /* planes one cache line past a whole number of lines, so that the 16
     * streams a transform writes at once do not all map to one L1 set; tr:
     * one plane of the transformed rows of one A or B panel's channels */
    p.tr = lines((size_t)((mr > nr ? mr : nr) * p.ldt)) + 16;
    p.pa = lines(md__pack_a_floats(kn, p.mc, p.T)) + 16;
    p.pb = lines(md__pack_b_floats(kn, p.nc, p.T)) + 16;
    p.acc = lines((size_t)(p.mc * p.nc)) + 16;
    p.tmp = lines((size_t)(4 * (2 * p.T + 2)));
    p.per_thread = 16 * (p.tr + p.pa + p.pb + p.acc) + p.tmp + SLACK;
    return p;
}

size_t md__winograd_weight_work_floats(const md__gemm_kernel *kn, const md__conv_shape *s, int nthreads) {
    gplan p = plan_weight_grad(kn, s, nthreads);
    int64_t nt = p.units < nthreads ? p.units : nthreads;
    return (size_t)(nt > 0 ? nt : 1) * p.per_thread;
}

/* W = A dY A^T of tiles [q0, q1) of two gy rows (tile q reads columns 2q,
 * 2q + 1), tile q into column col0 + q of plane xi of dst (planes `plane`
 * floats apart). */
static void grad_tiles(const float *g0, const float *g1, int64_t q0, int64_t q1, int64_t col0, float *dst,
                       size_t plane) {
    for (int64_t q = q0; q < q1; q++) {
        float t[4][2];
        for (int j = 0; j < 2; j++) {
            float a = g0[2 * q + j], b = g1[2 * q + j];
            t[0][j] = a;
            t[1][j] = a + b;
            t[2][j] = a - b;
            t[3][j] = -b;
        }
        float *d = dst + col0 + q;
        for (int a = 0; a < 4; a++) {
            d[(a * 4 + 0) * plane] = t[a][0];
            d[(a * 4 + 1) * plane] = t[a][0] + t[a][1];
            d[(a * 4 + 2) * plane] = t[a][0] - t[a][1];
            d[(a * 4 + 3) * plane] = -t[a][1];
        }
    }
}

/* V = B^T d B of tiles [0, len) of four input rows (tile q reads columns
 * 2q .. 2q + 3) into column col0 + q of plane xi of dst (planes `plane`
 * floats apart): input_tiles with plain rows. */
static void xform_tiles(const float *r0, const float *r1, const float *r2, const float *r3, int64_t len,
                        int64_t col0, float *dst, size_t plane) {
    const vdst vd = { dst, plane, 0, (int64_t)1 << 40 };   /* one "panel" wider than any row */
    input_tiles(r0, r1, r2, r3, 0, len, col0, &vd);
}

#if MD_HAVE_X86
/* Lanes [0, n) set, n clamped to [0, 16]. */
static inline __mmask16 lanes_upto(int64_t n) {
    return n <= 0 ? 0 : n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

/* grad_tiles for tiles [0, len), 16 at a time, the last group masked (the
 * rows are read at [0, 2 len) only). */
T512 static void grad_tiles_avx512(const float *g0, const float *g1, int64_t len, int64_t col0, float *dst,
                                   size_t plane) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t q = 0; q < len; q += 16) {
        const int64_t n = 2 * (len - q);   /* readable floats from 2q on */
        const __mmask16 m0 = lanes_upto(n), m1 = lanes_upto(n - 16), st = lanes_upto(len - q);
        __m512 a0 = _mm512_maskz_loadu_ps(m0, g0 + 2 * q), a1 = _mm512_maskz_loadu_ps(m1, g0 + 2 * q + 16);
        __m512 b0 = _mm512_maskz_loadu_ps(m0, g1 + 2 * q), b1 = _mm512_maskz_loadu_ps(m1, g1 + 2 * q + 16);
        __m512 t[4][2];
        for (int j = 0; j < 2; j++) {
            __m512 a = _mm512_permutex2var_ps(a0, j ? odd : even, a1), b = _mm512_permutex2var_ps(b0, j ? odd : even, b1);
            t[0][j] = a;
            t[1][j] = _mm512_add_ps(a, b);
            t[2][j] = _mm512_sub_ps(a, b);
            t[3][j] = _mm512_sub_ps(zero, b);
        }
        float *d = dst + col0 + q;
        for (int a = 0; a < 4; a++) {
            _mm512_mask_storeu_ps(d + (a * 4 + 0) * plane, st, t[a][0]);
            _mm512_mask_storeu_ps(d + (a * 4 + 1) * plane, st, _mm512_add_ps(t[a][0], t[a][1]));
            _mm512_mask_storeu_ps(d + (a * 4 + 2) * plane, st, _mm512_sub_ps(t[a][0], t[a][1]));
            _mm512_mask_storeu_ps(d + (a * 4 + 3) * plane, st, _mm512_sub_ps(zero, t[a][1]));
        }
    }
}

/* xform_tiles, 16 tiles at a time, the last group masked (rows read at
 * [0, 2 len + 2) only); the arithmetic of input_tiles in the same order. */
T512 static void xform_tiles_avx512(const float *r0, const float *r1, const float *r2, const float *r3, int64_t len,
                                    int64_t col0, float *dst, size_t plane) {
    const float *const rows[4] = { r0, r1, r2, r3 };
    for (int64_t q = 0; q < len; q += 16) {
        const int64_t n = 2 * (len - q) + 2;
        const __mmask16 st = lanes_upto(len - q);
        __m512 v[16];
        bdb16(rows, q, lanes_upto(n), lanes_upto(n - 16), lanes_upto(n - 2), lanes_upto(n - 18), v);
        for (int xi = 0; xi < 16; xi++) _mm512_mask_storeu_ps(dst + col0 + q + xi * plane, st, v[xi]);
    }
}
/* A dY A^T of global tiles [t0, t1) for the output channels [o0, o0 + rows)
 * of one A panel (rows <= mr = 14), written straight into the panel of each
 * plane: lanes are channels (gathered OH*OW apart), so tile k's 16 values
 * are 16 rows of mr floats (lanes past `rows` zero, the panel's padding).
 * The arithmetic of grad_tiles, element for element. */
T512 static void grad_panel_avx512(const md__conv_shape *s, const gplan *p, const float *gy, int64_t o0, int rows,
                                   int64_t mr, int64_t t0, int64_t t1, float *pa, size_t plane) {
    const int64_t OW = s->OW, OH = s->OH, OHW = OH * OW;
    const __mmask16 live = lanes_upto(rows), st = lanes_upto(mr);
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int)OHW));
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t t = t0; t < t1; t++) {
        int64_t n = t / p->tpi, tl = t % p->tpi, oy = 2 * (tl / p->tw), ox = 2 * (tl % p->tw);
        const float *b = gy + (n * s->O + o0) * OHW + oy * OW + ox;
        const int right = ox + 1 < OW, down = oy + 1 < OH;
        __m512 g00 = _mm512_mask_i32gather_ps(zero, live, idx, b, 4);
        __m512 g01 = right ? _mm512_mask_i32gather_ps(zero, live, idx, b + 1, 4) : zero;
        __m512 g10 = down ? _mm512_mask_i32gather_ps(zero, live, idx, b + OW, 4) : zero;
        __m512 g11 = right && down ? _mm512_mask_i32gather_ps(zero, live, idx, b + OW + 1, 4) : zero;
        __m512 tt[4][2] = { { g00, g01 },
                            { _mm512_add_ps(g00, g10), _mm512_add_ps(g01, g11) },
                            { _mm512_sub_ps(g00, g10), _mm512_sub_ps(g01, g11) },
                            { _mm512_sub_ps(zero, g10), _mm512_sub_ps(zero, g11) } };
        float *d = pa + (t - t0) * mr;
        for (int a = 0; a < 4; a++) {
            _mm512_mask_storeu_ps(d + (a * 4 + 0) * plane, st, tt[a][0]);
            _mm512_mask_storeu_ps(d + (a * 4 + 1) * plane, st, _mm512_add_ps(tt[a][0], tt[a][1]));
            _mm512_mask_storeu_ps(d + (a * 4 + 2) * plane, st, _mm512_sub_ps(tt[a][0], tt[a][1]));
            _mm512_mask_storeu_ps(d + (a * 4 + 3) * plane, st, _mm512_sub_ps(zero, tt[a][1]));
        }
    }
}
#else
static void grad_tiles_avx512(const float *g0, const float *g1, int64_t len, int64_t col0, float *dst,
                              size_t plane) {
    grad_tiles(g0, g1, 0, len, col0, dst, plane);
}
static void grad_panel_avx512(const md__conv_shape *s, const gplan *p, const float *gy, int64_t o0, int rows,
                              int64_t mr, int64_t t0, int64_t t1, float *pa, size_t plane) {
    (void)s, (void)p, (void)gy, (void)o0, (void)rows, (void)mr, (void)t0, (void)t1, (void)pa, (void)plane;
}
static void xform_tiles_avx512(const float *r0, const float *r1, const float *r2, const float *r3, int64_t len,
                               int64_t col0, float *dst, size_t plane) {
    xform_tiles(r0, r1, r2, r3, len, col0, dst, plane);
}
#endif

/* Input transforms of tiles [q0, q1) of a run whose tile q reads rows
 * rr[0..3] (NULL: outside the map) from column cb + 2q on. Tiles wholly
 * inside the rows read the input in place; the few at the map's edges go
 * through padded copies in buf. */
static void xform_run(const md__conv_shape *s, const float *xc, const int64_t rr[4], int64_t cb, int64_t len,
                      int64_t col0, float *dst, size_t plane, int avx512, float *buf) {
    int inside = 1;
    for (int i = 0; i < 4; i++) inside &= rr[i] >= 0 && rr[i] < s->H;
    int64_t qa = len, qb = len;
    if (inside && s->W >= 4) {   /* tile q is inside when 0 <= cb + 2q and cb + 2q + 3 < W */
        qa = cb < 0 ? (-cb + 1) / 2 : 0;
        qb = (s->W - 4 - cb) / 2 + 1;
        if (qb > len) qb = len;
        if (qa > qb) qa = qb = len;
    }
    /* [qa, qb) in place, [0, qa) and [qb, len) through copies */
    const int64_t spans[3][2] = { { 0, qa }, { qa, qb }, { qb, len } };
    for (int k = 0; k < 3; k++) {
        int64_t a = spans[k][0], n = spans[k][1] - a, rl = 2 * n + 2;
        if (n <= 0) continue;
        const float *r[4];
        for (int i = 0; i < 4; i++)
            r[i] = k == 1 ? xc + rr[i] * s->W + cb + 2 * a : padded_row(s, xc, rr[i], cb + 2 * a, rl, buf + i * rl);
        if (avx512) xform_tiles_avx512(r[0], r[1], r[2], r[3], n, col0 + a, dst, plane);
        else xform_tiles(r[0], r[1], r[2], r[3], n, col0 + a, dst, plane);
    }
}

/* Global tiles [t0, t1) (image-major) of channels [c0, c1) of `src` (x with
 * the input transform, or gy with A . A^T), channel c's tile t into row
 * c - c0, column t - t0 of each of the 16 planes of dst (rows ld floats
 * apart, planes `plane` floats apart). */
static void chunk_rows(const md__gemm_kernel *kn, const md__conv_shape *s, const gplan *p, int grad,
                       const float *src, int64_t c0, int64_t c1, int64_t t0, int64_t t1, float *dst, size_t plane,
                       int64_t ld, float *tmp) {
    const int avx512 = kn->id == MD_CONVK_AVX512;
    /* gy's planes as a shape for padded_row */
    const md__conv_shape gs = { .H = s->OH, .W = s->OW };
    const int64_t CH = grad ? s->O : s->C, HW = grad ? s->OH * s->OW : s->H * s->W;
    for (int64_t ta = t0; ta < t1;) {
        int64_t n = ta / p->tpi, tl = ta % p->tpi, ty = tl / p->tw, tx = tl % p->tw;
        int64_t len = p->tw - tx < t1 - ta ? p->tw - tx : t1 - ta, col0 = ta - t0;
        const float *sn = src + n * CH * HW;
        for (int64_t c = c0; c < c1; c++) {
            const float *pc = sn + c * HW;
            float *d = dst + (c - c0) * ld;
            if (grad) {
                int64_t rl = 2 * len;
                const float *g0 = padded_row(&gs, pc, 2 * ty, 2 * tx, rl, tmp);
                const float *g1 = padded_row(&gs, pc, 2 * ty + 1, 2 * tx, rl, tmp + rl);
                if (avx512) grad_tiles_avx512(g0, g1, len, col0, d, plane);
                else grad_tiles(g0, g1, 0, len, col0, d, plane);
            } else {
                const int64_t rb = 2 * ty - s->ph, rr[4] = { rb, rb + 1, rb + 2, rb + 3 };
                xform_run(s, pc, rr, 2 * tx - s->pw, len, col0, d, plane, avx512, tmp);
            }
        }
        ta += len;
    }
}

/* gw[o][c] = G^T m G for channels [c0, c1) of output channel o: m[xi] at
 * acc[xi*z + c - c0]. */
static void grad_output_row(const float *acc, size_t z, int64_t c0, int64_t c1, float *g) {
    for (int64_t c = c0; c < c1; c++) {
        const float *m = acc + (c - c0);
        float t[3][4];
        for (int b = 0; b < 4; b++) {
            float m0b = m[b * z], m1b = m[(4 + b) * z], m2b = m[(8 + b) * z], m3b = m[(12 + b) * z];
            t[0][b] = m0b + 0.5f * (m1b + m2b);
            t[1][b] = 0.5f * (m1b - m2b);
            t[2][b] = 0.5f * (m1b + m2b) + m3b;
        }
        float *gc = g + (c - c0) * 9;
        for (int i = 0; i < 3; i++) {
            gc[i * 3 + 0] = t[i][0] + 0.5f * (t[i][1] + t[i][2]);
            gc[i * 3 + 1] = 0.5f * (t[i][1] - t[i][2]);
            gc[i * 3 + 2] = 0.5f * (t[i][1] + t[i][2]) + t[i][3];
        }
    }
}

#if MD_HAVE_X86
/* The same, 16 input channels at a time, the last group masked, the 3x3
 * results scattered 9 floats apart. Every channel takes this path on
 * AVX-512 whatever the block it falls in, so the bits do not depend on the
 * blocking (the compiler may fuse its multiply-adds, not the scalar
 * version's). */
T512 static void grad_output_row_avx512(const float *acc, size_t z, int64_t n, float *g) {
    const __m512 half = _mm512_set1_ps(0.5f);
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(9));
    for (int64_t c = 0; c < n; c += 16) {
        const __mmask16 k = lanes_upto(n - c);
        const float *m = acc + c;
        __m512 t[3][4];
        for (int b = 0; b < 4; b++) {
            __m512 m0b = _mm512_maskz_loadu_ps(k, m + b * z), m1b = _mm512_maskz_loadu_ps(k, m + (4 + b) * z);
            __m512 m2b = _mm512_maskz_loadu_ps(k, m + (8 + b) * z), m3b = _mm512_maskz_loadu_ps(k, m + (12 + b) * z);
            __m512 sum = _mm512_mul_ps(half, _mm512_add_ps(m1b, m2b));
            t[0][b] = _mm512_add_ps(m0b, sum);
            t[1][b] = _mm512_mul_ps(half, _mm512_sub_ps(m1b, m2b));
            t[2][b] = _mm512_add_ps(sum, m3b);
        }
        float *gc = g + c * 9;
        for (int i = 0; i < 3; i++) {
            __m512 sum = _mm512_mul_ps(half, _mm512_add_ps(t[i][1], t[i][2]));
            _mm512_mask_i32scatter_ps(gc + i * 3 + 0, k, idx, _mm512_add_ps(t[i][0], sum), 4);
            _mm512_mask_i32scatter_ps(gc + i * 3 + 1, k, idx, _mm512_mul_ps(half, _mm512_sub_ps(t[i][1], t[i][2])), 4);
            _mm512_mask_i32scatter_ps(gc + i * 3 + 2, k, idx, _mm512_add_ps(sum, t[i][3]), 4);
        }
    }
}
#else
static void grad_output_row_avx512(const float *acc, size_t z, int64_t n, float *g) {
    grad_output_row(acc, z, 0, n, g);
}
#endif

/* The unit's block of gw: rows o in [m0, m1), channels [r0, r1), m[xi] of
 * (o, c) at acc[xi*z + (o - m0)*ld + c - r0]. */
static void grad_output(const md__gemm_kernel *kn, const md__conv_shape *s, const float *acc, size_t z, int64_t ld,
                        int64_t m0, int64_t m1, int64_t r0, int64_t r1, float *gw) {
    for (int64_t o = m0; o < m1; o++) {
        const float *a = acc + (o - m0) * ld;
        float *g = gw + (o * s->C + r0) * 9;
        if (kn->id == MD_CONVK_AVX512) grad_output_row_avx512(a, z, r1 - r0, g);
        else grad_output_row(a, z, r0, r1, g);
    }
}

void md__winograd_backward_weight(const md__gemm_kernel *kn, const md__conv_shape *s, const float *x,
                                  const float *gy, float *gw, float *work, int nthreads) {
    const gplan p = plan_weight_grad(kn, s, nthreads);
    const int64_t wn = s->O * s->C * 9, mr = kn->mr, nr = kn->nr;
    if (wn <= 0) return;
    if (p.tiles <= 0) {
        memset(gw, 0, sizeof(float) * (size_t)wn);
        return;
    }
    int nt = p.units < nthreads ? (int)p.units : nthreads;
    /* the gathered gy transform: AVX-512 panels of at most 16 rows, offsets in 32 bits */
    const int gather = kn->id == MD_CONVK_AVX512 && mr <= 16 && s->OH * s->OW * 16 < ((int64_t)1 << 31);
    #pragma omp parallel num_threads(nt)
    {
        float *tr = align64(work + (size_t)omp_get_thread_num() * p.per_thread);
        float *pa = tr + 16 * p.tr, *pb = pa + 16 * p.pa, *acc = pb + 16 * p.pb, *tmp = acc + 16 * p.acc;
        #pragma omp for schedule(static)
        for (int64_t u = 0; u < p.units; u++) {
            int64_t m0 = u / p.nblk * p.mc, m1 = m0 + p.mc < s->O ? m0 + p.mc : s->O;
            int64_t r0 = u % p.nblk * p.nc, r1 = r0 + p.nc < s->C ? r0 + p.nc : s->C;
            for (int64_t ch = 0; ch < p.nchunks; ch++) {
                int64_t t0 = ch * p.T, t1 = t0 + p.T < p.tiles ? t0 + p.T : p.tiles, K = t1 - t0;
                /* one panel's channels at a time: transformed into tr (in L2), then packed */
                for (int64_t g = m0; g < m1; g += mr) {   /* A[o][k] = W_xi of gy */
                    int64_t rows = m1 - g < mr ? m1 - g : mr;
                    if (gather) {   /* straight into the panels */
                        grad_panel_avx512(s, &p, gy, g, (int)rows, mr, t0, t1, pa + (g - m0) * K, p.pa);
                        continue;
                    }
                    chunk_rows(kn, s, &p, 1, gy, g, g + rows, t0, t1, tr, p.tr, p.ldt, tmp);
                    for (int xi = 0; xi < 16; xi++)
                        md__pack_a(kn, tr + xi * p.tr, p.ldt, 1, rows, K, 0, 1, pa + xi * p.pa + (g - m0) * K);
                }
                for (int64_t g = r0; g < r1; g += nr) {   /* B[k][c] = V_xi of x */
                    int64_t cols = r1 - g < nr ? r1 - g : nr;
                    chunk_rows(kn, s, &p, 0, x, g, g + cols, t0, t1, tr, p.tr, p.ldt, tmp);
                    for (int xi = 0; xi < 16; xi++)
                        md__pack_b(kn, tr + xi * p.tr, 1, p.ldt, K, cols, pb + xi * p.pb + (g - r0) / nr * md__pb_stride(kn, K));
                }
                for (int xi = 0; xi < 16; xi++) {
                    md__gemm_packed(kn, m1 - m0, r1 - r0, K, pa + xi * p.pa, K, pb + xi * p.pb, acc + xi * p.acc,
                                    p.nc, ch > 0);
                }
            }
            grad_output(kn, s, acc, p.acc, p.nc, m0, m1, r0, r1, gw);
        }
    }
}
