"""Training throughput: squeezr's fast path vs a plain PyTorch reference, same run, same GPU.

Measures training images/s at batch 128 for ResNet-110 and ResNet-20:

* **squeezr**: :func:`squeezr.train.make_epoch_runner` with ``fast=True`` — on CUDA the data
  stays on the GPU as uint8, augmentation is batched on the GPU, bf16 autocast,
  channels_last and a whole-step CUDA graph (see ``squeezr/fastpath.py``);
* **reference**: what a typical CIFAR script does — fp32, eager, a ``DataLoader`` with worker
  processes applying the torchvision-style per-image transform (pad 4, random crop, random
  flip, to-float, normalise; written out by hand, no torchvision) and ``torch.optim.SGD``.

Each side trains one warm-up epoch of ``--batches`` batches of random CIFAR-sized images
(graph capture, cuDNN autotuning, worker start-up), then one timed epoch of the same size;
per-epoch work (shuffling, augmenting, the final synchronisation) is inside the timing.

Accuracy, like for like: both sides train ResNet-20 on the digits dataset with the same
hyperparameters (batch 128, lr 0.1 divided by 10 at 50% and 75% of the epochs, Nesterov,
weight decay 1e-4, standard augmentation) for the same number of epochs, and both report the
fp32 test accuracy of the *last* epoch's weights (squeezr with ``restore_best=False``), over
``--seeds`` seeds. Prints ratios and, last, one JSON line (``_common.report``).

Target (issue 5): >= 4x the reference on ResNet-110 on an H100, equal accuracy within noise.
Without a GPU it warns and runs on the CPU, where the fast path is the plain one, so the
ratios say nothing about GPUs. ``--quick`` shrinks everything for a smoke run.

    python benchmarks/train_speed.py [--quick] [--device cuda] [--workers 8] [--batches 100]
"""

from __future__ import annotations

import random
import statistics
import sys
import warnings
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from _common import parser, ratio, report, timer
from squeezr.dbx.errors import UserError
from squeezr.models import resnet
from squeezr.train import (
    EpochContext,
    TrainConfig,
    evaluate,
    fit,
    make_epoch_runner,
    resolve_device,
)

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


def _loader(x, y, mean, std, workers: int, device: torch.device, seed: int) -> DataLoader:
    return DataLoader(
        PerImageCifar(x, y, mean, std),
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
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
        torch.cuda.synchronize(device)
    return images


def _sgd(model, lr=0.1):
    return torch.optim.SGD(
        model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4
    )


def measure_speed(arch: str, batches: int, device: torch.device, workers: int) -> dict:
    """Images/s of both pipelines: one warm-up epoch, then one timed epoch of ``batches``."""
    g = torch.Generator().manual_seed(0)
    n = batches * BATCH
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)

    torch.manual_seed(0)
    model = resnet(arch).to(device)
    ctx = EpochContext(
        model=model,
        optimizer=_sgd(model),
        split=SimpleNamespace(x=x, y=y),
        mean=MEAN,
        std=STD,
        cfg=TrainConfig(batch_size=BATCH, device=str(device), fast=True),
        device=device,
        order_gen=torch.Generator().manual_seed(1),
        aug_gen=torch.Generator().manual_seed(2),
    )
    runner = make_epoch_runner(ctx)
    runner.run()  # warm-up (graph capture already happened in the constructor)
    with timer() as fast:
        runner.run()  # ends with .item(): the GPU has finished
    fast_images = runner.images_per_epoch
    runner.close()

    torch.manual_seed(0)
    ref_model = resnet(arch).to(device)
    ref_opt = _sgd(ref_model)
    loader = _loader(x, y, MEAN, STD, workers, device, seed=0)
    _reference_epoch(ref_model, ref_opt, loader, device)  # warm-up (workers start, cuDNN)
    with timer() as ref:
        ref_images = _reference_epoch(ref_model, ref_opt, loader, device)
    fast_ips, ref_ips = fast_images / fast.seconds, ref_images / ref.seconds
    return {
        "arch": arch,
        "timed_batches": batches,
        "squeezr_images_per_s": round(fast_ips, 1),
        "reference_images_per_s": round(ref_ips, 1),
        "speedup": round(fast_ips / ref_ips, 2),
    }


def _reference_train(splits, cfg: TrainConfig, device, workers: int) -> float:
    """The reference recipe on ``splits``; fp32 test accuracy of the last epoch's weights."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = resnet("resnet20", num_classes=splits.num_classes).to(device)
    opt = _sgd(model, cfg.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.resolved_milestones()), cfg.lr_gamma)
    x, y = splits.train.x, splits.train.y
    loader = _loader(x, y, splits.mean, splits.std, workers, device, seed=cfg.seed)
    for _ in range(cfg.epochs):
        _reference_epoch(model, opt, loader, device)
        sched.step()
    return evaluate(model, splits.test, mean=splits.mean, std=splits.std)


def compare_accuracy(epochs: int, seeds: int, device: torch.device, workers: int) -> dict:
    """Digits test accuracy (last epoch, fp32) of ResNet-20 trained by each pipeline."""
    from squeezr.data import load_dataset

    splits = load_dataset("digits")
    ours, theirs = [], []
    for seed in range(seeds):
        cfg = TrainConfig(epochs=epochs, device=str(device), seed=seed, restore_best=False)
        torch.manual_seed(seed)
        model = resnet("resnet20", num_classes=splits.num_classes)
        ours.append(fit(model, splits, cfg, progress=False).test_acc)
        theirs.append(_reference_train(splits, cfg, device, workers))
    return {
        "epochs": epochs,
        "seeds": seeds,
        "squeezr_test_acc": ours,
        "reference_test_acc": theirs,
        "squeezr_mean": statistics.fmean(ours),
        "reference_mean": statistics.fmean(theirs),
    }


def _device(name: str) -> torch.device:
    """The device to measure on; without a GPU, the CPU with a warning."""
    try:
        device = resolve_device(name)
    except UserError as exc:
        warnings.warn(f"{exc}; measuring on the CPU instead", stacklevel=2)
        device = torch.device("cpu")
    if device.type != "cuda":
        warnings.warn(
            "no CUDA device: the fast path falls back to the plain CPU path; "
            "ratios are a smoke test only",
            stacklevel=2,
        )
    return device


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--workers", type=int, default=8, help="reference DataLoader workers")
    p.add_argument("--batches", type=int, default=None, help="batches per timed epoch")
    p.add_argument("--acc-epochs", type=int, default=None, help="digits epochs per side")
    p.add_argument("--seeds", type=int, default=None, help="digits runs per side")
    args = p.parse_args(argv)

    device = _device(args.device)
    workers = min(args.workers, 2) if args.quick else args.workers
    batches = args.batches or (3 if args.quick else 100)
    acc_epochs = args.acc_epochs or (1 if args.quick else 15)
    seeds = args.seeds or (1 if args.quick else 3)

    speed = []
    for arch in ("resnet110", "resnet20"):
        row = measure_speed(arch, batches, device, workers)
        speed.append(row)
        print(
            f"{arch:>10}: squeezr {row['squeezr_images_per_s']:>9.1f} img/s   "
            f"reference {row['reference_images_per_s']:>9.1f} img/s   "
            f"ratio {ratio(row['squeezr_images_per_s'], row['reference_images_per_s'])}",
            flush=True,
        )
    acc = compare_accuracy(acc_epochs, seeds, device, workers)
    print(
        f"digits, ResNet-20, {acc_epochs} epochs, {seeds} seed(s), last-epoch test accuracy: "
        f"squeezr {acc['squeezr_mean']:.4f}, reference {acc['reference_mean']:.4f}"
    )
    report(
        "train_speed",
        {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "batch_size": BATCH,
            "workers": workers,
            "quick": args.quick,
            "speed": speed,
            "accuracy": acc,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
