"""Golden fixtures for two-stage inference parity with mmdet 2.28.2 + mmcv-full
1.7.2 (tests/unit/test_two_stage_parity.c), from their own code path:

1. two_stage_parity_sort.safetensors: torch.sort(descending=True) on the CPU
   of score vectors full of ties (its order for equal values is that of
   libstdc++'s std::sort, not stable), and mmcv's batched_nms (its CPU nms
   op) on tied
   scores, below and above its split_thr (10000 boxes: one nms per class,
   then a second sort).
2. two_stage_parity/img{0,1}.png: two small images (flat rectangles on a
   gradient, odd sizes, so the test pipeline's Resize upscales them with
   cv2's bilinear), and two_stage_parity_rcnn.pth: torch.save of a tiny
   FasterRCNN built by build_detector (ResNet-18 at base_channels 4 with 3
   stages, FPN of 8 channels on 4 levels, RPNHead, Shared2FCBBoxHead, 3
   classes) with random weights,
   in which rpn_cls and fc_cls are scaled up so that most scores saturate:
   the sigmoid and softmax round to exactly 1.0 (or 0.0) in both
   implementations, as they do for many boxes of a trained model. The top-k
   cut per level (nms_pre) and every NMS then face hundreds of exact ties,
   which only the sort's order decides.
   two_stage_parity_rcnn.safetensors: for each image, mmdet's test pipeline
   output (img{i}, normalised and padded, and its img_shape/scale_factor),
   the RPN's proposals (simple_test_rpn, in order) and the detections of
   roi_head.simple_test_bboxes with rescale (det_bboxes with scores, labels,
   in order), run with the images read by LoadImageFromFile.

Apart from the exact ties, no decision may sit near its boundary (float32
sums in another order move logits by ~1e-5): every logit is checked to be
well inside the saturated ranges or clear of them, distinct scores that a
sort compares are apart, NMS IoUs clear of the thresholds, RoIs clear of
their FPN level boundaries and of a step of RoIAlign's adaptive grid.

    cd / && /usr/bin/python3 <repo>/tests/golden/two_stage_parity_golden.py
"""
import math
import os
import sys

import cv2
import numpy as np
import torch
from mmcv import ConfigDict
from mmcv.ops import batched_nms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FIXTURES, save  # noqa: E402

from mmcv.parallel import collate  # noqa: E402
from mmdet.core import bbox_overlaps  # noqa: E402
from mmdet.datasets.pipelines import Compose  # noqa: E402
from mmdet.models.builder import build_detector  # noqa: E402

torch.set_num_threads(1)
IMG_DIR = os.path.join(FIXTURES, 'two_stage_parity')
SIZES = [(37, 50), (61, 43)]      # (h, w) of the images, resized into (64, 64)
NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
TEST_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=(64, 64), flip=False,
         transforms=[dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'), dict(type='Normalize', **NORM),
                     dict(type='Pad', size_divisor=32), dict(type='ImageToTensor', keys=['img']),
                     dict(type='Collect', keys=['img'])])]
RPN_TEST = dict(nms_pre=100, max_per_img=60, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0)
RCNN_TEST = dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=40)
# float32 sigmoid is exactly 1.0 from a logit of ~16.6 and exactly 0.0 below
# ~-88.7 (exp(-x) overflows); logits must be this far inside or outside
SAT_MARGIN = 0.05
def saturation(target):
    """The logit from which float32 torch.sigmoid gives exactly target
    (bisection on float32 values)."""
    lo, hi = (0.0, 40.0) if target == 1.0 else (-120.0, -60.0)
    for _ in range(80):
        mid = (lo + hi) / 2
        s = float(torch.sigmoid(torch.tensor([mid], dtype=torch.float32))[0])
        if (s == 1.0) == (target == 1.0) and (s == 0.0) == (target == 0.0):
            hi, lo = (mid, lo) if target == 1.0 else (hi, mid)
        else:
            lo, hi = (mid, hi) if target == 1.0 else (lo, mid)
    return hi if target == 1.0 else lo


SAT_HI, SAT_LO = saturation(1.0), saturation(0.0)
LOGIT_GAP = 0.05       # distinct logits a sort compares (logits of ~1e4 carry ~5e-3 of rounding)
SCORE_GAP = 1e-3       # distinct softmax scores a sort compares
IOU_MARGIN = 1e-4


# ------------------------------------------------------------- sort and nms
def sort_case():
    """Small integers stored as u8 (values k / levels, boxes on a 2 px grid),
    indices as i32, to keep the fixture small."""
    g = torch.Generator().manual_seed(7)
    out = {}
    for k, (n, levels) in enumerate([(40, 3), (1000, 5), (5000, 40), (300, 1)]):
        q = torch.randint(0, levels, (n,), generator=g)
        v = q.float() / levels
        out[f'sort{k}.q'] = q.to(torch.uint8)
        out[f'sort{k}.levels'] = np.array(levels, dtype=np.int64)
        out[f'sort{k}.idx'] = v.sort(descending=True)[1].to(torch.int32)
    # batched_nms on a grid of overlapping boxes with few distinct scores,
    # 3 classes; 1200 boxes (one nms) and 12000 (split path). Their IoUs are
    # ratios of small integers: clear of 0.5 unless exactly 0.5 (kept: mmcv
    # suppresses above the threshold only).
    for k, n in enumerate([1200, 12000]):
        xy = torch.randint(0, 60, (n, 2), generator=g) * 2
        wh = torch.randint(2, 12, (n, 2), generator=g) * 2
        boxes = torch.cat([xy, xy + wh], 1)
        q = torch.randint(1, 6, (n,), generator=g)
        labels = torch.randint(0, 3, (n,), generator=g)
        dets, keep = batched_nms(boxes.float(), q.float() / 8, labels, dict(type='nms', iou_threshold=0.5))
        out[f'nms{k}.boxes'] = boxes.to(torch.uint8)
        out[f'nms{k}.q'] = q.to(torch.uint8)
        out[f'nms{k}.labels'] = labels.to(torch.uint8)
        out[f'nms{k}.keep'] = keep.to(torch.int32)
        print(f'batched_nms of {n} boxes keeps {len(keep)}')
    return out


# ------------------------------------------------------------------- images
def make_images():
    os.makedirs(IMG_DIR, exist_ok=True)
    g = np.random.default_rng(11)
    paths = []
    for i, (h, w) in enumerate(SIZES):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 97 % 256)], -1).astype(np.uint8)
        for _ in range(4):
            x1, y1 = int(g.integers(0, w - 10)), int(g.integers(0, h - 10))
            x2, y2 = min(w, x1 + int(g.integers(6, 30))), min(h, y1 + int(g.integers(6, 30)))
            img[y1:y2, x1:x2] = g.integers(0, 256, 3)
        path = os.path.join(IMG_DIR, f'img{i}.png')
        cv2.imwrite(path, img)
        paths.append(path)
    return paths


def load(paths):
    pipe = Compose(TEST_PIPELINE)
    datas = []
    for p in paths:
        d = pipe(dict(img_info=dict(filename=os.path.basename(p)), img_prefix=os.path.dirname(p)))
        datas.append(collate([d], samples_per_gpu=1))
    return datas


# ------------------------------------------------------------------ detector
def detector_cfg():
    return ConfigDict(
        type='FasterRCNN',
        backbone=dict(type='ResNet', depth=18, base_channels=4, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1),
                      out_indices=(0, 1, 2), frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
                      norm_eval=True, style='pytorch'),
        neck=dict(type='FPN', in_channels=[4, 8, 16], out_channels=8, num_outs=4),
        rpn_head=dict(type='RPNHead', in_channels=8, feat_channels=8,
                      anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0],
                                            strides=[4, 8, 16, 32]),
                      bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0] * 4, target_stds=[1.0] * 4),
                      loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
                      loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        roi_head=dict(type='StandardRoIHead',
                      bbox_roi_extractor=dict(type='SingleRoIExtractor',
                                              roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
                                              out_channels=8, featmap_strides=[4, 8, 16]),
                      bbox_head=dict(type='Shared2FCBBoxHead', in_channels=8, fc_out_channels=16, roi_feat_size=7,
                                     num_classes=3,
                                     bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                                                     target_stds=[0.1, 0.1, 0.2, 0.2]),
                                     reg_class_agnostic=False,
                                     loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                                     loss_bbox=dict(type='L1Loss', loss_weight=1.0))),
        train_cfg=None, test_cfg=dict(rpn=RPN_TEST, rcnn=RCNN_TEST))


def randomize(net, gen, rpn_cls_scale, fc_cls_scale):
    with torch.no_grad():
        for name, m in net.named_modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                fan_in = m.weight[0].numel()
                scale = rpn_cls_scale if name.endswith('rpn_cls') else fc_cls_scale if name.endswith('fc_cls') else 1.0
                if name.endswith('rpn_reg') or name.endswith('fc_reg'):
                    scale = 0.1
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * scale / fan_in ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1 * scale)
            elif isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)


# ------------------------------------------------------------- margin checks
def check_logits(x, what):
    """Sigmoid inputs: saturated by a margin or clear of saturation, and
    distinct non-saturated logits apart (their scores are compared)."""
    hi = x > SAT_HI + SAT_MARGIN
    lo = x < SAT_LO - SAT_MARGIN
    mid = ~hi & ~lo
    assert ((x[mid] < SAT_HI - SAT_MARGIN) & (x[mid] > SAT_LO + SAT_MARGIN)).all(), f'{what}: a logit near saturation'
    assert (torch.sigmoid(x[hi]) == 1.0).all() and (torch.sigmoid(x[lo]) == 0.0).all(), what
    m = x[mid].sort().values
    gap = m[1:] - m[:-1]   # equal logits: positions whose features are all zero (ReLU), the bias alone
    assert ((gap > LOGIT_GAP) | (gap == 0)).all(), f'{what}: two logits within {LOGIT_GAP}'
    return int(hi.sum()), int(mid.sum()), int(lo.sum())


def check_scores_apart(s, what):
    """Distinct scores a sort compares: apart, or exactly equal (saturated)."""
    u = s.unique()
    assert len(u) < 2 or ((u[1:] - u[:-1]) > SCORE_GAP).all(), f'{what}: two scores within {SCORE_GAP}'


def check_iou(boxes, groups, thr, what):
    if len(boxes) < 2:
        return
    ious = bbox_overlaps(boxes, boxes)
    same = groups[:, None] == groups[None, :]
    near = ((ious - thr).abs() < IOU_MARGIN) & same
    near.fill_diagonal_(False)
    assert not near.any(), f'{what}: an IoU within {IOU_MARGIN} of {thr}'


def check_rois(props, strides):
    """map_roi_levels and RoIAlign's adaptive grid (ceil(size / 7)) clear."""
    wh = props[:, 2:4] - props[:, 0:2]
    area = wh[:, 0] * wh[:, 1]
    lv = torch.log2(torch.sqrt(area) / 56 + 1e-6)
    ok = area > 0
    assert ((lv[ok] - lv[ok].round()).abs() > 1e-3).all(), 'a RoI scale near an FPN level boundary'
    lvl = torch.floor(lv).clamp(0, len(strides) - 1).long()
    scale = torch.tensor([1.0 / s for s in strides])[lvl]
    bins = wh * scale[:, None] / 7
    assert ((bins - bins.round()).abs() > 1e-4).all(), 'a RoI whose sampling grid is near a step'


def run_checked(model, data):
    """mmdet's simple_test in parts, checking its decisions on the way."""
    img = data['img'][0]
    metas = data['img_metas'][0].data[0]
    with torch.no_grad():
        x = model.extract_feat(img)
        cls, reg = model.rpn_head(x)
        stats = [check_logits(c[0].reshape(-1), f'rpn level {lvl}') for lvl, c in enumerate(cls)]
        props = model.rpn_head.simple_test_rpn(x, metas)
        p = props[0]
        check_iou(p[:, :4], torch.zeros(len(p)), 0.7, 'rpn kept')
        # candidates of the rpn nms: every pair within a level
        check_rois(p[:, :4], [4, 8, 16])
        rois = torch.cat([p.new_zeros(len(p), 1), p[:, :4]], 1)
        res = model.roi_head._bbox_forward(x, rois)
        scores = torch.softmax(res['cls_score'], -1)
        fg = scores[:, :-1]
        assert not ((fg - RCNN_TEST['score_thr']).abs() < 1e-4).any(), 'a score near score_thr'
        check_scores_apart(fg[fg > RCNN_TEST['score_thr']], 'rcnn candidates')
        dets, labels = model.roi_head.simple_test_bboxes(x, metas, props, model.roi_head.test_cfg, rescale=True)
        boxes = model.roi_head.bbox_head.bbox_coder.decode(rois[:, 1:], res['bbox_pred'],
                                                           max_shape=metas[0]['img_shape'])
        n = len(p)
        cand = boxes.view(n, -1, 4)
        lab = torch.arange(3).view(1, -1).expand(n, 3)
        v = fg > RCNN_TEST['score_thr']
        check_iou(cand[v], lab[v], 0.5, 'rcnn candidates')
    sat = int((fg == 1.0).sum())
    print(f'  rpn logits (saturated at 1, between, at 0) per level {stats}; {len(p)} proposals, '
          f'{int(v.sum())} rcnn candidates ({sat} at 1.0), {len(dets[0])} detections')
    assert len(dets[0]) >= 5 and sat >= 5, 'too few detections or saturated scores'
    return x, props[0], dets[0], labels[0], metas


def check_rpn_levels(model, x, metas):
    """The rpn nms runs over each level's nms_pre winners: IoUs of every pair
    of a level clear of 0.7 (suppression may depend on any of them)."""
    with torch.no_grad():
        cls, reg = model.rpn_head(x)
        anchors = model.rpn_head.prior_generator.grid_priors([c.shape[-2:] for c in cls], device='cpu')
        for lvl, (c, r, a) in enumerate(zip(cls, reg, anchors)):
            s = c[0].permute(1, 2, 0).reshape(-1).sigmoid()
            d = r[0].permute(1, 2, 0).reshape(-1, 4)
            if len(s) > RPN_TEST['nms_pre']:
                _, idx = s.sort(descending=True)
                idx = idx[:RPN_TEST['nms_pre']]
                s, d, a = s[idx], d[idx], a[idx]
            b = model.rpn_head.bbox_coder.decode(a, d, max_shape=metas[0]['img_shape'])
            check_iou(b, torch.zeros(len(b)), 0.7, f'rpn level {lvl}')


def detector_case(datas):
    for seed in range(60):
        gen = torch.Generator().manual_seed(100 + seed)
        model = build_detector(detector_cfg())
        randomize(model, gen, rpn_cls_scale=4000.0, fc_cls_scale=300.0)
        model.eval()
        try:
            outs = []
            for i, data in enumerate(datas):
                print(f' seed {seed} image {i}')
                x, p, d, lab, metas = run_checked(model, data)
                check_rpn_levels(model, x, metas)
                outs.append((p, d, lab, data))
        except AssertionError as e:
            print(f'detector seed {seed}: {e}')
            continue
        return seed, model, outs
    raise SystemExit('no detector seed without a near decision')


def main():
    save('two_stage_parity_sort', sort_case())
    paths = make_images()
    datas = load(paths)
    seed, model, outs = detector_case(datas)
    t = {}
    for i, (p, d, lab, data) in enumerate(outs):
        meta = data['img_metas'][0].data[0][0]
        t[f'img{i}'] = data['img'][0][0]
        t[f'img{i}.img_shape'] = np.array(meta['img_shape'][:2], dtype=np.int64)
        t[f'img{i}.scale_factor'] = meta['scale_factor']
        t[f'props{i}'] = p
        t[f'det{i}.bboxes'] = d
        t[f'det{i}.labels'] = lab
        # the whole detector agrees with the parts (bbox2result groups by class)
        with torch.no_grad():
            res = model.simple_test(data['img'][0], data['img_metas'][0].data[0], rescale=True)[0]
        for c in range(3):
            ref = d[lab == c].numpy()
            assert np.array_equal(res[c], ref), 'simple_test differs from its parts'
        ties = int((p[:, 4] == 1.0).sum())
        print(f'image {i}: {meta["ori_shape"]} -> {meta["img_shape"]}, {len(p)} proposals ({ties} at 1.0), '
              f'{len(d)} detections, labels {lab.tolist()}')
    save('two_stage_parity_rcnn', t, metadata={'seed': seed})
    meta = dict(mmdet_version='2.28.2', CLASSES=('a', 'b', 'c'))
    torch.save({'meta': meta, 'state_dict': model.state_dict()}, os.path.join(FIXTURES, 'two_stage_parity_rcnn.pth'))
    for name in ('two_stage_parity_sort.safetensors', 'two_stage_parity_rcnn.safetensors',
                 'two_stage_parity_rcnn.pth', 'two_stage_parity/img0.png', 'two_stage_parity/img1.png'):
        print(name, os.path.getsize(os.path.join(FIXTURES, name)), 'bytes')


if __name__ == '__main__':
    main()
