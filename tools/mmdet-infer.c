/* mmdet-infer: run a detector on image files, as mmdet's
 * init_detector + inference_detector + show_result_pyplot: build the model
 * from the config (test_cfg), load the checkpoint (safetensors or a PyTorch
 * .pth, by content), run data.test.pipeline and simple_test on each image,
 * and write <out-dir>/<stem>.png (boxes, class names and scores drawn) and
 * <out-dir>/<stem>.json ([{"bbox": [x1, y1, x2, y2], "score", "label",
 * "class"}], in the detector's order). */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include <mmdet/data.h>
#include <mmdet/draw.h>
#include <mmdet/evaluation.h>
#include <mmdet/image.h>

static void usage(FILE *f) {
    fputs("usage: mmdet-infer CONFIG CHECKPOINT IMAGE... [options]\n"
          "\n"
          "Detect objects in images (mmdet's inference_detector and show_result).\n"
          "For each IMAGE writes OUT_DIR/<stem>.png with the detections drawn and\n"
          "OUT_DIR/<stem>.json with them as [{\"bbox\": [x1, y1, x2, y2], \"score\": s,\n"
          "\"label\": l, \"class\": name}]. CHECKPOINT is a safetensors file or a\n"
          "PyTorch .pth (torch.save; read without executing anything).\n"
          "\n"
          "  --out-dir DIR             where to write (default: infer_out)\n"
          "  --score-thr T             keep detections with score >= T (default 0.3; the drawing\n"
          "                            shows those above T, as mmdet)\n"
          "  --palette P               box and mask colours: coco (default), voc, citys, random,\n"
          "                            or one colour (red, green, ...), as mmdet's image_demo\n"
          "  --device DEV              cpu, cuda or cuda:N (the config's device; default cpu)\n",
          f);
    fputs(md_tool_opts_usage(), f);
}

static int die(const char *msg, const char *what) {
    fprintf(stderr, "mmdet-infer: error: ");
    fprintf(stderr, msg, what);
    fprintf(stderr, "\n");
    return 1;
}

/* ------------------------------------------- the images as a dataset -- */

typedef struct images_ds {
    md_dataset base;
    md_pipeline *pipeline;
    char **dirs, **names;           /* dirname / basename of each image */
    int64_t n;
} images_ds;

static int64_t images_len(const md_dataset *d) { return ((const images_ds *)d)->n; }

static int images_info(const md_dataset *d, int64_t i, md_img_info *out) {
    const images_ds *ds = (const images_ds *)d;
    *out = (md_img_info){ ds->names[i], 0, 0, i };
    return 0;
}

/* mmdet's inference_detector: dict(img_info=dict(filename=...)) through the
 * test pipeline; the file is split into img_prefix and name. */
static int images_get(const md_dataset *d, int64_t i, md_rng *rng, md_sample *s, md_error *err) {
    const images_ds *ds = (const images_ds *)d;
    md_sample_init(s);
    s->img_info = (md_img_info){ ds->names[i], 0, 0, i };
    s->img_prefix = ds->dirs[i];
    s->index = i;
    int rc = md_pipeline_apply(ds->pipeline, s, rng, err);
    if (rc == 1) return md_fail(err, "the test pipeline dropped %s/%s", ds->dirs[i], ds->names[i]);
    return rc;
}

static void images_destroy(md_dataset *d) {
    images_ds *ds = (images_ds *)d;
    for (int64_t i = 0; i < ds->n; i++) {
        free(ds->dirs[i]);
        free(ds->names[i]);
    }
    free(ds->dirs);
    free(ds->names);
    md_pipeline_free(ds->pipeline);
    free(ds);
}

static const md_dataset_iface images_iface = {
    .len = images_len, .get = images_get, .img_info = images_info, .destroy = images_destroy,
};

static images_ds *images_new(md_ctx *ctx, const md_cfg *pipeline, char **files, int n, md_error *err) {
    images_ds *ds = calloc(1, sizeof *ds);
    if (!ds || !(ds->dirs = calloc((size_t)n, sizeof(char *))) || !(ds->names = calloc((size_t)n, sizeof(char *)))) {
        if (ds) free(ds->dirs);
        free(ds);
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    ds->base.iface = &images_iface;
    ds->base.type = "images";
    ds->base.test_mode = true;
    for (int i = 0; i < n; i++, ds->n++) {
        char *a = strdup(files[i]), *b = strdup(files[i]);
        ds->dirs[i] = a ? strdup(dirname(a)) : NULL;
        ds->names[i] = b ? strdup(basename(b)) : NULL;
        free(a);
        free(b);
        if (!ds->dirs[i] || !ds->names[i]) {
            ds->n++;
            images_destroy(&ds->base);
            md_failc(err, MD_ERR_NOMEM, "out of memory");
            return NULL;
        }
    }
    if (!(ds->pipeline = md_pipeline_build(ctx, pipeline, err))) {
        images_destroy(&ds->base);
        md_error_wrap(err, "data.test.pipeline");
        return NULL;
    }
    return ds;
}

/* ----------------------------------------------------------- classes -- */

/* CLASSES as the checkpoint stores them: a JSON list of strings. */
static int parse_classes(const char *json, char ***out) {
    const char *p = json;
    while (*p == ' ') p++;
    if (*p++ != '[') return -1;
    int n = 0, cap = 0;
    char **v = NULL;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\n') p++;
        if (*p == ']') break;
        if (*p++ != '"') goto bad;
        char *s = malloc(strlen(p) + 1), *d = s;
        if (!s) goto bad;
        while (*p && *p != '"') {
            if (*p == '\\' && p[1]) p++;
            *d++ = *p++;
        }
        *d = 0;
        if (*p++ != '"') {
            free(s);
            goto bad;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nv = realloc(v, sizeof *nv * (size_t)cap);
            if (!nv) {
                free(s);
                goto bad;
            }
            v = nv;
        }
        v[n++] = s;
    }
    *out = v;
    return n;
bad:
    md_classes_free(v, n);
    return -1;
}

/* ------------------------------------------------------------ output -- */

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static int write_json(const char *path, const md_det_result *r, char *const *classes, int n_classes, float thr,
                      md_error *err) {
    FILE *f = fopen(path, "w");
    if (!f) return md_failc(err, MD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    fputc('[', f);
    int k = 0;
    for (int j = 0; j < r->n; j++) {
        const float *b = r->bboxes + 5 * j;
        if (b[4] < thr) continue;
        int64_t l = r->labels[j];
        fprintf(f, "%s\n  {\"bbox\": [%.9g, %.9g, %.9g, %.9g], \"score\": %.9g, \"label\": %lld, \"class\": ",
                k++ ? "," : "", b[0], b[1], b[2], b[3], b[4], (long long)l);
        char num[32];
        snprintf(num, sizeof num, "%lld", (long long)l);
        json_str(f, classes && l >= 0 && l < n_classes ? classes[l] : num);
        fputc('}', f);
    }
    fputs(k ? "\n]\n" : "]\n", f);
    if (fclose(f) != 0) return md_failc(err, MD_ERR_IO, "error writing %s", path);
    return 0;
}

/* <dir>/<stem of file><ext> */
static void out_path(char *buf, size_t n, const char *dir, const char *file, const char *ext) {
    const char *slash = strrchr(file, '/');
    const char *base = slash ? slash + 1 : file;
    const char *dot = strrchr(base, '.');
    int len = dot && dot > base ? (int)(dot - base) : (int)strlen(base);
    snprintf(buf, n, "%s/%.*s%s", dir, len, base, ext);
}

int main(int argc, char **argv) {
    md_process_init(argc, argv);
    const char *config = NULL, *checkpoint = NULL, *out_dir = "infer_out";
    md_tool_opts to;
    md_error terr = { 0 };
    if (md_tool_opts_init(&to, argc, &terr) != 0) return die("%s", terr.msg);
    char **images = calloc((size_t)argc + 1, sizeof *images);
    int n_images = 0;
    float thr = 0.3f;
    const char *palette = "coco";
    if (!images) return die("%s", "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int shared = md_tool_opts_parse(&to, argc, argv, &i, &terr);
        if (shared < 0) return die("%s", terr.msg);
        if (shared) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--out-dir") && i + 1 < argc) out_dir = argv[++i];
        else if (!strcmp(a, "--palette") && i + 1 < argc) palette = argv[++i];
        else if (!strcmp(a, "--score-thr") && i + 1 < argc) {
            char *end;
            thr = strtof(argv[++i], &end);
            if (*end || end == argv[i]) return die("--score-thr: not a number: %s", argv[i]);
        } else if (a[0] == '-' && a[1]) {
            usage(stderr);
            return die("unknown option or missing value: %s", a);
        } else if (!config) config = a;
        else if (!checkpoint) checkpoint = a;
        else images[n_images++] = argv[i];
    }
    if (!config || !checkpoint || !n_images) {
        usage(stderr);
        return 2;
    }
    uint8_t probe[3];
    md_error perr = { 0 };
    if (md_palette_get(palette, 1, probe, &perr) != 0) return die("--palette: %s", perr.msg);
    /* every image up front, so a typo fails before the model is built */
    for (int i = 0; i < n_images; i++) {
        int w, h;
        md_error e = { 0 };
        if (md_image_read_size(images[i], &w, &h, &e) != 0) return die("%s", e.msg);
    }

    md_error err = { 0 };
    int rc = 1;
    md_ctx *ctx = md_ctx_new(&err);
    md_cfg *cfg = NULL;
    md_module *model = NULL;
    images_ds *ds = NULL;
    md_loader *loader = NULL;
    md_results res = { 0 };
    uint8_t *colors = NULL;
    char **classes = NULL;
    int n_classes = 0;
    if (!ctx) return die("%s", err.msg);
    if (!(cfg = md_tool_setup(ctx, config, &to, &err))) goto fail;

    md_ckpt_info info;
    if (!(model = md_detector_init(ctx, cfg, config, checkpoint, &info, &err))) goto fail;
    /* class names: the checkpoint's CLASSES, else data.test.classes, else numbers */
    if (info.classes[0]) n_classes = parse_classes(info.classes, &classes);
    if (n_classes <= 0 && !md_cfg_is_none(md_cfg_get(cfg, "data.test.classes"))) {
        n_classes = md_classes_from_cfg(md_cfg_get(cfg, "data.test"), "classes", NULL, 0, &classes, &err);
        if (n_classes < 0) goto fail;
    }
    if (n_classes <= 0) {
        classes = NULL;
        n_classes = 0;
        md_warn(ctx, "no class names in the checkpoint or data.test.classes: labels are drawn as numbers");
    }

    const md_cfg *pipe = md_cfg_get(cfg, "data.test.pipeline");
    if (md_cfg_is_none(pipe)) {
        md_failc(&err, MD_ERR_CONFIG, "%s: the config has no data.test.pipeline", config);
        goto fail;
    }
    if (!(ds = images_new(ctx, pipe, images, n_images, &err))) goto fail;
    md_loader_cfg lc = MD_LOADER_CFG_DEFAULT;
    lc.samples_per_gpu = 1;
    lc.workers_per_gpu = 0;
    lc.shuffle = false;
    if (!(loader = md_loader_new(&ds->base, &lc, &err))) goto fail;
    if (md_single_gpu_test(ctx, model, loader, &ds->base, n_images > 1, &res, &err) != 0) goto fail;

    /* mmdet's show_result_pyplot: boxes and masks in the palette, text in (200, 200, 200) */
    int n_colors = n_classes > 0 ? n_classes : 1;
    for (int i = 0; i < n_images; i++)
        for (int j = 0; j < res.r[i].n; j++)
            if (res.r[i].labels[j] >= n_colors) n_colors = (int)res.r[i].labels[j] + 1;
    if (strcmp(palette, "random")) {
        if (!(colors = malloc(3 * (size_t)n_colors))) {
            md_failc(&err, MD_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if (md_palette_get(palette, n_colors, colors, &err) != 0) {
            md_error_wrap(&err, "--palette");
            goto fail;
        }
    }
    static const uint8_t text_gray[3] = { 200, 200, 200 };
    md_det_style style = MD_DET_STYLE(colors, n_colors);
    style.score_thr = thr;
    style.text_color = text_gray;
    if (md_fs_mkdirs(out_dir, &err) != 0) goto fail;
    for (int i = 0; i < n_images; i++) {
        char png[4096], json[4096];
        out_path(png, sizeof png, out_dir, images[i], ".png");
        out_path(json, sizeof json, out_dir, images[i], ".json");
        char *a = realpath(images[i], NULL), *b = realpath(png, NULL);
        bool same = a && b && !strcmp(a, b);
        free(a);
        free(b);
        if (same) {
            md_failc(&err, MD_ERR_IO, "%s: the drawing would overwrite the input image; choose another --out-dir",
                     images[i]);
            goto fail;
        }
        md_image *img = md_image_read_as(images[i], MD_IMAGE_RGB, &err);
        if (!img) goto fail;
        int wrc = md_draw_detections(img, &res.r[i], classes, n_classes, &style, &err);
        if (wrc != 0) md_error_wrap(&err, "drawing %s", images[i]);
        else wrc = md_image_write_png(img, png, &err);
        md_image_free(img);
        if (wrc != 0 || write_json(json, &res.r[i], classes, n_classes, thr, &err) != 0) goto fail;
        int kept = 0;
        for (int j = 0; j < res.r[i].n; j++) kept += res.r[i].bboxes[5 * j + 4] >= thr;
        printf("%s: %d detections with score >= %g -> %s, %s\n", images[i], kept, thr, png, json);
    }
    rc = 0;
fail:
    if (rc) fprintf(stderr, "mmdet-infer: error: %s\n", err.msg);
    md_results_free(&res);
    free(colors);
    md_loader_free(loader);
    if (ds) md_dataset_free(&ds->base);
    md_classes_free(classes, n_classes);
    md_module_free(model);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
    md_tool_opts_free(&to);
    free(images);
    return rc;
}
