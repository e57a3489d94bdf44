/* Optimizers: what every class of the "optimizers" registry shares (param
 * groups with mmcv's DefaultOptimizerConstructor paramwise_cfg, state,
 * zeroing, gradient-norm clipping), and the PyTorch 1.13 update rules of
 * SGD, Adam and AdamW that their plugins call. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

typedef struct group {
    char *name;
    md_tensor *p;
    double initial_lr, lr, wd;
    md_tensor *state[MD_OPTIMIZER_MAX_STATE];   /* made lazily by the class's update */
} group;

struct md_optimizer {
    md_ctx *ctx;
    md_optimizer_hparams *hp;     /* the class's (md_build_from_cfg in "optimizers") */
    double base_lr;
    int64_t step;
    group *g;
    int n, cap;
    /* per-step lists (o->n long): the parameters handed to one update, the
     * multi-tensor device entries, the gradients zeroed in one launch */
    md_optimizer_param *batch;
    bool *done;
    md__mt_param *mt;
    float **zp;
    int64_t *zn;
};

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
    double lr = o->base_lr, wd = o->hp->weight_decay;
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

/* ---- the class side ---- */

MD_API md_optimizer_hparams *md_optimizer_hparams_new(size_t size, const md_optimizer_iface *iface,
                                                      const md_cfg *cfg, const md_key *keys, md_error *err) {
    if (size < sizeof(md_optimizer_hparams)) {
        md_failc(err, MD_ERR_REGISTRY, "the hyper-parameter struct is smaller than md_optimizer_hparams");
        return NULL;
    }
    return md_object_new(size, iface, md_cfg_str(cfg, "type", "optimizer"), cfg, keys, err);
}

MD_API int md_optimizer_read_betas(const md_cfg *cfg, double betas[2], md_error *err) {
    betas[0] = 0.9;
    betas[1] = 0.999;
    const md_cfg *b = md_cfg_get(cfg, "betas");
    if (md_cfg_is_none(b)) return 0;
    const char *file = md_cfg_file(b) ? md_cfg_file(b) : "<config>";
    double v[3];
    int n = md_cfg_float_array(cfg, "betas", v, 3, err);
    if (n < 0) return -1;
    if (n != 2) return md_failc(err, MD_ERR_CONFIG, "%s:%d: betas must be two numbers", file, md_cfg_line(b));
    for (int i = 0; i < 2; i++) {
        if (!(v[i] >= 0 && v[i] < 1))
            return md_failc(err, MD_ERR_CONFIG, "%s:%d: betas[%d] is %g; it must be in [0, 1)", file, md_cfg_line(b),
                            i, v[i]);
        betas[i] = v[i];
    }
    return 0;
}

MD_API md_tensor *md_optimizer_state(md_optimizer *o, md_optimizer_param *p, int slot, bool *made, md_error *err) {
    if (made) *made = false;
    if (slot < 0 || slot >= MD_OPTIMIZER_MAX_STATE || !o->hp->iface->state_names[slot]) {
        md_failc(err, MD_ERR_REGISTRY, "%s: state slot %d has no name in its md_optimizer_iface", o->hp->type, slot);
        return NULL;
    }
    if (p->state[slot]) return p->state[slot];
    md_tensor *t = md_tensor_new_persistent_on(o->ctx, md_tensor_device(p->p), MD_F32, p->p->ndim, p->p->shape, err);
    if (!t) return NULL;
    p->state[slot] = t;
    if (made) *made = true;
    return t;
}

MD_API int64_t md_optimizer_step_count(const md_optimizer *o) { return o->step; }

/* ---- building ---- */

MD_API md_optimizer *md_optimizer_build(md_ctx *ctx, md_module *model, const md_cfg *cfg, md_error *err) {
    md_optimizer *o = calloc(1, sizeof *o);
    if (!o) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    o->ctx = ctx;
    if (!(o->hp = md_build_from_cfg(ctx, "optimizers", cfg, NULL, err))) goto fail;
    o->base_lr = o->hp->lr;
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
        for (int s = 0; s < MD_OPTIMIZER_MAX_STATE; s++) md_tensor_free(o->g[i].state[s]);
    }
    if (o->hp && o->hp->iface->destroy) o->hp->iface->destroy(o->hp);
    free(o->hp);
    free(o->g);
    free(o->batch);
    free(o->done);
    free(o->mt);
    free(o->zp);
    free(o->zn);
    free(o);
}

/* ---- the update rules ---- */

/* Adam's bias corrections of this step: step_size = lr / (1 - b1^t), sbc2 = sqrt(1 - b2^t). */
static void adam_corrections(const md_optimizer *o, double b1, double b2, double lr, float *step_size, float *sbc2) {
    double bc1 = 1 - pow(b1, (double)o->step), bc2 = 1 - pow(b2, (double)o->step);
    *step_size = (float)(lr / bc1);
    *sbc2 = (float)sqrt(bc2);
}

/* The SGD momentum buffer of p: the existing one (used even at momentum 0,
 * as PyTorch does once it has one), else a new one when momentum is set;
 * *first when it was just made (the update then starts it at d). */
static int sgd_buffer(md_optimizer *o, md_optimizer_param *p, float mom, md_tensor **buf, bool *first,
                      md_error *err) {
    *first = false;
    *buf = p->state[0];
    if (mom != 0 && !*buf && !(*buf = md_optimizer_state(o, p, 0, first, err))) return -1;
    return 0;
}

static int adam_moments(md_optimizer *o, md_optimizer_param *p, md_error *err) {
    if (!md_optimizer_state(o, p, 0, NULL, err) || !md_optimizer_state(o, p, 1, NULL, err)) return -1;
    return 0;
}

/* The backend of parameters ps (one device kind, as the update's contract
 * says), bound to the optimizer's context, or NULL with err set. */
static const md_backend *params_backend(md_optimizer *o, md_optimizer_param *ps, md_error *err) {
    const md_backend *be = md__backend_table(ps[0].p->device);
    if (!be) md_fail(err, "optimizer: no backend for the device of %s", ps[0].name);
    else if (be->bind) be->bind(o->ctx);
    return be;
}

/* The multi-tensor step where the backend has one (it saves launches), else
 * one step per tensor. */
MD_API int md_optimizer_sgd_update(md_optimizer *o, md_optimizer_param *ps, int n, double momentum, double dampening,
                                   bool nesterov, md_error *err) {
    float mom = (float)momentum, damp = (float)dampening;
    if (n <= 0) return 0;
    const md_backend *be = params_backend(o, ps, err);
    if (!be) return -1;
    if (be->sgd_step_multi) {
        if (!o->mt && !(o->mt = malloc(sizeof *o->mt * (size_t)o->n)))
            return md_failc(err, MD_ERR_NOMEM, "optimizer: out of memory for the multi-tensor step (%d tensors)", o->n);
        for (int i = 0; i < n; i++) {
            md_tensor *buf;
            bool first;
            if (sgd_buffer(o, &ps[i], mom, &buf, &first, err) != 0) return -1;
            o->mt[i] = (md__mt_param){ .w = md_f32(ps[i].p), .g = md_f32(ps[i].p->grad), .s0 = buf ? md_f32(buf) : NULL,
                                       .n = md_tensor_numel(ps[i].p), .lr = (float)ps[i].lr,
                                       .wd = (float)ps[i].weight_decay, .first = first };
        }
        if (be->sgd_step_multi(n, o->mt, mom, damp, nesterov))
            return md_fail(err, "optimizer SGD step of %d device tensors: %s", n, be->error());
        return 0;
    }
    if (!be->sgd_step) return md_fail(err, "optimizer: SGD is not implemented on %s (%s)", be->name, ps[0].name);
    for (int i = 0; i < n; i++) {
        md_tensor *buf;
        bool first;
        if (sgd_buffer(o, &ps[i], mom, &buf, &first, err) != 0) return -1;
        if (be->sgd_step(md_tensor_numel(ps[i].p), md_f32(ps[i].p), md_f32(ps[i].p->grad), buf ? md_f32(buf) : NULL,
                         (float)ps[i].lr, (float)ps[i].weight_decay, mom, damp, nesterov, first))
            return md_fail(err, "optimizer step of %s: %s", ps[i].name, be->error());
    }
    return 0;
}

MD_API int md_optimizer_adam_update(md_optimizer *o, md_optimizer_param *ps, int n, double beta1, double beta2,
                                    double eps_, bool decoupled, md_error *err) {
    float b1 = (float)beta1, b2 = (float)beta2, eps = (float)eps_;
    if (n <= 0) return 0;
    const md_backend *be = params_backend(o, ps, err);
    if (!be) return -1;
    if (be->adam_step_multi) {
        if (!o->mt && !(o->mt = malloc(sizeof *o->mt * (size_t)o->n)))
            return md_failc(err, MD_ERR_NOMEM, "optimizer: out of memory for the multi-tensor step (%d tensors)", o->n);
        float sbc2 = 0;
        for (int i = 0; i < n; i++) {
            if (adam_moments(o, &ps[i], err) != 0) return -1;
            o->mt[i] = (md__mt_param){ .w = md_f32(ps[i].p), .g = md_f32(ps[i].p->grad), .s0 = md_f32(ps[i].state[0]),
                                       .s1 = md_f32(ps[i].state[1]), .n = md_tensor_numel(ps[i].p),
                                       .lr = (float)ps[i].lr, .wd = (float)ps[i].weight_decay };
            adam_corrections(o, beta1, beta2, ps[i].lr, &o->mt[i].step_size, &sbc2);
        }
        if (be->adam_step_multi(n, o->mt, b1, b2, eps, sbc2, decoupled))
            return md_fail(err, "optimizer %s step of %d device tensors: %s", decoupled ? "AdamW" : "Adam", n,
                           be->error());
        return 0;
    }
    if (!be->adam_step) return md_fail(err, "optimizer: Adam is not implemented on %s (%s)", be->name, ps[0].name);
    for (int i = 0; i < n; i++) {
        if (adam_moments(o, &ps[i], err) != 0) return -1;
        float step_size, sbc2;
        adam_corrections(o, beta1, beta2, ps[i].lr, &step_size, &sbc2);
        if (be->adam_step(md_tensor_numel(ps[i].p), md_f32(ps[i].p), md_f32(ps[i].p->grad), md_f32(ps[i].state[0]),
                          md_f32(ps[i].state[1]), (float)ps[i].lr, (float)ps[i].weight_decay, b1, b2, eps, step_size,
                          sbc2, decoupled))
            return md_fail(err, "optimizer step of %s: %s", ps[i].name, be->error());
    }
    return 0;
}

/* ---- the shared step ---- */

static md_optimizer_param param_of(group *g) {
    return (md_optimizer_param){ .name = g->name, .p = g->p, .lr = g->lr, .weight_decay = g->wd, .state = g->state };
}

/* Every parameter with a gradient, in one update call per device kind (the
 * CPU, each device backend), in the order each kind first appears. */
MD_API int md_optimizer_step(md_optimizer *o, md_error *err) {
    o->step++;
    if (o->n == 0) return 0;
    if ((!o->batch && !(o->batch = malloc(sizeof *o->batch * (size_t)o->n))) ||
        (!o->done && !(o->done = malloc(sizeof *o->done * (size_t)o->n))))
        return md_failc(err, MD_ERR_NOMEM, "optimizer: out of memory (%d parameters)", o->n);
    for (int i = 0; i < o->n; i++) o->done[i] = !o->g[i].p->requires_grad || !o->g[i].p->grad;
    for (int i = 0; i < o->n; i++) {
        if (o->done[i]) continue;
        md_device_type kind = o->g[i].p->device;
        int count = 0;
        for (int j = i; j < o->n; j++)
            if (!o->done[j] && o->g[j].p->device == kind) {
                o->done[j] = true;
                o->batch[count++] = param_of(&o->g[j]);
            }
        if (o->hp->iface->update(o, o->hp, o->batch, count, err) != 0) return -1;
    }
    return 0;
}

/* The gradients of one backend zeroed by one multi-tensor call; false
 * when there is no such backend or the call failed (the caller then fills
 * each gradient). */
static bool zero_grad_multi(md_optimizer *o, const md_backend *be) {
    if (!be) return false;
    if (!o->zp && !(o->zp = malloc(sizeof *o->zp * (size_t)o->n))) return false;
    if (!o->zn && !(o->zn = malloc(sizeof *o->zn * (size_t)o->n))) return false;
    int count = 0;
    for (int i = 0; i < o->n; i++) {
        md_tensor *gr = o->g[i].p->grad;
        if (!gr || md__backend_table(gr->device) != be || gr->dtype != MD_F32 || !md_tensor_is_contiguous(gr))
            continue;
        o->zp[count] = md_f32(gr);
        o->zn[count++] = md_tensor_numel(gr);
    }
    return be->zero_f32_multi(count, o->zp, o->zn) == 0;
}

/* As PyTorch 1.13's zero_grad(set_to_none=False), which mmcv calls: every
 * gradient stays allocated and becomes zeros (a parameter without a
 * gradient this step still gets weight decay and momentum). The gradients
 * of a backend with a multi-tensor zeroing entry (a GPU's: it saves
 * launches) are zeroed together in one call. */
MD_API void md_optimizer_zero_grad(md_optimizer *o) {
    const md_backend *be = NULL;
    for (int i = 0; i < o->n && !be; i++) {
        const md_tensor *gr = o->g[i].p->grad;
        const md_backend *t = gr ? md__backend_table(gr->device) : NULL;
        if (t && t->zero_f32_multi) be = t;
    }
    bool multi_done = zero_grad_multi(o, be);
    for (int i = 0; i < o->n; i++) {
        md_tensor *gr = o->g[i].p->grad;
        if (!gr) continue;
        if (multi_done && md__backend_table(gr->device) == be && gr->dtype == MD_F32 && md_tensor_is_contiguous(gr))
            continue;
        md_tensor_zero_grad(o->g[i].p);
    }
}

MD_API const char *md_optimizer_type(const md_optimizer *o) { return o->hp->type; }
MD_API double md_optimizer_base_lr(const md_optimizer *o) { return o->base_lr; }
MD_API int md_optimizer_group_count(const md_optimizer *o) { return o->n; }
MD_API const char *md_optimizer_group_name(const md_optimizer *o, int i) { return o->g[i].name; }
MD_API double md_optimizer_group_initial_lr(const md_optimizer *o, int i) { return o->g[i].initial_lr; }
MD_API double md_optimizer_group_lr(const md_optimizer *o, int i) { return o->g[i].lr; }
MD_API double md_optimizer_group_weight_decay(const md_optimizer *o, int i) { return o->g[i].wd; }
MD_API void md_optimizer_set_group_lr(md_optimizer *o, int i, double lr) { o->g[i].lr = lr; }
MD_API void md_optimizer_set_momentum(md_optimizer *o, double m) { o->hp->momentum = m; }
MD_API double md_optimizer_momentum(const md_optimizer *o) { return o->hp->momentum; }

MD_API void md_optimizer_scale_lr(md_optimizer *o, double factor) {
    o->base_lr *= factor;
    for (int i = 0; i < o->n; i++) {
        o->g[i].initial_lr *= factor;
        o->g[i].lr *= factor;
    }
}

/* Sum of |g|^p of a gradient (read back to the host): the backend's
 * pow_sum_f64, or for p = 2 its square and sum kernels; NAN on failure or
 * for other norms without pow_sum_f64. */
static double grad_pow_sum(md_optimizer *o, md_tensor *g, double p) {
    const md_backend *be = md__backend_table(g->device);
    int64_t n = md_tensor_numel(g);
    if (!be) return NAN;
    if (be->pow_sum_f64) {
        double s;
        return be->pow_sum_f64(md_f32(g), n, p, &s) == 0 ? s : NAN;
    }
    if (p != 2.0) return NAN;
    float *sq = md__alloc_like(o->ctx, g, sizeof(float) * (size_t)(n + 1)), s = NAN;
    md__loop L = { .ndim = 1, .nops = 3, .numel = n, .shape = { n }, .st = { { 1 }, { 1 }, { 1 } } };
    if (!sq || be->binary_f32(MD_BIN_MUL, &L, md_f32(g), md_f32(g), sq) != 0 ||
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
        double s = grad_pow_sum(o, p->grad, norm_type);
        if (inf && !isnan(s)) total = s > total ? s : total;
        else total += s;   /* a NaN (no kernel for this norm on the device) poisons the total */
    }
    if (!inf) total = pow(total, 1.0 / norm_type);
    double coef = max_norm / (total + 1e-6);
    if (coef < 1)
        for (int i = 0; i < o->n; i++) {
            md_tensor *p = o->g[i].p;
            if (!p->requires_grad || !p->grad) continue;
            const md_backend *be = md__backend_table(p->device);
            float *gr = md_f32(p->grad);
            int64_t n = md_tensor_numel(p);
            if (be && be->scale_f64) be->scale_f64(gr, n, coef);
            else if (be) be->unary_f32(MD_UN_MUL_SCALAR, n, gr, (float)coef, 0, gr);
        }
    return total;
}

/* ---- state ---- */

MD_API int md_optimizer_save_state(const md_optimizer *o, md_st_writer *w, md_error *err) {
    char name[1200];
    int64_t step = o->step;
    md_tensor st = { .dtype = MD_I64, .ndim = 0, .data = &step };
    if (md_st_writer_add(w, "optimizer.step", &st, err) != 0) return -1;
    const char *const *names = o->hp->iface->state_names;
    for (int i = 0; i < o->n; i++)
        for (int s = 0; s < MD_OPTIMIZER_MAX_STATE && names[s]; s++) {
            if (!o->g[i].state[s]) continue;
            snprintf(name, sizeof name, "optimizer.%s.%s", o->g[i].name, names[s]);
            if (md_st_writer_add(w, name, o->g[i].state[s], err) != 0) return -1;
        }
    return 0;
}

/* The class's state slots that the checkpoint has; others stay as they are. */
MD_API int md_optimizer_load_state(md_ctx *ctx, md_optimizer *o, const md_st *st, md_error *err) {
    (void)ctx;
    int k = md_st_find(st, "optimizer.step");
    if (k < 0) return md_failc(err, MD_ERR_CONFIG, "the checkpoint has no optimizer state");
    memcpy(&o->step, md_st_data(st, k), sizeof o->step);   /* entries need not be aligned */
    const char *const *names = o->hp->iface->state_names;
    char name[1200];
    for (int i = 0; i < o->n; i++) {
        group *g = &o->g[i];
        md_optimizer_param p = param_of(g);
        for (int s = 0; s < MD_OPTIMIZER_MAX_STATE && names[s]; s++) {
            snprintf(name, sizeof name, "optimizer.%s.%s", g->name, names[s]);
            int j = md_st_find(st, name);
            if (j < 0) continue;
            int64_t shape[MD_MAX_DIMS];
            int nd = md_st_shape(st, j, shape);
            int64_t numel = 1;
            for (int d = 0; d < nd; d++) numel *= shape[d];
            if (md_st_dtype(st, j) != MD_F32 || numel != md_tensor_numel(g->p))
                return md_failc(err, MD_ERR_SHAPE, "optimizer state %s does not match the parameter", name);
            md_tensor *t = md_optimizer_state(o, &p, s, NULL, err);
            if (!t) return -1;
            /* state on the parameter's device: its backend copies from the host */
            const md_backend *be = md__backend_table(t->device);
            if (!be || (numel && be->copy(t->data, md_st_data(st, j), sizeof(float) * (size_t)numel,
                                          MD_COPY_H2D) != 0))
                return md_fail(err, "optimizer state %s: copy to the device failed: %s", name,
                               be ? be->error() : "backend not loaded");
        }
    }
    return 0;
}
