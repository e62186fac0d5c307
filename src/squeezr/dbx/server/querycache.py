"""Log-query tables kept in memory between queries, so a repeated query over a million
events answers in well under a second.

A table is built from the experiment's events as columns (``Storage.log``, read from the
blocks of ``storage/eventcols.py``), so even the first query after a start parses no
event's JSON. Per experiment and name pattern, the extracted
:class:`~squeezr.dbx.query.table.Table` (columnar, far smaller than the events) is kept with
the experiment's *generation*, which the storage bumps whenever events are added to it; a
stale entry is rebuilt from the whole log, so positions stay those of the full log
(``before``/``after`` compare positions across patterns). Generations live in the server process: one ``dbx serve`` process per database,
as ``dbx serve`` runs it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squeezr.dbx.query.engine import Source
from squeezr.dbx.query.pattern import Pattern
from squeezr.dbx.query.table import Table
from squeezr.dbx.server.storage import Storage

__all__ = ["StoredSource", "TableCache"]


class TableCache:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._entries: dict[str, tuple[int, dict[tuple[str, str], Table]]] = {}
        self._lock = threading.Lock()

    def table(self, exp_id: str, pattern: Pattern, mode: str) -> Table:
        generation = self.storage.generation(exp_id)
        key = (pattern.text, mode)
        with self._lock:
            entry = self._entries.get(exp_id)
            if entry is not None and entry[0] == generation and key in entry[1]:
                return entry[1][key]
        table = self.storage.log(exp_id).table(pattern, mode)
        with self._lock:
            entry = self._entries.get(exp_id)
            if entry is None or entry[0] != generation:
                entry = (generation, {})
                self._entries[exp_id] = entry
            entry[1][key] = table
        return table


@dataclass
class StoredSource(Source):
    """An experiment of the server's database as a query source, read through the cache."""

    cache: Any = None

    def table(self, pattern: Pattern, mode: str, cache_dir: Path | None) -> Table:
        return self.cache.table(self.experiment.id, pattern, mode)
