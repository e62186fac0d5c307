"""``dbx ls [PREFIX]``: list experiments, filtered, sorted, with chosen columns.

Exit status 1 when nothing matches, so scripts can test for it.
"""

from __future__ import annotations

import argparse
import sys

from squeezr.dbx import clikit, expr
from squeezr.dbx.cli import common
from squeezr.dbx.errors import UserError
from squeezr.dbx.select import check_paths, select_experiments

DEFAULT_COLUMNS = "id,name,kind,created"
EPILOG = """examples:
  dbx ls prune/ --kind prune --since 7d
  dbx ls --where "params.optimizer.lr == 0.1 and results.best_val_acc > 0.9"
  dbx ls --sort=-results.best_val_acc --columns name,params.method,results.best_val_acc --limit 5
fields: id, name, kind, created, params.<key>..., results.<key>...
where-language: docs/dbx-expressions.md"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "ls",
        __doc__,
        main,
        help="list experiments (prefix, kind, since, where, sort, columns)",
        epilog=EPILOG,
    )
    common.add_selection_options(parser)
    parser.add_argument(
        "--sort", help="comma-separated keys, '-' for descending: --sort=-results.acc,name"
    )
    parser.add_argument(
        "--columns", default=DEFAULT_COLUMNS, help=f"comma-separated (default: {DEFAULT_COLUMNS})"
    )
    parser.add_argument("--limit", type=int, help="show at most this many")
    parser.add_argument(
        "--strict", action="store_true", help="a damaged experiment is an error, not a warning"
    )
    common.add_repo_option(parser)
    clikit.add_output_options(parser)


def main(args: argparse.Namespace) -> int:
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    if not columns:
        raise UserError("--columns is empty; name at least one column, e.g. --columns id,name")
    check_paths(columns, "column")
    if args.strict:
        clikit.strict_warnings()
    experiments = select_experiments(
        common.repository(args), **common.selection(args), sort=args.sort, limit=args.limit
    )
    if not experiments:
        print("dbx: no experiments match", file=sys.stderr)
        return 1
    rows = []
    for exp in experiments:
        row = {}
        for column in columns:
            value = exp.value(column)
            if value is expr.MISSING:
                value = None
            elif column in ("id", "exp.id"):
                value = common.short_id(value, args.fmt)
            row[column] = value
        rows.append(row)
    clikit.emit(rows, args.fmt)
    return 0
