#!/usr/bin/env python3
"""pycocotools' mask API on small random cases, for tests/unit/test_masks.c:
RLE encode / decode / area / toBbox, the compressed string form, polygons
through frPyObjects + merge (as mmdet's poly2mask), and iou with iscrowd.

    /usr/bin/python3 tests/golden/masks_golden.py     (needs pycocotools, numpy)

Writes tests/fixtures/masks.safetensors. Variable-length data is stored
flat with offsets:

  enc{i}_mask   u8 [h, w]        a random blob mask (row-major)
  enc{i}_counts i64 [m]          pycocotools' counts (decoded from the string)
  enc{i}_str    u8 [len]         the compressed string
  enc{i}_area   i64 [1]; enc{i}_bbox f32 [4]
  poly{i}_xy    f32 [n]          all polygons' numbers (exact in f32: quarter pixels)
  poly{i}_len   i64 [k]          numbers per polygon; poly{i}_hw i64 [2]
  poly{i}_mask  u8 [h, w]        decode(merge(frPyObjects(polys, h, w)))
  iou_dt, iou_gt  u8 [n, h, w]    masks; iou_crowd u8 [3]
  iou_num, iou_den i64 [4, 3]     pycocotools' iou is exactly num / den
                                  (checked here), so it is stored exactly.
"""
import os
import sys

import numpy as np
from pycocotools import mask as mu

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402


def blob(rng, h, w, n_rect=3):
    m = np.zeros((h, w), np.uint8)
    for _ in range(n_rect):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = rng.integers(x0, w + 1), rng.integers(y0, h + 1)
        m[y0:y1, x0:x1] = 1 - m[y0:y1, x0:x1] if rng.random() < 0.3 else 1
    noise = rng.random((h, w)) < 0.03
    m[noise] = 1 - m[noise]
    return m


def counts_of(rle):
    """The uncompressed counts, via pycocotools' own decode of the string:
    re-encode the decoded mask pixel by pixel in Fortran order."""
    m = mu.decode(rle)
    flat = m.flatten(order="F")
    out, p, c = [], 0, 0
    for v in flat:
        if v != p:
            out.append(c)
            c, p = 0, v
        c += 1
    out.append(c)
    return out


def main():
    rng = np.random.default_rng(20)
    t = {}
    shapes = [(1, 1), (5, 7), (17, 13), (40, 33), (64, 90), (3, 200), (120, 4)]
    for i, (h, w) in enumerate(shapes):
        m = blob(rng, h, w, 3 if i % 2 else 6)
        if i == 0:
            m[:] = 1
        if i == 3:
            m[:] = 0
        rle = mu.encode(np.asfortranarray(m[:, :, None]))[0]
        t["enc%d_mask" % i] = m
        t["enc%d_counts" % i] = np.array(counts_of(rle), np.int64)
        t["enc%d_str" % i] = np.frombuffer(rle["counts"], np.uint8).copy()
        t["enc%d_area" % i] = np.array([mu.area(rle)], np.int64)
        t["enc%d_bbox" % i] = np.array(mu.toBbox(rle), np.float32)
    n_enc = len(shapes)

    # Polygons: COCO-like (fractional, some outside the image, concave, two
    # parts), plus a box-like first entry of 4 numbers.
    cases = []
    cases.append((30, 40, [[3.25, 4.5, 30.75, 6.0, 25.5, 27.25, 5.0, 22.75]]))
    cases.append((25, 25, [[-3.0, -2.5, 12.25, 1.0, 28.5, 14.75, 10.0, 30.0, 1.5, 12.0]]))
    cases.append((50, 37, [[2.0, 2.0, 20.0, 2.0, 20.0, 20.0, 11.0, 8.0, 2.0, 20.0],
                           [25.5, 30.25, 35.0, 31.0, 30.0, 48.75]]))
    cases.append((16, 16, [[1.5, 1.5, 14.5, 1.5, 14.5, 14.5, 1.5, 14.5]]))
    cases.append((33, 21, [[0.0, 0.0, 20.0, 0.0, 20.0, 32.0, 0.0, 32.0]]))
    for k in range(5):
        h, w = int(rng.integers(8, 70)), int(rng.integers(8, 70))
        polys = []
        for _ in range(int(rng.integers(1, 4))):
            n = int(rng.integers(3, 12))
            cx, cy = rng.uniform(-5, w + 5), rng.uniform(-5, h + 5)
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = rng.uniform(2, max(h, w) / 2, n)
            xy = []
            for a, r in zip(ang, rad):
                xy += [round((cx + r * np.cos(a)) * 4) / 4, round((cy + r * np.sin(a)) * 4) / 4]
            polys.append(xy)
        cases.append((h, w, polys))
    cases.append((20, 30, [[2.0, 3.0, 10.5, 8.25, 4.0, 12.0], [12.0, 1.0, 15.0, 5.0]]))   # a 2-point second part
    for i, (h, w, polys) in enumerate(cases):
        rles = mu.frPyObjects(polys, h, w)
        rle = mu.merge(rles)
        t["poly%d_xy" % i] = np.array([v for p in polys for v in p], np.float32)
        t["poly%d_len" % i] = np.array([len(p) for p in polys], np.int64)
        t["poly%d_hw" % i] = np.array([h, w], np.int64)
        t["poly%d_mask" % i] = mu.decode(rle).astype(np.uint8)
    n_poly = len(cases)

    # IoU of 4 detections and 3 ground truths of one size, one crowd.
    h, w = 24, 31
    dt = np.stack([blob(rng, h, w) for _ in range(4)])
    gt = np.stack([blob(rng, h, w) for _ in range(3)])
    gt[1, :, :] = 0
    gt[1, 2:9, 3:12] = 1
    dt[3, :, :] = 0
    dt[3, 15:20, 20:30] = 1   # far from gt 1: box prefilter
    crowd = np.array([0, 1, 0], np.uint8)
    drle = mu.encode(np.asfortranarray(dt.transpose(1, 2, 0)))
    grle = mu.encode(np.asfortranarray(gt.transpose(1, 2, 0)))
    iou = mu.iou(drle, grle, list(crowd))
    num = np.zeros((4, 3), np.int64)
    den = np.zeros((4, 3), np.int64)
    for d in range(4):
        for g in range(3):
            inter = int(np.logical_and(dt[d], gt[g]).sum())
            uni = int(dt[d].sum()) if crowd[g] else int(np.logical_or(dt[d], gt[g]).sum())
            num[d, g], den[d, g] = inter, uni if inter else 1
            assert abs(iou[d, g] - inter / den[d, g]) < 1e-15, (d, g, iou[d, g])
    t["iou_dt"] = dt
    t["iou_gt"] = gt
    t["iou_crowd"] = crowd
    t["iou_num"] = num
    t["iou_den"] = den
    save("masks", t, {"n_enc": n_enc, "n_poly": n_poly})


if __name__ == "__main__":
    main()
