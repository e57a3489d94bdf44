/* Shared by the CUDA test files (tests/unit/test_cuda*.c): a context with
 * the GPU opened when there is one, and the harness that runs an op on the
 * CPU and on CUDA from the same inputs and compares outputs and gradients. */
#ifndef MMDET_CUDALIB_H
#define MMDET_CUDALIB_H

#include <criterion/criterion.h>
#include "testlib.h"

extern md_ctx *ctx;          /* test_ctx(11) with plugins/backbones/resnet.so */
extern md_device gpu;        /* cuda:0 */
extern bool have_gpu;
extern char why[1024];       /* why not, when !have_gpu */

/* TestSuite(x, .init = cuda_setup, .fini = cuda_teardown) */
void cuda_setup(void);
void cuda_teardown(void);

/* Skips the test (saying why) without a usable GPU. */
#define NEED_GPU()                                                                 \
    do {                                                                           \
        if (!have_gpu) cr_skip_test("%.300s", why);                                \
    } while (0)

/* A CPU copy of t (grad mode off). */
md_tensor *to_cpu(md_tensor *t);
/* A step copy of a persistent CPU tensor's values. */
md_tensor *snapshot(md_tensor *t);
/* randn_param with U(lo, hi) values instead. */
md_tensor *uniform_param(int ndim, const int64_t *shape, uint64_t seed, double lo, double hi);

/* Runs fn on the CPU inputs and on their CUDA copies (md_tensor_to, so the
 * copy's backward is covered too); compares the outputs (exactly when not
 * f32) and, when the output is f32 and requires grad, the gradients of
 * sum(out * w) for a random w with respect to every input. `params` are
 * persistent CPU tensors (requires_grad set where a gradient is wanted),
 * at most 8. fn must not keep state between its two calls except through
 * `user`; it can tell the devices apart by in[0]->device. */
typedef md_tensor *(*case_fn)(md_tensor **in, void *user);
void check_case(const char *name, case_fn fn, int n, md_tensor **params, void *user, double tol);
void free_all(int n, md_tensor **p);

#endif
