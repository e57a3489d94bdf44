/* mmdet's SingleStageDetector and RetinaNet (mmdet/models/detectors/
 * single_stage.py, retinanet.py): backbone -> neck -> dense head, the head
 * built with train_cfg / test_cfg as mmdet's build_head(bbox_head) after
 * bbox_head.update(train_cfg=..., test_cfg=...); any dense head (bbox.h),
 * RPNHead included. Implements the runner's md_model_iface: train_step =
 * extract_feat + the head's forward_train, simple_test / aug_test = the
 * head's with rescale. State dict: backbone.*, neck.*, bbox_head.*. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>

typedef struct detector {
    md_module base;
    md_module *backbone, *neck, *head;
    /* the parts' configs, borrowed (NULL: None) */
    const md_cfg *backbone_cfg, *neck_cfg, *head_cfg, *train_cfg, *test_cfg, *init_cfg;
} detector;

static const md_key keys[] = {
    { "backbone", MD_KEY_GROUP, NULL, "backbone config", true, MD_AT(detector, backbone_cfg) },
    { "neck", MD_KEY_ANY, "None", "neck config (None: no neck)", false, MD_AT(detector, neck_cfg) },
    { "bbox_head", MD_KEY_GROUP, NULL, "dense head config", true, MD_AT(detector, head_cfg) },
    { "train_cfg", MD_KEY_ANY, "None", "passed to the head", false, MD_AT(detector, train_cfg) },
    { "test_cfg", MD_KEY_ANY, "None", "passed to the head", false, MD_AT(detector, test_cfg) },
    { "pretrained", MD_KEY_ANY, "None", "deprecated: use backbone.init_cfg", false },
    { "init_cfg", MD_KEY_ANY, "None", "only None", false, MD_AT(detector, init_cfg) },
    { 0 } };

static int extract_feat(md_ctx *ctx, detector *d, md_tensor *img, md_tensor **feats) {
    return md_extract_feat(ctx, &d->base, d->backbone, d->neck, img, feats);
}

/* extract_feat for the batch (or a variant of it); an error carries the
 * context's message. */
static int feats_of(md_ctx *ctx, detector *d, md_batch *b, md_tensor **feats, md_error *err) {
    int n = extract_feat(ctx, d, b->img, feats);
    if (n <= 0) return md_error_from_ctx(ctx, err, NULL);
    return n;
}

/* mmdet's SingleStageDetector.forward_train: extract_feat, then the head's
 * forward_train (forward + loss unless the head overrides it). */
static int train_step(md_ctx *ctx, md_module *m, void *batch, md_losses *losses, md_error *err) {
    detector *d = (detector *)m;
    md_batch *b = batch;
    md_tensor *feats[MD_MAX_LEVELS];
    int n = feats_of(ctx, d, b, feats, err);
    if (n < 0) return -1;
    md_scope_push(ctx, "bbox_head");
    int rc = md_dense_head_forward_train(ctx, d->head, feats, n, b, NULL, losses, NULL, err);
    md_scope_pop(ctx);
    /* the features go once the head's backward has read them */
    for (int i = 0; i < n; i++) md_tensor_release(ctx, feats[i]);
    return rc;
}

static int simple_test(md_ctx *ctx, md_module *m, void *batch, md_det_result *results, md_error *err) {
    detector *d = (detector *)m;
    md_batch *b = batch;
    md_tensor *feats[MD_MAX_LEVELS];
    int n = feats_of(ctx, d, b, feats, err);
    if (n < 0) return -1;
    md_scope_push(ctx, "bbox_head");
    int rc = md_dense_head_simple_test(ctx, d->head, feats, n, b, true, results, err);
    md_scope_pop(ctx);
    return rc;
}

/* mmdet's SingleStageDetector.aug_test: features of every variant, then
 * the head's aug_test (BBoxTestMixin.aug_test_bboxes) with rescale. */
static int aug_test(md_ctx *ctx, md_module *m, void *batch, md_det_result *results, md_error *err) {
    detector *d = (detector *)m;
    md_batch *b = batch;
    int na = md_batch_n_augs(b), n = -1, rc = -1;
    bool was = md_grad_set_enabled(ctx, false);
    md_tensor ***feats = md_ctx_alloc(ctx, sizeof *feats * (size_t)na);
    for (int k = 0; feats && k < na; k++) {
        feats[k] = md_ctx_alloc(ctx, sizeof **feats * MD_MAX_LEVELS);
        int nk = feats[k] ? extract_feat(ctx, d, md_batch_aug(b, k)->img, feats[k]) : -1;
        if (nk <= 0 || (n >= 0 && nk != n)) {
            md_error_from_ctx(ctx, err, "test-time variant %d", k);
            goto out;
        }
        n = nk;
    }
    if (!feats) {
        md_error_from_ctx(ctx, err, NULL);
        goto out;
    }
    md_scope_push(ctx, "bbox_head");
    rc = md_dense_head_aug_test(ctx, d->head, (md_tensor *const *const *)feats, n, b, true, results, err);
    md_scope_pop(ctx);
out:
    md_grad_set_enabled(ctx, was);
    return rc;
}

/* extract_feat and the head's forward, in the head's scope (pushed on
 * success: the caller pops it); the part forward_dummy and onnx_export share. */
static int head_forward(md_ctx *ctx, detector *d, md_tensor *img, md_tensor **cls, md_tensor **reg, md_error *err) {
    md_tensor *feats[MD_MAX_LEVELS];
    int n = extract_feat(ctx, d, img, feats);
    if (n <= 0) return md_error_from_ctx(ctx, err, NULL);
    md_scope_push(ctx, "bbox_head");
    if (md_dense_head_class_of(d->head)->forward(ctx, d->head, feats, n, cls, reg)) {
        md_scope_pop(ctx);
        return md_error_from_ctx(ctx, err, "bbox_head");
    }
    return n;
}

/* mmdet's SingleStageDetector.forward_dummy: extract_feat, the head's forward. */
static int forward_dummy(md_ctx *ctx, md_module *m, md_tensor *img, md_error *err) {
    md_tensor *cls[MD_MAX_LEVELS], *reg[MD_MAX_LEVELS];
    if (head_forward(ctx, (detector *)m, img, cls, reg, err) < 0) return -1;
    md_scope_pop(ctx);
    return 0;
}

/* mmdet's SingleStageDetector.onnx_export: extract_feat, the head's
 * forward, then its onnx_export (dets, labels) or, without
 * post-processing, the raw outputs cls_score_<l> and bbox_pred_<l>. */
static int onnx_export(md_ctx *ctx, md_module *m, md_tensor *img, bool postprocess, md_error *err) {
    detector *d = (detector *)m;
    md_tensor *cls[MD_MAX_LEVELS], *reg[MD_MAX_LEVELS];
    int n = head_forward(ctx, d, img, cls, reg, err), rc = 0;
    if (n < 0) return -1;
    const md_dense_head_class *hc = md_dense_head_class_of(d->head);
    if (postprocess) {
        md_onnx_image im = { md_onnx_value(ctx, img), img->shape[0], img->shape[2], img->shape[3] };
        md_onnx_dets dets;
        rc = hc->onnx_export ? hc->onnx_export(ctx, d->head, cls, reg, n, &im, &dets, err)
                             : md_failc(err, MD_ERR_CONFIG, "%s: the head has no ONNX export with post-processing; "
                                        "export with --no-postprocess", d->head->cls->name);
        if (!rc && md_onnx_output_dets(ctx, &dets)) rc = md_error_from_ctx(ctx, err, "bbox_head outputs");
    } else {
        for (int l = 0; l < n && !rc; l++) {
            char a[32], b[32];
            snprintf(a, sizeof a, "cls_score_%d", l);
            snprintf(b, sizeof b, "bbox_pred_%d", l);
            if (md_onnx_output(ctx, cls[l], a) || md_onnx_output(ctx, reg[l], b))
                rc = md_error_from_ctx(ctx, err, "bbox_head output %d", l);
        }
    }
    md_scope_pop(ctx);
    return rc;
}

static const md_model_iface iface = { .train_step = train_step, .simple_test = simple_test, .aug_test = aug_test,
                                      .onnx_export = onnx_export, .forward_dummy = forward_dummy };

static int init_weights(md_ctx *ctx, md_module *m, md_error *err) {
    detector *d = (detector *)m;
    if (md_model_init_weights(ctx, d->backbone, err)) return md_error_wrap(err, "backbone");
    if (d->neck && md_model_init_weights(ctx, d->neck, err)) return md_error_wrap(err, "neck");
    return 0;
}

static void *build_with(md_ctx *ctx, const md_cfg *cfg, const md_model_class *klass, md_error *err) {
    detector *d = md_module_new(sizeof *d, &klass->module);
    if (!d) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    md_module *m = &d->base;
    if (md_cfg_read_struct(cfg, keys, d, klass->module.name, err)) goto fail;
    if (d->init_cfg) {
        md_failc(err, MD_ERR_CONFIG, "init_cfg: only None is supported for the detector (use backbone.init_cfg)");
        goto fail;
    }
    d->backbone = md_build_backbone(ctx, d->backbone_cfg, err);
    if (!d->backbone || md_module_add_child(m, "backbone", d->backbone, err)) {
        md_module_free(d->backbone);
        md_error_wrap(err, "backbone");
        goto fail;
    }
    if (d->neck_cfg) {
        d->neck = md_build_neck(ctx, d->neck_cfg, err);
        if (!d->neck || md_module_add_child(m, "neck", d->neck, err)) {
            md_module_free(d->neck);
            md_error_wrap(err, "neck");
            goto fail;
        }
    }
    md_cfg *defaults = md_cfg_new_group();
    if (d->train_cfg) md_cfg_set_copy(defaults, "train_cfg", d->train_cfg);
    if (d->test_cfg) md_cfg_set_copy(defaults, "test_cfg", d->test_cfg);
    d->head = md_build_dense_head(ctx, d->head_cfg, defaults, err);
    md_cfg_free(defaults);
    if (!d->head || md_module_add_child(m, "bbox_head", d->head, err)) {
        md_module_free(d->head);
        md_error_wrap(err, "bbox_head");
        goto fail;
    }
    if (init_weights(ctx, m, err)) goto fail;
    md_module_train(m, true);
    return m;
fail:
    md_module_free(m);
    return NULL;
}

/* mmdet's single-stage detectors differ from SingleStageDetector only by
 * name: one class each, all built by build_with. */
#define SINGLE_STAGE(id_, name_, doc_)                                                                       \
    static const md_model_class id_##_cls = { .module = { .name = (name_), .iface = &iface },            \
                                              .init_weights = init_weights };                             \
    static void *id_##_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {                             \
        return build_with(ctx, cfg, &id_##_cls, err);                                                     \
    }                                                                                                     \
    static const md_class id_##_class = { .name = (name_), .keys = keys, .build = id_##_build,            \
                                          MD_IFACE(&iface, MD_IFACE_MODEL), .doc = (doc_) };              \
    MD_REGISTER("detectors", id_##_class)

MD_PLUGIN("single_stage", "1.0", "Apache-2.0");
SINGLE_STAGE(single_stage, "SingleStageDetector", "backbone + neck + dense head")
SINGLE_STAGE(retinanet, "RetinaNet", "RetinaNet (a SingleStageDetector)")
SINGLE_STAGE(fcos, "FCOS", "FCOS (a SingleStageDetector)")
SINGLE_STAGE(atss, "ATSS", "ATSS (a SingleStageDetector)")
