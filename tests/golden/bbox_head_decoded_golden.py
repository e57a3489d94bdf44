"""Golden fixture for Shared2FCBBoxHead with reg_decoded_bbox
(tests/unit/test_bbox_head_decoded.c).

mmdet 2.28's BBoxHead: get_targets puts the gt boxes themselves in
bbox_targets for the positives; loss decodes bbox_pred against rois[:, 1:]
(DeltaXYWHBBoxCoder, stds 0.1/0.1/0.2/0.2, no max_shape), takes each
positive's box of its class (or the agnostic one) and applies loss_bbox
with bbox_weights[pos] and avg_factor = bbox_targets.size(0). Cases:
"giou": per-class boxes, GIoULoss (eps 1e-6, weight 10, as mmdet's cascade
configs); "iou": class-agnostic, IoULoss mode square. Weights [P, 4] are
reduced by mean(-1) as both losses do.

    /usr/bin/python3 tests/golden/bbox_head_decoded_golden.py -> tests/fixtures/bbox_head_decoded.safetensors
"""
import torch
import torch.nn.functional as F

from bbox_golden import delta2bbox
from common import save
from retina_golden import aligned_giou

STDS = [0.1, 0.1, 0.2, 0.2]
IN, S, FC, NC = 4, 3, 16, 3
EPS = torch.finfo(torch.float32).eps


class Shared2FC(torch.nn.Module):
    def __init__(self, agnostic):
        super().__init__()
        self.shared_fcs = torch.nn.ModuleList([torch.nn.Linear(IN * S * S, FC), torch.nn.Linear(FC, FC)])
        self.fc_cls = torch.nn.Linear(FC, NC + 1)
        self.fc_reg = torch.nn.Linear(FC, 4 if agnostic else 4 * NC)

    def forward(self, x):
        x = x.flatten(1)
        for f in self.shared_fcs:
            x = F.relu(f(x))
        return self.fc_cls(x), self.fc_reg(x)


def rand_boxes(n, W, H, g):
    xy = torch.rand(n, 2, generator=g) * torch.tensor([W * 0.7, H * 0.7])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([W * 0.3, H * 0.3]) + 4
    return torch.cat([xy, xy + wh], 1)


def main():
    g = torch.Generator().manual_seed(8)
    out = {}
    samples = []
    for i, (np_, nn_) in enumerate([(3, 5), (2, 4)]):
        pos = rand_boxes(np_, 100, 80, g)
        pos_gt = pos + (torch.rand(np_, 4, generator=g) - 0.5) * 12
        pos_lab = torch.randint(0, NC, (np_,), generator=g)
        neg = rand_boxes(nn_, 100, 80, g)
        samples.append((pos, neg, pos_gt, pos_lab))
        out.update({f"s{i}.pos": pos, f"s{i}.neg": neg, f"s{i}.pos_gt": pos_gt, f"s{i}.pos_lab": pos_lab})
    rois = torch.cat([torch.cat([p, n]) for p, n, _, _ in samples])
    labels = torch.cat([torch.cat([lab, torch.full((n.size(0),), NC)]) for _, n, _, lab in samples])
    lw = torch.ones(rois.size(0))
    targets = torch.cat([torch.cat([gt, torch.zeros(n.size(0), 4)]) for _, n, gt, _ in samples])
    tw = torch.cat([torch.cat([torch.ones(p.size(0), 4), torch.zeros(n.size(0), 4)]) for p, n, _, _ in samples])
    K = rois.size(0)
    x = torch.randn(K, IN, S, S, generator=g)
    out["x"] = x
    for tag, agnostic, kind, lweight in (("giou", False, "giou", 10.0), ("iou", True, "iou", 1.0)):
        torch.manual_seed(4)
        head = Shared2FC(agnostic)
        for p in head.parameters():
            torch.nn.init.normal_(p, 0, 0.3)
        cls_score, bbox_pred = head(x)
        lc = (F.cross_entropy(cls_score, labels, reduction="none") * lw).sum() / (K + EPS)
        pos = labels < NC
        boxes = delta2bbox(rois, bbox_pred, [0.0] * 4, STDS, max_shape=None)
        if agnostic:
            pp = boxes.view(K, 4)[pos]
        else:
            pp = boxes.view(K, -1, 4)[pos, labels[pos]]
        w = tw[pos].mean(-1)
        ious, gious = aligned_giou(pp, targets[pos], 1e-6)
        loss = 1 - gious if kind == "giou" else 1 - ious.clamp(min=1e-6) ** 2
        lb = lweight * (loss * w).sum() / (K + EPS)
        (lc + lb).backward()
        for k, v in head.state_dict().items():
            out[f"{tag}.w.{k}"] = v
            out[f"{tag}.g.{k}"] = dict(head.named_parameters())[k].grad
        out.update({f"{tag}.bbox_targets": targets, f"{tag}.loss_cls": lc, f"{tag}.loss_bbox": lb})
    save("bbox_head_decoded", out)


if __name__ == "__main__":
    main()
