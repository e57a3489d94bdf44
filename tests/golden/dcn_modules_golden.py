"""Goldens for mmcv's DCN / DCNv2 layers (DeformConv2dPack,
ModulatedDeformConv2dPack) and for checkpoints with old names.

The layers are written here as mmcv 1.7 defines them (a child nn.Conv2d
`conv_offset`; DCNv2 splits its output in three with torch.chunk, the
offsets cat(o1, o2), the mask sigmoid(third)) on torchvision's
deform_conv2d, with random weights (conv_offset too, so the offsets are
not zero). Their state dicts go into a .pth with torch.save under mmcv's
names, as mmdet checkpoints hold them:

  tests/fixtures/dcn_modules.pth: dcn.* (DCN 4->6, 3x3, padding 1,
    deform_groups 2), dcnv2.* (DCNv2 4->6, 3x3, stride 2, padding 2,
    dilation 2, bias), old.conv2.weight and old.conv2_offset.{weight,bias}
    (a DCN under its name before mmcv's version 2, which
    DeformConv2dPack._load_from_state_dict renames to conv2.conv_offset.*)
  tests/fixtures/dcn_modules.safetensors: x, gy_dcnv2, y_dcn, y_dcnv2, y_old,
    gx_dcnv2 (the input gradient of sum(y_dcnv2 * gy_dcnv2))
  tests/fixtures/fcos_old_names.pth: a tiny FCOSHead's state dict under
    the predictor names of early mmdet (fcos_cls, fcos_reg,
    fcos_centerness), which AnchorFreeHead._load_from_state_dict renames.

Run: /usr/bin/python3 tests/golden/dcn_modules_golden.py
"""
import os

import torch
from torch import nn
from torchvision.ops import deform_conv2d

from common import FIXTURES, save

torch.manual_seed(3)


class DCN(nn.Module):
    def __init__(self, cin, cout, k, stride=1, padding=0, dilation=1, deform_groups=1):
        super().__init__()
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) * 0.3)
        self.conv_offset = nn.Conv2d(cin, deform_groups * 2 * k * k, k, stride, padding, dilation, bias=True)

    def forward(self, x):
        off = self.conv_offset(x)
        return deform_conv2d(x, off, self.weight, None, self.stride, self.padding, self.dilation)


class DCNv2(nn.Module):
    def __init__(self, cin, cout, k, stride=1, padding=0, dilation=1, deform_groups=1):
        super().__init__()
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) * 0.3)
        self.bias = nn.Parameter(torch.randn(cout))
        self.conv_offset = nn.Conv2d(cin, deform_groups * 3 * k * k, k, stride, padding, dilation, bias=True)

    def forward(self, x):
        out = self.conv_offset(x)
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation,
                             mask=torch.sigmoid(mask))


def randomize(m):
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.5)


def main():
    x = torch.randn(2, 4, 7, 8)
    dcn, dcnv2, old = DCN(4, 6, 3, 1, 1, 1, 2), DCNv2(4, 6, 3, 2, 2, 2, 1), DCN(4, 4, 3, 1, 1)
    for m in (dcn, dcnv2, old):
        randomize(m)
    sd = {}
    for name, m in (("dcn", dcn), ("dcnv2", dcnv2)):
        for k, v in m.state_dict().items():
            sd[f"{name}.{k}"] = v.clone()
    osd = old.state_dict()
    sd["old.conv2.weight"] = osd["weight"].clone()
    sd["old.conv2_offset.weight"] = osd["conv_offset.weight"].clone()
    sd["old.conv2_offset.bias"] = osd["conv_offset.bias"].clone()
    torch.save(sd, os.path.join(FIXTURES, "dcn_modules.pth"))

    xg = x.clone().requires_grad_(True)
    y2 = dcnv2(xg)
    gy = torch.randn_like(y2)
    y2.backward(gy)
    save("dcn_modules", {"x": x, "y_dcn": dcn(x), "y_dcnv2": y2, "gy_dcnv2": gy, "gx_dcnv2": xg.grad,
                         "y_old": old(x)})

    # a tiny FCOSHead (num_classes 2, in 4, feat 8, one stacked conv, GN 4,
    # strides [8, 16]) under the early predictor names
    fc = {}
    for br in ("cls", "reg"):
        fc[f"{br}_convs.0.conv.weight"] = torch.randn(8, 4, 3, 3)
        fc[f"{br}_convs.0.gn.weight"] = torch.randn(8)
        fc[f"{br}_convs.0.gn.bias"] = torch.randn(8)
    for name, out in (("fcos_cls", 2), ("fcos_reg", 4), ("fcos_centerness", 1)):
        fc[f"{name}.weight"] = torch.randn(out, 8, 3, 3)
        fc[f"{name}.bias"] = torch.randn(out)
    fc["scales.0.scale"] = torch.tensor(1.5)
    fc["scales.1.scale"] = torch.tensor(0.5)
    torch.save(fc, os.path.join(FIXTURES, "fcos_old_names.pth"))


if __name__ == "__main__":
    main()
