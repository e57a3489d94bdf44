"""Fixture for the safetensors reader: a file written by Python (this
module's writer, the same layout as the `safetensors` package)."""
import numpy as np

from common import save

save("safetensors_py", {
    "a.weight": np.arange(12, dtype=np.float32).reshape(3, 4) / 7.0,
    "b.index": np.array([5, -3, 2**40], dtype=np.int64),
    "c.mask": np.array([[1, 0], [0, 1]], dtype=np.uint8),
    "d.empty": np.zeros((0, 4), dtype=np.float32),
}, metadata={"epoch": 3, "CLASSES": "circle,square"})
