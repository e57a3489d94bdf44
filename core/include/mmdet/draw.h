/* Drawing on images: rectangles, lines, a built-in 5x7 bitmap font, and mmdet's
 * show_result (boxes with "class|score" labels), for mmdet-test --show-dir,
 * mmdet-infer and mmdet-browse-dataset. Colors are given in the image's
 * channel order (3 bytes; a 1-channel image uses the first). Everything is
 * clipped to the image. */
#ifndef MMDET_DRAW_H
#define MMDET_DRAW_H

#include <stdint.h>
#include "data.h"
#include "image.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_FONT_W 5
#define MD_FONT_H 7

/* Outline of the box (x1, y1)-(x2, y2), corners inclusive, `thickness`
 * pixels drawn inwards. */
void md_draw_rect(md_image *img, int x1, int y1, int x2, int y2, const uint8_t color[3], int thickness);
void md_draw_fill_rect(md_image *img, int x1, int y1, int x2, int y2, const uint8_t color[3]);
/* A straight segment from (x1, y1) to (x2, y2), both ends included
 * (Bresenham), each point a thickness x thickness square centred on the
 * line (for even thickness the extra row/column is below/right). */
void md_draw_line(md_image *img, int x1, int y1, int x2, int y2, const uint8_t color[3], int thickness);
/* Text with its top-left corner at (x, y), each font pixel a scale x scale
 * block, one blank column between characters. Letters are drawn in capitals;
 * characters without a glyph as '?'. */
void md_draw_text(md_image *img, int x, int y, const char *text, const uint8_t color[3], int scale);
/* Pixels the text occupies: width and height (MD_FONT_H * scale). */
int md_draw_text_width(const char *text, int scale);
/* A distinct color for a class index (a fixed palette, then a hash). */
void md_draw_palette(int64_t label, uint8_t color[3]);
/* mmdet's show_result: every detection with score >= score_thr as a box
 * in its class's color, labelled "name|0.93" on a filled strip above it
 * (below when there is no room), its mask (det->masks, RLEs of the
 * image's size) first blended with that color at alpha 0.5. classes may
 * be NULL (labels as numbers). */
void md_draw_detections(md_image *img, const md_det_result *det, char *const *classes, int n_classes,
                        float score_thr, int thickness);

#ifdef __cplusplus
}
#endif
#endif
