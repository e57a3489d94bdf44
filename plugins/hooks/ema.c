/* mmdet's EMA hooks: ExpMomentumEMAHook and LinearMomentumEMAHook.
 *
 * Every f32 tensor of the model's state dict (only the parameters with
 * skip_buffers) gets a shadow copy, registered on the model as the buffer
 * "ema_<name, dots as underscores>" so checkpoints carry it. Every
 * `interval` iterations: ema = (1 - m) * ema + m * value, with mmdet's
 * momentum schedule. Around each epoch the two are swapped, so evaluation
 * and the epoch's checkpoint see the averaged weights (BaseEMAHook). After
 * a resume the averages continue from the checkpoint's ema_ buffers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>

static const md_key keys[] = {
    { "momentum", MD_KEY_FLOAT, "0.0002", NULL, false },
    { "interval", MD_KEY_INT, "1", NULL, false },
    { "skip_buffers", MD_KEY_BOOL, "false", NULL, false },
    { "total_iter", MD_KEY_INT, "2000", "ExpMomentumEMAHook", false },
    { "warm_up", MD_KEY_INT, "100", "LinearMomentumEMAHook", false },
    { 0 } };

typedef struct pair { char *name; md_tensor *value, *ema; } pair;

typedef struct ema_hook {
    md_hook base;
    double momentum;
    int64_t interval, total_iter, warm_up;
    bool skip_buffers, linear;
    pair *pairs;
    int n, cap;
} ema_hook;

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

static int before_run(md_hook *hk, md_runner *r, md_error *err) {
    ema_hook *h = (ema_hook *)hk;
    md_ctx *ctx = md_runner_ctx(r);
    md_module *model = md_runner_model(r);
    /* the averages are kept and swapped with host loops */
    if (md_module_device(model).type != MD_CPU)
        return md_failc(err, MD_ERR_CONFIG, "EMA hooks keep their averages on the host: not supported with the model "
                        "on a CUDA device (device = \"cpu\")");
    if (md_module_visit(model, "", collect, h) != 0) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    const char *resumed = md_runner_last_checkpoint(r);
    md_st *st = resumed ? md_st_open(resumed, err) : NULL;
    if (resumed && !st) return -1;
    char name[1100];
    for (int i = 0; i < h->n; i++) {
        md_tensor *v = h->pairs[i].value;
        snprintf(name, sizeof name, "ema_%s", h->pairs[i].name);
        for (char *c = name; *c; c++)
            if (*c == '.') *c = '_';
        md_tensor *e = md_module_find(model, name);
        if (!e) e = md_module_add_buffer(ctx, model, name, MD_F32, v->ndim, v->shape, err);
        if (!e) {
            if (st) md_st_close(st);
            return -1;
        }
        int k = st ? md_st_find(st, name) : -1;
        if (k >= 0 && md_st_dtype(st, k) == MD_F32) {
            memcpy(e->data, md_st_data(st, k), sizeof(float) * (size_t)md_tensor_numel(v));
        } else {
            memcpy(e->data, v->data, sizeof(float) * (size_t)md_tensor_numel(v));
        }
        h->pairs[i].ema = e;
    }
    if (st) md_st_close(st);
    return 0;
}

/* mmdet's momentum_fun of the two hooks. */
static double momentum_at(const ema_hook *h, int64_t iter) {
    double x = (double)iter;
    if (h->linear) return fmin(pow(h->momentum, (double)h->interval), (1 + x) / ((double)h->warm_up + x));
    return (1 - h->momentum) * exp(-(1 + x) / (double)h->total_iter) + h->momentum;
}

static int after_train_iter(md_hook *hk, md_runner *r, md_error *err) {
    (void)err;
    ema_hook *h = (ema_hook *)hk;
    if ((md_runner_iter(r) + 1) % h->interval != 0) return 0;
    float m = (float)momentum_at(h, md_runner_iter(r));
    for (int i = 0; i < h->n; i++) {
        float *e = md_f32(h->pairs[i].ema);
        const float *v = md_f32(h->pairs[i].value);
        int64_t n = md_tensor_numel(h->pairs[i].value);
        for (int64_t k = 0; k < n; k++) e[k] = (1 - m) * e[k] + m * v[k];
    }
    return 0;
}

static void swap(ema_hook *h) {
    for (int i = 0; i < h->n; i++) {
        float *e = md_f32(h->pairs[i].ema), *v = md_f32(h->pairs[i].value);
        int64_t n = md_tensor_numel(h->pairs[i].value);
        for (int64_t k = 0; k < n; k++) {
            float t = e[k];
            e[k] = v[k];
            v[k] = t;
        }
    }
}

static int swap_hook(md_hook *hk, md_runner *r, md_error *err) {
    (void)r;
    (void)err;
    swap((ema_hook *)hk);
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
    h->momentum = md_cfg_float(cfg, "momentum", 0.0002);
    h->interval = md_cfg_int(cfg, "interval", 1);
    h->skip_buffers = md_cfg_bool(cfg, "skip_buffers", false);
    h->total_iter = md_cfg_int(cfg, "total_iter", 2000);
    h->warm_up = md_cfg_int(cfg, "warm_up", 100);
    if (!(h->momentum > 0 && h->momentum < 1) || h->interval < 1 || h->total_iter < 1 || h->warm_up < 0) {
        free(h);
        md_failc(err, MD_ERR_CONFIG, "momentum must be in (0, 1); interval, total_iter positive");
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
static const md_class exp_cls = { .name = "ExpMomentumEMAHook", .keys = keys, .build = build_exp, .iface = &iface,
                                  .doc = "exponential moving average of the weights (YOLOX schedule)" };
MD_REGISTER("hooks", exp_cls)
static const md_class lin_cls = { .name = "LinearMomentumEMAHook", .keys = keys, .build = build_linear,
                                  .iface = &iface, .doc = "moving average of the weights, linear warm-up" };
MD_REGISTER("hooks", lin_cls)
