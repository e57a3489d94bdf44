"""Golden fixtures for group_norm (tests/unit/test_ops_group_norm.c).

Run from the repository root: /usr/bin/python3 tests/golden/group_norm_golden.py
torch.nn.functional.group_norm on f32 inputs, evaluated in float64 (the
exact answer for those inputs, which our double statistics should reach),
with a fixed random upstream gradient `gy`; outputs and the gradients of x,
weight and bias are stored as f32. Case k stores gn<k>_x, _w, _b (when
affine), _gy, _y, _gx, _gw, _gb and gn<k>_p = [num_groups, affine].
"""
import torch
import torch.nn.functional as F

from common import save

torch.manual_seed(0)

# (shape, num_groups, affine, mean offset)
CASES = [
    ((2, 6, 5, 7), 3, True, 0.0),      # groups in between, odd sizes
    ((1, 4, 3, 3), 1, True, 0.0),      # one group (LayerNorm-like)
    ((3, 8, 4, 5), 8, True, 0.0),      # one channel per group (InstanceNorm-like)
    ((2, 6), 2, True, 0.0),            # no spatial dims
    ((2, 4, 9), 2, False, 0.0),        # 3-D input, no affine
    ((2, 8, 6, 6), 4, True, 100.0),    # large mean: two-pass statistics
    ((2, 32, 3, 5), 32, True, 0.0),    # mmdet's num_groups = 32
    ((1, 64, 7, 9), 32, True, 0.0),    # two channels per group
    ((0, 6, 4, 4), 3, True, 0.0),      # empty batch
]


def main():
    out = {}
    for k, (shape, g, affine, off) in enumerate(CASES):
        p = f"gn{k}_"
        c = shape[1]
        x = (torch.randn(*shape) + off).double().requires_grad_(True)
        w = (torch.rand(c) + 0.5).double().requires_grad_(True) if affine else None
        b = torch.randn(c).double().requires_grad_(True) if affine else None
        y = F.group_norm(x, g, w, b, eps=1e-5)
        gy = torch.randn_like(y)
        ins = [x] + ([w, b] if affine else [])
        gs = torch.autograd.grad(y, ins, gy, allow_unused=True)
        out.update({p + "x": x, p + "gy": gy, p + "y": y, p + "gx": gs[0]})
        if affine:
            out.update({p + "w": w, p + "b": b, p + "gw": gs[1], p + "gb": gs[2]})
        out[p + "p"] = torch.tensor([g, int(affine)], dtype=torch.int64)
    save("group_norm", out)


if __name__ == "__main__":
    main()
