/* Devices: loading backend libraries, the device step arena, device tensors
 * and copies between devices. Op front-ends reach a backend's kernels
 * through md__be (internal.h). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <ltdl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "backends/cpu/elementwise.h"   /* md__loop_init */
#include "backends/cpu/table.h"

/* ------------------------------------------------------------ backends -- */

/* Backend tables, one per device type, are process-wide: the CPU's is
 * static, and the CUDA runtime keeps one context per process, so one loaded
 * library serves every md_ctx. */
static const md_backend *g_backend[2] = { [MD_CPU] = &md__cpu_table };
static lt_dlhandle g_handle[2];
static int g_open_index[2] = { [MD_CPU] = 0, [MD_CUDA] = -1 };

const md_backend *md__backend_table(md_device_type t) {
    return (t >= MD_CPU && t <= MD_CUDA) ? g_backend[t] : NULL;
}

/* Directory of libmmdet.so itself: the backend library is installed next to it. */
bool md__self_dir(char *out, size_t n) {
    Dl_info info;
    char real[PATH_MAX];
    if (!dladdr((void *)&md_device_init, &info) || !info.dli_fname || !realpath(info.dli_fname, real)) return false;
    char *slash = strrchr(real, '/');
    if (!slash) return false;
    *slash = 0;
    snprintf(out, n, "%s", real);
    return true;
}

static int load_backend(md_device_type type, md_error *err) {
    if (g_backend[type]) return 0;
    static const char *lib = "libmmdet-cuda.so", *sym = "md_backend_cuda";
    if (lt_dlinit() != 0) return md_failc(err, MD_ERR_PLUGIN, "cannot initialise libltdl: %s", lt_dlerror());
    char dirs[3][PATH_MAX];
    int nd = 0;
    const char *env = getenv("MMDET_BACKEND_PATH");
    if (env && *env) snprintf(dirs[nd++], PATH_MAX, "%s", env);
    if (md__self_dir(dirs[nd], PATH_MAX)) nd++;
    char tried[2048] = "";
    size_t k = 0;
    lt_dlhandle h = NULL;
    for (int i = 0; i <= nd && !h; i++) {
        char path[PATH_MAX + 32];
        if (i < nd) snprintf(path, sizeof path, "%s/%s", dirs[i], lib);
        else snprintf(path, sizeof path, "%s", lib);   /* the dynamic linker's search path */
        h = lt_dlopen(path);
        if (!h) {
            const char *e = lt_dlerror();
            k += (size_t)snprintf(tried + k, k < sizeof tried ? sizeof tried - k : 0, "\n  %s: %s", path,
                                  e ? e : "not found");
        }
    }
    if (!h) {
        lt_dlexit();
        return md_failc(err, MD_ERR_PLUGIN,
                        "cannot load the CUDA backend (built as lib/%s when nvcc is installed; "
                        "MMDET_BACKEND_PATH names its folder); tried:%s", lib, tried);
    }
    md_backend_entry_fn entry = (md_backend_entry_fn)lt_dlsym(h, sym);
    const md_backend *be = entry ? entry() : NULL;
    if (!be || be->abi != MD_BACKEND_ABI) {
        int abi = be ? be->abi : -1;
        lt_dlclose(h);
        lt_dlexit();
        if (!entry) return md_failc(err, MD_ERR_PLUGIN, "%s does not export %s", lib, sym);
        return md_failc(err, MD_ERR_PLUGIN, "%s has backend ABI %d, this libmmdet needs %d (rebuild it)", lib,
                        abi, MD_BACKEND_ABI);
    }
    g_handle[type] = h;
    g_backend[type] = be;
    return 0;
}

MD_API int md_device_parse(const char *s, md_device *out, md_error *err) {
    if (!s) return md_fail(err, "device: no name");
    if (!strcmp(s, "cpu")) {
        *out = MD_DEVICE_CPU;
        return 0;
    }
    if (!strncmp(s, "cuda", 4)) {
        long idx = 0;
        if (s[4] == ':') {
            char *end;
            idx = strtol(s + 5, &end, 10);
            if (end == s + 5 || *end || idx < 0 || idx > 255)
                return md_fail(err, "device \"%s\": expected cuda:N with N a device index", s);
        } else if (s[4]) {
            return md_fail(err, "device \"%s\": expected \"cpu\", \"cuda\" or \"cuda:N\"", s);
        }
        *out = (md_device){ MD_CUDA, (int)idx };
        return 0;
    }
    return md_fail(err, "device \"%s\": expected \"cpu\", \"cuda\" or \"cuda:N\"", s);
}

MD_API const char *md_device_name(md_device d, char *buf, size_t n) {
    if (d.type == MD_CPU) snprintf(buf, n, "cpu");
    else snprintf(buf, n, "cuda:%d", d.index);
    return buf;
}

MD_API bool md_device_equal(md_device a, md_device b) {
    return a.type == b.type && (a.type == MD_CPU || a.index == b.index);
}

MD_API md_device md_tensor_device(const md_tensor *t) {
    return (md_device){ t->device, t->device == MD_CPU ? 0 : t->device_index };
}

MD_API int md_device_init(md_ctx *ctx, md_device d, md_error *err) {
    (void)ctx;
    if (d.type == MD_CPU) return 0;
    if (d.type != MD_CUDA) return md_fail(err, "device: unknown device type %d", (int)d.type);
    if (load_backend(d.type, err) != 0) return -1;
    if (g_open_index[d.type] >= 0 && g_open_index[d.type] != d.index)
        return md_fail(err, "device cuda:%d: cuda:%d is already in use by this process (one CUDA device per "
                       "process)", d.index, g_open_index[d.type]);
    if (g_backend[d.type]->init(d.index) != 0)
        return md_failc(err, MD_ERR_PLUGIN, "device cuda:%d: %s", d.index, g_backend[d.type]->error());
    g_open_index[d.type] = d.index;
    return 0;
}

MD_API const char *md_device_describe(md_device d) {
    if (d.type == MD_CPU) return "CPU";
    const md_backend *be = md__backend_table(d.type);
    return be && g_open_index[d.type] >= 0 ? be->describe() : "(not initialised)";
}

MD_API int md_device_synchronize(md_device d, md_error *err) {
    if (d.type == MD_CPU) return 0;
    const md_backend *be = md__backend_table(d.type);
    if (!be || g_open_index[d.type] < 0) return md_fail(err, "synchronize: device not initialised");
    if (be->sync() != 0) return md_fail(err, "synchronize: %s", be->error());
    return 0;
}

/* ------------------------------------------------- op front-end helpers -- */

const md_backend *md__be(md_ctx *ctx, const char *op, const md_tensor *t) {
    const md_backend *be = md__backend_table(t->device);
    if (!be || g_open_index[t->device] < 0) {
        md_op_fail(ctx, op, "tensor on cuda:%d but that device was not initialised (md_device_init)",
                   t->device_index);
        return NULL;
    }
    if (be->bind) be->bind(ctx);
    return be;
}

md_tensor *md__no_kernel(md_ctx *ctx, const char *op, const md_tensor *t) {
    char s[96], d[16];
    const md_backend *be = md__backend_table(t->device);
    return md_op_fail(ctx, op, "%s is not implemented on %s (input %s on %s)", op, be ? be->name : "this device",
                      md_tensor_describe(t, s, sizeof s), md_device_name(md_tensor_device(t), d, sizeof d));
}

md_tensor *md__be_failed(md_ctx *ctx, const char *op, const md_backend *be) {
    const char *msg = be->error();
    return md_op_failc(ctx, !strncmp(msg, "out of memory", 13) ? MD_ERR_NOMEM : MD_ERR_SHAPE, op, "%s", msg);
}

bool md__be_compute(md_ctx *ctx, const char *op, const md_backend *be, md_dtype dt, int *prev) {
    *prev = MD_F32;
    if (!be->set_compute_dtype) {
        if (dt == MD_F32) return true;
        md_op_fail(ctx, op, "mixed precision (%s) is not implemented on %s", md_dtype_name(dt), be->name);
        return false;
    }
    if (be->set_compute_dtype((int)dt, prev) != 0) {
        md__be_failed(ctx, op, be);
        return false;
    }
    return true;
}

void md__be_compute_restore(const md_backend *be, int prev) {
    if (be->set_compute_dtype) be->set_compute_dtype(prev, NULL);
}

void *md__alloc_like(md_ctx *ctx, const md_tensor *like, size_t bytes) {
    return like->device == MD_CPU ? md_ctx_alloc(ctx, bytes) : md__dev_alloc(ctx, like->device, bytes);
}

bool md__same_device(md_ctx *ctx, const char *op, int n, md_tensor *const *ts) {
    const md_tensor *first = NULL;
    for (int i = 0; i < n; i++) {
        if (!ts[i]) continue;
        if (!first) {
            first = ts[i];
            continue;
        }
        if (ts[i]->device != first->device || (first->device != MD_CPU && ts[i]->device_index != first->device_index)) {
            char a[96], b[96], da[16], db[16];
            md_op_fail(ctx, op, "inputs on different devices: %s on %s and %s on %s",
                       md_tensor_describe(first, a, sizeof a), md_device_name(md_tensor_device(first), da, sizeof da),
                       md_tensor_describe(ts[i], b, sizeof b), md_device_name(md_tensor_device(ts[i]), db, sizeof db));
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------ device arena -- */

/* The device arena is a md_arena over the backend's memory: bump chunks for
 * small data, a pool of large blocks that md__tensor_release hands back
 * early (gradients consumed by backward, inference activations), both kept
 * across steps. Kernels still queued read memory the next user gets only
 * after them (one stream), so handing memory back needs no synchronisation. */
md_arena *md__dev_arena(md_ctx *ctx) { return ctx->dev_arena; }

static md_arena *dev_arena_get(md_ctx *ctx, md_device_type type) {
    if (ctx->dev_arena) return ctx->dev_arena;
    const md_backend *be = md__backend_table(type);
    if (!be) return md_op_fail(ctx, "alloc", "no backend for device type %d", (int)type), NULL;
    md_arena *a = calloc(1, sizeof *a);
    if (!a) return md_op_failc(ctx, MD_ERR_NOMEM, "alloc", "out of memory"), NULL;
    md__arena_init(a, be);
    ctx->dev_arena = a;
    return a;
}

void *md__dev_alloc(md_ctx *ctx, md_device_type type, size_t bytes) {
    md_arena *a = dev_arena_get(ctx, type);
    if (!a) return NULL;
    void *p = md__arena_alloc(a, bytes);
    if (!p) md_op_fail(ctx, "alloc", "out of device memory allocating %zu bytes (step arena holds %zu): %s", bytes,
                       a->used + a->pool_used, a->dev->error());
    return p;
}

void *md__dev_tensor_data(md_ctx *ctx, md_device_type type, size_t bytes) {
    md_arena *a = dev_arena_get(ctx, type);
    if (!a) return NULL;
    if (bytes < a->pool_min || !bytes) return md__dev_alloc(ctx, type, bytes);
    void *p = md__pool_alloc(a, bytes);
    if (!p) md_op_fail(ctx, "alloc", "out of device memory allocating %zu bytes (step arena holds %zu): %s", bytes,
                       a->used + a->pool_used, a->dev->error());
    return p;
}

void md__dev_arena_reset(md_ctx *ctx) {
    if (ctx->dev_arena) md__arena_reset(ctx->dev_arena);
}

void md__dev_arena_free(md_ctx *ctx) {
    if (!ctx->dev_arena) return;
    md__arena_free(ctx->dev_arena);
    free(ctx->dev_arena);
    ctx->dev_arena = NULL;
}

MD_API size_t md_ctx_device_arena_peak(const md_ctx *ctx, md_device d) {
    if (d.type == MD_CPU) return md_ctx_arena_peak(ctx);
    return ctx->dev_arena ? ctx->dev_arena->peak_total : 0;
}

/* -------------------------------------------------------- device tensors -- */

MD_API md_tensor *md_tensor_empty_on(md_ctx *ctx, md_device d, md_dtype dt, int ndim, const int64_t *shape) {
    if (d.type == MD_CPU) return md_tensor_empty(ctx, dt, ndim, shape);
    if (!md__backend_table(d.type) || g_open_index[d.type] != d.index)
        return md_op_fail(ctx, "tensor", "device cuda:%d was not initialised (md_device_init)", d.index);
    md_tensor *t = md__tensor_header(ctx, dt, ndim, shape);
    if (!t) return NULL;
    t->device = d.type;
    t->device_index = d.index;
    t->data = md__dev_tensor_data(ctx, d.type, (size_t)md_tensor_numel(t) * md_dtype_size(dt));
    return t->data ? t : NULL;
}

MD_API md_tensor *md_tensor_zeros_on(md_ctx *ctx, md_device d, md_dtype dt, int ndim, const int64_t *shape) {
    md_tensor *t = md_tensor_empty_on(ctx, d, dt, ndim, shape);
    if (t && d.type != MD_CPU && md_tensor_fill_(t, 0.0) != 0)
        return md_op_fail(ctx, "zeros", "%s", md__backend_table(d.type)->error());
    if (t && d.type == MD_CPU) memset(t->data, 0, (size_t)md_tensor_numel(t) * md_dtype_size(dt));
    return t;
}

md_tensor *md__empty_like_on(md_ctx *ctx, const md_tensor *like, md_dtype dt, int ndim, const int64_t *shape) {
    return md_tensor_empty_on(ctx, md_tensor_device(like), dt, ndim, shape);
}

/* Fill of a contiguous device tensor with v converted to its dtype. */
int md__dev_fill(md_tensor *t, double v) {
    const md_backend *be = md__backend_table(t->device);
    if (!be || !md_tensor_is_contiguous(t)) return -1;
    uint64_t bits = 0;
    switch (t->dtype) {
    case MD_F32: { float f = (float)v; memcpy(&bits, &f, 4); break; }
    case MD_I32: { int32_t i = (int32_t)v; memcpy(&bits, &i, 4); break; }
    case MD_I64: { int64_t i = (int64_t)v; memcpy(&bits, &i, 8); break; }
    case MD_U8: bits = (uint8_t)v; break;
    default: return -1;
    }
    return be->fill(t->data, md_tensor_numel(t), md_dtype_size(t->dtype), bits);
}

/* One element of a device tensor as double (a synchronous copy). */
double md__dev_get(const md_tensor *t, int64_t off) {
    const md_backend *be = md__backend_table(t->device);
    unsigned char buf[8] = { 0 };
    size_t es = md_dtype_size(t->dtype);
    if (!be || be->copy(buf, (const char *)t->data + off * (int64_t)es, es, MD_COPY_D2H) != 0) return NAN;
    switch (t->dtype) {
    case MD_F32: { float f; memcpy(&f, buf, 4); return f; }
    case MD_I64: { int64_t i; memcpy(&i, buf, 8); return (double)i; }
    case MD_I32: { int32_t i; memcpy(&i, buf, 4); return i; }
    case MD_U8: return buf[0];
    default: return NAN;
    }
}

/* dst = src, same dtype and shape, any devices and strides. */
int md__copy_any(md_ctx *ctx, md_tensor *dst, const md_tensor *src) {
    static const char *op = "copy_";
    size_t es = md_dtype_size(src->dtype);
    int64_t n = md_tensor_numel(src);
    if (!n) return 0;
    bool dc = md_tensor_is_contiguous(dst), sc = md_tensor_is_contiguous(src);
    if (md_device_equal(md_tensor_device(dst), md_tensor_device(src))) {   /* within one device: its backend */
        const md_backend *be = md__be(ctx, op, dst);
        if (!be) return -1;
        int rc;
        if (dc && sc) {
            rc = be->copy(dst->data, src->data, (size_t)n * es, MD_COPY_D2D);
        } else {
            md__loop L;
            const int64_t *st[2] = { dst->stride, src->stride };
            md__loop_init(&L, dst->ndim, dst->shape, 2, st);
            rc = be->copy_strided(&L, es, src->data, dst->data);
        }
        if (rc != 0) md__be_failed(ctx, op, be);
        return rc;
    }
    if (dst->device != MD_CPU && src->device != MD_CPU)
        return md_op_fail(ctx, op, "copies between two CUDA devices are not supported"), -1;
    /* host <-> device: stage through a contiguous tensor on each side */
    const md_tensor *s = src;
    if (!sc) {
        md_tensor *c = md__empty_like_on(ctx, src, src->dtype, src->ndim, src->shape);
        if (!c || md__copy_any(ctx, c, src) != 0) return -1;
        s = c;
    }
    md_tensor *d = dst;
    if (!dc && !(d = md__empty_like_on(ctx, dst, dst->dtype, dst->ndim, dst->shape))) return -1;
    const md_backend *be = md__be(ctx, op, dst->device != MD_CPU ? dst : src);
    if (!be) return -1;
    if (be->copy(d->data, s->data, (size_t)n * es, dst->device != MD_CPU ? MD_COPY_H2D : MD_COPY_D2H) != 0) {
        md__be_failed(ctx, op, be);
        return -1;
    }
    return d == dst ? 0 : md__copy_any(ctx, dst, d);
}

typedef struct to_saved { md_device from; } to_saved;

static int to_backward(md_ctx *ctx, md_node *node, md_tensor *gy) {
    to_saved *sv = md_node_saved(node);
    md_tensor *g = md_tensor_to(ctx, gy, sv->from);
    return g ? md_node_accumulate(ctx, node, 0, g) : -1;
}

MD_API md_tensor *md_tensor_to(md_ctx *ctx, md_tensor *t, md_device d) {
    if (!t) return NULL;
    if (md_device_equal(md_tensor_device(t), d)) return t;
    md_tensor *y = md_tensor_empty_on(ctx, d, t->dtype, t->ndim, t->shape);
    if (!y || md__copy_any(ctx, y, t) != 0) return NULL;
    md_node *node = md_autograd_record(ctx, y, &t, 1, to_backward, "to");
    if (node) {
        to_saved *sv = md_node_save(ctx, node, sizeof *sv);
        if (!sv) return NULL;
        sv->from = md_tensor_device(t);
    }
    return y;
}

MD_API md_tensor *md_tensor_new_persistent_on(md_ctx *ctx, md_device d, md_dtype dt, int ndim,
                                              const int64_t *shape, md_error *err) {
    md_tensor *t = md_tensor_new_persistent(ctx, dt, ndim, shape, err);
    if (!t || d.type == MD_CPU) return t;
    if (md_tensor_move_(ctx, t, d, err) != 0) {
        md_tensor_free(t);
        return NULL;
    }
    return t;
}

static int move_storage(md_tensor *t, md_device d, md_error *err) {
    if (md_device_equal(md_tensor_device(t), d)) return 0;
    const md_backend *be = md__backend_table(d.type != MD_CPU ? d.type : t->device);
    char a[96];
    if (!be) return md_fail(err, "move %s: backend not loaded", md_tensor_describe(t, a, sizeof a));
    if (t->device != MD_CPU && d.type != MD_CPU)
        return md_fail(err, "move %s: between two CUDA devices is not supported", md_tensor_describe(t, a, sizeof a));
    if (!md_tensor_is_contiguous(t) || t->data != t->owner_)
        return md_fail(err, "move %s: only a persistent tensor that owns its contiguous storage can move",
                       md_tensor_describe(t, a, sizeof a));
    size_t bytes = (size_t)md_tensor_numel(t) * md_dtype_size(t->dtype);
    void *p;
    if (d.type != MD_CPU) {
        if (!(p = be->alloc(bytes ? bytes : 1)))
            return md_failc(err, MD_ERR_NOMEM, "move %s to cuda:%d: %s", md_tensor_describe(t, a, sizeof a), d.index,
                            be->error());
        if (bytes && be->copy(p, t->data, bytes, MD_COPY_H2D) != 0) {
            be->free(p);
            return md_fail(err, "move %s to cuda:%d: %s", md_tensor_describe(t, a, sizeof a), d.index, be->error());
        }
        free(t->owner_);
    } else {
        if (!(p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64)))
            return md_failc(err, MD_ERR_NOMEM, "move %s to the CPU: out of memory", md_tensor_describe(t, a, sizeof a));
        if (bytes && be->copy(p, t->data, bytes, MD_COPY_D2H) != 0) {
            free(p);
            return md_fail(err, "move %s to the CPU: %s", md_tensor_describe(t, a, sizeof a), be->error());
        }
        be->free(t->owner_);
    }
    t->data = t->owner_ = p;
    t->device = d.type;
    t->device_index = d.type == MD_CPU ? 0 : d.index;
    return 0;
}

MD_API int md_tensor_move_(md_ctx *ctx, md_tensor *t, md_device d, md_error *err) {
    (void)ctx;
    if (!t || !t->persistent) return md_fail(err, "move: not a persistent tensor");
    if (d.type != MD_CPU && (!md__backend_table(d.type) || g_open_index[d.type] != d.index))
        return md_fail(err, "move: device cuda:%d was not initialised (md_device_init)", d.index);
    if (move_storage(t, d, err) != 0) return -1;
    if (t->grad && t->grad->persistent && move_storage(t->grad, d, err) != 0) return -1;
    if (t->grad && !t->grad->persistent) t->grad = NULL;   /* a step gradient: gone at the next reset anyway */
    return 0;
}

/* Frees a persistent tensor's device storage (md_tensor_free). */
void md__dev_free(md_tensor *t) {
    const md_backend *be = md__backend_table(t->device);
    if (be && t->owner_) be->free(t->owner_);
}

typedef struct move_ctx { md_ctx *ctx; md_device d; md_error *err; } move_ctx;

static int move_visit(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)is_param;
    move_ctx *m = user;
    if (md_tensor_move_(m->ctx, t, m->d, m->err) != 0) return md_error_wrap(m->err, "%s", name), -1;
    return 0;
}

MD_API int md_module_to(md_ctx *ctx, md_module *m, md_device d, md_error *err) {
    if (d.type != MD_CPU && md_device_init(ctx, d, err) != 0) return -1;
    move_ctx mc = { ctx, d, err };
    return md_module_visit(m, "", move_visit, &mc) ? -1 : 0;
}

static int first_visit(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)name, (void)is_param;
    *(md_device *)user = md_tensor_device(t);
    return 1;   /* stop at the first tensor */
}

MD_API md_device md_module_device(md_module *m) {
    md_device d = MD_DEVICE_CPU;
    if (m) md_module_visit(m, "", first_visit, &d);
    return d;
}
