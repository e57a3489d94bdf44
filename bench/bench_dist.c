/* Data-parallel training on the CPU: tests/configs/retinanet_tiny.cfg
 * (128 px, a batch of 4 images in total) trained by one process with 2
 * threads, and by `mpirun -np 2` with 1 thread per rank and 2 images each.
 * Prints
 *   bench dist_1rank_2threads ours_ms=<median step>
 *   bench dist_2ranks_1thread ours_ms=<median step> wait_pct=<%> mb_per_step=<MB>
 * wait_pct is the share of the training time a rank spent waiting for its
 * gradient all-reduces after its own backward had finished (what
 * communication did not overlap, plus the other rank's lag), from
 * mmdet-run's "data parallel:" log line. Needs mpirun (openmpi-bin);
 * steps: $MMDET_BENCH_DIST_EPOCHS epochs (default 3) of 8 images. */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "benchlib.h"

static char dir[] = "/tmp/mmdet_bench_dist_XXXXXX";

/* Median "time" of the train lines of the JSON log in <dir>/<work>, ms. */
static double step_ms(const char *work) {
    char pattern[256], line[8192];
    snprintf(pattern, sizeof pattern, "%s/%s/*.log.json", dir, work);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0) return -1;
    double v[4096];
    int n = 0;
    FILE *f = fopen(g.gl_pathv[0], "r");
    while (f && fgets(line, sizeof line, f) && n < 4096) {
        const char *t = strstr(line, "\"time\": ");
        if (strstr(line, "\"mode\": \"train\"") && t) v[n++] = atof(t + 8) * 1e3;
    }
    if (f) fclose(f);
    globfree(&g);
    return n > 2 ? median(v + 2, n - 2) : -1;   /* the first steps warm up */
}

int main(void) {
    if (system("command -v mpirun >/dev/null 2>&1") != 0) {
        fprintf(stderr, "bench_dist: mpirun not found (apt-get install openmpi-bin); skipped\n");
        return 0;
    }
    if (!mkdtemp(dir)) return 1;
    const char *ep = getenv("MMDET_BENCH_DIST_EPOCHS");
    int epochs = ep && atoi(ep) > 0 ? atoi(ep) : 3;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s/data --train 8 --val 2 --seed 1 --classes 3 >/dev/null", dir);
    if (system(cmd) != 0) return 1;
    const char *run = "bin/mmdet-run --plugin-dir plugins tests/configs/retinanet_tiny.cfg --seed 0 --no-validate";
    snprintf(cmd, sizeof cmd, "MMDET_NUM_THREADS=2 %s --work-dir %s/one --cfg-options data.train.data_root=%s/data/ "
             "data.workers_per_gpu=0 runner.max_epochs=%d >%s/one.out 2>&1", run, dir, dir, epochs, dir);
    int rc1 = system(cmd);
    snprintf(cmd, sizeof cmd, "MMDET_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np 2 %s --launcher mpi "
             "--work-dir %s/two --cfg-options data.train.data_root=%s/data/ data.samples_per_gpu=2 "
             "data.workers_per_gpu=0 runner.max_epochs=%d >%s/two.out 2>&1", run, dir, dir, epochs, dir);
    int rc2 = system(cmd);
    if (rc1 || rc2) {
        fprintf(stderr, "bench_dist: a training failed; see %s/one.out and %s/two.out\n", dir, dir);
        return 1;
    }
    double wait_pct = -1, mb = -1;
    char path[256], line[8192];
    snprintf(path, sizeof path, "%s/two.out", dir);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "data parallel: ");
        if (p && strstr(p, "per step")) {
            const char *q = strstr(p, "steps, "), *w = strstr(p, "after backward (");
            if (q) mb = atof(q + 7);
            if (w) wait_pct = atof(w + 16);
        }
    }
    if (f) fclose(f);
    printf("bench dist_1rank_2threads ours_ms=%.1f\n", step_ms("one"));
    printf("bench dist_2ranks_1thread ours_ms=%.1f wait_pct=%.1f mb_per_step=%.2f\n", step_ms("two"), wait_pct, mb);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) != 0;
}
