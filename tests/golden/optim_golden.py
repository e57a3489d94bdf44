"""torch.optim SGD (momentum, nesterov), Adam and AdamW over 3 steps with
fixed gradients, for the optimizer tests. Parameters: w [3, 2], b [3]
(the test gives b lr_mult 2 and decay_mult 0 through paramwise_cfg)."""
import torch

from common import save

torch.manual_seed(0)
w0, b0 = torch.randn(3, 2), torch.randn(3)
grads = [(torch.randn(3, 2), torch.randn(3)) for _ in range(3)]
out = {"w0": w0, "b0": b0}
for s, (gw, gb) in enumerate(grads):
    out[f"gw{s}"], out[f"gb{s}"] = gw, gb

cases = {
    "sgd": lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "nesterov": lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "adam": lambda g: torch.optim.Adam(g, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2),
    "adamw": lambda g: torch.optim.AdamW(g, lr=0.01, weight_decay=0.1),
}
for name, make in cases.items():
    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    base = make([w]).defaults
    opt = make([{"params": [w]}, {"params": [b], "lr": base["lr"] * 2, "weight_decay": 0.0}])
    for s, (gw, gb) in enumerate(grads):
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        out[f"{name}_w{s}"], out[f"{name}_b{s}"] = w.detach().clone(), b.detach().clone()
save("optim", out)
