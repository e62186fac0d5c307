"""``dbx query QUERY [PREFIX]``: turn experiment logs into a table, once or live (``--follow``).

Experiments are chosen exactly as ``dbx ls`` chooses them (name prefix, ``--kind``,
``--since``, ``--where``), so "list them, then query them" needs no second vocabulary.
"""

from __future__ import annotations

import argparse
import json
import sys

from squeezr import clikit
from squeezr.dbx.cli import common

EPILOG = """examples:
  dbx query 'train/epoch/:epoch/eval | select epoch, val_acc' prune/oracle/
  dbx query 'prune/step/:k | group k: mean(1 - test_acc) as err, se(1 - test_acc)' --kind prune
  dbx query 'prune/step/:k | before finetune/epoch/*/eval as ft' --follow
grammar: docs/dbx-query.md"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "query",
        help="turn experiment logs into tables (patterns, filters, merge, position, aggregates)",
        description=__doc__.splitlines()[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("query", help="the query, e.g. 'prune/step/:k | group k: mean(acc)'")
    common.add_selection_options(parser)
    common.add_repo_option(parser)
    parser.add_argument("--raw", action="store_true", help="one row per event, no merging")
    parser.add_argument("--no-cache", dest="cache", action="store_false", help="ignore .dbx/cache")
    parser.add_argument("--follow", action="store_true", help="keep running; print new rows")
    parser.add_argument("--interval", type=float, default=1.0, help="--follow poll seconds")
    clikit.add_output_options(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from squeezr.dbx import query as dbxquery  # pandas: loaded only when a query runs

    selection = {"prefix": args.prefix, "kind": args.kind, "since": args.since, "where": args.where}
    if not args.follow:
        table = dbxquery.run(args.query, args.repo, raw=args.raw, cache=args.cache, **selection)
        clikit.emit(table, args.fmt)
        return 0
    batches = dbxquery.follow(
        args.query, args.repo, raw=args.raw, interval=args.interval, **selection
    )
    header = True
    for batch in batches:
        if batch.empty:
            continue
        if args.fmt == "json":  # one object per line, so consumers can stream it
            for record in batch.to_dict(orient="records"):
                sys.stdout.write(json.dumps(record, default=str) + "\n")
        elif args.fmt == "csv":
            batch.to_csv(sys.stdout, index=False, header=header)
        else:
            clikit.emit(batch, "table")
        header = False
        sys.stdout.flush()
    return 0
