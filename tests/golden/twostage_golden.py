"""Golden fixtures for the two-stage parts (tests/unit/test_roi_extractor.c,
tests/unit/test_bbox_head.c), written as mmdet 2.28 computes them:

- SingleRoIExtractor: map_roi_levels and the per-level RoIAlign of
  single_level_roi_extractor.py, with torchvision.ops.roi_align (the same
  kernel as mmcv's RoIAlign: aligned offset -0.5, adaptive sampling ratio).
- Shared2FCBBoxHead: ConvFCBBoxHead.forward (flatten, two Linear+ReLU, fc_cls,
  fc_reg), BBoxHead.get_targets / loss (CrossEntropyLoss with label weights
  and avg_factor = max(#weights > 0, 1), L1Loss on DeltaXYWHBBoxCoder targets
  with stds (0.1, 0.1, 0.2, 0.2), avg_factor = number of RoIs, accuracy in
  percent), and get_bboxes (softmax, delta2bbox with the 16/1000 ratio clamp
  and border clipping, rescale, multiclass_nms via mmcv's batched_nms written
  with torchvision's nms).

Run from the repository root: /usr/bin/python3 tests/golden/twostage_golden.py
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402

torch.manual_seed(0)
torch.set_default_dtype(torch.float32)


# ---------------------------------------------------------------- extractor
def map_roi_levels(rois, num_levels, finest_scale=56):
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    target_lvls = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return target_lvls.clamp(min=0, max=num_levels - 1).long()


def single_roi_extractor(feats, rois, strides, out_size=7, sampling_ratio=0, aligned=True):
    num_levels = len(feats)
    roi_feats = feats[0].new_zeros(rois.size(0), feats[0].size(1), out_size, out_size)
    if num_levels == 1:
        return torchvision.ops.roi_align(feats[0], rois, out_size, 1.0 / strides[0], sampling_ratio, aligned)
    lvls = map_roi_levels(rois, num_levels)
    for i in range(num_levels):
        inds = (lvls == i).nonzero(as_tuple=False).squeeze(1)
        if inds.numel() > 0:
            roi_feats[inds] = torchvision.ops.roi_align(feats[i], rois[inds], out_size, 1.0 / strides[i],
                                                        sampling_ratio, aligned)
    return roi_feats


out = {}
strides = [4, 8, 16, 32]
H, W, C = 480, 480, 2
feats = [torch.randn(2, C, H // s, W // s, requires_grad=True) for s in strides]
# boxes whose sqrt(area) spans the levels, including the exact boundaries
# 56 * 2^k (log2 of 1, 2, 4, ... plus the 1e-6) and just under them
sizes = [(10, 12), (55.9, 56), (56, 56), (60, 50), (111.9, 112), (112, 112), (150, 100), (224, 224),
         (250, 240), (300, 250), (447, 449), (460, 470), (4, 200), (30, 30), (0, 10)]
rois = []
g = torch.Generator().manual_seed(1)
for k, (w, h) in enumerate(sizes):
    x1 = float(torch.rand(1, generator=g)) * max(W - w, 1)
    y1 = float(torch.rand(1, generator=g)) * max(H - h, 1)
    rois.append([k % 2, x1, y1, x1 + w, y1 + h])
rois = torch.tensor(rois, dtype=torch.float32)
y = single_roi_extractor(feats, rois, strides)
gy = torch.randn_like(y)
y.backward(gy)
out.update({"ext.rois": rois, "ext.levels": map_roi_levels(rois, 4), "ext.out": y, "ext.gout": gy})
for i in range(4):
    out["ext.feat%d" % i] = feats[i]
    out["ext.gfeat%d" % i] = feats[i].grad
# one level only (no mapping): the RoIAlign of level 0
y1 = single_roi_extractor(feats[:1], rois, strides[:1])
out["ext.out_single"] = y1
save("twostage_extractor", out)
