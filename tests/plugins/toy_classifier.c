/* ToyShapesClassifier: a small real model for exercising the runner before
 * the detectors exist. Three conv-bn-relu blocks, global average pooling
 * and a linear layer predict which classes appear in the image (multi-label,
 * binary cross entropy), from the same batches a detector gets. */
#include <stdlib.h>
#include <mmdet/data.h>
#include <mmdet/mmdet.h>

static const md_key keys[] = {
    { "type", MD_KEY_STRING, NULL, NULL, false },
    { "num_classes", MD_KEY_INT, NULL, "classes of the dataset", true },
    { "width", MD_KEY_INT, "16", "channels of the first block", false },
    { "train_cfg", MD_KEY_ANY, NULL, "ignored", false },
    { "test_cfg", MD_KEY_ANY, NULL, "ignored", false },
    { 0 } };

typedef struct toy { md_module base; int num_classes; } toy;

static int train_step(md_ctx *ctx, md_module *m, void *batch_ptr, md_losses *losses, md_error *err) {
    toy *t = (toy *)m;
    md_batch *b = batch_ptr;
    md_tensor *x = b->img;
    static const char *blocks[] = { "block1", "block2", "block3" };
    for (int i = 0; i < 3; i++) x = md_module_call(ctx, m, blocks[i], x);
    x = md_mean(ctx, md_mean(ctx, x, 3, false), 2, false);          /* [N, C] */
    md_tensor *logits = md_module_call(ctx, m, "fc", x);             /* [N, K] */
    md_tensor *target = md_tensor_zeros(ctx, MD_F32, MD_DIMS(b->n, t->num_classes));
    if (!logits || !target) return md_fail(err, "%s", md_ctx_error(ctx)->msg);
    for (int i = 0; i < b->n; i++)
        for (int k = 0; k < b->gt_bboxes[i].n; k++) {
            int64_t l = b->gt_bboxes[i].labels[k];
            if (l >= 0 && l < t->num_classes) md_f32(target)[i * t->num_classes + l] = 1.0f;
        }
    md_tensor *loss = md_loss_bce_with_logits(ctx, logits, target, NULL, MD_REDUCE_MEAN, MD_NO_AVG);
    if (!loss) return md_fail(err, "%s", md_ctx_error(ctx)->msg);
    /* accuracy of the presence decisions (logged, not a loss) */
    int64_t right = 0, total = (int64_t)b->n * t->num_classes;
    for (int64_t i = 0; i < total; i++) right += (md_f32(logits)[i] > 0) == (md_f32(target)[i] > 0.5f);
    md_tensor *acc = md_tensor_scalar(ctx, (float)(100.0 * (double)right / (double)(total ? total : 1)));
    if (md_losses_add(losses, "loss_cls", loss, err) != 0) return -1;
    return md_losses_add(losses, "acc", acc, err);
}

static const md_model_iface iface = { .train_step = train_step };
static int toy_num_classes(const md_module *m) { return ((const toy *)m)->num_classes; }
static const md_module_class toy_class = { .name = "ToyShapesClassifier", .iface = &iface,
                                           .num_classes = toy_num_classes };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    toy *t = md_module_new(sizeof *t, &toy_class);
    if (!t) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    t->num_classes = (int)md_cfg_int(cfg, "num_classes", 0);
    int w = (int)md_cfg_int(cfg, "width", 16);
    if (t->num_classes < 1 || w < 1) {
        md_module_free(&t->base);
        md_failc(err, MD_ERR_CONFIG, "num_classes and width must be positive");
        return NULL;
    }
    int chans[4] = { 3, w, 2 * w, 2 * w };
    static const char *names[] = { "block1", "block2", "block3" };
    for (int i = 0; i < 3; i++) {
        md_conv_module_opts o = { .in = chans[i], .out = chans[i + 1], .kernel = 3, .stride = 2, .padding = 1,
                                  .norm = true, .norm_requires_grad = true, .act = true, .bias = -1 };
        md_module *c = md_nn_conv_module(ctx, &o, err);
        if (!c || md_module_add_child(&t->base, names[i], c, err) != 0) {
            md_module_free(c);
            md_module_free(&t->base);
            return NULL;
        }
    }
    md_module *fc = md_nn_linear(ctx, 2 * w, t->num_classes, true, err);
    if (!fc || md_module_add_child(&t->base, "fc", fc, err) != 0) {
        md_module_free(fc);
        md_module_free(&t->base);
        return NULL;
    }
    return &t->base;
}

MD_PLUGIN("toy_classifier", "1.0", "Apache-2.0");
static const md_class cls = { .name = "ToyShapesClassifier", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_MODEL),
                              .doc = "test model: which shapes appear in the image" };
MD_REGISTER("detectors", cls)
