"""The web UI's data source over a local repository folder (``dbx ui --repo DIR``), built on
the library the ``dbx`` commands use: ``select`` chooses, ``compare`` diffs and finds
similar experiments, ``runs`` rebuilds commands, ``query`` and ``query.live`` read logs.

Nothing is cached between requests except by the OS: every page reads the files as they
are now, so experiments written while the UI runs show up on the next load.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from squeezr.dbx import compare, jsonx, query
from squeezr.dbx.errors import NotFound, UserError
from squeezr.dbx.runs import command, command_line, git_info, patch_bytes, run_status
from squeezr.dbx.select import select_experiments
from squeezr.dbx.server.web.source import Source, Summary
from squeezr.dbx.store import Experiment, Repository

PATCH_LIMIT = 200_000  # characters of a run's patch shown in a page
LAST_EVENTS = 20

# Run statuses (squeezr.dbx.lifecycle) as experiment statuses; anything else reads "failed".
_STATUS_OF_RUN = {
    "finished": "done",
    "exited": "done",
    "failed": "failed",
    "interrupted": "interrupted",
    "terminated": "interrupted",
    "running (process gone?)": "interrupted",
}


def experiment_status(exp: Experiment) -> str:
    """``planned`` (no run yet), ``running`` (a run not ended whose process is alive or on
    another host), else what the last run's ending means: ``done``, ``failed``,
    ``interrupted``."""
    numbers = exp.run_numbers()
    if not numbers:
        return "planned"
    statuses = [run_status(exp.run_record(number)) for number in numbers]
    if "running" in statuses:
        return "running"
    return _STATUS_OF_RUN.get(statuses[-1] or "", "failed")


def summary(exp: Experiment) -> Summary:
    """The summary of one experiment (see :mod:`~squeezr.dbx.server.web.source`)."""
    created = exp.created
    return {
        "id": exp.id,
        "name": exp.name,
        "kind": exp.kind,
        "created": created.isoformat(timespec="seconds") if created else None,
        "status": experiment_status(exp),
        "params": exp.value("params"),
        "results": exp.results.tree(),
    }


class LocalSource(Source):
    """:class:`Source` over the repository folder ``path``."""

    def __init__(self, path: Path | str | Repository) -> None:
        self.repo = Repository.find(path)

    def __repr__(self) -> str:
        return f"LocalSource({str(self.repo.path)!r})"

    def _get(self, ref: str) -> Experiment:
        return self.repo.get(ref)

    def summaries(
        self,
        prefix: str | None = None,
        kind: str | None = None,
        where: str | None = None,
        sort: str | None = None,
    ) -> list[Summary]:
        chosen = select_experiments(self.repo, prefix=prefix, kind=kind, where=where, sort=sort)
        return [summary(exp) for exp in chosen]

    def experiment(self, ref: str) -> dict[str, Any]:
        exp = self._get(ref)
        events = exp.events()
        progress: dict[str, dict[str, Any]] = {}
        for event in events:
            if event["name"].startswith("progress/"):
                progress[event["name"].removeprefix("progress/")] = event["data"]
        attachments = {
            name: {key: info.get(key) for key in ("size", "sha256", "added", "run")}
            for name, info in sorted(exp.attachments.items())
        }
        return {
            **summary(exp),
            "path": str(exp.path),
            "runs": [_run(exp, record) for record in exp.runs()],
            "attachments": attachments,
            "notes": exp.notes,
            "progress": progress,
            "events": dict(Counter(event["name"] for event in events)),
            "last_events": events[-LAST_EVENTS:],
        }

    def attachment(self, ref: str, name: str) -> Path:
        exp = self._get(ref)
        if name.removeprefix("files/") not in exp.attachments:
            raise NotFound(f"experiment {exp.id} ({exp.name}) has no attachment {name!r}")
        return exp.attachment_path(name)

    def set_notes(self, ref: str, text: str) -> None:
        self._get(ref).notes = text

    def diff(self, refs: list[str]) -> list[dict[str, Any]]:
        return compare.diff([self._get(ref) for ref in refs], results=True)

    def like(self, ref: str, limit: int = 20) -> list[dict[str, Any]]:
        target = self._get(ref)
        others = (exp for exp in self.repo.experiments(kind=target.kind))
        return compare.like(target, others)[:limit]

    def query(self, text: str, ids: list[str] | None = None, **selection: Any) -> pd.DataFrame:
        if ids is not None:
            return query.run(text, self.repo, [self._get(ref) for ref in ids])
        return query.run(text, self.repo, **selection)

    def follow(
        self,
        text: str,
        ids: list[str] | None = None,
        *,
        interval: float = 1.0,
        stop: Callable[[], bool] | None = None,
        **selection: Any,
    ) -> Iterator[pd.DataFrame]:
        if ids is not None:
            full = [self._get(ref).id for ref in ids]
            selection = {"where": f"id in {jsonx.encode(full)}"}
        return query.follow(text, self.repo, interval=interval, stop=stop, **selection)


def _run(exp: Experiment, record: dict[str, Any]) -> dict[str, Any]:
    """One run as the experiment page shows it."""
    git = git_info(record)
    try:
        text = command(exp, record["run"]) if command_line(record) else ""
    except UserError:
        text = ""
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
