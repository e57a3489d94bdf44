/* The toy regression of toy_regression.h. */
#include <math.h>
#include "toy_regression.h"

static int64_t src_len(void *s) { return ((toy_src *)s)->batches; }
static int64_t src_bs(void *s) {
    (void)s;
    return 16;
}
static int src_begin(void *s, int64_t epoch, md_error *err) {
    (void)err;
    ((toy_src *)s)->epoch = epoch;
    ((toy_src *)s)->i = 0;
    return 0;
}

toy_src toy_src_make(md_ctx *ctx, int64_t batches, int64_t nan_at) {
    return (toy_src){ .ctx = ctx, .batches = batches, .nan_at = nan_at };
}

md_batch_source toy_source(toy_src *s) {
    return (md_batch_source){ .self = s, .len = src_len, .begin_epoch = src_begin, .next = toy_src_next,
                              .batch_size = src_bs };
}

void *toy_src_next(void *self, md_error *err) {
    (void)err;
    toy_src *s = self;
    if (s->i == s->batches) return NULL;
    md_rng r;
    md_rng_seed(&r, (uint64_t)(s->epoch * 100 + s->i));
    for (int k = 0; k < 16; k++) {
        float a = (float)md_rng_normal(&r), b = (float)md_rng_normal(&r);
        s->xs[2 * k] = a;
        s->xs[2 * k + 1] = b;
        s->ys[k] = 2 * a - 3 * b + 0.5f;
    }
    if (s->epoch * s->batches + s->i == s->nan_at) s->ys[0] = NAN;
    s->i++;
    s->b.x = md_tensor_from(s->ctx, MD_F32, MD_DIMS(16, 2), s->xs);
    s->b.y = md_tensor_from(s->ctx, MD_F32, MD_DIMS(16, 1), s->ys);
    return &s->b;
}

int toy_train_step(md_ctx *c, md_module *m, void *batch, md_losses *losses, md_error *err) {
    toy_batch *b = batch;
    md_module *fc = md_module_child(m, "fc");
    md_device dev = md_module_device(m);
    md_tensor *x = md_tensor_to(c, b->x, dev), *y = md_tensor_to(c, b->y, dev);
    md_tensor *pred = md_linear(c, x, md_nn_weight(fc), md_nn_bias(fc));
    md_tensor *d = md_sub(c, pred, y);
    md_tensor *loss = md_mean(c, md_mul(c, d, d), MD_DIM_ALL, false);
    if (!loss) return md_fail(err, "%s", md_ctx_error(c)->msg);
    return md_losses_add(losses, "loss_mse", loss, err);
}

static const md_model_iface toy_iface = { .train_step = toy_train_step };
static const md_module_class toy_class = { .name = "ToyRegressor", .iface = &toy_iface };

md_module *toy_regressor(md_ctx *ctx, uint64_t seed, md_error *err) {
    md_module *m = md_module_new(sizeof(md_module), &toy_class);
    if (!m) {
        md_fail(err, "toy_regressor: out of memory");
        return NULL;
    }
    md_ctx_seed(ctx, seed);
    md_module *fc = md_nn_linear(ctx, 2, 1, true, err);
    if (!fc || md_module_add_child(m, "fc", fc, err) != 0) {
        md_module_free(m);
        return NULL;
    }
    return m;
}
