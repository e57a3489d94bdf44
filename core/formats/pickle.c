/* A pickle writer (protocol 3) for results files that Python tools read
 * with pickle.load / mmcv.load; see formats/pickle.h. */
#include <stdlib.h>
#include <string.h>
#include "formats/pickle.h"

static void put(md__pkl *p, const void *d, size_t n) {
    if (p->oom) return;
    if (p->n + n > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        while (cap < p->n + n) cap *= 2;
        uint8_t *b = realloc(p->buf, cap);
        if (!b) {
            p->oom = true;
            return;
        }
        p->buf = b;
        p->cap = cap;
    }
    memcpy(p->buf + p->n, d, n);
    p->n += n;
}
static void op(md__pkl *p, uint8_t c) { put(p, &c, 1); }
static void u32(md__pkl *p, uint32_t v) {
    uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
    put(p, b, 4);
}

void md__pkl_begin(md__pkl *p) {
    memset(p, 0, sizeof *p);
    uint8_t h[2] = { 0x80, 3 };   /* PROTO 3 */
    put(p, h, 2);
}
void md__pkl_end(md__pkl *p) { op(p, '.'); }
void md__pkl_free(md__pkl *p) {
    free(p->buf);
    memset(p, 0, sizeof *p);
}
void md__pkl_mark(md__pkl *p) { op(p, '('); }
void md__pkl_none(md__pkl *p) { op(p, 'N'); }
void md__pkl_bool(md__pkl *p, bool v) { op(p, v ? 0x88 : 0x89); }   /* NEWTRUE / NEWFALSE */

void md__pkl_int(md__pkl *p, int64_t v) {
    if (v >= 0 && v < 256) {
        op(p, 'K');   /* BININT1 */
        op(p, (uint8_t)v);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        op(p, 'J');   /* BININT */
        u32(p, (uint32_t)(int32_t)v);
    } else {
        op(p, 0x8a);  /* LONG1: 8 bytes, little-endian two's complement */
        op(p, 8);
        uint64_t u = (uint64_t)v;
        for (int i = 0; i < 8; i++) op(p, (uint8_t)(u >> (8 * i)));
    }
}
void md__pkl_float(md__pkl *p, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    op(p, 'G');   /* BINFLOAT: big-endian */
    for (int i = 7; i >= 0; i--) op(p, (uint8_t)(u >> (8 * i)));
}
void md__pkl_str(md__pkl *p, const char *s) {
    size_t n = strlen(s);
    op(p, 'X');   /* BINUNICODE */
    u32(p, (uint32_t)n);
    put(p, s, n);
}
void md__pkl_bytes(md__pkl *p, const void *data, size_t n) {
    op(p, 'B');   /* BINBYTES */
    u32(p, (uint32_t)n);
    put(p, data, n);
}
void md__pkl_global(md__pkl *p, const char *module, const char *name) {
    op(p, 'c');
    put(p, module, strlen(module));
    op(p, '\n');
    put(p, name, strlen(name));
    op(p, '\n');
}
void md__pkl_list(md__pkl *p) { op(p, 'l'); }
void md__pkl_tuple(md__pkl *p) { op(p, 't'); }
void md__pkl_dict(md__pkl *p) { op(p, 'd'); }
void md__pkl_reduce(md__pkl *p) { op(p, 'R'); }
void md__pkl_build(md__pkl *p) { op(p, 'b'); }

void md__pkl_ndarray_f32(md__pkl *p, int ndim, const int64_t *shape, const float *data) {
    /* numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b') */
    md__pkl_global(p, "numpy.core.multiarray", "_reconstruct");
    md__pkl_mark(p);
    md__pkl_global(p, "numpy", "ndarray");
    md__pkl_mark(p);
    md__pkl_int(p, 0);
    md__pkl_tuple(p);
    md__pkl_bytes(p, "b", 1);
    md__pkl_tuple(p);
    md__pkl_reduce(p);
    /* __setstate__((1, shape, dtype('<f4'), False, raw bytes)) */
    md__pkl_mark(p);
    md__pkl_int(p, 1);
    md__pkl_mark(p);
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        md__pkl_int(p, shape[d]);
        n *= shape[d];
    }
    md__pkl_tuple(p);
    md__pkl_global(p, "numpy", "dtype");
    md__pkl_mark(p);
    md__pkl_str(p, "f4");
    md__pkl_bool(p, false);
    md__pkl_bool(p, true);
    md__pkl_tuple(p);
    md__pkl_reduce(p);
    md__pkl_mark(p);   /* the dtype's state: (3, '<', None, None, None, -1, -1, 0) */
    md__pkl_int(p, 3);
    md__pkl_str(p, "<");
    md__pkl_none(p);
    md__pkl_none(p);
    md__pkl_none(p);
    md__pkl_int(p, -1);
    md__pkl_int(p, -1);
    md__pkl_int(p, 0);
    md__pkl_tuple(p);
    md__pkl_build(p);
    md__pkl_bool(p, false);
    /* raw little-endian float32 (the host is little-endian, as the
     * safetensors and pth paths assume) */
    md__pkl_bytes(p, data, sizeof(float) * (size_t)n);
    md__pkl_tuple(p);
    md__pkl_build(p);
}
