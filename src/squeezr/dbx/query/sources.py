"""Which logs a query reads: experiments chosen exactly as ``dbx ls`` chooses them, or
in-memory logs (event dicts, or an earlier result table split back into its experiments).

Selection is delegated to ``squeezr.dbx.select`` so that ``dbx ls X`` and ``dbx query Q X``
always agree on the experiments, and to the store for opening experiments by reference.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from squeezr.dbx.errors import UserError
from squeezr.dbx.query.engine import SHOWN_FIELDS, Source
from squeezr.dbx.query.logs import Event, numbered
from squeezr.dbx.query.values import is_missing
from squeezr.dbx.store import FIELDS as EXPERIMENT_FIELDS

_EVENT_FIELDS = ("name", "ts", "run", "id")


def experiment_sources(
    repo: Any,
    experiments: Iterable[Any] | None,
    prefix: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    where: str | None = None,
) -> tuple[Any, list[Source]]:
    """The repository (None if not needed) and one Source per chosen experiment, in order."""
    from squeezr import dbx
    from squeezr.dbx.select import select_experiments

    handles = list(experiments) if experiments is not None else None
    if handles is not None and repo is None and not any(isinstance(h, str) for h in handles):
        return None, [Source(experiment=handle) for handle in handles]
    repository = dbx.Repository.find(repo)
    if handles is None:
        handles = select_experiments(repository, prefix=prefix, kind=kind, since=since, where=where)
    else:
        handles = [dbx.open(h, repo=repository) if isinstance(h, str) else h for h in handles]
    return repository, [Source(experiment=handle) for handle in handles]


def event_sources(events: Iterable[Event] | pd.DataFrame) -> list[Source]:
    """In-memory logs. Event dicts are one log. A table (an earlier result) is split back into
    one log per experiment by its ``exp.id`` column, else ``exp.name`` (none: one log), so that
    merging, ``first``/``last`` and ``before``/``after`` stay within an experiment; its
    ``exp.*`` columns become that log's experiment fields, ``name``/``ts``/``run``/``id`` the
    event fields, and every other column the event data."""
    if not isinstance(events, pd.DataFrame):
        return [Source(events=numbered(events))]
    if "name" not in events.columns:
        raise UserError("a table used as a log needs a 'name' column; select name in the query")
    experiment = [f"exp.{name}" for name in EXPERIMENT_FIELDS if f"exp.{name}" in events.columns]
    split_by = [column for column in SHOWN_FIELDS if column in events.columns][:1]
    fields = [column for column in _EVENT_FIELDS if column in events.columns]
    logs: dict[tuple[Any, ...], list[tuple[int, Event]]] = {}
    identities: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in events.to_dict(orient="records"):
        if not isinstance(record["name"], str):
            raise UserError(
                f"a table used as a log needs event names in its 'name' column, not "
                f"{record['name']!r}; select the event name as 'name'"
            )
        key = tuple(None if is_missing(record[c]) else record[c] for c in split_by)
        if key not in logs:
            logs[key] = []
            identities[key] = {c: record[c] for c in experiment if not is_missing(record[c])}
        event: Event = {c: record[c] for c in fields if not is_missing(record[c])}
        event["data"] = {
            column: value
            for column, value in record.items()
            if column not in fields and column not in experiment and not is_missing(value)
        }
        logs[key].append((len(logs[key]), event))
    return [Source(events=log, identity=identities[key]) for key, log in logs.items()]


def cache_dir(repository: Any) -> Path | None:
    """Where parsed-log caches live: ``<repo>/.dbx/cache/query`` (derived, safe to delete)."""
    if repository is None:
        return None
    return Path(repository.path) / ".dbx" / "cache" / "query"
