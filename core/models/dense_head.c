/* The dense-head interface (bbox.h): mmdet 2.x's BaseDenseHead and
 * BBoxTestMixin base-class methods (base_dense_head.py,
 * dense_test_mixins.py) written with a plugin's forward / loss /
 * get_bboxes, used where the plugin leaves the optional entry NULL; the
 * reading of test_cfg / rpn_proposal; and md_build_dense_head. */
#include <stdio.h>
#include <string.h>
#include "internal.h"
#include "mmdet/bbox.h"

MD_API int md_dense_test_cfg_read(const md_cfg *c, const char *what, const md_dense_test_cfg *defaults,
                                  md_dense_test_cfg *out, md_error *err) {
    static const md_key keys[] = {
        { "nms_pre", MD_KEY_INT, NULL, "best scores kept per level before NMS (-1: all)", false },
        { "score_thr", MD_KEY_FLOAT, NULL, "candidates must score above it", false },
        { "min_bbox_size", MD_KEY_FLOAT, NULL, "proposals must be wider and taller", false },
        { "nms", MD_KEY_GROUP, NULL, "{ type = \"nms\"; iou_threshold = 0.5; }", false },
        { "max_per_img", MD_KEY_INT, NULL, "kept after NMS", false },
        { 0 } };
    static const md_key nkeys[] = { { "type", MD_KEY_STRING, "\"nms\"", NULL, false },
                                    { "iou_threshold", MD_KEY_FLOAT, NULL, NULL, true }, { 0 } };
    /* mmdet's dense-head defaults: every candidate, NMS at 0.5, 100 kept */
    static const md_dense_test_cfg dense = { .nms_pre = -1, .score_thr = 0.0, .min_bbox_size = -1, .nms_iou = 0.5,
                                             .max_per_img = 100 };
    if (!defaults) defaults = &dense;
    *out = *defaults;
    if (md_cfg_check_keys(c, keys, what, err)) return -1;
    const md_cfg *nms = md_cfg_get(c, "nms");
    if (!nms && defaults->nms_iou < 0)
        return md_failc(err, MD_ERR_CONFIG, "%s: nms = { type = \"nms\"; iou_threshold = ...; } is required", what);
    if (nms) {
        if (md_cfg_check_keys(nms, nkeys, "nms", err)) return md_error_wrap(err, "%s", what);
        const char *t = md_cfg_str(nms, "type", "nms");
        if (strcmp(t, "nms"))
            return md_failc(err, MD_ERR_CONFIG, "%s.nms.type \"%s\" is not supported (nms)", what, t);
        out->nms_iou = md_cfg_float(nms, "iou_threshold", out->nms_iou);
    }
    out->nms_pre = md_cfg_int(c, "nms_pre", out->nms_pre);
    out->score_thr = md_cfg_float(c, "score_thr", out->score_thr);
    out->min_bbox_size = md_cfg_float(c, "min_bbox_size", out->min_bbox_size);
    out->max_per_img = md_cfg_int(c, "max_per_img", out->max_per_img);
    return 0;
}

MD_API md_module *md_build_dense_head(md_ctx *ctx, const md_cfg *cfg, const md_cfg *default_args, md_error *err) {
    const char *type = md_cfg_str(cfg, "type", default_args ? md_cfg_str(default_args, "type", "") : "");
    const md_class *k = md_registry_find(ctx, "heads", type, err);
    md_module *m = k ? md_build_from_cfg(ctx, "heads", cfg, default_args, err) : NULL;
    if (!m) return NULL;
    const md_dense_head_class *c = md_dense_head_class_of(m);
    if (k->iface != (const void *)m->cls || c->tag != MD_DENSE_HEAD_TAG || !c->forward || !c->loss ||
        !c->get_bboxes || !c->test_cfg) {
        md_failc(err, MD_ERR_PLUGIN,
                 "%s: not a dense head (its class must be its registered md_dense_head_class, tagged "
                 "MD_DENSE_HEAD_TAG, with forward, loss, get_bboxes and test_cfg)", k->name);
        md_module_free(m);
        return NULL;
    }
    return m;
}

#define HEAD_FAIL(err, m, what) md_error_from_ctx(ctx, err, "%s.%s", (m)->cls->name, (what))

MD_API int md_dense_head_forward_train(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n,
                                       const md_batch *batch, const md_dense_test_cfg *proposal_cfg,
                                       md_losses *losses, md_det_result *proposals, md_error *err) {
    const md_dense_head_class *c = md_dense_head_class_of(m);
    if (c->forward_train) return c->forward_train(ctx, m, feats, n, batch, proposal_cfg, losses, proposals, err);
    /* BaseDenseHead.forward_train: outs = forward(x); loss(*outs, ...);
     * with proposal_cfg, get_bboxes(*outs, cfg=proposal_cfg) */
    md_tensor *cls[MD_MAX_LEVELS], *reg[MD_MAX_LEVELS];
    if (n < 1 || n > MD_MAX_LEVELS)
        return md_failc(err, MD_ERR_SHAPE, "%s: %d feature levels (1 to %d)", m->cls->name, n, MD_MAX_LEVELS);
    if (c->forward(ctx, m, feats, n, cls, reg)) return HEAD_FAIL(err, m, "forward");
    if (c->loss(ctx, m, cls, reg, n, batch, losses, err)) return -1;
    if (!proposals) return 0;
    if (!proposal_cfg)
        return md_failc(err, MD_ERR_CONFIG, "%s: proposals need a proposal_cfg (train_cfg.rpn_proposal)",
                        m->cls->name);
    return c->get_bboxes(ctx, m, cls, reg, n, batch, proposal_cfg, false, true, proposals, err);
}

MD_API int md_dense_head_simple_test(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n,
                                     const md_batch *batch, bool rescale, md_det_result *results, md_error *err) {
    const md_dense_head_class *c = md_dense_head_class_of(m);
    if (c->simple_test) return c->simple_test(ctx, m, feats, n, batch, rescale, results, err);
    md_tensor *cls[MD_MAX_LEVELS], *reg[MD_MAX_LEVELS];
    if (n < 1 || n > MD_MAX_LEVELS)
        return md_failc(err, MD_ERR_SHAPE, "%s: %d feature levels (1 to %d)", m->cls->name, n, MD_MAX_LEVELS);
    if (c->forward(ctx, m, feats, n, cls, reg)) return HEAD_FAIL(err, m, "forward");
    return c->get_bboxes(ctx, m, cls, reg, n, batch, NULL, rescale, true, results, err);
}

/* The head's test_cfg, or an error naming what needs it. */
static const md_dense_test_cfg *need_test_cfg(md_module *m, const char *what, md_error *err) {
    const md_dense_test_cfg *t = md_dense_head_class_of(m)->test_cfg(m);
    if (!t) md_failc(err, MD_ERR_CONFIG, "%s: %s needs a test_cfg", m->cls->name, what);
    return t;
}

MD_API int md_dense_head_aug_test(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n,
                                  md_batch *batch, bool rescale, md_det_result *results, md_error *err) {
    const md_dense_head_class *c = md_dense_head_class_of(m);
    if (c->aug_test) return c->aug_test(ctx, m, feats, n, batch, rescale, results, err);
    /* aug_test_bboxes: each variant's candidates (get_bboxes with
     * rescale=False, with_nms=False), mapped back, concatenated, batched
     * NMS and max_per_img of test_cfg */
    const md_dense_test_cfg *t = need_test_cfg(m, "aug_test", err);
    if (!t) return -1;
    int na = md_batch_n_augs(batch), N = batch->n;
    md_det_result *cands = md_ctx_alloc(ctx, sizeof *cands * (size_t)(na * N));
    md_det_result *one = md_ctx_alloc(ctx, sizeof *one * (size_t)na);
    const md_img_meta **metas = md_ctx_alloc(ctx, sizeof *metas * (size_t)na);
    if (!cands || !one || !metas) return HEAD_FAIL(err, m, "aug_test");
    for (int k = 0; k < na; k++) {
        md_tensor *cls[MD_MAX_LEVELS], *reg[MD_MAX_LEVELS];
        if (n < 1 || n > MD_MAX_LEVELS)
            return md_failc(err, MD_ERR_SHAPE, "%s: %d feature levels (1 to %d)", m->cls->name, n, MD_MAX_LEVELS);
        if (c->forward(ctx, m, feats[k], n, cls, reg))
            return md_error_from_ctx(ctx, err, "%s.aug_test: variant %d", m->cls->name, k);
        if (c->get_bboxes(ctx, m, cls, reg, n, md_batch_aug(batch, k), NULL, false, false, cands + (size_t)k * N,
                          err))
            return md_error_wrap(err, "test-time variant %d of %d", k, na);
    }
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < na; k++) {
            one[k] = cands[(size_t)k * N + i];
            metas[k] = &md_batch_aug(batch, k)->metas[i];
        }
        if (md_merge_aug_dets(ctx, one, metas, na, t->nms_iou, t->max_per_img, &results[i]))
            return md_error_from_ctx(ctx, err, "%s.aug_test: image %d", m->cls->name, i);
        if (!rescale && results[i].n > 0) {
            /* mmdet scales the merged boxes by the first variant's scale_factor */
            float *b = md_ctx_alloc(ctx, sizeof *b * (size_t)(5 * results[i].n));
            if (!b) return HEAD_FAIL(err, m, "aug_test");
            memcpy(b, results[i].bboxes, sizeof *b * (size_t)(5 * results[i].n));
            for (int j = 0; j < results[i].n; j++)
                for (int q = 0; q < 4; q++) b[5 * j + q] *= batch->metas[i].scale_factor[q];
            results[i].bboxes = b;
        }
    }
    return 0;
}

MD_API md_tensor *md_det_result_proposals(md_ctx *ctx, const md_det_result *r) {
    return md_tensor_from(ctx, MD_F32, MD_DIMS(r->n, 5), r->bboxes);
}

MD_API int md_dense_head_simple_test_rpn(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n,
                                         const md_batch *batch, md_tensor **proposals, md_error *err) {
    md_det_result *r = md_ctx_alloc(ctx, sizeof *r * (size_t)batch->n);
    if (!r) return HEAD_FAIL(err, m, "simple_test_rpn");
    if (md_dense_head_simple_test(ctx, m, feats, n, batch, false, r, err)) return -1;
    for (int i = 0; i < batch->n; i++)
        if (!(proposals[i] = md_det_result_proposals(ctx, &r[i]))) return HEAD_FAIL(err, m, "simple_test_rpn");
    return 0;
}

MD_API int md_dense_head_aug_test_rpn(md_ctx *ctx, md_module *m, md_tensor *const *const *feats, int n,
                                      md_batch *batch, md_tensor **proposals, md_error *err) {
    const md_dense_head_class *c = md_dense_head_class_of(m);
    if (c->aug_test_rpn) return c->aug_test_rpn(ctx, m, feats, n, batch, proposals, err);
    /* RPNTestMixin.aug_test_rpn: each variant's simple_test_rpn, then per
     * image merge_aug_proposals with test_cfg */
    const md_dense_test_cfg *t = need_test_cfg(m, "aug_test_rpn", err);
    if (!t) return -1;
    int na = md_batch_n_augs(batch), N = batch->n;
    md_tensor **per = md_ctx_alloc(ctx, sizeof *per * (size_t)(na * N)), **one = md_ctx_alloc(ctx, sizeof *one * (size_t)na);
    const md_img_meta **metas = md_ctx_alloc(ctx, sizeof *metas * (size_t)na);
    if (!per || !one || !metas) return HEAD_FAIL(err, m, "aug_test_rpn");
    for (int k = 0; k < na; k++)
        if (md_dense_head_simple_test_rpn(ctx, m, feats[k], n, md_batch_aug(batch, k), per + (size_t)k * N, err))
            return md_error_wrap(err, "test-time variant %d of %d", k, na);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < na; k++) {
            one[k] = per[(size_t)k * N + i];
            metas[k] = &md_batch_aug(batch, k)->metas[i];
        }
        proposals[i] = md_merge_aug_proposals(ctx, one, metas, na, t->nms_iou, t->max_per_img);
        if (!proposals[i]) return HEAD_FAIL(err, m, "merge_aug_proposals");
    }
    return 0;
}
