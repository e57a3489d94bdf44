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
#include <math.h>
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

/* Loss by loss to 1e-5 relative; the JSON log prints 6 significant
 * digits, so half a unit of the last one on each side is added. */
static void assert_same_losses(const losses *a, const losses *b, const char *what) {
    cr_assert_eq(a->n, 20, "%s: %d logged iterations, expected 20", what, a->n);
    cr_assert_eq(b->n, a->n, "%s: %d against %d logged iterations", what, b->n, a->n);
    for (int i = 0; i < a->n; i++)
        for (int k = 0; k < 3; k++) {
            double x = a->v[k][i], y = b->v[k][i];
            double tol = 1e-5 * fabs(y) + 1e-5 * pow(10, floor(log10(fabs(y) + 1e-30)));
            cr_assert(fabs(x - y) <= tol, "%s: iteration %d, %.*s %.6g against %.6g", what, i + 1,
                      (int)strlen(KEYS[k]) - 2, KEYS[k], x, y);
        }
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
