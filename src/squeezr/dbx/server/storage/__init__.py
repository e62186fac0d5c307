"""Server storage: a database (:mod:`.sqlite` or :mod:`.postgres`, one interface in
:mod:`.base`) plus content-addressed attachment bytes (:mod:`.blobs`)."""

from __future__ import annotations

from pathlib import Path

from squeezr.dbx.errors import UserError
from squeezr.dbx.server.settings import Settings
from squeezr.dbx.server.storage.base import Storage
from squeezr.dbx.server.storage.blobs import Blobs

__all__ = ["Blobs", "Storage", "open_blobs", "open_storage"]


def open_storage(settings: Settings) -> Storage:
    """The database ``settings`` names: ``postgresql://...`` or ``sqlite:///path``."""
    url = settings.database_url
    if url.startswith(("postgresql://", "postgres://")):
        from squeezr.dbx.server.storage.postgres import PostgresStorage

        return PostgresStorage(url)
    if url.startswith("sqlite:///"):
        from squeezr.dbx.server.storage.sqlite import SQLiteStorage

        return SQLiteStorage(Path(url.removeprefix("sqlite:///")))
    raise UserError(f"unknown database URL {url!r}; use postgresql://... or sqlite:///PATH")


def open_blobs(settings: Settings) -> Blobs:
    return Blobs(Path(settings.data) / "blobs")
