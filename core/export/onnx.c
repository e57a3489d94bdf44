/* The ONNX trace (onnx.h): the recorded graph, value names of tensors, and
 * the ONNX form of each traced op (called through onnx_trace.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "ops/onnx_trace.h"

typedef struct tmap_entry { const md_tensor *t; char *value; } tmap_entry;

struct md_onnx_graph {
    int opset;
    bool dynamic;
    md_onnx_node_info *nodes;
    int n_nodes, cap_nodes;
    md_onnx_value_info *inits, *inputs, *outputs;
    int n_inits, cap_inits, n_inputs, cap_inputs, n_outputs, cap_outputs;
    tmap_entry *map;            /* open addressing on the tensor's address */
    int map_cap, map_len;
    /* folded conv weights by the original weight: a shared layer folds once */
    struct { const md_tensor *w; char *wv, *bv; } *folds;
    int n_folds, cap_folds;
    int next_value;
    char **strings;             /* every string the graph owns */
    int n_strings, cap_strings;
    void **blobs;
    int n_blobs, cap_blobs;
};

static int grow(void **p, int *cap, int n, size_t size) {
    if (n < *cap) return 0;
    int c = *cap ? *cap * 2 : 16;
    void *q = realloc(*p, (size_t)c * size);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static void *oom(md_ctx *ctx) {
    md_op_failc(ctx, MD_ERR_NOMEM, "onnx", "out of memory recording the graph");
    return NULL;
}

static char *keep_str(md_ctx *ctx, md_onnx_graph *g, const char *s) {
    char *c = strdup(s);
    if (!c || grow((void **)&g->strings, &g->cap_strings, g->n_strings, sizeof *g->strings)) {
        free(c);
        return oom(ctx);
    }
    return g->strings[g->n_strings++] = c;
}

static void *keep_blob(md_ctx *ctx, md_onnx_graph *g, const void *data, size_t bytes) {
    void *b = malloc(bytes ? bytes : 1);
    if (!b || grow((void **)&g->blobs, &g->cap_blobs, g->n_blobs, sizeof *g->blobs)) {
        free(b);
        return oom(ctx);
    }
    if (data && bytes) memcpy(b, data, bytes);
    return g->blobs[g->n_blobs++] = b;
}

MD_API md_onnx_graph *md_onnx_graph_new(int opset, md_error *err) {
    if (opset < MD_ONNX_OPSET_MIN || opset > MD_ONNX_OPSET_MAX) {
        md_failc(err, MD_ERR_CONFIG, "ONNX opset %d is not supported: the export is validated for opsets %d to %d",
                 opset, MD_ONNX_OPSET_MIN, MD_ONNX_OPSET_MAX);
        return NULL;
    }
    md_onnx_graph *g = calloc(1, sizeof *g);
    if (!g) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    g->opset = opset;
    return g;
}

MD_API void md_onnx_graph_free(md_onnx_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_strings; i++) free(g->strings[i]);
    for (int i = 0; i < g->n_blobs; i++) free(g->blobs[i]);
    free(g->strings);
    free(g->blobs);
    free(g->nodes);
    free(g->inits);
    free(g->inputs);
    free(g->outputs);
    free(g->map);
    free(g->folds);
    free(g);
}

MD_API md_onnx_graph_view md_onnx_graph_view_of(const md_onnx_graph *g) {
    return (md_onnx_graph_view){ .opset = g->opset, .nodes = g->nodes, .n_nodes = g->n_nodes,
                                 .initializers = g->inits, .n_initializers = g->n_inits,
                                 .inputs = g->inputs, .n_inputs = g->n_inputs,
                                 .outputs = g->outputs, .n_outputs = g->n_outputs };
}

MD_API void md_onnx_graph_set_dynamic(md_onnx_graph *g, bool dynamic) { g->dynamic = dynamic; }

MD_API int md_onnx_graph_dim_param(md_onnx_graph *g, const char *io, int d, const char *param, md_error *err) {
    md_onnx_value_info *arrs[2] = { g->inputs, g->outputs };
    int ns[2] = { g->n_inputs, g->n_outputs };
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < ns[k]; i++) {
            md_onnx_value_info *v = &arrs[k][i];
            if (strcmp(v->name, io)) continue;
            if (d < 0 || d >= v->ndim)
                return md_failc(err, MD_ERR_SHAPE, "ONNX %s has %d dimensions, no dimension %d", io, v->ndim, d);
            char *p = strdup(param);
            if (!p || grow((void **)&g->strings, &g->cap_strings, g->n_strings, sizeof *g->strings)) {
                free(p);
                return md_failc(err, MD_ERR_NOMEM, "out of memory");
            }
            g->strings[g->n_strings++] = p;
            v->shape[d] = -1;
            v->dim_param[d] = p;
            return 0;
        }
    return md_failc(err, MD_ERR_CONFIG, "the ONNX graph has no input or output %s", io);
}

static bool same_attr(const md_onnx_attr *a, const md_onnx_attr *b) {
    if (strcmp(a->name, b->name) || a->kind != b->kind || a->i != b->i || a->n != b->n) return false;
    if (a->kind == MD_ONNX_ATTR_FLOAT && memcmp(&a->f, &b->f, sizeof a->f)) return false;
    if (a->kind == MD_ONNX_ATTR_STRING && strcmp(a->s, b->s)) return false;
    if (a->kind == MD_ONNX_ATTR_INTS && memcmp(a->ints, b->ints, sizeof *a->ints * (size_t)a->n)) return false;
    if (a->kind == MD_ONNX_ATTR_FLOATS && memcmp(a->floats, b->floats, sizeof *a->floats * (size_t)a->n)) return false;
    return true;
}

MD_API int md_onnx_graph_compare(const md_onnx_graph *a, const md_onnx_graph *b, md_error *err) {
    int n = a->n_nodes < b->n_nodes ? a->n_nodes : b->n_nodes;
    for (int i = 0; i < n; i++) {
        const md_onnx_node_info *x = &a->nodes[i], *y = &b->nodes[i];
        bool same = !strcmp(x->op_type, y->op_type) && !strcmp(x->name, y->name) && x->n_inputs == y->n_inputs &&
                    x->n_outputs == y->n_outputs && x->n_attrs == y->n_attrs;
        for (int k = 0; same && k < x->n_inputs; k++) same = !strcmp(x->inputs[k], y->inputs[k]);
        for (int k = 0; same && k < x->n_outputs; k++) same = !strcmp(x->outputs[k], y->outputs[k]);
        for (int k = 0; same && k < x->n_attrs; k++) same = same_attr(&x->attrs[k], &y->attrs[k]);
        if (!same)
            return md_failc(err, MD_ERR_SHAPE, "node %d (%s, %s) differs between the two traces: the model does "
                            "not trace to one graph for every input size", i, x->name, y->name);
    }
    if (a->n_nodes != b->n_nodes)
        return md_failc(err, MD_ERR_SHAPE, "the two traces recorded %d and %d nodes", a->n_nodes, b->n_nodes);
    for (int i = 0; i < a->n_inits && i < b->n_inits; i++) {
        const md_onnx_value_info *x = &a->inits[i], *y = &b->inits[i];
        bool same = !strcmp(x->name, y->name) && x->elem_type == y->elem_type && x->ndim == y->ndim &&
                    x->bytes == y->bytes && !memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)x->ndim) &&
                    (!x->bytes || !memcmp(x->data, y->data, x->bytes));
        if (!same) {
            /* name the first node that reads it */
            const char *user = "no node";
            for (int k = 0; k < a->n_nodes && !strcmp(user, "no node"); k++)
                for (int j = 0; j < a->nodes[k].n_inputs; j++)
                    if (!strcmp(a->nodes[k].inputs[j], x->name)) user = a->nodes[k].name;
            return md_failc(err, MD_ERR_SHAPE, "the constant %s (read by %s) depends on the input size: the "
                            "model does not trace to one graph for every input size", x->name, user);
        }
    }
    if (a->n_inits != b->n_inits)
        return md_failc(err, MD_ERR_SHAPE, "the two traces recorded %d and %d initializers", a->n_inits, b->n_inits);
    return 0;
}

MD_API void md_onnx_trace_begin(md_ctx *ctx, md_onnx_graph *g) { ctx->onnx = g; }
MD_API void md_onnx_trace_end(md_ctx *ctx) { ctx->onnx = NULL; }
MD_API md_onnx_graph *md_onnx_trace_pause(md_ctx *ctx) {
    md_onnx_graph *g = ctx->onnx;
    ctx->onnx = NULL;
    return g;
}
MD_API bool md_onnx_tracing(const md_ctx *ctx) { return ctx->onnx != NULL; }
MD_API int md_onnx_opset(const md_ctx *ctx) { return ctx->onnx ? ctx->onnx->opset : 0; }
MD_API bool md_onnx_dynamic(const md_ctx *ctx) { return ctx->onnx && ctx->onnx->dynamic; }

/* ------------------------------------------------- tensor -> value name -- */

static size_t slot_of(const md_onnx_graph *g, const md_tensor *t) {
    uintptr_t h = (uintptr_t)t;
    h ^= h >> 17;
    h *= 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 7) & (size_t)(g->map_cap - 1);
}

static char *lookup(const md_onnx_graph *g, const md_tensor *t) {
    if (!g->map_cap) return NULL;
    for (size_t i = slot_of(g, t);; i = (i + 1) & (size_t)(g->map_cap - 1)) {
        if (!g->map[i].t) return NULL;
        if (g->map[i].t == t) return g->map[i].value;
    }
}

static int map_put(md_ctx *ctx, md_onnx_graph *g, const md_tensor *t, char *value) {
    if (2 * (g->map_len + 1) > g->map_cap) {
        int cap = g->map_cap ? 2 * g->map_cap : 256;
        tmap_entry *old = g->map;
        int old_cap = g->map_cap;
        g->map = calloc((size_t)cap, sizeof *g->map);
        if (!g->map) {
            g->map = old;
            return oom(ctx), -1;
        }
        g->map_cap = cap;
        for (int i = 0; i < old_cap; i++)
            if (old[i].t) {
                size_t j = slot_of(g, old[i].t);
                while (g->map[j].t) j = (j + 1) & (size_t)(cap - 1);
                g->map[j] = old[i];
            }
        free(old);
    }
    size_t i = slot_of(g, t);
    while (g->map[i].t && g->map[i].t != t) i = (i + 1) & (size_t)(g->map_cap - 1);
    if (!g->map[i].t) g->map_len++;
    g->map[i] = (tmap_entry){ t, value };
    return 0;
}

/* A name no other value or initializer has: hint, else hint.N */
static char *unique_name(md_ctx *ctx, md_onnx_graph *g, const char *hint) {
    char buf[1200];
    snprintf(buf, sizeof buf, "%s", hint);
    for (int k = 1;; k++) {
        bool taken = false;
        for (int i = 0; i < g->n_inits && !taken; i++) taken = !strcmp(g->inits[i].name, buf);
        for (int i = 0; i < g->n_inputs && !taken; i++) taken = !strcmp(g->inputs[i].name, buf);
        if (!taken) return keep_str(ctx, g, buf);
        snprintf(buf, sizeof buf, "%s.%d", hint, k);
    }
}

static int elem_type_of(md_dtype dt) {
    switch (dt) {
    case MD_F32: return MD_ONNX_FLOAT;
    case MD_I64: return MD_ONNX_INT64;
    case MD_I32: return MD_ONNX_INT32;
    default: return MD_ONNX_UINT8;
    }
}

static const char *add_init(md_ctx *ctx, md_onnx_graph *g, const char *hint, int elem_type, int ndim,
                            const int64_t *shape, const void *data, size_t bytes) {
    char *name = unique_name(ctx, g, hint);
    void *blob = name ? keep_blob(ctx, g, data, bytes) : NULL;
    if (!blob || grow((void **)&g->inits, &g->cap_inits, g->n_inits, sizeof *g->inits)) return blob ? oom(ctx) : NULL;
    md_onnx_value_info *v = &g->inits[g->n_inits++];
    *v = (md_onnx_value_info){ .name = name, .elem_type = elem_type, .ndim = ndim, .data = blob, .bytes = bytes };
    for (int d = 0; d < ndim; d++) v->shape[d] = shape[d];
    return name;
}

/* t's data, contiguous, into a new initializer */
static const char *init_from(md_ctx *ctx, md_onnx_graph *g, md_tensor *t, const char *hint) {
    if (t->device != MD_CPU) {
        md_op_fail(ctx, "onnx", "tensor %s lives on a device: export from the CPU", hint);
        return NULL;
    }
    md_tensor *c = md_contiguous(ctx, t);
    if (!c) return NULL;
    return add_init(ctx, g, hint, elem_type_of(t->dtype), t->ndim, t->shape, c->data,
                    (size_t)md_tensor_numel(t) * md_dtype_size(t->dtype));
}

static const char *scoped(md_ctx *ctx, const char *leaf, char *buf, size_t n) {
    const char *s = md_scope_path(ctx);
    snprintf(buf, n, "%s%s%s", s, *s && leaf ? "." : "", leaf ? leaf : "");
    return buf;
}

MD_API const char *md_onnx_value(md_ctx *ctx, md_tensor *t) {
    md_onnx_graph *g = ctx->onnx;
    if (!g || !t) return NULL;
    const char *v = lookup(g, t);
    if (v) return v;
    if (t->persistent) {
        char buf[1200];
        scoped(ctx, t->name ? t->name : "const", buf, sizeof buf);
        v = init_from(ctx, g, t, buf);
        if (v && map_put(ctx, g, t, (char *)v)) return NULL;
        return v;
    }
    char s[96];
    md_op_fail(ctx, "onnx", "tensor %s was not made by a traced op (an op without an ONNX form, or a value "
               "computed outside the trace that is not declared with md_onnx_constant)",
               md_tensor_describe(t, s, sizeof s));
    return NULL;
}

MD_API const char *md_onnx_constant(md_ctx *ctx, md_tensor *t, const char *hint) {
    md_onnx_graph *g = ctx->onnx;
    if (!g || !t) return NULL;
    char buf[1200];
    const char *v = init_from(ctx, g, t, scoped(ctx, hint ? hint : "const", buf, sizeof buf));
    if (v && map_put(ctx, g, t, (char *)v)) return NULL;
    return v;
}

MD_API const char *md_onnx_const_f32(md_ctx *ctx, const char *hint, int ndim, const int64_t *shape, const float *data) {
    if (!ctx->onnx) return NULL;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    char buf[1200];
    return add_init(ctx, ctx->onnx, scoped(ctx, hint, buf, sizeof buf), MD_ONNX_FLOAT, ndim, shape, data,
                    (size_t)n * sizeof(float));
}

MD_API const char *md_onnx_const_i64(md_ctx *ctx, const char *hint, int ndim, const int64_t *shape,
                                     const int64_t *data) {
    if (!ctx->onnx) return NULL;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    char buf[1200];
    return add_init(ctx, ctx->onnx, scoped(ctx, hint, buf, sizeof buf), MD_ONNX_INT64, ndim, shape, data,
                    (size_t)n * sizeof(int64_t));
}

MD_API int md_onnx_bind(md_ctx *ctx, md_tensor *t, const char *value) {
    if (!ctx->onnx || !t || !value) return -1;
    return map_put(ctx, ctx->onnx, t, (char *)value);
}

static int add_io(md_ctx *ctx, md_onnx_value_info **arr, int *n, int *cap, const char *name, int elem_type,
                  int ndim, const int64_t *shape) {
    char *nm = keep_str(ctx, ctx->onnx, name);
    if (!nm || grow((void **)arr, cap, *n, sizeof **arr)) return nm ? (oom(ctx), -1) : -1;
    md_onnx_value_info *v = &(*arr)[(*n)++];
    *v = (md_onnx_value_info){ .name = nm, .elem_type = elem_type, .ndim = ndim };
    for (int d = 0; d < ndim; d++) v->shape[d] = shape[d];
    return 0;
}

MD_API int md_onnx_input(md_ctx *ctx, md_tensor *t, const char *name) {
    md_onnx_graph *g = ctx->onnx;
    if (!g || !t) return -1;
    if (add_io(ctx, &g->inputs, &g->n_inputs, &g->cap_inputs, name, elem_type_of(t->dtype), t->ndim, t->shape))
        return -1;
    return map_put(ctx, g, t, (char *)g->inputs[g->n_inputs - 1].name);
}

MD_API int md_onnx_output_value(md_ctx *ctx, const char *value, const char *name, int elem_type, int ndim,
                                const int64_t *shape) {
    md_onnx_graph *g = ctx->onnx;
    if (!g || !value) return -1;
    /* the output takes the name asked for: an Identity from the value */
    const char *out;
    if (md_onnx_node(ctx, "Identity", &value, 1, &out, 1, NULL, 0)) return -1;
    g->nodes[g->n_nodes - 1].outputs[0] = keep_str(ctx, g, name);
    if (!g->nodes[g->n_nodes - 1].outputs[0]) return -1;
    return add_io(ctx, &g->outputs, &g->n_outputs, &g->cap_outputs, name, elem_type, ndim, shape);
}

MD_API int md_onnx_output(md_ctx *ctx, md_tensor *t, const char *name) {
    const char *v = md_onnx_value(ctx, t);
    return v ? md_onnx_output_value(ctx, v, name, elem_type_of(t->dtype), t->ndim, t->shape) : -1;
}

/* ------------------------------------------------------------- nodes -- */

MD_API int md_onnx_node(md_ctx *ctx, const char *op_type, const char *const *inputs, int n_in, const char **out,
                        int n_out, const md_onnx_attr *attrs, int n_attrs) {
    md_onnx_graph *g = ctx->onnx;
    if (!g) return -1;
    for (int i = 0; i < n_in; i++)
        if (!inputs[i]) return -1;   /* a failed input: its error is set */
    if (grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes, sizeof *g->nodes)) return oom(ctx), -1;
    const char **ins = keep_blob(ctx, g, NULL, sizeof *ins * (size_t)(n_in ? n_in : 1));
    const char **outs = keep_blob(ctx, g, NULL, sizeof *outs * (size_t)(n_out ? n_out : 1));
    md_onnx_attr *at = keep_blob(ctx, g, NULL, sizeof *at * (size_t)(n_attrs ? n_attrs : 1));
    if (!ins || !outs || !at) return -1;
    for (int i = 0; i < n_in; i++)
        if (!(ins[i] = keep_str(ctx, g, inputs[i]))) return -1;
    for (int i = 0; i < n_out; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%d", g->next_value++);
        if (!(outs[i] = keep_str(ctx, g, buf))) return -1;
        out[i] = outs[i];
    }
    for (int i = 0; i < n_attrs; i++) {
        at[i] = attrs[i];
        if (!(at[i].name = keep_str(ctx, g, attrs[i].name))) return -1;
        if (attrs[i].s && !(at[i].s = keep_str(ctx, g, attrs[i].s))) return -1;
        if (attrs[i].ints && !(at[i].ints = keep_blob(ctx, g, attrs[i].ints, sizeof(int64_t) * (size_t)attrs[i].n)))
            return -1;
        if (attrs[i].floats &&
            !(at[i].floats = keep_blob(ctx, g, attrs[i].floats, sizeof(float) * (size_t)attrs[i].n)))
            return -1;
    }
    char name[1200];
    const char *s = md_scope_path(ctx);
    snprintf(name, sizeof name, "%s%s%s_%d", s, *s ? "/" : "", op_type, g->n_nodes);
    const char *nm = keep_str(ctx, g, name), *ot = keep_str(ctx, g, op_type);
    if (!nm || !ot) return -1;
    g->nodes[g->n_nodes++] = (md_onnx_node_info){ .op_type = ot, .name = nm, .inputs = ins, .n_inputs = n_in,
                                                 .outputs = outs, .n_outputs = n_out, .attrs = at,
                                                 .n_attrs = n_attrs };
    return 0;
}

MD_API const char *md_onnx_node1(md_ctx *ctx, const char *op_type, const char *const *inputs, int n_in,
                                 const md_onnx_attr *attrs, int n_attrs) {
    const char *out;
    return md_onnx_node(ctx, op_type, inputs, n_in, &out, 1, attrs, n_attrs) ? NULL : out;
}

/* ------------------------------------------------- traced op forms -- */

/* y's value is the single output of op(ins); returns y, or NULL (ctx error) */
static md_tensor *emit(md_ctx *ctx, md_tensor *y, const char *op, const char *const *ins, int n_in,
                       const md_onnx_attr *attrs, int n_attrs) {
    for (int i = 0; i < n_in; i++)
        if (!ins[i]) return NULL;
    const char *v = md_onnx_node1(ctx, op, ins, n_in, attrs, n_attrs);
    if (!v || md_onnx_bind(ctx, y, v)) return NULL;
    return y;
}

static const char *shape_const(md_ctx *ctx, int ndim, const int64_t *shape) {
    return md_onnx_const_i64(ctx, "shape", 1, (int64_t[]){ ndim }, shape);
}

md_tensor *md__onnx_conv(md_ctx *ctx, md_tensor *y, md_tensor *x, md_tensor *w, md_tensor *b, md_conv2d_params p,
                         md_tensor *scale, md_tensor *shift, bool relu) {
    md_onnx_graph *g = ctx->onnx;
    const char *xv = md_onnx_value(ctx, x), *wv = NULL, *bv = NULL;
    if (!xv) return NULL;
    if (!scale && !shift) {
        wv = md_onnx_value(ctx, w);
        bv = b ? md_onnx_value(ctx, b) : NULL;
    } else {
        /* BatchNorm folded into the conv: w * scale, scale * b + shift */
        for (int i = 0; i < g->n_folds; i++)
            if (g->folds[i].w == w) wv = g->folds[i].wv, bv = g->folds[i].bv;
        if (!wv) {
            md_tensor *wc = md_contiguous(ctx, w), *bc = b ? md_contiguous(ctx, b) : NULL;
            md_tensor *sc = scale ? md_contiguous(ctx, scale) : NULL, *hc = shift ? md_contiguous(ctx, shift) : NULL;
            if (!wc || (b && !bc) || (scale && !sc) || (shift && !hc)) return NULL;
            int64_t O = w->shape[0], per = md_tensor_numel(w) / O;
            float *fw = malloc(sizeof(float) * (size_t)md_tensor_numel(w)), *fb = malloc(sizeof(float) * (size_t)O);
            if (!fw || !fb) {
                free(fw);
                free(fb);
                return oom(ctx);
            }
            for (int64_t o = 0; o < O; o++) {
                double s = sc ? md_f32(sc)[o] : 1.0;
                for (int64_t k = 0; k < per; k++) fw[o * per + k] = (float)(md_f32(wc)[o * per + k] * s);
                fb[o] = (float)((bc ? md_f32(bc)[o] : 0.0) * s + (hc ? md_f32(hc)[o] : 0.0));
            }
            wv = md_onnx_const_f32(ctx, "weight", w->ndim, w->shape, fw);
            bv = md_onnx_const_f32(ctx, "bias", 1, &O, fb);
            free(fw);
            free(fb);
            if (!wv || !bv || grow((void **)&g->folds, &g->cap_folds, g->n_folds, sizeof *g->folds))
                return wv && bv ? oom(ctx) : NULL;
            g->folds[g->n_folds].w = w;
            g->folds[g->n_folds].wv = (char *)wv;
            g->folds[g->n_folds++].bv = (char *)bv;
        }
    }
    if (!wv || (b && !scale && !shift && !bv)) return NULL;
    int64_t k[2] = { w->shape[2], w->shape[3] }, st[2] = { p.stride_h, p.stride_w };
    int64_t pads[4] = { p.pad_h, p.pad_w, p.pad_h, p.pad_w }, dil[2] = { p.dilation_h, p.dilation_w };
    md_onnx_attr at[] = { MD_ONNX_INTS("dilations", dil, 2), MD_ONNX_INT("group", p.groups),
                          MD_ONNX_INTS("kernel_shape", k, 2), MD_ONNX_INTS("pads", pads, 4),
                          MD_ONNX_INTS("strides", st, 2) };
    const char *ins[3] = { xv, wv, bv };
    const char *v = md_onnx_node1(ctx, "Conv", ins, bv ? 3 : 2, at, 5);
    if (v && relu) v = md_onnx_node1(ctx, "Relu", &v, 1, NULL, 0);
    if (!v || md_onnx_bind(ctx, y, v)) return NULL;
    return y;
}

md_tensor *md__onnx_batch_norm(md_ctx *ctx, md_tensor *y, md_tensor *x, md_tensor *w, md_tensor *b, md_tensor *mean,
                               md_tensor *var, bool training, double eps) {
    if (training) return md_op_fail(ctx, "batch_norm2d", "export needs eval mode (running statistics)");
    int64_t C = x->shape[1];
    float *ones = NULL, *zeros = NULL;
    const char *wv = w ? md_onnx_value(ctx, w) : NULL, *bv = b ? md_onnx_value(ctx, b) : NULL;
    if (!w || !b) {
        ones = malloc(sizeof(float) * (size_t)C);
        zeros = calloc((size_t)C, sizeof(float));
        if (!ones || !zeros) {
            free(ones);
            free(zeros);
            return oom(ctx);
        }
        for (int64_t c = 0; c < C; c++) ones[c] = 1.0f;
        if (!w) wv = md_onnx_const_f32(ctx, "weight", 1, &C, ones);
        if (!b) bv = md_onnx_const_f32(ctx, "bias", 1, &C, zeros);
        free(ones);
        free(zeros);
    }
    const char *ins[5] = { md_onnx_value(ctx, x), wv, bv, md_onnx_value(ctx, mean), md_onnx_value(ctx, var) };
    md_onnx_attr at[] = { MD_ONNX_FLOAT("epsilon", eps) };
    return emit(ctx, y, "BatchNormalization", ins, 5, at, 1);
}

/* GroupNorm as PyTorch exports it (ONNX has GroupNormalization only from
 * opset 18): InstanceNormalization over [N, G, C/G * rest], back to x's
 * shape, then the per-channel affine map. */
md_tensor *md__onnx_group_norm(md_ctx *ctx, md_tensor *y, md_tensor *x, int groups, md_tensor *w, md_tensor *b,
                               double eps) {
    int64_t G = groups, shape3[3] = { ctx->onnx->dynamic ? 0 : x->shape[0], G, -1 }, cshape[MD_MAX_DIMS];
    float *ones = malloc(sizeof(float) * (size_t)G), *zeros = calloc((size_t)G, sizeof(float));
    if (!ones || !zeros) {
        free(ones);
        free(zeros);
        return oom(ctx);
    }
    for (int64_t i = 0; i < G; i++) ones[i] = 1.0f;
    const char *sc = md_onnx_const_f32(ctx, "gn_scale", 1, &G, ones), *bi = md_onnx_const_f32(ctx, "gn_bias", 1, &G, zeros);
    free(ones);
    free(zeros);
    const char *v = md_onnx_node1(ctx, "Reshape", (const char *[]){ md_onnx_value(ctx, x), shape_const(ctx, 3, shape3) },
                                  2, NULL, 0);
    md_onnx_attr at = MD_ONNX_FLOAT("epsilon", eps);
    v = md_onnx_node1(ctx, "InstanceNormalization", (const char *[]){ v, sc, bi }, 3, &at, 1);
    v = md_onnx_node1(ctx, "Reshape", (const char *[]){ v, ctx->onnx->dynamic ? md_onnx_shape(ctx, md_onnx_value(ctx, x), 0, x->ndim)
                                                                              : shape_const(ctx, x->ndim, x->shape) }, 2, NULL, 0);
    /* weight and bias [C] as [C, 1, ...] against [N, C, ...] */
    cshape[0] = x->shape[1];
    for (int d = 1; d < x->ndim - 1; d++) cshape[d] = 1;
    if (w) v = md_onnx_node1(ctx, "Mul", (const char *[]){ v, md_onnx_node1(ctx, "Reshape",
                             (const char *[]){ md_onnx_value(ctx, w), shape_const(ctx, x->ndim - 1, cshape) }, 2,
                             NULL, 0) }, 2, NULL, 0);
    if (b) v = md_onnx_node1(ctx, "Add", (const char *[]){ v, md_onnx_node1(ctx, "Reshape",
                             (const char *[]){ md_onnx_value(ctx, b), shape_const(ctx, x->ndim - 1, cshape) }, 2,
                             NULL, 0) }, 2, NULL, 0);
    if (!v || md_onnx_bind(ctx, y, v)) return NULL;
    return y;
}

md_tensor *md__onnx_unary(md_ctx *ctx, md_tensor *y, const char *op, md_tensor *a) {
    const char *v = md_onnx_value(ctx, a);
    return emit(ctx, y, op, &v, 1, NULL, 0);
}

md_tensor *md__onnx_binary(md_ctx *ctx, md_tensor *y, const char *op, md_tensor *a, md_tensor *b) {
    const char *ins[2] = { md_onnx_value(ctx, a), md_onnx_value(ctx, b) };
    return emit(ctx, y, op, ins, 2, NULL, 0);
}

md_tensor *md__onnx_scalar(md_ctx *ctx, md_tensor *y, const char *op, md_tensor *a, double s) {
    if (a->dtype != MD_F32) return md_op_fail(ctx, op, "export of a scalar op on a non-f32 tensor");
    float f = (float)s;
    const char *ins[2] = { md_onnx_value(ctx, a), md_onnx_const_f32(ctx, "scalar", 0, NULL, &f) };
    return emit(ctx, y, op, ins, 2, NULL, 0);
}

md_tensor *md__onnx_clamp(md_ctx *ctx, md_tensor *y, md_tensor *a, double lo, double hi) {
    float l = (float)lo, h = (float)hi;
    const char *ins[3] = { md_onnx_value(ctx, a), isinf(lo) ? "" : md_onnx_const_f32(ctx, "min", 0, NULL, &l),
                           isinf(hi) ? "" : md_onnx_const_f32(ctx, "max", 0, NULL, &h) };
    return emit(ctx, y, "Clip", ins, 3, NULL, 0);
}

md_tensor *md__onnx_max_pool(md_ctx *ctx, md_tensor *y, md_tensor *x, int kernel, int stride, int pad, bool ceil) {
    int64_t k[2] = { kernel, kernel }, st[2] = { stride, stride }, pads[4] = { pad, pad, pad, pad };
    md_onnx_attr at[] = { MD_ONNX_INT("ceil_mode", ceil), MD_ONNX_INTS("kernel_shape", k, 2),
                          MD_ONNX_INTS("pads", pads, 4), MD_ONNX_INTS("strides", st, 2) };
    const char *v = md_onnx_value(ctx, x);
    return emit(ctx, y, "MaxPool", &v, 1, at, 4);
}

/* PyTorch's nearest: src = floor(dst * in / out), ONNX Resize's
 * asymmetric coordinates with nearest_mode floor, to y's size. */
/* ref: the tensor whose size y takes (interpolate_nearest_like), read
 * with Shape in a dynamic graph; scale > 0: an integer upsampling, written
 * as scales in a dynamic graph (any size). Otherwise y's size, constant. */
md_tensor *md__onnx_resize_nearest(md_ctx *ctx, md_tensor *y, md_tensor *x, md_tensor *ref, int scale) {
    const char *roi = md_onnx_const_f32(ctx, "roi", 1, (int64_t[]){ 0 }, NULL);
    const char *scales = md_onnx_const_f32(ctx, "scales", 1, (int64_t[]){ 0 }, NULL), *sizes;
    const char *xv = md_onnx_value(ctx, x);
    if (ctx->onnx->dynamic && scale > 0) {
        float s[4] = { 1, 1, (float)scale, (float)scale };
        scales = md_onnx_const_f32(ctx, "scales", 1, (int64_t[]){ 4 }, s);
        sizes = NULL;
    } else if (ctx->onnx->dynamic && ref) {
        const char *rv = md_onnx_value(ctx, ref);
        sizes = md_onnx_concat(ctx, (const char *[]){ md_onnx_shape(ctx, xv, 0, 2), md_onnx_shape(ctx, rv, 2, 4) },
                               2, 0);
    } else {
        sizes = shape_const(ctx, 4, y->shape);
    }
    const char *ins[4] = { xv, roi, scales, sizes };
    md_onnx_attr at[] = { MD_ONNX_STRING("coordinate_transformation_mode", "asymmetric"),
                          MD_ONNX_STRING("mode", "nearest"), MD_ONNX_STRING("nearest_mode", "floor") };
    return emit(ctx, y, "Resize", ins, sizes ? 4 : 3, at, 3);
}

/* The shape as given (its -1 kept); in a dynamic graph a first dimension
 * equal to the input's is copied from it (0), as PyTorch traces
 * x.reshape(x.size(0), ...). */
md_tensor *md__onnx_reshape(md_ctx *ctx, md_tensor *y, md_tensor *a, int ndim, const int64_t *shape) {
    int64_t sh[MD_MAX_DIMS];
    for (int d = 0; d < ndim; d++) sh[d] = ctx->onnx->dynamic ? shape[d] : y->shape[d];
    if (ctx->onnx->dynamic && ndim > 0 && a->ndim > 0 && shape[0] == a->shape[0]) sh[0] = 0;
    const char *ins[2] = { md_onnx_value(ctx, a), shape_const(ctx, ndim, sh) };
    return emit(ctx, y, "Reshape", ins, 2, NULL, 0);
}

/* flatten(start, end) to two dimensions: ONNX Flatten(axis = start) (the
 * input's own sizes, so any batch); otherwise a reshape. */
md_tensor *md__onnx_flatten(md_ctx *ctx, md_tensor *y, md_tensor *a, int start, int end) {
    if (start == 1 && end == a->ndim - 1) {
        md_onnx_attr at = MD_ONNX_INT("axis", start);
        const char *v = md_onnx_value(ctx, a);
        return emit(ctx, y, "Flatten", &v, 1, &at, 1);
    }
    return md__onnx_reshape(ctx, y, a, y->ndim, y->shape);
}

/* Linear: Gemm (x w^T + b) on a matrix, as PyTorch exports nn.Linear;
 * MatMul with the transposed weight and Add past two dimensions. */
md_tensor *md__onnx_linear(md_ctx *ctx, md_tensor *y, md_tensor *x, md_tensor *w, md_tensor *b) {
    const char *xv = md_onnx_value(ctx, x), *wv = md_onnx_value(ctx, w), *bv = b ? md_onnx_value(ctx, b) : NULL;
    if (!xv || !wv || (b && !bv)) return NULL;
    if (x->ndim == 2) {
        md_onnx_attr at[] = { MD_ONNX_INT("transB", 1) };
        const char *ins[3] = { xv, wv, bv };
        return emit(ctx, y, "Gemm", ins, b ? 3 : 2, at, 1);
    }
    md_onnx_attr perm = MD_ONNX_INTS("perm", ((int64_t[]){ 1, 0 }), 2);
    const char *v = md_onnx_op2(ctx, "MatMul", xv, md_onnx_node1(ctx, "Transpose", &wv, 1, &perm, 1));
    if (b) v = md_onnx_op2(ctx, "Add", v, bv);
    if (!v || md_onnx_bind(ctx, y, v)) return NULL;
    return y;
}

/* Softmax along dim. Before opset 13 ONNX's Softmax normalises the input
 * coerced to 2D from axis on: the same only for the last axis, so another
 * axis goes through a transpose to the end and back. */
md_tensor *md__onnx_softmax(md_ctx *ctx, md_tensor *y, md_tensor *a, int dim) {
    int d = dim < 0 ? dim + a->ndim : dim;
    const char *v = md_onnx_value(ctx, a);
    if (ctx->onnx->opset >= 13 || d == a->ndim - 1) {
        md_onnx_attr at = MD_ONNX_INT("axis", d);
        return emit(ctx, y, "Softmax", &v, 1, &at, 1);
    }
    int64_t p[MD_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) p[i] = i;
    p[d] = a->ndim - 1, p[a->ndim - 1] = d;
    md_onnx_attr perm = MD_ONNX_INTS("perm", p, a->ndim), ax = MD_ONNX_INT("axis", a->ndim - 1);
    v = md_onnx_node1(ctx, "Transpose", &v, 1, &perm, 1);
    v = md_onnx_node1(ctx, "Softmax", &v, 1, &ax, 1);
    return emit(ctx, y, "Transpose", &v, 1, &perm, 1);
}

md_tensor *md__onnx_permute(md_ctx *ctx, md_tensor *y, md_tensor *a, const int *perm) {
    int64_t p[MD_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) p[d] = perm[d] < 0 ? perm[d] + a->ndim : perm[d];
    md_onnx_attr at[] = { MD_ONNX_INTS("perm", p, a->ndim) };
    const char *v = md_onnx_value(ctx, a);
    return emit(ctx, y, "Transpose", &v, 1, at, 1);
}

md_tensor *md__onnx_cat(md_ctx *ctx, md_tensor *y, md_tensor *const *ts, int n, int dim) {
    const char **ins = md_ctx_alloc(ctx, sizeof *ins * (size_t)(n ? n : 1));
    if (!ins) return NULL;
    for (int i = 0; i < n; i++)
        if (!(ins[i] = md_onnx_value(ctx, ts[i]))) return NULL;
    md_onnx_attr at[] = { MD_ONNX_INT("axis", dim < 0 ? dim + y->ndim : dim) };
    return emit(ctx, y, "Concat", ins, n, at, 1);
}

/* A result that is its input's value (contiguous copies, views of all). */
md_tensor *md__onnx_alias(md_ctx *ctx, md_tensor *y, md_tensor *a) {
    const char *v = md_onnx_value(ctx, a);
    if (!v || md_onnx_bind(ctx, y, v)) return NULL;
    return y;
}
