"""A PyTorch state_dict (conv + batch norm, with num_batches_tracked) for
the module state-dict loader test."""
import torch

from common import save

torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
net.train()
net(torch.randn(2, 3, 8, 8))   # updates running stats and num_batches_tracked
save("module_state", {"module." + k: v for k, v in net.state_dict().items()})
