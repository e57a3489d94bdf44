"""Golden fixture for RetinaHead's test-time augmentation: mmdet 2.28's
BBoxTestMixin.aug_test_bboxes written out in PyTorch, on two variants of two
images (variant 0 at one scale, variant 1 at another scale and flipped
horizontally, as MultiScaleFlipAug makes them) with fixed head weights and
feature maps:

  per variant: RetinaHead.forward, get_bboxes(rescale=False, with_nms=False)
               (filter_scores_and_topk per level, decode clipped to the
               variant's img_shape);
  merge:       bbox_mapping_back (undo the flip in the variant's img_shape,
               then divide by its scale_factor), concatenate the variants;
  then:        batched_nms(test_cfg.nms), the first max_per_img; rescale=True
               keeps the boxes in the original image.

mmdet runs aug_test on one image; the two images here are merged each on its
own, as the C implementation does for a batch.

    /usr/bin/python3 tests/golden/aug_test_golden.py  -> tests/fixtures/aug_test.safetensors
"""
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms

from bbox_golden import base_anchors, delta2bbox, grid_priors
from common import save

C, IN, FEAT, STACKED = 3, 4, 8, 1
STRIDES = [8, 16]
SCALES = torch.Tensor(np.array([2 ** (i / 2) for i in range(2)]) * 4)
RATIOS = torch.Tensor([0.5, 1.0, 2.0])
A = 6
NMS_PRE, SCORE_THR, IOU, MAX_PER_IMG = 30, 0.05, 0.5, 15
# Original images 100 x 120 and 90 x 110 (h, w). Variant 0: scale 0.5; variant
# 1: scale 0.8 and flipped. Feature sizes follow the padded (size_divisor 32)
# variant images.
VARIANTS = [
    dict(flip=False, feat_sizes=[(8, 8), (4, 4)],
         metas=[dict(img_shape=(50, 60), scale_factor=[0.5, 0.5, 0.5, 0.5]),
                dict(img_shape=(45, 55), scale_factor=[0.5, 0.5, 0.5, 0.5])]),
    dict(flip=True, feat_sizes=[(12, 12), (6, 6)],
         metas=[dict(img_shape=(80, 96), scale_factor=[0.8, 0.8, 0.8, 0.8]),
                dict(img_shape=(72, 88), scale_factor=[0.8, 0.8, 0.8, 0.8])]),
]


def bbox_flip(b, img_shape):
    out = b.clone()
    out[:, 0] = img_shape[1] - b[:, 2]
    out[:, 2] = img_shape[1] - b[:, 0]
    return out


def bbox_mapping_back(b, meta, flip):
    b = bbox_flip(b, meta["img_shape"]) if flip else b
    return b / torch.tensor(meta["scale_factor"])


def main():
    g = torch.Generator().manual_seed(11)
    w = {}
    for br in ("cls_convs", "reg_convs"):
        for i in range(STACKED):
            w[f"{br}.{i}.conv.weight"] = torch.randn(FEAT, IN if i == 0 else FEAT, 3, 3, generator=g) * 0.2
            w[f"{br}.{i}.conv.bias"] = torch.randn(FEAT, generator=g) * 0.1
    w["retina_cls.weight"] = torch.randn(A * C, FEAT, 3, 3, generator=g) * 0.1
    w["retina_cls.bias"] = torch.full((A * C,), -2.0) + torch.randn(A * C, generator=g) * 0.3
    w["retina_reg.weight"] = torch.randn(A * 4, FEAT, 3, 3, generator=g) * 0.1
    w["retina_reg.bias"] = torch.randn(A * 4, generator=g) * 0.1
    out = {"w." + k: v for k, v in w.items()}

    cands = [[None, None] for _ in range(2)]   # [image][variant] -> boxes, scores, labels
    for k, var in enumerate(VARIANTS):
        feats = [torch.randn(2, IN, h, ww, generator=g) for h, ww in var["feat_sizes"]]
        for lvl, f in enumerate(feats):
            out[f"v{k}.feat{lvl}"] = f
        cls_scores, bbox_preds = [], []
        for x in feats:
            c = r = x
            for i in range(STACKED):
                c = F.relu(F.conv2d(c, w[f"cls_convs.{i}.conv.weight"], w[f"cls_convs.{i}.conv.bias"], padding=1))
                r = F.relu(F.conv2d(r, w[f"reg_convs.{i}.conv.weight"], w[f"reg_convs.{i}.conv.bias"], padding=1))
            cls_scores.append(F.conv2d(c, w["retina_cls.weight"], w["retina_cls.bias"], padding=1))
            bbox_preds.append(F.conv2d(r, w["retina_reg.weight"], w["retina_reg.bias"], padding=1))
        anchors = [grid_priors(base_anchors(s, SCALES, RATIOS), h, ww, s, s)
                   for s, (h, ww) in zip(STRIDES, var["feat_sizes"])]
        for i, meta in enumerate(var["metas"]):
            mb, ms, ml = [], [], []
            for lvl in range(2):
                s = cls_scores[lvl][i].permute(1, 2, 0).reshape(-1, C).sigmoid()
                b = bbox_preds[lvl][i].permute(1, 2, 0).reshape(-1, 4)
                valid = s > SCORE_THR
                sc = s[valid]
                vi = torch.nonzero(valid)
                sc, idx = sc.sort(descending=True)
                n = min(NMS_PRE, vi.size(0))
                sc = sc[:n]
                keep, lab = vi[idx[:n]].unbind(dim=1)
                mb.append(delta2bbox(anchors[lvl][keep], b[keep], [0.0] * 4, [1.0] * 4, max_shape=meta["img_shape"]))
                ms.append(sc)
                ml.append(lab)
            cands[i][k] = (torch.cat(mb), torch.cat(ms), torch.cat(ml))

    for i in range(2):
        boxes = torch.cat([bbox_mapping_back(cands[i][k][0], VARIANTS[k]["metas"][i], VARIANTS[k]["flip"])
                           for k in range(2)])
        scores = torch.cat([cands[i][k][1] for k in range(2)])
        labels = torch.cat([cands[i][k][2] for k in range(2)])
        keep = batched_nms(boxes, scores, labels, IOU)[:MAX_PER_IMG]
        out[f"det{i}.bboxes"] = torch.cat([boxes[keep], scores[keep, None]], 1)
        out[f"det{i}.labels"] = labels[keep]
        out[f"det{i}.from_flipped"] = (keep >= cands[i][0][0].shape[0]).to(torch.uint8)
    save("aug_test", out)


if __name__ == "__main__":
    main()
