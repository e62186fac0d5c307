"""Crash-safe file primitives: atomic replacement and an inter-process lock.

Everything mutable in a repository (results, notes, the attachment manifest) is rewritten as a
whole through :func:`atomic_write`, so a reader sees either the old or the new file, never a
half-written one; read-modify-write cycles run under :func:`locked` so two processes updating
the same experiment never lose each other's changes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from squeezr.dbx.errors import UserError

__all__ = [
    "atomic_path",
    "atomic_write",
    "file_matches",
    "fsync_dir",
    "locked",
    "make_dirs",
    "os_error",
    "sha256_file",
]


def os_error(exc: OSError) -> str:
    """An OS error as ``<path>: <problem>`` (``/x/.lock: Read-only file system``), the form
    every one-line error about a file uses."""
    problem = exc.strerror or str(exc)
    return problem if exc.filename is None else f"{exc.filename}: {problem}"


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable (a no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_dirs(path: Path, *, exist_ok: bool = True) -> None:
    """``mkdir -p path``, fsyncing the parent of every folder it creates, so that a power
    loss cannot lose a new experiment's folder after its files were made durable.
    FileExistsError if ``path`` exists and not ``exist_ok``; other OS errors as they are."""
    path = Path(path)
    missing = []
    folder = path
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    if not missing and not exist_ok:
        raise FileExistsError(errno.EEXIST, "File exists", str(path))
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "it is a file", str(folder)) from None
            if folder == path and not exist_ok:
                raise
            continue  # made meanwhile by another process
        fsync_dir(folder.parent)


@contextlib.contextmanager
def atomic_path(path: Path | str, *, durable: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; on success it is renamed over ``path``, on
    error removed. For writers that want a file name (``torch.save``, ONNX export, a download)
    rather than bytes in memory. ``durable`` fsyncs the file and its folder so the new content
    survives a crash; derived files that can be rebuilt (caches) skip that cost."""
    with _atomic(path, durable) as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def _atomic(path: Path | str, durable: bool) -> Iterator[str]:
    """:func:`atomic_path` on plain strings (cheaper: a study plan writes 10,000 files)."""
    folder, name = os.path.split(os.fspath(path))
    tmp = _new_file_beside(folder, name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as written:
                os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(Path(folder or "."))


def _new_file_beside(folder: str, name: str) -> str:
    """A new, empty ``.<name>.<random>.tmp`` in ``folder``.

    Created with mode 0o666 so that the kernel applies the process's umask, as a plain
    ``open()`` would (``mkstemp`` would make it readable by its owner only): shared and
    rsynced repositories stay readable by the group and others the umask allows.
    """
    while True:
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # another writer drew the same name: draw again
            continue
        os.close(fd)
        return tmp


def atomic_write(path: Path | str, data: bytes | str, *, durable: bool = True) -> None:
    """Replace ``path`` by ``data`` atomically, and durably unless ``durable`` is false (see
    :func:`atomic_path`)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with _atomic(path, durable) as tmp, open(tmp, "wb") as out:
        out.write(data)


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing) for the block.

    flock locks belong to the open file, so they also serialise threads of one process that
    each enter this context, and the kernel drops them if the holder dies. The file is
    created with mode 0o666 less the umask (group-writable in a shared repository made under
    umask 002) and opened read-only when it cannot be opened for writing (flock needs no
    write access), so a second user of a shared repository can lock it. A lock that cannot be
    taken at all is a UserError naming the file.
    """
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as first:
        try:
            fd = os.open(lock_path, os.O_RDONLY)
        except OSError:
            raise UserError(
                f"cannot lock {os_error(first)}; check that the repository is writable by you"
            ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks (attachments can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_matches(path: Path, size: int, sha256: str) -> bool:
    """Whether the file at ``path`` has ``size`` bytes and the sha256 hex digest ``sha256``
    (the size first: a truncated copy is caught without reading it)."""
    return path.stat().st_size == size and sha256_file(path) == sha256
