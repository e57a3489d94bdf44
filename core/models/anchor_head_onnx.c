/* AnchorHead's onnx_export (anchor_head.h): mmdet 2.28's
 * BaseDenseHead.onnx_export for a sigmoid head, with NMS as mmcv's
 * add_dummy_nms_for_onnx writes it (ONNX NonMaxSuppression, then the
 * selected (image, class, box) triples as a 0/1 mask over every candidate
 * and the max_per_img best). The per-level reshapes are traced ops; the
 * rest is built as nodes, like a symbolic function. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/anchor_head.h>
#include <mmdet/onnx.h>
#include "internal.h"

static const char *i64s(md_ctx *ctx, const char *hint, int n, const int64_t *v) {
    return md_onnx_const_i64(ctx, hint, 1, (int64_t[]){ n }, v);
}

static const char *node2(md_ctx *ctx, const char *op, const char *a, const char *b) {
    return md_onnx_node1(ctx, op, (const char *[]){ a, b }, 2, NULL, 0);
}

static const char *reshape(md_ctx *ctx, const char *v, int ndim, const int64_t *shape) {
    return node2(ctx, "Reshape", v, i64s(ctx, "shape", ndim, shape));
}

static const char *expand(md_ctx *ctx, const char *v, int ndim, const int64_t *shape) {
    return node2(ctx, "Expand", v, i64s(ctx, "shape", ndim, shape));
}

/* rows `inds` [N, k] of x [N, K, d] -> [N, k, d] */
static const char *gather_rows(md_ctx *ctx, const char *x, const char *inds, int64_t N, int64_t k, int64_t d) {
    const char *idx = expand(ctx, reshape(ctx, inds, 3, (int64_t[]){ N, k, 1 }), 3, (int64_t[]){ N, k, d });
    md_onnx_attr ax = MD_ONNX_INT("axis", 1);
    return md_onnx_node1(ctx, "GatherElements", (const char *[]){ x, idx }, 2, &ax, 1);
}

/* TopK of x [N, K] along 1: values and indices */
static int topk(md_ctx *ctx, const char *x, int64_t k, const char **vals, const char **inds) {
    const char *outs[2];
    md_onnx_attr at[] = { MD_ONNX_INT("axis", 1), MD_ONNX_INT("largest", 1), MD_ONNX_INT("sorted", 1) };
    if (md_onnx_node(ctx, "TopK", (const char *[]){ x, i64s(ctx, "k", 1, &k) }, 2, outs, 2, at, 3)) return -1;
    if (vals) *vals = outs[0];
    *inds = outs[1];
    return 0;
}

/* column c of x [M, 3] (i64) -> [M] */
static const char *column(md_ctx *ctx, const char *x, int64_t c) {
    md_onnx_attr ax = MD_ONNX_INT("axis", 1);
    return md_onnx_node1(ctx, "Gather", (const char *[]){ x, md_onnx_const_i64(ctx, "col", 0, NULL, &c) }, 2, &ax, 1);
}

MD_API int md_anchor_head_onnx_export(md_ctx *ctx, md_module *m, md_tensor *const *cls, md_tensor *const *reg,
                                      int n, int64_t img_h, int64_t img_w, md_error *err) {
    md_anchor_head *h = md_anchor_head_of(m);
    const char *name = m->cls->name;
    if (!md_onnx_tracing(ctx)) return md_fail(err, "%s.onnx_export: no ONNX trace is on", name);
    if (h->cls->dense.get_bboxes != md_anchor_head_get_bboxes || h->cls->with_score_factors)
        return md_failc(err, MD_ERR_CONFIG, "%s: ONNX export with post-processing is not supported for this head "
                        "(its own get_bboxes or a score factor); export with --no-postprocess", name);
    if (!h->use_sigmoid_cls)
        return md_failc(err, MD_ERR_CONFIG, "%s: ONNX export with post-processing needs a sigmoid loss_cls "
                        "(use_sigmoid = true); export with --no-postprocess", name);
    if (!h->bbox_coder->iface->onnx_decode)
        return md_failc(err, MD_ERR_CONFIG, "%s: the box coder %s has no ONNX form", name, h->bbox_coder->type);
    const md_dense_test_cfg *cfg = &h->test_cfg;
    if (!h->has_test_cfg) return md_failc(err, MD_ERR_CONFIG, "%s: ONNX export needs a test_cfg", name);
    int64_t N = cls[0]->shape[0], C = h->cls_out_channels;
    const char *scores[MD_MAX_LEVELS], *deltas[MD_MAX_LEVELS], *anchors[MD_MAX_LEVELS];
    int64_t T = 0;
    static const int perm[4] = { 0, 2, 3, 1 };
    for (int l = 0; l < n; l++) {
        md_tensor *s = md_sigmoid(ctx, md_reshape(ctx, md_permute(ctx, cls[l], perm), MD_DIMS(N, -1, C)));
        md_tensor *d = md_reshape(ctx, md_permute(ctx, reg[l], perm), MD_DIMS(N, -1, 4));
        /* anchors for this size: computed outside the trace, a constant */
        md_onnx_graph *g = md_onnx_trace_pause(ctx);
        md_tensor *a = md_grid_priors(ctx, h->prior_generator, l, cls[l]->shape[2], cls[l]->shape[3]);
        md_onnx_trace_begin(ctx, g);
        if (!s || !d || !a) return md_error_from_ctx(ctx, err, "%s.onnx_export level %d", name, l);
        char hint[32];
        snprintf(hint, sizeof hint, "anchors_%d", l);
        int64_t K = a->shape[0];
        const char *av = md_onnx_constant(ctx, a, hint), *sv = md_onnx_value(ctx, s), *dv = md_onnx_value(ctx, d);
        av = expand(ctx, reshape(ctx, av, 3, (int64_t[]){ 1, K, 4 }), 3, (int64_t[]){ N, K, 4 });
        if (cfg->nms_pre > 0 && cfg->nms_pre < K) {
            /* mmdet: the nms_pre anchors of highest max-over-classes score */
            md_onnx_attr at[] = { MD_ONNX_INTS("axes", (int64_t[]){ 2 }, 1), MD_ONNX_INT("keepdims", 0) };
            const char *mx = md_onnx_node1(ctx, "ReduceMax", &sv, 1, at, 2), *inds;
            if (!mx || topk(ctx, mx, cfg->nms_pre, NULL, &inds))
                return md_error_from_ctx(ctx, err, "%s.onnx_export level %d", name, l);
            K = cfg->nms_pre;
            sv = gather_rows(ctx, sv, inds, N, K, C);
            dv = gather_rows(ctx, dv, inds, N, K, 4);
            av = gather_rows(ctx, av, inds, N, K, 4);
        }
        scores[l] = sv, deltas[l] = dv, anchors[l] = av;
        T += K;
    }
    md_onnx_attr ax1 = MD_ONNX_INT("axis", 1);
    const char *sv = md_onnx_node1(ctx, "Concat", scores, n, &ax1, 1);
    const char *dv = md_onnx_node1(ctx, "Concat", deltas, n, &ax1, 1);
    const char *av = md_onnx_node1(ctx, "Concat", anchors, n, &ax1, 1);
    const char *boxes = sv && dv && av ? h->bbox_coder->iface->onnx_decode(ctx, h->bbox_coder, av, dv, img_h, img_w)
                                       : NULL;
    if (!boxes) return md_error_from_ctx(ctx, err, "%s.onnx_export: decode", name);

    /* NMS per class: selected (image, class, box) rows, at most mmdet's
     * max_output_boxes_per_class (200) per class, or max_per_img when more */
    int64_t K = cfg->max_per_img > 0 ? cfg->max_per_img : T * C, CT = C * T, per_class = K > 200 ? K : 200;
    float iou = (float)cfg->nms_iou, thr = (float)cfg->score_thr;
    md_onnx_attr p021 = MD_ONNX_INTS("perm", ((int64_t[]){ 0, 2, 1 }), 3);
    const char *st = md_onnx_node1(ctx, "Transpose", &sv, 1, &p021, 1);   /* [N, C, T] */
    const char *sel = md_onnx_node1(ctx, "NonMaxSuppression",
                                    (const char *[]){ boxes, st, i64s(ctx, "max_output_boxes_per_class", 1, &per_class),
                                                      md_onnx_const_f32(ctx, "iou_threshold", 1, (int64_t[]){ 1 }, &iou),
                                                      md_onnx_const_f32(ctx, "score_threshold", 1, (int64_t[]){ 1 }, &thr) },
                                    5, NULL, 0);
    if (!sel) return md_error_from_ctx(ctx, err, "%s.onnx_export: nms", name);
    /* mask[(C * b + c) * T + t] = 1 for each selected row */
    int64_t cC = C, cT = T;
    const char *pos = node2(ctx, "Add", node2(ctx, "Mul", node2(ctx, "Add", node2(ctx, "Mul", column(ctx, sel, 0),
                                                                              i64s(ctx, "C", 1, &cC)),
                                                                column(ctx, sel, 1)),
                                              i64s(ctx, "T", 1, &cT)),
                            column(ctx, sel, 2));
    float one = 1.0f;
    const char *ones = node2(ctx, "Expand", md_onnx_const_f32(ctx, "one", 1, (int64_t[]){ 1 }, &one),
                             md_onnx_node1(ctx, "Shape", &pos, 1, NULL, 0));
    int64_t total = N * CT;
    float *zeros = calloc((size_t)total, sizeof(float));
    if (!zeros) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    const char *zv = md_onnx_const_f32(ctx, "zeros", 1, &total, zeros);
    free(zeros);
    const char *mask = md_onnx_node1(ctx, "ScatterND",
                                     (const char *[]){ zv, reshape(ctx, pos, 2, (int64_t[]){ -1, 1 }), ones }, 3,
                                     NULL, 0);
    /* every candidate as (image, class, box): scores, boxes, labels masked */
    const char *fs = node2(ctx, "Mul", reshape(ctx, st, 2, (int64_t[]){ N, CT }),
                           reshape(ctx, mask, 2, (int64_t[]){ N, CT }));
    const char *fb = expand(ctx, reshape(ctx, boxes, 4, (int64_t[]){ N, 1, T, 4 }), 4, (int64_t[]){ N, C, T, 4 });
    fb = node2(ctx, "Mul", reshape(ctx, fb, 3, (int64_t[]){ N, CT, 4 }), reshape(ctx, mask, 3, (int64_t[]){ N, CT, 1 }));
    int64_t *lab = malloc(sizeof(int64_t) * (size_t)C);
    if (!lab) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    for (int64_t c = 0; c < C; c++) lab[c] = c;
    const char *fl = md_onnx_const_i64(ctx, "labels", 3, (int64_t[]){ 1, C, 1 }, lab);
    free(lab);
    fl = reshape(ctx, expand(ctx, fl, 3, (int64_t[]){ N, C, T }), 2, (int64_t[]){ N, CT });
    if (K < CT) {
        const char *vals, *inds;
        if (topk(ctx, fs, K, &vals, &inds)) return md_error_from_ctx(ctx, err, "%s.onnx_export: top-k", name);
        fs = vals;
        fb = gather_rows(ctx, fb, inds, N, K, 4);
        fl = md_onnx_node1(ctx, "GatherElements", (const char *[]){ fl, inds }, 2, &ax1, 1);
    } else {
        K = CT;
    }
    md_onnx_attr ax2 = MD_ONNX_INT("axis", 2);
    const char *dets = md_onnx_node1(ctx, "Concat", (const char *[]){ fb, reshape(ctx, fs, 3, (int64_t[]){ N, K, 1 }) },
                                     2, &ax2, 1);
    if (!dets || !fl || md_onnx_output_value(ctx, dets, "dets", MD_ONNX_FLOAT, 3, (int64_t[]){ N, K, 5 }) ||
        md_onnx_output_value(ctx, fl, "labels", MD_ONNX_INT64, 2, (int64_t[]){ N, K }))
        return md_error_from_ctx(ctx, err, "%s.onnx_export", name);
    return 0;
}
