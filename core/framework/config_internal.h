/* Private to the config files (config*.c): the node layout and helpers. */
#ifndef MMDET_CONFIG_INTERNAL_H
#define MMDET_CONFIG_INTERNAL_H

#include "internal.h"

struct md_cfg {
    md_cfg_type type;
    char *name;              /* NULL for list items and roots */
    md_cfg *parent;
    char *file;              /* where it was written; NULL if made in memory */
    int line;
    union { int64_t i; double f; bool b; char *s; } v;
    md_cfg **kids;           /* groups and lists */
    int n, cap;
};

/* Where a node came from as "file:line", "file" or "<config>", into buf. */
/* A detached node of the given type (name, file may be NULL). */
md_cfg *md__cfg_node(md_cfg_type t, const char *name, const char *file, int line);
/* Frees a detached node and its children. */
void md__cfg_destroy(md_cfg *node);
/* Deep copy with a new name; delete_ keys dropped when strip is set. */
md_cfg *md__cfg_copy(const md_cfg *src, const char *name, bool strip_delete);
/* Appends a detached node to a group or list; -1 on allocation failure. */
int md__cfg_adopt(md_cfg *parent, md_cfg *kid);
/* Puts a detached node in place of kid i of its parent (frees the old one). */
void md__cfg_replace_at(md_cfg *parent, int i, md_cfg *kid);
/* Index of a group's key, or -1. */
int md__cfg_find(const md_cfg *group, const char *key);
/* Sets (replacing in place, or appending) the detached node `kid` under its
 * own name in group; returns kid, or NULL on allocation failure. */
md_cfg *md__cfg_put(md_cfg *group, md_cfg *kid);
/* Whether s is a libconfig setting name ([A-Za-z*][-A-Za-z0-9_*]*). */
bool md__cfg_valid_name(const char *s);
/* Converts text in libconfig syntax into a detached tree (root group). */
md_cfg *md__cfg_from_text(const char *text, const char *path, md_error *err);
/* Python truthiness of a value (for delete_). */
bool md__cfg_truthy(const md_cfg *node);

#endif
