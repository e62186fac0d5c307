"""``dbx plot [QUERY] [PREFIX] --x COL --y COL --out FILE``: a publication figure, with its data and script.

Draws a line, scatter, bar or heat-map plot of a log query's table (or, with
``--experiments``, of the experiments' params and results) in a paper style, and writes
beside it the CSV it was drawn from (``FILE.data.csv``) and a Python script (``FILE.py``)
that redraws it from that CSV; ``python FILE.py --refresh`` re-runs the query first.
Running the same command on the same data writes byte-identical files.
"""

from __future__ import annotations

import argparse

from squeezr.dbx.cli import common, reporting
from squeezr.dbx.errors import UserError

EPILOG = """examples:
  dbx plot 'prune/step/:k | select params.prune.method as method, k, 100 * (1 - test_acc_after) as err' \\
      prune/ --x k --y err --group method --mean-se --xlabel 'blocks removed' \\
      --ylabel 'test error (%)' --out figs/err --format png,pdf
  dbx plot --experiments --kind prune --x results.params_removed_pct \\
      --y results.final_test_acc --group params.prune.method --chart scatter --out size
  dbx plot 'prune/step/:k | select params.prune.method as method, k, 100 * (1 - test_acc_after) as err' \\
      --x k --y method --value err --chart heatmap --mean-se --out heat
guide: docs/dbx-report.md"""

CHARTS = ("line", "scatter", "bar", "heatmap")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "plot",
        __doc__,
        main,
        help="draw a paper figure (PNG/PDF/SVG) from a query, with its CSV and script",
        epilog=EPILOG,
    )
    reporting.add_source_options(parser)
    parser.add_argument("--chart", choices=CHARTS, default="line", help="default: line")
    parser.add_argument("--x", required=True, help="column on the x axis")
    parser.add_argument("--y", required=True, help="column on the y axis")
    parser.add_argument("--group", help="one series per distinct value of this column")
    parser.add_argument("--err", help="column holding each point's standard error")
    parser.add_argument("--value", help="heat map: column that colours the cells")
    parser.add_argument("--logx", action="store_true", help="logarithmic x axis")
    parser.add_argument("--logy", action="store_true", help="logarithmic y axis")
    parser.add_argument("--xlabel", help="x axis label, with its unit (default: the column)")
    parser.add_argument("--ylabel", help="y axis label, with its unit (default: the column)")
    parser.add_argument("--value-label", help="heat map colour bar label")
    parser.add_argument("--value-range", help="heat map: LOW,HIGH of the colour scale")
    parser.add_argument("--colormap", help="heat map colours (default viridis; e.g. RdBu_r)")
    parser.add_argument("--title")
    parser.add_argument(
        "--legend",
        choices=("auto", "best", "outside", "none"),
        default="auto",
        help="default: auto",
    )
    parser.add_argument("--legend-title", help="default: the --group column")
    parser.add_argument("--size", help="width,height in inches (default 4.5,3)")
    parser.add_argument("--out", required=True, help="output file name, e.g. figs/err or err.png")
    parser.add_argument(
        "--format", help="png, pdf, svg, comma-separated (default: --out's, else png)"
    )
    parser.set_defaults(command_parser=parser)


def main(args: argparse.Namespace) -> int:
    from squeezr.dbx.report import FigureSpec, make_figure
    from squeezr.dbx.report.outputs import with_mean_se

    spec = FigureSpec(
        args.chart,
        x=args.x,
        y=args.y,
        group=args.group,
        err=args.err,
        value=args.value,
        logx=args.logx,
        logy=args.logy,
        xlabel=args.xlabel,
        ylabel=args.ylabel,
        title=args.title,
        legend=args.legend,
        legend_title=args.legend_title,
        value_label=args.value_label,
        size=_pair(args.size, "--size", "width,height in inches (e.g. 4.5,3)"),
        value_range=_pair(args.value_range, "--value-range", "LOW,HIGH (e.g. -1,1)"),
        colormap=args.colormap,
    )
    source = reporting.source(args)
    if args.mean_se:
        if args.err:
            raise UserError("--mean-se computes the error bars; leave out --err")
        spec, source = with_mean_se(spec, source)
    written = make_figure(
        source,
        spec,
        args.out,
        _formats(args.format, args.out),
        command=reporting.command_line("dbx plot", args.command_parser, args),
    )
    reporting.report_written(written, args.json)
    return 0


def _pair(text: str | None, option: str, what: str) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        first, second = (float(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"{option} takes {what}, got {text!r}") from None
    return first, second


def _formats(text: str | None, out: str) -> list[str]:
    if text:
        return reporting.names(text, "--format")
    suffix = out.rsplit(".", 1)[-1].lower() if "." in out.rsplit("/", 1)[-1] else ""
    return [suffix] if suffix in ("png", "pdf", "svg") else ["png"]
