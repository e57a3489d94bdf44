"""Golden fixtures for whole detectors (tests/unit/test_detector_golden.c):
the final detections of mmdet 2.28's simple_test(img, img_metas,
rescale=True) for a tiny RetinaNet and a tiny Faster R-CNN with random
weights, written in PyTorch from the building blocks of the other golden
scripts (backbones_golden: ResNet, FPN; bbox_golden: anchors, delta2bbox;
rpn_golden: RPNHead forward and proposals, mmcv's batched_nms;
twostage_golden: SingleRoIExtractor, Shared2FCBBoxHead, multiclass_nms).

- RetinaNet: ResNet-18 at base_channels 4 with 3 stages (C2-C4), FPN
  start_level 1 with two extra convs on the input (P3-P6), RetinaHead
  (2 stacked convs, 3 classes); BaseDenseHead._get_bboxes_single:
  filter_scores_and_topk (score_thr, then nms_pre), decode with the image's
  img_shape, divide by scale_factor, batched_nms by label, max_per_img.
- Faster R-CNN: ResNet-18 at base_channels 4 (C2-C5), FPN with a max-pool P6,
  RPNHead (proposals of test_cfg.rpn in the padded input's pixels, clipped
  to img_shape), StandardRoIHead.simple_test_bboxes: bbox2roi, RoIAlign of
  each proposal on the level of map_roi_levels, Shared2FCBBoxHead,
  get_bboxes (softmax, decode, clip, rescale, multiclass_nms).

Everything runs in eval mode (BN on running statistics). The results are the
(det_bboxes, det_labels) of each image before bbox2result (which only groups
them by class), in the order mmdet returns them (descending score).

Weights go to tests/fixtures/detector_{retina,faster}_weights.safetensors
under mmdet's state dict names (loaded in C with md_checkpoint_load, the
load_from path); the batch to detector_batch.safetensors (the images as
uint8, normalised by both sides as mmdet's Normalize, the padding zero as
after Pad; img_shape and scale_factor of each image) and the results to
detector_{retina,faster}.safetensors.

No detection may sit on a decision boundary, so float32 rounding cannot
change the set: the script checks every score against score_thr, the score
gaps at every top-k cut, every IoU that an NMS decision compares with its
threshold, tied scores among overlapping boxes, the proposals' RoIAlign
sampling grids (ceil(roi size / 7)) and FPN levels (log2 of the scale), and
min_bbox_size; it fails with the reason if any is within its margin.

    /usr/bin/python3 tests/golden/detector_golden.py
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import rpn_golden
from backbones_golden import FPN, ConvModule, ResNet, randomize
from bbox_golden import base_anchors, delta2bbox, grid_priors
from common import save
from rpn_golden import check_cut, check_nms_margins, check_sorted_apart, mmcv_batched_nms, rpn_proposals
from twostage_golden import Shared2FC, map_roi_levels, multiclass_nms, single_roi_extractor
from twostage_golden import delta2bbox as rcnn_delta2bbox

torch.set_num_threads(1)

H, W = 64, 96
MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
METAS = [dict(ori_shape=(120, 180), img_shape=(60, 90), pad_shape=(64, 96), scale_factor=[0.5, 0.5, 0.5, 0.5]),
         dict(ori_shape=(40, 60), img_shape=(48, 72), pad_shape=(64, 96), scale_factor=[1.2, 1.2, 1.2, 1.2])]
NC = 3
# Through ~20 layers the C side's float32 scores differ by up to ~6e-7 (boxes
# by 6e-5 px); the margins keep a wide factor over that: final scores 1e-4
# apart where their order decides, the RPN's 2e-5.
rpn_golden.SCORE_GAP = 1e-4
RPN_SCORE_GAP = 2e-5


def make_images(g):
    """Noise plus a few flat rectangles, as uint8 [2, 3, H, W]."""
    imgs = torch.randint(0, 256, (2, 3, H, W), generator=g, dtype=torch.uint8)
    for i in range(2):
        for _ in range(4):
            x1, y1 = int(torch.randint(0, W - 20, (1,), generator=g)), int(torch.randint(0, H - 16, (1,), generator=g))
            w, h = int(torch.randint(8, 40, (1,), generator=g)), int(torch.randint(8, 30, (1,), generator=g))
            col = torch.randint(0, 256, (3, 1, 1), generator=g, dtype=torch.uint8)
            imgs[i, :, y1:y1 + h, x1:x1 + w] = col
    return imgs


def normalize(imgs):
    """mmdet's Normalize (float32 (x - mean) / std) inside img_shape, zero padding."""
    x = torch.zeros(2, 3, H, W)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    for i, m in enumerate(METAS):
        h, w = m["img_shape"]
        x[i, :, :h, :w] = (imgs[i, :, :h, :w].float() - mean) / std
    return x


def check_thr(scores, thr, gap, what):
    """Every score `gap` away from score_thr (RetinaNet's thousands of sigmoid
    scores, which match to ~1e-6, 1e-4; the RoI head's softmax 1e-3)."""
    near = (scores - thr).abs() < gap
    assert not near.any(), f"{what}: a score within {gap} of score_thr {thr}"


# ------------------------------------------------------------------ RetinaNet
class RetinaHead(nn.Module):
    def __init__(self, nc, cin, feat, stacked, a):
        super().__init__()
        self.cls_convs = nn.ModuleList([ConvModule(cin if i == 0 else feat, feat, 3, padding=1) for i in range(stacked)])
        self.reg_convs = nn.ModuleList([ConvModule(cin if i == 0 else feat, feat, 3, padding=1) for i in range(stacked)])
        self.retina_cls = nn.Conv2d(feat, a * nc, 3, padding=1)
        self.retina_reg = nn.Conv2d(feat, a * 4, 3, padding=1)

    def forward(self, feats):
        cls, reg = [], []
        for x in feats:
            c = r = x
            for cc, rc in zip(self.cls_convs, self.reg_convs):   # ConvModule with ReLU
                c, r = F.relu(cc(c)), F.relu(rc(r))
            cls.append(self.retina_cls(c))
            reg.append(self.retina_reg(r))
        return cls, reg


class RetinaNet(nn.Module):
    STRIDES = [8, 16, 32, 64]
    SCALES = torch.Tensor(np.array([2 ** (i / 2) for i in range(2)]) * 4)   # octave_base_scale 4, 2 per octave
    RATIOS = torch.Tensor([0.5, 1.0, 2.0])
    TEST = dict(nms_pre=40, score_thr=0.3, iou=0.5, max_per_img=15)

    def __init__(self):
        super().__init__()
        self.backbone = ResNet(18, base_channels=4, num_stages=3, out_indices=(0, 1, 2))
        self.neck = FPN([4, 8, 16], 8, 4, start_level=1, add_extra_convs="on_input")
        self.bbox_head = RetinaHead(NC, 8, 8, 2, 6)

    def simple_test(self, img):
        cls, reg = self.bbox_head(self.neck(self.backbone(img)))
        anchors = [grid_priors(base_anchors(s, self.SCALES, self.RATIOS), c.shape[2], c.shape[3], s, s)
                   for s, c in zip(self.STRIDES, cls)]
        return [self.get_bboxes_single([c[i] for c in cls], [r[i] for r in reg], anchors, m, f"retina image {i}")
                for i, m in enumerate(METAS)]

    def get_bboxes_single(self, cls_list, reg_list, anchors, meta, what):
        t = self.TEST
        mb, ms, ml = [], [], []
        for lvl, (c, r) in enumerate(zip(cls_list, reg_list)):
            s = c.permute(1, 2, 0).reshape(-1, NC).sigmoid()
            b = r.permute(1, 2, 0).reshape(-1, 4)
            check_thr(s, t["score_thr"], 1e-4, f"{what} level {lvl}")
            # filter_scores_and_topk
            valid = s > t["score_thr"]
            sc = s[valid]
            vi = torch.nonzero(valid)
            sc, idx = sc.sort(descending=True)
            check_cut(sc, t["nms_pre"], f"{what} level {lvl} nms_pre")
            k = min(t["nms_pre"], vi.size(0))
            sc = sc[:k]
            keep, lab = vi[idx[:k]].unbind(dim=1)
            if k == 0:          # mmdet's delta2bbox returns the empty deltas
                mb.append(b[:0])
            else:
                mb.append(delta2bbox(anchors[lvl][keep], b[keep], [0.0] * 4, [1.0] * 4, max_shape=meta["img_shape"]))
            ms.append(sc)
            ml.append(lab)
        boxes = torch.cat(mb) / torch.tensor(meta["scale_factor"])
        scores, labels = torch.cat(ms), torch.cat(ml)
        check_nms_margins(boxes, scores, labels, t["iou"], what)
        keep = mmcv_batched_nms(boxes, scores, labels, t["iou"])
        check_cut(scores[keep], t["max_per_img"], f"{what} max_per_img")
        keep = keep[:t["max_per_img"]]
        check_sorted_apart(scores[keep], what)
        return torch.cat([boxes[keep], scores[keep, None]], 1), labels[keep]


# -------------------------------------------------------------- Faster R-CNN
class RPNHead(nn.Module):
    def __init__(self, cin, feat, a):
        super().__init__()
        self.rpn_conv = nn.Conv2d(cin, feat, 3, padding=1)
        self.rpn_cls = nn.Conv2d(feat, a, 1)
        self.rpn_reg = nn.Conv2d(feat, 4 * a, 1)

    def forward(self, feats):
        cls, reg = [], []
        for x in feats:
            x = F.relu(self.rpn_conv(x))
            cls.append(self.rpn_cls(x))
            reg.append(self.rpn_reg(x))
        return cls, reg


class RoIHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.bbox_head = Shared2FC(8, 7, 16, NC, False)


class FasterRCNN(nn.Module):
    STRIDES = [4, 8, 16, 32, 64]
    ROI_STRIDES = [4, 8, 16, 32]
    RPN_TEST = dict(nms_pre=50, max_per_img=30, iou=0.7, min_bbox_size=0.0)
    RCNN_TEST = dict(score_thr=0.05, iou=0.5, max_per_img=40)

    def __init__(self):
        super().__init__()
        self.backbone = ResNet(18, base_channels=4)
        self.neck = FPN([4, 8, 16, 32], 8, 5)
        self.rpn_head = RPNHead(8, 8, 3)
        self.roi_head = RoIHead()

    def simple_test(self, img):
        feats = self.neck(self.backbone(img))
        cls, reg = self.rpn_head(feats)
        anchors = [grid_priors(base_anchors(s, torch.tensor([2.0]), torch.tensor([0.5, 1.0, 2.0])), c.shape[2],
                               c.shape[3], s, s) for s, c in zip(self.STRIDES, cls)]
        t = self.RPN_TEST
        props = [rpn_proposals([c[i] for c in cls], [r[i] for r in reg], anchors, m["img_shape"], t["nms_pre"],
                               t["min_bbox_size"], t["iou"], t["max_per_img"], f"faster image {i} rpn", RPN_SCORE_GAP)
                 for i, m in enumerate(METAS)]
        rois = torch.cat([torch.cat([torch.full((p.shape[0], 1), float(i)), p[:, :4]], 1) for i, p in enumerate(props)])
        self.check_rois(rois)
        x = single_roi_extractor(feats[:4], rois, self.ROI_STRIDES)
        cls_score, bbox_pred = self.roi_head.bbox_head(x)
        out, off = [], 0
        for i, m in enumerate(METAS):
            k = props[i].shape[0]
            out.append(self.get_bboxes(rois[off:off + k], cls_score[off:off + k], bbox_pred[off:off + k], m,
                                       f"faster image {i} rcnn"))
            off += k
        return out, props

    def check_rois(self, rois):
        """RoIAlign (aligned, sampling_ratio 0) samples ceil(roi / 7) points per
        bin: no RoI size / 7 near an integer on its level; no RoI scale near a
        level boundary of map_roi_levels."""
        wh = (rois[:, 3:5] - rois[:, 1:3])
        lv = torch.log2(torch.sqrt(wh[:, 0] * wh[:, 1]) / 56 + 1e-6)
        assert ((lv - lv.round()).abs() > 1e-3).all(), "a RoI scale near a level boundary"
        lvl = map_roi_levels(rois, 4)
        scale = torch.tensor([1.0 / s for s in self.ROI_STRIDES])[lvl]
        bins = wh * scale[:, None] / 7
        assert ((bins - bins.round()).abs() > 1e-3).all(), "a RoI whose sampling grid is near a step"

    def get_bboxes(self, rois, cls_score, bbox_pred, meta, what):
        t = self.RCNN_TEST
        scores = F.softmax(cls_score, dim=-1)
        check_thr(scores[:, :-1], t["score_thr"], 1e-3, what)
        boxes = rcnn_delta2bbox(rois[:, 1:], bbox_pred, meta["img_shape"])
        sf = torch.tensor(meta["scale_factor"])
        boxes = (boxes.view(boxes.size(0), -1, 4) / sf).view(boxes.size(0), -1)
        # multiclass_nms's candidates, checked before it runs
        n = scores.size(0)
        b = boxes.view(n, -1, 4).reshape(-1, 4)
        s = scores[:, :-1].reshape(-1)
        lab = torch.arange(NC).view(1, -1).expand(n, NC).reshape(-1)
        v = s > t["score_thr"]
        check_nms_margins(b[v], s[v], lab[v], t["iou"], what)
        dets, labels = multiclass_nms(boxes, scores, t["score_thr"], t["iou"], 10 ** 9)
        check_cut(dets[:, 4], t["max_per_img"], f"{what} max_per_img")
        dets, labels = dets[:t["max_per_img"]], labels[:t["max_per_img"]]
        check_sorted_apart(dets[:, 4], what)
        return dets, labels


def head_init(net, g, gains=None):
    """Head weights N(0, gain^2 / fan_in) (gain 1 unless named in gains), biases N(0, 0.1^2)."""
    gains = gains or {}
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() > 1:
                gain = next((v for k, v in gains.items() if name.startswith(k)), 1.0)
                p.copy_(torch.randn(p.shape, generator=g) * gain / math.sqrt(p[0].numel()))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def weights(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def make_retina(seed):
    g = torch.Generator().manual_seed(seed)
    net = RetinaNet()
    randomize(net.backbone, g)
    head_init(net.neck, g)
    head_init(net.bbox_head, g, {"retina_cls": 0.2, "retina_reg": 0.1})
    with torch.no_grad():
        net.bbox_head.retina_cls.bias.add_(-1.5)     # unsaturated scores, some above score_thr
    net.eval()
    return net


def make_faster(seed):
    g = torch.Generator().manual_seed(seed)
    net = FasterRCNN()
    randomize(net.backbone, g)
    head_init(net.neck, g)
    head_init(net.rpn_head, g, {"rpn_cls": 0.15, "rpn_reg": 0.05})
    head_init(net.roi_head, g, {"bbox_head.fc_cls": 0.2, "bbox_head.fc_reg": 0.05})
    net.eval()
    return net


# Seeds of the weights for which every margin check passes (found by trying
# seeds from 0 up with --search); the images come from seed 2024.
RETINA_SEED = 10
FASTER_SEED = 32


def search(make, run, start):
    for seed in range(start, start + 200):
        try:
            with torch.no_grad():
                run(make(seed))
            return seed
        except AssertionError as e:
            print("seed", seed, e)
    raise SystemExit("no seed passes the margin checks")


def main(do_search=False):
    imgs = make_images(torch.Generator().manual_seed(2024))
    x = normalize(imgs)
    batch = {"img_u8": imgs}
    for i, m in enumerate(METAS):
        batch[f"meta{i}.img_shape"] = torch.tensor(m["img_shape"])
        batch[f"meta{i}.scale_factor"] = torch.tensor(m["scale_factor"])
    save("detector_batch", batch)
    if do_search:
        print("RETINA_SEED =", search(make_retina, lambda n: n.simple_test(x), 0))
        print("FASTER_SEED =", search(make_faster, lambda n: n.simple_test(x), 0))
        return

    net = make_retina(RETINA_SEED)
    with torch.no_grad():
        res = net.simple_test(x)
    out = {}
    for i, (d, l) in enumerate(res):
        out[f"det{i}.bboxes"], out[f"det{i}.labels"] = d, l
        print("retina image", i, "detections", d.shape[0], "labels", l.tolist())
    save("detector_retina_weights", weights(net))
    save("detector_retina", out)

    net = make_faster(FASTER_SEED)
    with torch.no_grad():
        res, props = net.simple_test(x)
    out = {}
    for i, (d, l) in enumerate(res):
        out[f"det{i}.bboxes"], out[f"det{i}.labels"] = d, l
        out[f"props{i}"] = props[i]
        print("faster image", i, "proposals", props[i].shape[0], "detections", d.shape[0], "labels", l.tolist())
    save("detector_faster_weights", weights(net))
    save("detector_faster", out)


if __name__ == "__main__":
    import sys
    main("--search" in sys.argv)
