"""Python peer of bench/bench_data.c, on the files it generated (run it first).
   peer coco_load peer_ms=<median> peer_cpu_ms=... peer_mb=<peak RSS>
       json.load plus the index pycocotools' COCO.createIndex builds, each run
       in a fresh child process;
   peer coco_eval_5k peer_ms=...  pycocotools' COCOeval (bbox): evaluate,
       accumulate, summarize.
Without pycocotools the evaluation line is skipped with a note."""
import io
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict

DIR = os.environ.get("MMDET_BENCH_DIR", "build/bench/data")
SCALE = float(os.environ.get("MMDET_BENCH_SCALE", "1") or 1)
REPS = int(os.environ.get("MMDET_BENCH_PEER_REPS", "1"))


def create_index(dataset):
    """pycocotools.coco.COCO.createIndex, verbatim in substance."""
    anns, cats, imgs = {}, {}, {}
    img_to_anns, cat_to_imgs = defaultdict(list), defaultdict(list)
    if "annotations" in dataset:
        for ann in dataset["annotations"]:
            img_to_anns[ann["image_id"]].append(ann)
            anns[ann["id"]] = ann
    if "images" in dataset:
        for img in dataset["images"]:
            imgs[img["id"]] = img
    if "categories" in dataset:
        for cat in dataset["categories"]:
            cats[cat["id"]] = cat
    if "annotations" in dataset and "categories" in dataset:
        for ann in dataset["annotations"]:
            cat_to_imgs[ann["category_id"]].append(ann["image_id"])
    return anns, cats, imgs, img_to_anns, cat_to_imgs


def load_child(path):
    t0, c0 = time.perf_counter(), time.process_time()
    with open(path) as f:
        dataset = json.load(f)
    index = create_index(dataset)
    t, c = time.perf_counter() - t0, time.process_time() - c0
    print(f"{t * 1e3:.3f} {c * 1e3:.3f} {len(index[2])}")


def median(v):
    return sorted(v)[len(v) // 2]


def bench_load():
    n_img, n_ann = int(118287 * SCALE), int(860001 * SCALE)
    path = f"{DIR}/instances_train_synth_{n_img}_{n_ann}.json"
    if not os.path.exists(path):
        print(f"peer_data: {path} is missing (run build/bench/bench_data first)", file=sys.stderr)
        return
    ts, cs, mb = [], [], 0.0
    for _ in range(REPS):
        p = subprocess.Popen([sys.executable, __file__, "--load-child", path], stdout=subprocess.PIPE)
        out = p.stdout.read().decode()
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = 0
        if status != 0 or not out:
            print("peer_data: the loading process failed", file=sys.stderr)
            return
        t, c, _ = out.split()
        ts.append(float(t))
        cs.append(float(c))
        mb = max(mb, ru.ru_maxrss / 1024.0)
    print(f"peer coco_load peer_ms={median(ts):.1f} peer_cpu_ms={median(cs):.1f} peer_mb={mb:.0f}", flush=True)


def bench_eval():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        print("peer_data: pycocotools is not importable; no coco_eval_5k peer (pip install pycocotools)",
              file=sys.stderr)
        return
    n_img = max(1, int(5000 * SCALE))
    gt_path, dt_path = f"{DIR}/eval_gt_{n_img}.json", f"{DIR}/eval_dt_{n_img}.json"
    if not os.path.exists(gt_path):
        print(f"peer_data: {gt_path} is missing", file=sys.stderr)
        return
    quiet = io.StringIO()
    stdout, sys.stdout = sys.stdout, quiet
    try:
        gt = COCO(gt_path)
        dt = gt.loadRes(dt_path)
        ts, cs, ap = [], [], 0.0
        for _ in range(REPS):
            t0, c0 = time.perf_counter(), time.process_time()
            ev = COCOeval(gt, dt, "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            ts.append(time.perf_counter() - t0)
            cs.append(time.process_time() - c0)
            ap = ev.stats[0]
    finally:
        sys.stdout = stdout
    print(f"peer coco_eval_5k peer_ms={median(ts) * 1e3:.1f} peer_cpu_ms={median(cs) * 1e3:.1f} peer_ap={ap:.4f}",
          flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--load-child":
        load_child(sys.argv[2])
        sys.exit(0)
    only = sys.argv[1] if len(sys.argv) > 1 else None
    if only in (None, "coco_load"):
        bench_load()
    if only in (None, "coco_eval_5k"):
        bench_eval()
