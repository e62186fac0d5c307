"""What each repository file must hold, defined once for readers and for ``dbx verify``.

Readers call a ``*_problems`` function and raise the first problem as a one-line
:class:`~squeezr.dbx.errors.UserError` naming the file, so a hand-edited or damaged file never
turns into a traceback deep inside a command; ``dbx verify`` calls the same functions and lists
every problem. The checks are structural (types of the fields dbx relies on) and cheap: they
run on every experiment a listing reads and on every log line. The format itself is described
in docs/dbx-format.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from squeezr.dbx.errors import UserError

__all__ = [
    "FORMAT_VERSION",
    "ID_RE",
    "attachment_problems",
    "event_problem",
    "format_problems",
    "meta_problems",
    "newer_format",
    "require",
    "run_problems",
]

FORMAT_VERSION = 1
ID_RE = re.compile(r"^[0-9a-f]{12}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NUMBER = (int, float)
_EMPTY: dict[str, Any] = {}


def require(problems: list[str], path: Path | str, what: str) -> None:
    """Raise the first of ``problems`` as a UserError naming ``what`` and ``path``."""
    if problems:
        raise UserError(f"{what} {path}: {problems[0]}; repair it (`dbx verify` lists problems)")


def format_problems(info: Any) -> list[str]:
    """Problems of ``.dbx/format.json``: ``{"format": "dbx", "version": <int>}``."""
    if not isinstance(info, dict) or info.get("format") != "dbx":
        return ['does not hold {"format": "dbx", "version": N}']
    version = info.get("version")
    if type(version) is not int or version < 1:
        return [f"version {version!r} is not a positive integer"]
    if newer_format(info):
        return [f"format version {version} is newer than this dbx reads ({FORMAT_VERSION})"]
    return []


def newer_format(info: Any) -> int | None:
    """The version in a parsed ``format.json`` if it is newer than this dbx reads, else None.
    Readers refuse such a repository (its files may mean something else); anything else
    wrong with the marker is only reported by ``dbx verify``."""
    version = info.get("version") if isinstance(info, dict) else None
    return version if type(version) is int and version > FORMAT_VERSION else None


def meta_problems(meta: Any) -> list[str]:
    """Problems of a ``meta.json``: an object with string id/name/kind and object params."""
    if (  # the common case, answered without building a list: this runs for every listing
        type(meta) is dict
        and type(meta.get("id")) is str
        and type(meta.get("name")) is str
        and type(meta.get("kind")) is str
        and type(meta.get("params", _EMPTY)) is dict
    ):
        return []
    if not isinstance(meta, dict):
        return ["does not hold a JSON object"]
    problems = [
        f"{field} must be a string"
        for field in ("id", "name", "kind")
        if not isinstance(meta.get(field), str)
    ]
    if not isinstance(meta.get("params", {}), dict):
        problems.append("params must be a JSON object")
    return problems


def run_problems(record: Any) -> list[str]:
    """Problems of a ``run-<N>.json``: an object whose nested sections have the right types."""
    if not isinstance(record, dict):
        return ["does not hold a JSON object"]
    problems = []
    for field in ("git", "python", "env", "exception"):
        if record.get(field) is not None and not isinstance(record[field], dict):
            problems.append(f"{field} must be a JSON object or null")
    for field in ("argv", "orig_argv"):
        value = record.get(field)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(arg, str) for arg in value)
        ):
            problems.append(f"{field} must be a list of strings")
    for field in ("cwd", "status", "start", "end", "hostname"):
        if record.get(field) is not None and not isinstance(record[field], str):
            problems.append(f"{field} must be a string or null")
    for field in ("run", "exit_code", "pid"):
        value = record.get(field)
        if value is not None and type(value) is not int:
            problems.append(f"{field} must be an integer or null")
    git = record.get("git")
    if isinstance(git, dict) and git.get("patch") is not None and not isinstance(git["patch"], str):
        problems.append("git.patch must be a file name or null")
    return problems


def attachment_problems(manifest: Any) -> list[str]:
    """Problems of ``attachments.json``: name -> ``{"path": "files/<name>", "size", "sha256"}``."""
    if not isinstance(manifest, dict):
        return ["does not hold a JSON object"]
    problems = []
    for name, info in manifest.items():
        if not isinstance(info, dict):
            problems.append(f"entry {name!r} must be a JSON object")
            continue
        path, size, digest = info.get("path"), info.get("size"), info.get("sha256")
        if not isinstance(path, str) or not path.startswith("files/") or ".." in path.split("/"):
            problems.append(f"entry {name!r}: path must be 'files/...' inside the experiment")
        if type(size) is not int or size < 0:
            problems.append(f"entry {name!r}: size must be a non-negative integer")
        if not isinstance(digest, str) or not _SHA256_RE.match(digest):
            problems.append(f"entry {name!r}: sha256 must be 64 lowercase hex digits")
    return problems


def event_problem(event: Any) -> str | None:
    """What is wrong with one log event, or None: it is called for every line read, so it
    checks only the types every reader relies on."""
    if type(event) is not dict:
        return "not a JSON object"
    name = event.get("name")
    if type(name) is not str or not name:
        return "name must be a non-empty string"
    if type(event.get("ts")) not in _NUMBER:
        return "ts must be a number (seconds since the epoch)"
    if type(event.get("id")) is not str:
        return "id must be a string"
    if type(event.get("run")) is not int:
        return "run must be an integer"
    if type(event.get("data")) is not dict:
        return "data must be a JSON object"
    return None
