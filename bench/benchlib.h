/* Timing and memory helpers shared by the benchmark programs. */
#ifndef MMDET_BENCHLIB_H
#define MMDET_BENCHLIB_H
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static inline double bench_clock_ms(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
/* Wall time. */
static inline double now_ms(void) { return bench_clock_ms(CLOCK_MONOTONIC); }
/* CPU time of the process (all threads): on a shared machine it says what
 * the work costs when the wall clock also counts waiting for a core. */
static inline double cpu_ms(void) { return bench_clock_ms(CLOCK_PROCESS_CPUTIME_ID); }

static inline int bench_cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
/* Sorts v. */
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
/* Peak resident memory of this process, MB. */
static inline double peak_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;   /* KiB on Linux */
}
#endif
