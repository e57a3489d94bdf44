/* CPU 2-D convolution: im2col + GEMM over column tiles, in two flavours.
 *
 * The GEMM of group g of image n is y[Og, OHW] = w_g[Og, Kg] col[Kg, OHW]
 * with Kg = C/G*KH*KW; the whole col matrix is never materialised.
 *
 * Packed path (conv_gemm.h, the default where AVX2 or AVX-512 exists): our
 * own GotoBLAS-style GEMM; im2col writes straight into the micro-kernel's
 * B panels and the weight is packed once per call (see "packed-GEMM path"
 * below). Every output element is summed in an order fixed by the shape,
 * so results do not depend on the thread count.
 *
 * OpenBLAS path (MMDET_CPU_CONV=blas, other CPUs): each work item builds a
 * [Kg, T] column tile (T output pixels) in a per-thread buffer that stays
 * in cache, and calls single-threaded sgemm on it; items are spread over
 * OpenMP threads. 1x1 stride-1 unpadded convolutions use the input itself
 * as the col matrix. Every output element is written by one item, and the
 * weight-gradient partials are summed in thread order, so results are
 * reproducible for a fixed thread count.
 */
#include <omp.h>
#include <string.h>
#include "backends/cpu/conv.h"
#include "backends/cpu/conv_gemm.h"
#include "backends/cpu/gemm.h"
#include "backends/cpu/winograd.h"

/* Column-tile budget: Kg*T floats per thread (~1 MB, an L2's worth). */
#define TILE_FLOATS ((int64_t)256 * 1024)
#define TILE_MIN 128
#define TILE_MAX 4096
#define STILE_FLOATS ((int64_t)96 * 1024)   /* strided input gradient: B block + col tile */

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

/* Column tile of the packed strided input gradient: its B block (the
 * GEMM's K block of gy rows) and the col tile it writes stay in L2
 * together, col2im reading the tile back from there. */
static int64_t strided_cols(const md__conv_shape *s, int64_t rows) {
    int64_t og = s->O / s->G, kc = og < MD_GEMM_KC ? og : MD_GEMM_KC, ohw = s->OH * s->OW;
    int64_t t = STILE_FLOATS / (kc + rows) / 32 * 32;
    if (t < 64) t = 64;
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
static int transposed_shape(const md__conv_shape *s, md__conv_shape *t, int packed) {
    if (s->sh != 1 || s->sw != 1 || (is_pointwise(s) && !packed)) return 0;
    int64_t ph = s->dh * (s->KH - 1) - s->ph, pw = s->dw * (s->KW - 1) - s->pw;
    if (ph < 0 || pw < 0) return 0;
    *t = (md__conv_shape){ .N = s->N, .C = s->O, .H = s->OH, .W = s->OW, .O = s->C, .KH = s->KH, .KW = s->KW,
                           .OH = s->H, .OW = s->W, .sh = 1, .sw = 1, .ph = ph, .pw = pw, .dh = s->dh,
                           .dw = s->dw, .G = s->G };
    return 1;
}

/* ---- the packed-GEMM path (conv_gemm.h) ----
 * Forward: the weight of every group packed once per call into A panels
 * shared by all threads; each work item (image, group, column tile[, block
 * of output channels]) writes its im2col tile straight into B panels and
 * runs the blocked GEMM into y. Weight gradient: work units are (group,
 * block of Kg columns of gw); each unit runs over every image and pixel
 * chunk with gy as A and col^T as B, accumulating into its own block of gw,
 * so every element of gw is summed in one fixed order whatever the thread
 * count. */
#define PTILE_FLOATS ((int64_t)64 * 1024)    /* kc x T of a B block (256 KB, in L2) */
#define PTILE_MIN 64
#define PTILE_MAX 1024
#define WG_CHUNK 256                         /* pixels per weight-gradient GEMM */
#define WG_NC 512                            /* gw block: columns (Kg) */
#define WG_MC 448                            /* and rows (Og), a multiple of 14 */

/* Panels start on a cache line (split-line stores cost double); each
 * buffer is given 16 floats of slack for it. */
#define ALIGN_SLACK 16
static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

typedef struct fwd_plan { int64_t T, ntiles, kc, mp, mb, mpb, items; size_t asz, bsz; } fwd_plan;

static fwd_plan plan_forward(const md__gemm_kernel *kn, const md__conv_shape *s, int nthreads) {
    const int64_t Og = s->O / s->G, Kg = kg_of(s), OHW = s->OH * s->OW, nr = kn->nr;
    fwd_plan p = { 0 };
    /* Goto's loop order: the weight is packed whole once; per column tile,
     * B is built one K block at a time (kc x T in L2) and every block of A
     * passes over it, so T can be wide and A is re-read once per T pixels. */
    int64_t nkb = (Kg + MD_GEMM_KC - 1) / MD_GEMM_KC;
    p.kc = nkb > 0 ? (Kg + nkb - 1) / nkb : 1;
    int64_t t = PTILE_FLOATS / p.kc;
    if (t < PTILE_MIN) t = PTILE_MIN;
    if (t > PTILE_MAX) t = PTILE_MAX;
    t = (t + nr - 1) / nr * nr;
    if (t > OHW) t = OHW;
    p.T = t > 0 ? t : 1;
    p.ntiles = (OHW + p.T - 1) / p.T;
    p.mp = (Og + kn->mr - 1) / kn->mr;
    p.asz = md__pack_a_floats(kn, Og, Kg);
    p.bsz = md__pack_b_floats(kn, p.T, p.kc);
    /* fewer (image, tile) items than threads: split output channels too */
    int64_t items = s->N * s->G * p.ntiles;
    p.mb = 1;
    if (items > 0 && items < nthreads) {
        p.mb = (nthreads + items - 1) / items;
        if (p.mb > p.mp) p.mb = p.mp > 0 ? p.mp : 1;
    }
    p.mpb = (p.mp + p.mb - 1) / p.mb;
    p.items = items * p.mb;
    return p;
}

static size_t packed_forward_floats(const md__gemm_kernel *kn, const md__conv_shape *s, int nthreads) {
    fwd_plan p = plan_forward(kn, s, nthreads);
    int nt = p.items < nthreads ? (int)(p.items > 0 ? p.items : 1) : nthreads;
    return (size_t)s->G * p.asz + (size_t)nt * (p.bsz + ALIGN_SLACK) + ALIGN_SLACK;
}

typedef struct wg_plan { int64_t nc, nblk, mc, mblk, units, tr; size_t per_thread; } wg_plan;

/* Share of a GEMM's micro-tiles that is real work (M rows in panels of mr,
 * N columns in panels of nr), in units of 1/1024. */
static int64_t tile_use(int64_t M, int64_t N, int64_t mr, int64_t nr) {
    int64_t mp = (M + mr - 1) / mr * mr, np = (N + nr - 1) / nr * nr;
    return mp > 0 && np > 0 ? 1024 * M / mp * N / np : 0;
}

/* Units are (group, block of mc rows of gw (output channels), block of nc
 * of its columns (Kg)): a unit packs its gy rows and its col^T columns once
 * per pixel chunk, so blocks are wide (<= WG_NC along the GEMM's N, <= WG_MC
 * along its M) to keep the repacking low; there are at least as many units
 * as threads where the shape allows. The GEMM computes the block (gy as A,
 * col^T as B), or its transpose (col as A, gy^T as B; `tr`) where that
 * wastes fewer micro-tile lanes: a 7x7 stem's 147 columns fill 14-row
 * panels better than 32-column ones. */
static wg_plan plan_weight(const md__gemm_kernel *kn, const md__conv_shape *s, int nthreads) {
    const int64_t Og = s->O / s->G, Kg = kg_of(s), nr = kn->nr, mr = kn->mr;
    wg_plan p = { 0 };
    p.tr = tile_use(Kg, Og, mr, nr) > tile_use(Og, Kg, mr, nr);
    /* o blocks align to the GEMM dimension they are (M: mr, N: nr), r blocks to the other */
    const int64_t ao = p.tr ? nr : mr, ar = p.tr ? mr : nr;
    const int64_t lo = p.tr ? WG_NC : WG_MC, lr = p.tr ? WG_MC : WG_NC;
    p.nblk = (Kg + lr - 1) / lr;
    p.mblk = (Og + lo - 1) / lo;
    if (p.nblk < 1) p.nblk = 1;
    if (p.mblk < 1) p.mblk = 1;
    int64_t most = (Kg + ar - 1) / ar;
    if (s->G * p.nblk * p.mblk < nthreads) {   /* more column blocks for idle threads */
        int64_t want = (nthreads + s->G * p.mblk - 1) / (s->G * p.mblk);
        p.nblk = want < most ? want : most;
        if (p.nblk < 1) p.nblk = 1;
    }
    /* few units: make their count a multiple of the threads (3 units on 2
     * threads leave one idle half the time) */
    if (nthreads > 1 && s->G * p.mblk * p.nblk < 8 * nthreads)
        while ((s->G * p.mblk * p.nblk) % nthreads && p.nblk < most) p.nblk++;
    int64_t nc = (Kg + p.nblk - 1) / p.nblk, mc = (Og + p.mblk - 1) / p.mblk;
    p.nc = (nc + ar - 1) / ar * ar;
    p.mc = (mc + ao - 1) / ao * ao;
    p.nblk = (Kg + p.nc - 1) / p.nc;
    p.mblk = (Og + p.mc - 1) / p.mc;
    p.units = s->G * p.mblk * p.nblk;
    /* packed gy chunk, packed col^T chunk, a row-major im2col chunk, and
     * for `tr` the transposed block */
    size_t gyp = p.tr ? md__pack_b_floats(kn, p.mc, WG_CHUNK) : md__pack_a_floats(kn, p.mc, WG_CHUNK);
    size_t colp = p.tr ? md__pack_a_floats(kn, p.nc, WG_CHUNK) : md__pack_b_floats(kn, p.nc, WG_CHUNK);
    p.per_thread = gyp + colp + (is_pointwise(s) ? 0 : (size_t)(p.nc * WG_CHUNK)) +
                   (p.tr ? (size_t)(p.nc * p.mc) : 0) + 4 * ALIGN_SLACK;
    return p;
}

static size_t packed_weight_floats(const md__gemm_kernel *kn, const md__conv_shape *s, int nthreads) {
    wg_plan p = plan_weight(kn, s, nthreads);
    int64_t nt = p.units < nthreads ? p.units : nthreads;
    return (size_t)(nt > 0 ? nt : 1) * p.per_thread;
}

size_t md__conv2d_work_floats(const md__conv_shape *s, int which, int nthreads) {
    const md__gemm_kernel *kn = md__convk();
    int64_t t = tile_cols(s), kg = kg_of(s);
    switch (which) {
    case MD_CONV_FWD:
        if (kn && md__winograd_applies(s)) return md__winograd_work_floats(kn, s, nthreads);
        if (kn) return packed_forward_floats(kn, s, nthreads);
        return is_pointwise(s) ? 0 : (size_t)(nthreads * kg * t);
    case MD_CONV_BWD_INPUT: {
        md__conv_shape ts;
        if (!kn && is_pointwise(s)) return 0;
        if (kn && transposed_shape(s, &ts, 1))
            return md__winograd_applies(&ts) ? md__winograd_work_floats(kn, &ts, nthreads)
                                             : packed_forward_floats(kn, &ts, nthreads);
        if (transposed_shape(s, &ts, 0))   /* the flipped weight, then the forward's tiles */
            return (size_t)(s->O * kg_of(s)) + md__conv2d_work_floats(&ts, MD_CONV_FWD, nthreads);
        int64_t cg = s->C / s->G, cb = channel_blocks(s, nthreads);
        int64_t rows = (cg + cb - 1) / cb * s->KH * s->KW;
        if (kn) {   /* per thread: the item's packed w^T rows, a packed gy tile, the col tile */
            int64_t ts = strided_cols(s, rows);
            return (size_t)nthreads * (md__pack_a_floats(kn, rows, s->O / s->G) +
                                       md__pack_b_floats(kn, ts, s->O / s->G) + (size_t)(rows * ts) + 3 * ALIGN_SLACK);
        }
        return (size_t)(nthreads * rows * t);
    }
    default: {
        if (kn && md__winograd_applies(s)) return md__winograd_weight_work_floats(kn, s, nthreads);
        if (kn) return packed_weight_floats(kn, s, nthreads);
        /* weight: col tiles plus per-thread partial gradients (thread 0 uses gw) */
        size_t col = is_pointwise(s) ? 0 : (size_t)(kg * t);
        return (size_t)nthreads * col + (size_t)(nthreads - 1) * (size_t)(s->O * kg);
    }
    }
}

/* Pixels [j, j + cnt) of one output row (oh, starting at column ow) for
 * kernel tap (ki, kj) of channel plane xc, written contiguously to dst. */
static void im2col_run(const md__conv_shape *s, const float *xc, int64_t ki, int64_t kj, int64_t oh, int64_t ow,
                       int64_t cnt, float *dst) {
    const int64_t H = s->H, W = s->W;
    int64_t ih = oh * s->sh - s->ph + ki * s->dh;
    if (ih < 0 || ih >= H) {
        memset(dst, 0, sizeof(float) * (size_t)cnt);
        return;
    }
    const float *row = xc + ih * W;
    int64_t iw = ow * s->sw - s->pw + kj * s->dw;
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

/* col[r - r0, j - j0] for rows r in [r0, r1) of the group's Kg rows and output
 * pixels j in [j0, j1); x points at the group's first input channel. */
static void im2col_tile(const md__conv_shape *s, const float *x, int64_t r0, int64_t r1, int64_t j0,
                        int64_t j1, const md__gemm_kernel *kn, float *col) {
    const int64_t OW = s->OW, KH = s->KH, KW = s->KW, H = s->H, W = s->W, HW = H * W, sw = s->sw;
    for (int64_t r = r0; r < r1; r++) {
        int64_t c = r / (KH * KW), ki = r / KW % KH, kj = r % KW;
        float *dst = col + (r - r0) * (j1 - j0);
        int64_t oh = j0 / OW, ow = j0 % OW;
        for (int64_t j = j0; j < j1;) {
            int64_t cnt = OW - ow < j1 - j ? OW - ow : j1 - j;
            if (kn && sw == 2) {   /* the packed kernels' vector gather (pstride nr: a plain row) */
                int64_t ih = oh * s->sh - s->ph + ki * s->dh, iw = ow * sw - s->pw + kj * s->dw;
                int64_t lo = iw < 0 ? (-iw + sw - 1) / sw : 0, hi = iw < W ? (W - iw + sw - 1) / sw : 0;
                if (ih < 0 || ih >= H) md__pack_row_run(kn, dst, kn->nr, 0, NULL, sw, cnt, 0, 0);
                else md__pack_row_run(kn, dst, kn->nr, 0, x + c * HW + ih * W + iw, sw, cnt, lo, hi);
            } else {
                im2col_run(s, x + c * HW, ki, kj, oh, ow, cnt, dst);
            }
            dst += cnt;
            j += cnt;
            oh++;
            ow = 0;
        }
    }
}

/* The same columns written as the packed GEMM's B panels: panel p holds
 * pixels [j0 + p*nr, j0 + (p+1)*nr) as [r1 - r0][nr], the last one padded
 * with zero columns. One copy from the input into the layout the
 * micro-kernel reads; stride-1 and -2 rows go through md__pack_row_run (one
 * call per output row, padding included), larger strides through im2col_run. */
#define PF_ROWS 8   /* pointwise rows prefetched ahead (im2col_panels) */
static void im2col_panels(const md__conv_shape *s, const float *x, int64_t r0, int64_t r1, int64_t j0,
                          int64_t j1, const md__gemm_kernel *kn, float *pb) {
    const int64_t OW = s->OW, KH = s->KH, KW = s->KW, H = s->H, W = s->W, HW = H * W, K = r1 - r0;
    const int64_t len = j1 - j0, nr = kn->nr, pstride = md__pb_stride(kn, K);
    /* a pointwise B block is len-float runs of rows HW apart, straight from
     * memory (a 1x1 conv's input is seldom in cache): row r + PF_ROWS is
     * prefetched while row r is copied, so several rows' misses overlap
     * (15 % on a 256-channel 1x1 forward) */
    const int pf = is_pointwise(s);
    for (int64_t r = r0; r < r1; r++) {
        int64_t c = r / (KH * KW), ki = r / KW % KH, kj = r % KW;
        const float *xc = x + c * HW;
        float *rowp = pb + (r - r0) * nr;
        if (pf && r + PF_ROWS < r1)
            for (int64_t t = 0; t < len; t += 16) __builtin_prefetch(x + (r + PF_ROWS) * HW + j0 + t, 0, 3);
        int64_t oh = j0 / OW, ow = j0 % OW;
        if (s->sw <= 2) {
            const int64_t sw = s->sw;
            for (int64_t off = 0; off < len;) {
                int64_t cnt = OW - ow < len - off ? OW - ow : len - off;
                int64_t ih = oh * s->sh - s->ph + ki * s->dh, iw = ow * sw - s->pw + kj * s->dw;
                /* valid t: 0 <= iw + t*sw < W */
                int64_t lo = iw < 0 ? (-iw + sw - 1) / sw : 0, hi = iw < W ? (W - iw + sw - 1) / sw : 0;
                if (ih < 0 || ih >= H) md__pack_row_run(kn, rowp, pstride, off, NULL, sw, cnt, 0, 0);
                else md__pack_row_run(kn, rowp, pstride, off, xc + ih * W + iw, sw, cnt, lo, hi);
                off += cnt;
                ow = 0;
                oh++;
            }
        } else {
            int64_t p = 0, q = 0;
            for (int64_t off = 0; off < len;) {
                int64_t cnt = nr - q;
                if (cnt > OW - ow) cnt = OW - ow;
                if (cnt > len - off) cnt = len - off;
                im2col_run(s, xc, ki, kj, oh, ow, cnt, rowp + p * pstride + q);
                off += cnt;
                if ((ow += cnt) == OW) {
                    ow = 0;
                    oh++;
                }
                if ((q += cnt) == nr) {
                    q = 0;
                    p++;
                }
            }
        }
        if (len % nr) memset(rowp + len / nr * pstride + len % nr, 0, sizeof(float) * (size_t)(nr - len % nr));
    }
}

/* The transpose of im2col_tile: gx[c, ih, iw] += col[r - r0, j - j0]. */
static void col2im_tile(const md__gemm_kernel *kn, const md__conv_shape *s, const float *col, int64_t r0,
                        int64_t r1, int64_t j0, int64_t j1, float *gx) {
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
                /* the run's k with 0 <= iw + k*sw < W */
                int64_t iw = ow0 * s->sw - s->pw + kj * s->dw, sw = s->sw;
                int64_t lo = iw < 0 ? (-iw + sw - 1) / sw : 0, hi = iw < W ? (W - iw + sw - 1) / sw : 0;
                if (hi > cnt) hi = cnt;
                if (lo < hi) md__add_run(kn, row + iw + lo * sw, sw, src + lo, hi - lo);
            }
            src += cnt;
            j += cnt;
        }
    }
}

/* col2im of a 1x1 convolution without padding (stride sh, sw): input pixel
 * (ih, iw) takes at most one value, at ih % sh == iw % sw == 0, so the
 * tile's output rows are written whole (values and zeros) over the span
 * they own, and gx needs no clearing first. Spans of consecutive tiles
 * meet where the rows do: every gx element is written once. */
static void col2im_assign(const md__gemm_kernel *kn, const md__conv_shape *s, const float *col, int64_t c0,
                          int64_t c1, int64_t j0, int64_t j1, float *gx) {
    const int64_t H = s->H, W = s->W, OW = s->OW, len = j1 - j0, sh = s->sh, sw = s->sw;
    for (int64_t c = c0; c < c1; c++) {
        float *gc = gx + c * H * W;
        const float *src = col + (c - c0) * len;
        for (int64_t j = j0; j < j1;) {
            int64_t oh = j / OW, ow0 = j % OW, cnt = OW - ow0;
            if (cnt > j1 - j) cnt = j1 - j;
            /* columns [ow0*sw, end): to W when the run closes the row */
            int64_t b = ow0 * sw, e = ow0 + cnt == OW ? W : (ow0 + cnt) * sw;
            float *row = gc + oh * sh * W;
            md__put_run(kn, row + b, sw, src, e - b);
            for (int64_t ih = oh * sh + 1; ih < (oh + 1) * sh && ih < H; ih++)
                memset(gc + ih * W + b, 0, sizeof(float) * (size_t)(e - b));
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
        im2col_tile(s, xg, 0, kg_of(s), t.j0, j1, NULL, col);
        t.b = col;
        t.ldb = t.len;
    }
    return t;
}

/* Packs the columns o*KK .. o*KK + KK-1 of every A panel of group g from
 * the weight w of convolution `f`, flipped for its input gradient:
 * A[c][o*KK + t] = w[g*Og + o][c][KK-1-t]. One o at a time reads w[o]
 * contiguously (a whole panel at a time would stride through all of w). */
static void pack_a_flipped(const md__gemm_kernel *kn, const md__conv_shape *f, const float *w, int64_t g,
                           int64_t o, float *pa) {
    const int64_t G = f->G, Og = f->O / G, Cg = f->C / G, KK = f->KH * f->KW, mr = kn->mr, K = Og * KK;
    const int64_t rows = (Cg + mr - 1) / mr * mr;
    const float *src = w + (g * Og + o) * Cg * KK + KK - 1;
    for (int64_t c = 0, i = 0, r = 0; c < rows; c++) {
        float *d = pa + i * mr * K + o * KK * mr + r;
        for (int64_t t = 0; t < KK; t++) d[t * mr] = c < Cg ? src[c * KK - t] : 0.0f;
        if (++r == mr) {
            r = 0;
            i++;
        }
    }
}

/* y = ep(conv(x, w)) through the packed GEMM, ep (per output channel, NULL
 * for none) applied by the micro-kernel as the last K block is stored. With
 * `flip` set, s is the
 * transposed convolution of flip's input gradient and w is flip's weight,
 * flipped while it is packed. */
static void forward_packed(const md__gemm_kernel *kn, const md__conv_shape *s, const float *x, const float *w,
                           const md__conv_shape *flip, const md__epilogue *ep, float *y, float *work, int nthreads) {
    const int64_t G = s->G, Og = s->O / G, Cg = s->C / G, Kg = kg_of(s), HW = s->H * s->W;
    const int64_t OHW = s->OH * s->OW, mr = kn->mr;
    const fwd_plan p = plan_forward(kn, s, nthreads);
    if (p.items <= 0) return;
    int nt = p.items < nthreads ? (int)p.items : nthreads;
    float *pa = align64(work), *bufs = pa + (size_t)G * p.asz;
    #pragma omp parallel num_threads(nt)
    {
        /* A: every group's weight, packed once, shared read-only */
        if (flip) {
            const int64_t Of = flip->O / G;
            #pragma omp for schedule(static)
            for (int64_t q = 0; q < G * Of; q++) pack_a_flipped(kn, flip, w, q / Of, q % Of, pa + (size_t)(q / Of) * p.asz);
        } else {
            #pragma omp for schedule(static)
            for (int64_t q = 0; q < G * p.mp; q++) {
                int64_t g = q / p.mp, i = q % p.mp;
                md__pack_a(kn, w + g * Og * Kg, Kg, 1, Og, Kg, i, i + 1, pa + (size_t)g * p.asz);
            }
        }
        float *pb = align64(bufs + (size_t)omp_get_thread_num() * (p.bsz + ALIGN_SLACK));
        #pragma omp for schedule(static)
        for (int64_t it = 0; it < p.items; it++) {
            int64_t mb = it % p.mb, rest = it / p.mb, tile = rest % p.ntiles, ng = rest / p.ntiles;
            int64_t n = ng / G, g = ng % G, j0 = tile * p.T, j1 = j0 + p.T < OHW ? j0 + p.T : OHW;
            int64_t p0 = mb * p.mpb, p1 = p0 + p.mpb < p.mp ? p0 + p.mpb : p.mp;
            if (p0 >= p1) continue;
            int64_t m0 = p0 * mr, m1 = p1 * mr < Og ? p1 * mr : Og;
            float *yt = y + (n * s->O + g * Og + m0) * OHW + j0;
            const float *pag = pa + (size_t)g * p.asz + (size_t)(p0 * mr * Kg);
            md__epilogue te, *tep = NULL;
            if (ep) {   /* this item's channels */
                int64_t o0 = g * Og + m0;
                te = (md__epilogue){ ep->scale ? ep->scale + o0 : NULL, ep->shift ? ep->shift + o0 : NULL, ep->relu };
                tep = &te;
            }
            for (int64_t k0 = 0; k0 < Kg; k0 += p.kc) {
                int64_t k1 = k0 + p.kc < Kg ? k0 + p.kc : Kg;
                im2col_panels(s, x + (n * s->C + g * Cg) * HW, k0, k1, j0, j1, kn, pb);
                md__gemm_packed_ep(kn, m1 - m0, j1 - j0, k1 - k0, pag + k0 * mr, Kg, pb, yt, OHW, k0 > 0,
                                   k1 >= Kg ? tep : NULL);
            }
        }
    }
}

static void backward_weight_packed(const md__gemm_kernel *kn, const md__conv_shape *s, const float *x,
                                   const float *gy, float *gw, float *work, int nthreads) {
    const int64_t G = s->G, Og = s->O / G, Cg = s->C / G, Kg = kg_of(s), HW = s->H * s->W;
    const int64_t OHW = s->OH * s->OW, wn = s->O * Kg;
    const int pw = is_pointwise(s);
    const wg_plan p = plan_weight(kn, s, nthreads);
    if (wn == 0) return;
    if (s->N * OHW == 0 || Og == 0) {
        memset(gw, 0, sizeof(float) * (size_t)wn);
        return;
    }
    int nt = p.units < nthreads ? (int)p.units : nthreads;
    /* gw^T of a 7x7/2 stem: its A panels straight from x, no col tile */
    const int k7s2 = p.tr && md__pack_a_k7s2_applies(kn, s);
    const size_t gysz = p.tr ? md__pack_b_floats(kn, p.mc, WG_CHUNK) : md__pack_a_floats(kn, p.mc, WG_CHUNK);
    const size_t colsz = p.tr ? md__pack_a_floats(kn, p.nc, WG_CHUNK) : md__pack_b_floats(kn, p.nc, WG_CHUNK);
    #pragma omp parallel num_threads(nt)
    {
        float *pgy = align64(work + (size_t)omp_get_thread_num() * p.per_thread);
        float *pcol = align64(pgy + gysz), *col = align64(pcol + colsz);
        float *ct = align64(col + (pw ? 0 : p.nc * WG_CHUNK));   /* tr: the block's transpose, [r][o] */
        #pragma omp for schedule(static)
        for (int64_t u = 0; u < p.units; u++) {
            int64_t g = u / (p.nblk * p.mblk), mb = u / p.nblk % p.mblk;
            int64_t r0 = u % p.nblk * p.nc, r1 = r0 + p.nc < Kg ? r0 + p.nc : Kg;
            int64_t m0 = mb * p.mc, m1 = m0 + p.mc < Og ? m0 + p.mc : Og;
            int64_t mo = m1 - m0, mrr = r1 - r0;
            float *c = gw + (g * Og + m0) * Kg + r0;
            int acc = 0;
            for (int64_t n = 0; n < s->N; n++) {
                const float *xg = x + (n * s->C + g * Cg) * HW, *gyg = gy + (n * s->O + g * Og + m0) * OHW;
                for (int64_t j0 = 0; j0 < OHW; j0 += WG_CHUNK) {
                    int64_t kp = OHW - j0 < WG_CHUNK ? OHW - j0 : WG_CHUNK;
                    /* col[r][k] = x's im2col at pixel j0 + k, rows r0.. (x itself when pointwise) */
                    const float *cs = xg + r0 * HW + j0;
                    int64_t ldcol = HW;
                    if (!pw && !k7s2) {
                        im2col_tile(s, xg, r0, r1, j0, j0 + kp, kn, col);
                        cs = col;
                        ldcol = kp;
                    }
                    if (p.tr) {   /* A[r][k] = col[r][k]; B[k][o] = gy[o, j0 + k] */
                        if (k7s2) md__pack_a_k7s2(kn, s, xg, r0, r1, j0, kp, pcol);
                        else md__pack_a(kn, cs, ldcol, 1, mrr, kp, 0, (mrr + kn->mr - 1) / kn->mr, pcol);
                        md__pack_b(kn, gyg + j0, 1, OHW, kp, mo, pgy);
                        md__gemm_packed(kn, mrr, mo, kp, pcol, kp, pgy, ct, p.mc, acc);
                    } else {      /* A[o][k] = gy[o, j0 + k]; B[k][r] = col[r][k] */
                        md__pack_a(kn, gyg + j0, OHW, 1, mo, kp, 0, (mo + kn->mr - 1) / kn->mr, pgy);
                        md__pack_b(kn, cs, 1, ldcol, kp, mrr, pcol);
                        md__gemm_packed(kn, mo, mrr, kp, pgy, kp, pcol, c, Kg, acc);
                    }
                    acc = 1;
                }
            }
            if (p.tr)
                for (int64_t o = 0; o < mo; o++)
                    for (int64_t r = 0; r < mrr; r++) c[o * Kg + r] = ct[r * p.mc + o];
        }
    }
}

void md__conv2d_forward(const md__conv_shape *s, const float *x, const float *w, const float *bias,
                        float *y, float *work, int nthreads) {
    md__conv2d_forward_ep(s, x, w, NULL, bias, 0, y, work, nthreads);
}

void md__conv2d_forward_ep(const md__conv_shape *s, const float *x, const float *w, const float *scale,
                           const float *shift, int relu, float *y, float *work, int nthreads) {
    const int64_t G = s->G, Og = s->O / G, Kg = kg_of(s);
    const int64_t OHW = s->OH * s->OW, T = tile_cols(s), ntiles = (OHW + T - 1) / T;
    const int64_t items = s->N * G * ntiles;
    const int pw = is_pointwise(s);
    const md__gemm_kernel *kn = md__convk();
    const md__epilogue ep = { scale, shift, relu }, *epp = scale || shift || relu ? &ep : NULL;
    if (kn) {
        if (md__winograd_applies(s)) md__winograd_forward(kn, s, x, w, NULL, epp, y, work, nthreads);
        else forward_packed(kn, s, x, w, NULL, epp, y, work, nthreads);
        return;
    }
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
            if (epp) {   /* on the tile while it is in cache */
                md__epilogue te = { scale ? scale + g * Og : NULL, shift ? shift + g * Og : NULL, relu };
                md__epilogue_apply(&te, yt, OHW, Og, len);
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
    const md__gemm_kernel *kn = md__convk();
    if (kn && transposed_shape(s, &ts, 1)) {   /* the flip happens while packing A */
        if (md__winograd_applies(&ts)) md__winograd_forward(kn, &ts, gy, w, s, NULL, gx, work, nthreads);
        else forward_packed(kn, &ts, gy, w, s, NULL, gx, work, nthreads);
        return;
    }
    if (transposed_shape(s, &ts, 0)) {
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
    if (kn) {
        /* strided: col = w_g^T gy through the packed GEMM (w^T rows of the
         * item's channels packed once per item, gy tiles as B), then
         * col2im into the item's own channels. Each gx element sums its
         * taps in an order fixed by the shape: any thread count gives the
         * same bits. */
        const int64_t rows = cper * KK, T = strided_cols(s, rows);
        const int assign = KK == 1 && s->ph == 0 && s->pw == 0;
        const size_t asz = md__pack_a_floats(kn, rows, Og), bsz = md__pack_b_floats(kn, T, Og);
        const size_t per = asz + bsz + (size_t)(rows * T) + 3 * ALIGN_SLACK;
        #pragma omp parallel num_threads(nt)
        {
            float *pa = align64(work + (size_t)omp_get_thread_num() * per);
            float *pb = align64(pa + asz), *col = align64(pb + bsz);
            #pragma omp for schedule(static)
            for (int64_t it = 0; it < items; it++) {
                int64_t cb = it % CB, ng = it / CB, n = ng / G, g = ng % G;
                int64_t c0 = cb * cper, c1 = c0 + cper < Cg ? c0 + cper : Cg;
                if (c0 >= c1) continue;
                int64_t r0 = c0 * KK, r1 = c1 * KK, mp = (r1 - r0 + kn->mr - 1) / kn->mr;
                float *gxg = gx + (n * s->C + g * Cg) * HW;
                const float *gyg = gy + (n * s->O + g * Og) * OHW, *wg = w + g * Og * Kg;
                if (!assign) memset(gxg + c0 * HW, 0, sizeof(float) * (size_t)((c1 - c0) * HW));
                md__pack_a(kn, wg + r0, 1, Kg, r1 - r0, Og, 0, mp, pa);   /* A[r][o] = w[o][r0 + r] */
                for (int64_t j0 = 0; j0 < OHW; j0 += T) {
                    int64_t j1 = j0 + T < OHW ? j0 + T : OHW, len = j1 - j0;
                    md__pack_b(kn, gyg + j0, OHW, 1, Og, len, pb);
                    md__gemm_packed(kn, r1 - r0, len, Og, pa, Og, pb, col, len, 0);
                    if (assign) col2im_assign(kn, s, col, c0, c1, j0, j1, gxg);
                    else col2im_tile(kn, s, col, r0, r1, j0, j1, gxg);
                }
            }
        }
        return;
    }
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
                    col2im_tile(kn, s, col, r0, r1, j0, j1, gxg);
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
    const md__gemm_kernel *kn = md__convk();
    if (kn) {
        if (md__winograd_applies(s)) md__winograd_backward_weight(kn, s, x, gy, gw, work, nthreads);
        else backward_weight_packed(kn, s, x, gy, gw, work, nthreads);
        return;
    }
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
