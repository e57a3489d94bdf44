/* Model components: the interfaces of the "backbones" and "necks"
 * registries, and mmcv's init_cfg Pretrained.
 *
 * A backbone or neck plugin registers an md_class whose `iface` points at
 * its md_backbone_class / md_neck_class, and whose `build` returns an
 * md_module* of that very class: the module's class struct starts with
 * md_module_class and is followed by the interface, so a detector holding
 * the md_module* reaches the interface without knowing the plugin:
 *
 *     md_module *bb = md_build_backbone(ctx, md_cfg_get(model, "backbone"), err);
 *     md_tensor *feats[MD_MAX_LEVELS];
 *     int n = md_backbone_forward(ctx, bb, img, feats, MD_MAX_LEVELS);
 *     n = md_neck_forward(ctx, neck, feats, n, feats, MD_MAX_LEVELS);
 *
 * Forward calls allocate in the step arena and fail through the context's
 * sticky error (tensor.h): they return -1 with md_ctx_error(ctx) set.
 *
 * Weight init follows mmcv's BaseModule: `build` leaves the weights as the
 * component's default init_cfg would (ResNet: kaiming and constant; FPN:
 * xavier uniform), and init_weights applies a Pretrained init_cfg, which
 * mmcv applies last and which then wins over everything.
 */
#ifndef MMDET_MODELS_H
#define MMDET_MODELS_H

#include "config.h"
#include "module.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_MAX_LEVELS 8    /* most feature maps a backbone or neck returns */

/* Interface codes (registry.h's MD_IFACE) of the "backbones" and "necks"
 * registries, and of a plain module class ("models"). */
#define MD_IFACE_BACKBONE MD_IFACE_CODE('B', 'B', 'N', 1)   /* md_backbone_class */
#define MD_IFACE_NECK MD_IFACE_CODE('N', 'C', 'K', 1)       /* md_neck_class */
#define MD_IFACE_MODULE MD_IFACE_CODE('M', 'O', 'D', 1)     /* md_module_class */

/* Common head of every model component's class (backbones, necks, and the
 * heads and detectors that follow this pattern). */
typedef struct md_model_class {
    md_module_class module;       /* must be first */
    /* mmcv BaseModule.init_weights: applies init_cfg (Pretrained loads the
     * checkpoint). NULL: nothing beyond the init done at build. */
    int (*init_weights)(md_ctx *ctx, md_module *m, md_error *err);
} md_model_class;

/* The "backbones" registry: image batch -> feature maps, finest first. */
typedef struct md_backbone_class {
    md_model_class model;         /* must be first */
    /* img [N, C, H, W] f32 -> outs[0 .. n) (n <= max_outs); returns n or -1. */
    int (*forward)(md_ctx *ctx, md_module *m, md_tensor *img, md_tensor **outs, int max_outs);
    int (*num_outs)(const md_module *m);
    /* Channels and stride (relative to the input) of output i. */
    int (*out_channels)(const md_module *m, int i);
    int (*out_stride)(const md_module *m, int i);
} md_backbone_class;

/* The "necks" registry: feature maps -> feature maps, finest first. */
typedef struct md_neck_class {
    md_model_class model;         /* must be first */
    /* ins[0 .. n_in) -> outs[0 .. n) (n <= max_outs; outs may alias ins);
     * returns n or -1. */
    int (*forward)(md_ctx *ctx, md_module *m, md_tensor *const *ins, int n_in, md_tensor **outs, int max_outs);
    int (*num_outs)(const md_module *m);
    int (*out_channels)(const md_module *m, int i);
} md_neck_class;

/* md_build_from_cfg for the registry, then a check that the class's iface
 * is the module's class (a plugin bug otherwise, reported by name). */
md_module *md_build_backbone(md_ctx *ctx, const md_cfg *cfg, md_error *err);
md_module *md_build_neck(md_ctx *ctx, const md_cfg *cfg, md_error *err);

/* The interface of a module built by md_build_backbone / md_build_neck. */
static inline const md_backbone_class *md_backbone_class_of(const md_module *m) {
    return (const md_backbone_class *)m->cls;
}
static inline const md_neck_class *md_neck_class_of(const md_module *m) {
    return (const md_neck_class *)m->cls;
}
static inline const md_model_class *md_model_class_of(const md_module *m) {
    return (const md_model_class *)m->cls;
}

/* Forward through the interface; NULL/-1 propagate like ops do. */
int md_backbone_forward(md_ctx *ctx, md_module *backbone, md_tensor *img, md_tensor **outs, int max_outs);
int md_neck_forward(md_ctx *ctx, md_module *neck, md_tensor *const *ins, int n_in, md_tensor **outs,
                    int max_outs);
/* mmdet's BaseDetector.extract_feat: img (on the host, as collated) copied
 * to the model's device, the backbone, then the neck when there is one, in
 * the scopes "backbone" and "neck". Activations are handed back once read
 * (md_tensor_release): the device copy of img, and the backbone outputs the
 * neck did not return. feats[0 .. n) with n <= MD_MAX_LEVELS; -1 (ctx
 * error) on failure. */
int md_extract_feat(md_ctx *ctx, md_module *model, md_module *backbone, md_module *neck, md_tensor *img,
                    md_tensor **feats);
/* Calls the class's init_weights (0 when it has none). Only for modules
 * built through md_build_backbone / md_build_neck (or another model registry). */
int md_model_init_weights(md_ctx *ctx, md_module *m, md_error *err);

/* ---- init_cfg ----
 * mmcv's PretrainedInit: init_cfg = { type = "Pretrained"; checkpoint = "x.safetensors";
 * prefix = "backbone."; } loads the checkpoint non-strictly (missing and
 * unexpected keys are logged as warnings); with `prefix`, only the entries
 * that start with it, with it stripped. A list of init_cfgs is accepted; the
 * non-Pretrained entries (Kaiming, Constant, Xavier, Normal) describe the
 * component's own default init and are left to it.
 * Returns 1 when a checkpoint was loaded, 0 when init_cfg (may be NULL or
 * None) has no Pretrained entry, -1 on error (unreadable file, wrong
 * shapes, a .pth or torchvision:// checkpoint, which need the PyTorch
 * reader). `where` names the component in messages ("ResNet"). */
int md_init_cfg_pretrained(md_ctx *ctx, md_module *m, const md_cfg *init_cfg, const char *where,
                           md_error *err);
/* Checks an init_cfg value (group, list of groups, or None) without loading:
 * each entry's type must be a known initialiser. For use at build time. */
int md_init_cfg_check(const md_cfg *init_cfg, const char *where, md_error *err);

#ifdef __cplusplus
}
#endif
#endif
