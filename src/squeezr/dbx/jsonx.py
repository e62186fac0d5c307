"""JSON that round-trips NaN and ±Infinity, plus strict readers for dbx's JSON and JSONL files.

Standard JSON has no NaN or Infinity, and Python's ``json`` writes them as bare ``NaN`` tokens
that other tools reject. dbx writes them as MongoDB Extended JSON v2 (relaxed) instead,
``{"$numberDouble": "NaN" | "Infinity" | "-Infinity"}``, and turns them back into floats on
reading, so every file stays valid JSON and a lost metric never becomes a crash.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from squeezr.errors import UserError

__all__ = ["dumps", "encode", "iter_log", "loads", "read_json", "to_jsonable"]

MARKER = "$numberDouble"
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


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
    """``value`` as JSON text; the fast path skips conversion when nothing needs it."""
    try:
        return json.dumps(value, allow_nan=False, indent=indent, separators=_separators(indent))
    except (ValueError, TypeError):
        return json.dumps(
            to_jsonable(value), allow_nan=False, indent=indent, separators=_separators(indent)
        )


def _separators(indent: int | None) -> tuple[str, str]:
    return (",", ": ") if indent is not None else (",", ":")


def dumps(value: Any, indent: int | None = None) -> str:
    """JSON text for ``value`` with NaN/±Infinity written as ``{"$numberDouble": ...}``."""
    return encode(value, indent=indent)


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
    """Parse JSON text, turning ``{"$numberDouble": ...}`` back into floats."""
    return json.loads(text, object_hook=_hook)


def read_json(path: Path | str, what: str = "file") -> Any:
    """Read a JSON file; a missing or unreadable file is a one-line UserError naming it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(
            f"{what} {path} is missing; run `dbx verify` to check the repository"
        ) from None
    try:
        return loads(raw)
    except ValueError as exc:
        raise UserError(
            f"{what} {path} is not valid JSON ({exc}); repair or remove it (`dbx verify` lists problems)"
        ) from None


def iter_log(path: Path | str) -> Iterator[dict[str, Any]]:
    """Events of one ``log-<N>.jsonl`` file, in file order.

    The last line may be torn by a crash (no trailing newline, or not parseable): it is
    skipped with a warning. A bad line before the last one means real corruption, which no
    crash can cause, so it is a UserError naming the file and line.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(
            f"log {path} is missing; run `dbx verify` to check the repository"
        ) from None
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    last = len(lines)  # 1-based number of the last complete line
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = loads(line)
            if not isinstance(event, dict) or not isinstance(event.get("name"), str):
                raise ValueError("not an event object")
        except ValueError as exc:
            if number == last and not tail:
                warnings.warn(
                    f"{path}: skipping a corrupt last line {number} ({exc})", stacklevel=2
                )
                return
            raise UserError(
                f"{path} line {number} is corrupt ({exc}); repair or remove that line"
            ) from None
        yield event
    if tail.strip():
        warnings.warn(
            f"{path}: skipping a torn last line {last + 1} (no newline; a crash or a live writer)",
            stacklevel=2,
        )
