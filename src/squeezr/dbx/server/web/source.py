"""The data-source interface the web UI reads through, so one set of pages serves both
``dbx ui`` (a local repository, :class:`~squeezr.dbx.server.web.local.LocalSource`) and
``dbx serve`` (a database-backed store implementing the same methods).

Everything a page shows comes from these methods; they return plain JSON-ready data (dicts,
lists, strings, numbers) except the log-query ones, which return pandas DataFrames as
``squeezr.dbx.query.run`` does. Failures are :class:`~squeezr.dbx.errors.UserError` and its
kinds (``NotFound`` for an unknown experiment or attachment, ``Ambiguous`` for a reference
that names several): the UI renders their message and HTTP ``status``.

An experiment *summary* is ``{"id", "name", "kind", "created" (ISO text), "status"
(planned / running / done / failed / interrupted), "params" (nested), "results" (nested)}``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

Summary = dict[str, Any]


class Source(ABC):
    """What the web UI needs from an experiment store."""

    @abstractmethod
    def summaries(
        self,
        prefix: str | None = None,
        kind: str | None = None,
        where: str | None = None,
        sort: str | None = None,
    ) -> list[Summary]:
        """The experiments chosen as ``dbx ls`` chooses them (name prefix, kind, a
        where-language condition, sort keys such as ``-results.acc``), as summaries."""

    @abstractmethod
    def experiment(self, ref: str) -> dict[str, Any]:
        """One experiment in full: its summary plus ``runs`` (each with ``run``, ``status``,
        ``start``, ``end``, ``host``, ``user``, ``exit_code``, ``command`` (the ``dbx cmd``
        text), ``git`` (commit, branch, remote, dirty), ``patch`` (text, may be ""),
        ``environment`` (name -> value, secrets already redacted), ``python``),
        ``attachments`` (name -> ``{"size", "sha256", "added", "run"}``), ``notes``
        (Markdown text), ``progress`` (the latest ``progress/<desc>`` event data per desc),
        ``events`` (``{"total": n, "patterns": {name pattern: count}}``, number parts of
        names as ``*``: ``train/epoch/*/eval``) and ``last_events``."""

    @abstractmethod
    def attachment(self, ref: str, name: str) -> Path:
        """The local path of a managed attachment after its size and checksum are checked."""

    @abstractmethod
    def set_notes(self, ref: str, text: str) -> None:
        """Replace an experiment's notes (atomically)."""

    @abstractmethod
    def diff(self, refs: list[str]) -> list[dict[str, Any]]:
        """The params (and results) that differ across two or more experiments, as
        ``squeezr.dbx.compare.diff(..., results=True)`` returns them."""

    @abstractmethod
    def like(self, ref: str, limit: int = 20) -> list[dict[str, Any]]:
        """The experiments with the params closest to ``ref``'s (``squeezr.dbx.compare.like``)."""

    @abstractmethod
    def query(self, text: str, ids: list[str] | None = None, **selection: Any) -> pd.DataFrame:
        """A log query (docs/dbx-query.md) over the experiments ``ids`` (all experiments
        chosen by ``selection``: ``prefix``, ``kind``, ``where``, when ``ids`` is None)."""

    @abstractmethod
    def follow(
        self,
        text: str,
        ids: list[str] | None = None,
        *,
        interval: float = 1.0,
        stop: Callable[[], bool] | None = None,
        **selection: Any,
    ) -> Iterator[pd.DataFrame]:
        """The query as a live listener: batches of new or changed rows, the first one
        being the whole current result (``squeezr.dbx.query.follow``), until ``stop()``."""
