/* COCO annotation and results files through yajl's callback parser.
 *
 * A small state machine keeps only the fields evaluation and datasets need
 * and skips everything else (info, licenses) without building a tree; the
 * events of an annotation's or a result's "segmentation" go to the
 * segmentation builder (masks.c). Numbers arrive as text and go through strtod/strtoll, so values are
 * the same doubles Python's json module produces. */
#define _GNU_SOURCE   /* qsort_r */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>
#include "internal.h"
#include "mmdet/coco.h"

enum { SEC_NONE, SEC_IMAGES, SEC_ANNS, SEC_CATS, SEC_DETS };
enum { K_OTHER, K_ID, K_FILE_NAME, K_WIDTH, K_HEIGHT, K_IMAGE_ID, K_CATEGORY_ID, K_BBOX, K_AREA,
       K_ISCROWD, K_IGNORE, K_NAME, K_SUPERCATEGORY, K_SCORE, K_SEGMENTATION };

static const char *const SEC_NAME[] = {"", "images", "annotations", "categories", "results"};
static const char *const KEY_NAME[] = {"", "id", "file_name", "width", "height", "image_id", "category_id",
                                       "bbox", "area", "iscrowd", "ignore", "name", "supercategory", "score",
                                       "segmentation"};

/* What the current element has read so far. */
typedef struct rec {
    unsigned have;           /* bit per K_* */
    int64_t id, image_id, category_id, width, height, iscrowd, ignore;
    double bbox[4], area, score;
    int nb;
    size_t file_name, name, supercategory;   /* offsets into the pool */
    md_mask_ann seg;
} rec;

typedef struct growbuf { void *p; size_t n, cap; } growbuf;

typedef struct pstate {
    const char *name;
    int dets_mode;           /* results file: top-level array of objects */
    int elem_depth;          /* depth of element objects */
    int depth, section, key, in_arr, in_rec, in_bbox;
    int saw_top;             /* the top-level value had the right type */
    unsigned saw_sections;   /* 1 << SEC_*: the top-level arrays present */
    size_t elem_index[5];
    rec r;
    growbuf images, anns, cats, dets, pool;
    md_error *err;
    int failed;
    /* the segmentation value being read: events go to the builder */
    md_segm_builder *sb;
    int in_seg, seg_depth;
    /* position reporting */
    yajl_handle h;
    const unsigned char *chunk;
    size_t chunk_base, lines_base, col_base;
} pstate;

static void *grow(growbuf *g, size_t elsz) {
    if (g->n == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : 256;
        void *np = realloc(g->p, ncap * elsz);
        if (!np) return NULL;
        g->p = np;
        g->cap = ncap;
    }
    return (char *)g->p + elsz * g->n++;
}

/* Byte offset, line and column of the parser's position. */
static void position(pstate *ps, size_t *off, size_t *line, size_t *col) {
    size_t used = ps->h ? yajl_get_bytes_consumed(ps->h) : 0;
    size_t l = ps->lines_base, c = ps->col_base;
    for (size_t i = 0; i < used; i++) {
        if (ps->chunk[i] == '\n') { l++; c = 0; }
        else c++;
    }
    *off = ps->chunk_base + used;
    *line = l + 1;
    *col = c + 1;
}

static int fail_at(pstate *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_at(pstate *ps, const char *fmt, ...) {
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    size_t off, line, col;
    position(ps, &off, &line, &col);
    md_failc(ps->err, MD_ERR_PARSE, "%s: %s (byte %zu, line %zu, column %zu)", ps->name, what, off, line, col);
    ps->failed = 1;
    return 0;   /* cancels the parse */
}

static int fail_rec(pstate *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_rec(pstate *ps, const char *fmt, ...) {
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    char idp[64] = "";
    if (ps->r.have & (1u << K_ID)) snprintf(idp, sizeof idp, " (id %lld)", (long long)ps->r.id);
    return fail_at(ps, "%s[%zu]%s: %s", SEC_NAME[ps->section], ps->elem_index[ps->section], idp, what);
}

static int oom(pstate *ps) {
    md_failc(ps->err, MD_ERR_NOMEM, "%s: out of memory", ps->name);
    ps->failed = 1;
    return 0;
}

static int key_id(const unsigned char *k, size_t n) {
    for (int i = 1; i <= K_SEGMENTATION; i++)
        if (strlen(KEY_NAME[i]) == n && !memcmp(KEY_NAME[i], k, n)) return i;
    return K_OTHER;
}

/* Fields each section reads; others are skipped. */
static int wanted(int section, int key) {
    switch (section) {
    case SEC_IMAGES: return key == K_ID || key == K_FILE_NAME || key == K_WIDTH || key == K_HEIGHT;
    case SEC_ANNS:
        return key == K_ID || key == K_IMAGE_ID || key == K_CATEGORY_ID || key == K_BBOX || key == K_AREA ||
               key == K_ISCROWD || key == K_IGNORE;
    case SEC_CATS: return key == K_ID || key == K_NAME || key == K_SUPERCATEGORY;
    case SEC_DETS: return key == K_IMAGE_ID || key == K_CATEGORY_ID || key == K_BBOX || key == K_SCORE;
    default: return 0;
    }
}

static int is_int_key(int key) {
    return key == K_ID || key == K_IMAGE_ID || key == K_CATEGORY_ID || key == K_WIDTH || key == K_HEIGHT ||
           key == K_ISCROWD || key == K_IGNORE;
}

/* Is this scalar a direct element of a section array (not an object)? */
static int stray_element(pstate *ps) { return ps->in_arr && !ps->in_rec && ps->depth == ps->elem_depth - 1; }

/* A scalar where the top level of an annotation file wants a section's
 * array ("images": 3). */
static int section_scalar(pstate *ps, const char *got) {
    if (ps->dets_mode || ps->depth != 1 || ps->section == SEC_NONE) return 1;
    return fail_at(ps, "'%s' must be an array, got %s", SEC_NAME[ps->section], got);
}

/* One event of the segmentation value: forwarded (the builder records what
 * is wrong and ignores the rest), the value's end moves it into the record
 * (a malformed one as MD_MASK_ANN_INVALID). Returns 0 only when out of memory. */
enum { EV_SCALAR, EV_OPEN, EV_CLOSE };
static int seg_event(pstate *ps, int kind) {
    ps->seg_depth += kind == EV_OPEN ? 1 : kind == EV_CLOSE ? -1 : 0;
    if (ps->seg_depth > 0) return 1;
    ps->in_seg = 0;
    md_error e = { 0 };
    md_mask_ann_free(&ps->r.seg);
    if (md_segm_finish(ps->sb, &ps->r.seg, &e)) {
        if (e.code == MD_ERR_NOMEM) return oom(ps);
        ps->r.seg.kind = MD_MASK_ANN_INVALID;
        if (!(ps->r.seg.invalid = strdup(e.msg))) return oom(ps);
    }
    return 1;
}

static int cb_number(void *ctx, const char *s, size_t n) {
    pstate *ps = ctx;
    if (ps->in_seg) return md_segm_on_number(ps->sb, s, n), seg_event(ps, EV_SCALAR);
    if (!section_scalar(ps, "a number")) return 0;
    if (stray_element(ps)) return fail_at(ps, "%s[%zu]: expected an object, got a number", SEC_NAME[ps->section], ps->elem_index[ps->section]);
    int in_field = ps->in_rec && ps->depth == ps->elem_depth && wanted(ps->section, ps->key);
    int in_bbox = ps->in_bbox && ps->depth == ps->elem_depth + 1;
    if (!in_field && !in_bbox) return 1;
    char buf[64];
    if (n >= sizeof buf) return fail_rec(ps, "number too long for '%s'", KEY_NAME[ps->key]);
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (in_bbox) {
        if (ps->r.nb >= 4) return fail_rec(ps, "'bbox' has more than 4 numbers");
        ps->r.bbox[ps->r.nb++] = v;
        return 1;
    }
    if (is_int_key(ps->key)) {
        int64_t iv;
        if (!memchr(buf, '.', n) && !memchr(buf, 'e', n) && !memchr(buf, 'E', n)) {
            errno = 0;
            long long ll = strtoll(buf, &end, 10);
            if (errno == ERANGE) return fail_rec(ps, "'%s' %s out of range", KEY_NAME[ps->key], buf);
            iv = ll;
        } else {
            if (!(v >= -9.2e18 && v <= 9.2e18) || (double)(int64_t)v != v)
                return fail_rec(ps, "'%s' must be an integer, got %s", KEY_NAME[ps->key], buf);
            iv = (int64_t)v;
        }
        switch (ps->key) {
        case K_ID: ps->r.id = iv; break;
        case K_IMAGE_ID: ps->r.image_id = iv; break;
        case K_CATEGORY_ID: ps->r.category_id = iv; break;
        case K_WIDTH: ps->r.width = iv; break;
        case K_HEIGHT: ps->r.height = iv; break;
        case K_ISCROWD: ps->r.iscrowd = iv; break;
        default: ps->r.ignore = iv; break;
        }
    } else if (ps->key == K_AREA) {
        ps->r.area = v;
    } else if (ps->key == K_SCORE) {
        ps->r.score = v;
    } else {
        return fail_rec(ps, "'%s' must not be a number", KEY_NAME[ps->key]);
    }
    ps->r.have |= 1u << ps->key;
    return 1;
}

static int cb_bool(void *ctx, int b) {
    pstate *ps = ctx;
    if (ps->in_seg) return md_segm_on_scalar(ps->sb, false), seg_event(ps, EV_SCALAR);
    if (!section_scalar(ps, "a boolean")) return 0;
    if (stray_element(ps)) return fail_at(ps, "%s[%zu]: expected an object, got a boolean", SEC_NAME[ps->section], ps->elem_index[ps->section]);
    if (ps->in_bbox && ps->depth == ps->elem_depth + 1) return fail_rec(ps, "'bbox' must hold numbers");
    if (!(ps->in_rec && ps->depth == ps->elem_depth && wanted(ps->section, ps->key))) return 1;
    if (ps->key == K_ISCROWD) ps->r.iscrowd = b;
    else if (ps->key == K_IGNORE) ps->r.ignore = b;
    else return fail_rec(ps, "'%s' must not be a boolean", KEY_NAME[ps->key]);
    ps->r.have |= 1u << ps->key;
    return 1;
}

static int cb_null(void *ctx) {
    pstate *ps = ctx;
    if (ps->in_seg) return md_segm_on_scalar(ps->sb, true), seg_event(ps, EV_SCALAR);
    if (!section_scalar(ps, "null")) return 0;
    if (stray_element(ps)) return fail_at(ps, "%s[%zu]: expected an object, got null", SEC_NAME[ps->section], ps->elem_index[ps->section]);
    if (ps->in_bbox && ps->depth == ps->elem_depth + 1) return fail_rec(ps, "'bbox' must hold numbers");
    return 1;   /* a null field counts as absent */
}

static int cb_string(void *ctx, const unsigned char *s, size_t n) {
    pstate *ps = ctx;
    if (ps->in_seg) return md_segm_on_string(ps->sb, s, n), seg_event(ps, EV_SCALAR);
    if (!section_scalar(ps, "a string")) return 0;
    if (stray_element(ps)) return fail_at(ps, "%s[%zu]: expected an object, got a string", SEC_NAME[ps->section], ps->elem_index[ps->section]);
    if (ps->in_bbox && ps->depth == ps->elem_depth + 1) return fail_rec(ps, "'bbox' must hold numbers");
    if (!(ps->in_rec && ps->depth == ps->elem_depth && wanted(ps->section, ps->key))) return 1;
    size_t *dst;
    switch (ps->key) {
    case K_FILE_NAME: dst = &ps->r.file_name; break;
    case K_NAME: dst = &ps->r.name; break;
    case K_SUPERCATEGORY: dst = &ps->r.supercategory; break;
    default: return fail_rec(ps, "'%s' must be a number, got a string", KEY_NAME[ps->key]);
    }
    size_t at = ps->pool.n;
    for (size_t i = 0; i <= n; i++) {
        char *c = grow(&ps->pool, 1);
        if (!c) return oom(ps);
        *c = i < n ? (char)s[i] : 0;
    }
    *dst = at;
    ps->r.have |= 1u << ps->key;
    return 1;
}

static int cb_map_key(void *ctx, const unsigned char *k, size_t n) {
    pstate *ps = ctx;
    if (ps->in_seg) return md_segm_on_key(ps->sb, k, n), 1;
    if (!ps->dets_mode && ps->depth == 1) {
        ps->section = SEC_NONE;
        if (n == 6 && !memcmp(k, "images", 6)) ps->section = SEC_IMAGES;
        else if (n == 11 && !memcmp(k, "annotations", 11)) ps->section = SEC_ANNS;
        else if (n == 10 && !memcmp(k, "categories", 10)) ps->section = SEC_CATS;
    } else if (ps->in_rec && ps->depth == ps->elem_depth) {
        ps->key = key_id(k, n);
        if (ps->key == K_SEGMENTATION && (ps->section == SEC_ANNS || ps->section == SEC_DETS)) {
            if (!ps->sb && !(ps->sb = md_segm_builder_new())) return oom(ps);
            ps->in_seg = 1;
            ps->seg_depth = 0;
        }
    }
    return 1;
}

static int cb_start_map(void *ctx) {
    pstate *ps = ctx;
    if (ps->in_seg) return md_segm_on_start_map(ps->sb), seg_event(ps, EV_OPEN);
    ps->depth++;
    if (ps->depth == 1 && ps->dets_mode) return fail_at(ps, "a results file must be a JSON array of detections");
    if (ps->depth == 1) ps->saw_top = 1;
    if (ps->depth == 2 && !ps->dets_mode && ps->section != SEC_NONE)
        return fail_at(ps, "'%s' must be an array", SEC_NAME[ps->section]);
    if (ps->depth == ps->elem_depth && ps->in_arr) {
        md_mask_ann_free(&ps->r.seg);
        memset(&ps->r, 0, sizeof ps->r);
        ps->in_rec = 1;
        ps->key = K_OTHER;
    }
    return 1;
}

static int finish_record(pstate *ps);

static int cb_end_map(void *ctx) {
    pstate *ps = ctx;
    if (ps->in_seg) return md_segm_on_end(ps->sb), seg_event(ps, EV_CLOSE);
    if (ps->depth == ps->elem_depth && ps->in_rec) {
        if (!finish_record(ps)) return 0;
        ps->in_rec = 0;
        ps->elem_index[ps->section]++;
    }
    ps->depth--;
    return 1;
}

static int cb_start_array(void *ctx) {
    pstate *ps = ctx;
    if (ps->in_seg) return md_segm_on_start_array(ps->sb), seg_event(ps, EV_OPEN);
    ps->depth++;
    if (ps->depth == 1 && !ps->dets_mode) return fail_at(ps, "a COCO annotation file must be a JSON object");
    if (ps->depth == 1) ps->saw_top = 1;
    if (ps->depth == ps->elem_depth - 1 && (ps->dets_mode || ps->section != SEC_NONE)) {
        ps->in_arr = 1;
        if (ps->dets_mode) ps->section = SEC_DETS;
        ps->saw_sections |= 1u << ps->section;
    } else if (ps->depth == ps->elem_depth && ps->in_arr) {
        return fail_at(ps, "%s[%zu]: expected an object, got an array", SEC_NAME[ps->section], ps->elem_index[ps->section]);
    } else if (ps->depth == ps->elem_depth + 1 && ps->in_rec && ps->key == K_BBOX && wanted(ps->section, K_BBOX)) {
        if (ps->r.have & (1u << K_BBOX)) return fail_rec(ps, "'bbox' given twice");
        ps->in_bbox = 1;
        ps->r.nb = 0;
    }
    return 1;
}

static int cb_end_array(void *ctx) {
    pstate *ps = ctx;
    if (ps->in_seg) return md_segm_on_end(ps->sb), seg_event(ps, EV_CLOSE);
    if (ps->in_bbox && ps->depth == ps->elem_depth + 1) {
        ps->in_bbox = 0;
        ps->r.have |= 1u << K_BBOX;
    } else if (ps->depth == ps->elem_depth - 1 && ps->in_arr) {
        ps->in_arr = 0;
    }
    ps->depth--;
    return 1;
}

static const yajl_callbacks CALLBACKS = {
    .yajl_null = cb_null, .yajl_boolean = cb_bool, .yajl_number = cb_number, .yajl_string = cb_string,
    .yajl_start_map = cb_start_map, .yajl_map_key = cb_map_key, .yajl_end_map = cb_end_map,
    .yajl_start_array = cb_start_array, .yajl_end_array = cb_end_array,
};

static int need(pstate *ps, unsigned mask) {
    for (int k = 1; k <= K_SCORE; k++)
        if ((mask & (1u << k)) && !(ps->r.have & (1u << k))) return fail_rec(ps, "missing '%s'", KEY_NAME[k]);
    if ((mask & (1u << K_BBOX)) && ps->r.nb != 4) return fail_rec(ps, "'bbox' must have 4 numbers, got %d", ps->r.nb);
    return 1;
}

/* Temporary layout: strings as pool offsets until the pool stops moving. */
typedef struct img_tmp { int64_t id; size_t file_name; int32_t w, h; } img_tmp;
typedef struct cat_tmp { int64_t id; size_t name, super; } cat_tmp;

#define B(k) (1u << (k))

static int finish_record(pstate *ps) {
    rec *r = &ps->r;
    switch (ps->section) {
    case SEC_IMAGES: {
        if (!need(ps, B(K_ID))) return 0;
        if (r->width < 0 || r->height < 0 || r->width > INT32_MAX || r->height > INT32_MAX)
            return fail_rec(ps, "bad size %lldx%lld", (long long)r->width, (long long)r->height);
        img_tmp *t = grow(&ps->images, sizeof *t);
        if (!t) return oom(ps);
        *t = (img_tmp){r->id, (r->have & B(K_FILE_NAME)) ? r->file_name : (size_t)-1, (int32_t)r->width, (int32_t)r->height};
        return 1;
    }
    case SEC_ANNS: {
        if (!need(ps, B(K_ID) | B(K_IMAGE_ID) | B(K_CATEGORY_ID) | B(K_BBOX))) return 0;
        md_coco_ann *a = grow(&ps->anns, sizeof *a);
        if (!a) return oom(ps);
        *a = (md_coco_ann){.id = r->id, .image_id = r->image_id, .category_id = r->category_id,
                           .area = (r->have & B(K_AREA)) ? r->area : r->bbox[2] * r->bbox[3],
                           .iscrowd = r->iscrowd != 0, .ignore = r->ignore != 0, .segmentation = r->seg};
        memset(&r->seg, 0, sizeof r->seg);
        a->segmentation.id = r->id;
        memcpy(a->bbox, r->bbox, sizeof a->bbox);
        return 1;
    }
    case SEC_CATS: {
        if (!need(ps, B(K_ID))) return 0;
        cat_tmp *c = grow(&ps->cats, sizeof *c);
        if (!c) return oom(ps);
        *c = (cat_tmp){r->id, (r->have & B(K_NAME)) ? r->name : (size_t)-1,
                       (r->have & B(K_SUPERCATEGORY)) ? r->supercategory : (size_t)-1};
        return 1;
    }
    case SEC_DETS: {
        /* segm results may leave the box out (loadRes: toBbox of the mask) */
        bool rle = r->seg.kind == MD_MASK_ANN_RLE;
        if (!need(ps, B(K_IMAGE_ID) | B(K_CATEGORY_ID) | (rle ? 0 : B(K_BBOX)) | B(K_SCORE))) return 0;
        md_coco_det *d = grow(&ps->dets, sizeof *d);
        if (!d) return oom(ps);
        *d = (md_coco_det){.image_id = r->image_id, .category_id = r->category_id, .score = r->score,
                           .segmentation = r->seg};
        memset(&r->seg, 0, sizeof r->seg);
        if (d->segmentation.kind != MD_MASK_ANN_NONE) d->segmentation.id = (int64_t)(ps->dets.n - 1);
        if (r->have & B(K_BBOX)) memcpy(d->bbox, r->bbox, sizeof d->bbox);
        else md_rle_to_bbox(&d->segmentation.rle, d->bbox);
        return 1;
    }
    default: return 1;
    }
}

/* Feeds the whole input through yajl; from a FILE in chunks or a buffer. */
static int run_parser(pstate *ps, FILE *f, const char *buf, size_t len) {
    yajl_handle h = yajl_alloc(&CALLBACKS, NULL, ps);
    if (!h) { oom(ps); return -1; }
    ps->h = h;
    enum { CHUNK = 1 << 18 };
    unsigned char *chunk = f ? malloc(CHUNK) : NULL;
    if (f && !chunk) { yajl_free(h); oom(ps); return -1; }
    yajl_status st = yajl_status_ok;
    size_t total = 0;
    for (;;) {
        size_t n;
        const unsigned char *p;
        if (f) {
            n = fread(chunk, 1, CHUNK, f);
            if (n == 0) {
                if (ferror(f)) {
                    md_failc(ps->err, MD_ERR_IO, "%s: read error after %zu bytes", ps->name, total);
                    ps->failed = 1;
                }
                break;
            }
            p = chunk;
        } else {
            if (total == len) break;
            n = len;
            p = (const unsigned char *)buf;
        }
        ps->chunk = p;
        ps->chunk_base = total;
        st = yajl_parse(h, p, n);
        if (st != yajl_status_ok) break;
        const unsigned char *q = p, *e = p + n, *last = NULL;
        while ((q = memchr(q, '\n', (size_t)(e - q)))) { ps->lines_base++; last = q++; }
        ps->col_base = last ? (size_t)(e - last - 1) : ps->col_base + n;
        total += n;
    }
    if (!ps->failed && st == yajl_status_ok) {
        ps->chunk = (const unsigned char *)"";
        ps->chunk_base = total;
        st = yajl_complete_parse(h);
        if (st == yajl_status_error) {
            /* Nothing consumed at this point: report the end of input. */
            unsigned char *msg = yajl_get_error(h, 0, NULL, 0);
            md_failc(ps->err, MD_ERR_PARSE, "%s: JSON syntax error at end of input (byte %zu, line %zu): %s",
                     ps->name, total, ps->lines_base + 1, msg ? (char *)msg : "premature end");
            if (msg) yajl_free_error(h, msg);
            ps->failed = 1;
        }
    } else if (!ps->failed && st == yajl_status_error) {
        unsigned char *msg = yajl_get_error(h, 0, NULL, 0);
        char m[256];
        snprintf(m, sizeof m, "%s", msg ? (char *)msg : "syntax error");
        size_t ml = strlen(m);
        while (ml && (m[ml - 1] == '\n' || m[ml - 1] == ' ')) m[--ml] = 0;
        if (msg) yajl_free_error(h, msg);
        size_t off, line, col;
        position(ps, &off, &line, &col);
        md_failc(ps->err, MD_ERR_PARSE, "%s: JSON syntax error at byte %zu (line %zu, column %zu): %s", ps->name,
                 off, line, col, m);
        ps->failed = 1;
    }
    free(chunk);
    ps->h = NULL;
    yajl_free(h);
    return ps->failed ? -1 : 0;
}

static void free_state(pstate *ps) {
    md_coco_ann *anns = ps->anns.p;
    for (size_t i = 0; anns && i < ps->anns.n; i++) md_mask_ann_free(&anns[i].segmentation);
    md_coco_det *dets = ps->dets.p;
    for (size_t i = 0; dets && i < ps->dets.n; i++) md_mask_ann_free(&dets[i].segmentation);
    md_mask_ann_free(&ps->r.seg);
    md_segm_builder_free(ps->sb);
    free(ps->images.p); free(ps->anns.p); free(ps->cats.p); free(ps->dets.p); free(ps->pool.p);
}

typedef struct id_key { const char *base; size_t stride; } id_key;
static int cmp_by_id(const void *a, const void *b, void *arg) {
    const id_key *k = arg;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int64_t x = *(const int64_t *)(k->base + i * k->stride);
    int64_t y = *(const int64_t *)(k->base + j * k->stride);
    return x < y ? -1 : x > y ? 1 : (i > j) - (i < j);
}

/* Indices sorted by the int64 id at the start of each element; the index
 * tiebreak makes the order deterministic. */
static size_t *sorted_by_id(const void *base, size_t n, size_t stride) {
    size_t *idx = malloc(sizeof(size_t) * (n ? n : 1));
    if (!idx) return NULL;
    for (size_t i = 0; i < n; i++) idx[i] = i;
    id_key k = {base, stride};
    qsort_r(idx, n, sizeof *idx, cmp_by_id, &k);
    return idx;
}

static long find_by_id(const size_t *order, const void *base, size_t n, size_t stride, int64_t id) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int64_t v = *(const int64_t *)((const char *)base + order[mid] * stride);
        if (v < id) lo = mid + 1;
        else hi = mid;
    }
    if (lo < n && *(const int64_t *)((const char *)base + order[lo] * stride) == id) return (long)order[lo];
    return -1;
}

MD_API long md_coco_image_index(const md_coco *c, int64_t id) {
    return find_by_id(c->image_by_id_, c->images, c->n_images, sizeof *c->images, id);
}
MD_API long md_coco_category_index(const md_coco *c, int64_t id) {
    return find_by_id(c->category_by_id_, c->categories, c->n_categories, sizeof *c->categories, id);
}

MD_API void md_coco_free(md_coco *c) {
    if (!c) return;
    for (size_t i = 0; c->anns && i < c->n_anns; i++) md_mask_ann_free(&c->anns[i].segmentation);
    free(c->images); free(c->categories); free(c->anns); free(c->strings_);
    free(c->image_by_id_); free(c->category_by_id_);
    free(c);
}

/* Turns the parse state into an md_coco: strings, indices, checks. */
static md_coco *build_coco(pstate *ps, md_error *err) {
    md_coco *c = calloc(1, sizeof *c);
    if (!c) goto nomem;
    /* The pool keeps one empty string at its end for absent fields. */
    char *z = grow(&ps->pool, 1);
    if (!z) goto nomem;
    *z = 0;
    size_t empty = ps->pool.n - 1;
    c->strings_ = ps->pool.p;
    ps->pool.p = NULL;
    c->n_images = ps->images.n;
    c->images = malloc(sizeof *c->images * (c->n_images ? c->n_images : 1));
    c->n_categories = ps->cats.n;
    c->categories = malloc(sizeof *c->categories * (c->n_categories ? c->n_categories : 1));
    if (!c->images || !c->categories) goto nomem;
    for (size_t i = 0; i < c->n_images; i++) {
        img_tmp *t = (img_tmp *)ps->images.p + i;
        c->images[i] = (md_coco_image){t->id, c->strings_ + (t->file_name == (size_t)-1 ? empty : t->file_name), t->w, t->h};
    }
    for (size_t i = 0; i < c->n_categories; i++) {
        cat_tmp *t = (cat_tmp *)ps->cats.p + i;
        c->categories[i] = (md_coco_category){t->id, c->strings_ + (t->name == (size_t)-1 ? empty : t->name),
                                              c->strings_ + (t->super == (size_t)-1 ? empty : t->super)};
    }
    c->anns = ps->anns.p;
    ps->anns.p = NULL;
    c->n_anns = ps->anns.n;
    ps->anns.n = 0;
    c->image_by_id_ = sorted_by_id(c->images, c->n_images, sizeof *c->images);
    c->category_by_id_ = sorted_by_id(c->categories, c->n_categories, sizeof *c->categories);
    if (!c->image_by_id_ || !c->category_by_id_) goto nomem;
    for (size_t i = 1; i < c->n_images; i++)
        if (c->images[c->image_by_id_[i]].id == c->images[c->image_by_id_[i - 1]].id) {
            md_failc(err, MD_ERR_PARSE, "%s: images[%zu]: duplicate image id %lld (also images[%zu])", ps->name,
                     c->image_by_id_[i], (long long)c->images[c->image_by_id_[i]].id, c->image_by_id_[i - 1]);
            goto fail;
        }
    for (size_t i = 1; i < c->n_categories; i++)
        if (c->categories[c->category_by_id_[i]].id == c->categories[c->category_by_id_[i - 1]].id) {
            md_failc(err, MD_ERR_PARSE, "%s: categories[%zu]: duplicate category id %lld", ps->name,
                     c->category_by_id_[i], (long long)c->categories[c->category_by_id_[i]].id);
            goto fail;
        }
    for (size_t i = 0; i < c->n_anns; i++) {
        md_coco_ann *a = &c->anns[i];
        long ii = md_coco_image_index(c, a->image_id), ci = md_coco_category_index(c, a->category_id);
        if (ii < 0 || ci < 0) {
            md_failc(err, MD_ERR_PARSE, "%s: annotations[%zu] (id %lld): unknown %s %lld", ps->name, i,
                     (long long)a->id, ii < 0 ? "image_id" : "category_id",
                     (long long)(ii < 0 ? a->image_id : a->category_id));
            goto fail;
        }
        a->image_index = (int32_t)ii;
        a->category_index = (int32_t)ci;
    }
    size_t *ann_order = sorted_by_id(c->anns, c->n_anns, sizeof *c->anns);
    if (!ann_order) goto nomem;
    for (size_t i = 1; i < c->n_anns; i++)
        if (c->anns[ann_order[i]].id == c->anns[ann_order[i - 1]].id) {
            md_failc(err, MD_ERR_PARSE, "%s: annotations[%zu]: duplicate annotation id %lld (also annotations[%zu])",
                     ps->name, ann_order[i], (long long)c->anns[ann_order[i]].id, ann_order[i - 1]);
            free(ann_order);
            goto fail;
        }
    free(ann_order);
    return c;
nomem:
    md_failc(err, MD_ERR_NOMEM, "%s: out of memory", ps->name);
fail:
    md_coco_free(c);
    return NULL;
}

static md_coco *coco_from(FILE *f, const char *buf, size_t n, const char *name, md_error *err) {
    pstate ps = {.name = name, .elem_depth = 3, .err = err};
    md_coco *c = NULL;
    if (run_parser(&ps, f, buf, n) == 0) {
        /* pycocotools reads images (loadRes) and categories (getCatIds);
         * annotations may be absent (test-dev image lists) */
        if (!ps.saw_top)
            md_failc(err, MD_ERR_PARSE, "%s: a COCO annotation file must be a JSON object", name);
        else if (!(ps.saw_sections & (1u << SEC_IMAGES)) || !(ps.saw_sections & (1u << SEC_CATS)))
            md_failc(err, MD_ERR_PARSE, "%s: not a COCO annotation file: no '%s' array (it needs 'images' and "
                     "'categories', and 'annotations' for ground truth)", name,
                     !(ps.saw_sections & (1u << SEC_IMAGES)) ? "images" : "categories");
        else
            c = build_coco(&ps, err);
    }
    free_state(&ps);
    return c;
}

MD_API md_coco *md_coco_parse(const char *buf, size_t n, const char *name, md_error *err) {
    return coco_from(NULL, buf, n, name ? name : "<memory>", err);
}

MD_API md_coco *md_coco_load(const char *path, md_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        md_failc(err, MD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    md_coco *c = coco_from(f, NULL, 0, path, err);
    fclose(f);
    return c;
}

static int dets_from(FILE *f, const char *buf, size_t n, const char *name, md_coco_det **dets, size_t *nd, md_error *err) {
    pstate ps = {.name = name, .dets_mode = 1, .elem_depth = 2, .err = err, .section = SEC_DETS};
    *dets = NULL;
    *nd = 0;
    if (run_parser(&ps, f, buf, n) || !ps.saw_top) {
        if (!ps.failed) md_failc(err, MD_ERR_PARSE, "%s: a results file must be a JSON array of detections", name);
        free_state(&ps);
        return -1;
    }
    *dets = ps.dets.p ? ps.dets.p : malloc(sizeof(md_coco_det));
    *nd = ps.dets.n;
    ps.dets.p = NULL;
    ps.dets.n = 0;
    free_state(&ps);
    if (!*dets) return md_failc(err, MD_ERR_NOMEM, "%s: out of memory", name);
    return 0;
}

MD_API int md_coco_parse_dets(const char *buf, size_t len, const char *name, md_coco_det **dets, size_t *n, md_error *err) {
    return dets_from(NULL, buf, len, name ? name : "<memory>", dets, n, err);
}

MD_API int md_coco_load_dets(const char *path, md_coco_det **dets, size_t *n, md_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return md_failc(err, MD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    int rc = dets_from(f, NULL, 0, path, dets, n, err);
    fclose(f);
    return rc;
}

MD_API void md_coco_dets_free(md_coco_det *dets, size_t n) {
    for (size_t i = 0; dets && i < n; i++) md_mask_ann_free(&dets[i].segmentation);
    free(dets);
}

MD_API int md_coco_write_dets(const char *path, const md_coco_det *dets, size_t n, md_error *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return md_failc(err, MD_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        const md_coco_det *d = &dets[i];
        fprintf(f, "%s{\"image_id\":%lld,\"category_id\":%lld,\"bbox\":[%.17g,%.17g,%.17g,%.17g],\"score\":%.17g",
                i ? ",\n" : "\n", (long long)d->image_id, (long long)d->category_id, d->bbox[0], d->bbox[1],
                d->bbox[2], d->bbox[3], d->score);
        if (d->segmentation.kind == MD_MASK_ANN_RLE) {
            char *c = md_rle_to_string(&d->segmentation.rle);   /* 48..111: no JSON escapes except \\ */
            if (!c) {
                fclose(f);
                return md_failc(err, MD_ERR_NOMEM, "%s: out of memory", path);
            }
            fprintf(f, ",\"segmentation\":{\"size\":[%d,%d],\"counts\":\"", d->segmentation.rle.h,
                    d->segmentation.rle.w);
            for (const char *p = c; *p; p++) {
                if (*p == '\\') fputc('\\', f);
                fputc(*p, f);
            }
            fputs("\"}", f);
            free(c);
        }
        fputc('}', f);
    }
    fputs("\n]\n", f);
    if (ferror(f) | (fclose(f) != 0)) return md_failc(err, MD_ERR_IO, "%s: write error", path);
    return 0;
}
