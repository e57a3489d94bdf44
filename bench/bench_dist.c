/* Data-parallel training on the CPU: tests/configs/retinanet_tiny.cfg
 * (128 px, a batch of 4 images in total) trained by one process with 2
 * threads, and by `mpirun -np 2` with 1 thread per rank and 2 images each,
 * once with the gradient all-reduces overlapping backward (as always) and
 * once with overlap switched off (MMDET_DDP_OVERLAP=0: every bucket reduced
 * after backward). The three runs are repeated in turn,
 * $MMDET_BENCH_DIST_REPS rounds (default 5) of $MMDET_BENCH_DIST_EPOCHS
 * epochs (default 4) of 8 images; the step times of every round are pooled
 * (the first 2 steps of each run left out) and their median taken. Prints
 *   bench dist_1rank_2threads ours_ms=<T_1>
 *   bench dist_2ranks_1thread ours_ms=<T_overlap> wait_pct=<%> mb_per_step=<MB> vs_1rank=<T_1 / T_overlap>
 *   bench dist_2ranks_1thread_serial ours_ms=<T_serial> wait_pct=<%>
 *   bench dist_allreduce ours_ms=<T_comm> step_share_pct=<100 T_comm / T_overlap>
 *         overlap_pct=<clamped> overlap_raw_pct=<100 (T_serial - T_overlap) / T_comm>
 *         wait_overlap_pct=<100 (W_serial - W_overlap) / T_comm> hidden_bytes_pct=<%>
 *         diff_spread_ms=<lo..hi>
 * T_comm is one step's bucketed all-reduces on their own (mmdet-run's
 * md_ddp_time_all_reduce after training: the same buckets after a barrier,
 * median of 11; the median over the runs). overlap_pct is the share of
 * T_comm that overlapping hides, (T_serial - T_overlap) / T_comm clamped to
 * [0, 100]; the raw value is printed beside it, since the difference of two
 * noisy step medians can exceed T_comm or fall below 0. wait_overlap_pct
 * estimates the same from the wait after backward per step (W, in ms),
 * which leaves the computation's noise out but keeps the other rank's lag.
 * hidden_bytes_pct: the share of the bytes whose all-reduce had finished
 * when backward's own work ended (md_ddp_take_hidden_bytes), which no
 * noise of the clock touches: what the bucket layout lets overlap hide.
 * diff_spread_ms: the smallest and largest T_serial - T_overlap over the
 * rounds (per-round medians), a gauge of the noise. wait_pct is the share
 * of the training time a rank waited for its all-reduces after its own
 * backward. Needs mpirun (openmpi-bin). */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "benchlib.h"

static char dir[] = "/tmp/mmdet_bench_dist_XXXXXX";

enum { ONE, OVERLAP, SERIAL, MODES };
static const char *const WORK[MODES] = { "one", "two", "serial" };

#define MAX_STEPS 4096
typedef struct pool {
    double step[MAX_STEPS];
    int n;
    double wait_s, wall_s, mb, comm_ms[64], hidden_pct[64];
    int steps, n_comm;
    double round_ms[64];   /* per-round median step */
} pool;

/* Appends the "time" of the train lines of <dir>/<work>/<*>.log.json (ms)
 * to p, the first 2 left out (warm-up); returns this run's median. */
static double add_steps(const char *work, pool *p) {
    char pattern[256], line[8192];
    snprintf(pattern, sizeof pattern, "%s/%s/*.log.json", dir, work);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0) return -1;
    double v[MAX_STEPS];
    int n = 0;
    FILE *f = fopen(g.gl_pathv[0], "r");
    while (f && fgets(line, sizeof line, f) && n < MAX_STEPS) {
        const char *t = strstr(line, "\"time\": ");
        if (strstr(line, "\"mode\": \"train\"") && t) v[n++] = atof(t + 8) * 1e3;
    }
    if (f) fclose(f);
    globfree(&g);
    for (int i = 2; i < n && p->n < MAX_STEPS; i++) p->step[p->n++] = v[i];
    return n > 2 ? median(v + 2, n - 2) : -1;
}

/* mmdet-run's "data parallel: N steps, X MB ..., W s waiting ... (P% of S s;
 * ...); the all-reduces alone take C ms per step" line, added to p. */
static int add_dist_line(const char *out, pool *p) {
    char path[256], line[8192];
    snprintf(path, sizeof path, "%s/%s.out", dir, out);
    FILE *f = fopen(path, "r");
    int found = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *s = strstr(line, "data parallel: ");
        if (!s || !strstr(s, "per step")) continue;
        int steps;
        double mb, wait, pct, wall;
        if (sscanf(s, "data parallel: %d steps, %lf MB all-reduced per step, %lf s waiting for all-reduces after "
                   "backward (%lf%% of %lf s", &steps, &mb, &wait, &pct, &wall) != 5)
            continue;
        const char *c = strstr(s, "alone take "), *h = strstr(s, "overlap on, ");
        if (h) p->hidden_pct[p->n_comm] = atof(h + 12);
        p->steps += steps;
        p->mb = mb;
        p->wait_s += wait;
        p->wall_s += wall;
        if (c && p->n_comm < 64) p->comm_ms[p->n_comm++] = atof(c + 11);
        found = 1;
    }
    if (f) fclose(f);
    return found;
}

int main(void) {
    if (system("command -v mpirun >/dev/null 2>&1") != 0) {
        fprintf(stderr, "bench_dist: mpirun not found (apt-get install openmpi-bin); skipped\n");
        return 0;
    }
    if (!mkdtemp(dir)) return 1;
    const char *ep = getenv("MMDET_BENCH_DIST_EPOCHS"), *rp = getenv("MMDET_BENCH_DIST_REPS");
    int epochs = ep && atoi(ep) > 0 ? atoi(ep) : 4, reps = rp && atoi(rp) > 0 ? atoi(rp) : 5;
    if (reps > 64) reps = 64;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s/data --train 8 --val 2 --seed 1 --classes 3 >/dev/null", dir);
    if (system(cmd) != 0) return 1;
    const char *run = "bin/mmdet-run --plugin-dir plugins tests/configs/retinanet_tiny.cfg --seed 0 --no-validate";
    static pool pools[MODES];
    for (int r = 0; r < reps; r++) {
        for (int m = 0; m < MODES; m++) {
            if (m == ONE)
                snprintf(cmd, sizeof cmd, "rm -rf %s/%s && MMDET_NUM_THREADS=2 %s --work-dir %s/%s --cfg-options "
                         "data.train.data_root=%s/data/ data.workers_per_gpu=0 runner.max_epochs=%d >%s/%s.out 2>&1",
                         dir, WORK[m], run, dir, WORK[m], dir, epochs, dir, WORK[m]);
            else
                snprintf(cmd, sizeof cmd, "rm -rf %s/%s && MMDET_NUM_THREADS=1 MMDET_DDP_OVERLAP=%d MMDET_DDP_TIME_ALLREDUCE=11 mpirun "
                         "--allow-run-as-root --oversubscribe -np 2 %s --launcher mpi --work-dir %s/%s --cfg-options "
                         "data.train.data_root=%s/data/ data.samples_per_gpu=2 data.workers_per_gpu=0 "
                         "runner.max_epochs=%d >%s/%s.out 2>&1", dir, WORK[m], m == OVERLAP, run, dir, WORK[m], dir,
                         epochs, dir, WORK[m]);
            if (system(cmd) != 0) {
                fprintf(stderr, "bench_dist: a training failed; see %s/%s.out\n", dir, WORK[m]);
                return 1;
            }
            pools[m].round_ms[r] = add_steps(WORK[m], &pools[m]);
            if (m != ONE && !add_dist_line(WORK[m], &pools[m])) {
                fprintf(stderr, "bench_dist: no \"data parallel:\" line in %s/%s.out\n", dir, WORK[m]);
                return 1;
            }
        }
    }
    double t[MODES], wait_ms[MODES] = { 0 };
    for (int m = 0; m < MODES; m++) {
        if (pools[m].n < 1) {
            fprintf(stderr, "bench_dist: no step times in %s/%s\n", dir, WORK[m]);
            return 1;
        }
        t[m] = median(pools[m].step, pools[m].n);
        if (m != ONE) wait_ms[m] = 1e3 * pools[m].wait_s / pools[m].steps;
    }
    double comm[128];
    int nc = 0;
    for (int m = OVERLAP; m <= SERIAL; m++)
        for (int i = 0; i < pools[m].n_comm; i++) comm[nc++] = pools[m].comm_ms[i];
    double c = nc ? median(comm, nc) : 0;
    double hid = pools[OVERLAP].n_comm ? median(pools[OVERLAP].hidden_pct, pools[OVERLAP].n_comm) : 0;
    double lo = 1e30, hi = -1e30;
    for (int r = 0; r < reps; r++) {
        double d = pools[SERIAL].round_ms[r] - pools[OVERLAP].round_ms[r];
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    double raw = c > 0 ? 100 * (t[SERIAL] - t[OVERLAP]) / c : 0;
    double clamped = raw < 0 ? 0 : raw > 100 ? 100 : raw;
    double by_wait = c > 0 ? 100 * (wait_ms[SERIAL] - wait_ms[OVERLAP]) / c : 0;
    printf("bench dist_1rank_2threads ours_ms=%.1f\n", t[ONE]);
    printf("bench dist_2ranks_1thread ours_ms=%.1f wait_pct=%.1f mb_per_step=%.2f vs_1rank=%.3f\n", t[OVERLAP],
           100 * pools[OVERLAP].wait_s / pools[OVERLAP].wall_s, pools[OVERLAP].mb, t[ONE] / t[OVERLAP]);
    printf("bench dist_2ranks_1thread_serial ours_ms=%.1f wait_pct=%.1f vs_overlap=%.3f\n", t[SERIAL],
           100 * pools[SERIAL].wait_s / pools[SERIAL].wall_s, t[SERIAL] / t[OVERLAP]);
    printf("bench dist_allreduce ours_ms=%.2f step_share_pct=%.2f overlap_pct=%.0f overlap_raw_pct=%.0f "
           "wait_overlap_pct=%.0f hidden_bytes_pct=%.0f wait_ms=%.2f serial_wait_ms=%.2f diff_spread_ms=%.1f..%.1f "
           "rounds=%d\n", c, 100 * c / t[OVERLAP], clamped, raw, by_wait, hid, wait_ms[OVERLAP], wait_ms[SERIAL], lo, hi,
           reps);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) != 0;
}
