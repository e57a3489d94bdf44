"""PyTorch peer of bench/bench_resnet.c: torchvision's resnet50 without the
avgpool/fc head, returning the four stage outputs; 2 threads.
  resnet50_train_step  forward + backward of sum(all outputs), 2x3x512x512,
                       train mode BN, one SGD step (momentum 0.9, wd 1e-4)
  resnet50_infer       forward, 1x3x800x1216, eval mode, no grad
Each benchmark runs in its own process (peak RSS is its own). Prints
`peer <name> peer_ms=<median> peer_mb=<ru_maxrss>`.
With MMDET_BENCH_DEVICE=cuda: on the GPU, names with a _cuda suffix, a
synchronisation closing each step, peer_mb = torch.cuda.max_memory_allocated,
TF32 off unless MMDET_CUDA_TF32=1 (as ours), cudnn.benchmark off (heuristic
algorithm choice, as ours by default); there also
  resnet50_train_step_bf16_cuda, resnet50_train_step_fp16_cuda
                       the train step's forward under torch.autocast with that
                       dtype (no loss scaling, as ours)."""
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import time

REPS = max(1, int(os.environ.get("MMDET_BENCH_REPS", "3")))


def run(train, amp=None):
    import torch
    import torchvision

    torch.set_num_threads(int(os.environ.get("MMDET_NUM_THREADS", "2")))
    torch.manual_seed(1)
    gpu = os.environ.get("MMDET_BENCH_DEVICE", "cpu").startswith("cuda")
    dev = torch.device("cuda" if gpu else "cpu")
    if gpu:
        tf32 = os.environ.get("MMDET_CUDA_TF32") == "1"
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = os.environ.get("MMDET_CUDA_BENCHMARK") == "1"
    net = torchvision.models.resnet50(weights=None).to(dev)

    def forward(x):
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        outs = []
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = layer(x)
            outs.append(x)
        return outs

    params = [p for n, p in net.named_parameters() if not n.startswith("fc.")]
    opt = torch.optim.SGD(params, lr=0.001, momentum=0.9, weight_decay=1e-4)
    net.train(train)
    shape = (2, 3, 512, 512) if train else (1, 3, 800, 1216)
    x = torch.randn(*shape).to(dev)
    times, cpu = [], []
    cast = (torch.autocast(device_type="cuda", dtype=torch.float16 if amp == "fp16" else torch.bfloat16)
            if amp else contextlib.nullcontext())
    with torch.set_grad_enabled(train):
        for i in range(REPS + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            with cast:
                outs = forward(x)
            if train:
                opt.zero_grad(set_to_none=False)
                sum(o.sum() for o in outs).backward()
                opt.step()
            if gpu:
                torch.cuda.synchronize()
            if i:
                times.append((time.perf_counter() - t0) * 1e3)
                cpu.append((time.process_time() - c0) * 1e3)
            del outs
    name = ("resnet50_train_step" if train else "resnet50_infer") + (f"_{amp}" if amp else "") + ("_cuda" if gpu else "")
    mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if gpu:
        mb = torch.cuda.max_memory_allocated() / 1048576.0
    print(f"peer {name} peer_ms={statistics.median(times):.1f} peer_cpu_ms={statistics.median(cpu):.1f} peer_mb={mb:.0f}",
          flush=True)
    if gpu and os.environ.get("MMDET_BENCH_PROFILE") == "1":   # kernel times, to set beside MMDET_CUDA_PROFILE's
        from torch.profiler import ProfilerActivity, profile
        with torch.set_grad_enabled(train), profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(REPS):
                outs = forward(x)
                if train:
                    opt.zero_grad(set_to_none=False)
                    sum(o.sum() for o in outs).backward()
                    opt.step()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25), file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        which = sys.argv[1]   # train, infer, train_bf16, train_fp16
        run(which.startswith("train"), which[6:] if which.startswith("train_") else None)
    else:
        gpu = os.environ.get("MMDET_BENCH_DEVICE", "cpu").startswith("cuda")
        for which in ("train", "infer") + (("train_bf16", "train_fp16") if gpu else ()):
            subprocess.run([sys.executable, __file__, which], check=False)
