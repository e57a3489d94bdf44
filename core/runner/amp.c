/* Mixed precision: the context's autocast dtype, turning it on for a
 * device, and GradScaler's loss scaling (amp.h). The kernels are the
 * backends': the CPU's bf16 kernels in backends/cpu/gemm_bf16.c, the
 * GPU's fp16 and bf16 paths in backends/cuda/amp.cu; the per-element
 * rounding and unscale both run are in backends/precision.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "backends/cpu/gemm_bf16.h"

MD_API void md_ctx_set_autocast(md_ctx *ctx, md_dtype dtype) { ctx->autocast = dtype; }
MD_API md_dtype md_ctx_autocast(const md_ctx *ctx) { return ctx->autocast; }

MD_API float md_bf16_round(float x) { return md__bf16_round(x); }
MD_API float md_f16_round(float x) { return md__f16_round(x); }

MD_API const char *md_amp_cpu_kernel(void) {
    switch (md__bf16k_current()) {
    case MD_BF16K_NATIVE: return "bf16 on AVX512_BF16 (vdpbf16ps)";
    case MD_BF16K_AVX512CVT: return "bf16 converted on AVX-512F (no AVX512_BF16)";
    case MD_BF16K_EMULATED: return "bf16 emulated (no AVX512_BF16): slower than f32, for correctness checks";
    default: return NULL;
    }
}

/* Mixed precision on a GPU: the backend computes conv and matrix products
 * with fp16 or bf16 operands (cuDNN and cuBLAS Tensor Core math), f32
 * accumulation; refused where the device cannot (bf16 before compute
 * capability 8.0). */
static int amp_enable_device(md_ctx *ctx, const char *dtype, md_device dev, const char *where, md_error *err) {
    char dn[32];
    md_device_name(dev, dn, sizeof dn);
    md_error e = { 0 };
    if (md_device_init(ctx, dev, &e) != 0)
        return md_failc(err, MD_ERR_CONFIG, "%s: %s mixed precision on %s: %s", where, dtype, dn, e.msg);
    const md_backend *be = md__backend_table(dev.type);
    md_dtype dt = strcmp(dtype, "fp16") ? MD_BF16 : MD_F16;
    int prev;
    if (!be || !be->set_compute_dtype)
        return md_failc(err, MD_ERR_CONFIG, "%s: %s mixed precision on %s: this backend has no low-precision "
                        "kernels (rebuild lib/libmmdet-cuda.so)", where, dtype, dn);
    if (be->set_compute_dtype((int)dt, &prev) != 0)   /* the device's own check, then set back */
        return md_failc(err, MD_ERR_CONFIG, "%s: %s mixed precision on %s (%s): %s", where, dtype, dn,
                        md_device_describe(dev), be->error());
    be->set_compute_dtype(prev, NULL);
    ctx->autocast = dt;
    md_info(ctx, "mixed precision: %s on %s (%s): conv and linear operands rounded to %s, f32 accumulation on "
            "cuDNN and cuBLAS Tensor Core math; norms, losses, weights and gradients in f32", dtype, dn,
            md_device_describe(dev), dtype);
    return 0;
}

MD_API int md_amp_enable(md_ctx *ctx, const char *dtype, bool from_fp16_key, md_device dev, const char *where,
                         md_error *err) {
    if (!where) where = "mixed_precision";
    if (!dtype || (strcmp(dtype, "bf16") && strcmp(dtype, "fp16")))
        return md_failc(err, MD_ERR_CONFIG, "%s: dtype \"%s\" is neither \"bf16\" nor \"fp16\"", where,
                        dtype ? dtype : "(none)");
    if (dev.type != MD_CPU) return amp_enable_device(ctx, dtype, dev, where, err);
    if (!strcmp(dtype, "fp16")) {
        if (!from_fp16_key)
            return md_failc(err, MD_ERR_CONFIG, "%s: dtype \"fp16\" needs a GPU (CPUs have no fp16 kernels); "
                            "use dtype \"bf16\" on the CPU", where);
        md_info(ctx, "fp16 without a GPU: convolutions and linear layers compute in bf16 on the CPU instead "
                "(loss scaling as configured)");
    }
    const char *k = md_amp_cpu_kernel();
    if (!k)
        return md_failc(err, MD_ERR_CONFIG, "%s: bf16 needs a CPU with AVX2 and FMA (or AVX-512); this one has "
                        "neither", where);
    ctx->autocast = MD_BF16;
    md_info(ctx, "mixed precision: bf16 (conv and linear inputs rounded to bf16, f32 accumulation; norms, losses "
            "and weights in f32); CPU kernel: %s", k);
    return 0;
}

/* ---------------------------------------------------------- GradScaler -- */

typedef struct scaler_args {
    double init_scale, growth_factor, backoff_factor;
    int64_t growth_interval;
    bool enabled;
} scaler_args;

/* torch.cuda.amp.GradScaler's arguments and defaults */
static const md_key scaler_keys[] = {
    { "init_scale", MD_KEY_FLOAT, "65536.0", "the first scale", false, MD_AT(scaler_args, init_scale), .min = "0" },
    { "growth_factor", MD_KEY_FLOAT, "2.0", "scale multiplier after growth_interval clean steps (> 1)", false,
      MD_AT(scaler_args, growth_factor) },
    { "backoff_factor", MD_KEY_FLOAT, "0.5", "scale multiplier on an overflow (in (0, 1))", false,
      MD_AT(scaler_args, backoff_factor) },
    { "growth_interval", MD_KEY_INT, "2000", "clean steps between growths", false,
      MD_AT(scaler_args, growth_interval), .min = "1" },
    { "enabled", MD_KEY_BOOL, "true", "false: no scaling and no skipped steps", false, MD_AT(scaler_args, enabled) },
    { 0 } };

MD_API int md_loss_scaler_init(md_loss_scaler *s, const md_cfg *ls, const char *where, md_error *err) {
    char w[512];
    if (!where) where = "loss_scale";
    scaler_args a;
    md_cfg *empty = md_cfg_new_group();
    if (!empty) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    int rc = md_cfg_read_struct(empty, scaler_keys, &a, where, err);   /* the defaults */
    md_cfg_free(empty);
    if (rc) return -1;
    memset(s, 0, sizeof *s);
    s->dynamic = true;
    switch (md_cfg_kind(ls)) {
    case MD_CFG_INT:
    case MD_CFG_FLOAT:   /* mmcv: GradScaler(init_scale=loss_scale), update(loss_scale) */
        a.init_scale = md_cfg_as_float(ls);
        if (!(a.init_scale > 0) || !isfinite(a.init_scale))
            return md_failc(err, MD_ERR_CONFIG, "%s: %s must be positive, got %g", md_cfg_where(ls, w, sizeof w),
                            where, a.init_scale);
        s->dynamic = false;
        s->static_scale = (float)a.init_scale;
        break;
    case MD_CFG_STRING:
        if (strcmp(md_cfg_as_str(ls), "dynamic"))
            return md_failc(err, MD_ERR_CONFIG, "%s: %s must be a number, \"dynamic\" or a group of GradScaler's "
                            "arguments, got \"%s\"", md_cfg_where(ls, w, sizeof w), where, md_cfg_as_str(ls));
        break;
    case MD_CFG_GROUP:
        if (md_cfg_check_keys(ls, scaler_keys, where, err) || md_cfg_read_struct(ls, scaler_keys, &a, where, err))
            return -1;
        /* GradScaler's own assertions */
        if (!(a.growth_factor > 1.0) || !(a.backoff_factor > 0.0 && a.backoff_factor < 1.0) || !(a.init_scale > 0))
            return md_failc(err, MD_ERR_CONFIG, "%s: %s: growth_factor must be > 1, backoff_factor in (0, 1) and "
                            "init_scale positive", md_cfg_where(ls, w, sizeof w), where);
        break;
    default:
        return md_failc(err, MD_ERR_CONFIG, "%s: %s must be a number, \"dynamic\" or a group of GradScaler's "
                        "arguments", md_cfg_where(ls, w, sizeof w), where);
    }
    s->enabled = a.enabled;
    s->scale = a.enabled ? (float)a.init_scale : 1.0;   /* a float32 tensor in PyTorch */
    s->growth_factor = a.growth_factor;
    s->backoff_factor = a.backoff_factor;
    s->growth_interval = a.growth_interval;
    return 0;
}

MD_API int md_loss_scaler_update(md_loss_scaler *s, bool found_inf) {
    if (!s->enabled) return 0;
    if (!s->dynamic) {   /* update(new_scale): the scale is set back, the tracker left alone */
        double old = s->scale;
        s->scale = s->static_scale;
        return s->scale < old ? -1 : s->scale > old ? 1 : 0;
    }
    /* the scale is a float32 tensor in PyTorch: each change is a double
     * product rounded to f32; growth stops short of inf */
    if (found_inf) {
        s->scale = (float)(s->scale * s->backoff_factor);
        s->growth_tracker = 0;
        return -1;
    }
    if (++s->growth_tracker == s->growth_interval) {
        float grown = (float)(s->scale * s->growth_factor);
        s->growth_tracker = 0;
        if (!isfinite(grown)) return 0;
        s->scale = grown;
        return 1;
    }
    return 0;
}

MD_API int md_loss_scaler_state_json(const md_loss_scaler *s, char *buf, size_t n) {
    int k = snprintf(buf, n, "{\"scale\": %.17g, \"growth_factor\": %.17g, \"backoff_factor\": %.17g, "
                     "\"growth_interval\": %lld, \"_growth_tracker\": %lld}", s->scale, s->growth_factor,
                     s->backoff_factor, (long long)s->growth_interval, (long long)s->growth_tracker);
    return k < 0 || (size_t)k >= n ? -1 : 0;
}

/* The number after "key": in a flat JSON object; false if absent. */
static bool json_number(const char *json, const char *key, double *out) {
    char q[64];
    snprintf(q, sizeof q, "\"%s\"", key);
    const char *p = strstr(json, q);
    if (!p) return false;
    p += strlen(q);
    while (*p == ' ' || *p == ':') p++;
    char *end;
    double v = strtod(p, &end);
    if (end == p) return false;
    *out = v;
    return true;
}

MD_API int md_loss_scaler_load_json(md_loss_scaler *s, const char *json, md_error *err) {
    double v[5];
    static const char *names[5] = { "scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker" };
    for (int i = 0; i < 5; i++)
        if (!json || !json_number(json, names[i], &v[i]))
            return md_failc(err, MD_ERR_PARSE, "loss scaler state: no number \"%s\" in %s", names[i],
                            json ? json : "(none)");
    if (!(v[0] > 0) || v[3] < 1 || v[4] < 0)
        return md_failc(err, MD_ERR_PARSE, "loss scaler state: bad values in %s", json);
    s->scale = v[0];
    s->growth_factor = v[1];
    s->backoff_factor = v[2];
    s->growth_interval = (int64_t)v[3];
    s->growth_tracker = (int64_t)v[4];
    return 0;
}

/* The parameter gradients of a module, per device type: f32 buffers for
 * the backend's unscale_f32_multi. */
typedef struct unscale_list {
    float **g[2];
    int64_t *n[2];
    int count[2], cap;
    const char *bad;
    bool nomem;
} unscale_list;

static int collect_grad(const char *name, md_tensor *t, bool is_param, void *user) {
    unscale_list *u = user;
    if (!is_param || !t->grad) return 0;
    md_tensor *g = t->grad;
    if (g->dtype != MD_F32 || (g->device != MD_CPU && g->device != MD_CUDA) || !md_tensor_is_contiguous(g)) {
        u->bad = name;
        return -1;
    }
    int d = g->device;
    if (u->count[d] == u->cap) {
        int cap = u->cap ? 2 * u->cap : 64;
        for (int k = 0; k < 2; k++) {
            float **ng = realloc(u->g[k], sizeof(float *) * (size_t)cap);
            if (ng) u->g[k] = ng;
            int64_t *nn = realloc(u->n[k], sizeof(int64_t) * (size_t)cap);
            if (nn) u->n[k] = nn;
            if (!ng || !nn) {
                u->nomem = true;
                return -1;
            }
        }
        u->cap = cap;
    }
    u->g[d][u->count[d]] = md_f32(g);
    u->n[d][u->count[d]++] = md_tensor_numel(g);
    return 0;
}

MD_API int md_module_unscale_grads(md_module *m, double scale, bool *found_inf, md_error *err) {
    /* GradScaler: inv_scale = scale.double().reciprocal().float() */
    float inv = (float)(1.0 / scale);
    unscale_list u = { 0 };
    int rc = 0;
    *found_inf = false;
    if (md_module_visit(m, "", collect_grad, &u) != 0) {
        rc = u.nomem ? md_failc(err, MD_ERR_NOMEM, "loss scaling: out of memory")
                     : md_failc(err, MD_ERR_CONFIG, "loss scaling: gradient of %s is not a contiguous f32 tensor",
                                u.bad ? u.bad : "?");
        goto done;
    }
    /* one pass per device over all its gradients, one answer read back */
    for (int d = 0; d < 2 && rc == 0; d++) {
        if (!u.count[d]) continue;
        const md_backend *be = md__backend_table((md_device_type)d);
        int found = 0;
        if (!be || !be->unscale_f32_multi)
            rc = md_failc(err, MD_ERR_CONFIG, "loss scaling: no unscale kernel on %s", be ? be->name : "this device");
        else if (be->unscale_f32_multi(u.count[d], u.g[d], u.n[d], inv, &found) != 0)
            rc = md_failc(err, MD_ERR_NUMERIC, "loss scaling: %s", be->error());
        if (found) *found_inf = true;
    }
done:
    for (int k = 0; k < 2; k++) {
        free(u.g[k]);
        free(u.n[k]);
    }
    return rc;
}
