/* RandomSampler plugin: mmdet's counts (num, pos_fraction, neg_pos_ub),
 * gts added first as proposals, ascending unique indices, consistent
 * gathered boxes and labels, determinism for a seed, and uniform subsets
 * (hand-worked expectations; the draws cannot match torch.randperm). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <mmdet/bbox.h>
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) {
    ctx = test_ctx(0, (const char *const[]){ "plugins/bbox/random_sampler.so", NULL });
}
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(random_sampler, .init = setup, .fini = teardown);

static md_bbox_sampler *build(const char *body) {
    char text[512];
    snprintf(text, sizeof text, "s = { type = \"RandomSampler\"; %s };", body);
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse(text, "test.cfg", &err);
    cr_assert_not_null(root, "%s", err.msg);
    md_bbox_sampler *s = md_build_from_cfg(ctx, "bbox_samplers", md_cfg_get(root, "s"), NULL, &err);
    md_cfg_free(root);
    cr_assert_not_null(s, "%s", err.msg);
    return s;
}

/* N boxes (box i = [i, i, i + 10, i + 10]), 3 gts; the first n_pos boxes are
 * positives of gt i % 3, then n_ign ignored (-1), the rest negatives. */
typedef struct fixture { md_tensor *boxes, *gt, *gt_labels; md_assign_result ar; } fixture;
static fixture make(int64_t n, int64_t n_pos, int64_t n_ign) {
    fixture f;
    f.boxes = md_tensor_empty(ctx, MD_F32, MD_DIMS(n, 4));
    f.gt = md_tensor_empty(ctx, MD_F32, MD_DIMS(3, 4));
    f.gt_labels = md_tensor_empty(ctx, MD_I64, MD_DIMS(3));
    f.ar.num_gts = 3;
    f.ar.gt_inds = md_tensor_empty(ctx, MD_I64, MD_DIMS(n));
    f.ar.max_overlaps = md_tensor_zeros(ctx, MD_F32, MD_DIMS(n));
    f.ar.labels = md_tensor_full(ctx, MD_I64, MD_DIMS(n), -1);
    for (int64_t i = 0; i < n; i++) {
        float *b = md_f32(f.boxes) + 4 * i;
        b[0] = b[1] = (float)i;
        b[2] = b[3] = (float)i + 10;
        md_i64(f.ar.gt_inds)[i] = i < n_pos ? 1 + i % 3 : i < n_pos + n_ign ? -1 : 0;
        if (i < n_pos) md_i64(f.ar.labels)[i] = 10 + i % 3;
    }
    for (int k = 0; k < 3; k++) {
        for (int j = 0; j < 4; j++) md_f32(f.gt)[4 * k + j] = 1000.0f * (k + 1) + j;
        md_i64(f.gt_labels)[k] = 10 + k;
    }
    return f;
}

static void check_consistent(const md_sampling_result *r, const fixture *f, int64_t ng) {
    int64_t np = md_tensor_numel(r->pos_inds), nn = md_tensor_numel(r->neg_inds);
    for (int64_t k = 1; k < np; k++) cr_assert_lt(md_i64(r->pos_inds)[k - 1], md_i64(r->pos_inds)[k]);
    for (int64_t k = 1; k < nn; k++) cr_assert_lt(md_i64(r->neg_inds)[k - 1], md_i64(r->neg_inds)[k]);
    for (int64_t k = 0; k < np; k++) {
        int64_t i = md_i64(r->pos_inds)[k], g = md_i64(r->pos_assigned_gt_inds)[k];
        bool is_gt = i < ng;
        cr_assert_eq(md_u8(r->pos_is_gt)[k], is_gt);
        int64_t want_g = is_gt ? i : md_i64(f->ar.gt_inds)[i - ng] - 1;
        cr_assert_eq(g, want_g, "positive %lld: gt %lld, expected %lld", (long long)i, (long long)g, (long long)want_g);
        cr_assert_eq(md_i64(r->pos_gt_labels)[k], 10 + g);
        for (int j = 0; j < 4; j++) {
            float want = is_gt ? md_f32(f->gt)[4 * i + j] : md_f32(f->boxes)[4 * (i - ng) + j];
            cr_assert_eq(md_f32(r->pos_bboxes)[4 * k + j], want);
            cr_assert_eq(md_f32(r->pos_gt_bboxes)[4 * k + j], md_f32(f->gt)[4 * g + j]);
        }
    }
    for (int64_t k = 0; k < nn; k++) {
        int64_t i = md_i64(r->neg_inds)[k];
        cr_assert_geq(i, ng);
        cr_assert_eq(md_i64(f->ar.gt_inds)[i - ng], 0, "negative %lld is not a negative", (long long)i);
        cr_assert_eq(md_f32(r->neg_bboxes)[4 * k], (float)(i - ng));
    }
}

Test(random_sampler, counts_and_gt_as_proposals) {
    md_bbox_sampler *s = build("num = 16; pos_fraction = 0.25;");   /* add_gt_as_proposals default true */
    fixture f = make(100, 20, 10);
    md_rng rng;
    md_rng_seed(&rng, 1);
    md_sampling_result r;
    md_error err = { 0 };
    cr_assert_eq(md_bbox_sample(ctx, s, &f.ar, f.boxes, f.gt, f.gt_labels, &rng, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(md_tensor_numel(r.pos_inds), 4);      /* int(16 * 0.25) of 23 candidates */
    cr_assert_eq(md_tensor_numel(r.neg_inds), 12);
    check_consistent(&r, &f, 3);
    MD_BBOX_DESTROY(s);

    /* few positives: all taken (the 3 gts + 2), negatives fill up to num */
    s = build("num = 16; pos_fraction = 0.5; add_gt_as_proposals = true;");
    f = make(40, 2, 0);
    cr_assert_eq(md_bbox_sample(ctx, s, &f.ar, f.boxes, f.gt, f.gt_labels, &rng, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(md_tensor_numel(r.pos_inds), 5);
    for (int k = 0; k < 5; k++) cr_assert_eq(md_i64(r.pos_inds)[k], k);
    cr_assert_eq(md_tensor_numel(r.neg_inds), 11);
    check_consistent(&r, &f, 3);
    MD_BBOX_DESTROY(s);

    /* neg_pos_ub bounds negatives per positive; without gts added */
    s = build("num = 64; pos_fraction = 0.5; neg_pos_ub = 3; add_gt_as_proposals = false;");
    f = make(200, 4, 0);
    cr_assert_eq(md_bbox_sample(ctx, s, &f.ar, f.boxes, f.gt, f.gt_labels, &rng, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(md_tensor_numel(r.pos_inds), 4);
    cr_assert_eq(md_tensor_numel(r.neg_inds), 12);
    check_consistent(&r, &f, 0);
    /* no positives at all: the bound uses max(1, 0) */
    f = make(200, 0, 0);
    cr_assert_eq(md_bbox_sample(ctx, s, &f.ar, f.boxes, f.gt, f.gt_labels, &rng, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(md_tensor_numel(r.pos_inds), 0);
    cr_assert_eq(md_tensor_numel(r.neg_inds), 3);
    MD_BBOX_DESTROY(s);
}

Test(random_sampler, deterministic_for_a_seed_and_uniform) {
    md_bbox_sampler *s = build("num = 8; pos_fraction = 0.5; add_gt_as_proposals = false;");
    fixture f = make(60, 20, 0);
    md_rng a, b;
    md_rng_seed(&a, 7);
    md_rng_seed(&b, 7);
    md_sampling_result ra, rb;
    md_error err = { 0 };
    cr_assert_eq(md_bbox_sample(ctx, s, &f.ar, f.boxes, f.gt, f.gt_labels, &a, &ra, &err), 0);
    cr_assert_eq(md_bbox_sample(ctx, s, &f.ar, f.boxes, f.gt, f.gt_labels, &b, &rb, &err), 0);
    assert_equal(ra.pos_inds, rb.pos_inds, "same seed, same positives");
    assert_equal(ra.neg_inds, rb.neg_inds, "same seed, same negatives");
    /* 4 of 20 positives and 4 of 40 negatives per draw: each candidate is
     * chosen with probability 0.2 and 0.1; over 4000 draws the counts are
     * binomial (sd 25 and 19), allowed 5 sd */
    int cnt[60] = { 0 };
    for (int t = 0; t < 4000; t++) {
        size_t mark = md_ctx_arena_mark(ctx);
        cr_assert_eq(md_bbox_sample(ctx, s, &f.ar, f.boxes, f.gt, f.gt_labels, &a, &ra, &err), 0);
        for (int k = 0; k < 4; k++) cnt[md_i64(ra.pos_inds)[k]]++, cnt[md_i64(ra.neg_inds)[k]]++;
        md_ctx_arena_release(ctx, mark);
    }
    for (int i = 0; i < 60; i++) {
        double p = i < 20 ? 0.2 : 0.1, mean = 4000 * p, sd = sqrt(4000 * p * (1 - p));
        cr_assert_lt(fabs(cnt[i] - mean), 5 * sd, "candidate %d chosen %d times, expected %g", i, cnt[i], mean);
    }
    MD_BBOX_DESTROY(s);
}

Test(random_sampler, errors) {
    md_error err = { 0 };
    md_cfg *root = md_cfg_parse("s = { type = \"RandomSampler\"; num = 0; pos_fraction = 0.5; };", "t.cfg", &err);
    cr_assert_null(md_build_from_cfg(ctx, "bbox_samplers", md_cfg_get(root, "s"), NULL, &err));
    cr_assert(strstr(err.msg, "num"), "%s", err.msg);
    md_cfg_free(root);
    md_bbox_sampler *s = build("num = 8; pos_fraction = 0.5;");
    fixture f = make(10, 2, 0);
    md_rng rng;
    md_rng_seed(&rng, 1);
    md_sampling_result r;
    cr_assert_neq(md_bbox_sample(ctx, s, &f.ar, f.boxes, f.gt, NULL, &rng, &r, &err), 0);
    cr_assert(strstr(err.msg, "gt_labels"), "%s", err.msg);
    MD_BBOX_DESTROY(s);
}
