"""Evaluating a parsed query: logs in, one pandas DataFrame out.

The first stage (a name pattern) runs over raw logs through ``table`` (fast, cached); every
later stage is a vectorised pandas operation on the resulting frame, except ``where``, which
evaluates the shared ``expr`` language row by row. Two hidden columns travel with the rows:
``_exp`` (which log the row came from, to reach experiment columns and to keep ``first``,
``last``, ``before`` and ``after`` within one experiment) and ``_pos`` (the event's position
in its log).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from squeezr.dbx import expr
from squeezr.dbx.query.language import (
    Aggregate,
    Column,
    Group,
    Match,
    Near,
    Query,
    Select,
    Sort,
    Stage,
    Take,
    Where,
)
from squeezr.dbx.query.logs import Event
from squeezr.dbx.query.pattern import Pattern, compile_pattern
from squeezr.dbx.query.table import Table, TableCache, extract
from squeezr.errors import UserError

EXPERIMENT_FIELDS = ("id", "name", "kind", "created")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_PANDAS_FUNCS = {
    "count": "count",
    "mean": "mean",
    "std": "std",
    "se": "sem",
    "min": "min",
    "max": "max",
    "first": "first",
    "last": "last",
    "sum": "sum",
}
_NUMERIC_FUNCS = ("mean", "std", "se", "sum")
_CACHE = TableCache()


@dataclass
class Source:
    """One log to query: an experiment handle (reads its folder) or in-memory events."""

    experiment: Any = None
    events: list[tuple[int, Event]] | None = None
    memo: dict[tuple[str, bool, int], Table] | None = None  # in-memory logs that only grow

    def table(self, pattern: Pattern, merge: bool, cache_dir: Path | None) -> Table:
        """The columns of the events matching ``pattern`` (cached where possible)."""
        if self.events is None:
            return _CACHE.table(Path(self.experiment.path), pattern, merge, cache_dir)
        if self.memo is None:
            return extract(self.events, pattern, merge)
        key = (pattern.text, merge, len(self.events))
        if key not in self.memo:
            self.memo[key] = extract(self.events, pattern, merge)
        return self.memo[key]

    def field(self, path: str) -> Any:
        """``exp.<field>``, ``params.<path>`` or ``results.<path>`` of this log's experiment."""
        if self.experiment is None:
            return None
        head, _, rest = path.partition(".")
        if head == "exp":
            return getattr(self.experiment, rest, None) if rest in EXPERIMENT_FIELDS else None
        return dig(getattr(self.experiment, head), rest)


def dig(value: Any, path: str) -> Any:
    """``expr.dig`` with None for absent, the tables' marker for "no such field"."""
    found = expr.dig(value, path)
    return None if found is expr.MISSING else found


def is_missing(value: Any) -> bool:
    """None, pandas NA and NaN: the values a table uses for 'this row has no such field'."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _concat(pieces: list[Any], lengths: list[int]) -> Any:
    """One column from per-log pieces (numpy arrays, lists, or None where a log lacks it)."""
    present = [(piece, n) for piece, n in zip(pieces, lengths, strict=True) if n]
    if all(isinstance(piece, np.ndarray) or piece is None for piece, _ in present):
        arrays = [np.full(n, np.nan) if piece is None else piece for piece, n in present]
        return np.concatenate(arrays) if arrays else np.array([], dtype=float)
    values: list[Any] = []
    for piece, n in present:
        if piece is None:
            values.extend([None] * n)
        else:
            values.extend(piece.tolist() if isinstance(piece, np.ndarray) else piece)
    return values


def needed_columns(query: Query) -> set[str] | None:
    """Columns the stages up to the first select/group can touch (None = all of them).

    Over-approximates from identifier tokens, so building the frame can skip the rest.
    """
    needed: set[str] = set()
    for stage in query.stages[1:]:
        if isinstance(stage, Match):
            needed.add("name")
        if isinstance(stage, Where):
            texts = sorted(stage.condition.paths())
        elif isinstance(stage, Select):
            texts = [column.source for column in stage.columns]
        elif isinstance(stage, Group):
            texts = [*stage.keys, *(a.argument.source for a in stage.aggregates if a.argument)]
        elif isinstance(stage, Sort):
            texts = [key for key, _ in stage.keys]
        else:
            continue
        for text in texts:
            for token in _TOKEN.findall(text):
                parts = token.split(".")
                needed.update(".".join(parts[:n]) for n in range(1, len(parts) + 1))
                needed.add(token.removeprefix("data."))
        if isinstance(stage, Select | Group):
            return needed
    return None


class Engine:
    """Runs queries over a fixed list of logs."""

    def __init__(
        self, sources: Sequence[Source], merge: bool = True, cache_dir: Path | None = None
    ) -> None:
        self.sources = list(sources)
        self.merge = merge
        self.cache_dir = cache_dir

    # -- building the first frame ------------------------------------------------------------

    def _frame(self, pattern: Pattern, keep: set[str] | None) -> pd.DataFrame:
        tables = [source.table(pattern, self.merge, self.cache_dir) for source in self.sources]
        names: dict[str, None] = {"_pos": None, "name": None}
        for table in tables:
            names.update(dict.fromkeys(table.names))
        if keep is not None:
            names = {n: None for n in names if n in keep or n == "_pos"}
        lengths = [table.length for table in tables]
        data = {name: _concat([t.column(name) for t in tables], lengths) for name in names}
        data["_exp"] = np.repeat(np.arange(len(tables)), lengths)
        frame = pd.DataFrame(data)
        frame["_pos"] = frame["_pos"].astype("int64")
        return frame

    def _experiment_columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        if len(self.sources) < 2 or any(s.experiment is None for s in self.sources):
            return frame
        codes = frame["_exp"].to_numpy()
        for field in ("exp.name", "exp.id"):
            per_source, uniques = pd.factorize(
                pd.Index([str(s.field(field)) for s in self.sources])
            )
            frame.insert(0, field, pd.Categorical.from_codes(per_source[codes], uniques))
        return frame

    # -- column access -----------------------------------------------------------------------

    def column(self, frame: pd.DataFrame, path: str) -> str:
        """Make ``path`` a column of ``frame`` and return its name.

        An unknown path raises UserError on a non-empty frame (a typo), and becomes an empty
        column on an empty one (no matching events yet).
        """
        name = self._resolve(frame, path)
        if name is not None:
            return name
        if len(frame):
            visible = [c for c in frame.columns if not c.startswith("_")]
            raise UserError(f"unknown column {path!r}; available: {', '.join(visible)}")
        frame[path] = pd.Series(dtype=object)
        return path

    def _resolve(self, frame: pd.DataFrame, path: str) -> str | None:
        """Add experiment fields and nested data as columns on demand; None if unknown."""
        if path in frame.columns:
            return path
        if path.startswith("data.") and path[5:] in frame.columns:
            return path[5:]
        if path.partition(".")[0] in ("exp", "params", "results") and "_exp" in frame.columns:
            values = np.asarray([source.field(path) for source in self.sources], dtype=object)
            picked = values[frame["_exp"].to_numpy()]
            frame[path] = pd.Series(picked, index=frame.index, dtype=object).infer_objects()
            return path
        parts = path.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            base = ".".join(parts[:cut])
            if base in frame.columns:
                rest = ".".join(parts[cut:])
                frame[path] = frame[base].map(lambda v, r=rest: dig(v, r)).infer_objects()
                return path
        return None

    def compute(self, frame: pd.DataFrame, item: Column) -> pd.Series:
        """The values of a select item or aggregate argument: a column, or a pandas expression."""
        if item.is_path:
            return frame[self.column(frame, item.source)]
        text = item.source
        for token in sorted(set(_TOKEN.findall(text)), key=len, reverse=True):
            name = self._resolve(frame, token)
            if name is not None:
                text = re.sub(rf"(?<![\w.`]){re.escape(token)}(?![\w.`])", f"`{name}`", text)
        try:
            result = frame.eval(text)
        except Exception as exc:
            raise UserError(f"cannot compute {item.source!r}: {exc}") from None
        if not isinstance(result, pd.Series):
            result = pd.Series(result, index=frame.index)
        return result

    def lookup(self, values: dict[str, Any], path: str) -> Any:
        """A row's value for an expr path (``expr.MISSING`` if absent, null or NaN)."""
        if path in values:
            value = values[path]
        elif path.startswith("data.") and path[5:] in values:
            value = values[path[5:]]
        elif path.partition(".")[0] in ("exp", "params", "results") and "_exp" in values:
            value = self.sources[int(values["_exp"])].field(path)
        else:
            value = None
            parts = path.split(".")
            for cut in range(len(parts) - 1, 0, -1):
                base = ".".join(parts[:cut])
                if base in values:
                    value = dig(values[base], ".".join(parts[cut:]))
                    break
        if is_missing(value):
            return expr.MISSING
        return value.item() if isinstance(value, np.generic) else value

    # -- stages ------------------------------------------------------------------------------

    def run(self, query: Query) -> pd.DataFrame:
        """Evaluate ``query`` and return its visible columns."""
        stages: list[Stage] = list(query.stages)
        first = stages.pop(0) if isinstance(stages[0], Match) else Match(compile_pattern("**"))
        frame = self._experiment_columns(self._frame(first.pattern, needed_columns(query)))
        hidden = {"id"} | (set() if not self.merge else {"ts", "run"})
        for stage in stages:
            frame = self._apply(stage, frame)
            if isinstance(stage, Select | Group):
                hidden = set()
        hidden |= {c for c in ("ts", "run") if c in frame.columns and frame[c].isna().all()}
        shown = [c for c in frame.columns if not c.startswith("_") and c not in hidden]
        return frame[shown].reset_index(drop=True)

    def _apply(self, stage: Stage, frame: pd.DataFrame) -> pd.DataFrame:
        if isinstance(stage, Match):
            return self._match(stage.pattern, frame)
        if isinstance(stage, Where):
            return self._where(stage, frame)
        if isinstance(stage, Select):
            return self._select(stage, frame)
        if isinstance(stage, Near):
            return self._near(stage, frame)
        if isinstance(stage, Take):
            return self._take(stage, frame)
        if isinstance(stage, Sort):
            return self._sort(stage, frame)
        return self._group(stage, frame)

    def _match(self, pattern: Pattern, frame: pd.DataFrame) -> pd.DataFrame:
        if "name" not in frame.columns:
            raise UserError("'match' needs the event name; keep 'name' in the select before it")
        captures = {name: pattern.match(name) for name in frame["name"].dropna().unique()}
        found = frame["name"].map(captures)
        frame = frame[found.notna().to_numpy()].copy()
        for index, variable in enumerate(pattern.variables):
            frame[variable] = frame["name"].map(lambda n, i=index: captures[n][i])
        return frame

    def _where(self, stage: Where, frame: pd.DataFrame) -> pd.DataFrame:
        names = list(frame.columns)
        keep = np.zeros(len(frame), dtype=bool)
        for index, row in enumerate(frame.itertuples(index=False, name=None)):
            values = dict(zip(names, row, strict=True))
            keep[index] = bool(stage.condition.evaluate(lambda path: self.lookup(values, path)))  # noqa: B023
        return frame[keep]

    def _select(self, stage: Select, frame: pd.DataFrame) -> pd.DataFrame:
        out = {column.name: self.compute(frame, column).to_numpy() for column in stage.columns}
        for internal in ("_exp", "_pos"):
            if internal in frame.columns:
                out[internal] = frame[internal].to_numpy()
        return pd.DataFrame(out, index=frame.index)

    def _near(self, stage: Near, frame: pd.DataFrame) -> pd.DataFrame:
        if "_pos" not in frame.columns:
            raise UserError(f"'{stage.direction}' needs event rows; put it before 'group'")
        other = self._frame(stage.pattern, None)
        positions = [frame["_pos"].to_numpy(), other["_pos"].to_numpy()]
        span = int(max(p.max(initial=0) for p in positions)) + 2
        keys = other["_exp"].to_numpy() * span + other["_pos"].to_numpy()
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        rows = frame["_exp"].to_numpy() * span + frame["_pos"].to_numpy()
        if stage.direction == "before":
            index = np.searchsorted(keys, rows, side="left") - 1
        else:
            index = np.searchsorted(keys, rows, side="right")
        valid = (index >= 0) & (index < len(keys))
        index = np.clip(index, 0, max(len(keys) - 1, 0))
        if len(keys):
            valid &= other["_exp"].to_numpy()[order][index] == frame["_exp"].to_numpy()
        frame = frame.copy()
        for name in other.columns:
            if name.startswith("_") or name in ("id", "ts", "run") or other[name].isna().all():
                continue
            values = other[name].to_numpy(dtype=object)[order][index] if len(keys) else None
            column = pd.Series(values, index=frame.index, dtype=object).where(valid, None)
            frame[f"{stage.prefix}.{name}"] = column.infer_objects()
        return frame

    def _take(self, stage: Take, frame: pd.DataFrame) -> pd.DataFrame:
        if "_exp" in frame.columns:
            groups = frame.groupby("_exp", sort=False)
            return groups.head(stage.count) if stage.end == "first" else groups.tail(stage.count)
        return frame.head(stage.count) if stage.end == "first" else frame.tail(stage.count)

    def _sort(self, stage: Sort, frame: pd.DataFrame) -> pd.DataFrame:
        columns = [self.column(frame, key) for key, _ in stage.keys]
        try:
            return frame.sort_values(
                columns, ascending=[asc for _, asc in stage.keys], kind="stable", na_position="last"
            )
        except TypeError:
            raise UserError(
                f"cannot sort by {', '.join(columns)}: it mixes numbers and text"
            ) from None

    def _group(self, stage: Group, frame: pd.DataFrame) -> pd.DataFrame:
        keys = [self.column(frame, key) for key in stage.keys]
        spec: dict[str, tuple[str, str]] = {}
        for index, aggregate in enumerate(stage.aggregates):
            spec[aggregate.name] = self._aggregate_column(frame, aggregate, index, keys[0])
        grouped = frame.groupby(keys, dropna=False, sort=True, observed=True)
        try:
            result = grouped.agg(**spec)
        except TypeError:
            result = frame.groupby(keys, dropna=False, sort=False, observed=True).agg(**spec)
        return result.reset_index()

    def _aggregate_column(
        self, frame: pd.DataFrame, aggregate: Aggregate, index: int, any_key: str
    ) -> tuple[str, str]:
        if aggregate.argument is None:
            return any_key, "size"
        column = f"__agg{index}"
        values = self.compute(frame, aggregate.argument)
        if aggregate.func in _NUMERIC_FUNCS and not pd.api.types.is_numeric_dtype(values):
            converted = pd.to_numeric(values, errors="coerce")
            if (converted.isna() & values.notna()).any():
                raise UserError(
                    f"{aggregate.func}({aggregate.argument.source}) needs numbers, "
                    "but some values are text; filter them out with 'where'"
                )
            values = converted
        frame[column] = values.to_numpy()
        return column, _PANDAS_FUNCS[aggregate.func]
