"""Publication figures and tables from experiment data, each with the script that redraws it.

    from squeezr.dbx import report
    fig = report.draw(table, report.FigureSpec("line", x="k", y="err", group="method"))

Layers, each usable alone: :mod:`.spec` (what to show), :mod:`.data` (fetching, aggregating,
CSV), :mod:`.figures` (the registered figure kinds and the paper style), :mod:`.tables` (the
table formats), :mod:`.script` (the regenerating script) and :mod:`.outputs` (all of it for
``dbx plot``/``dbx table``). matplotlib and pandas are imported only here, never by
``import squeezr.dbx``. Guide: docs/dbx-report.md.
"""

from squeezr.dbx.report.data import aggregate, fetch, read_csv, write_csv
from squeezr.dbx.report.figures import FIGURES, draw, figure, save
from squeezr.dbx.report.outputs import make_figure, make_table, plot, refresh
from squeezr.dbx.report.spec import FigureSpec, TableSpec
from squeezr.dbx.report.tables import TABLE_FORMATS, render_table, write_table

__all__ = [
    "FIGURES",
    "TABLE_FORMATS",
    "FigureSpec",
    "TableSpec",
    "aggregate",
    "draw",
    "fetch",
    "figure",
    "make_figure",
    "make_table",
    "plot",
    "read_csv",
    "refresh",
    "render_table",
    "save",
    "write_csv",
    "write_table",
]
