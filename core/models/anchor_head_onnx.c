/* AnchorHead's ONNX export (anchor_head.h): mmdet 2.28's
 * BaseDenseHead.onnx_export. md_anchor_head_onnx_bboxes is its with_nms=False
 * part, shared by every anchor head (RetinaNet's and the RPN's export):
 * per level the scores and deltas (traced ops), the nms_pre anchors of
 * highest class score (TopK), the anchors, decoded by the coder's
 * onnx_decode and clipped to the input. md_anchor_head_onnx_export adds
 * mmcv's add_dummy_nms_for_onnx (md_onnx_nms) for a sigmoid head. The
 * anchors are constants of the traced size, or, in a dynamic graph,
 * computed from the feature map's Shape as the prior generator does:
 * base anchors + (x, y) * stride over the grid, (y, x, anchor) order. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/anchor_head.h>
#include <mmdet/onnx.h>
#include "internal.h"

/* The grid anchors of level l as a graph value [1, H * W * A, 4] computed
 * from Shape(feat) ([N, *, H, W]). The generator's priors must be its base
 * priors (those of a 1x1 map) shifted by the stride: checked against
 * grid_priors at the traced size fh x fw. */
static const char *dynamic_anchors(md_ctx *ctx, md_anchor_head *h, int l, const char *feat, int64_t fh, int64_t fw) {
    const md_prior_generator *pg = h->prior_generator;
    int sw, sh;
    pg->iface->stride(pg, l, &sw, &sh);
    md_onnx_graph *g = md_onnx_trace_pause(ctx);
    md_tensor *base = md_contiguous(ctx, md_grid_priors(ctx, pg, l, 1, 1));
    md_tensor *grid = md_contiguous(ctx, md_grid_priors(ctx, pg, l, fh, fw));
    md_onnx_trace_begin(ctx, g);
    if (!base || !grid) return NULL;
    int64_t A = base->shape[0];
    const float *b = md_f32(base), *p = md_f32(grid);
    for (int64_t y = 0; y < fh; y++)
        for (int64_t x = 0; x < fw; x++)
            for (int64_t k = 0; k < A; k++, p += 4) {
                float sx = (float)x * (float)sw, sy = (float)y * (float)sh;
                const float *q = b + 4 * k;
                if (p[0] != q[0] + sx || p[1] != q[1] + sy || p[2] != q[2] + sx || p[3] != q[3] + sy) {
                    md_op_fail(ctx, "onnx", "%s: the priors of level %d are not its base priors shifted by the "
                               "stride: no dynamic form", pg->type, l);
                    return NULL;
                }
            }
    char hint[32];
    snprintf(hint, sizeof hint, "base_anchors_%d", l);
    const char *bv = md_onnx_reshape(ctx, md_onnx_constant(ctx, base, hint), 3, (int64_t[]){ 1, A, 4 });
    /* shifts along x and y: Range(0, size) * stride */
    const char *hw = md_onnx_cast(ctx, md_onnx_shape(ctx, feat, 2, 4), MD_ONNX_FLOAT);
    float zero = 0, one = 1, st[2] = { (float)sh, (float)sw };
    const char *z = md_onnx_const_f32(ctx, "zero", 0, NULL, &zero), *o = md_onnx_const_f32(ctx, "one", 0, NULL, &one);
    const char *axis[2];
    for (int i = 0; i < 2; i++) {
        const char *n = md_onnx_reshape(ctx, md_onnx_slice(ctx, hw, 0, i, i + 1), 0, NULL);
        const char *r = n ? md_onnx_node1(ctx, "Range", (const char *[]){ z, n, o }, 3, NULL, 0) : NULL;
        axis[i] = md_onnx_op2(ctx, "Mul", r, md_onnx_const_f32(ctx, "stride", 0, NULL, &st[i]));
    }
    /* [H, W] grids of y and x, flattened (y, x) */
    const char *size = md_onnx_shape(ctx, feat, 2, 4);
    const char *yy = md_onnx_op2(ctx, "Expand", md_onnx_reshape(ctx, axis[0], 2, (int64_t[]){ -1, 1 }), size);
    const char *xx = md_onnx_op2(ctx, "Expand", md_onnx_reshape(ctx, axis[1], 2, (int64_t[]){ 1, -1 }), size);
    yy = md_onnx_reshape(ctx, yy, 2, (int64_t[]){ -1, 1 });
    xx = md_onnx_reshape(ctx, xx, 2, (int64_t[]){ -1, 1 });
    const char *shifts = md_onnx_concat(ctx, (const char *[]){ xx, yy, xx, yy }, 4, 1);   /* [H * W, 4] */
    const char *all = md_onnx_op2(ctx, "Add", md_onnx_reshape(ctx, shifts, 3, (int64_t[]){ -1, 1, 4 }), bv);
    return md_onnx_reshape(ctx, all, 3, (int64_t[]){ 1, -1, 4 });
}

MD_API int md_anchor_head_onnx_bboxes(md_ctx *ctx, md_module *m, md_tensor *const *cls, md_tensor *const *reg, int n,
                                      const md_onnx_image *img, const char **boxes, const char **scores, int64_t *T_out,
                                      md_error *err) {
    md_anchor_head *h = md_anchor_head_of(m);
    const char *name = m->cls->name;
    if (!md_onnx_tracing(ctx)) return md_fail(err, "%s.onnx_export: no ONNX trace is on", name);
    if (h->cls->with_score_factors)
        return md_failc(err, MD_ERR_CONFIG, "%s: ONNX export with post-processing is not supported for a head with a "
                        "score factor; export with --no-postprocess", name);
    if (!h->use_sigmoid_cls)
        return md_failc(err, MD_ERR_CONFIG, "%s: ONNX export with post-processing needs a sigmoid loss_cls "
                        "(use_sigmoid = true); export with --no-postprocess", name);
    if (!h->bbox_coder->iface->onnx_decode)
        return md_failc(err, MD_ERR_CONFIG, "%s: the box coder %s has no ONNX form", name, h->bbox_coder->type);
    if (!h->has_test_cfg) return md_failc(err, MD_ERR_CONFIG, "%s: ONNX export needs a test_cfg", name);
    const md_dense_test_cfg *cfg = &h->test_cfg;
    bool dyn = md_onnx_dynamic(ctx);
    int64_t N = cls[0]->shape[0], C = h->cls_out_channels;
    const char *sc[MD_MAX_LEVELS], *de[MD_MAX_LEVELS], *an[MD_MAX_LEVELS];
    int64_t T = 0;
    static const int perm[4] = { 0, 2, 3, 1 };
    for (int l = 0; l < n; l++) {
        md_tensor *s = md_sigmoid(ctx, md_reshape(ctx, md_permute(ctx, cls[l], perm), MD_DIMS(N, -1, C)));
        md_tensor *d = md_reshape(ctx, md_permute(ctx, reg[l], perm), MD_DIMS(N, -1, 4));
        if (!s || !d) return md_error_from_ctx(ctx, err, "%s.onnx_export level %d", name, l);
        int64_t fh = cls[l]->shape[2], fw = cls[l]->shape[3], K = s->shape[1];
        const char *av;
        if (dyn) {
            av = dynamic_anchors(ctx, h, l, md_onnx_value(ctx, cls[l]), fh, fw);
        } else {
            /* anchors for this size: computed outside the trace, a constant */
            md_onnx_graph *g = md_onnx_trace_pause(ctx);
            md_tensor *a = md_grid_priors(ctx, h->prior_generator, l, fh, fw);
            md_onnx_trace_begin(ctx, g);
            char hint[32];
            snprintf(hint, sizeof hint, "anchors_%d", l);
            av = a ? md_onnx_reshape(ctx, md_onnx_constant(ctx, a, hint), 3, (int64_t[]){ 1, K, 4 }) : NULL;
        }
        const char *sv = md_onnx_value(ctx, s), *dv = md_onnx_value(ctx, d);
        /* the anchors for each image of the batch: Expand to the deltas' shape */
        av = md_onnx_op2(ctx, "Expand", av, dv ? md_onnx_node1(ctx, "Shape", &dv, 1, NULL, 0) : NULL);
        if (cfg->nms_pre > 0) {
            /* mmdet: the nms_pre anchors of highest max-over-classes score,
             * a TopK of min(nms_pre, anchors) (get_k_for_topk keeps it in
             * the graph even when nms_pre covers every anchor) */
            md_onnx_attr at[] = { MD_ONNX_INTS("axes", (int64_t[]){ 2 }, 1), MD_ONNX_INT("keepdims", 0) };
            const char *mx = sv ? md_onnx_node1(ctx, "ReduceMax", &sv, 1, at, 2) : NULL, *inds;
            if (!mx || md_onnx_topk(ctx, mx, cfg->nms_pre, K, NULL, &inds))
                return md_error_from_ctx(ctx, err, "%s.onnx_export level %d", name, l);
            if (K > cfg->nms_pre) K = cfg->nms_pre;
            sv = md_onnx_gather_rows(ctx, sv, inds, C);
            dv = md_onnx_gather_rows(ctx, dv, inds, 4);
            av = md_onnx_gather_rows(ctx, av, inds, 4);
        }
        sc[l] = sv, de[l] = dv, an[l] = av;
        T += K;
    }
    const char *sv = md_onnx_concat(ctx, sc, n, 1), *dv = md_onnx_concat(ctx, de, n, 1);
    const char *av = md_onnx_concat(ctx, an, n, 1);
    const char *wh = md_onnx_image_max_wh(ctx, img);
    *boxes = sv && dv && av && wh ? h->bbox_coder->iface->onnx_decode(ctx, h->bbox_coder, av, dv, wh) : NULL;
    *scores = sv;
    *T_out = T;
    if (!*boxes) return md_error_from_ctx(ctx, err, "%s.onnx_export: decode", name);
    return 0;
}

MD_API int md_anchor_head_onnx_export(md_ctx *ctx, md_module *m, md_tensor *const *cls, md_tensor *const *reg, int n,
                                      const md_onnx_image *img, md_onnx_dets *out, md_error *err) {
    md_anchor_head *h = md_anchor_head_of(m);
    const char *name = m->cls->name;
    if (h->cls->dense.get_bboxes != md_anchor_head_get_bboxes)
        return md_failc(err, MD_ERR_CONFIG, "%s: ONNX export with post-processing is not supported for this head "
                        "(its own get_bboxes); export with --no-postprocess", name);
    const char *boxes, *scores;
    int64_t T;
    if (md_anchor_head_onnx_bboxes(ctx, m, cls, reg, n, img, &boxes, &scores, &T, err)) return -1;
    /* mmdet: max_output_boxes_per_class 200 (nms.max_output_boxes_per_class),
     * here at least max_per_img so one class can fill the output */
    const md_dense_test_cfg *cfg = &h->test_cfg;
    md_onnx_nms_opts o = { .max_per_class = cfg->max_per_img > 200 ? cfg->max_per_img : 200,
                           .iou_thr = cfg->nms_iou, .score_thr = cfg->score_thr, .max_per_img = cfg->max_per_img };
    if (md_onnx_nms(ctx, boxes, scores, T, h->cls_out_channels, &o, out))
        return md_error_from_ctx(ctx, err, "%s.onnx_export: nms", name);
    out->n = cls[0]->shape[0];
    return 0;
}
