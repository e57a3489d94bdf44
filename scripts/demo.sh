#!/usr/bin/env bash
# The main job on the embedded default: generate the synthetic shapes
# dataset, then train and evaluate the shapes RetinaNet with mmdet-run.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-configs/retinanet/retinanet_r18_fpn_shapes.cfg}
DATA=data/shapes
if [ ! -f "$DATA/annotations/instances_train.json" ]; then
  echo "demo: generating the shapes dataset into $DATA"
  bin/mmdet-shapes --out "$DATA" --train 800 --val 200 --classes 5 --seed 0
fi
echo "demo: plugins"
bin/mmdet-run --plugin-dir plugins --list-modules
echo "demo: training $CONFIG"
bin/mmdet-run --plugin-dir plugins "$CONFIG" --seed 0 --deterministic
