"""Pruning speed: the fast oracle vs the plain one, and the headline pruning run.

(a) **One oracle step** on ResNet-110 with 5,000 selection images: squeezr's oracle (shared
    prefix, candidates advanced together as one stacked batch, bf16 autocast on CUDA) against
    the plain way measured in the same run (for each block: copy the model, remove the block,
    evaluate the whole model in fp32). The model is set up as a pruning run uses it
    (``squeezr.prune.loop.place``: channels_last on CUDA) and has *distinct* candidate scores:
    one short epoch of training (2,560 images), because a random network scores every
    candidate alike on this data and then "same choice" proves nothing (the number of
    distinct scores is printed). Both full score vectors are compared (largest and mean
    difference, Kendall's tau between them; bf16 may flip a few borderline images) as well as
    the chosen block. Target (issue 6): >= 5x and < 1 s on an H100.
(b) **The headline run** on a random-weight ResNet-110 with CIFAR-sized synthetic data
    (45,000 training / 5,000 validation images): remove 27 blocks with the oracle,
    ``uniform:4`` fine-tuning, 50 epochs per loop (the thesis's 4x50 setting): total wall time
    and epoch-parameter cost. Target: under 15 minutes on one H100.

(c) **Strategy overhead per fine-tuning epoch** (issue 13): one pruned network (the
    preset's minus its first plain block) fine-tuned for ``--overhead-epochs`` epochs
    plainly, with knowledge distillation (teacher = the unpruned network, inference mode,
    bf16 on CUDA) and while phasing that block out, all in the same run on the same data;
    the mean seconds per epoch (training plus the per-epoch validation) and the ratios to
    plain. Target: distillation <= 1.4x plain on a GPU.

    python benchmarks/prune_speed.py [--quick] [--device cuda] [--skip-run]
                                     [--model resnet56] [--images 500] [--only-overhead]

``--quick`` shrinks both parts for a CPU smoke run (ResNet-20, few images, 1-epoch loops);
``--model`` and ``--images`` override the preset's network and part (a)'s image count, for
measuring the oracle at full depth on a machine too slow for 5,000 images.
Prints ratios and, last, one JSON line.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
from dataclasses import replace

import torch
from scipy.stats import kendalltau
from torch import nn

from _common import parser, ratio, report, timed_on, timer
from squeezr import saliency
from squeezr.data import Split, load_dataset
from squeezr.models import count_params, resnet
from squeezr.prune import PruneConfig, prune
from squeezr.prune.distill import Teacher
from squeezr.prune.loop import place
from squeezr.prune.phasing import phase_out
from squeezr.prune.targets import Target
from squeezr.train import TrainConfig, fit, resolve_device


def briefly_trained(name: str, data, images: int, device: torch.device) -> nn.Module:
    """A network one short epoch into training (``images`` images, as in an early training
    checkpoint): its blocks matter unequally, unlike a random network's, which scores every
    candidate alike on this data."""
    torch.manual_seed(0)
    model = resnet(name, num_classes=data.num_classes)
    subset = Split(data.train.x[:images], data.train.y[:images])
    cfg = TrainConfig(epochs=1, lr=0.05, milestones=(), device=str(device), seed=0)
    fit(model, dataclasses.replace(data, train=subset), cfg, progress=False)
    return model.eval()


def oracle_step(args, device: torch.device) -> dict:
    """Part (a): fast and plain oracle on the same model and images."""
    data = load_dataset("synthetic", synthetic_size=args.images * 10, seed=1)
    selection = data.val  # the first 10% of the training part: args.images images
    model = place(briefly_trained(args.model, data, args.warm_images, device), device)
    fast_ctx = saliency.SaliencyContext(
        data.mean, data.std, device=device, batch_size=args.chunk, stack_images=args.stack_images
    )
    chunk = fast_ctx.oracle_chunk(len(model.block_ids()))
    plain_ctx = saliency.SaliencyContext(data.mean, data.std, device=device, batch_size=1000)
    saliency.compute("oracle", model, selection, fast_ctx)  # warm-up (CUDA context, kernels)

    fast, fast_s = timed_on(device, lambda: saliency.compute("oracle", model, selection, fast_ctx))
    plain, plain_s = timed_on(
        device, lambda: saliency.brute_force_oracle(model, selection, plain_ctx)
    )
    blocks = sorted(plain)
    gaps = [abs(fast[b] - plain[b]) for b in blocks]
    distinct = len(set(plain.values()))
    tau = kendalltau([fast[b] for b in blocks], [plain[b] for b in blocks]).statistic
    tau = None if math.isnan(tau) else float(tau)  # undefined when all scores are equal
    same = saliency.lowest(fast, 1) == saliency.lowest(plain, 1)
    if distinct < 2:
        print("warning: every candidate scores alike; the comparison proves nothing")
    print(
        f"(a) oracle step, {args.model}, {len(selection)} images, {len(plain)} candidates "
        f"({distinct} distinct plain scores): fast {fast_s:.3f} s ({chunk} images per chunk), "
        f"plain {plain_s:.3f} s, "
        f"speed-up {ratio(plain_s, fast_s)}; score vectors: largest difference "
        f"{max(gaps):.4f}, mean {sum(gaps) / len(gaps):.5f}, Kendall tau {tau}; "
        f"same choice: {same}"
    )
    return {
        "oracle_model": args.model,
        "oracle_images": len(selection),
        "oracle_candidates": len(plain),
        "oracle_distinct_scores": distinct,
        "oracle_fast_s": fast_s,
        "oracle_chunk": chunk,
        "oracle_plain_s": plain_s,
        "oracle_speedup": plain_s / fast_s,
        "oracle_same_choice": same,
        "oracle_max_score_gap": max(gaps),
        "oracle_mean_score_gap": sum(gaps) / len(gaps),
        "oracle_score_tau": tau,
    }


def headline_run(args, device: torch.device) -> dict:
    """Part (b): 27 blocks, oracle, uniform:4, ``--epochs`` per loop, random start."""
    data = load_dataset("synthetic", synthetic_size=args.train_size, seed=2)
    torch.manual_seed(0)
    model = resnet(args.model, num_classes=data.num_classes)
    start_params = count_params(model)
    cfg = PruneConfig(
        target=Target("removed", args.blocks),
        method="oracle",
        schedule="uniform:4",
        epochs=args.epochs,
        milestones=tuple(m for m in (10, 20) if m < args.epochs),
        device=str(device),
    )
    with timer() as t:
        result = prune(model, data, cfg, progress=not args.quick)
    s = result.summary
    print(
        f"(b) {args.model}, {args.blocks} blocks, oracle, uniform:4 x {args.epochs} epochs, "
        f"{len(data.train)} training / {len(data.val)} validation images: {t.seconds:.1f} s, "
        f"cost {s['cost']:.4g} epoch-params ({s['epochs_used']} epochs used of "
        f"{s['epochs_run']} run), {s['params_removed_pct']:.1f}% of {start_params} params removed"
    )
    return {
        "run_seconds": t.seconds,
        "run_cost_epoch_params": s["cost"],
        "run_epochs_used": s["epochs_used"],
        "run_epochs_run": s["epochs_run"],
        "run_params_removed_pct": s["params_removed_pct"],
        "run_train_images": len(data.train),
        "run_val_images": len(data.val),
        "run_epochs_per_loop": args.epochs,
    }


def strategy_overhead(args, device: torch.device) -> dict:
    """Part (c): seconds per fine-tuning epoch, plain vs distillation vs phasing."""
    data = load_dataset("synthetic", synthetic_size=args.train_size, seed=3)
    torch.manual_seed(0)
    source = resnet(args.model, num_classes=data.num_classes)
    block = next(b for b in source.block_ids() if not source.is_downsampling(b))
    settings = TrainConfig(
        epochs=args.overhead_epochs, lr=0.01, milestones=(), device=str(device), seed=0
    )

    def pruned():
        model = place(copy.deepcopy(source), device)
        aside = {block: model.block(block)}
        model.remove_block(block)
        return model, aside

    def per_epoch(result) -> float:
        return sum(row["seconds"] for row in result.history[1:]) / result.epochs_run

    model, _ = pruned()
    plain = per_epoch(fit(model, data, settings, progress=False))
    model, _ = pruned()
    teacher = Teacher(source, 0.5, 4.0, device)
    distill = per_epoch(fit(model, data, settings, progress=False, loss=teacher.loss))
    model, aside = pruned()

    def train(scales):
        return fit(
            model,
            data,
            replace(settings, restore_best=False),
            progress=False,
            scales=scales,
            on_epoch_start=scales.start_epoch,
        )

    phase = per_epoch(
        phase_out(model, aside, [block], train, epochs=args.overhead_epochs, device=device)
    )
    print(
        f"(c) {args.model} minus block {block}, {len(data.train)} training images, "
        f"{args.overhead_epochs} epochs each: plain {plain:.2f} s/epoch, distillation "
        f"{distill:.2f} s/epoch ({ratio(distill, plain)} plain), phasing {phase:.2f} s/epoch "
        f"({ratio(phase, plain)} plain)"
    )
    return {
        "overhead_model": args.model,
        "overhead_train_images": len(data.train),
        "overhead_epochs": args.overhead_epochs,
        "plain_epoch_s": plain,
        "distill_epoch_s": distill,
        "phase_epoch_s": phase,
        "distill_over_plain": distill / plain,
        "phase_over_plain": phase / plain,
    }


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--skip-run", action="store_true", help="only part (a)")
    p.add_argument("--chunk", type=int, default=1000, help="fast oracle images per chunk, at most")
    p.add_argument(
        "--stack-images",
        type=int,
        help="fast oracle's stacked-batch budget (default: by device, see SaliencyContext)",
    )
    p.add_argument("--model", help="network of both parts (default: the preset's)")
    p.add_argument("--images", type=int, help="part (a)'s selection images (default: preset)")
    p.add_argument("--overhead-epochs", type=int, help="part (c)'s epochs per variant")
    p.add_argument("--train-size", type=int, help="parts (b) and (c): images before the split")
    p.add_argument("--only-overhead", action="store_true", help="only part (c)")
    args = p.parse_args()
    device = resolve_device(args.device)
    if device.type != "cuda":
        print(
            "warning: no CUDA device; CPU figures say nothing about the GPU targets",
            file=sys.stderr,
        )
    # train_size = training images before the 10% validation split (CIFAR: 50,000).
    quick = {
        "model": "resnet20",
        "images": 100,
        "warm_images": 256,
        "blocks": 3,
        "epochs": 1,
        "train_size": 300,
        "overhead_epochs": 2,
    }
    full = {
        "model": "resnet110",
        "images": 5000,
        "warm_images": 2560,
        "blocks": 27,
        "epochs": 50,
        "train_size": 50000,
        "overhead_epochs": 3,
    }
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    figures = {"device": str(device), "quick": args.quick}
    if not args.only_overhead:
        figures.update(oracle_step(args, device))
        if not args.skip_run:
            figures.update(headline_run(args, device))
    figures.update(strategy_overhead(args, device))
    report("prune_speed", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
