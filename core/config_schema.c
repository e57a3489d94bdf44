/* Key schemas: the keys a component accepts, their types and defaults, and
 * "did you mean" suggestions for the ones it does not. */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "config_internal.h"

/* Case-insensitive Levenshtein distance (two rows). */
static int distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    int *prev = malloc((lb + 1) * sizeof *prev), *cur = malloc((lb + 1) * sizeof *cur);
    if (!prev || !cur) {
        free(prev);
        free(cur);
        return 1 << 20;
    }
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        int *t = prev;
        prev = cur;
        cur = t;
    }
    int d = prev[lb];
    free(prev);
    free(cur);
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
        return md_failc(err, MD_ERR_CONFIG, "%s: %s: expected a group, got %s", md__cfg_where(group, w, sizeof w), what,
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
                         md__cfg_where(c, w, sizeof w), c->name, what, s);
            } else {
                char list[1024];
                size_t len = 0;
                list[0] = 0;
                for (int j = 0; j < nk && len < sizeof list; j++)
                    len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", j ? ", " : "", names[j]);
                md_failc(err, MD_ERR_CONFIG, "%s: unknown key '%s' in %s (accepted keys: %s)",
                         md__cfg_where(c, w, sizeof w), c->name, what, nk ? list : "none");
            }
            free(names);
            return -1;
        }
        if (!type_ok(keys[k].type, c))
            return md_failc(err, MD_ERR_CONFIG, "%s: key '%s' in %s: expected %s, got %s",
                            md__cfg_where(c, w, sizeof w), c->name, what, key_type_name(keys[k].type),
                            md_cfg_type_name(c->type));
    }
    for (int k = 0; k < nk; k++) {
        if (!keys[k].required || md__cfg_find(group, keys[k].name) >= 0) continue;
        char doc[512] = "";
        if (keys[k].doc) snprintf(doc, sizeof doc, " (%s)", keys[k].doc);
        return md_failc(err, MD_ERR_CONFIG, "%s: missing required key '%s' in %s%s", md__cfg_where(group, w, sizeof w),
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
