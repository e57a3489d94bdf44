/* Config: libconfig syntax with MMDetection's semantics on top.
 *
 * A config is a tree of md_cfg nodes (groups, lists, scalars) that remember
 * the file and line they came from. Loading resolves inheritance:
 *
 *   base_ = ["../_base_/models/retinanet_r50_fpn.cfg", "../_base_/default_runtime.cfg"];
 *   model = { bbox_head = { num_classes = 5; }; };          # merged into the base
 *   optimizer = { delete_ = true; type = "Adam"; lr = 1e-3; };  # replaces it
 *
 * `base_` and `delete_` are mmdet's `_base_` and `_delete_` (libconfig names
 * must start with a letter). Strings may use {{fileDirname}},
 * {{fileBasename}}, {{fileBasenameNoExtension}}, {{fileExtname}} and
 * {{base_.a.b}} (a value from the merged bases).
 */
#ifndef MMDET_CONFIG_H
#define MMDET_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_cfg md_cfg;

typedef enum md_cfg_type {
    MD_CFG_NONE = 0,   /* Python None (from --cfg-options or a schema default) */
    MD_CFG_INT,        /* 64-bit */
    MD_CFG_FLOAT,
    MD_CFG_BOOL,
    MD_CFG_STRING,
    MD_CFG_GROUP,      /* a dict: named children, in order */
    MD_CFG_LIST,       /* a list or tuple: unnamed children */
} md_cfg_type;

/* ---- loading ---- */
/* Loads a file with its bases merged and variables substituted. */
md_cfg *md_cfg_load(const char *path, md_error *err);
/* Parses text as if it were the file `path` (bases resolved relative to it). */
md_cfg *md_cfg_parse(const char *text, const char *path, md_error *err);
/* Frees a tree returned by load/parse/clone/new (only roots). */
void md_cfg_free(md_cfg *root);
md_cfg *md_cfg_clone(const md_cfg *node);        /* a new root, deep copy */
md_cfg *md_cfg_new_group(void);                  /* an empty root group */
/* Same type and value; groups compare as dicts (key order free), lists in
 * order. File and line are not compared. */
bool md_cfg_equal(const md_cfg *a, const md_cfg *b);
/* "None", "int", "float", "bool", "string", "group", "list". */
const char *md_cfg_type_name(md_cfg_type t);

/* Applies mmcv-style overrides "a.b.1.c=value" (see docs/config.md). */
int md_cfg_apply_option(md_cfg *root, const char *opt, md_error *err);
int md_cfg_apply_options(md_cfg *root, const char *const *opts, int n, md_error *err);
/* The value part of an option as mmcv parses it ("[1,(2,3)]", "0.5", "None");
 * a new root. */
md_cfg *md_cfg_parse_option_value(const char *text, md_error *err);

/* Writes the tree in libconfig syntax; the output loads back to an equal tree. */
int md_cfg_dump(const md_cfg *node, FILE *f);
int md_cfg_dump_file(const md_cfg *node, const char *path, md_error *err);
char *md_cfg_dump_string(const md_cfg *node);    /* malloc'ed */

/* Deep-merges `src` into group `dst` with base/child semantics (delete_). */
int md_cfg_merge(md_cfg *dst, const md_cfg *src, md_error *err);

/* ---- navigation ---- */
md_cfg_type md_cfg_kind(const md_cfg *node);   /* MD_CFG_NONE for NULL */
/* Absent (NULL) or None: mmdet's `if cfg is None` for optional sections. */
bool md_cfg_is_none(const md_cfg *node);
const char *md_cfg_name(const md_cfg *node);     /* NULL for list items, roots */
int md_cfg_len(const md_cfg *node);              /* children of a group/list */
const md_cfg *md_cfg_at(const md_cfg *node, int i);
const md_cfg *md_cfg_parent(const md_cfg *node);
/* Dotted path lookup: "data.train.pipeline.1.img_scale"; NULL if absent. */
const md_cfg *md_cfg_get(const md_cfg *node, const char *path);
md_cfg *md_cfg_get_mut(md_cfg *node, const char *path);
bool md_cfg_has(const md_cfg *node, const char *path);
/* Where the node came from: file and line (0 if made in memory). */
const char *md_cfg_file(const md_cfg *node);
int md_cfg_line(const md_cfg *node);
/* Where a value was written, for messages: "file:line", "file" (a
 * --cfg-options value) or "<config>"; returns buf. */
const char *md_cfg_where(const md_cfg *node, char *buf, size_t n);
/* The dotted path from the root, e.g. "model.roi_head.bbox_head"; into buf. */
const char *md_cfg_path(const md_cfg *node, char *buf, size_t n);

/* ---- scalar values of a node ---- */
int64_t md_cfg_as_int(const md_cfg *node);       /* bool/int/float truncated */
double md_cfg_as_float(const md_cfg *node);      /* int or float */
bool md_cfg_as_bool(const md_cfg *node);
const char *md_cfg_as_str(const md_cfg *node);   /* NULL unless a string */

/* ---- reading a key of a group, with a default when absent ----
 * Types were checked by md_build_from_cfg against the component's schema;
 * these never fail. A None value reads as the default for the numeric and
 * bool reads, and as NULL for md_cfg_str. */
int64_t md_cfg_int(const md_cfg *group, const char *key, int64_t dflt);
double md_cfg_float(const md_cfg *group, const char *key, double dflt);
bool md_cfg_bool(const md_cfg *group, const char *key, bool dflt);
const char *md_cfg_str(const md_cfg *group, const char *key, const char *dflt);
/* Numeric list (or a single number) into out[max]; returns the count, or -1
 * if the value is not numeric (sets err naming the key, file and line). */
int md_cfg_int_array(const md_cfg *group, const char *key, int64_t *out, int max, md_error *err);
int md_cfg_float_array(const md_cfg *group, const char *key, double *out, int max, md_error *err);

/* Checked reads: 0 ok, 1 absent (out untouched), -1 wrong type (err says
 * file:line: key: expected ..., got ...). */
int md_cfg_read_int(const md_cfg *group, const char *key, int64_t *out, md_error *err);
int md_cfg_read_float(const md_cfg *group, const char *key, double *out, md_error *err);
int md_cfg_read_bool(const md_cfg *group, const char *key, bool *out, md_error *err);
int md_cfg_read_str(const md_cfg *group, const char *key, const char **out, md_error *err);

/* ---- building trees ---- */
/* Set (create or replace) a key of a group; returns the new node. */
md_cfg *md_cfg_set_int(md_cfg *group, const char *key, int64_t v);
md_cfg *md_cfg_set_float(md_cfg *group, const char *key, double v);
md_cfg *md_cfg_set_bool(md_cfg *group, const char *key, bool v);
md_cfg *md_cfg_set_str(md_cfg *group, const char *key, const char *v);
md_cfg *md_cfg_set_none(md_cfg *group, const char *key);
md_cfg *md_cfg_set_group(md_cfg *group, const char *key);   /* empty group */
md_cfg *md_cfg_set_list(md_cfg *group, const char *key);    /* empty list */
md_cfg *md_cfg_set_copy(md_cfg *group, const char *key, const md_cfg *value);
/* Append to a list (key NULL); returns the new node. */
md_cfg *md_cfg_append_copy(md_cfg *list, const md_cfg *value);
md_cfg *md_cfg_append_group(md_cfg *list);
md_cfg *md_cfg_append_int(md_cfg *list, int64_t v);
md_cfg *md_cfg_append_float(md_cfg *list, double v);
md_cfg *md_cfg_append_str(md_cfg *list, const char *v);
int md_cfg_remove(md_cfg *group, const char *key);          /* 0, or -1 if absent */

/* ---- schemas: the keys a component accepts ---- */
typedef enum md_key_type {
    MD_KEY_ANY = 0, MD_KEY_INT, MD_KEY_FLOAT /* int accepted */, MD_KEY_BOOL,
    MD_KEY_STRING, MD_KEY_GROUP, MD_KEY_LIST /* a single scalar accepted too */,
} md_key_type;

/* The C type of the struct field a key is stored into (md_cfg_read_struct). */
typedef enum md_field {
    MD_FIELD_NONE = 0,    /* not stored: the builder reads the key itself */
    MD_FIELD_INT,         /* int */
    MD_FIELD_I64,         /* int64_t */
    MD_FIELD_DOUBLE,      /* double */
    MD_FIELD_BOOL,        /* bool */
    MD_FIELD_STR,         /* const char *, borrowed from the config (lives as long as the built object's config) */
    MD_FIELD_CFG,         /* const md_cfg *, borrowed; NULL when the value is None */
    MD_FIELD_CHOICE,      /* int: the index of the string value in `choices` */
} md_field;

typedef struct md_key {
    const char *name;
    md_key_type type;
    const char *dflt;     /* default in libconfig syntax ("0.5", "[1, 2]", "\"x\""), or NULL */
    const char *doc;
    bool required;
    /* Optional, for md_cfg_read_struct: where the value goes (MD_AT), the
     * inclusive bounds of a number in libconfig syntax ("1", "0.0"; NULL:
     * unbounded), and for a string the accepted values ("log|linear|square";
     * a CHOICE field stores the index). */
    md_field field;
    size_t offset;
    const char *min, *max;
    const char *choices;
} md_key;

/* The field of a key: `MD_AT(struct retina, feat_channels)` in a key's
 * initializer stores the value there, its C type read from the member.
 * (An entry written with positional initializers only leaves the new
 * fields to -Wmissing-field-initializers, part of -Wextra: end it with a
 * designator, as MD_AT does, or `.field = MD_FIELD_NONE`.) */
#define MD_FIELD_OF(type_, member_)                                                               \
    _Generic(((type_ *)0)->member_, int: MD_FIELD_INT, long: MD_FIELD_I64, long long: MD_FIELD_I64, \
             double: MD_FIELD_DOUBLE, bool: MD_FIELD_BOOL, const char *: MD_FIELD_STR,            \
             const md_cfg *: MD_FIELD_CFG)
#define MD_AT(type_, member_) .field = MD_FIELD_OF(type_, member_), .offset = offsetof(type_, member_)
/* A string key stored as the index of its value in `choices_` (an int member). */
#define MD_CHOICE_AT(type_, member_, choices_) \
    .field = MD_FIELD_CHOICE, .offset = offsetof(type_, member_), .choices = (choices_)

/* Checks every key of `group` against `keys` (terminated by {0}): an unknown
 * key is an error with a "did you mean" and file:line; a wrong type or a
 * missing required key likewise. `type` is always allowed. */
int md_cfg_check_keys(const md_cfg *group, const md_key *keys, const char *what, md_error *err);
/* Adds each schema default that `group` lacks. */
int md_cfg_fill_defaults(md_cfg *group, const md_key *keys, md_error *err);
/* The schema fills the struct: every key with a field (MD_AT) is stored
 * into `obj` at its offset, from `group` or, when absent there, from the
 * key's default (a key with neither leaves the field as it is). Values are
 * checked against the key's bounds and choices; an error names the file,
 * line, key and `what`. Keys are not checked for unknown names here
 * (md_cfg_check_keys, which md_build_from_cfg runs first). With obj NULL
 * only the bounds and choices are checked (md_build_from_cfg does that for
 * every class). 0 or -1. */
int md_cfg_read_struct(const md_cfg *group, const md_key *keys, void *obj, const char *what, md_error *err);
/* The schema's entry for `name`, or NULL. */
const md_key *md_key_find(const md_key *keys, const char *name);

/* Levenshtein-closest of `cands` to `word`, or NULL when none is close. */
const char *md_suggest(const char *word, const char *const *cands, int n);

#ifdef __cplusplus
}
#endif
#endif
