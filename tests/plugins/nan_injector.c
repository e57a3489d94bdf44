/* InjectNaNHook (tests): at the given iterations (1-based) the first value
 * of parameter `param` is NaN from before the forward until after the
 * optimizer hook, then restored: a forced gradient overflow for the loss
 * scaling tests. Use it on a parameter no norm statistics depend on. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>

typedef struct inject_hook {
    md_hook base;
    const char *param_cfg;
    char param[256];
    int64_t iters[16];
    int n_iters;
    md_tensor *t;
    float saved;
    bool active;
} inject_hook;

static const md_key keys[] = {
    { "param", MD_KEY_STRING, NULL, "the parameter's state_dict name", true, MD_AT(inject_hook, param_cfg) },
    { "iters", MD_KEY_LIST, NULL, "iterations (1-based) to poison", true, .field = MD_FIELD_NONE },
    { 0 } };

typedef struct find { const char *name; md_tensor *t; } find;
static int find_cb(const char *name, md_tensor *t, bool is_param, void *user) {
    find *f = user;
    if (is_param && !strcmp(name, f->name)) f->t = t;
    return 0;
}

static int before_train_iter(md_hook *hk, md_runner *r, md_error *err) {
    inject_hook *h = (inject_hook *)hk;
    int64_t it = md_runner_iter(r) + 1;
    for (int i = 0; i < h->n_iters; i++)
        if (h->iters[i] == it) {
            find f = { h->param, NULL };
            md_module_visit(md_runner_model(r), "", find_cb, &f);
            if (!f.t) return md_fail(err, "InjectNaNHook: no parameter %s", h->param);
            h->t = f.t;
            h->saved = md_f32(f.t)[0];
            md_f32(f.t)[0] = NAN;
            h->active = true;
            md_info(md_runner_ctx(r), "InjectNaNHook: %s[0] is NaN for iteration %lld", h->param, (long long)it);
        }
    return 0;
}

static int after_train_iter(md_hook *hk, md_runner *r, md_error *err) {
    (void)r, (void)err;
    inject_hook *h = (inject_hook *)hk;
    if (h->active) md_f32(h->t)[0] = h->saved;
    h->active = false;
    return 0;
}

/* after the optimizer hook (ABOVE_NORMAL) */
static const md_hook_iface iface = { .before_train_iter = before_train_iter, .after_train_iter = after_train_iter,
                                     .default_priority = MD_PRIORITY_LOWEST };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    inject_hook *h = calloc(1, sizeof *h);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    h->base.iface = &iface;
    if (md_cfg_read_struct(cfg, keys, h, "InjectNaNHook", err) ||
        (h->n_iters = md_cfg_int_array(cfg, "iters", h->iters, 16, err)) < 0) {
        free(h);
        return NULL;
    }
    snprintf(h->param, sizeof h->param, "%s", h->param_cfg);
    return h;
}

MD_PLUGIN("nan_injector", "1.0", "Apache-2.0");
static const md_class cls = { .name = "InjectNaNHook", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_HOOK),
                              .doc = "tests: a NaN in a parameter for some iterations" };
MD_REGISTER("hooks", cls)
