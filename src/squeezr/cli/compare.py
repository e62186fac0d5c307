"""``squeezr compare``, ``ranking`` and ``scratch``: the analyses of finished pruning runs.

``compare EXP1 EXP2 ... [--step K]`` prints Kendall's tau between the block rankings of the
runs (removed blocks in removal order, then the rest by saliency at step K).
``ranking EXP ... [--step K]`` prints those rankings themselves, one row per run and block.
``scratch --like EXP [--equal]`` trains the pruned shape of EXP (or the equal-groups shape of
about as many blocks) from a random init with the recipe and epoch budget of the training
behind EXP, as a new training experiment (``squeezr train --resume`` continues it).
"""

from __future__ import annotations

import argparse

from squeezr.cli.options import add_repo_option, add_strict_option, repo_arg
from squeezr.dbx.clikit import add_output_options, emit, plain_text


def _add_runs_command(subparsers, name: str, help: str, least: int, func) -> None:
    """``compare`` and ``ranking`` read the same runs at the same step."""
    p = subparsers.add_parser(
        name,
        help=help,
        description=plain_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    runs = "pruning experiments" + (f" ({least} or more)" if least > 1 else "")
    p.add_argument("experiments", nargs="+", metavar="EXP", help=runs)
    p.add_argument("--step", type=int, help="ranking at this step (default: each run's last)")
    add_repo_option(p, creates=False)
    add_strict_option(p)
    add_output_options(p)
    p.set_defaults(func=func)


def register(subparsers) -> None:
    _add_runs_command(
        subparsers,
        "compare",
        "Kendall's tau between the block rankings of pruning runs",
        2,
        run_compare,
    )
    _add_runs_command(
        subparsers, "ranking", "the block rankings of pruning runs at a step", 1, run_ranking
    )

    s = subparsers.add_parser(
        "scratch",
        help="train a pruned network's shape from scratch (baseline)",
        description=plain_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--like", required=True, metavar="EXP", help="experiment whose shape to train")
    s.add_argument("--equal", action="store_true", help="the (n, n, n) shape of as many blocks")
    s.add_argument("--epochs", type=int, help="budget (default: the original training's)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")
    s.add_argument(
        "--name",
        help="experiment name (default: scratch/pruned-shape/<n1-n2-n3>/<seed>, "
        "with --equal scratch/equal/<n-n-n>/<seed>)",
    )
    add_repo_option(s, creates=True)
    add_strict_option(s)
    s.add_argument("--no-progress", dest="progress", action="store_false")
    s.set_defaults(func=run_scratch)


def _open_all(args: argparse.Namespace) -> list:
    from squeezr import dbx

    repo = repo_arg(args)
    return [dbx.open(ref, repo=repo) for ref in args.experiments]


def run_compare(args: argparse.Namespace) -> int:
    from squeezr.analysis import tau_matrix

    matrix = tau_matrix(_open_all(args), args.step)
    emit(matrix.round(4).reset_index(names="run"), args.fmt)
    return 0


def run_ranking(args: argparse.Namespace) -> int:
    from squeezr.analysis import ranking_table

    emit(ranking_table(_open_all(args), args.step), args.fmt)
    return 0


def run_scratch(args: argparse.Namespace) -> int:
    from squeezr.baselines import train_scratch

    exp, results = train_scratch(
        args.like,
        repo=repo_arg(args),
        equal=args.equal,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        name=args.name,
        progress=args.progress,
    )
    config = "-".join(map(str, exp.params["config"]))
    print(
        f"{exp.name} ({exp.id}): shape {config}, best epoch {results['best_epoch']}, "
        f"val {results['val_acc']:.4f}, test {results['test_acc']:.4f}"
    )
    return 0
