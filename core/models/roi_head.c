/* mmdet 2.x's StandardRoIHead (base_roi_head.py, standard_roi_head.py,
 * test_mixins.py) as the base of RoI heads (roi_head.h): building the
 * extractors, bbox head, mask head, assigner and sampler; assign + sample
 * per image, pooling, the bbox head's targets and losses, the mask head's
 * on the positives; simple and augmented tests, masks of the
 * detections. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include <mmdet/roi_head.h>

/* A part built by type and added as child `name` (a failure names it). */
static md_module *add_part(md_ctx *ctx, md_module *m, const char *registry, const md_cfg *cfg, const char *name,
                           md_error *err) {
    md_module *p = md_build_from_cfg(ctx, registry, cfg, NULL, err);
    if (!p || md_module_add_child(m, name, p, err)) {
        if (p) md_module_free(p);
        md_error_wrap(err, "%s", name);
        return NULL;
    }
    return p;
}

/* init_mask_head: mask_roi_extractor (None: share the bbox one) and
 * mask_head, which must be a mask head. */
static int build_mask_branch(md_ctx *ctx, md_roi_head_base *h, md_error *err) {
    md_module *m = &h->base;
    const md_class *k = md_registry_find(ctx, "heads", md_cfg_str(h->mask_head_cfg, "type", ""), err);
    if (!k) return md_error_wrap(err, "mask_head");
    if (k->iface_type != MD_IFACE_MASK_HEAD)
        return md_failc(err, MD_ERR_CONFIG, "%s:%d: mask_head: %s is not a mask head", md_cfg_file(h->mask_head_cfg),
                        md_cfg_line(h->mask_head_cfg), k->name);
    if (h->mask_roi_extractor_cfg) {
        if (!(h->mask_roi_extractor = add_part(ctx, m, "roi_extractors", h->mask_roi_extractor_cfg,
                                               "mask_roi_extractor", err)))
            return -1;
    } else {
        h->share_roi_extractor = true;
        h->mask_roi_extractor = h->bbox_roi_extractor;
    }
    return (h->mask_head = add_part(ctx, m, "heads", h->mask_head_cfg, "mask_head", err)) ? 0 : -1;
}

MD_API md_module *md_roi_head_build(md_ctx *ctx, const md_cfg *cfg, const md_roi_head_base_class *cls,
                                    md_error *err) {
    const char *name = cls->head.model.module.name;
    md_roi_head_base *h = md__base_module_new(&cls->head.model.module, cls->size, sizeof(md_roi_head_base), true,
                                              "a RoI head class needs size >= sizeof(md_roi_head_base)", err);
    if (!h) return NULL;
    md_module *m = &h->base;
    h->cls = cls;
    h->pos_weight = -1;
    if (md_cfg_read_struct(cfg, cls->keys, h, name, err) || md_init_cfg_check(h->init_cfg, "init_cfg", err) ||
        !(h->bbox_roi_extractor = add_part(ctx, m, "roi_extractors", h->bbox_roi_extractor_cfg, "bbox_roi_extractor", err)) ||
        !(h->bbox_head = add_part(ctx, m, "heads", h->bbox_head_cfg, "bbox_head", err)))
        goto fail;
    if (h->train_cfg) {
        if (!(h->assigner = md_build_part(ctx, "bbox_assigners", cfg, "train_cfg.assigner", err)) ||
            !(h->sampler = md_build_part(ctx, "bbox_samplers", cfg, "train_cfg.sampler", err)))
            goto fail;
        h->pos_weight = md_cfg_float(h->train_cfg, "pos_weight", -1);
    }
    if (h->mask_head_cfg && build_mask_branch(ctx, h, err)) goto fail;
    h->mask_size = (int)(h->train_cfg ? md_cfg_int(h->train_cfg, "mask_size", 28) : 28);
    h->mask_thr_binary = 0.5;
    if (h->mask_head && h->mask_size < 1) {
        md_failc(err, MD_ERR_CONFIG, "%s: train_cfg.mask_size is %d; it must be positive", name, h->mask_size);
        goto fail;
    }
    if (h->test_cfg_cfg) {
        h->mask_thr_binary = md_cfg_float(h->test_cfg_cfg, "mask_thr_binary", 0.5);
        h->has_test_cfg = true;
        md_rcnn_test_cfg_read(h->test_cfg_cfg, &h->test_cfg);
    }
    if (cls->init_layers && cls->init_layers(ctx, h, err)) goto fail;
    md_module_train(m, true);
    return m;
fail:
    md_module_free(m);
    return NULL;
}

static md_tensor *boxes_copy(md_ctx *ctx, md_tensor *p);

MD_API void md_rcnn_test_cfg_read(const md_cfg *cfg, md_rcnn_test_cfg *out) {
    out->score_thr = md_cfg_float(cfg, "score_thr", 0.05);
    out->nms_iou = md_cfg_float(md_cfg_get(cfg, "nms"), "iou_threshold", 0.5);
    out->max_per_img = md_cfg_int(cfg, "max_per_img", 100);
}

static md_tensor *boxes_tensor(md_ctx *ctx, const md_boxes *b) {
    if (!b || b->n == 0) return md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 4));
    return md_tensor_from(ctx, MD_F32, MD_DIMS(b->n, 4), b->xyxy);
}

/* bbox2roi: [sum K_i, 5] with the image index first. */
MD_API md_tensor *md_bbox2roi(md_ctx *ctx, md_tensor *const *boxes, int n) {
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

MD_API int md_roi_head_bbox_forward(md_ctx *ctx, md_module *extractor, md_module *bbox_head, md_tensor *const *feats,
                                    int n_feats, md_tensor *rois, md_tensor **cls, md_tensor **reg) {
    const md_roi_extractor_class *ec = md_roi_extractor_class_of(extractor);
    int ni = ec->num_inputs(extractor);
    *cls = *reg = NULL;
    md_scope_push(ctx, "bbox_roi_extractor");
    md_tensor *x = ec->forward(ctx, extractor, feats, ni < n_feats ? ni : n_feats, rois);
    md_scope_pop(ctx);
    md_scope_push(ctx, "bbox_head");
    md_bbox_head_class_of(bbox_head)->forward(ctx, bbox_head, x, cls, reg);
    md_scope_pop(ctx);
    return *cls && *reg ? 0 : -1;
}

MD_API int md_roi_head_assign_sample(md_ctx *ctx, md_bbox_assigner *assigner, md_bbox_sampler *sampler,
                                     const md_batch *batch, md_tensor *const *proposals, md_rng *rng,
                                     md_sampling_result *sr, md_error *err) {
    bool was = md_grad_set_enabled(ctx, false);
    int rc = 0;
    for (int i = 0; i < batch->n && !rc; i++) {
        md_tensor *gt = boxes_tensor(ctx, &batch->gt_bboxes[i]);
        md_tensor *labels = batch->gt_bboxes[i].n
                                ? md_tensor_from(ctx, MD_I64, MD_DIMS(batch->gt_bboxes[i].n), batch->gt_bboxes[i].labels)
                                : md_tensor_zeros(ctx, MD_I64, MD_DIMS(0));
        md_tensor *ign = batch->gt_bboxes_ignore && batch->gt_bboxes_ignore[i].n
                             ? boxes_tensor(ctx, &batch->gt_bboxes_ignore[i]) : NULL;
        md_tensor *props = proposals[i] ? md_contiguous(ctx, md_slice(ctx, proposals[i], 1, 0, 4, 1)) : NULL;
        md_assign_result ar;
        if (!gt || !labels || !props) rc = md_error_from_ctx(ctx, err, "image %d", i);
        else if (md_bbox_assign(ctx, assigner, props, gt, ign, labels, &ar, err) ||
                 md_bbox_sample(ctx, sampler, &ar, props, gt, labels, rng, &sr[i], err))
            rc = md_error_wrap(err, "image %d", i);
    }
    md_grad_set_enabled(ctx, was);
    return rc;
}

static int no_gt_masks(const md_module *m, md_error *err) {
    return md_failc(err, MD_ERR_CONFIG, "%s: mask_head needs gt_masks in the batch (LoadAnnotations with_mask = true "
                    "and gt_masks among Collect's keys)", m->cls->name);
}

MD_API int md_roi_head_forward_train(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats,
                                     const md_batch *batch, md_tensor *const *proposals, md_rng *rng, md_losses *losses,
                                     md_error *err) {
    md_roi_head_base *h = (md_roi_head_base *)m;
    if (!h->assigner || !h->sampler)
        return md_failc(err, MD_ERR_CONFIG, "%s: training needs train_cfg with an assigner and a sampler", m->cls->name);
    if (h->mask_head && !batch->gt_masks) return no_gt_masks(m, err);
    int N = batch->n;
    md_sampling_result *sr = md_ctx_alloc(ctx, sizeof *sr * (size_t)N);
    md_tensor **sampled = md_ctx_alloc(ctx, sizeof *sampled * (size_t)N);
    if (!sr || !sampled) return md_error_from_ctx(ctx, err, "%s", m->cls->name);
    if (md_roi_head_assign_sample(ctx, h->assigner, h->sampler, batch, proposals, rng, sr, err))
        return md_error_wrap(err, "%s", m->cls->name);
    bool was = md_grad_set_enabled(ctx, false);
    for (int i = 0; i < N; i++) sampled[i] = md_cat(ctx, (md_tensor *[]){ sr[i].pos_bboxes, sr[i].neg_bboxes }, 2, 0);
    md_tensor *rois = md_bbox2roi(ctx, sampled, N);
    md_grad_set_enabled(ctx, was);
    if (!rois) return md_error_from_ctx(ctx, err, "%s", m->cls->name);
    md_tensor *cls = NULL, *reg = NULL;
    if (md_roi_head_bbox_forward(ctx, h->bbox_roi_extractor, h->bbox_head, feats, n_feats, rois, &cls, &reg))
        return md_error_from_ctx(ctx, err, "%s", m->cls->name);
    const md_bbox_head_class *bc = md_bbox_head_class_of(h->bbox_head);
    md_bbox_targets t;
    if (bc->get_targets(ctx, h->bbox_head, sr, N, h->pos_weight, &t))
        return md_error_from_ctx(ctx, err, "%s: bbox_head.get_targets", m->cls->name);
    if (bc->loss(ctx, h->bbox_head, cls, reg, &t, losses, err)) return -1;
    return h->mask_head ? md_roi_head_mask_forward_train(ctx, m, feats, n_feats, batch, sr, losses, err) : 0;
}

/* StandardRoIHead.forward_dummy: bbox2roi of the proposals, the bbox
 * branch on all of them, the mask branch on the first 100. */
MD_API int md_roi_head_forward_dummy(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats,
                                     md_tensor *proposals, md_error *err) {
    md_roi_head_base *h = (md_roi_head_base *)m;
    md_tensor *rois = md_bbox2roi(ctx, &proposals, 1), *cls = NULL, *reg = NULL;
    if (!rois || md_roi_head_bbox_forward(ctx, h->bbox_roi_extractor, h->bbox_head, feats, n_feats, rois, &cls, &reg))
        return md_error_from_ctx(ctx, err, "%s", m->cls->name);
    if (h->mask_head) {
        int64_t k = rois->shape[0] < 100 ? rois->shape[0] : 100;
        md_tensor *mask_rois = md_contiguous(ctx, md_slice(ctx, rois, 0, 0, k, 1));
        if (!md_roi_head_mask_forward(ctx, h->mask_roi_extractor, h->mask_head, feats, n_feats, mask_rois))
            return md_error_from_ctx(ctx, err, "%s", m->cls->name);
    }
    return 0;
}

MD_API bool md_roi_head_with_mask(const md_module *m) { return ((const md_roi_head_base *)m)->mask_head != NULL; }

MD_API md_tensor *md_roi_head_mask_forward(md_ctx *ctx, md_module *extractor, md_module *mask_head,
                                           md_tensor *const *feats, int n_feats, md_tensor *rois) {
    const md_roi_extractor_class *ec = md_roi_extractor_class_of(extractor);
    int ni = ec->num_inputs(extractor);
    md_scope_push(ctx, "mask_roi_extractor");
    md_tensor *x = ec->forward(ctx, extractor, feats, ni < n_feats ? ni : n_feats, rois);
    md_scope_pop(ctx);
    if (!x) return NULL;
    md_scope_push(ctx, "mask_head");
    md_tensor *y = md_mask_head_class_of(mask_head)->forward(ctx, mask_head, x);
    md_scope_pop(ctx);
    return y;
}

/* _mask_forward_train. With a shared extractor mmdet picks the positives'
 * rows of the bbox features; pooling the positives again gives the same
 * rows. */
MD_API int md_roi_head_mask_forward_train(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats,
                                          const md_batch *batch, const md_sampling_result *sr, md_losses *losses,
                                          md_error *err) {
    md_roi_head_base *h = (md_roi_head_base *)m;
    const char *name = m->cls->name;
    if (!h->mask_head) return md_failc(err, MD_ERR_CONFIG, "%s: no mask_head", name);
    if (!batch->gt_masks) return no_gt_masks(m, err);
    int N = batch->n;
    md_tensor **pos = md_ctx_alloc(ctx, sizeof *pos * (size_t)N), **lab = md_ctx_alloc(ctx, sizeof *lab * (size_t)N);
    if (!pos || !lab) return md_error_from_ctx(ctx, err, "%s", name);
    int64_t K = 0;
    for (int i = 0; i < N; i++) {
        pos[i] = sr[i].pos_bboxes;
        lab[i] = sr[i].pos_gt_labels ? sr[i].pos_gt_labels : md_tensor_zeros(ctx, MD_I64, MD_DIMS(0));
        K += pos[i]->shape[0];
    }
    if (K == 0) {
        /* mmdet: the empty prediction's sum */
        return md_losses_add(losses, "loss_mask", md_tensor_scalar(ctx, 0.0f), err);
    }
    bool was = md_grad_set_enabled(ctx, false);
    md_tensor *rois = md_bbox2roi(ctx, pos, N), *labels = md_cat(ctx, lab, N, 0);
    md_grad_set_enabled(ctx, was);
    if (!rois || !labels) return md_error_from_ctx(ctx, err, "%s", name);
    md_tensor *pred = md_roi_head_mask_forward(ctx, h->mask_roi_extractor, h->mask_head, feats, n_feats, rois);
    if (!pred) return md_error_from_ctx(ctx, err, "%s", name);
    if (pred->ndim != 4 || pred->shape[2] != h->mask_size || pred->shape[3] != h->mask_size)
        return md_failc(err, MD_ERR_CONFIG, "%s: train_cfg.mask_size is %d but mask_head predicts %lld x %lld masks",
                        name, h->mask_size, (long long)(pred->ndim == 4 ? pred->shape[2] : -1),
                        (long long)(pred->ndim == 4 ? pred->shape[3] : -1));
    const md_mask_head_class *mc = md_mask_head_class_of(h->mask_head);
    md_tensor *targets = mc->get_targets(ctx, h->mask_head, sr, N, batch->gt_masks, h->mask_size);
    if (!targets) return md_error_from_ctx(ctx, err, "%s: mask_head.get_targets", name);
    return mc->loss(ctx, h->mask_head, pred, targets, labels, losses, err);
}

/* MaskTestMixin.simple_test_mask. */
MD_API int md_roi_head_simple_test_mask(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats,
                                        const md_batch *batch, md_tensor *const *det_bboxes,
                                        md_tensor *const *det_labels, bool rescale, md_rle **masks, md_error *err) {
    md_roi_head_base *h = (md_roi_head_base *)m;
    const char *name = m->cls->name;
    if (!h->mask_head) return md_failc(err, MD_ERR_CONFIG, "%s: no mask_head", name);
    int N = batch->n;
    md_tensor **boxes = md_ctx_alloc(ctx, sizeof *boxes * (size_t)N);
    if (!boxes) return md_error_from_ctx(ctx, err, "%s", name);
    int64_t total = 0;
    for (int i = 0; i < N; i++) {
        masks[i] = NULL;
        /* detections rescaled to the original image go back to the test scale */
        if (!(boxes[i] = boxes_copy(ctx, det_bboxes[i]))) return md_error_from_ctx(ctx, err, "%s", name);
        int64_t D = boxes[i]->shape[0];
        total += D;
        if (rescale)
            for (int64_t j = 0; j < 4 * D; j++) md_f32(boxes[i])[j] *= batch->metas[i].scale_factor[j % 4];
    }
    if (total == 0) return 0;
    md_tensor *rois = md_bbox2roi(ctx, boxes, N);
    md_tensor *pred = rois ? md_roi_head_mask_forward(ctx, h->mask_roi_extractor, h->mask_head, feats, n_feats, rois)
                           : NULL;
    if (!pred) return md_error_from_ctx(ctx, err, "%s", name);
    const md_mask_head_class *mc = md_mask_head_class_of(h->mask_head);
    int64_t off = 0;
    for (int i = 0; i < N; i++) {
        int64_t D = boxes[i]->shape[0];
        if (D == 0) continue;
        const md_img_meta *mt = &batch->metas[i];
        int ori[2] = { mt->ori_shape[0], mt->ori_shape[1] };
        if (!(masks[i] = md_ctx_alloc(ctx, sizeof **masks * (size_t)D))) return md_error_from_ctx(ctx, err, "%s", name);
        if (mc->get_seg_masks(ctx, h->mask_head, md_slice(ctx, pred, 0, off, off + D, 1), false, boxes[i], det_labels[i],
                              h->mask_thr_binary, ori, mt->scale_factor, rescale, masks[i], err))
            return md_error_wrap(err, "%s: mask_head.get_seg_masks (image %d)", name, i);
        off += D;
    }
    return 0;
}

MD_API int md_roi_head_simple_test(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats, const md_batch *batch,
                          md_tensor *const *proposals, bool rescale, md_tensor **det_bboxes, md_tensor **det_labels,
                          md_error *err) {
    md_roi_head_base *h = (md_roi_head_base *)m;
    if (!h->has_test_cfg) return md_failc(err, MD_ERR_CONFIG, "%s: simple_test needs test_cfg", m->cls->name);
    int N = batch->n;
    md_tensor *rois = md_bbox2roi(ctx, proposals, N);
    if (!rois) return md_error_from_ctx(ctx, err, "%s", m->cls->name);
    md_tensor *cls = NULL, *reg = NULL;
    if (rois->shape[0] > 0) {
        md_roi_head_bbox_forward(ctx, h->bbox_roi_extractor, h->bbox_head, feats, n_feats, rois, &cls, &reg);
        if (!cls || !reg) return md_error_from_ctx(ctx, err, "%s", m->cls->name);
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
                           mt->scale_factor, rescale, &h->test_cfg, &det_bboxes[i], &det_labels[i]))
            return md_error_from_ctx(ctx, err, "%s: bbox_head.get_bboxes", m->cls->name);
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
 * proposals mapped into every variant (bbox_mapping), the variant's
 * branch gives boxes and scores without NMS, mapped back and averaged
 * (merge_aug_bboxes), then multiclass NMS with cfg. */
MD_API int md_roi_head_aug_test_bboxes(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n_feats,
                                       md_batch *batch, md_tensor *const *proposals, bool rescale, int64_t num_classes,
                                       const md_rcnn_test_cfg *cfg, md_roi_head_aug_variant_fn variant,
                                       md_tensor **det_bboxes, md_tensor **det_labels, md_error *err) {
    int na = md_batch_n_augs(batch), N = batch->n;
    md_tensor **ab = md_ctx_alloc(ctx, sizeof *ab * (size_t)(na * N)), **as = md_ctx_alloc(ctx, sizeof *as * (size_t)(na * N));
    md_tensor **mapped = md_ctx_alloc(ctx, sizeof *mapped * (size_t)N);
    md_tensor **kb = md_ctx_alloc(ctx, sizeof *kb * (size_t)na), **ks = md_ctx_alloc(ctx, sizeof *ks * (size_t)na);
    const md_img_meta **metas = md_ctx_alloc(ctx, sizeof *metas * (size_t)na);
    int64_t *counts = md_ctx_alloc(ctx, sizeof *counts * (size_t)N);
    if (!ab || !as || !mapped || !kb || !ks || !metas || !counts) return md_error_from_ctx(ctx, err, "%s", m->cls->name);
    for (int k = 0; k < na; k++) {
        const md_batch *bk = md_batch_aug(batch, k);
        for (int i = 0; i < N; i++) {
            if (!(mapped[i] = boxes_copy(ctx, proposals[i])))
                return md_error_from_ctx(ctx, err, "%s.aug_test", m->cls->name);
            md_bbox_mapping_meta(md_f32(mapped[i]), mapped[i]->shape[0], 4, &bk->metas[i]);
            counts[i] = mapped[i]->shape[0];
            ab[k * N + i] = as[k * N + i] = NULL;
        }
        md_tensor *rois = md_bbox2roi(ctx, mapped, N);
        if (!rois || (rois->shape[0] > 0 && variant(ctx, m, feats[k], n_feats, bk, rois, counts, ab + k * N, as + k * N)))
            return md_error_from_ctx(ctx, err, "%s.aug_test: variant %d", m->cls->name, k);
    }
    for (int i = 0; i < N; i++) {
        if (proposals[i]->shape[0] == 0) {
            det_bboxes[i] = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 5));
            det_labels[i] = md_tensor_zeros(ctx, MD_I64, MD_DIMS(0));
            if (!det_bboxes[i] || !det_labels[i]) return md_error_from_ctx(ctx, err, "%s", m->cls->name);
            continue;
        }
        for (int k = 0; k < na; k++) {
            kb[k] = ab[k * N + i];
            ks[k] = as[k * N + i];
            metas[k] = &md_batch_aug(batch, k)->metas[i];
        }
        md_tensor *mb, *ms;
        if (md_merge_aug_bboxes(ctx, kb, ks, metas, na, &mb, &ms) ||
            md_multiclass_nms(ctx, mb, ms, num_classes, cfg->score_thr, cfg->nms_iou, cfg->max_per_img,
                              &det_bboxes[i], &det_labels[i]))
            return md_error_from_ctx(ctx, err, "%s.aug_test: image %d", m->cls->name, i);
        if (!rescale) {
            /* mmdet scales by the first variant's scale_factor */
            float *d = md_f32(det_bboxes[i]);
            for (int64_t j = 0; j < det_bboxes[i]->shape[0]; j++)
                for (int q = 0; q < 4; q++) d[5 * j + q] *= batch->metas[i].scale_factor[q];
        }
    }
    return 0;
}

/* Mask probabilities [D, C, H, W] (host, contiguous) flipped back in place. */
static void flip_masks_back(float *p, int64_t planes, int64_t H, int64_t W, md_flip_dir dir) {
    bool hor = dir == MD_FLIP_HORIZONTAL || dir == MD_FLIP_DIAGONAL, ver = dir == MD_FLIP_VERTICAL || dir == MD_FLIP_DIAGONAL;
    for (int64_t q = 0; q < planes; q++) {
        float *a = p + q * H * W;
        for (int64_t y = 0; hor && y < H; y++)
            for (int64_t x = 0; x < W / 2; x++) {
                float t = a[y * W + x];
                a[y * W + x] = a[y * W + W - 1 - x];
                a[y * W + W - 1 - x] = t;
            }
        for (int64_t y = 0; ver && y < H / 2; y++)
            for (int64_t x = 0; x < W; x++) {
                float t = a[y * W + x];
                a[y * W + x] = a[(H - 1 - y) * W + x];
                a[(H - 1 - y) * W + x] = t;
            }
    }
}

/* MaskTestMixin.aug_test_mask, image by image: each variant's mask
 * probabilities of the mapped detections, flipped back and averaged, then
 * get_seg_masks at the original size (rescale false, scale_factor 1). */
MD_API int md_roi_head_aug_test_mask(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n_feats,
                                     md_batch *batch, md_tensor *const *det_bboxes, md_tensor *const *det_labels,
                                     md_rle **masks, md_error *err) {
    md_roi_head_base *h = (md_roi_head_base *)m;
    const char *name = m->cls->name;
    if (!h->mask_head) return md_failc(err, MD_ERR_CONFIG, "%s: no mask_head", name);
    const md_mask_head_class *mc = md_mask_head_class_of(h->mask_head);
    int na = md_batch_n_augs(batch), N = batch->n;
    for (int i = 0; i < N; i++) {
        masks[i] = NULL;
        int64_t D = det_bboxes[i]->shape[0];
        if (D == 0) continue;
        md_tensor *sum = NULL;
        for (int k = 0; k < na; k++) {
            const md_img_meta *mt = &md_batch_aug(batch, k)->metas[i];
            md_tensor *b = boxes_copy(ctx, det_bboxes[i]);
            if (!b) return md_error_from_ctx(ctx, err, "%s.aug_test_mask", name);
            md_bbox_mapping_meta(md_f32(b), D, 4, mt);
            /* RoIs of image i of variant k's batch */
            md_tensor *rois = md_tensor_empty(ctx, MD_F32, MD_DIMS(D, 5));
            if (!rois) return md_error_from_ctx(ctx, err, "%s.aug_test_mask", name);
            for (int64_t j = 0; j < D; j++) {
                md_f32(rois)[5 * j] = (float)i;
                memcpy(md_f32(rois) + 5 * j + 1, md_f32(b) + 4 * j, 4 * sizeof(float));
            }
            md_tensor *pred = md_roi_head_mask_forward(ctx, h->mask_roi_extractor, h->mask_head, feats[k], n_feats, rois);
            /* a new host tensor: flipped in place */
            md_tensor *p = pred ? md_contiguous(ctx, md_tensor_to(ctx, md_sigmoid(ctx, pred), MD_DEVICE_CPU)) : NULL;
            if (!p) return md_error_from_ctx(ctx, err, "%s.aug_test_mask: variant %d", name, k);
            if (mt->flip) flip_masks_back(md_f32(p), p->shape[0] * p->shape[1], p->shape[2], p->shape[3], mt->flip_direction);
            sum = sum ? md_add(ctx, sum, p) : p;
            if (!sum) return md_error_from_ctx(ctx, err, "%s.aug_test_mask", name);
        }
        md_tensor *merged = md_contiguous(ctx, md_mul_scalar(ctx, sum, 1.0 / na));
        const md_img_meta *m0 = &batch->metas[i];
        int ori[2] = { m0->ori_shape[0], m0->ori_shape[1] };
        static const float one[4] = { 1, 1, 1, 1 };
        if (!merged || !(masks[i] = md_ctx_alloc(ctx, sizeof **masks * (size_t)D)))
            return md_error_from_ctx(ctx, err, "%s.aug_test_mask", name);
        if (mc->get_seg_masks(ctx, h->mask_head, merged, true, det_bboxes[i], det_labels[i], h->mask_thr_binary, ori,
                              one, false, masks[i], err))
            return md_error_wrap(err, "%s: mask_head.get_seg_masks (image %d)", name, i);
    }
    return 0;
}

/* StandardRoIHead's branch of one variant: pool, bbox head, per image
 * get_bboxes with cfg None in the variant's pixels. */
static int standard_variant(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats, const md_batch *bk,
                            md_tensor *rois, const int64_t *counts, md_tensor **boxes, md_tensor **scores) {
    md_roi_head_base *h = (md_roi_head_base *)m;
    md_tensor *cls = NULL, *reg = NULL;
    if (md_roi_head_bbox_forward(ctx, h->bbox_roi_extractor, h->bbox_head, feats, n_feats, rois, &cls, &reg))
        return -1;
    return md_bbox_head_raw_bboxes_per_image(ctx, h->bbox_head, rois, cls, reg, counts, bk, boxes, scores);
}

MD_API int md_roi_head_aug_test(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n_feats, md_batch *batch,
                       md_tensor *const *proposals, bool rescale, md_tensor **det_bboxes, md_tensor **det_labels,
                       md_error *err) {
    md_roi_head_base *h = (md_roi_head_base *)m;
    if (!h->has_test_cfg) return md_failc(err, MD_ERR_CONFIG, "%s: aug_test needs test_cfg", m->cls->name);
    const md_bbox_head_class *bc = md_bbox_head_class_of(h->bbox_head);
    if (!bc->get_raw_bboxes)
        return md_failc(err, MD_ERR_CONFIG, "%s: bbox_head %s has no test-time augmentation",
                        m->cls->name, h->bbox_head->cls->name);
    return md_roi_head_aug_test_bboxes(ctx, m, feats, n_feats, batch, proposals, rescale, bc->num_classes(h->bbox_head),
                                       &h->test_cfg, standard_variant, det_bboxes, det_labels, err);
}

MD_API int md_roi_head_init_weights(md_ctx *ctx, md_module *m, md_error *err) {
    md_roi_head_base *h = (md_roi_head_base *)m;
    if (md_model_init_weights(ctx, h->bbox_head, err)) return -1;
    if (h->mask_head && md_model_init_weights(ctx, h->mask_head, err)) return -1;
    return md_init_cfg_pretrained(ctx, m, h->init_cfg, m->cls->name, err) < 0 ? -1 : 0;
}

MD_API void md_roi_head_destroy(md_module *m) {
    md_roi_head_base *h = (md_roi_head_base *)m;
    MD_BBOX_DESTROY(h->assigner);
    MD_BBOX_DESTROY(h->sampler);
}

/* onnx_export: mmdet's StandardRoIHead.bbox_onnx_export (roi_head.h). */
MD_API int md_roi_head_onnx_export(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n_feats,
                                   const md_onnx_dets *proposals, const md_onnx_image *img, md_onnx_dets *out,
                                   md_error *err) {
    md_roi_head_base *h = (md_roi_head_base *)m;
    const char *name = m->cls->name;
    if (h->mask_head)
        return md_failc(err, MD_ERR_CONFIG, "%s: ONNX export of the mask branch is not supported", name);
    if (!h->has_test_cfg) return md_failc(err, MD_ERR_CONFIG, "%s: ONNX export needs test_cfg", name);
    md_module *ext = h->bbox_roi_extractor, *bh = h->bbox_head;
    const md_roi_extractor_class *ec = md_roi_extractor_class_of(ext);
    const md_bbox_head_class *bc = md_bbox_head_class_of(bh);
    if (!ec->onnx_forward)
        return md_failc(err, MD_ERR_CONFIG, "%s: its RoI extractor %s has no ONNX form", name, ext->cls->name);
    if (!bc->onnx_export)
        return md_failc(err, MD_ERR_CONFIG, "%s: its bbox head %s has no ONNX export", name, bh->cls->name);
    /* rois [N, P, 5]: each proposal's image index, then its box */
    const char *d = proposals->dets;
    float zero = 0, one = 1;
    const char *n = md_onnx_cast(ctx, md_onnx_reshape(ctx, md_onnx_shape(ctx, d, 0, 1), 0, NULL), MD_ONNX_FLOAT);
    const char *bi = n ? md_onnx_node1(ctx, "Range",
                                       (const char *[]){ md_onnx_const_f32(ctx, "zero", 0, NULL, &zero), n,
                                                         md_onnx_const_f32(ctx, "one", 0, NULL, &one) },
                                       3, NULL, 0)
                       : NULL;
    const char *col = md_onnx_slice(ctx, d, 2, 0, 1);
    bi = md_onnx_op2(ctx, "Expand", md_onnx_reshape(ctx, bi, 3, (int64_t[]){ -1, 1, 1 }),
                     col ? md_onnx_node1(ctx, "Shape", &col, 1, NULL, 0) : NULL);
    const char *rois3 = md_onnx_concat(ctx, (const char *[]){ bi, md_onnx_slice(ctx, d, 2, 0, 4) }, 2, 2);
    const char *rois = md_onnx_reshape(ctx, rois3, 2, (int64_t[]){ -1, 5 });
    int ni = ec->num_inputs(ext);
    md_scope_push(ctx, "bbox_roi_extractor");
    const char *fv = rois ? ec->onnx_forward(ctx, ext, feats, ni < n_feats ? ni : n_feats, rois) : NULL;
    md_scope_pop(ctx);
    if (!fv) return md_error_from_ctx(ctx, err, "%s.bbox_roi_extractor", name);
    /* the bbox head's forward, traced on a tensor of the features' shape */
    int64_t R = proposals->n * proposals->k, S = ec->out_size(ext);
    md_tensor *x = md_tensor_zeros(ctx, MD_F32, MD_DIMS(R, feats[0]->shape[1], S, S)), *cls = NULL, *reg = NULL;
    if (!x || md_onnx_bind(ctx, x, fv)) return md_error_from_ctx(ctx, err, "%s", name);
    md_scope_push(ctx, "bbox_head");
    int rc = bc->forward(ctx, bh, x, &cls, &reg);
    if (!rc) rc = bc->onnx_export(ctx, bh, rois3, proposals->n, proposals->k, cls, reg, img, &h->test_cfg, out);
    md_scope_pop(ctx);
    return rc ? md_error_from_ctx(ctx, err, "%s.bbox_head", name) : 0;
}
