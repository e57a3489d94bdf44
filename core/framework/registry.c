/* Registries: per-context tables of classes by name, and build_from_cfg. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "registry_private.h"
#include <mmdet/bbox.h>
#include <mmdet/losses.h>
#include <mmdet/roi_head.h>

/* The standard registries (mmdet's), each with the interfaces its members
 * implement: a class registered with another interface, or without an
 * entry its interface requires, is refused when its plugin loads. "models"
 * (generic small modules) accepts any class. */
#define NEED(cls_, iface_t_, field_)                                                  \
    if (!((const iface_t_ *)(cls_)->iface)->field_)                                   \
        return snprintf(why, n, "its %s has no %s", #iface_t_, #field_), -1

static int check_backbone(const md_class *c, char *why, size_t n) {
    NEED(c, md_backbone_class, forward); NEED(c, md_backbone_class, num_outs);
    NEED(c, md_backbone_class, out_channels); NEED(c, md_backbone_class, out_stride);
    return 0;
}
static int check_neck(const md_class *c, char *why, size_t n) {
    NEED(c, md_neck_class, forward); NEED(c, md_neck_class, num_outs); NEED(c, md_neck_class, out_channels);
    return 0;
}
static int check_dense_head(const md_class *c, char *why, size_t n) {
    NEED(c, md_dense_head_class, forward); NEED(c, md_dense_head_class, loss);
    NEED(c, md_dense_head_class, get_bboxes); NEED(c, md_dense_head_class, test_cfg);
    if (((const md_dense_head_class *)c->iface)->tag != MD_DENSE_HEAD_TAG)
        return snprintf(why, n, "its md_dense_head_class has no MD_DENSE_HEAD_TAG"), -1;
    return 0;
}
static int check_roi_head(const md_class *c, char *why, size_t n) {
    NEED(c, md_roi_head_class, forward_train); NEED(c, md_roi_head_class, simple_test);
    return 0;
}
static int check_bbox_head(const md_class *c, char *why, size_t n) {
    NEED(c, md_bbox_head_class, forward); NEED(c, md_bbox_head_class, get_targets);
    NEED(c, md_bbox_head_class, loss); NEED(c, md_bbox_head_class, get_bboxes);
    NEED(c, md_bbox_head_class, num_classes);
    return 0;
}
static int check_mask_head(const md_class *c, char *why, size_t n) {
    NEED(c, md_mask_head_class, forward); NEED(c, md_mask_head_class, get_targets);
    NEED(c, md_mask_head_class, loss); NEED(c, md_mask_head_class, get_seg_masks);
    NEED(c, md_mask_head_class, num_classes);
    return 0;
}
static int check_roi_extractor(const md_class *c, char *why, size_t n) {
    NEED(c, md_roi_extractor_class, forward); NEED(c, md_roi_extractor_class, num_inputs);
    NEED(c, md_roi_extractor_class, out_size);
    return 0;
}
static int check_loss(const md_class *c, char *why, size_t n) {
    NEED(c, md_loss_iface, forward);
    return 0;
}
static int check_model(const md_class *c, char *why, size_t n) {
    NEED(c, md_model_iface, train_step);
    return 0;
}
static int check_dataset(const md_class *c, char *why, size_t n) {
    NEED(c, md_dataset_iface, len); NEED(c, md_dataset_iface, get);
    return 0;
}
static int check_transform(const md_class *c, char *why, size_t n) {
    NEED(c, md_transform_iface, apply);
    return 0;
}
static int check_prior_generator(const md_class *c, char *why, size_t n) {
    NEED(c, md_prior_generator_iface, num_levels); NEED(c, md_prior_generator_iface, num_base_priors);
    NEED(c, md_prior_generator_iface, stride); NEED(c, md_prior_generator_iface, grid_priors);
    NEED(c, md_prior_generator_iface, valid_flags); NEED(c, md_prior_generator_iface, destroy);
    return 0;
}
static int check_coder(const md_class *c, char *why, size_t n) {
    NEED(c, md_bbox_coder_iface, encode); NEED(c, md_bbox_coder_iface, decode);
    NEED(c, md_bbox_coder_iface, destroy);
    return 0;
}
static int check_assigner(const md_class *c, char *why, size_t n) {
    NEED(c, md_bbox_assigner_iface, assign); NEED(c, md_bbox_assigner_iface, destroy);
    return 0;
}
static int check_sampler(const md_class *c, char *why, size_t n) {
    NEED(c, md_bbox_sampler_iface, sample); NEED(c, md_bbox_sampler_iface, destroy);
    return 0;
}
static int check_iou_calculator(const md_class *c, char *why, size_t n) {
    NEED(c, md_iou_calculator_iface, overlaps); NEED(c, md_iou_calculator_iface, destroy);
    return 0;
}
static int check_optimizer(const md_class *c, char *why, size_t n) {
    NEED(c, md_optimizer_iface, update);
    return 0;
}
static int check_lr_policy(const md_class *c, char *why, size_t n) {
    NEED(c, md_lr_policy_iface, get_lr);
    return 0;
}
static int check_runner(const md_class *c, char *why, size_t n) {
    NEED(c, md_runner_iface, run_phase);
    return 0;
}
#undef NEED

#define SPEC(code_, type_, check_) { (code_), #type_, (uint32_t)sizeof(type_), (check_) }
#define MAX_IFACES 4
static const struct standard {
    const char *name;
    md_iface_spec ifaces[MAX_IFACES];   /* { 0 }-terminated when shorter */
} standard[] = {
    { "backbones", { SPEC(MD_IFACE_BACKBONE, md_backbone_class, check_backbone) } },
    { "necks", { SPEC(MD_IFACE_NECK, md_neck_class, check_neck) } },
    { "heads", { SPEC(MD_IFACE_DENSE_HEAD, md_dense_head_class, check_dense_head),
                 SPEC(MD_IFACE_ROI_HEAD, md_roi_head_class, check_roi_head),
                 SPEC(MD_IFACE_BBOX_HEAD, md_bbox_head_class, check_bbox_head),
                 SPEC(MD_IFACE_MASK_HEAD, md_mask_head_class, check_mask_head) } },
    { "roi_extractors", { SPEC(MD_IFACE_ROI_EXTRACTOR, md_roi_extractor_class, check_roi_extractor) } },
    { "losses", { SPEC(MD_IFACE_LOSS, md_loss_iface, check_loss) } },
    { "detectors", { SPEC(MD_IFACE_MODEL, md_model_iface, check_model) } },
    { "datasets", { SPEC(MD_IFACE_DATASET, md_dataset_iface, check_dataset) } },
    { "pipelines", { SPEC(MD_IFACE_TRANSFORM, md_transform_iface, check_transform) } },
    { "hooks", { SPEC(MD_IFACE_HOOK, md_hook_iface, NULL) } },
    { "bbox_assigners", { SPEC(MD_IFACE_BBOX_ASSIGNER, md_bbox_assigner_iface, check_assigner) } },
    { "bbox_samplers", { SPEC(MD_IFACE_BBOX_SAMPLER, md_bbox_sampler_iface, check_sampler) } },
    { "bbox_coders", { SPEC(MD_IFACE_BBOX_CODER, md_bbox_coder_iface, check_coder) } },
    { "prior_generators", { SPEC(MD_IFACE_PRIOR_GENERATOR, md_prior_generator_iface, check_prior_generator) } },
    { "iou_calculators", { SPEC(MD_IFACE_IOU_CALCULATOR, md_iou_calculator_iface, check_iou_calculator) } },
    { "optimizers", { SPEC(MD_IFACE_OPTIMIZER, md_optimizer_iface, check_optimizer) } },
    { "lr_policies", { SPEC(MD_IFACE_LR_POLICY, md_lr_policy_iface, check_lr_policy) } },
    { "runners", { SPEC(MD_IFACE_RUNNER, md_runner_iface, check_runner) } },
    { "models", { { 0 } } },
};
#define N_STANDARD ((int)(sizeof standard / sizeof standard[0]))

int md__grow(void **arr, int *cap, int need, size_t size) {
    if (need <= *cap) return 0;
    int nc = *cap ? *cap : 8;
    while (nc < need) nc *= 2;
    void *p = realloc(*arr, (size_t)nc * size);
    if (!p) return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

static md__registry *find_reg(struct md_registries *r, const char *name) {
    for (int i = 0; i < r->n_regs; i++)
        if (!strcmp(r->regs[i].name, name)) return &r->regs[i];
    return NULL;
}

static md__registry *get_reg(struct md_registries *r, const char *name) {
    md__registry *reg = find_reg(r, name);
    if (reg) return reg;
    if (md__grow((void **)&r->regs, &r->cap_regs, r->n_regs + 1, sizeof *r->regs)) return NULL;
    char *copy = strdup(name);
    if (!copy) return NULL;
    reg = &r->regs[r->n_regs++];
    memset(reg, 0, sizeof *reg);
    reg->name = copy;
    return reg;
}

static const md__entry *find_entry(const md__registry *reg, const char *name) {
    for (int i = 0; reg && i < reg->n; i++)
        if (!strcmp(reg->entries[i].cls->name, name)) return &reg->entries[i];
    return NULL;
}

int md__registry_init(md_ctx *ctx, md_error *err) {
    struct md_registries *r = calloc(1, sizeof *r);
    if (!r) return md_failc(err, MD_ERR_NOMEM, "out of memory creating the registries");
    ctx->reg = r;
    /* "models" (untyped, for small generic modules) appears once a class
     * registers into it: no registry is listed empty for want of members */
    for (int i = 0; i < N_STANDARD; i++)
        if (standard[i].ifaces[0].type && !get_reg(r, standard[i].name))
            return md_failc(err, MD_ERR_NOMEM, "out of memory creating the registries");
    return md__plugin_commit_builtins(ctx, err);
}

void md__registry_free(md_ctx *ctx) {
    struct md_registries *r = ctx->reg;
    if (!r) return;
    for (int i = 0; i < r->n_regs; i++) {
        free(r->regs[i].name);
        free(r->regs[i].entries);
    }
    free(r->regs);
    for (int i = 0; i < r->n_dirs; i++) free(r->dirs[i]);
    free(r->dirs);
    free(r->files);
    free(r->left_out);
    for (int i = 0; i < r->n_owned; i++) {
        md_cfg_free(r->owned[i].root);
        free(r->owned[i].prefix);
    }
    free(r->owned);
    free(r);
    ctx->reg = NULL;
}

static const struct standard *find_standard(const char *name) {
    for (int i = 0; i < N_STANDARD; i++)
        if (!strcmp(standard[i].name, name)) return &standard[i];
    return NULL;
}

/* A class fits its registry: a standard registry, one of the interfaces it
 * accepts, of the size the core knows, with the required entries. */
static int check_iface(const char *origin, const char *rn, const md_class *cls, md_error *err) {
    const struct standard *st = find_standard(rn);
    if (!st) {
        const char *names[N_STANDARD];
        for (int i = 0; i < N_STANDARD; i++) names[i] = standard[i].name;
        const char *s = md_suggest(rn, names, N_STANDARD);
        return md_failc(err, MD_ERR_PLUGIN, "%s: class '%s' registers into '%s', which is not a registry%s%s%s", origin,
                        cls->name, rn, s ? " (did you mean '" : "", s ? s : "", s ? "'?)" : "");
    }
    if (!st->ifaces[0].type) return 0;   /* untyped ("models") */
    char accepted[256] = "";
    size_t len = 0;
    for (int i = 0; i < MAX_IFACES && st->ifaces[i].type; i++) {
        const md_iface_spec *sp = &st->ifaces[i];
        len += (size_t)snprintf(accepted + len, len < sizeof accepted ? sizeof accepted - len : 0, "%s%s",
                                i ? " or " : "", sp->name);
        if (cls->iface_type != sp->type) continue;
        if (!cls->iface)
            return md_failc(err, MD_ERR_PLUGIN, "%s: class '%s' in registry '%s' has no interface (%s)", origin,
                            cls->name, rn, sp->name);
        /* a derived class struct (AnchorHead's) extends the interface */
        if (cls->iface_size < sp->size)
            return md_failc(err, MD_ERR_PLUGIN,
                            "%s: class '%s' in registry '%s': its %s is %u bytes, this core's is %u (built against "
                            "older headers?)", origin, cls->name, rn, sp->name, cls->iface_size, sp->size);
        char why[256];
        if (sp->check && sp->check(cls, why, sizeof why))
            return md_failc(err, MD_ERR_PLUGIN, "%s: class '%s' in registry '%s': %s", origin, cls->name, rn, why);
        return 0;
    }
    return md_failc(err, MD_ERR_PLUGIN,
                    "%s: class '%s' in registry '%s' does not declare the registry's interface (%s); set it with "
                    "MD_IFACE(&iface, <its MD_IFACE_ code>)", origin, cls->name, rn, accepted);
}

/* Whether the plugin set being loaded lets a later plugin replace `name`. */
static bool may_override(const struct md_registries *r, const char *name) {
    for (int i = 0; i < r->n_override_names; i++)
        if (!strcmp(r->override_names[i], name)) return true;
    for (int i = 0; r->override_cfg && i < md_cfg_len(r->override_cfg); i++) {
        const char *s = md_cfg_as_str(md_cfg_at(r->override_cfg, i));
        if (s && !strcmp(s, name)) return true;
    }
    return false;
}

int md__registry_commit(md_ctx *ctx, const char *origin, const md__reg_item *items, int n, md_error *err) {
    struct md_registries *r = ctx->reg;
    /* Check everything first so a refused file leaves no trace. */
    for (int i = 0; i < n; i++) {
        const char *rn = items[i].registry;
        const md_class *cls = items[i].cls;
        if (!rn || !*rn || !cls || !cls->name || !*cls->name)
            return md_failc(err, MD_ERR_REGISTRY, "%s: a registration without a registry or class name", origin);
        if (!cls->build)
            return md_failc(err, MD_ERR_REGISTRY, "%s: class '%s' in registry '%s' has no build function",
                            origin, cls->name, rn);
        if (check_iface(origin, rn, cls, err)) return -1;
        const md__entry *e = find_entry(find_reg(r, rn), cls->name);
        const char *other = e && !may_override(r, cls->name) ? e->origin : NULL;
        for (int j = 0; !other && j < i; j++)
            if (!strcmp(items[j].registry, rn) && !strcmp(items[j].cls->name, cls->name)) other = origin;
        if (other)
            return md_failc(err, MD_ERR_REGISTRY,
                            "'%s' is already registered in the %s registry: registered by %s and again by %s",
                            cls->name, rn, other, origin);
    }
    for (int i = 0; i < n; i++) {
        md__registry *reg = get_reg(r, items[i].registry);
        md__entry *e = reg ? (md__entry *)find_entry(reg, items[i].cls->name) : NULL;
        if (e) {   /* a deliberate override (checked above) */
            md_info(ctx, "%s: %s of %s replaced by the one of %s (override)", items[i].registry, items[i].cls->name,
                    e->origin, origin);
            *e = (md__entry){ items[i].cls, origin };
            continue;
        }
        if (!reg || md__grow((void **)&reg->entries, &reg->cap, reg->n + 1, sizeof *reg->entries))
            return md_failc(err, MD_ERR_NOMEM, "out of memory registering %s", items[i].cls->name);
        reg->entries[reg->n++] = (md__entry){ items[i].cls, origin };
    }
    return 0;
}

/* ---- lookup ---- */

/* Appends printf-style text to buf (of size cap) at *len, truncating. */
static void cat(char *buf, size_t cap, size_t *len, const char *s) {
    if (*len >= cap) return;
    int w = snprintf(buf + *len, cap - *len, "%s", s);
    if (w > 0) *len += (size_t)w;
    if (*len >= cap) *len = cap - 1;
}

static int unknown_type(md_ctx *ctx, const char *registry, const char *name, md_error *err) {
    struct md_registries *r = ctx->reg;
    const md__registry *reg = find_reg(r, registry);
    char msg[MD_ERROR_MSG_MAX];
    size_t len = 0;
    snprintf(msg, sizeof msg, "'%s' is not in the %s registry", name, registry);
    len = strlen(msg);
    if (!reg) {
        const char **names = malloc(sizeof *names * (size_t)(r->n_regs ? r->n_regs : 1));
        for (int i = 0; names && i < r->n_regs; i++) names[i] = r->regs[i].name;
        const char *s = names ? md_suggest(registry, names, r->n_regs) : NULL;
        cat(msg, sizeof msg, &len, " (no such registry");
        if (s) {
            cat(msg, sizeof msg, &len, "; did you mean the '");
            cat(msg, sizeof msg, &len, s);
            cat(msg, sizeof msg, &len, "' registry?");
        }
        cat(msg, sizeof msg, &len, ").");
        free(names);
    } else if (reg->n == 0) {
        cat(msg, sizeof msg, &len, "; the registry is empty.");
    } else {
        const char **names = malloc(sizeof *names * (size_t)reg->n);
        for (int i = 0; names && i < reg->n; i++) names[i] = reg->entries[i].cls->name;
        const char *s = names ? md_suggest(name, names, reg->n) : NULL;
        if (s) {
            cat(msg, sizeof msg, &len, "; did you mean '");
            cat(msg, sizeof msg, &len, s);
            cat(msg, sizeof msg, &len, "'?");
        }
        cat(msg, sizeof msg, &len, " Registered: ");
        for (int i = 0; i < reg->n; i++) {
            if (i) cat(msg, sizeof msg, &len, ", ");
            cat(msg, sizeof msg, &len, reg->entries[i].cls->name);
        }
        cat(msg, sizeof msg, &len, ".");
        free(names);
    }
    const char *plugin, *path;
    if (md__plugin_left_out_provider(ctx, registry, name, &plugin, &path) == 0) {
        cat(msg, sizeof msg, &len, " The plugin ");
        cat(msg, sizeof msg, &len, plugin);
        cat(msg, sizeof msg, &len, " (");
        cat(msg, sizeof msg, &len, path);
        cat(msg, sizeof msg, &len, ") provides it, but the config's `plugins` list leaves it out.");
    }
    if (r->n_dirs == 0) {
        cat(msg, sizeof msg, &len, " No plugin directories were searched (use --plugin-dir DIR).");
    } else {
        cat(msg, sizeof msg, &len, " Plugin directories searched: ");
        for (int i = 0; i < r->n_dirs; i++) {
            if (i) cat(msg, sizeof msg, &len, ", ");
            cat(msg, sizeof msg, &len, r->dirs[i]);
        }
        cat(msg, sizeof msg, &len, ".");
    }
    return md_failc(err, MD_ERR_REGISTRY, "%s", msg);
}

MD_API const md_class *md_registry_find(md_ctx *ctx, const char *registry, const char *name, md_error *err) {
    if (!registry || !name) {
        md_failc(err, MD_ERR_REGISTRY, "md_registry_find: registry and name are required");
        return NULL;
    }
    const md__entry *e = find_entry(find_reg(ctx->reg, registry), name);
    if (e) return e->cls;
    unknown_type(ctx, registry, name, err);
    return NULL;
}

MD_API const char *md_registry_origin(md_ctx *ctx, const char *registry, const char *name) {
    if (!registry || !name) return NULL;
    const md__entry *e = find_entry(find_reg(ctx->reg, registry), name);
    return e ? e->origin : NULL;
}

MD_API int md_registry_count(md_ctx *ctx) { return ctx->reg->n_regs; }

MD_API const char *md_registry_name(md_ctx *ctx, int i) {
    return i >= 0 && i < ctx->reg->n_regs ? ctx->reg->regs[i].name : NULL;
}

MD_API int md_registry_entry_count(md_ctx *ctx, const char *registry) {
    const md__registry *reg = registry ? find_reg(ctx->reg, registry) : NULL;
    return reg ? reg->n : 0;
}

MD_API const md_class *md_registry_entry(md_ctx *ctx, const char *registry, int i) {
    const md__registry *reg = registry ? find_reg(ctx->reg, registry) : NULL;
    return reg && i >= 0 && i < reg->n ? reg->entries[i].cls : NULL;
}

/* ---- build_from_cfg ---- */

/* The dotted path of `node` from the user's config root, following clones
 * made by earlier builds back to where they were cloned from. */
static const char *full_path(md_ctx *ctx, const md_cfg *node, char *buf, size_t n) {
    const md_cfg *root = node;
    while (md_cfg_parent(root)) root = md_cfg_parent(root);
    char rel[1024];
    md_cfg_path(node, rel, sizeof rel);
    const struct md_registries *r = ctx->reg;
    for (int i = r->n_owned - 1; i >= 0; i--) {
        if (r->owned[i].root != root) continue;
        const char *pre = r->owned[i].prefix;
        if (!*pre) snprintf(buf, n, "%s", rel);
        else if (!*rel) snprintf(buf, n, "%s", pre);
        else snprintf(buf, n, "%s.%s", pre, rel);
        return buf;
    }
    snprintf(buf, n, "%s", rel);
    return buf;
}

static void where(const md_cfg *node, char *buf, size_t n) {
    const char *f = node ? md_cfg_file(node) : NULL;
    int line = node ? md_cfg_line(node) : 0;
    if (f && *f && line > 0) snprintf(buf, n, " (%s:%d)", f, line);
    else if (f && *f) snprintf(buf, n, " (%s)", f);
    else buf[0] = 0;
}

/* Prefixes "<path>: <type>: " unless a nested build already named a path
 * at or below ours (its message then starts with "<path>." or "<path>:"). */
static void wrap_build_error(md_error *err, const char *path, const char *type) {
    if (!err) return;
    size_t pl = strlen(path);
    if (pl && !strncmp(err->msg, path, pl) && (err->msg[pl] == '.' || err->msg[pl] == ':')) return;
    if (pl) md_error_wrap(err, "%s: %s", path, type);
    else md_error_wrap(err, "%s", type);
}

static void drop_owned(struct md_registries *r, md_cfg *root) {
    for (int i = r->n_owned - 1; i >= 0; i--) {
        if (r->owned[i].root != root) continue;
        md_cfg_free(root);
        free(r->owned[i].prefix);
        memmove(&r->owned[i], &r->owned[i + 1], (size_t)(r->n_owned - i - 1) * sizeof *r->owned);
        r->n_owned--;
        return;
    }
}

MD_API void *md_build_from_cfg(md_ctx *ctx, const char *registry, const md_cfg *cfg,
                               const md_cfg *default_args, md_error *err) {
    char path[1024], loc[1100];
    if (!cfg) {
        md_failc(err, MD_ERR_CONFIG, "building from the %s registry: no config given", registry);
        return NULL;
    }
    full_path(ctx, cfg, path, sizeof path);
    const char *shown = *path ? path : "<config>";
    where(cfg, loc, sizeof loc);
    if (md_cfg_kind(cfg) != MD_CFG_GROUP) {
        md_failc(err, MD_ERR_CONFIG, "%s: expected a group with a `type` for the %s registry%s",
                 shown, registry, loc);
        return NULL;
    }
    if (default_args && md_cfg_kind(default_args) != MD_CFG_GROUP) {
        md_failc(err, MD_ERR_CONFIG, "%s: default arguments must be a group", shown);
        return NULL;
    }
    const md_cfg *tnode = md_cfg_get(cfg, "type");
    if (!tnode && default_args) tnode = md_cfg_get(default_args, "type");
    if (!tnode) {
        md_failc(err, MD_ERR_CONFIG, "%s: `cfg` or `default_args` must contain the key \"type\"%s", shown, loc);
        return NULL;
    }
    const char *type = md_cfg_as_str(tnode);
    if (!type) {
        where(tnode, loc, sizeof loc);
        md_failc(err, MD_ERR_CONFIG, "%s.type: expected a string%s", *path ? path : "", loc);
        return NULL;
    }
    const md_class *cls = md_registry_find(ctx, registry, type, err);
    if (!cls) {
        where(tnode, loc, sizeof loc);
        md_error_wrap(err, "%s%s", shown, loc);
        return NULL;
    }

    struct md_registries *r = ctx->reg;
    md_cfg *args = md_cfg_clone(cfg);
    char *prefix = strdup(path);
    if (!args || !prefix || md__grow((void **)&r->owned, &r->cap_owned, r->n_owned + 1, sizeof *r->owned)) {
        md_cfg_free(args);
        free(prefix);
        md_failc(err, MD_ERR_NOMEM, "%s: out of memory cloning the config", shown);
        return NULL;
    }
    r->owned[r->n_owned++] = (md__owned_cfg){ args, prefix };
    /* mmcv: args.setdefault(name, value) for each default argument. */
    for (int i = 0; default_args && i < md_cfg_len(default_args); i++) {
        const md_cfg *d = md_cfg_at(default_args, i);
        const char *key = md_cfg_name(d);
        if (key && !md_cfg_get(args, key) && !md_cfg_set_copy(args, key, d)) {
            md_failc(err, MD_ERR_NOMEM, "%s: out of memory adding default argument %s", shown, key);
            drop_owned(r, args);
            return NULL;
        }
    }
    /* Schema messages name the type and file:line already: add the path. */
    if (cls->keys && (md_cfg_check_keys(args, cls->keys, type, err) != 0 ||
                      md_cfg_fill_defaults(args, cls->keys, err) != 0 ||
                      md_cfg_read_struct(args, cls->keys, NULL, type, err) != 0)) {
        if (*path) md_error_wrap(err, "%s", path);
        drop_owned(r, args);
        return NULL;
    }
    md_error local;
    md_error_clear(&local);
    md_error *e = err ? err : &local;
    md_error_clear(e);
    void *obj = cls->build(ctx, args, e);
    if (!obj) {
        if (!md_error_is_set(e)) md_fail(e, "build failed without a message");
        wrap_build_error(e, path, type);
        drop_owned(r, args);
        return NULL;
    }
    return obj;
}

MD_API void *md_build_part(md_ctx *ctx, const char *registry, const md_cfg *parent, const char *path, md_error *err) {
    void *obj = md_build_from_cfg(ctx, registry, md_cfg_get(parent, path), NULL, err);
    if (!obj) md_error_wrap(err, "%s", path);
    return obj;
}

MD_API void *md_object_new(size_t size, const void *iface, const char *type, const md_cfg *cfg, const md_key *keys,
                           md_error *err) {
    if (size < sizeof(md_object)) {
        md_failc(err, MD_ERR_PLUGIN, "%s: the object is smaller than md_object", type);
        return NULL;
    }
    md_object *o = calloc(1, size);
    if (!o) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    o->iface = iface;
    o->type = type;
    if (md_cfg_read_struct(cfg, keys, o, type, err)) {
        free(o);
        return NULL;
    }
    return o;
}
