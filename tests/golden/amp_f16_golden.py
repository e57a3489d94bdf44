"""fp16 rounding fixture (tests/unit/test_amp.c): f32 values and torch
1.13's `x.half().float()` of them (IEEE binary16, round to nearest even).

The values: special values, ties at every kind of boundary (between
normals, at the overflow edge 65520, between subnormals, at the smallest
subnormal and at the subnormal/normal border), NaN payloads, random bit
patterns, and random values across fp16's range and beyond.
"""
import numpy as np
import torch

from common import save

rng = np.random.default_rng(23)

e = 2.0 ** -24   # the smallest fp16 subnormal
special = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan,
                    1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -11 + 2.0 ** -20,   # tie to even, tie up, above
                    -(1.0 + 3 * 2.0 ** -11), 65504.0, 65519.0, 65519.996, 65520.0, -65520.0, 65536.0, 1e6,
                    3.4028235e38, 2.0 ** -14, -(2.0 ** -14), 2.0 ** -14 - e / 2, 2.0 ** -14 - e / 2 - 2.0 ** -40,
                    1023 * e, e, -e, e / 2, e / 2 + 2.0 ** -50, 3 * e / 2, 5 * e / 2, 7 * e / 2, e / 4, 1e-45,
                    1e-40, 1.1754944e-38, 3.14159265, 0.1, 1e-3, 1e-5, 6e-8, 2049.0, 2051.0, 4097.0],
                   dtype=np.float32)
bits = np.array([0x7F800001, 0x7FC00000, 0xFF800001, 0x7FFFFFFF, 0x7F7FFFFF, 0x477FF000, 0x477FEFFF,
                 0x38800000, 0x387FFFFF, 0x33000000, 0x33000001, 0x32FFFFFF, 0x3F801000, 0x3F803000,
                 0x3F800FFF, 0xB3800000, 0x33C00000], dtype=np.uint32).view(np.float32)
random_bits = rng.integers(0, 2 ** 32, size=4000, dtype=np.uint64).astype(np.uint32).view(np.float32)
# magnitudes 2^-30 .. 2^18: subnormals, normals and overflows
wide = (rng.choice([-1.0, 1.0], 4000) * np.exp2(rng.uniform(-30, 18, 4000))).astype(np.float32)
# exact ties between two fp16 neighbours at random exponents (normal and subnormal)
m = rng.integers(0, 2 ** 11, size=500)
ex = rng.integers(-25, 15, size=500)
ties = ((2 * m + 1) * np.exp2(ex.astype(np.float64) - 11)).astype(np.float32)
x = np.concatenate([special, bits, random_bits, wide, ties]).astype(np.float32)
y = torch.from_numpy(x.copy()).half().float()
save("amp_f16_round", {"x": x, "y": y})
