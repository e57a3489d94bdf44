/* MyDataset: a dataset derived from CustomDataset (docs/plugins.md), on the
 * text format of mmdet's "Customize Datasets" tutorial:
 *
 *     #
 *     000001.jpg
 *     1280 720          width height
 *     2                 number of boxes
 *     10 20 40 60 1     x1 y1 x2 y2 label
 *     20 40 50 60 2
 *     #
 *     ...
 *
 * Only load_annotations is its own; filtering, group flags, the pipeline,
 * CLASSES and evaluate (mAP, recall) come from the base. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/custom_dataset.h>

static const char *const my_classes[] = { "person", "bicycle", "car", "motorcycle" };

typedef struct my_ds {
    md_custom_dataset c;          /* first */
    int64_t label_base;           /* the file's first label */
} my_ds;

/* The next non-empty line into buf, newline stripped; false at the end. */
static bool next_line(FILE *f, char *buf, int size, int *line) {
    while (fgets(buf, size, f)) {
        ++*line;
        buf[strcspn(buf, "\r\n")] = 0;
        if (buf[0]) return true;
    }
    return false;
}

static int my_load(md_custom_dataset *c, md_error *err) {
    const my_ds *d = (const my_ds *)c;
    FILE *f = fopen(c->ann_file, "r");
    if (!f) return md_failc(err, MD_ERR_IO, "cannot open %s", c->ann_file);
    char buf[512], name[256];
    int line = 0, rc = 0;
    while (!rc && next_line(f, buf, sizeof buf, &line)) {
        int w, h, n;
        if (strcmp(buf, "#") || !next_line(f, name, sizeof name, &line) || !next_line(f, buf, sizeof buf, &line) ||
            sscanf(buf, "%d %d", &w, &h) != 2 || !next_line(f, buf, sizeof buf, &line) || sscanf(buf, "%d", &n) != 1) {
            rc = md_failc(err, MD_ERR_PARSE, "%s:%d: expected '#', a file name, 'width height' and a box count",
                          c->ann_file, line);
            break;
        }
        float boxes[64][4];
        int64_t labels[64];
        for (int k = 0; !rc && k < n; k++) {
            long long label;
            if (k >= 64 || !next_line(f, buf, sizeof buf, &line) ||
                sscanf(buf, "%f %f %f %f %lld", &boxes[k][0], &boxes[k][1], &boxes[k][2], &boxes[k][3], &label) != 5 ||
                label - d->label_base < 0 || label - d->label_base >= c->base.n_classes)
                rc = md_failc(err, MD_ERR_PARSE, "%s:%d: expected 'x1 y1 x2 y2 label' with a label of CLASSES",
                              c->ann_file, line);
            else
                labels[k] = label - d->label_base;
        }
        md_img_info info = { name, w, h, 0 };
        if (rc || !md_custom_dataset_keep_img(c, &info, n > 0)) continue;
        rc = md_custom_dataset_add_img(c, strdup(name), w, h, c->n, err);
        for (int k = 0; !rc && k < n; k++) rc = md_custom_dataset_add_box(c, boxes[k], labels[k], false, err);
    }
    fclose(f);
    return rc;
}

static const md_key my_keys[] = {
    MD_CUSTOM_DATASET_KEYS,
    { "label_base", MD_KEY_INT, "0", "the label of the first class in the file", false,
      MD_AT(my_ds, label_base), .min = "0" },
    { 0 } };

static const md_custom_dataset_class my_cls = {
    .name = "MyDataset", .size = sizeof(my_ds), .keys = my_keys,
    .classes = my_classes, .n_classes = 4,            /* CLASSES when `classes` is None */
    .load_annotations = my_load,                      /* the rest: CustomDataset's */
};

static void *my_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    return md_custom_dataset_build(ctx, &my_cls, cfg, err);
}

static const md_class my_class = {
    .name = "MyDataset", .keys = my_keys, .build = my_build,
    MD_IFACE(&md_custom_dataset_iface, MD_IFACE_DATASET),
    .doc = "a dataset derived from CustomDataset (plugin guide example)",
};

MD_PLUGIN("my_dataset", "1.0", "Apache-2.0");
MD_REGISTER("datasets", my_class)
