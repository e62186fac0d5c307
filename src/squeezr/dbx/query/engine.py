"""Evaluating a parsed query: logs in, one pandas DataFrame out.

The first stage (a name pattern) runs over raw logs through ``table`` (fast, cached); every
later stage is a vectorised pandas operation on the resulting frame, except ``where``, which
evaluates the shared ``expr`` language row by row over just the fields it reads. Two hidden
columns travel with the rows: ``_exp`` (which log the row came from, to reach experiment
columns and to keep ``first``, ``last``, ``before`` and ``after`` within one experiment) and
``_pos`` (the position of the row's first event in its log).
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from squeezr.dbx import expr
from squeezr.dbx.errors import UserError
from squeezr.dbx.query import grouping
from squeezr.dbx.query.language import (
    Column,
    Group,
    Limit,
    Match,
    Near,
    Pivot,
    Query,
    Select,
    Sort,
    Stage,
    Take,
    Where,
)
from squeezr.dbx.query.logs import Event
from squeezr.dbx.query.pattern import Pattern, compile_pattern
from squeezr.dbx.query.table import (
    HIDDEN,
    MERGED,
    OCCURRENCES,
    RAW,
    Table,
    TableCache,
    extract,
)
from squeezr.dbx.query.values import is_missing, numbers, sorted_order, warn_type_mismatches
from squeezr.dbx.select import check_paths


class NoMatch(UserWarning):
    """A query's name pattern matched no event (``dbx query`` prints it as a one-line note)."""


SHOWN_FIELDS = ("exp.id", "exp.name")  # the experiment columns a multi-experiment result leads with
_LISTED = 30  # columns named in an "unknown column" message
_HYPHENATED = re.compile(r"[A-Za-z_][\w.]*(?:-[A-Za-z_][\w.]*)+")  # val-acc: a name, or a - b?
_CACHE = TableCache()


@dataclass
class Source:
    """One log to query: an experiment handle (reads its folder), or in-memory ``events``.

    In-memory events from an earlier result keep that result's experiment as ``identity``
    (its ``exp.*`` values). ``tables`` memoises extraction for an in-memory log that only
    grows; whoever appends to ``events`` clears it.
    """

    experiment: Any = None
    events: list[tuple[int, Event]] | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    tables: dict[tuple[str, str], Table] | None = None
    timed: bool = False  # in-memory events of a log, to take in (ts, run, seq) order (live)

    def table(self, pattern: Pattern, mode: str, cache_dir: Path | None) -> Table:
        """The columns of the events matching ``pattern`` (cached where possible)."""
        if self.events is None:
            return _CACHE.table(Path(self.experiment.path), pattern, mode, cache_dir)
        if self.tables is None:
            return extract(self.events, pattern, mode, timed=self.timed)
        key = (pattern.text, mode)
        if key not in self.tables:
            self.tables[key] = extract(self.events, pattern, mode, timed=self.timed)
        return self.tables[key]

    @property
    def known(self) -> bool:
        """Whether the experiment this log belongs to is known."""
        return self.experiment is not None or bool(self.identity)

    def field(self, path: str) -> Any:
        """``exp.<field>``, ``params.<path>`` or ``results.<path>``; ``expr.MISSING`` if absent."""
        if self.experiment is None:
            return self.identity.get(path, expr.MISSING)
        return self.experiment.value(path)


def _concat(pieces: list[Any], lengths: list[int]) -> Any:
    """One column from per-log pieces (numpy arrays, lists, or None where a log lacks it)."""
    present = [(piece, n) for piece, n in zip(pieces, lengths, strict=True) if n]
    gaps = any(piece is None for piece, _ in present)
    if all(isinstance(piece, np.ndarray) or piece is None for piece, _ in present):
        if gaps and all(piece is None or piece.dtype == np.int64 for piece, _ in present):
            return _integers([None] * n if piece is None else piece for piece, n in present)
        arrays = [np.full(n, np.nan) if piece is None else piece for piece, n in present]
        if len(arrays) == 1:  # (the frame copies it: DataFrame copies the arrays of a dict)
            return arrays[0]
        return np.concatenate(arrays) if arrays else np.array([], dtype=float)
    values: list[Any] = []
    for piece, n in present:
        if piece is None:
            values.extend([None] * n)
        else:
            values.extend(piece.tolist() if isinstance(piece, np.ndarray) else piece)
    kinds = {type(value) for value in values}
    if kinds == {int, type(None)}:
        return _integers([values])
    return values


def _integers(pieces: Any) -> Any:
    """Integers with gaps as a nullable integer column, so that 9 stays 9 (not 9.0) beside
    a missing value; ints beyond int64 stay a list."""
    values = [value for piece in pieces for value in piece]
    try:
        return pd.array(values, dtype="Int64")
    except (OverflowError, TypeError, ValueError):
        return values


def _objects(values: list[Any]) -> np.ndarray:
    """A 1-D object array (``np.asarray`` would turn equal-length lists into a 2-D array)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _places(frame: pd.DataFrame, other: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The rows of two tables as ranks in one order, (log, time, position): the (ts, run,
    seq) order of each log's events (``table.time_ordered``); the same event gets the same
    rank in both."""
    columns = [np.concatenate([f[c].to_numpy() for f in (frame, other)]) for c in HIDDEN]
    exp, pos, ts = columns
    order = np.lexsort((pos, ts, exp))
    changed = np.zeros(len(order), dtype=bool)
    changed[:1] = True
    for values in (exp, ts, pos):
        ordered = values[order]
        changed[1:] |= ordered[1:] != ordered[:-1]
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.cumsum(changed) - 1
    return ranks[: len(frame)], ranks[len(frame) :]


def needed_columns(query: Query) -> set[str] | None:
    """Columns the stages up to the first select/group can read (None = all of them), so that
    building the first frame can skip the rest; nested paths keep every enclosing column."""
    needed: set[str] = set()
    for stage in query.stages[1:]:
        paths: set[str] = set()
        if isinstance(stage, Match):
            paths = {"name"}
        elif isinstance(stage, Where):
            paths = stage.condition.paths()
        elif isinstance(stage, Select):
            paths = {path for column in stage.columns for path in column.paths()}
        elif isinstance(stage, Group):
            arguments = [a.argument for a in stage.aggregates if a.argument]
            paths = {*stage.keys, *(path for a in arguments for path in a.paths())}
        elif isinstance(stage, Sort):
            paths = {key for key, _ in stage.keys}
        elif isinstance(stage, Pivot):
            argument = stage.value.argument
            paths = {*stage.rows, stage.column, *(argument.paths() if argument else ())}
        for path in paths:
            parts = path.split(".")
            needed.update(".".join(parts[:n]) for n in range(1, len(parts) + 1))
            needed.add(path.removeprefix("data."))
        if isinstance(stage, Select | Group | Pivot):
            return needed
    return None


class Engine:
    """Runs queries over a fixed list of logs.

    ``merge``: combine events by name (else one row per event). ``strict``: a field that no
    row has is an error (a typo) rather than an empty column; live listeners turn it off,
    since a growing log may not have logged the field yet. ``experiment_columns``: lead with
    ``exp.id`` / ``exp.name``, and keep ``exp.id`` through a select (default: when more than
    one experiment is read).
    """

    def __init__(
        self,
        sources: Sequence[Source],
        merge: bool = True,
        cache_dir: Path | None = None,
        *,
        strict: bool = True,
        experiment_columns: bool | None = None,
    ) -> None:
        self.sources = list(sources)
        self.merge = merge
        self.cache_dir = cache_dir
        self.strict = strict
        if experiment_columns is None:
            experiment_columns = len(self.sources) > 1
        self.experiment_columns = experiment_columns and all(s.known for s in self.sources)
        self._dropped: list[str] = []  # columns of the log that the first frame left out
        self._unmatched: set[str] = set()  # prefixes of before/after that matched no event

    # -- building the first frame ------------------------------------------------------------

    def _frame(self, pattern: Pattern, keep: set[str] | None, mode: str) -> pd.DataFrame:
        tables = [source.table(pattern, mode, self.cache_dir) for source in self.sources]
        names: dict[str, None] = {"_pos": None, "_ts": None, "name": None}
        for variable in pattern.variables:
            names[variable] = None
        for table in tables:
            names.update(dict.fromkeys(table.names))
        if keep is not None:
            self._dropped = [n for n in names if n not in keep and n not in HIDDEN]
            names = {n: None for n in names if n in keep or n in HIDDEN}
        lengths = [table.length for table in tables]
        data = {name: _concat([t.column(name) for t in tables], lengths) for name in names}
        data["_exp"] = np.repeat(np.arange(len(tables)), lengths)
        frame = pd.DataFrame(data)
        frame["_pos"] = frame["_pos"].astype("int64")
        frame["_ts"] = frame["_ts"].astype("float64")
        return frame

    def _add_experiment_columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.experiment_columns:
            for path in reversed(SHOWN_FIELDS):
                self._lead_with(frame, path)
        return frame

    def _lead_with(self, frame: pd.DataFrame, path: str) -> bool:
        """Insert experiment field ``path`` as the first column; False if no log has it."""
        values = [source.field(path) for source in self.sources]
        if all(value is expr.MISSING for value in values):
            return False
        labels = ["" if value is expr.MISSING else str(value) for value in values]
        per_source, uniques = pd.factorize(pd.Index(labels))
        codes = per_source[frame["_exp"].to_numpy()]
        frame.insert(0, path, pd.Categorical.from_codes(codes, uniques))
        return True

    def _keep_identity(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows of several experiments keep one experiment column (``exp.id``, else
        ``exp.name``) even where a select left it out: a result is a log that can be queried
        again, split by that column, and without it re-runs sharing a name (or, with no
        experiment column at all, every experiment) would merge into one log."""
        several = "_exp" in frame.columns and frame["_exp"].nunique() > 1
        if self.experiment_columns and several:
            for path in SHOWN_FIELDS:
                if path in frame.columns or self._lead_with(frame, path):
                    break
        return frame

    # -- column access -----------------------------------------------------------------------

    def column(self, frame: pd.DataFrame, path: str) -> str:
        """Make ``path`` a column of ``frame`` and return its name.

        A field that no row has is an error (a typo), except where its absence is expected:
        an empty table, the columns of a before/after that matched nothing, and live
        listeners (``strict=False``); there it becomes an empty column.
        """
        name = self._resolve(frame, path)
        if name is not None:
            return name
        unmatched = any(path.startswith(prefix + ".") for prefix in self._unmatched)
        if frame.empty or unmatched or not self.strict:
            frame[path] = pd.Series(None, index=frame.index, dtype=object)
            return path
        visible = [c for c in frame.columns if c not in HIDDEN and not str(c).startswith("__")]
        visible += self._dropped
        listed = ", ".join(visible[:_LISTED]) + (", ..." if len(visible) > _LISTED else "")
        close = difflib.get_close_matches(path, [str(c) for c in visible], n=1, cutoff=0.7)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown column {path!r}{guess}; available: {listed}")

    def _resolve(self, frame: pd.DataFrame, path: str) -> str | None:
        """The column holding ``path``, adding experiment fields and nested data to ``frame``
        as they are asked for; None if no row has such a field."""
        if path in frame.columns and path not in HIDDEN:
            return path
        if path.startswith("data.") and path[5:] in frame.columns:
            return path[5:]
        if "." in path and "_exp" in frame.columns:
            if path.startswith("exp."):
                check_paths([path], "column")  # an unknown exp.<field> is always a typo
            # The experiment says which paths are its own (exp.*, params.*, results.*).
            values = [source.field(path) for source in self.sources]
            if any(value is not expr.MISSING for value in values):
                per_source = _objects([None if v is expr.MISSING else v for v in values])
                picked = per_source[frame["_exp"].to_numpy()]
                frame[path] = pd.Series(picked, index=frame.index, dtype=object).infer_objects()
                return path
        parts = path.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            base = ".".join(parts[:cut])
            if base in frame.columns:
                dug = [expr.dig(value, ".".join(parts[cut:])) for value in frame[base].tolist()]
                dug = [None if value is expr.MISSING else value for value in dug]
                frame[path] = pd.Series(_objects(dug), index=frame.index).infer_objects()
                return path
        return None

    def compute(self, frame: pd.DataFrame, item: Column) -> pd.Series:
        """The values of a select item or aggregate argument: a column, or a computation."""
        if item.path is not None:
            return frame[self.column(frame, item.path)]
        assert item.computed is not None  # a Column is one or the other

        def get(path: str) -> pd.Series:
            try:
                name = self.column(frame, path)
            except UserError:
                source = item.source.strip()
                if _HYPHENATED.fullmatch(source):
                    raise UserError(
                        f"unknown column {path!r} in {source!r}, which reads as a subtraction; "
                        f"write a column name holding '-' in backticks: `{source}`"
                    ) from None
                raise
            return numbers(frame[name], repr(item.source))

        result = item.computed.evaluate(get)
        if not isinstance(result, pd.Series):
            result = pd.Series(result, index=frame.index)
        return result

    # -- stages ------------------------------------------------------------------------------

    def run(self, query: Query, *, identity: bool = False) -> pd.DataFrame:
        """Evaluate ``query`` and return its visible columns (plus the hidden ``_exp`` and
        ``_pos``, where rows still have them, if ``identity``: to tell rows apart)."""
        self._unmatched = set()
        stages: list[Stage] = list(query.stages)
        first = stages.pop(0) if isinstance(stages[0], Match) else Match(query.patterns()[0])
        mode = MERGED if self.merge else RAW
        frame = self._add_experiment_columns(
            self._frame(first.pattern, needed_columns(query), mode)
        )
        if frame.empty and self.strict:
            self._note_unmatched(first.pattern)
        # Event fields not shown unless selected: id; ts and run of merged rows (those of
        # their newest event), and of raw rows where no event has them. Decided here, once,
        # so that a select or group shows whatever it names.
        hidden = {"id"} | {
            c for c in ("ts", "run") if self.merge or (c in frame.columns and frame[c].isna().all())
        }
        for stage in stages:
            frame = self._apply(stage, frame)
            if isinstance(stage, Select | Group | Pivot):
                hidden = set()
                self._dropped = []
        if not identity:
            frame = self._keep_identity(frame)
            hidden |= set(HIDDEN)
        return frame[[c for c in frame.columns if c not in hidden]].reset_index(drop=True)

    def _note_unmatched(self, pattern: Pattern) -> None:
        """Say that ``pattern`` matched no event (an empty table is otherwise silent), with
        the closest event names that the logs do have."""
        if not self.sources:
            warnings.warn(
                NoMatch("no experiment was read (none matches the selection)"), stacklevel=3
            )
            return
        names = {
            name
            for source in self.sources
            for name in source.table(compile_pattern("**"), MERGED, self.cache_dir).column("name")
            or []
        }
        count = len(self.sources)
        message = f"no event of the {count} experiment{'s' if count > 1 else ''} read matches {pattern.text!r}"
        close = difflib.get_close_matches(pattern.text, sorted(names), n=3, cutoff=0.4)
        if close:
            message += f"; did you mean {', '.join(close)}?"
        elif names:
            message += f"; their events are named like {', '.join(sorted(names)[:3])}"
        else:
            message += " (they have no events)"
        warnings.warn(NoMatch(message), stacklevel=3)

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
        if isinstance(stage, Limit):
            return frame.head(stage.count)
        if isinstance(stage, Pivot):
            return grouping.pivot(self, stage, frame)
        if isinstance(stage, Sort):
            return self._sort(stage, frame)
        return grouping.group(self, stage, frame)

    def _match(self, pattern: Pattern, frame: pd.DataFrame) -> pd.DataFrame:
        if "name" not in frame.columns:
            raise UserError("'match' needs the event name; keep 'name' in the select before it")
        names = frame["name"].dropna().unique()
        for name in names:
            if not isinstance(name, str):
                raise UserError(
                    f"'match' needs event names (text), but column 'name' holds {name}; "
                    "rename that column in the select before it"
                )
        captures = {name: pattern.match(name) for name in names}
        found = frame["name"].map(captures)
        frame = frame[found.notna().to_numpy()].copy()
        for index, variable in enumerate(pattern.variables):
            frame[variable] = frame["name"].map(lambda n, i=index: captures[n][i])
        return frame

    def _where(self, stage: Where, frame: pd.DataFrame) -> pd.DataFrame:
        condition = stage.condition
        compared = condition.compared_paths()
        work = frame.copy(deep=False)  # fields resolved for the test are not new columns
        values: dict[str, list[Any]] = {}
        for path in condition.paths():
            # A field only tested with exists() may be absent everywhere: that is an answer.
            name = self.column(work, path) if path in compared else self._resolve(work, path)
            column = work[name].tolist() if name is not None else [None] * len(frame)
            values[path] = [expr.MISSING if is_missing(v) else v for v in column]
        row = 0

        def lookup(path: str) -> Any:
            return values[path][row]

        warn_type_mismatches(condition, values)
        keep = np.zeros(len(frame), dtype=bool)
        for row in range(len(frame)):  # lookup reads the current row
            keep[row] = condition.evaluate(lookup)
        return frame[keep]

    def _select(self, stage: Select, frame: pd.DataFrame) -> pd.DataFrame:
        out = {column.name: self.compute(frame, column).array for column in stage.columns}
        for internal in HIDDEN:
            if internal in frame.columns:
                out[internal] = frame[internal].to_numpy()
        return pd.DataFrame(out, index=frame.index)

    def _near(self, stage: Near, frame: pd.DataFrame) -> pd.DataFrame:
        if "_pos" not in frame.columns:
            raise UserError(f"'{stage.direction}' needs event rows; put it before 'group'")
        # Candidates are single events at their real positions (see table.OCCURRENCES): a
        # merged row would sit at its name's first position while holding its newest data.
        other = self._frame(stage.pattern, None, OCCURRENCES if self.merge else RAW)
        if other.empty:
            self._unmatched.add(stage.prefix)
            if self.strict and not frame.empty:
                self._note_unmatched(stage.pattern)
        rows, keys = _places(frame, other)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        side = "left" if stage.direction == "before" else "right"
        index = np.searchsorted(keys, rows, side=side) - (1 if side == "left" else 0)
        valid = (index >= 0) & (index < len(keys))
        index = np.clip(index, 0, max(len(keys) - 1, 0))
        if len(keys):
            valid &= other["_exp"].to_numpy()[order][index] == frame["_exp"].to_numpy()
        frame = frame.copy()
        for name in other.columns:
            if name in HIDDEN or name in ("id", "ts", "run"):
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
        work = frame.copy(deep=False)  # sorting by a field does not add it as a column
        columns = [self.column(work, key) for key, _ in stage.keys]
        return frame.iloc[sorted_order(work, columns, [asc for _, asc in stage.keys])]
