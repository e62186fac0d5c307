"""The web UI's data source over a local repository folder (``dbx ui --repo DIR``), built on
the library the ``dbx`` commands use: ``select`` chooses, ``compare`` diffs and finds
similar experiments, ``runs`` rebuilds commands, ``query`` and ``query.live`` read logs.

Listing keeps one entry per experiment folder (its handle, run statuses and summary),
valid while the folder's modification time is unchanged: dbx writes meta, results, run
records and notes by atomic rename inside the folder, which updates that time, so one
``stat`` per experiment tells whether anything a summary shows has changed (logs are
appended and do not show in a summary). A listing of 10,000 experiments then costs a walk
of the name folders and 10,000 ``stat`` calls instead of 30,000 file reads
(docs/performance.md). ``running`` states are re-checked on every listing (the process may
have died), and the experiment page always reads the files afresh.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from squeezr.dbx import compare, expr, jsonx, query
from squeezr.dbx.errors import NotFound
from squeezr.dbx.query.logs import complete_lines, parse_lines
from squeezr.dbx.runs import status_of_runs
from squeezr.dbx.select import _sort_keys, check_paths, sort_experiments
from squeezr.dbx.server.web.source import Source, Summary
from squeezr.dbx.server.web.views import LAST_EVENTS, run_view, summary
from squeezr.dbx.store import Experiment, Repository, log_paths


class _Entry:
    """What a listing remembers of one experiment folder, valid for one ``mtime``."""

    __slots__ = ("exp", "mtime", "records", "summary")

    def __init__(self, exp: Experiment, mtime: int) -> None:
        self.exp = exp
        self.mtime = mtime
        # Only what the state needs: a record's status, pid and host.
        self.records = [
            {key: record.get(key) for key in ("status", "pid", "hostname")} for record in exp.runs()
        ]
        self.summary = summary(exp, self.records)

    def current(self) -> Summary:
        if self.summary["status"] == "running":  # its process may have ended since
            self.summary = {**self.summary, "status": status_of_runs(self.records)}
        return self.summary


class LocalSource(Source):
    """:class:`Source` over the repository folder ``path``."""

    def __init__(self, path: Path | str | Repository) -> None:
        self.repo = Repository.find(path)
        self._entries: dict[str, _Entry] = {}
        self._by_id: dict[str, str] = {}  # id -> folder, from listings
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalSource({str(self.repo.path)!r})"

    def _get(self, ref: str) -> Experiment:
        """The experiment ``ref`` names; a full id seen by an earlier listing is found without
        walking the repository (the UI's links use full ids)."""
        folder = self._by_id.get(ref)
        if folder is not None and os.path.isfile(os.path.join(folder, "meta.json")):
            exp = Experiment(self.repo, folder)
            if exp.id == ref:
                return exp
        return self.repo.get(ref)

    def summaries(
        self,
        prefix: str | None = None,
        kind: str | None = None,
        where: str | None = None,
        sort: str | None = None,
    ) -> list[Summary]:
        condition = expr.parse(where) if where else None
        if condition is not None:
            check_paths(sorted(condition.paths()), "--where")
        keys = _sort_keys(sort)  # the check dbx ls makes
        chosen = [
            entry
            for entry in self._listing(prefix)
            if (kind is None or entry.exp.kind == kind)
            and (condition is None or condition.evaluate(entry.exp.value))
        ]
        if keys:
            by_handle = {id(entry.exp): entry for entry in chosen}
            ordered = sort_experiments([entry.exp for entry in chosen], keys)
            chosen = [by_handle[id(exp)] for exp in ordered]
        return [entry.current() for entry in chosen]

    def _listing(self, prefix: str | None) -> list[_Entry]:
        """An entry per experiment under ``prefix``, in name then id order; entries of
        folders unchanged since the last listing are reused."""
        entries = []
        for name, folder in self.repo._folders(prefix):
            if prefix and not name.startswith(prefix):
                continue
            try:
                mtime = os.stat(folder).st_mtime_ns
            except FileNotFoundError:
                continue
            entry = self._entries.get(folder)
            if entry is None or entry.mtime != mtime:
                if not os.path.isfile(os.path.join(folder, "meta.json")):
                    continue  # a create interrupted by a crash: dbx verify reports it
                entry = _Entry(Experiment(self.repo, folder), mtime)
                with self._lock:
                    self._entries[folder] = entry
                    self._by_id[entry.exp.id] = folder
            entries.append(entry)
        if not prefix:  # forget deleted experiments
            seen = {entry.exp._folder for entry in entries}
            with self._lock:
                for folder in [f for f in self._entries if f not in seen]:
                    self._by_id.pop(self._entries.pop(folder).exp.id, None)
        return entries

    def experiment(self, ref: str) -> dict[str, Any]:
        exp = self._get(ref)
        events, progress, last = _log_digest(exp)
        attachments = {
            name: {key: info.get(key) for key in ("size", "sha256", "added", "run")}
            for name, info in sorted(exp.attachments.items())
        }
        return {
            **summary(exp),
            "path": str(exp.path),
            "runs": [run_view(exp, record) for record in exp.runs()],
            "attachments": attachments,
            "notes": exp.notes,
            "progress": progress,
            "events": events,
            "last_events": last,
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


# Event names as dbx writes lines (``{"name":"train/epoch/3",...``), found in a whole file
# by one regex search; lines written otherwise (another key order) are parsed one by one.
# The pattern starts with a literal (newline, brace), which the regex engine finds fast.
_NAME = re.compile(rb'\n\{"name":"((?:[^"\\\n]|\\.)*)"')
# A name part that is a number, within names joined by newlines.
_NUMBER_PART = re.compile(rb"(?:(?<=/)|^)\d+(?=/|$)", re.MULTILINE)


def _log_digest(
    exp: Experiment,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """What the experiment page shows of the log: event counts by name pattern (numbers as
    ``*``, so 100,000 steps are one pattern) with their total, the latest data of each
    ``progress/<desc>`` event, and the last LAST_EVENTS events. Only progress events and
    the last lines of each log are parsed as JSON: a log of 100,000 events costs a few
    regex passes over its bytes, not 100,000 parses."""
    patterns: Counter[bytes] = Counter()
    progress: dict[str, dict[str, Any]] = {}
    last: list[dict[str, Any]] = []
    for path in log_paths(exp.path):
        raw = path.read_bytes()
        lines, _ = complete_lines(raw, str(path), warn_torn=False)
        numbers = [i for i, line in enumerate(lines) if line.strip()]
        names = _NAME.findall(b"\n" + raw)
        if len(names) != len(numbers):  # not all lines start with their name: read each
            names = [_name_of(lines[i]) for i in numbers]
        patterns.update(_NUMBER_PART.sub(b"*", b"\n".join(names)).split(b"\n") if names else [])
        wanted = [i for i in numbers if b'"progress/' in lines[i]]
        wanted = sorted(set(wanted) | set(numbers[-LAST_EVENTS:]))
        events = [e for _, e in parse_lines([lines[i] for i in wanted], str(path), wanted)]
        for event in events:
            if event["name"].startswith("progress/"):
                progress[event["name"].removeprefix("progress/")] = event["data"]
        last.extend(events[-LAST_EVENTS:])
    last.sort(key=lambda e: (e["ts"], e["run"]))
    counts = {_text(key): n for key, n in patterns.most_common()}
    return {"total": sum(counts.values()), "patterns": counts}, progress, last[-LAST_EVENTS:]


def _name_of(line: bytes) -> bytes:
    """The name of one event line, as it appears between the quotes of a JSON string."""
    try:
        name = jsonx.loads(line).get("name", "")
    except (ValueError, AttributeError):
        return b""  # a damaged line: dbx verify reports it
    return json.dumps(str(name))[1:-1].encode("utf-8")


def _text(name: bytes) -> str:
    """A name as found in a line (JSON string content) as text."""
    return json.loads(b'"' + name + b'"') if b"\\" in name else name.decode("utf-8", "replace")
