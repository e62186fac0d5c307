"""Whole outputs: data, drawing and script together, as ``dbx plot`` and ``dbx table`` write them.

For an output named ``OUT`` (say ``figs/err``) the files are ``OUT.<format>`` (png, pdf,
svg; or tex, md, csv for tables), ``OUT.data.csv`` (the table it was drawn from) and
``OUT.py`` (the script that redraws it from that CSV). The data goes through the CSV before
it is drawn, so the command and the script draw the very same numbers, and every file is
written deterministically: the same command on the same data gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squeezr.dbx.errors import UserError
from squeezr.dbx.fileio import atomic_write
from squeezr.dbx.report.data import aggregate, csv_text, fetch, read_csv, write_csv
from squeezr.dbx.report.figures import FORMATS, draw, save
from squeezr.dbx.report.script import render_script
from squeezr.dbx.report.spec import FigureSpec, TableSpec
from squeezr.dbx.report.tables import TABLE_FORMATS, layout, write_table

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["make_figure", "make_table", "output_paths", "plot", "refresh"]


def refresh(source: dict[str, Any], data_path: str | Path) -> Path:
    """Fetch ``source`` again and rewrite the CSV at ``data_path`` (a script's ``--refresh``)."""
    write_csv(fetch(source), data_path)
    return Path(data_path)


def output_paths(out: str | Path, formats: Iterable[str], suffixes: dict[str, str]) -> list[Path]:
    """``OUT.<suffix>`` for each format (``OUT`` may carry one of the suffixes already)."""
    base = Path(out)
    if base.suffix.lower() in suffixes.values():
        base = base.with_suffix("")
    paths = []
    for fmt in formats:
        if fmt not in suffixes:
            raise UserError(f"unknown format {fmt!r}; use {', '.join(suffixes)}")
        paths.append(base.with_name(base.name + suffixes[fmt]))
    if not paths:
        raise UserError("give at least one output format")
    return paths


FIGURE_SUFFIXES = {fmt: f".{fmt}" for fmt in FORMATS}
TABLE_SUFFIXES = {name: suffix for name, (suffix, _) in TABLE_FORMATS.items()}


def _write(
    source: dict[str, Any],
    spec: FigureSpec | TableSpec,
    outputs: list[Path],
    command: str,
    table: pd.DataFrame | None,
) -> dict[str, Any]:
    base = outputs[0].with_suffix("")
    data_path = base.with_name(base.name + ".data.csv")
    script_path = base.with_name(base.name + ".py")
    # Draw from the CSV text before writing anything, so that bad input leaves no files.
    text = csv_text(fetch(source) if table is None else table)
    data = read_csv(io.StringIO(text))
    if isinstance(spec, FigureSpec):
        figure = draw(data, spec)
    else:
        layout(data, spec)
    data_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(data_path, text)
    if isinstance(spec, FigureSpec):
        save(figure, outputs)
    else:
        write_table(data, spec, outputs)
    script = render_script(
        command=command,
        source=source,
        spec=spec,
        data=data_path,
        outputs=outputs,
        script=script_path,
    )
    atomic_write(script_path, script)
    script_path.chmod(0o755)
    return {"outputs": outputs, "data": data_path, "script": script_path, "rows": len(data)}


def make_figure(
    source: dict[str, Any],
    spec: FigureSpec,
    out: str | Path,
    formats: Iterable[str] = ("png",),
    command: str = "",
    table: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Fetch ``source`` (or take ``table``, already fetched), write its CSV, draw it as
    ``spec`` says into ``OUT.<format>`` and write the script; returns the paths written."""
    return _write(source, spec, output_paths(out, formats, FIGURE_SUFFIXES), command, table)


def make_table(
    source: dict[str, Any],
    spec: TableSpec,
    out: str | Path,
    formats: Iterable[str] = ("latex",),
    command: str = "",
    table: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """As :func:`make_figure`, for a table in each of ``formats`` (latex, markdown, csv)."""
    return _write(source, spec, output_paths(out, formats, TABLE_SUFFIXES), command, table)


def plot(
    query: str | None = None,
    prefix: str | None = None,
    *,
    x: str,
    y: str,
    chart: str = "line",
    data: pd.DataFrame | None = None,
    repo: Any = None,
    kind: str | None = None,
    since: str | None = None,
    where: str | None = None,
    mean_se: bool = False,
    out: str | Path | None = None,
    formats: Iterable[str] = ("png",),
    **look: Any,
) -> Figure:
    """A matplotlib Figure of a log ``query`` over the experiments chosen like ``dbx ls``
    (``prefix``, ``kind``, ``since``, ``where``), of the experiments' own table when
    ``query`` is None (columns ``params.*``, ``results.*``), or of a DataFrame ``data``.

    ``mean_se`` averages the ``y`` of rows sharing ``x`` (and ``group``) and shows ± one
    standard error. ``look`` is any other :class:`FigureSpec` field (``group``, ``err``,
    ``value``, ``logx``, ``xlabel``, ``title``, ``legend``, ``size`` ...). With ``out``, the
    figure is also written with its CSV and script, as ``dbx plot --out`` does.

    >>> fig = dbx.plot("prune/step/:k | select params.prune.method as method, k, test_acc",
    ...                x="k", y="test_acc", group="method", mean_se=True, repo="experiments")
    """
    spec = FigureSpec(chart, x=x, y=y, **look)
    table = None
    if data is not None:
        source: dict[str, Any] = {"dataframe": "passed to dbx.plot; --refresh cannot fetch it"}
        table = aggregate(data, *_aggregate_args(spec)) if mean_se else data
    else:
        selection = {"prefix": prefix, "kind": kind, "since": since, "where": where}
        source = figure_source(query, repo, selection)
    if mean_se:
        spec, source = with_mean_se(spec, source)
    if out is not None:
        make_figure(source, spec, out, formats, command="dbx.plot(...) in Python", table=table)
    return draw(fetch(source) if table is None else table, spec)


def figure_source(query: str | None, repo: Any, selection: dict[str, Any]) -> dict[str, Any]:
    """The source dict of a log query (or, for None, of the experiments' own table)."""
    from squeezr.dbx.store import Repository

    root = str(Path(Repository.find(repo).path).resolve())
    chosen = {k: v for k, v in selection.items() if v is not None}
    if query is None:
        return {"experiments": True, "repo": root, "selection": chosen}
    return {"query": query, "repo": root, "selection": chosen}


def _aggregate_args(spec: FigureSpec) -> tuple[list[str], list[str]]:
    keys = [c for c in (spec.group, spec.x) if c is not None]
    if spec.chart == "heatmap":
        keys = [spec.y, spec.x]
        return keys, [spec.value or spec.y]
    return keys, [spec.y]


def with_mean_se(spec: FigureSpec, source: dict[str, Any]) -> tuple[FigureSpec, dict[str, Any]]:
    """The spec and source that average ``y`` over rows sharing x (and group) and show the
    standard error as ``err``."""

    by, values = _aggregate_args(spec)
    source = {**source, "aggregate": {"by": by, "values": values}}
    if spec.chart == "heatmap":
        return spec, source
    return replace(spec, err=f"{spec.y}_se"), source
