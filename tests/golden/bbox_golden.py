"""Golden fixtures for the box machinery: mmdet 2.28's AnchorGenerator,
DeltaXYWHBBoxCoder (bbox2delta / delta2bbox) and MaxIoUAssigner, written out
in PyTorch from mmdet's code (mmdet itself is not needed).

    /usr/bin/python3 tests/golden/bbox_golden.py   -> tests/fixtures/bbox.safetensors
"""
import numpy as np
import torch

from common import save


# ---- mmdet/core/anchor/anchor_generator.py ----
def base_anchors(base_size, scales, ratios, center_offset=0.0, scale_major=True):
    w = h = base_size
    x_center = center_offset * w
    y_center = center_offset * h
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    if scale_major:
        ws = (w * w_ratios[:, None] * scales[None, :]).view(-1)
        hs = (h * h_ratios[:, None] * scales[None, :]).view(-1)
    else:
        ws = (w * scales[:, None] * w_ratios[None, :]).view(-1)
        hs = (h * scales[:, None] * h_ratios[None, :]).view(-1)
    return torch.stack([x_center - 0.5 * ws, y_center - 0.5 * hs,
                        x_center + 0.5 * ws, y_center + 0.5 * hs], dim=-1)


def meshgrid(x, y):
    xx = x.repeat(y.shape[0])
    yy = y.view(-1, 1).repeat(1, x.shape[0]).view(-1)
    return xx, yy


def grid_priors(base, feat_h, feat_w, stride_w, stride_h):
    shift_x = torch.arange(0, feat_w).to(torch.float32) * stride_w
    shift_y = torch.arange(0, feat_h).to(torch.float32) * stride_h
    sxx, syy = meshgrid(shift_x, shift_y)
    shifts = torch.stack([sxx, syy, sxx, syy], dim=-1)
    return (base[None, :, :] + shifts[:, None, :]).view(-1, 4)


def valid_flags(feat_h, feat_w, valid_h, valid_w, num_base):
    vx = torch.zeros(feat_w, dtype=torch.bool)
    vy = torch.zeros(feat_h, dtype=torch.bool)
    vx[:valid_w] = 1
    vy[:valid_h] = 1
    vxx, vyy = meshgrid(vx, vy)
    v = vxx & vyy
    return v[:, None].expand(v.size(0), num_base).contiguous().view(-1)


# ---- mmdet/core/bbox/coder/delta_xywh_bbox_coder.py ----
def bbox2delta(proposals, gt, means, stds):
    proposals = proposals.float()
    gt = gt.float()
    px = (proposals[..., 0] + proposals[..., 2]) * 0.5
    py = (proposals[..., 1] + proposals[..., 3]) * 0.5
    pw = proposals[..., 2] - proposals[..., 0]
    ph = proposals[..., 3] - proposals[..., 1]
    gx = (gt[..., 0] + gt[..., 2]) * 0.5
    gy = (gt[..., 1] + gt[..., 3]) * 0.5
    gw = gt[..., 2] - gt[..., 0]
    gh = gt[..., 3] - gt[..., 1]
    deltas = torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=-1)
    return deltas.sub_(deltas.new_tensor(means).unsqueeze(0)).div_(deltas.new_tensor(stds).unsqueeze(0))


def delta2bbox(rois, deltas, means, stds, max_shape=None, wh_ratio_clip=16 / 1000, clip_border=True,
               add_ctr_clamp=False, ctr_clamp=32):
    num_bboxes, num_classes = deltas.size(0), deltas.size(1) // 4
    deltas = deltas.reshape(-1, 4)
    means = deltas.new_tensor(means).view(1, -1)
    stds = deltas.new_tensor(stds).view(1, -1)
    denorm = deltas * stds + means
    dxy = denorm[:, :2]
    dwh = denorm[:, 2:]
    rois_ = rois.repeat(1, num_classes).reshape(-1, 4)
    pxy = (rois_[:, :2] + rois_[:, 2:]) * 0.5
    pwh = rois_[:, 2:] - rois_[:, :2]
    dxy_wh = pwh * dxy
    max_ratio = np.abs(np.log(wh_ratio_clip))
    if add_ctr_clamp:
        dxy_wh = torch.clamp(dxy_wh, max=ctr_clamp, min=-ctr_clamp)
        dwh = torch.clamp(dwh, max=max_ratio)
    else:
        dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
    gxy = pxy + dxy_wh
    gwh = pwh * dwh.exp()
    x1y1 = gxy - (gwh * 0.5)
    x2y2 = gxy + (gwh * 0.5)
    bboxes = torch.cat([x1y1, x2y2], dim=-1)
    if clip_border and max_shape is not None:
        bboxes = torch.stack([bboxes[..., 0].clamp(0, max_shape[1]), bboxes[..., 1].clamp(0, max_shape[0]),
                              bboxes[..., 2].clamp(0, max_shape[1]), bboxes[..., 3].clamp(0, max_shape[0])], -1)
    return bboxes.reshape(num_bboxes, -1)


# ---- mmdet/core/bbox/iou_calculators + assigners/max_iou_assigner.py ----
def bbox_overlaps(b1, b2, mode="iou", eps=1e-6):
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    lt = torch.max(b1[:, None, :2], b2[None, :, :2])
    rb = torch.min(b1[:, None, 2:], b2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - overlap if mode == "iou" else area1[:, None]
    union = torch.max(union, union.new_tensor([eps]))
    return overlap / union


def max_iou_assign(bboxes, gt, gt_ignore, gt_labels, pos_iou_thr, neg_iou_thr, min_pos_iou=0.0,
                   gt_max_assign_all=True, ignore_iof_thr=-1, ignore_wrt_candidates=True, match_low_quality=True):
    overlaps = bbox_overlaps(gt, bboxes)
    if ignore_iof_thr > 0 and gt_ignore is not None and gt_ignore.numel() > 0:
        if ignore_wrt_candidates:
            ign = bbox_overlaps(bboxes, gt_ignore, mode="iof").max(dim=1)[0]
        else:
            ign = bbox_overlaps(gt_ignore, bboxes, mode="iof").max(dim=0)[0]
        overlaps[:, ign > ignore_iof_thr] = -1
    num_gts, num_bboxes = overlaps.shape
    assigned = overlaps.new_full((num_bboxes,), -1, dtype=torch.long)
    max_overlaps, argmax_overlaps = overlaps.max(dim=0)
    gt_max_overlaps, gt_argmax_overlaps = overlaps.max(dim=1)
    if isinstance(neg_iou_thr, float):
        assigned[(max_overlaps >= 0) & (max_overlaps < neg_iou_thr)] = 0
    else:
        assigned[(max_overlaps >= neg_iou_thr[0]) & (max_overlaps < neg_iou_thr[1])] = 0
    pos = max_overlaps >= pos_iou_thr
    assigned[pos] = argmax_overlaps[pos] + 1
    if match_low_quality:
        for i in range(num_gts):
            if gt_max_overlaps[i] >= min_pos_iou:
                if gt_max_assign_all:
                    assigned[overlaps[i, :] == gt_max_overlaps[i]] = i + 1
                else:
                    assigned[gt_argmax_overlaps[i]] = i + 1
    labels = assigned.new_full((num_bboxes,), -1)
    p = assigned > 0
    labels[p] = gt_labels[assigned[p] - 1]
    return assigned, max_overlaps, labels


def rand_boxes(g, n, size, min_wh=4.0, max_wh=40.0):
    xy = torch.rand(n, 2, generator=g) * size
    wh = min_wh + torch.rand(n, 2, generator=g) * (max_wh - min_wh)
    return torch.cat([xy, xy + wh], 1)


def main():
    g = torch.Generator().manual_seed(0)
    out = {}
    # anchors: RetinaNet's octave scales on two levels; explicit scales,
    # base_sizes and centre offset 0.5 (scale-minor) on another.
    scales = torch.Tensor(np.array([2 ** (i / 3) for i in range(3)]) * 4)
    ratios = torch.Tensor([0.5, 1.0, 2.0])
    for lvl, (stride, fh, fw) in enumerate([(8, 5, 7), (16, 3, 4)]):
        out[f"retina.anchors{lvl}"] = grid_priors(base_anchors(stride, scales, ratios), fh, fw, stride, stride)
    out["retina.valid0"] = valid_flags(5, 7, 4, 6, 9)
    b = base_anchors(12, torch.Tensor([1.0, 3.0]), torch.Tensor([0.5, 2.0]), center_offset=0.5, scale_major=False)
    out["custom.anchors0"] = grid_priors(b, 3, 2, 4, 4)

    # coder
    anchors = rand_boxes(g, 64, 60.0)
    gts = rand_boxes(g, 64, 60.0)
    for tag, means, stds in [("unit", [0.0] * 4, [1.0] * 4), ("rcnn", [0.0, 0.1, -0.1, 0.0], [0.1, 0.1, 0.2, 0.2])]:
        out[f"coder.{tag}.enc"] = bbox2delta(anchors, gts, means, stds)
    deltas = torch.randn(64, 8, generator=g) * 2.0        # some dw, dh beyond the clip
    gout = torch.randn(64, 8, generator=g)
    for tag, means, stds, ctr in [("unit", [0.0] * 4, [1.0] * 4, False),
                                  ("rcnn", [0.0, 0.1, -0.1, 0.0], [0.1, 0.1, 0.2, 0.2], False),
                                  ("ctr", [0.0] * 4, [1.0] * 4, True)]:
        d = deltas.clone().requires_grad_(True)
        dec = delta2bbox(anchors, d, means, stds, max_shape=(50, 60), add_ctr_clamp=ctr)
        (dec * gout).sum().backward()
        out[f"coder.{tag}.dec"] = dec
        out[f"coder.{tag}.dec_grad"] = d.grad
        out[f"coder.{tag}.dec_noclip"] = delta2bbox(anchors, deltas, means, stds, max_shape=None, add_ctr_clamp=ctr)
    out["coder.anchors"] = anchors
    out["coder.gts"] = gts
    out["coder.deltas"] = deltas
    out["coder.gout"] = gout

    # assigner: boxes near the gts so all cases occur; a gt far from every box
    # (low-quality match), duplicates of a box (ties), ignored regions.
    gt = rand_boxes(g, 6, 80.0, 10, 50)
    gt[5] = torch.tensor([200.0, 200.0, 203.0, 203.0])
    jitter = torch.randn(60, 4, generator=g) * 6
    boxes = torch.cat([gt[:5].repeat(12, 1)[:55] + jitter[:55], rand_boxes(g, 5, 80.0)], 0)
    boxes[:, 2:] = torch.max(boxes[:, 2:], boxes[:, :2] + 1)
    boxes = torch.cat([boxes, torch.tensor([[199.0, 199.0, 205.0, 205.0], [199.0, 199.0, 205.0, 205.0]])], 0)
    gt_ignore = torch.tensor([[0.0, 0.0, 30.0, 30.0], [60.0, 60.0, 90.0, 90.0]])
    labels = torch.tensor([3, 0, 2, 2, 1, 4])
    out["assign.boxes"] = boxes
    out["assign.gt"] = gt
    out["assign.gt_ignore"] = gt_ignore
    out["assign.gt_labels"] = labels
    cases = {
        "retina": dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0, ignore_iof_thr=-1),
        "ignore": dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0, ignore_iof_thr=0.5),
        "ignore_gt": dict(pos_iou_thr=0.5, neg_iou_thr=0.4, ignore_iof_thr=0.3, ignore_wrt_candidates=False),
        "pair": dict(pos_iou_thr=0.6, neg_iou_thr=(0.1, 0.5), min_pos_iou=0.3, gt_max_assign_all=False),
        "nolow": dict(pos_iou_thr=0.5, neg_iou_thr=0.5, match_low_quality=False),
    }
    for tag, kw in cases.items():
        a, m, lab = max_iou_assign(boxes, gt, gt_ignore, labels, **kw)
        out[f"assign.{tag}.gt_inds"] = a
        out[f"assign.{tag}.max_overlaps"] = m
        out[f"assign.{tag}.labels"] = lab
    save("bbox", out)


if __name__ == "__main__":
    main()
