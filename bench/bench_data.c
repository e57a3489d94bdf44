/* Data benchmarks (the peer is bench/peer_data.py, same files):
 *   bench coco_load ours_ms=<median> ours_mb=<peak RSS>   CocoDataset on a
 *       generated annotation file the size of COCO instances_train2017.json
 *       (118287 images, 860001 annotations with polygon segmentations, 80
 *       categories): the parse plus the dataset's per-image index, each run
 *       in a fresh child process whose peak RSS is reported;
 *   bench coco_eval_5k ours_ms=<median>   md_coco_evaluate, 5000 images x 100
 *       detections (synthetic ground truth and detections);
 *   bench loader_shapes ours_ms=<ms per batch> imgs_per_s=<...>   the shapes
 *       training pipeline through the loader with 2 workers.
 * Generated inputs are deterministic and cached in $MMDET_BENCH_DIR
 * (default build/bench/data). MMDET_BENCH_SCALE (default 1) scales the
 * sizes down for a quick run. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include "benchlib.h"
#include <mmdet/coco.h>

static uint64_t rng_state;
static uint32_t rnd(void) {   /* splitmix64, high bits */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}
static double unif(void) { return rnd() / 4294967296.0; }

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}
static void die(const char *what, const char *msg) {
    fprintf(stderr, "bench_data: %s: %s\n", what, msg);
    exit(1);
}

static const char *const coco_names[80] = {
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
};
/* COCO's category ids: 1..90 with gaps. */
static const int coco_cat_ids[80] = {
    1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31,
    32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
    60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
};

typedef struct gimg { int64_t id; int w, h; } gimg;

static void gen_images(gimg *im, int64_t n) {
    int64_t id = 9;
    for (int64_t i = 0; i < n; i++) {
        id += 1 + rnd() % 7;
        static const int sides[] = { 640, 640, 640, 500, 480, 427, 375, 612 };
        int a = sides[rnd() % 8], b = 240 + (int)(rnd() % 400);
        im[i] = rnd() % 3 ? (gimg){ id, a, b } : (gimg){ id, b, a };
    }
}

static void write_images(FILE *f, const gimg *im, int64_t n) {
    fputs("\"images\": [", f);
    for (int64_t i = 0; i < n; i++)
        fprintf(f, "%s{\"license\": %d, \"file_name\": \"%012lld.jpg\", \"coco_url\": "
                "\"http://images.cocodataset.org/train2017/%012lld.jpg\", \"height\": %d, \"width\": %d, "
                "\"date_captured\": \"2013-11-%02d 1%d:%02d:%02d\", \"flickr_url\": "
                "\"http://farm%d.staticflickr.com/%d/%u_%08x_z.jpg\", \"id\": %lld}",
                i ? ", " : "", 1 + (int)(rnd() % 8), (long long)im[i].id, (long long)im[i].id, im[i].h, im[i].w,
                1 + (int)(rnd() % 28), (int)(rnd() % 10), (int)(rnd() % 60), (int)(rnd() % 60), 1 + (int)(rnd() % 9),
                1000 + (int)(rnd() % 8000), rnd(), rnd(), (long long)im[i].id);
    fputs("]", f);
}

static void write_categories(FILE *f) {
    fputs("\"categories\": [", f);
    for (int k = 0; k < 80; k++)
        fprintf(f, "%s{\"supercategory\": \"%s\", \"id\": %d, \"name\": \"%s\"}", k ? ", " : "",
                k < 8 ? "vehicle" : "thing", coco_cat_ids[k], coco_names[k]);
    fputs("]", f);
}

/* A box inside a w x h image, log-uniform in size (COCO-like small/medium/large mix). */
static void rand_box(int w, int h, double *b) {
    double s = exp(log(4.0) + unif() * (log(0.9 * (w < h ? w : h)) - log(4.0)));
    double ar = exp((unif() - 0.5) * 1.6);
    double bw = fmin(s * sqrt(ar), w - 1), bh = fmin(s / sqrt(ar), h - 1);
    b[0] = unif() * (w - bw), b[1] = unif() * (h - bh), b[2] = bw, b[3] = bh;
}

/* instances_train2017.json-like: polygons of 4..40 points (a tenth in two
 * parts), 1% crowd regions as RLE counts. */
static void gen_train(const char *path, int64_t n_img, int64_t n_ann) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) die(tmp, strerror(errno));
    static char fbuf[1 << 20];
    setvbuf(f, fbuf, _IOFBF, sizeof fbuf);
    rng_state = 2017;
    gimg *im = malloc(sizeof *im * (size_t)n_img);
    if (!im) die("coco_load", "out of memory");
    gen_images(im, n_img);
    fputs("{\"info\": {\"description\": \"synthetic COCO-sized annotations\", \"version\": \"1.0\", \"year\": 2017}, "
          "\"licenses\": [{\"url\": \"http://creativecommons.org/licenses/by-nc-sa/2.0/\", \"id\": 1, "
          "\"name\": \"Attribution-NonCommercial-ShareAlike License\"}], ", f);
    write_images(f, im, n_img);
    fputs(", \"annotations\": [", f);
    for (int64_t a = 0; a < n_ann; a++) {
        const gimg *g = &im[rnd() % (uint32_t)n_img];
        double b[4];
        rand_box(g->w, g->h, b);
        int crowd = rnd() % 100 == 0;
        fputs(a ? ", {\"segmentation\": " : "{\"segmentation\": ", f);
        if (crowd) {
            int nc = 20 + (int)(rnd() % 200);
            fputs("{\"counts\": [", f);
            for (int k = 0; k < nc; k++) fprintf(f, k ? ",%u" : "%u", rnd() % 400);
            fprintf(f, "], \"size\": [%d, %d]}", g->h, g->w);
        } else {
            int parts = rnd() % 10 ? 1 : 2;
            fputc('[', f);
            for (int p = 0; p < parts; p++) {
                int np = 4 + (int)(rnd() % 37);
                fputs(p ? ", [" : "[", f);
                for (int k = 0; k < np; k++) {
                    double t = 2 * M_PI * k / np, r = 0.35 + 0.15 * unif();
                    fprintf(f, k ? ", %.2f, %.2f" : "%.2f, %.2f", b[0] + b[2] * (0.5 + r * cos(t)),
                            b[1] + b[3] * (0.5 + r * sin(t)));
                }
                fputc(']', f);
            }
            fputc(']', f);
        }
        int k = (int)(rnd() % 80);
        fprintf(f, ", \"area\": %.4f, \"iscrowd\": %d, \"image_id\": %lld, \"bbox\": [%.2f, %.2f, %.2f, %.2f], "
                "\"category_id\": %d, \"id\": %lld}", b[2] * b[3] * (0.6 + 0.3 * unif()), crowd, (long long)g->id,
                b[0], b[1], b[2], b[3], coco_cat_ids[k], (long long)(a + 1));
    }
    fputs("], ", f);
    write_categories(f);
    fputs("}\n", f);
    free(im);
    if (ferror(f) | (fclose(f) != 0) || rename(tmp, path)) die(path, "write failed");
}

/* 5k images, ~7 GT each; 100 detections per image: jittered copies of its
 * GT (some with the wrong class) and random boxes, scores mostly distinct. */
static void gen_eval(const char *gt_path, const char *dt_path, int64_t n_img) {
    rng_state = 5000;
    gimg *im = malloc(sizeof *im * (size_t)n_img);
    if (!im) die("coco_eval", "out of memory");
    gen_images(im, n_img);
    FILE *g = fopen(gt_path, "w"), *d = fopen(dt_path, "w");
    if (!g || !d) die(gt_path, strerror(errno));
    fputs("{", g);
    write_images(g, im, n_img);
    fputs(", \"annotations\": [", g);
    fputs("[", d);
    int64_t aid = 1, ndt = 0;
    for (int64_t i = 0; i < n_img; i++) {
        int ng = 1 + (int)(rnd() % 14);
        double gb[16][4];
        int gc[16];
        for (int j = 0; j < ng; j++) {
            rand_box(im[i].w, im[i].h, gb[j]);
            gc[j] = coco_cat_ids[rnd() % 80];
            int crowd = rnd() % 100 == 0;
            fprintf(g, "%s{\"id\": %lld, \"image_id\": %lld, \"category_id\": %d, \"bbox\": [%.2f, %.2f, %.2f, %.2f], "
                    "\"area\": %.3f, \"iscrowd\": %d, \"segmentation\": []}", aid > 1 ? ", " : "", (long long)aid,
                    (long long)im[i].id, gc[j], gb[j][0], gb[j][1], gb[j][2], gb[j][3],
                    gb[j][2] * gb[j][3] * (0.6 + 0.3 * unif()), crowd);
            aid++;
        }
        for (int k = 0; k < 100; k++) {
            double b[4];
            int c;
            if (k < 3 * ng) {
                int j = k % ng;
                double s = 0.25 * unif();
                for (int q = 0; q < 4; q++) b[q] = gb[j][q] + (unif() - 0.5) * s * (q % 2 ? gb[j][3] : gb[j][2]);
                if (b[2] < 1) b[2] = 1;
                if (b[3] < 1) b[3] = 1;
                c = rnd() % 5 ? gc[j] : coco_cat_ids[rnd() % 80];
            } else {
                rand_box(im[i].w, im[i].h, b);
                c = coco_cat_ids[rnd() % 80];
            }
            double score = k < 3 * ng ? 0.3 + 0.7 * unif() : 0.3 * unif();
            fprintf(d, "%s{\"image_id\": %lld, \"category_id\": %d, \"bbox\": [%.2f, %.2f, %.2f, %.2f], "
                    "\"score\": %.5f}", ndt++ ? ",\n" : "\n", (long long)im[i].id, c, b[0], b[1], b[2], b[3], score);
        }
    }
    fputs("], ", g);
    write_categories(g);
    fputs("}\n", g);
    fputs("\n]\n", d);
    free(im);
    if (ferror(g) | ferror(d) | (fclose(g) != 0) | (fclose(d) != 0)) die(gt_path, "write failed");
}

/* ---------------------------------------------------------------- coco_load */

/* In a child: builds the dataset, writes the time (ms) and size to fd. */
static void load_child(const char *ann, int fd) {
    md_error err = { 0 };
    md_ctx *ctx = md_ctx_new(&err);
    if (!ctx || md_plugin_load_dir(ctx, "plugins/datasets", &err)) die("coco_load", err.msg);
    md_log_set_quiet(ctx, true);
    md_cfg *cfg = md_cfg_new_group();
    md_cfg_set_str(cfg, "type", "CocoDataset");
    md_cfg_set_str(cfg, "ann_file", ann);
    md_cfg_set_str(cfg, "img_prefix", "train2017/");
    md_cfg_set_list(cfg, "pipeline");
    double t0 = now_ms(), c0 = cpu_ms();
    md_dataset *ds = md_build_dataset(ctx, cfg, NULL, &err);
    double t = now_ms() - t0, c = cpu_ms() - c0;
    if (!ds) die("coco_load", err.msg);
    char msg[128];
    int n = snprintf(msg, sizeof msg, "%.3f %.3f %lld\n", t, c, (long long)md_dataset_len(ds));
    if (write(fd, msg, (size_t)n) != n) die("coco_load", "pipe");
    md_dataset_free(ds);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
}

static void bench_coco_load(const char *dir, double scale, int reps) {
    int64_t n_img = (int64_t)(118287 * scale), n_ann = (int64_t)(860001 * scale);
    char path[4096];
    snprintf(path, sizeof path, "%s/instances_train_synth_%lld_%lld.json", dir, (long long)n_img, (long long)n_ann);
    if (!exists(path)) {
        double t0 = now_ms();
        gen_train(path, n_img, n_ann);
        fprintf(stderr, "bench_data: wrote %s in %.1f s\n", path, (now_ms() - t0) / 1e3);
    }
    struct stat st;
    stat(path, &st);
    double t[16], c[16], mb = 0;
    long long kept = 0;
    for (int r = 0; r < reps; r++) {
        int p[2];
        if (pipe(p)) die("coco_load", "pipe");
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            load_child(path, p[1]);
            _exit(0);
        }
        close(p[1]);
        char buf[128] = "";
        ssize_t n = read(p[0], buf, sizeof buf - 1);
        close(p[0]);
        int status;
        struct rusage ru;
        if (n <= 0 || wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
            die("coco_load", "the loading process failed");
        buf[n] = 0;
        sscanf(buf, "%lf %lf %lld", &t[r], &c[r], &kept);
        mb = fmax(mb, ru.ru_maxrss / 1024.0);
    }
    printf("bench coco_load ours_ms=%.1f ours_cpu_ms=%.1f ours_mb=%.0f file_mb=%.0f images=%lld anns=%lld "
           "kept_images=%lld\n", median(t, reps), median(c, reps), mb, st.st_size / 1048576.0, (long long)n_img, (long long)n_ann, kept);
    fflush(stdout);
}

/* ---------------------------------------------------------------- coco_eval */

static void bench_coco_eval(const char *dir, double scale, int reps) {
    int64_t n_img = (int64_t)(5000 * scale);
    if (n_img < 1) n_img = 1;
    char gt[4096], dt[4096];
    snprintf(gt, sizeof gt, "%s/eval_gt_%lld.json", dir, (long long)n_img);
    snprintf(dt, sizeof dt, "%s/eval_dt_%lld.json", dir, (long long)n_img);
    if (!exists(gt) || !exists(dt)) gen_eval(gt, dt, n_img);
    md_error err = { 0 };
    md_coco *c = md_coco_load(gt, &err);
    md_coco_det *dets = NULL;
    size_t nd = 0;
    if (!c || md_coco_load_dets(dt, &dets, &nd, &err)) die("coco_eval", err.msg);
    double t[16], cpu[16], ap = 0;
    for (int r = 0; r < reps; r++) {
        md_coco_eval ev;
        double t0 = now_ms(), c0 = cpu_ms();
        if (md_coco_evaluate(c, dets, nd, &ev, &err)) die("coco_eval", err.msg);
        t[r] = now_ms() - t0;
        cpu[r] = cpu_ms() - c0;
        ap = ev.stats[0];
        md_coco_eval_free(&ev);
    }
    char *th = getenv("MMDET_NUM_THREADS");
    printf("bench coco_eval_5k ours_ms=%.1f ours_cpu_ms=%.1f images=%lld dets=%zu gts=%zu ap=%.4f threads=%s\n",
           median(t, reps), median(cpu, reps), (long long)n_img, nd, c->n_anns, ap, th ? th : "default");
    fflush(stdout);
    free(dets);
    md_coco_free(c);
}

/* ------------------------------------------------------------ loader_shapes */

static void bench_loader(const char *dir, double scale) {
    int n = (int)(400 * scale);
    if (n < 8) n = 8;
    char root[4096], ann[4200], flag[4200], cmd[8600];
    snprintf(root, sizeof root, "%s/shapes_%d", dir, n);
    snprintf(ann, sizeof ann, "%s/annotations/instances_train.json", root);
    snprintf(flag, sizeof flag, "%s/.done", root);
    if (!exists(flag)) {
        snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out '%s' --train %d --val 1 --seed 1 >/dev/null && touch '%s'",
                 root, n, flag);
        if (system(cmd) != 0) die("loader_shapes", "bin/mmdet-shapes failed");
    }
    md_error err = { 0 };
    md_ctx *ctx = md_ctx_new(&err);
    if (!ctx || md_plugin_load_dir(ctx, "plugins/datasets", &err)) die("loader_shapes", err.msg);
    md_log_set_quiet(ctx, true);
    md_cfg *cfg = md_cfg_load("configs/_base_/datasets/shapes_detection.cfg", &err);
    if (!cfg) die("loader_shapes", err.msg);
    md_cfg *train = md_cfg_get_mut(cfg, "data.train");
    char prefix[4200];
    snprintf(prefix, sizeof prefix, "%s/train/", root);
    md_cfg_set_str(train, "ann_file", ann);
    md_cfg_set_str(train, "img_prefix", prefix);
    md_dataset *ds = md_build_dataset(ctx, train, NULL, &err);
    if (!ds) die("loader_shapes", err.msg);
    md_loader_cfg lc = MD_LOADER_CFG_DEFAULT;
    lc.samples_per_gpu = (int)md_cfg_int(md_cfg_get(cfg, "data"), "samples_per_gpu", 2);
    lc.workers_per_gpu = 2;
    lc.size_divisor = 32;
    lc.seed = 1;
    md_loader *l = md_loader_new(ds, &lc, &err);
    if (!l) die("loader_shapes", err.msg);
    /* Two epochs; the first batch (workers starting, queue filling) is not counted. */
    double total = 0;
    int64_t nb = 0, ni = 0;
    for (int epoch = 0; epoch < 2; epoch++) {
        if (md_loader_start_epoch(l, epoch, &err)) die("loader_shapes", err.msg);
        double t0 = now_ms();
        md_batch *b;
        for (int k = 0; (b = md_loader_next(l, &err)); k++) {
            double t1 = now_ms();
            if (epoch > 0 || k > 0) total += t1 - t0, nb++, ni += b->n;
            md_batch_free(b);
            t0 = now_ms();
        }
        if (md_error_is_set(&err)) die("loader_shapes", err.msg);
    }
    printf("bench loader_shapes ours_ms=%.2f imgs_per_s=%.0f batch=%d workers=%d images=%d batches=%lld\n",
           total / (double)nb, ni / (total / 1e3), lc.samples_per_gpu, lc.workers_per_gpu, n, (long long)nb);
    fflush(stdout);
    md_loader_free(l);
    md_dataset_free(ds);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
}

int main(int argc, char **argv) {
    const char *dir = getenv("MMDET_BENCH_DIR") ? getenv("MMDET_BENCH_DIR") : "build/bench/data";
    double scale = getenv("MMDET_BENCH_SCALE") ? atof(getenv("MMDET_BENCH_SCALE")) : 1.0;
    if (!(scale > 0 && scale <= 1)) scale = 1;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    if (system(cmd) != 0) die(dir, "cannot create");
    const char *only = argc > 1 ? argv[1] : NULL;
    if (!only || !strcmp(only, "coco_load")) bench_coco_load(dir, scale, 3);
    if (!only || !strcmp(only, "coco_eval_5k")) bench_coco_eval(dir, scale, 3);
    if (!only || !strcmp(only, "loader_shapes")) bench_loader(dir, scale);
    return 0;
}
