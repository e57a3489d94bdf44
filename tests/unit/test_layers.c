/* The core's layer map holds: docs/ARCHITECTURE.md's table "The core's
 * layers" says which folders each folder of core/ may call; this reads that
 * table and the symbols of the built objects (nm on build/core/<folder>/,
 * the objects lib/libmmdet.so is linked from) and names every file that
 * calls a function defined in a folder its row does not allow.
 *
 * The "May call" column is read as the page explains: before the first ';'
 * (outside parentheses) the folders, comma-separated, parenthesised remarks
 * ignored, or `nothing`, or `every layer below` (the rows above); anywhere
 * in the column, a name in backticks made of letters, digits, '_' and '*'
 * is a function (a glob for a family) the folder may call wherever it is
 * defined. A word in the list that is no folder of the table is an error,
 * so the page and the check cannot drift apart silently. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <fnmatch.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_LAYERS 32
#define MAX_NAMES 64

typedef struct layer {
    char name[32];
    bool may[MAX_LAYERS];          /* by index in the table */
    char *sym[MAX_NAMES];          /* allowed functions (globs) */
    int n_sym;
} layer;

typedef struct table {
    layer l[MAX_LAYERS];
    int n;
    char error[512];               /* a parse error, or "" */
} table;

typedef struct symdef { char *name; int layer; } symdef;

typedef struct report {
    char text[1 << 16];
    int n;                         /* violations */
    int objects;                   /* objects read */
} report;

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s (run from the repository root)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert(s && fread(s, 1, (size_t)n, f) == (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

static void trim(char *s) {
    size_t n = strlen(s), k = 0;
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    while (isspace((unsigned char)s[k])) k++;
    memmove(s, s + k, n - k + 1);
}

static int layer_index(const table *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->l[i].name, name)) return i;
    return -1;
}

/* Splits a table row into cells at '|' outside backticks; returns the count. */
static int split_row(char *row, char **cells, int max) {
    int n = 0;
    bool tick = false;
    char *start = NULL;
    for (char *p = row; *p; p++) {
        if (*p == '`') tick = !tick;
        if (*p == '|' && !tick) {
            *p = 0;
            if (start && n < max) cells[n++] = start;
            start = p + 1;
        }
    }
    return n;
}

/* The "May call" cell of row i into t->l[i]; names resolved later. */
static void parse_may_call(table *t, int i, const char *cell, char heads[][512]) {
    layer *L = &t->l[i];
    /* the functions: backticked names of [A-Za-z0-9_*] */
    for (const char *p = strchr(cell, '`'); p; p = strchr(p + 1, '`')) {
        const char *q = strchr(p + 1, '`');
        if (!q) break;
        size_t n = (size_t)(q - p - 1);
        bool ident = n > 0;
        for (size_t k = 0; k < n; k++)
            if (!isalnum((unsigned char)p[1 + k]) && p[1 + k] != '_' && p[1 + k] != '*') ident = false;
        if (ident && L->n_sym < MAX_NAMES) L->sym[L->n_sym++] = strndup(p + 1, n);
        p = q;
    }
    /* the folders: up to the first ';' outside parentheses, remarks dropped */
    char *h = heads[i];
    size_t k = 0;
    int depth = 0;
    for (const char *p = cell; *p && k + 1 < 512; p++) {
        if (*p == '(') depth++;
        else if (*p == ')') depth--;
        else if (*p == ';' && depth == 0) break;
        else if (depth == 0 && *p != '`') h[k++] = *p;
    }
    h[k] = 0;
}

/* Reads the layers table of `md` (the text of docs/ARCHITECTURE.md). */
static void parse_table(const char *md, table *t) {
    memset(t, 0, sizeof *t);
    const char *sec = strstr(md, "\n## The core's layers");
    if (!sec) {
        snprintf(t->error, sizeof t->error, "no section \"## The core's layers\"");
        return;
    }
    const char *end = strstr(sec + 1, "\n## ");
    static char heads[MAX_LAYERS][512];
    int header_seen = 0;
    for (const char *p = sec + 1; *p && (!end || p < end);) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len > 2 && p[0] == '|') {
            char *row = strndup(p, len);
            char *cells[8];
            int nc = split_row(row, cells, 8);
            if (nc >= 3) {
                char first[256];
                snprintf(first, sizeof first, "%s", cells[0]);
                trim(first);
                if (!strcmp(first, "Folder")) {
                    header_seen = 1;
                } else if (first[0] == '`' && t->n < MAX_LAYERS) {
                    char name[64];
                    snprintf(name, sizeof name, "%s", first + 1);
                    char *e = strchr(name, '`');
                    if (e) *e = 0;
                    size_t nl2 = strlen(name);
                    if (nl2 && name[nl2 - 1] == '/') name[nl2 - 1] = 0;
                    snprintf(t->l[t->n].name, sizeof t->l[t->n].name, "%s", name);
                    parse_may_call(t, t->n, cells[2], heads);
                    t->n++;
                }
            }
            free(row);
        }
        p = nl ? nl + 1 : p + len;
    }
    if (!header_seen || t->n == 0) {
        snprintf(t->error, sizeof t->error, "no table with a \"Folder\" column under \"## The core's layers\"");
        return;
    }
    for (int i = 0; i < t->n; i++) {
        char *h = heads[i];
        trim(h);
        if (!strcmp(h, "nothing")) continue;
        if (!strcmp(h, "every layer below")) {
            for (int j = 0; j < i; j++) t->l[i].may[j] = true;
            continue;
        }
        for (char *save = NULL, *w = strtok_r(h, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
            trim(w);
            size_t n = strlen(w);
            if (n && w[n - 1] == '/') w[--n] = 0;
            int j = layer_index(t, w);
            if (j < 0) {
                snprintf(t->error, sizeof t->error, "row `%s/`: \"%s\" in \"May call\" is not a folder of the table",
                         t->l[i].name, w);
                return;
            }
            t->l[i].may[j] = true;
        }
    }
}

static void free_table(table *t) {
    for (int i = 0; i < t->n; i++)
        for (int k = 0; k < t->l[i].n_sym; k++) free(t->l[i].sym[k]);
}

/* The built objects of folder `name` whose source still exists. */
static int objects_of(const char *name, glob_t *g) {
    char pat[256];
    snprintf(pat, sizeof pat, "build/core/%s/*.o", name);
    int rc = glob(pat, 0, NULL, g);
    snprintf(pat, sizeof pat, "build/core/%s/*/*.o", name);
    glob(pat, rc == 0 ? GLOB_APPEND : 0, NULL, g);
    return (int)g->gl_pathc;
}

/* core/<x>/<y>.c (or .cu) of build/core/<x>/<y>.o, or NULL when stale. */
static const char *source_of(const char *obj, char *out, size_t cap) {
    static const char *const ext[] = { ".c", ".cu" };
    for (int e = 0; e < 2; e++) {
        snprintf(out, cap, "%.*s%s", (int)(strlen(obj) - strlen("build/") - 2), obj + strlen("build/"), ext[e]);
        struct stat st;
        if (stat(out, &st) == 0) return out;
    }
    return NULL;
}

/* One symbol of an object (nm -P -A -g over every object at once). */
typedef struct sym { char *obj, *name; bool defined; } sym;

/* The global symbols of every object under build/core/: one nm run. */
static int nm_all(sym **out) {
    glob_t g = { 0 };
    glob("build/core/*.o", 0, NULL, &g);
    glob("build/core/*/*.o", GLOB_APPEND, NULL, &g);
    glob("build/core/*/*/*.o", GLOB_APPEND, NULL, &g);
    size_t len = 64;
    for (size_t i = 0; i < g.gl_pathc; i++) len += strlen(g.gl_pathv[i]) + 3;
    char *cmd = malloc(len), line[1024];
    size_t at = (size_t)sprintf(cmd, "nm -P -A -g");
    for (size_t i = 0; i < g.gl_pathc; i++) at += (size_t)sprintf(cmd + at, " '%s'", g.gl_pathv[i]);
    globfree(&g);
    FILE *f = popen(cmd, "r");
    cr_assert(f, "cannot run nm");
    int n = 0, cap = 4096;
    sym *v = malloc(sizeof *v * (size_t)cap);
    while (fgets(line, sizeof line, f)) {
        /* "<object>: <name> <type> [value size]" */
        char obj[512], name[512], type[8];
        if (sscanf(line, "%511[^:]: %511s %7s", obj, name, type) != 3) continue;
        if (type[0] == 'w' || type[0] == 'v') continue;   /* weak and undefined */
        if (n == cap) v = realloc(v, sizeof *v * (size_t)(cap *= 2));
        v[n++] = (sym){ strdup(obj), strdup(name), type[0] != 'U' };
    }
    cr_assert_eq(pclose(f), 0, "nm failed (binutils): %.200s", cmd);
    free(cmd);
    *out = v;
    return n;
}

/* The table row of object `obj` (build/core/<folder>/...), or -1. */
static int layer_of_obj(const table *t, const char *obj) {
    const char *p = obj + strlen("build/core/"), *slash = strchr(p, '/');
    if (!slash) return -1;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(slash - p), p);
    return layer_index(t, name);
}

static int cmp_symdef(const void *a, const void *b) {
    return strcmp(((const symdef *)a)->name, ((const symdef *)b)->name);
}

static bool allowed_sym(const layer *L, const char *sym) {
    for (int k = 0; k < L->n_sym; k++)
        if (!fnmatch(L->sym[k], sym, 0)) return true;
    return false;
}

/* Every call across folders that table t does not allow, into r. */
static void check(const table *t, report *r) {
    memset(r, 0, sizeof *r);
    size_t at = 0;
#define SAY(...) (at += (size_t)snprintf(r->text + at, at < sizeof r->text ? sizeof r->text - at : 0, __VA_ARGS__), \
                  at = at < sizeof r->text ? at : sizeof r->text - 1)
    /* every folder that has objects must be a row */
    glob_t dirs;
    if (glob("build/core/*", GLOB_MARK, NULL, &dirs) == 0) {
        for (size_t i = 0; i < dirs.gl_pathc; i++) {
            const char *p = dirs.gl_pathv[i];
            size_t n = strlen(p);
            char name[128], src[512];
            if (p[n - 1] != '/') {   /* an object of core/ itself, outside every layer */
                if (n > 2 && !strcmp(p + n - 2, ".o") && source_of(p, src, sizeof src)) {
                    SAY("%s: in no layer folder (docs/ARCHITECTURE.md, \"The core's layers\")\n", src);
                    r->n++;
                }
                continue;
            }
            snprintf(name, sizeof name, "%.*s", (int)(n - strlen("build/core/") - 1), p + strlen("build/core/"));
            glob_t g = { 0 };
            int has = 0;
            if (objects_of(name, &g) > 0)
                for (size_t k = 0; k < g.gl_pathc; k++) has |= source_of(g.gl_pathv[k], src, sizeof src) != NULL;
            globfree(&g);
            if (has && layer_index(t, name) < 0) {
                SAY("core/%s/: a folder of objects that the table of docs/ARCHITECTURE.md does not list\n", name);
                r->n++;
            }
        }
        globfree(&dirs);
    }
    /* who defines what, then who calls what */
    sym *v;
    int ns = nm_all(&v), nd = 0;
    symdef *defs = malloc(sizeof *defs * (size_t)(ns ? ns : 1));
    char src[512], last[512] = "";
    for (int k = 0; k < ns; k++) {
        int l = layer_of_obj(t, v[k].obj);
        if (v[k].defined && l >= 0 && source_of(v[k].obj, src, sizeof src)) defs[nd++] = (symdef){ v[k].name, l };
    }
    qsort(defs, (size_t)nd, sizeof *defs, cmp_symdef);
    for (int k = 0; k < ns; k++) {
        int i = layer_of_obj(t, v[k].obj);
        if (i < 0 || !source_of(v[k].obj, src, sizeof src)) continue;
        if (strcmp(last, v[k].obj)) r->objects++;
        snprintf(last, sizeof last, "%s", v[k].obj);
        if (v[k].defined) continue;
        const layer *L = &t->l[i];
        symdef key = { v[k].name, 0 }, *d = bsearch(&key, defs, (size_t)nd, sizeof *defs, cmp_symdef);
        if (d && d->layer != i && !L->may[d->layer] && !allowed_sym(L, v[k].name)) {
            SAY("%s calls %s (core/%s/), which `%s/` may not call (docs/ARCHITECTURE.md, \"The core's layers\")\n",
                src, v[k].name, t->l[d->layer].name, L->name);
            r->n++;
        }
    }
    for (int k = 0; k < ns; k++) {
        free(v[k].obj);
        free(v[k].name);
    }
    free(v);
    free(defs);
#undef SAY
}

/* The page with the "May call" cell of row `folder` replaced by `cell`. */
static char *with_cell(const char *md, const char *folder, const char *cell) {
    char key[64];
    snprintf(key, sizeof key, "\n| `%s/` |", folder);
    const char *row = strstr(md, key);
    cr_assert(row, "docs/ARCHITECTURE.md has no row %s", key + 1);
    row++;
    const char *eol = strchr(row, '\n');
    /* the last cell: after the last '|' but one of the row */
    const char *last = eol - 1;
    while (last > row && *last != '|') last--;          /* the closing bar */
    const char *open = last - 1;
    while (open > row && *open != '|') open--;          /* the bar before the cell */
    size_t head = (size_t)(open + 1 - md);
    char *out = malloc(strlen(md) + strlen(cell) + 8);
    sprintf(out, "%.*s %s %s", (int)head, md, cell, last);
    return out;
}

Test(layers, every_call_across_folders_is_one_the_table_allows) {
    char *md = slurp("docs/ARCHITECTURE.md");
    table t;
    parse_table(md, &t);
    cr_assert_str_empty(t.error, "docs/ARCHITECTURE.md: %s", t.error);
    cr_assert_geq(t.n, 10, "%d folders in the table", t.n);
    static report r;
    check(&t, &r);
    cr_assert_gt(r.objects, 40, "%d objects under build/core/: build the library first (make)", r.objects);
    cr_assert_eq(r.n, 0, "%d calls the layer table does not allow:\n%s", r.n, r.text);
    free_table(&t);
    free(md);
}

/* The check fails: dist/ without tensor/ (dist.c reads tensor shapes). */
Test(layers, a_missing_folder_edge_is_named_with_file_and_symbol) {
    char *md = slurp("docs/ARCHITECTURE.md"), *bad = with_cell(md, "dist", "base");
    table t;
    parse_table(bad, &t);
    cr_assert_str_empty(t.error, "%s", t.error);
    static report r;
    check(&t, &r);
    cr_assert_gt(r.n, 0, "dist/ calls tensor/ but no violation was reported");
    cr_assert(strstr(r.text, "core/dist/dist.c calls md_tensor_numel (core/tensor/), which `dist/` may not call"),
              "%s", r.text);
    free_table(&t);
    free(bad);
    free(md);
}

/* ... and a function named as an exception is needed: tensor/device.c's
 * md_module_to walks a module with nn/'s md_module_visit. */
Test(layers, a_missing_function_exception_is_named) {
    char *md = slurp("docs/ARCHITECTURE.md"), *bad = with_cell(md, "tensor", "base, backends");
    table t;
    parse_table(bad, &t);
    cr_assert_str_empty(t.error, "%s", t.error);
    static report r;
    check(&t, &r);
    cr_assert_eq(r.n, 1, "%s", r.text);
    cr_assert(strstr(r.text, "core/tensor/device.c calls md_module_visit (core/nn/)"), "%s", r.text);
    free_table(&t);
    free(bad);
    free(md);
}

Test(layers, a_word_that_is_no_folder_is_an_error) {
    char *md = slurp("docs/ARCHITECTURE.md"), *bad = with_cell(md, "dist", "base, tensr");
    table t;
    parse_table(bad, &t);
    cr_assert(strstr(t.error, "row `dist/`: \"tensr\" in \"May call\" is not a folder"), "%s", t.error);
    free_table(&t);
    free(bad);
    free(md);
}
