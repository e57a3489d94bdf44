"""PyTorch/torchvision peer of bench/bench_det.c (same LCG inputs, 2 threads).
   peer roi_align_fwd_bwd peer_ms=<median>
   peer nms_10k peer_ms=<median>"""
import math
import time

import torch
import torchvision

torch.set_num_threads(2)
REPS, NROI, IMG_H, IMG_W = 5, 512, 800, 1216
state = 12345


def lcg():
    global state
    state = (state * 1664525 + 1013904223) % 4294967296
    return state / 4294967296.0


strides = [4, 8, 16, 32]
feats = [torch.empty(2, 256, IMG_H // s, IMG_W // s).uniform_(-1, 1).requires_grad_(True) for s in strides]
rois = [[] for _ in range(4)]
for _ in range(NROI):
    b = 0.0 if lcg() < 0.5 else 1.0
    s = math.exp(math.log(16.0) + lcg() * (math.log(512.0) - math.log(16.0)))
    ar = math.exp((lcg() - 0.5) * 1.4)
    w, h = s * math.sqrt(ar), s / math.sqrt(ar)
    x1, y1 = lcg() * (IMG_W - w), lcg() * (IMG_H - h)
    lvl = min(max(int(math.floor(math.log2(math.sqrt(w * h) / 56.0 + 1e-6))), 0), 3)
    rois[lvl].append([b, x1, y1, x1 + w, y1 + h])
rois = [torch.tensor(r, dtype=torch.float32).reshape(-1, 5) for r in rois]

times = []
for rep in range(REPS + 1):
    for f in feats:
        f.grad = None
    t0 = time.perf_counter()
    outs = [torchvision.ops.roi_align(f, r, (7, 7), 1.0 / s, 0, True) for f, r, s in zip(feats, rois, strides)]
    torch.autograd.backward(outs, [torch.full_like(o, 1e-3) for o in outs])
    times.append((time.perf_counter() - t0) * 1e3)
print(f"peer roi_align_fwd_bwd peer_ms={sorted(times[1:])[REPS // 2]:.2f} "
      f"per_level={'/'.join(str(r.shape[0]) for r in rois)}")

NB = 10000
data, sc = [], []
for _ in range(NB):
    w = 16 + lcg() * 240
    h = 16 + lcg() * 240
    x1 = lcg() * (IMG_W - w)
    y1 = lcg() * (IMG_H - h)
    data.append([x1, y1, x1 + w, y1 + h])
    sc.append(lcg())
boxes = torch.tensor(data, dtype=torch.float32)
scores = torch.tensor(sc, dtype=torch.float32)
times = []
for rep in range(REPS + 1):
    t0 = time.perf_counter()
    keep = torchvision.ops.nms(boxes, scores, 0.5)
    times.append((time.perf_counter() - t0) * 1e3)
print(f"peer nms_10k peer_ms={sorted(times[1:])[REPS // 2]:.2f} kept={keep.numel()}")
