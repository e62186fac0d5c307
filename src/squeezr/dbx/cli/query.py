"""``dbx query QUERY [PREFIX]``: turn experiment logs into a table, once or live (``--follow``).

Experiments are chosen exactly as ``dbx ls`` chooses them (name prefix, ``--kind``,
``--since``, ``--where``), so "list them, then query them" needs no second vocabulary; the
prefix may come before or after the options.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterable
from typing import Any

from squeezr.dbx import clikit, jsonx
from squeezr.dbx.cli import common

EPILOG = """examples:
  dbx query 'train/epoch/:epoch | select epoch, val_acc, test_acc' demo/train/
  dbx query 'prune/step/:k | group k: mean(1 - test_acc_after) as err' --kind prune
  dbx query 'prune/step/:k | sort test_acc_after desc | limit 5' --json
  dbx query 'prune/step/:k/finetune/epoch/:e | select k, e, val_acc' --follow
grammar: docs/dbx-query.md"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "query",
        __doc__,
        main,
        help="turn experiment logs into tables (patterns, filters, merge, position, aggregates)",
        epilog=EPILOG,
    )
    parser.add_argument("query", help="the query, e.g. 'prune/step/:k | group k: mean(acc)'")
    common.add_selection_options(parser)
    common.add_repo_option(parser)
    parser.add_argument("--raw", action="store_true", help="one row per event, no merging")
    parser.add_argument("--no-cache", dest="cache", action="store_false", help="ignore .dbx/cache")
    parser.add_argument(
        "--follow", action="store_true", help="keep running; print rows as they appear or change"
    )
    parser.add_argument("--interval", type=float, default=1.0, help="--follow poll seconds")
    clikit.add_output_options(parser)


def main(args: argparse.Namespace) -> int:
    from squeezr.dbx import query as dbxquery  # pandas: loaded only when a query runs

    selection = common.selection(args)  # warnings print as one line (clikit.run)
    if not args.follow:
        table = dbxquery.run(args.query, args.repo, raw=args.raw, cache=args.cache, **selection)
        clikit.emit(_missing_as_none(table), args.fmt)
        return 0
    batches = dbxquery.follow(
        args.query, args.repo, raw=args.raw, interval=args.interval, **selection
    )
    _stream(batches, args.fmt)
    return 0


def _missing_as_none(frame: Any) -> Any:
    """The table with its missing values as None. To a query an absent field, null and NaN are
    all missing, and print as an empty cell (``null`` in JSON); ``clikit.emit`` shows a NaN as
    NaN, which is right elsewhere (a result that is NaN) but not here."""
    return frame.astype(object).where(frame.notna(), None)


def _stream(batches: Iterable[Any], fmt: str) -> None:
    """Print live batches: JSON as one object per line, CSV with its header once, tables per
    batch. The columns never change (see ``query.follow``), so the lines always line up."""
    header = ""
    for batch in batches:
        if batch.empty:
            continue
        rows = _missing_as_none(batch)
        if fmt == "json":  # emit's objects (its cell conversion), one per line
            for record in jsonx.loads(_emitted(rows, "json")):
                sys.stdout.write(jsonx.encode(record) + "\n")
        elif fmt == "csv":
            text = _emitted(rows, "csv")
            if not header:
                header = _emitted(rows.iloc[:0], "csv")
                sys.stdout.write(header)
            sys.stdout.write(text[len(header) :])
        else:
            clikit.emit(rows, "table")
        sys.stdout.flush()


def _emitted(rows: Any, fmt: str) -> str:
    """What ``clikit.emit`` prints for ``rows`` (so that streamed cells look like the rest)."""
    buffer = io.StringIO()
    clikit.emit(rows, fmt, file=buffer)
    return buffer.getvalue()
