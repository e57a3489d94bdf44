"""Golden fixtures for FCOS and ATSS from the real mmdet 2.28.2 code path
(mmcv-full 1.7.2): the classes are built by mmdet's registries from config
dicts, given deterministic weights, and their own forward, loss, get_bboxes
and assign are called. Nothing here re-implements mmdet.

    /usr/bin/python3 tests/golden/dense_mmdet_golden.py

writes into tests/fixtures/:
  fcos_mmdet_plain, fcos_mmdet_tricks   FCOSHead (mmdet's defaults; center
      sampling + norm_on_bbox + centerness_on_reg + conv_bias + GIoULoss):
      weights (w.*), features, train-mode forward, loss (loss_cls,
      loss_bbox, loss_centerness), gradients of the features and of some
      weights, eval-mode forward and get_bboxes(rescale=True)
  atss_mmdet_head     ATSSHead with two anchors per location: the same
  atss_mmdet_assign   ATSSAssigner.assign on anchors of three levels:
      plain, with an ignored gt (ignore_iof_thr), without gts
  fcos_tiny_mmdet.pth, atss_tiny_mmdet.pth   torch.save(model.state_dict())
      of tiny FCOS and ATSS detectors (mmdet's ResNet, FPN and head), and
  fcos_tiny_mmdet, atss_tiny_mmdet   their detections (simple_test with
      rescale, before bbox2result) on the batch of detector_batch.safetensors

The inputs are chosen so that no decision sits on a margin: every top-k
distance cut of the assigner is 1e-3 apart, every IoU 1e-5 away from its
threshold, and every final score 1e-4 away from score_thr (asserted below).
"""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FIXTURES, save  # noqa: E402

import mmcv  # noqa: E402
from mmdet.core.bbox.builder import build_assigner  # noqa: E402
from mmdet.models import build_detector, build_head  # noqa: E402

C, IN, FEAT, STACKED = 3, 4, 8, 2
SIZES = [(8, 8), (4, 4)]
METAS = [dict(ori_shape=(100, 90, 3), img_shape=(50, 45, 3), pad_shape=(56, 48, 3),
              scale_factor=np.array([0.5, 0.5, 0.5, 0.5], dtype=np.float32), flip=False),
         dict(ori_shape=(85, 75, 3), img_shape=(64, 60, 3), pad_shape=(64, 64, 3),
              scale_factor=np.array([0.8, 0.75, 0.8, 0.75], dtype=np.float32), flip=False)]
GT = [torch.tensor([[4.3, 6.1, 30.2, 40.7], [20.5, 2.2, 44.9, 20.3], [1.0, 30.5, 12.4, 48.8]]),
      torch.tensor([[10.2, 10.7, 60.1, 50.3], [30.6, 40.1, 46.2, 60.9]])]
GT_LABELS = [torch.tensor([0, 2, 1]), torch.tensor([1, 1])]
TEST_CFG = dict(nms_pre=30, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=15)


def init_weights(net, g, gains, biases):
    """Weights N(0, gain^2 / fan_in), biases N(0, 0.1^2) (+ an offset by
    name), norm weights 1 + N(0, 0.1^2), Scales 1 + N(0, 0.2^2)."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if 'scales' in name:
                p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.2)
            elif p.dim() > 1:
                gain = next((v for k, v in gains.items() if name.startswith(k)), 1.0)
                p.copy_(torch.randn(p.shape, generator=g) * gain / np.sqrt(p[0].numel()))
            elif ('gn' in name or 'bn' in name) and name.endswith('weight'):
                p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.1)
            else:
                off = next((v for k, v in biases.items() if name.startswith(k)), 0.0)
                p.copy_(off + torch.randn(p.shape, generator=g) * 0.1)


def check_scores(dets, thr, what):
    for i, (b, _) in enumerate(dets):
        near = (b[:, 4] - thr).abs() < 1e-4
        assert not near.any(), f'{what} image {i}: a score within 1e-4 of score_thr'


def check_topk_cut(levels, gts, topk, what):
    """ATSS's candidates: on every level the topk-th and the next nearest
    anchor centres to each gt centre 1e-3 apart (torch.topk breaks ties in
    no documented order)."""
    for i, gt in enumerate(gts):
        gcx, gcy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
        for lv in levels:
            if lv.shape[0] <= topk:
                continue
            cx, cy = (lv[:, 0] + lv[:, 2]) / 2, (lv[:, 1] + lv[:, 3]) / 2
            d = ((cx[:, None] - gcx[None]) ** 2 + (cy[:, None] - gcy[None]) ** 2).sqrt()
            s = d.sort(0)[0]
            assert ((s[topk] - s[topk - 1]).abs() > 1e-3).all(), f'{what}: image {i}: a top-k distance tie'


def head_case(name, cfg, gains, biases, seed, grads):
    g = torch.Generator().manual_seed(seed)
    head = build_head(cfg)
    init_weights(head, g, gains, biases)
    feats = [torch.randn(2, IN, h, w, generator=g).requires_grad_(True) for h, w in SIZES]
    out = {f'w.{k}': v.detach().clone() for k, v in head.state_dict().items()}
    for lvl, f in enumerate(feats):
        out[f'feat{lvl}'] = f.detach().clone()
    head.train()
    cls_scores, bbox_preds, centernesses = head(feats)
    if cfg['type'] == 'ATSSHead':
        levels = head.prior_generator.grid_priors([c.shape[-2:] for c in cls_scores], device='cpu')
        check_topk_cut(levels, GT, cfg['train_cfg'].assigner.topk, name)
    for lvl in range(len(feats)):
        out[f'cls{lvl}'] = cls_scores[lvl].detach().clone()
        out[f'reg{lvl}'] = bbox_preds[lvl].detach().clone()
        out[f'ctr{lvl}'] = centernesses[lvl].detach().clone()
    losses = head.loss(cls_scores, bbox_preds, centernesses, GT, GT_LABELS, METAS)
    total = 0
    for k, v in losses.items():
        v = sum(v) if isinstance(v, (list, tuple)) else v
        out[k] = v.detach().clone()
        total = total + v
    total.backward()
    for lvl, f in enumerate(feats):
        out[f'grad_feat{lvl}'] = f.grad.clone()
    params = dict(head.named_parameters())
    for k in grads:
        out[f'grad.{k}'] = params[k].grad.clone()
    head.eval()
    with torch.no_grad():
        cls_e, reg_e, ctr_e = head([f.detach() for f in feats])
        dets = head.get_bboxes(cls_e, reg_e, ctr_e, img_metas=METAS, rescale=True)
    check_scores(dets, cfg['test_cfg']['score_thr'], name)
    for lvl in range(len(feats)):
        out[f'eval_reg{lvl}'] = reg_e[lvl].clone()
    for i, (b, lab) in enumerate(dets):
        assert b.shape[0] > 1, f'{name}: image {i} has {b.shape[0]} detections'
        out[f'det{i}.bboxes'] = b
        out[f'det{i}.labels'] = lab
    save(name, out)
    print(name, {k: round(float(v), 5) for k, v in out.items() if k.startswith('loss')},
          [int(d[0].shape[0]) for d in dets])


def fcos_cases():
    base = dict(type='FCOSHead', num_classes=C, in_channels=IN, feat_channels=FEAT, stacked_convs=STACKED,
                strides=[8, 16], regress_ranges=((-1, 24), (24, 1e8)),
                norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
                train_cfg=None, test_cfg=mmcv.ConfigDict(TEST_CFG))
    head_case('fcos_mmdet_plain', base, {'conv_cls': 0.3, 'conv_reg': 0.2},
              {'conv_cls': -1.5, 'conv_reg': 2.5}, 11,
              ['conv_cls.weight', 'conv_reg.bias', 'conv_centerness.weight', 'scales.0.scale', 'cls_convs.0.gn.weight'])
    tricks = dict(base, center_sampling=True, center_sample_radius=1.5, norm_on_bbox=True, centerness_on_reg=True,
                  conv_bias=True, loss_bbox=dict(type='GIoULoss', loss_weight=1.0))
    head_case('fcos_mmdet_tricks', tricks, {'conv_cls': 0.3, 'conv_reg': 0.2},
              {'conv_cls': -1.5, 'conv_reg': 1.0}, 12,
              ['conv_cls.weight', 'conv_reg.bias', 'conv_centerness.bias', 'scales.1.scale', 'reg_convs.1.conv.bias'])


def atss_case():
    cfg = dict(type='ATSSHead', num_classes=C, in_channels=IN, feat_channels=FEAT, stacked_convs=STACKED,
               norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
               anchor_generator=dict(type='AnchorGenerator', ratios=[1.0, 2.0], octave_base_scale=3,
                                     scales_per_octave=1, strides=[8, 16]),
               bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                               target_stds=[0.1, 0.1, 0.2, 0.2]),
               loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
               loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
               loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
               # topk even: the two anchors of a location share their centre
               train_cfg=mmcv.ConfigDict(assigner=dict(type='ATSSAssigner', topk=8), allowed_border=-1,
                                         pos_weight=-1, debug=False),
               test_cfg=mmcv.ConfigDict(dict(TEST_CFG, nms=dict(type='nms', iou_threshold=0.6))))
    head_case('atss_mmdet_head', cfg, {'atss_cls': 0.3, 'atss_reg': 0.3}, {'atss_cls': -1.5}, 21,
              ['atss_cls.weight', 'atss_reg.bias', 'atss_centerness.weight', 'scales.0.scale', 'reg_convs.0.gn.bias'])


def assign_case():
    from mmdet.core.anchor import AnchorGenerator
    gen = AnchorGenerator(strides=[4, 8, 16], ratios=[1.0], octave_base_scale=4, scales_per_octave=1)
    sizes = [(8, 8), (4, 4), (2, 2)]
    levels = gen.grid_priors(sizes, device='cpu')
    anchors = torch.cat(levels)
    counts = [lv.shape[0] for lv in levels]
    gt = torch.tensor([[3.3, 5.1, 21.9, 17.9], [9.6, 8.2, 24.9, 30.1], [17.4, 2.6, 31.2, 13.7],
                       [1.2, 20.3, 8.8, 29.4]])
    labels = torch.tensor([2, 0, 1, 1])
    ignore = torch.tensor([[0.0, 0.0, 10.0, 8.0]])
    topk = 5
    check_topk_cut(levels, [gt], topk, 'assign')
    out = {'anchors': anchors, 'counts': torch.tensor(counts), 'gt': gt, 'gt_labels': labels, 'gt_ignore': ignore}
    for tag, a_cfg, ign, g, lab in (
            ('plain', dict(type='ATSSAssigner', topk=topk), None, gt, labels),
            ('ignore', dict(type='ATSSAssigner', topk=topk, ignore_iof_thr=0.3), ignore, gt, labels),
            ('nogt', dict(type='ATSSAssigner', topk=topk), None, gt[:0], labels[:0])):
        r = build_assigner(a_cfg).assign(anchors, counts, g, ign, lab)
        out[f'{tag}.gt_inds'] = r.gt_inds
        out[f'{tag}.max_overlaps'] = r.max_overlaps
        out[f'{tag}.labels'] = r.labels
        print('assign', tag, int((r.gt_inds > 0).sum()), 'positives', int((r.gt_inds < 0).sum()), 'ignored')
    save('atss_mmdet_assign', out)


# ------------------------------------------------------------- tiny detectors
def read_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == '__metadata__':
            continue
        dt = {'F32': np.float32, 'I64': np.int64, 'U8': np.uint8}[v['dtype']]
        a, b = v['data_offsets']
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype=dt).reshape(v['shape']).copy())
    return out


BACKBONE = dict(type='ResNet', depth=18, base_channels=4, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1),
                out_indices=(0, 1, 2), frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
                norm_eval=True, style='pytorch')
NECK = dict(type='FPN', in_channels=[4, 8, 16], out_channels=8, start_level=1, add_extra_convs='on_output',
            num_outs=3)
TINY_TEST = dict(nms_pre=40, min_bbox_size=0, score_thr=0.3, nms=dict(type='nms', iou_threshold=0.5), max_per_img=15)


def randomize_detector(model, g, head_gains, head_biases):
    with torch.no_grad():
        for m in model.backbone.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_out) ** 0.5)
            elif isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    init_weights(model.neck, g, {}, {})
    init_weights(model.bbox_head, g, head_gains, head_biases)


def detector_case(name, head, gains, biases, seed):
    batch = read_safetensors(os.path.join(FIXTURES, 'detector_batch.safetensors'))
    u8 = batch['img_u8'].float()
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    img = (u8 - mean) / std
    H, W = img.shape[2:]
    metas = []
    for i in range(2):
        h, w = [int(x) for x in batch[f'meta{i}.img_shape']]
        sf = batch[f'meta{i}.scale_factor'].numpy()
        img[i, :, h:, :] = 0
        img[i, :, :, w:] = 0
        metas.append(dict(img_shape=(h, w, 3), pad_shape=(H, W, 3), scale_factor=sf, flip=False,
                          ori_shape=(round(h / sf[1]), round(w / sf[0]), 3)))
    cfg = mmcv.ConfigDict(type=name.split('_')[0].upper(), backbone=BACKBONE, neck=NECK, bbox_head=head,
                          test_cfg=head.pop('test_cfg'))
    model = build_detector(cfg)
    g = torch.Generator().manual_seed(seed)
    randomize_detector(model, g, gains, biases)
    model.eval()
    with torch.no_grad():
        # SingleStageDetector.simple_test without its final bbox2result (which
        # regroups the detections by class): extract_feat, then the head's
        # simple_test, the detections best first
        res = model.bbox_head.simple_test(model.extract_feat(img), metas, rescale=True)
    out = {}
    for i, (boxes, labels) in enumerate(res):
        assert ((boxes[:, 4] - TINY_TEST['score_thr']).abs() > 1e-4).all(), f'{name}: a score near score_thr'
        assert boxes.shape[0] > 1, f'{name}: image {i}: {boxes.shape[0]} detections'
        out[f'det{i}.bboxes'] = boxes
        out[f'det{i}.labels'] = labels
    torch.save(model.state_dict(), os.path.join(FIXTURES, name + '.pth'))
    save(name, out)
    print(name, [int(out[f'det{i}.labels'].numel()) for i in range(2)])


def main():
    torch.set_num_threads(1)
    fcos_cases()
    atss_case()
    assign_case()
    detector_case('fcos_tiny_mmdet',
                  dict(type='FCOSHead', num_classes=C, in_channels=8, feat_channels=8, stacked_convs=2,
                       strides=[8, 16, 32], regress_ranges=((-1, 32), (32, 64), (64, 1e8)),
                       norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
                       test_cfg=TINY_TEST),
                  {'conv_cls': 0.3, 'conv_reg': 0.2}, {'conv_cls': -1.0, 'conv_reg': 2.5}, 31)
    detector_case('atss_tiny_mmdet',
                  dict(type='ATSSHead', num_classes=C, in_channels=8, feat_channels=8, stacked_convs=2,
                       norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
                       anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=4,
                                             scales_per_octave=1, strides=[8, 16, 32]),
                       bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                                       target_stds=[0.1, 0.1, 0.2, 0.2]),
                       test_cfg=dict(TINY_TEST, nms=dict(type='nms', iou_threshold=0.6))),
                  {'atss_cls': 0.3, 'atss_reg': 0.3}, {'atss_cls': -1.0}, 32)


if __name__ == '__main__':
    main()
