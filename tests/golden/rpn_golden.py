"""Golden fixture for RPNHead (tests/unit/test_rpn.c): mmdet 2.28's RPNHead
written out in PyTorch (mmdet itself is not needed).

- forward (RPNHead.forward_single): rpn_conv 3x3 + ReLU, rpn_cls (sigmoid,
  one output per anchor), rpn_reg.
- loss (AnchorHead.loss with RPN's labels: positives 0, background 1, so the
  sigmoid target is 1 on positives): anchors valid inside pad_shape,
  anchor_inside_flags with allowed_border, MaxIoUAssigner (pos 0.7, neg 0.3,
  min_pos 0.3, match_low_quality), CrossEntropyLoss(use_sigmoid) and L1Loss
  with avg_factor = num_total_pos + num_total_neg (each the sum over images of
  max(count, 1)) when sampling, num_total_pos alone with the PseudoSampler
  (mmdet 2.28 sets `sampling` from the sampler type). Losses per level,
  summed as mmdet's parse_losses sums the list.
  Sampling is deterministic here by construction: the RandomSampler (num 256,
  pos_fraction 0.5) returns every candidate when there are at most 128
  positives and at most 256 - #pos negatives (RandomSampler.random_choice is
  only called above the quota); two levels of 8x8 and 4x4 with 3 anchors are
  240 anchors, so every positive and negative is sampled. The script asserts
  it. The "pseudo" case (PseudoSampler) takes the same anchors with
  avg_factor = num_total_pos, the "border0" case allowed_border = 0.
- proposals (RPNHead._get_bboxes_single + _bbox_post_process): per level the
  nms_pre best sigmoid scores (sort), DeltaXYWHBBoxCoder decode (stds 1, clip
  to img_shape), drop boxes not wider and taller than min_bbox_size, mmcv's
  batched_nms(proposals, scores, level_ids, nms) (coordinate offsets per
  level, then one NMS), then max_per_img.

Where torchvision's RPN (torchvision.models.detection.rpn) differs, and why
it is not used as the reference: its anchors are rounded to integers; it
takes the pre-NMS top-k on logits (same order), removes boxes with
`>= min_size` (mmdet keeps `> min_bbox_size`) and scores under score_thresh,
and returns no scores; its Matcher's low-quality matches go to the anchor's
argmax gt (mmdet's gt_max_assign_all gives the anchor to each best-matching
gt in turn, the last wins); it has no valid flags from pad_shape; its loss
is smooth L1 (beta 1/9) summed / #sampled and a BCE mean over the sampled
anchors, without mmdet's per-image max(count, 1). Only torchvision.ops.nms
is used here (the same greedy IoU > thr suppression as mmcv's nms, offset 0).

The script also checks that no decision is close to a threshold (topk cut,
min_bbox_size, NMS IoU and score ties, max_per_img cut, assigner IoU
thresholds), so float32 rounding differences cannot flip it.

    /usr/bin/python3 tests/golden/rpn_golden.py   -> tests/fixtures/rpn.safetensors
"""
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from bbox_golden import base_anchors, bbox2delta, bbox_overlaps, delta2bbox, grid_priors, max_iou_assign, valid_flags
from common import save

IN, FEAT, A = 4, 8, 3
STRIDES = [8, 16]
SIZES = [(8, 8), (4, 4)]
SCALES = torch.tensor([4.0])
RATIOS = torch.tensor([0.5, 1.0, 2.0])
META = [dict(pad_shape=(64, 56), img_shape=(60, 50)), dict(pad_shape=(48, 64), img_shape=(44, 62))]
GT = [torch.tensor([[4.0, 6.0, 31.0, 40.0], [20.0, 12.0, 50.0, 36.0], [2.0, 30.0, 23.0, 57.0]]),
      torch.tensor([[10.0, 4.0, 57.0, 41.0], [30.0, 20.0, 46.0, 44.0]])]
TEST_CFG = dict(nms_pre=20, min_bbox_size=2.0, iou_threshold=0.7, max_per_img=12)
EPS = torch.finfo(torch.float32).eps
SCORE_GAP = 1e-5      # scores differ by more than this where their order decides
IOU_GAP = 1e-3        # IoUs this far from every threshold that decides
SIZE_GAP = 1e-3


def rpn_forward(w, feats, prefix=""):
    """RPNHead.forward_single on every level: (cls [N, A, H, W], reg [N, 4A, H, W])."""
    cls, reg = [], []
    for x in feats:
        x = F.relu(F.conv2d(x, w[prefix + "rpn_conv.weight"], w[prefix + "rpn_conv.bias"], padding=1))
        cls.append(F.conv2d(x, w[prefix + "rpn_cls.weight"], w[prefix + "rpn_cls.bias"]))
        reg.append(F.conv2d(x, w[prefix + "rpn_reg.weight"], w[prefix + "rpn_reg.bias"]))
    return cls, reg


def mmcv_batched_nms(boxes, scores, idxs, iou):
    """mmcv.ops.batched_nms (class_agnostic False, under split_thr): offset
    each class by (max coordinate + 1), then one NMS; keep sorted by score."""
    offsets = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou)


def check_nms_margins(boxes, scores, idxs, iou, what, score_gap=None):
    """Greedy NMS per class, checking each decision it makes: every IoU it
    compares with the threshold is IOU_GAP away from it, and a box is never
    suppressed by one whose score (nearly) ties with its own. Then the kept
    scores are apart (their order is the output's order)."""
    for c in idxs.unique():
        sel = torch.nonzero(idxs == c).squeeze(1)
        b, s = boxes[sel], scores[sel]
        o = bbox_overlaps(b, b)
        order = s.argsort(descending=True).tolist()
        gone = set()
        for a, i in enumerate(order):
            if i in gone:
                continue
            for j in order[a + 1:]:
                if j in gone:
                    continue
                assert abs(float(o[i, j]) - iou) > IOU_GAP, \
                    f"{what}: IoU {float(o[i, j]):.6f} within {IOU_GAP} of the NMS threshold {iou}"
                if o[i, j] > iou:
                    assert float(s[i] - s[j]) > (score_gap or SCORE_GAP), f"{what}: a box suppressed by a tied score"
                    gone.add(j)


def check_sorted_apart(scores, what, score_gap=None):
    gap = score_gap or SCORE_GAP
    d = scores[:-1] - scores[1:]
    assert d.numel() == 0 or float(d.min()) > gap, f"{what}: output scores within {gap}"


def check_cut(sorted_scores, k, what, score_gap=None):
    if sorted_scores.numel() > k:
        gap = float(sorted_scores[k - 1] - sorted_scores[k])
        assert gap > (score_gap or SCORE_GAP), f"{what}: scores at the cut {k} differ by {gap}"


def rpn_proposals(cls_list, reg_list, anchors, img_shape, nms_pre, min_bbox_size, iou, max_per_img, what="rpn",
                  score_gap=None):
    """RPNHead._get_bboxes_single for one image: [P, 5] (x1 y1 x2 y2 score).
    score_gap: the margin of the checks (default SCORE_GAP)."""
    scores_l, reg_l, anc_l, ids_l = [], [], [], []
    for lvl, (c, r) in enumerate(zip(cls_list, reg_list)):
        s = c.permute(1, 2, 0).reshape(-1).sigmoid()
        r = r.permute(1, 2, 0).reshape(-1, 4)
        a = anchors[lvl]
        if 0 < nms_pre < s.shape[0]:
            ranked, rank_inds = s.sort(descending=True)
            check_cut(ranked, nms_pre, f"{what} level {lvl} nms_pre", score_gap)
            topk = rank_inds[:nms_pre]
            s, r, a = ranked[:nms_pre], r[topk], a[topk]
        scores_l.append(s)
        reg_l.append(r)
        anc_l.append(a)
        ids_l.append(torch.full((s.shape[0],), lvl, dtype=torch.long))
    scores, deltas, anc, ids = torch.cat(scores_l), torch.cat(reg_l), torch.cat(anc_l), torch.cat(ids_l)
    props = delta2bbox(anc, deltas, [0.0] * 4, [1.0] * 4, max_shape=img_shape)
    if min_bbox_size >= 0:
        w, h = props[:, 2] - props[:, 0], props[:, 3] - props[:, 1]
        for v in (w, h):
            near = ((v - min_bbox_size).abs() < SIZE_GAP) & (v != min_bbox_size)
            assert not near.any(), f"{what}: a proposal side within {SIZE_GAP} of min_bbox_size"
        valid = (w > min_bbox_size) & (h > min_bbox_size)
        if not valid.all():
            props, scores, ids = props[valid], scores[valid], ids[valid]
    if props.numel() == 0:
        return props.new_zeros(0, 5)
    check_nms_margins(props, scores, ids, iou, what, score_gap)
    keep = mmcv_batched_nms(props, scores, ids, iou)
    check_cut(scores[keep], max_per_img, f"{what} max_per_img", score_gap)
    keep = keep[:max_per_img]
    check_sorted_apart(scores[keep], what, score_gap)
    return torch.cat([props[keep], scores[keep, None]], 1)


def rpn_loss(cls_scores, bbox_preds, anchors, sizes, metas, gts, sampling=True, allowed_border=-1):
    """AnchorHead.loss for RPNHead: (loss_rpn_cls, loss_rpn_bbox) summed over levels."""
    flat = torch.cat(anchors)
    n_anchor = flat.shape[0]
    tgt_l, lw_l, bt_l, bw_l = [], [], [], []
    num_pos = num_neg = 0
    for i, meta in enumerate(metas):
        ph, pw = meta["pad_shape"]
        vf = torch.cat([valid_flags(h, w, min(int(np.ceil(ph / s)), h), min(int(np.ceil(pw / s)), w), A)
                        for s, (h, w) in zip(STRIDES, sizes)])
        if allowed_border >= 0:
            ih, iw = meta["img_shape"]
            vf = vf & (flat[:, 0] >= -allowed_border) & (flat[:, 1] >= -allowed_border) & \
                (flat[:, 2] < iw + allowed_border) & (flat[:, 3] < ih + allowed_border)
        anc = flat[vf]
        ov = bbox_overlaps(gts[i], anc)
        for thr in (0.7, 0.3):
            assert not ((ov - thr).abs() < IOU_GAP).any(), f"image {i}: an anchor IoU near the threshold {thr}"
        assigned, _, _ = max_iou_assign(anc, gts[i], None, torch.zeros(gts[i].shape[0], dtype=torch.long),
                                        pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True)
        pos = torch.nonzero(assigned > 0).squeeze(-1).unique()
        neg = torch.nonzero(assigned == 0).squeeze(-1).unique()
        # RandomSampler(num=256, pos_fraction=0.5): everything fits the quotas
        assert len(pos) <= 128 and len(neg) <= 256 - len(pos), (len(pos), len(neg))
        n = anc.shape[0]
        tgt, lw = torch.zeros(n), torch.zeros(n)
        bt, bw = torch.zeros(n, 4), torch.zeros(n, 4)
        if len(pos):
            bt[pos] = bbox2delta(anc[pos], gts[i][assigned[pos] - 1], [0.0] * 4, [1.0] * 4)
            bw[pos] = 1.0
            tgt[pos] = 1.0          # label 0 (foreground) -> one-hot target 1
            lw[pos] = 1.0           # pos_weight -1
        lw[neg] = 1.0
        num_pos += max(len(pos), 1)
        num_neg += max(len(neg), 1)

        def unmap(x):
            out = x.new_zeros((n_anchor,) + x.shape[1:])
            out[vf] = x
            return out
        tgt_l.append(unmap(tgt))
        lw_l.append(unmap(lw))
        bt_l.append(unmap(bt))
        bw_l.append(unmap(bw))
    avg = num_pos + num_neg if sampling else num_pos
    tgt_all, lw_all, bt_all, bw_all = map(torch.stack, (tgt_l, lw_l, bt_l, bw_l))
    loss_cls = loss_bbox = 0
    off = 0
    for lvl, (cs, bp) in enumerate(zip(cls_scores, bbox_preds)):
        k = anchors[lvl].shape[0]
        sl = slice(off, off + k)
        off += k
        pred = cs.permute(0, 2, 3, 1).reshape(-1)
        bce = F.binary_cross_entropy_with_logits(pred, tgt_all[:, sl].reshape(-1), reduction="none")
        loss_cls = loss_cls + (bce * lw_all[:, sl].reshape(-1)).sum() / (avg + EPS)
        d = (bp.permute(0, 2, 3, 1).reshape(-1, 4) - bt_all[:, sl].reshape(-1, 4)).abs()
        loss_bbox = loss_bbox + (d * bw_all[:, sl].reshape(-1, 4)).sum() / (avg + EPS)
    return loss_cls, loss_bbox, num_pos, num_neg


def main():
    g = torch.Generator().manual_seed(11)
    w = {"rpn_conv.weight": torch.randn(FEAT, IN, 3, 3, generator=g) * 0.3,
         "rpn_conv.bias": torch.randn(FEAT, generator=g) * 0.1,
         "rpn_cls.weight": torch.randn(A, FEAT, 1, 1, generator=g) * 0.5,
         "rpn_cls.bias": torch.randn(A, generator=g) * 0.3,
         "rpn_reg.weight": torch.randn(4 * A, FEAT, 1, 1, generator=g) * 0.2,
         "rpn_reg.bias": torch.randn(4 * A, generator=g) * 0.1}
    for v in w.values():
        v.requires_grad_(True)
    feats = [torch.randn(2, IN, h, ww, generator=g).requires_grad_(True) for h, ww in SIZES]
    cls, reg = rpn_forward(w, feats)
    anchors = [grid_priors(base_anchors(s, SCALES, RATIOS), h, ww, s, s) for s, (h, ww) in zip(STRIDES, SIZES)]

    out = {"feat0": feats[0], "feat1": feats[1]}
    for lvl in range(2):
        out[f"cls{lvl}"], out[f"reg{lvl}"] = cls[lvl], reg[lvl]
    loss_cls, loss_bbox, num_pos, num_neg = rpn_loss(cls, reg, anchors, SIZES, META, GT)
    (loss_cls + loss_bbox).backward()
    out.update({"loss_cls": loss_cls, "loss_bbox": loss_bbox, "num_pos": torch.tensor(float(num_pos)),
                "num_neg": torch.tensor(float(num_neg)), "grad_feat0": feats[0].grad, "grad_feat1": feats[1].grad})
    for k, v in w.items():
        out["w." + k] = v
        out["grad." + k] = v.grad
    with torch.no_grad():
        lc, lb, _, _ = rpn_loss(cls, reg, anchors, SIZES, META, GT, sampling=False)
        out["pseudo.loss_cls"], out["pseudo.loss_bbox"] = lc, lb
        lc, lb, _, _ = rpn_loss(cls, reg, anchors, SIZES, META, GT, allowed_border=0)
        out["border0.loss_cls"], out["border0.loss_bbox"] = lc, lb
        for i, meta in enumerate(META):
            out[f"props{i}"] = rpn_proposals([c[i] for c in cls], [r[i] for r in reg], anchors, meta["img_shape"],
                                             TEST_CFG["nms_pre"], TEST_CFG["min_bbox_size"],
                                             TEST_CFG["iou_threshold"], TEST_CFG["max_per_img"], f"image {i}")
        # min_bbox_size 0 and no nms_pre: every anchor is a candidate
        out["props_all0"] = rpn_proposals([c[0] for c in cls], [r[0] for r in reg], anchors, META[0]["img_shape"],
                                          -1, 0.0, 0.4, 1000, "all")
    print("num_pos", num_pos, "num_neg", num_neg, "loss", float(loss_cls), float(loss_bbox),
          "pseudo", float(out["pseudo.loss_cls"]), "border0", float(out["border0.loss_cls"]),
          "proposals", [out[f"props{i}"].shape[0] for i in range(2)], out["props_all0"].shape[0])
    save("rpn", out)


if __name__ == "__main__":
    main()
