/* --list-modules output. */
#include <string.h>
#include <unistd.h>
#include "mmdet_run.h"

/* Files under the working directory are shown relative to it. */
static const char *shown(const char *path, const char *cwd) {
    size_t n = strlen(cwd);
    if (n && !strncmp(path, cwd, n) && path[n] == '/') return path + n + 1;
    return path;
}

void list_modules(md_ctx *ctx, FILE *out) {
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
    int nd = md_plugin_dir_count(ctx);
    fprintf(out, "plugin directories:%s\n", nd ? "" : " (none)");
    for (int i = 0; i < nd; i++) fprintf(out, "  %s\n", md_plugin_dir(ctx, i));
    /* like gst-inspect: each plugin's name, version, license and file */
    int np = md_plugin_count(ctx);
    fprintf(out, "plugins (%d):\n", np);
    for (int i = 0; i < np; i++) {
        const char *path = NULL;
        const md_plugin_desc *d = md_plugin_get(ctx, i, &path);
        fprintf(out, "  %-24s %-8s %-12s %s\n", d && d->name ? d->name : "?", d && d->version ? d->version : "?",
                d && d->license ? d->license : "?", path ? shown(path, cwd) : "?");
    }
    int empty = 0;
    for (int r = 0; r < md_registry_count(ctx); r++) {
        const char *reg = md_registry_name(ctx, r);
        int n = md_registry_entry_count(ctx, reg);
        if (!n) { empty++; continue; }
        int w = 0;
        for (int i = 0; i < n; i++) {
            int l = (int)strlen(md_registry_entry(ctx, reg, i)->name);
            if (l > w) w = l;
        }
        fprintf(out, "%s (%d):\n", reg, n);
        for (int i = 0; i < n; i++) {
            const md_class *c = md_registry_entry(ctx, reg, i);
            fprintf(out, "  %-*s  %s", w, c->name, shown(md_registry_origin(ctx, reg, c->name), cwd));
            if (c->doc) fprintf(out, "  # %s", c->doc);
            fputc('\n', out);
        }
    }
    if (empty) {
        fprintf(out, "empty registries:");
        for (int r = 0; r < md_registry_count(ctx); r++) {
            const char *reg = md_registry_name(ctx, r);
            if (!md_registry_entry_count(ctx, reg)) fprintf(out, " %s", reg);
        }
        fputc('\n', out);
    }
}
