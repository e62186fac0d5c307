"""A query's first read of a log from its columnar copy: columns in, no JSON parsed.

Parsing JSON and building rows event by event cost a first query 10-30 s per million
events. The log writer keeps a columnar copy of each log (``squeezr.dbx.logcopy``); here
its segments become numpy arrays, the event names are matched once per distinct name
(``Pattern.match_all``), and merging by name, time order and the choice of each row's
values are array operations. The lines the copy does not cover (a batch whose segment a
crash lost, a damaged segment and everything after it, lines appended since) are parsed
from the log as before and joined to the columns, so the answer is always the log's.

The result is the same :class:`~squeezr.dbx.query.table.Table` that parsing gives
(``table._Rows``), value for value and type for type (``tests/dbx/test_query_columnar.py``
holds the two to it). Where this path does not apply it returns None and the caller parses
the logs: the ``occurrences`` mode of ``before``/``after``, logs whose copy is missing or
covers less than half of them (written by another tool, imported, an older dbx), and
events this layout does not keep exactly (a ``ts`` that is not a float, or NaN).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from squeezr.dbx.errors import UserError
from squeezr.dbx.logcopy import FIXED, Segment, copy_path, load_array, segments
from squeezr.dbx.query.columns import compact
from squeezr.dbx.query.logs import Event, Matching
from squeezr.dbx.query.pattern import Pattern
from squeezr.dbx.query.table import HIDDEN, MERGED, RAW, Table, _Rows

Values = Any  # a column of one part: a numpy array (int64, float64) or a list


class _Unusable(Exception):
    """A segment or event this path cannot take exactly (the copy stops there)."""


@dataclass
class _Part:
    """Consecutive events of one log as columns (a segment, or parsed lines)."""

    pos: np.ndarray | None  # position (line index over the experiment's logs)
    gid: np.ndarray | None  # name: its number in _Log.names
    sid: np.ndarray | None  # data keys: their number in _Log.schemas
    ts: np.ndarray | None  # float64
    run: Values
    ids: Callable[[], list[Any]]  # decoded when a query shows ids
    data: dict[str, Values] = field(default_factory=dict)  # key -> values of the events having it


class _Log:
    """The events of one experiment's logs, as parts sharing one name and schema table."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}
        self.schemas: dict[tuple[str, ...], int] = {}
        self.parts: list[_Part] = []
        self._counter = count()

    def _intern(self, table: dict[Any, int], values: list[Any]) -> np.ndarray:
        """Each value's number in ``table``, adding those it lacks (numbers increase but may
        skip: ``dense`` closes the gaps)."""
        return np.fromiter(map(table.setdefault, values, self._counter), np.int64, len(values))

    @staticmethod
    def dense(table: dict[Any, int], numbers: np.ndarray) -> tuple[list[Any], np.ndarray]:
        """``table``'s values in order and ``numbers`` renumbered as indices into them."""
        known = np.fromiter(table.values(), np.int64, len(table))
        return list(table), np.searchsorted(known, numbers)

    def add_segment(self, segment: Segment, first: int, path: Path) -> None:
        """Decode ``segment`` (positions from ``first``); _Unusable if it does not hold
        what its header says."""
        kinds, blobs, size = segment.kinds, segment.blobs, segment.events
        names = _json(kinds[0], blobs[0])
        schemas = _json(kinds[2], blobs[2])
        if set(map(type, names)) - {str} or not all(
            isinstance(s, list) and all(isinstance(k, str) for k in s) for s in schemas
        ):
            raise _Unusable()
        keys = [tuple(s) for s in schemas]
        codes = _indices(kinds[1], blobs[1], size, len(names))
        scodes = _indices(kinds[3], blobs[3], size, len(keys))
        ts = _numbers(kinds[4], blobs[4], size)
        if not isinstance(ts, np.ndarray) or ts.dtype != np.float64 or np.isnan(ts).any():
            raise _Unusable()
        run = _numbers(kinds[5], blobs[5], size)
        present = np.bincount(scodes, minlength=len(keys))
        data = {}
        for key, kind, blob in zip(
            segment.keys, kinds[len(FIXED) :], blobs[len(FIXED) :], strict=True
        ):
            having = int(sum(n for n, k in zip(present.tolist(), keys, strict=True) if key in k))
            data[key] = _numbers(kind, blob, having)
        if set(data) != {key for k in keys for key in k}:
            raise _Unusable()
        ids = _Ids(copy_path(path), segment.offsets[6], blobs[6], size, kinds[6])

        self.parts.append(
            _Part(
                pos=np.arange(first + segment.line, first + segment.line + size, dtype=np.int64),
                gid=self._intern(self.names, names)[codes],
                sid=self._intern(self.schemas, keys)[scodes],
                ts=ts,
                run=run,
                ids=ids,
                data=data,
            )
        )

    def joined(self, name: str) -> np.ndarray:
        """One of the per-event arrays of all parts as one array (the parts' copies go)."""
        joined = np.concatenate([getattr(part, name) for part in self.parts])
        for part in self.parts:
            setattr(part, name, None)
        return joined

    def add_events(self, events: list[tuple[int, Event]]) -> None:
        """Add parsed events (checked log events, with their positions)."""
        if not events:
            return
        ts = [event["ts"] for _, event in events]
        if set(map(type, ts)) != {float} or any(t != t for t in ts):
            raise _Unusable()
        datas = [event["data"] for _, event in events]
        keys = dict.fromkeys(key for data in datas for key in data)
        ids = [event["id"] for _, event in events]
        self.parts.append(
            _Part(
                pos=np.array([position for position, _ in events], dtype=np.int64),
                gid=self._intern(self.names, [event["name"] for _, event in events]),
                sid=self._intern(self.schemas, [tuple(data) for data in datas]),
                ts=np.array(ts, dtype=np.float64),
                run=compact([event["run"] for _, event in events]),
                ids=lambda: ids,
                data={key: compact([d[key] for d in datas if key in d]) for key in keys},
            )
        )


class _Ids:
    """A segment's ids, read again from the copy when a query shows them (a million ids
    would otherwise stay in memory for nothing)."""

    def __init__(self, copy: Path, offset: int, blob: memoryview, count: int, kind: str) -> None:
        self.copy, self.offset, self.length, self.count, self.kind = (
            copy,
            offset,
            len(blob),
            count,
            kind,
        )
        self.crc = zlib.crc32(blob)

    def __call__(self) -> list[Any]:
        try:
            with self.copy.open("rb") as handle:
                handle.seek(self.offset)
                blob = handle.read(self.length)
            if zlib.crc32(blob) != self.crc:
                raise ValueError("changed")
            values = _json(self.kind, memoryview(blob))
            if len(values) != self.count:
                raise ValueError("damaged")
        except (OSError, ValueError, _Unusable):
            raise UserError(
                f"{self.copy} changed or is damaged while a query read it; run the query again "
                "(or delete that file: it is derived)"
            ) from None
        return values


def _json(kind: str, blob: memoryview) -> list[Any]:
    if kind != "json":
        raise _Unusable()
    try:
        values = load_array(bytes(blob))
    except (ValueError, RecursionError):
        raise _Unusable() from None
    if not isinstance(values, list):
        raise _Unusable()
    return values


def _numbers(kind: str, blob: memoryview, count: int) -> Values:
    """``count`` values: an array for the number kinds, a list for JSON."""
    if kind == "json":
        values = _json(kind, blob)
    elif kind in ("<f8", "<i8") and len(blob) == 8 * count:
        values = np.frombuffer(blob, kind).astype(kind[1:])  # (a copy, as above)
    else:
        raise _Unusable()
    if len(values) != count:
        raise _Unusable()
    return values


def _indices(kind: str, blob: memoryview, count: int, limit: int) -> np.ndarray:
    if kind != "<i4" or len(blob) != 4 * count:
        raise _Unusable()
    values = np.frombuffer(blob, "<i4").astype(np.int64)
    if count and (values.min() < 0 or values.max() >= limit):
        raise _Unusable()
    return values


def read(files: list[Path], literal: str) -> _Log | None:
    """The events of ``files`` (one experiment's logs, in run order): the columns of each
    log's usable copy, then its remaining lines parsed (only those containing ``literal``:
    other events match no name the query asks for). None if a log's copy covers less than
    half of it, or holds what this path cannot take."""
    log = _Log()
    first = 0  # the position of the current file's first line
    for path in files:
        try:
            size = path.stat().st_size
        except OSError:
            return None
        end, lines = 0, 0
        for segment in segments(path):
            try:
                log.add_segment(segment, first, path)
            except _Unusable:
                break
            end, lines = segment.end, segment.line + segment.events
        if 2 * end < size:
            return None
        rest = Matching(path, literal, start=end)
        try:
            log.add_events(
                [(first + lines + line, event) for chunk in rest for line, event in chunk]
            )
        except _Unusable:
            return None
        first += lines + rest.lines
    return log


def table(files: list[Path], pattern: Pattern, mode: str) -> Table | None:
    """The table ``_Rows`` would build from ``files`` for ``pattern`` and ``mode``
    (``MERGED`` or ``RAW``), from their columnar copies; None where this path does not
    apply (the caller parses the logs). Columns other than the row bookkeeping are built
    when first asked for. Temporaries are dropped as soon as they are used: a million
    distinct names is the case that sets the peak memory."""
    if mode not in (MERGED, RAW):
        return None
    log = read(files, pattern.literal)
    if log is None:
        return None
    if not log.parts:
        return _Rows(pattern, mode, timed=True).table()
    pos, gid, sid, ts = (log.joined(field) for field in ("pos", "gid", "sid", "ts"))
    names, gid = log.dense(log.names, gid)
    log.names.clear()
    schemas, sid = log.dense(log.schemas, sid)
    hit, captured = pattern.match_all(names)
    # The events taken, in (ts, run, seq) order: (ts, position) (see table.time_ordered).
    if len(ts) < 2 or bool(np.all(ts[1:] >= ts[:-1])):
        taken = np.flatnonzero(hit[gid])
    else:
        order = np.lexsort((pos, ts))
        taken = order[hit[gid[order]]]
        del order
    if not len(taken):
        return _Rows(pattern, mode, timed=True).table()
    names_taken = gid[taken]
    del gid
    if mode == RAW:
        first = last = np.arange(len(taken))
        row_names, row_of_taken = names_taken, first
    else:  # one row per name, where it first happened; fields of its latest event
        unique, first = np.unique(names_taken, return_index=True)
        last = len(taken) - 1 - np.unique(names_taken[::-1], return_index=True)[1]
        rank = np.argsort(first, kind="stable")
        first, last, row_names = taken[first[rank]], taken[last[rank]], unique[rank]
        del unique, rank
        row_of_name = np.empty(len(names), dtype=np.int64)
        row_of_name[row_names] = np.arange(len(row_names))
        row_of_taken = row_of_name[names_taken]
        del row_of_name
    if mode == RAW:
        first = last = taken
    del names_taken
    names_of = _kept(names)
    del names
    length = len(row_names)
    parts = log.parts
    columns: dict[str, Any] = {
        "_pos": pos[first],
        "_ts": ts[first],
        "name": lambda: np.array(names_of(), dtype=object)[row_names].tolist(),
        "ts": ts[last],
        "run": _take(_joined([part.run for part in parts]), last),
        "id": lambda: compact(_take([i for part in parts for i in part.ids()], first)),
    }
    del pos, ts
    slots = (np.cumsum(hit) - 1)[row_names]  # a row's name -> its values in captured
    for variable, values in zip(pattern.variables, captured, strict=True):
        columns[variable] = _take(values, slots)
    del slots, captured
    # Data keys in order of first appearance among the events taken (as _Rows adds them).
    seen, at = np.unique(sid[taken], return_index=True)
    keys = dict.fromkeys(key for s in seen[np.argsort(at)].tolist() for key in schemas[s])
    for key in keys:
        name = f"data.{key}" if key in columns or key in HIDDEN else key
        columns[name] = _data_column(
            key, parts, schemas, sid, taken, row_of_taken, length, merged=mode == MERGED
        )
    return Table(columns, length)


def _kept(names: list[str]) -> Callable[[], list[str]]:
    """``names`` for later, packed as JSON (a fifth of the list's memory) where orjson can
    (not a name holding a lone surrogate, which JSON escapes allow)."""
    try:
        packed = orjson.dumps(names)
    except TypeError:
        return lambda: names
    return lambda: orjson.loads(packed)  # type: ignore[no-any-return]


def _joined(pieces: list[Values]) -> Values:
    """One column from parts' pieces: an array if all are arrays of one type, else a list."""
    if all(isinstance(p, np.ndarray) for p in pieces) and len({p.dtype for p in pieces}) == 1:
        return np.concatenate(pieces)
    return [v for p in pieces for v in (p.tolist() if isinstance(p, np.ndarray) else p)]


def _take(values: Values, indices: np.ndarray) -> Values:
    if isinstance(values, np.ndarray):
        return values[indices]
    return compact([values[index] for index in indices.tolist()])


def _data_column(
    key: str,
    parts: list[_Part],
    schemas: list[tuple[str, ...]],
    sid: np.ndarray,
    taken: np.ndarray,
    row_of_taken: np.ndarray,
    length: int,
    *,
    merged: bool,
) -> Callable[[], Values]:
    """Data key ``key`` per row (computed when a query reads it): the value of the row's
    latest event that has the key (merged), or of its event (raw); None where none has it."""

    def build() -> Values:
        having = np.array([key in schema for schema in schemas], dtype=bool)[sid]
        dense = np.cumsum(having) - 1  # event -> its index among the events having the key
        values = _joined([part.data[key] for part in parts if key in part.data])
        with_key = having[taken]
        events, rows = taken[with_key], row_of_taken[with_key]
        if merged:  # the latest event of each row that has the key
            rows, reverse = np.unique(rows[::-1], return_index=True)
            events = events[::-1][reverse]
        picked = dense[events]
        if len(rows) == length and isinstance(values, np.ndarray):
            return values[picked]
        listed = values.tolist() if isinstance(values, np.ndarray) else values
        out: list[Any] = [None] * length
        for row, index in zip(rows.tolist(), picked.tolist(), strict=True):
            out[row] = listed[index]
        return compact(out)

    return build
