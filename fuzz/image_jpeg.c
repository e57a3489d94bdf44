/* JPEG decoding (libjpeg-turbo behind md_image_decode) in every read mode,
 * and the header-only size read. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static const uint8_t magic[3] = {0xFF, 0xD8, 0xFF};
    return fuzz_image_input(magic, sizeof magic, "in.jpg", data, n);
}
