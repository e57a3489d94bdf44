/* The CUDA backend's multi-tensor optimizer steps, gradient zeroing, the
 * cached convolution plans and the EMA hooks on the device, each against
 * the single-tensor kernels or the CPU path:
 *  - sgd_step_multi / adam_step_multi over many tensors of odd sizes (n = 0,
 *    sizes around the chunk and vector widths, more tensors than one launch
 *    takes) give the single-tensor kernels' bits, step after step;
 *  - an optimizer over a model on the GPU (multi-tensor zero_grad, a
 *    gradient accumulated twice, a parameter without gradient) follows the
 *    same model on the CPU;
 *  - convolutions of several shapes and then the first again (cached
 *    descriptors and algorithms) match the CPU and repeat their results;
 *  - md_tensor_lerp_ / md_tensor_swap_ on the device give the CPU's bits,
 *    and ExpMomentumEMAHook in a runner on the GPU follows the CPU run. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cudalib.h"
#include "toy_regression.h"
#include "internal.h"

TestSuite(cuda_optim, .init = cuda_setup, .fini = cuda_teardown);

/* Sizes around the multi-tensor chunk (16384), the block (256) and float4
 * widths, an empty tensor, and a big one spanning many chunks. */
static const int64_t SIZES[] = { 0, 1, 3, 4, 5, 255, 256, 257, 1000, 16383, 16384, 16385, 40000, 0, 7, 100003 };
#define N_SIZES ((int)(sizeof SIZES / sizeof SIZES[0]))
#define N_T 61   /* more than one launch's 48 tensors */

static int64_t size_of(int i) { return SIZES[i % N_SIZES] + (i >= N_SIZES ? i : 0) * (SIZES[i % N_SIZES] > 0); }

static float *host_random(int64_t n, uint64_t seed, double lo, double hi) {
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    cr_assert_not_null(p);
    md_rng r;
    md_rng_seed(&r, seed);
    for (int64_t k = 0; k < n; k++) p[k] = (float)(lo + (hi - lo) * md_rng_uniform(&r));
    return p;
}

static float *dev_from(const md_backend *be, const float *h, int64_t n) {
    float *d = be->alloc(sizeof(float) * (size_t)n);
    cr_assert_not_null(d, "%s", be->error());
    if (n) cr_assert_eq(be->copy(d, h, sizeof(float) * (size_t)n, MD_COPY_H2D), 0, "%s", be->error());
    return d;
}

/* a and b (device, n floats) hold the same bits. */
static void assert_same_bits(const md_backend *be, const float *a, const float *b, int64_t n, const char *what,
                             int t) {
    if (n == 0) return;
    float *ha = malloc(sizeof(float) * (size_t)n), *hb = malloc(sizeof(float) * (size_t)n);
    cr_assert(ha && hb);
    cr_assert_eq(be->copy(ha, a, sizeof(float) * (size_t)n, MD_COPY_D2H), 0, "%s", be->error());
    cr_assert_eq(be->copy(hb, b, sizeof(float) * (size_t)n, MD_COPY_D2H), 0, "%s", be->error());
    for (int64_t k = 0; k < n; k++)
        cr_assert_eq(memcmp(&ha[k], &hb[k], 4), 0, "%s of tensor %d (n %lld) element %lld: %.9g vs %.9g", what, t,
                     (long long)n, (long long)k, ha[k], hb[k]);
    free(ha);
    free(hb);
}

/* Two device copies of N_T tensors (weights, gradients, two states): one
 * stepped by the single-tensor entry, one by the multi-tensor entry. */
typedef struct twin {
    int64_t n[N_T];
    float *w[2][N_T], *g[N_T], *s0[2][N_T], *s1[2][N_T];
} twin;

static void twin_make(const md_backend *be, twin *t, uint64_t seed) {
    for (int i = 0; i < N_T; i++) {
        int64_t n = t->n[i] = size_of(i);
        float *w = host_random(n, seed + 4 * (uint64_t)i, -1, 1), *g = host_random(n, seed + 4 * (uint64_t)i + 1, -1, 1);
        float *m = host_random(n, seed + 4 * (uint64_t)i + 2, -0.1, 0.1);
        float *v = host_random(n, seed + 4 * (uint64_t)i + 3, 0.0, 0.01);
        t->g[i] = dev_from(be, g, n);
        for (int c = 0; c < 2; c++) {
            t->w[c][i] = dev_from(be, w, n);
            t->s0[c][i] = dev_from(be, m, n);
            t->s1[c][i] = dev_from(be, v, n);
        }
        free(w);
        free(g);
        free(m);
        free(v);
    }
}

static void twin_free(const md_backend *be, twin *t) {
    for (int i = 0; i < N_T; i++) {
        be->free(t->g[i]);
        for (int c = 0; c < 2; c++) be->free(t->w[c][i]), be->free(t->s0[c][i]), be->free(t->s1[c][i]);
    }
}

static void twin_compare(const md_backend *be, twin *t, bool adam, const char *what) {
    char w[96];
    for (int i = 0; i < N_T; i++) {
        snprintf(w, sizeof w, "%s: weight", what);
        assert_same_bits(be, t->w[0][i], t->w[1][i], t->n[i], w, i);
        snprintf(w, sizeof w, "%s: state 0", what);
        assert_same_bits(be, t->s0[0][i], t->s0[1][i], t->n[i], w, i);
        if (adam) {
            snprintf(w, sizeof w, "%s: state 1", what);
            assert_same_bits(be, t->s1[0][i], t->s1[1][i], t->n[i], w, i);
        }
    }
}

static void sgd_multi_case(float mom, float damp, bool nesterov, bool with_buf) {
    const md_backend *be = md__backend_table(MD_CUDA);
    cr_assert(be && be->sgd_step_multi && be->sgd_step);
    twin t;
    twin_make(be, &t, 1000);
    md__mt_param p[N_T];
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < N_T; i++) {
            float lr = 0.01f * (float)(1 + i % 3), wd = i % 4 ? 1e-4f : 0.0f;
            bool first = step == 0 && i % 2 == 0;   /* half the buffers start at d */
            float *buf0 = with_buf ? t.s0[0][i] : NULL;
            cr_assert_eq(be->sgd_step(t.n[i], t.w[0][i], t.g[i], buf0, lr, wd, mom, damp, nesterov, first), 0, "%s",
                         be->error());
            p[i] = (md__mt_param){ .w = t.w[1][i], .g = t.g[i], .s0 = with_buf ? t.s0[1][i] : NULL, .n = t.n[i],
                                   .lr = lr, .wd = wd, .first = first };
        }
        cr_assert_eq(be->sgd_step_multi(N_T, p, mom, damp, nesterov), 0, "%s", be->error());
        char what[64];
        snprintf(what, sizeof what, "sgd step %d (mom %g damp %g nesterov %d)", step, mom, damp, nesterov);
        twin_compare(be, &t, false, what);
    }
    cr_assert_eq(be->sgd_step_multi(0, p, mom, damp, nesterov), 0, "an empty list: %s", be->error());
    twin_free(be, &t);
}

Test(cuda_optim, sgd_multi_matches_single_tensor_bits) {
    NEED_GPU();
    sgd_multi_case(0.9f, 0.0f, false, true);
    sgd_multi_case(0.9f, 0.0f, true, true);
    sgd_multi_case(0.8f, 0.25f, false, true);
    sgd_multi_case(0.0f, 0.0f, false, false);
}

static void adam_multi_case(bool decoupled) {
    const md_backend *be = md__backend_table(MD_CUDA);
    cr_assert(be && be->adam_step_multi && be->adam_step);
    twin t;
    twin_make(be, &t, 2000);
    md__mt_param p[N_T];
    float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    for (int step = 1; step <= 3; step++) {
        double bc1 = 1 - pow(0.9, step), bc2 = 1 - pow(0.999, step);
        float sbc2 = (float)sqrt(bc2);
        for (int i = 0; i < N_T; i++) {
            double lr = 1e-3 * (1 + i % 3);
            float wd = i % 4 ? 0.05f : 0.0f, ss = (float)(lr / bc1);
            cr_assert_eq(be->adam_step(t.n[i], t.w[0][i], t.g[i], t.s0[0][i], t.s1[0][i], (float)lr, wd, b1, b2, eps,
                                       ss, sbc2, decoupled), 0, "%s", be->error());
            p[i] = (md__mt_param){ .w = t.w[1][i], .g = t.g[i], .s0 = t.s0[1][i], .s1 = t.s1[1][i], .n = t.n[i],
                                   .lr = (float)lr, .wd = wd, .step_size = ss };
        }
        cr_assert_eq(be->adam_step_multi(N_T, p, b1, b2, eps, sbc2, decoupled), 0, "%s", be->error());
        char what[64];
        snprintf(what, sizeof what, "%s step %d", decoupled ? "adamw" : "adam", step);
        twin_compare(be, &t, true, what);
    }
    twin_free(be, &t);
}

Test(cuda_optim, adam_multi_matches_single_tensor_bits) {
    NEED_GPU();
    adam_multi_case(false);
    adam_multi_case(true);
}

/* Zeroes exactly the listed ranges: the gaps between them keep their values. */
Test(cuda_optim, zero_multi_zeroes_only_its_ranges) {
    NEED_GPU();
    const md_backend *be = md__backend_table(MD_CUDA);
    cr_assert(be && be->zero_f32_multi);
    float *dst[N_T];
    int64_t n[N_T], off[N_T], total = 0;
    for (int i = 0; i < N_T; i++) {
        n[i] = size_of(i);
        off[i] = total;
        total += n[i] + 3;   /* a gap of 3 after each */
    }
    float *h = host_random(total, 77, 0.5, 1.5);
    float *d = dev_from(be, h, total);
    for (int i = 0; i < N_T; i++) dst[i] = d + off[i];
    cr_assert_eq(be->zero_f32_multi(N_T, dst, n), 0, "%s", be->error());
    float *back = malloc(sizeof(float) * (size_t)total);
    cr_assert_eq(be->copy(back, d, sizeof(float) * (size_t)total, MD_COPY_D2H), 0, "%s", be->error());
    for (int i = 0; i < N_T; i++) {
        for (int64_t k = 0; k < n[i]; k++)
            cr_assert(back[off[i] + k] == 0.0f && !signbit(back[off[i] + k]), "tensor %d element %lld not +0: %g", i,
                      (long long)k, back[off[i] + k]);
        for (int k = 0; k < 3; k++)
            cr_assert_eq(back[off[i] + n[i] + k], h[off[i] + n[i] + k], "gap after tensor %d changed", i);
    }
    free(back);
    free(h);
    be->free(d);
}

/* ------------------------------------- the optimizer on a model on the GPU -- */

#define N_FC 14

static md_module *fc_model(void) {
    md_error err = { 0 };
    md_ctx_seed(ctx, 21);
    md_module *m = md_module_new(sizeof(md_module), NULL);
    cr_assert_not_null(m);
    for (int i = 0; i < N_FC; i++) {
        char name[16];
        snprintf(name, sizeof name, "fc%d", i);
        int64_t in = 3 + 7 * i, out = 1 + (5 * i) % 11;
        cr_assert_eq(md_module_add_child(m, name, md_nn_linear(ctx, in, out, true, &err), &err), 0, "%s", err.msg);
    }
    return m;
}

/* loss = sum over layers of sum(w_i * fc_i(x_i)); fc0 runs twice (its
 * gradients accumulate into the same tensors), the last layer not at all on
 * odd steps (its gradient stays zero: weight decay and momentum still act). */
static md_tensor *fc_loss(md_module *m, int step) {
    md_device dev = md_module_device(m);
    md_tensor *loss = NULL;
    for (int i = 0; i < N_FC; i++) {
        if (i == N_FC - 1 && step % 2) continue;
        char name[16];
        snprintf(name, sizeof name, "fc%d", i);
        md_module *fc = md_module_child(m, name);
        int64_t in = 3 + 7 * i, out = 1 + (5 * i) % 11;
        for (int rep = 0; rep < (i == 0 ? 2 : 1); rep++) {
            md_tensor *x = md_tensor_empty(ctx, MD_F32, MD_DIMS(4, in)), *w = md_tensor_empty(ctx, MD_F32, MD_DIMS(4, out));
            md_rng r;
            md_rng_seed(&r, (uint64_t)(100 * step + 10 * i + rep));
            for (int64_t k = 0; k < md_tensor_numel(x); k++) md_f32(x)[k] = (float)md_rng_normal(&r);
            for (int64_t k = 0; k < md_tensor_numel(w); k++) md_f32(w)[k] = (float)md_rng_normal(&r);
            x = md_tensor_to(ctx, x, dev);
            w = md_tensor_to(ctx, w, dev);
            md_tensor *y = md_linear(ctx, x, md_nn_weight(fc), md_nn_bias(fc));
            md_tensor *s = md_sum(ctx, md_mul(ctx, y, w), MD_DIM_ALL, false);
            cr_assert_not_null(s, "%s", md_ctx_error(ctx)->msg);
            loss = loss ? md_add(ctx, loss, s) : s;
        }
    }
    return loss;
}

static void optimizer_case(const char *opt_text, double tol) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse(opt_text, "opt.cfg", &err);
    cr_assert_not_null(cfg, "%s", err.msg);
    md_module *m[2] = { fc_model(), fc_model() };
    cr_assert_eq(md_module_to(ctx, m[1], gpu, &err), 0, "%s", err.msg);
    md_optimizer *o[2];
    for (int d = 0; d < 2; d++) {
        o[d] = md_optimizer_build(ctx, m[d], md_cfg_get(cfg, "optimizer"), &err);
        cr_assert_not_null(o[d], "%s", err.msg);
    }
    for (int step = 0; step < 4; step++) {
        md_ctx_step_reset(ctx);
        for (int d = 0; d < 2; d++) {
            md_optimizer_zero_grad(o[d]);
            if (step > 0) {   /* every gradient zeroed, the multi-tensor way on the GPU */
                md_tensor *g = md_nn_weight(md_module_child(m[d], "fc5"))->grad;
                cr_assert_not_null(g);
                md_tensor *gc = d ? to_cpu(g) : g;
                for (int64_t k = 0; k < md_tensor_numel(gc); k++)
                    cr_assert(md_f32(gc)[k] == 0.0f, "step %d: gradient not zeroed on %s", step, d ? "cuda" : "cpu");
            }
            md_tensor *loss = fc_loss(m[d], step);
            cr_assert_eq(md_backward(ctx, loss, &err), 0, "%s", err.msg);
            cr_assert_eq(md_optimizer_step(o[d], &err), 0, "%s", err.msg);
        }
        for (int i = 0; i < N_FC; i++) {
            char name[16], what[96];
            snprintf(name, sizeof name, "fc%d", i);
            md_module *fc[2] = { md_module_child(m[0], name), md_module_child(m[1], name) };
            snprintf(what, sizeof what, "step %d %s.weight", step, name);
            assert_close(to_cpu(md_nn_weight(fc[1])), md_nn_weight(fc[0]), tol, what);
            snprintf(what, sizeof what, "step %d %s.bias", step, name);
            assert_close(to_cpu(md_nn_bias(fc[1])), md_nn_bias(fc[0]), tol, what);
            snprintf(what, sizeof what, "step %d %s.weight.grad", step, name);
            assert_close(to_cpu(md_nn_weight(fc[1])->grad), md_nn_weight(fc[0])->grad, 1e-5, what);
        }
    }
    for (int d = 0; d < 2; d++) {
        md_optimizer_free(o[d]);
        md_module_free(m[d]);
    }
    md_cfg_free(cfg);
}

Test(cuda_optim, sgd_on_gpu_model_follows_cpu) {
    NEED_GPU();
    optimizer_case("optimizer = { type = \"SGD\"; lr = 0.05; momentum = 0.9; weight_decay = 0.001; "
                   "paramwise_cfg = { bias_lr_mult = 2.0; bias_decay_mult = 0.0; }; };", 1e-5);
    optimizer_case("optimizer = { type = \"SGD\"; lr = 0.05; momentum = 0.9; nesterov = true; };", 1e-5);
    optimizer_case("optimizer = { type = \"SGD\"; lr = 0.05; };", 1e-5);
}

Test(cuda_optim, adam_on_gpu_model_follows_cpu) {
    NEED_GPU();
    /* Adam's step divides by sqrt(v): rounding differences of the
     * gradients show a little more in the weights */
    optimizer_case("optimizer = { type = \"Adam\"; lr = 0.001; weight_decay = 0.01; };", 1e-4);
    optimizer_case("optimizer = { type = \"AdamW\"; lr = 0.001; weight_decay = 0.05; };", 1e-4);
}

/* ---------------------------------------------------- cached conv plans -- */

typedef struct conv_case { md_conv2d_params p; bool bias; } conv_case;
static md_tensor *f_conv(md_tensor **in, void *u) {
    conv_case *c = u;
    return md_conv2d(ctx, in[0], in[1], c->bias ? in[2] : NULL, c->p);
}

static md_conv2d_params cp(int s, int pad, int d, int g) {
    return (md_conv2d_params){ .stride_h = s, .stride_w = s, .pad_h = pad, .pad_w = pad, .dilation_h = d,
                               .dilation_w = d, .groups = g };
}

/* Forward and both gradients on the GPU, as CPU tensors. */
static void conv_gpu(md_tensor **p, conv_case *c, md_tensor **out) {
    for (int i = 0; i < 3; i++) md_tensor_zero_grad(p[i]);   /* check_case's gradients */
    md_tensor *in[3];
    for (int i = 0; i < 3; i++) in[i] = md_tensor_to(ctx, p[i], gpu);
    md_tensor *y = f_conv(in, c);
    cr_assert_not_null(y, "%s", md_ctx_error(ctx)->msg);
    md_error err = { 0 };
    cr_assert_eq(md_backward(ctx, md_sum(ctx, md_mul(ctx, y, y), MD_DIM_ALL, false), &err), 0, "%s", err.msg);
    out[0] = to_cpu(y);
    for (int i = 0; i < 3; i++) {
        out[1 + i] = p[i]->grad && (i < 2 || c->bias) ? snapshot(p[i]->grad) : NULL;
    }
}

Test(cuda_optim, conv_plans_cached_across_shapes) {
    NEED_GPU();
    struct { int64_t N, C, H, W, O; int k; conv_case c; } shapes[] = {
        { 2, 8, 17, 15, 12, 3, { cp(1, 1, 1, 1), true } },
        { 1, 16, 9, 11, 8, 1, { cp(2, 0, 1, 1), false } },
        { 2, 8, 14, 14, 8, 3, { cp(2, 1, 1, 4), true } },
        { 2, 8, 17, 15, 12, 3, { cp(2, 1, 1, 1), true } },   /* the first but for the stride */
        { 3, 8, 17, 15, 12, 3, { cp(1, 1, 1, 1), true } },   /* the first but for the batch */
    };
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    md_tensor *first[4] = { NULL };
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < ns; i++) {
            if (round == 1 && i > 0) break;   /* back to the first shape, now cached */
            md_ctx_step_reset(ctx);
            int64_t cg = shapes[i].C / shapes[i].c.p.groups;
            md_tensor *p[3] = { randn_param(ctx, MD_DIMS(shapes[i].N, shapes[i].C, shapes[i].H, shapes[i].W), 300 + i),
                                randn_param(ctx, MD_DIMS(shapes[i].O, cg, shapes[i].k, shapes[i].k), 310 + i),
                                randn_param(ctx, MD_DIMS(shapes[i].O), 320 + i) };
            char name[64];
            snprintf(name, sizeof name, "conv shape %d round %d", i, round);
            check_case(name, f_conv, shapes[i].c.bias ? 3 : 2, p, &shapes[i].c, 2e-5);
            if (i == 0) {   /* the first shape's results, before and after the others */
                md_tensor *out[4];
                conv_gpu(p, &shapes[i].c, out);
                if (round == 0) {
                    for (int k = 0; k < 4; k++) {
                        if (!out[k]) continue;
                        md_error err = { 0 };
                        first[k] = md_tensor_new_persistent(ctx, MD_F32, out[k]->ndim, out[k]->shape, &err);
                        cr_assert_not_null(first[k], "%s", err.msg);
                        cr_assert_eq(md_tensor_copy_(ctx, first[k], out[k]), 0);
                    }
                } else {
                    /* the same plan: the forward's bits; backward algorithms
                     * may add with atomics, so their sums only nearly */
                    const char *what[4] = { "output", "grad x", "grad w", "grad b" };
                    assert_equal(out[0], first[0], what[0]);
                    for (int k = 1; k < 4; k++)
                        if (first[k]) assert_close(out[k], first[k], 1e-6, what[k]);
                }
            }
            free_all(3, p);
        }
    free_all(4, first);
}

/* ------------------------------------------------------------ EMA ops -- */

Test(cuda_optim, lerp_and_swap_give_cpu_bits) {
    NEED_GPU();
    md_ctx_step_reset(ctx);
    const int64_t sizes[] = { 0, 1, 5, 257, 70001 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int64_t n = sizes[i];
        md_tensor *a = randn_param(ctx, MD_DIMS(n), 400 + i), *b = randn_param(ctx, MD_DIMS(n), 410 + i);
        md_tensor *ga = md_tensor_to(ctx, a, gpu), *gb = md_tensor_to(ctx, b, gpu);
        cr_assert(ga && gb, "%s", md_ctx_error(ctx)->msg);
        const double ws[] = { 0.0002, 0.37, 1.0 / 3.0 };
        for (int k = 0; k < 3; k++) {
            cr_assert_eq(md_tensor_lerp_(ctx, a, b, ws[k]), 0, "%s", md_ctx_error(ctx)->msg);
            cr_assert_eq(md_tensor_lerp_(ctx, ga, gb, ws[k]), 0, "%s", md_ctx_error(ctx)->msg);
            assert_equal(to_cpu(ga), a, "lerp_");
        }
        cr_assert_eq(md_tensor_swap_(ctx, a, b), 0, "%s", md_ctx_error(ctx)->msg);
        cr_assert_eq(md_tensor_swap_(ctx, ga, gb), 0, "%s", md_ctx_error(ctx)->msg);
        assert_equal(to_cpu(ga), a, "swap_ a");
        assert_equal(to_cpu(gb), b, "swap_ b");
        free_all(1, &a);
        free_all(1, &b);
    }
    /* devices must agree */
    md_tensor *c = md_tensor_zeros(ctx, MD_F32, MD_DIMS(4)), *g = md_tensor_to(ctx, c, gpu);
    cr_assert_neq(md_tensor_lerp_(ctx, c, g, 0.5), 0);
    cr_assert(strstr(md_ctx_error(ctx)->msg, "device"), "%s", md_ctx_error(ctx)->msg);
    md_ctx_clear_error(ctx);
}

/* ExpMomentumEMAHook in a runner: the same training on the CPU and on the
 * GPU; after the epoch (the swap) both models hold the averaged weights and
 * their ema_ buffers the raw ones. */

Test(cuda_optim, ema_hook_on_gpu_follows_cpu) {
    NEED_GPU();
    md_error err = { 0 };
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/hooks", &err), 0, "%s", err.msg);
    const char *text = "optimizer = { type = \"SGD\"; lr = 0.05; momentum = 0.9; };\n"
                       "optimizer_config = { grad_clip = { max_norm = 10.0; norm_type = 2.0; }; };\n"
                       "lr_config = { policy = \"step\"; step = [8]; };\n"
                       "custom_hooks = ( { type = \"ExpMomentumEMAHook\"; momentum = 0.1; total_iter = 10; "
                       "priority = 49; } );\n";
    md_cfg *cfg = md_cfg_parse(text, "ema.cfg", &err);
    cr_assert_not_null(cfg, "%s", err.msg);
    char dir[64];
    test_tmpdir(dir, sizeof dir, "mmdet_cuda_ema");
    md_module *m[2];
    for (int d = 0; d < 2; d++) {
        m[d] = toy_regressor(ctx, 5, &err);
        cr_assert_not_null(m[d], "%s", err.msg);
        if (d) cr_assert_eq(md_module_to(ctx, m[d], gpu, &err), 0, "%s", err.msg);
        md_optimizer *opt = md_optimizer_build(ctx, m[d], md_cfg_get(cfg, "optimizer"), &err);
        cr_assert_not_null(opt, "%s", err.msg);
        md_runner_opts o = { .by_epoch = true, .max_epochs = 2, .work_dir = dir, .timestamp = "20260101_000002" };
        md_runner *r = md_runner_new(ctx, m[d], opt, &o, &err);
        cr_assert_not_null(r, "%s", err.msg);
        cr_assert_eq(md_runner_register_training_hooks(r, md_cfg_get(cfg, "lr_config"),
                                                       md_cfg_get(cfg, "optimizer_config"), NULL, NULL, NULL,
                                                       md_cfg_get(cfg, "custom_hooks"), &err), 0, "%s", err.msg);
        toy_src s = toy_src_make(ctx, 6, -1);
        md_batch_source src = toy_source(&s);
        md_batch_source *srcs[1] = { &src };
        const char *modes[1] = { "train" };
        int counts[1] = { 1 };
        cr_assert_eq(md_runner_run(r, srcs, modes, counts, 1, &err), 0, "%s device: %s", d ? "cuda" : "cpu", err.msg);
        md_runner_free(r);
        md_optimizer_free(opt);
    }
    const char *names[] = { "fc.weight", "fc.bias", "ema_fc_weight", "ema_fc_bias" };
    for (int i = 0; i < 4; i++) {
        md_tensor *c = md_module_find(m[0], names[i]), *g = md_module_find(m[1], names[i]);
        cr_assert(c && g, "%s missing", names[i]);
        cr_assert_eq(g->device, MD_CUDA, "%s is not on the GPU", names[i]);
        assert_close(to_cpu(g), c, 1e-5, names[i]);
    }
    /* the swap happened: the model's weights are not the raw ones */
    cr_assert(md_tensor_item(md_module_find(m[0], "fc.bias")) != md_tensor_item(md_module_find(m[0], "ema_fc_bias")));
    for (int d = 0; d < 2; d++) md_module_free(m[d]);
    md_cfg_free(cfg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
