/* TextLoggerHook: every `interval` iterations a console/log-file line and a
 * JSON line in <work_dir>/<timestamp>.log.json (mmdet's format, readable by
 * its analyze_logs.py); val epochs log their metrics. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <mmdet/mmdet.h>

typedef struct logger {
    md_hook base;
    int64_t interval;
    bool ignore_last, reset_flag, by_epoch;
    FILE *json;
    double time_sum;
    int64_t time_n, start_iter;
} logger;

static const md_key keys[] = {
    { "interval", MD_KEY_INT, "10", "log every N iterations", false, MD_AT(logger, interval), .min = "1" },
    { "ignore_last", MD_KEY_BOOL, "true", "skip the partial interval at an epoch's end", false,
      MD_AT(logger, ignore_last) },
    { "reset_flag", MD_KEY_BOOL, "false", "clear the log buffer after logging (the last logger always does)", false,
      MD_AT(logger, reset_flag) },
    { "by_epoch", MD_KEY_BOOL, "true", NULL, false, MD_AT(logger, by_epoch) },
    { "interval_exp_name", MD_KEY_INT, "1000", NULL, false },
    { 0 } };

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static double peak_memory_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static int before_run(md_hook *hk, md_runner *r, md_error *err) {
    logger *l = (logger *)hk;
    l->start_iter = md_runner_iter(r);
    if (md_dist_rank(md_runner_ctx(r)) != 0) return 0;   /* mmcv: the JSON log is rank 0's */
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.log.json", md_runner_work_dir(r), md_runner_timestamp(r));
    l->json = fopen(path, "a");
    if (!l->json) return md_failc(err, MD_ERR_IO, "cannot open %s", path);
    /* mmcv dumps the runner's meta first: env_info, config, seed */
    char *env = md_env_info(md_runner_ctx(r));
    fprintf(l->json, "{\"env_info\": ");
    json_string(l->json, env ? env : "");
    fprintf(l->json, ", \"config\": ");
    json_string(l->json, md_runner_config_text(r) ? md_runner_config_text(r) : "");
    fprintf(l->json, ", \"mmdet_version\": \"%s\", \"seed\": %llu}\n", MD_VERSION,
            (unsigned long long)md_runner_seed(r));
    free(env);
    fflush(l->json);
    l->start_iter = md_runner_iter(r);
    return 0;
}

/* mmcv's get_epoch: during training (an EvalHook's metrics) the epoch in
 * progress, in a val phase the completed count. */
static int64_t val_epoch(md_runner *r) { return md_runner_epoch(r) + !strcmp(md_runner_mode(r), "train"); }

/* A JSON log write; only rank 0 has the file. */
static void jprintf(logger *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jprintf(logger *l, const char *fmt, ...) {
    if (!l->json) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(l->json, fmt, ap);
    va_end(ap);
}

/* mmcv's reset_flag: the last logger clears the buffer, so the loggers
 * before it (TensorboardLoggerHook, ...) log the same values. */
static void reset(logger *l, md_runner *r) {
    if (l->reset_flag || md_runner_last_logger(r) == &l->base) md_runner_log_clear(r);
}

static void log_line(logger *l, md_runner *r, bool train) {
    md_ctx *ctx = md_runner_ctx(r);
    md_optimizer *o = md_runner_optimizer(r);
    double lr = o && md_optimizer_group_count(o) ? md_optimizer_group_lr(o, 0) : 0;
    double t = md_runner_log_average(r, "time");
    char line[4096];
    int k = 0;
    if (train) {
        if (!isnan(t)) {
            l->time_sum += t * (double)l->interval;
            l->time_n += l->interval;
        }
        double avg = l->time_n ? l->time_sum / (double)l->time_n : 0;
        int64_t eta = (int64_t)(avg * (double)(md_runner_max_iters(r) - md_runner_iter(r) - 1));
        if (l->by_epoch)
            k += snprintf(line + k, sizeof line - (size_t)k, "Epoch [%lld][%lld/%lld]\tlr: %.3e, ",
                          (long long)md_runner_epoch(r) + 1, (long long)md_runner_inner_iter(r) + 1,
                          (long long)md_runner_epoch_len(r), lr);
        else
            k += snprintf(line + k, sizeof line - (size_t)k, "Iter [%lld/%lld]\tlr: %.3e, ",
                          (long long)md_runner_iter(r) + 1, (long long)md_runner_max_iters(r), lr);
        k += snprintf(line + k, sizeof line - (size_t)k, "eta: %lld:%02lld:%02lld, ", (long long)(eta / 3600),
                      (long long)(eta / 60 % 60), (long long)(eta % 60));
        if (!isnan(t))
            k += snprintf(line + k, sizeof line - (size_t)k, "time: %.3f, data_time: %.3f, ", t,
                          md_runner_log_average(r, "data_time"));
        k += snprintf(line + k, sizeof line - (size_t)k, "memory: %.0f", peak_memory_mb());
    } else {
        /* mmcv's get_iter(inner_iter=True): an EvalHook's metrics after a
         * training epoch carry the training loader's last iteration, a val
         * phase its own; by iterations, the runner's count */
        if (l->by_epoch)
            k += snprintf(line + k, sizeof line - (size_t)k, "Epoch(val) [%lld][%lld]", (long long)val_epoch(r),
                          (long long)(!strcmp(md_runner_mode(r), "train") ? md_runner_epoch_len(r)
                                                                          : md_runner_inner_iter(r) + 1));
        else
            k += snprintf(line + k, sizeof line - (size_t)k, "Iter(val) [%lld]", (long long)md_runner_iter(r) + 1);
    }
    /* JSON: mode, epoch, iter, lr, memory, then the buffer in order (rank 0) */
    jprintf(l, "{\"mode\": \"%s\", \"epoch\": %lld, \"iter\": %lld", train ? "train" : "val",
            (long long)(train ? md_runner_epoch(r) + 1 : val_epoch(r)),
            (long long)(!train && l->by_epoch && !strcmp(md_runner_mode(r), "train") ? md_runner_epoch_len(r)
                        : l->by_epoch ? md_runner_inner_iter(r) + 1 : md_runner_iter(r) + 1));
    jprintf(l, ", \"lr\": %.6g", lr);
    if (train) jprintf(l, ", \"memory\": %.0f", peak_memory_mb());
    for (int i = 0; i < md_runner_log_count(r); i++) {
        const char *key = md_runner_log_key(r, i);
        double v = md_runner_log_average(r, key);
        jprintf(l, ", ");
        if (l->json) json_string(l->json, key);
        if (isfinite(v)) jprintf(l, ": %.6g", v);
        else jprintf(l, ": %s", isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
        if (!strcmp(key, "time") || !strcmp(key, "data_time")) continue;
        k += snprintf(line + k, sizeof line - (size_t)k, ", %s: %.4f", key, v);
    }
    jprintf(l, "}\n");
    if (l->json) fflush(l->json);
    md_log_write(ctx, MD_LOG_INFO, "%s", line);
    reset(l, r);
}

/* mmcv's get_mode: values without "time" are validation results (an
 * EvalHook's metrics), logged as a "val" line. */
static bool only_metrics(md_runner *r) { return md_runner_log_count(r) && isnan(md_runner_log_average(r, "time")); }

static int after_train_iter(md_hook *hk, md_runner *r, md_error *err) {
    (void)err;
    logger *l = (logger *)hk;
    int64_t inner = md_runner_inner_iter(r) + 1;
    bool every = l->by_epoch ? inner % l->interval == 0 : (md_runner_iter(r) + 1) % l->interval == 0;
    bool end = l->by_epoch && inner == md_runner_epoch_len(r) && !l->ignore_last;
    if (only_metrics(r)) log_line(l, r, false);
    else if (every || end) log_line(l, r, true);
    return 0;
}

static int after_train_epoch(md_hook *hk, md_runner *r, md_error *err) {
    (void)err;
    if (only_metrics(r)) log_line((logger *)hk, r, false);   /* an EvalHook's metrics */
    reset((logger *)hk, r);   /* a partial interval is not carried over */
    return 0;
}

static int after_val_epoch(md_hook *hk, md_runner *r, md_error *err) {
    (void)err;
    if (md_runner_log_count(r)) log_line((logger *)hk, r, false);
    return 0;
}

static void destroy(md_hook *hk) {
    logger *l = (logger *)hk;
    if (l->json) fclose(l->json);
    free(l);
}

static const md_hook_iface iface = {
    .before_run = before_run, .after_train_iter = after_train_iter, .after_train_epoch = after_train_epoch,
    .after_val_epoch = after_val_epoch, .destroy = destroy, .default_priority = MD_PRIORITY_VERY_LOW,
};

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    logger *l = calloc(1, sizeof *l);
    if (!l) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    l->base.iface = &iface;
    if (md_cfg_read_struct(cfg, keys, l, "TextLoggerHook", err)) {
        free(l);
        return NULL;
    }
    return l;
}

MD_PLUGIN("text_logger", "1.0", "Apache-2.0");
static const md_class cls = { .name = "TextLoggerHook", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_HOOK),
                              .doc = "console, <ts>.log and <ts>.log.json lines" };
MD_REGISTER("hooks", cls)
