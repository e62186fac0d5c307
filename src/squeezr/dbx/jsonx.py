"""JSON that round-trips NaN and ±Infinity, plus strict readers for dbx's JSON and JSONL files.

Standard JSON has no NaN or Infinity, and Python's ``json`` writes them as bare ``NaN`` tokens
that other tools reject. dbx writes them as MongoDB Extended JSON v2 (relaxed) instead,
``{"$numberDouble": "NaN" | "Infinity" | "-Infinity"}``, and turns them back into floats on
reading, so every file stays valid JSON and a lost metric never becomes a crash.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from squeezr.dbx.errors import DbxWarning, UserError
from squeezr.dbx.records import event_problem

__all__ = [
    "MAX_DEPTH",
    "FileError",
    "TooDeep",
    "encode",
    "iter_log",
    "loads",
    "loads_bulk",
    "read_json",
    "tail_log",
    "to_jsonable",
]

MARKER = "$numberDouble"
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
# How deep arrays and objects may nest in any file dbx writes or reads. Python's parser and
# every recursive reader (flatten, where-expressions, tables) would otherwise meet
# RecursionError somewhere below ~1,000 levels; no real record nests a tenth as deep.
MAX_DEPTH = 200
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # strings (skipped) and brackets


class TooDeep(ValueError):
    """JSON nested deeper than :data:`MAX_DEPTH` levels (writing or reading it)."""

    def __init__(self) -> None:
        super().__init__(f"arrays/objects nested more than {MAX_DEPTH} levels deep")


def _check_depth(text: str) -> None:
    """TooDeep if the JSON ``text`` nests deeper than MAX_DEPTH. Costs two ``count`` calls
    unless the text has more than MAX_DEPTH opening brackets at all."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    for token in _TOKENS.findall(text):
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise TooDeep()
        elif token in ("]", "}"):
            depth -= 1


def _special(value: float) -> dict[str, str]:
    if value != value:
        return {MARKER: "NaN"}
    return {MARKER: "Infinity" if value > 0 else "-Infinity"}


def to_jsonable(value: Any) -> Any:
    """A value JSON can hold: non-finite floats become ``{"$numberDouble": ...}``; numpy/torch
    scalars and arrays (anything with ``item``/``tolist``) become numbers and lists; paths
    become strings. Raises TypeError for anything else that JSON cannot represent."""
    if isinstance(value, float):
        return value if math.isfinite(value) else _special(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(value.tolist())
    if hasattr(value, "item"):
        return to_jsonable(value.item())
    if hasattr(value, "items"):  # read-only mapping views such as dbx params
        return {str(key): to_jsonable(item) for key, item in value.items()}
    raise TypeError(f"cannot store a {type(value).__name__} as JSON: {value!r}")


def encode(value: Any, indent: int | None = None) -> str:
    """``value`` as JSON text with NaN/±Infinity written as ``{"$numberDouble": ...}`` (see
    :func:`to_jsonable`); the fast path skips conversion when nothing needs it. Raises
    TypeError for values JSON cannot hold, ValueError for cycles and ints beyond Python's
    digit limit, and :class:`TooDeep` (a ValueError) for nesting deeper than MAX_DEPTH."""
    encoder = _COMPACT if indent is None else _encoder(indent)
    try:
        text = encoder.encode(value)
    except RecursionError:
        raise TooDeep() from None
    except (ValueError, TypeError) as first:
        try:
            text = encoder.encode(to_jsonable(value))
        except RecursionError:  # a cycle (ValueError first) or nesting beyond the stack
            if isinstance(first, ValueError):
                raise first from None
            raise TooDeep() from None
    _check_depth(text)
    return text


# One encoder, made once: ``json.dumps`` with options builds a new one per call, which is
# most of the cost of encoding a small event.
_COMPACT = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


@functools.lru_cache(maxsize=8)
def _encoder(indent: int) -> json.JSONEncoder:  # made once per indent, like _COMPACT
    return json.JSONEncoder(allow_nan=False, indent=indent, separators=(",", ": "))


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and MARKER in obj:
        text = obj[MARKER]
        if text in _SPECIAL:
            return _SPECIAL[text]
        try:
            return float(text)
        except (TypeError, ValueError):
            return obj
    return obj


def loads(text: str | bytes) -> Any:
    """Parse JSON text, turning ``{"$numberDouble": ...}`` back into floats.

    Text without the marker (nearly all of it) is parsed without the per-object hook, which
    makes listing thousands of experiments noticeably faster.
    Nesting deeper than MAX_DEPTH is a :class:`TooDeep` (a ValueError), never a
    RecursionError.
    """
    if isinstance(text, bytes):  # JSON files are UTF-8 (RFC 8259); str skips detection
        text = text.decode("utf-8")
    _check_depth(text)
    if MARKER in text:
        return json.loads(text, object_hook=_hook)
    return json.loads(text)


# Digits become "0", what may precede a float's digits "." and the rest " ": an integer of
# 19 or more digits is then the substring _LONG_INTEGER (orjson would make it a float).
_DIGIT_MAP = bytes(
    ord("0") if 48 <= c <= 57 else ord(".") if chr(c) in ".eE" else ord(" ") for c in range(256)
)
_LONG_INTEGER = b" " + b"0" * 19


def loads_bulk(raw: bytes) -> Any:
    """Parse a large JSON body (a batch of events) as :func:`loads` would, by orjson where
    that gives the same values: not when the text holds the NaN marker or an integer beyond
    64 bits. Unlike :func:`loads`, nesting is not checked here (orjson stops at 1,024
    levels): the caller re-encodes what it keeps with :func:`encode`, which checks it."""
    if MARKER.encode() in raw or _LONG_INTEGER in raw.translate(_DIGIT_MAP):
        return loads(raw)
    import orjson  # a dependency of dbx, imported only by the readers that need it

    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return loads(raw)  # what orjson refuses (NaN tokens, deep nesting): the exact error


class FileError(UserError):
    """A file that is missing or cannot be parsed. The message names the file and says what
    to do; ``path`` and ``problem`` (``"missing"``, ``"not valid JSON (...)"``) are kept
    apart for ``dbx verify``, which lists problems rather than raising them."""

    def __init__(self, what: str, path: Path | str, problem: str, advice: str) -> None:
        super().__init__(f"{what} {path} is {problem}; {advice}")
        self.path = path
        self.problem = problem
        self.missing = problem == "missing"


def _read_bytes(path: Path | str, what: str) -> bytes:
    """The file's bytes; a missing or unreadable file is a FileError naming it. (Plain
    ``open``, no ``Path``: listing reads one meta.json per experiment through here.)"""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise FileError(what, path, "missing", "run `dbx verify` to check the repository") from None
    except IsADirectoryError:
        raise FileError(what, path, "a folder, not a file", "remove or rename it") from None
    except OSError as exc:
        raise FileError(
            what, path, f"unreadable ({exc.strerror or exc})", "check its permissions"
        ) from None


def read_json(path: Path | str, what: str = "file") -> Any:
    """Read a JSON file; a missing or unreadable file is a one-line FileError naming it."""
    raw = _read_bytes(path, what)
    try:
        return loads(raw)
    except ValueError as exc:
        raise FileError(
            what,
            path,
            f"not valid JSON ({exc})",
            "repair or remove it (`dbx verify` lists problems)",
        ) from None


def iter_log(path: Path | str) -> Iterator[dict[str, Any]]:
    """Events of one ``log-<N>.jsonl`` file, in file order.

    The last line may be torn by a crash (no trailing newline, or not parseable): it is
    skipped with a warning. A bad line before the last one (not JSON, or not an event as
    :func:`squeezr.dbx.records.event_problem` defines it) means real corruption, which no
    crash can cause, so it is a UserError naming the file and line.
    """
    path = Path(path)
    yield from _events(path, _read_bytes(path, "log"), 1)


def tail_log(path: Path | str, count: int) -> list[dict[str, Any]]:
    """The last ``count`` events of one log (fewer if it has fewer), read from its end in
    blocks, so the cost does not grow with the log's size. Damage is judged as
    :func:`iter_log` judges it (line numbers are counted from the end: ``line -3``)."""
    path = Path(path)
    if count <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            start, block = end, b""
            # count + 2 newlines: count whole lines, a possibly torn tail, and the cut line
            while start > 0 and block.count(b"\n") < count + 2:
                step = min(start, max(1 << 16, len(block)))
                start -= step
                handle.seek(start)
                block = handle.read(step) + block
    except OSError:
        _read_bytes(path, "log")  # the one-line FileError for a missing/unreadable file
        raise
    if start > 0:  # drop the partial first line
        block = block[block.index(b"\n") + 1 :]
    first_number = -block.count(b"\n") if start > 0 else 1
    return list(_events(path, block, first_number))[-count:]


def _events(path: Path, raw: bytes, first_number: int) -> Iterator[dict[str, Any]]:
    """The events in ``raw`` (whole lines of ``path``, the first being line ``first_number``;
    negative numbers count from the end)."""
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the text ends with a newline
    last = len(lines) - 1  # index of the last complete line
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            event = loads(line)
            problem = event_problem(event)
            if problem is not None:
                raise ValueError(f"not a valid event: {problem}")
        except ValueError as exc:
            number = _line_number(first_number, index, len(lines))
            if index == last and not tail:
                warnings.warn(
                    f"{path}: skipping a corrupt last line {number} ({exc}); "
                    "`dbx verify --repair` removes it",
                    DbxWarning,
                    stacklevel=3,
                )
                return
            raise UserError(
                f"{path} line {number} is corrupt ({exc}); repair or remove that line"
            ) from None
        yield event
    if tail.strip():
        number = _line_number(first_number, len(lines), len(lines))
        warnings.warn(
            f"{path}: skipping a torn last line {number} (no newline; a crash or a live "
            "writer; `dbx verify --repair` removes it)",
            DbxWarning,
            stacklevel=3,
        )


def _line_number(first: int, index: int, complete: int) -> int | str:
    if first > 0:
        return first + index
    return f"{index - complete}" if index < complete else "at the end"
