/* Symbolic helpers of the ONNX trace (onnx.h): small node patterns the
 * parts with their own ONNX form share (the dense heads' and the bbox
 * head's post-processing, the RoI extractor, box coders), and mmcv's
 * add_dummy_nms_for_onnx. Sizes come from Shape where the graph may be
 * dynamic, so one form serves the fixed and the dynamic export. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include <mmdet/onnx.h>

MD_API const char *md_onnx_op2(md_ctx *ctx, const char *op, const char *a, const char *b) {
    if (!a || !b) return NULL;
    return md_onnx_node1(ctx, op, (const char *[]){ a, b }, 2, NULL, 0);
}

MD_API const char *md_onnx_i64s(md_ctx *ctx, const char *hint, int n, const int64_t *v) {
    return md_onnx_const_i64(ctx, hint, 1, (int64_t[]){ n }, v);
}

MD_API const char *md_onnx_f32s(md_ctx *ctx, const char *hint, int n, const float *v) {
    return md_onnx_const_f32(ctx, hint, 1, (int64_t[]){ n }, v);
}

MD_API const char *md_onnx_reshape(md_ctx *ctx, const char *v, int ndim, const int64_t *shape) {
    return md_onnx_op2(ctx, "Reshape", v, md_onnx_i64s(ctx, "shape", ndim, shape));
}

MD_API const char *md_onnx_slice(md_ctx *ctx, const char *v, int64_t axis, int64_t start, int64_t end) {
    if (!v) return NULL;
    const char *ins[4] = { v, md_onnx_i64s(ctx, "starts", 1, &start), md_onnx_i64s(ctx, "ends", 1, &end),
                           md_onnx_i64s(ctx, "axes", 1, &axis) };
    return md_onnx_node1(ctx, "Slice", ins, 4, NULL, 0);
}

MD_API const char *md_onnx_shape(md_ctx *ctx, const char *v, int64_t start, int64_t end) {
    if (!v) return NULL;
    return md_onnx_slice(ctx, md_onnx_node1(ctx, "Shape", &v, 1, NULL, 0), 0, start, end);
}

MD_API const char *md_onnx_concat(md_ctx *ctx, const char *const *vs, int n, int64_t axis) {
    for (int i = 0; i < n; i++)
        if (!vs[i]) return NULL;
    md_onnx_attr at = MD_ONNX_INT("axis", axis);
    return md_onnx_node1(ctx, "Concat", vs, n, &at, 1);
}

MD_API const char *md_onnx_cast(md_ctx *ctx, const char *v, int elem_type) {
    if (!v) return NULL;
    md_onnx_attr at = MD_ONNX_INT("to", elem_type);
    return md_onnx_node1(ctx, "Cast", &v, 1, &at, 1);
}

MD_API const char *md_onnx_gather_rows(md_ctx *ctx, const char *x, const char *inds, int64_t d) {
    int64_t rep[3] = { 1, 1, d };
    const char *idx = md_onnx_op2(ctx, "Tile", md_onnx_reshape(ctx, inds, 3, (int64_t[]){ 0, -1, 1 }),
                                  md_onnx_i64s(ctx, "repeats", 3, rep));
    if (!x || !idx) return NULL;
    md_onnx_attr ax = MD_ONNX_INT("axis", 1);
    return md_onnx_node1(ctx, "GatherElements", (const char *[]){ x, idx }, 2, &ax, 1);
}

MD_API int md_onnx_topk(md_ctx *ctx, const char *x, int64_t k, int64_t K_static, const char **vals,
                        const char **inds) {
    const char *kv;
    if (md_onnx_dynamic(ctx) || K_static < 0) {
        /* mmdet's get_k_for_topk: Where(k < K, k, K) (Min takes int64 only from opset 12) */
        const char *a = md_onnx_i64s(ctx, "k", 1, &k), *b = md_onnx_shape(ctx, x, 1, 2);
        const char *lt = md_onnx_op2(ctx, "Less", a, b);
        kv = lt ? md_onnx_node1(ctx, "Where", (const char *[]){ lt, a, b }, 3, NULL, 0) : NULL;
    } else {
        int64_t kk = k < K_static ? k : K_static;
        kv = md_onnx_i64s(ctx, "k", 1, &kk);
    }
    if (!x || !kv) return -1;
    const char *outs[2];
    md_onnx_attr at[] = { MD_ONNX_INT("axis", 1), MD_ONNX_INT("largest", 1), MD_ONNX_INT("sorted", 1) };
    if (md_onnx_node(ctx, "TopK", (const char *[]){ x, kv }, 2, outs, 2, at, 3)) return -1;
    if (vals) *vals = outs[0];
    *inds = outs[1];
    return 0;
}

MD_API const char *md_onnx_image_max_wh(md_ctx *ctx, const md_onnx_image *img) {
    if (!md_onnx_dynamic(ctx)) {
        float wh[2] = { (float)img->w, (float)img->h };
        return md_onnx_f32s(ctx, "max_shape", 2, wh);
    }
    /* (h, w) of the input, reversed to (w, h) */
    const char *hw = md_onnx_cast(ctx, md_onnx_shape(ctx, img->input, 2, 4), MD_ONNX_FLOAT);
    return md_onnx_concat(ctx, (const char *[]){ md_onnx_slice(ctx, hw, 0, 1, 2), md_onnx_slice(ctx, hw, 0, 0, 1) },
                          2, 0);
}

/* column c of x [M, 3] (i64) -> [M] */
static const char *column(md_ctx *ctx, const char *x, int64_t c) {
    md_onnx_attr ax = MD_ONNX_INT("axis", 1);
    const char *i = md_onnx_const_i64(ctx, "col", 0, NULL, &c);
    if (!x || !i) return NULL;
    return md_onnx_node1(ctx, "Gather", (const char *[]){ x, i }, 2, &ax, 1);
}

MD_API int md_onnx_nms(md_ctx *ctx, const char *boxes, const char *scores, int64_t T, int64_t C,
                       const md_onnx_nms_opts *o, md_onnx_dets *out) {
    float iou = (float)o->iou_thr, thr = (float)o->score_thr, one = 1.0f;
    md_onnx_attr p021 = MD_ONNX_INTS("perm", ((int64_t[]){ 0, 2, 1 }), 3);
    const char *st = scores ? md_onnx_node1(ctx, "Transpose", &scores, 1, &p021, 1) : NULL;   /* [N, C, T] */
    const char *sel = boxes && st ? md_onnx_node1(ctx, "NonMaxSuppression",
                                                  (const char *[]){ boxes, st,
                                                                    md_onnx_i64s(ctx, "max_output_boxes_per_class", 1,
                                                                                 &o->max_per_class),
                                                                    md_onnx_f32s(ctx, "iou_threshold", 1, &iou),
                                                                    md_onnx_f32s(ctx, "score_threshold", 1, &thr) },
                                                  5, NULL, 0)
                                  : NULL;
    /* mask[(C * b + c) * T + t] = 1 for each selected (b, c, t) */
    const char *Tv = md_onnx_shape(ctx, boxes, 1, 2);
    const char *pos = md_onnx_op2(ctx, "Add",
                                  md_onnx_op2(ctx, "Mul",
                                              md_onnx_op2(ctx, "Add",
                                                          md_onnx_op2(ctx, "Mul", column(ctx, sel, 0),
                                                                      md_onnx_i64s(ctx, "C", 1, &C)),
                                                          column(ctx, sel, 1)),
                                              Tv),
                                  column(ctx, sel, 2));
    const char *ones = md_onnx_op2(ctx, "Expand", md_onnx_f32s(ctx, "one", 1, &one),
                                   pos ? md_onnx_node1(ctx, "Shape", &pos, 1, NULL, 0) : NULL);
    /* zeros over every candidate, sized from the scores (ConstantOfShape's
     * default value is a float 0) */
    const char *all = st ? md_onnx_node1(ctx, "Size", &st, 1, NULL, 0) : NULL;
    const char *zeros = all ? md_onnx_node1(ctx, "ConstantOfShape",
                                            (const char *[]){ md_onnx_reshape(ctx, all, 1, (int64_t[]){ 1 }) }, 1,
                                            NULL, 0)
                            : NULL;
    const char *mask = zeros && pos && ones
                           ? md_onnx_node1(ctx, "ScatterND",
                                           (const char *[]){ zeros, md_onnx_reshape(ctx, pos, 2, (int64_t[]){ -1, 1 }),
                                                             ones },
                                           3, NULL, 0)
                           : NULL;
    /* every candidate as (image, class, box): scores, boxes, labels, masked */
    const char *fs = md_onnx_reshape(ctx, st, 2, (int64_t[]){ 0, -1 });                   /* [N, C * T] */
    mask = md_onnx_op2(ctx, "Reshape", mask, fs ? md_onnx_node1(ctx, "Shape", &fs, 1, NULL, 0) : NULL);
    fs = md_onnx_op2(ctx, "Mul", fs, mask);
    const char *ob = o->out_boxes ? o->out_boxes : boxes;
    int64_t rep[4] = { 1, C, 1, 1 };
    const char *fb = md_onnx_op2(ctx, "Tile", md_onnx_reshape(ctx, ob, 4, (int64_t[]){ 0, 1, -1, 4 }),
                                 md_onnx_i64s(ctx, "repeats", 4, rep));
    fb = md_onnx_op2(ctx, "Mul", md_onnx_reshape(ctx, fb, 3, (int64_t[]){ 0, -1, 4 }),
                     md_onnx_reshape(ctx, mask, 3, (int64_t[]){ 0, -1, 1 }));
    const char *fl;
    if (o->labels) {
        fl = o->labels;
    } else {
        int64_t *lab = malloc(sizeof(int64_t) * (size_t)C);
        if (!lab) return md_op_fail(ctx, "onnx", "out of memory"), -1;
        for (int64_t c = 0; c < C; c++) lab[c] = c;
        fl = md_onnx_const_i64(ctx, "labels", 3, (int64_t[]){ 1, C, 1 }, lab);
        free(lab);
        fl = md_onnx_reshape(ctx, md_onnx_op2(ctx, "Expand", fl, st ? md_onnx_node1(ctx, "Shape", &st, 1, NULL, 0) : NULL),
                             2, (int64_t[]){ 0, -1 });
    }
    /* mmdet keeps the TopK in the graph whenever max_per_img > 0
     * (get_k_for_topk): the rows come sorted by score even when K covers
     * every candidate */
    int64_t CT = T >= 0 ? C * T : -1, K = o->max_per_img;
    if (K > 0) {
        const char *vals, *inds;
        if (md_onnx_topk(ctx, fs, K, CT, &vals, &inds)) return -1;
        md_onnx_attr ax1 = MD_ONNX_INT("axis", 1);
        fs = vals;
        fb = md_onnx_gather_rows(ctx, fb, inds, 4);
        fl = fl ? md_onnx_node1(ctx, "GatherElements", (const char *[]){ fl, inds }, 2, &ax1, 1) : NULL;
        if (CT >= 0 && CT < K) K = CT;
    } else {
        K = CT;
    }
    const char *dets = md_onnx_concat(ctx, (const char *[]){ fb, md_onnx_reshape(ctx, fs, 3, (int64_t[]){ 0, -1, 1 }) },
                                      2, 2);
    if (!dets || !fl) return -1;
    out->dets = dets;
    out->labels = fl;
    out->k = K;
    return 0;
}

MD_API int md_onnx_output_dets(md_ctx *ctx, const md_onnx_dets *d) {
    /* a dynamic graph's batch and detection count are named by the exporter */
    bool dyn = md_onnx_dynamic(ctx);
    int64_t n = dyn ? -1 : d->n, k = dyn ? -1 : d->k;
    if (md_onnx_output_value(ctx, d->dets, "dets", MD_ONNX_FLOAT, 3, (int64_t[]){ n, k, 5 }) ||
        md_onnx_output_value(ctx, d->labels, "labels", MD_ONNX_INT64, 2, (int64_t[]){ n, k }))
        return -1;
    return 0;
}
