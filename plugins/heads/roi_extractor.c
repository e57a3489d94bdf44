/* mmdet's SingleRoIExtractor (mmdet/models/roi_heads/roi_extractors/
 * single_level_roi_extractor.py): each RoI is pooled from one FPN level by
 * RoIAlign, the level chosen by map_roi_levels:
 *     scale = sqrt(w * h); level = floor(log2(scale / finest_scale + 1e-6)),
 * clamped to [0, num_levels - 1]. No parameters. On the library's
 * BaseRoIExtractor (roi_head.h): roi_layer and featmap_strides are its.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/roi_head.h>

typedef struct extractor { md_roi_extractor_base base; int finest_scale; } extractor;

static const md_key keys[] = {
    MD_ROI_EXTRACTOR_KEYS,
    { "finest_scale", MD_KEY_INT, "56", "scale of level 0 in map_roi_levels", false, MD_AT(extractor, finest_scale),
      .min = "1" },
    { 0 } };

/* map_roi_levels in f32 arithmetic, as mmdet computes it on f32 RoIs. */
static int64_t roi_level(const float *r, double finest, int num_levels) {
    float scale = sqrtf((r[3] - r[1]) * (r[4] - r[2]));
    float l = floorf(log2f(scale / (float)finest + 1e-6f));
    if (!(l >= 0)) return 0;                 /* also NaN (negative area) */
    if (l > num_levels - 1) return num_levels - 1;
    return (int64_t)l;
}

static md_tensor *ext_forward(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, md_tensor *rois) {
    md_roi_extractor_base *e = (md_roi_extractor_base *)m;
    double finest = ((extractor *)m)->finest_scale;
    if (!rois) return NULL;
    for (int i = 0; i < e->num_levels && i < n; i++)
        if (!feats[i]) return NULL;
    if (n < e->num_levels)
        return md_op_fail(ctx, "SingleRoIExtractor", "%d feature maps given, featmap_strides has %d", n,
                          e->num_levels);
    if (rois->ndim != 2 || rois->shape[1] != 5 || rois->dtype != MD_F32)
        return md_op_fail(ctx, "SingleRoIExtractor", "rois must be [K, 5] f32");
    if (feats[0]->ndim != 4 || feats[0]->shape[1] != e->out_channels)
        return md_op_fail(ctx, "SingleRoIExtractor", "level 0 has %lld channels, out_channels is %d",
                          (long long)(feats[0]->ndim == 4 ? feats[0]->shape[1] : -1), e->out_channels);
    int S = e->out_size;
    int64_t K = rois->shape[0];
    /* RoIs come from the host (proposals, sampling); the pooling runs where
     * the features are, the level choice on a CPU copy */
    md_device dev = md_tensor_device(feats[0]);
    md_tensor *rois_h = md_tensor_to(ctx, rois, MD_DEVICE_CPU);
    rois = md_tensor_to(ctx, rois, dev);
    if (!rois || !rois_h) return NULL;
    if (e->num_levels == 1)
        return md_roi_extractor_align(ctx, e, feats[0], rois, 0);
    if (K == 0) return md_tensor_zeros_on(ctx, dev, MD_F32, MD_DIMS(0, e->out_channels, S, S));
    md_tensor *rc = md_contiguous(ctx, rois);
    md_tensor *rch = md_contiguous(ctx, rois_h);
    if (!rc || !rch) return NULL;
    const float *rp = md_f32(rch);
    int64_t *lvl = md_ctx_alloc(ctx, (size_t)K * sizeof *lvl);
    int64_t count[MD_MAX_LEVELS] = { 0 };
    for (int64_t k = 0; k < K; k++) count[lvl[k] = roi_level(rp + 5 * k, finest, e->num_levels)]++;
    /* RoIs grouped by level (stable), pooled per level, then put back in the
     * input order with the inverse permutation (differentiable gathers). */
    md_tensor *perm = md_tensor_empty(ctx, MD_I64, MD_DIMS(K)), *inv = md_tensor_empty(ctx, MD_I64, MD_DIMS(K));
    if (!perm || !inv) return NULL;
    md_tensor *parts[MD_MAX_LEVELS];
    int n_parts = 0;
    int64_t off = 0;
    for (int l = 0; l < e->num_levels; l++) {
        if (!count[l]) continue;
        md_tensor *idx = md_tensor_empty(ctx, MD_I64, MD_DIMS(count[l]));
        if (!idx) return NULL;
        int64_t j = 0;
        for (int64_t k = 0; k < K; k++)
            if (lvl[k] == l) {
                md_i64(idx)[j++] = k;
                md_i64(perm)[off] = k;
                md_i64(inv)[k] = off++;
            }
        md_tensor *r = md_index_select(ctx, rc, 0, md_tensor_to(ctx, idx, dev));
        parts[n_parts++] = md_roi_extractor_align(ctx, e, feats[l], r, l);
    }
    if (n_parts == 1) return parts[0];
    md_tensor *all = md_cat(ctx, parts, n_parts, 0);
    return md_index_select(ctx, all, 0, md_tensor_to(ctx, inv, dev));
}

/* forward's ONNX form: map_roi_levels in the graph (the same f32
 * arithmetic, log2 as Log / ln 2 as PyTorch exports it), then per level
 * the RoIs of that level (NonZero, Gather) pooled by RoiAlign and
 * scattered back to their rows (ScatterND) of zeros [R, C, S, S]: the
 * RoIs' order, one RoiAlign per level over its own RoIs. */
static const char *ext_onnx_forward(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, const char *rois) {
    md_roi_extractor_base *e = (md_roi_extractor_base *)m;
    float finest = (float)((extractor *)m)->finest_scale;
    if (n < e->num_levels) {
        md_op_fail(ctx, "SingleRoIExtractor", "%d feature maps given, featmap_strides has %d", n, e->num_levels);
        return NULL;
    }
    if (e->num_levels == 1) return md_roi_extractor_onnx_align(ctx, e, md_onnx_value(ctx, feats[0]), rois, 0);
    const char *w = md_onnx_op2(ctx, "Sub", md_onnx_slice(ctx, rois, 1, 3, 4), md_onnx_slice(ctx, rois, 1, 1, 2));
    const char *h = md_onnx_op2(ctx, "Sub", md_onnx_slice(ctx, rois, 1, 4, 5), md_onnx_slice(ctx, rois, 1, 2, 3));
    const char *scale = md_onnx_op2(ctx, "Mul", w, h);
    scale = scale ? md_onnx_node1(ctx, "Sqrt", &scale, 1, NULL, 0) : NULL;
    float eps = 1e-6f, ln2 = (float)M_LN2, lo = 0, hi = (float)(e->num_levels - 1);
    const char *lv = md_onnx_op2(ctx, "Add", md_onnx_op2(ctx, "Div", scale, md_onnx_f32s(ctx, "finest_scale", 1, &finest)),
                                 md_onnx_f32s(ctx, "eps", 1, &eps));
    lv = lv ? md_onnx_node1(ctx, "Log", &lv, 1, NULL, 0) : NULL;
    lv = md_onnx_op2(ctx, "Div", lv, md_onnx_f32s(ctx, "ln2", 1, &ln2));
    lv = lv ? md_onnx_node1(ctx, "Floor", &lv, 1, NULL, 0) : NULL;
    lv = lv ? md_onnx_node1(ctx, "Clip", (const char *[]){ lv, md_onnx_const_f32(ctx, "min", 0, NULL, &lo),
                                                           md_onnx_const_f32(ctx, "max", 0, NULL, &hi) }, 3, NULL, 0)
            : NULL;
    lv = md_onnx_reshape(ctx, lv, 1, (int64_t[]){ -1 });                               /* [R] */
    int64_t chw[3] = { feats[0]->shape[1], e->out_size, e->out_size };
    const char *size = md_onnx_concat(ctx, (const char *[]){ md_onnx_shape(ctx, rois, 0, 1),
                                                             md_onnx_i64s(ctx, "chw", 3, chw) }, 2, 0);
    const char *acc = size ? md_onnx_node1(ctx, "ConstantOfShape", &size, 1, NULL, 0) : NULL;
    md_onnx_attr ax0 = MD_ONNX_INT("axis", 0);
    for (int l = 0; l < e->num_levels; l++) {
        float lf = (float)l;
        const char *eq = md_onnx_op2(ctx, "Equal", lv, md_onnx_f32s(ctx, "level", 1, &lf));
        const char *idx = eq ? md_onnx_node1(ctx, "NonZero", &eq, 1, NULL, 0) : NULL;   /* [1, k] */
        const char *i1 = md_onnx_reshape(ctx, idx, 1, (int64_t[]){ -1 }), *i2 = md_onnx_reshape(ctx, idx, 2, (int64_t[]){ -1, 1 });
        const char *r = i1 ? md_onnx_node1(ctx, "Gather", (const char *[]){ rois, i1 }, 2, &ax0, 1) : NULL;
        const char *f = r ? md_roi_extractor_onnx_align(ctx, e, md_onnx_value(ctx, feats[l]), r, l) : NULL;
        acc = acc && i2 && f ? md_onnx_node1(ctx, "ScatterND", (const char *[]){ acc, i2, f }, 3, NULL, 0) : NULL;
    }
    return acc;
}

static const md_roi_extractor_base_class ext_cls = {
    .ext = MD_ROI_EXTRACTOR_BASE_ONNX("SingleRoIExtractor", ext_forward, ext_onnx_forward),
    .size = sizeof(extractor),
    .keys = keys,
};

MD_PLUGIN("roi_extractor", "1.0", "Apache-2.0");
MD_ROI_EXTRACTOR_REGISTER(ext_cls, "SingleRoIExtractor", keys, "RoIAlign from one FPN level per RoI (mmdet's map_roi_levels)")
