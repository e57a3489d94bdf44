"""Golden fixtures for the detection ops and losses (mmcv 1.7 / mmdet 2.28
semantics).

- roi_align: torchvision.ops.roi_align, whose CPU kernel follows the same
  algorithm as mmcv's RoIAlign (aligned offset -0.5, adaptive
  ceil(roi/out) sampling, samples beyond -1 or H/W give 0, clamping to the
  edge otherwise, average of the samples). One difference: in aligned mode
  mmcv asserts that RoIs have a non-negative size, torchvision does not
  check; the C test covers that error separately.
- nms: torchvision.ops.nms (same IoU formula as mmcv's CPU nms, offset 0);
  scores are distinct so that the order is unambiguous.
- batched_nms: mmcv's batched_nms written here in PyTorch (coordinate
  offsets idx * (boxes.max() + 1), then torchvision's nms).
- bbox_overlaps and the losses: mmdet's functions rewritten in PyTorch
  below (mmdet itself is not a dependency); gradients from autograd.

Run from the repository root: /usr/bin/python3 tests/golden/ops_det_golden.py
"""
import os
import sys

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402

torch.manual_seed(0)
torch.set_default_dtype(torch.float32)


def rand_boxes(n, size=20.0, min_wh=0.5):
    xy = torch.rand(n, 2) * size
    wh = torch.rand(n, 2) * size * 0.6 + min_wh
    return torch.cat([xy, xy + wh], 1)


# ---------------------------------------------------------------- detection
det = {}


def roi_case(name, feat_shape, rois, out, scale, sr, aligned):
    feat = torch.randn(*feat_shape, requires_grad=True)
    y = torchvision.ops.roi_align(feat, rois, out, scale, sr, aligned)
    g = torch.randn_like(y)
    y.backward(g)
    det.update({name + ".feat": feat, name + ".rois": rois, name + ".out": y, name + ".g": g,
                name + ".gfeat": feat.grad})


# batch index, x1, y1, x2, y2 in image pixels (feature = image * scale)
rois_a = torch.tensor([
    [0, 2.0, 3.0, 15.0, 12.0],     # inside
    [1, 0.0, 0.0, 26.0, 22.0],     # the whole image
    [0, -6.0, -4.0, 5.0, 7.0],     # partly left/above the image
    [1, 20.0, 15.0, 34.0, 30.0],   # partly right/below
    [1, 40.0, 40.0, 50.0, 48.0],   # entirely outside: zeros
    [0, 7.0, 5.0, 7.0, 9.0],       # zero width
    [0, 4.3, 6.1, 4.9, 6.8],       # smaller than one bin
    [1, 3.3, 1.7, 21.9, 8.2],
])
roi_case("roi_a", (2, 3, 11, 13), rois_a, (3, 4), 0.5, 0, True)
rois_b = torch.cat([torch.randint(0, 2, (12, 1)).float(), rand_boxes(12, 60.0, 2.0)], 1)
roi_case("roi_b", (2, 4, 16, 20), rois_b, (7, 7), 0.25, 2, True)
roi_case("roi_c", (2, 3, 11, 13), rois_a, (2, 3), 0.5, 0, False)   # legacy mode
roi_case("roi_empty", (1, 2, 5, 6), torch.zeros(0, 5), (7, 7), 1.0, 0, True)


def nms_case(name, boxes, scores, thr):
    det.update({name + ".boxes": boxes, name + ".scores": scores,
                name + ".keep": torchvision.ops.nms(boxes, scores, thr)})


def distinct_scores(n):
    return torch.randperm(n).float() / n + 0.01 * torch.rand(1)


b = rand_boxes(300, 100.0, 1.0)
b[10] = torch.tensor([5.0, 5.0, 5.0, 9.0])     # zero-area boxes
b[11] = torch.tensor([5.0, 5.0, 5.0, 9.0])
b[12] = torch.tensor([-20.0, -30.0, -2.0, -1.0])  # outside the image
nms_case("nms_a", b, distinct_scores(300), 0.5)
nms_case("nms_b", b, distinct_scores(300), 0.2)
nms_case("nms_empty", torch.zeros(0, 4), torch.zeros(0), 0.5)


def mmcv_batched_nms(boxes, scores, idxs, thr, class_agnostic=False):
    """mmcv.ops.batched_nms (boxes under split_thr, so one NMS call)."""
    if class_agnostic:
        boxes_for_nms = boxes
    else:
        max_coordinate = boxes.max()
        offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
        boxes_for_nms = boxes + offsets[:, None]
    return torchvision.ops.nms(boxes_for_nms, scores, thr)


def bnms_case(name, boxes, scores, idxs, thr, agnostic):
    det.update({name + ".boxes": boxes, name + ".scores": scores, name + ".idxs": idxs,
                name + ".keep": mmcv_batched_nms(boxes, scores, idxs, thr, agnostic)})


idx = torch.randint(0, 5, (300,))
bnms_case("bnms_a", b.clamp(min=0), distinct_scores(300), idx, 0.5, False)
bnms_case("bnms_agnostic", b.clamp(min=0), distinct_scores(300), idx, 0.5, True)
# Negative coordinates: the offset copies of neighbouring classes overlap and
# mmcv's result mixes classes; reproduce that too.
bn = rand_boxes(200, 40.0, 1.0) - 30.0
bnms_case("bnms_neg", bn, distinct_scores(200), torch.randint(0, 3, (200,)), 0.4, False)


def bbox_overlaps(bboxes1, bboxes2, mode="iou", is_aligned=False, eps=1e-6):
    """mmdet.core.bbox.iou_calculators.bbox_overlaps (2-D inputs, f32)."""
    rows, cols = bboxes1.size(-2), bboxes2.size(-2)
    if rows * cols == 0:
        return bboxes1.new_zeros((rows,) if is_aligned else (rows, cols))
    area1 = (bboxes1[..., 2] - bboxes1[..., 0]) * (bboxes1[..., 3] - bboxes1[..., 1])
    area2 = (bboxes2[..., 2] - bboxes2[..., 0]) * (bboxes2[..., 3] - bboxes2[..., 1])
    if is_aligned:
        lt = torch.max(bboxes1[..., :2], bboxes2[..., :2])
        rb = torch.min(bboxes1[..., 2:], bboxes2[..., 2:])
        wh = (rb - lt).clamp(min=0)
        overlap = wh[..., 0] * wh[..., 1]
        union = area1 + area2 - overlap if mode in ["iou", "giou"] else area1
        if mode == "giou":
            enclosed_lt = torch.min(bboxes1[..., :2], bboxes2[..., :2])
            enclosed_rb = torch.max(bboxes1[..., 2:], bboxes2[..., 2:])
    else:
        lt = torch.max(bboxes1[..., :, None, :2], bboxes2[..., None, :, :2])
        rb = torch.min(bboxes1[..., :, None, 2:], bboxes2[..., None, :, 2:])
        wh = (rb - lt).clamp(min=0)
        overlap = wh[..., 0] * wh[..., 1]
        if mode in ["iou", "giou"]:
            union = area1[..., None] + area2[..., None, :] - overlap
        else:
            union = area1[..., None]
        if mode == "giou":
            enclosed_lt = torch.min(bboxes1[..., :, None, :2], bboxes2[..., None, :, :2])
            enclosed_rb = torch.max(bboxes1[..., :, None, 2:], bboxes2[..., None, :, 2:])
    eps = union.new_tensor([eps])
    union = torch.max(union, eps)
    ious = overlap / union
    if mode in ["iou", "iof"]:
        return ious
    enclose_wh = (enclosed_rb - enclosed_lt).clamp(min=0)
    enclose_area = enclose_wh[..., 0] * enclose_wh[..., 1]
    enclose_area = torch.max(enclose_area, eps)
    return ious - (enclose_area - union) / enclose_area


def ov_case(name, a, bb, mode, aligned):
    a = a.clone().requires_grad_(True)
    bb = bb.clone().requires_grad_(True)
    y = bbox_overlaps(a, bb, mode, aligned)
    g = torch.randn_like(y)
    if y.numel():
        y.backward(g)
    det.update({name + ".a": a, name + ".b": bb, name + ".out": y, name + ".g": g,
                name + ".ga": a.grad if a.grad is not None else torch.zeros_like(a),
                name + ".gb": bb.grad if bb.grad is not None else torch.zeros_like(bb)})


oa, ob = rand_boxes(7), rand_boxes(5)
oa[3] = torch.tensor([30.0, 30.0, 31.0, 33.0])   # disjoint from everything
ob[1] = torch.tensor([4.0, 4.0, 4.0, 9.0])       # zero area
for mode in ["iou", "iof", "giou"]:
    ov_case("ov_pair_" + mode, oa, ob, mode, False)
    ov_case("ov_al_" + mode, oa, rand_boxes(7), mode, True)
ov_case("ov_empty", torch.zeros(0, 4), ob, "iou", False)

save("ops_det_detection", det)

# ------------------------------------------------------------------- losses
los = {}
EPS32 = torch.finfo(torch.float32).eps


def reduce_loss(loss, reduction):
    return loss if reduction == "none" else loss.mean() if reduction == "mean" else loss.sum()


def weight_reduce_loss(loss, weight=None, reduction="mean", avg_factor=None):
    """mmdet.models.losses.utils.weight_reduce_loss."""
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        return reduce_loss(loss, reduction)
    if reduction == "mean":
        return loss.sum() / (avg_factor + EPS32)
    if reduction != "none":
        raise ValueError('avg_factor can not be used with reduction="sum"')
    return loss


def cross_entropy(pred, label, weight=None, reduction="mean", avg_factor=None, class_weight=None,
                  ignore_index=-100, avg_non_ignore=False):
    loss = F.cross_entropy(pred, label, weight=class_weight, reduction="none", ignore_index=ignore_index)
    if avg_factor is None and avg_non_ignore and reduction == "mean":
        avg_factor = label.numel() - (label == ignore_index).sum().item()
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


def binary_cross_entropy(pred, label, weight=None, reduction="mean", avg_factor=None, ignore_index=-100):
    valid_mask = ((label >= 0) & (label != ignore_index)).float()
    weight = weight * valid_mask if weight is not None else valid_mask
    loss = F.binary_cross_entropy_with_logits(pred, label.float(), reduction="none")
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


def py_sigmoid_focal_loss(pred, label, weight=None, gamma=2.0, alpha=0.25, reduction="mean", avg_factor=None):
    """mmdet FocalLoss on CPU: one-hot of labels in [0, C] minus the
    background column, then py_sigmoid_focal_loss."""
    num_classes = pred.size(1)
    target = F.one_hot(label, num_classes=num_classes + 1)[:, :num_classes].type_as(pred)
    pred_sigmoid = pred.sigmoid()
    pt = (1 - pred_sigmoid) * target + pred_sigmoid * (1 - target)
    focal_weight = (alpha * target + (1 - alpha) * (1 - target)) * pt.pow(gamma)
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal_weight
    if weight is not None:
        if weight.shape != loss.shape:
            if weight.size(0) == loss.size(0):
                weight = weight.view(-1, 1)
            else:
                weight = weight.view(loss.size(0), -1)
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


def smooth_l1_loss(pred, target, weight=None, beta=1.0, reduction="mean", avg_factor=None):
    diff = torch.abs(pred - target)
    loss = torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


def l1_loss(pred, target, weight=None, reduction="mean", avg_factor=None):
    return weight_reduce_loss(torch.abs(pred - target), weight, reduction, avg_factor)


def giou_loss_module(pred, target, weight=None, eps=1e-7, reduction="mean", avg_factor=None):
    """mmdet GIoULoss.forward with loss_weight 1."""
    if weight is not None and not torch.any(weight > 0):
        if pred.dim() == weight.dim() + 1:
            weight = weight.unsqueeze(1)
        return (pred * weight).sum()
    if weight is not None and weight.dim() > 1:
        weight = weight.mean(-1)
    loss = 1 - bbox_overlaps(pred, target, mode="giou", is_aligned=True, eps=eps)
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


def loss_case(name, fn, inputs, grad_keys, **kw):
    """inputs: dict name -> tensor; grad_keys: the ones to differentiate."""
    ins = {k: (v.clone().requires_grad_(True) if k in grad_keys else v) for k, v in inputs.items()}
    y = fn(**ins, **kw)
    g = torch.randn_like(y)
    if y.numel() and any(ins[k].requires_grad for k in grad_keys):
        y.backward(g)
    for k, v in ins.items():
        los[f"{name}.{k}"] = v
        if k in grad_keys:
            los[f"{name}.g{k}"] = v.grad if v.grad is not None else torch.zeros_like(v)
    los[name + ".out"] = y
    los[name + ".g"] = g


RED = ["mean", "sum", "none"]
L = torch.rand(5, 3) * 2
for r in RED:
    loss_case("wrl_" + r, weight_reduce_loss, {"loss": L, "weight": torch.rand(5, 1)}, ["loss", "weight"],
              reduction=r)
loss_case("wrl_avg", weight_reduce_loss, {"loss": L, "weight": torch.rand(3)}, ["loss", "weight"],
          reduction="mean", avg_factor=4.0)
loss_case("wrl_noweight", weight_reduce_loss, {"loss": L}, ["loss"], reduction="mean")
loss_case("wrl_avg_none", weight_reduce_loss, {"loss": L}, ["loss"], reduction="none", avg_factor=4.0)

logits = torch.randn(9, 5) * 2
labels = torch.tensor([0, 4, 2, -100, 1, 3, -100, 2, 0])
cw = torch.tensor([1.0, 0.5, 2.0, 1.5, 0.8])
sw = torch.rand(9)
for r in RED:
    loss_case("ce_" + r, cross_entropy, {"pred": logits, "label": labels, "weight": sw}, ["pred"],
              reduction=r, class_weight=cw)
loss_case("ce_avg", cross_entropy, {"pred": logits, "label": labels}, ["pred"], reduction="mean", avg_factor=6.5)
loss_case("ce_nonignore", cross_entropy, {"pred": logits, "label": labels}, ["pred"], reduction="mean",
          avg_non_ignore=True)
loss_case("ce_ignore7", cross_entropy, {"pred": logits, "label": torch.tensor([0, 4, 7, 7, 1, 3, 2, 2, 0])},
          ["pred"], reduction="mean", ignore_index=7)

bp = torch.randn(6, 4) * 2
bt = (torch.rand(6, 4) > 0.5).float()
bt[0, 1] = 0.3                 # soft target
bt[2, 0] = -100.0              # ignored
bt[4, 3] = -1.0                # negative labels are masked out as in mmdet
for r in RED:
    loss_case("bce_" + r, binary_cross_entropy, {"pred": bp, "label": bt, "weight": torch.rand(6, 4)}, ["pred"],
              reduction=r)
loss_case("bce_avg_bcast", binary_cross_entropy, {"pred": bp, "label": bt, "weight": torch.rand(4)}, ["pred"],
          reduction="mean", avg_factor=10.0)

fp = torch.randn(10, 4) * 2
fl = torch.tensor([0, 4, 2, 4, 3, 1, 4, 4, 2, 0])   # 4 = background
for r in RED:
    loss_case("focal_" + r, py_sigmoid_focal_loss, {"pred": fp, "label": fl, "weight": torch.rand(10)}, ["pred"],
              reduction=r)
loss_case("focal_avg_nc", py_sigmoid_focal_loss, {"pred": fp, "label": fl, "weight": torch.rand(10, 4)}, ["pred"],
          reduction="mean", avg_factor=3.0, gamma=1.5, alpha=0.4)
loss_case("focal_flat", py_sigmoid_focal_loss, {"pred": fp, "label": fl, "weight": torch.rand(40)}, ["pred"],
          reduction="sum")
loss_case("focal_noweight", py_sigmoid_focal_loss, {"pred": fp, "label": fl}, ["pred"], reduction="mean")

rp, rt = torch.randn(8, 4), torch.randn(8, 4)
rw = (torch.rand(8, 4) > 0.3).float()
for r in RED:
    loss_case("sl1_" + r, smooth_l1_loss, {"pred": rp, "target": rt, "weight": rw}, ["pred", "target"],
              reduction=r, beta=1.0)
    loss_case("l1_" + r, l1_loss, {"pred": rp, "target": rt, "weight": rw}, ["pred", "target"], reduction=r)
loss_case("sl1_avg", smooth_l1_loss, {"pred": rp, "target": rt}, ["pred", "target"], reduction="mean",
          avg_factor=12.0, beta=0.5)
loss_case("l1_avg", l1_loss, {"pred": rp, "target": rt, "weight": rw}, ["pred"], reduction="mean", avg_factor=12.0)

gp, gt = rand_boxes(8), rand_boxes(8)
gp[2] = torch.tensor([40.0, 40.0, 42.0, 45.0])   # no overlap with its target
for r in RED:
    loss_case("giou_" + r, giou_loss_module, {"pred": gp, "target": gt, "weight": torch.rand(8)},
              ["pred", "target"], reduction=r)
loss_case("giou_avg_w4", giou_loss_module, {"pred": gp, "target": gt, "weight": torch.rand(8, 4)},
          ["pred", "target"], reduction="mean", avg_factor=5.0)
loss_case("giou_nopos", giou_loss_module, {"pred": gp, "target": gt, "weight": -torch.rand(8)}, ["pred"],
          reduction="mean")

save("ops_det_losses", los)
print(f"{len(det)} detection and {len(los)} loss entries written")
