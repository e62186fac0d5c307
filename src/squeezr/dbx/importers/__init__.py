"""``dbx import``: other trackers' runs as dbx experiments, read with those projects' own
libraries (the ``import`` extra: ``mlflow-skinny``, ``tensorboard``).

Each source run becomes one experiment with one run whose events keep the source's step and
time. Its id is derived from the source's identity (MLflow run id, TensorBoard run folder),
and everything is written through the sync layer's crash-safe, id-keyed writes, so importing
the same source again adds only what is new and never duplicates an event.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from squeezr.dbx.sync.local import LocalTransport
from squeezr.dbx.sync.plan import merge_results
from squeezr.dbx.timeutil import now_iso

__all__ = ["Imported", "derived_id", "name_part", "write"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=-]+")


def derived_id(source: str) -> str:
    """A stable experiment id for a source run (12 hex digits of its sha256)."""
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def name_part(text: str) -> str:
    """``text`` as one valid experiment-name part (no ``/``, no leading ``.``, not an id)."""
    part = _UNSAFE.sub("_", text).strip("_") or "run"
    part = "_" + part if part.startswith(".") else part
    return part + "_" if re.fullmatch(r"[0-9a-f]{12}", part) else part


class Imported:
    """One source run, ready to write: meta fields, run record, events, results, files."""

    def __init__(self, source: str, name: str, kind: str, params: dict[str, Any]) -> None:
        self.id = derived_id(source)
        self.name = name
        self.kind = kind
        self.params = params
        self.created: str | None = None
        self.run: dict[str, Any] = {"run": 1, "status": "finished", "imported_from": source}
        self.events: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {}
        self.files: list[tuple[str, Path]] = []

    def event(self, name: str, ts: float, data: dict[str, Any]) -> None:
        self.events.append(
            {"name": name, "id": f"1-{len(self.events) + 1}", "ts": ts, "run": 1, "data": data}
        )


def write(repo: Path | str, runs: Iterable[Imported]) -> list[dict[str, Any]]:
    """Write ``runs`` into repository ``repo`` (created if missing); one summary row each."""
    target = LocalTransport(repo, create=True)
    rows = []
    for item in runs:
        meta = {
            "format": 1,
            "id": item.id,
            "name": item.name,
            "kind": item.kind,
            "created": item.created or now_iso(),
            "params": item.params,
        }
        target.put_experiment(meta)
        added = target.add_events(item.id, 1, item.events)
        target.put_run(item.id, 1, item.run)
        current = target.inventory({"ids": [item.id]})[item.id]
        if merge_results(current["results"], item.results) != current["results"]:
            target.set_results(item.id, merge_results(current["results"], item.results))
        for name, path in item.files:
            data = path.read_bytes()
            info = {
                "path": f"files/{name}",
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "run": 1,
                "added": now_iso(),
            }
            if current["attachments"].get(name, {}).get("sha256") != info["sha256"]:
                target.put_attachment(item.id, name, info, data)
        rows.append(
            {"id": item.id, "name": item.name, "events_added": added, "files": len(item.files)}
        )
    return rows
