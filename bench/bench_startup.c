/* Start-up time: a fresh process creates a context, loads every plugin and
 * merges a config with three levels of bases. mmdet spends seconds importing
 * Python before it reads its config; this is our equivalent.
 *
 *   build/bench/bench_startup [REPS] [CONFIG] [PLUGIN_DIR...]
 * prints "bench startup ours_ms=<median>" (and the plugin/class counts).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include "benchlib.h"

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* One start-up, in the calling (fresh) process. Returns ms, or -1. */
static double startup(const char *config, char **dirs, int n_dirs, int *classes) {
    double t0 = now_ms();
    md_error err = { 0 };
    md_ctx *ctx = md_ctx_new(&err);
    if (!ctx) { fprintf(stderr, "bench_startup: %s\n", err.msg); return -1; }
    for (int i = 0; i < n_dirs; i++)
        if (md_plugin_load_dir(ctx, dirs[i], &err) != 0) {
            fprintf(stderr, "bench_startup: %s\n", err.msg);
            md_ctx_free(ctx);
            return -1;
        }
    md_cfg *cfg = md_cfg_load(config, &err);
    if (!cfg) {
        fprintf(stderr, "bench_startup: %s\n", err.msg);
        md_ctx_free(ctx);
        return -1;
    }
    double t = now_ms() - t0;
    *classes = 0;
    for (int r = 0; r < md_registry_count(ctx); r++)
        *classes += md_registry_entry_count(ctx, md_registry_name(ctx, r));
    md_cfg_free(cfg);
    md_ctx_free(ctx);
    return t;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 21;
    const char *config = argc > 2 ? argv[2] : "tests/configs/plugins/bench/exp.cfg";
    char *defaults[] = { "plugins", "tests/plugins" };
    char **dirs = argc > 3 ? argv + 3 : defaults;
    int n_dirs = argc > 3 ? argc - 3 : 2;
    /* Default directories that do not exist yet are skipped. */
    char *kept[64];
    int n_kept = 0;
    for (int i = 0; i < n_dirs && n_kept < 64; i++)
        if (argc > 3 || is_dir(dirs[i])) kept[n_kept++] = dirs[i];
    if (reps < 1) reps = 1;
    double *ms = calloc((size_t)reps, sizeof *ms);
    int classes = 0;
    for (int r = 0; r < reps; r++) {
        /* Plugins stay loaded for the life of a process: fork for a cold load. */
        int fd[2];
        if (pipe(fd) != 0) return 1;
        pid_t pid = fork();
        if (pid == 0) {
            close(fd[0]);
            int c = 0;
            double t = startup(config, kept, n_kept, &c);
            double msg[2] = { t, c };
            ssize_t w = write(fd[1], msg, sizeof msg);
            _exit(w == (ssize_t)sizeof msg && t >= 0 ? 0 : 1);
        }
        close(fd[1]);
        double msg[2] = { -1, 0 };
        ssize_t got = read(fd[0], msg, sizeof msg);
        close(fd[0]);
        int st = 0;
        waitpid(pid, &st, 0);
        if (got != (ssize_t)sizeof msg || msg[0] < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
            fprintf(stderr, "bench_startup: run %d failed\n", r);
            free(ms);
            return 1;
        }
        ms[r] = msg[0];
        classes = (int)msg[1];
    }
    qsort(ms, (size_t)reps, sizeof *ms, cmp);
    printf("bench startup plugin_dirs=%d classes=%d reps=%d min_ms=%.3f max_ms=%.3f\n", n_kept, classes, reps,
           ms[0], ms[reps - 1]);
    printf("bench startup ours_ms=%.3f\n", ms[reps / 2]);
    free(ms);
    return 0;
}
