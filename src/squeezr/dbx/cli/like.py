"""``dbx like EXP`` (findlike): the experiments whose params are closest to EXP's.

Distance is the number of leaf params that differ (a param present in only one of the two
counts as differing), so "the same run with more epochs" is at distance 1. Ties go to the
newer experiment.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from squeezr import clikit
from squeezr.dbx import expr
from squeezr.dbx.cli import common
from squeezr.dbx.select import created_at, select_experiments
from squeezr.errors import UserError

_ABSENT = object()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "like",
        help="experiments with the closest params to one (findlike)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("ref", metavar="EXP", help="id, id prefix or name")
    parser.add_argument("-n", type=int, default=10, help="how many to show (default: 10)")
    parser.add_argument("--kind", help="only compare with experiments of this kind")
    parser.add_argument("--prefix", help="only compare with experiments under this name prefix")
    common.add_repo_option(parser)
    clikit.add_output_options(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise UserError(f"-n must be a positive number (got {args.n})")
    repo = common.repository(args)
    target = common.open_experiment(args.ref, repo)
    others = [
        exp
        for exp in select_experiments(repo, prefix=args.prefix, kind=args.kind)
        if exp.id != target.id
    ]
    rows = closest(target, others)[: args.n]
    if not rows:
        print("dbx: no other experiments to compare with", file=sys.stderr)
        return 1
    common.emit(rows, args.fmt)
    return 0


def closest(target: Any, others: list[Any]) -> list[dict[str, Any]]:
    """Rows sorted by distance to ``target`` (then newest first), naming what differs."""
    wanted = common.flatten(dict(target.params))
    scored = []
    for exp in others:
        params = common.flatten(dict(exp.params))
        differs = [
            f"{key}={common.cell(params.get(key, '(absent)'))}"
            for key in sorted(wanted.keys() | params.keys())
            if not expr.equal(wanted.get(key, _ABSENT), params.get(key, _ABSENT))
        ]
        created = created_at(exp)
        scored.append((len(differs), -(created.timestamp() if created else 0.0), exp, differs))
    scored.sort(key=lambda item: item[:2])
    return [
        {
            "distance": distance,
            "id": exp.id[: common.SHORT_ID],
            "name": exp.name,
            "kind": exp.kind,
            "differs": ", ".join(differs),
        }
        for distance, _, exp, differs in scored
    ]
