/* Key schemas: the keys a component accepts, their types and defaults, and
 * "did you mean" suggestions for the ones it does not. */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "config_internal.h"

/* Case-insensitive edit distance counting a swap of two neighbouring
 * letters as one edit (optimal string alignment): "SDG" is one from "SGD". */
static int distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    int *rows = malloc(3 * (lb + 1) * sizeof *rows);
    if (!rows) return 1 << 20;
    int *pp = rows, *prev = rows + lb + 1, *cur = rows + 2 * (lb + 1);
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        int ai = tolower((unsigned char)a[i - 1]);
        for (size_t j = 1; j <= lb; j++) {
            int bj = tolower((unsigned char)b[j - 1]);
            int sub = prev[j - 1] + (ai != bj);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            int d = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            if (i > 1 && j > 1 && ai == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == bj && pp[j - 2] + 1 < d)
                d = pp[j - 2] + 1;
            cur[j] = d;
        }
        int *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    int d = prev[lb];
    free(rows);
    return d;
}

/* Close means at most a third of the word's letters edited (at least one),
 * and never the whole word. */
MD_API const char *md_suggest(const char *word, const char *const *cands, int n) {
    if (!word || !cands) return NULL;
    int len = (int)strlen(word);
    int limit = len <= 3 ? 1 : (len + 2) / 3;
    const char *best = NULL;
    int best_d = limit + 1;
    for (int i = 0; i < n; i++) {
        if (!cands[i]) continue;
        int d = distance(word, cands[i]);
        int longest = len > (int)strlen(cands[i]) ? len : (int)strlen(cands[i]);
        if (d < best_d && d < longest) {
            best = cands[i];
            best_d = d;
        }
    }
    return best;
}

static const char *key_type_name(md_key_type t) {
    switch (t) {
    case MD_KEY_INT: return "an int";
    case MD_KEY_FLOAT: return "a number";
    case MD_KEY_BOOL: return "a bool";
    case MD_KEY_STRING: return "a string";
    case MD_KEY_GROUP: return "a group";
    case MD_KEY_LIST: return "a list";
    default: return "any value";
    }
}

/* None is accepted for every key: it is how configs switch a part off
 * (init_cfg = None, norm_cfg = None). */
static bool type_ok(md_key_type t, const md_cfg *c) {
    md_cfg_type k = c->type;
    if (k == MD_CFG_NONE) return true;
    switch (t) {
    case MD_KEY_ANY: return true;
    case MD_KEY_INT: return k == MD_CFG_INT;
    case MD_KEY_FLOAT: return k == MD_CFG_INT || k == MD_CFG_FLOAT;
    case MD_KEY_BOOL: return k == MD_CFG_BOOL;
    case MD_KEY_STRING: return k == MD_CFG_STRING;
    case MD_KEY_GROUP: return k == MD_CFG_GROUP;
    case MD_KEY_LIST: return k != MD_CFG_GROUP;
    }
    return false;
}

MD_API int md_cfg_check_keys(const md_cfg *group, const md_key *keys, const char *what, md_error *err) {
    char w[1024];
    if (!what) what = "the config";
    if (!group || group->type != MD_CFG_GROUP)
        return md_failc(err, MD_ERR_CONFIG, "%s: %s: expected a group, got %s", md_cfg_where(group, w, sizeof w), what,
                        group ? md_cfg_type_name(group->type) : "nothing");
    int nk = 0;
    while (keys && keys[nk].name) nk++;
    for (int i = 0; i < group->n; i++) {
        const md_cfg *c = group->kids[i];
        if (strcmp(c->name, "type") == 0) continue;
        int k = 0;
        while (k < nk && strcmp(keys[k].name, c->name) != 0) k++;
        if (k == nk) {
            const char **names = malloc((size_t)(nk + 1) * sizeof *names);
            if (!names) return md_failc(err, MD_ERR_NOMEM, "out of memory");
            for (int j = 0; j < nk; j++) names[j] = keys[j].name;
            names[nk] = "type";
            const char *s = md_suggest(c->name, names, nk + 1);
            if (s) {
                md_failc(err, MD_ERR_CONFIG, "%s: unknown key '%s' in %s (did you mean '%s'?)",
                         md_cfg_where(c, w, sizeof w), c->name, what, s);
            } else {
                char list[1024];
                size_t len = 0;
                list[0] = 0;
                for (int j = 0; j < nk && len < sizeof list; j++)
                    len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", j ? ", " : "", names[j]);
                md_failc(err, MD_ERR_CONFIG, "%s: unknown key '%s' in %s (accepted keys: %s)",
                         md_cfg_where(c, w, sizeof w), c->name, what, nk ? list : "none");
            }
            free(names);
            return -1;
        }
        if (!type_ok(keys[k].type, c))
            return md_failc(err, MD_ERR_CONFIG, "%s: key '%s' in %s: expected %s, got %s",
                            md_cfg_where(c, w, sizeof w), c->name, what, key_type_name(keys[k].type),
                            md_cfg_type_name(c->type));
    }
    for (int k = 0; k < nk; k++) {
        if (!keys[k].required || md__cfg_find(group, keys[k].name) >= 0) continue;
        char doc[512] = "";
        if (keys[k].doc) snprintf(doc, sizeof doc, " (%s)", keys[k].doc);
        return md_failc(err, MD_ERR_CONFIG, "%s: missing required key '%s' in %s%s", md_cfg_where(group, w, sizeof w),
                        keys[k].name, what, doc);
    }
    return 0;
}

/* Defaults are made in memory: no file or line. */
static void forget_origin(md_cfg *c) {
    free(c->file);
    c->file = NULL;
    c->line = 0;
    for (int i = 0; i < c->n; i++) forget_origin(c->kids[i]);
}

MD_API int md_cfg_fill_defaults(md_cfg *group, const md_key *keys, md_error *err) {
    if (!group || group->type != MD_CFG_GROUP) return md_failc(err, MD_ERR_CONFIG, "md_cfg_fill_defaults: not a group");
    for (int k = 0; keys && keys[k].name; k++) {
        if (!keys[k].dflt || md__cfg_find(group, keys[k].name) >= 0) continue;
        md_cfg *v;
        if (strcmp(keys[k].dflt, "None") == 0) {
            v = md__cfg_node(MD_CFG_NONE, keys[k].name, NULL, 0);
        } else {
            char *text;
            if (asprintf(&text, "v = %s;", keys[k].dflt) < 0) return md_failc(err, MD_ERR_NOMEM, "out of memory");
            md_cfg *tmp = md__cfg_from_text(text, "<default>", err);
            free(text);
            if (!tmp)
                return md_error_wrap(err, "default of key '%s' (\"%s\") is not a libconfig value", keys[k].name,
                                     keys[k].dflt);
            v = md__cfg_copy(tmp->kids[0], keys[k].name, false);
            md__cfg_destroy(tmp);
            if (v) forget_origin(v);
        }
        if (!v || !md__cfg_put(group, v)) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    return 0;
}

/* ---- the schema fills the struct ---- */

MD_API const md_key *md_key_find(const md_key *keys, const char *name) {
    for (int k = 0; keys && name && keys[k].name; k++)
        if (!strcmp(keys[k].name, name)) return &keys[k];
    return NULL;
}

/* A bound in libconfig syntax ("1", "0.5", "-1") as a double. */
static double bound(const char *s) { return strtod(s, NULL); }

/* The position of `v` in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *v) {
    int i = 0;
    for (const char *p = choices;; i++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (strlen(v) == n && !strncmp(p, v, n)) return i;
        if (!bar) return -1;
        p = bar + 1;
    }
}

static int store(const md_cfg *v, const md_key *k, void *obj, const char *what, md_error *err) {
    char w[1024];
    bool is_num = v->type == MD_CFG_INT || v->type == MD_CFG_FLOAT;
    double num = v->type == MD_CFG_INT ? (double)v->v.i : v->type == MD_CFG_FLOAT ? v->v.f : 0;
    if (is_num && k->min && num < bound(k->min))
        return md_failc(err, MD_ERR_CONFIG, "%s: %s in %s is %g; it must be at least %s", md_cfg_where(v, w, sizeof w),
                        k->name, what, num, k->min);
    if (is_num && k->max && num > bound(k->max))
        return md_failc(err, MD_ERR_CONFIG, "%s: %s in %s is %g; it must be at most %s", md_cfg_where(v, w, sizeof w),
                        k->name, what, num, k->max);
    if (k->choices && v->type == MD_CFG_STRING && choice_index(k->choices, v->v.s) < 0)
        return md_failc(err, MD_ERR_CONFIG, "%s: %s in %s is \"%s\"; accepted: %s", md_cfg_where(v, w, sizeof w),
                        k->name, what, v->v.s, k->choices);
    bool ok = true;
    if (!obj) return 0;   /* bounds and choices only (no field address: NULL + offset is undefined) */
    char *at = (char *)obj + k->offset;
    switch (k->field) {
    case MD_FIELD_NONE: break;
    case MD_FIELD_INT:
        if ((ok = v->type == MD_CFG_INT)) *(int *)at = (int)v->v.i;
        break;
    case MD_FIELD_I64:
        if ((ok = v->type == MD_CFG_INT)) *(int64_t *)at = v->v.i;
        break;
    case MD_FIELD_DOUBLE:
        if ((ok = is_num)) *(double *)at = num;
        break;
    case MD_FIELD_BOOL:
        if ((ok = v->type == MD_CFG_BOOL)) *(bool *)at = v->v.b;
        break;
    case MD_FIELD_STR:
        if ((ok = v->type == MD_CFG_STRING || v->type == MD_CFG_NONE))
            *(const char **)at = v->type == MD_CFG_STRING ? v->v.s : NULL;
        break;
    case MD_FIELD_CFG: *(const md_cfg **)at = v->type == MD_CFG_NONE ? NULL : v; break;
    case MD_FIELD_CHOICE:
        if ((ok = v->type == MD_CFG_STRING && k->choices)) *(int *)at = choice_index(k->choices, v->v.s);
        break;
    }
    if (!ok)
        return md_failc(err, MD_ERR_CONFIG, "%s: %s in %s: expected %s, got %s", md_cfg_where(v, w, sizeof w), k->name,
                        what, key_type_name(k->type), md_cfg_type_name(v->type));
    return 0;
}

MD_API int md_cfg_read_struct(const md_cfg *group, const md_key *keys, void *obj, const char *what, md_error *err) {
    if (!what) what = "the config";
    for (int k = 0; keys && keys[k].name; k++) {
        if (keys[k].field == MD_FIELD_NONE && !keys[k].min && !keys[k].max && !keys[k].choices) continue;
        int i = group && group->type == MD_CFG_GROUP ? md__cfg_find(group, keys[k].name) : -1;
        if (i >= 0) {
            if (store(group->kids[i], &keys[k], obj, what, err)) return -1;
            continue;
        }
        /* absent: the default, parsed; strings and groups need the value to
         * live on (md_cfg_fill_defaults puts it in the config), so they are
         * left NULL here */
        if (!keys[k].dflt || keys[k].field == MD_FIELD_STR || keys[k].field == MD_FIELD_CFG) {
            if (obj && keys[k].field == MD_FIELD_STR) *(const char **)((char *)obj + keys[k].offset) = NULL;
            if (obj && keys[k].field == MD_FIELD_CFG) *(const md_cfg **)((char *)obj + keys[k].offset) = NULL;
            continue;
        }
        md_cfg *tmp = NULL;
        if (strcmp(keys[k].dflt, "None") != 0) {
            char *text;
            if (asprintf(&text, "v = %s;", keys[k].dflt) < 0) return md_failc(err, MD_ERR_NOMEM, "out of memory");
            tmp = md__cfg_from_text(text, "<default>", err);
            free(text);
            if (!tmp) return md_error_wrap(err, "default of key '%s'", keys[k].name);
            int rc = store(tmp->kids[0], &keys[k], obj, what, err);
            md__cfg_destroy(tmp);
            if (rc) return -1;
        }
    }
    return 0;
}
