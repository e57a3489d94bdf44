/* Dumping a tree in libconfig syntax that loads back to an equal tree.
 * None is written as the string "None" (how files spell it); integers
 * beyond 32 bits carry libconfig's L suffix; floats use the shortest text
 * that reads back to the same double. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "config_internal.h"

static void put_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\x%02X", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void put_float(FILE *f, double v) {
    if (isnan(v)) { /* libconfig has no NaN literal; the closest we can do */
        fputs("\"nan\"", f);
        return;
    }
    if (isinf(v)) { /* overflows to infinity when read back */
        fputs(v > 0 ? "1e999" : "-1e999", f);
        return;
    }
    char buf[64];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* libconfig needs a '.' or an exponent to read a float */
    if (!strpbrk(buf, ".e")) strcat(buf, ".0");
    fputs(buf, f);
}

static bool fits_int32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

/* libconfig arrays [..] hold scalars of one type; anything else is a list. */
static bool as_array(const md_cfg *l) {
    for (int i = 0; i < l->n; i++) {
        const md_cfg *k = l->kids[i];
        if (k->type == MD_CFG_GROUP || k->type == MD_CFG_LIST || k->type == MD_CFG_NONE) return false;
        if (k->type != l->kids[0]->type) return false;
        if (k->type == MD_CFG_INT && !fits_int32(k->v.i)) return false;
        if (k->type == MD_CFG_FLOAT && isnan(k->v.f)) return false;
    }
    return true;
}

static void indent(FILE *f, int depth) {
    for (int i = 0; i < depth; i++) fputs("  ", f);
}

static void put_value(FILE *f, const md_cfg *c, int depth);
static bool is_scalar(const md_cfg *c) { return c->type != MD_CFG_GROUP && c->type != MD_CFG_LIST; }

static void put_members(FILE *f, const md_cfg *g, int depth) {
    for (int i = 0; i < g->n; i++) {
        indent(f, depth);
        fprintf(f, "%s = ", g->kids[i]->name);
        put_value(f, g->kids[i], depth);
        fputs(";\n", f);
    }
}

/* A group of a few scalars goes on one line, like mmdet's dict(...). */
static bool put_inline(FILE *f, const md_cfg *g, int depth) {
    for (int i = 0; i < g->n; i++) {
        const md_cfg *k = g->kids[i];
        if (k->type == MD_CFG_GROUP) return false;
        for (int j = 0; j < k->n; j++)
            if (!is_scalar(k->kids[j])) return false;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) return false;
    fputs("{ ", m);
    for (int i = 0; i < g->n; i++) {
        fprintf(m, "%s = ", g->kids[i]->name);
        put_value(m, g->kids[i], depth);
        fputs("; ", m);
    }
    fputc('}', m);
    fclose(m);
    bool ok = buf && len + (size_t)depth * 2 <= 100 && !strchr(buf, '\n');
    if (ok) fputs(buf, f);
    free(buf);
    return ok;
}

static void put_value(FILE *f, const md_cfg *c, int depth) {
    switch (c->type) {
    case MD_CFG_NONE: fputs("\"None\"", f); break;
    case MD_CFG_INT: fprintf(f, fits_int32(c->v.i) ? "%" PRId64 : "%" PRId64 "L", c->v.i); break;
    case MD_CFG_FLOAT: put_float(f, c->v.f); break;
    case MD_CFG_BOOL: fputs(c->v.b ? "true" : "false", f); break;
    case MD_CFG_STRING: put_string(f, c->v.s); break;
    case MD_CFG_GROUP:
        if (c->n == 0) {
            fputs("{}", f);
            break;
        }
        if (put_inline(f, c, depth)) break;
        fputs("{\n", f);
        put_members(f, c, depth + 1);
        indent(f, depth);
        fputc('}', f);
        break;
    case MD_CFG_LIST: {
        bool arr = as_array(c);
        bool flat = true; /* scalars only: one line */
        for (int i = 0; i < c->n; i++) flat = flat && is_scalar(c->kids[i]);
        fputc(arr ? '[' : '(', f);
        for (int i = 0; i < c->n; i++) {
            if (flat) {
                if (i) fputs(", ", f);
            } else {
                fputs(i ? ",\n" : "\n", f);
                indent(f, depth + 1);
            }
            put_value(f, c->kids[i], depth + 1);
        }
        if (!flat && c->n) {
            fputc('\n', f);
            indent(f, depth);
        }
        fputc(arr ? ']' : ')', f);
        break;
    }
    }
}

/* Names that libconfig cannot read back would make the dump unloadable. */
static const md_cfg *bad_name(const md_cfg *c) {
    for (int i = 0; i < c->n; i++) {
        const md_cfg *k = c->kids[i];
        if (c->type == MD_CFG_GROUP && !md__cfg_valid_name(k->name)) return k;
        const md_cfg *b = bad_name(k);
        if (b) return b;
    }
    return NULL;
}

static int dump(const md_cfg *c, FILE *f, md_error *err) {
    if (!c || !f) return md_failc(err, MD_ERR_IO, "md_cfg_dump: nothing to write");
    const md_cfg *b = bad_name(c);
    if (b) {
        char p[512];
        return md_failc(err, MD_ERR_CONFIG, "cannot dump the config: '%s' is not a libconfig setting name",
                        md_cfg_path(b, p, sizeof p));
    }
    if (c->type == MD_CFG_GROUP) put_members(f, c, 0);
    else {
        put_value(f, c, 0);
        fputc('\n', f);
    }
    return ferror(f) ? md_failc(err, MD_ERR_IO, "md_cfg_dump: write failed") : 0;
}

MD_API int md_cfg_dump(const md_cfg *node, FILE *f) { return dump(node, f, NULL); }

MD_API int md_cfg_dump_file(const md_cfg *node, const char *path, md_error *err) {
    FILE *f = fopen(path, "w");
    if (!f) return md_failc(err, MD_ERR_IO, "cannot write config dump '%s': %s", path, strerror(errno));
    int rc = dump(node, f, err);
    if (fclose(f) != 0 && rc == 0) rc = md_failc(err, MD_ERR_IO, "cannot write config dump '%s': %s", path, strerror(errno));
    if (rc < 0) md_error_wrap(err, "%s", path);
    return rc;
}

MD_API char *md_cfg_dump_string(const md_cfg *node) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    int rc = dump(node, f, NULL);
    fclose(f);
    if (rc < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
