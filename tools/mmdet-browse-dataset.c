/* mmdet-browse-dataset: writes the training pipeline's outputs with their
 * boxes drawn, as mmdet's tools/misc/browse_dataset.py does: data.train is
 * unwrapped down to the dataset that owns the pipeline (stopping at a
 * MultiImageMixDataset), the --skip-type transforms (default
 * DefaultFormatBundle, Normalize, Collect) are removed from that pipeline,
 * and each sample goes to OUT/<image name>.png with its GT boxes, class
 * names and masks drawn as mmdet does, and ignored boxes in gray. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <mmdet/mmdet.h>
#include <mmdet/data.h>
#include <mmdet/draw.h>
#include <mmdet/evaluation.h>
#include <mmdet/masks.h>

#define MAX_SKIP 32

static void usage(FILE *f) {
    fputs("usage: mmdet-browse-dataset CONFIG --out DIR [--plugin-dir DIR]... [--cfg-options K=V ...]\n"
          "                            [--skip-type T ...] [--max N] [--not-show]\n"
          "  --out DIR                 where the PNGs go (created)\n"
          "  --skip-type T ...         pipeline types removed (default DefaultFormatBundle\n"
          "                            Normalize Collect)\n"
          "  --max N                   stop after N samples (default: the whole dataset)\n"
          "  --not-show                accepted for mmdet's command line; nothing is shown\n",
          f);
    fputs(md_tool_opts_usage(), f);
}

/* mmdet's browse_dataset: imshow_det_bboxes with the GT boxes, labels and
 * masks, boxes and masks in the dataset's PALETTE, names in (200, 200, 200),
 * font size 8; ignored boxes (which mmdet leaves out) as thin gray outlines
 * under them. */
static int draw_sample(md_image *img, const md_sample *s, const md_dataset *ds, md_error *err) {
    md_canvas *cv = md_canvas_on_image(img, err);
    if (!cv) return -1;
    for (int k = 0; k < s->gt_bboxes_ignore.n; k++) {
        const float *b = s->gt_bboxes_ignore.xyxy + 4 * k;
        md_draw_rect(cv, (int)b[0] + 0.5, (int)b[1] + 0.5, (int)b[2] + 0.5, (int)b[3] + 0.5, MD_RGB(128, 128, 128), 1);
    }
    if (md_canvas_finish(cv, err)) return -1;
    int n = s->gt_bboxes.n, rc = 0;
    float *bb = malloc(5 * sizeof *bb * (size_t)(n ? n : 1));
    int64_t *labels = calloc((size_t)(n ? n : 1), sizeof *labels);
    md_rle *masks = NULL;
    uint8_t *bitmap = NULL;
    if (!bb || !labels) {
        rc = md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int k = 0; k < n; k++) {
        memcpy(bb + 5 * k, s->gt_bboxes.xyxy + 4 * k, 4 * sizeof *bb);
        bb[5 * k + 4] = 1;
        labels[k] = s->gt_bboxes.labels ? s->gt_bboxes.labels[k] : 0;
    }
    if (s->gt_masks.n == n && n > 0 && s->gt_masks.h == s->h && s->gt_masks.w == s->w) {
        masks = calloc((size_t)n, sizeof *masks);
        bitmap = malloc((size_t)s->h * (size_t)s->w);
        if (!masks || !bitmap) {
            rc = md_failc(err, MD_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (int k = 0; k < n && rc == 0; k++)
            if ((rc = md_masks_bitmap(&s->gt_masks, k, bitmap, err)) == 0)
                rc = md_rle_encode(bitmap, s->h, s->w, &masks[k], err);
    }
    static const uint8_t gray[3] = { 200, 200, 200 };
    md_det_style st = MD_DET_STYLE(ds->palette, ds->n_palette);
    st.text_color = gray;
    st.score_thr = 0;
    st.font_size = 8;
    st.with_scores = false;
    md_det_result det = { .n = n, .bboxes = bb, .labels = labels, .masks = masks };
    if (rc == 0) rc = md_draw_detections(img, &det, ds->classes, ds->n_classes, &st, err);
done:
    for (int k = 0; masks && k < n; k++) md_rle_free(&masks[k]);
    free(masks);
    free(bitmap);
    free(bb);
    free(labels);
    return rc;
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
    const char *config = NULL, *out = NULL, *skip[MAX_SKIP];
    int n_skip = 0;
    md_tool_opts to;
    md_error terr = { 0 };
    if (md_tool_opts_init(&to, argc, &terr) != 0) {
        fprintf(stderr, "mmdet-browse-dataset: %s\n", terr.msg);
        return 1;
    }
    long max = -1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int shared = md_tool_opts_parse(&to, argc, argv, &i, &terr);
        if (shared < 0) {
            fprintf(stderr, "mmdet-browse-dataset: %s\n", terr.msg);
            goto bad;
        }
        if (shared) continue;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(s, "--out") || !strcmp(s, "--output-dir")) {
            if (++i >= argc) goto bad;
            out = argv[i];
        } else if (!strcmp(s, "--max")) {
            if (++i >= argc) goto bad;
            max = strtol(argv[i], NULL, 10);
        } else if (!strcmp(s, "--not-show")) {
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
    if (!(cfg = md_tool_setup(ctx, config, &to, &err))) goto fail;
    if (strip_pipeline(cfg, skip, n_skip, &err)) goto fail;
    if (!(ds = md_build_dataset(ctx, md_cfg_get(cfg, "data.train"), NULL, &err))) {
        md_error_wrap(&err, "data.train");
        goto fail;
    }
    if (md_fs_mkdirs(out, &err)) goto fail;
    int64_t n = md_dataset_len(ds);
    if (max >= 0 && max < n) n = max;
    md_progress bar;   /* mmdet's browse_dataset has mmcv's ProgressBar */
    md_progress_start(&bar, stderr, n);
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
        if (draw_sample(img, &s, ds, &err) != 0) {
            md_error_wrap(&err, "sample %lld", (long long)i);
            md_image_free(img);
            md_sample_clear(&s);
            goto fail;
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
        md_progress_update(&bar, 1);
    }
    md_progress_finish(&bar);
    rc = 0;
fail:
    if (rc) fprintf(stderr, "mmdet-browse-dataset: %s\n", err.msg);
    md_dataset_free(ds);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
    md_tool_opts_free(&to);
    return rc;
bad:
    usage(stderr);
    md_tool_opts_free(&to);
    return 2;
}
