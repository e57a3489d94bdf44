/* mmdet's StandardRoIHead, bbox branch (mmdet/models/roi_heads/
 * standard_roi_head.py): per image assign the proposals (gts added as
 * proposals by the sampler), sample, pool the sampled RoIs with
 * bbox_roi_extractor, run bbox_head and its losses; at test time pool the
 * proposals and decode per image. Children: bbox_roi_extractor (no
 * parameters) and bbox_head, so names are roi_head.bbox_head.*.
 */
#include <stdlib.h>
#include <string.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>
#include <mmdet/roi_head.h>

static const md_key keys[] = {
    { "bbox_roi_extractor", MD_KEY_GROUP, NULL, "RoI extractor (roi_extractors registry)", true },
    { "bbox_head", MD_KEY_GROUP, NULL, "bbox head (heads registry)", true },
    { "mask_roi_extractor", MD_KEY_ANY, "None", "only None", false },
    { "mask_head", MD_KEY_ANY, "None", "only None", false },
    { "shared_head", MD_KEY_ANY, "None", "only None", false },
    { "train_cfg", MD_KEY_ANY, "None", "assigner, sampler, pos_weight (train_cfg.rcnn)", false },
    { "test_cfg", MD_KEY_ANY, "None", "score_thr, nms, max_per_img (test_cfg.rcnn)", false },
    { "pretrained", MD_KEY_ANY, "None", "unused", false },
    { "init_cfg", MD_KEY_ANY, "None", "Pretrained loads a checkpoint", false },
    { 0 } };

typedef struct roi_head {
    md_module base;
    md_module *extractor, *bbox_head;
    md_bbox_assigner *assigner;
    md_bbox_sampler *sampler;
    double pos_weight;
    bool has_test;
    md_rcnn_test_cfg test;
    md_cfg *init_cfg;
} roi_head;

static md_tensor *boxes_tensor(md_ctx *ctx, const md_boxes *b) {
    if (!b || b->n == 0) return md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 4));
    return md_tensor_from(ctx, MD_F32, MD_DIMS(b->n, 4), b->xyxy);
}

/* bbox2roi: [sum K_i, 5] with the image index first. */
static md_tensor *bbox2roi(md_ctx *ctx, md_tensor *const *boxes, int n) {
    int64_t K = 0;
    for (int i = 0; i < n; i++) K += boxes[i]->shape[0];
    md_tensor *r = md_tensor_empty(ctx, MD_F32, MD_DIMS(K, 5));
    if (!r) return NULL;
    int64_t o = 0;
    for (int i = 0; i < n; i++) {
        md_tensor *b = md_contiguous(ctx, boxes[i]);
        if (!b) return NULL;
        int64_t w = b->shape[1];
        for (int64_t k = 0; k < b->shape[0]; k++, o++) {
            md_f32(r)[5 * o] = (float)i;
            memcpy(md_f32(r) + 5 * o + 1, md_f32(b) + w * k, 4 * sizeof(float));
        }
    }
    return r;
}

static md_tensor *bbox_forward(md_ctx *ctx, roi_head *h, md_tensor *const *feats, int n_feats, md_tensor *rois,
                               md_tensor **cls, md_tensor **reg) {
    const md_roi_extractor_class *ec = md_roi_extractor_class_of(h->extractor);
    int ni = ec->num_inputs(h->extractor);
    md_scope_push(ctx, "bbox_roi_extractor");
    md_tensor *x = ec->forward(ctx, h->extractor, feats, ni < n_feats ? ni : n_feats, rois);
    md_scope_pop(ctx);
    md_scope_push(ctx, "bbox_head");
    md_bbox_head_class_of(h->bbox_head)->forward(ctx, h->bbox_head, x, cls, reg);
    md_scope_pop(ctx);
    return *cls;
}

static int rh_forward_train(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats, const md_batch *batch,
                            md_tensor *const *proposals, md_rng *rng, md_losses *losses, md_error *err) {
    roi_head *h = (roi_head *)m;
    if (!h->assigner || !h->sampler)
        return md_failc(err, MD_ERR_CONFIG, "StandardRoIHead: training needs train_cfg with an assigner and a sampler");
    int N = batch->n;
    md_sampling_result *sr = md_ctx_alloc(ctx, sizeof *sr * (size_t)N);
    md_tensor **sampled = md_ctx_alloc(ctx, sizeof *sampled * (size_t)N);
    if (!sr || !sampled) return md_fail(err, "StandardRoIHead: %s", md_ctx_error(ctx)->msg);
    bool was = md_grad_set_enabled(ctx, false);
    for (int i = 0; i < N; i++) {
        md_tensor *gt = boxes_tensor(ctx, &batch->gt_bboxes[i]);
        md_tensor *labels = batch->gt_bboxes[i].n
                                ? md_tensor_from(ctx, MD_I64, MD_DIMS(batch->gt_bboxes[i].n), batch->gt_bboxes[i].labels)
                                : md_tensor_zeros(ctx, MD_I64, MD_DIMS(0));
        md_tensor *ign = batch->gt_bboxes_ignore && batch->gt_bboxes_ignore[i].n
                             ? boxes_tensor(ctx, &batch->gt_bboxes_ignore[i]) : NULL;
        md_tensor *props = proposals[i] ? md_contiguous(ctx, md_slice(ctx, proposals[i], 1, 0, 4, 1)) : NULL;
        md_assign_result ar;
        if (!gt || !labels || !props) {
            md_grad_set_enabled(ctx, was);
            return md_fail(err, "StandardRoIHead: %s", md_ctx_error(ctx)->msg);
        }
        if (md_bbox_assign(ctx, h->assigner, props, gt, ign, labels, &ar, err) ||
            md_bbox_sample(ctx, h->sampler, &ar, props, gt, labels, rng, &sr[i], err)) {
            md_grad_set_enabled(ctx, was);
            return md_error_wrap(err, "StandardRoIHead image %d", i);
        }
        md_tensor *parts[2] = { sr[i].pos_bboxes, sr[i].neg_bboxes };
        sampled[i] = md_cat(ctx, parts, 2, 0);
    }
    md_tensor *rois = bbox2roi(ctx, sampled, N);
    md_grad_set_enabled(ctx, was);
    if (!rois) return md_fail(err, "StandardRoIHead: %s", md_ctx_error(ctx)->msg);
    md_tensor *cls = NULL, *reg = NULL;
    bbox_forward(ctx, h, feats, n_feats, rois, &cls, &reg);
    if (!cls || !reg) return md_fail(err, "StandardRoIHead: %s", md_ctx_error(ctx)->msg);
    const md_bbox_head_class *bc = md_bbox_head_class_of(h->bbox_head);
    md_bbox_targets t;
    if (bc->get_targets(ctx, h->bbox_head, sr, N, h->pos_weight, &t))
        return md_fail(err, "StandardRoIHead: bbox_head.get_targets: %s", md_ctx_error(ctx)->msg);
    return bc->loss(ctx, h->bbox_head, cls, reg, &t, losses, err);
}

static int rh_simple_test(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats, const md_batch *batch,
                          md_tensor *const *proposals, bool rescale, md_tensor **det_bboxes, md_tensor **det_labels,
                          md_error *err) {
    roi_head *h = (roi_head *)m;
    if (!h->has_test) return md_failc(err, MD_ERR_CONFIG, "StandardRoIHead: simple_test needs test_cfg");
    int N = batch->n;
    md_tensor *rois = bbox2roi(ctx, proposals, N);
    if (!rois) return md_fail(err, "StandardRoIHead: %s", md_ctx_error(ctx)->msg);
    md_tensor *cls = NULL, *reg = NULL;
    if (rois->shape[0] > 0) {
        bbox_forward(ctx, h, feats, n_feats, rois, &cls, &reg);
        if (!cls || !reg) return md_fail(err, "StandardRoIHead: %s", md_ctx_error(ctx)->msg);
    }
    const md_bbox_head_class *bc = md_bbox_head_class_of(h->bbox_head);
    int64_t off = 0;
    for (int i = 0; i < N; i++) {
        int64_t k = proposals[i]->shape[0];
        if (k == 0) {
            det_bboxes[i] = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 5));
            det_labels[i] = md_tensor_zeros(ctx, MD_I64, MD_DIMS(0));
            continue;
        }
        const md_img_meta *mt = &batch->metas[i];
        int shape[2] = { mt->img_shape[0], mt->img_shape[1] };
        if (bc->get_bboxes(ctx, h->bbox_head, md_slice(ctx, rois, 0, off, off + k, 1),
                           md_slice(ctx, cls, 0, off, off + k, 1), md_slice(ctx, reg, 0, off, off + k, 1), shape,
                           mt->scale_factor, rescale, &h->test, &det_bboxes[i], &det_labels[i]))
            return md_fail(err, "StandardRoIHead: bbox_head.get_bboxes: %s", md_ctx_error(ctx)->msg);
        off += k;
    }
    return 0;
}

/* The first four columns of proposals [P, 4 or 5], as a new tensor. */
static md_tensor *boxes_copy(md_ctx *ctx, md_tensor *p) {
    md_tensor *c = md_contiguous(ctx, p);
    md_tensor *out = c ? md_tensor_empty(ctx, MD_F32, MD_DIMS(c->shape[0], 4)) : NULL;
    if (!out) return NULL;
    for (int64_t k = 0; k < c->shape[0]; k++) memcpy(md_f32(out) + 4 * k, md_f32(c) + c->shape[1] * k, 4 * sizeof(float));
    return out;
}

/* BBoxTestMixin.aug_test_bboxes and aug_test's rescale: the merged
 * proposals mapped into every variant (bbox_mapping), boxes and scores
 * without NMS, mapped back and averaged (merge_aug_bboxes), then
 * multiclass NMS with test_cfg. */
static int rh_aug_test(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n_feats, md_batch *batch,
                       md_tensor *const *proposals, bool rescale, md_tensor **det_bboxes, md_tensor **det_labels,
                       md_error *err) {
    roi_head *h = (roi_head *)m;
    if (!h->has_test) return md_failc(err, MD_ERR_CONFIG, "StandardRoIHead: aug_test needs test_cfg");
    const md_bbox_head_class *bc = md_bbox_head_class_of(h->bbox_head);
    if (!bc->get_raw_bboxes)
        return md_failc(err, MD_ERR_CONFIG, "StandardRoIHead: bbox_head %s has no test-time augmentation",
                        h->bbox_head->cls->name);
    int na = md_batch_n_augs(batch), N = batch->n;
    md_tensor **ab = md_ctx_alloc(ctx, sizeof *ab * (size_t)(na * N)), **as = md_ctx_alloc(ctx, sizeof *as * (size_t)(na * N));
    md_tensor **mapped = md_ctx_alloc(ctx, sizeof *mapped * (size_t)N);
    md_tensor **kb = md_ctx_alloc(ctx, sizeof *kb * (size_t)na), **ks = md_ctx_alloc(ctx, sizeof *ks * (size_t)na);
    const md_img_meta **metas = md_ctx_alloc(ctx, sizeof *metas * (size_t)na);
    if (!ab || !as || !mapped || !kb || !ks || !metas) return md_fail(err, "StandardRoIHead: %s", md_ctx_error(ctx)->msg);
    for (int k = 0; k < na; k++) {
        const md_batch *bk = md_batch_aug(batch, k);
        for (int i = 0; i < N; i++) {
            if (!(mapped[i] = boxes_copy(ctx, proposals[i])))
                return md_fail(err, "StandardRoIHead.aug_test: %s", md_ctx_error(ctx)->msg);
            md_bbox_mapping_meta(md_f32(mapped[i]), mapped[i]->shape[0], 4, &bk->metas[i]);
        }
        md_tensor *rois = bbox2roi(ctx, mapped, N), *cls = NULL, *reg = NULL;
        if (rois && rois->shape[0] > 0) bbox_forward(ctx, h, feats[k], n_feats, rois, &cls, &reg);
        if (!rois || (rois->shape[0] > 0 && (!cls || !reg)))
            return md_fail(err, "StandardRoIHead.aug_test: variant %d: %s", k, md_ctx_error(ctx)->msg);
        int64_t off = 0;
        for (int i = 0; i < N; i++) {
            int64_t P = mapped[i]->shape[0];
            ab[k * N + i] = as[k * N + i] = NULL;
            if (P == 0) continue;
            const md_img_meta *mt = &bk->metas[i];
            int shape[2] = { mt->img_shape[0], mt->img_shape[1] };
            if (bc->get_raw_bboxes(ctx, h->bbox_head, md_slice(ctx, rois, 0, off, off + P, 1),
                                   md_slice(ctx, cls, 0, off, off + P, 1), md_slice(ctx, reg, 0, off, off + P, 1),
                                   shape, mt->scale_factor, false, &ab[k * N + i], &as[k * N + i]))
                return md_fail(err, "StandardRoIHead: bbox_head.get_bboxes (variant %d, image %d): %s", k, i,
                               md_ctx_error(ctx)->msg);
            off += P;
        }
    }
    int64_t C = bc->num_classes(h->bbox_head);
    for (int i = 0; i < N; i++) {
        if (proposals[i]->shape[0] == 0) {
            det_bboxes[i] = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 5));
            det_labels[i] = md_tensor_zeros(ctx, MD_I64, MD_DIMS(0));
            if (!det_bboxes[i] || !det_labels[i]) return md_fail(err, "StandardRoIHead: %s", md_ctx_error(ctx)->msg);
            continue;
        }
        for (int k = 0; k < na; k++) {
            kb[k] = ab[k * N + i];
            ks[k] = as[k * N + i];
            metas[k] = &md_batch_aug(batch, k)->metas[i];
        }
        md_tensor *mb, *ms;
        if (md_merge_aug_bboxes(ctx, kb, ks, metas, na, &mb, &ms) ||
            md_multiclass_nms(ctx, mb, ms, C, h->test.score_thr, h->test.nms_iou, h->test.max_per_img,
                              &det_bboxes[i], &det_labels[i]))
            return md_fail(err, "StandardRoIHead.aug_test: image %d: %s", i, md_ctx_error(ctx)->msg);
        if (!rescale) {
            /* mmdet scales by the first variant's scale_factor */
            float *d = md_f32(det_bboxes[i]);
            for (int64_t j = 0; j < det_bboxes[i]->shape[0]; j++)
                for (int q = 0; q < 4; q++) d[5 * j + q] *= batch->metas[i].scale_factor[q];
        }
    }
    return 0;
}

static int rh_init_weights(md_ctx *ctx, md_module *m, md_error *err) {
    roi_head *h = (roi_head *)m;
    if (md_model_init_weights(ctx, h->bbox_head, err)) return -1;
    return md_init_cfg_pretrained(ctx, m, h->init_cfg, "StandardRoIHead", err) < 0 ? -1 : 0;
}

static void rh_destroy(md_module *m) {
    roi_head *h = (roi_head *)m;
    MD_BBOX_DESTROY(h->assigner);
    MD_BBOX_DESTROY(h->sampler);
    md_cfg_free(h->init_cfg);
}

static const md_roi_head_class rh_cls = {
    .model = { .module = { .name = "StandardRoIHead", .destroy = rh_destroy }, .init_weights = rh_init_weights },
    .forward_train = rh_forward_train,
    .simple_test = rh_simple_test,
    .aug_test = rh_aug_test,
};

static void *rh_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    static const char *const unsupported[] = { "mask_roi_extractor", "mask_head", "shared_head" };
    for (int i = 0; i < 3; i++)
        if (!md_cfg_is_none(md_cfg_get(cfg, unsupported[i]))) {
            md_failc(err, MD_ERR_CONFIG, "%s is not supported (bbox branch only)", unsupported[i]);
            return NULL;
        }
    const md_cfg *init = md_cfg_get(cfg, "init_cfg");
    if (md_init_cfg_check(init, "init_cfg", err) != 0) return NULL;
    roi_head *h = md_module_new(sizeof *h, &rh_cls.model.module);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    md_module *m = &h->base;
    if (!md_cfg_is_none(init) && !(h->init_cfg = md_cfg_clone(init))) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    h->extractor = md_build_from_cfg(ctx, "roi_extractors", md_cfg_get(cfg, "bbox_roi_extractor"), NULL, err);
    if (!h->extractor || md_module_add_child(m, "bbox_roi_extractor", h->extractor, err)) {
        if (h->extractor) md_module_free(h->extractor);
        md_error_wrap(err, "bbox_roi_extractor");
        goto fail;
    }
    h->bbox_head = md_build_from_cfg(ctx, "heads", md_cfg_get(cfg, "bbox_head"), NULL, err);
    if (!h->bbox_head || md_module_add_child(m, "bbox_head", h->bbox_head, err)) {
        if (h->bbox_head) md_module_free(h->bbox_head);
        md_error_wrap(err, "bbox_head");
        goto fail;
    }
    const md_cfg *tc = md_cfg_get(cfg, "train_cfg");
    if (!md_cfg_is_none(tc)) {
        if (!(h->assigner = md_build_part(ctx, "bbox_assigners", cfg, "train_cfg.assigner", err))) goto fail;
        if (!(h->sampler = md_build_part(ctx, "bbox_samplers", cfg, "train_cfg.sampler", err))) goto fail;
        h->pos_weight = md_cfg_float(tc, "pos_weight", -1);
    }
    const md_cfg *te = md_cfg_get(cfg, "test_cfg");
    if (!md_cfg_is_none(te)) {
        h->has_test = true;
        h->test.score_thr = md_cfg_float(te, "score_thr", 0.05);
        h->test.nms_iou = md_cfg_float(md_cfg_get(te, "nms"), "iou_threshold", 0.5);
        h->test.max_per_img = md_cfg_int(te, "max_per_img", 100);
    }
    md_module_train(m, true);
    return m;
fail:
    md_module_free(m);
    return NULL;
}

static const md_class rh_class = {
    .name = "StandardRoIHead", .keys = keys, .build = rh_build, MD_IFACE(&rh_cls, MD_IFACE_ROI_HEAD),
    .doc = "RoI head with a bbox branch (mmdet 2.x)",
};

MD_PLUGIN("standard_roi_head", "1.0", "Apache-2.0");
MD_REGISTER("heads", rh_class)
