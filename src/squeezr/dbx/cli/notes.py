"""``dbx notes EXP [TEXT | --append TEXT]``: show, replace or add to an experiment's notes.

Notes are the one part of an experiment meant for people: why it was run, what went wrong.
Python: ``exp.notes`` (read or replace), ``exp.append_notes(text)``.
"""

from __future__ import annotations

import argparse
import sys

from squeezr.dbx.cli import common
from squeezr.dbx.compare import label
from squeezr.dbx.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers, "notes", __doc__, main, help="show or set an experiment's notes"
    )
    common.add_experiment_argument(parser)
    parser.add_argument("text", nargs="?", help="new notes ('-' reads them from stdin)")
    parser.add_argument("--append", metavar="TEXT", help="add TEXT as a new paragraph")
    common.add_repo_option(parser)


def main(args: argparse.Namespace) -> int:
    if args.text is not None and args.append is not None:
        raise UserError("give either TEXT (replace the notes) or --append TEXT, not both")
    exp = common.repository(args).get(args.ref)
    if args.text is None and args.append is None:
        if not exp.notes:
            print(f"dbx: {label(exp)} has no notes", file=sys.stderr)
            return 1
        print(exp.notes.rstrip("\n"))
        return 0
    if args.append is None:
        exp.notes = _read(args.text)
    else:
        exp.append_notes(_read(args.append))
    print(f"notes of {label(exp)} saved")
    return 0


def _read(text: str) -> str:
    """The text itself, or standard input for ``-``."""
    return sys.stdin.read() if text == "-" else text
