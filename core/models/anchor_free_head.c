/* mmdet 2.x's AnchorFreeHead (anchor_free_head.py, base_dense_head.py) as
 * the base of anchor-free dense heads (anchor_free_head.h): build and
 * parts, the layers, forward over levels, points, targets over the batch,
 * the loss over all levels and get_bboxes. */
#include <stdio.h>
#include <string.h>
#include "internal.h"
#include <mmdet/anchor_free_head.h>
#include "dense_bboxes.h"

/* ------------------------------------------------------------------ build */

/* conv_bias: "auto" (mmcv's: a bias unless a norm follows), true or false
 * into the ConvModule's bias setting (-1, 1, 0). */
static int read_conv_bias(const md_cfg *c, int *bias, md_error *err) {
    if (md_cfg_kind(c) == MD_CFG_BOOL) {
        *bias = md_cfg_as_bool(c) ? 1 : 0;
        return 0;
    }
    const char *s = md_cfg_as_str(c);
    if (!c || (s && !strcmp(s, "auto"))) {
        *bias = -1;
        return 0;
    }
    return md_failc(err, MD_ERR_CONFIG, "%s:%d: conv_bias must be \"auto\", true or false", md_cfg_file(c),
                    md_cfg_line(c));
}

/* mmdet: self.prior_generator = MlvlPointGenerator(strides), built here by
 * type like every other part. */
static md_prior_generator *build_points(md_ctx *ctx, const md_cfg *strides, md_error *err) {
    md_cfg *pg = md_cfg_new_group();
    if (!pg || !md_cfg_set_str(pg, "type", "MlvlPointGenerator") || !md_cfg_set_copy(pg, "strides", strides)) {
        md_cfg_free(pg);
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    md_prior_generator *g = md_build_from_cfg(ctx, "prior_generators", pg, NULL, err);
    md_cfg_free(pg);
    if (!g) md_error_wrap(err, "strides");
    return g;
}

MD_API md_module *md_anchor_free_head_build(md_ctx *ctx, const md_cfg *cfg, const md_anchor_free_head_class *cls,
                                            md_error *err) {
    const char *name = cls->dense.model.module.name;
    if (cls->with_score_factors && !cls->forward_single) {
        md_failc(err, MD_ERR_PLUGIN, "%s: an AnchorFreeHead class with_score_factors needs a forward_single that "
                 "gives the score factor (the default forward_single gives none)", name);
        return NULL;
    }
    md_anchor_free_head *h =
        md__base_module_new(&cls->dense.model.module, cls->size, sizeof(md_anchor_free_head), cls->get_targets != NULL,
                            "an AnchorFreeHead class needs size >= sizeof(md_anchor_free_head) and get_targets (the "
                            "head's target rule, mmdet's _get_target_single)", err);
    if (!h) return NULL;
    md_module *m = &h->base;
    h->cls = cls;
    if (md_cfg_read_struct(cfg, cls->keys, h, name, err) || md_init_cfg_check(h->init_cfg, "init_cfg", err))
        goto fail;
    if (md_conv_cfg_read(h->conv_cfg, "conv_cfg", "Conv,DCN,DCNv2", &h->conv_opts, NULL, err) ||
        md_norm_cfg_read(h->norm_cfg, "norm_cfg", "BN,SyncBN,GN", &h->conv_opts, err) ||
        read_conv_bias(h->conv_bias_cfg, &h->conv_opts.bias, err))
        goto fail;
    if (!(h->prior_generator = build_points(ctx, h->strides_cfg, err)) ||
        !(h->bbox_coder = md_build_part(ctx, "bbox_coders", cfg, "bbox_coder", err)) ||
        !(h->loss_cls = md_build_part(ctx, "losses", cfg, "loss_cls", err)) ||
        !(h->loss_bbox = md_build_part(ctx, "losses", cfg, "loss_bbox", err)))
        goto fail;
    if (cls->loss_score_factor_key &&
        !(h->loss_score_factor = md_build_part(ctx, "losses", cfg, cls->loss_score_factor_key, err)))
        goto fail;
    h->num_levels = h->prior_generator->iface->num_levels(h->prior_generator);
    if (h->num_levels > MD_MAX_LEVELS) {
        md_failc(err, MD_ERR_CONFIG, "strides: %d levels, at most %d", h->num_levels, MD_MAX_LEVELS);
        goto fail;
    }
    h->use_sigmoid_cls = h->loss_cls->flags & MD_LOSS_SIGMOID;
    h->cls_out_channels = h->use_sigmoid_cls ? h->num_classes : h->num_classes + 1;
    if (h->test_cfg_cfg) {
        h->has_test_cfg = true;
        if (md_dense_test_cfg_read(h->test_cfg_cfg, "test_cfg", cls->test_defaults, &h->test_cfg, err))
            goto fail;
    }
    if ((cls->init_layers ? cls->init_layers : md_anchor_free_head_init_layers)(ctx, h, err)) goto fail;
    md_module_train(m, true);
    return m;
fail:
    md_module_free(m);
    return NULL;
}

MD_API void md_anchor_free_head_destroy(md_module *m) {
    md_anchor_free_head *h = md_anchor_free_head_of(m);
    MD_BBOX_DESTROY(h->prior_generator);
    MD_BBOX_DESTROY(h->bbox_coder);
    md_loss_free(h->loss_cls);
    md_loss_free(h->loss_bbox);
    md_loss_free(h->loss_score_factor);
}

MD_API int md_anchor_free_head_num_classes(const md_module *m) {
    return ((const md_anchor_free_head *)m)->num_classes;
}

MD_API const md_dense_test_cfg *md_anchor_free_head_test_cfg(const md_module *m) {
    const md_anchor_free_head *h = (const md_anchor_free_head *)m;
    return h->has_test_cfg ? &h->test_cfg : NULL;
}

MD_API int md_anchor_free_head_init_weights(md_ctx *ctx, md_module *m, md_error *err) {
    return md_init_cfg_pretrained(ctx, m, md_anchor_free_head_of(m)->init_cfg, m->cls->name, err) < 0 ? -1 : 0;
}

MD_API bool md_anchor_free_head_legacy_name(const md_module *m, const char *prefix, const char *rel,
                                            const md_st *st, const char *strip, char *buf, size_t n) {
    (void)m;
    static const char *const convs[] = { "conv_cls", "conv_reg", "conv_centerness" };
    static const char *const ends[] = { "cls", "reg", "centerness" };
    const char *dot = strchr(rel, '.');
    if (!dot) return false;
    size_t cl = (size_t)(dot - rel), sl = strip ? strlen(strip) : 0, pl = strlen(prefix);
    for (int k = 0; k < 3; k++) {
        if (cl != strlen(convs[k]) || strncmp(rel, convs[k], cl)) continue;
        /* a checkpoint name prefix + X + dot..., X one component ending in ends[k] */
        for (int i = 0; i < md_st_count(st); i++) {
            const char *nm = md_st_name(st, i);
            if (sl && !strncmp(nm, strip, sl)) nm += sl;
            if (strncmp(nm, prefix, pl)) continue;
            const char *x = nm + pl, *xd = strchr(x, '.');
            size_t xl = xd ? (size_t)(xd - x) : 0, el = strlen(ends[k]);
            if (!xd || xl < el || strncmp(xd - el, ends[k], el) || strcmp(xd, dot)) continue;
            if (xl == cl && !strncmp(x, rel, cl)) continue;   /* the new name itself */
            return snprintf(buf, n, "%s%.*s%s", prefix, (int)xl, x, dot) < (int)n;
        }
    }
    return false;
}

/* ----------------------------------------------------------------- layers */


MD_API int md_anchor_free_head_init_layers(md_ctx *ctx, md_anchor_free_head *h, md_error *err) {
    /* _init_predictor: conv_cls (bias from prior probability 0.01, mmdet's
     * override) and conv_reg on the last features (the input without
     * stacked convs) */
    int in = h->stacked_convs ? h->feat_channels : h->in_channels;
    /* _init_cls_convs / _init_reg_convs: stacked_convs ConvModules (3x3,
     * norm_cfg, conv_bias, ReLU); mmdet's init_cfg: Normal(std 0.01) on
     * every Conv2d, norms weight 1, bias 0 */
    int S = h->stacked_convs, f = h->feat_channels;
    /* dcn_on_last_conv: the last of each branch with conv_cfg DCNv2 */
    md_conv_module_opts last = h->conv_opts;
    if (h->dcn_on_last_conv) last.conv_type = MD_CONV_DCNV2, last.deform_groups = 1;
    return md_head_add_stacked_convs_last(ctx, &h->base, "cls_convs", S, h->in_channels, f, &h->conv_opts, &last,
                                          0.01, err) ||
           md_head_add_stacked_convs_last(ctx, &h->base, "reg_convs", S, h->in_channels, f, &h->conv_opts, &last,
                                          0.01, err) ||
           md_anchor_head_add_conv(ctx, &h->base, "conv_cls", in, h->cls_out_channels, 3, 0.01,
                                        md_bias_init_with_prob(0.01), err) ||
           md_anchor_head_add_conv(ctx, &h->base, "conv_reg", in, 4, 3, 0.01, 0.0, err)
               ? -1
               : 0;
}

MD_API int md_anchor_free_head_add_scales(md_ctx *ctx, md_anchor_free_head *h, md_tensor **scales, md_error *err) {
    return md_head_add_scales(ctx, &h->base, h->num_levels, scales, err);
}

/* ---------------------------------------------------------------- forward */

MD_API int md_anchor_free_head_forward_single(md_ctx *ctx, md_anchor_free_head *h, md_tensor *x, int level,
                                              md_anchor_free_out *out) {
    md_module *m = &h->base;
    (void)level;
    md_tensor *c = md_head_stacked_forward(ctx, m, "cls_convs", h->stacked_convs, x);
    out->cls_score = md_module_call(ctx, m, "conv_cls", c);
    md_tensor *r = md_head_stacked_forward(ctx, m, "reg_convs", h->stacked_convs, x);
    out->bbox_pred = md_module_call(ctx, m, "conv_reg", r);
    out->cls_feat = c;
    out->reg_feat = r;
    return out->cls_score && out->bbox_pred ? 0 : -1;
}

MD_API int md_anchor_free_head_forward(md_ctx *ctx, md_module *m, md_tensor *const *feats, int n, md_tensor **cls,
                                       md_tensor **reg) {
    md_anchor_free_head *h = md_anchor_free_head_of(m);
    int (*single)(md_ctx *, md_anchor_free_head *, md_tensor *, int, md_anchor_free_out *) =
        h->cls->forward_single ? h->cls->forward_single : md_anchor_free_head_forward_single;
    for (int l = 0; l < n; l++) {
        md_anchor_free_out o = { 0 };
        if (single(ctx, h, feats[l], l, &o)) return -1;
        if (!o.cls_score || !o.bbox_pred || (h->cls->with_score_factors && !o.score_factor)) {
            md_op_fail(ctx, m->cls->name, "forward_single of level %d gave no %s", l,
                       !o.cls_score ? "cls_score" : !o.bbox_pred ? "bbox_pred" : "score_factor");
            return -1;
        }
        cls[l] = o.cls_score;
        reg[l] = o.bbox_pred;
        if (h->cls->with_score_factors) {
            /* the score factor rides in bbox_pred's fifth channel (anchor_free_head.h) */
            md_tensor *parts[2] = { o.bbox_pred, o.score_factor };
            if (!(reg[l] = md_cat(ctx, parts, 2, 1))) return -1;
            md_tensor_release(ctx, o.bbox_pred);
            md_tensor_release(ctx, o.score_factor);
        }
        /* the branches' features are read no more (the convs' backward keep theirs) */
        if (o.cls_feat && o.cls_feat != feats[l]) md_tensor_release(ctx, o.cls_feat);
        if (o.reg_feat && o.reg_feat != feats[l] && o.reg_feat != o.cls_feat) md_tensor_release(ctx, o.reg_feat);
    }
    return md_ctx_failed(ctx) ? -1 : 0;
}

/* ------------------------------------------------------------------- loss */

MD_API int md_anchor_free_head_points(md_ctx *ctx, md_anchor_free_head *h, md_tensor *const *cls, int n,
                                      md_anchor_free_points *pts) {
    md_tensor *lv[MD_MAX_LEVELS];
    if (n < 1 || n > h->num_levels || n > MD_MAX_LEVELS) {
        md_op_fail(ctx, h->base.cls->name, "%d feature levels, the head has %d strides", n, h->num_levels);
        return -1;
    }
    pts->n_levels = n;
    pts->total = 0;
    for (int l = 0; l < n; l++) {
        if (!cls[l]) return -1;
        lv[l] = md_grid_priors(ctx, h->prior_generator, l, cls[l]->shape[2], cls[l]->shape[3]);
        if (!lv[l]) return -1;
        pts->begin[l] = pts->total;
        pts->counts[l] = lv[l]->shape[0];
        pts->total += pts->counts[l];
    }
    pts->points = n == 1 ? lv[0] : md_contiguous(ctx, md_cat(ctx, lv, n, 0));
    return pts->points ? 0 : -1;
}

MD_API md_tensor *md_anchor_free_head_flatten(md_ctx *ctx, md_tensor *const *x, int n, int64_t k) {
    md_tensor *parts[MD_MAX_LEVELS];
    static const int perm[4] = { 0, 2, 3, 1 };
    if (n < 1 || n > MD_MAX_LEVELS) return md_op_fail(ctx, "AnchorFreeHead.flatten", "%d levels", n);
    for (int l = 0; l < n; l++)
        parts[l] = md_reshape(ctx, md_permute(ctx, x[l], perm), MD_DIMS(x[l] ? x[l]->shape[0] : 0, -1, k));
    md_tensor *c = n == 1 ? parts[0] : md_cat(ctx, parts, n, 1);
    return md_reshape(ctx, c, MD_DIMS(-1, k));
}

/* The outputs' shapes against the head: a wrong channel count would
 * otherwise flatten into the wrong rows. */
static int check_outputs(md_anchor_free_head *h, md_tensor *const *cls, md_tensor *const *reg, int n,
                         const md_batch *batch, md_error *err) {
    int64_t R = 4 + (h->cls->with_score_factors ? 1 : 0);
    for (int l = 0; l < n; l++) {
        const md_tensor *c = cls[l], *r = reg[l];
        if (!c || !r || c->ndim != 4 || r->ndim != 4 || c->shape[0] != batch->n || r->shape[0] != batch->n ||
            c->shape[1] != h->cls_out_channels || r->shape[1] != R || r->shape[2] != c->shape[2] ||
            r->shape[3] != c->shape[3]) {
            char b1[64], b2[64];
            return md_failc(err, MD_ERR_SHAPE, "%s: level %d: cls_score %s and bbox_pred %s for %d images, want "
                            "[%d, %d, H, W] and [%d, %lld, H, W]", h->base.cls->name, l,
                            md_tensor_describe(c, b1, sizeof b1), md_tensor_describe(r, b2, sizeof b2), batch->n,
                            batch->n, h->cls_out_channels, batch->n, (long long)R);
        }
    }
    return 0;
}

/* mmdet's get_targets: the class's rule image by image into the batch's
 * target tensors, then the positives. Host work, grad off. */
static int batch_targets(md_ctx *ctx, md_anchor_free_head *h, const md_batch *batch, md_anchor_free_loss_inputs *in,
                         md_error *err) {
    const char *name = h->base.cls->name;
    int64_t T = in->pts.total, N = batch->n, C = h->num_classes;
    bool sf = h->cls->with_score_factors;
    in->labels = md_tensor_full(ctx, MD_I64, MD_DIMS(N * T), (double)C);
    in->bbox_targets = md_tensor_zeros(ctx, MD_F32, MD_DIMS(N * T, 4));
    in->bbox_weights = md_tensor_full(ctx, MD_F32, MD_DIMS(N * T), 1.0);
    in->score_factor_targets = sf ? md_tensor_zeros(ctx, MD_F32, MD_DIMS(N * T)) : NULL;
    if (!in->labels || !in->bbox_targets || !in->bbox_weights || (sf && !in->score_factor_targets))
        return md_error_from_ctx(ctx, err, "%s: targets", name);
    for (int64_t i = 0; i < N; i++) {
        const md_boxes *gt = &batch->gt_bboxes[i];
        const int64_t *lab = gt->labels;
        if (!lab) {
            /* no labels (the RPN role, mmdet's gt_labels=None): class 0 */
            int64_t *z = md_ctx_alloc(ctx, sizeof *z * (size_t)(gt->n + 1));
            if (!z) return md_error_from_ctx(ctx, err, "%s: targets", name);
            memset(z, 0, sizeof *z * (size_t)(gt->n + 1));
            lab = z;
        }
        md_anchor_free_target t = { md_i64(in->labels) + i * T, md_f32(in->bbox_targets) + i * T * 4,
                                    md_f32(in->bbox_weights) + i * T,
                                    sf ? md_f32(in->score_factor_targets) + i * T : NULL };
        if (h->cls->get_targets(ctx, h, &in->pts, gt, lab, &t, err))
            return md_error_wrap(err, "%s: targets of image %lld", name, (long long)i);
    }
    int64_t P = 0, *pos = md_ctx_alloc(ctx, sizeof *pos * (size_t)(N * T + 1));
    if (!pos) return md_error_from_ctx(ctx, err, "%s: targets", name);
    for (int64_t j = 0; j < N * T; j++)
        if (md_i64(in->labels)[j] >= 0 && md_i64(in->labels)[j] < C) pos[P++] = j;
    in->num_pos = P;
    in->avg_pos = P > 1 ? (double)P : 1.0;
    in->pos_inds = md_tensor_from(ctx, MD_I64, MD_DIMS(P), pos);
    in->pos_points = md_tensor_empty(ctx, MD_F32, MD_DIMS(P, 4));
    if (!in->pos_inds || !in->pos_points) return md_error_from_ctx(ctx, err, "%s: targets", name);
    for (int64_t p = 0; p < P; p++) memcpy(md_f32(in->pos_points) + p * 4, md_f32(in->pts.points) + (pos[p] % T) * 4,
                                           4 * sizeof(float));
    return 0;
}

MD_API int md_anchor_free_head_loss_inputs(md_ctx *ctx, md_anchor_free_head *h, md_tensor *const *cls,
                                           md_tensor *const *reg, int n, const md_batch *batch,
                                           md_anchor_free_loss_inputs *in, md_error *err) {
    const char *name = h->base.cls->name;
    memset(in, 0, sizeof *in);
    if (n < 1 || n > MD_MAX_LEVELS)
        return md_failc(err, MD_ERR_SHAPE, "%s: %d feature levels (1 to %d)", name, n, MD_MAX_LEVELS);
    if (check_outputs(h, cls, reg, n, batch, err)) return -1;
    in->num_imgs = batch->n;
    bool was = md_grad_set_enabled(ctx, false);
    int rc = md_anchor_free_head_points(ctx, h, cls, n, &in->pts) ? md_error_from_ctx(ctx, err, "%s: points", name)
                                                                   : batch_targets(ctx, h, batch, in, err);
    md_grad_set_enabled(ctx, was);
    if (rc) return -1;
    in->cls = md_anchor_free_head_flatten(ctx, cls, n, h->cls_out_channels);
    in->reg = md_anchor_free_head_flatten(ctx, reg, n, 4 + (h->cls->with_score_factors ? 1 : 0));
    return in->cls && in->reg ? 0 : md_error_from_ctx(ctx, err, "%s: flatten", name);
}

/* loss_bbox over the positives: pred [P, 4] on the outputs' device. */
static md_tensor *bbox_loss(md_ctx *ctx, md_anchor_free_head *h, const md_anchor_free_loss_inputs *in,
                            md_tensor *pred, md_device dev) {
    md_tensor *tgt = md_index_select(ctx, in->bbox_targets, 0, in->pos_inds);
    md_tensor *w = md_index_select(ctx, in->bbox_weights, 0, in->pos_inds);
    if (!tgt || !w) return NULL;
    /* mmdet FCOS: weighted by the positives' weights, averaged over their sum */
    double wsum = 0;
    for (int64_t p = 0; p < in->num_pos; p++) wsum += md_f32(w)[p];
    double avg = wsum > 1e-6 ? wsum : 1e-6;
    if (h->loss_bbox->flags & MD_LOSS_BOXES) {
        md_tensor *boxes = md_bbox_decode(ctx, h->bbox_coder, md_tensor_to(ctx, in->pos_points, dev), pred, NULL);
        md_tensor *gt = md_tensor_to(ctx, md_bbox_decode(ctx, h->bbox_coder, in->pos_points, tgt, NULL), dev);
        return md_loss_forward(ctx, h->loss_bbox, boxes, gt, md_tensor_to(ctx, w, dev), avg, MD_REDUCE_DEFAULT);
    }
    md_tensor *w4 = md_contiguous(ctx, md_expand(ctx, md_unsqueeze(ctx, w, 1), MD_DIMS(in->num_pos, 4)));
    return md_loss_forward(ctx, h->loss_bbox, pred, md_tensor_to(ctx, tgt, dev), md_tensor_to(ctx, w4, dev), avg,
                           MD_REDUCE_DEFAULT);
}

MD_API int md_anchor_free_head_loss(md_ctx *ctx, md_module *m, md_tensor *const *cls, md_tensor *const *reg, int n,
                                    const md_batch *batch, md_losses *losses, md_error *err) {
    md_anchor_free_head *h = md_anchor_free_head_of(m);
    const char *name = m->cls->name;
    md_anchor_free_loss_inputs in;
    if (md_anchor_free_head_loss_inputs(ctx, h, cls, reg, n, batch, &in, err)) return -1;
    /* the targets were built on the host; the losses run where the outputs are */
    md_device dev = md_tensor_device(cls[0]);
    md_tensor *lc = md_loss_forward(ctx, h->loss_cls, in.cls, md_tensor_to(ctx, in.labels, dev), NULL, in.avg_pos,
                                    MD_REDUCE_DEFAULT);
    md_tensor *pos_reg = md_index_select(ctx, in.reg, 0, md_tensor_to(ctx, in.pos_inds, dev));
    bool sf = h->cls->with_score_factors, sf_loss = sf && h->loss_score_factor;
    md_tensor *pred = md_contiguous(ctx, sf ? md_slice(ctx, pos_reg, 1, 0, 4, 1) : pos_reg);
    md_tensor *psf = sf_loss ? md_reshape(ctx, md_slice(ctx, pos_reg, 1, 4, 5, 1), MD_DIMS(-1)) : NULL;
    md_tensor *lb, *ls = NULL;
    if (in.num_pos == 0) {
        /* mmdet: the sums of the (no) positives' outputs, zeros in the graph */
        lb = md_sum(ctx, pred, MD_DIM_ALL, false);
        if (sf_loss) ls = md_sum(ctx, psf, MD_DIM_ALL, false);
    } else {
        lb = pred ? bbox_loss(ctx, h, &in, pred, dev) : NULL;
        if (sf_loss) {
            md_tensor *t = md_tensor_to(ctx, md_index_select(ctx, in.score_factor_targets, 0, in.pos_inds), dev);
            ls = md_loss_forward(ctx, h->loss_score_factor, psf, t, NULL, in.avg_pos, MD_REDUCE_DEFAULT);
        }
    }
    if (!lc || !lb || (sf_loss && !ls)) return md_error_from_ctx(ctx, err, "%s: loss", name);
    if (md_losses_add(losses, h->cls->loss_cls_name ? h->cls->loss_cls_name : "loss_cls", lc, err) ||
        md_losses_add(losses, h->cls->loss_bbox_name ? h->cls->loss_bbox_name : "loss_bbox", lb, err) ||
        (sf_loss && md_losses_add(losses, h->cls->loss_score_factor_key, ls, err)))
        return -1;
    return 0;
}

/* ------------------------------------------------------------- get_bboxes */

MD_API int md_anchor_free_head_get_bboxes(md_ctx *ctx, md_module *m, md_tensor *const *cls, md_tensor *const *reg,
                                          int n, const md_batch *batch, const md_dense_test_cfg *tc, bool rescale,
                                          bool with_nms, md_det_result *results, md_error *err) {
    md_anchor_free_head *h = md_anchor_free_head_of(m);
    bool sf = h->cls->with_score_factors;
    const md__dense_post p = { .prior_generator = h->prior_generator, .bbox_coder = h->bbox_coder,
                               .num_classes = h->num_classes, .cls_out_channels = h->cls_out_channels,
                               .num_base_priors = 1, .use_sigmoid = h->use_sigmoid_cls,
                               .reg_channels = sf ? 5 : 4, .score_factor_channel = sf ? 4 : -1 };
    if (n > h->num_levels)
        return md_failc(err, MD_ERR_SHAPE, "%s.get_bboxes: %d levels, the head has %d strides", m->cls->name, n,
                        h->num_levels);
    return md__dense_get_bboxes(ctx, m->cls->name, &p, cls, reg, n, batch, tc, h->has_test_cfg ? &h->test_cfg : NULL,
                                rescale, with_nms, results, err);
}
