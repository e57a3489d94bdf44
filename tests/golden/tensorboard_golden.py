"""Fixture for the test suite's event file reader (tests/unit/test_tensorboard.c):
an event file written by TensorBoard's own writer, as mmcv's
TensorboardLoggerHook writes it (torch.utils.tensorboard.SummaryWriter over
tensorboard's EventFileWriter), and the scalars it holds.

Needs: pip install --break-system-packages tensorboard
Writes tests/fixtures/tensorboard_real.events and
tests/fixtures/tensorboard_real.safetensors (steps, values; tags and the
file version in the metadata, tags joined by newlines).
"""
import glob
import os
import shutil
import tempfile

import numpy as np
from torch.utils.tensorboard import SummaryWriter

from common import FIXTURES, save

# (tag, value, step): mmcv's tags, step 0 (left out on the wire by proto3),
# a step past 2^32, negative, tiny, huge and non-finite values
SCALARS = [
    ("train/loss_cls", 1.25, 0),
    ("train/loss", 2.5, 1),
    ("learning_rate", 0.02, 1),
    ("momentum", 0.9, 1),
    ("val/bbox_mAP", 0.371, 12),
    ("train/loss_bbox", -3.75, 5000000000),
    ("train/grad_norm", 1e-30, 7),
    ("train/loss_rpn_cls", 3.0e38, 8),
    ("val/bbox_mAP_l", -1.0, 9),
    ("train/acc", float("inf"), 10),
]

tmp = tempfile.mkdtemp()
try:
    w = SummaryWriter(tmp)
    for i, (tag, value, step) in enumerate(SCALARS):
        w.add_scalar(tag, value, step)
        if i == 4:
            # a text summary (mmcv logs strings so): no simple_value, which
            # the reader must skip
            w.add_text("val/bbox_mAP_copypaste", "0.371 0.5 0.4", 12)
    w.close()
    files = glob.glob(os.path.join(tmp, "events.out.tfevents.*"))
    assert len(files) == 1, files
    shutil.copyfile(files[0], os.path.join(FIXTURES, "tensorboard_real.events"))
finally:
    shutil.rmtree(tmp)

save("tensorboard_real", {
    "steps": np.array([s for _, _, s in SCALARS], dtype=np.int64),
    "values": np.array([v for _, v, _ in SCALARS], dtype=np.float32),
}, metadata={"tags": "\n".join(t for t, _, _ in SCALARS), "file_version": "brain.Event:2"})
