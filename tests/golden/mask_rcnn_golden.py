"""Golden fixtures for Mask R-CNN's model half, computed by mmdet 2.28.2 and
mmcv-full 1.7.2 themselves (their classes built from config dicts, as
mmdet's builders do), for tests/unit/test_mask_head.c:

- mask_head.safetensors: two FCNMaskHeads with deterministic random
  weights under mmdet's state dict names ("<case>.w.<name>"):
    "cls": num_convs 2, deconv upsampling, 3 classes;
    "agn": num_convs 1, GroupNorm, nearest upsampling, class agnostic;
    "bil": num_convs 1, bilinear upsampling, 3 classes.
  For each: forward of RoI features x, get_targets of two images'
  positives (stand-ins for SamplingResult: pos_bboxes, some outside the
  image, and pos_assigned_gt_inds) against BitmapMasks, loss (loss_mask)
  and its weight gradients, and get_seg_masks with rescale true and false,
  the class lists turned back into one u8 mask per detection.
- mask_roi_head.safetensors: a StandardRoIHead with a mask branch
  (SingleRoIExtractor on two levels, Shared2FCBBoxHead, FCNMaskHead) with
  random weights ("w.<name>"): forward_train on a hand-built two-image
  batch (features, proposals, gt boxes, labels and BitmapMasks); the
  RandomSampler asks for more RoIs than there are, so it keeps them all
  and no random draw enters; then simple_test with rescale of the same
  proposals: detections and their masks; and aug_test (rescale) of image
  0 with a horizontally flipped variant: merged detections and
  merge_aug_masks' masks.
- mask_rcnn_tiny.pth: the state dict of a tiny MaskRCNN (ResNet-18 of
  base width 1, FPN of 8 channels, RPNHead, StandardRoIHead with an
  FCNMaskHead) with random weights, saved as mmcv's save_checkpoint does
  ({"meta", "state_dict"}), loaded by name in C; mask_rcnn_tiny.safetensors
  holds the mask head's values, an input batch of one image and what
  MaskRCNN.simple_test(rescale=True) returns for it in eval mode: the
  detections (grouped by class, as bbox2result does) and their masks.

Run from the repository root once mmdet imports:
    /usr/bin/python3 tests/golden/mask_rcnn_golden.py
"""
import os
import sys

import numpy as np
import torch
from mmcv import ConfigDict

from mmdet.core import BitmapMasks
from mmdet.models import build_detector, build_head

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FIXTURES, save  # noqa: E402

torch.set_num_threads(1)


def randomize(module, seed, std=0.3):
    """Deterministic weights (and BN/GN statistics) under a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype.is_floating_point:
                v = torch.randn(t.shape, generator=g) * std
                if name.endswith("running_var"):
                    v = v.abs() + 0.5
                t.copy_(v)


def ellipse_masks(boxes, h, w):
    """One filled ellipse inscribed in each box, as u8 [n, h, w]."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    out = np.zeros((len(boxes), h, w), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        out[k] = (((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1).astype(np.uint8)
    return out


class Sampled:
    """What mask_target reads of a SamplingResult."""

    def __init__(self, pos_bboxes, pos_assigned_gt_inds):
        self.pos_bboxes = pos_bboxes
        self.pos_assigned_gt_inds = pos_assigned_gt_inds


def per_detection(segms, labels, h, w):
    """get_seg_masks' class lists back into detection order, u8 [D, h, w]."""
    taken = {}
    out = np.zeros((len(labels), h, w), np.uint8)
    for i, lab in enumerate(labels.tolist()):
        j = taken.get(lab, 0)
        taken[lab] = j + 1
        out[i] = segms[lab][j]
    return out


# ----------------------------------------------------------------- mask head
MASK_CASES = {
    "cls": dict(type="FCNMaskHead", num_convs=2, roi_feat_size=6, in_channels=4, conv_out_channels=5,
                num_classes=3, loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0)),
    "agn": dict(type="FCNMaskHead", num_convs=1, roi_feat_size=6, in_channels=4, conv_out_channels=4,
                num_classes=3, class_agnostic=True, norm_cfg=dict(type="GN", num_groups=2),
                upsample_cfg=dict(type="nearest", scale_factor=2),
                loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=2.0)),
    "bil": dict(type="FCNMaskHead", num_convs=1, roi_feat_size=6, in_channels=4, conv_out_channels=3,
                num_classes=3, upsample_cfg=dict(type="bilinear", scale_factor=2)),
}
GRAD_PARAMS = ["convs.0.conv.weight", "conv_logits.weight", "conv_logits.bias"]


def mask_head_fixture():
    g = torch.Generator().manual_seed(1)
    out = {}
    # two padded images of 40 x 50 with 3 and 2 gt masks
    gt_boxes = [[[4, 3, 30, 25], [20, 10, 46, 38], [2, 20, 18, 39]], [[10, 5, 40, 30], [0, 0, 15, 12]]]
    gt_masks = [BitmapMasks(ellipse_masks(b, 40, 50), 40, 50) for b in gt_boxes]
    for i, m in enumerate(gt_masks):
        out["gt_masks%d" % i] = m.masks
    pos = [torch.tensor([[3.2, 2.5, 31.7, 26.1], [18.4, 8.9, 52.3, 41.0], [-3.0, 18.2, 17.5, 40.6]]),
           torch.tensor([[9.1, 4.4, 41.8, 29.3], [0.5, -1.2, 16.2, 12.9]])]
    inds = [torch.tensor([0, 1, 2]), torch.tensor([0, 1])]
    labels = torch.tensor([2, 0, 1, 1, 2])
    for i in range(2):
        out["s%d.pos" % i], out["s%d.inds" % i] = pos[i], inds[i]
    out["labels"] = labels
    x = torch.randn(5, 4, 6, 6, generator=g)
    out["x"] = x
    # detections of one image (boxes in the original image, 30 x 40) and the test-scale logits
    det_bboxes = torch.tensor([[2.3, 3.1, 21.7, 18.4, 0.9], [10.2, 6.6, 38.9, 27.5, 0.8],
                               [0.0, 12.5, 13.3, 29.9, 0.7], [15.5, 1.0, 25.0, 9.5, 0.6]])
    det_labels = torch.tensor([1, 0, 1, 2])
    out["det_bboxes"], out["det_labels"] = det_bboxes, det_labels
    scale_factor = np.array([1.5, 1.25, 1.5, 1.25], np.float32)
    out["scale_factor"] = scale_factor
    for tag, cfg in MASK_CASES.items():
        head = build_head(ConfigDict(cfg))
        head.init_weights()
        randomize(head, {"cls": 2, "agn": 3, "bil": 8}[tag])
        for k, v in head.state_dict().items():
            out["%s.w.%s" % (tag, k)] = v
        head.train()
        pred = head(x)
        out[tag + ".mask_pred"] = pred
        targets = head.get_targets([Sampled(pos[i], inds[i]) for i in range(2)], gt_masks,
                                   ConfigDict(mask_size=12))
        out[tag + ".targets"] = targets
        loss = head.loss(pred, targets, labels)["loss_mask"]
        out[tag + ".loss_mask"] = loss.reshape(())
        head.zero_grad()
        loss.backward()
        params = dict(head.named_parameters())
        for p in GRAD_PARAMS:
            out["%s.g.%s" % (tag, p)] = params[p].grad
        head.eval()
        with torch.no_grad():
            logits = torch.randn(4, head.conv_logits.out_channels, 12, 12, generator=g) * 3
            out[tag + ".seg_logits"] = logits
            test_cfg = ConfigDict(mask_thr_binary=0.5)
            # rescale: the boxes are taken back to the test scale first, as simple_test_mask does
            sf = torch.from_numpy(scale_factor)
            bb = det_bboxes[:, :4] * sf
            segms = head.get_seg_masks(logits, bb, det_labels, test_cfg, (30, 40), sf, True)
            out[tag + ".seg_rescale"] = per_detection(segms, det_labels, 30, 40)
            segms = head.get_seg_masks(logits, det_bboxes[:, :4], det_labels, test_cfg, (30, 40), scale_factor,
                                       False)
            out[tag + ".seg_test_scale"] = per_detection(segms, det_labels, 38, 60)
    save("mask_head", out)


# ------------------------------------------------------------------ RoI head
def roi_head_cfg(num_classes=3, out_channels=4):
    return dict(
        type="StandardRoIHead",
        bbox_roi_extractor=dict(type="SingleRoIExtractor",
                                roi_layer=dict(type="RoIAlign", output_size=3, sampling_ratio=0),
                                out_channels=out_channels, featmap_strides=[4, 8]),
        bbox_head=dict(type="Shared2FCBBoxHead", in_channels=out_channels, fc_out_channels=8, roi_feat_size=3,
                       num_classes=num_classes,
                       bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0],
                                       target_stds=[0.1, 0.1, 0.2, 0.2]),
                       reg_class_agnostic=False,
                       loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
                       loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
        mask_roi_extractor=dict(type="SingleRoIExtractor",
                                roi_layer=dict(type="RoIAlign", output_size=6, sampling_ratio=0),
                                out_channels=out_channels, featmap_strides=[4, 8]),
        mask_head=dict(type="FCNMaskHead", num_convs=2, roi_feat_size=6, in_channels=out_channels,
                       conv_out_channels=4, num_classes=num_classes,
                       loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0)))


RCNN_TRAIN = dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                                match_low_quality=True, ignore_iof_thr=-1),
                  sampler=dict(type="RandomSampler", num=64, pos_fraction=0.5, neg_pos_ub=-1,
                               add_gt_as_proposals=True),
                  mask_size=12, pos_weight=-1, debug=False)
RCNN_TEST = dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=8, mask_thr_binary=0.5)


def roi_head_fixture():
    g = torch.Generator().manual_seed(4)
    out = {}
    cfg = roi_head_cfg()
    cfg.update(train_cfg=ConfigDict(RCNN_TRAIN), test_cfg=ConfigDict(RCNN_TEST))
    head = build_head(ConfigDict(cfg))
    head.init_weights()
    randomize(head, 5)
    for k, v in head.state_dict().items():
        out["w." + k] = v
    # a padded batch of 48 x 64: level strides 4 and 8
    feats = [torch.randn(2, 4, 12, 16, generator=g), torch.randn(2, 4, 6, 8, generator=g)]
    out["feat0"], out["feat1"] = feats
    metas = [dict(ori_shape=(36, 50, 3), img_shape=(45, 62, 3), pad_shape=(48, 64, 3),
                  scale_factor=np.array([62 / 50, 45 / 36, 62 / 50, 45 / 36], np.float32), flip=False),
             dict(ori_shape=(40, 60, 3), img_shape=(40, 60, 3), pad_shape=(48, 64, 3),
                  scale_factor=np.array([1, 1, 1, 1], np.float32), flip=False)]
    gt_bboxes = [torch.tensor([[4.0, 3.0, 30.0, 25.0], [20.0, 12.0, 58.0, 40.0]]),
                 torch.tensor([[10.0, 5.0, 40.0, 30.0], [2.0, 20.0, 24.0, 44.0], [36.0, 2.0, 60.0, 22.0]])]
    gt_labels = [torch.tensor([0, 2]), torch.tensor([1, 1, 0])]
    gt_masks = [BitmapMasks(ellipse_masks(b.tolist(), 48, 64), 48, 64) for b in gt_bboxes]
    proposals = []
    for i in range(2):
        base = gt_bboxes[i].repeat(3, 1)
        jitter = torch.randn(base.shape, generator=g) * 4
        extra = torch.tensor([[0.0, 0.0, 12.0, 10.0], [30.0, 30.0, 50.0, 46.0], [5.0, 30.0, 40.0, 47.0]])
        boxes = torch.cat([base + jitter, extra]).clamp(min=0)
        boxes[:, 2:] = torch.max(boxes[:, 2:], boxes[:, :2] + 2)
        scores = torch.rand(len(boxes), 1, generator=g)
        proposals.append(torch.cat([boxes, scores], 1))
    for i in range(2):
        out["proposals%d" % i] = proposals[i]
        out["gt_bboxes%d" % i] = gt_bboxes[i]
        out["gt_labels%d" % i] = gt_labels[i]
        out["gt_masks%d" % i] = gt_masks[i].masks
        out["scale_factor%d" % i] = metas[i]["scale_factor"]
    head.train()
    losses = head.forward_train(feats, metas, proposals, gt_bboxes, gt_labels, None, gt_masks)
    for k, v in losses.items():
        out["loss." + k] = v.reshape(())
    total = sum(v for k, v in losses.items() if "loss" in k)
    head.zero_grad()
    total.backward()
    params = dict(head.named_parameters())
    for p in ["bbox_head.fc_cls.weight", "mask_head.convs.0.conv.weight", "mask_head.conv_logits.weight"]:
        out["g." + p] = params[p].grad
    head.eval()
    with torch.no_grad():
        results = head.simple_test(feats, proposals, metas, rescale=True)
    for i, (bbox_res, segm_res) in enumerate(results):
        dets = np.concatenate(bbox_res)
        labels = np.concatenate([np.full(len(b), c) for c, b in enumerate(bbox_res)]).astype(np.int64)
        h, w = metas[i]["ori_shape"][:2]
        masks = np.stack([m for c in segm_res for m in c]) if len(dets) else np.zeros((0, h, w), np.uint8)
        out["i%d_dets" % i], out["i%d_det_labels" % i], out["i%d_det_masks" % i] = dets, labels, masks
    # test-time augmentation of image 0: itself and a horizontal flip (its
    # own features), the proposals in the original image
    feats_flip = [torch.randn(1, 4, 12, 16, generator=g), torch.randn(1, 4, 6, 8, generator=g)]
    out["aug_feat0"], out["aug_feat1"] = feats_flip
    meta0 = dict(metas[0], flip_direction=None)
    meta1 = dict(metas[0], flip=True, flip_direction="horizontal")
    props = proposals[0].clone()
    props[:, :4] /= torch.from_numpy(metas[0]["scale_factor"])
    out["aug_proposals"] = props
    with torch.no_grad():
        (bbox_res, segm_res), = head.aug_test([[f[:1] for f in feats], feats_flip], [props], [[meta0], [meta1]],
                                              rescale=True)
    out["aug_dets"] = np.concatenate(bbox_res)
    out["aug_det_labels"] = np.concatenate([np.full(len(b), c) for c, b in enumerate(bbox_res)]).astype(np.int64)
    out["aug_det_masks"] = np.stack([m for c in segm_res for m in c]).astype(np.uint8)
    save("mask_roi_head", out)


# ------------------------------------------------------------- MaskRCNN .pth
def mask_rcnn_pth():
    cfg = dict(
        type="MaskRCNN",
        backbone=dict(type="ResNet", depth=18, base_channels=1, num_stages=4, out_indices=(0, 1, 2, 3),
                      frozen_stages=1, norm_cfg=dict(type="BN", requires_grad=True), norm_eval=True,
                      style="pytorch"),
        neck=dict(type="FPN", in_channels=[1, 2, 4, 8], out_channels=8, num_outs=5),
        rpn_head=dict(type="RPNHead", in_channels=8, feat_channels=8,
                      anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0],
                                            strides=[4, 8, 16, 32, 64]),
                      bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0],
                                      target_stds=[1.0, 1.0, 1.0, 1.0]),
                      loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
                      loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
        roi_head=roi_head_cfg(num_classes=3, out_channels=8),
        train_cfg=None,
        test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=60, nms=dict(type="nms", iou_threshold=0.7),
                               min_bbox_size=0),
                      rcnn=dict(RCNN_TEST, max_per_img=4)))
    cfg["roi_head"]["bbox_roi_extractor"]["featmap_strides"] = [4, 8, 16, 32]
    cfg["roi_head"]["mask_roi_extractor"]["featmap_strides"] = [4, 8, 16, 32]
    model = build_detector(ConfigDict(cfg))
    model.init_weights()
    randomize(model, 6, std=0.2)
    with torch.no_grad():   # biases a little positive, so that a few objects come out
        model.rpn_head.rpn_cls.bias.add_(1.0)
        model.roi_head.mask_head.conv_logits.bias.add_(1.0)
    sd = model.state_dict()
    torch.save({"meta": {"mmdet_version": "2.28.2", "CLASSES": ("rectangle", "ellipse", "triangle")},
                "state_dict": sd}, os.path.join(FIXTURES, "mask_rcnn_tiny.pth"))
    # the values, to compare what C loads by name
    out = {k: v for k, v in sd.items() if k.startswith("roi_head.mask_head.")}
    g = torch.Generator().manual_seed(7)
    img = torch.zeros(1, 3, 48, 64)
    img[:, :, :45, :60] = torch.randn(1, 3, 45, 60, generator=g)
    meta = dict(ori_shape=(60, 80, 3), img_shape=(45, 60, 3), pad_shape=(48, 64, 3), batch_input_shape=(48, 64),
                scale_factor=np.array([0.75, 0.75, 0.75, 0.75], np.float32), flip=False)
    model.eval()
    with torch.no_grad():
        bbox_res, segm_res = model.simple_test(img, [meta], rescale=True)[0]
    out["img"] = img
    out["dets"] = np.concatenate(bbox_res)
    out["det_labels"] = np.concatenate([np.full(len(b), c) for c, b in enumerate(bbox_res)]).astype(np.int64)
    out["det_masks"] = np.stack([m for c in segm_res for m in c]).astype(np.uint8)
    save("mask_rcnn_tiny", out)


if __name__ == "__main__":
    mask_head_fixture()
    roi_head_fixture()
    mask_rcnn_pth()
