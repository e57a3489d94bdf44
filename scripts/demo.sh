#!/usr/bin/env bash
# The main job on the embedded default: generate the synthetic shapes
# dataset, train the shapes RetinaNet with mmdet-run (evaluating COCO bbox
# mAP on the validation split), then test the final checkpoint and draw its
# detections on the validation images.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-configs/retinanet/retinanet_r18_fpn_shapes.cfg}
WORK=${WORK:-work_dirs/$(basename "$CONFIG" .cfg)}
DATA=data/shapes
if [ ! -f "$DATA/annotations/instances_train.json" ]; then
  echo "demo: generating the shapes dataset into $DATA"
  bin/mmdet-shapes --out "$DATA" --train 400 --val 100 --classes 5 --seed 0
fi
echo "demo: training $CONFIG into $WORK"
bin/mmdet-run --plugin-dir plugins "$CONFIG" --work-dir "$WORK" --seed 0 --deterministic
CKPT=$(readlink -f "$WORK/latest.safetensors")
echo "demo: testing $CKPT; detections drawn into $WORK/show"
bin/mmdet-test --plugin-dir plugins "$CONFIG" "$CKPT" --eval bbox --show-dir "$WORK/show" --work-dir "$WORK"
