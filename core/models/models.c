/* Backbone and neck interfaces, and mmcv's Pretrained init_cfg. */
#include <string.h>
#include "internal.h"
#include "mmdet/models.h"

static md_module *build_checked(md_ctx *ctx, const char *registry, const md_cfg *cfg, md_error *err) {
    md_module *m = md_build_from_cfg(ctx, registry, cfg, NULL, err);
    if (!m) return NULL;
    const char *type = md_cfg_str(cfg, "type", NULL);
    const md_class *cls = type ? md_registry_find(ctx, registry, type, NULL) : NULL;
    /* The registry's contract: the built module's class is the iface. */
    if (cls && (!cls->iface || (const void *)m->cls != cls->iface)) {
        md_failc(err, MD_ERR_PLUGIN, "%s %s (from %s): the built module's class is not the registered iface",
                 registry, type, md_registry_origin(ctx, registry, type));
        md_module_free(m);
        return NULL;
    }
    return m;
}

MD_API md_module *md_build_backbone(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    return build_checked(ctx, "backbones", cfg, err);
}

MD_API md_module *md_build_neck(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    return build_checked(ctx, "necks", cfg, err);
}

MD_API int md_backbone_forward(md_ctx *ctx, md_module *m, md_tensor *img, md_tensor **outs, int max_outs) {
    if (!img || !m) return -1;
    return md_backbone_class_of(m)->forward(ctx, m, img, outs, max_outs);
}

MD_API int md_neck_forward(md_ctx *ctx, md_module *m, md_tensor *const *ins, int n_in, md_tensor **outs,
                           int max_outs) {
    if (!m || n_in < 0) return -1;
    for (int i = 0; i < n_in; i++)
        if (!ins[i]) return -1;
    return md_neck_class_of(m)->forward(ctx, m, ins, n_in, outs, max_outs);
}

MD_API int md_extract_feat(md_ctx *ctx, md_module *model, md_module *backbone, md_module *neck, md_tensor *img,
                           md_tensor **feats) {
    md_tensor *dev_img = md_tensor_to(ctx, img, md_module_device(model));
    md_scope_push(ctx, "backbone");
    int n = md_backbone_forward(ctx, backbone, dev_img, feats, MD_MAX_LEVELS);
    md_scope_pop(ctx);
    if (dev_img != img) md_tensor_release(ctx, dev_img);   /* our copy; the batch keeps its own */
    if (n <= 0 || !neck) return n;
    md_tensor *ins[MD_MAX_LEVELS];
    memcpy(ins, feats, sizeof *ins * (size_t)n);
    md_scope_push(ctx, "neck");
    int n_out = md_neck_forward(ctx, neck, ins, n, feats, MD_MAX_LEVELS);
    md_scope_pop(ctx);
    /* the backbone's outputs the neck did not return: its convs keep what
     * their backward needs */
    for (int i = 0; i < n; i++) {
        bool returned = false;
        for (int j = 0; j < n_out; j++)
            if (feats[j] && ins[i] && feats[j]->data == ins[i]->data) returned = true;
        if (!returned) md_tensor_release(ctx, ins[i]);
    }
    return n_out;
}

MD_API int md_model_init_weights(md_ctx *ctx, md_module *m, md_error *err) {
    const md_model_class *c = md_model_class_of(m);
    return c->init_weights ? c->init_weights(ctx, m, err) : 0;
}

/* ---- init_cfg ---- */

static const char *const known_inits[] = {
    "Pretrained", "Kaiming", "Constant", "Xavier", "Normal", "TruncNormal", "Uniform", "Caffe2Xavier",
};
#define N_INITS ((int)(sizeof known_inits / sizeof *known_inits))

static int check_one(const md_cfg *c, const char *where, md_error *err) {
    char loc[64] = "";
    if (md_cfg_file(c) && md_cfg_line(c) > 0) snprintf(loc, sizeof loc, " (line %d)", md_cfg_line(c));
    if (md_cfg_kind(c) != MD_CFG_GROUP)
        return md_failc(err, MD_ERR_CONFIG, "%s: init_cfg entries must be groups with a type%s", where, loc);
    const char *type = md_cfg_str(c, "type", NULL);
    if (!type) return md_failc(err, MD_ERR_CONFIG, "%s: init_cfg has no type%s", where, loc);
    for (int i = 0; i < N_INITS; i++)
        if (!strcmp(type, known_inits[i])) {
            if (i == 0 && !md_cfg_str(c, "checkpoint", NULL))
                return md_failc(err, MD_ERR_CONFIG, "%s: init_cfg Pretrained needs a checkpoint string%s", where,
                                loc);
            return 0;
        }
    const char *s = md_suggest(type, known_inits, N_INITS);
    return md_failc(err, MD_ERR_CONFIG, "%s: unknown init_cfg type '%s'%s%s%s", where, type,
                    s ? ", did you mean '" : "", s ? s : "", s ? "'?" : "");
}

MD_API int md_init_cfg_check(const md_cfg *init_cfg, const char *where, md_error *err) {
    if (!init_cfg || md_cfg_kind(init_cfg) == MD_CFG_NONE) return 0;
    if (md_cfg_kind(init_cfg) == MD_CFG_LIST) {
        for (int i = 0; i < md_cfg_len(init_cfg); i++)
            if (check_one(md_cfg_at(init_cfg, i), where, err) != 0) return -1;
        return 0;
    }
    return check_one(init_cfg, where, err);
}

static int load_pretrained(md_ctx *ctx, md_module *m, const md_cfg *c, const char *where, md_error *err) {
    const char *path = md_cfg_str(c, "checkpoint", NULL);
    const char *prefix = md_cfg_str(c, "prefix", NULL);
    if (strstr(path, "://"))
        return md_failc(err, MD_ERR_CONFIG,
                        "%s: init_cfg Pretrained checkpoint %s: model-zoo URLs are not fetched; download the "
                        "file and give its path (PyTorch .pth and safetensors files are read)", where, path);
    md_st *st = md_pth_open_weights(path, err);   /* by content: torch.save zip/legacy, else safetensors */
    if (!st) return md_error_wrap(err, "%s: init_cfg Pretrained", where);
    if (prefix && *prefix) {
        /* mmcv's _load_checkpoint_with_prefix refuses a prefix that matches nothing. */
        size_t pl = strlen(prefix);
        bool any = false;
        for (int i = 0; i < md_st_count(st) && !any; i++) any = !strncmp(md_st_name(st, i), prefix, pl);
        if (!any) {
            md_st_close(st);
            return md_failc(err, MD_ERR_CONFIG, "%s: init_cfg Pretrained: no entry of %s starts with '%s'", where,
                            path, prefix);
        }
    }
    md_load_report rep;
    int rc = md_module_load_state(ctx, m, st, prefix, false, &rep, err);
    if (rc == 0) md__report_ignore_bn_counters(m, st, prefix, &rep);
    md_st_close(st);
    if (rc != 0) return md_error_wrap(err, "%s: init_cfg Pretrained %s", where, path);
    md_info(ctx, "%s: loaded %d tensors from %s", where, rep.loaded, path);
    if (md_load_report_any(&rep))
        md_warn(ctx, "%s: %s: %d missing keys, %d unexpected, %d of another shape (kept):\n%s%s", where, path,
                rep.missing, rep.unexpected, rep.mismatched, rep.text, rep.omitted ? "\n..." : "");
    return 1;
}

MD_API int md_init_cfg_pretrained(md_ctx *ctx, md_module *m, const md_cfg *init_cfg, const char *where,
                                  md_error *err) {
    if (md_init_cfg_check(init_cfg, where, err) != 0) return -1;
    if (!init_cfg || md_cfg_kind(init_cfg) == MD_CFG_NONE) return 0;
    int n = md_cfg_kind(init_cfg) == MD_CFG_LIST ? md_cfg_len(init_cfg) : 1;
    int loaded = 0;
    for (int i = 0; i < n; i++) {
        const md_cfg *c = md_cfg_kind(init_cfg) == MD_CFG_LIST ? md_cfg_at(init_cfg, i) : init_cfg;
        if (strcmp(md_cfg_str(c, "type", ""), "Pretrained")) continue;
        if (load_pretrained(ctx, m, c, where, err) < 0) return -1;
        loaded = 1;
    }
    return loaded;
}
