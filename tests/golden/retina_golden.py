"""Golden fixture for RetinaHead: mmdet 2.28's RetinaHead forward, AnchorHead
loss (anchors, valid flags from pad_shape, MaxIoUAssigner, PseudoSampler,
targets, FocalLoss with the CPU py_sigmoid_focal_loss, L1Loss, avg_factor =
num_total_pos with mmdet's max(pos, 1) per image) and get_bboxes
(filter_scores_and_topk, decode, rescale, batched_nms), written out in
PyTorch. Two FPN levels, few channels, two images.

    /usr/bin/python3 tests/golden/retina_golden.py  -> tests/fixtures/retina.safetensors

Two variants with a norm_cfg and reg_decoded_bbox (norm_variant below):
mmdet's RetinaHead passes norm_cfg to its stacked ConvModules (conv without
bias, then the norm, then ReLU; BN in training mode is one module per stacked
conv shared by the levels, normalising each call with its own batch
statistics); with reg_decoded_bbox the targets are the gt boxes and
loss_single decodes the deltas against the anchors (no max_shape) before
GIoULoss (eps 1e-6: no positive weight -> (pred * weight).sum(), else
weight.mean(-1)) or IoULoss (iou clamped at eps, then 1 - iou for mode
linear). -> tests/fixtures/retina_gn_giou.safetensors, retina_bn_iou.safetensors
"""
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms

from bbox_golden import base_anchors, bbox2delta, delta2bbox, grid_priors, max_iou_assign, valid_flags
from common import save

C, IN, FEAT, STACKED = 3, 4, 8, 2
STRIDES = [8, 16]
SIZES = [(8, 8), (4, 4)]
SCALES = torch.Tensor(np.array([2 ** (i / 2) for i in range(2)]) * 4)
RATIOS = torch.Tensor([0.5, 1.0, 2.0])
A = 6
META = [dict(pad_shape=(56, 48), img_shape=(50, 45), scale_factor=[0.5, 0.5, 0.5, 0.5]),
        dict(pad_shape=(64, 64), img_shape=(64, 60), scale_factor=[0.8, 0.75, 0.8, 0.75])]
GT = [torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 2.0, 44.0, 20.0], [0.0, 30.0, 12.0, 48.0]]),
      torch.tensor([[10.0, 10.0, 60.0, 50.0], [30.0, 40.0, 46.0, 60.0]])]
GT_LABELS = [torch.tensor([0, 2, 1]), torch.tensor([1, 1])]
GT_IGNORE = [torch.zeros(0, 4), torch.tensor([[0.0, 0.0, 20.0, 20.0]])]


def focal(pred, target, weight, gamma=2.0, alpha=0.25, avg_factor=None):
    t = F.one_hot(target, num_classes=C + 1)[:, :C].type_as(pred)
    ps = pred.sigmoid()
    pt = (1 - ps) * t + ps * (1 - t)
    fw = (alpha * t + (1 - alpha) * (1 - t)) * pt.pow(gamma)
    loss = F.binary_cross_entropy_with_logits(pred, t, reduction="none") * fw
    loss = loss * weight.view(-1, 1)
    return loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)


def l1(pred, target, weight, avg_factor):
    return ((pred - target).abs() * weight).sum() / (avg_factor + torch.finfo(torch.float32).eps)


def main():
    g = torch.Generator().manual_seed(3)
    w = {}
    for br in ("cls_convs", "reg_convs"):
        for i in range(STACKED):
            w[f"{br}.{i}.conv.weight"] = torch.randn(FEAT, IN if i == 0 else FEAT, 3, 3, generator=g) * 0.2
            w[f"{br}.{i}.conv.bias"] = torch.randn(FEAT, generator=g) * 0.1
    w["retina_cls.weight"] = torch.randn(A * C, FEAT, 3, 3, generator=g) * 0.1
    w["retina_cls.bias"] = torch.full((A * C,), -2.0) + torch.randn(A * C, generator=g) * 0.3
    w["retina_reg.weight"] = torch.randn(A * 4, FEAT, 3, 3, generator=g) * 0.1
    w["retina_reg.bias"] = torch.randn(A * 4, generator=g) * 0.1
    for v in w.values():
        v.requires_grad_(True)
    feats = [torch.randn(2, IN, h, ww, generator=g).requires_grad_(True) for h, ww in SIZES]

    # forward (RetinaHead.forward_single)
    cls_scores, bbox_preds = [], []
    for x in feats:
        c = r = x
        for i in range(STACKED):
            c = F.relu(F.conv2d(c, w[f"cls_convs.{i}.conv.weight"], w[f"cls_convs.{i}.conv.bias"], padding=1))
            r = F.relu(F.conv2d(r, w[f"reg_convs.{i}.conv.weight"], w[f"reg_convs.{i}.conv.bias"], padding=1))
        cls_scores.append(F.conv2d(c, w["retina_cls.weight"], w["retina_cls.bias"], padding=1))
        bbox_preds.append(F.conv2d(r, w["retina_reg.weight"], w["retina_reg.bias"], padding=1))

    # anchors and targets (AnchorHead.get_anchors / _get_targets_single)
    anchors = [grid_priors(base_anchors(s, SCALES, RATIOS), h, ww, s, s) for s, (h, ww) in zip(STRIDES, SIZES)]
    flat = torch.cat(anchors)
    labels_l, lw_l, bt_l, bw_l = [], [], [], []
    num_pos = 0
    for i, meta in enumerate(META):
        ph, pw = meta["pad_shape"]
        vf = torch.cat([valid_flags(h, ww, min(int(np.ceil(ph / s)), h), min(int(np.ceil(pw / s)), ww), A)
                        for s, (h, ww) in zip(STRIDES, SIZES)])
        anc = flat[vf]
        assigned, _, alabels = max_iou_assign(anc, GT[i], GT_IGNORE[i], GT_LABELS[i], pos_iou_thr=0.5,
                                              neg_iou_thr=0.4, min_pos_iou=0.0, ignore_iof_thr=0.5)
        pos = torch.nonzero(assigned > 0).squeeze(-1)
        neg = torch.nonzero(assigned == 0).squeeze(-1)
        n = anc.shape[0]
        labels = torch.full((n,), C, dtype=torch.long)
        lw = torch.zeros(n)
        bt = torch.zeros(n, 4)
        bw = torch.zeros(n, 4)
        if len(pos):
            bt[pos] = bbox2delta(anc[pos], GT[i][assigned[pos] - 1], [0.0] * 4, [1.0] * 4)
            bw[pos] = 1.0
            labels[pos] = GT_LABELS[i][assigned[pos] - 1]
            lw[pos] = 1.0
        lw[neg] = 1.0
        num_pos += max(len(pos), 1)

        def unmap(x, fill):
            out = x.new_full((flat.shape[0],) + x.shape[1:], fill)
            out[vf] = x
            return out
        labels_l.append(unmap(labels, C))
        lw_l.append(unmap(lw, 0))
        bt_l.append(unmap(bt, 0))
        bw_l.append(unmap(bw, 0))
    labels_all, lw_all = torch.stack(labels_l), torch.stack(lw_l)
    bt_all, bw_all = torch.stack(bt_l), torch.stack(bw_l)

    # loss per level (AnchorHead.loss_single), summed as mmdet logs them
    loss_cls = loss_bbox = 0
    off = 0
    for lvl, (cs, bp) in enumerate(zip(cls_scores, bbox_preds)):
        k = anchors[lvl].shape[0]
        sl = slice(off, off + k)
        off += k
        loss_cls = loss_cls + focal(cs.permute(0, 2, 3, 1).reshape(-1, C), labels_all[:, sl].reshape(-1),
                                    lw_all[:, sl].reshape(-1), avg_factor=num_pos)
        loss_bbox = loss_bbox + l1(bp.permute(0, 2, 3, 1).reshape(-1, 4), bt_all[:, sl].reshape(-1, 4),
                                   bw_all[:, sl].reshape(-1, 4), num_pos)
    (loss_cls + loss_bbox).backward()

    out = {"feat0": feats[0], "feat1": feats[1], "loss_cls": loss_cls, "loss_bbox": loss_bbox,
           "num_pos": torch.tensor(float(num_pos)),
           "grad_feat0": feats[0].grad, "grad_feat1": feats[1].grad}
    for k, v in w.items():
        out["w." + k] = v
        out["grad." + k] = v.grad
    for lvl in range(2):
        out[f"cls{lvl}"] = cls_scores[lvl]
        out[f"reg{lvl}"] = bbox_preds[lvl]

    # get_bboxes (BaseDenseHead._get_bboxes_single), nms_pre 30, score_thr 0.05
    with torch.no_grad():
        for i, meta in enumerate(META):
            mb, ms, ml = [], [], []
            for lvl in range(2):
                s = cls_scores[lvl][i].permute(1, 2, 0).reshape(-1, C).sigmoid()
                b = bbox_preds[lvl][i].permute(1, 2, 0).reshape(-1, 4)
                valid = s > 0.05
                sc = s[valid]
                vi = torch.nonzero(valid)
                sc, idx = sc.sort(descending=True)
                k = min(30, vi.size(0))
                sc = sc[:k]
                keep, lab = vi[idx[:k]].unbind(dim=1)
                mb.append(delta2bbox(anchors[lvl][keep], b[keep], [0.0] * 4, [1.0] * 4, max_shape=meta["img_shape"]))
                ms.append(sc)
                ml.append(lab)
            boxes = torch.cat(mb) / torch.tensor(meta["scale_factor"])
            scores, labels = torch.cat(ms), torch.cat(ml)
            keep = batched_nms(boxes, scores, labels, 0.5)[:15]
            out[f"det{i}.bboxes"] = torch.cat([boxes[keep], scores[keep, None]], 1)
            out[f"det{i}.labels"] = labels[keep]
    save("retina", out)


def aligned_giou(b1, b2, eps):
    """mmdet bbox_overlaps(mode='giou', is_aligned=True)."""
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    wh = (torch.min(b1[:, 2:], b2[:, 2:]) - torch.max(b1[:, :2], b2[:, :2])).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    union = torch.max(area1 + area2 - overlap, b1.new_tensor([eps]))
    ious = overlap / union
    ewh = (torch.max(b1[:, 2:], b2[:, 2:]) - torch.min(b1[:, :2], b2[:, :2])).clamp(min=0)
    enclose = torch.max(ewh[:, 0] * ewh[:, 1], b1.new_tensor([eps]))
    return ious, ious - (enclose - union) / enclose


def box_loss(kind, pred, target, weight, avg_factor, loss_weight):
    """mmdet GIoULoss / IoULoss(mode='linear') forward with weight [n, 4]."""
    if not torch.any(weight > 0):
        return (pred * weight).sum()
    w = weight.mean(-1)
    ious, gious = aligned_giou(pred, target, 1e-6)
    loss = 1 - gious if kind == "giou" else 1 - ious.clamp(min=1e-6)
    return loss_weight * (loss * w).sum() / (avg_factor + torch.finfo(torch.float32).eps)


NG = 4   # GN groups of the FEAT = 8 channels


def norm_variant(name, norm, kind, loss_weight, seed):
    g = torch.Generator().manual_seed(seed)
    w = {}
    for br in ("cls_convs", "reg_convs"):
        for i in range(STACKED):
            w[f"{br}.{i}.conv.weight"] = torch.randn(FEAT, IN if i == 0 else FEAT, 3, 3, generator=g) * 0.2
            w[f"{br}.{i}.{norm}.weight"] = torch.rand(FEAT, generator=g) + 0.5
            w[f"{br}.{i}.{norm}.bias"] = torch.randn(FEAT, generator=g) * 0.1
    w["retina_cls.weight"] = torch.randn(A * C, FEAT, 3, 3, generator=g) * 0.1
    w["retina_cls.bias"] = torch.full((A * C,), -2.0) + torch.randn(A * C, generator=g) * 0.3
    w["retina_reg.weight"] = torch.randn(A * 4, FEAT, 3, 3, generator=g) * 0.1
    w["retina_reg.bias"] = torch.randn(A * 4, generator=g) * 0.1
    for v in w.values():
        v.requires_grad_(True)
    feats = [torch.randn(2, IN, h, ww, generator=g).requires_grad_(True) for h, ww in SIZES]

    def conv_module(x, pre):
        x = F.conv2d(x, w[pre + ".conv.weight"], None, padding=1)
        if norm == "gn":
            x = F.group_norm(x, NG, w[pre + ".gn.weight"], w[pre + ".gn.bias"], eps=1e-5)
        else:   # training mode, no running statistics needed for the outputs
            x = F.batch_norm(x, None, None, w[pre + ".bn.weight"], w[pre + ".bn.bias"], training=True, eps=1e-5)
        return F.relu(x)

    cls_scores, bbox_preds = [], []
    for x in feats:
        c = r = x
        for i in range(STACKED):
            c = conv_module(c, f"cls_convs.{i}")
            r = conv_module(r, f"reg_convs.{i}")
        cls_scores.append(F.conv2d(c, w["retina_cls.weight"], w["retina_cls.bias"], padding=1))
        bbox_preds.append(F.conv2d(r, w["retina_reg.weight"], w["retina_reg.bias"], padding=1))

    anchors = [grid_priors(base_anchors(s, SCALES, RATIOS), h, ww, s, s) for s, (h, ww) in zip(STRIDES, SIZES)]
    flat = torch.cat(anchors)
    labels_l, lw_l, bt_l, bw_l = [], [], [], []
    num_pos = 0
    for i, meta in enumerate(META):
        ph, pw = meta["pad_shape"]
        vf = torch.cat([valid_flags(h, ww, min(int(np.ceil(ph / s)), h), min(int(np.ceil(pw / s)), ww), A)
                        for s, (h, ww) in zip(STRIDES, SIZES)])
        anc = flat[vf]
        assigned, _, _ = max_iou_assign(anc, GT[i], GT_IGNORE[i], GT_LABELS[i], pos_iou_thr=0.5,
                                        neg_iou_thr=0.4, min_pos_iou=0.0, ignore_iof_thr=0.5)
        pos = torch.nonzero(assigned > 0).squeeze(-1)
        neg = torch.nonzero(assigned == 0).squeeze(-1)
        n = anc.shape[0]
        labels = torch.full((n,), C, dtype=torch.long)
        lw, bt, bw = torch.zeros(n), torch.zeros(n, 4), torch.zeros(n, 4)
        if len(pos):
            bt[pos] = GT[i][assigned[pos] - 1]      # reg_decoded_bbox: the gt boxes
            bw[pos] = 1.0
            labels[pos] = GT_LABELS[i][assigned[pos] - 1]
            lw[pos] = 1.0
        lw[neg] = 1.0
        num_pos += max(len(pos), 1)

        def unmap(x, fill):
            out = x.new_full((flat.shape[0],) + x.shape[1:], fill)
            out[vf] = x
            return out
        labels_l.append(unmap(labels, C))
        lw_l.append(unmap(lw, 0))
        bt_l.append(unmap(bt, 0))
        bw_l.append(unmap(bw, 0))
    labels_all, lw_all = torch.stack(labels_l), torch.stack(lw_l)
    bt_all, bw_all = torch.stack(bt_l), torch.stack(bw_l)

    loss_cls = loss_bbox = 0
    off = 0
    for lvl, (cs, bp) in enumerate(zip(cls_scores, bbox_preds)):
        k = anchors[lvl].shape[0]
        sl = slice(off, off + k)
        off += k
        loss_cls = loss_cls + focal(cs.permute(0, 2, 3, 1).reshape(-1, C), labels_all[:, sl].reshape(-1),
                                    lw_all[:, sl].reshape(-1), avg_factor=num_pos)
        anc = anchors[lvl][None].expand(2, -1, -1).reshape(-1, 4)
        boxes = delta2bbox(anc, bp.permute(0, 2, 3, 1).reshape(-1, 4), [0.0] * 4, [1.0] * 4, max_shape=None)
        loss_bbox = loss_bbox + box_loss(kind, boxes, bt_all[:, sl].reshape(-1, 4), bw_all[:, sl].reshape(-1, 4),
                                         num_pos, loss_weight)
    (loss_cls + loss_bbox).backward()

    out = {"feat0": feats[0], "feat1": feats[1], "loss_cls": loss_cls, "loss_bbox": loss_bbox,
           "grad_feat0": feats[0].grad, "grad_feat1": feats[1].grad}
    for k, v in w.items():
        out["w." + k] = v
        out["grad." + k] = v.grad
    if norm == "bn":   # the buffers a BatchNorm2d state dict has (initial values)
        for br in ("cls_convs", "reg_convs"):
            for i in range(STACKED):
                out[f"w.{br}.{i}.bn.running_mean"] = torch.zeros(FEAT)
                out[f"w.{br}.{i}.bn.running_var"] = torch.ones(FEAT)
                out[f"w.{br}.{i}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    for lvl in range(2):
        out[f"cls{lvl}"] = cls_scores[lvl]
        out[f"reg{lvl}"] = bbox_preds[lvl]
    save(name, out)


if __name__ == "__main__":
    main()
    norm_variant("retina_gn_giou", "gn", "giou", 2.0, 5)
    norm_variant("retina_bn_iou", "bn", "iou", 1.0, 6)
