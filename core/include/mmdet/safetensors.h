/* The safetensors container: 8-byte little-endian header length, a JSON
 * header {name: {dtype, shape, data_offsets}, "__metadata__": {k: v}}, then
 * raw little-endian tensor data. Used for checkpoints and test fixtures;
 * readable and writable from Python's `safetensors` package. Every offset is
 * bounds-checked: a corrupt file is an error naming the file, never a crash.
 */
#ifndef MMDET_SAFETENSORS_H
#define MMDET_SAFETENSORS_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_st md_st;

md_st *md_st_open(const char *path, md_error *err);      /* mmap'ed, read-only */
void md_st_close(md_st *st);
int md_st_count(const md_st *st);
const char *md_st_name(const md_st *st, int i);          /* in file order */
int md_st_find(const md_st *st, const char *name);       /* index or -1 */
md_dtype md_st_dtype(const md_st *st, int i);
int md_st_shape(const md_st *st, int i, int64_t *shape); /* returns ndim */
const void *md_st_data(const md_st *st, int i);
/* Value of a __metadata__ key, or NULL. */
const char *md_st_metadata(const md_st *st, const char *key);
int md_st_metadata_count(const md_st *st);
const char *md_st_metadata_key(const md_st *st, int i);
/* A step tensor holding a copy of entry `name` (NULL + ctx error if absent). */
md_tensor *md_st_tensor(md_ctx *ctx, const md_st *st, const char *name);

typedef struct md_st_writer md_st_writer;
md_st_writer *md_st_writer_new(void);
void md_st_writer_free(md_st_writer *w);
/* The tensor is copied now (any layout), so it may die before the save. */
int md_st_writer_add(md_st_writer *w, const char *name, const md_tensor *t, md_error *err);
int md_st_writer_meta(md_st_writer *w, const char *key, const char *value, md_error *err);
/* Atomic: writes path.tmp, fsyncs, renames over path, fsyncs the folder. */
int md_st_writer_save(md_st_writer *w, const char *path, md_error *err);

#ifdef __cplusplus
}
#endif
#endif
