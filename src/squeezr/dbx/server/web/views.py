"""What the UI shows of an experiment, computed the same way whatever the store: its state
from its run records, its summary (see :mod:`~squeezr.dbx.server.web.source`), one run as
the experiment page shows it."""

from __future__ import annotations

from typing import Any

from squeezr.dbx.errors import UserError
from squeezr.dbx.runs import (
    command,
    command_line,
    git_info,
    patch_bytes,
    run_status,
    status_of_runs,
)
from squeezr.dbx.server.web.source import Summary
from squeezr.dbx.store import Experiment

PATCH_LIMIT = 200_000  # characters of a run's patch shown in a page
LAST_EVENTS = 20  # the latest events an experiment page lists


def summary(exp: Experiment, records: list[dict[str, Any]] | None = None) -> Summary:
    """The summary of one experiment (see :mod:`~squeezr.dbx.server.web.source`)."""
    created = exp.created
    return {
        "id": exp.id,
        "name": exp.name,
        "kind": exp.kind,
        "created": created.isoformat(timespec="seconds") if created else None,
        "status": status_of_runs(exp.runs() if records is None else records),
        "params": exp.value("params"),
        "results": exp.results.tree(),
    }


def run_view(exp: Experiment, record: dict[str, Any], patch: str | None = None) -> dict[str, Any]:
    """One run as the experiment page shows it; ``patch`` is the run's patch text where it is
    not a file beside the record (a server keeps it in the database)."""
    git = git_info(record)
    try:
        text = command(exp, record["run"]) if command_line(record) else ""
    except UserError:
        text = ""
    if patch is None:
        try:
            patch = patch_bytes(exp, record).decode("utf-8", errors="replace")
        except UserError as exc:
            patch = f"({exc})"
    if len(patch) > PATCH_LIMIT:
        patch = patch[:PATCH_LIMIT] + f"\n... [{len(patch) - PATCH_LIMIT:,} characters cut]"
    exception = record.get("exception") or {}
    return {
        "run": record["run"],
        "status": run_status(record),
        "start": record.get("start"),
        "end": record.get("end"),
        "exit_code": record.get("exit_code"),
        "host": record.get("hostname"),
        "user": record.get("user"),
        "cwd": record.get("cwd"),
        "command": text,
        "git": {key: git.get(key) for key in ("commit", "branch", "remote", "dirty", "untracked")},
        "patch": patch,
        "environment": dict(sorted((record.get("env") or {}).items())),
        "python": (record.get("python") or {}).get("version"),
        "platform": record.get("platform"),
        "error": f"{exception.get('type')}: {exception.get('message')}" if exception else None,
    }
