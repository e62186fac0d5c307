"""Reading ``log-<N>.jsonl`` files fast, for queries over thousands of logs and million-line logs.

Parsing JSON is most of a query's cost, so lines that cannot hold a matching event name are
skipped by a byte-substring test before any parsing, and the remaining lines are parsed a
chunk at a time (about ``CHUNK_BYTES``) by one ``orjson.loads`` of a joined ``[...]`` array;
reading in chunks keeps memory at the size of the columns being built, not of the file and
its parsed events. Lines are held to the store's rules
(``jsonx.iter_log``): a line that is not JSON or not an event
(:func:`squeezr.dbx.records.event_problem`) is corruption, a UserError naming the file and
line, unless it is the file's last line, which a crash can leave damaged: that one is skipped
with a warning. A last line that lacks its newline is being written (or was torn by a crash):
finished-log reads skip it with a warning, and ``Tail`` keeps it until its newline arrives.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from squeezr.dbx import jsonx
from squeezr.dbx.errors import UserError
from squeezr.dbx.logcopy import load_array
from squeezr.dbx.records import event_problem

Event = dict[str, Any]
CHUNK_BYTES = 8 << 20  # lines parsed at a time by a finished-log read
# What an in-memory event may leave out (a log line has them all): checked with these
# stand-ins, so that the fields it does give follow the rules of a log line.
_OPTIONAL_FIELDS: Event = {"ts": 0.0, "id": "", "run": 0, "data": {}}


def parse_lines(
    lines: list[bytes], where: str, numbers: list[int], last: int | None = None
) -> list[tuple[int, Event]]:
    """The events of JSONL ``lines`` (``numbers``: their 0-based line indices in the file),
    paired with their numbers; a damaged line is an error unless it is line ``last``, which
    is left out with a warning."""
    if not lines:
        return []
    try:
        joined = load_array(b"[" + b",".join(lines) + b"]")
    except (ValueError, RecursionError):
        joined = None
    # A damaged line can still join into valid JSON (``{...}, {...}`` is two values), so
    # the fast path counts only if it gave one event per line.
    if joined is not None and len(joined) == len(lines) and not any(map(event_problem, joined)):
        return list(zip(numbers, joined, strict=True))
    events = []
    for number, line in zip(numbers, lines, strict=True):
        try:
            event = jsonx.loads(line)
            problem = event_problem(event)
            if problem is not None:
                raise ValueError(f"not a valid event: {problem}")
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, RecursionError):
                exc = ValueError("nested too deeply")
            if number != last:
                raise UserError(
                    f"{where} line {number + 1} is corrupt ({exc}); repair or remove that line"
                ) from None
            warnings.warn(f"{where}: skipping a corrupt last line {number + 1}", stacklevel=2)
            continue
        events.append((number, event))
    return events


def complete_lines(raw: bytes, where: str, *, warn_torn: bool) -> tuple[list[bytes], bytes]:
    """Split file bytes into complete lines and the unfinished tail (b"" if none)."""
    lines = raw.split(b"\n")
    tail = lines.pop()
    if tail and warn_torn:
        warnings.warn(f"{where}: skipping an unfinished last line (torn write)", stacklevel=2)
    return lines, tail


class Matching:
    """The events of a finished log whose line contains ``literal``, with their 0-based line
    numbers, in chunks: iterate to get lists of ``(line_index, event)``; afterwards
    ``lines`` is the number of complete lines. ``literal`` is a substring every wanted event
    name contains ("" = all); blank lines and a damaged last line are left out (see
    ``parse_lines``)."""

    def __init__(self, path: Path, literal: str, start: int = 0) -> None:
        self.path = path
        self.literal = literal
        self.start = start  # the byte to read from (a line's first); line indices count from it
        self.lines = 0

    def __iter__(self) -> Iterator[list[tuple[int, Event]]]:
        literal = self.literal
        needle = literal.encode("utf-8") if literal.isascii() and '"' not in literal else b""
        if b"\\" in needle:
            needle = b""
        where = str(self.path)
        self.lines = 0
        with self.path.open("rb") as handle:
            handle.seek(self.start)
            batch = handle.readlines(CHUNK_BYTES)
            while batch:
                following = handle.readlines(CHUNK_BYTES)
                tail = b""
                if not following and not batch[-1].endswith(b"\n"):
                    tail = batch.pop()
                    warnings.warn(
                        f"{where}: skipping an unfinished last line (torn write)", stacklevel=2
                    )
                first = self.lines
                if needle:
                    picked = [i for i, line in enumerate(batch) if needle in line]
                else:
                    picked = [i for i, line in enumerate(batch) if line.strip()]
                last = first + len(batch) - 1 if not following and not tail else None
                numbers = [first + i for i in picked]
                self.lines += len(batch)
                yield parse_lines([batch[i] for i in picked], where, numbers, last)
                batch = following


def read_matching(path: Path, literal: str) -> tuple[list[tuple[int, Event]], int]:
    """All of :class:`Matching` at once: ``([(line_index, event), ...], complete_lines)``."""
    matching = Matching(path, literal)
    events = [found for chunk in matching for found in chunk]
    return events, matching.lines


class Tail:
    """Follow one growing log file: remember the byte offset, hold back a torn last line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.pending = b""
        self.lines = 0  # complete lines read so far

    def read_new(self) -> list[tuple[int, Event]]:
        """Events completed since the last call, with their 0-based line numbers in the file
        (a partly written line waits for its newline; a complete damaged one is an error)."""
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
        return parse_lines([lines[i - first] for i in numbers], str(self.path), numbers)


def numbered(events: Iterable[Event]) -> list[tuple[int, Event]]:
    """Pair in-memory events with their positions, validating them like log lines (``ts``,
    ``id``, ``run`` and ``data`` may be left out)."""
    result = []
    for position, event in enumerate(events):
        problem = event_problem(_OPTIONAL_FIELDS | event if isinstance(event, dict) else event)
        if problem is not None:
            raise UserError(
                f"event {position} is not a log event ({problem}); "
                'give dicts like {"name": "train/epoch/1", "data": {...}}'
            )
        result.append((position, event))
    return result
