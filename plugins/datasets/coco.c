#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* memmem */
#endif
/* CocoDataset: COCO-format detection annotations, parsed by a streaming
 * JSON parser (yajl callbacks) that keeps only the fields detection needs
 * and where each segmentation lies in the file, read when a mask is
 * needed. mmdet 2.x semantics:
 *  - labels follow the JSON `categories` order, restricted to the names in
 *    CLASSES (pycocotools' getCatIds(catNms=CLASSES));
 *  - images keep the JSON order; training drops images without an
 *    annotation of a selected class (filter_empty_gt) and images whose
 *    shorter side is under min_size;
 *  - `ignore` annotations are skipped, boxes without area inside the image,
 *    with area <= 0 or a side < 1 are dropped (and counted), iscrowd boxes
 *    become gt_bboxes_ignore, categories not in CLASSES are skipped;
 *  - the kept (non-crowd) boxes carry their segmentations, in order
 *    (gt_masks_ann); a malformed segmentation is an error naming the
 *    file and the annotation when LoadAnnotations needs its mask;
 *  - a category id the file does not define is an error naming the
 *    annotation. */
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>
#include <mmdet/coco.h>
#include <mmdet/custom_dataset.h>

static const char *const coco_classes[] = {
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
};
#define N_COCO ((int)(sizeof coco_classes / sizeof coco_classes[0]))

/* ------------------------------------------------------------ raw records */

typedef struct { int64_t id; char *file_name; int width, height; } raw_img;
typedef struct {
    int64_t id, image_id, category_id;
    float bbox[4];
    float area;
    int nbbox;
    bool iscrowd, ignore, has_area;
    int64_t seg_off, seg_len;  /* its "segmentation" array or object: bytes of the file (len 0: none) */
} raw_ann;
typedef struct { int64_t id; char *name; } raw_cat;

enum { SEC_NONE, SEC_IMAGES, SEC_ANNS, SEC_CATS };
enum { F_NONE, F_ID, F_FILE_NAME, F_WIDTH, F_HEIGHT, F_IMAGE_ID, F_CATEGORY_ID, F_BBOX, F_AREA, F_ISCROWD,
       F_IGNORE, F_NAME };

typedef struct parse_state {
    int depth, section, field;
    bool list2;          /* the section's value (depth 2) is an array */
    bool in_rec;         /* inside a record: an object directly in that array */
    bool seg_key;        /* yajl just read the key "segmentation" of an annotation */
    char msg[160];       /* why the parse was cancelled (bad value) */
    raw_img *imgs; int64_t n_imgs, cap_imgs;
    raw_ann *anns; int64_t n_anns, cap_anns;
    raw_cat *cats; int64_t n_cats, cap_cats;
    bool oom;
} parse_state;

static int grow(void **p, int64_t *cap, int64_t need, size_t sz) {
    if (need <= *cap) return 0;
    int64_t nc = *cap ? *cap * 2 : 256;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * sz);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

/* Decimal text to double without strtod for the common case: up to 15
 * significant digits and 22 decimals is one exact integer divided by an
 * exact power of ten, correctly rounded (Clinger's fast path); *ok = false
 * for anything else. */
static double fast_double(const char *p, size_t n, bool *ok) {
    static const double p10[23] = { 1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };
    const char *e = p + n;
    bool neg = p < e && *p == '-';
    p += neg;
    uint64_t m = 0;
    int digits = 0, frac = 0;
    for (; p < e && *p >= '0' && *p <= '9'; p++, digits++) m = m * 10 + (uint64_t)(*p - '0');
    if (p < e && *p == '.')
        for (p++; p < e && *p >= '0' && *p <= '9'; p++, digits++, frac++) m = m * 10 + (uint64_t)(*p - '0');
    *ok = p == e && digits > 0 && digits <= 15;
    double v = (double)m / p10[frac <= 22 ? frac : 0];
    return neg ? -v : v;
}

/* Numbers arrive as text (yajl's number callback), so the many numbers
 * nobody reads (segmentations) are never converted. */
static int set_num(parse_state *s, const char *txt, size_t len, bool is_bool) {
    bool bbox = s->in_rec && s->section == SEC_ANNS && s->depth == 4 && s->field == F_BBOX;
    if (!bbox && !(s->in_rec && s->depth == 3)) return 1;
    if (!bbox && s->field != F_ID && s->field != F_WIDTH && s->field != F_HEIGHT && s->field != F_IMAGE_ID &&
        s->field != F_CATEGORY_ID && s->field != F_AREA && s->field != F_ISCROWD && s->field != F_IGNORE)
        return 1;
    char buf[64], *end;
    if (len >= sizeof buf) {
        snprintf(s->msg, sizeof s->msg, "number too long (%zu characters)", len);
        return 0;
    }
    memcpy(buf, txt, len);
    buf[len] = 0;
    bool fast;
    double v = fast_double(buf, len, &fast);
    if (!fast) v = strtod(buf, &end);
    if (bbox) {
        raw_ann *a = &s->anns[s->n_anns - 1];
        if (a->nbbox < 4) a->bbox[a->nbbox] = (float)v;
        a->nbbox++;
        return 1;
    }
    int64_t i;
    if (fast && !memchr(buf, '.', len)) {
        i = (int64_t)v;   /* an integer of up to 15 digits: exact */
    } else if (is_bool || (!memchr(buf, '.', len) && !memchr(buf, 'e', len) && !memchr(buf, 'E', len))) {
        errno = 0;
        i = strtoll(buf, &end, 10);
        if (errno == ERANGE) {
            snprintf(s->msg, sizeof s->msg, "integer %s out of range", buf);
            return 0;
        }
    } else if (v >= -9.2e18 && v <= 9.2e18) {
        i = (int64_t)v;
    } else if (s->field == F_AREA || s->field == F_ISCROWD || s->field == F_IGNORE) {
        i = 0;   /* unused */
    } else {
        snprintf(s->msg, sizeof s->msg, "%s is not an integer id or size", buf);
        return 0;
    }
    if ((s->field == F_WIDTH || s->field == F_HEIGHT) && (i < INT32_MIN || i > INT32_MAX)) {
        snprintf(s->msg, sizeof s->msg, "image size %s out of range", buf);
        return 0;
    }
    if (s->section == SEC_IMAGES) {
        raw_img *r = &s->imgs[s->n_imgs - 1];
        if (s->field == F_ID) r->id = i;
        else if (s->field == F_WIDTH) r->width = (int)i;
        else if (s->field == F_HEIGHT) r->height = (int)i;
    } else if (s->section == SEC_ANNS) {
        raw_ann *a = &s->anns[s->n_anns - 1];
        switch (s->field) {
        case F_ID: a->id = i; break;
        case F_IMAGE_ID: a->image_id = i; break;
        case F_CATEGORY_ID: a->category_id = i; break;
        case F_AREA: a->area = (float)v; a->has_area = true; break;
        case F_ISCROWD: a->iscrowd = v != 0; break;
        case F_IGNORE: a->ignore = v != 0; break;
        default: break;
        }
    } else if (s->section == SEC_CATS && s->field == F_ID) {
        s->cats[s->n_cats - 1].id = i;
    }
    return 1;
}

static int cb_null(void *ctx) { (void)ctx; return 1; }
static int cb_bool(void *ctx, int b) { return set_num(ctx, b ? "1" : "0", 1, true); }
static int cb_number(void *ctx, const char *txt, size_t len) { return set_num(ctx, txt, len, false); }

static int cb_string(void *ctx, const unsigned char *str, size_t len) {
    parse_state *s = ctx;
    if (s->depth != 3 || !s->in_rec) return 1;
    char **dst = NULL;
    if (s->section == SEC_IMAGES && s->field == F_FILE_NAME) dst = &s->imgs[s->n_imgs - 1].file_name;
    else if (s->section == SEC_CATS && s->field == F_NAME) dst = &s->cats[s->n_cats - 1].name;
    if (!dst) return 1;
    free(*dst);
    *dst = strndup((const char *)str, len);
    if (!*dst) s->oom = true;
    return !s->oom;
}

static int cb_start_map(void *ctx) {
    parse_state *s = ctx;
    s->depth++;
    if (s->depth == 2) s->list2 = false;
    if (s->depth == 3 && s->list2 && s->section != SEC_NONE) {
        s->field = F_NONE;
        s->in_rec = true;
        if (s->section == SEC_IMAGES) {
            if (grow((void **)&s->imgs, &s->cap_imgs, s->n_imgs + 1, sizeof *s->imgs)) return s->oom = true, 0;
            memset(&s->imgs[s->n_imgs++], 0, sizeof *s->imgs);
        } else if (s->section == SEC_ANNS) {
            if (grow((void **)&s->anns, &s->cap_anns, s->n_anns + 1, sizeof *s->anns)) return s->oom = true, 0;
            memset(&s->anns[s->n_anns], 0, sizeof *s->anns);
            s->anns[s->n_anns++].category_id = INT64_MIN;
        } else if (s->section == SEC_CATS) {
            if (grow((void **)&s->cats, &s->cap_cats, s->n_cats + 1, sizeof *s->cats)) return s->oom = true, 0;
            memset(&s->cats[s->n_cats++], 0, sizeof *s->cats);
        }
    }
    return 1;
}

static int cb_map_key(void *ctx, const unsigned char *k, size_t len) {
    parse_state *s = ctx;
#define IS(lit) (len == sizeof(lit) - 1 && !memcmp(k, lit, len))
    if (s->depth == 1) {
        s->section = IS("images") ? SEC_IMAGES : IS("annotations") ? SEC_ANNS : IS("categories") ? SEC_CATS
                                                                                                  : SEC_NONE;
    } else if (s->depth == 3 && s->in_rec) {
        s->field = IS("id") ? F_ID : IS("file_name") ? F_FILE_NAME : IS("width") ? F_WIDTH
                 : IS("height") ? F_HEIGHT : IS("image_id") ? F_IMAGE_ID : IS("category_id") ? F_CATEGORY_ID
                 : IS("bbox") ? F_BBOX : IS("area") ? F_AREA : IS("iscrowd") ? F_ISCROWD
                 : IS("ignore") ? F_IGNORE : IS("name") ? F_NAME : F_NONE;
        if (s->section == SEC_ANNS && IS("segmentation")) s->seg_key = true;
    }
#undef IS
    return 1;
}

static int cb_end(void *ctx) {
    parse_state *s = ctx;
    if (s->depth == 3) s->in_rec = false;
    s->depth--;
    return 1;
}

static int cb_start_array(void *ctx) {
    parse_state *s = ctx;
    s->depth++;
    if (s->depth == 2) s->list2 = true;
    /* A record's array of something else than bbox (segmentation) is skipped by depth. */
    return 1;
}

static const yajl_callbacks callbacks = {
    cb_null, cb_bool, NULL, NULL, cb_number, cb_string, cb_start_map, cb_map_key, cb_end, cb_start_array, cb_end,
};

static void free_raw(parse_state *s) {
    for (int64_t i = 0; i < s->n_imgs; i++) free(s->imgs[i].file_name);
    for (int64_t i = 0; i < s->n_cats; i++) free(s->cats[i].name);
    free(s->imgs);
    free(s->anns);
    free(s->cats);
}

/* ------------------------------------------------------- segmentations
 *
 * Segmentations are most of a COCO file (polygons of tens of numbers per
 * annotation) and only instance-mask training reads them. Rather than
 * lexing them token by token through yajl, an annotation's "segmentation"
 * array or object is checked by the small validating scanner below and
 * yajl is given `null` in its place: the file is still fully checked for
 * JSON syntax. The dataset keeps where the value lies in the file
 * (MD_MASK_ANN_FILE); LoadAnnotations(with_mask) reads and parses the
 * segmentations of an image when it loads it. */

enum { X_VALUE, X_VALUE_OR_CLOSE, X_KEY, X_KEY_OR_CLOSE, X_COLON, X_COMMA_OR_CLOSE };

typedef struct skipper {
    int depth;             /* open arrays/objects of the skipped value; 0: not skipping */
    uint64_t objs;         /* bit d: level d + 1 is an object */
    int expect;            /* X_* */
    bool in_str, esc, is_key;
    int hex;               /* \u digits still to come */
    int num;               /* number state (below), 0: not in a number */
    const char *lit;       /* literal being matched, and how far */
    int lit_i;
} skipper;

/* JSON number: 1 '-', 2 leading 0, 3 integer digits, 4 '.', 5 fraction,
 * 6 'e', 7 exponent sign, 8 exponent digits; -1: c ends the number. */
static int num_step(int st, int c) {
    bool d = c >= '0' && c <= '9';
    switch (st) {
    case 0: return c == '-' ? 1 : c == '0' ? 2 : d ? 3 : -1;
    case 1: return c == '0' ? 2 : d ? 3 : -1;
    case 2: return c == '.' ? 4 : (c == 'e' || c == 'E') ? 6 : -1;
    case 3: return d ? 3 : c == '.' ? 4 : (c == 'e' || c == 'E') ? 6 : -1;
    case 4: return d ? 5 : -1;
    case 5: return d ? 5 : (c == 'e' || c == 'E') ? 6 : -1;
    case 6: return (c == '+' || c == '-') ? 7 : d ? 8 : -1;
    case 7: case 8: return d ? 8 : -1;
    default: return -1;
    }
}

/* Scans p[0..n) of the value being skipped. Returns the bytes consumed: all
 * n while the value goes on, or up to its closing bracket (k->depth is then
 * 0); -1 on a syntax error at p[*at] (*why says what). */
static long skip_run(skipper *k, const unsigned char *p, size_t n, size_t *at, const char **why) {
    for (size_t i = 0; i < n; i++) {
        int c = p[i];
        *at = i;
        if (k->in_str) {
            if (k->hex) {
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
                    return *why = "bad \\u escape in a string", -1;
                k->hex--;
            } else if (k->esc) {
                k->esc = false;
                if (c == 'u') k->hex = 4;
                else if (!strchr("\"\\/bfnrt", c) || !c) return *why = "bad escape in a string", -1;
            } else if (c == '"') {
                k->in_str = false;
                k->expect = k->is_key ? X_COLON : X_COMMA_OR_CLOSE;
            } else if (c == '\\') {
                k->esc = true;
            } else if (c < 0x20) {
                return *why = "control character in a string", -1;
            }
            continue;
        }
        if (k->num) {
            int ns = num_step(k->num, c);
            if (ns > 0) {
                k->num = ns;
                if (ns == 3 || ns == 5 || ns == 8)   /* digit runs, the bulk of a polygon */
                    while (i + 1 < n && p[i + 1] >= '0' && p[i + 1] <= '9') i++;
                continue;
            }
            if (k->num != 2 && k->num != 3 && k->num != 5 && k->num != 8) return *why = "malformed number", -1;
            k->num = 0;
            k->expect = X_COMMA_OR_CLOSE;
        }
        if (k->lit) {
            if (c != k->lit[k->lit_i]) return *why = "invalid literal", -1;
            if (!k->lit[++k->lit_i]) k->lit = NULL, k->expect = X_COMMA_OR_CLOSE;
            continue;
        }
        bool value = k->expect == X_VALUE || k->expect == X_VALUE_OR_CLOSE;
        bool top_obj = k->depth > 0 && (k->objs >> (k->depth - 1) & 1);
        switch (c) {
        case ' ': case '\t': case '\n': case '\r': break;
        case '[': case '{':
            if (!value) return *why = "unexpected bracket", -1;
            if (k->depth == 64) return *why = "nested too deeply", -1;
            k->objs = (k->objs & ~(1ull << k->depth)) | ((uint64_t)(c == '{') << k->depth);
            k->depth++;
            k->expect = c == '[' ? X_VALUE_OR_CLOSE : X_KEY_OR_CLOSE;
            break;
        case ']': case '}':
            if ((c == ']') == top_obj || !(k->expect == X_COMMA_OR_CLOSE ||
                                           k->expect == (c == ']' ? X_VALUE_OR_CLOSE : X_KEY_OR_CLOSE)))
                return *why = "unexpected closing bracket", -1;
            k->expect = X_COMMA_OR_CLOSE;
            if (--k->depth == 0) return (long)i + 1;
            break;
        case ',':
            if (k->expect != X_COMMA_OR_CLOSE) return *why = "unexpected comma", -1;
            k->expect = top_obj ? X_KEY : X_VALUE;
            break;
        case ':':
            if (k->expect != X_COLON) return *why = "unexpected colon", -1;
            k->expect = X_VALUE;
            break;
        case '"':
            if (!value && k->expect != X_KEY && k->expect != X_KEY_OR_CLOSE) return *why = "unexpected string", -1;
            k->in_str = true;
            k->is_key = !value;
            break;
        case 't': case 'f': case 'n':
            if (!value) return *why = "unexpected literal", -1;
            k->lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
            k->lit_i = 1;
            break;
        default:
            if (!value || num_step(0, c) < 0) return *why = "unexpected character", -1;
            k->num = num_step(0, c);
            break;
        }
    }
    *at = n;
    return (long)n;
}

typedef struct reader {
    const char *path;
    parse_state *s;
    yajl_handle h;
    long long line, col, off;   /* of the next byte not yet accounted for */
    md_error *err;
} reader;

static void advance(reader *r, const unsigned char *p, size_t n) {
    const unsigned char *q = p, *e = p + n, *last = NULL;
    while ((q = memchr(q, '\n', (size_t)(e - q)))) r->line++, last = q++;
    r->col = last ? (long long)(e - last) : r->col + (long long)n;
    r->off += (long long)n;
}

/* yajl over p[0..n) (the bytes of the file at r's position), or the end. */
static int feed(reader *r, const unsigned char *p, size_t n, bool in_file) {
    yajl_status st = p ? yajl_parse(r->h, p, n) : yajl_complete_parse(r->h);
    if (st == yajl_status_ok) {
        if (p && in_file) advance(r, p, n);
        return 0;
    }
    size_t used = p && in_file ? yajl_get_bytes_consumed(r->h) : 0;
    if (used > n) used = n;
    if (used) advance(r, p, used);
    if (r->s->oom) return md_failc(r->err, MD_ERR_NOMEM, "out of memory parsing %s", r->path);
    if (r->s->msg[0])
        return md_failc(r->err, MD_ERR_PARSE, "%s:%lld:%lld (byte %lld): %s", r->path, r->line, r->col, r->off,
                        r->s->msg);
    unsigned char *msg = yajl_get_error(r->h, 0, NULL, 0);
    char *m = msg ? (char *)msg : "syntax error", *e;
    while ((e = strchr(m, '\n'))) *e = ' ';
    md_failc(r->err, MD_ERR_PARSE, "%s:%lld:%lld (byte %lld): JSON syntax error: %s", r->path, r->line, r->col,
             r->off, m);
    if (msg) yajl_free_error(r->h, msg);
    return -1;
}

static int parse_file(const char *path, parse_state *s, md_error *err) {
    static const char KEY[] = "\"segmentation\"";
    enum { CAP = 1 << 18, TAIL = 64 };   /* TAIL: lookahead kept for a key split across reads */
    FILE *f = fopen(path, "rb");
    if (!f) return md_failc(err, MD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    reader r = { .path = path, .s = s, .line = 1, .col = 1, .err = err };
    r.h = yajl_alloc(&callbacks, NULL, s);
    unsigned char *buf = malloc(CAP);
    if (!r.h || !buf) {
        if (r.h) yajl_free(r.h);
        free(buf);
        fclose(f);
        return md_failc(err, MD_ERR_NOMEM, "out of memory parsing %s", path);
    }
    skipper k = { 0 };
    size_t have = 0;
    int rc = 0;
    bool eof = false;
    while (!rc) {
        size_t got = fread(buf + have, 1, CAP - have, f);
        if (got == 0) {
            if (ferror(f)) {
                rc = md_failc(err, MD_ERR_IO, "error reading %s", path);
                break;
            }
            eof = true;
        }
        size_t len = have + got, pos = 0;
        while (!rc && pos < len) {
            if (k.depth) {   /* inside a skipped value */
                size_t at;
                const char *why;
                long used = skip_run(&k, buf + pos, len - pos, &at, &why);
                if (used < 0) {
                    advance(&r, buf + pos, at);
                    rc = md_failc(err, MD_ERR_PARSE, "%s:%lld:%lld (byte %lld): JSON syntax error in a segmentation: %s",
                                  path, r.line, r.col, r.off, why);
                    break;
                }
                advance(&r, buf + pos, (size_t)used);
                pos += (size_t)used;
                if (!k.depth) {
                    raw_ann *a = &s->anns[s->n_anns - 1];
                    a->seg_len = r.off - a->seg_off;
                    rc = feed(&r, (const unsigned char *)"null", 4, false);
                }
                continue;
            }
            size_t limit = eof ? len : len - pos > TAIL ? len - TAIL : pos;
            if (limit == pos) break;   /* read on */
            const unsigned char *c = memmem(buf + pos, len - pos, KEY, sizeof KEY - 1);
            size_t end = c && (size_t)(c - buf) < limit ? (size_t)(c - buf) + sizeof KEY - 1 : limit;
            if (end != limit) {   /* "segmentation", then ':' and the value? */
                size_t q = end;
                while (q < len && (buf[q] == ' ' || buf[q] == '\t' || buf[q] == '\n' || buf[q] == '\r')) q++;
                if (q < len && buf[q] == ':') {
                    size_t v = q + 1;
                    while (v < len && (buf[v] == ' ' || buf[v] == '\t' || buf[v] == '\n' || buf[v] == '\r')) v++;
                    s->seg_key = false;
                    if ((rc = feed(&r, buf + pos, q + 1 - pos, true))) break;
                    pos = q + 1;
                    /* Skip only where yajl has just read the key of an annotation. */
                    if (s->seg_key && v < len && (buf[v] == '[' || buf[v] == '{')) {
                        advance(&r, buf + pos, v - pos);
                        pos = v;
                        k = (skipper){ .expect = X_VALUE };
                        k.depth = 0;
                        /* The opening bracket starts the skip. */
                        size_t at;
                        const char *why;
                        skip_run(&k, buf + pos, 1, &at, &why);
                        s->anns[s->n_anns - 1].seg_off = r.off;
                        s->anns[s->n_anns - 1].seg_len = 0;
                        advance(&r, buf + pos, 1);
                        pos++;
                    }
                    continue;
                }
            }
            if ((rc = feed(&r, buf + pos, end - pos, true))) break;
            pos = end;
        }
        if (rc) break;
        memmove(buf, buf + pos, len - pos);
        have = len - pos;
        if (eof) {
            if (k.depth)
                rc = md_failc(err, MD_ERR_PARSE, "%s:%lld:%lld (byte %lld): JSON syntax error: the file ends inside "
                              "a segmentation", path, r.line, r.col, r.off);
            else if (have)
                rc = feed(&r, buf, have, true);
            if (!rc) rc = feed(&r, NULL, 0, false);
            break;
        }
    }
    free(buf);
    yajl_free(r.h);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------- the dataset */

typedef struct { int64_t id, idx; } id_idx;
static int cmp_id(const void *a, const void *b) {
    int64_t x = ((const id_idx *)a)->id, y = ((const id_idx *)b)->id;
    return x < y ? -1 : x > y;
}
static int64_t find_id(const id_idx *t, int64_t n, int64_t id) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (t[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && t[lo].id == id ? t[lo].idx : -1;
}

/* The images' ids are the infos' (md_img_info.id). */
typedef struct coco_ds {
    md_custom_dataset c;
    int64_t *cat_ids;          /* label -> category id */
    int n_cat_ids;
    md_coco *gt;               /* evaluation ground truth, built on first use */
} coco_ds;

static void coco_destroy(md_custom_dataset *c) {
    coco_ds *d = (coco_ds *)c;
    free(d->cat_ids);
    md_coco_free(d->gt);
}

/* mmdet's CocoDataset.get_cat_ids: the category ids of the image's loaded
 * boxes, crowd ones included. */
static int coco_get_cat_ids(const md_custom_dataset *c, int64_t idx, int64_t *ids, int cap) {
    const coco_ds *d = (const coco_ds *)c;
    if (idx < 0 || idx >= c->n) return -1;
    int k = 0;
    for (int64_t j = c->off[idx]; j < c->off[idx + 1]; j++, k++)
        if (k < cap) ids[k] = d->cat_ids[c->gt.labels[j]];
    for (int64_t j = c->ign_off[idx]; j < c->ign_off[idx + 1]; j++, k++)
        if (k < cap) ids[k] = d->cat_ids[c->ign.labels[j]];
    return k;
}

/* ------------------------------------------------------------- evaluation */

typedef struct strbuf { char *s; size_t n, cap; bool oom; } strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = true; return; }
        if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t cap = b->cap ? b->cap * 2 : 1 << 16;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) { b->oom = true; return; }
        b->s = p;
        b->cap = cap;
    }
}

static void sb_json_str(strbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') sb_printf(b, "\\%c", c);
        else if (c < 0x20) sb_printf(b, "\\u%04x", c);
        else sb_printf(b, "%c", c);
    }
    sb_printf(b, "\"");
}

/* A segmentation back to JSON, as the file gave it (a malformed one as a
 * string, which reads back as malformed). */
static void sb_segm(strbuf *b, const md_mask_ann *m) {
    if (m->kind == MD_MASK_ANN_POLYGONS) {
        sb_printf(b, "[");
        const double *xy = m->coords;
        for (int j = 0; j < m->n_polys; xy += m->poly_len[j], j++) {
            sb_printf(b, "%s[", j ? ", " : "");
            for (int i = 0; i < m->poly_len[j]; i++) sb_printf(b, "%s%.17g", i ? ", " : "", xy[i]);
            sb_printf(b, "]");
        }
        sb_printf(b, "]");
    } else if (m->kind == MD_MASK_ANN_RLE) {
        sb_printf(b, "{\"size\": [%d, %d], \"counts\": [", m->rle.h, m->rle.w);
        for (int64_t i = 0; i < m->rle.m; i++) sb_printf(b, "%s%u", i ? ", " : "", m->rle.counts[i]);
        sb_printf(b, "]}");
    } else if (m->kind == MD_MASK_ANN_INVALID) {
        sb_printf(b, "\"malformed\"");
    } else {
        sb_printf(b, "null");
    }
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}
static bool has_id(const int64_t *sorted, size_t n, int64_t id) {
    return bsearch(&id, sorted, n, sizeof id, cmp_i64) != NULL;
}

/* The ground truth mmdet's evaluate sees: the annotation file's records
 * restricted to this dataset's images and selected categories (pycocotools
 * with params.imgIds = img_ids, params.catIds = cat_ids). Read again through
 * the core's COCO loader, which keeps crowd, ignore and area exactly. */
static md_coco *eval_gt(coco_ds *d, md_error *err) {
    if (d->gt) return d->gt;
    md_coco *all = md_coco_load(d->c.ann_file, err);
    if (!all) return NULL;
    size_t ni = (size_t)d->c.n, nc = (size_t)d->n_cat_ids;
    int64_t *imgs = malloc(sizeof *imgs * (ni + 1)), *cats = malloc(sizeof *cats * (nc + 1));
    strbuf b = { 0 };
    if (!imgs || !cats) b.oom = true;
    else {
        for (size_t i = 0; i < ni; i++) imgs[i] = d->c.infos[i].id;
        memcpy(cats, d->cat_ids, sizeof *cats * nc);
        qsort(imgs, ni, sizeof *imgs, cmp_i64);
        qsort(cats, nc, sizeof *cats, cmp_i64);
    }
    sb_printf(&b, "{\"images\": [");
    int k = 0;
    for (size_t i = 0; !b.oom && i < all->n_images; i++) {
        const md_coco_image *im = &all->images[i];
        if (!has_id(imgs, ni, im->id)) continue;
        sb_printf(&b, "%s{\"id\": %lld, \"width\": %d, \"height\": %d, \"file_name\": ", k++ ? ", " : "",
                  (long long)im->id, (int)im->width, (int)im->height);
        sb_json_str(&b, im->file_name);
        sb_printf(&b, "}");
    }
    sb_printf(&b, "], \"categories\": [");
    k = 0;
    for (size_t i = 0; !b.oom && i < all->n_categories; i++) {
        const md_coco_category *c = &all->categories[i];
        if (!has_id(cats, nc, c->id)) continue;
        sb_printf(&b, "%s{\"id\": %lld, \"name\": ", k++ ? ", " : "", (long long)c->id);
        sb_json_str(&b, c->name);
        sb_printf(&b, "}");
    }
    sb_printf(&b, "], \"annotations\": [");
    k = 0;
    for (size_t i = 0; !b.oom && i < all->n_anns; i++) {
        const md_coco_ann *a = &all->anns[i];
        if (!has_id(imgs, ni, a->image_id) || !has_id(cats, nc, a->category_id)) continue;
        sb_printf(&b,
                  "%s{\"id\": %lld, \"image_id\": %lld, \"category_id\": %lld, \"bbox\": [%.17g, %.17g, %.17g, "
                  "%.17g], \"area\": %.17g, \"iscrowd\": %d, \"ignore\": %d, \"segmentation\": ",
                  k++ ? ", " : "", (long long)a->id, (long long)a->image_id, (long long)a->category_id, a->bbox[0],
                  a->bbox[1], a->bbox[2], a->bbox[3], a->area, (int)a->iscrowd, (int)a->ignore);
        sb_segm(&b, &a->segmentation);
        sb_printf(&b, "}");
    }
    sb_printf(&b, "]}");
    free(imgs);
    free(cats);
    md_coco_free(all);
    if (b.oom) {
        free(b.s);
        md_failc(err, MD_ERR_NOMEM, "%s: out of memory building the evaluation ground truth", d->c.ann_file);
        return NULL;
    }
    d->gt = md_coco_parse(b.s, b.n, d->c.ann_file, err);
    free(b.s);
    return d->gt;
}

/* mmdet's _det2json (and _segm2json with `segm`): per image, per class
 * (dataset order), per box; boxes xyxy -> xywh in f32 as numpy does,
 * category ids mapped back; with segm each detection's mask, a shallow
 * view of the result's RLE (free the array with free). */
static int det2json(const coco_ds *d, const md_det_result *results, int64_t n, bool segm, md_coco_det **out,
                    size_t *n_out, md_error *err) {
    if (n != d->c.n)
        return md_failc(err, MD_ERR_CONFIG, "%s: %lld results for a dataset of %lld images", d->c.ann_file,
                        (long long)n, (long long)d->c.n);
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < results[i].n; j++) {
            int64_t l = results[i].labels[j];
            if (l < 0 || l >= d->n_cat_ids)
                return md_failc(err, MD_ERR_CONFIG, "%s: result of image %lld (%s), box %d: label %lld is outside "
                                "0..%d", d->c.ann_file, (long long)i, d->c.infos[i].filename, j, (long long)l,
                                d->n_cat_ids - 1);
        }
        total += (size_t)(results[i].n > 0 ? results[i].n : 0);
        if (segm && results[i].n > 0 && !results[i].masks)
            return md_failc(err, MD_ERR_CONFIG, "%s: segm needs mask results, image %lld (%s) has none (is the model "
                            "a mask detector?)", d->c.ann_file, (long long)i, d->c.infos[i].filename);
    }
    md_coco_det *dets = malloc(sizeof *dets * (total + 1));
    if (!dets) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        const md_det_result *r = &results[i];
        for (int label = 0; label < d->n_cat_ids; label++)
            for (int j = 0; j < r->n; j++) {
                if (r->labels[j] != label) continue;
                const float *b = r->bboxes + 5 * j;
                float w = b[2] - b[0], h = b[3] - b[1];
                dets[k] = (md_coco_det){ .image_id = d->c.infos[i].id, .category_id = d->cat_ids[label],
                                         .bbox = { b[0], b[1], w, h }, .score = b[4] };
                if (segm) {
                    dets[k].segmentation.kind = MD_MASK_ANN_RLE;
                    dets[k].segmentation.rle = r->masks[j];
                }
                k++;
            }
    }
    *out = dets;
    *n_out = k;
    return 0;
}

/* mmdet's results2json: <prefix>.bbox.json, and <prefix>.segm.json when
 * the results have masks. */
static int coco_format_results(const md_custom_dataset *c, const md_det_result *results, int64_t n,
                               const char *prefix, md_error *err) {
    const coco_ds *d = (const coco_ds *)c;
    bool masks = false;
    for (int64_t i = 0; i < n; i++) masks |= results[i].masks != NULL;
    md_coco_det *dets;
    size_t nd;
    if (det2json(d, results, n, false, &dets, &nd, err) != 0) return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s.bbox.json", prefix);
    int rc = md_coco_write_dets(path, dets, nd, err);
    free(dets);
    if (rc || !masks) return rc;
    if (det2json(d, results, n, true, &dets, &nd, err) != 0) return -1;
    snprintf(path, sizeof path, "%s.segm.json", prefix);
    rc = md_coco_write_dets(path, dets, nd, err);
    free(dets);
    return rc;
}

/* mmdet rounds each metric to 3 decimals: float(f'{v:.3f}'). */
static double round3(double v) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.3f", v);
    return strtod(buf, NULL);
}

/* One metric of evaluate: bbox or segm. */
static int coco_evaluate_one(coco_ds *d, const md_det_result *results, int64_t n, const char *metric, bool segm,
                             md_metrics *out, md_error *err) {
    md_coco_det *dets;
    size_t nd;
    if (det2json(d, results, n, segm, &dets, &nd, err) != 0) return -1;
    md_coco *gt = eval_gt(d, err);
    if (!gt) {
        free(dets);
        return md_error_wrap(err, "CocoDataset.evaluate");
    }
    md_info(d->c.ctx, "Evaluating %s...", metric);
    if (!nd) md_log_error(d->c.ctx, "The testing results of the whole dataset is empty.");
    md_coco_eval ev;
    int rc = md_coco_evaluate_as(gt, dets, nd, segm ? MD_COCO_IOU_SEGM : MD_COCO_IOU_BBOX, &ev, err);
    free(dets);   /* the masks are views of the results */
    if (rc != 0) return md_error_wrap(err, "CocoDataset.evaluate");
    char line[256];
    for (int i = 0; i < 12; i++) md_info(d->c.ctx, "%s", md_coco_stat_line(&ev, i, line, sizeof line));
    static const char *items[] = { "mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l" };
    for (int i = 0; i < 6 && out->n < MD_MAX_METRICS; i++) {
        snprintf(out->m[out->n].name, sizeof out->m[0].name, "%s_%s", metric, items[i]);
        out->m[out->n++].value = round3(ev.stats[i]);
    }
    md_info(d->c.ctx, "%s_mAP_copypaste: %.3f %.3f %.3f %.3f %.3f %.3f", metric, ev.stats[0], ev.stats[1],
            ev.stats[2], ev.stats[3], ev.stats[4], ev.stats[5]);
    md_coco_eval_free(&ev);
    return 0;
}

/* mmdet's evaluate: metric "bbox", "segm" or several of them separated by
 * commas or spaces (mmdet's list), evaluated in order. */
static int coco_evaluate(const md_custom_dataset *c, const md_det_result *results, int64_t n, const char *metric,
                         md_metrics *out, md_error *err) {
    /* The dataset is otherwise immutable; the cached ground truth is built
     * on the calling (main) thread only. */
    coco_ds *d = (coco_ds *)c;
    if (!metric || !*metric) metric = "bbox";
    out->n = 0;
    const char *p = metric;
    char names[8][16];
    int k = 0;
    while (*p) {
        size_t l = strcspn(p, ", ");
        if (l) {
            char m[64];
            snprintf(m, sizeof m, "%.*s", (int)(l < 63 ? l : 63), p);
            if (strcmp(m, "bbox") && strcmp(m, "segm"))
                return md_failc(err, MD_ERR_CONFIG,
                                "CocoDataset.evaluate: metric '%s' is not supported (supported: bbox, segm)", m);
            if (k == 8) return md_failc(err, MD_ERR_CONFIG, "CocoDataset.evaluate: too many metrics in '%s'", metric);
            snprintf(names[k++], sizeof names[0], "%s", m);
        }
        p += l;
        p += strspn(p, ", ");
    }
    for (int i = 0; i < k; i++)
        if (coco_evaluate_one(d, results, n, names[i], !strcmp(names[i], "segm"), out, err)) return -1;
    return 0;
}

/* mmdet's box checks: true when the box (x, y, w, h) inside an image of
 * iw x ih is usable. */
static bool box_ok(double x, double y, double w, double h, double area, int iw, int ih) {
    double iw_ = (x + w < iw ? x + w : iw) - (x > 0 ? x : 0);
    double ih_ = (y + h < ih ? y + h : ih) - (y > 0 ? y : 0);
    if (iw_ < 0) iw_ = 0;
    if (ih_ < 0) ih_ = 0;
    if (iw_ * ih_ == 0) return false;
    if (area <= 0 || w < 1 || h < 1) return false;
    return true;
}

/* The tables from the parsed records: labels, the images training keeps
 * (_filter_imgs: an annotation of a selected class, crowd and ignore
 * included as catToImgs counts them) and their boxes (_parse_ann_info). */
static int build_tables(coco_ds *d, parse_state *s, md_error *err) {
    md_custom_dataset *c = &d->c;
    const char *path = c->ann_file;
    /* Categories: ids unique; labels in JSON order among CLASSES. */
    id_idx *cats = malloc(sizeof *cats * (size_t)(s->n_cats + 1));
    d->cat_ids = malloc(sizeof *d->cat_ids * (size_t)(s->n_cats + 1));
    int64_t *cat_label = malloc(sizeof *cat_label * (size_t)(s->n_cats + 1));
    id_idx *imgs = malloc(sizeof *imgs * (size_t)(s->n_imgs + 1));
    int64_t *count = calloc((size_t)s->n_imgs + 1, sizeof *count);
    int64_t *order = malloc(sizeof *order * (size_t)(s->n_anns + 1));
    int64_t *ann_img = malloc(sizeof *ann_img * (size_t)(s->n_anns + 1));
    int64_t *start = calloc((size_t)s->n_imgs + 1, sizeof *start);
    int rc = -1;
    if (!cats || !d->cat_ids || !cat_label || !imgs || !count || !order || !ann_img || !start) {
        md_failc(err, MD_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int64_t i = 0; i < s->n_cats; i++) {
        cats[i] = (id_idx){ s->cats[i].id, i };
        cat_label[i] = -1;
        for (int k = 0; k < c->base.n_classes; k++)
            if (s->cats[i].name && !strcmp(s->cats[i].name, c->base.classes[k])) {
                cat_label[i] = d->n_cat_ids;
                d->cat_ids[d->n_cat_ids++] = s->cats[i].id;
                break;
            }
    }
    qsort(cats, (size_t)s->n_cats, sizeof *cats, cmp_id);
    for (int64_t i = 1; i < s->n_cats; i++)
        if (cats[i].id == cats[i - 1].id) {
            md_failc(err, MD_ERR_PARSE, "%s: category id %lld is defined twice", path, (long long)cats[i].id);
            goto done;
        }
    for (int64_t i = 0; i < s->n_imgs; i++) imgs[i] = (id_idx){ s->imgs[i].id, i };
    qsort(imgs, (size_t)s->n_imgs, sizeof *imgs, cmp_id);
    /* Annotations per image, file order kept (pycocotools' imgToAnns). */
    int64_t orphans = 0;
    for (int64_t a = 0; a < s->n_anns; a++) {
        raw_ann *r = &s->anns[a];
        if (r->category_id == INT64_MIN) {
            md_failc(err, MD_ERR_PARSE, "%s: annotation %lld (#%lld in the file) has no category_id", path,
                     (long long)r->id, (long long)a);
            goto done;
        }
        if (find_id(cats, s->n_cats, r->category_id) < 0) {
            md_failc(err, MD_ERR_PARSE,
                     "%s: annotation %lld (#%lld in the file, image %lld) has category_id %lld, which `categories` "
                     "does not define", path, (long long)r->id, (long long)a, (long long)r->image_id,
                     (long long)r->category_id);
            goto done;
        }
        ann_img[a] = find_id(imgs, s->n_imgs, r->image_id);
        if (ann_img[a] < 0) orphans++;
        else count[ann_img[a]]++;
    }
    if (orphans) md_warn(c->ctx, "%s: %lld annotations refer to images the file does not list; ignored", path,
                         (long long)orphans);
    for (int64_t i = 0; i < s->n_imgs; i++) start[i + 1] = start[i] + count[i];
    memset(count, 0, sizeof *count * (size_t)s->n_imgs);
    for (int64_t a = 0; a < s->n_anns; a++)
        if (ann_img[a] >= 0) order[start[ann_img[a]] + count[ann_img[a]]++] = a;
    int64_t dropped = 0;   /* boxes of non-positive size in the kept images */
    for (int64_t i = 0; i < s->n_imgs; i++) {
        raw_img *im = &s->imgs[i];
        bool has = false;
        for (int64_t k = start[i]; k < start[i + 1] && !has; k++)
            has = cat_label[find_id(cats, s->n_cats, s->anns[order[k]].category_id)] >= 0;
        md_img_info info = { im->file_name, im->width, im->height, im->id };
        if (!md_custom_dataset_keep_img(c, &info, has)) continue;
        if (!im->file_name) {
            md_failc(err, MD_ERR_PARSE, "%s: image %lld has no file_name", path, (long long)im->id);
            goto done;
        }
        char *file_name = im->file_name;
        im->file_name = NULL;   /* moved */
        if (md_custom_dataset_add_img(c, file_name, im->width, im->height, im->id, err)) goto done;
        for (int64_t k = start[i]; k < start[i + 1]; k++) {
            raw_ann *a = &s->anns[order[k]];
            if (a->ignore) continue;
            if (a->nbbox != 4) {
                md_failc(err, MD_ERR_PARSE, "%s: annotation %lld: bbox has %d numbers, expected 4", path,
                         (long long)a->id, a->nbbox);
                goto done;
            }
            double area = a->has_area ? a->area : (double)a->bbox[2] * a->bbox[3];
            if (!box_ok(a->bbox[0], a->bbox[1], a->bbox[2], a->bbox[3], area, im->width, im->height)) {
                dropped++;
                continue;
            }
            int64_t label = cat_label[find_id(cats, s->n_cats, a->category_id)];
            if (label < 0) continue;
            float xyxy[4] = { a->bbox[0], a->bbox[1], a->bbox[0] + a->bbox[2], a->bbox[1] + a->bbox[3] };
            if (md_custom_dataset_add_box(c, xyxy, label, a->iscrowd, err)) goto done;
            /* _parse_ann_info: the masks of the kept boxes, in order */
            if (!a->iscrowd && a->seg_len > 0) {
                md_mask_ann m = { .kind = MD_MASK_ANN_FILE, .id = a->id, .file = c->ann_file,
                                  .offset = a->seg_off, .length = a->seg_len };
                if (md_custom_dataset_add_mask(c, &m, err)) goto done;
            }
        }
    }
    if (dropped)
        md_warn(c->ctx, "%s: %lld boxes with non-positive size (or outside their image) dropped", path,
                (long long)dropped);
    rc = 0;
done:
    free(cats);
    free(cat_label);
    free(imgs);
    free(count);
    free(order);
    free(ann_img);
    free(start);
    return rc;
}

/* mmdet's CocoDataset.load_annotations. */
static int coco_load(md_custom_dataset *c, md_error *err) {
    parse_state s;
    memset(&s, 0, sizeof s);
    int rc = parse_file(c->ann_file, &s, err);
    if (!rc) rc = build_tables((coco_ds *)c, &s, err);
    free_raw(&s);
    return rc;
}

static const md_key coco_keys[] = {
    MD_CUSTOM_DATASET_KEYS,
    { "min_size", MD_KEY_INT, "32", "drop images whose shorter side is smaller (training)", false,
      MD_AT(coco_ds, c.min_size) },
    { 0 } };

static const md_custom_dataset_class coco_cls = {
    .name = "CocoDataset", .size = sizeof(coco_ds), .keys = coco_keys, .classes = coco_classes,
    .n_classes = N_COCO, .palette = "coco", .load_annotations = coco_load, .get_cat_ids = coco_get_cat_ids,
    .evaluate = coco_evaluate, .format_results = coco_format_results, .destroy = coco_destroy,
};

static void *coco_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    return md_custom_dataset_build(ctx, &coco_cls, cfg, err);
}

static const md_class coco_class = {
    .name = "CocoDataset", .keys = coco_keys, .build = coco_build,
    MD_IFACE(&md_custom_dataset_iface, MD_IFACE_DATASET),
    .doc = "COCO-format detection dataset (mmdet's CocoDataset)",
};

MD_PLUGIN("coco_dataset", "1.0", "Apache-2.0");
MD_REGISTER("datasets", coco_class)
