/* Every shipped config runs: each configs/<family>/<name>.cfg trains a few
 * iterations with bin/mmdet-run on a generated shapes dataset (two
 * iterations of two images, then the epoch's evaluation) and its
 * checkpoint is tested with bin/mmdet-test. The options only shrink the
 * run (data paths, image size, class count, no model-zoo weights); a new
 * config that needs more must say so in `extra` below, so none is left out.
 * Tested configs are listed by scanning configs/, not by hand. */
#include <criterion/criterion.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testlib.h"

static char dir[64];

static void setup(void) {
    test_tmpdir(dir, sizeof dir, "mmdet_configs");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s/data --train 4 --val 2 --seed 3 --classes 5 --masks >/dev/null", dir);
    cr_assert_eq(system(cmd), 0, "mmdet-shapes failed");
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(configs, .init = setup, .fini = teardown, .timeout = 900);

#define SHAPES "[\"rectangle\",\"ellipse\",\"triangle\",\"cross\",\"ring\"]"
/* mmdet's COCO recipes at 1333x800 with ResNet-50 from the model zoo:
 * 160 px, from scratch, the shapes' five classes. */
#define COCO_SMALL                                                                                           \
    "model.backbone.init_cfg=None data.train.pipeline.2.img_scale=[160,160] "                                \
    "data.val.pipeline.1.img_scale=[160,160] data.test.pipeline.1.img_scale=[160,160] "                      \
    "data.train.classes=" SHAPES " data.val.classes=" SHAPES " data.test.classes=" SHAPES " "
static const struct { const char *config, *options; } extra[] = {
    { "configs/retinanet/retinanet_r50_fpn_1x_coco.cfg", COCO_SMALL "model.bbox_head.num_classes=5" },
    { "configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.cfg", COCO_SMALL "model.roi_head.bbox_head.num_classes=5" },
    { "configs/faster_rcnn/faster_rcnn_r50_fpn_giou_1x_coco.cfg", COCO_SMALL "model.roi_head.bbox_head.num_classes=5" },
    { "configs/dcn/faster_rcnn_r50_fpn_dconv_c3-c5_1x_coco.cfg", COCO_SMALL "model.roi_head.bbox_head.num_classes=5" },
    { "configs/fcos/fcos_r50_caffe_fpn_gn-head_1x_coco.cfg", COCO_SMALL "model.bbox_head.num_classes=5" },
    { "configs/fcos/fcos_center-normbbox-centeronreg-giou_r50_caffe_fpn_gn-head_dcn_1x_coco.cfg",
      COCO_SMALL "model.bbox_head.num_classes=5" },
    { "configs/atss/atss_r50_fpn_1x_coco.cfg", COCO_SMALL "model.bbox_head.num_classes=5" },
    { "configs/mask_rcnn/mask_rcnn_r50_fpn_1x_coco.cfg",
      COCO_SMALL "model.roi_head.bbox_head.num_classes=5 model.roi_head.mask_head.num_classes=5" },
    { "configs/cascade_rcnn/cascade_rcnn_r50_fpn_1x_coco.cfg",
      COCO_SMALL "model.roi_head.bbox_head.0.num_classes=5 model.roi_head.bbox_head.1.num_classes=5 "
                 "model.roi_head.bbox_head.2.num_classes=5" },
};

static const char *options_of(const char *config) {
    for (size_t i = 0; i < sizeof extra / sizeof *extra; i++)
        if (!strcmp(extra[i].config, config)) return extra[i].options;
    return "";
}

static int run_config(const char *config, const char *tag) {
    char opts[2048], cmd[4096];
    snprintf(opts, sizeof opts,
             "data.samples_per_gpu=2 data.workers_per_gpu=1 runner.max_epochs=1 "
             "data.train.ann_file=%s/data/annotations/instances_train.json data.train.img_prefix=%s/data/train/ "
             "data.val.ann_file=%s/data/annotations/instances_val.json data.val.img_prefix=%s/data/val/ "
             "data.test.ann_file=%s/data/annotations/instances_val.json data.test.img_prefix=%s/data/val/ %s",
             dir, dir, dir, dir, dir, dir, options_of(config));
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-run --plugin-dir plugins %s --work-dir %s/%s --seed 0 --cfg-options %s >%s/%s.train 2>&1 && "
             "bin/mmdet-test --plugin-dir plugins %s %s/%s/epoch_1.safetensors --eval %s --cfg-options %s "
             ">%s/%s.test 2>&1",
             config, dir, tag, opts, dir, tag, config, dir, tag, strstr(config, "mask_rcnn") ? "bbox segm" : "bbox",
             opts, dir, tag);
    return system(cmd);
}

Test(configs, every_shipped_config_trains_and_tests) {
    glob_t g;
    cr_assert_eq(glob("configs/*/*.cfg", 0, NULL, &g), 0, "no configs found");
    int n = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *config = g.gl_pathv[i];
        if (strstr(config, "/_base_/")) continue;
        char tag[64];
        snprintf(tag, sizeof tag, "run%zu", i);
        int rc = run_config(config, tag);
        cr_expect_eq(rc, 0, "%s does not train and test: see %s/%s.train and %s.test", config, dir, tag, tag);
        if (rc) continue;
        char log[256];
        snprintf(log, sizeof log, "%s/%s.test", dir, tag);
        FILE *f = fopen(log, "r");
        char line[1024];
        bool evaluated = false;
        while (f && fgets(line, sizeof line, f)) evaluated |= strstr(line, "bbox_mAP") != NULL;
        if (f) fclose(f);
        cr_expect(evaluated, "%s: mmdet-test printed no bbox_mAP (%s)", config, log);
        n++;
    }
    globfree(&g);
    cr_assert_geq(n, 5, "only %d configs ran", n);
}
