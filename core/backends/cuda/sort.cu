/* CUDA sort / argsort / top-k along one dimension of a contiguous tensor
 * seen as [outer, n, inner]; mirrors md__cpu_sort_lines and
 * md__cpu_unsort_add_f32 (backends/cpu/sort.c).
 *
 * Every element gets an unsigned key whose order is the CPU's order on
 * doubles (NaN above every number, -0 == +0): f32 from its bits, i32 with
 * the sign flipped, u8 as is, i64 through its double (so values beyond 2^53
 * tie exactly where the CPU's do). Two stable CUB radix sorts of flat
 * positions (line * n + i) then give the CPU's stable result: first by key
 * (ascending or descending; ties keep the lower position), then by line.
 * Top-k keeps the first k of each sorted line. */
#include <stdint.h>
#include <cub/cub.cuh>
#include "backends/cuda/kernel_util.cuh"




static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

__device__ static inline uint32_t key_of(float v) {
    if (v != v) return 0xffffffffu;
    uint32_t u = __float_as_uint(v);
    if (u == 0x80000000u) u = 0;   /* -0 ties with +0 */
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ static inline uint32_t key_of(int32_t v) { return (uint32_t)v ^ 0x80000000u; }
__device__ static inline uint32_t key_of(uint8_t v) { return v; }
__device__ static inline uint64_t key_of(int64_t v) {
    double d = (double)v;   /* the CPU compares doubles: no -0 from an integer */
    uint64_t u = (uint64_t)__double_as_longlong(d);
    return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}

/* keys[p], ids[p] = p for flat position p = line * n + i, line = o * inner + j. */
template <typename T, typename K>
__global__ void keys_kernel(const T *x, int64_t n, int64_t inner, int64_t total, K *keys, uint32_t *ids) {
    GRID_STRIDE(p, total) {
        int64_t r = p / n, i = p % n, o = r / inner, j = r % inner;
        keys[p] = key_of(x[(o * n + i) * inner + j]);
        ids[p] = (uint32_t)p;
    }
}

__global__ void line_keys_kernel(const uint32_t *ids, int64_t n, int64_t total, uint32_t *lk) {
    GRID_STRIDE(q, total) lk[q] = (uint32_t)((int64_t)ids[q] / n);
}

/* The first k of each sorted line into [outer, k, inner]. */
template <typename T>
__global__ void take_kernel(const T *x, const uint32_t *ids, int64_t n, int64_t inner, int64_t k, int64_t lines,
                            T *vals, int64_t *idx) {
    GRID_STRIDE(e, lines * k) {
        int64_t r = e / k, t = e % k, o = r / inner, j = r % inner;
        int64_t i = (int64_t)ids[r * n + t] % n, dst = (o * k + t) * inner + j;
        if (idx) idx[dst] = i;
        if (vals) vals[dst] = x[(o * n + i) * inner + j];
    }
}

static int bits_for(uint64_t v) {
    int b = 1;
    while (b < 64 && (v >> b) != 0) b++;
    return b;
}

template <typename T, typename K>
static int sort_typed(const T *x, int64_t outer, int64_t n, int64_t inner, int64_t k, bool descending, T *vals,
                      int64_t *idx, int key_bits) {
    static const char *what = "sort_lines";
    cudaStream_t st = md__cuda_stream();
    int64_t lines = outer * inner, total = lines * n;
    if (total >= (int64_t)UINT32_MAX)
        return md__cuda_fail(what, "%lld elements exceed 32-bit indexing", (long long)total);
    int line_bits = bits_for((uint64_t)lines);
    cub::DoubleBuffer<K> dk(NULL, NULL);
    cub::DoubleBuffer<uint32_t> dv(NULL, NULL), dl(NULL, NULL);
    size_t b1 = 0, b2 = 0;
    cudaError_t err = descending ? cub::DeviceRadixSort::SortPairsDescending(NULL, b1, dk, dv, total, 0, key_bits, st)
                                 : cub::DeviceRadixSort::SortPairs(NULL, b1, dk, dv, total, 0, key_bits, st);
    if (md__cuda_check(err, what)) return -1;
    if (lines > 1 && md__cuda_check(cub::DeviceRadixSort::SortPairs(NULL, b2, dl, dv, total, 0, line_bits, st), what))
        return -1;
    size_t sz_k = align256(sizeof(K) * (size_t)total), sz_i = align256(sizeof(uint32_t) * (size_t)total);
    size_t tmp_bytes = align256(b1 > b2 ? b1 : b2);
    char *s = (char *)md__cuda_scratch(2 * sz_k + 4 * sz_i + tmp_bytes);
    if (!s) return -1;
    K *k0 = (K *)s; s += sz_k;
    K *k1 = (K *)s; s += sz_k;
    uint32_t *i0 = (uint32_t *)s; s += sz_i;
    uint32_t *i1 = (uint32_t *)s; s += sz_i;
    uint32_t *l0 = (uint32_t *)s; s += sz_i;
    uint32_t *l1 = (uint32_t *)s; s += sz_i;
    void *tmp = s;
    keys_kernel<T, K><<<grid_for(total), TPB, 0, st>>>(x, n, inner, total, k0, i0);
    if (md__cuda_check(cudaGetLastError(), "sort_lines (keys)")) return -1;
    cub::DoubleBuffer<K> bk(k0, k1);
    cub::DoubleBuffer<uint32_t> bv(i0, i1);
    err = descending ? cub::DeviceRadixSort::SortPairsDescending(tmp, b1, bk, bv, total, 0, key_bits, st)
                     : cub::DeviceRadixSort::SortPairs(tmp, b1, bk, bv, total, 0, key_bits, st);
    if (md__cuda_check(err, "sort_lines (sort by key)")) return -1;
    if (lines > 1) {   /* regroup by line, keeping each line's order */
        line_keys_kernel<<<grid_for(total), TPB, 0, st>>>(bv.Current(), n, total, l0);
        if (md__cuda_check(cudaGetLastError(), "sort_lines (lines)")) return -1;
        cub::DoubleBuffer<uint32_t> bl(l0, l1);
        if (md__cuda_check(cub::DeviceRadixSort::SortPairs(tmp, b2, bl, bv, total, 0, line_bits, st),
                           "sort_lines (sort by line)"))
            return -1;
    }
    take_kernel<T><<<grid_for(lines * k), TPB, 0, st>>>(x, bv.Current(), n, inner, k, lines, vals, idx);
    return md__cuda_check(cudaGetLastError(), "sort_lines (take)");
}

extern "C" int md__cuda_sort_lines(int dtype, const void *x, int64_t outer, int64_t n, int64_t inner, int64_t k,
                                   bool descending, void *vals, int64_t *idx) {
    if (outer * inner == 0 || k == 0 || n == 0) return 0;
    switch (dtype) {
    case 0: return sort_typed<float, uint32_t>((const float *)x, outer, n, inner, k, descending, (float *)vals, idx, 32);
    case 1: return sort_typed<int64_t, uint64_t>((const int64_t *)x, outer, n, inner, k, descending, (int64_t *)vals,
                                                 idx, 64);
    case 2: return sort_typed<int32_t, uint32_t>((const int32_t *)x, outer, n, inner, k, descending, (int32_t *)vals,
                                                 idx, 32);
    case 3: return sort_typed<uint8_t, uint32_t>((const uint8_t *)x, outer, n, inner, k, descending, (uint8_t *)vals,
                                                 idx, 8);
    default: return md__cuda_fail("sort_lines", "unsupported dtype %d", dtype);
    }
}

/* Indices are distinct within a line: one writer per element of gx. */
__global__ void unsort_add_kernel(const float *g, const int64_t *idx, int64_t outer, int64_t n, int64_t inner,
                                  int64_t k, float *gx) {
    GRID_STRIDE(s, outer * k * inner) {
        int64_t j = s % inner, o = s / (k * inner);
        int64_t d = (o * n + idx[s]) * inner + j;
        gx[d] = __fadd_rn(gx[d], g[s]);
    }
}

extern "C" int md__cuda_unsort_add_f32(const float *g, const int64_t *idx, int64_t outer, int64_t n, int64_t inner,
                                       int64_t k, float *gx) {
    int64_t total = outer * k * inner;
    if (total <= 0) return 0;
    unsort_add_kernel<<<grid_for(total), TPB, 0, md__cuda_stream()>>>(g, idx, outer, n, inner, k, gx);
    return md__cuda_check(cudaGetLastError(), "unsort_add_f32");
}
