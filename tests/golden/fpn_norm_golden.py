"""Golden fixture for the FPN neck with a norm_cfg (tests/unit/test_fpn.c).

mmdet's FPN builds every lateral and output ConvModule with the norm_cfg:
the conv loses its bias (bias='auto') and gains a norm child named by
mmcv's build_norm_layer ("gn" for GroupNorm, "bn" for BatchNorm2d), applied
before the (absent) activation. The FPN of backbones_golden.py is reused
with its ConvModules swapped for such ones. BN runs in training mode: each
call normalises with its own batch statistics and updates the running ones.
Weights and inputs are f32 values; the network runs in float64.

Writes tests/fixtures/fpn_norm.safetensors. Run from the repository root:
    /usr/bin/python3 tests/golden/fpn_norm_golden.py
"""
import torch
import torch.nn as nn

from backbones_golden import FPN, randomize
from common import save

FPN_IN = [8, 16, 32, 64]
FPN_OUT = 8


class NormConvModule(nn.Module):
    """mmcv ConvModule with a norm_cfg and act_cfg None."""

    def __init__(self, conv, norm):
        super().__init__()
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              bias=False)
        self.norm_name = "gn" if norm == "GN" else "bn"
        layer = nn.GroupNorm(4, conv.out_channels) if norm == "GN" else nn.BatchNorm2d(conv.out_channels)
        self.add_module(self.norm_name, layer)

    def forward(self, x):
        return getattr(self, self.norm_name)(self.conv(x))


CASES = {
    # RetinaNet's neck with GN (num_groups 4 of 8 channels)
    "gn": dict(norm="GN", batch=1, kw=dict(start_level=1, add_extra_convs="on_input", num_outs=5),
               shapes=[(17, 25), (9, 13), (5, 7), (3, 4)]),
    # Faster R-CNN's neck with BN in training mode (batch 2: the 1x1 levels need it)
    "bn": dict(norm="BN", batch=2, kw=dict(num_outs=5), shapes=[(17, 25), (9, 13), (5, 7), (3, 4)]),
}


def main():
    gen = torch.Generator().manual_seed(123)
    out = {}
    for tag, case in CASES.items():
        net = FPN(FPN_IN, FPN_OUT, **case["kw"])
        for lst in (net.lateral_convs, net.fpn_convs):
            for i in range(len(lst)):
                lst[i] = NormConvModule(lst[i].conv, case["norm"])
        randomize(net, gen)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, nn.GroupNorm):
                    m.weight.copy_(torch.rand(m.num_channels, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(m.num_channels, generator=gen) * 0.1)
        net.train()
        net.double()   # float64: the exact answer for the f32 inputs (tiny GN groups cancel in f32)
        for k, v in net.state_dict().items():
            out[f"{tag}.w.{k}"] = v.clone()
        ins = [torch.randn(case["batch"], c, h, w, generator=gen).double().requires_grad_(True)
               for c, (h, w) in zip(FPN_IN, case["shapes"])]
        outs = net(ins)
        gs = [torch.randn(o.shape, generator=gen).double() for o in outs]
        sum((o * g).sum() for o, g in zip(outs, gs)).backward()
        for i, x in enumerate(ins):
            out[f"{tag}.in{i}"] = x
            if x.grad is not None:
                out[f"{tag}.grad.in{i}"] = x.grad
        for i, (o, g) in enumerate(zip(outs, gs)):
            out[f"{tag}.out{i}"] = o
            out[f"{tag}.gout{i}"] = g
        params = dict(net.named_parameters())
        norm = "gn" if case["norm"] == "GN" else "bn"
        last = len(net.fpn_convs) - 1
        for n in ("lateral_convs.0.conv.weight", f"lateral_convs.1.{norm}.weight", f"fpn_convs.0.{norm}.bias",
                  f"fpn_convs.{last}.conv.weight", f"fpn_convs.{last}.{norm}.weight"):
            out[f"{tag}.grad.{n}"] = params[n].grad
        if case["norm"] == "BN":
            bufs = dict(net.named_buffers())
            for n in ("fpn_convs.0.bn.running_mean", "lateral_convs.3.bn.running_var"):
                out[f"{tag}.after.{n}"] = bufs[n]
    save("fpn_norm", out)


if __name__ == "__main__":
    main()
