/* mmdet 2.x's BaseRoIExtractor (base_roi_extractor.py) as the base of RoI
 * extractors (roi_head.h): roi_layer and featmap_strides read once. */
#include <string.h>
#include "internal.h"
#include <mmdet/roi_head.h>

static const md_key roi_layer_keys[] = {
    { "type", MD_KEY_STRING, NULL, "RoIAlign", true, .choices = "RoIAlign" },
    { "output_size", MD_KEY_ANY, "7", "int, or (h, w) with h == w", false },
    { "sampling_ratio", MD_KEY_INT, "0", "samples per bin side (0: adaptive)", false,
      MD_AT(md_roi_extractor_base, sampling_ratio), .min = "0" },
    { "aligned", MD_KEY_BOOL, "true", "pixel shift of -0.5", false, MD_AT(md_roi_extractor_base, aligned) },
    { "pool_mode", MD_KEY_STRING, "\"avg\"", "only avg", false, .choices = "avg" },
    { "use_torchvision", MD_KEY_BOOL, "false", "ignored (same kernel)", false },
    { 0 } };

MD_API md_module *md_roi_extractor_build(md_ctx *ctx, const md_cfg *cfg, const md_roi_extractor_base_class *cls,
                                         md_error *err) {
    (void)ctx;
    const char *name = cls->ext.model.module.name;
    md_roi_extractor_base *e = md__base_module_new(&cls->ext.model.module, cls->size, sizeof(md_roi_extractor_base),
                                                   true, "a RoI extractor class needs size >= "
                                                   "sizeof(md_roi_extractor_base)", err);
    if (!e) return NULL;
    int64_t os[2];
    int n_os;
    if (md_cfg_read_struct(cfg, cls->keys, e, name, err) ||
        md_cfg_check_keys(e->roi_layer, roi_layer_keys, "roi_layer", err) ||
        md_cfg_read_struct(e->roi_layer, roi_layer_keys, e, "roi_layer", err) ||
        (n_os = md_cfg_int_array(e->roi_layer, "output_size", os, 2, err)) < 0)
        goto fail;
    if (n_os == 0) os[0] = 7, n_os = 1;
    if ((n_os == 2 && os[0] != os[1]) || os[0] < 1) {
        md_failc(err, MD_ERR_CONFIG, "roi_layer.output_size must be a positive int or a square (h, w)");
        goto fail;
    }
    e->out_size = (int)os[0];
    e->num_levels = md_cfg_float_array(cfg, "featmap_strides", e->strides, MD_MAX_LEVELS, err);
    if (e->num_levels < 0) goto fail;
    if (e->num_levels < 1) {
        md_failc(err, MD_ERR_CONFIG, "featmap_strides needs 1 to %d levels", MD_MAX_LEVELS);
        goto fail;
    }
    for (int i = 0; i < e->num_levels; i++)
        if (!(e->strides[i] > 0)) {
            md_failc(err, MD_ERR_CONFIG, "featmap_strides[%d] = %g must be positive", i, e->strides[i]);
            goto fail;
        }
    return &e->base;
fail:
    md_module_free(&e->base);
    return NULL;
}

MD_API int md_roi_extractor_num_inputs(const md_module *m) { return ((const md_roi_extractor_base *)m)->num_levels; }
MD_API int md_roi_extractor_out_size(const md_module *m) { return ((const md_roi_extractor_base *)m)->out_size; }

MD_API md_tensor *md_roi_extractor_align(md_ctx *ctx, const md_roi_extractor_base *e, md_tensor *feat,
                                         md_tensor *rois, int l) {
    return md_roi_align(ctx, feat, rois, e->out_size, e->out_size, 1.0 / e->strides[l], e->sampling_ratio,
                        e->aligned);
}

MD_API const char *md_roi_extractor_onnx_align(md_ctx *ctx, const md_roi_extractor_base *e, const char *feat,
                                               const char *rois, int l) {
    double scale = 1.0 / e->strides[l];
    const char *bi = md_onnx_cast(ctx, md_onnx_reshape(ctx, md_onnx_slice(ctx, rois, 1, 0, 1), 1, (int64_t[]){ -1 }),
                                  MD_ONNX_INT64);
    const char *boxes = md_onnx_slice(ctx, rois, 1, 1, 5);
    bool half_pixel_attr = md_onnx_opset(ctx) >= 16;
    if (e->aligned && !half_pixel_attr) {
        /* mmcv's export for RoiAlign-10: the -0.5 pixel shift on the boxes */
        float off = (float)(0.5 / scale);
        boxes = md_onnx_op2(ctx, "Sub", boxes, md_onnx_f32s(ctx, "aligned_offset", 1, &off));
    }
    if (!feat || !bi || !boxes) return NULL;
    md_onnx_attr at[6] = { MD_ONNX_STRING("mode", "avg"), MD_ONNX_INT("output_height", e->out_size),
                           MD_ONNX_INT("output_width", e->out_size), MD_ONNX_INT("sampling_ratio", e->sampling_ratio),
                           MD_ONNX_FLOAT("spatial_scale", scale) };
    int n_at = 5;
    if (half_pixel_attr)
        at[n_at++] = MD_ONNX_STRING("coordinate_transformation_mode", e->aligned ? "half_pixel" : "output_half_pixel");
    return md_onnx_node1(ctx, "RoiAlign", (const char *[]){ feat, boxes, bi }, 3, at, n_at);
}
