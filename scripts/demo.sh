#!/usr/bin/env bash
# The main job on the embedded default: generate the synthetic shapes
# dataset, then train on it with mmdet-run. While the detector plugins are
# being completed, the demo trains the runner's small shapes classifier when
# RetinaNet is not yet registered, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-configs/retinanet/retinanet_r18_fpn_shapes.cfg}
DATA=data/shapes
if [ ! -f "$DATA/annotations/instances_train.json" ]; then
  echo "demo: generating the shapes dataset into $DATA"
  bin/mmdet-shapes --out "$DATA" --train 800 --val 200 --classes 5 --seed 0
fi
echo "demo: loaded plugins"
bin/mmdet-run --plugin-dir plugins --list-modules
echo "demo: merged config of $CONFIG"
bin/mmdet-run --plugin-dir plugins "$CONFIG" --print-config
if bin/mmdet-run --plugin-dir plugins --list-modules | grep -qw RetinaNet; then
  echo "demo: training $CONFIG"
  bin/mmdet-run --plugin-dir plugins "$CONFIG" --seed 0 --deterministic
else
  echo "demo: RetinaNet is not registered yet; training the shapes presence classifier"
  echo "demo: (tests/configs/runner/toy_shapes.cfg) through the same runner and data pipeline"
  bin/mmdet-run --plugin-dir plugins --plugin-dir tests/plugins tests/configs/runner/toy_shapes.cfg \
    --seed 0 --deterministic --work-dir work_dirs/toy_shapes \
    --cfg-options data.train.data_root="$DATA/" runner.max_epochs=4
fi
