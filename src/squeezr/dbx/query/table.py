"""From one experiment's log to the columns of the events a pattern matches, with a cache.

This is the query's inner loop over millions of events, so it works on plain lists (one per
column) and never builds per-event DataFrames. Results are memoised per experiment, pattern
and mode (``MERGED``, ``RAW``, ``OCCURRENCES``), in memory (least recently used first out,
bounded by rows) and in ``<repo>/.dbx/cache/query/`` (JSON and raw numbers, never pickle;
checked against each log file's size and modification time, so a changed log is re-read,
and against a checksum, so a damaged file is re-read and rewritten; the folder is safe to
delete).
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from contextlib import suppress
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from squeezr.dbx.fileio import atomic_path
from squeezr.dbx.query.logs import Event, read_matching
from squeezr.dbx.query.pattern import Pattern
from squeezr.dbx.store import log_paths

CACHE_VERSION = 5
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
HIDDEN = ("_exp", "_pos")  # the engine's row bookkeeping (log, position): never a data column


class Table:
    """Matched events as columns: ``name ts run id _pos``, captured variables, data keys.

    Missing values are None; all-number columns are numpy arrays. A data key that collides
    with an event field, a variable or a ``HIDDEN`` name is stored as ``data.<key>``. Columns read from the disk
    cache stay undecoded JSON until first asked for, so a query pays only for what it uses.
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
            values = _compact(json.loads(raw)) if kind == "json" else np.frombuffer(raw, kind)
            self._columns[name] = values
        return self._columns.get(name)

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


def extract(events: Iterable[tuple[int, Event]], pattern: Pattern, mode: str) -> Table:
    """Match, combine events into rows as ``mode`` says, and lay out as columns.

    A row that combines several events (union of data, latest wins) sits at the position of
    its first event (when it first happened); its ``ts`` and ``run`` are those of the latest
    event that contributed to it, its ``id`` that of the first. ``events`` have been checked
    (``logs.read_matching``, ``logs.numbered``): each has a str ``name``, and ``data`` if any
    is a dict.
    """
    # Hot loop: one dict lookup per event; per-row work happens afterwards, per column.
    match = pattern.match
    entries: list[list[Any]] = []  # [position, captures, first event, *events merged into it]
    if mode == MERGED:
        by_name: dict[str, list[Any]] = {}
        for position, event in events:
            name = event["name"]
            entry = by_name.get(name)
            if entry is not None:
                entry.append(event)
                continue
            captures = match(name)
            if captures is not None:
                by_name[name] = [position, captures, event]
        entries = list(by_name.values())
    elif mode == RAW:
        for position, event in events:
            captures = match(event["name"])
            if captures is not None:
                entries.append([position, captures, event])
    else:
        latest: dict[str, list[Any]] = {}  # name -> its latest occurrence
        for position, event in events:
            name = event["name"]
            captures = match(name)
            if captures is None:
                continue
            entry = latest.get(name)
            if entry is not None and _later_run(event, entry[2]):
                entry.append(event)
                continue
            entry = [position, captures, event]
            entries.append(entry)
            latest[name] = entry
    firsts = [entry[2] for entry in entries]
    lasts = [entry[-1] for entry in entries]
    datas = [entry[2].get("data", {}) if len(entry) == 3 else _merged(entry) for entry in entries]
    columns: dict[str, Any] = {
        "_pos": [entry[0] for entry in entries],
        "name": [event["name"] for event in firsts],
        "ts": [event.get("ts") for event in lasts],
        "run": [event.get("run") for event in lasts],
        "id": [event.get("id") for event in firsts],
    }
    for index, variable in enumerate(pattern.variables):
        columns[variable] = [entry[1][index] for entry in entries]
    for key in dict.fromkeys(chain.from_iterable(datas)):
        column = f"data.{key}" if key in columns or key in HIDDEN else key
        columns[column] = [data.get(key) for data in datas]
    return Table({name: _compact(values) for name, values in columns.items()}, len(entries))


def _later_run(event: Event, first: Event) -> bool:
    """Whether ``event`` comes from another run than the occurrence it may amend (both known)."""
    run, first_run = event.get("run"), first.get("run")
    return run is not None and first_run is not None and run != first_run


def _merged(entry: list[Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for event in entry[2:]:
        data.update(event.get("data", {}))
    return data


def _compact(values: list[Any]) -> Any:
    """A column of plain numbers as a numpy array (cheap to concatenate and cache): int64 if
    all are ints, float64 if ints and floats. Anything else stays the list, so that each value
    keeps its type: booleans (``x == true`` must not match a 1), text, lists, gaps, and ints
    beyond int64."""
    kinds = set(map(type, values))
    if kinds == {int}:
        with suppress(OverflowError):
            return np.array(values, dtype=np.int64)
    elif kinds and kinds <= {int, float}:
        return np.array(values, dtype=np.float64)
    return values


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
    events: list[tuple[int, Event]] = []
    offset = 0
    for path in files:
        found, count = read_matching(path, pattern.literal)
        events.extend(((offset + line, event) for line, event in found) if offset else found)
        offset += count
    return extract(events, pattern, mode)
