"""Fixtures for the PyTorch .pth reader (core/formats/pth.c), written by torch.save
itself, and the values they must give, written as safetensors (common.save).

    cd tests/golden && /usr/bin/python3 pth_golden.py

- pth_plain.pth (zip), pth_plain_legacy.pth (_use_new_zipfile_serialization
  False) and pth_plain_p4.pth (pickle protocol 4): a state dict with every
  storage type, a transposed view sharing its storage with another entry, a
  strided slice with a storage offset, a 0-d and an empty tensor, and a
  non-tensor value that must be skipped; pth_plain.safetensors holds the
  expected values (float types as float32, int types as int64 / uint8).
- pth_resnet_tv.pth: a torchvision ResNet-18 (torchvision's BasicBlock and
  _make_layer, so torchvision's key names, fc included) at base width 2,
  with random BN statistics; pth_resnet_tv.safetensors holds an input and
  torch's stage outputs (c2..c5) in eval mode.
- pth_mmdet_ckpt.pth: an mmdet 2.x checkpoint {"meta", "state_dict",
  "optimizer"} of a tiny RetinaNet (ResNet-18 width 2, FPN 8 channels,
  RetinaHead with 3 classes), mmdet's key names; the values are in
  pth_mmdet_ckpt.safetensors under the same names.
- pth_evil.pth: a zip whose data.pkl calls os.system (GLOBAL + REDUCE); the
  reader must refuse it without running anything. Built by hand (the pickle
  is the one pickle.dumps makes for an object whose __reduce__ returns
  (os.system, (cmd,))), never loaded here.
- pth_evil_legacy.pth: the same through the legacy stream format.
"""
import collections
import io
import os
import pickle
import zipfile

import numpy as np
import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock, ResNet

from common import FIXTURES, save

torch.manual_seed(0)


def path(name):
    return os.path.join(FIXTURES, name)


def plain():
    big = torch.arange(40, dtype=torch.float32).view(5, 8) / 3.0
    base = torch.randn(4, 5)
    sd = collections.OrderedDict()
    sd["f32"] = torch.randn(3, 4)
    sd["f64"] = torch.randn(2, 3, dtype=torch.float64)
    sd["f16"] = torch.tensor([0.5, -2.0, 65504.0, 6e-8, 1e-3], dtype=torch.float16)
    sd["bf16"] = torch.randn(2, 2).to(torch.bfloat16)
    sd["i64"] = torch.tensor([5, -3, 2 ** 40], dtype=torch.int64)
    sd["i32"] = torch.tensor([[7, -8]], dtype=torch.int32)
    sd["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    sd["i8"] = torch.tensor([-5, 6], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["base"] = base
    sd["transposed"] = base.t()                     # shares base's storage, strides (1, 5)
    sd["sliced"] = big[1:4, 2:7:2]                  # offset 10, strides (8, 2)
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 4)
    sd["num_batches_tracked"] = torch.tensor(17)
    sd["note"] = "not a tensor"                     # skipped by the reader
    assert not sd["transposed"].is_contiguous() and sd["sliced"].storage_offset() == 10
    torch.save(sd, path("pth_plain.pth"))
    torch.save(sd, path("pth_plain_legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(sd, path("pth_plain_p4.pth"), pickle_protocol=4)
    want = {}
    for k, v in sd.items():
        if not torch.is_tensor(v):
            continue
        if v.is_floating_point():
            want[k] = v.float()
        elif v.dtype in (torch.uint8, torch.bool):
            want[k] = v.to(torch.uint8)
        else:
            want[k] = v.to(torch.int64)
    save("pth_plain", want)


class SmallResNet(ResNet):
    """torchvision's ResNet with base width w instead of 64 (its own blocks,
    _make_layer and names; only the widths differ)."""

    def __init__(self, w, layers=(2, 2, 2, 2), num_classes=10):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = w, 1, 1, 64
        self.conv1 = nn.Conv2d(3, w, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(BasicBlock, w, layers[0])
        self.layer2 = self._make_layer(BasicBlock, 2 * w, layers[1], stride=2)
        self.layer3 = self._make_layer(BasicBlock, 4 * w, layers[2], stride=2)
        self.layer4 = self._make_layer(BasicBlock, 8 * w, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * w, num_classes)

    def stages(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs


def randomize_bn(net):
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.num_batches_tracked.fill_(5)


def resnet_tv():
    net = SmallResNet(2)
    randomize_bn(net)
    net.eval()
    torch.save(net.state_dict(), path("pth_resnet_tv.pth"))
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        outs = net.stages(x)
    save("pth_resnet_tv", {"x": x, **{"c%d" % (i + 2): o for i, o in enumerate(outs)}})


def mmdet_ckpt():
    """mmdet's RetinaNet names: backbone = mmdet's ResNet (torchvision's names
    without fc), neck = FPN (ConvModule: .conv), bbox_head = RetinaHead."""
    backbone = SmallResNet(2)
    randomize_bn(backbone)
    sd = collections.OrderedDict()
    for k, v in backbone.state_dict().items():
        if not k.startswith("fc."):
            sd["backbone." + k] = v
    in_ch, out_ch, feat, n_cls, n_anchors = [4, 8, 16], 8, 8, 3, 6
    for i, c in enumerate(in_ch):
        sd["neck.lateral_convs.%d.conv.weight" % i] = torch.randn(out_ch, c, 1, 1) * 0.3
        sd["neck.lateral_convs.%d.conv.bias" % i] = torch.randn(out_ch) * 0.1
    for i in range(len(in_ch)):
        sd["neck.fpn_convs.%d.conv.weight" % i] = torch.randn(out_ch, out_ch, 3, 3) * 0.1
        sd["neck.fpn_convs.%d.conv.bias" % i] = torch.randn(out_ch) * 0.1
    for branch in ("cls", "reg"):
        sd["bbox_head.%s_convs.0.conv.weight" % branch] = torch.randn(feat, out_ch, 3, 3) * 0.1
        sd["bbox_head.%s_convs.0.conv.bias" % branch] = torch.randn(feat) * 0.1
    sd["bbox_head.retina_cls.weight"] = torch.randn(n_anchors * n_cls, feat, 3, 3) * 0.1
    sd["bbox_head.retina_cls.bias"] = torch.randn(n_anchors * n_cls) * 0.1
    sd["bbox_head.retina_reg.weight"] = torch.randn(n_anchors * 4, feat, 3, 3) * 0.01
    sd["bbox_head.retina_reg.bias"] = torch.zeros(n_anchors * 4)
    meta = {
        "mmdet_version": "2.25.0",
        "config": "model = dict(type='RetinaNet')\n",
        "CLASSES": ("rectangle", "ellipse", "triangle"),
        "epoch": 12,
        "iter": 3000,
        "time": "Thu Jan  1 00:00:00 2023",
        "hook_msgs": {"last_ckpt": "work_dirs/epoch_12.pth", "best_score": 0.25},
        "seed": None,
        "exp_name": "retinanet.py",
        "env_info": "sys.platform: linux\nCUDA available: False",
    }
    params = [v for k, v in sd.items() if v.is_floating_point()][:3]
    optimizer = {
        "state": {i: {"momentum_buffer": torch.randn_like(p)} for i, p in enumerate(params)},
        "param_groups": [{"lr": 0.01, "momentum": 0.9, "dampening": 0, "weight_decay": 0.0001,
                          "nesterov": False, "initial_lr": 0.01, "params": list(range(len(params)))}],
    }
    torch.save({"meta": meta, "state_dict": sd, "optimizer": optimizer}, path("pth_mmdet_ckpt.pth"))
    save("pth_mmdet_ckpt", dict(sd))


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pth_evil_ran",))


def evil():
    # The payload as a state dict value; pickle.dumps only describes the call.
    payload = pickle.dumps({"weight": Evil()}, protocol=2)
    assert b"system" in payload
    with zipfile.ZipFile(path("pth_evil.pth"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
    # legacy stream: magic, protocol version, sys_info, then the payload
    buf = io.BytesIO()
    pickle.dump(0x1950a86a20f9469cfc6c, buf, protocol=2)
    pickle.dump(1001, buf, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True,
                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, buf, protocol=2)
    buf.write(payload)
    with open(path("pth_evil_legacy.pth"), "wb") as f:
        f.write(buf.getvalue())


if __name__ == "__main__":
    plain()
    resnet_tv()
    mmdet_ckpt()
    evil()
