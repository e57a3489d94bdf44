"""Shared helpers for the golden-fixture scripts: write safetensors files
without the safetensors package (8-byte header length, JSON header, raw data).

Run the scripts with Debian's python3 (torch 1.13, torchvision) from the
repository root: /usr/bin/python3 tests/golden/<script>.py
"""
import json
import os
import struct

import numpy as np

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")

_DTYPES = {np.dtype("float32"): "F32", np.dtype("int64"): "I64",
           np.dtype("int32"): "I32", np.dtype("uint8"): "U8", np.dtype("bool"): "U8"}


def to_numpy(x):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype == np.float64:
        x = x.astype(np.float32)
    if x.dtype == np.bool_:
        x = x.astype(np.uint8)
    return np.array(x, order="C", copy=True)   # keeps 0-d arrays 0-d (ascontiguousarray would not)


def save(name, tensors, metadata=None):
    """Writes tests/fixtures/<name>.safetensors from a dict of arrays/tensors."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for key, value in tensors.items():
        arr = to_numpy(value)
        data = arr.tobytes()
        header[key] = {"dtype": _DTYPES[arr.dtype], "shape": list(arr.shape),
                       "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path = os.path.join(FIXTURES, name + ".safetensors")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    return path
