"""Golden fixtures for the ONNX export (tests/unit/test_export_onnx.c): ONNX
Runtime's outputs of the models bin/mmdet-export-onnx writes for the tiny
RetinaNet of tests/configs/export/retinanet_tiny.cfg (the weights of
tests/fixtures/detector_retina_weights.safetensors) and the tiny Faster
R-CNN of tests/configs/export/faster_rcnn_tiny.cfg (the weights of
tests/fixtures/detector_faster_weights.safetensors), on the two images of
tests/fixtures/detector_batch.safetensors as one 64x96 input each.

onnx_retina: the fixed-size RetinaNet (below). onnx_retina_dynamic: the
RetinaNet exported with --dynamic-export (traced at 64x96), run on both
images as one batch of 2 at 64x96 and again zero-padded to 96x160 (the
pixels past the images are zeros of the normalised input), and each image
alone at 96x160: outputs at the two sizes and two batch sizes of one model.
onnx_faster: the Faster R-CNN (dets, labels) exported at opset 11 (RoiAlign
with mmcv's -0.5 box shift) and at opset 16 (coordinate_transformation_mode
half_pixel), and with --dynamic-export (opset 16) run as the dynamic
RetinaNet, with the files' SHA-256.

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
FASTER_CONFIG = "tests/configs/export/faster_rcnn_tiny.cfg"
FASTER_WEIGHTS = "tests/fixtures/detector_faster_weights.safetensors"
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


def export(path, opset, raw, config=CONFIG, weights=WEIGHTS, extra=()):
    cmd = ["bin/mmdet-export-onnx", config, weights, "--plugin-dir", "plugins", "--out", path,
           "--shape", "64", "96", "--opset", str(opset)] + (["--no-postprocess"] if raw else []) + list(extra)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == opset
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).digest()


def run(path, img, batch=1):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs = [sess.run(None, {"input": img[i:i + batch]}) for i in range(0, img.shape[0], batch)]
    return {n: np.concatenate([o[k] for o in outs]) for k, n in enumerate(names)}


def score_margin(path, img, thr):
    """The smallest distance of a candidate score of the last
    NonMaxSuppression (the detections') from score_thr: no score sits on
    the threshold, where float differences could flip a detection."""
    model = onnx.load(path)
    nms = [n for n in model.graph.node if n.op_type == "NonMaxSuppression"][-1]
    model.graph.output.extend([onnx.helper.make_empty_tensor_value_info(nms.input[1])])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    scores = np.concatenate([sess.run([nms.input[1]], {"input": img[i:i + 1]})[0].ravel()
                             for i in range(img.shape[0])])
    return float(np.abs(scores - thr).min())


def report(tag, dets, labels):
    for i in range(dets.shape[0]):
        n = int((dets[i, :, 4] > 0).sum())
        print("%s image %d: %d detections, scores %s, labels %s" % (tag, i, n, dets[i, :n, 4], labels[i, :n]))
        assert n > 0, "no detections to compare"


def dynamic_retina(tmp, img):
    """One --dynamic-export model at two sizes and two batch sizes."""
    tensors = {}
    big = np.zeros((2, 3, 96, 160), np.float32)
    big[:, :, :64, :96] = img
    ref = None
    for opset in range(11, 18):
        path = os.path.join(tmp, "dyn_%d.onnx" % opset)
        digest = export(path, opset, False, extra=["--dynamic-export"])
        got = {"a": run(path, img, 2), "b": run(path, big, 2), "b1": run(path, big, 1)}
        for k in ("dets", "labels"):
            assert np.allclose(got["b"][k], got["b1"][k], rtol=0, atol=1e-5), ("batch 2 vs 1", opset, k)
        if opset == 11:
            ref = got
            tensors["sha256"] = np.frombuffer(digest, np.uint8)
            for size in ("a", "b"):
                for k, v in got[size].items():
                    tensors["%s_%s" % (k, size)] = v
        else:
            for size in ("a", "b"):
                for k, v in got[size].items():
                    assert v.shape == ref[size][k].shape and np.allclose(v, ref[size][k], rtol=0, atol=1e-6), \
                        ("dynamic", opset, size, k)
    report("dynamic 64x96", tensors["dets_a"], tensors["labels_a"])
    report("dynamic 96x160", tensors["dets_b"], tensors["labels_b"])
    margin = score_margin(os.path.join(tmp, "dyn_11.onnx"), big, 0.42)
    print("retina dynamic 96x160: candidate scores at least %g from score_thr" % margin)
    assert margin > 1e-4
    print("wrote", save("onnx_retina_dynamic", tensors))


def faster(tmp, img):
    """Faster R-CNN at every opset: 11 to 15 as opset 11, 16 and 17 as 16."""
    tensors = {}
    got = {}
    for opset in range(11, 18):
        path = os.path.join(tmp, "faster_%d.onnx" % opset)
        digest = export(path, opset, False, FASTER_CONFIG, FASTER_WEIGHTS)
        got[opset] = run(path, img)
        if opset in (11, 16):
            tensors["sha256_%d" % opset] = np.frombuffer(digest, np.uint8)
            for k, v in got[opset].items():
                tensors["%s_%d" % (k, opset)] = v
        base = 11 if opset < 16 else 16
        for k, v in got[opset].items():
            assert np.allclose(v, got[base][k], rtol=0, atol=1e-6), ("faster", opset, k)
    margin = score_margin(os.path.join(tmp, "faster_11.onnx"), img, 0.05)
    print("faster: candidate scores at least %g from score_thr" % margin)
    assert margin > 1e-3
    report("faster opset 11", tensors["dets_11"], tensors["labels_11"])
    report("faster opset 16", tensors["dets_16"], tensors["labels_16"])
    print("opset 11 vs 16: max difference of dets %g" % np.abs(tensors["dets_11"] - tensors["dets_16"]).max())
    # --dynamic-export: both images as one batch at 64x96 and at 96x160
    path = os.path.join(tmp, "faster_dyn.onnx")
    digest = export(path, 16, False, FASTER_CONFIG, FASTER_WEIGHTS, ["--dynamic-export"])
    big = np.zeros((2, 3, 96, 160), np.float32)
    big[:, :, :64, :96] = img
    tensors["sha256_dyn"] = np.frombuffer(digest, np.uint8)
    for size, x in (("a", img), ("b", big)):
        got2, got1 = run(path, x, 2), run(path, x, 1)
        for k, v in got2.items():
            assert np.allclose(v, got1[k], rtol=0, atol=1e-5), ("faster dynamic batch 2 vs 1", size, k)
            tensors["%s_dyn_%s" % (k, size)] = v
        report("faster dynamic " + size, tensors["dets_dyn_" + size], tensors["labels_dyn_" + size])
        margin = score_margin(path, x, 0.05)
        print("faster dynamic %s: candidate scores at least %g from score_thr" % (size, margin))
        assert margin > 1e-3
    print("wrote", save("onnx_faster", tensors))


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
        margin = score_margin(os.path.join(tmp, "post_11.onnx"), img, 0.42)
        print("retina: candidate scores at least %g from score_thr" % margin)
        assert margin > 1e-4
        report("retina", tensors["dets"], tensors["labels"])
        print("wrote", save("onnx_retina", tensors))
        dynamic_retina(tmp, img)
        faster(tmp, img)


if __name__ == "__main__":
    main()
