"""``dbx missing [PREFIX] --event NAME | --result KEY``: experiments lacking some information.

The to-do list for add-on metrics: which experiments have no ``eval/test`` event yet, or no
``results.test_acc``. An event counts if its name is NAME or lies under it (``NAME/...``).
Exit status 1 when nothing is missing (nothing to do). Python: ``dbx.missing(...)``.
"""

from __future__ import annotations

import argparse
import sys

from squeezr.dbx import clikit
from squeezr.dbx.cli import common
from squeezr.dbx.select import check_wanted, missing, select_experiments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "missing",
        __doc__,
        main,
        help="experiments lacking an event or a result",
        epilog="example: dbx missing prune/ --event eval/test --result test_acc",
    )
    common.add_selection_options(parser)
    parser.add_argument("--event", action="append", default=[], help="event name (repeatable)")
    parser.add_argument("--result", action="append", default=[], help="result key (repeatable)")
    common.add_repo_option(parser)
    clikit.add_output_options(parser)


def main(args: argparse.Namespace) -> int:
    check_wanted(args.event, args.result)  # before reading anything
    experiments = select_experiments(
        common.repository(args), **common.selection(args), sort="created"
    )
    rows = [
        {
            "id": common.short_id(exp.id, args.fmt),
            "name": exp.name,
            "kind": exp.kind,
            "missing": ", ".join(lacking),
        }
        for exp, lacking in missing(experiments, args.event, args.result)
    ]
    if not rows:
        print("dbx: nothing missing", file=sys.stderr)
        return 1
    clikit.emit(rows, args.fmt)
    return 0
