/* CocoDataset's own streaming loader and index (the dataset plugin compiled
 * in): the input is the annotation file; the dataset is built in training
 * mode (filtering on) and its per-image tables are read back, with the
 * masks of each image's segmentations (bitmaps and polygons). */
#include "../plugins/datasets/coco.c"
#include "fuzz_util.h"

static md_cfg *cfg_for(const char *ann, bool test_mode) {
    md_cfg *cfg = md_cfg_new_group();
    md_cfg_set_str(cfg, "type", "CocoDataset");
    md_cfg_set_str(cfg, "ann_file", ann);
    md_cfg_set_str(cfg, "img_prefix", "");
    md_cfg_set_list(cfg, "pipeline");
    md_cfg_set_bool(cfg, "test_mode", test_mode);
    md_cfg_set_int(cfg, "min_size", 1);
    md_cfg *cl = md_cfg_set_list(cfg, "classes");
    md_cfg_append_str(cl, "a");
    md_cfg_append_str(cl, "b");
    md_cfg_append_str(cl, "person");
    return cfg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const char *path = fuzz_file("instances.json", data, n);
    for (int tm = 0; tm < 2; tm++) {
        md_error err = {0};
        md_cfg *cfg = cfg_for(path, tm);
        md_dataset *ds = md_build_from_cfg(fuzz_ctx(), "datasets", cfg, NULL, &err);
        md_cfg_free(cfg);
        if (!ds) {
            fuzz_check_error(&err);
            continue;
        }
        int64_t len = ds->iface->len(ds);
        for (int64_t i = 0; i < len; i++) {
            md_ann_info ai;
            md_img_info ii;
            if (ds->iface->ann_info(ds, i, &ai) || ds->iface->img_info(ds, i, &ii)) abort();
            for (int k = 0; k < ai.n; k++)
                if (ai.labels[k] < 0 || ai.labels[k] >= ds->n_classes) abort();
            if (!ii.filename) abort();
            /* the masks LoadAnnotations(with_mask) would build, read back from the file */
            if (ai.masks && ii.width > 0 && ii.height > 0 && (int64_t)ii.width * ii.height <= (1 << 16)) {
                md_masks m;
                for (int p2m = 0; p2m < 2; p2m++) {
                    md_error_clear(&err);
                    if (md_masks_from_anns(&m, ai.masks, ai.n, ii.height, ii.width, p2m, &err) == 0) {
                        if (m.n != ai.n) abort();
                        md_masks_free(&m);
                    } else {
                        fuzz_check_error(&err);
                    }
                }
            }
        }
        md_dataset_free(ds);
    }
    return 0;
}
