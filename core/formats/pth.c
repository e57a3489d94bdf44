/* PyTorch torch.save files: zip (stored entries) and legacy streams, read by
 * a restricted unpickler that builds plain values and never executes code.
 * See mmdet/pth.h for what is accepted. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "internal.h"
#include "mmdet/pth.h"

/* ------------------------------------------------------------- storages -- */

typedef enum { T_F32, T_F64, T_F16, T_BF16, T_I64, T_I32, T_I16, T_I8, T_U8, T_BOOL, T_COUNT } torch_dt;
static const struct { const char *storage; int size; md_dtype out; } tdt[T_COUNT] = {
    [T_F32] = { "FloatStorage", 4, MD_F32 },   [T_F64] = { "DoubleStorage", 8, MD_F32 },
    [T_F16] = { "HalfStorage", 2, MD_F32 },    [T_BF16] = { "BFloat16Storage", 2, MD_F32 },
    [T_I64] = { "LongStorage", 8, MD_I64 },    [T_I32] = { "IntStorage", 4, MD_I32 },
    [T_I16] = { "ShortStorage", 2, MD_I32 },   [T_I8] = { "CharStorage", 1, MD_I32 },
    [T_U8] = { "ByteStorage", 1, MD_U8 },      [T_BOOL] = { "BoolStorage", 1, MD_U8 },
};

/* --------------------------------------------------------------- values -- */

typedef enum { V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_BYTES, V_TUPLE, V_LIST, V_DICT, V_GLOBAL, V_STORAGE,
               V_TENSOR, V_MARK } vkind;
static const char *const vkind_name[] = { "None", "bool", "int", "float", "str", "bytes", "tuple", "list",
                                          "dict", "global", "storage", "tensor", "mark" };

/* The allowed globals. */
typedef enum { G_ODICT, G_REBUILD_V2, G_REBUILD, G_PARAM, G_PARAM_STATE, G_STORAGE } gkind;

typedef struct pv pv;
struct pv {
    vkind k;
    int64_t i;                      /* BOOL, INT; GLOBAL: gkind; STORAGE: torch_dt */
    double f;
    char *s;                        /* STR, BYTES; GLOBAL: "module.name"; STORAGE: key */
    size_t len;
    pv **items;                     /* TUPLE, LIST; DICT: key, value, key, value, ... */
    int n, cap;
    int64_t g2;                     /* GLOBAL G_STORAGE: torch_dt */
    /* STORAGE: bytes once resolved */
    const uint8_t *data;
    uint64_t nbytes;
    bool resolved;
    /* TENSOR */
    pv *storage;
    int64_t offset;
    int ndim;
    int64_t size[MD_MAX_DIMS], stride[MD_MAX_DIMS];
};

typedef struct up {
    const char *path, *what;        /* file, and the pickle's name in messages */
    md_error *err;
    pv **all;                       /* every value, freed together */
    size_t n_all, cap_all;
    pv **stack;
    size_t sp, cap_stack;
    size_t *marks;
    size_t n_marks, cap_marks;
    pv **memo;
    size_t n_memo, cap_memo;
    size_t memo_limit;
    bool legacy;                    /* persistent ids of the legacy format (6 fields) */
    pv **storages;                  /* every storage the pickle named */
    size_t n_storages, cap_storages;
} up;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int oom(up *u) { return md_failc(u->err, MD_ERR_NOMEM, "%s: out of memory reading %s", u->path, u->what); }

static pv *pv_new(up *u, vkind k) {
    if (grow((void **)&u->all, &u->cap_all, u->n_all + 1, sizeof(pv *)) != 0) return oom(u), NULL;
    pv *v = calloc(1, sizeof *v);
    if (!v) return oom(u), NULL;
    v->k = k;
    u->all[u->n_all++] = v;
    return v;
}

static int pv_push_item(up *u, pv *c, pv *item) {
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 8;
        pv **it = realloc(c->items, sizeof *it * (size_t)cap);
        if (!it) return oom(u);
        c->items = it;
        c->cap = cap;
    }
    c->items[c->n++] = item;
    return 0;
}

static bool key_eq(const pv *a, const pv *b) {
    if (a->k != b->k) return false;
    if (a->k == V_STR || a->k == V_BYTES) return a->len == b->len && !memcmp(a->s, b->s, a->len);
    if (a->k == V_INT || a->k == V_BOOL) return a->i == b->i;
    if (a->k == V_NONE) return true;
    return a == b;
}

/* dict[key] = value, replacing an equal key as Python does. torch.save
 * never repeats a key, so past 2^15 entries keys are appended unchecked:
 * a crafted file cannot make loading quadratic. */
static int dict_set(up *u, pv *d, pv *key, pv *val) {
    for (int j = 0; j < d->n && d->n < (1 << 16); j += 2)
        if (key_eq(d->items[j], key)) {
            d->items[j + 1] = val;
            return 0;
        }
    if (pv_push_item(u, d, key) != 0) return -1;
    return pv_push_item(u, d, val);
}

static pv *dict_get(const pv *d, const char *key) {
    size_t kl = strlen(key);
    for (int j = 0; d && d->k == V_DICT && j < d->n; j += 2)
        if (d->items[j]->k == V_STR && d->items[j]->len == kl && !memcmp(d->items[j]->s, key, kl))
            return d->items[j + 1];
    return NULL;
}

static void up_free(up *u) {
    for (size_t i = 0; i < u->n_all; i++) {
        free(u->all[i]->s);
        free(u->all[i]->items);
        free(u->all[i]);
    }
    free(u->all);
    free(u->stack);
    free(u->marks);
    free(u->memo);
    free(u->storages);
    memset(u, 0, sizeof *u);
}

/* ----------------------------------------------------------- unpickler -- */

static int bad(up *u, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(up *u, size_t pos, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return md_failc(u->err, MD_ERR_PARSE, "%s: %s, byte %zu: %s", u->path, u->what, pos, msg);
}

static int push(up *u, pv *v) {
    if (!v) return -1;
    if (grow((void **)&u->stack, &u->cap_stack, u->sp + 1, sizeof(pv *)) != 0) return oom(u);
    u->stack[u->sp++] = v;
    return 0;
}

static pv *pop(up *u, size_t pos) {
    size_t floor = u->n_marks ? u->marks[u->n_marks - 1] : 0;
    if (u->sp <= floor) {
        bad(u, pos, "the pickle pops an empty stack");
        return NULL;
    }
    return u->stack[--u->sp];
}

static pv *top(up *u, size_t pos) {
    size_t floor = u->n_marks ? u->marks[u->n_marks - 1] : 0;
    if (u->sp <= floor) {
        bad(u, pos, "the pickle reads an empty stack");
        return NULL;
    }
    return u->stack[u->sp - 1];
}

/* Start of the items above the last MARK (the mark is dropped). */
static int pop_mark(up *u, size_t pos, size_t *start) {
    if (!u->n_marks) return bad(u, pos, "no MARK for this opcode");
    *start = u->marks[--u->n_marks];
    return 0;
}

static pv *make_str(up *u, vkind k, const uint8_t *s, size_t n) {
    pv *v = pv_new(u, k);
    if (!v) return NULL;
    v->s = malloc(n + 1);
    if (!v->s) return oom(u), NULL;
    memcpy(v->s, s, n);
    v->s[n] = 0;
    v->len = n;
    return v;
}

static pv *make_int(up *u, int64_t x) {
    pv *v = pv_new(u, V_INT);
    if (v) v->i = x;
    return v;
}

/* The allow-list: everything else is refused before anything uses it. */
static pv *make_global(up *u, size_t pos, const char *mod, size_t ml, const char *name, size_t nl) {
    char full[256];
    snprintf(full, sizeof full, "%.*s.%.*s", (int)(ml < 120 ? ml : 120), mod, (int)(nl < 120 ? nl : 120), name);
    int g = -1;
    int64_t dt = -1;
    if (!strcmp(full, "collections.OrderedDict")) g = G_ODICT;
    else if (!strcmp(full, "torch._utils._rebuild_tensor_v2")) g = G_REBUILD_V2;
    else if (!strcmp(full, "torch._utils._rebuild_tensor")) g = G_REBUILD;
    else if (!strcmp(full, "torch._utils._rebuild_parameter")) g = G_PARAM;
    else if (!strcmp(full, "torch._utils._rebuild_parameter_with_state")) g = G_PARAM_STATE;
    else if (!strncmp(full, "torch.", 6))
        for (int t = 0; t < T_COUNT; t++)
            if (!strcmp(full + 6, tdt[t].storage)) {
                g = G_STORAGE;
                dt = t;
            }
    if (g < 0) {
        md_failc(u->err, MD_ERR_CONFIG,
                 "%s: refusing to load: %s (byte %zu) asks for the Python global '%s'; only tensors, storages "
                 "and plain containers are allowed (nothing in the file was executed)",
                 u->path, u->what, pos, full);
        return NULL;
    }
    pv *v = make_str(u, V_GLOBAL, (const uint8_t *)full, strlen(full));
    if (v) {
        v->i = g;
        v->g2 = dt;
    }
    return v;
}

static int64_t rd_le(const uint8_t *p, int n) {
    uint64_t x = 0;
    for (int i = n - 1; i >= 0; i--) x = (x << 8) | p[i];
    return (int64_t)x;
}

/* A persistent id: ('storage', StorageType, key, location, numel[, view_metadata]). */
static pv *persistent_load(up *u, size_t pos, pv *pid) {
    if (pid->k != V_TUPLE || pid->n < 5 || pid->items[0]->k != V_STR || strcmp(pid->items[0]->s, "storage"))
        return bad(u, pos, "unsupported persistent id (expected ('storage', type, key, location, size))"), NULL;
    pv *type = pid->items[1], *key = pid->items[2], *numel = pid->items[4];
    if (type->k != V_GLOBAL || type->i != G_STORAGE)
        return bad(u, pos, "the persistent id's storage type is a %s, not a torch storage class",
                   vkind_name[type->k]), NULL;
    if (key->k != V_STR || numel->k != V_INT || numel->i < 0)
        return bad(u, pos, "malformed storage persistent id"), NULL;
    if (pid->n >= 6 && pid->items[5]->k != V_NONE)
        return bad(u, pos, "storage views (legacy view_metadata) are not supported"), NULL;
    pv *st = make_str(u, V_STORAGE, (const uint8_t *)key->s, key->len);
    if (!st) return NULL;
    st->i = type->g2;   /* its bytes come from the archive entry or the legacy stream */
    if (grow((void **)&u->storages, &u->cap_storages, u->n_storages + 1, sizeof(pv *)) != 0) return oom(u), NULL;
    u->storages[u->n_storages++] = st;
    return st;
}

static bool int_tuple(const pv *t, int max) {
    if (!t || (t->k != V_TUPLE && t->k != V_LIST) || t->n > max) return false;
    for (int j = 0; j < t->n; j++)
        if (t->items[j]->k != V_INT || t->items[j]->i < 0) return false;
    return true;
}

/* callable(*args) for the allowed callables only. */
static pv *call(up *u, size_t pos, pv *fn, pv *args) {
    if (fn->k != V_GLOBAL) return bad(u, pos, "REDUCE on a %s, not an allowed global", vkind_name[fn->k]), NULL;
    if (args->k != V_TUPLE) return bad(u, pos, "REDUCE with %s arguments, not a tuple", vkind_name[args->k]), NULL;
    switch ((gkind)fn->i) {
    case G_ODICT: {
        pv *d = pv_new(u, V_DICT);
        if (!d) return NULL;
        if (args->n == 0) return d;
        pv *items = args->items[0];
        if (args->n != 1 || (items->k != V_LIST && items->k != V_TUPLE))
            return bad(u, pos, "OrderedDict called with unsupported arguments"), NULL;
        for (int j = 0; j < items->n; j++) {
            pv *kv = items->items[j];
            if ((kv->k != V_TUPLE && kv->k != V_LIST) || kv->n != 2)
                return bad(u, pos, "OrderedDict item %d is not a (key, value) pair", j), NULL;
            if (dict_set(u, d, kv->items[0], kv->items[1]) != 0) return NULL;
        }
        return d;
    }
    case G_REBUILD_V2:
    case G_REBUILD: {
        int want = fn->i == G_REBUILD ? 4 : 6;
        if (args->n < want || args->n > want + 1)
            return bad(u, pos, "%s called with %d arguments", fn->s, args->n), NULL;
        pv *st = args->items[0], *off = args->items[1], *size = args->items[2], *stride = args->items[3];
        if (st->k != V_STORAGE) return bad(u, pos, "%s: first argument is a %s, not a storage", fn->s,
                                           vkind_name[st->k]), NULL;
        if (off->k != V_INT || off->i < 0 || !int_tuple(size, MD_MAX_DIMS) || !int_tuple(stride, MD_MAX_DIMS) ||
            size->n != stride->n)
            return bad(u, pos, "%s: bad storage offset, sizes or strides (at most %d dimensions)", fn->s,
                       MD_MAX_DIMS), NULL;
        pv *t = pv_new(u, V_TENSOR);
        if (!t) return NULL;
        t->storage = st;
        t->offset = off->i;
        t->ndim = size->n;
        for (int d = 0; d < t->ndim; d++) {
            t->size[d] = size->items[d]->i;
            t->stride[d] = stride->items[d]->i;
        }
        return t;
    }
    case G_PARAM:
    case G_PARAM_STATE:
        if (args->n < 1 || args->items[0]->k != V_TENSOR)
            return bad(u, pos, "%s called without a tensor", fn->s), NULL;
        return args->items[0];
    case G_STORAGE:
        break;
    }
    return bad(u, pos, "refusing to call %s", fn->s), NULL;
}

static int read_line(up *u, const uint8_t **p, const uint8_t *end, size_t pos, const uint8_t **s, size_t *n) {
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (!nl) return bad(u, pos, "unterminated text argument (truncated file?)");
    *s = *p;
    *n = (size_t)(nl - *p);
    *p = nl + 1;
    return 0;
}

static int memo_put(up *u, size_t pos, uint64_t idx, pv *v) {
    if (idx >= u->memo_limit) return bad(u, pos, "memo index %llu out of range", (unsigned long long)idx);
    if (idx >= u->n_memo) {
        if (grow((void **)&u->memo, &u->cap_memo, idx + 1, sizeof(pv *)) != 0) return oom(u);
        memset(u->memo + u->n_memo, 0, sizeof(pv *) * (idx + 1 - u->n_memo));
        u->n_memo = idx + 1;
    }
    u->memo[idx] = v;
    return 0;
}

static int memo_get(up *u, size_t pos, uint64_t idx) {
    if (idx >= u->n_memo || !u->memo[idx])
        return bad(u, pos, "memo index %llu was never stored", (unsigned long long)idx);
    return push(u, u->memo[idx]);
}

/* Runs one pickle from buf[0..n): *out is its value, *used the bytes read. */
static int unpickle(up *u, const uint8_t *buf, size_t n, pv **out, size_t *used) {
    const uint8_t *p = buf, *end = buf + n;
    u->sp = 0;
    u->n_marks = 0;
    u->n_memo = 0;
    u->memo_limit = n + 1;   /* every memo entry costs at least a byte of pickle */
#define NEED(k)                                                                                            \
    do {                                                                                                   \
        if ((size_t)(end - p) < (size_t)(k)) return bad(u, pos, "truncated pickle (opcode 0x%02x)", op); \
    } while (0)
    while (p < end) {
        size_t pos = (size_t)(p - buf);
        uint8_t op = *p++;
        pv *v = NULL, *a = NULL, *b = NULL;
        size_t start = 0, len = 0;
        const uint8_t *s = NULL;
        switch (op) {
        case 0x80:   /* PROTO */
            NEED(1);
            if (p[0] > 5) return bad(u, pos, "pickle protocol %d is not supported", p[0]);
            p++;
            break;
        case 0x95:   /* FRAME */
            NEED(8);
            p += 8;
            break;
        case '.':    /* STOP */
            if (!(v = pop(u, pos))) return -1;
            *out = v;
            *used = (size_t)(p - buf);
            return 0;
        case '(':    /* MARK */
            if (grow((void **)&u->marks, &u->cap_marks, u->n_marks + 1, sizeof(size_t)) != 0) return oom(u);
            u->marks[u->n_marks++] = u->sp;
            break;
        case '0':    /* POP */
            if (!pop(u, pos)) return -1;
            break;
        case '1':    /* POP_MARK */
            if (pop_mark(u, pos, &start) != 0) return -1;
            u->sp = start;
            break;
        case '2':    /* DUP */
            if (!(v = top(u, pos)) || push(u, v) != 0) return -1;
            break;
        case 'N':
            if (push(u, pv_new(u, V_NONE)) != 0) return -1;
            break;
        case 0x88:   /* NEWTRUE */
        case 0x89:   /* NEWFALSE */
            if (!(v = pv_new(u, V_BOOL))) return -1;
            v->i = op == 0x88;
            if (push(u, v) != 0) return -1;
            break;
        case 'J':    /* BININT */
            NEED(4);
            if (push(u, make_int(u, (int32_t)(uint32_t)rd_le(p, 4))) != 0) return -1;
            p += 4;
            break;
        case 'K':    /* BININT1 */
            NEED(1);
            if (push(u, make_int(u, p[0])) != 0) return -1;
            p += 1;
            break;
        case 'M':    /* BININT2 */
            NEED(2);
            if (push(u, make_int(u, rd_le(p, 2))) != 0) return -1;
            p += 2;
            break;
        case 0x8a:   /* LONG1 */
        case 0x8b: { /* LONG4 */
            int w = op == 0x8a ? 1 : 4;
            NEED(w);
            uint64_t k = (uint64_t)rd_le(p, w);
            p += w;
            NEED(k);
            int64_t x = 0;
            if (k > 8) {
                /* only values that fit int64 (e.g. the legacy magic number, which is
                 * checked by its bytes) are kept exactly; others saturate */
                x = (p[k - 1] & 0x80) ? INT64_MIN : INT64_MAX;
                if (k == 10 && !memcmp(p, "\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10))
                    x = 0x1950a86a20f9469cLL;   /* legacy MAGIC_NUMBER, truncated to its top 64 bits */
            } else if (k > 0) {
                x = rd_le(p, (int)k);
                if (k < 8 && (p[k - 1] & 0x80)) x -= (int64_t)1 << (8 * k);   /* sign */
            }
            p += k;
            if (push(u, make_int(u, x)) != 0) return -1;
            break;
        }
        case 'I':    /* INT (text) */
        case 'L': {  /* LONG (text) */
            if (read_line(u, &p, end, pos, &s, &len) != 0) return -1;
            char tmp[32];
            if (len == 0 || len >= sizeof tmp) return bad(u, pos, "bad text integer");
            memcpy(tmp, s, len);
            tmp[len] = 0;
            if (op == 'I' && (!strcmp(tmp, "00") || !strcmp(tmp, "01"))) {
                if (!(v = pv_new(u, V_BOOL))) return -1;
                v->i = tmp[1] == '1';
            } else {
                if (tmp[len - 1] == 'L') tmp[len - 1] = 0;
                char *e;
                errno = 0;
                long long x = strtoll(tmp, &e, 10);
                if (*e || errno) return bad(u, pos, "bad text integer '%s'", tmp);
                if (!(v = make_int(u, x))) return -1;
            }
            if (push(u, v) != 0) return -1;
            break;
        }
        case 'G': {  /* BINFLOAT, big-endian */
            NEED(8);
            uint64_t bits = 0;
            for (int j = 0; j < 8; j++) bits = (bits << 8) | p[j];
            p += 8;
            if (!(v = pv_new(u, V_FLOAT))) return -1;
            memcpy(&v->f, &bits, 8);
            if (push(u, v) != 0) return -1;
            break;
        }
        case 'F': {  /* FLOAT (text) */
            if (read_line(u, &p, end, pos, &s, &len) != 0) return -1;
            char tmp[64];
            if (len == 0 || len >= sizeof tmp) return bad(u, pos, "bad text float");
            memcpy(tmp, s, len);
            tmp[len] = 0;
            if (!(v = pv_new(u, V_FLOAT))) return -1;
            v->f = strtod(tmp, NULL);
            if (push(u, v) != 0) return -1;
            break;
        }
        case 'X':    /* BINUNICODE */
        case 0x8c:   /* SHORT_BINUNICODE */
        case 0x8d:   /* BINUNICODE8 */
        case 'T':    /* BINSTRING */
        case 'U':    /* SHORT_BINSTRING */
        case 'B':    /* BINBYTES */
        case 'C':    /* SHORT_BINBYTES */
        case 0x8e: { /* BINBYTES8 */
            int w = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
            NEED(w);
            uint64_t k = (uint64_t)rd_le(p, w);
            p += w;
            NEED(k);
            vkind kind = (op == 'B' || op == 'C' || op == 0x8e) ? V_BYTES : V_STR;
            if (push(u, make_str(u, kind, p, (size_t)k)) != 0) return -1;
            p += k;
            break;
        }
        case ')':    /* EMPTY_TUPLE */
            if (push(u, pv_new(u, V_TUPLE)) != 0) return -1;
            break;
        case 0x85:   /* TUPLE1 */
        case 0x86:   /* TUPLE2 */
        case 0x87: { /* TUPLE3 */
            int k = op - 0x84;
            pv *it[3];
            for (int j = k - 1; j >= 0; j--)
                if (!(it[j] = pop(u, pos))) return -1;
            if (!(v = pv_new(u, V_TUPLE))) return -1;
            for (int j = 0; j < k; j++)
                if (pv_push_item(u, v, it[j]) != 0) return -1;
            if (push(u, v) != 0) return -1;
            break;
        }
        case 't':    /* TUPLE */
        case 'l':    /* LIST */
        case 0x91:   /* FROZENSET */
            if (pop_mark(u, pos, &start) != 0) return -1;
            if (!(v = pv_new(u, op == 't' ? V_TUPLE : V_LIST))) return -1;
            for (size_t j = start; j < u->sp; j++)
                if (pv_push_item(u, v, u->stack[j]) != 0) return -1;
            u->sp = start;
            if (push(u, v) != 0) return -1;
            break;
        case ']':    /* EMPTY_LIST */
        case 0x8f:   /* EMPTY_SET: a list is enough to read one */
            if (push(u, pv_new(u, V_LIST)) != 0) return -1;
            break;
        case 'a':    /* APPEND */
            if (!(b = pop(u, pos)) || !(a = top(u, pos))) return -1;
            if (a->k != V_LIST) return bad(u, pos, "APPEND to a %s", vkind_name[a->k]);
            if (pv_push_item(u, a, b) != 0) return -1;
            break;
        case 'e':    /* APPENDS */
        case 0x90:   /* ADDITEMS */
            if (pop_mark(u, pos, &start) != 0) return -1;
            if (start == 0 || u->stack[start - 1]->k != V_LIST) return bad(u, pos, "APPENDS without a list");
            for (size_t j = start; j < u->sp; j++)
                if (pv_push_item(u, u->stack[start - 1], u->stack[j]) != 0) return -1;
            u->sp = start;
            break;
        case '}':    /* EMPTY_DICT */
            if (push(u, pv_new(u, V_DICT)) != 0) return -1;
            break;
        case 'd':    /* DICT */
            if (pop_mark(u, pos, &start) != 0) return -1;
            if ((u->sp - start) % 2) return bad(u, pos, "DICT with an odd number of items");
            if (!(v = pv_new(u, V_DICT))) return -1;
            for (size_t j = start; j < u->sp; j += 2)
                if (dict_set(u, v, u->stack[j], u->stack[j + 1]) != 0) return -1;
            u->sp = start;
            if (push(u, v) != 0) return -1;
            break;
        case 's':    /* SETITEM */
            if (!(b = pop(u, pos)) || !(a = pop(u, pos)) || !(v = top(u, pos))) return -1;
            if (v->k != V_DICT) return bad(u, pos, "SETITEM on a %s", vkind_name[v->k]);
            if (dict_set(u, v, a, b) != 0) return -1;
            break;
        case 'u':    /* SETITEMS */
            if (pop_mark(u, pos, &start) != 0) return -1;
            if (start == 0 || u->stack[start - 1]->k != V_DICT) return bad(u, pos, "SETITEMS without a dict");
            if ((u->sp - start) % 2) return bad(u, pos, "SETITEMS with an odd number of items");
            for (size_t j = start; j < u->sp; j += 2)
                if (dict_set(u, u->stack[start - 1], u->stack[j], u->stack[j + 1]) != 0) return -1;
            u->sp = start;
            break;
        case 'c': {  /* GLOBAL "module\nname\n" */
            const uint8_t *m = NULL, *nm = NULL;
            size_t ml = 0, nl = 0;
            if (read_line(u, &p, end, pos, &m, &ml) != 0 || read_line(u, &p, end, pos, &nm, &nl) != 0) return -1;
            if (push(u, make_global(u, pos, (const char *)m, ml, (const char *)nm, nl)) != 0) return -1;
            break;
        }
        case 0x93:   /* STACK_GLOBAL */
            if (!(b = pop(u, pos)) || !(a = pop(u, pos))) return -1;
            if (a->k != V_STR || b->k != V_STR) return bad(u, pos, "STACK_GLOBAL on non-strings");
            if (push(u, make_global(u, pos, a->s, a->len, b->s, b->len)) != 0) return -1;
            break;
        case 'R':    /* REDUCE */
        case 0x81:   /* NEWOBJ */
            if (!(b = pop(u, pos)) || !(a = pop(u, pos))) return -1;
            if (push(u, call(u, pos, a, b)) != 0) return -1;
            break;
        case 'b':    /* BUILD: state of an OrderedDict (_metadata) or a parameter; not applied */
            if (!(b = pop(u, pos)) || !(a = top(u, pos))) return -1;
            if (a->k != V_DICT && a->k != V_TENSOR) return bad(u, pos, "BUILD on a %s", vkind_name[a->k]);
            break;
        case 'Q':    /* BINPERSID */
            if (!(a = pop(u, pos))) return -1;
            if (push(u, persistent_load(u, pos, a)) != 0) return -1;
            break;
        case 'q':    /* BINPUT */
        case 'r':    /* LONG_BINPUT */
            NEED(op == 'q' ? 1 : 4);
            if (!(v = top(u, pos)) || memo_put(u, pos, (uint64_t)rd_le(p, op == 'q' ? 1 : 4), v) != 0) return -1;
            p += op == 'q' ? 1 : 4;
            break;
        case 0x94:   /* MEMOIZE */
            if (!(v = top(u, pos)) || memo_put(u, pos, u->n_memo, v) != 0) return -1;
            break;
        case 'p':    /* PUT (text) */
        case 'g': {  /* GET (text) */
            if (read_line(u, &p, end, pos, &s, &len) != 0) return -1;
            char tmp[24];
            if (len == 0 || len >= sizeof tmp) return bad(u, pos, "bad memo index");
            memcpy(tmp, s, len);
            tmp[len] = 0;
            char *e;
            unsigned long long idx = strtoull(tmp, &e, 10);
            if (*e) return bad(u, pos, "bad memo index '%s'", tmp);
            if (op == 'g') {
                if (memo_get(u, pos, idx) != 0) return -1;
            } else if (!(v = top(u, pos)) || memo_put(u, pos, idx, v) != 0) return -1;
            break;
        }
        case 'h':    /* BINGET */
        case 'j':    /* LONG_BINGET */
            NEED(op == 'h' ? 1 : 4);
            if (memo_get(u, pos, (uint64_t)rd_le(p, op == 'h' ? 1 : 4)) != 0) return -1;
            p += op == 'h' ? 1 : 4;
            break;
        case 'i': case 'o': case 0x92: case 0x82: case 0x83: case 0x84: case 'P':
            return md_failc(u->err, MD_ERR_CONFIG,
                            "%s: refusing to load: %s (byte %zu) uses pickle opcode 0x%02x (INST/OBJ/NEWOBJ_EX/EXT/"
                            "PERSID), which builds arbitrary objects; nothing in the file was executed",
                            u->path, u->what, pos, op);
        default:
            return bad(u, pos, "unknown or unsupported pickle opcode 0x%02x", op);
        }
    }
#undef NEED
    return bad(u, n, "the pickle ends without STOP (truncated file?)");
}

/* ------------------------------------------------------------ tensors -- */

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
    if (e == 0) {
        if (!m) bits = sign;
        else {   /* subnormal: normalise */
            e = 127 - 15 + 1;
            while (!(m & 0x400)) {
                m <<= 1;
                e--;
            }
            bits = sign | (e << 23) | ((m & 0x3ff) << 13);
        }
    } else if (e == 31) bits = sign | 0x7f800000u | (m << 13);
    else bits = sign | ((e + 127 - 15) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Element j of storage s (unaligned-safe), written as the output dtype. */
static void convert(torch_dt dt, const uint8_t *src, void *dst) {
    switch (dt) {
    case T_F32: memcpy(dst, src, 4); break;
    case T_F64: { double d; memcpy(&d, src, 8); float f = (float)d; memcpy(dst, &f, 4); break; }
    case T_F16: { uint16_t h; memcpy(&h, src, 2); float f = f16_to_f32(h); memcpy(dst, &f, 4); break; }
    case T_BF16: { uint32_t b = (uint32_t)(src[0] | (src[1] << 8)) << 16; memcpy(dst, &b, 4); break; }
    case T_I64: memcpy(dst, src, 8); break;
    case T_I32: memcpy(dst, src, 4); break;
    case T_I16: { int16_t x; memcpy(&x, src, 2); int32_t y = x; memcpy(dst, &y, 4); break; }
    case T_I8: { int32_t y = (int8_t)src[0]; memcpy(dst, &y, 4); break; }
    case T_U8: *(uint8_t *)dst = src[0]; break;
    case T_BOOL: *(uint8_t *)dst = src[0] != 0; break;
    default: break;
    }
}

/* A contiguous copy of tensor t in its output dtype (malloc'ed). */
static int materialize(const char *path, const char *name, const pv *t, void **out, md_error *err) {
    const pv *st = t->storage;
    torch_dt dt = (torch_dt)st->i;
    uint64_t es = (uint64_t)tdt[dt].size, avail = st->nbytes / es;
    const uint64_t lim = (uint64_t)1 << 40;
    uint64_t numel = 1, extent = (uint64_t)t->offset;
    for (int d = 0; d < t->ndim; d++) {
        if ((uint64_t)t->size[d] > lim || (uint64_t)t->stride[d] > lim)
            return md_failc(err, MD_ERR_PARSE, "%s: tensor '%s': size or stride out of range", path, name);
        numel *= (uint64_t)t->size[d];
        if (numel > lim) return md_failc(err, MD_ERR_PARSE, "%s: tensor '%s' is too large", path, name);
    }
    if (numel) {
        bool ovf = (uint64_t)t->offset > lim;
        for (int d = 0; d < t->ndim; d++) {
            uint64_t span;
            ovf |= __builtin_mul_overflow((uint64_t)(t->size[d] - 1), (uint64_t)t->stride[d], &span);
            ovf |= __builtin_add_overflow(extent, span, &extent);
        }
        if (ovf || extent >= avail)
            return md_failc(err, MD_ERR_PARSE,
                            "%s: tensor '%s' reads element %llu of storage '%s', which holds %llu elements "
                            "(truncated or corrupt file)",
                            path, name, (unsigned long long)extent, st->s, (unsigned long long)avail);
    }
    size_t os = md_dtype_size(tdt[dt].out);
    uint8_t *dst = malloc(numel * os + 1);
    if (!dst) return md_failc(err, MD_ERR_NOMEM, "%s: out of memory for tensor '%s'", path, name);
    bool contiguous = true;
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->size[d] != 1 && t->stride[d] != expect) contiguous = false;
        expect *= t->size[d];
    }
    const uint8_t *base = st->data + (uint64_t)t->offset * es;
    if (contiguous && tdt[dt].out == MD_F32 && dt == T_F32) memcpy(dst, base, numel * 4);
    else if (contiguous && (dt == T_I64 || dt == T_I32 || dt == T_U8)) memcpy(dst, base, numel * es);
    else {
        int64_t idx[MD_MAX_DIMS] = { 0 };
        uint64_t off = 0;
        for (uint64_t j = 0; j < numel; j++) {
            convert(dt, base + off * es, dst + j * os);
            for (int d = t->ndim - 1; d >= 0; d--) {   /* odometer over the sizes */
                off += (uint64_t)t->stride[d];
                if (++idx[d] < t->size[d]) break;
                off -= (uint64_t)t->stride[d] * (uint64_t)t->size[d];
                idx[d] = 0;
            }
        }
    }
    *out = dst;
    return 0;
}

/* -------------------------------------------------------------- JSON -- */

typedef struct sbuf { char *s; size_t n, cap; bool oom; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (grow((void **)&b->s, &b->cap, b->n + n + 1, 1) != 0) {
        b->oom = true;
        return;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_json_str(sbuf *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    for (size_t j = 0; j < n; j++) {
        unsigned char c = (unsigned char)s[j];
        char tmp[8];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            sb_put(b, tmp, 2);
        } else if (c < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            sb_put(b, tmp, 6);
        } else sb_put(b, (const char *)&c, 1);
    }
    sb_put(b, "\"", 1);
}

/* Python's json.dumps of plain values (tuples as lists); cycles and deep
 * nesting end as null. */
static void sb_json(sbuf *b, const pv *v, int depth) {
    char tmp[64];
    if (depth > 32) {
        sb_str(b, "null");
        return;
    }
    switch (v->k) {
    case V_BOOL: sb_str(b, v->i ? "true" : "false"); break;
    case V_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v->i); sb_str(b, tmp); break;
    case V_FLOAT:
        if (isfinite(v->f)) {
            snprintf(tmp, sizeof tmp, "%.17g", v->f);
            sb_str(b, tmp);
        } else sb_str(b, "null");
        break;
    case V_STR: sb_json_str(b, v->s, v->len); break;
    case V_TUPLE:
    case V_LIST:
        sb_str(b, "[");
        for (int j = 0; j < v->n; j++) {
            if (j) sb_str(b, ", ");
            sb_json(b, v->items[j], depth + 1);
        }
        sb_str(b, "]");
        break;
    case V_DICT:
        sb_str(b, "{");
        for (int j = 0; j < v->n; j += 2) {
            if (j) sb_str(b, ", ");
            const pv *k = v->items[j];
            if (k->k == V_STR) sb_json_str(b, k->s, k->len);
            else {
                sbuf kb = { 0 };
                sb_json(&kb, k, depth + 1);
                sb_json_str(b, kb.s ? kb.s : "", kb.n);
                b->oom |= kb.oom;
                free(kb.s);
            }
            sb_str(b, ": ");
            sb_json(b, v->items[j + 1], depth + 1);
        }
        sb_str(b, "}");
        break;
    default: sb_str(b, "null"); break;
    }
}

/* ---------------------------------------------------------- the result -- */

static md_st *to_st(const char *path, pv *root, md_error *err) {
    if (root->k != V_DICT)
        return md_failc(err, MD_ERR_PARSE, "%s: the file holds a %s, not a dict (a state_dict or a checkpoint)",
                        path, vkind_name[root->k]), NULL;
    pv *sd = dict_get(root, "state_dict");
    if (!sd || sd->k != V_DICT) sd = dict_get(root, "model");
    if (!sd || sd->k != V_DICT) sd = root;
    md_st *st = md__st_new_mem(path, err);
    if (!st) return NULL;
    char name[1024];
    for (int j = 0; j < sd->n; j += 2) {
        pv *k = sd->items[j], *v = sd->items[j + 1];
        if (k->k != V_STR || v->k != V_TENSOR) continue;
        snprintf(name, sizeof name, "%s", k->s);
        void *data = NULL;
        if (materialize(path, name, v, &data, err) != 0 ||
            md__st_add_owned(st, name, tdt[v->storage->i].out, v->ndim, v->size, data, err) != 0) {
            md_st_close(st);
            return NULL;
        }
    }
    pv *meta = dict_get(root, "meta");
    for (int j = 0; meta && meta->k == V_DICT && j < meta->n; j += 2) {
        pv *k = meta->items[j], *v = meta->items[j + 1];
        if (k->k != V_STR) continue;
        sbuf b = { 0 };
        if (v->k == V_STR) sb_put(&b, v->s, v->len);
        else sb_json(&b, v, 0);
        int rc = b.oom ? md_failc(err, MD_ERR_NOMEM, "%s: out of memory", path)
                       : md__st_add_meta(st, k->s, b.s ? b.s : "", err);
        free(b.s);
        if (rc != 0) {
            md_st_close(st);
            return NULL;
        }
    }
    return st;
}

/* --------------------------------------------------------------- zip -- */

typedef struct zentry { const char *name; size_t nlen; const uint8_t *data; uint64_t size; } zentry;

typedef struct zipf { zentry *e; size_t n; } zipf;

static uint64_t le(const uint8_t *p, int n) { return (uint64_t)rd_le(p, n); }

static int zip_read(const char *path, const uint8_t *m, size_t size, zipf *z, md_error *err) {
#define ZBAD(...) return md_failc(err, MD_ERR_PARSE, __VA_ARGS__)
    if (size < 22) ZBAD("%s: too short for a zip archive (%zu bytes; truncated?)", path, size);
    size_t eocd = SIZE_MAX;
    for (size_t i = size - 22 + 1; i-- > 0 && size - i <= 22 + 65535;)
        if (le(m + i, 4) == 0x06054b50) {
            eocd = i;
            break;
        }
    if (eocd == SIZE_MAX)
        ZBAD("%s: no zip end-of-central-directory record: the archive is truncated or not a zip", path);
    uint64_t count = le(m + eocd + 10, 2), cd_size = le(m + eocd + 12, 4), cd_off = le(m + eocd + 16, 4);
    if ((count == 0xffff || cd_size == 0xffffffff || cd_off == 0xffffffff) && eocd >= 20 &&
        le(m + eocd - 20, 4) == 0x07064b50) {   /* zip64 */
        uint64_t e64 = le(m + eocd - 20 + 8, 8);
        if (e64 > size - 56 || le(m + e64, 4) != 0x06064b50) ZBAD("%s: bad zip64 end record", path);
        count = le(m + e64 + 32, 8);
        cd_size = le(m + e64 + 40, 8);
        cd_off = le(m + e64 + 48, 8);
    }
    if (cd_off > size || cd_size > size - cd_off || count > cd_size / 46 + 1)
        ZBAD("%s: the zip central directory lies outside the file (truncated?)", path);
    z->e = calloc(count + 1, sizeof *z->e);
    if (!z->e) return md_failc(err, MD_ERR_NOMEM, "%s: out of memory", path);
    const uint8_t *p = m + cd_off, *end = m + cd_off + cd_size;
    for (uint64_t i = 0; i < count; i++) {
        if (end - p < 46 || le(p, 4) != 0x02014b50) ZBAD("%s: corrupt zip central directory (entry %llu)", path,
                                                          (unsigned long long)i);
        uint64_t flags = le(p + 8, 2), method = le(p + 10, 2), csize = le(p + 20, 4), usize = le(p + 24, 4);
        uint64_t nlen = le(p + 28, 2), elen = le(p + 30, 2), clen = le(p + 32, 2), loff = le(p + 42, 4);
        if ((uint64_t)(end - p) < 46 + nlen + elen + clen) ZBAD("%s: corrupt zip central directory", path);
        const char *name = (const char *)p + 46;
        const uint8_t *x = p + 46 + nlen, *xe = x + elen;
        while (xe - x >= 4) {   /* zip64 extra field: the saturated values, in order */
            uint64_t id = le(x, 2), sz = le(x + 2, 2);
            const uint8_t *q = x + 4;
            if ((uint64_t)(xe - q) < sz) break;
            if (id == 1) {
                const uint8_t *qe = q + sz;
                if (usize == 0xffffffff && qe - q >= 8) usize = le(q, 8), q += 8;
                if (csize == 0xffffffff && qe - q >= 8) csize = le(q, 8), q += 8;
                if (loff == 0xffffffff && qe - q >= 8) loff = le(q, 8), q += 8;
            }
            x += 4 + sz;
        }
        if (flags & 1) ZBAD("%s: zip entry %.*s is encrypted", path, (int)nlen, name);
        if (method != 0 || csize != usize)
            ZBAD("%s: zip entry %.*s is compressed (method %llu); torch.save stores entries uncompressed", path,
                 (int)nlen, name, (unsigned long long)method);
        if (loff > size || size - loff < 30 || le(m + loff, 4) != 0x04034b50)
            ZBAD("%s: zip entry %.*s: local header outside the file (truncated?)", path, (int)nlen, name);
        uint64_t data = loff + 30 + le(m + loff + 26, 2) + le(m + loff + 28, 2);
        if (data > size || usize > size - data)
            ZBAD("%s: zip entry %.*s (%llu bytes) runs past the end of the file (truncated?)", path, (int)nlen,
                 name, (unsigned long long)usize);
        z->e[z->n++] = (zentry){ name, nlen, m + data, usize };
        p += 46 + nlen + elen + clen;
    }
    return 0;
#undef ZBAD
}

static const zentry *zip_find(const zipf *z, const char *prefix, size_t pl, const char *rest) {
    size_t rl = strlen(rest);
    for (size_t i = 0; i < z->n; i++)
        if (z->e[i].nlen == pl + rl && !memcmp(z->e[i].name, prefix, pl) && !memcmp(z->e[i].name + pl, rest, rl))
            return &z->e[i];
    return NULL;
}

static md_st *read_zip(const char *path, const uint8_t *m, size_t size, md_error *err) {
    zipf z = { 0 };
    md_st *st = NULL;
    up u = { .path = path, .what = "data.pkl", .err = err };
    if (zip_read(path, m, size, &z, err) != 0) goto done;
    const zentry *pkl = NULL;
    size_t pl = 0;
    for (size_t i = 0; i < z.n && !pkl; i++) {   /* <archive>/data.pkl at the top level */
        const zentry *e = &z.e[i];
        if (e->nlen >= 9 && !memcmp(e->name + e->nlen - 9, "/data.pkl", 9) &&
            !memchr(e->name, '/', e->nlen - 9)) {
            pkl = e;
            pl = e->nlen - 8;
        }
    }
    if (!pkl) {
        md_failc(err, MD_ERR_PARSE, "%s: a zip archive without <name>/data.pkl: not a torch.save file", path);
        goto done;
    }
    const zentry *bo = zip_find(&z, pkl->name, pl, "byteorder");
    if (bo && !(bo->size == 6 && !memcmp(bo->data, "little", 6))) {
        md_failc(err, MD_ERR_PARSE, "%s: big-endian storages are not supported", path);
        goto done;
    }
    if (zip_find(&z, pkl->name, pl, "constants.pkl")) {
        md_failc(err, MD_ERR_CONFIG, "%s: a TorchScript archive (torch.jit.save), not a torch.save state dict",
                 path);
        goto done;
    }
    pv *root;
    size_t used;
    if (unpickle(&u, pkl->data, (size_t)pkl->size, &root, &used) != 0) goto done;
    char rest[600];
    for (size_t i = 0; i < u.n_storages; i++) {
        pv *s = u.storages[i];
        snprintf(rest, sizeof rest, "data/%s", s->s);
        const zentry *e = strlen(s->s) < 500 ? zip_find(&z, pkl->name, pl, rest) : NULL;
        if (!e) {
            md_failc(err, MD_ERR_PARSE, "%s: storage '%s' is missing from the archive (%.*s%s)", path, s->s,
                     (int)pl, pkl->name, rest);
            goto done;
        }
        s->data = e->data;
        s->nbytes = e->size;   /* the entry's real size bounds every tensor on it */
        s->resolved = true;
    }
    st = to_st(path, root, err);
done:
    up_free(&u);
    free(z.e);
    return st;
}

/* ----------------------------------------------------------- legacy -- */

static md_st *read_legacy(const char *path, const uint8_t *m, size_t size, md_error *err) {
    up u = { .path = path, .err = err, .legacy = true };
    md_st *st = NULL;
    size_t off = 0, used;
    pv *v, *root;
    u.what = "magic number";
    if (unpickle(&u, m, size, &v, &used) != 0) goto done;
    if (v->k != V_INT || v->i != 0x1950a86a20f9469cLL) {
        md_failc(err, MD_ERR_PARSE, "%s: not a torch.save file (a pickle without torch's magic number)", path);
        goto done;
    }
    off += used;
    u.what = "protocol version";
    if (unpickle(&u, m + off, size - off, &v, &used) != 0) goto done;
    if (v->k != V_INT || v->i != 1001) {
        md_failc(err, MD_ERR_PARSE, "%s: unsupported legacy torch.save protocol version", path);
        goto done;
    }
    off += used;
    u.what = "sys_info";
    if (unpickle(&u, m + off, size - off, &v, &used) != 0) goto done;
    pv *le_ = dict_get(v, "little_endian");
    if (!le_ || le_->k != V_BOOL || !le_->i) {
        md_failc(err, MD_ERR_PARSE, "%s: written on a big-endian machine; not supported", path);
        goto done;
    }
    off += used;
    u.what = "the main pickle";
    if (unpickle(&u, m + off, size - off, &root, &used) != 0) goto done;
    off += used;
    u.what = "storage keys";
    size_t n_st = u.n_storages;   /* storages of the main pickle only */
    if (unpickle(&u, m + off, size - off, &v, &used) != 0) goto done;
    off += used;
    if (v->k != V_LIST) {
        md_failc(err, MD_ERR_PARSE, "%s: the legacy storage key list is a %s", path, vkind_name[v->k]);
        goto done;
    }
    for (int k = 0; k < v->n; k++) {
        pv *key = v->items[k];
        pv *s = NULL;
        for (size_t i = 0; i < n_st; i++)
            if (key->k == V_STR && !strcmp(u.storages[i]->s, key->s)) s = u.storages[i];
        if (!s) {
            md_failc(err, MD_ERR_PARSE, "%s: legacy storage key %d names no storage of the pickle", path, k);
            goto done;
        }
        if (size - off < 8) {
            md_failc(err, MD_ERR_PARSE, "%s: truncated file: storage '%s' is missing", path, s->s);
            goto done;
        }
        uint64_t numel = le(m + off, 8), es = (uint64_t)tdt[s->i].size;
        off += 8;
        if (numel > (size - off) / es) {
            md_failc(err, MD_ERR_PARSE, "%s: truncated file: storage '%s' needs %llu bytes, %zu are left", path,
                     s->s, (unsigned long long)(numel * es), size - off);
            goto done;
        }
        for (size_t i = 0; i < n_st; i++)   /* several ids may name one storage */
            if (!strcmp(u.storages[i]->s, s->s)) {
                u.storages[i]->data = m + off;
                u.storages[i]->nbytes = numel * es;
                u.storages[i]->resolved = true;
            }
        off += numel * es;
    }
    for (size_t i = 0; i < n_st; i++)
        if (!u.storages[i]->resolved) {
            md_failc(err, MD_ERR_PARSE, "%s: storage '%s' has no data in the file", path, u.storages[i]->s);
            goto done;
        }
    st = to_st(path, root, err);
done:
    up_free(&u);
    return st;
}

/* ------------------------------------------------------------ public -- */

/* torch.save's first bytes: a zip's local header, or (legacy) PROTO n and
 * LONG1 with torch's 10-byte magic number. A safetensors file starts with
 * its header length, which can begin 0x80 0x02 but never continues so. */
static bool is_zip(const uint8_t *b, size_t n) { return n >= 4 && !memcmp(b, "PK\3\4", 4); }
static bool is_legacy(const uint8_t *b, size_t n) {
    return n >= 14 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5 &&
           !memcmp(b + 2, "\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 12);
}

MD_API md_st *md_pth_open(const char *path, md_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        md_failc(err, MD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < 4) {
        close(fd);
        md_failc(err, MD_ERR_PARSE, "%s: too short to be a torch.save file (truncated?)", path);
        return NULL;
    }
    size_t size = (size_t)sb.st_size;
    uint8_t *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        md_failc(err, MD_ERR_IO, "cannot map %s: %s", path, strerror(errno));
        return NULL;
    }
    md_st *st;
    if (is_zip(m, size)) st = read_zip(path, m, size, err);
    else if (is_legacy(m, size)) st = read_legacy(path, m, size, err);
    else {
        md_failc(err, MD_ERR_PARSE, "%s: not a torch.save file (neither a zip archive nor a pickle)", path);
        st = NULL;
    }
    munmap(m, size);   /* tensors were copied out */
    return st;
}

MD_API bool md_pth_sniff(const char *path) {
    uint8_t b[14] = { 0 };
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    return is_zip(b, n) || is_legacy(b, n);
}

MD_API md_st *md_pth_open_weights(const char *path, md_error *err) {
    if (md_pth_sniff(path)) return md_pth_open(path, err);
    /* a pickle protocol 2-5 header that is not torch.save's: pickle.dump of a
     * dict, which holds no tensor storage to read */
    uint8_t b[2] = { 0 };
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(b, 1, 2, f) : 0;
    if (f) fclose(f);
    if (n == 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5) {
        md_failc(err, MD_ERR_PARSE, "%s: a plain Python pickle, not a torch.save checkpoint nor safetensors: "
                 "save the state dict with torch.save", path);
        return NULL;
    }
    return md_st_open(path, err);
}
