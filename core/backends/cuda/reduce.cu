/* CUDA sum and its backward (spread) over x seen as [outer, n, inner]; mirrors
 * md__cpu_sum_f32 and md__cpu_spread_f32 (backends/cpu/reduce.c).
 *
 * Sums accumulate in double, as the CPU's, in an order fixed by the shape
 * alone (fixed chunks, tree reductions in shared memory, no atomics): the
 * same input gives the same bits on every run. Two schemes:
 *   inner == 1 (contiguous rows): one block per row, or, for few long rows,
 *     one block per fixed chunk of a row and a second pass over the chunks'
 *     partial sums (in the backend's scratch);
 *   inner > 1: one thread per output (o, j) looping over i, coalesced in j;
 *     when there are few outputs and n is long, i is split into fixed spans
 *     summed by a second pass in span order. */
#include <stdint.h>
#include "backends/cuda/kernel_util.cuh"

#define RB 256                /* threads per block (a power of two: the tree) */
#define ROW_CHUNK 8192        /* elements per block of a split row */
#define ROW_MANY 1024         /* this many rows or more: one block per row */
#define ROW_SHORT 32          /* rows this short: one thread per row */
#define COL_THREADS 262144    /* threads wanted for the inner > 1 scheme */
#define COL_SPAN_MIN 64       /* shortest span of i one thread sums */

static unsigned grid_cap(int64_t blocks) {
    return (unsigned)(blocks < 1 ? 1 : (blocks > (1 << 20) ? (1 << 20) : blocks));
}


/* Sum of v over the block's RB threads, every thread gets it; fixed tree order. */
__device__ __forceinline__ double block_sum(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = RB / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();   /* sh is reused by the block's next row */
    return r;
}

/* Block b sums chunk b % nchunks of row b / nchunks (rows of n elements):
 * into part[b] when part is given, else out[row] = scale * sum. */
template <typename T>
__global__ void row_sum_kernel(const T *x, int64_t rows, int64_t n, int64_t nchunks, int64_t chunk, float scale,
                               double *part, float *out) {
    __shared__ double sh[RB];
    for (int64_t b = blockIdx.x; b < rows * nchunks; b += gridDim.x) {
        int64_t o = b / nchunks, c = b % nchunks;
        int64_t lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n;
        const T *p = x + o * n;
        double s = 0;
        for (int64_t i = lo + threadIdx.x; i < hi; i += RB) s += (double)p[i];
        s = block_sum(s, sh);
        if (threadIdx.x == 0) {
            if (part) part[b] = s;
            else out[o] = (float)(s * (double)scale);
        }
    }
}

/* Thread (o, s, j), j fastest: the sum over i in span s of x[o, i, j]; into
 * part[(o * inner + j) * nsplit + s] when part is given, else the output. */
__global__ void col_sum_kernel(const float *x, int64_t outer, int64_t n, int64_t inner, int64_t nsplit, int64_t span,
                               float scale, double *part, float *out) {
    GRID_STRIDE(e, outer * nsplit * inner) {
        int64_t j = e % inner, q = e / inner, s = q % nsplit, o = q / nsplit;
        int64_t lo = s * span, hi = lo + span < n ? lo + span : n;
        const float *p = x + o * n * inner + j;
        double acc = 0;
        for (int64_t i = lo; i < hi; i++) acc += (double)p[i * inner];
        if (part) part[(o * inner + j) * nsplit + s] = acc;
        else out[o * inner + j] = (float)(acc * (double)scale);
    }
}

/* out[r] = scale * sum of part[r * nsplit ..] in span order. */
__global__ void col_finish_kernel(const double *part, int64_t outputs, int64_t nsplit, float scale, float *out) {
    GRID_STRIDE(r, outputs) {
        double acc = 0;
        for (int64_t s = 0; s < nsplit; s++) acc += part[r * nsplit + s];
        out[r] = (float)(acc * (double)scale);
    }
}


static int rows_sum(const float *x, int64_t rows, int64_t n, float scale, float *out) {
    cudaStream_t st = md__cuda_stream();
    int64_t nchunks = rows >= ROW_MANY || n <= ROW_CHUNK ? 1 : (n + ROW_CHUNK - 1) / ROW_CHUNK;
    if (nchunks == 1) {
        row_sum_kernel<float><<<grid_cap(rows), RB, 0, st>>>(x, rows, n, 1, n, scale, NULL, out);
        return check("sum_f32 (rows)");
    }
    double *part = (double *)md__cuda_scratch(sizeof(double) * (size_t)(rows * nchunks));
    if (!part) return -1;
    row_sum_kernel<float><<<grid_cap(rows * nchunks), RB, 0, st>>>(x, rows, n, nchunks, ROW_CHUNK, scale, part, NULL);
    if (check("sum_f32 (row chunks)")) return -1;
    row_sum_kernel<double><<<grid_cap(rows), RB, 0, st>>>(part, rows, nchunks, 1, nchunks, scale, NULL, out);
    return check("sum_f32 (row partials)");
}

static int cols_sum(const float *x, int64_t outer, int64_t n, int64_t inner, float scale, float *out) {
    cudaStream_t st = md__cuda_stream();
    int64_t outputs = outer * inner, nsplit = 1, span = n;
    if (outputs < COL_THREADS / 4 && n > 2 * COL_SPAN_MIN) {
        int64_t want = (COL_THREADS + outputs - 1) / outputs, most = (n + COL_SPAN_MIN - 1) / COL_SPAN_MIN;
        nsplit = want < most ? want : most;
        span = (n + nsplit - 1) / nsplit;
        nsplit = (n + span - 1) / span;   /* no empty span */
    }
    if (nsplit == 1) {
        col_sum_kernel<<<grid_cap((outputs + RB - 1) / RB), RB, 0, st>>>(x, outer, n, inner, 1, n, scale, NULL, out);
        return check("sum_f32 (columns)");
    }
    double *part = (double *)md__cuda_scratch(sizeof(double) * (size_t)(outputs * nsplit));
    if (!part) return -1;
    col_sum_kernel<<<grid_cap((outputs * nsplit + RB - 1) / RB), RB, 0, st>>>(x, outer, n, inner, nsplit, span, scale,
                                                                              part, NULL);
    if (check("sum_f32 (column spans)")) return -1;
    col_finish_kernel<<<grid_cap((outputs + RB - 1) / RB), RB, 0, st>>>(part, outputs, nsplit, scale, out);
    return check("sum_f32 (column partials)");
}

extern "C" int md__cuda_sum_f32(const float *x, int64_t outer, int64_t n, int64_t inner, float scale, float *out) {
    if (outer <= 0 || inner <= 0) return 0;
    if (n < 0) return md__cuda_fail("sum_f32", "negative length %lld", (long long)n);
    if (inner == 1 && n > ROW_SHORT) return rows_sum(x, outer, n, scale, out);
    return cols_sum(x, outer, n, inner, scale, out);
}

/* out[o, i, j] = scale * g[o, j]. */
__global__ void spread_kernel(const float *g, int64_t total, int64_t n, int64_t inner, float scale, float *out) {
    GRID_STRIDE(e, total) {
        int64_t j = e % inner, o = e / (n * inner);
        out[e] = g[o * inner + j] * scale;
    }
}

extern "C" int md__cuda_spread_f32(const float *g, int64_t outer, int64_t n, int64_t inner, float scale, float *out) {
    int64_t total = outer * n * inner;
    if (total <= 0) return 0;
    spread_kernel<<<grid_cap((total + RB - 1) / RB), RB, 0, md__cuda_stream()>>>(g, total, n, inner, scale, out);
    return check("spread_f32");
}
