"""From one experiment's log to the columns of the events a pattern matches, with a cache.

This is the query's inner loop over millions of events, so it works on plain lists (one per
column) and never builds per-event DataFrames. Results are memoised per experiment, pattern
and mode (``MERGED``, ``RAW``, ``OCCURRENCES``), in memory (least recently used first out,
bounded by rows) and, for tables parsed from JSON (a log with a columnar copy is read by
``columnar`` instead, about as fast as this cache), in ``<repo>/.dbx/cache/query/`` (JSON and
raw numbers, never pickle; checked against each log file's size and modification time, so a
changed log is re-read, and against a checksum, so a damaged file is re-read and rewritten;
the folder is safe to delete).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from contextlib import suppress
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from squeezr.dbx.fileio import atomic_path
from squeezr.dbx.query.columns import Column, compact
from squeezr.dbx.query.logs import Event, Matching
from squeezr.dbx.query.pattern import Pattern
from squeezr.dbx.store import log_paths

CACHE_VERSION = 6
# The in-memory cache holds at most this many rows over all its tables (a few hundred MB
# at most: a million-event query fits twice); each table also counts ENTRY_ROWS for its
# fixed overhead, so tables that matched nothing are bounded too.
MEMORY_ROWS = 2_000_000
ENTRY_ROWS = 100

# How matched events become rows (docs/dbx-query.md, "Rows and columns").
MERGED = "merged"  # one row per name: union of its events' data, newest wins (the default)
RAW = "raw"  # one row per event
# One row per event, except that an event of a later run amends the latest earlier occurrence
# of its name instead (an add-on evaluation): the targets of before/after, which need real
# positions, so repeats of a name within a run stay apart.
OCCURRENCES = "occurrences"
# The engine's row bookkeeping, never a data column: the log a row is from, the position of
# its first event in that log, and that event's time.
HIDDEN = ("_exp", "_pos", "_ts")


class Table:
    """Matched events as columns: ``name ts run id _pos``, captured variables, data keys.

    Missing values are None; all-number columns are numpy arrays. A data key that collides
    with an event field, a variable or a ``HIDDEN`` name is stored as ``data.<key>``. Columns read from the disk
    cache stay undecoded JSON, and those built from a columnar copy a function, until first
    asked for, so a query pays only for what it uses.
    """

    def __init__(
        self,
        columns: dict[str, Any],
        length: int,
        encoded: dict[str, tuple[str, bytes]] | None = None,
    ) -> None:
        self.length = length
        self._columns = columns
        self._encoded = encoded or {}
        self.names: list[str] = [*columns, *self._encoded]

    def column(self, name: str) -> list[Any] | np.ndarray | None:
        """The values of column ``name`` (None if this log has no such column)."""
        encoded = self._encoded.pop(name, None)
        if encoded is not None:  # checked when the cache file was loaded (TableCache._load)
            kind, raw = encoded
            values = compact(json.loads(raw)) if kind == "json" else np.frombuffer(raw, kind)
            self._columns[name] = values
        values = self._columns.get(name)
        if callable(values):  # built on first use (query.columnar)
            values = self._columns[name] = values()
        return values

    def encode(self) -> bytes:
        """The cache file body: a JSON header line, then each column as raw little-endian
        numbers (numeric columns) or a JSON array (the rest) — nothing executable."""
        parts: list[bytes] = []
        spans = []
        offset = 0
        for name in self.names:
            values = self.column(name)
            if isinstance(values, np.ndarray):
                kind, data = values.dtype.str, values.tobytes()
            else:
                kind, data = "json", json.dumps(values).encode()
            parts.append(data)
            spans.append([name, kind, offset, offset + len(data)])
            offset += len(data)
        header = json.dumps({"length": self.length, "spans": spans}).encode()
        return header + b"\n" + b"".join(parts)

    @classmethod
    def decode(cls, raw: bytes) -> Table:
        """The inverse of ``encode``; columns are decoded lazily."""
        end = raw.index(b"\n")
        header = json.loads(raw[:end])
        body = raw[end + 1 :]
        spans = header["spans"]
        encoded = {name: (kind, body[start:stop]) for name, kind, start, stop in spans}
        return cls({}, header["length"], encoded)


def extract(
    events: Iterable[tuple[int, Event]], pattern: Pattern, mode: str, *, timed: bool = False
) -> Table:
    """Match, combine events into rows as ``mode`` says, and lay out as columns.

    ``timed``: the events are a log's, taken in (ts, run, seq) order; else (an in-memory log
    without a time order of its own) in the order given. ``events`` have been checked
    (``logs.read_matching``, ``logs.numbered``): each has a str ``name``, and ``data`` if any
    is a dict.
    """
    events = list(events)
    if timed and not in_time_order(events):
        events = time_ordered(events)
    rows = _Rows(pattern, mode, timed)
    rows.add(events)
    return rows.table()


def in_time_order(events: list[tuple[int, Event]], after: float = -math.inf) -> bool:
    """Whether ``(position, event)`` pairs (in position order) are in time order, none before
    ``after``."""
    previous = after
    for _, event in events:
        ts = event["ts"]
        if ts < previous:
            return False
        previous = ts
    return True


def time_ordered(events: list[tuple[int, Event]]) -> list[tuple[int, Event]]:
    """``events`` in (ts, run, seq) order. Positions number the runs' lines one run after the
    other, so (ts, position) is that order: within a run it is the logging order, and of two
    events of the same time the lower run comes first."""
    return sorted(events, key=lambda found: (found[1]["ts"], found[0]))


class _Rows:
    """Rows built from events fed in (ts, run, seq) order, a chunk at a time, so that a
    reader never holds more parsed events than one chunk.

    A row that combines several events (union of data, latest wins) sits at the position of
    its first event (when it first happened); its ``ts`` and ``run`` are those of the latest
    event that contributed to it, its ``id`` that of the first; the hidden ``_ts`` is the
    time of its first event (zero for untimed logs), which with ``_pos`` orders rows of
    different tables (``before``/``after``).
    """

    def __init__(self, pattern: Pattern, mode: str, timed: bool) -> None:
        self.match = pattern.match
        self.variables = pattern.variables
        self.mode = mode
        self.timed = timed
        self.length = 0
        self.fixed = {key: Column() for key in ("_pos", "_ts", "name", "ts", "run", "id")}
        self.captures = [Column() for _ in pattern.variables]
        self.data: dict[str, Column] = {}  # data key -> values (padded with None at the end)
        self.latest: dict[str, int] = {}  # name -> its row (merged) or latest occurrence
        self.first_runs: dict[int, Any] = {}  # occurrences: row -> the run of its first event

    def add(self, events: list[tuple[int, Event]]) -> None:
        """Feed the next events (later in time than every event fed before)."""
        match, latest, start, first_runs = self.match, self.latest, self.length, self.first_runs
        new: list[tuple[int, tuple[Any, ...], Event]] = []
        amend: list[tuple[int, Event]] = []  # applied after the new rows exist
        if self.mode == RAW:
            for position, event in events:
                captures = match(event["name"])
                if captures is not None:
                    new.append((position, captures, event))
        elif self.mode == MERGED:  # one row per name: later events amend it
            for position, event in events:
                name = event["name"]
                row = latest.get(name)
                if row is not None:
                    amend.append((row, event))
                    continue
                captures = match(name)
                if captures is not None:
                    latest[name] = start + len(new)
                    new.append((position, captures, event))
        else:  # OCCURRENCES: an event of another run amends the latest occurrence
            for position, event in events:
                name = event["name"]
                captures = match(name)
                if captures is None:
                    continue
                run, row = event.get("run"), latest.get(name)
                if row is not None and _other_run(first_runs[row], run):
                    amend.append((row, event))
                    continue
                latest[name] = start + len(new)
                first_runs[start + len(new)] = run
                new.append((position, captures, event))
        if amend and any(k not in self.data for _, e in amend for k in e.get("data") or ()):
            # Data columns go in order of first appearance among the events taken, wherever
            # a chunk ends (an amending event may be the first to have a key).
            for _, event in events:
                if match(event["name"]) is not None:
                    for key in event.get("data") or ():
                        if key not in self.data:
                            self.data[key] = Column()
        self._append(new)
        for row, event in amend:
            self._amend(row, event)

    def _append(self, new: list[tuple[int, tuple[Any, ...], Event]]) -> None:
        fixed, start = self.fixed, self.length
        fixed["_pos"].extend([position for position, _, _ in new])
        events = [event for _, _, event in new]
        fixed["name"].extend([event["name"] for event in events])
        ts = [event.get("ts") for event in events]
        fixed["ts"].extend(ts)
        fixed["_ts"].extend(ts if self.timed else [0.0] * len(ts))
        fixed["run"].extend([event.get("run") for event in events])
        fixed["id"].extend([event.get("id") for event in events])
        for index, column in enumerate(self.captures):
            column.extend([captures[index] for _, captures, _ in new])
        datas = [event.get("data") or {} for event in events]
        for key in dict.fromkeys(chain.from_iterable(datas)):
            column = self.data.get(key)
            if column is None:
                column = self.data[key] = Column()
            column.pad(start)
            column.extend([data.get(key) for data in datas])
        self.length += len(new)

    def _amend(self, row: int, event: Event) -> None:
        self.fixed["ts"].set(row, event.get("ts"))
        self.fixed["run"].set(row, event.get("run"))
        for key, value in (event.get("data") or {}).items():
            column = self.data.get(key)
            if column is None:
                column = self.data[key] = Column()
            column.pad(row + 1)
            column.set(row, value)

    def table(self) -> Table:
        """The rows as a Table (the builder is spent)."""
        self.latest.clear()
        self.first_runs.clear()
        columns: dict[str, Column] = dict(self.fixed)
        for variable, values in zip(self.variables, self.captures, strict=True):
            columns[variable] = values
        for key, values in self.data.items():
            values.pad(self.length)
            columns[f"data.{key}" if key in columns or key in HIDDEN else key] = values
        compacted = {}
        for name in list(columns):  # one at a time: each column's chunks go as it is built
            compacted[name] = columns.pop(name).values()
        compacted["_ts"] = np.asarray(compacted["_ts"], dtype=np.float64)
        return Table(compacted, self.length)


def _other_run(first: Any, run: Any) -> bool:
    """Whether an event of run ``run`` comes from another run than ``first`` (both known)."""
    return None not in (first, run) and run != first


def _stamp(files: list[Path]) -> list[list[Any]]:
    stamp = []
    for path in files:
        info = path.stat()
        stamp.append([path.name, info.st_size, info.st_mtime_ns])
    return stamp


def _rows(table: Table) -> int:
    """What ``table`` counts against ``MEMORY_ROWS``."""
    return table.length + ENTRY_ROWS


class TableCache:
    """Per-experiment extraction results, in memory (LRU) and optionally on disk."""

    def __init__(self) -> None:
        self._memory: OrderedDict[tuple[str, str, str], tuple[list[list[Any]], Table]] = (
            OrderedDict()
        )
        self.rows = 0  # what the tables in memory count against MEMORY_ROWS

    def table(self, folder: Path, pattern: Pattern, mode: str, cache_dir: Path | None) -> Table:
        """The matched-event columns of the experiment in ``folder`` (its runs concatenated)."""
        files = log_paths(folder)
        stamp = _stamp(files)
        key = (os.path.abspath(folder), pattern.text, mode)
        hit = self._memory.get(key)
        if hit is not None and hit[0] == stamp:
            self._memory.move_to_end(key)
            return hit[1]
        disk = None
        if cache_dir is not None:  # named relative to the repository, so it survives a move
            where = (os.path.relpath(key[0], cache_dir), pattern.text, mode)
            disk = cache_dir / (hashlib.sha1(repr(where).encode()).hexdigest() + ".cache")
        table = self._load(disk, stamp) if disk else None
        if table is None:
            from squeezr.dbx.query import columnar  # (it builds on this module)

            table = columnar.table(files, pattern, mode)
        if table is None:  # parsed from JSON: worth keeping on disk
            table = _read(files, pattern, mode)
            if disk:
                self._save(disk, stamp, table)
        self.remember(key, stamp, table)
        return table

    def remember(self, key: tuple[str, str, str], stamp: list[list[Any]], table: Table) -> None:
        """Keep ``table`` (read from logs with ``stamp``) in memory, forgetting the least
        recently used tables beyond ``MEMORY_ROWS``; the newest always stays."""
        replaced = self._memory.pop(key, None)
        if replaced is not None:
            self.rows -= _rows(replaced[1])
        self._memory[key] = (stamp, table)
        self.rows += _rows(table)
        while self.rows > MEMORY_ROWS and len(self._memory) > 1:
            _, (_, forgotten) = self._memory.popitem(last=False)
            self.rows -= _rows(forgotten)

    @staticmethod
    def _load(path: Path, stamp: list[list[Any]]) -> Table | None:
        """The cached table, or None if there is none, it is stale (the logs changed since)
        or it is damaged (the checksum of what follows the first line does not match)."""
        try:
            raw = path.read_bytes()
            first, _, body = raw.partition(b"\n")
            header = json.loads(first)
        except (OSError, ValueError):
            return None
        if header != {"version": CACHE_VERSION, "stamp": stamp, "crc32": zlib.crc32(body)}:
            return None
        return Table.decode(body)

    @staticmethod
    def _save(path: Path, stamp: list[list[Any]], table: Table) -> None:
        # Best effort: the cache is an optimisation, a read-only repository still answers.
        body = table.encode()
        header = {"version": CACHE_VERSION, "stamp": stamp, "crc32": zlib.crc32(body)}
        with suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path, durable=False) as temporary:
                temporary.write_bytes(json.dumps(header).encode() + b"\n" + body)


def _read(files: list[Path], pattern: Pattern, mode: str) -> Table:
    """Read the logs (in run order) a chunk at a time into rows. Runs that overlap in time
    (an add-on evaluation while training still logs) are read again, whole, and put in time
    order; the usual logs, already in order, are read once."""
    rows = _Rows(pattern, mode, timed=True)
    with warnings.catch_warnings(record=True) as caught:  # said once, by the read that counts
        warnings.simplefilter("always")
        ordered = _read_in_order(files, pattern, rows)
    if ordered:
        for warning in caught:
            warnings.warn(warning.message, stacklevel=2)
        return rows.table()
    events: list[tuple[int, Event]] = []
    offset = 0
    for path in files:
        matching = Matching(path, pattern.literal)
        for chunk in matching:
            events.extend((offset + line, event) for line, event in chunk)
        offset += matching.lines
    return extract(events, pattern, mode, timed=True)


def _read_in_order(files: list[Path], pattern: Pattern, rows: _Rows) -> bool:
    """Feed the logs' matching events to ``rows``; False as soon as one is out of time order."""
    latest = -math.inf
    offset = 0
    for path in files:
        matching = Matching(path, pattern.literal)
        for chunk in matching:
            if not in_time_order(chunk, after=latest):
                return False
            if chunk:
                latest = chunk[-1][1]["ts"]
                rows.add([(offset + line, event) for line, event in chunk] if offset else chunk)
        offset += matching.lines
    return True
