"""PostgreSQL storage, for shared deployments (``--db postgresql://user@host/dbname``)."""

from __future__ import annotations

from typing import Any

from squeezr.dbx.errors import UserError
from squeezr.dbx.server.storage.base import Storage

__all__ = ["PostgresStorage"]


class PostgresStorage(Storage):
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__()

    def _lost(self) -> bool:
        return bool(self._conn.closed or self._conn.broken)

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url, connect_timeout=10)
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreachable"
            raise UserError(
                f"cannot connect to the database {_redacted(self.url)}: {reason}; "
                "check --db and that PostgreSQL is running"
            ) from None


def _redacted(url: str) -> str:
    """``url`` without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":<redacted>@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
