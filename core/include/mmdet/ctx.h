/* The context: everything a run shares, passed explicitly (no globals).
 *
 * One md_ctx holds the registries, the plugin search path, the logger, the
 * thread count, the step arena with the autograd tape, and the sticky error
 * of tensor ops. It is not thread-safe: one thread drives it; ops use OpenMP
 * inside. Data-loader worker threads never touch it (data.h).
 */
#ifndef MMDET_CTX_H
#define MMDET_CTX_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_ctx md_ctx;

md_ctx *md_ctx_new(md_error *err);
void md_ctx_free(md_ctx *ctx);

/* Threads used by ops (OpenMP and BLAS); default: $MMDET_NUM_THREADS, else
 * the number of cores. Results are reproducible for a fixed count. */
void md_ctx_set_threads(md_ctx *ctx, int n);
int md_ctx_threads(const md_ctx *ctx);

/* ---- logging: console plus an optional file; plugins log through this ---- */
typedef enum md_log_level {
    MD_LOG_DEBUG = 10, MD_LOG_INFO = 20, MD_LOG_WARNING = 30, MD_LOG_ERROR = 40,
} md_log_level;

void md_log_write(md_ctx *ctx, md_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void md_log_writev(md_ctx *ctx, md_log_level level, const char *fmt, va_list ap);
#define md_debug(ctx, ...) md_log_write((ctx), MD_LOG_DEBUG, __VA_ARGS__)
#define md_info(ctx, ...) md_log_write((ctx), MD_LOG_INFO, __VA_ARGS__)
#define md_warn(ctx, ...) md_log_write((ctx), MD_LOG_WARNING, __VA_ARGS__)
#define md_log_error(ctx, ...) md_log_write((ctx), MD_LOG_ERROR, __VA_ARGS__)
/* Level by mmcv name ("DEBUG", "INFO", "WARNING", "ERROR"); -1 if unknown. */
int md_log_level_parse(const char *name);
void md_log_set_level(md_ctx *ctx, md_log_level level);
/* Also append every line to `path` (NULL closes it). */
int md_log_set_file(md_ctx *ctx, const char *path, md_error *err);
/* Silence the console (tests); the file still receives lines. */
void md_log_set_quiet(md_ctx *ctx, bool quiet);

/* ---- process ---- */
/* Call first thing in a program's main. libgomp reads OMP_WAIT_POLICY once,
 * when it is loaded; its default lets idle worker threads spin, which on a
 * machine with few or shared cores takes the CPU from the threads doing the
 * work (OpenBLAS's included) and made steps several times slower. When the
 * variable is unset this sets it to "passive" and re-executes the program
 * (/proc/self/exe, same arguments and environment); a value the user set is
 * left alone. Returns only when nothing was done or the exec failed. */
void md_process_init(int argc, char **argv);

/* mmdet's collect_env, as "key: value" lines: the platform, CPU and its
 * vector features, OpenMP threads, OpenBLAS's build, the compiler, libmmdet
 * and every plugin loaded into ctx (name, version, license, file).
 * malloc'ed (the caller frees it), NULL when out of memory. */
char *md_env_info(md_ctx *ctx);

/* ---- files ---- */
/* mkdir -p: create `path` and its missing parents (mode 0755). An error
 * names the component that could not be made, or a path that exists but
 * is not a directory. */
int md_fs_mkdirs(const char *path, md_error *err);

#ifdef __cplusplus
}
#endif
#endif
