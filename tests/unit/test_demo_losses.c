/* The demo's first 200 iterations, bit for bit: `make demo`'s config
 * (configs/retinanet/retinanet_r18_fpn_shapes.cfg, through
 * tests/configs/demo_losses.cfg) trains on the dataset the demo generates,
 * with tests/plugins/loss_recorder.so writing every iteration's losses as
 * exact hex floats; they must equal tests/fixtures/demo_losses_200.txt,
 * first recorded before the heads moved onto the model layer (AnchorHead,
 * the registered losses), and re-recorded once, for the one intended
 * change of numbers since: Resize's OpenCV rounding (the two-stage parity
 * with mmdet), checked by recording the commit before it (the old fixture,
 * bit for bit) and the commit itself (the new one, which every later
 * commit reproduces). A refactor that changes any number fails here.
 *
 * The kernels are deterministic and independent of the thread count; the
 * fixture holds the AVX-512 kernels' rounding in the normal build, so a
 * CPU without AVX-512 (other convolution kernels) and a sanitizer build
 * (instrumented kernels round differently: the code the fixture was
 * recorded with gives another first loss_bbox there) skip the comparison
 * and say so. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testlib.h"

static char dir[64];

static void setup(void) { test_tmpdir(dir, sizeof dir, "mmdet_demo_losses"); }
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(demo_losses, .init = setup, .fini = teardown, .timeout = 900);

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strdup(buf);
}

Test(demo_losses, first_200_iterations_bit_identical) {
    if (!__builtin_cpu_supports("avx512f")) cr_skip_test("the fixture holds the AVX-512 kernels' rounding");
#ifdef __SANITIZE_ADDRESS__
    cr_skip_test("the fixture holds the normal build's rounding, not the sanitizer build's");
#endif
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s/data --train 2800 --val 100 --classes 5 --seed 0 >/dev/null", dir);
    cr_assert_eq(system(cmd), 0, "mmdet-shapes failed");
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-run --plugin-dir plugins --plugin-dir tests/plugins tests/configs/demo_losses.cfg "
             "--work-dir %s/work --seed 0 --deterministic --cfg-options "
             "data.train.ann_file=%s/data/annotations/instances_train.json data.train.img_prefix=%s/data/train/ "
             "data.val.ann_file=%s/data/annotations/instances_val.json data.val.img_prefix=%s/data/val/ "
             "custom_hooks.1.out=%s/losses.txt >%s/run.out 2>&1",
             dir, dir, dir, dir, dir, dir, dir);
    int rc = system(cmd);   /* the recorder's stop ends the run as interrupted */
    char path[128];
    snprintf(path, sizeof path, "%s/losses.txt", dir);
    char *got = slurp(path), *want = slurp("tests/fixtures/demo_losses_200.txt");
    if (!got || !want) {
        free(got);
        free(want);
        cr_assert(want, "tests/fixtures/demo_losses_200.txt is missing");
        cr_assert(got, "no losses recorded (mmdet-run exit %d); see %s/run.out", rc, dir);
    }
    /* the first differing line, for the message */
    const char *g = got, *w = want;
    int line = 1;
    while (*g && *g == *w) {
        if (*g == '\n') line++;
        g++, w++;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "got \"%.40s\", want \"%.40s\"", g, w);
    bool same = *g == 0 && *w == 0;
    free(got);
    free(want);
    cr_assert(same, "losses differ from the fixture at line %d: %s", line, msg);
}
