/* Core COCO loader (md_coco_parse) and results parser (md_coco_parse_dets):
 * any input is parsed or refused with a message; a parsed file's indices
 * agree with its arrays. */
#include <mmdet/coco.h>
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    md_error err = {0};
    md_coco *c = md_coco_parse((const char *)data, n, "fuzz.json", &err);
    if (c) {
        for (size_t i = 0; i < c->n_anns; i++) {
            const md_coco_ann *a = &c->anns[i];
            if (a->image_index < 0 || (size_t)a->image_index >= c->n_images) abort();
            if (a->category_index < 0 || (size_t)a->category_index >= c->n_categories) abort();
            if (c->images[a->image_index].id != a->image_id) abort();
        }
        for (size_t i = 0; i < c->n_images; i++)
            if (md_coco_image_index(c, c->images[i].id) != (long)i || strlen(c->images[i].file_name) > n) abort();
        for (size_t i = 0; i < c->n_categories; i++)
            if (md_coco_category_index(c, c->categories[i].id) != (long)i) abort();
        md_coco_free(c);
    } else {
        fuzz_check_error(&err);
    }
    md_error_clear(&err);
    md_coco_det *d = NULL;
    size_t nd = 0;
    if (md_coco_parse_dets((const char *)data, n, "fuzz-dets.json", &d, &nd, &err) == 0) md_coco_dets_free(d, nd);
    else fuzz_check_error(&err);
    return 0;
}
