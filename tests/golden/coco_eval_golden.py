#!/usr/bin/env python3
"""Makes small random COCO ground truth / detection sets and runs
pycocotools' COCOeval on them; writes the inputs and the expected numbers
under tests/fixtures/coco_eval/ for tests/unit/test_coco_eval.c.

    python3 tests/golden/coco_eval_golden.py     (needs pycocotools, numpy)

Each case <name> gives <name>_gt.json, <name>_dt.json and <name>_expected.txt:
12 lines with the summary stats, then one line "<category id> <AP>" per GT
category (AP@[.5:.95], area all, maxDets 100, as mmdet's classwise table; -1
where the category has no GT). Numbers are printed with repr (round trip).
"""
import contextlib
import io
import json
import os
import random

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "coco_eval")


def rand_box(rng, w, h):
    # Log-uniform sizes so all three area ranges are populated.
    bw = min(w - 1, np.exp(rng.uniform(np.log(4), np.log(w * 0.9))))
    bh = min(h - 1, bw * rng.uniform(0.4, 2.5))
    x = rng.uniform(0, w - bw)
    y = rng.uniform(0, h - bh)
    return [round(x, 2), round(y, 2), round(bw, 2), round(max(bh, 1.0), 2)]


def make_case(seed, n_images, cat_ids, empty_cat=None, crowd_p=0.08, crowded_image=True, int_scores=False):
    rng = random.Random(seed)
    images, anns, dets = [], [], []
    cats = [{"id": c, "name": "class_%d" % c} for c in cat_ids]
    if empty_cat is not None:
        cats.append({"id": empty_cat, "name": "no_gt"})
    # Image ids deliberately unsorted and sparse.
    ids = rng.sample(range(1, 10 * n_images), n_images)
    aid = 1
    for i, img_id in enumerate(ids):
        w, h = rng.randint(200, 640), rng.randint(200, 640)
        images.append({"id": img_id, "file_name": "%d.jpg" % img_id, "width": w, "height": h})
        n_gt = 0 if i % 9 == 4 else rng.randint(1, 8)
        for _ in range(n_gt):
            b = rand_box(rng, w, h)
            c = rng.choice(cat_ids)
            crowd = 1 if rng.random() < crowd_p else 0
            # 'area' is the segment area in COCO, not the box area.
            area = round(b[2] * b[3] * rng.uniform(0.55, 1.0), 3)
            anns.append({"id": aid, "image_id": img_id, "category_id": c, "bbox": b, "area": area,
                         "iscrowd": crowd, "segmentation": [[b[0], b[1], b[0] + b[2], b[1], b[0] + b[2], b[1] + b[3]]]})
            aid += 1
            # Detections near the GT: good, sloppy, duplicate, wrong class.
            for _ in range(rng.choice([0, 1, 1, 1, 2])):
                j = [v + rng.gauss(0, 0.08 * max(b[2], b[3])) for v in b]
                j[2], j[3] = max(1.0, j[2]), max(1.0, j[3])
                cc = c if rng.random() < 0.85 else rng.choice(cat_ids)
                dets.append({"image_id": img_id, "category_id": cc, "bbox": [round(v, 2) for v in j],
                             "score": score(rng, int_scores)})
        # False positives, and a detection of the category without GT.
        for _ in range(rng.randint(0, 5)):
            dets.append({"image_id": img_id, "category_id": rng.choice(cat_ids), "bbox": rand_box(rng, w, h),
                         "score": score(rng, int_scores)})
        if empty_cat is not None and rng.random() < 0.2:
            dets.append({"image_id": img_id, "category_id": empty_cat, "bbox": rand_box(rng, w, h),
                         "score": score(rng, int_scores)})
    if crowded_image:
        # One image with more than 100 detections of one class: the maxDets cut.
        img = images[1]
        for _ in range(130):
            dets.append({"image_id": img["id"], "category_id": cat_ids[0],
                         "bbox": rand_box(rng, img["width"], img["height"]), "score": score(rng, int_scores)})
        for _ in range(6):
            b = rand_box(rng, img["width"], img["height"])
            anns.append({"id": aid, "image_id": img["id"], "category_id": cat_ids[0], "bbox": b,
                         "area": round(b[2] * b[3], 3), "iscrowd": 0})
            aid += 1
    rng.shuffle(dets)
    gt = {"info": {"description": "random COCO eval case %d" % seed}, "images": images, "annotations": anns,
          "categories": cats}
    return gt, dets


def score(rng, coarse):
    # Coarse scores create ties, which exercise the stable ordering.
    return round(rng.random(), 1) if coarse else round(rng.random(), 4)


def run(name, gt, dets):
    gt_path = os.path.join(OUT, name + "_gt.json")
    dt_path = os.path.join(OUT, name + "_dt.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f, separators=(",", ":"))
    with open(dt_path, "w") as f:
        json.dump(dets, f, separators=(",", ":"))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(gt_path)
        res = coco.loadRes(dt_path)
        ev = COCOeval(coco, res, "bbox")
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
    gt, dt = make_case(1, 36, [1, 2, 3, 5], empty_cat=9)
    run("random_a", gt, dt)
    gt, dt = make_case(2, 24, [3, 4, 11, 12, 17, 40], crowd_p=0.15, int_scores=True)
    run("random_b", gt, dt)
    gt, dt = make_case(3, 30, [1, 2], crowd_p=0.3, crowded_image=False)
    run("random_c", gt, dt)


if __name__ == "__main__":
    main()
