"""``squeezr demo``: the whole method in a couple of minutes on a laptop CPU (``make demo``).

Trains a ResNet-20 on the embedded ``digits`` dataset (real handwritten digits, no download)
exactly as ``squeezr train`` does, then prunes it block by block: at each step the oracle
tries removing every remaining block, removes the one whose absence costs the least
validation accuracy, and the smaller network is fine-tuned to recover. Both runs are dbx
experiments in ``--repo``; the per-step table shows the block chosen, validation accuracy
right after the removal and after fine-tuning, test accuracy, the share of parameters gone
and the cumulative cost in epoch-parameters. Every size is a flag, so the same command
scales up (``--arch resnet56 --train-epochs 50 --blocks 9 ...``).
"""

from __future__ import annotations

import argparse

from squeezr import saliency, schedules
from squeezr.dbx.clikit import add_output_options, emit, plain_text
from squeezr.dbx.errors import UserError
from squeezr.names import plural

DATASET = "digits"


def register(subparsers) -> None:
    from squeezr.models import PRESETS

    p = subparsers.add_parser(
        "demo",
        help="train a ResNet-20 on digits, then prune it block by block (a few CPU minutes)",
        description=plain_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--repo",
        default="./experiments",
        help="dbx repository to record in (default ./experiments)",
    )
    p.add_argument("--arch", default="resnet20", choices=sorted(PRESETS))
    p.add_argument("--train-epochs", type=int, default=10, help="training epochs (default 10)")
    p.add_argument(
        "--train-images", type=int, help="use only the first N training images (default: all)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="batch size (default 32: digits has only 1,294 training images, so 128 would "
        "give too few SGD steps for a short run)",
    )
    p.add_argument("--blocks", type=int, default=3, help="blocks to remove (default 3)")
    p.add_argument("--method", default="oracle", choices=sorted(saliency.METHODS))
    p.add_argument("--schedule", default="every:1", help=f"{schedules.HELP} (default every:1)")
    p.add_argument(
        "--finetune-epochs", type=int, default=2, help="epochs per fine-tuning loop (default 2)"
    )
    p.add_argument(
        "--finetune-lr", type=float, default=0.02, help="fine-tuning learning rate (default 0.02)"
    )
    p.add_argument(
        "--finetune-milestones",
        default="none",
        help="epochs after which the fine-tuning lr drops x0.1 (default none: constant)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument(
        "--report",
        help="folder for the figures and tables of the runs (default: report beside --repo)",
    )
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from squeezr.baselines import train_experiment, training_params
    from squeezr.cli.options import parse_milestones
    from squeezr.cli.steps import STEP_LEGEND, step_rows
    from squeezr.models import PRESETS, resnet
    from squeezr.prune import PruneConfig, Target
    from squeezr.prune.experiment import run_experiment
    from squeezr.train import TrainConfig, resolve_device

    if args.train_epochs < 1 or args.finetune_epochs < 1:
        raise UserError("--train-epochs and --finetune-epochs must be at least 1")
    train_cfg = TrainConfig(
        epochs=args.train_epochs, batch_size=args.batch_size, seed=args.seed, device=args.device
    )
    prune_cfg = PruneConfig(
        target=Target("removed", args.blocks),
        method=args.method,
        schedule=args.schedule,
        epochs=args.finetune_epochs,
        lr=args.finetune_lr,
        milestones=parse_milestones(args.finetune_milestones),
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
    )
    # Every setting, fine-tuning and target included, is checked before anything trains.
    prune_cfg.validate()
    network = resnet(args.arch)  # the shape the target is checked against
    total = len(network.block_ids())
    prune_cfg.target.check(network)
    resolve_device(args.device)
    params = training_params(
        arch=args.arch,
        config=PRESETS[args.arch],
        dataset={"name": DATASET, "train_images": args.train_images},
        cfg=train_cfg,
    )
    table = args.fmt == "table"
    if table:
        print(f"1. training {args.arch} on {DATASET} for {plural(args.train_epochs, 'epoch')} ...")
    source, trained = train_experiment(
        params, repo=args.repo, name=f"demo/train/{args.arch}", progress=args.progress
    )
    if table:
        print(
            f"   trained: validation {trained['val_acc']:.3f}, test {trained['test_acc']:.3f}\n"
            f"2. pruning {args.blocks} of its {plural(total, 'block')} ({args.method}, fine-tuning "
            f"{plural(prune_cfg.epochs, 'epoch')} per loop, schedule {prune_cfg.schedule}) ..."
        )
    exp, result = run_experiment(  # on the dataset the training experiment records
        source.id,
        prune_cfg,
        repo=args.repo,
        name=f"demo/prune/{args.arch}/{args.method}",
        progress=args.progress,
    )
    emit(step_rows(result.initial, result.steps), args.fmt)
    if table:
        s = result.summary
        print(
            f"{STEP_LEGEND}\n\n{plural(s['blocks_removed'], 'block')} removed ({s['params_removed_pct']:.1f}% of "
            f"the parameters): test accuracy {s['initial_test_acc']:.3f} -> "
            f"{s['final_test_acc']:.3f}, cost {s['cost']:,} epoch-parameters.\n"
            f"Recorded in {args.repo}: {source.name} ({source.id}) and {exp.name} ({exp.id}).\n"
            f"Next, e.g.: dbx query 'prune/step/:k | select k, chosen, val_acc_after, "
            f"test_acc_after, params_removed_pct' {exp.name} --repo {args.repo}"
        )
    _write_report(args, exp.name)
    return 0


def _write_report(args: argparse.Namespace, name: str) -> None:
    """The demo's figures and results table (``squeezr report`` of its pruning run)."""
    from pathlib import Path

    from squeezr.report import write_report

    folder = args.report or str(Path(args.repo).resolve().parent / "report")
    command = f"squeezr report {name} --repo {args.repo} --out {folder}"
    index = write_report(
        folder, repo=args.repo, prefix=name, formats=("png", "pdf"), command=command
    )
    if args.fmt == "table":
        print(f"Figures and tables: {index} (e.g. {Path(folder) / 'error-vs-blocks.png'})")
