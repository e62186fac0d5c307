"""Where a server keeps its data and how much it accepts: one place for ``dbx serve``,
``dbx token`` and the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_MAX_BODY", "Settings"]

DEFAULT_MAX_BODY = 256 * 1024 * 1024  # bytes per request: attachments are the large ones


@dataclass(frozen=True)
class Settings:
    """``data``: folder for attachment blobs (and the SQLite database when ``database`` is
    None); ``database``: a ``postgresql://`` URL for a shared deployment; ``max_body``: the
    largest request body accepted, in bytes (larger ones get 413)."""

    data: Path
    database: str | None = None
    max_body: int = DEFAULT_MAX_BODY

    @property
    def database_url(self) -> str:
        """The database URL; ``sqlite:///<data>/dbx.sqlite3`` by default."""
        return self.database or f"sqlite:///{Path(self.data).absolute() / 'dbx.sqlite3'}"
