/* Writing Python pickles (protocol 3), the counterpart of pth.c's reader:
 * a buffer the writer appends opcodes to. Private to libmmdet. Values are
 * built from the mark: MARK, the items, then LIST / DICT / TUPLE;
 * objects with GLOBAL, REDUCE and BUILD. No memo is
 * written (every value is written where it is used). An allocation that
 * fails marks the buffer (md__pkl.oom) and later calls do nothing. */
#ifndef MMDET_FORMATS_PICKLE_H
#define MMDET_FORMATS_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct md__pkl {
    uint8_t *buf;
    size_t n, cap;
    bool oom;
} md__pkl;

void md__pkl_begin(md__pkl *p);                /* PROTO 3 */
void md__pkl_end(md__pkl *p);                  /* STOP */
void md__pkl_free(md__pkl *p);
void md__pkl_mark(md__pkl *p);
void md__pkl_none(md__pkl *p);
void md__pkl_bool(md__pkl *p, bool v);
void md__pkl_int(md__pkl *p, int64_t v);
void md__pkl_float(md__pkl *p, double v);
void md__pkl_str(md__pkl *p, const char *s);   /* a str (UTF-8) */
void md__pkl_bytes(md__pkl *p, const void *data, size_t n);
void md__pkl_global(md__pkl *p, const char *module, const char *name);
/* container ends: after md__pkl_mark and the items */
void md__pkl_list(md__pkl *p);                 /* LIST: a list of the items since the mark */
void md__pkl_tuple(md__pkl *p);                /* TUPLE of the items since the mark */
void md__pkl_dict(md__pkl *p);                 /* DICT: key, value pairs since the mark */
void md__pkl_reduce(md__pkl *p);               /* callable args -> callable(*args) */
void md__pkl_build(md__pkl *p);                /* obj state -> obj.__setstate__(state) */
/* A numpy.ndarray of `ndim` dims of float32 (dtype '<f4'), as numpy's own
 * __reduce__ gives it (numpy.core.multiarray._reconstruct, then the
 * state: shape, dtype, C order, the raw little-endian data). */
void md__pkl_ndarray_f32(md__pkl *p, int ndim, const int64_t *shape, const float *data);

#endif
