/* mmdet-run: train a detector from a config, like mmdet's tools/train.py.
 *
 * Order as in train.py: load the config, MMDET_DATASETS, --cfg-options,
 * store the flags in the config, create the work dir, dump the config into
 * it, log to <work_dir>/<YYYYmmdd_HHMMSS>.log, seed, train.
 */
#include <errno.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "mmdet_run.h"

typedef struct args {
    const char *config;
    const char **plugin_dirs;
    int n_plugin_dirs;
    const char **overrides;           /* --override-class NAME */
    int n_overrides;
    const char *work_dir, *resume_from, *launcher, *device;
    const char **cfg_options;
    int n_cfg_options;
    bool auto_resume, no_validate, auto_scale_lr, deterministic, diff_seed;
    bool list_modules, print_config, has_seed, dry_run, no_default_plugins, skip_bad_plugins;
    long long seed, gpu_id, gpus;
    long long *gpu_ids;
    int n_gpu_ids;
    bool has_gpu_id;
} args;

static void usage(FILE *out) {
    fputs("usage: mmdet-run [--plugin-dir DIR]... [options] CONFIG\n"
          "\n"
          "Train a detector (mmdet's tools/train.py).\n"
          "\n"
          "  CONFIG                  the config file (libconfig syntax)\n"
          "  --plugin-dir DIR        load every plugin (*.so) under DIR, recursively;\n"
          "                          repeatable. Loaded before them: the install prefix's\n"
          "                          plugin directory, then the config's plugin_dirs list\n"
          "  --no-default-plugins    leave the install prefix's plugin directory out\n"
          "                          (as default_plugins = false in the config)\n"
          "  --override-class NAME   a later plugin may replace the class NAME (as\n"
          "                          override_classes in the config; mmdet's force=True)\n"
          "  --skip-bad-plugins      warn about a file that is no usable plugin and load\n"
          "                          the others (default: one error naming the file)\n"
          "  --work-dir DIR          where logs and checkpoints go (default: the config's\n"
          "                          work_dir, else ./work_dirs/<config name>)\n"
          "  --resume-from FILE      the checkpoint to resume from\n"
          "  --auto-resume           resume from the latest checkpoint in the work dir\n"
          "  --no-validate           do not evaluate during training (validate = false)\n"
          "  --gpu-id N              the device to use (default 0; not distributed)\n"
          "  --gpus N                deprecated (mmdet): one process trains on one device;\n"
          "                          N is taken as 1. Use mpirun/srun for more (--launcher)\n"
          "  --gpu-ids N ...         deprecated (mmdet): the first id is used as --gpu-id\n"
          "  --device DEV            cpu, cuda or cuda:N (the config's device; default cpu)\n"
          "  --seed N                random seed (default: a random one)\n"
          "  --diff-seed             different seeds for different ranks (seed + rank)\n"
          "  --deterministic         deterministic kernels where it matters\n"
          "  --cfg-options K=V ...   override settings: data.samples_per_gpu=4,\n"
          "                          model.backbone.depth=50, a.b=[1,2] (see docs/config.md)\n"
          "  --launcher L            none (default), mpi (under mpirun) or slurm (under srun):\n"
          "                          one process per device, data parallel (docs/distributed.md);\n"
          "                          pytorch is refused (no torchrun rendezvous; use mpi)\n"
          "  --local_rank N          accepted for mmdet's command lines (the rank comes from\n"
          "                          the launcher)\n"
          "  --auto-scale-lr         scale the lr by the batch size (auto_scale_lr in the config)\n"
          "  --list-modules          list every registry, its entries and their files, and exit\n"
          "  --print-config          print the merged config and exit\n"
          "  --dry-run               set up the work dir, config dump and log, then stop before training\n"
          "  -h, --help              this message\n",
          out);
}

static int arg_error(const char *fmt, const char *what) {
    fprintf(stderr, "mmdet-run: error: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n(run mmdet-run --help for the options)\n");
    return 2;
}

/* Accepts "--flag value" and "--flag=value"; returns the value or NULL. */
static const char *take_value(int argc, char **argv, int *i, const char *flag) {
    size_t n = strlen(flag);
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (*i + 1 >= argc) return NULL;
    return argv[++*i];
}

static bool is_flag(const char *arg, const char *flag) {
    size_t n = strlen(flag);
    return !strncmp(arg, flag, n) && (arg[n] == 0 || arg[n] == '=');
}

static int parse_int(const char *s, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

/* Returns 0, or the exit code for a bad command line (-1: --help). */
static int parse_args(int argc, char **argv, args *a) {
    memset(a, 0, sizeof *a);
    a->launcher = "none";
    a->plugin_dirs = calloc((size_t)argc, sizeof *a->plugin_dirs);
    a->overrides = calloc((size_t)argc, sizeof *a->overrides);
    a->cfg_options = calloc((size_t)argc, sizeof *a->cfg_options);
    a->gpu_ids = calloc((size_t)argc, sizeof *a->gpu_ids);
    if (!a->plugin_dirs || !a->cfg_options || !a->overrides || !a->gpu_ids) return arg_error("%s", "out of memory");
    int n_gpu_flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) return -1;
        else if (!strcmp(s, "--auto-resume")) a->auto_resume = true;
        else if (!strcmp(s, "--no-validate")) a->no_validate = true;
        else if (!strcmp(s, "--auto-scale-lr")) a->auto_scale_lr = true;
        else if (!strcmp(s, "--deterministic")) a->deterministic = true;
        else if (!strcmp(s, "--diff-seed")) a->diff_seed = true;
        else if (!strcmp(s, "--list-modules")) a->list_modules = true;
        else if (!strcmp(s, "--no-default-plugins")) a->no_default_plugins = true;
        else if (!strcmp(s, "--skip-bad-plugins")) a->skip_bad_plugins = true;
        else if (is_flag(s, "--override-class")) {
            if (!(v = take_value(argc, argv, &i, "--override-class"))) return arg_error("%s needs a class name", s);
            a->overrides[a->n_overrides++] = v;
        }
        else if (!strcmp(s, "--print-config")) a->print_config = true;
        else if (!strcmp(s, "--dry-run")) a->dry_run = true;
        else if (is_flag(s, "--plugin-dir")) {
            if (!(v = take_value(argc, argv, &i, "--plugin-dir"))) return arg_error("%s needs a directory", s);
            a->plugin_dirs[a->n_plugin_dirs++] = v;
        } else if (is_flag(s, "--work-dir")) {
            if (!(a->work_dir = take_value(argc, argv, &i, "--work-dir"))) return arg_error("%s needs a directory", s);
        } else if (is_flag(s, "--device")) {
            if (!(a->device = take_value(argc, argv, &i, "--device"))) return arg_error("%s needs cpu, cuda or cuda:N", s);
        } else if (is_flag(s, "--resume-from")) {
            if (!(a->resume_from = take_value(argc, argv, &i, "--resume-from"))) return arg_error("%s needs a file", s);
        } else if (is_flag(s, "--launcher")) {
            if (!(v = take_value(argc, argv, &i, "--launcher"))) return arg_error("%s needs a value", s);
            if (strcmp(v, "none") && strcmp(v, "pytorch") && strcmp(v, "slurm") && strcmp(v, "mpi"))
                return arg_error("--launcher: invalid choice '%s' (choose from none, pytorch, slurm, mpi)", v);
            a->launcher = v;
        } else if (is_flag(s, "--seed") || is_flag(s, "--gpu-id") || is_flag(s, "--gpus") ||
                   is_flag(s, "--local_rank") || is_flag(s, "--local-rank")) {
            const char *flag = is_flag(s, "--seed") ? "--seed" : is_flag(s, "--gpu-id") ? "--gpu-id"
                             : is_flag(s, "--gpus") ? "--gpus" : is_flag(s, "--local_rank") ? "--local_rank"
                             : "--local-rank";
            long long ignored;
            long long *dst = !strcmp(flag, "--seed") ? &a->seed : !strcmp(flag, "--gpu-id") ? &a->gpu_id
                           : !strcmp(flag, "--gpus") ? &a->gpus : &ignored;
            if (!(v = take_value(argc, argv, &i, flag))) return arg_error("%s needs an integer", s);
            if (parse_int(v, dst) != 0) return arg_error("expected an integer, got '%s'", v);
            if (dst == &a->seed) a->has_seed = true;
            if (dst == &a->gpu_id) a->has_gpu_id = true;
            if (dst == &a->gpu_id || dst == &a->gpus) n_gpu_flags++;
        } else if (is_flag(s, "--gpu-ids")) {
            /* nargs='+' */
            if (s[strlen("--gpu-ids")] == '=') {
                if (parse_int(s + strlen("--gpu-ids") + 1, &a->gpu_ids[a->n_gpu_ids]) != 0)
                    return arg_error("--gpu-ids: expected integers, got '%s'", s + strlen("--gpu-ids") + 1);
                a->n_gpu_ids++;
            }
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) {
                if (parse_int(argv[i + 1], &a->gpu_ids[a->n_gpu_ids]) != 0) break;   /* the CONFIG, say */
                a->n_gpu_ids++;
                i++;
            }
            if (!a->n_gpu_ids) return arg_error("%s needs at least one integer", s);
            n_gpu_flags++;
        } else if (is_flag(s, "--cfg-options")) {
            /* nargs='+': every following word up to the next option; a word
             * that is not KEY=VALUE is named by md_cfg_apply_options. */
            int before = a->n_cfg_options;
            if (s[strlen("--cfg-options")] == '=') a->cfg_options[a->n_cfg_options++] = s + strlen("--cfg-options") + 1;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2))
                a->cfg_options[a->n_cfg_options++] = argv[++i];
            if (a->n_cfg_options == before) return arg_error("%s needs at least one KEY=VALUE", s);
        } else if (s[0] == '-' && s[1]) {
            return arg_error("unknown option '%s'", s);
        } else if (!a->config) {
            a->config = s;
        } else {
            return arg_error("unexpected argument '%s' (one config only)", s);
        }
    }
    if (!a->config && !a->list_modules) return arg_error("%s", "the CONFIG argument is required");
    /* mmdet: a mutually exclusive group */
    if (n_gpu_flags > 1) return arg_error("%s", "--gpus, --gpu-ids and --gpu-id exclude each other");
    return 0;
}

/* mmdet's update_data_root: MMDET_DATASETS replaces the data_root prefix of
 * every path under `data`. */
static void replace_root(md_cfg *node, const char *old, const char *new_root) {
    size_t n = strlen(old);
    for (int i = 0; i < md_cfg_len(node); i++) {
        md_cfg *c = (md_cfg *)md_cfg_at(node, i);
        const char *s = md_cfg_as_str(c);
        if (md_cfg_kind(c) == MD_CFG_GROUP || md_cfg_kind(c) == MD_CFG_LIST) {
            replace_root(c, old, new_root);
        } else if (s && md_cfg_kind(node) == MD_CFG_GROUP && n && !strncmp(s, old, n)) {
            char buf[4096];
            snprintf(buf, sizeof buf, "%s%s", new_root, s + n);
            md_cfg_set_str(node, md_cfg_name(c), buf);
        }
    }
}

static void update_data_root(md_cfg *cfg) {
    const char *env = getenv("MMDET_DATASETS");
    if (!env || !*env) return;
    char dst[4096];
    snprintf(dst, sizeof dst, "%s%s", env, env[strlen(env) - 1] == '/' ? "" : "/");
    const char *old = md_cfg_str(cfg, "data_root", NULL);
    md_cfg *data = md_cfg_get_mut(cfg, "data");
    if (old && data) {
        char *copy = strdup(old);
        if (copy) replace_root(data, copy, dst);
        free(copy);
    }
    md_cfg_set_str(cfg, "data_root", dst);
}

static long long random_seed(void) {
    uint32_t v;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) v = (uint32_t)time(NULL) ^ (uint32_t)getpid();
    return (long long)(v & 0x7fffffffu);   /* np.random.randint(2**31) */
}

/* Stores the command line into the config as train.py does. */
static int store_flags(md_ctx *ctx, md_cfg *cfg, const args *a, md_error *err) {
    if (a->auto_scale_lr) {
        md_cfg *asl = md_cfg_get_mut(cfg, "auto_scale_lr");
        if (asl && md_cfg_kind(asl) == MD_CFG_GROUP && md_cfg_has(asl, "enable") && md_cfg_has(asl, "base_batch_size"))
            md_cfg_set_bool(asl, "enable", true);
        else
            md_warn(ctx, "Can not find \"auto_scale_lr\" or \"auto_scale_lr.enable\" or "
                         "\"auto_scale_lr.base_batch_size\" in your configuration file; "
                         "please update all the configuration files to mmdet >= 2.24.1.");
    }
    if (a->work_dir) {
        md_cfg_set_str(cfg, "work_dir", a->work_dir);
    } else {
        const md_cfg *wd = md_cfg_get(cfg, "work_dir");
        if (!wd || md_cfg_kind(wd) == MD_CFG_NONE) {
            char base[4096], path[4200];
            snprintf(base, sizeof base, "%s", a->config);
            char *name = basename(base);
            char *dot = strrchr(name, '.');
            if (dot && dot != name) *dot = 0;
            snprintf(path, sizeof path, "./work_dirs/%s", name);
            md_cfg_set_str(cfg, "work_dir", path);
        } else if (!md_cfg_as_str(wd)) {
            return md_failc(err, MD_ERR_CONFIG, "%s:%d: work_dir: expected a string",
                            md_cfg_file(wd) ? md_cfg_file(wd) : "<config>", md_cfg_line(wd));
        }
    }
    if (a->resume_from) md_cfg_set_str(cfg, "resume_from", a->resume_from);
    if (a->device) md_cfg_set_str(cfg, "device", a->device);
    md_cfg_set_bool(cfg, "auto_resume", a->auto_resume);
    /* train.py: --gpus and --gpu-ids are deprecated to one device; a
     * distributed run has gpu_ids = range(world_size), one per process */
    long long first = a->gpu_id;
    if (a->gpus) {
        md_warn(ctx, "`--gpus` is deprecated because we only support single GPU mode in non-distributed training. "
                     "Use `gpus=1` now.");
        first = 0;
    } else if (a->n_gpu_ids) {
        md_warn(ctx, "`--gpu-ids` is deprecated, please use `--gpu-id`. Because we only support single GPU mode in "
                     "non-distributed training. Use the first GPU in `gpu_ids` now.");
        first = a->gpu_ids[0];
    }
    int W = md_dist_world_size(ctx);
    md_cfg *gpus = md_cfg_set_list(cfg, "gpu_ids");
    for (int r = 0; gpus && r < (W > 1 ? W : 1); r++) md_cfg_append_int(gpus, W > 1 ? r : first);
    /* the device a plain "cuda" means: this process's (local rank), else --gpu-id */
    const char *dev = md_cfg_str(cfg, "device", NULL);
    if (dev && !strcmp(dev, "cuda")) {
        char d[32];
        snprintf(d, sizeof d, "cuda:%lld", W > 1 ? (long long)md_dist_local_rank(ctx) : first);
        md_cfg_set_str(cfg, "device", d);
    }
    /* train.py passes these as arguments; the runner reads them here. */
    md_cfg_set_bool(cfg, "validate", !a->no_validate);
    md_cfg_set_bool(cfg, "deterministic", a->deterministic);
    md_cfg_set_str(cfg, "launcher", a->launcher);
    return 0;
}

/* In a distributed run the message names the rank, and the failing rank
 * ends the job (md_dist_abort) so that no other rank waits for it. */
static int fail(md_ctx *ctx, const md_error *err) {
    int W = ctx ? md_dist_world_size(ctx) : 1;
    if (W > 1) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "rank %d: ", md_dist_rank(ctx));
        bool named = !strncmp(err->msg, prefix, strlen(prefix));
        fprintf(stderr, "mmdet-run: error: %s%s\n", named ? "" : prefix, err->msg[0] ? err->msg : "unknown error");
        fprintf(stderr, "mmdet-run: rank %d of %d failed; ending the job\n", md_dist_rank(ctx), W);
        fflush(stderr);
        md_dist_abort(ctx, 1);
        return 1;
    }
    fprintf(stderr, "mmdet-run: error: %s\n", err->msg[0] ? err->msg : "unknown error");
    return 1;
}

/* Set-up up to training; returns the exit code. */
static int run(const args *a, md_ctx *ctx, md_cfg **cfgp, md_error *err) {
    md_cfg *cfg = NULL;
    if (a->config) {
        cfg = *cfgp = md_cfg_load(a->config, err);
        if (!cfg) return fail(ctx, err);
        update_data_root(cfg);
        if (a->n_cfg_options && md_cfg_apply_options(cfg, a->cfg_options, a->n_cfg_options, err) != 0)
            return fail(ctx, err);   /* the message starts with --cfg-options */
        /* mmcv's init_dist, before anything is written */
        if (!a->list_modules && !a->print_config && md_dist_init(ctx, a->launcher, err) != 0) return fail(ctx, err);
    }
    md_plugin_set_opts po = { a->plugin_dirs, a->n_plugin_dirs, a->no_default_plugins, a->skip_bad_plugins,
                              a->overrides, a->n_overrides };
    if (md_plugin_set_load(ctx, cfg, &po, err) != 0) return fail(ctx, err);
    if (a->list_modules) {
        list_modules(ctx, stdout);
        return 0;
    }
    if (store_flags(ctx, cfg, a, err) != 0) return fail(ctx, err);
    if (a->print_config) {
        if (md_cfg_dump(cfg, stdout) != 0) {
            md_failc(err, MD_ERR_IO, "cannot print the config");
            return fail(ctx, err);
        }
        return 0;
    }

    int level = md_log_level_parse(md_cfg_str(cfg, "log_level", "INFO"));
    if (level < 0) {
        const md_cfg *ll = md_cfg_get(cfg, "log_level");
        md_failc(err, MD_ERR_CONFIG, "%s:%d: log_level: unknown level '%s' (DEBUG, INFO, WARNING, ERROR)",
                 md_cfg_file(ll) ? md_cfg_file(ll) : "<config>", md_cfg_line(ll),
                 md_cfg_as_str(ll) ? md_cfg_as_str(ll) : "?");
        return fail(ctx, err);
    }
    /* mmcv's get_logger: ranks other than 0 log errors only, to no file */
    int rank = md_dist_rank(ctx);
    md_log_set_level(ctx, rank ? MD_LOG_ERROR : (md_log_level)level);
    const char *work_dir = md_cfg_str(cfg, "work_dir", "./work_dirs");
    char path[8192], stamp[32], cfgname[4096];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d_%H%M%S", &tm);
    md_cfg_set_str(cfg, "timestamp", stamp);
    snprintf(cfgname, sizeof cfgname, "%s", a->config);
    snprintf(path, sizeof path, "%s/%s", work_dir, basename(cfgname));
    /* every rank names its files after rank 0's time stamp */
    if (md_dist_broadcast_buf(ctx, stamp, sizeof stamp, 0, err) != 0) return fail(ctx, err);
    md_cfg_set_str(cfg, "timestamp", stamp);
    if (md_fs_mkdirs(work_dir, err) != 0 || (!rank && md_cfg_dump_file(cfg, path, err) != 0)) return fail(ctx, err);
    snprintf(path, sizeof path, "%s/%s.log", work_dir, stamp);
    if (!rank && md_log_set_file(ctx, path, err) != 0) return fail(ctx, err);
    char *env = md_env_info(ctx);
    md_info(ctx, "Environment info:\n------------------------------------------------------------\n%s\n"
            "------------------------------------------------------------", env ? env : "(out of memory)");
    free(env);
    char *text = md_cfg_dump_string(cfg);
    md_info(ctx, "Distributed training: %s", strcmp(a->launcher, "none") ? "True" : "False");
    if (md_dist_world_size(ctx) > 1)
        md_info(ctx, "launcher %s: %d processes (%s), this is rank 0", a->launcher, md_dist_world_size(ctx),
                md_ctx_comm(ctx)->iface->name);
    md_info(ctx, "Config:\n%s", text ? text : "(could not print)");
    free(text);
    /* mmdet's init_random_seed: rank 0 draws, the others take it; then
     * --diff-seed adds the rank */
    long long seed = a->has_seed ? a->seed : random_seed();
    if (md_dist_broadcast_buf(ctx, &seed, sizeof seed, 0, err) != 0) return fail(ctx, err);
    if (a->diff_seed) seed += rank;
    md_info(ctx, "Set random seed to %lld, deterministic: %s", seed, a->deterministic ? "True" : "False");
    md_cfg_set_int(cfg, "seed", seed);
    if (a->dry_run) {
        md_info(ctx, "--dry-run: set-up finished, not training");
        return 0;
    }
    if (run_training(ctx, cfg, err) != 0) return fail(ctx, err);
    return 0;
}

int main(int argc, char **argv) {
    md_process_init(argc, argv);
    args a;
    int rc = parse_args(argc, argv, &a);
    if (rc == 0) {
        md_error err;
        md_error_clear(&err);
        md_cfg *cfg = NULL;
        md_ctx *ctx = md_ctx_new(&err);
        rc = ctx ? run(&a, ctx, &cfg, &err) : fail(NULL, &err);
        md_cfg_free(cfg);
        md_ctx_free(ctx);
    } else if (rc < 0) {
        usage(stdout);
        rc = 0;
    }
    free(a.plugin_dirs);
    free(a.overrides);
    free(a.cfg_options);
    free(a.gpu_ids);
    return rc;
}
