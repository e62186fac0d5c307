"""The local repository: a folder of experiment folders, read and written as plain files.

Layout (precisely in docs/dbx-format.md)::

    <repo>/.dbx/format.json                 marks the repository
    <repo>/<name path>/<id>/meta.json       id, name, kind, params, created (never rewritten)
                            results.json    mutable results (atomic, locked updates)
                            notes.md        free-text notes
                            run-<N>.json    one per run; run-<N>.patch its uncommitted changes
                            log-<N>.jsonl   the run's events, one JSON object per line
                            attachments.json + files/...   managed attachments

Listing walks the name folders with ``os.scandir`` and reads ``meta.json`` (and
``results.json`` only when a condition or column needs it), so there is no index to keep
consistent with the files; 10,000 experiments list in about a quarter of a second. Runs are
numbered under the experiment's ``.lock`` (see :meth:`Experiment._start_run`).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squeezr.dbx import expr, jsonx, lifecycle, records, runinfo
from squeezr.dbx.errors import DbxWarning, NotFound, UserError
from squeezr.dbx.fileio import (
    atomic_path,
    atomic_write,
    file_matches,
    locked,
    make_dirs,
    os_error,
)
from squeezr.dbx.records import FORMAT_VERSION, ID_RE
from squeezr.dbx.timeutil import now_iso, to_datetime
from squeezr.dbx.views import Params, Results, check_keys

if TYPE_CHECKING:
    from squeezr.dbx.verify import Problems

__all__ = ["Experiment", "Repository", "create", "log_paths", "open", "resume", "validate_name"]

MARKER_DIR = ".dbx"
DEFAULT_REPO = "experiments"
FIELDS = ("id", "name", "kind", "created")  # an experiment's top-level fields
_KIND_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_RUN_FILE = re.compile(r"^run-(\d+)\.json$")
_LOG_FILE = re.compile(r"^log-(\d+)\.jsonl$")
LOCK = ".lock"
NAME_MAX = 255  # bytes in one file name on every common file system
# Re-attaching writes the new content beside the current one, under this folder of files/,
# and switches the record to it (see Experiment.attach); no attachment name may start here.
ALT_DIR = ".dbx-alt"


def check_path_part(part: str, what: str, whole: str) -> None:
    """UserError unless ``part`` can be one file name: UTF-8 encodable (no lone surrogates)
    and at most NAME_MAX bytes. ``what`` and ``whole`` name it in the message."""
    try:
        size = len(part.encode("utf-8"))
    except UnicodeEncodeError:
        raise UserError(
            f"{what} {whole!r} contains characters that are not valid Unicode (surrogates); "
            "use valid UTF-8 text"
        ) from None
    if size > NAME_MAX:
        raise UserError(
            f"{what} {whole[:60]!r}...: part {part[:40]!r}... is {size} bytes; "
            f"each part may be at most {NAME_MAX} bytes (a file-system limit)"
        )


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
        if segment in _VALID_SEGMENTS:
            continue
        check_path_part(segment, "experiment name", name)
        if not segment:
            raise UserError(f"experiment name {name!r} has an empty part; remove the extra '/'")
        if segment.startswith("."):
            raise UserError(f"experiment name {name!r}: a part may not start with '.'")
        if ID_RE.match(segment):
            raise UserError(
                f"experiment name {name!r}: part {segment!r} looks like an experiment id "
                "(12 hex digits); rename it"
            )
        if len(_VALID_SEGMENTS) < 4096:
            _VALID_SEGMENTS.add(segment)
    return name


# Name parts found valid: a study names 10,000 experiments from a few parts ("lr0.1", "s3").
_VALID_SEGMENTS: set[str] = set()


def validate_kind(kind: str) -> str:
    """``kind`` if it is one word (letters, digits, ``_``, ``-``), else UserError."""
    if not isinstance(kind, str) or not _KIND_RE.match(kind):
        raise UserError(f"experiment kind {kind!r} must be one word such as train or prune")
    return kind


def _attachment_name(name: str) -> str:
    if not isinstance(name, str):
        raise UserError(f"an attachment name must be text, not {type(name).__name__}")
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UserError(
            f"attachment name {name!r} must be a relative path inside files/ without '..'"
        )
    if parts[0] == ALT_DIR or "\0" in name:
        raise UserError(f"attachment name {name!r}: {ALT_DIR}/ and NUL are reserved by dbx")
    for part in parts:
        check_path_part(part, "attachment name", name)
    return "/".join(parts)


class Repository:
    """A dbx repository folder. Create with :meth:`init`, locate with :meth:`find`."""

    strict = False  # True: a name shared by several experiments is an error in get()

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).absolute()
        if not (self.path / MARKER_DIR).is_dir():
            raise UserError(
                f"{self.path} is not a dbx repository; create one with `dbx init {self.path}`"
            )
        self._check_version()

    def _check_version(self) -> None:
        """Refuse a repository written by a newer dbx (its files may mean something else); a
        missing or damaged ``format.json`` is left to ``dbx verify`` to report."""
        try:
            info = jsonx.loads((self.path / MARKER_DIR / "format.json").read_bytes())
        except (OSError, ValueError):
            return
        version = records.newer_format(info)
        if version is not None:
            raise UserError(
                f"{self.path} has dbx format version {version}, newer than this dbx reads "
                f"({FORMAT_VERSION}); upgrade squeezr to use it"
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
        info = marker / "format.json"
        try:
            make_dirs(marker)
            if not info.exists():
                text = jsonx.encode({"format": "dbx", "version": FORMAT_VERSION}) + "\n"
                atomic_write(info, text)
        except OSError as exc:
            raise UserError(f"cannot create a repository at {root}: {os_error(exc)}") from None
        return cls(root)

    @classmethod
    def find(cls, path: Path | str | Repository | None = None) -> Repository:
        """``path`` if given, else ``$DBX_REPO``, else the nearest folder at or above the current
        one that is a repository or holds one named ``experiments``; UserError if none. A
        server URL (``http(s)://``) gives a read-only :class:`~squeezr.dbx.remote.repository.
        RemoteRepository`, whose experiments are :class:`Experiment` objects too."""
        if isinstance(path, Repository):
            return path
        if path is not None and str(path) != "":
            return _remote(path) or cls(path)
        env = os.environ.get("DBX_REPO")
        if env:
            return _remote(env) or cls(env)
        here = Path.cwd()
        for folder in (here, *here.parents):
            for candidate in (folder, folder / DEFAULT_REPO):
                if (candidate / MARKER_DIR).is_dir():
                    return cls(candidate)
        raise UserError(
            "no dbx repository here or above; pass --repo/repo=, set $DBX_REPO, "
            "or create one with `dbx init experiments`"
        )

    def _folders(self, prefix: str | None = None) -> Iterator[tuple[str, str]]:
        """``(name, folder)`` of every experiment folder, in name then id order, by walking
        the name folders with ``os.scandir`` (no ``stat``: directory entries carry their
        type); subtrees that cannot hold a name starting with ``prefix`` are not entered.
        Symbolic links are never followed (a link to ``/`` or a loop would walk the file
        system); a folder that cannot be read is skipped with a DbxWarning."""
        stack = [("", str(self.path))]
        while stack:
            name, folder = stack.pop()
            try:
                entries = sorted(
                    [
                        (e.name, e.path)
                        for e in os.scandir(folder)
                        if e.name[0] != "." and e.is_dir(follow_symlinks=False)
                    ]
                )
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:  # unreadable: say so, list the rest
                warnings.warn(f"skipping folder {os_error(exc)}", DbxWarning, stacklevel=3)
                continue
            subdirs = []
            for entry_name, entry_path in entries:
                if name and ID_RE.match(entry_name):
                    yield name, entry_path
                    continue
                child = f"{name}/{entry_name}" if name else entry_name
                if prefix and not (child.startswith(prefix) or prefix.startswith(child)):
                    continue
                subdirs.append((child, entry_path))
            stack.extend(reversed(subdirs))

    def experiments(
        self, prefix: str | None = None, kind: str | None = None
    ) -> Iterator[Experiment]:
        """Read-only handles of the experiments whose name starts with ``prefix`` and whose
        kind is ``kind``, ordered by name, then id. Folders without ``meta.json`` (a create
        interrupted by a crash) are skipped; ``verify`` reports them. A damaged ``meta.json``
        is skipped with a :class:`~squeezr.dbx.errors.DbxWarning` naming it, so one bad file
        never hides the rest (``warnings.simplefilter("error", DbxWarning)`` makes it
        an error, as ``dbx ls --strict`` does)."""
        for name, folder in self._folders(prefix):
            if prefix and not name.startswith(prefix):
                continue
            try:
                meta = _read_meta(folder)
            except UserError as exc:
                warnings.warn(f"skipping an experiment: {exc}", DbxWarning, stacklevel=2)
                continue
            if meta is not None and (kind is None or meta["kind"] == kind):
                yield Experiment(self, folder, meta)

    def get(self, ref: str, *, strict: bool | None = None) -> Experiment:
        """The one experiment ``ref`` names: an id, a unique id prefix, a name (shared by
        several: the newest finished, noted on stderr, or Ambiguous when ``strict``) or
        ``NAME@1`` / ``NAME@latest``; see :mod:`squeezr.dbx.refs`. ``strict=None`` uses
        the repository's :attr:`strict`."""
        from squeezr.dbx.refs import resolve

        return resolve(self, ref, self.strict if strict is None else strict)

    def create_experiment(
        self,
        name: str,
        kind: str,
        params: dict[str, Any] | None,
        extra: dict[str, Any] | None = None,
        durable: bool = True,
    ) -> Path:
        """Make the folder and ``meta.json`` of a new experiment; returns the folder.
        ``extra`` adds fields to ``meta.json`` (a study's planned experiments carry
        ``study``); ``durable=False`` skips the fsyncs, for records that can be rebuilt."""
        validate_name(name)
        validate_kind(kind)
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise UserError(f"params must be a JSON object (a dict), not {type(params).__name__}")
        meta = {"format": FORMAT_VERSION, "id": "", "name": name, "kind": kind}
        meta.update(created=now_iso(), params=params, **(extra or {}))
        while True:  # encoded before the folder exists: bad params leave nothing behind
            meta["id"] = new_id()
            try:
                text = jsonx.encode(meta, indent=2) + "\n"
            except (TypeError, ValueError) as exc:
                raise UserError(f"params of {name!r} cannot be stored as JSON: {exc}") from None
            check_keys(params, "param")  # after encoding: that bounds the nesting
            folder = os.path.join(self.path, *name.split("/"), meta["id"])
            try:
                if durable:  # new name folders and the id folder, each fsynced
                    make_dirs(Path(folder), exist_ok=False)
                else:
                    _make_folder(folder)
                break
            except FileExistsError:  # an id drawn twice (48 random bits): draw again
                continue
            except OSError as exc:
                raise UserError(f"cannot create experiment {name!r}: {os_error(exc)}") from None
        try:
            atomic_write(os.path.join(folder, "meta.json"), text, durable=durable)
        except OSError as exc:
            raise UserError(f"cannot create experiment {name!r}: {os_error(exc)}") from None
        return Path(folder)

    def verify(self) -> Problems:
        """Every problem found: unreadable JSON, torn or corrupt log lines, missing files,
        attachment size/checksum mismatches. An empty list means the repository is sound;
        its ``checked`` says how many experiment folders were checked."""
        from squeezr.dbx.verify import verify_repository

        return verify_repository(self.path, self._folders())

    def repair_logs(self) -> list[str]:
        """Cut crash-torn last lines off every log, keeping backups (``dbx verify
        --repair``); one line per log repaired. See :func:`squeezr.dbx.verify.repair_log`."""
        from squeezr.dbx.verify import repair_log

        done = []
        for _, folder in self._folders():
            for path in log_paths(folder):
                report = repair_log(path)
                if report is not None:
                    done.append(report)
        return done


class Experiment:
    """One experiment. From :func:`open` or :meth:`Repository.experiments` it is a read-only
    handle (results, notes and attachments may still be changed; logging needs a run); from
    :func:`create` or :func:`resume` it also owns a run that :meth:`log` writes to."""

    def __init__(
        self, repo: Repository, folder: Path | str, meta: dict[str, Any] | None = None
    ) -> None:
        self.repo = repo
        self._folder = str(folder)
        self._path: Path | None = None
        if meta is None:
            meta = _read_meta(self._folder)
            if meta is None:
                raise UserError(
                    f"experiment metadata {os.path.join(self._folder, 'meta.json')} is missing; "
                    "run `dbx verify` to check the repository"
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
    def path(self) -> Path:
        """The experiment's folder, ``<repo>/<name path>/<id>``."""
        if self._path is None:
            self._path = Path(self._folder)
        return self._path

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
        """Creation time (timezone-aware, UTC); None if ``meta.json`` holds none readable."""
        return to_datetime(self._meta.get("created"))

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of ``meta.json``."""
        return jsonx.loads(jsonx.encode(self._meta))

    def value(self, path: str) -> Any:
        """The value at a dotted ``path`` of this experiment, or ``expr.MISSING``:
        ``id``, ``name``, ``kind``, ``created`` (ISO text), ``params.<key>...`` and
        ``results.<key>...`` (list items by index: ``results.curve.0``; ``exp.<field>`` is an
        alias of the top-level fields). This is what ``--where``, ``--sort`` and
        ``--columns`` read; it reads ``results.json`` only when asked for a result (a damaged
        ``results.json`` reads as missing, with a DbxWarning).

        Nothing is copied or frozen: ``value("params")`` is the cheapest way to read all
        params (plain nested dicts and lists, shared with this handle, so do not change
        them; ``thaw(exp.value("params"))`` is a copy you may change)."""
        head, _, rest = path.partition(".")
        if head == "exp" and rest in FIELDS:
            head, rest = rest, ""
        if head == "params":
            params = self._meta.get("params")
            return expr.dig(params if params is not None else {}, rest)
        if head == "results":
            try:
                tree = self.results.tree()
            except UserError as exc:  # one damaged file must not stop a listing
                warnings.warn(f"{exc}; its results are left out", DbxWarning, stacklevel=2)
                return expr.MISSING
            return expr.dig(tree, rest)
        if head in FIELDS and not rest:
            return self._meta.get(head, expr.MISSING)
        return expr.MISSING

    # --- params, results, notes -----------------------------------------------------------
    @property
    def params(self) -> Params:
        """The immutable params (``params["a.b"]`` or ``params.a.b``), frozen on first use;
        code that reads many experiments' params whole uses ``value("params")`` instead."""
        if self._params is None:
            self._params = Params(self._meta.get("params") or {})
        return self._params

    @property
    def results(self) -> Results:
        """The live, mutable results; each assignment is an atomic, locked update."""
        if self._results is None:
            folder = self._folder
            self._results = Results(
                os.path.join(folder, "results.json"), os.path.join(folder, LOCK)
            )
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
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read notes {self.path / 'notes.md'}: {exc}") from None

    @notes.setter
    def notes(self, text: str) -> None:
        _check_text(text)
        with locked(self.path / LOCK):
            atomic_write(self.path / "notes.md", text)

    def append_notes(self, text: str) -> None:
        """Add ``text`` to the notes as a new paragraph (after a blank line). The read and
        the write are one locked update, so concurrent appends all survive."""
        _check_text(text)
        with locked(self.path / LOCK):
            notes = self.notes
            joined = f"{notes.rstrip()}\n\n{text}" if notes.strip() else text
            atomic_write(self.path / "notes.md", joined)

    # --- attachments ----------------------------------------------------------------------
    @property
    def attachments(self) -> dict[str, dict[str, Any]]:
        """Managed attachments by name: ``{"path", "size", "sha256", "run", "added"}``."""
        path = self.path / "attachments.json"
        if not path.exists():
            return {}
        manifest = jsonx.read_json(path, "attachment list")
        records.require(records.attachment_problems(manifest), path, "attachment list")
        return manifest

    @property
    def files(self) -> dict[str, Path]:
        """Managed attachments by name -> absolute path (not verified; see attachment_path)."""
        return {name: self.path / info["path"] for name, info in self.attachments.items()}

    def attach(self, source: Path | str, name: str | None = None) -> dict[str, Any]:
        """Copy ``source`` into ``files/<name>`` (default: its file name) and record its size
        and sha256; returns ``{"path": "files/<name>", "size": n, "sha256": hex}``. The copy
        keeps the source's permission bits (a 0600 file stays private). Attaching under an
        existing name replaces that attachment.

        Crash-safe: the new content is written and fsynced at a path the record does not
        name (the other of two slots, ``files/<name>`` and ``files/.dbx-alt/<name>``), then
        ``attachments.json`` is switched to it atomically, then the old copy is removed. A
        crash at any point leaves the old attachment intact or the new one complete. All of
        it happens under the experiment's lock, so two processes attaching under one name
        never leave the checksum of one beside the file of the other (other writers of this
        experiment wait for the copy: attach large files at the end of a run, not in its
        hot loop).
        """
        source = Path(source)
        if source.is_dir():
            raise UserError(f"cannot attach {source}: it is a folder; attach its files one by one")
        if not source.is_file():
            raise UserError(f"cannot attach {source}: no such file")
        name = _attachment_name(name if name is not None else source.name)
        try:
            with locked(self.path / LOCK):
                manifest = self.attachments
                current = manifest.get(name, {}).get("path")
                slot = f"files/{name}"
                if current == slot:
                    slot = f"files/{ALT_DIR}/{name}"
                target = self.path / slot
                make_dirs(target.parent)
                with atomic_path(target) as tmp:
                    size, digest = _copy(source, tmp)
                info = {"path": slot, "size": size, "sha256": digest}
                manifest[name] = {**info, "run": self.run, "added": now_iso()}
                text = jsonx.encode(manifest, indent=2) + "\n"
                atomic_write(self.path / "attachments.json", text)
                if current and current != slot:
                    (self.path / current).unlink(missing_ok=True)
        except OSError as exc:
            raise UserError(f"cannot attach {source} to {self.path}: {os_error(exc)}") from None
        return info

    def attachment_path(self, name: str) -> Path:
        """Path of managed attachment ``name`` (exactly as attached) after checking its
        size and sha256."""
        manifest = self.attachments
        if name not in manifest:
            known = ", ".join(sorted(manifest)) or "none"
            raise NotFound(
                f"experiment {self.id} ({self.name}) has no attachment {name!r} (it has: {known})"
            )
        info = manifest[name]
        path = self.path / info["path"]
        if not path.is_file():
            raise UserError(f"attachment {path} is missing; run `dbx verify`")
        if not file_matches(path, info["size"], info["sha256"]):
            raise UserError(f"attachment {path} is corrupt (checksum mismatch); re-attach it")
        return path

    # --- runs and log ---------------------------------------------------------------------
    def run_numbers(self) -> list[int]:
        """Numbers of the recorded runs (``run-<N>.json``), ascending."""
        return sorted(_numbered(self._folder, _RUN_FILE))

    def run_record(self, number: int) -> dict[str, Any]:
        """The record of run ``number`` (``run-<N>.json``); UserError if absent or damaged."""
        path = os.path.join(self._folder, f"run-{number}.json")  # str: read per experiment
        record = jsonx.read_json(path, "run record")
        records.require(records.run_problems(record), path, "run record")
        record.setdefault("run", number)
        return record

    def runs(self) -> list[dict[str, Any]]:
        """The run records (``run-<N>.json``), in run order."""
        return [self.run_record(number) for number in self.run_numbers()]

    def log(self, name: str, data: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        """Record event ``name`` with ``data`` (a dict and/or keywords). Returns at once."""
        writer = self._writer
        if writer is None:
            raise UserError(
                f"experiment {self.id} is open read-only or closed; "
                "use dbx.create or dbx.resume to log events"
            )
        if type(name) is not str or not name:
            raise UserError(
                f"an event name must be a non-empty string such as 'eval', not {name!r}"
            )
        if data is None:
            writer.log(name, fields)
        elif type(data) is dict or isinstance(data, Mapping):
            writer.log(name, {**data, **fields} if fields else dict(data))
        else:
            raise UserError(
                f"event {name!r}: data must be a dict (or keywords), not {type(data).__name__}"
            )

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
        for path in log_paths(self._folder):
            for event in jsonx.iter_log(path):
                if prefix is None or event["name"].startswith(prefix):
                    events.append(event)
        # Stable: the logs are read in run order and each log is in logging order, so events
        # with the same time and run stay in the order they were logged.
        events.sort(key=lambda e: (e["ts"], e["run"]))
        return events

    def last_events(self, count: int) -> tuple[list[dict[str, Any]], int]:
        """The last ``count`` events in time order and how many events the logs hold, read
        from the end of each log: the cost does not grow with the logs' size (``dbx show``).
        Each log is in time order, so the newest ``count`` overall are among the newest
        ``count`` of each; the total is the sum of each log's last sequence number (event
        ids are ``<run>-<seq>``, ``seq`` counting from 1)."""
        self.flush()
        events: list[dict[str, Any]] = []
        total = 0
        for path in log_paths(self._folder):
            tail = jsonx.tail_log(path, max(count, 1))
            if tail:
                total += _sequence(tail[-1], path)
            events.extend(tail)
        events.sort(key=lambda e: (e["ts"], e["run"]))
        return (events[-count:] if count else []), total

    def merged_events(self, prefix: str | None = None) -> dict[str, dict[str, Any]]:
        """Event name -> merged data: union of keys over same-named events, newest wins."""
        merged: dict[str, dict[str, Any]] = {}
        for event in self.events(prefix):
            merged.setdefault(event["name"], {}).update(event["data"])
        return merged

    def flush(self) -> None:
        """Block until every event logged so far is on disk (written and fsync'd); a
        UserError naming the log file if it cannot be written (the events stay queued)."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush the log and record the run as finished; further calls do nothing."""
        self._finish(*lifecycle.exit_status(None))

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        status, code = lifecycle.exit_status(exc)
        if exc is None:
            self._finish(status, exit_code=code)
            return
        recorded = None if isinstance(exc, SystemExit) else exc
        try:
            self._finish(status, exit_code=code, exception=recorded)
        except UserError as failure:  # keep the program's own exception the one that shows
            print(f"dbx: warning: {failure}", file=sys.stderr)

    def _start_run(self) -> None:
        """Record how this process was started as the next run and start its log writer.

        The git state is captured first, without the lock (it can take seconds in a large
        tree); then, under the experiment's lock, the run number is the highest recorded
        one plus one and ``run-<N>.json`` is written before the lock is released, so
        concurrent resumes never share a number.
        """
        from squeezr.dbx.logger import LogWriter

        record, patch = runinfo.capture()
        with locked(self.path / LOCK):
            number = max(self.run_numbers(), default=0) + 1
            record["run"] = number
            if patch:
                atomic_write(self.path / f"run-{number}.patch", patch)
                record["git"]["patch"] = f"run-{number}.patch"
            atomic_write(self.path / f"run-{number}.json", jsonx.encode(record, indent=2) + "\n")
        self.run = number
        self._record = record
        self._writer = LogWriter(self.path / f"log-{number}.jsonl", number)
        lifecycle.register(self)

    def _finish(
        self, status: str, exit_code: int | None = None, exception: BaseException | None = None
    ) -> None:
        """Flush and close the run's log and write its end, status and exception (once).

        The run record is written even when the log cannot be (a full disk); the log's
        UserError is raised afterwards. In a forked child (leaving the parent's ``with``
        block, a worker's exit) nothing is written: the run is the parent's to end.
        """
        writer, record = self._writer, self._record
        if writer is None or record is None:
            return
        self._writer = None
        lifecycle.unregister(self)
        if not writer.owned:
            writer.close()
            return
        failure: UserError | None = None
        try:
            writer.close()
        except UserError as exc:
            failure = exc
        record.update(end=now_iso(), status=status, exit_code=exit_code)
        if exception is not None:
            record["exception"] = runinfo.describe_exception(exception)
        try:
            atomic_write(self.path / f"run-{self.run}.json", jsonx.encode(record, indent=2) + "\n")
        except OSError as exc:
            failure = failure or UserError(
                f"cannot record the end of run {self.run} in {self.path}: {exc.strerror or exc}"
            )
        shipper = getattr(self, "_shipper", None)
        if shipper is not None:  # streaming to a server: a last, bounded delivery
            self._shipper = None
            shipper.close()
        if failure is not None:
            raise failure


def _check_text(text: Any) -> None:
    if not isinstance(text, str):
        raise UserError("notes must be text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UserError(
            f"notes contain characters that are not valid Unicode (surrogates, at position "
            f"{exc.start}); use valid UTF-8 text"
        ) from None


def _copy(source: Path, target: Path) -> tuple[int, str]:
    """Copy ``source`` to ``target`` with its permission bits; its size and sha256, computed
    while copying (the source is read once)."""
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as src, target.open("wb") as out:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    shutil.copymode(source, target)
    return size, digest.hexdigest()


def _make_folder(folder: str) -> None:
    """``mkdir -p`` without fsync, FileExistsError if ``folder`` exists; one system call when
    its parent exists (a study plans thousands of experiments in a row)."""
    try:
        os.mkdir(folder)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        os.mkdir(folder)


def _read_meta(folder: str) -> dict[str, Any] | None:
    """The checked ``meta.json`` of an experiment folder; None if it has none (a create that
    a crash interrupted: ``dbx verify`` reports it)."""
    path = os.path.join(folder, "meta.json")
    try:
        meta = jsonx.read_json(path, "experiment metadata")
    except jsonx.FileError as exc:
        if exc.missing:
            return None
        raise
    records.require(records.meta_problems(meta), path, "experiment metadata")
    return meta


def _sequence(event: dict[str, Any], path: Path) -> int:
    """The sequence number of ``event`` (its id ``<run>-<seq>``); the log's line count for an
    id of another form (a hand-made log)."""
    _, _, seq = event["id"].rpartition("-")
    if seq.isdigit() and len(seq) < 19:
        return int(seq)
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def log_paths(folder: str | os.PathLike[str]) -> list[Path]:
    """An experiment folder's logs in run order (``log-1.jsonl`` ... ``log-10.jsonl``); files
    that only look like logs (``log-1.bak.jsonl``) are not logs."""
    folder = os.fspath(folder)
    return [Path(folder, f"log-{n}.jsonl") for n in sorted(_numbered(folder, _LOG_FILE))]


def _numbered(folder: str, pattern: re.Pattern[str]) -> list[int]:
    """The numbers N of the files in ``folder`` whose names match ``pattern`` (``run-N.json``)."""
    numbers = []
    for entry in os.scandir(folder):
        match = pattern.match(entry.name)
        if match:
            numbers.append(int(match.group(1)))
    return numbers


def _remote(where: Any) -> Any:
    """A RemoteRepository if ``where`` is a server URL, else None."""
    if isinstance(where, str) and where.startswith(("http://", "https://")):
        from squeezr.dbx.remote.repository import RemoteRepository

        return RemoteRepository(where)
    return None


def _repository(repo: Repository | Path | str | None, create: bool) -> Repository:
    if isinstance(repo, Repository):
        return repo
    remote = _remote(repo)
    if remote is not None:
        return remote
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
    repo: Repository | Path | str | None = None,
    server: str | None = None,
) -> Experiment:
    """A new experiment with run 1 started (command line, git state and environment
    recorded). ``repo`` is created if missing. Without it, the experiment goes where
    :func:`open`, :func:`resume` and ``dbx ls`` look (``$DBX_REPO``, else the nearest
    enclosing repository, see :meth:`Repository.find`); if there is none, a new
    ``./experiments`` is created. Under a study's runner (``$DBX_EXPERIMENT`` set) the
    planned experiment is used instead of a new one (:mod:`squeezr.dbx.adopt`). ``server``
    (else ``$DBX_SERVER``), a dbx server URL, also streams the experiment there in the
    background (:mod:`squeezr.dbx.remote.shipper`)."""
    repository = _repository(repo, create=True)
    from squeezr.dbx.adopt import adopt_planned  # $DBX_EXPERIMENT: a study's runner started us

    exp = adopt_planned(repository, kind, params)
    if exp is None:
        exp = Experiment(repository, repository.create_experiment(name, kind, params))
    exp._start_run()
    _stream(exp, server)
    return exp


def resume(
    ref: str,
    repo: Repository | Path | str | None = None,
    server: str | None = None,
    *,
    strict: bool | None = None,
) -> Experiment:
    """Experiment ``ref`` (id, id prefix, name or ``NAME@N``, resolved as
    :meth:`Repository.get` does) with a new run N+1 for writing; ``server`` as in
    :func:`create`."""
    exp = _repository(repo, create=False).get(ref, strict=strict)
    exp._start_run()
    _stream(exp, server)
    return exp


def _stream(exp: Experiment, server: str | None) -> None:
    """Start streaming ``exp`` to ``server`` or ``$DBX_SERVER``, if either is set."""
    if server is not None or os.environ.get("DBX_SERVER"):
        from squeezr.dbx.remote.shipper import start

        exp._shipper = start(exp, server)


def open(
    ref: str, repo: Repository | Path | str | None = None, *, strict: bool | None = None
) -> Experiment:
    """A read-only handle of experiment ``ref``: an id, a unique id prefix, a name (shared by
    several: the newest finished one, noted on stderr; ``strict=True`` refuses instead) or
    ``NAME@1`` / ``NAME@latest`` (:mod:`squeezr.dbx.refs`)."""
    return _repository(repo, create=False).get(ref, strict=strict)
