/* Samplers, collate and the threaded loader: batches depend only on the
 * seed, never on the number of workers. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/data.h>

/* ---- an in-memory dataset: image i is (8 + i % 5) x (6 + 3 * (i % 4)), with
 * one box, through a random pipeline (no files). ---- */
typedef struct synth_ds { md_dataset base; int64_t n; md_pipeline *p; } synth_ds;

static int64_t synth_len(const md_dataset *ds) { return ((const synth_ds *)ds)->n; }
static int synth_get(const md_dataset *ds, int64_t idx, md_rng *rng, md_sample *s, md_error *err) {
    const synth_ds *d = (const synth_ds *)ds;
    md_sample_init(s);
    int h = 8 + (int)(idx % 5), w = 6 + 3 * (int)(idx % 4);
    uint8_t *px = malloc((size_t)h * w * 3);
    for (int i = 0; i < h * w * 3; i++) px[i] = (uint8_t)(i * 31 + idx * 7);
    md_sample_set_u8(s, px, h, w, 3);
    s->meta.img_shape[0] = s->meta.ori_shape[0] = h;
    s->meta.img_shape[1] = s->meta.ori_shape[1] = w;
    s->meta.img_shape[2] = s->meta.ori_shape[2] = 3;
    s->index = idx;
    md_boxes_reserve(&s->gt_bboxes, 1, true);
    md_boxes_push(&s->gt_bboxes, (float[]){ 1, 1, (float)w - 1, (float)h - 2 }, idx % 3);
    s->have = MD_FIELD_IMG | MD_FIELD_GT_BBOXES | MD_FIELD_GT_LABELS;
    int rc = md_pipeline_apply(d->p, s, rng, err);
    if (rc) md_sample_clear(s);
    return rc ? -1 : 0;
}
static void synth_destroy(md_dataset *ds) {
    synth_ds *d = (synth_ds *)ds;
    md_pipeline_free(d->p);
    free(d->base.flag);
    free(d);
}
static const md_dataset_iface synth_iface = { .len = synth_len, .get = synth_get, .destroy = synth_destroy };

static md_ctx *ctx;
static void setup(void) {
    md_error err = { 0 };
    ctx = md_ctx_new(&err);
    cr_assert(ctx, "%s", err.msg);
    md_log_set_quiet(ctx, true);
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/datasets", &err), 0, "%s", err.msg);
}
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(loader, .init = setup, .fini = teardown);

static synth_ds *synth_new(int64_t n) {
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse(
        "p = ( { type = \"Resize\"; img_scale = ([20, 10], [30, 16]); multiscale_mode = \"range\"; keep_ratio = true; },\n"
        "      { type = \"RandomFlip\"; flip_ratio = 0.5; },\n"
        "      { type = \"Normalize\"; mean = [1.0, 2.0, 3.0]; std = [4.0, 5.0, 6.0]; },\n"
        "      { type = \"Pad\"; size_divisor = 4; }, { type = \"DefaultFormatBundle\"; },\n"
        "      { type = \"Collect\"; keys = [\"img\", \"gt_bboxes\", \"gt_labels\"]; } );", "synth.cfg", &err);
    cr_assert(c, "%s", err.msg);
    synth_ds *d = calloc(1, sizeof *d);
    d->base.iface = &synth_iface;
    d->base.type = "Synth";
    d->n = n;
    d->p = md_pipeline_build(ctx, md_cfg_get(c, "p"), &err);
    cr_assert(d->p, "%s", err.msg);
    md_cfg_free(c);
    d->base.flag = calloc((size_t)n, 1);
    for (int64_t i = 0; i < n; i++) d->base.flag[i] = (6 + 3 * (i % 4)) > (8 + i % 5);
    return d;
}

/* ----------------------------------------------------------------- sampler */

static void check_groups(const int64_t *idx, int64_t n, const uint8_t *flag, int spg) {
    for (int64_t b = 0; b < n / spg; b++)
        for (int k = 1; k < spg; k++)
            cr_assert_eq(flag[idx[b * spg + k]], flag[idx[b * spg]], "batch %lld mixes groups", (long long)b);
}

Test(loader, group_sampler_batches_stay_in_one_group) {
    /* 7 images of group 0 and 4 of group 1, 3 per batch: ceil(7/3)*3 +
     * ceil(4/3)*3 = 9 + 6 = 15 indices. */
    uint8_t flag[11] = { 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0 };
    md_sampler_cfg sc = { 3, true, 0, 1, 42 };
    int64_t *a = NULL, *b = NULL, *c = NULL;
    md_error err = { 0 };
    int64_t n = md_sampler_indices(&sc, flag, 11, 0, &a, &err);
    cr_assert_eq(n, 15, "%s", err.msg);
    check_groups(a, n, flag, 3);
    int seen[11] = { 0 };
    for (int64_t i = 0; i < n; i++) seen[a[i]]++;
    for (int i = 0; i < 11; i++) cr_expect(seen[i] >= 1, "index %d never drawn", i);
    cr_assert_eq(md_sampler_indices(&sc, flag, 11, 0, &b, &err), 15);
    cr_expect_arr_eq(a, b, sizeof(int64_t) * 15, "same seed and epoch, same order");
    cr_assert_eq(md_sampler_indices(&sc, flag, 11, 1, &c, &err), 15);
    cr_expect(memcmp(a, c, sizeof(int64_t) * 15) != 0, "another epoch, another order");
    free(a);
    free(b);
    free(c);
}

Test(loader, distributed_group_sampler_splits_ranks) {
    /* 7 + 4 images, 2 per GPU, 2 GPUs: per group ceil(size / 4) * 4 = 8 + 4,
     * 6 per rank; the ranks together cover every image. */
    uint8_t flag[11] = { 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0 };
    int64_t *r[2];
    int seen[11] = { 0 };
    md_error err = { 0 };
    for (int rank = 0; rank < 2; rank++) {
        md_sampler_cfg sc = { 2, true, rank, 2, 3 };
        int64_t n = md_sampler_indices(&sc, flag, 11, 5, &r[rank], &err);
        cr_assert_eq(n, 6, "%s", err.msg);
        check_groups(r[rank], n, flag, 2);
        for (int64_t i = 0; i < n; i++) seen[r[rank][i]]++;
    }
    for (int i = 0; i < 11; i++) cr_expect(seen[i] >= 1, "index %d on no rank", i);
    free(r[0]);
    free(r[1]);
    /* Not shuffled: DistributedSampler's rank::world_size slice, padded. */
    md_sampler_cfg sc = { 2, false, 1, 2, 0 };
    int64_t *s = NULL;
    cr_assert_eq(md_sampler_indices(&sc, NULL, 5, 0, &s, &err), 3);
    cr_expect(s[0] == 1 && s[1] == 3 && s[2] == 0, "%lld %lld %lld", (long long)s[0], (long long)s[1], (long long)s[2]);
    free(s);
}

/* ----------------------------------------------------------------- collate */

Test(loader, collate_pads_to_the_largest_rounded_up) {
    md_sample s[2];
    for (int k = 0; k < 2; k++) {
        md_sample_init(&s[k]);
        int h = k ? 5 : 3, w = k ? 2 : 6;
        s[k].h = h;
        s[k].w = w;
        s[k].c = 2;
        s[k].img_f32 = malloc(sizeof(float) * 2 * h * w);
        for (int i = 0; i < 2 * h * w; i++) s[k].img_f32[i] = (float)(100 * k + i + 1);
        md_boxes_reserve(&s[k].gt_bboxes, 1, true);
        md_boxes_push(&s[k].gt_bboxes, (float[]){ 0, 0, 1, 1 }, 7 + k);
        s[k].index = 10 + k;
    }
    md_error err = { 0 };
    md_batch *b = md_collate(s, 2, 4, &err);
    cr_assert(b, "%s", err.msg);
    /* max h 5 -> 8, max w 6 -> 8 */
    cr_assert(b->img->ndim == 4 && b->img->shape[0] == 2 && b->img->shape[1] == 2 && b->img->shape[2] == 8 &&
              b->img->shape[3] == 8);
    const float *x = md_f32(b->img);
    cr_expect_float_eq(x[0 * 64 + 2 * 8 + 5], 18.0f, 0, "image 0, channel 0, (2, 5) = 2 * 6 + 5 + 1");
    cr_expect_float_eq(x[0 * 64 + 2 * 8 + 6], 0.0f, 0, "padding right");
    cr_expect_float_eq(x[3 * 64 + 4 * 8 + 1], 100.0f + 10 + 8 + 1 + 1, 0, "image 1, channel 1, (4, 1)");
    cr_expect_float_eq(x[3 * 64 + 5 * 8 + 1], 0.0f, 0, "padding below");
    cr_expect_eq(b->gt_bboxes[1].labels[0], 8);
    cr_expect_eq(b->indices[1], 11);
    md_batch_free(b);
    md_sample_clear(&s[0]);
    md_sample_clear(&s[1]);
}

/* ------------------------------------------------------------------ loader */

/* All batches of two epochs, concatenated as floats (+ metas) for comparison. */
static float *run_epochs(synth_ds *d, int workers, size_t *len) {
    md_loader_cfg cfg = MD_LOADER_CFG_DEFAULT;
    cfg.samples_per_gpu = 3;
    cfg.workers_per_gpu = workers;
    cfg.prefetch = 2;
    cfg.seed = 1234;
    cfg.size_divisor = 8;
    md_error err = { 0 };
    md_loader *l = md_loader_new(&d->base, &cfg, &err);
    cr_assert(l, "%s", err.msg);
    size_t cap = 1 << 16, n = 0;
    float *out = malloc(cap * sizeof *out);
    for (int epoch = 0; epoch < 2; epoch++) {
        cr_assert_eq(md_loader_start_epoch(l, epoch, &err), 0, "%s", err.msg);
        int64_t count = 0;
        md_batch *b;
        while ((b = md_loader_next(l, &err))) {
            count++;
            cr_assert_eq(b->img->shape[2] % 8, 0);
            size_t m = (size_t)md_tensor_numel(b->img);
            size_t extra = 4 + (size_t)b->n * 8;
            if (n + m + extra > cap) {
                while (n + m + extra > cap) cap *= 2;
                out = realloc(out, cap * sizeof *out);
            }
            for (int k = 0; k < 4; k++) out[n++] = (float)b->img->shape[k];
            memcpy(out + n, md_f32(b->img), m * sizeof *out);
            n += m;
            for (int i = 0; i < b->n; i++) {
                out[n++] = (float)b->indices[i];
                out[n++] = (float)b->metas[i].flip;
                for (int k = 0; k < 4; k++) out[n++] = b->gt_bboxes[i].xyxy[k];
                out[n++] = (float)b->gt_bboxes[i].labels[0];
                out[n++] = b->metas[i].scale_factor[0];
            }
            md_batch_free(b);
        }
        cr_assert(!md_error_is_set(&err), "%s", err.msg);
        cr_expect_eq(count, md_loader_len(l));
    }
    md_loader_free(l);
    *len = n;
    return out;
}

Test(loader, same_seed_same_batches_whatever_the_worker_count) {
    synth_ds *d = synth_new(17);
    size_t n0, n1, n3;
    float *a = run_epochs(d, 0, &n0), *b = run_epochs(d, 1, &n1), *c = run_epochs(d, 3, &n3);
    cr_assert(n0 > 0 && n0 == n1 && n0 == n3, "%zu %zu %zu", n0, n1, n3);
    cr_expect(!memcmp(a, b, n0 * sizeof *a), "1 worker differs from inline loading");
    cr_expect(!memcmp(a, c, n0 * sizeof *a), "3 workers differ from inline loading");
    free(a);
    free(b);
    free(c);
    synth_destroy(&d->base);
}

Test(loader, batches_outlive_the_loader_and_errors_carry_the_index) {
    synth_ds *d = synth_new(6);
    md_loader_cfg cfg = MD_LOADER_CFG_DEFAULT;
    cfg.workers_per_gpu = 2;
    md_error err = { 0 };
    md_loader *l = md_loader_new(&d->base, &cfg, &err);
    cr_assert_eq(md_loader_start_epoch(l, 0, &err), 0);
    md_batch *keep = md_loader_next(l, &err);
    cr_assert(keep, "%s", err.msg);
    md_loader_free(l);   /* stops the workers mid-epoch */
    cr_expect_eq(keep->n, 2);
    cr_expect(md_f32(keep->img)[0] == md_f32(keep->img)[0], "readable after the loader is gone");
    md_batch_free(keep);
    synth_destroy(&d->base);

    /* A pipeline error reaches md_loader_next with the dataset index. */
    synth_ds *bad = synth_new(4);
    md_pipeline_free(bad->p);
    md_cfg *c = md_cfg_parse("p = ( { type = \"Normalize\"; mean = [0.0, 0.0, 0.0]; std = [1.0, 1.0, 1.0]; },"
                             " { type = \"Resize\"; img_scale = [8, 8]; } );", "bad.cfg", &err);
    bad->p = md_pipeline_build(ctx, md_cfg_get(c, "p"), &err);
    md_cfg_free(c);
    cfg.shuffle = false;
    l = md_loader_new(&bad->base, &cfg, &err);
    md_loader_start_epoch(l, 0, &err);
    md_error_clear(&err);
    cr_assert_null(md_loader_next(l, &err));
    cr_expect(strstr(err.msg, "dataset index 0") && strstr(err.msg, "Resize"), "%s", err.msg);
    md_loader_free(l);
    synth_destroy(&bad->base);
}
