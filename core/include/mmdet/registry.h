/* Registries and plugins.
 *
 * A plugin is a shared object with one descriptor (MD_PLUGIN) and any number
 * of registrations (MD_REGISTER), each a constructor that runs inside dlopen.
 * Registrations are queued while the file loads and committed to the
 * context's registries only after the descriptor's ABI version checks out
 * (major equal, minor not newer than the core's), so a refused plugin leaves
 * no trace. A name registered twice in one registry is an error naming both
 * files.
 *
 * Registry names follow mmdet: "backbones", "necks", "heads", "roi_extractors",
 * "losses", "detectors", "datasets", "pipelines", "hooks", "optimizers",
 * "lr_policies", "bbox_assigners", "bbox_samplers", "bbox_coders",
 * "prior_generators", "iou_calculators", "runners", and "models" (generic
 * small modules). The core declares each with the interfaces its members
 * implement (md_iface_spec); a registration into any other name, or with an
 * interface the registry does not accept, refuses the plugin, naming the
 * file and the class.
 */
#ifndef MMDET_REGISTRY_H
#define MMDET_REGISTRY_H

#include <stdint.h>
#include "config.h"
#include "ctx.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI these headers describe; a plugin records it through MD_PLUGIN. It
 * is not the plugin's to choose: build against the headers of the core it
 * will run with. */
#if defined(MD_ABI_MAJOR) || defined(MD_ABI_MINOR)
#error "MD_ABI_MAJOR and MD_ABI_MINOR come from the installed headers; do not define them"
#endif
#define MD_ABI_MAJOR 1
#define MD_ABI_MINOR 5   /* 1: md_plugin_desc.init; 2: onnx_export/onnx_decode entries; 3: md_dataset.palette,
                            md_custom_dataset_class.palette, md_conv_module_opts.norm_sync, forward_dummy entries, the
                            ONNX entries of RoI heads, bbox heads and extractors (interfaces grew: rebuild); 4: mixed
                            precision (amp.h), md_ckpt_meta.fp16 and md_ckpt_info.fp16 (structs grew: rebuild); 5:
                            md_module_class.legacy_name, md_bbox_coder_iface.encode_max, md_assign_levels' predictions,
                            md_conv_module_opts.conv_type and deform_groups (structs grew: rebuild) */
/* The oldest minor the core still loads: a struct a plugin hands the core
 * (a class, an interface) must be as long as the core reads it, so a minor
 * that grows such structs raises this floor and older plugins are refused
 * with "rebuild" instead of being read past their end. */
#define MD_ABI_MINOR_OLDEST 5

/* What a registry entry is. `iface` points at the registry's own interface
 * struct (md_hook_iface, md_dataset_iface, ...); the registry defines what
 * the object returned by `build` is. */
typedef struct md_class {
    const char *name;              /* the config's `type` */
    const md_key *keys;            /* accepted keys ({0}-terminated); NULL: unchecked */
    /* Builds the object from `cfg` (schema defaults and default_args already
     * filled, keys checked). Returns NULL and sets err on failure. */
    void *(*build)(md_ctx *ctx, const md_cfg *cfg, md_error *err);
    const void *iface;
    const char *doc;               /* one line for --list-modules */
    /* What `iface` is (MD_IFACE sets both): one of the MD_IFACE_* codes of
     * the registry's interfaces, and sizeof the struct the plugin was
     * compiled with (at least the core's: a derived class struct, such as
     * an AnchorHead's, extends it). A registry refuses a class whose
     * interface is not one it declares, is smaller, or lacks a required
     * entry, when the plugin loads. */
    uint32_t iface_type, iface_size;
} md_class;

/* In a class's initializer: `MD_IFACE(&my_iface, MD_IFACE_LOSS)`. */
#define MD_IFACE(ptr_, type_) .iface = (ptr_), .iface_type = (type_), .iface_size = (uint32_t)sizeof *(ptr_)

/* Interface codes: three letters and a version, bumped when the struct
 * changes incompatibly. Each is declared by the header of its interface. */
#define MD_IFACE_CODE(a_, b_, c_, version_) \
    (((uint32_t)(a_) << 24) | ((uint32_t)(b_) << 16) | ((uint32_t)(c_) << 8) | (uint32_t)(version_))

/* What a registry's members implement: the interfaces it accepts and, for
 * each, a check of the required entries (NULL: none); `why` gets the reason
 * a class is refused ("has no forward"). The core declares the standard
 * registries (the list above) with theirs. */
typedef struct md_iface_spec {
    uint32_t type;
    const char *name;              /* the C struct, for messages */
    uint32_t size;
    int (*check)(const md_class *cls, char *why, size_t n);
} md_iface_spec;

typedef struct md_plugin_desc {
    uint32_t abi_major, abi_minor;
    const char *name, *version, *license;
    /* ABI minor 1: run when the plugin joins a context, before its classes
     * are registered there; non-zero with err set refuses the plugin (a
     * missing device, licence file or library), named with its file.
     * NULL: nothing to check. MD_PLUGIN_INIT sets it. */
    int (*init)(md_ctx *ctx, md_error *err);
} md_plugin_desc;

/* The header every built object of the part registries begins with (box
 * parts, transforms, losses, optimizers' hyper-parameters, IoU
 * calculators): its interface and its registered type. */
typedef struct md_object {
    const void *iface;
    const char *type;
} md_object;

/* For a class's build: a zeroed object of `size` bytes that begins with
 * md_object, its iface and type set and its fields filled from cfg by the
 * schema `keys` (md_cfg_read_struct). NULL with err set. Free it with
 * free(). */
void *md_object_new(size_t size, const void *iface, const char *type, const md_cfg *cfg, const md_key *keys,
                    md_error *err);

/* Called from constructors (MD_REGISTER). Outside a plugin load (e.g. a test
 * binary or the core itself) the class is registered as built-in. */
void md_register_module(const char *registry, const md_class *cls);

/* mmcv's build_from_cfg: `type` from cfg or default_args (required); every
 * key of default_args the cfg lacks is added; keys are checked against the
 * class schema and its defaults filled; the class's error is wrapped as
 * "<config path>: <Type>: <message>". Returns the built object or NULL. */
void *md_build_from_cfg(md_ctx *ctx, const char *registry, const md_cfg *cfg,
                        const md_cfg *default_args, md_error *err);

/* Builds the component configured at `path` under `parent` (a dotted key
 * such as "bbox_coder" or "train_cfg.assigner") with md_build_from_cfg; a
 * failure's message is prefixed with the path. For a component's parts. */
void *md_build_part(md_ctx *ctx, const char *registry, const md_cfg *parent, const char *path, md_error *err);

/* The class registered as `name`; NULL with the unknown-type error (the
 * registry's entries, a suggestion and the plugin directories searched). */
const md_class *md_registry_find(md_ctx *ctx, const char *registry, const char *name, md_error *err);
/* The file a class came from ("<builtin>" for the core and test binaries). */
const char *md_registry_origin(md_ctx *ctx, const char *registry, const char *name);
/* Enumeration for --list-modules: registries, then entries of one. */
int md_registry_count(md_ctx *ctx);
const char *md_registry_name(md_ctx *ctx, int i);
int md_registry_entry_count(md_ctx *ctx, const char *registry);
const md_class *md_registry_entry(md_ctx *ctx, const char *registry, int i);

/* ---- plugin loading (libltdl) ---- */
/* Adds a directory to search (recursively) and loads every plugin in it.
 * A file that fails (not a plugin, wrong ABI, unresolved symbol, duplicate
 * name) stops loading with one message: the file and the reason. */
int md_plugin_load_dir(md_ctx *ctx, const char *dir, md_error *err);
int md_plugin_load_file(md_ctx *ctx, const char *path, md_error *err);
/* The install prefix's plugin directory (next to libmmdet.so), or NULL. */
const char *md_plugin_default_dir(md_ctx *ctx);
/* Directories searched so far, for error messages. */
int md_plugin_dir_count(md_ctx *ctx);
const char *md_plugin_dir(md_ctx *ctx, int i);
/* The plugin set of a run, assembled the same way by every tool and the
 * library API: the install prefix's plugin directory (left out with
 * no_default, or the config's `default_plugins = false`), then the
 * config's `plugin_dirs` (each relative to the file that set it; a
 * --cfg-options value to the working directory), then `dirs` (the
 * --plugin-dir flags) in order. cfg may be NULL (no config yet). */
typedef struct md_plugin_set_opts {
    const char *const *dirs;
    int n_dirs;
    bool no_default;
    /* A file under a directory that is not a usable plugin (not a plugin,
     * another ABI, unresolved symbols, a duplicate name, a dangling link)
     * stops loading with one message naming it; with skip_bad it is a
     * warning and the others load. */
    bool skip_bad;
    /* Class names a later plugin may replace (as mmdet's force=True), besides
     * the config's `override_classes`; the log names both files. Any other
     * name registered twice is an error naming both. */
    const char *const *overrides;
    int n_overrides;
} md_plugin_set_opts;
int md_plugin_set_load(md_ctx *ctx, const md_cfg *cfg, const md_plugin_set_opts *o, md_error *err);

/* The plugins loaded into ctx, in load order: their descriptor
 * (MD_PLUGIN's name, version, license) and file. NULL past the end. */
int md_plugin_count(md_ctx *ctx);
const md_plugin_desc *md_plugin_get(md_ctx *ctx, int i, const char **path);
/* The loaded set as text, one plugin a line: "name version license file
 * sha256:<64 hex digits of the file>"
 * (what a checkpoint's `plugins` metadata and the log record). malloc'ed;
 * NULL when out of memory. */
char *md_plugin_set_text(md_ctx *ctx);
/* Compares a recorded set (md_plugin_set_text's form) with the loaded one:
 * the number of plugins loaded under a recorded name but with another
 * version, listed in msg as "name recorded -> loaded" (may be cut). */
int md_plugin_set_compare(md_ctx *ctx, const char *recorded, char *msg, size_t n);

/* ---- the macros a plugin uses ---- */
#define MD_PLUGIN(name_, version_, license_)                                 \
    __attribute__((visibility("default"))) const md_plugin_desc md_plugin_descriptor = { \
        MD_ABI_MAJOR, MD_ABI_MINOR, (name_), (version_), (license_), NULL }
/* MD_PLUGIN with an init function that may refuse the plugin. */
#define MD_PLUGIN_INIT(name_, version_, license_, init_)                     \
    __attribute__((visibility("default"))) const md_plugin_desc md_plugin_descriptor = { \
        MD_ABI_MAJOR, MD_ABI_MINOR, (name_), (version_), (license_), (init_) }

#define MD_REGISTER(registry_, cls_)                                         \
    static void __attribute__((constructor)) md__register_##cls_(void) {     \
        md_register_module((registry_), &(cls_));                            \
    }

#ifdef __cplusplus
}
#endif
#endif
