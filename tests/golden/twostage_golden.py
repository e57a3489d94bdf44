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




# ---------------------------------------------------------------- bbox head
STDS = torch.tensor([0.1, 0.1, 0.2, 0.2])


def bbox2delta(p, g, stds=STDS):
    px, py = (p[:, 0] + p[:, 2]) * 0.5, (p[:, 1] + p[:, 3]) * 0.5
    pw, ph = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    gx, gy = (g[:, 0] + g[:, 2]) * 0.5, (g[:, 1] + g[:, 3]) * 0.5
    gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    d = torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=-1)
    return d / stds


def delta2bbox(rois, deltas, max_shape, stds=STDS, wh_ratio_clip=16 / 1000):
    n, k = deltas.size(0), deltas.size(1) // 4
    deltas = deltas.reshape(-1, 4) * stds
    dxy, dwh = deltas[:, :2], deltas[:, 2:]
    rois_ = rois.repeat(1, k).reshape(-1, 4)
    pxy = (rois_[:, :2] + rois_[:, 2:]) * 0.5
    pwh = rois_[:, 2:] - rois_[:, :2]
    max_ratio = abs(math.log(wh_ratio_clip))
    dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
    gxy = pxy + pwh * dxy
    gwh = pwh * dwh.exp()
    b = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
    b[..., 0::2].clamp_(min=0, max=max_shape[1])
    b[..., 1::2].clamp_(min=0, max=max_shape[0])
    return b.reshape(n, -1)


def batched_nms(boxes, scores, idxs, iou):
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    keep = torchvision.ops.nms(boxes + offsets[:, None], scores, iou)
    return keep


def multiclass_nms(multi_bboxes, multi_scores, score_thr, iou, max_num):
    num_classes = multi_scores.size(1) - 1
    n = multi_scores.size(0)
    if multi_bboxes.shape[1] > 4:
        bboxes = multi_bboxes.view(n, -1, 4)
    else:
        bboxes = multi_bboxes[:, None].expand(n, num_classes, 4)
    scores = multi_scores[:, :-1]
    labels = torch.arange(num_classes, dtype=torch.long).view(1, -1).expand_as(scores)
    bboxes, scores, labels = bboxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
    inds = (scores > score_thr).nonzero(as_tuple=False).squeeze(1)
    bboxes, scores, labels = bboxes[inds], scores[inds], labels[inds]
    keep = batched_nms(bboxes, scores, labels, iou)[:max_num]
    return torch.cat([bboxes[keep], scores[keep, None]], -1), labels[keep]


class Shared2FC(torch.nn.Module):
    def __init__(self, in_ch, size, fc, nc, agnostic):
        super().__init__()
        self.shared_fcs = torch.nn.ModuleList([torch.nn.Linear(in_ch * size * size, fc), torch.nn.Linear(fc, fc)])
        self.fc_cls = torch.nn.Linear(fc, nc + 1)
        self.fc_reg = torch.nn.Linear(fc, 4 if agnostic else 4 * nc)
        self.nc, self.agnostic = nc, agnostic

    def forward(self, x):
        x = x.flatten(1)
        for f in self.shared_fcs:
            x = F.relu(f(x))
        return self.fc_cls(x), self.fc_reg(x)

    def get_targets(self, samples):
        L, LW, T, TW = [], [], [], []
        for pos, neg, pos_gt, pos_lab in samples:
            np_, nn_ = pos.size(0), neg.size(0)
            labels = torch.full((np_ + nn_,), self.nc, dtype=torch.long)
            lw = torch.zeros(np_ + nn_)
            t = torch.zeros(np_ + nn_, 4)
            tw = torch.zeros(np_ + nn_, 4)
            if np_ > 0:
                labels[:np_] = pos_lab
                lw[:np_] = 1.0
                t[:np_] = bbox2delta(pos, pos_gt)
                tw[:np_] = 1
            if nn_ > 0:
                lw[-nn_:] = 1.0
            L.append(labels), LW.append(lw), T.append(t), TW.append(tw)
        return torch.cat(L), torch.cat(LW), torch.cat(T), torch.cat(TW)

    def loss(self, cls_score, bbox_pred, labels, lw, t, tw, smooth_beta=None):
        eps = torch.finfo(torch.float32).eps
        avg = max(float((lw > 0).sum()), 1.0)
        lc = (F.cross_entropy(cls_score, labels, reduction="none") * lw).sum() / (avg + eps)
        acc = (cls_score.argmax(1) == labels).float().sum() * 100.0 / cls_score.size(0)
        pos = (labels >= 0) & (labels < self.nc)
        if self.agnostic:
            pp = bbox_pred.view(bbox_pred.size(0), 4)[pos]
        else:
            pp = bbox_pred.view(bbox_pred.size(0), -1, 4)[pos, labels[pos]]
        diff = (pp - t[pos]).abs()
        if smooth_beta is not None:
            diff = torch.where(diff < smooth_beta, 0.5 * diff * diff / smooth_beta, diff - 0.5 * smooth_beta)
        lb = (diff * tw[pos]).sum() / (t.size(0) + eps)
        return lc, lb, acc


def rand_boxes(n, W, H, g):
    xy = torch.rand(n, 2, generator=g) * torch.tensor([W * 0.7, H * 0.7])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([W * 0.3, H * 0.3]) + 4
    return torch.cat([xy, xy + wh], 1)




def make_extractor():
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


def make_bbox_head():
    bh = {}
    g = torch.Generator().manual_seed(2)
    IN, S, FC, NC = 4, 3, 16, 3
    # two images' sampling results: image 0 with 3 positives and 5 negatives,
    # image 1 with 2 positives and 4 negatives
    samples = []
    for i, (np_, nn_) in enumerate([(3, 5), (2, 4)]):
        pos = rand_boxes(np_, 100, 80, g)
        pos_gt = pos + (torch.rand(np_, 4, generator=g) - 0.5) * 3    # widths stay positive
        pos_lab = torch.randint(0, NC, (np_,), generator=g)
        neg = rand_boxes(nn_, 100, 80, g)
        samples.append((pos, neg, pos_gt, pos_lab))
        bh.update({"s%d.pos" % i: pos, "s%d.neg" % i: neg, "s%d.pos_gt" % i: pos_gt, "s%d.pos_lab" % i: pos_lab})
    K = sum(p.size(0) + n.size(0) for p, n, _, _ in samples)
    x = torch.randn(K, IN, S, S, generator=g)
    bh["x"] = x
    for tag, agnostic, beta in (("cls", False, None), ("agn", True, 1.0)):
        torch.manual_seed(3)
        head = Shared2FC(IN, S, FC, NC, agnostic)
        for p in head.parameters():                  # larger than mmdet's init: a non-trivial loss
            torch.nn.init.normal_(p, 0, 0.3)
        cls_score, bbox_pred = head(x)
        labels, lw, t, tw = head.get_targets(samples)
        lc, lb, acc = head.loss(cls_score, bbox_pred, labels, lw, t, tw, beta)
        (lc + lb).backward()
        for k, v in head.state_dict().items():
            bh["%s.w.%s" % (tag, k)] = v
            bh["%s.g.%s" % (tag, k)] = dict(head.named_parameters())[k].grad
        bh.update({tag + ".cls_score": cls_score, tag + ".bbox_pred": bbox_pred, tag + ".labels": labels,
                   tag + ".label_weights": lw, tag + ".bbox_targets": t, tag + ".bbox_weights": tw,
                   tag + ".loss_cls": lc, tag + ".loss_bbox": lb, tag + ".acc": acc})

        # get_bboxes for one image: 12 RoIs, sharper scores, rescale by 0.5 / 0.8
        rois = torch.cat([torch.zeros(12, 1), rand_boxes(12, 100, 80, g)], 1)
        rois[6:, 1:] = rois[:6, 1:] + torch.rand(6, 4, generator=g) * 4     # overlapping pairs for NMS
        cs = torch.randn(12, NC + 1, generator=g) * 2
        bp = torch.randn(12, 4 if agnostic else 4 * NC, generator=g)
        img_shape = (70, 90)
        sf = torch.tensor([0.5, 0.8, 0.5, 0.8])
        scores = F.softmax(cs, dim=-1)
        boxes = delta2bbox(rois[:, 1:], bp, img_shape)
        boxes = (boxes.view(12, -1, 4) / sf).view(12, -1)
        dets, dl = multiclass_nms(boxes, scores, 0.2, 0.5, 6)
        bh.update({tag + ".gb.rois": rois, tag + ".gb.cls_score": cs, tag + ".gb.bbox_pred": bp,
                   tag + ".gb.dets": dets, tag + ".gb.labels": dl})
    save("twostage_bbox_head", bh)


if __name__ == "__main__":
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float32)
    make_extractor()
    make_bbox_head()
