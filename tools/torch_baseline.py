"""PyTorch/torchvision twin of the Keras models, timed the same way (run by bench_training.py).

Runs in its own virtualenv (torch is a benchmark extra, never a package dependency):
  python -m venv /opt/torchbench && /opt/torchbench/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy
  /opt/torchbench/bin/python tools/torch_baseline.py --backbone=mobilenet_v2 --steps=10
Prints one JSON line: {"backbone", "images_per_second", ...}.
"""

import argparse
import json
import time

import torch
import torchvision


def build(backbone: str) -> torch.nn.Module:
    """torchvision backbone, classifier replaced by the same 512-128-1 GELU head."""
    if backbone == "mobilenet_v2":
        model, dim = torchvision.models.mobilenet_v2(weights=None), 1280
    elif backbone == "efficientnet_b3":
        model, dim = torchvision.models.efficientnet_b3(weights=None), 1536
    else:
        raise ValueError(backbone)
    model.classifier = torch.nn.Sequential(
        torch.nn.Linear(dim, 512), torch.nn.GELU(), torch.nn.Linear(512, 128), torch.nn.GELU(),
        torch.nn.Linear(128, 1))
    return model


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--image_size", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = build(a.backbone).train()  # full fine-tuning: BatchNorm in training mode
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(a.batch_size, 3, a.image_size, a.image_size) * 2 - 1
    y = torch.rand(a.batch_size, 1)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.l1_loss(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    seconds = time.perf_counter() - start
    print(json.dumps({"backbone": a.backbone, "images_per_second": a.steps * a.batch_size / seconds,
                      "torch": torch.__version__, "torchvision": torchvision.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
