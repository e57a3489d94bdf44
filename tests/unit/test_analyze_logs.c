/* bin/mmdet-analyze-logs on a hand-written JSON log
 * (tests/fixtures/analyze_logs/log.json): cal_train_time against numbers
 * worked out by hand, and plot_curve's PNG decoded back: the curves'
 * colours where the data points must land, tick labels, title, and a
 * legend whose text is as wide as md_draw measures the key; PDF and SVG
 * outputs are whole files. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include <mmdet/draw.h>
#include "testlib.h"

#define LOG "tests/fixtures/analyze_logs/log.json"
#define TOOL "bin/mmdet-analyze-logs"

static char dir[64];
static void setup(void) {
    test_tmpdir(dir, sizeof dir, "mmdet_logs");
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(analyze_logs, .init = setup, .fini = teardown);

/* Runs a command, returns its exit status and its stdout+stderr in out. */
static int run(const char *cmd, char *out, size_t n) {
    char full[1024];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert(p);
    size_t k = fread(out, 1, n - 1, p);
    out[k] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(analyze_logs, cal_train_time_by_hand) {
    char out[4096];
    /* times per epoch, the first of each left out: (0.5, 0.3), (0.3, 0.3), (0.6, 0.4)
     * -> means 0.4, 0.3, 0.5; std sqrt(0.02 / 3) = 0.08165; all six average 0.4 */
    cr_assert_eq(run(TOOL " cal_train_time " LOG, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "-----Analyze train time of " LOG "-----\n"), "%s", out);
    cr_assert(strstr(out, "slowest epoch 3, average time is 0.5000\n"), "%s", out);
    cr_assert(strstr(out, "fastest epoch 2, average time is 0.3000\n"), "%s", out);
    cr_assert(strstr(out, "time std over epochs is 0.0816\n"), "%s", out);
    cr_assert(strstr(out, "average iter time: 0.4000 s/iter\n"), "%s", out);
    /* all nine: means 1.7/3, 1.3/3, 1.8/3; mean 4.8/9; std 0.07201 */
    cr_assert_eq(run(TOOL " cal_train_time " LOG " --include-outliers", out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "slowest epoch 3, average time is 0.6000\n"), "%s", out);
    cr_assert(strstr(out, "fastest epoch 2, average time is 0.4333\n"), "%s", out);
    cr_assert(strstr(out, "time std over epochs is 0.0720\n"), "%s", out);
    cr_assert(strstr(out, "average iter time: 0.5333 s/iter\n"), "%s", out);
}

/* The view and plot area the tool reports: data to pixels. */
typedef struct axes { double x0, x1, y0, y1, l, t, r, b; char xlabel[16]; } axes;
static axes parse_axes(const char *out) {
    axes a;
    const char *p = strstr(out, "axes: x [");
    cr_assert(p, "%s", out);
    double step;
    cr_assert_eq(sscanf(p, "axes: x [%lf, %lf] step %lf (%15[a-z]), y [%lf, %lf] step %lf; plot area (%lf, %lf)-(%lf, %lf)",
                        &a.x0, &a.x1, &step, a.xlabel, &a.y0, &a.y1, &step, &a.l, &a.t, &a.r, &a.b), 11, "%s", p);
    return a;
}
static double px(const axes *a, double x) { return a->l + (x - a->x0) / (a->x1 - a->x0) * (a->r - a->l); }
static double py(const axes *a, double y) { return a->b - (y - a->y0) / (a->y1 - a->y0) * (a->b - a->t); }

/* Whether a pixel within 1 of (x, y) has colour c (to 40 per channel: the
 * curves are anti-aliased). */
static bool near(const md_image *img, double x, double y, const uint8_t c[3]) {
    for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
            int xi = (int)x + dx, yi = (int)y + dy;
            if (xi < 0 || yi < 0 || xi >= img->w || yi >= img->h) continue;
            const uint8_t *p = img->data + ((size_t)yi * img->w + xi) * 3;
            if (abs(p[0] - c[0]) <= 40 && abs(p[1] - c[1]) <= 40 && abs(p[2] - c[2]) <= 40) return true;
        }
    return false;
}
static bool dark(const md_image *img, int x, int y) {
    const uint8_t *p = img->data + ((size_t)y * img->w + x) * 3;
    return p[0] < 128 && p[1] < 128 && p[2] < 128;
}
static const uint8_t blue[3] = { 31, 119, 180 }, orange[3] = { 255, 127, 14 };
#define FS (10 * 100.0 / 72.0)   /* matplotlib's 10 pt at 100 dpi */

/* The tool's legend line: the box and the widest label's measured width. */
typedef struct legend { double x, y, w, h, text_w; } legend;
static legend parse_legend(const char *out) {
    legend l;
    const char *p = strstr(out, "legend: (");
    cr_assert(p, "%s", out);
    cr_assert_eq(sscanf(p, "legend: (%lf, %lf) %lf x %lf, labels %lf wide", &l.x, &l.y, &l.w, &l.h, &l.text_w), 5,
                 "%s", p);
    return l;
}
/* The dark text inside the legend box: leftmost and rightmost column. */
static void legend_ink(const md_image *img, const legend *l, int *x1, int *x2) {
    *x1 = img->w, *x2 = -1;
    for (int y = (int)l->y + 2; y < (int)(l->y + l->h) - 1; y++)
        for (int x = (int)(l->x + 3.2 * FS); x < (int)(l->x + l->w) - 1; x++)
            if (dark(img, x, y)) {
                if (x < *x1) *x1 = x;
                if (x > *x2) *x2 = x;
            }
}

Test(analyze_logs, plot_curve_puts_the_points_where_the_data_says) {
    char cmd[512], out[4096], png[128];
    md_error err = { 0 };
    snprintf(png, sizeof png, "%s/loss.png", dir);
    snprintf(cmd, sizeof cmd, TOOL " plot_curve " LOG " --keys loss --out %s", png);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    /* loss from 2.0 at iteration 10 to 0.5 at 30 + 2 x 30 = 90, plus 5 %
     * margins as matplotlib: x [6, 94], y [0.425, 2.075] */
    axes a = parse_axes(out);
    cr_expect(fabs(a.x0 - 6) < 1e-9 && fabs(a.x1 - 94) < 1e-9, "%s", out);
    cr_expect(fabs(a.y0 - 0.425) < 1e-9 && fabs(a.y1 - 2.075) < 1e-9, "%s", out);
    cr_expect_str_eq(a.xlabel, "iter");
    md_image *img = md_image_read(png, &err);
    cr_assert(img, "%s", err.msg);
    cr_expect(img->w == 640 && img->h == 480, "matplotlib's 6.4 x 4.8 in at 100 dpi");
    double xs[9] = { 10, 20, 30, 40, 50, 60, 70, 80, 90 }, ys[9] = { 2.0, 1.6, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5 };
    for (int i = 0; i < 9; i++)
        cr_expect(near(img, px(&a, xs[i]), py(&a, ys[i]), blue), "point %d at (%.1f, %.1f)", i, px(&a, xs[i]),
                  py(&a, ys[i]));
    /* tick labels under the x axis, and the axis label below them */
    int ink = 0, label = 0;
    for (int y = (int)a.b + 6; y < (int)a.b + 24; y++)
        for (int x = (int)a.l; x < (int)a.r; x++) ink += dark(img, x, y);
    for (int y = (int)a.b + 26; y < 480; y++)
        for (int x = 300; x < 360; x++) label += dark(img, x, y);
    cr_expect_gt(ink, 40, "tick labels");
    cr_expect_gt(label, 10, "the x label");
    /* nothing blue far from the curve: below its lowest point */
    for (int y = (int)py(&a, 0.5) + 4; y < (int)a.b; y++) cr_expect(!near(img, 330, y, blue), "y %d", y);
    /* one log: the legend says the key, its width that of md_draw's "loss" */
    legend l = parse_legend(out);
    double w;
    md_draw_text_size("loss", FS, &w, NULL);
    cr_expect_float_eq(l.text_w, w, 1e-4, "legend label %g wide, \"loss\" measures %g", l.text_w, w);
    int x1, x2;
    legend_ink(img, &l, &x1, &x2);
    cr_expect(x2 - x1 + 1 >= w - 3 && x2 - x1 + 1 <= w + 1, "legend text ink %d..%d for a %g-wide label", x1, x2, w);
    md_image_free(img);
}

/* The legend of one log names each key: its drawn text is as wide as
 * md_draw measures "loss_cls", not the log's path. */
Test(analyze_logs, legend_is_the_key_or_short_log_names) {
    char cmd[1024], out[4096], png[128];
    md_error err = { 0 };
    snprintf(png, sizeof png, "%s/cls.png", dir);
    snprintf(cmd, sizeof cmd, TOOL " plot_curve " LOG " --keys loss_cls --out %s", png);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    legend l = parse_legend(out);
    double w, wpath;
    md_draw_text_size("loss_cls", FS, &w, NULL);
    md_draw_text_size(LOG "_loss_cls", FS, &wpath, NULL);
    cr_expect_float_eq(l.text_w, w, 1e-4);
    cr_expect_float_eq(l.w, (0.4 + 2.0 + 0.8 + 0.4) * FS + w, 1e-4, "matplotlib's paddings around the label");
    md_image *img = md_image_read(png, &err);
    cr_assert(img, "%s", err.msg);
    int x1, x2;
    legend_ink(img, &l, &x1, &x2);
    cr_expect(x2 - x1 + 1 >= w - 3 && x2 - x1 + 1 <= w + 1, "ink %d..%d, \"loss_cls\" is %g, the path %g", x1, x2, w,
              wpath);
    md_image_free(img);

    /* two logs of the same name in different folders: folder/stem and key */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/run_a %s/run_b && cp " LOG " %s/run_a/20261207_151744.log.json && cp " LOG
             " %s/run_b/20261207_151744.log.json && " TOOL " plot_curve %s/run_a/20261207_151744.log.json "
             "%s/run_b/20261207_151744.log.json --keys loss_cls --out %s/two.png", dir, dir, dir, dir, dir, dir, dir);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    l = parse_legend(out);
    double wa, wb;
    md_draw_text_size("run_a/20261207_151744 loss_cls", FS, &wa, NULL);
    md_draw_text_size("run_b/20261207_151744 loss_cls", FS, &wb, NULL);
    cr_expect_float_eq(l.text_w, fmax(wa, wb), 1e-4, "%s", out);
    /* distinct file names: the stems alone */
    snprintf(cmd, sizeof cmd, "cp " LOG " %s/run_a/second.log.json && " TOOL " plot_curve "
             "%s/run_a/20261207_151744.log.json %s/run_a/second.log.json --keys loss --out %s/stems.png", dir, dir,
             dir, dir);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    l = parse_legend(out);
    md_draw_text_size("20261207_151744 loss", FS, &wa, NULL);
    cr_expect_float_eq(l.text_w, wa, 1e-4, "%s", out);
    /* --legend wins */
    snprintf(cmd, sizeof cmd, TOOL " plot_curve " LOG " --keys loss_cls --legend 'RetinaNet cls' --out %s/l.png", dir);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    l = parse_legend(out);
    md_draw_text_size("RetinaNet cls", FS, &w, NULL);
    cr_expect_float_eq(l.text_w, w, 1e-4, "%s", out);
}

Test(analyze_logs, plot_curve_train_keys_by_iteration_val_keys_by_epoch) {
    char cmd[512], out[4096], png[128];
    md_error err = { 0 };
    snprintf(png, sizeof png, "%s/both.png", dir);
    snprintf(cmd, sizeof cmd, TOOL " plot_curve " LOG " --keys loss bbox_mAP --legend loss mAP --title TOY --out %s",
             png);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    /* x from epoch 1 to iteration 90, y 0.2..2, with 5 % margins; mmdet
     * labels the x axis by the last key: epoch */
    axes a = parse_axes(out);
    cr_expect(fabs(a.x0 - (1 - 4.45)) < 1e-9 && fabs(a.x1 - (90 + 4.45)) < 1e-9, "%s", out);
    cr_expect(fabs(a.y0 - 0.11) < 1e-9 && fabs(a.y1 - 2.09) < 1e-9, "%s", out);
    cr_expect_str_eq(a.xlabel, "epoch");
    md_image *img = md_image_read(png, &err);
    cr_assert(img, "%s", err.msg);
    cr_expect(near(img, px(&a, 10), py(&a, 2.0), blue));     /* first loss point */
    cr_expect(near(img, px(&a, 90), py(&a, 0.5), blue));     /* last */
    cr_expect(near(img, px(&a, 1), py(&a, 0.2), orange));    /* bbox_mAP at epoch 1, a marker */
    cr_expect(near(img, px(&a, 3), py(&a, 0.35), orange));   /* epoch 3 */
    /* the title: ink above the plot area, centred */
    int t1 = img->w, t2 = -1;
    for (int y = 0; y < (int)a.t - 2; y++)
        for (int x = 0; x < img->w; x++)
            if (dark(img, x, y)) {
                if (x < t1) t1 = x;
                if (x > t2) t2 = x;
            }
    double tw;
    md_draw_text_size("TOY", 12 * 100.0 / 72.0, &tw, NULL);
    cr_expect(t2 > t1 && fabs((t1 + t2 + 1) / 2.0 - (a.l + a.r) / 2) < 2 && t2 - t1 + 1 <= tw + 1 &&
              t2 - t1 + 1 >= tw - 4, "title ink %d..%d, %g wide", t1, t2, tw);
    /* the legend: a line sample in each colour at the left of its rows */
    legend l = parse_legend(out);
    cr_expect(near(img, l.x + 0.4 * FS + FS, l.y + 0.4 * FS + (l.h - 0.8 * FS - 0.5 * FS) / 4, blue));
    cr_expect(near(img, l.x + 0.4 * FS + FS, l.y + l.h - 0.4 * FS - (l.h - 0.8 * FS - 0.5 * FS) / 4, orange));
    md_image_free(img);
}

/* --out's extension picks the format: PDF and SVG through cairo's
 * surfaces, whole files with their headers and trailers. */
Test(analyze_logs, pdf_and_svg_outputs) {
    char cmd[512], out[4096], path[128];
    const char *ext[] = { "pdf", "svg" };
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/curve.%s", dir, ext[k]);
        snprintf(cmd, sizeof cmd, TOOL " plot_curve " LOG " --keys loss bbox_mAP --title T --out %s", path);
        cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
        FILE *f = fopen(path, "rb");
        cr_assert(f, "%s", path);
        static char text[1 << 20];
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = 0;
        if (k == 0) {
            cr_expect(!strncmp(text, "%PDF-1.", 7), "%.8s", text);
            cr_expect(n > 8 && memmem(text + n - 8, 8, "%%EOF", 5), "the PDF is complete");
            cr_expect(memmem(text, n, "/MediaBox [ 0 0 640 480 ]", 25), "a 640 x 480 page");
        } else {
            cr_expect(!strncmp(text, "<?xml", 5), "%.8s", text);
            cr_expect(strstr(text, "<svg") && strstr(text, "width=\"640pt\"") && strstr(text, "</svg>"), "%.200s",
                      text);
        }
    }
    snprintf(cmd, sizeof cmd, TOOL " plot_curve " LOG " --keys loss --out %s/curve.gif", dir);
    cr_assert_neq(run(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "curve.gif") && strstr(out, ".pdf"), "%s", out);
}

Test(analyze_logs, a_missing_key_names_the_key_and_the_file) {
    char cmd[512], out[4096];
    snprintf(cmd, sizeof cmd, TOOL " plot_curve " LOG " --keys loss segm_mAP --out %s/x.png", dir);
    cr_assert_neq(run(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, LOG " does not contain metric 'segm_mAP'"), "%s", out);
    cr_assert(strstr(out, "--no-validate"), "%s", out);
    char png[128];
    snprintf(png, sizeof png, "%s/x.png", dir);
    cr_assert_neq(access(png, F_OK), 0, "no picture on error");
    snprintf(cmd, sizeof cmd, TOOL " plot_curve %s/none.json --keys loss --out %s/x.png", dir, dir);
    cr_assert_neq(run(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "none.json"), "%s", out);
    /* a broken line names the file and line */
    snprintf(cmd, sizeof cmd, "printf '{\"mode\": \"train\", \"epoch\": 1}\\n{\"mode\": \"tr' > %s/bad.json && "
             TOOL " cal_train_time %s/bad.json", dir, dir);
    cr_assert_neq(run(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "bad.json:2:"), "%s", out);
}
