/* Step memory with grad mode on: md_tensor_release hands storage back as
 * soon as no tape node's backward reads it, and never before. The rule is
 * checked on hand-worked cases (arena counters, gradients worked out by
 * hand), with freed storage poisoned (NaN bytes) so that a wrongly freed
 * tensor shows in the gradients, on a deliberately broken op (the poison
 * must show), and on the ResNet backbone and the tiny RetinaNet and Faster
 * R-CNN: losses and every gradient bitwise identical with and without the
 * releases, and a lower arena peak with them. White-box: the test reaches
 * into the context (internal.h) to switch release, poisoning and the pool
 * threshold without environment variables. */
#include <criterion/criterion.h>
#include <math.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif
#include <stdio.h>
#include <string.h>
#include <mmdet/checkpoint.h>
#include <mmdet/mmdet.h>
#include "internal.h"
#include "testlib.h"
#include "detector_tiny.h"

static md_ctx *ctx;
static void setup(void) {
    ctx = test_ctx(1, (const char *const[]){ "plugins/backbones", "plugins/necks", "plugins/bbox", "plugins/heads", "plugins/losses",
                                             "plugins/detectors", NULL });
    md_ctx_set_threads(ctx, 1);
    ctx->arena.poison = true;   /* a read of a wrongly freed f32 gives NaN */
}
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(memory, .init = setup, .fini = teardown, .timeout = 120);

#define N ((int64_t)1 << 18)   /* 1 MiB of f32: pooled */

static md_tensor *param_full(int64_t n, float v) {
    md_tensor *p = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(n), NULL);
    cr_assert(p);
    md_tensor_fill_(p, v);
    p->requires_grad = true;
    return p;
}

static md_tensor *sum_all(md_tensor *t) {
    return md_sum(ctx, md_reshape(ctx, t, MD_DIMS(-1)), 0, false);
}

static void backward(md_tensor *loss) {
    md_error err = { 0 };
    cr_assert_not_null(loss, "%s", md_ctx_error(ctx)->msg);
    cr_assert_eq(md_backward(ctx, loss, &err), 0, "%s", err.msg);
}

static void assert_all(const md_tensor *t, float v, const char *what) {
    cr_assert_not_null(t, "%s: none", what);
    for (int64_t i = 0; i < md_tensor_numel(t); i++)
        if (md_f32(t)[i] != v) cr_assert_fail("%s[%lld] = %g, expected %g", what, (long long)i, md_f32(t)[i], v);
}

/* add's backward reads neither operand: with grad on, its operand goes at
 * once, and so does a tensor no node saw. */
Test(memory, release_of_unsaved_tensors_with_grad_on) {
    md_tensor *x = param_full(N, 1.0f);
    md_tensor *c = md_tensor_full(ctx, MD_F32, MD_DIMS(N), 2.0);
    md_tensor *y = md_add(ctx, x, c);
    cr_assert(y && y->grad_fn);
    size_t used = md_ctx_arena_used(ctx);
    md_tensor_release(ctx, c);
    cr_assert_null(c->data, "nothing reads c: it goes");
    cr_assert_leq(md_ctx_arena_used(ctx), used - (size_t)N * 4);
    md_tensor *t = md_tensor_full(ctx, MD_F32, MD_DIMS(N), 5.0);
    used = md_ctx_arena_used(ctx);
    md_tensor_release(ctx, t);
    cr_assert_eq(md_ctx_arena_used(ctx), used - (size_t)N * 4);
    md_tensor *t2 = md_tensor_empty(ctx, MD_F32, MD_DIMS(N));   /* reuses a handed-back block */
    cr_assert(isnan(md_f32(t2)[3]), "handed-back storage is poisoned (got %g)", md_f32(t2)[3]);
    backward(sum_all(y));
    assert_all(x->grad, 1.0f, "dx");
    md_tensor_free(x);
}

/* The host heap on a hand-worked sequence (offsets in pages, one guard
 * page per range in sanitizer builds): best fit splits a free range, a
 * range handed back merges with free neighbours, and one that reaches the
 * top lowers it. */
#define PG ((size_t)4096)
#define RANGE(pages) ((pages) * PG + MD_HEAP_GUARD)
static size_t heap_off(const md_heap *h, const void *p) { return (size_t)((const char *)p - h->base); }

Test(memory, heap_best_fit_splits_and_merges) {
    md_heap h = { 0 };
    char *a = md__heap_alloc(&h, 4 * PG), *b = md__heap_alloc(&h, 2 * PG), *c = md__heap_alloc(&h, 8 * PG);
    char *d = md__heap_alloc(&h, 1 * PG);
    cr_assert(a && b && c && d);
    cr_assert_eq(heap_off(&h, b), RANGE(4));
    cr_assert_eq(heap_off(&h, d), RANGE(4) + RANGE(2) + RANGE(8));
    cr_assert_eq(h.top, RANGE(4) + RANGE(2) + RANGE(8) + RANGE(1));
    memset(a, 1, 4 * PG);   /* writable */
    md__heap_put(&h, a, 4 * PG);
    md__heap_put(&h, c, 8 * PG);
    cr_assert_eq(h.n_free, 2);
    /* 3 pages: the 4-page range fits best, not the 8-page one; it is split */
    char *e = md__heap_alloc(&h, 3 * PG);
    cr_assert_eq(e, a, "best fit: the smaller free range");
    cr_assert_eq(h.free[0].off, RANGE(3));
    cr_assert_eq(h.free[0].size, RANGE(4) - RANGE(3));
    /* b goes: it merges with the rest of a's range and c's range */
    md__heap_put(&h, b, 2 * PG);
    cr_assert_eq(h.n_free, 1, "b merged with both neighbours");
    cr_assert_eq(h.free[0].off, RANGE(3));
    cr_assert_eq(h.free[0].size, RANGE(4) - RANGE(3) + RANGE(2) + RANGE(8));
    /* a request larger than every free range goes on top */
    char *f = md__heap_alloc(&h, 16 * PG);
    cr_assert_eq(heap_off(&h, f), RANGE(4) + RANGE(2) + RANGE(8) + RANGE(1));
    /* d and f go: the free range below them merges into the top */
    md__heap_put(&h, f, 16 * PG);
    md__heap_put(&h, d, 1 * PG);
    cr_assert_eq(h.n_free, 0);
    cr_assert_eq(h.top, RANGE(3), "only e is left below the top");
    cr_assert_eq(h.high, RANGE(4) + RANGE(2) + RANGE(8) + RANGE(1) + RANGE(16));
    md__heap_free(&h);
}

/* A tensor handed back serves later requests of other sizes: a large one
 * is split for two smaller ones that follow it (activations going,
 * gradients coming), whether or not the step records a tape. */
Test(memory, handed_back_storage_is_split_for_smaller_requests) {
    md_ctx_step_reset(ctx);
    md_tensor *x = param_full(N, 1.0f);
    for (int tape = 0; tape < 2; tape++) {
        if (tape) cr_assert_not_null(md_mul(ctx, x, x));
        cr_assert_eq(ctx->tape_len > 0, tape);
        md_tensor *t = md_tensor_empty(ctx, MD_F32, MD_DIMS(4 * N));
        char *base = t->data;
        md_tensor_release(ctx, t);
        md_tensor *u = md_tensor_empty(ctx, MD_F32, MD_DIMS(N));
        md_tensor *v = md_tensor_empty(ctx, MD_F32, MD_DIMS(2 * N));
        cr_assert(u && v, "%s", md_ctx_error(ctx)->msg);
        cr_assert_eq((char *)u->data, base);
        cr_assert_eq((char *)v->data, base + N * 4 + MD_HEAP_GUARD);
        md_tensor_release(ctx, u);
        md_tensor_release(ctx, v);
    }
    md_tensor_free(x);
}

#if defined(__SANITIZE_ADDRESS__)
/* Sanitizer builds: a write just past a pooled tensor, where the next
 * tensor's range would start without the guard page, is caught (ASan
 * exits with 1). */
Test(memory, overrun_past_a_pooled_tensor_is_caught, .exit_code = 1) {
    md_tensor *a = md_tensor_empty(ctx, MD_F32, MD_DIMS(N));
    md_tensor *b = md_tensor_empty(ctx, MD_F32, MD_DIMS(N));
    cr_assert(a && b);
    ((volatile float *)md_f32(a))[N] = 1.0f;
}
#endif

/* Steps that make the same requests in the same order get the same
 * addresses, so a steady loop touches no fresh page after its first step.
 * The pages go back to the kernel only once the last MD_HEAP_WINDOW steps
 * needed less: a small (or empty) step between two large ones keeps them. */
static void *step_pattern(int64_t scale, size_t *high) {
    md_ctx_step_reset(ctx);
    md_tensor *a = md_tensor_empty(ctx, MD_F32, MD_DIMS(3 * N * scale));
    md_tensor *b = md_tensor_empty(ctx, MD_F32, MD_DIMS(N * scale));
    md_tensor_release(ctx, a);
    md_tensor *c = md_tensor_empty(ctx, MD_F32, MD_DIMS(2 * N * scale));
    md_tensor *d = md_tensor_empty(ctx, MD_F32, MD_DIMS(5 * N * scale));
    cr_assert(b && c && d);
    *high = ctx->arena.heap.high;
    return d->data;
}

Test(memory, steady_steps_reuse_the_same_pages) {
    size_t high1, high2, high3 = 0;
    void *d1 = step_pattern(2, &high1);
    void *d2 = step_pattern(2, &high2);
    cr_assert_eq(d1, d2, "the same request order gives the same layout");
    cr_assert_eq(high1, high2);
    for (int i = 0; i < MD_HEAP_WINDOW; i++) {
        step_pattern(1, &high3);   /* its reset ends the step before */
        cr_assert_geq(ctx->arena.heap.touched, high1, "a large step is among the last %d: its pages stay",
                      MD_HEAP_WINDOW);
    }
    cr_assert_lt(high3, high1);
    md_ctx_step_reset(ctx);
    cr_assert_leq(ctx->arena.heap.touched, high3 + PG, "after %d smaller steps the pages above their use go back",
                  MD_HEAP_WINDOW);
}

/* The allocation serial of the pool block at p, which is in use. */
static uint64_t serial_at(const void *p) {
    md_pool_block *b = md__pool_find(&ctx->arena, p);
    cr_assert_not_null(b, "no pool block in use at %p", p);
    return b->serial;
}

/* Whether the block that had `serial` at p was handed back (a later block
 * may start at p since: the heap reuses what was handed back). */
static bool gone(const void *p, uint64_t serial) {
    md_pool_block *b = md__pool_find(&ctx->arena, p);
    return !b || b->serial != serial;
}

/* Whether storage handed back shows as such: NaN bytes, or in sanitizer
 * builds, where the heap poisons what it gets back, ASan's poison. */
static bool handed_back_marked(const void *p) {
#if defined(__SANITIZE_ADDRESS__)
    return __asan_address_is_poisoned(p);
#else
    return isnan(*(const float *)p);
#endif
}

/* mul's backward reads both operands: a released operand stays (unpoisoned)
 * until that node has run, then goes. d/dx sum(x * c) = c. */
Test(memory, saved_tensor_stays_until_its_backward) {
    md_tensor *x = param_full(N, 1.0f);
    md_tensor *c = md_tensor_full(ctx, MD_F32, MD_DIMS(N), 3.0);
    md_tensor *y = md_mul(ctx, x, c);
    size_t used = md_ctx_arena_used(ctx);
    md_tensor_release(ctx, c);
    cr_assert_not_null(c->data);
    cr_assert_eq(md_ctx_arena_used(ctx), used, "mul's backward reads c: it stays");
    cr_assert_eq(md_f32(c)[N - 1], 3.0f, "kept storage is not poisoned");
    void *cdata = c->data;
    uint64_t cserial = serial_at(cdata);
    backward(sum_all(y));
    assert_all(x->grad, 3.0f, "dx");
    cr_assert(gone(cdata, cserial), "c's block went once mul's backward ran");
    cr_assert(handed_back_marked(cdata), "and was poisoned");
    md_tensor_free(x);
}

/* Holds count on the storage: a view (from the base's start or from inside)
 * that a node reads keeps the whole block, whichever header is released. */
Test(memory, views_hold_their_base) {
    md_tensor *x = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(2, N / 2), NULL);
    md_tensor_fill_(x, 1.0);
    x->requires_grad = true;
    md_tensor *c = md_tensor_arange(ctx, MD_F32, N);
    md_tensor *y1 = md_mul(ctx, x, md_reshape(ctx, c, MD_DIMS(2, N / 2)));
    md_tensor *c2 = md_tensor_full(ctx, MD_F32, MD_DIMS(N + 16), 7.0);
    md_tensor *inner = md_slice(ctx, c2, 0, 16, N + 16, 1);   /* starts inside the block */
    md_tensor *y2 = md_mul(ctx, x, md_reshape(ctx, inner, MD_DIMS(2, N / 2)));
    size_t used = md_ctx_arena_used(ctx);
    void *cdata = c->data, *c2data = c2->data;
    uint64_t cserial = serial_at(cdata), c2serial = serial_at(c2data);
    md_tensor_release(ctx, c);
    md_tensor_release(ctx, c2);
    md_tensor_release(ctx, inner);   /* a view inside: never releases anything */
    cr_assert_eq(md_ctx_arena_used(ctx), used, "views read by nodes keep both blocks");
    backward(md_add(ctx, sum_all(y1), sum_all(y2)));
    for (int64_t i = 0; i < N; i += 4099)
        cr_assert_eq(md_f32(x->grad)[i], (float)i + 7.0f, "dx[%lld] = %g", (long long)i, md_f32(x->grad)[i]);
    cr_assert(gone(cdata, cserial), "c went after backward");
    cr_assert(gone(c2data, c2serial), "c2 went after backward");
    md_tensor_free(x);
}

/* y = x * k with k's data pointer kept in the saved bytes: an op that
 * forgets md_node_keep lets k be freed, and the poison shows in the
 * gradient; with the hold the gradient is k. */
typedef struct scaled_saved { const float *k; } scaled_saved;
static int scaled_backward(md_ctx *c, md_node *node, md_tensor *g) {
    const scaled_saved *s = md_node_saved(node);
    md_tensor *gx = md_tensor_empty_like(c, g);
    if (!gx) return -1;
    for (int64_t i = 0; i < md_tensor_numel(g); i++) md_f32(gx)[i] = md_f32(g)[i] * s->k[i];
    return md_node_accumulate(c, node, 0, gx);
}
static md_tensor *scaled(md_tensor *x, md_tensor *k, bool hold) {
    md_tensor *y = md_tensor_empty_like(ctx, x);
    for (int64_t i = 0; i < md_tensor_numel(x); i++) md_f32(y)[i] = md_f32(x)[i] * md_f32(k)[i];
    md_node *n = md_autograd_record(ctx, y, &x, 1, scaled_backward, "scaled");
    cr_assert(n);
    scaled_saved *s = md_node_save(ctx, n, sizeof *s);
    s->k = md_f32(k);
    if (hold) cr_assert_eq(md_node_keep(ctx, n, k), 0);
    return y;
}

Test(memory, poison_shows_a_wrongly_freed_saved_tensor) {
    for (int hold = 0; hold < 2; hold++) {
        md_ctx_step_reset(ctx);
        md_tensor *x = param_full(N, 1.0f);
        md_tensor *k = md_tensor_full(ctx, MD_F32, MD_DIMS(N), 0.5);
        md_tensor *y = scaled(x, k, hold);
        md_tensor_release(ctx, k);
        cr_assert_eq(k->data == NULL, !hold, "held: %d, freed: %d", hold, k->data == NULL);
        backward(sum_all(y));
        if (hold) assert_all(x->grad, 0.5f, "dx");
        else cr_assert(isnan(md_f32(x->grad)[0]) && isnan(md_f32(x->grad)[N - 1]),
                       "the broken op read freed storage: poison expected, got %g", md_f32(x->grad)[0]);
        md_tensor_free(x);
    }
}

/* Backward a second time in one step through a node whose storage the
 * first one handed back is an error naming the op, not a silent result. */
Test(memory, second_backward_after_release_fails) {
    md_tensor *x = param_full(N, 1.0f);
    md_tensor *c = md_tensor_full(ctx, MD_F32, MD_DIMS(N), 3.0);
    md_tensor *loss = sum_all(md_mul(ctx, x, c));
    md_tensor_release(ctx, c);
    backward(loss);
    md_error err = { 0 };
    cr_assert_neq(md_backward(ctx, loss, &err), 0);
    cr_assert(strstr(err.msg, "mul") && strstr(err.msg, "second time"), "%s", err.msg);
    md_tensor_free(x);
}

/* ---- whole models: bitwise the same with and without release ---- */

/* A module's parameters in md_module_visit order. */
typedef struct plist { int n; char names[512][160]; md_tensor *t[512]; } plist;
static int collect(const char *name, md_tensor *t, bool is_param, void *user) {
    plist *l = user;
    if (!is_param) return 0;
    cr_assert_lt(l->n, 512);
    snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
    l->t[l->n++] = t;
    return 0;
}

typedef struct run_out { float loss[8]; int n_loss; size_t peak; } run_out;

/* Gradients of m after a run, copied out, then zeroed. */
static float *grads_of(md_module *m, plist *l, int64_t *total) {
    l->n = 0;
    md_module_visit(m, "", collect, l);
    int64_t n = 0;
    for (int i = 0; i < l->n; i++) n += md_tensor_numel(l->t[i]);
    float *g = calloc((size_t)n, sizeof *g);
    int64_t off = 0;
    for (int i = 0; i < l->n; i++) {
        int64_t k = md_tensor_numel(l->t[i]);
        if (l->t[i]->grad) memcpy(g + off, md_f32(l->t[i]->grad), sizeof *g * (size_t)k);
        else for (int64_t j = 0; j < k; j++) g[off + j] = -0.0f;   /* marks "no gradient" */
        md_tensor_zero_grad(l->t[i]);
        off += k;
    }
    *total = n;
    return g;
}

static void assert_same_grads(const float *a, const float *b, int64_t n, const plist *l, const char *what) {
    if (!memcmp(a, b, sizeof *a * (size_t)n)) return;
    int64_t off = 0;
    for (int i = 0; i < l->n; i++) {
        int64_t k = md_tensor_numel(l->t[i]);
        for (int64_t j = 0; j < k; j++)
            if (memcmp(&a[off + j], &b[off + j], sizeof *a))
                cr_assert_fail("%s: gradient of %s[%lld]: %.9g with release, %.9g without", what, l->names[i],
                               (long long)j, a[off + j], b[off + j]);
        off += k;
    }
}

static md_module *build(const char *registry, const char *cfg_text, const char *key) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(cfg_text, key, &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_ctx_seed(ctx, 3);
    md_module *m = md_build_from_cfg(ctx, registry, md_cfg_get(root, key), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(m, "%s", err.msg);
    return m;
}

/* sum over the backbone's outputs of sum(out * out). */
static void resnet_run(md_module *m, md_tensor *img, run_out *o) {
    md_ctx_step_reset(ctx);
    md_tensor *outs[4];
    int n = md_backbone_forward(ctx, m, img, outs, 4);
    cr_assert_gt(n, 0, "%s", md_ctx_error(ctx)->msg);
    md_tensor *loss = NULL;
    for (int i = 0; i < n; i++) {
        md_tensor *s = sum_all(md_mul(ctx, outs[i], outs[i]));
        loss = loss ? md_add(ctx, loss, s) : s;
    }
    cr_assert_not_null(loss, "%s", md_ctx_error(ctx)->msg);
    o->loss[0] = (float)md_tensor_item(loss);
    o->n_loss = 1;
    backward(loss);
    o->peak = md_ctx_arena_peak(ctx);
}

static void resnet_case(const char *cfg_text, const char *what) {
    ctx->arena.pool_min = 4096;   /* the small model's activations go through the pool */
    md_module *m = build("backbones", cfg_text, "backbone");
    md_module_train(m, true);
    md_tensor *img = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(2, 3, 64, 96), NULL);
    md_rng r;
    md_rng_seed(&r, 9);
    md_tensor_normal_(img, &r, 0, 1);
    run_out with, without;
    plist l;
    int64_t n;
    ctx->keep_released = true;
    resnet_run(m, img, &without);
    float *g0 = grads_of(m, &l, &n);
    ctx->keep_released = false;
    resnet_run(m, img, &with);
    float *g1 = grads_of(m, &l, &n);
    cr_assert(memcmp(&with.loss[0], &without.loss[0], sizeof(float)) == 0, "%s: loss %.9g vs %.9g", what,
              with.loss[0], without.loss[0]);
    assert_same_grads(g1, g0, n, &l, what);
    cr_log_info("%s: arena peak %zu bytes with release, %zu without", what, with.peak, without.peak);
    cr_assert_lt(with.peak, without.peak, "%s: peak %zu with release, %zu without", what, with.peak, without.peak);
    free(g0);
    free(g1);
    md_tensor_free(img);
    md_module_free(m);
}

Test(memory, resnet50_frozen_stem_and_layer1) {
    resnet_case("backbone = { type = \"ResNet\"; depth = 50; base_channels = 4; frozen_stages = 1; norm_eval = true; };",
                "ResNet-50 frozen_stages 1, norm_eval");
}

Test(memory, resnet50_all_stages_training_bn) {
    resnet_case("backbone = { type = \"ResNet\"; depth = 50; base_channels = 4; frozen_stages = -1; norm_eval = false; };",
                "ResNet-50 trained BN");
}

/* ---- the tiny detectors of the golden test, with train_cfgs ---- */

static const char *retina_cfg = TINY_RETINA_MODEL TINY_RETINA_TRAIN_CFG TINY_RETINA_TEST_CFG;
static const char *faster_cfg = TINY_FASTER_MODEL TINY_FASTER_TRAIN_CFG TINY_FASTER_TEST_CFG;

static float gt_xyxy[2][3 * 4];
static int64_t gt_labels[2][3];
static void make_batch(md_st *st, md_batch *b, md_img_meta *metas, md_boxes *gts) {
    tiny_detector_batch(ctx, st, b, metas);
    memset(gts, 0, 2 * sizeof *gts);
    static const float frac[3][4] = { { 0.10f, 0.15f, 0.45f, 0.60f }, { 0.40f, 0.30f, 0.90f, 0.85f },
                                      { 0.05f, 0.55f, 0.35f, 0.95f } };
    for (int i = 0; i < 2; i++) {
        int n = i == 0 ? 3 : 2;
        for (int k = 0; k < n; k++) {
            for (int q = 0; q < 4; q++)
                gt_xyxy[i][4 * k + q] = floorf(frac[(k + i) % 3][q] * (float)metas[i].img_shape[q % 2 == 0 ? 1 : 0]);
            gt_labels[i][k] = (k + 2 * i) % 3;
        }
        gts[i].n = gts[i].cap = n;
        gts[i].xyxy = gt_xyxy[i];
        gts[i].labels = gt_labels[i];
    }
    b->gt_bboxes = gts;
}

static void detector_run(md_module *m, md_batch *b, run_out *o) {
    md_error err = { 0 };
    md_ctx_step_reset(ctx);
    md_ctx_seed(ctx, 5);   /* the same random sampling */
    md_losses l = { 0 };
    const md_model_iface *it = m->cls->iface;
    cr_assert_eq(it->train_step(ctx, m, b, &l, &err), 0, "%s", err.msg);
    md_tensor *total = md_losses_total(ctx, &l);
    cr_assert_not_null(total, "%s", md_ctx_error(ctx)->msg);
    o->n_loss = l.n < 8 ? l.n : 8;
    for (int i = 0; i < o->n_loss; i++) o->loss[i] = (float)md_tensor_item(l.values[i]);
    backward(total);
    o->peak = md_ctx_arena_peak(ctx);
}

static void detector_case(const char *cfg_text, const char *name) {
    ctx->arena.pool_min = 4096;
    md_module *m = build("detectors", cfg_text, "model");
    char path[128];
    snprintf(path, sizeof path, "tests/fixtures/detector_%s_weights.safetensors", name);
    md_ckpt_info info;
    md_error err = { 0 };
    cr_assert_eq(md_checkpoint_load(ctx, path, m, NULL, &info, &err), 0, "%s", err.msg);
    md_module_train(m, true);
    md_st *st = golden_open("detector_batch");
    md_batch b;
    md_img_meta metas[2];
    md_boxes gts[2];
    make_batch(st, &b, metas, gts);
    md_grad_set_enabled(ctx, true);
    run_out with, without;
    plist l;
    int64_t n;
    ctx->keep_released = true;
    detector_run(m, &b, &without);
    float *g0 = grads_of(m, &l, &n);
    ctx->keep_released = false;
    detector_run(m, &b, &with);
    float *g1 = grads_of(m, &l, &n);
    cr_assert_eq(with.n_loss, without.n_loss);
    cr_assert_geq(with.n_loss, 2);
    for (int i = 0; i < with.n_loss; i++)
        cr_assert(memcmp(&with.loss[i], &without.loss[i], sizeof(float)) == 0, "%s loss %d: %.9g vs %.9g", name, i,
                  with.loss[i], without.loss[i]);
    assert_same_grads(g1, g0, n, &l, name);
    cr_log_info("%s: arena peak %zu bytes with release, %zu without", name, with.peak, without.peak);
    cr_assert_lt(with.peak, without.peak, "%s: peak %zu with release, %zu without", name, with.peak, without.peak);
    free(g0);
    free(g1);
    md_tensor_free(b.img);
    md_st_close(st);
    md_module_free(m);
}

Test(memory, tiny_retinanet_same_with_release) { detector_case(retina_cfg, "retina"); }
Test(memory, tiny_faster_rcnn_same_with_release) { detector_case(faster_cfg, "faster"); }
