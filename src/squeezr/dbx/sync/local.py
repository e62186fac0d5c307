"""A repository folder as a sync endpoint: its inventory, and crash-safe writes into it.

Every write is atomic or append-only and safe to repeat: meta, run records, results, notes
and attachment lists are replaced atomically (the last three under the experiment's lock,
as the store writes them); events are appended after cutting a torn last line that an
interrupted sync left, and only those whose ids the log lacks; attachment bytes are written
to a temporary file, checked against their sha256 and renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from squeezr.dbx import jsonx
from squeezr.dbx.errors import UserError
from squeezr.dbx.fileio import atomic_path, atomic_write, fsync_dir, locked
from squeezr.dbx.records import ID_RE
from squeezr.dbx.select import select_experiments
from squeezr.dbx.store import (
    LOCK,
    Experiment,
    Repository,
    _attachment_name,
    log_paths,
    validate_name,
)

__all__ = ["PATCH_KEY", "LocalTransport", "with_patch"]

PATCH_KEY = "patch_text"  # a run's uncommitted changes, inside its record off the disk

_SEQ = re.compile(rb'"id":\s*"(\d+)-(\d+)"')


class LocalTransport:
    def __init__(self, path: Path | str, create: bool = False, missing_ok: bool = False) -> None:
        missing = missing_ok and not create and not Path(path).exists()  # dry run to a new one
        self.repo = None if missing else Repository.init(path) if create else Repository(path)
        self.label = str(Path(path).absolute())
        self._folders: dict[str, Path] = {}

    def inventory(self, selection: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        if self.repo is None:
            return {}
        chosen: list[Experiment]
        if selection and selection.get("ids") is not None:
            wanted = set(selection["ids"])
            chosen = [e for e in self.repo.experiments() if e.id in wanted]
        else:
            chosen = select_experiments(self.repo, **(selection or {}))
        found = {}
        for exp in chosen:
            self._folders[exp.id] = exp.path
            found[exp.id] = {
                "meta": exp.meta,
                "results": exp.results.tree(),
                "notes": exp.notes,
                "runs": {str(r["run"]): with_patch(exp.path, r) for r in exp.runs()},
                "logs": {str(n): list(size) for n, size in _log_sizes(exp.path).items()},
                "attachments": exp.attachments,
            }
        return found

    def folder(self, exp_id: str) -> Path:
        if exp_id not in self._folders:
            exp = self.repo.get(exp_id)
            self._folders[exp_id] = exp.path
        return self._folders[exp_id]

    # --- reading --------------------------------------------------------------------------
    def events(self, exp_id: str, run: int) -> list[dict[str, Any]]:
        path = self.folder(exp_id) / f"log-{run}.jsonl"
        return list(jsonx.iter_log(path)) if path.exists() else []

    def read_events(self, wanted: list[tuple[str, int]]) -> dict[tuple[str, int], list[Any]]:
        return {(exp_id, run): self.events(exp_id, run) for exp_id, run in wanted}

    def blob(self, exp_id: str, name: str, info: dict[str, Any]) -> bytes:
        return (self.folder(exp_id) / info["path"]).read_bytes()

    def write(self, bundles: list[dict[str, Any]], blob: Callable[..., bytes]) -> None:
        """Each bundle (see ``Storage.apply``) experiment by experiment, its parts in plan
        order: created, attachments, events, run records (a run shows as ended only once its
        log is complete), results, notes."""
        for bundle in bundles:
            exp_id = bundle["id"]
            if "meta" in bundle:
                self.put_experiment(bundle["meta"])
            for name, info in (bundle.get("attachments") or {}).items():
                self.put_attachment(exp_id, name, info, blob(exp_id, name, info))
            runs: dict[int, list[dict[str, Any]]] = {}
            for event in bundle.get("events", []):
                runs.setdefault(event["run"], []).append(event)
            for run, events in runs.items():
                self.add_events(exp_id, run, events)
            for number, record in (bundle.get("runs") or {}).items():
                self.put_run(exp_id, int(number), record)
            if "results" in bundle:
                self.set_results(exp_id, bundle["results"])
            if "notes" in bundle:
                self.set_notes(exp_id, bundle["notes"])

    # --- writing --------------------------------------------------------------------------
    def put_experiment(self, meta: dict[str, Any]) -> None:
        exp_id = meta["id"]
        if not ID_RE.match(exp_id):
            raise UserError(f"{exp_id!r} is not an experiment id")
        folder = self.repo.path.joinpath(*validate_name(meta["name"]).split("/"), exp_id)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "meta.json").exists():
            atomic_write(folder / "meta.json", jsonx.encode(meta, indent=2) + "\n")
            fsync_dir(folder.parent)
        self._folders[exp_id] = folder

    def put_run(self, exp_id: str, run: int, record: dict[str, Any]) -> None:
        folder = self.folder(exp_id)
        record = dict(record)
        patch = record.pop(PATCH_KEY, None)
        with locked(folder / LOCK):
            if patch is not None:
                atomic_write(folder / f"run-{run}.patch", patch.encode("utf-8", "surrogateescape"))
            atomic_write(folder / f"run-{run}.json", jsonx.encode(record, indent=2) + "\n")

    def add_events(self, exp_id: str, run: int, events: list[dict[str, Any]]) -> int:
        path = self.folder(exp_id) / f"log-{run}.jsonl"
        with locked(self.folder(exp_id) / LOCK):
            _cut_torn_tail(path)
            have = {e["id"] for e in jsonx.iter_log(path)} if path.exists() else set()
            new = [e for e in events if e["id"] not in have]
            if new:
                data = "".join(jsonx.encode(e) + "\n" for e in new).encode()
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        return len(new)

    def set_results(self, exp_id: str, results: dict[str, Any]) -> None:
        folder = self.folder(exp_id)
        with locked(folder / LOCK):
            atomic_write(folder / "results.json", jsonx.encode(results, indent=2) + "\n")

    def set_notes(self, exp_id: str, notes: str) -> None:
        folder = self.folder(exp_id)
        with locked(folder / LOCK):
            atomic_write(folder / "notes.md", notes)

    def put_attachment(self, exp_id: str, name: str, info: dict[str, Any], data: bytes) -> None:
        folder = self.folder(exp_id)
        name = _attachment_name(name)
        if hashlib.sha256(data).hexdigest() != info["sha256"] or len(data) != info["size"]:
            raise UserError(f"attachment {name!r} of {exp_id} arrived damaged (checksum); retry")
        target = folder / "files" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with locked(folder / LOCK):
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
            manifest_path = folder / "attachments.json"
            manifest = (
                jsonx.read_json(manifest_path, "attachment list") if manifest_path.exists() else {}
            )
            manifest[name] = {**info, "path": f"files/{name}"}
            atomic_write(manifest_path, jsonx.encode(manifest, indent=2) + "\n")


def with_patch(folder: Path, record: dict[str, Any]) -> dict[str, Any]:
    """A run record with its ``run-<N>.patch`` inside (``patch_text``), as servers keep it;
    the patch is byte-exact (undecodable bytes survive as surrogate escapes)."""
    name = (record.get("git") or {}).get("patch")
    if not name:
        return record
    try:
        text = (Path(folder) / name).read_bytes().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return record
    return {**record, PATCH_KEY: text}


def _log_sizes(folder: Path) -> dict[int, tuple[int, int]]:
    """Per run: (complete event lines, highest seq), read from the raw bytes."""
    sizes = {}
    for path in log_paths(folder):
        raw = path.read_bytes()
        raw = raw[: raw.rfind(b"\n") + 1]
        seqs = [int(m.group(2)) for m in _SEQ.finditer(raw)]
        sizes[int(path.name[4:-6])] = (len(seqs), max(seqs, default=0))
    return sizes


def _cut_torn_tail(path: Path) -> None:
    """Remove an incomplete last line (an append that a kill interrupted)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    if raw and not raw.endswith(b"\n"):
        with open(path, "r+b") as log:
            log.truncate(raw.rfind(b"\n") + 1)
            os.fsync(log.fileno())
