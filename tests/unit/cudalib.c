/* The CUDA test harness (cudalib.h). */
#include <stdio.h>
#include <string.h>
#include "cudalib.h"

md_ctx *ctx;
md_device gpu;
bool have_gpu;
char why[1024];

void cuda_setup(void) {
    ctx = test_ctx(11, (const char *const[]){ "plugins/backbones/resnet.so", "plugins/optimizers", NULL });
    md_error err = { 0 };
    cr_assert_eq(md_device_parse("cuda:0", &gpu, &err), 0, "%s", err.msg);
    have_gpu = md_device_init(ctx, gpu, &err) == 0;
    if (!have_gpu) snprintf(why, sizeof why, "%s", err.msg);
}
void cuda_teardown(void) { md_ctx_free(ctx); }

md_tensor *to_cpu(md_tensor *t) {
    bool prev = md_grad_set_enabled(ctx, false);
    md_tensor *c = md_tensor_to(ctx, t, MD_DEVICE_CPU);
    md_grad_set_enabled(ctx, prev);
    cr_assert_not_null(c, "copy to the CPU failed: %s", md_ctx_error(ctx)->msg);
    return c;
}

/* A step copy of a persistent CPU tensor's values (to keep a gradient). */
md_tensor *snapshot(md_tensor *t) {
    md_tensor *c = md_tensor_empty(ctx, t->dtype, t->ndim, t->shape);
    cr_assert_not_null(c);
    cr_assert_eq(md_tensor_copy_(ctx, c, t), 0);
    return c;
}

md_tensor *uniform_param(int ndim, const int64_t *shape, uint64_t seed, double lo, double hi) {
    md_tensor *t = randn_param(ctx, ndim, shape, seed);
    md_rng r;
    md_rng_seed(&r, seed);
    md_tensor_uniform_(t, &r, lo, hi);
    return t;
}

/* ------------------------------------------------------------ harness -- */

/* Runs fn on the CPU inputs and on their CUDA copies; compares the outputs
 * and, when the output is f32, the gradients of sum(out * w) for a random w.
 * `params` are persistent CPU tensors (requires_grad set where a gradient
 * is wanted). */
void check_case(const char *name, case_fn fn, int n, md_tensor **params, void *user, double tol) {
    md_ctx_step_reset(ctx);
    for (int i = 0; i < n; i++) params[i]->grad = NULL;
    md_tensor *out_cpu = fn(params, user);
    cr_assert_not_null(out_cpu, "%s on the CPU: %s", name, md_ctx_error(ctx)->msg);
    bool grads = out_cpu->dtype == MD_F32 && out_cpu->requires_grad;
    md_tensor *w = NULL, *gcpu[8] = { 0 };
    md_error err = { 0 };
    if (grads) {
        w = md_tensor_empty(ctx, MD_F32, out_cpu->ndim, out_cpu->shape);
        md_rng r;
        md_rng_seed(&r, 99);
        for (int64_t i = 0; i < md_tensor_numel(w); i++) md_f32(w)[i] = (float)md_rng_normal(&r);
        md_tensor *loss = md_sum(ctx, md_mul(ctx, out_cpu, w), MD_DIM_ALL, false);
        cr_assert_eq(md_backward(ctx, loss, &err), 0, "%s backward on the CPU: %s", name, err.msg);
        for (int i = 0; i < n; i++) {
            if (params[i]->grad) gcpu[i] = snapshot(params[i]->grad);
            if (params[i]->grad) md_tensor_free(params[i]->grad);
            params[i]->grad = NULL;
        }
    }
    md_tensor *in[8];
    for (int i = 0; i < n; i++) {
        in[i] = md_tensor_to(ctx, params[i], gpu);
        cr_assert_not_null(in[i], "%s: copy to cuda: %s", name, md_ctx_error(ctx)->msg);
        cr_assert_eq(in[i]->device, MD_CUDA);
    }
    md_tensor *out_gpu = fn(in, user);
    cr_assert_not_null(out_gpu, "%s on CUDA: %s", name, md_ctx_error(ctx)->msg);
    cr_assert_eq(out_gpu->device, MD_CUDA, "%s: output not on CUDA", name);
    char what[128];
    snprintf(what, sizeof what, "%s output", name);
    if (out_cpu->dtype == MD_F32) assert_close(to_cpu(out_gpu), out_cpu, tol, what);
    else assert_equal(to_cpu(out_gpu), out_cpu, what);
    if (!grads) return;
    md_tensor *loss = md_sum(ctx, md_mul(ctx, out_gpu, md_tensor_to(ctx, w, gpu)), MD_DIM_ALL, false);
    cr_assert_eq(md_backward(ctx, loss, &err), 0, "%s backward on CUDA: %s", name, err.msg);
    for (int i = 0; i < n; i++) {
        if (!gcpu[i]) continue;
        cr_assert_not_null(params[i]->grad, "%s: no gradient for input %d through CUDA", name, i);
        cr_assert_eq(params[i]->grad->device, MD_CPU);
        snprintf(what, sizeof what, "%s gradient of input %d", name, i);
        assert_close(params[i]->grad, gcpu[i], tol, what);
    }
}

void free_all(int n, md_tensor **p) {
    for (int i = 0; i < n; i++) md_tensor_free(p[i]);
}

