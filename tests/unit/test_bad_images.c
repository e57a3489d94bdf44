/* Missing and corrupt images: the error names the file; with
 * skip_bad_images = true a training dataset replaces such samples by others
 * (mmdet's __getitem__ retry) and reports how many it skipped. The dataset:
 * two good PNGs, a truncated JPEG and a file that does not exist. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include "testlib.h"
#include <mmdet/data.h>

static md_ctx *ctx;
static char dir[64], logpath[128];

static const char *ann =
    "{\"images\": [\n"
    "  {\"id\": 1, \"file_name\": \"good1.png\", \"width\": 64, \"height\": 48},\n"
    "  {\"id\": 2, \"file_name\": \"good2.png\", \"width\": 64, \"height\": 48},\n"
    "  {\"id\": 3, \"file_name\": \"cut.jpg\", \"width\": 64, \"height\": 48},\n"
    "  {\"id\": 4, \"file_name\": \"gone.jpg\", \"width\": 64, \"height\": 48}],\n"
    " \"annotations\": [\n"
    "  {\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [4, 4, 20, 10], \"area\": 200, \"iscrowd\": 0},\n"
    "  {\"id\": 2, \"image_id\": 2, \"category_id\": 1, \"bbox\": [4, 4, 20, 10], \"area\": 200, \"iscrowd\": 0},\n"
    "  {\"id\": 3, \"image_id\": 3, \"category_id\": 1, \"bbox\": [4, 4, 20, 10], \"area\": 200, \"iscrowd\": 0},\n"
    "  {\"id\": 4, \"image_id\": 4, \"category_id\": 1, \"bbox\": [4, 4, 20, 10], \"area\": 200, \"iscrowd\": 0}],\n"
    " \"categories\": [{\"id\": 1, \"name\": \"box\"}]}\n";

static void setup(void) {
    md_error err = { 0 };
    ctx = md_ctx_new(&err);
    cr_assert(ctx, "%s", err.msg);
    md_log_set_quiet(ctx, true);
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/datasets", &err), 0, "%s", err.msg);
    test_tmpdir(dir, sizeof dir, "md_bad");
    snprintf(logpath, sizeof logpath, "%s/run.log", dir);
    cr_assert_eq(md_log_set_file(ctx, logpath, &err), 0, "%s", err.msg);
    md_image *img = md_image_new(48, 64, 3, &err);
    for (int p = 0; p < 48 * 64 * 3; p++) img->data[p] = (uint8_t)(p * 7);
    char path[128];
    const char *good[2] = { "good1.png", "good2.png" };
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, good[i]);
        cr_assert_eq(md_image_write_png(img, path, &err), 0, "%s", err.msg);
    }
    /* a JPEG cut in the middle of its entropy-coded data */
    uint8_t *jpg = NULL;
    size_t n = 0;
    cr_assert_eq(md_image_encode_jpeg(img, 90, &jpg, &n, &err), 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/cut.jpg", dir);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    fwrite(jpg, 1, n / 2, f);
    fclose(f);
    free(jpg);
    md_image_free(img);
    snprintf(path, sizeof path, "%s/ann.json", dir);
    f = fopen(path, "w");
    fputs(ann, f);
    fclose(f);
}

static void teardown(void) {
    md_ctx_free(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
}
TestSuite(bad_images, .init = setup, .fini = teardown);

static md_dataset *build_with(const char *extra, const char *pipeline, md_error *err) {
    char text[1024];
    snprintf(text, sizeof text,
             "data = { type = \"CocoDataset\"; data_root = \"%s\"; ann_file = \"ann.json\"; classes = [\"box\"]; %s\n"
             "  pipeline = ( { type = \"LoadImageFromFile\"; }%s ); };\n", dir, extra, pipeline);
    md_cfg *c = md_cfg_parse(text, "inline.cfg", err);
    cr_assert(c, "%s", err->msg);
    md_dataset *ds = md_build_dataset(ctx, md_cfg_get(c, "data"), NULL, err);
    md_cfg_free(c);
    return ds;
}
static md_dataset *build(const char *extra, md_error *err) { return build_with(extra, "", err); }

static char *slurp(const char *path) {
    static char buf[8192];
    FILE *f = fopen(path, "r");
    cr_assert(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

Test(bad_images, errors_name_the_file_without_the_option) {
    md_error err = { 0 };
    md_dataset *ds = build("", &err);
    cr_assert(ds, "%s", err.msg);
    cr_assert_eq(md_dataset_len(ds), 4);
    md_rng rng;
    md_rng_seed(&rng, 1);
    md_sample s;
    cr_assert_eq(md_dataset_get(ds, 0, &rng, &s, &err), 0, "%s", err.msg);
    md_sample_clear(&s);
    md_error_clear(&err);
    cr_assert_neq(md_dataset_get(ds, 2, &rng, &s, &err), 0);
    cr_assert(strstr(err.msg, "cut.jpg") && strstr(err.msg, "corrupt JPEG"), "%s", err.msg);
    md_error_clear(&err);
    cr_assert_neq(md_dataset_get(ds, 3, &rng, &s, &err), 0);
    cr_assert(strstr(err.msg, "gone.jpg") && strstr(err.msg, "cannot open"), "%s", err.msg);
    md_dataset_free(ds);
}

Test(bad_images, skip_bad_images_replaces_and_counts) {
    md_error err = { 0 };
    md_dataset *ds = build("skip_bad_images = true;", &err);
    cr_assert(ds, "%s", err.msg);
    md_rng rng;
    md_rng_seed(&rng, 7);
    for (int round = 0; round < 3; round++)
        for (int64_t i = 0; i < 4; i++) {
            md_sample s;
            cr_assert_eq(md_dataset_get(ds, i, &rng, &s, &err), 0, "index %lld: %s", (long long)i, err.msg);
            cr_expect(!strcmp(s.meta.ori_filename, "good1.png") || !strcmp(s.meta.ori_filename, "good2.png"),
                      "index %lld gave %s", (long long)i, s.meta.ori_filename);
            cr_expect(i >= 2 || !strcmp(s.meta.ori_filename, i == 0 ? "good1.png" : "good2.png"));
            cr_expect_eq(s.h, 48);
            md_sample_clear(&s);
        }
    char *log = slurp(logpath);
    /* one warning at the first skip, naming the file and the reason */
    cr_assert(strstr(log, "skipping unreadable image: "), "%s", log);
    cr_expect(strstr(log, "cut.jpg: corrupt JPEG"), "%s", log);
    md_dataset_free(ds);
    log = slurp(logpath);
    /* the summary: two distinct images, at least 6 samples replaced (3 rounds x 2) */
    const char *sum = strstr(log, "CocoDataset: skipped 2 unreadable images (");
    cr_assert(sum, "%s", log);
    long long replaced = atoll(sum + strlen("CocoDataset: skipped 2 unreadable images ("));
    cr_expect_geq(replaced, 6, "%s", sum);
    cr_expect(strstr(sum, "samples replaced): first ") && strstr(sum, "cut.jpg: corrupt JPEG"), "%s", sum);
}

Test(bad_images, test_mode_still_fails) {
    md_error err = { 0 };
    md_dataset *ds = build("skip_bad_images = true; test_mode = true;", &err);
    cr_assert(ds, "%s", err.msg);
    md_rng rng;
    md_rng_seed(&rng, 1);
    md_sample s;
    cr_assert_neq(md_dataset_get(ds, 3, &rng, &s, &err), 0);
    cr_assert(strstr(err.msg, "gone.jpg"), "%s", err.msg);
    md_dataset_free(ds);
}

/* The loader names the dataset index; the batch and the epoch (numbered
 * from 1) are the runner's to add, so no 0-based epoch leaks into the
 * message. */
Test(bad_images, loader_names_the_index_not_its_epoch) {
    md_error err = { 0 };
    md_dataset *ds = build_with("", ", { type = \"DefaultFormatBundle\"; }", &err);
    cr_assert(ds, "%s", err.msg);
    md_loader_cfg lc = MD_LOADER_CFG_DEFAULT;
    lc.samples_per_gpu = 1;
    lc.workers_per_gpu = 0;
    lc.shuffle = false;
    md_loader *l = md_loader_new(ds, &lc, &err);
    cr_assert(l, "%s", err.msg);
    cr_assert_eq(md_loader_start_epoch(l, 0, &err), 0, "%s", err.msg);
    md_batch *b;
    int got = 0;
    while ((b = md_loader_next(l, &err))) {
        md_batch_free(b);
        got++;
    }
    cr_assert_eq(got, 2, "indices 0 and 1 load: %d, %s", got, err.msg);
    cr_assert(strstr(err.msg, "loading dataset index 2: ") && strstr(err.msg, "cut.jpg") && !strstr(err.msg, "epoch"),
              "%s", err.msg);
    md_loader_free(l);
    md_dataset_free(ds);
}
