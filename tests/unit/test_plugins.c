/* Plugin loading: refused files, duplicates, the mmdet-run command line and
 * an out-of-tree plugin built against an installed core. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <mmdet/mmdet.h>

static md_ctx *new_ctx(void) {
    md_error err = { 0 };
    md_ctx *ctx = md_ctx_new(&err);
    cr_assert_not_null(ctx, "%s", err.msg);
    md_log_set_quiet(ctx, true);
    return ctx;
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = calloc(1, (size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) buf[0] = 0;
    fclose(f);
    return buf;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* A scratch directory, removed by rm_tree. */
static char *scratch(void) {
    char *d = strdup("/tmp/mmdet-plugins-XXXXXX");
    cr_assert_not_null(mkdtemp(d));
    return d;
}

static void rm_tree(char *d) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    cr_assert_eq(system(cmd), 0);
    free(d);
}

/* Runs `cmd` with stdout and stderr into files under dir; returns the exit code. */
typedef struct result { int rc; char *out, *err; } result;
static result run(const char *dir, const char *fmt, ...) {
    char cmd[8192], full[9000], o[PATH_MAX], e[PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(o, sizeof o, "%s/stdout", dir);
    snprintf(e, sizeof e, "%s/stderr", dir);
    snprintf(full, sizeof full, "%s >'%s' 2>'%s'", cmd, o, e);
    int st = system(full);
    result r = { WIFEXITED(st) ? WEXITSTATUS(st) : -1, read_all(o), read_all(e) };
    return r;
}
static void result_free(result r) { free(r.out); free(r.err); }

static char *abspath(const char *p) {
    char *r = realpath(p, NULL);
    cr_assert_not_null(r, "%s", p);
    return r;
}

/* ---- refused files ---- */

static void assert_refused(const char *dir, const char *file, const char *why, const char *cls) {
    md_ctx *ctx = new_ctx();
    md_error err = { 0 };
    int before = md_registry_entry_count(ctx, "models");
    cr_assert_neq(md_plugin_load_dir(ctx, dir, &err), 0);
    cr_assert_eq(err.code, MD_ERR_PLUGIN, "%s", err.msg);
    cr_assert(strstr(err.msg, file), "names the file: %s", err.msg);
    cr_assert(strstr(err.msg, why), "reason '%s': %s", why, err.msg);
    cr_assert_null(strchr(err.msg, '\n'), "one line: %s", err.msg);
    /* No trace in the registries. */
    cr_assert_null(md_registry_find(ctx, "models", cls, NULL));
    cr_assert_eq(md_registry_entry_count(ctx, "models"), before);
    /* A second context gets the same answer without a trace either. */
    md_ctx *b = new_ctx();
    md_error err2 = { 0 };
    cr_assert_neq(md_plugin_load_file(b, file, &err2), 0);
    md_ctx_free(b);
    md_ctx_free(ctx);
}

Test(plugins, abi_major_mismatch_refused) {
    md_ctx *ctx = new_ctx();
    md_error err = { 0 };
    cr_assert_neq(md_plugin_load_file(ctx, "tests/bad_plugins/abi_major/abi_major.so", &err), 0);
    char want[256];
    snprintf(want, sizeof want, "/tests/bad_plugins/abi_major/abi_major.so: plugin ABI %d.%d is incompatible "
             "with the core's ABI %d.%d (major versions differ)", MD_ABI_MAJOR + 1, 0, MD_ABI_MAJOR, MD_ABI_MINOR);
    cr_assert(strstr(err.msg, want), "%s", err.msg);
    cr_assert_null(md_registry_find(ctx, "models", "AbiMajorThing", NULL));
    md_ctx_free(ctx);
    assert_refused("tests/bad_plugins/abi_major", "tests/bad_plugins/abi_major/abi_major.so", "major versions differ",
                   "AbiMajorThing");
}

Test(plugins, abi_minor_newer_refused) {
    char want[256];
    snprintf(want, sizeof want, "plugin ABI %d.%d is incompatible with the core's ABI %d.%d (minor version is newer",
             MD_ABI_MAJOR, MD_ABI_MINOR + 1, MD_ABI_MAJOR, MD_ABI_MINOR);
    assert_refused("tests/bad_plugins/abi_minor", "tests/bad_plugins/abi_minor/abi_minor.so", want, "AbiMinorThing");
}

/* A minor older than the last growth of the plugin structs would be read
 * past its classes' end: refused, saying to rebuild. */
Test(plugins, abi_minor_older_than_the_structs_refused) {
    char want[256];
    snprintf(want, sizeof want, "plugin ABI %d.%d is incompatible with the core's ABI %d.%d (built before the plugin "
             "structs grew; rebuild", MD_ABI_MAJOR, MD_ABI_MINOR_OLDEST - 1, MD_ABI_MAJOR, MD_ABI_MINOR);
    assert_refused("tests/bad_plugins/abi_old", "tests/bad_plugins/abi_old/abi_old.so", want, "AbiOldThing");
}

/* md_plugin_desc.init (MD_PLUGIN_INIT) may refuse its plugin with a reason. */
Test(plugins, init_refuses_with_its_reason) {
    assert_refused("tests/bad_plugins/init_refuses", "tests/bad_plugins/init_refuses/init_refuses.so",
                   "plugin init_refuses refused to load: the FPGA it drives is not present", "InitRefusedThing");
}

Test(plugins, unresolved_symbol_refused_at_load) {
    assert_refused("tests/bad_plugins/unresolved", "tests/bad_plugins/unresolved/unresolved.so",
                   "undefined symbol: md_function_the_core_lacks", "Unresolved");
}

Test(plugins, not_a_plugin_refused) {
    assert_refused("tests/bad_plugins/not_plugin", "tests/bad_plugins/not_plugin/not_plugin.so",
                   "not a plugin (no md_plugin_descriptor symbol", "NotPluginThing");
}

/* Typed registries: a class whose interface does not fit its registry is
 * refused when its plugin loads, naming the file, the class and why. */
Test(plugins, wrong_interface_refused) {
    assert_refused("tests/bad_plugins/wrong_iface", "tests/bad_plugins/wrong_iface/wrong_iface.so",
                   "class 'LossAsHead' in registry 'heads' does not declare the registry's interface "
                   "(md_dense_head_class or md_roi_head_class or md_bbox_head_class or md_mask_head_class)",
                   "WrongIfaceThing");
}

Test(plugins, missing_required_entry_refused) {
    assert_refused("tests/bad_plugins/missing_entry", "tests/bad_plugins/missing_entry/missing_entry.so",
                   "class 'ForwardlessLoss' in registry 'losses': its md_loss_iface has no forward",
                   "MissingEntryThing");
}

Test(plugins, misspelled_registry_refused) {
    assert_refused("tests/bad_plugins/bad_registry", "tests/bad_plugins/bad_registry/bad_registry.so",
                   "class 'MisfiledHook' registers into 'hook', which is not a registry (did you mean 'hooks'?)",
                   "BadRegistryThing");
}

Test(plugins, undeclared_interface_refused) {
    assert_refused("tests/bad_plugins/no_iface", "tests/bad_plugins/no_iface/no_iface.so",
                   "class 'UntypedHook' in registry 'hooks' does not declare the registry's interface "
                   "(md_hook_iface)", "NoIfaceThing");
}

Test(plugins, unloadable_file_gives_the_linkers_reason) {
    char *d = scratch();
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/garbage.so", d);
    FILE *f = fopen(p, "w");
    fputs("this is not an ELF file, just text\n", f);
    fclose(f);
    md_ctx *ctx = new_ctx();
    md_error err = { 0 };
    cr_assert_neq(md_plugin_load_dir(ctx, d, &err), 0);
    cr_assert_eq(err.code, MD_ERR_PLUGIN);
    cr_assert(strstr(err.msg, "/garbage.so: cannot load: "), "%s", err.msg);
    /* The dynamic linker's reason, not libltdl's generic "file not found". */
    cr_assert(strstr(err.msg, "invalid ELF header") || strstr(err.msg, "file too short"), "%s", err.msg);
    cr_assert_null(strchr(err.msg, '\n'), "%s", err.msg);
    md_ctx_free(ctx);
    rm_tree(d);
}

Test(plugins, duplicate_names_both_files_and_commits_nothing) {
    md_ctx *ctx = new_ctx();
    md_error err = { 0 };
    cr_assert_eq(md_plugin_load_dir(ctx, "tests/plugins", &err), 0, "%s", err.msg);
    cr_assert_neq(md_plugin_load_dir(ctx, "tests/bad_plugins/duplicate", &err), 0);
    cr_assert_eq(err.code, MD_ERR_REGISTRY);
    cr_assert(strstr(err.msg, "'ToyLinear' is already registered in the models registry"), "%s", err.msg);
    cr_assert(strstr(err.msg, "/tests/plugins/toy_models.so"), "%s", err.msg);
    cr_assert(strstr(err.msg, "/tests/bad_plugins/duplicate/dup_toy.so"), "%s", err.msg);
    /* All or nothing: the file's other class is not there either. */
    cr_assert_null(md_registry_find(ctx, "models", "DupOnlyHere", NULL));
    cr_assert(strstr(md_registry_origin(ctx, "models", "ToyLinear"), "toy_models.so"));
    md_ctx_free(ctx);

    /* The same file alone is fine in another context. */
    ctx = new_ctx();
    md_error_clear(&err);
    cr_assert_eq(md_plugin_load_dir(ctx, "tests/bad_plugins/duplicate", &err), 0, "%s", err.msg);
    cr_assert_not_null(md_registry_find(ctx, "models", "DupOnlyHere", NULL));
    /* ... and then the toy plugins clash the other way round. */
    cr_assert_neq(md_plugin_load_dir(ctx, "tests/plugins", &err), 0);
    cr_assert(strstr(err.msg, "registered by "), "%s", err.msg);
    md_ctx_free(ctx);
}

Test(plugins, missing_dir_and_default_dir) {
    md_ctx *ctx = new_ctx();
    md_error err = { 0 };
    cr_assert_neq(md_plugin_load_dir(ctx, "tests/no_such_dir", &err), 0);
    cr_assert(strstr(err.msg, "plugin directory tests/no_such_dir: No such file or directory"), "%s", err.msg);
    cr_assert_neq(md_plugin_load_file(ctx, "tests/no_such.so", &err), 0);
    cr_assert(strstr(err.msg, "tests/no_such.so"), "%s", err.msg);
    /* The build tree has no lib/mmdet/plugins: no default, and never ".". */
    cr_assert_null(md_plugin_default_dir(ctx));
    cr_assert_eq(md_plugin_dir_count(ctx), 0);
    md_ctx_free(ctx);
}

/* ---- mmdet-run ---- */

/* The stock plugins fill every registry the core declares: the model
 * layer's parts are all built by type, and no registry is listed empty. */
Test(mmdet_run, stock_registries_are_filled) {
    char *d = scratch();
    result r = run(d, "bin/mmdet-run --plugin-dir plugins --list-modules");
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_null(strstr(r.out, "empty registries"), "%s", r.out);
    const char *want[][2] = {
        { "losses (9):", "FocalLoss" }, { "losses (9):", "CrossEntropyLoss" }, { "losses (9):", "BalancedL1Loss" },
        { "losses (9):", "CIoULoss" }, { "optimizers (3):", "AdamW" }, { "lr_policies (8):", "CosineAnnealing" },
        { "lr_policies (8):", "OneCycle" }, { "runners (2):", "IterBasedRunner" },
        { "iou_calculators (1):", "BboxOverlaps2D" }, { "prior_generators (2):", "MlvlPointGenerator" },
        { "bbox_coders (2):", "DistancePointBBoxCoder" },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *reg = strstr(r.out, want[i][0]);
        cr_assert(reg, "no '%s' in:\n%s", want[i][0], r.out);
        const char *next = strstr(reg + strlen(want[i][0]), "):\n");   /* the next registry's heading */
        const char *entry = strstr(reg, want[i][1]);
        cr_assert(entry && (!next || entry < next), "%s lacks %s:\n%s", want[i][0], want[i][1], r.out);
    }
    result_free(r);
    rm_tree(d);
}

Test(mmdet_run, list_modules) {
    char *d = scratch();
    result r = run(d, "bin/mmdet-run --plugin-dir tests/plugins --list-modules");
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert(strstr(r.out, "plugin directories:\n  tests/plugins\n"), "%s", r.out);
    cr_assert(strstr(r.out, "models (2):\n  ToyLinear     tests/plugins/toy_models.so  # "), "%s", r.out);
    cr_assert(strstr(r.out, "  ToyContainer  tests/plugins/toy_models.so  # "), "%s", r.out);
    cr_assert(strstr(r.out, "hooks (3):\n"), "%s", r.out);
    cr_assert(strstr(r.out, "  ToyHook           tests/plugins/toy_hook.so"), "%s", r.out);
    /* each plugin's name, version, license and file, as gst-inspect lists them */
    cr_assert(strstr(r.out, "\nplugins (") && strstr(r.out, "  toy_hook ") && strstr(r.out, " tests/plugins/toy_hook.so\n"),
              "%s", r.out);
    result_free(r);
    /* Without a plugin dir only the (empty) built-in registries remain. */
    r = run(d, "bin/mmdet-run --list-modules");
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_null(strstr(r.out, "ToyLinear"), "%s", r.out);
    cr_assert(strstr(r.out, "plugin directories: (none)"), "%s", r.out);
    result_free(r);
    rm_tree(d);
}

/* A bad file in a plugin directory is one error naming it (the run stops
 * before anything else); --skip-bad-plugins makes it a warning and loads
 * the rest. A dangling link is reported as such. */
Test(mmdet_run, bad_files_stop_or_are_skipped) {
    char *d = scratch();
    result r = run(d, "mkdir -p '%s/set' && cp tests/plugins/toy_hook.so '%s/set/' && "
                      "cp tests/bad_plugins/not_plugin/*.so '%s/set/not_plugin.so'", d, d, d);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    result_free(r);
    r = run(d, "bin/mmdet-run --plugin-dir '%s/set' --list-modules", d);
    cr_assert_neq(r.rc, 0);
    cr_assert(strstr(r.err, "/set/not_plugin.so: not a plugin"), "%s", r.err);
    result_free(r);
    r = run(d, "bin/mmdet-run --skip-bad-plugins --plugin-dir '%s/set' --list-modules", d);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert(strstr(r.out, "  ToyHook ") && (strstr(r.err, "skipping a bad plugin: ") || strstr(r.out, "skipping a bad plugin: ")),
              "%s%s", r.out, r.err);
    result_free(r);
    r = run(d, "rm '%s/set/not_plugin.so' && ln -s gone.so '%s/set/link.so' && "
               "bin/mmdet-run --plugin-dir '%s/set' --list-modules", d, d, d);
    cr_assert_neq(r.rc, 0);
    cr_assert(strstr(r.err, "/set/link.so: a dangling link (to gone.so)"), "%s", r.err);
    result_free(r);
    rm_tree(d);
}

Test(mmdet_run, config_plugin_dirs_relative_to_the_config) {
    char *d = scratch();
    result r = run(d, "cd '%s' && '%s' '%s' --list-modules", d, abspath("bin/mmdet-run"),
                   abspath("tests/configs/plugins/with_plugin_dirs.cfg"));
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert(strstr(r.out, "ToyLinear"), "%s", r.out);
    cr_assert(strstr(r.out, "/tests/configs/plugins/../../plugins"), "%s", r.out);
    result_free(r);
    rm_tree(d);
}

Test(mmdet_run, cfg_options_and_flags_reach_the_dumped_config) {
    char *d = scratch();
    result r = run(d, "bin/mmdet-run --plugin-dir tests/plugins tests/configs/plugins/toy_exp.cfg "
                      "--dry-run --work-dir %s/wd --seed 7 --no-validate --deterministic --auto-scale-lr "
                      "--cfg-options model.child.in_features=9 optimizer.lr=0.1 custom_hooks.0.interval=3 "
                      "lr_config.step=[4,6] --resume-from %s/latest.pth --gpu-id 1", d, d);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert(strstr(r.out, "type = \"ToyContainer\";"), "%s", r.out);
    cr_assert(strstr(r.out, "--dry-run: set-up finished"), "%s", r.out);
    cr_assert(strstr(r.out, "Set random seed to 7, deterministic: True"), "%s", r.out);
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/wd/toy_exp.cfg", d);
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_load(p, &err);
    cr_assert_not_null(cfg, "%s", err.msg);
    cr_assert_eq(md_cfg_as_int(md_cfg_get(cfg, "model.child.in_features")), 9);
    cr_assert_eq(md_cfg_as_int(md_cfg_get(cfg, "model.child.out_features")), 4, "from the child config");
    cr_assert_float_eq(md_cfg_as_float(md_cfg_get(cfg, "optimizer.lr")), 0.1, 1e-12);
    cr_assert_float_eq(md_cfg_as_float(md_cfg_get(cfg, "optimizer.momentum")), 0.9, 1e-12, "from a base");
    cr_assert_eq(md_cfg_as_int(md_cfg_get(cfg, "custom_hooks.0.interval")), 3);
    cr_assert_eq(md_cfg_as_int(md_cfg_get(cfg, "lr_config.step.1")), 6);
    char wd[PATH_MAX];
    snprintf(wd, sizeof wd, "%s/wd", d);
    cr_assert_str_eq(md_cfg_str(cfg, "work_dir", ""), wd);
    snprintf(p, sizeof p, "%s/latest.pth", d);
    cr_assert_str_eq(md_cfg_str(cfg, "resume_from", ""), p);
    cr_assert_eq(md_cfg_bool(cfg, "auto_resume", true), false);
    cr_assert_eq(md_cfg_bool(cfg, "validate", true), false);
    cr_assert_eq(md_cfg_bool(cfg, "deterministic", false), true);
    cr_assert_eq(md_cfg_bool(cfg, "auto_scale_lr.enable", false), true);
    cr_assert_eq(md_cfg_len(md_cfg_get(cfg, "gpu_ids")), 1);
    cr_assert_eq(md_cfg_as_int(md_cfg_get(cfg, "gpu_ids.0")), 1);
    cr_assert_str_eq(md_cfg_str(cfg, "launcher", ""), "none");
    md_cfg_free(cfg);
    /* The log file: <work_dir>/<YYYYmmdd_HHMMSS>.log with the same lines. */
    result ls = run(d, "ls '%s/wd' | grep -E '^[0-9]{8}_[0-9]{6}\\.log$' | head -n 1 | tr -d '\\n'", d);
    cr_assert_eq(ls.rc, 0);
    cr_assert_eq(strlen(ls.out), 19, "log file: '%s'", ls.out);
    snprintf(p, sizeof p, "%s/wd/%s", d, ls.out);
    char *log = read_all(p);
    cr_assert(strstr(log, "Set random seed to 7"), "%s", log);
    cr_assert(strstr(log, "in_features = 9;"), "the config is logged: %s", log);
    free(log);
    result_free(ls);
    result_free(r);
    rm_tree(d);
}

Test(mmdet_run, work_dir_priority) {
    char *d = scratch();
    const char *bin = abspath("bin/mmdet-run"), *cfgp = abspath("tests/configs/plugins/toy_exp.cfg");
    const char *plugins = abspath("tests/plugins");
    /* No --work-dir, none in the config: ./work_dirs/<config name>. */
    result r = run(d, "cd '%s' && '%s' --dry-run --plugin-dir '%s' '%s'", d, bin, plugins, cfgp);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    char p[PATH_MAX];
    struct stat st;
    snprintf(p, sizeof p, "%s/work_dirs/toy_exp/toy_exp.cfg", d);
    cr_assert_eq(stat(p, &st), 0, "%s missing", p);
    result_free(r);
    /* The config's work_dir beats the default... */
    r = run(d, "cd '%s' && '%s' --dry-run --plugin-dir '%s' '%s' --cfg-options work_dir=from_cfg", d, bin, plugins,
            cfgp);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    snprintf(p, sizeof p, "%s/from_cfg/toy_exp.cfg", d);
    cr_assert_eq(stat(p, &st), 0, "%s missing", p);
    result_free(r);
    /* ... and --work-dir beats the config. */
    r = run(d, "cd '%s' && '%s' --dry-run --plugin-dir '%s' '%s' --work-dir from_cli --cfg-options work_dir=from_cfg2",
            d, bin, plugins, cfgp);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    snprintf(p, sizeof p, "%s/from_cli/toy_exp.cfg", d);
    cr_assert_eq(stat(p, &st), 0, "%s missing", p);
    snprintf(p, sizeof p, "%s/from_cfg2", d);
    cr_assert_neq(stat(p, &st), 0, "%s should not exist", p);
    result_free(r);
    rm_tree(d);
}

Test(mmdet_run, print_config_and_errors) {
    char *d = scratch();
    result r = run(d, "bin/mmdet-run tests/configs/plugins/toy_exp.cfg --print-config --cfg-options optimizer.lr=0.5");
    cr_assert_eq(r.rc, 0, "%s", r.err);
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse(r.out, "printed.cfg", &err);
    cr_assert_not_null(cfg, "%s\n%s", err.msg, r.out);
    cr_assert_float_eq(md_cfg_as_float(md_cfg_get(cfg, "optimizer.lr")), 0.5, 1e-12);
    cr_assert_str_eq(md_cfg_str(cfg, "work_dir", ""), "./work_dirs/toy_exp");
    md_cfg_free(cfg);
    result_free(r);

    /* MMDET_DATASETS replaces data_root and the paths under data. */
    r = run(d, "MMDET_DATASETS=/datasets/coco bin/mmdet-run tests/configs/plugins/bench/exp.cfg --print-config");
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cfg = md_cfg_parse(r.out, "printed.cfg", &err);
    cr_assert_not_null(cfg, "%s", err.msg);
    cr_assert_str_eq(md_cfg_str(cfg, "data_root", ""), "/datasets/coco/");
    cr_assert_str_eq(md_cfg_str(md_cfg_get(cfg, "data.train"), "ann_file", ""),
                     "/datasets/coco/annotations/instances_train2017.json");
    cr_assert_str_eq(md_cfg_str(md_cfg_get(cfg, "data.test"), "img_prefix", ""), "/datasets/coco/val2017/");
    md_cfg_free(cfg);
    result_free(r);

    /* Each failure: non-zero and one line on stderr. */
    const char *cases[][2] = {
        { "bin/mmdet-run", "the CONFIG argument is required" },
        { "bin/mmdet-run --bogus x.cfg", "unknown option '--bogus'" },
        { "bin/mmdet-run --seed abc x.cfg", "expected an integer, got 'abc'" },
        { "bin/mmdet-run --launcher ssh x.cfg", "invalid choice 'ssh'" },
        { "bin/mmdet-run tests/configs/plugins/no_such.cfg", "no_such.cfg" },
        { "bin/mmdet-run --plugin-dir tests/bad_plugins/abi_major --list-modules", "abi_major.so: plugin ABI 2.0" },
        { "bin/mmdet-run --plugin-dir tests/nowhere --list-modules", "tests/nowhere" },
        { "bin/mmdet-run tests/configs/plugins/toy_exp.cfg --cfg-options", "--cfg-options needs at least one" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        r = run(d, "%s", cases[i][0]);
        cr_assert_neq(r.rc, 0, "%s", cases[i][0]);
        cr_assert(!strncmp(r.err, "mmdet-run: error: ", 18), "%s: %s", cases[i][0], r.err);
        cr_assert(strstr(r.err, cases[i][1]), "%s: %s", cases[i][0], r.err);
        int lines = count_lines(r.err);
        cr_assert(lines == 1 || (lines == 2 && strstr(r.err, "--help")), "%s: %s", cases[i][0], r.err);
        result_free(r);
    }
    r = run(d, "bin/mmdet-run --help");
    cr_assert_eq(r.rc, 0);
    cr_assert(strstr(r.out, "--cfg-options") && strstr(r.out, "--list-modules"), "%s", r.out);
    result_free(r);
    rm_tree(d);
}

/* ---- third-party plugins against an installed core ---- */

/* tests/out_of_tree/<name>.c, the files docs/plugins.md shows, and
 * parameters of theirs a checkpoint of my_exp.cfg must hold. */
#define OUT_OF_TREE_PLUGINS { "my_head", "my_loss", "my_optimizer" }
#define OUT_OF_TREE_PARAMS                                                                                \
    { "bbox_head.cls_reduce.weight", "bbox_head.conv_cls.bias", "bbox_head.conv_reg.weight",                \
      "optimizer.bbox_head.cls_reduce.weight.exp_avg", "optimizer.backbone.conv1.weight.exp_avg" }

/* docs/plugins.md shows the out-of-tree files as they are. */
Test(out_of_tree, guide_shows_the_files) {
    char *guide = read_all("docs/plugins.md");
    cr_assert_not_null(guide);
    const char *mine[] = OUT_OF_TREE_PLUGINS;
    for (size_t i = 0; i < sizeof mine / sizeof mine[0] + 1; i++) {
        char path[128];
        if (i < sizeof mine / sizeof mine[0]) snprintf(path, sizeof path, "tests/out_of_tree/%s.c", mine[i]);
        else snprintf(path, sizeof path, "tests/out_of_tree/my_exp.cfg");
        char *text = read_all(path);
        cr_assert(text && *text, "%s", path);
        cr_assert(strstr(guide, text), "docs/plugins.md does not show %s as it is", path);
        free(text);
    }
    free(guide);
}

Test(out_of_tree, install_compile_load_train, .timeout = 300) {
    char *d = scratch();
    /* Same flavour as this build (SANITIZE/OPT come through MAKEFLAGS under
     * make; a sanitized binary run by hand asks for it), so nothing rebuilds. */
    const char *extra = "";
#ifdef __SANITIZE_ADDRESS__
    const char *mf = getenv("MAKEFLAGS");
    if (!mf || !strstr(mf, "SANITIZE")) extra = "SANITIZE=1";
#endif
    result r = run(d, "make -s --no-print-directory install PREFIX='%s/prefix' %s", d, extra);
    cr_assert_eq(r.rc, 0, "make install: %s%s", r.out, r.err);
    result_free(r);
    const char *installed[] = { "bin/mmdet-run", "lib/libmmdet.so", "include/mmdet/mmdet.h",
                                "include/mmdet/registry.h", "lib/pkgconfig/mmdet.pc", "lib/mmdet/plugins" };
    for (size_t i = 0; i < sizeof installed / sizeof installed[0]; i++) {
        char p[PATH_MAX];
        struct stat st;
        snprintf(p, sizeof p, "%s/prefix/%s", d, installed[i]);
        cr_assert_eq(stat(p, &st), 0, "%s not installed", installed[i]);
    }

    /* The commands of docs/plugins.md: each out-of-tree file compiled
     * against the installed core with pkg-config alone (no core sources). */
    const char *mine[] = OUT_OF_TREE_PLUGINS;
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++) {
        r = run(d, "mkdir -p '%s/my_plugins' && PKG_CONFIG_PATH='%s/prefix/lib/pkgconfig' "
                   "cc -shared -fPIC -Wall -Wextra -Werror -o '%s/my_plugins/%s.so' tests/out_of_tree/%s.c "
                   "$(PKG_CONFIG_PATH='%s/prefix/lib/pkgconfig' pkg-config --cflags --libs mmdet)",
                d, d, d, mine[i], mine[i], d);
        cr_assert_eq(r.rc, 0, "compile %s: %s%s", mine[i], r.out, r.err);
        result_free(r);
    }

    /* The installed command, a second --plugin-dir beside the toy plugins. */
    r = run(d, "'%s/prefix/bin/mmdet-run' --plugin-dir tests/plugins --plugin-dir '%s/my_plugins' --list-modules", d, d);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    char line[PATH_MAX + 64];
    /* Under "heads", beside the installed heads (RetinaHead, ...). */
    snprintf(line, sizeof line, "%s/my_plugins/my_head.so  # an out-of-tree head", d);
    const char *heads = strstr(r.out, "heads ("), *mh = heads ? strstr(heads, "  MyHead  ") : NULL;
    cr_assert(mh && strstr(mh, line) && !memchr(mh, ':', (size_t)(strstr(mh, line) - mh)), "%s", r.out);
    cr_assert(strstr(r.out, "  RetinaHead "), "%s", r.out);
    snprintf(line, sizeof line, "%s/my_plugins/my_loss.so  # squared error", d);
    cr_assert(strstr(r.out, "  MyMSELoss ") && strstr(r.out, line), "%s", r.out);
    snprintf(line, sizeof line, "%s/my_plugins/my_optimizer.so  # the Lion optimizer", d);
    cr_assert(strstr(r.out, "  MyLion ") && strstr(r.out, line), "%s", r.out);
    cr_assert(strstr(r.out, "ToyLinear"), "%s", r.out);
    /* The prefix's own plugin directory is searched by default. */
    snprintf(line, sizeof line, "%s/prefix/lib/mmdet/plugins", d);
    cr_assert(strstr(r.out, line), "%s", r.out);
    result_free(r);

    /* An experiment with them trains (tests/out_of_tree/my_exp.cfg): the
     * head's own layers and the optimizer's state are in its checkpoint. */
    r = run(d, "bin/mmdet-shapes --out '%s/data' --train 8 --val 2 --seed 1 --classes 3", d);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    result_free(r);
    r = run(d, "'%s/prefix/bin/mmdet-run' --plugin-dir '%s/my_plugins' tests/out_of_tree/my_exp.cfg --work-dir '%s/run' "
               "--seed 0 --cfg-options data.train.data_root='%s/data/'", d, d, d, d);
    cr_assert_eq(r.rc, 0, "training: %s%s", r.out, r.err);
    result_free(r);
    char ckpt[PATH_MAX];
    snprintf(ckpt, sizeof ckpt, "%s/run/epoch_1.safetensors", d);
    md_error err = { 0 };
    md_st *st = md_st_open(ckpt, &err);
    cr_assert_not_null(st, "%s", err.msg);
    const char *params[] = OUT_OF_TREE_PARAMS;
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
        cr_assert_geq(md_st_find(st, params[i]), 0, "%s not in %s", params[i], ckpt);
    /* its metadata records the plugin set, one "name version license file" line each */
    const char *set = md_st_metadata(st, "plugins");
    snprintf(line, sizeof line, "my_head 1.0 MIT %s/my_plugins/my_head.so", d);
    cr_assert(set && strstr(set, line) && strstr(set, "resnet 1.0 Apache-2.0 "), "%s", set ? set : "(none)");
    md_st_close(st);

    /* The plugin set (md_plugin_set_load, the same in every tool): without
     * the prefix's directory only the given one is listed ... */
    r = run(d, "'%s/prefix/bin/mmdet-run' --no-default-plugins --plugin-dir '%s/my_plugins' --list-modules", d, d);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert(strstr(r.out, "  MyHead ") && !strstr(r.out, "RetinaHead") && !strstr(r.out, "/prefix/lib/mmdet"),
              "%s", r.out);
    result_free(r);
    /* ... and mmdet-infer, given no --plugin-dir, loads the prefix's plugins
     * and the config's plugin_dirs, relative to the config file, which MyHead
     * comes from */
    char setcfg[PATH_MAX];
    snprintf(setcfg, sizeof setcfg, "%s/set.cfg", d);
    FILE *f = fopen(setcfg, "w");
    cr_assert(f);
    char *exp = abspath("tests/out_of_tree/my_exp.cfg");
    fprintf(f, "base_ = \"%s\";\nplugin_dirs = [\"my_plugins\"];\n"
               "data = { test = { pipeline = ( { type = \"LoadImageFromFile\"; },\n"
               "  { type = \"Resize\"; img_scale = [128, 128]; keep_ratio = true; },\n"
               "  { type = \"Normalize\"; mean = [123.675, 116.28, 103.53]; std = [58.395, 57.12, 57.375]; to_rgb = true; },\n"
               "  { type = \"Pad\"; size_divisor = 32; }, { type = \"DefaultFormatBundle\"; },\n"
               "  { type = \"Collect\"; keys = [\"img\"]; } ); }; };\n", exp);
    fclose(f);
    free(exp);
    r = run(d, "'%s/prefix/bin/mmdet-infer' '%s' '%s/run/epoch_1.safetensors' \"$(ls '%s'/data/val/* | head -n 1)\" "
               "--out-dir '%s/drawn'", d, setcfg, d, d, d);
    cr_assert_eq(r.rc, 0, "mmdet-infer: %s%s", r.out, r.err);
    result_free(r);
    /* a newer version of a plugin than the checkpoint was trained with is named */
    r = run(d, "mkdir -p '%s/v2' && sed 's/MD_PLUGIN(\"my_head\", \"1.0\"/MD_PLUGIN(\"my_head\", \"2.0\"/' "
               "tests/out_of_tree/my_head.c > '%s/v2/my_head.c' && cp '%s'/my_plugins/my_loss.so '%s'/my_plugins/my_optimizer.so "
               "'%s/v2/' && cc -shared -fPIC -o '%s/v2/my_head.so' '%s/v2/my_head.c' "
               "$(PKG_CONFIG_PATH='%s/prefix/lib/pkgconfig' pkg-config --cflags --libs mmdet) && "
               "sed 's/my_plugins/v2/' '%s' > '%s/set2.cfg' && '%s/prefix/bin/mmdet-infer' '%s/set2.cfg' "
               "'%s/run/epoch_1.safetensors' \"$(ls '%s'/data/val/* | head -n 1)\" --out-dir '%s/drawn'",
            d, d, d, d, d, d, d, d, setcfg, d, d, d, d, d, d);
    cr_assert_eq(r.rc, 0, "%s%s", r.out, r.err);
    cr_assert(strstr(r.out, "was trained with other versions of plugins loaded now: my_head 1.0 -> 2.0") ||
              strstr(r.err, "was trained with other versions of plugins loaded now: my_head 1.0 -> 2.0"), "%s%s", r.out,
              r.err);
    result_free(r);
    r = run(d, "'%s/prefix/bin/mmdet-infer' --no-default-plugins '%s' '%s/run/epoch_1.safetensors' "
               "\"$(ls '%s'/data/val/* | head -n 1)\" --out-dir '%s/drawn'", d, setcfg, d, d, d);
    cr_assert_neq(r.rc, 0);
    cr_assert(strstr(r.err, "'RetinaNet' is not in the detectors registry"), "%s", r.err);
    result_free(r);

    /* Built in this process too, its schema's errors naming the key. */
    md_ctx *ctx = new_ctx();
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/my_plugins", d);
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins", &err), 0, "%s", err.msg);
    cr_assert_eq(md_plugin_load_dir(ctx, dir, &err), 0, "%s", err.msg);
    md_cfg *cfg = md_cfg_parse("h = { type = \"MyHead\"; num_classes = 3; in_channels = 8; reduce_channels = 0; };",
                               "my.cfg", &err);
    cr_assert_not_null(cfg, "%s", err.msg);
    cr_assert_null(md_build_from_cfg(ctx, "heads", md_cfg_get(cfg, "h"), NULL, &err));
    cr_assert(strstr(err.msg, "my.cfg:1: reduce_channels in MyHead is 0; it must be at least 1"), "%s", err.msg);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
    rm_tree(d);
}

/* plugins = [...] in a config loads only the plugins it names (by MD_PLUGIN
 * name or file) from the searched directories; a type asked for that a
 * left-out plugin provides names that plugin; a name found nowhere is an
 * error. */
Test(plugins, allow_list_loads_only_the_named_plugins) {
    md_ctx *ctx = new_ctx();
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse("plugins = [\"toy_models\", \"sign_sgd.so\"];", "set.cfg", &err);
    cr_assert_not_null(cfg, "%s", err.msg);
    const char *dirs[] = { "tests/plugins" };
    md_plugin_set_opts o = { dirs, 1, true, false };
    cr_assert_eq(md_plugin_set_load(ctx, cfg, &o, &err), 0, "%s", err.msg);
    cr_assert_eq(md_plugin_count(ctx), 2);
    cr_assert_not_null(md_registry_find(ctx, "models", "ToyLinear", &err), "%s", err.msg);
    cr_assert_null(md_registry_find(ctx, "hooks", "ToyHook", &err));
    cr_assert(strstr(err.msg, "'ToyHook' is not in the hooks registry") && strstr(err.msg, "The plugin toy_hook (") &&
              strstr(err.msg, "/tests/plugins/toy_hook.so) provides it, but the config's `plugins` list leaves it out"),
              "%s", err.msg);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
    ctx = new_ctx();
    cfg = md_cfg_parse("plugins = [\"toy_models\", \"no_such_plugin\"];", "set.cfg", &err);
    cr_assert_neq(md_plugin_set_load(ctx, cfg, &o, &err), 0);
    cr_assert(strstr(err.msg, "set.cfg:1: plugins: no plugin 'no_such_plugin' in the directories searched"), "%s", err.msg);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
}

/* A class may replace one already registered only when the config
 * (override_classes) or the caller (--override-class) says so, as mmdet's
 * force=True; the later file's class is then the one built. */
Test(plugins, deliberate_override_replaces_a_class) {
    md_ctx *ctx = new_ctx();
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse("override_classes = [\"ToyLinear\"];", "set.cfg", &err);
    cr_assert_not_null(cfg, "%s", err.msg);
    const char *dirs[] = { "tests/plugins", "tests/bad_plugins/duplicate" };
    md_plugin_set_opts o = { dirs, 2, true, false };
    cr_assert_eq(md_plugin_set_load(ctx, cfg, &o, &err), 0, "%s", err.msg);
    cr_assert(strstr(md_registry_origin(ctx, "models", "ToyLinear"), "dup_toy.so"));
    cr_assert_not_null(md_registry_find(ctx, "models", "DupOnlyHere", NULL));
    md_cfg_free(cfg);
    md_ctx_free(ctx);
    /* by name from the caller, and without either the clash stays an error */
    ctx = new_ctx();
    const char *names[] = { "ToyLinear" };
    md_plugin_set_opts by_flag = { dirs, 2, true, false, names, 1 };
    cr_assert_eq(md_plugin_set_load(ctx, NULL, &by_flag, &err), 0, "%s", err.msg);
    cr_assert(strstr(md_registry_origin(ctx, "models", "ToyLinear"), "dup_toy.so"));
    md_ctx_free(ctx);
    ctx = new_ctx();
    cr_assert_neq(md_plugin_set_load(ctx, NULL, &o, &err), 0);
    cr_assert(strstr(err.msg, "'ToyLinear' is already registered in the models registry"), "%s", err.msg);
    md_ctx_free(ctx);
}

/* The recorded set names each file's SHA-256, the digest coreutils'
 * sha256sum gives for the same bytes. */
Test(plugins, set_text_records_each_files_sha256) {
    md_ctx *ctx = new_ctx();
    md_error err = { 0 };
    cr_assert_eq(md_plugin_load_file(ctx, "tests/plugins/toy_hook.so", &err), 0, "%s", err.msg);
    char *text = md_plugin_set_text(ctx);
    cr_assert_not_null(text);
    FILE *p = popen("sha256sum tests/plugins/toy_hook.so", "r");
    cr_assert(p);
    char want[80] = "sha256:";
    cr_assert(fgets(want + 7, 65, p));
    pclose(p);
    cr_assert(strstr(text, "toy_hook 1.0 Apache-2.0 ") && strstr(text, want), "%s\nwant %s", text, want);
    free(text);
    md_ctx_free(ctx);
}

/* A plugin cannot choose its ABI: defining MD_ABI_MAJOR before the headers
 * stops the compile with the headers' reason, not a redefinition warning. */
Test(plugins, defining_the_abi_is_a_compile_error) {
    char *d = scratch();
    result r = run(d, "printf '#include <mmdet/mmdet.h>\\n' > '%s/p.c' && cc -Icore/include -DMD_ABI_MAJOR=2 "
                      "-fsyntax-only '%s/p.c'", d, d);
    cr_assert_neq(r.rc, 0, "compiled");
    cr_assert(strstr(r.err, "MD_ABI_MAJOR and MD_ABI_MINOR come from the installed headers"), "%s", r.err);
    result_free(r);
    rm_tree(d);
}
