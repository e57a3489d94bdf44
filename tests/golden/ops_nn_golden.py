"""Golden fixtures for conv2d, batch_norm2d, max_pool2d, nearest resampling,
matmul and linear (tests/unit/test_ops_{conv,nn,linear}.c).

Run from the repository root: /usr/bin/python3 tests/golden/ops_nn_golden.py
Each case stores its inputs, a fixed random upstream gradient `gy`, the
output `y` and the gradients PyTorch's autograd gives for every input.
Integer parameters go in a small i64 tensor `<case>_p`.
"""
import torch
import torch.nn.functional as F

from common import save

torch.manual_seed(0)


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_(True)


def grads(y, inputs):
    gy = torch.randn_like(y)
    gs = torch.autograd.grad(y, [t for t in inputs if t is not None], gy)
    return gy, gs


# ---------------------------------------------------------------- conv2d --
# (N, C, H, W, O, kh, kw, stride, pad, dilation, groups, bias)
CONV = [
    (1, 3, 7, 7, 4, 3, 3, (1, 1), (1, 1), (1, 1), 1, True),      # batch 1, padding
    (3, 4, 9, 7, 6, 3, 3, (2, 2), (1, 1), (1, 1), 1, False),     # batch 3, stride 2, odd sizes
    (2, 6, 8, 8, 4, 3, 3, (1, 1), (2, 2), (2, 2), 2, True),      # groups 2, dilation 2
    (2, 4, 6, 5, 4, 3, 3, (1, 1), (1, 1), (1, 1), 4, True),      # depthwise
    (3, 8, 5, 5, 5, 1, 1, (1, 1), (0, 0), (1, 1), 1, True),      # 1x1 (no im2col)
    (2, 4, 7, 7, 8, 1, 1, (2, 2), (0, 0), (1, 1), 1, False),     # 1x1 stride 2 (downsample)
    (1, 3, 11, 13, 4, 7, 7, (2, 2), (3, 3), (1, 1), 1, False),   # the ResNet stem
    (2, 3, 8, 9, 2, 3, 2, (2, 1), (0, 1), (1, 2), 1, True),      # asymmetric everything
    (3, 6, 5, 6, 9, 3, 3, (1, 1), (1, 1), (1, 1), 3, False),     # groups 3, batch 3
]


def conv_cases():
    out = {}
    for i, (n, c, h, w, o, kh, kw, st, pd, dl, g, hb) in enumerate(CONV):
        x, wt = leaf(n, c, h, w), leaf(o, c // g, kh, kw, scale=0.3)
        b = leaf(o) if hb else None
        y = F.conv2d(x, wt, b, stride=st, padding=pd, dilation=dl, groups=g)
        gy, gs = grads(y, [x, wt, b])
        k = f"c{i}_"
        out.update({k + "x": x, k + "w": wt, k + "y": y, k + "gy": gy, k + "gx": gs[0], k + "gw": gs[1]})
        if hb:
            out.update({k + "b": b, k + "gb": gs[2]})
        out[k + "p"] = torch.tensor([st[0], st[1], pd[0], pd[1], dl[0], dl[1], g, int(hb)], dtype=torch.int64)
    save("ops_nn_conv", out)


# ------------------------------------------------------------ batch norm --
# (N, C, H, W, training, affine, momentum, eps)
BN = [
    (3, 4, 5, 6, True, True, 0.1, 1e-5),
    (2, 3, 4, 4, True, False, 0.3, 1e-5),
    (2, 5, 3, 7, False, True, 0.1, 1e-5),
    (1, 2, 1, 3, True, True, 0.1, 1e-3),
]


def bn_cases(out):
    for i, (n, c, h, w, training, affine, mom, eps) in enumerate(BN):
        x = leaf(n, c, h, w, scale=2.0)
        with torch.no_grad():
            x += torch.randn(1, c, 1, 1) * 3   # per-channel offsets
        wt = (torch.rand(c) + 0.5).requires_grad_(True) if affine else None
        b = leaf(c) if affine else None
        rm, rv = torch.randn(c), torch.rand(c) + 0.5
        k = f"bn{i}_"
        out.update({k + "x": x, k + "rm": rm.clone(), k + "rv": rv.clone()})
        y = F.batch_norm(x, rm, rv, wt, b, training=training, momentum=mom, eps=eps)
        gy, gs = grads(y, [x, wt, b])
        out.update({k + "y": y, k + "gy": gy, k + "gx": gs[0], k + "rm_after": rm, k + "rv_after": rv})
        if affine:
            out.update({k + "w": wt, k + "b": b, k + "gw": gs[1], k + "gb": gs[2]})
        out[k + "p"] = torch.tensor([int(training), int(affine)], dtype=torch.int64)
        out[k + "f"] = torch.tensor([mom, eps], dtype=torch.float32)


# -------------------------------------------------------------- max pool --
# (N, C, H, W, kernel, stride, pad, ceil_mode, integer values for ties)
POOL = [
    (2, 3, 9, 10, 3, 2, 1, False, False),   # the ResNet stem pool
    (1, 2, 7, 5, 2, 2, 0, True, False),
    (2, 2, 8, 8, 3, 2, 1, True, False),
    (2, 3, 6, 7, 2, 1, 0, False, True),     # ties: first maximum wins
    (1, 2, 11, 13, 5, 3, 2, True, True),
]


def pool_cases(out):
    for i, (n, c, h, w, k, s, p, ceil, ties) in enumerate(POOL):
        x = torch.randint(0, 3, (n, c, h, w)).float() if ties else torch.randn(n, c, h, w)
        x.requires_grad_(True)
        y = F.max_pool2d(x, k, s, p, ceil_mode=ceil)
        gy, gs = grads(y, [x])
        key = f"mp{i}_"
        out.update({key + "x": x, key + "y": y, key + "gy": gy, key + "gx": gs[0]})
        out[key + "p"] = torch.tensor([k, s, p, int(ceil)], dtype=torch.int64)


# ----------------------------------------------------- nearest resampling --
INTERP = [((2, 3, 5, 7), (10, 14)), ((1, 2, 5, 7), (8, 11)), ((2, 2, 9, 10), (4, 3)),
          ((1, 3, 13, 7), (25, 13)), ((1, 1, 3, 3), (7, 5))]
UPSAMPLE = [((2, 3, 4, 5), 2), ((1, 2, 3, 4), 3)]


def interp_cases(out):
    for i, (shape, size) in enumerate(INTERP):
        x = leaf(*shape)
        y = F.interpolate(x, size=size, mode="nearest")
        gy, gs = grads(y, [x])
        k = f"in{i}_"
        out.update({k + "x": x, k + "y": y, k + "gy": gy, k + "gx": gs[0],
                    k + "p": torch.tensor(size, dtype=torch.int64)})
    for i, (shape, s) in enumerate(UPSAMPLE):
        x = leaf(*shape)
        y = F.interpolate(x, scale_factor=s, mode="nearest")
        gy, gs = grads(y, [x])
        k = f"up{i}_"
        out.update({k + "x": x, k + "y": y, k + "gy": gy, k + "gx": gs[0],
                    k + "p": torch.tensor([s], dtype=torch.int64)})


# --------------------------------------------------------- linear algebra --
def linear_cases():
    out = {}
    for i, (sa, sb) in enumerate([((5, 7), (7, 3)), ((3, 4, 6), (3, 6, 5)), ((1, 9), (9, 1)),
                                   ((2, 33, 17), (2, 17, 20))]):
        a, b = leaf(*sa), leaf(*sb)
        y = torch.matmul(a, b)
        gy, gs = grads(y, [a, b])
        k = f"mm{i}_"
        out.update({k + "a": a, k + "b": b, k + "y": y, k + "gy": gy, k + "ga": gs[0], k + "gb": gs[1]})
    for i, (sx, out_f, hb) in enumerate([((6, 10), 4, True), ((2, 3, 5), 7, False), ((37, 64), 9, True)]):
        x, w = leaf(*sx), leaf(out_f, sx[-1], scale=0.3)
        b = leaf(out_f) if hb else None
        y = F.linear(x, w, b)
        gy, gs = grads(y, [x, w, b])
        k = f"lin{i}_"
        out.update({k + "x": x, k + "w": w, k + "y": y, k + "gy": gy, k + "gx": gs[0], k + "gw": gs[1]})
        if hb:
            out.update({k + "b": b, k + "gb": gs[2]})
    save("ops_nn_linear", out)


# ------------------------------------------------ ResNet bottleneck block --
class Bottleneck(torch.nn.Module):
    """torchvision/mmdet (style='pytorch') bottleneck: stride on the 3x3."""

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                        nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.downsample(x))


def resblock_cases():
    out = {}
    for mode in ("train", "eval"):
        blk = Bottleneck(16, 8, 2)
        with torch.no_grad():   # non-trivial affine and running statistics
            for m in blk.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0, 0.2)
                    m.running_mean.normal_(0, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
        blk.train(mode == "train")
        for k, v in blk.state_dict().items():
            if not k.endswith("num_batches_tracked"):
                out[f"{mode}.init.{k}"] = v.clone()
        x = torch.randn(2, 16, 9, 11).requires_grad_(True)
        y = blk(x)
        gy = torch.randn_like(y)
        y.backward(gy)
        out.update({f"{mode}.x": x, f"{mode}.y": y, f"{mode}.gy": gy, f"{mode}.gx": x.grad})
        for k, v in blk.state_dict().items():
            if "running" in k:
                out[f"{mode}.after.{k}"] = v.clone()
        for k, p in blk.named_parameters():
            out[f"{mode}.grad.{k}"] = p.grad
    save("ops_nn_resblock", out)


if __name__ == "__main__":
    conv_cases()
    nn = {}
    bn_cases(nn)
    pool_cases(nn)
    interp_cases(nn)
    save("ops_nn_misc", nn)
    linear_cases()
    resblock_cases()
