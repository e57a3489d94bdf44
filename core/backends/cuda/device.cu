/* The CUDA backend's process-wide state (device, stream, cuBLAS and cuDNN
 * handles, scratch), memory and errors, and the exported table.
 *
 * Device memory comes from the device's stream-ordered pool
 * (cudaMallocAsync / cudaFreeAsync on the backend's stream, release
 * threshold unlimited) where the device supports it: freeing a tensor then
 * neither synchronises the device nor returns memory to the driver, which
 * plain cudaFree would do on every call. Without pool support, plain
 * cudaMalloc / cudaFree. Never managed memory. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mutex>
#include "backends/cuda/cuda_libs.h"

static std::mutex g_lock;          /* guards init */
static bool g_ready = false;
static int g_dev = -1;
static cudaStream_t g_stream = NULL;
static cublasHandle_t g_blas = NULL;
static cudnnHandle_t g_dnn = NULL;
static bool g_tf32 = false;
static int g_cc = 0;              /* compute capability, 10 major + minor */
static bool g_pool = false;        /* stream-ordered allocation available */
static cudaMemPool_t g_mempool = NULL;
static char g_desc[256] = "cuda (not initialised)";
static void *g_scratch = NULL;
static size_t g_scratch_bytes = 0;

static thread_local char t_err[1024];
static thread_local int t_bound = -1;   /* device this thread has selected */

/* The CUDA runtime's current device is per thread: select ours in any
 * thread that calls in, so that kernels, allocations and the stream agree. */
static void bind(void) {
    if (g_ready && t_bound != g_dev) {
        if (cudaSetDevice(g_dev) == cudaSuccess) t_bound = g_dev;
        else (void)cudaGetLastError();
    }
}

extern "C" {

cudaStream_t md__cuda_stream(void) {
    bind();
    return g_stream;
}

int md__cuda_device(void) { return g_dev; }

cublasHandle_t md__cuda_cublas(void) {
    bind();
    return g_ready ? g_blas : NULL;
}

cudnnHandle_t md__cuda_cudnn(void) {
    bind();
    return g_ready ? g_dnn : NULL;
}

bool md__cuda_tf32(void) { return g_tf32; }

int md__cuda_cc(void) { return g_ready ? g_cc : 0; }

int md__cuda_fail(const char *what, const char *fmt, ...) {
    int n = snprintf(t_err, sizeof t_err, "%s: ", what ? what : "cuda");
    if (n < 0 || (size_t)n >= sizeof t_err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_err + n, sizeof t_err - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

int md__cuda_check(cudaError_t err, const char *what) {
    if (err == cudaSuccess) err = cudaGetLastError();
    else (void)cudaGetLastError();   /* clear it so later checks do not report it again */
    if (err == cudaSuccess) return 0;
    return md__cuda_fail(what, "%s (%s)", cudaGetErrorString(err), cudaGetErrorName(err));
}

const char *md__cuda_error(void) { return t_err; }

const char *md__cuda_describe(void) { return g_desc; }

/* Releases whatever init created (after a failed init). */
static void teardown(void) {
    md__cuda_conv_cache_clear();
    if (g_dnn) cudnnDestroy(g_dnn);
    if (g_blas) cublasDestroy(g_blas);
    if (g_stream) cudaStreamDestroy(g_stream);
    g_dnn = NULL;
    g_blas = NULL;
    g_stream = NULL;
    g_pool = false;
    g_mempool = NULL;
    (void)cudaGetLastError();
}

int md__cuda_init(int index) {
    std::lock_guard<std::mutex> lock(g_lock);
    if (g_ready) {
        if (index == g_dev) return 0;
        return md__cuda_fail("cuda init", "the backend already runs on device %d; cannot switch to device %d in "
                             "the same process", g_dev, index);
    }
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return md__cuda_fail("cuda init", "no CUDA device: %s", cudaGetErrorString(e));
    }
    if (count <= 0) return md__cuda_fail("cuda init", "no CUDA device: cudaGetDeviceCount found none");
    if (index < 0 || index >= count)
        return md__cuda_fail("cuda init", "device index %d out of range (%d device%s: 0..%d)", index, count,
                             count == 1 ? "" : "s", count - 1);
    if ((e = cudaSetDevice(index)) != cudaSuccess)
        return md__cuda_check(e, "cuda init: cudaSetDevice");
    cudaDeviceProp prop;
    if ((e = cudaGetDeviceProperties(&prop, index)) != cudaSuccess)
        return md__cuda_check(e, "cuda init: cudaGetDeviceProperties");
    const char *tf = getenv("MMDET_CUDA_TF32");
    g_tf32 = tf && strcmp(tf, "1") == 0;

    if ((e = cudaStreamCreate(&g_stream)) != cudaSuccess) {
        g_stream = NULL;
        int rc = md__cuda_check(e, "cuda init: cudaStreamCreate");
        teardown();
        return rc;
    }
    int pools = 0;
    if (cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, index) == cudaSuccess && pools &&
        cudaDeviceGetDefaultMemPool(&g_mempool, index) == cudaSuccess) {
        uint64_t keep = UINT64_MAX;   /* keep freed memory in the pool across synchronisations */
        g_pool = cudaMemPoolSetAttribute(g_mempool, cudaMemPoolAttrReleaseThreshold, &keep) == cudaSuccess;
    }
    (void)cudaGetLastError();

    cublasStatus_t bs = cublasCreate(&g_blas);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        g_blas = NULL;
        teardown();
        return md__cuda_fail("cuda init", "cublasCreate: %s", cublasGetStatusString(bs));
    }
    if ((bs = cublasSetStream(g_blas, g_stream)) != CUBLAS_STATUS_SUCCESS ||
        (bs = cublasSetMathMode(g_blas, g_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH)) !=
            CUBLAS_STATUS_SUCCESS) {
        teardown();
        return md__cuda_fail("cuda init", "cublasSetStream/cublasSetMathMode: %s", cublasGetStatusString(bs));
    }
    cudnnStatus_t ds = cudnnCreate(&g_dnn);
    if (ds != CUDNN_STATUS_SUCCESS) {
        g_dnn = NULL;
        teardown();
        return md__cuda_fail("cuda init", "cudnnCreate: %s", cudnnGetErrorString(ds));
    }
    if ((ds = cudnnSetStream(g_dnn, g_stream)) != CUDNN_STATUS_SUCCESS) {
        teardown();
        return md__cuda_fail("cuda init", "cudnnSetStream: %s", cudnnGetErrorString(ds));
    }
    snprintf(g_desc, sizeof g_desc, "%.200s (sm_%d%d, %llu GiB)", prop.name, prop.major, prop.minor,
             (unsigned long long)(prop.totalGlobalMem >> 30));
    g_dev = index;
    g_cc = prop.major * 10 + prop.minor;
    t_bound = index;
    g_ready = true;
    return 0;
}

void *md__cuda_alloc(size_t bytes) {
    if (!g_ready) {
        md__cuda_fail("cuda alloc", "backend not initialised (%zu bytes)", bytes);
        return NULL;
    }
    bind();
    size_t n = bytes ? bytes : 1;   /* a valid, distinct pointer for empty tensors */
    void *p = NULL;
    cudaError_t e;
    if (g_pool) {
        e = cudaMallocAsync(&p, n, g_stream);
        if (e == cudaErrorMemoryAllocation) {   /* hand cached blocks back and retry once */
            (void)cudaGetLastError();
            if (cudaStreamSynchronize(g_stream) == cudaSuccess) (void)cudaMemPoolTrimTo(g_mempool, 0);
            (void)cudaGetLastError();
            p = NULL;
            e = cudaMallocAsync(&p, n, g_stream);
        }
    } else {
        e = cudaMalloc(&p, n);
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) (void)cudaGetLastError();
        md__cuda_fail("cuda alloc", "%zu bytes on device %d: %s (%zu of %zu bytes free)", bytes, g_dev,
                      cudaGetErrorString(e), fr, tot);
        return NULL;
    }
    return p;
}

void md__cuda_free(void *p) {
    if (!p || !g_ready) return;
    bind();
    cudaError_t e;
    if (g_pool) e = cudaFreeAsync(p, g_stream);
    else if ((e = cudaStreamSynchronize(g_stream)) == cudaSuccess)   /* queued kernels may still use p */
        e = cudaFree(p);
    if (e != cudaSuccess) (void)cudaGetLastError();   /* nothing to report to; keep later checks clean */
}

int md__cuda_copy(void *dst, const void *src, size_t bytes, int kind) {
    static const char *names[] = { "H2D", "D2H", "D2D" };
    if (kind < MD_COPY_H2D || kind > MD_COPY_D2D)
        return md__cuda_fail("cuda copy", "unknown copy kind %d (%zu bytes)", kind, bytes);
    if (!g_ready) return md__cuda_fail("cuda copy", "backend not initialised (%s, %zu bytes)", names[kind], bytes);
    if (bytes == 0) return 0;
    bind();
    cudaMemcpyKind k = kind == MD_COPY_H2D ? cudaMemcpyHostToDevice
                       : kind == MD_COPY_D2H ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice;
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, k, g_stream);
    if (e == cudaSuccess && kind == MD_COPY_D2H) e = cudaStreamSynchronize(g_stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return md__cuda_fail("cuda copy", "%s of %zu bytes (%p -> %p): %s", names[kind], bytes, src, dst,
                             cudaGetErrorString(e));
    }
    return 0;
}

int md__cuda_sync(void) {
    if (!g_ready) return md__cuda_fail("cuda sync", "backend not initialised");
    bind();
    cudaError_t e = cudaStreamSynchronize(g_stream);
    if (e != cudaSuccess) return md__cuda_check(e, "cuda sync: a queued kernel failed");
    return 0;
}

int md__cuda_mem_info(size_t *free_bytes, size_t *total_bytes) {
    if (!g_ready) return md__cuda_fail("cuda mem_info", "backend not initialised");
    bind();
    size_t f = 0, t = 0;
    cudaError_t e = cudaMemGetInfo(&f, &t);
    if (e != cudaSuccess) return md__cuda_check(e, "cuda mem_info: cudaMemGetInfo");
    if (free_bytes) *free_bytes = f;
    if (total_bytes) *total_bytes = t;
    return 0;
}

void *md__cuda_scratch(size_t bytes) {
    if (!g_ready) {
        md__cuda_fail("cuda scratch", "backend not initialised (%zu bytes)", bytes);
        return NULL;
    }
    if (g_scratch && bytes <= g_scratch_bytes) return g_scratch;
    /* grow by at least half, in whole MiB, so that a run of growing requests
     * reallocates a few times only */
    size_t want = bytes > g_scratch_bytes + g_scratch_bytes / 2 ? bytes : g_scratch_bytes + g_scratch_bytes / 2;
    want = (want + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
    if (want == 0) want = (size_t)1 << 20;
    if (g_scratch) {   /* stream-ordered free: kernels queued on the old buffer finish first */
        md__cuda_free(g_scratch);
        g_scratch = NULL;
        g_scratch_bytes = 0;
    }
    void *p = md__cuda_alloc(want);
    if (!p && want > bytes) p = md__cuda_alloc((want = bytes ? bytes : 1));
    if (!p) {
        char msg[512];
        snprintf(msg, sizeof msg, "%.400s", t_err);
        md__cuda_fail("cuda scratch", "%zu bytes: %s", bytes, msg);
        return NULL;
    }
    g_scratch = p;
    g_scratch_bytes = want;
    return p;
}

static md_backend make_table(void) {
    md_backend t;
    memset(&t, 0, sizeof t);
    t.abi = MD_BACKEND_ABI;
    t.name = "cuda";
    t.init = md__cuda_init;
    t.describe = md__cuda_describe;
    t.error = md__cuda_error;
    t.alloc = md__cuda_alloc;
    t.free = md__cuda_free;
    t.copy = md__cuda_copy;
    t.sync = md__cuda_sync;
    t.mem_info = md__cuda_mem_info;
    t.fill = md__cuda_fill;
    t.copy_strided = md__cuda_copy_strided;
    t.binary_f32 = md__cuda_binary_f32;
    t.unary_f32 = md__cuda_unary_f32;
    t.unary_f32_backward = md__cuda_unary_f32_backward;
    t.add_inplace_f32 = md__cuda_add_inplace_f32;
    t.unary_int = md__cuda_unary_int;
    t.sum_f32 = md__cuda_sum_f32;
    t.spread_f32 = md__cuda_spread_f32;
    t.sgemm = md__cuda_sgemm;
    t.conv2d_forward = md__cuda_conv2d_forward;
    t.conv2d_backward_input = md__cuda_conv2d_backward_input;
    t.conv2d_backward_weight = md__cuda_conv2d_backward_weight;
    t.conv2d_backward_bias = md__cuda_conv2d_backward_bias;
    t.batch_norm_train = md__cuda_batch_norm_train;
    t.batch_norm_eval = md__cuda_batch_norm_eval;
    t.batch_norm_backward = md__cuda_batch_norm_backward;
    t.maxpool2d_forward = md__cuda_maxpool2d_forward;
    t.maxpool2d_backward = md__cuda_maxpool2d_backward;
    t.sgd_step = md__cuda_sgd_step;
    t.adam_step = md__cuda_adam_step;
    t.sgd_step_multi = md__cuda_sgd_step_multi;
    t.adam_step_multi = md__cuda_adam_step_multi;
    t.zero_f32_multi = md__cuda_zero_f32_multi;
    t.lerp_f32 = md__cuda_lerp_f32;
    t.swap_f32 = md__cuda_swap_f32;
    /* op families whose files fill their own entries (weak: a family not
     * built leaves its entries NULL, which libmmdet reports per op) */
    if (md__cuda_table_shape) md__cuda_table_shape(&t);
    if (md__cuda_table_losses) md__cuda_table_losses(&t);
    if (md__cuda_table_detection) md__cuda_table_detection(&t);
    if (md__cuda_table_amp) md__cuda_table_amp(&t);
    if (md__cuda_table_masks) md__cuda_table_masks(&t);
    md__cuda_profile_wrap(&t);
    return t;
}

__attribute__((visibility("default"))) const md_backend *md_backend_cuda(void) {
    static const md_backend table = make_table();   /* C++ guarantees thread-safe one-time init */
    return &table;
}

}   /* extern "C" */
