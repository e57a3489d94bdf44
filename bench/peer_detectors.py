"""PyTorch peer of bench/bench_detectors.c: torchvision's RetinaNet and
FasterRCNN with a ResNet-50 FPN backbone, no pretrained weights; 2 threads.
  <det>_train_step  losses + backward + one SGD step (lr 0.01, momentum 0.9,
                    wd 1e-4) on 2 images 800x1216, three gt boxes each
  <det>_infer       1 image 800x1216, eval mode, no grad
  <det>_train_step_bf16  the train step's forward under
                    torch.autocast("cpu", dtype=torch.bfloat16); RetinaNet
                    only: torchvision 0.14's FasterRCNN stops in its RPN
                    under CPU autocast ("nms_kernel" not implemented for
                    'BFloat16'), so that line has no peer
Made to match mmdet's r50-fpn 1x configs where torchvision allows:
  - BN as mmdet's norm_cfg=dict(type='BN', requires_grad=True),
    norm_eval=True: running statistics, affine weight and bias trained
    (BatchNorm2d held in eval mode), and the stem and layer1 frozen
    (trainable_layers=3), as frozen_stages=1. MMDET_BENCH_PEER_BN=frozen
    uses torchvision's own FrozenBatchNorm2d instead, which has no affine
    parameters to train and so keeps less for backward;
  - min_size=800, max_size=1216: the transform keeps 800x1216 (no resize,
    no padding: both divide by 32);
  - RetinaNet: 80 sigmoid classes, P6/P7 from C5 (mmdet's add_extra_convs
    'on_input'); FasterRCNN: 80 classes + background, 1000 RPN proposals
    per image after NMS in training (mmdet's rpn max_per_img).
Each benchmark runs in its own process (peak RSS is its own). Prints
`peer <name> peer_ms=<median> peer_mb=<ru_maxrss>`."""
import os
import resource
import statistics
import subprocess
import sys
import time

REPS = max(1, int(os.environ.get("MMDET_BENCH_DET_REPS", "1")))
NAMES = ["retinanet_r50_fpn_train_step", "retinanet_r50_fpn_train_step_bf16", "retinanet_r50_fpn_infer",
         "faster_rcnn_r50_fpn_train_step", "faster_rcnn_r50_fpn_infer"]
BOXES = [[100, 120, 420, 500], [600, 80, 900, 300], [300, 450, 1100, 780]]
LABELS = [[0, 17, 56], [2, 41, 79]]   # 0-based, as ours


def _eval_bn_class():
    import torch

    class EvalBatchNorm2d(torch.nn.BatchNorm2d):
        """mmdet's norm_eval: running statistics whatever the model's mode."""

        def train(self, mode=True):
            return super().train(False)

    return EvalBatchNorm2d


def build(retina):
    EvalBatchNorm2d = _eval_bn_class()
    from torchvision.models import resnet50
    from torchvision.models.detection import FasterRCNN, RetinaNet
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops import misc as misc_nn_ops
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    frozen = os.environ.get("MMDET_BENCH_PEER_BN", "mmdet") == "frozen"
    net = resnet50(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d if frozen else EvalBatchNorm2d)
    if retina:
        bb = _resnet_fpn_extractor(net, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(2048, 256))
        return RetinaNet(bb, num_classes=80, min_size=800, max_size=1216)
    bb = _resnet_fpn_extractor(net, 3)
    return FasterRCNN(bb, num_classes=81, min_size=800, max_size=1216, rpn_post_nms_top_n_train=1000)


def run(name):
    import torch

    torch.set_num_threads(int(os.environ.get("MMDET_NUM_THREADS", "2")))
    torch.manual_seed(1)
    retina = name.startswith("retinanet")
    bf16 = name.endswith("_bf16")
    train = name.endswith("train_step") or bf16
    model = build(retina)
    model.train(train)
    n = 2 if train else 1
    imgs = [torch.rand(3, 800, 1216) for _ in range(n)]
    targets = [{"boxes": torch.tensor(BOXES, dtype=torch.float32),
                "labels": torch.tensor(LABELS[i % 2], dtype=torch.int64) + (0 if retina else 1)}
               for i in range(n)]
    opt = None
    if train:
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                              weight_decay=1e-4)
    times = []
    with torch.set_grad_enabled(train):
        for i in range(REPS + 1):   # one warm-up
            t0 = time.perf_counter()
            if train:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    losses = model(imgs, targets)
                opt.zero_grad(set_to_none=False)
                sum(losses.values()).backward()
                opt.step()
                del losses
            else:
                out = model(imgs)
                del out
            if i:
                times.append((time.perf_counter() - t0) * 1e3)
    mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"peer {name} peer_ms={statistics.median(times):.1f} peer_mb={mb:.0f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        run(sys.argv[1])
    else:
        for which in NAMES:
            subprocess.run([sys.executable, __file__, which], check=False)
