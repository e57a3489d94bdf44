"""Golden fixtures for CARAFE (tests/unit/test_carafe.c):

mmcv 1.7's carafe op has CUDA kernels only (carafe and carafe_naive alike;
no CPU path), so the reference here is an independent PyTorch formulation
of its formula: the features unfolded into k x k columns (zeros outside the
map, which is mmcv's skipping of those taps), each column repeated over the
s x s output pixels it serves, weighted by the group's kernel and summed.
Gradients are autograd's through that formulation.

- carafe.safetensors, "op<i>.*": features, masks (softmax-normalised
  kernels, as CARAFEPack feeds them, and a raw one), out, and the gradients
  of sum(out * g) in both inputs, for several (k, G, s);
- "head.*": mmdet 2.28.2's FCNMaskHead with upsample_cfg type carafe, built
  by mmdet's build_head (mmcv's CARAFEPack under mmdet's names), with random
  weights, its CARAFE call replaced by the formulation above: forward,
  loss_mask and the weight gradients. Where mmdet does not import yet,
  `Head` below restates that head in PyTorch under mmdet's state-dict
  names (ConvModule, mmcv's CARAFEPack, conv_logits; loss_mask is
  mask_cross_entropy); the fixture's metadata says which made it.

Run from the repository root:
    /usr/bin/python3 tests/golden/carafe_golden.py
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402

torch.set_num_threads(1)


def carafe_ref(x, masks, k, G, s):
    N, C, H, W = x.shape
    cols = F.unfold(x, k, padding=(k - 1) // 2).view(N, G, C // G, k * k, H, W)
    cols = cols.repeat_interleave(s, dim=4).repeat_interleave(s, dim=5)
    m = masks.view(N, G, 1, k * k, H * s, W * s)
    return (cols * m).sum(3).reshape(N, C, H * s, W * s)


OPS = [  # (N, C, H, W, k, G, s, normalised)
    (2, 4, 5, 6, 3, 2, 2, True),
    (1, 3, 4, 4, 5, 1, 3, True),
    (2, 6, 3, 5, 1, 3, 2, False),
    (1, 4, 3, 3, 5, 4, 1, False),
]


def op_fixtures(out):
    g = torch.Generator().manual_seed(5)
    for i, (N, C, H, W, k, G, s, norm) in enumerate(OPS):
        x = torch.randn(N, C, H, W, generator=g, dtype=torch.float64)
        m = torch.randn(N, G * k * k, H * s, W * s, generator=g, dtype=torch.float64)
        if norm:
            m = F.softmax(m.view(N, G, k * k, H * s, W * s), 2).view_as(m)
        x.requires_grad_(True)
        m.requires_grad_(True)
        y = carafe_ref(x, m, k, G, s)
        go = torch.randn(y.shape, generator=g, dtype=torch.float64)
        (y * go).sum().backward()
        p = "op%d." % i
        out[p + "cfg"] = torch.tensor([k, G, s])
        out[p + "x"], out[p + "masks"], out[p + "out"] = x.float(), m.float(), y.float()
        out[p + "g"], out[p + "gx"], out[p + "gmasks"] = go.float(), x.grad.float(), m.grad.float()


HEAD = dict(type="FCNMaskHead", num_convs=1, roi_feat_size=5, in_channels=4, conv_out_channels=6, num_classes=3,
            upsample_cfg=dict(type="carafe", scale_factor=2, up_kernel=3, up_group=2, encoder_kernel=3,
                              encoder_dilation=2, compressed_channels=5),
            loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0))
GRAD_PARAMS = ["convs.0.conv.weight", "upsample.channel_compressor.weight", "upsample.content_encoder.weight",
               "upsample.content_encoder.bias", "conv_logits.weight"]


class CARAFEPackRef(nn.Module):
    """mmcv 1.7's CARAFEPack, restated."""

    def __init__(self, channels, scale_factor, up_kernel, up_group, encoder_kernel, encoder_dilation,
                 compressed_channels):
        super().__init__()
        self.scale_factor, self.up_kernel, self.up_group = scale_factor, up_kernel, up_group
        self.channel_compressor = nn.Conv2d(channels, compressed_channels, 1)
        self.content_encoder = nn.Conv2d(compressed_channels, up_kernel * up_kernel * up_group * scale_factor ** 2,
                                         encoder_kernel, padding=int((encoder_kernel - 1) * encoder_dilation / 2),
                                         dilation=encoder_dilation)

    def forward(self, x):
        mask = F.pixel_shuffle(self.content_encoder(self.channel_compressor(x)), self.scale_factor)
        n, c, h, w = mask.size()
        mask = F.softmax(mask.view(n, int(c / float(self.up_kernel ** 2)), -1, h, w), dim=2).view(n, c, h, w)
        return carafe_ref(x, mask, self.up_kernel, self.up_group, self.scale_factor)


class ConvModuleRef(nn.Module):
    def __init__(self, cin, cout, k):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=(k - 1) // 2)

    def forward(self, x):
        return F.relu(self.conv(x))


class Head(nn.Module):
    """mmdet 2.28's FCNMaskHead with upsample_cfg carafe (HEAD), restated."""

    def __init__(self, cfg):
        super().__init__()
        self.convs = nn.ModuleList([ConvModuleRef(cfg["in_channels"], cfg["conv_out_channels"], 3)])
        up = {k: v for k, v in cfg["upsample_cfg"].items() if k != "type"}
        self.upsample = CARAFEPackRef(cfg["conv_out_channels"], **up)
        self.conv_logits = nn.Conv2d(cfg["conv_out_channels"], cfg["num_classes"], 1)

    def forward(self, x):
        for c in self.convs:
            x = c(x)
        return self.conv_logits(self.upsample(x))

    def loss(self, pred, targets, labels):
        sl = pred[torch.arange(pred.size(0)), labels]
        return {"loss_mask": F.binary_cross_entropy_with_logits(sl, targets, reduction="mean")[None]}


def head_fixture(out):
    try:
        from mmcv import ConfigDict
        from mmcv.ops.carafe import CARAFEPack

        from mmdet.models import build_head
        CARAFEPack.feature_reassemble = lambda self, x, mask: carafe_ref(x, mask, self.up_kernel, self.up_group,
                                                                         self.scale_factor)
        head = build_head(ConfigDict(HEAD))
        head.init_weights()
        source = "mmdet 2.28.2 FCNMaskHead (carafe through the formulation above)"
    except ImportError:
        head = Head(HEAD)
        source = "Head (PyTorch re-statement of mmdet 2.28.2 FCNMaskHead with CARAFEPack)"
    print("source:", source)
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for name, t in head.state_dict().items():
            if t.dtype.is_floating_point:
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)
    for k, v in head.state_dict().items():
        out["head.w." + k] = v
    head.train()
    x = torch.randn(3, 4, 5, 5, generator=g)
    targets = (torch.rand(3, 10, 10, generator=g) > 0.5).float()
    labels = torch.tensor([2, 0, 1])
    pred = head(x)
    loss = head.loss(pred, targets, labels)["loss_mask"]
    loss.backward()
    params = dict(head.named_parameters())
    out["head.x"], out["head.targets"], out["head.labels"] = x, targets, labels
    out["head.mask_pred"], out["head.loss_mask"] = pred, loss.reshape(())
    for p in GRAD_PARAMS:
        out["head.g." + p] = params[p].grad
    return source


if __name__ == "__main__":
    out = {}
    op_fixtures(out)
    source = head_fixture(out)
    save("carafe", out, {"source": source})
