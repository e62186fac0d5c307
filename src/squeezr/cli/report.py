"""``squeezr report [PREFIX] --out DIR``: the thesis's figures and results table from pruning runs.

Reads the pruning runs chosen as ``dbx ls`` chooses them (default: every ``prune``
experiment) and writes into DIR: test error against blocks removed per method (mean ± s.e.
over initial models; fine-tuned runs and runs without fine-tuning apart), against parameters
removed and against the fine-tuning cost, the blocks removed per group, Kendall's tau between
the methods' block rankings, a saliency heat map (block × step) per method, and the results
table (LaTeX, Markdown, CSV), each with its data (.data.csv) and the script that redraws it,
plus index.md and index.html showing them all. Guide: docs/dbx-report.md.
"""

from __future__ import annotations

import argparse
import shlex

from squeezr.cli.options import add_repo_option
from squeezr.dbx.clikit import plain_text


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="figures and results table of a set of pruning runs, with an index page",
        description=plain_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("prefix", nargs="?", help="only runs whose name starts with this")
    p.add_argument("--kind", default="prune", help="experiment kind (default prune)")
    p.add_argument("--since", help="created since: a duration (7d, 12h) or ISO date")
    p.add_argument("--where", help="condition on params/results, as in dbx ls --where")
    p.add_argument("--out", required=True, help="folder to write the report into")
    p.add_argument(
        "--format", default="png,pdf", help="figure formats: png, pdf, svg (default png,pdf)"
    )
    add_repo_option(p, creates=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from squeezr.dbx.cli.reporting import names
    from squeezr.report import write_report

    formats = tuple(names(args.format, "--format"))
    words = ["squeezr", "report", *([args.prefix] if args.prefix else []), "--out", args.out]
    for flag in ("kind", "since", "where", "repo"):
        value = getattr(args, flag, None)
        if value is not None and not (flag == "kind" and value == "prune"):
            words += [f"--{flag}", value]
    if args.format != "png,pdf":
        words += ["--format", args.format]
    index = write_report(
        args.out,
        repo=args.repo,
        prefix=args.prefix,
        kind=args.kind,
        since=args.since,
        where=args.where,
        formats=formats,
        command=shlex.join(words),
    )
    print(f"report written: {index} (and index.html beside it)")
    return 0
