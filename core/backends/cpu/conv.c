/* CPU 2-D convolution: im2col + GEMM over column tiles.
 *
 * The GEMM of group g of image n is y[Og, OHW] = w_g[Og, Kg] col[Kg, OHW]
 * with Kg = C/G*KH*KW. Instead of materialising the whole col matrix, each
 * work item builds a [Kg, T] column tile (T output pixels) in a per-thread
 * buffer that stays in cache, and calls single-threaded sgemm on it; items
 * are spread over OpenMP threads. 1x1 stride-1 unpadded convolutions use the
 * input itself as the col matrix. Every output element is written by one
 * item, and the weight-gradient partials are summed in thread order, so
 * results are reproducible for a fixed thread count.
 */
#include <omp.h>
#include <string.h>
#include "backends/cpu/conv.h"
#include "backends/cpu/gemm.h"

/* Column-tile budget: Kg*T floats per thread (~1 MB, an L2's worth). */
#define TILE_FLOATS ((int64_t)256 * 1024)
#define TILE_MIN 128
#define TILE_MAX 4096

static int64_t kg_of(const md__conv_shape *s) { return s->C / s->G * s->KH * s->KW; }

static int is_pointwise(const md__conv_shape *s) {
    return s->KH == 1 && s->KW == 1 && s->sh == 1 && s->sw == 1 && s->ph == 0 && s->pw == 0;
}

static int64_t tile_cols(const md__conv_shape *s) {
    int64_t ohw = s->OH * s->OW, kg = kg_of(s);
    int64_t t = kg > 0 ? TILE_FLOATS / kg : TILE_MAX;
    t = t / 16 * 16;
    if (t < TILE_MIN) t = TILE_MIN;
    if (t > TILE_MAX) t = TILE_MAX;
    if (t > ohw) t = ohw;
    return t > 0 ? t : 1;
}

/* Channel blocks for the input gradient: enough items to feed every thread. */
static int64_t channel_blocks(const md__conv_shape *s, int nthreads) {
    int64_t ng = s->N * s->G, cg = s->C / s->G;
    if (ng <= 0 || ng >= nthreads) return 1;
    int64_t cb = (nthreads + ng - 1) / ng;
    return cb < cg ? cb : (cg > 0 ? cg : 1);
}

/* A stride-1 convolution's input gradient is itself a stride-1 convolution:
 * of gy, with the weight flipped in space and its in/out channels swapped,
 * and padding d*(K-1)-p. That runs through the forward kernel (im2col copies
 * + GEMM) instead of GEMM + col2im scatter-adds. */
static int transposed_shape(const md__conv_shape *s, md__conv_shape *t) {
    if (s->sh != 1 || s->sw != 1 || is_pointwise(s)) return 0;
    int64_t ph = s->dh * (s->KH - 1) - s->ph, pw = s->dw * (s->KW - 1) - s->pw;
    if (ph < 0 || pw < 0) return 0;
    *t = (md__conv_shape){ .N = s->N, .C = s->O, .H = s->OH, .W = s->OW, .O = s->C, .KH = s->KH, .KW = s->KW,
                           .OH = s->H, .OW = s->W, .sh = 1, .sw = 1, .ph = ph, .pw = pw, .dh = s->dh,
                           .dw = s->dw, .G = s->G };
    return 1;
}

size_t md__conv2d_work_floats(const md__conv_shape *s, int which, int nthreads) {
    int64_t t = tile_cols(s), kg = kg_of(s);
    switch (which) {
    case MD_CONV_FWD:
        return is_pointwise(s) ? 0 : (size_t)(nthreads * kg * t);
    case MD_CONV_BWD_INPUT: {
        if (is_pointwise(s)) return 0;
        md__conv_shape ts;
        if (transposed_shape(s, &ts))   /* the flipped weight, then the forward's tiles */
            return (size_t)(s->O * kg_of(s)) + md__conv2d_work_floats(&ts, MD_CONV_FWD, nthreads);
        int64_t cg = s->C / s->G, cb = channel_blocks(s, nthreads);
        int64_t rows = (cg + cb - 1) / cb * s->KH * s->KW;
        return (size_t)(nthreads * rows * t);
    }
    default: {   /* weight: col tiles plus per-thread partial gradients (thread 0 uses gw) */
        size_t col = is_pointwise(s) ? 0 : (size_t)(kg * t);
        return (size_t)nthreads * col + (size_t)(nthreads - 1) * (size_t)(s->O * kg);
    }
    }
}

/* col[r - r0, j - j0] for rows r in [r0, r1) of the group's Kg rows and output
 * pixels j in [j0, j1); x points at the group's first input channel. */
static void im2col_tile(const md__conv_shape *s, const float *x, int64_t r0, int64_t r1, int64_t j0,
                        int64_t j1, float *col) {
    const int64_t H = s->H, W = s->W, OW = s->OW, KH = s->KH, KW = s->KW, len = j1 - j0;
    for (int64_t r = r0; r < r1; r++) {
        int64_t c = r / (KH * KW), ki = r / KW % KH, kj = r % KW;
        const float *xc = x + c * H * W;
        float *dst = col + (r - r0) * len;
        int64_t j = j0;
        while (j < j1) {
            int64_t oh = j / OW, ow0 = j % OW, cnt = OW - ow0;
            if (cnt > j1 - j) cnt = j1 - j;
            int64_t ih = oh * s->sh - s->ph + ki * s->dh;
            if (ih < 0 || ih >= H) {
                memset(dst, 0, sizeof(float) * (size_t)cnt);
            } else {
                const float *row = xc + ih * W;
                int64_t iw = ow0 * s->sw - s->pw + kj * s->dw;
                if (s->sw == 1) {
                    /* contiguous run: zeros, a copy, zeros */
                    int64_t lo = iw < 0 ? -iw : 0;
                    if (lo > cnt) lo = cnt;
                    int64_t hi = W - iw;   /* first k with iw + k >= W */
                    if (hi > cnt) hi = cnt;
                    if (hi < lo) hi = lo;
                    if (lo) memset(dst, 0, sizeof(float) * (size_t)lo);
                    if (hi > lo) memcpy(dst + lo, row + iw + lo, sizeof(float) * (size_t)(hi - lo));
                    if (cnt > hi) memset(dst + hi, 0, sizeof(float) * (size_t)(cnt - hi));
                } else {
                    /* strided: zeros, a gather with no bounds checks, zeros */
                    const int64_t sw = s->sw;
                    int64_t lo = iw < 0 ? (-iw + sw - 1) / sw : 0;
                    if (lo > cnt) lo = cnt;
                    int64_t hi = iw < W ? (W - iw + sw - 1) / sw : 0;   /* first k with iw + k*sw >= W */
                    if (hi > cnt) hi = cnt;
                    if (hi < lo) hi = lo;
                    for (int64_t k = 0; k < lo; k++) dst[k] = 0.0f;
                    const float *src = row + iw;
                    for (int64_t k = lo; k < hi; k++) dst[k] = src[k * sw];
                    for (int64_t k = hi; k < cnt; k++) dst[k] = 0.0f;
                }
            }
            dst += cnt;
            j += cnt;
        }
    }
}

/* The transpose of im2col_tile: gx[c, ih, iw] += col[r - r0, j - j0]. */
static void col2im_tile(const md__conv_shape *s, const float *col, int64_t r0, int64_t r1, int64_t j0,
                        int64_t j1, float *gx) {
    const int64_t H = s->H, W = s->W, OW = s->OW, KH = s->KH, KW = s->KW, len = j1 - j0;
    for (int64_t r = r0; r < r1; r++) {
        int64_t c = r / (KH * KW), ki = r / KW % KH, kj = r % KW;
        float *gc = gx + c * H * W;
        const float *src = col + (r - r0) * len;
        int64_t j = j0;
        while (j < j1) {
            int64_t oh = j / OW, ow0 = j % OW, cnt = OW - ow0;
            if (cnt > j1 - j) cnt = j1 - j;
            int64_t ih = oh * s->sh - s->ph + ki * s->dh;
            if (ih >= 0 && ih < H) {
                float *row = gc + ih * W;
                int64_t iw = ow0 * s->sw - s->pw + kj * s->dw;
                if (s->sw == 1) {
                    int64_t lo = iw < 0 ? -iw : 0;
                    if (lo > cnt) lo = cnt;
                    int64_t hi = W - iw;
                    if (hi > cnt) hi = cnt;
                    for (int64_t k = lo; k < hi; k++) row[iw + k] += src[k];
                } else {
                    for (int64_t k = 0; k < cnt; k++, iw += s->sw)
                        if (iw >= 0 && iw < W) row[iw] += src[k];
                }
            }
            src += cnt;
            j += cnt;
        }
    }
}

/* Work item `it` of the forward and weight-gradient kernels is (image,
 * group, column tile); its input operand [Kg, len] is the input itself for a
 * pointwise convolution, else the im2col tile written into `col`. */
typedef struct col_tile { int64_t n, g, j0, len, ldb; const float *b; } col_tile;

static col_tile input_tile(const md__conv_shape *s, const float *x, int64_t it, int64_t ntiles, int64_t T, int pw,
                           float *col) {
    const int64_t G = s->G, Cg = s->C / G, HW = s->H * s->W, OHW = s->OH * s->OW;
    int64_t tile = it % ntiles, ng = it / ntiles;
    col_tile t = { .n = ng / G, .g = ng % G, .j0 = tile * T };
    int64_t j1 = t.j0 + T < OHW ? t.j0 + T : OHW;
    t.len = j1 - t.j0;
    const float *xg = x + (t.n * s->C + t.g * Cg) * HW;
    if (pw) {
        t.b = xg + t.j0;
        t.ldb = HW;
    } else {
        im2col_tile(s, xg, 0, kg_of(s), t.j0, j1, col);
        t.b = col;
        t.ldb = t.len;
    }
    return t;
}

void md__conv2d_forward(const md__conv_shape *s, const float *x, const float *w, const float *bias,
                        float *y, float *work, int nthreads) {
    const int64_t G = s->G, Og = s->O / G, Kg = kg_of(s);
    const int64_t OHW = s->OH * s->OW, T = tile_cols(s), ntiles = (OHW + T - 1) / T;
    const int64_t items = s->N * G * ntiles;
    const int pw = is_pointwise(s);
    if (items <= 0) return;
    int nt = items < nthreads ? (int)items : nthreads;
    int prev = md__blas_threads_set(1);
    #pragma omp parallel num_threads(nt)
    {
        float *col = pw ? NULL : work + (size_t)omp_get_thread_num() * (size_t)(Kg * T);
        #pragma omp for schedule(static)
        for (int64_t it = 0; it < items; it++) {
            col_tile t = input_tile(s, x, it, ntiles, T, pw, col);
            int64_t n = t.n, g = t.g, j0 = t.j0, len = t.len, ldb = t.ldb;
            const float *b = t.b;
            float *yt = y + (n * s->O + g * Og) * OHW + j0;
            md__sgemm(false, false, Og, len, Kg, 1.0f, w + g * Og * Kg, Kg, b, ldb, 0.0f, yt, OHW);
            if (bias)
                for (int64_t o = 0; o < Og; o++) {
                    float bv = bias[g * Og + o], *row = yt + o * OHW;
                    for (int64_t k = 0; k < len; k++) row[k] += bv;
                }
        }
    }
    md__blas_threads_set(prev);
}

void md__conv2d_backward_input(const md__conv_shape *s, const float *gy, const float *w, float *gx,
                               float *work, int nthreads) {
    const int64_t G = s->G, Og = s->O / G, Cg = s->C / G, Kg = kg_of(s), HW = s->H * s->W;
    const int64_t KK = s->KH * s->KW, OHW = s->OH * s->OW, T = tile_cols(s);
    const int64_t CB = channel_blocks(s, nthreads), cper = (Cg + CB - 1) / CB;
    const int64_t items = s->N * G * CB;
    const int pw = is_pointwise(s);
    if (items <= 0) return;
    if (OHW == 0 || Og == 0) {
        memset(gx, 0, sizeof(float) * (size_t)(s->N * s->C * HW));
        return;
    }
    md__conv_shape ts;
    if (transposed_shape(s, &ts)) {
        /* wt[g][c][o][kh][kw] = w[g][o][c][KH-1-kh][KW-1-kw] */
        float *wt = work;
        for (int64_t g = 0; g < G; g++)
            for (int64_t o = 0; o < Og; o++)
                for (int64_t c = 0; c < Cg; c++) {
                    const float *src = w + ((g * Og + o) * Cg + c) * KK;
                    float *dst = wt + ((g * Cg + c) * Og + o) * KK;
                    for (int64_t k = 0; k < KK; k++) dst[k] = src[KK - 1 - k];
                }
        md__conv2d_forward(&ts, gy, wt, NULL, gx, work + s->O * Kg, nthreads);
        return;
    }
    int nt = items < nthreads ? (int)items : nthreads;
    int prev = md__blas_threads_set(1);
    #pragma omp parallel num_threads(nt)
    {
        float *col = pw ? NULL : work + (size_t)omp_get_thread_num() * (size_t)(cper * KK * T);
        #pragma omp for schedule(static)
        for (int64_t it = 0; it < items; it++) {
            int64_t cb = it % CB, ng = it / CB, n = ng / G, g = ng % G;
            int64_t c0 = cb * cper, c1 = c0 + cper < Cg ? c0 + cper : Cg;
            if (c0 >= c1) continue;
            float *gxg = gx + (n * s->C + g * Cg) * HW;
            const float *gyg = gy + (n * s->O + g * Og) * OHW, *wg = w + g * Og * Kg;
            if (!pw) memset(gxg + c0 * HW, 0, sizeof(float) * (size_t)((c1 - c0) * HW));
            for (int64_t j0 = 0; j0 < OHW; j0 += T) {
                int64_t j1 = j0 + T < OHW ? j0 + T : OHW, len = j1 - j0;
                if (pw) {
                    /* gx[c, j] = sum_o w[o, c] gy[o, j], written in place */
                    md__sgemm(true, false, c1 - c0, len, Og, 1.0f, wg + c0, Kg, gyg + j0, OHW, 0.0f,
                              gxg + c0 * HW + j0, HW);
                } else {
                    int64_t r0 = c0 * KK, r1 = c1 * KK;
                    md__sgemm(true, false, r1 - r0, len, Og, 1.0f, wg + r0, Kg, gyg + j0, OHW, 0.0f, col,
                              len);
                    col2im_tile(s, col, r0, r1, j0, j1, gxg);
                }
            }
        }
    }
    md__blas_threads_set(prev);
}

void md__conv2d_backward_weight(const md__conv_shape *s, const float *x, const float *gy, float *gw,
                                float *work, int nthreads) {
    const int64_t G = s->G, Og = s->O / G, Kg = kg_of(s);
    const int64_t OHW = s->OH * s->OW, T = tile_cols(s), ntiles = (OHW + T - 1) / T;
    const int64_t items = s->N * G * ntiles, wn = s->O * Kg;
    const int pw = is_pointwise(s);
    memset(gw, 0, sizeof(float) * (size_t)wn);
    if (items <= 0 || wn == 0) return;
    int nt = items < nthreads ? (int)items : nthreads;
    size_t colf = pw ? 0 : (size_t)(Kg * T);
    float *parts = work + (size_t)nt * colf;
    int prev = md__blas_threads_set(1);
    #pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num();
        float *col = work + (size_t)tid * colf;
        float *acc = tid == 0 ? gw : parts + (size_t)(tid - 1) * (size_t)wn;
        if (tid) memset(acc, 0, sizeof(float) * (size_t)wn);
        #pragma omp for schedule(static)
        for (int64_t it = 0; it < items; it++) {
            col_tile t = input_tile(s, x, it, ntiles, T, pw, col);
            int64_t n = t.n, g = t.g, j0 = t.j0, len = t.len, ldb = t.ldb;
            const float *b = t.b;
            /* gw_g[Og, Kg] += gy_tile[Og, len] col[Kg, len]^T */
            md__sgemm(false, true, Og, Kg, len, 1.0f, gy + (n * s->O + g * Og) * OHW + j0, OHW, b, ldb,
                      1.0f, acc + g * Og * Kg, Kg);
        }
        /* fixed-order reduction of the partials, split over elements */
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < wn; i++) {
            float v = gw[i];
            for (int t = 1; t < nt; t++) v += parts[(size_t)(t - 1) * (size_t)wn + (size_t)i];
            gw[i] = v;
        }
    }
    md__blas_threads_set(prev);
}

void md__conv2d_backward_bias(const md__conv_shape *s, const float *gy, float *gb, int nthreads) {
    const int64_t O = s->O, OHW = s->OH * s->OW, N = s->N;
    #pragma omp parallel for num_threads(nthreads) if (N * O * OHW > 65536) schedule(static)
    for (int64_t o = 0; o < O; o++) {
        double acc = 0;
        for (int64_t n = 0; n < N; n++) {
            const float *p = gy + (n * O + o) * OHW;
            float part = 0;
            for (int64_t j = 0; j < OHW; j++) part += p[j];
            acc += part;
        }
        gb[o] = (float)acc;
    }
}
