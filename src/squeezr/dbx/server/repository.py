"""The server's database seen as a repository, so ``select`` (where, since, sort) and log
queries run server-side with exactly the code ``dbx ls`` and ``dbx query`` run locally."""

from __future__ import annotations

from typing import Any

from squeezr.dbx.remote.experiment import DetachedExperiment
from squeezr.dbx.server.storage import Storage

__all__ = ["StorageRepository"]


class StorageRepository:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.path = None  # no folder: log queries skip their file cache

    def experiments(
        self, prefix: str | None = None, kind: str | None = None
    ) -> list[DetachedExperiment]:
        return [self._handle(r) for r in self.storage.experiments(prefix=prefix, kind=kind)]

    def get(self, ref: str, *, strict: bool | None = None) -> DetachedExperiment:
        """As :meth:`RemoteRepository.get <squeezr.dbx.remote.repository.RemoteRepository.get>`:
        names resolve strictly whatever ``strict`` says."""
        return self._handle(self.storage.experiment(self.storage.resolve(ref)))

    def _handle(self, record: dict[str, Any]) -> DetachedExperiment:
        exp_id = record["meta"]["id"]
        return DetachedExperiment(self, record, self, f"/api/v1/experiments/{exp_id}")

    # the Reader protocol of DetachedExperiment
    def runs(self, exp_id: str) -> dict[int, dict[str, Any]]:
        return self.storage.runs(exp_id)

    def events(self, exp_id: str) -> list[dict[str, Any]]:
        return self.storage.events([exp_id])[exp_id]

    def attachments(self, exp_id: str) -> dict[str, dict[str, Any]]:
        return self.storage.attachments(exp_id)
