#!/usr/bin/env python3
"""mmdet 2.28's BitmapMasks and PolygonMasks (mmdet/core/mask/structures.py)
and LoadAnnotations(with_mask=True) on small random cases, for
tests/unit/test_masks.c.

    /usr/bin/python3 tests/golden/mask_ops_golden.py   (needs mmdet 2.28, mmcv-full 1.7, pycocotools)

Writes tests/fixtures/mask_ops.safetensors:

  bm_src        u8 [n, h, w]      bitmap masks
  bm_rescale    u8                BitmapMasks.rescale(scale)     scale in meta
  bm_resize     u8                BitmapMasks.resize(out_shape)  out_shape in meta
  bm_flip_<d>   u8                BitmapMasks.flip(d), d horizontal / vertical / diagonal
  bm_pad        u8                BitmapMasks.pad(pad_shape, pad_val=0)
  bm_crop       u8                BitmapMasks.crop(crop_box)
  bm_areas      i64 [n]
  bm_bboxes     f32 [n, 4]        get_bboxes()
  cr_boxes      f32 [P, 4]        proposals; cr_inds i64 [P]
  bm_cr         u8 [P, 28, 28]    BitmapMasks.crop_and_resize (RoIAlign, aligned)
  pm_xy         f32, pm_len i64, pm_obj i64   polygons (quarter pixels: exact in f32)
  pm_bitmap     u8 [n, h, w]      PolygonMasks.to_ndarray()
  pm_<op>_bitmap u8               the polygons after rescale / resize / flip / crop, rasterised
  pm_cr         u8 [P, 28, 28]    PolygonMasks.crop_and_resize, rasterised
  pm_areas      f32 [n]           areas (shoelace; exact for quarter pixels)
  pm_bboxes     f32 [n, 4]
  la_bitmap     u8 [k, H, W]      LoadAnnotations(with_mask=True) on a COCO-like ann_info
                                  with polygons, an uncompressed and a compressed RLE
                                  (each segmentation's JSON in meta la_ann<i>, H, W in la_hw)
  la_poly_len   i64               LoadAnnotations(poly2mask=False): kept polygon lengths
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402

from pycocotools import mask as mu  # noqa: E402
from mmdet.core.mask.structures import BitmapMasks, PolygonMasks  # noqa: E402
from mmdet.datasets.pipelines import LoadAnnotations  # noqa: E402


def polys(rng, n, h, w):
    out = []
    for _ in range(n):
        obj = []
        for _ in range(int(rng.integers(1, 3))):
            k = int(rng.integers(3, 9))
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            r = rng.uniform(2, min(h, w) / 2, k)
            p = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1).reshape(-1)
            obj.append(np.round(p * 4) / 4)
        out.append(obj)
    return out


def main():
    rng = np.random.default_rng(4)
    t = {}
    h, w, n = 29, 41, 4
    pm = PolygonMasks(polys(rng, n, h, w), h, w)
    bm = BitmapMasks(pm.to_ndarray().astype(np.uint8), h, w)
    scale, out_shape, pad_shape = (62, 45), (23, 53), (32, 48)
    crop_box = np.array([7, 5, 33, 24])
    t["bm_src"] = bm.masks
    t["bm_rescale"] = bm.rescale(scale).masks
    t["bm_resize"] = bm.resize(out_shape).masks
    for d in ("horizontal", "vertical", "diagonal"):
        t["bm_flip_" + d] = bm.flip(d).masks
    t["bm_pad"] = bm.pad(pad_shape, pad_val=0).masks
    t["bm_crop"] = bm.crop(crop_box).masks
    t["bm_areas"] = bm.areas.astype(np.int64)
    t["bm_bboxes"] = bm.get_bboxes()
    P = 9
    x1 = rng.uniform(-4, w - 4, P)
    y1 = rng.uniform(-4, h - 4, P)
    boxes = np.stack([x1, y1, x1 + rng.uniform(1, 30, P), y1 + rng.uniform(1, 30, P)], 1).astype(np.float32)
    boxes[0] = [3.5, 2.25, 3.75, 2.5]   # thinner than a pixel
    inds = rng.integers(0, n, P).astype(np.int64)
    t["cr_boxes"] = boxes
    t["cr_inds"] = inds
    t["bm_cr"] = bm.crop_and_resize(boxes, (28, 28), inds, device="cpu").masks.astype(np.uint8)
    # polygons
    xy, lens, obj = [], [], []
    for k, o in enumerate(pm.masks):
        for p in o:
            xy += list(p)
            lens.append(len(p))
            obj.append(k)
    t["pm_xy"] = np.array(xy, np.float32)
    assert np.all(t["pm_xy"].astype(np.float64) == np.array(xy)), "quarter pixels are exact in f32"
    t["pm_len"] = np.array(lens, np.int64)
    t["pm_obj"] = np.array(obj, np.int64)
    t["pm_bitmap"] = pm.to_ndarray().astype(np.uint8)
    t["pm_rescale_bitmap"] = pm.rescale(scale).to_ndarray().astype(np.uint8)
    t["pm_resize_bitmap"] = pm.resize(out_shape).to_ndarray().astype(np.uint8)
    for d in ("horizontal", "vertical", "diagonal"):
        t["pm_flip_%s_bitmap" % d] = pm.flip(d).to_ndarray().astype(np.uint8)
    t["pm_crop_bitmap"] = pm.crop(crop_box).to_ndarray().astype(np.uint8)
    t["pm_cr"] = pm.crop_and_resize(boxes, (28, 28), inds).to_ndarray().astype(np.uint8)
    t["pm_areas"] = np.array(pm.areas, np.float32)
    t["pm_bboxes"] = pm.get_bboxes()
    # LoadAnnotations
    H, W = 31, 45
    m1 = np.zeros((H, W), np.uint8)
    m1[3:9, 10:30] = 1
    m2 = np.zeros((H, W), np.uint8)
    m2[20:29, 2:7] = 1
    m2[25, 40] = 1
    r2 = mu.encode(np.asfortranarray(m2))
    flat = m1.flatten(order="F")
    counts, p, c = [], 0, 0
    for v in flat:
        if v != p:
            counts.append(c)
            c, p = 0, v
        c += 1
    counts.append(c)
    anns = [[[1.5, 2.0, 20.25, 4.0, 12.0, 18.5], [30.0, 20.0, 40.0, 21.0, 35.0, 30.0, 31.0, 29.0], [1.0, 2.0, 3.0, 4.0]],
            {"size": [H, W], "counts": counts},
            {"size": [H, W], "counts": r2["counts"].decode()}]
    res = {"img_info": {"height": H, "width": W}, "ann_info": {"masks": anns}, "mask_fields": []}
    out = LoadAnnotations(with_bbox=False, with_label=False, with_mask=True)._load_masks(dict(res, mask_fields=[]))
    t["la_bitmap"] = out["gt_masks"].masks.astype(np.uint8)
    out = LoadAnnotations(with_bbox=False, with_label=False, with_mask=True, poly2mask=False)._load_masks(
        dict(res, ann_info={"masks": anns[:1]}, mask_fields=[]))
    t["la_poly_len"] = np.array([len(p) for p in out["gt_masks"].masks[0]], np.int64)
    meta = {"scale": json.dumps(scale), "out_shape": json.dumps(out_shape), "pad_shape": json.dumps(pad_shape),
            "crop_box": json.dumps(crop_box.tolist()), "la_hw": json.dumps([H, W])}
    for i, a in enumerate(anns):
        meta["la_ann%d" % i] = json.dumps(a)
    save("mask_ops", t, meta)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
