/* Loading configs: libconfig parsing into md_cfg trees, inheritance through
 * base_ (mmcv's _base_), the delete_ merge rule, and the {{...}} variables. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libconfig.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "config_internal.h"

#define MAX_DEPTH 64

/* ---- paths ---- */

/* Directory part of a path ("." when there is none); malloc'ed. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* Lexically normalises a path in place: "a/./b/../c" -> "a/c". */
static void normalize(char *p) {
    bool abs = p[0] == '/';
    char *parts[512];
    int n = 0, ups = 0;
    char *save = NULL;
    for (char *t = strtok_r(p, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (strcmp(t, ".") == 0) continue;
        if (strcmp(t, "..") == 0) {
            if (n > ups) { n--; continue; }
            if (abs) continue;
            ups++;
        }
        if (n < 512) parts[n++] = t;
    }
    char out[PATH_MAX * 2];
    size_t len = 0;
    out[0] = 0;
    if (abs) out[len++] = '/';
    for (int i = 0; i < n; i++) {
        size_t l = strlen(parts[i]);
        if (len + l + 2 >= sizeof out) break;
        if (i) out[len++] = '/';
        memcpy(out + len, parts[i], l);
        len += l;
    }
    if (len == 0) out[len++] = '.';
    out[len] = 0;
    memcpy(p, out, len + 1); /* never longer than the input */
}

/* `rel` relative to the directory of `from` (unless absolute); malloc'ed. */
static char *resolve(const char *from, const char *rel) {
    char *r;
    if (rel[0] == '/') {
        r = strdup(rel);
    } else {
        char *d = dir_of(from);
        if (!d) return NULL;
        if (asprintf(&r, "%s/%s", d, rel) < 0) r = NULL;
        free(d);
    }
    if (r) normalize(r);
    return r;
}

/* Absolute, normalised path (the file need not exist); malloc'ed. */
static char *abs_path(const char *path) {
    char *r;
    if (path[0] == '/') {
        r = strdup(path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, ".");
        if (asprintf(&r, "%s/%s", cwd, path) < 0) r = NULL;
    }
    if (r) normalize(r);
    return r;
}

/* ---- libconfig -> md_cfg ---- */

static md_cfg *convert(const config_setting_t *s, const char *file) {
    md_cfg_type t;
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT: case CONFIG_TYPE_INT64: t = MD_CFG_INT; break;
    case CONFIG_TYPE_FLOAT: t = MD_CFG_FLOAT; break;
    case CONFIG_TYPE_BOOL: t = MD_CFG_BOOL; break;
    case CONFIG_TYPE_STRING: t = MD_CFG_STRING; break;
    case CONFIG_TYPE_GROUP: t = MD_CFG_GROUP; break;
    default: t = MD_CFG_LIST; break;
    }
    /* List items have no name; included files keep their own name. */
    const char *name = s->parent && config_setting_is_group(s->parent) ? config_setting_name(s) : NULL;
    const char *f = config_setting_source_file(s);
    md_cfg *c = md__cfg_node(t, name, f ? f : file, config_setting_source_line(s));
    if (!c) return NULL;
    switch (t) {
    case MD_CFG_INT: c->v.i = config_setting_get_int64(s); break;
    case MD_CFG_FLOAT: c->v.f = config_setting_get_float(s); break;
    case MD_CFG_BOOL: c->v.b = config_setting_get_bool(s); break;
    case MD_CFG_STRING: {
        const char *v = config_setting_get_string(s);
        if (!(c->v.s = strdup(v ? v : ""))) { md__cfg_destroy(c); return NULL; }
        /* "None" is how a file spells Python's None (see docs/config.md). */
        if (strcmp(c->v.s, "None") == 0) {
            free(c->v.s);
            c->v.s = NULL;
            c->type = MD_CFG_NONE;
        }
        break;
    }
    default: {
        int n = config_setting_length(s);
        for (int i = 0; i < n; i++) {
            md_cfg *k = convert(config_setting_get_elem(s, (unsigned)i), file);
            if (!k || md__cfg_adopt(c, k) < 0) {
                md__cfg_destroy(k);
                md__cfg_destroy(c);
                return NULL;
            }
        }
    }
    }
    return c;
}

/* libconfig 1.5 reads an integer literal beyond 32 bits without its L
 * suffix as a silently wrong int (9999999999 -> 1410065407, larger -> -1).
 * Copies text with an L after every such literal that fits 64 bits, so it
 * reads as int64; a literal beyond 64 bits is an error naming its line.
 * Strings and comments are left alone. NULL with err set. */
static char *widen_int_literals(const char *text, const char *path, md_error *err) {
    size_t len = strlen(text), cap = len + len / 4 + 16, o = 0;
    char *out = malloc(cap);
    if (!out) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    int line = 1;
    for (size_t i = 0; i < len;) {
        char ch = text[i];
        size_t j = i + 1;
        if (ch == '"') {                                            /* a string, escapes included */
            while (j < len && text[j] != '"') j += text[j] == '\\' && j + 1 < len ? 2 : 1;
            j = j < len ? j + 1 : len;
        } else if (ch == '#' || (ch == '/' && text[j] == '/')) {     /* to the end of the line */
            while (j < len && text[j] != '\n') j++;
        } else if (ch == '/' && text[j] == '*') {
            const char *e = strstr(text + j + 1, "*/");
            j = e ? (size_t)(e - text) + 2 : len;
        } else if (isdigit((unsigned char)ch) && !(i > 0 && (isalnum((unsigned char)text[i - 1]) ||
                                                           text[i - 1] == '_' || text[i - 1] == '.'))) {
            while (j < len && isdigit((unsigned char)text[j])) j++;
            bool neg = i > 0 && text[i - 1] == '-';
            char next = j < len ? text[j] : 0;
            if (next == '.' || (isalpha((unsigned char)next) && next != 'L')) {
                /* a float (1.5, 1e-3), a hex number or no number: copied whole */
                while (j < len && (isalnum((unsigned char)text[j]) || text[j] == '.' ||
                                   ((text[j] == '-' || text[j] == '+') && (text[j - 1] == 'e' || text[j - 1] == 'E'))))
                    j++;
            } else {
                char digits[32];
                size_t nd = j - i;
                unsigned long long v = 0;
                errno = 0;
                if (nd < sizeof digits) {
                    memcpy(digits, text + i, nd);
                    digits[nd] = 0;
                    v = strtoull(digits, NULL, 10);
                }
                unsigned long long max64 = (unsigned long long)INT64_MAX + neg, max32 = (unsigned long long)INT32_MAX + neg;
                if (nd >= sizeof digits || errno == ERANGE || v > max64) {
                    free(out);
                    md_failc(err, MD_ERR_PARSE, "%s:%d: the integer %s%.*s is out of range (64 bits at most)", path,
                             line, neg ? "-" : "", (int)(nd < 40 ? nd : 40), text + i);
                    return NULL;
                }
                if (next != 'L' && v > max32) {
                    if (o + nd + 2 > cap) {
                        char *n2 = realloc(out, cap = 2 * cap + nd + 2);
                        if (!n2) {
                            free(out);
                            md_failc(err, MD_ERR_NOMEM, "out of memory");
                            return NULL;
                        }
                        out = n2;
                    }
                    memcpy(out + o, text + i, nd);
                    o += nd;
                    out[o++] = 'L';
                    i = j;
                    continue;
                }
            }
        }
        if (o + (j - i) + 1 > cap) {
            char *n2 = realloc(out, cap = 2 * cap + (j - i) + 1);
            if (!n2) {
                free(out);
                md_failc(err, MD_ERR_NOMEM, "out of memory");
                return NULL;
            }
            out = n2;
        }
        for (size_t k = i; k < j; k++) line += text[k] == '\n';
        memcpy(out + o, text + i, j - i);
        o += j - i;
        i = j;
    }
    out[o] = 0;
    return out;
}

md_cfg *md__cfg_from_text(const char *text, const char *path, md_error *err) {
    config_t lc;
    config_init(&lc);
    char *dir = dir_of(path);
    config_set_include_dir(&lc, dir); /* @include "x.cfg" is relative to the file */
    md_cfg *root = NULL;
    char *wide = widen_int_literals(text, path, err);
    if (!wide) {
        config_destroy(&lc);
        free(dir);
        return NULL;
    }
    if (!config_read_string(&lc, wide)) {
        const char *f = config_error_file(&lc);
        md_failc(err, MD_ERR_PARSE, "%s:%d: %s", f ? f : path, config_error_line(&lc),
                 config_error_text(&lc) ? config_error_text(&lc) : "syntax error");
    } else {
        root = convert(config_root_setting(&lc), path);
        if (!root) md_failc(err, MD_ERR_NOMEM, "%s: out of memory", path);
        else root->line = 0;
    }
    config_destroy(&lc);
    free(wide);
    free(dir);
    return root;
}

/* ---- {{...}} variables ---- */

typedef struct var_ref {
    const char *start, *end; /* the whole "{{ name }}" */
    const char *name;        /* the name inside */
    size_t name_len;
} var_ref;

/* Finds the next "{{ name }}" (name of [A-Za-z0-9_.]) at or after p. */
static bool next_var(const char *p, var_ref *r) {
    for (const char *s = strstr(p, "{{"); s; s = strstr(s + 1, "{{")) {
        const char *q = s + 2;
        while (*q == ' ' || *q == '\t') q++;
        const char *n0 = q;
        while (isalnum((unsigned char)*q) || *q == '_' || *q == '.') q++;
        const char *n1 = q;
        while (*q == ' ' || *q == '\t') q++;
        if (n1 > n0 && q[0] == '}' && q[1] == '}') {
            *r = (var_ref){ s, q + 2, n0, (size_t)(n1 - n0) };
            return true;
        }
    }
    return false;
}

/* A base variable's dotted path inside the name, or NULL. mmcv's "_base_."
 * is accepted too, so pasted mmdet configs keep working. */
static const char *base_var_path(const var_ref *r) {
    if (r->name_len > 6 && strncmp(r->name, "base_.", 6) == 0) return r->name + 6;
    if (r->name_len > 7 && strncmp(r->name, "_base_.", 7) == 0) return r->name + 7;
    return NULL;
}

typedef struct file_vars { char *dirname, *basename, *noext, *ext; } file_vars;

static int file_vars_init(file_vars *v, const char *abs) {
    const char *slash = strrchr(abs, '/');
    const char *base = slash ? slash + 1 : abs;
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base) dot = base + strlen(base); /* splitext: ".bashrc" has no extension */
    v->dirname = slash ? (slash == abs ? strdup("/") : strndup(abs, (size_t)(slash - abs))) : strdup("");
    v->basename = strdup(base);
    v->noext = strndup(base, (size_t)(dot - base));
    v->ext = strdup(dot);
    return v->dirname && v->basename && v->noext && v->ext ? 0 : -1;
}

static void file_vars_free(file_vars *v) {
    free(v->dirname);
    free(v->basename);
    free(v->noext);
    free(v->ext);
}

static const char *predefined(const file_vars *v, const var_ref *r) {
#define IS(s) (r->name_len == strlen(s) && strncmp(r->name, s, r->name_len) == 0)
    if (IS("fileDirname")) return v->dirname;
    if (IS("fileBasename")) return v->basename;
    if (IS("fileBasenameNoExtension")) return v->noext;
    if (IS("fileExtname")) return v->ext;
    return NULL;
#undef IS
}

/* Growable string. */
typedef struct sbuf { char *s; size_t len, cap; bool oom; } sbuf;
static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *t = realloc(b->s, cap);
        if (!t) { b->oom = true; return; }
        b->s = t;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

/* Replaces the predefined variables in every string of the tree. */
static int subst_predefined(md_cfg *c, const file_vars *fv, md_error *err) {
    if (c->type == MD_CFG_STRING && strstr(c->v.s, "{{")) {
        sbuf b = { 0 };
        const char *p = c->v.s;
        var_ref r;
        while (next_var(p, &r)) {
            const char *val = predefined(fv, &r);
            sb_add(&b, p, (size_t)((val ? r.start : r.end) - p));
            if (val) sb_add(&b, val, strlen(val));
            p = r.end;
        }
        sb_add(&b, p, strlen(p));
        if (b.oom) { free(b.s); return md_failc(err, MD_ERR_NOMEM, "out of memory"); }
        free(c->v.s);
        c->v.s = b.s ? b.s : strdup("");
    }
    for (int i = 0; i < c->n; i++)
        if (subst_predefined(c->kids[i], fv, err) < 0) return -1;
    return 0;
}

/* Text of a scalar for a variable embedded in a longer string. */
static int scalar_text(const md_cfg *v, char *buf, size_t n, const char **out) {
    switch (v->type) {
    case MD_CFG_INT: snprintf(buf, n, "%" PRId64, v->v.i); break;
    case MD_CFG_FLOAT:
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, n, "%.*g", prec, v->v.f);
            if (strtod(buf, NULL) == v->v.f) break;
        }
        break;
    case MD_CFG_BOOL: snprintf(buf, n, "%s", v->v.b ? "true" : "false"); break;
    case MD_CFG_NONE: snprintf(buf, n, "None"); break;
    case MD_CFG_STRING: *out = v->v.s; return 0;
    default: return -1;
    }
    *out = buf;
    return 0;
}

static const md_cfg *lookup_base(const md_cfg *bases, const md_cfg *at, const var_ref *r, md_error *err) {
    char path[512], w[1024];
    const char *p = base_var_path(r);
    size_t n = r->name_len - (size_t)(p - r->name);
    snprintf(path, sizeof path, "%.*s", (int)n, p);
    const md_cfg *v = bases ? md_cfg_get(bases, path) : NULL;
    if (!v)
        md_failc(err, MD_ERR_CONFIG, "%s: {{%.*s}}: '%s' is not defined in the %s", md_cfg_where(at, w, sizeof w),
                 (int)r->name_len, r->name, path, bases ? "merged bases" : "bases (this file has no base_)");
    return v;
}

/* Replaces {{base_.a.b}} references in the tree: a string that is exactly one
 * reference takes the value with its type, a longer one its text. */
static int subst_base(md_cfg *c, const md_cfg *bases, md_error *err) {
    for (int i = 0; i < c->n; i++) {
        md_cfg *k = c->kids[i];
        if (k->type != MD_CFG_STRING) {
            if (subst_base(k, bases, err) < 0) return -1;
            continue;
        }
        var_ref r;
        const char *s = k->v.s;
        while (*s == ' ' || *s == '\t') s++;
        if (next_var(s, &r) && r.start == s && base_var_path(&r) && r.end[strspn(r.end, " \t")] == 0) {
            const md_cfg *v = lookup_base(bases, k, &r, err);
            if (!v) return -1;
            md_cfg *copy = md__cfg_copy(v, k->name, false);
            if (!copy) return md_failc(err, MD_ERR_NOMEM, "out of memory");
            free(copy->file);
            copy->file = k->file ? strdup(k->file) : NULL; /* where it is used */
            copy->line = k->line;
            md__cfg_replace_at(c, i, copy);
            continue;
        }
        if (!strstr(k->v.s, "{{")) continue;
        sbuf b = { 0 };
        const char *p = k->v.s;
        bool changed = false;
        while (next_var(p, &r)) {
            if (!base_var_path(&r)) {
                sb_add(&b, p, (size_t)(r.end - p));
                p = r.end;
                continue;
            }
            const md_cfg *v = lookup_base(bases, k, &r, err);
            char num[64], w[1024];
            const char *txt = NULL;
            if (!v) { free(b.s); return -1; }
            if (scalar_text(v, num, sizeof num, &txt) < 0) {
                free(b.s);
                return md_failc(err, MD_ERR_CONFIG,
                                "%s: {{%.*s}} is a %s and cannot be embedded in a string; use the reference alone as "
                                "the whole value",
                                md_cfg_where(k, w, sizeof w), (int)r.name_len, r.name, md_cfg_type_name(v->type));
            }
            sb_add(&b, p, (size_t)(r.start - p));
            sb_add(&b, txt, strlen(txt));
            p = r.end;
            changed = true;
        }
        sb_add(&b, p, strlen(p));
        if (b.oom) { free(b.s); return md_failc(err, MD_ERR_NOMEM, "out of memory"); }
        if (changed) {
            free(k->v.s);
            k->v.s = b.s;
        } else {
            free(b.s);
        }
    }
    return 0;
}

/* ---- merging ---- */

static const char *a_type(md_cfg_type t) {
    switch (t) {
    case MD_CFG_INT: return "an int";
    case MD_CFG_NONE: return "None";
    case MD_CFG_LIST: return "a list";
    case MD_CFG_FLOAT: return "a float";
    case MD_CFG_BOOL: return "a bool";
    case MD_CFG_STRING: return "a string";
    default: return "a group";
    }
}

/* mmcv's _merge_a_into_b for files: groups merge key by key, anything else
 * (lists included) replaces; a group over a non-group needs delete_. */
static int merge_into(md_cfg *b, const md_cfg *a, md_error *err) {
    for (int i = 0; i < a->n; i++) {
        const md_cfg *v = a->kids[i];
        if (strcmp(v->name, "delete_") == 0) continue;
        int j = md__cfg_find(b, v->name);
        if (v->type == MD_CFG_GROUP && j >= 0) {
            int d = md__cfg_find(v, "delete_");
            bool del = d >= 0 && md__cfg_truthy(v->kids[d]);
            md_cfg *bk = b->kids[j];
            if (!del) {
                if (bk->type != MD_CFG_GROUP) {
                    char w1[1024], w2[1024], p[512];
                    return md_failc(err, MD_ERR_CONFIG,
                                    "%s: '%s' is a group here but %s in the base (%s); add 'delete_ = true;' to the "
                                    "group to replace the base value",
                                    md_cfg_where(v, w1, sizeof w1), md_cfg_path(bk, p, sizeof p), a_type(bk->type),
                                    md_cfg_where(bk, w2, sizeof w2));
                }
                if (merge_into(bk, v, err) < 0) return -1;
                continue;
            }
        }
        md_cfg *copy = md__cfg_copy(v, v->name, true);
        if (!copy || !md__cfg_put(b, copy)) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    return 0;
}

MD_API int md_cfg_merge(md_cfg *dst, const md_cfg *src, md_error *err) {
    if (!dst || !src || dst->type != MD_CFG_GROUP || src->type != MD_CFG_GROUP)
        return md_failc(err, MD_ERR_CONFIG, "md_cfg_merge: both sides must be groups (got %s into %s)",
                        md_cfg_type_name(md_cfg_kind(src)), md_cfg_type_name(md_cfg_kind(dst)));
    return merge_into(dst, src, err);
}

/* ---- inheritance ---- */

typedef struct chain {
    const char *display[MAX_DEPTH]; /* paths as written/resolved, for messages */
    char *real[MAX_DEPTH];          /* canonical, for cycle detection */
    int n;
} chain;

static char *read_text(const char *path, md_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        md_failc(err, MD_ERR_IO, "cannot open config file '%s': %s", path, strerror(errno));
        return NULL;
    }
    sbuf b = { 0 };
    char chunk[8192];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) sb_add(&b, chunk, got);
    bool bad = ferror(f);
    fclose(f);
    if (bad || b.oom) {
        free(b.s);
        md_failc(err, MD_ERR_IO, "cannot read config file '%s'", path);
        return NULL;
    }
    return b.s ? b.s : strdup("");
}

static md_cfg *load_rec(const char *path, const char *text, chain *ch, md_error *err);

/* Loads the bases listed in `node` (a string or a list of strings) and
 * merges them, refusing a top-level key defined by two of them. */
static md_cfg *load_bases(const char *path, const md_cfg *node, chain *ch, md_error *err) {
    char w[1024];
    int n = node->type == MD_CFG_LIST ? node->n : 1;
    const md_cfg *const *items = node->type == MD_CFG_LIST ? (const md_cfg *const *)node->kids : &node;
    if (node->type != MD_CFG_STRING && node->type != MD_CFG_LIST) n = -1;
    for (int i = 0; i < n; i++)
        if (items[i]->type != MD_CFG_STRING) n = -1;
    if (n < 0) {
        md_failc(err, MD_ERR_CONFIG, "%s: base_ must be a file name or a list of file names",
                 md_cfg_where(node, w, sizeof w));
        return NULL;
    }
    md_cfg *merged = md_cfg_new_group();
    /* owner[k]: which base defined merged's k-th key (keys are only appended). */
    const char **owner = NULL;
    int n_owner = 0;
    char **resolved = calloc((size_t)n + 1, sizeof *resolved);
    if (!merged || !resolved) goto oom;
    for (int i = 0; i < n; i++) {
        const md_cfg *item = items[i];
        resolved[i] = resolve(path, item->v.s);
        if (!resolved[i]) goto oom;
        if (access(resolved[i], F_OK) != 0) {
            md_failc(err, MD_ERR_IO, "%s: base file '%s' not found (looked for '%s', referenced from '%s')",
                     md_cfg_where(item, w, sizeof w), item->v.s, resolved[i], path);
            goto fail;
        }
        md_cfg *b = load_rec(resolved[i], NULL, ch, err);
        if (!b) {
            /* Say which file pulled the failing base in, unless it is a cycle
             * (that message already shows the whole chain). */
            if (err && !strstr(err->msg, "inheritance cycle"))
                md_error_wrap(err, "%s: in base '%s'", md_cfg_where(item, w, sizeof w), item->v.s);
            goto fail;
        }
        const char **o = realloc(owner, (size_t)(n_owner + b->n) * sizeof *owner);
        if (!o) { md__cfg_destroy(b); goto oom; }
        owner = o;
        for (int k = 0; k < b->n; k++) {
            md_cfg *kid = b->kids[k];
            int j = md__cfg_find(merged, kid->name);
            if (j >= 0) {
                char w1[1024], w2[1024];
                md_failc(err, MD_ERR_CONFIG,
                         "%s: duplicate key '%s' among bases: defined by '%s' (%s) and by '%s' (%s); "
                         "a top-level key may come from one base only",
                         md_cfg_where(node, w, sizeof w), kid->name, owner[j],
                         md_cfg_where(merged->kids[j], w1, sizeof w1), item->v.s, md_cfg_where(kid, w2, sizeof w2));
                md__cfg_destroy(b);
                goto fail;
            }
        }
        for (int k = 0; k < b->n; k++) {
            md_cfg *kid = md__cfg_copy(b->kids[k], b->kids[k]->name, false);
            if (!kid || md__cfg_adopt(merged, kid) < 0) { md__cfg_destroy(kid); md__cfg_destroy(b); goto oom; }
            owner[n_owner++] = item->v.s;
        }
        md__cfg_destroy(b);
    }
    for (int i = 0; i < n; i++) free(resolved[i]);
    free(resolved);
    free(owner);
    return merged;
oom:
    md_failc(err, MD_ERR_NOMEM, "%s: out of memory", path);
fail:
    if (resolved)
        for (int i = 0; i < n; i++) free(resolved[i]);
    free(resolved);
    free(owner);
    md__cfg_destroy(merged);
    return NULL;
}

static md_cfg *load_rec(const char *path, const char *text, chain *ch, md_error *err) {
    char *real = realpath(path, NULL);
    if (!real) real = abs_path(path); /* parsed text need not exist on disk */
    if (!real) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < ch->n; i++) {
        if (strcmp(ch->real[i], real) != 0) continue;
        char msg[MD_ERROR_MSG_MAX];
        size_t len = 0;
        for (int k = i; k < ch->n; k++)
            len += (size_t)snprintf(msg + len, len < sizeof msg ? sizeof msg - len : 0, "%s -> ", ch->display[k]);
        if (len < sizeof msg) snprintf(msg + len, sizeof msg - len, "%s", path);
        md_failc(err, MD_ERR_CONFIG, "inheritance cycle: %s", msg);
        free(real);
        return NULL;
    }
    if (ch->n == MAX_DEPTH) {
        md_failc(err, MD_ERR_CONFIG, "%s: bases nested deeper than %d levels", path, MAX_DEPTH);
        free(real);
        return NULL;
    }
    ch->display[ch->n] = path;
    ch->real[ch->n++] = real;

    md_cfg *out = NULL, *tree = NULL, *bases = NULL;
    char *owned_text = NULL;
    file_vars fv = { 0 };
    if (!text && !(text = owned_text = read_text(path, err))) goto done;
    if (!(tree = md__cfg_from_text(text, path, err))) goto done;
    if (file_vars_init(&fv, real) < 0) { md_failc(err, MD_ERR_NOMEM, "out of memory"); goto done; }
    if (subst_predefined(tree, &fv, err) < 0) goto done;
    int bi = md__cfg_find(tree, "base_");
    if (bi >= 0) {
        if (!(bases = load_bases(path, tree->kids[bi], ch, err))) goto done;
        md_cfg_remove(tree, "base_");
    }
    if (subst_base(tree, bases, err) < 0) goto done;
    out = bases ? bases : md_cfg_new_group();
    bases = NULL;
    if (!out) { md_failc(err, MD_ERR_NOMEM, "out of memory"); goto done; }
    if (merge_into(out, tree, err) < 0) {
        md__cfg_destroy(out);
        out = NULL;
        goto done;
    }
    free(out->file);
    out->file = strdup(path);
done:
    file_vars_free(&fv);
    md__cfg_destroy(tree);
    md__cfg_destroy(bases);
    free(owned_text);
    ch->n--;
    free(ch->real[ch->n]);
    return out;
}

MD_API md_cfg *md_cfg_load(const char *path, md_error *err) {
    if (!path) {
        md_failc(err, MD_ERR_IO, "md_cfg_load: no path");
        return NULL;
    }
    chain ch = { .n = 0 };
    return load_rec(path, NULL, &ch, err);
}

MD_API md_cfg *md_cfg_parse(const char *text, const char *path, md_error *err) {
    if (!text) {
        md_failc(err, MD_ERR_PARSE, "md_cfg_parse: no text");
        return NULL;
    }
    chain ch = { .n = 0 };
    return load_rec(path ? path : "<string>", text, &ch, err);
}
