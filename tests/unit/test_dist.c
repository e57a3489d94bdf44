/* Distributed training end to end, on the CPU: bin/mmdet-run under
 * `mpirun -np 2` (one OpenMP thread per rank) against one process.
 *
 * The data: 4 images of 64 px whose annotations all hold the same two
 * boxes, so every image has the same number of positive anchors. RetinaNet
 * normalises its losses by the positives of the process's own batch (mmdet
 * 2.x does not reduce that count across ranks), so 2 ranks x 2 images equal
 * 1 process x 4 images exactly when both halves have as many positives as
 * each other, which these images guarantee. The pixels differ per image.
 *
 * Each test skips, saying why, when mpirun is missing (scripts/deps.sh
 * installs openmpi-bin for `make test`). */
#include <criterion/criterion.h>
#include <glob.h>
#include <errno.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testlib.h"

static char dir[64];

#define MPIRUN "mpirun --allow-run-as-root --oversubscribe --mca btl_vader_single_copy_mechanism none -np 2 "
#define RUN "bin/mmdet-run --plugin-dir plugins tests/configs/dist/retinanet_dist.cfg --seed 0 "

static void setup(void) {
    test_tmpdir(dir, sizeof dir, "mmdet_dist");
    /* Under SANITIZE=1, Open MPI's components leak inside modules it has
     * unloaded by exit (LeakSanitizer sees "<unknown module>" and no name a
     * suppression could match): leak checking is off for the processes
     * these tests start; the training path they share with one process is
     * leak-checked by the other suites. A no-op without AddressSanitizer. */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", asan ? asan : "", asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s/data --train 4 --val 8 --seed 3 --classes 3 --min-size 64 "
             "--max-size 64 --max-objs 2 --png-frac 0 >/dev/null", dir);
    cr_assert_eq(system(cmd), 0, "mmdet-shapes failed");
    /* the same two boxes in every training image */
    char json[4096], path[128];
    int k = snprintf(json, sizeof json, "{\"images\": [");
    for (int i = 1; i <= 4; i++)
        k += snprintf(json + k, sizeof json - (size_t)k, "%s{\"id\": %d, \"file_name\": \"%06d.jpg\", \"width\": 64, "
                      "\"height\": 64}", i > 1 ? ", " : "", i, i);
    k += snprintf(json + k, sizeof json - (size_t)k, "], \"annotations\": [");
    for (int i = 1; i <= 4; i++)
        k += snprintf(json + k, sizeof json - (size_t)k,
                      "%s{\"id\": %d, \"image_id\": %d, \"category_id\": 1, \"bbox\": [6, 8, 28, 22], \"area\": 616, "
                      "\"iscrowd\": 0}, {\"id\": %d, \"image_id\": %d, \"category_id\": 2, \"bbox\": [30, 26, 26, 32], "
                      "\"area\": 832, \"iscrowd\": 0}", i > 1 ? ", " : "", 2 * i - 1, i, 2 * i, i);
    snprintf(json + k, sizeof json - (size_t)k, "], \"categories\": [{\"id\": 1, \"name\": \"rectangle\"}, "
             "{\"id\": 2, \"name\": \"ellipse\"}, {\"id\": 3, \"name\": \"triangle\"}]}");
    snprintf(path, sizeof path, "%s/data/annotations", dir);
    test_write_file(path, "instances_train.json", json);
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(dist, .init = setup, .fini = teardown, .timeout = 300);

static void need_mpirun(void) {
    if (system("command -v mpirun >/dev/null 2>&1") != 0)
        cr_skip_test("mpirun not found: install openmpi-bin (scripts/deps.sh test) to run the distributed tests");
}

/* Runs `prefix RUN --work-dir <dir>/<work> flags --cfg-options ... opts`,
 * output in <dir>/<work>.out. */
static int train(const char *prefix, const char *work, const char *flags, const char *opts) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "MMDET_NUM_THREADS=1 %s" RUN "--work-dir %s/%s %s --cfg-options "
             "data.train.data_root=%s/data/ data.val.data_root=%s/data/ %s >%s/%s.out 2>&1", prefix, dir, work, flags,
             dir, dir, opts, dir, work);
    return system(cmd);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    static char text[1 << 18];
    size_t k = fread(text, 1, sizeof text - 1, f);
    text[k] = 0;
    fclose(f);
    return text;
}

/* The tail of <work>.out, for a failure's message. */
static const char *output(const char *work) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s.out", dir, work);
    const char *s = slurp(path);
    if (!s) return "(no output)";
    size_t n = strlen(s);
    return n > 3000 ? s + n - 3000 : s;
}

/* The train lines of <work>'s JSON log: value of `key` at row (epoch - 1). */
typedef struct losses { double v[3][64]; int n; } losses;
static const char *const KEYS[3] = { "\"loss_cls\": ", "\"loss_bbox\": ", "\"loss\": " };

static void read_losses(const char *work, losses *out) {
    char pattern[256];
    snprintf(pattern, sizeof pattern, "%s/%s/*.log.json", dir, work);
    glob_t g;
    cr_assert_eq(glob(pattern, 0, NULL, &g), 0, "no JSON log in %s/%s", dir, work);
    cr_assert_eq(g.gl_pathc, 1, "%zu JSON logs in %s/%s: only rank 0 writes one", g.gl_pathc, dir, work);
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(g.gl_pathv[0], "r");
    char line[8192];
    while (fp && fgets(line, sizeof line, fp)) {
        if (!strstr(line, "\"mode\": \"train\"")) continue;
        for (int k = 0; k < 3 && out->n < 64; k++) {
            const char *p = strstr(line, KEYS[k]);
            cr_assert(p, "no %s in %s", KEYS[k], line);
            out->v[k][out->n] = atof(p + strlen(KEYS[k]));
        }
        out->n++;
    }
    if (fp) fclose(fp);
    globfree(&g);
}

/* Loss by loss to 1e-5 relative, n iterations of a from a_off against b
 * from b_off; the JSON log prints 6 significant digits, so half a unit of
 * the last one on each side is added. */
static void assert_same_range(const losses *a, int a_off, const losses *b, int b_off, int n, const char *what) {
    cr_assert_geq(a->n, a_off + n, "%s: %d logged iterations, expected %d", what, a->n, a_off + n);
    cr_assert_geq(b->n, b_off + n, "%s: %d logged iterations in the reference, expected %d", what, b->n, b_off + n);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) {
            double x = a->v[k][a_off + i], y = b->v[k][b_off + i];
            double tol = 1e-5 * fabs(y) + 1e-5 * pow(10, floor(log10(fabs(y) + 1e-30)));
            cr_assert(fabs(x - y) <= tol, "%s: iteration %d, %.*s %.6g against %.6g", what, b_off + i + 1,
                      (int)strlen(KEYS[k]) - 2, KEYS[k], x, y);
        }
}

static void assert_same_losses(const losses *a, const losses *b, const char *what) {
    cr_assert_eq(a->n, 20, "%s: %d logged iterations, expected 20", what, a->n);
    cr_assert_eq(b->n, a->n, "%s: %d against %d logged iterations", what, b->n, a->n);
    assert_same_range(a, 0, b, 0, 20, what);
}

Test(dist, gn_two_ranks_of_2_equal_one_process_of_4) {
    need_mpirun();
    cr_assert_eq(train("", "one", "--no-validate", ""), 0, "%s", output("one"));
    /* small buckets: many all-reduces in flight during backward */
    cr_assert_eq(train("MMDET_DDP_BUCKET_MB=0.01 " MPIRUN, "two", "--no-validate --launcher mpi",
                       "data.samples_per_gpu=2"), 0, "%s", output("two"));
    losses one, two;
    read_losses("one", &one);
    read_losses("two", &two);
    assert_same_losses(&two, &one, "GN, 2 ranks x 2 images vs 1 x 4");
    char path[256];
    snprintf(path, sizeof path, "%s/two.out", dir);
    const char *out = slurp(path);
    cr_assert(out && strstr(out, "data parallel over 2 ranks") && strstr(out, "gradient buckets"), "%s", out);
}

Test(dist, launcher_pytorch_is_a_clear_error) {
    cr_assert_neq(train("", "pt", "--launcher pytorch", ""), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/pt.out", dir);
    const char *out = slurp(path);
    cr_assert(out && strstr(out, "--launcher pytorch") && strstr(out, "--launcher mpi"), "%s", out);
}

/* Largest |a - b| / (|b| + 1e-3) over the entries of two checkpoints whose
 * names end with `suffix`; *n gets how many were compared. */
static double ckpt_diff(const char *a_path, const char *b_path, const char *suffix, int *n) {
    md_error err = { 0 };
    md_st *a = md_st_open(a_path, &err), *b = a ? md_st_open(b_path, &err) : NULL;
    cr_assert(a && b, "%s", err.msg);
    double worst = 0;
    *n = 0;
    for (int i = 0; i < md_st_count(b); i++) {
        const char *name = md_st_name(b, i);
        size_t l = strlen(name), ls = strlen(suffix);
        if (l < ls || strcmp(name + l - ls, suffix) || md_st_dtype(b, i) != MD_F32) continue;
        int j = md_st_find(a, name);
        cr_assert_geq(j, 0, "%s has no %s", a_path, name);
        int64_t shape[8];
        int nd = md_st_shape(b, i, shape);
        int64_t cnt = 1;
        for (int d = 0; d < nd; d++) cnt *= shape[d];
        const float *x = golden_data(a, j), *y = golden_data(b, i);
        for (int64_t k = 0; k < cnt; k++) {
            double d = fabs((double)x[k] - y[k]) / (fabs(y[k]) + 1e-3);
            if (d > worst) worst = d;
        }
        (*n)++;
    }
    md_st_close(a);
    md_st_close(b);
    return worst;
}

Test(dist, syncbn_two_ranks_of_2_equal_one_bn_process_of_4) {
    need_mpirun();
    const char *bn_run = "bin/mmdet-run --plugin-dir plugins tests/configs/dist/retinanet_dist_bn.cfg --seed 0 ";
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "MMDET_NUM_THREADS=1 %s --work-dir %s/bn --no-validate --cfg-options "
             "data.train.data_root=%s/data/ model.backbone.norm_cfg.type=BN >%s/bn.out 2>&1", bn_run, dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "%s", output("bn"));
    snprintf(cmd, sizeof cmd, "MMDET_NUM_THREADS=1 " MPIRUN "%s --work-dir %s/sync --no-validate --launcher mpi "
             "--cfg-options data.train.data_root=%s/data/ data.samples_per_gpu=2 >%s/sync.out 2>&1", bn_run, dir, dir,
             dir);
    cr_assert_eq(system(cmd), 0, "%s", output("sync"));
    losses bn, sync;
    read_losses("bn", &bn);
    read_losses("sync", &sync);
    assert_same_losses(&sync, &bn, "SyncBN, 2 ranks x 2 images vs BN, 1 x 4");
    /* the running statistics too (SyncBN's unbiased variance over 4 images) */
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/sync/epoch_20.safetensors", dir);
    snprintf(b, sizeof b, "%s/bn/epoch_20.safetensors", dir);
    int n_mean, n_var;
    double dm = ckpt_diff(a, b, "running_mean", &n_mean), dv = ckpt_diff(a, b, "running_var", &n_var);
    cr_assert_gt(n_mean, 10);
    cr_assert_eq(n_var, n_mean);
    cr_assert_lt(dm, 1e-4, "running_mean differs by %g", dm);
    cr_assert_lt(dv, 1e-4, "running_var differs by %g", dv);
}

Test(dist, checkpoint_of_2_ranks_resumes_on_1_and_on_2) {
    need_mpirun();
    cr_assert_eq(train("", "one", "--no-validate", ""), 0, "%s", output("one"));
    cr_assert_eq(train(MPIRUN, "half", "--no-validate --launcher mpi", "data.samples_per_gpu=2 runner.max_epochs=10"),
                 0, "%s", output("half"));
    char path[256], flags[512];
    snprintf(path, sizeof path, "%s/half/epoch_10.safetensors", dir);
    cr_assert_eq(access(path, F_OK), 0, "rank 0 wrote no %s", path);
    snprintf(flags, sizeof flags, "--no-validate --launcher mpi --resume-from %s", path);
    cr_assert_eq(train(MPIRUN, "on2", flags, "data.samples_per_gpu=2"), 0, "%s", output("on2"));
    snprintf(flags, sizeof flags, "--no-validate --resume-from %s", path);
    cr_assert_eq(train("", "on1", flags, ""), 0, "%s", output("on1"));
    losses one, on1, on2;
    read_losses("one", &one);
    read_losses("on1", &on1);
    read_losses("on2", &on2);
    cr_assert_eq(on1.n, 10);
    cr_assert_eq(on2.n, 10);
    assert_same_range(&on2, 0, &one, 10, 10, "resumed on 2 ranks vs 1 process from the start");
    assert_same_range(&on1, 0, &one, 10, 10, "resumed on 1 process vs 1 process from the start");
}

/* The val lines' bbox_mAP* values of <work>'s JSON log, in order. */
static int read_map(const char *work, double *v, int max) {
    char pattern[256];
    snprintf(pattern, sizeof pattern, "%s/%s/*.log.json", dir, work);
    glob_t g;
    cr_assert_eq(glob(pattern, 0, NULL, &g), 0, "no JSON log in %s/%s", dir, work);
    int n = 0;
    FILE *fp = fopen(g.gl_pathv[0], "r");
    char line[8192];
    while (fp && fgets(line, sizeof line, fp)) {
        if (!strstr(line, "\"mode\": \"val\"")) continue;
        for (const char *p = line; n < max && (p = strstr(p, "\"bbox_mAP")); p++) {
            const char *c = strchr(p, ':');
            if (c) v[n++] = atof(c + 1);
        }
    }
    if (fp) fclose(fp);
    globfree(&g);
    return n;
}

Test(dist, dist_eval_gives_the_single_process_coco_stats) {
    need_mpirun();
    /* OracleDetector (tests/plugins) answers with the ground truth of a
     * scripted part of the val images: the stats change per epoch. 5 val
     * images over 2 ranks: the sampler pads rank 1's shard with image 0. */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf %s/eval && bin/mmdet-shapes --out %s/eval --train 8 --val 5 --seed 3 "
             ">/dev/null", dir, dir);
    cr_assert_eq(system(cmd), 0);
    const char *fmt = "MMDET_NUM_THREADS=1 %sbin/mmdet-run --plugin-dir plugins --plugin-dir tests/plugins "
                      "tests/configs/eval/oracle_shapes.cfg --seed 0 --work-dir %s/%s %s --cfg-options "
                      "data.train.data_root=%s/eval/ data.val.data_root=%s/eval/ "
                      "model.ann_file=%s/eval/annotations/instances_val.json %s >%s/%s.out 2>&1";
    snprintf(cmd, sizeof cmd, fmt, "", dir, "ev1", "", dir, dir, dir, "", dir, "ev1");
    cr_assert_eq(system(cmd), 0, "%s", output("ev1"));
    snprintf(cmd, sizeof cmd, fmt, MPIRUN, dir, "ev2", "--launcher mpi", dir, dir, dir, "data.samples_per_gpu=2", dir,
             "ev2");
    cr_assert_eq(system(cmd), 0, "%s", output("ev2"));
    double a[64], b[64];
    int na = read_map("ev1", a, 64), nb = read_map("ev2", b, 64);
    cr_assert_eq(na, 4 * 6, "%d bbox_mAP values in the single-process log", na);
    cr_assert_eq(nb, na, "%d bbox_mAP values distributed, %d in one process", nb, na);
    bool between = false;
    for (int i = 0; i < na; i++) {
        cr_assert_eq(b[i], a[i], "stat %d of epoch %d: %g distributed, %g in one process", i % 6, i / 6 + 1, b[i],
                     a[i]);
        if (a[i] > 0.05 && a[i] < 0.95) between = true;
    }
    cr_assert(between, "the scripted stats should not all be 0, 1 or -1");
}

/* The pid of the process of MPI rank `rank` whose parent is `parent`. */
static pid_t find_rank(pid_t parent, int rank) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t found = -1;
    char want[64];
    snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
    while (d && found < 0 && (e = readdir(d))) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0) continue;
        char path[64], buf[1 << 16];
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = fopen(path, "r");
        int ppid = -1;
        if (f) {
            if (fscanf(f, "%*d (%*[^)]) %*c %d", &ppid) != 1) ppid = -1;
            fclose(f);
        }
        if (ppid != parent) continue;
        snprintf(path, sizeof path, "/proc/%d/environ", pid);
        f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f) fclose(f);
        for (size_t k = 0; k < n; k += strlen(buf + k) + 1) {
            buf[n] = 0;
            if (!strcmp(buf + k, want)) found = pid;
        }
    }
    if (d) closedir(d);
    return found;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Starts a long distributed run, waits until it trains, does `sig` to rank
 * 1, and returns the seconds until mpirun ended (its status in *status). */
static double fail_rank_1(const char *work, int sig, const char *env, int *status) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec env MMDET_NUM_THREADS=1 %s " MPIRUN RUN "--work-dir %s/%s --no-validate "
             "--launcher mpi --cfg-options data.train.data_root=%s/data/ data.samples_per_gpu=2 "
             "runner.max_epochs=100000 >%s/%s.out 2>&1", env, dir, work, dir, dir, work);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* training has started when rank 0 logged a few iterations */
    char pattern[256];
    snprintf(pattern, sizeof pattern, "%s/%s/*.log.json", dir, work);
    pid_t r1 = -1;
    for (double t0 = now_s(); now_s() - t0 < 120;) {
        glob_t g;
        int lines = 0;
        if (glob(pattern, 0, NULL, &g) == 0) {
            FILE *f = fopen(g.gl_pathv[0], "r");
            char line[8192];
            while (f && fgets(line, sizeof line, f)) lines += strstr(line, "\"mode\": \"train\"") != NULL;
            if (f) fclose(f);
            globfree(&g);
        }
        if (lines >= 3 && (r1 = find_rank(pid, 1)) > 0) break;
        usleep(100000);
    }
    if (r1 <= 0) {
        kill(pid, SIGKILL);
        waitpid(pid, status, 0);
        cr_assert_fail("the distributed run did not start training, or rank 1 was not found: %s", output(work));
    }
    cr_assert_eq(kill(r1, sig), 0);
    double t0 = now_s();
    while (waitpid(pid, status, WNOHANG) == 0) {
        if (now_s() - t0 > 120) {
            kill(pid, SIGKILL);
            waitpid(pid, status, 0);
            kill(r1, SIGKILL);
            cr_assert_fail("mpirun still running 120 s after rank 1 got signal %d: %s", sig, output(work));
        }
        usleep(50000);
    }
    kill(r1, SIGKILL);   /* a stopped rank the job did not take down */
    return now_s() - t0;
}

Test(dist, killed_rank_ends_the_job_with_a_message) {
    need_mpirun();
    int status;
    double t = fail_rank_1("killed", SIGKILL, "", &status);
    cr_assert(!(WIFEXITED(status) && WEXITSTATUS(status) == 0), "the job reported success");
    cr_assert_lt(t, 60, "the job took %.0f s to end", t);
    const char *out = output("killed");
    cr_assert(strstr(out, "rank 1"), "no message names rank 1: %s", out);
}

Test(dist, hung_rank_times_out_with_a_message) {
    need_mpirun();
    /* rank 1 stopped: rank 0's next collective waits MMDET_DIST_TIMEOUT s,
     * then fails naming itself and the operation, and ends the job */
    int status;
    double t = fail_rank_1("hung", SIGSTOP, "MMDET_DIST_TIMEOUT=3", &status);
    cr_assert(!(WIFEXITED(status) && WEXITSTATUS(status) == 0), "the job reported success");
    cr_assert_lt(t, 60, "the job took %.0f s to end", t);
    const char *out = output("hung");
    cr_assert(strstr(out, "rank 0: ") && strstr(out, "did not complete within 3 s"), "%s", out);
}

Test(dist, slurm_ranks_must_match_mpi) {
    need_mpirun();
    /* Slurm's variables say rank 1 of 2, MPI (a singleton here) 0 of 1 */
    cr_assert_neq(train("SLURM_PROCID=1 SLURM_NTASKS=2 SLURM_LOCALID=1 ", "slurm", "--no-validate --launcher slurm",
                        "runner.max_epochs=1"), 0);
    const char *out = output("slurm");
    cr_assert(strstr(out, "Slurm says rank 1 of 2, MPI says rank 0 of 1") && strstr(out, "--mpi=pmix"), "%s", out);
    cr_assert_eq(train("SLURM_PROCID=0 SLURM_NTASKS=1 SLURM_LOCALID=0 ", "slurm1", "--no-validate --launcher slurm",
                       "runner.max_epochs=1"), 0, "%s", output("slurm1"));
}

Test(dist, parameters_without_gradient_do_not_hang) {
    need_mpirun();
    /* the backbone's last stage computes an output nothing reads: its
     * parameters get no gradient on any rank (and keep none, as in one
     * process); tiny buckets put them in buckets of their own */
    const char *opts = "model.backbone.out_indices=[0,1,2] model.neck.in_channels=[8,16,32]";
    char o2[512];
    snprintf(o2, sizeof o2, "%s data.samples_per_gpu=2", opts);
    cr_assert_eq(train("", "u1", "--no-validate", opts), 0, "%s", output("u1"));
    cr_assert_eq(train("MMDET_DDP_BUCKET_MB=0.005 " MPIRUN, "u2", "--no-validate --launcher mpi", o2), 0, "%s",
                 output("u2"));
    losses a, b;
    read_losses("u1", &a);
    read_losses("u2", &b);
    assert_same_losses(&b, &a, "an unused backbone stage, 2 ranks x 2 images vs 1 x 4");
}

/* Every f32 entry of two checkpoints bit for bit; how many entries. */
static int ckpt_same_bits(const char *a_path, const char *b_path) {
    md_error err = { 0 };
    md_st *a = md_st_open(a_path, &err), *b = a ? md_st_open(b_path, &err) : NULL;
    cr_assert(a && b, "%s", err.msg);
    int n = 0;
    for (int i = 0; i < md_st_count(b); i++) {
        if (md_st_dtype(b, i) != MD_F32) continue;
        const char *name = md_st_name(b, i);
        int j = md_st_find(a, name);
        cr_assert_geq(j, 0, "%s has no %s", a_path, name);
        int64_t shape[8];
        int nd = md_st_shape(b, i, shape);
        int64_t cnt = 1;
        for (int d = 0; d < nd; d++) cnt *= shape[d];
        const float *x = golden_data(a, j), *y = golden_data(b, i);
        for (int64_t k = 0; k < cnt; k++)
            cr_assert(!memcmp(&x[k], &y[k], sizeof *x), "%s[%lld]: %.9g with overlap, %.9g without", name,
                      (long long)k, x[k], y[k]);
        n++;
    }
    md_st_close(a);
    md_st_close(b);
    return n;
}

Test(dist, overlap_off_gives_the_same_bits) {
    need_mpirun();
    /* small buckets: with overlap, many start during backward; without
     * (MMDET_DDP_OVERLAP=0), all start after it, in the same order */
    const char *opts = "data.samples_per_gpu=2 runner.max_epochs=5";
    cr_assert_eq(train("MMDET_DDP_BUCKET_MB=0.01 " MPIRUN, "ov", "--no-validate --launcher mpi", opts), 0, "%s",
                 output("ov"));
    /* the serial run also times the all-reduces alone (after training) */
    cr_assert_eq(train("MMDET_DDP_OVERLAP=0 MMDET_DDP_TIME_ALLREDUCE=3 MMDET_DDP_BUCKET_MB=0.01 " MPIRUN, "serial",
                       "--no-validate --launcher mpi", opts), 0, "%s", output("serial"));
    cr_assert(strstr(output("serial"), "the all-reduces alone take "), "%s", output("serial"));
    cr_assert(!strstr(output("ov"), "alone take"), "timed without MMDET_DDP_TIME_ALLREDUCE: %s", output("ov"));
    cr_assert(strstr(output("ov"), "all-reduced during backward") && strstr(output("ov"), "overlap on"), "%s",
              output("ov"));
    cr_assert(strstr(output("serial"), "all-reduced after backward (no overlap)") &&
              strstr(output("serial"), "overlap off"), "%s", output("serial"));
    losses a, b;
    read_losses("ov", &a);
    read_losses("serial", &b);
    cr_assert_eq(a.n, 5);
    cr_assert_eq(b.n, 5);
    for (int i = 0; i < 5; i++)
        for (int k = 0; k < 3; k++)
            cr_assert_eq(a.v[k][i], b.v[k][i], "iteration %d, %.*s %.9g with overlap, %.9g without", i + 1,
                         (int)strlen(KEYS[k]) - 2, KEYS[k], a.v[k][i], b.v[k][i]);
    /* the weights after 5 steps: the same bits */
    char pa[256], pb[256];
    snprintf(pa, sizeof pa, "%s/ov/epoch_5.safetensors", dir);
    snprintf(pb, sizeof pb, "%s/serial/epoch_5.safetensors", dir);
    cr_assert_gt(ckpt_same_bits(pa, pb), 10);
}
