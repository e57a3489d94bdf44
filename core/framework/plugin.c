/* Plugin loading with libltdl, and the queue constructors register into.
 *
 * Constructors run inside lt_dlopen and get no context, so registrations go
 * to process-wide state: while this thread loads a file they are queued on
 * that file's record; otherwise they are built-ins. A file's record (its
 * descriptor and classes) is kept for the life of the process, so a second
 * context loading the same file commits the same classes without reopening
 * it (constructors run only once per process).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <libgen.h>
#include <ltdl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "registry_private.h"

typedef struct md__plugin_file {
    char *path;                  /* realpath: the key, and the origin shown */
    lt_dlhandle handle;          /* NULL when refused */
    const md_plugin_desc *desc;
    md__reg_item *items;
    int n_items, cap_items;
    char *refused;               /* why the file is not a usable plugin, or NULL */
    char sha256[65];             /* of the file as loaded ("" if it could not be read) */
} md__plugin_file;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static md__plugin_file **g_files;
static int g_n_files, g_cap_files;
static md__reg_item *g_builtins;
static int g_n_builtins, g_cap_builtins;
static bool g_ltdl_ready;
static bool g_builtin_oom;
/* The file this thread is loading (constructors run on the loading thread). */
static __thread md__plugin_file *t_loading;

MD_API void md_register_module(const char *registry, const md_class *cls) {
    md__plugin_file *f = t_loading;
    if (f) {
        if (md__grow((void **)&f->items, &f->cap_items, f->n_items + 1, sizeof *f->items) == 0)
            f->items[f->n_items++] = (md__reg_item){ registry, cls };
        else if (!f->refused) f->refused = strdup("out of memory queueing its registrations");
        return;
    }
    pthread_mutex_lock(&g_lock);
    if (md__grow((void **)&g_builtins, &g_cap_builtins, g_n_builtins + 1, sizeof *g_builtins) == 0)
        g_builtins[g_n_builtins++] = (md__reg_item){ registry, cls };
    else g_builtin_oom = true;
    pthread_mutex_unlock(&g_lock);
}

int md__plugin_commit_builtins(md_ctx *ctx, md_error *err) {
    pthread_mutex_lock(&g_lock);
    int rc = g_builtin_oom ? md_failc(err, MD_ERR_NOMEM, "out of memory queueing built-in registrations")
                           : md__registry_commit(ctx, MD__BUILTIN, g_builtins, g_n_builtins, err);
    pthread_mutex_unlock(&g_lock);
    return rc;
}

/* ---- the process-wide file table (g_lock held) ---- */

static md__plugin_file *find_file(const char *real) {
    for (int i = 0; i < g_n_files; i++)
        if (!strcmp(g_files[i]->path, real)) return g_files[i];
    return NULL;
}

static void free_record(md__plugin_file *f) {
    if (!f) return;
    free(f->path);
    free(f->items);
    free(f->refused);
    free(f);
}

/* lt_dlerror's text, copied at once. libltdl reports most failures as "file
 * not found"; the dynamic linker's own reason is then more useful, and
 * asking it is safe: a file that failed to load runs no constructors. */
static void load_failure(const char *path, char *buf, size_t n) {
    const char *lt = lt_dlerror();
    snprintf(buf, n, "%s", lt ? lt : "unknown libltdl error");
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (h) { dlclose(h); return; }
    dlerror();
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h) { dlclose(h); return; }
    const char *dl = dlerror();
    if (!dl) return;
    /* dlerror prefixes the path; the caller names the file already. */
    size_t pl = strlen(path);
    if (!strncmp(dl, path, pl) && !strncmp(dl + pl, ": ", 2)) dl += pl + 2;
    snprintf(buf, n, "%s", dl);
}

/* Opens `real` and fills a new record; the record says why when refused. */
static md__plugin_file *open_file(const char *real, md_error *err) {
    md__plugin_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(real))) {
        free(f);
        md_failc(err, MD_ERR_NOMEM, "%s: out of memory", real);
        return NULL;
    }
    if (!g_ltdl_ready) {
        if (lt_dlinit() != 0) {
            md_failc(err, MD_ERR_PLUGIN, "cannot initialise libltdl: %s", lt_dlerror());
            free_record(f);
            return NULL;
        }
        g_ltdl_ready = true;
    }
    lt_dladvise advise;
    if (lt_dladvise_init(&advise) || lt_dladvise_local(&advise)) {
        md_failc(err, MD_ERR_PLUGIN, "%s: cannot set up libltdl: %s", real, lt_dlerror());
        lt_dladvise_destroy(&advise);
        free_record(f);
        return NULL;
    }
    /* The system loader opens the file first with every symbol bound now,
     * so a plugin calling a function the core lacks is refused here with
     * the symbol's name instead of failing when first called (libltdl binds
     * lazily). libltdl's open then only adds a reference. */
    t_loading = f;
    dlerror();
    void *bound = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    char why_now[1024] = "";
    if (!bound) {
        const char *dl = dlerror();
        size_t pl = strlen(real);
        if (dl && !strncmp(dl, real, pl) && !strncmp(dl + pl, ": ", 2)) dl += pl + 2;
        snprintf(why_now, sizeof why_now, "%s", dl ? dl : "unknown dlopen error");
    }
    lt_dlhandle h = bound ? lt_dlopenadvise(real, advise) : NULL;
    t_loading = NULL;
    if (bound) dlclose(bound);
    lt_dladvise_destroy(&advise);
    if (!h) {
        char why[1024];
        if (why_now[0]) {
            snprintf(why, sizeof why, "%s", why_now);
        } else {
            t_loading = f;   /* a probe that did load must not register built-ins */
            load_failure(real, why, sizeof why);
            t_loading = NULL;
        }
        md_failc(err, MD_ERR_PLUGIN, "%s: cannot load: %s", real, why);
        free_record(f);
        return NULL;
    }
    char why[512] = "";
    const md_plugin_desc *d = lt_dlsym(h, "md_plugin_descriptor");
    if (f->refused) {
        snprintf(why, sizeof why, "%s", f->refused);
    } else if (!d) {
        snprintf(why, sizeof why, "not a plugin (no md_plugin_descriptor symbol; use MD_PLUGIN)");
    } else if (d->abi_major != MD_ABI_MAJOR || d->abi_minor > MD_ABI_MINOR || d->abi_minor < MD_ABI_MINOR_OLDEST) {
        snprintf(why, sizeof why, "plugin ABI %u.%u is incompatible with the core's ABI %d.%d (%s)",
                 d->abi_major, d->abi_minor, MD_ABI_MAJOR, MD_ABI_MINOR,
                 d->abi_major != MD_ABI_MAJOR ? "major versions differ"
                 : d->abi_minor > MD_ABI_MINOR ? "minor version is newer; rebuild against this core"
                                               : "built before the plugin structs grew; rebuild against this core");
    }
    if (why[0]) {
        /* Nothing was committed; unloading drops the queued classes too. */
        free(f->items);
        f->items = NULL;
        f->n_items = f->cap_items = 0;
        lt_dlclose(h);
        free(f->refused);
        f->refused = strdup(why);
        return f;
    }
    f->handle = h;
    f->desc = d;
    if (md__sha256_file(f->path, f->sha256) != 0) f->sha256[0] = 0;
    return f;
}

/* ---- loading into a context ---- */

static bool ctx_has_file(const struct md_registries *r, const md__plugin_file *f) {
    for (int i = 0; i < r->n_files; i++)
        if (r->files[i] == f) return true;
    return false;
}

/* Whether the `plugins` list names f: by its MD_PLUGIN name, its file name
 * ("resnet.so") or its path. */
static bool allowed_one(const char *s, const md__plugin_file *f) {
    const char *base = strrchr(f->path, '/');
    base = base ? base + 1 : f->path;
    if ((f->desc && f->desc->name && !strcmp(s, f->desc->name)) || !strcmp(s, base)) return true;
    char real[PATH_MAX];
    return strchr(s, '/') && realpath(s, real) && !strcmp(real, f->path);
}
static bool allowed(const md_cfg *allow, const md__plugin_file *f) {
    for (int i = 0; i < md_cfg_len(allow); i++) {
        const char *s = md_cfg_as_str(md_cfg_at(allow, i));
        if (s && allowed_one(s, f)) return true;
    }
    return false;
}

int md__plugin_left_out_provider(md_ctx *ctx, const char *registry, const char *name, const char **plugin,
                                 const char **path) {
    const struct md_registries *r = ctx->reg;
    for (int i = 0; i < r->n_left_out; i++) {
        const md__plugin_file *f = r->left_out[i];
        for (int k = 0; k < f->n_items; k++)
            if (!strcmp(f->items[k].registry, registry) && !strcmp(f->items[k].cls->name, name)) {
                *plugin = f->desc && f->desc->name ? f->desc->name : "?";
                *path = f->path;
                return 0;
            }
    }
    return -1;
}

MD_API int md_plugin_load_file(md_ctx *ctx, const char *path, md_error *err) {
    char real[PATH_MAX];
    if (!realpath(path, real))
        return md_failc(err, MD_ERR_IO, "%s: cannot load plugin: %s", path, strerror(errno));
    struct md_registries *r = ctx->reg;
    pthread_mutex_lock(&g_lock);
    md__plugin_file *f = find_file(real);
    int rc = 0;
    if (!f) {
        if (md__grow((void **)&g_files, &g_cap_files, g_n_files + 1, sizeof *g_files)) {
            rc = md_failc(err, MD_ERR_NOMEM, "%s: out of memory", real);
            goto out;
        }
        f = open_file(real, err);
        if (!f) { rc = -1; goto out; }
        g_files[g_n_files++] = f;
    }
    if (f->refused) {
        rc = md_failc(err, MD_ERR_PLUGIN, "%s: %s", real, f->refused);
        goto out;
    }
    if (ctx_has_file(r, f)) goto out;
    if (r->allow && !allowed(r->allow, f)) {   /* remembered, to name it if a type it has is asked for */
        if (md__grow((void **)&r->left_out, &r->cap_left_out, r->n_left_out + 1, sizeof *r->left_out)) {
            rc = md_failc(err, MD_ERR_NOMEM, "%s: out of memory", real);
            goto out;
        }
        r->left_out[r->n_left_out++] = f;
        goto out;
    }
    if (md__grow((void **)&r->files, &r->cap_files, r->n_files + 1, sizeof *r->files)) {
        rc = md_failc(err, MD_ERR_NOMEM, "%s: out of memory", real);
        goto out;
    }
    /* the descriptor of a plugin built for ABI minor 0 ends before init */
    if (f->desc->abi_minor >= 1 && f->desc->init) {
        md_error why = { 0 };
        if (f->desc->init(ctx, &why) != 0) {
            rc = md_failc(err, MD_ERR_PLUGIN, "%s: plugin %s refused to load: %s", f->path,
                          f->desc->name ? f->desc->name : "?", why.msg[0] ? why.msg : "its init failed");
            goto out;
        }
    }
    rc = md__registry_commit(ctx, f->path, f->items, f->n_items, err);
    if (rc == 0) r->files[r->n_files++] = f;
out:
    pthread_mutex_unlock(&g_lock);
    return rc;
}

static int has_so_suffix(const char *name) {
    size_t n = strlen(name);
    return n > 3 && !strcmp(name + n - 3, ".so");
}

/* Loads every *.so under dir, in name order, depth first. */
static int load_tree(md_ctx *ctx, const char *dir, int depth, md_error *err) {
    if (depth > 32) return md_failc(err, MD_ERR_PLUGIN, "%s: plugin directories nested too deep (a link loop?)", dir);
    struct dirent **list = NULL;
    int n = scandir(dir, &list, NULL, alphasort);
    if (n < 0) return md_failc(err, MD_ERR_IO, "plugin directory %s: %s", dir, strerror(errno));
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *name = list[i]->d_name;
        if (rc == 0 && name[0] != '.') {
            char p[PATH_MAX];
            struct stat st;
            snprintf(p, sizeof p, "%s/%s", dir, name);
            if (stat(p, &st) == 0) {
                if (S_ISDIR(st.st_mode)) rc = load_tree(ctx, p, depth + 1, err);
                else if (S_ISREG(st.st_mode) && has_so_suffix(name)) rc = md_plugin_load_file(ctx, p, err);
            } else if (lstat(p, &st) == 0 && S_ISLNK(st.st_mode) && has_so_suffix(name)) {
                char to[PATH_MAX] = "";
                ssize_t k = readlink(p, to, sizeof to - 1);
                to[k > 0 ? k : 0] = 0;
                rc = md_failc(err, MD_ERR_PLUGIN, "%s: a dangling link (to %s)", p, to);
            }
            if (rc != 0 && ctx->reg->skip_bad && err && err->code != MD_ERR_NOMEM) {
                /* --skip-bad-plugins: name it and go on with the others */
                md_warn(ctx, "skipping a bad plugin: %s", err->msg);
                md_error_clear(err);
                rc = 0;
            }
        }
        free(list[i]);
    }
    free(list);
    return rc;
}

MD_API int md_plugin_load_dir(md_ctx *ctx, const char *dir, md_error *err) {
    struct md_registries *r = ctx->reg;
    struct stat st;
    if (stat(dir, &st) != 0)
        return md_failc(err, MD_ERR_IO, "plugin directory %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return md_failc(err, MD_ERR_IO, "plugin directory %s: not a directory", dir);
    bool known = false;
    for (int i = 0; i < r->n_dirs; i++)
        if (!strcmp(r->dirs[i], dir)) known = true;
    if (!known) {
        char *copy = strdup(dir);
        if (!copy || md__grow((void **)&r->dirs, &r->cap_dirs, r->n_dirs + 1, sizeof *r->dirs)) {
            free(copy);
            return md_failc(err, MD_ERR_NOMEM, "out of memory");
        }
        r->dirs[r->n_dirs++] = copy;
    }
    return load_tree(ctx, dir, 0, err);
}

/* plugin_dirs = [...]: each relative to the file that set it. */
static int load_config_dirs(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    const md_cfg *dirs = md_cfg_get(cfg, "plugin_dirs");
    if (md_cfg_is_none(dirs)) return 0;
    int n = md_cfg_kind(dirs) == MD_CFG_LIST ? md_cfg_len(dirs) : 1;
    for (int i = 0; i < n; i++) {
        const md_cfg *d = md_cfg_kind(dirs) == MD_CFG_LIST ? md_cfg_at(dirs, i) : dirs;
        const char *s = md_cfg_kind(d) == MD_CFG_STRING ? md_cfg_as_str(d) : NULL;
        char where[1024], path[PATH_MAX + 8];
        if (!s)
            return md_failc(err, MD_ERR_CONFIG, "%s: plugin_dirs: expected a list of directory names",
                            md_cfg_where(d, where, sizeof where));
        const char *f = md_cfg_file(d);
        if (s[0] != '/' && f && *f && strcmp(f, "--cfg-options")) {
            char base[PATH_MAX];
            snprintf(base, sizeof base, "%s", f);
            snprintf(path, sizeof path, "%s/%s", dirname(base), s);
        } else {
            snprintf(path, sizeof path, "%s", s);
        }
        if (md_plugin_load_dir(ctx, path, err) != 0)
            return md_error_wrap(err, "%s: plugin_dirs", md_cfg_where(d, where, sizeof where));
    }
    return 0;
}

/* The directories in order; the `plugins` filter, if any, is set. */
static int load_set_dirs(md_ctx *ctx, const md_cfg *cfg, const md_plugin_set_opts *o, bool with_default,
                         md_error *err) {
    const char *def = with_default ? md_plugin_default_dir(ctx) : NULL;
    if (def && md_plugin_load_dir(ctx, def, err) != 0) return -1;
    if (cfg && load_config_dirs(ctx, cfg, err) != 0) return -1;
    for (int i = 0; o && i < o->n_dirs; i++)
        if (md_plugin_load_dir(ctx, o->dirs[i], err) != 0) return -1;
    /* every name in the list must have been found */
    const md_cfg *allow = ctx->reg->allow;
    char where[1024];
    for (int i = 0; allow && i < md_cfg_len(allow); i++) {
        const char *want = md_cfg_as_str(md_cfg_at(allow, i));
        bool found = false;
        for (int k = 0; k < ctx->reg->n_files && !found; k++) found = allowed_one(want, ctx->reg->files[k]);
        if (!found)
            return md_failc(err, MD_ERR_CONFIG, "%s: plugins: no plugin '%s' in the directories searched",
                            md_cfg_where(md_cfg_at(allow, i), where, sizeof where), want);
    }
    return 0;
}

MD_API int md_plugin_set_load(md_ctx *ctx, const md_cfg *cfg, const md_plugin_set_opts *o, md_error *err) {
    const md_cfg *dp = cfg ? md_cfg_get(cfg, "default_plugins") : NULL;
    char where[1024];
    if (dp && md_cfg_kind(dp) != MD_CFG_BOOL)
        return md_failc(err, MD_ERR_CONFIG, "%s: default_plugins: expected true or false",
                        md_cfg_where(dp, where, sizeof where));
    bool with_default = !(o && o->no_default) && !(dp && !md_cfg_as_bool(dp));
    ctx->reg->skip_bad = o && o->skip_bad;
    /* plugins = ["resnet", "fpn.so", ...]: only these of the searched files join */
    const md_cfg *allow = cfg ? md_cfg_get(cfg, "plugins") : NULL;
    if (!md_cfg_is_none(allow)) {
        if (md_cfg_kind(allow) != MD_CFG_LIST)
            return md_failc(err, MD_ERR_CONFIG, "%s: plugins: expected a list of plugin names or files",
                            md_cfg_where(allow, where, sizeof where));
        for (int i = 0; i < md_cfg_len(allow); i++)
            if (md_cfg_kind(md_cfg_at(allow, i)) != MD_CFG_STRING)
                return md_failc(err, MD_ERR_CONFIG, "%s: plugins[%d]: expected a plugin name or file",
                                md_cfg_where(md_cfg_at(allow, i), where, sizeof where), i);
        ctx->reg->allow = allow;
    }
    const md_cfg *ov = cfg ? md_cfg_get(cfg, "override_classes") : NULL;
    if (!md_cfg_is_none(ov) && md_cfg_kind(ov) != MD_CFG_LIST)
        return md_failc(err, MD_ERR_CONFIG, "%s: override_classes: expected a list of class names",
                        md_cfg_where(ov, where, sizeof where));
    ctx->reg->override_cfg = md_cfg_is_none(ov) ? NULL : ov;
    ctx->reg->override_names = o ? o->overrides : NULL;
    ctx->reg->n_override_names = o ? o->n_overrides : 0;
    int rc = load_set_dirs(ctx, cfg, o, with_default, err);
    /* the config and names are the caller's: later loads neither filter nor override */
    ctx->reg->allow = ctx->reg->override_cfg = NULL;
    ctx->reg->override_names = NULL;
    ctx->reg->n_override_names = 0;
    return rc;
}

MD_API const char *md_plugin_default_dir(md_ctx *ctx) {
    (void)ctx;
    static char dir[PATH_MAX];
    static bool done;
    pthread_mutex_lock(&g_lock);
    if (!done) {
        done = true;
        Dl_info info;
        char real[PATH_MAX];
        if (dladdr((void *)&md_plugin_default_dir, &info) && info.dli_fname && realpath(info.dli_fname, real)) {
            char *slash = strrchr(real, '/');
            if (slash) *slash = 0;
            char cand[PATH_MAX + 32];
            snprintf(cand, sizeof cand, "%s/mmdet/plugins", real);
            struct stat st;
            if (strlen(cand) < sizeof dir && stat(cand, &st) == 0 && S_ISDIR(st.st_mode))
                snprintf(dir, sizeof dir, "%s", cand);
        }
    }
    pthread_mutex_unlock(&g_lock);
    return dir[0] ? dir : NULL;
}

MD_API int md_plugin_dir_count(md_ctx *ctx) { return ctx->reg->n_dirs; }

MD_API int md_plugin_count(md_ctx *ctx) { return ctx->reg->n_files; }

MD_API char *md_plugin_set_text(md_ctx *ctx) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    for (int i = 0; i < ctx->reg->n_files; i++) {
        const md__plugin_file *p = ctx->reg->files[i];
        const md_plugin_desc *d = p->desc;
        fprintf(f, "%s%s %s %s %s sha256:%s", i ? "\n" : "", d && d->name ? d->name : "?",
                d && d->version ? d->version : "?", d && d->license ? d->license : "?", p->path,
                p->sha256[0] ? p->sha256 : "?");
    }
    fclose(f);
    return text;
}

MD_API int md_plugin_set_compare(md_ctx *ctx, const char *recorded, char *msg, size_t n) {
    int differ = 0;
    size_t used = 0;
    if (n) msg[0] = 0;
    for (const char *line = recorded; line && *line;) {
        const char *end = strchr(line, '\n');
        char name[128] = "", version[64] = "";
        int len = end ? (int)(end - line) : (int)strlen(line);
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", len < 511 ? len : 511, line);
        if (sscanf(buf, "%127s %63s", name, version) == 2)
            for (int i = 0; i < ctx->reg->n_files; i++) {
                const md_plugin_desc *d = ctx->reg->files[i]->desc;
                if (!d || !d->name || strcmp(d->name, name) || !d->version || !strcmp(d->version, version)) continue;
                differ++;
                if (used < n) {
                    int k = snprintf(msg + used, n - used, "%s%s %s -> %s", used ? ", " : "", name, version,
                                     d->version);
                    used += k > 0 ? (size_t)k : 0;
                }
            }
        line = end ? end + 1 : NULL;
    }
    return differ;
}

MD_API const md_plugin_desc *md_plugin_get(md_ctx *ctx, int i, const char **path) {
    if (i < 0 || i >= ctx->reg->n_files) return NULL;
    if (path) *path = ctx->reg->files[i]->path;
    return ctx->reg->files[i]->desc;
}

MD_API const char *md_plugin_dir(md_ctx *ctx, int i) {
    return i >= 0 && i < ctx->reg->n_dirs ? ctx->reg->dirs[i] : NULL;
}
