"""dbx log queries: turn experiment logs into the tables behind plots.

    from squeezr.dbx import query
    table = query.run("prune/step/:k | group k: mean(test_acc), se(test_acc)",
                      repo="./experiments", prefix="prune/oracle/")

A query is a pipeline of stages (grammar: docs/dbx-query.md); its input is one log per
experiment, its output a pandas DataFrame, which is itself a log and can be queried again
(``run(..., events=frame)``). ``follow`` runs a query as a live listener on growing logs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from squeezr.dbx.query.engine import Engine, Source, is_missing
from squeezr.dbx.query.language import Query, parse
from squeezr.dbx.query.live import follow
from squeezr.dbx.query.logs import numbered
from squeezr.dbx.query.sources import cache_dir, experiment_sources
from squeezr.errors import UserError

__all__ = ["Query", "follow", "parse", "run"]


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

    Input, in order of precedence: ``events`` (one in-memory log: event dicts, or a DataFrame
    with a ``name`` column such as an earlier result); ``experiments`` (handles or refs);
    else the experiments of ``repo`` chosen like ``dbx ls`` (``prefix``, ``kind``, ``since``,
    ``where``). Events with the same name are merged unless ``raw``. ``cache`` keeps parsed
    matches in ``<repo>/.dbx/cache/query`` (derived, safe to delete).
    """
    parsed = parse(query) if isinstance(query, str) else query
    if events is not None:
        sources = [Source(events=numbered(_as_events(events)))]
        return Engine(sources, merge=not raw).run(parsed)
    repository, sources = experiment_sources(repo, experiments, prefix, kind, since, where)
    directory = cache_dir(repository) if cache else None
    return Engine(sources, merge=not raw, cache_dir=directory).run(parsed)


def _as_events(events: Iterable[dict[str, Any]] | pd.DataFrame) -> Iterable[dict[str, Any]]:
    """A result table back into a log: ``name`` (and ts/run/id) as fields, the rest as data."""
    if not isinstance(events, pd.DataFrame):
        return events
    if "name" not in events.columns:
        raise UserError("a table used as a log needs a 'name' column; select name in the query")
    fields = {"name", "ts", "run", "id"}
    log = []
    for record in events.to_dict(orient="records"):
        data = {k: v for k, v in record.items() if k not in fields and not is_missing(v)}
        log.append({**{k: record[k] for k in fields if k in record}, "data": data})
    return log
