/* Stand-in for device.cu's shared state (default stream, growable scratch,
 * error text) so that tests/cuda/check_kernels.cu links the element-wise,
 * reduction, pooling and optimizer objects on their own. */
#include <stdarg.h>
#include <stdio.h>
#include "backends/cuda/cuda_internal.h"

static void *scratch_;
static size_t scratch_bytes_;
static char msg_[512];

extern "C" const char *md__cuda_stub_error(void) { return msg_; }
extern "C" cudaStream_t md__cuda_stream(void) { return 0; }

extern "C" int md__cuda_fail(const char *what, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = snprintf(msg_, sizeof msg_, "%s: ", what);
    vsnprintf(msg_ + k, sizeof msg_ - (size_t)k, fmt, ap);
    va_end(ap);
    return -1;
}

extern "C" int md__cuda_check(cudaError_t e, const char *what) {
    if (e == cudaSuccess) e = cudaGetLastError();
    return e == cudaSuccess ? 0 : md__cuda_fail(what, "%s", cudaGetErrorString(e));
}

extern "C" void *md__cuda_scratch(size_t bytes) {
    if (bytes > scratch_bytes_) {
        cudaFree(scratch_);
        scratch_bytes_ = 0;
        if (cudaMalloc(&scratch_, bytes) != cudaSuccess) {
            scratch_ = NULL;
            md__cuda_fail("scratch", "cannot allocate %zu bytes", bytes);
            return NULL;
        }
        scratch_bytes_ = bytes;
    }
    return scratch_;
}
