/* mmdet's Shared2FCBBoxHead (ConvFCBBoxHead with num_shared_fcs 2, mmdet/
 * models/roi_heads/bbox_heads/convfc_bbox_head.py) on the library's BBoxHead
 * (roi_head.h), which owns the coder, the losses, get_targets and
 * get_bboxes. This file is the difference: flatten, shared_fcs.0/1
 * (Linear + ReLU), fc_cls (num_classes + 1, the background last) and
 * fc_reg (4, or 4 per class). Init as mmdet's init_cfg: Normal(0.01)
 * fc_cls, Normal(0.001) fc_reg, Xavier uniform on the shared fcs, biases 0.
 */
#include <mmdet/mmdet.h>
#include <mmdet/roi_head.h>

typedef struct shared2fc { md_bbox_head_base base; int fc_out_channels; } shared2fc;

static const md_key keys[] = {
    MD_BBOX_HEAD_KEYS,
    { "fc_out_channels", MD_KEY_INT, "1024", "width of the shared fcs", false, MD_AT(shared2fc, fc_out_channels),
      .min = "1" },
    { "conv_out_channels", MD_KEY_INT, "256", "unused (no convs)", false },
    { 0 } };

static int forward(md_ctx *ctx, md_module *m, md_tensor *x, md_tensor **cls_score, md_tensor **bbox_pred) {
    *cls_score = *bbox_pred = NULL;
    if (!x) return -1;
    x = md_flatten(ctx, x, 1, -1);
    md_module *fcs = md_module_child(m, "shared_fcs");
    for (int i = 0; i < 2; i++) {
        md_scope_push(ctx, "shared_fcs");
        x = md_relu_(ctx, md_module_call(ctx, fcs, i ? "1" : "0", x));
        md_scope_pop(ctx);
        md_flops_relu(ctx, "relu", x);   /* mmdet's nn.ReLU `relu`, run after each fc */
    }
    *cls_score = md_module_call(ctx, m, "fc_cls", x);
    *bbox_pred = md_module_call(ctx, m, "fc_reg", x);
    return *cls_score && *bbox_pred ? 0 : -1;
}

static const md_module_class list_class = { .name = "ModuleList" };

static int add_linear(md_ctx *ctx, md_module *parent, const char *name, int in, int out, md_error *err) {
    md_module *l = md_nn_linear(ctx, in, out, true, err);
    if (!l) return -1;
    if (md_module_add_child(parent, name, l, err)) {
        md_module_free(l);
        return -1;
    }
    return 0;
}

static int init_layers(md_ctx *ctx, md_bbox_head_base *h, md_error *err) {
    md_module *m = &h->base, *list = md_module_new(sizeof(md_module), &list_class);
    int fc = ((shared2fc *)h)->fc_out_channels, C = h->num_classes;
    if (!list) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    if (md_module_add_child(m, "shared_fcs", list, err)) {
        md_module_free(list);
        return -1;
    }
    if (add_linear(ctx, list, "0", h->in_channels * h->roi_feat_size * h->roi_feat_size, fc, err) ||
        add_linear(ctx, list, "1", fc, fc, err) || add_linear(ctx, m, "fc_cls", fc, C + 1, err) ||
        add_linear(ctx, m, "fc_reg", fc, h->reg_class_agnostic ? 4 : 4 * C, err))
        return -1;
    /* initialised in mmdet's order, after all are built */
    md_rng *r = md_ctx_rng(ctx);
    for (int i = 0; i < 2; i++) {
        md_module *l = md_module_child(list, i ? "1" : "0");
        md_init_xavier(md_nn_weight(l), r, 1.0, true);
        md_init_constant(md_nn_bias(l), 0);
    }
    md_init_normal(md_nn_weight(md_module_child(m, "fc_cls")), r, 0, 0.01);
    md_init_constant(md_nn_bias(md_module_child(m, "fc_cls")), 0);
    md_init_normal(md_nn_weight(md_module_child(m, "fc_reg")), r, 0, 0.001);
    md_init_constant(md_nn_bias(md_module_child(m, "fc_reg")), 0);
    return 0;
}

static const md_bbox_head_base_class shared2fc_cls = {
    .head = MD_BBOX_HEAD_BASE("Shared2FCBBoxHead", forward),
    .size = sizeof(shared2fc),
    .keys = keys,
    .init_layers = init_layers,
};

MD_PLUGIN("bbox_head", "1.0", "Apache-2.0");
MD_BBOX_HEAD_REGISTER(shared2fc_cls, "Shared2FCBBoxHead", keys,
                      "two shared fcs, then classification and box regression (mmdet 2.x, a BBoxHead)")
