"""Mixed-precision fixtures (tests/unit/test_amp.c):

amp_bf16_round: f32 values (special values, ties, the overflow edge,
denormals, NaN payloads, random bit patterns) and torch 1.13's
`x.bfloat16().float()` of them.

amp_loss_scaler: the scale after each update of mmcv 1.7's LossScaler
(mmcv/runner/fp16_utils.py, mode "dynamic") for scripted overflow
patterns. Its rule is GradScaler's (PyTorch's CUDA-only kernel cannot run
here): an overflow divides the scale by the factor, `scale_window` clean
steps since the last change multiply it; LossScaler also keeps the scale
at or above 1, which the patterns never reach.
"""
import numpy as np
import torch
from mmcv.runner.fp16_utils import LossScaler

from common import save

rng = np.random.default_rng(19)

special = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan,
                    1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 1.0 + 2.0 ** -8 + 2.0 ** -20,   # tie to even, tie up, above
                    -(1.0 + 2.0 ** -8), 3.3895314e38, 3.4028235e38, -3.4028235e38,    # max bf16, f32 max -> inf
                    1e-45, 1e-40, -1e-39, 1.1754944e-38, 65536.0, 3.14159265, 0.1, 1e-3],
                   dtype=np.float32)
bits = np.array([0x7F800001, 0x7FC00000, 0xFF800001, 0x7FFFFFFF, 0x7F7FFFFF, 0x3F808000, 0x3F818000,
                 0x3F80FFFF, 0x00008000, 0x00018000, 0x807F8000], dtype=np.uint32).view(np.float32)
random_bits = rng.integers(0, 2 ** 32, size=4000, dtype=np.uint64).astype(np.uint32).view(np.float32)
normal = (rng.standard_normal(4000) * np.exp(rng.uniform(-30, 30, 4000))).astype(np.float32)
x = np.concatenate([special, bits, random_bits, normal]).astype(np.float32)
y = torch.from_numpy(x.copy()).bfloat16().float()
save("amp_bf16_round", {"x": x, "y": y})

# overflow patterns (1 = overflow at that step), window 3 and 5
patterns = {
    "a": ([0] * 7 + [1] + [0] * 4 + [1, 1] + [0] * 10 + [1] + [0] * 6, 3),
    "b": ([1, 1, 1] + [0] * 12 + [1] + [0] * 11, 5),
}
out = {}
for name, (pat, window) in patterns.items():
    s = LossScaler(init_scale=2.0 ** 16, mode="dynamic", scale_factor=2.0, scale_window=window)
    scales = []
    for ov in pat:
        s.update_scale(bool(ov))
        scales.append(s.loss_scale)
    out[name + "_overflow"] = np.array(pat, dtype=np.int64)
    out[name + "_window"] = np.array([window], dtype=np.int64)
    out[name + "_scale"] = np.array(scales, dtype=np.float32)
save("amp_loss_scaler", out)
