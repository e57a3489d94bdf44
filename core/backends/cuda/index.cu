/* CUDA indexing kernels (backends/cpu/index.c and core/ops/op_index.c's
 * nonzero): range checks, index_select and its backward (index_add), gather
 * and scatter through element offsets (take, put_add), nonzero.
 *
 * Scatter-adds are deterministic and give the CPU's bits: the targets are
 * sorted with a stable radix sort (CUB) so that every target's sources sit
 * together in their original order, and one thread per target adds them in
 * that order, starting from the target's value, exactly as the CPU's serial
 * loop does. No float atomics anywhere. nonzero scans flags with CUB and
 * reads the count back (its output size depends on the data). */
#include <limits.h>
#include <stdint.h>
#include <cub/cub.cuh>
#include "backends/cuda/kernel_util.cuh"





static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

/* Bits that hold every value in [0, limit). */
static int bits_for(int64_t limit) {
    uint64_t v = limit > 1 ? (uint64_t)(limit - 1) : 1;
    int b = 0;
    while (v) {
        b++;
        v >>= 1;
    }
    return b;
}

/* ----------------------------------------------------------- range check -- */

__global__ void init_kernel(unsigned long long *p, unsigned long long v) { *p = v; }

__global__ void range_kernel(const int64_t *idx, int64_t n, int64_t size, unsigned long long *bad) {
    GRID_STRIDE(i, n) if (idx[i] < 0 || idx[i] >= size) atomicMin(bad, (unsigned long long)i);   /* the first */
}

extern "C" int md__cuda_index_check(const int64_t *idx, int64_t n, int64_t size, int64_t *bad, int64_t *val) {
    *bad = -1;
    *val = 0;
    if (n <= 0) return 0;
    unsigned long long *d = (unsigned long long *)md__cuda_scratch(sizeof *d);
    if (!d) return -1;
    cudaStream_t st = md__cuda_stream();
    init_kernel<<<1, 1, 0, st>>>(d, (unsigned long long)n);
    range_kernel<<<grid_for(n), TPB, 0, st>>>(idx, n, size, d);
    if (check("index_check")) return -1;
    unsigned long long h = 0;
    if (md__cuda_check(cudaMemcpyAsync(&h, d, sizeof h, cudaMemcpyDeviceToHost, st), "index_check (read back)") ||
        md__cuda_check(cudaStreamSynchronize(st), "index_check (sync)"))
        return -1;
    if (h >= (unsigned long long)n) return 0;
    *bad = (int64_t)h;
    if (md__cuda_check(cudaMemcpyAsync(val, idx + h, sizeof *val, cudaMemcpyDeviceToHost, st), "index_check (value)") ||
        md__cuda_check(cudaStreamSynchronize(st), "index_check (sync)"))
        return -1;
    return 0;
}

/* ---------------------------------------------------------- index_select -- */

template <typename T>
__global__ void index_select_kernel(const T *a, int64_t outer, int64_t n, int64_t inner, const int64_t *idx,
                                    int64_t k, T *out) {
    GRID_STRIDE(t, outer * k * inner) {
        int64_t c = t % inner, r = t / inner, j = r % k, o = r / k;
        out[t] = a[(o * n + idx[j]) * inner + c];
    }
}

template <typename T>
static int isel_t(const void *a, int64_t outer, int64_t n, int64_t inner, const int64_t *idx, int64_t k, void *out) {
    index_select_kernel<T><<<grid_for(outer * k * inner), TPB, 0, md__cuda_stream()>>>((const T *)a, outer, n, inner,
                                                                                        idx, k, (T *)out);
    return check("index_select");
}

extern "C" int md__cuda_index_select(size_t elem, const void *a, int64_t outer, int64_t n, int64_t inner,
                                     const int64_t *idx, int64_t k, void *out) {
    if (outer * k * inner <= 0) return 0;
    switch (elem) {
    case 1: return isel_t<uint8_t>(a, outer, n, inner, idx, k, out);
    case 2: return isel_t<uint16_t>(a, outer, n, inner, idx, k, out);
    case 4: return isel_t<uint32_t>(a, outer, n, inner, idx, k, out);
    case 8: return isel_t<uint64_t>(a, outer, n, inner, idx, k, out);
    default: return md__cuda_fail("index_select", "element size %zu is not 1, 2, 4 or 8", elem);
    }
}

/* ------------------------------------------------------ stable key sort -- */

__global__ void iota_kernel(int64_t *v, int64_t n) { GRID_STRIDE(i, n) v[i] = i; }

/* keys[0..n) (values in [0, limit)) sorted stably into skeys, with their
 * positions in spos; both in the backend's scratch. */
typedef struct sorted { int64_t *skeys, *spos; } sorted;

static int sort_keys(const char *what, const int64_t *keys, int64_t n, int64_t limit, sorted *s) {
    if (n > INT_MAX) return md__cuda_fail(what, "%lld entries (at most %d)", (long long)n, INT_MAX);
    cudaStream_t st = md__cuda_stream();
    int bits = bits_for(limit);
    size_t tmp = 0;
    if (md__cuda_check(cub::DeviceRadixSort::SortPairs(NULL, tmp, (const int64_t *)NULL, (int64_t *)NULL,
                                                       (const int64_t *)NULL, (int64_t *)NULL, (int)n, 0, bits, st),
                       what))
        return -1;
    size_t part = align256(sizeof(int64_t) * (size_t)n);
    char *base = (char *)md__cuda_scratch(3 * part + tmp);
    if (!base) return -1;
    int64_t *pos = (int64_t *)base;
    s->skeys = (int64_t *)(base + part);
    s->spos = (int64_t *)(base + 2 * part);
    iota_kernel<<<grid_for(n), TPB, 0, st>>>(pos, n);
    if (check(what)) return -1;
    return md__cuda_check(cub::DeviceRadixSort::SortPairs(base + 3 * part, tmp, keys, s->skeys, pos, s->spos, (int)n,
                                                          0, bits, st),
                          what)
               ? -1
               : 0;
}

/* ------------------------------------------------------------- index_add -- */

/* Thread (o, p, c): when p starts a run of equal sorted keys, the target
 * gx[o, key, c] adds g[o, j, c] for the run's j in increasing order. */
__global__ void index_add_kernel(const float *g, int64_t outer, int64_t n, int64_t inner, const int64_t *skeys,
                                 const int64_t *spos, int64_t k, float *gx) {
    GRID_STRIDE(t, outer * k * inner) {
        int64_t c = t % inner, r = t / inner, p = r % k, o = r / k;
        int64_t key = skeys[p];
        if (p > 0 && skeys[p - 1] == key) continue;
        float *d = gx + (o * n + key) * inner + c;
        float acc = *d;
        for (int64_t q = p; q < k && skeys[q] == key; q++) acc = __fadd_rn(acc, g[(o * k + spos[q]) * inner + c]);
        *d = acc;
    }
}

extern "C" int md__cuda_index_add_f32(const float *g, int64_t outer, int64_t n, int64_t inner, const int64_t *idx,
                                      int64_t k, float *gx) {
    if (outer * k * inner <= 0) return 0;
    sorted s;
    if (sort_keys("index_add_f32", idx, k, n, &s)) return -1;
    index_add_kernel<<<grid_for(outer * k * inner), TPB, 0, md__cuda_stream()>>>(g, outer, n, inner, s.skeys, s.spos, k,
                                                                                  gx);
    return check("index_add_f32");
}

/* ------------------------------------------------------ offsets, take, put -- */

typedef struct dims { int64_t shape[MD_BE_MAX_DIMS], st[MD_BE_MAX_DIMS]; } dims;

__global__ void offsets_kernel(int ndim, dims D, int dim, const int64_t *idx, int64_t n, int64_t *off) {
    GRID_STRIDE(p, n) {
        int64_t rem = p, o = 0;
        for (int d = ndim - 1; d >= 0; d--) {
            int64_t i = rem % D.shape[d];
            rem /= D.shape[d];
            o += (d == dim ? idx[p] : i) * D.st[d];
        }
        off[p] = o;
    }
}

extern "C" int md__cuda_index_offsets(int ndim, const int64_t *ishape, int dim, const int64_t *idx,
                                      const int64_t *st, int64_t *off) {
    if (ndim < 0 || ndim > MD_BE_MAX_DIMS) return md__cuda_fail("index_offsets", "%d dimensions", ndim);
    dims D;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        D.shape[d] = ishape[d];
        D.st[d] = st[d];
        n *= ishape[d];
    }
    if (n <= 0) return 0;
    offsets_kernel<<<grid_for(n), TPB, 0, md__cuda_stream()>>>(ndim, D, dim, idx, n, off);
    return check("index_offsets");
}

template <typename T>
__global__ void take_kernel(const T *a, const int64_t *off, int64_t n, T *out) {
    GRID_STRIDE(p, n) out[p] = a[off[p]];
}

template <typename T>
static int take_t(const void *a, const int64_t *off, int64_t n, void *out) {
    take_kernel<T><<<grid_for(n), TPB, 0, md__cuda_stream()>>>((const T *)a, off, n, (T *)out);
    return check("take");
}

extern "C" int md__cuda_take(size_t elem, const void *a, const int64_t *off, int64_t n, void *out) {
    if (n <= 0) return 0;
    switch (elem) {
    case 1: return take_t<uint8_t>(a, off, n, out);
    case 2: return take_t<uint16_t>(a, off, n, out);
    case 4: return take_t<uint32_t>(a, off, n, out);
    case 8: return take_t<uint64_t>(a, off, n, out);
    default: return md__cuda_fail("take", "element size %zu is not 1, 2, 4 or 8", elem);
    }
}

template <typename T>
__device__ __forceinline__ T add_rn(T a, T b) {
    if constexpr (std::is_same<T, float>::value) return __fadd_rn(a, b);
    else return (T)(a + b);
}

/* Thread p: when p starts a run of equal sorted offsets, out[off] adds the
 * run's sources in increasing position. */
template <typename T>
__global__ void put_add_kernel(const int64_t *skeys, const int64_t *spos, int64_t n, const T *src, T *out) {
    GRID_STRIDE(p, n) {
        int64_t key = skeys[p];
        if (p > 0 && skeys[p - 1] == key) continue;
        T acc = out[key];
        for (int64_t q = p; q < n && skeys[q] == key; q++) acc = add_rn(acc, src[spos[q]]);
        out[key] = acc;
    }
}

extern "C" int md__cuda_put_add(int dtype, void *out, const int64_t *off, int64_t n, int64_t limit, const void *src) {
    if (n <= 0) return 0;
    if (dtype < 0 || dtype > 2) return md__cuda_fail("put_add", "dtype %d is not f32, i64 or i32", dtype);
    sorted s;
    if (sort_keys("put_add", off, n, limit, &s)) return -1;
    cudaStream_t st = md__cuda_stream();
    switch (dtype) {
    case 0: put_add_kernel<<<grid_for(n), TPB, 0, st>>>(s.skeys, s.spos, n, (const float *)src, (float *)out); break;
    case 1: put_add_kernel<<<grid_for(n), TPB, 0, st>>>(s.skeys, s.spos, n, (const int64_t *)src, (int64_t *)out); break;
    default: put_add_kernel<<<grid_for(n), TPB, 0, st>>>(s.skeys, s.spos, n, (const int32_t *)src, (int32_t *)out); break;
    }
    return check("put_add");
}

/* --------------------------------------------------------------- nonzero -- */

/* As the CPU: floats compare as floats (-0.0 is zero, NaN counts), other
 * types by value. */
template <typename T>
__global__ void nz_flags_kernel(const T *x, int64_t n, int64_t *flag) {
    GRID_STRIDE(i, n) flag[i] = x[i] != (T)0;
}

__global__ void nz_write_kernel(const int64_t *flag, const int64_t *pos, int64_t n, int ndim, dims D, int64_t *out) {
    GRID_STRIDE(i, n) {
        if (!flag[i]) continue;
        int64_t k = pos[i] - 1;   /* inclusive scan */
        if (ndim <= 1) {
            out[k] = i;
            continue;
        }
        int64_t rem = i;
        for (int d = ndim - 1; d >= 0; d--) {
            out[k * ndim + d] = rem % D.shape[d];
            rem /= D.shape[d];
        }
    }
}

extern "C" int md__cuda_nonzero(int dtype, const void *x, int ndim, const int64_t *shape, int64_t *out,
                                int64_t *count) {
    *count = 0;
    if (ndim < 0 || ndim > MD_BE_MAX_DIMS) return md__cuda_fail("nonzero", "%d dimensions", ndim);
    dims D;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        D.shape[d] = shape[d];
        D.st[d] = 0;
        n *= shape[d];
    }
    if (n <= 0) return 0;
    if (n > INT_MAX) return md__cuda_fail("nonzero", "%lld elements (at most %d)", (long long)n, INT_MAX);
    cudaStream_t st = md__cuda_stream();
    size_t tmp = 0;
    if (md__cuda_check(cub::DeviceScan::InclusiveSum(NULL, tmp, (const int64_t *)NULL, (int64_t *)NULL, (int)n, st),
                       "nonzero"))
        return -1;
    size_t part = align256(sizeof(int64_t) * (size_t)n);
    char *base = (char *)md__cuda_scratch(2 * part + tmp);
    if (!base) return -1;
    int64_t *flag = (int64_t *)base, *pos = (int64_t *)(base + part);
    switch (dtype) {
    case 0: nz_flags_kernel<<<grid_for(n), TPB, 0, st>>>((const float *)x, n, flag); break;
    case 1: nz_flags_kernel<<<grid_for(n), TPB, 0, st>>>((const int64_t *)x, n, flag); break;
    case 2: nz_flags_kernel<<<grid_for(n), TPB, 0, st>>>((const int32_t *)x, n, flag); break;
    case 3: nz_flags_kernel<<<grid_for(n), TPB, 0, st>>>((const uint8_t *)x, n, flag); break;
    default: return md__cuda_fail("nonzero", "unknown dtype %d", dtype);
    }
    if (check("nonzero (flags)")) return -1;
    if (md__cuda_check(cub::DeviceScan::InclusiveSum(base + 2 * part, tmp, flag, pos, (int)n, st), "nonzero (scan)"))
        return -1;
    if (md__cuda_check(cudaMemcpyAsync(count, pos + n - 1, sizeof *count, cudaMemcpyDeviceToHost, st),
                       "nonzero (count)") ||
        md__cuda_check(cudaStreamSynchronize(st), "nonzero (sync)"))
        return -1;
    if (!out || *count == 0) return 0;
    nz_write_kernel<<<grid_for(n), TPB, 0, st>>>(flag, pos, n, ndim, D, out);
    return check("nonzero (write)");
}
