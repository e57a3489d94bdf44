/* mmdet 2.x's BBoxHead (mmdet/models/roi_heads/bbox_heads/bbox_head.py) as
 * the base of bbox heads (roi_head.h): build and parts, get_targets, the
 * losses, get_bboxes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include <mmdet/roi_head.h>

MD_API md_module *md_bbox_head_build(md_ctx *ctx, const md_cfg *cfg, const md_bbox_head_base_class *cls,
                                     md_error *err) {
    const char *name = cls->head.model.module.name;
    md_bbox_head_base *h = md__base_module_new(&cls->head.model.module, cls->size, sizeof(md_bbox_head_base),
                                               cls->init_layers != NULL,
                                               "a BBoxHead class needs size >= sizeof(md_bbox_head_base) and "
                                               "init_layers", err);
    if (!h) return NULL;
    md_module *m = &h->base;
    h->cls = cls;
    if (md_cfg_read_struct(cfg, cls->keys, h, name, err) || md_init_cfg_check(h->init_cfg, "init_cfg", err) ||
        !(h->bbox_coder = md_build_part(ctx, "bbox_coders", cfg, "bbox_coder", err)) ||
        !(h->loss_cls = md_build_part(ctx, "losses", cfg, "loss_cls", err)) ||
        !(h->loss_bbox = md_build_part(ctx, "losses", cfg, "loss_bbox", err)))
        goto fail;
    if ((h->loss_bbox->flags & MD_LOSS_BOXES) && !h->reg_decoded_bbox) {
        md_failc(err, MD_ERR_CONFIG, "loss_bbox %s compares boxes: it needs reg_decoded_bbox = true (L1Loss or "
                 "SmoothL1Loss regress the deltas)", h->loss_bbox->type);
        goto fail;
    }
    if (cls->init_layers(ctx, h, err)) goto fail;
    md_module_train(m, true);
    return m;
fail:
    md_module_free(m);
    return NULL;
}

MD_API void md_bbox_head_destroy(md_module *m) {
    md_bbox_head_base *h = (md_bbox_head_base *)m;
    MD_BBOX_DESTROY(h->bbox_coder);
    md_loss_free(h->loss_cls);
    md_loss_free(h->loss_bbox);
}

MD_API int md_bbox_head_num_classes(const md_module *m) { return ((const md_bbox_head_base *)m)->num_classes; }

MD_API int md_bbox_head_init_weights(md_ctx *ctx, md_module *m, md_error *err) {
    return md_init_cfg_pretrained(ctx, m, ((md_bbox_head_base *)m)->init_cfg, m->cls->name, err) < 0 ? -1 : 0;
}

MD_API int md_bbox_head_get_targets(md_ctx *ctx, md_module *m, const md_sampling_result *sr, int n, double pos_weight,
                            md_bbox_targets *out) {
    md_bbox_head_base *h = (md_bbox_head_base *)m;
    memset(out, 0, sizeof *out);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += sr[i].pos_bboxes->shape[0] + sr[i].neg_bboxes->shape[0];
    out->labels = md_tensor_full(ctx, MD_I64, MD_DIMS(total), h->num_classes);
    out->label_weights = md_tensor_zeros(ctx, MD_F32, MD_DIMS(total));
    out->bbox_targets = md_tensor_zeros(ctx, MD_F32, MD_DIMS(total, 4));
    out->bbox_weights = md_tensor_zeros(ctx, MD_F32, MD_DIMS(total, 4));
    out->rois = md_tensor_zeros(ctx, MD_F32, MD_DIMS(total, 4));
    if (!out->labels || !out->label_weights || !out->bbox_targets || !out->bbox_weights || !out->rois) return -1;
    float pw = pos_weight <= 0 ? 1.0f : (float)pos_weight;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        int64_t np = sr[i].pos_bboxes->shape[0], nn = sr[i].neg_bboxes->shape[0];
        if (np > 0) {
            if (!sr[i].pos_gt_labels)
                return md_op_fail(ctx, "BBoxHead.get_targets", "image %d: sampling result without labels", i),
                       -1;
            md_tensor *lab = md_contiguous(ctx, sr[i].pos_gt_labels);
            /* reg_decoded_bbox: the targets are the gt boxes themselves */
            md_tensor *t = h->reg_decoded_bbox ? sr[i].pos_gt_bboxes
                                               : md_bbox_encode(ctx, h->bbox_coder, sr[i].pos_bboxes, sr[i].pos_gt_bboxes);
            if (!lab || !t) return -1;
            t = md_contiguous(ctx, t);
            for (int64_t k = 0; k < np; k++) {
                md_i64(out->labels)[off + k] = md_i64(lab)[k];
                md_f32(out->label_weights)[off + k] = pw;
                for (int j = 0; j < 4; j++) {
                    md_f32(out->bbox_targets)[(off + k) * 4 + j] = md_f32(t)[k * 4 + j];
                    md_f32(out->bbox_weights)[(off + k) * 4 + j] = 1.0f;
                }
            }
        }
        for (int64_t k = 0; k < nn; k++) md_f32(out->label_weights)[off + np + k] = 1.0f;
        md_tensor *pb = np ? md_contiguous(ctx, sr[i].pos_bboxes) : NULL, *nb = nn ? md_contiguous(ctx, sr[i].neg_bboxes) : NULL;
        if ((np && !pb) || (nn && !nb)) return -1;
        if (np) memcpy(md_f32(out->rois) + off * 4, md_f32(pb), sizeof(float) * (size_t)(np * 4));
        if (nn) memcpy(md_f32(out->rois) + (off + np) * 4, md_f32(nb), sizeof(float) * (size_t)(nn * 4));
        off += np + nn;
    }
    return 0;
}

MD_API int md_bbox_head_loss(md_ctx *ctx, md_module *m, md_tensor *cls_score, md_tensor *bbox_pred, const md_bbox_targets *t,
                     md_losses *losses, md_error *err) {
    md_bbox_head_base *h = (md_bbox_head_base *)m;
    if (!cls_score || !bbox_pred || !t->labels) return md_error_from_ctx(ctx, err, "%s.loss", m->cls->name);
    int64_t K = t->labels->shape[0], C = h->num_classes;
    if (cls_score->shape[0] != K || bbox_pred->shape[0] != K)
        return md_failc(err, MD_ERR_SHAPE, "%s.loss: %lld targets for %lld/%lld predictions",
                        m->cls->name, (long long)K, (long long)cls_score->shape[0], (long long)bbox_pred->shape[0]);
    int64_t nw = 0, np = 0;
    for (int64_t i = 0; i < K; i++) {
        nw += md_f32(t->label_weights)[i] > 0;
        int64_t l = md_i64(t->labels)[i];
        np += l >= 0 && l < C;
    }
    double avg = nw > 1 ? (double)nw : 1.0;
    /* the targets are host tensors (get_targets); the losses run where the
     * predictions are */
    md_device dev = md_tensor_device(cls_score);
    if (K > 0) {
        md_tensor *lc = md_loss_forward(ctx, h->loss_cls, cls_score, md_tensor_to(ctx, t->labels, dev),
                                        md_tensor_to(ctx, t->label_weights, dev), avg, MD_REDUCE_DEFAULT);
        /* accuracy (top-1, percent), counted on the host */
        md_tensor *am = md_tensor_to(ctx, md_argmax(ctx, cls_score, 1, false), MD_DEVICE_CPU);
        if (!lc || !am) return md_error_from_ctx(ctx, err, "%s.loss", m->cls->name);
        int64_t right = 0;
        for (int64_t i = 0; i < K; i++) right += md_i64(am)[i] == md_i64(t->labels)[i];
        if (md_losses_add(losses, "loss_cls", lc, err) ||
            md_losses_add(losses, "acc", md_tensor_scalar(ctx, (float)(100.0 * (double)right / (double)K)), err))
            return -1;
    }
    md_tensor *lb;
    if (np > 0) {
        md_tensor *sel = md_tensor_empty(ctx, MD_I64, MD_DIMS(np)), *pos = md_tensor_empty(ctx, MD_I64, MD_DIMS(np));
        if (!sel || !pos) return md_error_from_ctx(ctx, err, "%s.loss", m->cls->name);
        for (int64_t i = 0, j = 0; i < K; i++) {
            int64_t l = md_i64(t->labels)[i];
            if (l >= 0 && l < C) {
                md_i64(pos)[j] = i;
                md_i64(sel)[j++] = h->reg_class_agnostic ? i : i * C + l;
            }
        }
        md_tensor *pred = md_reshape(ctx, bbox_pred, MD_DIMS(-1, 4));
        pred = md_index_select(ctx, pred, 0, md_tensor_to(ctx, sel, dev));
        md_tensor *tg = md_tensor_to(ctx, md_index_select(ctx, t->bbox_targets, 0, pos), dev);
        md_tensor *wt = md_tensor_to(ctx, md_index_select(ctx, t->bbox_weights, 0, pos), dev);
        if (h->reg_decoded_bbox) {   /* mmdet: decode against rois[:, 1:] before selecting */
            if (!t->rois || t->rois->shape[0] != K)
                return md_failc(err, MD_ERR_SHAPE, "%s.loss: reg_decoded_bbox needs the targets' rois", m->cls->name);
            pred = md_bbox_decode(ctx, h->bbox_coder, md_tensor_to(ctx, md_index_select(ctx, t->rois, 0, pos), dev), pred,
                                  NULL);
        }
        lb = md_loss_forward(ctx, h->loss_bbox, pred, tg, wt, (double)K, MD_REDUCE_DEFAULT);
    } else {
        /* mmdet: bbox_pred[pos_inds].sum(), a zero still on the graph */
        lb = md_mul_scalar(ctx, md_sum(ctx, bbox_pred, MD_DIM_ALL, false), 0.0);
    }
    if (!lb) return md_error_from_ctx(ctx, err, "%s.loss", m->cls->name);
    return md_losses_add(losses, "loss_bbox", lb, err);
}

/* get_bboxes with cfg=None: softmax scores, boxes decoded and clipped to
 * img_shape, divided by scale_factor when rescale; no NMS. */
MD_API int md_bbox_head_get_raw_bboxes(md_ctx *ctx, md_module *m, md_tensor *rois, md_tensor *cls_score, md_tensor *bbox_pred,
                               const int img_shape[2], const float scale_factor[4], bool rescale, md_tensor **bboxes,
                               md_tensor **scores_out) {
    md_bbox_head_base *h = (md_bbox_head_base *)m;
    *bboxes = *scores_out = NULL;
    if (!rois || !cls_score || !bbox_pred) return -1;
    bool was = md_grad_set_enabled(ctx, false);
    /* post-processing is host logic: CPU copies of the (few) RoI outputs */
    rois = md_tensor_to(ctx, rois, MD_DEVICE_CPU);
    cls_score = md_tensor_to(ctx, cls_score, MD_DEVICE_CPU);
    bbox_pred = md_tensor_to(ctx, bbox_pred, MD_DEVICE_CPU);
    if (!rois || !cls_score || !bbox_pred) {
        md_grad_set_enabled(ctx, was);
        return -1;
    }
    md_tensor *scores = md_contiguous(ctx, md_softmax(ctx, cls_score, -1));
    md_tensor *b4 = rois->shape[1] == 5 ? md_contiguous(ctx, md_slice(ctx, rois, 1, 1, 5, 1)) : rois;
    md_tensor *boxes = md_contiguous(ctx, md_bbox_decode(ctx, h->bbox_coder, b4, bbox_pred, img_shape));
    md_grad_set_enabled(ctx, was);
    if (!scores || !boxes) return -1;
    if (rescale && boxes->shape[0] > 0) {
        float *p = md_f32(boxes);
        int64_t n = md_tensor_numel(boxes);
        for (int64_t i = 0; i < n; i++) p[i] /= scale_factor[i % 4];
    }
    *bboxes = boxes;
    *scores_out = scores;
    return 0;
}

MD_API int md_bbox_head_get_bboxes(md_ctx *ctx, md_module *m, md_tensor *rois, md_tensor *cls_score, md_tensor *bbox_pred,
                           const int img_shape[2], const float scale_factor[4], bool rescale,
                           const md_rcnn_test_cfg *cfg, md_tensor **det_bboxes, md_tensor **det_labels) {
    md_bbox_head_base *h = (md_bbox_head_base *)m;
    *det_bboxes = *det_labels = NULL;
    md_tensor *boxes, *scores;
    if (md_bbox_head_get_raw_bboxes(ctx, m, rois, cls_score, bbox_pred, img_shape, scale_factor, rescale, &boxes, &scores))
        return -1;
    return md_multiclass_nms(ctx, boxes, scores, h->num_classes, cfg->score_thr, cfg->nms_iou, cfg->max_per_img,
                             det_bboxes, det_labels);
}

/* regress_by_class: the labels' deltas (every row's own when class
 * agnostic) decoded against the rois, clipped to img_shape. */
MD_API md_tensor *md_bbox_head_regress_by_class(md_ctx *ctx, md_module *m, md_tensor *rois, md_tensor *labels,
                                                md_tensor *bbox_pred, const int img_shape[2]) {
    md_bbox_head_base *h = (md_bbox_head_base *)m;
    if (!rois || !labels || !bbox_pred) return NULL;
    bool was = md_grad_set_enabled(ctx, false);
    md_tensor *out = NULL;
    rois = md_contiguous(ctx, md_tensor_to(ctx, rois, MD_DEVICE_CPU));
    labels = md_contiguous(ctx, md_tensor_to(ctx, labels, MD_DEVICE_CPU));
    bbox_pred = md_contiguous(ctx, md_tensor_to(ctx, bbox_pred, MD_DEVICE_CPU));
    if (!rois || !labels || !bbox_pred) goto done;
    int64_t K = rois->shape[0], w = rois->shape[1], P = bbox_pred->shape[1];
    if ((w != 4 && w != 5) || bbox_pred->shape[0] != K || labels->shape[0] != K ||
        P != (h->reg_class_agnostic ? 4 : 4 * (int64_t)h->num_classes)) {
        md_op_fail(ctx, "BBoxHead.regress_by_class", "rois [%lld, %lld], labels [%lld], bbox_pred [%lld, %lld]",
                   (long long)K, (long long)w, (long long)labels->shape[0], (long long)bbox_pred->shape[0], (long long)P);
        goto done;
    }
    md_tensor *deltas = md_tensor_empty(ctx, MD_F32, MD_DIMS(K, 4));
    if (!deltas) goto done;
    for (int64_t k = 0; k < K; k++) {
        int64_t l = h->reg_class_agnostic ? 0 : md_i64(labels)[k];
        if (l < 0 || 4 * l >= P) {
            md_op_fail(ctx, "BBoxHead.regress_by_class", "label %lld of RoI %lld outside [0, %d)", (long long)l,
                       (long long)k, h->num_classes);
            goto done;
        }
        memcpy(md_f32(deltas) + 4 * k, md_f32(bbox_pred) + P * k + 4 * l, 4 * sizeof(float));
    }
    md_tensor *boxes = md_bbox_decode(ctx, h->bbox_coder, w == 5 ? md_slice(ctx, rois, 1, 1, 5, 1) : rois, deltas,
                                      img_shape);
    out = w == 5 && boxes ? md_cat(ctx, (md_tensor *[]){ md_slice(ctx, rois, 1, 0, 1, 1), boxes }, 2, 1) : boxes;
    out = md_contiguous(ctx, out);
done:
    md_grad_set_enabled(ctx, was);
    return out;
}

/* refine_bboxes: per image its rows of rois regressed by class, less the
 * positives that were gts added as proposals. */
MD_API int md_bbox_head_refine_bboxes(md_ctx *ctx, md_module *m, md_tensor *rois, md_tensor *labels,
                                      md_tensor *bbox_pred, const md_sampling_result *sr, int n,
                                      const md_img_meta *metas, md_tensor **proposals) {
    const md_bbox_head_class *bc = md_bbox_head_class_of(m);
    if (!bc->regress_by_class)
        return md_op_fail(ctx, "refine_bboxes", "%s has no regress_by_class", m->cls->name), -1;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        int64_t np = sr[i].pos_bboxes->shape[0], k = np + sr[i].neg_bboxes->shape[0];
        if (off + k > rois->shape[0])
            return md_op_fail(ctx, "refine_bboxes", "%lld RoIs for the sampling results", (long long)rois->shape[0]), -1;
        const int shape[2] = { metas[i].img_shape[0], metas[i].img_shape[1] };
        md_tensor *b = bc->regress_by_class(ctx, m, md_slice(ctx, rois, 0, off, off + k, 1),
                                            md_slice(ctx, labels, 0, off, off + k, 1),
                                            md_slice(ctx, bbox_pred, 0, off, off + k, 1), shape);
        md_tensor *gt = np ? md_contiguous(ctx, md_tensor_to(ctx, sr[i].pos_is_gt, MD_DEVICE_CPU)) : NULL;
        if (!b || (np && !gt)) return -1;
        int64_t kept = 0;
        for (int64_t j = 0; j < k; j++) kept += !(j < np && md_u8(gt)[j]);
        md_tensor *p = md_tensor_empty(ctx, MD_F32, MD_DIMS(kept, 4));
        if (!p) return -1;
        for (int64_t j = 0, o = 0; j < k; j++)
            if (!(j < np && md_u8(gt)[j])) memcpy(md_f32(p) + 4 * o++, md_f32(b) + b->shape[1] * j + (b->shape[1] - 4), 4 * sizeof(float));
        proposals[i] = p;
        off += k;
    }
    return 0;
}

/* get_raw_bboxes of each image of a test-time variant (its img_shape,
 * not rescaled). */
MD_API int md_bbox_head_raw_bboxes_per_image(md_ctx *ctx, md_module *bbox_head, md_tensor *rois, md_tensor *cls,
                                             md_tensor *reg, const int64_t *counts, const md_batch *bk,
                                             md_tensor **boxes, md_tensor **scores) {
    const md_bbox_head_class *bc = md_bbox_head_class_of(bbox_head);
    int64_t off = 0;
    for (int i = 0; i < bk->n; off += counts[i], i++) {
        boxes[i] = scores[i] = NULL;
        if (counts[i] == 0) continue;
        const md_img_meta *mt = &bk->metas[i];
        int shape[2] = { mt->img_shape[0], mt->img_shape[1] };
        int64_t e = off + counts[i];
        if (bc->get_raw_bboxes(ctx, bbox_head, md_slice(ctx, rois, 0, off, e, 1), md_slice(ctx, cls, 0, off, e, 1),
                               md_slice(ctx, reg, 0, off, e, 1), shape, mt->scale_factor, false, &boxes[i],
                               &scores[i]))
            return -1;
    }
    return 0;
}

/* onnx_export: mmdet's BBoxHead.onnx_export (roi_head.h). */
MD_API int md_bbox_head_onnx_export(md_ctx *ctx, md_module *m, const char *rois, int64_t N, int64_t P,
                                    md_tensor *cls_score, md_tensor *bbox_pred, const md_onnx_image *img,
                                    const md_rcnn_test_cfg *cfg, md_onnx_dets *out) {
    md_bbox_head_base *h = (md_bbox_head_base *)m;
    int64_t C = h->num_classes;
    if (!h->bbox_coder->iface->onnx_decode) {
        md_op_fail(ctx, "onnx", "%s: the box coder %s has no ONNX form", m->cls->name, h->bbox_coder->type);
        return -1;
    }
    /* softmax over the classes and the background, then the classes */
    const char *sv = md_onnx_slice(ctx, md_onnx_value(ctx, md_softmax(ctx, cls_score, -1)), 1, 0, C);
    const char *rv = md_onnx_value(ctx, bbox_pred);
    const char *NP = md_onnx_shape(ctx, rois, 0, 2), *Nv = md_onnx_shape(ctx, rois, 0, 1);
    const char *boxes4 = md_onnx_slice(ctx, rois, 2, 1, 5);                       /* [N, P, 4] */
    const char *wh = md_onnx_image_max_wh(ctx, img);
    const md_bbox_coder_iface *ci = h->bbox_coder->iface;
    int64_t four = 4, minus1[2] = { -1, 1 }, m4[2] = { -1, 4 };
    md_onnx_nms_opts o = { .max_per_class = cfg->max_per_img, .iou_thr = cfg->nms_iou, .score_thr = cfg->score_thr,
                           .max_per_img = cfg->max_per_img };
    if (h->reg_class_agnostic) {
        const char *deltas = md_onnx_op2(ctx, "Reshape", rv,
                                         md_onnx_concat(ctx, (const char *[]){ NP, md_onnx_i64s(ctx, "four", 1, &four) },
                                                        2, 0));
        const char *boxes = boxes4 && deltas && wh ? ci->onnx_decode(ctx, h->bbox_coder, boxes4, deltas, wh) : NULL;
        const char *scores = md_onnx_op2(ctx, "Reshape", sv,
                                         md_onnx_concat(ctx, (const char *[]){ NP, md_onnx_i64s(ctx, "C", 1, &C) }, 2, 0));
        if (md_onnx_nms(ctx, boxes, scores, P, C, &o, out)) return -1;
        out->n = N;
        return 0;
    }
    /* class-specific boxes: every RoI once per class, (roi, class) order */
    const char *deltas = md_onnx_op2(ctx, "Reshape", rv,
                                     md_onnx_concat(ctx, (const char *[]){ Nv, md_onnx_i64s(ctx, "shape", 2, m4) }, 2, 0));
    const char *rep = md_onnx_op2(ctx, "Tile", md_onnx_reshape(ctx, boxes4, 4, (int64_t[]){ 0, 0, 1, 4 }),
                                  md_onnx_i64s(ctx, "repeats", 4, (int64_t[]){ 1, 1, C, 1 }));
    rep = md_onnx_reshape(ctx, rep, 3, (int64_t[]){ 0, -1, 4 });
    const char *boxes = rep && deltas && wh ? ci->onnx_decode(ctx, h->bbox_coder, rep, deltas, wh) : NULL;
    const char *scores = md_onnx_op2(ctx, "Reshape", sv,
                                     md_onnx_concat(ctx, (const char *[]){ Nv, md_onnx_i64s(ctx, "shape", 2, minus1) },
                                                    2, 0));                      /* [N, P * C, 1] */
    int64_t *lab = malloc(sizeof(int64_t) * (size_t)C);
    if (!lab) return md_op_fail(ctx, "onnx", "out of memory"), -1;
    for (int64_t c = 0; c < C; c++) lab[c] = c;
    const char *labels = md_onnx_const_i64(ctx, "labels", 3, (int64_t[]){ 1, 1, C }, lab);
    free(lab);
    labels = md_onnx_op2(ctx, "Expand", labels,
                         md_onnx_concat(ctx, (const char *[]){ NP, md_onnx_i64s(ctx, "C", 1, &C) }, 2, 0));
    labels = md_onnx_reshape(ctx, labels, 2, (int64_t[]){ 0, -1 });               /* [N, P * C] */
    /* mmdet's offsets: label * max(h, w) + 1 */
    float one = 1.0f;
    md_onnx_attr keep = MD_ONNX_INT("keepdims", 0);
    const char *max_size = wh ? md_onnx_node1(ctx, "ReduceMax", &wh, 1, &keep, 1) : NULL;
    const char *offsets = md_onnx_op2(ctx, "Add", md_onnx_op2(ctx, "Mul", md_onnx_cast(ctx, labels, MD_ONNX_FLOAT), max_size),
                                      md_onnx_f32s(ctx, "one", 1, &one));
    const char *nms_boxes = md_onnx_op2(ctx, "Add", boxes, md_onnx_reshape(ctx, offsets, 3, (int64_t[]){ 0, -1, 1 }));
    o.labels = labels;
    o.out_boxes = boxes;
    if (md_onnx_nms(ctx, nms_boxes, scores, P * C, 1, &o, out)) return -1;
    out->n = N;
    return 0;
}
