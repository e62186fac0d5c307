"""``dbx missing [PREFIX] --event NAME | --result KEY``: experiments lacking some information.

The to-do list for add-on metrics: which experiments have no ``eval/test`` event yet, or no
``results.test_acc``. An event counts if its name is NAME or lies under it (``NAME/...``).
Exit status 1 when nothing is missing (nothing to do).
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


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "missing",
        help="experiments lacking an event or a result",
        description=__doc__.splitlines()[0],
        epilog="example: dbx missing prune/ --event eval/test --result test_acc",
    )
    common.add_selection_options(parser)
    parser.add_argument("--event", action="append", default=[], help="event name (repeatable)")
    parser.add_argument("--result", action="append", default=[], help="result key (repeatable)")
    common.add_repo_option(parser)
    clikit.add_output_options(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if not args.event and not args.result:
        raise UserError("say what to look for: --event NAME and/or --result KEY")
    experiments = select_experiments(
        common.repository(args),
        prefix=args.prefix,
        kind=args.kind,
        since=args.since,
        where=args.where,
        sort="created",
    )
    rows = []
    for exp in experiments:
        lacking = lacks(exp, args.event, args.result)
        if lacking:
            rows.append(
                {
                    "id": exp.id[: common.SHORT_ID] if args.fmt == "table" else exp.id,
                    "name": exp.name,
                    "kind": exp.kind,
                    "missing": ", ".join(lacking),
                }
            )
    if not rows:
        print("dbx: nothing missing", file=sys.stderr)
        return 1
    common.emit(rows, args.fmt)
    return 0


def lacks(exp: Any, events: list[str], results: list[str]) -> list[str]:
    """What of ``events`` / ``results`` the experiment does not have, in the order asked."""
    lacking = []
    for name in events:
        prefix = name.rstrip("/")
        found = any(
            event["name"] == prefix or event["name"].startswith(prefix + "/")
            for event in exp.events(prefix=prefix)
        )
        if not found:
            lacking.append(f"event {name}")
    stored = dict(exp.results)
    for key in results:
        if expr.dig(stored, key.removeprefix("results.")) is expr.MISSING:
            lacking.append(f"result {key}")
    return lacking
