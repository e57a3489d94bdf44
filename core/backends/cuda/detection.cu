/* CUDA detection kernels: RoIAlign, NMS and box overlaps; mirrors
 * backends/cpu/detection.c (mmcv 1.7 semantics). Sorting is in sort.cu.
 *
 * Float arithmetic goes through __fadd_rn / __fmul_rn / ... where the CPU
 * kernel's expression could otherwise be contracted into an FMA: every
 * kernel here computes the CPU's operations in the CPU's order, so the
 * results are the same bits.
 *
 * RoIAlign forward: one thread per output (k, c, ph, pw), the RoI geometry
 * recomputed per thread. Backward, deterministic and without float atomics:
 * the RoIs come back to the host (sample counts per RoI, entry offsets);
 * one entry per bilinear tap (RoI, bin, sample, corner) is written with the
 * flat feature position it touches as key; a stable radix sort by key
 * groups the taps of each position in the CPU's order (RoI, bin, sample,
 * corner); then one thread per feature element (n, c, h, w) adds its
 * position's taps in that order from 0, as the CPU's scatter does.
 *
 * NMS: scores sorted on the host as the CPU backend sorts them (torch.sort's
 * CPU order: std::sort on (score, index) pairs, NaN first, ties as that
 * unstable sort leaves them, which mmcv's nms inherits), the boxes gathered
 * on the device in that order, the suppression bit mask (box i suppresses a later box j when
 * their IoU exceeds the threshold, within one group) computed on the device
 * in row chunks, and the greedy pass run on the host over the mask. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>
#include <cub/cub.cuh>
#include "backends/cuda/kernel_util.cuh"




#define FA __fadd_rn
#define FS __fsub_rn
#define FM __fmul_rn
#define FD __fdiv_rn

static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

/* ------------------------------------------------------------ RoIAlign -- */

/* Per-RoI geometry, as roi_geometry in the CPU kernel. */
struct roi_geo {
    int64_t batch;
    float sw, sh, bw, bh;
    int gh, gw;
    float inv_count;
};

__host__ __device__ static inline roi_geo make_geo(const float *roi, float scale, bool aligned, int oh, int ow,
                                                   int sr) {
    roi_geo g;
    float off = aligned ? 0.5f : 0.0f;
#ifdef __CUDA_ARCH__
    float sw = FS(FM(roi[1], scale), off), sh = FS(FM(roi[2], scale), off);
    float ew = FS(FM(roi[3], scale), off), eh = FS(FM(roi[4], scale), off);
    float rw = FS(ew, sw), rh = FS(eh, sh);
#else
    float sw = roi[1] * scale - off, sh = roi[2] * scale - off;
    float ew = roi[3] * scale - off, eh = roi[4] * scale - off;
    float rw = ew - sw, rh = eh - sh;
#endif
    if (!aligned) {
        rw = rw > 1.0f ? rw : 1.0f;
        rh = rh > 1.0f ? rh : 1.0f;
    }
#ifdef __CUDA_ARCH__
    float bh = FD(rh, (float)oh), bw = FD(rw, (float)ow);
    int gh = sr > 0 ? sr : (int)ceilf(FD(rh, (float)oh));
    int gw = sr > 0 ? sr : (int)ceilf(FD(rw, (float)ow));
#else
    float bh = rh / (float)oh, bw = rw / (float)ow;
    int gh = sr > 0 ? sr : (int)ceilf(rh / (float)oh);
    int gw = sr > 0 ? sr : (int)ceilf(rw / (float)ow);
#endif
    if (gh < 0) gh = 0;
    if (gw < 0) gw = 0;
    int cnt = gh * gw;
    g.batch = (int64_t)roi[0];
    g.sw = sw;
    g.sh = sh;
    g.bw = bw;
    g.bh = bh;
    g.gh = gh;
    g.gw = gw;
    g.inv_count = 1.0f / (float)(cnt > 1 ? cnt : 1);
    return g;
}

struct tap { int lo, hi; float wl, wh; };

/* make_tap of the CPU kernel: the sample coordinate start + p * bin +
 * (i + .5) * bin / grid, then mmcv's boundary rules. */
__device__ static inline tap make_tap(float start, float bin, int p, int i, int grid, int64_t size) {
    float v = FA(FA(start, FM((float)p, bin)), FD(FM((float)i + .5f, bin), (float)grid));
    tap t = { -1, -1, 0.0f, 0.0f };
    if (v < -1.0f || v > (float)size) return t;
    if (v <= 0) v = 0;
    int lo = (int)v, hi;
    if (lo >= size - 1) {
        hi = lo = (int)(size - 1);
        v = (float)lo;
    } else {
        hi = lo + 1;
    }
    float l = FS(v, (float)lo);
    t.lo = lo;
    t.hi = hi;
    t.wl = FS(1.0f, l);
    t.wh = l;
    return t;
}

__global__ void roi_align_fwd_kernel(const float *feat, int64_t C, int64_t H, int64_t W, const float *rois,
                                     int64_t K, int oh, int ow, float scale, int sr, bool aligned, float *out) {
    GRID_STRIDE(e, K * C * oh * ow) {
        int pw = (int)(e % ow), ph = (int)((e / ow) % oh);
        int64_t kc = e / ((int64_t)oh * ow), k = kc / C, c = kc % C;
        roi_geo g = make_geo(rois + 5 * k, scale, aligned, oh, ow, sr);
        const float *f = feat + (g.batch * C + c) * H * W;
        float sum = 0.0f;
        for (int iy = 0; iy < g.gh; iy++) {
            tap y = make_tap(g.sh, g.bh, ph, iy, g.gh, H);
            if (y.lo < 0) continue;
            const float *rl = f + (int64_t)y.lo * W, *rh = f + (int64_t)y.hi * W;
            for (int ix = 0; ix < g.gw; ix++) {
                tap x = make_tap(g.sw, g.bw, pw, ix, g.gw, W);
                if (x.lo < 0) continue;
                float t = FA(FA(FA(FM(FM(y.wl, x.wl), rl[x.lo]), FM(FM(y.wl, x.wh), rl[x.hi])),
                                FM(FM(y.wh, x.wl), rh[x.lo])),
                             FM(FM(y.wh, x.wh), rh[x.hi]));
                sum = FA(sum, t);
            }
        }
        out[e] = FM(sum, g.inv_count);
    }
}

extern "C" int md__cuda_roi_align_forward(const float *feat, int64_t N, int64_t C, int64_t H, int64_t W,
                                          const float *rois, int64_t K, int oh, int ow, float spatial_scale,
                                          int sampling_ratio, bool aligned, float *out) {
    (void)N;
    int64_t total = K * C * oh * ow;
    if (total <= 0) return 0;
    roi_align_fwd_kernel<<<grid_for(total), TPB, 0, md__cuda_stream()>>>(feat, C, H, W, rois, K, oh, ow,
                                                                          spatial_scale, sampling_ratio, aligned,
                                                                          out);
    return md__cuda_check(cudaGetLastError(), "roi_align_forward");
}

/* One bilinear tap of the backward pass: RoI k, bin, the two weights. */
struct roi_tap { int32_t k, bin; float wy, wx; };

/* Block b writes the taps of RoI b (grid-stride over RoIs): entry
 * ((bin * gh + iy) * gw + ix) * 4 + corner at off[k], corners in the CPU's
 * order (lo,lo) (lo,hi) (hi,lo) (hi,hi); key = n*H*W + position, or
 * `none` for a sample outside the map. */
__global__ void roi_tap_kernel(const float *rois, int64_t K, int oh, int ow, float scale, int sr, bool aligned,
                               int64_t H, int64_t W, const int64_t *off, uint64_t none, uint64_t *keys,
                               uint32_t *ids, roi_tap *taps) {
    for (int64_t k = blockIdx.x; k < K; k += gridDim.x) {
        roi_geo g = make_geo(rois + 5 * k, scale, aligned, oh, ow, sr);
        int64_t per_bin = (int64_t)g.gh * g.gw * 4, cnt = per_bin * oh * ow, base = off[k];
        for (int64_t e = threadIdx.x; e < cnt; e += blockDim.x) {
            int corner = (int)(e & 3);
            int64_t s = e >> 2;
            int ix = (int)(s % g.gw), iy = (int)((s / g.gw) % g.gh);
            int bin = (int)(s / ((int64_t)g.gw * g.gh));
            int ph = bin / ow, pw = bin % ow;
            tap y = make_tap(g.sh, g.bh, ph, iy, g.gh, H);
            tap x = make_tap(g.sw, g.bw, pw, ix, g.gw, W);
            uint64_t key = none;
            roi_tap t = { (int32_t)k, bin, 0.0f, 0.0f };
            if (y.lo >= 0 && x.lo >= 0) {
                int yy = corner < 2 ? y.lo : y.hi, xx = (corner & 1) ? x.hi : x.lo;
                key = (uint64_t)((g.batch * H + yy) * W + xx);
                t.wy = corner < 2 ? y.wl : y.wh;
                t.wx = (corner & 1) ? x.wh : x.wl;
            }
            keys[base + e] = key;
            ids[base + e] = (uint32_t)(base + e);
            taps[base + e] = t;
        }
    }
}

/* start/end of each key's run in the sorted keys (keys >= npos ignored). */
__global__ void run_bounds_kernel(const uint64_t *keys, int64_t E, uint64_t npos, uint32_t *start, uint32_t *end) {
    GRID_STRIDE(j, E) {
        uint64_t kj = keys[j];
        if (kj >= npos) continue;
        if (j == 0 || keys[j - 1] != kj) start[kj] = (uint32_t)j;
        if (j == E - 1 || keys[j + 1] != kj) end[kj] = (uint32_t)(j + 1);
    }
}

/* grad_feat[n, c, h, w] = 0 + each tap of position (n, h, w) in order:
 * ((grad_out[k, c, bin] * inv_count[k]) * wy) * wx, as the CPU's scatter. */
__global__ void roi_align_gather_kernel(const float *grad_out, int64_t N, int64_t C, int64_t HW, int64_t bins,
                                        const uint32_t *start, const uint32_t *end, const uint32_t *ids,
                                        const roi_tap *taps, const float *inv, float *gf) {
    GRID_STRIDE(e, N * C * HW) {
        int64_t p = e % HW, nc = e / HW, c = nc % C, n = nc / C;
        int64_t pos = n * HW + p;
        uint32_t j0 = start[pos], j1 = end[pos];
        float acc = 0.0f;
        for (uint32_t j = j0; j < j1; j++) {
            roi_tap t = taps[ids[j]];
            float gb = FM(grad_out[((int64_t)t.k * C + c) * bins + t.bin], inv[t.k]);
            acc = FA(acc, FM(FM(gb, t.wy), t.wx));
        }
        gf[e] = acc;
    }
}

static int bits_for(uint64_t v) {
    int b = 1;
    while (b < 64 && (v >> b) != 0) b++;
    return b;
}

extern "C" int md__cuda_roi_align_backward(const float *grad_out, int64_t N, int64_t C, int64_t H, int64_t W,
                                           const float *rois, int64_t K, int oh, int ow, float spatial_scale,
                                           int sampling_ratio, bool aligned, float *grad_feat) {
    static const char *what = "roi_align_backward";
    cudaStream_t st = md__cuda_stream();
    int64_t total = N * C * H * W;
    if (total <= 0) return 0;
    if (K == 0) return md__cuda_check(cudaMemsetAsync(grad_feat, 0, sizeof(float) * (size_t)total, st), what);
    /* sample grid per RoI on the host: entry offsets and 1 / count */
    float *hr = (float *)malloc(sizeof(float) * 5 * (size_t)K);
    int64_t *hoff = (int64_t *)malloc(sizeof(int64_t) * (size_t)(K + 1));
    float *hinv = (float *)malloc(sizeof(float) * (size_t)K);
    int rc = -1;
    if (!hr || !hoff || !hinv) {
        md__cuda_fail(what, "out of host memory for %lld RoIs", (long long)K);
        goto done;
    }
    if (md__cuda_copy(hr, rois, sizeof(float) * 5 * (size_t)K, MD_COPY_D2H) != 0) goto done;
    hoff[0] = 0;
    for (int64_t k = 0; k < K; k++) {
        roi_geo g = make_geo(hr + 5 * k, spatial_scale, aligned, oh, ow, sampling_ratio);
        hoff[k + 1] = hoff[k] + (int64_t)g.gh * g.gw * 4 * oh * ow;
        hinv[k] = g.inv_count;
    }
    {
        int64_t E = hoff[K], npos = N * H * W;
        if (E >= (int64_t)UINT32_MAX || npos >= (int64_t)UINT32_MAX) {
            md__cuda_fail(what, "%lld bilinear taps over %lld positions exceed 32-bit indexing", (long long)E,
                          (long long)npos);
            goto done;
        }
        int end_bit = bits_for((uint64_t)npos);   /* npos itself marks taps outside the map */
        size_t cub_bytes = 0;
        cub::DoubleBuffer<uint64_t> dk(NULL, NULL);
        cub::DoubleBuffer<uint32_t> dv(NULL, NULL);
        if (md__cuda_check(cub::DeviceRadixSort::SortPairs(NULL, cub_bytes, dk, dv, (int64_t)(E ? E : 1), 0,
                                                           end_bit, st),
                           what))
            goto done;
        size_t sz_off = align256(sizeof(int64_t) * (size_t)(K + 1)), sz_inv = align256(sizeof(float) * (size_t)K);
        size_t sz_k = align256(sizeof(uint64_t) * (size_t)(E ? E : 1)), sz_i = align256(sizeof(uint32_t) * (size_t)(E ? E : 1));
        size_t sz_t = align256(sizeof(roi_tap) * (size_t)(E ? E : 1)), sz_b = align256(sizeof(uint32_t) * (size_t)npos);
        size_t bytes = sz_off + sz_inv + 2 * sz_k + 2 * sz_i + sz_t + 2 * sz_b + align256(cub_bytes);
        char *s = (char *)md__cuda_scratch(bytes);
        if (!s) goto done;
        int64_t *doff = (int64_t *)s; s += sz_off;
        float *dinv = (float *)s; s += sz_inv;
        uint64_t *k0 = (uint64_t *)s; s += sz_k;
        uint64_t *k1 = (uint64_t *)s; s += sz_k;
        uint32_t *i0 = (uint32_t *)s; s += sz_i;
        uint32_t *i1 = (uint32_t *)s; s += sz_i;
        roi_tap *taps = (roi_tap *)s; s += sz_t;
        uint32_t *start = (uint32_t *)s; s += sz_b;
        uint32_t *end = (uint32_t *)s; s += sz_b;
        void *tmp = s;
        /* the host buffers must outlive the asynchronous copies: wait below */
        if (md__cuda_copy(doff, hoff, sizeof(int64_t) * (size_t)(K + 1), MD_COPY_H2D) != 0 ||
            md__cuda_copy(dinv, hinv, sizeof(float) * (size_t)K, MD_COPY_H2D) != 0)
            goto done;
        if (md__cuda_check(cudaMemsetAsync(start, 0, sizeof(uint32_t) * (size_t)npos, st), what) ||
            md__cuda_check(cudaMemsetAsync(end, 0, sizeof(uint32_t) * (size_t)npos, st), what))
            goto done;
        if (E > 0) {
            int64_t blocks = K < 65536 ? K : 65536;
            roi_tap_kernel<<<(unsigned)blocks, TPB, 0, st>>>(rois, K, oh, ow, spatial_scale, sampling_ratio, aligned,
                                                             H, W, doff, (uint64_t)npos, k0, i0, taps);
            if (md__cuda_check(cudaGetLastError(), "roi_align_backward (taps)")) goto done;
            cub::DoubleBuffer<uint64_t> bk(k0, k1);
            cub::DoubleBuffer<uint32_t> bv(i0, i1);
            if (md__cuda_check(cub::DeviceRadixSort::SortPairs(tmp, cub_bytes, bk, bv, E, 0, end_bit, st),
                               "roi_align_backward (sort)"))
                goto done;
            run_bounds_kernel<<<grid_for(E), TPB, 0, st>>>(bk.Current(), E, (uint64_t)npos, start, end);
            if (md__cuda_check(cudaGetLastError(), "roi_align_backward (runs)")) goto done;
            roi_align_gather_kernel<<<grid_for(total), TPB, 0, st>>>(grad_out, N, C, H * W, (int64_t)oh * ow,
                                                                     start, end, bv.Current(), taps, dinv,
                                                                     grad_feat);
            if (md__cuda_check(cudaGetLastError(), what)) goto done;
        } else if (md__cuda_check(cudaMemsetAsync(grad_feat, 0, sizeof(float) * (size_t)total, st), what)) {
            goto done;
        }
        /* no wait: copies from pageable host memory return once staged */
        rc = 0;
    }
done:
    free(hr);
    free(hoff);
    free(hinv);
    return rc;
}

/* ----------------------------------------------------------------- NMS -- */

/* Boxes and groups in sorted order, plus each box's area. */
__global__ void nms_gather_kernel(const float *boxes, const int64_t *group, const int32_t *ord, int64_t n,
                                  float4 *sb, float *area, int64_t *sg) {
    GRID_STRIDE(r, n) {
        const float *b = boxes + 4 * (int64_t)ord[r];
        float4 v = make_float4(b[0], b[1], b[2], b[3]);
        sb[r] = v;
        area[r] = FM(FS(v.z, v.x), FS(v.w, v.y));
        sg[r] = group ? group[ord[r]] : 0;
    }
}

#define NMS_TB 64

/* Bit j % 64 of mask[(i - r0) * words + j / 64]: kept box i (sorted
 * position, i in [r0, r1)) suppresses the later box j of its group, the
 * CPU's test inter / (area_kept + area_cand - inter) > thr. */
__global__ void nms_mask_kernel(const float4 *sb, const float *area, const int64_t *sg, int64_t n, int64_t r0,
                                int64_t r1, int64_t words, float thr, unsigned long long *mask) {
    __shared__ float4 cb[NMS_TB];
    __shared__ float ca[NMS_TB];
    __shared__ int64_t cg[NMS_TB];
    int64_t cblk = blockIdx.x, rblk = blockIdx.y;
    int64_t i = r0 + rblk * NMS_TB + threadIdx.x;
    int64_t c0 = cblk * NMS_TB;
    if (c0 + NMS_TB <= r0 + rblk * NMS_TB) {   /* every column precedes every row */
        if (i < r1) mask[(i - r0) * words + cblk] = 0;
        return;
    }
    int64_t jc = c0 + threadIdx.x;
    if (jc < n) {
        cb[threadIdx.x] = sb[jc];
        ca[threadIdx.x] = area[jc];
        cg[threadIdx.x] = sg[jc];
    }
    __syncthreads();
    if (i >= r1) return;
    float4 k = sb[i];
    float ka = area[i];
    int64_t kg = sg[i];
    unsigned long long bits = 0;
    int cnt = n - c0 < NMS_TB ? (int)(n - c0) : NMS_TB;
    for (int t = 0; t < cnt; t++) {
        int64_t j = c0 + t;
        if (j <= i || cg[t] != kg) continue;
        float4 b = cb[t];
        float xx1 = k.x > b.x ? k.x : b.x, yy1 = k.y > b.y ? k.y : b.y;
        float xx2 = k.z < b.z ? k.z : b.z, yy2 = k.w < b.w ? k.w : b.w;
        float w = FS(xx2, xx1), h = FS(yy2, yy1);
        w = w > 0.0f ? w : 0.0f;
        h = h > 0.0f ? h : 0.0f;
        float inter = FM(w, h);
        float ovr = FD(inter, FS(FA(ka, ca[t]), inter));
        if (ovr > thr) bits |= 1ull << t;
    }
    mask[(i - r0) * words + cblk] = bits;
}

#define NMS_CHUNK_BYTES ((size_t)64 << 20)

extern "C" int md__cuda_nms(const float *boxes, const float *scores, const int64_t *group, int64_t n, float iou_thr,
                            int64_t max_num, int64_t *keep, int64_t *count) {
    static const char *what = "nms";
    *count = 0;
    if (n <= 0) return 0;
    if (n >= INT32_MAX) return md__cuda_fail(what, "%lld boxes exceed 32-bit indexing", (long long)n);
    cudaStream_t st = md__cuda_stream();
    int64_t words = (n + 63) / 64;
    /* rows per mask chunk: a multiple of 64, at most NMS_CHUNK_BYTES */
    int64_t rows = (int64_t)(NMS_CHUNK_BYTES / (sizeof(unsigned long long) * (size_t)words)) / 64 * 64;
    if (rows < 64) rows = 64;
    if (rows > words * 64) rows = words * 64;
    size_t sz_k = align256(sizeof(int32_t) * (size_t)n), sz_b = align256(sizeof(float4) * (size_t)n);
    size_t sz_a = align256(sizeof(float) * (size_t)n), sz_g = align256(sizeof(int64_t) * (size_t)n);
    size_t sz_m = align256(sizeof(unsigned long long) * (size_t)(rows * words));
    char *s = (char *)md__cuda_scratch(sz_k + sz_b + sz_a + sz_g + sz_m);
    if (!s) return -1;
    int32_t *ord = (int32_t *)s; s += sz_k;
    float4 *sb = (float4 *)s; s += sz_b;
    float *area = (float *)s; s += sz_a;
    int64_t *sg = (int64_t *)s; s += sz_g;
    unsigned long long *dmask = (unsigned long long *)s;
    /* the order of mmcv's CPU nms, as the CPU backend: torch.sort on the
     * CPU is std::sort on (score, index) pairs compared by score, NaN
     * first; this host code is compiled against the same libstdc++ */
    {
        std::vector<std::pair<float, int32_t>> pr((size_t)n);
        std::vector<float> hs((size_t)n);
        std::vector<int32_t> ho((size_t)n);
        if (md__cuda_copy(hs.data(), scores, sizeof(float) * (size_t)n, MD_COPY_D2H) != 0) return -1;
        for (int64_t i = 0; i < n; i++) pr[(size_t)i] = std::make_pair(hs[(size_t)i], (int32_t)i);
        std::sort(pr.begin(), pr.end(), [](const std::pair<float, int32_t> &a, const std::pair<float, int32_t> &b) {
            return (std::isnan(a.first) && !std::isnan(b.first)) || a.first > b.first;
        });
        for (int64_t i = 0; i < n; i++) ho[(size_t)i] = pr[(size_t)i].second;
        if (md__cuda_copy(ord, ho.data(), sizeof(int32_t) * (size_t)n, MD_COPY_H2D) != 0) return -1;
    }
    nms_gather_kernel<<<grid_for(n), TPB, 0, st>>>(boxes, group, ord, n, sb, area, sg);
    if (md__cuda_check(cudaGetLastError(), "nms (gather)")) return -1;

    int32_t *hord = (int32_t *)malloc(sizeof(int32_t) * (size_t)n);
    unsigned long long *removed = (unsigned long long *)calloc((size_t)words, sizeof(unsigned long long));
    unsigned long long *hmask = (unsigned long long *)malloc(sizeof(unsigned long long) * (size_t)(rows * words));
    int rc = -1;
    int64_t cnt = 0;
    bool full = false;
    if (!hord || !removed || !hmask) {
        md__cuda_fail(what, "out of host memory for %lld boxes", (long long)n);
        goto done;
    }
    if (md__cuda_copy(hord, ord, sizeof(int32_t) * (size_t)n, MD_COPY_D2H) != 0) goto done;
    for (int64_t r0 = 0; r0 < n && !full; r0 += rows) {
        int64_t r1 = r0 + rows < n ? r0 + rows : n;
        dim3 grid((unsigned)words, (unsigned)((r1 - r0 + NMS_TB - 1) / NMS_TB));
        nms_mask_kernel<<<grid, NMS_TB, 0, st>>>(sb, area, sg, n, r0, r1, words, iou_thr, dmask);
        if (md__cuda_check(cudaGetLastError(), "nms (mask)")) goto done;
        if (md__cuda_copy(hmask, dmask, sizeof(unsigned long long) * (size_t)((r1 - r0) * words), MD_COPY_D2H) != 0)
            goto done;
        /* the greedy pass: a box not suppressed by a kept one is kept */
        for (int64_t r = r0; r < r1; r++) {
            if (removed[r / 64] >> (r % 64) & 1) continue;
            keep[cnt++] = hord[r];
            if (max_num > 0 && cnt >= max_num) {
                full = true;
                break;
            }
            const unsigned long long *row = hmask + (r - r0) * words;
            for (int64_t w = r / 64; w < words; w++) removed[w] |= row[w];
        }
    }
    *count = cnt;
    rc = 0;
done:
    free(hord);
    free(removed);
    free(hmask);
    return rc;
}

/* ------------------------------------------------------- bbox overlaps -- */

/* md__iou_pair, operation for operation. */
__device__ static inline float iou_pair(const float *a, const float *b, int mode, float eps) {
    float area1 = FM(FS(a[2], a[0]), FS(a[3], a[1]));
    float area2 = FM(FS(b[2], b[0]), FS(b[3], b[1]));
    float ltx = a[0] > b[0] ? a[0] : b[0], lty = a[1] > b[1] ? a[1] : b[1];
    float rbx = a[2] < b[2] ? a[2] : b[2], rby = a[3] < b[3] ? a[3] : b[3];
    float w = FS(rbx, ltx), h = FS(rby, lty);
    w = w < 0 ? 0 : w;
    h = h < 0 ? 0 : h;
    float overlap = FM(w, h);
    float uni = mode == 1 ? area1 : FS(FA(area1, area2), overlap);
    uni = uni > eps ? uni : eps;
    float iou = FD(overlap, uni);
    if (mode != 2) return iou;
    float elx = a[0] < b[0] ? a[0] : b[0], ely = a[1] < b[1] ? a[1] : b[1];
    float erx = a[2] > b[2] ? a[2] : b[2], ery = a[3] > b[3] ? a[3] : b[3];
    float ew = FS(erx, elx), eh = FS(ery, ely);
    ew = ew < 0 ? 0 : ew;
    eh = eh < 0 ? 0 : eh;
    float ea = FM(ew, eh);
    ea = ea > eps ? ea : eps;
    return FS(iou, FD(FS(ea, uni), ea));
}

__device__ static inline void max_grad(float x, float y, float g, float *gx, float *gy) {
    if (x > y) *gx = FA(*gx, g);
    else if (x < y) *gy = FA(*gy, g);
    else {
        *gx = FA(*gx, FM(0.5f, g));
        *gy = FA(*gy, FM(0.5f, g));
    }
}
__device__ static inline void min_grad(float x, float y, float g, float *gx, float *gy) {
    if (x < y) *gx = FA(*gx, g);
    else if (x > y) *gy = FA(*gy, g);
    else {
        *gx = FA(*gx, FM(0.5f, g));
        *gy = FA(*gy, FM(0.5f, g));
    }
}

/* md__iou_pair_backward, operation for operation. */
__device__ static void iou_pair_backward(const float *a, const float *b, int mode, float eps, float g, float *ga,
                                         float *gb) {
    for (int k = 0; k < 4; k++) ga[k] = gb[k] = 0.0f;
    float area1 = FM(FS(a[2], a[0]), FS(a[3], a[1]));
    float area2 = FM(FS(b[2], b[0]), FS(b[3], b[1]));
    float ltx = a[0] > b[0] ? a[0] : b[0], lty = a[1] > b[1] ? a[1] : b[1];
    float rbx = a[2] < b[2] ? a[2] : b[2], rby = a[3] < b[3] ? a[3] : b[3];
    float wr = FS(rbx, ltx), hr = FS(rby, lty);
    float w = wr < 0 ? 0 : wr, h = hr < 0 ? 0 : hr;
    float overlap = FM(w, h);
    float ur = mode == 1 ? area1 : FS(FA(area1, area2), overlap);
    float uni = ur > eps ? ur : eps;
    float g_uni = 0.0f, g_iou = g;
    if (mode == 2) {
        float elx = a[0] < b[0] ? a[0] : b[0], ely = a[1] < b[1] ? a[1] : b[1];
        float erx = a[2] > b[2] ? a[2] : b[2], ery = a[3] > b[3] ? a[3] : b[3];
        float ewr = FS(erx, elx), ehr = FS(ery, ely);
        float ew = ewr < 0 ? 0 : ewr, eh = ehr < 0 ? 0 : ehr;
        float ear = FM(ew, eh);
        float ea = ear > eps ? ear : eps;
        g_uni = FA(g_uni, FD(g, ea));
        float g_ea = FD(FM(-g, uni), FM(ea, ea)), g_ear = 0.0f, g_eps = 0.0f;
        max_grad(ear, eps, g_ea, &g_ear, &g_eps);
        float g_ew = ewr >= 0 ? FM(g_ear, eh) : 0.0f, g_eh = ehr >= 0 ? FM(g_ear, ew) : 0.0f;
        max_grad(a[2], b[2], g_ew, &ga[2], &gb[2]);
        min_grad(a[0], b[0], -g_ew, &ga[0], &gb[0]);
        max_grad(a[3], b[3], g_eh, &ga[3], &gb[3]);
        min_grad(a[1], b[1], -g_eh, &ga[1], &gb[1]);
    }
    float g_ov = FD(g_iou, uni);
    g_uni = FS(g_uni, FD(FM(g_iou, overlap), FM(uni, uni)));
    float g_ur = 0.0f, g_eps = 0.0f;
    max_grad(ur, eps, g_uni, &g_ur, &g_eps);
    float g_a1 = g_ur, g_a2 = 0.0f;
    if (mode != 1) {
        g_a2 = g_ur;
        g_ov = FS(g_ov, g_ur);
    }
    float g_w = wr >= 0 ? FM(g_ov, h) : 0.0f, g_h = hr >= 0 ? FM(g_ov, w) : 0.0f;
    min_grad(a[2], b[2], g_w, &ga[2], &gb[2]);
    max_grad(a[0], b[0], -g_w, &ga[0], &gb[0]);
    min_grad(a[3], b[3], g_h, &ga[3], &gb[3]);
    max_grad(a[1], b[1], -g_h, &ga[1], &gb[1]);
    float h1 = FS(a[3], a[1]), w1 = FS(a[2], a[0]), h2 = FS(b[3], b[1]), w2 = FS(b[2], b[0]);
    ga[2] = FA(ga[2], FM(g_a1, h1));
    ga[0] = FS(ga[0], FM(g_a1, h1));
    ga[3] = FA(ga[3], FM(g_a1, w1));
    ga[1] = FS(ga[1], FM(g_a1, w1));
    gb[2] = FA(gb[2], FM(g_a2, h2));
    gb[0] = FS(gb[0], FM(g_a2, h2));
    gb[3] = FA(gb[3], FM(g_a2, w2));
    gb[1] = FS(gb[1], FM(g_a2, w2));
}

__global__ void overlaps_fwd_kernel(const float *a, int64_t n, const float *b, int64_t m, int mode, bool aligned,
                                    float eps, float *out) {
    GRID_STRIDE(e, aligned ? n : n * m) {
        int64_t i = aligned ? e : e / m, j = aligned ? e : e % m;
        out[e] = iou_pair(a + 4 * i, b + 4 * j, mode, eps);
    }
}

extern "C" int md__cuda_bbox_overlaps_forward(const float *a, int64_t n, const float *b, int64_t m, int mode,
                                              bool aligned, float eps, float *out) {
    int64_t total = aligned ? n : n * m;
    if (total <= 0) return 0;
    overlaps_fwd_kernel<<<grid_for(total), TPB, 0, md__cuda_stream()>>>(a, n, b, m, mode, aligned, eps, out);
    return md__cuda_check(cudaGetLastError(), "bbox_overlaps_forward");
}

__global__ void overlaps_bwd_aligned_kernel(const float *a, const float *b, int64_t n, int mode, float eps,
                                            const float *go, float *grad_a, float *grad_b) {
    GRID_STRIDE(i, n) {
        float ga[4], gb[4];
        iou_pair_backward(a + 4 * i, b + 4 * i, mode, eps, go[i], ga, gb);
        for (int k = 0; k < 4; k++) {
            if (grad_a) grad_a[4 * i + k] = ga[k];
            if (grad_b) grad_b[4 * i + k] = gb[k];
        }
    }
}

/* side 0: grad_a[i] = sum over j in order; side 1: grad_b[j] = sum over i. */
__global__ void overlaps_bwd_pair_kernel(const float *a, int64_t n, const float *b, int64_t m, int mode, float eps,
                                         const float *go, int side, float *grad) {
    GRID_STRIDE(r, side == 0 ? n : m) {
        float acc[4] = { 0.0f, 0.0f, 0.0f, 0.0f }, ga[4], gb[4];
        int64_t len = side == 0 ? m : n;
        for (int64_t q = 0; q < len; q++) {
            int64_t i = side == 0 ? r : q, j = side == 0 ? q : r;
            iou_pair_backward(a + 4 * i, b + 4 * j, mode, eps, go[i * m + j], ga, gb);
            for (int k = 0; k < 4; k++) acc[k] = FA(acc[k], side == 0 ? ga[k] : gb[k]);
        }
        for (int k = 0; k < 4; k++) grad[4 * r + k] = acc[k];
    }
}

extern "C" int md__cuda_bbox_overlaps_backward(const float *a, int64_t n, const float *b, int64_t m, int mode,
                                               bool aligned, float eps, const float *grad_out, float *grad_a,
                                               float *grad_b) {
    cudaStream_t st = md__cuda_stream();
    if (aligned) {
        if (n <= 0) return 0;
        overlaps_bwd_aligned_kernel<<<grid_for(n), TPB, 0, st>>>(a, b, n, mode, eps, grad_out, grad_a, grad_b);
        return md__cuda_check(cudaGetLastError(), "bbox_overlaps_backward");
    }
    if (grad_a && n > 0) {
        overlaps_bwd_pair_kernel<<<grid_for(n), TPB, 0, st>>>(a, n, b, m, mode, eps, grad_out, 0, grad_a);
        if (md__cuda_check(cudaGetLastError(), "bbox_overlaps_backward")) return -1;
    }
    if (grad_b && m > 0) {
        overlaps_bwd_pair_kernel<<<grid_for(m), TPB, 0, st>>>(a, n, b, m, mode, eps, grad_out, 1, grad_b);
        if (md__cuda_check(cudaGetLastError(), "bbox_overlaps_backward")) return -1;
    }
    return 0;
}

extern "C" int md__cuda_sort_lines(int dtype, const void *x, int64_t outer, int64_t n, int64_t inner, int64_t k,
                                   bool descending, void *vals, int64_t *idx);
extern "C" int md__cuda_unsort_add_f32(const float *g, const int64_t *idx, int64_t outer, int64_t n, int64_t inner,
                                       int64_t k, float *gx);

extern "C" void md__cuda_table_detection(md_backend *t) {
    t->roi_align_forward = md__cuda_roi_align_forward;
    t->roi_align_backward = md__cuda_roi_align_backward;
    t->nms = md__cuda_nms;
    t->bbox_overlaps_forward = md__cuda_bbox_overlaps_forward;
    t->bbox_overlaps_backward = md__cuda_bbox_overlaps_backward;
    t->sort_lines = md__cuda_sort_lines;
    t->unsort_add_f32 = md__cuda_unsort_add_f32;
}
