/* mmdet's SingleRoIExtractor (mmdet/models/roi_heads/roi_extractors/
 * single_level_roi_extractor.py): each RoI is pooled from one FPN level by
 * RoIAlign, the level chosen by map_roi_levels:
 *     scale = sqrt(w * h); level = floor(log2(scale / finest_scale + 1e-6)),
 * clamped to [0, num_levels - 1]. No parameters.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/roi_head.h>

static const md_key keys[] = {
    { "roi_layer", MD_KEY_GROUP, NULL,
      "{ type = \"RoIAlign\"; output_size = 7; sampling_ratio = 0; aligned = true; }", true },
    { "out_channels", MD_KEY_INT, NULL, "channels of the feature maps", true },
    { "featmap_strides", MD_KEY_LIST, NULL, "stride of each level used, finest first", true },
    { "finest_scale", MD_KEY_INT, "56", "scale of level 0 in map_roi_levels", false },
    { "init_cfg", MD_KEY_ANY, "None", "unused (no parameters)", false },
    { 0 } };

typedef struct extractor {
    md_module base;
    int out_channels, out_size, sampling_ratio, num_levels;
    bool aligned;
    double finest_scale;
    double strides[MD_MAX_LEVELS];
} extractor;

/* map_roi_levels in f32 arithmetic, as mmdet computes it on f32 RoIs. */
static int64_t roi_level(const float *r, double finest, int num_levels) {
    float scale = sqrtf((r[3] - r[1]) * (r[4] - r[2]));
    float l = floorf(log2f(scale / (float)finest + 1e-6f));
    if (!(l >= 0)) return 0;                 /* also NaN (negative area) */
    if (l > num_levels - 1) return num_levels - 1;
    return (int64_t)l;
}

static md_tensor *ext_forward(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, md_tensor *rois) {
    extractor *e = (extractor *)m;
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
        return md_roi_align(ctx, feats[0], rois, S, S, 1.0 / e->strides[0], e->sampling_ratio, e->aligned);
    if (K == 0) return md_tensor_zeros_on(ctx, dev, MD_F32, MD_DIMS(0, e->out_channels, S, S));
    md_tensor *rc = md_contiguous(ctx, rois);
    md_tensor *rch = md_contiguous(ctx, rois_h);
    if (!rc || !rch) return NULL;
    const float *rp = md_f32(rch);
    int64_t *lvl = md_ctx_alloc(ctx, (size_t)K * sizeof *lvl);
    int64_t count[MD_MAX_LEVELS] = { 0 };
    for (int64_t k = 0; k < K; k++) count[lvl[k] = roi_level(rp + 5 * k, e->finest_scale, e->num_levels)]++;
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
        parts[n_parts++] = md_roi_align(ctx, feats[l], r, S, S, 1.0 / e->strides[l], e->sampling_ratio, e->aligned);
    }
    if (n_parts == 1) return parts[0];
    md_tensor *all = md_cat(ctx, parts, n_parts, 0);
    return md_index_select(ctx, all, 0, md_tensor_to(ctx, inv, dev));
}

static int ext_num_inputs(const md_module *m) { return ((const extractor *)m)->num_levels; }
static int ext_out_size(const md_module *m) { return ((const extractor *)m)->out_size; }

static const md_roi_extractor_class ext_cls = {
    .model = { .module = { .name = "SingleRoIExtractor" } },
    .forward = ext_forward,
    .num_inputs = ext_num_inputs,
    .out_size = ext_out_size,
};

static void *ext_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    const md_cfg *rl = md_cfg_get(cfg, "roi_layer");
    static const md_key rl_keys[] = {
        { "type", MD_KEY_STRING, NULL, "RoIAlign", true },
        { "output_size", MD_KEY_ANY, "7", "int, or (h, w) with h == w", false },
        { "sampling_ratio", MD_KEY_INT, "0", "samples per bin side (0: adaptive)", false },
        { "aligned", MD_KEY_BOOL, "true", "pixel shift of -0.5", false },
        { "pool_mode", MD_KEY_STRING, "\"avg\"", "only avg", false },
        { "use_torchvision", MD_KEY_BOOL, "false", "ignored (same kernel)", false },
        { 0 } };
    if (md_cfg_check_keys(rl, rl_keys, "roi_layer", err) != 0) return NULL;
    if (strcmp(md_cfg_str(rl, "type", ""), "RoIAlign")) {
        md_failc(err, MD_ERR_CONFIG, "roi_layer.type \"%s\" is not supported (RoIAlign)", md_cfg_str(rl, "type", ""));
        return NULL;
    }
    if (strcmp(md_cfg_str(rl, "pool_mode", "avg"), "avg")) {
        md_failc(err, MD_ERR_CONFIG, "roi_layer.pool_mode \"%s\" is not supported (avg)",
                 md_cfg_str(rl, "pool_mode", ""));
        return NULL;
    }
    int64_t os[2];
    int n_os = md_cfg_int_array(rl, "output_size", os, 2, err);
    if (n_os < 0) return NULL;
    if (n_os == 0) os[0] = 7, n_os = 1;
    if ((n_os == 2 && os[0] != os[1]) || os[0] < 1) {
        md_failc(err, MD_ERR_CONFIG, "roi_layer.output_size must be a positive int or a square (h, w)");
        return NULL;
    }
    double strides[MD_MAX_LEVELS];
    int n = md_cfg_float_array(cfg, "featmap_strides", strides, MD_MAX_LEVELS, err);
    if (n < 0) return NULL;
    if (n < 1) {
        md_failc(err, MD_ERR_CONFIG, "featmap_strides needs 1 to %d levels", MD_MAX_LEVELS);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!(strides[i] > 0)) {
            md_failc(err, MD_ERR_CONFIG, "featmap_strides[%d] = %g must be positive", i, strides[i]);
            return NULL;
        }
    int oc = (int)md_cfg_int(cfg, "out_channels", 0);
    double fs = (double)md_cfg_int(cfg, "finest_scale", 56);
    int sr = (int)md_cfg_int(rl, "sampling_ratio", 0);
    if (oc < 1 || fs <= 0 || sr < 0) {
        md_failc(err, MD_ERR_CONFIG, "out_channels (%d) and finest_scale (%g) must be positive, sampling_ratio (%d) "
                 "non-negative", oc, fs, sr);
        return NULL;
    }
    extractor *e = md_module_new(sizeof *e, &ext_cls.model.module);
    if (!e) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    e->out_channels = oc;
    e->out_size = (int)os[0];
    e->sampling_ratio = sr;
    e->aligned = md_cfg_bool(rl, "aligned", true);
    e->finest_scale = fs;
    e->num_levels = n;
    memcpy(e->strides, strides, sizeof(double) * (size_t)n);
    return &e->base;
}

static const md_class ext_class = {
    .name = "SingleRoIExtractor", .keys = keys, .build = ext_build, MD_IFACE(&ext_cls, MD_IFACE_ROI_EXTRACTOR),
    .doc = "RoIAlign from one FPN level per RoI (mmdet's map_roi_levels)",
};

MD_PLUGIN("roi_extractor", "1.0", "Apache-2.0");
MD_REGISTER("roi_extractors", ext_class)
