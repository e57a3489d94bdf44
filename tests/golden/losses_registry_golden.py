"""Golden fixture for the "losses" registry's plugins (plugins/losses):
mmdet 2.28's loss modules (mmdet/models/losses) rewritten here in PyTorch
(mmdet itself is not a dependency), gradients from autograd.

Each case is a loss config, its inputs and what the module returns. The
fixture's metadata carries, for each case <c>: <c>.cfg (the config group's
body in libconfig syntax, as tests/unit/test_losses_registry.c builds it),
<c>.reduction ("default" or a reduction_override) and <c>.avg_factor ("-1"
for None); "cases" lists the cases. Tensors: <c>.pred, <c>.target,
<c>.weight (when given), <c>.out, <c>.g (the upstream gradient) and
<c>.gpred.

One convention is ours, not mmdet's: CrossEntropyLoss with use_sigmoid and
i64 labels [N] for pred [N] treats pred as [N, 1] (label 0 the object, 1 the
background, as for pred [N, 1]); mmdet would take the raw labels as targets.

Run from the repository root: /usr/bin/python3 tests/golden/losses_registry_golden.py
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402

torch.manual_seed(0)
torch.set_default_dtype(torch.float32)
EPS32 = torch.finfo(torch.float32).eps


# ------------------------------------------------------------ mmdet's utils
def reduce_loss(loss, reduction):
    return loss if reduction == "none" else loss.mean() if reduction == "mean" else loss.sum()


def weight_reduce_loss(loss, weight=None, reduction="mean", avg_factor=None):
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        return reduce_loss(loss, reduction)
    if reduction == "mean":
        return loss.sum() / (avg_factor + EPS32)
    if reduction != "none":
        raise ValueError('avg_factor can not be used with reduction="sum"')
    return loss


def weighted(fn):
    """mmdet's @weighted_loss."""
    def wrapper(pred, target, weight=None, reduction="mean", avg_factor=None, **kw):
        return weight_reduce_loss(fn(pred, target, **kw), weight, reduction, avg_factor)
    return wrapper


# ------------------------------------------------------------- focal_loss.py
def py_sigmoid_focal_loss(pred, target, weight=None, gamma=2.0, alpha=0.25, reduction="mean", avg_factor=None):
    pred_sigmoid = pred.sigmoid()
    target = target.type_as(pred)
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


def focal_loss(pred, target, weight, avg_factor, reduction, gamma=2.0, alpha=0.25, loss_weight=1.0):
    """FocalLoss.forward on the CPU: one-hot labels (C = background dropped)."""
    num_classes = pred.size(1)
    target = F.one_hot(target, num_classes=num_classes + 1)[:, :num_classes]
    return loss_weight * py_sigmoid_focal_loss(pred, target, weight, gamma=gamma, alpha=alpha,
                                               reduction=reduction, avg_factor=avg_factor)


# ----------------------------------------------------- cross_entropy_loss.py
def cross_entropy(pred, label, weight=None, reduction="mean", avg_factor=None, class_weight=None,
                  ignore_index=-100, avg_non_ignore=False):
    ignore_index = -100 if ignore_index is None else ignore_index
    loss = F.cross_entropy(pred, label, weight=class_weight, reduction="none", ignore_index=ignore_index)
    if avg_factor is None and avg_non_ignore and reduction == "mean":
        avg_factor = label.numel() - (label == ignore_index).sum().item()
    if weight is not None:
        weight = weight.float()
    return weight_reduce_loss(loss, weight=weight, reduction=reduction, avg_factor=avg_factor)


def _expand_onehot_labels(labels, label_weights, label_channels, ignore_index):
    bin_labels = labels.new_full((labels.size(0), label_channels), 0)
    valid_mask = (labels >= 0) & (labels != ignore_index)
    inds = torch.nonzero(valid_mask & (labels < label_channels), as_tuple=False)
    if inds.numel() > 0:
        bin_labels[inds, labels[inds]] = 1
    valid_mask = valid_mask.view(-1, 1).expand(labels.size(0), label_channels).float()
    if label_weights is None:
        bin_label_weights = valid_mask
    else:
        bin_label_weights = label_weights.view(-1, 1).repeat(1, label_channels)
        bin_label_weights *= valid_mask
    return bin_labels, bin_label_weights, valid_mask


def binary_cross_entropy(pred, label, weight=None, reduction="mean", avg_factor=None, class_weight=None,
                         ignore_index=-100, avg_non_ignore=False):
    ignore_index = -100 if ignore_index is None else ignore_index
    if pred.dim() != label.dim():
        label, weight, valid_mask = _expand_onehot_labels(label, weight, pred.size(-1), ignore_index)
    else:
        valid_mask = ((label >= 0) & (label != ignore_index)).float()
        weight = weight * valid_mask if weight is not None else valid_mask
    if avg_factor is None and avg_non_ignore and reduction == "mean":
        avg_factor = valid_mask.sum().item()
    weight = weight.float()
    loss = F.binary_cross_entropy_with_logits(pred, label.float(), pos_weight=class_weight, reduction="none")
    return weight_reduce_loss(loss, weight, reduction=reduction, avg_factor=avg_factor)


def cross_entropy_loss(pred, target, weight, avg_factor, reduction, use_sigmoid=False, class_weight=None,
                       ignore_index=None, loss_weight=1.0, avg_non_ignore=False):
    cw = pred.new_tensor(class_weight) if class_weight is not None else None
    fn = binary_cross_entropy if use_sigmoid else cross_entropy
    flat = use_sigmoid and pred.dim() == 1 and target.dtype == torch.int64   # our convention, see above
    p = pred.view(-1, 1) if flat else pred
    loss = loss_weight * fn(p, target, weight, class_weight=cw, reduction=reduction, avg_factor=avg_factor,
                            ignore_index=ignore_index, avg_non_ignore=avg_non_ignore)
    return loss.view(-1) if flat and reduction == "none" else loss


# --------------------------------------------------------- smooth_l1_loss.py
@weighted
def smooth_l1(pred, target, beta=1.0):
    assert beta > 0
    if target.numel() == 0:
        return pred.sum() * 0
    diff = torch.abs(pred - target)
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


@weighted
def l1(pred, target):
    if target.numel() == 0:
        return pred.sum() * 0
    return torch.abs(pred - target)


def smooth_l1_loss(pred, target, weight, avg_factor, reduction, beta=1.0, loss_weight=1.0):
    return loss_weight * smooth_l1(pred, target, weight, reduction=reduction, avg_factor=avg_factor, beta=beta)


def l1_loss(pred, target, weight, avg_factor, reduction, loss_weight=1.0):
    return loss_weight * l1(pred, target, weight, reduction=reduction, avg_factor=avg_factor)


# -------------------------------------------------------- balanced_l1_loss.py
@weighted
def balanced_l1(pred, target, beta=1.0, alpha=0.5, gamma=1.5):
    assert beta > 0
    if target.numel() == 0:
        return pred.sum() * 0
    diff = torch.abs(pred - target)
    b = math.e ** (gamma / alpha) - 1
    return torch.where(diff < beta, alpha / b * (b * diff + 1) * torch.log(b * diff / beta + 1) - alpha * diff,
                       gamma * diff + gamma / b - alpha * beta)


def balanced_l1_loss(pred, target, weight, avg_factor, reduction, alpha=0.5, gamma=1.5, beta=1.0, loss_weight=1.0):
    return loss_weight * balanced_l1(pred, target, weight, reduction=reduction, avg_factor=avg_factor, beta=beta,
                                     alpha=alpha, gamma=gamma)


# --------------------------------------------------------------- iou_loss.py
def bbox_overlaps_aligned(b1, b2, mode="iou", eps=1e-6):
    """mmdet.core.bbox_overlaps(b1, b2, mode, is_aligned=True, eps) for [N, 4]."""
    if b1.size(0) == 0:
        return b1.new_zeros((0,))
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    lt = torch.max(b1[..., :2], b2[..., :2])
    rb = torch.min(b1[..., 2:], b2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = area1 + area2 - overlap
    eps_t = union.new_tensor([eps])
    union = torch.max(union, eps_t)
    ious = overlap / union
    if mode == "iou":
        return ious
    enclosed_lt = torch.min(b1[..., :2], b2[..., :2])
    enclosed_rb = torch.max(b1[..., 2:], b2[..., 2:])
    enclose_wh = (enclosed_rb - enclosed_lt).clamp(min=0)
    enclose_area = torch.max(enclose_wh[..., 0] * enclose_wh[..., 1], eps_t)
    return ious - (enclose_area - union) / enclose_area


@weighted
def iou_fn(pred, target, mode="log", eps=1e-6):
    ious = bbox_overlaps_aligned(pred, target).clamp(min=eps)
    if mode == "linear":
        return 1 - ious
    if mode == "square":
        return 1 - ious ** 2
    return -ious.log()


@weighted
def giou_fn(pred, target, eps=1e-7):
    return 1 - bbox_overlaps_aligned(pred, target, mode="giou", eps=eps)


def _diou_terms(pred, target, eps):
    lt = torch.max(pred[:, :2], target[:, :2])
    rb = torch.min(pred[:, 2:], target[:, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    ap = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    ag = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = ap + ag - overlap + eps
    ious = overlap / union
    enclose_x1y1 = torch.min(pred[:, :2], target[:, :2])
    enclose_x2y2 = torch.max(pred[:, 2:], target[:, 2:])
    enclose_wh = (enclose_x2y2 - enclose_x1y1).clamp(min=0)
    cw, ch = enclose_wh[:, 0], enclose_wh[:, 1]
    c2 = cw ** 2 + ch ** 2 + eps
    b1_x1, b1_y1, b1_x2, b1_y2 = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    b2_x1, b2_y1, b2_x2, b2_y2 = target[:, 0], target[:, 1], target[:, 2], target[:, 3]
    left = ((b2_x1 + b2_x2) - (b1_x1 + b1_x2)) ** 2 / 4
    right = ((b2_y1 + b2_y2) - (b1_y1 + b1_y2)) ** 2 / 4
    return ious, left + right, c2


@weighted
def diou_fn(pred, target, eps=1e-7):
    ious, rho2, c2 = _diou_terms(pred, target, eps)
    return 1 - (ious - rho2 / c2)


@weighted
def ciou_fn(pred, target, eps=1e-7):
    ious, rho2, c2 = _diou_terms(pred, target, eps)
    w1, h1 = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1] + eps
    w2, h2 = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1] + eps
    factor = 4 / math.pi ** 2
    v = factor * torch.pow(torch.atan(w2 / h2) - torch.atan(w1 / h1), 2)
    with torch.no_grad():
        alpha = (ious > 0.5).float() * v / (1 - ious + v)
    cious = ious - (rho2 / c2 + alpha * v)
    return 1 - cious.clamp(min=-1.0, max=1.0)


def box_module(fn, nopos_needs_reduction):
    """IoULoss / GIoULoss / DIoULoss / CIoULoss.forward."""
    def forward(pred, target, weight, avg_factor, reduction, loss_weight=1.0, **kw):
        kw.setdefault("eps", 1e-6)   # the modules' default (the functions' is 1e-7)
        if weight is not None and not torch.any(weight > 0) and (reduction != "none" or not nopos_needs_reduction):
            if pred.dim() == weight.dim() + 1:
                weight = weight.unsqueeze(1)
            return (pred * weight).sum()
        if weight is not None and weight.dim() > 1:
            assert weight.shape == pred.shape
            weight = weight.mean(-1)
        return loss_weight * fn(pred, target, weight, reduction=reduction, avg_factor=avg_factor, **kw)
    return forward


def iou_loss(pred, target, weight, avg_factor, reduction, linear=False, mode="log", **kw):
    return box_module(iou_fn, True)(pred, target, weight, avg_factor, reduction,
                                    mode="linear" if linear else mode, **kw)


giou_loss = box_module(giou_fn, False)
diou_loss = box_module(diou_fn, False)
ciou_loss = box_module(ciou_fn, False)


# ------------------------------------------------------------------- cases
cases, out, meta = [], {}, {}


def cfg_text(type_, **kw):
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"%s"' % v
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(float(v)) if isinstance(v, float) else str(v)
    return " ".join(['type = "%s";' % type_] + ["%s = %s;" % (k, val(v)) for k, v in kw.items()])


def case(name, type_, fn, pred, target, weight=None, override=None, avg_factor=None, **kw):
    """kw: the loss's config (mmdet's names and defaults apply to the rest);
    override: forward's reduction_override."""
    p = pred.clone().requires_grad_(True)
    red = override or kw.get("reduction", "mean")
    fkw = {k: v for k, v in kw.items() if k != "reduction"}
    y = fn(p, target, weight, avg_factor, red, **fkw)
    g = torch.randn_like(y)
    y.backward(g)
    cases.append(name)
    out.update({name + ".pred": pred, name + ".target": target, name + ".out": y, name + ".g": g,
                name + ".gpred": p.grad if p.grad is not None else torch.zeros_like(pred)})
    if weight is not None:
        out[name + ".weight"] = weight
    meta[name + ".cfg"] = cfg_text(type_, **kw)
    meta[name + ".reduction"] = override or "default"
    meta[name + ".avg_factor"] = repr(float(avg_factor)) if avg_factor is not None else "-1"


def rand_boxes(n, size=20.0, min_wh=0.5):
    xy = torch.rand(n, 2) * size
    wh = torch.rand(n, 2) * size * 0.6 + min_wh
    return torch.cat([xy, xy + wh], 1)


# FocalLoss: logits [6, 3], labels in [0, 3] (3 = background)
fp = torch.randn(6, 3) * 2
fl = torch.tensor([0, 3, 2, 1, 3, 0])
case("focal_default", "FocalLoss", focal_loss, fp, fl)
case("focal_sum_row", "FocalLoss", focal_loss, fp, fl, torch.rand(6), reduction="sum", gamma=1.5, alpha=0.4,
     loss_weight=2.0)
case("focal_none_elem", "FocalLoss", focal_loss, fp, fl, torch.rand(6, 3), reduction="none")
case("focal_avg", "FocalLoss", focal_loss, fp, fl, torch.rand(6), avg_factor=4.0, override="mean", reduction="sum",
     loss_weight=0.5)

# CrossEntropyLoss, softmax: logits [7, 4], labels with ignored rows
cp = torch.randn(7, 4) * 2
cl = torch.tensor([0, 3, -100, 1, 2, -100, 2])
case("ce_default", "CrossEntropyLoss", cross_entropy_loss, cp, cl, torch.rand(7))
case("ce_class_weight_sum", "CrossEntropyLoss", cross_entropy_loss, cp, cl, torch.rand(7), reduction="sum",
     class_weight=[1.0, 0.5, 2.0, 1.5])
case("ce_none", "CrossEntropyLoss", cross_entropy_loss, cp, cl, None, loss_weight=0.5, override="none")
case("ce_avg", "CrossEntropyLoss", cross_entropy_loss, cp, cl, torch.rand(7), avg_factor=3.5)
case("ce_avg_non_ignore", "CrossEntropyLoss", cross_entropy_loss, cp, cl, None, avg_non_ignore=True)
cl2 = torch.tensor([0, 3, 2, 1, 2, 0, 2])
case("ce_ignore_index", "CrossEntropyLoss", cross_entropy_loss, cp, cl2, torch.rand(7), ignore_index=2,
     avg_non_ignore=True, class_weight=[0.7, 1.3, 1.0, 2.0], loss_weight=1.5)

# CrossEntropyLoss, sigmoid: labels with background (3) and ignored rows
sp = torch.randn(7, 3) * 2
sl = torch.tensor([0, 3, -100, 1, 2, 3, 2])
case("bce_labels", "CrossEntropyLoss", cross_entropy_loss, sp, sl, torch.rand(7), use_sigmoid=True)
case("bce_labels_noweight_sum", "CrossEntropyLoss", cross_entropy_loss, sp, sl, None, reduction="sum",
     use_sigmoid=True, loss_weight=2.0)
case("bce_labels_non_ignore", "CrossEntropyLoss", cross_entropy_loss, sp, torch.tensor([0, 3, 1, 1, 2, 3, 2]),
     torch.rand(7), use_sigmoid=True, ignore_index=1, avg_non_ignore=True)
case("bce_labels_class_weight", "CrossEntropyLoss", cross_entropy_loss, sp, sl, torch.rand(7), use_sigmoid=True,
     class_weight=[2.0, 0.5, 1.0])
case("bce_labels_none", "CrossEntropyLoss", cross_entropy_loss, sp, sl, None, reduction="none", use_sigmoid=True)
rp = torch.randn(8, 1) * 2
rl = torch.tensor([0, 1, 1, 0, 1, 1, 1, 0])
case("bce_rpn", "CrossEntropyLoss", cross_entropy_loss, rp, rl, torch.rand(8), avg_factor=5.0, use_sigmoid=True)
case("bce_rpn_flat_none", "CrossEntropyLoss", cross_entropy_loss, rp.view(-1), rl, torch.rand(8),
     reduction="none", use_sigmoid=True)
ft = (torch.rand(5, 3) > 0.5).float()
ft[0, 1] = 0.3     # soft target
ft[2, 0] = -100.0  # ignored
case("bce_float_target", "CrossEntropyLoss", cross_entropy_loss, torch.randn(5, 3), ft, torch.rand(5, 3),
     reduction="sum", use_sigmoid=True)
case("bce_float_target_cw_avg", "CrossEntropyLoss", cross_entropy_loss, torch.randn(5, 3), ft, None,
     use_sigmoid=True, class_weight=[1.5, 0.5, 3.0], avg_non_ignore=True)

# L1Loss and SmoothL1Loss: [6, 4] deltas
lp, lt = torch.randn(6, 4), torch.randn(6, 4)
lw = (torch.rand(6, 4) > 0.3).float()
case("l1_default", "L1Loss", l1_loss, lp, lt)
case("l1_sum_elem", "L1Loss", l1_loss, lp, lt, lw, reduction="sum", loss_weight=2.0)
case("l1_none_row", "L1Loss", l1_loss, lp, lt, torch.rand(6, 1), override="none")
case("l1_avg", "L1Loss", l1_loss, lp, lt, lw, avg_factor=7.0)
case("sl1_default", "SmoothL1Loss", smooth_l1_loss, lp, lt)
case("sl1_beta_sum", "SmoothL1Loss", smooth_l1_loss, lp, lt, lw, reduction="sum", beta=0.5, loss_weight=1.5)
case("sl1_none", "SmoothL1Loss", smooth_l1_loss, lp, lt, None, reduction="none", beta=0.1111111111111111)
case("sl1_avg", "SmoothL1Loss", smooth_l1_loss, lp, lt, lw, avg_factor=9.0, beta=0.25)

# BalancedL1Loss
case("bl1_default", "BalancedL1Loss", balanced_l1_loss, lp, lt)
case("bl1_params_sum", "BalancedL1Loss", balanced_l1_loss, lp, lt, lw, reduction="sum", alpha=0.3, gamma=2.0,
     beta=0.8, loss_weight=2.0)
case("bl1_none", "BalancedL1Loss", balanced_l1_loss, lp * 0.3, lt * 0.3, None, reduction="none")
case("bl1_avg", "BalancedL1Loss", balanced_l1_loss, lp, lt, lw, avg_factor=10.0, beta=1.5)

# Box losses: targets, and predictions near them (IoU > 0.5 for most rows,
# so CIoU's alpha is not 0), one far off and one disjoint.
bt = rand_boxes(7)
wh = bt[:, 2:] - bt[:, :2]
bp = bt + torch.randn(7, 4) * wh.repeat(1, 2) * 0.08
bp[5] = bt[5] + torch.tensor([3.0, -2.0, 9.0, 4.0])
bp[6] = torch.tensor([40.0, 40.0, 42.0, 45.0])
bw = torch.rand(7)
bw4 = torch.rand(7, 4)
nopos = -torch.rand(7)
nopos[2] = 0.0
for name, type_, fn in [("iou", "IoULoss", iou_loss), ("giou", "GIoULoss", giou_loss),
                        ("diou", "DIoULoss", diou_loss), ("ciou", "CIoULoss", ciou_loss)]:
    case(name + "_default", type_, fn, bp, bt)
    case(name + "_sum_row", type_, fn, bp, bt, bw, override="sum", reduction="none", loss_weight=2.0)
    case(name + "_none", type_, fn, bp, bt, None, override="none")
    case(name + "_avg_elem", type_, fn, bp, bt, bw4, avg_factor=5.0, eps=1e-4)
    case(name + "_nopos", type_, fn, bp, bt, nopos)
case("iou_linear_deprecated", "IoULoss", iou_loss, bp, bt, bw, linear=True)
case("iou_square", "IoULoss", iou_loss, bp, bt, bw4, reduction="sum", mode="square")
case("iou_nopos_none", "IoULoss", iou_loss, bp, bt, torch.zeros(7), reduction="none")   # no rule for 'none'
case("giou_nopos_none", "GIoULoss", giou_loss, bp, bt, torch.zeros(7, 4), reduction="none")

meta["cases"] = ",".join(cases)
save("losses_registry", out, meta)
print(f"{len(cases)} cases, {len(out)} tensors written")
