"""Cell values in query tables: what counts as missing, as a number, and how mixed values
order, group and aggregate. Logs are schemaless JSON, so one column may hold numbers, text,
lists and gaps at once; these rules decide what a query does with that instead of pandas
raising deep inside an operation.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from squeezr.dbx import expr, jsonx
from squeezr.dbx.errors import UserError

_KINDS = ("number", "text", "other")  # the order in which sort puts them


def is_missing(value: Any) -> bool:
    """None, pandas NA and NaN: the values a table uses for 'this row has no such field'."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def numbers(values: pd.Series, what: str) -> pd.Series:
    """``values`` as numbers (booleans as 0 and 1), or a UserError naming ``what`` needed them."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype("int64")
    if pd.api.types.is_numeric_dtype(values):
        return values
    converted = pd.to_numeric(values, errors="coerce")
    if (converted.isna() & values.notna()).any():
        raise UserError(
            f"{what} needs numbers, but some values are not numbers; filter them out with 'where'"
        )
    return converted


def sortable(values: pd.Series) -> pd.Series:
    """``values`` in a form pandas can order: a column mixing numbers and text (a capture such
    as ``3`` / ``final``) becomes ranks, numbers first (by value), then text, then anything
    else (by its JSON text). Missing values stay missing, so they can go last."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    if values.dtype != object:
        return values

    def key(value: Any) -> tuple[int, Any]:
        kind = _KINDS.index(_kind(value))
        return (kind, json.dumps(value, sort_keys=True, default=str) if kind == 2 else value)

    keys = [None if is_missing(value) else key(value) for value in values.tolist()]
    rank = {k: float(i) for i, k in enumerate(sorted({k for k in keys if k is not None}))}
    return pd.Series([np.nan if k is None else rank[k] for k in keys], index=values.index)


def sorted_order(frame: pd.DataFrame, columns: list[str], ascending: list[bool]) -> np.ndarray:
    """Row positions of a stable sort by ``columns``: missing values last, text and numbers
    both allowed (see ``sortable``)."""
    keys = pd.DataFrame({i: sortable(frame[c]).to_numpy() for i, c in enumerate(columns)})
    if keys.empty:
        return np.arange(len(frame))
    order = keys.sort_values(
        list(range(len(columns))), ascending=ascending, kind="stable", na_position="last"
    )
    return order.index.to_numpy()


def comparable(values: pd.Series, what: str) -> pd.Series:
    """An object column that ``min``/``max`` can order: all numbers, or all text."""
    kinds = {_kind(value) for value in values.tolist() if not is_missing(value)}
    if kinds == {"number"}:
        return pd.to_numeric(values)
    if kinds <= {"text"}:
        return values
    raise UserError(f"{what} needs numbers or text (not a mix, lists or objects); use 'where'")


def _kind(value: Any) -> str:
    """Which of ``_KINDS`` a cell is, for ordering and for min/max (bools count as numbers)."""
    if isinstance(value, int | float):
        return "number"
    return "text" if isinstance(value, str) else "other"


def hashable(value: Any) -> Any:
    """A value pandas can group by: lists and objects as their JSON text."""
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def warn_type_mismatches(condition: expr.Expr, values: dict[str, list[Any]]) -> None:
    """Warn about ``path OP literal`` where no row holds a value of the literal's type, which
    therefore matches nothing (``params.lr > '0.1'`` on numbers), or everything with ``!=``."""
    for path, op, literal in condition.literal_comparisons():
        if op in ("in", "not in") or literal is None:
            continue
        kinds = {_kind_name(v) for v in values.get(path, []) if v is not expr.MISSING}
        wanted = _kind_name(literal)
        if kinds and wanted not in kinds:
            held = " and ".join(sorted(kinds))
            hint = " (drop the quotes)" if wanted == "text" and "numbers" in kinds else ""
            warnings.warn(
                f"where: {path} holds {held}, not {wanted}, so `{path} {op} "
                f"{jsonx.encode(literal)}` is {'true' if op == '!=' else 'false'} for every "
                f"row{hint}",
                stacklevel=4,
            )


def _kind_name(value: Any) -> str:
    """How ``_warn_type_mismatches`` names the type of a value."""
    if isinstance(value, bool):
        return "booleans"
    if isinstance(value, int | float):
        return "numbers"
    return "text" if isinstance(value, str) else "lists or objects"
