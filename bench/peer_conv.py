"""PyTorch peer of bench/bench_conv.c: conv2d forward+backward at the same
shapes, 2 threads. Prints `peer conv_<stage> peer_ms=<median>`."""
import os
import statistics
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(os.environ.get("MMDET_NUM_THREADS", "2")))
REPS = max(1, int(os.environ.get("MMDET_BENCH_REPS", "5")))
STAGES = [("stem", 3, 64, 512, 7, 2, 3), ("res2_3x3", 64, 64, 128, 3, 1, 1),
          ("res3_3x3", 128, 128, 64, 3, 1, 1), ("res4_3x3", 256, 256, 32, 3, 1, 1),
          ("res5_3x3", 512, 512, 16, 3, 1, 1), ("res2_1x1", 256, 64, 128, 1, 1, 0),
          ("res2_1x1_up", 64, 256, 128, 1, 1, 0), ("res3_3x3_s2", 128, 128, 128, 3, 2, 1),
          ("res3_down", 256, 512, 128, 1, 2, 0), ("res4_1x1", 1024, 256, 32, 1, 1, 0),
          ("res5_1x1_up", 512, 2048, 16, 1, 1, 0)]

torch.manual_seed(1)
for name, c, o, h, k, s, p in STAGES:
    x = torch.randn(2, c, h, h, requires_grad=True)
    w = (torch.randn(o, c, k, k) * 0.05).requires_grad_(True)
    times = []
    for i in range(REPS + 1):
        x.grad = w.grad = None
        t0 = time.perf_counter()
        y = F.conv2d(x, w, None, s, p)
        y.backward(torch.ones_like(y))
        if i:
            times.append((time.perf_counter() - t0) * 1e3)
    print(f"peer conv_{name} peer_ms={statistics.median(times):.2f}", flush=True)
