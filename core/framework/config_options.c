/* --cfg-options: mmcv's DictAction value parsing and Config.merge_from_dict
 * (dotted keys, numeric parts index lists, delete_ honoured). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "config_internal.h"

#define ORIGIN "--cfg-options"

/* Python's int()/float() allow single underscores between digits. */
static bool strip_underscores(const char *s, char *out, size_t n) {
    size_t len = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '_') {
            if (p == s || !isdigit((unsigned char)p[-1]) || !isdigit((unsigned char)p[1])) return false;
            continue;
        }
        if (len + 1 >= n) return false;
        out[len++] = *p;
    }
    out[len] = 0;
    return true;
}

static bool parse_int(const char *s, int64_t *v) {
    char buf[128];
    if (!strip_underscores(s, buf, sizeof buf)) return false;
    const char *p = buf;
    if (*p == '+' || *p == '-') p++;
    if (!*p) return false;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q)) return false;
    errno = 0;
    long long x = strtoll(buf, NULL, 10);
    if (errno == ERANGE) return false; /* beyond int64: read as a float */
    *v = x;
    return true;
}

static bool parse_float(const char *s, double *v) {
    char buf[128];
    if (!*s || !strip_underscores(s, buf, sizeof buf)) return false;
    /* strtod also takes hex and nan(...), which Python's float() refuses. */
    if (strpbrk(buf, "xX()")) return false;
    char *end;
    double x = strtod(buf, &end);
    if (end == buf || *end) return false;
    *v = x;
    return true;
}

static md_cfg *leaf(md_cfg_type t) { return md__cfg_node(t, NULL, ORIGIN, 0); }

/* mmcv's _parse_int_float_bool: int, float, true/false (any case), None,
 * else the string itself. */
static md_cfg *parse_scalar(const char *s) {
    md_cfg *c;
    int64_t i;
    double f;
    if (parse_int(s, &i)) {
        if ((c = leaf(MD_CFG_INT))) c->v.i = i;
    } else if (parse_float(s, &f)) {
        if ((c = leaf(MD_CFG_FLOAT))) c->v.f = f;
    } else if (strcasecmp(s, "true") == 0 || strcasecmp(s, "false") == 0) {
        if ((c = leaf(MD_CFG_BOOL))) c->v.b = strcasecmp(s, "true") == 0;
    } else if (strcmp(s, "None") == 0) {
        c = leaf(MD_CFG_NONE);
    } else if ((c = leaf(MD_CFG_STRING)) && !(c->v.s = strdup(s))) {
        md__cfg_destroy(c);
        c = NULL;
    }
    return c;
}

static int count(const char *s, size_t n, char ch) {
    int k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == ch;
    return k;
}

/* mmcv's _parse_iterable on a mutable copy of the text. */
static md_cfg *parse_iterable(char *val, md_error *err) {
    /* strip quote characters at both ends, drop every space */
    size_t n = strlen(val);
    size_t a = 0;
    while (a < n && (val[a] == '\'' || val[a] == '"')) a++;
    while (n > a && (val[n - 1] == '\'' || val[n - 1] == '"')) n--;
    size_t len = 0;
    for (size_t i = a; i < n; i++)
        if (val[i] != ' ') val[len++] = val[i];
    val[len] = 0;

    char *body = val;
    if (len >= 2 && ((val[0] == '(' && val[len - 1] == ')') || (val[0] == '[' && val[len - 1] == ']'))) {
        val[len - 1] = 0;
        body = val + 1;
    } else if (!strchr(val, ',')) {
        md_cfg *c = parse_scalar(val);
        if (!c) md_failc(err, MD_ERR_NOMEM, "out of memory");
        return c;
    }
    /* tuples are lists here */
    md_cfg *list = leaf(MD_CFG_LIST);
    if (!list) goto oom;
    while (*body) {
        size_t blen = strlen(body);
        if (count(body, blen, '(') != count(body, blen, ')') || count(body, blen, '[') != count(body, blen, ']')) {
            md__cfg_destroy(list);
            md_failc(err, MD_ERR_CONFIG, "imbalanced brackets in '%s'", body);
            return NULL;
        }
        /* the first comma with balanced brackets before it */
        size_t end = blen;
        for (size_t i = 0; i < blen; i++)
            if (body[i] == ',' && count(body, i, '(') == count(body, i, ')') &&
                count(body, i, '[') == count(body, i, ']')) {
                end = i;
                break;
            }
        char saved = body[end];
        body[end] = 0;
        char *part = strdup(body);
        if (!part) goto oom_list;
        md_cfg *item = parse_iterable(part, err);
        free(part);
        if (!item) {
            md__cfg_destroy(list);
            return NULL;
        }
        if (md__cfg_adopt(list, item) < 0) {
            md__cfg_destroy(item);
            goto oom_list;
        }
        body += end + (saved ? 1 : 0);
    }
    return list;
oom_list:
    md__cfg_destroy(list);
oom:
    md_failc(err, MD_ERR_NOMEM, "out of memory");
    return NULL;
}

/* Parses the value part of an option as mmcv does; exported for tools that
 * want to show what a value reads as. */
MD_API md_cfg *md_cfg_parse_option_value(const char *text, md_error *err) {
    char *copy = strdup(text ? text : "");
    if (!copy) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    md_cfg *c = parse_iterable(copy, err);
    free(copy);
    return c;
}

static bool all_digits(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return false;
    return true;
}

/* Adds "a.b.c=value" to the overlay (a group of groups, mmcv's
 * option_cfg_dict): later options replace earlier ones. */
static int add_to_overlay(md_cfg *ov, const char *opt, md_error *err) {
    const char *eq = strchr(opt, '=');
    if (!eq || eq == opt) return md_failc(err, MD_ERR_CONFIG, "%s '%s': expected key=value", ORIGIN, opt);
    char *key = strndup(opt, (size_t)(eq - opt));
    if (!key) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    int rc = -1;
    md_cfg *d = ov, *val = NULL;
    bool empty = false;
    for (const char *p = key; *p; p++)
        if (*p == '.' && (p == key || p[1] == '.' || p[1] == 0)) empty = true;
    char *save = NULL, *part = strtok_r(key, ".", &save);
    if (empty || !part) {
        md_failc(err, MD_ERR_CONFIG, "%s '%s': empty part in the key", ORIGIN, opt);
        goto done;
    }
    while (part) {
        char *next = strtok_r(NULL, ".", &save);
        if (!all_digits(part) && !md__cfg_valid_name(part)) {
            md_failc(err, MD_ERR_CONFIG,
                     "%s '%s': '%s' is neither a key name (a letter, then letters, digits, '_' or '-') nor a list index",
                     ORIGIN, opt, part);
            goto done;
        }
        if (!next) break;
        int i = md__cfg_find(d, part);
        if (i >= 0 && d->kids[i]->type != MD_CFG_GROUP) {
            md_failc(err, MD_ERR_CONFIG, "%s '%s': '%s' was set to a value by an earlier option", ORIGIN, opt, part);
            goto done;
        }
        if (i < 0) {
            md_cfg *g = md__cfg_node(MD_CFG_GROUP, part, ORIGIN, 0);
            if (!g || md__cfg_adopt(d, g) < 0) {
                md__cfg_destroy(g);
                md_failc(err, MD_ERR_NOMEM, "out of memory");
                goto done;
            }
            d = g;
        } else {
            d = d->kids[i];
        }
        part = next;
    }
    if (!(val = md_cfg_parse_option_value(eq + 1, err))) {
        md_error_wrap(err, "%s '%s'", ORIGIN, opt);
        goto done;
    }
    free(val->name);
    if (!(val->name = strdup(part)) || !md__cfg_put(d, val)) {
        if (!val->name) md__cfg_destroy(val);
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto done;
    }
    rc = 0;
done:
    free(key);
    return rc;
}

/* mmcv's _merge_a_into_b with allow_list_keys: overlay groups merge into
 * groups, or index lists with numeric keys; values replace. */
static int merge_overlay(md_cfg *b, const md_cfg *a, md_error *err) {
    char p[512], w[1024];
    for (int i = 0; i < a->n; i++) {
        const md_cfg *v = a->kids[i];
        if (strcmp(v->name, "delete_") == 0 && b->type == MD_CFG_GROUP) continue;
        if (b->type == MD_CFG_LIST) {
            if (!all_digits(v->name))
                return md_failc(err, MD_ERR_CONFIG, "%s: '%s' is a list (%s); index it with a number, not '%s'",
                                ORIGIN, md_cfg_path(b, p, sizeof p), md_cfg_where(b, w, sizeof w), v->name);
            long idx = strlen(v->name) < 10 ? strtol(v->name, NULL, 10) : -1;
            if (idx < 0 || idx >= b->n)
                return md_failc(err, MD_ERR_CONFIG, "%s: index %s is out of range for '%s' (a list of %d, %s)", ORIGIN,
                                v->name, md_cfg_path(b, p, sizeof p), b->n, md_cfg_where(b, w, sizeof w));
            md_cfg *bk = b->kids[idx];
            if (v->type == MD_CFG_GROUP) {
                if (bk->type != MD_CFG_GROUP && bk->type != MD_CFG_LIST)
                    return md_failc(err, MD_ERR_CONFIG, "%s: '%s' holds a %s (%s), it has no keys to set", ORIGIN,
                                    md_cfg_path(bk, p, sizeof p), md_cfg_type_name(bk->type),
                                    md_cfg_where(bk, w, sizeof w));
                if (merge_overlay(bk, v, err) < 0) return -1;
            } else {
                md_cfg *copy = md__cfg_copy(v, NULL, true);
                if (!copy) return md_failc(err, MD_ERR_NOMEM, "out of memory");
                md__cfg_replace_at(b, (int)idx, copy);
            }
            continue;
        }
        if (all_digits(v->name))
            return md_failc(err, MD_ERR_CONFIG, "%s: '%s' is a group (%s), not a list; '%s' is not one of its keys",
                            ORIGIN, b->parent ? md_cfg_path(b, p, sizeof p) : "the config root",
                            md_cfg_where(b, w, sizeof w), v->name);
        int j = md__cfg_find(b, v->name);
        if (v->type == MD_CFG_GROUP && j >= 0) {
            int d = md__cfg_find(v, "delete_");
            if (!(d >= 0 && md__cfg_truthy(v->kids[d]))) {
                md_cfg *bk = b->kids[j];
                if (bk->type != MD_CFG_GROUP && bk->type != MD_CFG_LIST)
                    return md_failc(err, MD_ERR_CONFIG,
                                    "%s: cannot set keys inside '%s': it holds a %s (%s), not a group; set "
                                    "'%s.delete_=true' too to replace it with a group",
                                    ORIGIN, md_cfg_path(bk, p, sizeof p), md_cfg_type_name(bk->type),
                                    md_cfg_where(bk, w, sizeof w), p);
                if (merge_overlay(bk, v, err) < 0) return -1;
                continue;
            }
        }
        md_cfg *copy = md__cfg_copy(v, v->name, true);
        if (!copy || !md__cfg_put(b, copy)) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    return 0;
}

MD_API int md_cfg_apply_options(md_cfg *root, const char *const *opts, int n, md_error *err) {
    if (!root || root->type != MD_CFG_GROUP) return md_failc(err, MD_ERR_CONFIG, "%s: the config is not a group", ORIGIN);
    md_cfg *ov = md_cfg_new_group();
    if (!ov) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) rc = add_to_overlay(ov, opts[i], err);
    /* Merge into a copy so that a failing option leaves the config as it was. */
    md_cfg *work = rc == 0 ? md__cfg_copy(root, root->name, false) : NULL;
    if (rc == 0 && !work) rc = md_failc(err, MD_ERR_NOMEM, "out of memory");
    if (rc == 0) rc = merge_overlay(work, ov, err);
    if (rc == 0) { /* the root pointer stays valid: swap the children in */
        for (int i = 0; i < root->n; i++) md__cfg_destroy(root->kids[i]);
        free(root->kids);
        root->kids = work->kids;
        root->n = work->n;
        root->cap = work->cap;
        for (int i = 0; i < root->n; i++) root->kids[i]->parent = root;
        work->kids = NULL;
        work->n = work->cap = 0;
    }
    md__cfg_destroy(work);
    md__cfg_destroy(ov);
    return rc;
}

MD_API int md_cfg_apply_option(md_cfg *root, const char *opt, md_error *err) {
    return md_cfg_apply_options(root, &opt, 1, err);
}
