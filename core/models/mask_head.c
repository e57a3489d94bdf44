/* The base of mask heads (roi_head.h): what mmdet 2.x's FCNMaskHead
 * (mmdet/models/roi_heads/mask_heads/fcn_mask_head.py) gives every mask
 * head derived from it: the loss part, mask_target (mmdet/core/mask/
 * mask_target.py), the loss, and get_seg_masks with _do_paste_mask. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include <mmdet/roi_head.h>
#include "backends/mask_math.h"

MD_API md_module *md_mask_head_build(md_ctx *ctx, const md_cfg *cfg, const md_mask_head_base_class *cls,
                                     md_error *err) {
    const char *name = cls->head.model.module.name;
    md_mask_head_base *h = md__base_module_new(&cls->head.model.module, cls->size, sizeof(md_mask_head_base),
                                               cls->init_layers != NULL,
                                               "a mask head class needs size >= sizeof(md_mask_head_base) and "
                                               "init_layers", err);
    if (!h) return NULL;
    md_module *m = &h->base;
    h->cls = cls;
    if (md_cfg_read_struct(cfg, cls->keys, h, name, err)) goto fail;
    if (h->init_cfg) {
        md_failc(err, MD_ERR_CONFIG, "%s:%d: %s.init_cfg must be None (mmdet: to prevent abnormal initialisation)",
                 md_cfg_file(h->init_cfg), md_cfg_line(h->init_cfg), name);
        goto fail;
    }
    if (!(h->loss_mask = md_build_part(ctx, "losses", cfg, "loss_mask", err))) goto fail;
    if (!(h->loss_mask->flags & MD_LOSS_MASK)) {
        md_failc(err, MD_ERR_CONFIG, "loss_mask %s does not take mask logits (CrossEntropyLoss with use_mask = true "
                 "does)", h->loss_mask->type);
        goto fail;
    }
    if (cls->init_layers(ctx, h, err)) goto fail;
    md_module_train(m, true);
    return m;
fail:
    md_module_free(m);
    return NULL;
}

MD_API void md_mask_head_destroy(md_module *m) { md_loss_free(((md_mask_head_base *)m)->loss_mask); }

MD_API int md_mask_head_num_classes(const md_module *m) { return ((const md_mask_head_base *)m)->num_classes; }

/* mask_target: per image the positives' boxes clipped to the masks' image,
 * then crop_and_resize of the assigned gt masks. */
MD_API md_tensor *md_mask_head_get_targets(md_ctx *ctx, md_module *m, const md_sampling_result *sr, int n,
                                           const md_masks *gt_masks, int mask_size) {
    md_device dev = md_module_device(m);   /* the targets are made where the head runs */
    md_tensor **parts = md_ctx_alloc(ctx, sizeof *parts * (size_t)(n + 1));
    if (!parts) return NULL;
    int k = 0;
    for (int i = 0; i < n; i++) {
        int64_t P = sr[i].pos_bboxes->shape[0];
        if (P == 0) continue;
        md_tensor *b = md_tensor_to(ctx, sr[i].pos_bboxes, MD_DEVICE_CPU);
        md_tensor *boxes = b ? md_tensor_empty(ctx, MD_F32, MD_DIMS(P, 4)) : NULL;
        if (!boxes || !(b = md_contiguous(ctx, b))) return NULL;
        const md_masks *gm = &gt_masks[i];
        if (gm->n < sr[i].num_gts)
            return md_op_fail(ctx, "mask_target", "image %d has %lld gt boxes but %d masks", i,
                              (long long)sr[i].num_gts, gm->n);
        for (int64_t p = 0; p < P; p++)
            for (int q = 0; q < 4; q++) {
                float v = md_f32(b)[4 * p + q], hi = (float)(q % 2 ? gm->h : gm->w);
                md_f32(boxes)[4 * p + q] = v < 0 ? 0 : v > hi ? hi : v;
            }
        if (!(parts[k++] = md_masks_crop_and_resize(ctx, gm, md_tensor_to(ctx, boxes, dev),
                                                    md_tensor_to(ctx, sr[i].pos_assigned_gt_inds, dev), mask_size,
                                                    mask_size)))
            return NULL;
    }
    if (k == 0) return md_tensor_to(ctx, md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, mask_size, mask_size)), dev);
    return k == 1 ? parts[0] : md_cat(ctx, parts, k, 0);
}

MD_API int md_mask_head_loss(md_ctx *ctx, md_module *m, md_tensor *mask_pred, md_tensor *targets, md_tensor *labels,
                             md_losses *losses, md_error *err) {
    md_mask_head_base *h = (md_mask_head_base *)m;
    if (!mask_pred || !targets || !labels) return md_error_from_ctx(ctx, err, "%s.loss", m->cls->name);
    md_tensor *l;
    int64_t K = mask_pred->shape[0];
    if (K == 0) {
        /* mmdet: mask_pred.sum(), a zero still on the graph */
        l = md_sum(ctx, mask_pred, MD_DIM_ALL, false);
    } else {
        md_device dev = md_tensor_device(mask_pred);
        md_tensor *lab = h->class_agnostic ? md_tensor_zeros(ctx, MD_I64, MD_DIMS(K)) : labels;
        l = md_loss_forward(ctx, h->loss_mask, mask_pred, md_tensor_to(ctx, targets, dev), md_tensor_to(ctx, lab, dev),
                            MD_NO_AVG, MD_REDUCE_DEFAULT);
    }
    if (!l) return md_error_from_ctx(ctx, err, "%s.loss", m->cls->name);
    return md_losses_add(losses, "loss_mask", l, err);
}

/* The per-pixel math is the backends' (backends/mask_math.h), which the
 * CPU and CUDA paste kernels share. */
MD_API void md_mask_paste(const float *mask, int mh, int mw, const float box[4], int img_h, int img_w, float thr,
                          uint8_t *out) {
    int win[4];
    md__paste_window(box, img_h, img_w, win);
    for (int y = 0; y < img_h; y++)
        for (int x = 0; x < img_w; x++)
            out[(size_t)y * (size_t)img_w + (size_t)x] = md__paste_pixel(mask, mh, mw, box, win, x, y, thr);
}

MD_API int md_mask_head_get_seg_masks(md_ctx *ctx, md_module *m, md_tensor *mask_pred, bool probs, md_tensor *det_bboxes,
                                      md_tensor *det_labels, double thr, const int ori_shape[2],
                                      const float scale_factor[4], bool rescale, md_rle *masks, md_error *err) {
    md_mask_head_base *h = (md_mask_head_base *)m;
    const char *name = m->cls->name;
    bool was = md_grad_set_enabled(ctx, false);
    /* the probabilities stay where the head ran: the masks are pasted and
     * encoded there (md_masks_paste_encode), only their counts come back */
    md_tensor *prob = probs ? mask_pred : md_sigmoid(ctx, mask_pred);
    md_tensor *boxes = md_contiguous(ctx, md_tensor_to(ctx, det_bboxes, MD_DEVICE_CPU));
    md_tensor *labels = md_contiguous(ctx, md_tensor_to(ctx, det_labels, MD_DEVICE_CPU));
    md_grad_set_enabled(ctx, was);
    if (!prob || !boxes || !labels) return md_error_from_ctx(ctx, err, "%s.get_seg_masks", name);
    int64_t D = prob->shape[0], C = prob->shape[1], bw = boxes->shape[1];
    if (boxes->shape[0] != D || labels->shape[0] != D || bw < 4)
        return md_failc(err, MD_ERR_SHAPE, "%s.get_seg_masks: %lld masks for %lld boxes and %lld labels", name,
                        (long long)D, (long long)boxes->shape[0], (long long)labels->shape[0]);
    int img_h, img_w;
    if (rescale) {
        img_h = ori_shape[0];
        img_w = ori_shape[1];
    } else {
        img_h = (int)nearbyint((double)ori_shape[0] * (double)scale_factor[1]);
        img_w = (int)nearbyint((double)ori_shape[1] * (double)scale_factor[0]);
    }
    md_tensor *pb = md_tensor_empty(ctx, MD_F32, MD_DIMS(D, 4)), *chan = md_tensor_empty(ctx, MD_I64, MD_DIMS(D));
    if (!pb || !chan) return md_error_from_ctx(ctx, err, "%s.get_seg_masks", name);
    for (int64_t i = 0; i < D; i++) {
        int64_t l = md_i64(labels)[i], c = h->class_agnostic ? 0 : l;
        if (c < 0 || c >= C)
            return md_failc(err, MD_ERR_SHAPE, "%s.get_seg_masks: label %lld of detection %lld outside the %lld mask "
                            "channels", name, (long long)l, (long long)i, (long long)C);
        md_i64(chan)[i] = c;
        for (int q = 0; q < 4; q++) {
            float v = md_f32(boxes)[bw * i + q];
            md_f32(pb)[4 * i + q] = rescale ? v / scale_factor[q] : v;
        }
    }
    md_device dev = md_tensor_device(prob);
    if (md_masks_paste_encode(ctx, prob, md_tensor_to(ctx, chan, dev), md_tensor_to(ctx, pb, dev), img_h, img_w,
                              (float)thr, masks))
        return md_error_from_ctx(ctx, err, "%s.get_seg_masks", name);
    return 0;
}
