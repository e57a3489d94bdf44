/* mmdet's tools/test.py --out: the results list mmcv.dump writes, per
 * image the detections grouped by class (bbox2result) and, for a mask
 * model, (bbox_results, segm_results) with the RLE dicts
 * encode_mask_results gives; as a pickle (.pkl, .pickle: what mmcv.load
 * reads back) or as JSON. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "formats/pickle.h"
#include "mmdet/evaluation.h"

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static bool any_masks(const md_results *res) {
    for (int64_t i = 0; i < res->n; i++)
        if (res->r[i].masks) return true;
    return false;
}

/* ---- pickle ---- */
static void pkl_image(md__pkl *p, const md_det_result *r, int n_classes, bool masks, float *rows, md_error *err,
                      int *rc) {
    if (masks) md__pkl_mark(p);   /* the (bbox_results, segm_results) tuple */
    md__pkl_mark(p);
    for (int c = 0; c < n_classes; c++) {
        int64_t k = 0;
        for (int j = 0; j < r->n; j++)
            if (r->labels[j] == c) memcpy(rows + 5 * k++, r->bboxes + 5 * j, 5 * sizeof(float));
        int64_t shape[2] = { k, 5 };
        md__pkl_ndarray_f32(p, 2, shape, rows);
    }
    md__pkl_list(p);
    if (!masks) return;
    md__pkl_mark(p);
    for (int c = 0; c < n_classes; c++) {
        md__pkl_mark(p);
        for (int j = 0; r->masks && j < r->n; j++) {
            if (r->labels[j] != c) continue;
            char *counts = md_rle_to_string(&r->masks[j]);
            if (!counts) {
                *rc = md_failc(err, MD_ERR_NOMEM, "out of memory");
                return;
            }
            md__pkl_mark(p);
            md__pkl_str(p, "size");
            md__pkl_mark(p);
            md__pkl_int(p, r->masks[j].h);
            md__pkl_int(p, r->masks[j].w);
            md__pkl_list(p);
            md__pkl_str(p, "counts");
            md__pkl_bytes(p, counts, strlen(counts));   /* bytes, as pycocotools' encode gives them */
            md__pkl_dict(p);
            free(counts);
        }
        md__pkl_list(p);
    }
    md__pkl_list(p);
    md__pkl_tuple(p);
}

static int write_pickle(const char *path, const md_results *res, int n_classes, md_error *err) {
    bool masks = any_masks(res);
    int max_n = 1;
    for (int64_t i = 0; i < res->n; i++) max_n = res->r[i].n > max_n ? res->r[i].n : max_n;
    float *rows = malloc(sizeof(float) * 5 * (size_t)max_n);
    if (!rows) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    md__pkl p;
    md__pkl_begin(&p);
    md__pkl_mark(&p);
    int rc = 0;
    for (int64_t i = 0; i < res->n && rc == 0; i++) pkl_image(&p, &res->r[i], n_classes, masks, rows, err, &rc);
    md__pkl_list(&p);
    md__pkl_end(&p);
    free(rows);
    if (rc == 0 && p.oom) rc = md_failc(err, MD_ERR_NOMEM, "out of memory writing %s", path);
    if (rc == 0) {
        FILE *f = fopen(path, "wb");
        if (!f) rc = md_failc(err, MD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        else {
            bool ok = fwrite(p.buf, 1, p.n, f) == p.n;
            if (fclose(f) != 0 || !ok) rc = md_failc(err, MD_ERR_IO, "error writing %s", path);
        }
    }
    md__pkl_free(&p);
    return rc;
}

/* ---- JSON ---- */
static int write_json(const char *path, const md_results *res, int n_classes, md_error *err) {
    bool masks = any_masks(res);
    FILE *f = fopen(path, "w");
    if (!f) return md_failc(err, MD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    int rc = 0;
    fputc('[', f);
    for (int64_t i = 0; i < res->n && rc == 0; i++) {
        const md_det_result *r = &res->r[i];
        fprintf(f, "%s%s[", i ? ",\n " : "", masks ? "[" : "");
        for (int c = 0; c < n_classes; c++) {
            fprintf(f, "%s[", c ? ", " : "");
            int k = 0;
            for (int j = 0; j < r->n; j++) {
                if (r->labels[j] != c) continue;
                const float *b = r->bboxes + 5 * j;
                fprintf(f, "%s[%.9g, %.9g, %.9g, %.9g, %.9g]", k++ ? ", " : "", b[0], b[1], b[2], b[3], b[4]);
            }
            fputc(']', f);
        }
        fputc(']', f);
        if (!masks) continue;
        fputs(", [", f);
        for (int c = 0; c < n_classes && rc == 0; c++) {
            fprintf(f, "%s[", c ? ", " : "");
            int k = 0;
            for (int j = 0; r->masks && j < r->n; j++) {
                if (r->labels[j] != c) continue;
                char *counts = md_rle_to_string(&r->masks[j]);
                if (!counts) {
                    rc = md_failc(err, MD_ERR_NOMEM, "out of memory");
                    break;
                }
                /* the counts' characters are ASCII 48-111: no JSON escapes except '\\' (92) */
                fprintf(f, "%s{\"size\": [%d, %d], \"counts\": \"", k++ ? ", " : "", r->masks[j].h, r->masks[j].w);
                for (const char *s = counts; *s; s++) {
                    if (*s == '\\') fputc('\\', f);
                    fputc(*s, f);
                }
                fputs("\"}", f);
                free(counts);
            }
            fputc(']', f);
        }
        fputs("]]", f);
    }
    fputs("]\n", f);
    if (fclose(f) != 0 && rc == 0) rc = md_failc(err, MD_ERR_IO, "error writing %s", path);
    return rc;
}

MD_API int md_results_dump(const md_results *res, int n_classes, const char *path, md_error *err) {
    if (ends_with(path, ".pkl") || ends_with(path, ".pickle")) return write_pickle(path, res, n_classes, err);
    if (ends_with(path, ".json")) return write_json(path, res, n_classes, err);
    return md_failc(err, MD_ERR_CONFIG, "%s: the results file must be a .pkl, .pickle or .json file", path);
}
