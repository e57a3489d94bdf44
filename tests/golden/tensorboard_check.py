"""Reads an event file TensorboardLoggerHook wrote with TensorBoard's own
reader, as the TensorBoard server does: EventFileLoader (TFRecord framing
with its CRC checks, Event protos) and EventAccumulator (the scalars the
dashboard plots). Not part of `make test` (CI has no Python).

Needs: pip install --break-system-packages tensorboard

    /usr/bin/python3 tests/golden/tensorboard_check.py EVENT-FILE-OR-FOLDER
    /usr/bin/python3 tests/golden/tensorboard_check.py CONFIG [mmdet-run options]

With a config, trains it first with bin/mmdet-run (run from the repository
root after `make`) into a temporary work dir, with log_config.hooks set to
TextLoggerHook and TensorboardLoggerHook; the options follow the config
(e.g. --plugin-dir tests/plugins --cfg-options ...). When the work dir's
.log.json is found (a folder's, or the run's), every scalar of the event
file is checked against it: tags "<mode>/<key>", learning_rate = lr,
values to 6 digits. Exits non-zero on any mismatch.
"""
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tensor_util


def find_event_file(path):
    if os.path.isfile(path):
        return path
    files = sorted(glob.glob(os.path.join(path, "**", "events.out.tfevents.*"), recursive=True))
    if len(files) != 1:
        sys.exit(f"{path}: {len(files)} event files, want 1")
    return files[0]


def load(path):
    """(file_version, [(tag, step, value)]) through EventFileLoader."""
    version, scalars = None, []
    for i, event in enumerate(EventFileLoader(path).Load()):
        if i == 0:
            version = event.file_version
            continue
        for v in event.summary.value:
            # the loader migrates simple_value to a scalar tensor
            value = v.simple_value if v.HasField("simple_value") else float(tensor_util.make_ndarray(v.tensor))
            scalars.append((v.tag, event.step, value))
    return version, scalars


def json_log(folder):
    files = sorted(glob.glob(os.path.join(folder, "*.log.json")))
    if not files:
        return None
    with open(files[-1]) as f:
        return [json.loads(line) for line in f if '"mode"' in line]


def compare(scalars, lines):
    """The JSON lines' values in mmcv's tags, in order (steps are checked by
    the C test, which knows the epoch length)."""
    want = []
    for line in lines:
        for key, value in line.items():
            if key in ("mode", "epoch", "iter", "lr", "memory", "time", "data_time"):
                continue
            want.append((f"{line['mode']}/{key}", value))
        want.append(("learning_rate", line["lr"]))
        want.append(("momentum", None))
    bad = 0
    if len(want) != len(scalars):
        print(f"MISMATCH: {len(scalars)} scalars, the JSON log has {len(want)}")
        bad += 1
    for (tag, step, value), (wtag, wvalue) in zip(scalars, want):
        close = wvalue is None or math.isclose(value, wvalue, rel_tol=1e-5, abs_tol=1e-9)
        if tag != wtag or not close:
            print(f"MISMATCH at step {step}: {tag} = {value}, JSON {wtag} = {wvalue}")
            bad += 1
    return bad


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    arg, tmp, work = sys.argv[1], None, None
    if arg.endswith(".cfg"):
        tmp = tempfile.mkdtemp(prefix="tensorboard_check_")
        cfg = os.path.join(tmp, "tb.cfg")
        with open(cfg, "w") as f:
            f.write(f'base_ = ["{os.path.abspath(arg)}"];\n'
                    'log_config = { hooks = ( { type = "TextLoggerHook"; },'
                    ' { type = "TensorboardLoggerHook"; } ); };\n')
        work = os.path.join(tmp, "work")
        cmd = ["bin/mmdet-run", "--plugin-dir", "plugins", cfg, "--work-dir", work] + sys.argv[2:]
        print("+", " ".join(cmd))
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        arg = work
    try:
        path = find_event_file(arg)
        version, scalars = load(path)
        print(f"{path}: file_version {version!r}, {len(scalars)} scalars")
        bad = 0 if version == "brain.Event:2" else 1
        acc = event_accumulator.EventAccumulator(path)
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            points = acc.Scalars(tag)
            print(f"  {tag:32s} {len(points):4d} points, steps {points[0].step}..{points[-1].step},"
                  f" last {points[-1].value:.6g}")
        # the hook's default log_dir is <work_dir>/tf_logs
        folder = work or os.path.dirname(os.path.dirname(os.path.abspath(path)))
        lines = json_log(folder)
        if lines is not None:
            bad += compare(scalars, lines)
            print(f"compared with {len(lines)} lines of the JSON log in {folder}: {bad} mismatches")
        sys.exit(1 if bad else 0)
    finally:
        if tmp:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
