#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one go (CI has none, so `make test`
# skips them): the CUDA test suite (every CUDA op against the CPU backend, a
# ResNet-18 training step on both) and the ResNet-50 benchmarks on the GPU
# against PyTorch on the same GPU.
#   make all build/tests/test_cuda* build/bench/bench_resnet   # with nvcc
#   scripts/cuda-check.sh [OUTDIR]
# MMDET_BENCH_PYTHON names the peer's interpreter (a python3 with CUDA torch).
set -u
out=${1:-build/cuda-check}
mkdir -p "$out"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
[ -f lib/libmmdet-cuda.so ] || { echo "cuda-check: lib/libmmdet-cuda.so is missing (build with nvcc)"; exit 1; }
if ldd lib/libmmdet-cuda.so | grep 'not found'; then echo "cuda-check: the backend's libraries are missing"; exit 1; fi
rc=0
for t in build/tests/test_cuda build/tests/test_cuda_*; do
  [ -x "$t" ] || continue
  n=$(basename "$t")
  "$t" --verbose -j1 >"$out/$n.log" 2>&1 || rc=1
  echo "== $n"
  grep -E '^\[(FAIL|SKIP|----)\]|Synthesis|Assertion|crash' "$out/$n.log" | head -40
done
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
