/* CPU element-wise kernels: strided loops with contiguous fast paths. */
/* FP traps are never enabled here; without this GCC will not if-convert the
 * clamps and selects of the float loops, and so not vectorise them. */
#pragma GCC optimize("no-trapping-math")
#include <math.h>
#include <string.h>
#include "backends/cpu/elementwise.h"
#include "backends/cpu/elementwise_math.h"

#define BLK 4096   /* inner-loop block: the unit of parallel work */

void md__loop_init(md__loop *L, int ndim, const int64_t *shape, int nops, const int64_t *const *strides) {
    memset(L, 0, sizeof *L);
    L->nops = nops;
    L->numel = 1;
    for (int d = 0; d < ndim; d++) L->numel *= shape[d];
    int k = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1) continue;
        if (k > 0) {
            bool merge = true;   /* d-1 kept and d contiguous with it for all operands */
            for (int o = 0; o < nops; o++)
                if (L->st[o][k - 1] != strides[o][d] * shape[d]) merge = false;
            if (merge) {
                L->shape[k - 1] *= shape[d];
                for (int o = 0; o < nops; o++) L->st[o][k - 1] = strides[o][d];
                continue;
            }
        }
        L->shape[k] = shape[d];
        for (int o = 0; o < nops; o++) L->st[o][k] = strides[o][d];
        k++;
    }
    if (k == 0) {   /* a scalar, or all dimensions of size 1 */
        L->shape[0] = L->numel;
        for (int o = 0; o < nops; o++) L->st[o][0] = 1;
        k = 1;
    }
    L->ndim = k;
}

/* Task t of the loop: element offsets of each operand at its start and its length. */
static inline void loop_task(const md__loop *L, int64_t t, int64_t nb, int64_t *off, int64_t *len) {
    int last = L->ndim - 1;
    int64_t inner = L->shape[last], row = t / nb, blk = t % nb;
    for (int o = 0; o < L->nops; o++) off[o] = blk * BLK * L->st[o][last];
    for (int d = last - 1; d >= 0; d--) {
        int64_t i = row % L->shape[d];
        row /= L->shape[d];
        for (int o = 0; o < L->nops; o++) off[o] += i * L->st[o][d];
    }
    int64_t rem = inner - blk * BLK;
    *len = rem < BLK ? rem : BLK;
}

#define LOOP_SETUP(L)                                                         \
    if ((L)->numel == 0) return;                                              \
    int last_ = (L)->ndim - 1;                                                \
    int64_t nb_ = ((L)->shape[last_] + BLK - 1) / BLK;                        \
    int64_t tasks_ = (L)->numel / (L)->shape[last_] * nb_;                    \
    int64_t numel_ = (L)->numel;                                              \
    (void)numel_;

/* ---------------------------------------------------------------- binary -- */

#define DEFINE_BIN(NAME, TA, TO, EXPR)                                                         \
    static void NAME(const md__loop *L, const void *pa, const void *pb, void *po) {             \
        LOOP_SETUP(L)                                                                          \
        int64_t so = L->st[0][last_], sa = L->st[1][last_], sb = L->st[2][last_];              \
        _Pragma("omp parallel for if (numel_ > MD_CPU_PAR_MIN && tasks_ > 1) schedule(static)") \
        for (int64_t t = 0; t < tasks_; t++) {                                                 \
            int64_t off[3], n;                                                                 \
            loop_task(L, t, nb_, off, &n);                                                     \
            const TA *A = (const TA *)pa + off[1], *B = (const TA *)pb + off[2];               \
            TO *O = (TO *)po + off[0];                                                         \
            if (so == 1 && sa == 1 && sb == 1) {                                               \
                for (int64_t j = 0; j < n; j++) { TA x = A[j], y = B[j]; O[j] = (TO)(EXPR); }  \
            } else if (so == 1 && sa == 1 && sb == 0) {                                        \
                TA y = B[0];                                                                   \
                for (int64_t j = 0; j < n; j++) { TA x = A[j]; O[j] = (TO)(EXPR); }            \
            } else if (so == 1 && sa == 0 && sb == 1) {                                        \
                TA x = A[0];                                                                   \
                for (int64_t j = 0; j < n; j++) { TA y = B[j]; O[j] = (TO)(EXPR); }            \
            } else {                                                                           \
                for (int64_t j = 0; j < n; j++) {                                              \
                    TA x = A[j * sa], y = B[j * sb];                                           \
                    O[j * so] = (TO)(EXPR);                                                    \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

#define DEFINE_BIN_ARITH(SUF, T)              \
    DEFINE_BIN(add_##SUF, T, T, x + y)        \
    DEFINE_BIN(sub_##SUF, T, T, x - y)        \
    DEFINE_BIN(mul_##SUF, T, T, x * y)
#define DEFINE_BIN_CMP(SUF, T)                 \
    DEFINE_BIN(gt_##SUF, T, uint8_t, x > y)    \
    DEFINE_BIN(ge_##SUF, T, uint8_t, x >= y)   \
    DEFINE_BIN(lt_##SUF, T, uint8_t, x < y)    \
    DEFINE_BIN(le_##SUF, T, uint8_t, x <= y)   \
    DEFINE_BIN(eq_##SUF, T, uint8_t, x == y)   \
    DEFINE_BIN(ne_##SUF, T, uint8_t, x != y)

DEFINE_BIN_ARITH(f32, float)
DEFINE_BIN_ARITH(i64, int64_t)
DEFINE_BIN_ARITH(i32, int32_t)
DEFINE_BIN(div_f32, float, float, x / y)
DEFINE_BIN_CMP(f32, float)
DEFINE_BIN_CMP(i64, int64_t)
DEFINE_BIN_CMP(i32, int32_t)
DEFINE_BIN_CMP(u8, uint8_t)
DEFINE_BIN(and_u8, uint8_t, uint8_t, x && y)
DEFINE_BIN(or_u8, uint8_t, uint8_t, x || y)

typedef void (*bin_kernel)(const md__loop *, const void *, const void *, void *);

int md__cpu_binary(md__binop op, md_dtype dt, const md__loop *L, const void *a, const void *b, void *out) {
    /* rows: op; columns: f32, i64, i32, u8 */
    static const bin_kernel table[][4] = {
        [MD_BIN_ADD] = { add_f32, add_i64, add_i32, NULL },
        [MD_BIN_SUB] = { sub_f32, sub_i64, sub_i32, NULL },
        [MD_BIN_MUL] = { mul_f32, mul_i64, mul_i32, NULL },
        [MD_BIN_DIV] = { div_f32, NULL, NULL, NULL },
        [MD_BIN_GT] = { gt_f32, gt_i64, gt_i32, gt_u8 },
        [MD_BIN_GE] = { ge_f32, ge_i64, ge_i32, ge_u8 },
        [MD_BIN_LT] = { lt_f32, lt_i64, lt_i32, lt_u8 },
        [MD_BIN_LE] = { le_f32, le_i64, le_i32, le_u8 },
        [MD_BIN_EQ] = { eq_f32, eq_i64, eq_i32, eq_u8 },
        [MD_BIN_NE] = { ne_f32, ne_i64, ne_i32, ne_u8 },
        [MD_BIN_AND] = { NULL, NULL, NULL, and_u8 },
        [MD_BIN_OR] = { NULL, NULL, NULL, or_u8 },
    };
    if ((unsigned)op > MD_BIN_OR || (unsigned)dt > MD_U8) return -1;
    bin_kernel k = table[op][dt];
    if (!k) return -1;
    k(L, a, b, out);
    return 0;
}

#define CMP_SCALAR_LOOP(T, Y)                                                              \
    do {                                                                                   \
        const T *x = (const T *)a;                                                         \
        switch (op) {                                                                      \
        case MD_BIN_GT: _Pragma("omp parallel for if (n > MD_CPU_PAR_MIN)") for (int64_t i = 0; i < n; i++) out[i] = x[i] > (Y); break; \
        case MD_BIN_GE: _Pragma("omp parallel for if (n > MD_CPU_PAR_MIN)") for (int64_t i = 0; i < n; i++) out[i] = x[i] >= (Y); break; \
        case MD_BIN_LT: _Pragma("omp parallel for if (n > MD_CPU_PAR_MIN)") for (int64_t i = 0; i < n; i++) out[i] = x[i] < (Y); break; \
        case MD_BIN_LE: _Pragma("omp parallel for if (n > MD_CPU_PAR_MIN)") for (int64_t i = 0; i < n; i++) out[i] = x[i] <= (Y); break; \
        case MD_BIN_EQ: _Pragma("omp parallel for if (n > MD_CPU_PAR_MIN)") for (int64_t i = 0; i < n; i++) out[i] = x[i] == (Y); break; \
        case MD_BIN_NE: _Pragma("omp parallel for if (n > MD_CPU_PAR_MIN)") for (int64_t i = 0; i < n; i++) out[i] = x[i] != (Y); break; \
        default: return -1;                                                                \
        }                                                                                  \
    } while (0)

int md__cpu_compare_scalar(md__binop op, md_dtype dt, int64_t n, const void *a, double s, uint8_t *out) {
    switch (dt) {
    case MD_F32: { float y = (float)s; CMP_SCALAR_LOOP(float, y); break; }
    case MD_I64: CMP_SCALAR_LOOP(int64_t, s); break;
    case MD_I32: CMP_SCALAR_LOOP(int32_t, s); break;
    case MD_U8: CMP_SCALAR_LOOP(uint8_t, s); break;
    default: return -1;
    }
    return 0;
}

/* ----------------------------------------------------------------- unary -- */

#define UNARY_LOOP(EXPR)                                                     \
    _Pragma("omp parallel for simd if (n > MD_CPU_PAR_MIN) schedule(static)") \
    for (int64_t i = 0; i < n; i++) { float v = x[i]; y[i] = (EXPR); }       \
    break;

void md__cpu_unary_f32(md__unop op, int64_t n, const float *x, float p0, float p1, float *y) {
    switch (op) {
    case MD_UN_NEG: UNARY_LOOP(-v)
    case MD_UN_RELU: UNARY_LOOP(v > 0.0f || v != v ? v : 0.0f)   /* NaN passes, as PyTorch */
    case MD_UN_SIGMOID: UNARY_LOOP(1.0f / (1.0f + md__expf(-v)))
    case MD_UN_EXP: UNARY_LOOP(md__expf(v))
    case MD_UN_LOG: UNARY_LOOP(logf(v))
    case MD_UN_SQRT: UNARY_LOOP(sqrtf(v))
    case MD_UN_ABS: UNARY_LOOP(fabsf(v))
    case MD_UN_CLAMP: UNARY_LOOP(v != v ? v : (v < p0 ? p0 : (v > p1 ? p1 : v)))
    case MD_UN_POW:
        if (p0 == 2.0f) { UNARY_LOOP(v * v) }
        else if (p0 == 0.5f) { UNARY_LOOP(sqrtf(v)) }
        else { UNARY_LOOP(powf(v, p0)) }
        break;
    case MD_UN_ADD_SCALAR: UNARY_LOOP(v + p0)
    case MD_UN_MUL_SCALAR: UNARY_LOOP(v * p0)
    case MD_UN_NOT: UNARY_LOOP(v == 0.0f)
    case MD_UN_ATAN: UNARY_LOOP(atanf(v))
    }
}

#define INT_UNARY(T)                                                                   \
    do {                                                                               \
        const T *xs = (const T *)x;                                                    \
        T *ys = (T *)y;                                                                \
        for (int64_t i = 0; i < n; i++) ys[i] = (T)md__unary_int_value(op, (double)xs[i], p0, p1); \
    } while (0)

int md__cpu_unary_int(md__unop op, md_dtype dt, int64_t n, const void *x, double p0, double p1, void *y) {
    if (!md__unary_int_ok(op)) return -1;
    switch (dt) {
    case MD_I64: INT_UNARY(int64_t); break;
    case MD_I32: INT_UNARY(int32_t); break;
    case MD_U8: INT_UNARY(uint8_t); break;
    default: return -1;
    }
    return 0;
}

#define BW_LOOP(EXPR)                                                        \
    _Pragma("omp parallel for simd if (n > MD_CPU_PAR_MIN) schedule(static)") \
    for (int64_t i = 0; i < n; i++) { float gi = g[i]; (void)gi; gx[i] = (EXPR); } \
    break;

void md__cpu_unary_f32_backward(md__unop op, int64_t n, const float *x, const float *y, const float *g,
                                float p0, float p1, float *gx) {
    switch (op) {
    case MD_UN_NEG: BW_LOOP(-gi)
    case MD_UN_RELU: BW_LOOP(y[i] > 0.0f ? gi : 0.0f)
    case MD_UN_SIGMOID: BW_LOOP(gi * y[i] * (1.0f - y[i]))
    case MD_UN_EXP: BW_LOOP(gi * y[i])
    case MD_UN_LOG: BW_LOOP(gi / x[i])
    case MD_UN_SQRT: BW_LOOP(gi * 0.5f / y[i])
    /* PyTorch: sign(0) = 0, so abs has a zero gradient at 0 */
    case MD_UN_ABS: BW_LOOP(x[i] > 0.0f ? gi : (x[i] < 0.0f ? -gi : 0.0f))
    /* PyTorch passes the gradient where lo <= x <= hi (bounds included) */
    case MD_UN_CLAMP: BW_LOOP(x[i] >= p0 && x[i] <= p1 ? gi : 0.0f)
    case MD_UN_POW:
        if (p0 == 0.0f) { BW_LOOP(0.0f) }
        else if (p0 == 2.0f) { BW_LOOP(2.0f * gi * x[i]) }
        else { BW_LOOP(gi * p0 * powf(x[i], p0 - 1.0f)) }
        break;
    case MD_UN_ADD_SCALAR: BW_LOOP(gi)
    case MD_UN_MUL_SCALAR: BW_LOOP(gi * p0)
    case MD_UN_NOT: BW_LOOP(0.0f)
    case MD_UN_ATAN: BW_LOOP(gi / (1.0f + x[i] * x[i]))
    }
    (void)p1;
}

/* ------------------------------------------------------ where, copy, cast -- */

#define WHERE_T(T)                                                                              \
    do {                                                                                        \
        _Pragma("omp parallel for if (numel_ > MD_CPU_PAR_MIN && tasks_ > 1) schedule(static)") \
        for (int64_t t = 0; t < tasks_; t++) {                                                  \
            int64_t off[4], n;                                                                  \
            loop_task(L, t, nb_, off, &n);                                                      \
            const uint8_t *C = cond + off[1];                                                   \
            const T *A = (const T *)a + off[2], *B = (const T *)b + off[3];                     \
            T *O = (T *)out + off[0];                                                           \
            int64_t so = L->st[0][last_], sc = L->st[1][last_], sa = L->st[2][last_], sb = L->st[3][last_]; \
            for (int64_t j = 0; j < n; j++) O[j * so] = C[j * sc] ? A[j * sa] : B[j * sb];     \
        }                                                                                       \
    } while (0)

void md__cpu_where(const md__loop *L, size_t elem, const uint8_t *cond, const void *a, const void *b, void *out) {
    LOOP_SETUP(L)
    switch (elem) {
    case 1: WHERE_T(uint8_t); break;
    case 2: WHERE_T(uint16_t); break;
    case 4: WHERE_T(uint32_t); break;
    case 8: WHERE_T(uint64_t); break;
    default: break;
    }
}

#define COPY_T(T)                                                                               \
    do {                                                                                        \
        int64_t so = L->st[0][last_], ss = L->st[1][last_];                                    \
        _Pragma("omp parallel for if (numel_ > MD_CPU_PAR_MIN && tasks_ > 1) schedule(static)") \
        for (int64_t t = 0; t < tasks_; t++) {                                                  \
            int64_t off[2], n;                                                                  \
            loop_task(L, t, nb_, off, &n);                                                      \
            const T *S = (const T *)src + off[1];                                               \
            T *D = (T *)dst + off[0];                                                           \
            if (so == 1 && ss == 1) memcpy(D, S, (size_t)n * sizeof(T));                        \
            else for (int64_t j = 0; j < n; j++) D[j * so] = S[j * ss];                         \
        }                                                                                       \
    } while (0)

/* A copy whose destination runs along the last dimension while the
 * source runs along another one, d0 (a permute made contiguous: NCHW to
 * NHWC and back): element by element, every read of one of the two lands on
 * a new cache line (and often a new page). Tiles of TT x TT keep both sides'
 * lines in cache. */
#define TT 16
#define TRANSPOSE_T(T)                                                                          \
    do {                                                                                        \
        const T *S0 = (const T *)src;                                                           \
        T *D0 = (T *)dst;                                                                       \
        _Pragma("omp parallel for if (L->numel > MD_CPU_PAR_MIN && tasks > 1) schedule(static)") \
        for (int64_t t = 0; t < tasks; t++) {                                                   \
            int64_t o = t / ti, i0 = (t % ti) * TT, od = 0, os = 0, rem = o;                    \
            for (int d = last - 1; d >= 0; d--) {                                               \
                if (d == d0) continue;                                                          \
                int64_t k = rem % L->shape[d];                                                  \
                rem /= L->shape[d];                                                             \
                od += k * L->st[0][d];                                                          \
                os += k * L->st[1][d];                                                          \
            }                                                                                   \
            int64_t i1 = i0 + TT < ni ? i0 + TT : ni;                                           \
            for (int64_t j0 = 0; j0 < nj; j0 += TT) {                                           \
                int64_t j1 = j0 + TT < nj ? j0 + TT : nj;                                       \
                for (int64_t i = i0; i < i1; i++) {                                             \
                    T *D = D0 + od + i * di;                                                    \
                    const T *S = S0 + os + i;                                                   \
                    for (int64_t j = j0; j < j1; j++) D[j] = S[j * sj];                         \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    } while (0)

static bool copy_transposed(const md__loop *L, size_t elem, const void *src, void *dst) {
    int last = L->ndim - 1, d0 = -1;
    if (last < 1 || L->st[0][last] != 1 || L->st[1][last] == 1 || (elem != 4 && elem != 8)) return false;
    for (int d = 0; d < last; d++)
        if (L->st[1][d] == 1 && L->shape[d] >= TT) d0 = d;
    if (d0 < 0 || L->shape[last] < TT) return false;
    int64_t ni = L->shape[d0], nj = L->shape[last], di = L->st[0][d0], sj = L->st[1][last];
    int64_t ti = (ni + TT - 1) / TT, tasks = L->numel / (ni * nj) * ti;
    if (elem == 4) TRANSPOSE_T(uint32_t);
    else TRANSPOSE_T(uint64_t);
    return true;
}

void md__cpu_copy(const md__loop *L, size_t elem, const void *src, void *dst) {
    LOOP_SETUP(L)
    if (copy_transposed(L, elem, src, dst)) return;
    switch (elem) {
    case 1: COPY_T(uint8_t); break;
    case 2: COPY_T(uint16_t); break;
    case 4: COPY_T(uint32_t); break;
    case 8: COPY_T(uint64_t); break;
    default: break;
    }
}

#define CAST_LOOP(TS, TD, EXPR)                                              \
    do {                                                                     \
        const TS *s = (const TS *)src;                                       \
        TD *d = (TD *)dst;                                                   \
        _Pragma("omp parallel for if (n > MD_CPU_PAR_MIN) schedule(static)") \
        for (int64_t i = 0; i < n; i++) { TS v = s[i]; d[i] = (EXPR); }      \
    } while (0)

#define CAST_FROM(TS)                                                        \
    switch (to) {                                                            \
    case MD_F32: CAST_LOOP(TS, float, (float)v); return 0;                   \
    case MD_I64: CAST_LOOP(TS, int64_t, (int64_t)v); return 0;               \
    case MD_I32: CAST_LOOP(TS, int32_t, (int32_t)v); return 0;               \
    case MD_U8: CAST_LOOP(TS, uint8_t, (uint8_t)(int64_t)v); return 0;       \
    default: return -1;                                                      \
    }

int md__cpu_cast(md_dtype from, md_dtype to, int64_t n, const void *src, void *dst) {
    switch (from) {
    case MD_F32: CAST_FROM(float)
    case MD_I64: CAST_FROM(int64_t)
    case MD_I32: CAST_FROM(int32_t)
    case MD_U8: CAST_FROM(uint8_t)
    default: return -1;
    }
}

void md__cpu_fill(void *dst, int64_t n, size_t elem, uint64_t bits) {
    if (elem == 4) {
        uint32_t v = (uint32_t)bits, *p = dst;
        for (int64_t i = 0; i < n; i++) p[i] = v;
    } else if (elem == 8) {
        uint64_t *p = dst;
        for (int64_t i = 0; i < n; i++) p[i] = bits;
    } else {
        memset(dst, (int)(bits & 0xff), (size_t)n);
    }
}

void md__cpu_add_inplace_f32(float *dst, const float *src, int64_t n) {
    #pragma omp parallel for if (n > 65536) schedule(static)
    for (int64_t k = 0; k < n; k++) dst[k] += src[k];
}
