"""Training throughput: squeezr's fast path vs a plain PyTorch reference, same run, same GPU.

Measures training images/s at batch 128 for ResNet-110 and ResNet-20:

* **squeezr**: :func:`squeezr.train.make_epoch_runner` with ``fast=True`` — on CUDA the data
  stays on the GPU as uint8, augmentation is batched on the GPU, bf16 autocast,
  channels_last and a whole-step CUDA graph (see ``squeezr/fastpath.py``);
* **reference**: what a typical CIFAR script does — fp32, eager, a ``DataLoader`` with worker
  processes applying the torchvision-style per-image transform (pad 4, random crop, random
  flip, to-float, normalise; written out by hand, no torchvision) and ``torch.optim.SGD``.

Both are timed over one epoch of random images after one warm-up epoch. Then both train on
the digits dataset for a few epochs with the same schedule, to show the speed does not cost
accuracy. Prints ratios and, last, one JSON line. Target (issue 5): ≥ 4× on ResNet-110 on an
H100. ``--quick`` shrinks everything for a CPU smoke run (where the fast path falls back to
the plain one, so the ratio says nothing about GPUs).

    python benchmarks/train_speed.py [--quick] [--device cuda] [--workers 8]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from squeezr.models import resnet
from squeezr.train import TrainConfig, evaluate, fit, make_epoch_runner, resolve_device

BATCH = 128
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


class PerImageCifar(Dataset):
    """The reference input pipeline: one image at a time, as torchvision transforms do it."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean, std, augment: bool = True):
        self.x, self.y, self.augment = x, y, augment
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        img = self.x[i]
        if self.augment:
            padded = F.pad(img, (4, 4, 4, 4))
            top, left = random.randint(0, 8), random.randint(0, 8)
            img = padded[:, top : top + 32, left : left + 32]
            if random.random() < 0.5:
                img = img.flip(2)
        return (img.float() / 255 - self.mean) / self.std, self.y[i]


def _loader(x, y, mean, std, workers: int, device: torch.device) -> DataLoader:
    return DataLoader(
        PerImageCifar(x, y, mean, std),
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=workers > 0,
    )


def _reference_epoch(model, opt, loader, device) -> int:
    model.train()
    images = 0
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        images += len(yb)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return images


def _sgd(model, lr=0.1):
    return torch.optim.SGD(
        model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4
    )


def _timed(fn) -> tuple[float, int]:
    start = time.perf_counter()
    images = fn()
    return time.perf_counter() - start, images


def measure_speed(arch: str, n: int, device: torch.device, workers: int) -> dict:
    """Images/s of both pipelines on ``n`` random images (one warm-up epoch, one timed)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    split = type("Split", (), {"x": x, "y": y})()

    torch.manual_seed(0)
    model = resnet(arch).to(device)
    opt = _sgd(model)
    cfg = TrainConfig(batch_size=BATCH, device=str(device), fast=True)
    runner = make_epoch_runner(
        model,
        opt,
        split,
        MEAN,
        STD,
        cfg,
        device,
        torch.Generator().manual_seed(1),
        torch.Generator(device=device).manual_seed(2),
    )
    runner.run()  # warm-up (graph capture happens in the constructor)
    fast_s, fast_images = _timed(lambda: (runner.run(), runner.images_per_epoch)[1])

    torch.manual_seed(0)
    ref_model = resnet(arch).to(device)
    ref_opt = _sgd(ref_model)
    loader = _loader(x, y, MEAN, STD, workers, device)
    _reference_epoch(ref_model, ref_opt, loader, device)  # warm-up (workers start, cuDNN)
    ref_s, ref_images = _timed(lambda: _reference_epoch(ref_model, ref_opt, loader, device))
    fast_ips, ref_ips = fast_images / fast_s, ref_images / ref_s
    return {
        "arch": arch,
        "squeezr_images_per_s": round(fast_ips, 1),
        "reference_images_per_s": round(ref_ips, 1),
        "speedup": round(fast_ips / ref_ips, 2),
    }


def compare_accuracy(epochs: int, device: torch.device, workers: int) -> dict:
    """Digits test accuracy after ``epochs`` epochs of ResNet-20 with each pipeline."""
    from squeezr.data import load_dataset

    splits = load_dataset("digits")
    cfg = TrainConfig(epochs=epochs, device=str(device), fast=True, seed=0)
    torch.manual_seed(0)
    model = resnet("resnet20", num_classes=splits.num_classes)
    ours = fit(model, splits, cfg, progress=False).test_acc

    torch.manual_seed(0)
    random.seed(0)
    ref_model = resnet("resnet20", num_classes=splits.num_classes).to(device)
    opt = _sgd(ref_model, cfg.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.resolved_milestones()), cfg.lr_gamma)
    loader = _loader(splits.train.x, splits.train.y, splits.mean, splits.std, workers, device)
    for _ in range(epochs):
        _reference_epoch(ref_model, opt, loader, device)
        sched.step()
    ref = evaluate(ref_model, splits.test, mean=splits.mean, std=splits.std)
    return {"epochs": epochs, "squeezr_test_acc": ours, "reference_test_acc": ref}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--workers", type=int, default=8, help="reference DataLoader workers")
    parser.add_argument("--images", type=int, default=None, help="images per timed epoch")
    parser.add_argument("--acc-epochs", type=int, default=None, help="digits epochs per side")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    if device.type != "cuda":
        warnings.warn(
            "no CUDA device: the fast path falls back to the plain CPU path; "
            "ratios are a smoke test only",
            stacklevel=1,
        )
    workers = min(args.workers, 2) if args.quick else args.workers
    images = args.images or (BATCH if args.quick else 100 * BATCH)
    acc_epochs = args.acc_epochs or (1 if args.quick else 15)
    archs = ("resnet20", "resnet110")

    speed = []
    for arch in archs:
        row = measure_speed(arch, images, device, workers)
        speed.append(row)
        print(
            f"{arch:>10}: squeezr {row['squeezr_images_per_s']:>9.1f} img/s   "
            f"reference {row['reference_images_per_s']:>9.1f} img/s   "
            f"speedup {row['speedup']:.2f}x"
        )
    acc = compare_accuracy(acc_epochs, device, workers)
    print(
        f"digits, ResNet-20, {acc_epochs} epochs: test accuracy squeezr "
        f"{acc['squeezr_test_acc']:.4f}, reference {acc['reference_test_acc']:.4f}"
    )
    figures = {
        "benchmark": "train_speed",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch_size": BATCH,
        "images_per_epoch": images,
        "workers": workers,
        "quick": args.quick,
        "speed": speed,
        "accuracy": acc,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
