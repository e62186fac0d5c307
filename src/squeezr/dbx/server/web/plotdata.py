"""From a log-query result to chart series: the mean of ``y`` at each ``x`` for each value
of ``group``, with a band of ± one standard error across the rows (normally experiments)
that share that ``x``; long series are downsampled on the server so that a plot of
100,000 points arrives as a few thousand and stays interactive in the browser.

Downsampling averages consecutive points in equal-width ``x`` bins (the band edges too),
which keeps the curve's shape and its noise level visible; the response says when it
happened (``downsampled``) and how many points there were (``points``).
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from squeezr.dbx.errors import UserError

MAX_POINTS = 2000  # per series, after downsampling
MAX_SERIES = 40
_CAPTURE = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    """The columns holding numbers (some values may be missing), in table order: numeric
    dtypes (not booleans), and object columns whose first 1,000 present values are all
    numbers (a query result mixes types only when logs do)."""
    found = []
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_bool_dtype(values):
            continue
        if pd.api.types.is_numeric_dtype(values):
            if values.notna().any():
                found.append(str(column))
            continue
        sample = values.dropna().head(1000).tolist()
        if sample and all(_is_number(value) for value in sample):
            found.append(str(column))
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def default_axes(query_text: str, frame: pd.DataFrame) -> tuple[str, str]:
    """A sensible ``(x, y)`` for a result: x the first captured variable of the query's
    pattern that is numeric (``train/epoch/:epoch`` gives ``epoch``), else the first numeric
    column; y the first other numeric column that is not an experiment field."""
    numeric = [c for c in numeric_columns(frame) if not c.startswith(("exp.", "_"))]
    captured = [name for name in _CAPTURE.findall(query_text) if name in numeric]
    x = captured[0] if captured else (numeric[0] if numeric else "")
    rest = [c for c in numeric if c != x and c not in captured and not c.startswith("params.")]
    rest = rest or [c for c in numeric if c != x]
    return x, (rest[0] if rest else "")


def series(
    frame: pd.DataFrame, x: str, y: str, group: str = "", max_points: int = MAX_POINTS
) -> dict[str, Any]:
    """The chart data: ``{"series": [{"label", "x", "mean", "lo", "hi", "n"}], "points",
    "downsampled", "truncated"}``; ``lo``/``hi`` are mean ∓ s.e. (equal to the mean where
    only one row has that x)."""
    for role, column in (("x", x), ("y", y), ("group", group)):
        if column and column not in frame.columns:
            hint = ""
            if column.startswith(("params.", "results.", "exp.")):
                hint = f"; select it in the query (... | select {column}, ...) to plot by it"
            raise UserError(
                f"{role} column {column!r} is not in the query's result (columns: "
                f"{', '.join(map(str, frame.columns)) or 'none'}){hint}"
            )
    if not x or not y:
        return {"series": [], "points": 0, "downsampled": False, "truncated": 0}
    data = pd.DataFrame(
        {
            "x": _numbers(frame[x]),
            "y": _numbers(frame[y]),
            "g": frame[group].astype(str) if group else "",
        }
    ).dropna(subset=["x", "y"])
    if len(frame) and data.empty:
        raise UserError(f"no rows have numbers in both {x!r} and {y!r}; pick numeric columns")
    groups = sorted(data["g"].unique(), key=_natural)
    out = []
    downsampled = False
    for label in groups[:MAX_SERIES]:
        part = data[data["g"] == label]
        stats = part.groupby("x")["y"].agg(["mean", "std", "count"]).sort_index()
        se = (stats["std"] / stats["count"].pow(0.5)).fillna(0.0)
        table = pd.DataFrame(
            {
                "x": stats.index.to_numpy(dtype=float),
                "mean": stats["mean"].to_numpy(),
                "lo": (stats["mean"] - se).to_numpy(),
                "hi": (stats["mean"] + se).to_numpy(),
                "n": stats["count"].to_numpy(dtype=float),
            }
        )
        if len(table) > max_points:
            table = _downsample(table, max_points)
            downsampled = True
        out.append(
            {"label": label if group else y, **{k: _floats(table[k]) for k in table.columns}}
        )
    return {
        "series": out,
        "points": len(data),
        "downsampled": downsampled,
        "truncated": max(0, len(groups) - MAX_SERIES),
    }


def _numbers(values: pd.Series) -> pd.Series:
    """A column as floats, anything not a number (text, booleans) missing."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype(float)
    return pd.to_numeric(values.map(lambda v: v if _is_number(v) else None), errors="coerce")


def _downsample(table: pd.DataFrame, bins: int) -> pd.DataFrame:
    """The mean of each column over ``bins`` equal-width bins of ``x`` (empty bins dropped)."""
    edges = pd.cut(table["x"], bins=bins, labels=False)
    return table.groupby(edges).mean().reset_index(drop=True)


def _floats(column: pd.Series) -> list[float | None]:
    return [None if not math.isfinite(v) else round(float(v), 12) for v in column.tolist()]


def _natural(text: str) -> tuple[Any, ...]:
    """Sort ``run2`` before ``run10`` and numbers numerically."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))
