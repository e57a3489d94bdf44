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
GEN_ARGS="--train 2800 --val 100 --classes 5 --seed 0"
# Regenerate when the dataset there was made with other arguments.
if [ "$(cat "$DATA/.generated-with" 2>/dev/null)" != "$GEN_ARGS" ]; then
  echo "demo: generating the shapes dataset into $DATA"
  rm -rf "$DATA"
  bin/mmdet-shapes --out "$DATA" $GEN_ARGS
  echo "$GEN_ARGS" > "$DATA/.generated-with"
fi
echo "demo: training $CONFIG into $WORK"
bin/mmdet-run --plugin-dir plugins "$CONFIG" --work-dir "$WORK" --seed 0 --deterministic
LOG=$(ls -t "$WORK"/*.log.json | head -n 1)
bin/mmdet-analyze-logs plot_curve "$LOG" --keys loss_cls loss_bbox --out "$WORK/loss.png"
CKPT=$(readlink -f "$WORK/latest.safetensors")
echo "demo: testing $CKPT; detections drawn into $WORK/show"
bin/mmdet-test --plugin-dir plugins "$CONFIG" "$CKPT" --eval bbox --show-dir "$WORK/show" --work-dir "$WORK"
