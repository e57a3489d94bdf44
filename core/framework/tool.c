/* The start every command-line tool shares (tool.h). */
#include <stdlib.h>
#include <string.h>
#include "mmdet/registry.h"
#include "mmdet/tool.h"
#include "internal.h"

MD_API int md_tool_opts_init(md_tool_opts *o, int argc, md_error *err) {
    memset(o, 0, sizeof *o);
    size_t n = (size_t)(argc > 0 ? argc : 0) + 1;
    o->plugin_dirs = calloc(n, sizeof *o->plugin_dirs);
    o->cfg_options = calloc(n, sizeof *o->cfg_options);
    if (o->plugin_dirs && o->cfg_options) return 0;
    md_tool_opts_free(o);
    return md_failc(err, MD_ERR_NOMEM, "out of memory");
}

MD_API void md_tool_opts_free(md_tool_opts *o) {
    free(o->plugin_dirs);
    free(o->cfg_options);
    memset(o, 0, sizeof *o);
}

MD_API int md_tool_opts_parse(md_tool_opts *o, int argc, char **argv, int *i, md_error *err) {
    const char *a = argv[*i];
    bool has_value = *i + 1 < argc;
    if (!strcmp(a, "--no-default-plugins")) o->no_default_plugins = true;
    else if (!strcmp(a, "--skip-bad-plugins")) o->skip_bad_plugins = true;
    else if (!strcmp(a, "--plugin-dir") || !strcmp(a, "--device")) {
        if (!has_value) return md_failc(err, MD_ERR_CONFIG, "%s needs a value", a);
        if (a[2] == 'p') o->plugin_dirs[o->n_plugin_dirs++] = argv[++*i];
        else o->device = argv[++*i];
    } else if (!strcmp(a, "--cfg-options")) {
        /* nargs='+': every following word up to the next option */
        int start = o->n_cfg_options;
        while (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2)) o->cfg_options[o->n_cfg_options++] = argv[++*i];
        if (o->n_cfg_options == start) return md_failc(err, MD_ERR_CONFIG, "--cfg-options needs at least one KEY=VALUE");
    } else {
        return 0;
    }
    return 1;
}

MD_API const char *md_tool_opts_usage(void) {
    return "  --plugin-dir DIR          load every plugin under DIR (repeatable), after the\n"
           "                            install prefix's plugins and the config's plugin_dirs\n"
           "  --no-default-plugins      leave the install prefix's plugin directory out\n"
           "  --skip-bad-plugins        warn about a file that is no usable plugin, load the rest\n"
           "  --cfg-options K=V ...     override config settings\n"
           "  -h, --help                this message\n";
}

MD_API md_cfg *md_tool_setup(md_ctx *ctx, const char *config, const md_tool_opts *o, md_error *err) {
    md_cfg *cfg = md_cfg_load(config, err);
    if (!cfg) return NULL;
    md_plugin_set_opts po = { o->plugin_dirs, o->n_plugin_dirs, o->no_default_plugins, o->skip_bad_plugins };
    if (md_cfg_apply_options(cfg, o->cfg_options, o->n_cfg_options, err) != 0 ||
        md_plugin_set_load(ctx, cfg, &po, err) != 0)
        goto fail;
    if (o->device && !md_cfg_set_str(cfg, "device", o->device)) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    int level = md_log_level_parse(md_cfg_str(cfg, "log_level", "INFO"));
    if (level > 0) md_log_set_level(ctx, (md_log_level)level);
    return cfg;
fail:
    md_cfg_free(cfg);
    return NULL;
}
