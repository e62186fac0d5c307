"""What a figure or table shows, kept apart from how it is drawn.

A :class:`FigureSpec` or :class:`TableSpec` names columns of a data table and the look of the
output; it holds no data. Keeping the specification apart from the drawing (as seaborn's
objects interface does) is what keeps a regenerating script short: the script is the spec,
written out as Python, plus three lines that read the CSV and draw it. :func:`as_code`
writes a spec that way, field by field, leaving out the defaults.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from squeezr.dbx.errors import UserError

__all__ = ["FigureSpec", "TableSpec", "as_code"]

LEGEND_PLACES = ("auto", "best", "outside", "none")
BEST = ("max", "min")


@dataclass(frozen=True)
class FigureSpec:
    """One plot: which columns go where, and how it looks.

        ``chart`` is a name in :data:`squeezr.dbx.report.figures.FIGURES` (line, scatter, bar,
        heatmap). ``x``/``y`` are columns; ``group`` splits rows into series (one line, colour and
        marker each); ``err`` holds each point's standard error (a band around lines, error bars
        on points and bars); a heat map colours cells by ``value``. Labels default to the column
        names; ``legend`` is auto (inside at the best place for up to four series, else outside on
        the right), best, outside or none; ``size`` is (width, height) in inches. A heat map's
    colours span ``value_range`` (default: the data's) in ``colormap`` (default viridis; a
    diverging one such as RdBu_r suits values around zero, like correlations).
    """

    chart: str
    x: str
    y: str
    group: str | None = None
    err: str | None = None
    value: str | None = None
    logx: bool = False
    logy: bool = False
    xlabel: str | None = None
    ylabel: str | None = None
    title: str | None = None
    legend: str = "auto"
    legend_title: str | None = None
    value_label: str | None = None
    size: tuple[float, float] | None = None
    annotate: bool = True
    value_range: tuple[float, float] | None = None
    colormap: str | None = None

    def __post_init__(self) -> None:
        if self.legend not in LEGEND_PLACES:
            raise UserError(f"unknown legend place {self.legend!r}; use {', '.join(LEGEND_PLACES)}")
        if self.size is not None:
            width, height = self.size
            if not (0 < width <= 50 and 0 < height <= 50):
                raise UserError(
                    f"figure size must be two numbers of inches in (0, 50], got {self.size}"
                )
            object.__setattr__(self, "size", (float(width), float(height)))
        if self.colormap is not None:
            from matplotlib import colormaps

            if self.colormap not in colormaps:
                raise UserError(f"unknown colormap {self.colormap!r}; e.g. viridis, RdBu_r, magma")
        if self.value_range is not None:
            low, high = map(float, self.value_range)
            if not low < high:
                raise UserError(
                    f"the value range must be LOW,HIGH with LOW < HIGH, got {low},{high}"
                )
            object.__setattr__(self, "value_range", (low, high))
        if self.chart == "heatmap" and self.value is None:
            raise UserError("a heat map needs a value column to colour its cells (--value)")

    def columns(self) -> list[str]:
        """The data columns this figure reads, in a stable order."""
        names = [self.x, self.y, self.group, self.err, self.value]
        return list(dict.fromkeys(n for n in names if n is not None))


@dataclass(frozen=True)
class TableSpec:
    """One table: ``rows`` label the rows; ``values`` are the numeric columns shown, each as
    ``mean ± s.e.`` when ``<value>_se`` is in the data; ``columns`` (optional) pivots: its
    distinct values become the table's columns, for the single value shown. ``precision`` is
    the number of digits after the point (``digits`` overrides it per shown column); ``best`` maps a shown column to "max" or "min" (its
    best cell is bold); ``best_all`` applies to every column not named there."""

    rows: tuple[str, ...]
    values: tuple[str, ...]
    columns: str | None = None
    precision: int = 3
    digits: dict[str, int] = field(default_factory=dict)
    best: dict[str, str] = field(default_factory=dict)
    best_all: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    caption: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", tuple(self.rows))
        object.__setattr__(self, "values", tuple(self.values))
        if not self.rows or not self.values:
            raise UserError("a table needs row columns (--rows) and value columns (--values)")
        if self.columns is not None and len(self.values) != 1:
            raise UserError("a pivoted table (--columns) shows exactly one value column")
        for digits in [self.precision, *self.digits.values()]:
            if not 0 <= digits <= 12:
                raise UserError(f"precision must be between 0 and 12 digits, got {digits}")
        for how in [*self.best.values(), self.best_all]:
            if how is not None and how not in BEST:
                raise UserError(f"best must be max or min, got {how!r}")

    def columns_used(self) -> list[str]:
        names = [*self.rows, *self.values, self.columns]
        return list(dict.fromkeys(n for n in names if n is not None))

    def precision_of(self, column: str) -> int:
        return self.digits.get(column, self.precision)

    def best_of(self, column: str) -> str | None:
        """How the best cell of shown ``column`` is found (None: no bold)."""
        return self.best.get(column, self.best_all)


def as_code(spec: FigureSpec | TableSpec, indent: str = "    ") -> str:
    """``spec`` as a Python constructor call, one non-default field per line."""
    lines = [f"{type(spec).__name__}("]
    for item in fields(spec):
        value: Any = getattr(spec, item.name)
        # a required field's default is MISSING, so it is always written
        factory = item.default_factory
        default = factory() if factory is not MISSING else item.default
        if value == default:
            continue
        lines.append(f"{indent}{item.name}={value!r},")
    lines.append(")")
    return "\n".join(lines)
