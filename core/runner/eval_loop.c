/* mmdet's single_gpu_test and mmcv's ProgressBar. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include "internal.h"
#include "mmdet/evaluation.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int terminal_width(FILE *f) {
    struct winsize ws;
    if (f && ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return 80;   /* shutil.get_terminal_size's fallback */
}

MD_API void md_progress_start(md_progress *p, FILE *f, int64_t total) {
    p->f = f;
    p->total = total;
    p->done = 0;
    p->t0 = now();
    int w = terminal_width(f);
    p->bar_width = 50;
    if (p->bar_width > (int)(w * 0.6)) p->bar_width = (int)(w * 0.6);
    if (p->bar_width < 2) p->bar_width = 2;
    p->tty = f && isatty(fileno(f));
    p->printed = 0;
    p->printed_t = p->t0;
    if (!f || !p->tty) return;
    if (total > 0) fprintf(f, "[%*s] 0/%lld, elapsed: 0s, ETA:", p->bar_width, "", (long long)total);
    else fprintf(f, "completed: 0, elapsed: 0s");
    fflush(f);
}

MD_API const char *md_progress_format(const md_progress *p, double elapsed, int width, char *buf, size_t n) {
    double fps = elapsed > 0 ? (double)p->done / elapsed : INFINITY;
    if (p->total <= 0) {
        snprintf(buf, n, "completed: %lld, elapsed: %ds, %.1f tasks/s", (long long)p->done, (int)(elapsed + 0.5), fps);
        return buf;
    }
    double pct = (double)p->done / (double)p->total;
    int eta = pct > 0 ? (int)(elapsed * (1 - pct) / pct + 0.5) : 0;
    char msg[256];
    int len = snprintf(msg, sizeof msg, "%lld/%lld, %.1f task/s, elapsed: %ds, ETA: %5ds", (long long)p->done,
                       (long long)p->total, fps, (int)(elapsed + 0.5), eta);
    /* mmcv: min(bar_width, terminal - len(msg) + 2, terminal * 0.6), at least 2;
     * its msg also counts "[] " around the bar */
    int bw = p->bar_width;
    if (bw > width - (len + 3) + 2) bw = width - (len + 3) + 2;
    if (bw > (int)(width * 0.6)) bw = (int)(width * 0.6);
    if (bw < 2) bw = 2;
    int marks = (int)(bw * pct);
    if (marks > bw) marks = bw;
    char bar[256];
    if (bw > (int)sizeof bar - 1) bw = (int)sizeof bar - 1;
    for (int i = 0; i < bw; i++) bar[i] = i < marks ? '>' : ' ';
    bar[bw] = 0;
    snprintf(buf, n, "[%s] %s", bar, msg);
    return buf;
}

/* Whether a non-terminal stream gets a line now: a new tenth, the end, or
 * 30 s since the last line. */
static bool line_due(const md_progress *p, double t) {
    if (p->total > 0 && (p->done >= p->total || p->done * 10 / p->total > p->printed * 10 / p->total)) return true;
    return t - p->printed_t >= 30;
}

MD_API void md_progress_update(md_progress *p, int64_t n) {
    p->done += n;
    if (!p->f) return;
    char line[512];
    double t = now();
    if (p->tty) {
        fprintf(p->f, "\r%s", md_progress_format(p, t - p->t0, terminal_width(p->f), line, sizeof line));
    } else if (line_due(p, t)) {
        fprintf(p->f, "%s\n", md_progress_format(p, t - p->t0, 80, line, sizeof line));
        p->printed = p->done;
        p->printed_t = t;
    }
    fflush(p->f);
}

MD_API void md_progress_finish(md_progress *p) {
    if (!p->f) return;
    if (p->tty) {
        fputc('\n', p->f);
    } else if (p->printed != p->done || p->done == 0) {
        char line[512];
        fprintf(p->f, "%s\n", md_progress_format(p, now() - p->t0, 80, line, sizeof line));
    }
    fflush(p->f);
}

MD_API void md_results_free(md_results *res) {
    if (!res) return;
    for (int64_t i = 0; res->r && i < res->n; i++) {
        free((void *)res->r[i].bboxes);
        free((void *)res->r[i].labels);
        md_rle *m = (md_rle *)res->r[i].masks;
        for (int j = 0; m && j < res->r[i].n; j++) md_rle_free(&m[j]);
        free(m);
    }
    free(res->r);
    free(res->metas);
    memset(res, 0, sizeof *res);
}

MD_API const md_model_iface *md_model_test_iface(const md_module *model) {
    const md_model_iface *it = model && model->cls ? (const md_model_iface *)model->cls->iface : NULL;
    return it && it->simple_test ? it : NULL;
}

/* The test loop; `shard`: the loader yields this rank's part of ds only
 * (then *seen_out gets which indices it had). */
static int test_loop(md_ctx *ctx, md_module *model, md_loader *loader, const md_dataset *ds, bool progress, bool shard,
                     md_results *out, bool **seen_out, md_error *err) {
    memset(out, 0, sizeof *out);
    const md_model_iface *it = md_model_test_iface(model);
    if (!it) return md_fail(err, "model %s has no simple_test", model && model->cls ? model->cls->name : "?");
    int64_t n = md_dataset_len(ds);
    out->n = n;
    out->r = calloc((size_t)n + 1, sizeof *out->r);
    out->metas = calloc((size_t)n + 1, sizeof *out->metas);
    bool *seen = calloc((size_t)n + 1, 1);
    if (!out->r || !out->metas || !seen) {
        free(seen);
        md_results_free(out);
        return md_failc(err, MD_ERR_NOMEM, "out of memory for %lld results", (long long)n);
    }
    bool was_training = model->training;
    md_module_train(model, false);
    bool prev_grad = md_grad_set_enabled(ctx, false);
    size_t mark = md_ctx_arena_mark(ctx);
    md_progress bar;
    md_progress_start(&bar, progress ? stderr : NULL, shard ? md_loader_len(loader) : n);
    int rc = md_loader_start_epoch(loader, 0, err);
    md_det_result *res = NULL;
    int cap = 0;
    for (int64_t b = 0; rc == 0; b++) {
        md_error_clear(err);
        md_batch *batch = md_loader_next(loader, err);
        if (!batch) {
            if (err && err->code) rc = md_error_wrap(err, "test batch %lld", (long long)b);
            break;
        }
        if (batch->n > cap) {
            md_det_result *nr = realloc(res, sizeof *nr * (size_t)batch->n);
            if (!nr) {
                md_batch_free(batch);
                rc = md_failc(err, MD_ERR_NOMEM, "out of memory");
                break;
            }
            res = nr;
            cap = batch->n;
        }
        memset(res, 0, sizeof *res * (size_t)batch->n);
        md_error_clear(err);
        /* mmdet's BaseDetector.forward_test: one variant -> simple_test,
         * several (MultiScaleFlipAug) -> aug_test. */
        bool aug = md_batch_n_augs(batch) > 1;
        const char *what = aug ? "aug_test" : "simple_test";
        if (aug && !it->aug_test) {
            rc = md_failc(err, MD_ERR_CONFIG,
                          "model %s has no aug_test: test batch %lld (%s) has %d MultiScaleFlipAug variants; "
                          "use one img_scale and flip = false", model->cls->name, (long long)b,
                          batch->n ? batch->metas[0].filename : "", batch->n_augs);
        } else if ((aug ? it->aug_test : it->simple_test)(ctx, model, batch, res, err) != 0) {
            if (err && !err->code) *err = md_ctx_failed(ctx) ? *md_ctx_error(ctx) : (md_error){ 1, "failed" };
            rc = md_error_wrap(err, "%s on test batch %lld (%s)", what, (long long)b,
                               batch->n ? batch->metas[0].filename : "");
        }
        for (int i = 0; rc == 0 && i < batch->n; i++) {
            int64_t idx = batch->indices[i];
            if (idx < 0 || idx >= n || seen[idx]) {
                rc = md_fail(err, "test loader yielded index %lld twice or out of 0..%lld", (long long)idx,
                             (long long)n - 1);
                break;
            }
            seen[idx] = true;
            out->metas[idx] = batch->metas[i];
            int k = res[i].n > 0 ? res[i].n : 0;
            float *bx = malloc(sizeof *bx * (size_t)(5 * k + 1));
            int64_t *lb = malloc(sizeof *lb * (size_t)(k + 1));
            if (!bx || !lb) {
                free(bx);
                free(lb);
                rc = md_failc(err, MD_ERR_NOMEM, "out of memory");
                break;
            }
            if (k) {
                memcpy(bx, res[i].bboxes, sizeof *bx * (size_t)(5 * k));
                memcpy(lb, res[i].labels, sizeof *lb * (size_t)k);
            }
            out->r[idx] = (md_det_result){ k, bx, lb, NULL };
            if (res[i].masks) {   /* a mask head's RLEs, copied out of the model's memory */
                md_rle *m = calloc((size_t)(k + 1), sizeof *m);
                if (!m) {
                    rc = md_failc(err, MD_ERR_NOMEM, "out of memory");
                    break;
                }
                out->r[idx].masks = m;
                for (int j = 0; j < k && rc == 0; j++) rc = md_rle_copy(&m[j], &res[i].masks[j], err);
                if (rc) break;
            }
        }
        int bn = batch->n;
        md_batch_free(batch);
        md_ctx_arena_release(ctx, mark);
        if (rc == 0) md_progress_update(&bar, shard ? 1 : bn);
    }
    md_progress_finish(&bar);
    for (int64_t i = 0; rc == 0 && !shard && i < n; i++)
        if (!seen[i]) rc = md_fail(err, "the test loader did not yield dataset index %lld", (long long)i);
    free(res);
    if (seen_out && rc == 0) *seen_out = seen;
    else free(seen);
    md_grad_set_enabled(ctx, prev_grad);
    md_module_train(model, was_training);
    if (rc != 0) md_results_free(out);
    return rc;
}

MD_API int md_single_gpu_test(md_ctx *ctx, md_module *model, md_loader *loader, const md_dataset *ds, bool progress,
                              md_results *out, md_error *err) {
    return test_loop(ctx, model, loader, ds, progress, false, out, NULL, err);
}

/* ---- multi_gpu_test: each rank's shard, gathered (collect_results) ----
 * One record per image a rank tested: index, box count, boxes, labels, and
 * the RLEs when the model gives masks (h, w, count, counts). */

typedef struct buf { char *p; size_t n, cap; } buf;

static int put(buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

static int pack(const md_results *res, const bool *seen, buf *b) {
    for (int64_t i = 0; i < res->n; i++) {
        if (!seen[i]) continue;
        const md_det_result *r = &res->r[i];
        int32_t k = r->n, has_masks = r->masks != NULL;
        if (put(b, &i, sizeof i) || put(b, &k, sizeof k) || put(b, &has_masks, sizeof has_masks) ||
            put(b, r->bboxes, sizeof(float) * 5 * (size_t)k) || put(b, r->labels, sizeof(int64_t) * (size_t)k))
            return -1;
        for (int j = 0; has_masks && j < k; j++) {
            const md_rle *m = &r->masks[j];
            int32_t hw[2] = { m->h, m->w };
            if (put(b, hw, sizeof hw) || put(b, &m->m, sizeof m->m) ||
                put(b, m->counts, sizeof *m->counts * (size_t)m->m))
                return -1;
        }
    }
    return 0;
}

/* Reads from *p (at most end); false when the data run short. */
static bool take(const char **p, const char *end, void *dst, size_t n) {
    if ((size_t)(end - *p) < n) return false;
    memcpy(dst, *p, n);
    *p += n;
    return true;
}

/* The first result for an index wins: the samplers' padding repeats some. */
static int unpack(md_results *out, const char *p, const char *end, md_error *err) {
    while (p < end) {
        int64_t idx;
        int32_t k, has_masks;
        if (!take(&p, end, &idx, sizeof idx) || !take(&p, end, &k, sizeof k) ||
            !take(&p, end, &has_masks, sizeof has_masks) || idx < 0 || idx >= out->n || k < 0)
            return md_failc(err, MD_ERR_DIST, "collect_results: a rank sent a malformed result");
        bool keep = out->r[idx].bboxes == NULL;
        float *bx = malloc(sizeof *bx * (size_t)(5 * k + 1));
        int64_t *lb = malloc(sizeof *lb * (size_t)(k + 1));
        md_rle *m = has_masks ? calloc((size_t)k + 1, sizeof *m) : NULL;
        bool ok = bx && lb && (!has_masks || m) && take(&p, end, bx, sizeof *bx * 5 * (size_t)k) &&
                  take(&p, end, lb, sizeof *lb * (size_t)k);
        for (int j = 0; ok && has_masks && j < k; j++) {
            int32_t hw[2];
            ok = take(&p, end, hw, sizeof hw) && take(&p, end, &m[j].m, sizeof m[j].m) && m[j].m >= 0 &&
                 (m[j].counts = malloc(sizeof *m[j].counts * (size_t)(m[j].m + 1))) &&
                 take(&p, end, m[j].counts, sizeof *m[j].counts * (size_t)m[j].m);
            m[j].h = hw[0];
            m[j].w = hw[1];
        }
        if (ok && keep) {
            out->r[idx] = (md_det_result){ k, bx, lb, m };
            continue;
        }
        for (int j = 0; m && j < k; j++) md_rle_free(&m[j]);
        free(m);
        free(bx);
        free(lb);
        if (!ok) return md_failc(err, MD_ERR_DIST, "collect_results: a rank sent a malformed result (or out of memory)");
    }
    return 0;
}

MD_API int md_multi_gpu_test(md_ctx *ctx, md_module *model, md_loader *loader, const md_dataset *ds, bool progress,
                             md_results *out, md_error *err) {
    if (md_dist_world_size(ctx) == 1) return md_single_gpu_test(ctx, model, loader, ds, progress, out, err);
    md_results mine;
    bool *seen = NULL;
    /* every rank goes on to the gather, so that a failing one is named by
     * itself instead of leaving the others waiting */
    int rc = test_loop(ctx, model, loader, ds, progress && md_dist_rank(ctx) == 0, true, &mine, &seen, err);
    buf b = { 0 };
    int32_t failed = rc != 0;
    if (!failed && pack(&mine, seen, &b) != 0) failed = md_failc(err, MD_ERR_NOMEM, "out of memory packing results") != 0;
    if (seen) md_results_free(&mine);   /* (a failed loop freed it) */
    free(seen);
    /* a leading flag says whether this rank's part is there */
    buf msg = { 0 };
    if (put(&msg, &failed, sizeof failed) || (b.n && put(&msg, b.p, b.n))) {
        free(b.p);
        free(msg.p);
        return md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    free(b.p);
    void *all = NULL;
    size_t *sizes = NULL;
    md_error gerr = { 0 };
    int grc = md_dist_all_gather_bytes(ctx, msg.p, msg.n, &all, &sizes, &gerr);
    free(msg.p);
    if (failed) {
        free(all);
        free(sizes);
        return -1;
    }
    if (grc != 0) {
        *err = gerr;
        return -1;
    }
    memset(out, 0, sizeof *out);
    out->n = md_dataset_len(ds);
    out->r = calloc((size_t)out->n + 1, sizeof *out->r);
    out->metas = calloc((size_t)out->n + 1, sizeof *out->metas);
    if (!out->r || !out->metas) rc = md_failc(err, MD_ERR_NOMEM, "out of memory");
    const char *p = all;
    for (int r = 0; rc == 0 && r < md_dist_world_size(ctx); r++) {
        int32_t peer_failed = 1;
        if (sizes[r] >= sizeof peer_failed) memcpy(&peer_failed, p, sizeof peer_failed);
        if (peer_failed) rc = md_failc(err, MD_ERR_DIST, "rank %d failed its part of the evaluation", r);
        else rc = unpack(out, p + sizeof peer_failed, p + sizes[r], err);
        p += sizes[r];
    }
    for (int64_t i = 0; rc == 0 && i < out->n; i++)
        if (!out->r[i].bboxes) rc = md_fail(err, "collect_results: no rank tested dataset index %lld", (long long)i);
    free(all);
    free(sizes);
    if (rc != 0) md_results_free(out);
    return rc;
}
