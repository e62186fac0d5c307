"""dbx log queries: turn experiment logs into the tables behind plots.

    from squeezr.dbx import query
    table = query.run("prune/step/:k | group k: mean(test_acc), se(test_acc)",
                      repo="./experiments", prefix="prune/oracle/")

A query is a pipeline of stages (grammar: docs/dbx-query.md); its input is one log per
experiment, its output a pandas DataFrame, which is itself a log and can be queried again
(``run(..., events=frame)``, experiment by experiment). ``follow`` runs a query as a live
listener on growing logs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from squeezr.dbx.query.engine import Engine, NoMatch
from squeezr.dbx.query.language import Query, parse
from squeezr.dbx.query.live import follow
from squeezr.dbx.query.sources import cache_dir, event_sources, experiment_sources
from squeezr.dbx.remote.client import is_url

__all__ = ["NoMatch", "Query", "follow", "parse", "run"]


def run(
    query: str | Query,
    repo: Any = None,
    experiments: Iterable[Any] | None = None,
    *,
    events: Iterable[dict[str, Any]] | pd.DataFrame | None = None,
    prefix: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    where: str | None = None,
    raw: bool = False,
    cache: bool = True,
) -> pd.DataFrame:
    """Evaluate ``query`` and return the result table.

    Input, in order of precedence: ``events`` (an in-memory log: event dicts, or a DataFrame
    with a ``name`` column such as an earlier result, which is split back into one log per
    experiment by its ``exp.id`` or else ``exp.name`` column); ``experiments`` (handles or
    refs); else the experiments of ``repo`` chosen like ``dbx ls`` (``prefix``, ``kind``,
    ``since``, ``where``). Events with the same name are merged unless ``raw``, in-memory
    logs included. ``cache`` keeps matches parsed from JSON in ``<repo>/.dbx/cache/query``
    (derived, safe to delete). A server URL as ``repo`` runs the query on that server.
    """
    if events is None and experiments is None and is_url(repo):  # run on the server
        from squeezr.dbx.remote.repository import run_query

        options = {"prefix": prefix, "kind": kind, "since": since, "where": where, "raw": raw}
        return run_query(repo, query, **options)
    parsed = parse(query) if isinstance(query, str) else query
    if events is not None:
        return Engine(event_sources(events), merge=not raw).run(parsed)
    repository, sources = experiment_sources(repo, experiments, prefix, kind, since, where)
    directory = cache_dir(repository) if cache else None
    return Engine(sources, merge=not raw, cache_dir=directory).run(parsed)
