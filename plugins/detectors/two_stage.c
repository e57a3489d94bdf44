/* mmdet's TwoStageDetector, FasterRCNN and MaskRCNN (mmdet/models/
 * detectors/two_stage.py, faster_rcnn.py, mask_rcnn.py): backbone,
 * optional neck, rpn_head built with train_cfg.rpn / test_cfg.rpn
 * (proposals during training from train_cfg.rpn_proposal, else
 * test_cfg.rpn), roi_head with train_cfg.rcnn / test_cfg.rcnn.
 * forward_train returns the RPN losses (loss_rpn_cls, loss_rpn_bbox) and
 * the RoI head's (loss_cls, acc, loss_bbox, and loss_mask with a mask
 * head, which reads the batch's gt_masks); simple_test returns detections
 * rescaled to the original image, with their masks when the RoI head has
 * a mask branch (aug_test: merged over the variants by aug_test_mask).
 * The samplers draw from the context's rng (seeded by --seed).
 * The rpn_head is any dense head (bbox.h), as in mmdet 3.x: a head with a
 * num_classes key gets num_classes = 1, and its loss names without "rpn"
 * are prefixed "rpn_" (RetinaHead's loss_cls -> rpn_loss_cls) so they do
 * not collide with the RoI head's.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>
#include <mmdet/roi_head.h>

typedef struct two_stage {
    md_module base;
    md_module *backbone, *neck, *rpn, *roi;
    /* the parts' configs, borrowed (NULL: None) */
    const md_cfg *backbone_cfg, *neck_cfg, *rpn_head_cfg, *roi_head_cfg, *train_cfg, *test_cfg, *init;
    md_cfg *init_cfg;                 /* owned clone of init */
    bool has_proposal_cfg;
    md_dense_test_cfg proposal_cfg;   /* train_cfg.rpn_proposal, else test_cfg.rpn */
} two_stage;

static const md_key keys[] = {
    { "backbone", MD_KEY_GROUP, NULL, "backbone (backbones registry)", true, MD_AT(two_stage, backbone_cfg) },
    { "neck", MD_KEY_ANY, "None", "neck (necks registry) or None", false, MD_AT(two_stage, neck_cfg) },
    { "rpn_head", MD_KEY_ANY, "None", "RPN head (heads registry)", false, MD_AT(two_stage, rpn_head_cfg) },
    { "roi_head", MD_KEY_ANY, "None", "RoI head (heads registry)", false, MD_AT(two_stage, roi_head_cfg) },
    { "train_cfg", MD_KEY_ANY, "None", "rpn, rpn_proposal, rcnn", false, MD_AT(two_stage, train_cfg) },
    { "test_cfg", MD_KEY_ANY, "None", "rpn, rcnn", false, MD_AT(two_stage, test_cfg) },
    { "pretrained", MD_KEY_ANY, "None", "deprecated; use the backbone's init_cfg", false },
    { "init_cfg", MD_KEY_ANY, "None", "Pretrained loads a checkpoint", false, MD_AT(two_stage, init) },
    { 0 } };

static int extract_feat(md_ctx *ctx, two_stage *d, md_tensor *img, md_tensor **feats) {
    return md_extract_feat(ctx, &d->base, d->backbone, d->neck, img, feats);
}

static int ts_train_step(md_ctx *ctx, md_module *m, void *batch_ptr, md_losses *losses, md_error *err) {
    two_stage *d = (two_stage *)m;
    md_batch *b = batch_ptr;
    md_tensor *feats[MD_MAX_LEVELS];
    int n = extract_feat(ctx, d, b->img, feats);
    if (n < 0) return md_error_from_ctx(ctx, err, NULL);
    md_tensor **props = md_ctx_alloc(ctx, sizeof *props * (size_t)b->n);
    if (!props) return md_error_from_ctx(ctx, err, NULL);
    if (!d->rpn || !d->roi) return md_failc(err, MD_ERR_CONFIG, "TwoStageDetector: training needs rpn_head and roi_head");
    if (!d->has_proposal_cfg)
        return md_failc(err, MD_ERR_CONFIG, "TwoStageDetector: training needs train_cfg.rpn_proposal or test_cfg.rpn");
    md_rng *rng = md_ctx_rng(ctx);
    md_det_result *dets = md_ctx_alloc(ctx, sizeof *dets * (size_t)b->n);
    if (!dets) return md_error_from_ctx(ctx, err, NULL);
    /* the RPN trains without labels (mmdet passes gt_labels=None) */
    md_batch rb = *b;
    md_boxes *gts = md_ctx_alloc(ctx, sizeof *gts * (size_t)b->n);
    if (!gts) return md_error_from_ctx(ctx, err, NULL);
    for (int i = 0; i < b->n; i++) gts[i] = (md_boxes){ b->gt_bboxes[i].n, b->gt_bboxes[i].cap, b->gt_bboxes[i].xyxy, NULL };
    rb.gt_bboxes = gts;
    md_losses rpn_losses = { 0 };
    md_scope_push(ctx, "rpn_head");
    int rc = md_dense_head_forward_train(ctx, d->rpn, feats, n, &rb, &d->proposal_cfg, &rpn_losses, dets, err);
    md_scope_pop(ctx);
    if (rc) return md_error_wrap(err, "rpn_head");
    for (int i = 0; i < rpn_losses.n; i++) {
        const char *name = rpn_losses.names[i];
        char renamed[sizeof rpn_losses.names[0]];
        snprintf(renamed, sizeof renamed, "%s%s", strstr(name, "loss") && !strstr(name, "rpn") ? "rpn_" : "", name);
        if (md_losses_add(losses, renamed, rpn_losses.values[i], err)) return md_error_wrap(err, "rpn_head");
    }
    for (int i = 0; i < b->n; i++)
        if (!(props[i] = md_det_result_proposals(ctx, &dets[i]))) return md_error_from_ctx(ctx, err, NULL);
    md_scope_push(ctx, "roi_head");
    rc = md_roi_head_class_of(d->roi)->forward_train(ctx, d->roi, feats, n, b, props, rng, losses, err);
    md_scope_pop(ctx);
    /* the features go once both heads' backward have read them */
    for (int i = 0; i < n; i++) md_tensor_release(ctx, feats[i]);
    return rc ? md_error_wrap(err, "roi_head") : 0;
}

static int ts_simple_test(md_ctx *ctx, md_module *m, void *batch_ptr, md_det_result *results, md_error *err) {
    two_stage *d = (two_stage *)m;
    md_batch *b = batch_ptr;
    if (!d->rpn || !d->roi) return md_failc(err, MD_ERR_CONFIG, "TwoStageDetector: testing needs rpn_head and roi_head");
    bool was = md_grad_set_enabled(ctx, false);
    md_tensor *feats[MD_MAX_LEVELS];
    int n = extract_feat(ctx, d, b->img, feats);
    md_tensor **props = md_ctx_alloc(ctx, sizeof *props * (size_t)b->n);
    md_tensor **dets = md_ctx_alloc(ctx, sizeof *dets * (size_t)b->n), **labels = md_ctx_alloc(ctx, sizeof *labels * (size_t)b->n);
    int rc = -1;
    if (n < 0 || !props || !dets || !labels) {
        md_error_from_ctx(ctx, err, NULL);
        goto out;
    }
    md_scope_push(ctx, "rpn_head");
    rc = md_dense_head_simple_test_rpn(ctx, d->rpn, feats, n, b, props, err);
    md_scope_pop(ctx);
    if (rc) {
        md_error_wrap(err, "rpn_head");
        goto out;
    }
    md_scope_push(ctx, "roi_head");
    const md_roi_head_class *hc = md_roi_head_class_of(d->roi);
    rc = hc->simple_test(ctx, d->roi, feats, n, b, props, true, dets, labels, err);
    /* mmdet's StandardRoIHead.simple_test: the masks of the detections */
    md_rle **masks = NULL;
    if (!rc && hc->with_mask && hc->with_mask(d->roi)) {
        masks = md_ctx_alloc(ctx, sizeof *masks * (size_t)b->n);
        rc = masks ? hc->simple_test_mask(ctx, d->roi, feats, n, b, dets, labels, true, masks, err)
                   : md_error_from_ctx(ctx, err, NULL);
    }
    md_scope_pop(ctx);
    if (rc) {
        md_error_wrap(err, "roi_head");
        goto out;
    }
    for (int i = 0; i < b->n; i++) {
        results[i].n = (int)dets[i]->shape[0];
        results[i].bboxes = md_f32(dets[i]);
        results[i].labels = md_i64(labels[i]);
        results[i].masks = masks ? masks[i] : NULL;
    }
out:
    md_grad_set_enabled(ctx, was);
    return rc;
}

/* mmdet's TwoStageDetector.aug_test: features of every variant, the RPN's
 * aug_test_rpn (proposals merged in the original image), then the RoI
 * head's aug_test with rescale. */
static int ts_aug_test(md_ctx *ctx, md_module *m, void *batch_ptr, md_det_result *results, md_error *err) {
    two_stage *d = (two_stage *)m;
    md_batch *b = batch_ptr;
    if (!d->rpn || !d->roi) return md_failc(err, MD_ERR_CONFIG, "TwoStageDetector: testing needs rpn_head and roi_head");
    const md_roi_head_class *hc = md_roi_head_class_of(d->roi);
    if (!hc->aug_test)
        return md_failc(err, MD_ERR_CONFIG, "%s: its %s has no aug_test (test-time augmentation)", m->cls->name,
                        d->roi->cls->name);
    bool with_mask = hc->with_mask && hc->with_mask(d->roi);
    if (with_mask && !hc->aug_test_mask)
        return md_failc(err, MD_ERR_CONFIG, "%s: its %s has no aug_test_mask (test-time augmentation of masks)",
                        m->cls->name, d->roi->cls->name);
    int na = md_batch_n_augs(b), n = -1;
    bool was = md_grad_set_enabled(ctx, false);
    md_tensor ***feats = md_ctx_alloc(ctx, sizeof *feats * (size_t)na);
    md_tensor **props = md_ctx_alloc(ctx, sizeof *props * (size_t)b->n);
    md_tensor **dets = md_ctx_alloc(ctx, sizeof *dets * (size_t)b->n), **labels = md_ctx_alloc(ctx, sizeof *labels * (size_t)b->n);
    int rc = -1;
    if (!feats || !props || !dets || !labels) {
        md_error_from_ctx(ctx, err, NULL);
        goto out;
    }
    for (int k = 0; k < na; k++) {
        feats[k] = md_ctx_alloc(ctx, sizeof **feats * MD_MAX_LEVELS);
        int nk = feats[k] ? extract_feat(ctx, d, md_batch_aug(b, k)->img, feats[k]) : -1;
        if (nk < 0 || (n >= 0 && nk != n)) {
            md_error_from_ctx(ctx, err, "test-time variant %d", k);
            goto out;
        }
        n = nk;
    }
    md_scope_push(ctx, "rpn_head");
    rc = md_dense_head_aug_test_rpn(ctx, d->rpn, (md_tensor *const *const *)feats, n, b, props, err);
    md_scope_pop(ctx);
    if (rc) {
        md_error_wrap(err, "rpn_head");
        goto out;
    }
    md_scope_push(ctx, "roi_head");
    rc = hc->aug_test(ctx, d->roi, (md_tensor *const *const *)feats, n, b, props, true, dets, labels, err);
    md_rle **masks = NULL;
    if (!rc && with_mask) {
        masks = md_ctx_alloc(ctx, sizeof *masks * (size_t)b->n);
        rc = masks ? hc->aug_test_mask(ctx, d->roi, (md_tensor *const *const *)feats, n, b, dets, labels, masks, err)
                   : md_error_from_ctx(ctx, err, NULL);
    }
    md_scope_pop(ctx);
    if (rc) {
        md_error_wrap(err, "roi_head");
        goto out;
    }
    for (int i = 0; i < b->n; i++) {
        results[i].n = (int)dets[i]->shape[0];
        results[i].bboxes = md_f32(dets[i]);
        results[i].labels = md_i64(labels[i]);
        results[i].masks = masks ? masks[i] : NULL;
    }
out:
    md_grad_set_enabled(ctx, was);
    return rc;
}

/* mmdet's TwoStageDetector.forward_dummy: extract_feat, the RPN's forward,
 * then the RoI head's forward_dummy on 1000 proposals (mmdet draws them
 * with randn; here random boxes inside the image, from a fixed seed, so
 * the run leaves the context's generator alone). */
static int ts_forward_dummy(md_ctx *ctx, md_module *m, md_tensor *img, md_error *err) {
    two_stage *d = (two_stage *)m;
    if (!d->roi) return md_failc(err, MD_ERR_CONFIG, "%s: forward_dummy needs a roi_head", m->cls->name);
    const md_roi_head_class *hc = md_roi_head_class_of(d->roi);
    if (!hc->forward_dummy)
        return md_failc(err, MD_ERR_CONFIG, "%s: its %s has no forward_dummy", m->cls->name, d->roi->cls->name);
    md_tensor *feats[MD_MAX_LEVELS], *cls[MD_MAX_LEVELS], *reg[MD_MAX_LEVELS];
    int n = extract_feat(ctx, d, img, feats);
    if (n <= 0) return md_error_from_ctx(ctx, err, NULL);
    if (d->rpn) {
        md_scope_push(ctx, "rpn_head");
        int rc = md_dense_head_class_of(d->rpn)->forward(ctx, d->rpn, feats, n, cls, reg);
        md_scope_pop(ctx);
        if (rc) return md_error_from_ctx(ctx, err, "rpn_head");
    }
    md_tensor *props = md_tensor_empty(ctx, MD_F32, MD_DIMS(1000, 4));
    if (!props) return md_error_from_ctx(ctx, err, NULL);
    md_rng r;
    md_rng_seed(&r, 0);
    double w = (double)img->shape[3], h = (double)img->shape[2];
    for (int k = 0; k < 1000; k++) {
        float *b = md_f32(props) + 4 * k;
        b[0] = (float)(md_rng_uniform(&r) * w * 0.75);
        b[1] = (float)(md_rng_uniform(&r) * h * 0.75);
        b[2] = b[0] + 1 + (float)(md_rng_uniform(&r) * (w - b[0] - 1));
        b[3] = b[1] + 1 + (float)(md_rng_uniform(&r) * (h - b[1] - 1));
    }
    md_scope_push(ctx, "roi_head");
    int rc = hc->forward_dummy(ctx, d->roi, feats, n, props, err);
    md_scope_pop(ctx);
    return rc ? md_error_wrap(err, "roi_head") : 0;
}

/* mmdet's TwoStageDetector.onnx_export: extract_feat, the rpn_head's
 * forward and onnx_export (proposals), then the roi_head's onnx_export;
 * outputs dets and labels. Only with post-processing: the RoI head needs
 * the proposals. */
static int ts_onnx_export(md_ctx *ctx, md_module *m, md_tensor *img, bool postprocess, md_error *err) {
    two_stage *d = (two_stage *)m;
    const char *name = m->cls->name;
    if (!postprocess)
        return md_failc(err, MD_ERR_CONFIG, "%s: a two-stage detector exports with its post-processing only "
                        "(the RoI head pools the proposals); drop --no-postprocess", name);
    if (!d->rpn || !d->roi) return md_failc(err, MD_ERR_CONFIG, "%s: export needs rpn_head and roi_head", name);
    const md_dense_head_class *rc = md_dense_head_class_of(d->rpn);
    const md_roi_head_class *hc = md_roi_head_class_of(d->roi);
    if (!rc->onnx_export)
        return md_failc(err, MD_ERR_CONFIG, "%s: its rpn_head %s has no ONNX export", name, d->rpn->cls->name);
    if (!hc->onnx_export)
        return md_failc(err, MD_ERR_CONFIG, "%s: its roi_head %s has no ONNX export", name, d->roi->cls->name);
    md_tensor *feats[MD_MAX_LEVELS], *cls[MD_MAX_LEVELS], *reg[MD_MAX_LEVELS];
    int n = extract_feat(ctx, d, img, feats);
    if (n <= 0) return md_error_from_ctx(ctx, err, NULL);
    md_onnx_image im = { md_onnx_value(ctx, img), img->shape[0], img->shape[2], img->shape[3] };
    md_onnx_dets props, dets;
    md_scope_push(ctx, "rpn_head");
    int rc_ = rc->forward(ctx, d->rpn, feats, n, cls, reg) ? md_error_from_ctx(ctx, err, NULL)
                                                           : rc->onnx_export(ctx, d->rpn, cls, reg, n, &im, &props, err);
    md_scope_pop(ctx);
    if (rc_) return md_error_wrap(err, "rpn_head");
    md_scope_push(ctx, "roi_head");
    rc_ = hc->onnx_export(ctx, d->roi, feats, n, &props, &im, &dets, err);
    md_scope_pop(ctx);
    if (rc_) return md_error_wrap(err, "roi_head");
    return md_onnx_output_dets(ctx, &dets) ? md_error_from_ctx(ctx, err, "outputs") : 0;
}

static const md_model_iface ts_iface = { .train_step = ts_train_step, .simple_test = ts_simple_test,
                                         .aug_test = ts_aug_test, .onnx_export = ts_onnx_export,
                                         .forward_dummy = ts_forward_dummy };

static int ts_init_weights(md_ctx *ctx, md_module *m, md_error *err) {
    two_stage *d = (two_stage *)m;
    md_module *parts[4] = { d->backbone, d->neck, d->rpn, d->roi };
    for (int i = 0; i < 4; i++)
        if (parts[i] && md_model_init_weights(ctx, parts[i], err)) return -1;
    return md_init_cfg_pretrained(ctx, m, d->init_cfg, "TwoStageDetector", err) < 0 ? -1 : 0;
}

static void ts_destroy(md_module *m) { md_cfg_free(((two_stage *)m)->init_cfg); }

static const md_model_class ts_cls = {
    .module = { .name = "TwoStageDetector", .destroy = ts_destroy, .iface = &ts_iface },
    .init_weights = ts_init_weights,
};
static const md_model_class frcnn_cls = {
    .module = { .name = "FasterRCNN", .destroy = ts_destroy, .iface = &ts_iface },
    .init_weights = ts_init_weights,
};
static const md_model_class mrcnn_cls = {
    .module = { .name = "MaskRCNN", .destroy = ts_destroy, .iface = &ts_iface },
    .init_weights = ts_init_weights,
};

static const md_model_class cascade_cls = {
    .module = { .name = "CascadeRCNN", .destroy = ts_destroy, .iface = &ts_iface },
    .init_weights = ts_init_weights,
};

static bool has_key(const md_class *k, const char *name) {
    for (const md_key *p = k && k->keys ? k->keys : NULL; p && p->name; p++)
        if (!strcmp(p->name, name)) return true;
    return false;
}

/* A copy of `head` with train_cfg / test_cfg set from the detector's
 * sections, as TwoStageDetector.__init__ does; for the rpn_head
 * num_classes = 1 when its class has that key (mmdet 3.x). */
static md_cfg *head_cfg(md_ctx *ctx, const md_cfg *head, const md_cfg *train, const char *train_key,
                        const md_cfg *test, const char *test_key, bool rpn) {
    md_cfg *c = md_cfg_clone(head);
    if (!c) return NULL;
    const md_cfg *tr = md_cfg_is_none(train) ? NULL : md_cfg_get(train, train_key);
    const md_cfg *te = md_cfg_is_none(test) ? NULL : md_cfg_get(test, test_key);
    if (tr) md_cfg_set_copy(c, "train_cfg", tr);
    if (te) md_cfg_set_copy(c, "test_cfg", te);
    if (rpn) {
        md_error e = { 0 };
        const md_class *k = md_registry_find(ctx, "heads", md_cfg_str(c, "type", ""), &e);
        if (has_key(k, "num_classes")) {
            int64_t nc = md_cfg_int(c, "num_classes", 1);
            if (nc != 1)
                md_warn(ctx, "rpn_head (%s): num_classes %lld set to 1 (proposals are class-agnostic)", k->name,
                        (long long)nc);
            md_cfg_set_int(c, "num_classes", 1);
        }
    }
    return c;
}

static int add_part(md_module *m, const char *name, md_module *part, md_error *err) {
    if (md_module_add_child(m, name, part, err)) {
        md_module_free(part);
        return -1;
    }
    return 0;
}

/* An optional head (`head` NULL: *out stays NULL) with the detector's
 * train_cfg/test_cfg section `sub` passed down, as mmdet's build_detector
 * does. */
static int build_head(md_ctx *ctx, md_module *m, const md_cfg *head, const char *key, const md_cfg *train,
                      const md_cfg *test, const char *sub, bool rpn, md_module **out, md_error *err) {
    if (!head) return 0;
    md_cfg *hc = head_cfg(ctx, head, train, sub, test, sub, rpn);
    if (!hc) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    *out = rpn ? md_build_dense_head(ctx, hc, NULL, err) : md_build_from_cfg(ctx, "heads", hc, NULL, err);
    md_cfg_free(hc);
    if (!*out) {
        md_error_wrap(err, "%s", key);
        return -1;
    }
    if (add_part(m, key, *out, err)) {
        *out = NULL;
        return -1;
    }
    return 0;
}

static void *build_common(md_ctx *ctx, const md_cfg *cfg, md_error *err, const md_model_class *cls) {
    two_stage *d = md_module_new(sizeof *d, &cls->module);
    if (!d) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    md_module *m = &d->base;
    if (md_cfg_read_struct(cfg, keys, d, cls->module.name, err) || md_init_cfg_check(d->init, "init_cfg", err) != 0)
        goto fail;
    const md_cfg *train = d->train_cfg, *test = d->test_cfg;
    if (d->init && !(d->init_cfg = md_cfg_clone(d->init))) goto nomem;
    d->backbone = md_build_backbone(ctx, d->backbone_cfg, err);
    if (!d->backbone) {
        md_error_wrap(err, "backbone");
        goto fail;
    }
    if (add_part(m, "backbone", d->backbone, err)) goto fail;
    if (d->neck_cfg) {
        d->neck = md_build_neck(ctx, d->neck_cfg, err);
        if (!d->neck) {
            md_error_wrap(err, "neck");
            goto fail;
        }
        if (add_part(m, "neck", d->neck, err)) goto fail;
    }
    if (build_head(ctx, m, d->rpn_head_cfg, "rpn_head", train, test, "rpn", true, &d->rpn, err) ||
        build_head(ctx, m, d->roi_head_cfg, "roi_head", train, test, "rcnn", false, &d->roi, err))
        goto fail;
    if (d->rpn) {
        /* TwoStageDetector: proposal_cfg = train_cfg.get('rpn_proposal', test_cfg.rpn) */
        static const md_dense_test_cfg dflt = { .nms_pre = -1, .score_thr = 0, .min_bbox_size = 0, .nms_iou = -1,
                                                .max_per_img = 1000 };
        const md_cfg *pc = md_cfg_is_none(train) ? NULL : md_cfg_get(train, "rpn_proposal");
        const char *what = "train_cfg.rpn_proposal";
        if (md_cfg_is_none(pc)) pc = md_cfg_is_none(test) ? NULL : md_cfg_get(test, "rpn"), what = "test_cfg.rpn";
        if (!md_cfg_is_none(pc)) {
            if (md_dense_test_cfg_read(pc, what, &dflt, &d->proposal_cfg, err)) goto fail;
            d->has_proposal_cfg = true;
        }
    }
    if (md_model_init_weights(ctx, d->backbone, err) || (d->neck && md_model_init_weights(ctx, d->neck, err)))
        goto fail;
    md_module_train(m, true);
    return m;
nomem:
    md_failc(err, MD_ERR_NOMEM, "out of memory");
fail:
    md_module_free(m);
    return NULL;
}

static void *ts_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) { return build_common(ctx, cfg, err, &ts_cls); }
static void *frcnn_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    return build_common(ctx, cfg, err, &frcnn_cls);
}
static void *cascade_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    return build_common(ctx, cfg, err, &cascade_cls);
}

static void *mrcnn_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    return build_common(ctx, cfg, err, &mrcnn_cls);
}

static const md_class ts_class = { .name = "TwoStageDetector", .keys = keys, .build = ts_build, MD_IFACE(&ts_iface, MD_IFACE_MODEL),
                                   .doc = "backbone, neck, RPN and RoI head (mmdet 2.x)" };
static const md_class frcnn_class = { .name = "FasterRCNN", .keys = keys, .build = frcnn_build, MD_IFACE(&ts_iface, MD_IFACE_MODEL),
                                      .doc = "Faster R-CNN: a TwoStageDetector (mmdet 2.x)" };
static const md_class cascade_class = { .name = "CascadeRCNN", .keys = keys, .build = cascade_build,
                                        MD_IFACE(&ts_iface, MD_IFACE_MODEL),
                                        .doc = "Cascade R-CNN: a TwoStageDetector with a CascadeRoIHead (mmdet 2.x)" };

static const md_class mrcnn_class = { .name = "MaskRCNN", .keys = keys, .build = mrcnn_build, MD_IFACE(&ts_iface, MD_IFACE_MODEL),
                                      .doc = "Mask R-CNN: a TwoStageDetector whose RoI head has a mask branch (mmdet 2.x)" };

MD_PLUGIN("two_stage", "1.0", "Apache-2.0");
MD_REGISTER("detectors", ts_class)
MD_REGISTER("detectors", frcnn_class)
MD_REGISTER("detectors", mrcnn_class)
MD_REGISTER("detectors", cascade_class)
