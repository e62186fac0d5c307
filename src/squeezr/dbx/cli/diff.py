"""``dbx diff EXP EXP...`` (expdiff): the params that differ across experiments.

One row per differing param, one column per experiment, so two long configs reduce to the
few lines that matter. With a single argument, it is a name prefix and every experiment under
it is compared. Exit status 1 when no param differs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from squeezr import clikit
from squeezr.dbx import expr
from squeezr.dbx.cli import common
from squeezr.dbx.select import select_experiments
from squeezr.errors import UserError

ABSENT = "(absent)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="params that differ across 2+ experiments (expdiff)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "refs", nargs="+", metavar="EXP", help="ids, id prefixes or names; one = a name prefix"
    )
    parser.add_argument("--results", action="store_true", help="compare results too")
    common.add_repo_option(parser)
    clikit.add_output_options(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    repo = common.repository(args)
    if len(args.refs) == 1:
        experiments = select_experiments(repo, prefix=args.refs[0], sort="created")
    else:
        experiments = [common.open_experiment(ref, repo) for ref in args.refs]
    if len(experiments) < 2:
        raise UserError(
            f"diff needs at least two experiments; {args.refs[0]!r} names "
            f"{len(experiments)}; give two or more refs"
        )
    rows = differing(experiments, with_results=args.results)
    if not rows:
        print("dbx: no params differ", file=sys.stderr)
        return 1
    common.emit(rows, args.fmt)
    return 0


def differing(experiments: list[Any], with_results: bool = False) -> list[dict[str, Any]]:
    """Rows ``{"key": key, "<label>": value, ...}`` for every leaf whose values differ."""
    flats = []
    for exp in experiments:
        flat = {f"params.{k}": v for k, v in common.flatten(dict(exp.params)).items()}
        if with_results:
            flat.update({f"results.{k}": v for k, v in common.flatten(dict(exp.results)).items()})
        flats.append(flat)
    labels = _unique_labels(experiments)
    keys = sorted({key for flat in flats for key in flat})
    rows = []
    for key in keys:
        values = [flat.get(key, ABSENT) for flat in flats]
        if any(not expr.equal(values[0], value) for value in values[1:]):
            rows.append({"key": key, **dict(zip(labels, values, strict=True))})
    return rows


def _unique_labels(experiments: list[Any]) -> list[str]:
    labels = [common.label(exp) for exp in experiments]
    if len(set(labels)) == len(labels):
        return labels
    return [f"{exp.id} {exp.name}" for exp in experiments]
