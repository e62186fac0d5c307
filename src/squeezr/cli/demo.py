"""``squeezr demo``: the whole method in a few minutes on a laptop CPU (``make demo``).

Trains a small ResNet on the embedded ``digits`` dataset, then prunes it block by block
(oracle saliency, uniform fine-tuning schedule), recording both as dbx experiments in
``./experiments`` and printing a per-step table: blocks removed, accuracy before and after
fine-tuning, parameters removed and the epoch-parameter cost. Every size is a flag, so the
same command scales up (``--arch resnet56 --train-epochs 50 ...``).
"""

from __future__ import annotations

import argparse

from squeezr import dbx, saliency, schedules
from squeezr.analysis import step_rows
from squeezr.clikit import add_output_options, emit
from squeezr.errors import UserError
from squeezr.models import PRESETS, resnet
from squeezr.prune import PruneConfig, Target
from squeezr.prune.experiment import attach_model, open_splits, run_experiment
from squeezr.train import TrainConfig, fit, seed_everything


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train a small ResNet on digits, then prune it (a few CPU minutes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--repo", default="./experiments", help="dbx repository (default ./experiments)")
    p.add_argument("--arch", default="resnet20", choices=sorted(PRESETS))
    p.add_argument("--train-epochs", type=int, default=5)
    p.add_argument(
        "--train-images", type=int, help="use only the first N training images (default: all)"
    )
    p.add_argument("--blocks", type=int, default=3, help="blocks to remove")
    p.add_argument("--method", default="oracle", choices=sorted(saliency.METHODS))
    p.add_argument("--schedule", default="uniform:3", help=schedules.HELP)
    p.add_argument("--finetune-epochs", type=int, default=1, help="epochs per fine-tuning loop")
    p.add_argument("--finetune-lr", type=float, default=0.01, help="constant fine-tuning lr")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    add_output_options(p)
    p.set_defaults(func=run)


def _train(args, dataset, splits):
    """Train the starting network as a ``kind=train`` experiment with a ``model.pt``."""
    cfg = TrainConfig(epochs=args.train_epochs, batch_size=64, seed=args.seed, device=args.device)
    seed_everything(args.seed)
    model = resnet(args.arch, num_classes=splits.num_classes)
    params = {
        "arch": args.arch,
        "config": list(model.config),
        "dataset": dataset,
        "train": cfg.to_dict(),
    }
    exp = dbx.create(f"demo/train/{args.arch}", kind="train", params=params, repo=args.repo)
    with exp:
        fit(model, splits, cfg, exp=exp, progress=args.progress)
        attach_model(exp, model, "model.pt")
    return exp


def run(args: argparse.Namespace) -> int:
    if args.train_epochs < 1 or args.finetune_epochs < 1:
        raise UserError("--train-epochs and --finetune-epochs must be at least 1")
    blocks = sum(PRESETS[args.arch])
    if not 0 < args.blocks <= blocks:
        raise UserError(f"--blocks must be between 1 and {blocks} for {args.arch}")
    cfg = PruneConfig(
        target=Target("removed", args.blocks),
        method=args.method,
        schedule=args.schedule,
        epochs=args.finetune_epochs,
        lr=args.finetune_lr,
        milestones=(),
        batch_size=64,
        seed=args.seed,
        device=args.device,
    )
    cfg.validate()
    dataset = {"name": "digits", "train_images": args.train_images}
    splits = open_splits(dataset)
    if args.fmt == "table":
        print(f"training {args.arch} on digits for {args.train_epochs} epochs ...")
    source = _train(args, dataset, splits)
    if args.fmt == "table":
        print(f"pruning {args.blocks} blocks ({args.method}, schedule {cfg.schedule}) ...")
    exp, result = run_experiment(
        source.id,
        cfg,
        repo=args.repo,
        name=f"demo/prune/{args.arch}/{args.method}",
        dataset=dataset,
        splits=splits,
        progress=args.progress,
    )
    emit(step_rows(result.initial, result.steps), args.fmt)
    if args.fmt == "table":
        s = result.summary
        print(
            f"\n{s['blocks_removed']} blocks removed ({s['params_removed_pct']:.1f}% of the "
            f"parameters): test accuracy {s['initial_test_acc']:.3f} -> {s['final_test_acc']:.3f}"
            f", cost {s['cost']:,} epoch-parameters.\n"
            f"Recorded in {args.repo}: {source.name} ({source.id}) and {exp.name} ({exp.id})."
        )
    return 0
