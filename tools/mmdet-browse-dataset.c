/* mmdet-browse-dataset: writes the training pipeline's outputs with their
 * boxes drawn, as mmdet's tools/misc/browse_dataset.py does: data.train is
 * unwrapped down to the dataset that owns the pipeline (stopping at a
 * MultiImageMixDataset), the --skip-type transforms (default
 * DefaultFormatBundle, Normalize, Collect) are removed from that pipeline,
 * and each sample goes to OUT/<image name>.png with GT boxes in class
 * colors and ignored boxes in gray. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <mmdet/mmdet.h>
#include <mmdet/data.h>

#define MAX_DIRS 32
#define MAX_OPTS 256
#define MAX_SKIP 32

static void usage(FILE *f) {
    fputs("usage: mmdet-browse-dataset CONFIG --out DIR [--plugin-dir DIR]... [--cfg-options K=V ...]\n"
          "                            [--skip-type T ...] [--max N] [--not-show]\n"
          "  --out DIR             where the PNGs go (created)\n"
          "  --plugin-dir DIR      load every plugin under DIR (repeatable), after the install\n"
          "                        prefix's plugins and the config's plugin_dirs\n"
          "  --no-default-plugins  leave the install prefix's plugin directory out\n"
          "  --skip-bad-plugins    warn about a file that is no usable plugin, load the rest\n"
          "  --cfg-options K=V     override settings, as mmdet-run\n"
          "  --skip-type T ...     pipeline types removed (default DefaultFormatBundle Normalize Collect)\n"
          "  --max N               stop after N samples (default: the whole dataset)\n"
          "  --not-show            accepted for mmdet's command line; nothing is shown on screen\n", f);
}

static const uint8_t palette[][3] = { { 220, 20, 60 }, { 0, 130, 200 }, { 60, 180, 75 }, { 255, 225, 25 },
                                      { 145, 30, 180 }, { 245, 130, 48 }, { 70, 240, 240 }, { 240, 50, 230 },
                                      { 210, 245, 60 }, { 0, 128, 128 } };

/* A 2-pixel rectangle outline, clipped to the image (RGB, HWC). */
static void draw_rect(uint8_t *img, int w, int h, const float *b, const uint8_t *rgb) {
    int x1 = (int)b[0], y1 = (int)b[1], x2 = (int)b[2], y2 = (int)b[3];
    for (int t = 0; t < 2; t++)
        for (int y = y1 - t; y <= y2 + t; y++)
            for (int x = x1 - t; x <= x2 + t; x++) {
                bool edge = y == y1 - t || y == y2 + t || x == x1 - t || x == x2 + t;
                if (!edge || x < 0 || y < 0 || x >= w || y >= h) continue;
                memcpy(img + 3 * ((size_t)y * w + x), rgb, 3);
            }
}

/* Removes the skipped types from the pipeline of the dataset that owns it. */
static int strip_pipeline(md_cfg *root, const char *const *skip, int n_skip, md_error *err) {
    md_cfg *ds = md_cfg_get_mut(root, "data.train");
    if (!ds || md_cfg_kind(ds) != MD_CFG_GROUP) return md_failc(err, MD_ERR_CONFIG, "the config has no data.train group");
    for (;;) {
        const char *type = md_cfg_str(ds, "type", "");
        md_cfg *inner = md_cfg_get_mut(ds, "dataset");
        if (!inner || !strcmp(type, "MultiImageMixDataset")) break;
        ds = inner;
    }
    const md_cfg *pl = md_cfg_get(ds, "pipeline");
    if (!pl || md_cfg_kind(pl) != MD_CFG_LIST) return 0;
    md_cfg *old = md_cfg_clone(pl);
    md_cfg *neu = md_cfg_set_list(ds, "pipeline");
    if (!old || !neu) {
        md_cfg_free(old);
        return md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < md_cfg_len(old); i++) {
        const md_cfg *t = md_cfg_at(old, i);
        const char *type = md_cfg_str(t, "type", "");
        bool drop = false;
        for (int k = 0; k < n_skip; k++) drop |= !strcmp(type, skip[k]);
        if (!drop) md_cfg_append_copy(neu, t);
    }
    md_cfg_free(old);
    return 0;
}

int main(int argc, char **argv) {
    md_process_init(argc, argv);
    const char *config = NULL, *out = NULL, *dirs[MAX_DIRS], *opts[MAX_OPTS], *skip[MAX_SKIP];
    int n_dirs = 0, n_opts = 0, n_skip = 0;
    bool no_default_plugins = false, skip_bad_plugins = false;
    long max = -1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(s, "--out") || !strcmp(s, "--output-dir")) {
            if (++i >= argc) goto bad;
            out = argv[i];
        } else if (!strcmp(s, "--plugin-dir")) {
            if (++i >= argc || n_dirs == MAX_DIRS) goto bad;
            dirs[n_dirs++] = argv[i];
        } else if (!strcmp(s, "--max")) {
            if (++i >= argc) goto bad;
            max = strtol(argv[i], NULL, 10);
        } else if (!strcmp(s, "--no-default-plugins")) {
            no_default_plugins = true;
        } else if (!strcmp(s, "--skip-bad-plugins")) {
            skip_bad_plugins = true;
        } else if (!strcmp(s, "--not-show")) {
        } else if (!strcmp(s, "--cfg-options")) {
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) && n_opts < MAX_OPTS)
                opts[n_opts++] = argv[++i];
        } else if (!strcmp(s, "--skip-type")) {
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) && n_skip < MAX_SKIP) skip[n_skip++] = argv[++i];
        } else if (s[0] == '-') {
            fprintf(stderr, "mmdet-browse-dataset: unknown option '%s'\n", s);
            goto bad;
        } else if (!config) {
            config = s;
        } else {
            goto bad;
        }
    }
    if (!config || !out) goto bad;
    if (!n_skip) skip[0] = "DefaultFormatBundle", skip[1] = "Normalize", skip[2] = "Collect", n_skip = 3;
    md_error err = { 0 };
    md_ctx *ctx = md_ctx_new(&err);
    md_cfg *cfg = NULL;
    md_dataset *ds = NULL;
    int rc = 1;
    if (!ctx) goto fail;
    if (!(cfg = md_cfg_load(config, &err))) goto fail;
    if (n_opts && md_cfg_apply_options(cfg, opts, n_opts, &err)) goto fail;
    md_plugin_set_opts po = { (const char *const *)dirs, n_dirs, no_default_plugins, skip_bad_plugins };
    if (md_plugin_set_load(ctx, cfg, &po, &err)) goto fail;
    if (strip_pipeline(cfg, skip, n_skip, &err)) goto fail;
    if (!(ds = md_build_dataset(ctx, md_cfg_get(cfg, "data.train"), NULL, &err))) {
        md_error_wrap(&err, "data.train");
        goto fail;
    }
    if (md_fs_mkdirs(out, &err)) goto fail;
    int64_t n = md_dataset_len(ds);
    if (max >= 0 && max < n) n = max;
    for (int64_t i = 0; i < n; i++) {
        md_sample s;
        md_rng r;
        md_sample_rng(&r, 0, 0, i);
        if (md_dataset_get(ds, i, &r, &s, &err)) {
            md_error_wrap(&err, "sample %lld", (long long)i);
            goto fail;
        }
        if (!s.img_u8 || s.c != 3) {
            md_failc(&err, MD_ERR_GENERIC, "sample %lld: the pipeline must end with a u8 3-channel image "
                     "(skip Normalize and the formatting steps)", (long long)i);
            md_sample_clear(&s);
            goto fail;
        }
        md_image *img = md_image_new(s.h, s.w, 3, &err);
        if (!img) {
            md_sample_clear(&s);
            goto fail;
        }
        for (size_t p = 0; p < (size_t)s.h * s.w; p++)   /* BGR (mmcv's order) to RGB */
            for (int k = 0; k < 3; k++) img->data[3 * p + k] = s.img_u8[3 * p + 2 - k];
        for (int k = 0; k < s.gt_bboxes_ignore.n; k++)
            draw_rect(img->data, s.w, s.h, s.gt_bboxes_ignore.xyxy + 4 * k, (const uint8_t[]){ 128, 128, 128 });
        for (int k = 0; k < s.gt_bboxes.n; k++) {
            int64_t l = s.gt_bboxes.labels ? s.gt_bboxes.labels[k] : 0;
            draw_rect(img->data, s.w, s.h, s.gt_bboxes.xyxy + 4 * k, palette[(l < 0 ? 0 : l) % 10]);
        }
        const char *name = s.meta.ori_filename[0] ? s.meta.ori_filename : "sample";
        const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
        char path[4096];
        snprintf(path, sizeof path, "%s/%06lld_%.*s.png", out, (long long)i, (int)strcspn(base, "."), base);
        int wr = md_image_write_png(img, path, &err);
        md_image_free(img);
        printf("%s: %d boxes, %d ignored, %dx%d\n", path, s.gt_bboxes.n, s.gt_bboxes_ignore.n, s.w, s.h);
        md_sample_clear(&s);
        if (wr) goto fail;
    }
    rc = 0;
fail:
    if (rc) fprintf(stderr, "mmdet-browse-dataset: %s\n", err.msg);
    md_dataset_free(ds);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
    return rc;
bad:
    usage(stderr);
    return 2;
}
