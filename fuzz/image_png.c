/* PNG decoding (libpng behind md_image_decode) in every read mode, and the
 * header-only size read. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return fuzz_image_input(sig, sizeof sig, "in.png", data, n);
}
