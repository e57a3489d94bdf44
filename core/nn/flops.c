/* The FLOPs collector (flops.h): counts per module path, in the order
 * they were first seen. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"

struct md_flops {
    md_flops_entry *e;
    int n, cap;
};

MD_API md_flops *md_flops_new(md_error *err) {
    md_flops *f = calloc(1, sizeof *f);
    if (!f) md_failc(err, MD_ERR_NOMEM, "out of memory");
    return f;
}

MD_API void md_flops_free(md_flops *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) {
        free((char *)f->e[i].path);
        free((char *)f->e[i].type);
    }
    free(f->e);
    free(f);
}

MD_API void md_flops_attach(md_ctx *ctx, md_flops *f) { ctx->flops = f; }
MD_API bool md_flops_on(const md_ctx *ctx) { return ctx->flops != NULL; }

/* The entry of `path`, made when new; NULL when out of memory (the count
 * is then lost, which only a report could notice). */
static md_flops_entry *entry(md_flops *f, const char *path, const char *type) {
    for (int i = f->n - 1; i >= 0; i--)
        if (!strcmp(f->e[i].path, path)) return &f->e[i];
    if (f->n == f->cap) {
        int cap = f->cap ? 2 * f->cap : 64;
        md_flops_entry *e = realloc(f->e, sizeof *e * (size_t)cap);
        if (!e) return NULL;
        f->e = e;
        f->cap = cap;
    }
    char *p = strdup(path), *t = strdup(type ? type : "");
    if (!p || !t) {
        free(p);
        free(t);
        return NULL;
    }
    f->e[f->n] = (md_flops_entry){ p, t, 0 };
    return &f->e[f->n++];
}

MD_API void md_flops_add(md_ctx *ctx, const char *name, const char *type, int64_t flops) {
    md_flops *f = ctx->flops;
    if (!f) return;
    char path[sizeof ctx->scope + 64];
    const char *s = ctx->scope;
    if (name && *name) snprintf(path, sizeof path, "%s%s%s", s, *s ? "." : "", name);
    else snprintf(path, sizeof path, "%s", s);
    md_flops_entry *e = entry(f, path, type);
    if (e) e->flops += flops;
}

MD_API void md_flops_relu(md_ctx *ctx, const char *name, const md_tensor *out) {
    if (ctx->flops && out) md_flops_add(ctx, name, "ReLU", md_tensor_numel(out));
}

MD_API void md_flops_pool(md_ctx *ctx, const char *name, const char *type, const md_tensor *in) {
    if (ctx->flops && in) md_flops_add(ctx, name, type, md_tensor_numel(in));
}

MD_API int md_flops_count(const md_flops *f) { return f ? f->n : 0; }

MD_API const md_flops_entry *md_flops_get(const md_flops *f, int i) {
    return f && i >= 0 && i < f->n ? &f->e[i] : NULL;
}

MD_API int64_t md_flops_total(const md_flops *f, const char *path) {
    size_t k = path ? strlen(path) : 0;
    int64_t sum = 0;
    for (int i = 0; f && i < f->n; i++) {
        const char *p = f->e[i].path;
        if (!k || (!strncmp(p, path, k) && (p[k] == 0 || p[k] == '.'))) sum += f->e[i].flops;
    }
    return sum;
}
