"""Golden fixture for ResNet with a GroupNorm norm_cfg, made by mmdet 2.x's
own ResNet (mmdet.models.backbones.ResNet with mmcv's build_norm_layer), so
the layer names (gn1, layer1.0.gn2, downsample.1) and the numbers are
mmdet's.

Writes tests/fixtures/resnet_gn.safetensors. Run from the repository root
with mmdet 2.x and mmcv-full 1.x installed:
    /usr/bin/python3 tests/golden/resnet_gn_golden.py
"""
import torch
from mmdet.models.backbones import ResNet

from common import save

torch.manual_seed(0)
torch.set_num_threads(1)

m = ResNet(depth=18, base_channels=4, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1), out_indices=(0, 1, 2), frozen_stages=-1,
           norm_cfg=dict(type="GN", num_groups=2, requires_grad=True), norm_eval=False, style="pytorch")
m.train()
with torch.no_grad():
    for name, p in m.named_parameters():   # away from the constant init so every term shows
        p.copy_(torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.2) + (1.0 if name.endswith("gn1.weight") else 0.0))
x = torch.randn(1, 3, 40, 32, requires_grad=True)
outs = m(x)
gouts = [torch.randn_like(o) for o in outs]
loss = sum((o * g).sum() for o, g in zip(outs, gouts))
loss.backward()

t = {"input": x.detach(), "grad.input": x.grad}
for k, v in m.state_dict().items():
    t["w." + k] = v
for i, (o, g) in enumerate(zip(outs, gouts)):
    t["out%d" % i] = o.detach()
    t["gout%d" % i] = g
for name in ["conv1.weight", "gn1.weight", "layer1.0.gn2.bias", "layer2.0.downsample.1.weight",
             "layer3.1.conv2.weight"]:
    t["grad." + name] = dict(m.named_parameters())[name].grad
save("resnet_gn", t, {"source": "mmdet.models.backbones.ResNet (mmdet 2.x), norm_cfg GN num_groups 2"})
print("wrote resnet_gn:", len(t), "tensors;", sorted(k for k in t if k.startswith("w."))[:4])
