/* The safetensors reader (md_st_open maps a file): every entry it accepts
 * is read back as a tensor and fully touched. */
#include <mmdet/safetensors.h>
#include <mmdet/tensor.h>
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const char *path = fuzz_file("in.safetensors", data, n);
    md_error err = {0};
    md_st *st = md_st_open(path, &err);
    if (!st) {
        fuzz_check_error(&err);
        return 0;
    }
    md_ctx *ctx = fuzz_ctx();
    for (int i = 0; i < md_st_count(st); i++) {
        int64_t shape[MD_MAX_DIMS];
        int nd = md_st_shape(st, i, shape);
        if (nd < 0 || nd > MD_MAX_DIMS || md_st_find(st, md_st_name(st, i)) < 0) abort();
        md_tensor *t = md_st_tensor(ctx, st, md_st_name(st, i));
        if (t) {
            double s = 0;
            for (int64_t k = 0; k < md_tensor_numel(t); k++) s += md_tensor_get(t, k);
            fuzz_sink = (uint8_t)(s != 0);
        }
    }
    md_ctx_step_reset(ctx);
    for (int i = 0; i < md_st_metadata_count(st); i++)
        if (!md_st_metadata(st, md_st_metadata_key(st, i))) abort();
    md_st_close(st);
    return 0;
}
