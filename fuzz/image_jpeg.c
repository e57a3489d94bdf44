/* JPEG decoding (libjpeg-turbo behind md_image_decode) in every read mode,
 * and the header-only size read. Inputs get the JPEG magic bytes so the
 * fuzzer spends its time inside the decoder. */
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
    uint8_t *buf = malloc(n + 3);
    if (!buf) return 0;
    buf[0] = 0xFF, buf[1] = 0xD8, buf[2] = 0xFF;
    if (n) memcpy(buf + 3, data, n);
    decode_all(buf, n + 3, fuzz_file("in.jpg", buf, n + 3));
    free(buf);
    return 0;
}
