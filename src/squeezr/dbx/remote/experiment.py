"""An experiment that is not in a local folder: a server's, seen through the local API.

:class:`DetachedExperiment` is an :class:`~squeezr.dbx.store.Experiment` whose meta,
results and notes come from a record, and whose runs, events and attachments come from a
*reader* (the HTTP client for ``--repo URL``, the database inside the server). So
``select``, ``compare``, ``runs`` and the ``dbx`` commands treat it like any other
experiment. It is read-only: writing goes through ``dbx sync`` or streaming.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from squeezr.dbx.errors import UserError
from squeezr.dbx.store import Experiment

__all__ = ["DetachedExperiment", "ReadOnlyResults", "Reader"]


class Reader(Protocol):
    """Where a detached experiment's larger parts are fetched from, on first use."""

    def runs(self, exp_id: str) -> dict[int, dict[str, Any]]: ...

    def events(self, exp_id: str) -> list[dict[str, Any]]: ...

    def attachments(self, exp_id: str) -> dict[str, dict[str, Any]]: ...


class ReadOnlyResults(Mapping[str, Any]):
    """Results as a read-only mapping with the ``tree()`` of :class:`~squeezr.dbx.views.Results`."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        from squeezr.dbx.views import get_dotted

        return get_dotted(self._data, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setitem__(self, key: str, value: Any) -> None:
        raise UserError("results of a remote experiment are read-only; sync it to change them")

    def tree(self) -> dict[str, Any]:
        return self._data


class DetachedExperiment(Experiment):
    """An experiment from ``record`` (``{"meta", "results", "notes"}``) and ``reader``;
    ``location`` is what ``path`` shows (the server's URL for it)."""

    def __init__(self, repo: Any, record: dict[str, Any], reader: Reader, location: str) -> None:
        self.repo = repo
        self._meta = record["meta"]
        self._folder = location
        self._path = None
        self.run = None
        self._writer = None
        self._record = None
        self._params = None
        self._results = ReadOnlyResults(record.get("results") or {})  # type: ignore[assignment]
        self._notes = record.get("notes") or ""
        self._reader = reader
        runs = record.get("runs")  # JSON keys are text
        self._runs = None if runs is None else {int(n): r for n, r in runs.items()}
        self._attachments: dict[str, dict[str, Any]] | None = record.get("attachments")

    @property
    def path(self) -> Any:  # a URL, not a folder
        return self._folder

    @property
    def results(self) -> ReadOnlyResults:  # type: ignore[override]
        return self._results  # type: ignore[return-value]

    @property
    def notes(self) -> str:  # type: ignore[override]
        return self._notes

    @property
    def attachments(self) -> dict[str, dict[str, Any]]:
        if self._attachments is None:
            self._attachments = self._reader.attachments(self.id)
        return self._attachments

    def _all_runs(self) -> dict[int, dict[str, Any]]:
        """Run records as on disk: a server keeps a run's patch inside its record
        (``patch_text``), which is not part of ``run-<N>.json``."""
        if self._runs is None:
            self._runs = {int(n): r for n, r in self._reader.runs(self.id).items()}
        return {n: {k: v for k, v in r.items() if k != "patch_text"} for n, r in self._runs.items()}

    def run_numbers(self) -> list[int]:
        return sorted(self._all_runs())

    def run_record(self, number: int) -> dict[str, Any]:
        runs = self._all_runs()
        if number not in runs:
            raise UserError(f"experiment {self.id} has no run {number}")
        return {**runs[number], "run": number}

    def events(self, prefix: str | None = None) -> list[dict[str, Any]]:
        events = self._reader.events(self.id)
        if prefix is not None:
            events = [e for e in events if e["name"].startswith(prefix)]
        return events

    def last_events(self, count: int) -> tuple[list[dict[str, Any]], int]:
        """As :meth:`Experiment.last_events`, from the events the server sends (all of them:
        the server has no tail endpoint yet)."""
        events = sorted(self.events(), key=lambda e: (e["ts"], e["run"]))
        return (events[-count:] if count else []), len(events)

    def attachment_path(self, name: str) -> Any:
        raise UserError(f"{self.id} is on a server; fetch its files with `dbx sync`")

    def _read_only(self, *_: Any, **__: Any) -> Any:
        raise UserError(
            f"experiment {self.id} is on a server and read-only here; change it in a local "
            "repository and `dbx sync` it, or stream to the server with dbx.create(server=...)"
        )

    attach = append_notes = set_result = _start_run = _read_only

    @notes.setter
    def notes(self, text: str) -> None:
        self._read_only()

    def flush(self) -> None:
        return None
