#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one go (CI has none, so `make test`
# skips them): the CUDA test suite (every CUDA op against the CPU backend, a
# ResNet-18 training step on both, the NCCL transport on one rank, mixed
# precision: fp16/bf16 convolutions and linear layers against f64
# references, the fused unscale and overflow flag, and test_cuda_amp's tiny
# RetinaNet with fp16 dynamic loss scaling against the CPU's f32 run), a
# distributed RetinaNet training through `--launcher mpi --device cuda` (one
# rank, and two over NCCL when there are two GPUs) against the same run on
# the CPU, and the ResNet-50 benchmarks on the GPU against PyTorch on the
# same GPU (f32, and the train step in bf16 and fp16 against torch.autocast).
#   make all build/tests/test_cuda* build/tests/test_benchmark build/bench/bench_resnet   # with nvcc (and nccl.h)
#   scripts/cuda-check.sh [OUTDIR]
# MMDET_BENCH_PYTHON names the peer's interpreter (a python3 with CUDA torch).
set -u
out=${1:-build/cuda-check}
mkdir -p "$out"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
[ -f lib/libmmdet-cuda.so ] || { echo "cuda-check: lib/libmmdet-cuda.so is missing (build with nvcc)"; exit 1; }
if ldd lib/libmmdet-cuda.so | grep 'not found'; then echo "cuda-check: the backend's libraries are missing"; exit 1; fi
rc=0
# test_benchmark runs mmdet-benchmark --device cuda when the GPU opens
for t in build/tests/test_cuda build/tests/test_cuda_* build/tests/test_benchmark; do
  [ -x "$t" ] || continue
  n=$(basename "$t")
  "$t" --verbose -j1 >"$out/$n.log" 2>&1 || rc=1
  echo "== $n"
  grep -E '^\[(FAIL|SKIP|----)\]|Synthesis|Assertion|crash' "$out/$n.log" | head -40
done
# Distributed training on the GPU: 20 iterations of a batch of 4, as one
# rank and (with two GPUs, over NCCL) as two ranks of 2, then the logged
# losses set against the single-process CPU run of the same config.
if command -v mpirun >/dev/null; then
  ngpu=$(nvidia-smi -L 2>/dev/null | wc -l)
  bin/mmdet-shapes --out "$out/dist_data" --train 4 --val 4 --seed 3 --classes 3 --min-size 64 --max-size 64 \
    --max-objs 2 --png-frac 0 >/dev/null 2>&1
  dist_run() {  # name, launcher prefix, flags...
    local name=$1 pre=$2; shift 2
    MMDET_NUM_THREADS=1 $pre bin/mmdet-run --plugin-dir plugins tests/configs/dist/retinanet_dist.cfg --seed 0 \
      --no-validate --work-dir "$out/dist_$name" "$@" --cfg-options data.train.data_root="$out/dist_data/" \
      >"$out/dist_$name.log" 2>&1 || { echo "cuda-check: dist $name failed (see $out/dist_$name.log)"; rc=1; }
  }
  mpi="mpirun --allow-run-as-root --oversubscribe"
  dist_run cpu "" --device cpu
  dist_run gpu1 "$mpi -np 1" --launcher mpi --device cuda
  [ "${ngpu:-0}" -ge 2 ] && dist_run gpu2 "$mpi -np 2" --launcher mpi --device cuda \
    --cfg-options data.samples_per_gpu=2
  echo "== distributed (loss at iterations 10 and 20: cpu, gpu1${ngpu:+, gpu2 when 2 GPUs})"
  for n in cpu gpu1 gpu2; do
    f=$(ls "$out/dist_$n"/*.log.json 2>/dev/null | head -1)
    [ -n "$f" ] && echo "$n: $(grep -o '"loss": [0-9.e-]*' "$f" | tr '\n' ' ')"
  done
fi

export MMDET_BENCH_DEVICE=cuda MMDET_BENCH_REPS=${MMDET_BENCH_REPS:-10}
scripts/bench.sh build/bench/bench_resnet 2>"$out/bench.err" | tee "$out/bench.log" | grep -E '^bench|summary'
MMDET_CUDA_TF32=1 scripts/bench.sh build/bench/bench_resnet 2>>"$out/bench.err" | sed 's/^bench /bench tf32 /' |
  tee -a "$out/bench.log" | grep -E '^bench tf32'
tail -5 "$out/bench.err"
# where the GPU time goes, ours and PyTorch's (5 steps each)
for w in train infer; do
  MMDET_CUDA_PROFILE=2 MMDET_BENCH_REPS=5 build/bench/bench_resnet $w >"$out/profile_$w.txt" 2>&1
  MMDET_BENCH_PROFILE=1 MMDET_BENCH_REPS=5 ${MMDET_BENCH_PYTHON:-python3} bench/peer_resnet.py $w >>"$out/profile_$w.txt" 2>&1
done
grep -A12 "cuda profile" "$out/profile_train.txt"
exit $rc
