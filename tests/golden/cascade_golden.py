"""Golden fixtures for Cascade R-CNN from mmdet 2.28.2's own code path
(mmdet + mmcv-full 1.7.2 installed), for tests/unit/test_cascade_golden.c.

1. cascade_roi_head.safetensors: a CascadeRoIHead built by
   mmdet.models.builder.build_head from a config dict (3 stages,
   stage_loss_weights [1, 0.5, 0.25], per-stage target_stds; stage 1
   regresses per class, stages 0 and 2 class-agnostic, to exercise both
   ways of regress_by_class), on two images' random two-level features.
   - forward_train(x, img_metas, proposals, gt_bboxes, gt_labels): the
     named losses s0.loss_cls, s0.acc, ... (stage losses weighted). The
     RandomSampler's num (512) is above the RoIs each stage sees, so it
     keeps every positive and negative and the sampling is deterministic.
     Stages 1 and 2 train on the boxes refine_bboxes regressed from the
     stage before (labels from the targets, background replaced by the
     argmax of the object classes, gts the sampler added dropped).
   - simple_test(x, proposals, img_metas, rescale=True): per image and
     class the detections (mmdet's bbox2result grouping), after the
     stages' cls scores are averaged and the rois refined by argmax class.
   - aug_test of image 0 with two variants (its features; other features
     as a horizontal flip), proposals in the original image's pixels.
   Weights under the head's state dict names (bbox_head.N.*).
2. cascade_rcnn_tiny.pth: torch.save of {"meta", "state_dict"} of a tiny
   CascadeRCNN built by build_detector (ResNet-18 at base_channels 4 with
   3 stages, FPN of 8 channels, RPNHead, the same cascade head on 3
   levels), random weights and BN statistics; cascade_rcnn_tiny.safetensors
   its simple_test(img, img_metas, rescale=True) detections on the batch of
   detector_batch.safetensors (tests/golden/detector_golden.py).

No decision may sit on a boundary, so float32 rounding in another order
cannot change the outcome: assignments (IoUs against the stage's
thresholds), the argmax classes of refinement, scores against score_thr
and NMS IoUs against its threshold are checked to be clear by margins.

    /usr/bin/python3 tests/golden/cascade_golden.py
"""
import os
import sys

import numpy as np
import torch
from mmcv import ConfigDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FIXTURES, save  # noqa: E402

from mmdet.core import bbox_overlaps  # noqa: E402
from mmdet.models.builder import build_detector, build_head  # noqa: E402

torch.set_num_threads(1)
NC = 3
STDS = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
IOUS = [0.5, 0.6, 0.7]


def bbox_head_cfg(stage, in_channels, fc):
    return dict(type='Shared2FCBBoxHead', in_channels=in_channels, fc_out_channels=fc, roi_feat_size=7,
                num_classes=NC,
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=STDS[stage]),
                reg_class_agnostic=stage != 1,
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))


def rcnn_train_cfg():
    return [dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=t, neg_iou_thr=t, min_pos_iou=t,
                               match_low_quality=False, ignore_iof_thr=-1),
                 sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                              add_gt_as_proposals=True),
                 pos_weight=-1, debug=False) for t in IOUS]


RCNN_TEST = dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)


def roi_head_cfg(in_channels, fc, strides):
    return dict(type='CascadeRoIHead', num_stages=3, stage_loss_weights=[1, 0.5, 0.25],
                bbox_roi_extractor=dict(type='SingleRoIExtractor',
                                        roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
                                        out_channels=in_channels, featmap_strides=strides),
                bbox_head=[bbox_head_cfg(s, in_channels, fc) for s in range(3)])


def randomize(net, gen, scale=1.0):
    """Linear/conv weights at 1/sqrt(fan_in) (times scale), biases 0.1,
    BN affine and running statistics off their identity values."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * scale / fan_in ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)


# ----------------------------------------------------------- margin checks
def check_assign(head, proposals, gt_bboxes):
    """Every IoU of a proposal (and of each stage's refined boxes, checked
    in the wrapped refine below) away from the stage's threshold."""
    for props, gt in zip(proposals, gt_bboxes):
        ious = bbox_overlaps(props[:, :4], gt)
        for t in IOUS:
            assert ((ious - t).abs() > 1e-3).all(), 'a proposal IoU within 1e-3 of a threshold'


def wrap_checks(head):
    """Margin checks inside mmdet's own calls: every stage's argmax classes
    (refinement picks them), the refined boxes' IoUs against the next
    stage's threshold."""
    orig_forward = head._bbox_forward

    def forward(stage, x, rois, _o=orig_forward):
        check_grid(head, rois.detach(), f'stage {stage}')
        r = _o(stage, x, rois)
        check_argmax(r['cls_score'].detach(), f'stage {stage}')
        return r
    head._bbox_forward = forward
    for s, bh in enumerate(head.bbox_head):
        def refine(rois, labels, bbox_preds, pos_is_gts, img_metas, _o=bh.refine_bboxes, _s=s):
            out = _o(rois, labels, bbox_preds, pos_is_gts, img_metas)
            for b, g in zip(out, head.gts):
                ious = bbox_overlaps(b, g)
                assert ((ious - IOUS[_s + 1]).abs() > 1e-3).all(), f'stage {_s + 1}: a refined IoU near its threshold'
            return out
        bh.refine_bboxes = refine


def check_grid(head, rois, what):
    """Each RoI's FPN level (map_roi_levels) and RoIAlign's adaptive
    sampling grid (ceil of its size on that level / 7) clear of their
    boundaries, so boxes a float rounding apart pool the same points."""
    ext = head.bbox_roi_extractor[0]
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    lv = torch.log2(scale / ext.finest_scale + 1e-6)
    near = ((lv - lv.round()).abs() < 1e-4) & (lv > -0.5)   # floor(lv) >= 0 flips there
    assert not near.any() or len(ext.featmap_strides) == 1, f'{what}: a RoI on a level boundary'
    lvl = lv.floor().clamp(0, len(ext.featmap_strides) - 1)
    stride = torch.tensor(ext.featmap_strides, dtype=torch.float32)[lvl.long()]
    for side in (rois[:, 3] - rois[:, 1], rois[:, 4] - rois[:, 2]):
        g = side / stride / 7
        assert ((g - g.round()).abs() > 1e-4).all(), f'{what}: a RoI on a sampling-grid boundary'


def check_argmax(scores, what):
    """The best class clear of the second (refinement's argmax over the
    object classes, the accuracy's over all)."""
    for cols in (scores[:, :-1], scores):   # refinement's classes; acc's top-1
        top = cols.topk(2, dim=1).values
        assert ((top[:, 0] - top[:, 1]) > 1e-4).all(), f'{what}: an argmax tie'


def check_dets(head, x, rois_list, metas):
    """Re-runs mmdet's cascade test path on its own parts to check the final
    scores against score_thr and the NMS IoUs against its threshold."""
    from mmdet.core import bbox2roi
    rois = bbox2roi(rois_list)
    ms = []
    for i in range(head.num_stages):
        check_grid(head, rois, f'test stage {i}')
        r = head._bbox_forward(i, x, rois)
        ms.append(r['cls_score'])
        if i < head.num_stages - 1:
            check_argmax(r['cls_score'], f'stage {i}')
            parts = []
            for j in range(len(rois_list)):
                sel = rois[:, 0] == j
                parts.append(head.bbox_head[i].regress_by_class(rois[sel], r['cls_score'][sel][:, :-1].argmax(1),
                                                                r['bbox_pred'][sel], metas[j]))
            rois = torch.cat(parts)
    cls = sum(ms) / len(ms)
    scores = torch.softmax(cls, -1)[:, :-1]
    assert ((scores - RCNN_TEST['score_thr']).abs() > 1e-3).all(), 'a score within 1e-3 of score_thr'
    for j in range(len(rois_list)):
        sel = rois[:, 0] == j
        boxes = head.bbox_head[-1].bbox_coder.decode(rois[sel][:, 1:], r['bbox_pred'][sel],
                                                     max_shape=metas[j]['img_shape'])
        keep = scores[sel] > RCNN_TEST['score_thr']
        for c in range(NC):
            b = boxes[keep[:, c]]
            if len(b) > 1:
                ious = bbox_overlaps(b, b)
                off = ~torch.eye(len(b), dtype=torch.bool)
                assert ((ious[off] - 0.5).abs() > 1e-3).all(), 'an NMS IoU within 1e-3 of 0.5'
                s = scores[sel][keep[:, c], c].sort().values
                assert (s[1:] - s[:-1] > 1e-5).all(), 'tied scores'


# ------------------------------------------------------------ the RoI head
def jitter(box, n, gen, scale):
    w, h = box[2] - box[0], box[3] - box[1]
    d = (torch.rand(n, 4, generator=gen) - 0.5) * scale * torch.stack([w, h, w, h])
    return box[None] + d


def make_head_case(seed):
    gen = torch.Generator().manual_seed(seed)
    head = build_head(ConfigDict(roi_head_cfg(4, 16, [4, 8]), train_cfg=rcnn_train_cfg(), test_cfg=RCNN_TEST))
    head.init_weights()
    randomize(head, gen, scale=2.0)
    metas = [dict(img_shape=(60, 64, 3), ori_shape=(120, 128, 3), pad_shape=(64, 64, 3),
                  scale_factor=np.array([0.5, 0.5, 0.5, 0.5], dtype=np.float32), flip=False),
             dict(img_shape=(64, 50, 3), ori_shape=(80, 62, 3), pad_shape=(64, 64, 3),
                  scale_factor=np.array([0.8, 0.8, 0.8, 0.8], dtype=np.float32), flip=False)]
    x = [torch.randn(2, 4, 16, 16, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)]
    gts = [torch.tensor([[6., 8., 30., 40.], [34., 20., 60., 52.]]),
           torch.tensor([[10., 4., 44., 30.], [4., 34., 26., 60.], [28., 36., 48., 58.]])]
    labels = [torch.tensor([0, 2]), torch.tensor([1, 0, 2])]
    props = []
    for i, g in enumerate(gts):
        near = torch.cat([jitter(b, 6, gen, 0.6) for b in g])
        xy = torch.rand(4, 2, generator=gen) * 40
        wh = torch.rand(4, 2, generator=gen) * 20 + 6
        far = torch.cat([xy, xy + wh], 1)
        b = torch.cat([near, far])
        h, w = metas[i]['img_shape'][:2]
        b[:, 0::2] = b[:, 0::2].clamp(0, w)
        b[:, 1::2] = b[:, 1::2].clamp(0, h)
        b = b[(b[:, 2] - b[:, 0] > 2) & (b[:, 3] - b[:, 1] > 2)]
        score = torch.rand(len(b), 1, generator=gen)
        props.append(torch.cat([b, score], 1))
    return head, metas, x, gts, labels, props


def run_head(head, metas, x, gts, labels, props):
    check_assign(head, props, gts)
    head.gts = gts
    head.train()
    losses = head.forward_train(x, metas, [p.clone() for p in props], gts, labels)
    head.eval()
    with torch.no_grad():
        check_dets(head, x, [p[:, :4] for p in props], metas)
        res = head.simple_test(x, [p.clone() for p in props], metas, rescale=True)
    return losses, res


def aug_case(head, x, props, metas):
    """CascadeRoIHead.aug_test (one image, as mmdet runs it): variant 0 the
    image's features and meta, variant 1 other features of the same size
    as a horizontal flip; the proposals in the original image's pixels."""
    gen = torch.Generator().manual_seed(77)
    f0 = [lvl[0:1] for lvl in x]
    f1 = [torch.randn(lvl[0:1].shape, generator=gen) for lvl in x]
    m0 = dict(metas[0], flip=False, flip_direction=None)
    m1 = dict(metas[0], flip=True, flip_direction='horizontal')
    prop = props[0].clone()
    prop[:, :4] /= torch.from_numpy(metas[0]['scale_factor'])
    head.eval()
    with torch.no_grad():
        for f, m in ((f0, m0), (f1, m1)):
            from mmdet.core import bbox_mapping
            check_dets(head, f, [bbox_mapping(prop[:, :4], m['img_shape'], m['scale_factor'], m['flip'],
                                              m['flip_direction'])], [m])
        res = head.aug_test([f0, f1], [prop], [[m0], [m1]], rescale=True)
    return f1, prop, res


def head_case():
    for seed in range(40):
        case = make_head_case(seed)
        wrap_checks(case[0])
        try:
            losses, res = run_head(*case)
        except AssertionError as e:
            print(f'head seed {seed}: {e}')
            continue
        ndet = sum(len(r) for im in res for r in im)
        if ndet < 4:
            print(f'head seed {seed}: only {ndet} detections')
            continue
        try:
            aug = aug_case(case[0], case[2], case[5], case[1])
        except AssertionError as e:
            print(f'head seed {seed}, aug_test: {e}')
            continue
        print(f'head seed {seed}: {ndet} detections, {sum(len(r) for r in aug[2][0])} with test-time augmentation')
        return seed, case, losses, res, aug
    raise SystemExit('no seed without a near decision')


# ---------------------------------------------------------------- detector
def detector_cfg():
    return ConfigDict(
        type='CascadeRCNN',
        backbone=dict(type='ResNet', depth=18, base_channels=4, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1),
                      out_indices=(0, 1, 2), frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
                      norm_eval=True, style='pytorch'),
        neck=dict(type='FPN', in_channels=[4, 8, 16], out_channels=8, num_outs=4),
        rpn_head=dict(type='RPNHead', in_channels=8, feat_channels=8,
                      anchor_generator=dict(type='AnchorGenerator', scales=[2], ratios=[0.5, 1.0, 2.0],
                                            strides=[4, 8, 16, 32]),
                      bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                                      target_stds=[1.0, 1.0, 1.0, 1.0]),
                      loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
                      loss_bbox=dict(type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)),
        roi_head=roi_head_cfg(8, 8, [4, 8, 16]),
        train_cfg=None,
        test_cfg=dict(rpn=dict(nms_pre=50, max_per_img=30, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
                      rcnn=RCNN_TEST))


def detector_case(batch):
    img = batch['img']
    metas = batch['metas']
    for seed in range(40):
        gen = torch.Generator().manual_seed(1000 + seed)
        model = build_detector(detector_cfg())
        model.init_weights()
        randomize(model, gen, scale=1.0)
        model.eval()
        try:
            with torch.no_grad():
                feats = model.extract_feat(img)
                props = model.rpn_head.simple_test_rpn(feats, metas)
                for p in props:   # the proposals' order decides NMS and the top-k cut
                    sc = p[:, 4].sort().values
                    assert (sc[1:] - sc[:-1] > 2e-5).all(), 'tied RPN scores'
                check_dets(model.roi_head, feats, [p[:, :4] for p in props], metas)
                res = model.simple_test(img, metas, rescale=True)
        except AssertionError as e:
            print(f'detector seed {seed}: {e}')
            continue
        ndet = sum(len(r) for im in res for r in im)
        if ndet < 4:
            print(f'detector seed {seed}: only {ndet} detections')
            continue
        print(f'detector seed {seed}: {ndet} detections')
        return model, res
    raise SystemExit('no detector seed without a near decision')


def load_batch():
    """The images and metas of detector_batch.safetensors, normalised as
    mmdet's Normalize, zero beyond img_shape."""
    import json
    import struct
    with open(os.path.join(FIXTURES, 'detector_batch.safetensors'), 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    def get(k, dt):
        h = header[k]
        a, b = h['data_offsets']
        return np.frombuffer(data[a:b], dtype=dt).reshape(h['shape'])
    u8 = torch.from_numpy(get('img_u8', np.uint8).copy())
    H, W = u8.shape[2:]
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    img = torch.zeros(2, 3, H, W)
    metas = []
    for i in range(2):
        h, w = (int(v) for v in get(f'meta{i}.img_shape', np.int64)[:2])
        sf = get(f'meta{i}.scale_factor', np.float32).copy()
        img[i, :, :h, :w] = (u8[i, :, :h, :w].float() - mean) / std
        metas.append(dict(img_shape=(h, w, 3), pad_shape=(H, W, 3),
                          ori_shape=(int(round(h / sf[1])), int(round(w / sf[0])), 3), scale_factor=sf, flip=False,
                          batch_input_shape=(H, W)))
    return dict(img=img, metas=metas)


def dets(res):
    """bbox2result's per-class arrays of each image as one [D, 5] array and
    labels [D] (classes in order, each in mmdet's order)."""
    out = {}
    for i, per_class in enumerate(res):
        b = np.concatenate(per_class, 0).astype(np.float32)
        lab = np.concatenate([np.full(len(a), c, dtype=np.int64) for c, a in enumerate(per_class)])
        out[f'det{i}.bboxes'] = b.reshape(-1, 5)
        out[f'det{i}.labels'] = lab
    return out


def main():
    seed, (head, metas, x, gts, labels, props), losses, res, (f1, prop, aug) = head_case()
    t = {}
    for k, v in head.state_dict().items():
        t['weights.' + k] = v
    for i in range(2):
        t[f'img{i}.img_shape'] = np.array(metas[i]['img_shape'][:2], dtype=np.int64)
        t[f'img{i}.scale_factor'] = metas[i]['scale_factor']
        t[f'img{i}.gt_bboxes'] = gts[i]
        t[f'img{i}.gt_labels'] = labels[i]
        t[f'img{i}.proposals'] = props[i]
    for lvl, f in enumerate(x):
        t[f'feat{lvl}'] = f
    for k, v in losses.items():
        t['loss.' + k] = v.detach().reshape(())
    t.update(dets(res))
    for lvl, f in enumerate(f1):
        t[f'aug.feat{lvl}'] = f
    t['aug.proposals'] = prop
    t.update({'aug.' + k: v for k, v in dets(aug).items()})
    save('cascade_roi_head', t, metadata={'seed': seed, 'losses': ','.join(losses.keys())})

    batch = load_batch()
    model, res = detector_case(batch)
    meta = dict(mmdet_version='2.28.2', CLASSES=('a', 'b', 'c'))
    torch.save({'meta': meta, 'state_dict': model.state_dict()}, os.path.join(FIXTURES, 'cascade_rcnn_tiny.pth'))
    save('cascade_rcnn_tiny', dets(res))
    for name in ('cascade_roi_head.safetensors', 'cascade_rcnn_tiny.safetensors', 'cascade_rcnn_tiny.pth'):
        print(name, os.path.getsize(os.path.join(FIXTURES, name)), 'bytes')


if __name__ == '__main__':
    main()
