/* Modules: the common header of every built component (backbone, neck,
 * head, detector, and the small layers inside them).
 *
 * A component embeds md_module as its first member and registers its
 * parameters, buffers and children by name; from that alone the core derives
 * state_dict names identical to mmdet 2.x ("backbone.layer1.0.conv1.weight"),
 * train/eval mode, parameter counts, checkpoint save/load and the optimizer's
 * parameter list.
 *
 *     struct my_head { md_module base; md_module *conv; int num_classes; };
 *     struct my_head *h = md_module_new(sizeof *h, &my_head_class);
 *     md_module_add_child(&h->base, "conv", conv, err);
 *     md_module_free(&h->base);   // frees children, tensors, then the struct
 */
#ifndef MMDET_MODULE_H
#define MMDET_MODULE_H

#include "safetensors.h"
#include "tensor.h"
#include "device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_module md_module;

typedef struct md_module_class {
    const char *name;                       /* "ResNet", "Conv2d", ... */
    /* Frees what the component owns beyond tensors and children (may be NULL). */
    void (*destroy)(md_module *m);
    /* Called by md_module_train after the mode is set on m and its children;
     * lets a component override (ResNet's norm_eval keeps BN in eval). */
    void (*on_train)(md_module *m, bool training);
    /* One-tensor forward for simple layers (NULL for richer components). */
    md_tensor *(*forward1)(md_ctx *ctx, md_module *m, md_tensor *x);
    /* The component's registry interface: md_model_iface for a model the
     * runner trains, md_backbone_iface for a backbone, ... (may be NULL). */
    const void *iface;
    /* Object classes the component predicts (heads), read by
     * NumClassCheckHook; NULL when not applicable. */
    int (*num_classes)(const md_module *m);
    /* The name an older checkpoint keeps one of m's tensors under (mmcv's
     * and mmdet's _load_from_state_dict renames; may be NULL): `rel` is the
     * tensor's name relative to m, `prefix` m's path ("" or ending in
     * "."); the full checkpoint name (strip prefix not included) goes into
     * buf. Asked by md_module_load_state only for a tensor the checkpoint
     * lacks; st and strip let it search the checkpoint's names. */
    bool (*legacy_name)(const md_module *m, const char *prefix, const char *rel, const md_st *st,
                        const char *strip, char *buf, size_t n);
} md_module_class;

typedef struct md_module_entry { char *name; md_tensor *t; } md_module_entry;
typedef struct md_module_child { char *name; md_module *m; } md_module_link;

/* Instance flags read by the optimizer's paramwise_cfg. */
#define MD_MODULE_NORM 1u      /* a normalisation layer (norm_decay_mult) */
#define MD_MODULE_DWCONV 2u    /* a depth-wise convolution (dwconv_decay_mult) */

struct md_module {
    const md_module_class *cls;
    bool training;
    unsigned flags;
    md_module_entry *params, *buffers;
    int n_params, n_buffers, cap_params, cap_buffers;
    md_module_link *children;
    int n_children, cap_children;
};

/* calloc's `size` bytes (a struct starting with md_module) and sets the class. */
void *md_module_new(size_t size, const md_module_class *cls);
void md_module_free(md_module *m);

/* A persistent f32 parameter (requires_grad) or buffer, zero-filled, owned by m. */
md_tensor *md_module_add_param(md_ctx *ctx, md_module *m, const char *name, int ndim,
                               const int64_t *shape, md_error *err);
md_tensor *md_module_add_buffer(md_ctx *ctx, md_module *m, const char *name, md_dtype dt, int ndim,
                                const int64_t *shape, md_error *err);
/* m takes ownership of child (freed with m). */
int md_module_add_child(md_module *m, const char *name, md_module *child, md_error *err);
md_module *md_module_child(const md_module *m, const char *name);

/* Recursively sets training mode, then calls each class's on_train. */
void md_module_train(md_module *m, bool training);

/* Depth-first in registration order (own params, own buffers, children),
 * full dotted names with `prefix` ("" for none). Stops on a non-zero return. */
typedef int (*md_module_visit_fn)(const char *name, md_tensor *t, bool is_param, void *user);
int md_module_visit(md_module *m, const char *prefix, md_module_visit_fn fn, void *user);
md_tensor *md_module_find(md_module *m, const char *name);
/* Moves every parameter and buffer (with its gradient) to device d in place,
 * initialising d first (device.h). */
int md_module_to(md_ctx *ctx, md_module *m, md_device d, md_error *err);
/* Where a module's tensors live: the device of its first parameter or
 * buffer (md_module_visit order); the CPU for a module without tensors. */
md_device md_module_device(md_module *m);
int64_t md_module_num_params(md_module *m, bool trainable_only);

/* State dict I/O. Saving adds every param and buffer under `prefix`.
 * Loading: names are matched after stripping `strip_prefix` (e.g. "module.")
 * from the file's names. As torch's load_state_dict: strict, a shape
 * mismatch, a missing or an unexpected key is an error (the first mismatch
 * explains both shapes); not strict, a mismatched tensor keeps its value and
 * everything else loads (mmcv's load_checkpoint, how a model with another
 * num_classes is fine-tuned). Both ways `report` (may be NULL) counts and
 * lists them, one line each ("missing: name", "unexpected: name",
 * "size mismatch for name: ..."); lines past the text's size are counted in
 * `omitted`. Tensors are converted to the module's dtypes. */
int md_module_save_state(md_module *m, md_st_writer *w, const char *prefix, md_error *err);
typedef struct md_load_report {
    int loaded, missing, unexpected, mismatched, omitted;
    char text[16384];
} md_load_report;
/* Whether the report has anything to say (missing, unexpected, mismatched). */
static inline bool md_load_report_any(const md_load_report *r) {
    return r->missing || r->unexpected || r->mismatched;
}
int md_module_load_state(md_ctx *ctx, md_module *m, const md_st *st, const char *strip_prefix,
                         bool strict, md_load_report *report, md_error *err);

#ifdef __cplusplus
}
#endif
#endif
