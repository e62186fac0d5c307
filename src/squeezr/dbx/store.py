"""The local repository: a folder of experiment folders, read and written as plain files.

Layout (precisely in docs/dbx-format.md)::

    <repo>/.dbx/format.json                 marks the repository
    <repo>/<name path>/<id>/meta.json       id, name, kind, params, created (never rewritten)
                            results.json    mutable results (atomic, locked updates)
                            notes.md        free-text notes
                            run-<N>.json    one per run; run-<N>.patch its uncommitted changes
                            log-<N>.jsonl   the run's events, one JSON object per line
                            attachments.json + files/...   managed attachments

Listing walks the folders with ``os.scandir`` and reads only ``meta.json`` (``results.json``
only when asked), so there is no index to keep consistent.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from squeezr.dbx import jsonx, lifecycle, runinfo
from squeezr.dbx.fileio import FILE_MODE, atomic_write, fsync_dir, locked
from squeezr.dbx.views import Params, Results, check_keys
from squeezr.errors import UserError

__all__ = ["Experiment", "Repository", "create", "open", "resume", "validate_name"]

FORMAT_VERSION = 1
MARKER_DIR = ".dbx"
DEFAULT_REPO = "experiments"
ID_RE = re.compile(r"^[0-9a-f]{12}$")
_KIND_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_RUN_RE = re.compile(r"^(?:run|log)-(\d+)\.(?:json|jsonl|patch)$")
LOCK = ".lock"


def new_id() -> str:
    """A random experiment id: 12 lowercase hex digits (48 bits)."""
    return secrets.token_hex(6)


def validate_name(name: str) -> str:
    """``name`` if it is a valid experiment name, else UserError saying what is wrong."""
    if not isinstance(name, str) or not name:
        raise UserError("an experiment name must be a non-empty string such as 'prune/oracle/4x'")
    if "\\" in name or "\0" in name:
        raise UserError(f"experiment name {name!r} contains a backslash or NUL; use '/' only")
    for segment in name.split("/"):
        if not segment:
            raise UserError(f"experiment name {name!r} has an empty part; remove the extra '/'")
        if segment.startswith("."):
            raise UserError(f"experiment name {name!r}: a part may not start with '.'")
        if ID_RE.match(segment):
            raise UserError(
                f"experiment name {name!r}: part {segment!r} looks like an experiment id "
                "(12 hex digits); rename it"
            )
    return name


def validate_kind(kind: str) -> str:
    """``kind`` if it is one word (letters, digits, ``_``, ``-``), else UserError."""
    if not isinstance(kind, str) or not _KIND_RE.match(kind):
        raise UserError(f"experiment kind {kind!r} must be one word such as train or prune")
    return kind


def _attachment_name(name: str) -> str:
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UserError(
            f"attachment name {name!r} must be a relative path inside files/ without '..'"
        )
    return "/".join(parts)


def _run_number(filename: str) -> int | None:
    match = _RUN_RE.match(filename)
    return int(match.group(1)) if match else None


class Repository:
    """A dbx repository folder. Create with :meth:`init`, locate with :meth:`find`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).absolute()
        if not (self.path / MARKER_DIR).is_dir():
            raise UserError(
                f"{self.path} is not a dbx repository; create one with `dbx init {self.path}`"
            )

    def __repr__(self) -> str:
        return f"Repository({str(self.path)!r})"

    @classmethod
    def init(cls, path: Path | str) -> Repository:
        """Create a repository at ``path`` (parents too); harmless if it already is one."""
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise UserError(f"cannot create a repository at {root}: it is a file")
        marker = root / MARKER_DIR
        marker.mkdir(parents=True, exist_ok=True)
        info = marker / "format.json"
        if not info.exists():
            atomic_write(info, jsonx.dumps({"format": "dbx", "version": FORMAT_VERSION}) + "\n")
        return cls(root)

    @classmethod
    def find(cls, path: Path | str | Repository | None = None) -> Repository:
        """``path`` if given, else ``$DBX_REPO``, else the nearest folder at or above the current
        one that is a repository or holds one named ``experiments``; UserError if none."""
        if isinstance(path, Repository):
            return path
        if path is not None and str(path) != "":
            return cls(path)
        env = os.environ.get("DBX_REPO")
        if env:
            return cls(env)
        here = Path.cwd()
        for folder in (here, *here.parents):
            for candidate in (folder, folder / DEFAULT_REPO):
                if (candidate / MARKER_DIR).is_dir():
                    return cls(candidate)
        raise UserError(
            "no dbx repository here or above; pass --repo/repo=, set $DBX_REPO, "
            "or create one with `dbx init experiments`"
        )

    def _folders(self, prefix: str | None = None) -> Iterator[tuple[str, Path]]:
        """``(name, folder)`` of every experiment folder, by walking names with ``os.scandir``;
        subtrees that cannot hold a name starting with ``prefix`` are not entered."""
        stack = [("", str(self.path))]
        while stack:
            name, folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            subdirs = []
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue
                if name and ID_RE.match(entry.name):
                    yield name, Path(entry.path)
                    continue
                child = f"{name}/{entry.name}" if name else entry.name
                if prefix and not (child.startswith(prefix) or prefix.startswith(child)):
                    continue
                subdirs.append((child, entry.path))
            stack.extend(reversed(subdirs))

    def experiments(
        self, prefix: str | None = None, kind: str | None = None
    ) -> Iterator[Experiment]:
        """Read-only handles of the experiments whose name starts with ``prefix`` and whose
        kind is ``kind``, ordered by name, then id. Folders without ``meta.json`` (a create
        interrupted by a crash) are skipped; ``verify`` reports them."""
        for name, folder in self._folders(prefix):
            if prefix and not name.startswith(prefix):
                continue
            meta_path = folder / "meta.json"
            if not meta_path.exists():
                continue
            exp = Experiment(self, folder)
            if kind is None or exp.kind == kind:
                yield exp

    def get(self, ref: str) -> Experiment:
        """The one experiment ``ref`` names: an id, a unique id prefix, or a name."""
        if not isinstance(ref, str) or not ref:
            raise UserError("give an experiment id, id prefix or name")
        by_name, by_prefix = [], []
        for name, folder in self._folders():
            if not (folder / "meta.json").exists():
                continue
            if folder.name == ref:
                return Experiment(self, folder)
            if name == ref:
                by_name.append(folder)
            elif folder.name.startswith(ref):
                by_prefix.append(folder)
        for found in (by_name, by_prefix):
            if len(found) == 1:
                return Experiment(self, found[0])
            if len(found) > 1:
                ids = ", ".join(sorted(folder.name for folder in found))
                raise UserError(f"{ref!r} matches {len(found)} experiments ({ids}); give an id")
        raise UserError(f"no experiment {ref!r} in {self.path}; list them with `dbx ls`")

    def create_experiment(self, name: str, kind: str, params: dict[str, Any] | None) -> Path:
        """Make the folder and ``meta.json`` of a new experiment; returns the folder."""
        validate_name(name)
        validate_kind(kind)
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise UserError(f"params must be a JSON object (a dict), not {type(params).__name__}")
        check_keys(params, "param")
        try:
            meta_text = jsonx.dumps(
                {
                    "format": FORMAT_VERSION,
                    "id": "",
                    "name": name,
                    "kind": kind,
                    "created": runinfo.now_iso(),
                    "params": params,
                },
                indent=2,
            )
        except TypeError as exc:
            raise UserError(f"params of {name!r} cannot be stored as JSON: {exc}") from None
        meta = jsonx.loads(meta_text)
        while True:
            meta["id"] = new_id()
            folder = self.path.joinpath(*name.split("/"), meta["id"])
            try:
                folder.mkdir(parents=True)
                break
            except FileExistsError:
                continue
        atomic_write(folder / "meta.json", jsonx.dumps(meta, indent=2) + "\n")
        fsync_dir(folder.parent)
        return folder

    def verify(self) -> list[str]:
        """Every problem found: unreadable JSON, torn or corrupt log lines, missing files,
        attachment size/checksum mismatches. An empty list means the repository is sound."""
        from squeezr.dbx.verify import verify_experiment

        problems: list[str] = []
        for _, folder in self._folders():
            problems.extend(verify_experiment(folder))
        return problems


class Experiment:
    """One experiment. From :func:`open` or :meth:`Repository.experiments` it is a read-only
    handle (results, notes and attachments may still be changed; logging needs a run); from
    :func:`create` or :func:`resume` it also owns a run that :meth:`log` writes to."""

    def __init__(self, repo: Repository, folder: Path) -> None:
        self.repo = repo
        self.path = folder
        meta = jsonx.read_json(folder / "meta.json", "experiment metadata")
        if not isinstance(meta, dict) or not {"id", "name", "kind"} <= meta.keys():
            raise UserError(
                f"experiment metadata {folder / 'meta.json'} lacks id/name/kind; repair it"
            )
        self._meta = meta
        self.run: int | None = None
        self._writer: Any = None
        self._record: dict[str, Any] | None = None
        self._results: Results | None = None
        self._params: Params | None = None

    def __repr__(self) -> str:
        return f"<Experiment {self.id} {self.name!r} kind={self.kind}>"

    # --- identity -------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._meta["id"]

    @property
    def name(self) -> str:
        return self._meta["name"]

    @property
    def kind(self) -> str:
        return self._meta["kind"]

    @property
    def created(self) -> datetime | None:
        """Creation time (timezone-aware, UTC)."""
        value = self._meta.get("created")
        return datetime.fromisoformat(value) if isinstance(value, str) else None

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of ``meta.json``."""
        return jsonx.loads(jsonx.dumps(self._meta))

    # --- params, results, notes -----------------------------------------------------------
    @property
    def params(self) -> Params:
        """The immutable params (``params["a.b"]`` or ``params.a.b``)."""
        if self._params is None:
            raw = self._meta.get("params") or {}
            self._params = Params(raw if isinstance(raw, dict) else {})
        return self._params

    @property
    def results(self) -> Results:
        """The live, mutable results; each assignment is an atomic, locked update."""
        if self._results is None:
            self._results = Results(self.path / "results.json", self.path / LOCK)
        return self._results

    def set_result(self, key: str, value: Any) -> None:
        """``results[key] = value``; ``key`` may be a dotted path (``"eval.acc"``)."""
        self.results[key] = value

    @property
    def notes(self) -> str:
        """Free-text notes (``notes.md``); "" when none. Assigning replaces them atomically."""
        try:
            return (self.path / "notes.md").read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    @notes.setter
    def notes(self, text: str) -> None:
        if not isinstance(text, str):
            raise UserError("notes must be text")
        with locked(self.path / LOCK):
            atomic_write(self.path / "notes.md", text)

    # --- attachments ----------------------------------------------------------------------
    @property
    def attachments(self) -> dict[str, dict[str, Any]]:
        """Managed attachments by name: ``{"path", "size", "sha256", "run", "added"}``."""
        path = self.path / "attachments.json"
        if not path.exists():
            return {}
        data = jsonx.read_json(path, "attachment list")
        if not isinstance(data, dict):
            raise UserError(f"attachment list {path} does not hold a JSON object; repair it")
        return data

    @property
    def files(self) -> dict[str, Path]:
        """Managed attachments by name -> absolute path (not verified; see attachment_path)."""
        return {name: self.path / info["path"] for name, info in self.attachments.items()}

    def attach(self, source: Path | str, name: str | None = None) -> dict[str, Any]:
        """Copy ``source`` into ``files/<name>`` (default: its file name) and record its size
        and sha256; returns ``{"path": "files/<name>", "size": n, "sha256": hex}``. Attaching
        under an existing name replaces that attachment."""
        source = Path(source)
        if not source.is_file():
            raise UserError(f"cannot attach {source}: no such file")
        name = _attachment_name(name if name is not None else source.name)
        target = self.path / "files" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        fsync_dir(target.parent)
        info = {"path": f"files/{name}", "size": size, "sha256": digest.hexdigest()}
        entry = {**info, "run": self.run, "added": runinfo.now_iso()}
        with locked(self.path / LOCK):
            manifest = self.attachments
            manifest[name] = entry
            atomic_write(self.path / "attachments.json", jsonx.dumps(manifest, indent=2) + "\n")
        return info

    def attachment_path(self, name: str) -> Path:
        """Path of managed attachment ``name`` after checking its size and sha256."""
        manifest = self.attachments
        key = name.removeprefix("files/")
        if key not in manifest:
            known = ", ".join(sorted(manifest)) or "none"
            raise UserError(
                f"experiment {self.id} ({self.name}) has no attachment {name!r} (it has: {known})"
            )
        info = manifest[key]
        path = self.path / info["path"]
        if not path.is_file():
            raise UserError(f"attachment {path} is missing; run `dbx verify`")
        if path.stat().st_size != info.get("size") or _sha256(path) != info.get("sha256"):
            raise UserError(f"attachment {path} is corrupt (checksum mismatch); re-attach it")
        return path

    # --- runs and log ---------------------------------------------------------------------
    def run_numbers(self) -> list[int]:
        """Numbers of the recorded runs, ascending."""
        numbers = set()
        for entry in os.scandir(self.path):
            number = _run_number(entry.name)
            if (
                number is not None
                and entry.name.startswith("run-")
                and entry.name.endswith(".json")
            ):
                numbers.add(number)
        return sorted(numbers)

    def runs(self) -> list[dict[str, Any]]:
        """The run records (``run-<N>.json``), in run order."""
        return [
            jsonx.read_json(self.path / f"run-{n}.json", "run record") for n in self.run_numbers()
        ]

    def log(self, name: str, data: dict[str, Any] | None = None, /, **fields: Any) -> None:
        """Record event ``name`` with ``data`` (a dict and/or keywords). Returns at once."""
        writer = self._writer
        if writer is None:
            raise UserError(
                f"experiment {self.id} is open read-only or closed; "
                "use dbx.create or dbx.resume to log events"
            )
        if data is None:
            writer.log(name, fields)
        else:
            writer.log(name, {**data, **fields} if fields else dict(data))

    def progress(
        self,
        iterable: Iterable[Any] | None = None,
        desc: str | None = None,
        total: Any = None,
        **kwargs: Any,
    ) -> Any:
        """A tqdm progress bar over ``iterable`` that also logs ``progress/<desc>`` events
        (n, total, rate, elapsed; at most one per second, plus a final one)."""
        from squeezr.dbx.progress import RecordedBar

        return RecordedBar(iterable, self.log, desc=desc, total=total, **kwargs)

    def events(self, prefix: str | None = None) -> list[dict[str, Any]]:
        """All runs' events in time order (``{"name", "id", "ts", "run", "data"}``), only those
        whose name starts with ``prefix`` if given. Flushes this handle's own run first."""
        self.flush()
        events: list[dict[str, Any]] = []
        for entry in os.scandir(self.path):
            if entry.name.startswith("log-") and _run_number(entry.name) is not None:
                for event in jsonx.iter_log(entry.path):
                    if prefix is None or event["name"].startswith(prefix):
                        events.append(event)
        events.sort(key=lambda e: (e.get("ts", 0), e.get("run", 0), _seq(e)))
        return events

    def merged_events(self, prefix: str | None = None) -> dict[str, dict[str, Any]]:
        """Event name -> merged data: union of keys over same-named events, newest wins."""
        merged: dict[str, dict[str, Any]] = {}
        for event in self.events(prefix):
            merged.setdefault(event["name"], {}).update(event.get("data") or {})
        return merged

    def flush(self) -> None:
        """Block until every event logged so far is on disk (written and fsync'd)."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush the log and record the run as finished; further calls do nothing."""
        self._finish("finished", exit_code=0)

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self._finish("finished", exit_code=0)
        elif isinstance(exc, SystemExit):
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            self._finish("finished" if code == 0 else "failed", exit_code=code)
        elif isinstance(exc, KeyboardInterrupt):
            self._finish("interrupted", exit_code=130, exception=exc)
        else:
            self._finish("failed", exit_code=1, exception=exc)

    def _start_run(self) -> None:
        """Claim the next run number (``O_EXCL`` create, so concurrent resumes never share
        one), record how this process was started, and start the log writer."""
        from squeezr.dbx.logger import LogWriter

        with locked(self.path / LOCK):
            number = max(self.run_numbers(), default=0) + 1
            record, patch = runinfo.capture(number)
            if patch:
                atomic_write(self.path / f"run-{number}.patch", patch)
                record["git"]["patch"] = f"run-{number}.patch"
            atomic_write(self.path / f"run-{number}.json", jsonx.dumps(record, indent=2) + "\n")
        self.run = number
        self._record = record
        self._writer = LogWriter(self.path / f"log-{number}.jsonl", number)
        lifecycle.register(self)

    def _finish(
        self, status: str, exit_code: int | None = None, exception: BaseException | None = None
    ) -> None:
        """Flush and close the run's log and write its end, status and exception (once)."""
        writer, record = self._writer, self._record
        if writer is None or record is None:
            return
        self._writer = None
        lifecycle.unregister(self)
        writer.close()
        record.update(end=runinfo.now_iso(), status=status, exit_code=exit_code)
        if exception is not None:
            record["exception"] = runinfo.describe_exception(exception)
        atomic_write(self.path / f"run-{self.run}.json", jsonx.dumps(record, indent=2) + "\n")


def _seq(event: dict[str, Any]) -> int:
    tail = str(event.get("id", "")).rpartition("-")[2]
    return int(tail) if tail.isdigit() else 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _repository(repo: Repository | Path | str | None, create: bool) -> Repository:
    if isinstance(repo, Repository):
        return repo
    if repo is None:
        if not create:
            return Repository.find()
        try:
            return Repository.find()
        except UserError:
            return Repository.init(DEFAULT_REPO)
    if create and not (Path(repo) / MARKER_DIR).is_dir():
        return Repository.init(repo)
    return Repository(repo)


def create(
    name: str,
    kind: str = "train",
    params: dict[str, Any] | None = None,
    repo: Repository | Path | str | None = "./" + DEFAULT_REPO,
) -> Experiment:
    """A new experiment with run 1 started (command line, git state and environment
    recorded). ``repo`` is created if missing; ``None`` means the repository
    :meth:`Repository.find` finds, else ``./experiments``."""
    repository = _repository(repo, create=True)
    exp = Experiment(repository, repository.create_experiment(name, kind, params))
    exp._start_run()
    return exp


def resume(ref: str, repo: Repository | Path | str | None = None) -> Experiment:
    """Experiment ``ref`` (id, id prefix or name) with a new run N+1 for writing."""
    exp = _repository(repo, create=False).get(ref)
    exp._start_run()
    return exp


def open(ref: str, repo: Repository | Path | str | None = None) -> Experiment:
    """A read-only handle of experiment ``ref`` (id, unique id prefix, or name)."""
    return _repository(repo, create=False).get(ref)
