"""Golden fixture for RPNHead with reg_decoded_bbox (tests/unit/test_rpn_head.c).

mmdet 2.28's RPNHead on AnchorHead written in PyTorch: rpn_conv (3x3, ReLU),
rpn_cls (one sigmoid score per anchor), rpn_reg; anchors, valid flags from
pad_shape, MaxIoUAssigner (match_low_quality), PseudoSampler given as
train_cfg.sampler (every positive and negative, deterministic); labels 0
for the positives and 1 (background) otherwise, so use_sigmoid
CrossEntropyLoss has target 1 on positives; with the PseudoSampler mmdet
2.28 turns sampling off, so avg_factor = sum over images of max(#pos, 1). With
reg_decoded_bbox the targets are the gt boxes, loss_single decodes every
anchor's deltas (no max_shape) and GIoULoss (weight 2, eps 1e-6) compares
them, weight [n, 4] reduced by mean(-1). Per-level losses are summed as
mmdet logs them. Same two images as retina_golden.py.

    /usr/bin/python3 tests/golden/rpn_decoded_golden.py  -> tests/fixtures/rpn_decoded.safetensors
"""
import numpy as np
import torch
import torch.nn.functional as F

from bbox_golden import base_anchors, delta2bbox, grid_priors, max_iou_assign, valid_flags
from common import save
from retina_golden import GT, GT_IGNORE, GT_LABELS, META, SIZES, STRIDES, box_loss

IN, FEAT = 4, 8
SCALES = torch.Tensor([4.0])
RATIOS = torch.Tensor([0.5, 1.0, 2.0])
A = 3
EPS = torch.finfo(torch.float32).eps


def main():
    g = torch.Generator().manual_seed(11)
    w = {"rpn_conv.weight": torch.randn(FEAT, IN, 3, 3, generator=g) * 0.2,
         "rpn_conv.bias": torch.randn(FEAT, generator=g) * 0.1,
         "rpn_cls.weight": torch.randn(A, FEAT, 1, 1, generator=g) * 0.3,
         "rpn_cls.bias": torch.randn(A, generator=g) * 0.1,
         "rpn_reg.weight": torch.randn(A * 4, FEAT, 1, 1, generator=g) * 0.1,
         "rpn_reg.bias": torch.randn(A * 4, generator=g) * 0.1}
    for v in w.values():
        v.requires_grad_(True)
    feats = [torch.randn(2, IN, h, ww, generator=g).requires_grad_(True) for h, ww in SIZES]
    cls_scores, bbox_preds = [], []
    for x in feats:
        x = F.relu(F.conv2d(x, w["rpn_conv.weight"], w["rpn_conv.bias"], padding=1))
        cls_scores.append(F.conv2d(x, w["rpn_cls.weight"], w["rpn_cls.bias"]))
        bbox_preds.append(F.conv2d(x, w["rpn_reg.weight"], w["rpn_reg.bias"]))

    anchors = [grid_priors(base_anchors(s, SCALES, RATIOS), h, ww, s, s) for s, (h, ww) in zip(STRIDES, SIZES)]
    flat = torch.cat(anchors)
    lab_l, lw_l, bt_l, bw_l = [], [], [], []
    num_pos = num_neg = 0
    for i, meta in enumerate(META):
        ph, pw = meta["pad_shape"]
        vf = torch.cat([valid_flags(h, ww, min(int(np.ceil(ph / s)), h), min(int(np.ceil(pw / s)), ww), A)
                        for s, (h, ww) in zip(STRIDES, SIZES)])
        anc = flat[vf]
        assigned, _, _ = max_iou_assign(anc, GT[i], GT_IGNORE[i], GT_LABELS[i], pos_iou_thr=0.5, neg_iou_thr=0.3,
                                        min_pos_iou=0.3, ignore_iof_thr=-1)
        pos = torch.nonzero(assigned > 0).squeeze(-1)
        neg = torch.nonzero(assigned == 0).squeeze(-1)
        n = anc.shape[0]
        target, lw, bt, bw = torch.zeros(n), torch.zeros(n), torch.zeros(n, 4), torch.zeros(n, 4)
        target[pos] = 1.0
        lw[pos] = 1.0
        lw[neg] = 1.0
        bt[pos] = GT[i][assigned[pos] - 1]
        bw[pos] = 1.0
        num_pos += max(len(pos), 1)
        num_neg += max(len(neg), 1)

        def unmap(x):
            out = x.new_zeros((flat.shape[0],) + x.shape[1:])
            out[vf] = x
            return out
        lab_l.append(unmap(target))
        lw_l.append(unmap(lw))
        bt_l.append(unmap(bt))
        bw_l.append(unmap(bw))
    tgt_all, lw_all, bt_all, bw_all = (torch.stack(x) for x in (lab_l, lw_l, bt_l, bw_l))
    avg = num_pos  # no sampling with the PseudoSampler

    loss_cls = loss_bbox = 0
    off = 0
    for lvl, (cs, bp) in enumerate(zip(cls_scores, bbox_preds)):
        k = anchors[lvl].shape[0]
        sl = slice(off, off + k)
        off += k
        logits = cs.permute(0, 2, 3, 1).reshape(-1)
        bce = F.binary_cross_entropy_with_logits(logits, tgt_all[:, sl].reshape(-1), reduction="none")
        loss_cls = loss_cls + (bce * lw_all[:, sl].reshape(-1)).sum() / (avg + EPS)
        anc = anchors[lvl][None].expand(2, -1, -1).reshape(-1, 4)
        boxes = delta2bbox(anc, bp.permute(0, 2, 3, 1).reshape(-1, 4), [0.0] * 4, [1.0] * 4, max_shape=None)
        loss_bbox = loss_bbox + box_loss("giou", boxes, bt_all[:, sl].reshape(-1, 4), bw_all[:, sl].reshape(-1, 4),
                                         avg, 2.0)
    (loss_cls + loss_bbox).backward()

    out = {"feat0": feats[0], "feat1": feats[1], "loss_rpn_cls": loss_cls, "loss_rpn_bbox": loss_bbox,
           "grad_feat0": feats[0].grad, "grad_feat1": feats[1].grad}
    for k, v in w.items():
        out["w." + k] = v
        out["grad." + k] = v.grad
    save("rpn_decoded", out)


if __name__ == "__main__":
    main()
