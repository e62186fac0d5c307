"""The web UI's data source over the database of ``dbx serve``.

Experiments are the server's :class:`~squeezr.dbx.server.repository.StorageRepository`
handles, so choosing (``select``), diffing and finding similar experiments (``compare``) run
the code ``dbx ls``/``diff``/``like`` run; log queries go through the server's query path
(:func:`~squeezr.dbx.server.routes.query.stored_query`) and its table cache; attachment bytes
are the server's blobs. The storage is opened in the server's lifespan, so the source reads
it from the server's ``app.state`` when a page asks, not when the app is built.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from squeezr.dbx import compare, jsonx
from squeezr.dbx.errors import NotFound, UserError
from squeezr.dbx.select import select_experiments
from squeezr.dbx.server.repository import StorageRepository
from squeezr.dbx.server.web.source import Source, Summary
from squeezr.dbx.server.web.views import LAST_EVENTS, run_view, summary

# A name part that is a number: ``train/epoch/3/eval`` counts as ``train/epoch/*/eval``.
_NUMBER_PART = re.compile(r"(?:(?<=/)|^)\d+(?=/|$)")


class StorageSource(Source):
    """:class:`Source` over the storage, blobs and query cache on ``state`` (the server's
    ``app.state``)."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return "StorageSource()"

    @property
    def repo(self) -> StorageRepository:
        return StorageRepository(self.state.storage)

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
        exp = self.repo.get(ref)
        records = self.state.storage.runs(exp.id)
        patches = {int(n): r.get("patch_text") or "" for n, r in records.items()}
        events, progress, last = _log_digest(exp.events())
        attachments = {
            name: {key: info.get(key) for key in ("size", "sha256", "added", "run")}
            for name, info in sorted(exp.attachments.items())
        }
        return {
            **summary(exp),
            "path": exp.path,
            "runs": [run_view(exp, r, patches.get(r["run"], "")) for r in exp.runs()],
            "attachments": attachments,
            "notes": exp.notes,
            "progress": progress,
            "events": events,
            "last_events": last,
        }

    def attachment(self, ref: str, name: str) -> Path:
        exp = self.repo.get(ref)
        info = exp.attachments.get(name.removeprefix("files/"))
        if info is None:
            raise NotFound(f"experiment {exp.id} ({exp.name}) has no attachment {name!r}")
        blobs = self.state.blobs
        if not blobs.has(info["sha256"]) or blobs.size(info["sha256"]) != info["size"]:
            raise UserError(
                f"the bytes of attachment {name!r} of {exp.id} are missing or damaged on this "
                "server; upload them again with `dbx sync`"
            )
        return blobs.path(info["sha256"])

    def set_notes(self, ref: str, text: str) -> None:
        storage = self.state.storage
        storage.set_notes(storage.resolve(ref), text)

    def diff(self, refs: list[str]) -> list[dict[str, Any]]:
        repo = self.repo
        return compare.diff([repo.get(ref) for ref in refs], results=True)

    def like(self, ref: str, limit: int = 20) -> list[dict[str, Any]]:
        repo = self.repo
        target = repo.get(ref)
        return compare.like(target, repo.experiments(kind=target.kind))[:limit]

    def query(self, text: str, ids: list[str] | None = None, **selection: Any) -> pd.DataFrame:
        from squeezr.dbx.server.routes.query import stored_query

        repo = self.repo
        if ids is not None:
            handles = [repo.get(ref) for ref in ids]
        else:
            handles = select_experiments(repo, **selection)
        return stored_query(text, handles, self.state.query_cache)

    def follow(
        self,
        text: str,
        ids: list[str] | None = None,
        *,
        interval: float = 1.0,
        stop: Callable[[], bool] | None = None,
        **selection: Any,
    ) -> Iterator[pd.DataFrame]:
        """Re-runs the query every ``interval`` seconds (cheap: the table cache rebuilds
        only experiments with new events) and yields the rows not seen before; the
        first batch is the whole result, later empty batches mean nothing changed."""
        seen: set[str] = set()
        while stop is None or not stop():
            frame = self.query(text, ids, **selection)
            rows = [jsonx.encode(row) for row in frame.astype(object).values.tolist()]
            new = [i for i, row in enumerate(rows) if row not in seen]
            seen.update(rows)
            yield frame.iloc[new]
            deadline = time.monotonic() + interval
            while time.monotonic() < deadline and (stop is None or not stop()):
                time.sleep(min(0.1, interval))


def _log_digest(
    events: list[dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Event counts by name pattern with their total, the latest data of each
    ``progress/<desc>`` event, and the last LAST_EVENTS events (what ``LocalSource`` reads
    from the log files, here from the events the database returns in log order)."""
    patterns = Counter(_NUMBER_PART.sub("*", event["name"]) for event in events)
    progress = {
        event["name"].removeprefix("progress/"): event["data"]
        for event in events
        if event["name"].startswith("progress/")
    }
    counts = dict(patterns.most_common())
    return {"total": len(events), "patterns": counts}, progress, events[-LAST_EVENTS:]
