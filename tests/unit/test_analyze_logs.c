/* bin/mmdet-analyze-logs on a hand-written JSON log
 * (tests/fixtures/analyze_logs/log.json): cal_train_time against numbers
 * worked out by hand, and plot_curve's PNG decoded back, with the curves'
 * colors looked up where the data points must land. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
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

/* Plot area (80, 44)-(640, 440) as documented in the tool. */
static int px(double x, double x0, double x1) { return (int)lround(80 + (x - x0) / (x1 - x0) * 560); }
static int py(double y, double y0, double y1) { return (int)lround(440 - (y - y0) / (y1 - y0) * 396); }
static bool is(const md_image *img, int x, int y, const uint8_t c[3]) {
    const uint8_t *p = img->data + ((size_t)y * img->w + x) * 3;
    return p[0] == c[0] && p[1] == c[1] && p[2] == c[2];
}
static const uint8_t blue[3] = { 31, 119, 180 }, orange[3] = { 255, 127, 14 }, black[3] = { 0, 0, 0 };

Test(analyze_logs, plot_curve_puts_the_points_where_the_data_says) {
    char cmd[512], out[4096], png[128];
    md_error err = { 0 };
    snprintf(png, sizeof png, "%s/loss.png", dir);
    snprintf(cmd, sizeof cmd, TOOL " plot_curve " LOG " --keys loss --out %s", png);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    /* loss from 2.0 at iteration 10 to 0.5 at 30 + 2 x 30 = 90: x ticks of 10
     * over [10, 90], y ticks of 0.5 over [0.5, 2] */
    cr_assert(strstr(out, "axes: x [10, 90] step 10 (iter), y [0.5, 2] step 0.5"), "%s", out);
    md_image *img = md_image_read(png, &err);
    cr_assert(img, "%s", err.msg);
    double xs[9] = { 10, 20, 30, 40, 50, 60, 70, 80, 90 }, ys[9] = { 2.0, 1.6, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5 };
    for (int i = 0; i < 9; i++)
        cr_expect(is(img, px(xs[i], 10, 90), py(ys[i], 0.5, 2), blue), "point %d at (%d, %d)", i,
                  px(xs[i], 10, 90), py(ys[i], 0.5, 2));
    /* the frame and a tick label under the x axis */
    cr_expect(is(img, 360, 440, black) || is(img, 360, 440, blue));
    int ink = 0;
    for (int y = 449; y < 457; y++)
        for (int x = 70; x < 650; x++) ink += is(img, x, y, black);
    cr_expect_gt(ink, 20, "tick labels");
    /* nothing blue far from the curve: below its lowest point */
    for (int y = py(0.5, 0.5, 2) + 3; y < 440; y++) cr_expect_not(is(img, 200, y, blue), "y %d", y);
    md_image_free(img);
}

Test(analyze_logs, plot_curve_train_keys_by_iteration_val_keys_by_epoch) {
    char cmd[512], out[4096], png[128];
    md_error err = { 0 };
    snprintf(png, sizeof png, "%s/both.png", dir);
    snprintf(cmd, sizeof cmd, TOOL " plot_curve " LOG " --keys loss bbox_mAP --legend loss mAP --title TOY --out %s",
             png);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    /* x from epoch 1 to iteration 90: steps of 20 over [0, 100]; y 0.2..2: [0, 2] by 0.5 */
    cr_assert(strstr(out, "axes: x [0, 100] step 20"), "%s", out);
    cr_assert(strstr(out, "y [0, 2] step 0.5"), "%s", out);
    md_image *img = md_image_read(png, &err);
    cr_assert(img, "%s", err.msg);
    cr_expect(is(img, px(10, 0, 100), py(2.0, 0, 2), blue));     /* first loss point */
    cr_expect(is(img, px(90, 0, 100), py(0.5, 0, 2), blue));     /* last */
    cr_expect(is(img, px(1, 0, 100), py(0.2, 0, 2), orange));    /* bbox_mAP at epoch 1 */
    cr_expect(is(img, px(3, 0, 100), py(0.35, 0, 2), orange));   /* epoch 3 */
    /* the legend right of the plot: a line sample in each color */
    cr_expect(is(img, 671, 47, blue));
    cr_expect(is(img, 665, 63, orange));
    md_image_free(img);
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
