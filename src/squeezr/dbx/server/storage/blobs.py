"""Content-addressed attachment bytes: each file is stored once, under its sha256.

``<root>/ab/cdef...`` holds the bytes whose sha256 is ``abcdef...``. The name is the checksum,
so two experiments attaching the same model share one copy, a name can never point outside
the store (it must be 64 hex digits), and a write is verified before it becomes visible (a
temporary file renamed into place only if its checksum is the one announced).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from squeezr.dbx.errors import NotFound, UserError
from squeezr.dbx.fileio import atomic_path

__all__ = ["Blobs", "check_sha256"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_sha256(digest: str) -> str:
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise UserError(f"{digest!r} is not a sha256 checksum (64 lowercase hex digits)")
    return digest


class Blobs:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        check_sha256(digest)
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"no blob {digest}") from None

    def put(self, digest: str, chunks: Iterable[bytes]) -> int:
        """Store ``chunks`` as blob ``digest``; UserError (nothing stored) if their sha256
        differs. Returns the size. Storing a blob that exists is a no-op after the check."""
        target = self.path(digest)
        target.parent.mkdir(exist_ok=True)
        with atomic_path(target) as tmp:
            size = _write(tmp, chunks, digest)
        return size

    async def put_stream(self, digest: str, chunks: AsyncIterator[bytes]) -> int:
        """:meth:`put` for a request body read asynchronously."""
        target = self.path(digest)
        target.parent.mkdir(exist_ok=True)
        hasher, size = hashlib.sha256(), 0
        with atomic_path(target) as tmp, open(tmp, "wb") as out:
            async for chunk in chunks:
                hasher.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            _check(hasher.hexdigest(), digest)
        return size


def _write(path: Path, chunks: Iterable[bytes], digest: str) -> int:
    hasher, size = hashlib.sha256(), 0
    with open(path, "wb") as out:
        for chunk in chunks:
            hasher.update(chunk)
            out.write(chunk)
            size += len(chunk)
    _check(hasher.hexdigest(), digest)
    return size


def _check(actual: str, announced: str) -> None:
    if actual != announced:
        raise UserError(
            f"the uploaded bytes have sha256 {actual}, not {announced}; upload the file again"
        )
