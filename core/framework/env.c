/* mmdet's collect_env: what the run's log and its JSON log record about
 * the machine and the build, so a result can be traced to them. */
#define _GNU_SOURCE
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include "internal.h"

char *openblas_get_config(void);   /* OpenBLAS's build line (cblas.h is not needed for it) */

/* The first "model name" of /proc/cpuinfo, or "unknown". */
static void cpu_model(char *buf, size_t n) {
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (!strncmp(line, "model name", 10) && c) {
            c += 1 + (c[1] == ' ');
            c[strcspn(c, "\n")] = 0;
            snprintf(buf, n, "%s", c);
            break;
        }
    }
    if (f) fclose(f);
}

MD_API char *md_env_info(md_ctx *ctx) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    struct utsname u;
    if (uname(&u) == 0) fprintf(f, "sys.platform: %s %s %s\n", u.sysname, u.release, u.machine);
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    fprintf(f, "CPU: %s\n", cpu);
    fprintf(f, "CPU features:");
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) fprintf(f, " avx2");
    if (__builtin_cpu_supports("fma")) fprintf(f, " fma");
    if (__builtin_cpu_supports("avx512f")) fprintf(f, " avx512f");
    if (__builtin_cpu_supports("avx512bf16")) fprintf(f, " avx512_bf16");
    fprintf(f, "\nOpenMP threads: %d\n", omp_get_max_threads());
    fprintf(f, "OpenBLAS: %s\n", openblas_get_config());
#ifdef __VERSION__
    fprintf(f, "Compiler: GCC %s\n", __VERSION__);
#endif
    fprintf(f, "libmmdet: %s (plugin ABI %d.%d)\n", MD_VERSION, MD_ABI_MAJOR, MD_ABI_MINOR);
    char *set = ctx ? md_plugin_set_text(ctx) : NULL;
    fprintf(f, "Plugins: %d loaded", ctx ? md_plugin_count(ctx) : 0);
    for (const char *p = set; p && *p;) {   /* one indented line each */
        size_t k = strcspn(p, "\n");
        fprintf(f, "\n  %.*s", (int)k, p);
        p += k + (p[k] == '\n');
    }
    free(set);
    fclose(f);
    return text;
}
