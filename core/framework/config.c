/* Config trees: nodes, navigation, typed reads and tree building.
 * Loading lives in config_load.c, --cfg-options in config_options.c, the
 * dump in config_dump.c and key schemas in config_schema.c. */
#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "config_internal.h"

/* ---- nodes ---- */

md_cfg *md__cfg_node(md_cfg_type t, const char *name, const char *file, int line) {
    md_cfg *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->type = t;
    c->line = line;
    if ((name && !(c->name = strdup(name))) || (file && !(c->file = strdup(file)))) {
        free(c->name);
        free(c);
        return NULL;
    }
    return c;
}

void md__cfg_destroy(md_cfg *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) md__cfg_destroy(c->kids[i]);
    free(c->kids);
    if (c->type == MD_CFG_STRING) free(c->v.s);
    free(c->name);
    free(c->file);
    free(c);
}

int md__cfg_adopt(md_cfg *p, md_cfg *kid) {
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 4;
        md_cfg **k = realloc(p->kids, (size_t)cap * sizeof *k);
        if (!k) return -1;
        p->kids = k;
        p->cap = cap;
    }
    p->kids[p->n++] = kid;
    kid->parent = p;
    return 0;
}

void md__cfg_replace_at(md_cfg *p, int i, md_cfg *kid) {
    md__cfg_destroy(p->kids[i]);
    p->kids[i] = kid;
    kid->parent = p;
}

int md__cfg_find(const md_cfg *g, const char *key) {
    if (!g || g->type != MD_CFG_GROUP || !key) return -1;
    for (int i = 0; i < g->n; i++)
        if (g->kids[i]->name && strcmp(g->kids[i]->name, key) == 0) return i;
    return -1;
}

md_cfg *md__cfg_put(md_cfg *g, md_cfg *kid) {
    int i = md__cfg_find(g, kid->name);
    if (i >= 0) {
        md__cfg_replace_at(g, i, kid);
        return kid;
    }
    if (md__cfg_adopt(g, kid) < 0) {
        md__cfg_destroy(kid);
        return NULL;
    }
    return kid;
}

md_cfg *md__cfg_copy(const md_cfg *src, const char *name, bool strip_delete) {
    md_cfg *c = md__cfg_node(src->type, name, src->file, src->line);
    if (!c) return NULL;
    if (src->type == MD_CFG_STRING) {
        if (!(c->v.s = strdup(src->v.s ? src->v.s : ""))) { free(c->name); free(c->file); free(c); return NULL; }
    } else {
        c->v = src->v;
    }
    for (int i = 0; i < src->n; i++) {
        const md_cfg *k = src->kids[i];
        if (strip_delete && src->type == MD_CFG_GROUP && k->name && strcmp(k->name, "delete_") == 0) continue;
        md_cfg *kc = md__cfg_copy(k, k->name, strip_delete);
        if (!kc || md__cfg_adopt(c, kc) < 0) {
            md__cfg_destroy(kc);
            md__cfg_destroy(c);
            return NULL;
        }
    }
    return c;
}

bool md__cfg_valid_name(const char *s) {
    if (!s || !(isalpha((unsigned char)*s) || *s == '*')) return false;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '-' || *s == '_' || *s == '*')) return false;
    return true;
}

bool md__cfg_truthy(const md_cfg *c) {
    switch (c->type) {
    case MD_CFG_NONE: return false;
    case MD_CFG_INT: return c->v.i != 0;
    case MD_CFG_FLOAT: return c->v.f != 0;
    case MD_CFG_BOOL: return c->v.b;
    case MD_CFG_STRING: return c->v.s && c->v.s[0];
    default: return c->n > 0;
    }
}

MD_API const char *md_cfg_where(const md_cfg *c, char *buf, size_t n) {
    if (c && c->file && c->line > 0) snprintf(buf, n, "%s:%d", c->file, c->line);
    else if (c && c->file) snprintf(buf, n, "%s", c->file);
    else snprintf(buf, n, "<config>");
    return buf;
}

MD_API const char *md_cfg_type_name(md_cfg_type t) {
    switch (t) {
    case MD_CFG_NONE: return "None";
    case MD_CFG_INT: return "int";
    case MD_CFG_FLOAT: return "float";
    case MD_CFG_BOOL: return "bool";
    case MD_CFG_STRING: return "string";
    case MD_CFG_GROUP: return "group";
    case MD_CFG_LIST: return "list";
    }
    return "?";
}

MD_API void md_cfg_free(md_cfg *root) {
    if (!root) return;
    md_cfg *p = root->parent;
    if (p) { /* a child handed in by mistake: detach it first */
        for (int i = 0; i < p->n; i++)
            if (p->kids[i] == root) {
                memmove(p->kids + i, p->kids + i + 1, (size_t)(p->n - i - 1) * sizeof *p->kids);
                p->n--;
                break;
            }
    }
    md__cfg_destroy(root);
}

MD_API md_cfg *md_cfg_clone(const md_cfg *node) {
    return node ? md__cfg_copy(node, NULL, false) : NULL;
}

MD_API md_cfg *md_cfg_new_group(void) { return md__cfg_node(MD_CFG_GROUP, NULL, NULL, 0); }

MD_API bool md_cfg_equal(const md_cfg *a, const md_cfg *b) {
    if (!a || !b) return a == b;
    if (a->type != b->type || a->n != b->n) return false;
    switch (a->type) {
    case MD_CFG_INT: return a->v.i == b->v.i;
    case MD_CFG_FLOAT: return a->v.f == b->v.f || (a->v.f != a->v.f && b->v.f != b->v.f);
    case MD_CFG_BOOL: return a->v.b == b->v.b;
    case MD_CFG_STRING: return strcmp(a->v.s, b->v.s) == 0;
    case MD_CFG_NONE: return true;
    case MD_CFG_LIST:
        for (int i = 0; i < a->n; i++)
            if (!md_cfg_equal(a->kids[i], b->kids[i])) return false;
        return true;
    case MD_CFG_GROUP: /* dicts: same keys and values, order free */
        for (int i = 0; i < a->n; i++) {
            int j = md__cfg_find(b, a->kids[i]->name);
            if (j < 0 || !md_cfg_equal(a->kids[i], b->kids[j])) return false;
        }
        return true;
    }
    return false;
}

/* ---- navigation ---- */

MD_API md_cfg_type md_cfg_kind(const md_cfg *c) { return c ? c->type : MD_CFG_NONE; }
MD_API bool md_cfg_is_none(const md_cfg *c) { return !c || c->type == MD_CFG_NONE; }
MD_API const char *md_cfg_name(const md_cfg *c) { return c ? c->name : NULL; }
MD_API int md_cfg_len(const md_cfg *c) {
    return c && (c->type == MD_CFG_GROUP || c->type == MD_CFG_LIST) ? c->n : 0;
}
MD_API const md_cfg *md_cfg_at(const md_cfg *c, int i) {
    return c && i >= 0 && i < c->n ? c->kids[i] : NULL;
}
MD_API const md_cfg *md_cfg_parent(const md_cfg *c) { return c ? c->parent : NULL; }
MD_API const char *md_cfg_file(const md_cfg *c) { return c ? c->file : NULL; }
MD_API int md_cfg_line(const md_cfg *c) { return c ? c->line : 0; }

/* A path part is a list index when it is all digits. */
static bool all_digits(const char *s, size_t n) {
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return false;
    return true;
}

MD_API md_cfg *md_cfg_get_mut(md_cfg *c, const char *path) {
    if (!c || !path) return NULL;
    const char *p = path;
    while (*p && c) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        md_cfg *next = NULL;
        if (c->type == MD_CFG_GROUP) {
            for (int i = 0; i < c->n; i++)
                if (strlen(c->kids[i]->name) == n && memcmp(c->kids[i]->name, p, n) == 0) { next = c->kids[i]; break; }
        } else if (c->type == MD_CFG_LIST && all_digits(p, n) && n < 10) {
            long idx = strtol(p, NULL, 10);
            if (idx < c->n) next = c->kids[idx];
        }
        c = next;
        if (!dot) break;
        p = dot + 1;
    }
    return c;
}

MD_API const md_cfg *md_cfg_get(const md_cfg *c, const char *path) {
    return md_cfg_get_mut((md_cfg *)c, path);
}

MD_API bool md_cfg_has(const md_cfg *c, const char *path) { return md_cfg_get(c, path) != NULL; }

MD_API const char *md_cfg_path(const md_cfg *c, char *buf, size_t n) {
    if (!buf || n == 0) return buf;
    buf[0] = 0;
    if (!c) return buf;
    /* Collect the chain root-wards, then write it root-first. */
    const md_cfg *chain[256];
    int depth = 0;
    for (const md_cfg *x = c; x->parent && depth < 256; x = x->parent) chain[depth++] = x;
    size_t len = 0;
    for (int d = depth - 1; d >= 0; d--) {
        const md_cfg *x = chain[d];
        char part[32];
        const char *s = x->name;
        if (!s) {
            int idx = 0;
            for (int i = 0; i < x->parent->n; i++)
                if (x->parent->kids[i] == x) { idx = i; break; }
            snprintf(part, sizeof part, "%d", idx);
            s = part;
        }
        int w = snprintf(buf + len, n - len, "%s%s", len ? "." : "", s);
        if (w < 0 || (size_t)w >= n - len) break;
        len += (size_t)w;
    }
    return buf;
}

/* ---- scalar values ---- */

MD_API int64_t md_cfg_as_int(const md_cfg *c) {
    if (!c) return 0;
    switch (c->type) {
    case MD_CFG_INT: return c->v.i;
    case MD_CFG_BOOL: return c->v.b;
    case MD_CFG_FLOAT: return (int64_t)c->v.f;
    default: return 0;
    }
}

MD_API double md_cfg_as_float(const md_cfg *c) {
    if (!c) return 0;
    switch (c->type) {
    case MD_CFG_INT: return (double)c->v.i;
    case MD_CFG_FLOAT: return c->v.f;
    case MD_CFG_BOOL: return c->v.b;
    default: return 0;
    }
}

MD_API bool md_cfg_as_bool(const md_cfg *c) {
    if (!c) return false;
    switch (c->type) {
    case MD_CFG_BOOL: return c->v.b;
    case MD_CFG_INT: return c->v.i != 0;
    case MD_CFG_FLOAT: return c->v.f != 0;
    default: return false;
    }
}

MD_API const char *md_cfg_as_str(const md_cfg *c) {
    return c && c->type == MD_CFG_STRING ? c->v.s : NULL;
}

/* Absent keys and None both mean "use the default" for the numeric reads. */
static const md_cfg *present(const md_cfg *g, const char *key) {
    const md_cfg *c = md_cfg_get(g, key);
    return c && c->type != MD_CFG_NONE ? c : NULL;
}

MD_API int64_t md_cfg_int(const md_cfg *g, const char *key, int64_t dflt) {
    const md_cfg *c = present(g, key);
    return c ? md_cfg_as_int(c) : dflt;
}
MD_API double md_cfg_float(const md_cfg *g, const char *key, double dflt) {
    const md_cfg *c = present(g, key);
    return c ? md_cfg_as_float(c) : dflt;
}
MD_API bool md_cfg_bool(const md_cfg *g, const char *key, bool dflt) {
    const md_cfg *c = present(g, key);
    return c ? md_cfg_as_bool(c) : dflt;
}
/* None reads as NULL (Python's None), an absent key as the default. */
MD_API const char *md_cfg_str(const md_cfg *g, const char *key, const char *dflt) {
    const md_cfg *c = md_cfg_get(g, key);
    if (!c) return dflt;
    if (c->type == MD_CFG_NONE) return NULL;
    return c->type == MD_CFG_STRING ? c->v.s : dflt;
}

static int type_error(const md_cfg *c, const char *key, const char *want, md_error *err) {
    char w[1024];
    return md_failc(err, MD_ERR_CONFIG, "%s: %s: expected %s, got %s", md_cfg_where(c, w, sizeof w), key, want,
                    md_cfg_type_name(c->type));
}

static int num_array(const md_cfg *g, const char *key, int64_t *oi, double *of, int max, md_error *err) {
    const md_cfg *c = present(g, key);
    if (!c) return 0;
    const md_cfg *const *items = (const md_cfg *const *)&c;
    int n = 1;
    if (c->type == MD_CFG_LIST) {
        items = (const md_cfg *const *)c->kids;
        n = c->n;
    }
    if (n > max) {
        char w[1024];
        return md_failc(err, MD_ERR_CONFIG, "%s: %s: %d values, at most %d accepted", md_cfg_where(c, w, sizeof w), key,
                        n, max);
    }
    for (int i = 0; i < n; i++) {
        const md_cfg *x = items[i];
        if (oi) {
            if (x->type != MD_CFG_INT) return type_error(x, key, "integers", err);
            oi[i] = x->v.i;
        } else {
            if (x->type != MD_CFG_INT && x->type != MD_CFG_FLOAT) return type_error(x, key, "numbers", err);
            of[i] = md_cfg_as_float(x);
        }
    }
    return n;
}

MD_API int md_cfg_int_array(const md_cfg *g, const char *key, int64_t *out, int max, md_error *err) {
    return num_array(g, key, out, NULL, max, err);
}
MD_API int md_cfg_float_array(const md_cfg *g, const char *key, double *out, int max, md_error *err) {
    return num_array(g, key, NULL, out, max, err);
}

MD_API int md_cfg_read_int(const md_cfg *g, const char *key, int64_t *out, md_error *err) {
    const md_cfg *c = present(g, key);
    if (!c) return 1;
    if (c->type != MD_CFG_INT) return type_error(c, key, "int", err);
    *out = c->v.i;
    return 0;
}
MD_API int md_cfg_read_float(const md_cfg *g, const char *key, double *out, md_error *err) {
    const md_cfg *c = present(g, key);
    if (!c) return 1;
    if (c->type != MD_CFG_INT && c->type != MD_CFG_FLOAT) return type_error(c, key, "float", err);
    *out = md_cfg_as_float(c);
    return 0;
}
MD_API int md_cfg_read_bool(const md_cfg *g, const char *key, bool *out, md_error *err) {
    const md_cfg *c = present(g, key);
    if (!c) return 1;
    if (c->type != MD_CFG_BOOL) return type_error(c, key, "bool", err);
    *out = c->v.b;
    return 0;
}
MD_API int md_cfg_read_str(const md_cfg *g, const char *key, const char **out, md_error *err) {
    const md_cfg *c = present(g, key);
    if (!c) return 1;
    if (c->type != MD_CFG_STRING) return type_error(c, key, "string", err);
    *out = c->v.s;
    return 0;
}

/* ---- building ---- */

static md_cfg *set_node(md_cfg *g, const char *key, md_cfg_type t) {
    if (!g || g->type != MD_CFG_GROUP || !key) return NULL;
    md_cfg *c = md__cfg_node(t, key, NULL, 0);
    return c ? md__cfg_put(g, c) : NULL;
}

MD_API md_cfg *md_cfg_set_int(md_cfg *g, const char *key, int64_t v) {
    md_cfg *c = set_node(g, key, MD_CFG_INT);
    if (c) c->v.i = v;
    return c;
}
MD_API md_cfg *md_cfg_set_float(md_cfg *g, const char *key, double v) {
    md_cfg *c = set_node(g, key, MD_CFG_FLOAT);
    if (c) c->v.f = v;
    return c;
}
MD_API md_cfg *md_cfg_set_bool(md_cfg *g, const char *key, bool v) {
    md_cfg *c = set_node(g, key, MD_CFG_BOOL);
    if (c) c->v.b = v;
    return c;
}
MD_API md_cfg *md_cfg_set_str(md_cfg *g, const char *key, const char *v) {
    char *s = strdup(v ? v : "");
    if (!s) return NULL;
    md_cfg *c = set_node(g, key, MD_CFG_STRING);
    if (!c) { free(s); return NULL; }
    c->v.s = s;
    return c;
}
MD_API md_cfg *md_cfg_set_none(md_cfg *g, const char *key) { return set_node(g, key, MD_CFG_NONE); }
MD_API md_cfg *md_cfg_set_group(md_cfg *g, const char *key) { return set_node(g, key, MD_CFG_GROUP); }
MD_API md_cfg *md_cfg_set_list(md_cfg *g, const char *key) { return set_node(g, key, MD_CFG_LIST); }

MD_API md_cfg *md_cfg_set_copy(md_cfg *g, const char *key, const md_cfg *value) {
    if (!g || g->type != MD_CFG_GROUP || !key || !value) return NULL;
    md_cfg *c = md__cfg_copy(value, key, false);
    return c ? md__cfg_put(g, c) : NULL;
}

static md_cfg *append(md_cfg *l, md_cfg *c) {
    if (!c) return NULL;
    if (!l || l->type != MD_CFG_LIST || md__cfg_adopt(l, c) < 0) {
        md__cfg_destroy(c);
        return NULL;
    }
    return c;
}

MD_API md_cfg *md_cfg_append_copy(md_cfg *l, const md_cfg *value) {
    return value ? append(l, md__cfg_copy(value, NULL, false)) : NULL;
}
MD_API md_cfg *md_cfg_append_group(md_cfg *l) { return append(l, md__cfg_node(MD_CFG_GROUP, NULL, NULL, 0)); }
MD_API md_cfg *md_cfg_append_int(md_cfg *l, int64_t v) {
    md_cfg *c = append(l, md__cfg_node(MD_CFG_INT, NULL, NULL, 0));
    if (c) c->v.i = v;
    return c;
}
MD_API md_cfg *md_cfg_append_float(md_cfg *l, double v) {
    md_cfg *c = append(l, md__cfg_node(MD_CFG_FLOAT, NULL, NULL, 0));
    if (c) c->v.f = v;
    return c;
}
MD_API md_cfg *md_cfg_append_str(md_cfg *l, const char *v) {
    md_cfg *c = md__cfg_node(MD_CFG_STRING, NULL, NULL, 0);
    if (!c) return NULL;
    if (!(c->v.s = strdup(v ? v : ""))) { free(c); return NULL; }
    return append(l, c);
}

MD_API int md_cfg_remove(md_cfg *g, const char *key) {
    int i = md__cfg_find(g, key);
    if (i < 0) return -1;
    md__cfg_destroy(g->kids[i]);
    memmove(g->kids + i, g->kids + i + 1, (size_t)(g->n - i - 1) * sizeof *g->kids);
    g->n--;
    return 0;
}
