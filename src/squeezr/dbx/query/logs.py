"""Reading ``log-<N>.jsonl`` files fast, for queries over thousands of logs.

Parsing JSON is most of a query's cost, so lines that cannot hold a matching event name are
skipped by a byte-substring test before any parsing, and the remaining lines of a file are
parsed by one ``json.loads`` of a joined ``[...]`` array. A file whose last line lacks its
newline is being written (or was torn by a crash): finished-log reads skip that line with a
warning, and ``Tail`` keeps it until its newline arrives.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from squeezr.dbx import jsonx
from squeezr.errors import UserError

Event = dict[str, Any]


def _decode(raw: bytes) -> Any:
    # The extended-JSON hook costs time per object; only pay it where NaN/Inf were written.
    if b"$numberDouble" in raw:
        return jsonx.loads(raw)
    return json.loads(raw)


def valid_event(event: Any) -> bool:
    """Whether ``event`` has the shape of a log event: a dict with a str name and dict data."""
    return (
        isinstance(event, dict)
        and isinstance(event.get("name"), str)
        and isinstance(event.get("data", {}), dict)
    )


def parse_lines(
    lines: list[bytes], where: str, numbers: list[int], last: int | None = None
) -> list[Event | None]:
    """Parse JSONL lines (``numbers``: their 0-based line indices in the file).

    As in the store's reader, an unreadable line is corruption (UserError naming the file and
    line) unless it is the file's last line (``last``), which a crash can leave damaged: that
    one becomes None, with a warning.
    """
    if not lines:
        return []
    try:
        return _decode(b"[" + b",".join(lines) + b"]")
    except ValueError:
        pass
    events: list[Event | None] = []
    for number, line in zip(numbers, lines, strict=True):
        try:
            events.append(_decode(line))
        except ValueError as exc:
            if number != last:
                raise UserError(
                    f"{where} line {number + 1} is corrupt ({exc}); repair or remove that line"
                ) from None
            warnings.warn(f"{where}: skipping a corrupt last line {number + 1}", stacklevel=2)
            events.append(None)
    return events


def complete_lines(raw: bytes, where: str, *, warn_torn: bool) -> tuple[list[bytes], bytes]:
    """Split file bytes into complete lines and the unfinished tail (b"" if none)."""
    lines = raw.split(b"\n")
    tail = lines.pop()
    if tail and warn_torn:
        warnings.warn(f"{where}: skipping an unfinished last line (torn write)", stacklevel=2)
    return lines, tail


def read_matching(path: Path, literal: str) -> tuple[list[tuple[int, Event | None]], int]:
    """Events of a finished log whose line contains ``literal``, with their line numbers.

    Returns ``([(line_index, event), ...], number_of_complete_lines)``; blank lines are
    skipped; a corrupt last line's event is None (see ``parse_lines``). ``literal`` is a substring every wanted event name contains ("" = all).
    """
    lines, tail = complete_lines(path.read_bytes(), str(path), warn_torn=True)
    needle = literal.encode("utf-8") if literal.isascii() and '"' not in literal else b""
    if needle and b"\\" not in needle:
        picked = [i for i, line in enumerate(lines) if needle in line]
    else:
        picked = [i for i, line in enumerate(lines) if line.strip()]
    last = len(lines) - 1 if not tail else None
    events = parse_lines([lines[i] for i in picked], str(path), picked, last)
    return list(zip(picked, events, strict=True)), len(lines)


class Tail:
    """Follow one growing log file: remember the byte offset, hold back a torn last line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.pending = b""
        self.lines = 0  # complete lines read so far

    def read_new(self) -> list[tuple[int, Any]]:
        """Lines completed since the last call, decoded, with their 0-based line numbers in
        the file (a partly written line waits for its newline; the caller checks the shape)."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        lines, self.pending = complete_lines(self.pending + chunk, str(self.path), warn_torn=False)
        first = self.lines
        self.lines += len(lines)
        numbers = [first + i for i, line in enumerate(lines) if line.strip()]
        events = parse_lines([lines[i - first] for i in numbers], str(self.path), numbers)
        return list(zip(numbers, events, strict=True))


def numbered(events: Iterable[Event]) -> list[tuple[int, Event]]:
    """Pair in-memory events with their positions, validating them like log lines."""
    result = []
    for position, event in enumerate(events):
        if not valid_event(event):
            raise UserError(
                f"event {position} is not a log event ({type(event).__name__}); "
                'give dicts like {"name": "train/epoch/1", "data": {...}}'
            )
        result.append((position, event))
    return result
