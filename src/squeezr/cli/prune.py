"""``squeezr prune``: greedy block-by-block pruning of a trained ResNet, recorded in dbx.

Example: ``squeezr prune --from train/resnet110/s0 --method oracle --target-size resnet56
--schedule uniform:4 --epochs 50``. ``--from`` takes an experiment (its model.pt, or with
``--checkpoint E`` its training checkpoint of epoch E), a model file (with ``--dataset``) or
a model source such as ``torchvision:resnet50`` (with ``--weights FILE``, ``--dataset``) or
``hf:FOLDER`` (a transformers causal LM, with ``--dataset text --data-dir DIR``).
``--resume EXP`` continues a killed run from its last completed step with its recorded
settings (only ``--device`` may change). Every setting is checked, and the plan printed,
before anything is created.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import TYPE_CHECKING, Any

from squeezr import distributed, saliency, schedules
from squeezr.cli.options import (
    ResumeHint,
    add_repo_option,
    add_strict_option,
    parse_count,
    parse_milestones,
    repo_arg,
)
from squeezr.cli.strategies import add_strategy_options, run_checkpoint_study, strategy_settings
from squeezr.dbx import jsonx
from squeezr.dbx.clikit import add_output_options, emit, plain_text
from squeezr.dbx.errors import UserError
from squeezr.names import plural

if TYPE_CHECKING:
    from squeezr.prune import PruneConfig
    from squeezr.prune.loop import PruneResult


def methods_help() -> str:
    """The ``--method`` choices with the first line of each method's docstring."""
    width = max(map(len, saliency.METHODS)) + 4
    lines = [
        textwrap.fill(
            f"  {name:<{width - 2}}{m.doc}",
            width=100,
            subsequent_indent=" " * width,
            break_on_hyphens=False,
        )
        for name, m in sorted(saliency.METHODS.items())
    ]
    return "saliency methods (--method; the lowest score is removed first):\n" + "\n".join(lines)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prune",
        help="prune a trained ResNet block by block",
        description=plain_text(__doc__),
        epilog=methods_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("source (one of)")
    src.add_argument(
        "--from",
        dest="source",
        help="experiment (id, prefix, name), model file, or model source FAMILY:NAME "
        "(torchvision:resnet50, vit:NAME, hf:FOLDER)",
    )
    src.add_argument("--resume", metavar="EXP", help="continue this pruning experiment")
    p.add_argument(
        "--checkpoint",
        type=int,
        metavar="EPOCH",
        help="start from this epoch's training checkpoint of the --from experiment",
    )
    add_repo_option(p, creates=True)
    add_strict_option(p)
    p.add_argument(
        "--name", help="experiment name (default: prune/<source name>/<method>/<schedule>)"
    )
    p.add_argument(
        "--dataset",
        help="dataset (cifar10, ...): needed when the source records none, else replaces "
        "only the recorded name (a held-out pruning set or --train-images subset stays)",
    )
    p.add_argument("--data-dir", help="where the dataset files are (default: as recorded)")
    p.add_argument("--weights", help="weights file of a --from FAMILY:NAME model (torchvision's)")
    p.add_argument("--resolution", type=int, help="image size of --dataset imagefolder (224)")
    p.add_argument("--seq-len", type=int, help="tokens per sequence of --dataset text (256)")
    tgt = p.add_argument_group("target (exactly one)")
    tgt.add_argument("--target-blocks", type=int, help="blocks to remove")
    tgt.add_argument("--target-left", type=int, help="blocks to keep")
    tgt.add_argument("--target-size", help="named size to reach, e.g. resnet56 (27 blocks left)")
    tgt.add_argument("--target-params", type=parse_count, help="parameter budget (8.5e5 works)")
    tgt.add_argument("--target-macs", type=parse_count, help="multiply-accumulate budget (4e7)")
    sel = p.add_argument_group("selection")
    sel.add_argument(
        "--method", default="oracle", choices=sorted(saliency.METHODS), help="see below"
    )
    sel.add_argument("--selection", default="val", choices=("val", "prune"))
    sel.add_argument("--blocks-per-step", type=int, default=1)
    sel.add_argument(
        "--recompute-every", type=int, default=1, help="recompute saliency every K steps (0 = once)"
    )
    ft = p.add_argument_group("fine-tuning")
    ft.add_argument("--schedule", default="once", help=schedules.HELP)
    ft.add_argument("--epochs", type=int, default=50, help="epochs per fine-tuning loop")
    ft.add_argument("--lr", type=float, help="learning rate (default 0.1; 0.001 constant)")
    ft.add_argument(
        "--milestones",
        default="10,20",
        help="epochs after which lr drops x0.1 (default 10,20; none = constant)",
    )
    ft.add_argument("--constant-lr", action="store_true", help="constant lr (default 0.001)")
    ft.add_argument("--noise", type=float, default=0.0, help="weight noise eta before each loop")
    ft.add_argument("--freeze-classifier", action="store_true")
    ft.add_argument("--batch-size", type=int, default=128)
    p.add_argument(
        "--then",
        metavar="channels:RATIO",
        help="after the block target, remove RATIO of the channels with Torch-Pruning "
        "(extra 'channels'): channels:RATIO[,steps=N][,importance=l2|l1|bn-scale|taylor|random]",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--device", help="auto (default), cpu, cuda or cuda:N; with --resume: the recorded one"
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
    add_strategy_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> PruneConfig:
    """The PruneConfig the flags describe (``--constant-lr`` = lr 0.001, no milestones)."""
    from squeezr.prune import PruneConfig, make_target

    target = make_target(
        blocks=args.target_blocks,
        left=args.target_left,
        size=args.target_size,
        params=args.target_params,
        macs=args.target_macs,
    )
    constant = args.constant_lr
    return PruneConfig(
        target=target,
        method=args.method,
        schedule=args.schedule,
        blocks_per_step=args.blocks_per_step,
        selection=args.selection,
        recompute_every=args.recompute_every,
        epochs=args.epochs,
        lr=args.lr if args.lr is not None else (0.001 if constant else 0.1),
        milestones=() if constant else parse_milestones(args.milestones),
        noise=args.noise,
        freeze_classifier=args.freeze_classifier,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device or "auto",
        then=args.then,
        **strategy_settings(args),
    )


def run(args: argparse.Namespace) -> int:
    from squeezr.prune.experiment import has_finished, open_pruning_run, prepare_resume, prepare_run

    if args.checkpoints:
        return run_checkpoint_study(args, config_from_args(args))
    if (args.source is None) == (args.resume is None):
        raise UserError("give either --from SOURCE (a new run) or --resume EXP")
    repo = repo_arg(args)
    if args.resume:
        if args.checkpoint is not None:
            raise UserError("--checkpoint goes with --from; a resumed run keeps its source")
        exp = open_pruning_run(args.resume, repo=repo)
        if has_finished(exp):
            if not distributed.is_main():
                return 0
            print(f"squeezr: {exp.name} ({exp.id}) has already finished", file=sys.stderr)
            return report(exp, dict(exp.results), None, args.fmt)
        prepared = prepare_resume(exp.id, repo=repo, device=args.device)
    else:
        # prepare_run checks the settings before it loads anything
        dataset = {
            "name": args.dataset,
            "data_dir": args.data_dir,
            "resolution": args.resolution,
            "seq_len": args.seq_len,
        }
        prepared = prepare_run(
            args.source,
            config_from_args(args),
            repo=repo,
            name=args.name,
            dataset=dataset,
            checkpoint=args.checkpoint,
            weights=args.weights,
        )
    if not distributed.is_main():  # torchrun: rank 0 prints and records, the others compute
        prepared.start(progress=False)
        return 0
    if args.fmt == "table":
        print(prepared.plan.describe(), flush=True)
    if prepared.resume_note:
        print(f"squeezr: {prepared.resume_note}", file=sys.stderr, flush=True)
    with ResumeHint("prune") as hint:
        exp, result = prepared.start(args.progress, announce=hint)
    return report(exp, result.summary, result, args.fmt)


def report(exp: Any, summary: dict[str, Any], result: PruneResult | None, fmt: str) -> int:
    """Print a pruning run's outcome: the per-step table (when the run is at hand, ``result``)
    and a summary line; ``--json``: one object with the experiment's id, name and path, the
    raw summary and the unrounded per-step rows; ``--csv``: the rows."""
    from squeezr.cli.steps import step_rows

    rows = step_rows(result.initial, result.steps, None, result.channel_steps) if result else None
    if fmt == "json":
        out = {"id": exp.id, "name": exp.name, "path": str(exp.path), **summary}
        print(jsonx.encode({**out, "steps": rows} if rows is not None else out))
        return 0
    if result is not None:
        emit(step_rows(result.initial, result.steps, channel_steps=result.channel_steps), fmt)
    if fmt == "table":
        s = summary
        channels = f" and {s['channels_removed_pct']:.1f}% of the channels" if "then" in s else ""
        print(
            f"{exp.name} ({exp.id}): {plural(s['blocks_removed'], 'block')}{channels} removed, "
            f"val {s['final_val_acc']:.4f}, test {s['final_test_acc']:.4f}, "
            f"{s['params_removed_pct']:.1f}% params removed, cost {s['cost']:.4g} epoch-params"
        )
    return 0
