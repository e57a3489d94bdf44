/* The config parser (md_cfg_parse: mmcv-style Python configs), then a dump
 * and a re-parse of the dump, which must give an equal tree. The input names
 * a file in a scratch folder so `_base_` files resolve there (and fail). */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char *text = malloc(n + 1);
    if (!text) return 0;
    memcpy(text, data, n);
    text[n] = 0;
    char path[512];
    snprintf(path, sizeof path, "%s/cfg/fuzz.py", fuzz_dir());
    md_error err = {0};
    md_cfg *cfg = md_cfg_parse(text, path, &err);
    free(text);
    if (!cfg) {
        fuzz_check_error(&err);
        return 0;
    }
    char *dump = md_cfg_dump_string(cfg);
    if (dump) {
        md_cfg *again = md_cfg_parse(dump, path, &err);
        if (!again || !md_cfg_equal(cfg, again)) {
            fprintf(stderr, "dump does not parse back equal: %s\n---\n%s\n", again ? "" : err.msg, dump);
            abort();
        }
        md_cfg_free(again);
        free(dump);
    }
    md_cfg_free(cfg);
    return 0;
}
