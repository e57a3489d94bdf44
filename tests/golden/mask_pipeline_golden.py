#!/usr/bin/env python3
"""mmdet 2.28's CocoDataset and training transforms with instance masks on
a small COCO file, for tests/unit/test_mask_ops.c: _parse_ann_info (crowd,
ignore, degenerate boxes, masks of the kept boxes), LoadAnnotations with
poly2mask true and false, Resize (keep_ratio and not), RandomFlip and Pad.

    /usr/bin/python3 tests/golden/mask_pipeline_golden.py   (needs mmdet 2.28, mmcv-full 1.7)

Writes tests/fixtures/mask_pipeline/ (ann.json and the images) and
tests/fixtures/mask_pipeline.safetensors: for pipeline p (0, 1) and image i
p{p}_i{i}_masks u8 [n, H, W] (polygons rasterised), _bboxes f32 [n, 4],
_labels i64 [n], _shape i64 [4] (img_shape h, w, pad_shape h, w).

RandomCrop (crop_size (30, 38), recompute_bbox) on image 0 for every crop
offset: metadata crop_<oy>_<ox> = {"bboxes", "labels", "masks": compressed
RLE strings}. Image 0 is a gradient (blue = 5 x, green = 5 y), so a test
can tell the offset its own random draw chose from the cropped pixels.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FIXTURES, save  # noqa: E402

import mmcv  # noqa: E402
from pycocotools import mask as mu  # noqa: E402
from mmdet.datasets import CocoDataset  # noqa: E402

DIR = os.path.join(FIXTURES, "mask_pipeline")

PIPELINES = [
    [dict(type="LoadImageFromFile"),
     dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
     dict(type="Resize", img_scale=(50, 40), keep_ratio=True),
     dict(type="RandomFlip", flip_ratio=1.0, direction="diagonal"),
     dict(type="Pad", size_divisor=16)],
    [dict(type="LoadImageFromFile"),
     dict(type="LoadAnnotations", with_bbox=True, with_mask=True, poly2mask=False),
     dict(type="Resize", img_scale=(30, 70), keep_ratio=False),
     dict(type="RandomFlip", flip_ratio=1.0, direction="horizontal"),
     dict(type="Pad", size=(80, 40))],
]


def main():
    os.makedirs(DIR, exist_ok=True)
    rng = np.random.default_rng(11)
    sizes = [(45, 37), (33, 52), (40, 40)]   # w, h
    images, anns = [], []
    aid = 1
    for i, (w, h) in enumerate(sizes):
        name = "%d.png" % i
        img = np.full((h, w, 3), 40 * i, np.uint8)
        if i == 0:
            img[:, :, 0] = 5 * np.arange(w)[None, :]
            img[:, :, 1] = 5 * np.arange(h)[:, None]
        mmcv.imwrite(img, os.path.join(DIR, name))
        images.append({"id": 10 + i, "file_name": name, "width": w, "height": h})
        for k in range(4):
            cx, cy = rng.uniform(5, w - 5), rng.uniform(5, h - 5)
            n = int(rng.integers(3, 8))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            r = rng.uniform(3, 14, n)
            poly = [round(float(v), 2) for xy in zip(cx + r * np.cos(ang), cy + r * np.sin(ang)) for v in xy]
            polys = [poly]
            if k == 2:
                polys.append([1.0, 1.0, 6.0, 1.0, 3.5])   # odd: dropped by process_polygons
            rle = mu.merge(mu.frPyObjects(polys[:1], h, w))
            x, y, bw, bh = [float(v) for v in mu.toBbox(rle)]
            ann = {"id": aid, "image_id": 10 + i, "category_id": 1 + (k % 2), "bbox": [x, y, bw, bh],
                   "area": float(mu.area(rle)), "iscrowd": 0, "segmentation": polys}
            if i == 1 and k == 1:   # an RLE (string) object: poly2mask=False is then refused, so image 1 only
                ann["segmentation"] = {"size": [h, w], "counts": rle["counts"].decode()}
            anns.append(ann)
            aid += 1
        # a crowd region (ignored box, no mask), an ignored and a degenerate annotation
        anns.append({"id": aid, "image_id": 10 + i, "category_id": 1, "bbox": [2, 2, 6, 5], "area": 30,
                     "iscrowd": 1, "segmentation": {"size": [h, w], "counts": [h * 2 + 2, 5, h * w - h * 2 - 7]}})
        anns.append({"id": aid + 1, "image_id": 10 + i, "category_id": 2, "bbox": [3, 3, 4, 4], "area": 16,
                     "iscrowd": 0, "ignore": 1, "segmentation": [[3, 3, 7, 3, 7, 7]]})
        anns.append({"id": aid + 2, "image_id": 10 + i, "category_id": 2, "bbox": [3, 3, 0.5, 4], "area": 2,
                     "iscrowd": 0, "segmentation": [[3, 3, 3.5, 3, 3.5, 7]]})
        aid += 3
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    with open(os.path.join(DIR, "ann.json"), "w") as f:
        json.dump(gt, f)
    t = {}
    for p, pipeline in enumerate(PIPELINES):
        ds = CocoDataset(os.path.join(DIR, "ann.json"), pipeline, img_prefix=DIR + "/", classes=("a", "b"),
                         filter_empty_gt=False)
        for i in range(len(ds)):
            if p == 1 and i == 1:
                continue
            r = ds.prepare_train_img(i)
            m = r["gt_masks"]
            t["p%d_i%d_masks" % (p, i)] = m.to_ndarray().astype(np.uint8)
            t["p%d_i%d_bboxes" % (p, i)] = r["gt_bboxes"].astype(np.float32)
            t["p%d_i%d_labels" % (p, i)] = r["gt_labels"].astype(np.int64)
            t["p%d_i%d_shape" % (p, i)] = np.array(list(r["img_shape"][:2]) + list(r["pad_shape"][:2]), np.int64)
    meta = {}
    ds = CocoDataset(os.path.join(DIR, "ann.json"),
                     [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
                      dict(type="RandomCrop", crop_size=(30, 38), allow_negative_crop=True, recompute_bbox=True)],
                     img_prefix=DIR + "/", classes=("a", "b"), filter_empty_gt=False)
    real = np.random.randint
    w, h = sizes[0]
    for oy in range(h - 30 + 1):
        for ox in range(w - 38 + 1):
            draws = iter([oy, ox])
            np.random.randint = lambda lo, hi=None, *a, **k: next(draws)
            try:
                r = ds.prepare_train_img(0)
            finally:
                np.random.randint = real
            m = r["gt_masks"].masks
            rles = [mu.encode(np.asfortranarray(m[k]))["counts"].decode() for k in range(len(m))]
            meta["crop_%d_%d" % (oy, ox)] = json.dumps({
                "bboxes": [[float(v) for v in b] for b in r["gt_bboxes"]], "labels": [int(v) for v in r["gt_labels"]],
                "masks": rles, "size": list(m.shape[1:])})
    save("mask_pipeline", t, meta)


if __name__ == "__main__":
    main()
