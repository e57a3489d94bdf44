/* The tiny RetinaNet and Faster R-CNN of tests/golden/detector_golden.py,
 * shared by the golden test and the CUDA detector and memory tests (which add a
 * train_cfg): TINY_<M>_MODEL opens the model block with its components,
 * TINY_<M>_TEST_CFG closes it with the test_cfg. */
#ifndef MMDET_DETECTOR_TINY_H
#define MMDET_DETECTOR_TINY_H

#define TINY_RETINA_MODEL \
    "model = { type = \"RetinaNet\";\n" \
    "  backbone = { type = \"ResNet\"; depth = 18; base_channels = 4; num_stages = 3; strides = [1, 2, 2];\n" \
    "               dilations = [1, 1, 1]; out_indices = [0, 1, 2]; frozen_stages = -1;\n" \
    "               norm_cfg = { type = \"BN\"; requires_grad = true; }; norm_eval = true; style = \"pytorch\"; };\n" \
    "  neck = { type = \"FPN\"; in_channels = [4, 8, 16]; out_channels = 8; start_level = 1;\n" \
    "           add_extra_convs = \"on_input\"; num_outs = 4; };\n" \
    "  bbox_head = { type = \"RetinaHead\"; num_classes = 3; in_channels = 8; stacked_convs = 2; feat_channels = 8;\n" \
    "    anchor_generator = { type = \"AnchorGenerator\"; octave_base_scale = 4; scales_per_octave = 2;\n" \
    "                         ratios = [0.5, 1.0, 2.0]; strides = [8, 16, 32, 64]; };\n" \
    "    bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0];\n" \
    "                   target_stds = [1.0, 1.0, 1.0, 1.0]; };\n" \
    "    loss_cls = { type = \"FocalLoss\"; use_sigmoid = true; gamma = 2.0; alpha = 0.25; loss_weight = 1.0; };\n" \
    "    loss_bbox = { type = \"L1Loss\"; loss_weight = 1.0; }; };\n"

#define TINY_RETINA_TEST_CFG \
    "  test_cfg = { nms_pre = 40; min_bbox_size = 0; score_thr = 0.3; nms = { type = \"nms\"; iou_threshold = 0.5; };\n" \
    "               max_per_img = 15; };\n" \
    "};"

#define TINY_FASTER_MODEL \
    "model = { type = \"FasterRCNN\";\n" \
    "  backbone = { type = \"ResNet\"; depth = 18; base_channels = 4; num_stages = 4; out_indices = [0, 1, 2, 3];\n" \
    "               frozen_stages = -1; norm_cfg = { type = \"BN\"; requires_grad = true; }; norm_eval = true;\n" \
    "               style = \"pytorch\"; };\n" \
    "  neck = { type = \"FPN\"; in_channels = [4, 8, 16, 32]; out_channels = 8; num_outs = 5; };\n" \
    "  rpn_head = { type = \"RPNHead\"; in_channels = 8; feat_channels = 8;\n" \
    "    anchor_generator = { type = \"AnchorGenerator\"; scales = [2]; ratios = [0.5, 1.0, 2.0];\n" \
    "                         strides = [4, 8, 16, 32, 64]; };\n" \
    "    bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0];\n" \
    "                   target_stds = [1.0, 1.0, 1.0, 1.0]; };\n" \
    "    loss_cls = { type = \"CrossEntropyLoss\"; use_sigmoid = true; loss_weight = 1.0; };\n" \
    "    loss_bbox = { type = \"L1Loss\"; loss_weight = 1.0; }; };\n" \
    "  roi_head = { type = \"StandardRoIHead\";\n" \
    "    bbox_roi_extractor = { type = \"SingleRoIExtractor\";\n" \
    "                           roi_layer = { type = \"RoIAlign\"; output_size = 7; sampling_ratio = 0; };\n" \
    "                           out_channels = 8; featmap_strides = [4, 8, 16, 32]; };\n" \
    "    bbox_head = { type = \"Shared2FCBBoxHead\"; in_channels = 8; fc_out_channels = 16; roi_feat_size = 7;\n" \
    "                  num_classes = 3; reg_class_agnostic = false;\n" \
    "                  bbox_coder = { type = \"DeltaXYWHBBoxCoder\"; target_means = [0.0, 0.0, 0.0, 0.0];\n" \
    "                                 target_stds = [0.1, 0.1, 0.2, 0.2]; };\n" \
    "                  loss_cls = { type = \"CrossEntropyLoss\"; use_sigmoid = false; loss_weight = 1.0; };\n" \
    "                  loss_bbox = { type = \"L1Loss\"; loss_weight = 1.0; }; }; };\n"

#define TINY_FASTER_TEST_CFG \
    "  test_cfg = {\n" \
    "    rpn = { nms_pre = 50; max_per_img = 30; nms = { type = \"nms\"; iou_threshold = 0.7; }; min_bbox_size = 0; };\n" \
    "    rcnn = { score_thr = 0.05; nms = { type = \"nms\"; iou_threshold = 0.5; }; max_per_img = 40; }; };\n" \
    "};"

/* The train_cfgs the CUDA detector and memory tests add (mmdet 2.x
 * defaults, smaller RPN proposal counts). */
#define TINY_RETINA_TRAIN_CFG \
    "  train_cfg = { assigner = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.5; neg_iou_thr = 0.4; min_pos_iou = 0.0;\n" \
    "                             ignore_iof_thr = -1.0; };\n" \
    "                allowed_border = -1; pos_weight = -1; debug = false; };\n"

#define TINY_FASTER_TRAIN_CFG \
    "  train_cfg = {\n" \
    "    rpn = { assigner = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.7; neg_iou_thr = 0.3; min_pos_iou = 0.3;\n" \
    "                         match_low_quality = true; ignore_iof_thr = -1.0; };\n" \
    "            sampler = { type = \"RandomSampler\"; num = 256; pos_fraction = 0.5; neg_pos_ub = -1;\n" \
    "                        add_gt_as_proposals = false; };\n" \
    "            allowed_border = -1; pos_weight = -1; debug = false; };\n" \
    "    rpn_proposal = { nms_pre = 50; max_per_img = 30; nms = { type = \"nms\"; iou_threshold = 0.7; };\n" \
    "                     min_bbox_size = 0; };\n" \
    "    rcnn = { assigner = { type = \"MaxIoUAssigner\"; pos_iou_thr = 0.5; neg_iou_thr = 0.5; min_pos_iou = 0.5;\n" \
    "                          match_low_quality = false; ignore_iof_thr = -1.0; };\n" \
    "             sampler = { type = \"RandomSampler\"; num = 64; pos_fraction = 0.25; neg_pos_ub = -1;\n" \
    "                         add_gt_as_proposals = true; };\n" \
    "             pos_weight = -1; debug = false; }; };\n"

#include <mmdet/mmdet.h>

/* The batch of detector_golden.py from its fixture: two uint8 images
 * normalised as mmdet's Normalize (ImageNet mean/std, float32), zero beyond
 * img_shape, with their metas (b->img persistent: the caller frees it). */
void tiny_detector_batch(md_ctx *ctx, md_st *batch_st, md_batch *b, md_img_meta *metas);

#endif
