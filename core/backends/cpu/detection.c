/* CPU kernels of the detection ops, mmcv 1.7 semantics (see detection.h). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "backends/cpu/detection.h"
#include "backends/cpu/sort.h"

/* ---- RoIAlign ----
 * mmcv's sampling grid is separable: sample rows depend on (ph, iy) only and
 * columns on (pw, ix) only, and a bin's average of bilinear samples is
 *   out[ph][pw] = 1/count * sum_x wx[pw][x] * sum_r wy[ph][r] * f[r][x]
 * with wy[ph] (wx[pw]) the bin's bilinear weights folded onto the feature
 * rows (columns) they touch: a short band per bin. Each RoI's bands are
 * built once; per channel, the vertical pass adds whole row segments (the
 * RoI's column span) scaled by wy (contiguous, vectorised), then the
 * horizontal pass takes each bin's short dot product with wx: a fraction of
 * the multiply-adds of sampling every point. */
typedef struct axis_band {
    int32_t *start, *len, *off;   /* per output cell: first feature index, band length, offset in w */
    float *w;                     /* the folded weights, bands back to back */
    size_t ncap, wcap;
} axis_band;

/* mmcv's bilinear_interpolate boundary rules along one axis: a coordinate
 * below -1 or beyond size contributes 0 (*lo = -1); otherwise it is clamped
 * to the edge. */
static void make_tap(float v, int64_t size, int32_t *lo, int32_t *hi, float *wl, float *wh) {
    *lo = *hi = -1;
    *wl = *wh = 0.0f;
    if (v < -1.0f || v > (float)size) return;
    if (v <= 0) v = 0;
    int32_t l = (int32_t)v, h;
    if (l >= size - 1) {
        h = l = (int32_t)(size - 1);
        v = (float)l;
    } else {
        h = l + 1;
    }
    float d = v - (float)l;
    *lo = l;
    *hi = h;
    *wl = 1.0f - d;   /* weight of lo */
    *wh = d;          /* weight of hi */
}

/* The bands of n cells of width bin from start, g samples each (mmcv's
 * sample positions, computed as mmcv does), over an axis of size. */
static int build_band(axis_band *a, float start, float bin, int n, int g, int64_t size) {
    if ((size_t)n > a->ncap) {
        int32_t *p = realloc(a->start, sizeof *p * 3 * (size_t)n);
        if (!p) return -1;
        a->start = p;
        a->len = p + n;
        a->off = p + 2 * n;
        a->ncap = (size_t)n;
    }
    size_t total = 0;
    for (int c = 0; c < n; c++) {
        int32_t mn = INT32_MAX, mx = -1;
        for (int i = 0; i < g; i++) {
            int32_t lo, hi;
            float wl, wh;
            make_tap(start + (float)c * bin + (float)(i + .5f) * bin / (float)g, size, &lo, &hi, &wl, &wh);
            if (lo < 0) continue;
            if (lo < mn) mn = lo;
            if (hi > mx) mx = hi;
        }
        a->start[c] = mx < 0 ? 0 : mn;
        a->len[c] = mx < 0 ? 0 : mx - mn + 1;
        a->off[c] = (int32_t)total;
        total += (size_t)a->len[c];
    }
    if (total > a->wcap) {
        float *w = realloc(a->w, sizeof *w * total);
        if (!w) return -1;
        a->w = w;
        a->wcap = total;
    }
    if (total) memset(a->w, 0, sizeof(float) * total);
    for (int c = 0; c < n; c++) {
        float *w = a->w + a->off[c];
        for (int i = 0; i < g; i++) {
            int32_t lo, hi;
            float wl, wh;
            make_tap(start + (float)c * bin + (float)(i + .5f) * bin / (float)g, size, &lo, &hi, &wl, &wh);
            if (lo < 0) continue;
            w[lo - a->start[c]] += wl;
            w[hi - a->start[c]] += wh;
        }
    }
    return 0;
}

/* One RoI's geometry: its bands and the span of feature columns
 * [x0, x0 + nx) they read. */
typedef struct roi_geom {
    int64_t batch;
    float inv_count;   /* 1 / max(gh * gw, 1) */
    axis_band ys, xs;
    int32_t x0, nx;
} roi_geom;

static int roi_geometry(const float *roi, float scale, bool aligned, int oh, int ow, int sr, int64_t H,
                        int64_t W, roi_geom *g) {
    float off = aligned ? 0.5f : 0.0f;
    float sw = roi[1] * scale - off, sh = roi[2] * scale - off;
    float ew = roi[3] * scale - off, eh = roi[4] * scale - off;
    float rw = ew - sw, rh = eh - sh;
    if (!aligned) {   /* mmcv's legacy mode: RoIs at least 1 px */
        rw = rw > 1.0f ? rw : 1.0f;
        rh = rh > 1.0f ? rh : 1.0f;
    }
    float bh = rh / (float)oh, bw = rw / (float)ow;
    int gh = sr > 0 ? sr : (int)ceilf(rh / (float)oh);
    int gw = sr > 0 ? sr : (int)ceilf(rw / (float)ow);
    if (gh < 0) gh = 0;
    if (gw < 0) gw = 0;
    int cnt = gh * gw;
    g->batch = (int64_t)roi[0];
    g->inv_count = 1.0f / (float)(cnt > 1 ? cnt : 1);
    if (build_band(&g->ys, sh, bh, oh, gh, H) != 0 || build_band(&g->xs, sw, bw, ow, gw, W) != 0) return -1;
    int32_t x0 = INT32_MAX, x1 = 0;
    for (int pw = 0; pw < ow; pw++) {
        if (!g->xs.len[pw]) continue;
        if (g->xs.start[pw] < x0) x0 = g->xs.start[pw];
        if (g->xs.start[pw] + g->xs.len[pw] > x1) x1 = g->xs.start[pw] + g->xs.len[pw];
    }
    if (x0 >= x1) x0 = x1 = 0;
    g->x0 = x0;
    g->nx = x1 - x0;
    return 0;
}

static void geoms_free(roi_geom *gs, int64_t K) {
    for (int64_t k = 0; gs && k < K; k++) {
        free(gs[k].ys.start);
        free(gs[k].ys.w);
        free(gs[k].xs.start);
        free(gs[k].xs.w);
    }
    free(gs);
}

/* Every RoI's geometry, and the widest column span; NULL on out of memory. */
static roi_geom *geoms_build(const float *rois, int64_t K, float scale, bool aligned, int oh, int ow, int sr,
                             int64_t H, int64_t W, int32_t *max_nx) {
    roi_geom *gs = calloc((size_t)(K ? K : 1), sizeof *gs);
    if (!gs) return NULL;
    int failed = 0;
    int32_t mx = 0;
    #pragma omp parallel for if (K > 64) schedule(static) reduction(| : failed) reduction(max : mx)
    for (int64_t k = 0; k < K; k++) {
        if (roi_geometry(rois + k * 5, scale, aligned, oh, ow, sr, H, W, &gs[k]) != 0) failed = 1;
        else if (gs[k].nx > mx) mx = gs[k].nx;
    }
    if (failed) {
        geoms_free(gs, K);
        return NULL;
    }
    *max_nx = mx;
    return gs;
}

/* What one (channel, RoI) pass reads and writes: the forward reads feat
 * and writes out; the backward reads grad_out and adds into grad_feat. */
typedef struct roi_io {
    const float *in;
    float *out;
    int64_t C, H, W;
    int oh, ow;
} roi_io;

/* The forward for channel c of RoI g (k): bin by bin, v = the RoI's rows
 * summed with their vertical weights, then each bin's band of v. */
static void roi_fwd_channel(const roi_io *io, const roi_geom *g, int64_t c, int64_t k, float *v) {
    const int oh = io->oh, ow = io->ow;
    const float *f = io->in + (g->batch * io->C + c) * io->H * io->W + g->x0;
    const axis_band *xs = &g->xs, *ys = &g->ys;
    float *o = io->out + (k * io->C + c) * oh * ow;
    const int32_t nx = g->nx;
    for (int ph = 0; ph < oh; ph++) {
        /* vertical: v = sum_r wy[r] * f[r][x0 : x0 + nx] */
        for (int32_t x = 0; x < nx; x++) v[x] = 0.0f;
        const float *w = ys->w + ys->off[ph];
        for (int j = 0; j < ys->len[ph]; j++) {
            if (w[j] == 0.0f) continue;
            const float *row = f + (int64_t)(ys->start[ph] + j) * io->W, wj = w[j];
            #pragma omp simd
            for (int32_t x = 0; x < nx; x++) v[x] += wj * row[x];
        }
        /* horizontal: each bin's band of v */
        for (int pw = 0; pw < ow; pw++) {
            const float *wx = xs->w + xs->off[pw], *vx = v + (xs->start[pw] - g->x0);
            float sum = 0.0f;
            for (int j = 0; j < xs->len[pw]; j++) sum += wx[j] * vx[j];
            o[ph * ow + pw] = sum * g->inv_count;
        }
    }
}

/* Its transpose: the bins' gradient spread on v, then v into the rows. */
static void roi_bwd_channel(const roi_io *io, const roi_geom *g, int64_t c, int64_t k, float *v) {
    const int oh = io->oh, ow = io->ow;
    const axis_band *xs = &g->xs, *ys = &g->ys;
    float *gf = io->out + (g->batch * io->C + c) * io->H * io->W + g->x0;
    const float *go = io->in + (k * io->C + c) * oh * ow;
    const int32_t nx = g->nx;
    for (int ph = 0; ph < oh; ph++) {
        /* the horizontal pass transposed: the bins' gradient on v */
        for (int32_t x = 0; x < nx; x++) v[x] = 0.0f;
        for (int pw = 0; pw < ow; pw++) {
            const float *wx = xs->w + xs->off[pw];
            float *vx = v + (xs->start[pw] - g->x0), gb = go[ph * ow + pw] * g->inv_count;
            for (int j = 0; j < xs->len[pw]; j++) vx[j] += wx[j] * gb;
        }
        /* the vertical pass transposed: into the feature rows */
        const float *w = ys->w + ys->off[ph];
        for (int j = 0; j < ys->len[ph]; j++) {
            if (w[j] == 0.0f) continue;
            float *row = gf + (int64_t)(ys->start[ph] + j) * io->W, wj = w[j];
            #pragma omp simd
            for (int32_t x = 0; x < nx; x++) row[x] += wj * v[x];
        }
    }
}

/* Channel by channel, all RoIs: a channel plane is visited by every RoI
 * while it is still in cache (RoIs overlap), where RoI by RoI would fetch
 * each RoI's patch of every plane from memory, planes H*W floats apart.
 * Each channel has one writer, visiting RoIs in order: the backward's sums
 * do not depend on the thread count. */
static int roi_align_run(const roi_io *io, const float *rois, int64_t K, float spatial_scale, int sampling_ratio,
                         bool aligned,
                         void (*channel)(const roi_io *, const roi_geom *, int64_t, int64_t, float *)) {
    int32_t max_nx = 0;
    roi_geom *gs = geoms_build(rois, K, spatial_scale, aligned, io->oh, io->ow, sampling_ratio, io->H, io->W,
                               &max_nx);
    if (!gs) return -1;
    int failed = 0;
    #pragma omp parallel if (K * io->C * io->oh * io->ow > 8192)
    {
        float *v = malloc(sizeof *v * (size_t)(max_nx ? max_nx : 1));   /* one RoI row's worth */
        if (!v) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t c = 0; c < io->C; c++) {
            if (!v) continue;
            for (int64_t k = 0; k < K; k++) channel(io, &gs[k], c, k, v);
        }
        free(v);
    }
    geoms_free(gs, K);
    return failed ? -1 : 0;
}

int md__cpu_roi_align_forward(const float *feat, int64_t N, int64_t C, int64_t H, int64_t W,
                              const float *rois, int64_t K, int oh, int ow, float spatial_scale,
                              int sampling_ratio, bool aligned, float *out) {
    (void)N;
    const roi_io io = { feat, out, C, H, W, oh, ow };
    return roi_align_run(&io, rois, K, spatial_scale, sampling_ratio, aligned, roi_fwd_channel);
}

int md__cpu_roi_align_backward(const float *grad_out, int64_t N, int64_t C, int64_t H, int64_t W,
                               const float *rois, int64_t K, int oh, int ow, float spatial_scale,
                               int sampling_ratio, bool aligned, float *grad_feat) {
    (void)N;
    const roi_io io = { grad_out, grad_feat, C, H, W, oh, ow };
    return roi_align_run(&io, rois, K, spatial_scale, sampling_ratio, aligned, roi_bwd_channel);
}

/* ---- NMS ---- */
#define NMS_BLOCK 64

/* Greedy suppression over seq[lo..hi) (one group, in its score order):
 * flag[i] = 1 for each kept box; at most max_num kept when max_num > 0. */
static void nms_run(const float *boxes, const int64_t *seq, int64_t lo, int64_t hi, float thr, int64_t max_num,
                    float *kb, int64_t n, unsigned char *flag) {
    float *kx1 = kb, *ky1 = kb + n, *kx2 = kb + 2 * n, *ky2 = kb + 3 * n, *ka = kb + 4 * n;
    int64_t nk = 0;
    for (int64_t r = lo; r < hi; r++) {
        const float *b = boxes + seq[r] * 4;
        float x1 = b[0], y1 = b[1], x2 = b[2], y2 = b[3];
        float area = (x2 - x1) * (y2 - y1);
        int sup = 0;
        /* mmcv: ovr = inter / (area_kept + area_cand - inter) > thr, in
         * float; blocks of kept boxes compared without branches. */
        for (int64_t j0 = 0; j0 < nk && !sup; j0 += NMS_BLOCK) {
            int64_t j1 = j0 + NMS_BLOCK < nk ? j0 + NMS_BLOCK : nk;
            #pragma omp simd reduction(| : sup)
            for (int64_t j = j0; j < j1; j++) {
                float xx1 = kx1[j] > x1 ? kx1[j] : x1, yy1 = ky1[j] > y1 ? ky1[j] : y1;
                float xx2 = kx2[j] < x2 ? kx2[j] : x2, yy2 = ky2[j] < y2 ? ky2[j] : y2;
                float w = xx2 - xx1, h = yy2 - yy1;
                w = w > 0.0f ? w : 0.0f;
                h = h > 0.0f ? h : 0.0f;
                float inter = w * h;
                float ovr = inter / (ka[j] + area - inter);
                sup |= ovr > thr;
            }
        }
        if (sup) continue;
        kx1[nk] = x1; ky1[nk] = y1; kx2[nk] = x2; ky2[nk] = y2; ka[nk] = area;
        nk++;
        flag[seq[r]] = 1;
        if (max_num > 0 && nk >= max_num) break;
    }
}

int64_t md__cpu_nms(const float *boxes, const float *scores, const int64_t *group, int64_t n_groups,
                    int64_t n, float thr, int64_t max_num, bool split, int64_t *keep) {
    if (n == 0) return 0;
    if (!group) split = false;
    int64_t *ord = malloc(sizeof *ord * (size_t)n), *seq = malloc(sizeof *seq * (size_t)n);
    float *kb = malloc(sizeof *kb * 5 * (size_t)n);   /* kept boxes, SoA x1 y1 x2 y2 area */
    float *sub = split ? malloc(sizeof *sub * (size_t)n) : NULL;
    unsigned char *flag = calloc((size_t)n, 1);
    int64_t *starts = group ? calloc((size_t)n_groups + 1, sizeof *starts) : NULL;
    int64_t count = -1;
    if (!ord || !seq || !kb || !flag || (group && !starts) || (split && !sub)) goto done;
    if (group) {   /* each group's members, by index */
        for (int64_t i = 0; i < n; i++) starts[group[i] + 1]++;
        for (int64_t g = 0; g < n_groups; g++) starts[g + 1] += starts[g];
    }
    if (!split) {
        /* mmcv's nms sorts all scores with torch.sort: ties in its order */
        if (md__cpu_torch_sort_desc(scores, n, ord)) goto done;
        if (group) {   /* each group's boxes in that order (stable counting sort) */
            int64_t *pos = malloc(sizeof *pos * (size_t)n_groups);
            if (!pos) goto done;
            memcpy(pos, starts, sizeof *pos * (size_t)n_groups);
            for (int64_t r = 0; r < n; r++) seq[pos[group[ord[r]]]++] = ord[r];
            free(pos);
        } else {
            memcpy(seq, ord, sizeof *seq * (size_t)n);
        }
        for (int64_t g = 0; g < (group ? n_groups : 1); g++)
            nms_run(boxes, seq, group ? starts[g] : 0, group ? starts[g + 1] : n, thr, group ? -1 : max_num, kb, n,
                    flag);
        count = 0;
        for (int64_t r = 0; r < n && (max_num <= 0 || count < max_num); r++)
            if (flag[ord[r]]) keep[count++] = ord[r];
        goto done;
    }
    /* mmcv's batched_nms from split_thr boxes on: one nms per group over its
     * members in index order (its own torch.sort), then the kept boxes, in
     * index order, sorted by score once more */
    {
        int64_t *pos = malloc(sizeof *pos * (size_t)n_groups);
        if (!pos) goto done;
        memcpy(pos, starts, sizeof *pos * (size_t)n_groups);
        for (int64_t i = 0; i < n; i++) ord[pos[group[i]]++] = i;
        free(pos);
    }
    for (int64_t g = 0; g < n_groups; g++) {
        int64_t lo = starts[g], m = starts[g + 1] - lo;
        if (!m) continue;
        for (int64_t r = 0; r < m; r++) sub[r] = scores[ord[lo + r]];
        if (md__cpu_torch_sort_desc(sub, m, seq + lo)) goto done;
        for (int64_t r = 0; r < m; r++) seq[lo + r] = ord[lo + seq[lo + r]];
        nms_run(boxes, seq, lo, lo + m, thr, -1, kb, n, flag);
    }
    int64_t nk = 0;
    for (int64_t i = 0; i < n; i++)
        if (flag[i]) {
            ord[nk] = i;
            sub[nk++] = scores[i];
        }
    if (md__cpu_torch_sort_desc(sub, nk, seq)) goto done;
    count = max_num > 0 && nk > max_num ? max_num : nk;
    for (int64_t r = 0; r < count; r++) keep[r] = ord[seq[r]];
done:
    free(ord);
    free(seq);
    free(kb);
    free(sub);
    free(flag);
    free(starts);
    return count;
}

/* ---- bbox overlaps ---- */
static inline void max_grad(float x, float y, float g, float *gx, float *gy) {
    if (x > y) *gx += g;
    else if (x < y) *gy += g;
    else { *gx += 0.5f * g; *gy += 0.5f * g; }
}
static inline void min_grad(float x, float y, float g, float *gx, float *gy) {
    if (x < y) *gx += g;
    else if (x > y) *gy += g;
    else { *gx += 0.5f * g; *gy += 0.5f * g; }
}

void md__iou_pair_backward(const float *a, const float *b, int mode, float eps, float g, float *ga, float *gb) {
    for (int k = 0; k < 4; k++) ga[k] = gb[k] = 0.0f;
    float area1 = (a[2] - a[0]) * (a[3] - a[1]);
    float area2 = (b[2] - b[0]) * (b[3] - b[1]);
    float ltx = a[0] > b[0] ? a[0] : b[0], lty = a[1] > b[1] ? a[1] : b[1];
    float rbx = a[2] < b[2] ? a[2] : b[2], rby = a[3] < b[3] ? a[3] : b[3];
    float wr = rbx - ltx, hr = rby - lty;
    float w = wr < 0 ? 0 : wr, h = hr < 0 ? 0 : hr;
    float overlap = w * h;
    float ur = mode == 1 ? area1 : area1 + area2 - overlap;
    float uni = ur > eps ? ur : eps;
    float g_uni = 0.0f, g_iou = g;
    if (mode == 2) {
        float elx = a[0] < b[0] ? a[0] : b[0], ely = a[1] < b[1] ? a[1] : b[1];
        float erx = a[2] > b[2] ? a[2] : b[2], ery = a[3] > b[3] ? a[3] : b[3];
        float ewr = erx - elx, ehr = ery - ely;
        float ew = ewr < 0 ? 0 : ewr, eh = ehr < 0 ? 0 : ehr;
        float ear = ew * eh;
        float ea = ear > eps ? ear : eps;
        /* giou = iou - (ea - uni) / ea */
        g_uni += g / ea;
        float g_ea = -g * uni / (ea * ea), g_ear = 0.0f, g_eps = 0.0f;
        max_grad(ear, eps, g_ea, &g_ear, &g_eps);
        float g_ew = ewr >= 0 ? g_ear * eh : 0.0f, g_eh = ehr >= 0 ? g_ear * ew : 0.0f;
        max_grad(a[2], b[2], g_ew, &ga[2], &gb[2]);
        min_grad(a[0], b[0], -g_ew, &ga[0], &gb[0]);
        max_grad(a[3], b[3], g_eh, &ga[3], &gb[3]);
        min_grad(a[1], b[1], -g_eh, &ga[1], &gb[1]);
    }
    float g_ov = g_iou / uni;
    g_uni -= g_iou * overlap / (uni * uni);
    float g_ur = 0.0f, g_eps = 0.0f;
    max_grad(ur, eps, g_uni, &g_ur, &g_eps);
    float g_a1 = g_ur, g_a2 = 0.0f;
    if (mode != 1) {
        g_a2 = g_ur;
        g_ov -= g_ur;
    }
    float g_w = wr >= 0 ? g_ov * h : 0.0f, g_h = hr >= 0 ? g_ov * w : 0.0f;
    min_grad(a[2], b[2], g_w, &ga[2], &gb[2]);
    max_grad(a[0], b[0], -g_w, &ga[0], &gb[0]);
    min_grad(a[3], b[3], g_h, &ga[3], &gb[3]);
    max_grad(a[1], b[1], -g_h, &ga[1], &gb[1]);
    float h1 = a[3] - a[1], w1 = a[2] - a[0], h2 = b[3] - b[1], w2 = b[2] - b[0];
    ga[2] += g_a1 * h1; ga[0] -= g_a1 * h1; ga[3] += g_a1 * w1; ga[1] -= g_a1 * w1;
    gb[2] += g_a2 * h2; gb[0] -= g_a2 * h2; gb[3] += g_a2 * w2; gb[1] -= g_a2 * w2;
}

void md__cpu_bbox_overlaps_forward(const float *a, int64_t n, const float *b, int64_t m, int mode,
                                   bool aligned, float eps, float *out) {
    if (aligned) {
        #pragma omp parallel for if (n > 16384) schedule(static)
        for (int64_t i = 0; i < n; i++) out[i] = md__iou_pair(a + 4 * i, b + 4 * i, mode, eps);
        return;
    }
    #pragma omp parallel for if (n * m > 16384) schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m; j++) out[i * m + j] = md__iou_pair(a + 4 * i, b + 4 * j, mode, eps);
}

void md__cpu_bbox_overlaps_backward(const float *a, int64_t n, const float *b, int64_t m, int mode,
                                    bool aligned, float eps, const float *grad_out, float *grad_a,
                                    float *grad_b) {
    if (aligned) {
        #pragma omp parallel for if (n > 8192) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            float ga[4], gb[4];
            md__iou_pair_backward(a + 4 * i, b + 4 * i, mode, eps, grad_out[i], ga, gb);
            for (int k = 0; k < 4; k++) {
                if (grad_a) grad_a[4 * i + k] = ga[k];
                if (grad_b) grad_b[4 * i + k] = gb[k];
            }
        }
        return;
    }
    /* Two passes so that every gradient row has a single writer. */
    if (grad_a) {
        #pragma omp parallel for if (n * m > 8192) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            float acc[4] = { 0 }, ga[4], gb[4];
            for (int64_t j = 0; j < m; j++) {
                md__iou_pair_backward(a + 4 * i, b + 4 * j, mode, eps, grad_out[i * m + j], ga, gb);
                for (int k = 0; k < 4; k++) acc[k] += ga[k];
            }
            for (int k = 0; k < 4; k++) grad_a[4 * i + k] = acc[k];
        }
    }
    if (grad_b) {
        #pragma omp parallel for if (n * m > 8192) schedule(static)
        for (int64_t j = 0; j < m; j++) {
            float acc[4] = { 0 }, ga[4], gb[4];
            for (int64_t i = 0; i < n; i++) {
                md__iou_pair_backward(a + 4 * i, b + 4 * j, mode, eps, grad_out[i * m + j], ga, gb);
                for (int k = 0; k < 4; k++) acc[k] += gb[k];
            }
            for (int k = 0; k < 4; k++) grad_b[4 * j + k] = acc[k];
        }
    }
}
