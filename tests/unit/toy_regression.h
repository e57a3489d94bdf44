/* A toy regression for the runner tests: targets y = 2a - 3b + 0.5 of
 * inputs (a, b) ~ N(0, 1) in batches of 16, each seeded by (epoch, batch),
 * and a model of one Linear(2, 1) layer ("fc") trained on the mean squared
 * error, on whatever device the model is. */
#ifndef MMDET_TEST_TOY_REGRESSION_H
#define MMDET_TEST_TOY_REGRESSION_H

#include <mmdet/mmdet.h>

typedef struct toy_batch { md_tensor *x, *y; } toy_batch;
typedef struct toy_src {
    md_ctx *ctx;
    int64_t batches;   /* per epoch */
    int64_t nan_at;    /* the global batch (epoch * batches + i) whose first target is NaN; -1: none */
    int64_t epoch, i;
    toy_batch b;
    float xs[16 * 2], ys[16];
} toy_src;

/* A source of `batches` batches per epoch, batch tensors made in ctx. */
toy_src toy_src_make(md_ctx *ctx, int64_t batches, int64_t nan_at);
/* The runner's view of s (s must outlive it). */
md_batch_source toy_source(toy_src *s);
/* The next batch of the epoch (NULL after the last). */
void *toy_src_next(void *self, md_error *err);

/* The model's train step: the batch moved to the model's device, then the loss "loss_mse". */
int toy_train_step(md_ctx *c, md_module *m, void *batch, md_losses *losses, md_error *err);
/* A ToyRegressor on the CPU, its weights drawn after md_ctx_seed(ctx, seed);
 * NULL with err set on failure. */
md_module *toy_regressor(md_ctx *ctx, uint64_t seed, md_error *err);

#endif
