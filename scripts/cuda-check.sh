#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one go (CI has none, so `make test`
# skips them): the CUDA test suite (every CUDA op against the CPU backend, a
# ResNet-18 training step on both, the NCCL transport on one rank, mixed
# precision: fp16/bf16 convolutions and linear layers against f64
# references, the fused unscale and overflow flag, and test_cuda_amp's tiny
# RetinaNet with fp16 dynamic loss scaling against the CPU's f32 run), the
# FCOS, ATSS, Cascade R-CNN and Mask R-CNN shapes configs trained and tested
# on the GPU against the same runs on the CPU, a
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
# The detector families on the GPU: each shapes config (FCOS, ATSS, Cascade
# R-CNN, Mask R-CNN) trains one epoch (5 iterations of 2 images) with --device cuda and
# with --device cpu from the same seed and data (masks included), and its
# checkpoint is tested on both devices (Mask R-CNN's masks pasted and
# encoded where the model runs); the logged losses and the metrics are
# printed side by side. The first iteration starts from the same weights,
# so its losses must agree to float rounding (relative 1e-3 here); later
# ones drift with the order of the GPU's sums.
bin/mmdet-shapes --out "$out/family_data" --train 8 --val 4 --seed 3 --classes 5 --min-size 96 --max-size 128 \
  --max-objs 3 --png-frac 0 --masks >/dev/null 2>&1 || { echo "cuda-check: mmdet-shapes failed"; rc=1; }
fd="$out/family_data"
family_opts="data.samples_per_gpu=2 data.workers_per_gpu=0 runner.max_epochs=1 log_config.interval=1 \
  data.train.ann_file=$fd/annotations/instances_train.json data.train.img_prefix=$fd/train/ \
  data.val.ann_file=$fd/annotations/instances_val.json data.val.img_prefix=$fd/val/ \
  data.test.ann_file=$fd/annotations/instances_val.json data.test.img_prefix=$fd/val/"
for cfg in configs/fcos/fcos_r18_fpn_shapes.cfg configs/atss/atss_r18_fpn_shapes.cfg \
           configs/cascade_rcnn/cascade_rcnn_r18_fpn_shapes.cfg configs/mask_rcnn/mask_rcnn_r18_fpn_shapes.cfg; do
  fam=$(basename "$cfg" _r18_fpn_shapes.cfg)
  metrics=bbox
  [ "$fam" = mask_rcnn ] && metrics="bbox segm"
  for dev in cpu cuda; do
    w="$out/family_${fam}_$dev"
    rm -rf "$w"
    # shellcheck disable=SC2086
    bin/mmdet-run --plugin-dir plugins "$cfg" --device $dev --seed 0 --no-validate --work-dir "$w" \
      --cfg-options $family_opts >"$w.train.log" 2>&1 || { echo "cuda-check: $fam on $dev failed to train (see $w.train.log)"; rc=1; }
    # shellcheck disable=SC2086
    bin/mmdet-test --plugin-dir plugins "$cfg" "$w/epoch_1.safetensors" --device $dev --eval $metrics \
      --cfg-options $family_opts >"$w.test.log" 2>&1 || { echo "cuda-check: $fam on $dev failed to test (see $w.test.log)"; rc=1; }
  done
  echo "== $fam: loss per iteration (cpu, then cuda) | the test's mAP (COCO copypaste)"
  for dev in cpu cuda; do
    f=$(ls "$out/family_${fam}_$dev"/*.log.json 2>/dev/null | head -1)
    echo "$dev: $( [ -n "$f" ] && grep -o '"loss": [0-9.e+-]*' "$f" | cut -d' ' -f2 | tr '\n' ' ') |" \
      "$(grep -ho '\(bbox\|segm\)_mAP_copypaste: [0-9. -]*' "$out/family_${fam}_$dev.test.log" 2>/dev/null | tr '\n' ' ')"
  done
  fc=$(ls "$out/family_${fam}_cpu"/*.log.json 2>/dev/null | head -1)
  fg=$(ls "$out/family_${fam}_cuda"/*.log.json 2>/dev/null | head -1)
  if [ -n "$fc" ] && [ -n "$fg" ]; then
    paste <(grep -o '"loss": [0-9.e+-]*' "$fc" | cut -d' ' -f2) <(grep -o '"loss": [0-9.e+-]*' "$fg" | cut -d' ' -f2) |
      awk -v fam="$fam" '{ d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 1e-6 ? $1 : 1e-6); if (NR == 1) first = r;
                           if (r > mx) mx = r }
                         END { printf "%s: relative difference at iteration 1 %.2e, largest %.2e\n", fam, first, mx;
                               exit (NR == 0 || first > 1e-3) }' || { echo "cuda-check: $fam: cpu and cuda losses differ"; rc=1; }
  else
    rc=1
  fi
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
