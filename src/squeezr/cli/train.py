"""``squeezr train``: train a ResNet from scratch as a dbx experiment (spec §6 baselines).

The experiment's params hold the whole configuration (architecture, dataset, every training
hyperparameter), so ``--resume`` rebuilds the run from the experiment alone and continues it
from the resume state the trainer writes after every epoch. The trained network (the
best-validation weights) is attached as ``model.pt``, which ``squeezr prune --from`` reads.
The runs themselves go through :mod:`squeezr.baselines`, as the demo's and the scratch
comparisons' do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from squeezr.cli.options import (
    ResumeHint,
    add_repo_option,
    add_strict_option,
    parse_milestones,
    repo_arg,
)
from squeezr.dbx import jsonx
from squeezr.dbx.errors import UserError
from squeezr.dbx.views import thaw


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a ResNet from scratch, recorded as a dbx experiment",
        description="Train a CIFAR ResNet from scratch (SGD + Nesterov, milestone schedule, "
        "augmentation, best-epoch restore, checkpoints) and record it as a dbx experiment "
        "with the trained network attached as model.pt.",
    )
    p.add_argument("--arch", help="preset: resnet20, resnet32, resnet44, resnet56 or resnet110")
    p.add_argument("--config", help="blocks per group instead of a preset, e.g. 9,9,9 or 4,0,7")
    p.add_argument(
        "--from",
        dest="source",
        metavar="FAMILY:NAME",
        help="another network family instead of --arch/--config, e.g. torchvision:resnet50, "
        "vit:vit_tiny_patch4_32, hf:FOLDER (a transformers model folder or config.json)",
    )
    p.add_argument(
        "--weights",
        help="start --from's network from this weights file (torchvision's load as is; a "
        "classifier of another size starts fresh)",
    )
    p.add_argument(
        "--dataset",
        default="cifar10",
        help="cifar10, cifar100, digits, synthetic, imagefolder or text (token files)",
    )
    p.add_argument("--data-dir", help="folder holding the dataset (default: $SQUEEZR_DATA, ...)")
    p.add_argument("--resolution", type=int, help="image size of --dataset imagefolder (224)")
    p.add_argument("--seq-len", type=int, help="tokens per sequence of --dataset text (256)")
    p.add_argument("--no-download", action="store_true", help="never download a missing dataset")
    p.add_argument(
        "--pruning-set",
        action="store_true",
        help="hold out the pruning set (the second 10%% of the training data) as well, so a "
        "later `squeezr prune --selection prune` scores blocks on images never trained on",
    )
    p.add_argument(
        "--train-images", type=int, help="train on the first N training images only (quick runs)"
    )
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
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    add_repo_option(p, creates=True)
    p.add_argument("--name", help="experiment name (default: baselines/<arch>/<seed>)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="EXP",
        help="continue experiment EXP (a name or id; bare --resume: the one --name names) "
        "where it stopped; its stored configuration is used, only --device may change",
    )
    add_strict_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def parse_config(text: str) -> tuple[int, int, int]:
    """``"9,9,9"`` → ``(9, 9, 9)``; anything else is a UserError naming the expected form."""
    parts = text.split(",")
    if len(parts) != 3 or not all(s.strip().isdigit() for s in parts):
        raise UserError(f"--config must be three block counts like 9,9,9, got {text!r}")
    return tuple(int(s) for s in parts)  # type: ignore[return-value]


def architecture(arch: str | None, config: str | None) -> tuple[str, tuple[int, int, int]]:
    """(name recorded as ``params.arch``, blocks per group) from ``--arch`` / ``--config``.

    The name is the normalised preset key (``resnet110``) whenever a preset is named, else
    ``resnet-n1-n2-n3``.
    """
    from squeezr.models import PRESETS, preset_key

    key = preset_key(arch) if arch is not None else None
    if config is None:
        if key is None:
            raise UserError("say which network to train: --arch resnet110 or --config 18,18,18")
        return key, PRESETS[key]
    blocks = parse_config(config)
    if key is not None and PRESETS[key] != blocks:
        raise UserError(f"--arch {arch} and --config {config} disagree; give only one")
    return key or "resnet-{}-{}-{}".format(*blocks), blocks


def _params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    from squeezr.baselines import training_params
    from squeezr.train import TrainConfig

    model = None
    if args.source is not None:
        from squeezr.blocknet import is_model_source
        from squeezr.prune.records import recorded_source

        if args.arch is not None or args.config is not None:
            raise UserError("give --from FAMILY:NAME or --arch/--config, not both")
        if not is_model_source(args.source):
            raise UserError(
                f"--from {args.source!r} is not a model source; use FAMILY:NAME, e.g. "
                "torchvision:resnet50 (to continue a training run use --resume)"
            )
        weights = str(Path(args.weights).expanduser().resolve()) if args.weights else None
        model = {"source": recorded_source(args.source), "weights": weights}
        arch, blocks = model["source"], []
    elif args.weights is not None:
        raise UserError("--weights goes with --from FAMILY:NAME (e.g. torchvision:resnet50)")
    else:
        arch, blocks = architecture(args.arch, args.config)
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
    dataset = {
        "name": args.dataset,
        "data_dir": args.data_dir,
        "pruning_set": args.pruning_set,
        "train_images": args.train_images,
        "resolution": args.resolution,
        "seq_len": args.seq_len,
    }
    return training_params(arch=arch, config=blocks, dataset=dataset, cfg=cfg, model=model)


def run(args: argparse.Namespace) -> int:
    from squeezr import dbx, distributed
    from squeezr.baselines import has_finished, resume_point, train_experiment
    from squeezr.models import MODEL_ATTACHMENT

    repo = repo_arg(args)
    if args.resume is not None:
        ref = args.resume or args.name
        if not ref:
            raise UserError("--resume needs the experiment to continue: --resume NAME-OR-ID")
        existing = dbx.open(ref, repo=repo)
        params = thaw(existing.value("params"))
        if isinstance(params.get("train"), dict):
            params["train"]["device"] = args.device
        resume = existing.id
        if not distributed.is_main():
            pass  # torchrun: rank 0 speaks
        elif has_finished(existing):
            print(f"squeezr: {existing.name} ({existing.id}) has already finished", file=sys.stderr)
        else:
            print(f"squeezr: {resume_point(existing)}", file=sys.stderr, flush=True)
    else:
        params, resume = _params_from_args(args), None

    def announce(exp) -> None:
        hint(exp)
        if not args.json:
            print(f"experiment {exp.id} ({exp.name}) at {exp.path}", flush=True)

    with ResumeHint("train") as hint:
        exp, results = train_experiment(
            params,
            repo=repo,
            name=args.name,
            resume=resume,
            download=not args.no_download,
            progress=not args.no_progress,
            announce=announce,
        )
    if exp is None:  # not rank 0 under torchrun
        return 0
    if args.json:
        print(jsonx.encode({"id": exp.id, "name": exp.name, "path": str(exp.path), **results}))
    else:
        val = results.get("val_acc", results["best_val_acc"])
        print(
            f"best epoch {results['best_epoch']}/{results['epochs']}: "
            f"val {val:.2%}, test {results['test_acc']:.2%}; "
            f"{results['params']:,} params, {results['seconds'] / 60:.1f} min\n"
            f"trained network: {exp.attachment_path(MODEL_ATTACHMENT)}; prune it with "
            f"`squeezr prune --from {exp.id} --repo {exp.repo.path} ...`"
        )
    return 0
