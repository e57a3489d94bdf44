/* 2-D convolution on cuDNN (legacy convolution API): NCHW float tensors,
 * OIHW filters, cross-correlation, groups by cudnnSetConvolutionGroupCount.
 *
 * Math: exact float32 (CUDNN_FMA_MATH) unless MMDET_CUDA_TF32=1 allows
 * tensor-core TF32 (CUDNN_TENSOR_OP_MATH). Algorithms: the first candidate of
 * cudnnGet*Algorithm_v7 (heuristics, no run) that succeeds, matches the math
 * mode and whose workspace fits WS_CAP and can be allocated; with
 * MMDET_CUDA_BENCHMARK=1 the fastest of cudnnFind*AlgorithmEx (each
 * algorithm timed on the call's own buffers) instead. With
 * MMDET_CUDA_DETERMINISTIC=1 only algorithms cuDNN reports deterministic are
 * taken. The choice is cached per (direction, shape).
 *
 * Descriptors are cached with it: one entry per convolution shape (every
 * field of md__conv_shape) holds the tensor, filter and convolution
 * descriptors and the three directions' plans, so a repeated shape costs a
 * hash lookup instead of creating, setting and destroying five descriptors
 * and asking the heuristics. The cache is process-wide like the backend's
 * other state, at most CACHE_MAX shapes; when full it is emptied and
 * refilled. Kernels are meant to be issued from one thread (as for the
 * scratch buffer).
 *
 * Mixed precision (the thread's compute dtype fp16 or bf16, amp.cu): the f32
 * operands are rounded into 16-bit copies (backends/precision.h, as the
 * CPU rounds) and cuDNN convolves them with f32 accumulation: its
 * PSEUDO_HALF_CONFIG / PSEUDO_BFLOAT16_CONFIG (x, w, y of the 16-bit type,
 * the convolution's compute type CUDNN_DATA_FLOAT, Tensor Core math
 * allowed), the only mixed configurations its legacy API takes: an f32
 * output of 16-bit inputs is not one of them. The 16-bit result is widened
 * back into the f32 output (the forward adds the bias there, in f32).
 * Descriptors and plans are cached per (shape, dtype). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mutex>
#include "backends/cuda/cuda_libs.h"

#define WS_CAP ((size_t)2 << 30)   /* largest cuDNN workspace we allocate */

enum { DIR_FWD = 0, DIR_BWD_DATA, DIR_BWD_FILTER, DIR_COUNT };
static const char *const op_name[DIR_COUNT] = { "conv2d_forward", "conv2d_backward_input",
                                                "conv2d_backward_weight" };

typedef struct plan {
    int algo;
    cudnnMathType_t math;
    size_t ws;
} plan;

static std::mutex g_cache_lock;

static bool env_on(const char *name) {
    const char *v = getenv(name);
    return v && strcmp(v, "1") == 0;
}

static bool benchmark_mode(void) {
    static const bool on = env_on("MMDET_CUDA_BENCHMARK");
    return on;
}

static bool deterministic_mode(void) {
    static const bool on = env_on("MMDET_CUDA_DETERMINISTIC");
    return on;
}

static bool same_shape(const md__conv_shape *a, const md__conv_shape *b) {
    return a->N == b->N && a->C == b->C && a->H == b->H && a->W == b->W && a->O == b->O && a->KH == b->KH &&
           a->KW == b->KW && a->OH == b->OH && a->OW == b->OW && a->sh == b->sh && a->sw == b->sw &&
           a->ph == b->ph && a->pw == b->pw && a->dh == b->dh && a->dw == b->dw && a->G == b->G;
}

static void shape_str(const md__conv_shape *s, char *buf, size_t n) {
    snprintf(buf, n, "x [%lld, %lld, %lld, %lld], w [%lld, %lld, %lld, %lld], y [%lld, %lld, %lld, %lld], "
             "stride %lldx%lld, pad %lldx%lld, dilation %lldx%lld, groups %lld",
             (long long)s->N, (long long)s->C, (long long)s->H, (long long)s->W, (long long)s->O,
             (long long)(s->G > 0 ? s->C / s->G : 0), (long long)s->KH, (long long)s->KW, (long long)s->N,
             (long long)s->O, (long long)s->OH, (long long)s->OW, (long long)s->sh, (long long)s->sw,
             (long long)s->ph, (long long)s->pw, (long long)s->dh, (long long)s->dw, (long long)s->G);
}

/* `call` is the call's source text: its function name goes into the message. */
static int dnn_fail(const char *op, const char *call, cudnnStatus_t st, const md__conv_shape *s) {
    char sh[400], detail[300] = "", fn[80];
    size_t k = 0;
    while (call[k] && call[k] != '(' && k + 1 < sizeof fn) fn[k] = call[k], k++;
    fn[k] = 0;
    call = fn;
    shape_str(s, sh, sizeof sh);
    cudnnGetLastErrorString(detail, sizeof detail);
    return md__cuda_fail(op, "%s failed for %s: %s%s%s", call, sh, cudnnGetErrorString(st), detail[0] ? "; " : "",
                         detail);
}

#define DNN(call)                                                          \
    do {                                                                   \
        cudnnStatus_t st_ = (call);                                        \
        if (st_ != CUDNN_STATUS_SUCCESS) return dnn_fail(op, #call, st_, s); \
    } while (0)

/* The descriptors of one convolution shape. */
struct descs {
    cudnnTensorDescriptor_t x = NULL, y = NULL, b = NULL;
    cudnnFilterDescriptor_t w = NULL;
    cudnnConvolutionDescriptor_t conv = NULL;
    void destroy() {
        if (x) cudnnDestroyTensorDescriptor(x);
        if (y) cudnnDestroyTensorDescriptor(y);
        if (b) cudnnDestroyTensorDescriptor(b);
        if (w) cudnnDestroyFilterDescriptor(w);
        if (conv) cudnnDestroyConvolutionDescriptor(conv);
        x = y = b = NULL;
        w = NULL;
        conv = NULL;
    }
};

/* Descriptors destroyed with their scope (the bias gradient of a shape
 * without a cache entry). */
struct scoped_descs : descs {
    scoped_descs() = default;
    scoped_descs(const scoped_descs &) = delete;
    scoped_descs &operator=(const scoped_descs &) = delete;
    ~scoped_descs() { destroy(); }
};

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* The data type of x, w and y for compute dtype dt (the convolution itself
 * always computes in float). */
static cudnnDataType_t data_type(int dt) {
    return dt == MD__DT_F16 ? CUDNN_DATA_HALF : dt == MD__DT_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

/* The math type a new descriptor starts with: Tensor Core math for 16-bit
 * operands, for f32 only with TF32 allowed. */
static cudnnMathType_t first_math(int dt) {
    return dt != MD__DT_F32 || md__cuda_tf32() ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
}

static int make_descs(const char *op, const md__conv_shape *s, int dt, descs *d) {
    const int64_t dims[] = { s->N, s->C, s->H, s->W, s->O, s->KH, s->KW, s->OH, s->OW,
                             s->sh, s->sw, s->ph, s->pw, s->dh, s->dw, s->G };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (!fits_int(dims[i])) {
            char sh[400];
            shape_str(s, sh, sizeof sh);
            return md__cuda_fail(op, "a size or parameter is outside cuDNN's int range: %s", sh);
        }
    if (s->G <= 0 || s->C % s->G || s->O % s->G) {
        char sh[400];
        shape_str(s, sh, sizeof sh);
        return md__cuda_fail(op, "channels not divisible by groups: %s", sh);
    }
    DNN(cudnnCreateTensorDescriptor(&d->x));
    DNN(cudnnCreateTensorDescriptor(&d->y));
    DNN(cudnnCreateFilterDescriptor(&d->w));
    DNN(cudnnCreateConvolutionDescriptor(&d->conv));
    cudnnDataType_t ty = data_type(dt);
    DNN(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, ty, (int)s->N, (int)s->C, (int)s->H, (int)s->W));
    DNN(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, ty, (int)s->N, (int)s->O, (int)s->OH, (int)s->OW));
    DNN(cudnnSetFilter4dDescriptor(d->w, ty, CUDNN_TENSOR_NCHW, (int)s->O, (int)(s->C / s->G), (int)s->KH,
                                   (int)s->KW));
    DNN(cudnnSetConvolution2dDescriptor(d->conv, (int)s->ph, (int)s->pw, (int)s->sh, (int)s->sw, (int)s->dh,
                                        (int)s->dw, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    DNN(cudnnSetConvolutionGroupCount(d->conv, (int)s->G));
    DNN(cudnnSetConvolutionMathType(d->conv, first_math(dt)));
    int n = 0, c = 0, h = 0, w = 0;
    DNN(cudnnGetConvolution2dForwardOutputDim(d->conv, d->x, d->w, &n, &c, &h, &w));
    if (n != s->N || c != s->O || h != s->OH || w != s->OW) {
        char sh[400];
        shape_str(s, sh, sizeof sh);
        return md__cuda_fail(op, "cuDNN computes output [%d, %d, %d, %d] for %s", n, c, h, w, sh);
    }
    DNN(cudnnCreateTensorDescriptor(&d->b));
    DNN(cudnnSetTensor4dDescriptor(d->b, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, (int)s->O, 1, 1));
    return 0;
}

/* ------------------------------------------------------ shape cache -- */

#define CACHE_SLOTS 1024   /* open addressing, a power of two */
#define CACHE_MAX 512      /* shapes kept (the table at most half full) */

typedef struct conv_entry {
    bool used;
    md__conv_shape s;
    int dt;                        /* MD__DT_F32, MD__DT_F16, MD__DT_BF16 */
    descs d;
    bool math_known;               /* d.conv's math type is `math` */
    cudnnMathType_t math;
    bool have[DIR_COUNT];          /* a plan was chosen for the direction */
    plan p[DIR_COUNT];
} conv_entry;

/* Not destroyed at exit: cuDNN's libraries may be finalised before this
 * one, and the descriptors are host memory the process gives back anyway. */
static struct {
    conv_entry slot[CACHE_SLOTS];
    int count;
} g_cache;

static void cache_clear_locked(void) {
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (g_cache.slot[i].used) {
            g_cache.slot[i].d.destroy();
            g_cache.slot[i].used = false;
        }
    g_cache.count = 0;
}

/* Every cached shape dropped (device.cu's teardown). */
extern "C" void md__cuda_conv_cache_clear(void) {
    std::lock_guard<std::mutex> lock(g_cache_lock);
    cache_clear_locked();
}

static uint64_t shape_hash(const md__conv_shape *s, int dt) {
    const int64_t v[] = { s->N, s->C, s->H, s->W, s->O, s->KH, s->KW, s->OH, s->OW,
                          s->sh, s->sw, s->ph, s->pw, s->dh, s->dw, s->G };
    uint64_t h = 1469598103934665603ull ^ (uint64_t)dt;   /* FNV-1a over the fields */
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        h ^= (uint64_t)v[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

/* The cache entry of shape s and compute dtype dt, made (descriptors set)
 * on first use; NULL with the error set when cuDNN refuses the shape. */
static conv_entry *entry_for(const char *op, const md__conv_shape *s, int dt) {
    std::lock_guard<std::mutex> lock(g_cache_lock);
    uint64_t h = shape_hash(s, dt);
    for (;;) {
        for (unsigned k = 0; k < CACHE_SLOTS; k++) {
            conv_entry *e = &g_cache.slot[(h + k) & (CACHE_SLOTS - 1)];
            if (e->used && e->dt == dt && same_shape(&e->s, s)) return e;
            if (e->used) continue;
            if (g_cache.count >= CACHE_MAX) break;   /* full: empty it and start over */
            descs d;
            if (make_descs(op, s, dt, &d) != 0) {
                d.destroy();
                return NULL;
            }
            *e = conv_entry{};
            e->used = true;
            e->s = *s;
            e->dt = dt;
            e->d = d;
            e->math_known = true;
            e->math = first_math(dt);
            g_cache.count++;
            return e;
        }
        cache_clear_locked();
    }
}

/* Workspace bytes of `algo` under the descriptor's current math type. */
static cudnnStatus_t ws_size(int dir, cudnnHandle_t h, const descs *d, int algo, size_t *bytes) {
    switch (dir) {
    case DIR_FWD:
        return cudnnGetConvolutionForwardWorkspaceSize(h, d->x, d->w, d->conv, d->y,
                                                       (cudnnConvolutionFwdAlgo_t)algo, bytes);
    case DIR_BWD_DATA:
        return cudnnGetConvolutionBackwardDataWorkspaceSize(h, d->w, d->y, d->conv, d->x,
                                                            (cudnnConvolutionBwdDataAlgo_t)algo, bytes);
    default:
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d->x, d->y, d->conv, d->w,
                                                              (cudnnConvolutionBwdFilterAlgo_t)algo, bytes);
    }
}

/* One candidate of a heuristic or timing list, whatever the direction. */
typedef struct cand {
    int algo;
    cudnnStatus_t status;
    cudnnMathType_t math;
    cudnnDeterminism_t det;
    size_t memory;
} cand;

#define MAX_ALGOS 16

template <typename P> static int to_cands(const P *perf, int n, cand *out) {
    for (int i = 0; i < n; i++)
        out[i] = cand{ (int)perf[i].algo, perf[i].status, perf[i].mathType, perf[i].determinism, perf[i].memory };
    return n;
}

static int algo_count(int dir) {
    if (dir == DIR_FWD) return (int)CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    if (dir == DIR_BWD_DATA) return (int)CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    return (int)CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
}

/* Tries candidate algorithm `algo` with math type `math`: the workspace must
 * be known, within the cap and allocatable. f32 operands take exact FMA
 * math unless TF32 is allowed; 16-bit operands any math type (Tensor Core
 * math on them is exact products, f32 sums). */
static bool try_plan(int dir, int dt, cudnnHandle_t h, descs *d, int algo, cudnnMathType_t math, plan *p) {
    if (dt == MD__DT_F32 && !md__cuda_tf32() && math != CUDNN_FMA_MATH) return false;   /* would allow TF32 */
    if (cudnnSetConvolutionMathType(d->conv, math) != CUDNN_STATUS_SUCCESS) return false;
    size_t ws = 0;
    if (ws_size(dir, h, d, algo, &ws) != CUDNN_STATUS_SUCCESS || ws > WS_CAP) return false;
    if (ws > 0 && !md__cuda_scratch(ws)) return false;
    p->algo = algo;
    p->math = math;
    p->ws = ws;
    return true;
}

/* Picks the algorithm for this call (cache, heuristics or timing). a, b are
 * the call's inputs and out its output (used only by the timing mode). */
static int choose(int dir, int dt, const md__conv_shape *s, cudnnHandle_t h, descs *d, const void *a,
                  const void *b, void *out, plan *p) {
    const char *op = op_name[dir];
    cand c[MAX_ALGOS];
    int n = 0, want = algo_count(dir);
    bool det = deterministic_mode();
    if (benchmark_mode()) {
        /* the workspace the hungriest algorithm wants, within the cap */
        size_t ws = 0;
        for (int algo = 0; algo < want; algo++) {
            size_t w = 0;
            if (ws_size(dir, h, d, algo, &w) == CUDNN_STATUS_SUCCESS && w <= WS_CAP && w > ws) ws = w;
        }
        void *scr = ws ? md__cuda_scratch(ws) : NULL;
        if (ws && !scr) ws = 0;   /* out of memory: time the algorithms that need none */
        if (dir == DIR_FWD) {
            cudnnConvolutionFwdAlgoPerf_t perf[MAX_ALGOS];
            DNN(cudnnFindConvolutionForwardAlgorithmEx(h, d->x, a, d->w, b, d->conv, d->y, out, want, &n, perf,
                                                       scr, ws));
            to_cands(perf, n, c);
        } else if (dir == DIR_BWD_DATA) {
            cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_ALGOS];
            DNN(cudnnFindConvolutionBackwardDataAlgorithmEx(h, d->w, a, d->y, b, d->conv, d->x, out, want, &n,
                                                            perf, scr, ws));
            to_cands(perf, n, c);
        } else {
            cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_ALGOS];
            DNN(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, d->x, a, d->y, b, d->conv, d->w, out, want, &n,
                                                              perf, scr, ws));
            to_cands(perf, n, c);
        }
    } else {
        if (dir == DIR_FWD) {
            cudnnConvolutionFwdAlgoPerf_t perf[MAX_ALGOS];
            DNN(cudnnGetConvolutionForwardAlgorithm_v7(h, d->x, d->w, d->conv, d->y, want, &n, perf));
            to_cands(perf, n, c);
        } else if (dir == DIR_BWD_DATA) {
            cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_ALGOS];
            DNN(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d->w, d->y, d->conv, d->x, want, &n, perf));
            to_cands(perf, n, c);
        } else {
            cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_ALGOS];
            DNN(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d->x, d->y, d->conv, d->w, want, &n, perf));
            to_cands(perf, n, c);
        }
    }
    if (n > want) n = want;
    bool found = false;
    for (int i = 0; i < n && !found; i++)
        if (c[i].status == CUDNN_STATUS_SUCCESS && (!det || c[i].det == CUDNN_DETERMINISTIC))
            found = try_plan(dir, dt, h, d, c[i].algo, c[i].math, p);
    /* No listed candidate fits: any algorithm cuDNN accepts for this shape
     * under the exact math type (16-bit operands: Tensor Core math, then
     * the default), ignoring determinism before failing. */
    for (int pass = 0; pass < 2 && !found; pass++)
        for (int algo = 0; algo < want && !found; algo++) {
            bool listed_det = false;
            for (int i = 0; i < n; i++)
                if (c[i].algo == algo && c[i].det == CUDNN_DETERMINISTIC) listed_det = true;
            if (pass == 0 && det && !listed_det) continue;
            if (dt == MD__DT_F32) found = try_plan(dir, dt, h, d, algo, CUDNN_FMA_MATH, p);
            else
                found = try_plan(dir, dt, h, d, algo, CUDNN_TENSOR_OP_MATH, p) ||
                        try_plan(dir, dt, h, d, algo, CUDNN_DEFAULT_MATH, p);
        }
    if (!found) {
        char sh[400];
        shape_str(s, sh, sizeof sh);
        return md__cuda_fail(op, "no cuDNN algorithm supports %s in %s within a %zu-byte workspace (%d "
                             "candidates)", sh, md__cuda_dtype_name(dt), (size_t)WS_CAP, n);
    }
    return 0;
}

/* The cached descriptors of the shape in compute dtype dt and the plan for
 * direction dir (chosen on first use), the math type set, and the
 * workspace. */
static int prepare(int dir, int dt, const md__conv_shape *s, const void *a, const void *b, void *out,
                   conv_entry **ep, void **ws) {
    const char *op = op_name[dir];
    cudnnHandle_t h = md__cuda_cudnn();
    if (!h) return md__cuda_fail(op, "backend not initialised");
    conv_entry *e = entry_for(op, s, dt);
    if (!e) return -1;
    if (!e->have[dir]) {
        int rc = choose(dir, dt, s, h, &e->d, a, b, out, &e->p[dir]);
        e->math_known = false;   /* choose() tried other math types */
        if (rc) return -1;
        e->have[dir] = true;
    }
    const plan *p = &e->p[dir];
    if (!e->math_known || e->math != p->math) {
        DNN(cudnnSetConvolutionMathType(e->d.conv, p->math));
        e->math_known = true;
        e->math = p->math;
    }
    *ws = NULL;
    if (p->ws > 0 && !(*ws = md__cuda_scratch(p->ws))) {
        char sh[400];
        shape_str(s, sh, sizeof sh);
        return md__cuda_fail(op, "no memory for a %zu-byte workspace (%s)", p->ws, sh);
    }
    *ep = e;
    return 0;
}

static int64_t numel_x(const md__conv_shape *s) { return s->N * s->C * s->H * s->W; }
static int64_t numel_y(const md__conv_shape *s) { return s->N * s->O * s->OH * s->OW; }
static int64_t numel_w(const md__conv_shape *s) { return s->G > 0 ? s->O * (s->C / s->G) * s->KH * s->KW : 0; }

/* y[n, o, :] = bias[o] or 0: the output of an empty reduction. */
__global__ static void fill_bias(float *y, int64_t total, int64_t O, int64_t HW, const float *bias) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = bias ? bias[i / HW % O] : 0.0f;
}

static int zero(const char *op, float *p, int64_t n) {
    char what[160];
    snprintf(what, sizeof what, "%s: cudaMemsetAsync of %lld floats", op, (long long)n);
    return md__cuda_check(cudaMemsetAsync(p, 0, sizeof(float) * (size_t)n, md__cuda_stream()), what);
}

static int launch_check(const char *op, const char *kernel, const md__conv_shape *s) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return 0;
    char sh[400];
    shape_str(s, sh, sizeof sh);
    return md__cuda_fail(op, "%s launch failed for %s: %s", kernel, sh, cudaGetErrorString(e));
}

static const float k_one = 1.0f, k_zero = 0.0f;

/* Direction dir in the thread's 16-bit compute dtype: the inputs a, b
 * (forward x, w; backward data w, gy; backward filter x, gy) rounded into
 * 16-bit copies, cuDNN on them with f32 accumulation into a 16-bit result,
 * widened into the f32 `out` (plus the bias, forward only). */
static int conv_lowp(int dir, const md__conv_shape *s, const float *a, const float *b, const float *bias,
                     float *out) {
    const char *op = op_name[dir];
    int dt = md__cuda_compute_dtype();
    int64_t nx = numel_x(s), nw = numel_w(s), ny = numel_y(s);
    int64_t n[3] = { dir == DIR_BWD_DATA ? nw : nx, dir == DIR_FWD ? nw : ny,
                     dir == DIR_FWD ? ny : dir == DIR_BWD_DATA ? nx : nw };
    void *hb[3], *block;
    if (md__cuda_lowp_bufs(op, 3, n, hb, &block) != 0) return -1;
    int rc = -1;
    conv_entry *e;
    void *ws;
    if (md__cuda_to_lowp(dt, a, n[0], hb[0]) == 0 && md__cuda_to_lowp(dt, b, n[1], hb[1]) == 0 &&
        prepare(dir, dt, s, hb[0], hb[1], hb[2], &e, &ws) == 0) {
        cudnnHandle_t h = md__cuda_cudnn();
        const descs &d = e->d;
        const plan &p = e->p[dir];
        cudnnStatus_t st;
        const char *call;
        if (dir == DIR_FWD) {
            call = "cudnnConvolutionForward";
            st = cudnnConvolutionForward(h, &k_one, d.x, hb[0], d.w, hb[1], d.conv, (cudnnConvolutionFwdAlgo_t)p.algo,
                                         ws, p.ws, &k_zero, d.y, hb[2]);
        } else if (dir == DIR_BWD_DATA) {
            call = "cudnnConvolutionBackwardData";
            st = cudnnConvolutionBackwardData(h, &k_one, d.w, hb[0], d.y, hb[1], d.conv,
                                              (cudnnConvolutionBwdDataAlgo_t)p.algo, ws, p.ws, &k_zero, d.x, hb[2]);
        } else {
            call = "cudnnConvolutionBackwardFilter";
            st = cudnnConvolutionBackwardFilter(h, &k_one, d.x, hb[0], d.y, hb[1], d.conv,
                                                (cudnnConvolutionBwdFilterAlgo_t)p.algo, ws, p.ws, &k_zero, d.w,
                                                hb[2]);
        }
        if (st != CUDNN_STATUS_SUCCESS) dnn_fail(op, call, st, s);
        else rc = md__cuda_from_lowp(dt, hb[2], n[2], bias, s->O, s->OH * s->OW, out);
    }
    md__cuda_free(block);   /* stream-ordered: after the kernels queued on it */
    return rc;
}

extern "C" int md__cuda_conv2d_forward(const md__conv_shape *s, const float *x, const float *w, const float *bias,
                                       float *y) {
    const char *op = op_name[DIR_FWD];
    if (numel_y(s) <= 0) return 0;
    if (numel_x(s) <= 0 || numel_w(s) <= 0) {   /* nothing to convolve: y = bias */
        int64_t total = numel_y(s), blocks = (total + 255) / 256;
        fill_bias<<<(unsigned)(blocks < 65536 ? blocks : 65536), 256, 0, md__cuda_stream()>>>(
            y, total, s->O, s->OH * s->OW, bias);
        return launch_check(op, "fill_bias", s);
    }
    conv_entry *e;
    void *ws;
    if (md__cuda_compute_dtype() != MD__DT_F32) return conv_lowp(DIR_FWD, s, x, w, bias, y);
    if (prepare(DIR_FWD, MD__DT_F32, s, x, w, y, &e, &ws)) return -1;
    cudnnHandle_t h = md__cuda_cudnn();
    const descs &d = e->d;
    const plan &p = e->p[DIR_FWD];
    DNN(cudnnConvolutionForward(h, &k_one, d.x, x, d.w, w, d.conv, (cudnnConvolutionFwdAlgo_t)p.algo, ws, p.ws,
                                &k_zero, d.y, y));
    if (bias) DNN(cudnnAddTensor(h, &k_one, d.b, bias, &k_one, d.y, y));
    return 0;
}

extern "C" int md__cuda_conv2d_backward_input(const md__conv_shape *s, const float *gy, const float *w,
                                              float *gx) {
    const char *op = op_name[DIR_BWD_DATA];
    if (numel_x(s) <= 0) return 0;
    if (numel_y(s) <= 0 || numel_w(s) <= 0) return zero(op, gx, numel_x(s));
    conv_entry *e;
    void *ws;
    if (md__cuda_compute_dtype() != MD__DT_F32) return conv_lowp(DIR_BWD_DATA, s, w, gy, NULL, gx);
    if (prepare(DIR_BWD_DATA, MD__DT_F32, s, w, gy, gx, &e, &ws)) return -1;
    const descs &d = e->d;
    const plan &p = e->p[DIR_BWD_DATA];
    DNN(cudnnConvolutionBackwardData(md__cuda_cudnn(), &k_one, d.w, w, d.y, gy, d.conv,
                                     (cudnnConvolutionBwdDataAlgo_t)p.algo, ws, p.ws, &k_zero, d.x, gx));
    return 0;
}

extern "C" int md__cuda_conv2d_backward_weight(const md__conv_shape *s, const float *x, const float *gy,
                                               float *gw) {
    const char *op = op_name[DIR_BWD_FILTER];
    if (numel_w(s) <= 0) return 0;
    if (numel_x(s) <= 0 || numel_y(s) <= 0) return zero(op, gw, numel_w(s));
    conv_entry *e;
    void *ws;
    if (md__cuda_compute_dtype() != MD__DT_F32) return conv_lowp(DIR_BWD_FILTER, s, x, gy, NULL, gw);
    if (prepare(DIR_BWD_FILTER, MD__DT_F32, s, x, gy, gw, &e, &ws)) return -1;
    const descs &d = e->d;
    const plan &p = e->p[DIR_BWD_FILTER];
    DNN(cudnnConvolutionBackwardFilter(md__cuda_cudnn(), &k_one, d.x, x, d.y, gy, d.conv,
                                       (cudnnConvolutionBwdFilterAlgo_t)p.algo, ws, p.ws, &k_zero, d.w, gw));
    return 0;
}

extern "C" int md__cuda_conv2d_backward_bias(const md__conv_shape *s, const float *gy, float *gb) {
    const char *op = "conv2d_backward_bias";
    if (s->O <= 0) return 0;
    if (numel_y(s) <= 0) return zero(op, gb, s->O);
    cudnnHandle_t h = md__cuda_cudnn();
    if (!h) return md__cuda_fail(op, "backend not initialised");
    if (!fits_int(s->N) || !fits_int(s->O) || !fits_int(s->OH) || !fits_int(s->OW)) {
        char sh[400];
        shape_str(s, sh, sizeof sh);
        return md__cuda_fail(op, "a size is outside cuDNN's int range: %s", sh);
    }
    if (numel_x(s) > 0 && numel_w(s) > 0) {   /* the forward's cached descriptors */
        conv_entry *e = entry_for(op, s, MD__DT_F32);
        if (!e) return -1;
        DNN(cudnnConvolutionBackwardBias(h, &k_one, e->d.y, gy, &k_zero, e->d.b, gb));
        return 0;
    }
    scoped_descs d;
    DNN(cudnnCreateTensorDescriptor(&d.y));
    DNN(cudnnCreateTensorDescriptor(&d.b));
    DNN(cudnnSetTensor4dDescriptor(d.y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)s->N, (int)s->O, (int)s->OH,
                                   (int)s->OW));
    DNN(cudnnSetTensor4dDescriptor(d.b, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, (int)s->O, 1, 1));
    DNN(cudnnConvolutionBackwardBias(h, &k_one, d.y, gy, &k_zero, d.b, gb));
    return 0;
}
