/* safetensors reader (mmap, bounds-checked) and atomic writer. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>
#include "internal.h"

typedef struct st_entry {
    char *name;
    md_dtype dtype;
    int ndim;
    int64_t shape[MD_MAX_DIMS];
    uint64_t begin, end;
    void *own;                    /* in-memory entries (md__st_add_owned) */
} st_entry;

struct md_st {
    char *path;
    unsigned char *map;
    size_t size;
    const unsigned char *data;    /* start of the byte buffer */
    st_entry *entries;
    int n;
    char **meta_keys, **meta_vals;
    int n_meta;
    int cap, cap_meta;            /* in-memory sets (md__st_new_mem) */
};

static const struct { const char *name; md_dtype dt; } st_dtypes[] = {
    { "F32", MD_F32 }, { "I64", MD_I64 }, { "I32", MD_I32 }, { "U8", MD_U8 },
    { "F16", MD_F16 }, { "BF16", MD_BF16 }, { "BOOL", MD_U8 },
};

static int parse_header(md_st *st, const char *json, size_t len, md_error *err) {
    char *text = malloc(len + 1), ebuf[256] = "";
    if (!text) return md_failc(err, MD_ERR_NOMEM, "%s: out of memory", st->path);
    memcpy(text, json, len);
    text[len] = 0;
    yajl_val root = yajl_tree_parse(text, ebuf, sizeof ebuf);
    free(text);
    if (!root || !YAJL_IS_OBJECT(root)) {
        yajl_tree_free(root);
        return md_failc(err, MD_ERR_PARSE, "%s: bad safetensors header: %s", st->path,
                        ebuf[0] ? ebuf : "not a JSON object");
    }
    size_t nkeys = root->u.object.len;
    st->entries = calloc(nkeys ? nkeys : 1, sizeof *st->entries);
    if (!st->entries) goto oom;
    for (size_t k = 0; k < nkeys; k++) {
        const char *key = root->u.object.keys[k];
        yajl_val v = root->u.object.values[k];
        if (!strcmp(key, "__metadata__")) {
            if (!YAJL_IS_OBJECT(v)) goto bad;
            if (st->meta_keys) {   /* the first one's arrays would be overrun */
                md_failc(err, MD_ERR_PARSE, "%s: the header has two __metadata__ entries", st->path);
                goto fail;
            }
            size_t m = v->u.object.len;
            st->meta_keys = calloc(m ? m : 1, sizeof(char *));
            st->meta_vals = calloc(m ? m : 1, sizeof(char *));
            if (!st->meta_keys || !st->meta_vals) goto oom;
            for (size_t j = 0; j < m; j++) {
                if (!YAJL_IS_STRING(v->u.object.values[j])) goto bad;
                st->meta_keys[st->n_meta] = strdup(v->u.object.keys[j]);
                st->meta_vals[st->n_meta] = strdup(v->u.object.values[j]->u.string);
                st->n_meta++;
                if (!st->meta_keys[st->n_meta - 1] || !st->meta_vals[st->n_meta - 1]) goto oom;
            }
            continue;
        }
        const char *p_dtype[] = { "dtype", NULL }, *p_shape[] = { "shape", NULL },
                   *p_off[] = { "data_offsets", NULL };
        yajl_val vd = yajl_tree_get(v, p_dtype, yajl_t_string);
        yajl_val vs = yajl_tree_get(v, p_shape, yajl_t_array);
        yajl_val vo = yajl_tree_get(v, p_off, yajl_t_array);
        if (!vd || !vs || !vo || vo->u.array.len != 2 || vs->u.array.len > MD_MAX_DIMS) goto bad;
        st_entry *e = &st->entries[st->n];
        e->dtype = MD_DTYPE_COUNT;
        for (size_t j = 0; j < sizeof st_dtypes / sizeof st_dtypes[0]; j++)
            if (!strcmp(vd->u.string, st_dtypes[j].name)) e->dtype = st_dtypes[j].dt;
        if (e->dtype == MD_DTYPE_COUNT) {
            md_failc(err, MD_ERR_PARSE, "%s: tensor '%s' has unsupported dtype %s", st->path, key,
                     vd->u.string);
            goto fail;
        }
        e->ndim = (int)vs->u.array.len;
        uint64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            yajl_val x = vs->u.array.values[d];
            if (!YAJL_IS_INTEGER(x) || YAJL_GET_INTEGER(x) < 0) goto bad;
            e->shape[d] = YAJL_GET_INTEGER(x);
            /* A product that wraps could match a short byte range. */
            if (e->shape[d] && numel > (UINT64_MAX / 8) / (uint64_t)e->shape[d]) {
                md_failc(err, MD_ERR_PARSE, "%s: tensor '%s' has an impossibly large shape", st->path, key);
                goto fail;
            }
            numel *= (uint64_t)e->shape[d];
        }
        yajl_val b = vo->u.array.values[0], en = vo->u.array.values[1];
        if (!YAJL_IS_INTEGER(b) || !YAJL_IS_INTEGER(en) || YAJL_GET_INTEGER(b) < 0 ||
            YAJL_GET_INTEGER(en) < YAJL_GET_INTEGER(b)) goto bad;
        e->begin = (uint64_t)YAJL_GET_INTEGER(b);
        e->end = (uint64_t)YAJL_GET_INTEGER(en);
        if (e->end - e->begin != numel * md_dtype_size(e->dtype)) {
            md_failc(err, MD_ERR_PARSE, "%s: tensor '%s' holds %llu bytes, its shape needs %llu", st->path,
                     key, (unsigned long long)(e->end - e->begin),
                     (unsigned long long)(numel * md_dtype_size(e->dtype)));
            goto fail;
        }
        for (int i = 0; i < st->n; i++)
            if (!strcmp(st->entries[i].name, key)) {
                md_failc(err, MD_ERR_PARSE, "%s: tensor '%s' appears twice in the header", st->path, key);
                goto fail;
            }
        e->name = strdup(key);
        if (!e->name) goto oom;
        st->n++;
    }
    yajl_tree_free(root);
    return 0;
bad:
    md_failc(err, MD_ERR_PARSE, "%s: malformed safetensors header entry", st->path);
    goto fail;
oom:
    md_failc(err, MD_ERR_NOMEM, "%s: out of memory", st->path);
fail:
    yajl_tree_free(root);
    return -1;
}

MD_API md_st *md_st_open(const char *path, md_error *err) {
    md_st *st = calloc(1, sizeof *st);
    if (!st) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    st->path = strdup(path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        md_failc(err, MD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < 8) {
        close(fd);
        md_failc(err, MD_ERR_PARSE, "%s: too short to be a safetensors file", path);
        goto fail;
    }
    st->size = (size_t)sb.st_size;
    st->map = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (st->map == MAP_FAILED) {
        st->map = NULL;
        md_failc(err, MD_ERR_IO, "cannot map %s: %s", path, strerror(errno));
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | st->map[i];
    if (hlen > st->size - 8 || hlen > ((uint64_t)100 << 20)) {
        md_failc(err, MD_ERR_PARSE, "%s: header length %llu exceeds the file (%zu bytes)", path,
                 (unsigned long long)hlen, st->size);
        goto fail;
    }
    if (parse_header(st, (const char *)st->map + 8, (size_t)hlen, err) != 0) goto fail;
    st->data = st->map + 8 + hlen;
    size_t avail = st->size - 8 - (size_t)hlen;
    for (int i = 0; i < st->n; i++)
        if (st->entries[i].end > avail) {
            md_failc(err, MD_ERR_PARSE, "%s: tensor '%s' lies past the end of the file", path,
                     st->entries[i].name);
            goto fail;
        }
    return st;
fail:
    md_st_close(st);
    return NULL;
}

MD_API void md_st_close(md_st *st) {
    if (!st) return;
    if (st->map) munmap(st->map, st->size);
    for (int i = 0; i < st->n; i++) {
        free(st->entries[i].name);
        free(st->entries[i].own);
    }
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_vals[i]);
    }
    free(st->meta_keys);
    free(st->meta_vals);
    free(st->entries);
    free(st->path);
    free(st);
}

MD_API int md_st_count(const md_st *st) { return st->n; }
MD_API const char *md_st_name(const md_st *st, int i) { return st->entries[i].name; }
MD_API md_dtype md_st_dtype(const md_st *st, int i) { return st->entries[i].dtype; }
MD_API const void *md_st_data(const md_st *st, int i) {
    return st->entries[i].own ? st->entries[i].own : st->data + st->entries[i].begin;
}

MD_API int md_st_find(const md_st *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->entries[i].name, name)) return i;
    return -1;
}

MD_API int md_st_shape(const md_st *st, int i, int64_t *shape) {
    for (int d = 0; d < st->entries[i].ndim; d++) shape[d] = st->entries[i].shape[d];
    return st->entries[i].ndim;
}

MD_API const char *md_st_metadata(const md_st *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta_keys[i], key)) return st->meta_vals[i];
    return NULL;
}

MD_API int md_st_metadata_count(const md_st *st) { return st->n_meta; }
MD_API const char *md_st_metadata_key(const md_st *st, int i) { return st->meta_keys[i]; }

MD_API md_tensor *md_st_tensor(md_ctx *ctx, const md_st *st, const char *name) {
    int i = md_st_find(st, name);
    if (i < 0) return md_op_fail(ctx, "safetensors", "%s has no tensor '%s'", st->path, name);
    const st_entry *e = &st->entries[i];
    return md_tensor_from(ctx, e->dtype, e->ndim, e->shape, md_st_data(st, i));
}

/* ------------------------------------------------------------ in memory -- */

md_st *md__st_new_mem(const char *path, md_error *err) {
    md_st *st = calloc(1, sizeof *st);
    if (st) st->path = strdup(path);
    if (!st || !st->path) {
        free(st);
        md_failc(err, MD_ERR_NOMEM, "out of memory reading %s", path);
        return NULL;
    }
    return st;
}

int md__st_add_owned(md_st *st, const char *name, md_dtype dt, int ndim, const int64_t *shape, void *data,
                     md_error *err) {
    if (ndim < 0 || ndim > MD_MAX_DIMS) {
        free(data);
        return md_failc(err, MD_ERR_SHAPE, "%s: tensor '%s' has %d dimensions (at most %d)", st->path, name, ndim,
                        MD_MAX_DIMS);
    }
    if (st->n == st->cap) {
        int cap = st->cap ? 2 * st->cap : 64;
        st_entry *e = realloc(st->entries, sizeof *e * (size_t)cap);
        if (!e) {
            free(data);
            return md_failc(err, MD_ERR_NOMEM, "out of memory reading %s", st->path);
        }
        st->entries = e;
        st->cap = cap;
    }
    st_entry *e = &st->entries[st->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) {
        free(data);
        return md_failc(err, MD_ERR_NOMEM, "out of memory reading %s", st->path);
    }
    e->dtype = dt;
    e->ndim = ndim;
    uint64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        e->shape[d] = shape[d];
        numel *= (uint64_t)shape[d];
    }
    e->end = numel * md_dtype_size(dt);
    e->own = data ? data : malloc(1);   /* never NULL: md_st_data tells in-memory entries by it */
    st->n++;
    return 0;
}

int md__st_add_meta(md_st *st, const char *key, const char *value, md_error *err) {
    if (st->n_meta == st->cap_meta) {
        int cap = st->cap_meta ? 2 * st->cap_meta : 16;
        char **k = realloc(st->meta_keys, sizeof *k * (size_t)cap);
        if (k) st->meta_keys = k;
        char **v = k ? realloc(st->meta_vals, sizeof *v * (size_t)cap) : NULL;
        if (v) st->meta_vals = v;
        if (!k || !v) return md_failc(err, MD_ERR_NOMEM, "out of memory reading %s", st->path);
        st->cap_meta = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return md_failc(err, MD_ERR_NOMEM, "out of memory reading %s", st->path);
    }
    st->meta_keys[st->n_meta] = k;
    st->meta_vals[st->n_meta++] = v;
    return 0;
}

const char *md__st_path(const md_st *st) { return st->path; }

/* --------------------------------------------------------------- writer -- */

typedef struct wr_entry { char *name; md_dtype dtype; int ndim; int64_t shape[MD_MAX_DIMS]; void *bytes; size_t size; } wr_entry;

struct md_st_writer {
    wr_entry *e;
    int n, cap;
    char **mk, **mv;
    int n_meta, cap_meta;
};

MD_API md_st_writer *md_st_writer_new(void) { return calloc(1, sizeof(md_st_writer)); }

MD_API void md_st_writer_free(md_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->e[i].name);
        free(w->e[i].bytes);
    }
    for (int i = 0; i < w->n_meta; i++) {
        free(w->mk[i]);
        free(w->mv[i]);
    }
    free(w->e);
    free(w->mk);
    free(w->mv);
    free(w);
}

MD_API int md_st_writer_add(md_st_writer *w, const char *name, const md_tensor *t, md_error *err) {
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 64;
        wr_entry *e = realloc(w->e, sizeof *e * (size_t)cap);
        if (!e) return md_failc(err, MD_ERR_NOMEM, "out of memory");
        w->e = e;
        w->cap = cap;
    }
    wr_entry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->dtype = t->dtype;
    e->ndim = t->ndim;
    memcpy(e->shape, t->shape, sizeof e->shape);
    int64_t n = md_tensor_numel(t);
    size_t es = md_dtype_size(t->dtype);
    e->size = (size_t)n * es;
    e->bytes = malloc(e->size ? e->size : 1);
    e->name = strdup(name);
    if (!e->bytes || !e->name) {
        free(e->bytes);
        free(e->name);
        return md_failc(err, MD_ERR_NOMEM, "out of memory");
    }
    if (t->device != MD_CPU) {
        /* a device tensor's values come back through its backend (moved
         * parameters and optimizer state are contiguous) */
        const md_backend *be = md__backend_table(t->device);
        char d[96];
        int bad = !be ? 1 : !md_tensor_is_contiguous(t) ? 2
                           : e->size && be->copy(e->bytes, t->data, e->size, MD_COPY_D2H) != 0 ? 3 : 0;
        if (bad) {
            free(e->bytes);
            free(e->name);
            md_tensor_describe(t, d, sizeof d);
            return md_fail(err, "saving %s (%s): %s", name, d,
                           bad == 1 ? "its device's backend is not loaded"
                           : bad == 2 ? "a strided device tensor (make it contiguous first)" : be->error());
        }
    } else if (md_tensor_is_contiguous(t))
        memcpy(e->bytes, t->data, e->size);
    else
        for (int64_t i = 0; i < n; i++)
            memcpy((char *)e->bytes + (size_t)i * es, (const char *)t->data + md__offset_of(t, i) * (int64_t)es, es);
    w->n++;
    return 0;
}

MD_API int md_st_writer_meta(md_st_writer *w, const char *key, const char *value, md_error *err) {
    if (w->n_meta == w->cap_meta) {
        int cap = w->cap_meta ? w->cap_meta * 2 : 16;
        char **k = realloc(w->mk, sizeof *k * (size_t)cap), **v;
        if (!k) return md_failc(err, MD_ERR_NOMEM, "out of memory");
        w->mk = k;
        v = realloc(w->mv, sizeof *v * (size_t)cap);
        if (!v) return md_failc(err, MD_ERR_NOMEM, "out of memory");
        w->mv = v;
        w->cap_meta = cap;
    }
    w->mk[w->n_meta] = strdup(key);
    w->mv[w->n_meta] = strdup(value);
    w->n_meta++;
    return 0;
}

/* Growable string for the JSON header. */
typedef struct sbuf { char *p; size_t n, cap; bool oom; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t len) {
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 4096) + len;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

static void sb_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static const char *st_dtype_name(md_dtype dt) {
    for (size_t j = 0; j < sizeof st_dtypes / sizeof st_dtypes[0]; j++)
        if (st_dtypes[j].dt == dt) return st_dtypes[j].name;
    return "F32";
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

MD_API int md_st_writer_save(md_st_writer *w, const char *path, md_error *err) {
    sbuf h = { 0 };
    sb_put(&h, "{", 1);
    if (w->n_meta) {
        sb_put(&h, "\"__metadata__\":{", 16);
        for (int i = 0; i < w->n_meta; i++) {
            if (i) sb_put(&h, ",", 1);
            sb_json_string(&h, w->mk[i]);
            sb_put(&h, ":", 1);
            sb_json_string(&h, w->mv[i]);
        }
        sb_put(&h, "}", 1);
    }
    /* Widest dtypes first (stable), as the safetensors package does: with
     * the header padded to 8 bytes every entry is then aligned. */
    for (int i = 1; i < w->n; i++) {
        wr_entry e = w->e[i];
        int j = i;
        for (; j > 0 && md_dtype_size(w->e[j - 1].dtype) < md_dtype_size(e.dtype); j--) w->e[j] = w->e[j - 1];
        w->e[j] = e;
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        if (i || w->n_meta) sb_put(&h, ",", 1);
        sb_json_string(&h, w->e[i].name);
        sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(w->e[i].dtype));
        for (int d = 0; d < w->e[i].ndim; d++) sb_printf(&h, d ? ",%lld" : "%lld", (long long)w->e[i].shape[d]);
        sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                  (unsigned long long)(off + w->e[i].size));
        off += w->e[i].size;
    }
    sb_put(&h, "}", 1);
    while (!h.oom && h.n % 8) sb_put(&h, " ", 1);
    if (h.oom) {
        free(h.p);
        return md_failc(err, MD_ERR_NOMEM, "out of memory writing %s", path);
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(h.p);
        return md_failc(err, MD_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    int rc = write_all(fd, len8, 8);
    if (!rc) rc = write_all(fd, h.p, h.n);
    for (int i = 0; !rc && i < w->n; i++) rc = write_all(fd, w->e[i].bytes, w->e[i].size);
    free(h.p);
    if (!rc) rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc || rename(tmp, path) != 0) {
        if (!rc) saved = errno;
        unlink(tmp);
        return md_failc(err, MD_ERR_IO, "cannot write %s: %s", path, strerror(saved));
    }
    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", path);
    int dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}
