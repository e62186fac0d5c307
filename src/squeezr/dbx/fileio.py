"""Crash-safe file primitives: atomic replacement and an inter-process lock.

Everything mutable in a repository (results, notes, the attachment manifest) is rewritten as a
whole through :func:`atomic_write`, so a reader sees either the old or the new file, never a
half-written one; read-modify-write cycles run under :func:`locked` so two processes updating
the same experiment never lose each other's changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["FILE_MODE", "atomic_path", "atomic_write", "fsync_dir", "locked", "sha256_file"]

# mkstemp creates files readable by the owner only; repository files get the mode a plain
# open() would give them (0o666 less the umask), so shared and rsynced repositories work.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


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


@contextlib.contextmanager
def atomic_path(path: Path | str, *, durable: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; on success it is renamed over ``path``, on
    error removed. For writers that want a file name (``torch.save``, ONNX export, a download)
    rather than bytes in memory. ``durable`` fsyncs the file and its folder so the new content
    survives a crash; derived files that can be rebuilt (caches) skip that cost."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        try:
            os.fchmod(fd, FILE_MODE)
        finally:
            os.close(fd)
        yield tmp
        if durable:
            with open(tmp, "rb+") as written:
                os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Replace ``path`` by ``data`` atomically and durably (see :func:`atomic_path`)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing) for the block.

    flock locks belong to the open file, so they also serialise threads of one process that
    each enter this context, and the kernel drops them if the holder dies.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
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
