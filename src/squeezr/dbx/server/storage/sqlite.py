"""SQLite storage: the embedded default (one file, ``<data>/dbx.sqlite3``).

Write-ahead logging lets readers in other processes (a backup, ``sqlite3`` at the shell) see
a consistent database while the server writes; ``synchronous=FULL`` makes an acknowledged
write survive a power loss, which the streaming client relies on (it forgets what the server
acknowledged).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from squeezr.dbx.server.storage.base import Storage

__all__ = ["SQLiteStorage"]


class SQLiteStorage(Storage):
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        super().__init__()

    def _connect(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn
