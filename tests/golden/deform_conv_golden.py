"""Goldens for deformable convolution (mmcv's deform_conv2d and
modulated_deform_conv2d) from an independent implementation,
torchvision.ops.deform_conv2d (mask supported since torchvision 0.9):
forward and the gradients of the input, offsets, mask, weight and bias.

mmcv and torchvision sample alike (zero outside (-1, H) x (-1, W), missing
neighbours zero); they differ only in the offset gradient of a tap that
lands exactly on -1 (mmcv: 0; torchvision: the one-sided slope). Offsets
that would put a tap there are moved by one pixel, so every case compares
the rule both share; tests/unit/test_ops_deform_conv.c checks the -1 tap
by hand.

Writes tests/fixtures/deform_conv.safetensors. Keys per case i: ci_x,
ci_off, ci_mask (modulated only), ci_w, ci_b (with bias only), ci_p (i64:
sh, sw, ph, pw, dh, dw, groups, deform_groups, modulated), ci_y, ci_gy,
ci_gx, ci_goff, ci_gmask, ci_gw, ci_gb.

Run: /usr/bin/python3 tests/golden/deform_conv_golden.py
"""
import numpy as np
import torch
from torchvision.ops import deform_conv2d

from common import save

torch.manual_seed(0)

# (N, C, H, W, O, kh, kw, stride, pad, dil, groups, dg, modulated, bias,
#  offset scale, integer offsets)
CASES = [
    (2, 4, 7, 6, 6, 3, 3, (1, 1), (1, 1), (1, 1), 1, 1, False, False, 1.5, False),
    (1, 4, 9, 8, 4, 3, 3, (2, 2), (2, 2), (2, 2), 2, 2, True, True, 2.0, False),
    (2, 6, 5, 5, 4, 3, 3, (1, 1), (1, 1), (1, 1), 2, 1, True, True, 6.0, False),  # far outside
    (1, 4, 6, 7, 6, 3, 3, (1, 1), (1, 1), (1, 1), 1, 2, True, False, 3.0, True),  # integer taps
    (2, 4, 8, 6, 4, 3, 2, (2, 1), (1, 0), (1, 2), 2, 2, False, False, 2.5, False),  # DCNv1, groups
    (1, 8, 6, 6, 4, 1, 1, (1, 1), (0, 0), (1, 1), 1, 4, True, True, 1.0, False),  # 1x1, dg 4
    (1, 4, 5, 6, 4, 3, 3, (2, 2), (1, 1), (1, 1), 1, 1, False, False, 2.0, True),  # DCNv1 integer
]


def out_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def avoid_minus_one(off, H, W, kh, kw, stride, pad, dil, dg):
    """Moves each offset that puts its tap exactly on -1 by one pixel."""
    N, _, OH, OW = off.shape
    o = off.view(N, dg, kh * kw, 2, OH, OW)
    oh = torch.arange(OH).view(1, OH, 1) * stride[0] - pad[0]
    ow = torch.arange(OW).view(1, 1, OW) * stride[1] - pad[1]
    for k in range(kh * kw):
        i, j = divmod(k, kw)
        gh = (oh + i * dil[0]).float()
        gw = (ow + j * dil[1]).float()
        for a, grid in ((0, gh), (1, gw)):
            pos = grid + o[:, :, k, a]
            o[:, :, k, a] = torch.where(pos == -1, o[:, :, k, a] - 1, o[:, :, k, a])
    return o.view_as(off)


def main():
    out = {}
    for i, (N, C, H, W, O, kh, kw, st, pad, dil, G, dg, mod, bias, scale, integer) in enumerate(CASES):
        OH, OW = out_size(H, kh, st[0], pad[0], dil[0]), out_size(W, kw, st[1], pad[1], dil[1])
        x = torch.randn(N, C, H, W)
        if integer:
            off = torch.randint(-3, 4, (N, 2 * dg * kh * kw, OH, OW)).float()
        else:
            off = torch.randn(N, 2 * dg * kh * kw, OH, OW) * scale
        off = avoid_minus_one(off, H, W, kh, kw, st, pad, dil, dg)
        mask = torch.rand(N, dg * kh * kw, OH, OW) if mod else None
        w = torch.randn(O, C // G, kh, kw) * 0.3
        b = torch.randn(O) if bias else None
        ins = [t for t in (x, off, mask, w, b) if t is not None]
        for t in ins:
            t.requires_grad_(True)
        y = deform_conv2d(x, off, w, b, stride=st, padding=pad, dilation=dil, mask=mask)
        gy = torch.randn_like(y)
        y.backward(gy)
        k = f"c{i}_"
        out[k + "x"], out[k + "off"], out[k + "w"] = x, off, w
        out[k + "gx"], out[k + "goff"], out[k + "gw"] = x.grad, off.grad, w.grad
        if mod:
            out[k + "mask"], out[k + "gmask"] = mask, mask.grad
        if bias:
            out[k + "b"], out[k + "gb"] = b, b.grad
        out[k + "p"] = np.array([st[0], st[1], pad[0], pad[1], dil[0], dil[1], G, dg, int(mod)], np.int64)
        out[k + "y"], out[k + "gy"] = y, gy
    print(save("deform_conv", out))


if __name__ == "__main__":
    main()
