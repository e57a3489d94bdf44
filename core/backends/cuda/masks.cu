/* CUDA mask kernels: mask targets, paste-back and RLE; mirrors
 * backends/cpu/masks.c. The per-pixel math is the same header,
 * backends/mask_math.h (host + device, single-rounded float operations),
 * so the targets and the pasted masks are the CPU's bits.
 *
 * mask_targets: one thread per target pixel (box, row, column), the
 * RoIAlign average over the box's mask recomputed per thread, as the CPU.
 * mask_paste: one thread per image pixel of each detection (0 outside the
 * box's window).
 * rle_encode: pycocotools' runs are column-major, so one thread walks
 * one column of one mask (a warp reads adjacent columns: coalesced) and
 * counts the run boundaries in it (the pixels that differ from the pixel
 * before them in column-major order, the first compared with 0); an
 * exclusive scan (CUB) over the columns gives every boundary its slot;
 * the mask starts (one per mask) come back to the host, which now knows
 * each mask's number of counts; a second walk writes the boundaries'
 * positions, and a third pass turns them into counts (differences of
 * consecutive boundaries of a mask, the last run up to h * w), which are
 * copied to the host. No atomics: deterministic. */
#include <stdint.h>
#include <stdlib.h>
#include <cub/cub.cuh>
#include "backends/cuda/kernel_util.cuh"
#include "backends/mask_math.h"

/* ------------------------------------------------------- mask targets -- */

__global__ void mask_targets_kernel(const uint8_t *masks, int64_t h, int64_t w, const float *boxes,
                                    const int64_t *inds, int64_t P, int oh, int ow, float *out) {
    int64_t plane = (int64_t)oh * ow;
    GRID_STRIDE(e, P * plane) {
        int64_t p = e / plane, k = inds ? inds[p] : p;
        int ph = (int)(e % plane / ow), pw = (int)(e % ow);
        out[e] = md__mask_target(masks + k * h * w, (int)h, (int)w, boxes + 4 * p, oh, ow, ph, pw);
    }
}

static int cuda_mask_targets(const uint8_t *masks, int64_t n, int64_t h, int64_t w, const float *boxes,
                             const int64_t *inds, int64_t P, int oh, int ow, float *out) {
    (void)n;
    int64_t total = P * oh * ow;
    if (total <= 0) return 0;
    mask_targets_kernel<<<grid_for(total), TPB, 0, md__cuda_stream()>>>(masks, h, w, boxes, inds, P, oh, ow, out);
    return check("mask_targets");
}

/* ---------------------------------------------------------- paste-back -- */

__global__ void mask_paste_kernel(const float *probs, int64_t D, int64_t C, int mh, int mw, const int64_t *chan,
                                  const float *boxes, int img_h, int img_w, float thr, uint8_t *out) {
    int64_t plane = (int64_t)img_h * img_w;
    GRID_STRIDE(e, D * plane) {
        int64_t d = e / plane, r = e % plane;
        int y = (int)(r / img_w), x = (int)(r % img_w), win[4];
        const float *box = boxes + 4 * d;
        md__paste_window(box, img_h, img_w, win);
        out[e] = md__paste_pixel(probs + (d * C + chan[d]) * mh * mw, mh, mw, box, win, x, y, thr);
    }
}

static int cuda_mask_paste(const float *probs, int64_t D, int64_t C, int mh, int mw, const int64_t *chan,
                           const float *boxes, int img_h, int img_w, float thr, uint8_t *out) {
    int64_t total = D * img_h * img_w;
    if (total <= 0) return 0;
    mask_paste_kernel<<<grid_for(total), TPB, 0, md__cuda_stream()>>>(probs, D, C, mh, mw, chan, boxes, img_h, img_w,
                                                                       thr, out);
    return check("mask_paste");
}

/* ----------------------------------------------------------------- RLE -- */

/* The run boundaries of column x of mask d (e = d * w + x), by walking it:
 * counted into cnt[e], or written (column-major positions within the
 * mask) from pos[off[e]] on. */
template <bool WRITE>
__global__ void rle_column_kernel(const uint8_t *masks, int64_t n, int h, int w, int64_t *cnt, const int64_t *off,
                                  uint32_t *pos) {
    GRID_STRIDE(e, n * w) {
        int64_t d = e / w;
        int x = (int)(e % w);
        const uint8_t *m = masks + d * (int64_t)h * w;
        uint8_t p = md__rle_bit(m, h, w, (int64_t)x * h - 1);
        int64_t c = 0, at = WRITE ? off[e] : 0;
        for (int y = 0; y < h; y++) {
            uint8_t v = m[(int64_t)y * w + x] != 0;   /* md__rle_bit(m, h, w, x * h + y) */
            if (v != p) {
                if (WRITE) pos[at + c] = (uint32_t)((int64_t)x * h + y);
                c++;
            }
            p = v;
        }
        if (!WRITE) cnt[e] = c;
    }
}

/* starts[d] = off[d * w] for d in [0, n]: the first boundary of each mask
 * (starts[n] the number of boundaries). */
__global__ void rle_starts_kernel(const int64_t *off, int64_t n, int w, int64_t *starts) {
    GRID_STRIDE(d, n + 1) starts[d] = off[d * w];
}

/* Each boundary's count: its position less the mask's previous boundary
 * (0 for the first); boundary g of mask d is count g + d. */
__global__ void rle_counts_kernel(const int64_t *off, const int64_t *starts, int64_t n, int w, const uint32_t *pos,
                                  uint32_t *counts) {
    GRID_STRIDE(e, n * w) {
        int64_t d = e / w;
        for (int64_t g = off[e]; g < off[e + 1]; g++)
            counts[g + d] = pos[g] - (g > starts[d] ? pos[g - 1] : 0u);
    }
}

/* The last run of each mask: h * w less its last boundary. */
__global__ void rle_last_kernel(const int64_t *starts, int64_t n, uint32_t hw, const uint32_t *pos,
                                uint32_t *counts) {
    GRID_STRIDE(d, n) {
        int64_t s = starts[d], e = starts[d + 1];
        counts[e + d] = hw - (e > s ? pos[e - 1] : 0u);
    }
}

/* Device buffers of one call, freed together (stream-ordered). */
struct bufs {
    void *p[8];
    int k;
    bufs() : k(0) {}
    ~bufs() {
        for (int i = 0; i < k; i++) md__cuda_free(p[i]);
    }
    template <typename T>
    T *get(size_t count) {
        void *q = md__cuda_alloc(sizeof(T) * (count ? count : 1));
        if (q) p[k++] = q;
        return (T *)q;
    }
};

static int cuda_rle_encode(const uint8_t *masks, int64_t n, int h, int w, int64_t *m, uint32_t *counts, int64_t cap,
                           int64_t *total) {
    static const char *what = "rle_encode";
    cudaStream_t st = md__cuda_stream();
    *total = 0;
    if (n <= 0) return 0;
    int64_t cols = n * w, hw = (int64_t)h * w;
    if (cols + 1 > INT32_MAX || hw > UINT32_MAX)
        return md__cuda_fail(what, "%lld masks of %dx%d exceed 32-bit indexing", (long long)n, w, h);
    bufs b;
    int64_t *cnt = b.get<int64_t>((size_t)cols + 1), *off = b.get<int64_t>((size_t)cols + 1);
    int64_t *starts = b.get<int64_t>((size_t)n + 1);
    if (!cnt || !off || !starts) return -1;
    /* boundaries per column; cnt[cols] = 0, so off[cols] is their total */
    if (md__cuda_check(cudaMemsetAsync(cnt + cols, 0, sizeof(int64_t), st), what)) return -1;
    if (cols > 0) {
        rle_column_kernel<false><<<grid_for(cols), TPB, 0, st>>>(masks, n, h, w, cnt, NULL, NULL);
        if (check(what)) return -1;
    }
    size_t tmp = 0;
    if (md__cuda_check(cub::DeviceScan::ExclusiveSum(NULL, tmp, cnt, off, (int)(cols + 1), st), what)) return -1;
    void *ctmp = b.get<uint8_t>(tmp);
    if (!ctmp) return -1;
    if (md__cuda_check(cub::DeviceScan::ExclusiveSum(ctmp, tmp, cnt, off, (int)(cols + 1), st), what)) return -1;
    rle_starts_kernel<<<grid_for(n + 1), TPB, 0, st>>>(off, n, w, starts);
    if (check(what)) return -1;
    int64_t *hs = (int64_t *)malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!hs) return md__cuda_fail(what, "out of host memory for %lld masks", (long long)n);
    if (md__cuda_copy(hs, starts, sizeof(int64_t) * (size_t)(n + 1), MD_COPY_D2H) != 0) {
        free(hs);
        return -1;
    }
    int64_t B = hs[n];
    for (int64_t d = 0; d < n; d++) m[d] = hs[d + 1] - hs[d] + 1;
    free(hs);
    *total = B + n;
    if (*total > cap) return 0;   /* the caller asks again with room */
    uint32_t *pos = b.get<uint32_t>((size_t)B), *dc = b.get<uint32_t>((size_t)(B + n));
    if (!pos || !dc) return -1;
    if (cols > 0) {
        rle_column_kernel<true><<<grid_for(cols), TPB, 0, st>>>(masks, n, h, w, NULL, off, pos);
        if (check(what)) return -1;
        rle_counts_kernel<<<grid_for(cols), TPB, 0, st>>>(off, starts, n, w, pos, dc);
        if (check(what)) return -1;
    }
    rle_last_kernel<<<grid_for(n), TPB, 0, st>>>(starts, n, (uint32_t)hw, pos, dc);
    if (check(what)) return -1;
    return md__cuda_copy(counts, dc, sizeof(uint32_t) * (size_t)(B + n), MD_COPY_D2H);
}

extern "C" void md__cuda_table_masks(md_backend *t) {
    t->mask_targets = cuda_mask_targets;
    t->mask_paste = cuda_mask_paste;
    t->rle_encode = cuda_rle_encode;
}
