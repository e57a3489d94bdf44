/* mmdet 2.x's AnchorHead (anchor_head.py, base_dense_head.py) as the base
 * of anchor-based dense heads (anchor_head.h): build and parts, forward
 * over levels, targets and the loss over all levels, get_bboxes. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "internal.h"
#include <mmdet/anchor_head.h>
#include "dense_bboxes.h"

/* ------------------------------------------------------------------ build */

/* mmdet: focal-family classification losses train on every anchor, so the
 * head does not sample (AnchorHead.sampling). */
static bool samples_for(const md_loss *loss_cls) {
    static const char *const no_sampling[] = { "FocalLoss", "GHMC", "QualityFocalLoss" };
    for (size_t i = 0; i < sizeof no_sampling / sizeof *no_sampling; i++)
        if (!strcmp(loss_cls->type, no_sampling[i])) return false;
    return true;
}

/* The sampler of train_cfg, or a PseudoSampler (mmdet builds one when the
 * head does not sample or the config has none). */
static int build_sampler(md_ctx *ctx, md_anchor_head *h, const md_cfg *cfg, md_error *err) {
    const md_cfg *sc = md_cfg_get(h->train_cfg, "sampler");
    if (samples_for(h->loss_cls) && sc && !md_cfg_is_none(sc)) {
        const char *st = md_cfg_str(sc, "type", ""), *dot = strrchr(st, '.');
        h->sampling = strcmp(dot ? dot + 1 : st, "PseudoSampler") != 0;
        h->sampler = md_build_part(ctx, "bbox_samplers", cfg, "train_cfg.sampler", err);
        return h->sampler ? 0 : -1;
    }
    md_cfg *pseudo = md_cfg_new_group();
    if (!pseudo || !md_cfg_set_str(pseudo, "type", "PseudoSampler")) {
        md_cfg_free(pseudo);
        return md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    h->sampler = md_build_from_cfg(ctx, "bbox_samplers", pseudo, NULL, err);
    md_cfg_free(pseudo);
    return h->sampler ? 0 : md_error_wrap(err, "train_cfg.sampler (PseudoSampler)");
}

MD_API md_module *md_anchor_head_build(md_ctx *ctx, const md_cfg *cfg, const md_anchor_head_class *cls,
                                       md_error *err) {
    const char *name = cls->dense.model.module.name;
    md_anchor_head *h = md__base_module_new(&cls->dense.model.module, cls->size, sizeof(md_anchor_head),
                                            cls->init_layers && cls->forward_single,
                                            "an AnchorHead class needs size >= sizeof(md_anchor_head), init_layers "
                                            "and forward_single", err);
    if (!h) return NULL;
    md_module *m = &h->base;
    h->cls = cls;
    h->allowed_border = -1;
    h->pos_weight = -1;
    if (md_cfg_read_struct(cfg, cls->keys, h, name, err) || md_init_cfg_check(h->init_cfg, "init_cfg", err))
        goto fail;
    if (!(h->prior_generator = md_build_part(ctx, "prior_generators", cfg, "anchor_generator", err)) ||
        !(h->bbox_coder = md_build_part(ctx, "bbox_coders", cfg, "bbox_coder", err)) ||
        !(h->loss_cls = md_build_part(ctx, "losses", cfg, "loss_cls", err)) ||
        !(h->loss_bbox = md_build_part(ctx, "losses", cfg, "loss_bbox", err)))
        goto fail;
    if (cls->loss_score_factor_key &&
        !(h->loss_score_factor = md_build_part(ctx, "losses", cfg, cls->loss_score_factor_key, err)))
        goto fail;
    h->num_base_priors = h->prior_generator->iface->num_base_priors(h->prior_generator, 0);
    h->use_sigmoid_cls = h->loss_cls->flags & MD_LOSS_SIGMOID;
    h->cls_out_channels = h->use_sigmoid_cls ? h->num_classes : h->num_classes + 1;
    if ((h->loss_bbox->flags & MD_LOSS_BOXES) && !h->reg_decoded_bbox) {
        md_failc(err, MD_ERR_CONFIG, "loss_bbox %s compares boxes: it needs reg_decoded_bbox = true (L1Loss or "
                 "SmoothL1Loss regress the deltas)", h->loss_bbox->type);
        goto fail;
    }
    if (h->train_cfg) {
        if (!(h->assigner = md_build_part(ctx, "bbox_assigners", cfg, "train_cfg.assigner", err)) ||
            build_sampler(ctx, h, cfg, err))
            goto fail;
        h->allowed_border = (int)md_cfg_int(h->train_cfg, "allowed_border", -1);
        h->pos_weight = md_cfg_float(h->train_cfg, "pos_weight", -1);
    }
    if (h->test_cfg_cfg) {
        h->has_test_cfg = true;
        if (md_dense_test_cfg_read(h->test_cfg_cfg, "test_cfg", cls->test_defaults, &h->test_cfg, err))
            goto fail;
    }
    if (cls->init_layers(ctx, h, err)) goto fail;
    md_module_train(m, true);
    return m;
fail:
    md_module_free(m);
    return NULL;
}

MD_API void md_anchor_head_destroy(md_module *m) {
    md_anchor_head *h = md_anchor_head_of(m);
    MD_BBOX_DESTROY(h->prior_generator);
    MD_BBOX_DESTROY(h->bbox_coder);
    MD_BBOX_DESTROY(h->assigner);
    MD_BBOX_DESTROY(h->sampler);
    md_loss_free(h->loss_cls);
    md_loss_free(h->loss_bbox);
    md_loss_free(h->loss_score_factor);
}

MD_API int md_anchor_head_num_classes(const md_module *m) { return ((const md_anchor_head *)m)->num_classes; }

MD_API const md_dense_test_cfg *md_anchor_head_test_cfg(const md_module *m) {
    const md_anchor_head *h = (const md_anchor_head *)m;
    return h->has_test_cfg ? &h->test_cfg : NULL;
}

MD_API int md_anchor_head_init_weights(md_ctx *ctx, md_module *m, md_error *err) {
    return md_init_cfg_pretrained(ctx, m, md_anchor_head_of(m)->init_cfg, m->cls->name, err) < 0 ? -1 : 0;
}

MD_API int md_anchor_head_add_conv(md_ctx *ctx, md_module *parent, const char *name, int in, int out, int k,
                                   double std, double bias, md_error *err) {
    md_module *c = md_nn_conv2d(ctx, in, out, k, k, MD_CONV2D(1, k / 2), true, err);
    if (!c) return -1;
    if (md_module_add_child(parent, name, c, err)) {
        md_module_free(c);
        return -1;
    }
    md_init_normal(md_nn_weight(c), md_ctx_rng(ctx), 0.0, std);
    md_init_constant(md_nn_bias(c), bias);
    return 0;
}

static const md_module_class list_class = { .name = "ModuleList" };

MD_API int md_head_add_stacked_convs(md_ctx *ctx, md_module *parent, const char *name, int n, int in, int feat,
                                     const md_conv_module_opts *opts, double std, md_error *err) {
    return md_head_add_stacked_convs_last(ctx, parent, name, n, in, feat, opts, opts, std, err);
}

MD_API int md_head_add_stacked_convs_last(md_ctx *ctx, md_module *parent, const char *name, int n, int in, int feat,
                                          const md_conv_module_opts *opts, const md_conv_module_opts *last,
                                          double std, md_error *err) {
    md_module *list = md_module_new(sizeof(md_module), &list_class);
    if (!list || md_module_add_child(parent, name, list, err)) {
        md_module_free(list);
        return list ? -1 : md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        char item[16];
        snprintf(item, sizeof item, "%d", i);
        md_conv_module_opts o = i == n - 1 ? *last : *opts;
        o.in = i == 0 ? in : feat, o.out = feat;
        o.kernel = 3, o.stride = 1, o.padding = 1, o.dilation = 1, o.groups = 1, o.act = true;
        md_module *c = md_nn_conv_module(ctx, &o, err);
        if (!c) return -1;
        if (md_module_add_child(list, item, c, err)) {
            md_module_free(c);
            return -1;
        }
        md_module *conv = md_module_child(c, "conv");
        if (md_nn_is_dcn(conv)) conv = md_module_child(conv, "conv_offset");   /* an nn.Conv2d; the DCN is not */
        md_init_normal(md_nn_weight(conv), md_ctx_rng(ctx), 0.0, std);
        if (md_nn_bias(conv)) md_init_constant(md_nn_bias(conv), 0.0);
    }
    return 0;
}

MD_API md_tensor *md_head_stacked_forward(md_ctx *ctx, md_module *m, const char *name, int n, md_tensor *x) {
    md_module *list = md_module_child(m, name);
    md_tensor *y = x;
    for (int i = 0; i < n && y; i++) {
        char item[16];
        snprintf(item, sizeof item, "%d", i);
        md_scope_push(ctx, name);
        md_tensor *next = md_module_call(ctx, list, item, y);
        md_scope_pop(ctx);
        /* the convs' backward keep what they read */
        if (next && y != x) md_tensor_release(ctx, y);
        y = next;
    }
    return y;
}

static const md_module_class scale_class = { .name = "Scale" };

MD_API int md_head_add_scales(md_ctx *ctx, md_module *parent, int n, md_tensor **scales, md_error *err) {
    md_module *list = md_module_new(sizeof(md_module), &list_class);
    if (!list || md_module_add_child(parent, "scales", list, err)) {
        md_module_free(list);
        return list ? -1 : md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    for (int l = 0; l < n; l++) {
        char name[16];
        snprintf(name, sizeof name, "%d", l);
        md_module *s = md_module_new(sizeof(md_module), &scale_class);
        if (!s || md_module_add_child(list, name, s, err)) {
            md_module_free(s);
            return s ? -1 : md_failc(err, MD_ERR_NOMEM, "out of memory");
        }
        /* a 0-d parameter, as mmcv's nn.Parameter(torch.tensor(1.0)) */
        if (!(scales[l] = md_module_add_param(ctx, s, "scale", 0, NULL, err))) return -1;
        md_init_constant(scales[l], 1.0);
    }
    return 0;
}

MD_API md_tensor *md_anchor_head_add_score_factor(md_ctx *ctx, md_tensor *bbox_pred, md_tensor *score_factor) {
    if (!bbox_pred || !score_factor) return NULL;
    int64_t N = bbox_pred->shape[0], H = bbox_pred->shape[2], W = bbox_pred->shape[3];
    int64_t A = score_factor->shape[1];
    if (bbox_pred->ndim != 4 || score_factor->ndim != 4 || bbox_pred->shape[1] != A * 4 ||
        score_factor->shape[0] != N || score_factor->shape[2] != H || score_factor->shape[3] != W) {
        char b1[64], b2[64];
        return md_op_fail(ctx, "md_anchor_head_add_score_factor", "bbox_pred %s and score_factor %s: want "
                          "[N, A * 4, H, W] and [N, A, H, W]", md_tensor_describe(bbox_pred, b1, sizeof b1),
                          md_tensor_describe(score_factor, b2, sizeof b2));
    }
    md_tensor *parts[2] = { md_reshape(ctx, bbox_pred, MD_DIMS(N, A, 4, H * W)),
                            md_reshape(ctx, score_factor, MD_DIMS(N, A, 1, H * W)) };
    md_tensor *y = md_reshape(ctx, md_cat(ctx, parts, 2, 2), MD_DIMS(N, A * 5, H, W));
    if (y) {
        md_tensor_release(ctx, bbox_pred);
        md_tensor_release(ctx, score_factor);
    }
    return y;
}

/* ---------------------------------------------------------------- forward */

MD_API int md_anchor_head_forward(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, md_tensor **cls,
                                  md_tensor **reg) {
    md_anchor_head *h = md_anchor_head_of(m);
    for (int l = 0; l < n; l++)
        if (h->cls->forward_single(ctx, h, feats[l], l, &cls[l], &reg[l])) return -1;
    return md_ctx_failed(ctx) ? -1 : 0;
}

/* ------------------------------------------------------------------- loss */

MD_API md_tensor *md_anchor_head_anchors(md_ctx *ctx, md_anchor_head *h, md_tensor *const *cls, int n,
                                         int64_t *counts) {
    md_tensor *lv[MD_MAX_LEVELS];
    int nl = h->prior_generator->iface->num_levels(h->prior_generator);
    if (n > nl || n > MD_MAX_LEVELS)
        return md_op_fail(ctx, h->base.cls->name, "%d feature levels, the anchor generator has %d", n, nl);
    for (int l = 0; l < n; l++) {
        lv[l] = md_grid_priors(ctx, h->prior_generator, l, cls[l]->shape[2], cls[l]->shape[3]);
        if (!lv[l]) return NULL;
        if (counts) counts[l] = lv[l]->shape[0];
    }
    return md_cat(ctx, lv, n, 0);
}

/* [N, A*K, H, W] per level -> [N * T, K] in (image, level, y, x, anchor) order. */
static md_tensor *flatten_levels(md_ctx *ctx, md_tensor *const *x, int n, int64_t k) {
    md_tensor *parts[MD_MAX_LEVELS];
    static const int perm[4] = { 0, 2, 3, 1 };
    for (int l = 0; l < n; l++)
        parts[l] = md_reshape(ctx, md_permute(ctx, x[l], perm), MD_DIMS(x[l] ? x[l]->shape[0] : 0, -1, k));
    md_tensor *c = md_cat(ctx, parts, n, 1);
    return md_reshape(ctx, c, MD_DIMS(-1, k));
}

static md_tensor *boxes_tensor(md_ctx *ctx, const md_boxes *b) {
    return md_tensor_from(ctx, MD_F32, MD_DIMS(b ? b->n : 0, 4), b && b->n ? b->xyxy : NULL);
}

/* The targets of the batch over every anchor (mmdet's get_targets, with
 * the images concatenated): labels (num_classes: background), label and
 * box weights, box targets; num_total_samples. */
typedef struct targets {
    md_tensor *labels, *lw, *bt, *bw;
    double avg;
} targets;

/* Which anchors of one image may train: valid (inside the padded shape)
 * and, with allowed_border >= 0, inside the image plus the border.
 * Writes the flags and the inside indices; returns their count. */
static int64_t inside_anchors(md_ctx *ctx, md_anchor_head *h, md_tensor *const *cls, int n, const int64_t *counts,
                              const float *A, int64_t T, const md_img_meta *meta, uint8_t *inside,
                              int64_t *inside_idx) {
    int64_t off = 0, n_in = 0;
    for (int l = 0; l < n; l++) {
        int sw, sh;
        h->prior_generator->iface->stride(h->prior_generator, l, &sw, &sh);
        int64_t fh = cls[l]->shape[2], fw = cls[l]->shape[3];
        int64_t vh = (int64_t)ceil((double)meta->pad_shape[0] / sh), vw = (int64_t)ceil((double)meta->pad_shape[1] / sw);
        md_tensor *v = h->prior_generator->iface->valid_flags(ctx, h->prior_generator, l, fh, fw, vh < fh ? vh : fh,
                                                              vw < fw ? vw : fw);
        if (!v) return -1;
        memcpy(inside + off, md_u8(v), (size_t)counts[l]);
        off += counts[l];
    }
    for (int64_t j = 0; j < T; j++) {
        if (inside[j] && h->allowed_border >= 0) {
            float b = (float)h->allowed_border;
            const float *a = A + j * 4;
            inside[j] = a[0] >= -b && a[1] >= -b && a[2] < (float)meta->img_shape[1] + b &&
                        a[3] < (float)meta->img_shape[0] + b;
        }
        if (inside[j]) inside_idx[n_in++] = j;
    }
    return n_in;
}

static int get_targets(md_ctx *ctx, md_anchor_head *h, md_tensor *const *cls, int n, const int64_t *counts,
                       md_tensor *anchors, const md_batch *batch, targets *t, md_error *err) {
    const char *name = h->base.cls->name;
    int64_t T = anchors->shape[0], N = batch->n;
    t->labels = md_tensor_full(ctx, MD_I64, MD_DIMS(N * T), (double)h->num_classes);
    t->lw = md_tensor_zeros(ctx, MD_F32, MD_DIMS(N * T));
    t->bt = md_tensor_zeros(ctx, MD_F32, MD_DIMS(N * T, 4));
    t->bw = md_tensor_zeros(ctx, MD_F32, MD_DIMS(N * T, 4));
    uint8_t *inside = md_ctx_alloc(ctx, (size_t)T);
    int64_t *inside_idx = md_ctx_alloc(ctx, sizeof(int64_t) * (size_t)T);
    if (!t->labels || !t->lw || !t->bt || !t->bw || !inside || !inside_idx) return md_error_from_ctx(ctx, err, "%s", name);
    double num_pos = 0, num_neg = 0;
    for (int64_t i = 0; i < N; i++) {
        int64_t n_in = inside_anchors(ctx, h, cls, n, counts, md_f32(anchors), T, &batch->metas[i], inside, inside_idx);
        if (n_in < 0) return md_error_from_ctx(ctx, err, "%s: inside flags", name);
        if (n_in == 0) {
            num_pos += 1;
            num_neg += 1;
            continue;
        }
        md_tensor *idx = md_tensor_from(ctx, MD_I64, MD_DIMS(n_in), inside_idx);
        md_tensor *anc = n_in == T ? anchors : md_index_select(ctx, anchors, 0, idx);
        md_tensor *gt = boxes_tensor(ctx, &batch->gt_bboxes[i]);
        /* no labels (the RPN role, mmdet's gt_labels=None): class 0 */
        const int64_t *glab = h->cls->ignore_gt_labels ? NULL : batch->gt_bboxes[i].labels;
        int64_t ng = batch->gt_bboxes[i].n;
        md_tensor *gl = glab ? md_tensor_from(ctx, MD_I64, MD_DIMS(ng), ng ? glab : NULL)
                             : md_tensor_zeros(ctx, MD_I64, MD_DIMS(ng));
        md_tensor *gi = batch->gt_bboxes_ignore && batch->gt_bboxes_ignore[i].n
                            ? boxes_tensor(ctx, &batch->gt_bboxes_ignore[i]) : NULL;
        if (!anc || !gt || !gl) return md_error_from_ctx(ctx, err, "%s: targets", name);
        /* the inside anchors of each level (mmdet's num_level_anchors_inside) */
        int64_t level_in[MD_MAX_LEVELS], off = 0;
        for (int l = 0; l < n; l++) {
            level_in[l] = 0;
            for (int64_t j = off; j < off + counts[l]; j++) level_in[l] += inside[j] != 0;
            off += counts[l];
        }
        md_assign_levels levels = { n, level_in };
        md_assign_result ar;
        md_sampling_result sr;
        if (md_bbox_assign_levels(ctx, h->assigner, anc, &levels, gt, gi, h->sampling || !glab ? NULL : gl, &ar, err) ||
            md_bbox_sample(ctx, h->sampler, &ar, anc, gt, gl, md_ctx_rng(ctx), &sr, err))
            return md_error_wrap(err, "%s: image %lld", name, (long long)i);
        int64_t np = md_tensor_numel(sr.pos_inds), nn = md_tensor_numel(sr.neg_inds);
        num_pos += np > 1 ? np : 1;
        num_neg += nn > 1 ? nn : 1;
        int64_t *lab = md_i64(t->labels) + i * T;
        float *lwp = md_f32(t->lw) + i * T, *btp = md_f32(t->bt) + i * T * 4, *bwp = md_f32(t->bw) + i * T * 4;
        if (np > 0) {
            /* reg_decoded_bbox: the targets are the gt boxes themselves */
            md_tensor *enc = h->reg_decoded_bbox ? md_contiguous(ctx, sr.pos_gt_bboxes)
                                                 : md_bbox_encode(ctx, h->bbox_coder, sr.pos_bboxes, sr.pos_gt_bboxes);
            if (!enc) return md_error_from_ctx(ctx, err, "%s: targets", name);
            for (int64_t p = 0; p < np; p++) {
                int64_t j = inside_idx[md_i64(sr.pos_inds)[p]];
                for (int k = 0; k < 4; k++) {
                    btp[j * 4 + k] = md_f32(enc)[p * 4 + k];
                    bwp[j * 4 + k] = 1.0f;
                }
                lab[j] = md_i64(gl)[md_i64(sr.pos_assigned_gt_inds)[p]];
                lwp[j] = h->pos_weight <= 0 ? 1.0f : (float)h->pos_weight;
            }
        }
        for (int64_t q = 0; q < nn; q++) lwp[inside_idx[md_i64(sr.neg_inds)[q]]] = 1.0f;
    }
    t->avg = h->sampling ? num_pos + num_neg : num_pos;
    return 0;
}

/* mmdet's loss_single with reg_decoded_bbox: the predicted deltas decoded
 * against their anchors (no max_shape in training), the loss taken against
 * the gt boxes. Only rows with a positive box weight are decoded: the
 * others weigh 0 in mmdet (and the IoU losses give 0 when no weight is
 * positive), so the sum and the gradients are the same. */
static md_tensor *decoded_bbox_loss(md_ctx *ctx, md_anchor_head *h, md_tensor *reg_all, md_tensor *anchors,
                                    const targets *t, int64_t rows_n, double avg) {
    int64_t T = anchors->shape[0], P = 0;
    int64_t *rows = md_ctx_alloc(ctx, sizeof(int64_t) * (size_t)(rows_n + 1));
    int64_t *arows = md_ctx_alloc(ctx, sizeof(int64_t) * (size_t)(rows_n + 1));
    if (!rows || !arows) return NULL;
    for (int64_t r = 0; r < rows_n; r++)
        if (md_f32(t->bw)[r * 4] > 0) {
            arows[P] = r % T;
            rows[P++] = r;
        }
    /* rows chosen on the host (targets and anchors are CPU tensors),
     * gathered where the predictions are */
    md_device dev = md_tensor_device(reg_all);
    md_tensor *ri = md_tensor_from(ctx, MD_I64, MD_DIMS(P), rows), *ai = md_tensor_from(ctx, MD_I64, MD_DIMS(P), arows);
    md_tensor *pred = md_index_select(ctx, reg_all, 0, md_tensor_to(ctx, ri, dev));
    md_tensor *target = md_tensor_to(ctx, md_index_select(ctx, t->bt, 0, ri), dev);
    md_tensor *anc = md_tensor_to(ctx, md_index_select(ctx, anchors, 0, ai), dev);
    md_tensor *boxes = pred && anc ? md_bbox_decode(ctx, h->bbox_coder, anc, pred, NULL) : NULL;
    if (!boxes || !target) return NULL;
    return md_loss_forward(ctx, h->loss_bbox, boxes, target, NULL, avg, MD_REDUCE_DEFAULT);
}

MD_API int md_anchor_head_loss_inputs(md_ctx *ctx, md_anchor_head *h, md_tensor *const *cls, md_tensor *const *reg,
                                      int n, const md_batch *batch, md_anchor_loss_inputs *in, md_error *err) {
    const char *name = h->base.cls->name;
    memset(in, 0, sizeof *in);
    if (!h->assigner) return md_failc(err, MD_ERR_CONFIG, "%s: loss needs a train_cfg with an assigner", name);
    if (n < 1 || n > MD_MAX_LEVELS)
        return md_failc(err, MD_ERR_SHAPE, "%s: %d feature levels (1 to %d)", name, n, MD_MAX_LEVELS);
    int64_t R = h->cls->with_score_factors ? 5 : 4;
    for (int l = 0; l < n; l++)
        if (!cls[l] || !reg[l] || reg[l]->ndim != 4 || reg[l]->shape[1] != h->num_base_priors * R) {
            char b[64];
            return md_failc(err, MD_ERR_SHAPE, "%s: level %d: bbox_pred %s, want [N, %lld, H, W]", name, l,
                            md_tensor_describe(reg[l], b, sizeof b), (long long)(h->num_base_priors * R));
        }
    bool was = md_grad_set_enabled(ctx, false);
    md_tensor *anchors = md_contiguous(ctx, md_anchor_head_anchors(ctx, h, cls, n, in->counts));
    targets t = { 0 };
    int rc = anchors ? get_targets(ctx, h, cls, n, in->counts, anchors, batch, &t, err)
                     : md_error_from_ctx(ctx, err, "%s: anchors", name);
    md_grad_set_enabled(ctx, was);
    if (rc) return -1;
    in->n_levels = n;
    in->anchors = anchors;
    in->num_imgs = batch->n;
    in->num_total_samples = t.avg;
    in->labels = t.labels, in->label_weights = t.lw, in->bbox_targets = t.bt, in->bbox_weights = t.bw;
    in->cls = flatten_levels(ctx, cls, n, h->cls_out_channels);
    in->reg = flatten_levels(ctx, reg, n, R);
    return in->cls && in->reg ? 0 : md_error_from_ctx(ctx, err, "%s: flatten", name);
}

MD_API int md_anchor_head_loss(md_ctx *ctx, md_module *m, md_tensor *const *cls, md_tensor *const *reg, int n,
                               const md_batch *batch, md_losses *losses, md_error *err) {
    md_anchor_head *h = md_anchor_head_of(m);
    const char *name = m->cls->name;
    md_anchor_loss_inputs in;
    if (md_anchor_head_loss_inputs(ctx, h, cls, reg, n, batch, &in, err)) return -1;
    targets t = { in.labels, in.label_weights, in.bbox_targets, in.bbox_weights, in.num_total_samples };
    int64_t rows = batch->n * in.anchors->shape[0];
    md_tensor *cls_all = in.cls;
    md_tensor *reg_all = h->cls->with_score_factors ? md_contiguous(ctx, md_slice(ctx, in.reg, 1, 0, 4, 1)) : in.reg;
    /* the targets were built on the host; the losses run where the outputs are */
    md_device dev = md_tensor_device(cls[0]);
    md_tensor *lc = md_loss_forward(ctx, h->loss_cls, cls_all, md_tensor_to(ctx, t.labels, dev),
                                    md_tensor_to(ctx, t.lw, dev), t.avg, MD_REDUCE_DEFAULT);
    md_tensor *lb = !reg_all ? NULL
                    : h->reg_decoded_bbox
                        ? decoded_bbox_loss(ctx, h, reg_all, in.anchors, &t, rows, t.avg)
                        : md_loss_forward(ctx, h->loss_bbox, reg_all, md_tensor_to(ctx, t.bt, dev),
                                          md_tensor_to(ctx, t.bw, dev), t.avg, MD_REDUCE_DEFAULT);
    if (!lc || !lb) return md_error_from_ctx(ctx, err, "%s: loss", name);
    if (md_losses_add(losses, h->cls->loss_cls_name ? h->cls->loss_cls_name : "loss_cls", lc, err) ||
        md_losses_add(losses, h->cls->loss_bbox_name ? h->cls->loss_bbox_name : "loss_bbox", lb, err))
        return -1;
    return 0;
}

/* ------------------------------------------------------------- get_bboxes */

MD_API int md_anchor_head_get_bboxes(md_ctx *ctx, md_module *m, md_tensor *const *cls, md_tensor *const *reg, int n,
                                     const md_batch *batch, const md_dense_test_cfg *tc, bool rescale, bool with_nms,
                                     md_det_result *results, md_error *err) {
    md_anchor_head *h = md_anchor_head_of(m);
    const md__dense_post p = { .prior_generator = h->prior_generator, .bbox_coder = h->bbox_coder,
                               .num_classes = h->num_classes, .cls_out_channels = h->cls_out_channels,
                               .num_base_priors = h->num_base_priors, .use_sigmoid = h->use_sigmoid_cls,
                               .reg_channels = h->cls->with_score_factors ? 5 : 4,
                               .score_factor_channel = h->cls->with_score_factors ? 4 : -1 };
    return md__dense_get_bboxes(ctx, m->cls->name, &p, cls, reg, n, batch, tc, h->has_test_cfg ? &h->test_cfg : NULL,
                                rescale, with_nms, results, err);
}
