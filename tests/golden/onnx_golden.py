"""Golden fixture for the ONNX export (tests/unit/test_export_onnx.c): ONNX
Runtime's outputs of the models bin/mmdet-export-onnx writes for the tiny
RetinaNet of tests/configs/export/retinanet_tiny.cfg (the weights of
tests/fixtures/detector_retina_weights.safetensors), on the two images of
tests/fixtures/detector_batch.safetensors as one 64x96 input each.

For the model with post-processing (dets, labels) and the raw one
(--no-postprocess: cls_score_<l>, bbox_pred_<l>), exported at opset 11:
onnx.checker (full check, with shape inference) must pass, and ONNX
Runtime's outputs are saved with the SHA-256 of the .onnx file they came
from, so the C test knows its own export is the model that ran. Every other
opset from 12 to 17 is exported too, checked, and must give the same
outputs (to 1e-6) as opset 11.

The input is each image's pixels normalised as mmdet's Normalize (ImageNet
mean and std, float32), zero beyond its img_shape: the C test builds the
same tensor with tiny_detector_batch.

Needs `pip install --break-system-packages onnx onnxruntime` and a built
tree (make). Run from the repository root:

    /usr/bin/python3 tests/golden/onnx_golden.py
"""
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FIXTURES, save  # noqa: E402

CONFIG = "tests/configs/export/retinanet_tiny.cfg"
WEIGHTS = "tests/fixtures/detector_retina_weights.safetensors"
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


def load_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dt = {"F32": np.float32, "I64": np.int64, "U8": np.uint8}
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dt[v["dtype"]]).reshape(v["shape"])
    return out


def images():
    st = load_st(os.path.join(FIXTURES, "detector_batch.safetensors"))
    u8 = st["img_u8"]
    n, _, h, w = u8.shape
    img = np.zeros(u8.shape, np.float32)
    for i in range(n):
        ih, iw = st["meta%d.img_shape" % i]
        for c in range(3):
            img[i, c, :ih, :iw] = (u8[i, c, :ih, :iw].astype(np.float32) - MEAN[c]) / STD[c]
    return img


def export(path, opset, raw):
    cmd = ["bin/mmdet-export-onnx", CONFIG, WEIGHTS, "--plugin-dir", "plugins", "--out", path,
           "--shape", "64", "96", "--opset", str(opset)] + (["--no-postprocess"] if raw else [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == opset
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).digest()


def run(path, img):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs = [sess.run(None, {"input": img[i:i + 1]}) for i in range(img.shape[0])]
    return {n: np.concatenate([o[k] for o in outs]) for k, n in enumerate(names)}


def main():
    img = images()
    tensors = {}
    with tempfile.TemporaryDirectory() as tmp:
        ref = {}
        for raw in (False, True):
            tag = "raw" if raw else "post"
            for opset in range(11, 18):
                path = os.path.join(tmp, "%s_%d.onnx" % (tag, opset))
                digest = export(path, opset, raw)
                got = run(path, img)
                if opset == 11:
                    ref[tag] = got
                    tensors["sha256_" + tag] = np.frombuffer(digest, np.uint8)
                    for k, v in got.items():
                        tensors[k] = v
                else:
                    for k, v in got.items():
                        assert v.dtype == ref[tag][k].dtype and v.shape == ref[tag][k].shape, (tag, opset, k)
                        assert np.allclose(v, ref[tag][k], rtol=0, atol=1e-6), (tag, opset, k)
    dets, labels = tensors["dets"], tensors["labels"]
    for i in range(dets.shape[0]):
        n = int((dets[i, :, 4] > 0).sum())
        print("image %d: %d detections, scores %s, labels %s" % (i, n, dets[i, :n, 4], labels[i, :n]))
        assert n > 0, "no detections to compare"
    print("wrote", save("onnx_retina", tensors))


if __name__ == "__main__":
    main()
