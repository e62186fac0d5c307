"""The ``group`` and ``pivot`` stages: rows into aggregates, and aggregates into a wide table.

Both work on the engine's frame through two engine calls, ``column`` (a field made a column,
or a one-line error naming the unknown one) and ``compute`` (a select item's values), so
that fields resolve here exactly as in every other stage.
"""

from __future__ import annotations

from typing import Any, Protocol

import pandas as pd

from squeezr.dbx.errors import UserError
from squeezr.dbx.query.language import AGGREGATES, Aggregate, Column, Group, Pivot
from squeezr.dbx.query.values import comparable, hashable, numbers, sorted_order

_PANDAS_FUNCS: dict[str, Any] = {
    func: {"se": "sem", "count_distinct": "nunique"}.get(func, func) for func in AGGREGATES
}
_NUMERIC_FUNCS = ("mean", "median", "quantile", "std", "se", "sum")
_ALL = "__all"  # the one key of a group without keys


class Columns(Protocol):
    """What grouping needs of the engine."""

    def column(self, frame: pd.DataFrame, path: str) -> str: ...

    def compute(self, frame: pd.DataFrame, item: Column) -> pd.Series: ...


def group(engine: Columns, stage: Group, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct key tuple, sorted by the keys; without keys one row over all
    rows (even none: counts are then 0, other aggregates missing)."""
    frame = frame.copy(deep=False)
    keys = [engine.column(frame, key) for key in stage.keys]
    if not keys:
        frame[_ALL] = 0
        keys = [_ALL]
    for key in keys:  # lists and objects cannot be hashed: group them by their JSON text
        if frame[key].dtype == object:
            frame[key] = frame[key].map(hashable)
    spec: dict[str, tuple[str, Any]] = {}
    for index, aggregate in enumerate(stage.aggregates):
        spec[aggregate.name] = _aggregate_column(engine, frame, aggregate, index, keys[0])
    grouped = frame.groupby(keys, dropna=False, sort=False, observed=True).agg(**spec)
    grouped = grouped.reset_index()
    if keys == [_ALL]:
        if grouped.empty:
            empty = {
                a.name: 0 if a.func in ("count", "count_distinct") else None
                for a in stage.aggregates
            }
            return pd.DataFrame([empty])
        return grouped.drop(columns=[_ALL])
    return grouped.iloc[sorted_order(grouped, keys, [True] * len(keys))]


def _aggregate_column(
    engine: Columns, frame: pd.DataFrame, aggregate: Aggregate, index: int, any_key: str
) -> tuple[str, Any]:
    if aggregate.argument is None:
        return any_key, "size"
    column = f"__agg{index}"
    values = engine.compute(frame, aggregate.argument)
    what = f"{aggregate.func}({aggregate.argument.source})"
    if aggregate.func in _NUMERIC_FUNCS:
        values = numbers(values, what)
    elif aggregate.func in ("min", "max") and values.dtype == object:
        values = comparable(values, what)
    elif aggregate.func == "count_distinct" and values.dtype == object:
        values = values.map(hashable)
    frame[column] = values.to_numpy()
    if aggregate.func == "quantile":
        q = aggregate.q
        return column, lambda cell: cell.quantile(q)
    return column, _PANDAS_FUNCS[aggregate.func]


def pivot(engine: Columns, stage: Pivot, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per ``rows`` key tuple and one column per value of ``column`` (named by its
    text, in sorted order), holding the value or aggregate of the rows in that cell."""
    cells = Group((*stage.rows, stage.column), (stage.value, Aggregate("count", None, "__n")))
    grouped = group(engine, cells, frame)
    rows = list(stage.rows)
    column = stage.column
    if stage.single and len(grouped) and grouped["__n"].max() > 1:
        raise UserError(
            f"pivot: several rows share a cell of ({', '.join(rows)}, {column}); "
            f"aggregate them, e.g. 'pivot ... : mean({stage.value.argument.source})'"
            if stage.value.argument
            else "pivot: several rows share a cell"
        )
    wide = grouped.set_index([*rows, column])[stage.value.name].unstack(column)
    order = sorted_order(pd.DataFrame({"v": list(wide.columns)}), ["v"], [True])
    wide = wide.iloc[:, order]
    wide.columns = [str(value) for value in wide.columns]
    clash = [name for name in wide.columns if name in rows]
    if clash:
        raise UserError(f"pivot: the column value {clash[0]!r} is also a row key; rename the key")
    wide = wide.reset_index()
    return wide.iloc[sorted_order(wide, rows, [True] * len(rows))].reset_index(drop=True)
