/* Private to registry.c and plugin.c: the per-context registry state. */
#ifndef MMDET_REGISTRY_PRIVATE_H
#define MMDET_REGISTRY_PRIVATE_H

#include "internal.h"

#define MD__BUILTIN "<builtin>"

/* One queued registration: what a constructor asked for. */
typedef struct md__reg_item {
    const char *registry;
    const md_class *cls;
} md__reg_item;

typedef struct md__entry {
    const md_class *cls;
    const char *origin;          /* file path (lives for the process) or MD__BUILTIN */
} md__entry;

typedef struct md__registry {
    char *name;
    md__entry *entries;
    int n, cap;
} md__registry;

/* A config clone handed to a class's build: kept until the context dies
 * (built objects may point into it), with the dotted path it was cloned
 * from so nested builds report full paths. */
typedef struct md__owned_cfg {
    md_cfg *root;
    char *prefix;
} md__owned_cfg;

struct md__plugin_file;          /* plugin.c: the process-wide record of a file */

struct md_registries {
    md__registry *regs;
    int n_regs, cap_regs;
    char **dirs;                 /* plugin directories searched, in order */
    int n_dirs, cap_dirs;
    bool skip_bad;               /* md_plugin_set_opts.skip_bad: a bad file is a warning */
    const md_cfg *allow;         /* the config's `plugins` list (names or files), or NULL: every plugin */
    /* While a plugin set loads: class names a later plugin may replace
     * (the config's override_classes, --override-class; mmdet's force=True). */
    const md_cfg *override_cfg;
    const char *const *override_names;
    int n_override_names;
    const struct md__plugin_file **left_out;   /* found but not in `allow`: named when a type is missing */
    int n_left_out, cap_left_out;
    const struct md__plugin_file **files;   /* files committed into this context */
    int n_files, cap_files;
    md__owned_cfg *owned;
    int n_owned, cap_owned;
};

/* Commits `items` from `origin` into ctx's registries: all or none. A name
 * already present (or repeated in items) is an error naming both origins. */
int md__registry_commit(md_ctx *ctx, const char *origin, const md__reg_item *items, int n, md_error *err);
/* A plugin of the searched directories that the `plugins` list left out
 * and that registers `name` into `registry`: its name and file (0), or -1. */
int md__plugin_left_out_provider(md_ctx *ctx, const char *registry, const char *name, const char **plugin,
                                 const char **path);
/* Commits every built-in registration made so far (plugin.c). */
int md__plugin_commit_builtins(md_ctx *ctx, md_error *err);

/* Grows *arr (of elements of `size`) so it holds at least `need`; 0 or -1. */
int md__grow(void **arr, int *cap, int need, size_t size);

#endif
