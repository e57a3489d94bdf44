/* What every command-line tool shares before its own work, as each of
 * mmdet's tools/ scripts starts the same way: the plugin flags, --cfg-options
 * and --device, then Config.fromfile, merge_from_dict, the plugin set, the
 * device and the log level. mmdet-run has its own richer parser (launchers,
 * resume) and calls md_plugin_set_load itself. */
#ifndef MMDET_TOOL_H
#define MMDET_TOOL_H

#include <stdbool.h>
#include "config.h"
#include "ctx.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_tool_opts {
    const char **plugin_dirs;   /* --plugin-dir DIR, repeatable */
    int n_plugin_dirs;
    bool no_default_plugins;    /* --no-default-plugins */
    bool skip_bad_plugins;      /* --skip-bad-plugins */
    const char **cfg_options;   /* --cfg-options K=V ... */
    int n_cfg_options;
    const char *device;         /* --device DEV; NULL: the config's */
} md_tool_opts;

/* Room for the values of an argv of argc words; -1 when out of memory. */
int md_tool_opts_init(md_tool_opts *o, int argc, md_error *err);
void md_tool_opts_free(md_tool_opts *o);

/* When argv[*i] is one of the shared flags: consumes it and its values
 * (advancing *i to the last one) and returns 1. 0: not a shared flag.
 * -1 with err set: the flag lacks its value. */
int md_tool_opts_parse(md_tool_opts *o, int argc, char **argv, int *i, md_error *err);

/* The shared flags' lines that end a usage message, -h included (without
 * --device, which not every tool takes). */
const char *md_tool_opts_usage(void);

/* Loads `config`, applies --cfg-options, loads the plugin set, sets
 * --device and the config's log_level on ctx. NULL with err set. */
md_cfg *md_tool_setup(md_ctx *ctx, const char *config, const md_tool_opts *o, md_error *err);

#ifdef __cplusplus
}
#endif
#endif
