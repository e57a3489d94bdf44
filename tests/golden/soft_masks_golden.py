"""Golden fixture for soft masks (test_cfg.mask_thr_binary < 0), computed
by mmdet 2.28.2's FCNMaskHead.get_seg_masks on the CPU, for
tests/unit/test_mask_head.c: mask logits of four detections of one image,
their boxes, labels and scale_factor; per detection the u8 masks
get_seg_masks returns with mask_thr_binary -1 ((probability * 255) as
uint8), with rescale true (ori_shape) and false (ori_shape times
scale_factor). Where mmdet does not import yet, `get_seg_masks_soft` below,
a PyTorch re-statement of that method's CPU path (_do_paste_mask with
skip_empty, one box at a time), makes them; the fixture's metadata says
which.

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
import torch.nn.functional as F

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


def get_seg_masks_soft(mask_pred, det_bboxes, det_labels, ori_shape, scale_factor, rescale):
    """mmdet 2.28's FCNMaskHead.get_seg_masks on the CPU with mask_thr_binary
    < 0, restated: u8 (probability * 255) per detection."""
    mask_pred = mask_pred.sigmoid()
    bboxes = det_bboxes[:, :4]
    if rescale:
        img_h, img_w = ori_shape[:2]
        bboxes = bboxes / scale_factor
    else:
        img_h = int(np.round(ori_shape[0] * float(scale_factor[1])))
        img_w = int(np.round(ori_shape[1] * float(scale_factor[0])))
    N = len(mask_pred)
    mask_pred = mask_pred[range(N), det_labels][:, None]
    out = np.zeros((N, img_h, img_w), np.uint8)
    for i in range(N):
        box = bboxes[i:i + 1]
        x0_int, y0_int = torch.clamp(box.min(dim=0).values.floor()[:2] - 1, min=0).to(dtype=torch.int32)
        x1_int = torch.clamp(box[:, 2].max().ceil() + 1, max=img_w).to(dtype=torch.int32)
        y1_int = torch.clamp(box[:, 3].max().ceil() + 1, max=img_h).to(dtype=torch.int32)
        x0, y0, x1, y1 = torch.split(box, 1, dim=1)
        img_y = torch.arange(y0_int, y1_int, dtype=torch.float32) + 0.5
        img_x = torch.arange(x0_int, x1_int, dtype=torch.float32) + 0.5
        img_y = (img_y - y0) / (y1 - y0) * 2 - 1
        img_x = (img_x - x0) / (x1 - x0) * 2 - 1
        if torch.isinf(img_x).any():
            img_x[torch.isinf(img_x)] = 0
        if torch.isinf(img_y).any():
            img_y[torch.isinf(img_y)] = 0
        gx = img_x[:, None, :].expand(1, img_y.size(1), img_x.size(1))
        gy = img_y[:, :, None].expand(1, img_y.size(1), img_x.size(1))
        grid = torch.stack([gx, gy], dim=3)
        m = F.grid_sample(mask_pred[i:i + 1].to(dtype=torch.float32), grid, align_corners=False)[0, 0]
        out[i, y0_int:y1_int, x0_int:x1_int] = (m * 255).to(dtype=torch.uint8).numpy()
    return out


def main():
    g = torch.Generator().manual_seed(4)
    det_bboxes = torch.tensor([[2.3, 3.1, 21.7, 18.4, 0.9], [10.2, 6.6, 38.9, 27.5, 0.8],
                               [0.0, 12.5, 13.3, 29.9, 0.7], [15.5, 1.0, 25.0, 9.5, 0.6]])
    det_labels = torch.tensor([1, 0, 1, 2])
    scale_factor = np.array([1.5, 1.25, 1.5, 1.25], np.float32)
    logits = torch.randn(4, 3, 12, 12, generator=g) * 3
    sf = torch.from_numpy(scale_factor)
    out = {"logits": logits, "det_bboxes": det_bboxes, "det_labels": det_labels, "scale_factor": scale_factor}
    try:
        from mmcv import ConfigDict

        from mmdet.models import build_head
        head = build_head(ConfigDict(type="FCNMaskHead", num_convs=1, in_channels=4, conv_out_channels=4,
                                     num_classes=3))
        head.eval()
        cfg = ConfigDict(mask_thr_binary=-1)
        with torch.no_grad():
            rescaled = head.get_seg_masks(logits, det_bboxes[:, :4] * sf, det_labels, cfg, (30, 40), sf, True)
            test_scale = head.get_seg_masks(logits, det_bboxes[:, :4], det_labels, cfg, (30, 40), scale_factor,
                                            False)
        assert rescaled[1][0].dtype == np.uint8
        out["soft_rescale"] = per_detection(rescaled, det_labels, 30, 40)
        out["soft_test_scale"] = per_detection(test_scale, det_labels, 38, 60)
        source = "mmdet 2.28.2 FCNMaskHead.get_seg_masks"
    except ImportError:
        rescaled = None
        out["soft_rescale"] = get_seg_masks_soft(logits, det_bboxes[:, :4] * sf, det_labels, (30, 40), sf, True)
        out["soft_test_scale"] = get_seg_masks_soft(logits, det_bboxes[:, :4], det_labels, (30, 40), sf, False)
        source = "get_seg_masks_soft (PyTorch re-statement of mmdet 2.28.2 FCNMaskHead.get_seg_masks)"
    print("source:", source)
    soft = out["soft_rescale"]
    print("soft values: %d distinct, max %d" % (len(np.unique(soft)), soft.max()))
    try:
        if rescaled is None:
            raise ImportError("mmdet")
        from mmdet.core import encode_mask_results
        import pycocotools.mask as mask_util
        enc = encode_mask_results(rescaled)
        dec = mask_util.decode(enc[1][0])
        print("pycocotools' RLE of soft mask 0, decoded: %d of %d pixels differ from its nonzero pixels"
              % (int((dec != (rescaled[1][0] != 0)).sum()), dec.size))
    except ImportError as e:
        print("pycocotools check skipped:", e)
    save("soft_masks", out, {"source": source})


if __name__ == "__main__":
    main()
