/* Checkpoints: save/load model + optimizer + metadata; latest link. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"

#ifndef MD_VERSION
#define MD_VERSION "0"
#endif

MD_API int md_checkpoint_save(const char *path, md_module *model, const md_optimizer *opt, const md_ckpt_meta *meta,
                              md_error *err) {
    md_st_writer *w = md_st_writer_new();
    if (!w) return md_failc(err, MD_ERR_NOMEM, "out of memory saving %s", path);
    char num[32];
    int rc = 0;
    snprintf(num, sizeof num, "%lld", (long long)meta->epoch);
    rc |= md_st_writer_meta(w, "epoch", num, err);
    snprintf(num, sizeof num, "%lld", (long long)meta->iter);
    rc |= md_st_writer_meta(w, "iter", num, err);
    if (meta->inner_iter) {
        snprintf(num, sizeof num, "%lld", (long long)meta->inner_iter);
        rc |= md_st_writer_meta(w, "inner_iter", num, err);
    }
    rc |= md_st_writer_meta(w, "mmdet_version", MD_VERSION, err);
    if (meta->config) rc |= md_st_writer_meta(w, "config", meta->config, err);
    if (meta->classes) rc |= md_st_writer_meta(w, "CLASSES", meta->classes, err);
    if (meta->hook_msgs) rc |= md_st_writer_meta(w, "hook_msgs", meta->hook_msgs, err);
    if (meta->plugins) rc |= md_st_writer_meta(w, "plugins", meta->plugins, err);
    if (meta->fp16) rc |= md_st_writer_meta(w, "fp16", meta->fp16, err);
    if (!rc) rc = md_module_save_state(model, w, "", err);
    if (!rc && opt) rc = md_optimizer_save_state(opt, w, err);
    if (!rc) rc = md_st_writer_save(w, path, err);
    md_st_writer_free(w);
    return rc ? -1 : 0;
}

MD_API int md_checkpoint_link_latest(const char *dir, const char *filename, md_error *err) {
    char link[4096], tmp[4096];
    snprintf(link, sizeof link, "%s/latest" MD_CKPT_EXT, dir);
    snprintf(tmp, sizeof tmp, "%s/.latest" MD_CKPT_EXT ".tmp", dir);
    unlink(tmp);
    if (symlink(filename, tmp) != 0 || rename(tmp, link) != 0) {
        int e = errno;
        unlink(tmp);
        return md_failc(err, MD_ERR_IO, "cannot link %s to %s: %s", link, filename, strerror(e));
    }
    return 0;
}

MD_API char *md_checkpoint_find_latest(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/latest" MD_CKPT_EXT, dir);
    if (access(path, R_OK) == 0) return strdup(path);
    DIR *d = opendir(dir);
    if (!d) return NULL;
    long long best = -1;
    char best_name[1024] = "";
    struct dirent *e;
    size_t ext = strlen(MD_CKPT_EXT);
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n <= ext || strcmp(e->d_name + n - ext, MD_CKPT_EXT)) continue;
        const char *us = NULL;
        for (const char *p = e->d_name; p < e->d_name + n - ext; p++)
            if (*p == '_') us = p;
        if (!us) continue;
        char *end;
        long long v = strtoll(us + 1, &end, 10);
        if (end != e->d_name + n - ext || end == us + 1) continue;
        if (v > best) {
            best = v;
            snprintf(best_name, sizeof best_name, "%s", e->d_name);
        }
    }
    closedir(d);
    if (best < 0) return NULL;
    snprintf(path, sizeof path, "%s/%s", dir, best_name);
    return strdup(path);
}

MD_API void md_checkpoint_warn_report(md_ctx *ctx, const char *path, const md_load_report *r) {
    md_warn(ctx, "%s: %d tensors loaded; %d missing keys, %d unexpected keys, %d of another shape (left as they "
            "were):\n%s%s", path, r->loaded, r->missing, r->unexpected, r->mismatched, r->text,
            r->omitted ? "\n... (more lines omitted)" : "");
}

MD_API int md_checkpoint_load(md_ctx *ctx, const char *path, md_module *model, md_optimizer *opt, md_ckpt_info *info,
                              md_error *err) {
    md_ckpt_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    if (opt && md_pth_sniff(path))
        return md_failc(err, MD_ERR_CONFIG,
                        "cannot resume from %s: a PyTorch checkpoint's optimizer state is PyTorch's; "
                        "use load_from (weights only) instead of resume_from", path);
    md_st *st = md_pth_open_weights(path, err);   /* by content: torch.save zip/legacy, else safetensors */
    if (!st) return -1;
    const char *v;
    if ((v = md_st_metadata(st, "epoch"))) info->epoch = strtoll(v, NULL, 10);
    if ((v = md_st_metadata(st, "iter"))) info->iter = strtoll(v, NULL, 10);
    if ((v = md_st_metadata(st, "inner_iter"))) info->inner_iter = strtoll(v, NULL, 10);
    if ((v = md_st_metadata(st, "CLASSES"))) snprintf(info->classes, sizeof info->classes, "%s", v);
    if ((v = md_st_metadata(st, "hook_msgs"))) snprintf(info->hook_msgs, sizeof info->hook_msgs, "%s", v);
    if ((v = md_st_metadata(st, "plugins"))) snprintf(info->plugins, sizeof info->plugins, "%s", v);
    if ((v = md_st_metadata(st, "fp16"))) snprintf(info->fp16, sizeof info->fp16, "%s", v);
    /* resuming continues a run: every tensor must fit (torch's strict
     * shapes); load_from fine-tunes: what fits loads (mmcv) */
    int rc = md_module_load_state(ctx, model, st, "module.", false, &info->report, err);
    if (rc == 0 && opt && info->report.mismatched) {
        char first[512];
        const char *line = strstr(info->report.text, "size mismatch for ");
        snprintf(first, sizeof first, "%.*s", line ? (int)strcspn(line, "\n") : 0, line ? line : "");
        rc = md_failc(err, MD_ERR_SHAPE, "cannot resume: %d tensors of another shape (%s); use load_from to "
                      "fine-tune", info->report.mismatched, first);
    }
    if (rc == 0) {
        /* "optimizer.*" entries are expected extras, not unexpected keys */
        int extra = 0;
        for (int i = 0; i < md_st_count(st); i++)
            if (!strncmp(md_st_name(st, i), "optimizer.", 10)) extra++;
        info->report.unexpected -= extra;
        md__load_report_drop(&info->report, "unexpected: optimizer.", NULL);
        md__report_ignore_bn_counters(model, st, "module.", &info->report);
    }
    if (rc == 0 && opt) rc = md_optimizer_load_state(ctx, opt, st, err);
    md_st_close(st);
    if (rc != 0) md_error_wrap(err, "loading %s", path);
    return rc;
}

MD_API md_module *md_detector_init(md_ctx *ctx, const md_cfg *cfg, const char *config_name, const char *checkpoint,
                                   md_ckpt_info *info, md_error *err) {
    const md_cfg *mc = md_cfg_get(cfg, "model");
    if (!mc) {
        md_failc(err, MD_ERR_CONFIG, "%s: the config has no `model`", config_name);
        return NULL;
    }
    md_cfg *defaults = md_cfg_new_group();
    if (!defaults) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (!md_cfg_is_none(md_cfg_get(cfg, "test_cfg"))) md_cfg_set_copy(defaults, "test_cfg", md_cfg_get(cfg, "test_cfg"));
    md_module *model = md_build_from_cfg(ctx, "detectors", mc, defaults, err);
    md_cfg_free(defaults);
    if (!model) return NULL;
    if (md_checkpoint_load(ctx, checkpoint, model, NULL, info, err) != 0) {
        md_module_free(model);
        return NULL;
    }
    md_info(ctx, "load checkpoint from %s", checkpoint);
    if (md_load_report_any(&info->report)) md_checkpoint_warn_report(ctx, checkpoint, &info->report);
    char differ[1024];
    if (info->plugins[0] && md_plugin_set_compare(ctx, info->plugins, differ, sizeof differ) > 0)
        md_warn(ctx, "%s was trained with other versions of plugins loaded now: %s", checkpoint, differ);
    if (md_module_to_config_device(ctx, model, cfg, err) != 0) {
        md_module_free(model);
        return NULL;
    }
    return model;
}

MD_API int md_module_to_config_device(md_ctx *ctx, md_module *model, const md_cfg *cfg, md_error *err) {
    const md_cfg *dc = md_cfg_get(cfg, "device");
    const char *name = md_cfg_is_none(dc) ? "cpu" : md_cfg_str(cfg, "device", NULL);
    if (!name) return md_failc(err, MD_ERR_CONFIG, "device: a string (\"cpu\", \"cuda\" or \"cuda:N\")");
    md_device d;
    if (md_device_parse(name, &d, err) != 0) return md_error_wrap(err, "the config's device");
    if (d.type == MD_CPU) return 0;
    if (md_device_init(ctx, d, err) != 0 || md_module_to(ctx, model, d, err) != 0)
        return md_error_wrap(err, "moving the model to %s", name);
    char buf[32];
    md_info(ctx, "device %s: %s", md_device_name(d, buf, sizeof buf), md_device_describe(d));
    return 0;
}
