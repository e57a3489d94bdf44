/* The context and its logger. */
#include <errno.h>
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include "internal.h"

void openblas_set_num_threads(int num_threads);

static int default_threads(void) {
    const char *env = getenv("MMDET_NUM_THREADS");
    if (env && atoi(env) > 0) return atoi(env);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

MD_API md_ctx *md_ctx_new(md_error *err) {
    md_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        md_failc(err, MD_ERR_NOMEM, "out of memory creating a context");
        return NULL;
    }
    ctx->log_level = MD_LOG_INFO;
    ctx->grad_enabled = true;
    /* MMDET_EARLY_RELEASE=0 keeps every step tensor to the step's end: the
     * same results with more memory, to rule early release in or out */
    const char *rel = getenv("MMDET_EARLY_RELEASE");
    ctx->keep_released = rel && *rel && atoi(rel) == 0;
    md_rng_seed(&ctx->init_rng, 0);
    md__arena_init(&ctx->arena, NULL);
    if (md__registry_init(ctx, err) != 0) {
        md_ctx_free(ctx);
        return NULL;
    }
    md_ctx_set_threads(ctx, default_threads());
    return ctx;
}

MD_API void md_ctx_free(md_ctx *ctx) {
    if (!ctx) return;
    md__dist_free(ctx);
    md__registry_free(ctx);
    md__arena_free(&ctx->arena);
    md__dev_arena_free(ctx);
    free(ctx->tape);
    if (ctx->log_file) fclose(ctx->log_file);
    free(ctx);
}

MD_API void md_ctx_set_threads(md_ctx *ctx, int n) {
    if (n < 1) n = 1;
    ctx->threads = n;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

MD_API int md_ctx_threads(const md_ctx *ctx) { return ctx->threads; }

/* ---- logging ---- */

static const char *level_name(int level) {
    if (level >= MD_LOG_ERROR) return "ERROR";
    if (level >= MD_LOG_WARNING) return "WARNING";
    if (level >= MD_LOG_INFO) return "INFO";
    return "DEBUG";
}

MD_API int md_log_level_parse(const char *name) {
    static const struct { const char *n; int v; } levels[] = {
        { "DEBUG", MD_LOG_DEBUG }, { "INFO", MD_LOG_INFO }, { "WARNING", MD_LOG_WARNING },
        { "WARN", MD_LOG_WARNING }, { "ERROR", MD_LOG_ERROR }, { "CRITICAL", MD_LOG_ERROR } };
    for (size_t i = 0; name && i < sizeof levels / sizeof levels[0]; i++)
        if (!strcasecmp(name, levels[i].n)) return levels[i].v;
    return -1;
}

MD_API void md_log_writev(md_ctx *ctx, md_log_level level, const char *fmt, va_list ap) {
    if (ctx && (int)level < ctx->log_level) return;
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    /* most lines fit the stack buffer; a long one (the config, the
     * environment block) gets the heap rather than being cut */
    char buf[8192], *line = buf;
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    if (n >= (int)sizeof buf && (line = malloc((size_t)n + 1)) != NULL) vsnprintf(line, (size_t)n + 1, fmt, again);
    else if (!line) line = buf;   /* out of memory: the cut line */
    va_end(again);
    if (!ctx || !ctx->log_quiet) {
        FILE *out = level >= MD_LOG_WARNING ? stderr : stdout;
        fprintf(out, "%s - mmdet - %s - %s\n", stamp, level_name(level), line);
        fflush(out);
    }
    if (ctx && ctx->log_file) {
        fprintf(ctx->log_file, "%s - mmdet - %s - %s\n", stamp, level_name(level), line);
        fflush(ctx->log_file);
    }
    if (line != buf) free(line);
}

MD_API void md_log_write(md_ctx *ctx, md_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    md_log_writev(ctx, level, fmt, ap);
    va_end(ap);
}

MD_API void md_log_set_level(md_ctx *ctx, md_log_level level) { ctx->log_level = level; }
MD_API void md_log_set_quiet(md_ctx *ctx, bool quiet) { ctx->log_quiet = quiet; }

MD_API int md_log_set_file(md_ctx *ctx, const char *path, md_error *err) {
    if (ctx->log_file) fclose(ctx->log_file);
    ctx->log_file = NULL;
    if (!path) return 0;
    ctx->log_file = fopen(path, "a");
    if (!ctx->log_file) return md_failc(err, MD_ERR_IO, "cannot open log file %s: %m", path);
    return 0;
}

/* ---- process ---- */

MD_API void md_process_init(int argc, char **argv) {
    (void)argc;
    if (getenv("OMP_WAIT_POLICY")) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with libgomp's default */
}

/* ---- files ---- */

MD_API int md_fs_mkdirs(const char *path, md_error *err) {
    char buf[4096];
    if (!path || !*path) return md_failc(err, MD_ERR_IO, "mkdirs: empty path");
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return md_failc(err, MD_ERR_IO, "mkdirs: path too long: %.64s...", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return md_failc(err, MD_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
        *p = c;
        if (!c) break;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return md_failc(err, MD_ERR_IO, "%s exists and is not a directory", path);
    return 0;
}
