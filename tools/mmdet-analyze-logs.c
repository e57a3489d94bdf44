/* mmdet-analyze-logs: mmdet's tools/analysis_tools/analyze_logs.py for the
 * JSON logs the TextLoggerHook writes (<timestamp>.log.json, one object per
 * line; lines without "epoch", such as the first env line, are skipped).
 *
 *   plot_curve LOG.json [LOG2.json ...] --keys loss [bbox_mAP ...]
 *              [--legend L ...] [--title T] --out curve.png
 *   cal_train_time LOG.json [...] [--include-outliers]
 *
 * plot_curve: a key logged on training lines is drawn against the iteration
 * counted across epochs (iter + (epoch - 1) x iterations of the first
 * epoch); a key found only on val lines (the metrics) against the epoch,
 * with a marker at each point. All curves share one pair of axes, as in
 * mmdet, drawn with cairo (mmdet/draw.h) as matplotlib lays a figure out:
 * axes with ticks and tick labels, the x label `iter` or `epoch` (the last
 * key's, as mmdet sets it per key), the title, and a legend inside the
 * axes where it covers the fewest points. Legend labels: --legend if
 * given, else the key for one log ("loss_cls"), else a short name of the
 * log (its file name without .log.json, with parent folders only as far as
 * needed to tell the logs apart) and the key. --out's extension picks
 * PNG (640 x 480 pixels), PDF or SVG.
 *
 * cal_train_time: per epoch the mean of the training lines' "time" (the
 * first of each epoch left out unless --include-outliers), then mmdet's
 * slowest/fastest epoch, std over epochs (population) and average iter time
 * (the mean of every kept value). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>
#include <mmdet/mmdet.h>
#include <mmdet/draw.h>

/* ---- the log ---- */

typedef struct kv { char *key; double v; } kv;   /* v is NaN for NaN, Infinity, null */
typedef enum { MODE_OTHER = 0, MODE_TRAIN, MODE_VAL } line_mode;
typedef struct rec { int64_t epoch, iter; line_mode mode; kv *kv; int n; } rec;
typedef struct jlog { const char *path; rec *r; int n, cap; } jlog;

static void log_free(jlog *l) {
    for (int i = 0; i < l->n; i++) {
        for (int k = 0; k < l->r[i].n; k++) free(l->r[i].kv[k].key);
        free(l->r[i].kv);
    }
    free(l->r);
}

/* Python's json writes NaN, Infinity and -Infinity, which yajl refuses:
 * outside strings they become null. */
static char *sanitize(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(2 * n + 1), *o = out;   /* "NaN" -> "null" grows */
    if (!out) return NULL;
    bool in = false;
    for (const char *p = s; *p;) {
        if (in) {
            if (*p == '\\' && p[1]) {
                *o++ = *p++;
            } else if (*p == '"') in = false;
            *o++ = *p++;
            continue;
        }
        if (*p == '"') in = true;
        const char *tok[3] = { "-Infinity", "Infinity", "NaN" };
        bool hit = false;
        for (int t = 0; t < 3 && !hit; t++) {
            size_t k = strlen(tok[t]);
            if (!strncmp(p, tok[t], k)) {
                memcpy(o, "null", 4);
                o += 4;
                p += k;
                hit = true;
            }
        }
        if (!hit) *o++ = *p++;
    }
    *o = 0;
    return out;
}

static int log_load(jlog *l, const char *path) {
    memset(l, 0, sizeof *l);
    l->path = path;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "mmdet-analyze-logs: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL, ebuf[512];
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        bool blank = true;
        for (ssize_t i = 0; i < len; i++)
            if (!isspace((unsigned char)line[i])) blank = false;
        if (blank) continue;
        char *s = sanitize(line);
        if (!s) {
            fprintf(stderr, "mmdet-analyze-logs: out of memory\n");
            rc = -1;
            break;
        }
        ebuf[0] = 0;
        yajl_val v = yajl_tree_parse(s, ebuf, sizeof ebuf);
        free(s);
        if (!v || !YAJL_IS_OBJECT(v)) {
            char *nl = strchr(ebuf, '\n');
            if (nl) *nl = 0;
            fprintf(stderr, "mmdet-analyze-logs: %s:%d: not a JSON object%s%s\n", path, lineno, ebuf[0] ? ": " : "",
                    ebuf);
            yajl_tree_free(v);
            rc = -1;
            break;
        }
        const char *ep[] = { "epoch", NULL }, *it[] = { "iter", NULL }, *mo[] = { "mode", NULL };
        yajl_val e = yajl_tree_get(v, ep, yajl_t_number);
        if (!e) {   /* mmdet skips lines without an epoch */
            yajl_tree_free(v);
            continue;
        }
        if (l->n == l->cap) {
            int nc = l->cap ? 2 * l->cap : 64;
            rec *nr = realloc(l->r, (size_t)nc * sizeof *nr);
            if (!nr) {
                yajl_tree_free(v);
                fprintf(stderr, "mmdet-analyze-logs: out of memory\n");
                rc = -1;
                break;
            }
            l->r = nr;
            l->cap = nc;
        }
        rec *r = &l->r[l->n++];
        memset(r, 0, sizeof *r);
        r->epoch = (int64_t)YAJL_GET_DOUBLE(e);
        yajl_val iv = yajl_tree_get(v, it, yajl_t_number);
        r->iter = iv ? (int64_t)YAJL_GET_DOUBLE(iv) : 0;
        yajl_val mv = yajl_tree_get(v, mo, yajl_t_string);
        const char *mode = mv ? YAJL_GET_STRING(mv) : "";
        r->mode = !strcmp(mode, "train") ? MODE_TRAIN : !strcmp(mode, "val") ? MODE_VAL : MODE_OTHER;
        size_t nk = v->u.object.len;
        r->kv = calloc(nk ? nk : 1, sizeof *r->kv);
        for (size_t k = 0; r->kv && k < nk; k++) {
            const char *key = v->u.object.keys[k];
            yajl_val x = v->u.object.values[k];
            if (!strcmp(key, "epoch") || !strcmp(key, "iter") || !strcmp(key, "mode")) continue;
            if (!YAJL_IS_NUMBER(x) && !YAJL_IS_NULL(x)) continue;
            r->kv[r->n].key = strdup(key);
            r->kv[r->n++].v = YAJL_IS_NUMBER(x) ? YAJL_GET_DOUBLE(x) : NAN;
        }
        yajl_tree_free(v);
        if (!r->kv) {
            fprintf(stderr, "mmdet-analyze-logs: out of memory\n");
            rc = -1;
        }
    }
    free(line);
    fclose(f);
    if (rc == 0 && l->n == 0) {
        fprintf(stderr, "mmdet-analyze-logs: %s has no log lines with an \"epoch\"\n", path);
        rc = -1;
    }
    return rc;
}

static const kv *rec_get(const rec *r, const char *key) {
    for (int k = 0; k < r->n; k++)
        if (!strcmp(r->kv[k].key, key)) return &r->kv[k];
    return NULL;
}

/* Every numeric key in the log, comma separated, for error messages. */
static void list_keys(const jlog *l, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < l->n; i++)
        for (int k = 0; k < l->r[i].n; k++) {
            const char *key = l->r[i].kv[k].key;
            bool seen = false;
            for (int j = 0; j <= i && !seen; j++)
                for (int q = 0; q < (j < i ? l->r[j].n : k) && !seen; q++)
                    if (!strcmp(l->r[j].kv[q].key, key)) seen = true;
            if (!seen && len < n) len += (size_t)snprintf(buf + len, n - len, "%s%s", len ? ", " : "", key);
        }
}

/* ---- cal_train_time ---- */

static int cal_train_time(jlog *logs, int n_logs, bool include_outliers) {
    for (int i = 0; i < n_logs; i++) {
        const jlog *l = &logs[i];
        printf("-----Analyze train time of %s-----\n", l->path);
        /* epochs in order of first appearance, as a Python dict keeps them */
        int64_t *epochs = malloc((size_t)l->n * sizeof *epochs);
        double *sum = calloc((size_t)l->n, sizeof *sum);
        int *cnt = calloc((size_t)l->n, sizeof *cnt), *seen = calloc((size_t)l->n, sizeof *seen);
        if (!epochs || !sum || !cnt || !seen) {
            fprintf(stderr, "mmdet-analyze-logs: out of memory\n");
            return 1;
        }
        int ne = 0;
        double total = 0;
        long total_n = 0;
        for (int j = 0; j < l->n; j++) {
            const rec *r = &l->r[j];
            int e = 0;
            while (e < ne && epochs[e] != r->epoch) e++;
            if (e == ne) epochs[ne++] = r->epoch;
            const kv *t = rec_get(r, "time");
            if (!t) continue;
            if (seen[e]++ == 0 && !include_outliers) continue;   /* the first is the outlier */
            sum[e] += t->v;
            cnt[e]++;
            total += t->v;
            total_n++;
        }
        int slow = -1, fast = -1;
        double mean_of_means = 0;
        for (int e = 0; e < ne; e++) {
            if (!cnt[e]) {
                fprintf(stderr, "mmdet-analyze-logs: %s: epoch %lld has no \"time\" to average%s; reduce the log "
                        "interval in the config so that it is less than the iterations of one epoch\n", l->path,
                        (long long)epochs[e], include_outliers ? "" : " once its first is left out");
                free(epochs), free(sum), free(cnt), free(seen);
                return 1;
            }
            double m = sum[e] / cnt[e];
            if (slow < 0 || m > sum[slow] / cnt[slow]) slow = e;
            if (fast < 0 || m < sum[fast] / cnt[fast]) fast = e;
            mean_of_means += m / ne;
        }
        double var = 0;
        for (int e = 0; e < ne; e++) var += pow(sum[e] / cnt[e] - mean_of_means, 2) / ne;
        printf("slowest epoch %d, average time is %.4f\n", slow + 1, sum[slow] / cnt[slow]);
        printf("fastest epoch %d, average time is %.4f\n", fast + 1, sum[fast] / cnt[fast]);
        printf("time std over epochs is %.4f\n", sqrt(var));
        printf("average iter time: %.4f s/iter\n\n", total / (double)total_n);
        free(epochs), free(sum), free(cnt), free(seen);
    }
    return 0;
}

/* ---- plot_curve ---- */

typedef struct series { double *x, *y; int n; bool val; const char *label; } series;

/* matplotlib's defaults at 100 dpi: a 640 x 480 figure, the axes at
 * [0.125, 0.9] x [0.11, 0.88] of it, 10 pt text, a 12 pt title, 1.5 pt
 * lines, 6 pt markers, 3.5 pt ticks. PDF and SVG use the same numbers as
 * points. */
#define PTS (100.0 / 72.0)
static const double FIG_W = 640, FIG_H = 480, PL = 80, PR = 576, PT = 57.6, PB = 427.2;
#define FS (10 * PTS)
/* tab10, matplotlib's colour cycle */
static const md_color colors[] = { { 31, 119, 180, 255 }, { 255, 127, 14, 255 }, { 44, 160, 44, 255 },
                                   { 214, 39, 40, 255 },  { 148, 103, 189, 255 }, { 140, 86, 75, 255 },
                                   { 227, 119, 194, 255 }, { 127, 127, 127, 255 }, { 188, 189, 34, 255 },
                                   { 23, 190, 207, 255 } };
#define N_COLORS ((int)(sizeof colors / sizeof colors[0]))
static const md_color black = { 0, 0, 0, 255 }, grid = { 224, 224, 224, 255 };

/* A 1-2-2.5-5 step giving at most `most` intervals over [lo, hi]. */
static double nice_step(double lo, double hi, int most) {
    double raw = (hi - lo) / most, mag = pow(10, floor(log10(raw)));
    static const double steps[] = { 1, 2, 2.5, 5, 10 };
    for (int i = 0; i < 5; i++)
        if (steps[i] * mag >= raw * (1 - 1e-9)) return steps[i] * mag;
    return 10 * mag;
}

/* The view: the data range plus 5 % on each side (matplotlib's margins). */
static void view_range(double lo, double hi, double *out_lo, double *out_hi) {
    if (!(hi > lo)) {
        double pad = fabs(lo) > 0 ? fabs(lo) * 0.05 : 0.05;
        *out_lo = lo - pad;
        *out_hi = hi + pad;
        return;
    }
    *out_lo = lo - 0.05 * (hi - lo);
    *out_hi = hi + 0.05 * (hi - lo);
}

/* Every tick label of an axis with the same number of decimals, as
 * matplotlib's ScalarFormatter. */
static void tick_label(double v, double step, char *buf, size_t n) {
    if (fabs(v) < step * 1e-6) v = 0;   /* no "-0" */
    int dec = 0;
    while (dec < 10 && fabs(step * pow(10, dec) - round(step * pow(10, dec))) > 1e-6 * step * pow(10, dec)) dec++;
    snprintf(buf, n, "%.*f", dec, v);
}

static int build_series(const jlog *l, const char *key, const char *label, series *s) {
    memset(s, 0, sizeof *s);
    s->label = label;
    bool on_train = false, anywhere = false;
    for (int i = 0; i < l->n; i++)
        if (rec_get(&l->r[i], key)) {
            anywhere = true;
            if (l->r[i].mode == MODE_TRAIN) on_train = true;
        }
    if (!anywhere) {
        char keys[1024];
        list_keys(l, keys, sizeof keys);
        fprintf(stderr, "mmdet-analyze-logs: %s does not contain metric '%s' (its keys: %s)%s\n", l->path, key, keys,
                strstr(key, "mAP") ? "; check whether --no-validate was given when the model was trained"
                                   : "; if it is a training key, reduce the log interval below one epoch");
        return -1;
    }
    s->val = !on_train;
    /* mmdet: the iterations of the first epoch (its last training line) */
    int64_t per_epoch = 0, first_epoch = l->r[0].epoch;
    for (int i = 0; i < l->n; i++)
        if (l->r[i].epoch == first_epoch && l->r[i].mode == MODE_TRAIN) per_epoch = l->r[i].iter;
    s->x = malloc((size_t)l->n * sizeof *s->x);
    s->y = malloc((size_t)l->n * sizeof *s->y);
    if (!s->x || !s->y) return -1;
    for (int i = 0; i < l->n; i++) {
        const rec *r = &l->r[i];
        const kv *v = rec_get(r, key);
        if (!v || !isfinite(v->v) || (on_train && r->mode != MODE_TRAIN)) continue;
        s->x[s->n] = on_train ? (double)(r->iter + (r->epoch - 1) * per_epoch) : (double)r->epoch;
        s->y[s->n++] = v->v;
    }
    return 0;
}

/* The last `depth` components of path without .log.json / .json: start
 * and length; *whole when that is the entire path. */
static const char *path_tail(const char *path, int depth, size_t *len, bool *whole) {
    const char *start = path + strlen(path);
    int seen = 0;
    while (start > path && !(start[-1] == '/' && ++seen == depth)) start--;
    *whole = start == path;
    size_t n = strlen(start);
    if (n > 9 && !strcmp(start + n - 9, ".log.json")) n -= 9;
    else if (n > 5 && !strcmp(start + n - 5, ".json")) n -= 5;
    *len = n;
    return start;
}

/* The name of log i in a legend: its file name without .log.json, with as
 * many parent folders as it takes to tell the logs apart. */
static char *short_name(const jlog *logs, int n_logs, int i) {
    for (int depth = 1;; depth++) {
        size_t len, other_len;
        bool whole, other_whole;
        const char *mine = path_tail(logs[i].path, depth, &len, &whole);
        bool unique = true;
        for (int j = 0; j < n_logs && unique; j++) {
            const char *other = path_tail(logs[j].path, depth, &other_len, &other_whole);
            if (j != i && other_len == len && !strncmp(mine, other, len)) unique = false;
        }
        if (unique || whole) return strndup(mine, len);
    }
}

/* Legend boxes in font-size units, as matplotlib's: border pad 0.4,
 * handle 2.0, handle-text pad 0.8, label spacing 0.5, 0.5 from the axes. */
typedef struct legend_box { double x, y, w, h, text_w, line_h; } legend_box;

static legend_box legend_size(const series *s, int ns) {
    legend_box b = { 0 };
    for (int k = 0; k < ns; k++) {
        double w, h;
        md_draw_text_size(s[k].label, FS, &w, &h);
        b.text_w = fmax(b.text_w, w);
        b.line_h = fmax(b.line_h, h);
    }
    b.w = (0.4 + 2.0 + 0.8 + 0.4) * FS + b.text_w;
    b.h = 2 * 0.4 * FS + ns * b.line_h + (ns - 1) * 0.5 * FS;
    return b;
}

static int plot_curve(jlog *logs, int n_logs, char **keys, int n_keys, char **legend, int n_legend,
                      const char *title, const char *out) {
    int ns = n_logs * n_keys;
    if (n_legend && n_legend != ns) {
        fprintf(stderr, "mmdet-analyze-logs: --legend needs %d labels (logs x keys), got %d\n", ns, n_legend);
        return 1;
    }
    series *s = calloc((size_t)ns, sizeof *s);
    char **own = calloc((size_t)ns, sizeof *own);
    int rc = 1;
    md_canvas *cv = NULL;
    md_error err = { 0 };
    if (!s || !own) goto done;
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int i = 0; i < n_logs; i++)
        for (int j = 0; j < n_keys; j++) {
            int k = i * n_keys + j;
            const char *label = n_legend ? legend[k] : NULL;
            if (!label && n_logs == 1) label = keys[j];   /* one log: the key, as "loss_cls" */
            if (!label) {
                char *name = short_name(logs, n_logs, i);
                size_t n = (name ? strlen(name) : 0) + strlen(keys[j]) + 2;
                if (!name || !(own[k] = malloc(n))) {
                    free(name);
                    goto done;
                }
                snprintf(own[k], n, "%s %s", name, keys[j]);
                free(name);
                label = own[k];
            }
            printf("plot curve of %s, metric is %s\n", logs[i].path, keys[j]);
            if (build_series(&logs[i], keys[j], label, &s[k]) != 0) goto done;
            for (int p = 0; p < s[k].n; p++) {
                xmin = fmin(xmin, s[k].x[p]);
                xmax = fmax(xmax, s[k].x[p]);
                ymin = fmin(ymin, s[k].y[p]);
                ymax = fmax(ymax, s[k].y[p]);
            }
        }
    if (!(xmin <= xmax)) {
        fprintf(stderr, "mmdet-analyze-logs: no finite values to plot\n");
        goto done;
    }
    double x0, x1, y0, y1;
    view_range(xmin, xmax, &x0, &x1);
    view_range(ymin, ymax, &y0, &y1);
    double xs = nice_step(x0, x1, 8), ys = nice_step(y0, y1, 8);
    /* mmdet sets the x label for each key: the last one's wins */
    const char *xlabel = s[ns - 1].val ? "epoch" : "iter";
    printf("axes: x [%.10g, %.10g] step %.10g (%s), y [%.10g, %.10g] step %.10g; plot area (%g, %g)-(%g, %g)\n", x0,
           x1, xs, xlabel, y0, y1, ys, PL, PT, PR, PB);
    if (!(cv = md_canvas_new_file(out, FIG_W, FIG_H, &err))) {
        fprintf(stderr, "mmdet-analyze-logs: %s\n", err.msg);
        goto done;
    }

#define PX(x) (PL + ((x) - x0) / (x1 - x0) * (PR - PL))
#define PY(y) (PB - ((y) - y0) / (y1 - y0) * (PB - PT))
    char buf[64];
    double tick = 3.5 * PTS, tick_h = 0;
    md_draw_text_size("0", FS, NULL, &tick_h);
    /* grid, ticks and tick labels */
    for (double t = ceil(x0 / xs - 1e-9); t * xs <= x1 + xs * 1e-9; t++) {
        double x = PX(t * xs);
        md_draw_line(cv, x, PT, x, PB, grid, 0.8 * PTS);
        md_draw_line(cv, x, PB, x, PB + tick, black, 0.8 * PTS);
        tick_label(t * xs, xs, buf, sizeof buf);
        md_draw_text(cv, x, PB + tick + 3.5 * PTS, buf, FS, black, 0.5, 0);
    }
    for (double t = ceil(y0 / ys - 1e-9); t * ys <= y1 + ys * 1e-9; t++) {
        double y = PY(t * ys);
        md_draw_line(cv, PL, y, PR, y, grid, 0.8 * PTS);
        md_draw_line(cv, PL - tick, y, PL, y, black, 0.8 * PTS);
        tick_label(t * ys, ys, buf, sizeof buf);
        md_draw_text(cv, PL - tick - 3.5 * PTS, y, buf, FS, black, 1, 0.5);
    }
    md_draw_text(cv, (PL + PR) / 2, PB + tick + 3.5 * PTS + tick_h + 4 * PTS, xlabel, FS, black, 0.5, 0);
    if (title) md_draw_text(cv, (PL + PR) / 2, PT - 6 * PTS, title, 12 * PTS, black, 0.5, 1);

    /* the curves, clipped to the axes by staying inside the view */
    for (int k = 0; k < ns; k++) {
        md_color c = colors[k % N_COLORS];
        double *xy = malloc(2 * sizeof *xy * (size_t)(s[k].n ? s[k].n : 1));
        if (!xy) goto done;
        for (int p = 0; p < s[k].n; p++) {
            xy[2 * p] = PX(s[k].x[p]);
            xy[2 * p + 1] = PY(s[k].y[p]);
        }
        md_draw_polyline(cv, xy, s[k].n, c, 1.5 * PTS);
        if (s[k].n == 1 || s[k].val)   /* mmdet's marker='o' for the metrics */
            for (int p = 0; p < s[k].n; p++) md_draw_circle(cv, xy[2 * p], xy[2 * p + 1], 3 * PTS, c);
        free(xy);
    }
    md_draw_rect(cv, PL, PT, PR, PB, black, 0.8 * PTS);

    /* matplotlib's loc='best': the first of its places covering the fewest
     * data points */
    legend_box lb = legend_size(s, ns);
    double pad = 0.5 * FS;
    const double places[9][2] = { { 1, 0 }, { 0, 0 }, { 0, 1 }, { 1, 1 }, { 0, 0.5 },
                                  { 1, 0.5 }, { 0.5, 1 }, { 0.5, 0 }, { 0.5, 0.5 } };
    long best = -1;
    for (int q = 0; q < 9; q++) {
        double lx = PL + pad + places[q][0] * (PR - PL - 2 * pad - lb.w);
        double ly = PT + pad + places[q][1] * (PB - PT - 2 * pad - lb.h);
        long inside = 0;
        for (int k = 0; k < ns; k++)
            for (int p = 0; p < s[k].n; p++) {
                double px = PX(s[k].x[p]), py = PY(s[k].y[p]);
                inside += px >= lx && px <= lx + lb.w && py >= ly && py <= ly + lb.h;
                if (p + 1 < s[k].n)   /* the segment's midpoint too */
                    for (int m = 1; m < 4; m++) {
                        double mx = px + (PX(s[k].x[p + 1]) - px) * m / 4, my = py + (PY(s[k].y[p + 1]) - py) * m / 4;
                        inside += mx >= lx && mx <= lx + lb.w && my >= ly && my <= ly + lb.h;
                    }
            }
        if (best < 0 || inside < best) {
            best = inside;
            lb.x = lx;
            lb.y = ly;
        }
    }
    md_draw_fill_rect(cv, lb.x, lb.y, lb.x + lb.w, lb.y + lb.h, (md_color){ 255, 255, 255, 204 });
    md_draw_rect(cv, lb.x, lb.y, lb.x + lb.w, lb.y + lb.h, (md_color){ 204, 204, 204, 255 }, 0.8 * PTS);
    for (int k = 0; k < ns; k++) {
        md_color c = colors[k % N_COLORS];
        double y = lb.y + 0.4 * FS + k * (lb.line_h + 0.5 * FS) + lb.line_h / 2, hx = lb.x + 0.4 * FS;
        md_draw_line(cv, hx, y, hx + 2 * FS, y, c, 1.5 * PTS);
        if (s[k].n == 1 || s[k].val) md_draw_circle(cv, hx + FS, y, 3 * PTS, c);
        md_draw_text(cv, hx + 2.8 * FS, y, s[k].label, FS, black, 0, 0.5);
    }
    printf("legend: (%.6f, %.6f) %.6f x %.6f, labels %.6f wide\n", lb.x, lb.y, lb.w, lb.h, lb.text_w);
#undef PX
#undef PY
    rc = md_canvas_finish(cv, &err);
    cv = NULL;
    if (rc != 0) {
        fprintf(stderr, "mmdet-analyze-logs: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    printf("save curve to: %s\n", out);
done:
    md_canvas_free(cv);
    for (int k = 0; s && k < ns; k++) {
        free(s[k].x);
        free(s[k].y);
    }
    for (int k = 0; own && k < ns; k++) free(own[k]);
    free(s);
    free(own);
    return rc;
}

/* ---- command line ---- */

static void usage(FILE *f) {
    fputs("usage: mmdet-analyze-logs plot_curve LOG.json [LOG.json ...] [--keys K ...] [--legend L ...]\n"
          "                          [--title T] --out OUT.png|OUT.pdf|OUT.svg\n"
          "       mmdet-analyze-logs cal_train_time LOG.json [LOG.json ...] [--include-outliers]\n"
          "  --keys K ...        keys to plot (default bbox_mAP)\n"
          "  --legend L ...      one label per log and key (default: the key for one log,\n"
          "                      the log's short name and the key for several)\n"
          "  --title T           the plot's title\n"
          "  --out FILE          where the plot goes: .png, .pdf or .svg (there is no display)\n"
          "  --include-outliers  keep the first iteration of every epoch when timing\n"
          "  --backend, --style, --eval-interval are accepted for mmdet's command line and ignored\n", f);
}

int main(int argc, char **argv) {
    md_process_init(argc, argv);
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    bool plot = !strcmp(cmd, "plot_curve"), timing = !strcmp(cmd, "cal_train_time");
    if (!plot && !timing) {
        fprintf(stderr, "mmdet-analyze-logs: unknown task '%s' (plot_curve or cal_train_time)\n", cmd);
        return 2;
    }
    char **paths = calloc((size_t)argc, sizeof *paths), **keys = calloc((size_t)argc, sizeof *keys);
    char **legend = calloc((size_t)argc, sizeof *legend);
    int n_paths = 0, n_keys = 0, n_legend = 0;
    const char *title = NULL, *out = NULL;
    bool outliers = false;
    if (!paths || !keys || !legend) return 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--keys") || !strcmp(a, "--legend")) {
            bool k = !strcmp(a, "--keys");
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) {
                if (k) keys[n_keys++] = argv[++i];
                else legend[n_legend++] = argv[++i];
            }
        } else if (!strcmp(a, "--title") || !strcmp(a, "--out") || !strcmp(a, "--backend") ||
                   !strcmp(a, "--style") || !strcmp(a, "--eval-interval")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "mmdet-analyze-logs: %s needs a value\n", a);
                return 2;
            }
            if (!strcmp(a, "--title")) title = argv[i + 1];
            else if (!strcmp(a, "--out")) out = argv[i + 1];
            i++;
        } else if (!strcmp(a, "--include-outliers")) {
            outliers = true;
        } else if (!strncmp(a, "--", 2)) {
            fprintf(stderr, "mmdet-analyze-logs: unknown option %s\n", a);
            usage(stderr);
            return 2;
        } else {
            paths[n_paths++] = argv[i];
        }
    }
    if (!n_paths) {
        fprintf(stderr, "mmdet-analyze-logs: no JSON log given\n");
        return 2;
    }
    if (plot && !out) {
        fprintf(stderr, "mmdet-analyze-logs: plot_curve needs --out FILE (.png, .pdf or .svg; there is no display)\n");
        return 2;
    }
    static char *default_key[] = { "bbox_mAP" };
    jlog *logs = calloc((size_t)n_paths, sizeof *logs);
    int rc = logs ? 0 : 1, loaded = 0;
    for (int i = 0; rc == 0 && i < n_paths; i++, loaded++)
        if (log_load(&logs[i], paths[i]) != 0) rc = 1;
    if (rc == 0)
        rc = plot ? plot_curve(logs, n_paths, n_keys ? keys : default_key, n_keys ? n_keys : 1, legend, n_legend,
                               title, out)
                  : cal_train_time(logs, n_paths, outliers);
    for (int i = 0; i < loaded; i++) log_free(&logs[i]);
    free(logs);
    free(paths);
    free(keys);
    free(legend);
    return rc;
}
