/* Modules: named parameters, buffers and children; state dicts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

MD_API void *md_module_new(size_t size, const md_module_class *cls) {
    if (size < sizeof(md_module)) return NULL;
    md_module *m = calloc(1, size);
    if (!m) return NULL;
    m->cls = cls;
    m->training = true;
    return m;
}

void *md__base_module_new(const md_module_class *mc, size_t size, size_t base_size, bool complete, const char *needs,
                          md_error *err) {
    if (size < base_size || !complete) {
        md_failc(err, MD_ERR_PLUGIN, "%s: %s", mc->name, needs);
        return NULL;
    }
    void *m = md_module_new(size, mc);
    if (!m) md_failc(err, MD_ERR_NOMEM, "out of memory");
    return m;
}

MD_API void md_module_free(md_module *m) {
    if (!m) return;
    if (m->cls && m->cls->destroy) m->cls->destroy(m);
    for (int i = 0; i < m->n_children; i++) {
        md_module_free(m->children[i].m);
        free(m->children[i].name);
    }
    for (int i = 0; i < m->n_params; i++) {
        md_tensor_free(m->params[i].t);
        free(m->params[i].name);
    }
    for (int i = 0; i < m->n_buffers; i++) {
        md_tensor_free(m->buffers[i].t);
        free(m->buffers[i].name);
    }
    free(m->children);
    free(m->params);
    free(m->buffers);
    free(m);
}

static int grow(void **arr, int *cap, int n, size_t elem) {
    if (n < *cap) return 0;
    int c = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, elem * (size_t)c);
    if (!p) return -1;
    *arr = p;
    *cap = c;
    return 0;
}

static md_tensor *add_entry(md_ctx *ctx, md_module_entry **arr, int *n, int *cap, const char *name,
                            md_dtype dt, int ndim, const int64_t *shape, md_error *err) {
    if (grow((void **)arr, cap, *n, sizeof **arr) != 0) {
        md_failc(err, MD_ERR_NOMEM, "out of memory adding %s", name);
        return NULL;
    }
    md_tensor *t = md_tensor_new_persistent(ctx, dt, ndim, shape, err);
    if (!t) return NULL;
    char *nm = strdup(name);
    if (!nm) {
        md_tensor_free(t);
        md_failc(err, MD_ERR_NOMEM, "out of memory adding %s", name);
        return NULL;
    }
    t->name = nm;
    (*arr)[(*n)++] = (md_module_entry){ nm, t };
    return t;
}

MD_API md_tensor *md_module_add_param(md_ctx *ctx, md_module *m, const char *name, int ndim,
                                      const int64_t *shape, md_error *err) {
    md_tensor *t = add_entry(ctx, &m->params, &m->n_params, &m->cap_params, name, MD_F32, ndim, shape, err);
    if (t) t->requires_grad = true;
    return t;
}

MD_API md_tensor *md_module_add_buffer(md_ctx *ctx, md_module *m, const char *name, md_dtype dt, int ndim,
                                       const int64_t *shape, md_error *err) {
    return add_entry(ctx, &m->buffers, &m->n_buffers, &m->cap_buffers, name, dt, ndim, shape, err);
}

MD_API int md_module_add_child(md_module *m, const char *name, md_module *child, md_error *err) {
    if (!child) return md_fail(err, "module child %s is NULL", name);
    if (grow((void **)&m->children, &m->cap_children, m->n_children, sizeof *m->children) != 0)
        return md_failc(err, MD_ERR_NOMEM, "out of memory adding child %s", name);
    char *nm = strdup(name);
    if (!nm) return md_failc(err, MD_ERR_NOMEM, "out of memory adding child %s", name);
    m->children[m->n_children++] = (md_module_link){ nm, child };
    return 0;
}

MD_API md_module *md_module_child(const md_module *m, const char *name) {
    for (int i = 0; i < m->n_children; i++)
        if (!strcmp(m->children[i].name, name)) return m->children[i].m;
    return NULL;
}

MD_API void md_module_train(md_module *m, bool training) {
    m->training = training;
    for (int i = 0; i < m->n_children; i++) md_module_train(m->children[i].m, training);
    if (m->cls && m->cls->on_train) m->cls->on_train(m, training);
}

static int visit(md_module *m, char *name, size_t len, size_t cap, md_module_visit_fn fn, void *user) {
    int rc;
    for (int pass = 0; pass < 2; pass++) {
        md_module_entry *arr = pass ? m->buffers : m->params;
        int n = pass ? m->n_buffers : m->n_params;
        for (int i = 0; i < n; i++) {
            snprintf(name + len, cap - len, "%s%s", len ? "." : "", arr[i].name);
            if ((rc = fn(name, arr[i].t, pass == 0, user)) != 0) return rc;
        }
    }
    for (int i = 0; i < m->n_children; i++) {
        size_t k = len + (size_t)snprintf(name + len, cap - len, "%s%s", len ? "." : "", m->children[i].name);
        if (k >= cap) k = cap - 1;
        if ((rc = visit(m->children[i].m, name, k, cap, fn, user)) != 0) return rc;
        name[len] = 0;
    }
    name[len] = 0;
    return 0;
}

MD_API int md_module_visit(md_module *m, const char *prefix, md_module_visit_fn fn, void *user) {
    char name[1024];
    snprintf(name, sizeof name, "%s", prefix ? prefix : "");
    return visit(m, name, strlen(name), sizeof name, fn, user);
}

struct find_ctx { const char *want; md_tensor *found; };
static int find_cb(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)is_param;
    struct find_ctx *f = user;
    if (strcmp(name, f->want)) return 0;
    f->found = t;
    return 1;
}

MD_API md_tensor *md_module_find(md_module *m, const char *name) {
    struct find_ctx f = { name, NULL };
    md_module_visit(m, "", find_cb, &f);
    return f.found;
}

struct count_ctx { bool trainable_only; int64_t n; };
static int count_cb(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)name;
    struct count_ctx *c = user;
    if (is_param && (!c->trainable_only || t->requires_grad)) c->n += md_tensor_numel(t);
    return 0;
}

MD_API int64_t md_module_num_params(md_module *m, bool trainable_only) {
    struct count_ctx c = { trainable_only, 0 };
    md_module_visit(m, "", count_cb, &c);
    return c.n;
}

struct save_ctx { md_st_writer *w; md_error *err; };
static int save_cb(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)is_param;
    struct save_ctx *s = user;
    return md_st_writer_add(s->w, name, t, s->err) ? -1 : 0;
}

MD_API int md_module_save_state(md_module *m, md_st_writer *w, const char *prefix, md_error *err) {
    struct save_ctx s = { w, err };
    return md_module_visit(m, prefix, save_cb, &s) ? -1 : 0;
}

struct load_ctx {
    md_ctx *ctx;
    const md_st *st;
    const char *strip;
    bool *used;
    md_load_report *rep;
    bool strict;
    md_error *err;
    const md_module *root;   /* the model: legacy_name along a tensor's path */
};

/* Appends the line "<head><name>" ("missing: x", "size mismatch for x: ..."). */
static void report_add(md_load_report *r, const char *head, const char *name) {
    size_t k = strlen(r->text);
    if (k + strlen(head) + strlen(name) + 2 < sizeof r->text)
        snprintf(r->text + k, sizeof r->text - k, "%s%s%s", k ? "\n" : "", head, name);
    else
        r->omitted++;
}

static int st_lookup(const md_st *st, const char *strip, const char *name) {
    size_t sl = strip ? strlen(strip) : 0;
    for (int i = 0; i < md_st_count(st); i++) {
        const char *n = md_st_name(st, i);
        if (sl && !strncmp(n, strip, sl)) n += sl;
        if (!strcmp(n, name)) return i;
    }
    return -1;
}

/* The checkpoint entry of `name` under an older name: the classes along
 * its path from root (outermost first) are asked (legacy_name); -1 when
 * none knows one the checkpoint has. */
static int legacy_lookup(const md_module *root, const md_st *st, const char *strip, const char *name) {
    const md_module *m = root;
    size_t at = 0;   /* name[0, at) is m's path with its trailing '.' */
    char prefix[1024], buf[1024];
    while (m) {
        if (m->cls && m->cls->legacy_name && at < sizeof prefix) {
            memcpy(prefix, name, at);
            prefix[at] = 0;
            if (m->cls->legacy_name(m, prefix, name + at, st, strip, buf, sizeof buf)) {
                int i = st_lookup(st, strip, buf);
                if (i >= 0) return i;
            }
        }
        const char *dot = strchr(name + at, '.');
        if (!dot) break;
        size_t len = (size_t)(dot - (name + at));
        const md_module *next = NULL;
        for (int c = 0; c < m->n_children && !next; c++)
            if (strlen(m->children[c].name) == len && !strncmp(m->children[c].name, name + at, len))
                next = m->children[c].m;
        m = next;
        at += len + 1;
    }
    return -1;
}

static int load_cb(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)is_param;
    struct load_ctx *l = user;
    int i = st_lookup(l->st, l->strip, name);
    if (i < 0) i = legacy_lookup(l->root, l->st, l->strip, name);
    if (i < 0) {
        l->rep->missing++;
        report_add(l->rep, "missing: ", name);
        return 0;
    }
    l->used[i] = true;
    md_tensor src = { 0 };
    src.dtype = md_st_dtype(l->st, i);
    src.ndim = md_st_shape(l->st, i, src.shape);
    md__set_contiguous_strides(&src);
    src.data = (void *)md_st_data(l->st, i);
    bool same = md_tensor_numel(&src) == md_tensor_numel(t) && (src.ndim == t->ndim || md_tensor_numel(t) == 1);
    for (int d = 0; same && d < t->ndim && src.ndim == t->ndim; d++) same = src.shape[d] == t->shape[d];
    if (!same) {
        char a[96], b[96], line[512];
        snprintf(line, sizeof line, "%s: the checkpoint has %s, the model expects %s", name,
                 md_tensor_describe(&src, a, sizeof a), md_tensor_describe(t, b, sizeof b));
        if (l->strict) return md_failc(l->err, MD_ERR_SHAPE, "size mismatch for %s", line);
        l->rep->mismatched++;
        report_add(l->rep, "size mismatch for ", line);
        return 0;
    }
    /* safetensors entries are packed: copy a misaligned one aside before
     * reading it element by element */
    void *aligned = NULL;
    size_t bytes = (size_t)md_tensor_numel(&src) * md_dtype_size(src.dtype);
    if ((uintptr_t)src.data % md_dtype_size(src.dtype)) {
        aligned = malloc(bytes ? bytes : 1);
        if (!aligned) return md_failc(l->err, MD_ERR_NOMEM, "out of memory loading %s", name);
        memcpy(aligned, src.data, bytes);
        src.data = aligned;
    }
    int rc = md_tensor_copy_(l->ctx, t, &src);
    free(aligned);
    if (rc != 0) {
        *l->err = *md_ctx_error(l->ctx);
        return -1;
    }
    l->rep->loaded++;
    return 0;
}

MD_API int md_module_load_state(md_ctx *ctx, md_module *m, const md_st *st, const char *strip_prefix,
                                bool strict, md_load_report *report, md_error *err) {
    md_load_report local;
    if (!report) report = &local;
    memset(report, 0, sizeof *report);
    int n = md_st_count(st);
    bool *used = calloc((size_t)(n ? n : 1), sizeof *used);
    if (!used) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    struct load_ctx l = { ctx, st, strip_prefix, used, report, strict, err, m };
    int rc = md_module_visit(m, "", load_cb, &l);
    for (int i = 0; rc == 0 && i < n; i++)
        if (!used[i]) {
            report->unexpected++;
            report_add(report, "unexpected: ", md_st_name(st, i));
        }
    free(used);
    if (rc != 0) return -1;
    if (strict && (report->missing || report->unexpected))
        return md_failc(err, MD_ERR_CONFIG, "state dict mismatch (%d missing, %d unexpected):\n%s",
                        report->missing, report->unexpected, report->text);
    return 0;
}

/* Removes the report lines that start with `head` (and end with `tail`
 * when not NULL). */
void md__load_report_drop(md_load_report *r, const char *head, const char *tail) {
    char *src = r->text, *dst = src;
    size_t hl = strlen(head), tl = tail ? strlen(tail) : 0;
    while (*src) {
        char *nl = strchr(src, '\n');
        size_t len = nl ? (size_t)(nl - src) + 1 : strlen(src);
        size_t body = nl ? len - 1 : len;
        bool drop = !strncmp(src, head, hl) && (!tail || (body >= tl && !strncmp(src + body - tl, tail, tl)));
        if (!drop) {
            memmove(dst, src, len);
            dst += len;
        }
        src += len;
    }
    *dst = 0;
    if (dst > r->text && dst[-1] == '\n') dst[-1] = 0;
}

struct bn_count { const md_st *st; const char *strip; int missing; };

static int bn_cb(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)t, (void)is_param;
    struct bn_count *c = user;
    size_t n = strlen(name), sl = c->strip ? strlen(c->strip) : 0;
    if (n < 19 || strcmp(name + n - 19, "num_batches_tracked")) return 0;
    for (int i = 0; i < md_st_count(c->st); i++) {
        const char *k = md_st_name(c->st, i);
        if (sl && !strncmp(k, c->strip, sl)) k += sl;
        if (!strcmp(k, name)) return 0;
    }
    c->missing++;
    return 0;
}

/* mmcv's load_state_dict does not report missing num_batches_tracked
 * buffers (checkpoints of torch < 0.4.1, e.g. older torchvision weights,
 * have none); they keep their value. */
void md__report_ignore_bn_counters(md_module *m, const md_st *st, const char *strip, md_load_report *r) {
    struct bn_count c = { st, strip, 0 };
    md_module_visit(m, "", bn_cb, &c);
    if (!c.missing) return;
    r->missing -= c.missing;
    md__load_report_drop(r, "missing: ", "num_batches_tracked");
}
