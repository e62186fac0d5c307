"""Tables for papers: LaTeX (booktabs), Markdown, CSV and HTML, from one laid-out grid.

:func:`layout` turns a data table and a :class:`~squeezr.dbx.report.spec.TableSpec` into a
grid of cells (``mean`` and ``se``, and whether the cell is its column's best); each format
is then a small writer over that grid, kept in :data:`TABLE_FORMATS` keyed by name (with the
file suffix it is written under), as datasette keys its renderers by extension. A new format
is one writer function and one entry.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from squeezr.dbx.errors import UserError
from squeezr.dbx.fileio import atomic_write
from squeezr.dbx.report.data import check_columns, check_numeric
from squeezr.dbx.report.spec import TableSpec

__all__ = ["TABLE_FORMATS", "Grid", "layout", "render_table", "write_table"]


@dataclass(frozen=True)
class Cell:
    mean: float | None
    se: float | None
    digits: int = 3
    best: bool = False


@dataclass(frozen=True)
class Grid:
    """Header labels (row-label columns first) and rows of (labels, value cells)."""

    label_headers: list[str]
    value_headers: list[str]
    rows: list[tuple[list[str], list[Cell]]]
    caption: str | None


def layout(data: pd.DataFrame, spec: TableSpec) -> Grid:
    """The grid of ``data`` as ``spec`` lays it out: one row per distinct ``rows`` tuple (in
    the data's order), one column per value (or per distinct pivot value)."""
    if data.empty:
        raise UserError("the data has no rows; nothing to tabulate")
    check_columns(data, spec.columns_used())
    for value in spec.values:
        check_numeric(data, value)
    keys: dict[tuple[str, ...], dict[str, tuple[Any, Any]]] = {}
    pivots: list[str] = []
    for record in data.to_dict(orient="records"):
        key = tuple(_text(record[r]) for r in spec.rows)
        cells = keys.setdefault(key, {})
        if spec.columns is not None:
            head = _text(record[spec.columns])
            pairs = [(head, spec.values[0])]
            if head not in pivots:
                pivots.append(head)
        else:
            pairs = [(value, value) for value in spec.values]
        for head, value in pairs:
            if head in cells:
                where = ", ".join(f"{r} = {k}" for r, k in zip(spec.rows, key, strict=True))
                raise UserError(
                    f"several rows for {where}; aggregate them (--mean-se) or add a row column"
                )
            cells[head] = (record[value], record.get(f"{value}_se"))
    headers = pivots if spec.columns is not None else list(spec.values)
    shown = [spec.values[0]] * len(headers) if spec.columns is not None else headers
    grid = {
        key: [
            _cell(*cells.get(head, (None, None)), spec.precision_of(value))
            for head, value in zip(headers, shown, strict=True)
        ]
        for key, cells in keys.items()
    }
    for j, head in enumerate(headers):
        how = spec.best_of(spec.values[0] if spec.columns is not None else head)
        means = [cells[j].mean for cells in grid.values() if cells[j].mean is not None]
        if how and means:
            target = max(means) if how == "max" else min(means)
            for cells in grid.values():
                if cells[j].mean == target:
                    cells[j] = replace(cells[j], best=True)
    return Grid(
        label_headers=[spec.labels.get(r, r) for r in spec.rows],
        value_headers=[spec.labels.get(h, h) for h in headers],
        rows=[(list(key), cells) for key, cells in grid.items()],
        caption=spec.caption,
    )


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _cell(mean: Any, se: Any, digits: int) -> Cell:
    def number(value: Any) -> float | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return float(value)

    return Cell(number(mean), number(se), digits)


def _numbers(cell: Cell) -> tuple[str, str | None] | None:
    if cell.mean is None:
        return None
    se = None if cell.se is None else f"{cell.se:.{cell.digits}f}"
    return f"{cell.mean:.{cell.digits}f}", se


def latex(grid: Grid) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``): labels left, numbers
    right, ``$m \\pm s$`` cells, the best in bold."""
    spec = "l" * len(grid.label_headers) + "r" * len(grid.value_headers)
    lines = []
    if grid.caption:
        lines.append(f"% {grid.caption}")
    lines += [f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
    lines.append(" & ".join(map(_tex, grid.label_headers + grid.value_headers)) + " \\\\")
    lines.append("\\midrule")
    for labels, cells in grid.rows:
        values = [_tex_cell(cell) for cell in cells]
        lines.append(" & ".join([*map(_tex, labels), *values]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _tex(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def _tex_cell(cell: Cell) -> str:
    numbers = _numbers(cell)
    if numbers is None:
        return "--"
    mean, se = numbers
    body = mean if se is None else f"{mean} \\pm {se}"
    return f"$\\mathbf{{{body}}}$" if cell.best else f"${body}$"


def markdown(grid: Grid) -> str:
    """A pipe table: labels left-aligned, numbers right-aligned, the best in bold."""
    headers = [_md(h) for h in grid.label_headers + grid.value_headers]
    align = [":--"] * len(grid.label_headers) + ["--:"] * len(grid.value_headers)
    lines = [_md_row(headers), _md_row(align)]
    for labels, cells in grid.rows:
        lines.append(_md_row([*map(_md, labels), *(_md_cell(c) for c in cells)]))
    text = "\n".join(lines) + "\n"
    return f"{grid.caption}\n\n{text}" if grid.caption else text


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_cell(cell: Cell) -> str:
    numbers = _numbers(cell)
    if numbers is None:
        return ""
    mean, se = numbers
    body = mean if se is None else f"{mean} ± {se}"
    return f"**{body}**" if cell.best else body


def csv_table(grid: Grid) -> str:
    """The shown table with numbers at the chosen precision; a ``<column> s.e.`` column
    follows each column that has standard errors; ``best`` is not marked."""
    with_se = [
        any(cells[j].se is not None for _, cells in grid.rows)
        for j in range(len(grid.value_headers))
    ]
    header = list(grid.label_headers)
    for head, se in zip(grid.value_headers, with_se, strict=True):
        header += [head, f"{head} s.e."] if se else [head]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for labels, cells in grid.rows:
        row = list(labels)
        for cell, se in zip(cells, with_se, strict=True):
            numbers = _numbers(cell) or ("", None)
            row += [numbers[0], numbers[1] or ""] if se else [numbers[0]]
        writer.writerow(row)
    return buffer.getvalue()


def html_table(grid: Grid) -> str:
    """An HTML ``<table>`` (for index pages): numbers in cells of class ``n``, the best in
    ``<strong>``."""
    from html import escape

    head = "".join(f"<th>{escape(h)}</th>" for h in grid.label_headers + grid.value_headers)
    lines = ["<table>"]
    if grid.caption:
        lines.append(f"<caption>{escape(grid.caption)}</caption>")
    lines.append(f"<thead><tr>{head}</tr></thead><tbody>")
    for labels, cells in grid.rows:
        row = "".join(f"<td>{escape(label)}</td>" for label in labels)
        for cell in cells:
            text = escape(_md_cell(replace(cell, best=False)))
            row += f'<td class="n">{f"<strong>{text}</strong>" if cell.best else text}</td>'
        lines.append(f"<tr>{row}</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines) + "\n"


Writer = Callable[[Grid], str]
# format name -> (file suffix, writer)
TABLE_FORMATS: dict[str, tuple[str, Writer]] = {
    "latex": (".tex", latex),
    "markdown": (".md", markdown),
    "csv": (".csv", csv_table),
    "html": (".html", html_table),
}


def render_table(data: pd.DataFrame, spec: TableSpec, fmt: str) -> str:
    """``data`` as a table in format ``fmt`` (latex, markdown or csv)."""
    if fmt not in TABLE_FORMATS:
        raise UserError(f"unknown table format {fmt!r}; use {', '.join(TABLE_FORMATS)}")
    return TABLE_FORMATS[fmt][1](layout(data, spec))


def write_table(data: pd.DataFrame, spec: TableSpec, paths: Iterable[str | Path]) -> list[Path]:
    """Write the table to each path, the format chosen by its suffix (.tex, .md, .csv)."""
    by_suffix = {suffix: name for name, (suffix, _) in TABLE_FORMATS.items()}
    grid = layout(data, spec)
    written = []
    for path in map(Path, paths):
        name = by_suffix.get(path.suffix.lower())
        if name is None:
            raise UserError(f"cannot write {path.name}: use a .tex, .md or .csv file name")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, TABLE_FORMATS[name][1](grid))
        written.append(path)
    return written
