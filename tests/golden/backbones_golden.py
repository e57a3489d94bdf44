"""Golden fixtures for the ResNet backbone and the FPN neck.

torchvision's ResNet has no `base_channels`, `style`, `frozen_stages` or
`norm_eval`, so ResNet is written here with mmdet 2.x's semantics
(mmdet/models/backbones/resnet.py) and state_dict names; the script checks
first that, at full width, it loads torchvision's resnet18/resnet50 state
dicts strictly and gives torchvision's outputs. The fixtures then use narrow
networks (base_channels 8 and 4) to stay small.

FPN is written as mmdet 2.x defines it (mmdet/models/necks/fpn.py with
mmcv's ConvModule, act_cfg None, norm_cfg None): lateral 1x1 convs, top-down
nearest upsampling to the size of the lower level (or scale_factor when
upsample_cfg has one), 3x3 output convs, extra levels by max_pool2d(1, 2) or
stride-2 convs on the input, lateral or output.

Writes tests/fixtures/backbones_resnet.safetensors and
tests/fixtures/backbones_fpn.safetensors. Run from the repository root:
    /usr/bin/python3 tests/golden/backbones_golden.py
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from common import save

torch.set_num_threads(1)


# ----------------------------------------------------------------- ResNet --

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None, style="pytorch"):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)   # mmdet: no dilation here
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None, style="pytorch"):
        super().__init__()
        s1, s2 = (1, stride) if style == "pytorch" else (stride, 1)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, s1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, s2, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


ARCH = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}


class ResNet(nn.Module):
    """mmdet.models.backbones.ResNet (deep_stem False, avg_down False, BN)."""

    def __init__(self, depth, base_channels=64, num_stages=4, strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1),
                 out_indices=(0, 1, 2, 3), style="pytorch", frozen_stages=-1, norm_eval=True):
        super().__init__()
        block, blocks = ARCH[depth]
        self.out_indices, self.frozen_stages, self.norm_eval = out_indices, frozen_stages, norm_eval
        self.conv1 = nn.Conv2d(3, base_channels, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_channels)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = base_channels
        self.res_layers = []
        for i in range(num_stages):
            planes = base_channels * 2 ** i
            stride, dilation = strides[i], dilations[i]
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = nn.Sequential(nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
                                           nn.BatchNorm2d(planes * block.expansion))
            layers = [block(inplanes, planes, stride, dilation, downsample, style)]
            inplanes = planes * block.expansion
            layers += [block(inplanes, planes, 1, dilation, None, style) for _ in range(1, blocks[i])]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
            self.res_layers.append(f"layer{i + 1}")
        self._freeze_stages()

    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            for m in (self.conv1, self.bn1):
                m.eval()
                for p in m.parameters():
                    p.requires_grad = False
        for i in range(1, self.frozen_stages + 1):
            m = getattr(self, f"layer{i}")
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return outs


def check_against_torchvision():
    """Same names and numbers as torchvision at full width."""
    for depth, ctor in ((18, torchvision.models.resnet18), (50, torchvision.models.resnet50)):
        tv = ctor().eval()
        sd = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
        ours = ResNet(depth).eval()
        ours.load_state_dict(sd, strict=True)
        x = torch.randn(1, 3, 64, 64)
        t = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        for i, out in enumerate(ours(x)):
            t = getattr(tv, f"layer{i + 1}")(t)
            assert torch.allclose(out, t, atol=1e-5), (depth, i)


def randomize(net, gen):
    """Weights with mmdet's kaiming (fan_out) scale; BN affine and running
    statistics away from their identity values."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_out) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.num_batches_tracked.fill_(3)


def resnet_case(out, tag, net, x, gen, grad_names, state_names=(), with_input_grad=True):
    """Forward, then backward of sum(out_i * g_i) for fixed random g_i."""
    x = x.clone().requires_grad_(True)
    feats = net(x)
    gs = [torch.randn(f.shape, generator=gen) for f in feats]
    loss = sum((f * g).sum() for f, g in zip(feats, gs))
    loss.backward()
    params = dict(net.named_parameters())
    for i, (f, g) in enumerate(zip(feats, gs)):
        out[f"{tag}.out{i}"] = f
        out[f"{tag}.gout{i}"] = g
    if with_input_grad:
        out[f"{tag}.grad.input"] = x.grad
    for n in grad_names:
        out[f"{tag}.grad.{n}"] = params[n].grad
    sd = net.state_dict()
    for n in state_names:
        out[f"{tag}.after.{n}"] = sd[n].clone()


def make_resnet():
    gen = torch.Generator().manual_seed(1234)
    out = {}

    # ResNet-18 shape, base_channels 4: norm_eval (BN on running stats).
    r18 = ResNet(18, base_channels=4)
    randomize(r18, gen)
    for k, v in r18.state_dict().items():
        out[f"r18.w.{k}"] = v.clone()
    x18 = torch.randn(2, 3, 64, 96, generator=gen)
    out["r18.input"] = x18
    r18.train()
    resnet_case(out, "r18", r18, x18, gen,
                ["conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                 "layer3.1.conv2.weight", "layer4.1.bn2.bias"])

    # The same weights with frozen_stages 1 and norm_eval False, in train
    # mode: stem and layer1 on running stats, later BN on batch stats.
    r18f = ResNet(18, base_channels=4, frozen_stages=1, norm_eval=False)
    r18f.load_state_dict({k[6:]: v for k, v in out.items() if k.startswith("r18.w.")})
    r18f.train()
    resnet_case(out, "r18f", r18f, x18, gen,
                ["layer2.0.conv1.weight", "layer2.0.bn1.weight", "layer3.1.conv2.weight"],
                ["layer1.0.bn1.running_mean", "layer2.0.bn1.running_mean", "layer2.0.bn1.running_var",
                 "layer4.1.bn2.running_var", "layer2.0.bn1.num_batches_tracked"], with_input_grad=False)

    # ResNet-50 shape, base_channels 4, style pytorch; out_indices (1, 2, 3).
    r50 = ResNet(50, base_channels=4, out_indices=(1, 2, 3))
    randomize(r50, gen)
    for k, v in r50.state_dict().items():
        out[f"r50.w.{k}"] = v.clone()
    x50 = torch.randn(1, 3, 64, 64, generator=gen)
    out["r50.input"] = x50
    r50.eval()
    resnet_case(out, "r50", r50, x50, gen,
                ["conv1.weight", "layer1.0.conv2.weight", "layer3.0.downsample.1.weight", "layer4.2.conv3.weight"])

    # Same weights, style caffe (stride on the first 1x1), dilation 2 on the
    # last stage with stride 1 (as dilated-C5 configs do).
    r50c = ResNet(50, base_channels=4, style="caffe", strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2))
    r50c.load_state_dict({k[6:]: v for k, v in out.items() if k.startswith("r50.w.")})
    r50c.eval()
    resnet_case(out, "r50c", r50c, x50, gen, ["layer2.0.conv1.weight", "layer4.1.conv2.weight"],
                with_input_grad=False)
    return out


# -------------------------------------------------------------------- FPN --

class ConvModule(nn.Module):
    """mmcv ConvModule with norm_cfg None and act_cfg None: a conv with bias."""

    def __init__(self, cin, cout, k, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding, bias=True)

    def forward(self, x):
        return self.conv(x)


class FPN(nn.Module):
    """mmdet.models.necks.FPN (conv_cfg, norm_cfg, act_cfg None)."""

    def __init__(self, in_channels, out_channels, num_outs, start_level=0, end_level=-1, add_extra_convs=False,
                 relu_before_extra_convs=False, upsample_cfg=dict(mode="nearest")):
        super().__init__()
        self.in_channels, self.num_ins, self.num_outs = in_channels, len(in_channels), num_outs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.upsample_cfg = upsample_cfg
        if end_level == -1 or end_level == self.num_ins - 1:
            self.backbone_end_level = self.num_ins
        else:
            self.backbone_end_level = end_level + 1
        self.start_level = start_level
        self.add_extra_convs = "on_input" if add_extra_convs is True else add_extra_convs
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for i in range(start_level, self.backbone_end_level):
            self.lateral_convs.append(ConvModule(in_channels[i], out_channels, 1))
            self.fpn_convs.append(ConvModule(out_channels, out_channels, 3, padding=1))
        extra_levels = num_outs - self.backbone_end_level + start_level
        if self.add_extra_convs and extra_levels >= 1:
            for i in range(extra_levels):
                cin = in_channels[self.backbone_end_level - 1] \
                    if i == 0 and self.add_extra_convs == "on_input" else out_channels
                self.fpn_convs.append(ConvModule(cin, out_channels, 3, stride=2, padding=1))

    def forward(self, inputs):
        laterals = [conv(inputs[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        used = len(laterals)
        for i in range(used - 1, 0, -1):
            if "scale_factor" in self.upsample_cfg:
                laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], **self.upsample_cfg)
            else:
                prev_shape = laterals[i - 1].shape[2:]
                laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=prev_shape, **self.upsample_cfg)
        outs = [self.fpn_convs[i](laterals[i]) for i in range(used)]
        if self.num_outs > len(outs):
            if not self.add_extra_convs:
                for i in range(self.num_outs - used):
                    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            else:
                if self.add_extra_convs == "on_input":
                    src = inputs[self.backbone_end_level - 1]
                elif self.add_extra_convs == "on_lateral":
                    src = laterals[-1]
                else:
                    src = outs[-1]
                outs.append(self.fpn_convs[used](src))
                for i in range(used + 1, self.num_outs):
                    if self.relu_before_extra_convs:
                        outs.append(self.fpn_convs[i](F.relu(outs[-1])))
                    else:
                        outs.append(self.fpn_convs[i](outs[-1]))
        return outs


FPN_CASES = {
    # RetinaNet: start_level 1, extra convs on the input, 5 outputs.
    "retina": dict(kw=dict(start_level=1, add_extra_convs="on_input", num_outs=5),
                   shapes=[(17, 25), (9, 13), (5, 7), (3, 4)]),
    # Faster R-CNN: extra level by max pooling.
    "faster": dict(kw=dict(num_outs=5), shapes=[(17, 25), (9, 13), (5, 7), (3, 4)]),
    "output": dict(kw=dict(add_extra_convs="on_output", relu_before_extra_convs=True, num_outs=6),
                   shapes=[(16, 24), (8, 12), (4, 6), (2, 3)]),
    "lateral": dict(kw=dict(add_extra_convs="on_lateral", num_outs=5, end_level=-1),
                    shapes=[(17, 25), (9, 13), (5, 7), (3, 4)]),
    # upsample_cfg with scale_factor 2; end_level 2 drops the last input.
    "scale2": dict(kw=dict(num_outs=3, end_level=2, upsample_cfg=dict(mode="nearest", scale_factor=2)),
                   shapes=[(16, 24), (8, 12), (4, 6), (2, 3)]),
}
FPN_IN = [8, 16, 32, 64]
FPN_OUT = 8


def make_fpn():
    gen = torch.Generator().manual_seed(99)
    out = {}
    for tag, case in FPN_CASES.items():
        net = FPN(FPN_IN, FPN_OUT, **case["kw"])
        randomize(net, gen)
        for k, v in net.state_dict().items():
            out[f"{tag}.w.{k}"] = v.clone()
        ins = [torch.randn(1, c, h, w, generator=gen).requires_grad_(True)
               for c, (h, w) in zip(FPN_IN, case["shapes"])]
        outs = net(ins)
        gs = [torch.randn(o.shape, generator=gen) for o in outs]
        sum((o * g).sum() for o, g in zip(outs, gs)).backward()
        for i, x in enumerate(ins):
            out[f"{tag}.in{i}"] = x
            if x.grad is not None:
                out[f"{tag}.grad.in{i}"] = x.grad
        for i, (o, g) in enumerate(zip(outs, gs)):
            out[f"{tag}.out{i}"] = o
            out[f"{tag}.gout{i}"] = g
        params = dict(net.named_parameters())
        for n in ("lateral_convs.0.conv.weight", "fpn_convs.0.conv.bias", f"fpn_convs.{len(net.fpn_convs) - 1}.conv.weight"):
            out[f"{tag}.grad.{n}"] = params[n].grad
    return out


if __name__ == "__main__":
    torch.manual_seed(0)
    check_against_torchvision()
    save("backbones_resnet", make_resnet())
    save("backbones_fpn", make_fpn())
