"""``squeezr prune``'s strategy flags (spec §7): phasing, equalisation, replacement,
distillation, local training and the total-budget form of pruning from checkpoints, plus
the checkpoint study (``--checkpoints``: one pruning run per training checkpoint).

Kept apart from :mod:`squeezr.cli.prune` so that the flags, their parsing into
:class:`squeezr.prune.PruneConfig` fields and the study are one block; every combination
check is :func:`squeezr.prune.plan.check_strategies`, made before anything is created.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from squeezr.dbx.clikit import emit
from squeezr.dbx.errors import UserError


def add_strategy_options(parser: argparse.ArgumentParser) -> None:
    """The strategy flags, as one argument group."""
    g = parser.add_argument_group("strategies (spec §7; docs/pruning.md has one section each)")
    g.add_argument(
        "--phase",
        type=int,
        default=0,
        metavar="S",
        help="fade each chosen block out over S epochs (frozen, branch x 1-e/S) before removal",
    )
    g.add_argument(
        "--lazy",
        action="store_true",
        help="with --phase: phase the blocks chosen since the last loop out together before it",
    )
    g.add_argument(
        "--phase-mode", default="linear", help="linear (default) or bernoulli (keep w.p. 1-e/S)"
    )
    g.add_argument(
        "--phase-sample", default="epoch", help="bernoulli masks drawn per epoch or per batch"
    )
    g.add_argument(
        "--equalise", action="store_true", help="each step prunes the group with most blocks left"
    )
    g.add_argument(
        "--replace",
        type=int,
        default=0,
        metavar="K",
        help="replace the oracle's best window of K neighbouring blocks by one fresh block",
    )
    g.add_argument(
        "--init", dest="replace_init", default="random", help="replacement block: random or zero"
    )
    g.add_argument("--distill", metavar="A,T", help="distil from the unpruned model: α,T")
    g.add_argument(
        "--local", metavar="BL,BR", help="train only BL blocks before, BR after a removal"
    )
    g.add_argument(
        "--total-budget",
        type=int,
        metavar="N",
        help="epochs in all: the --checkpoint's training epochs + fine-tuning (N - E)",
    )
    g.add_argument(
        "--checkpoints",
        metavar="E,E,...",
        help="a checkpoint study: one run per training checkpoint of --from (with --total-budget)",
    )


def _pair(flag: str, text: str | None, kind: Callable[[str], Any]) -> tuple | None:
    if text is None:
        return None
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        return tuple(kind(p) for p in parts)
    except ValueError:
        example = "0.5,4" if kind is float else "1,1"
        raise UserError(f"{flag} takes two numbers like {example}, not {text!r}") from None


def strategy_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`PruneConfig` fields the strategy flags set."""
    return {
        "phase": args.phase,
        "lazy": args.lazy,
        "phase_mode": args.phase_mode,
        "phase_sample": args.phase_sample,
        "equalise": args.equalise,
        "replace": args.replace,
        "replace_init": args.replace_init,
        "distill": _pair("--distill", args.distill, float),
        "local": _pair("--local", args.local, int),
        "total_budget": args.total_budget,
        "initial_epochs": args.checkpoint if args.total_budget is not None else None,
    }


def checkpoint_list(text: str) -> list[int]:
    try:
        epochs = [int(e) for e in text.split(",")]
    except ValueError:
        raise UserError(f"--checkpoints takes epochs like 0,1,10,20, not {text!r}") from None
    if len(set(epochs)) != len(epochs) or any(e < 0 for e in epochs):
        raise UserError(f"--checkpoints needs distinct epochs >= 0, not {text!r}")
    return epochs


def run_checkpoint_study(args: argparse.Namespace, cfg) -> int:
    """``--checkpoints E1,E2,...``: prune each training checkpoint of ``--from`` with the same
    settings and ``--total-budget``, as experiments ``<name>/epoch-<E>``, and print one row
    per checkpoint. Every run is loaded and checked before the first one starts."""
    from squeezr import distributed
    from squeezr.prune.experiment import default_name, prepare_run

    if args.resume or args.checkpoint is not None or args.source is None:
        raise UserError("--checkpoints runs a new study: give --from EXP, without --checkpoint")
    if args.total_budget is None:
        raise UserError("--checkpoints compares checkpoints under one --total-budget N; give it")
    base = args.name or default_name(cfg)
    dataset = {"name": args.dataset, "data_dir": args.data_dir}
    prepared = [
        prepare_run(
            args.source,
            replace(cfg, initial_epochs=epoch),
            repo=args.repo,
            name=f"{base}/epoch-{epoch}",
            dataset=dataset,
            checkpoint=epoch,
        )
        for epoch in checkpoint_list(args.checkpoints)
    ]
    rows = []
    main = distributed.is_main()  # under torchrun rank 0 records and prints
    for run in prepared:
        if args.fmt == "table" and main:
            print(run.plan.describe(), flush=True)
        exp, result = run.start(args.progress and main)
        if exp is None:
            continue
        s = result.summary
        rows.append(
            {
                "checkpoint": run.cfg.initial_epochs,
                "finetune_epochs": s["budget_finetune_epochs"],
                "total_epochs": s["budget_initial_epochs"] + s["budget_finetune_epochs"],
                "blocks_removed": s["blocks_removed"],
                "final_val_acc": s["final_val_acc"],
                "final_test_acc": s["final_test_acc"],
                "cost": s["cost"],
                "experiment": exp.name,
                "id": exp.id,
            }
        )
    if main:
        emit(rows, args.fmt)
    return 0
