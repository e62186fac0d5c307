"""``dbx diff EXP EXP...`` (expdiff): the params that differ across experiments.

One row per differing param, one column per experiment, so two long configs reduce to the
few lines that matter. With a single argument, it is a name prefix and every experiment under
it is compared. Exit status 1 when no param differs. Python: ``dbx.diff(experiments)``.
"""

from __future__ import annotations

import argparse
import sys

from squeezr.dbx import clikit
from squeezr.dbx.cli import common
from squeezr.dbx.compare import diff
from squeezr.dbx.errors import UserError
from squeezr.dbx.select import select_experiments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers, "diff", __doc__, main, help="params that differ across 2+ experiments (expdiff)"
    )
    parser.add_argument(
        "refs", nargs="+", metavar="EXP", help="ids, id prefixes or names; one = a name prefix"
    )
    parser.add_argument("--results", action="store_true", help="compare results too")
    common.add_strict_option(parser)
    common.add_repo_option(parser)
    clikit.add_output_options(parser)


def main(args: argparse.Namespace) -> int:
    repo = common.repository(args)
    if len(args.refs) == 1:
        experiments = select_experiments(repo, prefix=args.refs[0], sort="created")
        if len(experiments) < 2:
            raise UserError(
                f"diff needs at least two experiments; {args.refs[0]!r} names "
                f"{len(experiments)}; give two or more refs"
            )
    else:
        experiments = [repo.get(ref) for ref in args.refs]
    rows = diff(experiments, results=args.results)
    if not rows:
        print("dbx: no params differ", file=sys.stderr)
        return 1
    clikit.emit(rows, args.fmt)
    return 0
