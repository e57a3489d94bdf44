/* Optimizers: SGD, Adam, AdamW (PyTorch 1.13 update rules) with mmcv's
 * DefaultOptimizerConstructor paramwise_cfg; gradient-norm clipping. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

typedef enum { OPT_SGD, OPT_ADAM, OPT_ADAMW } opt_kind;

typedef struct group {
    char *name;
    md_tensor *p;
    double initial_lr, lr, wd;
    md_tensor *buf, *exp_avg, *exp_avg_sq;   /* state, created lazily */
} group;

struct md_optimizer {
    md_ctx *ctx;
    opt_kind kind;
    double base_lr, base_wd, momentum, dampening, beta2, eps;
    bool nesterov;
    int64_t step;
    group *g;
    int n, cap;
    /* per-step lists for the multi-tensor device entries (o->n long) */
    md__mt_param *mt;
    float **zp;
    int64_t *zn;
};

static const char *kind_name(opt_kind k) { return k == OPT_SGD ? "SGD" : k == OPT_ADAM ? "Adam" : "AdamW"; }

/* paramwise_cfg multipliers as mmcv applies them. */
typedef struct paramwise {
    const md_cfg *custom_keys;
    double bias_lr_mult, bias_decay_mult, norm_decay_mult, dwconv_decay_mult;
} paramwise;

static int add_group(md_optimizer *o, const char *full, const char *leaf, md_tensor *p, const md_module *owner,
                     const paramwise *pw, md_error *err) {
    if (o->n == o->cap) {
        int cap = o->cap ? o->cap * 2 : 64;
        group *g = realloc(o->g, sizeof *g * (size_t)cap);
        if (!g) return md_failc(err, MD_ERR_NOMEM, "out of memory building the optimizer");
        o->g = g;
        o->cap = cap;
    }
    double lr = o->base_lr, wd = o->base_wd;
    bool custom = false;
    if (pw->custom_keys) {
        /* the longest key contained in the name wins (ties: alphabetical) */
        const md_cfg *best = NULL;
        size_t best_len = 0;
        for (int i = 0; i < md_cfg_len(pw->custom_keys); i++) {
            const md_cfg *k = md_cfg_at(pw->custom_keys, i);
            const char *key = md_cfg_name(k);
            size_t kl = strlen(key);
            if (!strstr(full, key)) continue;
            if (!best || kl > best_len || (kl == best_len && strcmp(key, md_cfg_name(best)) < 0)) {
                best = k;
                best_len = kl;
            }
        }
        if (best) {
            custom = true;
            lr *= md_cfg_float(best, "lr_mult", 1.0);
            wd *= md_cfg_float(best, "decay_mult", 1.0);
        }
    }
    if (!custom) {
        bool is_norm = owner->flags & MD_MODULE_NORM, is_dw = owner->flags & MD_MODULE_DWCONV;
        bool is_bias = !strcmp(leaf, "bias");
        if (is_bias && !is_norm) lr *= pw->bias_lr_mult;
        if (is_norm) wd *= pw->norm_decay_mult;
        else if (is_dw) wd *= pw->dwconv_decay_mult;
        else if (is_bias) wd *= pw->bias_decay_mult;
    }
    group *g = &o->g[o->n];
    memset(g, 0, sizeof *g);
    g->name = strdup(full);
    if (!g->name) return md_failc(err, MD_ERR_NOMEM, "out of memory building the optimizer");
    g->p = p;
    g->initial_lr = g->lr = lr;
    g->wd = wd;
    o->n++;
    return 0;
}

static int collect(md_optimizer *o, const md_module *m, char *name, size_t len, size_t cap, const paramwise *pw,
                   md_error *err) {
    for (int i = 0; i < m->n_params; i++) {
        snprintf(name + len, cap - len, "%s%s", len ? "." : "", m->params[i].name);
        if (add_group(o, name, m->params[i].name, m->params[i].t, m, pw, err) != 0) return -1;
    }
    for (int i = 0; i < m->n_children; i++) {
        size_t k = len + (size_t)snprintf(name + len, cap - len, "%s%s", len ? "." : "", m->children[i].name);
        if (k >= cap) k = cap - 1;
        if (collect(o, m->children[i].m, name, k, cap, pw, err) != 0) return -1;
    }
    name[len] = 0;
    return 0;
}

MD_API md_optimizer *md_optimizer_build(md_ctx *ctx, md_module *model, const md_cfg *cfg, md_error *err) {
    const char *type = md_cfg_str(cfg, "type", NULL);
    md_optimizer *o = calloc(1, sizeof *o);
    if (!o) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    o->ctx = ctx;
    if (!type) {
        md_failc(err, MD_ERR_CONFIG, "optimizer: `type` is required (SGD, Adam or AdamW)");
        goto fail;
    }
    if (!strcmp(type, "SGD")) o->kind = OPT_SGD;
    else if (!strcmp(type, "Adam")) o->kind = OPT_ADAM;
    else if (!strcmp(type, "AdamW")) o->kind = OPT_ADAMW;
    else {
        const char *known[] = { "SGD", "Adam", "AdamW" };
        const char *s = md_suggest(type, known, 3);
        md_failc(err, MD_ERR_REGISTRY, "optimizer type '%s' is unknown (SGD, Adam, AdamW)%s%s%s", type,
                 s ? "; did you mean '" : "", s ? s : "", s ? "'?" : "");
        goto fail;
    }
    static const md_key sgd_keys[] = {
        { "lr", MD_KEY_FLOAT, NULL, "learning rate", true }, { "momentum", MD_KEY_FLOAT, "0", NULL, false },
        { "dampening", MD_KEY_FLOAT, "0", NULL, false }, { "weight_decay", MD_KEY_FLOAT, "0", NULL, false },
        { "nesterov", MD_KEY_BOOL, "false", NULL, false }, { "paramwise_cfg", MD_KEY_GROUP, NULL, NULL, false },
        { "grad_clip", MD_KEY_ANY, NULL, NULL, false }, { 0 } };
    static const md_key adam_keys[] = {
        { "lr", MD_KEY_FLOAT, NULL, "learning rate", true }, { "betas", MD_KEY_LIST, NULL, NULL, false },
        { "eps", MD_KEY_FLOAT, "1e-8", NULL, false }, { "weight_decay", MD_KEY_FLOAT, "0", NULL, false },
        { "amsgrad", MD_KEY_BOOL, "false", NULL, false }, { "paramwise_cfg", MD_KEY_GROUP, NULL, NULL, false },
        { "grad_clip", MD_KEY_ANY, NULL, NULL, false }, { 0 } };
    if (md_cfg_check_keys(cfg, o->kind == OPT_SGD ? sgd_keys : adam_keys, "optimizer", err) != 0) goto fail;
    o->base_lr = md_cfg_float(cfg, "lr", 0.01);
    o->base_wd = md_cfg_float(cfg, "weight_decay", o->kind == OPT_ADAMW ? 0.01 : 0.0);
    if (o->kind == OPT_SGD) {
        o->momentum = md_cfg_float(cfg, "momentum", 0.0);
        o->dampening = md_cfg_float(cfg, "dampening", 0.0);
        o->nesterov = md_cfg_bool(cfg, "nesterov", false);
        if (o->nesterov && (o->momentum <= 0 || o->dampening != 0)) {
            md_failc(err, MD_ERR_CONFIG, "optimizer: nesterov needs momentum > 0 and dampening 0");
            goto fail;
        }
    } else {
        double betas[2] = { 0.9, 0.999 };
        if (md_cfg_has(cfg, "betas") && md_cfg_float_array(cfg, "betas", betas, 2, err) != 2) {
            md_failc(err, MD_ERR_CONFIG, "optimizer: betas must be two numbers");
            goto fail;
        }
        o->momentum = betas[0];
        o->beta2 = betas[1];
        o->eps = md_cfg_float(cfg, "eps", 1e-8);
        if (md_cfg_bool(cfg, "amsgrad", false)) {
            md_failc(err, MD_ERR_CONFIG, "optimizer: amsgrad is not supported");
            goto fail;
        }
    }
    paramwise pw = { NULL, 1.0, 1.0, 1.0, 1.0 };
    const md_cfg *pc = md_cfg_get(cfg, "paramwise_cfg");
    if (pc) {
        static const md_key pw_keys[] = {
            { "custom_keys", MD_KEY_GROUP, NULL, NULL, false }, { "bias_lr_mult", MD_KEY_FLOAT, NULL, NULL, false },
            { "bias_decay_mult", MD_KEY_FLOAT, NULL, NULL, false },
            { "norm_decay_mult", MD_KEY_FLOAT, NULL, NULL, false },
            { "dwconv_decay_mult", MD_KEY_FLOAT, NULL, NULL, false },
            { "bypass_duplicate", MD_KEY_BOOL, NULL, NULL, false }, { 0 } };
        if (md_cfg_check_keys(pc, pw_keys, "optimizer.paramwise_cfg", err) != 0) goto fail;
        pw.custom_keys = md_cfg_get(pc, "custom_keys");
        pw.bias_lr_mult = md_cfg_float(pc, "bias_lr_mult", 1.0);
        pw.bias_decay_mult = md_cfg_float(pc, "bias_decay_mult", 1.0);
        pw.norm_decay_mult = md_cfg_float(pc, "norm_decay_mult", 1.0);
        pw.dwconv_decay_mult = md_cfg_float(pc, "dwconv_decay_mult", 1.0);
    }
    char name[1024] = "";
    if (collect(o, model, name, 0, sizeof name, &pw, err) != 0) goto fail;
    return o;
fail:
    md_optimizer_free(o);
    return NULL;
}

MD_API void md_optimizer_free(md_optimizer *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) {
        free(o->g[i].name);
        md_tensor_free(o->g[i].buf);
        md_tensor_free(o->g[i].exp_avg);
        md_tensor_free(o->g[i].exp_avg_sq);
    }
    free(o->g);
    free(o->mt);
    free(o->zp);
    free(o->zn);
    free(o);
}

static md_tensor *state_like(md_optimizer *o, md_tensor *p, md_error *err) {
    return md_tensor_new_persistent_on(o->ctx, md_tensor_device(p), MD_F32, p->ndim, p->shape, err);
}

/* A device parameter's state, made on first use; *first when the SGD
 * buffer was just made (the update then starts it at d). */
static int device_state(md_optimizer *o, group *g, bool *first, md_error *err) {
    *first = false;
    if (o->kind == OPT_SGD) {
        if (o->momentum != 0 && !g->buf) {
            if (!(g->buf = state_like(o, g->p, err))) return -1;
            *first = true;
        }
        return 0;
    }
    if (!g->exp_avg && (!(g->exp_avg = state_like(o, g->p, err)) || !(g->exp_avg_sq = state_like(o, g->p, err))))
        return -1;
    return 0;
}

/* Adam's bias corrections of this step: step_size = lr / (1 - b1^t), sbc2 = sqrt(1 - b2^t). */
static void adam_corrections(const md_optimizer *o, double lr, float *step_size, float *sbc2) {
    double bc1 = 1 - pow(o->momentum, (double)o->step), bc2 = 1 - pow(o->beta2, (double)o->step);
    *step_size = (float)(lr / bc1);
    *sbc2 = (float)sqrt(bc2);
}

/* One parameter's update on its device (backends/backend.h: sgd_step, adam_step). */
static int step_device(md_optimizer *o, group *g, md_error *err) {
    md_tensor *p = g->p;
    const md_backend *be = md__backend_table(p->device);
    int64_t n = md_tensor_numel(p);
    float lr = (float)g->lr, wd = (float)g->wd;
    if (!be || !be->sgd_step || !be->adam_step) return md_fail(err, "optimizer: no CUDA kernel for %s", g->name);
    bool first;
    if (device_state(o, g, &first, err) != 0) return -1;
    int rc;
    if (o->kind == OPT_SGD) {
        rc = be->sgd_step(n, md_f32(p), md_f32(p->grad), g->buf ? md_f32(g->buf) : NULL, lr, wd, (float)o->momentum,
                          (float)o->dampening, o->nesterov, first);
    } else {
        float step_size, sbc2;
        adam_corrections(o, g->lr, &step_size, &sbc2);
        rc = be->adam_step(n, md_f32(p), md_f32(p->grad), md_f32(g->exp_avg), md_f32(g->exp_avg_sq), lr, wd,
                           (float)o->momentum, (float)o->beta2, (float)o->eps, step_size, sbc2,
                           o->kind == OPT_ADAMW);
    }
    return rc ? md_fail(err, "optimizer step of %s: %s", g->name, be->error()) : 0;
}

/* Every device parameter of backend `be` in one multi-tensor call (or a
 * few launches): the same per-element operations as step_device. Parameters
 * whose `done` flag is set are skipped; those of this backend get it set. */
static int step_device_multi(md_optimizer *o, const md_backend *be, bool *done, md_error *err) {
    if (!o->mt && !(o->mt = malloc(sizeof *o->mt * (size_t)o->n)))
        return md_failc(err, MD_ERR_NOMEM, "optimizer: out of memory for the multi-tensor step (%d tensors)", o->n);
    int count = 0;
    float sbc2 = 0;
    for (int i = 0; i < o->n; i++) {
        group *g = &o->g[i];
        md_tensor *p = g->p;
        if (done[i] || md__backend_table(p->device) != be) continue;
        done[i] = true;
        bool first;
        if (device_state(o, g, &first, err) != 0) return -1;
        md__mt_param *m = &o->mt[count++];
        *m = (md__mt_param){ .w = md_f32(p), .g = md_f32(p->grad), .n = md_tensor_numel(p), .lr = (float)g->lr,
                             .wd = (float)g->wd, .first = first };
        if (o->kind == OPT_SGD) {
            m->s0 = g->buf ? md_f32(g->buf) : NULL;
        } else {
            m->s0 = md_f32(g->exp_avg);
            m->s1 = md_f32(g->exp_avg_sq);
            adam_corrections(o, g->lr, &m->step_size, &sbc2);
        }
    }
    int rc = o->kind == OPT_SGD
                 ? be->sgd_step_multi(count, o->mt, (float)o->momentum, (float)o->dampening, o->nesterov)
                 : be->adam_step_multi(count, o->mt, (float)o->momentum, (float)o->beta2, (float)o->eps, sbc2,
                                       o->kind == OPT_ADAMW);
    return rc ? md_fail(err, "optimizer %s step of %d device tensors: %s", kind_name(o->kind), count, be->error())
              : 0;
}

MD_API int md_optimizer_step(md_optimizer *o, md_error *err) {
    o->step++;
    bool *done = NULL;   /* device parameters already updated by a multi-tensor call */
    for (int i = 0; i < o->n; i++) {
        group *g = &o->g[i];
        md_tensor *p = g->p;
        if (!p->requires_grad || !p->grad) continue;
        if (p->device != MD_CPU) {
            const md_backend *be = md__backend_table(p->device);
            bool multi = be && (o->kind == OPT_SGD ? be->sgd_step_multi != NULL : be->adam_step_multi != NULL);
            if (multi && !done) {
                /* the parameters without a gradient count as done: they are not updated */
                if (!(done = calloc((size_t)o->n, sizeof *done)))
                    return md_failc(err, MD_ERR_NOMEM, "optimizer: out of memory (%d parameters)", o->n);
                for (int j = 0; j < o->n; j++) done[j] = !o->g[j].p->requires_grad || !o->g[j].p->grad;
            }
            if (multi ? !done[i] && step_device_multi(o, be, done, err) != 0 : step_device(o, g, err) != 0)
                goto fail;
            continue;
        }
        int64_t n = md_tensor_numel(p);
        float *w = md_f32(p), *gr = md_f32(p->grad);
        float lr = (float)g->lr, wd = (float)g->wd;
        if (o->kind == OPT_SGD) {
            float mom = (float)o->momentum, damp = (float)o->dampening;
            bool first = false;
            if (mom != 0 && !g->buf) {
                if (!(g->buf = state_like(o, p, err))) goto fail;
                first = true;
            }
            float *b = g->buf ? md_f32(g->buf) : NULL;
            #pragma omp parallel for if (n > 65536) schedule(static)
            for (int64_t k = 0; k < n; k++) {
                float d = gr[k] + wd * w[k];
                if (b) {
                    b[k] = first ? d : mom * b[k] + (1 - damp) * d;
                    d = o->nesterov ? d + mom * b[k] : b[k];
                }
                w[k] -= lr * d;
            }
        } else {
            if (!g->exp_avg && (!(g->exp_avg = state_like(o, p, err)) || !(g->exp_avg_sq = state_like(o, p, err))))
                goto fail;
            float b1 = (float)o->momentum, b2 = (float)o->beta2, eps = (float)o->eps;
            double bc1 = 1 - pow(o->momentum, (double)o->step), bc2 = 1 - pow(o->beta2, (double)o->step);
            float step_size = (float)(g->lr / bc1), sbc2 = (float)sqrt(bc2);
            float *m = md_f32(g->exp_avg), *v = md_f32(g->exp_avg_sq);
            bool decoupled = o->kind == OPT_ADAMW;
            #pragma omp parallel for if (n > 65536) schedule(static)
            for (int64_t k = 0; k < n; k++) {
                float d = gr[k];
                if (decoupled) w[k] *= 1 - lr * wd;
                else d += wd * w[k];
                m[k] = b1 * m[k] + (1 - b1) * d;
                v[k] = b2 * v[k] + (1 - b2) * d * d;
                w[k] -= step_size * m[k] / (sqrtf(v[k]) / sbc2 + eps);
            }
        }
    }
    free(done);
    return 0;
fail:
    free(done);
    return -1;
}

/* Device gradients of one backend zeroed by one multi-tensor call; false
 * when the backend has no such entry or it failed (the caller then fills
 * each gradient). */
static bool zero_grad_multi(md_optimizer *o, const md_backend *be) {
    if (!be || !be->zero_f32_multi) return false;
    if (!o->zp && !(o->zp = malloc(sizeof *o->zp * (size_t)o->n))) return false;
    if (!o->zn && !(o->zn = malloc(sizeof *o->zn * (size_t)o->n))) return false;
    int count = 0;
    for (int i = 0; i < o->n; i++) {
        md_tensor *gr = o->g[i].p->grad;
        if (!gr || gr->device == MD_CPU || md__backend_table(gr->device) != be || gr->dtype != MD_F32 ||
            !md_tensor_is_contiguous(gr))
            continue;
        o->zp[count] = md_f32(gr);
        o->zn[count++] = md_tensor_numel(gr);
    }
    return be->zero_f32_multi(count, o->zp, o->zn) == 0;
}

/* As PyTorch 1.13's zero_grad(set_to_none=False), which mmcv calls: every
 * gradient stays allocated and becomes zeros (a parameter without a
 * gradient this step still gets weight decay and momentum). Device
 * gradients are zeroed together in one multi-tensor launch. */
MD_API void md_optimizer_zero_grad(md_optimizer *o) {
    const md_backend *be = NULL;
    for (int i = 0; i < o->n && !be; i++)
        if (o->g[i].p->grad && o->g[i].p->grad->device != MD_CPU) be = md__backend_table(o->g[i].p->grad->device);
    bool dev_done = zero_grad_multi(o, be);
    for (int i = 0; i < o->n; i++) {
        md_tensor *gr = o->g[i].p->grad;
        if (!gr) continue;
        if (dev_done && gr->device != MD_CPU && md__backend_table(gr->device) == be && gr->dtype == MD_F32 &&
            md_tensor_is_contiguous(gr))
            continue;
        md_tensor_zero_grad(o->g[i].p);
    }
}

MD_API const char *md_optimizer_type(const md_optimizer *o) { return kind_name(o->kind); }
MD_API double md_optimizer_base_lr(const md_optimizer *o) { return o->base_lr; }
MD_API int md_optimizer_group_count(const md_optimizer *o) { return o->n; }
MD_API const char *md_optimizer_group_name(const md_optimizer *o, int i) { return o->g[i].name; }
MD_API double md_optimizer_group_initial_lr(const md_optimizer *o, int i) { return o->g[i].initial_lr; }
MD_API double md_optimizer_group_lr(const md_optimizer *o, int i) { return o->g[i].lr; }
MD_API double md_optimizer_group_weight_decay(const md_optimizer *o, int i) { return o->g[i].wd; }
MD_API void md_optimizer_set_group_lr(md_optimizer *o, int i, double lr) { o->g[i].lr = lr; }
MD_API void md_optimizer_set_momentum(md_optimizer *o, double m) { o->momentum = m; }
MD_API double md_optimizer_momentum(const md_optimizer *o) { return o->momentum; }

MD_API void md_optimizer_scale_lr(md_optimizer *o, double factor) {
    o->base_lr *= factor;
    for (int i = 0; i < o->n; i++) {
        o->g[i].initial_lr *= factor;
        o->g[i].lr *= factor;
    }
}

/* Sum of squares of a device gradient (read back to the host); NAN on failure. */
static double device_sq_sum(md_optimizer *o, md_tensor *g) {
    const md_backend *be = md__backend_table(g->device);
    int64_t n = md_tensor_numel(g);
    float *sq = md__dev_alloc(o->ctx, g->device, sizeof(float) * (size_t)(n + 1)), s = NAN;
    md__loop L = { .ndim = 1, .nops = 3, .numel = n, .shape = { n }, .st = { { 1 }, { 1 }, { 1 } } };
    if (!be || !sq || be->binary_f32(MD_BIN_MUL, &L, md_f32(g), md_f32(g), sq) != 0 ||
        be->sum_f32(sq, 1, n, 1, 1.0f, sq + n) != 0 || be->copy(&s, sq + n, sizeof s, MD_COPY_D2H) != 0)
        return NAN;
    return s;
}

MD_API double md_optimizer_clip_grad_norm(md_optimizer *o, double max_norm, double norm_type) {
    double total = 0;
    bool inf = isinf(norm_type);
    for (int i = 0; i < o->n; i++) {
        md_tensor *p = o->g[i].p;
        if (!p->requires_grad || !p->grad) continue;
        if (p->device != MD_CPU) {   /* L2 only on devices; other norms give NaN */
            total += norm_type == 2.0 ? device_sq_sum(o, p->grad) : NAN;
            continue;
        }
        const float *gr = md_f32(p->grad);
        int64_t n = md_tensor_numel(p);
        double s = 0;
        if (norm_type == 2.0) {   /* the usual case: squares, not pow() per element */
            #pragma omp simd reduction(+ : s)
            for (int64_t k = 0; k < n; k++) s += (double)gr[k] * gr[k];
        } else {
            for (int64_t k = 0; k < n; k++) {
                double a = fabs((double)gr[k]);
                if (inf) s = a > s ? a : s;
                else s += pow(a, norm_type);
            }
        }
        if (inf) total = s > total ? s : total;
        else total += s;
    }
    if (!inf) total = pow(total, 1.0 / norm_type);
    double coef = max_norm / (total + 1e-6);
    if (coef < 1)
        for (int i = 0; i < o->n; i++) {
            md_tensor *p = o->g[i].p;
            if (!p->requires_grad || !p->grad) continue;
            float *gr = md_f32(p->grad);
            if (p->device != MD_CPU) {
                const md_backend *be = md__backend_table(p->device);
                if (be) be->unary_f32(MD_UN_MUL_SCALAR, md_tensor_numel(p), gr, (float)coef, 0, gr);
                continue;
            }
            for (int64_t k = 0; k < md_tensor_numel(p); k++) gr[k] = (float)(gr[k] * coef);
        }
    return total;
}

/* ---- state ---- */

MD_API int md_optimizer_save_state(const md_optimizer *o, md_st_writer *w, md_error *err) {
    char name[1200];
    int64_t step = o->step;
    md_tensor st = { .dtype = MD_I64, .ndim = 0, .data = &step };
    if (md_st_writer_add(w, "optimizer.step", &st, err) != 0) return -1;
    for (int i = 0; i < o->n; i++) {
        const group *g = &o->g[i];
        const md_tensor *slots[3] = { g->buf, g->exp_avg, g->exp_avg_sq };
        const char *names[3] = { "momentum_buffer", "exp_avg", "exp_avg_sq" };
        for (int s = 0; s < 3; s++) {
            if (!slots[s]) continue;
            snprintf(name, sizeof name, "optimizer.%s.%s", g->name, names[s]);
            if (md_st_writer_add(w, name, slots[s], err) != 0) return -1;
        }
    }
    return 0;
}

MD_API int md_optimizer_load_state(md_ctx *ctx, md_optimizer *o, const md_st *st, md_error *err) {
    (void)ctx;
    int k = md_st_find(st, "optimizer.step");
    if (k < 0) return md_failc(err, MD_ERR_CONFIG, "the checkpoint has no optimizer state");
    memcpy(&o->step, md_st_data(st, k), sizeof o->step);   /* entries need not be aligned */
    char name[1200];
    for (int i = 0; i < o->n; i++) {
        group *g = &o->g[i];
        md_tensor **slots[3] = { &g->buf, &g->exp_avg, &g->exp_avg_sq };
        const char *names[3] = { "momentum_buffer", "exp_avg", "exp_avg_sq" };
        for (int s = 0; s < 3; s++) {
            snprintf(name, sizeof name, "optimizer.%s.%s", g->name, names[s]);
            int j = md_st_find(st, name);
            if (j < 0) continue;
            int64_t shape[MD_MAX_DIMS];
            int nd = md_st_shape(st, j, shape);
            int64_t numel = 1;
            for (int d = 0; d < nd; d++) numel *= shape[d];
            if (md_st_dtype(st, j) != MD_F32 || numel != md_tensor_numel(g->p))
                return md_failc(err, MD_ERR_SHAPE, "optimizer state %s does not match the parameter", name);
            if (!*slots[s] && !(*slots[s] = state_like(o, g->p, err))) return -1;
            if ((*slots[s])->device != MD_CPU) {   /* state on the parameter's device */
                const md_backend *be = md__backend_table((*slots[s])->device);
                if (!be || (numel && be->copy((*slots[s])->data, md_st_data(st, j), sizeof(float) * (size_t)numel,
                                              MD_COPY_H2D) != 0))
                    return md_fail(err, "optimizer state %s: copy to the device failed: %s", name,
                                   be ? be->error() : "backend not loaded");
            } else {
                memcpy((*slots[s])->data, md_st_data(st, j), sizeof(float) * (size_t)numel);
            }
        }
    }
    return 0;
}
