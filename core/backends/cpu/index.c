/* CPU indexing kernels. */
#include <string.h>
#include "mmdet/tensor.h"
#include "backends/cpu/elementwise.h"
#include "backends/cpu/index.h"

void md__cpu_index_select(size_t elem, const void *a, int64_t outer, int64_t n, int64_t inner,
                          const int64_t *idx, int64_t k, void *out) {
    size_t row = (size_t)inner * elem;
    #pragma omp parallel for if (outer * k * inner > MD_CPU_PAR_MIN) schedule(static)
    for (int64_t t = 0; t < outer * k; t++) {
        int64_t o = t / k, j = t % k;
        memcpy((char *)out + (size_t)t * row, (const char *)a + (size_t)(o * n + idx[j]) * row, row);
    }
}

void md__cpu_index_add_f32(const float *g, int64_t outer, int64_t n, int64_t inner, const int64_t *idx,
                           int64_t k, float *gx) {
    #pragma omp parallel for if (outer > 1 && outer * k * inner > MD_CPU_PAR_MIN) schedule(static)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < k; j++) {
            const float *s = g + (o * k + j) * inner;
            float *d = gx + (o * n + idx[j]) * inner;
            for (int64_t c = 0; c < inner; c++) d[c] += s[c];
        }
}

void md__cpu_index_offsets(int ndim, const int64_t *ishape, int dim, const int64_t *idx, const int64_t *st,
                           int64_t *off) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= ishape[d];
    #pragma omp parallel for if (n > MD_CPU_PAR_MIN) schedule(static)
    for (int64_t p = 0; p < n; p++) {
        int64_t rem = p, o = 0;
        for (int d = ndim - 1; d >= 0; d--) {
            int64_t i = rem % ishape[d];
            rem /= ishape[d];
            o += (d == dim ? idx[p] : i) * st[d];
        }
        off[p] = o;
    }
}

#define TAKE(T)                                                                  \
    do {                                                                         \
        const T *s = (const T *)a;                                               \
        T *d = (T *)out;                                                         \
        _Pragma("omp parallel for if (n > MD_CPU_PAR_MIN) schedule(static)")     \
        for (int64_t p = 0; p < n; p++) d[p] = s[off[p]];                        \
    } while (0)

void md__cpu_take(size_t elem, const void *a, const int64_t *off, int64_t n, void *out) {
    switch (elem) {
    case 1: TAKE(uint8_t); break;
    case 2: TAKE(uint16_t); break;
    case 4: TAKE(uint32_t); break;
    case 8: TAKE(uint64_t); break;
    default: break;
    }
}

#define PUT_ADD(T)                                                    \
    do {                                                              \
        T *d = (T *)out;                                              \
        const T *s = (const T *)src;                                  \
        for (int64_t p = 0; p < n; p++) d[off[p]] += s[p];            \
    } while (0)

int md__cpu_put_add(int dtype, void *out, const int64_t *off, int64_t n, const void *src) {
    switch (dtype) {
    case MD_F32: PUT_ADD(float); return 0;
    case MD_I64: PUT_ADD(int64_t); return 0;
    case MD_I32: PUT_ADD(int32_t); return 0;
    default: return -1;
    }
}

void md__cpu_index_check(const int64_t *idx, int64_t n, int64_t size, int64_t *bad, int64_t *val) {
    *bad = -1;
    *val = 0;
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= size) {
            *bad = i;
            *val = idx[i];
            return;
        }
}

void md__cpu_nonzero(int dtype, const void *x, int ndim, const int64_t *shape, int64_t *out, int64_t *count) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    size_t es = md_dtype_size((md_dtype)dtype);
    const char *p = x;
    static const char zero[8] = { 0 };
    /* -0.0f is zero too: compare floats as floats */
    #define NZ(i) (dtype == MD_F32 ? ((const float *)x)[i] != 0.0f : memcmp(p + (size_t)(i) * es, zero, es) != 0)
    int64_t cnt = 0;
    if (!out) {
        for (int64_t i = 0; i < n; i++) cnt += NZ(i);
        *count = cnt;
        return;
    }
    int nd = ndim ? ndim : 1;
    for (int64_t i = 0; i < n; i++) {
        if (!NZ(i)) continue;
        if (ndim == 1) {
            out[cnt++] = i;
            continue;
        }
        int64_t rem = i;
        for (int d = nd - 1; d >= 0; d--) {
            int64_t s = ndim ? shape[d] : 1;
            out[cnt * nd + d] = rem % s;
            rem /= s;
        }
        cnt++;
    }
    #undef NZ
    *count = cnt;
}
