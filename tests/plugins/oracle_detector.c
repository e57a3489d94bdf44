/* OracleDetector: a test model whose detections are known exactly, for
 * testing evaluation, EvalHook and mmdet-test without a real detector.
 *
 * simple_test reads the ground truth through a side channel (`ann_file`, a
 * COCO file, matched by the meta's ori_filename) and returns the boxes of
 * the first keep * N images of the file (score 0.9, labels by `classes`
 * order), with with_mask the ground truth's masks as RLEs of the image
 * too, nothing for the others; `keep` is a list indexed by the training
 * stage, steps / steps_per_stage (clamped), so the quality changes over
 * training in a scripted way. `steps` is a buffer (saved in checkpoints, so
 * a resumed run continues the script); train_step counts it and returns
 * loss_oracle = w^2 for a one-element parameter w. */
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/coco.h>
#include <mmdet/data.h>

static const md_key keys[] = {
    { "type", MD_KEY_STRING, NULL, NULL, false },
    { "ann_file", MD_KEY_STRING, NULL, "COCO file with the boxes to return", true },
    { "classes", MD_KEY_LIST, NULL, "category names in label order", true },
    { "keep", MD_KEY_LIST, "[1.0]", "fraction of images answered, per stage", false },
    { "steps_per_stage", MD_KEY_INT, "1000000", "training iterations per stage", false },
    { "with_mask", MD_KEY_BOOL, "false", "also return the ground truth's masks", false },
    { "train_cfg", MD_KEY_ANY, NULL, "ignored", false },
    { "test_cfg", MD_KEY_ANY, NULL, "ignored", false },
    { 0 } };

typedef struct oracle {
    md_module base;
    md_coco *gt;
    int64_t *labels;               /* per category index: label or -1 */
    double keep[16];
    int n_keep;
    int64_t steps_per_stage;
    bool with_mask;
    md_tensor *w, *steps;
} oracle;

static int train_step(md_ctx *ctx, md_module *m, void *batch, md_losses *losses, md_error *err) {
    (void)batch;
    oracle *o = (oracle *)m;
    md_f32(o->steps)[0] += 1;
    md_tensor *loss = md_mul(ctx, o->w, o->w);
    if (!loss) return md_fail(err, "%s", md_ctx_error(ctx)->msg);
    return md_losses_add(losses, "loss_oracle", loss, err);
}

static int simple_test(md_ctx *ctx, md_module *m, void *batch_ptr, md_det_result *results, md_error *err) {
    oracle *o = (oracle *)m;
    md_batch *b = batch_ptr;
    int64_t stage = (int64_t)md_f32(o->steps)[0] / o->steps_per_stage;
    double keep = o->keep[stage < o->n_keep ? stage : o->n_keep - 1];
    for (int i = 0; i < b->n; i++) {
        results[i] = (md_det_result){ 0 };
        const char *name = b->metas[i].ori_filename;
        long img = -1;
        for (size_t k = 0; k < o->gt->n_images && img < 0; k++)
            if (!strcmp(o->gt->images[k].file_name, name)) img = (long)k;
        if (img < 0) return md_fail(err, "OracleDetector: %s is not in its ann_file", name);
        if ((double)img >= keep * (double)o->gt->n_images) continue;
        int n = 0;
        for (size_t a = 0; a < o->gt->n_anns; a++)
            n += o->gt->anns[a].image_index == img && !o->gt->anns[a].iscrowd;
        float *bx = md_ctx_alloc(ctx, sizeof *bx * (size_t)(5 * n + 1));
        int64_t *lb = md_ctx_alloc(ctx, sizeof *lb * (size_t)(n + 1));
        md_rle *mk = o->with_mask ? md_ctx_alloc(ctx, sizeof *mk * (size_t)(n + 1)) : NULL;
        if (!bx || !lb || (o->with_mask && !mk)) return md_failc(err, MD_ERR_NOMEM, "out of memory");
        const md_coco_image *im = &o->gt->images[img];
        int k = 0;
        for (size_t a = 0; a < o->gt->n_anns; a++) {
            const md_coco_ann *an = &o->gt->anns[a];
            if (an->image_index != img || an->iscrowd || o->labels[an->category_index] < 0) continue;
            bx[5 * k] = (float)an->bbox[0];
            bx[5 * k + 1] = (float)an->bbox[1];
            bx[5 * k + 2] = (float)(an->bbox[0] + an->bbox[2]);
            bx[5 * k + 3] = (float)(an->bbox[1] + an->bbox[3]);
            bx[5 * k + 4] = 0.9f;
            if (mk) {   /* the RLE's counts move into the step arena, like the boxes */
                md_rle r;
                if (md_mask_ann_to_rle(&an->segmentation, im->height, im->width, &r, err)) return -1;
                mk[k] = r;
                mk[k].counts = md_ctx_alloc(ctx, sizeof *r.counts * (size_t)(r.m + 1));
                if (mk[k].counts) memcpy(mk[k].counts, r.counts, sizeof *r.counts * (size_t)r.m);
                md_rle_free(&r);
                if (!mk[k].counts) return md_failc(err, MD_ERR_NOMEM, "out of memory");
            }
            lb[k++] = o->labels[an->category_index];
        }
        results[i] = (md_det_result){ k, bx, lb, mk };
    }
    return 0;
}

static void destroy(md_module *m) {
    oracle *o = (oracle *)m;
    md_coco_free(o->gt);
    free(o->labels);
}

static const md_model_iface iface = { .train_step = train_step, .simple_test = simple_test };
static const md_module_class oracle_class = { .name = "OracleDetector", .destroy = destroy, .iface = &iface };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    oracle *o = md_module_new(sizeof *o, &oracle_class);
    if (!o) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    o->gt = md_coco_load(md_cfg_str(cfg, "ann_file", ""), err);
    if (!o->gt) goto fail;
    o->labels = malloc(sizeof *o->labels * (o->gt->n_categories + 1));
    if (!o->labels) goto fail;
    const md_cfg *cl = md_cfg_get(cfg, "classes");
    for (size_t c = 0; c < o->gt->n_categories; c++) {
        o->labels[c] = -1;
        for (int k = 0; k < md_cfg_len(cl); k++)
            if (md_cfg_as_str(md_cfg_at(cl, k)) && !strcmp(md_cfg_as_str(md_cfg_at(cl, k)), o->gt->categories[c].name))
                o->labels[c] = k;
    }
    const md_cfg *kp = md_cfg_get(cfg, "keep");
    o->n_keep = md_cfg_kind(kp) == MD_CFG_LIST ? md_cfg_len(kp) : 1;
    if (o->n_keep < 1 || o->n_keep > 16) {
        md_failc(err, MD_ERR_CONFIG, "OracleDetector: keep must list 1 to 16 fractions");
        goto fail;
    }
    for (int k = 0; k < o->n_keep; k++)
        o->keep[k] = md_cfg_kind(kp) == MD_CFG_LIST ? md_cfg_as_float(md_cfg_at(kp, k)) : md_cfg_as_float(kp);
    o->steps_per_stage = md_cfg_int(cfg, "steps_per_stage", 1000000);
    o->with_mask = md_cfg_bool(cfg, "with_mask", false);
    if (o->steps_per_stage < 1) o->steps_per_stage = 1;
    o->w = md_module_add_param(ctx, &o->base, "w", MD_DIMS(1), err);
    o->steps = md_module_add_buffer(ctx, &o->base, "steps", MD_F32, MD_DIMS(1), err);
    if (!o->w || !o->steps) goto fail;
    md_f32(o->w)[0] = 1.0f;
    return &o->base;
fail:
    if (!err || !err->code) md_failc(err, MD_ERR_NOMEM, "out of memory");
    md_module_free(&o->base);
    return NULL;
}

MD_PLUGIN("oracle_detector", "1.0", "Apache-2.0");
static const md_class cls = { .name = "OracleDetector", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_MODEL),
                              .doc = "test model: returns the ground truth of a COCO file, scripted by stage" };
MD_REGISTER("detectors", cls)
