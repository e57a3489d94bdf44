/* CPU deformable convolution: columns sampled at the offset taps, then GEMM.
 *
 * The output pixels of one image are taken in tiles of T. For a tile, every
 * tap of every deform group is resolved once (md__dcn_tap: four neighbours
 * and their weights, shared by the group's channels); the columns
 * col[c*KH*KW + k, t] (the sampled value times the mask) are written in
 * parallel over rows, then each group's GEMM y_g = w_g col_g runs on them:
 * the packed GEMM of conv_gemm.h (columns written straight into its B
 * panels, the weight packed once per call, the bias as its epilogue), or
 * OpenBLAS where no packed kernel is in force.
 *
 * The backward runs the same tiles: gw_g += gy_g col_g^T; gcol_g = w_g^T
 * gy_g; then gx (each channel's taps scattered to their neighbours, in
 * parallel over channels) and the offset and mask gradients (per tap and
 * pixel, summed over the group's channels, in parallel over taps) from
 * gcol. Every element is written by one thread in an order fixed by the
 * shape. */
#include <omp.h>
#include <string.h>
#include "backends/cpu/deform_conv.h"
#include "backends/cpu/conv_gemm.h"
#include "backends/cpu/gemm.h"
#include "backends/deform_sample.h"

#define COL_FLOATS ((int64_t)1 << 20)   /* a tile's columns: 4 MB */
#define T_MIN 32
#define TAP_FLOATS ((int64_t)(sizeof(md__dcn_tap) / sizeof(float)))

static int64_t kk_of(const md__deform_shape *s) { return s->c.KH * s->c.KW; }

/* Output pixels per tile. */
static int64_t tile_len(const md__deform_shape *s) {
    int64_t rows = s->c.C * kk_of(s), ohw = s->c.OH * s->c.OW;
    int64_t t = rows > 0 ? COL_FLOATS / rows : ohw;
    if (t < T_MIN) t = T_MIN;
    if (t > ohw) t = ohw;
    return t > 0 ? t : 1;
}

static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

/* Where a tile's columns of group g live: packed B panels (kn), or a
 * row-major [Kg, len] block. */
typedef struct col_layout {
    const md__gemm_kernel *kn;
    int64_t len, group_floats, pstride;
} col_layout;

static col_layout layout_of(const md__deform_shape *s, const md__gemm_kernel *kn, int64_t len) {
    int64_t Kg = s->c.C / s->c.G * kk_of(s);
    col_layout L = { kn, len, 0, 0 };
    if (kn) {
        L.pstride = md__pb_stride(kn, Kg);
        L.group_floats = (int64_t)md__pack_b_floats(kn, len, Kg);
        L.group_floats = (L.group_floats + 15) / 16 * 16;
    } else {
        L.group_floats = Kg * len;
    }
    return L;
}

size_t md__deform_conv2d_work_floats(const md__deform_shape *s, int which, int nthreads) {
    (void)nthreads;
    const md__conv_shape *c = &s->c;
    int64_t T = tile_len(s), taps = s->DG * kk_of(s) * T, Kg = c->C / c->G * kk_of(s), Og = c->O / c->G;
    const md__gemm_kernel *kn = which == MD_DCN_FWD ? md__convk() : NULL;
    col_layout L = layout_of(s, kn, T);
    size_t f = (size_t)(taps * TAP_FLOATS) + 64;
    if (which == MD_DCN_FWD) {
        f += (size_t)(c->G * L.group_floats) + 16;
        if (kn) f += (size_t)c->G * (md__pack_a_floats(kn, Og, Kg) + 16);
    } else {
        f += 2 * (size_t)(c->C * kk_of(s) * T) + 32;   /* col and gcol */
    }
    return f;
}

/* The taps of pixels [j0, j0 + len) of image n: tap[(dg*KK + k)*len + t]. */
static void resolve_taps(const md__deform_shape *s, const float *off, int64_t n, int64_t j0, int64_t len,
                         md__dcn_tap *tap, int nt) {
    const md__conv_shape *c = &s->c;
    const int64_t KK = kk_of(s), OHW = c->OH * c->OW, OW = c->OW, total = s->DG * KK * len;
    const float *on = off + n * s->DG * 2 * KK * OHW;
    #pragma omp parallel for num_threads(nt) schedule(static) if (total > 4096)
    for (int64_t e = 0; e < total; e++) {
        int64_t t = e % len, dk = e / len, k = dk % KK, j = j0 + t, oh = j / OW, ow = j % OW;
        const float *o = on + 2 * dk * OHW;   /* = ((dg*KK + k)*2)*OHW */
        float h = md__dcn_pos(oh, c->sh, c->ph, k / c->KW, c->dh, o[j]);
        float w = md__dcn_pos(ow, c->sw, c->pw, k % c->KW, c->dw, o[OHW + j]);
        md__dcn_tap_at(h, w, c->H, c->W, &tap[e]);
    }
}

/* Columns of image n's tile: row r = c*KK + k of group g = c / Cg (row
 * r - g*Kg of its block), the sampled value times the mask. */
static void write_columns(const md__deform_shape *s, const float *x, const float *mask, int64_t n, int64_t j0,
                          const md__dcn_tap *tap, const col_layout *L, float *col, int nt) {
    const md__conv_shape *c = &s->c;
    const int64_t KK = kk_of(s), HW = c->H * c->W, OHW = c->OH * c->OW, len = L->len;
    const int64_t Cg = c->C / c->G, Kg = Cg * KK, Cd = c->C / s->DG, rows = c->C * KK;
    const float *xn = x + n * c->C * HW;
    const float *mn = mask ? mask + n * s->DG * KK * OHW : NULL;
    #pragma omp parallel for num_threads(nt) schedule(static) if (rows * len > 16384)
    for (int64_t r = 0; r < rows; r++) {
        int64_t ch = r / KK, k = r % KK, g = ch / Cg, dg = ch / Cd, rr = r - g * Kg;
        const float *p = xn + ch * HW;
        const md__dcn_tap *tp = tap + (dg * KK + k) * len;
        const float *m = mn ? mn + (dg * KK + k) * OHW + j0 : NULL;
        float *blk = col + g * L->group_floats;
        if (L->kn) {
            const int64_t nr = L->kn->nr;
            float *row = blk + rr * nr;
            for (int64_t t = 0; t < len; t++) {
                float v = md__dcn_value(&tp[t], p);
                row[t / nr * L->pstride + t % nr] = m ? v * m[t] : v;
            }
            for (int64_t t = len; t % nr; t++) row[t / nr * L->pstride + t % nr] = 0.0f;
        } else {
            float *row = blk + rr * len;
            for (int64_t t = 0; t < len; t++) {
                float v = md__dcn_value(&tp[t], p);
                row[t] = m ? v * m[t] : v;
            }
        }
    }
}

void md__cpu_deform_conv2d_forward(const md__deform_shape *s, const float *x, const float *off, const float *mask,
                                   const float *w, const float *bias, float *y, float *work, int nthreads) {
    const md__conv_shape *c = &s->c;
    const int64_t G = c->G, Og = c->O / G, Kg = c->C / G * kk_of(s), OHW = c->OH * c->OW, T = tile_len(s);
    if (c->N <= 0 || c->O <= 0 || OHW <= 0) return;
    const md__gemm_kernel *kn = md__convk();
    col_layout L0 = layout_of(s, kn, T);
    md__dcn_tap *tap = (md__dcn_tap *)align64(work);
    float *col = align64((float *)(tap + s->DG * kk_of(s) * T));
    float *pa = align64(col + G * L0.group_floats);
    size_t asz = kn ? (md__pack_a_floats(kn, Og, Kg) + 15) / 16 * 16 : 0;
    if (kn) {
        const int64_t mp = (Og + kn->mr - 1) / kn->mr;
        #pragma omp parallel for num_threads(nthreads) schedule(static) if (G * mp > 1)
        for (int64_t u = 0; u < G * mp; u++)
            md__pack_a(kn, w + u / mp * Og * Kg, Kg, 1, Og, Kg, u % mp, u % mp + 1, pa + (u / mp) * asz);
    }
    for (int64_t n = 0; n < c->N; n++) {
        for (int64_t j0 = 0; j0 < OHW; j0 += T) {
            int64_t len = OHW - j0 < T ? OHW - j0 : T;
            col_layout L = layout_of(s, kn, len);
            L.group_floats = L0.group_floats;
            resolve_taps(s, off, n, j0, len, tap, nthreads);
            write_columns(s, x, mask, n, j0, tap, &L, col, nthreads);
            float *yn = y + n * c->O * OHW + j0;
            if (kn) {
                /* units: (group, block of columns) with every weight panel
                 * passing over the block's B panels, kept in L2 */
                const int64_t nr = kn->nr, np = (len + nr - 1) / nr;
                int64_t per = (np + 2 * nthreads - 1) / (2 * nthreads);
                if (per > 8) per = 8;
                if (per < 1) per = 1;
                const int64_t nb = (np + per - 1) / per;
                #pragma omp parallel for num_threads(nthreads) schedule(static) if (G * nb > 1)
                for (int64_t u = 0; u < G * nb; u++) {
                    int64_t g = u / nb, b = u % nb, t0 = b * per * nr;
                    int64_t cols = len - t0 < per * nr ? len - t0 : per * nr;
                    md__epilogue ep = { NULL, bias ? bias + g * Og : NULL, 0 };
                    md__gemm_packed_ep(kn, Og, cols, Kg, pa + g * asz, Kg,
                                       col + g * L.group_floats + b * per * L.pstride, yn + g * Og * OHW + t0, OHW,
                                       0, bias ? &ep : NULL);
                }
            } else {
                for (int64_t g = 0; g < G; g++) {
                    float *yg = yn + g * Og * OHW;
                    md__sgemm_par(nthreads, false, false, Og, len, Kg, 1.0f, w + g * Og * Kg, Kg,
                                  col + g * L.group_floats, len, 0.0f, yg, OHW);
                    if (bias)
                        for (int64_t o = 0; o < Og; o++)
                            for (int64_t t = 0; t < len; t++) yg[o * OHW + t] += bias[g * Og + o];
                }
            }
        }
    }
}

void md__cpu_deform_conv2d_backward(const md__deform_shape *s, const float *x, const float *off, const float *mask,
                                    const float *w, const float *gy, float *gx, float *goff, float *gmask, float *gw,
                                    float *work, int nthreads) {
    const md__conv_shape *c = &s->c;
    const int64_t G = c->G, Og = c->O / G, Cg = c->C / G, KK = kk_of(s), Kg = Cg * KK, OHW = c->OH * c->OW;
    const int64_t HW = c->H * c->W, Cd = c->C / s->DG, T = tile_len(s), DG = s->DG;
    if (gx) memset(gx, 0, sizeof(float) * (size_t)(c->N * c->C * HW));
    if (gw) memset(gw, 0, sizeof(float) * (size_t)(c->O * Kg));
    if (c->N <= 0 || OHW <= 0) {
        if (goff) memset(goff, 0, sizeof(float) * (size_t)(c->N * DG * 2 * KK * OHW));
        if (gmask) memset(gmask, 0, sizeof(float) * (size_t)(c->N * DG * KK * OHW));
        return;
    }
    md__dcn_tap *tap = (md__dcn_tap *)align64(work);
    float *col = align64((float *)(tap + DG * KK * T));
    float *gcol = align64(col + c->C * KK * T);
    const bool sample_grads = gx || goff || gmask;
    for (int64_t n = 0; n < c->N; n++) {
        const float *xn = x + n * c->C * HW, *gyn = gy + n * c->O * OHW;
        const float *mn = mask ? mask + n * DG * KK * OHW : NULL;
        for (int64_t j0 = 0; j0 < OHW; j0 += T) {
            int64_t len = OHW - j0 < T ? OHW - j0 : T;
            resolve_taps(s, off, n, j0, len, tap, nthreads);
            if (gw) {
                col_layout L = layout_of(s, NULL, len);
                write_columns(s, x, mask, n, j0, tap, &L, col, nthreads);
                for (int64_t g = 0; g < G; g++)
                    md__sgemm_par(nthreads, false, true, Og, Kg, len, 1.0f, gyn + g * Og * OHW + j0, OHW,
                                  col + g * Kg * len, len, 1.0f, gw + g * Og * Kg, Kg);
            }
            if (!sample_grads) continue;
            for (int64_t g = 0; g < G; g++)
                md__sgemm_par(nthreads, true, false, Kg, len, Og, 1.0f, w + g * Og * Kg, Kg, gyn + g * Og * OHW + j0,
                              OHW, 0.0f, gcol + g * Kg * len, len);
            if (gx) {
                float *gxn = gx + n * c->C * HW;
                #pragma omp parallel for num_threads(nthreads) schedule(static) if (c->C * KK * len > 16384)
                for (int64_t ch = 0; ch < c->C; ch++) {
                    int64_t dg = ch / Cd;
                    float *gp = gxn + ch * HW;
                    for (int64_t k = 0; k < KK; k++) {
                        const md__dcn_tap *tp = tap + (dg * KK + k) * len;
                        const float *gr = gcol + (ch * KK + k) * len;
                        const float *m = mn ? mn + (dg * KK + k) * OHW + j0 : NULL;
                        for (int64_t t = 0; t < len; t++) {
                            float gv = m ? gr[t] * m[t] : gr[t];
                            for (int q = 0; q < 4; q++) gp[tp[t].idx[q]] += tp[t].w[q] * gv;
                        }
                    }
                }
            }
            if (goff || gmask) {
                const int64_t total = DG * KK * len;
                #pragma omp parallel for num_threads(nthreads) schedule(static) if (total * Cd > 16384)
                for (int64_t e = 0; e < total; e++) {
                    int64_t t = e % len, dk = e / len, dg = dk / KK, k = dk % KK;
                    const md__dcn_tap *tp = &tap[e];
                    float m = mn ? mn[dk * OHW + j0 + t] : 1.0f;
                    float vh = 0, vw = 0, mv = 0;
                    for (int64_t ch = dg * Cd; ch < (dg + 1) * Cd; ch++) {
                        const float *p = xn + ch * HW;
                        float gv = gcol[(ch * KK + k) * len + t];
                        float v[4] = { p[tp->idx[0]], p[tp->idx[1]], p[tp->idx[2]], p[tp->idx[3]] };
                        float wh = tp->gh[0] * v[0] + tp->gh[1] * v[1] + tp->gh[2] * v[2] + tp->gh[3] * v[3];
                        float ww = tp->gw[0] * v[0] + tp->gw[1] * v[1] + tp->gw[2] * v[2] + tp->gw[3] * v[3];
                        vh += wh * gv * m;
                        vw += ww * gv * m;
                        if (gmask) mv += gv * md__dcn_value(tp, p);
                    }
                    int64_t j = j0 + t;
                    if (goff) {
                        float *go = goff + (n * DG * KK + dk) * 2 * OHW;
                        go[j] = vh;
                        go[OHW + j] = vw;
                    }
                    if (gmask) gmask[(n * DG * KK + dk) * OHW + j] = mv;
                }
            }
        }
    }
}
