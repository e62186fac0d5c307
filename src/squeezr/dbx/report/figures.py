"""The figure kinds: one function per kind, registered by name, and the drawing around them.

Each kind is a function ``(data, ax, spec) -> ax`` that draws a DataFrame on one Axes as
:class:`~squeezr.dbx.report.spec.FigureSpec` says; :func:`figure` registers it under its
name, as ``squeezr.saliency.method`` registers saliency methods, so a new kind is one
decorated function and the tests cover every registered kind. :func:`draw` makes the Figure
(in the paper style), checks the columns, calls the kind and labels the axes; :func:`save`
writes it with fixed metadata so the same data always gives the same bytes.

matplotlib is imported only inside ``squeezr.dbx.report`` (a test keeps it so); Figures are
made without pyplot, so drawing never touches a global figure manager or backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import style
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from squeezr.dbx.errors import UserError
from squeezr.dbx.fileio import atomic_path
from squeezr.dbx.report.data import check_columns, check_numeric
from squeezr.dbx.report.spec import FigureSpec

__all__ = ["FIGURES", "FORMATS", "draw", "figure", "paper_style", "save"]

STYLE = Path(__file__).with_name("paper.mplstyle")
# Fixed metadata per output format: no dates, no software version, a fixed SVG id salt.
FORMATS: dict[str, dict[str, Any]] = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "ModDate": None},
    "svg": {"Date": None},
}
FIXED_RC = {"svg.hashsalt": "squeezr.dbx.report", "pdf.compression": 6}
NUMERIC_X = ("line", "scatter")  # charts whose x axis is numeric (not categories)
INSIDE_LEGEND_MAX = 4  # series; more go outside the axes (auto)
ANNOTATE_MAX_CELLS = 150

Kind = Callable[[pd.DataFrame, Axes, FigureSpec], Axes]
FIGURES: dict[str, Kind] = {}


def figure(name: str) -> Callable[[Kind], Kind]:
    """Register a figure kind under ``name``."""

    def register(function: Kind) -> Kind:
        FIGURES[name] = function
        return function

    return register


@contextmanager
def paper_style() -> Iterator[None]:
    """The packaged paper look plus the settings that make output reproducible, for the
    duration of the block only (never global rcParams)."""
    with style.context(STYLE, after_reset=True), _rc(FIXED_RC):
        yield


@contextmanager
def _rc(values: dict[str, Any]) -> Iterator[None]:
    import matplotlib as mpl

    with mpl.rc_context(values):
        yield


def draw(data: pd.DataFrame, spec: FigureSpec) -> Figure:
    """``data`` drawn as ``spec`` says, on a new Figure in the paper style."""
    kind = FIGURES.get(spec.chart)
    if kind is None:
        raise UserError(f"unknown chart {spec.chart!r}; use {', '.join(sorted(FIGURES))}")
    if data.empty:
        raise UserError("the data has no rows; nothing to draw")
    check_columns(data, spec.columns())
    with paper_style():
        fig = Figure(figsize=spec.size) if spec.size else Figure()
        ax = fig.add_subplot()
        kind(data, ax, spec)
        ax.set_xlabel(spec.xlabel if spec.xlabel is not None else spec.x)
        ax.set_ylabel(spec.ylabel if spec.ylabel is not None else spec.y)
        if spec.title:
            ax.set_title(spec.title)
        if spec.logx:
            ax.set_xscale("log")
        elif spec.chart in NUMERIC_X and _integral(data[spec.x]):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if spec.logy:
            ax.set_yscale("log")
        elif spec.chart != "heatmap" and _integral(data[spec.y]):
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        _legend(ax, spec)
    return fig


def _integral(column: pd.Series) -> bool:
    """Whether a column holds only whole numbers (counts, steps): ticks then stay whole."""
    values = pd.to_numeric(column, errors="coerce").dropna()
    return not values.empty and bool((values == values.round()).all())


def save(fig: Figure, paths: Iterable[str | Path]) -> list[Path]:
    """Write ``fig`` to each path (format from its suffix: png, pdf or svg), atomically and
    byte-for-byte reproducibly; returns the paths."""
    written = []
    for path in map(Path, paths):
        fmt = path.suffix.lstrip(".").lower()
        if fmt not in FORMATS:
            raise UserError(f"cannot write {path.name}: use a .png, .pdf or .svg file name")
        path.parent.mkdir(parents=True, exist_ok=True)
        with paper_style(), atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, metadata=FORMATS[fmt])
        written.append(path)
    return written


def _legend(ax: Axes, spec: FigureSpec) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if not handles or spec.legend == "none":
        return
    title = spec.legend_title if spec.legend_title is not None else spec.group
    place = spec.legend
    if place == "auto":
        place = "best" if len(handles) <= INSIDE_LEGEND_MAX else "outside"
    if place == "outside":
        ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        ax.legend(title=title, loc="best")


def _series(data: pd.DataFrame, spec: FigureSpec) -> list[tuple[str | None, pd.DataFrame]]:
    """(label, rows) per series: one per distinct ``group`` value, in sorted order."""
    if spec.group is None:
        return [(None, data)]
    keys = _sorted_unique(data[spec.group])
    return [(_label(key), data[_equals(data[spec.group], key)]) for key in keys]


def _equals(column: pd.Series, key: Any) -> pd.Series:
    return column.isna() if _missing(key) else column == key


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _sorted_unique(values: pd.Series) -> list[Any]:
    """Distinct values, numbers in numeric order before text, missing last."""
    unique = list(dict.fromkeys(values.tolist()))
    present = [v for v in unique if not _missing(v)]
    numbers = sorted(v for v in present if isinstance(v, (int, float)) and not isinstance(v, bool))
    others = sorted((v for v in present if v not in numbers), key=str)
    return numbers + others + ([None] if len(present) < len(unique) else [])


def _label(value: Any) -> str:
    if _missing(value):
        return "(none)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _cycle() -> list[dict[str, Any]]:
    """The style's colour (and marker) pairs, in order."""
    import matplotlib as mpl

    return list(mpl.rcParams["axes.prop_cycle"])


def _numeric(data: pd.DataFrame, spec: FigureSpec, *columns: str | None) -> None:
    """Check that the named columns hold numbers; ``err`` may be empty (single rows)."""
    for column in columns:
        if column is not None:
            check_numeric(data, column, allow_empty=column == spec.err)


@figure("line")
def line(data: pd.DataFrame, ax: Axes, spec: FigureSpec) -> Axes:
    """One line per series, points in x order; ``err`` draws a shaded ±1 s.e. band."""
    _numeric(data, spec, spec.x, spec.y, spec.err)
    for label, rows in _series(data, spec):
        rows = rows.dropna(subset=[spec.x, spec.y]).sort_values(spec.x, kind="stable")
        x, y = rows[spec.x].astype(float), rows[spec.y].astype(float)
        (drawn,) = ax.plot(x, y, label=label)
        if spec.err is not None:
            err = rows[spec.err].astype(float).fillna(0.0)
            ax.fill_between(x, y - err, y + err, color=drawn.get_color(), alpha=0.2, lw=0)
    return ax


@figure("scatter")
def scatter(data: pd.DataFrame, ax: Axes, spec: FigureSpec) -> Axes:
    """Points, one colour and marker per series; ``err`` draws vertical error bars."""
    _numeric(data, spec, spec.x, spec.y, spec.err)
    cycle = iter(_cycle())
    for label, rows in _series(data, spec):
        rows = rows.dropna(subset=[spec.x, spec.y])
        props = next(cycle, {})
        yerr = None if spec.err is None else rows[spec.err].astype(float).fillna(0.0)
        ax.errorbar(
            rows[spec.x].astype(float),
            rows[spec.y].astype(float),
            yerr=yerr,
            linestyle="none",
            label=label,
            color=props.get("color"),
            marker=props.get("marker", "o"),
        )
    return ax


@figure("bar")
def bar(data: pd.DataFrame, ax: Axes, spec: FigureSpec) -> Axes:
    """Bars per x category, side by side per series; ``err`` draws error bars."""
    _numeric(data, spec, spec.y, spec.err)
    categories = _sorted_unique(data[spec.x])
    series = _series(data, spec)
    width = 0.8 / len(series)
    colours = [item["color"] for item in _cycle()]
    for i, (label, rows) in enumerate(series):
        positions, heights, errors = [], [], []
        for j, category in enumerate(categories):
            match = rows[_equals(rows[spec.x], category)]
            if match.empty:
                continue
            if len(match) > 1:
                raise UserError(
                    f"several rows for {spec.x} = {_label(category)}"
                    + (f" in series {label}" if label else "")
                    + "; aggregate them (--mean-se) or group the series (--group)"
                )
            positions.append(j + (i - (len(series) - 1) / 2) * width)
            heights.append(float(match[spec.y].iloc[0]))
            error = float(match[spec.err].iloc[0]) if spec.err else 0.0
            errors.append(0.0 if np.isnan(error) else error)
        ax.bar(
            positions,
            heights,
            width=width * 0.95,
            yerr=errors if spec.err else None,
            label=label,
            color=colours[i % len(colours)],
            error_kw={"elinewidth": 0.8, "ecolor": "#333333"},
        )
    ax.set_xticks(range(len(categories)), [_label(c) for c in categories])
    ax.grid(axis="x", visible=False)
    return ax


@figure("heatmap")
def heatmap(data: pd.DataFrame, ax: Axes, spec: FigureSpec) -> Axes:
    """Cells at (x, y) categories coloured by ``value``, with a labelled colour bar; empty
    cells (no row) are left blank; small maps print each cell's value."""
    _numeric(data, spec, spec.value)
    xs, ys = _sorted_unique(data[spec.x]), _sorted_unique(data[spec.y])
    grid = np.full((len(ys), len(xs)), np.nan)
    col = {_label(v): i for i, v in enumerate(xs)}
    row = {_label(v): i for i, v in enumerate(ys)}
    for x, y, value in zip(data[spec.x], data[spec.y], data[spec.value], strict=True):
        i, j = row[_label(y)], col[_label(x)]
        if not np.isnan(grid[i, j]):
            raise UserError(
                f"several rows for {spec.x} = {_label(x)}, {spec.y} = {_label(y)}; "
                "a heat map needs one value per cell (aggregate them with --mean-se)"
            )
        grid[i, j] = np.nan if _missing(value) else float(value)
    low, high = spec.value_range or (None, None)
    image = ax.imshow(
        np.ma.masked_invalid(grid),
        aspect="auto",
        interpolation="nearest",
        cmap=spec.colormap,
        vmin=low,
        vmax=high,
    )
    ax.set_xticks(_ticks(len(xs)), [_label(xs[i]) for i in _ticks(len(xs))])
    ax.set_yticks(_ticks(len(ys)), [_label(ys[i]) for i in _ticks(len(ys))])
    ax.grid(False)
    ax.spines[:].set_visible(False)
    bar = ax.figure.colorbar(image, ax=ax)
    bar.set_label(spec.value_label if spec.value_label is not None else spec.value)
    bar.outline.set_visible(False)
    if spec.annotate and grid.size <= ANNOTATE_MAX_CELLS:
        _annotate(ax, image, grid)
    return ax


def _ticks(count: int, most: int = 25) -> list[int]:
    """Tick positions: every category, or every k-th when there are too many to read."""
    step = max(1, -(-count // most))
    return list(range(0, count, step))


def _annotate(ax: Axes, image: Any, grid: np.ndarray) -> None:
    """Write each cell's value, black on light cells and white on dark ones."""
    size, digits = (7, 3) if grid.size <= 50 else (5, 2)
    for (i, j), value in np.ndenumerate(grid):
        if np.isnan(value):
            continue
        r, g, b = to_rgb(image.cmap(image.norm(value)))
        colour = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
        ax.text(j, i, f"{value:.{digits}g}", ha="center", va="center", color=colour, fontsize=size)
