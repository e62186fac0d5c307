"""``dbx ls [PREFIX]``: list experiments, filtered, sorted, with chosen columns.

Besides the experiment's fields, two columns are computed: ``status`` (planned, running,
done, failed or interrupted: :func:`squeezr.dbx.runs.experiment_status`, from its run
records) and ``headline``, which shows as ``metric`` and ``value``: the first of
:data:`HEADLINE` among the experiment's results, so that a listing says how each run did
without knowing its result keys. ``--status`` keeps the experiments in the given states.
Exit status 1 when nothing matches, so scripts can test for it.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from squeezr.dbx import clikit, expr
from squeezr.dbx.cli import common
from squeezr.dbx.errors import UserError
from squeezr.dbx.runs import STATUSES, experiment_status
from squeezr.dbx.select import check_paths, select_experiments
from squeezr.dbx.store import Experiment

DEFAULT_COLUMNS = "id,name,kind,created,status,headline"
COMPUTED = ("status", "headline")
# Result keys tried in turn for the headline column: squeezr's training and pruning
# results first, then common names.
HEADLINE = (
    "test_acc",
    "final_test_acc",
    "val_acc",
    "final_val_acc",
    "best_val_acc",
    "accuracy",
    "acc",
    "loss",
)
EPILOG = """examples:
  dbx ls prune/ --kind prune --since 7d --status done
  dbx ls --where "params.optimizer.lr == 0.1 and results.best_val_acc > 0.9"
  dbx ls --sort -results.best_val_acc --columns name,params.method,results.best_val_acc --limit 5
fields: id, name, kind, created, params.<key>..., results.<key>...; computed: status, headline
where-language: docs/dbx-expressions.md"""

# Values of --sort such as "-results.acc" start with "-": argparse would take them for an
# option. The parser reads anything shaped like a descending key as a value instead (its
# test for negative numbers, which argparse treats the same way).
_VALUE_WITH_DASH = re.compile(r"^-\d+$|^-\d*\.\d+$|^-[A-Za-z_][A-Za-z0-9_.,-]*$")


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
        "--status", help=f"only these statuses, comma-separated: {', '.join(STATUSES)}"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        default=argparse.SUPPRESS,  # `dbx --strict ls` works too (cli/common.py)
        help="a damaged experiment is an error, not a warning",
    )
    common.add_repo_option(parser)
    clikit.add_output_options(parser)
    parser._negative_number_matcher = _VALUE_WITH_DASH  # --sort -results.acc


def _statuses(text: str | None) -> set[str] | None:
    if text is None:
        return None
    wanted = {s.strip() for s in text.split(",") if s.strip()}
    unknown = sorted(wanted - set(STATUSES))
    if unknown or not wanted:
        raise UserError(
            f"--status {text!r}: use one or more of {', '.join(STATUSES)} (comma-separated)"
        )
    return wanted


def _headline(exp: Experiment) -> tuple[str | None, Any]:
    for key in HEADLINE:
        value = exp.value(f"results.{key}")
        if value is not expr.MISSING and not isinstance(value, (dict, list, str)):
            return key, value
    return None, None


def main(args: argparse.Namespace) -> int:
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    if not columns:
        raise UserError("--columns is empty; name at least one column, e.g. --columns id,name")
    check_paths([c for c in columns if c not in COMPUTED], "column")
    wanted = _statuses(args.status)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be a positive number (got {args.limit})")
    if getattr(args, "strict", False):
        clikit.strict_warnings()
    experiments = select_experiments(
        common.repository(args), **common.selection(args), sort=args.sort
    )
    status: dict[str, str] = {}
    if wanted is not None or "status" in columns:
        status = {exp.id: experiment_status(exp, damaged="?") for exp in experiments}
    if wanted is not None:
        experiments = [exp for exp in experiments if status[exp.id] in wanted]
    if args.limit is not None:
        experiments = experiments[: args.limit]
    if not experiments:
        print("dbx: no experiments match", file=sys.stderr)
        return 1
    rows = []
    for exp in experiments:
        row: dict[str, Any] = {}
        for column in columns:
            if column == "status":
                row[column] = status[exp.id]
                continue
            if column == "headline":
                row["metric"], row["value"] = _headline(exp)
                continue
            value = exp.value(column)
            if value is expr.MISSING:
                value = None
            elif column in ("id", "exp.id"):
                value = common.short_id(value, args.fmt)
            row[column] = value
        rows.append(row)
    clikit.emit(rows, args.fmt)
    return 0
