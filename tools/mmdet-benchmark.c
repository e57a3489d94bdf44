/* mmdet-benchmark: inference speed of a detector, as mmdet's
 * tools/analysis_tools/benchmark.py: the test set one image at a time
 * (data.test, samples_per_gpu 1, loaded in the calling thread), the model
 * with the checkpoint's weights in eval mode (optionally with every BN
 * folded into its conv), the first 5 images as warm-up, then images per
 * second of the forward alone (simple_test, or aug_test for several
 * test-time variants) every log-interval images and over max-iter images;
 * repeat-num runs and their mean. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <mmdet/mmdet.h>
#include <mmdet/data.h>
#include <mmdet/evaluation.h>

#define NUM_WARMUP 5

static void usage(FILE *f) {
    fputs("usage: mmdet-benchmark CONFIG CHECKPOINT [options]\n"
          "\n"
          "Measure a detector's inference speed on data.test (mmdet's\n"
          "tools/analysis_tools/benchmark.py): images one at a time, the first 5 as\n"
          "warm-up, the time of the model's forward alone.\n"
          "\n"
          "  --repeat-num N            measure N times and report the mean (default 1)\n"
          "  --max-iter N              images to run, warm-up included (default 2000)\n"
          "  --log-interval N          print the speed every N images (default 50)\n"
          "  --fuse-conv-bn            fold each BatchNorm into the conv before it (mmcv's\n"
          "                            fuse_conv_bn)\n"
          "  --device DEV              cpu, cuda or cuda:N (the config's device; default cpu)\n",
          f);
    fputs(md_tool_opts_usage(), f);
}

static int die(const char *msg, const char *what) {
    fprintf(stderr, "mmdet-benchmark: error: ");
    fprintf(stderr, msg, what);
    fprintf(stderr, "\n");
    return 1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct opts {
    const char *config, *checkpoint, *device;
    long repeat, max_iter, log_interval;
    bool fuse;
} opts;

/* The detector with the checkpoint's weights, fused when asked, on the
 * config's device. Fusing works on host tensors, so the model is loaded
 * on the CPU first and moved afterwards. */
static md_module *load_model(md_ctx *ctx, md_cfg *cfg, const opts *o, md_error *err) {
    const char *device = md_cfg_is_none(md_cfg_get(cfg, "device")) ? "cpu" : md_cfg_str(cfg, "device", "cpu");
    char *dev = strdup(device ? device : "cpu");
    md_ckpt_info info;
    md_module *model = NULL;
    if (!dev || !md_cfg_set_str(cfg, "device", "cpu")) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (!(model = md_detector_init(ctx, cfg, o->config, o->checkpoint, &info, err))) goto out;
    if (o->fuse) {
        int n = 0;
        if (md_nn_fuse_conv_bn(ctx, model, &n, err) != 0) {
            md_error_wrap(err, "--fuse-conv-bn");
            goto fail;
        }
        if (n) md_info(ctx, "fuse_conv_bn: %d BatchNorm2d layers folded into the convolutions before them", n);
        else md_warn(ctx, "--fuse-conv-bn: %s has no BatchNorm2d after a Conv2d; nothing was fused", model->cls->name);
    }
    if (!md_cfg_set_str(cfg, "device", dev)) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (md_module_to_config_device(ctx, model, cfg, err) != 0) goto fail;
    goto out;
fail:
    md_module_free(model);
    model = NULL;
out:
    free(dev);
    return model;
}

/* measure_inference_speed: one pass; the fps, or -1 with err set. */
static double measure(md_ctx *ctx, const md_cfg *base, const opts *o, md_error *err) {
    double fps = -1, pure = 0;
    md_cfg *cfg = md_cfg_clone(base), *tcfg = NULL;
    md_dataset *ds = NULL;
    md_loader *loader = NULL;
    md_module *model = NULL;
    md_det_result *res = NULL;
    int cap = 0;
    if (!cfg) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto out;
    }
    const md_cfg *test = md_cfg_get(cfg, "data.test");
    if (md_cfg_is_none(test)) {
        md_failc(err, MD_ERR_CONFIG, "%s: the config has no data.test", o->config);
        goto out;
    }
    if (!(tcfg = md_cfg_clone(test))) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto out;
    }
    md_cfg_remove(tcfg, "samples_per_gpu");
    md_cfg_set_bool(tcfg, "test_mode", true);
    if (!(ds = md_build_dataset(ctx, tcfg, NULL, err))) goto out;
    /* one image at a time, loaded in this thread: workers would take CPU
     * from the model and make the figure less stable (as mmdet says) */
    md_loader_cfg lc = MD_LOADER_CFG_DEFAULT;
    lc.samples_per_gpu = 1;
    lc.workers_per_gpu = 0;
    lc.shuffle = false;
    if (!(loader = md_loader_new(ds, &lc, err))) goto out;
    if (!(model = load_model(ctx, cfg, o, err))) goto out;
    const md_model_iface *it = md_model_test_iface(model);
    if (!it) {
        md_failc(err, MD_ERR_CONFIG, "model %s has no simple_test", model->cls->name);
        goto out;
    }
    md_device dev = md_module_device(model);
    md_module_train(model, false);
    md_grad_set_enabled(ctx, false);
    size_t mark = md_ctx_arena_mark(ctx);
    if (md_loader_start_epoch(loader, 0, err) != 0) goto out;
    long i = 0;
    for (;; i++) {
        md_error_clear(err);
        md_batch *batch = md_loader_next(loader, err);
        if (!batch) {
            if (err->code) {
                md_error_wrap(err, "test image %ld", i);
                goto out;
            }
            break;
        }
        if (batch->n > cap) {
            md_det_result *nr = realloc(res, sizeof *nr * (size_t)batch->n);
            if (!nr) {
                md_batch_free(batch);
                md_failc(err, MD_ERR_NOMEM, "out of memory");
                goto out;
            }
            res = nr;
            cap = batch->n;
        }
        bool aug = md_batch_n_augs(batch) > 1;
        if (aug && !it->aug_test) {
            md_failc(err, MD_ERR_CONFIG, "model %s has no aug_test and the test pipeline makes %d variants",
                     model->cls->name, md_batch_n_augs(batch));
            md_batch_free(batch);
            goto out;
        }
        int rc = md_device_synchronize(dev, err);
        double t0 = now();
        if (!rc) rc = (aug ? it->aug_test : it->simple_test)(ctx, model, batch, res, err);
        if (!rc) rc = md_device_synchronize(dev, err);
        double elapsed = now() - t0;
        if (rc) {
            if (!err->code) md_error_from_ctx(ctx, err, NULL);
            md_error_wrap(err, "test image %ld (%s)", i, batch->n ? batch->metas[0].filename : "");
            md_batch_free(batch);
            goto out;
        }
        md_batch_free(batch);
        md_ctx_arena_release(ctx, mark);
        if (i >= NUM_WARMUP) {
            pure += elapsed;
            if ((i + 1) % o->log_interval == 0) {
                fps = (double)(i + 1 - NUM_WARMUP) / pure;
                printf("Done image [%-3ld/ %ld], fps: %.1f img / s, times per image: %.1f ms / img\n", i + 1,
                       o->max_iter, fps, 1000 / fps);
                fflush(stdout);
            }
        }
        if (i + 1 == o->max_iter) {
            i++;
            break;
        }
    }
    if (i <= NUM_WARMUP) {
        md_failc(err, MD_ERR_CONFIG, "data.test has %ld images and the first %d are warm-up: nothing was timed", i,
                 NUM_WARMUP);
        fps = -1;
        goto out;
    }
    /* mmdet prints this at max_iter; a shorter test set ends here too */
    fps = (double)(i - NUM_WARMUP) / pure;
    printf("Overall fps: %.1f img / s, times per image: %.1f ms / img\n", fps, 1000 / fps);
    fflush(stdout);
out:
    free(res);
    md_module_free(model);
    md_loader_free(loader);
    md_dataset_free(ds);
    md_cfg_free(tcfg);
    md_cfg_free(cfg);
    md_ctx_step_reset(ctx);
    return fps;
}

static bool parse_count(const char *s, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 1) return false;
    *out = v;
    return true;
}

int main(int argc, char **argv) {
    md_process_init(argc, argv);
    opts o = { .repeat = 1, .max_iter = 2000, .log_interval = 50 };
    md_tool_opts to;
    md_error terr = { 0 };
    if (md_tool_opts_init(&to, argc, &terr) != 0) return die("%s", terr.msg);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int shared = md_tool_opts_parse(&to, argc, argv, &i, &terr);
        if (shared < 0) return die("%s", terr.msg);
        if (shared) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--repeat-num") && i + 1 < argc) {
            if (!parse_count(argv[++i], &o.repeat)) return die("--repeat-num: %s is not a positive integer", argv[i]);
        } else if (!strcmp(a, "--max-iter") && i + 1 < argc) {
            if (!parse_count(argv[++i], &o.max_iter)) return die("--max-iter: %s is not a positive integer", argv[i]);
        } else if (!strcmp(a, "--log-interval") && i + 1 < argc) {
            if (!parse_count(argv[++i], &o.log_interval))
                return die("--log-interval: %s is not a positive integer", argv[i]);
        } else if (!strcmp(a, "--fuse-conv-bn")) o.fuse = true;
        else if (a[0] == '-' && a[1]) {
            usage(stderr);
            return die("unknown option or missing value: %s", a);
        } else if (!o.config) o.config = a;
        else if (!o.checkpoint) o.checkpoint = a;
        else return die("unexpected argument %s", a);
    }
    if (!o.config || !o.checkpoint) {
        usage(stderr);
        return 2;
    }

    md_error err = { 0 };
    int rc = 1;
    md_ctx *ctx = md_ctx_new(&err);
    md_cfg *cfg = NULL;
    double *fps = calloc((size_t)o.repeat, sizeof *fps);
    if (!ctx || !fps) return die("%s", ctx ? "out of memory" : err.msg);
    if (!(cfg = md_tool_setup(ctx, o.config, &to, &err))) goto fail;
    /* the checkpoint gives the weights: a Pretrained backbone is not read
     * (mmdet's cfg.model.pretrained = None, and no init_weights) */
    if (md_cfg_get(cfg, "model.backbone.init_cfg") &&
        md_cfg_apply_option(cfg, "model.backbone.init_cfg=None", &err) != 0)
        goto fail;

    for (long r = 0; r < o.repeat; r++)
        if ((fps[r] = measure(ctx, cfg, &o, &err)) < 0) goto fail;
    if (o.repeat > 1) {
        /* mmdet: the runs' figures rounded to 0.1, then their mean */
        double mean_fps = 0, mean_ms = 0;
        printf("Overall fps: [");
        for (long r = 0; r < o.repeat; r++) {
            char buf[32];
            snprintf(buf, sizeof buf, "%.1f", fps[r]);
            mean_fps += atof(buf);
            printf("%s%s", r ? ", " : "", buf);
        }
        printf("][%.1f] img / s, times per image: [", mean_fps / (double)o.repeat);
        for (long r = 0; r < o.repeat; r++) {
            char buf[32];
            snprintf(buf, sizeof buf, "%.1f", 1000 / fps[r]);
            mean_ms += atof(buf);
            printf("%s%s", r ? ", " : "", buf);
        }
        printf("][%.1f] ms / img\n", mean_ms / (double)o.repeat);
    }
    rc = 0;
fail:
    if (rc) fprintf(stderr, "mmdet-benchmark: error: %s\n", err.msg);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
    free(fps);
    md_tool_opts_free(&to);
    return rc;
}
