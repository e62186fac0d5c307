"""Checking a repository's files, for ``Repository.verify`` / ``dbx verify``.

Run after a crash, a copy or a sync: it reads every file the format defines (docs/dbx-format.md)
and reports problems as one line each (path first) instead of stopping at the first one. What
a valid file holds is defined once, in :mod:`squeezr.dbx.records`, for readers and for this.
"""

from __future__ import annotations

import os
import shutil
import socket
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from squeezr.dbx import jsonx, records
from squeezr.dbx.errors import UserError
from squeezr.dbx.fileio import file_matches, fsync_dir
from squeezr.dbx.timeutil import to_datetime

__all__ = ["Problems", "repair_log", "verify_experiment", "verify_repository"]


class Problems(list[str]):
    """The problems found, one line each (an empty list means the repository is sound), and
    ``checked``: how many experiment folders were read, so a report needs no second walk."""

    def __init__(self, problems: Iterable[str] = (), checked: int = 0) -> None:
        super().__init__(problems)
        self.checked = checked


def verify_repository(root: Path, folders: Iterable[tuple[str, str]]) -> Problems:
    """Problems of the repository at ``root`` whose experiment folders are ``folders``
    (``(name, folder)`` pairs); an empty list means it is sound."""
    info_path = root / ".dbx" / "format.json"
    problems = Problems()
    info = _json(info_path, problems)
    if info is not None:
        problems.extend(f"{info_path}: {p}" for p in records.format_problems(info))
    for name, folder in folders:
        problems.extend(verify_experiment(Path(folder), name))
        problems.checked += 1
    return problems


def _json(path: Path, problems: list[str]) -> Any:
    """The parsed file, or None after adding why it cannot be read to ``problems``."""
    try:
        return jsonx.read_json(path)
    except jsonx.FileError as exc:
        problems.append(f"{path}: {exc.problem}")
        return None


def _checked(path: Path, problems: list[str], check: Any) -> Any:
    """The parsed file if ``check`` finds nothing wrong with it, else None (problems added)."""
    data = _json(path, problems)
    if data is None:
        return None
    found = check(data)
    problems.extend(f"{path}: {p}" for p in found)
    return None if found else data


def verify_experiment(folder: Path, name: str | None = None) -> list[str]:
    """Problems of one experiment folder (empty list if none); ``name`` is the name its
    path spells, which ``meta.json`` must hold."""
    problems: list[str] = []
    meta_path = folder / "meta.json"
    meta = _checked(meta_path, problems, records.meta_problems)
    if meta is not None:
        if meta["id"] != folder.name:
            problems.append(f"{meta_path}: id {meta['id']!r} does not match the folder name")
        if name is not None and meta["name"] != name:
            problems.append(f"{meta_path}: name {meta['name']!r} does not match its path {name!r}")
        if to_datetime(meta.get("created")) is None:
            problems.append(f"{meta_path}: created {meta.get('created')!r} is not an ISO time")
    try:
        names = sorted(entry.name for entry in os.scandir(folder))
    except OSError as exc:
        problems.append(f"{folder}: cannot be read ({exc.strerror or exc})")
        return problems
    for entry in names:
        path = folder / entry
        if entry == "results.json":
            _checked(path, problems, _object_problems)
        elif entry.startswith("run-") and entry.endswith(".json"):
            record = _checked(path, problems, records.run_problems)
            patch = (record.get("git") or {}).get("patch") if record else None
            if patch and not (folder / patch).is_file():
                problems.append(f"{folder / patch}: missing (named by {path})")
        elif entry.startswith("log-") and entry.endswith(".jsonl"):
            _log(path, problems)
    if "attachments.json" in names:
        manifest = _checked(folder / "attachments.json", problems, records.attachment_problems)
        for info in (manifest or {}).values():
            _attachment(folder / info["path"], info, problems)
    return problems


def _object_problems(data: Any) -> list[str]:
    return [] if isinstance(data, dict) else ["does not hold a JSON object"]


def _log(path: Path, problems: list[str]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for _ in jsonx.iter_log(path):
                pass
        except UserError as exc:
            problems.append(str(exc))
    problems.extend(f"{path}: torn or corrupt last line ({w.message})" for w in caught)


def _attachment(path: Path, info: dict[str, Any], problems: list[str]) -> None:
    if not path.is_file():
        problems.append(f"{path}: attachment missing")
    elif not file_matches(path, info["size"], info["sha256"]):
        problems.append(f"{path}: attachment size or sha256 does not match attachments.json")


def repair_log(path: Path) -> str | None:
    """Cut a crash-torn last line off the log at ``path`` (no trailing newline, or a last
    line that is not a valid event), keeping the whole file as ``<log>.bak`` (``.bak2``...)
    first. Returns what was done, or None if the log needed nothing. Refuses (UserError)
    while the run that writes the log is still alive on this host: its writer may be in
    the middle of that line."""
    raw = path.read_bytes()
    cut = raw.rfind(b"\n", 0, len(raw) - 1) + 1 if raw.endswith(b"\n") else raw.rfind(b"\n") + 1
    if raw.endswith(b"\n"):
        line = raw[cut:-1]
        if not line.strip() or _is_event(line):
            return None
    elif not raw[cut:].strip():
        return None
    _refuse_if_live(path)
    backup = path.with_name(path.name + ".bak")
    number = 1
    while backup.exists():
        number += 1
        backup = path.with_name(f"{path.name}.bak{number}")
    shutil.copy2(path, backup)
    with open(backup, "rb+") as handle:
        os.fsync(handle.fileno())
    os.truncate(path, cut)
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
    fsync_dir(path.parent)
    return f"{path}: removed a torn last line ({len(raw) - cut} bytes); the original is {backup}"


def _is_event(line: bytes) -> bool:
    try:
        return records.event_problem(jsonx.loads(line)) is None
    except ValueError:
        return False


def _refuse_if_live(log: Path) -> None:
    """UserError if the run writing ``log`` (``log-N.jsonl`` -> ``run-N.json``) is recorded as
    running by a process still alive on this host."""
    number = log.name.removeprefix("log-").removesuffix(".jsonl")
    try:
        record = jsonx.read_json(log.with_name(f"run-{number}.json"))
    except UserError:
        return
    if not isinstance(record, dict) or record.get("status") != "running":
        return
    pid = record.get("pid")
    if record.get("hostname") != socket.gethostname() or type(pid) is not int or pid <= 0:
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    except OSError:
        pass
    raise UserError(
        f"{log}: not repaired: run {number} (process {pid}) is still writing it; "
        "repair it after the run ends"
    )
