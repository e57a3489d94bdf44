"""Golden fixture for soft masks (test_cfg.mask_thr_binary < 0), computed
by mmdet 2.28.2's FCNMaskHead.get_seg_masks on the CPU, for
tests/unit/test_mask_head.c: mask logits of four detections of one image,
their boxes, labels and scale_factor; per detection the u8 masks
get_seg_masks returns with mask_thr_binary -1 ((probability * 255) as
uint8), with rescale true (ori_shape) and false (ori_shape times
scale_factor).

It also checks what mmdet's single_gpu_test makes of them:
encode_mask_results hands the 0-255 values to pycocotools' encode, whose
runs end at every change of value; the script prints how far that RLE,
decoded, is from the soft mask's nonzero pixels (the library keeps those).

Run from the repository root once mmdet imports:
    /usr/bin/python3 tests/golden/soft_masks_golden.py
"""
import os
import sys

import numpy as np
import torch
from mmcv import ConfigDict

from mmdet.models import build_head

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402

torch.set_num_threads(1)


def per_detection(segms, labels, h, w):
    taken = {}
    out = np.zeros((len(labels), h, w), np.uint8)
    for i, lab in enumerate(labels.tolist()):
        j = taken.get(lab, 0)
        taken[lab] = j + 1
        out[i] = segms[lab][j]
    return out


def main():
    g = torch.Generator().manual_seed(4)
    head = build_head(ConfigDict(type="FCNMaskHead", num_convs=1, in_channels=4, conv_out_channels=4,
                                 num_classes=3))
    head.eval()
    det_bboxes = torch.tensor([[2.3, 3.1, 21.7, 18.4, 0.9], [10.2, 6.6, 38.9, 27.5, 0.8],
                               [0.0, 12.5, 13.3, 29.9, 0.7], [15.5, 1.0, 25.0, 9.5, 0.6]])
    det_labels = torch.tensor([1, 0, 1, 2])
    scale_factor = np.array([1.5, 1.25, 1.5, 1.25], np.float32)
    logits = torch.randn(4, 3, 12, 12, generator=g) * 3
    cfg = ConfigDict(mask_thr_binary=-1)
    sf = torch.from_numpy(scale_factor)
    with torch.no_grad():
        rescaled = head.get_seg_masks(logits, det_bboxes[:, :4] * sf, det_labels, cfg, (30, 40), sf, True)
        test_scale = head.get_seg_masks(logits, det_bboxes[:, :4], det_labels, cfg, (30, 40), scale_factor, False)
    assert rescaled[1][0].dtype == np.uint8
    out = {"logits": logits, "det_bboxes": det_bboxes, "det_labels": det_labels, "scale_factor": scale_factor,
           "soft_rescale": per_detection(rescaled, det_labels, 30, 40),
           "soft_test_scale": per_detection(test_scale, det_labels, 38, 60)}
    soft = out["soft_rescale"]
    print("soft values: %d distinct, max %d" % (len(np.unique(soft)), soft.max()))
    try:
        from mmdet.core import encode_mask_results
        import pycocotools.mask as mask_util
        enc = encode_mask_results(rescaled)
        dec = mask_util.decode(enc[1][0])
        print("pycocotools' RLE of soft mask 0, decoded: %d of %d pixels differ from its nonzero pixels"
              % (int((dec != (rescaled[1][0] != 0)).sum()), dec.size))
    except ImportError as e:
        print("pycocotools check skipped:", e)
    save("soft_masks", out)


if __name__ == "__main__":
    main()
