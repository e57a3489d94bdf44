#!/usr/bin/env python3
"""Small random COCO instance-segmentation ground truth / results sets and
pycocotools' COCOeval with iouType 'segm' on them; writes the inputs and the
expected numbers under tests/fixtures/coco_eval/ for tests/unit/test_coco_eval.c
(the same layout as coco_eval_golden.py).

    /usr/bin/python3 tests/golden/coco_segm_golden.py     (needs pycocotools, numpy)

Ground truth segmentations mix polygons (with holes-free concave shapes and
two-part objects), crowd regions as uncompressed RLE (counts lists) and
compressed RLE strings; the 'area' field differs from the mask's pixel
count (COCO's is the polygon area), so the area ranges must use it.
Results are compressed RLEs with a bbox, as mmdet's results2json writes.
"""
import contextlib
import io
import json
import os
import random

import numpy as np
from pycocotools import mask as mu
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "coco_eval")


def rand_poly(rng, w, h):
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    r = np.exp(rng.uniform(np.log(2), np.log(min(w, h) * 0.45)))
    if rng.random() < 0.25:   # large ones too
        r = min(w, h) * rng.uniform(0.35, 0.5)
    n = rng.randint(3, 9)
    angs = sorted(rng.uniform(0, 2 * np.pi) for _ in range(n))
    xy = []
    for a in angs:
        rr = r * rng.uniform(0.5, 1.0)
        xy += [round(min(max(cx + rr * np.cos(a), 0), w), 2), round(min(max(cy + rr * np.sin(a), 0), h), 2)]
    return xy


def to_str(rle):
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def uncompressed(mask):
    flat = mask.flatten(order="F")
    counts, p, c = [], 0, 0
    for v in flat:
        if v != p:
            counts.append(c)
            c, p = 0, v
        c += 1
    counts.append(c)
    return {"size": list(mask.shape), "counts": counts}


def perturb(rng, m):
    m = m.copy()
    dx, dy = rng.randint(-1, 1), rng.randint(-1, 1)
    m = np.roll(np.roll(m, dx, axis=1), dy, axis=0)
    if rng.random() < 0.5:   # grow by a pixel
        g = m.copy()
        g[1:, :] |= m[:-1, :]
        g[:, 1:] |= m[:, :-1]
        m = g
    ys, xs = np.nonzero(m)
    if len(xs):   # a few flipped pixels around the object
        for _ in range(rng.randint(0, 6)):
            y = min(max(ys.min() + rng.randint(-1, int(ys.max() - ys.min()) + 1), 0), m.shape[0] - 1)
            x = min(max(xs.min() + rng.randint(-1, int(xs.max() - xs.min()) + 1), 0), m.shape[1] - 1)
            m[y, x] ^= 1
    return m.astype(np.uint8)


def make_case(seed, n_images, cat_ids, crowd_p=0.1):
    rng = random.Random(seed)
    images, anns, dets = [], [], []
    cats = [{"id": c, "name": "class_%d" % c} for c in cat_ids]
    ids = rng.sample(range(1, 10 * n_images), n_images)
    aid = 1
    for i, img_id in enumerate(ids):
        w, h = rng.randint(50, 240), rng.randint(50, 240)
        images.append({"id": img_id, "file_name": "%d.jpg" % img_id, "width": w, "height": h})
        for _ in range(0 if i % 7 == 3 else rng.randint(1, 5)):
            c = rng.choice(cat_ids)
            crowd = 1 if rng.random() < crowd_p else 0
            polys = [rand_poly(rng, w, h)]
            if rng.random() < 0.2:
                polys.append(rand_poly(rng, w, h))
            rle = mu.merge(mu.frPyObjects(polys, h, w))
            mask = mu.decode(rle)
            px = int(mu.area(rle))
            if px == 0:
                continue
            bbox = [float(v) for v in mu.toBbox(rle)]
            kind = rng.random()
            if crowd:
                seg = uncompressed(mask)
            elif kind < 0.15:
                seg = to_str(rle)
            else:
                seg = polys
            area = round(px * rng.uniform(0.8, 1.2), 2)
            anns.append({"id": aid, "image_id": img_id, "category_id": c, "bbox": bbox, "area": area,
                         "iscrowd": crowd, "segmentation": seg})
            aid += 1
            for _ in range(rng.choice([0, 1, 1, 2])):
                dm = perturb(rng, mask)
                if dm.sum() == 0:
                    continue
                drle = mu.encode(np.asfortranarray(dm))
                cc = c if rng.random() < 0.85 else rng.choice(cat_ids)
                dets.append({"image_id": img_id, "category_id": cc,
                             "bbox": [float(v) for v in mu.toBbox(drle)],
                             "score": round(rng.random(), 3), "segmentation": to_str(drle)})
        for _ in range(rng.randint(0, 3)):   # false positives
            m = mu.decode(mu.merge(mu.frPyObjects([rand_poly(rng, w, h)], h, w)))
            if m.sum() == 0:
                continue
            drle = mu.encode(np.asfortranarray(m))
            dets.append({"image_id": img_id, "category_id": rng.choice(cat_ids),
                         "bbox": [float(v) for v in mu.toBbox(drle)], "score": round(rng.random(), 3),
                         "segmentation": to_str(drle)})
    rng.shuffle(dets)
    gt = {"images": images, "annotations": anns, "categories": cats}
    return gt, dets


def run(name, gt, dets):
    gt_path = os.path.join(OUT, name + "_gt.json")
    dt_path = os.path.join(OUT, name + "_dt.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f, separators=(",", ":"))
    with open(dt_path, "w") as f:
        json.dump(dets, f, separators=(",", ":"))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(gt_path)
        with open(dt_path) as f:
            preds = json.load(f)
        for p in preds:   # as mmdet's evaluate for segm
            p.pop("bbox")
        res = coco.loadRes(preds)
        ev = COCOeval(coco, res, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"]
    lines = [repr(float(s)) for s in ev.stats]
    for k, cid in enumerate(ev.params.catIds):
        p = prec[:, :, k, 0, -1]
        p = p[p > -1]
        lines.append("%d %r" % (cid, float(np.mean(p)) if p.size else -1.0))
    with open(os.path.join(OUT, name + "_expected.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(name, " ".join("%.4f" % s for s in ev.stats))


def main():
    os.makedirs(OUT, exist_ok=True)
    gt, dt = make_case(7, 14, [1, 2, 4])
    run("segm_a", gt, dt)
    gt, dt = make_case(8, 10, [3, 5], crowd_p=0.3)
    run("segm_b", gt, dt)


if __name__ == "__main__":
    main()
