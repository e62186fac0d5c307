"""``dbx like EXP`` (findlike): the experiments whose params are closest to EXP's.

Distance is the number of leaf params that differ (a param present in only one of the two
counts as differing), so "the same run with more epochs" is at distance 1. Ties go to the
newer experiment. Python: ``dbx.like(target, others)``.
"""

from __future__ import annotations

import argparse
import sys

from squeezr.dbx import clikit
from squeezr.dbx.cli import common
from squeezr.dbx.compare import like
from squeezr.dbx.errors import UserError
from squeezr.dbx.select import select_experiments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "like",
        __doc__,
        main,
        help="experiments with the closest params to one (findlike)",
    )
    common.add_experiment_argument(parser)
    parser.add_argument("-n", type=int, default=10, help="how many to show (default: 10)")
    parser.add_argument("--kind", help="only compare with experiments of this kind")
    parser.add_argument("--prefix", help="only compare with experiments under this name prefix")
    common.add_repo_option(parser)
    clikit.add_output_options(parser)


def main(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise UserError(f"-n must be a positive number (got {args.n})")
    repo = common.repository(args)
    target = repo.get(args.ref)
    rows = like(target, select_experiments(repo, prefix=args.prefix, kind=args.kind))[: args.n]
    if not rows:
        print("dbx: no other experiments to compare with", file=sys.stderr)
        return 1
    for row in rows:
        row["id"] = common.short_id(row["id"], args.fmt)
    clikit.emit(rows, args.fmt)
    return 0
