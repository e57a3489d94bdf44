/* mmdet 2.x's CascadeRoIHead, bbox branch (mmdet/models/roi_heads/
 * cascade_roi_head.py), composed from the RoI-head parts (roi_head.h): a
 * stage is a RoI extractor and a bbox head (ModuleLists, so state dict
 * names are roi_head.bbox_head.N.*), with its own assigner, sampler and
 * pos_weight from train_cfg.rcnn[N].
 *
 * Training, per stage: assign and sample the proposals, pool the sampled
 * RoIs, the bbox head's targets and losses (named sN.loss_cls, sN.acc,
 * sN.loss_bbox; the losses times stage_loss_weights[N]), then, below the
 * last stage and with grad off, the proposals of the next stage: the
 * sampled RoIs regressed by the class of their targets (a background RoI
 * by its best object class), clipped to the image, the gts the sampler
 * added dropped (BBoxHead.refine_bboxes).
 *
 * Testing: every stage scores the RoIs, which each stage but the last
 * regresses by its best object class; the stages' raw cls_score outputs
 * are averaged and the last stage's get_bboxes decodes the last stage's
 * deltas from the RoIs it was given. Test-time augmentation runs that
 * cascade on the proposals mapped into each variant, and the base's
 * merge (md_roi_head_aug_test_bboxes) averages the last head's boxes and
 * scores over the variants.
 */
#include <stdio.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/roi_head.h>

#define MAX_STAGES 8

typedef struct cascade {
    md_module base;
    int num_stages;
    const md_cfg *stage_loss_weights, *bbox_roi_extractor, *bbox_head, *mask_roi_extractor, *mask_head,
        *shared_head, *train_cfg, *test_cfg_cfg, *init_cfg;
    double weight[MAX_STAGES], pos_weight[MAX_STAGES];
    md_module *extractor[MAX_STAGES], *head[MAX_STAGES];
    md_bbox_assigner *assigner[MAX_STAGES];   /* NULL without a train_cfg */
    md_bbox_sampler *sampler[MAX_STAGES];
    bool has_test_cfg;
    md_rcnn_test_cfg test_cfg;
} cascade;

static const md_key keys[] = {
    { "num_stages", MD_KEY_INT, NULL, "stages of the cascade", true, MD_AT(cascade, num_stages), .min = "1",
      .max = "8" },
    { "stage_loss_weights", MD_KEY_LIST, NULL, "each stage's loss weight (num_stages numbers)", true,
      MD_AT(cascade, stage_loss_weights) },
    { "bbox_roi_extractor", MD_KEY_ANY, NULL, "RoI extractor (roi_extractors registry), one for every stage or a "
      "list of num_stages", true, MD_AT(cascade, bbox_roi_extractor) },
    { "bbox_head", MD_KEY_ANY, NULL, "bbox head (heads registry), one for every stage or a list of num_stages",
      true, MD_AT(cascade, bbox_head) },
    { "mask_roi_extractor", MD_KEY_ANY, "None", "only None", false, MD_AT(cascade, mask_roi_extractor) },
    { "mask_head", MD_KEY_ANY, "None", "only None", false, MD_AT(cascade, mask_head) },
    { "shared_head", MD_KEY_ANY, "None", "only None (as mmdet's cascade)", false, MD_AT(cascade, shared_head) },
    { "train_cfg", MD_KEY_ANY, "None", "a list of num_stages { assigner, sampler, pos_weight } (train_cfg.rcnn)",
      false, MD_AT(cascade, train_cfg) },
    { "test_cfg", MD_KEY_ANY, "None", "score_thr, nms, max_per_img (test_cfg.rcnn)", false,
      MD_AT(cascade, test_cfg_cfg) },
    { "pretrained", MD_KEY_ANY, "None", "unused", false, .field = MD_FIELD_NONE },
    { "init_cfg", MD_KEY_ANY, "None", "Pretrained loads a checkpoint", false, MD_AT(cascade, init_cfg) },
    { 0 } };

/* ---- build ---- */

/* Stage s's config of `key`: the one group, or item s of a list of
 * num_stages groups. */
static const md_cfg *stage_cfg(const cascade *h, const md_cfg *c, const char *key, int s, md_error *err) {
    if (md_cfg_kind(c) == MD_CFG_GROUP) return c;
    if (md_cfg_kind(c) != MD_CFG_LIST || md_cfg_len(c) != h->num_stages) {
        md_failc(err, MD_ERR_CONFIG, "%s: expected a group or a list of num_stages = %d groups", key, h->num_stages);
        return NULL;
    }
    const md_cfg *item = md_cfg_at(c, s);
    if (md_cfg_kind(item) != MD_CFG_GROUP) {
        md_failc(err, MD_ERR_CONFIG, "%s.%d: expected a group", key, s);
        return NULL;
    }
    return item;
}

static const md_module_class list_class = { .name = "ModuleList" };

/* The ModuleList `key` with stage s's part of `registry` as child "s". */
static md_module *add_stage_part(md_ctx *ctx, cascade *h, const char *registry, const char *key, const md_cfg *c,
                                 int s, md_error *err) {
    md_module *list = md_module_child(&h->base, key);
    if (!list) {
        if (!(list = md_module_new(sizeof(md_module), &list_class))) {
            md_failc(err, MD_ERR_NOMEM, "out of memory");
            return NULL;
        }
        if (md_module_add_child(&h->base, key, list, err)) {
            md_module_free(list);
            return NULL;
        }
    }
    const md_cfg *sc = stage_cfg(h, c, key, s, err);
    if (!sc) return NULL;
    const md_class *k = md_registry_find(ctx, registry, md_cfg_str(sc, "type", ""), err);
    uint32_t want = strcmp(registry, "heads") ? MD_IFACE_ROI_EXTRACTOR : MD_IFACE_BBOX_HEAD;
    if (!k) return md_error_wrap(err, "%s.%d", key, s), NULL;
    if (k->iface_type != want) {
        md_failc(err, MD_ERR_CONFIG, "%s.%d: %s is not a %s", key, s, k->name,
                 want == MD_IFACE_BBOX_HEAD ? "bbox head" : "RoI extractor");
        return NULL;
    }
    md_module *p = md_build_from_cfg(ctx, registry, sc, NULL, err);
    char name[16];
    snprintf(name, sizeof name, "%d", s);
    if (!p || md_module_add_child(list, name, p, err)) {
        if (p) md_module_free(p);
        md_error_wrap(err, "%s.%d", key, s);
        return NULL;
    }
    return p;
}

static const md_roi_head_class cascade_cls;

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    cascade *h = md_module_new(sizeof *h, &cascade_cls.model.module);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    md_module *m = &h->base;
    if (md_cfg_read_struct(cfg, keys, h, "CascadeRoIHead", err) || md_init_cfg_check(h->init_cfg, "init_cfg", err))
        goto fail;
    if (h->mask_roi_extractor || h->mask_head || h->shared_head) {
        md_failc(err, MD_ERR_CONFIG, "%s is not supported (bbox branch only)",
                 h->mask_head ? "mask_head" : h->mask_roi_extractor ? "mask_roi_extractor" : "shared_head");
        goto fail;
    }
    int S = h->num_stages;
    int nw = md_cfg_float_array(cfg, "stage_loss_weights", h->weight, MAX_STAGES, err);
    if (nw < 0) goto fail;
    if (nw != S) {
        md_failc(err, MD_ERR_CONFIG, "stage_loss_weights: %d weights for num_stages = %d", nw, S);
        goto fail;
    }
    for (int s = 0; s < S; s++)
        if (!(h->extractor[s] = add_stage_part(ctx, h, "roi_extractors", "bbox_roi_extractor", h->bbox_roi_extractor,
                                               s, err)) ||
            !(h->head[s] = add_stage_part(ctx, h, "heads", "bbox_head", h->bbox_head, s, err)))
            goto fail;
    if (h->train_cfg) {
        if (md_cfg_kind(h->train_cfg) != MD_CFG_LIST || md_cfg_len(h->train_cfg) != S) {
            md_failc(err, MD_ERR_CONFIG, "train_cfg: expected a list of num_stages = %d groups (train_cfg.rcnn, one "
                     "per stage)", S);
            goto fail;
        }
        for (int s = 0; s < S; s++) {
            const md_cfg *tc = md_cfg_at(h->train_cfg, s);
            h->pos_weight[s] = md_cfg_float(tc, "pos_weight", -1);
            if (!(h->assigner[s] = md_build_part(ctx, "bbox_assigners", tc, "assigner", err)) ||
                !(h->sampler[s] = md_build_part(ctx, "bbox_samplers", tc, "sampler", err))) {
                md_error_wrap(err, "train_cfg.%d", s);
                goto fail;
            }
        }
    }
    if (h->test_cfg_cfg) {
        h->has_test_cfg = true;
        md_rcnn_test_cfg_read(h->test_cfg_cfg, &h->test_cfg);
    }
    md_module_train(m, true);
    return m;
fail:
    md_module_free(m);
    return NULL;
}

static void destroy(md_module *m) {
    cascade *h = (cascade *)m;
    for (int s = 0; s < h->num_stages && s < MAX_STAGES; s++) {
        MD_BBOX_DESTROY(h->assigner[s]);
        MD_BBOX_DESTROY(h->sampler[s]);
    }
}

static int init_weights(md_ctx *ctx, md_module *m, md_error *err) {
    cascade *h = (cascade *)m;
    for (int s = 0; s < h->num_stages; s++)
        if (md_model_init_weights(ctx, h->head[s], err)) return -1;
    return md_init_cfg_pretrained(ctx, m, h->init_cfg, m->cls->name, err) < 0 ? -1 : 0;
}

/* Stage s's _bbox_forward. */
static int stage_forward(md_ctx *ctx, cascade *h, int s, md_tensor *const *feats, int n_feats, md_tensor *rois,
                         md_tensor **cls, md_tensor **reg) {
    return md_roi_head_bbox_forward(ctx, h->extractor[s], h->head[s], feats, n_feats, rois, cls, reg);
}

/* Each row's best object class (background excluded), on the host. */
static md_tensor *best_class(md_ctx *ctx, md_tensor *cls_score) {
    int64_t C = cls_score->shape[1] - 1;
    return md_contiguous(ctx, md_tensor_to(ctx, md_argmax(ctx, md_slice(ctx, cls_score, 1, 0, C, 1), 1, false),
                                           MD_DEVICE_CPU));
}

/* ---- training ---- */

static int forward_train(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats, const md_batch *batch,
                         md_tensor *const *proposals, md_rng *rng, md_losses *losses, md_error *err) {
    cascade *h = (cascade *)m;
    if (!h->assigner[0])
        return md_failc(err, MD_ERR_CONFIG, "CascadeRoIHead: training needs train_cfg (train_cfg.rcnn, one per stage)");
    int N = batch->n;
    md_sampling_result *sr = md_ctx_alloc(ctx, sizeof *sr * (size_t)N);
    md_tensor **props = md_ctx_alloc(ctx, sizeof *props * (size_t)N), **sampled = md_ctx_alloc(ctx, sizeof *sampled * (size_t)N);
    if (!sr || !props || !sampled) return md_error_from_ctx(ctx, err, "CascadeRoIHead");
    memcpy(props, proposals, sizeof *props * (size_t)N);
    for (int s = 0; s < h->num_stages; s++) {
        if (md_roi_head_assign_sample(ctx, h->assigner[s], h->sampler[s], batch, props, rng, sr, err))
            return md_error_wrap(err, "CascadeRoIHead: stage %d", s);
        bool was = md_grad_set_enabled(ctx, false);
        for (int i = 0; i < N; i++) sampled[i] = md_cat(ctx, (md_tensor *[]){ sr[i].pos_bboxes, sr[i].neg_bboxes }, 2, 0);
        md_tensor *rois = md_bbox2roi(ctx, sampled, N);
        md_grad_set_enabled(ctx, was);
        md_tensor *cls = NULL, *reg = NULL;
        if (!rois || stage_forward(ctx, h, s, feats, n_feats, rois, &cls, &reg))
            return md_error_from_ctx(ctx, err, "CascadeRoIHead: stage %d", s);
        const md_bbox_head_class *bc = md_bbox_head_class_of(h->head[s]);
        md_bbox_targets t;
        md_losses stage = { 0 };
        if (bc->get_targets(ctx, h->head[s], sr, N, h->pos_weight[s], &t))
            return md_error_from_ctx(ctx, err, "CascadeRoIHead: bbox_head.%d.get_targets", s);
        if (bc->loss(ctx, h->head[s], cls, reg, &t, &stage, err)) return md_error_wrap(err, "bbox_head.%d", s);
        for (int k = 0; k < stage.n; k++) {
            char name[sizeof stage.names[0]];
            snprintf(name, sizeof name, "s%d.%s", s, stage.names[k]);
            md_tensor *v = strstr(stage.names[k], "loss") ? md_mul_scalar(ctx, stage.values[k], h->weight[s])
                                                          : stage.values[k];
            if (!v) return md_error_from_ctx(ctx, err, "CascadeRoIHead: %s", name);
            if (md_losses_add(losses, name, v, err)) return -1;
        }
        if (s == h->num_stages - 1 || cls->shape[0] == 0) break;
        /* the next stage's proposals: background RoIs take their best
         * object class, every RoI moves by its class's deltas */
        was = md_grad_set_enabled(ctx, false);
        md_tensor *best = best_class(ctx, cls), *tl = md_contiguous(ctx, md_tensor_to(ctx, t.labels, MD_DEVICE_CPU));
        md_tensor *labels = tl ? md_tensor_empty(ctx, MD_I64, MD_DIMS(tl->shape[0])) : NULL;
        int rc = -1;
        if (best && labels) {
            int64_t C = bc->num_classes(h->head[s]);
            for (int64_t k = 0; k < labels->shape[0]; k++)
                md_i64(labels)[k] = md_i64(tl)[k] == C ? md_i64(best)[k] : md_i64(tl)[k];
            rc = md_bbox_head_refine_bboxes(ctx, h->head[s], rois, labels, reg, sr, N, batch->metas, props);
        }
        md_grad_set_enabled(ctx, was);
        if (rc) return md_error_from_ctx(ctx, err, "CascadeRoIHead: refine_bboxes of stage %d", s);
    }
    return 0;
}

/* ---- testing ---- */

/* The cascade on rois [K, 5] of n images (counts[i] rows each, metas for
 * their img_shape): *rois_out the last stage's RoIs, *cls the stages'
 * mean cls_score, *reg the last stage's bbox_pred. */
static int cascade_test(md_ctx *ctx, cascade *h, md_tensor *const *feats, int n_feats, md_tensor *rois,
                        const int64_t *counts, int n, const md_img_meta *metas, md_tensor **rois_out,
                        md_tensor **cls_out, md_tensor **reg_out) {
    md_tensor *sum = NULL, *cls = NULL, *reg = NULL;
    md_tensor **parts = md_ctx_alloc(ctx, sizeof *parts * (size_t)n);
    if (!parts) return -1;
    for (int s = 0; s < h->num_stages; s++) {
        if (stage_forward(ctx, h, s, feats, n_feats, rois, &cls, &reg)) return -1;
        sum = sum ? md_add(ctx, sum, cls) : cls;
        if (s == h->num_stages - 1) break;
        md_tensor *best = best_class(ctx, cls);
        if (!best) return -1;
        const md_bbox_head_class *bc = md_bbox_head_class_of(h->head[s]);
        if (!bc->regress_by_class)
            return md_op_fail(ctx, "CascadeRoIHead", "bbox_head.%d (%s) has no regress_by_class", s,
                              h->head[s]->cls->name), -1;
        int64_t off = 0;
        for (int i = 0; i < n; off += counts[i], i++) {
            const int shape[2] = { metas[i].img_shape[0], metas[i].img_shape[1] };
            parts[i] = bc->regress_by_class(ctx, h->head[s], md_slice(ctx, rois, 0, off, off + counts[i], 1),
                                            md_slice(ctx, best, 0, off, off + counts[i], 1),
                                            md_slice(ctx, reg, 0, off, off + counts[i], 1), shape);
            if (!parts[i]) return -1;
        }
        if (!(rois = md_cat(ctx, parts, n, 0))) return -1;
    }
    *rois_out = rois;
    *cls_out = md_mul_scalar(ctx, sum, 1.0 / h->num_stages);
    *reg_out = reg;
    return *cls_out ? 0 : -1;
}

static int simple_test(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats, const md_batch *batch,
                       md_tensor *const *proposals, bool rescale, md_tensor **det_bboxes, md_tensor **det_labels,
                       md_error *err) {
    cascade *h = (cascade *)m;
    if (!h->has_test_cfg) return md_failc(err, MD_ERR_CONFIG, "CascadeRoIHead: simple_test needs test_cfg");
    int N = batch->n;
    int64_t *counts = md_ctx_alloc(ctx, sizeof *counts * (size_t)N);
    md_tensor *rois = md_bbox2roi(ctx, proposals, N), *cls = NULL, *reg = NULL;
    if (!counts || !rois) return md_error_from_ctx(ctx, err, "CascadeRoIHead");
    for (int i = 0; i < N; i++) counts[i] = proposals[i]->shape[0];
    if (rois->shape[0] > 0 && cascade_test(ctx, h, feats, n_feats, rois, counts, N, batch->metas, &rois, &cls, &reg))
        return md_error_from_ctx(ctx, err, "CascadeRoIHead");
    md_module *last = h->head[h->num_stages - 1];
    int64_t off = 0;
    for (int i = 0; i < N; off += counts[i], i++) {
        if (counts[i] == 0) {
            det_bboxes[i] = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 5));
            det_labels[i] = md_tensor_zeros(ctx, MD_I64, MD_DIMS(0));
            if (!det_bboxes[i] || !det_labels[i]) return md_error_from_ctx(ctx, err, "CascadeRoIHead");
            continue;
        }
        const md_img_meta *mt = &batch->metas[i];
        int shape[2] = { mt->img_shape[0], mt->img_shape[1] };
        int64_t e = off + counts[i];
        if (md_bbox_head_class_of(last)->get_bboxes(ctx, last, md_slice(ctx, rois, 0, off, e, 1),
                                                    md_slice(ctx, cls, 0, off, e, 1), md_slice(ctx, reg, 0, off, e, 1),
                                                    shape, mt->scale_factor, rescale, &h->test_cfg, &det_bboxes[i],
                                                    &det_labels[i]))
            return md_error_from_ctx(ctx, err, "CascadeRoIHead: bbox_head.%d.get_bboxes", h->num_stages - 1);
    }
    return 0;
}

/* A test-time variant: the cascade on that variant's RoIs, boxes and
 * scores without NMS from the last head. */
static int aug_variant(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats, const md_batch *bk,
                       md_tensor *rois, const int64_t *counts, md_tensor **boxes, md_tensor **scores) {
    cascade *h = (cascade *)m;
    md_tensor *cls, *reg;
    if (cascade_test(ctx, h, feats, n_feats, rois, counts, bk->n, bk->metas, &rois, &cls, &reg)) return -1;
    return md_bbox_head_raw_bboxes_per_image(ctx, h->head[h->num_stages - 1], rois, cls, reg, counts, bk, boxes,
                                             scores);
}

static int aug_test(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n_feats, md_batch *batch,
                    md_tensor *const *proposals, bool rescale, md_tensor **det_bboxes, md_tensor **det_labels,
                    md_error *err) {
    cascade *h = (cascade *)m;
    if (!h->has_test_cfg) return md_failc(err, MD_ERR_CONFIG, "CascadeRoIHead: aug_test needs test_cfg");
    md_module *last = h->head[h->num_stages - 1];
    const md_bbox_head_class *bc = md_bbox_head_class_of(last);
    if (!bc->get_raw_bboxes)
        return md_failc(err, MD_ERR_CONFIG, "CascadeRoIHead: bbox_head.%d (%s) has no test-time augmentation",
                        h->num_stages - 1, last->cls->name);
    /* mmdet's cascade aug_test returns the merged boxes in the original
     * image's pixels whatever rescale says */
    (void)rescale;
    return md_roi_head_aug_test_bboxes(ctx, m, feats, n_feats, batch, proposals, true, bc->num_classes(last),
                                       &h->test_cfg, aug_variant, det_bboxes, det_labels, err);
}

/* mmdet's CascadeRoIHead.forward_dummy: every stage's bbox branch on the
 * same rois. */
static int forward_dummy(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats, md_tensor *proposals,
                         md_error *err) {
    cascade *h = (cascade *)m;
    md_tensor *rois = md_bbox2roi(ctx, &proposals, 1), *cls, *reg;
    for (int s = 0; rois && s < h->num_stages; s++)
        if (stage_forward(ctx, h, s, feats, n_feats, rois, &cls, &reg)) return md_error_from_ctx(ctx, err, "stage %d", s);
    return rois ? 0 : md_error_from_ctx(ctx, err, NULL);
}

static const md_roi_head_class cascade_cls = {
    .model = { .module = { .name = "CascadeRoIHead", .destroy = destroy }, .init_weights = init_weights },
    .forward_train = forward_train,
    .simple_test = simple_test,
    .aug_test = aug_test,
    .forward_dummy = forward_dummy,
};

static const md_class cascade_class = { .name = "CascadeRoIHead", .keys = keys, .build = build,
                                        MD_IFACE(&cascade_cls, MD_IFACE_ROI_HEAD),
                                        .doc = "multi-stage RoI head refining its boxes stage by stage (mmdet 2.x)" };

MD_PLUGIN("cascade_roi_head", "1.0", "Apache-2.0");
MD_REGISTER("heads", cascade_class)
