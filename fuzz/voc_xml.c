/* XMLDataset (the VOC plugin compiled in): the input is one image's XML
 * annotation, loaded through the dataset with box-size ignoring on, so the
 * XML reader and the box bookkeeping after it both see it. */
#include "../plugins/datasets/voc.c"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static const char *ids;
    if (!ids) ids = fuzz_file("ImageSets/Main/train.txt", "000001\n", 7);
    fuzz_file("Annotations/000001.xml", data, n);
    for (int tm = 0; tm < 2; tm++) {
        md_error err = {0};
        md_cfg *cfg = md_cfg_new_group();
        md_cfg_set_str(cfg, "type", "XMLDataset");
        md_cfg_set_str(cfg, "ann_file", ids);
        md_cfg_set_str(cfg, "img_prefix", fuzz_dir());
        md_cfg_set_list(cfg, "pipeline");
        md_cfg_set_bool(cfg, "test_mode", tm);
        if (!tm) md_cfg_set_int(cfg, "min_size", 8);
        md_cfg *cl = md_cfg_set_list(cfg, "classes");
        md_cfg_append_str(cl, "cat");
        md_cfg_append_str(cl, "dog");
        md_dataset *ds = md_build_from_cfg(fuzz_ctx(), "datasets", cfg, NULL, &err);
        md_cfg_free(cfg);
        if (!ds) {
            fuzz_check_error(&err);
            continue;
        }
        for (int64_t i = 0; i < ds->iface->len(ds); i++) {
            md_ann_info ai;
            if (ds->iface->ann_info(ds, i, &ai)) abort();
            for (int k = 0; k < ai.n; k++)
                if (ai.labels[k] < 0 || ai.labels[k] >= ds->n_classes) abort();
        }
        md_dataset_free(ds);
    }
    return 0;
}
