/* mmdet-test: test a detector checkpoint on data.test, as mmdet's
 * tools/test.py: build the dataset (test_mode) and the detector, load the
 * checkpoint, run simple_test over every image with a progress bar, then
 * evaluate, write the results, format them for the benchmark server, and/or
 * draw them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <mmdet/mmdet.h>
#include <mmdet/data.h>
#include <mmdet/draw.h>
#include <mmdet/evaluation.h>
#include <mmdet/image.h>

static void usage(FILE *f) {
    fputs("usage: mmdet-test CONFIG CHECKPOINT [options]\n"
          "\n"
          "Test a detector (mmdet's tools/test.py).\n"
          "\n"
          "  --device DEV              cpu, cuda or cuda:N (the config's device; default cpu)\n"
          "  --eval METRIC...          evaluate: bbox, segm (masks of a mask detector)\n"
          "  --out FILE                write the results as mmdet's list (FILE.pkl, .pickle: a pickle for\n"
          "                            mmcv.load; FILE.json: the same as JSON): per image, per class, the\n"
          "                            rows [x1, y1, x2, y2, score]; with masks (bbox_results, segm_results),\n"
          "                            the segms as RLE dicts {size, counts}\n"
          "  --format-only             write the results in the dataset's format (COCO: <prefix>.bbox.json,\n"
          "                            and <prefix>.segm.json with masks)\n"
          "                            without evaluating; prefix from --eval-options jsonfile_prefix=P\n"
          "                            (default: ./results)\n"
          "  --eval-options K=V ...    jsonfile_prefix=P\n"
          "  --show-dir DIR            draw the detections on the original images into DIR (PNG)\n"
          "  --show-score-thr T        score threshold for drawing (default 0.3)\n"
          "  --work-dir DIR            write the metrics to DIR/eval_<timestamp>.json\n",
          f);
    fputs(md_tool_opts_usage(), f);
}

static int die(const char *msg, const char *what) {
    fprintf(stderr, "mmdet-test: error: ");
    fprintf(stderr, msg, what);
    fprintf(stderr, "\n");
    return 1;
}

static int show(const char *dir, const md_results *res, const md_dataset *ds, float thr, md_error *err) {
    for (int64_t i = 0; i < res->n; i++) {
        const md_img_meta *m = &res->metas[i];
        md_image *img = md_image_read_as(m->filename, MD_IMAGE_RGB, err);
        if (!img) return -1;
        /* mmdet's single_gpu_test: boxes, masks and labels in the dataset's PALETTE */
        md_det_style st = MD_DET_STYLE(ds->palette, ds->n_palette);
        st.score_thr = thr;
        if (md_draw_detections(img, &res->r[i], ds->classes, ds->n_classes, &st, err) != 0) {
            md_error_wrap(err, "drawing %s", m->filename);
            md_image_free(img);
            return -1;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, m->ori_filename[0] ? m->ori_filename : m->filename);
        char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
        if (dot && (!slash || dot > slash)) *dot = 0;
        strncat(path, ".png", sizeof path - strlen(path) - 1);
        slash = strrchr(path, '/');
        if (slash) {
            *slash = 0;
            md_fs_mkdirs(path, NULL);
            *slash = '/';
        }
        int rc = md_image_write_png(img, path, err);
        md_image_free(img);
        if (rc != 0) return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    md_process_init(argc, argv);
    const char *config = NULL, *checkpoint = NULL, *out = NULL, *show_dir = NULL, *work_dir = NULL;
    const char *prefix = "results";
    md_tool_opts to;
    md_error terr = { 0 };
    if (md_tool_opts_init(&to, argc, &terr) != 0) return die("%s", terr.msg);
    const char **evals = calloc((size_t)argc + 1, sizeof *evals);
    int n_evals = 0;
    bool format_only = false;
    float thr = 0.3f;
    if (!evals) return die("%s", "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int shared = md_tool_opts_parse(&to, argc, argv, &i, &terr);
        if (shared < 0) return die("%s", terr.msg);
        if (shared) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(a, "--show-dir") && i + 1 < argc) show_dir = argv[++i];
        else if (!strcmp(a, "--work-dir") && i + 1 < argc) work_dir = argv[++i];
        else if (!strcmp(a, "--show-score-thr") && i + 1 < argc) thr = strtof(argv[++i], NULL);
        else if (!strcmp(a, "--format-only")) format_only = true;
        else if (!strcmp(a, "--eval") || !strcmp(a, "--eval-options")) {
            int start = n_evals;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) {
                const char *v = argv[++i];
                if (!strcmp(a, "--eval")) evals[n_evals++] = v;
                else if (!strncmp(v, "jsonfile_prefix=", 16)) prefix = v + 16;
                else return die("--eval-options: unknown option %s (jsonfile_prefix=P)", v);
            }
            if (n_evals == start && !strcmp(a, "--eval")) return die("%s needs values", a);
        } else if (a[0] == '-' && a[1]) {
            usage(stderr);
            return die("unknown option or missing value: %s", a);
        } else if (!config) config = a;
        else if (!checkpoint) checkpoint = a;
        else return die("unexpected argument %s", a);
    }
    if (!config || !checkpoint) {
        usage(stderr);
        return 2;
    }
    if (!out && !n_evals && !format_only && !show_dir)
        return die("%s", "Please specify at least one operation (save/eval/format/show the results) with the "
                         "argument \"--out\", \"--eval\", \"--format-only\" or \"--show-dir\"");
    if (n_evals && format_only) return die("%s", "--eval and --format-only cannot be both specified");
    if (out) {
        size_t n = strlen(out);
        bool ok = (n > 4 && !strcmp(out + n - 4, ".pkl")) || (n > 7 && !strcmp(out + n - 7, ".pickle")) ||
                  (n > 5 && !strcmp(out + n - 5, ".json"));
        if (!ok) return die("the output file must be a .pkl (or .pickle) or .json file: %s", out);
    }

    md_error err = { 0 };
    int rc = 1;
    md_ctx *ctx = md_ctx_new(&err);
    md_cfg *cfg = NULL, *tcfg = NULL;
    md_module *model = NULL;
    md_dataset *ds = NULL;
    md_loader *loader = NULL;
    md_results res = { 0 };
    if (!ctx) return die("%s", err.msg);
    if (!(cfg = md_tool_setup(ctx, config, &to, &err))) goto fail;

    /* data.test in test mode; its samples_per_gpu (default 1) is the batch */
    const md_cfg *test = md_cfg_get(cfg, "data.test");
    if (md_cfg_is_none(test)) {
        md_failc(&err, MD_ERR_CONFIG, "%s: the config has no data.test", config);
        goto fail;
    }
    tcfg = md_cfg_clone(test);
    int spg = (int)md_cfg_int(tcfg, "samples_per_gpu", 1);
    md_cfg_remove(tcfg, "samples_per_gpu");
    md_cfg_set_bool(tcfg, "test_mode", true);
    if (!(ds = md_build_dataset(ctx, tcfg, NULL, &err))) goto fail;
    md_loader_cfg lc = MD_LOADER_CFG_DEFAULT;
    lc.samples_per_gpu = spg;
    lc.workers_per_gpu = (int)md_cfg_int(cfg, "data.workers_per_gpu", 2);
    lc.shuffle = false;
    if (!(loader = md_loader_new(ds, &lc, &err))) goto fail;

    md_ckpt_info info;
    if (!(model = md_detector_init(ctx, cfg, config, checkpoint, &info, &err))) goto fail;

    if (md_single_gpu_test(ctx, model, loader, ds, true, &res, &err) != 0) goto fail;

    if (out) {
        if (md_results_dump(&res, ds->n_classes, out, &err) != 0) goto fail;
        printf("\nwriting results to %s\n", out);
    }
    if (format_only) {
        if (!ds->iface->format_results) {
            md_failc(&err, MD_ERR_CONFIG, "dataset %s has no results format", ds->type);
            goto fail;
        }
        if (ds->iface->format_results(ds, res.r, res.n, prefix, &err) != 0) goto fail;
        bool masks = false;
        for (int64_t i = 0; i < res.n; i++) masks |= res.r[i].masks != NULL;
        printf("results written to %s.bbox.json%s%s%s\n", prefix, masks ? " and " : "", masks ? prefix : "",
               masks ? ".segm.json" : "");
    }
    if (n_evals) {
        if (!ds->iface->evaluate) {
            md_failc(&err, MD_ERR_CONFIG, "dataset %s cannot evaluate", ds->type);
            goto fail;
        }
        md_metrics all = { 0 };
        for (int e = 0; e < n_evals; e++) {
            md_metrics m = { 0 };
            if (ds->iface->evaluate(ds, res.r, res.n, evals[e], &m, &err) != 0) goto fail;
            for (int k = 0; k < m.n && all.n < MD_MAX_METRICS; k++) all.m[all.n++] = m.m[k];
        }
        printf("{");
        for (int k = 0; k < all.n; k++) printf("%s'%s': %.3f", k ? ", " : "", all.m[k].name, all.m[k].value);
        printf("}\n");
        if (work_dir) {
            char path[4096], ts[32];
            time_t now = time(NULL);
            struct tm tm;
            localtime_r(&now, &tm);
            strftime(ts, sizeof ts, "%Y%m%d_%H%M%S", &tm);
            md_fs_mkdirs(work_dir, NULL);
            snprintf(path, sizeof path, "%s/eval_%s.json", work_dir, ts);
            FILE *f = fopen(path, "w");
            if (!f) {
                md_failc(&err, MD_ERR_IO, "cannot write %s", path);
                goto fail;
            }
            fprintf(f, "{\"config\": \"%s\", \"metric\": {", config);
            for (int k = 0; k < all.n; k++) fprintf(f, "%s\"%s\": %.17g", k ? ", " : "", all.m[k].name, all.m[k].value);
            fprintf(f, "}}\n");
            fclose(f);
        }
    }
    if (show_dir) {
        if (md_fs_mkdirs(show_dir, &err) != 0) goto fail;
        if (show(show_dir, &res, ds, thr, &err) != 0) goto fail;
    }
    rc = 0;
fail:
    if (rc) fprintf(stderr, "mmdet-test: error: %s\n", err.msg);
    md_results_free(&res);
    md_loader_free(loader);
    md_dataset_free(ds);
    md_module_free(model);
    md_cfg_free(tcfg);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
    free(evals);
    md_tool_opts_free(&to);
    return rc;
}
