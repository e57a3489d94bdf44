/* Drawing through cairo (shapes) and pango (text), mmdet's palettes and
 * imshow_det_bboxes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cairo.h>
#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <pango/pangocairo.h>
#include "internal.h"
#include "mmdet/draw.h"
#include "mmdet/masks.h"

/* matplotlib's figure.dpi: mmdet's sizes are points on a canvas of the
 * image's size in pixels. */
#define PT (100.0 / 72.0)

typedef enum { CV_IMAGE, CV_PNG, CV_PDF, CV_SVG } cv_kind;

struct md_canvas {
    cv_kind kind;
    cairo_surface_t *s;
    cairo_t *cr;
    md_image *img;   /* CV_IMAGE */
    char *path;      /* files */
};

/* ------------------------------------------------------------- canvas */

static md_canvas *canvas_alloc(md_error *err) {
    md_canvas *cv = calloc(1, sizeof *cv);
    if (!cv) md_failc(err, MD_ERR_NOMEM, "out of memory");
    return cv;
}

static int canvas_start(md_canvas *cv, const char *what, md_error *err) {
    if (cairo_surface_status(cv->s) != CAIRO_STATUS_SUCCESS) {
        md_failc(err, MD_ERR_IO, "%s: %s", what, cairo_status_to_string(cairo_surface_status(cv->s)));
        return -1;
    }
    cv->cr = cairo_create(cv->s);
    if (cairo_status(cv->cr) != CAIRO_STATUS_SUCCESS) {
        md_failc(err, MD_ERR_NOMEM, "%s: %s", what, cairo_status_to_string(cairo_status(cv->cr)));
        return -1;
    }
    cairo_set_antialias(cv->cr, CAIRO_ANTIALIAS_GRAY);
    return 0;
}

MD_API void md_canvas_free(md_canvas *cv) {
    if (!cv) return;
    if (cv->cr) cairo_destroy(cv->cr);
    if (cv->s) cairo_surface_destroy(cv->s);
    free(cv->path);
    free(cv);
}

MD_API md_canvas *md_canvas_on_image(md_image *img, md_error *err) {
    if (!img || img->h < 1 || img->w < 1 || !(img->c == 1 || img->c == 3 || img->c == 4)) {
        md_failc(err, MD_ERR_SHAPE, "drawing needs an image of 1, 3 or 4 channels, got %dx%dx%d", img ? img->h : 0,
                 img ? img->w : 0, img ? img->c : 0);
        return NULL;
    }
    md_canvas *cv = canvas_alloc(err);
    if (!cv) return NULL;
    cv->kind = CV_IMAGE;
    cv->img = img;
    cv->s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, img->w, img->h);
    if (canvas_start(cv, "drawing surface", err)) {
        md_canvas_free(cv);
        return NULL;
    }
    cairo_surface_flush(cv->s);
    uint8_t *base = cairo_image_surface_get_data(cv->s);
    int stride = cairo_image_surface_get_stride(cv->s);
    for (int y = 0; y < img->h; y++) {
        uint32_t *row = (uint32_t *)(void *)(base + (size_t)y * (size_t)stride);
        const uint8_t *p = img->data + (size_t)y * (size_t)img->w * (size_t)img->c;
        for (int x = 0; x < img->w; x++, p += img->c) {
            uint32_t r = p[0], g = p[img->c == 1 ? 0 : 1], b = p[img->c == 1 ? 0 : 2];
            row[x] = 0xff000000u | r << 16 | g << 8 | b;
        }
    }
    cairo_surface_mark_dirty(cv->s);
    return cv;
}

MD_API md_canvas *md_canvas_new_file(const char *path, double w, double h, md_error *err) {
    const char *dot = strrchr(path, '.');
    cv_kind kind;
    if (dot && !strcasecmp(dot, ".png")) kind = CV_PNG;
    else if (dot && !strcasecmp(dot, ".pdf")) kind = CV_PDF;
    else if (dot && !strcasecmp(dot, ".svg")) kind = CV_SVG;
    else {
        md_failc(err, MD_ERR_CONFIG, "%s: unknown picture format (the name must end in .png, .pdf or .svg)", path);
        return NULL;
    }
    if (!(w >= 1 && h >= 1 && w <= 32767 && h <= 32767)) {
        md_failc(err, MD_ERR_CONFIG, "%s: bad canvas size %gx%g", path, w, h);
        return NULL;
    }
    md_canvas *cv = canvas_alloc(err);
    if (!cv) return NULL;
    cv->kind = kind;
    if (!(cv->path = strdup(path))) {
        md_canvas_free(cv);
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (kind == CV_PNG) cv->s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)ceil(w), (int)ceil(h));
    else if (kind == CV_PDF) cv->s = cairo_pdf_surface_create(path, w, h);
    else cv->s = cairo_svg_surface_create(path, w, h);
    if (canvas_start(cv, path, err)) {
        md_canvas_free(cv);
        return NULL;
    }
    cairo_set_source_rgb(cv->cr, 1, 1, 1);
    cairo_paint(cv->cr);
    return cv;
}

MD_API int md_canvas_finish(md_canvas *cv, md_error *err) {
    if (!cv) return md_failc(err, MD_ERR_GENERIC, "no canvas");
    const char *what = cv->path ? cv->path : "drawing";
    cairo_status_t st = cairo_status(cv->cr);
    int rc = 0;
    if (st != CAIRO_STATUS_SUCCESS) {
        rc = md_failc(err, MD_ERR_GENERIC, "%s: %s", what, cairo_status_to_string(st));
    } else if (cv->kind == CV_IMAGE) {
        cairo_surface_flush(cv->s);
        const uint8_t *base = cairo_image_surface_get_data(cv->s);
        int stride = cairo_image_surface_get_stride(cv->s);
        md_image *img = cv->img;
        for (int y = 0; y < img->h; y++) {
            const uint32_t *row = (const uint32_t *)(const void *)(base + (size_t)y * (size_t)stride);
            uint8_t *p = img->data + (size_t)y * (size_t)img->w * (size_t)img->c;
            for (int x = 0; x < img->w; x++, p += img->c) {
                uint8_t r = (uint8_t)(row[x] >> 16), g = (uint8_t)(row[x] >> 8), b = (uint8_t)row[x];
                if (img->c == 1) {
                    p[0] = (uint8_t)lround(0.299 * r + 0.587 * g + 0.114 * b);
                } else {
                    p[0] = r;
                    p[1] = g;
                    p[2] = b;
                }
            }
        }
    } else if (cv->kind == CV_PNG) {
        st = cairo_surface_write_to_png(cv->s, cv->path);
        if (st != CAIRO_STATUS_SUCCESS)
            rc = md_failc(err, MD_ERR_IO, "cannot write %s: %s", cv->path, cairo_status_to_string(st));
    } else {
        cairo_destroy(cv->cr);
        cv->cr = NULL;
        cairo_surface_finish(cv->s);   /* writes the PDF or SVG */
        st = cairo_surface_status(cv->s);
        if (st != CAIRO_STATUS_SUCCESS)
            rc = md_failc(err, MD_ERR_IO, "cannot write %s: %s", cv->path, cairo_status_to_string(st));
    }
    md_canvas_free(cv);
    return rc;
}

/* ------------------------------------------------------------- shapes */

static void source(cairo_t *cr, md_color c) {
    cairo_set_source_rgba(cr, c.r / 255.0, c.g / 255.0, c.b / 255.0, c.a / 255.0);
}

MD_API void md_draw_line(md_canvas *cv, double x1, double y1, double x2, double y2, md_color c, double width) {
    const double xy[4] = { x1, y1, x2, y2 };
    md_draw_polyline(cv, xy, 2, c, width);
}

MD_API void md_draw_polyline(md_canvas *cv, const double *xy, int n, md_color c, double width) {
    if (!cv || n < 2) return;
    cairo_t *cr = cv->cr;
    cairo_new_path(cr);
    for (int i = 0; i < n; i++) cairo_line_to(cr, xy[2 * i], xy[2 * i + 1]);
    cairo_set_line_width(cr, width);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    source(cr, c);
    cairo_stroke(cr);
}

MD_API void md_draw_rect(md_canvas *cv, double x1, double y1, double x2, double y2, md_color c, double width) {
    if (!cv) return;
    cairo_t *cr = cv->cr;
    cairo_new_path(cr);
    cairo_rectangle(cr, fmin(x1, x2), fmin(y1, y2), fabs(x2 - x1), fabs(y2 - y1));
    cairo_set_line_width(cr, width);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_MITER);
    source(cr, c);
    cairo_stroke(cr);
}

MD_API void md_draw_fill_rect(md_canvas *cv, double x1, double y1, double x2, double y2, md_color c) {
    if (!cv) return;
    cairo_new_path(cv->cr);
    cairo_rectangle(cv->cr, fmin(x1, x2), fmin(y1, y2), fabs(x2 - x1), fabs(y2 - y1));
    source(cv->cr, c);
    cairo_fill(cv->cr);
}

MD_API void md_draw_circle(md_canvas *cv, double x, double y, double radius, md_color c) {
    if (!cv) return;
    cairo_new_path(cv->cr);
    cairo_arc(cv->cr, x, y, radius, 0, 2 * M_PI);
    source(cv->cr, c);
    cairo_fill(cv->cr);
}

/* --------------------------------------------------------------- text */

/* A layout whose metrics do not depend on the target: no hinting, glyphs
 * at their exact positions, grayscale anti-aliasing. */
static PangoLayout *layout_new(cairo_t *cr, const char *text, double size) {
    PangoLayout *l = pango_cairo_create_layout(cr);
    PangoContext *pc = pango_layout_get_context(l);
    cairo_font_options_t *fo = cairo_font_options_create();
    cairo_font_options_set_antialias(fo, CAIRO_ANTIALIAS_GRAY);
    cairo_font_options_set_hint_style(fo, CAIRO_HINT_STYLE_NONE);
    cairo_font_options_set_hint_metrics(fo, CAIRO_HINT_METRICS_OFF);
    pango_cairo_context_set_font_options(pc, fo);
    cairo_font_options_destroy(fo);
    pango_context_set_round_glyph_positions(pc, FALSE);
    pango_layout_context_changed(l);
    PangoFontDescription *fd = pango_font_description_from_string("DejaVu Sans");
    pango_font_description_set_absolute_size(fd, (size > 0 ? size : 1) * PANGO_SCALE);
    pango_layout_set_font_description(l, fd);
    pango_font_description_free(fd);
    gchar *valid = g_utf8_make_valid(text ? text : "", -1);
    pango_layout_set_text(l, valid, -1);
    g_free(valid);
    return l;
}

static void layout_size(PangoLayout *l, double *w, double *h, double *ox, double *oy) {
    PangoRectangle logical;
    pango_layout_get_extents(l, NULL, &logical);
    *w = (double)logical.width / PANGO_SCALE;
    *h = (double)logical.height / PANGO_SCALE;
    if (ox) *ox = (double)logical.x / PANGO_SCALE;
    if (oy) *oy = (double)logical.y / PANGO_SCALE;
}

MD_API void md_draw_text_size(const char *text, double size, double *w, double *h) {
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_A8, 1, 1);
    cairo_t *cr = cairo_create(s);
    PangoLayout *l = layout_new(cr, text, size);
    double tw, th;
    layout_size(l, &tw, &th, NULL, NULL);
    if (w) *w = tw;
    if (h) *h = th;
    g_object_unref(l);
    cairo_destroy(cr);
    cairo_surface_destroy(s);
}

MD_API void md_draw_text(md_canvas *cv, double x, double y, const char *text, double size, md_color c, double ax,
                         double ay) {
    if (!cv) return;
    PangoLayout *l = layout_new(cv->cr, text, size);
    double w, h, ox, oy;
    layout_size(l, &w, &h, &ox, &oy);
    cairo_new_path(cv->cr);
    cairo_move_to(cv->cr, x - ax * w - ox, y - ay * h - oy);
    source(cv->cr, c);
    pango_cairo_show_layout(cv->cr, l);
    g_object_unref(l);
}

/* ------------------------------------------------------------ palettes */

static const uint8_t coco_palette[80][3] = {
    { 220, 20, 60 },   { 119, 11, 32 },   { 0, 0, 142 },     { 0, 0, 230 },     { 106, 0, 228 },   { 0, 60, 100 },
    { 0, 80, 100 },    { 0, 0, 70 },      { 0, 0, 192 },     { 250, 170, 30 },  { 100, 170, 30 },  { 220, 220, 0 },
    { 175, 116, 175 }, { 250, 0, 30 },    { 165, 42, 42 },   { 255, 77, 255 },  { 0, 226, 252 },   { 182, 182, 255 },
    { 0, 82, 0 },      { 120, 166, 157 }, { 110, 76, 0 },    { 174, 57, 255 },  { 199, 100, 0 },   { 72, 0, 118 },
    { 255, 179, 240 }, { 0, 125, 92 },    { 209, 0, 151 },   { 188, 208, 182 }, { 0, 220, 176 },   { 255, 99, 164 },
    { 92, 0, 73 },     { 133, 129, 255 }, { 78, 180, 255 },  { 0, 228, 0 },     { 174, 255, 243 }, { 45, 89, 255 },
    { 134, 134, 103 }, { 145, 148, 174 }, { 255, 208, 186 }, { 197, 226, 255 }, { 171, 134, 1 },   { 109, 63, 54 },
    { 207, 138, 255 }, { 151, 0, 95 },    { 9, 80, 61 },     { 84, 105, 51 },   { 74, 65, 105 },   { 166, 196, 102 },
    { 208, 195, 210 }, { 255, 109, 65 },  { 0, 143, 149 },   { 179, 0, 194 },   { 209, 99, 106 },  { 5, 121, 0 },
    { 227, 255, 205 }, { 147, 186, 208 }, { 153, 69, 1 },    { 3, 95, 161 },    { 163, 255, 0 },   { 119, 0, 170 },
    { 0, 182, 199 },   { 0, 165, 120 },   { 183, 130, 88 },  { 95, 32, 0 },     { 130, 114, 135 }, { 110, 129, 133 },
    { 166, 74, 118 },  { 219, 142, 185 }, { 79, 210, 114 },  { 178, 90, 62 },   { 65, 70, 15 },    { 127, 167, 115 },
    { 59, 105, 106 },  { 142, 108, 45 },  { 196, 172, 0 },   { 95, 54, 80 },    { 128, 76, 255 },  { 201, 57, 1 },
    { 246, 0, 122 },   { 191, 162, 208 },
};
static const uint8_t voc_palette[20][3] = {
    { 106, 0, 228 }, { 119, 11, 32 },   { 165, 42, 42 }, { 0, 0, 192 },     { 197, 226, 255 },
    { 0, 60, 100 },  { 0, 0, 142 },     { 255, 77, 255 }, { 153, 69, 1 },   { 120, 166, 157 },
    { 0, 182, 199 }, { 0, 226, 252 },   { 182, 182, 255 }, { 0, 0, 230 },   { 220, 20, 60 },
    { 163, 255, 0 }, { 0, 82, 0 },      { 3, 95, 161 },   { 0, 80, 100 },   { 183, 130, 88 },
};
static const uint8_t citys_palette[8][3] = {
    { 220, 20, 60 }, { 255, 0, 0 }, { 0, 0, 142 }, { 0, 0, 70 }, { 0, 60, 100 }, { 0, 80, 100 }, { 0, 0, 230 },
    { 119, 11, 32 },
};

MD_API const uint8_t *md_palette_table(const char *name, int *n) {
    if (!name) return NULL;
    if (!strcmp(name, "coco")) return *n = 80, coco_palette[0];
    if (!strcmp(name, "voc")) return *n = 20, voc_palette[0];
    if (!strcmp(name, "citys")) return *n = 8, citys_palette[0];
    return NULL;
}

/* MT19937 (Matsumoto and Nishimura), seeded as numpy's legacy seed(int). */
typedef struct mt { uint32_t s[624]; int i; } mt;
static void mt_seed(mt *m, uint32_t seed) {
    m->s[0] = seed;
    for (int i = 1; i < 624; i++) m->s[i] = 1812433253u * (m->s[i - 1] ^ (m->s[i - 1] >> 30)) + (uint32_t)i;
    m->i = 624;
}
static uint32_t mt_next(mt *m) {
    if (m->i >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (m->s[k] & 0x80000000u) | (m->s[(k + 1) % 624] & 0x7fffffffu);
            m->s[k] = m->s[(k + 397) % 624] ^ (y >> 1) ^ (y & 1 ? 0x9908b0dfu : 0);
        }
        m->i = 0;
    }
    uint32_t y = m->s[m->i++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}

MD_API int md_palette_get(const char *name, int n, uint8_t *rgb, md_error *err) {
    if (n < 0) return md_failc(err, MD_ERR_CONFIG, "palette: negative number of classes %d", n);
    if (!name || !strcmp(name, "random")) {
        /* randint(0, 256) draws 32-bit words masked to 8 bits (nothing is
         * rejected for a range of 256) */
        mt m;
        mt_seed(&m, 42);
        for (int i = 0; i < 3 * n; i++) rgb[i] = (uint8_t)(mt_next(&m) & 0xff);
        return 0;
    }
    int len = 0;
    const uint8_t *t = md_palette_table(name, &len);
    if (t) {
        if (len < n)
            return md_failc(err, MD_ERR_CONFIG, "palette '%s' has %d colours, %d classes need more", name, len, n);
        memcpy(rgb, t, 3 * (size_t)n);
        return 0;
    }
    static const struct { const char *name; uint8_t rgb[3]; } named[] = {
        { "red", { 255, 0, 0 } },      { "green", { 0, 255, 0 } },   { "blue", { 0, 0, 255 } },
        { "cyan", { 0, 255, 255 } },   { "yellow", { 255, 255, 0 } }, { "magenta", { 255, 0, 255 } },
        { "white", { 255, 255, 255 } }, { "black", { 0, 0, 0 } },
    };
    for (size_t k = 0; k < sizeof named / sizeof named[0]; k++)
        if (!strcmp(name, named[k].name)) {
            for (int i = 0; i < n; i++) memcpy(rgb + 3 * i, named[k].rgb, 3);
            return 0;
        }
    return md_failc(err, MD_ERR_CONFIG,
                    "unknown palette '%s' (random, coco, voc, citys, or red, green, blue, cyan, yellow, magenta, "
                    "white, black)", name);
}

/* ---------------------------------------------------------- detections */

static bool shown(const md_det_result *det, int i, float thr) { return thr <= 0 || det->bboxes[5 * i + 4] > thr; }

/* mmdet's draw_masks: the blend under each mask, then a white edge at 0.8
 * along every mask's border pixels (mmdet strokes the contour polygons). A
 * colour taken by an earlier mask is moved by a bias in [-30, 30] per
 * channel until free (mmdet draws the bias from numpy's global state; here
 * a fixed sequence, so drawings are reproducible). */
static int draw_masks(md_image *img, const md_det_result *det, float thr, const uint8_t *colors, md_error *err) {
    size_t plane = (size_t)img->h * (size_t)img->w;
    uint8_t *mask = malloc(plane), *edge = calloc(plane, 1);
    uint8_t (*taken)[3] = calloc((size_t)det->n + 1, 3);
    int n_taken = 0, rc = 0;
    uint32_t bias_state = 0x2545F491u;
    if (!mask || !edge || !taken) {
        rc = md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < det->n && rc == 0; i++) {
        const md_rle *r = &det->masks[i];
        if (!shown(det, i, thr)) continue;
        if (r->h != img->h || r->w != img->w) {
            rc = md_failc(err, MD_ERR_SHAPE, "mask %d is %dx%d, the image %dx%d", i, r->w, r->h, img->w, img->h);
            break;
        }
        if ((rc = md_rle_decode(r, mask, err)) != 0) break;
        uint8_t c[3];
        memcpy(c, colors + 3 * det->labels[i], 3);
        for (bool busy = true; busy;) {
            busy = false;
            for (int k = 0; k < n_taken && !busy; k++) busy = !memcmp(taken[k], c, 3);
            for (int ch = 0; busy && ch < 3; ch++) {
                bias_state = bias_state * 1664525u + 1013904223u;
                int v = c[ch] + (int)((bias_state >> 16) % 61) - 30;
                c[ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
        memcpy(taken[n_taken++], c, 3);
        for (int y = 0; y < img->h; y++)
            for (int x = 0; x < img->w; x++) {
                size_t p = (size_t)y * (size_t)img->w + (size_t)x;
                if (!mask[p]) continue;
                uint8_t *px = img->data + p * (size_t)img->c;
                for (int k = 0; k < img->c && k < 3; k++)
                    px[k] = (uint8_t)((double)px[k] * (1 - 0.8) + (double)c[img->c == 1 ? 0 : k] * 0.8);
                bool border = x == 0 || y == 0 || x == img->w - 1 || y == img->h - 1 || !mask[p - 1] ||
                              !mask[p + 1] || !mask[p - (size_t)img->w] || !mask[p + (size_t)img->w];
                if (border) edge[p] = 1;
            }
    }
    for (size_t p = 0; rc == 0 && p < plane; p++)
        if (edge[p])
            for (int k = 0; k < img->c && k < 3; k++)
                img->data[p * (size_t)img->c + k] = (uint8_t)lround(img->data[p * (size_t)img->c + k] * 0.2 + 255 * 0.8);
done:
    free(mask);
    free(edge);
    free(taken);
    return rc;
}

MD_API int md_draw_detections(md_image *img, const md_det_result *det, char *const *classes, int n_classes,
                              const md_det_style *st, md_error *err) {
    int64_t max_label = 0;
    for (int i = 0; i < det->n; i++) {
        if (!shown(det, i, st->score_thr)) continue;
        if (det->labels[i] < 0) return md_failc(err, MD_ERR_GENERIC, "detection %d has the negative label %lld", i,
                                                (long long)det->labels[i]);
        if (det->labels[i] > max_label) max_label = det->labels[i];
    }
    if (st->colors && max_label >= st->n_colors)
        return md_failc(err, MD_ERR_CONFIG, "the palette has %d colours, label %lld needs more", st->n_colors,
                        (long long)max_label);
    if (max_label > 1000000) return md_failc(err, MD_ERR_GENERIC, "label %lld is out of range", (long long)max_label);
    uint8_t *random = NULL;
    const uint8_t *colors = st->colors;
    if (!colors) {
        if (!(random = malloc(3 * (size_t)(max_label + 1)))) return md_failc(err, MD_ERR_NOMEM, "out of memory");
        md_palette_get("random", (int)max_label + 1, random, err);
        colors = random;
    }
    int rc = det->masks ? draw_masks(img, det, st->score_thr, colors, err) : 0;
    md_canvas *cv = rc ? NULL : md_canvas_on_image(img, err);
    if (!cv) {
        free(random);
        return -1;
    }
    double lw = st->thickness * PT;
    for (int i = 0; i < det->n; i++) {
        if (!shown(det, i, st->score_thr)) continue;
        const float *b = det->bboxes + 5 * i;
        const uint8_t *c = colors + 3 * det->labels[i];
        /* integer corners (numpy's astype(int32) truncates), drawn through
         * the pixel centres as matplotlib's imshow coordinates put them */
        md_draw_rect(cv, (int)b[0] + 0.5, (int)b[1] + 0.5, (int)b[2] + 0.5, (int)b[3] + 0.5,
                     (md_color){ c[0], c[1], c[2], 204 }, lw);
    }
    for (int i = 0; i < det->n; i++) {
        if (!shown(det, i, st->score_thr)) continue;
        const float *b = det->bboxes + 5 * i;
        int64_t l = det->labels[i];
        const uint8_t *tc = st->text_color ? st->text_color : colors + 3 * l;
        char text[288], name[256];
        if (classes && l < n_classes) snprintf(name, sizeof name, "%s", classes[l]);
        else snprintf(name, sizeof name, "class %lld", (long long)l);
        if (st->with_scores) snprintf(text, sizeof text, "%s|%.2f", name, b[4]);
        else snprintf(text, sizeof text, "%s", name);
        double area = ((double)b[3] - b[1]) * ((double)b[2] - b[0]);
        double scale = fmin(fmax(0.5 + (area - 800) / (30000 - 800), 0.5), 1.0);
        double size = st->font_size * scale * PT, w, h, pad = 0.7 * PT;
        double x = (int)b[0] + st->thickness + 0.5, y = (int)b[1] + st->thickness + 0.5;
        md_draw_text_size(text, size, &w, &h);
        md_draw_fill_rect(cv, x - pad, y - pad, x + w + pad, y + h + pad, (md_color){ 0, 0, 0, 204 });
        md_draw_text(cv, x, y, text, size, MD_RGB(tc[0], tc[1], tc[2]), 0, 0);
    }
    free(random);
    return md_canvas_finish(cv, err);
}
