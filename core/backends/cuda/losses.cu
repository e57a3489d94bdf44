/* CUDA kernels of the mmdet losses; mirror backends/cpu/losses.c (and the
 * pair IoU of backends/cpu/detection.h) operation for operation, in the same
 * precision (double where the CPU uses double). Products that feed an
 * addition go through __fmul_rn/__dmul_rn so that nvcc does not contract
 * them into FMAs the CPU build does not use.
 *
 * Launch scheme: one thread per element (BCE, focal, L1, smooth L1), per box
 * (GIoU), or one warp per row (cross entropy: max and sum of exponentials by
 * warp shuffles in a fixed tree). The weighted sum of loss_reduce is
 * deterministic: fixed chunks per block (chunk size set by n alone), a fixed
 * shared-memory tree per block, then one block summing the partials in
 * order; no atomics on floats. The label check and the positive-weight test
 * use integer atomics only (commutative, so deterministic) and read one
 * answer back to the host. */
#include <stdint.h>
#include "backends/cuda/kernel_util.cuh"

#define CHUNK 8192            /* elements per block of loss_reduce... */
#define MAX_CHUNKS 1024       /* ...grown so that no more blocks than this */

#define MUL(a, b) __fmul_rn((a), (b))
#define DMUL(a, b) __dmul_rn((a), (b))




/* md__coef: (g_each ? g[e] : g[0] * scale) * (w ? w[e] : 1). */
__device__ __forceinline__ float coef(const float *g, bool g_each, float scale, const float *w, int64_t e) {
    float a = g_each ? g[e] : MUL(g[0], scale);
    return MUL(a, w ? w[e] : 1.0f);
}

__device__ __forceinline__ double softplus(double v) { return v > 0 ? v + log1p(exp(-v)) : log1p(exp(v)); }
__device__ __forceinline__ double sigmoid(double v) {
    if (v >= 0) return 1.0 / (1.0 + exp(-v));
    double e = exp(v);
    return e / (1.0 + e);
}

/* ------------------------------------------------------- checks (host) -- */

__global__ void labels_kernel(const int64_t *lab, int64_t n, int64_t lo, int64_t hi, int64_t ignore,
                              unsigned long long *first) {
    GRID_STRIDE(i, n) {
        int64_t y = lab[i];
        if (y != ignore && (y < lo || y >= hi)) atomicMin(first, (unsigned long long)i);
    }
}

static int read_back(void *host, const void *dev, size_t bytes, const char *what) {
    cudaStream_t st = md__cuda_stream();
    if (md__cuda_check(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, st), what)) return -1;
    return md__cuda_check(cudaStreamSynchronize(st), what);
}

static int md__cuda_loss_check_labels(const int64_t *lab, int64_t n, int64_t lo, int64_t hi, int64_t ignore,
                                          int64_t *bad) {
    bad[0] = -1;
    bad[1] = 0;
    if (n <= 0) return 0;
    unsigned long long *first = (unsigned long long *)md__cuda_scratch(sizeof *first);
    if (!first) return -1;
    cudaStream_t st = md__cuda_stream();
    if (md__cuda_check(cudaMemsetAsync(first, 0xff, sizeof *first, st), "loss_check_labels")) return -1;
    labels_kernel<<<grid_for(n), TPB, 0, st>>>(lab, n, lo, hi, ignore, first);
    if (check("loss_check_labels")) return -1;
    unsigned long long row;
    if (read_back(&row, first, sizeof row, "loss_check_labels")) return -1;
    if (row == ~0ULL) return 0;
    bad[0] = (int64_t)row;
    return read_back(&bad[1], lab + row, sizeof bad[1], "loss_check_labels");
}

__global__ void any_positive_kernel(const float *x, int64_t n, int *flag) {
    GRID_STRIDE(i, n) {
        if (x[i] > 0) *flag = 1;   /* every writer stores the same value */
    }
}

static int md__cuda_loss_any_positive(const float *x, int64_t n, int *any) {
    *any = 0;
    if (n <= 0) return 0;
    int *flag = (int *)md__cuda_scratch(sizeof *flag);
    if (!flag) return -1;
    cudaStream_t st = md__cuda_stream();
    if (md__cuda_check(cudaMemsetAsync(flag, 0, sizeof *flag, st), "loss_any_positive")) return -1;
    any_positive_kernel<<<grid_for(n), TPB, 0, st>>>(x, n, flag);
    if (check("loss_any_positive")) return -1;
    return read_back(any, flag, sizeof *any, "loss_any_positive");
}

/* ------------------------------------------------------- weight, reduce -- */

__device__ __forceinline__ double block_sum(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = TPB / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    return sh[0];
}

/* Block b: wl over its chunk (when wl), and the chunk's sum into part[b]
 * (when part), or *out = sum / div when the whole input is one chunk. */
__global__ void reduce_chunks_kernel(const float *l, const float *w, int64_t n, int64_t chunk, double div,
                                     float *wl, double *part, float *out) {
    __shared__ double sh[TPB];
    int64_t lo = (int64_t)blockIdx.x * chunk, hi = lo + chunk < n ? lo + chunk : n;
    double s = 0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += TPB) {
        float v = w ? MUL(l[i], w[i]) : l[i];
        if (wl) wl[i] = v;
        s += (double)v;
    }
    if (!part && !out) return;
    s = block_sum(s, sh);
    if (threadIdx.x == 0) {
        if (part) part[blockIdx.x] = s;
        else *out = (float)(s / div);
    }
}

__global__ void reduce_finish_kernel(const double *part, int64_t np, double div, float *out) {
    __shared__ double sh[TPB];
    double s = 0;
    /* thread t sums partials t, t + TPB, ...: fixed by np alone */
    for (int64_t i = threadIdx.x; i < np; i += TPB) s += part[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) *out = (float)(s / div);
}

static int md__cuda_loss_reduce(const float *l, const float *w, int64_t n, double div, float *wl, float *out) {
    if (n <= 0) return out ? md__cuda_fail("loss_reduce", "reduction of %lld elements", (long long)n) : 0;
    cudaStream_t st = md__cuda_stream();
    int64_t chunk = CHUNK;
    if ((n + chunk - 1) / chunk > MAX_CHUNKS) chunk = (n + MAX_CHUNKS - 1) / MAX_CHUNKS;
    int64_t nch = (n + chunk - 1) / chunk;
    if (!out || nch == 1) {
        reduce_chunks_kernel<<<(unsigned)nch, TPB, 0, st>>>(l, w, n, chunk, div, wl, NULL, out);
        return check("loss_reduce");
    }
    double *part = (double *)md__cuda_scratch(sizeof(double) * (size_t)nch);
    if (!part) return -1;
    reduce_chunks_kernel<<<(unsigned)nch, TPB, 0, st>>>(l, w, n, chunk, div, wl, part, NULL);
    if (check("loss_reduce (chunks)")) return -1;
    reduce_finish_kernel<<<1, TPB, 0, st>>>(part, nch, div, out);
    return check("loss_reduce (partials)");
}

__global__ void coef_fill_kernel(int64_t n, const float *g, bool g_each, float scale, const float *w,
                                 const float *mul, float *out) {
    GRID_STRIDE(e, n) out[e] = MUL(coef(g, g_each, scale, w, e), mul ? mul[e] : 1.0f);
}

static int md__cuda_loss_coef_fill(int64_t n, const float *g, bool g_each, float scale, const float *w,
                                       const float *mul, float *out) {
    if (n <= 0) return 0;
    coef_fill_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(n, g, g_each, scale, w, mul, out);
    return check("loss_coef_fill");
}

/* ------------------------------------------------------- cross entropy -- */

#define WARPS (TPB / 32)

/* Row max (float, the CPU's scan order does not matter for a max) and
 * sum of exp(r[j] - m) in double, both over the warp; every lane gets them. */
__device__ __forceinline__ void row_stats(const float *r, int64_t c, float *m_out, double *s_out) {
    int lane = threadIdx.x & 31;
    float m = r[0];
    for (int64_t j = lane; j < c; j += 32) m = r[j] > m ? r[j] : m;
    for (int o = 16; o > 0; o >>= 1) {
        float v = __shfl_xor_sync(0xffffffffu, m, o);
        m = v > m ? v : m;
    }
    double s = 0;
    for (int64_t j = lane; j < c; j += 32) s += exp((double)r[j] - m);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    *m_out = m;
    *s_out = s;
}

__global__ void ce_fwd_kernel(const float *x, const int64_t *lab, const float *cw, int64_t n, int64_t c,
                              int64_t ignore, float *loss) {
    int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t i = warp; i < n; i += nwarps) {   /* uniform over the warp */
        int64_t y = lab[i];
        if (y == ignore) {
            if ((threadIdx.x & 31) == 0) loss[i] = 0.0f;
            continue;
        }
        const float *r = x + i * c;
        float m;
        double s;
        row_stats(r, c, &m, &s);
        if ((threadIdx.x & 31) == 0) {
            double l = (double)m + log(s) - (double)r[y];
            loss[i] = (float)(cw ? cw[y] * l : l);
        }
    }
}

__global__ void ce_bwd_kernel(const float *x, const int64_t *lab, const float *cw, int64_t n, int64_t c,
                              int64_t ignore, const float *g, bool g_each, float scale, const float *w, float *gx) {
    int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    int lane = threadIdx.x & 31;
    for (int64_t i = warp; i < n; i += nwarps) {
        const float *r = x + i * c;
        float *gr = gx + i * c;
        int64_t y = lab[i];
        if (y == ignore) {
            for (int64_t j = lane; j < c; j += 32) gr[j] = 0.0f;
            continue;
        }
        double cf = MUL(coef(g, g_each, scale, w, i), cw ? cw[y] : 1.0f);
        float m;
        double s;
        row_stats(r, c, &m, &s);
        double inv = 1.0 / s;
        for (int64_t j = lane; j < c; j += 32)
            gr[j] = (float)(cf * (DMUL(exp((double)r[j] - m), inv) - (double)(j == y)));
    }
}

static unsigned grid_rows(int64_t n) {
    int64_t b = (n + WARPS - 1) / WARPS;
    return (unsigned)(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

static int md__cuda_ce_forward(const float *x, const int64_t *lab, const float *class_w, int64_t n, int64_t c,
                                   int64_t ignore, float *loss) {
    if (n <= 0) return 0;   /* c == 0: every label is the ignore index (checked), no row is read */
    ce_fwd_kernel<<<grid_rows(n), TPB, 0, md__cuda_stream()>>>(x, lab, class_w, n, c, ignore, loss);
    return check("ce_forward");
}

static int md__cuda_ce_backward(const float *x, const int64_t *lab, const float *class_w, int64_t n, int64_t c,
                                    int64_t ignore, const float *g, bool g_each, float scale, const float *w,
                                    float *gx) {
    if (n <= 0 || c <= 0) return 0;
    ce_bwd_kernel<<<grid_rows(n), TPB, 0, md__cuda_stream()>>>(x, lab, class_w, n, c, ignore, g, g_each, scale, w,
                                                                 gx);
    return check("ce_backward");
}

/* --------------------------------------------------------- BCE, focal -- */

__global__ void bce_fwd_kernel(const float *x, const float *t, int64_t n, float *loss) {
    GRID_STRIDE(i, n) {
        double v = x[i];
        loss[i] = (float)((v > 0 ? v : 0) - DMUL(v, (double)t[i]) + log1p(exp(-fabs(v))));
    }
}

__global__ void bce_bwd_kernel(const float *x, const float *t, int64_t n, const float *g, bool g_each, float scale,
                               const float *w, float *gx) {
    GRID_STRIDE(i, n) gx[i] = (float)(DMUL((double)coef(g, g_each, scale, w, i), sigmoid(x[i]) - t[i]));
}

__global__ void bce_mask_kernel(const float *t, const float *w, int64_t n, float *out) {
    GRID_STRIDE(i, n) out[i] = MUL(t[i] >= 0 ? 1.0f : 0.0f, w ? w[i] : 1.0f);
}

static int md__cuda_bce_forward(const float *x, const float *t, int64_t n, float *loss) {
    if (n <= 0) return 0;
    bce_fwd_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(x, t, n, loss);
    return check("bce_forward");
}

static int md__cuda_bce_backward(const float *x, const float *t, int64_t n, const float *g, bool g_each,
                                     float scale, const float *w, float *gx) {
    if (n <= 0) return 0;
    bce_bwd_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(x, t, n, g, g_each, scale, w, gx);
    return check("bce_backward");
}

static int md__cuda_bce_mask_weight(const float *t, const float *w, int64_t n, float *out) {
    if (n <= 0) return 0;
    bce_mask_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(t, w, n, out);
    return check("bce_mask_weight");
}

/* b^g, gamma = 2 and 1 as products (the CPU's fast path, same bits). */
__device__ __forceinline__ double pow_gamma(double b, double g) {
    return g == 2.0 ? DMUL(b, b) : g == 1.0 ? b : pow(b, g);
}

__global__ void focal_fwd_kernel(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma, float alpha,
                                 float *loss) {
    GRID_STRIDE(e, n * c) {
        int64_t i = e / c, j = e % c;
        double v = x[e], p = sigmoid(v), l;
        if (lab[i] == j) l = DMUL(DMUL(alpha, pow_gamma(1.0 - p, gamma)), softplus(-v));
        else l = DMUL(DMUL(1.0 - alpha, pow_gamma(p, gamma)), softplus(v));
        loss[e] = (float)l;
    }
}

__global__ void focal_bwd_kernel(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma, float alpha,
                                 const float *g, bool g_each, float scale, const float *w, float *gx) {
    GRID_STRIDE(e, n * c) {
        int64_t i = e / c, j = e % c;
        double v = x[e], p = sigmoid(v), q = sigmoid(-v), d;
        if (lab[i] == j)
            d = DMUL(DMUL(alpha, pow_gamma(q, gamma)), DMUL(DMUL(-(double)gamma, p), softplus(-v)) - q);
        else
            d = DMUL(DMUL(1.0 - alpha, pow_gamma(p, gamma)), DMUL(DMUL((double)gamma, q), softplus(v)) + p);
        gx[e] = (float)DMUL((double)coef(g, g_each, scale, w, e), d);
    }
}

static int md__cuda_focal_forward(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma,
                                      float alpha, float *loss) {
    if (n * c <= 0) return 0;
    focal_fwd_kernel<<<grid_for(n * c), TPB, 0, md__cuda_stream()>>>(x, lab, n, c, gamma, alpha, loss);
    return check("focal_forward");
}

static int md__cuda_focal_backward(const float *x, const int64_t *lab, int64_t n, int64_t c, float gamma,
                                       float alpha, const float *g, bool g_each, float scale, const float *w,
                                       float *gx) {
    if (n * c <= 0) return 0;
    focal_bwd_kernel<<<grid_for(n * c), TPB, 0, md__cuda_stream()>>>(x, lab, n, c, gamma, alpha, g, g_each, scale, w,
                                                                     gx);
    return check("focal_backward");
}

/* ----------------------------------------------------------- L1 family -- */

__global__ void sl1_fwd_kernel(const float *p, const float *t, int64_t n, float beta, float *loss) {
    GRID_STRIDE(i, n) {
        float d = fabsf(p[i] - t[i]);
        loss[i] = d < beta ? MUL(MUL(0.5f, d), d) / beta : d - MUL(0.5f, beta);
    }
}

__global__ void sl1_bwd_kernel(const float *p, const float *t, int64_t n, float beta, const float *g, bool g_each,
                               float scale, const float *w, float *gp, float *gt) {
    GRID_STRIDE(i, n) {
        float diff = p[i] - t[i], d = fabsf(diff);
        float sgn = (float)((diff > 0) - (diff < 0));
        float v = MUL(MUL(coef(g, g_each, scale, w, i), d < beta ? d / beta : 1.0f), sgn);
        if (gp) gp[i] = v;
        if (gt) gt[i] = -v;
    }
}

__global__ void l1_fwd_kernel(const float *p, const float *t, int64_t n, float *loss) {
    GRID_STRIDE(i, n) loss[i] = fabsf(p[i] - t[i]);
}

__global__ void l1_bwd_kernel(const float *p, const float *t, int64_t n, const float *g, bool g_each, float scale,
                              const float *w, float *gp, float *gt) {
    GRID_STRIDE(i, n) {
        float diff = p[i] - t[i];
        float v = MUL(coef(g, g_each, scale, w, i), (float)((diff > 0) - (diff < 0)));
        if (gp) gp[i] = v;
        if (gt) gt[i] = -v;
    }
}

static int md__cuda_smooth_l1_forward(const float *p, const float *t, int64_t n, float beta, float *loss) {
    if (n <= 0) return 0;
    sl1_fwd_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(p, t, n, beta, loss);
    return check("smooth_l1_forward");
}

static int md__cuda_smooth_l1_backward(const float *p, const float *t, int64_t n, float beta, const float *g,
                                           bool g_each, float scale, const float *w, float *gp, float *gt) {
    if (n <= 0 || (!gp && !gt)) return 0;
    sl1_bwd_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(p, t, n, beta, g, g_each, scale, w, gp, gt);
    return check("smooth_l1_backward");
}

static int md__cuda_l1_forward(const float *p, const float *t, int64_t n, float *loss) {
    if (n <= 0) return 0;
    l1_fwd_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(p, t, n, loss);
    return check("l1_forward");
}

static int md__cuda_l1_backward(const float *p, const float *t, int64_t n, const float *g, bool g_each,
                                    float scale, const float *w, float *gp, float *gt) {
    if (n <= 0 || (!gp && !gt)) return 0;
    l1_bwd_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(p, t, n, g, g_each, scale, w, gp, gt);
    return check("l1_backward");
}

/* ---------------------------------------------------------------- GIoU -- */

/* md__iou_pair with mode 2 (giou). */
__device__ float giou_pair(const float *a, const float *b, float eps) {
    float area1 = MUL(a[2] - a[0], a[3] - a[1]);
    float area2 = MUL(b[2] - b[0], b[3] - b[1]);
    float ltx = a[0] > b[0] ? a[0] : b[0], lty = a[1] > b[1] ? a[1] : b[1];
    float rbx = a[2] < b[2] ? a[2] : b[2], rby = a[3] < b[3] ? a[3] : b[3];
    float w = rbx - ltx, h = rby - lty;
    w = w < 0 ? 0 : w;
    h = h < 0 ? 0 : h;
    float overlap = MUL(w, h);
    float uni = area1 + area2 - overlap;
    uni = uni > eps ? uni : eps;
    float iou = overlap / uni;
    float elx = a[0] < b[0] ? a[0] : b[0], ely = a[1] < b[1] ? a[1] : b[1];
    float erx = a[2] > b[2] ? a[2] : b[2], ery = a[3] > b[3] ? a[3] : b[3];
    float ew = erx - elx, eh = ery - ely;
    ew = ew < 0 ? 0 : ew;
    eh = eh < 0 ? 0 : eh;
    float ea = MUL(ew, eh);
    ea = ea > eps ? ea : eps;
    return iou - (ea - uni) / ea;
}

__device__ __forceinline__ void max_grad(float x, float y, float g, float *gx, float *gy) {
    if (x > y) *gx += g;
    else if (x < y) *gy += g;
    else { *gx += MUL(0.5f, g); *gy += MUL(0.5f, g); }
}
__device__ __forceinline__ void min_grad(float x, float y, float g, float *gx, float *gy) {
    if (x < y) *gx += g;
    else if (x > y) *gy += g;
    else { *gx += MUL(0.5f, g); *gy += MUL(0.5f, g); }
}

/* md__iou_pair_backward with mode 2. */
__device__ void giou_pair_backward(const float *a, const float *b, float eps, float g, float *ga, float *gb) {
    for (int k = 0; k < 4; k++) ga[k] = gb[k] = 0.0f;
    float area1 = MUL(a[2] - a[0], a[3] - a[1]);
    float area2 = MUL(b[2] - b[0], b[3] - b[1]);
    float ltx = a[0] > b[0] ? a[0] : b[0], lty = a[1] > b[1] ? a[1] : b[1];
    float rbx = a[2] < b[2] ? a[2] : b[2], rby = a[3] < b[3] ? a[3] : b[3];
    float wr = rbx - ltx, hr = rby - lty;
    float w = wr < 0 ? 0 : wr, h = hr < 0 ? 0 : hr;
    float overlap = MUL(w, h);
    float ur = area1 + area2 - overlap;
    float uni = ur > eps ? ur : eps;
    float g_uni = 0.0f, g_iou = g;
    {
        float elx = a[0] < b[0] ? a[0] : b[0], ely = a[1] < b[1] ? a[1] : b[1];
        float erx = a[2] > b[2] ? a[2] : b[2], ery = a[3] > b[3] ? a[3] : b[3];
        float ewr = erx - elx, ehr = ery - ely;
        float ew = ewr < 0 ? 0 : ewr, eh = ehr < 0 ? 0 : ehr;
        float ear = MUL(ew, eh);
        float ea = ear > eps ? ear : eps;
        g_uni += g / ea;
        float g_ea = -MUL(g, uni) / MUL(ea, ea), g_ear = 0.0f, g_eps = 0.0f;
        max_grad(ear, eps, g_ea, &g_ear, &g_eps);
        float g_ew = ewr >= 0 ? MUL(g_ear, eh) : 0.0f, g_eh = ehr >= 0 ? MUL(g_ear, ew) : 0.0f;
        max_grad(a[2], b[2], g_ew, &ga[2], &gb[2]);
        min_grad(a[0], b[0], -g_ew, &ga[0], &gb[0]);
        max_grad(a[3], b[3], g_eh, &ga[3], &gb[3]);
        min_grad(a[1], b[1], -g_eh, &ga[1], &gb[1]);
    }
    float g_ov = g_iou / uni;
    g_uni -= MUL(g_iou, overlap) / MUL(uni, uni);
    float g_ur = 0.0f, g_eps = 0.0f;
    max_grad(ur, eps, g_uni, &g_ur, &g_eps);
    float g_a1 = g_ur, g_a2 = g_ur;
    g_ov -= g_ur;
    float g_w = wr >= 0 ? MUL(g_ov, h) : 0.0f, g_h = hr >= 0 ? MUL(g_ov, w) : 0.0f;
    min_grad(a[2], b[2], g_w, &ga[2], &gb[2]);
    max_grad(a[0], b[0], -g_w, &ga[0], &gb[0]);
    min_grad(a[3], b[3], g_h, &ga[3], &gb[3]);
    max_grad(a[1], b[1], -g_h, &ga[1], &gb[1]);
    float h1 = a[3] - a[1], w1 = a[2] - a[0], h2 = b[3] - b[1], w2 = b[2] - b[0];
    ga[2] += MUL(g_a1, h1); ga[0] -= MUL(g_a1, h1); ga[3] += MUL(g_a1, w1); ga[1] -= MUL(g_a1, w1);
    gb[2] += MUL(g_a2, h2); gb[0] -= MUL(g_a2, h2); gb[3] += MUL(g_a2, w2); gb[1] -= MUL(g_a2, w2);
}

__global__ void giou_fwd_kernel(const float *p, const float *t, int64_t n, float eps, float *loss) {
    GRID_STRIDE(i, n) loss[i] = 1.0f - giou_pair(p + 4 * i, t + 4 * i, eps);
}

__global__ void giou_bwd_kernel(const float *p, const float *t, int64_t n, float eps, const float *g, bool g_each,
                                float scale, const float *w, float *gp, float *gt) {
    GRID_STRIDE(i, n) {
        float ga[4], gb[4];
        giou_pair_backward(p + 4 * i, t + 4 * i, eps, -coef(g, g_each, scale, w, i), ga, gb);
        for (int j = 0; j < 4; j++) {
            if (gp) gp[4 * i + j] = ga[j];
            if (gt) gt[4 * i + j] = gb[j];
        }
    }
}

__global__ void giou_weight_mean_kernel(const float *w, int64_t n, float *out) {
    GRID_STRIDE(i, n) out[i] = (w[4 * i] + w[4 * i + 1] + w[4 * i + 2] + w[4 * i + 3]) / 4.0f;
}

static int md__cuda_giou_forward(const float *p, const float *t, int64_t n, float eps, float *loss) {
    if (n <= 0) return 0;
    giou_fwd_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(p, t, n, eps, loss);
    return check("giou_forward");
}

static int md__cuda_giou_backward(const float *p, const float *t, int64_t n, float eps, const float *g,
                                      bool g_each, float scale, const float *w, float *gp, float *gt) {
    if (n <= 0 || (!gp && !gt)) return 0;
    giou_bwd_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(p, t, n, eps, g, g_each, scale, w, gp, gt);
    return check("giou_backward");
}

static int md__cuda_giou_weight_mean(const float *w, int64_t n, float *out) {
    if (n <= 0) return 0;
    giou_weight_mean_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(w, n, out);
    return check("giou_weight_mean");
}

/* ---------------------------------------------------------------- table -- */

extern "C" void md__cuda_table_losses(md_backend *t) {
    t->loss_check_labels = md__cuda_loss_check_labels;
    t->loss_any_positive = md__cuda_loss_any_positive;
    t->loss_reduce = md__cuda_loss_reduce;
    t->loss_coef_fill = md__cuda_loss_coef_fill;
    t->ce_forward = md__cuda_ce_forward;
    t->ce_backward = md__cuda_ce_backward;
    t->bce_forward = md__cuda_bce_forward;
    t->bce_backward = md__cuda_bce_backward;
    t->bce_mask_weight = md__cuda_bce_mask_weight;
    t->focal_forward = md__cuda_focal_forward;
    t->focal_backward = md__cuda_focal_backward;
    t->smooth_l1_forward = md__cuda_smooth_l1_forward;
    t->smooth_l1_backward = md__cuda_smooth_l1_backward;
    t->l1_forward = md__cuda_l1_forward;
    t->l1_backward = md__cuda_l1_backward;
    t->giou_forward = md__cuda_giou_forward;
    t->giou_backward = md__cuda_giou_backward;
    t->giou_weight_mean = md__cuda_giou_weight_mean;
}
