"""A dbx server as a read-only repository: ``--repo http://host:port`` and
``dbx.open(ref, repo=URL)``.

:class:`RemoteRepository` answers what the commands ask of a
:class:`~squeezr.dbx.store.Repository` — ``experiments(prefix, kind)`` and ``get(ref)`` —
with :class:`~squeezr.dbx.remote.experiment.DetachedExperiment` objects, so ``ls --where``,
``show``, ``diff``, ``like``, ``cmd`` and the Python API behave as they do on a folder.
Where-conditions, sorting and ``diff`` then run here on the fetched records, with the same
code as for a folder; log queries run on the server (:func:`run_query`, :func:`follow`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from squeezr.dbx import jsonx
from squeezr.dbx.errors import UserError
from squeezr.dbx.remote.client import Client
from squeezr.dbx.remote.experiment import DetachedExperiment

__all__ = ["RemoteRepository", "follow", "run_query"]


class RemoteRepository:
    def __init__(self, url: str) -> None:
        self.client = Client(url)
        self.url = self.client.url
        self.path = self.url

    def __repr__(self) -> str:
        return f"RemoteRepository({self.url!r})"

    def experiments(
        self, prefix: str | None = None, kind: str | None = None
    ) -> list[DetachedExperiment]:
        records = self.client.request(
            "GET", "/experiments", params={"prefix": prefix, "kind": kind}
        )
        return [self._handle(record) for record in records]

    def get(self, ref: str, *, strict: bool | None = None) -> DetachedExperiment:
        """The experiment ``ref`` names on the server. A server resolves names strictly
        whatever ``strict`` says: a shared name is Ambiguous (give the id); the ``NAME@N``
        selectors of local repositories (:mod:`squeezr.dbx.refs`) are not served yet."""
        if not isinstance(ref, str) or not ref:
            raise UserError("give an experiment id, id prefix or name")
        return self._handle(self.client.request("GET", "/lookup", params={"ref": ref}))

    def verify(self) -> Any:
        raise UserError(f"dbx verify checks a folder; {self.url} is a server (its database)")

    def _handle(self, record: dict[str, Any]) -> DetachedExperiment:
        exp_id = record["meta"]["id"]
        return DetachedExperiment(self, record, self, f"{self.url}/api/v1/experiments/{exp_id}")

    # the Reader protocol of DetachedExperiment
    def runs(self, exp_id: str) -> dict[int, dict[str, Any]]:
        return self.client.request("GET", f"/experiments/{exp_id}/runs")

    def events(self, exp_id: str) -> list[dict[str, Any]]:
        return self.client.request("GET", f"/experiments/{exp_id}/events")

    def attachments(self, exp_id: str) -> dict[str, dict[str, Any]]:
        return self.client.request("GET", f"/experiments/{exp_id}")["attachments"]


def _frame(payload: dict[str, Any]) -> Any:
    import pandas as pd

    return pd.DataFrame(payload["rows"], columns=payload["columns"])


def run_query(url: str, query: str, **options: Any) -> Any:
    """``query.run`` on a server: the result table of ``query`` over the experiments chosen
    by ``options`` (prefix, kind, since, where, raw), computed server-side."""
    if not isinstance(query, str):
        raise UserError("a remote query is sent as text; pass the query string")
    payload = Client(url).request("POST", "/query", {"query": query, **options})
    return _frame(payload)


def follow(
    url: str,
    query: str,
    interval: float = 1.0,
    stop: Callable[[], bool] | None = None,
    **options: Any,
) -> Iterator[Any]:
    """``query.follow`` on a server: batches of new or changed rows, pushed over
    server-sent events, until ``stop()`` is true (checked at each batch or keep-alive)."""
    body = {"query": query, "interval": interval, **options}
    client = Client(url, timeout=max(30.0, 3 * interval))
    with client.open("POST", "/query/follow", body) as stream:
        for line in stream:
            if stop is not None and stop():
                return
            if line.startswith(b"data: "):
                payload = jsonx.loads(line[6:])
                if "error" in payload:
                    raise UserError(payload["error"])
                yield _frame(payload)
