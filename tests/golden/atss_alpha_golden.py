"""Golden fixture for ATSSAssigner with alpha (DDOD's dynamic cost),
computed by mmdet 2.28.2's ATSSAssigner.assign itself, for
tests/unit/test_atss.c: anchors on two pyramid levels, gt boxes with
labels, the head's classification logits and decoded box predictions for
every anchor; per case (alpha, topk, ignored gts) the AssignResult's
gt_inds, max_overlaps and labels.

Run from the repository root once mmdet imports:
    /usr/bin/python3 tests/golden/atss_alpha_golden.py
"""
import os
import sys

import torch

from mmdet.core.bbox.assigners import ATSSAssigner

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402

torch.set_num_threads(1)


def level_anchors(size, stride, scale):
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    cx, cy = xs.reshape(-1).float() * stride, ys.reshape(-1).float() * stride
    h = scale * stride / 2
    return torch.stack([cx - h, cy - h, cx + h, cy + h], 1)


CASES = [("a08", 0.8, 9, False), ("a05", 0.5, 5, False), ("a03i", 0.3, 9, True)]


def main():
    g = torch.Generator().manual_seed(3)
    anchors = torch.cat([level_anchors(10, 8, 4), level_anchors(5, 16, 4)])
    counts = [100, 25]
    gt = torch.tensor([[5.0, 8.0, 40.0, 36.0], [30.0, 22.0, 70.0, 75.0], [50.0, 4.0, 66.0, 20.0],
                       [8.0, 45.0, 30.0, 70.0], [28.0, 20.0, 72.0, 73.0]])
    labels = torch.tensor([1, 0, 3, 1, 2])
    ignore = torch.tensor([[60.0, 50.0, 80.0, 80.0]])
    n = anchors.shape[0]
    cls = torch.randn(n, 4, generator=g) * 2
    preds = anchors + torch.randn(n, 4, generator=g) * 6
    preds[:, 2:] = torch.maximum(preds[:, 2:], preds[:, :2] + 1)
    out = {"anchors": anchors, "counts": torch.tensor(counts), "gt": gt, "gt_labels": labels, "ignore": ignore,
           "cls_scores": cls, "bbox_preds": preds}
    for tag, alpha, topk, ign in CASES:
        a = ATSSAssigner(topk=topk, alpha=alpha, ignore_iof_thr=0.5 if ign else -1)
        r = a.assign(anchors, counts, gt, ignore if ign else None, labels, cls, preds)
        out[tag + ".gt_inds"], out[tag + ".max_overlaps"], out[tag + ".labels"] = r.gt_inds, r.max_overlaps, r.labels
        print(tag, "positives", int((r.gt_inds > 0).sum()), "ignored", int((r.gt_inds < 0).sum()))
    save("atss_alpha", out)


if __name__ == "__main__":
    main()
