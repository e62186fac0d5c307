"""The columnar copy of a log: ``.log-<N>.cols`` beside ``log-<N>.jsonl``, so that a query
reads columns instead of parsing a million JSON lines (docs/dbx-format.md, "Columnar copy").

The log stays the source of truth. The copy is a sequence of *segments*, each the columns of
a run of consecutive complete log lines: which bytes of the log it covers, the CRC-32 of
those bytes and of its own body. The log writer appends one segment after each batch it
has made durable (:class:`CopyWriter`); nothing else writes the file. A reader
(:func:`segments`) takes the segments in order while each is intact (its body's checksum),
continues where the previous one ended and still matches the log's bytes (their checksum);
the first one that does not ends the usable copy, and the log from there on is parsed as
JSON. So a missing, stale, torn, corrupt or foreign copy can cost speed, never a wrong
answer, and a crash while a segment is written leaves the log and every earlier segment
intact.

This module is standard library only (the writer runs in every logging process); the query
decodes the blobs with numpy (``squeezr.dbx.query.columnar``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

from squeezr.dbx import jsonx

__all__ = [
    "FIXED",
    "CopyWriter",
    "Event",
    "Segment",
    "copy_path",
    "encode_segment",
    "load_array",
    "segments",
]

VERSION = 1
# The columns every segment has, in this order, before one column per data key:
# distinct event names, each event's name (an index into them), the distinct data-key lists
# ("schemas", in order), each event's schema, then ts, run and id of each event.
FIXED = ("names", "name", "schemas", "schema", "ts", "run", "id")
KINDS = ("json", "<f8", "<i8", "<i4")
_LITTLE = sys.byteorder == "little"
_INT64 = (-(2**63), 2**63)
_HEADER_BYTES = 1 << 24  # a longer first line is not a header


def copy_path(log: Path) -> Path:
    """Where the columnar copy of ``log`` lives (a dot file: readers of the format skip it)."""
    return log.with_name(f".{log.stem}.cols")


def load_array(joined: bytes) -> Any:
    """Parse JSON ``joined`` with orjson where it reads the text as the json module does, else
    with :func:`jsonx.loads`: orjson knows neither dbx's NaN/Infinity marker nor integers
    beyond 64 bits (it makes them floats)."""
    if jsonx.MARKER.encode() in joined or _LONG_INTEGER in joined.translate(_DIGIT_MAP):
        return jsonx.loads(joined)
    import orjson

    return orjson.loads(joined)


# Digits become "0", what may precede a float's digits "." and everything else " ", so that
# an integer of 19 or more digits is the substring _LONG_INTEGER (a fast search; a false
# alarm only costs the slower parser).
_DIGIT_MAP = bytes(
    ord("0") if 48 <= c <= 57 else ord(".") if chr(c) in ".eE" else ord(" ") for c in range(256)
)
_LONG_INTEGER = b" " + b"0" * 19


def _column(
    values: list[Any] | tuple[Any, ...], *, ints: str = "<i8", kinds: set[type] | None = None
) -> tuple[str, bytes]:
    """``values`` as (kind, bytes): raw little-endian numbers when all are floats ("<f8") or
    all ints within int64 (``ints``), else a JSON array ("json") — every value keeps its
    JSON type, so a reader rebuilds exactly what parsing the lines gives. ``kinds``: the
    values' types, when the caller has them already."""
    if kinds is None:
        kinds = set(map(type, values))
    numbers: array[Any] | None = None
    if kinds == {float}:
        numbers = array("d", values)
    elif kinds == {int}:
        with contextlib.suppress(OverflowError):  # (beyond the array's range: JSON)
            numbers = array("q" if ints == "<i8" else "i", values)
    if numbers is None:
        return "json", jsonx.encode(list(values)).encode()
    if not _LITTLE:
        numbers.byteswap()
    return ("<f8" if kinds == {float} else ints), numbers.tobytes()


def _codes(index: dict[Any, int], values: list[Any] | tuple[Any, ...]) -> tuple[str, bytes]:
    """The "<i4" column of each value's number in ``index`` (all zero when it has one)."""
    if len(index) == 1:
        return "<i4", bytes(4 * len(values))
    numbers = array("i", map(index.__getitem__, values))
    if not _LITTLE:
        numbers.byteswap()
    return "<i4", numbers.tobytes()


def _ids(ids: list[str] | tuple[str, ...]) -> bytes:
    """The JSON array of ``ids``; joined directly when they are the writer's own ids (ASCII
    digits and "-", which JSON writes as they are), encoded otherwise."""
    text = '","'.join(ids)
    digits = text.replace('","', "").replace("-", "")
    if text.count('"') == 2 * len(ids) - 2 and digits.isascii() and digits.isdigit():
        return f'["{text}"]'.encode()
    return jsonx.encode(list(ids)).encode()


# The types a value keeps exactly through its JSON line (``str``, ``int`` of any size, finite
# or non-finite ``float``, ``bool``, ``None``): the writer may lay such values out as they
# were logged instead of parsing them back (see CopyWriter.add).
_PLAIN = frozenset({str, int, float, bool, type(None)})


def encode_segment(events: list[dict[str, Any]], raw: bytes, start: int, line: int) -> bytes:
    """One segment: the columns of ``events``, parsed from the log bytes ``raw`` (one line
    each, no blank line) found at byte ``start`` and line ``line`` (0-based) of the log."""
    names = [event["name"] for event in events]
    ids = [event["id"] for event in events]
    times = [event["ts"] for event in events]
    runs = [event["run"] for event in events]
    datas = [event["data"] for event in events]
    keysets = list(map(tuple, datas))
    valuesets = [tuple(data.values()) for data in datas]
    keys, columns, _ = _layout(names, ids, times, runs, keysets, valuesets)
    return _frame(keys, columns, len(events), raw, start, line)


def _layout(
    names: list[str] | tuple[str, ...],
    ids: list[str] | tuple[str, ...],
    times: list[Any] | tuple[Any, ...],
    runs: list[Any] | tuple[Any, ...],
    keysets: list[tuple[Any, ...]] | tuple[tuple[Any, ...], ...],
    valuesets: list[tuple[Any, ...]] | tuple[tuple[Any, ...], ...],
) -> tuple[list[str], list[tuple[str, bytes]], bool]:
    """The data keys and the columns (``FIXED``, then one per key) of events given field by
    field (each event's data as its keys and its values, in order), and whether every name and data key is a ``str`` and every data value of a
    ``_PLAIN`` type. Built with C-level passes (``map``, ``zip``, ``dict.fromkeys``): this
    runs in the log writer's thread, which holds the GIL the logging loop needs."""
    index = {name: i for i, name in enumerate(dict.fromkeys(names))}
    schemas = {keyset: i for i, keyset in enumerate(dict.fromkeys(keysets))}
    keys = list(dict.fromkeys(chain.from_iterable(schemas)))
    plain = set(map(type, index)) <= {str} and set(map(type, keys)) <= {str}
    columns = [
        ("json", jsonx.encode(list(index)).encode()),
        _codes(index, names),
        ("json", jsonx.encode([list(keyset) for keyset in schemas]).encode()),
        _codes(schemas, keysets),
        _column(times),
        _column(runs),
        ("json", _ids(ids)),
    ]
    values: Any
    if len(schemas) == 1:  # every event has every key, in this order
        values = zip(*valuesets, strict=True)
    else:
        datas = list(map(dict, map(zip, keysets, valuesets)))
        values = ([data[key] for data in datas if key in data] for key in keys)
    for column in values:
        kinds = set(map(type, column))
        plain = plain and kinds <= _PLAIN
        columns.append(_column(column, kinds=kinds))
    return keys, columns, plain


def _frame(
    keys: list[str],
    columns: list[tuple[str, bytes]],
    events: int,
    raw: bytes,
    start: int,
    line: int,
) -> bytes:
    """The segment's header line and body, for ``events`` lines ``raw`` at ``start``/``line``."""
    body = b"".join(blob for _, blob in columns)
    header = {
        "dbxcols": VERSION,
        "start": start,
        "end": start + len(raw),
        "line": line,
        "events": events,
        "logcrc": zlib.crc32(raw),
        "size": len(body),
        "crc": zlib.crc32(body),
        "keys": keys,
        "columns": [[kind, len(blob)] for kind, blob in columns],
    }
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + body


@dataclass
class Segment:
    """One intact segment that matches the log: its header and its columns' raw bytes
    (``FIXED`` in order, then one per name in ``keys``) with their kinds."""

    start: int
    end: int
    line: int
    events: int
    logcrc: int
    keys: list[str]
    kinds: list[str]
    blobs: list[memoryview]
    offsets: list[int]  # where each blob is in the copy file


def segments(log: Path) -> Iterator[Segment]:
    """The usable segments of ``log``'s copy, in order: each intact, continuing the previous
    one, and matching the log's bytes. Stops at the first that is not (or at the end); none
    if there is no copy. Reads the copy a segment at a time, and the log's covered bytes
    once, to check them (their CRC-32, and one line per event)."""
    try:
        copy = copy_path(log).open("rb")
        handle = log.open("rb")
    except OSError:
        return
    with copy, handle:
        start, line = 0, 0
        while True:
            segment = _segment(copy, start, line)
            if segment is None:
                return
            covered = handle.read(segment.end - segment.start)
            if (
                len(covered) != segment.end - start
                or zlib.crc32(covered) != segment.logcrc
                or covered.count(b"\n") != segment.events
                or not covered.endswith(b"\n")
            ):
                return
            start, line = segment.end, segment.line + segment.events
            yield segment


def _segment(copy: BinaryIO, start: int, line: int) -> Segment | None:
    """The next segment of ``copy`` if it is intact and continues at log byte ``start`` and
    line ``line``; None otherwise (or at the end)."""
    try:
        header = json.loads(copy.readline(_HEADER_BYTES))
        size, columns, keys = header["size"], header["columns"], header["keys"]
        valid = (
            header["dbxcols"] == VERSION
            and header["start"] == start
            and header["line"] == line
            and type(header["end"]) is int
            and header["end"] > start
            and type(header["events"]) is int
            and header["events"] > 0
            and type(header["logcrc"]) is int
            and type(size) is int
            and len(columns) == len(FIXED) + len(keys)
            and all(kind in KINDS and type(length) is int for kind, length in columns)
            and sum(length for _, length in columns) == size
        )
        offset = copy.tell()
        body = memoryview(copy.read(size)) if valid else b""
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    if not valid or len(body) != size or zlib.crc32(body) != header["crc"]:
        return None
    blobs, offsets, at = [], [], 0
    for _, length in columns:
        blobs.append(body[at : at + length])
        offsets.append(offset + at)
        at += length
    kinds = [kind for kind, _ in columns]
    return Segment(
        start, header["end"], line, header["events"], header["logcrc"], keys, kinds, blobs, offsets
    )


# What the log writer hands CopyWriter.add per event: its encoded line, and the name, id, ts
# and data (its keys and its values, in order) it was encoded from; keys and values None
# when the line holds something else (data stored as text).
Event = tuple[bytes, str, str, float, tuple[Any, ...] | None, tuple[Any, ...] | None]


class CopyWriter:
    """Appends a segment to the copy of ``log`` for each batch of lines the log writer made
    durable. Best effort: the first failure (an OS error, a value it cannot lay out) ends the
    copy for this run, and readers parse the log from where it stops; the log itself is
    never affected. Starts only with a new, empty log (a copy cannot cover lines it never
    saw), truncating a copy left there by anything earlier."""

    def __init__(self, log: Path, log_size: int, run: int) -> None:
        self.path = copy_path(log)
        self.run = run
        self.end = 0  # log bytes covered
        self.line = 0  # log lines covered
        self._fd: int | None = None
        if log_size == 0:
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            except OSError:
                self._fd = None

    def add(self, events: list[Event]) -> None:
        """Append the segment of ``events``: the next complete lines of the log, durable,
        each with the fields it was encoded from (see :data:`Event`).

        Laid out from those fields, not by parsing the lines back (that cost the writer
        thread more than writing them): a value of a ``_PLAIN`` type is what its line parses
        to. The events where a field is of any other type (a list, a numpy scalar, data
        stored as text, no keys) are parsed from their lines instead, so the
        segment is always what parsing the whole batch would give."""
        if self._fd is None or not events:
            return
        try:
            lines, names, ids, times, keysets, valuesets = zip(*events, strict=True)
            raw = b"".join(lines)
            runs = [self.run] * len(events)
            plain = None not in keysets
            if plain:
                keys, columns, plain = _layout(names, ids, times, runs, keysets, valuesets)
            if not plain:
                names, keysets, valuesets = _reparsed(lines, names, keysets, valuesets)
                keys, columns, _ = _layout(names, ids, times, runs, keysets, valuesets)
            data = _frame(keys, columns, len(events), raw, self.end, self.line)
            while data:
                data = data[os.write(self._fd, data) :]
        except Exception:  # the copy is an optimisation; the log must go on regardless
            self.close()
            return
        self.end += len(raw)
        self.line += len(events)

    def close(self) -> None:
        """Stop writing (no sync: a copy that a crash damages is detected and skipped)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)


def _reparsed(
    lines: tuple[bytes, ...], *fields: tuple[Any, ...]
) -> tuple[list[Any], list[Any], list[Any]]:
    """The names, keys and values of events, with those of each event that has a field of
    a non-``_PLAIN`` type (or no keys) replaced by what its line parses to."""
    names, keysets, valuesets = map(list, fields)
    odd = [
        i
        for i, event in enumerate(zip(names, keysets, valuesets, strict=True))
        if not _is_plain(*event)
    ]
    parsed = load_array(b"[" + b",".join(lines[i] for i in odd) + b"]")
    if len(parsed) != len(odd):  # (never: each line is one encoded event)
        raise ValueError("lines and events differ")
    for i, event in zip(odd, parsed, strict=True):
        data = event["data"]
        names[i], keysets[i], valuesets[i] = event["name"], tuple(data), tuple(data.values())
    return names, keysets, valuesets


def _is_plain(name: Any, keys: tuple[Any, ...] | None, values: tuple[Any, ...] | None) -> bool:
    return (
        type(name) is str
        and keys is not None
        and values is not None
        and all(type(key) is str for key in keys)
        and all(type(value) in _PLAIN for value in values)
    )
