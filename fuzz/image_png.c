/* PNG decoding (libpng behind md_image_decode) in every read mode, and the
 * header-only size read. Inputs get the PNG signature. */
#include <mmdet/image.h>
#include "fuzz_util.h"

static void decode_all(const uint8_t *buf, size_t n, const char *file) {
    for (int fl = MD_IMAGE_RGB; fl <= MD_IMAGE_UNCHANGED; fl++) {
        md_error err = {0};
        md_image *img = md_image_decode(buf, n, (md_image_flags)fl, "fuzz", &err);
        if (img) {
            if (img->h <= 0 || img->w <= 0 || !img->data) abort();
            uint8_t s = 0;   /* touch every byte: ASan checks the size */
            for (size_t i = 0; i < (size_t)img->h * img->w * img->c; i += 4093) s ^= img->data[i];
            s ^= img->data[(size_t)img->h * img->w * img->c - 1];
            fuzz_sink = s;
            md_image_free(img);
        } else {
            fuzz_check_error(&err);
        }
    }
    int w, h;
    md_error err = {0};
    if (md_image_read_size(file, &w, &h, &err) != 0) fuzz_check_error(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t *buf = malloc(n + 8);
    if (!buf) return 0;
    memcpy(buf, sig, 8);
    if (n) memcpy(buf + 8, data, n);
    decode_all(buf, n + 8, fuzz_file("in.png", buf, n + 8));
    free(buf);
    return 0;
}
