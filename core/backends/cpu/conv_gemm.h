/* Packed GEMM for the convolution kernels (GotoBLAS/BLIS style): operands
 * packed into register-block panels, K blocked, and an AVX-512 or AVX2+FMA
 * micro-kernel chosen at run time. The convolutions pack their operands
 * straight into these layouts (weights once per call, im2col tiles as
 * panels), so nothing is copied twice and nothing re-packed per tile.
 *
 * Layouts, for a kernel with register block mr x nr:
 *   A [M, K] as ceil(M/mr) panels of [K][mr] floats (rows past M zero);
 *   B [K, N] as ceil(N/nr) panels of [K][nr] floats (columns past N zero).
 * Panel i of A starts at pa + i*mr*K, panel j of B at pb + j*md__pb_stride(K):
 * B panels are nr*K floats plus one cache line apart, so that a row written
 * across all panels (im2col) does not map every store to one L1 set when
 * nr*K*4 is a multiple of 4 KiB. */
#ifndef MMDET_CPU_CONV_GEMM_H
#define MMDET_CPU_CONV_GEMM_H

#include <stddef.h>
#include <stdint.h>

enum { MD_CONVK_BLAS = 0, MD_CONVK_AVX2, MD_CONVK_AVX512, MD_CONVK_COUNT };

/* What the store phase does to a finished tile, per row i of C (an output
 * channel of a convolution): c = c*scale[i] + shift[i] (scale or shift may
 * be NULL: 1 or 0), then max(c, 0) when relu. Pointers are indexed by C's
 * row, so the driver offsets them per tile. Applying it in the store keeps
 * eval-mode conv + BN + ReLU to one pass over the output. */
typedef struct md__epilogue {
    const float *scale, *shift;
    int relu;
} md__epilogue;

/* C[0:mr', 0:nr'] (=, or += when acc) A_panel[kc][mr] . B_panel[kc][nr],
 * rows of C ldc floats apart; mr' <= mr rows and nr' <= nr columns stored;
 * then ep (if not NULL) on the stored values. */
typedef void (*md__ukernel_fn)(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int rows,
                               int cols, int acc, const md__epilogue *ep);

typedef struct md__gemm_kernel {
    int id, mr, nr;
    md__ukernel_fn fn;
} md__gemm_kernel;

/* The kernel convolutions use, or NULL for the OpenBLAS im2col path.
 * Default: AVX-512 where the CPU has it, else OpenBLAS; $MMDET_CPU_CONV
 * (blas, avx2, avx512), read once, overrides it when the CPU can run it.
 * While the thread's md__cpu_bf16 is set: the bf16 kernel (gemm_bf16.h). */
const md__gemm_kernel *md__convk(void);
/* Forces variant `id` (MD_CONVK_*), or the default for -1. Returns 0, or -1
 * when this CPU cannot run it (the choice is left unchanged). Not
 * thread-safe: for tests and benchmarks, between convolutions. */
int md__convk_set(int id);
/* Whether this CPU can run variant `id`. */
int md__convk_supported(int id);
const char *md__convk_name(int id);

/* Floats of a packed A (M rows) or B (N columns) of depth K. */
static inline size_t md__pack_a_floats(const md__gemm_kernel *k, int64_t M, int64_t K) {
    return (size_t)((M + k->mr - 1) / k->mr * k->mr * K);
}
static inline int64_t md__pb_stride(const md__gemm_kernel *k, int64_t K) { return k->nr * K + 16; }
static inline size_t md__pack_b_floats(const md__gemm_kernel *k, int64_t N, int64_t K) {
    return (size_t)((N + k->nr - 1) / k->nr * md__pb_stride(k, K));
}

/* Packs A[i][k] = src[i*rs + k*cs] (M x K); panels [p0, p1) only. */
void md__pack_a(const md__gemm_kernel *k, const float *src, int64_t rs, int64_t cs, int64_t M, int64_t K,
                int64_t p0, int64_t p1, float *pa);
/* Packs B[k][j] = src[k*rs + j*cs] (K x N). */
void md__pack_b(const md__gemm_kernel *k, const float *src, int64_t rs, int64_t cs, int64_t K, int64_t N,
                float *pb);

/* One row of B panels written from position `off` on (position j lands at
 * row[(j / nr)*pstride + j % nr]; pstride = md__pb_stride(K) for panels, nr for
 * a plain row): n values, src[t*sw] for t in [lo, hi) and zeros elsewhere;
 * src is only read at those t. im2col's runs go through here. */
void md__pack_row_run(const md__gemm_kernel *k, float *row, int64_t pstride, int64_t off, const float *src,
                      int64_t sw, int64_t n, int64_t lo, int64_t hi);

/* The transpose of a run, col2im's: dst[t*sw] += src[t] for t < n (k may
 * be NULL: plain loops). */
void md__add_run(const md__gemm_kernel *k, float *dst, int64_t sw, const float *src, int64_t n);

/* dst[j] = src[j / sw] where sw divides j, else 0, for j < span (a
 * strided 1x1 convolution's input gradient: every position written once). */
void md__put_run(const md__gemm_kernel *k, float *dst, int64_t sw, const float *src, int64_t span);

struct md__conv_shape;
/* The weight gradient's col as A panels of depth kp straight from the
 * input x (at the group's first channel) of a convolution with 7-wide
 * kernel rows and column stride 2 (the 7x7/2 stem): A[r - r0][t] =
 * im2col(x)[r][j0 + t] for rows r in [r0, r1), r0 a multiple of 14. For
 * the AVX-512 kernel only: md__pack_a_k7s2_applies says when. */
int md__pack_a_k7s2_applies(const md__gemm_kernel *k, const struct md__conv_shape *s);
void md__pack_a_k7s2(const md__gemm_kernel *k, const struct md__conv_shape *s, const float *x, int64_t r0,
                     int64_t r1, int64_t j0, int64_t kp, float *pa);

/* K block of the driver (and of the forward convolution's B blocks). */
#define MD_GEMM_KC 256

/* C[M, N] (=, or += when acc) A . B over depth K from packed operands. A's
 * panels are a_depth deep (a_depth >= K; pa may point k0*mr into them to
 * take depths [k0, k0 + K)), its panel 0 is C's row 0; B's panels are K
 * deep, starting at pb. */
void md__gemm_packed(const md__gemm_kernel *k, int64_t M, int64_t N, int64_t K, const float *pa, int64_t a_depth,
                     const float *pb, float *C, int64_t ldc, int acc);
/* The same, with ep (its pointers indexed by C's rows 0..M-1) applied as
 * the last K block is stored; NULL for none. */
void md__gemm_packed_ep(const md__gemm_kernel *k, int64_t M, int64_t N, int64_t K, const float *pa,
                        int64_t a_depth, const float *pb, float *C, int64_t ldc, int acc, const md__epilogue *ep);
/* ep on rows [0, M) x columns [0, N) of C (the OpenBLAS path's tiles). */
void md__epilogue_apply(const md__epilogue *ep, float *C, int64_t ldc, int64_t M, int64_t N);

#endif
