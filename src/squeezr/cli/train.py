"""``squeezr train``: train a ResNet from scratch as a dbx experiment (spec §6 baselines).

The experiment's params hold the whole configuration (architecture, dataset, every training
hyperparameter), so ``--resume`` rebuilds the run from the experiment alone and continues it
from the resume state the trainer writes after every epoch.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from squeezr.cli.options import parse_milestones
from squeezr.dbx.views import thaw
from squeezr.errors import UserError

DEFAULT_REPO = "experiments"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a ResNet from scratch, recorded as a dbx experiment",
        description="Train a CIFAR ResNet from scratch (SGD + Nesterov, milestone schedule, "
        "augmentation, best-epoch restore, checkpoints) and record it as a dbx experiment.",
    )
    p.add_argument("--arch", help="preset: resnet20, resnet32, resnet44, resnet56 or resnet110")
    p.add_argument("--config", help="blocks per group instead of a preset, e.g. 9,9,9 or 4,0,7")
    p.add_argument("--dataset", default="cifar10", help="cifar10, cifar100, digits or synthetic")
    p.add_argument("--data-dir", help="folder holding the dataset (default: the data module's)")
    p.add_argument("--no-download", action="store_true", help="never download a missing dataset")
    p.add_argument("--epochs", type=int, default=500, help="training epochs (default 500)")
    p.add_argument("--seed", type=int, default=0, help="seed for init, data order, augmentation")
    p.add_argument("--lr", type=float, default=0.1, help="initial learning rate (default 0.1)")
    p.add_argument(
        "--milestones",
        help="epochs after which the lr is divided by 10, e.g. 250,375; 'none' keeps it "
        "constant (default: 50%% and 75%% of the epochs)",
    )
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    p.add_argument(
        "--checkpoint-every", type=int, default=0, help="attach weights every K epochs (and 0)"
    )
    p.add_argument(
        "--stochastic-depth",
        type=float,
        default=0.0,
        help="drop probability of the last block (linear decay over blocks; 0 = off)",
    )
    p.add_argument("--no-fast", action="store_true", help="plain fp32 eager training on CUDA")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--repo", help=f"dbx repository (default: $DBX_REPO or ./{DEFAULT_REPO})")
    p.add_argument("--name", help="experiment name (default: baselines/<arch>/<seed>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the experiment named by --name (a name or id); its stored "
        "configuration is used, only --device may change",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def parse_config(text: str) -> tuple[int, int, int]:
    """``"9,9,9"`` → ``(9, 9, 9)``; anything else is a UserError naming the expected form."""
    parts = text.split(",")
    if len(parts) != 3 or not all(s.strip().isdigit() for s in parts):
        raise UserError(f"--config must be three block counts like 9,9,9, got {text!r}")
    return tuple(int(s) for s in parts)  # type: ignore[return-value]


def _architecture(arch: str | None, config: str | None) -> tuple[str, tuple[int, int, int]]:
    from squeezr.models import PRESETS

    if config is not None:
        blocks = parse_config(config)
        preset = PRESETS.get((arch or "").lower().replace("-", ""))
        if arch is not None and preset != blocks:
            raise UserError(f"--arch {arch} and --config {config} disagree; give only one")
        return arch or "resnet-{}-{}-{}".format(*blocks), blocks
    if arch is None:
        raise UserError("say which network to train: --arch resnet110 or --config 18,18,18")
    key = arch.lower().replace("-", "")
    if key not in PRESETS:
        raise UserError(f"unknown --arch {arch!r}; choose one of {', '.join(PRESETS)} or --config")
    return key, PRESETS[key]


def _new_params(args: argparse.Namespace) -> dict[str, Any]:
    from squeezr.train import TrainConfig

    arch, blocks = _architecture(args.arch, args.config)
    cfg = TrainConfig(
        epochs=args.epochs,
        lr=args.lr,
        milestones=parse_milestones(args.milestones),
        batch_size=args.batch_size,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        device=args.device,
        fast=not args.no_fast,
        stochastic_depth=args.stochastic_depth,
    )
    return {
        "arch": arch,
        "config": list(blocks),
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "train": cfg.to_dict(),
    }


def run(args: argparse.Namespace) -> int:
    from squeezr import dbx
    from squeezr.data import load_dataset
    from squeezr.models import ResNet
    from squeezr.train import TrainConfig, fit, seed_everything

    repo = args.repo or os.environ.get("DBX_REPO") or DEFAULT_REPO
    if args.resume:
        if not args.name:
            raise UserError("--resume needs --name: the name or id of the experiment to continue")
        existing = dbx.open(args.name, repo=repo)
        params = thaw(existing.params)
        params["train"]["device"] = args.device
    else:
        params = _new_params(args)
    cfg = TrainConfig.from_dict(params["train"])
    splits = load_dataset(
        params["dataset"], data_dir=params["data_dir"], download=not args.no_download
    )
    seed_everything(cfg.seed)
    model = ResNet(params["config"], num_classes=splits.num_classes)
    if args.resume:
        exp = dbx.resume(existing.id, repo=repo)
    else:
        name = args.name or f"baselines/{params['arch']}/{cfg.seed}"
        exp = dbx.create(name, kind="train", params=params, repo=repo)
    with exp:
        if not args.json:
            print(f"experiment {exp.id} ({exp.name}) at {exp.path}")
        if args.resume and "test_acc" in exp.results:
            results = thaw(exp.results)
        else:
            fit(model, splits, cfg, exp=exp, progress=not args.no_progress)
            results = thaw(exp.results)
    if args.json:
        print(json.dumps({"id": exp.id, "name": exp.name, "path": str(exp.path), **results}))
    else:
        print(
            f"best epoch {results['best_epoch']}/{results['epochs']}: "
            f"val {results['best_val_acc']:.2%}, test {results['test_acc']:.2%}; "
            f"{results['params']:,} params, {results['seconds'] / 60:.1f} min"
        )
    return 0
