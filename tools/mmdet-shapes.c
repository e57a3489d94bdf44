/* mmdet-shapes: writes a synthetic detection dataset (COCO or VOC layout).
 *
 * Each image has a textured or noisy background and 1..N filled shapes; the
 * class is the shape kind. Shapes are rasterised into an owner map (which
 * object each pixel shows), so every box is the tight box of the pixels the
 * object really shows after clipping and occlusion, and the area is their
 * count. A placement that would hide too much of an earlier object is
 * redrawn elsewhere, so no painted object goes unannotated.
 *
 * Every image draws from its own generator seeded by (seed, image id): the
 * output is byte-identical for a seed whatever the thread count. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <mmdet/ctx.h>
#include <mmdet/evaluation.h>
#include <mmdet/image.h>
#include <mmdet/tensor.h>

static const char *const CLASS_NAMES[] = {"rectangle", "ellipse", "triangle", "cross", "ring",
                                          "star", "diamond", "hexagon", "arrow", "semicircle"};
#define MAX_CLASSES 10
#define MAX_PTS 256
#define MAX_OBJS 250

typedef struct opts {
    const char *out;
    int n_train, n_val, classes;
    uint64_t seed;
    int voc;
    int min_size, max_size;      /* image side */
    int min_objs, max_objs;
    double obj_min, obj_max;     /* object extent before clipping */
    double png_frac, crowd_frac;
    int quality;
    double noise;                /* max per-image noise amplitude */
    int masks;
} opts;

/* ------------------------------------------------------------ strings */

typedef struct sbuf { char *s; size_t n, cap; int oom; } sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t ncap = b->cap ? b->cap * 2 : 4096;
        while (ncap < b->n + (size_t)k + 1) ncap *= 2;
        char *ns = realloc(b->s, ncap);
        if (!ns) { b->oom = 1; return; }
        b->s = ns; b->cap = ncap;
    }
}

/* ------------------------------------------------------------ geometry */

typedef struct pt { double x, y; } pt;
typedef struct shape {
    int cls;
    int n_cont;             /* 1, or 2 for the ring (outer, inner) */
    int start[2], len[2];
    pt p[MAX_PTS];
} shape;

static double uni(md_rng *r, double a, double b) { return a + (b - a) * md_rng_uniform(r); }

static void add_pt(shape *s, double x, double y) {
    int c = s->n_cont - 1;
    s->p[s->start[c] + s->len[c]] = (pt){x, y};
    s->len[c]++;
}
static void begin_contour(shape *s) {
    s->start[s->n_cont] = s->n_cont ? s->start[s->n_cont - 1] + s->len[s->n_cont - 1] : 0;
    s->len[s->n_cont] = 0;
    s->n_cont++;
}

static void ellipse_pts(shape *s, double a, double b, int n, int reverse) {
    for (int i = 0; i < n; i++) {
        double t = 2 * M_PI * (reverse ? n - i : i) / n;
        add_pt(s, a * cos(t), b * sin(t));
    }
}

/* Builds shape `cls` of extent `ext` in local coordinates, then rotates by
 * `rot` and moves to (cx, cy). Each kind keeps its own look: rectangles and
 * crosses stay nearly upright, diamonds stand on a corner. */
static void make_shape(shape *s, int cls, double ext, double cx, double cy, md_rng *r) {
    memset(s, 0, sizeof *s);
    s->cls = cls;
    begin_contour(s);
    double h = ext / 2, rot = 0;
    int nell = (int)fmin(96, fmax(16, ext / 2));
    switch (cls) {
    case 0: { /* rectangle */
        double ar = uni(r, 0.35, 1.0), a = h, b = h * ar;
        if (md_rng_uniform(r) < 0.5) { double t = a; a = b; b = t; }
        add_pt(s, -a, -b); add_pt(s, a, -b); add_pt(s, a, b); add_pt(s, -a, b);
        rot = uni(r, -0.26, 0.26);
        break;
    }
    case 1: /* ellipse */
        ellipse_pts(s, h, h * uni(r, 0.45, 1.0), nell, 0);
        rot = uni(r, 0, M_PI);
        break;
    case 2: /* triangle */
        for (int i = 0; i < 3; i++) {
            double t = -M_PI / 2 + i * 2 * M_PI / 3, rr = h * uni(r, 0.8, 1.0);
            add_pt(s, rr * cos(t), rr * sin(t));
        }
        rot = uni(r, 0, 2 * M_PI);
        break;
    case 3: { /* cross */
        double t = h * uni(r, 0.22, 0.34);
        double q[12][2] = {{-t, -h}, {t, -h}, {t, -t}, {h, -t}, {h, t}, {t, t},
                           {t, h}, {-t, h}, {-t, t}, {-h, t}, {-h, -t}, {-t, -t}};
        for (int i = 0; i < 12; i++) add_pt(s, q[i][0], q[i][1]);
        rot = uni(r, -0.35, 0.35);
        break;
    }
    case 4: { /* ring: outer and inner ellipse, filled even-odd */
        double b = h * uni(r, 0.8, 1.0), k = uni(r, 0.45, 0.65);
        ellipse_pts(s, h, b, nell, 0);
        begin_contour(s);
        ellipse_pts(s, h * k, b * k, nell, 1);
        rot = uni(r, 0, M_PI);
        break;
    }
    case 5: { /* five-pointed star */
        double inner = h * uni(r, 0.38, 0.5);
        for (int i = 0; i < 10; i++) {
            double t = -M_PI / 2 + i * M_PI / 5, rr = i % 2 ? inner : h;
            add_pt(s, rr * cos(t), rr * sin(t));
        }
        rot = uni(r, 0, 2 * M_PI);
        break;
    }
    case 6: { /* diamond: a rhombus standing on a corner */
        double b = h * uni(r, 0.5, 0.75);
        add_pt(s, 0, -h); add_pt(s, b, 0); add_pt(s, 0, h); add_pt(s, -b, 0);
        rot = uni(r, -0.17, 0.17);
        break;
    }
    case 7: /* hexagon */
        for (int i = 0; i < 6; i++) add_pt(s, h * cos(i * M_PI / 3), h * sin(i * M_PI / 3));
        rot = uni(r, 0, M_PI);
        break;
    case 8: { /* arrow pointing along +x */
        double sw = h * uni(r, 0.18, 0.28), hw = h * uni(r, 0.5, 0.7), hx = h * uni(r, 0.0, 0.35);
        double q[7][2] = {{-h, -sw}, {hx, -sw}, {hx, -hw}, {h, 0}, {hx, hw}, {hx, sw}, {-h, sw}};
        for (int i = 0; i < 7; i++) add_pt(s, q[i][0], q[i][1]);
        rot = uni(r, 0, 2 * M_PI);
        break;
    }
    default: { /* semicircle */
        int n = nell / 2 + 1;
        for (int i = 0; i < n; i++) {
            double t = M_PI * i / (n - 1);
            add_pt(s, h * cos(t), h * 0.5 - h * sin(t));   /* flat side down, centred */
        }
        rot = uni(r, 0, 2 * M_PI);
        break;
    }
    }
    double c = cos(rot), sn = sin(rot);
    int total = s->start[s->n_cont - 1] + s->len[s->n_cont - 1];
    for (int i = 0; i < total; i++) {
        double x = s->p[i].x, y = s->p[i].y;
        s->p[i].x = cx + c * x - sn * y;
        s->p[i].y = cy + sn * x + c * y;
    }
}

/* Even-odd scanline fill at pixel centres: pixel (x, y) is inside when
 * (x + .5, y + .5) is. Calls fn for each run [x0, x1) of row y. */
typedef void (*span_fn)(void *ud, int y, int x0, int x1);
static void fill_shape(const shape *s, int w, int h, span_fn fn, void *ud) {
    double ymin = 1e30, ymax = -1e30;
    int total = s->start[s->n_cont - 1] + s->len[s->n_cont - 1];
    for (int i = 0; i < total; i++) { ymin = fmin(ymin, s->p[i].y); ymax = fmax(ymax, s->p[i].y); }
    int y0 = (int)fmax(0, floor(ymin)), y1 = (int)fmin(h - 1, ceil(ymax));
    double xs[MAX_PTS];
    for (int y = y0; y <= y1; y++) {
        double yc = y + 0.5;
        int nx = 0;
        for (int c = 0; c < s->n_cont; c++) {
            const pt *p = s->p + s->start[c];
            int n = s->len[c];
            for (int i = 0; i < n; i++) {
                pt a = p[i], b = p[(i + 1) % n];
                if ((a.y <= yc && yc < b.y) || (b.y <= yc && yc < a.y))
                    xs[nx++] = a.x + (yc - a.y) * (b.x - a.x) / (b.y - a.y);
            }
        }
        for (int i = 1; i < nx; i++)   /* insertion sort: nx is small */
            for (int j = i; j > 0 && xs[j - 1] > xs[j]; j--) { double t = xs[j]; xs[j] = xs[j - 1]; xs[j - 1] = t; }
        for (int i = 0; i + 1 < nx; i += 2) {
            int xa = (int)ceil(xs[i] - 0.5), xb = (int)ceil(xs[i + 1] - 0.5);
            if (xa < 0) xa = 0;
            if (xb > w) xb = w;
            if (xa < xb) fn(ud, y, xa, xb);
        }
    }
}

/* Sutherland-Hodgman clip of one contour to [0,w]x[0,h]. */
static int clip_poly(const pt *in, int n, double w, double h, pt *out) {
    pt a[2 * MAX_PTS], b[2 * MAX_PTS];
    memcpy(a, in, sizeof(pt) * n);
    for (int edge = 0; edge < 4; edge++) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            pt p = a[i], q = a[(i + 1) % n];
            double dp, dq;
            switch (edge) {
            case 0: dp = p.x; dq = q.x; break;
            case 1: dp = w - p.x; dq = w - q.x; break;
            case 2: dp = p.y; dq = q.y; break;
            default: dp = h - p.y; dq = h - q.y; break;
            }
            if (dp >= 0) b[m++] = p;
            if ((dp >= 0) != (dq >= 0)) {
                double t = dp / (dp - dq);
                b[m++] = (pt){p.x + t * (q.x - p.x), p.y + t * (q.y - p.y)};
            }
        }
        n = m;
        memcpy(a, b, sizeof(pt) * n);
        if (n == 0) break;
    }
    memcpy(out, a, sizeof(pt) * n);
    return n;
}

/* ------------------------------------------------------------ images */

typedef struct object {
    int cls, crowd, truncated;
    int x0, y0, x1, y1;        /* tight box of visible pixels, [x0, x1) */
    long area, drawn;          /* visible and originally drawn pixel counts */
    char *segm;                /* JSON text of the segmentation */
} object;

typedef struct image_out {
    int id, w, h, png, n_obj;
    object obj[MAX_OBJS];
    int failed;
    char err[512];
} image_out;

typedef struct paint_ctx {
    int w;
    uint8_t *owner;            /* object index + 1 per pixel, 0 = background */
    long *covered;             /* per earlier object: pixels the new shape hides */
    long count;
    int x0, y0, x1, y1;
    uint8_t *rgb, color[3], id;
} paint_ctx;

static void count_span(void *ud, int y, int x0, int x1) {
    paint_ctx *p = ud;
    p->count += x1 - x0;
    if (x0 < p->x0) p->x0 = x0;
    if (x1 > p->x1) p->x1 = x1;
    if (y < p->y0) p->y0 = y;
    if (y + 1 > p->y1) p->y1 = y + 1;
    for (int x = x0; x < x1; x++) p->covered[p->owner[(size_t)y * p->w + x]]++;
}

static void paint_span(void *ud, int y, int x0, int x1) {
    paint_ctx *p = ud;
    for (int x = x0; x < x1; x++) {
        size_t i = (size_t)y * p->w + x;
        p->owner[i] = p->id;
        memcpy(p->rgb + 3 * i, p->color, 3);
    }
}

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint8_t clamp8(double v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lrint(v)); }

static void random_color(md_rng *r, uint8_t c[3]) {
    for (int k = 0; k < 3; k++) c[k] = (uint8_t)md_rng_int(r, 256);
}

/* Textured or noisy backgrounds, so that a detector cannot find shapes by
 * looking for any non-flat region. */
static void draw_background(md_image *img, md_rng *r) {
    int w = img->w, h = img->h;
    uint8_t *d = img->data;
    uint8_t c0[3], c1[3];
    random_color(r, c0);
    random_color(r, c1);
    int kind = (int)md_rng_int(r, 4);
    if (kind == 0) { /* smooth value noise: bilinear over a coarse random grid */
        int cell = 24 + (int)md_rng_int(r, 72);
        int gw = w / cell + 2, gh = h / cell + 2;
        double *g = malloc(sizeof(double) * gw * gh * 3);
        if (!g) { kind = 3; goto flat; }
        for (int i = 0; i < gw * gh * 3; i++) g[i] = md_rng_uniform(r) * 255;
        for (int y = 0; y < h; y++) {
            double fy = (double)y / cell;
            int iy = (int)fy;
            double ty = fy - iy;
            for (int x = 0; x < w; x++) {
                double fx = (double)x / cell;
                int ix = (int)fx;
                double tx = fx - ix;
                for (int k = 0; k < 3; k++) {
                    double v00 = g[(iy * gw + ix) * 3 + k], v01 = g[(iy * gw + ix + 1) * 3 + k];
                    double v10 = g[((iy + 1) * gw + ix) * 3 + k], v11 = g[((iy + 1) * gw + ix + 1) * 3 + k];
                    double v = (v00 * (1 - tx) + v01 * tx) * (1 - ty) + (v10 * (1 - tx) + v11 * tx) * ty;
                    d[((size_t)y * w + x) * 3 + k] = clamp8(v);
                }
            }
        }
        free(g);
        return;
    }
    if (kind == 1 || kind == 2) { /* gradient, or stripes/checks of two colours */
        double a = uni(r, 0, M_PI), ca = cos(a), sa = sin(a);
        double period = uni(r, 6, 30);
        int checker = kind == 2 && md_rng_uniform(r) < 0.4;
        double span = fabs(ca) * w + fabs(sa) * h + 1;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double u = ca * x + sa * y, t;
                if (kind == 1) t = (u + fabs(ca) * w + fabs(sa) * h) / (2 * span);
                else if (!checker) t = fmod(floor(u / period), 2) != 0;
                else t = ((int)floor(u / period) + (int)floor((-sa * x + ca * y) / period)) & 1;
                for (int k = 0; k < 3; k++)
                    d[((size_t)y * w + x) * 3 + k] = clamp8(c0[k] + (c1[k] - c0[k]) * fabs(t));
            }
        return;
    }
flat:
    (void)kind;
    for (size_t i = 0; i < (size_t)w * h; i++) memcpy(d + 3 * i, c0, 3);
}

/* Per-pixel noise from a fast local generator (triangular distribution). */
static void add_noise(md_image *img, double amp, uint64_t seed) {
    if (amp <= 0) return;
    uint64_t s = seed | 1;
    size_t n = (size_t)img->w * img->h * 3;
    int a = (int)lrint(amp * 65536.0 / 255);   /* t * a >> 16 == t * amp / 255 */
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        int t = (int)(s & 255) + (int)((s >> 8) & 255) - 255;   /* -255..255 */
        int v = img->data[i] + ((t * a + (1 << 15)) >> 16);
        img->data[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

static double luma(const uint8_t *c) { return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]; }

static char *polygon_json(const shape *s, int w, int h) {
    pt out[2 * MAX_PTS];
    int n = clip_poly(s->p + s->start[0], s->len[0], w, h, out);
    sbuf b = {0};
    sb_printf(&b, "[[");
    for (int i = 0; i < n; i++) sb_printf(&b, "%s%.2f,%.2f", i ? "," : "", out[i].x, out[i].y);
    sb_printf(&b, "]]");
    return b.oom ? (free(b.s), NULL) : b.s;
}

/* Uncompressed COCO RLE (column-major runs, starting with zeros) of the
 * pixels object `id` shows: crowd regions are given as masks in COCO. */
static char *rle_json(const uint8_t *owner, int w, int h, uint8_t id) {
    sbuf b = {0};
    sb_printf(&b, "{\"counts\":[");
    long run = 0;
    int cur = 0, first = 1;
    for (int x = 0; x < w; x++)
        for (int y = 0; y < h; y++) {
            int v = owner[(size_t)y * w + x] == id;
            if (v != cur) {
                sb_printf(&b, "%s%ld", first ? "" : ",", run);
                first = 0; run = 0; cur = v;
            }
            run++;
        }
    sb_printf(&b, "%s%ld],\"size\":[%d,%d]}", first ? "" : ",", run, h, w);
    return b.oom ? (free(b.s), NULL) : b.s;
}

static void gen_image(const opts *o, int id, const char *img_dir, const char *mask_dir, image_out *res) {
    md_rng r;
    md_rng_seed(&r, mix64(o->seed * 0x100000001B3ull + (uint64_t)id));
    res->id = id;
    int w = o->min_size + (int)md_rng_int(&r, o->max_size - o->min_size + 1);
    int h = o->min_size + (int)md_rng_int(&r, o->max_size - o->min_size + 1);
    res->w = w; res->h = h;
    res->png = !o->voc && md_rng_uniform(&r) < o->png_frac;
    md_error err = {0};
    md_image *img = md_image_new(h, w, 3, &err);
    uint8_t *owner = calloc((size_t)w * h, 1);
    if (!img || !owner) {
        res->failed = 1;
        snprintf(res->err, sizeof res->err, "image %d: out of memory", id);
        md_image_free(img); free(owner);
        return;
    }
    draw_background(img, &r);
    int want = o->min_objs + (int)md_rng_int(&r, o->max_objs - o->min_objs + 1);
    long covered[MAX_OBJS + 1];
    shape *s = malloc(sizeof *s);
    if (!s) { res->failed = 1; snprintf(res->err, sizeof res->err, "out of memory"); md_image_free(img); free(owner); return; }
    int n = 0;
    double lmin = log(o->obj_min), lmax = log(o->obj_max);
    for (int k = 0; k < want; k++) {
        int cls = (int)md_rng_int(&r, o->classes);
        /* The size is drawn once per object: a rejected placement moves the
         * shape, it does not shrink it (redrawing the size made every retry
         * a chance to come out small, so big objects were under-drawn). */
        double ext = exp(uni(&r, lmin, lmax));
        if (ext > 1.2 * (w > h ? w : h)) ext = 1.2 * (w > h ? w : h);
        for (int attempt = 0; attempt < 30; attempt++) {
            double cx = uni(&r, 0, w), cy = uni(&r, 0, h);
            make_shape(s, cls, ext, cx, cy, &r);
            paint_ctx pc = {.w = w, .owner = owner, .covered = covered, .x0 = w, .y0 = h, .x1 = 0, .y1 = 0};
            memset(covered, 0, sizeof(long) * (n + 1));
            fill_shape(s, w, h, count_span, &pc);
            /* The new shape must show enough of itself; earlier ones must
             * keep at least 35% of their pixels (and 12 pixels). */
            if (pc.count < 12 || pc.x1 - pc.x0 < 3 || pc.y1 - pc.y0 < 3) continue;
            int ok = 1;
            for (int j = 0; j < n && ok; j++) {
                long left = res->obj[j].area - covered[j + 1];
                if (left < 12 || left < 0.35 * res->obj[j].drawn) ok = 0;
            }
            if (!ok) continue;
            /* A colour that stands out from the background under it. */
            uint8_t col[3];
            int cx_i = (int)fmin(w - 1, fmax(0, cx)), cy_i = (int)fmin(h - 1, fmax(0, cy));
            const uint8_t *under = img->data + ((size_t)cy_i * w + cx_i) * 3;
            for (int t = 0; t < 20; t++) {
                random_color(&r, col);
                if (fabs(luma(col) - luma(under)) >= 50) break;
            }
            pc.rgb = img->data;
            memcpy(pc.color, col, 3);
            pc.id = (uint8_t)(n + 1);
            fill_shape(s, w, h, paint_span, &pc);
            for (int j = 0; j < n; j++) res->obj[j].area -= covered[j + 1];
            object *ob = &res->obj[n];
            memset(ob, 0, sizeof *ob);
            ob->cls = cls;
            ob->area = ob->drawn = pc.count;
            ob->crowd = o->crowd_frac > 0 && md_rng_uniform(&r) < o->crowd_frac;
            double bx0 = 1e30, by0 = 1e30, bx1 = -1e30, by1 = -1e30;
            for (int i = 0; i < s->len[0]; i++) {
                bx0 = fmin(bx0, s->p[i].x); bx1 = fmax(bx1, s->p[i].x);
                by0 = fmin(by0, s->p[i].y); by1 = fmax(by1, s->p[i].y);
            }
            ob->truncated = bx0 < 0 || by0 < 0 || bx1 > w || by1 > h;
            ob->segm = ob->crowd ? NULL : polygon_json(s, w, h);
            n++;
            break;
        }
    }
    free(s);
    /* Tight boxes from the final owner map. */
    for (int j = 0; j < n; j++) { res->obj[j].x0 = w; res->obj[j].y0 = h; res->obj[j].x1 = 0; res->obj[j].y1 = 0; }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int v = owner[(size_t)y * w + x];
            if (!v) continue;
            object *ob = &res->obj[v - 1];
            if (x < ob->x0) ob->x0 = x;
            if (x + 1 > ob->x1) ob->x1 = x + 1;
            if (y < ob->y0) ob->y0 = y;
            if (y + 1 > ob->y1) ob->y1 = y + 1;
        }
    /* Crowd regions, and with --masks every object whose outline is not
     * what the image shows (partly hidden by a later object, or a ring,
     * whose hole a COCO polygon cannot leave out), get the RLE of the
     * pixels they show; the others keep their outline polygon. */
    for (int j = 0; j < n; j++) {
        object *ob = &res->obj[j];
        if (ob->crowd || (mask_dir && (ob->area < ob->drawn || ob->cls == 4))) {
            free(ob->segm);
            ob->segm = rle_json(owner, w, h, (uint8_t)(j + 1));
        }
    }
    res->n_obj = n;
    add_noise(img, o->noise * md_rng_uniform(&r), md_rng_u64(&r));

    char path[4096];
    snprintf(path, sizeof path, "%s/%06d.%s", img_dir, id, res->png ? "png" : "jpg");
    int rc = res->png ? md_image_write_png(img, path, &err) : md_image_write_jpeg(img, path, o->quality, &err);
    if (!rc && mask_dir) {
        md_image m = {.h = h, .w = w, .c = 1, .data = owner};
        snprintf(path, sizeof path, "%s/%06d.png", mask_dir, id);
        rc = md_image_write_png(&m, path, &err);
    }
    if (rc) {
        res->failed = 1;
        snprintf(res->err, sizeof res->err, "%s", err.msg);
    }
    for (int j = 0; j < n && !res->failed; j++)
        if (!res->obj[j].segm) { res->failed = 1; snprintf(res->err, sizeof res->err, "image %d: out of memory", id); }
    md_image_free(img);
    free(owner);
}

/* ------------------------------------------------------------ writers */

static int write_text(const char *path, const sbuf *b) {
    if (b->oom) { fprintf(stderr, "mmdet-shapes: out of memory building %s\n", path); return -1; }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->s, 1, b->n, f) != b->n || fclose(f)) {
        fprintf(stderr, "mmdet-shapes: %s: cannot write: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int write_coco(const opts *o, const char *split, image_out *imgs, int n) {
    sbuf b = {0};
    sb_printf(&b, "{\"info\":{\"description\":\"synthetic shapes\",\"version\":\"1.0\",\"seed\":%llu,"
                  "\"split\":\"%s\"},\"licenses\":[],\n\"images\":[",
              (unsigned long long)o->seed, split);
    for (int i = 0; i < n; i++)
        sb_printf(&b, "%s\n{\"id\":%d,\"file_name\":\"%06d.%s\",\"width\":%d,\"height\":%d}", i ? "," : "",
                  imgs[i].id, imgs[i].id, imgs[i].png ? "png" : "jpg", imgs[i].w, imgs[i].h);
    sb_printf(&b, "],\n\"annotations\":[");
    long aid = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < imgs[i].n_obj; j++) {
            const object *ob = &imgs[i].obj[j];
            sb_printf(&b, "%s\n{\"id\":%ld,\"image_id\":%d,\"category_id\":%d,\"bbox\":[%d,%d,%d,%d],"
                          "\"area\":%ld,\"iscrowd\":%d,\"segmentation\":%s}",
                      aid ? "," : "", aid + 1, imgs[i].id, ob->cls + 1, ob->x0, ob->y0, ob->x1 - ob->x0,
                      ob->y1 - ob->y0, ob->area, ob->crowd, ob->segm);
            aid++;
        }
    sb_printf(&b, "],\n\"categories\":[");
    for (int k = 0; k < o->classes; k++)
        sb_printf(&b, "%s\n{\"id\":%d,\"name\":\"%s\",\"supercategory\":\"shape\"}", k ? "," : "", k + 1, CLASS_NAMES[k]);
    sb_printf(&b, "]}\n");
    char path[4096];
    snprintf(path, sizeof path, "%s/annotations/instances_%s.json", o->out, split);
    int rc = write_text(path, &b);
    free(b.s);
    return rc;
}

static int write_voc(const opts *o, const char *split, image_out *imgs, int n) {
    char path[4096];
    sbuf list = {0};
    for (int i = 0; i < n; i++) {
        sb_printf(&list, "%06d\n", imgs[i].id);
        sbuf b = {0};
        sb_printf(&b, "<annotation>\n\t<folder>JPEGImages</folder>\n\t<filename>%06d.jpg</filename>\n"
                      "\t<size>\n\t\t<width>%d</width>\n\t\t<height>%d</height>\n\t\t<depth>3</depth>\n\t</size>\n"
                      "\t<segmented>0</segmented>\n",
                  imgs[i].id, imgs[i].w, imgs[i].h);
        for (int j = 0; j < imgs[i].n_obj; j++) {
            const object *ob = &imgs[i].obj[j];
            /* VOC boxes are 1-based and inclusive. */
            sb_printf(&b, "\t<object>\n\t\t<name>%s</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>%d</truncated>\n"
                          "\t\t<difficult>%d</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>%d</xmin>\n\t\t\t<ymin>%d</ymin>\n"
                          "\t\t\t<xmax>%d</xmax>\n\t\t\t<ymax>%d</ymax>\n\t\t</bndbox>\n\t</object>\n",
                      CLASS_NAMES[ob->cls], ob->truncated, ob->crowd, ob->x0 + 1, ob->y0 + 1, ob->x1, ob->y1);
        }
        sb_printf(&b, "</annotation>\n");
        snprintf(path, sizeof path, "%s/Annotations/%06d.xml", o->out, imgs[i].id);
        int rc = write_text(path, &b);
        free(b.s);
        if (rc) { free(list.s); return -1; }
    }
    snprintf(path, sizeof path, "%s/ImageSets/Main/%s.txt", o->out, split);
    int rc = list.s ? write_text(path, &list) : write_text(path, &(sbuf){.s = "", .n = 0});
    free(list.s);
    return rc;
}

static int run_split(const opts *o, const char *split, int first_id, int n) {
    char img_dir[4096], mask_dir[4096];
    if (o->voc) snprintf(img_dir, sizeof img_dir, "%s/JPEGImages", o->out);
    else snprintf(img_dir, sizeof img_dir, "%s/%s", o->out, split);
    snprintf(mask_dir, sizeof mask_dir, o->voc ? "%s/masks" : "%s/masks/%s", o->out, split);
    md_error err;
    md_error_clear(&err);
    if (md_fs_mkdirs(img_dir, &err) || (o->masks && md_fs_mkdirs(mask_dir, &err))) {
        fprintf(stderr, "mmdet-shapes: %s\n", err.msg);
        return -1;
    }
    image_out *imgs = calloc(n ? n : 1, sizeof *imgs);
    if (!imgs) { fprintf(stderr, "mmdet-shapes: out of memory for %d images\n", n); return -1; }
    /* mmcv's progress bar on stderr, one per split */
    md_progress bar;
    md_progress_start(&bar, n > 0 ? stderr : NULL, n);
#pragma omp parallel for schedule(dynamic, 4)
    for (int i = 0; i < n; i++) {
        gen_image(o, first_id + i, img_dir, o->masks ? mask_dir : NULL, &imgs[i]);
#pragma omp critical(shapes_progress)
        md_progress_update(&bar, 1);
    }
    md_progress_finish(&bar);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        if (imgs[i].failed) {
            fprintf(stderr, "mmdet-shapes: %s\n", imgs[i].err);
            rc = -1;
        }
    if (!rc) rc = o->voc ? write_voc(o, split, imgs, n) : write_coco(o, split, imgs, n);
    long nobj = 0;
    for (int i = 0; i < n; i++) {
        nobj += imgs[i].n_obj;
        for (int j = 0; j < imgs[i].n_obj; j++) free(imgs[i].obj[j].segm);
    }
    free(imgs);
    if (!rc) printf("%s: %d images, %ld objects\n", split, n, nobj);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: mmdet-shapes --out DIR [options]\n"
            "Writes a synthetic detection dataset of %d shape classes.\n"
            "  --train N          training images (default 1000)\n"
            "  --val M            validation images (default 200)\n"
            "  --classes K        number of classes, 1..%d (default 5)\n"
            "  --seed S           random seed (default 0); same seed, same bytes\n"
            "  --format coco|voc  layout (default coco)\n"
            "  --min-size PX      smallest image side (default 160)\n"
            "  --max-size PX      largest image side (default 320)\n"
            "  --min-objs N       fewest objects per image (default 1)\n"
            "  --max-objs N       most objects per image (default 6, at most %d)\n"
            "  --obj-min PX       smallest object extent (default 16)\n"
            "  --obj-max PX       largest object extent (default 160)\n"
            "  --full-range       objects of 8..300 px (same as --obj-min 8 --obj-max 300)\n"
            "  --png-frac F       fraction of images written as PNG (default 0.1; coco only)\n"
            "  --crowd-frac F     fraction of objects marked iscrowd (default 0)\n"
            "  --quality Q        JPEG quality (default 90)\n"
            "  --noise A          largest per-pixel noise amplitude (default 12; 0 for none)\n"
            "  --masks            also write instance masks (PNG, pixel = object index in the image), and\n"
            "                     make each segmentation the pixels its object shows: the outline polygon,\n"
            "                     or the RLE of the visible pixels for a partly hidden object or a ring\n",
            MAX_CLASSES, MAX_CLASSES, MAX_OBJS);
}

static int parse_int(const char *name, const char *v, int lo, int hi, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        fprintf(stderr, "mmdet-shapes: %s: expected an integer in [%d, %d], got '%s'\n", name, lo, hi, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}
static int parse_dbl(const char *name, const char *v, double lo, double hi, double *out) {
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "mmdet-shapes: %s: expected a number in [%g, %g], got '%s'\n", name, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

int main(int argc, char **argv) {
    md_process_init(argc, argv);
    opts o = {.n_train = 1000, .n_val = 200, .classes = 5, .min_size = 160, .max_size = 320, .min_objs = 1,
              .max_objs = 6, .obj_min = 16, .obj_max = 160, .png_frac = 0.1, .quality = 90, .noise = 12};
    static const struct option lo[] = {
        {"out", 1, 0, 'o'}, {"train", 1, 0, 't'}, {"val", 1, 0, 'v'}, {"classes", 1, 0, 'k'},
        {"seed", 1, 0, 's'}, {"format", 1, 0, 'f'}, {"min-size", 1, 0, 1}, {"max-size", 1, 0, 2},
        {"min-objs", 1, 0, 3}, {"max-objs", 1, 0, 4}, {"obj-min", 1, 0, 5}, {"obj-max", 1, 0, 6},
        {"full-range", 0, 0, 7}, {"png-frac", 1, 0, 8}, {"crowd-frac", 1, 0, 9}, {"quality", 1, 0, 10},
        {"noise", 1, 0, 11}, {"masks", 0, 0, 12}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c, bad = 0;
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'o': o.out = optarg; break;
        case 't': bad |= parse_int("--train", optarg, 0, 10000000, &o.n_train); break;
        case 'v': bad |= parse_int("--val", optarg, 0, 10000000, &o.n_val); break;
        case 'k': bad |= parse_int("--classes", optarg, 1, MAX_CLASSES, &o.classes); break;
        case 's': {
            char *end;
            o.seed = strtoull(optarg, &end, 10);
            if (!*optarg || *end) { fprintf(stderr, "mmdet-shapes: --seed: expected an integer, got '%s'\n", optarg); bad = 1; }
            break;
        }
        case 'f':
            if (!strcmp(optarg, "coco")) o.voc = 0;
            else if (!strcmp(optarg, "voc")) o.voc = 1;
            else { fprintf(stderr, "mmdet-shapes: --format: expected coco or voc, got '%s'\n", optarg); bad = 1; }
            break;
        case 1: bad |= parse_int("--min-size", optarg, 16, 4096, &o.min_size); break;
        case 2: bad |= parse_int("--max-size", optarg, 16, 4096, &o.max_size); break;
        case 3: bad |= parse_int("--min-objs", optarg, 0, MAX_OBJS, &o.min_objs); break;
        case 4: bad |= parse_int("--max-objs", optarg, 0, MAX_OBJS, &o.max_objs); break;
        case 5: bad |= parse_dbl("--obj-min", optarg, 4, 4096, &o.obj_min); break;
        case 6: bad |= parse_dbl("--obj-max", optarg, 4, 4096, &o.obj_max); break;
        case 7: o.obj_min = 8; o.obj_max = 300; break;
        case 8: bad |= parse_dbl("--png-frac", optarg, 0, 1, &o.png_frac); break;
        case 9: bad |= parse_dbl("--crowd-frac", optarg, 0, 1, &o.crowd_frac); break;
        case 10: bad |= parse_int("--quality", optarg, 1, 100, &o.quality); break;
        case 11: bad |= parse_dbl("--noise", optarg, 0, 255, &o.noise); break;
        case 12: o.masks = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (bad) return 2;
    if (!o.out || optind < argc) {
        if (!o.out) fprintf(stderr, "mmdet-shapes: --out DIR is required\n");
        else fprintf(stderr, "mmdet-shapes: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (o.min_size > o.max_size || o.min_objs > o.max_objs || o.obj_min > o.obj_max) {
        fprintf(stderr, "mmdet-shapes: a --min-* value exceeds its --max-* value\n");
        return 2;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, o.voc ? "%s/ImageSets/Main" : "%s/annotations", o.out);
    md_error err;
    md_error_clear(&err);
    if (md_fs_mkdirs(dir, &err) ||
        (o.voc && (snprintf(dir, sizeof dir, "%s/Annotations", o.out), md_fs_mkdirs(dir, &err)))) {
        fprintf(stderr, "mmdet-shapes: %s\n", err.msg);
        return 1;
    }
    if (run_split(&o, "train", 1, o.n_train) || run_split(&o, "val", 1 + o.n_train, o.n_val)) return 1;
    return 0;
}
