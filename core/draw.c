/* Rectangles, a 5x7 bitmap font and detection overlays. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "internal.h"
#include "mmdet/draw.h"

/* The glyphs, row by row ('#' on). Lowercase letters use the capitals. */
static const struct { char c; const char *rows; } glyphs[] = {
    { 'A', ".###.#...##...#######...##...##...#" }, { 'B', "####.#...##...#####.#...##...#####." },
    { 'C', ".###.#...##....#....#....#...#.###." }, { 'D', "###..#..#.#...##...##...##..#.###.." },
    { 'E', "######....#....####.#....#....#####" }, { 'F', "######....#....####.#....#....#...." },
    { 'G', ".###.#...##....#.####...##...#.####" }, { 'H', "#...##...##...#######...##...##...#" },
    { 'I', ".###...#....#....#....#....#...###." }, { 'J', "..###...#....#....#....#.#..#..##.." },
    { 'K', "#...##..#.#.#..##...#.#..#..#.#...#" }, { 'L', "#....#....#....#....#....#....#####" },
    { 'M', "#...###.###.#.##.#.##...##...##...#" }, { 'N', "#...##...###..##.#.##..###...##...#" },
    { 'O', ".###.#...##...##...##...##...#.###." }, { 'P', "####.#...##...#####.#....#....#...." },
    { 'Q', ".###.#...##...##...##.#.##..#..##.#" }, { 'R', "####.#...##...#####.#.#..#..#.#...#" },
    { 'S', ".#####....#.....###.....#....#####." }, { 'T', "#####..#....#....#....#....#....#.." },
    { 'U', "#...##...##...##...##...##...#.###." }, { 'V', "#...##...##...##...##...#.#.#...#.." },
    { 'W', "#...##...##...##.#.##.#.##.#.#.#.#." }, { 'X', "#...##...#.#.#...#...#.#.#...##...#" },
    { 'Y', "#...##...#.#.#...#....#....#....#.." }, { 'Z', "#####....#...#...#...#...#....#####" },
    { '0', ".###.#...##..###.#.###..##...#.###." }, { '1', "..#...##....#....#....#....#...###." },
    { '2', ".###.#...#....#...#...#...#...#####" }, { '3', "#####...#...#.....#.....##...#.###." },
    { '4', "...#...##..#.#.#..#.#####...#....#." }, { '5', "######....####.....#....##...#.###." },
    { '6', "..##..#...#....####.#...##...#.###." }, { '7', "#####....#...#...#...#....#....#..." },
    { '8', ".###.#...##...#.###.#...##...#.###." }, { '9', ".###.#...##...#.####....#...#..##.." },
    { '.', "..........................##...##.." }, { ':', "......##...##........##...##......." },
    { '|', "..#....#....#....#....#....#....#.." }, { '-', "...............#####..............." },
    { '_', "..............................#####" }, { '%', "##...##..#...#...#...#...#..##...##" },
    { '/', ".........#...#...#...#...#........." }, { '(', "...#...#...#....#....#.....#.....#." },
    { ')', ".#.....#.....#....#....#...#...#..." }, { '?', ".###.#...#....#...#...#.........#.." },
    { '+', ".......#....#..#####..#....#......." }, { ',', ".....................##....#...#..." },
    { '#', ".#.#..#.#.#####.#.#.#####.#.#..#.#." }, { '=', "..........#####.....#####.........." },
    { ' ', "..................................." },
};

static const char *glyph(char c) {
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    for (size_t i = 0; i < sizeof glyphs / sizeof glyphs[0]; i++)
        if (glyphs[i].c == c) return glyphs[i].rows;
    return glyph('?');
}

static void put(md_image *img, int x, int y, const uint8_t color[3]) {
    if (x < 0 || y < 0 || x >= img->w || y >= img->h) return;
    uint8_t *p = img->data + ((size_t)y * (size_t)img->w + (size_t)x) * (size_t)img->c;
    for (int k = 0; k < img->c && k < 3; k++) p[k] = color[img->c == 1 ? 0 : k];
    if (img->c == 4) p[3] = 255;
}

MD_API void md_draw_fill_rect(md_image *img, int x1, int y1, int x2, int y2, const uint8_t color[3]) {
    if (x1 > x2) { int t = x1; x1 = x2; x2 = t; }
    if (y1 > y2) { int t = y1; y1 = y2; y2 = t; }
    if (x1 < 0) x1 = 0;
    if (y1 < 0) y1 = 0;
    if (x2 >= img->w) x2 = img->w - 1;
    if (y2 >= img->h) y2 = img->h - 1;
    for (int y = y1; y <= y2; y++)
        for (int x = x1; x <= x2; x++) put(img, x, y, color);
}

MD_API void md_draw_rect(md_image *img, int x1, int y1, int x2, int y2, const uint8_t color[3], int thickness) {
    if (x1 > x2) { int t = x1; x1 = x2; x2 = t; }
    if (y1 > y2) { int t = y1; y1 = y2; y2 = t; }
    if (thickness < 1) thickness = 1;
    for (int t = 0; t < thickness && x1 + t <= x2 - t && y1 + t <= y2 - t; t++) {
        for (int x = x1 + t; x <= x2 - t; x++) {
            put(img, x, y1 + t, color);
            put(img, x, y2 - t, color);
        }
        for (int y = y1 + t; y <= y2 - t; y++) {
            put(img, x1 + t, y, color);
            put(img, x2 - t, y, color);
        }
    }
}

MD_API void md_draw_line(md_image *img, int x1, int y1, int x2, int y2, const uint8_t color[3], int thickness) {
    if (thickness < 1) thickness = 1;
    int lo = -(thickness - 1) / 2, hi = thickness / 2;
    int dx = abs(x2 - x1), dy = -abs(y2 - y1), sx = x1 < x2 ? 1 : -1, sy = y1 < y2 ? 1 : -1, e = dx + dy;
    for (;;) {
        for (int oy = lo; oy <= hi; oy++)
            for (int ox = lo; ox <= hi; ox++) put(img, x1 + ox, y1 + oy, color);
        if (x1 == x2 && y1 == y2) break;
        int e2 = 2 * e;
        if (e2 >= dy) {
            e += dy;
            x1 += sx;
        }
        if (e2 <= dx) {
            e += dx;
            y1 += sy;
        }
    }
}

MD_API int md_draw_text_width(const char *text, int scale) {
    int n = (int)strlen(text);
    return n ? (n * (MD_FONT_W + 1) - 1) * scale : 0;
}

MD_API void md_draw_text(md_image *img, int x, int y, const char *text, const uint8_t color[3], int scale) {
    if (scale < 1) scale = 1;
    for (; *text; text++, x += (MD_FONT_W + 1) * scale) {
        const char *g = glyph(*text);
        for (int r = 0; r < MD_FONT_H; r++)
            for (int c = 0; c < MD_FONT_W; c++)
                if (g[r * MD_FONT_W + c] == '#')
                    for (int dy = 0; dy < scale; dy++)
                        for (int dx = 0; dx < scale; dx++) put(img, x + c * scale + dx, y + r * scale + dy, color);
    }
}

MD_API void md_draw_palette(int64_t label, uint8_t color[3]) {
    static const uint8_t pal[][3] = { { 220, 20, 60 }, { 0, 160, 0 }, { 0, 80, 230 }, { 255, 150, 0 },
                                      { 160, 0, 200 }, { 0, 190, 190 }, { 230, 0, 150 }, { 120, 120, 0 },
                                      { 0, 0, 142 }, { 250, 170, 30 } };
    if (label >= 0 && label < 10) {
        memcpy(color, pal[label], 3);
        return;
    }
    uint64_t h = (uint64_t)label * 0x9E3779B97F4A7C15ull;
    for (int k = 0; k < 3; k++) color[k] = (uint8_t)(64 + ((h >> (8 * k + 16)) & 0xff) % 192);
}

/* An RLE mask of the image's size blended with color (mmdet's draw_masks:
 * img * (1 - alpha) + color * alpha under the mask, truncated to u8). */
static void blend_mask(md_image *img, const md_rle *r, const uint8_t color[3], float alpha) {
    if (r->h != img->h || r->w != img->w || img->c < 1) return;
    int64_t pos = 0, n = (int64_t)r->h * r->w;
    for (int64_t j = 0; j < r->m && pos < n; j++) {
        int64_t end = pos + r->counts[j] < n ? pos + r->counts[j] : n;
        if (j % 2)
            for (int64_t p = pos; p < end; p++) {
                uint8_t *px = img->data + ((size_t)(p % r->h) * (size_t)r->w + (size_t)(p / r->h)) * (size_t)img->c;
                for (int k = 0; k < img->c && k < 3; k++)
                    px[k] = (uint8_t)((float)px[k] * (1.0f - alpha) + (float)color[k] * alpha);
            }
        pos = end;
    }
}

MD_API void md_draw_detections(md_image *img, const md_det_result *det, char *const *classes, int n_classes,
                               float score_thr, int thickness) {
    static const uint8_t white[3] = { 255, 255, 255 };
    for (int i = 0; det->masks && i < det->n; i++) {
        if (det->bboxes[5 * i + 4] < score_thr) continue;
        uint8_t color[3];
        md_draw_palette(det->labels[i], color);
        blend_mask(img, &det->masks[i], color, 0.5f);
    }
    for (int i = 0; i < det->n; i++) {
        const float *b = det->bboxes + 5 * i;
        if (b[4] < score_thr) continue;
        int64_t l = det->labels[i];
        uint8_t color[3];
        md_draw_palette(l, color);
        int x1 = (int)b[0], y1 = (int)b[1], x2 = (int)b[2], y2 = (int)b[3];
        md_draw_rect(img, x1, y1, x2, y2, color, thickness);
        char text[128];
        if (classes && l >= 0 && l < n_classes) snprintf(text, sizeof text, "%s|%.2f", classes[l], b[4]);
        else snprintf(text, sizeof text, "%lld|%.2f", (long long)l, b[4]);
        int tw = md_draw_text_width(text, 1) + 2, th = MD_FONT_H + 2;
        int ty = y1 - th >= 0 ? y1 - th : y1;
        md_draw_fill_rect(img, x1, ty, x1 + tw - 1, ty + th - 1, color);
        md_draw_text(img, x1 + 1, ty + 1, text, white, 1);
    }
}
