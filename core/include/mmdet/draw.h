/* Drawing with cairo and pango: anti-aliased lines, rectangles, markers and
 * text (DejaVu Sans), on an md_image or into a PNG, PDF or SVG file, and
 * mmdet's imshow_det_bboxes (boxes, "class|score" labels, masks) with
 * mmdet's palettes, for mmdet-test --show-dir, mmdet-infer,
 * mmdet-browse-dataset and mmdet-analyze-logs.
 *
 * Coordinates are in pixels (points for PDF/SVG), with (0, 0) the top-left
 * corner of the top-left pixel: the centre of pixel (i, j) is
 * (i + 0.5, j + 0.5). Colours are RGB with an opacity. Drawing calls do not
 * fail one by one: the canvas keeps the first error and md_canvas_finish
 * reports it. */
#ifndef MMDET_DRAW_H
#define MMDET_DRAW_H

#include <stdint.h>
#include "data.h"
#include "error.h"
#include "image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_color { uint8_t r, g, b, a; } md_color;   /* a: 255 opaque */
#define MD_RGB(r_, g_, b_) ((md_color){ (r_), (g_), (b_), 255 })

typedef struct md_canvas md_canvas;

/* A canvas over img (1, 3 or 4 channels; 3 are RGB): md_canvas_finish
 * copies the drawing back (a 1-channel image gets the luma
 * 0.299 R + 0.587 G + 0.114 B, as mmcv's rgb2gray). */
md_canvas *md_canvas_on_image(md_image *img, md_error *err);
/* A white w x h canvas that md_canvas_finish writes to path, in the format
 * its extension names: .png (w x h pixels), .pdf or .svg (points). */
md_canvas *md_canvas_new_file(const char *path, double w, double h, md_error *err);
/* Copies back or writes the file, then frees the canvas (always). 0, or -1
 * with err naming the file. */
int md_canvas_finish(md_canvas *cv, md_error *err);
/* Frees without writing anything (error paths). */
void md_canvas_free(md_canvas *cv);

/* Strokes are centred on their path, `width` wide, butt caps. */
void md_draw_line(md_canvas *cv, double x1, double y1, double x2, double y2, md_color c, double width);
/* n points xy[2 * i], xy[2 * i + 1] joined by one stroke (round joins). */
void md_draw_polyline(md_canvas *cv, const double *xy, int n, md_color c, double width);
void md_draw_rect(md_canvas *cv, double x1, double y1, double x2, double y2, md_color c, double width);
void md_draw_fill_rect(md_canvas *cv, double x1, double y1, double x2, double y2, md_color c);
void md_draw_circle(md_canvas *cv, double x, double y, double radius, md_color c);   /* filled */

/* A line of text `size` pixels high (the font's em: DejaVu Sans, falling
 * back on fontconfig's sans), placed so that the point (ax, ay) of its
 * box (fractions of its width and height: 0, 0 is the top-left corner, 0.5,
 * 0.5 the centre) lands on (x, y). The box is the text's logical extent:
 * its advance width by the font's ascent + descent. Invalid UTF-8 is
 * replaced. Layout does not depend on the canvas (no hinting of metrics),
 * so md_draw_text_size measures what any canvas draws. */
void md_draw_text(md_canvas *cv, double x, double y, const char *text, double size, md_color c, double ax,
                  double ay);
void md_draw_text_size(const char *text, double size, double *w, double *h);

/* ---- palettes: mmdet's get_palette ----
 * "random" (mmdet's None: numpy's randint(0, 256, (n, 3)) after seed 42),
 * "coco", "voc", "citys" (the datasets' PALETTE), or one colour for every
 * class: "red", "green", "blue", "cyan", "yellow", "magenta", "white",
 * "black" (mmcv's names). Writes n RGB triples into rgb; -1 with err naming
 * the palette when it is unknown or has fewer than n colours. */
int md_palette_get(const char *name, int n, uint8_t *rgb, md_error *err);
/* A dataset's PALETTE table by name ("coco", "voc", "citys"), its length in
 * *n; NULL for other names. Static: datasets point to it. */
const uint8_t *md_palette_table(const char *name, int *n);

/* ---- detections: mmdet's show_result / imshow_det_bboxes ---- */
typedef struct md_det_style {
    /* Box and mask colour per class: 3 bytes (RGB) per class, n_colors of
     * them (a dataset's PALETTE); NULL: mmdet's random palette. */
    const uint8_t *colors;
    int n_colors;
    /* One colour for every label text; NULL: the class's colour. */
    const uint8_t *text_color;
    float score_thr;           /* drawn when score > score_thr (everything when 0) */
    double thickness;          /* box line width in points (2) */
    double font_size;          /* label size in points at full scale (13) */
    bool with_scores;          /* "class|0.93"; false: "class" (ground truth) */
} md_det_style;
/* show_result's defaults with a dataset's palette (NULL: random). */
#define MD_DET_STYLE(colors_, n_) \
    ((md_det_style){ .colors = (colors_), .n_colors = (n_), .score_thr = 0.3f, .thickness = 2, .font_size = 13, \
                     .with_scores = true })

/* As mmdet draws at matplotlib's 100 dpi: masks first (det->masks, RLEs of
 * the image's size: img * 0.2 + colour * 0.8 under the mask, truncated to
 * u8; a colour already used by an earlier mask is shifted by up to 30 per
 * channel, as mmdet's bias colour, here deterministically; a white edge at
 * 0.8), then every box (its integer corners, thickness points wide, the
 * class colour at 0.8), then the labels: "name|0.93" ("class N" without
 * names), text at font_size x scale points with scale = clip(0.5 + (area -
 * 800) / 29200, 0.5, 1) of the box area, its top-left corner thickness
 * pixels inside the box's, on a black box at 0.8 padded by 0.7 points.
 * -1 with err when the palette has too few colours for a label. */
int md_draw_detections(md_image *img, const md_det_result *det, char *const *classes, int n_classes,
                       const md_det_style *style, md_error *err);

#ifdef __cplusplus
}
#endif
#endif
