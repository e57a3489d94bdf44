/* mmdet's EMA hooks: ExpMomentumEMAHook and LinearMomentumEMAHook.
 *
 * Every f32 tensor of the model's state dict (only the parameters with
 * skip_buffers) gets a shadow copy, registered on the model as the buffer
 * "ema_<name, dots as underscores>" so checkpoints carry it. Every
 * `interval` iterations: ema = (1 - m) * ema + m * value, with mmdet's
 * momentum schedule. Around each epoch the two are swapped, so evaluation
 * and the epoch's checkpoint see the averaged weights (BaseEMAHook). After
 * a resume the averages continue from the checkpoint's ema_ buffers.
 *
 * The shadows live on the model's device; the update and the swap are
 * md_tensor_lerp_ and md_tensor_swap_ (one kernel per tensor on a GPU). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>

typedef struct pair { char *name; md_tensor *value, *ema; } pair;

typedef struct ema_hook {
    md_hook base;
    double momentum;
    int64_t interval, total_iter, warm_up;
    bool skip_buffers, linear;
    pair *pairs;
    int n, cap;
} ema_hook;

static const md_key keys[] = {
    { "momentum", MD_KEY_FLOAT, "0.0002", "in (0, 1)", false, MD_AT(ema_hook, momentum) },
    { "interval", MD_KEY_INT, "1", NULL, false, MD_AT(ema_hook, interval), .min = "1" },
    { "skip_buffers", MD_KEY_BOOL, "false", NULL, false, MD_AT(ema_hook, skip_buffers) },
    { "total_iter", MD_KEY_INT, "2000", "ExpMomentumEMAHook", false, MD_AT(ema_hook, total_iter), .min = "1" },
    { "warm_up", MD_KEY_INT, "100", "LinearMomentumEMAHook", false, MD_AT(ema_hook, warm_up), .min = "0" },
    { 0 } };

static int collect(const char *name, md_tensor *t, bool is_param, void *user) {
    ema_hook *h = user;
    if (t->dtype != MD_F32 || (h->skip_buffers && !is_param) || !strncmp(name, "ema_", 4)) return 0;
    if (h->n == h->cap) {
        int cap = h->cap ? h->cap * 2 : 64;
        pair *p = realloc(h->pairs, sizeof *p * (size_t)cap);
        if (!p) return -1;
        h->pairs = p;
        h->cap = cap;
    }
    char *n = strdup(name);
    if (!n) return -1;
    h->pairs[h->n++] = (pair){ n, t, NULL };
    return 0;
}

/* The op error of ctx as the hook's error, naming the tensor. */
static int op_failed(md_ctx *ctx, const char *what, const char *name, md_error *err) {
    const md_error *e = md_ctx_error(ctx);
    int rc = md_fail(err, "%s %s: %s", what, name, e->msg[0] ? e->msg : "failed");
    md_ctx_clear_error(ctx);
    return rc;
}

/* e = the checkpoint's entry k (host memory) when it matches v's size,
 * else a copy of v; on the model's device either way. */
static int init_shadow(md_ctx *ctx, md_tensor *e, const md_tensor *v, const md_st *st, int k, const char *name,
                       md_error *err) {
    if (k < 0 || md_st_dtype(st, k) != MD_F32) {
        if (md_tensor_copy_(ctx, e, v) != 0) return op_failed(ctx, "EMA: initialising", name, err);
        return 0;
    }
    int64_t shape[MD_MAX_DIMS];
    int nd = md_st_shape(st, k, shape);
    int64_t numel = 1;
    for (int d = 0; d < nd; d++) numel *= shape[d];
    if (numel != md_tensor_numel(v))
        return md_failc(err, MD_ERR_SHAPE, "EMA: checkpoint entry %s has %lld elements, the model's has %lld", name,
                        (long long)numel, (long long)md_tensor_numel(v));
    /* the checkpoint's values (host memory, maybe unaligned) seen in the model's shape */
    md_tensor src = { .dtype = MD_F32, .device = MD_CPU, .ndim = v->ndim, .data = (void *)md_st_data(st, k) };
    int64_t stride = 1;
    for (int d = v->ndim - 1; d >= 0; d--) {
        src.shape[d] = v->shape[d];
        src.stride[d] = stride;
        stride *= v->shape[d];
    }
    if (md_tensor_copy_(ctx, e, &src) != 0) return op_failed(ctx, "EMA: loading", name, err);
    return 0;
}

static int before_run(md_hook *hk, md_runner *r, md_error *err) {
    ema_hook *h = (ema_hook *)hk;
    md_ctx *ctx = md_runner_ctx(r);
    md_module *model = md_runner_model(r);
    if (md_module_visit(model, "", collect, h) != 0) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    const char *resumed = md_runner_last_checkpoint(r);
    md_st *st = resumed ? md_st_open(resumed, err) : NULL;
    if (resumed && !st) return -1;
    char name[1100];
    int rc = 0;
    for (int i = 0; i < h->n && rc == 0; i++) {
        md_tensor *v = h->pairs[i].value;
        snprintf(name, sizeof name, "ema_%s", h->pairs[i].name);
        for (char *c = name; *c; c++)
            if (*c == '.') *c = '_';
        md_tensor *e = md_module_find(model, name);
        if (!e) e = md_module_add_buffer(ctx, model, name, MD_F32, v->ndim, v->shape, err);
        if (!e) {
            rc = -1;
            break;
        }
        /* the shadow lives where its value does */
        if (e->device != v->device || e->device_index != v->device_index) {
            md_device d = { .type = v->device, .index = v->device_index };
            if (md_tensor_move_(ctx, e, d, err) != 0) {
                rc = -1;
                break;
            }
        }
        rc = init_shadow(ctx, e, v, st, st ? md_st_find(st, name) : -1, name, err);
        h->pairs[i].ema = e;
    }
    if (st) md_st_close(st);
    return rc;
}

/* mmdet's momentum_fun of the two hooks. */
static double momentum_at(const ema_hook *h, int64_t iter) {
    double x = (double)iter;
    if (h->linear) return fmin(pow(h->momentum, (double)h->interval), (1 + x) / ((double)h->warm_up + x));
    return (1 - h->momentum) * exp(-(1 + x) / (double)h->total_iter) + h->momentum;
}

static int after_train_iter(md_hook *hk, md_runner *r, md_error *err) {
    ema_hook *h = (ema_hook *)hk;
    if ((md_runner_iter(r) + 1) % h->interval != 0) return 0;
    md_ctx *ctx = md_runner_ctx(r);
    /* ema = (1 - m) * ema + m * value, m rounded to float once per step */
    double m = (float)momentum_at(h, md_runner_iter(r));
    for (int i = 0; i < h->n; i++)
        if (md_tensor_lerp_(ctx, h->pairs[i].ema, h->pairs[i].value, m) != 0)
            return op_failed(ctx, "EMA: updating the average of", h->pairs[i].name, err);
    return 0;
}

static int swap_hook(md_hook *hk, md_runner *r, md_error *err) {
    ema_hook *h = (ema_hook *)hk;
    md_ctx *ctx = md_runner_ctx(r);
    for (int i = 0; i < h->n; i++)
        if (md_tensor_swap_(ctx, h->pairs[i].ema, h->pairs[i].value) != 0)
            return op_failed(ctx, "EMA: swapping", h->pairs[i].name, err);
    return 0;
}

static void destroy(md_hook *hk) {
    ema_hook *h = (ema_hook *)hk;
    for (int i = 0; i < h->n; i++) free(h->pairs[i].name);
    free(h->pairs);
    free(h);
}

static const md_hook_iface iface = {
    .before_run = before_run, .after_train_iter = after_train_iter,
    .before_train_epoch = swap_hook, .after_train_epoch = swap_hook,
    .destroy = destroy, .default_priority = MD_PRIORITY_NORMAL,
};

static void *build_common(const md_cfg *cfg, bool linear, md_error *err) {
    ema_hook *h = calloc(1, sizeof *h);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    h->base.iface = &iface;
    h->linear = linear;
    if (md_cfg_read_struct(cfg, keys, h, linear ? "LinearMomentumEMAHook" : "ExpMomentumEMAHook", err)) {
        free(h);
        return NULL;
    }
    /* an open interval: the schema's bounds are inclusive */
    if (!(h->momentum > 0 && h->momentum < 1)) {
        md_failc(err, MD_ERR_CONFIG, "momentum must be in (0, 1), got %g", h->momentum);
        free(h);
        return NULL;
    }
    return h;
}

static void *build_exp(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    return build_common(cfg, false, err);
}

static void *build_linear(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    return build_common(cfg, true, err);
}

MD_PLUGIN("ema", "1.0", "Apache-2.0");
static const md_class exp_cls = { .name = "ExpMomentumEMAHook", .keys = keys, .build = build_exp, MD_IFACE(&iface, MD_IFACE_HOOK),
                                  .doc = "exponential moving average of the weights (YOLOX schedule)" };
MD_REGISTER("hooks", exp_cls)
static const md_class lin_cls = { .name = "LinearMomentumEMAHook", .keys = keys, .build = build_linear,
                                  MD_IFACE(&iface, MD_IFACE_HOOK), .doc = "moving average of the weights, linear warm-up" };
MD_REGISTER("hooks", lin_cls)
