"""Golden FLOPs and parameter counts (tests/unit/test_get_flops.c): what
mmdet 2.28's tools/analysis_tools/get_flops.py reports, i.e. mmcv 1.7.2's
get_model_complexity_info over the detector's forward_dummy, for the
models of configs/retinanet/retinanet_r18_fpn_shapes.cfg,
configs/faster_rcnn/faster_rcnn_r18_fpn_shapes.cfg and
configs/mask_rcnn/mask_rcnn_r18_fpn_shapes.cfg.

The models are built with mmdet's own build_detector from mmdet's base
configs (configs/_base_/models/{retinanet,faster_rcnn,mask_rcnn}_r50_fpn.py as
installed with mmdet) with the overrides our shapes configs apply (ResNet-18,
narrower FPN and heads, GroupNorm in the RetinaNet's FPN and head, 5
classes), at the input shape get_flops makes of `--shape 100 130`
(padded to multiples of 32: 3 x 128 x 160). A third case freezes stage 1
of the Faster R-CNN's ResNet (frozen_stages=1), whose parameters mmcv does
not count.

Per case the fixture holds, for the whole model and for every module mmcv
counts (its supported layers) and every direct child of the detector
(backbone, neck, heads), the module path (metadata), its FLOPs
(multiply-adds, mmcv's accumulate_flops) and trainable parameters
(accumulate_params), as int64. Written to tests/fixtures/flops_golden.safetensors.

    /usr/bin/python3 tests/golden/flops_golden.py
"""
import json
import os
import sys
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402

import mmdet  # noqa: E402
from mmcv import Config  # noqa: E402
from mmcv.cnn.utils import flops_counter as fc  # noqa: E402
from mmdet.models import build_detector  # noqa: E402

BASE = os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", "_base_", "models")
SHAPE = (100, 130)
DIVISOR = 32

GN = dict(type="GN", num_groups=32, requires_grad=True)
RETINA = {
    "model.backbone.depth": 18, "model.backbone.base_channels": 32, "model.backbone.frozen_stages": -1,
    "model.backbone.norm_eval": False, "model.backbone.init_cfg": None,
    "model.neck.in_channels": [32, 64, 128, 256], "model.neck.out_channels": 64, "model.neck.norm_cfg": GN,
    "model.bbox_head.num_classes": 5, "model.bbox_head.in_channels": 64, "model.bbox_head.feat_channels": 64,
    "model.bbox_head.stacked_convs": 2, "model.bbox_head.norm_cfg": GN,
    "model.bbox_head.anchor_generator.octave_base_scale": 2, "model.bbox_head.reg_decoded_bbox": True,
    "model.bbox_head.loss_bbox": dict(_delete_=True, type="GIoULoss", loss_weight=2.0),
}
FASTER = {
    "model.backbone.depth": 18, "model.backbone.frozen_stages": -1, "model.backbone.norm_eval": False,
    "model.backbone.init_cfg": None,
    "model.neck.in_channels": [64, 128, 256, 512], "model.neck.out_channels": 64,
    "model.rpn_head.in_channels": 64, "model.rpn_head.feat_channels": 64,
    "model.roi_head.bbox_roi_extractor.out_channels": 64,
    "model.roi_head.bbox_head.in_channels": 64, "model.roi_head.bbox_head.fc_out_channels": 256,
    "model.roi_head.bbox_head.num_classes": 5,
}
MASK = dict(FASTER, **{
    "model.roi_head.mask_roi_extractor.out_channels": 64, "model.roi_head.mask_head.num_convs": 2,
    "model.roi_head.mask_head.in_channels": 64, "model.roi_head.mask_head.conv_out_channels": 64,
    "model.roi_head.mask_head.num_classes": 5,
})
CASES = [
    ("retinanet", "retinanet_r50_fpn.py", RETINA),
    ("faster_rcnn", "faster_rcnn_r50_fpn.py", FASTER),
    ("faster_rcnn_frozen1", "faster_rcnn_r50_fpn.py", dict(FASTER, **{"model.backbone.frozen_stages": 1})),
    ("mask_rcnn", "mask_rcnn_r50_fpn.py", MASK),
]


def input_shape():
    h, w = SHAPE
    h = int(np.ceil(h / DIVISOR)) * DIVISOR
    w = int(np.ceil(w / DIVISOR)) * DIVISOR
    return (3, h, w)


def valid_proposals(randn):
    """TwoStageDetector.forward_dummy draws its 1000 proposals with
    torch.randn(1000, 4); mmcv's CPU RoIAlign refuses the boxes of negative
    size among them. The counts do not depend on the boxes, so this draws
    boxes inside the image instead."""
    def draw(*size, **kwargs):
        if size != (1000, 4):
            return randn(*size, **kwargs)
        g = torch.Generator().manual_seed(0)
        _, h, w = input_shape()
        xy = torch.rand(1000, 2, generator=g) * torch.tensor([w * 0.75, h * 0.75])
        wh = 1 + torch.rand(1000, 2, generator=g) * (torch.tensor([w, h]) - xy - 1)
        return torch.cat([xy, xy + wh], 1)
    return draw


def count(base, overrides):
    cfg = Config.fromfile(os.path.join(BASE, base))
    cfg.merge_from_dict(overrides)
    model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    model.eval()
    model.forward = model.forward_dummy
    torch.manual_seed(0)
    # get_flops' call, with the figures as numbers; the per-module ones are
    # read from the counter's state before print_model_with_flops's own
    # clean-up, through the same accumulate functions it prints with
    flops_model = fc.add_flops_counting_methods(model)
    flops_model.eval()
    flops_model.start_flops_count()
    randn = torch.randn
    torch.randn = valid_proposals(randn)
    try:
        with torch.no_grad():
            flops_model(torch.zeros((1,) + input_shape()))
    finally:
        torch.randn = randn
    total_flops, total_params = flops_model.compute_average_flops_cost()

    def acc_params(m):
        if fc.is_supported_instance(m):
            return m.__params__
        return sum(acc_params(c) for c in m.children())

    def acc_flops(m):
        if fc.is_supported_instance(m):
            return m.__flops__ / model.__batch_counter__
        return sum(acc_flops(c) for c in m.children())

    rows = [("(model)", total_flops, total_params)]
    for name, m in model.named_children():
        rows.append((name, acc_flops(m), acc_params(m)))
    for name, m in model.named_modules():
        if name and fc.is_supported_instance(m) and "." in name:
            rows.append((name, acc_flops(m), acc_params(m)))
    flops_model.stop_flops_count()
    # the figures get_model_complexity_info returns as strings
    assert fc.flops_to_string(total_flops) == fc.flops_to_string(rows[0][1])
    for _, f, p in rows:
        assert float(f).is_integer() and float(p).is_integer()
    return rows, fc.flops_to_string(total_flops), fc.params_to_string(total_params)


def main():
    tensors, meta = {}, {"input_shape": json.dumps(list(input_shape())), "shape": json.dumps(list(SHAPE)),
                         "size_divisor": str(DIVISOR)}
    for case, base, overrides in CASES:
        rows, fs, ps = count(base, overrides)
        meta[case + ".paths"] = json.dumps([r[0] for r in rows])
        meta[case + ".strings"] = json.dumps([fs, ps])
        tensors[case + ".flops"] = np.array([int(r[1]) for r in rows], dtype=np.int64)
        tensors[case + ".params"] = np.array([int(r[2]) for r in rows], dtype=np.int64)
        print(f"{case}: {len(rows)} modules, Flops: {fs}, Params: {ps} ({int(rows[0][1])} multiply-adds, "
              f"{int(rows[0][2])} parameters)")
    print(save("flops_golden", tensors, meta))


if __name__ == "__main__":
    main()
