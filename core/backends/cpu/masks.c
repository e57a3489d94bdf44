/* CPU kernels of the mask operations (see masks.h): loops over the shared
 * per-pixel math of backends/mask_math.h. */
#include <omp.h>
#include "backends/cpu/masks.h"
#include "backends/cpu/table.h"
#include "backends/mask_math.h"

void md__cpu_mask_targets(const uint8_t *masks, int64_t h, int64_t w, const float *boxes, const int64_t *inds,
                          int64_t P, int oh, int ow, float *out) {
    int64_t plane = (int64_t)oh * ow;
    #pragma omp parallel for if (P * plane > 4096) num_threads(md__cpu_threads()) schedule(static)
    for (int64_t e = 0; e < P * plane; e++) {
        int64_t p = e / plane, k = inds ? inds[p] : p;
        int ph = (int)(e % plane / ow), pw = (int)(e % ow);
        out[e] = md__mask_target(masks + k * h * w, (int)h, (int)w, boxes + 4 * p, oh, ow, ph, pw);
    }
}

void md__cpu_mask_paste(const float *probs, int64_t D, int64_t C, int mh, int mw, const int64_t *chan,
                        const float *boxes, int img_h, int img_w, float thr, uint8_t *out) {
    int64_t plane = (int64_t)img_h * img_w;
    #pragma omp parallel for if (D * plane > 65536) num_threads(md__cpu_threads()) schedule(static)
    for (int64_t r = 0; r < D * img_h; r++) {   /* one image row of one detection */
        int64_t d = r / img_h;
        int y = (int)(r % img_h), win[4];
        const float *box = boxes + 4 * d, *src = probs + (d * C + chan[d]) * mh * mw;
        md__paste_window(box, img_h, img_w, win);
        uint8_t *o = out + d * plane + (int64_t)y * img_w;
        for (int x = 0; x < img_w; x++) o[x] = md__paste_pixel(src, mh, mw, box, win, x, y, thr);
    }
}

int64_t md__cpu_rle_counts(const uint8_t *mask, int h, int w, uint32_t *counts, int64_t cap) {
    int64_t k = 0;
    uint32_t c = 0;
    uint8_t p = md__rle_bit(mask, h, w, -1);
    for (int x = 0; x < w; x++)   /* md__rle_bit's order, walked without its division */
        for (int y = 0; y < h; y++) {
            uint8_t v = mask[(int64_t)y * w + x] != 0;
            if (v != p) {
                if (k < cap) counts[k] = c;
                k++;
                c = 0;
                p = v;
            }
            c++;
        }
    if (k < cap) counts[k] = c;
    return k + 1;
}
