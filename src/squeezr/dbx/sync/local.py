"""A repository folder as a sync endpoint: its inventory, and crash-safe writes into it.

Every write is atomic or append-only and safe to repeat: meta, run records, results, notes
and attachment lists are replaced atomically (the last three under the experiment's lock,
as the store writes them); events are appended after cutting a torn last line that an
interrupted sync left, and only those whose ids the log lacks; attachment bytes are written
to a temporary file, checked against their sha256 and renamed into place.

A sync writes many experiments at a time (:meth:`LocalTransport.write`), and an fsync per
file (four or five per experiment) cost far more than the writing itself. Within one
``write`` the new files are therefore written beside their targets without fsync, the
file system is flushed once (``syncfs``), the files are renamed into place, and the file
system is flushed again: after a crash each file is whole, old or new, as with one fsync
per file. Where ``syncfs`` is missing (not Linux) every write is made durable by itself.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from squeezr.dbx import jsonx
from squeezr.dbx.errors import UserError
from squeezr.dbx.fileio import atomic_write, fsync_dir, locked
from squeezr.dbx.records import ID_RE, event_problem
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
        # inside write(): (temporary, target, experiment folder) to rename at the end, and
        # the bytes each target will hold (what a later write in the batch reads)
        self._staged: list[tuple[Path, Path, Path]] | None = None
        self._pending: dict[Path, bytes] = {}

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
        return _read_log(path) if path.exists() else []

    def read_events(self, wanted: list[tuple[str, int]]) -> dict[tuple[str, int], list[Any]]:
        return {(exp_id, run): self.events(exp_id, run) for exp_id, run in wanted}

    def blob(self, exp_id: str, name: str, info: dict[str, Any]) -> bytes:
        return (self.folder(exp_id) / info["path"]).read_bytes()

    def write(self, bundles: list[dict[str, Any]], blob: Callable[..., bytes]) -> None:
        """Each bundle (see ``Storage.apply``) experiment by experiment, its parts in plan
        order: created, attachments, events, run records (a run shows as ended only once its
        log is complete), results, notes; made durable together (see the module)."""
        self._staged = [] if _syncfs is not None else None
        try:
            for bundle in bundles:
                self._write(bundle, blob)
            self._commit()
        finally:
            for tmp, _, _ in self._staged or []:
                tmp.unlink(missing_ok=True)
            self._staged, self._pending = None, {}

    def _write(self, bundle: dict[str, Any], blob: Callable[..., bytes]) -> None:
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

    def _replace(self, folder: Path, path: Path, data: bytes | str) -> None:
        """Replace ``path`` (in experiment ``folder``) by ``data``: atomically and durably
        at once, or inside ``write`` staged beside it until :meth:`_commit`."""
        if self._staged is None:
            atomic_write(path, data)
            return
        data = data.encode("utf-8") if isinstance(data, str) else data
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_bytes(data)
        self._staged.append((tmp, path, folder))
        self._pending[path] = data

    def _commit(self) -> None:
        """Flush the staged files and appended lines, rename the files into place (under
        each experiment's lock), flush again."""
        staged = self._staged
        if not staged or _syncfs is None:
            return
        _syncfs(self.repo.path)
        while staged:
            folder = staged[0][2]
            with locked(folder / LOCK):
                while staged and staged[0][2] == folder:
                    tmp, path, _ = staged.pop(0)
                    os.replace(tmp, path)
        _syncfs(self.repo.path)

    # --- writing --------------------------------------------------------------------------
    def put_experiment(self, meta: dict[str, Any]) -> None:
        exp_id = meta["id"]
        if not ID_RE.match(exp_id):
            raise UserError(f"{exp_id!r} is not an experiment id")
        folder = self.repo.path.joinpath(*validate_name(meta["name"]).split("/"), exp_id)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "meta.json").exists():
            self._replace(folder, folder / "meta.json", jsonx.encode(meta, indent=2) + "\n")
            if self._staged is None:
                fsync_dir(folder.parent)
        self._folders[exp_id] = folder

    def put_run(self, exp_id: str, run: int, record: dict[str, Any]) -> None:
        folder = self.folder(exp_id)
        record = dict(record)
        patch = record.pop(PATCH_KEY, None)
        with locked(folder / LOCK):
            if patch is not None:
                patch_bytes = patch.encode("utf-8", "surrogateescape")
                self._replace(folder, folder / f"run-{run}.patch", patch_bytes)
            self._replace(folder, folder / f"run-{run}.json", jsonx.encode(record, indent=2) + "\n")

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
                    if self._staged is None:  # else made durable by write()'s flush
                        os.fsync(fd)
                finally:
                    os.close(fd)
        return len(new)

    def set_results(self, exp_id: str, results: dict[str, Any]) -> None:
        folder = self.folder(exp_id)
        with locked(folder / LOCK):
            self._replace(folder, folder / "results.json", jsonx.encode(results, indent=2) + "\n")

    def set_notes(self, exp_id: str, notes: str) -> None:
        folder = self.folder(exp_id)
        with locked(folder / LOCK):
            self._replace(folder, folder / "notes.md", notes)

    def put_attachment(self, exp_id: str, name: str, info: dict[str, Any], data: bytes) -> None:
        folder = self.folder(exp_id)
        name = _attachment_name(name)
        if hashlib.sha256(data).hexdigest() != info["sha256"] or len(data) != info["size"]:
            raise UserError(f"attachment {name!r} of {exp_id} arrived damaged (checksum); retry")
        target = folder / "files" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with locked(folder / LOCK):
            self._replace(folder, target, data)
            manifest_path = folder / "attachments.json"
            if manifest_path in self._pending:  # staged earlier in this write
                manifest = jsonx.loads(self._pending[manifest_path])
            elif manifest_path.exists():
                manifest = jsonx.read_json(manifest_path, "attachment list")
            else:
                manifest = {}
            manifest[name] = {**info, "path": f"files/{name}"}
            self._replace(folder, manifest_path, jsonx.encode(manifest, indent=2) + "\n")


def _find_syncfs() -> Callable[[Path], None] | None:
    """A function that flushes the file system holding a path: ``syncfs`` on Linux, None
    where there is none (each write is then made durable by itself)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.syncfs
    except (AttributeError, OSError):
        return None

    def flush(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if call(fd) != 0:
                error = ctypes.get_errno()
                raise OSError(error, os.strerror(error), str(path))
        finally:
            os.close(fd)

    return flush


_syncfs = _find_syncfs()


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


def _read_log(path: Path) -> list[dict[str, Any]]:
    """The events of a log, as ``jsonx.iter_log`` reads them; a log of whole lines that are
    all good events (the usual case) is parsed as one array (``jsonx.loads_bulk``)."""
    raw = path.read_bytes()
    if raw.endswith(b"\n"):
        lines = [line for line in raw.split(b"\n") if line.strip()]
        try:
            events = jsonx.loads_bulk(b"[" + b",".join(lines) + b"]")
        except ValueError:
            events = None
        # lines that join into valid JSON may still not be one event each: check
        good = events is not None and len(events) == len(lines)
        if good and not any(map(event_problem, events)):
            return events
    return list(jsonx.iter_log(path))  # a torn or damaged line: its warning or error


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
