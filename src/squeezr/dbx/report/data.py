"""The table behind a figure or table: fetched, optionally aggregated, written as CSV.

A *source* is a plain dict, so that a regenerating script can hold it as a literal:

* ``{"query": Q, "repo": R, "selection": {...}}`` — a log query (docs/dbx-query.md) over the
  experiments chosen as ``dbx ls`` chooses them;
* ``{"experiments": True, "repo": R, "selection": {...}, "columns": [...]}`` — the
  experiments' own table (``dbx.frame``: ``name``, ``params.*``, ``results.*``);
* ``{"function": "package.module:name", "kwargs": {...}}`` — any function returning a
  DataFrame (``squeezr report`` uses this for data a query cannot express);

plus an optional ``"aggregate": {"by": [...], "values": [...]}``: mean, standard error and
count of each value over the rows sharing the ``by`` columns (for example over the initial
models of each method and pruning step), as columns ``v``, ``v_se`` and ``count``.

What is written is what is drawn: the CSV is read back before drawing, with exact float
round-tripping, so the command and its script draw from the same numbers.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import IO, Any

import pandas as pd

from squeezr.dbx.errors import UserError
from squeezr.dbx.fileio import atomic_write

__all__ = ["aggregate", "check_columns", "fetch", "read_csv", "write_csv"]

SELECTION_KEYS = ("prefix", "kind", "since", "where")


def fetch(source: dict[str, Any]) -> pd.DataFrame:
    """The table ``source`` describes (see the module docstring), aggregated if it asks.

    An empty selection and a query without rows are one-line errors: a figure of nothing
    is never what was meant."""
    if "function" in source:
        module, _, name = source["function"].partition(":")
        table = getattr(importlib.import_module(module), name)(**source.get("kwargs", {}))
    elif "dataframe" in source:
        raise UserError("this data was a DataFrame given in Python; it cannot be fetched again")
    else:
        table = _from_repository(source)
    if table.empty:
        raise UserError(f"{_describe(source)} gave no rows; nothing to draw")
    spec = source.get("aggregate")
    if spec:
        table = aggregate(table, spec["by"], spec["values"])
    return table


def _from_repository(source: dict[str, Any]) -> pd.DataFrame:
    from squeezr.dbx.select import select_experiments
    from squeezr.dbx.store import Repository

    selection = {k: v for k, v in source.get("selection", {}).items() if k in SELECTION_KEYS}
    repository = Repository.find(source.get("repo"))
    chosen = list(select_experiments(repository, **selection))
    if not chosen:
        shown = ", ".join(f"{k} {v!r}" for k, v in selection.items() if v) or "all"
        raise UserError(
            f"no experiments match the selection ({shown}) in {repository.path}; "
            "check it with dbx ls"
        )
    if source.get("experiments"):
        from squeezr.dbx.frames import frame

        return frame(chosen, columns=source.get("columns"))
    from squeezr.dbx import query

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = query.run(source["query"], repository, experiments=chosen)
    unmatched = [w.message for w in caught if issubclass(w.category, query.NoMatch)]
    if table.empty and unmatched:  # say why there are no rows, in the error's one line
        raise UserError(f"{unmatched[0]}; nothing to draw")
    for caught_warning in caught:
        warnings.warn(caught_warning.message, stacklevel=2)
    return table.astype(object).where(table.notna(), None).infer_objects()


def _describe(source: dict[str, Any]) -> str:
    if "function" in source:
        return f"{source['function']}"
    if source.get("experiments"):
        return "the selected experiments"
    return f"the query {source['query']!r}"


def aggregate(table: pd.DataFrame, by: list[str], values: list[str]) -> pd.DataFrame:
    """Mean, standard error (sample std / sqrt(n); empty for a single row) and count of each of
    ``values`` per distinct ``by`` tuple, sorted by ``by``."""
    check_columns(table, [*by, *values])
    for column in values:
        check_numeric(table, column)
    grouped = table.groupby(list(by), sort=True, dropna=False)
    out = grouped[list(values)].mean()
    for column in values:
        counts = grouped[column].count()
        se = grouped[column].std(ddof=1) / counts.pow(0.5)
        out[f"{column}_se"] = se.where(counts > 1)  # undefined (empty) for a single row
    out["count"] = grouped.size()
    ordered = [c for v in values for c in (v, f"{v}_se")] + ["count"]
    return out[ordered].reset_index()


def check_columns(table: pd.DataFrame, columns: list[str]) -> None:
    """A one-line error naming the first missing column and the ones there are."""
    for column in columns:
        if column not in table.columns:
            have = ", ".join(map(str, table.columns))
            raise UserError(f"no column {column!r} in the data; it has: {have}")


def check_numeric(table: pd.DataFrame, column: str, allow_empty: bool = False) -> None:
    """A one-line error when ``column`` holds anything but numbers (missing values allowed;
    all of them only with ``allow_empty``, as for standard errors of single rows)."""
    values = table[column].dropna()
    if values.empty and allow_empty:
        return
    if values.empty:
        raise UserError(f"column {column!r} has no values")
    numeric = pd.to_numeric(values, errors="coerce")
    bad = values[numeric.isna() | values.map(lambda v: isinstance(v, bool))]
    if not bad.empty:
        raise UserError(f"column {column!r} is not numeric (it holds {bad.iloc[0]!r})")


def csv_text(table: pd.DataFrame) -> str:
    """``table`` as CSV text: floats exactly (shortest round-trip repr), no index."""
    return table.to_csv(index=False, lineterminator="\n")


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    """Write ``table`` atomically as :func:`csv_text`."""
    atomic_write(Path(path), csv_text(table))


# pandas 3 parses floats exactly by default (and deprecates the option); pandas 2 needs it.
_EXACT_FLOATS = {"float_precision": "round_trip"} if pd.__version__.startswith("2.") else {}


def read_csv(path: str | Path | IO[str]) -> pd.DataFrame:
    """Read a CSV written by :func:`write_csv` back to the same numbers."""
    try:
        return pd.read_csv(path, **_EXACT_FLOATS)
    except FileNotFoundError as exc:
        raise UserError(f"no data file {path}; run with --refresh to fetch it") from exc
