"""Reading an experiment's run records (``run-<N>.json``, ``run-<N>.patch``) for ``show``,
``cmd`` and ``code``, which need the command line and code version of a past run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from squeezr.dbx import jsonx
from squeezr.errors import UserError


def read_run(exp: Any, number: int | None = None) -> dict[str, Any]:
    """Run ``number`` (default: the latest) as a dict; UserError if there is no such run."""
    numbers = exp.run_numbers()
    if not numbers:
        raise UserError(f"experiment {exp.id} has no runs recorded")
    if number is None:
        number = numbers[-1]
    elif number not in numbers:
        raise UserError(
            f"experiment {exp.id} has no run {number}; its runs are {', '.join(map(str, numbers))}"
        )
    record = jsonx.read_json(Path(exp.path) / f"run-{number}.json", what="run record")
    record.setdefault("run", number)
    return record


def command_line(record: dict[str, Any]) -> list[str]:
    """The argv that re-runs this run, interpreter included when the script needs one."""
    argv = [str(arg) for arg in record.get("argv") or []]
    if not argv:
        raise UserError(f"run {record['run']} has no command line recorded")
    interpreter = (record.get("python") or {}).get("executable")
    if interpreter and argv[0].endswith(".py"):
        return [interpreter, *argv]
    return argv


def git_info(record: dict[str, Any]) -> dict[str, Any]:
    """The run's git fields (commit, branch, ...); empty outside a git repository."""
    return record.get("git") or {}


def patch_text(exp: Any, record: dict[str, Any]) -> str:
    """The recorded patch of uncommitted changes, or "" if the tree was clean."""
    name = git_info(record).get("patch")
    if not name:
        return ""
    path = Path(exp.path) / name
    if not path.is_file():
        raise UserError(f"the patch {path} of run {record['run']} is missing; run dbx verify")
    return path.read_text(encoding="utf-8")


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """One row about a run for ``dbx show``."""
    git = git_info(record)
    return {
        "run": record["run"],
        "start": record.get("start"),
        "end": record.get("end"),
        "status": record.get("status"),
        "host": record.get("hostname"),
        "commit": (git.get("commit") or "")[:12] or None,
        "command": command_line(record) if record.get("argv") else [],
    }
