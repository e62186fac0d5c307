"""``dbx table [QUERY] [PREFIX] --rows COL --values COL``: a paper table (LaTeX, Markdown, CSV).

Rows are labelled by the ``--rows`` columns; ``--values`` are the numbers shown, each as
``mean ± s.e.`` when the data has a ``<value>_se`` column (``--mean-se`` makes one by
averaging the rows that share a label); ``--columns COL`` pivots its distinct values into
columns. ``--best max`` (or ``min``, or per column ``err=min``) sets the best cell of each
column in bold; ``--precision`` the digits. Without ``--out`` the table is printed; with it,
the table is written with its data (``OUT.data.csv``) and the script that rewrites it.
"""

from __future__ import annotations

import argparse
import sys

from squeezr.dbx.cli import common, reporting
from squeezr.dbx.errors import UserError

EPILOG = """examples:
  dbx table 'prune/step/:k | last 1 | select params.prune.method as method, 100 * (1 - test_acc_after) as err, cost' \\
      prune/ --rows method --values err,cost --mean-se --best min --precision 2
  dbx table --experiments --kind prune --rows params.prune.method --columns params.prune.schedule \\
      --values results.final_test_acc --mean-se --best max --format latex,markdown --out results
guide: docs/dbx-report.md"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "table",
        __doc__,
        main,
        help="write a paper table (LaTeX booktabs, Markdown, CSV), with its CSV and script",
        epilog=EPILOG,
    )
    reporting.add_source_options(parser)
    parser.add_argument("--rows", required=True, help="row label columns, comma-separated")
    parser.add_argument("--values", required=True, help="value columns, comma-separated")
    parser.add_argument("--columns", help="pivot: one table column per value of this column")
    parser.add_argument("--precision", type=int, default=3, help="digits after the point (3)")
    parser.add_argument(
        "--best",
        action="append",
        help="bold the best cell per column: max, min, or COL=max / COL=min (repeatable)",
    )
    parser.add_argument("--caption", help="a caption (a comment in LaTeX, a line in Markdown)")
    parser.add_argument("--format", help="latex, markdown, csv, comma-separated (default: latex)")
    parser.add_argument("--out", help="write OUT.tex/.md/.csv with data and script (else print)")
    parser.set_defaults(command_parser=parser)


def main(args: argparse.Namespace) -> int:
    from squeezr.dbx.report import TableSpec, fetch, make_table, render_table

    rows = reporting.names(args.rows, "--rows")
    values = reporting.names(args.values, "--values")
    best, best_all = _best(args.best or [])
    spec = TableSpec(
        rows=tuple(rows),
        values=tuple(values),
        columns=args.columns,
        precision=args.precision,
        best=best,
        best_all=best_all,
        caption=args.caption,
    )
    source = reporting.source(args)
    if args.mean_se:
        by = [*rows, *([args.columns] if args.columns else [])]
        source = {**source, "aggregate": {"by": by, "values": values}}
    formats = reporting.names(args.format, "--format") or ["latex"]
    if args.out is None:
        if len(formats) > 1:
            raise UserError("printing shows one format; give --out to write several")
        sys.stdout.write(render_table(fetch(source), spec, formats[0]))
        return 0
    written = make_table(
        source,
        spec,
        args.out,
        formats,
        command=reporting.command_line("dbx table", args.command_parser, args),
    )
    reporting.report_written(written, args.json)
    return 0


def _best(items: list[str]) -> tuple[dict[str, str], str | None]:
    """``--best max`` (every column) and ``--best err=min`` (one column)."""
    per_column: dict[str, str] = {}
    every = None
    for item in items:
        column, sep, how = item.rpartition("=")
        if not sep:
            every = how
        elif column:
            per_column[column] = how
        else:
            raise UserError(f"--best takes max, min or COL=max/min, got {item!r}")
    return per_column, every
