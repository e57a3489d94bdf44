"""Golden fixture for ATSSAssigner with alpha (DDOD's dynamic cost),
computed by mmdet 2.28.2's ATSSAssigner.assign itself, for
tests/unit/test_atss.c (where mmdet does not import yet, by `atss_assign`
below, a PyTorch re-statement of that method, line by line; the fixture's
metadata says which made it): anchors on two pyramid levels, gt boxes with
labels, the head's classification logits and decoded box predictions for
every anchor; per case (alpha, topk, ignored gts) the AssignResult's
gt_inds, max_overlaps and labels.

Run from the repository root once mmdet imports:
    /usr/bin/python3 tests/golden/atss_alpha_golden.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402

torch.set_num_threads(1)


def iou(a, b):
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:4], b[None, :, 2:4])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter, area_a, area_b


def overlaps_iou(a, b):
    inter, aa, ab = iou(a, b)
    return inter / torch.max(aa[:, None] + ab[None, :] - inter, torch.tensor(1e-6))


def overlaps_iof(a, b):
    inter, aa, _ = iou(a, b)
    return inter / torch.max(aa[:, None], torch.tensor(1e-6))


def atss_assign(topk, alpha, ignore_iof_thr, bboxes, num_level_bboxes, gt_bboxes, gt_bboxes_ignore, gt_labels,
                cls_scores, bbox_preds):
    """mmdet 2.28's ATSSAssigner.assign with alpha, restated: (gt_inds,
    max_overlaps, labels)."""
    INF = 100000000
    num_gt, num_bboxes = gt_bboxes.size(0), bboxes.size(0)
    cls_cost = torch.sigmoid(cls_scores[:, gt_labels])
    overlaps = cls_cost ** (1 - alpha) * overlaps_iou(bbox_preds, gt_bboxes) ** alpha
    assigned_gt_inds = overlaps.new_full((num_bboxes,), 0, dtype=torch.long)
    gt_points = torch.stack(((gt_bboxes[:, 0] + gt_bboxes[:, 2]) / 2.0, (gt_bboxes[:, 1] + gt_bboxes[:, 3]) / 2.0), 1)
    bboxes_cx = (bboxes[:, 0] + bboxes[:, 2]) / 2.0
    bboxes_cy = (bboxes[:, 1] + bboxes[:, 3]) / 2.0
    bboxes_points = torch.stack((bboxes_cx, bboxes_cy), dim=1)
    distances = (bboxes_points[:, None, :] - gt_points[None, :, :]).pow(2).sum(-1).sqrt()
    if ignore_iof_thr > 0 and gt_bboxes_ignore is not None and gt_bboxes_ignore.numel() > 0:
        ignore_max_overlaps, _ = overlaps_iof(bboxes, gt_bboxes_ignore).max(dim=1)
        ignore_idxs = ignore_max_overlaps > ignore_iof_thr
        distances[ignore_idxs, :] = INF
        assigned_gt_inds[ignore_idxs] = -1
    candidate_idxs = []
    start_idx = 0
    for bboxes_per_level in num_level_bboxes:
        end_idx = start_idx + bboxes_per_level
        selectable_k = min(topk, bboxes_per_level)
        _, topk_idxs_per_level = distances[start_idx:end_idx, :].topk(selectable_k, dim=0, largest=False)
        candidate_idxs.append(topk_idxs_per_level + start_idx)
        start_idx = end_idx
    candidate_idxs = torch.cat(candidate_idxs, dim=0)
    candidate_overlaps = overlaps[candidate_idxs, torch.arange(num_gt)]
    overlaps_thr_per_gt = candidate_overlaps.mean(0) + candidate_overlaps.std(0)
    is_pos = candidate_overlaps >= overlaps_thr_per_gt[None, :]
    for gt_idx in range(num_gt):
        candidate_idxs[:, gt_idx] += gt_idx * num_bboxes
    ep_bboxes_cx = bboxes_cx.view(1, -1).expand(num_gt, num_bboxes).contiguous().view(-1)
    ep_bboxes_cy = bboxes_cy.view(1, -1).expand(num_gt, num_bboxes).contiguous().view(-1)
    candidate_idxs = candidate_idxs.view(-1)
    l_ = ep_bboxes_cx[candidate_idxs].view(-1, num_gt) - gt_bboxes[:, 0]
    t_ = ep_bboxes_cy[candidate_idxs].view(-1, num_gt) - gt_bboxes[:, 1]
    r_ = gt_bboxes[:, 2] - ep_bboxes_cx[candidate_idxs].view(-1, num_gt)
    b_ = gt_bboxes[:, 3] - ep_bboxes_cy[candidate_idxs].view(-1, num_gt)
    is_in_gts = torch.stack([l_, t_, r_, b_], dim=1).min(dim=1)[0] > 0.01
    is_pos = is_pos & is_in_gts
    overlaps_inf = torch.full_like(overlaps, -INF).t().contiguous().view(-1)
    index = candidate_idxs.view(-1)[is_pos.view(-1)]
    overlaps_inf[index] = overlaps.t().contiguous().view(-1)[index]
    overlaps_inf = overlaps_inf.view(num_gt, -1).t()
    max_overlaps, argmax_overlaps = overlaps_inf.max(dim=1)
    assigned_gt_inds[max_overlaps != -INF] = argmax_overlaps[max_overlaps != -INF] + 1
    assigned_labels = assigned_gt_inds.new_full((num_bboxes,), -1)
    pos_inds = torch.nonzero(assigned_gt_inds > 0, as_tuple=False).squeeze()
    if pos_inds.numel() > 0:
        assigned_labels[pos_inds] = gt_labels[assigned_gt_inds[pos_inds] - 1]
    return assigned_gt_inds, max_overlaps, assigned_labels


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
    # irregular coordinates: no two anchor centres at the same distance from a gt's
    gt = torch.tensor([[5.31, 8.17, 40.42, 36.73], [30.26, 22.11, 70.58, 75.34], [50.13, 4.46, 66.87, 20.29],
                       [8.62, 45.38, 30.19, 70.57], [28.44, 20.93, 72.71, 73.16]])
    labels = torch.tensor([1, 0, 3, 1, 2])
    ignore = torch.tensor([[60.0, 50.0, 80.0, 80.0]])
    n = anchors.shape[0]
    cls = torch.randn(n, 4, generator=g) * 2
    preds = anchors + torch.randn(n, 4, generator=g) * 6
    preds[:, 2:] = torch.maximum(preds[:, 2:], preds[:, :2] + 1)
    out = {"anchors": anchors, "counts": torch.tensor(counts), "gt": gt, "gt_labels": labels, "ignore": ignore,
           "cls_scores": cls, "bbox_preds": preds}
    try:
        from mmdet.core.bbox.assigners import ATSSAssigner
        source = "mmdet 2.28.2 ATSSAssigner.assign"
    except ImportError:
        ATSSAssigner = None
        source = "atss_assign (PyTorch re-statement of mmdet 2.28.2 ATSSAssigner.assign)"
    for tag, alpha, topk, ign in CASES:
        thr = 0.5 if ign else -1
        args = (anchors, counts, gt, ignore if ign else None, labels, cls, preds)
        if ATSSAssigner is not None:
            r = ATSSAssigner(topk=topk, alpha=alpha, ignore_iof_thr=thr).assign(*args)
            res = r.gt_inds, r.max_overlaps, r.labels
        else:
            res = atss_assign(topk, alpha, thr, *args)
        out[tag + ".gt_inds"], out[tag + ".max_overlaps"], out[tag + ".labels"] = res
        print(tag, "positives", int((res[0] > 0).sum()), "ignored", int((res[0] < 0).sum()))
    print("source:", source)
    save("atss_alpha", out, {"source": source})


if __name__ == "__main__":
    main()
