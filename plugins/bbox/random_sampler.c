/* mmdet's RandomSampler (mmdet/core/bbox/samplers/random_sampler.py and
 * base_sampler.py): optionally put the gt boxes first as proposals, then
 * take at most num * pos_fraction positives and fill up to num with
 * negatives (at most neg_pos_ub per positive when neg_pos_ub >= 0), each a
 * uniform random subset of its candidates. mmdet draws with torch.randperm;
 * here the caller's md_rng draws (deterministic for a seed), so subsets are
 * distributed alike but not the same as PyTorch's. Indices come out
 * ascending, as mmdet's unique() leaves them. */
#include <stdlib.h>
#include <string.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>

typedef struct random_sampler {
    md_bbox_sampler base;
    int64_t num, neg_pos_ub;
    double pos_fraction;
    bool add_gt;
} random_sampler;

static const md_key keys[] = {
    { "num", MD_KEY_INT, NULL, "boxes sampled per image", true, MD_AT(random_sampler, num), .min = "1" },
    { "pos_fraction", MD_KEY_FLOAT, NULL, "largest fraction of positives", true, MD_AT(random_sampler, pos_fraction),
      .min = "0", .max = "1" },
    { "neg_pos_ub", MD_KEY_INT, "-1", "most negatives per positive (-1: no bound)", false,
      MD_AT(random_sampler, neg_pos_ub) },
    { "add_gt_as_proposals", MD_KEY_BOOL, "true", "add the gt boxes as proposals first", false,
      MD_AT(random_sampler, add_gt) },
    { 0 } };

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Keeps a uniform random subset of `want` of the n candidates in c (partial
 * Fisher-Yates), sorted ascending; returns the count kept. */
static int64_t choose(int64_t *c, int64_t n, int64_t want, md_rng *rng) {
    if (want < 0) want = 0;
    if (n > want) {
        for (int64_t i = 0; i < want; i++) {
            int64_t j = i + md_rng_int(rng, n - i), t = c[i];
            c[i] = c[j];
            c[j] = t;
        }
        n = want;
    }
    qsort(c, (size_t)n, sizeof *c, cmp_i64);
    return n;
}

static int sample(md_ctx *ctx, const md_bbox_sampler *bs, const md_assign_result *ar, md_tensor *bboxes,
                  md_tensor *gt_bboxes, md_tensor *gt_labels, md_rng *rng, md_sampling_result *out, md_error *err) {
    const random_sampler *s = (const random_sampler *)bs;
    memset(out, 0, sizeof *out);
    /* sampling is host logic on CPU copies; the results are CPU tensors */
    bboxes = md_tensor_to(ctx, bboxes, MD_DEVICE_CPU);
    gt_bboxes = md_tensor_to(ctx, gt_bboxes, MD_DEVICE_CPU);
    gt_labels = md_tensor_to(ctx, gt_labels, MD_DEVICE_CPU);
    if (!ar || !ar->gt_inds || !bboxes || !gt_bboxes || !rng || bboxes->ndim != 2 || bboxes->shape[1] < 4 ||
        bboxes->shape[0] != md_tensor_numel(ar->gt_inds) || gt_bboxes->ndim != 2 || gt_bboxes->shape[1] != 4)
        return md_failc(err, MD_ERR_SHAPE, "RandomSampler: bboxes must be [N, 4 or 5] with N the assigned count, "
                        "gt_bboxes [K, 4], and an rng given");
    int64_t n0 = bboxes->shape[0], G = gt_bboxes->shape[0];
    bool was = md_grad_set_enabled(ctx, false);
    md_tensor *boxes = md_contiguous(ctx, bboxes->shape[1] == 4 ? bboxes : md_slice(ctx, bboxes, 1, 0, 4, 1));
    md_tensor *gtc = md_contiguous(ctx, gt_bboxes);
    int64_t ng = s->add_gt && G > 0 ? G : 0, n = n0 + ng;
    if (ng && !gt_labels) {
        md_grad_set_enabled(ctx, was);
        return md_failc(err, MD_ERR_CONFIG, "RandomSampler: add_gt_as_proposals needs gt_labels");
    }
    if (ng && boxes) {
        md_tensor *parts[2] = { gtc, boxes };
        boxes = md_cat(ctx, parts, 2, 0);
    }
    /* the assignment with the gts prepended (AssignResult.add_gt_) */
    int64_t *gi = md_ctx_alloc(ctx, (size_t)(n ? n : 1) * sizeof *gi);
    int64_t *lab = ar->labels ? md_ctx_alloc(ctx, (size_t)(n ? n : 1) * sizeof *lab) : NULL;
    int64_t *pc = md_ctx_alloc(ctx, (size_t)(n ? n : 1) * sizeof *pc), *nc = md_ctx_alloc(ctx, (size_t)(n ? n : 1) * sizeof *nc);
    md_tensor *gl = ng && ar->labels ? md_contiguous(ctx, gt_labels) : NULL;
    if (!boxes || !gtc || !gi || !pc || !nc || (ar->labels && !lab) || (ng && ar->labels && !gl)) goto op_failed;
    for (int64_t i = 0; i < ng; i++) {
        gi[i] = i + 1;
        if (lab) lab[i] = md_i64(gl)[i];
    }
    for (int64_t i = 0; i < n0; i++) {
        gi[ng + i] = md_i64(ar->gt_inds)[i];
        if (lab) lab[ng + i] = md_i64(ar->labels)[i];
    }
    int64_t npc = 0, nnc = 0;
    for (int64_t i = 0; i < n; i++) {
        if (gi[i] > 0) pc[npc++] = i;
        else if (gi[i] == 0) nc[nnc++] = i;
    }
    int64_t np = choose(pc, npc, (int64_t)((double)s->num * s->pos_fraction), rng);
    int64_t want_neg = s->num - np;
    if (s->neg_pos_ub >= 0) {
        int64_t ub = s->neg_pos_ub * (np > 1 ? np : 1);
        if (want_neg > ub) want_neg = ub;
    }
    int64_t nn = choose(nc, nnc, want_neg, rng);

    out->num_gts = ar->num_gts;
    out->pos_inds = md_tensor_from(ctx, MD_I64, MD_DIMS(np), pc);
    out->neg_inds = md_tensor_from(ctx, MD_I64, MD_DIMS(nn), nc);
    out->pos_assigned_gt_inds = md_tensor_empty(ctx, MD_I64, MD_DIMS(np));
    out->pos_is_gt = md_tensor_empty(ctx, MD_U8, MD_DIMS(np));
    if (lab) out->pos_gt_labels = md_tensor_empty(ctx, MD_I64, MD_DIMS(np));
    if (!out->pos_inds || !out->neg_inds || !out->pos_assigned_gt_inds || !out->pos_is_gt ||
        (lab && !out->pos_gt_labels))
        goto op_failed;
    for (int64_t k = 0; k < np; k++) {
        int64_t i = pc[k];
        md_i64(out->pos_assigned_gt_inds)[k] = gi[i] - 1;
        md_u8(out->pos_is_gt)[k] = i < ng;
        if (lab) md_i64(out->pos_gt_labels)[k] = lab[i];
    }
    out->pos_bboxes = md_index_select(ctx, boxes, 0, out->pos_inds);
    out->neg_bboxes = md_index_select(ctx, boxes, 0, out->neg_inds);
    out->pos_gt_bboxes = G == 0 ? md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 4))
                                : md_index_select(ctx, gtc, 0, out->pos_assigned_gt_inds);
    if (!out->pos_bboxes || !out->neg_bboxes || !out->pos_gt_bboxes) goto op_failed;
    md_grad_set_enabled(ctx, was);
    return 0;
op_failed:
    md_grad_set_enabled(ctx, was);
    return md_error_from_ctx(ctx, err, "RandomSampler");
}

static void destroy(md_bbox_sampler *s) { free(s); }
static const md_bbox_sampler_iface iface = { .sample = sample, .destroy = destroy };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    random_sampler *s = md_object_new(sizeof *s, &iface, "RandomSampler", cfg, keys, err);
    if (!s) return NULL;
    return &s->base;
}

static const md_class cls = { .name = "RandomSampler", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_BBOX_SAMPLER),
                              .doc = "random positives (up to num * pos_fraction) and negatives (mmdet 2.x)" };
MD_PLUGIN("random_sampler", "1.0", "Apache-2.0");
MD_REGISTER("bbox_samplers", cls)
